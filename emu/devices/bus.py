"""The I/O port bus: IN/OUT dispatched by port to the device that claims it.

Unclaimed ports read all-ones and ignore writes, like a PC's ISA bus
(QEMU's ``unassigned_io_ops``).  Dispatch is one list index per access.
"""
from __future__ import annotations

from typing import Callable, Optional

PortRead = Callable[[int, int], int]
"""``read(port, size) -> value``; size is 1, 2 or 4 bytes."""
PortWrite = Callable[[int, int, int], None]
"""``write(port, size, value)``."""

ALL_ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class PortConflict(ValueError):
    """Two devices claimed the same port."""


class PortBus:
    """65536 byte-addressed I/O ports; each claimed port has a read and a write handler."""

    def __init__(self, log_unclaimed: Optional[Callable[[str, int, int, int], None]] = None):
        self._read: list[Optional[PortRead]] = [None] * 0x10000
        self._write: list[Optional[PortWrite]] = [None] * 0x10000
        self._owner: list[Optional[str]] = [None] * 0x10000
        self.log_unclaimed = log_unclaimed

    def map(self, base: int, count: int, read: Optional[PortRead], write: Optional[PortWrite], owner: str) -> None:
        """Claim ports [base, base+count) for ``owner``; a None handler reads all-ones / drops writes."""
        for port in range(base, base + count):
            if self._owner[port] is not None and self._owner[port] != owner:
                raise PortConflict(f"port {port:#x} claimed by {self._owner[port]} and {owner}")
            self._read[port] = read
            self._write[port] = write
            self._owner[port] = owner

    def unmap(self, base: int, count: int) -> None:
        """Release ports [base, base+count) (e.g. a PCI BAR moved)."""
        for port in range(base, base + count):
            self._read[port] = self._write[port] = self._owner[port] = None

    def owner(self, port: int) -> Optional[str]:
        """Name of the device claiming ``port``."""
        return self._owner[port & 0xFFFF]

    def read(self, port: int, size: int) -> int:
        """IN: the claiming device's value, or all-ones."""
        handler = self._read[port & 0xFFFF]
        if handler is None:
            if self.log_unclaimed and self._owner[port & 0xFFFF] is None:
                self.log_unclaimed("in", port, size, ALL_ONES[size])
            return ALL_ONES[size]
        return handler(port, size) & ALL_ONES[size]

    def write(self, port: int, size: int, value: int) -> None:
        """OUT: handed to the claiming device, or dropped."""
        handler = self._write[port & 0xFFFF]
        if handler is None:
            if self.log_unclaimed and self._owner[port & 0xFFFF] is None:
                self.log_unclaimed("out", port, size, value)
            return
        handler(port, size, value & ALL_ONES[size])
