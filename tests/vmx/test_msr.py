"""The MSR file: reset values from the SDM Vol. 4 / QEMU, write rules, #GP for everything else."""
from __future__ import annotations

import pytest

from emu import EmuError
from emu.vmx.msr import GP_VECTOR, MsrFile, sysenter_target


def make(t=None):
    clock = t if t is not None else [1000]
    return MsrFile(lambda: clock[0]), clock


def test_tsc_reads_virtual_time_and_write_sets_offset():
    msrs, clock = make()
    assert msrs.read(0x10).value == 1000
    assert msrs.write(0x10, 0x1_0000_0000).ok     # at t=1000: offset = 0x1_0000_0000 - 1000
    clock[0] = 1100
    r = msrs.read(0x10)
    assert r.value == 0x1_0000_0064 and (r.edx, r.eax) == (1, 0x64)
    assert msrs.tsc() == 0x1_0000_0064              # RDTSC sees the same counter
    msrs.write(0x10, 0)
    clock[0] = 1099                                  # offset arithmetic wraps at 2**64
    assert msrs.read(0x10).value == 2**64 - 1


def test_apic_base():
    msrs, _ = make()
    # QEMU's BSP value: base 0xFEE00000 | EN (bit 11, 0x800) | BSP (bit 8, 0x100)
    assert msrs.read(0x1B).value == 0xFEE00900
    assert msrs.write(0x1B, 0xFEC00800).ok and msrs.read(0x1B).value == 0xFEC00900   # BSP is read-only
    assert msrs.write(0x1B, 0xFEE00000).ok and msrs.read(0x1B).value == 0xFEE00100   # EN cleared
    for reserved in (0x1, 0x400, 1 << 32):           # bits 7:0, 10 (x2APIC) and above MAXPHYADDR 32
        assert msrs.write(0x1B, 0xFEE00900 | reserved).fault == GP_VECTOR
    assert msrs.read(0x1B).value == 0xFEE00100


def test_reset_values():
    msrs, _ = make()
    assert msrs.read(0xFE).value == 0x508                     # VCNT 8 | FIX 0x100 | WC 0x400
    assert msrs.read(0x1A0).value == 1                         # fast strings
    assert msrs.read(0x277).value == 0x0007040600070406        # PAT power-up value (SDM Vol. 3A Table 13-12)
    assert msrs.read(0xC0000080).value == 0
    for msr in (0x174, 0x175, 0x176, 0x200, 0x20F, 0x250, 0x258, 0x259, 0x268, 0x26F, 0x2FF):
        assert msrs.read(msr) .value == 0 and msrs.read(msr).ok


def test_sysenter_msrs_and_target():
    msrs, _ = make()
    msrs.write(0x174, 0x12340008)                    # CS keeps bits 15:0
    msrs.write(0x175, 0x1_0000_8000)                 # ESP/EIP keep bits 31:0 on this 32-bit CPU
    msrs.write(0x176, 0xC0001000)
    assert [msrs.read(m).value for m in (0x174, 0x175, 0x176)] == [0x0008, 0x8000, 0xC0001000]
    target = sysenter_target(msrs, protected_mode=True)
    assert (target.cs, target.ss, target.eip, target.esp) == (0x8, 0x10, 0xC0001000, 0x8000)
    assert sysenter_target(msrs, protected_mode=False) is None     # #GP(0) in real mode
    msrs.write(0x174, 0x3)                                          # CS[15:2] = 0 -> #GP(0)
    assert sysenter_target(msrs, True) is None


def test_write_rules():
    msrs, _ = make()
    assert msrs.write(0xFE, 0).fault == GP_VECTOR                  # MTRRCAP is read-only
    assert msrs.write(0x277, 0x0007040600070402).fault == GP_VECTOR  # type 2 reserved
    assert msrs.write(0x277, 0x0807040600070406).fault == GP_VECTOR  # type 8 reserved
    assert msrs.write(0x277, 0x0106050406010007).ok and msrs.read(0x277).value == 0x0106050406010007
    assert msrs.write(0x2FF, 0xC06).ok and msrs.write(0x2FF, 0x1000).fault == GP_VECTOR
    assert msrs.write(0xC0000080, 1).fault == GP_VECTOR             # SCE: no SYSCALL on this CPU
    assert msrs.write(0xC0000080, 0).ok
    assert msrs.write(0x1A0, 0x81).ok and msrs.read(0x1A0).value == 0x81
    assert msrs.write(0x200, 0xFEE00006).ok and msrs.read(0x200).value == 0xFEE00006


@pytest.mark.parametrize("msr", [0x0, 0x8B, 0x1FF, 0x3A, 0x480, 0xC0000081, 0xC0000100, 0x40000000, 0xFFFFFFFF])
def test_unknown_msrs_give_gp(msr):
    msrs, _ = make()
    assert msrs.read(msr).fault == GP_VECTOR and not msrs.read(msr).ok
    assert msrs.write(msr, 0).fault == GP_VECTOR


def test_bad_arguments():
    msrs, _ = make()
    with pytest.raises(EmuError):
        msrs.read(1 << 32)
    with pytest.raises(EmuError):
        msrs.write(0x10, 1 << 64)


def test_state_dump():
    msrs, _ = make()
    msrs.write(0x10, 5000)
    state = msrs.state()
    assert state["0x1b"] == 0xFEE00900 and state["tsc_offset"] == 4000
