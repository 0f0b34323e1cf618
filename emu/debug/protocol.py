"""GDB remote serial protocol framing: ``$data#cs`` packets, acks, escaping, run-length encoding.

GDB manual, appendix E.1 "Overview": a packet is ``$`` + data + ``#`` + two lowercase hex digits of
the modulo-256 sum of the data characters. The receiver acks ``+`` or NAKs ``-`` (asks for a
retransmission) until ``QStartNoAckMode``. Binary data escapes ``#``, ``$``, ``}`` and ``*`` as
``}`` + (byte ^ 0x20). Run-length encoding ``X*n`` repeats ``X`` (n - 29) more times; ``n`` is
printable, not ``#``/``$``, and at most ``~``. A bare 0x03 byte outside a packet is a break-in.
"""
from __future__ import annotations

import re
import select
import socket
from collections import deque
from dataclasses import dataclass
from typing import Optional, Union

ESCAPE = 0x7D
"""``}``: the binary escape character."""
RLE_MARK = 0x2A
"""``*``: introduces a run-length count."""
BREAK_IN = 0x03
"""The interrupt byte gdb sends (outside any packet) when the user presses Ctrl-C."""
_MUST_ESCAPE = frozenset(b"#$}*")
_RLE_FORBIDDEN_COUNTS = frozenset(b"#$+-")  # '#'/'$' per the manual; '+'/'-' would look like acks


class ProtocolError(ValueError):
    """A packet whose framing or encoding is invalid (bad escape, bad run length, bad hex)."""


class ConnectionClosed(Exception):
    """The peer closed the connection (or it broke)."""


def checksum(data: bytes) -> int:
    """Modulo-256 sum of the packet's data characters (E.1)."""
    return sum(data) & 0xFF


