"""Exit-qualification and event-field codecs, bit-exact to the Intel SDM Vol. 3C.

Each codec is a frozen dataclass with ``encode() -> int`` and ``decode(int)``.
``encode`` rejects out-of-range fields and ``decode`` rejects set reserved bits,
each with one :class:`emu.EmuError` line.

- I/O instructions: SDM Vol. 3C §28.2.1, Table 28-5.
- Control-register accesses: Table 28-3.  MOV DR: Table 28-4.
- VM-exit interruption information: §25.9.2, Table 25-19 (same layout as
  IDT-vectoring information and VM-entry interruption information, §25.8.3).
- Guest interruptibility state: §25.4.2, Table 25-3.  Activity state: §25.4.2.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from emu import EmuError

GPR_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
"""General-register numbering of the qualification fields (0 = EAX … 7 = EDI; 8–15 = R8–R15 in 64-bit mode)."""


def _check(name: str, value: int, limit: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= limit:
        raise EmuError(f"{name} {value!r} out of range 0..{limit:#x}")


def _reserved(kind: str, value: int, defined: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF_FFFFFFFF:
        raise EmuError(f"{kind} {value!r} is not a 64-bit field value")
    if value & ~defined:
        raise EmuError(f"{kind} {value:#x} has reserved bits set ({value & ~defined:#x})")


# --- I/O instructions (Table 28-5) -----------------------------------------------------------

class IoDirection(enum.IntEnum):
    """Bit 3 of the I/O qualification."""

    OUT = 0
    IN = 1


class IoOperand(enum.IntEnum):
    """Bit 6 of the I/O qualification: where the port number came from."""

    DX = 0
    IMMEDIATE = 1


IO_SIZE_MASK = 0x7          # bits 2:0 size of access - 1 (0 = 1 byte, 1 = 2 bytes, 3 = 4 bytes)
IO_DIRECTION_IN = 1 << 3    # bit 3
IO_STRING = 1 << 4          # bit 4 string instruction (INS/OUTS)
IO_REP = 1 << 5             # bit 5 REP prefixed
IO_IMMEDIATE = 1 << 6       # bit 6 operand encoding (1 = immediate)
IO_PORT_SHIFT = 16          # bits 31:16 port number
_IO_DEFINED = IO_SIZE_MASK | IO_DIRECTION_IN | IO_STRING | IO_REP | IO_IMMEDIATE | (0xFFFF << IO_PORT_SHIFT)


@dataclass(frozen=True)
class IoQualification:
    """Exit qualification of an I/O instruction exit (reason 30; SDM Table 28-5)."""

    size: int                     # access size in bytes: 1, 2 or 4
    direction: IoDirection
    string: bool
    rep: bool
    operand: IoOperand
    port: int

    def encode(self) -> int:
        """The 64-bit qualification (bits 63:32 and 15:7 are zero)."""
        if self.size not in (1, 2, 4):
            raise EmuError(f"I/O access size {self.size!r} is not 1, 2 or 4 bytes")
        _check("I/O port", self.port, 0xFFFF)
        if self.operand is IoOperand.IMMEDIATE and (self.string or self.port > 0xFF):
            raise EmuError("an immediate I/O operand is a non-string IN/OUT with a port 0..0xff")
        return ((self.size - 1) | (IO_DIRECTION_IN if self.direction is IoDirection.IN else 0)
                | (IO_STRING if self.string else 0) | (IO_REP if self.rep else 0)
                | (IO_IMMEDIATE if self.operand is IoOperand.IMMEDIATE else 0) | self.port << IO_PORT_SHIFT)

    @classmethod
    def decode(cls, value: int) -> "IoQualification":
        """Parse an I/O exit qualification."""
        _reserved("I/O qualification", value, _IO_DEFINED)
        size_field = value & IO_SIZE_MASK
        if size_field not in (0, 1, 3):
            raise EmuError(f"I/O qualification {value:#x}: size field {size_field} is not used by the SDM")
        q = cls(size_field + 1, IoDirection(value >> 3 & 1), bool(value & IO_STRING), bool(value & IO_REP),
                IoOperand(value >> 6 & 1), value >> IO_PORT_SHIFT & 0xFFFF)
        q.encode()  # immediate operands only for non-string IN/OUT with an 8-bit port
        return q


# --- control-register accesses (Table 28-3) ---------------------------------------------------

class CrAccessType(enum.IntEnum):
    """Bits 5:4 of the CR-access qualification."""

    MOV_TO_CR = 0
    MOV_FROM_CR = 1
    CLTS = 2
    LMSW = 3


class LmswOperandType(enum.IntEnum):
    """Bit 6 of the CR-access qualification (LMSW only; 0 otherwise)."""

    REGISTER = 0
    MEMORY = 1


_CR_DEFINED = 0xF | 0x3 << 4 | 1 << 6 | 0xF << 8 | 0xFFFF << 16


@dataclass(frozen=True)
class CrAccessQualification:
    """Exit qualification of a control-register access (reason 28; SDM Table 28-3).

    ``cr`` is 0 for CLTS and LMSW; ``register`` (0 = EAX … 7 = EDI) only for MOV CR;
    ``lmsw_operand`` and ``lmsw_source`` (the 16-bit source data) only for LMSW.
    """

    cr: int
    access_type: CrAccessType
    register: int = 0
    lmsw_operand: LmswOperandType = LmswOperandType.REGISTER
    lmsw_source: int = 0

    def encode(self) -> int:
        """The 64-bit qualification; fields the SDM clears for this access type must be zero."""
        _check("control register", self.cr, 15)
        _check("general register", self.register, 15)
        _check("LMSW source data", self.lmsw_source, 0xFFFF)
        kind = CrAccessType(self.access_type)
        if kind in (CrAccessType.MOV_TO_CR, CrAccessType.MOV_FROM_CR):
            if self.lmsw_operand or self.lmsw_source:
                raise EmuError("MOV CR qualification with LMSW fields set")
        else:
            if self.cr or self.register:
                raise EmuError(f"{kind.name} qualification must have CR number 0 and register 0")
            if kind is CrAccessType.CLTS and (self.lmsw_operand or self.lmsw_source):
                raise EmuError("CLTS qualification with LMSW fields set")
        return self.cr | kind << 4 | int(self.lmsw_operand) << 6 | self.register << 8 | self.lmsw_source << 16

    @classmethod
    def decode(cls, value: int) -> "CrAccessQualification":
        """Parse a CR-access exit qualification."""
        _reserved("CR-access qualification", value, _CR_DEFINED)
        q = cls(value & 0xF, CrAccessType(value >> 4 & 3), value >> 8 & 0xF,
                LmswOperandType(value >> 6 & 1), value >> 16 & 0xFFFF)
        q.encode()  # fields the SDM clears for this access type must be zero
        return q


# --- MOV DR (Table 28-4) ---------------------------------------------------------------------

class DrDirection(enum.IntEnum):
    """Bit 4 of the MOV-DR qualification."""

    MOV_TO_DR = 0
    MOV_FROM_DR = 1


_DR_DEFINED = 0x7 | 1 << 4 | 0xF << 8


@dataclass(frozen=True)
class DrAccessQualification:
    """Exit qualification of MOV DR (reason 29; SDM Table 28-4): DR number 2:0, direction 4, register 11:8."""

    dr: int
    direction: DrDirection
    register: int

    def encode(self) -> int:
        """The 64-bit qualification."""
        _check("debug register", self.dr, 7)
        _check("general register", self.register, 15)
        return self.dr | int(DrDirection(self.direction)) << 4 | self.register << 8

    @classmethod
    def decode(cls, value: int) -> "DrAccessQualification":
        """Parse a MOV-DR exit qualification."""
        _reserved("MOV-DR qualification", value, _DR_DEFINED)
        return cls(value & 7, DrDirection(value >> 4 & 1), value >> 8 & 0xF)


# --- interruption information (Table 25-19) --------------------------------------------------

class InterruptionType(enum.IntEnum):
    """Bits 10:8 of the interruption-information fields (SDM §25.8.3, §25.9.2).

    OTHER_EVENT (7) is only for VM-entry injection (the pending MTF exit); 1 is reserved.
    """

    EXTERNAL_INTERRUPT = 0
    NMI = 2
    HARDWARE_EXCEPTION = 3
    SOFTWARE_INTERRUPT = 4
    PRIVILEGED_SOFTWARE_EXCEPTION = 5
    SOFTWARE_EXCEPTION = 6
    OTHER_EVENT = 7


INTR_INFO_ERROR_CODE_VALID = 1 << 11
INTR_INFO_NMI_UNBLOCKING = 1 << 12
INTR_INFO_VALID = 1 << 31
_INTR_DEFINED = 0xFF | 0x7 << 8 | INTR_INFO_ERROR_CODE_VALID | INTR_INFO_NMI_UNBLOCKING | INTR_INFO_VALID

EXCEPTIONS_WITH_ERROR_CODE = frozenset({8, 10, 11, 12, 13, 14, 17, 21})
"""Vectors whose hardware exception pushes an error code (SDM Vol. 3A Table 6-1): #DF #TS #NP #SS #GP #PF #AC #CP."""


