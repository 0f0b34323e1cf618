"""ATA channels and hard disks as QEMU 7.2's PIIX3 IDE presents them (legacy ports, IRQ 14 / 15).

Behaviour follows QEMU 7.2 ``hw/ide/core.c`` (read, not copied) and ATA/ATAPI-6
(T13 1410D) and was checked against ``qemu-system-i386`` 7.2 with
``tests/devices/qemu_ide_probe.c``.  The points where QEMU differs from the
standard are kept, because a guest is compared against QEMU:

* Command block (base 0x1F0 / 0x170, +0 data .. +7 status/command) and control
  block (0x3F6 / 0x376: alternate status / device control).  Register writes
  go to both drives; writes to +1..+6 are ignored while the selected drive has
  BSY or DRQ; commands are ignored while BSY or DRQ.  Each register write keeps
  the previous value as its HOB byte (LBA48) and clears device control HOB.
* The data port moves 16 or 32 bits; an 8-bit access moves one 16-bit word and
  returns its low byte (observed).  Data reads/writes outside a DRQ phase read
  0 and are ignored.
* Reading the status register lowers the IRQ, the alternate status does not;
  writing the command register lowers it.  The IRQ is raised on completion
  unless device control nIEN is set (and the bus master Interrupt bit follows it).
* A selected absent slave reads status 0 and error 0, its other registers echo
  what was written; commands to it are ignored.  A channel with no drive reads
  0 everywhere.
* Errors: ABRT (status 0x41, error 0x04) for unknown commands **and for any
  sector range past the end of the disk** — QEMU never reports IDNF
  (``ide_sect_range_ok``).  Reads check the range before the data phase, PIO
  writes when a block has been transferred, DMA when the transfer starts.
* SRST (device control bit 2, rising edge) resets both drives at once (QEMU runs
  it from a bottom half a moment later; here it is immediate) and runs EXECUTE
  DEVICE DIAGNOSTIC: signature 1/1/0/0 (absent drive 1/1/0xFF/0xFF), error
  0x01, status 0x50, IRQ.  The selected drive is kept (SeaBIOS leaves the
  absent slave selected, so a kernel must select the master after a reset).
* IDENTIFY data is built on the first IDENTIFY and kept (word 59 keeps the
  power-on multiple count 16 even after SET MULTIPLE, as in QEMU).
* Not modelled: SMART (0xB0) and DATA SET MANAGEMENT (0x06) are aborted;
  ATAPI; QEMU's asynchronous BSY windows (requests complete at once).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from emu import EmuError
from emu.devices.ata_identify import (
    MAX_MULT_SECTORS,
    QEMU_FIRMWARE,
    QEMU_MODEL,
    Geometry,
    guess_geometry,
    identify_words,
    put_word,
    qemu_serial,
    set_identify_size,
)
from emu.devices.base import Device, IrqSetter

SECTOR = 512

# Status register (ATA-6 7.15.6).
BSY = 0x80
DRDY = 0x40
DF = 0x20
DSC = 0x10
DRQ = 0x08
ERR = 0x01
# Error register (ATA-6 7.9.6).
ERR_ABRT = 0x04
ERR_IDNF = 0x10
# Device control register (ATA-6 7.8).
DEVCTL_NIEN = 0x02
DEVCTL_SRST = 0x04
DEVCTL_HOB = 0x80
# Device/head register (ATA-6 7.10).
DEV_LBA = 0x40
DEV_DEV = 0x10
DEV_ALWAYS_ON = 0xA0
DEV_HS = 0x0F

PRIMARY = (0x1F0, 0x3F6, 14)
"""(command block base, control port, ISA IRQ) of the primary channel."""
SECONDARY = (0x170, 0x376, 15)
"""(command block base, control port, ISA IRQ) of the secondary channel."""


class Cmd(enum.IntEnum):
    """ATA command codes (ATA-6 / ACS-2 table B.2) handled for a hard disk."""

    RECALIBRATE = 0x10
    READ_SECTORS = 0x20
    READ_SECTORS_NORETRY = 0x21
    READ_SECTORS_EXT = 0x24
    READ_DMA_EXT = 0x25
    READ_NATIVE_MAX_EXT = 0x27
    READ_MULTIPLE_EXT = 0x29
    WRITE_SECTORS = 0x30
    WRITE_SECTORS_NORETRY = 0x31
    WRITE_SECTORS_EXT = 0x34
    WRITE_DMA_EXT = 0x35
    WRITE_MULTIPLE_EXT = 0x39
    WRITE_VERIFY = 0x3C
    READ_VERIFY = 0x40
    READ_VERIFY_NORETRY = 0x41
    READ_VERIFY_EXT = 0x42
    SEEK = 0x70
    EXECUTE_DEVICE_DIAGNOSTIC = 0x90
    INITIALIZE_DEVICE_PARAMETERS = 0x91
    STANDBY_IMMEDIATE_ALT = 0x94
    IDLE_IMMEDIATE_ALT = 0x95
    STANDBY_ALT = 0x96
    IDLE_ALT = 0x97
    CHECK_POWER_MODE_ALT = 0x98
    SLEEP_ALT = 0x99
    READ_MULTIPLE = 0xC4
    WRITE_MULTIPLE = 0xC5
    SET_MULTIPLE_MODE = 0xC6
    READ_DMA = 0xC8
    READ_DMA_NORETRY = 0xC9
    WRITE_DMA = 0xCA
    WRITE_DMA_NORETRY = 0xCB
    STANDBY_IMMEDIATE = 0xE0
    IDLE_IMMEDIATE = 0xE1
    STANDBY = 0xE2
    IDLE = 0xE3
    CHECK_POWER_MODE = 0xE5
    SLEEP = 0xE6
    FLUSH_CACHE = 0xE7
    FLUSH_CACHE_EXT = 0xEA
    IDENTIFY_DEVICE = 0xEC
    SET_FEATURES = 0xEF
    SECURITY_FREEZE_LOCK = 0xF5
    READ_NATIVE_MAX_ADDRESS = 0xF8


class Addr(enum.Enum):
    """Addressing of a command: 28-bit (CHS or LBA28, as the device register says) or 48-bit (HOB bytes)."""

    LBA28 = 28
    LBA48 = 48


class Transfer(enum.Enum):
    """How a read/write command moves data: PIO a sector per DRQ block, PIO multiple (SET MULTIPLE MODE count
    per block), or DMA (ATA-6 PIO data-in / data-out and DMA command protocols)."""

    PIO = "pio"
    MULTIPLE = "multiple"
    DMA = "dma"


class Direction(enum.Enum):
    """Data direction of a read/write command."""

    READ = "read"     # device -> host
    WRITE = "write"   # host -> device


@dataclass(frozen=True)
class RwCommand:
    """A row of the read/write command table (QEMU ``cmd_read_pio``, ``cmd_write_multiple``, ``cmd_read_dma`` ...)."""

    addr: Addr
    transfer: Transfer
    direction: Direction


RW_COMMANDS: dict[int, RwCommand] = {
    # opcode (ATA-6 name)                    addressing   transfer            direction
    Cmd.READ_SECTORS:              RwCommand(Addr.LBA28,  Transfer.PIO,       Direction.READ),
    Cmd.READ_SECTORS_NORETRY:      RwCommand(Addr.LBA28,  Transfer.PIO,       Direction.READ),
    Cmd.READ_SECTORS_EXT:          RwCommand(Addr.LBA48,  Transfer.PIO,       Direction.READ),
    Cmd.READ_DMA_EXT:              RwCommand(Addr.LBA48,  Transfer.DMA,       Direction.READ),
    Cmd.READ_MULTIPLE_EXT:         RwCommand(Addr.LBA48,  Transfer.MULTIPLE,  Direction.READ),
    Cmd.WRITE_SECTORS:             RwCommand(Addr.LBA28,  Transfer.PIO,       Direction.WRITE),
    Cmd.WRITE_SECTORS_NORETRY:     RwCommand(Addr.LBA28,  Transfer.PIO,       Direction.WRITE),
    Cmd.WRITE_SECTORS_EXT:         RwCommand(Addr.LBA48,  Transfer.PIO,       Direction.WRITE),
    Cmd.WRITE_DMA_EXT:             RwCommand(Addr.LBA48,  Transfer.DMA,       Direction.WRITE),
    Cmd.WRITE_MULTIPLE_EXT:        RwCommand(Addr.LBA48,  Transfer.MULTIPLE,  Direction.WRITE),
    Cmd.WRITE_VERIFY:              RwCommand(Addr.LBA28,  Transfer.PIO,       Direction.WRITE),  # no verify (QEMU)
    Cmd.READ_MULTIPLE:             RwCommand(Addr.LBA28,  Transfer.MULTIPLE,  Direction.READ),
    Cmd.WRITE_MULTIPLE:            RwCommand(Addr.LBA28,  Transfer.MULTIPLE,  Direction.WRITE),
    Cmd.READ_DMA:                  RwCommand(Addr.LBA28,  Transfer.DMA,       Direction.READ),
    Cmd.READ_DMA_NORETRY:          RwCommand(Addr.LBA28,  Transfer.DMA,       Direction.READ),
    Cmd.WRITE_DMA:                 RwCommand(Addr.LBA28,  Transfer.DMA,       Direction.WRITE),
    Cmd.WRITE_DMA_NORETRY:         RwCommand(Addr.LBA28,  Transfer.DMA,       Direction.WRITE),
}
"""READ/WRITE SECTORS, MULTIPLE, DMA and their EXT forms (ATA-6 chapter 8): all run by one handler."""

LBA48_COMMANDS = frozenset({Cmd.READ_NATIVE_MAX_EXT, Cmd.READ_VERIFY_EXT}
                           | {op for op, rw in RW_COMMANDS.items() if rw.addr is Addr.LBA48})
"""Commands whose address and count use the HOB bytes (48-bit feature set)."""


class Xfer(str, enum.Enum):
    """What happens when the PIO data buffer is exhausted (QEMU ``end_transfer_func``)."""

    STOP = "stop"
    SECTOR_READ = "sector_read"
    SECTOR_WRITE = "sector_write"
    DUMMY = "dummy"


class DmaCmd(enum.IntEnum):
    """Direction of the DMA command a drive is waiting to run."""

    NONE = 0
    READ = 1    # device -> memory
    WRITE = 2   # memory -> device


class DmaProvider(Protocol):
    """The engine that moves DMA data for a channel (QEMU ``IDEDMAOps``): bus master IDE, or another."""

    def start_dma(self, drive: "AtaDrive") -> None:
        """``drive`` has a READ/WRITE DMA command ready; move its data when the engine is started."""

    def irq_raised(self) -> None:
        """The channel raised its interrupt line (bus master IDE sets BMIS Interrupt)."""

    def drain(self) -> None:
        """Finish a transfer in flight now (QEMU ``ide_cancel_dma_sync`` waits for it to complete)."""

    def cancel(self) -> None:
        """Forget a DMA command that has not started moving data."""

    def reset(self) -> None:
        """Controller reset: registers to power-on values."""


class Backing(Protocol):
    """What a drive needs from its disk: ``emu.storage.source.SectorSource`` plus optional write/flush."""

    sector_size: int
    sectors: int

    def read(self, lba: int, count: int) -> bytes:
        """``count`` sectors from ``lba``."""


@dataclass
class DriveState:
    """Registers and transfer state of one drive (QEMU ``IDEState``)."""

    present: bool = False
    status: int = 0
    error: int = 0
    feature: int = 0
    nsector: int = 0
    sector: int = 0
    lcyl: int = 0
    hcyl: int = 0
    hob_feature: int = 0
    hob_nsector: int = 0
    hob_sector: int = 0
    hob_lcyl: int = 0
    hob_hcyl: int = 0
    select: int = DEV_ALWAYS_ON
    lba48: bool = False
    mult_sectors: int = MAX_MULT_SECTORS
    req_nb_sectors: int = 0
    end_transfer: Xfer = Xfer.DUMMY
    data_pos: int = 0
    data_end: int = 0
    io_buffer: bytearray = field(default_factory=bytearray)
    dma_cmd: DmaCmd = DmaCmd.NONE
    identify: bytearray = field(default_factory=bytearray)
    sectors: int = 0
    read_only: bool = False
    attached: bool = False


@dataclass
class ChannelState:
    """Channel registers: selected drive, device control, IRQ line, and both drives."""

    unit: int = 0
    devctl: int = 0
    irq_level: int = 0
    drives: list[DriveState] = field(default_factory=list)


class AtaDrive:
    """One ATA hard disk on a channel (master = unit 0, slave = unit 1)."""

    def __init__(self, channel: "AtaChannel", unit: int, backing: Optional[Any], serial: str,
                 model: str, firmware: str, read_only: bool):
        self.channel = channel
        self.unit = unit
        self.serial = serial
        self.model = model
        self.firmware = firmware
        self.backing: Optional[Any] = None
        self.geometry = Geometry(0, 0, 0)
        self.st = DriveState()
        if backing is not None:
            self.st.present = True
            self.attach(backing, read_only=read_only)
            sector0 = backing.read(0, 1) if backing.sectors else b""
            self.geometry = guess_geometry(backing.sectors, sector0)

    # --- media ---------------------------------------------------------------
    def attach(self, backing: Any, read_only: Optional[bool] = None) -> None:
        """Give the drive its disk (again); capacity words follow the new size (QEMU ``ide_resize_cb``)."""
        if not self.st.present:
            raise EmuError(f"{self.channel.name}: no drive at unit {self.unit} to attach a disk to")
        if getattr(backing, "sector_size", SECTOR) != SECTOR:
            raise EmuError(f"{self.channel.name}: disk sector size must be {SECTOR}")
        self.backing = backing
        self.st.attached = True
        self.st.sectors = int(backing.sectors)
        if read_only is not None:
            self.st.read_only = read_only
        if self.st.identify:
            set_identify_size(self.st.identify, self.st.sectors)

    def insert(self, backing: Any, read_only: bool = True) -> None:
        """Hot-plug a disk into an empty position (the management-partition mount of patent FIG. 3); the
        drive then answers like one present from power-on (IDENTIFY data is built on first use)."""
        if self.st.present:
            raise EmuError(f"{self.channel.name}: unit {self.unit} already has a drive")
        self.st.present = True
        self.st.identify = bytearray()
        self.attach(backing, read_only=read_only)
        sector0 = backing.read(0, 1) if backing.sectors else b""
        self.geometry = guess_geometry(backing.sectors, sector0)
        self.reset()

    def eject(self) -> Any:
        """Undo :meth:`insert`: the position is empty again; returns the disk (refused while busy)."""
        backing = self.detach()
        self.st.present = False
        self.st.identify = bytearray()
        self.reset()
        return backing

    def detach(self) -> Any:
        """Take the disk away (trap handler remap); refused while a command or DMA is in progress."""
        if self.busy or self.channel.dma_busy():
            raise EmuError(f"{self.channel.name}: unit {self.unit} is busy (status {self.st.status:#04x}); cannot detach")
        backing, self.backing = self.backing, None
        self.st.attached = False
        return backing

    @property
    def busy(self) -> bool:
        """BSY or DRQ set: a command or a data phase is in progress."""
        return bool(self.st.status & (BSY | DRQ))

    @property
    def writable(self) -> bool:
        """Writes can reach the disk (attached, not read-only, backing has ``write``)."""
        b = self.backing
        return (b is not None and not self.st.read_only and hasattr(b, "write")
                and not getattr(b, "read_only", False))

    # --- addressing (QEMU ide_get_sector / ide_set_sector) -------------------------
    def get_sector(self) -> int:
        """The address in the task file registers (LBA28, LBA48 or CHS)."""
        s = self.st
        if s.select & DEV_LBA:
            if s.lba48:
                return (s.hob_hcyl << 40 | s.hob_lcyl << 32 | s.hob_sector << 24
                        | s.hcyl << 16 | s.lcyl << 8 | s.sector)
            return (s.select & DEV_HS) << 24 | s.hcyl << 16 | s.lcyl << 8 | s.sector
        g = self.geometry
        return ((s.hcyl << 8 | s.lcyl) * g.heads * g.sectors + (s.select & DEV_HS) * g.sectors
                + (s.sector - 1))

    def set_sector(self, num: int) -> None:
        """Write ``num`` back into the task file in the current addressing mode."""
        s = self.st
        if s.select & DEV_LBA:
            if s.lba48:
                s.sector, s.lcyl, s.hcyl = num & 0xFF, (num >> 8) & 0xFF, (num >> 16) & 0xFF
                s.hob_sector, s.hob_lcyl, s.hob_hcyl = (num >> 24) & 0xFF, (num >> 32) & 0xFF, (num >> 40) & 0xFF
            else:
                s.select = (s.select & ~DEV_HS) | ((num >> 24) & DEV_HS)
                s.hcyl, s.lcyl, s.sector = (num >> 16) & 0xFF, (num >> 8) & 0xFF, num & 0xFF
        else:
            g = self.geometry
            per_cyl = g.heads * g.sectors
            cyl, r = divmod(num, per_cyl) if per_cyl else (0, 0)
            s.hcyl, s.lcyl = (cyl >> 8) & 0xFF, cyl & 0xFF
            s.select = (s.select & ~DEV_HS) | ((r // g.sectors if g.sectors else 0) & DEV_HS)
            s.sector = (r % g.sectors if g.sectors else 0) + 1

    def range_ok(self, lba: int, count: int) -> bool:
        """QEMU ``ide_sect_range_ok``: the whole range lies on the disk."""
        total = self.st.sectors if self.backing is not None else 0
        return self.backing is not None and lba >= 0 and not (lba > total or count > total - lba)

    def lba48_transform(self, lba48: bool) -> None:
        """Fix the addressing mode and turn a count of 0 into 256 (LBA28) or 65536 (LBA48)."""
        s = self.st
        s.lba48 = lba48
        if not lba48:
            if not s.nsector:
                s.nsector = 256
        elif not s.nsector and not s.hob_nsector:
            s.nsector = 65536
        else:
            s.nsector = (s.hob_nsector << 8) | s.nsector

    # --- reset ----------------------------------------------------------------
    def set_signature(self) -> None:
        """Device signature after reset / diagnostic (ATA-6 9.12): 1, 1, 0, 0; absent drive 0xFF/0xFF."""
        s = self.st
        s.select &= ~DEV_HS
        s.nsector = 1
        s.sector = 1
        s.lcyl = s.hcyl = 0 if s.present else 0xFF

    def reset(self) -> None:
        """QEMU ``ide_reset``: registers, multiple count 16, signature, no transfer."""
        s = self.st
        s.mult_sectors = MAX_MULT_SECTORS
        s.feature = s.error = s.nsector = s.sector = s.lcyl = s.hcyl = 0
        s.hob_feature = s.hob_sector = s.hob_nsector = s.hob_lcyl = s.hob_hcyl = 0
        s.select = DEV_ALWAYS_ON
        s.status = DRDY | DSC
        s.lba48 = False
        s.req_nb_sectors = 0
        s.dma_cmd = DmaCmd.NONE
        self.set_signature()
        s.end_transfer = Xfer.DUMMY
        self._dummy_transfer_stop()

    # --- PIO transfer machinery -------------------------------------------------
    def transfer_start(self, size: int, end: Xfer) -> None:
        """Open a data phase of ``size`` bytes of ``io_buffer``; DRQ unless the command failed."""
        s = self.st
        s.data_pos = 0
        s.data_end = size
        s.end_transfer = end
        if not s.status & ERR:
            s.status |= DRQ

    def transfer_stop(self) -> None:
        """Close the data phase."""
        s = self.st
        s.end_transfer = Xfer.STOP
        s.data_pos = s.data_end = 0
        s.status &= ~DRQ

    def _dummy_transfer_stop(self) -> None:
        s = self.st
        s.data_pos = s.data_end = 0
        s.io_buffer = bytearray(b"\xff" * 4)

    def abort(self) -> None:
        """Command aborted: status DRDY|ERR (0x41), error ABRT."""
        self.transfer_stop()
        self.st.status = DRDY | ERR
        self.st.error = ERR_ABRT

    def rw_error(self) -> None:
        """A read/write that cannot be done: abort and interrupt (QEMU ``ide_rw_error``)."""
        self.abort()
        self.channel.raise_irq()

    def end_transfer(self) -> None:
        """The guest moved the last byte of the data phase."""
        end = self.st.end_transfer
        if end is Xfer.SECTOR_READ:
            self.sector_read()
        elif end is Xfer.SECTOR_WRITE:
            self.sector_write()
        elif end is Xfer.STOP:
            self.transfer_stop()
        else:
            self._dummy_transfer_stop()

    def sector_read(self) -> None:
        """Load the next block of a PIO read into the buffer, advance the address, DRQ and IRQ."""
        s = self.st
        s.status = DRDY | DSC
        s.error = 0
        lba = self.get_sector()
        n = s.nsector
        if n == 0:
            self.transfer_stop()
            return
        s.status |= BSY
        n = min(n, s.req_nb_sectors)
        if not self.range_ok(lba, n):
            self.rw_error()
            return
        try:
            data = self.backing.read(lba, n)
        except Exception:  # storage failure: the guest sees a failed command
            self.rw_error()
            return
        s.io_buffer = bytearray(data)
        s.status &= ~BSY
        self.set_sector(lba + n)
        s.nsector -= n
        self.transfer_start(n * SECTOR, Xfer.SECTOR_READ)
        self.channel.raise_irq()

    def sector_write(self) -> None:
        """Commit a block written by PIO; open the next block or finish; IRQ per block."""
        s = self.st
        s.status = DRDY | DSC | BSY
        lba = self.get_sector()
        n = min(s.nsector, s.req_nb_sectors)
        if not self.range_ok(lba, n) or not self.writable:
            self.rw_error()
            return
        try:
            self.backing.write(lba, memoryview(s.io_buffer)[:n * SECTOR])
        except Exception:
            self.rw_error()
            return
        s.status &= ~BSY
        s.nsector -= n
        self.set_sector(lba + n)
        if s.nsector == 0:
            self.transfer_stop()
        else:
            self._open_write_block(min(s.nsector, s.req_nb_sectors))
        self.channel.raise_irq()

    def _open_write_block(self, n: int) -> None:
        self.st.io_buffer = bytearray(n * SECTOR)
        self.transfer_start(n * SECTOR, Xfer.SECTOR_WRITE)

    # --- data port ---------------------------------------------------------------
    def data_read(self, size: int) -> int:
        """Read 2 or 4 bytes of PIO data (0 outside a device-to-host data phase)."""
        s = self.st
        if not s.status & DRQ or s.end_transfer is Xfer.SECTOR_WRITE:
            return 0
        p = s.data_pos
        if p + size > s.data_end:
            return 0
        value = int.from_bytes(s.io_buffer[p:p + size], "little")
        s.data_pos = p + size
        if s.data_pos >= s.data_end:
            s.status &= ~DRQ
            self.end_transfer()
        return value

    def data_write(self, size: int, value: int) -> None:
        """Write 2 or 4 bytes of PIO data (ignored outside a host-to-device data phase)."""
        s = self.st
        if not s.status & DRQ or s.end_transfer is not Xfer.SECTOR_WRITE:
            return
        p = s.data_pos
        if p + size > s.data_end:
            return
        s.io_buffer[p:p + size] = value.to_bytes(size, "little")
        s.data_pos = p + size
        if s.data_pos >= s.data_end:
            s.status &= ~DRQ
            self.end_transfer()

    # --- DMA side of the provider interface ------------------------------------------
    def start_dma(self, cmd: DmaCmd) -> None:
        """READ/WRITE DMA accepted: DRDY|DSC|DRQ until the engine finishes (QEMU ``ide_sector_start_dma``)."""
        self.st.status = DRDY | DSC | DRQ
        self.st.dma_cmd = cmd
        if self.channel.dma is not None:
            self.channel.dma.start_dma(self)

    @property
    def dma_bytes(self) -> int:
        """Bytes the pending DMA command moves."""
        return self.st.nsector * SECTOR

    def dma_check(self) -> bool:
        """The pending DMA can run: range on the disk, and writable for a write."""
        if not self.range_ok(self.get_sector(), self.st.nsector):
            return False
        return self.st.dma_cmd is not DmaCmd.WRITE or self.writable

    def dma_read_disk(self) -> bytes:
        """All the sectors a READ DMA delivers (raises on a storage failure)."""
        return self.backing.read(self.get_sector(), self.st.nsector)

    def dma_write_disk(self, data: bytes | bytearray | memoryview) -> None:
        """Store the sectors a WRITE DMA collected (raises on a storage failure)."""
        self.backing.write(self.get_sector(), data)

    def dma_short(self) -> None:
        """PRDs describe less than the transfer: DRDY|DSC, no data, no IRQ (QEMU ``ide_dma_cb``)."""
        self.st.status = DRDY | DSC
        self.st.dma_cmd = DmaCmd.NONE

    def dma_error(self) -> None:
        """The DMA failed: ABRT and IRQ (QEMU ``ide_dma_error``)."""
        self.st.dma_cmd = DmaCmd.NONE
        self.abort()
        self.channel.raise_irq()

    def dma_done(self) -> None:
        """All data moved: advance the address, count 0, DRDY|DSC and IRQ."""
        s = self.st
        self.set_sector(self.get_sector() + s.nsector)
        s.nsector = 0
        s.dma_cmd = DmaCmd.NONE
        s.status = DRDY | DSC
        self.channel.raise_irq()

    # --- commands (each returns True when the generic completion should run) ------------
    def _cmd_nop(self, cmd: int) -> bool:
        return True

    def _cmd_identify(self, cmd: int) -> bool:
        if not self.st.present:
            self.abort()
            return True
        if not self.st.identify:
            self.st.identify = identify_words(self.st.sectors, self.geometry, self.serial, self.model,
                                              self.firmware, self.st.mult_sectors)
        self.st.io_buffer = bytearray(self.st.identify)
        self.st.status = DRDY | DSC
        self.transfer_start(SECTOR, Xfer.STOP)
        self.channel.raise_irq()
        return False

    def _cmd_read_write(self, cmd: int) -> bool:
        """READ/WRITE SECTORS, MULTIPLE, DMA and their EXT forms: the row of :data:`RW_COMMANDS` says how."""
        rw = RW_COMMANDS[cmd]
        if rw.transfer is Transfer.DMA:
            return self._rw_dma(rw)
        return self._rw_pio(rw)

    def _rw_pio(self, rw: RwCommand) -> bool:
        """PIO data-in / data-out protocol (ATA-6): DRQ blocks of one sector, or of the multiple count (0: ABRT)."""
        s = self.st
        block = s.mult_sectors if rw.transfer is Transfer.MULTIPLE else 1
        if not s.present or not block:
            self.abort()
            return True
        self.lba48_transform(rw.addr is Addr.LBA48)
        s.req_nb_sectors = block
        if rw.direction is Direction.READ:
            self.sector_read()
        else:
            s.status = DSC | DRDY
            self._open_write_block(min(s.nsector, block))
        return False

    def _rw_dma(self, rw: RwCommand) -> bool:
        """DMA command protocol (ATA-6): DRQ up until the DMA engine has moved the whole count."""
        if not self.st.present:
            self.abort()
            return True
        self.lba48_transform(rw.addr is Addr.LBA48)
        self.start_dma(DmaCmd.READ if rw.direction is Direction.READ else DmaCmd.WRITE)
        return False

    def _cmd_set_multiple(self, cmd: int) -> bool:
        n = self.st.nsector & 0xFF
        if n and (n > MAX_MULT_SECTORS or n & (n - 1)):
            self.abort()
        else:
            self.st.mult_sectors = n
        return True

    def _cmd_flush(self, cmd: int) -> bool:
        flush = getattr(self.backing, "flush", None)
        if flush is not None and self.writable:
            try:
                flush()
            except Exception:
                self.rw_error()
                return False
        self.st.status = DRDY | DSC
        self.channel.raise_irq()
        return False

    def _cmd_verify(self, cmd: int) -> bool:
        self.lba48_transform(cmd in LBA48_COMMANDS)
        return True

    def _cmd_read_native_max(self, cmd: int) -> bool:
        if self.st.sectors == 0:
            self.abort()
            return True
        self.lba48_transform(cmd in LBA48_COMMANDS)
        self.set_sector(self.st.sectors - 1)
        return True

    def _cmd_check_power_mode(self, cmd: int) -> bool:
        self.st.nsector = 0xFF  # active or idle
        return True

    def _cmd_freeze_lock(self, cmd: int) -> bool:
        self.st.nsector = 0  # QEMU treats 0xF5 as CFA WEAR LEVEL
        return True

    def _cmd_diagnostic(self, cmd: int) -> bool:
        self.set_signature()
        self.st.status = DRDY | DSC
        self.st.error = 0x01  # device 0 passed, device 1 passed or absent
        self.channel.raise_irq()
        return False

    def _cmd_set_features(self, cmd: int) -> bool:
        s = self.st
        if not s.present:
            self.abort()
            return True
        feature = s.feature
        ident = s.identify
        if feature == 0x02:      # enable write cache
            if ident:
                put_word(ident, 85, (1 << 14) | (1 << 5) | 1)
            return True
        if feature == 0x82:      # disable write cache (and flush)
            if ident:
                put_word(ident, 85, (1 << 14) | 1)
            s.status |= BSY
            return self._cmd_flush(cmd)
        if feature in (0xCC, 0x66, 0xAA, 0x55, 0x05, 0x85, 0x69, 0x67, 0x96, 0x9A, 0x42, 0xC2):
            return True
        if feature == 0x03:      # set transfer mode (count = mode)
            val = s.nsector & 0x07
            kind = (s.nsector & 0xFF) >> 3
            words = {0x00: (0x07, 0x07, 0x3F), 0x01: (0x07, 0x07, 0x3F),
                     0x02: (0x07 | 1 << (val + 8), 0x07, 0x3F),
                     0x04: (0x07, 0x07 | 1 << (val + 8), 0x3F),
                     0x08: (0x07, 0x07, 0x3F | 1 << (val + 8))}.get(kind)
            if words is not None:
                if ident:
                    for word, value in zip((62, 63, 88), words):
                        put_word(ident, word, value)
                return True
        self.abort()
        return True


_DSC = 1
"""Command table flag: set DSC on successful completion (QEMU SET_DSC)."""

Handler = Callable[[AtaDrive, int], bool]
"""A command handler: True when the generic completion (clear BSY, DSC per flags, IRQ) should run."""

POWER_COMMANDS: dict[int, tuple[Handler, int]] = {
    Cmd.STANDBY_IMMEDIATE:  (AtaDrive._cmd_nop, 0),
    Cmd.IDLE_IMMEDIATE:     (AtaDrive._cmd_nop, 0),
    Cmd.STANDBY:            (AtaDrive._cmd_nop, 0),
    Cmd.IDLE:               (AtaDrive._cmd_nop, 0),
    Cmd.CHECK_POWER_MODE:   (AtaDrive._cmd_check_power_mode, _DSC),
    Cmd.SLEEP:              (AtaDrive._cmd_nop, 0),
}
"""Power management feature set (ATA-6); each also answers at its ATA-1 opcode (``Cmd.*_ALT``, 0x94-0x99)."""

COMMANDS: dict[int, tuple[Handler, int]] = {
    **{op: (AtaDrive._cmd_read_write, 0) for op in RW_COMMANDS},
    **POWER_COMMANDS,
    **{Cmd[f"{op.name}_ALT"]: entry for op, entry in POWER_COMMANDS.items()},
    Cmd.RECALIBRATE:                   (AtaDrive._cmd_nop, _DSC),
    Cmd.SEEK:                          (AtaDrive._cmd_nop, _DSC),
    Cmd.INITIALIZE_DEVICE_PARAMETERS:  (AtaDrive._cmd_nop, _DSC),
    Cmd.READ_VERIFY:                   (AtaDrive._cmd_verify, _DSC),
    Cmd.READ_VERIFY_NORETRY:           (AtaDrive._cmd_verify, _DSC),
    Cmd.READ_VERIFY_EXT:               (AtaDrive._cmd_verify, _DSC),
    Cmd.READ_NATIVE_MAX_ADDRESS:       (AtaDrive._cmd_read_native_max, _DSC),
    Cmd.READ_NATIVE_MAX_EXT:           (AtaDrive._cmd_read_native_max, _DSC),
    Cmd.EXECUTE_DEVICE_DIAGNOSTIC:     (AtaDrive._cmd_diagnostic, 0),
    Cmd.SET_MULTIPLE_MODE:             (AtaDrive._cmd_set_multiple, _DSC),
    Cmd.FLUSH_CACHE:                   (AtaDrive._cmd_flush, 0),
    Cmd.FLUSH_CACHE_EXT:               (AtaDrive._cmd_flush, 0),
    Cmd.IDENTIFY_DEVICE:               (AtaDrive._cmd_identify, 0),
    Cmd.SET_FEATURES:                  (AtaDrive._cmd_set_features, _DSC),
    Cmd.SECURITY_FREEZE_LOCK:          (AtaDrive._cmd_freeze_lock, _DSC),
}
"""Hard disk commands QEMU 7.2 accepts (``ide_cmd_table``, HD_OK), minus SMART and DSM; the rest abort."""

class AtaChannel(Device):
    """One IDE channel: command block, control block, IRQ line, master and slave drives."""

    def __init__(self, primary: bool = True, set_irq: Optional[IrqSetter] = None,
                 master: Optional[Any] = None, slave: Optional[Any] = None,
                 master_read_only: bool = False, slave_read_only: bool = False,
                 serials: tuple[str, str] | None = None, model: str = QEMU_MODEL,
                 firmware: str = QEMU_FIRMWARE, post_bios: bool = True, name: Optional[str] = None):
        self.primary = primary
        self.base, self.ctrl_port, self.irq = PRIMARY if primary else SECONDARY
        self.name = name or ("ide0" if primary else "ide1")
        self.set_irq: IrqSetter = set_irq or (lambda level: None)
        self.dma: Optional[DmaProvider] = None
        first = 1 if primary else 3
        serials = serials or (qemu_serial(first), qemu_serial(first + 1))
        self.drives = [AtaDrive(self, 0, master, serials[0], model, firmware, master_read_only),
                       AtaDrive(self, 1, slave, serials[1], model, firmware, slave_read_only)]
        self.state = ChannelState(drives=[d.st for d in self.drives])
        self.reset()
        if post_bios:
            self._seabios_leftovers()

    # --- wiring ---------------------------------------------------------------
    def port_ranges(self) -> list[tuple[int, int]]:
        """(first port, count) pairs: the command block and the control port."""
        return [(self.base, 8), (self.ctrl_port, 1)]

    def map(self, bus) -> None:
        """Claim the channel's ports on an :class:`emu.devices.bus.PortBus`."""
        for base, count in self.port_ranges():
            bus.map(base, count, self.io_read, self.io_write, self.name)

    def reset(self) -> None:
        """Controller reset (QEMU ``ide_bus_reset``): master selected, device control 0, drives reset."""
        self.state.unit = 0
        self.state.devctl = 0
        for d in self.drives:
            d.reset()
        if self.dma is not None:
            self.dma.reset()

    def _seabios_leftovers(self) -> None:
        """State SeaBIOS leaves for the kernel: the slave selected (observed under QEMU 7.2)."""
        self.state.unit = 1
        for d in self.drives:
            s = d.st
            s.select = 0xB0
            s.nsector = s.sector = s.lcyl = s.hcyl = 0
            s.error = 0

    # --- status for the trap handler ---------------------------------------------
    @property
    def selected(self) -> AtaDrive:
        """The drive the device/head register selects."""
        return self.drives[self.state.unit]

    @property
    def busy(self) -> bool:
        """Any drive has BSY or DRQ (a command or a data phase in progress)."""
        return any(d.busy for d in self.drives)

    def dma_busy(self) -> bool:
        """A DMA command is waiting for or using the engine."""
        return any(d.st.dma_cmd is not DmaCmd.NONE for d in self.drives)

    # --- interrupt line -----------------------------------------------------------
    def raise_irq(self) -> None:
        """Interrupt the host unless nIEN; the DMA provider sees every raise (QEMU ``ide_set_irq``)."""
        if self.state.devctl & DEVCTL_NIEN:
            return
        if self.dma is not None:
            self.dma.irq_raised()
        if not self.state.irq_level:
            self.state.irq_level = 1
            self.set_irq(1)

    def lower_irq(self) -> None:
        """Deassert the interrupt line."""
        if self.state.irq_level:
            self.state.irq_level = 0
            self.set_irq(0)

    # --- port I/O ----------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        """IN from the command block or the alternate status port."""
        if port == self.base:  # the data port: the PIO hot path
            drive = self.drives[self.state.unit]
            return drive.data_read(2) & 0xFF if size == 1 else drive.data_read(size)
        if port == self.ctrl_port:
            return self._alt_status() | (0xFFFFFF00 & ((1 << (8 * size)) - 1))
        reg = port - self.base
        value = 0
        for i in range(size):
            byte = self._reg_read(reg + i) if reg + i < 8 else 0xFF
            value |= byte << (8 * i)
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        """OUT to the command block or the device control port."""
        if port == self.ctrl_port:
            self._ctrl_write(value & 0xFF)
            return
        reg = port - self.base
        if reg == 0:
            if size == 1:
                self.selected.data_write(2, value & 0xFF)
            else:
                self.selected.data_write(size, value)
            return
        for i in range(size):
            if reg + i < 8:
                self._reg_write(reg + i, (value >> (8 * i)) & 0xFF)

    def _no_drives(self) -> bool:
        return not self.drives[0].st.present and not self.drives[1].st.present

    def _absent_selected(self) -> bool:
        return self.state.unit == 1 and not self.drives[1].st.present

    def _alt_status(self) -> int:
        if self._no_drives() or self._absent_selected():
            return 0
        return self.selected.st.status

    def _reg_read(self, reg: int) -> int:
        s = self.selected.st
        hob = self.state.devctl & DEVCTL_HOB
        if reg == 7:
            value = self._alt_status()
            self.lower_irq()
            return value
        if self._no_drives():
            return 0
        if reg == 1:
            if self._absent_selected():
                return 0
            return s.hob_feature if hob else s.error
        if reg == 2:
            return s.hob_nsector if hob else s.nsector & 0xFF
        if reg == 3:
            return s.hob_sector if hob else s.sector
        if reg == 4:
            return s.hob_lcyl if hob else s.lcyl
        if reg == 5:
            return s.hob_hcyl if hob else s.hcyl
        return s.select

    _REG_FIELDS = {1: ("feature", "hob_feature"), 2: ("nsector", "hob_nsector"), 3: ("sector", "hob_sector"),
                   4: ("lcyl", "hob_lcyl"), 5: ("hcyl", "hob_hcyl")}

    def _reg_write(self, reg: int, val: int) -> None:
        if reg != 7 and self.selected.st.status & (BSY | DRQ):
            return
        self.state.devctl &= ~DEVCTL_HOB
        if reg == 7:
            self.lower_irq()
            self._command(val)
        elif reg == 6:
            for d in self.drives:
                d.st.select = val | DEV_ALWAYS_ON
            self.state.unit = 1 if val & DEV_DEV else 0
        else:
            name, hob_name = self._REG_FIELDS[reg]
            for d in self.drives:
                setattr(d.st, hob_name, getattr(d.st, name) & 0xFF)
                setattr(d.st, name, val)

    def _command(self, val: int) -> None:
        """Execute an ATA command on the selected drive (QEMU ``ide_exec_cmd``)."""
        d = self.selected
        s = d.st
        if d.unit == 1 and not s.present:
            return
        if s.status & (BSY | DRQ):
            return
        entry = COMMANDS.get(val)
        if entry is None:
            d.abort()
            self.raise_irq()
            return
        handler, flags = entry
        s.status = DRDY | BSY
        s.error = 0
        if handler(d, val):
            s.status &= ~BSY
            if flags & _DSC and not s.error:
                s.status |= DSC
            self.raise_irq()

    def _ctrl_write(self, val: int) -> None:
        st = self.state
        if not st.devctl & DEVCTL_SRST and val & DEVCTL_SRST:
            for d in self.drives:
                d.st.status |= BSY
            st.devctl = val
            self._soft_reset()
            st.devctl &= ~DEVCTL_SRST
        else:
            st.devctl = val

    def _soft_reset(self) -> None:
        """SRST: halt PIO, let DMA in flight finish (QEMU drains it), reset, run the diagnostic."""
        if self.dma is not None:
            self.dma.drain()
            self.dma.cancel()
        for d in self.drives:
            d.st.status |= BSY
            d.transfer_stop()
            d.reset()
            d._cmd_diagnostic(Cmd.EXECUTE_DEVICE_DIAGNOSTIC)
