"""One guest's network for `emu run --nic`: an NE2000 on a private switch, optionally an echo peer and a pcap.

The card defaults are QEMU's ``ne2k_isa`` (hw/net/ne2000-isa.c properties:
iobase 0x300, irq 9, the first NIC's MAC 52:54:00:12:34:56), which is what
the firmware's network kernels expect.  ``--nic`` options are written like
QEMU's ``-device`` properties: ``mac=52:54:00:12:34:57,iobase=0x320,irq=10``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from emu import EmuError
from emu.devices.ne2000 import DEFAULT_IOBASE, DEFAULT_IRQ, DEFAULT_MAC, PORT_COUNT, Ne2000, format_mac, parse_mac
from emu.net.pcap import PcapWriter
from emu.net.peer import EchoPeer
from emu.net.switch import DEFAULT_VLAN, VirtualSwitch

PEERS = ("echo",)
"""What ``--net-peer`` accepts: ``echo`` = :class:`emu.net.peer.EchoPeer` on the same switch."""
RESERVED_IRQS = {0: "the PIT", 2: "the PIC cascade", 14: "the primary IDE channel", 15: "the secondary IDE channel"}
"""ISA lines the PC platform already drives (emu/platform.py); a NIC there would share an edge-triggered line."""
NIC_PORT = "guest"
"""The switch port of the machine's card."""
PEER_PORT = "peer"
"""The switch port of the echo peer."""


@dataclass(frozen=True)
class NicConfig:
    """An NE2000 for a single machine: card wiring, what else sits on its switch, where the capture goes."""

    iobase: int = DEFAULT_IOBASE
    irq: int = DEFAULT_IRQ
    mac: bytes = DEFAULT_MAC
    peer: Optional[str] = None
    pcap: Optional[str] = None


@dataclass
class GuestNetwork:
    """What :func:`build_network` put on a machine: the card, its switch, the peer and the capture (or None)."""

    nic: Ne2000
    switch: VirtualSwitch
    peer: Optional[EchoPeer]
    pcap: Optional[PcapWriter]


def _int_option(key: str, text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise EmuError(f"--nic: {key}={text!r} is not a number") from None


def parse_nic_options(text: str, peer: Optional[str] = None, pcap: Optional[str] = None) -> NicConfig:
    """``mac=..,iobase=..,irq=..`` (any subset, any order; empty = all defaults) -> NicConfig; EmuError naming the bad value."""
    values: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise EmuError(f"--nic: {item!r} is not key=value (keys: mac, iobase, irq)")
        if key in values:
            raise EmuError(f"--nic: {key} given twice")
        if key == "mac":
            try:
                mac = parse_mac(value.strip())
            except EmuError as exc:
                raise EmuError(f"--nic: {exc}") from None
            if mac[0] & 1:
                raise EmuError(f"--nic: mac {format_mac(mac)} is a multicast address")
            values[key] = mac
        elif key == "iobase":
            iobase = _int_option(key, value.strip())
            if not 0 <= iobase <= 0x10000 - PORT_COUNT:
                raise EmuError(f"--nic: iobase {value.strip()} out of range 0..{0x10000 - PORT_COUNT:#x}")
            values[key] = iobase
        elif key == "irq":
            irq = _int_option(key, value.strip())
            if not 0 <= irq <= 15:
                raise EmuError(f"--nic: irq {value.strip()} out of range 0..15")
            if irq in RESERVED_IRQS:
                raise EmuError(f"--nic: irq {irq} is used by {RESERVED_IRQS[irq]}")
            values[key] = irq
        else:
            raise EmuError(f"--nic: unknown option {key!r} (keys: mac, iobase, irq)")
    if peer is not None and peer not in PEERS:
        raise EmuError(f"--net-peer: unknown peer {peer!r} (choose: {', '.join(PEERS)})")
    return NicConfig(peer=peer, pcap=pcap, **values)


def build_network(machine: Any, config: NicConfig) -> GuestNetwork:
    """Plug the card into ``machine`` (its PIC line ``config.irq``) on a new switch timed by the machine's clock.

    Port 0 is the card, port 1 the peer if any, both in VLAN 1; the capture, if asked, is the untagged wire
    (one VLAN, so no 802.1Q tag) with the machine's virtual timestamps, closed when the machine closes.
    """
    writer = None
    if config.pcap is not None:
        writer = PcapWriter(Path(config.pcap))
        machine._closers.append(writer.close)
    switch = VirtualSwitch(time_ns=machine.clock.ns, pcap=writer, tag_capture=False, name=f"{machine.name}-switch")
    nic = Ne2000(iobase=config.iobase, irq=config.irq, mac=config.mac, set_irq=machine.pic.irq_line(config.irq))
    try:
        machine.add_device(nic)
    except ValueError as exc:   # emu.devices.bus.PortConflict
        raise EmuError(f"--nic: iobase {config.iobase:#x}: {exc}") from None
    port = switch.add_port(NIC_PORT, nic.receive, DEFAULT_VLAN)
    nic.on_transmit = switch.transmitter(port)
    peer = EchoPeer(switch, PEER_PORT, DEFAULT_VLAN) if config.peer == "echo" else None
    return GuestNetwork(nic, switch, peer, writer)
