"""The echo peer on a loopback UDP socket, for QEMU's ``-netdev socket,udp=127.0.0.1:P,localaddr=127.0.0.1:Q``.

QEMU's socket netdev in UDP mode sends each guest frame as one datagram from
``localaddr`` to ``udp`` and takes each datagram arriving at ``localaddr`` as a
frame for the guest (no length prefix; that is the TCP mode).  The peer binds
``udp``'s port, answers with :func:`emu.net.peer.replies_to` and records what it
saw.  Everything stays on 127.0.0.1.
"""
from __future__ import annotations

import socket
import threading
from typing import Callable, Optional

from emu.net.peer import replies_to


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UdpEchoPeer:
    """A thread answering PING frames received over UDP (context manager)."""

    def __init__(self, reply: Callable[[bytes], list[bytes]] = replies_to):
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def netdev_args(self, local_port: int, iobase: int = 0x300, irq: int = 9, mac: Optional[str] = None) -> list[str]:
        """QEMU arguments for an ne2k_isa whose wire is this peer."""
        device = f"ne2k_isa,netdev=n0,iobase={iobase:#x},irq={irq}" + (f",mac={mac}" if mac else "")
        return ["-netdev", f"socket,id=n0,udp=127.0.0.1:{self.port},localaddr=127.0.0.1:{local_port}",
                "-device", device]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.received.append(data)
            for answer in self.reply(data):
                self.sock.sendto(answer, addr)

    def __enter__(self) -> "UdpEchoPeer":
        self._thread = threading.Thread(target=self._serve, name="udp-echo-peer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sock.close()
