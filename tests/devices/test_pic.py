"""8259A pair + ELCR through the port interface.

Expected values come from the Intel 8259A datasheet (ICW/OCW formats, priority
resolution, rotation, AEOI, poll, special mask mode, cascade) and, where the PC
wiring decides, from QEMU's hw/intc/i8259.c (ELCR masks 0xF8/0xDE, ICW1 keeping
level-triggered IRR bits, spurious vectors base+7 with master ISR bit 2 set for
a slave spurious interrupt).
"""
from __future__ import annotations

import pytest

from emu import EmuError
from emu.devices.bus import PortBus
from emu.devices.pic import Pic8259Pair

M_CMD, M_DATA, S_CMD, S_DATA, ELCR1, ELCR2 = 0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1
OCW3_READ_IRR, OCW3_READ_ISR, OCW3_POLL = 0x0A, 0x0B, 0x0C
EOI = 0x20


class Board:
    """A PIC pair mapped on a port bus, the way the machine wires it."""

    def __init__(self) -> None:
        self.changes: list[bool] = []
        self.pic = Pic8259Pair(on_intr_change=self.changes.append)
        self.bus = PortBus()
        for base, count in Pic8259Pair.PORTS:
            self.bus.map(base, count, self.pic.io_read, self.pic.io_write, self.pic.name)

    def out(self, port: int, value: int) -> None:
        self.bus.write(port, 1, value)

    def inb(self, port: int) -> int:
        return self.bus.read(port, 1)

    def init(self, master_base: int = 0x20, slave_base: int = 0x28, icw4: int = 0x01) -> None:
        """The usual PC initialisation: ICW1 0x11, ICW2 base, ICW3 0x04/0x02, ICW4."""
        for cmd, data, base, icw3 in ((M_CMD, M_DATA, master_base, 0x04), (S_CMD, S_DATA, slave_base, 0x02)):
            self.out(cmd, 0x11)
            self.out(data, base)
            self.out(data, icw3)
            self.out(data, icw4)

    def irr(self, cmd: int = M_CMD) -> int:
        self.out(cmd, OCW3_READ_IRR)
        return self.inb(cmd)

    def isr(self, cmd: int = M_CMD) -> int:
        self.out(cmd, OCW3_READ_ISR)
        return self.inb(cmd)

    def pulse(self, irq: int) -> None:
        self.pic.set_irq(irq, 1)
        self.pic.set_irq(irq, 0)


@pytest.fixture
def b() -> Board:
    board = Board()
    board.init()
    return board


# --- initialisation -------------------------------------------------------
def test_standard_init_sets_vector_bases_and_clears_mask(b: Board) -> None:
    assert b.inb(M_DATA) == 0x00 and b.inb(S_DATA) == 0x00  # ICW1 clears IMR
    b.pulse(1)
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x21  # ICW2 0x20 + IR1
    b.out(M_CMD, EOI)
    b.pulse(9)
    assert b.pic.acknowledge() == 0x29  # slave ICW2 0x28 + IR1


def test_icw2_low_bits_are_ignored() -> None:
    b = Board()
    b.init(master_base=0x27, slave_base=0x7F)
    b.pulse(0)
    assert b.pic.acknowledge() == 0x20  # T7-T3 only: 0x27 & 0xF8
    b.out(M_CMD, EOI)
    b.pulse(8)
    assert b.pic.acknowledge() == 0x78


def test_icw_sequence_without_icw4_then_data_port_is_imr() -> None:
    b = Board()
    b.out(M_CMD, 0x10)  # ICW1: cascade, no ICW4
    b.out(M_DATA, 0x40)  # ICW2
    b.out(M_DATA, 0x04)  # ICW3
    b.out(M_DATA, 0x5A)  # now OCW1
    assert b.inb(M_DATA) == 0x5A


def test_single_mode_skips_icw3() -> None:
    b = Board()
    b.out(M_CMD, 0x13)  # ICW1: SNGL + IC4
    b.out(M_DATA, 0x40)  # ICW2
    b.out(M_DATA, 0x03)  # ICW4 (8086, AEOI) -- no ICW3 in single mode
    b.out(M_DATA, 0xA5)  # OCW1
    assert b.inb(M_DATA) == 0xA5
    b.pulse(3)
    assert b.pic.acknowledge() == 0x43
    assert b.isr() == 0x00  # AEOI came from that ICW4


