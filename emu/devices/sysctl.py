"""System control port B (0x61): PIT counter 2 gate, speaker data, refresh toggle, OUT2.

Bit layout (IBM PC/AT technical reference, port 61h; PIIX3 datasheet 'NMI
status and control register'), as QEMU's ``hw/audio/pcspk.c`` implements it:

* write: bit 0 = counter 2 GATE, bit 1 = speaker data enable; other bits ignored;
* read:  bit 0 = GATE2, bit 1 = speaker data enable, bit 4 = refresh toggle,
  bit 5 = OUT2; bits 2, 3, 6, 7 read 0.

The refresh bit flips once per DRAM refresh request.  By default it is derived
from virtual time: one request every 18 PIT input ticks (the AT BIOS's count
for counter 1, 15.09 us), so delay loops that count its toggles take the same
virtual time as on a PC.  ``refresh=RefreshMode.PER_READ`` instead flips it on
every read, which is what QEMU does.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from emu.clock import NS_PER_S
from emu.devices.base import Device
from emu.devices.pic import split_read, split_write
from emu.devices.pit import PIT_FREQ, Pit8254

PORT_B = 0x61
PORTB_GATE2 = 0x01
"""Counter 2 gate (read/write)."""
PORTB_SPEAKER_DATA = 0x02
"""Speaker data enable (read/write)."""
PORTB_REFRESH = 0x10
"""Refresh request toggle (read-only)."""
PORTB_OUT2 = 0x20
"""Counter 2 OUT (read-only)."""
REFRESH_TICKS = 18
"""PIT input ticks between two DRAM refresh requests (AT BIOS programs counter 1 with 18)."""


class RefreshMode(enum.Enum):
    """How bit 4 of port 0x61 toggles."""

    VIRTUAL_TIME = "virtual-time"
    PER_READ = "per-read"


@dataclass
class PortBState:
    """The stored bits of port 0x61 (gate 2 lives in the PIT)."""

    data_on: bool = False
    refresh_toggle: bool = False


class SystemControlPortB(Device):
    """Port 0x61: speaker/gate control and status bits for PIT counter 2."""

    name = "port61"
    PORTS = ((PORT_B, 1),)
    """(base, count) port ranges the machine maps with ``bus.map``."""

    def __init__(self, pit: Pit8254, refresh: RefreshMode = RefreshMode.VIRTUAL_TIME):
        self.pit = pit
        self.refresh = refresh
        self.state = PortBState()

    def _refresh_bit(self) -> int:
        if self.refresh is RefreshMode.PER_READ:
            self.state.refresh_toggle = not self.state.refresh_toggle
            return int(self.state.refresh_toggle)
        ticks = self.pit.clock.ns() * PIT_FREQ // NS_PER_S
        return (ticks // REFRESH_TICKS) & 1

    def _read_byte(self, offset: int) -> int:
        return (
            self.pit.gate(2)
            | (int(self.state.data_on) << 1)
            | (self._refresh_bit() << 4)
            | (self.pit.out(2) << 5)
        )

    def _write_byte(self, offset: int, value: int) -> None:
        self.state.data_on = bool(value & PORTB_SPEAKER_DATA)
        self.pit.set_gate(2, value & PORTB_GATE2)

    def io_read(self, port: int, size: int) -> int:
        """IN 0x61: GATE2 | data enable << 1 | refresh << 4 | OUT2 << 5; a word reads the register twice (QEMU)."""
        return split_read(port - PORT_B, size, self._read_byte)

    def io_write(self, port: int, size: int, value: int) -> None:
        """OUT 0x61: bit 0 drives GATE2, bit 1 the speaker data enable; each byte of a wider write in turn."""
        split_write(port - PORT_B, size, value, self._write_byte)
