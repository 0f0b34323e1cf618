"""NE2000 ISA network card (National Semiconductor DP8390 core) as QEMU's ``ne2k_isa`` presents it.

Facts from QEMU 7.2 ``hw/net/ne2000.c`` / ``ne2000-isa.c`` (read, not copied) and
the DP8390D datasheet (NatSemi, "DP8390D/NS32490D Network Interface Controller",
section 10 "Internal Registers"):

* 0x20 I/O ports from ``iobase`` (default 0x300), IRQ ``irq`` (default 9):
  +0x00..+0x0F DP8390 registers (byte access only; CR bits 7:6 select page 0/1/2/3),
  +0x10 the data port of the remote DMA (8/16-bit by DCR.WTS, 32-bit for a dword
  access), +0x1F the reset port (a read resets, returns 0).  Any other aligned
  access reads all-ones and is ignored; an unaligned one (offset not a multiple
  of the size) reads 0 and is dropped (QEMU ``memory_region_access_valid``).
* 48 KiB of NIC memory: 0x0000..0x001F the PROM (MAC address, every byte doubled,
  bytes 14/15 = 0x57 'W'), 0x4000..0xBFFF the 32 KiB packet buffer (pages
  0x40..0xBF).  Remote DMA reads outside both read all-ones, writes are dropped.
* Reception stores a 4-byte header (receive status, next page, length LE16) and
  the frame, padded to 60 bytes, at CURR and advances CURR in 256-byte pages,
  wrapping from PSTOP to PSTART; a frame is refused when fewer than
  1514 + 4 bytes are free between CURR and BNRY, or the NIC is stopped.
  QEMU never sets ISR.OVW, never counts tally errors, and ignores TCR (no loopback).
* Malformed programming does what QEMU does (see ``docs/network.md``): a ring
  pointer at or past the end of NIC memory is ignored, a transmit running past
  the end of memory is silently not sent but still reports PTX, remote DMA past
  the end reads 0xFF and drops writes, the rsar wrap happens only exactly at PSTOP.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Callable, Optional

from emu import EmuError
from emu.devices.base import Device, IrqSetter
from emu.devices.bus import PortBus

# --- NIC memory map (QEMU hw/net/ne2000.h) -----------------------------------
NE2000_PMEM_SIZE = 32 * 1024
"""Size of the packet buffer RAM."""
NE2000_PMEM_START = 16 * 1024
"""First byte of the packet buffer (page 0x40)."""
NE2000_PMEM_END = NE2000_PMEM_START + NE2000_PMEM_SIZE
"""One past the last packet-buffer byte (page 0xC0)."""
NE2000_MEM_SIZE = NE2000_PMEM_END
"""Bytes of NIC memory the model keeps (PROM at 0, hole, packet buffer)."""
PROM_SIZE = 32
"""The station address PROM mapped at NIC address 0 (Novell NE2000 convention)."""

MAX_ETH_FRAME_SIZE = 1514
"""The largest frame the receive-ring space check allows for (QEMU MAX_ETH_FRAME_SIZE)."""
MIN_BUF_SIZE = 60
"""Frames shorter than this are zero-padded to it before being stored (QEMU 7.2 MIN_BUF_SIZE)."""

PORT_COUNT = 0x20
"""I/O ports the card decodes from its base."""
DATA_PORT = 0x10
"""Offset of the remote-DMA data port (NE2000 ASIC)."""
RESET_PORT = 0x1F
"""Offset of the reset port: reading it resets the card."""

DEFAULT_IOBASE = 0x300
"""QEMU ``ne2k_isa`` property ``iobase`` default."""
DEFAULT_IRQ = 9
"""QEMU ``ne2k_isa`` property ``irq`` default."""
DEFAULT_MAC = bytes.fromhex("525400123456")
"""QEMU's default MAC for the first NIC (``qemu_macaddr_default_if_unset``)."""


class CR(enum.IntFlag):
    """Command register bits (DP8390D 10.1, CR)."""

    STP = 0x01
    STA = 0x02
    TXP = 0x04
    RD0 = 0x08  # remote read
    RD1 = 0x10  # remote write
    RD2 = 0x20  # abort / complete remote DMA
    PS0 = 0x40
    PS1 = 0x80


