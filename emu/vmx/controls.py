"""VM-execution controls (Intel SDM Vol. 3C §25.6) and the exit conditions that read them (§26.1–26.2).

Bit values: SDM Tables 25-5 (pin-based), 25-6 (primary processor-based) and 25-7
(secondary processor-based), checked against Linux ``arch/x86/include/asm/vmx.h``.
The I/O, MSR and exception bitmaps live in :mod:`emu.vmx.bitmaps`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

from emu import EmuError
from emu.vmx.qualification import CrAccessQualification, CrAccessType, Interruptibility

BITMAP_BYTES = 4096
EFLAGS_IF = 1 << 9
CR0_PE = 1 << 0
CR0_TS = 1 << 3


class PinControls(enum.IntFlag):
    """Pin-based VM-execution controls (SDM Table 25-5)."""

    EXTERNAL_INTERRUPT_EXITING = 1 << 0
    NMI_EXITING = 1 << 3
    VIRTUAL_NMIS = 1 << 5
    PREEMPTION_TIMER = 1 << 6
    POSTED_INTERRUPTS = 1 << 7


class PrimaryControls(enum.IntFlag):
    """Primary processor-based VM-execution controls (SDM Table 25-6)."""

    INTERRUPT_WINDOW = 1 << 2
    USE_TSC_OFFSETTING = 1 << 3
    HLT = 1 << 7
    INVLPG = 1 << 9
    MWAIT = 1 << 10
    RDPMC = 1 << 11
    RDTSC = 1 << 12
    CR3_LOAD = 1 << 15
    CR3_STORE = 1 << 16
    ACTIVATE_TERTIARY = 1 << 17
    CR8_LOAD = 1 << 19
    CR8_STORE = 1 << 20
    USE_TPR_SHADOW = 1 << 21
    NMI_WINDOW = 1 << 22
    MOV_DR = 1 << 23
    UNCONDITIONAL_IO = 1 << 24
    USE_IO_BITMAPS = 1 << 25
    MONITOR_TRAP_FLAG = 1 << 27
    USE_MSR_BITMAPS = 1 << 28
    MONITOR = 1 << 29
    PAUSE = 1 << 30
    ACTIVATE_SECONDARY = 1 << 31


class SecondaryControls(enum.IntFlag):
    """Secondary processor-based VM-execution controls (SDM Table 25-7), the first 21 bits."""

    VIRTUALIZE_APIC_ACCESSES = 1 << 0
    ENABLE_EPT = 1 << 1
    DESCRIPTOR_TABLE_EXITING = 1 << 2
    ENABLE_RDTSCP = 1 << 3
    VIRTUALIZE_X2APIC = 1 << 4
    ENABLE_VPID = 1 << 5
    WBINVD_EXITING = 1 << 6
    UNRESTRICTED_GUEST = 1 << 7
    APIC_REGISTER_VIRTUALIZATION = 1 << 8
    VIRTUAL_INTERRUPT_DELIVERY = 1 << 9
    PAUSE_LOOP_EXITING = 1 << 10
    RDRAND_EXITING = 1 << 11
    ENABLE_INVPCID = 1 << 12
    ENABLE_VMFUNC = 1 << 13
    VMCS_SHADOWING = 1 << 14
    ENCLS_EXITING = 1 << 15
    RDSEED_EXITING = 1 << 16
    ENABLE_PML = 1 << 17
    EPT_VIOLATION_VE = 1 << 18
    CONCEAL_VMX_FROM_PT = 1 << 19
    ENABLE_XSAVES = 1 << 20


def _bitmap(name: str, value) -> bytearray:
    data = bytearray(value)
    if len(data) != BITMAP_BYTES:
        raise EmuError(f"{name} is {len(data)} bytes, must be {BITMAP_BYTES} (one 4-KiB page)")
    return data


@dataclass
class VmcsControls:
    """The VM-execution control fields the monitor consults (SDM §25.6).

    ``io_bitmap_a`` covers ports 0x0000–0x7FFF, ``io_bitmap_b`` 0x8000–0xFFFF, one bit a
    port (§25.6.4); ``msr_bitmap`` is the 4-KiB MSR bitmap page (§25.6.9).  Only the first
    ``len(cr3_targets)`` (at most 4) CR3-target values count (§25.6.7).
    """

    pin: PinControls = PinControls(0)
    primary: PrimaryControls = PrimaryControls(0)
    secondary: SecondaryControls = SecondaryControls(0)
    exception_bitmap: int = 0
    pf_error_code_mask: int = 0
    pf_error_code_match: int = 0
    io_bitmap_a: bytearray = field(default_factory=lambda: bytearray(BITMAP_BYTES))
    io_bitmap_b: bytearray = field(default_factory=lambda: bytearray(BITMAP_BYTES))
    msr_bitmap: bytearray = field(default_factory=lambda: bytearray(BITMAP_BYTES))
    cr0_guest_host_mask: int = 0
    cr0_read_shadow: int = 0
    cr4_guest_host_mask: int = 0
    cr4_read_shadow: int = 0
    cr3_targets: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.pin = PinControls(self.pin)
        self.primary = PrimaryControls(self.primary)
        self.secondary = SecondaryControls(self.secondary)
        if not 0 <= self.exception_bitmap <= 0xFFFFFFFF:
            raise EmuError(f"exception bitmap {self.exception_bitmap:#x} is not 32 bits")
        self.io_bitmap_a = _bitmap("I/O bitmap A", self.io_bitmap_a)
        self.io_bitmap_b = _bitmap("I/O bitmap B", self.io_bitmap_b)
        self.msr_bitmap = _bitmap("MSR bitmap", self.msr_bitmap)
        self.cr3_targets = tuple(self.cr3_targets)
        if len(self.cr3_targets) > 4:
            raise EmuError(f"{len(self.cr3_targets)} CR3-target values; the processor supports 4")

    @property
    def effective_secondary(self) -> SecondaryControls:
        """Secondary controls as the processor applies them: all 0 unless ACTIVATE_SECONDARY (SDM §25.6.2)."""
        if self.primary & PrimaryControls.ACTIVATE_SECONDARY:
            return self.secondary
        return SecondaryControls(0)


# --- conditions for instructions and events (SDM §26.1.3, §26.2) ------------------------------

def hlt_exits(c: VmcsControls) -> bool:
    """HLT exits iff HLT exiting is 1."""
    return bool(c.primary & PrimaryControls.HLT)


def invlpg_exits(c: VmcsControls) -> bool:
    """INVLPG exits iff INVLPG exiting is 1."""
    return bool(c.primary & PrimaryControls.INVLPG)


def rdtsc_exits(c: VmcsControls) -> bool:
    """RDTSC exits iff RDTSC exiting is 1."""
    return bool(c.primary & PrimaryControls.RDTSC)


class RdtscpAction(enum.Enum):
    """What RDTSCP does in VMX non-root operation (SDM §26.1.3, §26.3)."""

    UD = "#UD"            # enable RDTSCP is 0
    EXIT = "exit"         # enable RDTSCP and RDTSC exiting are 1
    EXECUTE = "execute"   # executes (with TSC offsetting if enabled)


def rdtscp_action(c: VmcsControls) -> RdtscpAction:
    """RDTSCP: #UD unless enable RDTSCP; then it exits iff RDTSC exiting."""
    if not c.effective_secondary & SecondaryControls.ENABLE_RDTSCP:
        return RdtscpAction.UD
    return RdtscpAction.EXIT if rdtsc_exits(c) else RdtscpAction.EXECUTE


