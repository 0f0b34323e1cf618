"""A raw disk image file as 512-byte sectors, memory-mapped (reads and writes go straight to the page cache).

Design (docs/storage.md): the file is ``mmap``-ed, read-only (``ACCESS_READ``)
or shared read-write (``ACCESS_WRITE``).  A read is one slice copy, a write one
slice assignment, so 64 KiB transfers run at memory speed.  Writes are visible
to other readers of the file at once (shared mapping); ``flush()`` additionally
``msync``s them to stable storage, and ``close()`` flushes first.

A file whose size is not a multiple of 512 is refused with one error line
(a partial last sector has no defined content: QEMU would pad it, a real disk
cannot have one), as is a missing, unreadable or non-regular file.
"""
from __future__ import annotations

import mmap
import os
import stat
from pathlib import Path
from typing import BinaryIO, Optional

from emu.storage.source import (
    SECTOR_SIZE,
    Overlay,
    ReadOnlyError,
    ReadOnlyView,
    SectorSource,
    StorageError,
    check_range,
)

__all__ = ["DiskImage", "Overlay", "ReadOnlyError", "ReadOnlyView", "SectorSource", "StorageError"]


class DiskImage:
    """A raw disk image file (``qemu-img`` format ``raw``) served as LBA sectors."""

    sector_size = SECTOR_SIZE

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._file: Optional[BinaryIO] = None
        self._mm: Optional[mmap.mmap] = None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StorageError(f"disk image {self.path}: no such file") from None
        except OSError as exc:
            raise StorageError(f"disk image {self.path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise StorageError(f"disk image {self.path}: not a regular file")
        size = st.st_size
        if size % SECTOR_SIZE:
            raise StorageError(
                f"disk image {self.path}: size {size} is not a multiple of {SECTOR_SIZE} "
                f"(partial last sector of {size % SECTOR_SIZE} bytes)"
            )
        try:
            self._file = open(self.path, "rb" if read_only else "r+b")  # noqa: SIM115 - kept open for the mapping
        except OSError as exc:
            mode = "reading" if read_only else "writing"
            raise StorageError(f"disk image {self.path}: cannot open for {mode}: {exc.strerror or exc}") from None
        self.sectors = size // SECTOR_SIZE
        if size:
            access = mmap.ACCESS_READ if read_only else mmap.ACCESS_WRITE
            try:
                self._mm = mmap.mmap(self._file.fileno(), size, access=access)
            except (OSError, ValueError) as exc:
                self._file.close()
                raise StorageError(f"disk image {self.path}: cannot map: {exc}") from None
        self._closed = False

    def _live(self) -> None:
        if self._closed:
            raise StorageError(f"disk image {self.path}: used after close")

    def read(self, lba: int, count: int) -> bytes:
        """Return ``count`` sectors starting at ``lba`` (ATA READ SECTORS semantics, no side effects)."""
        self._live()
        check_range(lba, count, self.sectors)
        if not count:
            return b""
        assert self._mm is not None
        return self._mm[lba * SECTOR_SIZE:(lba + count) * SECTOR_SIZE]

    def write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` (a whole number of sectors) from ``lba``; ReadOnlyError when opened read-only."""
        self._live()
        if self.read_only:
            raise ReadOnlyError(f"disk image {self.path}: opened read-only")
        mv = memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        n = mv.nbytes
        if n % SECTOR_SIZE:
            raise StorageError(f"write of {n} bytes is not a whole number of {SECTOR_SIZE}-byte sectors")
        check_range(lba, n // SECTOR_SIZE, self.sectors)
        if not n:
            return
        assert self._mm is not None
        self._mm[lba * SECTOR_SIZE:lba * SECTOR_SIZE + n] = mv

    def flush(self) -> None:
        """Push every write to the file (msync); a no-op for read-only images (ATA FLUSH CACHE)."""
        self._live()
        if self._mm is not None and not self.read_only:
            self._mm.flush()

    def close(self) -> None:
        """Flush and release the file; further use raises StorageError. Idempotent."""
        if self._closed:
            return
        try:
            if self._mm is not None:
                if not self.read_only:
                    self._mm.flush()
                self._mm.close()
        finally:
            self._closed = True
            self._mm = None
            if self._file is not None:
                self._file.close()

    def view(self) -> ReadOnlyView:
        """A read-only SectorSource onto this image (it has no write method)."""
        self._live()
        return ReadOnlyView(self)

    def __enter__(self) -> "DiskImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "ro" if self.read_only else "rw"
        return f"DiskImage({str(self.path)!r}, {self.sectors} sectors, {mode})"
