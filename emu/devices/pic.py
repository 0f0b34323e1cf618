"""The PC's cascaded 8259A interrupt controllers and the ELCR edge/level registers.

Behaviour follows the Intel 8259A datasheet (ICW1-ICW4, OCW1-OCW3) as QEMU's
``hw/intc/i8259.c`` implements it, QEMU being the reference this project is
compared against:

* master at 0x20/0x21, slave at 0xA0/0xA1, the slave's INT output wired to the
  master's IR2 input (an edge-triggered input: the master's ELCR bit 2 is
  read-only 0);
* ELCR at 0x4D0 (master, writable bits 0xF8) and 0x4D1 (slave, writable bits
  0xDE), as the PIIX3 defines them; a set bit makes that input level-triggered;
* ICW1 resets IMR, ISR, priority and mode bits and keeps the IRR bits of
  level-triggered inputs (QEMU's ``pic_reset_common``); its LTIM bit is recorded
  but, as in QEMU, does not switch the chip to level mode (the ELCR does);
* ICW3 is recorded but the cascade is always through IR2, as on every PC;
* the INTA cycle (:meth:`Pic8259Pair.acknowledge`) is QEMU's ``pic_read_irq``:
  nothing pending on the master gives master base + 7 (spurious IRQ 7, no state
  change); the master selecting IR2 with nothing pending on the slave gives slave
  base + 7 (spurious IRQ 15) and still sets master ISR bit 2, so the guest must
  send the master an EOI.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from emu import EmuError
from emu.devices.base import Device, IrqSetter

MASTER_IO = 0x20
"""Master command (A0=0) and data (A0=1) ports."""
SLAVE_IO = 0xA0
"""Slave command and data ports."""
ELCR_IO = 0x4D0
"""ELCR1 (master, 0x4D0) and ELCR2 (slave, 0x4D1): PIIX3 datasheet, edge/level control."""
ELCR_MASK_MASTER = 0xF8
"""Writable ELCR1 bits: IRQ 0, 1 and 2 are always edge-triggered (QEMU ``elcr_mask``)."""
ELCR_MASK_SLAVE = 0xDE
"""Writable ELCR2 bits: IRQ 8 and 13 are always edge-triggered (QEMU ``elcr_mask``)."""
CASCADE_IRQ = 2
"""Master input the slave's INT output drives."""
SPURIOUS_IRQ = 7
"""The IR line a spurious INTA cycle reports (8259A datasheet, 'interrupt sequence')."""

ICW1_IC4 = 0x01
"""ICW1: ICW4 will be written."""
ICW1_SNGL = 0x02
"""ICW1: single chip, no ICW3."""
ICW1_LTIM = 0x08
"""ICW1: level-triggered mode (recorded only, as in QEMU)."""
ICW1_INIT = 0x10
"""Command-port bit 4: this byte is ICW1."""
ICW4_AEOI = 0x02
"""ICW4: automatic end of interrupt."""
ICW4_SFNM = 0x10
"""ICW4: special fully nested mode."""
OCW3_SELECT = 0x08
"""Command-port bits 4:3 = 01: this byte is OCW3 (else OCW2)."""
OCW3_RIS = 0x01
"""OCW3: read ISR (1) or IRR (0) on the next command-port read ..."""
OCW3_RR = 0x02
"""... when this 'read register' bit is set."""
OCW3_POLL = 0x04
"""OCW3: poll command; the next read returns 0x80 | level and acknowledges."""
OCW3_SMM = 0x20
"""OCW3: special mask mode on (1) / off (0) ..."""
OCW3_ESMM = 0x40
"""... when this 'enable special mask mode' bit is set."""
POLL_INT = 0x80
"""Poll byte bit 7: an interrupt was pending."""

# OCW2 commands (R, SL, EOI = bits 7:5), 8259A datasheet table 'OCW2'.
OCW2_ROTATE_AEOI_CLEAR = 0
OCW2_NONSPECIFIC_EOI = 1
OCW2_NOP = 2
OCW2_SPECIFIC_EOI = 3
OCW2_ROTATE_AEOI_SET = 4
OCW2_ROTATE_NONSPECIFIC_EOI = 5
OCW2_SET_PRIORITY = 6
OCW2_ROTATE_SPECIFIC_EOI = 7



def split_read(offset: int, size: int, read_byte: Callable[[int], int]) -> int:
    """A wide IN on a byte-register region, as QEMU 7.2 dispatches it (``access_with_adjusted_size``).

    ``offset`` is the port's offset in the device's region.  An access not aligned
    to its size within the region is rejected (reads 0); otherwise it becomes
    ``size`` byte reads at region offsets ``offset .. offset+size-1`` of the same
    device, little-endian, even past the region's end (the handler decodes them).
    """
    if offset % size:
        return 0
    value = 0
    for i in range(size):
        value |= (read_byte(offset + i) & 0xFF) << (8 * i)
    return value