def escape_binary(data: bytes) -> bytes:
    """Escape ``#``, ``$``, ``}`` and ``*`` as ``}`` + (byte ^ 0x20) (E.1 "binary data")."""
    out = bytearray()
    for b in data:
        if b in _MUST_ESCAPE:
            out += bytes((ESCAPE, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape_binary(data: bytes) -> bytes:
    """Undo ``escape_binary``; ProtocolError on a trailing lone ``}``."""
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == ESCAPE:
            nxt = next(it, None)
            if nxt is None:
                raise ProtocolError("binary data ends with an escape character")
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


_RUN = re.compile(rb"(.)\1{3,}", re.S)   # 4 or more equal characters: the only places a run can start
_MAX_REPEATS = 126 - 29                    # the count character is repeats + 29, at most '~'


def rle_encode(data: bytes) -> bytes:
    """Run-length encode runs of 4+ equal characters, never starting a run after ``}`` (E.1)."""
    out = bytearray()
    pos = 0
    for m in _RUN.finditer(data):
        start, end = m.span()
        out += data[pos:start]
        c = data[start]
        i = start
        while i < end:
            repeats = min(end - i, 1 + _MAX_REPEATS) - 1
            # never run-length the character right after an escape, nor encode an escape itself
            if repeats >= 3 and c != ESCAPE and not (out and out[-1] == ESCAPE):
                while repeats + 29 in _RLE_FORBIDDEN_COUNTS:
                    repeats -= 1
                out += bytes((c, RLE_MARK, repeats + 29))
                i += repeats + 1
            else:
                out.append(c)
                i += 1
        pos = end
    out += data[pos:]
    return bytes(out)


def rle_decode(data: bytes) -> bytes:
    """Expand ``X*n`` runs; ProtocolError on a ``*`` with nothing before it or a bad count."""
    if RLE_MARK not in data:
        return data
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b == RLE_MARK:
            if not out or i + 1 >= n:
                raise ProtocolError("run-length marker without a character or a count")
            count = data[i + 1]
            if count < 32 or count > 126 or count in b"#$":
                raise ProtocolError(f"invalid run-length count {count:#x}")
            out += bytes((out[-1],)) * (count - 29)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


def frame(payload: bytes, rle: bool = True) -> bytes:
    """A complete packet ``$payload#cs`` (payload run-length encoded when ``rle``)."""
    body = rle_encode(payload) if rle else payload
    return b"$" + body + b"#" + b"%02x" % checksum(body)


def hex_decode(text: bytes) -> bytes:
    """Bytes from an even-length hex string; ProtocolError otherwise."""
    try:
        if len(text) % 2:
            raise ValueError
        return bytes.fromhex(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(f"bad hex data {text[:32]!r}") from None


def parse_hex_int(text: bytes, limit: int = 1 << 64) -> int:
    """A hex number (no prefix, no sign) below ``limit``; ProtocolError otherwise."""
    if not text or len(text) > 32 or any(c not in b"0123456789abcdefABCDEF" for c in text):
        raise ProtocolError(f"bad hex number {text[:32]!r}")
    value = int(text, 16)
    if value >= limit:
        raise ProtocolError(f"number {value:#x} out of range")
    return value


@dataclass(frozen=True)
class Packet:
    """A received ``$...#cs`` packet: raw ``data`` (not yet run-length decoded) and whether its checksum held."""

    data: bytes
    checksum_ok: bool
    overflow: bool = False
    """True when the packet was longer than the reader keeps; ``data`` then holds only its start."""


@dataclass(frozen=True)
class Ack:
    """A ``+`` from the peer."""


@dataclass(frozen=True)
class Nak:
    """A ``-`` from the peer: retransmit the last packet."""


@dataclass(frozen=True)
class BreakIn:
    """A 0x03 byte outside a packet."""


Event = Union[Packet, Ack, Nak, BreakIn]


class PacketReader:
    """Incremental parser: feed raw bytes, get ``Packet``/``Ack``/``Nak``/``BreakIn`` events.

    Robust to junk: bytes outside packets other than ``+ - 0x03`` are ignored; a ``$`` inside
    a packet abandons the unfinished one (data never holds a raw ``$``); a packet longer than
    ``max_size`` is consumed to its ``#cs`` but only its first ``max_size`` bytes are kept.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.events: deque[Event] = deque()
        self._state = 0  # 0 idle, 1 in data, 2 first checksum digit, 3 second digit
        self._data = bytearray()
        self._sum = 0
        self._overflow = False
        self._cs = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Parse ``chunk`` and append the complete events to ``events``."""
        for b in chunk:
            if self._state == 0:
                if b == 0x24:  # '$'
                    self._start()
                elif b == 0x2B:
                    self.events.append(Ack())
                elif b == 0x2D:
                    self.events.append(Nak())
                elif b == BREAK_IN:
                    self.events.append(BreakIn())
            elif self._state == 1:
                if b == 0x24:
                    self._start()
                elif b == 0x23:  # '#'
                    self._state = 2
                    self._cs.clear()
                else:
                    self._sum = (self._sum + b) & 0xFF
                    if len(self._data) < self.max_size:
                        self._data.append(b)
                    else:
                        self._overflow = True
            else:
                if b == 0x24:  # a new packet instead of a checksum digit: the old one was truncated
                    self._start()
                    continue
                self._cs.append(b)
                if self._state == 2:
                    self._state = 3
                else:
                    try:
                        ok = int(self._cs.decode("ascii"), 16) == self._sum and all(
                            c in b"0123456789abcdefABCDEF" for c in self._cs)
                    except (ValueError, UnicodeDecodeError):
                        ok = False
                    self.events.append(Packet(bytes(self._data), ok, self._overflow))
                    self._state = 0

    def _start(self) -> None:
        self._state = 1
        self._data.clear()
        self._sum = 0
        self._overflow = False


class Connection:
    """One gdb connection over a stream socket: ack mode, retransmission, pending events."""

    def __init__(self, sock: socket.socket, max_size: int, rle: bool = True) -> None:
        self.sock = sock
        self.reader = PacketReader(max_size)
        self.ack_mode = True
        self.rle = rle
        self._last_sent: Optional[bytes] = None
        self.listener: Optional[socket.socket] = None
        """A listening socket whose further clients are refused (closed at once) while we serve."""
        self.refused = 0
        self.sent_naks = 0
        self.retransmissions = 0

    def recv_some(self) -> None:
        """Block for more bytes from the socket and parse them; ConnectionClosed at EOF."""
        while self.listener is not None:
            try:
                readable, _, _ = select.select([self.sock, self.listener], [], [])
            except (OSError, ValueError):
                break
            if self.sock in readable:
                break
            try:
                extra, _ = self.listener.accept()
                extra.close()
                self.refused += 1
            except OSError:
                pass
        try:
            chunk = self.sock.recv(65536)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from None
        if not chunk:
            raise ConnectionClosed("peer closed the connection")
        self.reader.feed(chunk)

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are; ConnectionClosed if the socket is gone."""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from None

    def send_packet(self, payload: bytes) -> None:
        """Send one packet (kept for retransmission while in ack mode)."""
        pkt = frame(payload, self.rle)
        self._last_sent = pkt if self.ack_mode else None
        self.send_raw(pkt)

    def next_packet(self) -> Packet:
        """Block until a packet with a good checksum arrives, ack it and return it (data still raw).

        ``-`` retransmits the last packet; ``+`` and stray 0x03 bytes (the target is stopped)
        are dropped; a bad checksum is NAKed in ack mode and silently dropped in no-ack mode
        (the transport is then reliable, as E.1 assumes).
        """
        while True:
            while not self.reader.events:
                self.recv_some()
            ev = self.reader.events.popleft()
            if isinstance(ev, Nak):
                if self._last_sent is not None:
                    self.retransmissions += 1
                    self.send_raw(self._last_sent)
                continue
            if not isinstance(ev, Packet):
                continue
            if not ev.checksum_ok:
                if self.ack_mode:
                    self.sent_naks += 1
                    self.send_raw(b"-")
                continue
            if self.ack_mode:
                self.send_raw(b"+")
            self._last_sent = None
            return ev
