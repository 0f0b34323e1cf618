#!/usr/bin/env python3
"""Per-validation pause of the demo (issue 6): what a validation window costs, in host time and guest instructions.

For every validation window (blocks 340–360) of the demo, in both modes, the trap handler records
(emu.hypervisor.trap.Pause): the host wall time of the window; the instructions the validated guest retired
during it (it is held: 0, measured, not assumed); the instructions the trapping guest and, in guest mode, the
validator guest retired; and the host virtual time that passed.

* ``monitor`` (fixtures/demo/scenario.toml): the monitor analyses the 8 MiB FAT16 demo disk itself while every
  guest is suspended; no guest instruction runs, no virtual time passes.
* ``guest:mgmt`` (fixtures/demo/scenario-guest.toml): the management guest mounts the disk read-only and runs its
  own validator (firmware/kernels/mgmt_validator.c) until it unmounts; the application guest is held meanwhile.

Goal: under 50 ms of host time per window.  Usage: ``python tools/bench_host.py [--mode monitor|guest:mgmt]``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emu.hypervisor.host import Host  # noqa: E402
from emu.hypervisor.scenario import load  # noqa: E402

SCENARIOS = {"monitor": ROOT / "fixtures" / "demo" / "scenario.toml",
             "guest:mgmt": ROOT / "fixtures" / "demo" / "scenario-guest.toml"}


def _spread(values: list, fmt: str) -> str:
    return f"median {format(statistics.median_low(values), fmt)}, max {format(max(values), fmt)}"


def bench(mode: str) -> None:
    """Run one demo scenario and print the window figures."""
    host = Host(load(SCENARIOS[mode]))
    started, started_cpu = time.perf_counter(), time.process_time()
    summary = host.run()
    total, total_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    pauses = host.trap.pauses
    host.close()
    print(f"{mode}: {summary['validations']} validations, {sum(summary['deferrals'].values())} deferrals, "
          f"run {total:.2f} s host wall time, {total_cpu:.2f} s CPU time")
    if not pauses:
        print("  no validation window")
        return
    print(f"  host wall time / window:     {_spread([p.host_s * 1000 for p in pauses], '.2f')} ms (goal < 50 ms)")
    print(f"  host CPU time / window:      {_spread([p.host_cpu_s * 1000 for p in pauses], '.2f')} ms")
    print(f"  held guest's instructions:   {_spread([p.target_insns for p in pauses], 'd')}")
    print(f"  trapping guest's instr.:     {_spread([p.trapper_insns for p in pauses], 'd')}")
    print(f"  validator guest's instr.:    {_spread([p.validator_insns for p in pauses], 'd')}")
    print(f"  host virtual time / window:  {_spread([p.host_vtime_ns / 1000 for p in pauses], '.1f')} us")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(SCENARIOS), action="append",
                        help="which demo (default: both)")
    args = parser.parse_args(argv)
    for mode in args.mode or ["monitor", "guest:mgmt"]:
        bench(mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
