"""The 8254 programmable interval timer (ports 0x40-0x43), timed by the virtual clock only.

Semantics are those of QEMU 7.2's ``hw/timer/i8254.c`` / ``i8254_common.c`` (the
reference this project is compared against; checked with probe kernels on
qemu-system-i386 7.2), which differ from a real Intel 8254 in a few documented
ways (see ``docs/devices-pic-pit.md``):

* a counter is a function of the nanoseconds since its count was loaded:
  ``d = (ns - count_load_time) * 1193182 // 10**9`` input-clock ticks, and
  mode 0/1/4/5 read ``count - d``, mode 2 ``count - d % count``, mode 3
  ``count - 2*d % count``;
* OUT: mode 0 ``d >= count``; mode 1 ``d < count`` (QEMU 7.2 inverts the
  datasheet's mode 1: high while counting, low after; QEMU 8.0 changed it to
  ``d >= count``; observed with the pic_pit_modes kernel); mode 2 high only while ``d % count == 0``
  (after the first period), so read-back shows OUT=0 almost always; mode 3
  high for the first ``(count+1)//2`` ticks of each period; mode 4/5 high
  only while ``d == count``;
* writing a complete count restarts counting at once in every mode, whatever
  the gate; GATE only matters as a rising edge in modes 1, 2, 3 and 5
  (restart) -- a low gate does not stop any counter;
* the null-count status bit is never set; counting is binary even with the
  BCD bit (it is stored and read back) unless ``bcd_counting=True``;
* modes 6 and 7 behave as 2 and 3 (datasheet; QEMU runs them as mode 0) but
  read back as programmed.

Channel 0's OUT drives IRQ 0.  QEMU re-evaluates OUT at each "transition time"
it computes and calls the IRQ line with the level it finds; because its
tick-to-ns rounding floors, most of its timer firings land one nanosecond
early, see an unchanged level and re-arm 1 ns later.  This model replays that
same chain of firings arithmetically (so every rising edge lands on exactly
the nanosecond QEMU raises it) but only puts one callback per rising edge on
the clock queue: a fall is delivered lazily, just before the next rise or the
next guest access to the channel, which an edge-triggered PIC input cannot
tell apart (IRQ 0 can never be level-triggered: ELCR1 bit 0 is read-only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from emu import EmuError
from emu.clock import NS_PER_S, Clock, Timer
from emu.devices.base import Device, IrqSetter
from emu.devices.pic import split_read, split_write

PIT_FREQ = 1_193_182
"""Input clock of every channel in Hz (QEMU ``PIT_FREQ``)."""
PIT_IO = 0x40
"""Counter 0-2 data ports 0x40-0x42 and the control word register 0x43."""
CONTROL_PORT = 0x43

# Read/write state of the LSB/MSB flip-flop (QEMU ``RW_STATE_*``); 1-3 equal the access field.
RW_STATE_LSB = 1
RW_STATE_MSB = 2
RW_STATE_WORD0 = 3
RW_STATE_WORD1 = 4

CW_SC_SHIFT = 6
"""Control word bits 7:6: select counter (3 = read-back command)."""
CW_RW_SHIFT = 4
"""Control word bits 5:4: 0 counter latch, 1 LSB, 2 MSB, 3 LSB then MSB."""
CW_BCD = 0x01
"""Control word bit 0: BCD counting."""
SC_READ_BACK = 3
RB_NOT_COUNT = 0x20
"""Read-back bit 5 = 0: latch the count of the selected counters."""
RB_NOT_STATUS = 0x10
"""Read-back bit 4 = 0: latch the status of the selected counters."""
STATUS_OUT = 0x80
"""Status byte bit 7: OUT pin; bit 6 null count (never set, as QEMU); 5:0 the control word bits."""

_CHAIN_LIMIT = 64


def _bcd_decode(value: int) -> int:
    """Four BCD digits as an integer (a non-decimal nibble counts as its binary value)."""
    return ((value >> 12) & 0xF) * 1000 + ((value >> 8) & 0xF) * 100 + ((value >> 4) & 0xF) * 10 + (value & 0xF)


def _bcd_encode(value: int) -> int:
    """An integer 0-9999 as four BCD digits."""
    return ((value // 1000) % 10) << 12 | ((value // 100) % 10) << 8 | ((value // 10) % 10) << 4 | value % 10


@dataclass
class PitChannelState:
    """One counter (names of QEMU's ``PITChannelState``; times in virtual ns)."""

    count: int = 0x10000
    latched_count: int = 0
    count_latched: int = 0
    status_latched: bool = False
    status: int = 0
    read_state: int = 0
    write_state: int = 0
    write_latch: int = 0
    rw_mode: int = 0
    mode: int = 3
    bcd: bool = False
    gate: bool = True
    count_load_time: int = 0
    next_transition_time: int = -1
    irq_level: int = 0
    irq_delivered: int = 0
    next_edge_time: int = -1


@dataclass
class PitState:
    """The three counters."""

    channels: list[PitChannelState] = field(default_factory=lambda: [PitChannelState() for _ in range(3)])


class Pit8254(Device):
    """Intel 8254: three 16-bit counters on a 1.193182 MHz clock; counter 0 OUT drives IRQ 0."""

    name = "pit"
    PORTS = ((PIT_IO, 4),)
    """(base, count) port ranges the machine maps with ``bus.map``."""

    def __init__(self, clock: Clock, irq0: Optional[IrqSetter] = None, *, bcd_counting: bool = False):
        self.clock = clock
        self.irq0 = irq0
        self.bcd_counting = bcd_counting
        self.state = PitState()
        self._timer: Optional[Timer] = None
        self.reset()

    # --- time ------------------------------------------------------------
    def _ticks(self, ch: PitChannelState, now: int) -> int:
        """Input-clock ticks since the count was loaded (QEMU: muldiv64(now - load, PIT_FREQ, 1e9))."""
        elapsed = now - ch.count_load_time
        return elapsed * PIT_FREQ // NS_PER_S if elapsed > 0 else 0

    @staticmethod
    def _mode(ch: PitChannelState) -> int:
        """The operating mode, 6 and 7 folded onto 2 and 3 (datasheet: bit 3 is 'don't care' for them)."""
        return ch.mode - 4 if ch.mode >= 6 else ch.mode

    def _modulus(self, ch: PitChannelState) -> int:
        return 10000 if self.bcd_counting and ch.bcd else 0x10000

    def _counter(self, ch: PitChannelState, now: int) -> int:
        """The counting element at ``now`` as an integer (QEMU ``pit_get_count``)."""
        d = self._ticks(ch, now)
        mode = self._mode(ch)
        c = ch.count
        if mode in (0, 1, 4, 5):
            return (c - d) % self._modulus(ch)
        if mode == 3:
            return c - (2 * d) % c
        return c - d % c

    def _register(self, ch: PitChannelState, value: int) -> int:
        """The 16-bit image the data port shows for counter value ``value``."""
        if self.bcd_counting and ch.bcd:
            return _bcd_encode(value % 10000)
        return value & 0xFFFF

    def _out(self, ch: PitChannelState, now: int) -> int:
        """OUT at ``now`` (QEMU ``pit_get_out``)."""
        d = self._ticks(ch, now)
        mode = self._mode(ch)
        c = ch.count
        if mode == 2:
            return 1 if d % c == 0 and d != 0 else 0
        if mode == 3:
            return 1 if d % c < (c + 1) >> 1 else 0
        if mode in (4, 5):
            return 1 if d == c else 0
        if mode == 1:
            return 1 if d < c else 0
        return 1 if d >= c else 0

    def _next_transition(self, ch: PitChannelState, now: int) -> int:
        """When QEMU's IRQ timer next fires after evaluating at ``now``, or -1 (``pit_get_next_transition_time``)."""
        d = self._ticks(ch, now)
        mode = self._mode(ch)
        c = ch.count
        if mode == 2:
            if c == 1 and d >= 1:
                return -1  # OUT stays high; QEMU would re-assert it every tick
            base = d - d % c
            target = base + c if d == base and d != 0 else base + c + 1
        elif mode == 3:
            if c == 1:
                return -1  # OUT is constantly high
            base = d - d % c
            half = (c + 1) >> 1
            target = base + half if d - base < half else base + c
        elif mode in (4, 5):
            if d < c:
                target = c
            elif d == c:
                target = c + 1
            else:
                return -1
        elif d < c:
            target = c
        else:
            return -1
        when = ch.count_load_time + target * NS_PER_S // PIT_FREQ
        return when if when > now else now + 1

    # --- IRQ 0 -----------------------------------------------------------
    def _deliver(self, ch: PitChannelState, level: int) -> None:
        ch.irq_delivered = level
        if self.irq0 is not None:
            self.irq0(level)

    def _advance(self, ch: PitChannelState, limit: int) -> None:
        """Replay QEMU's timer firings due at or before ``limit``: deliver rises, defer falls."""
        while 0 <= ch.next_transition_time <= limit:
            t = ch.next_transition_time
            level = self._out(ch, t)
            if level and not ch.irq_level:
                if ch.irq_delivered:
                    self._deliver(ch, 0)
                self._deliver(ch, 1)
            ch.irq_level = level
            ch.next_transition_time = self._next_transition(ch, t)

    def _schedule(self, ch: PitChannelState) -> None:
        """Put one callback on the clock at QEMU's next rising edge of OUT0 (none if there is none)."""
        Clock.cancel(self._timer)
        self._timer = None
        t, level = ch.next_transition_time, ch.irq_level
        for _ in range(_CHAIN_LIMIT):
            if t < 0:
                ch.next_edge_time = -1
                return
            new = self._out(ch, t)
            if new and not level:
                ch.next_edge_time = t
                self._timer = self.clock.schedule(self.clock.icount_at_ns(t), self._on_edge, "pit.irq0")
                return
            level = new
            t = self._next_transition(ch, t)
        raise EmuError("pit: no OUT0 edge found in the transition chain (internal error)")

    def _on_edge(self) -> None:
        ch = self.state.channels[0]
        self._timer = None
        self._advance(ch, ch.next_edge_time)
        self._schedule(ch)

    def _catch_up(self, channel: int, now: int) -> None:
        """Before a guest access changes counter 0: replay QEMU's firings up to ``now`` with the old state."""
        if channel == 0 and self.irq0 is not None:
            self._advance(self.state.channels[0], now)

    def _irq_update(self, channel: int, now: int) -> None:
        """QEMU ``pit_irq_timer_update(now)`` for counter 0: drive OUT's level now, re-arm the timer."""
        if channel != 0 or self.irq0 is None:
            return
        ch = self.state.channels[0]
        if ch.irq_delivered and not ch.irq_level:
            self._deliver(ch, 0)
        level = self._out(ch, now)
        self._deliver(ch, level)
        ch.irq_level = level
        ch.next_transition_time = self._next_transition(ch, now)
        self._schedule(ch)

    # --- counter operations ----------------------------------------------
    def reset(self) -> None:
        """System reset: every counter mode 3, count 0x10000, loaded now; gate 2 low (QEMU ``pit_reset``)."""
        now = self.clock.ns()
        for i, ch in enumerate(self.state.channels):
            self._catch_up(i, now)
            ch.mode = 3
            ch.gate = i != 2
            ch.count_load_time = now
            ch.count = 0x10000
        self._irq_update(0, now)

    def _load_count(self, i: int, value: int) -> None:
        """A complete count was written: counting restarts from it now, whatever the gate (QEMU 7.2 ``pit_load_count``)."""
        ch = self.state.channels[i]
        if self.bcd_counting and ch.bcd:
            value = _bcd_decode(value) or 10000
        elif value == 0:
            value = 0x10000
        now = self.clock.ns()
        self._catch_up(i, now)
        ch.count = value
        ch.count_load_time = now
        self._irq_update(i, now)

    def _latch_count(self, ch: PitChannelState, now: int) -> None:
        """Counter latch command; a second latch before the first is read is ignored."""
        if not ch.count_latched:
            ch.latched_count = self._register(ch, self._counter(ch, now))
            ch.count_latched = ch.rw_mode

    def set_gate(self, channel: int, level: int) -> None:
        """Drive GATE of ``channel``; a rising edge restarts modes 1, 2, 3, 5 (QEMU ``pit_set_channel_gate``)."""
        ch = self.state.channels[channel]
        val = bool(level)
        if self._mode(ch) in (1, 2, 3, 5) and val and not ch.gate:
            now = self.clock.ns()
            self._catch_up(channel, now)
            ch.count_load_time = now
            ch.gate = val
            self._irq_update(channel, now)
        else:
            ch.gate = val

    def gate(self, channel: int) -> int:
        """Current GATE input of ``channel``."""
        return int(self.state.channels[channel].gate)

    def out(self, channel: int) -> int:
        """Current OUT pin of ``channel`` (what port 0x61 bit 5 shows for counter 2)."""
        return self._out(self.state.channels[channel], self.clock.ns())

    def count(self, channel: int) -> int:
        """Current value of ``channel``'s counting element, without side effects (for dumps and tests)."""
        ch = self.state.channels[channel]
        return self._register(ch, self._counter(ch, self.clock.ns()))

    # --- port handlers ---------------------------------------------------
    def _write_control(self, val: int) -> None:
        now = self.clock.ns()
        sc = val >> CW_SC_SHIFT
        if sc == SC_READ_BACK:
            for i, ch in enumerate(self.state.channels):
                if not val & (2 << i):
                    continue
                if not val & RB_NOT_COUNT:
                    self._latch_count(ch, now)
                if not val & RB_NOT_STATUS and not ch.status_latched:
                    ch.status = (self._out(ch, now) << 7) | (ch.rw_mode << 4) | (ch.mode << 1) | int(ch.bcd)
                    ch.status_latched = True
            return
        ch = self.state.channels[sc]
        access = (val >> CW_RW_SHIFT) & 3
        if access == 0:
            self._latch_count(ch, now)
            return
        self._catch_up(sc, now)
        ch.rw_mode = ch.read_state = ch.write_state = access
        ch.mode = (val >> 1) & 7
        ch.bcd = bool(val & CW_BCD)
        if sc == 0 and self.irq0 is not None:
            self._schedule(ch)  # QEMU keeps its timer: the next firing evaluates the new mode

    def _write_counter(self, i: int, val: int) -> None:
        ch = self.state.channels[i]
        if ch.write_state == RW_STATE_MSB:
            self._load_count(i, val << 8)
        elif ch.write_state == RW_STATE_WORD0:
            ch.write_latch = val
            ch.write_state = RW_STATE_WORD1
        elif ch.write_state == RW_STATE_WORD1:
            ch.write_state = RW_STATE_WORD0
            self._load_count(i, ch.write_latch | (val << 8))
        else:
            self._load_count(i, val)

    def _read_counter(self, i: int) -> int:
        ch = self.state.channels[i]
        if ch.status_latched:
            ch.status_latched = False
            return ch.status
        if ch.count_latched:
            if ch.count_latched == RW_STATE_MSB:
                ch.count_latched = 0
                return ch.latched_count >> 8
            if ch.count_latched == RW_STATE_WORD0:
                ch.count_latched = RW_STATE_MSB
                return ch.latched_count & 0xFF
            ch.count_latched = 0
            return ch.latched_count & 0xFF
        count = self._register(ch, self._counter(ch, self.clock.ns()))
        if ch.read_state == RW_STATE_MSB:
            return count >> 8
        if ch.read_state == RW_STATE_WORD0:
            ch.read_state = RW_STATE_WORD1
            return count & 0xFF
        if ch.read_state == RW_STATE_WORD1:
            ch.read_state = RW_STATE_WORD0
            return count >> 8
        return count & 0xFF

    def _read_byte(self, offset: int) -> int:
        offset &= 3
        if offset == 3:
            return 0  # the control word register is write-only; QEMU reads 0
        return self._read_counter(offset)

    def _write_byte(self, offset: int, val: int) -> None:
        offset &= 3
        if offset == 3:
            self._write_control(val)
        else:
            self._write_counter(offset, val)

    def io_read(self, port: int, size: int) -> int:
        """IN: byte registers; a wider access is split as QEMU does (offsets wrap modulo 4)."""
        return split_read(port - PIT_IO, size, self._read_byte)

    def io_write(self, port: int, size: int, value: int) -> None:
        """OUT: byte registers; a wider access is split as QEMU does (offsets wrap modulo 4)."""
        split_write(port - PIT_IO, size, value, self._write_byte)

    def info(self) -> str:
        """Each counter's programming, current count and OUT, and the next IRQ 0 edge."""
        now = self.clock.ns()
        lines = [f"{self.name}: now={now}ns next_irq0_edge={self.state.channels[0].next_edge_time}ns"]
        for i, ch in enumerate(self.state.channels):
            lines.append(
                f"  ch{i} mode={ch.mode} rw={ch.rw_mode} bcd={int(ch.bcd)} gate={int(ch.gate)} count={ch.count:#x} "
                f"value={self._register(ch, self._counter(ch, now)):#06x} out={self._out(ch, now)} "
                f"loaded_at={ch.count_load_time}ns latched={ch.count_latched}/{int(ch.status_latched)}"
            )
        return "\n".join(lines)
