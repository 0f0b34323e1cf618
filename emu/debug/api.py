"""Python stepping API over one Machine: step by instructions, run to the next VM exit, inspect and change state.

The same engine as the gdb stub (``MachineTarget``): a step executes exactly one guest instruction
(interrupt delivery and HLT included, see ``emu.debug.machine_target``), exits are the records
``monitor exits`` shows (SDM basic exit reasons, ``emu.debug.exits``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from emu.debug.exits import ExitBreak, ExitRecord, reason_number
from emu.debug.machine_target import MachineTarget
from emu.debug.target import BreakKind, ResumeAction, ResumeKind, StopEvent, StopKind

TID = 1


@dataclass(frozen=True)
class Stop:
    """Why a Session call returned: ``kind`` is "step", "breakpoint", "watchpoint", "exit", "ended" or "limit"."""

    kind: str
    icount: int
    eip: int
    exit: Optional[ExitRecord] = None
    status: Optional[int] = None
    message: str = ""


class Session:
    """Drive one ``emu.machine.Machine`` from Python (the machine must not be running elsewhere)."""

    def __init__(self, machine) -> None:
        self.machine = machine
        self.target = MachineTarget(machine)
        self._g = self.target.guests[0]

    # --- state ------------------------------------------------------------------------------------
    @property
    def icount(self) -> int:
        """Guest instructions retired so far."""
        return self.machine.cpu.icount

    @property
    def regs(self) -> dict[str, int]:
        """eax…edi, eip, eflags and the segment selectors."""
        return self.target.read_registers(TID)

    def set_reg(self, name: str, value: int) -> None:
        """Write one register (``RegisterAccessError`` for registers that cannot be written)."""
        self.target.write_register(TID, name, value)

    def read(self, addr: int, size: int) -> bytes:
        """Guest-virtual memory (``MemoryAccessError`` when unmapped)."""
        return self.target.read_memory(TID, addr, size)

    def write(self, addr: int, data: bytes) -> None:
        """Write guest-virtual memory; code written this way runs as written."""
        self.target.write_memory(TID, addr, data)

    @property
    def exits(self) -> list[ExitRecord]:
        """The VM exits recorded so far (most recent last; the last 4096 are kept)."""
        return list(self._g.exits)

    @property
    def ended(self) -> bool:
        """True once the guest is over (debug exit, shutdown, halted for good)."""
        return self.machine.end is not None

    def monitor(self, command: str) -> str:
        """Run a gdb ``monitor`` command (``info pic``, ``exits 5``…) and return its text."""
        return self.target.monitor(command)

    def add_breakpoint(self, addr: int) -> None:
        """Stop before the instruction at linear ``addr`` executes."""
        self.target.insert_breakpoint(BreakKind.HARDWARE, addr, 1)

    def remove_breakpoint(self, addr: int) -> None:
        """Remove a breakpoint added with ``add_breakpoint``."""
        self.target.remove_breakpoint(BreakKind.HARDWARE, addr, 1)

    # --- running ------------------------------------------------------------------------------------
    def step(self, n: int = 1) -> Stop:
        """Execute ``n`` guest instructions (fewer if a breakpoint, watchpoint or the guest's end comes first)."""
        if n < 1:
            raise ValueError("step count must be >= 1")
        ev: Optional[StopEvent] = None
        for _ in range(n):
            ev = self.target.resume({TID: ResumeAction(ResumeKind.STEP)})
            stop = self._stop(ev, "step")
            if stop.kind != "step":
                return stop
        return self._stop(ev, "step")

    def cont(self) -> Stop:
        """Run until a breakpoint, a watchpoint, a ``break-exit`` or the end of the guest."""
        return self._stop(self.target.resume({TID: ResumeAction(ResumeKind.CONTINUE)}), "limit")

    def next_exit(self, kind: Optional[str | int] = None, **filters: int) -> Stop:
        """Run to the next VM exit (of reason ``kind``, e.g. "IO_INSTRUCTION", and ``port=``/``msr=``/``vector=``).

        Returns with ``exit`` set, or ``kind == "ended"`` if the guest ended first. Without ``kind`` the next exit the
        current VMX controls produce stops it; with ``kind`` the controls such an exit needs are on meanwhile
        (``emu.debug.exitbreaks``), and a kind that could never fire raises ValueError.
        """
        if kind is None and filters:
            raise ValueError("port/msr/vector filters need an exit reason")
        target = self.target
        added: Optional[ExitBreak] = None
        if kind is None:
            target.any_exit = True
        else:
            b = ExitBreak(reason_number(str(kind)), filters.get("port"), filters.get("msr"), filters.get("vector"))
            if b not in target.exit_breaks:
                target.add_exit_break(b)       # BreakRefused (a ValueError) when it could never fire
                added = b
        try:
            ev = target.resume({TID: ResumeAction(ResumeKind.CONTINUE)})
        finally:
            target.any_exit = False
            if added is not None:
                target.remove_exit_break(added)
        stop = self._stop(ev, "limit")
        if ev.info.startswith("exit ") and self._g.exits:
            return Stop("exit", stop.icount, stop.eip, self._g.exits[-1])
        return stop

    def run_until(self, icount: int) -> Stop:
        """Run until exactly ``icount`` instructions have retired (or a breakpoint / the end comes first)."""
        if icount < self.icount:
            raise ValueError(f"icount {icount} is in the past (now {self.icount})")
        ev = self.target.advance(self._g, until_icount=icount)
        self.target.last_stop = ev
        return self._stop(ev, "limit")

    def _stop(self, ev: StopEvent, plain: str) -> Stop:
        cpu = self.machine.cpu
        if ev.kind is not StopKind.SIGNAL:
            end = self.machine.end
            return Stop("ended", cpu.icount, cpu.reg("eip"), status=ev.status,
                        message=end.message if end is not None else ev.info)
        reason = ev.reason.value
        if reason in ("swbreak", "hwbreak"):
            kind = "breakpoint"
        elif reason in ("watch", "rwatch", "awatch"):
            kind = "watchpoint"
        elif ev.info.startswith("exit "):
            kind = "exit"
        else:
            kind = plain
        rec = self._g.exits[-1] if kind == "exit" and self._g.exits else None
        return Stop(kind, cpu.icount, cpu.reg("eip"), rec, message=ev.info)

