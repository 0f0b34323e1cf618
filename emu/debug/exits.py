"""VM-exit records as the debugger shows them: basic exit reasons by name or number (Intel SDM Vol. 3D App. C).

Reason numbers and names: ``emu.vmx.reasons.ExitReason``. The VMX layer (``emu.vmx``) produces ``VmExit``
records; ``ExitRecord.from_vmexit`` turns one into the debugger's record (guest number, decoded port / msr / vector).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from emu.vmx.qualification import IO_DIRECTION_IN, IO_PORT_SHIFT, IO_REP, IO_SIZE_MASK, IO_STRING
from emu.vmx.reasons import ExitReason

EXIT_REASONS: dict[str, int] = {r.name: int(r) for r in ExitReason}
"""Basic exit reason numbers by SDM name (``emu.vmx.reasons.ExitReason``, SDM Vol. 3D Appendix C)."""

ALIASES: dict[str, str] = {"EXCEPTION_OR_NMI": "EXCEPTION_NMI", "EXCEPTION": "EXCEPTION_NMI", "IO": "IO_INSTRUCTION",
                           "INTERRUPT": "EXTERNAL_INTERRUPT", "CR": "CR_ACCESS", "MSR_READ": "RDMSR",
                           "MSR_WRITE": "WRMSR"}
"""Other spellings ``break-exit`` accepts."""

REASON_NAMES: dict[int, str] = {v: k for k, v in EXIT_REASONS.items()}


def reason_number(name_or_number: str) -> int:
    """An exit reason given as SDM name (case-insensitive, e.g. ``io_instruction``) or number; ValueError if unknown."""
    text = name_or_number.strip()
    try:
        return int(text, 0)
    except ValueError:
        pass
    key = text.upper().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in EXIT_REASONS:
        raise ValueError(f"unknown exit reason {name_or_number!r} (e.g. IO_INSTRUCTION, HLT, EXCEPTION_NMI)")
    return EXIT_REASONS[key]


def reason_name(number: int) -> str:
    """SDM name of a basic exit reason (``REASON_<n>`` when not in the table)."""
    return REASON_NAMES.get(number, f"REASON_{number}")


@dataclass(frozen=True)
class ExitRecord:
    """One VM exit as the debugger lists it (DESIGN.md exit-log fields plus decoded details)."""

    guest: int
    icount: int
    reason: int
    qualification: int = 0
    rip: int = 0
    insn_len: int = 0
    port: Optional[int] = None
    msr: Optional[int] = None
    vector: Optional[int] = None
    value: Optional[int] = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def reason_name(self) -> str:
        """SDM name of ``reason``."""
        return reason_name(self.reason)

    def describe(self) -> str:
        """One line: ``icount=… guest=… IO_INSTRUCTION out port=0x1f7 size=1 value=0x30 rip=… len=…``."""
        parts = [f"icount={self.icount}", f"guest={self.guest}", self.reason_name]
        if self.reason == EXIT_REASONS["IO_INSTRUCTION"]:
            q = self.qualification
            kind = ("rep " if q & IO_REP else "") + ("ins" if q & IO_DIRECTION_IN else "outs") \
                if q & IO_STRING else ("in" if q & IO_DIRECTION_IN else "out")
            parts += [kind, f"port={self.port:#x}", f"size={(q & IO_SIZE_MASK) + 1}"]
            if self.value is not None:
                parts.append(f"value={self.value:#x}")
        if self.msr is not None:
            parts.append(f"msr={self.msr:#x}")
        if self.vector is not None:
            parts.append(f"vector={self.vector:#x}")
        parts += [f"qual={self.qualification:#x}", f"rip={self.rip:#010x}", f"len={self.insn_len}"]
        parts += [f"{k}={v}" for k, v in self.extra.items()]
        return " ".join(parts)

    @staticmethod
    def from_vmexit(guest: int, vmexit: Any, cpu: Any = None) -> "ExitRecord":
        """Convert the VMX layer's ``VmExit`` (read by attribute: reason, qualification, rip, insn_len, icount...)."""
        reason = int(getattr(vmexit, "reason", 0))
        qual = int(getattr(vmexit, "qualification", 0) or 0)
        port = getattr(vmexit, "port", None)
        if port is None and reason == EXIT_REASONS["IO_INSTRUCTION"]:
            port = qual >> IO_PORT_SHIFT & 0xFFFF
        msr = getattr(vmexit, "msr", None)
        if msr is None and reason in (EXIT_REASONS["RDMSR"], EXIT_REASONS["WRMSR"]) and cpu is not None:
            msr = cpu.reg("ecx")
        vector = getattr(vmexit, "vector", None)
        if vector is None:
            info = getattr(vmexit, "interruption", None)
            if info is not None and getattr(info, "valid", True):
                vector = int(getattr(info, "vector"))
        icount = getattr(vmexit, "icount", None)
        if icount is None and cpu is not None:
            icount = cpu.icount
        return ExitRecord(guest, int(icount or 0), reason, qual, int(getattr(vmexit, "rip", 0) or 0),
                          int(getattr(vmexit, "insn_len", 0) or 0), port, msr, vector,
                          getattr(vmexit, "value", None))


@dataclass(frozen=True)
class ExitBreak:
    """A ``break-exit`` condition: a reason and optional port / msr / vector filters."""

    reason: int
    port: Optional[int] = None
    msr: Optional[int] = None
    vector: Optional[int] = None

    def matches(self, rec: ExitRecord) -> bool:
        """True when ``rec`` is an exit of this reason and every given filter equals the exit's value."""
        return rec.reason == self.reason and all(
            want is None or want == got for want, got in
            ((self.port, rec.port), (self.msr, rec.msr), (self.vector, rec.vector)))

    def describe(self) -> str:
        """``IO_INSTRUCTION port=0x1f7``."""
        out = [reason_name(self.reason)]
        out += [f"{k}={v:#x}" for k, v in (("port", self.port), ("msr", self.msr), ("vector", self.vector))
                if v is not None]
        return " ".join(out)
