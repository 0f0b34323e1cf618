"""NE2000 register-level tests, programmed through the ports as a guest driver (Linux 8390.c / ne.c style) would."""
from __future__ import annotations

import random
import zlib

import pytest

from emu import EmuError
from emu.devices.bus import PortBus
from emu.devices.ne2000 import (
    CR,
    DCR,
    ISR,
    NE2000_PMEM_END,
    RCR,
    RSR,
    Ne2000,
    RxResult,
    mcast_hash_index,
    parse_mac,
)

BASE = 0x300
MAC = bytes.fromhex("525400123456")
PSTART, PSTOP = 0x46, 0x80  # Linux ne.c: TX at 0x40 (6 pages), RX ring 0x46..0x80


class Nic:
    """A NE2000 on a port bus with its IRQ line and transmitted frames recorded."""

    def __init__(self, **kw):
        self.irq_events: list[int] = []
        self.sent: list[bytes] = []
        self.dev = Ne2000(set_irq=self.irq_events.append, on_transmit=self.sent.append, **kw)
        self.bus = PortBus()
        self.dev.map(self.bus)
        self.base = self.dev.iobase

    def outb(self, off: int, v: int) -> None:
        self.bus.write(self.base + off, 1, v)

    def inb(self, off: int) -> int:
        return self.bus.read(self.base + off, 1)

    def outw(self, off: int, v: int) -> None:
        self.bus.write(self.base + off, 2, v)

    def inw(self, off: int) -> int:
        return self.bus.read(self.base + off, 2)

    @property
    def irq(self) -> int:
        return self.irq_events[-1] if self.irq_events else 0

    def init(self, rcr: int = RCR.AB, dcr: int = 0x48, word: bool = False) -> None:
        """The DP8390 initialisation sequence (datasheet 11.0)."""
        self.inb(0x1F)  # reset
        self.outb(0x00, CR.STP | CR.RD2)
        self.outb(0x0E, dcr | (DCR.WTS if word else 0))
        self.outb(0x0A, 0)
        self.outb(0x0B, 0)
        self.outb(0x0C, rcr)
        self.outb(0x0D, 0x02)  # TCR internal loopback during setup (QEMU ignores it)
        self.outb(0x01, PSTART)
        self.outb(0x03, PSTART)
        self.outb(0x02, PSTOP)
        self.outb(0x07, 0xFF)
        self.outb(0x0F, 0x00)
        self.outb(0x00, CR.STP | CR.RD2 | CR.PS0)
        for i in range(6):
            self.outb(0x01 + i, MAC[i])
        self.outb(0x07, PSTART + 1)  # CURR
        self.outb(0x00, CR.STA | CR.RD2)
        self.outb(0x0D, 0x00)

    def remote_read(self, addr: int, count: int, word: bool = False) -> bytes:
        self.outb(0x0A, count & 0xFF)
        self.outb(0x0B, count >> 8)
        self.outb(0x08, addr & 0xFF)
        self.outb(0x09, addr >> 8)
        self.outb(0x00, CR.STA | CR.RD0)
        out = bytearray()
        if word:
            for _ in range((count + 1) // 2):
                out += self.inw(0x10).to_bytes(2, "little")
        else:
            for _ in range(count):
                out.append(self.inb(0x10))
        return bytes(out[:count])

    def remote_write(self, addr: int, data: bytes, word: bool = False) -> None:
        self.outb(0x0A, len(data) & 0xFF)
        self.outb(0x0B, len(data) >> 8)
        self.outb(0x08, addr & 0xFF)
        self.outb(0x09, addr >> 8)
        self.outb(0x00, CR.STA | CR.RD1)
        if word:
            padded = data + b"\0" * (len(data) & 1)
            for i in range(0, len(padded), 2):
                self.outw(0x10, padded[i] | padded[i + 1] << 8)
        else:
            for b in data:
                self.outb(0x10, b)

    def page(self, n: int) -> None:
        self.outb(0x00, (self.inb(0x00) & 0x3F) | (n << 6))


def frame(dst: bytes, src: bytes = bytes.fromhex("525400abcdef"), payload: bytes = b"hello", ethertype: int = 0x88B5) -> bytes:
    return dst + src + ethertype.to_bytes(2, "big") + payload


# --- PROM, reset, register file ---------------------------------------------------

def test_power_on_prom_doubles_mac_and_has_W_signature():
    n = Nic()
    n.outb(0x00, CR.STA | CR.RD2)
    prom = n.remote_read(0, 32)
    assert prom[12:28] == bytes(16)
    n.init()
    prom = n.remote_read(0, 32)
    assert prom[0:12] == bytes(b for b in MAC for _ in range(2))
    assert prom[28:32] == b"WWWW"  # 0x57 0x57: Novell NE2000 signature
    assert n.inb(0x07) & ISR.RDC


def test_prom_read_word_mode_returns_words():
    n = Nic()
    n.init(word=True)
    words = n.remote_read(0, 32, word=True)
    assert words[0:12:2] == MAC and words[1:12:2] == MAC


def test_second_reset_rebuilds_prom_from_memory_like_qemu():
    """QEMU rewrites bytes 0..5 and 14..15 in place, then doubles 0..15: bytes 6..13 of the first PROM leak in."""
    n = Nic()
    n.inb(0x1F)  # the driver's reset after power-on: the second ne2000_reset
    n.outb(0x00, CR.STA | CR.RD2)
    prom = n.remote_read(0, 32)
    m = MAC
    expected = bytes(b for b in m for _ in range(2)) + bytes([m[3]] * 4 + [m[4]] * 4 + [m[5]] * 4) + bytes(4) + b"WWWW"
    assert prom == expected


def test_configurable_mac_iobase_irq():
    n = Nic(iobase=0x320, irq=10, mac=parse_mac("02:00:00:00:00:07"))
    n.init()
    assert n.remote_read(0, 12)[0::2] == bytes.fromhex("020000000007")
    assert n.bus.owner(0x320) == "ne2000" and n.bus.owner(0x33F) == "ne2000" and n.bus.owner(0x340) is None


@pytest.mark.parametrize("kw", [{"mac": b"\x01" * 6}, {"mac": b"\0" * 5}, {"irq": 16}, {"iobase": 0xFFF0}])
def test_bad_configuration_is_one_clear_error(kw):
    with pytest.raises(EmuError):
        Ne2000(**kw)


def test_parse_mac_rejects_garbage():
    with pytest.raises(EmuError):
        parse_mac("52:54:00:12:34")


def test_power_on_state_and_reset_bit():
    n = Nic()
    assert n.inb(0x00) == 0x00
    assert n.inb(0x07) == ISR.RST
    n.outb(0x07, 0xFF)  # RST cannot be cleared by writing ISR
    assert n.inb(0x07) == ISR.RST
    n.outb(0x00, CR.STP | CR.RD2)  # stop does not clear it
    assert n.inb(0x07) == ISR.RST
    n.outb(0x00, CR.STA | CR.RD2)  # start does
    assert n.inb(0x07) == 0


def test_page_registers_read_back():
    n = Nic()
    n.init()
    assert n.inb(0x0A) == 0x50 and n.inb(0x0B) == 0x43  # RTL8029 ID as QEMU reports it
    assert n.inb(0x03) == PSTART  # BNRY
    n.page(1)
    assert bytes(n.inb(0x01 + i) for i in range(6)) == MAC
    assert n.inb(0x07) == PSTART + 1
    for i in range(8):
        n.outb(0x08 + i, 0x11 * i)
    assert [n.inb(0x08 + i) for i in range(8)] == [0x11 * i for i in range(8)]
    n.page(2)
    assert n.inb(0x01) == PSTART and n.inb(0x02) == PSTOP
    n.page(3)
    assert (n.inb(0x03), n.inb(0x05), n.inb(0x06)) == (0x00, 0x40, 0x40)


def test_unused_ports_and_wide_register_access_read_all_ones():
    n = Nic()
    assert n.inw(0x00) == 0xFFFF and n.bus.read(BASE, 4) == 0xFFFFFFFF
    assert n.inb(0x11) == 0xFF and n.inb(0x1E) == 0xFF and n.inw(0x1E) == 0xFFFF
    n.outw(0x00, 0x0001)  # ignored
    assert n.inb(0x00) == 0


def test_unaligned_wide_access_reads_zero_and_is_dropped():
    """QEMU 7.2 (net_regs transcript): inw(base+0x1F) = 0000, the reset port is not triggered."""
    n = Nic()
    n.init()
    n.outb(0x07, 0xFF)
    assert n.inw(0x1F) == 0 and n.inb(0x07) == 0  # no reset happened (ISR.RST would be set)
    assert n.inw(0x01) == 0 and n.bus.read(BASE + 0x12, 4) == 0
    n.bus.write(BASE + 0x0F, 2, 0xFFFF)  # would be IMR if it reached the device
    assert n.dev.state.imr == 0


# --- remote DMA ----------------------------------------------------------------------

def test_remote_write_then_read_round_trip_and_rsar_advances():
    n = Nic()
    n.init()
    data = bytes(range(100))
    n.remote_write(0x4000, data)
    assert n.inb(0x07) & ISR.RDC
    assert (n.inb(0x08), n.inb(0x09)) == (0x64, 0x40)  # CRDA = RSAR + 100
    n.outb(0x07, ISR.RDC)
    assert n.remote_read(0x4000, 100) == data


def test_remote_dma_word_mode():
    n = Nic()
    n.init(word=True)
    data = bytes(random.Random(3).randrange(256) for _ in range(64))
    n.remote_write(0x5000, data, word=True)
    assert n.remote_read(0x5000, 64, word=True) == data


def test_rdc_sets_only_when_count_reaches_zero():
    n = Nic()
    n.init()
    n.outb(0x07, 0xFF)
    n.outb(0x0A, 3)
    n.outb(0x0B, 0)
    n.outb(0x08, 0)
    n.outb(0x09, 0x40)
    n.outb(0x00, CR.STA | CR.RD0)
    n.inb(0x10)
    n.inb(0x10)
    assert not n.inb(0x07) & ISR.RDC
    n.inb(0x10)
    assert n.inb(0x07) & ISR.RDC


def test_zero_length_remote_dma_completes_immediately():
    n = Nic()
    n.init()
    n.outb(0x07, 0xFF)
    n.outb(0x0A, 0)
    n.outb(0x0B, 0)
    n.outb(0x00, CR.STA | CR.RD1)
    assert n.inb(0x07) & ISR.RDC


def test_remote_write_with_zero_count_is_ignored():
    n = Nic()
    n.init()
    n.remote_write(0x4000, b"\x11")
    n.outb(0x10, 0x22)  # count exhausted: dropped, RSAR unchanged
    assert (n.inb(0x08), n.inb(0x09)) == (0x01, 0x40)
    assert n.remote_read(0x4000, 2) == b"\x11\x00"


def test_remote_dma_past_end_of_memory_reads_ff_and_drops_writes():
    n = Nic()
    n.init()
    n.remote_write(0xBFFE, b"\xAA\xBB\xCC\xDD")  # last two bytes fall off the end
    assert n.remote_read(0xBFFE, 4) == b"\xAA\xBB\xFF\xFF"
    assert n.remote_read(0x0100, 2) == b"\xFF\xFF"  # the hole between PROM and buffer
    n.remote_write(0x0100, b"\x12")
    assert n.remote_read(0x0100, 1) == b"\xFF"
    assert len(n.dev.state.mem) == NE2000_PMEM_END


def test_remote_dma_wraps_exactly_at_pstop():
    n = Nic()
    n.init()
    n.remote_write(PSTART << 8, b"\x5A")
    n.remote_write((PSTOP << 8) - 1, b"\x01")
    # a read crossing PSTOP continues at PSTART
    assert n.remote_read((PSTOP << 8) - 1, 2) == b"\x01\x5A"


def test_remote_dma_32bit_access():
    n = Nic()
    n.init()
    n.outb(0x0A, 4)
    n.outb(0x0B, 0)
    n.outb(0x08, 0x00)
    n.outb(0x09, 0x50)
    n.outb(0x00, CR.STA | CR.RD1)
    n.bus.write(BASE + 0x10, 4, 0x44332211)
    assert n.inb(0x07) & ISR.RDC
    assert n.remote_read(0x5000, 4) == bytes.fromhex("11223344")


# --- transmit ---------------------------------------------------------------------------

def _transmit(n: Nic, data: bytes, page: int = 0x40) -> None:
    n.remote_write(page << 8, data)
    n.outb(0x04, page)
    n.outb(0x05, len(data) & 0xFF)
    n.outb(0x06, len(data) >> 8)
    n.outb(0x00, CR.STA | CR.TXP | CR.RD2)


def test_transmit_sends_buffer_and_raises_ptx():
    n = Nic()
    n.init()
    n.outb(0x0F, ISR.PTX)
    n.outb(0x07, 0xFF)
    f = frame(b"\xff" * 6, MAC, b"x" * 50)
    _transmit(n, f)
    assert n.sent == [f]
    assert n.inb(0x04) == 0x01  # TSR.PTX
    assert n.inb(0x07) & ISR.PTX
    assert not n.inb(0x00) & CR.TXP
    assert n.irq == 1
    n.outb(0x07, ISR.PTX)
    assert n.irq == 0
    assert n.irq_events == [1, 0]


def test_transmit_short_frame_is_sent_as_is():
    n = Nic()
    n.init()
    _transmit(n, b"\x01\x02\x03")
    assert n.sent == [b"\x01\x02\x03"]


def test_transmit_past_end_of_memory_is_dropped_but_reports_ptx():
    n = Nic()
    n.init()
    n.outb(0x07, 0xFF)
    n.outb(0x04, 0xBF)
    n.outb(0x05, 0x01)
    n.outb(0x06, 0x02)  # 513 bytes from 0xBF00 would run past 0xC000
    n.outb(0x00, CR.STA | CR.TXP | CR.RD2)
    assert n.sent == []
    assert n.inb(0x07) & ISR.PTX and n.inb(0x04) == 0x01


def test_transmit_page_above_memory_aliases_down_32k():
    n = Nic()
    n.init()
    n.remote_write(0x4000, b"ALIAS" + bytes(55))
    n.outb(0x04, 0xC0)  # 0xC000 - 0x8000 = 0x4000
    n.outb(0x05, 60)
    n.outb(0x06, 0)
    n.outb(0x00, CR.STA | CR.TXP | CR.RD2)
    assert n.sent[0][:5] == b"ALIAS"


def test_stopped_nic_does_not_transmit():
    n = Nic()
    n.init()
    n.remote_write(0x4000, bytes(60))
    n.outb(0x04, 0x40)
    n.outb(0x05, 60)
    n.outb(0x00, CR.STP | CR.TXP | CR.RD2)
    assert n.sent == []


# --- receive -----------------------------------------------------------------------------

def _header(n: Nic, page: int) -> tuple[int, int, int]:
    h = n.remote_read(page << 8, 4)
    return h[0], h[1], h[2] | h[3] << 8


def test_receive_unicast_into_ring_with_header():
    n = Nic()
    n.init()
    n.outb(0x0F, ISR.PRX)
    n.outb(0x07, 0xFF)
    f = frame(MAC, payload=bytes(range(200)))
    assert n.dev.receive(f) is True
    status, nxt, length = _header(n, PSTART + 1)
    assert status == RSR.PRX
    assert length == len(f) + 4
    assert nxt == PSTART + 1 + 1  # 4 + 214 + 4 bytes fit one page
    assert n.remote_read(((PSTART + 1) << 8) + 4, len(f)) == f
    n.page(1)
    assert n.inb(0x07) == nxt  # CURR advanced
    n.page(0)
    assert n.inb(0x07) & ISR.PRX and n.irq == 1


def test_receive_pads_runt_to_60_bytes():
    n = Nic()
    n.init()
    f = frame(MAC, payload=b"")  # 14 bytes
    n.dev.receive(f)
    _, _, length = _header(n, PSTART + 1)
    assert length == 64
    assert n.remote_read(((PSTART + 1) << 8) + 4, 60) == f + bytes(46)


def test_receive_multi_page_frame_next_pointer():
    n = Nic()
    n.init()
    f = frame(MAC, payload=bytes(1000))  # 1014 + 4 + 4 CRC = 1022 -> 4 pages
    n.dev.receive(f)
    _, nxt, length = _header(n, PSTART + 1)
    assert (nxt, length) == (PSTART + 1 + 4, 1018)


def test_receive_wraps_from_pstop_to_pstart():
    n = Nic()
    n.init()
    # put CURR two pages before PSTOP, BNRY well behind
    n.page(1)
    n.outb(0x07, PSTOP - 2)
    n.page(0)
    n.outb(0x03, PSTOP - 20)
    payload = bytes(random.Random(7).randrange(256) for _ in range(700))
    f = frame(MAC, payload=payload)
    assert n.dev.receive_frame(f) is RxResult.STORED
    status, nxt, length = _header(n, PSTOP - 2)
    # 4 + 714 + 4 -> 3 pages: PSTOP-2, PSTOP-1, then PSTART
    assert nxt == PSTART + 1 and length == len(f) + 4
    first = 2 * 256 - 4
    data = n.dev.state.mem
    assert bytes(data[((PSTOP - 2) << 8) + 4:PSTOP << 8]) == f[:first]
    assert bytes(data[PSTART << 8:(PSTART << 8) + len(f) - first]) == f[first:]
    # and a remote read of the whole frame wraps the same way
    assert n.remote_read(((PSTOP - 2) << 8) + 4, len(f)) == f


def test_ring_full_refuses_frame_and_sets_no_overflow():
    n = Nic()
    n.init()
    n.outb(0x07, 0xFF)
    # BNRY just ahead of CURR: less than 1518 bytes free
    n.outb(0x03, PSTART + 3)
    n.page(1)
    n.outb(0x07, PSTART + 1)
    n.page(0)
    assert n.dev.receive_frame(frame(MAC)) is RxResult.RING_FULL
    assert n.dev.receive(frame(MAC)) is False
    assert n.inb(0x07) == 0  # QEMU never raises OVW


def test_receive_fills_ring_until_boundary():
    n = Nic()
    n.init()
    results = [n.dev.receive_frame(frame(MAC, payload=bytes(1000))) for _ in range(20)]
    stored = results.count(RxResult.STORED)
    # 58-page ring (0x46..0x80), BNRY = PSTART, CURR = PSTART+1: 4 pages each while >= 1518 bytes remain
    assert results[:stored] == [RxResult.STORED] * stored and RxResult.RING_FULL in results
    assert stored == 13


def test_stopped_nic_refuses_frames():
    n = Nic()
    n.init()
    n.outb(0x00, CR.STP | CR.RD2)
    assert n.dev.receive_frame(frame(MAC)) is RxResult.STOPPED


def test_power_on_nic_refuses_frames_until_ring_programmed():
    n = Nic()
    assert n.dev.receive_frame(frame(MAC)) is RxResult.RING_FULL  # PSTART = PSTOP = 0


# --- address filtering ------------------------------------------------------------------------

def test_unicast_to_other_address_is_filtered():
    n = Nic()
    n.init()
    assert n.dev.receive_frame(frame(bytes.fromhex("525400999999"))) is RxResult.FILTERED
    n.page(1)
    assert n.inb(0x07) == PSTART + 1


def test_unicast_filter_uses_prom_not_par():
    """QEMU compares the destination with the PROM copy of the MAC, whatever PAR0..5 hold."""
    n = Nic()
    n.init()
    n.page(1)
    for i in range(6):
        n.outb(0x01 + i, 0x02)
    n.page(0)
    assert n.dev.receive_frame(frame(MAC)) is RxResult.STORED
    assert n.dev.receive_frame(frame(b"\x02" * 6)) is RxResult.FILTERED


def test_broadcast_needs_ab():
    n = Nic()
    n.init(rcr=0)
    assert n.dev.receive_frame(frame(b"\xff" * 6)) is RxResult.FILTERED
    n.outb(0x0C, RCR.AB)
    assert n.dev.receive_frame(frame(b"\xff" * 6)) is RxResult.STORED
    assert _header(n, PSTART + 1)[0] == RSR.PRX | RSR.PHY


def test_multicast_needs_am_and_hash_bit():
    group = bytes.fromhex("01005e000001")
    n = Nic()
    n.init(rcr=RCR.AM)
    assert n.dev.receive_frame(frame(group)) is RxResult.FILTERED  # MAR all zero
    # reference hash: top 6 bits of the bit-reversed, non-inverted CRC-32 (IEEE 802.3 CRC via zlib)
    crc = zlib.crc32(group) ^ 0xFFFFFFFF
    idx = int(f"{crc:032b}"[::-1], 2) >> 26
    n.page(1)
    n.outb(0x08 + (idx >> 3), 1 << (idx & 7))
    n.page(0)
    assert n.dev.receive_frame(frame(group)) is RxResult.STORED
    n.outb(0x0C, 0)
    assert n.dev.receive_frame(frame(group)) is RxResult.FILTERED


def test_mcast_hash_matches_reference_crc():
    rng = random.Random(11)
    for _ in range(200):
        addr = bytes(rng.randrange(256) for _ in range(6))
        crc = zlib.crc32(addr) ^ 0xFFFFFFFF
        assert mcast_hash_index(addr) == int(f"{crc:032b}"[::-1], 2) >> 26


def test_promiscuous_accepts_everything():
    n = Nic()
    n.init(rcr=RCR.PRO)
    for dst in (bytes.fromhex("525400999999"), bytes.fromhex("01005e000001"), b"\xff" * 6):
        assert n.dev.receive_frame(frame(dst)) is RxResult.STORED


# --- ISR / IMR / IRQ line ------------------------------------------------------------------------

def test_irq_follows_isr_and_imr():
    n = Nic()
    n.init()
    n.outb(0x07, 0xFF)
    n.dev.receive(frame(MAC))
    assert n.irq == 0  # masked
    n.outb(0x0F, ISR.PRX)
    assert n.irq == 1
    n.outb(0x0F, 0)
    assert n.irq == 0
    n.outb(0x0F, ISR.PRX | ISR.RDC)
    assert n.irq == 1
    n.outb(0x07, ISR.PRX)  # write 1 to clear
    assert n.irq == 0 and n.inb(0x07) == 0


def test_reset_bit_never_drives_irq():
    n = Nic()
    n.outb(0x0F, 0xFF)
    assert n.inb(0x07) == ISR.RST and n.irq == 0


# --- malformed programming --------------------------------------------------------------------------

def test_ring_registers_beyond_memory_are_ignored():
    n = Nic()
    n.init()
    n.outb(0x00, CR.STP | CR.RD2)
    n.outb(0x01, 0xC1)  # PSTART > 0xC0: ignored
    n.outb(0x02, 0xFF)  # PSTOP > 0xC0: ignored
    n.outb(0x03, 0xC0)  # BNRY >= 0xC0: ignored
    n.page(1)
    n.outb(0x07, 0xC0)  # CURR >= 0xC0: ignored
    assert n.inb(0x07) == PSTART + 1
    n.page(2)
    assert (n.inb(0x01), n.inb(0x02)) == (PSTART, PSTOP)
    n.page(0)
    assert n.inb(0x03) == PSTART


def test_pstop_below_pstart_refuses_frames_without_crash():
    n = Nic()
    n.init()
    n.outb(0x02, PSTART - 1)
    assert n.dev.receive_frame(frame(MAC)) is RxResult.RING_FULL


def test_curr_outside_ring_does_not_crash_and_stays_in_memory():
    n = Nic()
    n.init()
    n.page(1)
    n.outb(0x07, 0xB0)  # inside NIC memory, outside the ring 0x46..0x80
    n.page(0)
    n.outb(0x03, 0xA0)
    result = n.dev.receive_frame(frame(MAC, payload=bytes(300)))
    assert result in (RxResult.STORED, RxResult.RING_FULL)
    assert len(n.dev.state.mem) == NE2000_PMEM_END
    n.page(1)
    assert 0 <= n.inb(0x07) <= 0xFF


def test_fuzzed_port_writes_and_frames_never_raise():
    rng = random.Random(1234)
    n = Nic()
    for _ in range(10000):
        op = rng.randrange(5)
        off = rng.randrange(0x20)
        if op == 0:
            n.outb(off, rng.randrange(256))
        elif op == 1:
            n.inb(off)
        elif op == 2:
            n.bus.write(BASE + off, rng.choice((1, 2, 4)), rng.randrange(1 << 32))
        elif op == 3:
            n.bus.read(BASE + off, rng.choice((1, 2, 4)))
        else:
            n.dev.receive(rng.randbytes(rng.randrange(0, 1600)))
    assert len(n.dev.state.mem) == NE2000_PMEM_END


def test_snapshot_and_digest_cover_registers():
    n = Nic()
    n.init()
    before = n.dev.digest()
    n.dev.receive(frame(MAC))
    assert n.dev.digest() != before
    snap = n.dev.snapshot()
    assert snap["curpag"] == PSTART + 2 and len(snap["mem"]) == 2 * NE2000_PMEM_END
    assert "iobase=0x300 irq=9 mac=52:54:00:12:34:56" in n.dev.info()


def test_reset_port_leaves_irq_line_until_next_update():
    """QEMU's ne2000_reset sets ISR = RST without re-evaluating the IRQ line; the next ISR/IMR write lowers it."""
    n = Nic()
    n.init()
    n.outb(0x0F, ISR.PRX)
    n.dev.receive(frame(MAC))
    assert n.irq == 1
    n.inb(0x1F)
    assert n.inb(0x07) == ISR.RST and n.irq == 1
    n.outb(0x0F, ISR.PRX)
    assert n.irq == 0
