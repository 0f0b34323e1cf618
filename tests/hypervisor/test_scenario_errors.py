"""Scenario files with bad values (issue 6): `emu host bad.toml` refuses each with exit status 2 and exactly one
line on stderr naming the key (and, for a guest's key, the guest) — never a traceback, never a run-time surprise."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIRMWARE, FIXTURES
from emu.cli import main
from emu.hypervisor.scenario import ScenarioError, load

DEMO = FIXTURES / "demo"

GOOD = f"""
[host]
quantum = 3000
jitter = 100
seed = 3

[[guest]]
name = "app"
kernel = "{FIRMWARE / 'demo_app.elf'}"
cmdline = "hz=1000 ticks=20"
mem = 32
disks = ["{DEMO / 'demo.img'}"]

[[guest]]
name = "mgmt"
kernel = "{FIRMWARE / 'demo_mgmt.elf'}"
cmdline = "hz=1000 iterations=20"

[trap]
guest = "mgmt"
reasons = ["IO_INSTRUCTION"]
validate = "app"
disk = 0

[policy]
kind = "clock"
interval_ns = 5000000

[validation]
baseline = "{DEMO / 'demo.baseline.json'}"

[restrictions]
on_findings = ["deny_ports", "revoke_hypercalls"]
deny_ports = [0x70, 0x71]
revoke_hypercalls = [1]
lift_when_clean = false
"""

APP_KERNEL = f'kernel = "{FIRMWARE / "demo_app.elf"}"'
APP_DISKS = f'disks = ["{DEMO / "demo.img"}"]'
MGMT_KERNEL = f'kernel = "{FIRMWARE / "demo_mgmt.elf"}"'


def edit(old: str, new: str):
    def apply(text: str) -> str:
        assert text.count(old) == 1, old
        return text.replace(old, new)
    return apply


# (edit of the good scenario, words the one line must contain)
CASES = {
    # types: each key's value checked before use (these used to crash in int() or pass through bool())
    "quantum_text": (edit("quantum = 3000", 'quantum = "x"'), ["[host]", "quantum", "integer", "'x'"]),
    "mem_text": (edit("mem = 32", 'mem = "lots"'), ["guest 'app'", "mem", "integer", "'lots'"]),
    "interval_unit": (edit("interval_ns = 5000000", 'interval_ns = "5ms"'), ["[policy]", "interval_ns", "integer"]),
    "deny_ports_text": (edit("deny_ports = [0x70, 0x71]", 'deny_ports = ["a"]'),
                        ["[restrictions]", "deny_ports", "list of integers"]),
    "seed_text": (edit("seed = 3", 'seed = "a"'), ["[host]", "seed", "integer"]),
    "lift_text": (edit("lift_when_clean = false", 'lift_when_clean = "no"'),
                  ["[restrictions]", "lift_when_clean", "true or false", "'no'"]),
    "jitter_float": (edit("jitter = 100", "jitter = 1.5"), ["[host]", "jitter", "integer"]),
    "vlan_bool": (edit('cmdline = "hz=1000 ticks=20"', 'cmdline = "hz=1000 ticks=20"\nvlan = true'),
                  ["guest 'app'", "vlan", "integer", "true"]),
    "cmdline_number": (edit('cmdline = "hz=1000 iterations=20"', "cmdline = 5"), ["guest 'mgmt'", "cmdline", "string"]),
    "reasons_not_list": (edit('reasons = ["IO_INSTRUCTION"]', 'reasons = "IO_INSTRUCTION"'),
                         ["[trap]", "reasons", "list of strings"]),
    "disks_not_list": (edit(APP_DISKS, f'disks = "{DEMO / "demo.img"}"'), ["guest 'app'", "disks", "list of strings"]),
    "host_not_table": (edit("[host]\nquantum = 3000\njitter = 100\nseed = 3\n", "host = 5\n"), ["[host]", "table"]),
    "pcap_number": (edit("seed = 3", "seed = 3\npcap = 1"), ["[host]", "pcap", "string"]),
    "where_number": (edit("[validation]\n", "[validation]\nwhere = 5\n"), ["[validation]", "where", "string"]),
    # ranges
    "quantum_zero": (edit("quantum = 3000", "quantum = 0"), ["[host]", "quantum", "at least 1", "got 0"]),
    "jitter_negative": (edit("jitter = 100", "jitter = -1"), ["[host]", "jitter", "at least 0"]),
    "max_insns_zero": (edit("seed = 3", "seed = 3\nmax_insns = 0"), ["[host]", "max_insns", "at least 1"]),
    "max_ns_negative": (edit("seed = 3", "seed = 3\nmax_ns = -5"), ["[host]", "max_ns", "at least 1"]),
    "mem_zero": (edit("mem = 32", "mem = 0"), ["guest 'app'", "mem", "1-3072", "got 0"]),
    "mem_huge": (edit("mem = 32", "mem = 5000"), ["guest 'app'", "mem", "1-3072", "got 5000"]),
    "vlan_4095": (edit('cmdline = "hz=1000 iterations=20"', 'cmdline = "hz=1000 iterations=20"\nvlan = 4095'),
                  ["guest 'mgmt'", "vlan", "1-4094"]),
    "mac_short": (edit('cmdline = "hz=1000 iterations=20"', 'cmdline = "hz=1000 iterations=20"\nmac = "52:54:00"'),
                  ["guest 'mgmt'", "mac", "six hex bytes"]),
    "disk_negative": (edit("disk = 0", "disk = -1"), ["[trap]", "disk", "0-3", "got -1"]),
    "disk_absent": (edit("disk = 0", "disk = 1"), ["[trap]", "disk 1", "guest 'app'", "does not exist"]),
    "interval_zero": (edit("interval_ns = 5000000", "interval_ns = 0"), ["[policy]", "interval_ns", "at least 1"]),
    "interval_missing": (edit("interval_ns = 5000000", ""), ["[policy]", "needs 'interval_ns'"]),
    "count_missing": (edit('kind = "clock"\ninterval_ns = 5000000', 'kind = "counter"'), ["[policy]", "needs 'count'"]),
    "kind_unknown": (edit('kind = "clock"', 'kind = "sometimes"'), ["[policy]", "kind", "'sometimes'"]),
    "port_too_big": (edit("deny_ports = [0x70, 0x71]", "deny_ports = [0x70, 0x10000]"),
                     ["[restrictions]", "deny_ports", "0x10000", "0x0-0xffff"]),
    "leaf_negative": (edit("revoke_hypercalls = [1]", "revoke_hypercalls = [-1]"),
                      ["[restrictions]", "revoke_hypercalls", "-1"]),
    "quarantine_vlan_zero": (edit("lift_when_clean = false", "lift_when_clean = false\nquarantine_vlan = 0"),
                             ["[restrictions]", "quarantine_vlan", "1-4094"]),
    "deny_nothing": (edit("deny_ports = [0x70, 0x71]", "deny_ports = []"),
                     ["[restrictions]", "on_findings", "deny_ports", "lists nothing"]),
    "restriction_unknown": (edit('on_findings = ["deny_ports", "revoke_hypercalls"]', 'on_findings = ["reboot"]'),
                            ["[restrictions]", "on_findings", "'reboot'"]),
    "deadline_zero": (edit("[validation]\n", "[validation]\ndeadline_insns = 0\n"),
                      ["[validation]", "deadline_insns", "at least 1"]),
    "name_empty": (edit('name = "mgmt"', 'name = ""'), ["[[guest]] number 2", "name", "empty"]),
    "name_missing": (edit('name = "mgmt"\n', ""), ["[[guest]] number 2", "needs 'name'"]),
    "name_twice": (edit('name = "mgmt"', 'name = "app"'), ["two guests", "'app'"]),
    # files: which guest's kernel or disk is bad, and why (found at load, not when the guest is built)
    "kernel_missing": (edit(MGMT_KERNEL, 'kernel = "missing.elf"'), ["guest 'mgmt'", "kernel", "'missing.elf'",
                                                                     "not found"]),
    "kernel_directory": (edit(MGMT_KERNEL, f'kernel = "{FIRMWARE}"'), ["guest 'mgmt'", "kernel", "not a file"]),
    "kernel_not_elf": (edit(MGMT_KERNEL, f'kernel = "{DEMO / "demo.rules"}"'), ["guest 'mgmt'", "kernel",
                                                                                "demo.rules", "not a multiboot kernel"]),
    "kernel_too_big_for_ram": (edit("mem = 32", "mem = 1"), ["guest 'app'", "kernel", "outside usable RAM"]),
    "disk_missing": (edit(APP_DISKS, 'disks = ["nope.img"]'), ["guest 'app'", "disks", "'nope.img'", "not found"]),
    "disk_partial_sector": (edit(APP_DISKS, f'disks = ["{DEMO / "demo.rules"}"]'),
                            ["guest 'app'", "disks entry", "demo.rules", "not a multiple of 512"]),
    "too_many_disks": (edit(APP_DISKS, f'disks = {[str(DEMO / "demo.img")] * 5}'.replace("'", '"')),
                       ["guest 'app'", "disks", "at most 4"]),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def test_the_good_scenario_loads(tmp_path):
    """The control: every case below differs from a scenario that loads only by its edit."""
    scenario = load(write(tmp_path, GOOD))
    assert scenario.quantum == 3000 and scenario.seed == 3 and scenario.restrictions.deny_ports == [0x70, 0x71]
    assert scenario.restrictions.lift_when_clean is False and scenario.policy.interval_ns == 5_000_000
    assert [g.mem for g in scenario.guests] == [32, 32]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_is_refused_with_one_line_naming_the_key(tmp_path, capsys, case):
    change, words = CASES[case]
    path = write(tmp_path, change(GOOD))
    status = main(["host", str(path)])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"emu: {path}: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("case", ["lift_text", "disk_negative", "kernel_not_elf"])
def test_the_installed_command_refuses_too(tmp_path, case):
    """The same through a real `emu host` process: status 2, one line, no traceback."""
    change, words = CASES[case]
    path = write(tmp_path, change(GOOD))
    proc = subprocess.run([sys.executable, "-m", "emu", "host", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and all(w in proc.stderr for w in words), proc.stderr


def test_booleans_are_not_numbers_and_numbers_are_not_booleans(tmp_path):
    """TOML true is not 1 (a quantum of true would be one instruction) and 1 is not true."""
    with pytest.raises(ScenarioError, match=r"\[host\] quantum must be an integer \(got true\)"):
        load(write(tmp_path, GOOD.replace("quantum = 3000", "quantum = true")))
    with pytest.raises(ScenarioError, match=r"lift_when_clean must be true or false \(got 1\)"):
        load(write(tmp_path, GOOD.replace("lift_when_clean = false", "lift_when_clean = 1")))
