"""MachineTarget and the Python API against real firmware, without gdb.

Oracles: a free run of the same kernel (``Machine.run``, whose exact instruction count is tested
elsewhere) — stepping must reproduce it instruction for instruction; the guest's own data (its IDT,
its variables, its console lines); the ELF (pyelftools) for addresses and code bytes; the SDM for
exit qualifications.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import capstone
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.debug.api import Session
from emu.debug.machine_target import MachineTarget
from emu.debug.target import (BreakKind, MemoryAccessError, RegisterAccessError, ResumeAction, ResumeKind,
                              StopEvent, StopKind, StopReason, SIGINT, SIGTRAP)
from emu.machine import EndReason, Machine, MachineConfig
from emu.vmx.controls import PinControls, PrimaryControls
from tests.conftest import FIRMWARE, ROOT
from tests.debug.client import StubClient, quiet_stub
from tests.debug.firmware import VMX_EXITS, code_bytes, entry, find_in, symbols
from tests.debug.test_fuzz import PACKET_SIZE, STOP_REPLY, _sync_then_halt_reason, junk_item
from tools.qemu_ref import make_reference_disk

STEP = {1: ResumeAction(ResumeKind.STEP)}
CONT = {1: ResumeAction(ResumeKind.CONTINUE)}
SYMS = symbols(VMX_EXITS)
OUT21 = find_in(VMX_EXITS, "kmain", bytes.fromhex("b0fbe621")) + 2      # out 0x21, al (imm8)
STI_HLT = find_in(VMX_EXITS, "kmain", bytes.fromhex("fbf4"))           # sti; hlt (sti_hlt() in test_hlt)
TICKS = SYMS["ticks"][0]


def _machine(kernel: Path = VMX_EXITS, disk: Path | None = None, vmm: bool = False) -> Machine:
    """The kernel's machine; ``vmm``: I/O, HLT and external interrupts exit (a VMM that watches them)."""
    m = Machine(MachineConfig(kernel=str(kernel), disks=[str(disk)] if disk else []), console=lambda b: None)
    if vmm:
        m.vmx.controls.primary |= PrimaryControls.UNCONDITIONAL_IO | PrimaryControls.HLT
        m.vmx.controls.pin |= PinControls.EXTERNAL_INTERRUPT_EXITING
    return m


def _free_run(kernel: Path = VMX_EXITS, disk: Path | None = None, max_insns: int | None = None) -> Machine:
    m = _machine(kernel, disk)
    m.run(max_insns=max_insns)
    return m


def test_stepping_the_whole_kernel_equals_the_free_run(tmp_path) -> None:
    """Every step retires exactly one instruction; stepping reproduces the free run (console, count, registers).

    vmx_exits with a disk covers port I/O of every form (imm8, dx, rep outsw 256 words, rep insd),
    HLT woken by the PIT (interrupt delivery), INT3 and the final debug exit.
    """
    disk = make_reference_disk(tmp_path / "a.img")
    ref = _free_run(VMX_EXITS, make_reference_disk(tmp_path / "b.img"))
    m = _machine(VMX_EXITS, disk)
    t = MachineTarget(m)
    steps = 0
    while True:
        before = m.cpu.icount
        ev = t.resume(STEP)
        if ev.kind is not StopKind.SIGNAL:
            break
        steps += 1
        assert ev.signal == SIGTRAP
        assert m.cpu.icount == before + 1, f"step {steps} at {m.cpu.reg('eip'):#x} retired {m.cpu.icount - before}"
    assert ev.kind is StopKind.EXITED and ev.status == ref.end.status == 1
    assert bytes(m.console_bytes) == bytes(ref.console_bytes)
    assert b"matches what was written" in m.console_bytes and b"woken by the PIT (irq 0): yes" in m.console_bytes
    assert m.cpu.icount == ref.cpu.icount == steps + 1   # the last step ran `out 0xf4` and ended the guest
    assert m.cpu.regs() == ref.cpu.regs()
    assert disk.read_bytes() == (tmp_path / "b.img").read_bytes()


