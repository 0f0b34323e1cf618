"""Record and replay a host scenario (``emu host SCENARIO.toml``): several guests and the trap handler in one trace.

Every guest gets a :class:`~emu.trace.events.MachineTap`; the trap handler's
steps (patent blocks 310 … 370) become ``trap_step`` records, block 410
``validation`` and block 420 ``restriction`` records, each in causal order
within the exit that triggered it; every frame on the host's switch is a ``frame`` record of the guest that
sent it, right after the port access that started the transmission.  Each guest ends with a checkpoint and a
``guest_end`` record; the trace ends with one ``end`` record (guest ``host``)
holding the deterministic part of the host's summary.

Paths: the header stores the scenario and every file it names relative to the
base directory, and the guests are built with kernel paths relative to the
scenario file (the multiboot command line holds the kernel path, and an
absolute path would make RAM digests depend on where the checkout lives).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import emu
from emu.trace.events import DEFAULT_CHECKPOINT_EVERY, MachineTap, tap_switch
from emu.trace.format import FORMAT_VERSION, Kind
from emu.trace.session import _input_record, in_directory

HOST = "host"
"""Guest name of the records the host itself writes (the final ``end``)."""
SUMMARY_KEYS = ("validations", "trapped_exits", "deferrals", "findings", "restricted", "results", "guests")
"""The host summary's deterministic fields (host wall-clock pauses are left out)."""
BLOCK_KINDS = {410: Kind.VALIDATION.value, 420: Kind.RESTRICTION.value}


def is_scenario(path: str | os.PathLike[str]) -> bool:
    """True for a scenario file (``.toml``) rather than a kernel."""
    return os.fspath(path).endswith(".toml")


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path, base)


def _load(path: str, base: Path):
    from emu.hypervisor.scenario import load

    with in_directory(base):
        scenario = load(path)
    return scenario


def scenario_header(path: str, base: Path, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> dict:
    """The header of a scenario trace: the scenario file and every file it names, hashed."""
    scenario = _load(path, base)
    inputs = [_input_record("scenario", HOST, path, base)]
    guests = []
    for g in scenario.guests:
        inputs.append(_input_record("kernel", g.name, _rel(g.kernel, base), base))
        for slot, disk in enumerate(g.disks):
            inputs.append(_input_record("disk", g.name, _rel(disk, base), base, slot=slot))
        guests.append({"name": g.name, "kernel": _rel(g.kernel, base), "cmdline": g.cmdline, "mem_mib": g.mem,
                       "disks": [_rel(d, base) for d in g.disks], "disks_read_only": False})
    inputs.append(_input_record("baseline", HOST, _rel(scenario.baseline, base), base))
    return {
        "format": FORMAT_VERSION,
        "emu_version": emu.__version__,
        "tool": "emu record (scenario)",
        "scenario": path,
        "inputs": inputs,
        "guests": guests,
        "config": {"max_insns": scenario.max_insns, "checkpoint_every": checkpoint_every,
                   "clock": {"hz": 1_000_000_000, "cycles_per_insn": 1}, "disk_mode": "copy"},
    }


def run_scenario(path: str, base: Path, observer, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                 on_tap: Optional[Callable[[dict], None]] = None) -> dict:
    """Run the scenario at ``base / path`` with every guest tapped into ``observer``; the host summary."""
    from emu.hypervisor.host import Host

    scenario = _load(path, base)
    scenario_dir = Path(os.path.dirname(os.path.join(base, path)) or ".")
    for g in scenario.guests:             # paths as the scenario file writes them (see the module docstring)
        g.kernel = Path(os.path.relpath(g.kernel, scenario_dir))
        g.disks = [Path(os.path.relpath(d, scenario_dir)) for d in g.disks]
    scenario.baseline = Path(os.path.relpath(scenario.baseline, scenario_dir))
    taps: dict[str, MachineTap] = {}
    current: list[str] = []

    def on_event(event: dict) -> None:
        kind = event.get("kind")
        if kind in ("console", "guest_end"):
            return                            # the taps record console bytes and guest ends themselves
        fields = {k: v for k, v in event.items() if k not in ("kind", "icount", "guest")}
        if kind == "trap_step":
            kind = BLOCK_KINDS.get(event.get("block"), kind)
        tap = taps[current[-1]] if current else next(iter(taps.values()))
        tap.emit_for(event.get("guest", HOST), kind, int(event.get("icount", 0)), fields)

    with in_directory(scenario_dir):
        host = Host(scenario, on_event=on_event)
        try:
            for name, machine in host.machines.items():
                tap = MachineTap(machine, observer, checkpoint_every)
                taps[name] = tap
                _finish_on_close(host, name, machine, tap)
                _track_running(machine, name, current)
            if getattr(host, "switch", None) is not None:     # frames between guests, in the sender's order
                tap_switch(host.switch, lambda: taps[current[-1]] if current else next(iter(taps.values())))
            if on_tap is not None:
                on_tap({"host": host, "taps": taps})
            summary = host.run()
        finally:
            for name, machine in host.machines.items():
                machine.close()
            host.close()
    last = max((m.cpu.vtime for m in host.machines.values()), default=0)
    observer.on_event(Kind.END.value, last, HOST, {k: summary.get(k) for k in SUMMARY_KEYS})
    return summary


def _finish_on_close(host, name: str, machine, tap: MachineTap) -> None:
    """The host closes each machine when the run is over: checkpoint and ``guest_end`` first."""
    from emu.machine import EndReason, RunResult

    close = machine.close

    def traced_close() -> None:
        state = host.guests[name]
        result = state.result or RunResult(EndReason.STOPPED, 0, "paused" if state.paused else "not finished",
                                           machine.cpu.icount)
        tap.finish(result, Kind.GUEST_END.value)
        close()
    machine.close = traced_close


def _track_running(machine, name: str, current: list[str]) -> None:
    """Know which guest is running (host events are recorded in that guest's causal order)."""
    run = machine.run

    def traced_run(*args, **kwargs):
        current.append(name)
        try:
            return run(*args, **kwargs)
        finally:
            current.pop()
    machine.run = traced_run


def record_scenario(path: str, out: str | os.PathLike[str], base: Optional[Path] = None,
                    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY):
    """Run the scenario and write its trace; a :class:`emu.trace.session.RecordResult`."""
    from emu.trace.session import RecordResult, Recorder
    from emu.trace.writer import TraceWriter

    base = Path(base or os.getcwd())
    header = scenario_header(path, base, checkpoint_every)
    writer = TraceWriter(out, header)
    try:
        recorder = Recorder(writer)
        summary = run_scenario(path, base, recorder, checkpoint_every)
    finally:
        writer.close()
    return RecordResult(summary, os.fspath(out), recorder.counts, recorder.last_icount, os.path.getsize(out))
