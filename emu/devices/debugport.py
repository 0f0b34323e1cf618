"""QEMU's debug console (``-debugcon``, port 0xE9) and ``isa-debug-exit`` (port 0xF4).

Debug console: each byte OUT to 0xE9 is a byte of the guest's transcript; a
16-bit or 32-bit OUT prints nothing (QEMU's ``debugcon`` region accepts only
byte writes); IN returns 0xE9 (QEMU's ``readback``).  Debug exit: OUT of v
ends the machine with exit status ``(v << 1) | 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from emu.devices.base import Device

DEBUGCON_PORT = 0xE9
DEBUG_EXIT_PORT = 0xF4
DEBUGCON_READBACK = 0xE9


@dataclass
class DebugConsoleState:
    """Bytes written so far."""

    written: int = 0


class DebugConsole(Device):
    """Port 0xE9: guest bytes to a sink (stdout by default)."""

    name = "debugcon"
    PORTS = ((DEBUGCON_PORT, 1),)

    def __init__(self, sink: Callable[[int], None]):
        self.state = DebugConsoleState()
        self.sink = sink

    def io_read(self, port: int, size: int) -> int:
        return DEBUGCON_READBACK

    def io_write(self, port: int, size: int, value: int) -> None:
        if size != 1:
            return
        self.state.written += 1
        self.sink(value & 0xFF)


@dataclass
class DebugExitState:
    """The value written, once the guest asked to exit."""

    value: int | None = None


class DebugExit(Device):
    """Port 0xF4: a write of v ends the run with status (v << 1) | 1."""

    name = "debug-exit"
    PORTS = ((DEBUG_EXIT_PORT, 1),)

    def __init__(self, on_exit: Callable[[int], None]):
        self.state = DebugExitState()
        self.on_exit = on_exit

    @property
    def status(self) -> int | None:
        """The process exit status QEMU would return, once written."""
        return None if self.state.value is None else ((self.state.value << 1) | 1) & 0xFF

    def io_read(self, port: int, size: int) -> int:
        return 0xFFFFFFFF

    def io_write(self, port: int, size: int, value: int) -> None:
        self.state.value = value
        self.on_exit(value)
