"""What a ``break-exit`` needs from the VMX controls: which exit reasons emu can produce, which filters fit a
reason, and the controls that make such an exit happen (turned on while the break is set, restored after).

Controls and bitmaps: Intel SDM Vol. 3C §25.6 (execution controls), §26.1–26.2 (which instructions and events
exit), §25.6.3 (exception bitmap), §25.6.4 (I/O bitmaps), §25.6.9 (MSR bitmap); names from ``emu.vmx.controls``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Optional

from emu.debug.exits import ExitBreak, reason_name
from emu.vmx.bitmaps import MSR_HIGH_BASE, MSR_HIGH_END, MSR_LOW_END, set_io_bitmap, set_msr_bitmap
from emu.vmx.controls import PinControls, PrimaryControls, VmcsControls
from emu.vmx.reasons import ExitReason as R

ALWAYS = frozenset({R.CPUID, R.VMCALL, R.TRIPLE_FAULT})
"""Exits that happen whatever the controls say (SDM §26.1.2; a triple fault always exits, §27.2)."""

PRIMARY: dict[R, PrimaryControls] = {
    R.HLT: PrimaryControls.HLT, R.RDTSC: PrimaryControls.RDTSC, R.INVLPG: PrimaryControls.INVLPG,
    R.INTERRUPT_WINDOW: PrimaryControls.INTERRUPT_WINDOW, R.MONITOR_TRAP_FLAG: PrimaryControls.MONITOR_TRAP_FLAG,
    R.CR_ACCESS: PrimaryControls.CR3_LOAD | PrimaryControls.CR3_STORE}
"""Exits switched on by a primary processor-based control (SDM Table 25-6). CR_ACCESS: CR3 loads and stores;
CR0/CR4 exits depend on the guest/host masks a VMM sets (§26.1.3), which the debugger leaves alone."""

PIN: dict[R, PinControls] = {R.EXTERNAL_INTERRUPT: PinControls.EXTERNAL_INTERRUPT_EXITING}
"""Exits switched on by a pin-based control (SDM Table 25-5)."""

PRODUCED = frozenset({*ALWAYS, *PRIMARY, *PIN, R.IO_INSTRUCTION, R.RDMSR, R.WRMSR, R.EXCEPTION_NMI})
"""Every exit reason the machine reports (``emu.machine``); a break on any other reason could never fire."""

Key = Hashable
Undo = Callable[[], None]


class BreakRefused(ValueError):
    """A ``break-exit`` that could never fire (one line: why)."""


def check(b: ExitBreak) -> None:
    """Refuse, with one line, a break whose reason emu never produces or whose filter does not fit the reason."""
    try:
        reason = R(b.reason)
    except ValueError:
        raise BreakRefused(f"exit reason {b.reason} is not an SDM basic exit reason") from None
    if reason not in PRODUCED:
        made = ", ".join(r.name for r in sorted(PRODUCED))
        raise BreakRefused(f"emu never produces {reason.name} exits (it produces {made})")
    if b.port is not None:
        if reason is not R.IO_INSTRUCTION:
            raise BreakRefused(f"port= only applies to IO_INSTRUCTION exits, not {reason.name}")
        if not 0 <= b.port <= 0xFFFF:
            raise BreakRefused(f"port {b.port:#x} is outside the I/O space 0..0xffff")
    if b.msr is not None:
        if reason not in (R.RDMSR, R.WRMSR):
            raise BreakRefused(f"msr= only applies to RDMSR and WRMSR exits, not {reason.name}")
        if not 0 <= b.msr <= 0xFFFFFFFF:
            raise BreakRefused(f"msr {b.msr:#x} is not a 32-bit ECX value")
    if b.vector is not None:
        if reason is R.EXCEPTION_NMI:
            if not 0 <= b.vector <= 31:
                raise BreakRefused(f"vector {b.vector:#x}: EXCEPTION_NMI exits are exceptions 0..31 "
                                   "(INT n and external interrupts never use the exception bitmap, SDM §26.2)")
        elif reason is R.EXTERNAL_INTERRUPT:
            if not 0 <= b.vector <= 0xFF:
                raise BreakRefused(f"vector {b.vector:#x} is outside 0..0xff")
        else:
            raise BreakRefused(f"vector= only applies to EXCEPTION_NMI and EXTERNAL_INTERRUPT exits, "
                               f"not {reason.name}")


def _msr_in_bitmap(msr: int) -> bool:
    return 0 <= msr < MSR_LOW_END or MSR_HIGH_BASE <= msr < MSR_HIGH_END


def needs(c: VmcsControls, b: ExitBreak) -> list[Key]:
    """The control changes that make exits of ``b`` happen under controls ``c`` (keys for ``apply``)."""
    reason = R(b.reason)
    if reason in PRIMARY:
        return [("primary", PRIMARY[reason])]
    if reason in PIN:
        return [("pin", PIN[reason])]
    if reason is R.EXCEPTION_NMI:
        return [("exception", v) for v in ([b.vector] if b.vector is not None else range(32))]
    if reason is R.IO_INSTRUCTION:
        if c.primary & PrimaryControls.USE_IO_BITMAPS:     # the bitmaps decide, unconditional exiting is ignored
            return [("io", b.port)]
        return [("primary", PrimaryControls.UNCONDITIONAL_IO)]
    if reason in (R.RDMSR, R.WRMSR) and c.primary & PrimaryControls.USE_MSR_BITMAPS:
        if b.msr is not None and not _msr_in_bitmap(b.msr):
            return []                                      # MSRs without a bitmap bit always exit
        return [("msr", b.msr, reason is R.WRMSR)]
    return []                                              # always exits (CPUID, VMCALL, RDMSR/WRMSR, ...)


def apply(c: VmcsControls, key: Key) -> Optional[Undo]:
    """Make the change ``key`` in ``c``; returns how to undo it, or None when it was already so."""
    kind = key[0]
    if kind == "primary":
        bit = key[1]
        if c.primary & bit == bit:
            return None
        added = bit & ~c.primary
        c.primary |= added

        def undo() -> None:
            c.primary &= ~added
        return undo
    if kind == "pin":
        bit = key[1]
        if c.pin & bit:
            return None
        c.pin |= bit

        def undo() -> None:
            c.pin &= ~bit
        return undo
    if kind == "exception":
        mask = 1 << key[1]
        if c.exception_bitmap & mask:
            return None
        c.exception_bitmap |= mask

        def undo() -> None:
            c.exception_bitmap &= ~mask & 0xFFFFFFFF
        return undo
    if kind == "io":
        saved = bytes(c.io_bitmap_a), bytes(c.io_bitmap_b)
        if key[1] is None:
            set_io_bitmap(c, 0, 0x10000)
        else:
            set_io_bitmap(c, key[1])

        def undo() -> None:
            c.io_bitmap_a[:], c.io_bitmap_b[:] = saved
        return undo
    if kind == "msr":
        _, msr, write = key
        saved = bytes(c.msr_bitmap)
        ranges = [(msr, 1)] if msr is not None else [(0, MSR_LOW_END), (MSR_HIGH_BASE, MSR_HIGH_END - MSR_HIGH_BASE)]
        for first, count in ranges:
            set_msr_bitmap(c, first, count, read=not write, write=write)

        def undo() -> None:
            c.msr_bitmap[:] = saved
        return undo
    raise ValueError(f"unknown control change {key!r}")


@dataclass
class Armed:
    """The control changes one guest holds for the exit breaks set on it, counted (several breaks may need one)."""

    controls: VmcsControls
    held: dict = None  # key -> [count, undo]

    def __post_init__(self) -> None:
        self.held = {}

    def take(self, keys: list[Key]) -> None:
        """Hold ``keys`` (turn on what is not on yet)."""
        for key in keys:
            if key in self.held:
                self.held[key][0] += 1
            else:
                self.held[key] = [1, apply(self.controls, key)]

    def release(self, keys: list[Key]) -> None:
        """Drop ``keys``; what nobody holds any more is restored (only what the debugger itself turned on)."""
        for key in keys:
            entry = self.held.get(key)
            if entry is None:
                continue
            entry[0] -= 1
            if entry[0] == 0:
                del self.held[key]
                if entry[1] is not None:
                    entry[1]()


def describe_needs(keys: list[Key]) -> str:
    """``HLT exiting``, ``I/O bitmap bit of port 0x1f7`` ... for the monitor's reply."""
    out = []
    vectors = [key[1] for key in keys if key[0] == "exception"]
    if len(vectors) > 1:
        out.append(f"exception-bitmap bits {min(vectors)}-{max(vectors)}")
        keys = [key for key in keys if key[0] != "exception"]
    for key in keys:
        kind = key[0]
        if kind in ("primary", "pin"):
            out.append(" + ".join(f.name.lower().replace("_", "-") for f in type(key[1]) if f & key[1]) + " exiting")
        elif kind == "exception":
            out.append(f"exception-bitmap bit {key[1]}")
        elif kind == "io":
            out.append("every I/O-bitmap bit" if key[1] is None else f"the I/O-bitmap bit of port {key[1]:#x}")
        elif kind == "msr":
            what = "write" if key[2] else "read"
            out.append(f"every MSR-bitmap {what} bit" if key[1] is None else f"the MSR-bitmap {what} bit of {key[1]:#x}")
    return ", ".join(dict.fromkeys(out))


__all__ = ["ALWAYS", "PRIMARY", "PIN", "PRODUCED", "BreakRefused", "check", "needs", "apply", "Armed",
           "describe_needs", "reason_name"]
