"""The ``DebugTarget`` adapter over real Machines: gdb (or the Python API) drives the emulator's vCPUs.

Each Machine is one gdb thread (1-based). Breakpoints (``Z0`` and ``Z1`` alike) are Unicorn code hooks
that stop *before* the instruction (guest memory is never patched with int3); watchpoints are Unicorn
memory hooks on the guest-physical bytes behind the watched linear address and stop *after* the
accessing instruction (like x86 data breakpoints, SDM Vol. 3B §18.2.4: the debug exception is a trap).
The run loop is ``Machine.run``'s, step for step (timers, interrupt delivery at the window, the I/O
fault hand-off, HLT warp), with extra stop points: a single step executes exactly one guest
instruction, and afterwards delivers an interrupt that became deliverable, so the stop shows the
handler's first instruction (QEMU's gdbstub behaves the same when IRQs are not masked in steps).

VM exits: until the VMX layer reports exits through ``machine.observers`` (``on_vmexit(vmexit) -> bool``),
the adapter records I/O-instruction, HLT, external-interrupt and exception exits itself (wrapping the
vCPU's I/O and interrupt handlers), so ``monitor exits`` and ``monitor break-exit`` work today.
"""
from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, TextIO

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UcError
from unicorn.unicorn_py3.unicorn import uclib

from emu.cpu import decode
from emu.cpu.interrupts import Event
from emu.cpu.native import library as icount_library
from emu.cpu.vcpu import EFLAGS_IF, GPRS, GuestMemoryError, Stop
from emu.debug.exits import EXIT_REASONS, ExitBreak, ExitRecord, io_qualification, reason_number
from emu.debug.gdbstub import GdbStub, SessionEnd, serve_gdb
from emu.debug.monitor import MonitorDispatcher, MonitorError, parse_int, parse_options
from emu.debug.target import (BreakKind, MemoryAccessError, RegisterAccessError, ResumeAction, ResumeKind,
                              StopEvent, StopReason)

CORE_WRITABLE = (*GPRS, "eip", "eflags", "cs", "ss", "ds", "es", "fs", "gs")
"""Registers ``write_register`` accepts (the FPU part of target.xml reads as zero and is read-only)."""

SLICE = 1 << 20
"""Longest uninterrupted vCPU run (instructions) in a continue: bounds break-in latency, changes nothing else."""

EXIT_HISTORY = 4096
"""VM exits kept per guest for ``monitor exits``."""

IO_EXIT = EXIT_REASONS["IO_INSTRUCTION"]
HLT_EXIT = EXIT_REASONS["HLT"]
EXTINT_EXIT = EXIT_REASONS["EXTERNAL_INTERRUPT"]
EXCEPTION_EXIT = EXIT_REASONS["EXCEPTION_NMI"]
TRIPLE_FAULT_EXIT = EXIT_REASONS["TRIPLE_FAULT"]

_WATCH_REASON = {BreakKind.WRITE: StopReason.WATCH, BreakKind.READ: StopReason.RWATCH,
                 BreakKind.ACCESS: StopReason.AWATCH}


@dataclass
class _Hit:
    """Why a guest's last vCPU run stopped for the debugger."""

    reason: StopReason
    addr: Optional[int] = None
    info: str = ""


@dataclass
class _Guest:
    """One Machine as a gdb thread, with its hooks and exit history."""

    tid: int
    machine: object
    exits: collections.deque = field(default_factory=lambda: collections.deque(maxlen=EXIT_HISTORY))
    code_hooks: dict[int, int] = field(default_factory=dict)           # linear address -> hook handle
    watch_hooks: dict[tuple, list[int]] = field(default_factory=dict)  # (kind, addr, len) -> handles
    stop_check: Optional[ctypes.c_size_t] = None
    hit: Optional[_Hit] = None
    exit_hit: Optional[ExitRecord] = None
    stepping_off: Optional[int] = None   # a breakpoint at this EIP is ignored (resuming from it)
    vmx_reports: bool = False            # the VMX layer reports exits through machine.observers
    ended: Optional[object] = None       # the RunResult once the guest is over

    @property
    def cpu(self):
        return self.machine.cpu


class _ExitObserver:
    """Registered in ``machine.observers``: the VMX layer calls ``on_vmexit`` for every exit."""

    def __init__(self, target: "MachineTarget", guest: _Guest) -> None:
        self.target = target
        self.guest = guest

    def on_vmexit(self, vmexit) -> bool:
        """Record the exit; True (stop the run) when a ``break-exit`` matches it."""
        self.guest.vmx_reports = True
        rec = ExitRecord.from_vmexit(self.guest.tid, vmexit, self.guest.cpu)
        return self.target._record_exit(self.guest, rec, stop=False)


