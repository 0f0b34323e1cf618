"""Handler decisions other than STOP (issue 3): SKIP, Inject, and handlers that change guest registers or memory.

Each test runs a firmware kernel with one handler and compares the guest's transcript with the free run's,
changed exactly where the decision is meant to change it (SDM Vol. 3C §27.6.1.1 vectored-event injection: an
injected fault is delivered as if the instruction had raised it, so its handler sees the instruction's EIP).
The changed lines are built from the kernels' own printf formats (firmware/kernels/*.c, firmware/lib/desc.c).
"""
from __future__ import annotations

import functools
import shutil
import sys
import tempfile
from pathlib import Path

import capstone
import pytest

from emu.machine import Machine, MachineConfig
from emu.vmx.bitmaps import set_io_bitmap
from emu.vmx.controls import PrimaryControls
from emu.vmx.monitor import Decision, Inject
from emu.vmx.qualification import InterruptionType
from emu.vmx.reasons import ExitReason
from tests.conftest import require_tool
from tests.vmx.test_exits_firmware import text_bytes

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware" / "build"
sys.path.insert(0, str(ROOT / "tools"))
import qemu_ref  # noqa: E402

CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
DEBUGCON = 0xE9


def run_kernel(kernel: str, tmp_path: Path | None = None, setup=None):
    """Run KERNEL (on a fresh reference disk when tmp_path is given) after ``setup(machine)``; (result, transcript)."""
    disks = []
    if tmp_path is not None:
        img = tmp_path / f"{kernel}-{len(list(tmp_path.iterdir()))}.img"
        qemu_ref.make_reference_disk(img)
        disks = [str(img)]
    out = bytearray()
    m = Machine(MachineConfig(kernel=str(FW / f"{kernel}.elf"), disks=disks), console=out.append)
    if setup is not None:
        setup(m)
    result = m.run(max_insns=50_000_000)
    m.close()
    return result, bytes(out)


@functools.lru_cache(maxsize=None)
def free_run(kernel: str) -> bytes:
    """The transcript with no handler (disk kernels on a fresh reference disk)."""
    tmp = Path(tempfile.mkdtemp())
    try:
        result, out = run_kernel(kernel, tmp if kernel == "vmx_exits" else None)
    finally:
        shutil.rmtree(tmp)
    assert result.status == 1
    return out


def exit_on_debugcon(m: Machine) -> None:
    """I/O bitmaps with only port 0xE9's bit set: every console byte is one exit."""
    m.vmx.controls.primary |= PrimaryControls.USE_IO_BITMAPS
    set_io_bitmap(m.vmx.controls, DEBUGCON, 1)


def insn_at(kernel: str, rip: int):
    return next(CS.disasm(text_bytes(FW / f"{kernel}.elf", rip), rip, 1))


# --- SKIP -----------------------------------------------------------------------------------------------------

def test_skipping_an_out_to_the_debug_console_drops_that_byte():
    skipped = []

    def handler(record, monitor):
        if record.decoded.port == DEBUGCON and record.regs["eax"] & 0xFF == ord("l"):
            skipped.append(record)
            return Decision.SKIP
        return None

    def setup(m):
        exit_on_debugcon(m)
        m.vmx.on(ExitReason.IO_INSTRUCTION, handler)
    result, out = run_kernel("hello", setup=setup)
    free = free_run("hello")
    assert result.status == 1
    assert out == free.replace(b"l", b"")
    assert len(skipped) == free.count(b"l") > 5


CPUID_PROGRAM = (b"\x31\xc0"                      # xor eax, eax        (leaf 0)
                 b"\xbb\x11\x11\x11\x11"          # mov ebx, 0x11111111
                 b"\xb9\x22\x22\x22\x22"          # mov ecx, 0x22222222
                 b"\xba\x33\x33\x33\x33"          # mov edx, 0x33333333
                 b"\x0f\xa2"                      # cpuid
                 b"\xbe\x55\x00\x00\x00"          # mov esi, 0x55       (runs after the CPUID)
                 b"\xe6\xf4")                     # out 0xf4, al        (debug exit)
CPUID_AT = 0x200000 + 17


