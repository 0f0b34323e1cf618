"""The GDB remote serial protocol stub: serves one gdb at a time for a ``DebugTarget``.

Implements the all-stop subset of the GDB manual, appendix E ("GDB Remote Serial Protocol"):
E.2 packets ``? g G p P m M X c s C S vCont Z z H T k D``, E.3 stop replies (``T``, ``W``, ``X``
with ``thread:``, ``swbreak:``, ``hwbreak:``, ``watch:``/``rwatch:``/``awatch:``), E.4 general
queries (``qSupported``, ``qXfer:features:read``, ``qAttached``, ``qC``, ``qfThreadInfo``,
``qThreadExtraInfo``, ``qRcmd``, ``QStartNoAckMode``), E.8 interrupts (0x03 while running) and
E.11 no-ack mode. Unknown packets get the empty reply; malformed ones an ``E`` error.
"""
from __future__ import annotations

import enum
import os
import select
import socket
import sys
import threading
from typing import Callable, Mapping, Optional, TextIO

from emu import EmuError
from emu.debug.protocol import (BreakIn, ConnectionClosed, Connection, ProtocolError, escape_binary, hex_decode,
                                parse_hex_int, rle_decode, unescape_binary)
from emu.debug.target import (BreakKind, DebugTarget, DebugTargetError, ResumeAction, ResumeKind, StopEvent,
                              StopKind, StopReason)
from emu.debug.targetxml import G_PACKET_SIZE, REGISTERS, TARGET_XML, decode_registers, encode_registers

PACKET_SIZE = 0x4000
"""Largest packet we accept, advertised as ``PacketSize`` (E.4 qSupported); larger ones get ``E07``."""
ADDRESS_LIMIT = 1 << 32
"""Guest-virtual addresses are 32-bit: ranges reaching past 4 GiB get ``E01``."""
PAGE = 0x1000

E_ACCESS = b"E01"
"""Memory or register access failed (unmapped address, read-only register, target error)."""
E_THREAD = b"E02"
"""No such thread."""
E_EXITED = b"E03"
"""The target has exited: nothing to read, write or resume."""
E_TOO_BIG = b"E07"
"""The packet was longer than PacketSize (E2BIG)."""
E_INVALID = b"E22"
"""The packet is malformed (EINVAL): bad hex, missing fields, bad escape or run length."""


class SessionEnd(enum.Enum):
    """How a gdb session ended; the caller decides what the emulator does next."""

    DETACHED = "detached"
    """gdb sent ``D``: let the guests run on without a debugger."""
    KILLED = "killed"
    """gdb sent ``k``/``vKill``: ``target.kill()`` was called; stop the run."""
    DISCONNECTED = "disconnected"
    """The connection closed without ``D``/``k``: the guests stay stopped; serve again or stop."""
    EXITED = "exited"
    """The guest ended (``W``/``X`` was sent) and gdb went away: nothing left to debug."""


class _Malformed(Exception):
    """Internal: answer with the given E code."""

    def __init__(self, code: bytes = E_INVALID) -> None:
        super().__init__(code.decode())
        self.code = code


class _End(Exception):
    """Internal: the session ends after optionally sending ``reply``."""

    def __init__(self, how: SessionEnd, reply: Optional[bytes]) -> None:
        super().__init__(how.value)
        self.how = how
        self.reply = reply


class _BreakWatcher:
    """While ``resume`` runs: reads the socket in a thread, turns 0x03 into ``target.interrupt()``.

    Other bytes are parsed into the connection's event queue for the main loop; EOF also
    interrupts the target so a lost gdb never leaves ``resume`` running forever.
    """

    def __init__(self, conn: Connection, target: DebugTarget) -> None:
        self.conn = conn
        self.target = target
        self.eof = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="gdbstub-break-watcher", daemon=True)

    def __enter__(self) -> "_BreakWatcher":
        # a 0x03 that arrived right behind the resume packet (same segment) is already parsed
        pending = self.conn.reader.events
        if any(isinstance(ev, BreakIn) for ev in pending):
            kept = [ev for ev in pending if not isinstance(ev, BreakIn)]
            pending.clear()
            pending.extend(kept)
            self.target.interrupt()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        events = self.conn.reader.events
        listener = self.conn.listener
        watched: list[object] = [self.conn.sock, self._wake_r] + ([listener] if listener is not None else [])
        while True:
            readable, _, _ = select.select(watched, [], [])
            if self._wake_r in readable:
                return
            if listener is not None and listener in readable:
                try:
                    extra, _ = listener.accept()  # one client at a time: refuse the newcomer
                    extra.close()
                    self.conn.refused += 1
                except OSError:
                    pass
                if self.conn.sock not in readable:
                    continue
            try:
                chunk = self.conn.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                self.target.interrupt()
                return
            before = len(events)
            self.conn.reader.feed(chunk)
            new = [events.pop() for _ in range(len(events) - before)][::-1]
            for ev in new:
                if isinstance(ev, BreakIn):
                    self.target.interrupt()
                else:
                    events.append(ev)


