"""The divergence report compares the replay's registers with the recorded checkpoint's, register by register."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from emu.trace.events import REGISTERS
from emu.trace.reader import TraceReader
from emu.trace.replay import replay
from emu.trace.session import RunSpec, record
from emu.trace.writer import TraceWriter

ROOT = Path(__file__).resolve().parents[2]
MID_RUN_CHECKPOINT = 12_000
"""hello prints from icount ~11 100 to ~13 400: a checkpoint interval that falls inside its output."""


def _hello(tmp_path: Path) -> Path:
    shutil.copyfile(ROOT / "firmware" / "build" / "hello.elf", tmp_path / "hello.elf")
    record(RunSpec(kernel="hello.elf", checkpoint_every=MID_RUN_CHECKPOINT), tmp_path / "t.trace", base=tmp_path)
    return tmp_path / "t.trace"


def _rewrite(path: Path, header_edit: Callable[[dict], None] = lambda h: None,
             record_edit: Callable[[int, dict], dict] = lambda i, r: r) -> None:
    """Write the trace again with its header and records edited (a trace that no longer fits its inputs)."""
    reader = TraceReader(path)
    header = dict(reader.header)
    header_edit(header)
    records = [record_edit(i, r) for i, r in enumerate(reader.events(), 1)]
    out = path.with_suffix(".new")
    with TraceWriter(out, header) as writer:
        for r in records:
            writer.write(r)
    out.replace(path)


def test_state_is_compared_at_the_recorded_checkpoints_icount_and_matches_when_only_the_trace_differs(tmp_path):
    """A console byte changed in the trace: the replay (which is right) stops there, runs on to the mid-run
    checkpoint's exact icount, and its state there is the recorded one: stopping and resuming changed nothing."""
    path = _hello(tmp_path)
    records = list(TraceReader(path).events())
    checkpoint = next(r for r in records if r["kind"] == "checkpoint")
    assert checkpoint["icount"] >= MID_RUN_CHECKPOINT and checkpoint is not records[-2]   # not the end checkpoint
    target = next(i for i, r in enumerate(records, 1) if r["kind"] == "console" and r["icount"] < checkpoint["icount"])
    _rewrite(path, record_edit=lambda i, r: dict(r, byte=ord("#")) if i == target else r)
    result = replay(path, base=tmp_path)
    d = result.divergence
    assert d is not None and d.index == target and d.expected["byte"] == ord("#")
    assert d.expected_checkpoint == checkpoint
    assert d.actual_checkpoint is not None and d.actual_checkpoint["icount"] == checkpoint["icount"]
    assert d.actual_checkpoint["digest"] == checkpoint["digest"]
    assert (f"state against the recorded checkpoint at icount {checkpoint['icount']} (the replay's state at the "
            "same icount): identical") in result.report()


def test_replay_that_ends_early_lists_its_registers_against_the_recorded_checkpoint(tmp_path):
    """The budget in the header cut to 12 500 instructions: the replay's end checkpoint meets an expected port
    access; the report lists each register that differs from the recorded (end) checkpoint, by name."""
    path = _hello(tmp_path)
    end_checkpoint = [r for r in TraceReader(path).events(kinds=["checkpoint"])][-1]

    def cut(header: dict) -> None:
        header["config"] = dict(header["config"], max_insns=12_500)
    _rewrite(path, header_edit=cut)
    result = replay(path, base=tmp_path)
    d = result.divergence
    assert d is not None and d.actual["kind"] == "checkpoint" and d.actual["icount"] == 12_500
    assert d.expected["kind"] != "checkpoint"
    assert d.expected_checkpoint == end_checkpoint and d.actual_checkpoint == d.actual
    differing = [r for r in REGISTERS if end_checkpoint["regs"][r] != d.actual["regs"][r]]
    assert "eip" in differing
    report = result.report()
    assert (f"state against the recorded checkpoint at icount {end_checkpoint['icount']} (the replay's state at "
            f"icount 12500, the nearest to it the replay reached)") in report
    for name in differing:
        e, a = end_checkpoint["regs"][name], d.actual["regs"][name]
        assert f"register {name}: expected {e:#010x} actual {a:#010x}" in report
    assert report.count("    register ") == len(differing)


def test_a_checkpoint_that_differs_names_the_register(tmp_path):
    """A recorded checkpoint's EAX changed: the divergence is that checkpoint, and the report names EAX."""
    path = _hello(tmp_path)
    records = list(TraceReader(path).events())
    i = next(i for i, r in enumerate(records, 1) if r["kind"] == "checkpoint")
    moved = dict(records[i - 1], regs=dict(records[i - 1]["regs"], eax=0xDEADBEEF))
    _rewrite(path, record_edit=lambda n, r: moved if n == i else r)
    result = replay(path, base=tmp_path)
    d = result.divergence
    assert d is not None and d.index == i and d.expected == moved
    report = result.report()
    assert f"register eax: expected {0xDEADBEEF:#010x} actual {records[i - 1]['regs']['eax']:#010x}" in report


def test_a_recorded_checkpoint_met_by_a_replay_event_is_compared_at_its_icount(tmp_path):
    """The mid-run checkpoint moved three events earlier in the trace: it meets a replay event; the replay is run
    on to the checkpoint's icount and compared with it (identical: only the record's position changed)."""
    path = _hello(tmp_path)
    records = list(TraceReader(path).events())
    i = next(i for i, r in enumerate(records, 1) if r["kind"] == "checkpoint")
    order = records[:i - 4] + [records[i - 1]] + records[i - 4:i - 1] + records[i:]
    _rewrite(path, record_edit=lambda n, r: order[n - 1])
    result = replay(path, base=tmp_path)
    d = result.divergence
    assert d is not None and d.index == i - 3
    assert d.expected == records[i - 1] and d.actual == records[i - 4]
    assert d.actual_checkpoint["icount"] == records[i - 1]["icount"] > d.icount
    report = result.report()
    assert (f"state against the recorded checkpoint at icount {records[i - 1]['icount']} (the replay's state at the "
            "same icount): identical") in report
    assert "records no checkpoint" not in report
