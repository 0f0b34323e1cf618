#!/usr/bin/env python3
"""tools/mkdisk: build a deterministic FAT12/16/32 image (optionally in an MBR partition) from a spec or a folder.

  tools/mkdisk.py SPEC.json -o OUT.img            # a spec (see docs/storage.md)
  tools/mkdisk.py --fat 16 --size 16M --from DIR [--mbr] [--label L] [--date EPOCH] -o OUT.img
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emu import EmuError  # noqa: E402
from emu.storage.mkdisk import DEFAULT_DATE, build, load_spec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the image; exit status 2 with one line on bad input."""
    ap = argparse.ArgumentParser(prog="mkdisk", description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", help="JSON spec file")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--fat", type=int, choices=(12, 16, 32))
    ap.add_argument("--size")
    ap.add_argument("--from", dest="folder")
    ap.add_argument("--mbr", action="store_true")
    ap.add_argument("--label")
    ap.add_argument("--volume-id")
    ap.add_argument("--date", type=int)
    args = ap.parse_args(argv)
    try:
        if args.spec:
            spec = load_spec(args.spec)
            base = Path(args.spec).resolve().parent
        else:
            spec, base = {}, Path.cwd()
        for key, value in (("fat", args.fat), ("size", args.size), ("from", args.folder), ("label", args.label),
                           ("volume_id", args.volume_id), ("date", args.date)):
            if value is not None:
                spec[key] = value
        if args.mbr:
            spec["mbr"] = True
        spec.setdefault("date", DEFAULT_DATE)
        build(spec, args.output, base)
    except EmuError as exc:
        print(f"mkdisk: {exc}".replace("mkdisk: mkdisk:", "mkdisk:"), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
