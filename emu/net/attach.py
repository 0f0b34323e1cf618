"""Plug an NE2000 of a machine into a switch port: the wiring a host does once per guest NIC."""
from __future__ import annotations

from typing import Any

from emu.devices.ne2000 import DEFAULT_IOBASE, DEFAULT_IRQ, DEFAULT_MAC, Ne2000
from emu.net.switch import DEFAULT_VLAN, VirtualSwitch


def attach_ne2000(machine: Any, switch: VirtualSwitch, port_name: str, mac: bytes = DEFAULT_MAC,
                  vlan: int = DEFAULT_VLAN, iobase: int = DEFAULT_IOBASE, irq: int = DEFAULT_IRQ) -> Ne2000:
    """Create an NE2000 (QEMU ``ne2k_isa`` defaults), map it on ``machine`` (``add_device``, IRQ through
    ``machine.pic.irq_line``) and connect it to a new port ``port_name`` of ``switch`` in ``vlan``."""
    nic = Ne2000(iobase=iobase, irq=irq, mac=mac, set_irq=machine.pic.irq_line(irq), name=f"ne2000-{port_name}")
    machine.add_device(nic)
    port = switch.add_port(port_name, nic.receive, vlan)
    nic.on_transmit = switch.transmitter(port)
    return nic
