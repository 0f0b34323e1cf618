#!/usr/bin/env python3
"""Benchmark: validate a 256 MiB FAT32 image holding 2,000 files against its baseline, and compare the time with
hashing the same file contents alone (`sha256sum` over the files extracted by mcopy, and hashlib in-process).

  tools/bench_validate.py [--size 256M] [--files 2000] [--keep DIR] [--repeat 3]

Prints the times, the throughputs and the ratio validate / sha256sum (the goal is <= 2).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emu.integrity import take_baseline, validate  # noqa: E402
from emu.storage.image import DiskImage  # noqa: E402
from emu.storage.mkdisk import build, parse_size  # noqa: E402


def spec(size: str, files: int) -> dict:
    """2,000 files in 20 directories, sizes spread deterministically up to ~2x the mean (about 75% full)."""
    total = parse_size(size)
    mean = int(total * 0.75 / files)
    items = []
    for i in range(files):
        n = (i * 7919) % (2 * mean) + (i % 3)
        items.append({"path": f"/DIR{i % 20:02d}/File number {i:04d}.bin", "size": n, "seed": i})
    return {"fat": 32, "size": size, "label": "BENCH", "volume_id": "BE0C0001", "date": 1600000000,
            "cluster_sectors": 4, "files": items}


def best(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` runs (the first run also warms the page cache)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    """Build, baseline, validate, hash; print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256M")
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="keep the image and extracted files in this directory")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-validate-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        image = work / "bench.img"
        t = time.perf_counter()
        build(spec(args.size, args.files), image)
        print(f"built {image} ({args.size}, {args.files} files) in {time.perf_counter() - t:.1f} s")
        extracted = work / "files"
        shutil.rmtree(extracted, ignore_errors=True)
        extracted.mkdir()
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC=os.devnull, LC_ALL="C.UTF-8")
        subprocess.run(["mcopy", "-s", "-n", "-i", str(image), "::/*", str(extracted)], env=env, check=True)
        paths = sorted(str(p) for p in extracted.rglob("*") if p.is_file())
        content = sum(os.path.getsize(p) for p in paths)
        mib = content / (1 << 20)

        with DiskImage(image, read_only=True) as img:
            view = img.view()
            t = time.perf_counter()
            base = take_baseline(view)
            t_base = time.perf_counter() - t
            findings = validate(view, base)
            assert findings.clean, findings.to_text()
            t_val = best(lambda: validate(view, base), args.repeat)

        def run_sha256sum() -> None:
            subprocess.run(["xargs", "-0", "sha256sum"], input="\0".join(paths).encode(), check=True,
                           stdout=subprocess.DEVNULL)

        def run_hashlib() -> None:
            for p in paths:
                with open(p, "rb") as f:
                    hashlib.file_digest(f, "sha256")

        t_sum = best(run_sha256sum, args.repeat)
        t_lib = best(run_hashlib, args.repeat)
        print(f"content: {len(paths)} files, {mib:.1f} MiB")
        print(f"baseline (first walk + hash):  {t_base * 1000:8.1f} ms")
        print(f"validate (walk + hash + diff): {t_val * 1000:8.1f} ms  {mib / t_val:7.1f} MiB/s")
        print(f"sha256sum of the files:        {t_sum * 1000:8.1f} ms  {mib / t_sum:7.1f} MiB/s")
        print(f"hashlib of the files:          {t_lib * 1000:8.1f} ms  {mib / t_lib:7.1f} MiB/s")
        print(f"ratio validate / sha256sum = {t_val / t_sum:.2f}  (goal <= 2)")
        print(f"ratio validate / hashlib   = {t_val / t_lib:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
