"""I/O and MSR bitmap edge cases with real guest instructions (SDM Vol. 3C §26.1.3, §25.6.4, §25.6.9).

Code is written into the RAM of a booted hello.elf and run; the bitmap bits are set here byte by byte from the
SDM layout (I/O bitmap A = ports 0-0x7FFF, B = 0x8000-0xFFFF, one bit a port; MSR bitmap page: read-low +0,
read-high +0x400, write-low +0x800, write-high +0xC00), not with emu's setters. The rules:
- with "use I/O bitmaps", an IN/OUT exits if the bit of ANY port it touches is set, and always if it wraps
  around past 0xFFFF; "unconditional I/O exiting" is then ignored;
- with "use MSR bitmaps", RDMSR/WRMSR of an MSR in 0-0x1FFF or 0xC0000000-0xC0001FFF exit iff its read/write bit
  is set; any other MSR always exits; without the control every RDMSR/WRMSR exits.
"""
from __future__ import annotations

from typing import Iterable

import pytest

from emu.machine import Machine, MachineConfig
from emu.vmx.controls import PrimaryControls
from emu.vmx.monitor import Decision
from emu.vmx.reasons import ExitReason
from tests.vmx.test_exits_firmware import FW

CODE = 0x200000
END = b"\xb0\x00\xe6\xf4"     # mov al, 0; out 0xf4, al (debug exit, status 1; port 0xF4's bit is never set)
USE_IO = PrimaryControls.USE_IO_BITMAPS
USE_MSR = PrimaryControls.USE_MSR_BITMAPS


def set_io_bits(m: Machine, ports: Iterable[int]) -> None:
    for port in ports:
        bitmap = m.vmx.controls.io_bitmap_a if port < 0x8000 else m.vmx.controls.io_bitmap_b
        bitmap[(port & 0x7FFF) >> 3] |= 1 << (port & 7)


def set_msr_bits(m: Machine, msrs: Iterable[int], write: bool) -> None:
    for msr in msrs:
        if msr < 0x2000:
            offset, bit = (0x800 if write else 0), msr
        else:
            offset, bit = (0xC00 if write else 0x400), msr - 0xC0000000
        m.vmx.controls.msr_bitmap[offset + (bit >> 3)] |= 1 << (bit & 7)


def run_guest(code: bytes, controls: PrimaryControls, io_bits=(), msr_read_bits=(), msr_write_bits=(),
              must_finish: bool = True):
    """Run ``code`` + END in a booted hello.elf; return the exits (RDMSR/WRMSR exits are skipped: no #GP)."""
    m = Machine(MachineConfig(kernel=str(FW / "hello.elf")), console=lambda b: None)
    m.cpu.write_phys(CODE, code + END)
    m.cpu.set_reg("eip", CODE)
    m.vmx.controls.primary |= controls
    set_io_bits(m, io_bits)
    set_msr_bits(m, msr_read_bits, False)
    set_msr_bits(m, msr_write_bits, True)
    m.vmx.on(ExitReason.RDMSR, lambda record, monitor: Decision.SKIP)
    m.vmx.on(ExitReason.WRMSR, lambda record, monitor: Decision.SKIP)
    exits = []
    m.vmx.observers.append(exits.append)
    result = m.run(max_insns=1000)
    m.close()
    if must_finish:
        assert result.status == 1, result
    return exits


def io_exits_of(code, controls, bits):
    """(RIP, qualification) of the I/O exits of ``code`` (END's `out 0xf4, al` left out)."""
    return [(e.rip, e.qualification) for e in run_guest(code, controls, io_bits=bits)
            if e.reason is ExitReason.IO_INSTRUCTION and e.rip < CODE + len(code)]


IN_EAX_FFFF = b"\x66\xba\xff\xff" b"\xed"          # mov dx, 0xffff; in eax, dx   (ports 0xFFFF, 0, 1, 2)
IN_EAX_AT = CODE + 4


@pytest.mark.parametrize("bits", [[0xFFFF], [0], [2], []], ids=["bit-ffff", "bit-0", "bit-2", "no-bit"])
def test_in_eax_at_port_ffff_wraps_and_always_exits(bits):
    """Qualification 0xFFFF000B: port 0xFFFF, DX operand (bit 6 = 0), IN (bit 3), size 4 (bits 2:0 = 3)."""
    assert io_exits_of(IN_EAX_FFFF, USE_IO, bits) == [(IN_EAX_AT, 0xFFFF000B)]


def test_one_byte_in_at_port_ffff_does_not_wrap():
    code = b"\x66\xba\xff\xff" b"\xec"               # mov dx, 0xffff; in al, dx
    assert io_exits_of(code, USE_IO, [0]) == []
    assert io_exits_of(code, USE_IO, [0xFFFF]) == [(CODE + 4, 0xFFFF0008)]


IN_AX_1F7 = b"\x66\xba\xf7\x01" b"\x66\xed"        # mov dx, 0x1f7; in ax, dx   (ports 0x1F7, 0x1F8)


@pytest.mark.parametrize("bits,exits", [([0x1F8], True), ([0x1F7], True), ([], False), ([0x1F6], False),
                                        ([0x1F9], False)], ids=["1f8", "1f7", "none", "1f6", "1f9"])
def test_two_byte_in_exits_if_either_port_bit_is_set(bits, exits):
    expected = [(CODE + 4, 0x01F70009)] if exits else []      # size 2 (1), IN (8), DX operand
    assert io_exits_of(IN_AX_1F7, USE_IO, bits) == expected


