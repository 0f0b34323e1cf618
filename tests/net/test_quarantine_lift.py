"""Quarantine and its lifting end to end, through the trap handler (issue 7): a scenario whose application
guest starts with a tampered disk and repairs it during the run.

The disk is the demo disk with /ETC/NET.CFG's ``VLAN=10`` changed to ``VLAN=99`` before the run; the baseline is
taken from the untouched demo disk: /BIN by hash plus the demo's configuration rules (``VLAN == 10``).  At tick
100 demo_app's tampering step, given ``vlan=10``, writes ``VLAN=10`` back.  So: validation finds the rule
violated -> 420 moves the app's port to the quarantine VLAN -> after the repair a validation is clean -> with
``lift_when_clean`` 420 moves the port back to its home VLAN (``Host.lift``) -> the management guest receives
the app's status frames again.  The switch's counters, what the management guest printed and the pcap read
by tshark must tell the same story, with the pcap's VLAN changes at the trap times of the two 420 steps.

Why not the demo's full baseline: the repair rewrites NET.CFG's directory entry with the guest's own clock
(``write_time`` 2024-01-01…), so a baseline that records ``write_time`` never validates clean again.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FIRMWARE, FIXTURES, require_tool
from emu.devices.ne2000 import format_mac
from emu.hypervisor.host import Host
from emu.hypervisor.scenario import load
from emu.integrity.baseline import take_baseline
from emu.integrity.rules import parse_rules
from emu.net.peer import APP_MAC, ETHERTYPE_PING
from emu.storage.image import DiskImage

DEMO = FIXTURES / "demo"
HOME_VLAN, QUARANTINE_VLAN = 10, 999
TICKS, STATUS_EVERY, REPAIR_TICK = 200, 10, 100
STATUS_LINE = re.compile(r"^mgmt: status from app: (seq=(\d+) tick=(\d+) log=\d+ (?:ok|tampered))$")

SCENARIO = f"""
[host]
quantum = 3000
jitter = 5000
seed = 1
pcap = "net.pcap"

[[guest]]
name = "app"
kernel = "{FIRMWARE / 'demo_app.elf'}"
cmdline = "hz=1000 ticks={TICKS} log=50 save=0 check=0 tamper={REPAIR_TICK} vlan=10 busy=0 busyint=0 status={STATUS_EVERY}"
disks = ["app.img"]
vlan = {HOME_VLAN}

[[guest]]
name = "mgmt"
kernel = "{FIRMWARE / 'demo_mgmt.elf'}"
cmdline = "hz=1000 iterations={TICKS + 20} heartbeat=100 chunks=4 work=200"
vlan = {HOME_VLAN}

[trap]
guest = "mgmt"
reasons = ["IO_INSTRUCTION"]
validate = "app"

[policy]
kind = "clock"
interval_ns = 60000000      # host time = both guests' time: a validation about every 30 ticks of each

[validation]
baseline = "base.json"

[restrictions]
on_findings = ["quarantine_vlan"]
quarantine_vlan = {QUARANTINE_VLAN}
lift_when_clean = true
"""


def tampered_demo_disk(path: Path) -> None:
    """The demo disk with NET.CFG's VLAN=10 overwritten by VLAN=99 in place (same size, same clusters)."""
    data = bytearray((DEMO / "demo.img").read_bytes())
    assert data.count(b"\nVLAN=10\n") == 1
    at = data.find(b"\nVLAN=10\n")
    data[at:at + 9] = b"\nVLAN=99\n"
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def lifted(tmp_path_factory: pytest.TempPathFactory):
    """Run the scenario: (events, summary, pcap path)."""
    tmp = tmp_path_factory.mktemp("lift")
    tampered_demo_disk(tmp / "app.img")
    rules = parse_rules((DEMO / "demo.rules").read_text(), "demo.rules")
    with DiskImage(str(DEMO / "demo.img"), read_only=True) as img:
        take_baseline(img.view(), ["/BIN"], rules).save(tmp / "base.json")
    (tmp / "s.toml").write_text(SCENARIO)
    host = Host(load(tmp / "s.toml"))
    try:
        summary = host.run()
    finally:
        host.close()
    return host.events, summary, tmp / "net.pcap"


def _steps(events: list[dict], block: int) -> list[int]:
    return [i for i, e in enumerate(events) if e.get("block") == block]


def _trap_ns_before(events: list[dict], index: int) -> int:
    """Host time of the trap (310) whose validation produced the event at ``index``."""
    return next(events[i]["host_ns"] for i in range(index, -1, -1) if events[i].get("block") == 310)


def _console(events: list[dict], guest: str) -> list[tuple[int, str]]:
    return [(i, e["line"]) for i, e in enumerate(events) if e["kind"] == "console" and e["guest"] == guest]


