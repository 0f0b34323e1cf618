"""Trace file format: deterministic encoding, round trip, and one clear error for every kind of damage."""
from __future__ import annotations

import gzip

import pytest

from emu import EmuError
from emu.trace.format import MAGIC, TraceError, encode, make_event, split_event
from emu.trace.reader import TraceReader
from emu.trace.writer import TraceWriter

HEADER = {"format": 1, "emu_version": "0", "inputs": [], "guests": [], "config": {}}


def write_trace(path, events, end=True):
    with TraceWriter(path, HEADER) as w:
        for i, e in enumerate(events):
            w.write(make_event("console", i, "guest", e))
        if end:
            w.write(make_event("end", len(events), "guest", {"events": len(events) + 1}))
    return path


def test_encoding_is_canonical():
    a = encode({"b": 1, "a": [1, "x", None, True], "c": {"z": 1, "y": 2}})
    b = encode({"c": {"y": 2, "z": 1}, "a": [1, "x", None, True], "b": 1})
    assert a == b == b'{"a":[1,"x",null,true],"b":1,"c":{"y":2,"z":1}}\n'


def test_floats_and_bytes_are_refused():
    with pytest.raises(TypeError, match="float"):
        encode({"t": 1.5}, check=True)
    with pytest.raises(TypeError):
        encode({"t": b"x"}, check=True)


def test_event_fields_cannot_shadow_record_keys():
    with pytest.raises(ValueError):
        make_event("console", 1, "g", {"icount": 2})
    rec = make_event("console", 7, "g", {"byte": 65})
    assert split_event(rec) == ("console", 7, "g", {"byte": 65})


def test_round_trip_and_filters(tmp_path):
    path = write_trace(tmp_path / "t.trace", [{"byte": b} for b in range(10)])
    r = TraceReader(path)
    assert r.header == HEADER
    events = list(r)
    assert [e["byte"] for e in events[:-1]] == list(range(10))
    assert events[-1]["kind"] == "end"
    assert [e["icount"] for e in r.events(start=3, stop=5)] == [3, 4, 5]
    assert [e["kind"] for e in r.events(kinds=["end"])] == ["end"]
    assert list(r.events(guest="other")) == []
    assert r.check() == 11


def test_file_starts_with_magic_then_gzip_without_name_or_time(tmp_path):
    data = write_trace(tmp_path / "t.trace", [{"byte": 1}]).read_bytes()
    assert data.startswith(MAGIC)
    gz = data[len(MAGIC):]
    assert gz[:2] == b"\x1f\x8b"
    assert gz[3] == 0                      # FLG: no FNAME / FCOMMENT / FEXTRA
    assert gz[4:8] == b"\0\0\0\0"          # MTIME 0
    assert gzip.decompress(gz).count(b"\n") == 3


def test_same_records_same_bytes(tmp_path):
    a = write_trace(tmp_path / "a.trace", [{"byte": b} for b in range(100)]).read_bytes()
    b = write_trace(tmp_path / "b.trace", [{"byte": b} for b in range(100)]).read_bytes()
    assert a == b


def _one_line_error(path, match):
    with pytest.raises(TraceError) as info:
        TraceReader(path).check()
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert match in msg, msg
    assert isinstance(info.value, EmuError)


def test_bad_magic(tmp_path):
    p = tmp_path / "x.trace"
    p.write_bytes(b"\x7fELF" + bytes(100))
    _one_line_error(p, "bad magic")


def test_unsupported_version(tmp_path):
    p = tmp_path / "x.trace"
    good = write_trace(tmp_path / "g.trace", []).read_bytes()
    p.write_bytes(b"EMU-TRACE 2\n" + good[len(MAGIC):])
    _one_line_error(p, "version 2 is not supported")


@pytest.mark.parametrize("keep", [len(MAGIC), len(MAGIC) + 5, -9, -1])
def test_truncated(tmp_path, keep):
    good = write_trace(tmp_path / "g.trace", [{"byte": b} for b in range(200)]).read_bytes()
    p = tmp_path / "cut.trace"
    p.write_bytes(good[:keep])
    _one_line_error(p, "truncated")


def test_crc_failure(tmp_path):
    good = bytearray(write_trace(tmp_path / "g.trace", [{"byte": 5}]).read_bytes())
    good[-6] ^= 0xFF                       # inside the CRC-32 of the gzip trailer
    p = tmp_path / "crc.trace"
    p.write_bytes(bytes(good))
    _one_line_error(p, "CRC check failed")


def test_damaged_compressed_data(tmp_path):
    good = bytearray(write_trace(tmp_path / "g.trace", [{"byte": b % 7} for b in range(500)]).read_bytes())
    for offset in (len(MAGIC) + 12, len(good) // 2):
        bad = bytearray(good)
        bad[offset] ^= 0x55
        p = tmp_path / f"bad{offset}.trace"
        p.write_bytes(bytes(bad))
        with pytest.raises(TraceError, match="corrupted|truncated"):
            TraceReader(p).check()


def test_missing_end_record(tmp_path):
    p = write_trace(tmp_path / "noend.trace", [{"byte": 1}], end=False)
    _one_line_error(p, "no end record")


def test_not_a_file(tmp_path):
    with pytest.raises(TraceError, match="no such trace file"):
        TraceReader(tmp_path / "missing.trace")
    with pytest.raises(TraceError, match="directory"):
        TraceReader(tmp_path)


def test_any_damage_is_a_trace_error_or_harmless(tmp_path):
    """Flipped bytes or a cut anywhere in a real trace: either the file still reads the same, or one TraceError."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    good = write_trace(tmp_path / "g.trace", [{"byte": b % 13, "n": b} for b in range(300)]).read_bytes()
    expected = list(TraceReader(tmp_path / "g.trace"))
    path = tmp_path / "fuzz.trace"

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)), max_size=3),
           st.integers(0, len(good)))
    def check(flips, cut):
        data = bytearray(good[:cut] if cut < len(good) else good)
        for offset, mask in flips:
            if offset < len(data):
                data[offset] ^= mask
        path.write_bytes(bytes(data))
        try:
            events = list(TraceReader(path))
        except TraceError as exc:
            assert "\n" not in str(exc)
            return
        assert events == expected
    check()
