"""The host and the trap handler (issue 6): policies, safety, remaps that lose nothing, scenario errors."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emu.hypervisor import trap as trap_mod
from emu.hypervisor.host import Host
from emu.hypervisor.scenario import ScenarioError, load
from emu.machine import Machine, MachineConfig

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware" / "build"


APP_CMDLINE = "hz=1000 ticks=120 log=20 save=40 check=30 tamper=0"
DEMO = ROOT / "fixtures" / "demo"


def scenario_text(policy: str, extra: str = "", jitter: int = 5000) -> str:
    return f"""
[host]
quantum = 3000
jitter = {jitter}
seed = 3

[[guest]]
name = "app"
kernel = "{FW / 'demo_app.elf'}"
cmdline = "{APP_CMDLINE}"
disks = ["{DEMO / 'demo.img'}"]

[[guest]]
name = "mgmt"
kernel = "{FW / 'demo_mgmt.elf'}"
cmdline = "hz=1000 iterations=120 heartbeat=60"

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
    host.close()


def test_clock_policy_fires_at_the_first_exit_after_the_interval(tmp_path):
    interval = 40_000
    host, summary = run(tmp_path, scenario_text(f'kind = "clock"\ninterval_ns = {interval}'))
    steps = [e for e in host.events if e.get("block") in (310, 330)]
    outcome = {}  # exit number -> validated (safe) or deferred
    for trap_event, safety_event in zip(steps[::2], steps[1::2]):
        assert trap_event["block"] == 310 and safety_event["block"] == 330
        outcome[trap_event["exit_number"]] = safety_event["safe"]
    assert outcome
    last = 0
    for number, now in host.trap.trap_log:
        assert (number in outcome) == (now - last >= interval), (number, now, last)
        if outcome.get(number):
            last = now  # a validation restarts the interval; a deferral does not
    host.close()


def test_validation_never_runs_at_an_unsafe_point_and_never_changes_the_disk(tmp_path, monkeypatch):
    import emu.integrity as integrity
    seen = []
    real = integrity.validate

    def checked(source, baseline, **kw):
        target = hosts[0].machines["app"]
        assert trap_mod.safety(target) is None
        before = hashlib.sha256(source.read(0, source.sectors)).hexdigest()
        result = real(source, baseline, **kw)
        assert hashlib.sha256(source.read(0, source.sectors)).hexdigest() == before
        seen.append(result.clean)
        return result

    monkeypatch.setattr(integrity, "validate", checked)
    hosts = []
    text = scenario_text('kind = "counter"\ncount = 5', jitter=9000)
    hosts.append(Host(load(write(tmp_path, text))))
    summary = hosts[0].run()
    assert seen and summary["validations"] == len(seen)
    hosts[0].close()


def test_no_guest_write_is_lost_across_remaps(tmp_path):
    """The app guest's final disk equals its final disk when it runs alone with no validation."""
    host, summary = run(tmp_path, scenario_text('kind = "counter"\ncount = 3'))
    assert summary["validations"] >= 3
    with_validation = host.final_disk("app")
    host.close()
    alone_disk = tmp_path / "alone.img"
    shutil.copyfile(DEMO / "demo.img", alone_disk)
    m = Machine(MachineConfig(kernel=str(FW / "demo_app.elf"), cmdline=APP_CMDLINE, disks=[str(alone_disk)]),
                console=lambda b: None)
    assert m.run(max_insns=500_000_000).status == 1
    m.close()
    alone = alone_disk.read_bytes()
    assert alone != (DEMO / "demo.img").read_bytes()  # the guest really wrote its disk
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
