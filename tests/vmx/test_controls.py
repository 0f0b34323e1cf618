"""VM-execution controls: SDM bit values (Tables 25-5/6/7) and the exit conditions of §26.1.3."""
from __future__ import annotations

import pytest

from emu import EmuError
from emu.vmx.controls import (PinControls, PrimaryControls, RdtscpAction, SecondaryControls, VmcsControls,
                              cr_access_exits, external_interrupt_exits, hlt_exits, interrupt_window_exits,
                              invlpg_exits, monitor_trap_flag, mov_dr_exits, rdtsc_exits, rdtscp_action,
                              wbinvd_exits)
from emu.vmx.qualification import CrAccessQualification, CrAccessType, Interruptibility, LmswOperandType

P = PrimaryControls


def test_primary_control_bits_from_table_25_6():
    expected = {"INTERRUPT_WINDOW": 0x4, "USE_TSC_OFFSETTING": 0x8, "HLT": 0x80, "INVLPG": 0x200, "MWAIT": 0x400,
                "RDPMC": 0x800, "RDTSC": 0x1000, "CR3_LOAD": 0x8000, "CR3_STORE": 0x10000, "CR8_LOAD": 0x80000,
                "CR8_STORE": 0x100000, "USE_TPR_SHADOW": 0x200000, "NMI_WINDOW": 0x400000, "MOV_DR": 0x800000,
                "UNCONDITIONAL_IO": 0x01000000, "USE_IO_BITMAPS": 0x02000000, "MONITOR_TRAP_FLAG": 0x08000000,
                "USE_MSR_BITMAPS": 0x10000000, "MONITOR": 0x20000000, "PAUSE": 0x40000000,
                "ACTIVATE_SECONDARY": 0x80000000}
    for name, value in expected.items():
        assert int(P[name]) == value
    assert int(PinControls.EXTERNAL_INTERRUPT_EXITING) == 0x1 and int(PinControls.NMI_EXITING) == 0x8
    assert int(SecondaryControls.ENABLE_RDTSCP) == 0x8 and int(SecondaryControls.WBINVD_EXITING) == 0x40
    assert int(SecondaryControls.UNRESTRICTED_GUEST) == 0x80


def test_simple_instruction_controls():
    none, all_ = VmcsControls(), VmcsControls(primary=P.HLT | P.INVLPG | P.RDTSC | P.MOV_DR | P.MONITOR_TRAP_FLAG)
    for check in (hlt_exits, invlpg_exits, rdtsc_exits, mov_dr_exits, monitor_trap_flag):
        assert check(all_) and not check(none)
    assert external_interrupt_exits(VmcsControls(pin=PinControls.EXTERNAL_INTERRUPT_EXITING))
    assert not external_interrupt_exits(none)


def test_secondary_controls_need_activation():
    # SDM 25.6.2: with "activate secondary controls" = 0 the processor treats them all as 0.
    c = VmcsControls(primary=P.RDTSC, secondary=SecondaryControls.ENABLE_RDTSCP | SecondaryControls.WBINVD_EXITING)
    assert rdtscp_action(c) is RdtscpAction.UD and not wbinvd_exits(c)
    c.primary |= P.ACTIVATE_SECONDARY
    assert rdtscp_action(c) is RdtscpAction.EXIT and wbinvd_exits(c)
    c.primary &= ~P.RDTSC
    assert rdtscp_action(c) is RdtscpAction.EXECUTE


def test_interrupt_window():
    c = VmcsControls(primary=P.INTERRUPT_WINDOW)
    IF = 0x200
    assert interrupt_window_exits(c, 0x202, Interruptibility())
    assert not interrupt_window_exits(c, 0x002, Interruptibility())              # IF = 0
    assert not interrupt_window_exits(c, 0x202, Interruptibility(sti=True))      # STI shadow
    assert not interrupt_window_exits(c, 0x202, Interruptibility(mov_ss=True))   # MOV-SS shadow
    assert interrupt_window_exits(c, IF, Interruptibility(nmi=True))             # NMI blocking does not matter
    assert not interrupt_window_exits(VmcsControls(), 0x202, Interruptibility())


def to_cr(cr, reg=0):
    return CrAccessQualification(cr, CrAccessType.MOV_TO_CR, reg)


def from_cr(cr, reg=0):
    return CrAccessQualification(cr, CrAccessType.MOV_FROM_CR, reg)


