"""Cost of one single step under the debugger: real gdb ``stepi`` over the stub, and ``MachineTarget`` directly.

Usage: python tools/bench_gdb_stepi.py [N]   (default 3000 steps of firmware/build/vmx_exits.elf)

gdb: two batch runs against the same kernel, ``stepi 1`` and ``stepi 1+N``; the difference of their wall times
divided by N is the cost of one ``stepi`` round trip (gdb + packets + stub + the step itself); the stub process's
CPU time is shown too (the rest is gdb and the loopback round trips).
Target: N ``MachineTarget.resume(step)`` calls in process CPU time (no gdb, no socket).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emu.debug.machine_target import ExitReportingStub, MachineTarget  # noqa: E402
from emu.debug.target import ResumeAction, ResumeKind  # noqa: E402
from emu.machine import Machine, MachineConfig  # noqa: E402
from tests.debug.gdbrun import run_gdb  # noqa: E402

KERNEL = ROOT / "firmware" / "build" / "vmx_exits.elf"


def _machine() -> Machine:
    return Machine(MachineConfig(kernel=str(KERNEL)), console=lambda b: None)


def gdb_run(steps: int) -> tuple[float, float]:
    target = MachineTarget(_machine())
    start, cpu = time.perf_counter(), time.process_time()
    run = run_gdb(target, [f"stepi {steps}", "detach"], stub=ExitReportingStub(target), timeout=600)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert run.returncode == 0, run.transcript
    assert target.guests[0].cpu.icount == steps, (target.guests[0].cpu.icount, steps)
    return took, cpu


def target_steps(steps: int) -> float:
    target = MachineTarget(_machine())
    step = {1: ResumeAction(ResumeKind.STEP)}
    start = time.process_time()
    for _ in range(steps):
        target.resume(step)
    took = time.process_time() - start
    assert target.guests[0].cpu.icount == steps
    return took


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    base = min(gdb_run(1) for _ in range(2))
    full = min(gdb_run(1 + n) for _ in range(2))
    print(f"gdb stepi: {(full[0] - base[0]) / n * 1e6:.0f} us per stepi ({n} steps, wall time; "
          f"{(full[1] - base[1]) / n * 1e6:.0f} us of it CPU time in the stub's process)")
    took = min(target_steps(n) for _ in range(3))
    print(f"MachineTarget step: {took / n * 1e6:.0f} us per step ({n} steps, process CPU time)")


if __name__ == "__main__":
    main()