class ISR(enum.IntFlag):
    """Interrupt status register bits (DP8390D 10.2, ISR); IMR uses the same layout."""

    PRX = 0x01
    PTX = 0x02
    RXE = 0x04
    TXE = 0x08
    OVW = 0x10
    CNT = 0x20
    RDC = 0x40
    RST = 0x80


class RSR(enum.IntFlag):
    """Receive status register / ring header status bits (DP8390D 10.8, RSR)."""

    PRX = 0x01
    CRC = 0x02
    FAE = 0x04
    FO = 0x08
    MPA = 0x10
    PHY = 0x20  # the destination was a multicast or broadcast address
    DIS = 0x40
    DFR = 0x80


class RCR(enum.IntFlag):
    """Receive configuration register bits (DP8390D 10.7, RCR)."""

    SEP = 0x01
    AR = 0x02
    AB = 0x04  # accept broadcast
    AM = 0x08  # accept multicast (through the MAR hash filter)
    PRO = 0x10  # promiscuous physical
    MON = 0x20


class DCR(enum.IntFlag):
    """Data configuration register bits (DP8390D 10.5, DCR); QEMU only looks at WTS."""

    WTS = 0x01  # word transfer select: the data port moves 16 bits
    BOS = 0x02
    LAS = 0x04
    LS = 0x08
    AR = 0x10
    FT0 = 0x20
    FT1 = 0x40


class TSR(enum.IntFlag):
    """Transmit status register bits (DP8390D 10.6, TSR); QEMU only ever reports PTX."""

    PTX = 0x01


# Register offsets by (page << 4 | offset) as QEMU decodes them.
P0_PSTART = 0x01  # write; read = CLDA0 (0 in QEMU)
P0_PSTOP = 0x02
P0_BNRY = 0x03
P0_TPSR = 0x04  # write; read = TSR
P0_TBCR0 = 0x05  # write; read = NCR (0)
P0_TBCR1 = 0x06  # write; read = FIFO (0)
P0_ISR = 0x07
P0_RSAR0 = 0x08  # read = CRDA0
P0_RSAR1 = 0x09  # read = CRDA1
P0_RBCR0 = 0x0A  # write; read = RTL8029 ID 0x50 'P'
P0_RBCR1 = 0x0B  # write; read = RTL8029 ID 0x43 'C'
P0_RCR = 0x0C  # write; read = RSR
P0_TCR = 0x0D  # write; read = CNTR0 (0)
P0_DCR = 0x0E  # write; read = CNTR1 (0)
P0_IMR = 0x0F  # write; read = CNTR2 (0)
P1_PAR0 = 0x11
P1_CURR = 0x17
P1_MAR0 = 0x18
P2_PSTART = 0x21
P2_PSTOP = 0x22
P3_CONFIG0 = 0x33
P3_CONFIG2 = 0x35
P3_CONFIG3 = 0x36

RTL8029_ID0 = 0x50
RTL8029_ID1 = 0x43


class RxResult(enum.Enum):
    """What :meth:`Ne2000.receive_frame` did with a frame."""

    STORED = "stored"  # written into the ring, ISR.PRX raised
    FILTERED = "filtered"  # taken off the wire but rejected by the address filter (RCR/MAR/PROM)
    STOPPED = "stopped"  # CR.STP set: QEMU refuses it (not delivered)
    RING_FULL = "ring_full"  # less than 1518 bytes free between CURR and BNRY (or PSTOP <= PSTART)


def mcast_hash_index(dst: bytes) -> int:
    """Multicast filter bit for ``dst``: top 6 bits of the Ethernet CRC-32 (QEMU ``net_crc32(buf, 6) >> 26``).

    The CRC register is not reflected but each byte is fed LSB first (the
    DP8390's serial order; FreeBSD ``if_ed.c`` ``ds_mchash``), poly 0x04C11DB7,
    init all-ones, no final inversion.
    """
    crc = 0xFFFFFFFF
    for b in dst[:6]:
        for _ in range(8):
            carry = ((crc >> 31) & 1) ^ (b & 1)
            crc = (crc << 1) & 0xFFFFFFFF
            b >>= 1
            if carry:
                crc ^= 0x04C11DB7
    return crc >> 26


