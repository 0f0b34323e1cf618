"""Complete VmExit records built from instruction bytes and registers (SDM Vol. 3C §28.2)."""
from __future__ import annotations

import pytest

from emu import EmuError
from emu.vmx.build import exception_exit, external_interrupt_exit, instruction_exit
from emu.vmx.qualification import ActivityState, InterruptionType, Interruptibility
from emu.vmx.reasons import ExitReason

REGS = {"eax": 0x5000, "ecx": 0x10, "edx": 0x1F0, "ebx": 0, "esp": 0x7FF0, "ebp": 0, "esi": 0x3000, "edi": 0x2000,
        "eip": 0x100000, "eflags": 0x202, "cs": 0x10}


@pytest.mark.parametrize("code,reason,length,qualification", [
    ("0fa2", ExitReason.CPUID, 2, 0),             # cpuid: 0F A2
    ("f4", ExitReason.HLT, 1, 0),                 # hlt: F4
    ("0f31", ExitReason.RDTSC, 2, 0),             # rdtsc: 0F 31
    ("0f32", ExitReason.RDMSR, 2, 0),             # rdmsr: 0F 32 (ECX is in the register snapshot)
    ("0f30", ExitReason.WRMSR, 2, 0),             # wrmsr: 0F 30
    ("0f01c1", ExitReason.VMCALL, 3, 0),          # vmcall: 0F 01 C1
    ("ec", ExitReason.IO_INSTRUCTION, 1, 0x01F00008),        # in al, dx (DX = 0x1F0): 0 | IN 8
    ("e680", ExitReason.IO_INSTRUCTION, 2, 0x00800040),      # out 0x80, al
    ("0f22d8", ExitReason.CR_ACCESS, 3, 0x3),                # mov cr3, eax
    ("0f20c0", ExitReason.CR_ACCESS, 3, 0x10),               # mov eax, cr0
    ("0f0138", ExitReason.INVLPG, 3, 0x5000),                # invlpg [eax]: the linear address
    ("0f23f8", ExitReason.DR_ACCESS, 3, 0x7),                # mov dr7, eax
])
def test_instruction_exits(code, reason, length, qualification):
    rec = instruction_exit(bytes.fromhex(code) + b"\x90" * 4, 32, REGS, rip=0x100000, icount=77, guest="g")
    assert (rec.reason, rec.insn_len, rec.qualification) == (reason, length, qualification)
    assert rec.rip == 0x100000 and rec.next_rip == 0x100000 + length and rec.icount == 77
    assert rec.regs["ecx"] == 0x10 and rec.regs["cs"] == 0x10
    assert rec.guest_linear is None


def test_string_io_sets_guest_linear_address():
    # rep insd: ES:EDI, ES base 0x10000 -> 0x12000; rep outsw (66 F3 6F): DS:ESI -> 0x3000 (flat DS)
    rec = instruction_exit(bytes.fromhex("f36d"), 32, REGS, rip=0x100000, segment_bases={"es": 0x10000})
    assert rec.qualification == 0x01F0003B and rec.guest_linear == 0x12000 and rec.insn_len == 2
    rec = instruction_exit(bytes.fromhex("66f36f"), 32, REGS, rip=0x100000)
    assert rec.qualification == 0x01F00031 and rec.guest_linear == 0x3000 and rec.insn_len == 3
    # 16-bit addressing (0x67) uses DI only: 0x2000 & 0xFFFF
    rec = instruction_exit(bytes.fromhex("67f36c"), 32, dict(REGS, edi=0x12345), rip=0)
    assert rec.guest_linear == 0x2345


def test_lmsw_memory_sets_guest_linear_address():
    # lmsw [eax] (0F 01 30), EAX = 0x5000, word there = 0x000F -> qualification 0x000F0070
    rec = instruction_exit(bytes.fromhex("0f0130"), 32, REGS, rip=0, read_linear=lambda a, n: b"\x0f\x00")
    assert rec.qualification == 0x000F0070 and rec.guest_linear == 0x5000


def test_not_an_exiting_instruction():
    with pytest.raises(EmuError, match="does not cause"):
        instruction_exit(b"\x90", 32, REGS, rip=0)


def test_exception_exits():
    # int3 (CC) selected by the bitmap: software exception, RIP at the INT3, length 1 -> info 0x80000603
    rec = exception_exit(3, InterruptionType.SOFTWARE_EXCEPTION, rip=0x1000, insn_len=1)
    assert rec.reason is ExitReason.EXCEPTION_NMI and rec.interruption.encode() == 0x80000603
    assert rec.insn_len == 1 and rec.error_code is None
    # #PF with error code 2 at linear 0xDEAD000: qualification = the faulting address
    rec = exception_exit(14, rip=0x1000, error_code=2, qualification=0xDEAD000)
    assert rec.interruption.encode() == 0x80000B0E and rec.error_code == 2 and rec.qualification == 0xDEAD000
    with pytest.raises(EmuError, match="instruction length"):
        exception_exit(13, rip=0, insn_len=2)
    with pytest.raises(EmuError, match="instruction length"):
        exception_exit(3, InterruptionType.SOFTWARE_EXCEPTION, rip=0)
    with pytest.raises(EmuError, match="EXCEPTION_NMI"):
        exception_exit(0x80, InterruptionType.SOFTWARE_INTERRUPT, rip=0, insn_len=2)


def test_external_interrupt_exits():
    # acknowledged on exit: vector 0x20, type 0, valid -> 0x80000020; a halted guest reports activity HLT
    rec = external_interrupt_exit(0x20, rip=0x1001, activity=ActivityState.HLT)
    assert rec.reason is ExitReason.EXTERNAL_INTERRUPT and rec.interruption.encode() == 0x80000020
    assert rec.to_dict()["activity"] == 1
    rec = external_interrupt_exit(None, rip=0x1001, interruptibility=Interruptibility())
    assert rec.interruption is None and rec.to_dict()["interruption_info"] is None
