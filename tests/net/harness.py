"""Run a network firmware kernel under QEMU (ne2k_isa on a loopback UDP echo peer) or on an emu machine
(NE2000 on a VirtualSwitch port next to an EchoPeer): the two set-ups the net tests compare."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Optional

from conftest import FIRMWARE, ROOT
from emu.devices.ne2000 import DEFAULT_MAC, format_mac
from emu.net.attach import attach_ne2000
from emu.net.peer import EchoPeer
from emu.net.pcap import PcapWriter
from emu.net.switch import VirtualSwitch

from .udp_peer import UdpEchoPeer, free_udp_port

_spec = importlib.util.spec_from_file_location("qemu_ref", ROOT / "tools" / "qemu_ref.py")
assert _spec and _spec.loader
qemu_ref = sys.modules.get("qemu_ref") or importlib.util.module_from_spec(_spec)
if "qemu_ref" not in sys.modules:
    sys.modules["qemu_ref"] = qemu_ref
    _spec.loader.exec_module(qemu_ref)

GOLDEN_DIR = Path(__file__).parent


def kernel(name: str) -> Path:
    """firmware/build/<name>.elf"""
    return FIRMWARE / f"{name}.elf"


def golden(name: str) -> Path:
    """The QEMU transcript of a kernel with the peer: tests/net/<name>.qemu.txt."""
    return GOLDEN_DIR / f"{name}.qemu.txt"


def run_qemu_with_peer(name: str, append: Optional[str] = None, mac: bytes = DEFAULT_MAC, iobase: int = 0x300,
                       irq: int = 9) -> tuple[subprocess.CompletedProcess, list[bytes]]:
    """The kernel under QEMU with an ne2k_isa (``iobase``, ``irq``, ``mac``) wired to a loopback UDP echo peer."""
    with UdpEchoPeer() as peer:
        cmd = qemu_ref.qemu_command(str(kernel(name)), append=append) + peer.netdev_args(
            free_udp_port(), iobase=iobase, irq=irq, mac=format_mac(mac))
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    return proc, peer.received


def run_emu_with_peer(name: str, cmdline: str = "", pcap_path: Optional[Path] = None, mac: bytes = DEFAULT_MAC):
    """The kernel on an emu machine: NE2000 0x300/IRQ 9 on switch port "guest", an EchoPeer on port "peer"."""
    from emu.machine import Machine, MachineConfig

    out = bytearray()
    m = Machine(MachineConfig(kernel=str(kernel(name)), cmdline=cmdline), console=out.append)
    if m.pic is None:  # a bare machine: give it the PIC pair and the PIT
        from emu.devices.pic import Pic8259Pair
        from emu.devices.pit import Pit8254

        pic = Pic8259Pair()
        m.add_device(pic)
        m.pic = pic
        m.add_device(Pit8254(m.clock, pic.irq_line(0)))
    writer = PcapWriter(pcap_path) if pcap_path else None
    sw = VirtualSwitch(time_ns=m.clock.ns, pcap=writer)
    attach_ne2000(m, sw, "guest", mac=mac)
    peer = EchoPeer(sw)
    try:
        result = m.run(max_insns=500_000_000)
    finally:
        if writer:
            writer.close()
        m.close()
    return bytes(out), result, sw, peer
