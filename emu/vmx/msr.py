"""A small model-specific-register file for the guest's RDMSR/WRMSR (Intel SDM Vol. 4, Table 2-2 and 2-3).

Unicorn neither faults nor models most MSRs (reads of unknown MSRs give 0), so the
monitor answers RDMSR/WRMSR exits from this file.  Modelled MSRs:

| MSR | name | read | write |
|---|---|---|---|
| 0x10 | IA32_TIME_STAMP_COUNTER | virtual TSC + offset | sets the offset so the next read gives the value |
| 0x1B | IA32_APIC_BASE | 0xFEE00900 (QEMU's BSP value: base 0xFEE00000, EN bit 11, BSP bit 8) | base and EN stored; reserved bits → #GP |
| 0xFE | IA32_MTRRCAP | 0x508 (8 variable ranges, fixed ranges, WC: QEMU's value for a CPU with MTRR) | #GP (read-only) |
| 0x174–0x176 | IA32_SYSENTER_CS/ESP/EIP | stored value | CS keeps bits 15:0, ESP/EIP bits 31:0 (as qemu-system-i386) |
| 0x1A0 | IA32_MISC_ENABLE | 1 (fast strings, QEMU's default) | stored |
| 0x200–0x20F | IA32_MTRR_PHYSBASE0..PHYSMASK7 | stored (0) | stored |
| 0x250, 0x258, 0x259, 0x268–0x26F | fixed-range MTRRs | stored (0) | stored |
| 0x277 | IA32_PAT | 0x0007040600070406 | stored; a reserved memory type (2, 3, 8–255) in any byte → #GP |
| 0x2FF | IA32_MTRR_DEF_TYPE | stored (0) | stored; bits other than 7:0, 10, 11 → #GP |
| 0xC0000080 | IA32_EFER | 0 | 0 accepted; any other value → #GP (no SCE/LME/NXE on this i686 model) |

Any other MSR gives #GP(0), as real hardware does (SDM Vol. 2B RDMSR/WRMSR).
Differences from QEMU 7.2 TCG (``tests/vmx/test_qemu_reference.py`` runs both): QEMU reads
unknown MSRs as 0, stores reserved PAT types and drops unsupported EFER bits silently,
where hardware and this file raise #GP; its default ``qemu32`` CPU has no MTRR, so its
MTRRCAP reads 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from emu import EmuError

IA32_TIME_STAMP_COUNTER = 0x10
IA32_APIC_BASE = 0x1B
IA32_MTRRCAP = 0xFE
IA32_SYSENTER_CS = 0x174
IA32_SYSENTER_ESP = 0x175
IA32_SYSENTER_EIP = 0x176
IA32_MISC_ENABLE = 0x1A0
IA32_MTRR_PHYSBASE0 = 0x200
IA32_MTRR_FIX64K_00000 = 0x250
IA32_MTRR_FIX16K_80000 = 0x258
IA32_MTRR_FIX16K_A0000 = 0x259
IA32_MTRR_FIX4K_C0000 = 0x268
IA32_PAT = 0x277
IA32_MTRR_DEF_TYPE = 0x2FF
IA32_EFER = 0xC0000080

APIC_BASE_DEFAULT = 0xFEE00900
APIC_BASE_BSP = 1 << 8
APIC_BASE_WRITABLE = 0xFFFFF000 | 1 << 11   # base (MAXPHYADDR 32) and the global enable bit
MTRRCAP_VALUE = 0x508                        # VCNT 8 | FIX (bit 8) | WC (bit 10)
MISC_ENABLE_DEFAULT = 0x1                    # fast-string enable
PAT_DEFAULT = 0x0007040600070406
PAT_VALID_TYPES = frozenset({0, 1, 4, 5, 6, 7})   # UC WC WT WP WB UC- (SDM Vol. 3A Table 13-10)
MTRR_DEF_TYPE_WRITABLE = 0xFF | 1 << 10 | 1 << 11
MASK64 = (1 << 64) - 1
GP_VECTOR = 13

MTRR_MSRS = frozenset(range(0x200, 0x210)) | {0x250, 0x258, 0x259} | frozenset(range(0x268, 0x270))
MSR_NAMES = {IA32_TIME_STAMP_COUNTER: "IA32_TIME_STAMP_COUNTER", IA32_APIC_BASE: "IA32_APIC_BASE",
             IA32_MTRRCAP: "IA32_MTRRCAP", IA32_SYSENTER_CS: "IA32_SYSENTER_CS",
             IA32_SYSENTER_ESP: "IA32_SYSENTER_ESP", IA32_SYSENTER_EIP: "IA32_SYSENTER_EIP",
             IA32_MISC_ENABLE: "IA32_MISC_ENABLE", IA32_PAT: "IA32_PAT", IA32_MTRR_DEF_TYPE: "IA32_MTRR_DEF_TYPE",
             IA32_EFER: "IA32_EFER"}


@dataclass(frozen=True)
class MsrResult:
    """Outcome of an RDMSR/WRMSR: the value read (EDX:EAX), or ``fault`` = 13 meaning inject #GP(0)."""

    value: int = 0
    fault: Optional[int] = None

    @property
    def ok(self) -> bool:
        """True when the access completes (no #GP)."""
        return self.fault is None

    @property
    def eax(self) -> int:
        """Low 32 bits of the value (RDMSR's EAX)."""
        return self.value & 0xFFFFFFFF

    @property
    def edx(self) -> int:
        """High 32 bits of the value (RDMSR's EDX)."""
        return self.value >> 32 & 0xFFFFFFFF