def test_breakpoint_stops_before_the_instruction_at_the_exact_count() -> None:
    m = _machine(vmm=True)
    t = MachineTarget(m)
    assert t.insert_breakpoint(BreakKind.SOFTWARE, OUT21, 1)
    ev = t.resume(CONT)
    assert (ev.signal, ev.reason, ev.addr) == (SIGTRAP, StopReason.SWBREAK, OUT21)
    assert m.cpu.reg("eip") == OUT21
    ref = _free_run(max_insns=m.cpu.icount)   # the free run after the same count is at the same instruction
    assert ref.cpu.reg("eip") == OUT21 and ref.cpu.regs() == m.cpu.regs()
    assert not any(r.port == 0x21 and r.value == 0xFB for r in t.guests[0].exits)   # the OUT has not run
    # resuming from the breakpoint executes it (no second stop at the same address)
    ev = t.resume(STEP)
    assert m.cpu.reg("eip") == OUT21 + 2 and ev.reason is StopReason.NONE
    t.remove_breakpoint(BreakKind.SOFTWARE, OUT21, 1)
    assert t.resume(CONT).kind is StopKind.EXITED


def test_breakpoint_in_a_loop_hits_every_iteration() -> None:
    """`jmp $` planted by the debugger: a breakpoint on it stops after every single iteration."""
    m = _machine()
    t = MachineTarget(m)
    t.insert_breakpoint(BreakKind.HARDWARE, OUT21, 1)
    t.resume(CONT)
    t.write_memory(1, OUT21, b"\xeb\xfe")
    counts = []
    for _ in range(3):
        ev = t.resume(CONT)
        assert (ev.reason, ev.addr) == (StopReason.HWBREAK, OUT21)
        counts.append(m.cpu.icount)
    assert counts[1] - counts[0] == counts[2] - counts[1] == 1


def test_step_over_out_runs_the_device_once() -> None:
    m = _machine(vmm=True)
    t = MachineTarget(m)
    t.insert_breakpoint(BreakKind.SOFTWARE, OUT21, 1)
    t.resume(CONT)
    t.remove_breakpoint(BreakKind.SOFTWARE, OUT21, 1)
    t.write_register(1, "eax", 0x5A)
    before, exits = m.cpu.icount, len(t.guests[0].exits)
    ev = t.resume(STEP)
    assert ev.kind is StopKind.SIGNAL and m.cpu.icount == before + 1 and m.cpu.reg("eip") == OUT21 + 2
    new = list(t.guests[0].exits)[exits:]
    assert len(new) == 1
    rec = new[0]
    # SDM Vol. 3C Table 28-5: port in bits 31:16, bit 6 = immediate operand, size-1 = 0, bit 3 = 0 (OUT)
    assert (rec.reason, rec.qualification, rec.value, rec.rip, rec.insn_len, rec.icount) == \
        (30, 0x21 << 16 | 1 << 6, 0x5A, OUT21, 2, before)
    assert "imr=5a" in t.monitor("info pic").splitlines()[1]


def _gate_target(m: Machine, vector: int) -> int:
    base, _limit = m.cpu.descriptor_table("idtr")
    gate = m.cpu.read_virt(base + 8 * vector, 8)
    return int.from_bytes(gate[0:2], "little") | int.from_bytes(gate[6:8], "little") << 16


def test_step_across_sti_hlt_into_the_timer_handler() -> None:
    """sti (1 instruction), hlt (1 instruction: halts, the PIT fires, IRQ 0 is delivered): the stop is the
    first instruction of the guest's IDT vector 0x20 handler, the return EIP pushed is after the hlt."""
    m = _machine(vmm=True)
    t = MachineTarget(m)
    t.insert_breakpoint(BreakKind.SOFTWARE, STI_HLT, 1)
    t.resume(CONT)
    t.remove_breakpoint(BreakKind.SOFTWARE, STI_HLT, 1)
    n0 = m.cpu.icount
    t.resume(STEP)
    assert (m.cpu.icount, m.cpu.reg("eip")) == (n0 + 1, STI_HLT + 1)
    assert m.cpu.reg("eflags") & (1 << 9)
    idle0 = m.cpu.idle
    ev = t.resume(STEP)
    assert ev.kind is StopKind.SIGNAL and m.cpu.icount == n0 + 2
    assert m.cpu.idle > idle0                                   # virtual time warped over the halt
    assert m.cpu.reg("eip") == _gate_target(m, 0x20)            # the guest's IRQ 0 stub, not yet executed
    esp = m.cpu.reg("esp")
    assert int.from_bytes(m.cpu.read_virt(esp, 4), "little") == STI_HLT + 2   # return EIP: after the hlt
    assert not m.cpu.reg("eflags") & (1 << 9)                   # interrupt gate cleared IF
    reasons = [r.reason_name for r in list(t.guests[0].exits)[-2:]]
    assert reasons == ["HLT", "EXTERNAL_INTERRUPT"] and t.guests[0].exits[-1].vector == 0x20
    # the next step runs the handler's first instruction
    t.resume(STEP)
    assert m.cpu.icount == n0 + 3


