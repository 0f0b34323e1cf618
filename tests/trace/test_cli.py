"""The commands: emu record, emu replay, emu trace show|diff|stats (exit statuses and one-line errors)."""
from __future__ import annotations

import shutil

import pytest

from emu.cli import main
from emu.trace import goldens

ROOT = goldens.ROOT


@pytest.fixture()
def base(tmp_path, monkeypatch):
    shutil.copyfile(ROOT / "firmware/build/hello.elf", tmp_path / "hello.elf")
    shutil.copyfile(ROOT / "firmware/build/cpu_events.elf", tmp_path / "cpu_events.elf")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_record_then_replay(base, capfd):
    assert main(["record", "hello.elf", "-o", "h.trace"]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("hello from emu firmware\n")
    assert "recorded" in err and "bytes per million instructions" in err and "debug exit" in err
    assert main(["replay", "h.trace"]) == 0
    assert "replay ok" in capfd.readouterr().out


def test_replay_refuses_changed_input(base, capfd):
    assert main(["record", "hello.elf", "-o", "h.trace", "-q"]) == 0
    (base / "hello.elf").write_bytes((base / "hello.elf").read_bytes() + b"\0")
    capfd.readouterr()
    assert main(["replay", "h.trace"]) == 2
    out, err = capfd.readouterr()
    assert err.strip().count("\n") == 0 and "kernel hello.elf changed since recording" in err


def test_replay_divergence_exit_status(base, capfd):
    assert main(["record", "hello.elf", "-o", "h.trace", "-q"]) == 0
    elf = bytearray((base / "hello.elf").read_bytes())
    elf[elf.index(bytes.fromhex("c1e809")) + 2] = 1
    (base / "hello.elf").write_bytes(bytes(elf))
    capfd.readouterr()
    assert main(["replay", "h.trace", "--force"]) == 1
    out = capfd.readouterr().out
    assert "replay diverged at event" in out and "expected:" in out and "actual:" in out


def test_show_filters(base, capfd):
    assert main(["record", "cpu_events.elf", "-o", "c.trace", "-q"]) == 0
    capfd.readouterr()
    assert main(["trace", "show", "c.trace", "--kind", "interrupt"]) == 0
    lines = capfd.readouterr().out.splitlines()
    assert lines and all(" interrupt " in line for line in lines)
    assert main(["trace", "show", "c.trace", "--kind", "io", "--from", "20000", "--to", "20100"]) == 0
    lines = capfd.readouterr().out.splitlines()
    icounts = [int(line.split()[0]) for line in lines]
    assert lines and all(20000 <= i <= 20100 for i in icounts) and all(" io " in line for line in lines)
    assert main(["trace", "show", "c.trace", "--guest", "nobody"]) == 0
    assert capfd.readouterr().out == ""


def test_diff_and_stats(base, capfd):
    assert main(["record", "hello.elf", "-o", "a.trace", "-q"]) == 0
    assert main(["record", "hello.elf", "-o", "b.trace", "-q"]) == 0
    assert main(["record", "cpu_events.elf", "-o", "c.trace", "-q"]) == 0
    capfd.readouterr()
    assert main(["trace", "diff", "a.trace", "b.trace"]) == 0
    assert "identical" in capfd.readouterr().out
    assert main(["trace", "diff", "a.trace", "c.trace"]) == 1
    out = capfd.readouterr().out
    assert "kernel differs" in out and "first difference at event" in out and "interrupt" in out
    assert main(["trace", "stats", "c.trace"]) == 0
    out = capfd.readouterr().out
    assert "bytes per million instructions" in out and "interrupt" in out and " io " in out


@pytest.mark.parametrize("cmd", [["trace", "show"], ["trace", "stats"], ["replay"]])
def test_damaged_trace_is_one_line(base, capfd, cmd):
    assert main(["record", "hello.elf", "-o", "h.trace", "-q"]) == 0
    data = (base / "h.trace").read_bytes()
    (base / "h.trace").write_bytes(data[:-20])
    capfd.readouterr()
    assert main(cmd + ["h.trace"]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err


def test_show_vm_exits_by_reason(base, capfd):
    """The monitor's exits (vmx_exits runs WRMSR/RDMSR/CPUID, which exit by default) are filtered by reason name."""
    shutil.copyfile(ROOT / "firmware/build/vmx_exits.elf", base / "vmx_exits.elf")
    shutil.copyfile(goldens.ensure_reference_disk(ROOT), base / "ref.img")
    assert main(["record", "vmx_exits.elf", "--disk", "ref.img", "-o", "v.trace", "-q"]) == 0
    capfd.readouterr()
    assert main(["trace", "show", "v.trace", "--reason", "WRMSR"]) == 0
    lines = capfd.readouterr().out.splitlines()
    assert len(lines) == 3 and all(" vmexit WRMSR " in line for line in lines)
    assert main(["trace", "show", "v.trace", "--reason", "32", "--json"]) == 0
    assert capfd.readouterr().out.count('"reason_name":"WRMSR"') == 3


@pytest.mark.slow
def test_replay_scenario_with_relative_trace_path(tmp_path, capfd, monkeypatch):
    """A scenario replay changes directory while it streams the trace: a relative trace path still works."""
    import os

    scenario = ROOT / goldens.SCENARIOS["demo"]
    if not scenario.exists():
        pytest.skip("no demo scenario")
    monkeypatch.chdir(ROOT)
    out = os.path.relpath(tmp_path / "demo.trace", ROOT)
    assert main(["record", goldens.SCENARIOS["demo"], "-o", out]) == 0
    capfd.readouterr()
    assert main(["replay", out]) == 0
    assert "replay ok" in capfd.readouterr().out