def test_icw1_clears_isr_irr_and_mask_but_not_elcr(b: Board) -> None:
    b.out(M_DATA, 0xFF)
    b.pulse(3)
    b.out(M_DATA, 0x00)
    b.pic.acknowledge()
    b.pulse(4)
    b.out(ELCR1, 0x20)
    b.pic.set_irq(5, 1)  # level-triggered and held
    b.out(M_CMD, 0x11)
    b.out(M_DATA, 0x20)
    b.out(M_DATA, 0x04)
    b.out(M_DATA, 0x01)
    assert b.isr() == 0x00
    assert b.irr() == 0x20  # QEMU keeps the IRR bits of level-triggered inputs
    assert b.inb(ELCR1) == 0x20
    assert b.inb(M_DATA) == 0x00


def test_reset_clears_elcr(b: Board) -> None:
    b.out(ELCR1, 0xF8)
    b.pic.reset()
    assert b.inb(ELCR1) == 0 and b.inb(ELCR2) == 0


# --- priority, EOI, rotation ----------------------------------------------
def test_fully_nested_priority_and_nesting(b: Board) -> None:
    b.pulse(5)
    b.pulse(3)
    assert b.pic.acknowledge() == 0x23  # IR3 outranks IR5
    assert not b.pic.intr  # IR5 is lower than IR3 in service
    b.pulse(1)
    assert b.pic.intr  # IR1 outranks IR3: nested interrupt
    assert b.pic.acknowledge() == 0x21
    assert b.isr() == 0x0A
    b.out(M_CMD, EOI)  # non-specific EOI: highest in service (IR1)
    assert b.isr() == 0x08
    assert not b.pic.intr
    b.out(M_CMD, EOI)
    assert b.isr() == 0x00
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x25


def test_specific_eoi_clears_only_named_level(b: Board) -> None:
    b.pulse(6)
    b.pic.acknowledge()
    b.pulse(1)
    b.pic.acknowledge()
    assert b.isr() == 0x42
    b.out(M_CMD, 0x60 | 6)  # specific EOI for IR6 (not the highest in service)
    assert b.isr() == 0x02


def test_set_priority_makes_named_level_lowest(b: Board) -> None:
    b.out(M_CMD, 0xC0 | 4)  # IR4 lowest, so IR5 highest: 5 6 7 0 1 2 3 4
    b.pulse(3)
    b.pulse(6)
    b.pulse(4)
    assert b.pic.acknowledge() == 0x26
    b.out(M_CMD, EOI)
    assert b.pic.acknowledge() == 0x23
    b.out(M_CMD, EOI)
    assert b.pic.acknowledge() == 0x24


def test_rotate_on_nonspecific_eoi(b: Board) -> None:
    b.pulse(3)
    assert b.pic.acknowledge() == 0x23
    b.out(M_CMD, 0xA0)  # rotate on non-specific EOI: IR3 becomes lowest
    assert b.isr() == 0
    b.pulse(3)
    b.pulse(1)
    b.pulse(4)
    assert b.pic.acknowledge() == 0x24  # order now 4 5 6 7 0 1 2 3
    b.out(M_CMD, EOI)
    assert b.pic.acknowledge() == 0x21
    b.out(M_CMD, EOI)
    assert b.pic.acknowledge() == 0x23


def test_rotate_on_specific_eoi(b: Board) -> None:
    b.pulse(6)
    b.pic.acknowledge()
    b.out(M_CMD, 0xE0 | 6)  # rotate on specific EOI IR6: IR7 highest
    assert b.isr() == 0
    b.pulse(0)
    b.pulse(7)
    assert b.pic.acknowledge() == 0x27


def test_nonspecific_eoi_honours_rotated_priority(b: Board) -> None:
    b.out(M_CMD, 0xC0 | 1)  # IR2 highest ... IR1 lowest
    b.pulse(1)
    assert b.pic.acknowledge() == 0x21
    b.pulse(3)
    assert b.pic.acknowledge() == 0x23  # IR3 outranks IR1 now
    assert b.isr() == 0x0A
    b.out(M_CMD, EOI)  # clears the highest in service under rotation: IR3
    assert b.isr() == 0x02