def run_cpuid_program(decision):
    m = Machine(MachineConfig(kernel=str(FW / "hello.elf")), console=lambda b: None)
    m.cpu.write_phys(0x200000, CPUID_PROGRAM)
    m.cpu.set_reg("eip", 0x200000)
    seen = []

    def handler(record, monitor):
        seen.append(record)
        return decision
    m.vmx.on(ExitReason.CPUID, handler)
    result = m.run(max_insns=100)
    regs = {name: m.cpu.reg(name) for name in ("eax", "ebx", "ecx", "edx", "esi")}
    m.close()
    assert [(r.rip, r.insn_len) for r in seen] == [(CPUID_AT, 2)]
    return result, regs


def test_skipping_cpuid_leaves_the_registers():
    result, regs = run_cpuid_program(Decision.SKIP)
    assert result.status == 1   # out 0xf4 with AL = 0
    assert regs == {"eax": 0, "ebx": 0x11111111, "ecx": 0x22222222, "edx": 0x33333333, "esi": 0x55}


def test_emulating_cpuid_answers_leaf_0():
    """Control for the SKIP test: the default emulation writes the vendor "GenuineIntel" (EBX, EDX, ECX)."""
    result, regs = run_cpuid_program(None)
    assert result.status == 3   # AL = max basic leaf 1: exit status (1 << 1) | 1
    assert regs["ebx"].to_bytes(4, "little") + regs["edx"].to_bytes(4, "little") \
        + regs["ecx"].to_bytes(4, "little") == b"GenuineIntel"
    assert regs["esi"] == 0x55


def test_skipping_int3_resumes_after_it_without_delivery():
    seen = []

    def setup(m):
        m.vmx.controls.exception_bitmap = 1 << 3
        m.vmx.on(ExitReason.EXCEPTION_NMI, lambda record, monitor: seen.append(record) or Decision.SKIP)
    result, out = run_kernel("cpu_events", setup=setup)
    assert result.status == 1
    bp_line = b"  #BP vector=3 error=0000 eip=expected cpl=0\n"
    free = free_run("cpu_events")
    assert free.count(bp_line) == 1
    assert out == free.replace(bp_line, b"")
    assert len(seen) == 1 and insn_at("cpu_events", seen[0].rip).mnemonic == "int3"


# --- handlers that change registers and memory ---------------------------------------------------------------------

def test_handlers_change_registers_the_kernel_then_uses(tmp_path):
    """IN from 0xE9 answered 0x5A, RDMSR SYSENTER_ESP answered 0xCAFEF00D, WRMSR SYSENTER_EIP skipped (so it
    reads back its reset value 0), CPUID leaf 0 answered with zeros (max leaf 0, vendor not printable)."""
    seen = {}

    def on_io(record, monitor):
        if record.decoded.direction.name == "IN":
            seen["in"] = record
            monitor.machine.cpu.set_reg("eax", 0x5A)
            return Decision.SKIP
        return None

    def on_rdmsr(record, monitor):
        if record.regs["ecx"] == 0x175:
            monitor.machine.cpu.set_reg("eax", 0xCAFEF00D)
            monitor.machine.cpu.set_reg("edx", 0)
            return Decision.SKIP
        return None

    def on_wrmsr(record, monitor):
        return Decision.SKIP if record.regs["ecx"] == 0x176 else None

    def on_cpuid(record, monitor):
        for name in ("eax", "ebx", "ecx", "edx"):
            monitor.machine.cpu.set_reg(name, 0)
        return Decision.SKIP

    def setup(m):
        exit_on_debugcon(m)
        m.vmx.on(ExitReason.IO_INSTRUCTION, on_io)
        m.vmx.on(ExitReason.RDMSR, on_rdmsr)
        m.vmx.on(ExitReason.WRMSR, on_wrmsr)
        m.vmx.on(ExitReason.CPUID, on_cpuid)
    result, out = run_kernel("vmx_exits", tmp_path, setup)
    assert result.status == 1
    expected = free_run("vmx_exits").decode()
    for old, new in [
            ("in al, 0xe9 (debugcon readback): e9\n", "in al, 0xe9 (debugcon readback): 5a\n"),
            ("wrmsr/rdmsr sysenter_cs=00000000:00000008 esp=00123450 eip=00101000\n",
             "wrmsr/rdmsr sysenter_cs=00000000:00000008 esp=cafef00d eip=00000000\n"),
            ("cpuid 0: max leaf >= 1: yes, vendor is 12 printable chars: yes\n",
             "cpuid 0: max leaf >= 1: no, vendor is 12 printable chars: no\n")]:
        assert expected.count(old) == 1
        expected = expected.replace(old, new)
    assert out.decode() == expected
    assert insn_at("vmx_exits", seen["in"].rip).op_str == "al, 0xe9"


