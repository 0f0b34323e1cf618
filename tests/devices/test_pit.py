"""8254 PIT and port 0x61 through the port interface, on a hand-advanced virtual clock.

The clock runs at the default 1 GHz, one instruction per cycle, so an instruction
count is a nanosecond count.  Expected values are derived in each test from
QEMU's hw/timer/i8254.c semantics (the reference): ``d = elapsed_ns * 1193182 //
10**9`` ticks; mode 0/1/4/5 read ``count - d``, mode 2 ``count - d % count``,
mode 3 ``count - 2*d % count``; QEMU's IRQ timer fires at ``load +
target_ticks * 10**9 // 1193182`` (rounded down) and, when that is too early to
see the new level, once more 1 ns later.
"""
from __future__ import annotations

from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.clock import Clock
from emu.devices.bus import PortBus
from emu.devices.pic import Pic8259Pair
from emu.devices.pit import Pit8254
from emu.devices.sysctl import RefreshMode, SystemControlPortB

F = 1_193_182
NS = 10**9
CH0, CH1, CH2, CTRL, PORTB = 0x40, 0x41, 0x42, 0x43, 0x61


def floor_ns(ticks: int) -> int:
    """QEMU's tick -> ns conversion for a timer deadline: muldiv64(ticks, 1e9, PIT_FREQ)."""
    return ticks * NS // F


def ticks_at(ns: int) -> int:
    """QEMU's ns -> tick conversion: muldiv64(ns, PIT_FREQ, 1e9)."""
    return ns * F // NS


class Rig:
    """PIT + PIC + port 0x61 on a port bus, with a clock whose instruction count the test sets."""

    def __init__(self, start: int = 0, bcd_counting: bool = False, refresh: RefreshMode = RefreshMode.VIRTUAL_TIME):
        self.now = start
        self.clock = Clock(icount=lambda: self.now)
        self.pic = Pic8259Pair()
        self.calls: list[tuple[int, int]] = []
        self.fired = 0
        self.pit = Pit8254(self.clock, self.irq0, bcd_counting=bcd_counting)
        self.boot_calls = len(self.calls)  # the reset drives IRQ0 (mode 3: high) at construction
        self.portb = SystemControlPortB(self.pit, refresh)
        self.bus = PortBus()
        for dev in (self.pic, self.pit, self.portb):
            for base, count in dev.PORTS:
                self.bus.map(base, count, dev.io_read, dev.io_write, dev.name)

    def irq0(self, level: int) -> None:
        self.calls.append((self.now, level))
        self.pic.set_irq(0, level)

    def out(self, port: int, value: int) -> None:
        self.bus.write(port, 1, value)

    def inb(self, port: int) -> int:
        return self.bus.read(port, 1)

    def advance(self, to: int) -> None:
        """Run the guest to instruction count ``to``, firing every timer at its due count."""
        while True:
            due = self.clock.next_deadline()
            if due is None or due > to:
                break
            self.now = max(self.now, due)
            self.fired += self.clock.run_due()
        self.now = to

    def rises(self) -> list[int]:
        """Instruction counts at which IRQ 0 went 0 -> 1 after construction (as an edge-triggered input sees it)."""
        level, edges = 0, []
        for i, (when, lvl) in enumerate(self.calls):
            if lvl and not level and i >= self.boot_calls:
                edges.append(when)
            level = lvl
        return edges

    def program(self, channel: int, mode: int, count: int, access: int = 3, bcd: int = 0) -> None:
        self.out(CTRL, (channel << 6) | (access << 4) | (mode << 1) | bcd)
        port = CH0 + channel
        if access == 1:
            self.out(port, count & 0xFF)
        elif access == 2:
            self.out(port, count >> 8)
        else:
            self.out(port, count & 0xFF)
            self.out(port, (count >> 8) & 0xFF)

    def read_word(self, channel: int) -> int:
        lo = self.inb(CH0 + channel)
        return lo | (self.inb(CH0 + channel) << 8)

    def status(self, channel: int) -> int:
        self.out(CTRL, 0xE0 | (2 << channel))  # read-back: status only
        return self.inb(CH0 + channel)


