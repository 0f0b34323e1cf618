"""The ``DebugTarget`` adapter over real Machines: gdb (or the Python API) drives the emulator's vCPUs.

Each Machine is one gdb thread (1-based). Breakpoints (``Z0`` and ``Z1`` alike) are Unicorn code hooks
that stop *before* the instruction (guest memory is never patched with int3); watchpoints are Unicorn
memory hooks on the guest-physical bytes behind the watched linear address and stop *after* the
accessing instruction (like x86 data breakpoints, SDM Vol. 3B §18.2.4: the debug exception is a trap).

One loop: the guest runs only through ``Machine.advance`` (timers, interrupt delivery at the window, the VMX
exits and their handlers' decisions, the I/O fault hand-off, HLT), with the debugger's stop points on top: a
one-instruction deadline for a step, breakpoints, watchpoints, and ``Machine.request_exit_stop`` for a
``break-exit``.  After a step the boundary work is done at once (``Machine.enter``), so an interrupt that became
deliverable is delivered and the stop shows the handler's first instruction (QEMU's gdbstub does the same when
IRQs are not masked in steps).  Under ``emu host`` every turn goes through ``Host.step_guest``: the trap handler's
poll, paused and detached guests, and the scenario's budgets stay in force.

VM exits are the VMX layer's (``machine.vmx.observers``): ``monitor exits`` lists them, ``break-exit`` stops after
one and turns on the controls such an exit needs while it is set (``emu.debug.exitbreaks``).
"""
from __future__ import annotations

import collections
import ctypes
import dataclasses
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, TextIO

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UcError
from unicorn.unicorn_py3.unicorn import uclib

from emu.cpu.native import library as icount_library
from emu.cpu.vcpu import GPRS, GuestMemoryError
from emu.debug import exitbreaks
from emu.debug.exits import EXIT_REASONS, ExitBreak, ExitRecord, reason_number
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
    name: str = ""
    exits: collections.deque = field(default_factory=lambda: collections.deque(maxlen=EXIT_HISTORY))
    code_hooks: dict[int, int] = field(default_factory=dict)           # linear address -> hook handle
    watch_hooks: dict[tuple, list[int]] = field(default_factory=dict)  # (kind, addr, len) -> handles
    stop_check: Optional[ctypes.c_size_t] = None
    hit: Optional[_Hit] = None
    exit_hit: Optional[ExitRecord] = None
    stepping_off: Optional[int] = None   # a breakpoint at this EIP is ignored (resuming from it)
    ended: Optional[object] = None       # the RunResult once the guest is over
    observer: Optional[object] = None
    armed: Optional[exitbreaks.Armed] = None
    break_keys: dict = field(default_factory=dict)   # ExitBreak -> the control changes it holds on this guest

    @property
    def cpu(self):
        return self.machine.cpu


def exit_record(tid: int, vmexit) -> ExitRecord:
    """The VMX layer's ``VmExit`` as the debugger lists it: port (and the OUT value), MSR (ECX), vector."""
    reason = int(vmexit.reason)
    port = msr = vector = value = None
    regs = vmexit.regs
    q = vmexit.decoded
    if reason == IO_EXIT and q is not None:
        port = q.port
        if not q.string and q.direction.name == "OUT" and "eax" in regs:
            value = regs["eax"] & ((1 << (8 * q.size)) - 1)
    elif reason in (EXIT_REASONS["RDMSR"], EXIT_REASONS["WRMSR"]) and "ecx" in regs:
        msr = regs["ecx"]
    if vmexit.interruption is not None and vmexit.interruption.valid:
        vector = int(vmexit.interruption.vector)
    return ExitRecord(tid, vmexit.icount, reason, vmexit.qualification, vmexit.rip, vmexit.insn_len, port, msr,
                      vector, value)


@dataclass(frozen=True)
class _Blocked:
    """Internal: the host did not schedule this guest in a continue (``why``)."""

    why: str


class _ExitObserver:
    """In ``machine.vmx.observers``: keeps every exit and stops the run after one a ``break-exit`` matches."""

    def __init__(self, target: "MachineTarget", guest: _Guest) -> None:
        self.target = target
        self.guest = guest

    def __call__(self, vmexit) -> None:
        g = self.guest
        rec = exit_record(g.tid, vmexit)
        g.exits.append(rec)
        if g.exit_hit is None and self.target._breaks_on(rec):
            g.exit_hit = rec
            g.machine.request_exit_stop()

