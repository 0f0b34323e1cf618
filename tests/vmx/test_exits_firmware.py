"""VM exits produced by real guest instructions (issue 3): reason, qualification, length and RIP per the SDM.

Expected values are computed here, independently of emu's decoder: capstone decodes the instruction at the
exit's RIP from the kernel FILE (not from guest memory), and the qualification is assembled with the SDM
bit layouts (Vol. 3C Table 28-5 for I/O, 28-3 for CR access).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from emu.machine import Machine, MachineConfig
from emu.vmx.controls import PrimaryControls
from emu.vmx.reasons import ExitReason

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware" / "build"
sys.path.insert(0, str(ROOT / "tools"))
import qemu_ref  # noqa: E402

CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
REGS = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]


def text_bytes(elf_path: Path, addr: int, n: int = 15) -> bytes:
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_paddr"] <= addr < seg["p_paddr"] + seg["p_filesz"]:
                off = addr - seg["p_paddr"]
                return seg.data()[off:off + n]
    raise AssertionError(f"{addr:#x} not in the file")


def run_logged(kernel: str, tmp_path: Path, controls=(), exceptions=0, disk=True):
    m_disk = []
    if disk:
        img = tmp_path / "disk.img"
        qemu_ref.make_reference_disk(img)
        m_disk = [str(img)]
    m = Machine(MachineConfig(kernel=str(FW / kernel), disks=m_disk), console=lambda b: None)
    for name in controls:
        m.vmx.controls.primary |= PrimaryControls[name]
    m.vmx.controls.exception_bitmap = exceptions
    exits = []
    m.vmx.observers.append(exits.append)
    result = m.run(max_insns=50_000_000)
    m.close()
    return m, result, exits


def sdm_io_qualification(insn, edx: int) -> int:
    rep = insn.mnemonic.startswith("rep")
    mnemonic = insn.mnemonic.split()[-1]
    string = mnemonic.startswith(("ins", "outs"))
    size = {"b": 1, "w": 2, "d": 4}[mnemonic[-1]] if string else None
    if not string:
        reg = insn.op_str.split(",")[1 if mnemonic == "out" else 0].strip()
        size = {"al": 1, "ax": 2, "eax": 4}[reg]
    direction_in = mnemonic.startswith("in")
    port_operand = insn.op_str.split(",")[0 if mnemonic.startswith("out") else 1].strip()
    immediate = not string and port_operand != "dx"
    port = int(port_operand, 0) if immediate else edx & 0xFFFF
    return (size - 1) | (8 if direction_in else 0) | (16 if string else 0) | (32 if rep else 0) \
        | (64 if immediate else 0) | port << 16


def test_io_exits_match_the_sdm_layout(tmp_path):
    m, result, exits = run_logged("vmx_exits.elf", tmp_path, ["UNCONDITIONAL_IO"])
    assert result.status == 1
    io = [e for e in exits if e.reason is ExitReason.IO_INSTRUCTION]
    assert len(io) > 100
    seen = set()
    for e in io:
        insn = next(CS.disasm(text_bytes(FW / "vmx_exits.elf", e.rip), e.rip, 1))
        assert e.insn_len == insn.size
        assert e.qualification == sdm_io_qualification(insn, e.regs["edx"]), (insn.mnemonic, insn.op_str)
        seen.add((insn.mnemonic, insn.op_str if insn.mnemonic in ("in", "out") else ""))
        if e.decoded.string:
            assert e.guest_linear == e.regs["edi" if e.decoded.direction.name == "IN" else "esi"]
    mnemonics = {m for m, _ in seen}
    assert {"in", "out"} <= mnemonics
    assert "rep outsw" in mnemonics and "rep insd" in mnemonics
    assert ("out", "0x21, al") in seen and ("in", "al, dx") in seen


def test_rep_string_io_gives_one_exit_per_element(tmp_path):
    m, result, exits = run_logged("vmx_exits.elf", tmp_path, ["UNCONDITIONAL_IO"])
    reps = {}
    for e in exits:
        if e.reason is ExitReason.IO_INSTRUCTION and e.decoded.rep:
            reps.setdefault(e.rip, []).append(e)
    assert reps
    for rip, elements in reps.items():
        counts = [el.regs["ecx"] for el in elements]
        # ECX counts down by one per element: no element repeated or lost
        assert counts == list(range(counts[0], counts[0] - len(counts), -1)), rip
        icounts = [el.icount for el in elements]
        assert icounts == list(range(icounts[0], icounts[0] + len(icounts)))


def test_instruction_exits_other_than_io(tmp_path):
    m, result, exits = run_logged("vmx_exits.elf", tmp_path, ["HLT", "CR3_LOAD", "CR3_STORE", "RDTSC", "INVLPG"],
                                  exceptions=1 << 3)
    assert result.status == 1
    by_reason = {}
    for e in exits:
        by_reason.setdefault(e.reason, []).append(e)
    expect = {ExitReason.CPUID: "cpuid", ExitReason.RDTSC: "rdtsc", ExitReason.HLT: "hlt",
              ExitReason.RDMSR: "rdmsr", ExitReason.WRMSR: "wrmsr", ExitReason.INVLPG: "invlpg"}
    for reason, mnemonic in expect.items():
        assert by_reason.get(reason), reason
        for e in by_reason[reason]:
            insn = next(CS.disasm(text_bytes(FW / "vmx_exits.elf", e.rip), e.rip, 1))
            assert insn.mnemonic == mnemonic and e.insn_len == insn.size
    for e in by_reason[ExitReason.CR_ACCESS]:
        insn = next(CS.disasm(text_bytes(FW / "vmx_exits.elf", e.rip), e.rip, 1))
        dst, src = [x.strip() for x in insn.op_str.split(",")]
        to_cr = dst.startswith("cr")
        cr, gpr = (int(dst[2:]), src) if to_cr else (int(src[2:]), dst)
        assert cr == 3  # MOV from/to CR0 and CR4 do not exit without guest/host masks (SDM 26.1.3)
        assert e.qualification == cr | (0 if to_cr else 1) << 4 | REGS.index(gpr) << 8
        assert e.insn_len == insn.size
    int3 = by_reason[ExitReason.EXCEPTION_NMI]
    assert [(e.interruption.vector, e.interruption.type.name, e.insn_len) for e in int3] == \
        [(3, "SOFTWARE_EXCEPTION", 1)]
    assert text_bytes(FW / "vmx_exits.elf", int3[0].rip, 1) == b"\xcc"


def test_vmcall_exit(tmp_path):
    m, result, exits = run_logged("hypercall.elf", tmp_path, disk=False)
    calls = [e for e in exits if e.reason is ExitReason.VMCALL]
    assert len(calls) == 2
    for e in calls:
        assert text_bytes(FW / "hypercall.elf", e.rip, 3) == b"\x0f\x01\xc1" and e.insn_len == 3
    assert [e.regs["eax"] for e in calls] == [1, 0xFFFF]


def test_monitor_trap_flag_gives_one_exit_per_instruction(tmp_path):
    m, result, exits = run_logged("cpu_events.elf", tmp_path, ["MONITOR_TRAP_FLAG"], disk=False)
    assert result.status == 1
    mtf = [e for e in exits if e.reason is ExitReason.MONITOR_TRAP_FLAG]
    assert len(mtf) == result.icount
    assert [e.icount for e in mtf] == list(range(1, result.icount + 1))


def test_a_stop_decision_inside_rep_insd_stops_after_that_element(tmp_path):
    """A handler that stops on the 5th element of the kernel's `rep insd`: the run ends with exactly four
    elements stored; resuming finishes the transfer with no element read twice (same transcript as a free run)."""
    from emu.vmx.monitor import Decision
    img = tmp_path / "disk.img"
    qemu_ref.make_reference_disk(img)
    free_disk = tmp_path / "free.img"
    qemu_ref.make_reference_disk(free_disk)
    out_free = bytearray()
    free = Machine(MachineConfig(kernel=str(FW / "vmx_exits.elf"), disks=[str(free_disk)]), console=out_free.append)
    free.run(max_insns=50_000_000)
    free.close()
    out = bytearray()
    m = Machine(MachineConfig(kernel=str(FW / "vmx_exits.elf"), disks=[str(img)]), console=out.append)
    m.vmx.controls.primary |= PrimaryControls.UNCONDITIONAL_IO
    seen = []

    def handler(record, monitor):
        if record.decoded.rep and record.decoded.direction.name == "IN":
            seen.append(record.regs["ecx"])
            if len(seen) == 5:
                return Decision.STOP
        return None
    m.vmx.on(ExitReason.IO_INSTRUCTION, handler)
    stopped = m.run(max_insns=50_000_000)
    assert stopped.reason.value == "stopped"
    assert m.cpu.reg("ecx") == seen[0] - 5          # five elements done, the sixth not started
    result = m.run(max_insns=50_000_000)
    m.close()
    assert result.status == 1 and bytes(out) == bytes(out_free)
    assert seen == list(range(seen[0], seen[0] - len(seen), -1))   # every element exactly once



def test_string_io_guest_linear_adds_the_segment_base():
    """INS writes ES:EDI and OUTS reads DS:ESI: the guest-linear address is segment base + offset (SDM §28.2.1)."""
    m = Machine(MachineConfig(kernel=str(FW / "hello.elf")), console=lambda b: None)
    gdt = (bytes(8) + bytes.fromhex("ffff0000009acf00")                      # 0x08 flat code
           + bytes.fromhex("ffff00000092cf00")                                # 0x10 flat data
           + bytes.fromhex("ffff0000109200 00".replace(" ", "")))            # 0x18 data, base 0x100000
    m.cpu.write_phys(0x300000, gdt)
    m.cpu.write_phys(0x300100, (len(gdt) - 1).to_bytes(2, "little") + (0x300000).to_bytes(4, "little"))
    code = (b"\x0f\x01\x15" + (0x300100).to_bytes(4, "little")   # lgdt [0x300100]
            + b"\x66\xb8\x18\x00"                                 # mov ax, 0x18
            + b"\x8e\xc0"                                           # mov es, ax
            + b"\xbf\x00\x20\x00\x00"                            # mov edi, 0x2000
            + b"\xbe\x00\x30\x00\x00"                            # mov esi, 0x3000
            + b"\x66\xba\x80\x00"                                 # mov dx, 0x80
            + b"\x6c"                                                # insb   (ES:EDI)
            + b"\x26\x6e"                                           # outsb  es:[esi] (segment override)
            + b"\x6e"                                                # outsb  (DS:ESI)
            + b"\xe6\xf4")                                          # out 0xf4, al
    m.cpu.write_phys(0x200000, code)
    m.cpu.set_reg("eip", 0x200000)
    m.vmx.controls.primary |= PrimaryControls.UNCONDITIONAL_IO
    seen = []
    m.vmx.observers.append(seen.append)
    m.run(max_insns=100)
    strings = [e for e in seen if e.decoded.string]
    assert [(e.decoded.direction.name, e.guest_linear) for e in strings] == [
        ("IN", 0x100000 + 0x2000), ("OUT", 0x100000 + 0x3000), ("OUT", 0x3001)]
