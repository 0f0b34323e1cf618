"""The PC platform of QEMU's ``pc`` machine, wired: PIC pair, PIT, port 0x61, PCI + PIIX3, IDE, bus master.

Wiring lives here, not in the devices (QEMU's ``hw/i386/pc_piix.c`` plays
this role): each device's ports are claimed on the machine's port bus and its
interrupt line is connected to the PIC.  The state is what a multiboot kernel
finds after SeaBIOS under the reference command line of ``tools/qemu_ref.py``
(QEMU 7.2 ``-M pc -nodefaults``): PCI BAR4 = 0xC001 (bus master block at
0xC000), IDETIM decode on, bus mastering off.  QEMU's default configuration
(no ``-nodefaults``) puts a NIC at 0xC000 first, so BAR4 reads 0xC041 there,
and adds VGA, the NIC and a CD-ROM that are not modelled (docs/devices-ide.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from emu import EmuError
from emu.devices.ata import AtaChannel
from emu.devices.bmdma import BusMasterIde
from emu.devices.pc_ide import PcIde
from emu.devices.pci import PciHost
from emu.devices.pic import Pic8259Pair
from emu.devices.piix import PcPciFunctions
from emu.devices.pit import Pit8254
from emu.devices.sysctl import SystemControlPortB

IRQ_PIT, IRQ_IDE0, IRQ_IDE1 = 0, 14, 15


@dataclass
class Platform:
    """The devices of one PC, for state dumps (``info``) and the trap handler's safety checks."""

    pic: Pic8259Pair
    pit: Pit8254
    port61: SystemControlPortB
    pci: PciHost
    functions: PcPciFunctions
    ide: tuple[AtaChannel, AtaChannel]
    bmdma: BusMasterIde


def build(machine, disks: list[Optional[str]], read_only: bool = False) -> Platform:
    """Create the platform devices of ``machine`` and claim their ports; ``disks`` are image paths by IDE slot
    (0 primary master … 3 secondary slave; None leaves a slot empty)."""
    from emu.storage.image import DiskImage

    bus = machine.bus
    pic = Pic8259Pair()
    pit = Pit8254(machine.clock, pic.irq_line(IRQ_PIT))
    port61 = SystemControlPortB(pit)
    if len(disks) > 4:
        raise EmuError("at most 4 disks (primary/secondary, master/slave)")
    images: list[Optional[DiskImage]] = []
    for path in disks:
        if path is None:            # an empty IDE slot
            images.append(None)
            continue
        images.append(DiskImage(path, read_only=read_only))
        machine._closers.insert(0, images[-1].flush)
        machine._closers.append(images[-1].close)
    ide = PcIde(bus, machine.cpu, machine.clock, irq14=pic.irq_line(IRQ_IDE0), irq15=pic.irq_line(IRQ_IDE1),
                disks=images, read_only=[read_only] * len(images), qemu_defaults=False)  # the reference: -nodefaults
    for dev in (pic, pit, port61):
        machine.add_device(dev)
    for dev in ide.devices:
        machine.devices[dev.name] = dev
    seabios_leftovers(bus)
    return Platform(pic, pit, port61, ide.pci, ide.functions, ide.channels, ide.bmdma)


# What QEMU 7.2 + SeaBIOS leave programmed for a multiboot kernel (measured under QEMU):
# PIC vector bases 0x08/0x70, IMR 0xB8/0x8E, ELCR 0x00/0x0C; PIT counter 0 in mode 2 with count 65536.
SEABIOS_PORT_WRITES = (
    (0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xB8),
    (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01), (0xA1, 0x8E),
    (0x4D0, 0x00), (0x4D1, 0x0C),
    (0x43, 0x34), (0x40, 0x00), (0x40, 0x00),
)


def seabios_leftovers(bus) -> None:
    """Program the PIC pair, ELCR and PIT the way SeaBIOS leaves them (through their own ports)."""
    for port, value in SEABIOS_PORT_WRITES:
        bus.write(port, 1, value)