def test_word_out_straddling_bitmaps_a_and_b():
    """`out dx, ax` at 0x7FFF touches 0x7FFF (bitmap A) and 0x8000 (bitmap B)."""
    code = b"\x66\xba\xff\x7f" b"\x66\xef"           # mov dx, 0x7fff; out dx, ax
    assert io_exits_of(code, USE_IO, [0x8000]) == [(CODE + 4, 0x7FFF0001)]
    assert io_exits_of(code, USE_IO, [0x7FFE, 0x8001]) == []


def test_bitmaps_override_unconditional_io_exiting():
    assert io_exits_of(IN_AX_1F7, USE_IO | PrimaryControls.UNCONDITIONAL_IO, []) == []
    assert io_exits_of(IN_AX_1F7, PrimaryControls.UNCONDITIONAL_IO, []) == [(CODE + 4, 0x01F70009)]
    assert io_exits_of(IN_AX_1F7, PrimaryControls(0), [0x1F7]) == []     # bitmaps unused without the control


# --- MSR bitmaps -----------------------------------------------------------------------------------------------------

def rdmsr(msr: int) -> bytes:
    return b"\xb9" + msr.to_bytes(4, "little") + b"\x0f\x32"         # mov ecx, msr; rdmsr


def wrmsr(msr: int) -> bytes:
    return b"\x31\xc0\x31\xd2\xb9" + msr.to_bytes(4, "little") + b"\x0f\x30"   # xor eax; xor edx; mov ecx; wrmsr


def msr_exits_of(code, controls, read_bits=(), write_bits=(), must_finish=True):
    return [(e.reason.name, e.regs["ecx"]) for e in run_guest(code, controls, msr_read_bits=read_bits,
                                                                msr_write_bits=write_bits, must_finish=must_finish)
            if e.reason in (ExitReason.RDMSR, ExitReason.WRMSR)]


@pytest.mark.parametrize("msr", [0x40000000, 0x2000, 0xBFFFFFFF, 0xC0002000, 0xFFFFFFFF])
def test_msr_outside_both_ranges_always_exits(msr):
    assert msr_exits_of(rdmsr(msr) + wrmsr(msr), USE_MSR) == [("RDMSR", msr), ("WRMSR", msr)]


@pytest.mark.parametrize("msr", [0x10, 0x174, 0x2FF, 0xC0000080])
def test_msr_in_range_exits_only_for_its_own_bit(msr):
    code = rdmsr(msr)
    assert msr_exits_of(code, USE_MSR) == []
    assert msr_exits_of(code, USE_MSR, read_bits=[msr]) == [("RDMSR", msr)]
    assert msr_exits_of(code, USE_MSR, write_bits=[msr]) == []            # the write bit does not count for RDMSR
    assert msr_exits_of(code, USE_MSR, read_bits=[msr ^ 1]) == []         # nor a neighbour's bit


@pytest.mark.parametrize("msr", [0x1FFF, 0xC0000000, 0xC0001FFF])
def test_msrs_at_the_range_ends_use_their_bits(msr):
    """The last/first MSR of each range: its bit decides. (No model MSR there: a pass-through access may #GP, so the
    run's end is not checked when nothing exits.)"""
    assert msr_exits_of(rdmsr(msr), USE_MSR, read_bits=[msr]) == [("RDMSR", msr)]
    assert msr_exits_of(rdmsr(msr), USE_MSR, must_finish=False) == []


def test_wrmsr_uses_the_write_bits():
    code = wrmsr(0x174)
    assert msr_exits_of(code, USE_MSR, read_bits=[0x174]) == []
    assert msr_exits_of(code, USE_MSR, write_bits=[0x174]) == [("WRMSR", 0x174)]
    assert msr_exits_of(wrmsr(0xC0000081), USE_MSR, write_bits=[0xC0000081]) == [("WRMSR", 0xC0000081)]


def test_without_msr_bitmaps_every_rdmsr_and_wrmsr_exits():
    assert msr_exits_of(rdmsr(0x10) + wrmsr(0x174), PrimaryControls(0)) == [("RDMSR", 0x10), ("WRMSR", 0x174)]


def read_msr_value(msr: int, controls: PrimaryControls) -> int:
    """EDX:EAX after `rdmsr` of ``msr`` with the default handling (no handler)."""
    m = Machine(MachineConfig(kernel=str(FW / "hello.elf")), console=lambda b: None)
    m.cpu.write_phys(CODE, rdmsr(msr) + b"\x89\xc6\x89\xd7" + END)      # mov esi, eax; mov edi, edx
    m.cpu.set_reg("eip", CODE)
    m.vmx.controls.primary |= controls
    result = m.run(max_insns=100)
    m.close()
    assert result.status == 1
    return m.cpu.reg("edi") << 32 | m.cpu.reg("esi")


@pytest.mark.parametrize("msr", [0x10, 0x1B, 0x1A0], ids=["tsc", "apic-base", "misc-enable"])
def test_an_rdmsr_the_bitmap_lets_through_reads_the_same_msr(msr):
    """The guest has one set of MSRs: whether an RDMSR exits (and is emulated) or not must not change its value."""
    assert read_msr_value(msr, USE_MSR) == read_msr_value(msr, PrimaryControls(0))