# --- reset state ----------------------------------------------------------------
def test_reset_state_mode3_count_65536_gate2_low() -> None:
    r = Rig()
    for ch in range(3):
        # OUT=1 (mode 3, first half), rw=0 (never programmed), mode 3, binary
        assert r.status(ch) == 0x86
    assert r.inb(PORTB) & 0x01 == 0  # gate 2 low after reset
    assert r.inb(CTRL) == 0  # the control register is write-only; QEMU reads 0


# --- modes: counts and OUT ---------------------------------------------------------
def test_mode0_count_out_and_single_irq() -> None:
    r = Rig(start=1_000)
    r.program(0, 0, 1000)
    assert r.calls[-1] == (1_000, 0)  # loading in mode 0 drives OUT low
    r.advance(1_000 + 500_000)
    assert r.read_word(0) == 404  # 500000 ns = 596 ticks -> 1000 - 596
    assert r.status(0) == 0x30  # OUT low, LSB/MSB, mode 0
    # QEMU arms its timer at floor(1000 ticks) = 838095 ns, sees 999 ticks, re-arms 1 ns later
    edge = 1_000 + floor_ns(1000) + 1
    assert ticks_at(edge - 1_000) == 1000 and ticks_at(edge - 1 - 1_000) == 999
    r.advance(edge - 1)
    assert r.rises() == []
    r.advance(edge)
    assert r.rises() == [edge]
    assert r.status(0) == 0xB0  # OUT high after terminal count
    r.advance(1_000 + 1_257_143)  # 1500 ticks: the counter wraps and keeps counting
    assert r.read_word(0) == (1000 - 1500) & 0xFFFF
    r.advance(10_000_000)
    assert r.rises() == [edge]  # mode 0 interrupts once
    assert r.pic.state.master.irr == 0x01


def test_mode1_one_shot_and_gate_retrigger_on_counter2() -> None:
    """QEMU 7.2's mode 1 OUT is high while counting and low after (pic_pit_modes under QEMU: read-back status b2 at
    the load, 32 after the count, OUT2 1 just after a gate edge); a real 8254 has it the other way round."""
    r = Rig()
    r.out(PORTB, 0x01)  # gate 2 high
    r.program(2, 1, 300)
    load = r.now
    r.advance(100_000)  # 119 ticks
    assert r.read_word(2) == 300 - 119
    assert r.inb(PORTB) & 0x20 == 0x20  # OUT2 high while counting (QEMU 7.2)
    r.advance(load + floor_ns(300))  # last ns with 299 ticks elapsed
    assert r.inb(PORTB) & 0x20 == 0x20
    r.advance(load + floor_ns(300) + 1)  # first ns with 300 ticks elapsed
    assert r.inb(PORTB) & 0x20 == 0
    r.out(PORTB, 0x00)
    r.advance(400_000)
    r.out(PORTB, 0x01)  # rising gate edge retriggers
    assert r.read_word(2) == 300
    assert r.inb(PORTB) & 0x20 == 0x20
    r.advance(400_000 + 50_000)  # 59 ticks
    assert r.read_word(2) == 300 - 59