def prom_after_reset(mem: bytes, mac: bytes) -> bytes:
    """The 32 PROM bytes QEMU's ``ne2000_reset`` leaves, given NIC memory ``mem`` before the reset.

    QEMU writes the MAC to bytes 0..5 and 0x57 to bytes 14..15 in place, then
    doubles bytes 0..15 into 0..31; bytes 6..13 keep what was there, so a second
    reset doubles parts of the first one's output (visible to a guest).
    """
    src = bytearray(mem[:16])
    src[0:6] = mac
    src[14] = src[15] = 0x57
    out = bytearray(PROM_SIZE)
    for i in range(16):
        out[2 * i] = out[2 * i + 1] = src[i]
    return bytes(out)


def _zero_mem() -> bytearray:
    return bytearray(NE2000_MEM_SIZE)


@dataclass
class Ne2000State:
    """Every NE2000 register and the NIC memory, declared once (QEMU ``vmstate_ne2000``).

    ``start``/``stop`` are byte addresses (PSTART/PSTOP << 8) as in QEMU;
    ``tcr`` is kept for dumps only (QEMU ignores TCR).
    """

    cmd: int = 0
    start: int = 0
    stop: int = 0
    boundary: int = 0
    tsr: int = 0
    tpsr: int = 0
    tcnt: int = 0
    rcnt: int = 0
    rsar: int = 0
    rsr: int = 0
    rxcr: int = 0
    isr: int = 0
    dcfg: int = 0
    imr: int = 0
    tcr: int = 0
    phys: bytearray = field(default_factory=lambda: bytearray(6))
    curpag: int = 0
    mult: bytearray = field(default_factory=lambda: bytearray(8))
    irq_level: int = 0
    mem: bytearray = field(default_factory=_zero_mem)


