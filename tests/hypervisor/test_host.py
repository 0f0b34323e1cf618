"""The host and the trap handler (issue 6): policies, safety, remaps that lose nothing, scenario errors."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emu.hypervisor.host import Host
from emu.hypervisor.scenario import ScenarioError, load
from emu.machine import Machine, MachineConfig

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware" / "build"


APP_CMDLINE = "hz=1000 ticks=120 log=20 save=40 check=30 tamper=0"
DEMO = ROOT / "fixtures" / "demo"


def scenario_text(policy: str, extra: str = "", jitter: int = 5000, seed: int = 3, quantum: int = 3000,
                  app: str = APP_CMDLINE, mgmt: str = "hz=1000 iterations=120 heartbeat=60") -> str:
    """The demo pair (app validated from mgmt's I/O exits) with the given [policy] body and extra [validation] keys."""
    return f"""
[host]
quantum = {quantum}
jitter = {jitter}
seed = {seed}

[[guest]]
name = "app"
kernel = "{FW / 'demo_app.elf'}"
cmdline = "{app}"
disks = ["{DEMO / 'demo.img'}"]

[[guest]]
name = "mgmt"
kernel = "{FW / 'demo_mgmt.elf'}"
cmdline = "{mgmt}"

[trap]
guest = "mgmt"
reasons = ["IO_INSTRUCTION"]
validate = "app"

[policy]
{policy}

[validation]
baseline = "{DEMO / 'demo.baseline.json'}"
{extra}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def run(tmp_path: Path, text: str):
    host = Host(load(write(tmp_path, text)))
    summary = host.run()
    return host, summary


def test_counter_policy_fires_on_every_nth_trapped_exit(tmp_path):
    host, summary = run(tmp_path, scenario_text('kind = "counter"\ncount = 37'))
    traps = [e for e in host.events if e.get("block") == 310]
    assert summary["trapped_exits"] > 37 * 3 and summary["validations"] > 0
    assert [e["exit_number"] for e in traps] == list(range(37, summary["trapped_exits"] + 1, 37))
    # block 320 follows every 310 with the counter's value when it fired (it then resets)
    for i, e in enumerate(host.events):
        if e.get("block") == 310:
            fired = host.events[i + 1]
            assert fired["block"] == 320 and fired["counter"] == 37 and fired["reset_to"] == 0
            assert fired["guest"] == e["guest"] == "mgmt" and fired["icount"] == e["icount"]
    assert not any(e.get("block") == 315 for e in host.events)
    host.close()


def test_clock_policy_fires_at_the_first_exit_after_the_interval(tmp_path):
    interval = 40_000
    host, summary = run(tmp_path, scenario_text(f'kind = "clock"\ninterval_ns = {interval}'))
    steps = [e for e in host.events if e.get("block") in (310, 315, 330)]
    outcome = {}  # exit number -> validated (safe) or deferred
    elapsed = {}  # exit number -> the elapsed time block 315 reported
    for trap_event, clock_event, safety_event in zip(steps[::3], steps[1::3], steps[2::3]):
        assert (trap_event["block"], clock_event["block"], safety_event["block"]) == (310, 315, 330)
        outcome[trap_event["exit_number"]] = safety_event["safe"]
        elapsed[trap_event["exit_number"]] = clock_event["elapsed_ns"]
        assert clock_event["interval_ns"] == interval and clock_event["host_ns"] == trap_event["host_ns"]
    assert outcome and not any(e.get("block") == 320 for e in host.events)
    last = 0
    for number, now in host.trap.trap_log:
        assert (number in outcome) == (now - last >= interval), (number, now, last)
        if number in outcome:
            assert elapsed[number] == now - last
        if outcome.get(number):
            last = now  # a validation restarts the interval (from the end of its window); a deferral does not
    host.close()


def test_validation_never_changes_a_disk_byte(tmp_path, monkeypatch):
    """(b) The disk hashes the same before and after every analysis (the safety of the points: test_safety.py)."""
    import emu.integrity as integrity
    seen = []
    real = integrity.validate

    def checked(source, baseline, **kw):
        before = hashlib.sha256(source.read(0, source.sectors)).hexdigest()
        result = real(source, baseline, **kw)
        assert hashlib.sha256(source.read(0, source.sectors)).hexdigest() == before
        seen.append(result.clean)
        return result

    monkeypatch.setattr(integrity, "validate", checked)
    host, summary = run(tmp_path, scenario_text('kind = "counter"\ncount = 13', jitter=9000))
    assert seen and summary["validations"] == len(seen)
    host.close()


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> bytes:
    """The application guest's final disk when it runs alone, with no validation."""
    disk = tmp_path_factory.mktemp("alone") / "alone.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    m = Machine(MachineConfig(kernel=str(FW / "demo_app.elf"), cmdline=APP_CMDLINE, disks=[str(disk)]),
                console=lambda b: None)
    assert m.run(max_insns=500_000_000).status == 1
    m.close()
    final = disk.read_bytes()
    assert final != (DEMO / "demo.img").read_bytes()  # the guest really wrote its disk
    return final


@pytest.mark.parametrize("count", [1, 2, 5, 13])
@pytest.mark.parametrize("seed, jitter", [(3, 5000), (8, 1500), (21, 9000)])
def test_no_guest_write_is_lost_across_remaps(tmp_path, alone, count, seed, jitter):
    """(a) The app guest's final disk equals its final disk when it runs alone with no validation, however many
    remaps happen (a validation on every, every 2nd, 5th, 13th trapped exit) and wherever the slices end."""
    host, summary = run(tmp_path, scenario_text(f'kind = "counter"\ncount = {count}', jitter=jitter, seed=seed))
    remaps = [e for e in host.events if e.get("block") == 340]
    fired = summary["validations"] + sum(summary["deferrals"].values())
    assert summary["validations"] == len(remaps) > 0 and fired == summary["trapped_exits"] // count
    assert summary["guests"]["app"]["status"] == 1
    with_validation = host.final_disk("app")
    host.close()
    assert with_validation == alone


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("[policy]", "[policy]\ncolour = 1"), "unknown key 'colour' in [policy]"),
    (lambda t: t.replace("demo_mgmt.elf", "missing.elf"), "kernel"),
    (lambda t: t.replace("demo.baseline.json", "other.json"), "another disk"),
    (lambda t: t.replace('validate = "app"', 'validate = "nobody"'), "'nobody'"),
])
def test_bad_scenarios_are_refused_with_one_line(tmp_path, edit, message):
    from emu.integrity.baseline import Baseline
    other = Baseline.load(DEMO / "demo.baseline.json")
    other.volume["volume_id"] = "12345678"
    other_path = tmp_path / "other.json"
    other.save(other_path)
    text = edit(scenario_text('kind = "counter"\ncount = 3')).replace(str(DEMO / "other.json"), str(other_path))
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "emu", "host", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("emu: ")
