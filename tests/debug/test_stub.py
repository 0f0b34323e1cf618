"""The stub's packets against the fake target over a socketpair (GDB manual appendix E)."""
from __future__ import annotations

import io
import socket
import threading
import xml.etree.ElementTree as ET
from typing import Iterator

import pytest

from emu import EmuError
from emu.debug.gdbstub import GdbServer, SessionEnd, parse_listen_address, serve_gdb
from emu.debug.target import BreakKind, DebugTarget
from emu.debug.protocol import checksum, rle_decode
from emu.debug.targetxml import G_PACKET_SIZE, REGISTERS, decode_registers
from tests.debug.client import StubClient, quiet_stub
from tests.debug.fake_target import FakeTarget

# 0x1000 nop; inc eax; inc ebx; mov eax,[0x2004]; inc eax; mov [0x2000],eax; out 0x80,al; jmp $
PROGRAM = bytes.fromhex("904043a1042000" "0040a300200000e680ebfe")


def make_target(threads: int = 1) -> FakeTarget:
    t = FakeTarget(entries=[0x1000 + 0x100 * i for i in range(threads)])
    t.load(0x1000, PROGRAM)
    t.load(0x1100, bytes.fromhex("41ebfd"))  # guest 2: inc ecx; jmp back
    t.load(0x2004, (0x1234).to_bytes(4, "little"))
    return t


@pytest.fixture
def target() -> FakeTarget:
    return make_target()


@pytest.fixture
def client(target: FakeTarget) -> Iterator[StubClient]:
    stub, errors = quiet_stub(target)
    c = StubClient(stub)
    c.cmd(b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
    yield c
    c.finish()
    assert errors.getvalue() == ""


def regs_of(reply: bytes) -> dict[str, int]:
    return decode_registers(bytes.fromhex(reply.decode()))


def test_fake_satisfies_the_protocol() -> None:
    """The DebugTarget protocol is satisfied by the fake (runtime_checkable)."""
    assert isinstance(make_target(), DebugTarget)


def test_qsupported_advertises_features(target: FakeTarget) -> None:
    stub, _ = quiet_stub(target)
    c = StubClient(stub)
    reply = c.cmd(b"qSupported:swbreak+;hwbreak+")
    features = reply.split(b";")
    assert b"PacketSize=4000" in features
    for f in (b"qXfer:features:read+", b"swbreak+", b"hwbreak+", b"QStartNoAckMode+"):
        assert f in features
    c.finish()


def test_target_xml_matches_g_packet(client: StubClient) -> None:
    """target.xml read in small chunks ('m' then 'l'), its registers in order, sizes summing to the g reply."""
    doc = b""
    while True:
        reply = client.cmd(b"qXfer:features:read:target.xml:%x,40" % len(doc))
        assert reply[:1] in (b"m", b"l")
        doc += reply[1:]  # no escapes needed in this document ($#}* absent)
        if reply[:1] == b"l":
            break
    root = ET.fromstring(doc)
    assert root.findtext("architecture") == "i386"
    feature = root.find("feature")
    assert feature is not None and feature.get("name") == "org.gnu.gdb.i386.core"
    regs = feature.findall("reg")
    assert [r.get("name") for r in regs] == [r.name for r in REGISTERS]
    names = [r.get("name") for r in regs]
    assert names[:16] == ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
                          "cs", "ss", "ds", "es", "fs", "gs"]
    assert names[16:24] == [f"st{i}" for i in range(8)]
    assert names[24:] == ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"]
    total_bits = sum(int(r.get("bitsize", "0")) for r in regs)
    g = client.cmd(b"g")
    assert len(g) * 4 == total_bits == G_PACKET_SIZE * 8
    assert client.cmd(b"qXfer:features:read:other.xml:0,100") == b"E01"
    assert client.cmd(b"qXfer:memory-map:read::0,100") == b""


def test_halt_reason_and_registers(client: StubClient, target: FakeTarget) -> None:
    assert client.cmd(b"?") == b"T05thread:1;"
    regs = regs_of(client.cmd(b"g"))
    assert regs["eip"] == 0x1000 and regs["esp"] == 0x7F00 and regs["cs"] == 8 and regs["st0"] == 0
    assert client.cmd(b"p8") == b"00100000"
    assert client.cmd(b"p10") == b"00" * 10  # st0: 80 bits of zero
    assert client.cmd(b"p20") == b"E01"  # no register 32
    assert client.cmd(b"pzz") == b"E22"


