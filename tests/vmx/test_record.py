"""VmExit record: DESIGN.md exit-log fields, decoded qualification, JSON round trips."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu import EmuError
from emu.vmx.qualification import (ActivityState, CrAccessQualification, CrAccessType, InterruptionInfo,
                                   InterruptionType, Interruptibility, IoDirection, IoOperand, IoQualification)
from emu.vmx.reasons import ExitReason
from emu.vmx.record import VmExit

REGS = {"eax": 0x2BADB002, "ecx": 0, "edx": 0x1F0, "ebx": 0x9500, "esp": 0x7FF0, "ebp": 0, "esi": 0x1000,
        "edi": 0x2000, "eip": 0x100010, "eflags": 0x202}


def io_exit() -> VmExit:
    # rep insd at 0x100010 (F3 6D, 2 bytes), DX = 0x1F0: qualification 0x01F0003B; guest-linear = ES:EDI
    return VmExit(ExitReason.IO_INSTRUCTION, 0x01F0003B, insn_len=2, rip=0x100010, icount=1234, guest="g0",
                  guest_linear=0x2000, regs=REGS)


def test_design_contract_fields():
    obj = json.loads(io_exit().to_json())
    for key in ("icount", "guest", "reason", "reason_name", "qualification", "rip", "insn_len"):
        assert key in obj
    assert (obj["icount"], obj["guest"], obj["reason"], obj["reason_name"]) == (1234, "g0", 30, "IO_INSTRUCTION")
    assert (obj["qualification"], obj["rip"], obj["insn_len"]) == (0x01F0003B, 0x100010, 2)
    assert obj["decoded"] == {"size": 4, "direction": "IN", "string": True, "rep": True, "operand": "DX",
                              "port": 0x1F0}
    assert obj["regs"]["edx"] == 0x1F0 and obj["guest_linear"] == 0x2000 and obj["activity_name"] == "ACTIVE"


def test_decoded_object_and_next_rip():
    rec = io_exit()
    assert rec.decoded == IoQualification(4, IoDirection.IN, True, True, IoOperand.DX, 0x1F0)
    assert rec.next_rip == 0x100012 and rec.linear_rip == 0x100010 and rec.reason_field == 30
    cr = VmExit(ExitReason.CR_ACCESS, 0x3, insn_len=3, rip=0x1000)
    assert cr.decoded == CrAccessQualification(3, CrAccessType.MOV_TO_CR, 0)
    assert VmExit(ExitReason.CPUID, insn_len=2).decoded is None
    with pytest.raises(EmuError, match="does not match"):
        VmExit(ExitReason.CR_ACCESS, 0x3, decoded=CrAccessQualification(4, CrAccessType.MOV_TO_CR, 0))


def test_exception_exit_json():
    # #GP(0x10) at 0x2000 in a segment with base 0x10000 (linear RIP 0x12000)
    info = InterruptionInfo(13, InterruptionType.HARDWARE_EXCEPTION, True)
    rec = VmExit(ExitReason.EXCEPTION_NMI, 0, rip=0x2000, linear_rip=0x12000, interruption=info, error_code=0x10,
                 interruptibility=Interruptibility(sti=True))
    obj = rec.to_dict()
    assert obj["interruption_info"] == 0x80000B0D and obj["error_code"] == 0x10 and obj["interruptibility"] == 1
    assert obj["decoded"]["vector"] == 13 and obj["decoded"]["type"] == "HARDWARE_EXCEPTION"
    assert VmExit.from_json(rec.to_json()) == rec
    with pytest.raises(EmuError, match="error code"):
        VmExit(ExitReason.EXCEPTION_NMI, error_code=0)


def test_hlt_and_failed_entry():
    rec = VmExit(ExitReason.HLT, insn_len=1, rip=0x1000, activity=ActivityState.HLT)
    assert rec.to_dict()["activity"] == 1
    bad = VmExit(ExitReason.INVALID_GUEST_STATE, failed_vmentry=True)
    assert bad.reason_field == 0x80000021 and VmExit.from_json(bad.to_json()).failed_vmentry


@pytest.mark.parametrize("text", [
    "not json", "{}", '{"reason": 35, "qualification": 0, "insn_len": 0, "rip": 0, "icount": 0, "guest": "g"}',
    '{"reason": 30, "reason_name": "HLT", "qualification": 0, "insn_len": 1, "rip": 0, "icount": 0, "guest": "g"}',
    '{"reason": 30, "qualification": 128, "insn_len": 1, "rip": 0, "icount": 0, "guest": "g"}',
    '{"reason": 12, "qualification": 0, "insn_len": 99, "rip": 0, "icount": 0, "guest": "g"}',
    '{"reason": 12, "qualification": 0, "insn_len": 1, "rip": 0, "icount": 0, "guest": "g", "regs": {"xax": 1}}',
])
def test_from_json_rejects_bad_records(text):
    with pytest.raises(EmuError):
        VmExit.from_json(text)


def test_from_json_checks_decoded_fields():
    obj = io_exit().to_dict()
    obj["decoded"]["port"] = 0x170
    with pytest.raises(EmuError, match="decoded"):
        VmExit.from_json(obj)
    info = InterruptionInfo(3, InterruptionType.SOFTWARE_EXCEPTION)
    obj = VmExit(ExitReason.EXCEPTION_NMI, insn_len=1, interruption=info).to_dict()
    obj["decoded"]["vector"] = 4
    with pytest.raises(EmuError, match="decoded"):
        VmExit.from_json(obj)


def test_records_are_hashable_values():
    assert hash(io_exit()) == hash(io_exit()) and io_exit() == io_exit()
    rec = VmExit(ExitReason.HLT, regs={"eax": 1, "cs": 0x10, "cr3": 0x1000})
    assert rec.regs["cs"] == 0x10


@given(st.sampled_from(list(ExitReason)), st.integers(0, 2**32 - 1), st.integers(0, 15), st.integers(0, 2**32 - 1),
       st.integers(0, 2**40), st.sampled_from(list(ActivityState)), st.integers(0, 31))
def test_round_trip(reason, qual, length, rip, icount, activity, interruptibility):
    if reason is ExitReason.IO_INSTRUCTION:
        qual = 0x00600008
    elif reason is ExitReason.CR_ACCESS:
        qual = 0x614
    elif reason is ExitReason.DR_ACCESS:
        qual = 0x216
    rec = VmExit(reason, qual, length, rip, icount=icount, activity=activity,
                 interruptibility=Interruptibility.decode(interruptibility), regs={"eip": rip})
    assert VmExit.from_json(rec.to_json()) == rec
