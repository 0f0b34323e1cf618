"""Basic exit reasons against the SDM's numbering (Vol. 3D Appendix C, Table C-1), typed here from the table."""
from __future__ import annotations

import pytest

from emu import EmuError
from emu.vmx.reasons import ExitReason, ExitReasonField, exit_reason, failed_vmentry

# (number, meaning in Table C-1) for the reasons the monitor produces and their neighbours.
SDM_TABLE_C1 = {
    0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 2: "TRIPLE_FAULT", 3: "INIT_SIGNAL", 4: "SIPI", 5: "IO_SMI",
    6: "OTHER_SMI", 7: "INTERRUPT_WINDOW", 8: "NMI_WINDOW", 9: "TASK_SWITCH", 10: "CPUID", 11: "GETSEC", 12: "HLT",
    13: "INVD", 14: "INVLPG", 15: "RDPMC", 16: "RDTSC", 17: "RSM", 18: "VMCALL", 19: "VMCLEAR", 20: "VMLAUNCH",
    21: "VMPTRLD", 22: "VMPTRST", 23: "VMREAD", 24: "VMRESUME", 25: "VMWRITE", 26: "VMXOFF", 27: "VMXON",
    28: "CR_ACCESS", 29: "DR_ACCESS", 30: "IO_INSTRUCTION", 31: "RDMSR", 32: "WRMSR", 33: "INVALID_GUEST_STATE",
    34: "MSR_LOADING", 36: "MWAIT", 37: "MONITOR_TRAP_FLAG", 39: "MONITOR", 40: "PAUSE", 41: "MACHINE_CHECK",
    43: "TPR_BELOW_THRESHOLD", 44: "APIC_ACCESS", 45: "VIRTUALIZED_EOI", 46: "GDTR_IDTR_ACCESS",
    47: "LDTR_TR_ACCESS", 48: "EPT_VIOLATION", 49: "EPT_MISCONFIG", 50: "INVEPT", 51: "RDTSCP",
    52: "PREEMPTION_TIMER", 53: "INVVPID", 54: "WBINVD", 55: "XSETBV", 56: "APIC_WRITE", 57: "RDRAND",
    58: "INVPCID", 59: "VMFUNC", 60: "ENCLS", 61: "RDSEED", 62: "PML_FULL", 63: "XSAVES", 64: "XRSTORS",
    65: "PCONFIG", 66: "SPP_EVENT", 67: "UMWAIT", 68: "TPAUSE", 69: "LOADIWKEY", 70: "ENCLV",
    72: "ENQCMD_PASID_FAILURE", 73: "ENQCMDS_PASID_FAILURE", 74: "BUS_LOCK", 75: "INSTRUCTION_TIMEOUT",
    76: "SEAMCALL", 77: "TDCALL",
}


@pytest.mark.parametrize("number,name", sorted(SDM_TABLE_C1.items()))
def test_reason_numbers(number, name):
    assert int(ExitReason[name]) == number
    assert exit_reason(number).name == name


def test_no_extra_members_and_unused_numbers_rejected():
    assert {int(r) for r in ExitReason} == set(SDM_TABLE_C1)
    for unused in (35, 38, 42, 71, 78, 0xFFFF):
        with pytest.raises(EmuError, match="not a basic VM-exit reason"):
            exit_reason(unused)


def test_failed_vmentry_bit31():
    # SDM 27.8: a failed VM entry stores the basic reason with bit 31 set: 33 | 0x80000000.
    assert failed_vmentry(ExitReason.INVALID_GUEST_STATE) == 0x80000021
    field = ExitReasonField.decode(0x80000021)
    assert field.basic is ExitReason.INVALID_GUEST_STATE and field.failed_vmentry
    assert ExitReasonField(ExitReason.MSR_LOADING, failed_vmentry=True).encode() == 0x80000022
    # bit 28 pending MTF, bit 29 from VMX root (SMM), bit 27 enclave mode
    assert ExitReasonField.decode(0x3000001E) == ExitReasonField(ExitReason.IO_INSTRUCTION, pending_mtf=True,
                                                                  from_vmx_root=True)
    assert ExitReasonField(ExitReason.HLT, enclave_mode=True).encode() == 0x0800000C


def test_reason_field_reserved_bits():
    with pytest.raises(EmuError, match="reserved"):
        ExitReasonField.decode(0x0001001E)  # bit 16 is reserved
    with pytest.raises(EmuError):
        ExitReasonField.decode(-1)
