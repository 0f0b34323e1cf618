"""The regression suite of golden traces in ``fixtures/traces/``: which kernels, with which disk, and re-recording.

Every kernel in ``firmware/build/`` has a golden ``fixtures/traces/<kernel>.trace``
recorded from the repository root (so the multiboot command line is
``firmware/build/<kernel>.elf``) with the standard reference disk
(``fixtures/traces/reference.img``, made by ``tools/qemu_ref.make_reference_disk``)
as primary master; the network kernels (:data:`NET_KERNELS`) instead with an NE2000 and an echo peer.  Kernels
in :data:`SKIP` have no golden (and why); scenario guests (:data:`SCENARIO_GUESTS`) are covered by the scenario
goldens (:data:`SCENARIOS`).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from emu import EmuError
from emu.trace.diff import diff
from emu.trace.session import RunSpec, record

ROOT = Path(__file__).resolve().parent.parent.parent
GOLDEN_DIR = "fixtures/traces"
REFERENCE_DISK = f"{GOLDEN_DIR}/reference.img"
SKIP = {
    "compute": "emu-only benchmark kernel (126 M instructions, no I/O to check)",
}
"""Kernels without a golden of their own, and why (scenario guests: see :data:`SCENARIO_GUESTS`)."""
SCENARIO_GUESTS = {
    "demo_app": "demo",
    "demo_mgmt": "demo",
    "mgmt_validator": "scenario-guest",
}
"""Kernels that only run as a scenario's guest (they need its disk, its peer guest, the monitor), and the
scenario golden that covers them."""
NET_PEER = "echo"
NET_KERNELS = {
    "net_app": ("count=3 interval=5", "52:54:00:12:34:56"),
    "net_mgmt": ("silence=20", "52:54:00:12:34:57"),
    "net_ping": ("", "52:54:00:12:34:56"),
    "net_regs": ("", "52:54:00:12:34:56"),
    "net_ring": ("", "52:54:00:12:34:56"),
}
"""Network kernels: command line and NIC MAC, as tests/net runs them against QEMU's transcripts.  Their goldens
have an NE2000 (QEMU ne2k_isa defaults: 0x300, IRQ 9) on a private switch with an echo peer
(:class:`emu.net.peer.EchoPeer`), and no disk."""
MAX_INSNS = 400_000_000
"""Budget of every golden run (a kernel that stops exiting is cut off, not run forever)."""


def _qemu_ref(root: Path):
    """tools/qemu_ref.py of the checkout (the reference disk's recipe lives there)."""
    import importlib.util
    import sys

    name = "emu_tools_qemu_ref"
    if name in sys.modules:
        return sys.modules[name]
    path = root / "tools" / "qemu_ref.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.exists():
        raise EmuError(f"{path} not found (goldens need a source checkout)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def ensure_reference_disk(root: Path = ROOT) -> Path:
    """Create ``fixtures/traces/reference.img`` with ``tools/qemu_ref.make_reference_disk`` unless present."""
    path = root / REFERENCE_DISK
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _qemu_ref(root).make_reference_disk(path)
    return path


def kernels(root: Path = ROOT) -> list[str]:
    """Names of every kernel in firmware/build."""
    return sorted(p.stem for p in (root / "firmware" / "build").glob("*.elf"))


BENCHMARK_PREFIX = "bench_"
"""Benchmark kernels (``bench_*``: long, timed by tools/) have no golden either."""


def skip_reason(name: str) -> str | None:
    """Why kernel ``name`` has no golden of its own, or None when it should have one."""
    if name in SKIP:
        return SKIP[name]
    if name in SCENARIO_GUESTS:
        return f"a scenario guest; the {SCENARIO_GUESTS[name]} scenario golden covers it"
    if name.startswith(BENCHMARK_PREFIX):
        return "benchmark kernel (timed by tools/, not a regression trace)"
    return None


def golden_names(root: Path = ROOT) -> list[str]:
    """Kernels and scenarios that have (or should have) a golden trace."""
    return [k for k in kernels(root) if skip_reason(k) is None] + \
        [name for name, path in SCENARIOS.items() if (root / path).exists()]


def golden_path(name: str, root: Path = ROOT) -> Path:
    """Where the golden trace of kernel ``name`` lives."""
    return root / GOLDEN_DIR / f"{name}.trace"


SCENARIOS = {"demo": "fixtures/demo/scenario.toml", "scenario-guest": "fixtures/demo/scenario-guest.toml"}
"""Scenario goldens: name -> scenario file (relative to the repository root)."""


def golden_spec(name: str) -> RunSpec:
    """How the golden of kernel ``name`` is recorded (paths relative to the repository root)."""
    kernel = f"firmware/build/{name}.elf"
    if name in NET_KERNELS:
        from emu.devices.ne2000 import parse_mac
        from emu.net.config import NicConfig

        cmdline, mac = NET_KERNELS[name]
        return RunSpec(kernel=kernel, cmdline=cmdline, max_insns=MAX_INSNS,
                       nic=NicConfig(mac=parse_mac(mac), peer=NET_PEER))
    return RunSpec(kernel=kernel, disks=[REFERENCE_DISK], max_insns=MAX_INSNS)


@dataclass
class Rerecorded:
    """Outcome of re-recording one golden."""

    name: str
    status: str            # "new", "unchanged", "changed"
    report: str


def rerecord(name: str, root: Path = ROOT, write: bool = True) -> Rerecorded:
    """Record kernel ``name`` again; compare with the current golden; replace it when ``write``."""
    ensure_reference_disk(root)
    target = golden_path(name, root)
    # not "*.trace": a golden test collecting meanwhile must not take the half-written file for a golden
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".trace.tmp", dir=str(target.parent))
    os.close(fd)
    try:
        if name in SCENARIOS:
            from emu.trace.scenario import record_scenario
            record_scenario(SCENARIOS[name], tmp, base=root)
        else:
            record(golden_spec(name), tmp, base=root)
        if not target.exists():
            status, report = "new", "no previous golden"
        else:
            d = diff(target, tmp)
            status = "unchanged" if d.identical else "changed"
            report = d.report("old", "new")
        if write and status != "unchanged":
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Rerecorded(name, status, report)


def stale_goldens(root: Path = ROOT) -> list[Path]:
    """Golden files whose kernel no longer exists (or is now skipped)."""
    names = set(golden_names(root))
    return sorted(p for p in (root / GOLDEN_DIR).glob("*.trace") if p.stem not in names)


def missing_goldens(root: Path = ROOT) -> list[str]:
    """Kernels that should have a golden and have none."""
    return [n for n in golden_names(root) if not golden_path(n, root).exists()]