GP = MsrResult(0, GP_VECTOR)
"""The result that says: inject #GP with error code 0."""


class MsrFile:
    """The guest's MSRs; ``tsc`` returns the virtual time-stamp counter (a function of the instruction count)."""

    def __init__(self, tsc: Callable[[], int], apic_base: int = APIC_BASE_DEFAULT):
        self._tsc = tsc
        self.tsc_offset = 0
        self.values: dict[int, int] = {
            IA32_APIC_BASE: apic_base, IA32_SYSENTER_CS: 0, IA32_SYSENTER_ESP: 0, IA32_SYSENTER_EIP: 0,
            IA32_MISC_ENABLE: MISC_ENABLE_DEFAULT, IA32_PAT: PAT_DEFAULT, IA32_MTRR_DEF_TYPE: 0, IA32_EFER: 0,
            **{msr: 0 for msr in MTRR_MSRS}}

    def tsc(self) -> int:
        """What RDTSC/RDTSCP and RDMSR 0x10 return: the virtual TSC plus the offset WRMSR 0x10 set (64-bit wrap)."""
        return (self._tsc() + self.tsc_offset) & MASK64

    def read(self, msr: int) -> MsrResult:
        """RDMSR of ECX = ``msr``."""
        _check(msr, 0)
        if msr == IA32_TIME_STAMP_COUNTER:
            return MsrResult(self.tsc())
        if msr == IA32_MTRRCAP:
            return MsrResult(MTRRCAP_VALUE)
        if msr in self.values:
            return MsrResult(self.values[msr])
        return GP

    def write(self, msr: int, value: int) -> MsrResult:
        """WRMSR of ECX = ``msr`` with EDX:EAX = ``value``."""
        _check(msr, value)
        if msr == IA32_TIME_STAMP_COUNTER:
            self.tsc_offset = (value - self._tsc()) & MASK64
            return MsrResult(value)
        if msr == IA32_APIC_BASE:
            if value & ~(APIC_BASE_WRITABLE | APIC_BASE_BSP):
                return GP
            stored = (value & APIC_BASE_WRITABLE) | (self.values[msr] & APIC_BASE_BSP)
        elif msr == IA32_SYSENTER_CS:
            stored = value & 0xFFFF
        elif msr in (IA32_SYSENTER_ESP, IA32_SYSENTER_EIP):
            stored = value & 0xFFFFFFFF
        elif msr == IA32_PAT:
            if any((value >> (8 * i) & 0xFF) not in PAT_VALID_TYPES for i in range(8)):
                return GP
            stored = value
        elif msr == IA32_MTRR_DEF_TYPE:
            if value & ~MTRR_DEF_TYPE_WRITABLE:
                return GP
            stored = value
        elif msr == IA32_EFER:
            if value:
                return GP
            stored = 0
        elif msr in self.values:
            stored = value
        else:
            return GP
        self.values[msr] = stored
        return MsrResult(stored)

    def state(self) -> dict[str, int]:
        """Declared state for snapshots and ``info`` dumps: every stored MSR (hex index → value) and the TSC offset."""
        out = {f"{msr:#x}": value for msr, value in sorted(self.values.items())}
        out["tsc_offset"] = self.tsc_offset
        return out


def _check(msr: int, value: int) -> None:
    if not isinstance(msr, int) or not 0 <= msr <= 0xFFFFFFFF:
        raise EmuError(f"MSR index {msr!r} is not a 32-bit ECX value")
    if not isinstance(value, int) or not 0 <= value <= MASK64:
        raise EmuError(f"MSR value {value!r} is not a 64-bit EDX:EAX value")


@dataclass(frozen=True)
class SysenterTarget:
    """Where SYSENTER goes (SDM Vol. 2B SYSENTER): CS = SYSENTER_CS & 0xFFFC, SS = CS + 8, EIP, ESP from the MSRs."""

    cs: int
    ss: int
    eip: int
    esp: int


def sysenter_target(msrs: MsrFile, protected_mode: bool) -> Optional[SysenterTarget]:
    """SYSENTER's target, or None when it raises #GP(0) (CR0.PE = 0 or SYSENTER_CS[15:2] = 0).

    Unicorn 2.1.4 treats SYSENTER as a no-op plus hook, so the monitor performs it with this
    (and clears EFLAGS.VM, IF and RF, and loads flat CPL-0 CS/SS caches); SYSEXIT runs natively.
    """
    cs = msrs.values[IA32_SYSENTER_CS]
    if not protected_mode or cs & 0xFFFC == 0:
        return None
    return SysenterTarget(cs & 0xFFFC, (cs & 0xFFFC) + 8, msrs.values[IA32_SYSENTER_EIP],
                          msrs.values[IA32_SYSENTER_ESP])