def test_findings_quarantine_then_a_clean_validation_lifts(lifted):
    events, summary, _ = lifted
    restricts = _steps(events, 420)
    assert len(restricts) == 2
    applied, lift = (events[i] for i in restricts)
    assert applied["applied"] == [f"quarantine_vlan={QUARANTINE_VLAN}"]
    assert lift["lifted"] == ["quarantine_vlan"]
    analyses = [events[i] for i in _steps(events, 410)]
    first_clean = next(k for k, a in enumerate(analyses) if a["clean"])
    assert first_clean >= 1 and not any(a["clean"] for a in analyses[:first_clean])
    assert all(a["clean"] for a in analyses[first_clean:])              # the repair holds
    assert "VLAN is '99', expected '10'" in analyses[0]["summary"][0]
    # the 420 steps follow the first finding and the first clean result; the repair came before the latter
    first_finding = _steps(events, 410)[0]
    assert restricts[0] == first_finding + 1 and restricts[1] == _steps(events, 410)[first_clean] + 1
    repair = next(i for i, line in _console(events, "app") if line.startswith(f"tamper at tick {REPAIR_TICK}:"))
    assert "VLAN=99 -> VLAN=10" in events[repair]["line"]
    assert repair < restricts[1]
    assert summary["restricted"] is False and summary["network"]["app"]["vlan"] == HOME_VLAN
    assert summary["guests"]["app"]["status"] == 1 and summary["guests"]["mgmt"]["status"] == 1


def test_status_frames_stop_during_the_quarantine_and_flow_again_after(lifted):
    events, summary, _ = lifted
    quarantine, lift = _steps(events, 420)
    printed = [(i, STATUS_LINE.match(line)) for i, line in _console(events, "mgmt") if "status from" in line]
    assert all(m for _, m in printed), printed
    seqs = [int(m[2]) for _, m in printed]
    after_lift = [int(m[2]) for i, m in printed if i > lift]
    assert after_lift and after_lift == list(range(after_lift[0], TICKS // STATUS_EVERY + 1))   # to the very last
    before = [s for s in seqs if s < after_lift[0]]
    assert before and before == list(range(1, len(before) + 1))       # every report until the quarantine ...
    assert before[-1] + 1 < after_lift[0]                               # ... then a gap: the quarantined reports
    sent = TICKS // STATUS_EVERY
    assert f"net: {sent} status frames sent" in [line for _, line in _console(events, "app")]
    assert f"mgmt: {len(seqs)} status frames received, 0 other frames" in [line for _, line in _console(events, "mgmt")]
    net = summary["network"]
    assert net["app"]["frames_in"] == sent and net["app"]["frames_out"] == 0
    assert net["mgmt"]["frames_out"] == len(seqs) and net["mgmt"]["frames_in"] == 0
    assert net["app"]["dropped"] == {"no_destination": sent - len(seqs)}   # alone in the quarantine VLAN
    assert net["mgmt"]["dropped"] == {}


def test_pcap_read_by_tshark_agrees_with_the_counters_and_the_trap_times(lifted):
    require_tool("tshark")
    events, summary, pcap = lifted
    proc = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.time_epoch", "-e", "vlan.id",
                           "-e", "eth.src", "-e", "eth.dst", "-e", "vlan.etype", "-e", "data.data"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    net = summary["network"]
    assert len(rows) == net["app"]["frames_in"] + net["mgmt"]["frames_in"] == TICKS // STATUS_EVERY
    assert all(r[2] == format_mac(APP_MAC) and r[3] == "ff:ff:ff:ff:ff:ff" for r in rows)
    assert all(int(r[4], 16) == ETHERTYPE_PING for r in rows)
    quarantine_ns, lift_ns = (_trap_ns_before(events, i) for i in _steps(events, 420))
    for r in rows:   # the VLAN a frame entered in is decided by the trap times of the two 420 steps
        sec, _, frac = r[0].partition(".")
        t_ns = int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])
        assert int(r[1]) == (QUARANTINE_VLAN if quarantine_ns <= t_ns < lift_ns else HOME_VLAN), (r, quarantine_ns, lift_ns)
    vlans = [int(r[1]) for r in rows]
    home = [r for r in rows if int(r[1]) == HOME_VLAN]
    assert vlans.count(QUARANTINE_VLAN) == net["app"]["dropped"]["no_destination"] > 0
    assert len(home) == net["mgmt"]["frames_out"]
    assert vlans.index(QUARANTINE_VLAN) > 0 and vlans[-1] == HOME_VLAN     # 10 ... 999 ... 10
    texts = [bytes.fromhex(r[5])[6:].split(b"\0")[0].decode() for r in home]
    printed = ["app " + m[1] for _, line in _console(events, "mgmt") if (m := STATUS_LINE.match(line))]
    assert printed == texts          # the management guest printed exactly the frames of its VLAN, in order
