"""The interface between the gdb stub and whatever it debugs (a Machine, a Host of several, or a test fake).

The stub (``emu.debug.gdbstub``) only ever talks to a ``DebugTarget``; the adapter from the
emulator's vCPU/Machine implements it. Every call except ``interrupt()`` is made from the
thread that called ``GdbStub.serve()``; ``interrupt()`` comes from the stub's socket watcher
thread while ``resume()`` runs. Semantics follow the GDB remote protocol
(GDB manual, appendix E "GDB Remote Serial Protocol": "Stop Reply Packets", "vCont", "Z types").
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping, Optional, Protocol, runtime_checkable

SIGINT = 2
"""Signal number gdb shows as SIGINT: the stop after a break-in (0x03) or ``interrupt()``."""
SIGILL = 4
"""Signal number gdb shows as SIGILL (an invalid instruction the target chose to report)."""
SIGTRAP = 5
"""Signal number gdb shows as SIGTRAP: breakpoints, watchpoints, single-step, exit traps."""
SIGKILL = 9
"""Signal number gdb shows as SIGKILL (target killed)."""
SIGSEGV = 11
"""Signal number gdb shows as SIGSEGV (a fault the target chose to report)."""


class DebugTargetError(Exception):
    """A target operation that cannot be done; the stub answers ``E01``."""


class MemoryAccessError(DebugTargetError):
    """``read_memory``/``write_memory`` touched an address that is not mapped (or not translatable)."""


class RegisterAccessError(DebugTargetError):
    """``write_register`` of a register the target cannot change (the stub answers ``E01``)."""


class BreakKind(enum.IntEnum):
    """Breakpoint and watchpoint types, numbered as the ``Z``/``z`` packets number them (GDB manual E.2)."""

    SOFTWARE = 0
    HARDWARE = 1
    WRITE = 2
    READ = 3
    ACCESS = 4


class ResumeKind(enum.Enum):
    """What one thread does on ``resume``: one instruction, or run until something stops it."""

    STEP = "s"
    CONTINUE = "c"


@dataclass(frozen=True)
class ResumeAction:
    """One thread's part of a ``vCont``/``c``/``s`` request; ``signal`` is gdb's signal to deliver (0 = none)."""

    kind: ResumeKind
    signal: int = 0


class StopKind(enum.Enum):
    """Why ``resume`` returned (GDB manual E.3 "Stop Reply Packets": ``T``, ``W``, ``X``)."""

    SIGNAL = "T"
    """Stopped with ``signal`` (SIGTRAP after a step/breakpoint/watchpoint/exit-trap, SIGINT after interrupt())."""
    EXITED = "W"
    """The guest ended; ``status`` is its exit status (emu: the run's exit status, 0..255)."""
    TERMINATED = "X"
    """The guest was terminated by ``signal`` (e.g. a triple fault reported as SIGKILL)."""


class StopReason(enum.Enum):
    """The optional ``T`` stop-reply reason (GDB manual E.3): what exactly made a SIGTRAP stop."""

    NONE = ""
    """A single-step completed, an interrupt, or anything without a more specific reason."""
    SWBREAK = "swbreak"
    """A software breakpoint (``Z0``) at ``addr``; the thread's EIP must equal ``addr`` (not addr + 1)."""
    HWBREAK = "hwbreak"
    """A hardware breakpoint (``Z1``) at ``addr``; EIP equals ``addr``."""
    WATCH = "watch"
    """A write watchpoint (``Z2``) covering ``addr`` triggered; EIP is after the writing instruction."""
    RWATCH = "rwatch"
    """A read watchpoint (``Z3``) covering ``addr`` triggered."""
    AWATCH = "awatch"
    """An access watchpoint (``Z4``) covering ``addr`` triggered."""


@dataclass(frozen=True)
class StopEvent:
    """What ``resume`` reports: the stub turns it into ``T05thread:1;swbreak:;``, ``T05thread:1;watch:a0;``, ``W03``...

    ``info`` is free text the stub does not send in the stop reply (gdb ignores unknown
    ``T`` fields badly in old versions); it is shown by ``monitor`` commands the target implements
    (e.g. "stopped on exit IO_INSTRUCTION port=0x1f7") and logged by the stub.
    """

    kind: StopKind = StopKind.SIGNAL
    signal: int = SIGTRAP
    thread: int = 1
    reason: StopReason = StopReason.NONE
    addr: Optional[int] = None
    status: int = 0
    info: str = ""

    @staticmethod
    def trap(thread: int, reason: StopReason = StopReason.NONE, addr: Optional[int] = None, info: str = "") -> "StopEvent":
        """A SIGTRAP stop of ``thread`` (step done, breakpoint, watchpoint, exit trap)."""
        return StopEvent(StopKind.SIGNAL, SIGTRAP, thread, reason, addr, 0, info)

    @staticmethod
    def interrupted(thread: int) -> "StopEvent":
        """The SIGINT stop ``resume`` returns after ``interrupt()``."""
        return StopEvent(StopKind.SIGNAL, SIGINT, thread)

    @staticmethod
    def exited(status: int, thread: int = 1, info: str = "") -> "StopEvent":
        """The guest ended with exit ``status`` (``W`` reply)."""
        return StopEvent(StopKind.EXITED, 0, thread, StopReason.NONE, None, status, info)


@runtime_checkable
class DebugTarget(Protocol):
    """What the gdb stub needs from the emulator. Threads are guests, numbered from 1.

    Registers use gdb's i386 names (``emu.debug.targetxml.REGISTERS``): eax ecx edx ebx esp ebp
    esi edi eip eflags cs ss ds es fs gs; FPU registers (st0..st7, fctrl..fop) are optional and
    read as zero when absent from ``read_registers``. Addresses are guest-virtual (linear when
    paging is off). ``tid`` is always one of ``threads()``.
    """

    def threads(self) -> list[int]:
        """The live guest ids, 1-based, in display order (``qfThreadInfo``); never empty."""

    def thread_name(self, tid: int) -> str:
        """A short description of guest ``tid`` for ``info threads`` (``qThreadExtraInfo``), e.g. "guest 1 kernel.elf"."""

    def read_registers(self, tid: int) -> dict[str, int]:
        """The current register values of guest ``tid`` by gdb name; missing names read as zero."""

    def write_register(self, tid: int, name: str, value: int) -> None:
        """Set one register; raise RegisterAccessError if it cannot be written. Only called for changed values."""

    def read_memory(self, tid: int, addr: int, size: int) -> bytes:
        """``size`` bytes at guest-virtual ``addr``; raise MemoryAccessError if any byte is unmapped."""

    def write_memory(self, tid: int, addr: int, data: bytes) -> None:
        """Write bytes at guest-virtual ``addr`` (visible to the next executed instruction); MemoryAccessError if unmapped."""

    def insert_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool:
        """Add a breakpoint/watchpoint for every guest; False = this kind is unsupported. Idempotent per (kind, addr, length)."""

    def remove_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool:
        """Remove what ``insert_breakpoint`` added; False = this kind is unsupported. Removing a missing one is fine."""

    def resume(self, actions: Mapping[int, ResumeAction]) -> StopEvent:
        """Run: each guest in ``actions`` steps one instruction or continues; guests not in it stay stopped.

        Blocks until a stop: a step completed, a breakpoint/watchpoint hit (software and hardware
        breakpoints stop *before* the instruction at ``addr`` executes, watchpoints after the access),
        a target-defined trap (e.g. ``monitor break-exit``), the guest ended, or ``interrupt()``.
        When resuming a thread whose EIP is at a breakpoint, that breakpoint must not stop it again
        before the instruction executes (gdb removes it around a step anyway).
        """

    def interrupt(self) -> None:
        """Thread-safe: make the running ``resume`` return soon with ``StopEvent.interrupted``.

        If no ``resume`` is running the request stays pending and the next ``resume`` returns
        with that stop before executing anything (a plain flag gives exactly this).
        """

    def monitor(self, command: str) -> str:
        """Run a ``monitor`` command (``qRcmd``) and return its text output (see ``emu.debug.monitor``)."""

    def kill(self) -> None:
        """gdb sent ``k``/``vKill``: end the guests; the stub closes the connection afterwards."""


__all__ = [
    "SIGINT", "SIGILL", "SIGTRAP", "SIGKILL", "SIGSEGV",
    "DebugTargetError", "MemoryAccessError", "RegisterAccessError",
    "BreakKind", "ResumeKind", "ResumeAction", "StopKind", "StopReason", "StopEvent", "DebugTarget",
]