def test_mov_to_cr0_cr4_masks():
    # Host owns CR0.PG and CR0.PE (mask 0x80000001); the guest believes CR0 = 0x11 (read shadow).
    c = VmcsControls(cr0_guest_host_mask=0x80000001, cr0_read_shadow=0x11, cr4_guest_host_mask=0x10)
    assert cr_access_exits(c, to_cr(0), 0x80000011)      # PG differs from the shadow in a masked bit
    assert not cr_access_exits(c, to_cr(0), 0x11)
    assert not cr_access_exits(c, to_cr(0), 0x31)        # NE differs but is guest-owned
    assert cr_access_exits(c, to_cr(0), 0x10)            # PE differs
    assert cr_access_exits(c, to_cr(4), 0x10)            # CR4.PSE owned by the host, shadow 0
    assert not cr_access_exits(c, to_cr(4), 0x80)
    assert not cr_access_exits(c, from_cr(0)) and not cr_access_exits(c, from_cr(4))  # reads see the shadow
    assert not cr_access_exits(c, to_cr(2), 0x1234)      # CR2 never exits
    with pytest.raises(EmuError):
        cr_access_exits(c, to_cr(0))


def test_cr3_load_store_and_targets():
    c = VmcsControls(primary=P.CR3_LOAD | P.CR3_STORE, cr3_targets=(0x1000, 0x5000))
    assert not cr_access_exits(c, to_cr(3), 0x1000)     # equal to a CR3-target value
    assert not cr_access_exits(c, to_cr(3), 0x5000)
    assert cr_access_exits(c, to_cr(3), 0x2000)
    assert cr_access_exits(c, from_cr(3))
    assert cr_access_exits(VmcsControls(primary=P.CR3_LOAD), to_cr(3), 0x1000)  # count 0: always
    assert not cr_access_exits(VmcsControls(), to_cr(3), 0x2000)
    assert not cr_access_exits(VmcsControls(), from_cr(3))
    with pytest.raises(EmuError, match="CR3-target"):
        VmcsControls(cr3_targets=(1, 2, 3, 4, 5))


def test_cr8():
    c = VmcsControls(primary=P.CR8_LOAD)
    assert cr_access_exits(c, to_cr(8), 0) and not cr_access_exits(c, from_cr(8))
    assert cr_access_exits(VmcsControls(primary=P.CR8_STORE), from_cr(8))


def test_clts():
    clts = CrAccessQualification(0, CrAccessType.CLTS)
    assert cr_access_exits(VmcsControls(cr0_guest_host_mask=0x8, cr0_read_shadow=0x8), clts)
    assert not cr_access_exits(VmcsControls(cr0_guest_host_mask=0x8, cr0_read_shadow=0x0), clts)
    assert not cr_access_exits(VmcsControls(cr0_read_shadow=0x8), clts)


def lmsw(source):
    return CrAccessQualification(0, CrAccessType.LMSW, 0, LmswOperandType.REGISTER, source)


def test_lmsw_rules():
    # PE: exits when set in the mask and the source and clear in the shadow (LMSW never clears PE).
    c = VmcsControls(cr0_guest_host_mask=0x1, cr0_read_shadow=0x0)
    assert cr_access_exits(c, lmsw(0x1))
    assert not cr_access_exits(c, lmsw(0x0))
    assert not cr_access_exits(VmcsControls(cr0_guest_host_mask=0x1, cr0_read_shadow=0x1), lmsw(0x0))
    # bits 3:1 (MP, EM, TS): exit on any masked difference.
    c = VmcsControls(cr0_guest_host_mask=0x2, cr0_read_shadow=0x0)
    assert cr_access_exits(c, lmsw(0x2)) and not cr_access_exits(c, lmsw(0x4))
    # bits above 3 are not loaded by LMSW, masked or not
    assert not cr_access_exits(VmcsControls(cr0_guest_host_mask=0x20), lmsw(0x20))


def test_bitmap_sizes_checked():
    with pytest.raises(EmuError, match="4096"):
        VmcsControls(io_bitmap_a=bytearray(10))
    with pytest.raises(EmuError, match="32 bits"):
        VmcsControls(exception_bitmap=1 << 32)
    c = VmcsControls(msr_bitmap=bytes(4096))
    assert isinstance(c.msr_bitmap, bytearray)
