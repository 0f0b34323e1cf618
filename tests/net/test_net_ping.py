"""net_ping kernel: QEMU's ne2k_isa over a loopback UDP socket netdev is the reference; emu must print the same.

``net_ping.qemu.txt`` is the transcript QEMU 7.2 printed (``-netdev socket,udp=...`` with
:class:`tests.net.udp_peer.UdpEchoPeer`); the QEMU test checks it is still what QEMU prints, the emu test
runs the same ELF on an emu machine whose NE2000 sits on a :class:`VirtualSwitch` with an
:class:`emu.net.peer.EchoPeer`, and compares byte for byte.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIRMWARE, ROOT, require_tool
from emu.net.peer import EchoPeer
from emu.net.pcap import PcapWriter, read_pcap
from emu.net.switch import VirtualSwitch
from .udp_peer import UdpEchoPeer, free_udp_port

KERNEL = FIRMWARE / "net_ping.elf"
GOLDEN = Path(__file__).with_name("net_ping.qemu.txt")

_spec = importlib.util.spec_from_file_location("qemu_ref", ROOT / "tools" / "qemu_ref.py")
assert _spec and _spec.loader
qemu_ref = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("qemu_ref", qemu_ref)
_spec.loader.exec_module(qemu_ref)


def run_qemu_with_peer() -> tuple[subprocess.CompletedProcess, list[bytes]]:
    """net_ping under QEMU with an ne2k_isa wired to a loopback UDP echo peer."""
    with UdpEchoPeer() as peer:
        cmd = qemu_ref.qemu_command(str(KERNEL)) + peer.netdev_args(free_udp_port())
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    return proc, peer.received


def run_emu_with_peer(pcap_path: Path | None = None):
    """net_ping on an emu machine: NE2000 0x300/IRQ 9 on a switch port, an EchoPeer on another."""
    from emu.devices.ne2000 import Ne2000
    from emu.machine import Machine, MachineConfig

    out = bytearray()
    m = Machine(MachineConfig(kernel=str(KERNEL)), console=out.append)
    if m.pic is None:  # the bare machine of the foundation: give it the PIC pair and the PIT
        from emu.devices.pic import Pic8259Pair
        from emu.devices.pit import Pit8254

        pic = Pic8259Pair()
        m.add_device(pic)
        m.pic = pic
        m.add_device(Pit8254(m.clock, pic.irq_line(0)))
    writer = PcapWriter(pcap_path) if pcap_path else None
    sw = VirtualSwitch(time_ns=m.clock.ns, pcap=writer)
    nic = Ne2000(set_irq=m.pic.irq_line(9))
    m.add_device(nic)
    port = sw.add_port("guest", nic.receive)
    nic.on_transmit = sw.transmitter(port)
    peer = EchoPeer(sw)
    try:
        result = m.run(max_insns=500_000_000)
    finally:
        if writer:
            writer.close()
    return bytes(out), result, sw, peer


@pytest.mark.qemu
def test_qemu_transcript_is_the_golden_file():
    require_tool("qemu-system-i386")
    proc, received = run_qemu_with_peer()
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == GOLDEN.read_bytes()
    # what the peer saw on the wire: 22 pings plus the TPSR 0xC0 one; the past-the-end transmit never left
    assert len(received) == 23
    assert [len(f) for f in received[:3]] == [60, 60, 20]  # a runt goes out unpadded


def test_golden_transcript_facts():
    """The QEMU behaviour the transcript pins down (read from the golden file, i.e. from QEMU 7.2)."""
    text = GOLDEN.read_text()
    # PROM after the driver's reset (the second ne2000_reset): bytes 6..13 of the first PROM leak in
    assert "prom: 52 52 54 54 00 00 12 12 34 34 56 56 12 12 12 12 34 34 34 34 56 56 56 56 00 00 00 00 57 57 57 57\n" in text
    assert "id: 50 43\n" in text
    assert "tx seq=3 runt len=20 tsr=01\n  rx at=49 status=01 next=4a len=64 " in text  # padded to 60 (+4)
    assert "mcast bit for 01:00:5e:00:00:01 = 31\n" in text
    assert "status=21 next=4c len=64 dst=01:00:5e:00:00:01" in text  # RSR.PHY on a multicast
    assert "rx at=7c status=01 next=46 len=1004" in text  # the ring wraps PSTOP -> PSTART
    assert "past end of memory: ptx=1 tsr=01\n  nothing received\n" in text
    assert text.endswith("received 26 frames; bnry=56 curr=57 irq-seen=yes\n")


def test_qemu_without_nic_says_so():
    require_tool("qemu-system-i386")
    r = qemu_ref.run_qemu(KERNEL, timeout=30)
    assert r.status == 1 and r.stdout == b"net_ping: NE2000 at 300 irq 9\nno NE2000 at 300\n"


def test_emu_matches_qemu_transcript(tmp_path):
    out, result, sw, peer = run_emu_with_peer(tmp_path / "net.pcap")
    assert out == GOLDEN.read_bytes(), out.decode(errors="replace")
    assert result.status == 1
    assert len(peer.received) == 23
    guest = sw.counters("guest")
    # 23 replies + 3 x 2 decoys offered to the NIC (a filtered frame is still taken off the wire, as in QEMU)
    assert guest.frames_in == 23 and guest.frames_out == 29
    _, recs = read_pcap(tmp_path / "net.pcap")
    assert len(recs) == 23 + 29
