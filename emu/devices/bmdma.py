"""Bus master IDE (PIIX3 BMIBA block) and its DMA engine, paced in guest instructions.

Registers (82371SB PIIX3 datasheet 2.7; QEMU 7.2 ``hw/ide/pci.c``/``piix.c``
read, not copied; values checked under ``qemu-system-i386`` 7.2), 8 bytes per
channel from the BAR4 base (primary +0, secondary +8):

* +0 BMIC, byte only: bit 0 Start/Stop Bus Master, bit 3 direction (1 = write
  to memory, READ DMA).  Reads back ``val & 0x09``.
* +2 BMIS, byte only: bit 0 Active (read-only), bit 1 Error and bit 2 Interrupt
  (write 1 to clear), bits 5/6 drive 0/1 DMA capable (read/write), bit 7
  simplex (0).  ``new = (val & 0x60) | (old & 0x01) | (old & ~val & 0x06)``.
* +1, +3 read 0xFF; a 16/32-bit access to +0..+3 reads all-ones and is ignored
  (QEMU ``bmdma_read``/``bmdma_write`` accept size 1 only).
* +4 BMIDTP, any width: PRD table address, bits 1:0 forced to 0.

PRD walking (QEMU ``bmdma_prepare_buf``): 8-byte entries (base, count | EOT
bit 31); count bits 15:1, 0 means 64 KiB; the walk stops at EOT or after 4 KiB
of table (512 entries) and always consumes the whole table.  An entry whose
buffer crosses a 64 KiB boundary (which a real PIIX forbids) is accepted and
recorded in :attr:`BusMasterIde.warnings`.

Outcome, as the Intel truth table and QEMU 7.2 give it (BMIS bits I = Interrupt,
A = Active): PRDs exactly the transfer -> I=1 A=0 (0x04); larger -> I=1 A=1
(0x05) until Start is cleared; smaller -> no data is moved, ATA status 0x50,
no IRQ, I=0 A=0.  A sector range past the end -> ATA ABRT (0x41/0x04), IRQ,
I=1 A=0.  nIEN suppresses the IRQ and therefore the Interrupt bit.

Deliberate differences from QEMU (documented in docs/devices-ide.md):

* **Pacing.** QEMU finishes a transfer as fast as the host allows; here entry
  *k* of the scatter list completes ``ceil(len_k / bytes_per_insn)`` guest
  instructions after entry *k-1* (one clock timer per entry, data copied in one
  slice per entry), so Active is visibly set for a deterministic window.
* **DMA outside guest RAM** sets BMIS Error (QEMU ignores it silently) and
  never touches host memory.  A PRD table entry outside RAM ends the table
  there (Error); if the entries read so far do not cover the transfer, this
  is Intel's "bus error" row: no data, ATA 0x50, no IRQ, BMIS 0x02.  A data
  buffer outside RAM is skipped (Error): a READ DMA leaves memory alone, a
  WRITE DMA stores zeros for it, as QEMU's unassigned reads give; the
  transfer then completes as in QEMU (ATA 0x50, IRQ), so BMIS reads 0x06.
  A buffer only partly in RAM is split in 4 KiB-aligned pieces: the pieces in
  RAM are transferred (as QEMU maps the RAM part directly), only the rest is
  skipped (checked against QEMU by the ``ide_slots`` kernel).

Kept from QEMU: clearing Start while a transfer is in flight completes it at
once (QEMU drains the request: the data arrives, the IRQ fires); with the PCI
command register's bus master bit clear, the engine sees memory as all zeros
and its writes are dropped (QEMU's disabled bus master address space), so a
READ DMA completes without changing RAM and a WRITE DMA writes zeros.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from emu import EmuError
from emu.clock import Clock, Timer
from emu.devices.ata import AtaChannel, AtaDrive, DmaCmd
from emu.devices.base import Device, GuestMemory

# BMIC bits.
BMIC_START = 0x01
BMIC_READ = 0x08
"""Direction bit: 1 = bus master writes memory (device to memory, READ DMA)."""
# BMIS bits.
BMIS_ACTIVE = 0x01
BMIS_ERROR = 0x02
PIECE = 0x1000
"""Granularity at which a buffer only partly in guest RAM is split (the guest page size)."""
BMIS_INTERRUPT = 0x04
BMIS_DRV0_DMA = 0x20
BMIS_DRV1_DMA = 0x40
BMIS_SIMPLEX = 0x80

PRD_EOT = 0x80000000
PRD_TABLE_LIMIT = 4096
"""Fail-safe: the PRD walk stops after one page of table (512 entries)."""
CHANNEL_STRIDE = 8
BLOCK_SIZE = 16

DEFAULT_BYTES_PER_INSN = 4
"""Default pace: 4 bytes per guest instruction, so 64 KiB keeps Active set for 16384 instructions."""
MAX_WARNINGS = 64


@dataclass
class BmChannelState:
    """One channel's bus master registers and the transfer in flight (QEMU ``BMDMAState``)."""

    cmd: int = 0
    status: int = 0
    addr: int = 0
    cur_addr: int = 0
    unit: int = -1                 # drive whose DMA command is waiting for / using the engine
    in_flight: bool = False
    sg: list[list[int]] = field(default_factory=list)   # [guest address, length] per scatter entry
    sg_index: int = 0
    offset: int = 0                # bytes of the transfer already moved
    stay_active: bool = False      # PRDs described more than the transfer
    due: int = 0                   # instruction count at which the current entry completes