def test_aeoi_leaves_isr_clear() -> None:
    b = Board()
    b.init(icw4=0x03)
    b.pulse(4)
    assert b.pic.acknowledge() == 0x24
    assert b.isr() == 0x00
    b.pulse(6)
    assert b.pic.intr  # nothing in service blocks it
    assert b.pic.acknowledge() == 0x26


def test_rotate_in_aeoi_mode() -> None:
    b = Board()
    b.init(icw4=0x03)
    b.out(M_CMD, 0x80)  # rotate in automatic EOI mode (set)
    b.pulse(1)
    b.pulse(5)
    assert b.pic.acknowledge() == 0x21  # then IR1 becomes lowest: 2 3 4 5 6 7 0 1
    b.pulse(1)
    assert b.pic.acknowledge() == 0x25
    b.out(M_CMD, 0x00)  # rotate in AEOI clear: priority stays where it is
    b.pulse(0)
    b.pulse(7)
    assert b.pic.acknowledge() == 0x27  # after IR5 rotation: 6 7 0 ...
    b.pulse(6)
    assert b.pic.acknowledge() == 0x26  # no rotation any more: 6 still highest
    assert b.pic.acknowledge() == 0x20


# --- register reads, poll, masks -------------------------------------------
def test_read_irr_and_isr_select_is_sticky(b: Board) -> None:
    b.pic.set_irq(5, 1)
    assert b.inb(M_CMD) == 0x20  # after ICW1 the command port reads IRR
    b.out(M_CMD, OCW3_READ_ISR)
    assert b.inb(M_CMD) == 0x00
    b.pic.acknowledge()
    assert b.inb(M_CMD) == 0x20  # still ISR
    b.out(M_CMD, 0x08)  # OCW3 with RR=0: selection unchanged
    assert b.inb(M_CMD) == 0x20
    b.out(M_CMD, OCW3_READ_IRR)
    assert b.inb(M_CMD) == 0x00  # edge IRR cleared by the acknowledge


def test_poll_mode_returns_level_and_acknowledges(b: Board) -> None:
    b.pulse(6)
    b.pulse(4)
    b.out(M_CMD, OCW3_POLL)
    assert b.inb(M_CMD) == 0x84  # 0x80 | highest level
    assert b.isr() == 0x10  # the poll read acknowledged IR4
    b.out(M_CMD, OCW3_POLL)
    assert b.inb(M_CMD) == 0x00  # IR6 is lower than IR4 in service: nothing
    b.out(M_CMD, EOI)
    b.out(M_CMD, OCW3_POLL)
    assert b.inb(M_DATA) == 0x86  # a poll is answered on either port
    assert b.inb(M_DATA) == 0x00  # next read of the data port is IMR again


def test_mask_blocks_intr_but_irr_latches(b: Board) -> None:
    b.out(M_DATA, 0x08)
    b.pulse(3)
    assert not b.pic.intr
    assert b.irr() == 0x08
    b.out(M_DATA, 0x00)
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x23


def test_masked_level_in_service_does_not_block_in_special_mask_mode(b: Board) -> None:
    b.pulse(3)
    b.pic.acknowledge()
    b.pulse(5)
    assert not b.pic.intr
    b.out(M_DATA, 0x08)  # mask IR3, which is in service
    assert not b.pic.intr  # plain masking keeps its ISR bit effective
    b.out(M_CMD, 0x68)  # OCW3: set special mask mode
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x25
    b.out(M_CMD, 0x48)  # reset special mask mode
    b.out(M_CMD, 0x60 | 5)
    b.pulse(6)
    assert not b.pic.intr  # IR3 in service blocks lower levels again


# --- cascade ----------------------------------------------------------------
def test_cascade_through_ir2(b: Board) -> None:
    b.pulse(10)
    assert b.irr(S_CMD) == 0x04
    assert b.irr(M_CMD) == 0x04
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x2A
    assert b.isr(S_CMD) == 0x04 and b.isr(M_CMD) == 0x04
    b.pulse(9)  # higher on the slave, but the master has IR2 in service
    assert not b.pic.intr
    b.out(S_CMD, EOI)
    b.out(M_CMD, EOI)
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x29


