"""The monitor: VM exits of one guest dispatched to handlers, with VT-x-style execution controls.

The machine reports every sensitive event here (I/O, CPUID, HLT, RDTSC, RDMSR/WRMSR, MOV CR, INVLPG,
VMCALL, exceptions, external interrupts, the interrupt window, triple faults, monitor-trap-flag steps);
the controls (``emu.vmx.controls.VmcsControls``) decide which ones are exits, exactly as VT-x would.
An exit becomes a :class:`~emu.vmx.record.VmExit`, goes to the observers (the ``--exits`` log, the
debugger, traces, the trap handler) and then to the handler registered for its reason, whose
:class:`Decision` is applied: emulate the instruction faithfully (the default), skip it, inject an event
instead, or stop the run after it.  CPUID always exits on VT-x; here it is answered from the documented
model in :mod:`emu.vmx.cpuid`; RDMSR/WRMSR use the :class:`~emu.vmx.msr.MsrFile`.
"""
from __future__ import annotations

import collections
import enum
from dataclasses import dataclass
from typing import Callable, Optional, Union

from emu.cpu.internals import HF_INHIBIT_IRQ, OFFSETS
from emu.cpu.vcpu import HF_CS32, Shadow
from emu.vmx import build
from emu.vmx.bitmaps import exception_exits, io_exits, msr_exits
from emu.vmx.controls import PinControls, PrimaryControls, VmcsControls
from emu.vmx.msr import MsrFile
from emu.vmx.qualification import ActivityState, Interruptibility, InterruptionType
from emu.vmx.reasons import ExitReason
from emu.vmx.record import VmExit


class Decision(enum.Enum):
    """What a handler wants done with the exiting instruction or event."""

    EMULATE = "emulate"   # do what the hardware would (device access, CPUID model, deliver the event, ...)
    SKIP = "skip"         # resume after the instruction without its effect
    STOP = "stop"         # emulate, then end the run (Machine.run returns EndReason.STOPPED; resumable)


@dataclass(frozen=True)
class Inject:
    """Handler decision: deliver this event instead of executing the instruction (VM-entry injection)."""

    vector: int
    kind: InterruptionType = InterruptionType.HARDWARE_EXCEPTION
    error_code: Optional[int] = None


Outcome = Union[Decision, Inject, None]
_HFLAGS_WORD = OFFSETS.hflags // 4
_CS_BASE_WORD = OFFSETS.cs_base // 4
_SEGS_WORD = OFFSETS.segs // 4
_SEGMENT_INDEX = {"es": 0, "cs": 1, "ss": 2, "ds": 3, "fs": 4, "gs": 5}   # QEMU's segs[] order


def _shadow(cpu, hflags: int) -> Interruptibility:
    """Blocking by STI / MOV SS from QEMU's inhibit flag and what set it (Vcpu.shadow_source)."""
    return _SHADOWS[cpu.shadow_source] if hflags & HF_INHIBIT_IRQ else _NO_SHADOW


class _SegmentBases:
    """Segment bases read on demand from the context buffer the exit just saved (24-byte entries, base at +8)."""

    __slots__ = ("_words",)

    def __init__(self, cpu):
        self._words = cpu.raw.u32s

    def get(self, name: str, default: int = 0) -> int:
        index = _SEGMENT_INDEX.get(name)
        if index is None:
            return default
        word = _SEGS_WORD + 6 * index + 2
        return self._words[word] | self._words[word + 1] << 32


_NO_SHADOW = Interruptibility()
_SHADOWS = {Shadow.NONE: _NO_SHADOW, Shadow.STI: Interruptibility(sti=True),
            Shadow.MOV_SS: Interruptibility(mov_ss=True)}
_IO_CONTROLS = int(PrimaryControls.UNCONDITIONAL_IO | PrimaryControls.USE_IO_BITMAPS)
Handler = Callable[[VmExit, "Monitor"], Outcome]
Observer = Callable[[VmExit], None]