class NullMemory:
    """Guest memory seen with bus mastering disabled: reads give zeros, writes vanish (QEMU)."""

    def contains(self, addr: int, size: int) -> bool:
        """Every address answers (with nothing)."""
        return True

    def read(self, addr: int, size: int) -> bytes:
        """Zeros."""
        return bytes(size)

    def write(self, addr: int, data: bytes) -> None:
        """Dropped."""
        return None


_NULL = NullMemory()


class BmDmaChannel:
    """The DMA engine of one channel; the ATA channel's :class:`emu.devices.ata.DmaProvider`."""

    def __init__(self, owner: "BusMasterIde", index: int, channel: AtaChannel, state: BmChannelState):
        self.owner = owner
        self.index = index
        self.channel = channel
        self.st = state
        self._timer: Optional[Timer] = None
        self._data: memoryview = memoryview(b"")
        self._staging: Optional[bytearray] = None
        channel.dma = self

    # --- DmaProvider ----------------------------------------------------------------
    def start_dma(self, drive: AtaDrive) -> None:
        """An ATA DMA command is ready; go at once if Start is already set (QEMU ``bmdma_start_dma``)."""
        self.st.unit = drive.unit
        if self.st.status & BMIS_ACTIVE:
            self._begin()

    def irq_raised(self) -> None:
        """BMIS Interrupt follows every rising IRQ from the channel."""
        self.st.status |= BMIS_INTERRUPT

    def drain(self) -> None:
        """Complete the transfer in flight now (each remaining entry copied at once)."""
        while self.st.in_flight:
            Clock.cancel(self._timer)
            self._timer = None
            self._step()

    def cancel(self) -> None:
        """Forget a DMA command that has not started."""
        if not self.st.in_flight:
            self.st.unit = -1

    def reset(self) -> None:
        """Power-on registers (QEMU ``bmdma_reset``); a transfer in flight is dropped."""
        Clock.cancel(self._timer)
        self._timer = None
        self._data = memoryview(b"")
        self._staging = None
        s = self.st
        s.cmd = s.status = s.addr = s.cur_addr = 0
        s.unit = -1
        s.in_flight = False
        s.sg = []
        s.sg_index = s.offset = s.due = 0
        s.stay_active = False

    # --- registers ----------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """BMIS Active."""
        return bool(self.st.status & BMIS_ACTIVE)

    def read(self, off: int, size: int) -> int:
        """IN at offset ``off`` (0..7) of this channel's block."""
        s = self.st
        if off < 4:
            if size != 1:
                return (1 << (8 * size)) - 1
            if off == 0:
                return s.cmd
            if off == 2:
                return s.status
            return 0xFF
        return (s.addr >> (8 * (off - 4))) & ((1 << (8 * size)) - 1)

    def write(self, off: int, size: int, value: int) -> None:
        """OUT at offset ``off`` (0..7) of this channel's block."""
        s = self.st
        if off < 4:
            if size != 1:
                return
            if off == 0:
                self.write_command(value & 0xFF)
            elif off == 2:
                s.status = (value & 0x60) | (s.status & BMIS_ACTIVE) | (s.status & ~value & 0x06)
            return
        shift = 8 * (off - 4)
        mask = (1 << (8 * size)) - 1
        s.addr = (s.addr & ~(mask << shift) | ((value & mask) << shift) & ~3) & 0xFFFFFFFF

    def write_command(self, val: int) -> None:
        """BMIC write (QEMU ``bmdma_cmd_writeb``): Start edge begins, Stop edge completes and clears Active."""
        s = self.st
        if (val ^ s.cmd) & BMIC_START:
            if not val & BMIC_START:
                self.drain()
                s.status &= ~BMIS_ACTIVE
            else:
                s.cur_addr = s.addr
                if not s.status & BMIS_ACTIVE:
                    s.status |= BMIS_ACTIVE
                    if s.unit >= 0:
                        self._begin()
        s.cmd = val & (BMIC_START | BMIC_READ)

    # --- the engine ---------------------------------------------------------------------
    def _memory(self) -> GuestMemory:
        return self.owner.memory if self.owner.bus_master_enabled() else _NULL

    def _set_inactive(self, stay_active: bool) -> None:
        s = self.st
        s.unit = -1
        s.in_flight = False
        s.sg = []
        s.sg_index = 0
        self._data = memoryview(b"")
        self._staging = None
        if stay_active:
            s.status |= BMIS_ACTIVE
        else:
            s.status &= ~BMIS_ACTIVE

    def _bus_error(self, what: str) -> None:
        """Master abort: Error set and reported; the caller decides what the transfer does next."""
        self.owner.warn(f"bm{self.index}: {what} outside guest RAM: Error set")
        self.st.status |= BMIS_ERROR

    def _begin(self) -> None:
        """Walk the PRD table, check the request, then start the paced transfer."""
        s = self.st
        drive = self.channel.drives[s.unit]
        if drive.st.dma_cmd is DmaCmd.NONE:
            s.unit = -1
            return
        need = drive.dma_bytes
        mem = self._memory()
        sg: list[list[int]] = []
        got = described = 0
        last = crossing_warned = False
        while not last and (s.cur_addr - s.addr) & 0xFFFFFFFF < PRD_TABLE_LIMIT:
            if not mem.contains(s.cur_addr, 8):
                self._bus_error(f"PRD table entry at {s.cur_addr:#x}")
                break
            entry = mem.read(s.cur_addr, 8)
            s.cur_addr = (s.cur_addr + 8) & 0xFFFFFFFF
            base = int.from_bytes(entry[0:4], "little")
            count = int.from_bytes(entry[4:8], "little")
            length = (count & 0xFFFE) or 0x10000
            last = bool(count & PRD_EOT)
            if not crossing_warned and base >> 16 != (base + length - 1) >> 16:
                crossing_warned = True  # once per command: a hostile table cannot flood the log
                self.owner.warn(f"bm{self.index}: PRD {base:#x}+{length:#x} crosses a 64 KiB boundary")
            take = min(need - got, length)
            if take > 0:
                sg.append([base, take])
                got += take
            described += length
        if got < need:
            drive.dma_short()
            self._set_inactive(False)
            return
        if not drive.dma_check():
            drive.dma_error()
            self._set_inactive(False)
            return
        if drive.st.dma_cmd is DmaCmd.READ:
            try:
                self._data = memoryview(drive.dma_read_disk())
            except Exception:
                drive.dma_error()
                self._set_inactive(False)
                return
        else:
            self._staging = bytearray(need)
        s.sg = sg
        s.sg_index = 0
        s.offset = 0
        s.stay_active = described > need
        s.in_flight = True
        self._schedule(self.owner.clock.icount)

    def _schedule(self, start: Optional[int] = None) -> None:
        """Entry ``sg_index`` completes its length / rate instructions after the previous one (or ``start``)."""
        s = self.st
        length = s.sg[s.sg_index][1]
        base = s.due if start is None else start
        s.due = base + -(-length // self.owner.bytes_per_insn)
        self._timer = self.owner.clock.schedule(s.due, self._step, f"bm{self.index}-dma")

    def _copy(self, mem: GuestMemory, base: int, off: int, length: int) -> None:
        """Move ``length`` bytes between guest RAM at ``base`` and offset ``off`` of the transfer."""
        if self._staging is None:
            mem.write(base, self._data[off:off + length])
        else:
            self._staging[off:off + length] = mem.read(base, length)

    def _step(self) -> None:
        """One scatter entry completes: copy it in one slice, then schedule the next or finish."""
        self._timer = None
        s = self.st
        drive = self.channel.drives[s.unit]
        base, length = s.sg[s.sg_index]
        mem = self._memory()
        off = s.offset
        if mem.contains(base, length):
            self._copy(mem, base, off, length)
        else:
            self._bus_error(f"buffer {base:#x}+{length:#x}")   # staging keeps zeros for a write
            end = base + length
            while base < end:                                 # the pieces that are in RAM still move
                piece = min(end, (base | (PIECE - 1)) + 1) - base
                if mem.contains(base, piece):
                    self._copy(mem, base, off, piece)
                base += piece
                off += piece
            off = s.offset
        s.offset = off + length
        s.sg_index += 1
        if s.sg_index < len(s.sg):
            self._schedule()
            return
        if self._staging is not None:
            try:
                drive.dma_write_disk(self._staging)
            except Exception:
                drive.dma_error()
                self._set_inactive(False)
                return
        stay = s.stay_active
        drive.dma_done()
        self._set_inactive(stay)


@dataclass
class BusMasterState:
    """Both channels' bus master registers and the decoded base of the block."""

    base: Optional[int] = None
    channels: list[BmChannelState] = field(default_factory=list)


class BusMasterIde(Device):
    """The 16-byte BAR4 block: two :class:`BmDmaChannel` engines over the primary and secondary channels."""

    name = "bmdma"

    def __init__(self, channels: tuple[AtaChannel, AtaChannel], memory: GuestMemory, clock: Clock,
                 bus_master_enabled: Callable[[], bool] = lambda: True,
                 bytes_per_insn: int = DEFAULT_BYTES_PER_INSN, base: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = None):
        if not isinstance(bytes_per_insn, int) or bytes_per_insn < 1:
            raise EmuError(f"bmdma: bytes_per_insn must be a positive integer, got {bytes_per_insn!r}")
        self.memory = memory
        self.clock = clock
        self.bus_master_enabled = bus_master_enabled
        self.bytes_per_insn = bytes_per_insn
        self.log = log
        self.warnings: list[str] = []
        """Recent oddities (PRD crossing 64 KiB, DMA outside RAM), newest last, at most 64."""
        self.state = BusMasterState(base, [BmChannelState(), BmChannelState()])
        self.engines = [BmDmaChannel(self, i, ch, self.state.channels[i]) for i, ch in enumerate(channels)]

    def warn(self, message: str) -> None:
        """Record a warning (kept bounded) and pass it to ``log``."""
        self.warnings.append(message)
        del self.warnings[:-MAX_WARNINGS]
        if self.log is not None:
            self.log(message)

    @property
    def active(self) -> bool:
        """Either channel's Active bit is set."""
        return any(e.active for e in self.engines)

    @property
    def dma_in_flight(self) -> bool:
        """Data is being moved right now (Active without a finished transfer)."""
        return any(e.st.in_flight for e in self.engines)

    @property
    def quiescent(self) -> bool:
        """No channel is moving data, and none shows Active without Interrupt (notes: a safe trap point)."""
        return all(not e.st.in_flight and (not e.active or e.st.status & BMIS_INTERRUPT) for e in self.engines)

    # --- wiring -------------------------------------------------------------------------
    def port_ranges(self) -> list[tuple[int, int]]:
        """(base, 16) when decoded, else nothing."""
        return [] if self.state.base is None else [(self.state.base, BLOCK_SIZE)]

    def map(self, bus, base: Optional[int]) -> None:
        """Claim the block at ``base`` (None = not decoded) on an :class:`emu.devices.bus.PortBus`."""
        self.state.base = base
        if base is not None:
            bus.map(base, BLOCK_SIZE, self.io_read, self.io_write, self.name)

    def remap(self, bus, old: Optional[int], new: Optional[int]) -> None:
        """Follow a BAR4 move (use as ``Piix3Ide.on_bar4_change``)."""
        if old is not None:
            bus.unmap(old, BLOCK_SIZE)
        self.map(bus, new)

    def io_read(self, port: int, size: int) -> int:
        """IN from the block."""
        off = port - (self.state.base or 0)
        return self.engines[(off >> 3) & 1].read(off & 7, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        """OUT to the block."""
        off = port - (self.state.base or 0)
        self.engines[(off >> 3) & 1].write(off & 7, size, value)
