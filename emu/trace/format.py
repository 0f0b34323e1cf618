"""The emu trace file format, version 1 (documented in docs/traces.md).

Layout::

    EMU-TRACE 1\\n                      magic line: ASCII, format version in decimal
    <gzip member (RFC 1952), mtime 0, no name, level 6>
        {"emu_version": ..., "format": 1, ...}\\n      header record (one JSON object)
        {"guest": "guest", "icount": 123, "kind": "console", ...}\\n     event records
        ...
        {"kind": "end", ...}\\n                          last record

Every record is one JSON object on one line, encoded deterministically: sorted
keys, no spaces, ASCII only, integers/strings/booleans/null/lists/objects only
(no floats, no host times).  The gzip trailer's CRC-32 and length detect a
corrupted or truncated file.  The same inputs give a byte-identical file.
"""
from __future__ import annotations

import enum
import json
from typing import Any

from emu import EmuError

MAGIC_PREFIX = b"EMU-TRACE "
FORMAT_VERSION = 1
MAGIC = MAGIC_PREFIX + str(FORMAT_VERSION).encode() + b"\n"
"""First line of every version-1 trace file."""
COMPRESSLEVEL = 6
"""zlib level of the gzip stream (fixed: part of the byte-identical guarantee)."""
MAX_MAGIC_LINE = 32


class TraceError(EmuError):
    """A trace file that cannot be used (bad magic, unsupported version, corrupted, truncated): one line."""


class Kind(str, enum.Enum):
    """Event kinds (the ``kind`` field of a record); docs/traces.md lists each kind's fields."""

    VMEXIT = "vmexit"
    IO = "io"
    INTERRUPT = "interrupt"
    ATA_COMMAND = "ata_command"
    DISK_IO = "disk_io"
    DMA_START = "dma_start"
    DMA_COMPLETE = "dma_complete"
    CONSOLE = "console"
    FRAME = "frame"
    TRAP_STEP = "trap_step"
    VALIDATION = "validation"
    RESTRICTION = "restriction"
    CHECKPOINT = "checkpoint"
    GUEST_END = "guest_end"
    END = "end"


KINDS = frozenset(k.value for k in Kind)
RESERVED = frozenset({"kind", "icount", "guest"})
"""Keys every event record has; an event's own fields must not use them."""


def _check_value(value: Any, where: str) -> None:
    """Refuse what would make the encoding non-deterministic or lossy (floats, bytes, tuples as dict keys...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        raise TypeError(f"trace field {where}: floats are not allowed (use integers)")
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_value(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"trace field {where}: keys must be strings, got {k!r}")
            _check_value(v, f"{where}.{k}")
        return
    raise TypeError(f"trace field {where}: {type(value).__name__} is not a JSON value")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def encode(record: dict, check: bool = False) -> bytes:
    """One record as a deterministic JSON line (sorted keys, compact, ASCII); ``check`` validates the values."""
    if check:
        _check_value(record, "record")
    return _ENCODER.encode(record).encode("ascii") + b"\n"


def make_event(kind: str, icount: int, guest: str, fields: dict) -> dict:
    """The record of one event: ``kind``, ``icount``, ``guest`` and the event's own fields."""
    clash = RESERVED.intersection(fields)
    if clash:
        raise ValueError(f"event field(s) {sorted(clash)} clash with the record keys")
    record = dict(fields)
    record["kind"] = kind
    record["icount"] = icount
    record["guest"] = guest
    return record


def split_event(record: dict) -> tuple[str, int, str, dict]:
    """(kind, icount, guest, fields) of an event record."""
    fields = {k: v for k, v in record.items() if k not in RESERVED}
    return record["kind"], record["icount"], record["guest"], fields


def parse_magic(line: bytes, path: str) -> int:
    """The format version named by the magic line, or a TraceError."""
    if not line.startswith(MAGIC_PREFIX) or not line.endswith(b"\n"):
        raise TraceError(f"{path}: not an emu trace (bad magic)")
    text = line[len(MAGIC_PREFIX):-1]
    if not text.isdigit():
        raise TraceError(f"{path}: not an emu trace (bad magic)")
    version = int(text)
    if version != FORMAT_VERSION:
        raise TraceError(f"{path}: trace format version {version} is not supported (this emu reads version "
                         f"{FORMAT_VERSION})")
    return version


_IO_KEYS = frozenset({"op", "port", "size", "rip", "insn_len", "qualification", "value"})
_IO_TEMPLATE = ('{"guest":%s,"icount":%d,"insn_len":%s,"kind":"io","op":"%s","port":%d,"qualification":%d,'
                '"rip":%s,"size":%d,"value":%d}\n')
_GUEST_JSON: dict[str, str] = {}


def encode_io(icount: int, guest: str, fields: dict) -> bytes | None:
    """Fast path for the commonest record, byte-identical to :func:`encode`; None when it does not apply."""
    if fields.keys() != _IO_KEYS:
        return None
    op, rip, length = fields["op"], fields["rip"], fields["insn_len"]
    if op not in ("in", "out") or not (type(rip) is int or rip is None) or not (type(length) is int or length is None):
        return None
    port, size, qual, value = fields["port"], fields["size"], fields["qualification"], fields["value"]
    if not (type(icount) is int and type(port) is int and type(size) is int and type(qual) is int
            and type(value) is int):
        return None
    return io_line(icount, guest, op, port, size, rip, length, qual, value)


def io_line(icount: int, guest: str, op: str, port: int, size: int, rip: int | None, insn_len: int | None,
            qualification: int, value: int) -> bytes:
    """The encoded ``io`` record (ints must be ints, ``op`` "in"/"out"): what :func:`encode` would give."""
    g = _GUEST_JSON.get(guest)
    if g is None:
        g = _GUEST_JSON[guest] = _ENCODER.encode(guest)
    return (_IO_TEMPLATE % (g, icount, "null" if insn_len is None else insn_len, op, port, qualification,
                            "null" if rip is None else rip, size, value)).encode("ascii")