def _at_kmain(m: Machine) -> MachineTarget:
    """A target stopped at kmain (after _start's BSS clear, which writes `ticks` too)."""
    t = MachineTarget(m)
    t.insert_breakpoint(BreakKind.SOFTWARE, SYMS["kmain"][0], 1)
    assert t.resume(CONT).reason is StopReason.SWBREAK
    t.remove_breakpoint(BreakKind.SOFTWARE, SYMS["kmain"][0], 1)
    return t


def test_watchpoint_sees_the_bss_clear() -> None:
    """`rep stosl` in _start writes the zero that is already there: a write watchpoint still triggers (x86 does)."""
    m = _machine()
    t = MachineTarget(m)
    t.insert_breakpoint(BreakKind.WRITE, TICKS, 4)
    ev = t.resume(CONT)
    assert (ev.reason, ev.addr) == (StopReason.WATCH, TICKS)
    # stopped inside `rep stosl` right after the element that wrote `ticks` (SDM Vol. 3B §18.3.1.2: data
    # breakpoints on repeated string instructions trap after the iteration): EDI is past it, ECX counts the rest
    assert code_bytes(VMX_EXITS, m.cpu.reg("eip"), 2) == b"\xf3\xab"
    assert m.cpu.reg("edi") == TICKS + 4 and m.cpu.reg("ecx") > 0


def test_write_watchpoint_stops_after_the_write() -> None:
    m = _machine()
    t = _at_kmain(m)
    t.insert_breakpoint(BreakKind.WRITE, TICKS, 4)
    ev = t.resume(CONT)
    assert (ev.reason, ev.addr) == (StopReason.WATCH, TICKS)
    assert int.from_bytes(t.read_memory(1, TICKS, 4), "little") == 1
    eip, n = m.cpu.reg("eip"), m.cpu.icount
    on_timer, size = SYMS["on_timer"]
    assert on_timer < eip < on_timer + size
    # the instruction just before EIP writes `ticks` (decoded from the ELF)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    insns = list(md.disasm(code_bytes(VMX_EXITS, on_timer, size), on_timer))
    prev = [i for i in insns if i.address + i.size == eip]
    assert prev and f"{TICKS:#x}" in prev[0].op_str
    # exact: the free run has ticks == 0 one instruction earlier and 1 at this count
    assert int.from_bytes(_free_run(max_insns=n - 1).cpu.read_phys(TICKS, 4), "little") == 0
    late = _free_run(max_insns=n)
    assert late.cpu.reg("eip") == eip and int.from_bytes(late.cpu.read_phys(TICKS, 4), "little") == 1
    t.remove_breakpoint(BreakKind.WRITE, TICKS, 4)
    ev = t.resume(CONT)
    assert ev.kind is StopKind.EXITED and ev.status == 1
    assert bytes(m.console_bytes) == bytes(_free_run().console_bytes)


def test_read_watchpoint_and_access_watchpoint() -> None:
    m = _machine()
    t = _at_kmain(m)
    t.insert_breakpoint(BreakKind.READ, TICKS, 4)
    ev = t.resume(CONT)
    assert (ev.reason, ev.addr) == (StopReason.RWATCH, TICKS)
    t.remove_breakpoint(BreakKind.READ, TICKS, 4)
    t.insert_breakpoint(BreakKind.ACCESS, TICKS, 4)
    ev = t.resume(CONT)
    assert (ev.reason, ev.addr) == (StopReason.AWATCH, TICKS)


def test_break_exit_io_port_and_monitor_exits(tmp_path) -> None:
    m = _machine(VMX_EXITS, make_reference_disk(tmp_path / "d.img"))
    t = MachineTarget(m)
    assert "will stop" in t.monitor("break-exit IO_INSTRUCTION port=0x1f7")
    ev = t.resume(CONT)
    assert ev.signal == SIGTRAP and "IO_INSTRUCTION in port=0x1f7 size=1 value=0x50" in ev.info
    rec = t.guests[0].exits[-1]
    assert code_bytes(VMX_EXITS, rec.rip, 1) == b"\xec"             # in al, dx
    assert m.cpu.reg("eip") == rec.rip + rec.insn_len and m.cpu.icount == rec.icount + 1
    assert rec.qualification == 0x1F7 << 16 | 1 << 3                # IN, DX operand, byte (SDM Table 28-5)
    out = t.monitor("exits 3").splitlines()
    assert len(out) == 3 and "port=0x1f7" in out[-1] and "port=0x1f6" in out[-2]
    assert "status=0x50" in t.monitor("info ide")
    assert "base               0xc000" in t.monitor("info bmdma")
    assert "cleared IO_INSTRUCTION port=0x1f7" in t.monitor("clear-exit IO_INSTRUCTION port=0x1f7")
    assert t.monitor("break-exit hlt").startswith("will stop after exits HLT")
    ev = t.resume(CONT)
    assert "HLT" in ev.info and t.guests[0].exits[-1].reason_name == "HLT"
    assert t.monitor("clear-exit").startswith("cleared 1")
    assert t.resume(CONT).kind is StopKind.EXITED


