"""Sector sources: the one narrow interface every disk reader goes through (512-byte LBA sectors).

The ATA model, the FAT walker and the integrity validator all read a disk as a
``SectorSource``.  Analysis code only ever receives a :class:`ReadOnlyView` or
an :class:`Overlay`, neither of which can write its base.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from emu import EmuError

SECTOR_SIZE = 512
"""Logical sector size in bytes (ATA/ATAPI-6 §6.2: a logical sector is 256 words)."""


class StorageError(EmuError):
    """A disk access that cannot be served: out of range, misaligned, closed, unreadable."""


class ReadOnlyError(StorageError):
    """A write to a source opened read-only."""


@runtime_checkable
class SectorSource(Protocol):
    """Anything that serves 512-byte sectors by LBA (read-only interface)."""

    sector_size: int
    sectors: int

    def read(self, lba: int, count: int) -> bytes:
        """Return ``count`` sectors starting at ``lba``; raise StorageError when out of range."""
        ...


def check_range(lba: int, count: int, sectors: int) -> None:
    """Raise StorageError unless sectors [lba, lba+count) all exist on a disk of ``sectors`` sectors."""
    if lba < 0 or count < 0 or lba + count > sectors:
        raise StorageError(f"sector range {lba}+{count} outside the disk (0..{sectors - 1})")


class MemorySource:
    """A sector source over bytes held in memory (tests, fuzzing); read-only unless given a bytearray."""

    sector_size = SECTOR_SIZE

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) % SECTOR_SIZE:
            raise StorageError(f"memory image of {len(data)} bytes is not a multiple of {SECTOR_SIZE}")
        self._data = data
        self.sectors = len(data) // SECTOR_SIZE

    def read(self, lba: int, count: int) -> bytes:
        """Return ``count`` sectors from ``lba``."""
        check_range(lba, count, self.sectors)
        return bytes(self._data[lba * SECTOR_SIZE:(lba + count) * SECTOR_SIZE])


class ReadOnlyView:
    """A read-only window onto another source; it has no ``write`` method at all."""

    __slots__ = ("_base", "sector_size", "sectors")

    def __init__(self, base: SectorSource) -> None:
        self._base = base
        self.sector_size = base.sector_size
        self.sectors = base.sectors

    def read(self, lba: int, count: int) -> bytes:
        """Return ``count`` sectors from ``lba`` of the base source."""
        check_range(lba, count, self.sectors)
        return self._base.read(lba, count)


class SliceSource:
    """Sectors [start, start+sectors) of a base source, renumbered from 0 (a partition); read-only."""

    __slots__ = ("_base", "start", "sector_size", "sectors")

    def __init__(self, base: SectorSource, start: int, sectors: int) -> None:
        if start < 0 or sectors < 0 or start + sectors > base.sectors:
            raise StorageError(f"partition {start}+{sectors} lies outside the disk ({base.sectors} sectors)")
        self._base = base
        self.start = start
        self.sector_size = base.sector_size
        self.sectors = sectors

    def read(self, lba: int, count: int) -> bytes:
        """Return ``count`` sectors from partition-relative ``lba``."""
        check_range(lba, count, self.sectors)
        return self._base.read(self.start + lba, count)


class Overlay:
    """Copy-on-write sectors over a base source: writes stay in memory, the base is never written."""

    def __init__(self, base: SectorSource) -> None:
        self._base = base
        self.sector_size = base.sector_size
        self.sectors = base.sectors
        self.dirty: dict[int, bytes] = {}
        """Written sectors by LBA (each exactly 512 bytes)."""

    def read(self, lba: int, count: int) -> bytes:
        """Return ``count`` sectors from ``lba``, overlay sectors taking precedence."""
        check_range(lba, count, self.sectors)
        if not self.dirty:
            return self._base.read(lba, count)
        out = bytearray(self._base.read(lba, count))
        for i in range(count):
            sec = self.dirty.get(lba + i)
            if sec is not None:
                out[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE] = sec
        return bytes(out)

    def write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        """Keep ``data`` (a whole number of sectors) as the new content of sectors from ``lba``."""
        mv = memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        if mv.nbytes % SECTOR_SIZE:
            raise StorageError(f"write of {mv.nbytes} bytes is not a whole number of {SECTOR_SIZE}-byte sectors")
        count = mv.nbytes // SECTOR_SIZE
        check_range(lba, count, self.sectors)
        for i in range(count):
            self.dirty[lba + i] = bytes(mv[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE])

    def view(self) -> ReadOnlyView:
        """A read-only view of the overlaid disk."""
        return ReadOnlyView(self)