class MachineTarget:
    """``DebugTarget`` over one or several ``emu.machine.Machine`` (guest N = thread N).

    ``host``: the ``emu.hypervisor.host.Host`` the machines belong to; every turn then goes through
    ``Host.step_guest`` (the trap handler's poll, paused and detached guests, the scenario's budgets).
    """

    def __init__(self, machines, names: Optional[Sequence[str]] = None, trap: object = None,
                 host: object = None) -> None:
        if not isinstance(machines, (list, tuple)):
            machines = [machines]
        if not machines:
            raise ValueError("MachineTarget needs at least one machine")
        self._names = list(names) if names else None
        self.guests: list[_Guest] = [_Guest(i + 1, m, self._names[i] if self._names else m.name)
                                     for i, m in enumerate(machines)]
        self.host = host
        self.trap = trap if trap is not None else getattr(host, "trap", None)
        """The host's trap handler (``emu.hypervisor.trap.TrapHandler``) for ``monitor trap``, if any."""
        self.breakpoints: set[tuple[BreakKind, int, int]] = set()
        self.exit_breaks: list[ExitBreak] = []
        self.any_exit = False
        """Stop after every VM exit (``Session.next_exit()`` without a reason); no control is changed for it."""
        self._interrupt = threading.Event()
        self.running = threading.Event()
        """Set while ``resume`` runs guest code (tests wait on it before breaking in)."""
        self.last_stop: Optional[StopEvent] = None
        self.commands = self._build_commands()
        for g in self.guests:
            self._attach(g)

    def _attach(self, g: _Guest) -> None:
        """Subscribe to the guest's VM exits and tell its machine where breakpoints stop."""
        m = g.machine
        g.observer = _ExitObserver(self, g)
        m.vmx.observers.append(g.observer)
        g.armed = exitbreaks.Armed(m.vmx.controls)
        m.break_before = lambda pc, g=g: pc in g.code_hooks and g.stepping_off != pc

    def release(self) -> None:
        """The debugger lets go (gdb detached): breakpoints, watchpoints and exit breaks removed, the controls they
        turned on restored, the exit observer unsubscribed; the machines run on as without a debugger."""
        for kind, addr, length in list(self.breakpoints):
            self.remove_breakpoint(kind, addr, length)
        for b in list(self.exit_breaks):
            self.remove_exit_break(b)
        self.any_exit = False
        for g in self.guests:
            m = g.machine
            if g.observer in m.vmx.observers:
                m.vmx.observers.remove(g.observer)
            m.break_before = None

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
        g = self._guest(tid)
        try:
            g.cpu.set_reg(name, value & 0xFFFFFFFF if name not in ("cs", "ss", "ds", "es", "fs", "gs")
                          else value & 0xFFFF)
        except UcError as exc:
            raise RegisterAccessError(f"cannot set {name}={value:#x}: {exc}") from None
        if name == "eflags":
            g.machine.entered = False   # IF may have changed: the boundary's interrupt check is due again

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
    def _breaks_on(self, rec: ExitRecord) -> bool:
        """Does a ``break-exit`` (or ``any_exit``) stop after this exit?"""
        return self.any_exit or any(b.matches(rec) for b in self.exit_breaks)

    def add_exit_break(self, b: ExitBreak) -> str:
        """Stop after exits matching ``b``; the controls such exits need are turned on in every guest while it is set.

        Raises ``exitbreaks.BreakRefused`` (one line) for a break that could never fire. Returns what was turned on.
        """
        exitbreaks.check(b)
        if b in self.exit_breaks:
            return ""
        turned_on = []
        for g in self.guests:
            keys = exitbreaks.needs(g.machine.vmx.controls, b)
            g.break_keys[b] = keys
            turned_on += [k for k in keys if k not in g.armed.held]
            g.armed.take(keys)
        self.exit_breaks.append(b)
        return exitbreaks.describe_needs(turned_on)

    def remove_exit_break(self, b: ExitBreak) -> None:
        """Undo ``add_exit_break``: controls nobody else needs go back to what they were."""
        if b not in self.exit_breaks:
            return
        self.exit_breaks.remove(b)
        for g in self.guests:
            g.armed.release(g.break_keys.pop(b, []))

    # --- running ------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Thread-safe: stop the running ``resume`` soon (or the next one before it executes anything).

        The vCPU is asked to stop at its next block boundary (the C block hook's stop flag; no ``emu_stop``, which
        the run loop would take for an unexplained stop); a continue also checks the flag every ``SLICE``."""
        self._interrupt.set()
        for g in self.guests:
            g.cpu.stop_request = "debug"
            g.cpu.st.stop_flag = 1

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
            blocked = []
            for g in live:
                ev = self.advance(g, budget=SLICE)
                if isinstance(ev, _Blocked):
                    blocked.append(f"{self.thread_name(g.tid)}: {ev.why}")
                    continue
                if ev is not None:
                    if ev.kind.value != "T" and len(live) > 1:
                        # one guest of several ended: report it as a trap, the others live on
                        return StopEvent.trap(g.tid, info=ev.info)
                    return ev
            live = [g for g in live if not self._is_over(g)]
            if not live:
                return self._exited_event(order[0])
            if len(blocked) == len(live):
                why = "no guest can run: " + "; ".join(blocked)
                if not self.host.schedulable():
                    return StopEvent.exited(0, live[0].tid, why)   # the host's run is over too (Host.run returns)
                return StopEvent.trap(live[0].tid, info=why)

    def _host_state(self, g: _Guest):
        return self.host.guests[g.name] if self.host is not None else None

    def _is_over(self, g: _Guest) -> bool:
        if g.ended is None:
            state = self._host_state(g)
            if state is not None and state.result is not None:
                g.ended = state.result
        return g.ended is not None

    def _exited_event(self, g: _Guest) -> StopEvent:
        end = g.ended or g.machine.end
        status = getattr(end, "status", 0)
        return StopEvent.exited(status, g.tid, getattr(end, "message", ""))

    def _end(self, g: _Guest, result=None) -> StopEvent:
        """The guest is over (debug exit, shutdown, halted for good, a budget of the host): report ``W``."""
        m = g.machine
        end = result or m.end
        state = self._host_state(g)
        if state is not None and state.result is not None:
            end = state.result
        g.ended = end
        return StopEvent.exited(end.status, g.tid, end.message)

    def advance(self, g: _Guest, *, step: bool = False, budget: Optional[int] = None,
                until_icount: Optional[int] = None) -> Optional[StopEvent]:
        """Run guest ``g``: one instruction (``step``), at most ``budget`` instructions of virtual time, or until
        ``until_icount`` retired. Returns the stop, or None when the budget ran out with nothing to report.

        Under a host, the turn is ``Host.step_guest``'s; a guest the host does not schedule (paused, its disk
        being validated, over a budget) does not run: a step reports why, a continue moves on to the others.
        """
        if self.host is None:
            return self._turn(g, step, budget, until_icount, None, False)
        holder: list[Optional[StopEvent]] = []

        def run(machine, allowance: int):
            holder.append(self._turn(g, step, budget, until_icount, machine.cpu.icount + allowance, True))
            return machine.end
        why = self.host.step_guest(g.name, run)
        if self._is_over(g):
            ev = holder[0] if holder else None
            return ev if ev is not None and ev.kind.value != "T" else self._end(g)
        if why is not None:
            if step or until_icount is not None:
                return StopEvent.trap(g.tid, info=f"{self.thread_name(g.tid)} does not run: {why}")
            return _Blocked(why)
        if holder[0] is None and step:
            return StopEvent.trap(g.tid)        # (a step always stops)
        return holder[0]

    def _turn(self, g: _Guest, step: bool, budget: Optional[int], until_icount: Optional[int],
              cap: Optional[int], yield_on_halt: bool) -> Optional[StopEvent]:
        """Machine.advance until a debugger stop point; ``cap``: never retire more than this count (a host budget)."""
        from emu.machine import EndReason
        m = g.machine
        cpu = m.cpu
        g.hit = None
        g.exit_hit = None
        if m.end is not None:
            return self._end(g)
        start = cpu.icount
        vlimit = None if budget is None else cpu.vtime + budget
        eip = cpu.linear_pc()
        g.stepping_off = eip if eip in g.code_hooks else None
        try:
            if step and not m.entered:
                # a stop that was not a step (breakpoint, exit, attach): first the boundary's own work; an
                # interrupt delivered now is the step (the stop shows the handler's first instruction)
                result = m.enter()
                if result is not None:
                    return self._end(g, result)
                if g.exit_hit is not None:
                    return self._exit_trap(g)
                if cpu.linear_pc() != eip:
                    return StopEvent.trap(g.tid)
            while True:
                if self._interrupt.is_set():
                    self._interrupt.clear()
                    return StopEvent.interrupted(g.tid)
                if until_icount is not None and cpu.icount >= until_icount:
                    return StopEvent.trap(g.tid)
                if vlimit is not None and cpu.vtime >= vlimit:
                    return None
                if cap is not None and cpu.icount >= cap:
                    return None
                if step or g.stepping_off is not None:
                    deadline = cpu.vtime + 1     # leave a breakpoint first, then it is armed again
                else:
                    deadline = vlimit
                    if until_icount is not None:
                        deadline = min(x for x in (deadline, until_icount + cpu.idle) if x is not None)
                if cap is not None:
                    deadline = min(x for x in (deadline, cap + cpu.idle) if x is not None)
                before = cpu.icount
                result = m.advance(deadline, yield_on_halt)
                if cpu.icount != before or cpu.linear_pc() != eip:
                    g.stepping_off = None
                if g.hit is not None:
                    return self._break_trap(g)
                if g.exit_hit is not None:
                    if result is not None and result.reason not in (EndReason.STOPPED, EndReason.IDLE):
                        return self._end(g, result)
                    return self._exit_trap(g)
                if result is not None:
                    if result.reason is EndReason.STOPPED:
                        return StopEvent.trap(g.tid, info=result.message)   # a VM-exit handler's STOP
                    if result.reason is not EndReason.IDLE:
                        return self._end(g, result)
                    if not step or cpu.icount == start:
                        return None          # waiting in HLT: the host runs the other guests meanwhile
                if step and cpu.icount > start:
                    result = m.enter()       # deliver what became deliverable: the stop shows the handler
                    if result is not None:
                        return self._end(g, result)
                    if g.exit_hit is not None:
                        return self._exit_trap(g)
                    return StopEvent.trap(g.tid)
        finally:
            g.stepping_off = None

    def _break_trap(self, g: _Guest) -> StopEvent:
        hit = g.hit
        g.hit = None
        return StopEvent.trap(g.tid, hit.reason, hit.addr, hit.info)

    def _exit_trap(self, g: _Guest) -> StopEvent:
        rec = g.exit_hit
        g.exit_hit = None
        q = rec.qualification
        if rec.reason == IO_EXIT and q & 1 << 3 and not q & 1 << 4 and rec.value is None and g.exits \
                and g.exits[-1] is rec:
            # an IN: the value read is in EAX now that the instruction completed
            rec = dataclasses.replace(rec, value=g.cpu.reg("eax") & ((1 << (8 * ((q & 7) + 1))) - 1))
            g.exits[-1] = rec
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
              "stop (SIGTRAP) after a VM exit of that reason (its VMX controls are turned on while set); "
              "no REASON: list", self._cmd_break_exit)
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
        if b in self.exit_breaks:
            return f"already stopping after exits {b.describe()}"
        try:
            turned_on = self.add_exit_break(b)
        except exitbreaks.BreakRefused as exc:
            return f"error: {exc}"
        return f"will stop after exits {b.describe()}" + (f" (turned on {turned_on})" if turned_on else "")

    def _cmd_clear_exit(self, args: list[str]) -> str:
        if not args:
            n = len(self.exit_breaks)
            for b in list(self.exit_breaks):
                self.remove_exit_break(b)
            return f"cleared {n} exit break(s)"
        b = self._parse_break(args)
        if b not in self.exit_breaks:
            raise MonitorError(f"no exit break {b.describe()}")
        self.remove_exit_break(b)
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
            return [m.vmx]
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
                out.append(f"no {what} on this machine")
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
    try:
        return serve_gdb(target, spec, stream=stream, stub=ExitReportingStub(target))
    finally:
        target.release()


def serve_host(host, spec: str, *, stream: Optional[TextIO] = None) -> SessionEnd:
    """``emu host SCENARIO --gdb [HOST:]PORT``: every guest of ``host`` is a thread; ``monitor trap`` shows the handler.

    Returns when gdb detaches (then call ``host.run()`` to go on with the scheduler), kills, or all guests ended.
    While gdb drives them, guests run in the debugger's turns (a step, or 2^20 instructions), not the scenario's
    quanta, but every turn is ``Host.step_guest``'s: the trap handler sees every exit and is polled after each
    turn (the management guest's deadline), paused and detached guests do not run, the budgets hold.
    """
    target = host_target(host)
    try:
        return serve_gdb(target, spec, stream=stream, stub=ExitReportingStub(target))
    finally:
        target.release()


def host_target(host) -> MachineTarget:
    """The target ``serve_host`` serves: every guest of ``host`` a thread named after it, turns through the host."""
    names = list(host.machines)
    return MachineTarget([host.machines[n] for n in names], names=names, host=host)


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
