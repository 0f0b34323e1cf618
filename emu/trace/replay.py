"""Replay a trace: re-run its recorded inputs and compare every event and checkpoint, stopping at the first divergence.

The replay refuses (one :class:`TraceError` line naming the input) when an
input's SHA-256 no longer matches the header, unless ``force`` is given.  The
run uses private copies of the disks, exactly as :func:`emu.trace.session.record`
does, and the same checkpoint interval, so the same emulator on the same inputs
produces the same records.  At the first difference the machine is stopped and a
:class:`Divergence` describes it: the instruction count, the expected and the
actual record, the records before it, the expected records after it, and the
registers (actual at the divergence vs. expected at the next recorded checkpoint;
exact register differences when the divergence is itself a checkpoint).
"""
from __future__ import annotations

import itertools
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from emu.trace.events import MachineTap, guest_icount, registers
from emu.trace.format import Kind, TraceError, make_event
from emu.trace.reader import TraceReader
from emu.trace.session import RunSpec, apply_vmx_controls, build_machine, disk_copies, sha256_file
from emu.trace import text

DEFAULT_CONTEXT = 4
UNBOUNDED_SLACK = 10_000_000
"""A trace recorded without an instruction budget replays with budget 2 x its length + this (no endless replay)."""


@dataclass
class Divergence:
    """The first point where the replay differs from the trace."""

    index: int                         # 1-based number of the event in the trace
    icount: int
    expected: Optional[dict]
    actual: Optional[dict]
    before: list[dict]
    expected_after: list[dict]
    actual_regs: Optional[dict] = None          # the replay's registers when the divergence was seen ...
    actual_regs_icount: Optional[int] = None    # ... at this icount (a port access is compared once the next
    #                                             event shows it was not one of a polling loop's repeats)
    expected_checkpoint: Optional[dict] = None  # the recorded checkpoint the state is compared with (see below)
    actual_checkpoint: Optional[dict] = None    # the replay's state to compare with it

    def report(self) -> str:
        """Multi-line human report."""
        lines = [f"replay diverged at event {self.index}, icount {self.icount}:",
                 f"  expected: {text.describe(self.expected).strip()}",
                 f"  actual:   {text.describe(self.actual).strip()}"]
        diffs = text.field_differences(self.expected, self.actual)
        if diffs:
            lines.append(f"  differing fields: {', '.join(diffs)}")
        if self.before:
            lines.append("  events before (matched):")
            lines += [f"    {text.describe(r)}" for r in self.before]
        if self.expected_after:
            lines.append("  expected next:")
            lines += [f"    {text.describe(r)}" for r in self.expected_after]
        if (self.expected and self.actual and isinstance(self.expected.get("regs"), dict)
                and isinstance(self.actual.get("regs"), dict)
                and self.expected.get("kind") != Kind.CHECKPOINT.value):
            regs = text.register_differences(self.expected["regs"], self.actual["regs"])
            lines.append("  registers recorded with the event: " + ("identical" if not regs else ""))
            lines += [f"    {r}" for r in regs]
        lines += self._state_lines()
        if self.actual_regs is not None:
            at = self.icount if self.actual_regs_icount is None else self.actual_regs_icount
            lines.append(f"  registers of the replay when the divergence was seen (icount {at}):")
            lines.append("    " + " ".join(f"{k}={v:#x}" for k, v in self.actual_regs.items()))
        return "\n".join(lines)

    def _state_lines(self) -> list[str]:
        """The replay's state (registers, RAM, disks) against the recorded checkpoint, difference by difference."""
        exp_cp, act_cp = self.expected_checkpoint, self.actual_checkpoint
        if exp_cp is None:
            if self.expected is not None and self.actual is not None:
                return ["  (the trace records no checkpoint of this guest after the divergence)"]
            return []
        at = exp_cp.get("icount")
        if act_cp is None:
            return [f"  (the replay did not reach a state to compare with the recorded checkpoint at icount {at})"]
        diffs = [d for d in text.checkpoint_differences(exp_cp, act_cp) if not d.startswith("taken at")]
        if act_cp.get("icount") == at:
            head = f"  state against the recorded checkpoint at icount {at} (the replay's state at the same icount): "
        else:
            head = (f"  state against the recorded checkpoint at icount {at} (the replay's state at icount "
                    f"{act_cp.get('icount')}, the nearest to it the replay reached): ")
        return [head + ("identical" if not diffs else "")] + [f"    {d}" for d in diffs]


