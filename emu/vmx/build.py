"""Builders of complete VmExit records from what the run loop knows: instruction bytes, registers, the event.

Each fills the fields a VT-x processor saves for that exit (SDM Vol. 3C §28.2.1–28.2.5):
the qualification, the instruction length, the guest-linear address where the SDM
defines one (INS/OUTS, LMSW m16), and the interruption information for events.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

from emu import EmuError
from emu.vmx import decode
from emu.vmx.qualification import (ActivityState, CrAccessType, InterruptionInfo, InterruptionType,
                                   Interruptibility, LmswOperandType)
from emu.vmx.reasons import ExitReason, exit_reason
from emu.vmx.record import REGISTER_NAMES, VmExit

SOFTWARE_EVENTS = frozenset({InterruptionType.SOFTWARE_INTERRUPT, InterruptionType.SOFTWARE_EXCEPTION,
                             InterruptionType.PRIVILEGED_SOFTWARE_EXCEPTION})
"""Event types for which the VM-exit instruction-length field is defined (SDM §28.2.5)."""
_ADDRESS_MASK = {16: 0xFFFF, 32: 0xFFFFFFFF, 64: 0xFFFFFFFF_FFFFFFFF}


_REGISTER_SET = frozenset(REGISTER_NAMES)


def _snapshot(regs: Mapping[str, int]) -> dict[str, int]:
    """A copy of the registers a VmExit keeps (``Vcpu.regs()`` already fits; other mappings are filtered)."""
    if _REGISTER_SET.issuperset(regs):
        return dict(regs)
    return {name: value for name, value in regs.items() if name in _REGISTER_SET}


def instruction_exit(code: bytes, bits: int, regs: Mapping[str, int], *, rip: int, linear_rip: Optional[int] = None,
                     icount: int = 0, guest: str = "guest", interruptibility: Interruptibility = Interruptibility(),
                     activity: ActivityState = ActivityState.ACTIVE,
                     segment_bases: Optional[Mapping[str, int]] = None,
                     read_linear: Optional[Callable[[int, int], bytes]] = None,
                     reason: Optional[ExitReason] = None) -> VmExit:
    """The exit for the instruction at the start of ``code`` (RIP = ``rip``, not yet executed).

    ``regs`` holds at least the registers the qualification needs (EDX for I/O by DX,
    the ModRM registers for INVLPG and LMSW, EDI/ESI for INS/OUTS); ``segment_bases``
    maps "es", "ds", … to bases (flat when missing); ``read_linear`` reads LMSW's m16.
    ``reason`` defaults to :func:`emu.vmx.decode.instruction_exit_reason`.
    """
    bases = segment_bases or {}
    if reason is None:
        reason = decode.instruction_exit_reason(code, bits)
        if reason is None:
            raise EmuError(f"instruction {bytes(code[:15]).hex()} does not cause an instruction VM exit")
    elif type(reason) is not ExitReason:
        reason = exit_reason(int(reason))
    qualification, guest_linear = 0, None
    if reason is ExitReason.IO_INSTRUCTION:
        length, qualification, string = decode.io_exit_fields(code, bits, regs.get("edx", 0))
        if string:
            operand = decode.string_io_operand(code, bits)
            offset = decode.register_value(regs, operand.index) & _ADDRESS_MASK[operand.address_size]
            guest_linear = (bases.get(operand.segment, 0) + offset) & _ADDRESS_MASK[32 if bits != 64 else 64]
    else:
        length = decode.instruction_length(code, bits)
        if reason is ExitReason.CR_ACCESS:
            q = decode.cr_access(code, bits, regs=regs, read_linear=read_linear, segment_bases=bases)
            qualification = q.encode()
            if q.access_type is CrAccessType.LMSW and q.lmsw_operand is LmswOperandType.MEMORY:
                guest_linear = decode.memory_operand_linear(code, bits, regs, bases)
        elif reason is ExitReason.DR_ACCESS:
            qualification = decode.dr_access(code, bits).encode()
        elif reason is ExitReason.INVLPG:
            qualification = decode.invlpg_qualification(code, bits, regs, bases)
    if type(activity) is not ActivityState:
        activity = ActivityState.decode(int(activity))
    return VmExit.taken(reason, qualification, length, rip, rip if linear_rip is None else linear_rip,
                        icount, guest, guest_linear, interruptibility, _snapshot(regs), activity)


def exception_exit(vector: int, kind: InterruptionType = InterruptionType.HARDWARE_EXCEPTION, *, rip: int,
                   error_code: Optional[int] = None, insn_len: int = 0, qualification: int = 0,
                   linear_rip: Optional[int] = None, icount: int = 0, guest: str = "guest",
                   interruptibility: Interruptibility = Interruptibility(),
                   activity: ActivityState = ActivityState.ACTIVE,
                   regs: Optional[Mapping[str, int]] = None) -> VmExit:
    """Exit reason 0 for an exception (or NMI) selected by the exception bitmap (SDM §28.2.2).

    ``rip`` is the instruction that raised it (for INT3/INTO too: the exit comes before
    delivery); ``insn_len`` is required for software exceptions and must be 0 otherwise;
    ``qualification`` is the faulting linear address for #PF and the DR6-style bits for #DB.
    """
    kind = InterruptionType(kind)
    if kind in (InterruptionType.EXTERNAL_INTERRUPT, InterruptionType.SOFTWARE_INTERRUPT,
                InterruptionType.OTHER_EVENT):
        raise EmuError(f"{kind.name} does not exit with reason EXCEPTION_NMI")
    if (kind in SOFTWARE_EVENTS) != (insn_len > 0):
        raise EmuError(f"instruction length {insn_len} with a {kind.name}: defined only for software exceptions")
    info = InterruptionInfo(vector, kind, error_code is not None)
    return VmExit(ExitReason.EXCEPTION_NMI, qualification, insn_len, rip, linear_rip, icount, guest,
                  interruptibility=interruptibility, activity=activity, interruption=info, error_code=error_code,
                  regs=_snapshot(regs or {}))


def external_interrupt_exit(vector: Optional[int], *, rip: int, linear_rip: Optional[int] = None, icount: int = 0,
                            guest: str = "guest", interruptibility: Interruptibility = Interruptibility(),
                            activity: ActivityState = ActivityState.ACTIVE,
                            regs: Optional[Mapping[str, int]] = None) -> VmExit:
    """Exit reason 1 (SDM §28.2.2): with ``vector`` the interrupt was acknowledged on exit (info valid, type 0);
    with None it is still pending in the 8259 (info invalid, as without "acknowledge interrupt on exit")."""
    info = None if vector is None else InterruptionInfo(vector, InterruptionType.EXTERNAL_INTERRUPT)
    return VmExit(ExitReason.EXTERNAL_INTERRUPT, 0, 0, rip, linear_rip, icount, guest,
                  interruptibility=interruptibility, activity=activity, interruption=info, regs=_snapshot(regs or {}))
