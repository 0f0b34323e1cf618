"""Interrupt and exception delivery, which Unicorn leaves to the embedder.

Real mode: through the IVT (push FLAGS, CS, IP; clear IF, TF, AC).
Protected mode (Intel SDM Vol. 3A §6.12): through a 32- or 16-bit interrupt
or trap gate of the IDT; an error code is pushed for vectors 8, 10–14 and 17;
a gate to a more privileged code segment switches to the stack named by the
TSS (pushing SS:ESP); interrupt gates clear IF.  A fault while delivering is
combined per SDM Table 6-5 (contributory + contributory or page fault → #DF);
a fault while delivering #DF is a triple fault (shutdown).
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Callable, Optional

from emu.cpu.vcpu import CR0_PE, GuestMemoryError, Vcpu

# Vectors (SDM Vol. 3A Table 6-1)
DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC = 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17
HAS_ERROR_CODE = frozenset({DF, TS, NP, SS, GP, PF, AC})
CONTRIBUTORY = frozenset({DE, TS, NP, SS, GP})
VECTOR_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
                10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM"}

EFLAGS_TF, EFLAGS_IF, EFLAGS_NT, EFLAGS_RF, EFLAGS_VM, EFLAGS_AC = 1 << 8, 1 << 9, 1 << 14, 1 << 16, 1 << 17, 1 << 18
GATE_TASK, GATE_INT16, GATE_TRAP16, GATE_INT32, GATE_TRAP32 = 0x5, 0x6, 0x7, 0xE, 0xF


class EventKind(enum.IntEnum):
    """Interruption types as in the VMX interruption-information field (SDM Vol. 3C §24.8.3)."""

    EXTERNAL = 0
    NMI = 2
    HARDWARE_EXCEPTION = 3
    SOFTWARE_INTERRUPT = 4
    PRIVILEGED_SOFTWARE_EXCEPTION = 5
    SOFTWARE_EXCEPTION = 6


@dataclass(frozen=True)
class Event:
    """One event to deliver: vector, type, error code (or None), and the EIP to return to."""

    vector: int
    kind: EventKind
    error_code: Optional[int] = None
    return_eip: Optional[int] = None
    insn_eip: Optional[int] = None   # start of the instruction (software events): faults in delivery return here
    injected: bool = False           # injected by a VM-exit handler: delivered without another exit (SDM §27.6)


class DeliveryFault(Exception):
    """A fault raised while delivering an event (becomes #DF or is delivered instead)."""

    def __init__(self, vector: int, error_code: Optional[int] = 0):
        super().__init__(vector, error_code)
        self.vector = vector
        self.error_code = error_code


def _ext(event: Event) -> int:
    return 0 if event.kind in (EventKind.SOFTWARE_INTERRUPT, EventKind.SOFTWARE_EXCEPTION) else 1


def _read_descriptor(cpu: Vcpu, selector: int, ext: int) -> tuple[int, int]:
    """The two dwords of the GDT/LDT descriptor for ``selector``."""
    if selector & ~3 == 0:
        raise DeliveryFault(GP, ext)
    if selector & 4:
        raise DeliveryFault(GP, (selector & 0xFFFC) | ext)  # no LDT support in delivery
    base, limit = cpu.descriptor_table("gdtr")
    index = selector & 0xFFF8
    if index + 7 > limit:
        raise DeliveryFault(GP, (selector & 0xFFFC) | ext)
    try:
        lo, hi = struct.unpack("<II", cpu.read_virt(base + index, 8))
    except GuestMemoryError:
        raise DeliveryFault(GP, (selector & 0xFFFC) | ext) from None
    return lo, hi


def _segment_base(lo: int, hi: int) -> int:
    return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)