@dataclass(frozen=True)
class InterruptionInfo:
    """VM-exit interruption information: vector 7:0, type 10:8, error code valid 11, NMI unblocking 12, valid 31."""

    vector: int
    type: InterruptionType
    error_code_valid: bool = False
    nmi_unblocking: bool = False
    valid: bool = True

    def encode(self) -> int:
        """The 32-bit field value."""
        _check("vector", self.vector, 0xFF)
        kind = InterruptionType(self.type)
        if kind is InterruptionType.NMI and self.vector != 2:
            raise EmuError(f"NMI interruption information with vector {self.vector} (must be 2)")
        return (self.vector | kind << 8 | (INTR_INFO_ERROR_CODE_VALID if self.error_code_valid else 0)
                | (INTR_INFO_NMI_UNBLOCKING if self.nmi_unblocking else 0) | (INTR_INFO_VALID if self.valid else 0))

    @classmethod
    def decode(cls, value: int) -> "InterruptionInfo":
        """Parse an interruption-information field (type 1 is reserved)."""
        _reserved("interruption information", value, _INTR_DEFINED)
        kind = value >> 8 & 7
        if kind == 1:
            raise EmuError(f"interruption information {value:#x}: type 1 is reserved")
        info = cls(value & 0xFF, InterruptionType(kind), bool(value & INTR_INFO_ERROR_CODE_VALID),
                   bool(value & INTR_INFO_NMI_UNBLOCKING), bool(value & INTR_INFO_VALID))
        info.encode()  # an NMI has vector 2
        return info

    @classmethod
    def for_exception(cls, vector: int, kind: InterruptionType = InterruptionType.HARDWARE_EXCEPTION) -> "InterruptionInfo":
        """Info for an exception; the error-code bit is set for hardware exceptions that push one (Table 6-1)."""
        has_code = kind is InterruptionType.HARDWARE_EXCEPTION and vector in EXCEPTIONS_WITH_ERROR_CODE
        return cls(vector, kind, has_code)