def test_register_writes(client: StubClient, target: FakeTarget) -> None:
    assert client.cmd(b"P0=78563412") == b"OK"
    assert target.cpus[1].regs["eax"] == 0x12345678
    assert client.cmd(b"P0=7856") == b"E22"  # wrong width
    assert client.cmd(b"P18=01000000") == b"E01"  # fctrl: the fake refuses
    g = bytearray(bytes.fromhex(client.cmd(b"g").decode()))
    g[12:16] = (0xCAFE).to_bytes(4, "little")  # ebx
    target.calls.clear()
    assert client.cmd(b"G" + g.hex().encode()) == b"OK"
    assert target.cpus[1].regs["ebx"] == 0xCAFE
    assert [c for c in target.calls if c.startswith("write_register")] == ["write_register 1 ebx 0xcafe"]
    assert client.cmd(b"G" + g[:-1].hex().encode()) == b"E22"
    assert client.cmd(b"G" + g.hex().encode()[:-1]) == b"E22"


def test_memory_read_write(client: StubClient, target: FakeTarget) -> None:
    assert client.cmd(b"m1000,4") == b"904043a1"
    assert client.cmd(b"M3000,4:deadbeef") == b"OK"
    assert target.memory[0x3000:0x3004] == bytes.fromhex("deadbeef")
    data = bytes([0x24, 0x23, 0x7D, 0x2A, 0x00, 0x03])
    escaped = b"".join(bytes([0x7D, b ^ 0x20]) if b in b"$#}*" else bytes([b]) for b in data)
    assert client.cmd(b"X3010,6:" + escaped) == b"OK"
    assert target.memory[0x3010:0x3016] == data
    assert client.cmd(b"X3010,0:") == b"OK"  # gdb's probe for X support
    assert client.cmd(b"X3010,5:" + escaped) == b"E22"  # length mismatch
    assert client.cmd(b"M3000,4:dead") == b"E22"
    assert client.cmd(b"M3000,2:zzzz") == b"E22"
    assert client.cmd(b"m20000,4") == b"E01"  # outside the fake's 64 KiB
    assert client.cmd(b"mfffe,4") == b"0000"  # partial read: the mapped prefix
    assert client.cmd(b"mffffffff,2") == b"E01"  # past 4 GiB
    assert client.cmd(b"M20000,1:00") == b"E01"
    assert client.cmd(b"m1000") == b"E22"
    assert client.cmd(b"m1000,0") == b"E22"
    big = client.cmd(b"m0,100000")  # capped to what fits in a packet
    assert 0 < len(big) <= 0x4000 and big == target.memory[:len(big) // 2].hex().encode()


def test_step_and_continue_to_breakpoints(client: StubClient, target: FakeTarget) -> None:
    assert client.cmd(b"s") == b"T05thread:1;"
    assert target.cpus[1].regs["eip"] == 0x1001
    assert client.cmd(b"vCont?") == b"vCont;c;C;s;S"
    assert client.cmd(b"vCont;s:1") == b"T05thread:1;"
    assert target.cpus[1].regs["eip"] == 0x1002 and target.cpus[1].regs["eax"] == 1
    assert client.cmd(b"Z0,1008,1") == b"OK"
    assert client.cmd(b"c") == b"T05thread:1;swbreak:;"
    assert target.cpus[1].regs["eip"] == 0x1008
    assert client.cmd(b"z0,1008,1") == b"OK"
    assert client.cmd(b"Z1,1002,1") == b"OK"
    assert client.cmd(b"c1000") == b"T05thread:1;hwbreak:;"  # c with an address restarts there
    assert target.cpus[1].regs["eip"] == 0x1002 and target.cpus[1].regs["eax"] == 0x1235


def test_resume_at_breakpoint_executes_it_first(client: StubClient, target: FakeTarget) -> None:
    """Continuing from a breakpoint address runs that instruction instead of stopping again at once."""
    assert client.cmd(b"Z0,1001,1") == b"OK"
    assert client.cmd(b"Z0,1002,1") == b"OK"
    assert client.cmd(b"vCont;c") == b"T05thread:1;swbreak:;"
    assert target.cpus[1].regs["eip"] == 0x1001
    assert client.cmd(b"vCont;c") == b"T05thread:1;swbreak:;"
    assert target.cpus[1].regs["eip"] == 0x1002


def test_watchpoints(client: StubClient, target: FakeTarget) -> None:
    assert client.cmd(b"Z3,2004,4") == b"OK"
    assert client.cmd(b"c") == b"T05thread:1;rwatch:2004;"
    assert target.cpus[1].regs["eip"] == 0x1008  # after the reading instruction
    assert client.cmd(b"z3,2004,4") == b"OK"
    assert client.cmd(b"Z2,2002,2") == b"OK"  # overlaps the 4-byte store at 0x2000
    assert client.cmd(b"c") == b"T05thread:1;watch:2002;"
    assert target.cpus[1].regs["eip"] == 0x100E
    assert client.cmd(b"z2,2002,2") == b"OK"
    assert client.cmd(b"Z4,2000,1") == b"OK"
    target.cpus[1].regs["eip"] = 0x1003  # the read of 0x2004 does not touch it, the store to 0x2000 does
    assert client.cmd(b"c") == b"T05thread:1;awatch:2000;"
    assert target.cpus[1].regs["eip"] == 0x100E
    assert target.breakpoints == {(BreakKind.ACCESS, 0x2000, 1)}


def test_unsupported_breakpoint_kinds(client: StubClient, target: FakeTarget) -> None:
    target.supported = {BreakKind.SOFTWARE}
    assert client.cmd(b"Z1,1000,1") == b""  # empty: not supported, gdb falls back
    assert client.cmd(b"Z2,2000,4") == b""
    assert client.cmd(b"Z5,2000,4") == b""
    assert client.cmd(b"Z0,1000") == b"E22"
    assert client.cmd(b"Z0,100000000,1") == b"E01"


def test_stop_reasons_need_client_support(target: FakeTarget) -> None:
    """swbreak:/hwbreak: are only sent to a gdb that announced them in qSupported."""
    stub, _ = quiet_stub(target)
    c = StubClient(stub)
    c.cmd(b"qSupported:multiprocess+")
    assert c.cmd(b"Z0,1008,1") == b"OK"
    assert c.cmd(b"c") == b"T05thread:1;"
    c.finish()


def test_break_in_while_running(client: StubClient, target: FakeTarget) -> None:
    """0x03 while the guest spins makes resume() return: a SIGINT stop."""
    target.cpus[1].regs["eip"] = 0x1010  # jmp $
    client.send(b"vCont;c")
    assert client.read_ack() == b"+"
    assert target.spinning.wait(10)
    client.send_raw(b"\x03")
    assert client.read_packet() == b"T02thread:1;"
    assert target.cpus[1].regs["eip"] == 0x1010
    assert client.cmd(b"?") == b"T02thread:1;"
    client.send_raw(b"\x03")  # a break-in while stopped is ignored
    assert client.cmd(b"qC") == b"QC1"


def test_disconnect_while_running_stops_the_guest(target: FakeTarget) -> None:
    stub, _ = quiet_stub(target)
    c = StubClient(stub)
    target.cpus[1].regs["eip"] = 0x1010
    c.send(b"c")
    assert c.read_ack() == b"+"
    assert target.spinning.wait(10)
    assert c.finish() is SessionEnd.DISCONNECTED
    assert not target.running.is_set()


def test_exit_status(client: StubClient, target: FakeTarget) -> None:
    target.load(0x1000, bytes.fromhex("404040f4"))
    assert client.cmd(b"c") == b"W03"
    assert client.cmd(b"?") == b"W03"
    assert client.cmd(b"g") == b"E03"
    assert client.cmd(b"c") == b"E03"
    assert client.cmd(b"T1") == b"E02"


def test_threads(target: FakeTarget) -> None:
    target = make_target(threads=2)
    stub, errors = quiet_stub(target)
    c = StubClient(stub)
    c.cmd(b"qSupported:swbreak+")
    assert c.cmd(b"qfThreadInfo") == b"m1,2"
    assert c.cmd(b"qsThreadInfo") == b"l"
    assert c.cmd(b"qC") == b"QC1"
    assert c.cmd(b"qAttached") == b"1"
    assert c.cmd(b"qAttached:1") == b"1"
    assert c.cmd(b"T2") == b"OK"
    assert c.cmd(b"T3") == b"E02"
    assert c.cmd(b"Tzz") == b"E22"
    assert bytes.fromhex(c.cmd(b"qThreadExtraInfo,2").decode()) == b"guest 2 fake"
    assert c.cmd(b"qThreadExtraInfo,7") == b"E02"
    assert c.cmd(b"Hg2") == b"OK"
    assert regs_of(c.cmd(b"g"))["eip"] == 0x1100
    assert c.cmd(b"Hg5") == b"E02"
    assert c.cmd(b"Hx1") == b"E22"
    # step guest 2 while guest 1 stays put
    assert c.cmd(b"vCont;s:2") == b"T05thread:2;"
    assert target.cpus[2].regs["eip"] == 0x1101 and target.cpus[1].regs["eip"] == 0x1000
    # step guest 1, continue guest 2: guest 1 stops after one instruction, guest 2 ran too
    assert c.cmd(b"vCont;s:1;c") == b"T05thread:1;"
    assert target.cpus[1].regs["eip"] == 0x1001 and target.cpus[2].icount == 2
    assert c.cmd(b"vCont;s:9") == b"E02"
    assert c.cmd(b"vCont;x") == b"E22"
    assert c.cmd(b"vCont;C") == b"E22"
    assert c.cmd(b"vCont") == b""  # unknown v packet
    # legacy s with Hc: steps only that guest
    assert c.cmd(b"Hc2") == b"OK"
    assert c.cmd(b"s") == b"T05thread:2;"
    assert c.cmd(b"S05") == b"T05thread:2;"
    c.finish()
    assert errors.getvalue() == ""


def test_monitor(client: StubClient, target: FakeTarget) -> None:
    out = client.monitor("help")
    assert out == target.commands.dispatch("help")
    assert "icount" in out and "break-exit IO_INSTRUCTION port=P" in out
    assert client.monitor("icount") == "guest 1: 0\n"
    assert "unknown monitor command 'bogus'" in client.monitor("bogus")
    assert client.monitor("break-exit IO_INSTRUCTION port=0x80") == "will stop on IO_INSTRUCTION port=0x80\n"
    assert client.cmd(b"c") == b"T05thread:1;"
    assert target.cpus[1].regs["eip"] == 0x1010
    assert client.monitor("info ports") == "port 0x80 <- 0x35\n"
    assert client.cmd(b"qRcmd,zz") == b"E22"


def test_long_monitor_output_is_split(target: FakeTarget) -> None:
    stub, _ = quiet_stub(target, packet_size=0x100)
    target.commands.add("long", "long", "a long text", lambda args: "x" * 1000)
    c = StubClient(stub)
    assert c.monitor("long") == "x" * 1000 + "\n"
    c.finish()


def test_unknown_and_ignored_packets(client: StubClient) -> None:
    for pkt in (b"qTStatus", b"qOffsets", b"vMustReplyEmpty", b"!", b"qTfV", b"QThreadEvents:1", b"vFile:open:",
                b"Jfoo", b"qHostInfo", b"i", b"bc", b"vAttach;1", b"qXfer:threads:read::0,100"):
        assert client.cmd(pkt) == b"", pkt
    assert client.cmd(b"qSymbol::") == b"OK"


def test_detach_removes_breakpoints(target: FakeTarget) -> None:
    stub, _ = quiet_stub(target)
    c = StubClient(stub)
    assert c.cmd(b"Z0,1008,1") == b"OK"
    assert c.cmd(b"Z2,2000,4") == b"OK"
    assert c.cmd(b"D") == b"OK"
    c.thread.join(5)
    assert c.session is SessionEnd.DETACHED
    assert target.breakpoints == set()
    c.finish()


def test_kill(target: FakeTarget) -> None:
    stub, _ = quiet_stub(target)
    c = StubClient(stub)
    c.send(b"k")
    assert c.read_ack() == b"+"
    c.thread.join(5)
    assert c.session is SessionEnd.KILLED and target.killed
    with pytest.raises((EOFError, ConnectionError)):
        c.read_packet()
    c.finish()


def test_vkill(target: FakeTarget) -> None:
    stub, _ = quiet_stub(target)
    c = StubClient(stub)
    assert c.cmd(b"vKill;1") == b"OK"
    c.thread.join(5)
    assert c.session is SessionEnd.KILLED and target.killed
    c.finish()


def test_bad_checksum_is_naked_then_retransmission_works(client: StubClient, target: FakeTarget) -> None:
    client.send_raw(b"$m1000,4#00")
    assert client.read_ack() == b"-"
    assert client.cmd(b"m1000,4") == b"904043a1"
    client.send_raw(b"$m1000,4#zz")  # non-hex checksum
    assert client.read_ack() == b"-"
    assert client.stub.conn.sent_naks == 2


def test_nak_from_client_makes_the_stub_retransmit(client: StubClient) -> None:
    client.send(b"m1000,4")
    assert client.read_ack() == b"+"
    first, ok = client.read_frame()
    assert ok and first == b"904043a1"
    client.send_raw(b"-")
    again, ok = client.read_frame()
    assert ok and again == first
    client.send_raw(b"+")
    assert client.cmd(b"?") == b"T05thread:1;"


def test_no_ack_mode(client: StubClient) -> None:
    assert client.cmd(b"QStartNoAckMode") == b"OK"
    client.ack_mode = False
    client.send(b"m1000,2")
    assert client.read_frame() == (b"9040", True)  # no '+' before the reply
    client.send_raw(b"$m1000,2#00")  # bad checksum: silently dropped in no-ack mode
    client.send(b"?")
    assert client.read_frame() == (b"T05thread:1;", True)


def test_run_length_encoding_both_ways(client: StubClient, target: FakeTarget) -> None:
    client.send(b"g")
    assert client.read_ack() == b"+"
    raw, ok = client.read_frame()
    client.send_raw(b"+")
    assert ok and b"*" in raw and len(raw) < G_PACKET_SIZE * 2  # compressed on the wire
    assert regs_of(rle_decode(raw))["eip"] == 0x1000
    assert client.cmd(b'M3000,4:ab0*"') == b"OK"  # '"' = 34: the '0' repeated 5 more times
    assert target.memory[0x3000:0x3004] == bytes.fromhex("ab000000")
    assert client.cmd(b"*m") == b"E22"  # a run marker with nothing before it


def test_oversized_packet_then_valid(target: FakeTarget) -> None:
    stub, errors = quiet_stub(target, packet_size=0x200)
    c = StubClient(stub)
    assert c.cmd(b"M3000,400:" + b"11" * 0x400) == b"E07"
    assert c.cmd(b"?") == b"T05thread:1;"
    assert target.memory[0x3000] == 0
    c.finish()
    assert errors.getvalue() == ""


def test_truncated_packet_and_junk_then_valid(client: StubClient) -> None:
    client.send_raw(b"garbage+++\x01$m1000,4")  # never finished
    assert client.cmd(b"?") == b"T05thread:1;"
    client.send_raw(b"$m1000,4#")  # truncated inside the checksum
    assert client.cmd(b"m1000,1") == b"90"


def test_target_bug_answers_e01_and_reports(target: FakeTarget) -> None:
    stub, errors = quiet_stub(target)

    def broken(tid: int) -> dict[str, int]:
        raise KeyError("oops")

    target.read_registers = broken  # type: ignore[method-assign]
    c = StubClient(stub)
    assert c.cmd(b"g") == b"E01"
    assert c.cmd(b"?") == b"T05thread:1;"
    c.finish()
    assert errors.getvalue().startswith("emu: gdb stub: target failed on b'g': KeyError")
    assert errors.getvalue().count("\n") == 1


def test_server_listens_on_loopback_and_announces(target: FakeTarget) -> None:
    with GdbServer() as server:
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        note = io.StringIO()
        server.announce(note)
        assert note.getvalue() == f"emu: gdb stub listening on 127.0.0.1:{port}\n"
        stub, _ = quiet_stub(target)
        result: dict[str, SessionEnd] = {}
        th = threading.Thread(target=lambda: result.setdefault("end", server.serve_one(stub, timeout=10)))
        th.start()
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        first.sendall(b"$?#3f")
        assert first.recv(100).startswith(b"+")
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        second.settimeout(10)
        assert second.recv(10) == b""  # refused while the first session runs: closed at once
        first.sendall(b"+$D#44")
        th.join(10)
        assert result["end"] is SessionEnd.DETACHED
        first.close()
        second.close()


def test_server_port_in_use() -> None:
    with GdbServer() as first:
        with pytest.raises(EmuError, match="cannot listen on 127.0.0.1"):
            GdbServer("127.0.0.1", first.address[1])


@pytest.mark.parametrize("text, expected", [
    ("1234", ("127.0.0.1", 1234)),
    (":1234", ("127.0.0.1", 1234)),
    ("0.0.0.0:99", ("0.0.0.0", 99)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:5", ("::1", 5)),
])
def test_parse_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "host:", "1:70000", "-1"])
def test_parse_listen_address_rejects(text: str) -> None:
    with pytest.raises(EmuError, match="--gdb"):
        parse_listen_address(text)