def test_monitor_errors_and_help() -> None:
    t = MachineTarget(_machine())
    assert "unknown exit reason" in t.monitor("break-exit NOPE")
    assert "error: unexpected argument 'pot=1'" in t.monitor("break-exit IO_INSTRUCTION pot=1")
    assert "no exit break" in t.monitor("clear-exit HLT")
    help_text = t.monitor("help")
    for cmd in ("exits [N]", "break-exit REASON", "clear-exit", "info pic", "info pit", "info pci", "info ide",
                "info bmdma", "info nic", "info vmx", "icount", "trap"):
        assert cmd in help_text
    assert re.fullmatch(r"guest 1: icount=0 vtime=0 idle=0\n", t.monitor("icount"))
    assert "no ne2000" not in t.monitor("info nic") and "no nic on this machine" in t.monitor("info nic")
    assert "no trap handler" in t.monitor("trap")
    assert t.monitor("exits") == "no VM exits recorded\n"


def test_registers_and_memory_errors() -> None:
    m = _machine()
    t = MachineTarget(m)
    regs = t.read_registers(1)
    assert regs["eax"] == 0x2BADB002 and regs["eip"] == entry(VMX_EXITS)   # multiboot spec 3.2
    with pytest.raises(RegisterAccessError):
        t.write_register(1, "st0", 1)
    with pytest.raises(MemoryAccessError):
        t.read_memory(1, m.cpu.mem_size + 0x1000, 4)
    with pytest.raises(MemoryAccessError):
        t.write_memory(1, 0xFFFF_F000, b"\x90")
    kmain = SYMS["kmain"][0]
    assert t.read_memory(1, kmain, 16) == code_bytes(VMX_EXITS, kmain, 16)
    # a selector the CPU refuses (beyond the GDT limit, or RPL 3 for SS at CPL 0): E01, the guest is unharmed
    for reg, value in (("cs", 0x1234), ("ss", 0x3), ("ds", 0x8888)):
        with pytest.raises(RegisterAccessError):
            t.write_register(1, reg, value)
    assert t.read_registers(1) == regs
    assert t.resume(CONT).kind is StopKind.EXITED
    assert bytes(m.console_bytes) == bytes(_free_run().console_bytes)


def test_interrupt_while_running_then_finish_like_the_free_run() -> None:
    """interrupt() from another thread stops a long run (compute.elf); continuing gives the free run's output."""
    kernel = FIRMWARE / "compute.elf"
    m = _machine(kernel)
    t = MachineTarget(m)
    def fire_when_running() -> None:
        t.running.wait(10)
        for _ in range(10_000):          # until the guest has really started (the count lives in C memory)
            if m.cpu.icount > 1000:
                break
            time.sleep(0.001)
        t.interrupt()

    fire = threading.Thread(target=fire_when_running)
    fire.start()
    ev = t.resume(CONT)
    fire.join()
    assert (ev.kind, ev.signal, ev.thread) == (StopKind.SIGNAL, SIGINT, 1)
    assert 0 < m.cpu.icount < 126_000_000 and m.end is None
    # a pending interrupt with nothing running: the next resume stops before executing anything
    t.interrupt()
    n = m.cpu.icount
    assert t.resume(STEP).signal == SIGINT and m.cpu.icount == n
    ev = t.resume(CONT)
    assert ev.kind is StopKind.EXITED and ev.status == 1
    ref = _free_run(kernel)
    assert bytes(m.console_bytes) == bytes(ref.console_bytes) and m.cpu.icount == ref.cpu.icount


