"""`emu baseline` and `emu validate` (docs/storage.md): exit 0 clean, 1 findings, 2 unusable input."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emu import EmuError
from emu.integrity.baseline import DEFAULT_PATHS, Baseline, path_matches, take_baseline
from emu.integrity.rules import parse_rules
from emu.integrity.validate import validate
from emu.storage.image import DiskImage


def add_parsers(sub: "argparse._SubParsersAction[Any]") -> None:
    """Register `emu baseline` and `emu validate`."""
    b = sub.add_parser("baseline", help="record a FAT volume's protected files (and rules) as a JSON baseline")
    b.add_argument("image")
    b.add_argument("--paths", nargs="+", metavar="GLOB", default=list(DEFAULT_PATHS),
                   help="protected paths (case-insensitive globs; '*' crosses '/'; default: everything)")
    b.add_argument("--rules", metavar="FILE", help="configuration rules file (see docs/storage.md)")
    b.add_argument("--partition", type=int, default=None, help="partition number (0 = whole disk)")
    b.add_argument("-o", "--output", required=True, metavar="BASELINE.json")
    b.set_defaults(func=cmd_baseline)

    v = sub.add_parser("validate", help="compare a FAT volume with a baseline: exit 0 clean, 1 findings, 2 bad input")
    v.add_argument("image")
    v.add_argument("--baseline", required=True, metavar="BASELINE.json")
    v.add_argument("--partition", type=int, default=None, help="override the baseline's partition")
    v.add_argument("--json", action="store_true", help="findings as JSON")
    v.set_defaults(func=cmd_validate)


def cmd_baseline(args: argparse.Namespace) -> int:
    """Take the baseline and write it."""
    rules = []
    if args.rules:
        try:
            text = Path(args.rules).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EmuError(f"rules {args.rules}: {getattr(exc, 'strerror', None) or exc}") from None
        rules = parse_rules(text, args.rules)
    with DiskImage(args.image, read_only=True) as img:
        try:
            base = take_baseline(img.view(), args.paths, rules, args.partition)
        except EmuError as exc:
            raise EmuError(f"{args.image}: {exc}") from None
    base.save(args.output)
    for glob in args.paths:
        if not any(path_matches(path, [glob]) for path in base.files):
            print(f"emu: warning: --paths {glob!r} matches nothing in {args.image} now "
                  f"(only files added under it later will be reported)", file=sys.stderr)
    print(f"baseline: {len(base.files)} paths, {len(base.rules)} rules -> {args.output}", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate; print findings (text or JSON); 0 clean, 1 findings."""
    base = Baseline.load(args.baseline)
    with DiskImage(args.image, read_only=True) as img:
        findings = validate(img.view(), base, partition=args.partition)
    if args.json:
        sys.stdout.write(findings.dumps() + "\n")
    else:
        print(findings.to_text())
    return 0 if findings.clean else 1
