"""The VMX data layer: SDM-exact exit reasons, qualification codecs, execution controls and bitmaps,
the VmExit record, and the CPUID and MSR models the monitor answers exits with (Intel SDM Vol. 3C ch. 25-28).

Pure data and functions: nothing here touches Unicorn; the vCPU/machine run loop builds
VmExit records with them.  See docs/vmx.md.
"""
from emu.vmx.bitmaps import (exception_exits, io_bitmap_bit, io_exits, msr_exits, set_all_msr_bitmap,
                             set_exception_bitmap, set_io_bitmap, set_msr_bitmap)
from emu.vmx.controls import (PinControls, PrimaryControls, RdtscpAction, SecondaryControls, VmcsControls,
                              cr_access_exits, external_interrupt_exits, hlt_exits, interrupt_window_exits,
                              invlpg_exits, monitor_trap_flag, mov_dr_exits, pause_exits, rdtsc_exits,
                              rdtscp_action, wbinvd_exits)
from emu.vmx.build import exception_exit, external_interrupt_exit, instruction_exit
from emu.vmx.cpuid import cpuid
from emu.vmx.decode import (cr_access, dr_access, instruction_exit_reason, instruction_length, invlpg_qualification,
                            io_qualification, memory_operand_linear, string_io_operand)
from emu.vmx.msr import MsrFile, MsrResult, sysenter_target
from emu.vmx.qualification import (ActivityState, CrAccessQualification, CrAccessType, DrAccessQualification,
                                   DrDirection, InterruptionInfo, InterruptionType, Interruptibility, IoDirection,
                                   IoOperand, IoQualification, LmswOperandType)
from emu.vmx.reasons import EXIT_REASON_FAILED_VMENTRY, ExitReason, ExitReasonField, exit_reason, failed_vmentry
from emu.vmx.record import VmExit, decode_qualification

__all__ = [name for name in dir() if not name.startswith("_")]
