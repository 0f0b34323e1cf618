"""`emu disk ls|cat|info`: read-only inspection of a disk image's FAT volume (docs/storage.md)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from emu import EmuError
from emu.storage.fat import FatError
from emu.storage.image import DiskImage
from emu.storage.mbr import read_partition_table
from emu.storage.structs import attr_string
from emu.storage.volume import OpenedVolume, open_volume


def add_parsers(sub: "argparse._SubParsersAction[Any]") -> None:
    """Register `emu disk ...`."""
    disk = sub.add_parser("disk", help="inspect a disk image's FAT file system (read-only)")
    dsub = disk.add_subparsers(dest="disk_command", metavar="ACTION")
    disk.set_defaults(func=lambda args: (disk.print_help(), 2)[1])

    ls = dsub.add_parser("ls", help="list every file: path, size, attributes, first cluster, sha256")
    ls.add_argument("image")
    ls.add_argument("--partition", type=int, default=None,
                    help="partition number (1-4 primary, 5+ logical, 0 whole disk); default: first FAT partition")
    ls.add_argument("--json", action="store_true", help="JSON output")
    ls.set_defaults(func=cmd_ls)

    cat = dsub.add_parser("cat", help="write one file's content to stdout")
    cat.add_argument("image")
    cat.add_argument("path")
    cat.add_argument("--partition", type=int, default=None)
    cat.set_defaults(func=cmd_cat)

    info = dsub.add_parser("info", help="partition table, BPB summary and volume anomalies")
    info.add_argument("image")
    info.add_argument("--partition", type=int, default=None)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)


def _open(image: str, partition: int | None) -> tuple[DiskImage, OpenedVolume]:
    img = DiskImage(image, read_only=True)
    try:
        return img, open_volume(img.view(), partition)
    except EmuError as exc:
        img.close()
        raise EmuError(f"{image}: {exc}") from None


def listing(vol: OpenedVolume) -> list[dict[str, Any]]:
    """One JSON-ready record per file and directory, with the SHA-256 of each readable file."""
    out = []
    for e in vol.fs.entries():
        rec: dict[str, Any] = {
            "path": e.path,
            "type": "dir" if e.is_dir else "file",
            "short_name": e.short_name,
            "size": e.size,
            "attr": e.attr,
            "attrs": attr_string(e.attr),
            "first_cluster": e.first_cluster,
            "write_time": e.write_time,
            "sha256": None,
        }
        if not e.is_dir and e.error is None:
            try:
                rec["sha256"] = vol.fs.sha256(e)
            except FatError as exc:
                e.error = str(exc)
        if e.error:
            rec["error"] = e.error
        if e.warnings:
            rec["warnings"] = list(e.warnings)
        out.append(rec)
    return out


def cmd_ls(args: argparse.Namespace) -> int:
    """`emu disk ls`: exit 0 (anomalies are listed, not fatal)."""
    img, vol = _open(args.image, args.partition)
    with img:
        files = listing(vol)
        if args.json:
            json.dump({"volume": vol.describe(), "warnings": vol.warnings, "files": files}, sys.stdout, indent=1,
                      ensure_ascii=False)
            sys.stdout.write("\n")
            return 0
        for n in vol.fs.notes:
            print(f"note: {n}", file=sys.stderr)
        for w in vol.warnings:
            print(f"warning: {w}", file=sys.stderr)
        for r in files:
            size = "<DIR>" if r["type"] == "dir" else str(r["size"])
            digest = r["sha256"] or ("-" if r["type"] == "dir" else f"unreadable: {r.get('error')}")
            print(f"{r['path']}\t{size}\t{r['attrs']}\t{r['first_cluster']}\t{r['write_time']}\t{digest}")
            for w in r.get("warnings", []):
                print(f"warning: {r['path']}: {w}", file=sys.stderr)
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    """`emu disk cat`: the file's bytes on stdout; a missing or unreadable file is an error (exit 2)."""
    img, vol = _open(args.image, args.partition)
    with img:
        entry = vol.fs.find(args.path)
        if entry is None:
            raise EmuError(f"{args.image}: {args.path}: no such file")
        if entry.is_dir:
            raise EmuError(f"{args.image}: {args.path}: is a directory")
        out = sys.stdout.buffer
        try:
            for chunk in vol.fs.iter_content(entry):
                out.write(chunk)
        except FatError as exc:
            raise EmuError(f"{args.image}: {exc}") from None
        out.flush()
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """`emu disk info`: the partition table and the chosen volume's description."""
    img = DiskImage(args.image, read_only=True)
    with img:
        try:
            table = read_partition_table(img.view())
        except EmuError as exc:
            raise EmuError(f"{args.image}: {exc}") from None
        info: dict[str, Any] = {"sectors": img.sectors, "mbr": table.has_mbr,
                                "partitions": [p.to_json() for p in table.partitions]}
        try:
            vol = open_volume(img.view(), args.partition)
            info["volume"] = vol.describe()
            info["warnings"] = vol.warnings
        except EmuError as exc:
            info["volume"] = None
            info["warnings"] = table.warnings + [str(exc)]
        if args.json:
            json.dump(info, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            print(f"disk: {info['sectors']} sectors, {'MBR' if info['mbr'] else 'no MBR'}")
            for p in info["partitions"]:
                print(f"partition {p['number']}: type {p['type']} start {p['start']} sectors {p['sectors']}"
                      f"{' bootable' if p['bootable'] else ''}")
            if info["volume"]:
                print("volume: " + ", ".join(f"{k}={v}" for k, v in info["volume"].items() if k != "partition"))
            for w in info["warnings"]:
                print(f"warning: {w}")
    return 0