# --- guest interruptibility state (Table 25-3) ------------------------------------------------

INTERRUPTIBILITY_STI = 1 << 0
INTERRUPTIBILITY_MOV_SS = 1 << 1
INTERRUPTIBILITY_SMI = 1 << 2
INTERRUPTIBILITY_NMI = 1 << 3
INTERRUPTIBILITY_ENCLAVE = 1 << 4
_INTERRUPTIBILITY_DEFINED = 0x1F


@dataclass(frozen=True)
class Interruptibility:
    """Guest interruptibility state: blocking by STI (bit 0), MOV SS (1), SMI (2), NMI (3), enclave interruption (4)."""

    sti: bool = False
    mov_ss: bool = False
    smi: bool = False
    nmi: bool = False
    enclave: bool = False

    def encode(self) -> int:
        """The 32-bit field value."""
        return ((INTERRUPTIBILITY_STI if self.sti else 0) | (INTERRUPTIBILITY_MOV_SS if self.mov_ss else 0)
                | (INTERRUPTIBILITY_SMI if self.smi else 0) | (INTERRUPTIBILITY_NMI if self.nmi else 0)
                | (INTERRUPTIBILITY_ENCLAVE if self.enclave else 0))

    @classmethod
    def decode(cls, value: int) -> "Interruptibility":
        """Parse an interruptibility-state field."""
        _reserved("interruptibility state", value, _INTERRUPTIBILITY_DEFINED)
        return cls(bool(value & 1), bool(value & 2), bool(value & 4), bool(value & 8), bool(value & 16))

    @property
    def blocks_interrupts(self) -> bool:
        """True when an external interrupt cannot be delivered now (STI or MOV-SS shadow; SDM §25.4.2)."""
        return self.sti or self.mov_ss


class ActivityState(enum.IntEnum):
    """Guest activity state (SDM §25.4.2)."""

    ACTIVE = 0
    HLT = 1
    SHUTDOWN = 2
    WAIT_FOR_SIPI = 3

    def encode(self) -> int:
        """The 32-bit field value."""
        return int(self)

    @classmethod
    def decode(cls, value: int) -> "ActivityState":
        """Parse an activity-state field."""
        try:
            return cls(value)
        except ValueError:
            raise EmuError(f"activity state {value!r} is not defined (0..3)") from None
