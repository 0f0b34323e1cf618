"""Real gdb (batch mode) against the stub serving a real Machine running firmware/build/vmx_exits.elf.

The guest's behaviour is the oracle: the kernel prints what it read back (``pic imr=..``), so a
register written from gdb must show up in its console output; the ATA status 0x50 (DRDY|DSC) is what
QEMU's hw/ide/core.c reports for an idle drive; addresses and code bytes come from the ELF (pyelftools).
"""
from __future__ import annotations

import re
import subprocess
import threading

import pytest

from emu.debug.gdbstub import SessionEnd
from emu.debug.machine_target import ExitReportingStub, MachineTarget, run_with_gdb
from emu.machine import EndReason, Machine, MachineConfig
from emu.vmx.controls import PrimaryControls
from tests.conftest import require_tool
from tests.debug.firmware import VMX_EXITS, code_bytes, entry, find_in, symbols
from tests.debug.gdbrun import run_gdb
from tools.qemu_ref import make_reference_disk

pytestmark = pytest.mark.gdb


class SpinWatch(MachineTarget):
    """MachineTarget that says when gdb resumes the guest after planting ``jmp $`` (eb fe) in its code."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.planted = False
        self.spinning = threading.Event()

    def write_memory(self, tid, addr, data):
        super().write_memory(tid, addr, data)
        if data == b"\xeb\xfe":
            self.planted = True

    def resume(self, actions):
        if self.planted:
            self.spinning.set()
        return super().resume(actions)


def _index(lines: list[str], pattern: str, start: int = 0) -> int:
    for i in range(start, len(lines)):
        if re.search(pattern, lines[i]):
            return i
    raise AssertionError(f"no line matching {pattern!r} after line {start} in:\n" + "\n".join(lines))


def test_gdb_session_on_vmx_exits(tmp_path) -> None:
    """Connect, registers, break kmain, stepi over `out`, x/16xb, set $eax, break-exit, info, watch, break-in, detach."""
    require_tool("gdb")
    disk = make_reference_disk(tmp_path / "disk.img")
    console = bytearray()
    machine = Machine(MachineConfig(kernel=str(VMX_EXITS), disks=[str(disk)]), console=console.append)
    machine.vmx.controls.primary |= PrimaryControls.UNCONDITIONAL_IO   # a VMM that sees every I/O instruction
    target = SpinWatch(machine)
    syms = symbols(VMX_EXITS)
    kmain = syms["kmain"][0]
    out21 = find_in(VMX_EXITS, "kmain", bytes.fromhex("b0fbe621")) + 2   # mov al,0xfb; out 0x21,al
    ticks = syms["ticks"][0]
    packets: list[str] = []
    run = run_gdb(target, [
        "info registers",
        "break kmain",
        "continue",
        "x/16xb $pc",
        f"break *{out21:#x}",
        "continue",
        "x/i $pc",
        "set $eax = 0xa5",
        "stepi",
        "p/x $pc",
        "monitor exits 1",
        "monitor info pic",
        "delete",
        "monitor break-exit IO_INSTRUCTION port=0x1f7",
        "continue",
        "monitor exits 1",
        "monitor info ide",
        "monitor info bmdma",
        "monitor clear-exit",
        "watch *(unsigned int *)&ticks",
        "continue",
        "delete",
        "monitor icount",
        "set $orig = *(unsigned short *)$pc",
        "set {unsigned short}$pc = 0xfeeb",
        "continue",
        "p/x $pc",
        "set {unsigned short}$pc = $orig",
        "info threads",
        "detach",
    ], break_in=lambda: target.spinning.wait(60), stub=ExitReportingStub(target, trace=packets.append),
        executable=str(VMX_EXITS))
    out = [line.rstrip() for line in run.stdout.splitlines()]
    err = run.stderr
    assert run.returncode == 0, run.transcript
    assert run.session is SessionEnd.DETACHED, run.transcript
    assert run.announce.startswith("emu: gdb stub listening on 127.0.0.1:")
    # connected at the ELF entry point with the multiboot entry state (Multiboot spec 3.2: EAX = 0x2BADB002)
    i = _index(out, rf"^0x{entry(VMX_EXITS):08x} in _start \(\)$")
    _index(out, r"^eax\s+0x2badb002\s", i)
    _index(out, rf"^eip\s+0x{entry(VMX_EXITS):x}\s+0x{entry(VMX_EXITS):x} <_start>$", i)
    # break kmain (gdb skips the prologue), continue
    i = _index(out, r"^Breakpoint 1, 0x([0-9a-f]{8}) in kmain \(\)$", i)
    bp1 = int(re.search(r"0x([0-9a-f]{8})", out[i]).group(1), 16)
    assert kmain <= bp1 < kmain + 16
    # x/16xb $pc: the ELF's bytes
    want = code_bytes(VMX_EXITS, bp1, 16)
    dumped = []
    for line in out[i + 1:i + 3]:
        dumped += [int(x, 16) for x in line.split(":", 1)[1].split()]
    assert bytes(dumped) == want
    # break at the `out 0x21, al`, continue, stepi over it with EAX rewritten to 0xa5
    i = _index(out, rf"^Breakpoint 2, 0x{out21:08x} in kmain \(\)$", i)
    i = _index(out, rf"^=> 0x{out21:x} <kmain\+{out21 - kmain}>:\s+out\s+%al,\$0x21$", i)
    i = _index(out, rf"^\$1 = 0x{out21 + 2:x}$", i)
    assert re.search(rf"IO_INSTRUCTION out port=0x21 size=1 value=0xa5 qual=0x210040 rip=0x{out21:08x} len=2", err)
    assert re.search(r"master irr=.. imr=a5 ", err)
    # break-exit on the ATA status port: gdb shows the exit, then the SIGTRAP stop right after the `in`
    assert "will stop after exits IO_INSTRUCTION port=0x1f7" in err
    # (gdb prints target console output, the `O` packet sent before the stop reply, on stderr)
    m_rip = re.search(r"(?m)^exit icount=\d+ guest=1 IO_INSTRUCTION in port=0x1f7 size=1 value=0x50 .*"
                      r"rip=0x([0-9a-f]+) len=1$", err)
    assert m_rip, err
    rip = int(m_rip.group(1), 16)
    assert code_bytes(VMX_EXITS, rip, 1) == b"\xec"      # in al, dx
    i = _index(out, r"^Program received signal SIGTRAP, Trace/breakpoint trap\.$", i)
    assert re.fullmatch(rf"0x{rip + 1:08x} in \w+ \(\)", out[i + 1]), out[i + 1]   # kmain or an ATA helper
    assert "status=0x50" in err and "base               0xc000" in err and "cleared 1 exit break(s)" in err
    # watchpoint on `ticks`: the PIT handler increments it
    i = _index(out, r"^Hardware watchpoint 3: \*\(unsigned int \*\)&ticks$", i)
    i = _index(out, r"^Old value = 0$", i)
    assert out[i + 1] == "New value = 1"
    m_pc = re.fullmatch(r"0x([0-9a-f]{8}) in on_timer \(\)", out[i + 2])
    assert m_pc, out[i + 2]
    watch_pc = int(m_pc.group(1), 16)
    # break-in while the guest spins on the planted `jmp $`
    i = _index(out, r"^Program received signal SIGINT, Interrupt\.$", i)
    assert out[i + 1] == f"0x{watch_pc:08x} in on_timer ()"
    i = _index(out, rf"^\$2 = 0x{watch_pc:x}$", i)
    i = _index(out, r"^\* 1\s+Thread 1 \(guest 1 vmx_exits\.elf\)", i)
    _index(out, r"^\[Inferior 1 \(Remote target\) detached\]$", i)
    # detached with the code restored: the guest runs on to its normal end; the register write took effect
    result = machine.run()
    assert (result.reason, result.status) == (EndReason.DEBUG_EXIT, 1)
    text = console.decode()
    assert "pic imr=a5\n" in text and text.endswith("vmx_exits done\n")
    assert "matches what was written" in text


class _Announce:
    """A text stream that remembers the port the stub announces."""

    def __init__(self) -> None:
        self.text = ""
        self.ready = threading.Event()

    def write(self, s: str) -> int:
        self.text += s
        if "listening on" in self.text:
            self.ready.set()
        return len(s)

    def flush(self) -> None:
        pass

    @property
    def port(self) -> int:
        return int(re.search(r"listening on 127\.0\.0\.1:(\d+)", self.text).group(1))


@pytest.mark.parametrize("how", ["continue", "detach"])
def test_run_with_gdb_as_emu_run_does(how: str) -> None:
    """``run_with_gdb`` (what ``emu run --gdb`` calls): loopback, announced; the run ends as without gdb."""
    require_tool("gdb")
    console = bytearray()
    machine = Machine(MachineConfig(kernel=str(VMX_EXITS)), console=console.append)
    stream = _Announce()
    result: dict = {}
    server = threading.Thread(target=lambda: result.update(r=run_with_gdb(machine, "0", stream=stream)))
    server.start()
    assert stream.ready.wait(30)
    proc = subprocess.run(["gdb", "-batch", "-nx", "-ex", "set architecture i386", "-ex",
                           f"target remote 127.0.0.1:{stream.port}", "-ex", how],
                          capture_output=True, text=True, timeout=60)
    server.join(60)
    assert not server.is_alive()
    assert (result["r"].reason, result["r"].status) == (EndReason.DEBUG_EXIT, 1)
    assert console.decode().endswith("vmx_exits done\n")
    if how == "continue":
        assert "[Inferior 1 (Remote target) exited with code 01]" in proc.stdout
    else:
        assert "[Inferior 1 (Remote target) detached]" in proc.stdout
        assert "emu: gdb detached; the guest runs on" in stream.text
