"""A minimal remote-protocol client over a socketpair, driving a GdbStub that runs in a thread."""
from __future__ import annotations

import io
import socket
import threading
from typing import Optional

from emu.debug.gdbstub import GdbStub, SessionEnd
from emu.debug.protocol import checksum, rle_decode


class StubClient:
    """Talks to ``stub.serve()`` over a socketpair; ``cmd()`` sends a packet and returns the reply data."""

    def __init__(self, stub: GdbStub, timeout: float = 10.0) -> None:
        self.stub = stub
        self.sock, server_side = socket.socketpair()
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.ack_mode = True
        self.acks: list[bytes] = []
        self.session: Optional[SessionEnd] = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._serve, args=(server_side,), daemon=True)
        self.thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self.session = self.stub.serve(sock)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    # -- raw I/O -----------------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        """Write bytes exactly as given."""
        self.sock.sendall(data)

    def send(self, payload: bytes) -> None:
        """Send a correctly framed packet (no run-length encoding)."""
        self.send_raw(b"$" + payload + b"#%02x" % checksum(payload))

    def _byte(self) -> int:
        while not self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("stub closed the connection")
            self.buf += chunk
        b = self.buf[0]
        del self.buf[0]
        return b

    def read_ack(self) -> bytes:
        """The next ``+`` or ``-`` byte."""
        b = self._byte()
        assert b in b"+-", f"expected an ack, got {bytes([b])!r}"
        self.acks.append(bytes([b]))
        return bytes([b])

    def read_frame(self) -> tuple[bytes, bool]:
        """The next packet's raw data and whether its checksum is right (skipping acks, not acking)."""
        while (b := self._byte()) != 0x24:
            assert b in b"+-", f"junk {bytes([b])!r} outside a packet"
            self.acks.append(bytes([b]))
        data = bytearray()
        while (b := self._byte()) != 0x23:
            data.append(b)
        cs = bytes((self._byte(), self._byte()))
        return bytes(data), int(cs, 16) == checksum(bytes(data))

    def read_packet(self) -> bytes:
        """The next packet's decoded data (checked, acked with ``+`` in ack mode)."""
        raw, ok = self.read_frame()
        assert ok, f"bad checksum from the stub on {raw!r}"
        if self.ack_mode:
            try:
                self.send_raw(b"+")
            except OSError:  # the stub may already have closed after its last reply (D, vKill)
                pass
        return rle_decode(raw)

    def cmd(self, payload: bytes) -> bytes:
        """Send a packet, expect ``+`` (in ack mode), return the reply packet's data."""
        self.send(payload)
        if self.ack_mode:
            assert self.read_ack() == b"+"
        return self.read_packet()

    def monitor(self, command: str) -> str:
        """``qRcmd``: collect the ``O`` packets up to ``OK`` and return the text."""
        self.send(b"qRcmd," + command.encode().hex().encode())
        if self.ack_mode:
            assert self.read_ack() == b"+"
        out = bytearray()
        while True:
            reply = self.read_packet()
            if reply == b"OK":
                return out.decode()
            assert reply.startswith(b"O"), reply
            out += bytes.fromhex(reply[1:].decode())

    def finish(self, timeout: float = 10.0) -> Optional[SessionEnd]:
        """Close our end and wait for the session to end; re-raise anything the stub raised."""
        try:
            self.sock.close()
        finally:
            self.thread.join(timeout)
        assert not self.thread.is_alive(), "stub did not end after the client closed"
        if self.error is not None:
            raise self.error
        return self.session


def quiet_stub(target: object, **kwargs: object) -> tuple[GdbStub, io.StringIO]:
    """A stub whose error stream is captured (tests assert it stays empty)."""
    errors = io.StringIO()
    return GdbStub(target, errors=errors, **kwargs), errors  # type: ignore[arg-type]