def test_a_handler_writes_guest_memory_the_kernel_then_reads():
    """At the first console byte, overwrite the multiboot command line (MBI field `cmdline` at +16, Multiboot 0.6.96
    §3.3) in guest memory: hello prints the new string."""
    done = []

    def handler(record, monitor):
        if not done:
            cpu = monitor.machine.cpu
            mbi = monitor.machine.boot_info.mbi_addr
            cmdline = int.from_bytes(cpu.read_phys(mbi + 16, 4), "little")
            cpu.write_phys(cmdline, b"patched by a handler\0")
            done.append(cmdline)
        return None

    def setup(m):
        exit_on_debugcon(m)
        m.vmx.on(ExitReason.IO_INSTRUCTION, handler)
    result, out = run_kernel("hello", setup=setup)
    free = free_run("hello")
    assert result.status == 1 and done
    assert f'cmdline="{FW / "hello.elf"} "'.encode() in free
    line = next(x for x in free.split(b"\n") if x.startswith(b"cmdline="))
    assert out == free.replace(line, b'cmdline="patched by a handler"')


def test_emulating_an_out_after_the_handler_changed_eax_sends_the_new_value():
    """The exit comes before the OUT executes (SDM Vol. 3C §26.1), so emulating it after a handler changed AL
    writes the new AL: every 'l' of the transcript becomes 'L'."""
    def handler(record, monitor):
        if record.regs["eax"] & 0xFF == ord("l"):
            monitor.machine.cpu.set_reg("eax", record.regs["eax"] & ~0xFF | ord("L"))
        return Decision.EMULATE

    def setup(m):
        exit_on_debugcon(m)
        m.vmx.on(ExitReason.IO_INSTRUCTION, handler)
    result, out = run_kernel("hello", setup=setup)
    assert out == free_run("hello").replace(b"l", b"L")


def test_emulating_an_outs_element_reads_memory_after_the_handler(tmp_path):
    """vmx_exits prints "rep outsb to the debug console" with `rep outsb`; at its first element the handler writes
    "REP" at the element's guest-linear address (DS:ESI): the emulated elements send the new bytes."""
    done = []

    def handler(record, monitor):
        if record.decoded.string and not done:
            monitor.machine.cpu.write_virt(record.guest_linear, b"REP")
            done.append(record)
        return None

    def setup(m):
        exit_on_debugcon(m)
        m.vmx.on(ExitReason.IO_INSTRUCTION, handler)
    result, out = run_kernel("vmx_exits", tmp_path, setup)
    assert done and insn_at("vmx_exits", done[0].rip).mnemonic == "rep outsb"
    assert b"REP outsb to the debug console\n" in out


# --- Inject ------------------------------------------------------------------------------------------------------

def test_injecting_ud_at_every_vmcall_gives_qemus_transcript():
    """Under QEMU VMCALL raises #UD (no VMX root); injecting #UD at each VMCALL exit makes `hypercall` behave the same:
    its #UD handler reports the VMCALL's address and skips it."""
    seen = []

    def setup(m):
        m.vmx.on(ExitReason.VMCALL, lambda record, monitor: seen.append(record) or Inject(6))
    result, out = run_kernel("hypercall", setup=setup)
    assert result.status == 1
    assert len(seen) == 2
    for record in seen:
        assert text_bytes(FW / "hypercall.elf", record.rip, 3) == b"\x0f\x01\xc1"
        assert f"  vmcall raised #UD at {record.rip:08x} (no hypervisor)\n  result -1".encode() in out
    assert out.endswith(b"hypercall done: 2 #UD\n")
    require_tool("qemu-system-i386")
    qemu = qemu_ref.run_qemu(FW / "hypercall.elf")
    assert (qemu.status, qemu.stdout) == (1, out)


