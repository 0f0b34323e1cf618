"""A VLAN-aware learning Ethernet switch between the guests' NICs (IEEE 802.1Q access ports).

Each port has one access VLAN (untagged, IEEE 802.1Q-2018 6.9 "port VLAN
identifier").  Source MAC addresses are learned per VLAN (independent VLAN
learning, 802.1Q 8.8.7); a unicast frame to a learned address goes to that
port only, anything else is flooded to every other port of the same VLAN and
never to another VLAN, never back to the sender.  Delivery is synchronous: a
frame entering the switch is handed to each destination port's ``receive``
callback before :meth:`VirtualSwitch.ingress` returns; a frame sent from inside
a delivery (a peer that answers at once) is queued and forwarded right after,
in order.  Ports are numbered in the order they were added and every
iteration follows that order, so runs are deterministic.

:meth:`VirtualSwitch.set_vlan` applies to the next frame: the forwarding
decision for a frame is taken once, when it enters.  Moving a port forgets the
addresses learned on it.

Capture: with a :class:`emu.net.pcap.PcapWriter` attached, every frame that
enters the switch (forwarded or dropped) is written as it appeared on the
ingress port's wire, with an 802.1Q tag carrying the ingress port's access VLAN
inserted (PCP 0, DEI 0) so that ``tshark -Y vlan.id==N`` separates the VLANs;
``tag_capture=False`` writes the untagged wire bytes instead.
"""
from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from emu import EmuError
from emu.net.pcap import PcapWriter

VLAN_MIN = 1
"""Lowest usable VLAN ID (0 = priority tag only, 802.1Q Table 9-2)."""
VLAN_MAX = 4094
"""Highest usable VLAN ID (4095 reserved, 802.1Q Table 9-2)."""
DEFAULT_VLAN = 1
"""The default PVID (802.1Q 12.10.1.2)."""
ETH_HEADER_LEN = 14
"""Destination, source, EtherType: a frame shorter than this is malformed."""
ETH_MAX_FRAME = 1514
"""Largest untagged frame without FCS (IEEE 802.3 maxUntaggedFrameSize 1518 minus the 4-byte FCS)."""
TPID_8021Q = 0x8100
"""802.1Q tag protocol identifier (C-VLAN)."""
BROADCAST = b"\xff" * 6

PortRef = Union[int, str]
ReceiveFn = Callable[[bytes], bool]
"""A port's delivery callback: True when the attached NIC took the frame, False when it refused it."""


class DropReason(str, enum.Enum):
    """Why a frame (or one copy of it) was not delivered; the counter keys."""

    MALFORMED = "malformed"  # shorter than an Ethernet header
    OVERSIZE = "oversize"  # longer than 1514 bytes
    NO_DESTINATION = "no_destination"  # no other port in the sender's VLAN
    VLAN_ISOLATED = "vlan_isolated"  # unicast to an address known only in another VLAN, nobody else in this one
    SAME_PORT = "same_port"  # unicast to an address learned on the sending port itself
    REFUSED = "refused"  # the receiving port's NIC did not take it (stopped, ring full); counted on that port