def mov_dr_exits(c: VmcsControls) -> bool:
    """MOV DR exits iff MOV-DR exiting is 1."""
    return bool(c.primary & PrimaryControls.MOV_DR)


def pause_exits(c: VmcsControls) -> bool:
    """PAUSE exits iff PAUSE exiting is 1 (PAUSE-loop exiting is not modelled)."""
    return bool(c.primary & PrimaryControls.PAUSE)


def wbinvd_exits(c: VmcsControls) -> bool:
    """WBINVD exits iff the secondary WBINVD exiting control is in effect."""
    return bool(c.effective_secondary & SecondaryControls.WBINVD_EXITING)


def monitor_trap_flag(c: VmcsControls) -> bool:
    """MTF: an exit (reason 37) after each guest instruction (SDM §26.5.2)."""
    return bool(c.primary & PrimaryControls.MONITOR_TRAP_FLAG)


def external_interrupt_exits(c: VmcsControls) -> bool:
    """External interrupts exit (reason 1) iff external-interrupt exiting is 1, else they are delivered."""
    return bool(c.pin & PinControls.EXTERNAL_INTERRUPT_EXITING)


def interrupt_window_exits(c: VmcsControls, eflags: int, interruptibility: Interruptibility) -> bool:
    """Interrupt-window exit before an instruction: control set, RFLAGS.IF = 1, no STI/MOV-SS blocking (SDM §26.7.5)."""
    return (bool(c.primary & PrimaryControls.INTERRUPT_WINDOW) and bool(eflags & EFLAGS_IF)
            and not interruptibility.blocks_interrupts)