def split_write(offset: int, size: int, value: int, write_byte: Callable[[int, int], None]) -> None:
    """A wide OUT on a byte-register region, as QEMU 7.2 dispatches it (see :func:`split_read`); unaligned: dropped."""
    if offset % size:
        return
    for i in range(size):
        write_byte(offset + i, (value >> (8 * i)) & 0xFF)


# init_state values: which ICW the data port expects next.
INIT_READY = 0
INIT_ICW2 = 1
INIT_ICW3 = 2
INIT_ICW4 = 3


@dataclass
class PicState:
    """One 8259A's registers (names from the datasheet; layout of QEMU's PICCommonState)."""

    master: bool
    elcr_mask: int
    irr: int = 0
    imr: int = 0
    isr: int = 0
    last_irr: int = 0
    priority_add: int = 0
    irq_base: int = 0
    read_reg_select: bool = False
    poll: bool = False
    special_mask: bool = False
    init_state: int = INIT_READY
    auto_eoi: bool = False
    rotate_on_auto_eoi: bool = False
    special_fully_nested_mode: bool = False
    init4: bool = False
    single_mode: bool = False
    ltim: bool = False
    icw3: int = 0
    elcr: int = 0
    output: bool = False


@dataclass
class PicPairState:
    """Both chips of the PC's cascaded pair."""

    master: PicState = field(default_factory=lambda: PicState(master=True, elcr_mask=ELCR_MASK_MASTER))
    slave: PicState = field(default_factory=lambda: PicState(master=False, elcr_mask=ELCR_MASK_SLAVE))


def _priority(s: PicState, mask: int) -> int:
    """Highest priority (0 = highest) among ``mask``'s bits after rotation; 8 when empty."""
    if mask == 0:
        return 8
    add = s.priority_add
    p = 0
    while not mask & (1 << ((p + add) & 7)):
        p += 1
    return p


def _pending(s: PicState) -> int:
    """The IR line this chip would present to its INTA cycle, or -1 (datasheet 'priority resolver')."""
    prio = _priority(s, s.irr & ~s.imr)
    if prio == 8:
        return -1
    in_service = s.isr
    if s.special_mask:
        in_service &= ~s.imr
    if s.special_fully_nested_mode and s.master:
        in_service &= ~(1 << CASCADE_IRQ)
    if prio < _priority(s, in_service):
        return (prio + s.priority_add) & 7
    return -1