def test_master_level_outranks_slave_by_ir_position(b: Board) -> None:
    b.pulse(12)
    b.pulse(1)
    b.pulse(4)
    assert b.pic.acknowledge() == 0x21
    b.out(M_CMD, EOI)
    assert b.pic.acknowledge() == 0x2C  # IR2 (the slave) before IR4
    b.out(S_CMD, EOI)
    b.out(M_CMD, EOI)
    assert b.pic.acknowledge() == 0x24


def test_special_fully_nested_mode_lets_higher_slave_level_through() -> None:
    b = Board()
    for cmd, data, base, icw3, icw4 in ((M_CMD, M_DATA, 0x20, 0x04, 0x11), (S_CMD, S_DATA, 0x28, 0x02, 0x01)):
        b.out(cmd, 0x11)
        b.out(data, base)
        b.out(data, icw3)
        b.out(data, icw4)  # master ICW4 with SFNM
    b.pulse(12)
    assert b.pic.acknowledge() == 0x2C
    b.pulse(9)  # higher than IR12 in service on the slave
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x29
    b.pulse(13)  # lower than IR12 in service: the slave keeps it back
    assert not b.pic.intr


# --- edge / level, ELCR -----------------------------------------------------
def test_edge_input_latches_once_per_rising_edge(b: Board) -> None:
    b.pic.set_irq(3, 1)
    b.pic.set_irq(3, 0)
    assert b.irr() == 0x08  # lowering the line does not clear an edge request
    assert b.pic.acknowledge() == 0x23
    b.out(M_CMD, EOI)
    b.pic.set_irq(3, 1)
    assert b.pic.acknowledge() == 0x23
    b.out(M_CMD, EOI)
    b.pic.set_irq(3, 1)  # still high: no new edge
    assert not b.pic.intr
    assert b.irr() == 0x00


def test_level_input_follows_line_and_reasserts_after_eoi(b: Board) -> None:
    b.out(ELCR1, 0x20)  # IRQ5 level-triggered
    b.pic.set_irq(5, 1)
    assert b.pic.intr
    b.pic.set_irq(5, 0)
    assert not b.pic.intr
    assert b.irr() == 0x00  # a level request goes away with the line
    b.pic.set_irq(5, 1)
    assert b.pic.acknowledge() == 0x25
    assert b.irr() == 0x20  # acknowledge does not clear a level request
    assert not b.pic.intr  # in service
    b.out(M_CMD, EOI)
    assert b.pic.intr  # line still high: interrupts again
    b.pic.set_irq(5, 0)
    assert not b.pic.intr


def test_level_on_slave_via_elcr2(b: Board) -> None:
    b.out(ELCR2, 0x08)  # IRQ11
    b.pic.set_irq(11, 1)
    assert b.pic.acknowledge() == 0x2B
    b.out(S_CMD, EOI)  # the line is still high: slave INT rises again, master IR2 latches an edge
    b.out(M_CMD, EOI)
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x2B
    b.out(S_CMD, EOI)
    b.out(M_CMD, EOI)
    b.pic.set_irq(11, 0)  # slave request gone, but the master's IR2 is edge-latched (QEMU)
    assert b.irr(S_CMD) == 0x00 and b.irr(M_CMD) == 0x04
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x2F  # so the INTA finds nothing on the slave: spurious IRQ 15
    assert b.isr(M_CMD) == 0x04


def test_elcr_writable_bits_are_piix3_masks(b: Board) -> None:
    b.out(ELCR1, 0xFF)
    b.out(ELCR2, 0xFF)
    assert b.inb(ELCR1) == 0xF8  # IRQ 0, 1, 2 always edge
    assert b.inb(ELCR2) == 0xDE  # IRQ 8, 13 always edge