class Ne2000(Device):
    """The card: port handlers ``io_read``/``io_write``, ``receive`` from the wire, ``on_transmit`` to it."""

    name = "ne2000"

    def __init__(
        self,
        iobase: int = DEFAULT_IOBASE,
        irq: int = DEFAULT_IRQ,
        mac: bytes = DEFAULT_MAC,
        set_irq: Optional[IrqSetter] = None,
        on_transmit: Optional[Callable[[bytes], None]] = None,
        name: str = "ne2000",
    ):
        mac = bytes(mac)
        if len(mac) != 6:
            raise EmuError(f"ne2000: MAC address must be 6 bytes, got {len(mac)}")
        if mac[0] & 1:
            raise EmuError(f"ne2000: MAC address {format_mac(mac)} is a multicast address")
        if not 0 <= iobase <= 0x10000 - PORT_COUNT:
            raise EmuError(f"ne2000: I/O base {iobase:#x} out of range")
        if not 0 <= irq <= 15:
            raise EmuError(f"ne2000: IRQ {irq} out of range 0..15")
        self.name = name
        self.iobase = iobase
        self.PORTS = ((iobase, PORT_COUNT),)  # what Machine.add_device maps
        self.irq = irq
        self.mac = mac
        self.set_irq: IrqSetter = set_irq or (lambda level: None)
        self.on_transmit: Callable[[bytes], None] = on_transmit or (lambda frame: None)
        self.state = Ne2000State()
        self.reset()  # QEMU realize: ne2000_reset once, every other register zero

    # --- wiring ----------------------------------------------------------
    @property
    def port_range(self) -> tuple[int, int]:
        """(first port, count) the card decodes."""
        return self.iobase, PORT_COUNT

    def map(self, bus: PortBus) -> None:
        """Claim the card's ports on an :class:`emu.devices.bus.PortBus`."""
        bus.map(self.iobase, PORT_COUNT, self.io_read, self.io_write, self.name)

    # --- reset and IRQ ---------------------------------------------------
    def reset(self) -> None:
        """Reset port read / power-on (QEMU ``ne2000_reset``): ISR = RST, PROM rebuilt; other registers keep their values."""
        s = self.state
        s.isr = int(ISR.RST)
        s.mem[0:PROM_SIZE] = prom_after_reset(s.mem, self.mac)
        # QEMU does not re-evaluate the IRQ line here (RST is outside the 0x7F mask anyway).

    def _update_irq(self) -> None:
        s = self.state
        level = 1 if (s.isr & s.imr & 0x7F) else 0
        if level != s.irq_level:
            s.irq_level = level
            self.set_irq(level)

    # --- port I/O ----------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        """IN from ``port`` (absolute), ``size`` 1, 2 or 4 bytes."""
        off = (port - self.iobase) & 0xFFFF
        if off & (size - 1):
            # QEMU's memory core rejects unaligned accesses to a region without valid.unaligned:
            # the device is not called and the read yields 0 (unassigned_mem_read).
            return 0
        if off < 0x10 and size == 1:
            return self._reg_read(off)
        if off == DATA_PORT:
            return self._data_read(size)
        if off == RESET_PORT and size == 1:
            self.reset()
            return 0
        return (1 << (8 * size)) - 1

    def io_write(self, port: int, size: int, value: int) -> None:
        """OUT of ``value`` to ``port`` (absolute), ``size`` 1, 2 or 4 bytes."""
        off = (port - self.iobase) & 0xFFFF
        if off & (size - 1):
            return  # unaligned: dropped by QEMU's memory core
        if off < 0x10 and size == 1:
            self._reg_write(off, value & 0xFF)
        elif off == DATA_PORT:
            self._data_write(size, value)
        # the reset port ignores writes (end of the reset pulse); other offsets decode nothing

    def _reg_read(self, addr: int) -> int:
        s = self.state
        if addr == 0:
            return s.cmd
        offset = addr | ((s.cmd >> 6) << 4)
        if offset == P0_TPSR:
            return s.tsr
        if offset == P0_BNRY:
            return s.boundary
        if offset == P0_ISR:
            return s.isr
        if offset == P0_RSAR0:
            return s.rsar & 0xFF
        if offset == P0_RSAR1:
            return (s.rsar >> 8) & 0xFF
        if P1_PAR0 <= offset < P1_PAR0 + 6:
            return s.phys[offset - P1_PAR0]
        if offset == P1_CURR:
            return s.curpag
        if P1_MAR0 <= offset < P1_MAR0 + 8:
            return s.mult[offset - P1_MAR0]
        if offset == P0_RCR:
            return s.rsr
        if offset == P2_PSTART:
            return (s.start >> 8) & 0xFF
        if offset == P2_PSTOP:
            return (s.stop >> 8) & 0xFF
        if offset == P0_RBCR0:
            return RTL8029_ID0
        if offset == P0_RBCR1:
            return RTL8029_ID1
        if offset in (P3_CONFIG2, P3_CONFIG3):
            return 0x40
        return 0x00

    def _reg_write(self, addr: int, val: int) -> None:
        s = self.state
        if addr == 0:
            self._command(val)
            return
        offset = addr | ((s.cmd >> 6) << 4)
        if offset == P0_PSTART:
            if val << 8 <= NE2000_PMEM_END:
                s.start = val << 8
        elif offset == P0_PSTOP:
            if val << 8 <= NE2000_PMEM_END:
                s.stop = val << 8
        elif offset == P0_BNRY:
            if val << 8 < NE2000_PMEM_END:
                s.boundary = val
        elif offset == P0_IMR:
            s.imr = val
            self._update_irq()
        elif offset == P0_TPSR:
            s.tpsr = val
        elif offset == P0_TBCR0:
            s.tcnt = (s.tcnt & 0xFF00) | val
        elif offset == P0_TBCR1:
            s.tcnt = (s.tcnt & 0x00FF) | (val << 8)
        elif offset == P0_RSAR0:
            s.rsar = (s.rsar & ~0xFF) | val
        elif offset == P0_RSAR1:
            s.rsar = (s.rsar & ~0xFF00) | (val << 8)
        elif offset == P0_RBCR0:
            s.rcnt = (s.rcnt & 0xFF00) | val
        elif offset == P0_RBCR1:
            s.rcnt = (s.rcnt & 0x00FF) | (val << 8)
        elif offset == P0_RCR:
            s.rxcr = val
        elif offset == P0_TCR:
            s.tcr = val
        elif offset == P0_DCR:
            s.dcfg = val
        elif offset == P0_ISR:
            s.isr &= ~(val & 0x7F)
            self._update_irq()
        elif P1_PAR0 <= offset < P1_PAR0 + 6:
            s.phys[offset - P1_PAR0] = val
        elif offset == P1_CURR:
            if val << 8 < NE2000_PMEM_END:
                s.curpag = val
        elif P1_MAR0 <= offset < P1_MAR0 + 8:
            s.mult[offset - P1_MAR0] = val

    def _command(self, val: int) -> None:
        """CR write: store it; unless STP, clear ISR.RST, complete zero-length remote DMA, transmit."""
        s = self.state
        s.cmd = val
        if val & CR.STP:
            return
        s.isr &= ~int(ISR.RST)
        if val & (CR.RD0 | CR.RD1) and s.rcnt == 0:
            s.isr |= int(ISR.RDC)
            self._update_irq()
        if val & CR.TXP:
            index = s.tpsr << 8
            if index >= NE2000_PMEM_END:  # QEMU: "hack to make netware 3.11 work"
                index -= NE2000_PMEM_SIZE
            if index + s.tcnt <= NE2000_PMEM_END:  # QEMU's "fail safe" range check
                self.on_transmit(bytes(s.mem[index:index + s.tcnt]))
            # QEMU reports success whether or not the frame went out.
            s.tsr = int(TSR.PTX)
            s.isr |= int(ISR.PTX)
            s.cmd &= ~int(CR.TXP)
            self._update_irq()

    # --- remote DMA ----------------------------------------------------------
    @staticmethod
    def _mem_ok(addr: int, width: int) -> bool:
        if addr < PROM_SIZE:
            return True
        if width == 4:
            return addr >= NE2000_PMEM_START and addr + 4 <= NE2000_MEM_SIZE
        return NE2000_PMEM_START <= addr < NE2000_MEM_SIZE

    def _dma_update(self, length: int) -> None:
        s = self.state
        s.rsar = (s.rsar + length) & 0xFFFFFFFF
        if s.rsar == s.stop:  # wrap only exactly at PSTOP (QEMU "XXX: check what to do if rsar > stop")
            s.rsar = s.start
        if s.rcnt <= length:
            s.rcnt = 0
            s.isr |= int(ISR.RDC)
            self._update_irq()
        else:
            s.rcnt -= length

    def _data_read(self, size: int) -> int:
        s = self.state
        mem = s.mem
        if size == 4:
            addr = s.rsar & ~1
            val = struct.unpack_from("<I", mem, addr)[0] if self._mem_ok(addr, 4) else 0xFFFFFFFF
            self._dma_update(4)
        elif s.dcfg & DCR.WTS:
            addr = s.rsar & ~1
            val = mem[addr] | (mem[addr + 1] << 8) if self._mem_ok(addr, 2) else 0xFFFF
            self._dma_update(2)
        else:
            addr = s.rsar
            val = mem[addr] if self._mem_ok(addr, 1) else 0xFF
            self._dma_update(1)
        return val & ((1 << (8 * size)) - 1)

    def _data_write(self, size: int, value: int) -> None:
        s = self.state
        if s.rcnt == 0:
            return
        mem = s.mem
        if size == 4:
            addr = s.rsar & ~1
            if self._mem_ok(addr, 4):
                struct.pack_into("<I", mem, addr, value & 0xFFFFFFFF)
            self._dma_update(4)
        elif s.dcfg & DCR.WTS:
            addr = s.rsar & ~1
            if self._mem_ok(addr, 2):
                mem[addr] = value & 0xFF
                mem[addr + 1] = (value >> 8) & 0xFF
            self._dma_update(2)
        else:
            addr = s.rsar
            if self._mem_ok(addr, 1):
                mem[addr] = value & 0xFF
            self._dma_update(1)

    # --- reception -----------------------------------------------------------
    def _buffer_full(self) -> bool:
        s = self.state
        if s.stop <= s.start:
            return True
        index = s.curpag << 8
        boundary = s.boundary << 8
        if index < boundary:
            avail = boundary - index
        else:
            avail = (s.stop - s.start) - (index - boundary)
        return avail < MAX_ETH_FRAME_SIZE + 4

    def _accepts(self, frame: bytes) -> bool:
        s = self.state
        if s.rxcr & RCR.PRO:
            return True
        dst = frame[:6]
        if dst == b"\xff\xff\xff\xff\xff\xff":
            return bool(s.rxcr & RCR.AB)
        if dst[:1] and dst[0] & 1:
            if not s.rxcr & RCR.AM:
                return False
            idx = mcast_hash_index(dst)
            return bool(s.mult[idx >> 3] & (1 << (idx & 7)))
        # QEMU matches the PROM copy of the MAC (mem[0,2,..,10]), not PAR0..5.
        return dst == bytes(s.mem[0:12:2])

    def receive_frame(self, frame: bytes) -> RxResult:
        """A frame from the wire (QEMU ``ne2000_receive``): filter it and store it in the receive ring."""
        s = self.state
        if s.cmd & CR.STP:
            return RxResult.STOPPED
        if self._buffer_full():
            return RxResult.RING_FULL
        if not self._accepts(frame):
            return RxResult.FILTERED
        buf = bytes(frame)
        if len(buf) < MIN_BUF_SIZE:
            buf = buf + bytes(MIN_BUF_SIZE - len(buf))
        size = len(buf)
        mem = s.mem
        index = s.curpag << 8
        if index >= NE2000_PMEM_END:
            index = s.start
        total_len = size + 4
        nxt = index + ((total_len + 4 + 255) & ~0xFF)  # 4 more bytes for the CRC
        if nxt >= s.stop:
            nxt -= s.stop - s.start
        s.rsr = int(RSR.PRX)
        if buf[0] & 1:
            s.rsr |= int(RSR.PHY)
        mem[index] = s.rsr
        mem[index + 1] = (nxt >> 8) & 0xFF
        mem[index + 2] = total_len & 0xFF
        mem[index + 3] = (total_len >> 8) & 0xFF
        index += 4
        pos = 0
        while pos < size:
            if index > s.stop:
                break
            n = min(size - pos, s.stop - index)
            mem[index:index + n] = buf[pos:pos + n]
            pos += n
            index += n
            if index == s.stop:
                index = s.start
        s.curpag = (nxt >> 8) & 0xFF
        s.isr |= int(ISR.PRX)
        self._update_irq()
        return RxResult.STORED

    def receive(self, frame: bytes) -> bool:
        """Offer ``frame`` to the card; False when QEMU would not deliver it (stopped, ring full)."""
        return self.receive_frame(frame) in (RxResult.STORED, RxResult.FILTERED)

    # --- views ---------------------------------------------------------------
    def prom(self) -> bytes:
        """The 32 PROM bytes as a remote DMA read from address 0 returns them."""
        return bytes(self.state.mem[:PROM_SIZE])

    def info(self) -> str:
        """Register dump plus wiring (iobase, IRQ, MAC)."""
        head = f"{self.name}: iobase={self.iobase:#x} irq={self.irq} mac={format_mac(self.mac)}"
        return head + "\n" + super().info().split("\n", 1)[1]


def format_mac(mac: bytes) -> str:
    """``52:54:00:12:34:56`` form of a 6-byte address."""
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """Parse ``52:54:00:12:34:56`` (or with ``-``) into 6 bytes; EmuError when malformed."""
    parts = text.replace("-", ":").split(":")
    try:
        if len(parts) != 6 or any(len(p) != 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise EmuError(f"bad MAC address {text!r} (expected six hex pairs like 52:54:00:12:34:56)") from None