class MachineTarget:
    """``DebugTarget`` over one or several ``emu.machine.Machine`` (guest N = thread N)."""

    def __init__(self, machines, names: Optional[Sequence[str]] = None, trap: object = None) -> None:
        if not isinstance(machines, (list, tuple)):
            machines = [machines]
        if not machines:
            raise ValueError("MachineTarget needs at least one machine")
        self.guests: list[_Guest] = [_Guest(i + 1, m) for i, m in enumerate(machines)]
        self._names = list(names) if names else None
        self.trap = trap
        """The host's trap handler (``emu.hypervisor.trap.TrapHandler``) for ``monitor trap``, if any."""
        self.breakpoints: set[tuple[BreakKind, int, int]] = set()
        self.exit_breaks: list[ExitBreak] = []
        self._interrupt = threading.Event()
        self.running = threading.Event()
        """Set while ``resume`` runs guest code (tests wait on it before breaking in)."""
        self.last_stop: Optional[StopEvent] = None
        self.commands = self._build_commands()
        for g in self.guests:
            self._instrument(g)

    # --- DebugTarget: threads, registers, memory -------------------------------------------------
    def threads(self) -> list[int]:
        """Every guest, 1-based."""
        return [g.tid for g in self.guests]

    def _guest(self, tid: int) -> _Guest:
        return self.guests[tid - 1]

    def thread_name(self, tid: int) -> str:
        """``guest 1 vmx_exits.elf``, plus ``(ended)`` once the guest is over."""
        g = self._guest(tid)
        m = g.machine
        label = self._names[tid - 1] if self._names else os.path.basename(m.config.kernel or m.name)
        return f"guest {tid} {label}" + (" (ended)" if g.ended is not None or m.end is not None else "")

    def read_registers(self, tid: int) -> dict[str, int]:
        """General, segment registers, EIP and EFLAGS (the FPU part reads as zero)."""
        return self._guest(tid).cpu.regs()

    def write_register(self, tid: int, name: str, value: int) -> None:
        """Set a core register; RegisterAccessError for FPU registers or a selector the CPU refuses."""
        if name not in CORE_WRITABLE:
            raise RegisterAccessError(f"register {name} is read-only here")
        try:
            self._guest(tid).cpu.set_reg(name, value & 0xFFFFFFFF if name not in ("cs", "ss", "ds", "es", "fs", "gs")
                                         else value & 0xFFFF)
        except UcError as exc:
            raise RegisterAccessError(f"cannot set {name}={value:#x}: {exc}") from None

    def read_memory(self, tid: int, addr: int, size: int) -> bytes:
        """Guest-virtual bytes; MemoryAccessError when any is unmapped."""
        try:
            return self._guest(tid).cpu.read_virt(addr, size)
        except GuestMemoryError as exc:
            raise MemoryAccessError(str(exc)) from None

    def write_memory(self, tid: int, addr: int, data: bytes) -> None:
        """Guest-virtual write; translated code is dropped so a patched instruction runs as written."""
        cpu = self._guest(tid).cpu
        try:
            cpu.write_virt(addr, data)
        except GuestMemoryError as exc:
            raise MemoryAccessError(str(exc)) from None
        cpu.flush_code()

    # --- breakpoints and watchpoints ---------------------------------------------------------------
    def insert_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool:
        """Code hooks for Z0/Z1 at ``addr``; memory hooks for Z2-Z4 over ``addr``..``addr+length-1``."""
        key = (kind, addr, length)
        if key in self.breakpoints:
            return True
        if kind in (BreakKind.SOFTWARE, BreakKind.HARDWARE):
            for g in self.guests:
                self._add_code_hook(g, addr)
        else:
            if not 1 <= length <= 0x10000:
                raise MemoryAccessError(f"watchpoint length {length} out of range")
            for g in self.guests:
                self._add_watch(g, key)
        self.breakpoints.add(key)
        return True

    def remove_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool:
        """Undo ``insert_breakpoint``; removing a missing one is fine."""
        key = (kind, addr, length)
        if key not in self.breakpoints:
            return True
        self.breakpoints.discard(key)
        if kind in (BreakKind.SOFTWARE, BreakKind.HARDWARE):
            if not any(k[0] in (BreakKind.SOFTWARE, BreakKind.HARDWARE) and k[1] == addr for k in self.breakpoints):
                for g in self.guests:
                    handle = g.code_hooks.pop(addr, None)
                    if handle is not None:
                        g.cpu.uc.hook_del(handle)
                        g.cpu.uc.ctl_remove_cache(addr, addr + 1)
        else:
            for g in self.guests:
                self._remove_watch(g, key)
        return True

    def _add_code_hook(self, g: _Guest, addr: int) -> None:
        if addr in g.code_hooks:
            return
        cpu = g.cpu
        g.code_hooks[addr] = cpu.uc.hook_add(UC_HOOK_CODE, self._on_code, g, addr, addr)
        cpu.uc.ctl_remove_cache(addr, addr + 1)

    def _on_code(self, uc, address: int, size: int, g: _Guest) -> None:
        address &= 0xFFFFFFFF
        if g.stepping_off == address:
            return
        sw = any(k[0] is BreakKind.SOFTWARE and k[1] == address for k in self.breakpoints)
        g.hit = _Hit(StopReason.SWBREAK if sw else StopReason.HWBREAK, address)
        g.cpu.request_stop("debug")

    def _add_watch(self, g: _Guest, key: tuple[BreakKind, int, int]) -> None:
        kind, addr, length = key
        cpu = g.cpu
        handles = []
        kinds = {BreakKind.WRITE: (UC_HOOK_MEM_WRITE,), BreakKind.READ: (UC_HOOK_MEM_READ,),
                 BreakKind.ACCESS: (UC_HOOK_MEM_WRITE, UC_HOOK_MEM_READ)}[kind]
        for begin, end in self._physical_ranges(g, addr, length):
            for hook_type in kinds:
                handles.append(cpu.uc.hook_add(hook_type, self._on_mem, (g, key), begin, end))
        g.watch_hooks[key] = handles
        if g.stop_check is None:
            # stop at the next instruction boundary after the access (C code hook on every address)
            g.stop_check = ctypes.c_size_t()
            err = uclib.uc_hook_add(cpu.uc._uch, ctypes.byref(g.stop_check), UC_HOOK_CODE,
                                    ctypes.c_void_p(ctypes.cast(icount_library().icount_stop_check_hook,
                                                                ctypes.c_void_p).value),
                                    ctypes.c_void_p(cpu.counter._ptr), ctypes.c_uint64(1), ctypes.c_uint64(0))
            if err:
                g.stop_check = None
                raise MemoryAccessError(f"unicorn refused the watchpoint stop check (error {err})")
        cpu.uc.ctl_flush_tb()

    def _physical_ranges(self, g: _Guest, addr: int, length: int) -> list[tuple[int, int]]:
        """Guest-physical [begin, end] ranges (inclusive) behind linear ``addr``..``addr+length-1``, page by page."""
        out: list[tuple[int, int]] = []
        pos, last = addr, addr + length - 1
        while pos <= last:
            page_end = (pos | 0xFFF)
            chunk_end = min(page_end, last)
            try:
                phys = g.cpu.translate(pos)
            except GuestMemoryError as exc:
                raise MemoryAccessError(f"cannot watch {addr:#x}: {exc}") from None
            begin, end = phys, phys + (chunk_end - pos)
            if out and out[-1][1] + 1 == begin:
                out[-1] = (out[-1][0], end)
            else:
                out.append((begin, end))
            pos = chunk_end + 1
        return out

    def _remove_watch(self, g: _Guest, key: tuple) -> None:
        for handle in g.watch_hooks.pop(key, []):
            g.cpu.uc.hook_del(handle)
        if not g.watch_hooks and g.stop_check is not None:
            uclib.uc_hook_del(g.cpu.uc._uch, g.stop_check)
            g.stop_check = None
        g.cpu.uc.ctl_flush_tb()

    def _on_mem(self, uc, access: int, address: int, size: int, value: int, user) -> None:
        g, key = user
        if g.hit is not None:
            return
        g.hit = _Hit(_WATCH_REASON[key[0]], key[1])
        cpu = g.cpu
        # no emu_stop here: Unicorn would roll the instruction back after its store; the stop check
        # hook on the next instruction ends the run once this instruction has completed
        cpu.stop_request = "debug"
        cpu.st.pending_stop = 1

    # --- VM exits -------------------------------------------------------------------------------------
    def _instrument(self, g: _Guest) -> None:
        """Record exits from the I/O, interrupt and exception paths; register the VMX observer if possible."""
        m = g.machine
        cpu = m.cpu
        observers = getattr(m, "observers", None)
        if isinstance(observers, list):
            observers.append(_ExitObserver(self, g))
        orig_in, orig_out, orig_intr = cpu.on_in, cpu.on_out, cpu.on_interrupt

        def on_in(port: int, size: int) -> int:
            site = cpu.io_site
            value = orig_in(port, size)
            if not g.vmx_reports:
                self._record_io(g, site, port, size, value, True)
            return value

        def on_out(port: int, size: int, value: int) -> None:
            site = cpu.io_site
            orig_out(port, size, value)
            if not g.vmx_reports:
                self._record_io(g, site, port, size, value, False)

        def on_interrupt(vcpu, intno: int) -> None:
            if not g.vmx_reports:
                vcpu.sync_icount()
                rec = ExitRecord(g.tid, vcpu.icount, EXCEPTION_EXIT, 0, vcpu.reg("eip"), 0, vector=intno)
                self._record_exit(g, rec, stop=False)
            orig_intr(vcpu, intno)
            if g.exit_hit is not None:
                vcpu.request_stop("debug")  # after delivery: EIP is the handler's first instruction

        cpu.on_in, cpu.on_out, cpu.on_interrupt = on_in, on_out, on_interrupt

    def _record_io(self, g: _Guest, site, port: int, size: int, value: int, is_in: bool) -> None:
        cpu = g.cpu
        string = rep = immediate = False
        rip, length, icount = 0, 0, cpu.icount
        if site is not None:
            length, icount = site.length, site.icount
            try:
                cs_base = cpu.context().u64(cpu.offsets.cs_base)
                rip = (site.pc - cs_base) & 0xFFFFFFFF
                insn = decode.first(cpu.read_virt(site.pc, site.length), cpu.code_bits())
            except GuestMemoryError:
                insn = None
            if insn is not None:
                _len, mnemonic, ops = insn
                string = "ins" in mnemonic or "outs" in mnemonic
                rep = mnemonic.startswith("rep")
                immediate = not string and "dx" not in ops.replace("edx", "").split(",")[0 if not is_in else -1]
        rec = ExitRecord(g.tid, icount, IO_EXIT, io_qualification(port, size, is_in, string, rep, immediate),
                         rip, length, port=port, value=value)
        if self._record_exit(g, rec, stop=False):
            # stop after the I/O instruction (the vCPU's stop check after every I/O instruction);
            # no emu_stop: inside a string IN it would repeat the device read
            cpu.stop_request = "debug"
            cpu.st.pending_stop = 1

    def _record_exit(self, g: _Guest, rec: ExitRecord, stop: bool) -> bool:
        """Keep ``rec``; True when a ``break-exit`` matches (the guest stops after this exit)."""
        g.exits.append(rec)
        if g.exit_hit is None and any(b.matches(rec) for b in self.exit_breaks):
            g.exit_hit = rec
            if stop:
                g.cpu.request_stop("debug")
            return True
        return False

    # --- running ------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Thread-safe: stop the running ``resume`` soon (or the next one before it executes anything)."""
        self._interrupt.set()
        for g in self.guests:
            try:
                g.cpu.uc.emu_stop()
            except UcError:
                pass

    def kill(self) -> None:
        """End every guest (gdb ``kill``)."""
        from emu.machine import EndReason, RunResult
        for g in self.guests:
            if g.machine.end is None:
                g.machine.end = RunResult(EndReason.STOPPED, 0, "killed by gdb", g.cpu.icount)
            g.ended = g.machine.end

    def resume(self, actions: Mapping[int, ResumeAction]) -> StopEvent:
        """Step or continue the guests in ``actions`` until one stops (all-stop)."""
        self.running.set()
        try:
            ev = self._resume(actions)
        finally:
            self.running.clear()
        self.last_stop = ev
        return ev

    def _resume(self, actions: Mapping[int, ResumeAction]) -> StopEvent:
        order = [self._guest(t) for t in sorted(actions)]
        if self._interrupt.is_set():
            self._interrupt.clear()
            return StopEvent.interrupted(order[0].tid if order else 1)
        live = [g for g in order if not self._is_over(g)]
        if not live:
            return self._exited_event(order[0] if order else self.guests[0])
        steppers = [g for g in live if actions[g.tid].kind is ResumeKind.STEP]
        if steppers:
            for g in steppers:
                ev = self.advance(g, step=True)
                if ev is not None:
                    return ev
            raise AssertionError("a step always stops")  # pragma: no cover
        while True:
            for g in live:
                ev = self.advance(g, budget=SLICE)
                if ev is not None:
                    if ev.kind.value != "T" and len(live) > 1:
                        # one guest of several ended: report it as a trap, the others live on
                        return StopEvent.trap(g.tid, info=ev.info)
                    return ev
            live = [g for g in live if not self._is_over(g)]
            if not live:
                return self._exited_event(order[0])

    def _is_over(self, g: _Guest) -> bool:
        return g.ended is not None

    def _exited_event(self, g: _Guest) -> StopEvent:
        end = g.ended or g.machine.end
        status = getattr(end, "status", 0)
        return StopEvent.exited(status, g.tid, getattr(end, "message", ""))

    def _end(self, g: _Guest, reason, status: int, message: str) -> StopEvent:
        """The guest is over (debug exit, shutdown, halted for good): remember it and report ``W``."""
        from emu.machine import RunResult
        m = g.machine
        if m.end is None:
            m.end = RunResult(reason, status, message, g.cpu.icount)
        elif not m.end.icount:
            m.end = RunResult(m.end.reason, m.end.status, m.end.message, g.cpu.icount)
        g.ended = m.end
        return StopEvent.exited(m.end.status, g.tid, m.end.message)

    def _shutdown(self, g: _Guest) -> StopEvent:
        from emu.machine import EndReason
        cpu = g.cpu
        rec = ExitRecord(g.tid, cpu.icount, TRIPLE_FAULT_EXIT, 0, cpu.reg("eip"), 0,
                         extra={"why": repr(cpu.shutdown.reason)})
        if not g.vmx_reports:
            self._record_exit(g, rec, stop=False)
        return self._end(g, EndReason.SHUTDOWN, 0, cpu.shutdown.reason)

    def advance(self, g: _Guest, *, step: bool = False, budget: Optional[int] = None,
                until_icount: Optional[int] = None) -> Optional[StopEvent]:
        """Run guest ``g``: one instruction (``step``), at most ``budget`` instructions of virtual time, or until
        ``until_icount`` retired. Returns the stop, or None when the budget ran out with nothing to report.

        Mirrors ``Machine.run``: timers, interrupt delivery when the window is open, the I/O-fault
        hand-off, HLT warp, debug exit and shutdown.
        """
        from emu.machine import EndReason
        m = g.machine
        cpu = m.cpu
        clock = m.clock
        g.hit = None
        g.exit_hit = None
        if m.end is not None:
            return self._end(g, m.end.reason, m.end.status, m.end.message)
        if getattr(m, "halted", False):   # Machine.run(yield_on_halt=True) left it waiting in HLT
            m.halted = False
            if not m._halt():
                return self._end(g, EndReason.HALTED, 0, "guest halted with no interrupt to come")
        start = cpu.icount
        vlimit = None if budget is None else cpu.vtime + budget
        eip = cpu.linear_pc()
        g.stepping_off = eip if eip in g.code_hooks else None
        first = True
        try:
            while True:
                if self._interrupt.is_set():
                    self._interrupt.clear()
                    return StopEvent.interrupted(g.tid)
                clock.run_due()
                if m.end is not None:
                    return self._end(g, m.end.reason, m.end.status, m.end.message)
                delivered = self._deliver_pending(g)
                if cpu.shutdown:
                    return self._shutdown(g)
                if g.exit_hit is not None:
                    return self._exit_trap(g)
                if step and (cpu.icount > start or (delivered and first)):
                    return StopEvent.trap(g.tid)
                if until_icount is not None and cpu.icount >= until_icount:
                    return StopEvent.trap(g.tid)
                if vlimit is not None and cpu.vtime >= vlimit:
                    return None
                first = False
                deadline = clock.next_deadline()
                if deadline is None:
                    deadline = 1 << 62
                if step:
                    deadline = min(deadline, cpu.vtime + 1)
                if vlimit is not None:
                    deadline = min(deadline, vlimit)
                if until_icount is not None:
                    deadline = min(deadline, until_icount + cpu.idle)
                if g.stepping_off is not None:
                    deadline = min(deadline, cpu.vtime + 1)  # leave the breakpoint first, then it is armed again
                if m._window_steps:
                    deadline = min(deadline, cpu.vtime + m._window_steps)
                    m._window_steps = 0
                elif m.pic is not None and m.pic.intr and cpu.reg("eflags") & EFLAGS_IF and cpu.interrupt_shadow:
                    deadline = min(deadline, cpu.vtime + 1)  # the window opens after the shadowed instruction
                before = cpu.icount
                stop = cpu.run(deadline)
                if m._pending_action is not None:   # an exit's emulation decided in a hook (RDMSR/WRMSR, skip)
                    action, m._pending_action = m._pending_action, None
                    action()
                if cpu.icount != before or cpu.linear_pc() != eip:
                    g.stepping_off = None
                if g.hit is not None:
                    return self._break_trap(g)
                if m._pending is not None:
                    event, icount = m._pending
                    m._pending = None
                    if icount is not None:
                        cpu.st.count = icount
                        cpu.set_reg("eip", event.return_eip)
                    else:
                        event = Event(event.vector, event.kind, event.error_code, cpu.reg("eip"))
                    m.deliver(event)
                    if cpu.shutdown:
                        return self._shutdown(g)
                    g.stepping_off = None
                    continue
                if stop is Stop.SHUTDOWN:
                    return self._shutdown(g)
                if m.end is not None:
                    return self._end(g, m.end.reason, m.end.status, m.end.message)
                if g.exit_hit is not None and stop is not Stop.HLT:
                    return self._exit_trap(g)
                if stop is Stop.HLT:
                    if not g.vmx_reports:
                        rec = ExitRecord(g.tid, cpu.icount - 1, HLT_EXIT, 0, (cpu.reg("eip") - 1) & 0xFFFFFFFF, 1)
                        self._record_exit(g, rec, stop=False)
                    if not m._halt():
                        return self._end(g, EndReason.HALTED, 0, "guest halted with interrupts disabled" if not
                                         cpu.reg("eflags") & EFLAGS_IF else "guest halted with no interrupt to come")
                    if g.exit_hit is not None:
                        return self._exit_trap(g)
                elif stop is Stop.REQUEST and cpu.stop_request == "unexplained stop" and not self._interrupt.is_set():
                    return self._end(g, EndReason.SHUTDOWN, 0, f"vCPU stopped unexpectedly at {cpu.linear_pc():#x}")
        finally:
            g.stepping_off = None

    def _deliver_pending(self, g: _Guest) -> bool:
        """Deliver a pending external interrupt if the window is open (Machine.run's order); True if delivered."""
        m = g.machine
        if m.pic is None or not m.pic.intr or not m._interrupt_window_open():
            return False
        cpu = g.cpu
        vector = m.pic.acknowledge()
        if not g.vmx_reports:
            rec = ExitRecord(g.tid, cpu.icount, EXTINT_EXIT, 0, cpu.reg("eip"), 0, vector=vector)
            self._record_exit(g, rec, stop=False)
        from emu.cpu.interrupts import EventKind
        m.deliver(Event(vector, EventKind.EXTERNAL, None, None))
        return True

    def _break_trap(self, g: _Guest) -> StopEvent:
        m = g.machine
        hit = g.hit
        g.hit = None
        if hit.reason in (StopReason.SWBREAK, StopReason.HWBREAK):
            # stopped before the instruction: a pre-instruction fault or window stop of the same
            # instruction happens again when it really runs
            if m._pending is not None and m._pending[1] is None:
                m._pending = None
            m._window_steps = 0
            m.cpu.skip_hook_at = None
        return StopEvent.trap(g.tid, hit.reason, hit.addr, hit.info)

    def _exit_trap(self, g: _Guest) -> StopEvent:
        rec = g.exit_hit
        g.exit_hit = None
        return StopEvent.trap(g.tid, info=f"exit {rec.describe()}")

    # --- monitor --------------------------------------------------------------------------------------
    def monitor(self, command: str) -> str:
        """``monitor …`` commands (``monitor help`` lists them)."""
        return self.commands.dispatch(command)

    def _build_commands(self) -> MonitorDispatcher:
        d = MonitorDispatcher()
        d.add("icount", "icount", "instructions retired, virtual time and halted time of every guest", self._cmd_icount)
        d.add("exits", "exits [N]", "the last N VM exits (default 10), oldest first", self._cmd_exits)
        d.add("break-exit", "break-exit REASON [port=P] [msr=M] [vector=V]",
              "stop (SIGTRAP) after a VM exit of that reason; no REASON: list", self._cmd_break_exit)
        d.add("clear-exit", "clear-exit [REASON [port=P] [msr=M] [vector=V]]",
              "remove exit breaks (all of them without arguments)", self._cmd_clear_exit)
        for what in ("pic", "pit", "pci", "ide", "bmdma", "nic", "vmx"):
            d.add(f"info {what}", f"info {what}", f"state of the {what.upper()} (every guest)",
                  lambda args, what=what: self._cmd_info(what, args))
        d.add("trap", "trap", "the trap handler: last validation, deferrals, restrictions", self._cmd_trap)
        d.add("last-stop", "last-stop", "why the guest last stopped (the exit that triggered a break-exit)",
              self._cmd_last_stop)
        return d

    def _cmd_icount(self, args: list[str]) -> str:
        return "\n".join(f"guest {g.tid}: icount={g.cpu.icount} vtime={g.cpu.vtime} idle={g.cpu.idle}"
                         for g in self.guests)

    def _cmd_exits(self, args: list[str]) -> str:
        if len(args) > 1:
            raise MonitorError("expected at most one number")
        n = parse_int(args[0]) if args else 10
        if n < 0:
            raise MonitorError("N must be >= 0")
        lines = []
        for g in self.guests:
            recent = list(g.exits)[-n:] if n else []
            lines += [r.describe() for r in recent]
        if not lines:
            return "no VM exits recorded"
        return "\n".join(lines)

    def _parse_break(self, args: list[str]) -> ExitBreak:
        try:
            reason = reason_number(args[0])
        except ValueError as exc:
            raise MonitorError(str(exc)) from None
        opts = parse_options(args[1:], ["port", "msr", "vector"])
        return ExitBreak(reason, opts.get("port"), opts.get("msr"), opts.get("vector"))

    def _cmd_break_exit(self, args: list[str]) -> str:
        if not args:
            if not self.exit_breaks:
                return "no exit breaks"
            return "\n".join(f"break on {b.describe()}" for b in self.exit_breaks)
        b = self._parse_break(args)
        if b not in self.exit_breaks:
            self.exit_breaks.append(b)
        return f"will stop after exits {b.describe()}"

    def _cmd_clear_exit(self, args: list[str]) -> str:
        if not args:
            n = len(self.exit_breaks)
            self.exit_breaks.clear()
            return f"cleared {n} exit break(s)"
        b = self._parse_break(args)
        if b not in self.exit_breaks:
            raise MonitorError(f"no exit break {b.describe()}")
        self.exit_breaks.remove(b)
        return f"cleared {b.describe()}"

    def _devices_for(self, g: _Guest, what: str) -> list:
        m = g.machine
        devs = m.devices
        if what == "pic":
            return [devs.get("pic")]
        if what == "pit":
            return [devs.get("pit"), devs.get("port61")]
        if what == "pci":
            return [devs.get("pci")] + [d for n, d in devs.items() if n in ("i440fx", "piix3-isa", "piix3-ide",
                                                                            "piix4-acpi")]
        if what == "ide":
            return [devs.get("ide0"), devs.get("ide1")]
        if what == "bmdma":
            return [devs.get("bmdma")]
        if what == "nic":
            return [d for n, d in devs.items() if n.startswith("ne2000") or n.startswith("nic")]
        if what == "vmx":
            return [getattr(m, attr) for attr in ("vmx", "monitor") if getattr(m, attr, None) is not None][:1]
        return []

    def _cmd_info(self, what: str, args: list[str]) -> str:
        if args:
            raise MonitorError(f"info {what} takes no arguments")
        out = []
        for g in self.guests:
            devs = [d for d in self._devices_for(g, what) if d is not None]
            head = f"guest {g.tid}:" if len(self.guests) > 1 else None
            if head:
                out.append(head)
            if not devs:
                out.append(f"no {what} on this machine" if what != "vmx" else
                           "no VMX layer on this machine (exits are recorded by the debugger: monitor exits)")
                continue
            for d in devs:
                info = getattr(d, "info", None)
                out.append(info() if callable(info) else repr(d))
        return "\n".join(out)

    def _cmd_trap(self, args: list[str]) -> str:
        handler = self.trap
        if handler is None:
            for g in self.guests:
                handler = getattr(g.machine, "trap", None) or getattr(g.machine, "trap_handler", None)
                if handler is not None:
                    break
        if handler is None:
            return "no trap handler on this machine (it belongs to `emu host` scenarios)"
        info = getattr(handler, "info", None)
        if callable(info):
            return info()
        return format_trap(handler)

    def _cmd_last_stop(self, args: list[str]) -> str:
        ev = self.last_stop
        if ev is None:
            return "not resumed yet"
        return ev.info or (f"{ev.kind.name.lower()} signal={ev.signal} reason={ev.reason.value or 'none'} "
                           f"thread={ev.thread}")


