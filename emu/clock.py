"""Virtual time: a pure function of the exact guest instruction count.

The virtual CPU retires one instruction per cycle (``cycles_per_insn`` = 1) at
``hz`` = 1 GHz, so by default one instruction is one nanosecond and the TSC
equals the instruction count.  Nothing here reads the host clock: two runs of
the same inputs see the same times (QEMU's ``-icount`` gives the same
guarantee).  Devices schedule callbacks on the timer queue; the vCPU run loop
asks :meth:`Clock.next_deadline` how far it may run before one is due and the
callbacks fire at exactly that instruction count.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Callable, Optional

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class ClockSpec:
    """The virtual CPU's speed: ``hz`` cycles per second, ``cycles_per_insn`` per instruction."""

    hz: int = 1_000_000_000
    cycles_per_insn: int = 1


@dataclass(order=True)
class Timer:
    """One scheduled callback; ``due`` is an instruction count."""

    due: int
    seq: int
    callback: Callable[[], None] = field(compare=False)
    name: str = field(compare=False, default="")
    cancelled: bool = field(compare=False, default=False)


class Clock:
    """Instruction count → cycles → nanoseconds, and a deterministic timer queue."""

    def __init__(self, spec: ClockSpec = ClockSpec(), icount: Optional[Callable[[], int]] = None):
        self.spec = spec
        self._icount = icount or (lambda: 0)
        self._queue: list[Timer] = []
        self._seq = itertools.count()
        self.on_schedule: Optional[Callable[[int], None]] = None
        """Told the due time of each new timer (the vCPU lowers a running deadline with it)."""

    def attach(self, icount: Callable[[], int]) -> None:
        """Take the exact instruction count from ``icount`` (the vCPU's counter)."""
        self._icount = icount

    # --- conversions -----------------------------------------------------
    @property
    def icount(self) -> int:
        """Exact number of guest instructions retired so far."""
        return self._icount()

    def cycles(self, icount: Optional[int] = None) -> int:
        """Cycles at ``icount`` (default: now); this is also the virtual TSC."""
        return (self.icount if icount is None else icount) * self.spec.cycles_per_insn

    def tsc(self) -> int:
        """Deterministic time-stamp counter (RDTSC): cycles since reset."""
        return self.cycles()

    def ns(self, icount: Optional[int] = None) -> int:
        """Nanoseconds of virtual time at ``icount`` (default: now), rounded down."""
        return self.cycles(icount) * NS_PER_S // self.spec.hz

    def icount_at_ns(self, ns: int) -> int:
        """The first instruction count at which ``ns`` nanoseconds have elapsed."""
        cycles = -(-ns * self.spec.hz // NS_PER_S)
        return -(-cycles // self.spec.cycles_per_insn)

    def insns_for_ticks(self, ticks: int, tick_hz: int) -> int:
        """Instructions spanned by ``ticks`` periods of a ``tick_hz`` clock (rounded up)."""
        cycles = -(-ticks * self.spec.hz // tick_hz)
        return -(-cycles // self.spec.cycles_per_insn)

    # --- timer queue -----------------------------------------------------
    def schedule(self, due: int, callback: Callable[[], None], name: str = "") -> Timer:
        """Call ``callback`` when the instruction count reaches ``due``."""
        timer = Timer(max(due, 0), next(self._seq), callback, name)
        heapq.heappush(self._queue, timer)
        if self.on_schedule is not None:
            self.on_schedule(timer.due)
        return timer

    def schedule_in(self, insns: int, callback: Callable[[], None], name: str = "") -> Timer:
        """Call ``callback`` ``insns`` instructions from now."""
        return self.schedule(self.icount + insns, callback, name)

    @staticmethod
    def cancel(timer: Optional[Timer]) -> None:
        """Forget ``timer`` (no-op for None or an already fired timer)."""
        if timer is not None:
            timer.cancelled = True

    def next_deadline(self) -> Optional[int]:
        """Instruction count of the earliest pending timer, or None."""
        q = self._queue
        while q and q[0].cancelled:
            heapq.heappop(q)
        return q[0].due if q else None

    def run_due(self, now: Optional[int] = None) -> int:
        """Fire every timer due at or before ``now`` (default: the current count), in order."""
        now = self.icount if now is None else now
        fired = 0
        q = self._queue
        while q and (q[0].cancelled or q[0].due <= now):
            timer = heapq.heappop(q)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()
                fired += 1
        return fired

    def pending(self) -> list[Timer]:
        """The live timers, earliest first (for `info` dumps)."""
        return sorted(t for t in self._queue if not t.cancelled)