def test_mode2_counts_and_readback_out() -> None:
    r = Rig()
    r.program(0, 2, 100)
    r.advance(30_000)  # 35 ticks
    assert r.read_word(0) == 100 - 35
    r.advance(150_000)  # 178 ticks: 178 % 100 = 78
    assert r.read_word(0) == 22
    assert r.status(0) & 0x80 == 0  # QEMU: OUT reads 0 except on the reload tick
    t = -(-200 * NS // F)  # first ns of tick 200
    r.advance(t)
    assert ticks_at(t) == 200
    assert r.read_word(0) == 100  # count - d % count with d % count == 0
    assert r.status(0) == 0xB4  # the reload tick: OUT=1, LSB/MSB, mode 2


def test_mode2_irq0_period_exact_instruction_counts() -> None:
    r = Rig(start=5_000)
    count = 1193  # ~1 kHz
    r.program(0, 2, count)
    load = 5_000
    # QEMU: after a load its timer targets count+1 ticks, fires at floor_ns(count+1) and sees d = count
    # (OUT=1); from d = k*count it targets (k+1)*count (fires one tick early, OUT=0), then (k+1)*count+1.
    expected = [load + floor_ns(k * count + 1) for k in range(1, 11)]
    for k, t in enumerate(expected, start=1):
        assert ticks_at(t - load) == k * count  # each lands inside the reload tick
    r.advance(load + floor_ns(10 * count + 1))
    assert r.rises() == expected
    assert expected[:3] == [5_000 + 1_000_685, 5_000 + 2_000_533, 5_000 + 3_000_380]
    assert r.fired == 10  # one timer callback per period
    assert r.pic.state.master.irr == 0x01


def test_mode3_square_wave_counts_out_and_irq() -> None:
    r = Rig()
    r.program(0, 3, 1000)
    assert r.calls[-1] == (0, 1)  # mode 3 starts with OUT high: QEMU drives IRQ0 high at load
    assert r.rises() == []  # ... but the reset (mode 3 too) already had it high: no edge
    r.advance(100_000)  # 119 ticks: counts down by two
    assert r.read_word(0) == 1000 - 238
    assert r.status(0) & 0x80 == 0x80  # first half: high
    r.advance(500_000)  # 596 ticks: second half
    assert r.read_word(0) == 1000 - (2 * 596) % 1000
    assert r.status(0) & 0x80 == 0
    # rising edges at the first ns of tick k*1000 (QEMU: floor_ns + 1 after its early firing)
    expected = [floor_ns(k * 1000) + 1 for k in range(1, 6)]
    r.advance(expected[-1])
    assert r.rises() == expected
    assert r.fired == 5


def test_mode3_odd_count_high_half_is_longer() -> None:
    r = Rig()
    r.program(2, 3, 5, access=1)
    r.out(PORTB, 0x01)  # gate rising edge restarts the square wave now
    start = r.now
    outs = []
    for tick in range(10):
        r.advance(start + -(-tick * NS // F))  # first ns of each tick
        outs.append(r.inb(PORTB) >> 5 & 1)
    assert outs == [1, 1, 1, 0, 0, 1, 1, 1, 0, 0]  # high (5+1)/2 = 3 ticks, low 2


def test_mode4_software_strobe() -> None:
    r = Rig(start=10)
    r.program(0, 4, 50)
    assert r.status(0) & 0x80 == 0
    strobe = 10 + floor_ns(50) + 1
    r.advance(strobe)
    assert r.status(0) & 0x80 == 0x80  # QEMU: OUT high only during tick 50
    assert r.rises() == [strobe]
    r.advance(strobe + 2_000)
    assert r.status(0) & 0x80 == 0
    assert r.read_word(0) == (50 - ticks_at(strobe + 2_000 - 10)) & 0xFFFF
    r.advance(50_000_000)
    assert r.rises() == [strobe]


def test_mode5_hardware_strobe_restarts_on_gate() -> None:
    r = Rig()
    r.out(PORTB, 0x01)
    r.program(2, 5, 40)
    r.advance(20_000)
    r.out(PORTB, 0x00)
    r.out(PORTB, 0x01)  # trigger
    trig = r.now
    assert r.read_word(2) == 40
    r.advance(trig + floor_ns(40) + 1)
    assert r.inb(PORTB) & 0x20 == 0x20
    r.advance(trig + floor_ns(41) + 1)
    assert r.inb(PORTB) & 0x20 == 0


def test_modes_6_and_7_alias_2_and_3_but_read_back_as_programmed() -> None:
    r = Rig()
    r.out(CTRL, 0x3C)  # counter 0, LSB/MSB, mode 6
    r.out(CH0, 100)
    r.out(CH0, 0)
    r.advance(150_000)  # 178 ticks
    assert r.read_word(0) == 100 - 178 % 100  # mode 2 counting
    assert r.status(0) & 0x0E == 0x0C
    r.out(CTRL, 0xBE)  # counter 2, LSB/MSB, mode 7
    r.out(CH2, 100)
    r.out(CH2, 0)
    r.out(PORTB, 1)
    start = r.now
    r.advance(start + 30_000)  # 35 ticks
    assert r.read_word(2) == 100 - 70  # mode 3 counts by two


# --- access modes, latch, read-back ---------------------------------------------
def test_access_lsb_only_and_msb_only() -> None:
    r = Rig()
    r.program(2, 0, 0x34, access=1)
    r.out(PORTB, 1)
    assert r.inb(CH2) == 0x34 and r.inb(CH2) == 0x34  # LSB only: every read is the LSB
    r.program(2, 2, 0x1200, access=2)
    assert r.pit.state.channels[2].count == 0x1200
    assert r.inb(CH2) == 0x12  # MSB only
    r.advance(r.now + 1_000_000)  # 1193 ticks: 0x1200 - 1193 = 0x0D57
    assert r.inb(CH2) == 0x0D


def test_word_access_flip_flop_reads_and_writes() -> None:
    r = Rig()
    r.out(CTRL, 0x30)
    r.out(CH0, 0x78)
    assert r.pit.state.channels[0].write_state == 4  # waiting for the MSB
    r.out(CH0, 0x56)
    assert r.pit.state.channels[0].count == 0x5678
    assert r.inb(CH0) == 0x78
    r.out(CTRL, 0x30)  # a control word resets the flip-flop to LSB
    r.out(CH0, 0x34)
    r.out(CH0, 0x12)
    assert r.inb(CH0) == 0x34
    assert r.inb(CH0) == 0x12
    assert r.inb(CH0) == 0x34  # and alternates


def test_count_zero_means_65536() -> None:
    r = Rig()
    r.program(0, 2, 0)
    r.advance(1_000_000)  # 1193 ticks
    assert r.read_word(0) == 65536 - 1193
    r.advance(floor_ns(65536 + 1))
    assert r.rises() == [floor_ns(65536 + 1)]


def test_counter_latch_freezes_value_until_read() -> None:
    r = Rig()
    r.program(0, 2, 50_000)
    r.advance(10_000)  # 11 ticks
    r.out(CTRL, 0x00)  # latch counter 0
    r.advance(2_000_000)
    r.out(CTRL, 0x00)  # a second latch before reading is ignored
    assert r.read_word(0) == 50_000 - 11
    assert r.read_word(0) == 50_000 - ticks_at(2_000_000)  # live again


def test_latch_in_lsb_mode_reads_one_byte() -> None:
    r = Rig()
    r.program(1, 0, 0x80, access=1)
    r.advance(50_000)  # 59 ticks -> 0x80 - 59 = 0x45
    r.out(CTRL, 0x40)
    r.advance(60_000)
    assert r.inb(CH1) == 0x45
    assert r.inb(CH1) == (0x80 - ticks_at(60_000)) & 0xFF


def test_read_back_status_then_count() -> None:
    r = Rig()
    r.program(0, 2, 1000)
    r.program(1, 0, 2000)
    r.advance(100_000)  # 119 ticks
    r.out(CTRL, 0xC6)  # read-back, count and status, counters 0 and 1
    r.advance(200_000)
    assert r.inb(CH0) == 0x34  # status first: OUT 0, rw 3, mode 2, binary; null count never set
    assert r.read_word(0) == 1000 - 119
    assert r.inb(CH1) == 0x30
    assert r.read_word(1) == 2000 - 119
    r.out(CTRL, 0xD2)  # count only, counter 0
    r.out(CTRL, 0xE2)  # status only, counter 0: status is read before the latched count
    assert r.inb(CH0) == 0x34
    assert r.read_word(0) == 1000 - ticks_at(200_000) % 1000


def test_read_back_does_not_relatch_status() -> None:
    r = Rig()
    r.program(2, 0, 100)
    r.out(PORTB, 1)
    r.out(CTRL, 0xE8)  # status of counter 2
    r.advance(floor_ns(100) + 100)
    r.out(CTRL, 0xE8)  # ignored: the first status is still latched
    assert r.inb(CH2) & 0x80 == 0
    assert r.status(2) & 0x80 == 0x80


def test_bcd_bit_is_reported_but_counting_is_binary_as_qemu() -> None:
    r = Rig()
    r.program(0, 0, 0x1000, bcd=1)
    assert r.status(0) == 0x31
    r.advance(1_000)  # 1 tick
    assert r.read_word(0) == 0x0FFF


def test_bcd_counting_option_follows_datasheet() -> None:
    r = Rig(bcd_counting=True)
    r.program(0, 0, 0x1000, bcd=1)  # 1000 decimal
    r.advance(1_000)  # 1 tick
    assert r.read_word(0) == 0x0999
    t = floor_ns(1000) + 1
    r.advance(t)
    assert r.rises() == [t]  # terminal count after 1000 ticks, not 4096
    r.program(2, 2, 0x0000, bcd=1)  # 0 = 10000 in BCD
    r.out(PORTB, 1)
    start = r.now
    r.advance(start + 10_000)  # 11 ticks
    assert r.read_word(2) == 0x9989


# --- gate and port 0x61 ----------------------------------------------------------
def test_mode0_gate_does_not_stop_counting_as_qemu_7_2() -> None:
    """QEMU 7.2's pit_get_count ignores the gate in mode 0 and pit_load_count always restarts
    (checked on qemu-system-i386 7.2: a count loaded with gate 2 low reads back counting down)."""
    r = Rig()
    r.program(2, 0, 500)  # gate 2 is low after reset
    r.advance(100_000)
    assert r.read_word(2) == 500 - 119
    r.out(PORTB, 0x01)
    r.advance(200_000)
    assert r.read_word(2) == 500 - 238


def test_wide_pit_and_port61_accesses_split_like_qemu_7_2() -> None:
    r = Rig(refresh=RefreshMode.PER_READ)
    r.program(2, 0, 0x55, access=1)
    assert r.bus.read(CH2, 2) == 0x0055  # counter 2 LSB, then the control register (reads 0)
    assert r.bus.read(CH1, 2) == 0x0000  # unaligned in the 4-port region: rejected
    r.out(CTRL, 0xB0)
    r.bus.write(CH2, 2, 0x8877)  # LSB 0x77 to counter 2, then 0x88 to the control port: latch counter 2
    assert r.pit.state.channels[2].write_latch == 0x77
    assert r.pit.state.channels[2].count_latched == 3
    r.out(PORTB, 0x03)
    assert r.bus.read(PORTB, 2) == 0x0313  # the register twice (OUT2 low: mode 0 still counting); refresh toggles per read


def test_port61_bits() -> None:
    r = Rig()
    r.out(PORTB, 0x03)
    v = r.inb(PORTB)
    assert v & 0x03 == 0x03
    assert v & 0xCC == 0
    r.out(PORTB, 0xFC)
    assert r.inb(PORTB) & 0x03 == 0


def test_port61_refresh_toggles_every_18_ticks_of_virtual_time() -> None:
    r = Rig()
    seen = []
    for n in (0, 17, 18, 35, 36, 54):
        r.advance(-(-n * NS // F))
        seen.append((r.inb(PORTB) >> 4) & 1)
    assert seen == [0, 0, 1, 1, 0, 1]
    assert (r.inb(PORTB) >> 4) & 1 == 1  # reading does not toggle it


def test_port61_refresh_per_read_as_qemu() -> None:
    r = Rig(refresh=RefreshMode.PER_READ)
    assert [(r.inb(PORTB) >> 4) & 1 for _ in range(4)] == [1, 0, 1, 0]


def test_linux_style_calibration_loop_sees_out2() -> None:
    r = Rig()
    r.out(PORTB, (r.inb(PORTB) & ~0x02) | 0x01)
    r.out(CTRL, 0xB0)  # counter 2, LSB/MSB, mode 0
    latch = 11932  # ~10 ms
    r.out(CH2, latch & 0xFF)
    r.out(CH2, latch >> 8)
    load = r.now
    r.advance(load + floor_ns(latch))
    assert r.inb(PORTB) & 0x20 == 0  # one ns early
    r.advance(load + floor_ns(latch) + 1)
    assert r.inb(PORTB) & 0x20 == 0x20


# --- IRQ 0 timing under reprogramming --------------------------------------------
def test_reload_mid_period_restarts_from_load() -> None:
    r = Rig()
    r.program(0, 2, 1000)
    r.advance(500_000)
    r.out(CTRL, 0x34)
    r.out(CH0, 0x58)  # LSB only so far: nothing changes
    r.advance(600_000)
    assert r.rises() == []
    r.out(CH0, 0x02)  # 0x258 = 600, loaded at 600000
    r.advance(600_000 + floor_ns(3 * 600 + 1))
    assert r.rises() == [600_000 + floor_ns(k * 600 + 1) for k in (1, 2, 3)]


def test_switching_mode3_to_mode2_mid_high_half_gives_no_extra_edge() -> None:
    r = Rig()
    r.program(0, 3, 1000)
    r.advance(200_000)  # high half
    r.program(0, 2, 1000)  # QEMU drives OUT(0)=0 at the load
    assert r.calls[-1] == (200_000, 0)
    r.program(0, 3, 1000)  # and 1 again: a new edge
    assert r.rises() == [200_000]


def test_loading_mode3_while_mode2_line_is_high_is_not_an_edge() -> None:
    r = Rig()
    r.program(0, 2, 1000)
    first = floor_ns(1001)
    r.advance(first + 100_000)  # QEMU's IRQ0 line stays high until just before the next reload
    assert r.rises() == [first]
    r.program(0, 3, 500)  # mode 3 OUT starts high: QEMU re-drives 1, no edge
    assert r.rises() == [first]
    r.advance(first + 100_000 + floor_ns(500) + 1)
    assert r.rises() == [first, first + 100_000 + floor_ns(500) + 1]


def test_rate_timer_cost_is_one_callback_per_period() -> None:
    r = Rig()
    r.program(0, 3, 119)  # ~10 kHz square wave
    r.advance(floor_ns(119 * 1000) + 10)
    assert len(r.rises()) == 1000  # the line was already high at the load (reset state)
    assert r.fired == 1000


# --- equivalence with QEMU's timer chain, firing by firing ----------------------
class QemuChannel0:
    """QEMU's pit_irq_timer_update loop, literally: every firing evaluates OUT and re-arms."""

    def __init__(self, mode: int, count: int, load: int):
        self.mode, self.count, self.load = mode, count, load
        self.calls: list[tuple[int, int]] = []
        self.timer: Optional[int] = None

    def out(self, t: int) -> int:
        d, c, m = ticks_at(t - self.load), self.count, self.mode
        if m == 2:
            return int(d % c == 0 and d != 0)
        if m == 3:
            return int(d % c < (c + 1) >> 1)
        if m in (4, 5):
            return int(d == c)
        if m == 1:
            return int(d < c)   # QEMU 7.2 i8254_common.c pit_get_out (8.0 changed mode 1 to d >= c)
        return int(d >= c)

    def next(self, t: int) -> Optional[int]:
        d, c, m = ticks_at(t - self.load), self.count, self.mode
        if m in (0, 1):
            if d >= c:
                return None
            n = c
        elif m == 2:
            base = d - d % c
            n = base + c if d == base and d != 0 else base + c + 1
        elif m == 3:
            base = d - d % c
            n = base + (c + 1) // 2 if d - base < (c + 1) // 2 else base + c
        else:
            if d > c:
                return None
            n = c if d < c else c + 1
        when = self.load + n * NS // F
        return when if when > t else t + 1

    def update(self, t: int) -> None:
        self.calls.append((t, self.out(t)))
        self.timer = self.next(t)

    def run_until(self, end: int) -> None:
        while self.timer is not None and self.timer <= end:
            self.update(self.timer)


def _edges(calls: list[tuple[int, int]]) -> list[int]:
    level, out = 0, []
    for when, lvl in calls:
        if lvl and not level:
            out.append(when)
        level = lvl
    return out


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    mode=st.sampled_from([0, 1, 2, 3, 4, 5]),
    count=st.integers(min_value=1, max_value=65_536),
    load=st.integers(min_value=0, max_value=10_000_000),
    periods=st.integers(min_value=1, max_value=6),
)
def test_rising_edges_match_qemu_timer_chain(mode: int, count: int, load: int, periods: int) -> None:
    end = load + floor_ns(count * periods + 2) + 2
    ref = QemuChannel0(mode, count, load)
    ref.update(load)
    ref.run_until(end)
    r = Rig(start=load)
    r.calls.clear()
    r.program(0, mode, count & 0xFFFF)
    r.advance(end)
    assert _edges(r.calls) == _edges(ref.calls)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    mode=st.sampled_from([2, 3]),
    count=st.integers(min_value=2, max_value=5_000),
    new_mode=st.sampled_from([0, 1, 2, 3, 4, 5]),
    when=st.integers(min_value=1, max_value=8_000_000),
)
def test_control_word_without_reload_matches_qemu(mode: int, count: int, new_mode: int, when: int) -> None:
    """QEMU keeps its pending timer across a control word; the next firing evaluates the new mode."""
    end = when + floor_ns(3 * count + 2) + 2
    ref = QemuChannel0(mode, count, 0)
    ref.update(0)
    ref.run_until(when)
    ref.mode = new_mode
    ref.run_until(end)
    r = Rig()
    r.calls.clear()
    r.program(0, mode, count)
    r.advance(when)
    r.out(CTRL, 0x30 | (new_mode << 1))
    r.advance(end)
    assert _edges(r.calls) == _edges(ref.calls)


def test_state_dump() -> None:
    r = Rig()
    r.program(0, 2, 1193)
    text = r.pit.info()
    assert "ch0 mode=2" in text and "count=0x4a9" in text
    assert r.pit.snapshot()["channels"][0]["count"] == 1193
    assert len(r.pit.digest()) == 64
    assert "data_on" in r.portb.info()


@pytest.mark.parametrize("mode", [0, 1, 2, 3, 4, 5])
def test_small_counts_match_qemu_timer_chain(mode: int) -> None:
    for count in range(1, 40):
        for load in (0, 419, 838, 1_000_003):
            end = load + floor_ns(count * 5 + 2) + 2
            ref = QemuChannel0(mode, count, load)
            ref.update(load)
            ref.run_until(end)
            r = Rig(start=load)
            r.calls.clear()
            r.program(0, mode, count)
            r.advance(end)
            assert _edges(r.calls) == _edges(ref.calls), (count, load)


def test_edges_land_on_first_instruction_at_or_after_the_ns_on_a_slower_clock() -> None:
    from emu.clock import ClockSpec

    now = [0]
    clock = Clock(ClockSpec(hz=300_000_000, cycles_per_insn=1), icount=lambda: now[0])  # 3.33 ns per instruction
    seen: list[int] = []
    pit = Pit8254(clock, lambda level: seen.append(now[0]) if level else None)
    seen.clear()
    pit.io_write(CTRL, 1, 0x34)
    pit.io_write(CH0, 1, 1193 & 0xFF)
    pit.io_write(CH0, 1, 1193 >> 8)
    for _ in range(3):
        now[0] = clock.next_deadline()
        clock.run_due()
    # edge k at ns floor_ns(k*1193+1); instruction i runs at ns i*10/3 (rounded down): first i with ns >= edge
    expected = [-(-floor_ns(k * 1193 + 1) * 3 // 10) for k in (1, 2, 3)]
    assert seen == expected
    assert all(clock.ns(i) >= floor_ns(k * 1193 + 1) > clock.ns(i - 1) for i, k in zip(expected, (1, 2, 3)))