class _Chip:
    """One 8259A: register logic on a :class:`PicState`, INT output through ``out``."""

    def __init__(self, state: PicState, out: Callable[[bool], None]):
        self.s = state
        self.out = out

    def update(self) -> None:
        """Recompute the INT output (call whenever IRR, IMR, ISR or priority changed)."""
        level = _pending(self.s) >= 0
        self.s.output = level
        self.out(level)

    def set_input(self, irq: int, level: int) -> None:
        """Drive IR``irq``: edge inputs latch IRR on 0->1, level inputs follow the line (QEMU ``pic_set_irq``)."""
        s = self.s
        mask = 1 << irq
        if s.elcr & mask:
            if level:
                s.irr |= mask
                s.last_irr |= mask
            else:
                s.irr &= ~mask
                s.last_irr &= ~mask
        elif level:
            if not s.last_irr & mask:
                s.irr |= mask
            s.last_irr |= mask
        else:
            s.last_irr &= ~mask
        self.update()

    def intack(self, irq: int) -> None:
        """INTA for ``irq``: set ISR (or rotate in AEOI), clear an edge IRR bit (QEMU ``pic_intack``)."""
        s = self.s
        if s.auto_eoi:
            if s.rotate_on_auto_eoi:
                s.priority_add = (irq + 1) & 7
        else:
            s.isr |= 1 << irq
        if not s.elcr & (1 << irq):
            s.irr &= ~(1 << irq)
        self.update()

    def init_reset(self) -> None:
        """ICW1 / reset: clear everything but level-triggered IRR bits and the ELCR (QEMU ``pic_reset_common``)."""
        s = self.s
        s.last_irr = 0
        s.irr &= s.elcr
        s.imr = s.isr = 0
        s.priority_add = s.irq_base = 0
        s.read_reg_select = s.poll = s.special_mask = False
        s.init_state = INIT_READY
        s.auto_eoi = s.rotate_on_auto_eoi = s.special_fully_nested_mode = False
        s.init4 = s.single_mode = s.ltim = False
        s.icw3 = 0
        self.update()

    # --- port handlers ---------------------------------------------------
    def write_command(self, val: int) -> None:
        """A0=0 write: ICW1, OCW3 or OCW2 by bits 4:3 (8259A datasheet, 'command words')."""
        s = self.s
        if val & ICW1_INIT:
            self.init_reset()
            s.init_state = INIT_ICW2
            s.init4 = bool(val & ICW1_IC4)
            s.single_mode = bool(val & ICW1_SNGL)
            s.ltim = bool(val & ICW1_LTIM)
        elif val & OCW3_SELECT:
            if val & OCW3_POLL:
                s.poll = True
            if val & OCW3_RR:
                s.read_reg_select = bool(val & OCW3_RIS)
            if val & OCW3_ESMM:
                s.special_mask = bool(val & OCW3_SMM)
                self.update()  # QEMU re-evaluates only at the next event; the datasheet at once
        else:
            self._ocw2(val)

    def _ocw2(self, val: int) -> None:
        s = self.s
        cmd = val >> 5
        if cmd in (OCW2_ROTATE_AEOI_CLEAR, OCW2_ROTATE_AEOI_SET):
            s.rotate_on_auto_eoi = cmd == OCW2_ROTATE_AEOI_SET
        elif cmd in (OCW2_NONSPECIFIC_EOI, OCW2_ROTATE_NONSPECIFIC_EOI):
            prio = _priority(s, s.isr)
            if prio != 8:
                irq = (prio + s.priority_add) & 7
                s.isr &= ~(1 << irq)
                if cmd == OCW2_ROTATE_NONSPECIFIC_EOI:
                    s.priority_add = (irq + 1) & 7
                self.update()
        elif cmd == OCW2_SPECIFIC_EOI:
            s.isr &= ~(1 << (val & 7))
            self.update()
        elif cmd == OCW2_SET_PRIORITY:
            s.priority_add = (val + 1) & 7
            self.update()
        elif cmd == OCW2_ROTATE_SPECIFIC_EOI:
            irq = val & 7
            s.isr &= ~(1 << irq)
            s.priority_add = (irq + 1) & 7
            self.update()
        # OCW2_NOP: nothing

    def write_data(self, val: int) -> None:
        """A0=1 write: OCW1 (IMR) when initialised, else the next ICW."""
        s = self.s
        if s.init_state == INIT_READY:
            s.imr = val
            self.update()
        elif s.init_state == INIT_ICW2:
            s.irq_base = val & 0xF8
            if s.single_mode:
                s.init_state = INIT_ICW4 if s.init4 else INIT_READY
            else:
                s.init_state = INIT_ICW3
        elif s.init_state == INIT_ICW3:
            s.icw3 = val
            s.init_state = INIT_ICW4 if s.init4 else INIT_READY
        else:
            s.special_fully_nested_mode = bool(val & ICW4_SFNM)
            s.auto_eoi = bool(val & ICW4_AEOI)
            s.init_state = INIT_READY

    def read(self, a0: int) -> int:
        """A0 read: poll byte when polling, else IRR/ISR (A0=0, per OCW3) or IMR (A0=1)."""
        s = self.s
        if s.poll:
            s.poll = False
            irq = _pending(s)
            if irq >= 0:
                self.intack(irq)
                return POLL_INT | irq
            return 0
        if a0 == 0:
            return s.isr if s.read_reg_select else s.irr
        return s.imr