UNCONDITIONAL_INSTRUCTIONS = frozenset({"cpuid", "getsec", "invd", "xsetbv", "vmcall", "vmclear", "vmlaunch",
                                        "vmptrld", "vmptrst", "vmread", "vmresume", "vmwrite", "vmxoff", "vmxon",
                                        "invept", "invvpid"})
"""Instructions that cause VM exits unconditionally in VMX non-root operation (SDM §26.1.2)."""


def cr_access_exits(c: VmcsControls, q: CrAccessQualification, value: Optional[int] = None) -> bool:
    """Whether a CR access exits (SDM §26.1.3).

    MOV to CR0/CR4 exits when the source differs from the read shadow in a bit set in the
    guest/host mask; MOV to CR3 exits under CR3-load exiting unless the source equals one
    of the CR3-target values; MOV from CR3 under CR3-store exiting; CR8 under CR8-load/
    store exiting; MOV from CR0/CR4 and CR2 never exit; CLTS exits when CR0.TS is set in
    both the mask and the shadow; LMSW by the rule for bits 3:0 (PE can only be set).
    ``value`` is the source operand (MOV to CR) or the LMSW source data (default: ``q.lmsw_source``).
    """
    kind = q.access_type
    if kind is CrAccessType.MOV_TO_CR:
        if value is None:
            raise EmuError("MOV to CR exit check needs the source value")
        if q.cr == 0:
            return bool((value ^ c.cr0_read_shadow) & c.cr0_guest_host_mask)
        if q.cr == 4:
            return bool((value ^ c.cr4_read_shadow) & c.cr4_guest_host_mask)
        if q.cr == 3:
            return bool(c.primary & PrimaryControls.CR3_LOAD) and value not in c.cr3_targets
        if q.cr == 8:
            return bool(c.primary & PrimaryControls.CR8_LOAD)
        return False
    if kind is CrAccessType.MOV_FROM_CR:
        if q.cr == 3:
            return bool(c.primary & PrimaryControls.CR3_STORE)
        if q.cr == 8:
            return bool(c.primary & PrimaryControls.CR8_STORE)
        return False
    if kind is CrAccessType.CLTS:
        return bool(c.cr0_guest_host_mask & CR0_TS and c.cr0_read_shadow & CR0_TS)
    source = q.lmsw_source if value is None else value
    mask, shadow = c.cr0_guest_host_mask, c.cr0_read_shadow
    if mask & source & CR0_PE and not shadow & CR0_PE:
        return True
    return bool(mask & (source ^ shadow) & 0xE)