def test_wide_accesses_split_like_qemu_7_2(b: Board) -> None:
    """Observed on qemu-system-i386 7.2 with a probe kernel: each ELCR is its own 1-byte region, so a
    16-bit OUT to 0x4D0 writes both bytes to ELCR1 (last wins) and a 16-bit IN reads ELCR1 twice; an
    access unaligned within its region (0x21 is offset 1 of the 0x20 region) is dropped / reads 0."""
    b.out(ELCR2, 0x0C)
    b.bus.write(ELCR1, 2, 0x0C20)
    assert b.inb(ELCR1) == 0x08 and b.inb(ELCR2) == 0x0C
    assert b.bus.read(ELCR1, 2) == 0x0808
    assert b.bus.read(ELCR2, 2) == 0x0C0C
    assert b.bus.read(ELCR1, 4) == 0x08080808
    b.out(M_DATA, 0xB8)
    b.pulse(4)
    b.out(M_CMD, OCW3_READ_IRR)
    assert b.bus.read(M_CMD, 2) == 0xB810  # command port (IRR), then data port (IMR)
    assert b.bus.read(M_DATA, 2) == 0x0000  # unaligned: rejected
    b.bus.write(M_DATA, 2, 0xFFA8)  # unaligned: dropped
    assert b.inb(M_DATA) == 0xB8


def test_elcr_cannot_make_irq0_level(b: Board) -> None:
    b.out(ELCR1, 0x01)
    b.pic.set_irq(0, 1)
    b.pic.set_irq(0, 0)
    assert b.irr() == 0x01  # still edge-latched


# --- spurious interrupts ----------------------------------------------------
def test_spurious_irq7_when_request_vanishes_before_inta(b: Board) -> None:
    b.out(ELCR1, 0x08)
    b.pic.set_irq(3, 1)
    assert b.pic.intr
    b.pic.set_irq(3, 0)  # the level request disappears before INTA
    assert b.pic.acknowledge() == 0x27  # master base + 7
    assert b.isr() == 0x00  # a spurious IRQ 7 sets no ISR bit: no EOI needed


def test_spurious_irq7_with_real_irq7_in_service_is_distinguishable(b: Board) -> None:
    b.pulse(7)
    assert b.pic.acknowledge() == 0x27
    assert b.isr() == 0x80  # the genuine one does set ISR bit 7


def test_spurious_irq15_sets_master_isr2(b: Board) -> None:
    b.pulse(13)  # slave IR5 -> slave INT -> master IR2 edge latched
    assert b.irr(M_CMD) == 0x04
    b.out(S_DATA, 0x20)  # the slave request is masked before INTA
    assert b.irr(M_CMD) == 0x04  # the master's edge request stays latched
    assert b.pic.acknowledge() == 0x2F  # slave base + 7
    assert b.isr(S_CMD) == 0x00  # nothing in service on the slave
    assert b.isr(M_CMD) == 0x04  # but the master has IR2 in service: needs a master EOI
    b.out(S_DATA, 0x00)
    assert not b.pic.intr  # master IR2 in service blocks the slave's request
    b.out(M_CMD, EOI)
    assert b.pic.intr
    assert b.pic.acknowledge() == 0x2D


# --- interface ----------------------------------------------------------------
def test_intr_change_callback_only_on_changes(b: Board) -> None:
    b.changes.clear()
    b.pulse(3)
    b.pulse(4)
    assert b.changes == [True]
    b.pic.acknowledge()
    assert b.changes == [True, False]
    b.out(M_CMD, EOI)
    assert b.changes == [True, False, True]


def test_irq_line_setter_and_bad_numbers(b: Board) -> None:
    line = b.pic.irq_line(14)
    line(1)
    line(0)
    assert b.pic.acknowledge() == 0x2E
    with pytest.raises(EmuError):
        b.pic.irq_line(16)
    with pytest.raises(EmuError):
        b.pic.set_irq(-1, 1)


def test_state_dump_snapshot_digest(b: Board) -> None:
    b.pulse(3)
    text = b.pic.info()
    assert "irr=08" in text and "base=20" in text
    snap = b.pic.snapshot()
    assert snap["master"]["irr"] == 0x08 and snap["slave"]["irq_base"] == 0x28
    d1 = b.pic.digest()
    b.pic.acknowledge()
    assert b.pic.digest() != d1
