"""DiskImage / SectorSource contract: the interface the ATA model and the validator rely on."""
from __future__ import annotations

import hashlib
import os
import time

import pytest

from emu import EmuError
from emu.storage.image import DiskImage
from emu.storage.source import (
    MemorySource,
    Overlay,
    ReadOnlyError,
    ReadOnlyView,
    SectorSource,
    SliceSource,
    StorageError,
)


def make_file(tmp_path, sectors: int, name: str = "d.img"):
    path = tmp_path / name
    path.write_bytes(b"".join(bytes([i & 0xFF]) * 512 for i in range(sectors)))
    return path


def test_reads_sectors_by_lba(tmp_path):
    path = make_file(tmp_path, 8)
    with DiskImage(path, read_only=True) as img:
        assert img.sectors == 8 and img.sector_size == 512
        assert img.read(3, 2) == b"\x03" * 512 + b"\x04" * 512
        assert img.read(7, 1) == b"\x07" * 512
        assert img.read(8, 0) == b""
        assert isinstance(img, SectorSource)


@pytest.mark.parametrize("lba,count", [(-1, 1), (8, 1), (7, 2), (0, 9), (0, -1)])
def test_out_of_range_reads_raise_storage_error(tmp_path, lba, count):
    with DiskImage(make_file(tmp_path, 8)) as img:
        with pytest.raises(StorageError):
            img.read(lba, count)
        with pytest.raises(StorageError):
            img.view().read(lba, count)


def test_write_flush_close_reach_the_file(tmp_path):
    path = make_file(tmp_path, 8)
    img = DiskImage(path)
    img.write(2, b"\xAA" * 1024)
    img.flush()
    data = path.read_bytes()
    assert data[1024:2048] == b"\xAA" * 1024 and data[2048:2560] == b"\x04" * 512
    img.write(7, b"\x55" * 512)
    img.close()
    assert path.read_bytes()[7 * 512:] == b"\x55" * 512
    with pytest.raises(StorageError):
        img.read(0, 1)
    img.close()  # idempotent


def test_read_only_image_refuses_writes_and_is_unchanged(tmp_path):
    path = make_file(tmp_path, 4)
    before = path.read_bytes()
    with DiskImage(path, read_only=True) as img:
        with pytest.raises(ReadOnlyError):
            img.write(0, b"\x00" * 512)
        assert issubclass(ReadOnlyError, StorageError) and issubclass(StorageError, EmuError)
    assert path.read_bytes() == before


@pytest.mark.parametrize("data", [b"\x00" * 100, b"\x00" * 513])
def test_partial_sector_writes_are_refused(tmp_path, data):
    with DiskImage(make_file(tmp_path, 4)) as img:
        with pytest.raises(StorageError):
            img.write(0, data)
        with pytest.raises(StorageError):
            img.write(4, b"\x00" * 512)


def test_view_has_no_write_method(tmp_path):
    with DiskImage(make_file(tmp_path, 4)) as img:
        view = img.view()
        assert not hasattr(view, "write")
        assert isinstance(view, ReadOnlyView) and isinstance(view, SectorSource)
        assert view.sectors == 4 and view.read(1, 1) == b"\x01" * 512
        img.write(1, b"\x77" * 512)
        assert view.read(1, 1) == b"\x77" * 512  # a live view, not a copy


def test_missing_directory_and_odd_size_give_one_line_errors(tmp_path):
    with pytest.raises(StorageError, match="no such file") as exc:
        DiskImage(tmp_path / "nope.img")
    assert "\n" not in str(exc.value)
    with pytest.raises(StorageError, match="not a regular file"):
        DiskImage(tmp_path)
    odd = tmp_path / "odd.img"
    odd.write_bytes(b"\x00" * 1000)
    with pytest.raises(StorageError, match="not a multiple of 512") as exc:
        DiskImage(odd, read_only=True)
    assert "partial last sector of 488 bytes" in str(exc.value)


def test_empty_image_has_zero_sectors(tmp_path):
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    with DiskImage(empty) as img:
        assert img.sectors == 0 and img.read(0, 0) == b""
        with pytest.raises(StorageError):
            img.read(0, 1)


def test_unreadable_file(tmp_path, monkeypatch):
    path = make_file(tmp_path, 1)
    path.chmod(0)
    if os.geteuid() == 0:   # root reads anything: make the open fail the way it fails for a user

        def denied(file, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(file))
        monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(StorageError, match="cannot open for reading: Permission denied"):
        DiskImage(path, read_only=True)


def test_overlay_keeps_writes_in_memory(tmp_path):
    path = make_file(tmp_path, 4)
    before = path.read_bytes()
    with DiskImage(path, read_only=True) as img:
        ov = Overlay(img.view())
        ov.write(1, b"\xEE" * 512)
        assert ov.read(0, 3) == b"\x00" * 512 + b"\xEE" * 512 + b"\x02" * 512
        assert img.read(1, 1) == b"\x01" * 512
        assert not hasattr(ov.view(), "write")
        with pytest.raises(StorageError):
            ov.write(4, b"\x00" * 512)
    assert path.read_bytes() == before


def test_memory_and_slice_sources():
    mem = MemorySource(b"".join(bytes([i]) * 512 for i in range(10)))
    part = SliceSource(mem, 4, 3)
    assert part.sectors == 3 and part.read(0, 1) == b"\x04" * 512 and part.read(2, 1) == b"\x06" * 512
    with pytest.raises(StorageError):
        part.read(3, 1)
    with pytest.raises(StorageError):
        SliceSource(mem, 8, 3)
    with pytest.raises(StorageError):
        MemorySource(b"\x00" * 10)


def test_64k_transfers_are_fast(tmp_path):
    """The ATA/DMA model moves 64 KiB at a time and needs well over 200 MiB/s."""
    path = tmp_path / "big.img"
    size = 32 << 20
    with open(path, "wb") as f:
        f.truncate(size)
    chunk = 128
    data = bytes(range(256)) * 256
    with DiskImage(path) as img:
        t0 = time.perf_counter()
        for lba in range(0, img.sectors, chunk):
            img.write(lba, data)
        for lba in range(0, img.sectors, chunk):
            img.read(lba, chunk)
        elapsed = time.perf_counter() - t0
    rate = 2 * size / elapsed / (1 << 20)
    assert rate > 200, f"{rate:.0f} MiB/s"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(data * (size // len(data))).hexdigest()


def test_write_accepts_any_buffer(tmp_path):
    import array
    with DiskImage(make_file(tmp_path, 4)) as img:
        words = array.array("H", [0xBEEF] * 256)  # 512 bytes as 256 items
        img.write(1, memoryview(words))
        assert img.read(1, 1) == b"\xef\xbe" * 256
        img.write(2, bytearray(b"\x11" * 512))
        assert img.read(2, 1) == b"\x11" * 512
