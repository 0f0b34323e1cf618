"""Test wiring of the PCI / ATA / bus master models on a PortBus, with a bytearray RAM and a manual clock.

Every port access advances the fake instruction counter by ``insns_per_io``
and fires due timers, so a guest-style polling loop sees time pass.  Golden
values come from the QEMU 7.2 transcripts in ``qemu_probe/``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from emu.clock import Clock
from emu.devices.bus import PortBus
from emu.devices.pc_ide import PcIde
from emu.storage.source import SECTOR_SIZE, StorageError, check_range

PROBE_DIR = Path(__file__).resolve().parent / "qemu_probe"
DISK_SECTORS = 2048


def probe_text(n: int, variant: str = "") -> str:
    """Transcript of probe ``n`` under QEMU 7.2 (``variant`` "-default": without ``-nodefaults``)."""
    return (PROBE_DIR / f"probe{n}{variant}.out").read_text()


def probe_value(n: int, key: str) -> int:
    """Value of a ``key=hex`` line of probe ``n``."""
    m = re.search(rf"^{re.escape(key)}=([0-9a-f]+)$", probe_text(n), re.M)
    assert m, key
    return int(m.group(1), 16)


def probe_dump(n: int, tag: str) -> dict[str, int]:
    """The register dump line ``tag: st=.. err=.. ...`` of probe ``n``."""
    m = re.search(rf"^{re.escape(tag)}: (st=.*)$", probe_text(n), re.M)
    assert m, tag
    return {k: int(v, 16) for k, v in re.findall(r"(\w+)=([0-9a-f]+)", m.group(1)) if k != "irr"}


def pattern_disk(sectors: int = DISK_SECTORS) -> bytearray:
    """The probes' disk: byte i of sector s is (s + i) & 0xFF."""
    row = bytes(range(256)) * 3
    out = bytearray(sectors * SECTOR_SIZE)
    for s in range(sectors):
        k = s & 0xFF
        out[s * SECTOR_SIZE:(s + 1) * SECTOR_SIZE] = row[k:k + SECTOR_SIZE]
    return out


def mbr_pattern_disk() -> bytearray:
    """probe3's second disk: the pattern disk with one partition ending at head 15, sector 32."""
    d = pattern_disk()
    entry = bytearray(16)
    entry[4], entry[5], entry[6] = 0x83, 15, 32
    entry[8:12] = (1).to_bytes(4, "little")
    entry[12:16] = (1000).to_bytes(4, "little")
    d[0x1BE:0x1CE] = entry
    d[510:512] = b"\x55\xaa"
    return d


class FakeDisk:
    """A writable in-memory SectorSource with a flush counter."""

    sector_size = SECTOR_SIZE

    def __init__(self, data: bytearray, read_only: bool = False):
        self.data = data
        self.sectors = len(data) // SECTOR_SIZE
        self.read_only = read_only
        self.flushes = 0

    def read(self, lba: int, count: int) -> bytes:
        check_range(lba, count, self.sectors)
        return bytes(self.data[lba * SECTOR_SIZE:(lba + count) * SECTOR_SIZE])

    def write(self, lba: int, data) -> None:
        if self.read_only:
            raise StorageError("read-only")
        check_range(lba, len(data) // SECTOR_SIZE, self.sectors)
        self.data[lba * SECTOR_SIZE:lba * SECTOR_SIZE + len(data)] = data

    def flush(self) -> None:
        self.flushes += 1


class FakeRam:
    """GuestMemory over a bytearray at physical address 0."""

    def __init__(self, size: int):
        self.b = bytearray(size)

    def contains(self, addr: int, size: int) -> bool:
        return addr >= 0 and addr + size <= len(self.b)

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.b[addr:addr + size])

    def write(self, addr: int, data) -> None:
        self.b[addr:addr + len(data)] = data