def test_two_guests_are_two_threads() -> None:
    a, b = _machine(), _machine()
    t = MachineTarget([a, b])
    assert t.threads() == [1, 2] and t.thread_name(2) == "guest 2 vmx_exits.elf"
    t.insert_breakpoint(BreakKind.SOFTWARE, OUT21, 1)
    both = {1: ResumeAction(ResumeKind.CONTINUE), 2: ResumeAction(ResumeKind.CONTINUE)}
    ev = t.resume(both)
    assert (ev.thread, ev.reason) == (1, StopReason.SWBREAK) and a.cpu.reg("eip") == OUT21
    ev = t.resume({2: ResumeAction(ResumeKind.STEP)})              # guest 1 stays stopped
    assert ev.thread == 2 and b.cpu.icount == 1 and a.cpu.reg("eip") == OUT21
    ev = t.resume(both)
    assert ev.thread == 1 and "debug exit" in ev.info             # guest 1 ran to its end first
    assert t.thread_name(1).endswith("(ended)")
    ev = t.resume(both)
    assert (ev.thread, ev.reason) == (2, StopReason.SWBREAK) and b.cpu.reg("eip") == OUT21
    ev = t.resume(both)
    assert ev.kind is StopKind.EXITED


def test_shutdown_is_reported_as_exit() -> None:
    m = _machine(FIRMWARE / "triple_fault.elf")
    t = MachineTarget(m)
    ev = t.resume(CONT)
    assert ev.kind is StopKind.EXITED and ev.status == 0 and m.end.reason is EndReason.SHUTDOWN
    assert t.guests[0].exits[-1].reason_name == "TRIPLE_FAULT"


def test_session_api() -> None:
    s = Session(_machine())
    assert s.step(5).icount == 5
    stop = s.next_exit("IO_INSTRUCTION", port=0x21)
    assert stop.kind == "exit" and stop.exit.port == 0x21 and stop.exit.value == 0xFB
    assert stop.eip == OUT21 + 2 and stop.icount == stop.exit.icount + 1
    stop = s.next_exit("HLT")
    assert stop.exit.reason_name == "HLT" and code_bytes(VMX_EXITS, stop.exit.rip, 1) == b"\xf4"
    target = s.icount + 1000
    assert s.run_until(target).icount == target
    s.set_reg("ecx", 0x1234)
    assert s.regs["ecx"] == 0x1234
    s.write(0x7000, b"\x12\x34")
    assert s.read(0x7000, 2) == b"\x12\x34"
    s.add_breakpoint(SYMS["exit"][0])
    stop = s.cont()
    assert (stop.kind, stop.eip) == ("breakpoint", SYMS["exit"][0])
    s.remove_breakpoint(SYMS["exit"][0])
    stop = s.cont()
    assert (stop.kind, stop.status) == ("ended", 1) and s.ended