class _Announcements(io.StringIO):
    """A stderr stand-in that lets the test wait for a line."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        self.changed.set()
        return n


def test_serve_gdb_reconnects_until_detach(target: FakeTarget) -> None:
    """--gdb semantics: a gdb that just disconnects is replaced by the next; D ends serving."""
    note = _Announcements()
    result: dict[str, SessionEnd] = {}
    stub, errors = quiet_stub(target)
    th = threading.Thread(target=lambda: result.setdefault("end", serve_gdb(target, "127.0.0.1:0", stream=note,
                                                                            stub=stub)), daemon=True)
    th.start()
    assert note.changed.wait(10)
    line = note.getvalue()
    assert line.startswith("emu: gdb stub listening on 127.0.0.1:")
    port = int(line.strip().rsplit(":", 1)[1])
    first = socket.create_connection(("127.0.0.1", port), timeout=10)
    first.sendall(b"$g#67")
    assert first.recv(1) == b"+"
    first.close()
    second = socket.create_connection(("127.0.0.1", port), timeout=10)
    second.sendall(b"$D#44")
    th.join(10)
    assert result["end"] is SessionEnd.DETACHED
    assert "emu: gdb disconnected; waiting for the next one\n" in note.getvalue()
    second.close()
    assert errors.getvalue() == ""


def test_serve_gdb_bad_address(target: FakeTarget) -> None:
    with pytest.raises(EmuError, match="--gdb: bad port"):
        serve_gdb(target, "localhost:http")


def test_break_in_in_the_same_segment_as_continue(client: StubClient, target: FakeTarget) -> None:
    """'$c#63' immediately followed by 0x03 (one write): the guest still stops with SIGINT."""
    target.cpus[1].regs["eip"] = 0x1010  # jmp $: would spin forever without the break-in
    client.send_raw(b"$c#63\x03")
    assert client.read_ack() == b"+"
    assert client.read_packet() == b"T02thread:1;"


def test_second_client_refused_while_guest_runs(target: FakeTarget) -> None:
    """One client at a time, also while resume() runs: the newcomer is closed, the session goes on."""
    target.cpus[1].regs["eip"] = 0x1010  # jmp $
    with GdbServer() as server:
        stub, errors = quiet_stub(target)
        result: dict[str, SessionEnd] = {}
        th = threading.Thread(target=lambda: result.setdefault("end", server.serve_one(stub, timeout=10)))
        th.start()
        first = socket.create_connection(server.address, timeout=10)
        first.sendall(b"$c#63")
        assert first.recv(1) == b"+"
        assert target.spinning.wait(10)
        second = socket.create_connection(server.address, timeout=10)
        assert second.recv(10) == b""
        first.sendall(b"\x03")
        reply = b""
        while not reply.endswith(b"#%02x" % checksum(b"T02thread:1;")):
            reply += first.recv(100)
        assert reply == b"$T02thread:1;#%02x" % checksum(b"T02thread:1;")
        first.sendall(b"+$D#44")
        th.join(10)
        assert result["end"] is SessionEnd.DETACHED
        first.close()
        second.close()
        assert errors.getvalue() == ""


def test_packet_trace_on_stderr(target: FakeTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMU_GDB_TRACE", "1")
    stub, errors = quiet_stub(target)
    c = StubClient(stub)
    assert c.cmd(b"?") == b"T05thread:1;"
    c.finish()
    assert errors.getvalue().splitlines()[:2] == ["emu: gdb <- b'?'", "emu: gdb -> b'T05thread:1;'"]