@dataclass
class ReplayResult:
    """Outcome of :func:`replay`: ``ok`` when every event and checkpoint matched."""

    ok: bool
    compared: int
    divergence: Optional[Divergence] = None
    changed_inputs: list[str] = field(default_factory=list)
    version_note: Optional[str] = None

    def report(self) -> str:
        """Human summary (the divergence report when there is one)."""
        head = []
        if self.version_note:
            head.append(self.version_note)
        head += [f"input changed (forced): {c}" for c in self.changed_inputs]
        if self.ok:
            return "\n".join(head + [f"replay ok: {self.compared} events and checkpoints match"])
        assert self.divergence is not None
        return "\n".join(head + [self.divergence.report()])


class Comparator:
    """An observer that checks each actual event against the next recorded one."""

    def __init__(self, expected: Iterator[dict], machine, context: int = DEFAULT_CONTEXT):
        self.expected = expected
        self.machine = machine
        self.machines: dict[str, object] = {}
        """Several guests (a scenario): registers at a divergence come from the diverging guest's machine."""
        self.stop_all: Optional[Callable[[], None]] = None
        self.context = context
        self.history: deque = deque(maxlen=context)
        self.compared = 0
        self.divergence: Optional[Divergence] = None
        self._draining: Optional[str] = None
        """Several guests: after a divergence the run goes on to the diverging guest's next checkpoint."""
        self.stopped_run = False
        """True when the comparator stopped the (single) machine's run at a divergence (it can be resumed)."""

    def on_event(self, kind: str, icount: int, guest: str, fields: dict) -> None:
        """Compare one actual event with the next expected record."""
        if self.divergence is not None:
            if self._draining == guest and kind == Kind.CHECKPOINT.value:
                self.divergence.actual_checkpoint = make_event(kind, icount, guest, fields)
                self._draining = None
                self._stop()
            return
        actual = make_event(kind, icount, guest, fields)
        expected = next(self.expected, None)
        if expected is not None and kind == Kind.END.value == expected.get("kind"):
            expected = {k: v for k, v in expected.items() if k != "events"}
        if expected == actual:
            self.compared += 1
            self.history.append(actual)
            return
        self._diverged(expected, actual, icount)

    def checkpoint(self, icount: int, guest: str, digest_fields: dict) -> None:
        """Compare a checkpoint."""
        self.on_event(Kind.CHECKPOINT.value, icount, guest, digest_fields)

    def finish_expected(self) -> None:
        """After the actual end: anything left in the trace is a divergence."""
        if self.divergence is not None:
            return
        extra = next(self.expected, None)
        if extra is not None:
            self._diverged(extra, None, extra.get("icount", 0))

    def _diverged(self, expected: Optional[dict], actual: Optional[dict], icount: int) -> None:
        after = list(itertools.islice(self.expected, self.context))
        guest = (actual or expected or {}).get("guest")
        checkpoint = Kind.CHECKPOINT.value
        exp_cp = None
        if expected is not None and expected.get("kind") == checkpoint:
            exp_cp = expected
        else:
            for rec in itertools.chain(after, self.expected):
                if rec.get("kind") == checkpoint and rec.get("guest") == guest:
                    exp_cp = rec
                    break
        machine = self.machines.get(guest, self.machine)
        act_regs = act_regs_icount = None
        if actual is not None and actual.get("kind") != checkpoint and machine is not None:
            try:
                act_regs = registers(machine)
                act_regs_icount = guest_icount(machine)
            except Exception:
                act_regs = None
        act_cp = actual if actual is not None and actual.get("kind") == checkpoint else None
        self.divergence = Divergence(self.compared + 1, icount, expected, actual, list(self.history), after,
                                     act_regs, act_regs_icount, exp_cp, act_cp)
        if exp_cp is not None and actual is not None and act_cp is None and self.machine is None:
            self._draining = guest        # several guests: run on to this guest's next checkpoint (bounded)
        else:
            self._stop()

    def _stop(self) -> None:
        from emu.machine import EndReason, RunResult

        if self.stop_all is not None:
            self.stop_all()
        m = self.machine
        if m is None:
            return
        if m.end is None:
            m.end = RunResult(EndReason.STOPPED, 0, "replay diverged", m.cpu.icount)
            self.stopped_run = True
        try:
            stop = getattr(m.cpu, "request_stop_after_element", None) or m.cpu.request_stop
            stop("end")                   # never roll back a REP INS element: the run may be resumed
        except Exception:
            pass


