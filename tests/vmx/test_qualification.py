"""Qualification and event-field codecs against values computed by hand from the SDM bit layouts.

I/O (SDM Vol. 3C Table 28-5): bits 2:0 size-1, bit 3 IN, bit 4 string, bit 5 REP, bit 6 immediate, 31:16 port.
CR access (Table 28-3): 3:0 CR, 5:4 type (0 to, 1 from, 2 CLTS, 3 LMSW), 6 LMSW memory, 11:8 register, 31:16 LMSW data.
MOV DR (Table 28-4): 2:0 DR, 4 direction (1 = from DR), 11:8 register.
Interruption information (Table 25-19): 7:0 vector, 10:8 type, 11 error code valid, 12 NMI unblocking, 31 valid.
Interruptibility (Table 25-3): 0 STI, 1 MOV SS, 2 SMI, 3 NMI, 4 enclave.  Activity: 0 active, 1 HLT, 2 shutdown, 3 SIPI.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu import EmuError
from emu.vmx.qualification import (ActivityState, CrAccessQualification, CrAccessType, DrAccessQualification,
                                   DrDirection, InterruptionInfo, InterruptionType, Interruptibility, IoDirection,
                                   IoOperand, IoQualification, LmswOperandType)

IN, OUT = IoDirection.IN, IoDirection.OUT
DX, IMM = IoOperand.DX, IoOperand.IMMEDIATE


@pytest.mark.parametrize("q,value", [
    # out 0x80, al: size 1 -> 0; OUT -> bit3 0; immediate -> bit6 0x40; port 0x80<<16 = 0x00800000
    (IoQualification(1, OUT, False, False, IMM, 0x80), 0x00800040),
    # in eax, dx (dx=0x1f0): size 4 -> 3; IN -> 0x8; DX -> 0; 0x1f0<<16 = 0x01F00000
    (IoQualification(4, IN, False, False, DX, 0x1F0), 0x01F0000B),
    # rep insd (dx=0x1f0): 3 | IN 0x8 | string 0x10 | rep 0x20 = 0x3B; the port still comes from DX (bit6 0)
    (IoQualification(4, IN, True, True, DX, 0x1F0), 0x01F0003B),
    # rep outsw (dx=0x1f0): size 2 -> 1 | OUT 0 | string 0x10 | rep 0x20 = 0x31
    (IoQualification(2, OUT, True, True, DX, 0x1F0), 0x01F00031),
    # in al, dx (dx=0x60): 0 | IN 0x8 = 0x08, port 0x60<<16
    (IoQualification(1, IN, False, False, DX, 0x60), 0x00600008),
    # out dx, ax (dx=0xffff): size 2 -> 1, port 0xffff<<16 = 0xFFFF0000
    (IoQualification(2, OUT, False, False, DX, 0xFFFF), 0xFFFF0001),
    # outsb without rep (dx=0xe9): 0 | string 0x10
    (IoQualification(1, OUT, True, False, DX, 0xE9), 0x00E90010),
])
def test_io_qualification_values(q, value):
    assert q.encode() == value
    assert IoQualification.decode(value) == q


@pytest.mark.parametrize("q,value", [
    # mov cr3, eax: CR 3, type 0, register 0 -> 0x3
    (CrAccessQualification(3, CrAccessType.MOV_TO_CR, 0), 0x3),
    # mov eax, cr0: CR 0, type 1 -> 0x10
    (CrAccessQualification(0, CrAccessType.MOV_FROM_CR, 0), 0x10),
    # mov esi, cr4: 4 | 1<<4 | 6<<8 = 0x614
    (CrAccessQualification(4, CrAccessType.MOV_FROM_CR, 6), 0x614),
    # mov cr0, ebx: 0 | 0 | 3<<8 = 0x300
    (CrAccessQualification(0, CrAccessType.MOV_TO_CR, 3), 0x300),
    # mov cr8, r9 (64-bit): 8 | 9<<8 = 0x908
    (CrAccessQualification(8, CrAccessType.MOV_TO_CR, 9), 0x908),
    # clts: type 2 -> 0x20
    (CrAccessQualification(0, CrAccessType.CLTS), 0x20),
    # lmsw ax with ax = 0x0011: type 3 -> 0x30, register operand, data 0x11<<16
    (CrAccessQualification(0, CrAccessType.LMSW, 0, LmswOperandType.REGISTER, 0x0011), 0x00110030),
    # lmsw [mem] = 0xFFFF: 0x30 | bit6 0x40 | 0xFFFF<<16
    (CrAccessQualification(0, CrAccessType.LMSW, 0, LmswOperandType.MEMORY, 0xFFFF), 0xFFFF0070),
])
def test_cr_access_values(q, value):
    assert q.encode() == value
    assert CrAccessQualification.decode(value) == q


def test_dr_access_values():
    # mov dr7, eax: 7 | to 0 | reg 0 = 0x7 ; mov edx, dr6: 6 | from 0x10 | 2<<8 = 0x216
    assert DrAccessQualification(7, DrDirection.MOV_TO_DR, 0).encode() == 0x7
    assert DrAccessQualification(6, DrDirection.MOV_FROM_DR, 2).encode() == 0x216
    assert DrAccessQualification.decode(0x216) == DrAccessQualification(6, DrDirection.MOV_FROM_DR, 2)


@pytest.mark.parametrize("info,value", [
    # int3 selected by the bitmap: vector 3, type 6 (software exception) <<8 = 0x600, valid 0x80000000
    (InterruptionInfo(3, InterruptionType.SOFTWARE_EXCEPTION), 0x80000603),
    # #GP(0): 13 | 3<<8 | error-code valid 0x800 | valid
    (InterruptionInfo(13, InterruptionType.HARDWARE_EXCEPTION, True), 0x80000B0D),
    # #PF: 14 | 0x300 | 0x800 | valid
    (InterruptionInfo(14, InterruptionType.HARDWARE_EXCEPTION, True), 0x80000B0E),
    # #UD: 6 | 0x300 | valid (no error code)
    (InterruptionInfo(6, InterruptionType.HARDWARE_EXCEPTION), 0x80000306),
    # external interrupt vector 0x20 (PIT through the 8259 at base 0x20): type 0
    (InterruptionInfo(0x20, InterruptionType.EXTERNAL_INTERRUPT), 0x80000020),
    # NMI: 2 | 2<<8 | valid
    (InterruptionInfo(2, InterruptionType.NMI), 0x80000202),
    # INT1 (icebp): privileged software exception, type 5
    (InterruptionInfo(1, InterruptionType.PRIVILEGED_SOFTWARE_EXCEPTION), 0x80000501),
    # INT 0x80: software interrupt, type 4
    (InterruptionInfo(0x80, InterruptionType.SOFTWARE_INTERRUPT), 0x80000480),
    # #DF with NMI unblocking due to IRET (bit 12): 8 | 0x300 | 0x800 | 0x1000 | valid
    (InterruptionInfo(8, InterruptionType.HARDWARE_EXCEPTION, True, True), 0x80001B08),
    # an invalid (bit 31 clear) field
    (InterruptionInfo(0, InterruptionType.EXTERNAL_INTERRUPT, valid=False), 0),
])
def test_interruption_info_values(info, value):
    assert info.encode() == value
    assert InterruptionInfo.decode(value) == info


def test_for_exception_sets_error_code_bit_per_table_6_1():
    assert InterruptionInfo.for_exception(13).encode() == 0x80000B0D
    assert InterruptionInfo.for_exception(0).encode() == 0x80000300           # #DE has no error code
    assert InterruptionInfo.for_exception(17).error_code_valid                 # #AC has one
    assert InterruptionInfo.for_exception(3, InterruptionType.SOFTWARE_EXCEPTION).encode() == 0x80000603


def test_interruptibility_and_activity():
    assert Interruptibility(sti=True).encode() == 1
    assert Interruptibility(mov_ss=True).encode() == 2
    assert Interruptibility(smi=True).encode() == 4
    assert Interruptibility(nmi=True).encode() == 8
    assert Interruptibility(enclave=True).encode() == 16
    assert Interruptibility.decode(3) == Interruptibility(sti=True, mov_ss=True)
    assert Interruptibility(sti=True).blocks_interrupts and not Interruptibility(nmi=True).blocks_interrupts
    assert [ActivityState.decode(v).name for v in range(4)] == ["ACTIVE", "HLT", "SHUTDOWN", "WAIT_FOR_SIPI"]
    with pytest.raises(EmuError, match="activity state"):
        ActivityState.decode(4)


@pytest.mark.parametrize("codec,value", [
    (IoQualification, 0x00000080),   # bit 7 reserved
    (IoQualification, 0x00008000),   # bit 15 reserved
    (IoQualification, 1 << 32),      # bits 63:32 reserved
    (IoQualification, 0x00000002),   # size field 2 (3 bytes) is not used
    (CrAccessQualification, 0x80),   # bit 7 reserved
    (CrAccessQualification, 0x1000),  # bits 15:12 reserved
    (DrAccessQualification, 0x8),    # bit 3 reserved
    (InterruptionInfo, 0x80000100),  # type 1 reserved
    (InterruptionInfo, 0x80002000),  # bit 13 reserved
    (Interruptibility, 0x20),        # bit 5 reserved
    (IoQualification, 0x00800050),   # immediate operand on a string instruction
    (IoQualification, 0x01000040),   # immediate operand with a port above 0xff
    (CrAccessQualification, 0x23),   # CLTS reports CR number 0
    (CrAccessQualification, 0x130),  # LMSW has no register field
    (InterruptionInfo, 0x80000203),  # NMI is vector 2
])
def test_reserved_bits_rejected(codec, value):
    with pytest.raises(EmuError):
        codec.decode(value)


@pytest.mark.parametrize("bad", [
    IoQualification(3, IN, False, False, DX, 0),
    IoQualification(1, IN, False, False, DX, 0x10000),
    IoQualification(1, IN, True, False, IMM, 0x80),        # string forms take the port from DX
    IoQualification(1, IN, False, False, IMM, 0x100),      # imm8 ports are 0..0xff
    CrAccessQualification(3, CrAccessType.CLTS),           # CLTS reports CR 0
    CrAccessQualification(0, CrAccessType.LMSW, 2, LmswOperandType.REGISTER, 1),  # LMSW has no register field
    CrAccessQualification(0, CrAccessType.MOV_TO_CR, 0, LmswOperandType.MEMORY),
    CrAccessQualification(16, CrAccessType.MOV_TO_CR),
    InterruptionInfo(256, InterruptionType.HARDWARE_EXCEPTION),
    InterruptionInfo(3, InterruptionType.NMI),
])
def test_encode_rejects_inconsistent_fields(bad):
    with pytest.raises(EmuError):
        bad.encode()


io_quals = st.builds(
    lambda size, d, string, rep, port, imm: IoQualification(size, d, string, rep, IMM if imm and not string else DX,
                                                            port & 0xFF if imm and not string else port),
    st.sampled_from([1, 2, 4]), st.sampled_from(list(IoDirection)), st.booleans(), st.booleans(),
    st.integers(0, 0xFFFF), st.booleans())


@given(io_quals)
def test_io_round_trip(q):
    value = q.encode()
    assert value < 1 << 32 and IoQualification.decode(value) == q
    assert value >> 16 == q.port and (value & 7) + 1 == q.size


cr_quals = st.one_of(
    st.builds(CrAccessQualification, st.integers(0, 15), st.sampled_from([CrAccessType.MOV_TO_CR,
                                                                          CrAccessType.MOV_FROM_CR]),
              st.integers(0, 15)),
    st.just(CrAccessQualification(0, CrAccessType.CLTS)),
    st.builds(lambda op, data: CrAccessQualification(0, CrAccessType.LMSW, 0, op, data),
              st.sampled_from(list(LmswOperandType)), st.integers(0, 0xFFFF)))


@given(cr_quals)
def test_cr_round_trip(q):
    assert CrAccessQualification.decode(q.encode()) == q


@given(st.integers(0, 255), st.sampled_from([t for t in InterruptionType if t is not InterruptionType.NMI]),
       st.booleans(), st.booleans(), st.booleans())
def test_interruption_round_trip(vector, kind, code, nmi_unblocking, valid):
    info = InterruptionInfo(vector, kind, code, nmi_unblocking, valid)
    value = info.encode()
    assert value & 0xFF == vector and value >> 8 & 7 == kind
    assert InterruptionInfo.decode(value) == info


@given(st.integers(0, 0x1F))
def test_interruptibility_round_trip(value):
    assert Interruptibility.decode(value).encode() == value


@given(st.integers(0, 0xFFFFFFFF))
def test_decode_encode_is_identity_on_valid_io_values(value):
    try:
        q = IoQualification.decode(value)
    except EmuError:
        assert value & 0xFF80 or value & 7 in (2, 4, 5, 6, 7) or (value & 0x50 == 0x50) or \
            (value & 0x40 and value >> 16 > 0xFF)
        return
    assert q.encode() == value