class IdeMachine:
    """PCI host + PIIX functions + both ATA channels + bus master block on one PortBus."""

    def __init__(self, master: Optional[FakeDisk] = None, bar4: Optional[int] = None, ram: int = 1 << 20,
                 insns_per_io: int = 10, bytes_per_insn: int = 4, slave: Optional[FakeDisk] = None,
                 qemu_defaults: bool = False):
        self.t = 0
        self.insns_per_io = insns_per_io
        self.clock = Clock(icount=lambda: self.t)
        self.irq = {14: [], 15: []}
        self.bus = PortBus()
        self.disk = master if master is not None else FakeDisk(pattern_disk())
        self.ram = FakeRam(ram)
        self.ide = PcIde(self.bus, self.ram, self.clock, irq14=self.irq[14].append, irq15=self.irq[15].append,
                         disks=[self.disk, slave], bar4=bar4, bytes_per_insn=bytes_per_insn,
                         qemu_defaults=qemu_defaults)
        self.pci = self.ide.pci
        self.fns = self.ide.functions
        self.ch0, self.ch1 = self.ide.channels
        self.bm = self.ide.bmdma

    @property
    def irq14(self) -> int:
        """Current level of IRQ 14."""
        return self.ch0.state.irq_level

    def tick(self, n: Optional[int] = None) -> None:
        """Let ``n`` instructions pass and fire due timers."""
        self.t += self.insns_per_io if n is None else n
        self.clock.run_due()

    def inb(self, port: int) -> int:
        self.tick()
        return self.bus.read(port, 1)

    def inw(self, port: int) -> int:
        self.tick()
        return self.bus.read(port, 2)

    def inl(self, port: int) -> int:
        self.tick()
        return self.bus.read(port, 4)

    def outb(self, port: int, v: int) -> None:
        self.tick()
        self.bus.write(port, 1, v)

    def outw(self, port: int, v: int) -> None:
        self.tick()
        self.bus.write(port, 2, v)

    def outl(self, port: int, v: int) -> None:
        self.tick()
        self.bus.write(port, 4, v)

    # --- PCI helpers (mechanism #1, as the probe does it) ---------------------------
    @staticmethod
    def cfgaddr(d: int, f: int, r: int) -> int:
        return 0x80000000 | d << 11 | f << 8 | (r & 0xFC)

    def cfgl(self, d: int, f: int, r: int) -> int:
        self.outl(0xCF8, self.cfgaddr(d, f, r))
        return self.inl(0xCFC)

    def cfgwl(self, d: int, f: int, r: int, v: int) -> None:
        self.outl(0xCF8, self.cfgaddr(d, f, r))
        self.outl(0xCFC, v)

    def cfgw(self, d: int, f: int, r: int) -> int:
        self.outl(0xCF8, self.cfgaddr(d, f, r))
        return self.inw(0xCFC + (r & 2))

    def cfgww(self, d: int, f: int, r: int, v: int) -> None:
        self.outl(0xCF8, self.cfgaddr(d, f, r))
        self.outw(0xCFC + (r & 2), v)

    @property
    def bmbase(self) -> int:
        return self.cfgl(1, 1, 0x20) & 0xFFF0

    def enable_bus_master(self, on: bool = True) -> None:
        cmd = self.cfgw(1, 1, 4)
        self.cfgww(1, 1, 4, cmd | 4 if on else cmd & ~4)

    # --- ATA helpers ---------------------------------------------------------------
    def wait_not_busy(self, base: int = 0x1F0, limit: int = 10_000_000) -> None:
        for _ in range(limit):
            if not self.inb(base + 0x206) & 0x80:
                return
        raise AssertionError("BSY never cleared")

    def sel_lba(self, lba: int, count: int, base: int = 0x1F0) -> None:
        self.outb(base + 6, 0xE0 | ((lba >> 24) & 15))
        self.outb(base + 2, count)
        self.outb(base + 3, lba & 0xFF)
        self.outb(base + 4, (lba >> 8) & 0xFF)
        self.outb(base + 5, (lba >> 16) & 0xFF)

    def dump(self, base: int = 0x1F0) -> dict[str, int]:
        """The probe's ``dump_ata`` in the same read order."""
        bm = self.bmbase
        out = {"st": self.inb(base + 0x206), "err": self.inb(base + 1), "cnt": self.inb(base + 2),
               "sec": self.inb(base + 3), "cl": self.inb(base + 4), "ch": self.inb(base + 5),
               "dh": self.inb(base + 6)}
        out["bmis"] = self.inb(bm + 2)
        out["bmic"] = self.inb(bm)
        return out

    def read_sector_pio(self, lba: int) -> bytes:
        self.sel_lba(lba, 1)
        self.outb(0x1F7, 0x20)
        self.wait_not_busy()
        return b"".join(self.inw(0x1F0).to_bytes(2, "little") for _ in range(256))
