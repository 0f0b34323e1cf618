"""Network kernels and the guest-validation scenario have goldens; a change to the NE2000 model fails replay.

The network goldens are recorded as tests/net runs the kernels (an NE2000 at QEMU's ne2k_isa defaults on a
private switch with the echo peer), so their console bytes must be the QEMU 7.2 transcripts in tests/net/.
"""
from __future__ import annotations

import pytest

import emu.devices.ne2000 as ne2000
from emu.trace import goldens
from emu.trace.format import TraceError
from emu.trace.reader import TraceReader
from emu.trace.replay import replay
from emu.trace.session import RunSpec, make_header

ROOT = goldens.ROOT
NET = sorted(goldens.NET_KERNELS)
DATA_PORT = ne2000.DEFAULT_IOBASE + ne2000.DATA_PORT


def _golden(name: str):
    path = goldens.golden_path(name)
    assert path.exists(), f"no golden for {name}: run `python tools/rerecord_goldens.py {name}`"
    return path


@pytest.mark.parametrize("name", NET)
def test_net_golden_is_the_qemu_transcript_with_a_nic_and_a_peer(name):
    path = _golden(name)
    header = TraceReader(path).header
    cmdline, mac = goldens.NET_KERNELS[name]
    assert header["guests"][0]["nic"] == {"model": "ne2000", "iobase": 0x300, "irq": 9, "mac": mac, "peer": "echo"}
    assert header["guests"][0]["cmdline"] == cmdline
    console = bytes(e["byte"] for e in TraceReader(path).events(kinds=["console"]))
    assert console == (ROOT / "tests" / "net" / f"{name}.qemu.txt").read_bytes()
    assert TraceReader(path).end()["status"] == 1


def test_net_ping_golden_records_every_frame_on_the_wire():
    """Under QEMU the echo peer receives 23 frames from net_ping (tests/net/test_net_ping.py): the same 23 are
    recorded from the guest's port, each answered by the peer (plus three pairs of decoys)."""
    frames = list(TraceReader(_golden("net_ping")).events(kinds=["frame"]))
    sent = [f for f in frames if f["port"] == "guest"]
    assert len(sent) == 23 and all(f["delivered"] == ["peer"] for f in sent)
    assert [f["length"] for f in sent[:3]] == [60, 60, 20]          # the runt leaves unpadded, as in QEMU
    from_peer = [f for f in frames if f["port"] == "peer"]
    assert len(from_peer) == 23 + 3 * 2


def test_net_ring_golden_records_the_refused_frames():
    """net_ring fills the ring and sets PSTOP == PSTART: the NIC refuses two frames (tests/net counters)."""
    refused = [f for f in TraceReader(_golden("net_ring")).events(kinds=["frame"]) if f["refused"]]
    assert len(refused) == 2 and all(f["refused"] == ["guest"] for f in refused)


def _first_rx_length_read(path) -> tuple[int, dict, dict]:
    """(1-based event index, record, frame) of the guest's read of the receive header's length word for the
    first frame the NIC stored: the second data-port read after that frame (header: status, next page, length)."""
    frame = None
    reads = 0
    for index, record in enumerate(TraceReader(path).events(), 1):
        kind = record["kind"]
        if frame is None:
            if kind == "frame" and record["delivered"] == ["guest"]:
                frame = record
            continue
        if kind == "io" and record["op"] == "in" and record["port"] == DATA_PORT:
            reads += 1
            if reads == 2:
                return index, record, frame
    raise AssertionError("no receive header read in the trace")


def test_ne2000_padding_change_fails_replay_at_the_first_rx_length_read(monkeypatch):
    """One-line change to the model (frames padded to 64 bytes instead of QEMU's MIN_BUF_SIZE 60): the replay of
    the committed net_ping golden stops at the first read of a stored frame's length, 60 + 4 expected, 64 + 4 seen."""
    path = _golden("net_ping")
    index, record, frame = _first_rx_length_read(path)
    expected_len = max(frame["length"], 60) + 4
    assert record["value"] == expected_len              # the golden has QEMU's padding (hw/net/ne2000.c)
    monkeypatch.setattr(ne2000, "MIN_BUF_SIZE", 64)
    result = replay(path, base=ROOT)
    d = result.divergence
    assert d is not None and d.index == index and d.icount == record["icount"]
    assert d.expected == record
    assert d.actual == dict(record, value=max(frame["length"], 64) + 4)
    report = result.report()
    assert "differing fields: value" in report
    # the state comparison is at the recorded end checkpoint's exact icount
    assert d.actual_checkpoint["icount"] == d.expected_checkpoint["icount"]
    assert f"state against the recorded checkpoint at icount {d.expected_checkpoint['icount']} (the replay's " \
           "state at the same icount)" in report
    assert "RAM differs" in report and "    register " in report


