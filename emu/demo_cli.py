"""`emu demo`: the default demo scenario (``fixtures/demo/scenario.toml``).

Two guests run round-robin: an application guest that writes its FAT16 disk
by DMA (and tampers with ``/ETC/NET.CFG`` at tick 250) and a management guest
whose periodic port I/O gives the trap points.  On those VM exits the trap
handler validates the application guest's disk read-only against its baseline
whenever it is safe, defers when it is not (IF masked, write in progress, DMA
active), detects the tampering and restricts the guest.  Exit status 0 when
that is what happened.
"""
from __future__ import annotations

import sys
from pathlib import Path

from emu import EmuError

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "fixtures" / "demo" / "scenario.toml"
SCENARIOS = {"monitor": SCENARIO, "guest:mgmt": ROOT / "fixtures" / "demo" / "scenario-guest.toml"}


def add_parsers(sub) -> None:
    """Register `emu demo`."""
    p = sub.add_parser("demo", help="run the default demo scenario (validation from a VM-exit trap)",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--json", action="store_true", help="print every event and the summary as JSON lines")
    p.add_argument("--verbose", action="store_true", help="print every trap-handler step (310 ... 370)")
    p.add_argument("--pcap", metavar="FILE", default=None, help="write the virtual switch's frames to FILE (pcap)")
    p.add_argument("--validation", choices=sorted(SCENARIOS), default="monitor",
                   help="where the analysis runs: in the monitor (default), or in the management guest, which mounts "
                        "the application guest's disk read-only for a short window (patent FIG. 3)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    """Run the demo; 0 when validations passed before the tampering, it was detected and the guest restricted."""
    from emu.hypervisor.cli import run_scenario

    scenario = SCENARIOS[args.validation]
    if not scenario.exists():
        raise EmuError(f"demo scenario missing: {scenario} (run from a source checkout)")
    if not args.json:
        print(f"emu demo: {scenario.relative_to(ROOT)} (host time: the guests' virtual times added; guest insns: "
              "the exact instructions that guest had retired)")
    _status, summary = run_scenario(str(scenario), json_out=args.json, verbose=args.verbose, pcap=args.pcap)
    results = summary["results"]
    first_dirty = next((i for i, r in enumerate(results) if not r["clean"]), None)
    reasons = {"if_masked", "write_in_progress"} if args.validation != "monitor" else \
        {"if_masked", "write_in_progress", "dma_active"}
    ok = (first_dirty is not None and first_dirty > 0 and all(r["clean"] for r in results[:first_dirty])
          and summary["restricted"] and reasons <= set(summary["deferrals"]))
    if not args.json:
        print("demo:", "ok — clean validations, then the tampering detected and the guest restricted" if ok
              else "UNEXPECTED outcome (see the summary)")
    sys.stdout.flush()
    return 0 if ok else 1
