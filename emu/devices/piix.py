"""The four PCI functions of QEMU's ``pc`` machine on bus 0, as SeaBIOS leaves them for a multiboot kernel.

Configuration images were read back from ``qemu-system-i386`` 7.2
(``-machine pc``) by ``tests/devices/qemu_ide_probe.c`` after SeaBIOS ran;
only the non-zero dwords are listed.  Identities: Intel 82441FX (i440FX) host
bridge 8086:1237 rev 2, 82371SB (PIIX3) ISA bridge 8086:7000 (multi-function
header), PIIX3 IDE 8086:7010 (class 0x0101, prog-if 0x80 = bus master capable,
both channels in legacy mode), 82371AB (PIIX4) power management 8086:7113
rev 3.  Subsystem 1af4:1100 (QEMU) on all of them.

PIIX3 IDE (82371SB datasheet section 2.3, QEMU ``hw/ide/piix.c``):
BAR0-3 are not implemented (legacy ports 0x1F0/0x3F6, 0x170/0x376 are fixed),
BAR4 (offset 0x20) is the 16-byte bus master block; SeaBIOS puts it at the
first free I/O address: 0xC040 with QEMU's default NIC, 0xC000 with
``-nodefaults``.  IDETIM 0x40/0x42 = 0x8000 (IDE decode enable), command
0x0103: I/O + memory decode and SERR on, **bus master off**.
"""
from __future__ import annotations

from typing import Callable, Optional

from emu.devices.pci import BarSpec, PciFunction, PciHost

INTEL = 0x8086
I440FX_DEVICE_ID = 0x1237
PIIX3_ISA_DEVICE_ID = 0x7000
PIIX3_IDE_DEVICE_ID = 0x7010
PIIX4_ACPI_DEVICE_ID = 0x7113

IDE_BAR4 = 4
"""BAR index of the bus master IDE block (config offset 0x20)."""
BMIBA_SIZE = 16
"""Bytes of the bus master block: 8 per channel (PIIX3 datasheet 2.7)."""
DEFAULT_BAR4 = 0xC041
"""BAR4 as SeaBIOS leaves it under QEMU's default ``pc`` configuration (I/O space bit set)."""
NODEFAULTS_BAR4 = 0xC001
"""BAR4 under ``-nodefaults`` (no NIC claims 0xC000 first)."""
IDETIM_PRI = 0x40
IDETIM_SEC = 0x42

# Non-zero configuration dwords observed under QEMU 7.2 + SeaBIOS (offset: value).
_I440FX = {0x00: 0x12378086, 0x04: 0x00000103, 0x08: 0x06000002, 0x2C: 0x11001AF4,
           0x54: 0x04000000, 0x58: 0x11111000, 0x5C: 0x33111111, 0x70: 0x000A0000}
_PIIX3_ISA = {0x00: 0x70008086, 0x04: 0x02000103, 0x08: 0x06010000, 0x0C: 0x00800000,
              0x2C: 0x11001AF4, 0x4C: 0x0003004D, 0x60: 0x0B0B0A0A, 0x68: 0x00000200,
              0x70: 0x00000080, 0x74: 0x0C0C0000, 0x78: 0x00000002, 0xA0: 0x00000008,
              0xA8: 0x0000000F}
_PIIX3_IDE = {0x00: 0x70108086, 0x04: 0x02800103, 0x08: 0x01018000, 0x2C: 0x11001AF4,
              0x40: 0x80008000}
_PIIX4_ACPI = {0x00: 0x71138086, 0x04: 0x02800103, 0x08: 0x06800003, 0x2C: 0x11001AF4,
               0x3C: 0x00000109, 0x40: 0x00000601, 0x58: 0x02000000, 0x5C: 0x10000000,
               0x60: 0x60000000, 0x80: 0x00000001, 0x90: 0x00000701, 0xD0: 0x00090000}


