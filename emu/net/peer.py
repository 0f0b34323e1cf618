"""A deterministic echo peer for NIC tests: answers "PING" frames, on the virtual switch or (for QEMU) over UDP.

Protocol (EtherType 0x88B5, IEEE 802 "local experimental"; frames of the
firmware kernels ``net_ping``, ``net_app`` and ``net_mgmt``): a request's payload
starts with ``PING``, a sequence byte and a flags byte.  The reply goes to the
requester's address from :data:`PEER_MAC`, same length, payload ``PONG`` plus
the request's bytes after the first four.  With :data:`FLAG_DECOYS` the peer
first sends two frames a NIC in its default mode must drop: one to a foreign
unicast address (:data:`DECOY_UNICAST`) and one to the multicast group
:data:`DECOY_MULTICAST`.  The same :func:`replies_to` drives both the switch
port (:class:`EchoPeer`) and the UDP peer a test gives QEMU's
``-netdev socket,udp=...``, so a kernel sees the same frames under both.

Status reports (the demo): the application guest broadcasts 60-byte frames whose
payload is ``STAT``, a sequence byte, a zero byte and the text ``app ok seq=N``
(:func:`status_frame`).  The management guest announces itself with a broadcast
``HELO``; the peer answers a ``HELO`` with :data:`HELO_STATUS_COUNT` status frames
as if from :data:`APP_MAC`, standing in for the application guest.
"""
from __future__ import annotations

from typing import Callable

from emu.net.switch import DEFAULT_VLAN, VirtualSwitch

ETHERTYPE_PING = 0x88B5
"""IEEE Std 802 local experimental EtherType 1."""
PEER_MAC = bytes.fromhex("525400123499")
"""Source address of the peer's frames."""
DECOY_UNICAST = bytes.fromhex("020000000001")
"""A locally administered unicast address no test NIC has."""
DECOY_MULTICAST = bytes.fromhex("01005e000001")
"""IPv4 all-hosts group address (RFC 1112 mapping), used as the multicast decoy."""
FLAG_DECOYS = 0x01
"""Request flag: send the two decoy frames before the reply."""
APP_MAC = bytes.fromhex("525400123456")
"""The application guest's NIC (QEMU's default address for the first NIC)."""
MGMT_MAC = bytes.fromhex("525400123457")
"""The management guest's NIC (QEMU's default address for the second NIC)."""
BROADCAST = b"\xff" * 6
HELO_STATUS_COUNT = 3
"""Status frames the peer sends in answer to a HELO."""


def status_frame(src: bytes, seq: int, dst: bytes = BROADCAST) -> bytes:
    """The 60-byte status report ``net_app`` sends (EtherType 0x88B5, ``STAT``, seq, 0, ``app ok seq=N``)."""
    payload = b"STAT" + bytes([seq & 0xFF, 0]) + b"app ok seq=%d" % seq
    frame = dst + src + ETHERTYPE_PING.to_bytes(2, "big") + payload
    return frame.ljust(60, b"\0")


def replies_to(frame: bytes, peer_mac: bytes = PEER_MAC) -> list[bytes]:
    """The frames the peer sends in answer to ``frame`` (none unless it is a PING request)."""
    if len(frame) >= 18 and int.from_bytes(frame[12:14], "big") == ETHERTYPE_PING and frame[14:18] == b"HELO":
        return [status_frame(APP_MAC, seq, dst=bytes(frame[6:12])) for seq in range(1, HELO_STATUS_COUNT + 1)]
    if len(frame) < 20 or int.from_bytes(frame[12:14], "big") != ETHERTYPE_PING or frame[14:18] != b"PING":
        return []
    requester = bytes(frame[6:12])
    body = b"PONG" + bytes(frame[18:])
    kind = frame[12:14]
    out: list[bytes] = []
    if frame[19] & FLAG_DECOYS:
        decoy = b"DECO" + bytes(frame[18:20]) + bytes(40)
        out.append(DECOY_UNICAST + peer_mac + kind + decoy)
        out.append(DECOY_MULTICAST + peer_mac + kind + decoy)
    out.append(requester + peer_mac + kind + body)
    return out


class EchoPeer:
    """A switch port that answers PING requests at once (the replies are queued behind the request)."""

    def __init__(self, switch: VirtualSwitch, name: str = "peer", vlan: int = DEFAULT_VLAN,
                 reply: Callable[[bytes], list[bytes]] = replies_to):
        self.switch = switch
        self.reply = reply
        self.received: list[bytes] = []
        self.port = switch.add_port(name, self.receive, vlan)

    def receive(self, frame: bytes) -> bool:
        """Take a frame off the switch and send the replies back through the same port."""
        self.received.append(bytes(frame))
        for answer in self.reply(frame):
            self.switch.ingress(self.port, answer)
        return True
