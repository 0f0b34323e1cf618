"""Virtual switch: VLAN isolation, learning, flooding, counters, set_vlan timing, NICs on the switch."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from emu import EmuError
from emu.devices.ne2000 import CR, RCR, Ne2000
from emu.net.pcap import memory_writer, read_pcap
from emu.net.switch import DropReason, VirtualSwitch, tag_frame

A, B, C, D = (bytes.fromhex(f"5254000000{i:02x}") for i in (0xA, 0xB, 0xC, 0xD))
BCAST = b"\xff" * 6


def eth(dst: bytes, src: bytes, payload: bytes = b"status") -> bytes:
    return dst + src + b"\x88\xb5" + payload.ljust(46, b"\0")


class Sink:
    """A port endpoint that records what it receives (and can refuse)."""

    def __init__(self, accept: bool = True):
        self.frames: list[bytes] = []
        self.accept = accept

    def __call__(self, frame: bytes) -> bool:
        if self.accept:
            self.frames.append(frame)
        return self.accept


def make(*vlans: int):
    sw = VirtualSwitch()
    sinks = []
    for i, vlan in enumerate(vlans):
        s = Sink()
        sinks.append(s)
        sw.add_port(f"p{i}", s, vlan)
    return sw, sinks


def test_same_vlan_delivery_is_intact():
    sw, (a, b) = make(1, 1)
    f = eth(B, A, bytes(range(256)) * 4)
    r = sw.ingress(0, f)
    assert b.frames == [f] and a.frames == []
    assert r.delivered == (1,) and r.drop is None


def test_flood_stays_in_vlan_and_never_returns_to_sender():
    sw, (a, b, c, d) = make(10, 10, 20, 10)
    sw.ingress(0, eth(BCAST, A))
    assert a.frames == [] and c.frames == []
    assert len(b.frames) == 1 and len(d.frames) == 1


def test_unknown_unicast_floods_within_vlan_then_learning_targets_one_port():
    sw, (a, b, c) = make(1, 1, 1)
    sw.ingress(0, eth(B, A))  # B unknown: flood to 1 and 2
    assert (len(b.frames), len(c.frames)) == (1, 1)
    sw.ingress(1, eth(A, B))  # A learned on port 0: only port 0
    assert (len(a.frames), len(c.frames)) == (1, 1)
    sw.ingress(0, eth(B, A))  # B learned on port 1 now
    assert (len(b.frames), len(c.frames)) == (2, 1)
    assert sw.mac_table == {(1, A): 0, (1, B): 1}


def test_different_vlans_are_isolated_even_for_learned_unicast():
    sw, (a, b) = make(1, 2)
    sw.ingress(1, eth(A, B))
    sw.ingress(0, eth(B, A))
    assert a.frames == [] and b.frames == []
    assert sw.counters(0).dropped == {"vlan_isolated": 1}
    assert sw.counters(1).dropped == {"no_destination": 1}


def test_counters_in_out_and_drop_reasons():
    sw, (a, b, c) = make(1, 1, 2)
    sw.port(1).receive = Sink(accept=False)
    sw.ingress(0, eth(BCAST, A))  # to port 1, which refuses
    sw.ingress(0, b"\x01\x02")  # malformed
    sw.ingress(0, eth(BCAST, A, bytes(1600)))  # oversize
    sw.ingress(2, eth(BCAST, C))  # alone in VLAN 2
    sw.ingress(0, eth(A, A))  # to itself (A learned on port 0)
    assert sw.counters(0).frames_in == 4 and sw.counters(0).frames_out == 0
    assert sw.counters(0).dropped == {"malformed": 1, "oversize": 1, "same_port": 1}
    assert sw.counters(1).frames_out == 0 and sw.counters(1).dropped == {"refused": 1}
    assert sw.counters(2).frames_in == 1 and sw.counters(2).dropped == {"no_destination": 1}
    assert sw.counters(1).dropped_total == 1


def test_set_vlan_takes_effect_at_next_frame_and_back():
    sw, (app, mgmt) = make(1, 1)
    sw.ingress(0, eth(B, A))
    assert len(mgmt.frames) == 1
    assert sw.set_vlan("p0", 666) == 1  # quarantine
    for _ in range(3):
        sw.ingress(0, eth(B, A))
    assert len(mgmt.frames) == 1
    assert sw.counters(0).dropped == {"no_destination": 3}
    sw.set_vlan(0, 1)  # lifted
    sw.ingress(0, eth(B, A))
    assert len(mgmt.frames) == 2


def test_set_vlan_during_delivery_applies_to_the_next_frame_only():
    sw = VirtualSwitch()
    got: list[bytes] = []

    def quarantine_on_receive(frame: bytes) -> bool:
        got.append(frame)
        sw.set_vlan(0, 99)  # a trap handler moving the sender mid-delivery
        return True

    sw.add_port("app", Sink())
    sw.add_port("mgmt", quarantine_on_receive)
    sw.add_port("other", Sink())
    r = sw.ingress(0, eth(BCAST, A))
    assert r.delivered == (1, 2)  # the decision was taken when the frame entered
    assert sw.ingress(0, eth(BCAST, A)).drop is DropReason.NO_DESTINATION


def test_frames_sent_during_delivery_are_queued_in_order():
    sw = VirtualSwitch()
    order: list[str] = []
    echo_port = {}

    def echo(frame: bytes) -> bool:
        order.append("echo-rx")
        sw.ingress(echo_port["n"], frame[6:12] + B + frame[12:])  # reply at once
        order.append("echo-rx-done")
        return True

    a = Sink()
    sw.add_port("a", lambda f: (order.append("a-rx"), a(f))[1])
    echo_port["n"] = sw.add_port("echo", echo)
    sw.ingress(0, eth(B, A))
    assert order == ["echo-rx", "echo-rx-done", "a-rx"]
    assert a.frames[0][:6] == A


def test_moving_a_port_forgets_its_addresses():
    sw, (a, b, c) = make(1, 1, 1)
    sw.ingress(1, eth(A, B))
    assert (1, B) in sw.mac_table
    sw.set_vlan(1, 5)
    assert (1, B) not in sw.mac_table


def test_port_lookup_and_vlan_validation():
    sw, _ = make(1)
    with pytest.raises(EmuError):
        sw.add_port("p0", Sink())
    with pytest.raises(EmuError):
        sw.set_vlan(0, 4095)
    with pytest.raises(EmuError):
        sw.set_vlan(0, 0)
    with pytest.raises(EmuError):
        sw.port("nope")
    with pytest.raises(EmuError):
        sw.port(7)
    assert sw.vlan_of("p0") == 1


def test_deterministic_forwarding_and_snapshot():
    def run():
        sw, sinks = make(1, 2, 1, 2, 1)
        for i in range(50):
            src = bytes([0x52, 0x54, 0, 0, 0, i % 5])
            dst = BCAST if i % 3 == 0 else bytes([0x52, 0x54, 0, 0, 0, (i * 7) % 5])
            sw.ingress(i % 5, eth(dst, src, bytes([i])))
        return sw.snapshot(), [s.frames for s in sinks]

    assert run() == run()


def test_observers_see_every_frame():
    sw, _ = make(1, 1)
    seen = []
    sw.observers.append(seen.append)
    sw.ingress(0, eth(BCAST, A))
    sw.ingress(0, b"x")
    assert [r.drop for r in seen] == [None, DropReason.MALFORMED]
    assert seen[0].src == A and seen[0].dst == BCAST and seen[0].length == 60


def test_pcap_captures_ingress_frames_with_vlan_tag_and_virtual_time():
    writer, buf = memory_writer()
    clock = {"ns": 0}
    sw = VirtualSwitch(time_ns=lambda: clock["ns"], pcap=writer)
    sw.add_port("a", Sink(), 1)
    sw.add_port("b", Sink(), 1)
    f1, f2 = eth(B, A, b"one"), eth(B, A, b"two")
    clock["ns"] = 1_500_000_123
    sw.ingress(0, f1)
    sw.set_vlan(0, 99)
    clock["ns"] = 2_000_000_000
    sw.ingress(0, f2)  # dropped, still captured, in VLAN 99
    linktype, recs = read_pcap(buf.getvalue())
    assert linktype == 1
    assert [r.time_ns for r in recs] == [1_500_000_123, 2_000_000_000]
    assert recs[0].data == f1[:12] + b"\x81\x00\x00\x01" + f1[12:]
    assert recs[1].data == tag_frame(f2, 99) and recs[1].data[14:16] == b"\x00\x63"


def test_pcap_untagged_capture_is_the_wire_bytes():
    writer, buf = memory_writer()
    sw = VirtualSwitch(pcap=writer, tag_capture=False)
    sw.add_port("a", Sink())
    f = eth(BCAST, A)
    sw.ingress(0, f, time_ns=5)
    assert read_pcap(buf.getvalue())[1][0].data == f


# --- two NE2000s on the switch -----------------------------------------------------------------------

def _nic(sw: VirtualSwitch, name: str, mac: bytes, vlan: int) -> Ne2000:
    nic = Ne2000(mac=mac, name=name)
    port = sw.add_port(name, nic.receive, vlan)
    nic.on_transmit = sw.transmitter(port)
    s = nic.state
    # minimal driver programming through the register interface
    for off, val in ((0x00, CR.STP | CR.RD2), (0x0C, RCR.AB), (0x01, 0x46), (0x03, 0x46), (0x02, 0x80),
                     (0x00, CR.STP | CR.RD2 | CR.PS0), (0x07, 0x47), (0x00, CR.STA | CR.RD2)):
        nic.io_write(nic.iobase + off, 1, val)
    assert s.curpag == 0x47
    return nic


def _send(nic: Ne2000, data: bytes) -> None:
    io = nic.io_write
    b = nic.iobase
    for off, val in ((0x0A, len(data) & 0xFF), (0x0B, len(data) >> 8), (0x08, 0), (0x09, 0x40), (0x00, CR.STA | CR.RD1)):
        io(b + off, 1, val)
    for byte in data:
        io(b + 0x10, 1, byte)
    for off, val in ((0x04, 0x40), (0x05, len(data) & 0xFF), (0x06, len(data) >> 8), (0x00, CR.STA | CR.TXP | CR.RD2)):
        io(b + off, 1, val)


def test_two_nics_exchange_frames_then_quarantine_cuts_traffic():
    writer, buf = memory_writer()
    clock = {"ns": 0}
    sw = VirtualSwitch(time_ns=lambda: clock["ns"], pcap=writer)
    app = _nic(sw, "app", A, 1)
    mgmt = _nic(sw, "mgmt", B, 1)
    _send(mgmt, eth(BCAST, B, b"mgmt hello"))  # the switch learns B
    assert app.state.curpag == 0x48
    f = eth(B, A, b"app status ok")
    _send(app, f)
    assert mgmt.state.curpag == 0x48
    assert bytes(mgmt.state.mem[0x4704:0x4704 + len(f)]) == f
    sw.set_vlan("app", 666)
    _send(app, eth(B, A, b"app status tampered"))
    assert mgmt.state.curpag == 0x48
    assert sw.counters("app").frames_in == 2 and sw.counters("mgmt").frames_out == 1
    assert sw.counters("app").dropped == {"vlan_isolated": 1}
    sw.set_vlan("app", 1)
    clock["ns"] = 1000
    _send(app, eth(B, A, b"app status again"))
    assert mgmt.state.curpag == 0x49
    # the capture shows every frame at ingress, the quarantined one in VLAN 666
    _, recs = read_pcap(buf.getvalue())
    assert [int.from_bytes(r.data[14:16], "big") for r in recs] == [1, 1, 666, 1]
    assert recs[2].data == tag_frame(eth(B, A, b"app status tampered"), 666)
    assert recs[3].time_ns == 1000


def test_forward_result_as_dict_is_json_ready():
    import json

    sw, _ = make(1, 2)
    r = sw.ingress(0, eth(B, A))
    d = json.loads(json.dumps(r.as_dict()))
    assert d == {"time_ns": 0, "port": 0, "vlan": 1, "src": A.hex(), "dst": B.hex(), "length": 60,
                 "delivered": [], "refused": [], "drop": "no_destination"}


MACS = [bytes([0x52, 0x54, 0, 0, 0, i]) for i in range(6)] + [BCAST, bytes.fromhex("01005e000001")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("send"), st.integers(0, 3), st.sampled_from(MACS), st.integers(0, 5)),
    st.tuples(st.just("move"), st.integers(0, 3), st.sampled_from([1, 2, 3]), st.just(0)),
), max_size=60))
def test_property_no_leak_across_vlans_and_never_back_to_sender(ops):
    sw = VirtualSwitch()
    log: list[tuple[int, bytes]] = []
    for i in range(4):
        sw.add_port(f"p{i}", (lambda n: lambda f: (log.append((n, f)), True)[1])(i), 1 + i % 2)
    for op, port, mac, src in ops:
        if op == "move":
            sw.set_vlan(port, mac)
            continue
        log.clear()
        f = eth(mac, MACS[src], bytes([port]))
        vlans = {p.number: p.vlan for p in sw.ports}
        r = sw.ingress(port, f)
        receivers = [n for n, _ in log]
        assert port not in receivers
        assert all(vlans[n] == vlans[port] for n in receivers)
        assert all(frame == f for _, frame in log)
        assert receivers == sorted(set(receivers))
        assert tuple(receivers) == r.delivered
        if not receivers:
            assert r.drop is not None
    total_in = sum(p.counters.frames_in for p in sw.ports)
    assert total_in == sum(1 for op in ops if op[0] == "send")
