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


def run_logged(kernel: str, tmp_path: Path, controls=(), exceptions=0, disk=True, setup=None):
    """Run a kernel with the named primary controls and exception bitmap; (machine, result, every exit)."""
    m_disk = []
    if disk:
        img = tmp_path / "disk.img"
        qemu_ref.make_reference_disk(img)
        m_disk = [str(img)]
    m = Machine(MachineConfig(kernel=str(FW / kernel), disks=m_disk), console=lambda b: None)
    for name in controls:
        m.vmx.controls.primary |= PrimaryControls[name]
    m.vmx.controls.exception_bitmap = exceptions
    if setup is not None:
        setup(m)
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


def test_every_exception_exits_through_the_bitmap(tmp_path):
    """With all 32 bitmap bits set, every exception cpu_events takes exits once, whoever raised it (Unicorn, emu's
    own #UD/#GP checks, or the delivery itself), and the guest's transcript does not change (SDM §25.2)."""
    import re

    def run(bitmap: int):
        out: list[int] = []
        m = Machine(MachineConfig(kernel=str(FW / "cpu_events.elf")), console=out.append)
        m.vmx.controls.exception_bitmap = bitmap
        seen = []
        m.vmx.observers.append(seen.append)
        result = m.run()
        return bytes(out).decode(), result, [e for e in seen if e.reason is ExitReason.EXCEPTION_NMI]

    plain, plain_result, none = run(0)
    text, result, exits = run(0xFFFFFFFF)
    assert none == [] and text == plain and result.status == plain_result.status
    printed = [(int(v), int(err, 16)) for v, err in re.findall(r"vector=(\d+) error=([0-9a-f]+)", text) if int(v) < 32]
    taken = [(e.interruption.vector, e.error_code or 0) for e in exits]
    # Each handled exception exits once; an exception whose delivery escalates to #DF exits, then the #DF does.
    i = 0
    for k, exit_ in enumerate(taken):
        if i < len(printed) and exit_ == printed[i]:
            i += 1
        else:
            assert taken[k + 1][0] == 8, f"exit {exit_} is neither printed by the guest nor escalated to #DF"
    assert i == len(printed)
    assert sum(1 for v, _ in printed if v == 13) == sum(1 for v, _ in taken if v == 13) >= 5   # CPL-3 #GPs too


def test_an_injected_exception_does_not_exit_again():
    """A handler that injects #GP for the guest's #UD: one exit (the #UD), then the #GP is delivered (SDM §27.6)."""
    from emu.vmx.monitor import Inject
    from emu.vmx.qualification import InterruptionType
    out: list[int] = []
    m = Machine(MachineConfig(kernel=str(FW / "cpu_events.elf")), console=out.append)
    m.vmx.controls.exception_bitmap = 0xFFFFFFFF
    seen = []

    def handler(record, monitor):
        seen.append(record.interruption.vector)
        if record.interruption.vector == 6:
            return Inject(13, InterruptionType.HARDWARE_EXCEPTION, 0)
        return None
    m.vmx.on(ExitReason.EXCEPTION_NMI, handler)
    m.run()
    text = bytes(out).decode()
    assert "#UD: ud2:\n  #GP vector=13 error=0000" in text
    assert seen.count(6) == 1
    assert seen.count(13) == text.count("vector=13 ") - 1     # every #GP the guest saw exited, except the injected one


def _rdtscp_machine(enable: bool, rdtsc_exiting: bool):
    from emu.vmx.controls import SecondaryControls
    m = Machine(MachineConfig(kernel=str(FW / "hello.elf")), console=lambda b: None)
    code = (b"\xb9\x55\x00\x00\x00"      # mov ecx, 0x55
            + b"\x0f\x01\xf9"             # rdtscp             (0x200005)
            + b"\x89\xc6\x89\xcb"         # mov esi, eax ; mov ebx, ecx
            + b"\x0f\x31"                 # rdtsc              (0x20000c)
            + b"\x29\xf0"                 # sub eax, esi
            + b"\xe6\xf4")                # out 0xf4, al
    m.cpu.write_phys(0x200000, code)
    m.cpu.set_reg("eip", 0x200000)
    m.vmx.controls.exception_bitmap = 1 << 6
    if rdtsc_exiting:
        m.vmx.controls.primary |= PrimaryControls.RDTSC
    if enable:
        m.vmx.controls.primary |= PrimaryControls.ACTIVATE_SECONDARY
        m.vmx.controls.secondary |= SecondaryControls.ENABLE_RDTSCP
    seen = []
    m.vmx.observers.append(seen.append)
    return m, seen


def test_rdtscp_exits_with_reason_51_and_reads_the_virtual_tsc():
    """RDTSCP with "enable RDTSCP" and RDTSC exiting: reason 51, length 3; the following RDTSC still exits
    (reason 16); EDX:EAX is the virtual TSC (3 instructions later RDTSC reads 3 more), ECX = TSC_AUX = 0."""
    m, seen = _rdtscp_machine(enable=True, rdtsc_exiting=True)
    result = m.run(max_insns=100)
    assert [(e.reason, e.rip, e.insn_len) for e in seen] == [
        (ExitReason.RDTSCP, 0x200005, 3), (ExitReason.RDTSC, 0x20000C, 2)]
    assert m.cpu.reg("ebx") == 0 and result.status == (3 << 1) | 1
    quiet, none = _rdtscp_machine(enable=True, rdtsc_exiting=False)
    assert quiet.run(max_insns=100).status == result.status and none == []


def test_rdtscp_raises_ud_unless_the_monitor_enables_it():
    """Without "enable RDTSCP" the instruction raises #UD (SDM §26.3; QEMU's qemu32 CPU has no RDTSCP either)."""
    m, seen = _rdtscp_machine(enable=False, rdtsc_exiting=True)
    m.run(max_insns=100)
    first = seen[0]
    assert (first.reason, first.interruption.vector, first.rip) == (ExitReason.EXCEPTION_NMI, 6, 0x200005)
    assert ExitReason.RDTSCP not in [e.reason for e in seen]