class Pic8259Pair(Device):
    """The PC's master/slave 8259A pair with ELCR; INTR to the CPU and the INTA cycle."""

    name = "pic"
    PORTS = ((MASTER_IO, 2), (SLAVE_IO, 2), (ELCR_IO, 2))
    """(base, count) port ranges the machine maps with ``bus.map``."""

    def __init__(self, on_intr_change: Optional[Callable[[bool], None]] = None):
        self.state = PicPairState()
        self.on_intr_change = on_intr_change
        self._intr = False
        self._master = _Chip(self.state.master, self._master_output)
        self._slave = _Chip(self.state.slave, self._slave_output)

    # --- wiring ----------------------------------------------------------
    def _master_output(self, level: bool) -> None:
        if level != self._intr:
            self._intr = level
            if self.on_intr_change is not None:
                self.on_intr_change(level)

    def _slave_output(self, level: bool) -> None:
        self._master.set_input(CASCADE_IRQ, int(level))

    @property
    def intr(self) -> bool:
        """The master's INT output: an unmasked request outranks everything in service."""
        return self._intr

    def reset(self) -> None:
        """System reset: ELCR cleared, both chips as after ICW1 (QEMU ``pic_reset``)."""
        self.state.master.elcr = 0
        self.state.slave.elcr = 0
        self._slave.init_reset()
        self._master.init_reset()

    def set_irq(self, irq: int, level: int) -> None:
        """Drive ISA IRQ ``irq`` (0-15) to ``level`` (1 asserted); 0-7 master, 8-15 slave inputs."""
        if irq < 8 and irq >= 0:
            self._master.set_input(irq, 1 if level else 0)
        elif irq < 16 and irq >= 0:
            self._slave.set_input(irq - 8, 1 if level else 0)
        else:
            raise EmuError(f"pic: no IRQ {irq} (0-15)")

    def irq_line(self, irq: int) -> IrqSetter:
        """A setter for one IRQ line, the thing a device is given to raise and lower its interrupt."""
        if not 0 <= irq < 16:
            raise EmuError(f"pic: no IRQ {irq} (0-15)")
        chip = self._master if irq < 8 else self._slave
        pin = irq & 7

        def setter(level: int) -> None:
            chip.set_input(pin, 1 if level else 0)

        return setter

    def acknowledge(self) -> int:
        """The INTA cycle: the vector the CPU takes, with ISR/IRR updated (QEMU ``pic_read_irq``)."""
        master = self._master
        irq = _pending(master.s)
        if irq < 0:
            return master.s.irq_base + SPURIOUS_IRQ
        if irq == CASCADE_IRQ:
            slave = self._slave
            irq2 = _pending(slave.s)
            if irq2 >= 0:
                slave.intack(irq2)
            else:
                irq2 = SPURIOUS_IRQ
            vector = slave.s.irq_base + irq2
        else:
            vector = master.s.irq_base + irq
        master.intack(irq)
        return vector

    # --- port I/O --------------------------------------------------------
    # QEMU registers four byte-wide regions: "pic" 0x20 (2 ports), "pic" 0xA0 (2), "elcr" 0x4D0 (1), "elcr" 0x4D1 (1).
    # In a "pic" region offset 0 is the command port and any other offset the data port; an "elcr" region ignores it.
    def _region(self, port: int) -> tuple[int, Optional[_Chip], Optional[PicState]]:
        if MASTER_IO <= port <= MASTER_IO + 1:
            return port - MASTER_IO, self._master, None
        if SLAVE_IO <= port <= SLAVE_IO + 1:
            return port - SLAVE_IO, self._slave, None
        if port == ELCR_IO:
            return 0, None, self.state.master
        if port == ELCR_IO + 1:
            return 0, None, self.state.slave
        raise EmuError(f"pic: port {port:#x} is not a PIC port")

    def io_read(self, port: int, size: int) -> int:
        """IN: byte registers; a wider access is split as QEMU does (see :func:`split_read`)."""
        offset, chip, elcr = self._region(port)
        if chip is not None:
            return split_read(offset, size, lambda off: chip.read(0 if off == 0 else 1))
        assert elcr is not None
        return split_read(offset, size, lambda off: elcr.elcr)

    def io_write(self, port: int, size: int, value: int) -> None:
        """OUT: byte registers; a wider access is split as QEMU does (see :func:`split_write`)."""
        offset, chip, elcr = self._region(port)
        if chip is not None:
            split_write(offset, size, value,
                        lambda off, v: chip.write_command(v) if off == 0 else chip.write_data(v))
            return
        assert elcr is not None

        def write_elcr(off: int, v: int) -> None:
            elcr.elcr = v & elcr.elcr_mask

        split_write(offset, size, value, write_elcr)

    def info(self) -> str:
        """Both chips' registers, one line each (QEMU's ``info pic`` fields plus mode bits)."""
        lines = [f"{self.name}: intr={int(self._intr)}"]
        for label, s in (("master", self.state.master), ("slave", self.state.slave)):
            lines.append(
                f"  {label:<6} irr={s.irr:02x} imr={s.imr:02x} isr={s.isr:02x} base={s.irq_base:02x} "
                f"hprio={s.priority_add} elcr={s.elcr:02x} init={s.init_state} aeoi={int(s.auto_eoi)} "
                f"rotaeoi={int(s.rotate_on_auto_eoi)} smm={int(s.special_mask)} sfnm={int(s.special_fully_nested_mode)} "
                f"rr_sel={int(s.read_reg_select)} poll={int(s.poll)} lines={s.last_irr:02x} out={int(s.output)}"
            )
        return "\n".join(lines)