def test_docs_example_runs(monkeypatch, capsys) -> None:
    """The Python example in docs/debugger.md runs as written (from the repository root) and prints what it says."""
    monkeypatch.chdir(ROOT)
    text = (ROOT / "docs" / "debugger.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = [b for b in blocks if "from emu.debug.api import Session" in b]
    assert example, "docs/debugger.md has no Session example"
    exec(compile(example[0], "docs/debugger.md", "exec"), {"__name__": "__doc_example__"})
    printed = capsys.readouterr().out.splitlines()
    promised = [line.split("# prints: ", 1)[1] for line in example[0].splitlines() if "# prints: " in line]
    assert promised and all(any(p in line for line in printed) for p in promised), printed


def test_host_scenario_guests_and_trap_state() -> None:
    """``serve_host``'s target: the demo scenario's guests are threads by name; `monitor trap` shows the handler,
    whose I/O exits keep arriving while the debugger drives the guests."""
    from emu.hypervisor.host import Host
    from emu.hypervisor.scenario import load

    host = Host(load(ROOT / "fixtures" / "demo" / "scenario.toml"))
    try:
        names = list(host.machines)
        t = MachineTarget([host.machines[n] for n in names], names=names, trap=host.trap)
        assert [t.thread_name(i) for i in t.threads()] == ["guest 1 app", "guest 2 mgmt"]
        assert t.monitor("trap").splitlines()[:2] == ["trapped exits: 0", "validations: 0"]
        t.monitor("break-exit IO_INSTRUCTION port=0x80")
        ev = t.resume({1: ResumeAction(ResumeKind.CONTINUE), 2: ResumeAction(ResumeKind.CONTINUE)})
        assert ev.thread == 2 and "IO_INSTRUCTION out port=0x80" in ev.info
        trapped = int(t.monitor("trap").splitlines()[0].split(": ")[1])
        assert trapped == host.trap.trapped > 0
    finally:
        host.close()


class _Bounded(MachineTarget):
    """A continue runs at most 20000 instructions (then reports SIGINT), so junk that rewrites code cannot hang."""

    def _resume(self, actions):
        if any(a.kind is ResumeKind.STEP for a in actions.values()):
            return super()._resume(actions)
        ev = self.advance(self.guests[0], budget=20_000)
        return ev if ev is not None else StopEvent.interrupted(1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(junk_item, min_size=1, max_size=10))
def test_junk_against_a_real_machine(junk: list[bytes]) -> None:
    """The fuzz of test_fuzz.py, against the real adapter: the stub answers and stays in sync, nothing raises."""
    stub, errors = quiet_stub(_Bounded(_machine()), packet_size=PACKET_SIZE)
    client = StubClient(stub, timeout=10)
    for item in junk:
        client.send_raw(item)
    reply = _sync_then_halt_reason(client, "sync-after-junk")
    assert STOP_REPLY.fullmatch(reply), reply
    assert client.finish().value in ("disconnected", "exited")
    assert errors.getvalue() == ""


_RAM_MACHINE = _machine()


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.integers(0, 2**33), st.integers(32 * 2**20 - 0x400, 32 * 2**20 + 0x400)), st.integers(1, 0x200))
def test_memory_reads_of_any_address(addr: int, length: int) -> None:
    """`m` anywhere: RAM bytes (paging off: linear = physical), the readable prefix, or E01; never a crash."""
    stub, errors = quiet_stub(MachineTarget(_RAM_MACHINE))
    client = StubClient(stub, timeout=5)
    reply = client.cmd(b"m%x,%x" % (addr, length))
    ram = _RAM_MACHINE.cpu.mem_size
    if addr + length > 2**32 or addr >= ram:
        assert reply == b"E01"
    else:
        assert reply == _RAM_MACHINE.cpu.read_phys(addr, min(addr + length, ram) - addr).hex().encode()
    client.finish()
    assert errors.getvalue() == ""


def test_break_exit_on_exception_and_interrupt_vectors() -> None:
    """`int3` (vector 3) and IRQ 0 (vector 0x20 after the guest's PIC remap): stop at the handler's first
    instruction, which is the guest's own IDT gate target."""
    m = _machine()
    t = MachineTarget(m)
    t.monitor("break-exit EXTERNAL_INTERRUPT vector=0x20")
    ev = t.resume(CONT)
    assert "EXTERNAL_INTERRUPT vector=0x20" in ev.info and m.cpu.reg("eip") == _gate_target(m, 0x20)
    t.monitor("clear-exit")
    t.monitor("break-exit EXCEPTION_NMI vector=3")
    ev = t.resume(CONT)
    assert "EXCEPTION_NMI vector=0x3" in ev.info and m.cpu.reg("eip") == _gate_target(m, 3)
    rec = t.guests[0].exits[-1]
    # the VMX record of a software exception: guest RIP = the int3 itself, instruction length 1 (SDM Vol. 3C §28.2.4)
    assert code_bytes(VMX_EXITS, rec.rip, 1) == b"\xcc" and rec.insn_len == 1
    assert t.resume(CONT).kind is StopKind.EXITED                  # no second int3 in the kernel


def test_breakpoint_on_code_that_already_ran() -> None:
    """A breakpoint inserted on code Unicorn has already translated (printf's `out 0xe9, al`, run many times)
    still stops there."""
    m = _machine(vmm=True)
    t = MachineTarget(m)
    t.insert_breakpoint(BreakKind.SOFTWARE, OUT21, 1)
    t.resume(CONT)                                   # kmain printed its first line
    assert any(r.port == 0xE9 for r in t.guests[0].exits)
    putc = find_in(VMX_EXITS, "printf", bytes.fromhex("e6e9"))
    assert any(r.rip == putc for r in t.guests[0].exits)
    t.insert_breakpoint(BreakKind.SOFTWARE, putc, 1)
    t.remove_breakpoint(BreakKind.SOFTWARE, OUT21, 1)
    ev = t.resume(CONT)
    assert (ev.reason, ev.addr, m.cpu.reg("eip")) == (StopReason.SWBREAK, putc, putc)
    t.remove_breakpoint(BreakKind.SOFTWARE, putc, 1)
    ev = t.resume(CONT)
    assert ev.kind is StopKind.EXITED                 # removed: no more stops
