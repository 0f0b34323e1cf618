"""The demo's virtual network (issue 7): the management guest receives the application guest's status frames
until the tampering is detected and none after; the switch's counters and the pcap (read by tshark) agree.

Also the two demo kernels with a NIC on their own: demo_app's transcript and disk are those of the run without
a NIC plus its two "net:" lines, its frames are the documented status frames (and QEMU's ne2k_isa sends the
same bytes); demo_mgmt prints exactly the status frames its NIC takes (docs/network.md, docs/demo-firmware.md).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIRMWARE, FIXTURES, require_tool
from emu.devices.ne2000 import format_mac
from emu.machine import EndReason, Machine, MachineConfig
from emu.net.attach import attach_ne2000
from emu.net.switch import VirtualSwitch

DEMO = FIXTURES / "demo"
APP_MAC = bytes.fromhex("525400123456")     # the host's MAC for its first guest (QEMU's first NIC)
MGMT_MAC = bytes.fromhex("525400123457")
ETHERTYPE_STATUS = 0x88B5
STATUS_LINE = re.compile(r"^mgmt: status from app: seq=(\d+) tick=(\d+) log=(\d+) (ok|tampered)$")


# --- the demo ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path, float]:
    """`emu demo --json --pcap FILE`: its events (summary last), the capture, the wall time."""
    pcap = tmp_path_factory.mktemp("demo-net") / "demo.pcap"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "emu", "demo", "--json", "--pcap", str(pcap)],
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()], pcap, elapsed


def _console(events: list[dict], guest: str) -> list[tuple[int, str]]:
    return [(i, e["line"]) for i, e in enumerate(events) if e["kind"] == "console" and e["guest"] == guest]


def _restriction(events: list[dict]) -> int:
    restricts = [i for i, e in enumerate(events) if e.get("block") == 420]
    assert len(restricts) == 1
    return restricts[0]


def test_status_frames_arrive_until_the_quarantine_and_none_after(demo):
    events, _pcap, elapsed = demo
    assert elapsed < 30
    r = _restriction(events)
    assert events[r]["applied"][0] == "quarantine_vlan=999"           # a NIC was there to move
    statuses = [(i, STATUS_LINE.match(line)) for i, line in _console(events, "mgmt") if "status from" in line]
    assert all(m for _, m in statuses), statuses
    before = [m for i, m in statuses if i < r]
    after = [m for i, m in statuses if i > r]
    assert len(before) >= 5 and after == []
    # every report the app sent before the quarantine arrived, in order: seq 1, 2, ... every 20 ticks
    assert [int(m[1]) for m in before] == list(range(1, len(before) + 1))
    assert [int(m[2]) for m in before] == [20 * n for n in range(1, len(before) + 1)]
    # the quarantine came with the detection of the tampering (tick 250), before the app's next report
    tamper_done = next(i for i, line in _console(events, "app") if line.startswith("tamper done"))
    assert tamper_done < r
    assert int(before[-1][2]) <= 250 < int(before[-1][2]) + 20
    sent = next(line for _, line in _console(events, "app") if line.endswith("status frames sent"))
    received = next(line for _, line in _console(events, "mgmt") if line.endswith("other frames"))
    assert sent == "net: 20 status frames sent"
    assert received == f"mgmt: {len(before)} status frames received, 0 other frames"


def test_counters_show_the_quarantined_frames_dropped(demo):
    events, _pcap, _ = demo
    net = events[-1]["network"]
    received = sum(1 for _, line in _console(events, "mgmt") if "status from app" in line)
    assert net["app"]["vlan"] == 999 and net["mgmt"]["vlan"] == 10
    assert net["app"]["frames_in"] == 20                               # all of them entered the switch ...
    assert net["mgmt"]["frames_out"] == received                       # ... these reached mgmt ...
    app_drops = net["app"]["dropped"]
    assert app_drops.get("no_destination", 0) + app_drops.get("vlan_isolated", 0) == 20 - received > 0
    assert net["mgmt"]["frames_in"] == 0 and net["mgmt"]["dropped"] == {}


def _tshark(pcap: Path, *fields: str) -> list[list[str]]:
    require_tool("tshark")
    args = ["tshark", "-r", str(pcap), "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


def test_tshark_reads_the_demo_capture(demo):
    events, pcap, _ = demo
    rows = _tshark(pcap, "vlan.id", "eth.src", "eth.dst", "vlan.etype", "data.data")
    received = [STATUS_LINE.match(line) for _, line in _console(events, "mgmt") if "status from app" in line]
    assert len(rows) == 20
    vlans = [int(r[0]) for r in rows]
    assert vlans == [10] * len(received) + [999] * (20 - len(received))
    assert all(r[1] == format_mac(APP_MAC) and r[2] == "ff:ff:ff:ff:ff:ff" for r in rows)
    assert all(int(r[3], 16) == ETHERTYPE_STATUS for r in rows)
    texts = [bytes.fromhex(r[4])[6:].split(b"\0")[0].decode() for r in rows]
    # what mgmt printed is what was on the wire in VLAN 10; the tampered reports only went to VLAN 999
    assert [f"app seq={m[1]} tick={m[2]} log={m[3]} {m[4]}" for m in received] == texts[:len(received)]
    assert all(t.endswith(" tampered") for t in texts[len(received):])


# --- the kernels alone with a NIC -----------------------------------------------------------------------------
APP_CMDLINE = "hz=1000 ticks=100 log=30 save=0 check=50 tamper=50 vlan=99 busy=500 busyint=10 status=20"


def expected_status_frames(ticks: int, every: int, log: int, tamper: int) -> list[bytes]:
    """The frames docs/network.md describes: broadcast from APP_MAC, 0x88B5, STAT, seq, 0, text, zero padding."""
    frames = []
    for seq, tick in enumerate(range(every, ticks + 1, every), start=1):
        text = f"app seq={seq} tick={tick} log={tick // log} {'tampered' if tick >= tamper else 'ok'}"
        frame = b"\xff" * 6 + APP_MAC + ETHERTYPE_STATUS.to_bytes(2, "big") + b"STAT" + bytes([seq & 0xFF, 0])
        frames.append((frame + text.encode() + b"\0").ljust(60, b"\0"))
    return frames


def run_app_on_emu(tmp: Path, nic: bool) -> tuple[bytes, int, bytes, list[bytes]]:
    """demo_app on a copy of the demo disk, optionally with an NE2000 on a switch next to a recording port."""
    disk = tmp / f"app-{'nic' if nic else 'plain'}.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    out = bytearray()
    m = Machine(MachineConfig(kernel=str(FIRMWARE / "demo_app.elf"), cmdline=APP_CMDLINE, disks=[str(disk)]),
                console=out.append)
    frames: list[bytes] = []
    if nic:
        sw = VirtualSwitch(time_ns=m.clock.ns)
        attach_ne2000(m, sw, "app", mac=APP_MAC, vlan=10)
        sw.add_port("recorder", lambda f: frames.append(bytes(f)) or True, vlan=10)
    try:
        result = m.run(max_insns=200_000_000)
    finally:
        m.close()
    return bytes(out), result.status, disk.read_bytes(), frames


@pytest.fixture(scope="module")
def app_runs(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("demo-app-nic")
    return run_app_on_emu(tmp, nic=False), run_app_on_emu(tmp, nic=True)


def test_demo_app_with_a_nic_only_adds_its_network(app_runs):
    (plain, plain_status, plain_disk, no_frames), (with_nic, status, disk, frames) = app_runs
    assert plain_status == status == 1 and no_frames == []
    lines = with_nic.decode().splitlines()
    net = [line for line in lines if line.startswith("net: ")]
    assert net == ["net: NE2000 at 300, mac 52:54:00:12:34:56, status frame every 20 ticks",
                   "net: 5 status frames sent"]
    assert "net:" not in plain.decode()
    assert [line for line in lines if not line.startswith("net: ")] == plain.decode().splitlines()
    assert disk == plain_disk
    assert frames == expected_status_frames(100, 20, 30, 50)


@pytest.mark.qemu
def test_demo_app_sends_the_same_frames_under_qemu(app_runs, tmp_path: Path):
    """QEMU's ne2k_isa on a loopback UDP socket: same transcript as emu's run with the NIC, same frames."""
    require_tool("qemu-system-i386")
    from net.harness import qemu_ref
    from net.udp_peer import UdpEchoPeer, free_udp_port

    _plain, (with_nic, status, disk, frames) = app_runs
    qdisk = tmp_path / "app-qemu.img"
    shutil.copyfile(DEMO / "demo.img", qdisk)
    with UdpEchoPeer() as peer:
        cmd = qemu_ref.qemu_command(str(FIRMWARE / "demo_app.elf"), str(qdisk), append=APP_CMDLINE)
        cmd += peer.netdev_args(free_udp_port(), mac=format_mac(APP_MAC))
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        deadline = time.monotonic() + 5
        while len(peer.received) < len(frames) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert proc.stdout == with_nic
    assert proc.returncode == status
    assert qdisk.read_bytes() == disk
    assert peer.received == frames


def test_demo_mgmt_prints_the_status_frames_its_nic_takes():
    out = bytearray()
    m = Machine(MachineConfig(kernel=str(FIRMWARE / "demo_mgmt.elf"),
                              cmdline="hz=1000 iterations=30 heartbeat=10 chunks=2 work=100"), console=out.append)
    sw = VirtualSwitch(time_ns=m.clock.ns)
    attach_ne2000(m, sw, "mgmt", mac=MGMT_MAC, vlan=10)
    peer = sw.add_port("peer", lambda f: True, vlan=10)
    other_vlan = sw.add_port("elsewhere", lambda f: True, vlan=20)
    try:
        while b"listening" not in out:
            assert m.run(max_insns=50_000, yield_on_halt=True).reason in (EndReason.MAX_INSNS, EndReason.IDLE)
        hdr = ETHERTYPE_STATUS.to_bytes(2, "big") + b"STAT"
        sw.ingress(peer, (b"\xff" * 6 + APP_MAC + hdr + b"\x01\x00app seq=1 tick=20 log=0 ok\0").ljust(60, b"\0"))
        sw.ingress(peer, (MGMT_MAC + APP_MAC + hdr + b"\x02\x00app seq=2 tick=40 log=1 tampered").ljust(60, b"\0"))
        sw.ingress(peer, (bytes.fromhex("020000000001") + APP_MAC + hdr + b"\x03\x00not for mgmt").ljust(60, b"\0"))
        sw.ingress(other_vlan, (b"\xff" * 6 + APP_MAC + hdr + b"\x04\x00app other vlan").ljust(60, b"\0"))
        sw.ingress(peer, b"\xff" * 6 + APP_MAC + b"\x08\x00" + bytes(46))   # broadcast, not a status frame
        result = m.run(max_insns=50_000_000)
    finally:
        m.close()
    assert result.status == 1
    lines = out.decode().splitlines()
    assert lines[1] == "mgmt: NE2000 at 300, mac 52:54:00:12:34:57, listening for status frames"
    assert [line for line in lines if line.startswith("mgmt: status")] == [
        "mgmt: status from app: seq=1 tick=20 log=0 ok",
        "mgmt: status from app: seq=2 tick=40 log=1 tampered"]
    assert lines[-2] == "mgmt: 2 status frames received, 1 other frames"
    assert lines[-1].startswith("demo_mgmt done: 30 iterations")