def _image(dwords: dict[int, int]) -> bytes:
    cfg = bytearray(256)
    for off, val in dwords.items():
        cfg[off:off + 4] = val.to_bytes(4, "little")
    return bytes(cfg)


class I440FX(PciFunction):
    """00:00.0 host bridge (82441FX PMC); PAM/SMRAM registers are stored, not acted on."""

    def __init__(self) -> None:
        super().__init__("i440fx", _image(_I440FX))


class Piix3Isa(PciFunction):
    """00:01.0 PCI-to-ISA bridge (PIIX3 function 0); PIRQ routing 0x60-0x63 = 10, 10, 11, 11 (SeaBIOS)."""

    def __init__(self) -> None:
        super().__init__("piix3-isa", _image(_PIIX3_ISA))


class Piix4Acpi(PciFunction):
    """00:01.3 power management function (PIIX4 function 3); PM base 0x600 at 0x40, SCI on IRQ 9.

    With QEMU's default devices (serial and parallel ports present) QEMU sets
    device resource byte 0x5F to 0x90 (0x10 without them) and 0x67 to 0x08
    (0 without); both observed, with and without ``-nodefaults``.
    """

    def __init__(self, qemu_defaults: bool = True) -> None:
        image = bytearray(_image(_PIIX4_ACPI))
        if qemu_defaults:
            image[0x5F] = 0x90
            image[0x67] = 0x08
        super().__init__("piix4-acpi", bytes(image))


class Piix3Ide(PciFunction):
    """00:01.1 IDE function: BAR4 bus master block that may move, bus master enable in command bit 2."""

    def __init__(self, bar4: int = DEFAULT_BAR4, command: int = 0x0103):
        image = bytearray(_image(_PIIX3_IDE))
        image[0x20:0x24] = ((bar4 & 0xFFFFFFF0) | 1).to_bytes(4, "little")
        image[0x04:0x06] = command.to_bytes(2, "little")
        super().__init__("piix3-ide", bytes(image), (BarSpec(IDE_BAR4, BMIBA_SIZE, io=True),))
        self.on_bar4_change: Optional[Callable[[Optional[int], Optional[int]], None]] = None
        """Called as ``on_bar4_change(old_base, new_base)`` when the decoded BAR4 moves (None = not decoded)."""
        self.bar_listeners.append(self._bar_moved)

    def _bar_moved(self, index: int, old: Optional[int], new: Optional[int]) -> None:
        if index == IDE_BAR4 and self.on_bar4_change is not None:
            self.on_bar4_change(old, new)

    @property
    def bar4_base(self) -> Optional[int]:
        """I/O base of the bus master block now decoded (None when I/O decode is off or BAR4 is being sized)."""
        return self.bar_base(IDE_BAR4)

    @property
    def idetim(self) -> tuple[int, int]:
        """IDE timing registers (primary, secondary); bit 15 = decode enable."""
        return self.config_read(IDETIM_PRI, 2), self.config_read(IDETIM_SEC, 2)


class PcPciFunctions:
    """The bus-0 functions of QEMU's ``pc`` machine registered on a :class:`PciHost`.

    ``qemu_defaults`` picks the image of QEMU's default configuration (BAR4
    0xC041, serial/parallel bits in the PM function) or of ``-nodefaults``
    (BAR4 0xC001); ``bar4`` overrides the BAR.  VGA (00:02.0) and the NIC
    (00:03.0) of the default configuration are not part of this set.
    """

    def __init__(self, host: PciHost, bar4: Optional[int] = None, qemu_defaults: bool = True):
        self.host = host
        if bar4 is None:
            bar4 = DEFAULT_BAR4 if qemu_defaults else NODEFAULTS_BAR4
        self.i440fx = I440FX()
        self.isa = Piix3Isa()
        self.ide = Piix3Ide(bar4)
        self.acpi = Piix4Acpi(qemu_defaults)
        host.add(0, 0, self.i440fx)
        host.add(1, 0, self.isa)
        host.add(1, 1, self.ide)
        host.add(1, 3, self.acpi)
