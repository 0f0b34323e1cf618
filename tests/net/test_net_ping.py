"""Network kernels: QEMU's ne2k_isa over a loopback UDP socket netdev is the reference; emu must print the same.

``<kernel>.qemu.txt`` is the transcript QEMU 7.2 printed with :class:`tests.net.udp_peer.UdpEchoPeer` on the
wire; the QEMU tests check it is still what QEMU prints, the emu tests run the same ELF on an emu machine whose
NE2000 sits on a :class:`VirtualSwitch` next to an :class:`emu.net.peer.EchoPeer`, and compare byte for byte.
"""
from __future__ import annotations

import pytest

from conftest import require_tool
from emu.net.peer import APP_MAC, MGMT_MAC, status_frame
from emu.net.pcap import read_pcap

from .harness import DEFAULT_MAC, golden, kernel, qemu_ref, run_emu_with_peer, run_qemu_with_peer

# kernel name -> (command line, NIC MAC)
CASES = {
    "net_ping": (None, DEFAULT_MAC),
    "net_app": ("count=3 interval=5", APP_MAC),
    "net_mgmt": ("silence=20", MGMT_MAC),
    "net_regs": (None, DEFAULT_MAC),
    "net_ring": (None, DEFAULT_MAC),
}


@pytest.mark.qemu
@pytest.mark.parametrize("name", sorted(CASES))
def test_qemu_transcript_is_the_golden_file(name):
    require_tool("qemu-system-i386")
    append, mac = CASES[name]
    proc, received = run_qemu_with_peer(name, append, mac)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == golden(name).read_bytes()
    if name == "net_ping":
        # 22 pings plus the TPSR 0xC0 one reached the wire; the past-the-end transmit never left
        assert len(received) == 23
        assert [len(f) for f in received[:3]] == [60, 60, 20]  # a runt goes out unpadded
    elif name == "net_app":
        assert received == [status_frame(APP_MAC, seq) for seq in (1, 2, 3)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_emu_matches_qemu_transcript(name, tmp_path):
    append, mac = CASES[name]
    out, result, sw, peer = run_emu_with_peer(name, append or "", tmp_path / "net.pcap", mac)
    assert out == golden(name).read_bytes(), out.decode(errors="replace")
    assert result.status == 1
    _, recs = read_pcap(tmp_path / "net.pcap")
    guest = sw.counters("guest")
    assert len(recs) == guest.frames_in + sw.counters("peer").frames_in
    if name == "net_ping":
        assert len(peer.received) == 23
        # 23 replies + 3 x 2 decoys offered to the NIC (a filtered frame is still taken off the wire, as in QEMU)
        assert guest.frames_in == 23 and guest.frames_out == 29
    elif name == "net_app":
        assert peer.received == [status_frame(APP_MAC, seq) for seq in (1, 2, 3)]
    elif name == "net_ring":
        assert guest.dropped == {"refused": 2}  # the full ring and PSTOP == PSTART


def test_golden_transcript_facts():
    """The QEMU behaviour the net_ping transcript pins down (read from the golden file, i.e. from QEMU 7.2)."""
    text = golden("net_ping").read_text()
    # PROM after the driver's reset (the second ne2000_reset): bytes 6..13 of the first PROM leak in
    assert "prom: 52 52 54 54 00 00 12 12 34 34 56 56 12 12 12 12 34 34 34 34 56 56 56 56 00 00 00 00 57 57 57 57\n" in text
    assert "id: 50 43\n" in text
    assert "tx seq=3 runt len=20 tsr=01\n  rx at=49 status=01 next=4a len=64 " in text  # padded to 60 (+4)
    assert "mcast bit for 01:00:5e:00:00:01 = 31\n" in text
    assert "status=21 next=4c len=64 dst=01:00:5e:00:00:01" in text  # RSR.PHY on a multicast
    assert "rx at=7c status=01 next=46 len=1004" in text  # the ring wraps PSTOP -> PSTART
    assert "past end of memory: ptx=1 tsr=01\n  nothing received\n" in text
    assert text.endswith("received 26 frames; bnry=56 curr=57 irq-seen=yes\n")
    assert "mgmt: mac 52:54:00:12:34:57\n" in golden("net_mgmt").read_text()


def test_golden_register_probe_facts():
    """Malformed programming as QEMU 7.2 answers it (net_regs transcript)."""
    text = golden("net_regs").read_text()
    for line in [
        "power-on: cr=00 isr=80",
        "wide: inw(00)=ffff inl(00)=ffffffff inb(11)=ff inb(1e)=ff inw(1f)=0000 isr=00",  # unaligned -> 0, no reset
        "isr after writing ff: 80",  # RST is not write-1-to-clear
        "after pstart=c1 pstop=ff bnry=c0 curr=c0: curr=47 pstart=46 pstop=80 bnry=46",  # all ignored
        "pstop=c0 accepted: c0",
        "past end bffe: 11 22 ff ff crda=c002 isr=40",
        "hole 0100: ff ff crda=0102 isr=40",
        "wrap 7fff: 11 22 crda=4601 isr=40",  # RSAR wraps exactly at PSTOP
        "reset port read=00 isr=80",
        "inw in byte mode: 0011 0022 crda=4002",  # DCR.WTS decides the step, not the access size
        "inb in word mode: 11 33 crda=4004 isr=40",
        "inw at odd 4001: 2211 4433 crda=4005",  # word reads round the address down, RSAR still +2
        "inl at bffc: 22110000 then ffffffff crda=c004",
        "read past count: 11 22 isr=40 then 33 isr=40 crda=4003",
        "write with count 0 ignored: crda=4000",
        "txp while stopped: cr=25 isr=00 tsr=00",
    ]:
        assert line + "\n" in text, line


@pytest.mark.qemu
@pytest.mark.parametrize("name", sorted(CASES))
def test_qemu_without_nic_says_so(name):
    require_tool("qemu-system-i386")
    r = qemu_ref.run_qemu(kernel(name), timeout=30)
    assert r.status == 1 and r.stdout.endswith(b"no NE2000 at 300\n")


def test_golden_ring_facts():
    """Receive-ring misprogramming as QEMU 7.2 answers it (net_ring transcript)."""
    text = golden("net_ring").read_text()
    assert "ring full: seq=2 curr=48 bnry=4a isr=00\n" in text  # refused, no OVW, frame lost
    assert "bnry restored, next ping: seq=3 curr=49" in text and "PONG seq=2" not in text
    assert "pstop=pstart: seq=4 curr=49 bnry=48 isr=00\n" in text
    # CURR outside the ring: header written at CURR, data skipped, CURR wrapped back by (PSTOP - PSTART)
    assert "curr=b0 outside the ring: seq=6 curr=77 bnry=a0 isr=01\n" in text
    assert "  memory b000: 01 77 40 00 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5\n" in text
