"""Property tests: malformed traffic never crashes or desynchronises the stub (issue 9, "Done when")."""
from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.debug.protocol import checksum
from tests.debug.client import StubClient, quiet_stub
from tests.debug.fake_target import FakeTarget

PACKET_SIZE = 0x100
STOP_REPLY = re.compile(rb"(T[0-9a-f]{2}thread:[0-9a-f]+;([a-z]+:[0-9a-f]*;)*|W[0-9a-f]{2}|X[0-9a-f]{2})")

# every command letter and query the stub knows, plus some it does not; never k/D/vKill (they end the session)
PREFIXES = [
    "?", "g", "G", "p", "P", "m", "M", "X", "c", "s", "C", "S", "Z", "z", "H", "Hg", "Hc", "T", "vCont;", "vCont?",
    "vCont;s:", "vCont;c:", "vCont;C", "qSupported:", "qXfer:features:read:target.xml:", "qXfer:", "qRcmd,",
    "qThreadExtraInfo,", "qfThreadInfo", "qsThreadInfo", "qC", "qAttached", "qSymbol::", "qTStatus", "qOffsets",
    "QStartNoAckMode", "vMustReplyEmpty", "!", "i", "R", "A", "b", "B", "t", "e", "J", "vFile:", "}",
]
ARG_CHARS = "0123456789abcdefABCDEF,:;=-+*}xyzp.\x00\x03\xff "

hex_numbers = st.one_of(st.integers(0, 0x20000), st.integers(0, 2**40), st.just(2**32 - 1)).map(lambda n: f"{n:x}")
args = st.lists(st.one_of(hex_numbers, st.text(ARG_CHARS, max_size=12)), max_size=5).map(
    lambda parts: "".join(parts))
bodies = st.builds(lambda p, a: (p + a).encode("latin-1"), st.sampled_from(PREFIXES), args).filter(
    lambda b: b"$" not in b and b"#" not in b)


def _framed(body: bytes) -> bytes:
    return b"$" + body + b"#%02x" % checksum(body)


junk_item = st.one_of(
    bodies.map(_framed),  # well framed, arbitrary content
    bodies.map(lambda b: b"$" + b + b"#%02x" % ((checksum(b) + 1) & 0xFF)),  # bad checksum
    bodies.map(lambda b: b"$" + b),  # truncated: no '#'
    bodies.map(lambda b: b"$" + b + b"#"),  # truncated inside the checksum
    st.integers(PACKET_SIZE, 3 * PACKET_SIZE).map(lambda n: _framed(b"M0," + b"1" * n)),  # oversized
    st.sampled_from([b"+", b"-", b"\x03", b"$", b"#", b"}", b"*"]),
    st.binary(max_size=24).filter(lambda b: b"$" not in b),  # line noise
)


def _sync_then_halt_reason(client: StubClient, marker: str) -> bytes:
    """Drain every reply to the junk up to our unique monitor command's output, then ask '?'."""
    client.send(b"qRcmd," + marker.encode().hex().encode())
    while True:
        raw, ok = client.read_frame()
        assert ok, f"stub sent a bad checksum on {raw!r}"
        if raw.startswith(b"O") and marker.encode().hex().encode() in raw:
            break
    raw, ok = client.read_frame()
    assert ok and raw == b"OK", raw
    client.send(b"?")
    raw, ok = client.read_frame()
    assert ok
    return raw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(junk_item, min_size=1, max_size=12))
def test_junk_never_desynchronises(junk: list[bytes]) -> None:
    target = FakeTarget(max_steps=2000)  # zeroed memory: opcode 00 stops at once with SIGILL
    stub, errors = quiet_stub(target, packet_size=PACKET_SIZE)
    client = StubClient(stub, timeout=5)
    for item in junk:
        client.send_raw(item)
    reply = _sync_then_halt_reason(client, "sync-after-junk")
    assert STOP_REPLY.fullmatch(reply), reply
    assert client.thread.is_alive()
    assert client.finish().value == "disconnected"
    assert errors.getvalue() == ""


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**33), st.integers(1, 0x200))
def test_memory_reads_outside_ram_get_e01(addr: int, length: int) -> None:
    """m of any range: the mapped prefix, or E01 when the first byte is unmapped or past 4 GiB."""
    target = FakeTarget()
    target.memory[:] = bytes(range(256)) * (len(target.memory) // 256)
    stub, errors = quiet_stub(target)
    client = StubClient(stub, timeout=5)
    reply = client.cmd(b"m%x,%x" % (addr, length))
    if addr + length > 2**32 or addr >= len(target.memory):
        assert reply == b"E01"
    else:
        end = min(addr + length, len(target.memory))
        assert reply == target.memory[addr:end].hex().encode()
    client.finish()
    assert errors.getvalue() == ""


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**33), st.binary(min_size=1, max_size=64))
def test_binary_writes_land_or_fail_cleanly(addr: int, data: bytes) -> None:
    """X with arbitrary bytes (escaped as gdb does): written exactly, or E01 outside RAM, nothing else."""
    target = FakeTarget()
    stub, errors = quiet_stub(target)
    client = StubClient(stub, timeout=5)
    escaped = b"".join(bytes([0x7D, b ^ 0x20]) if b in b"$#}*" else bytes([b]) for b in data)
    reply = client.cmd(b"X%x,%x:" % (addr, len(data)) + escaped)
    if addr + len(data) <= len(target.memory):
        assert reply == b"OK" and target.memory[addr:addr + len(data)] == data
    else:
        assert reply == b"E01" and target.memory == bytearray(len(target.memory))
    client.finish()
    assert errors.getvalue() == ""


SAFE_COMMANDS = [b"?", b"g", b"m1000,10", b"p8", b"qC", b"s", b"vCont;s:1", b"M3000,2:abcd", b"m3000,2",
                 b"qfThreadInfo", b"Z0,1002,1", b"z0,1002,1", b"P0=01000000", b"qXfer:features:read:target.xml:0,20"]
corruptions = st.sampled_from(["none", "checksum", "payload", "noise"])


def _session(commands: list[tuple[bytes, str]]) -> tuple[list[bytes], int]:
    """Replies to ``commands`` when each corrupted packet is NAKed and then sent again intact."""
    target = FakeTarget()
    target.load(0x1000, bytes.fromhex("90404343434343"))
    stub, errors = quiet_stub(target)
    client = StubClient(stub, timeout=5)
    replies = []
    naks = 0
    for payload, corruption in commands:
        if corruption == "checksum":
            client.send_raw(b"$" + payload + b"#%02x" % ((checksum(payload) + 0x11) & 0xFF))
        elif corruption == "payload":  # a byte changed in transit: the checksum no longer matches
            bad = bytes([payload[0] ^ 0x01]) + payload[1:]
            client.send_raw(b"$" + bad + b"#%02x" % checksum(payload))
        elif corruption == "noise":
            client.send_raw(b"\x00\xffnoise")
        if corruption in ("checksum", "payload"):
            assert client.read_ack() == b"-"
            naks += 1
        replies.append(client.cmd(payload))
    client.finish()
    assert errors.getvalue() == ""
    return replies, naks


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SAFE_COMMANDS), corruptions), min_size=1, max_size=10))
def test_nak_and_retransmission_give_the_same_conversation(commands: list[tuple[bytes, str]]) -> None:
    """A corrupted packet is NAKed and its retransmission answered exactly as if nothing had happened."""
    replies, naks = _session(commands)
    clean, _ = _session([(payload, "none") for payload, _ in commands])
    assert replies == clean
    assert naks == sum(1 for _, c in commands if c in ("checksum", "payload"))
