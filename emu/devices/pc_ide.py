"""Wiring of QEMU ``pc``'s PCI host, PIIX3 functions, both ATA channels and the bus master block on a PortBus.

A convenience for the machine: everything in one object, ports mapped, BAR4
moves followed, bus master DMA gated by the IDE function's command bit 2.
Disks: ``disks[0..3]`` = primary master, primary slave, secondary master,
secondary slave (QEMU ``-drive index=0..3``).  ``qemu_defaults`` selects
the PCI images of QEMU's default configuration (BAR4 0xC041) or of
``-nodefaults`` (BAR4 0xC001); note that QEMU's default configuration also has
an (empty) ATAPI CD-ROM as secondary master, which is not modelled.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from emu.clock import Clock
from emu.devices.ata import AtaChannel, AtaDrive
from emu.devices.base import GuestMemory, IrqSetter
from emu.devices.bmdma import DEFAULT_BYTES_PER_INSN, BusMasterIde
from emu.devices.pci import PciHost
from emu.devices.piix import PcPciFunctions


class PcIde:
    """PCI configuration mechanism #1, the four bus-0 functions, IDE channels 0/1 and bus master IDE."""

    def __init__(self, bus, memory: GuestMemory, clock: Clock, irq14: Optional[IrqSetter] = None,
                 irq15: Optional[IrqSetter] = None, disks: Sequence[Optional[Any]] = (),
                 read_only: Sequence[bool] = (), bar4: Optional[int] = None, qemu_defaults: bool = True,
                 bytes_per_insn: int = DEFAULT_BYTES_PER_INSN,
                 on_reset_request: Optional[Callable[[int], None]] = None,
                 log: Optional[Callable[[str], None]] = None):
        disks = list(disks) + [None] * (4 - len(disks))
        ro = list(read_only) + [False] * (4 - len(read_only))
        self.bus = bus
        self.pci = PciHost(on_reset_request=on_reset_request)
        self.functions = PcPciFunctions(self.pci, bar4=bar4, qemu_defaults=qemu_defaults)
        self.channels = (AtaChannel(True, set_irq=irq14, master=disks[0], slave=disks[1],
                                    master_read_only=ro[0], slave_read_only=ro[1]),
                         AtaChannel(False, set_irq=irq15, master=disks[2], slave=disks[3],
                                    master_read_only=ro[2], slave_read_only=ro[3]))
        ide = self.functions.ide
        self.bmdma = BusMasterIde(self.channels, memory, clock,
                                  bus_master_enabled=lambda: ide.bus_master_enabled,
                                  bytes_per_insn=bytes_per_insn, log=log)
        self.pci.map(bus)
        for ch in self.channels:
            ch.map(bus)
        self.bmdma.map(bus, ide.bar4_base)
        ide.on_bar4_change = lambda old, new: self.bmdma.remap(bus, old, new)

    @property
    def devices(self) -> list:
        """Every declared-state device, for ``info`` / snapshots / digests."""
        f = self.functions
        return [self.pci, f.i440fx, f.isa, f.ide, f.acpi, *self.channels, self.bmdma]

    def drive(self, index: int) -> AtaDrive:
        """Drive 0..3 in QEMU ``-drive index`` order."""
        return self.channels[index // 2].drives[index % 2]

    @property
    def quiescent(self) -> bool:
        """Safe point for a disk remap: no DMA moving data, no Active without Interrupt, no BSY/DRQ."""
        return self.bmdma.quiescent and not any(ch.busy for ch in self.channels)

    def reset(self) -> None:
        """Machine reset of the IDE side (channels and bus master registers)."""
        for ch in self.channels:
            ch.reset()