def test_a_nic_round_trips_through_the_header():
    from emu.net.config import NicConfig

    spec = goldens.golden_spec("net_mgmt")
    assert spec.nic == NicConfig(mac=bytes.fromhex("525400123457"), peer="echo")
    assert RunSpec.from_header(make_header(spec, ROOT)) == spec
    plain = goldens.golden_spec("hello")
    header = make_header(plain, ROOT)
    assert "nic" not in header["guests"][0]          # traces without a card keep their bytes
    assert RunSpec.from_header(header).nic is None


@pytest.mark.parametrize("nic, message", [
    ({"model": "e1000", "iobase": 0x300, "irq": 9, "mac": "52:54:00:12:34:56", "peer": None}, "network card"),
    ({"model": "ne2000", "iobase": 0x300, "irq": 9, "mac": "52:54:00:12:34:56", "peer": "tap"}, "network peer"),
    ({"model": "ne2000", "iobase": 0x300, "irq": 9, "mac": "nonsense", "peer": None}, "unusable network card"),
    ({"model": "ne2000", "irq": 9, "mac": "52:54:00:12:34:56", "peer": None}, "unusable network card"),
])
def test_a_header_nic_this_emu_cannot_build_is_one_trace_error(nic, message):
    header = make_header(goldens.golden_spec("hello"), ROOT)
    header["guests"][0]["nic"] = nic
    with pytest.raises(TraceError, match=message) as info:
        RunSpec.from_header(header)
    assert "\n" not in str(info.value)


def test_scenario_guests_are_inputs_of_their_scenario_golden():
    """demo_app, demo_mgmt and mgmt_validator have no golden of their own: the scenario golden naming them does."""
    for kernel, scenario in goldens.SCENARIO_GUESTS.items():
        header = TraceReader(_golden(scenario)).header
        kernels = {i["path"] for i in header["inputs"] if i["role"] == "kernel"}
        assert f"firmware/build/{kernel}.elf" in kernels, (kernel, scenario)


def test_guest_validation_golden_records_the_validator_in_the_guest():
    """scenario-guest.toml (`emu demo --validation guest:mgmt`): the validations are done by the mgmt guest and the
    tampering at tick 250 is found, as in the monitor-side demo."""
    path = _golden("scenario-guest")
    header = TraceReader(path).header
    assert header["scenario"] == goldens.SCENARIOS["scenario-guest"]
    records = list(TraceReader(path).events(kinds=["validation", "restriction", "guest_end"]))
    validations = [r for r in records if r["kind"] == "validation"]
    assert validations and all(v["by"] == "guest:mgmt" for v in validations)
    assert validations[0]["clean"] is True and any(not v["clean"] for v in validations)
    assert [r["kind"] for r in records].count("restriction") == 1
    assert sorted(r["guest"] for r in records if r["kind"] == "guest_end") == ["app", "mgmt"]


def test_recording_attached_to_a_machine_with_a_nic_replays(tmp_path):
    """`emu run --nic --record` (a Recording on a machine built elsewhere): the card and peer reach the header
    (not the capture file, an output) and the replay rebuilds them."""
    import shutil

    from emu.machine import Machine, MachineConfig
    from emu.net.config import NicConfig
    from emu.trace.session import Recording, in_directory

    shutil.copyfile(ROOT / "firmware" / "build" / "net_app.elf", tmp_path / "net_app.elf")
    with in_directory(tmp_path):
        m = Machine(MachineConfig(kernel="net_app.elf", cmdline="count=3 interval=5",
                                  nic=NicConfig(peer="echo", pcap="wire.pcap")), console=lambda b: None)
        rec = Recording(m, "t.trace")
        result = m.run()
        rec.finish(result)
        m.close()
    header = TraceReader(tmp_path / "t.trace").header
    assert header["guests"][0]["nic"]["peer"] == "echo" and "pcap" not in header["guests"][0]["nic"]
    assert (tmp_path / "wire.pcap").exists()
    assert TraceReader(tmp_path / "t.trace").counts()["frame"] == 3
    result = replay(tmp_path / "t.trace", base=tmp_path)
    assert result.ok, result.report()


def test_demo_golden_records_the_frames_between_guests_and_the_quarantine():
    """scenario.toml puts both NICs in VLAN 10 and quarantines the application guest in VLAN 999 when validation
    finds the tampering: its status broadcasts reach mgmt before the restriction and nobody after it."""
    import tomllib

    scenario = tomllib.loads((ROOT / goldens.SCENARIOS["demo"]).read_text())
    home = {g["name"]: g["vlan"] for g in scenario["guest"]}
    quarantine = scenario["restrictions"]["quarantine_vlan"]
    records = list(TraceReader(_golden("demo")).events(kinds=["frame", "restriction"]))
    cut = next(i for i, r in enumerate(records) if r["kind"] == "restriction")
    before, after = records[:cut], [r for r in records[cut + 1:] if r["kind"] == "frame"]
    assert before and after and all(r["kind"] == "frame" for r in before)
    assert all(f["port"] == "app" and f["vlan"] == home["app"] and f["delivered"] == ["mgmt"] for f in before)
    assert all(f["vlan"] == quarantine and f["delivered"] == [] and f["drop"] == "no_destination" for f in after)
