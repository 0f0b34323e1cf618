#!/usr/bin/env python3
"""Benchmark: DMA throughput of the ATA + bus master IDE model (MiB of guest data per host second).

Moves 16 MiB between a raw disk image (``emu.storage.image.DiskImage``, mmap)
and a bytearray guest RAM through the port-level interface a guest uses (task
file, BMIC/BMIS/BMIDTP), driving the virtual clock from deadline to deadline
as the vCPU loop would.  Two shapes: one READ DMA EXT of 16 MiB (256 PRDs of
64 KiB) and 128 READ DMA commands of 128 KiB; the same for writes.  The
full-system figure (a guest kernel doing the I/O under Unicorn) comes later.

    python tools/bench_dma.py [--mib 16] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emu.clock import Clock  # noqa: E402
from emu.devices.ata import AtaChannel  # noqa: E402
from emu.devices.bmdma import BusMasterIde  # noqa: E402
from emu.storage.image import DiskImage  # noqa: E402
from tools.benchlib import bare_copy_rate  # noqa: E402

MIB = 1 << 20
PRD = 0x1000
BUF = 0x100000


class Ram:
    """GuestMemory over a bytearray."""

    def __init__(self, size: int):
        self.b = bytearray(size)

    def contains(self, addr: int, size: int) -> bool:
        return 0 <= addr and addr + size <= len(self.b)

    def read(self, addr: int, size: int) -> bytes:
        return self.b[addr:addr + size]

    def write(self, addr: int, data) -> None:
        self.b[addr:addr + len(data)] = data


class Bench:
    def __init__(self, disk: DiskImage, ram_bytes: int):
        self.t = 0
        self.clock = Clock(icount=lambda: self.t)
        self.ch0 = AtaChannel(True, master=disk)
        self.ram = Ram(ram_bytes)
        self.bm = BusMasterIde((self.ch0, AtaChannel(False)), self.ram, self.clock, base=0xC000)
        self.ch0.io_write(0x1F6, 1, 0xE0)

    def transfer(self, lba: int, nbytes: int, write: bool) -> None:
        """One READ/WRITE DMA EXT of ``nbytes`` (multiple of 512, <= 32 MiB) at ``lba``."""
        entries = -(-nbytes // 65536)
        for i in range(entries):
            length = min(65536, nbytes - i * 65536)
            flags = (length & 0xFFFF) | (0x80000000 if i == entries - 1 else 0)
            self.ram.b[PRD + 8 * i:PRD + 8 * i + 8] = (BUF + i * 65536).to_bytes(4, "little") + flags.to_bytes(4, "little")
        io = self.ch0.io_write
        sectors = nbytes // 512
        self.bm.io_write(0xC004, 4, PRD)
        io(0x1F2, 1, sectors >> 8)
        io(0x1F2, 1, sectors & 0xFF)
        for reg, shift in ((3, 0), (4, 8), (5, 16)):
            io(0x1F0 + reg, 1, (lba >> (shift + 24)) & 0xFF)
            io(0x1F0 + reg, 1, (lba >> shift) & 0xFF)
        io(0x1F7, 1, 0x35 if write else 0x25)
        self.bm.io_write(0xC000, 1, 0x01 if write else 0x09)
        clock = self.clock
        while self.bm.dma_in_flight:
            self.t = clock.next_deadline()
            clock.run_due()
        status = self.bm.io_read(0xC002, 1)
        assert status & 0x07 == 0x04, f"BMIS {status:#x}"
        self.bm.io_write(0xC000, 1, 0x00 if write else 0x08)
        self.bm.io_write(0xC002, 1, 0x06)
        self.ch0.io_read(0x1F7, 1)


def run(total: int, chunk: int, write: bool, disk: DiskImage) -> tuple[float, int]:
    bench = Bench(disk, BUF + min(chunk, total) + MIB)
    start_icount = bench.t
    t0 = time.perf_counter()
    lba = 0
    for _ in range(total // chunk):
        bench.transfer(lba, chunk, write)
        lba += chunk // 512
    elapsed = time.perf_counter() - t0
    return elapsed, bench.t - start_icount


def run_pio(total: int, disk: DiskImage, width: int) -> float:
    """READ MULTIPLE (16-sector blocks) of ``total`` bytes, every word through ``io_read`` of the data port."""
    ch = AtaChannel(True, master=disk)
    io_w, io_r = ch.io_write, ch.io_read
    io_w(0x1F6, 1, 0xE0)
    t0 = time.perf_counter()
    lba = 0
    per_cmd = 256 * 512
    for _ in range(total // per_cmd):
        io_w(0x1F2, 1, 0)
        io_w(0x1F3, 1, lba & 0xFF)
        io_w(0x1F4, 1, (lba >> 8) & 0xFF)
        io_w(0x1F5, 1, (lba >> 16) & 0xFF)
        io_w(0x1F7, 1, 0xC4)
        for _ in range(per_cmd // width):
            io_r(0x1F0, width)
        io_r(0x1F7, 1)
        lba += 256
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=16, help="guest data per run (MiB)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; the best is reported")
    args = ap.parse_args()
    total = args.mib * MIB
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "disk.img")
        with open(path, "wb") as f:
            f.write(os.urandom(total))
        with DiskImage(path) as disk:
            print(f"DMA through ATA + bus master IDE model, {args.mib} MiB per run, best of {args.repeat}")
            copy = bare_copy_rate(total)
            print(f"  bare Unicorn mem_write this run: {copy / MIB:.0f} MiB/s (the ceiling for moving data into RAM)")
            for write in (False, True):
                for chunk in (min(total, 32 * MIB), 128 * 1024):
                    best = min(run(total, chunk, write, disk) for _ in range(args.repeat))
                    elapsed, insns = best
                    kind = "WRITE" if write else "READ "
                    print(f"  {kind} DMA, {chunk // 1024:>6} KiB per command: {total / MIB / elapsed:8.1f} MiB/s"
                          f"  ({elapsed * 1000:.1f} ms host, Active window {insns} guest instructions; "
                          f"{total / elapsed / copy:.3f} x bare mem_write)")
            pio = min(total, 2 * MIB)
            for width in (2, 4):
                elapsed = run_pio(pio, disk, width)
                print(f"  PIO READ MULTIPLE, {8 * width}-bit data port: {pio / MIB / elapsed:8.2f} MiB/s"
                      f"  ({pio // MIB} MiB, model only, no CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