def format_trap(t) -> str:
    """The trap handler's state (patent blocks 310-420): trapped exits, validations, deferrals, restrictions."""
    lines = [f"trapped exits: {getattr(t, 'trapped', 0)}", f"validations: {getattr(t, 'validations', 0)}"]
    deferrals = getattr(t, "deferrals", {}) or {}
    lines.append("deferrals: " + (", ".join(f"{k}={v}" for k, v in sorted(deferrals.items())) or "none"))
    lines.append(f"findings: {getattr(t, 'findings_total', 0)}")
    lines.append(f"restricted: {'yes' if getattr(t, 'restricted', False) else 'no'}")
    results = getattr(t, "results", None) or []
    if results:
        last = results[-1]
        lines.append("last validation: " + ", ".join(f"{k}={last[k]}" for k in ("validation", "clean", "counts")
                                                     if k in last))
    else:
        lines.append("last validation: none yet")
    return "\n".join(lines)


class ExitReportingStub(GdbStub):
    """A ``GdbStub`` that prints the stop's ``info`` (e.g. the VM exit of a ``break-exit``) on gdb's console.

    The text goes out as an ``O`` packet right before the stop reply (GDB manual E.3 "O XX…"), so gdb
    shows ``exit icount=… IO_INSTRUCTION in port=0x1f7 …`` above "Program received signal SIGTRAP".
    """

    def _resume(self, actions):  # noqa: D102 - see class docstring
        reply = super()._resume(actions)
        info = self.last_stop.info
        if info and self.last_stop.kind.value == "T":
            self.conn.send_packet(b"O" + (info + "\n").encode("utf-8", "replace").hex().encode())
        return reply


