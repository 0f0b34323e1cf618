"""The I/O port bus (emu/devices/bus.py): dispatch by port and width, all-ones for unclaimed ports, logging.

Golden values: an unclaimed port reads all-ones at every width and drops writes, as QEMU's ``unassigned_io_ops``
do (observed under QEMU 7.2: port 0x80 reads 0xFF, docs/firmware.md; the ide_slots kernel reads a 32-bit
ffffffff from the bus master block's old ports after BAR4 moved and while BAR4 is being sized).
"""
from __future__ import annotations

import pytest

from emu.devices.bus import ALL_ONES, PortBus, PortConflict


class Latch:
    """A one-register device that records every access."""

    def __init__(self) -> None:
        self.value = 0
        self.log: list[tuple] = []

    def read(self, port: int, size: int) -> int:
        self.log.append(("in", port, size))
        return self.value

    def write(self, port: int, size: int, value: int) -> None:
        self.log.append(("out", port, size, value))
        self.value = value


@pytest.mark.parametrize("size,expected", [(1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF)])
def test_unclaimed_port_reads_all_ones_per_width(size: int, expected: int) -> None:
    bus = PortBus()
    assert bus.read(0x80, size) == expected
    assert bus.read(0xFFFF, size) == expected
    assert bus.owner(0x80) is None


def test_unclaimed_writes_are_ignored() -> None:
    bus, dev = PortBus(), Latch()
    bus.map(0x60, 1, dev.read, dev.write, "latch")
    for size in (1, 2, 4):
        bus.write(0x61, size, 0x12345678 & ALL_ONES[size])   # the neighbour is not claimed
        bus.write(0x5F, size, 0)
    assert dev.log == [] and bus.read(0x61, 1) == 0xFF
    bus.write(0x60, 1, 0x5A)
    assert bus.read(0x60, 1) == 0x5A


def test_log_unclaimed_reports_direction_port_size_value() -> None:
    seen: list[tuple[str, int, int, int]] = []
    bus = PortBus(log_unclaimed=lambda *a: seen.append(a))
    dev = Latch()
    bus.map(0x70, 2, dev.read, dev.write, "latch")
    assert bus.read(0x1234, 2) == 0xFFFF
    bus.write(0x1235, 4, 0xCAFEBABE)
    bus.write(0x70, 1, 7)
    bus.read(0x71, 1)
    assert seen == [("in", 0x1234, 2, 0xFFFF), ("out", 0x1235, 4, 0xCAFEBABE)]   # claimed ports are not logged


def test_claimed_port_without_a_handler_reads_all_ones_and_is_not_logged() -> None:
    seen: list[tuple] = []
    bus = PortBus(log_unclaimed=lambda *a: seen.append(a))
    bus.map(0xE9, 1, None, None, "write-only")
    assert bus.read(0xE9, 1) == 0xFF
    bus.write(0xE9, 1, 0x41)
    assert seen == [] and bus.owner(0xE9) == "write-only"


def test_dispatch_by_port_masks_values_to_the_width() -> None:
    bus, dev = PortBus(), Latch()
    bus.map(0x1F0, 8, dev.read, dev.write, "ata")
    dev.value = 0x1_2345_6789
    assert bus.read(0x1F0, 1) == 0x89 and bus.read(0x1F2, 2) == 0x6789 and bus.read(0x1F4, 4) == 0x23456789
    assert bus.read(0x101F0, 1) == 0x89                  # port numbers wrap at 64 KiB
    assert ("in", 0x1F2, 2) in dev.log                   # the handler is told which port and width
    bus.write(0x1F7, 2, 0xABCDE)
    assert dev.log[-1] == ("out", 0x1F7, 2, 0xBCDE)


def test_conflicting_claims_and_unmap() -> None:
    bus, a, b = PortBus(), Latch(), Latch()
    bus.map(0xC000, 16, a.read, a.write, "bm")
    with pytest.raises(PortConflict, match="0xc00f claimed by bm and nic"):
        bus.map(0xC00F, 2, b.read, b.write, "nic")
    bus.map(0xC000, 16, a.read, a.write, "bm")           # the same owner may map again
    bus.unmap(0xC000, 16)                                # e.g. BAR4 moved
    assert bus.owner(0xC004) is None and bus.read(0xC004, 4) == 0xFFFFFFFF
    bus.map(0xC00F, 2, b.read, b.write, "nic")
    assert bus.owner(0xC010) == "nic"
