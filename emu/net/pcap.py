"""Classic libpcap capture files (the format tshark/Wireshark read), written with virtual timestamps.

Format: pcap-savefile(5) / draft-ietf-opsawg-pcap: a 24-byte global header
(magic, version 2.4, thiszone 0, sigfigs 0, snaplen, link type) then per frame a
16-byte record header (seconds, sub-second, captured length, original length)
and the bytes.  We write the nanosecond-resolution magic 0xA1B23C4D
(little-endian) and LINKTYPE_ETHERNET (1).  Timestamps are virtual nanoseconds
given by the caller (the guest clock), never host time.
"""
from __future__ import annotations

import enum
import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

from emu import EmuError

PCAP_MAGIC_USEC = 0xA1B2C3D4
"""Microsecond-resolution savefile magic."""
PCAP_MAGIC_NSEC = 0xA1B23C4D
"""Nanosecond-resolution savefile magic (what we write)."""
PCAP_VERSION = (2, 4)
"""Savefile version major.minor."""
LINKTYPE_ETHERNET = 1
"""IEEE 802.3 Ethernet link type (tcpdump.org link-layer header types)."""
DEFAULT_SNAPLEN = 65535
"""Largest frame kept whole."""

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
NS_PER_S = 1_000_000_000


class TsResolution(enum.Enum):
    """Sub-second unit of a savefile's record timestamps."""

    USEC = 1_000_000
    NSEC = 1_000_000_000


@dataclass(frozen=True)
class PcapRecord:
    """One captured frame: timestamp in nanoseconds, the bytes kept and the length on the wire."""

    time_ns: int
    data: bytes
    orig_len: int


class PcapWriter:
    """Appends Ethernet frames to a classic pcap file (nanosecond timestamps)."""

    def __init__(self, target: Union[str, Path, BinaryIO], snaplen: int = DEFAULT_SNAPLEN):
        if not 1 <= snaplen <= 0x40000:
            raise EmuError(f"pcap: snaplen {snaplen} out of range 1..262144")
        self.snaplen = snaplen
        self.frames = 0
        self._owned = False
        if isinstance(target, (str, Path)):
            try:
                self._fh: BinaryIO = open(target, "wb")
            except OSError as exc:
                raise EmuError(f"pcap: cannot write {target}: {exc.strerror}") from None
            self._owned = True
        else:
            self._fh = target
        self._fh.write(_GLOBAL.pack(PCAP_MAGIC_NSEC, *PCAP_VERSION, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def write(self, frame: bytes, time_ns: int) -> None:
        """Record ``frame`` seen at virtual time ``time_ns`` (nanoseconds, >= 0)."""
        if time_ns < 0:
            raise EmuError(f"pcap: negative timestamp {time_ns}")
        sec, nsec = divmod(time_ns, NS_PER_S)
        if sec > 0xFFFFFFFF:
            raise EmuError(f"pcap: timestamp {time_ns} ns does not fit a 32-bit seconds field")
        kept = bytes(frame[: self.snaplen])
        self._fh.write(_RECORD.pack(sec, nsec, len(kept), len(frame)) + kept)
        self.frames += 1

    def flush(self) -> None:
        """Push buffered records to the file."""
        self._fh.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        if self._fh.closed:
            return
        self._fh.flush()
        if self._owned:
            self._fh.close()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(source: Union[str, Path, bytes]) -> tuple[int, list[PcapRecord]]:
    """Parse a classic pcap file (either byte order, µs or ns): (link type, records); EmuError when malformed."""
    if isinstance(source, (bytes, bytearray)):
        blob = bytes(source)
        label = "pcap data"
    else:
        label = str(source)
        try:
            blob = Path(source).read_bytes()
        except OSError as exc:
            raise EmuError(f"pcap: cannot read {source}: {exc.strerror}") from None
    if len(blob) < _GLOBAL.size:
        raise EmuError(f"{label}: too short for a pcap header")
    magic_le = struct.unpack_from("<I", blob)[0]
    magic_be = struct.unpack_from(">I", blob)[0]
    if magic_le in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC):
        endian, magic = "<", magic_le
    elif magic_be in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC):
        endian, magic = ">", magic_be
    else:
        raise EmuError(f"{label}: not a classic pcap file (magic {magic_le:#010x})")
    unit = TsResolution.NSEC if magic == PCAP_MAGIC_NSEC else TsResolution.USEC
    _, major, minor, _, _, snaplen, linktype = struct.unpack_from(endian + "IHHiIII", blob)
    if (major, minor) != PCAP_VERSION:
        raise EmuError(f"{label}: unsupported pcap version {major}.{minor}")
    rec = struct.Struct(endian + "IIII")
    records: list[PcapRecord] = []
    pos = _GLOBAL.size
    while pos < len(blob):
        if pos + rec.size > len(blob):
            raise EmuError(f"{label}: truncated record header at offset {pos}")
        sec, sub, incl, orig = rec.unpack_from(blob, pos)
        pos += rec.size
        if pos + incl > len(blob):
            raise EmuError(f"{label}: truncated frame at offset {pos} ({incl} bytes announced)")
        ns = sec * NS_PER_S + sub * (NS_PER_S // unit.value)
        records.append(PcapRecord(ns, blob[pos:pos + incl], orig))
        pos += incl
    return linktype & 0xFFFF, records


def memory_writer() -> tuple[PcapWriter, io.BytesIO]:
    """A writer into a fresh in-memory buffer (tests, tools)."""
    buf = io.BytesIO()
    return PcapWriter(buf), buf


__all__ = [
    "LINKTYPE_ETHERNET",
    "PCAP_MAGIC_NSEC",
    "PCAP_MAGIC_USEC",
    "PcapRecord",
    "PcapWriter",
    "read_pcap",
    "memory_writer",
]