class Monitor:
    """VT-x-like controls, exit handlers and observers for one :class:`emu.machine.Machine`."""

    def __init__(self, machine, controls: Optional[VmcsControls] = None, history: int = 256):
        self.machine = machine
        self.controls = controls or VmcsControls()
        self.handlers: dict[ExitReason, Handler] = {}
        self.observers: list[Observer] = []
        self.history: collections.deque[VmExit] = collections.deque(maxlen=history)
        self._bases = _SegmentBases(machine.cpu)   # the context buffer of one vCPU never moves
        self.counts: collections.Counter[str] = collections.Counter()
        self.msrs = MsrFile(machine.clock.tsc)

    # --- what exits -----------------------------------------------------------
    @property
    def primary(self) -> PrimaryControls:
        return self.controls.primary

    def io_exits(self, port: int, size: int) -> bool:
        """Does this I/O element exit (unconditional I/O exiting or the I/O bitmaps)?"""
        if not self.controls.primary._value_ & _IO_CONTROLS:   # hot path: plain int test, no IntFlag ops
            return False
        return io_exits(self.controls, port, size)

    def msr_exits(self, msr: int, write: bool) -> bool:
        return msr_exits(self.controls, msr, write)

    def exception_exits(self, vector: int, error_code: Optional[int], kind: InterruptionType) -> bool:
        return bool(self.controls.exception_bitmap) and exception_exits(self.controls, vector, error_code, kind)

    @property
    def hlt_exits(self) -> bool:
        return bool(self.controls.primary & PrimaryControls.HLT)

    @property
    def rdtsc_exits(self) -> bool:
        return bool(self.controls.primary & PrimaryControls.RDTSC)

    @property
    def invlpg_exits(self) -> bool:
        return bool(self.controls.primary & PrimaryControls.INVLPG)

    @property
    def interrupt_window_exits(self) -> bool:
        return bool(self.controls.primary & PrimaryControls.INTERRUPT_WINDOW)

    @property
    def external_interrupt_exits(self) -> bool:
        return bool(self.controls.pin & PinControls.EXTERNAL_INTERRUPT_EXITING)

    @property
    def monitor_trap_flag(self) -> bool:
        return bool(self.controls.primary & PrimaryControls.MONITOR_TRAP_FLAG)

    @property
    def listening(self) -> bool:
        """True when somebody wants exits that need no handler (observers) — cheap check for hot paths."""
        return bool(self.observers)

    # --- records ------------------------------------------------------------------
    def _state(self, refresh: bool = True) -> tuple[dict[str, int], Interruptibility, int, int]:
        """Registers, interruptibility, CS base and code width from ONE saved context (hot path of every exit).

        ``refresh=False``: the context buffer was saved earlier in the same hook (the I/O privilege check)."""
        cpu = self.machine.cpu
        regs = cpu.regs(refresh)
        words = cpu.raw.u32s
        hflags = words[_HFLAGS_WORD]
        cs_base = words[_CS_BASE_WORD] | words[_CS_BASE_WORD + 1] << 32
        return regs, _shadow(cpu, hflags), cs_base, 32 if hflags & HF_CS32 else 16

    def interruptibility(self) -> Interruptibility:
        """The interruptibility state now (STI / MOV-SS blocking, SDM Table 25-3)."""
        cpu = self.machine.cpu
        return _shadow(cpu, cpu.raw.refresh().u32s[_HFLAGS_WORD])

    def instruction_exit(self, linear_pc: int, icount: int, reason: Optional[ExitReason] = None,
                         edx: Optional[int] = None, code: bytes = b"", saved_context: bool = False,
                         shadow: Optional[Interruptibility] = None) -> VmExit:
        """The exit record for the instruction at ``linear_pc`` (not yet executed); ``code`` = its bytes if known;
        ``saved_context``: the hook already saved the CPU context (nothing ran since)."""
        cpu = self.machine.cpu
        if not code:
            try:
                code = cpu.read_virt(linear_pc, 15)
            except Exception:
                code = cpu.read_virt(linear_pc, 1)
        regs, interruptibility, cs_base, bits = self._state(not saved_context)
        if edx is not None:
            regs["edx"] = edx
        regs["eip"] = (linear_pc - cs_base) & 0xFFFFFFFF   # Unicorn does not sync EIP before its I/O hooks
        return build.instruction_exit(code, bits, regs, rip=regs["eip"],
                                      linear_rip=linear_pc, icount=icount, guest=self.machine.name,
                                      interruptibility=interruptibility if shadow is None else shadow,
                                      reason=reason, segment_bases=self._bases,
                                      read_linear=cpu.read_virt)

    def plain_exit(self, reason: ExitReason, icount: int, insn_len: int = 0, qualification: int = 0) -> VmExit:
        """An exit that carries no decoded qualification (HLT, CPUID, RDTSC, VMCALL, windows, MTF, ...)."""
        regs, interruptibility, cs_base, _bits = self._state()
        eip = regs["eip"]
        return VmExit(reason, qualification, insn_len, eip, (cs_base + eip) & 0xFFFFFFFF, icount, self.machine.name,
                      interruptibility=interruptibility, regs=regs)

    def event_exit(self, vector: int, kind: InterruptionType, error_code: Optional[int], icount: int,
                   rip: int, insn_len: int = 0, qualification: int = 0,
                   activity: ActivityState = ActivityState.ACTIVE) -> VmExit:
        """Reason 0 (exception) or 1 (external interrupt) with its interruption information.

        The snapshot's EIP is the guest-RIP field (Unicorn has already moved past INT3/INTO/INT n)."""
        regs, interruptibility, cs_base, _bits = self._state()
        regs["eip"] = rip
        if kind is InterruptionType.EXTERNAL_INTERRUPT:
            return build.external_interrupt_exit(vector, rip=rip, linear_rip=(cs_base + rip) & 0xFFFFFFFF,
                                                 icount=icount, guest=self.machine.name,
                                                 interruptibility=interruptibility, activity=activity, regs=regs)
        return build.exception_exit(vector, kind, rip=rip, error_code=error_code, insn_len=insn_len,
                                    qualification=qualification, linear_rip=(cs_base + rip) & 0xFFFFFFFF,
                                    icount=icount, guest=self.machine.name, interruptibility=interruptibility,
                                    regs=regs)

    # --- dispatch -------------------------------------------------------------------
    def exit(self, record: VmExit) -> Outcome:
        """Record an exit, tell the observers, run its handler; returns the handler's decision."""
        self.history.append(record)
        self.counts[record.reason._name_] += 1
        for observer in tuple(self.observers):
            observer(record)
        handler = self.handlers.get(record.reason)
        return handler(record, self) if handler else None

    def on(self, reason: ExitReason, handler: Handler) -> None:
        """Register the handler for ``reason`` (replacing the default emulation's decision)."""
        self.handlers[reason] = handler

    def info(self) -> str:
        """Readable dump of the controls and exit counts (the debugger's ``info vmx``)."""
        c = self.controls
        lines = ["vmx:", f"  pin controls       {int(c.pin):#010x} {c.pin!r}",
                 f"  primary controls   {int(c.primary):#010x} {c.primary!r}",
                 f"  exception bitmap   {c.exception_bitmap:#010x}",
                 "  exits              " + (", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "none")]
        return "\n".join(lines)