def check_inputs(header: dict, base: Path) -> list[str]:
    """Descriptions of inputs that are missing or whose SHA-256 differs from the header (empty when all match)."""
    problems = []
    for inp in header.get("inputs", []):
        path = inp.get("path", "?")
        full = base / path
        what = f"{inp.get('role', 'input')} {path}"
        try:
            digest = sha256_file(full)
        except FileNotFoundError:
            problems.append(f"{what} is missing")
            continue
        except OSError as exc:
            problems.append(f"{what} cannot be read ({exc.strerror})")
            continue
        if digest != inp.get("sha256"):
            hint = ""
            if inp.get("role") == "disk" and header.get("config", {}).get("disk_mode") == "in-place":
                hint = ("; `emu run --record` let the guest write it: put the original back, or record with "
                        "`emu record`, which runs on copies")
            problems.append(f"{what} changed since recording (sha256 {str(inp.get('sha256'))[:12]}… recorded, "
                            f"{digest[:12]}… now){hint}")
    return problems


def replay(path: str | os.PathLike[str], base: Optional[Path] = None, force: bool = False,
           context: int = DEFAULT_CONTEXT, console=None) -> ReplayResult:
    """Re-run the trace at ``path`` from its inputs (paths relative to ``base``, default the working directory)."""
    import emu

    base = Path(base or os.getcwd())
    reader = TraceReader(path)
    reader.check()                        # a damaged trace is one clear error before anything runs
    header = reader.header
    problems = check_inputs(header, base)
    if problems and not force:
        raise TraceError(f"replay refused: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                             if len(problems) > 1 else ""))
    note = None
    if header.get("emu_version") != emu.__version__:
        note = f"note: recorded with emu {header.get('emu_version')}, replaying with emu {emu.__version__}"
    if header.get("scenario"):
        return _replay_scenario(reader, base, problems, note, context)
    spec = RunSpec.from_header(header)
    end = reader.end()
    budget = spec.max_insns
    if budget is None:
        budget = 2 * int(end.get("icount", 0)) + UNBOUNDED_SLACK
    expected = reader.events()
    with disk_copies(spec, base) as copies:
        machine = build_machine(spec, copies, base, console or (lambda b: None))
        try:
            apply_vmx_controls(machine, header["config"].get("vmx_controls"))
            comparator = Comparator(expected, machine, context)
            tap = MachineTap(machine, comparator, spec.checkpoint_every)
            result = machine.run(max_insns=budget)
            if comparator.divergence is None:
                tap.finish(result)
                comparator.finish_expected()
            if comparator.divergence is not None:
                _state_at_recorded_checkpoint(comparator, machine, budget)
        finally:
            machine.close()
            expected.close()
    return ReplayResult(comparator.divergence is None, comparator.compared, comparator.divergence, problems, note)


def _state_at_recorded_checkpoint(comparator: Comparator, machine, budget: int) -> None:
    """Run the stopped replay on to the icount of the recorded checkpoint and take the same digest there."""
    from emu.trace.events import digest_fields, guest_icount

    d = comparator.divergence
    assert d is not None
    exp_cp = d.expected_checkpoint
    if exp_cp is None or d.actual_checkpoint is not None:
        return
    target = int(exp_cp.get("icount", 0))
    try:
        now = guest_icount(machine)
        if comparator.stopped_run and now < min(target, budget):
            machine.end = None           # the stop was the comparator's, not the guest's end
            machine.run(max_insns=min(target, budget) - now)
        d.actual_checkpoint = make_event(Kind.CHECKPOINT.value, guest_icount(machine), d.actual.get("guest")
                                         if d.actual else exp_cp.get("guest"), digest_fields(machine))
    except Exception as exc:             # the report must not fail because the diverged guest went astray
        from emu import EmuError
        if not isinstance(exc, EmuError):
            raise
        d.actual_checkpoint = None


def _replay_scenario(reader: TraceReader, base: Path, problems: list[str], note: Optional[str],
                     context: int) -> ReplayResult:
    """Replay a scenario trace: the host runs again with every guest tapped into one comparator."""
    from emu.trace.scenario import run_scenario

    header = reader.header
    expected = reader.events()
    comparator = Comparator(expected, None, context)

    def wire(parts: dict) -> None:
        host = parts["host"]
        comparator.machines = dict(host.machines)

        def stop_all() -> None:
            for state in host.guests.values():
                state.paused = True
            for m in host.machines.values():
                try:
                    m.cpu.request_stop("end")
                except Exception:
                    pass
        comparator.stop_all = stop_all
    try:
        run_scenario(header["scenario"], base, comparator, header["config"]["checkpoint_every"], on_tap=wire)
        comparator.finish_expected()
    finally:
        expected.close()
    return ReplayResult(comparator.divergence is None, comparator.compared, comparator.divergence, problems, note)