def test_injecting_gp_at_an_out_reports_that_instruction():
    """#GP(0x1234) injected at the OUT of the first byte after "cpu_events start\\n": the kernel's handler prints it
    with the OUT's address (it expected no event: want 0), returns to the OUT, which then prints its byte."""
    seen = []

    def handler(record, monitor):
        if not seen and monitor.machine.console_bytes.endswith(b"cpu_events start\n"):
            seen.append(record)
            return Inject(13, InterruptionType.HARDWARE_EXCEPTION, 0x1234)
        return None

    def setup(m):
        exit_on_debugcon(m)
        m.vmx.on(ExitReason.IO_INSTRUCTION, handler)
    result, out = run_kernel("cpu_events", setup=setup)
    assert result.status == 1 and len(seen) == 1
    insn = insn_at("cpu_events", seen[0].rip)
    assert insn.mnemonic == "out" and insn.op_str.endswith("al")
    line = f"  #GP vector=13 error=1234 eip=WRONG cpl=0 (got {seen[0].rip:08x} want 00000000)\n".encode()
    start = b"cpu_events start\n"
    assert out == free_run("cpu_events").replace(start, start + line, 1)


def test_injecting_ud_instead_of_int3_then_letting_int3_through():
    """First INT3 exit: inject #UD (a fault: its handler sees the INT3's own address, then returns to it); the INT3
    runs again, exits again, and is delivered normally (a trap: EIP after it, as the kernel expects)."""
    seen = []

    def setup(m):
        m.vmx.controls.exception_bitmap = 1 << 3
        m.vmx.on(ExitReason.EXCEPTION_NMI, lambda record, monitor: seen.append(record) or (
            Inject(6) if len(seen) == 1 else None))
    result, out = run_kernel("cpu_events", setup=setup)
    assert result.status == 1
    assert len(seen) == 2 and seen[0].rip == seen[1].rip
    assert insn_at("cpu_events", seen[0].rip).mnemonic == "int3"
    bp_line = b"  #BP vector=3 error=0000 eip=expected cpl=0\n"
    ud_line = f"  #UD vector=6 error=0000 eip=WRONG cpl=0 (got {seen[0].rip:08x} want {seen[0].rip + 1:08x})\n"
    assert out == free_run("cpu_events").replace(bp_line, ud_line.encode() + bp_line, 1)


def test_injecting_ud_at_cpuid_reaches_the_default_handler(tmp_path):
    """vmx_exits installs no #UD handler: the library's default prints the vector and the CPUID's address and
    ends with exit(0x7F) (status 0xFF)."""
    seen = []

    def setup(m):
        m.vmx.on(ExitReason.CPUID, lambda record, monitor: seen.append(record) or Inject(6))
    result, out = run_kernel("vmx_exits", tmp_path, setup)
    assert result.status == 0xFF and len(seen) == 1
    assert insn_at("vmx_exits", seen[0].rip).mnemonic == "cpuid"
    free = free_run("vmx_exits")
    before = free[:free.index(b"cpuid 0:")]
    assert out == before + f"unexpected vector 6 error 0 eip {seen[0].rip:08x} cs 8\n".encode()


@pytest.mark.parametrize("reason,mnemonic,bitmap", [(ExitReason.CPUID, "cpuid", 0), (ExitReason.RDMSR, "rdmsr", 0),
                                                    (ExitReason.EXCEPTION_NMI, "int3", 1 << 3)],
                         ids=["cpuid", "rdmsr", "int3"])
def test_an_injected_software_interrupt_returns_after_the_instruction(tmp_path, reason, mnemonic, bitmap):
    """Injecting a software interrupt (type 4) pushes RIP + the VM-entry instruction length (SDM Vol. 3C
    §27.6.1.1; a VMM passes the exit's instruction length, as when it reflects an INT n/INT3). vmx_exits has no handler
    for vector 0x30: the library's default prints the pushed EIP, which must be the next instruction's."""
    seen = []

    def setup(m):
        m.vmx.controls.exception_bitmap = bitmap
        m.vmx.on(reason, lambda record, monitor: seen.append(record) or
                 Inject(0x30, InterruptionType.SOFTWARE_INTERRUPT))
    result, out = run_kernel("vmx_exits", tmp_path, setup)
    assert result.status == 0xFF and len(seen) == 1
    insn = insn_at("vmx_exits", seen[0].rip)
    assert insn.mnemonic == mnemonic and seen[0].insn_len == insn.size
    assert out.endswith(f"unexpected vector 48 error 0 eip {seen[0].rip + insn.size:08x} cs 8\n".encode())
