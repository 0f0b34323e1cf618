#!/usr/bin/env python3
"""Recording overhead and trace size: run each kernel with and without `emu record`'s tap (docs/traces.md).

    python tools/bench_trace.py                       # ata_dma, demo (scenario), ata_pio, vmx_exits, cpu_events, pic_pit
    python tools/bench_trace.py ata_dma --repeat 5

For each kernel (with the reference disk as primary master, as the goldens are recorded) it reports the best
of --repeat CPU times (process time: robust on a loaded host) of a plain run and of a recorded run (machine construction excluded, the trace's
gzip stream and final checkpoint included; for the scenario the whole host run, both ways), their ratio, the trace
size and bytes per million guest instructions.
Goals (issue 8): overhead under 1.5x, under 1 MiB per million instructions.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emu.trace import goldens  # noqa: E402
from emu.trace.events import MachineTap  # noqa: E402
from emu.trace.session import Recorder, build_machine, disk_copies, make_header  # noqa: E402
from emu.trace.writer import TraceWriter  # noqa: E402

DEFAULT = ("ata_dma", "demo", "ata_pio", "vmx_exits", "cpu_events", "pic_pit")


class _Null:
    def on_event(self, *args) -> None:
        pass

    def checkpoint(self, *args) -> None:
        pass


def scenario_run(name: str, trace: str | None) -> tuple[float, int, int]:
    """(seconds, guest instructions, trace bytes) of the scenario ``name`` run by the host (taps only when recording)."""
    from emu.hypervisor.host import Host
    from emu.hypervisor.scenario import load
    from emu.trace.scenario import record_scenario

    path = goldens.SCENARIOS[name]
    t0 = time.process_time()
    if trace is None:
        host = Host(load(ROOT / path))
        summary = host.run()
        host.close()
        size = 0
    else:
        summary = record_scenario(path, trace, base=ROOT).result
        size = os.path.getsize(trace)
    dt = time.process_time() - t0
    return dt, sum(g["icount"] for g in summary["guests"].values()), size


def one_run(name: str, trace: str | None) -> tuple[float, int, int]:
    """(seconds, instructions, trace bytes) of one run of kernel ``name``."""
    if name in goldens.SCENARIOS:
        return scenario_run(name, trace)
    spec = goldens.golden_spec(name)
    with disk_copies(spec, ROOT) as copies:
        m = build_machine(spec, copies, ROOT, lambda b: None)
        writer = None
        t0 = time.process_time()
        if trace is not None:
            writer = TraceWriter(trace, make_header(spec, ROOT))
            tap = MachineTap(m, Recorder(writer), spec.checkpoint_every)
        result = m.run(max_insns=spec.max_insns)
        if writer is not None:
            tap.finish(result)
            writer.close()
        dt = time.process_time() - t0
        m.close()
    return dt, result.icount, os.path.getsize(trace) if trace else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(DEFAULT), metavar="KERNEL")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    goldens.ensure_reference_disk(ROOT)
    print(f"{'kernel':<12} {'insns':>10} {'plain s':>8} {'record s':>9} {'ratio':>6} {'trace B':>9} {'B/Minsn':>9}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            trace = os.path.join(tmp, f"{name}.trace")
            plain = min(one_run(name, None)[0] for _ in range(args.repeat))
            runs = [one_run(name, trace) for _ in range(args.repeat)]
            rec = min(r[0] for r in runs)
            icount, size = runs[0][1], runs[0][2]
            ratio = rec / plain
            worst = max(worst, ratio)
            per_m = size * 1_000_000 // max(icount, 1)
            print(f"{name:<12} {icount:>10} {plain:>8.3f} {rec:>9.3f} {ratio:>6.2f} {size:>9} {per_m:>9}")
    print(f"worst overhead {worst:.2f}x (goal < 1.5x); size goal < {1 << 20} B per million instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
