#!/usr/bin/env python3
"""Re-record the golden traces in fixtures/traces/ on purpose and print what changed (docs/traces.md).

    python tools/rerecord_goldens.py              # every golden: the kernels in firmware/build (network kernels with
                                                  # an NE2000 and the echo peer) and the scenarios (goldens.SCENARIOS)
    python tools/rerecord_goldens.py hello demo   # only these kernels / scenarios
    python tools/rerecord_goldens.py --check      # record and compare, write nothing (exit 1 if any changed)

For each golden it prints "unchanged", "new", or the differ's report (first divergence with context and
event counts by kind) so the change can be reviewed before committing the new files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emu import EmuError  # noqa: E402
from emu.trace import goldens  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="kernel or scenario golden names (default: all)")
    parser.add_argument("--check", action="store_true", help="compare only; write nothing; exit 1 on any change")
    args = parser.parse_args(argv)
    names = args.names or goldens.golden_names()
    changed = 0
    try:
        for name in names:
            reason = goldens.skip_reason(name)
            if reason is not None:
                print(f"{name}: skipped ({reason})")
                continue
            if name not in goldens.SCENARIOS and not (goldens.ROOT / "firmware" / "build" / f"{name}.elf").exists():
                print(f"{name}: no such kernel in firmware/build", file=sys.stderr)
                return 2
            r = goldens.rerecord(name, write=not args.check)
            if r.status == "unchanged":
                print(f"{name}: unchanged")
                continue
            changed += 1
            verb = "would change" if args.check else ("recorded" if r.status == "new" else "CHANGED")
            print(f"{name}: {verb}")
            print("  " + r.report.replace("\n", "\n  "))
    except EmuError as exc:
        print(f"rerecord_goldens: {exc}", file=sys.stderr)
        return 2
    for path in goldens.stale_goldens():
        print(f"{path.name}: stale (no such kernel any more, or now skipped): delete it")
    print(f"{changed} golden(s) {'would change' if args.check else 'new or changed'}; review, then commit "
          f"fixtures/traces/")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
