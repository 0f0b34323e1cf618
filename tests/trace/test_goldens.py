"""The regression suite: every golden trace in fixtures/traces/ replays event for event on this emulator."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from emu.trace import goldens
from emu.trace.replay import replay
from emu.trace.session import record

ROOT = goldens.ROOT
GOLDEN_FILES = sorted((ROOT / goldens.GOLDEN_DIR).glob("*.trace"))
SLOW_GOLDENS = {"demo", "scenario-guest"}
"""Scenario goldens: 30 M and 21 M instructions of two guests (several seconds each)."""


def test_there_are_goldens():
    assert len(GOLDEN_FILES) >= 5


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW_GOLDENS else p
                                  for p in GOLDEN_FILES], ids=[p.stem for p in GOLDEN_FILES])
def test_golden_replays(path):
    result = replay(path, base=ROOT)
    assert result.ok, ("golden trace diverged; if the change is intended run `python tools/rerecord_goldens.py "
                       f"{path.stem}` and review its output\n" + result.report())


def _tracked_kernels() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("needs git to list the committed kernels")
    out = subprocess.run(["git", "ls-files", "firmware/build/*.elf"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return sorted(Path(line).stem for line in out.stdout.split())


def test_every_committed_kernel_has_a_golden():
    missing = [k for k in _tracked_kernels()
               if goldens.skip_reason(k) is None and not goldens.golden_path(k).exists()]
    assert not missing, f"no golden trace for {missing}: run `python tools/rerecord_goldens.py {' '.join(missing)}`"


def test_every_scenario_has_a_golden():
    missing = [name for name in goldens.SCENARIOS if not goldens.golden_path(name).exists()]
    assert not missing, f"no golden trace for {missing}: run `python tools/rerecord_goldens.py {' '.join(missing)}`"


def test_only_benchmarks_and_scenario_guests_lack_a_golden():
    """Every kernel without a golden of its own says why; network kernels are no longer among them."""
    for name in goldens.kernels():
        reason = goldens.skip_reason(name)
        if name.startswith("net_"):
            assert reason is None, name
        if reason is not None:
            assert name in goldens.SKIP or name in goldens.SCENARIO_GUESTS or \
                name.startswith(goldens.BENCHMARK_PREFIX), name


def test_no_stale_goldens():
    assert goldens.stale_goldens() == []


def test_reference_disk_is_qemu_refs_recipe(tmp_path):
    module = goldens._qemu_ref(ROOT)
    module.make_reference_disk(tmp_path / "ref.img")
    assert (ROOT / goldens.REFERENCE_DISK).read_bytes() == (tmp_path / "ref.img").read_bytes()


def test_rerecording_a_golden_gives_the_same_records(tmp_path):
    """Same records, byte for byte once decompressed (the compressed bytes also depend on the zlib build)."""
    import gzip

    from emu.trace.format import MAGIC

    path = goldens.golden_path("hello")
    record(goldens.golden_spec("hello"), tmp_path / "hello.trace", base=ROOT)
    new, old = (tmp_path / "hello.trace").read_bytes(), path.read_bytes()
    assert new[:len(MAGIC)] == old[:len(MAGIC)] == MAGIC
    assert gzip.decompress(new[len(MAGIC):]) == gzip.decompress(old[len(MAGIC):])


def test_scenario_golden_names_its_inputs():
    """The demo scenario's golden pins the scenario file, both kernels, the disk and the baseline."""
    from emu.trace.reader import TraceReader

    path = goldens.golden_path("demo")
    if not path.exists():
        pytest.skip("no demo scenario golden")
    header = TraceReader(path).header
    assert sorted(i["role"] for i in header["inputs"]) == ["baseline", "disk", "kernel", "kernel", "scenario"]
    kinds = TraceReader(path).counts()
    assert kinds["trap_step"] > 0 and kinds["validation"] > 0 and kinds["restriction"] == 1
    assert kinds["guest_end"] == 2 and kinds["end"] == 1


@pytest.mark.slow
def test_scenario_replay_stops_at_a_changed_validation(monkeypatch, tmp_path):
    """The validator changed in-process (tampering goes unseen): replay stops at the first validation with findings."""
    import emu.integrity as integrity
    from emu.integrity.findings import Findings

    from emu.trace.scenario import record_scenario

    scenario = goldens.SCENARIOS["demo"]
    if not (ROOT / scenario).exists():
        pytest.skip("no demo scenario")
    path = tmp_path / "demo.trace"
    record_scenario(scenario, path, base=ROOT)
    monkeypatch.setattr(integrity, "validate", lambda *a, **k: Findings())
    result = replay(path, base=ROOT)
    d = result.divergence
    assert d is not None and d.expected["kind"] == "validation"
    assert d.expected["clean"] is False and d.actual["clean"] is True
    assert "differing fields" in result.report()
