"""A deterministic echo peer for NIC tests: answers "PING" frames, on the virtual switch or (for QEMU) over UDP.

Protocol (EtherType 0x88B5, IEEE 802 "local experimental"): a request's payload
starts with ``PING``, a sequence byte and a flags byte.  The reply goes to the
requester's address from :data:`PEER_MAC`, same length, payload ``PONG`` plus
the request's bytes after the first four.  With :data:`FLAG_DECOYS` the peer
first sends two frames a NIC in its default mode must drop: one to a foreign
unicast address (:data:`DECOY_UNICAST`) and one to the multicast group
:data:`DECOY_MULTICAST`.  The same :func:`replies_to` drives both the switch
port (:class:`EchoPeer`) and the UDP peer a test gives QEMU's
``-netdev socket,udp=...``, so a kernel sees the same frames under both.
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


def replies_to(frame: bytes, peer_mac: bytes = PEER_MAC) -> list[bytes]:
    """The frames the peer sends in answer to ``frame`` (none unless it is a PING request)."""
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
