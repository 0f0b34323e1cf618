"""Packet framing (GDB manual E.1): checksums, escaping, run-length encoding, the incremental reader."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.debug.protocol import (Ack, BreakIn, Nak, Packet, PacketReader, ProtocolError, checksum, escape_binary,
                                frame, hex_decode, parse_hex_int, rle_decode, rle_encode, unescape_binary)


@pytest.mark.parametrize("payload, wire", [
    # as GNU gdb 13.1 sends them (`set debug remote 1` log)
    (b"?", b"$?#3f"),
    (b"g", b"$g#67"),
    (b"vMustReplyEmpty", b"$vMustReplyEmpty#3a"),
    (b"QStartNoAckMode", b"$QStartNoAckMode#b0"),
    (b"Hc-1", b"$Hc-1#09"),
    (b"qfThreadInfo", b"$qfThreadInfo#bb"),
    (b"m1000,1", b"$m1000,1#8b"),
    (b"D", b"$D#44"),
])
def test_frame_golden(payload: bytes, wire: bytes) -> None:
    assert frame(payload, rle=False) == wire


def test_rle_manual_example() -> None:
    """E.1: "0* " means the same as "0000" (space = 32, 32 - 29 = 3 repeats)."""
    assert rle_decode(b"0* ") == b"0000"
    assert rle_encode(b"0000") == b"0* "


def test_rle_avoids_forbidden_counts() -> None:
    """Runs giving count '#' (6 repeats) or '$' (7) are shortened; '+'/'-' are avoided too."""
    for n in range(1, 200):
        enc = rle_encode(b"a" * n)
        assert b"#" not in enc and b"$" not in enc
        assert rle_decode(enc) == b"a" * n


def test_rle_decode_rejects() -> None:
    for bad in (b"*a", b"a*", b"a*\x1f", b"a*#", b"a*$", b"a*\x7f"):
        with pytest.raises(ProtocolError):
            rle_decode(bad)


def test_escape_golden() -> None:
    assert escape_binary(b"a$#}*b") == b"a}\x04}\x03}]}\nb"
    assert unescape_binary(b"a}\x04}\x03}]}\nb") == b"a$#}*b"
    with pytest.raises(ProtocolError):
        unescape_binary(b"abc}")


@given(st.binary(max_size=300))
def test_escape_round_trip(data: bytes) -> None:
    enc = escape_binary(data)
    assert not set(enc) & set(b"$#*") or all(enc[i - 1] == 0x7D for i, b in enumerate(enc) if b in b"$#*")
    assert unescape_binary(enc) == data


@given(st.binary(max_size=300))
def test_rle_round_trip_over_escaped_data(data: bytes) -> None:
    """What the stub sends (escape then RLE) decodes back (RLE-expand then unescape) to the same bytes."""
    wire = rle_encode(escape_binary(data))
    assert not set(wire) & set(b"$#")
    assert unescape_binary(rle_decode(wire)) == data


@given(st.text(alphabet="0123456789abcdef", max_size=400))
def test_rle_round_trip_hex(text: str) -> None:
    raw = text.encode()
    assert rle_decode(rle_encode(raw)) == raw
    assert len(rle_encode(raw)) <= len(raw)


def test_hex_helpers() -> None:
    assert hex_decode(b"00ff") == b"\x00\xff"
    assert parse_hex_int(b"1F") == 31
    for bad in (b"0", b"zz", b"\xff\xff"):
        with pytest.raises(ProtocolError):
            hex_decode(bad)
    for bad in (b"", b"-1", b"+1", b"0x10", b"g", b"1" * 33):
        with pytest.raises(ProtocolError):
            parse_hex_int(bad)
    with pytest.raises(ProtocolError):
        parse_hex_int(b"100", limit=0x100)


def _events(*chunks: bytes, max_size: int = 64) -> list[object]:
    r = PacketReader(max_size)
    for c in chunks:
        r.feed(c)
    return list(r.events)


def test_reader_events() -> None:
    assert _events(b"+$?#3f-\x03") == [Ack(), Packet(b"?", True), Nak(), BreakIn()]


def test_reader_split_across_chunks() -> None:
    assert _events(b"$m10", b"00,1", b"#", b"8", b"b") == [Packet(b"m1000,1", True)]


def test_reader_bad_and_non_hex_checksums() -> None:
    assert _events(b"$?#40") == [Packet(b"?", False)]
    assert _events(b"$?#+3") == [Packet(b"?", False)]
    assert _events(b"$?#3F") == [Packet(b"?", True)]  # upper-case digits are accepted


def test_reader_0x03_inside_a_packet_is_data() -> None:
    data = b"X0,1:\x03"
    assert _events(b"$" + data + b"#%02x" % checksum(data)) == [Packet(data, True)]


def test_reader_restarts_on_dollar() -> None:
    """A truncated packet is abandoned when the next one starts (data never contains a raw '$')."""
    assert _events(b"$m1000,4$?#3f") == [Packet(b"?", True)]
    assert _events(b"$m1000,4#$?#3f") == [Packet(b"?", True)]
    assert _events(b"$m1000,4#9$?#3f") == [Packet(b"?", True)]


def test_reader_ignores_junk_outside_packets() -> None:
    assert _events(b"hello\x00\xff#3f$?#3f") == [Packet(b"?", True)]


def test_reader_oversized() -> None:
    body = b"M0,10:" + b"ab" * 100
    ev = _events(b"$" + body + b"#%02x" % checksum(body), max_size=16)
    assert ev == [Packet(body[:16], True, overflow=True)]


@settings(max_examples=200)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=8))
def test_reader_chunking_does_not_matter(stream: bytes, pieces: int) -> None:
    whole = _events(stream)
    step = max(1, len(stream) // pieces)
    assert _events(*(stream[i:i + step] for i in range(0, len(stream), step))) == whole
