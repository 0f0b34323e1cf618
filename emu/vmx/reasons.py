"""Basic VM-exit reasons and the exit-reason field (Intel SDM Vol. 3D Appendix C; Vol. 3C §25.9.1).

Numbers checked against Linux ``arch/x86/include/uapi/asm/vmx.h`` and Bochs
``cpu/vmx.h``.  Numbers the SDM leaves unused (35, 38, 42, 71) have no member.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from emu import EmuError


class ExitReason(enum.IntEnum):
    """Basic exit reason, bits 15:0 of the exit-reason field (SDM Vol. 3D Table C-1)."""

    __hash__ = int.__hash__   # the number's hash (Enum hashes the name, in Python): fast dict keys on the exit path

    EXCEPTION_NMI = 0
    EXTERNAL_INTERRUPT = 1
    TRIPLE_FAULT = 2
    INIT_SIGNAL = 3
    SIPI = 4
    IO_SMI = 5
    OTHER_SMI = 6
    INTERRUPT_WINDOW = 7
    NMI_WINDOW = 8
    TASK_SWITCH = 9
    CPUID = 10
    GETSEC = 11
    HLT = 12
    INVD = 13
    INVLPG = 14
    RDPMC = 15
    RDTSC = 16
    RSM = 17
    VMCALL = 18
    VMCLEAR = 19
    VMLAUNCH = 20
    VMPTRLD = 21
    VMPTRST = 22
    VMREAD = 23
    VMRESUME = 24
    VMWRITE = 25
    VMXOFF = 26
    VMXON = 27
    CR_ACCESS = 28
    DR_ACCESS = 29
    IO_INSTRUCTION = 30
    RDMSR = 31
    WRMSR = 32
    INVALID_GUEST_STATE = 33
    MSR_LOADING = 34
    MWAIT = 36
    MONITOR_TRAP_FLAG = 37
    MONITOR = 39
    PAUSE = 40
    MACHINE_CHECK = 41
    TPR_BELOW_THRESHOLD = 43
    APIC_ACCESS = 44
    VIRTUALIZED_EOI = 45
    GDTR_IDTR_ACCESS = 46
    LDTR_TR_ACCESS = 47
    EPT_VIOLATION = 48
    EPT_MISCONFIG = 49
    INVEPT = 50
    RDTSCP = 51
    PREEMPTION_TIMER = 52
    INVVPID = 53
    WBINVD = 54
    XSETBV = 55
    APIC_WRITE = 56
    RDRAND = 57
    INVPCID = 58
    VMFUNC = 59
    ENCLS = 60
    RDSEED = 61
    PML_FULL = 62
    XSAVES = 63
    XRSTORS = 64
    PCONFIG = 65
    SPP_EVENT = 66
    UMWAIT = 67
    TPAUSE = 68
    LOADIWKEY = 69
    ENCLV = 70
    ENQCMD_PASID_FAILURE = 72
    ENQCMDS_PASID_FAILURE = 73
    BUS_LOCK = 74
    INSTRUCTION_TIMEOUT = 75
    SEAMCALL = 76
    TDCALL = 77


EXIT_REASON_FAILED_VMENTRY = 1 << 31
"""Bit 31 of the exit-reason field: VM-entry failure (SDM Vol. 3C §25.9.1)."""
EXIT_REASON_PENDING_MTF = 1 << 28
"""Bit 28: a pending MTF VM exit (SMM transfer monitor only)."""
EXIT_REASON_FROM_VMX_ROOT = 1 << 29
"""Bit 29: VM exit from VMX root operation (SMM transfer monitor only)."""
EXIT_REASON_ENCLAVE_MODE = 1 << 27
"""Bit 27: the exit was incident to enclave mode."""
_DEFINED = 0xFFFF | EXIT_REASON_ENCLAVE_MODE | EXIT_REASON_PENDING_MTF | EXIT_REASON_FROM_VMX_ROOT | \
    EXIT_REASON_FAILED_VMENTRY


@dataclass(frozen=True)
class ExitReasonField:
    """The 32-bit exit-reason field: basic reason (15:0), enclave (27), pending MTF (28), root (29), failed entry (31)."""

    basic: ExitReason
    failed_vmentry: bool = False
    enclave_mode: bool = False
    pending_mtf: bool = False
    from_vmx_root: bool = False

    def encode(self) -> int:
        """The field's 32-bit value."""
        return (int(self.basic) | (EXIT_REASON_FAILED_VMENTRY if self.failed_vmentry else 0)
                | (EXIT_REASON_ENCLAVE_MODE if self.enclave_mode else 0)
                | (EXIT_REASON_PENDING_MTF if self.pending_mtf else 0)
                | (EXIT_REASON_FROM_VMX_ROOT if self.from_vmx_root else 0))

    @classmethod
    def decode(cls, value: int) -> "ExitReasonField":
        """Parse a 32-bit exit-reason field; unknown basic reasons and reserved bits are errors."""
        if not 0 <= value <= 0xFFFFFFFF or value & ~_DEFINED:
            raise EmuError(f"exit-reason field {value:#x} has reserved bits set")
        return cls(exit_reason(value & 0xFFFF), bool(value & EXIT_REASON_FAILED_VMENTRY),
                   bool(value & EXIT_REASON_ENCLAVE_MODE), bool(value & EXIT_REASON_PENDING_MTF),
                   bool(value & EXIT_REASON_FROM_VMX_ROOT))


def failed_vmentry(reason: ExitReason) -> int:
    """Exit-reason field value for a failed VM entry with this basic reason (bit 31 set; SDM §27.8)."""
    return int(reason) | EXIT_REASON_FAILED_VMENTRY


def exit_reason(number: int) -> ExitReason:
    """The ExitReason for a basic reason number; an undefined number is one clear error."""
    try:
        return ExitReason(number)
    except ValueError:
        raise EmuError(f"{number} is not a basic VM-exit reason (SDM Vol. 3D Appendix C)") from None
