"""pcap writer: byte layout per pcap-savefile(5), parsed back, and read by tshark."""
from __future__ import annotations

import io
import struct
import subprocess

import pytest

from emu import EmuError
from emu.net.pcap import PcapWriter, memory_writer, read_pcap
from emu.net.switch import VirtualSwitch
from conftest import require_tool

A = bytes.fromhex("5254000000aa")
B = bytes.fromhex("5254000000bb")


def eth(dst: bytes, src: bytes, payload: bytes) -> bytes:
    return dst + src + b"\x08\x00" + payload.ljust(46, b"\0")


def test_global_and_record_headers_match_the_savefile_format():
    w, buf = memory_writer()
    w.write(b"\x01\x02\x03", 3_000_000_007)
    blob = buf.getvalue()
    # magic (ns), 2.4, thiszone 0, sigfigs 0, snaplen 65535, LINKTYPE_ETHERNET
    assert blob[:24] == bytes.fromhex("4d3cb2a1" "0200" "0400" "00000000" "00000000" "ffff0000" "01000000")
    assert struct.unpack_from("<IIII", blob, 24) == (3, 7, 3, 3)
    assert blob[40:] == b"\x01\x02\x03"


def test_snaplen_truncates_but_keeps_original_length():
    buf = io.BytesIO()
    w = PcapWriter(buf, snaplen=16)
    w.write(bytes(100), 0)
    _, recs = read_pcap(buf.getvalue())
    assert len(recs[0].data) == 16 and recs[0].orig_len == 100


def test_read_pcap_accepts_microsecond_big_endian_files():
    blob = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack(">IIII", 2, 500, 2, 2) + b"hi"
    linktype, recs = read_pcap(blob)
    assert linktype == 1 and recs[0].time_ns == 2_000_500_000 and recs[0].data == b"hi"


@pytest.mark.parametrize("blob", [b"", b"\0" * 24, struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1) + b"\0" * 8,
                                  struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 9, 9)])
def test_read_pcap_rejects_malformed_input(blob):
    with pytest.raises(EmuError):
        read_pcap(blob)


def test_unwritable_path_is_one_clear_error(tmp_path):
    with pytest.raises(EmuError, match="cannot write"):
        PcapWriter(tmp_path / "missing-dir" / "x.pcap")


def test_negative_timestamp_rejected():
    w, _ = memory_writer()
    with pytest.raises(EmuError):
        w.write(b"x", -1)


def _switch_capture(path):
    clock = {"ns": 0}
    with PcapWriter(path) as w:
        sw = VirtualSwitch(time_ns=lambda: clock["ns"], pcap=w)
        sw.add_port("app", lambda f: True, 1)
        sw.add_port("mgmt", lambda f: True, 1)
        for i in range(3):
            clock["ns"] = 1_000_000 * (i + 1)
            sw.ingress("app", eth(B, A, b"status %d" % i))
        sw.set_vlan("app", 666)
        clock["ns"] = 9_000_000
        sw.ingress("app", eth(B, A, b"quarantined"))
    return sw


def test_tshark_reads_switch_capture(tmp_path):
    require_tool("tshark")
    path = tmp_path / "net.pcap"
    _switch_capture(path)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "vlan.id", "-e", "eth.src", "-e", "eth.dst"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split("\n")
    rows = [line.split("\t") for line in out if line]
    assert [r[1] for r in rows] == ["1", "1", "1", "666"]
    assert all(r[2] == "52:54:00:00:00:aa" and r[3] == "52:54:00:00:00:bb" for r in rows)
    assert [float(r[0]) for r in rows] == pytest.approx([0.001, 0.002, 0.003, 0.009])
    # our reader agrees with tshark on the frame count and bytes
    _, recs = read_pcap(path)
    assert len(recs) == 4 and recs[3].data[14:16] == (666).to_bytes(2, "big")