def _push32(cpu: Vcpu, ss_base: int, esp: int, values: list[int], width: int, stack_fault: int) -> int:
    blob = b"".join(v.to_bytes(width, "little") for v in reversed(values))  # last pushed is lowest
    esp = (esp - len(blob)) & 0xFFFFFFFF
    try:
        cpu.write_virt(ss_base + esp, blob)
    except GuestMemoryError:
        raise DeliveryFault(SS if stack_fault else PF, 0) from None
    return esp


def deliver_real_mode(cpu: Vcpu, event: Event) -> None:
    """Vector through the real-mode IVT at linear 0."""
    ivt = struct.unpack("<HH", cpu.read_virt(event.vector * 4, 4))
    flags = cpu.reg("eflags")
    cs = cpu.reg("cs")
    ip = cpu.reg("eip") if event.return_eip is None else event.return_eip
    ss = cpu.reg("ss")
    sp = cpu.reg("esp") & 0xFFFF
    frame = struct.pack("<HHH", ip & 0xFFFF, cs, flags & 0xFFFF)
    sp = (sp - 6) & 0xFFFF
    cpu.write_virt(ss * 16 + sp, frame)
    cpu.set_reg("esp", (cpu.reg("esp") & 0xFFFF0000) | sp)
    cpu.set_reg("eflags", flags & ~(EFLAGS_IF | EFLAGS_TF | EFLAGS_AC))
    cpu.set_reg("cs", ivt[1])
    cpu.set_reg("eip", ivt[0])


def deliver_protected(cpu: Vcpu, event: Event) -> None:
    """Vector through an IDT gate (SDM Vol. 3A §6.12.1)."""
    ext = _ext(event)
    vector = event.vector
    idt_base, idt_limit = cpu.descriptor_table("idtr")
    if vector * 8 + 7 > idt_limit:
        raise DeliveryFault(GP, vector * 8 + 2 + ext)
    try:
        lo, hi = struct.unpack("<II", cpu.read_virt(idt_base + vector * 8, 8))
    except GuestMemoryError:
        raise DeliveryFault(GP, vector * 8 + 2 + ext) from None
    gate_type = (hi >> 8) & 0x1F
    gate_dpl = (hi >> 13) & 3
    cpl = cpu.cpl
    if gate_type not in (GATE_INT16, GATE_TRAP16, GATE_INT32, GATE_TRAP32):
        raise DeliveryFault(GP, vector * 8 + 2 + ext)  # task gates are not modelled
    if event.kind in (EventKind.SOFTWARE_INTERRUPT, EventKind.SOFTWARE_EXCEPTION) and gate_dpl < cpl:
        raise DeliveryFault(GP, vector * 8 + 2)
    if not hi & 0x8000:
        raise DeliveryFault(NP, vector * 8 + 2 + ext)
    selector = lo >> 16
    offset = (hi & 0xFFFF0000) | (lo & 0xFFFF)
    if gate_type in (GATE_INT16, GATE_TRAP16):
        offset &= 0xFFFF
    cs_lo, cs_hi = _read_descriptor(cpu, selector, ext)
    if not (cs_hi >> 11) & 1 or not (cs_hi >> 12) & 1:  # must be a code segment
        raise DeliveryFault(GP, (selector & 0xFFFC) | ext)
    if not cs_hi & 0x8000:
        raise DeliveryFault(NP, (selector & 0xFFFC) | ext)
    cs_dpl = (cs_hi >> 13) & 3
    conforming = (cs_hi >> 10) & 1
    new_cpl = cpl if conforming else cs_dpl
    if new_cpl > cpl:
        raise DeliveryFault(GP, (selector & 0xFFFC) | ext)
    width = 4 if gate_type in (GATE_INT32, GATE_TRAP32) else 2
    eflags = cpu.reg("eflags")
    eip = cpu.reg("eip") if event.return_eip is None else event.return_eip
    old_cs = cpu.reg("cs")
    old_ss = cpu.reg("ss")
    old_esp = cpu.reg("esp")
    frame = [eflags, old_cs, eip]
    if vector in HAS_ERROR_CODE and event.kind == EventKind.HARDWARE_EXCEPTION and event.error_code is not None:
        frame.append(event.error_code)
    if new_cpl < cpl:
        _tr_sel, tr_base, tr_limit = cpu.task_register()
        if tr_limit < 8 * new_cpl + 11:
            raise DeliveryFault(TS, _tr_sel & 0xFFFC)
        try:
            esp0, ss0 = struct.unpack("<II", cpu.read_virt(tr_base + 4 + 8 * new_cpl, 8))
        except GuestMemoryError:
            raise DeliveryFault(TS, _tr_sel & 0xFFFC) from None
        ss0 &= 0xFFFF
        ss_lo, ss_hi = _read_descriptor(cpu, ss0, ext)
        if (ss0 & 3) != new_cpl or not ss_hi & 0x8000:
            raise DeliveryFault(TS, ss0 & 0xFFFC)
        esp = _push32(cpu, _segment_base(ss_lo, ss_hi), esp0, [old_ss, old_esp] + frame, width, True)
        # Unicorn refuses a ring-0 SS/CS while CPL=3: drop to real mode to make CPL 0, then load them.
        cr0 = cpu.reg("cr0")
        cpu.set_reg("cr0", cr0 & ~CR0_PE)
        cpu.set_reg("ss", 0)
        cpu.set_reg("cr0", cr0)
        cpu.set_reg("ss", ss0)
        cpu.set_reg("esp", esp)
    else:
        ss_base = cpu.context().u64(272 + 8)
        esp = _push32(cpu, ss_base, old_esp, frame, width, True)
        cpu.set_reg("esp", esp)
    eflags &= ~(EFLAGS_TF | EFLAGS_NT | EFLAGS_RF | EFLAGS_VM)
    if gate_type in (GATE_INT16, GATE_INT32):
        eflags &= ~EFLAGS_IF
    cpu.set_reg("cs", (selector & 0xFFFC) | new_cpl)
    cpu.set_reg("eflags", eflags)
    cpu.set_reg("eip", offset)