@dataclass
class PortCounters:
    """Per-port counters: frames received from the port, delivered to it, and drops by reason."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: DropReason) -> None:
        """Count one drop for ``reason``."""
        self.dropped[reason.value] = self.dropped.get(reason.value, 0) + 1

    @property
    def dropped_total(self) -> int:
        """All drops on this port."""
        return sum(self.dropped.values())


@dataclass
class SwitchPort:
    """One port: its name, access VLAN, delivery callback and counters."""

    number: int
    name: str
    vlan: int
    receive: ReceiveFn
    counters: PortCounters = field(default_factory=PortCounters)


@dataclass(frozen=True)
class ForwardResult:
    """What the switch did with one frame (also handed to observers, e.g. the trace recorder)."""

    time_ns: int
    port: int
    vlan: int
    src: bytes
    dst: bytes
    length: int
    delivered: tuple[int, ...] = ()
    refused: tuple[int, ...] = ()
    drop: Optional[DropReason] = None

    def as_dict(self) -> dict:
        """JSON-able form (trace events, logs)."""
        return {"time_ns": self.time_ns, "port": self.port, "vlan": self.vlan, "src": self.src.hex(),
                "dst": self.dst.hex(), "length": self.length, "delivered": list(self.delivered),
                "refused": list(self.refused), "drop": self.drop.value if self.drop else None}


def check_vlan(vlan: int) -> int:
    """Validate an access VLAN ID (1..4094); EmuError otherwise."""
    if not isinstance(vlan, int) or isinstance(vlan, bool) or not VLAN_MIN <= vlan <= VLAN_MAX:
        raise EmuError(f"VLAN {vlan!r} out of range {VLAN_MIN}..{VLAN_MAX}")
    return vlan


def tag_frame(frame: bytes, vlan: int) -> bytes:
    """``frame`` with an 802.1Q tag (TPID 0x8100, PCP 0, DEI 0, VID ``vlan``) after the source address."""
    if len(frame) < 12:
        return bytes(frame)
    return bytes(frame[:12]) + struct.pack(">HH", TPID_8021Q, vlan & 0x0FFF) + bytes(frame[12:])


class VirtualSwitch:
    """Ports with access VLANs, per-VLAN MAC learning, flooding within a VLAN, counters and capture."""

    def __init__(
        self,
        time_ns: Optional[Callable[[], int]] = None,
        pcap: Optional[PcapWriter] = None,
        tag_capture: bool = True,
        name: str = "vswitch",
    ):
        self.name = name
        self.time_ns: Callable[[], int] = time_ns or (lambda: 0)
        self.pcap = pcap
        self.tag_capture = tag_capture
        self.ports: list[SwitchPort] = []
        self.mac_table: dict[tuple[int, bytes], int] = {}
        self.observers: list[Callable[[ForwardResult], None]] = []
        self._pending: deque[tuple[int, bytes, int, int]] = deque()
        self._busy = False

    # --- ports -------------------------------------------------------------
    def add_port(self, name: str, receive: ReceiveFn, vlan: int = DEFAULT_VLAN) -> int:
        """Add a port delivering to ``receive``; returns its number (0, 1, ... in order of addition)."""
        if any(p.name == name for p in self.ports):
            raise EmuError(f"{self.name}: port name {name!r} already used")
        port = SwitchPort(len(self.ports), name, check_vlan(vlan), receive)
        self.ports.append(port)
        return port.number

    def port(self, ref: PortRef) -> SwitchPort:
        """The port numbered or named ``ref``; EmuError when there is none."""
        if isinstance(ref, str):
            for p in self.ports:
                if p.name == ref:
                    return p
        elif isinstance(ref, int) and 0 <= ref < len(self.ports):
            return self.ports[ref]
        raise EmuError(f"{self.name}: no port {ref!r}")

    def transmitter(self, ref: PortRef) -> Callable[[bytes], None]:
        """A NIC ``on_transmit`` callback that feeds frames into port ``ref``."""
        number = self.port(ref).number
        return lambda frame: self.ingress(number, frame)

    def set_vlan(self, ref: PortRef, vlan: int) -> int:
        """Move port ``ref`` to access VLAN ``vlan`` from the next frame on; returns the previous VLAN."""
        port = self.port(ref)
        check_vlan(vlan)
        previous = port.vlan
        if vlan != previous:
            port.vlan = vlan
            for key in [k for k, v in self.mac_table.items() if v == port.number]:
                del self.mac_table[key]
        return previous

    def vlan_of(self, ref: PortRef) -> int:
        """Access VLAN of port ``ref``."""
        return self.port(ref).vlan

    def counters(self, ref: PortRef) -> PortCounters:
        """Counters of port ``ref``."""
        return self.port(ref).counters

    # --- forwarding ----------------------------------------------------------
    def ingress(self, ref: PortRef, frame: bytes, time_ns: Optional[int] = None) -> Optional[ForwardResult]:
        """A frame sent by the device on port ``ref``; forwards it (and anything queued meanwhile).

        Returns what happened to this frame, or None when it was queued because
        the switch is delivering another frame (it is forwarded before the outer
        call returns).
        """
        port = self.port(ref)
        when = self.time_ns() if time_ns is None else time_ns
        item = (port.number, bytes(frame), port.vlan, when)
        if self._busy:
            self._pending.append(item)
            return None
        self._busy = True
        try:
            result = self._forward(*item)
            while self._pending:
                self._forward(*self._pending.popleft())
        finally:
            self._busy = False
        return result

    def _destinations(self, sender: int, vlan: int, dst: bytes) -> tuple[list[int], Optional[DropReason]]:
        if not dst[0] & 1:
            learned = self.mac_table.get((vlan, dst))
            if learned is not None:
                if learned == sender:
                    return [], DropReason.SAME_PORT
                return [learned], None
        flood = [p.number for p in self.ports if p.vlan == vlan and p.number != sender]
        if flood:
            return flood, None
        if not dst[0] & 1 and any(mac == dst for (_, mac) in self.mac_table):
            return [], DropReason.VLAN_ISOLATED
        return [], DropReason.NO_DESTINATION

    def _forward(self, number: int, frame: bytes, vlan: int, when: int) -> ForwardResult:
        port = self.ports[number]
        port.counters.frames_in += 1
        if self.pcap is not None:
            self.pcap.write(tag_frame(frame, vlan) if self.tag_capture else frame, when)
        dst, src = frame[0:6], frame[6:12]
        drop: Optional[DropReason] = None
        targets: list[int] = []
        if len(frame) < ETH_HEADER_LEN:
            drop = DropReason.MALFORMED
        elif len(frame) > ETH_MAX_FRAME:
            drop = DropReason.OVERSIZE
        else:
            if not src[0] & 1:
                self.mac_table[(vlan, src)] = number
            targets, drop = self._destinations(number, vlan, dst)
        if drop is not None:
            port.counters.drop(drop)
        delivered: list[int] = []
        refused: list[int] = []
        for t in targets:
            out = self.ports[t]
            if out.receive(frame):
                out.counters.frames_out += 1
                delivered.append(t)
            else:
                out.counters.drop(DropReason.REFUSED)
                refused.append(t)
        result = ForwardResult(when, number, vlan, src, dst, len(frame), tuple(delivered), tuple(refused), drop)
        for observer in self.observers:
            observer(result)
        return result

    # --- views -----------------------------------------------------------------
    def info(self) -> str:
        """Ports, VLANs, counters and the address table, readable."""
        lines = [f"{self.name}: {len(self.ports)} ports"]
        for p in self.ports:
            c = p.counters
            drops = ", ".join(f"{k}={v}" for k, v in sorted(c.dropped.items())) or "-"
            lines.append(f"  port {p.number} {p.name:<12} vlan {p.vlan:<4} in {c.frames_in} out {c.frames_out} dropped {drops}")
        for (vlan, mac), number in sorted(self.mac_table.items()):
            lines.append(f"  fdb vlan {vlan:<4} {':'.join(f'{b:02x}' for b in mac)} -> port {number}")
        return "\n".join(lines)

    def snapshot(self) -> dict:
        """Ports, counters and address table as JSON-able data."""
        return {
            "ports": [
                {"number": p.number, "name": p.name, "vlan": p.vlan, "frames_in": p.counters.frames_in,
                 "frames_out": p.counters.frames_out, "dropped": dict(sorted(p.counters.dropped.items()))}
                for p in self.ports
            ],
            "fdb": [[vlan, mac.hex(), number] for (vlan, mac), number in sorted(self.mac_table.items())],
        }