class GdbStub:
    """Serves the remote protocol for one ``DebugTarget``; ``serve(sock)`` runs one session."""

    def __init__(self, target: DebugTarget, *, packet_size: int = PACKET_SIZE, rle: bool = True,
                 trace: Optional[Callable[[str], None]] = None,
                 errors: Optional[TextIO] = None) -> None:
        self.target = target
        self.packet_size = packet_size
        self.rle = rle
        self.errors = errors if errors is not None else sys.stderr
        if trace is None and os.environ.get("EMU_GDB_TRACE"):
            trace = self._trace_to_errors
        self.trace = trace
        first = target.threads()[0]
        self.last_stop: StopEvent = StopEvent.trap(first)
        self._reset_session()

    def _reset_session(self) -> None:
        self.g_thread = self.last_stop.thread
        self.c_thread = -1
        self.client_features: set[str] = set()
        self.inserted: set[tuple[BreakKind, int, int]] = set()

    # -- session ---------------------------------------------------------------------------------
    def serve(self, sock: socket.socket, listener: Optional[socket.socket] = None) -> SessionEnd:
        """Run one session on a connected socket until ``D``, ``k`` or EOF; closes ``sock``.

        ``listener``: the listening socket, whose extra connection attempts are refused while
        this session runs (one client at a time).
        """
        self._reset_session()
        conn = Connection(sock, max_size=self.packet_size, rle=self.rle)
        conn.listener = listener
        self.conn = conn
        try:
            while True:
                pkt = conn.next_packet()
                if pkt.overflow:
                    self._log(f"<- (oversized packet starting {pkt.data[:16]!r})")
                    conn.send_packet(E_TOO_BIG)
                    continue
                try:
                    data = rle_decode(pkt.data)
                except ProtocolError:
                    conn.send_packet(E_INVALID)
                    continue
                self._log(f"<- {data[:200]!r}")
                try:
                    reply = self.handle(data)
                except _End as end:
                    if end.reply is not None:
                        conn.send_packet(end.reply)
                    self._log(f"session ends: {end.how.value}")
                    return end.how
                if reply is not None:
                    self._log(f"-> {reply[:200]!r}")
                    conn.send_packet(reply)
        except ConnectionClosed:
            return SessionEnd.DISCONNECTED if self.last_stop.kind is StopKind.SIGNAL else SessionEnd.EXITED
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _trace_to_errors(self, text: str) -> None:
        print(f"emu: gdb {text}", file=self.errors, flush=True)

    def _log(self, text: str) -> None:
        if self.trace is not None:
            self.trace(text)

    def handle(self, data: bytes) -> Optional[bytes]:
        """The reply to one packet's data (None: no reply); raises ``_End`` to end the session."""
        try:
            return self._dispatch(data)
        except _Malformed as exc:
            return exc.code
        except ProtocolError:
            return E_INVALID
        except DebugTargetError:
            return E_ACCESS
        except (_End, ConnectionClosed):
            raise
        except Exception as exc:  # an adapter bug must not kill the session: report it once, answer E01
            print(f"emu: gdb stub: target failed on {data[:40]!r}: {type(exc).__name__}: {exc}", file=self.errors)
            return E_ACCESS

    def _dispatch(self, data: bytes) -> Optional[bytes]:
        if not data:
            return b""
        cmd = data[:1]
        body = data[1:]
        if cmd == b"q" or cmd == b"Q":
            return self._query(data)
        if cmd == b"v":
            return self._v_packet(data)
        handler = {
            b"?": self._halt_reason, b"g": self._read_all_registers, b"G": self._write_all_registers,
            b"p": self._read_register, b"P": self._write_register, b"m": self._read_memory,
            b"M": self._write_memory_hex, b"X": self._write_memory_binary, b"c": self._continue,
            b"s": self._step, b"C": self._continue_signal, b"S": self._step_signal,
            b"Z": self._insert_break, b"z": self._remove_break, b"H": self._set_thread,
            b"T": self._thread_alive, b"k": self._kill, b"D": self._detach,
        }.get(cmd)
        if handler is None:
            return b""
        return handler(body)

    # -- helpers ---------------------------------------------------------------------------------
    def _thread(self, which: int) -> int:
        """The thread a packet refers to: the selected one, or the last stopped one for 0/-1."""
        threads = self.target.threads()
        if which in threads:
            return which
        if self.last_stop.thread in threads:
            return self.last_stop.thread
        return threads[0]

    def _require_alive(self) -> None:
        if self.last_stop.kind is not StopKind.SIGNAL:
            raise _Malformed(E_EXITED)

    @staticmethod
    def _split(body: bytes, sep: bytes, count: int) -> list[bytes]:
        parts = body.split(sep, count - 1)
        if len(parts) != count:
            raise _Malformed()
        return parts

    @staticmethod
    def _parse_tid(text: bytes) -> int:
        """A thread-id: ``-1`` (all), ``0`` (any) or a positive hex id; ``pP.T`` accepted too."""
        if text.startswith(b"p") and b"." in text:
            text = text.split(b".", 1)[1]
        if text == b"-1":
            return -1
        return parse_hex_int(text, 1 << 31)

    def _range(self, text: bytes) -> tuple[int, int]:
        addr_s, len_s = self._split(text, b",", 2)
        addr = parse_hex_int(addr_s)
        length = parse_hex_int(len_s)
        if addr >= ADDRESS_LIMIT or addr + length > ADDRESS_LIMIT:
            raise _Malformed(E_ACCESS)
        return addr, length

    # -- stop replies ----------------------------------------------------------------------------
    def stop_reply(self, ev: StopEvent) -> bytes:
        """The E.3 stop reply for ``ev`` (reasons only when gdb announced it understands them)."""
        if ev.kind is StopKind.EXITED:
            return b"W%02x" % (ev.status & 0xFF)
        if ev.kind is StopKind.TERMINATED:
            return b"X%02x" % (ev.signal & 0xFF)
        out = b"T%02xthread:%x;" % (ev.signal & 0xFF, ev.thread)
        if ev.reason is StopReason.SWBREAK and "swbreak" in self.client_features:
            out += b"swbreak:;"
        elif ev.reason is StopReason.HWBREAK and "hwbreak" in self.client_features:
            out += b"hwbreak:;"
        elif ev.reason in (StopReason.WATCH, StopReason.RWATCH, StopReason.AWATCH) and ev.addr is not None:
            out += b"%s:%x;" % (ev.reason.value.encode(), ev.addr)
        return out

    def _halt_reason(self, body: bytes) -> bytes:
        return self.stop_reply(self.last_stop)

    # -- registers -------------------------------------------------------------------------------
    def _read_all_registers(self, body: bytes) -> bytes:
        self._require_alive()
        regs = self.target.read_registers(self._thread(self.g_thread))
        return encode_registers(regs).hex().encode()

    def _write_all_registers(self, body: bytes) -> bytes:
        self._require_alive()
        raw = hex_decode(body)
        if len(raw) != G_PACKET_SIZE:
            raise _Malformed()
        tid = self._thread(self.g_thread)
        new = decode_registers(raw)
        old = decode_registers(encode_registers(self.target.read_registers(tid)))
        for reg in REGISTERS:
            if new[reg.name] != old[reg.name]:
                self.target.write_register(tid, reg.name, new[reg.name])
        return b"OK"

    def _register_number(self, text: bytes) -> int:
        n = parse_hex_int(text, 1 << 16)
        if n >= len(REGISTERS):
            raise _Malformed(E_ACCESS)
        return n

    def _read_register(self, body: bytes) -> bytes:
        self._require_alive()
        reg = REGISTERS[self._register_number(body)]
        value = self.target.read_registers(self._thread(self.g_thread)).get(reg.name, 0)
        return (value & ((1 << reg.bits) - 1)).to_bytes(reg.size, "little").hex().encode()

    def _write_register(self, body: bytes) -> bytes:
        self._require_alive()
        num_s, val_s = self._split(body, b"=", 2)
        reg = REGISTERS[self._register_number(num_s)]
        raw = hex_decode(val_s)
        if len(raw) != reg.size:
            raise _Malformed()
        self.target.write_register(self._thread(self.g_thread), reg.name, int.from_bytes(raw, "little"))
        return b"OK"

    # -- memory ----------------------------------------------------------------------------------
    def _read_memory(self, body: bytes) -> bytes:
        self._require_alive()
        addr, length = self._range(body)
        if length == 0:
            raise _Malformed()
        length = min(length, (self.packet_size - 4) // 2)  # a shorter reply is allowed (E.2 'm')
        tid = self._thread(self.g_thread)
        try:
            return self.target.read_memory(tid, addr, length).hex().encode()
        except DebugTargetError:
            pass
        data = bytearray()  # return the readable prefix, page by page
        pos = addr
        while pos < addr + length:
            chunk = min(addr + length, (pos & ~(PAGE - 1)) + PAGE) - pos
            try:
                data += self.target.read_memory(tid, pos, chunk)
            except DebugTargetError:
                break
            pos += chunk
        if not data:
            return E_ACCESS
        return bytes(data).hex().encode()

    def _write_memory(self, addr: int, data: bytes) -> bytes:
        if data:
            self.target.write_memory(self._thread(self.g_thread), addr, data)
        return b"OK"

    def _write_memory_hex(self, body: bytes) -> bytes:
        self._require_alive()
        where, hexdata = self._split(body, b":", 2)
        addr, length = self._range(where)
        data = hex_decode(hexdata)
        if len(data) != length:
            raise _Malformed()
        return self._write_memory(addr, data)

    def _write_memory_binary(self, body: bytes) -> bytes:
        self._require_alive()
        where, bindata = self._split(body, b":", 2)
        addr, length = self._range(where)
        data = unescape_binary(bindata)
        if len(data) != length:
            raise _Malformed()
        return self._write_memory(addr, data)

    # -- execution -------------------------------------------------------------------------------
    def _resume(self, actions: Mapping[int, ResumeAction]) -> bytes:
        self._require_alive()
        if not actions:
            raise _Malformed()
        watcher = _BreakWatcher(self.conn, self.target)
        with watcher:
            ev = self.target.resume(actions)
        self.last_stop = ev
        if ev.kind is StopKind.SIGNAL:
            self.g_thread = ev.thread
        if ev.info:
            self._log(f"stop: {ev.info}")
        if watcher.eof:
            raise ConnectionClosed("peer closed the connection while the target ran")
        return self.stop_reply(ev)

    def _legacy_resume(self, kind: ResumeKind, signal: int, addr_text: bytes) -> bytes:
        """``c``/``s``/``C``/``S``: the ``Hc`` thread (or all for ``c`` with Hc -1/0), optionally from ``addr``."""
        self._require_alive()
        threads = self.target.threads()
        tid = self._thread(self.c_thread)
        if addr_text:
            addr = parse_hex_int(addr_text, ADDRESS_LIMIT)
            self.target.write_register(tid, "eip", addr)
        if kind is ResumeKind.CONTINUE and self.c_thread in (-1, 0):
            actions = {t: ResumeAction(kind, signal if t == tid else 0) for t in threads}
        else:
            actions = {tid: ResumeAction(kind, signal)}
        return self._resume(actions)

    def _continue(self, body: bytes) -> bytes:
        return self._legacy_resume(ResumeKind.CONTINUE, 0, body)

    def _step(self, body: bytes) -> bytes:
        return self._legacy_resume(ResumeKind.STEP, 0, body)

    def _signal_args(self, body: bytes) -> tuple[int, bytes]:
        sig_s, _, addr = body.partition(b";")
        return parse_hex_int(sig_s, 256), addr

    def _continue_signal(self, body: bytes) -> bytes:
        sig, addr = self._signal_args(body)
        return self._legacy_resume(ResumeKind.CONTINUE, sig, addr)

    def _step_signal(self, body: bytes) -> bytes:
        sig, addr = self._signal_args(body)
        return self._legacy_resume(ResumeKind.STEP, sig, addr)

    def _vcont(self, body: bytes) -> bytes:
        """``vCont;action[:tid]...``: the leftmost action matching a thread wins (E.2 vCont)."""
        threads = self.target.threads()
        actions: dict[int, ResumeAction] = {}
        for item in body.split(b";")[1:]:
            act, sep, tid_s = item.partition(b":")
            if not act:
                raise _Malformed()
            letter, arg = act[:1], act[1:]
            if letter in (b"c", b"s") and not arg:
                sig = 0
            elif letter in (b"C", b"S") and arg:
                sig = parse_hex_int(arg, 256)
            else:
                raise _Malformed()
            kind = ResumeKind.STEP if letter in (b"s", b"S") else ResumeKind.CONTINUE
            targets = threads
            if sep:
                tid = self._parse_tid(tid_s)
                if tid > 0:
                    if tid not in threads:
                        raise _Malformed(E_THREAD)
                    targets = [tid]
            for t in targets:
                actions.setdefault(t, ResumeAction(kind, sig))
        return self._resume(actions)

    # -- breakpoints -----------------------------------------------------------------------------
    def _break_args(self, body: bytes) -> Optional[tuple[BreakKind, int, int]]:
        fields = body.split(b";", 1)[0]  # conditions/commands after ';' are not supported (not advertised)
        type_s, addr_s, kind_s = self._split(fields, b",", 3)
        type_n = parse_hex_int(type_s, 1 << 16)
        addr = parse_hex_int(addr_s)
        length = parse_hex_int(kind_s, 1 << 16)
        if type_n > 4:
            return None
        if addr >= ADDRESS_LIMIT:
            raise _Malformed(E_ACCESS)
        return BreakKind(type_n), addr, length

    def _insert_break(self, body: bytes) -> bytes:
        args = self._break_args(body)
        if args is None:
            return b""
        self._require_alive()
        if not self.target.insert_breakpoint(*args):
            return b""
        self.inserted.add(args)
        return b"OK"

    def _remove_break(self, body: bytes) -> bytes:
        args = self._break_args(body)
        if args is None:
            return b""
        self._require_alive()
        if not self.target.remove_breakpoint(*args):
            return b""
        self.inserted.discard(args)
        return b"OK"

    # -- threads ---------------------------------------------------------------------------------
    def _set_thread(self, body: bytes) -> bytes:
        op, tid_s = body[:1], body[1:]
        if op not in (b"g", b"c", b"G"):
            raise _Malformed()
        tid = self._parse_tid(tid_s)
        if tid > 0 and tid not in self.target.threads():
            return E_THREAD
        if op == b"c":
            self.c_thread = tid
        else:
            self.g_thread = tid
        return b"OK"

    def _thread_alive(self, body: bytes) -> bytes:
        tid = self._parse_tid(body)
        if self.last_stop.kind is StopKind.SIGNAL and tid in self.target.threads():
            return b"OK"
        return E_THREAD

    # -- session end -----------------------------------------------------------------------------
    def _kill(self, body: bytes) -> bytes:
        self.target.kill()
        raise _End(SessionEnd.KILLED, None)

    def _detach(self, body: bytes) -> bytes:
        for args in sorted(self.inserted):
            try:
                self.target.remove_breakpoint(*args)
            except DebugTargetError:
                pass
        self.inserted.clear()
        raise _End(SessionEnd.DETACHED, b"OK")

    # -- v packets -------------------------------------------------------------------------------
    def _v_packet(self, data: bytes) -> bytes:
        if data == b"vCont?":
            return b"vCont;c;C;s;S"
        if data.startswith(b"vCont;"):
            return self._vcont(data)
        if data == b"vKill" or data.startswith(b"vKill;"):
            self.target.kill()
            raise _End(SessionEnd.KILLED, b"OK")
        return b""  # vMustReplyEmpty, vFile, vAttach, vRun, vCtrlC...: not supported

    # -- queries ---------------------------------------------------------------------------------
    def _query(self, data: bytes) -> Optional[bytes]:
        name, _, args = data.partition(b":")
        if data.startswith(b"qRcmd,"):
            return self._monitor(data[len(b"qRcmd,"):])
        if data.startswith(b"qThreadExtraInfo,"):
            tid = self._parse_tid(data[len(b"qThreadExtraInfo,"):])
            if tid not in self.target.threads():
                return E_THREAD
            return self.target.thread_name(tid).encode("utf-8", "replace").hex().encode()
        if name == b"qSupported":
            for feature in args.split(b";"):
                if feature.endswith(b"+"):
                    self.client_features.add(feature[:-1].decode("ascii", "replace"))
            return (b"PacketSize=%x;qXfer:features:read+;swbreak+;hwbreak+;QStartNoAckMode+;vContSupported+"
                    % self.packet_size)
        if name == b"qXfer":
            return self._xfer(args)
        if name == b"QStartNoAckMode":
            self.conn.send_packet(b"OK")  # this reply is still acked; everything after is not
            self.conn.ack_mode = False
            return None
        if name == b"qAttached":
            return b"1"  # attached to an existing guest: gdb detaches (never kills) on quit
        if name == b"qC":
            return b"QC%x" % self._thread(self.g_thread)
        if name == b"qfThreadInfo":
            return b"m" + b",".join(b"%x" % t for t in self.target.threads())
        if name == b"qsThreadInfo":
            return b"l"
        if name == b"qSymbol":
            return b"OK"  # no symbols wanted
        return b""  # qTStatus, qOffsets, qTfV, qGetTLSAddr, QThreadEvents...: not supported

    def _xfer(self, args: bytes) -> bytes:
        parts = args.split(b":")
        if len(parts) != 4 or parts[0] != b"features" or parts[1] != b"read":
            return b""
        if parts[2] != b"target.xml":
            return E_ACCESS
        offset, length = (parse_hex_int(x) for x in self._split(parts[3], b",", 2))
        doc = TARGET_XML.encode()
        chunk = doc[offset:offset + min(length, self.packet_size // 2)]
        more = offset + len(chunk) < len(doc)
        return (b"m" if more else b"l") + escape_binary(chunk)

    def _monitor(self, hexcmd: bytes) -> Optional[bytes]:
        command = hex_decode(hexcmd).decode("utf-8", "replace")
        try:
            output = self.target.monitor(command)
        except DebugTargetError as exc:
            output = f"error: {exc}\n"
        raw = output.encode("utf-8", "replace")
        if not raw:
            return b"OK"
        step = max(1, (self.packet_size - 8) // 2)
        for i in range(0, len(raw), step):
            self.conn.send_packet(b"O" + raw[i:i + step].hex().encode())  # console output (E.3 'O')
        return b"OK"


def parse_listen_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` as given to ``--gdb``; loopback when no host; EmuError when unusable."""
    host, sep, port_s = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_s, 10)
    except ValueError:
        raise EmuError(f"--gdb: bad port {port_s!r} (expected [HOST:]PORT)") from None
    if not 0 <= port <= 65535:
        raise EmuError(f"--gdb: port {port} out of range 0..65535")
    return host, port


class GdbServer:
    """A listening socket (loopback by default) that serves one gdb client at a time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise EmuError(f"gdb stub cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.sock.listen(1)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (port 0 picks a free one)."""
        host, port = self.sock.getsockname()[:2]
        return host, port

    def announce(self, stream: Optional[TextIO] = None) -> None:
        """Say where we listen: ``emu: gdb stub listening on 127.0.0.1:PORT`` (stderr by default)."""
        host, port = self.address
        print(f"emu: gdb stub listening on {host}:{port}", file=stream if stream is not None else sys.stderr,
              flush=True)

    def accept(self, timeout: Optional[float] = None) -> socket.socket:
        """Wait for the next gdb; TimeoutError after ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            conn, _ = self.sock.accept()
        except socket.timeout:
            raise TimeoutError("no gdb connected") from None
        finally:
            self.sock.settimeout(None)
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def serve_one(self, stub: GdbStub, timeout: Optional[float] = None) -> SessionEnd:
        """Accept one client and run its session to the end."""
        return stub.serve(self.accept(timeout), listener=self.sock)

    def close(self) -> None:
        """Stop listening."""
        self.sock.close()

    def __enter__(self) -> "GdbServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_gdb(target: DebugTarget, listen: str, *, stream: Optional[TextIO] = None,
              stub: Optional[GdbStub] = None, reconnect: bool = True) -> SessionEnd:
    """What ``--gdb [HOST:]PORT`` does: listen (loopback by default), announce, serve gdb until it is done.

    Returns when gdb detaches (run on without a debugger), kills (stop the run), or disconnects
    after the guest ended; a gdb that merely disconnects is replaced by the next one unless
    ``reconnect`` is False. EmuError when the address is unusable.
    """
    host, port = parse_listen_address(listen)
    stub = stub or GdbStub(target)
    with GdbServer(host, port) as server:
        server.announce(stream)
        while True:
            end = server.serve_one(stub)
            if end is not SessionEnd.DISCONNECTED or not reconnect:
                return end
            print("emu: gdb disconnected; waiting for the next one", file=stream if stream is not None else sys.stderr,
                  flush=True)