def _deliver_one(cpu: Vcpu, event: Event) -> None:
    if cpu.protected:
        deliver_protected(cpu, event)
    else:
        deliver_real_mode(cpu, event)


def _escalates(first: int, second: int) -> bool:
    """True when ``second`` raised while delivering ``first`` becomes #DF (SDM Vol. 3A Table 6-5)."""
    first_bad = first in CONTRIBUTORY or first == PF
    second_bad = second in CONTRIBUTORY or second == PF
    return first_bad and second_bad and not (first in CONTRIBUTORY and second == PF)


def deliver(cpu: Vcpu, event: Event,
            intercept: Optional[Callable[[Event], Optional[Event]]] = None) -> Optional[str]:
    """Deliver ``event``; a fault during delivery is delivered instead, or escalates to #DF and then to a
    triple fault (SDM Vol. 3A Table 6-5).  Returns a shutdown reason or None.

    ``intercept`` sees each fault raised by the delivery before it is delivered (the VMX exception
    bitmap): it returns the event to deliver instead, or None when the delivery ends there."""
    current = event
    for _ in range(5):
        try:
            _deliver_one(cpu, current)
            return None
        except DeliveryFault as fault:
            if current.vector == DF:
                return f"triple fault: {VECTOR_NAMES.get(fault.vector, fault.vector)} while delivering #DF"
            if _escalates(current.vector, fault.vector):
                current = Event(DF, EventKind.HARDWARE_EXCEPTION, 0, event.return_eip)
            else:
                fault_eip = event.insn_eip if event.insn_eip is not None else event.return_eip
                current = Event(fault.vector, EventKind.HARDWARE_EXCEPTION, fault.error_code,
                                cpu.reg("eip") if fault_eip is None else fault_eip)
            if intercept is not None:
                current = intercept(current)
                if current is None:
                    return None
    return "triple fault"
