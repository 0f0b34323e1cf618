"""CLTS, LMSW and MOV DR executed by a guest (code written into a booted hello.elf), checked against the SDM.

SDM Vol. 3C §26.1.3: CLTS exits when CR0.TS is set in both the guest/host mask and the read shadow; LMSW exits
when, for a bit of CR0[3:0] the mask owns, the source differs from the shadow (PE: only 0 -> 1); MOV DR exits under
"MOV-DR exiting". Qualifications (Table 28-3 CR access: 3:0 CR, 5:4 type 2 = CLTS / 3 = LMSW, 6 LMSW operand
1 = memory, 31:16 LMSW source; Table 28-4 MOV DR: 2:0 DR, 4 direction 1 = MOV from DR, 11:8 GPR). For LMSW with a
memory operand the guest-linear address field holds the operand's linear address (§28.2.1).
A listener (an observer, as `emu run --exits` installs) must never change what the guest does.
"""
from __future__ import annotations

import pytest

from emu.machine import Machine, MachineConfig
from emu.vmx.controls import PrimaryControls
from emu.vmx.reasons import ExitReason
from tests.vmx.test_exits_firmware import FW

CODE = 0x200000
END = b"\xb0\x00\xe6\xf4"                       # mov al, 0; out 0xf4, al
LMSW_WORD_AT = 0x300000
CLTS = b"\x0f\x06"
LMSW_AX = b"\x0f\x01\xf0"                       # lmsw ax
LMSW_MEM = b"\x0f\x01\x35" + LMSW_WORD_AT.to_bytes(4, "little")   # lmsw word ptr [0x300000]


def mov_ax(value: int) -> bytes:
    return b"\x66\xb8" + value.to_bytes(2, "little")


def run(code: bytes, cr0_mask: int = 0, cr0_shadow: int = 0, controls=PrimaryControls(0), observe: bool = True):
    """Run ``code`` + END; (result, [(reason, rip, qualification, insn_len, guest_linear)], final CR0)."""
    m = Machine(MachineConfig(kernel=str(FW / "hello.elf")), console=lambda b: None)
    m.cpu.write_phys(LMSW_WORD_AT, (0x13).to_bytes(2, "little"))
    m.cpu.write_phys(CODE, code + END)
    m.cpu.set_reg("eip", CODE)
    m.vmx.controls.cr0_guest_host_mask, m.vmx.controls.cr0_read_shadow = cr0_mask, cr0_shadow
    m.vmx.controls.primary |= controls
    exits = []
    if observe:
        m.vmx.observers.append(exits.append)
    result = m.run(max_insns=100)
    m.close()
    rows = [(e.reason, e.rip, e.qualification, e.insn_len, e.guest_linear) for e in exits
            if e.reason in (ExitReason.CR_ACCESS, ExitReason.DR_ACCESS)]
    return result, rows, m.cpu.reg("cr0")


def test_clts_exits_when_ts_is_owned_and_set_in_the_shadow():
    result, rows, cr0 = run(CLTS, cr0_mask=0x8, cr0_shadow=0x8)
    assert result.status == 1
    assert rows == [(ExitReason.CR_ACCESS, CODE, 2 << 4, 2, None)]


def test_clts_does_not_exit_when_the_shadow_has_ts_clear():
    result, rows, cr0 = run(CLTS, cr0_mask=0x8, cr0_shadow=0x0)
    assert result.status == 1 and rows == []


def test_lmsw_register_exits_only_when_an_owned_bit_changes():
    # CR0 is 0x11 at entry (PE, ET); the shadow agrees; lmsw 0x11 changes nothing owned, lmsw 0x13 sets MP
    result, rows, cr0 = run(mov_ax(0x11) + LMSW_AX + mov_ax(0x13) + LMSW_AX, cr0_mask=0xF, cr0_shadow=0x11)
    assert result.status == 1
    assert rows == [(ExitReason.CR_ACCESS, CODE + 4 + 3 + 4, 0x13 << 16 | 3 << 4, 3, None)]
    assert cr0 & 0xF == 0x3      # the default emulation executed the LMSW


def test_lmsw_memory_exit_reports_the_source_and_its_linear_address():
    result, rows, cr0 = run(LMSW_MEM, cr0_mask=0xF, cr0_shadow=0x11)
    assert result.status == 1
    assert rows == [(ExitReason.CR_ACCESS, CODE, 0x13 << 16 | 1 << 6 | 3 << 4, 7, LMSW_WORD_AT)]


def test_an_observer_does_not_break_lmsw_memory():
    result, rows, cr0 = run(LMSW_MEM)
    assert result.status == 1 and cr0 & 0xF == 0x3


def test_an_observer_does_not_break_mov_dr():
    result, rows, cr0 = run(b"\x0f\x21\xc0" + b"\x0f\x23\xd9")           # mov eax, dr0; mov dr3, ecx
    assert result.status == 1 and rows == []


def test_mov_dr_without_a_listener_runs():
    result, rows, cr0 = run(b"\x0f\x21\xc0" + b"\x0f\x23\xd9", observe=False)
    assert result.status == 1


def test_mov_dr_exits_under_mov_dr_exiting():
    result, rows, cr0 = run(b"\x0f\x21\xc0" + b"\x0f\x23\xd9", controls=PrimaryControls.MOV_DR)
    assert result.status == 1
    assert rows == [(ExitReason.DR_ACCESS, CODE, 0 | 1 << 4 | 0 << 8, 3, None),       # mov eax, dr0
                    (ExitReason.DR_ACCESS, CODE + 3, 3 | 0 << 4 | 1 << 8, 3, None)]   # mov dr3, ecx