def serve(machines, spec: str, *, stream: Optional[TextIO] = None) -> SessionEnd:
    """``emu run KERNEL --gdb [HOST:]PORT``: serve gdb for ``machines`` until it detaches, kills, or the guest ends.

    Listens on loopback unless ``spec`` names a host, and says where on ``stream`` (stderr).
    """
    target = MachineTarget(machines)
    return serve_gdb(target, spec, stream=stream, stub=ExitReportingStub(target))


def serve_host(host, spec: str, *, stream: Optional[TextIO] = None) -> SessionEnd:
    """``emu host SCENARIO --gdb [HOST:]PORT``: every guest of ``host`` is a thread; ``monitor trap`` shows the handler.

    Returns when gdb detaches (then call ``host.run()`` to go on with the scheduler), kills, or all guests ended.
    While gdb drives them, guests run in the adapter's turns (2^20 instructions), not the scenario's quanta; the
    trap handler still sees every exit it observes (``Machine.exit_observers``).
    """
    names = list(host.machines)
    target = MachineTarget([host.machines[n] for n in names], names=names, trap=getattr(host, "trap", None))
    return serve_gdb(target, spec, stream=stream, stub=ExitReportingStub(target))


def run_with_gdb(machine, spec: str, max_insns: Optional[int] = None, *, stream: Optional[TextIO] = None):
    """``emu run --gdb``: serve gdb, then finish the run as ``Machine.run`` would; returns the RunResult.

    ``max_insns`` counts from the start of the guest, instructions run under gdb included.
    """
    from emu.machine import EXIT_STATUS_MAX_INSNS, EndReason, RunResult
    end = serve(machine, spec, stream=stream)
    if machine.end is not None:
        return machine.end
    if end is SessionEnd.KILLED:
        machine.end = RunResult(EndReason.STOPPED, 0, "killed by gdb", machine.cpu.icount)
        return machine.end
    print("emu: gdb detached; the guest runs on", file=stream if stream is not None else sys.stderr, flush=True)
    if max_insns is None:
        return machine.run()
    remaining = max_insns - machine.cpu.icount
    if remaining <= 0:
        return RunResult(EndReason.MAX_INSNS, EXIT_STATUS_MAX_INSNS,
                         f"instruction limit reached ({max_insns} instructions)", machine.cpu.icount)
    return machine.run(max_insns=remaining)
