"""Instruction bytes -> exit qualification.

Instruction bytes come from nasm (the reference assembler) where it is installed, and
from the SDM Vol. 2 opcode tables by hand otherwise; the expected qualification of each
is computed in the case from the SDM layouts (Table 28-5 I/O, 28-3 CR, 28-4 DR).
"""
from __future__ import annotations

import subprocess

import capstone
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu import EmuError
from emu.vmx.decode import (cr_access, dr_access, instruction_exit_reason, instruction_length, invlpg_qualification, io_qualification,
                            memory_operand_linear, string_io_operand)
from tests.conftest import require_tool


def nasm(tmp_path, bits: int, line: str) -> bytes:
    """Assemble one instruction with nasm."""
    require_tool("nasm")
    src = tmp_path / "i.asm"
    out = tmp_path / "i.bin"
    src.write_text(f"bits {bits}\n{line}\n")
    subprocess.run(["nasm", "-f", "bin", "-o", str(out), str(src)], check=True, capture_output=True)
    return out.read_bytes()


# (bits, instruction, edx, expected qualification, expected length)
IO_CASES = [
    # out imm8, al: size 1 (0), OUT, immediate (0x40), port 0x80 -> 0x00800040; E6 ib = 2 bytes
    (32, "out 0x80, al", 0, 0x00800040, 2),
    # out 0xe9, al with junk in EDX: the immediate wins -> 0x00E90040
    (32, "out 0xe9, al", 0xDEAD1234, 0x00E90040, 2),
    # in al, dx (dx=0x1f7): size 0 | IN 0x8 | port 0x1f7<<16 -> 0x01F70008; EC = 1 byte
    (32, "in al, dx", 0x000001F7, 0x01F70008, 1),
    # in eax, dx (dx=0x1f0): 3 | 0x8 -> 0x01F0000B; only DX's low 16 bits are the port
    (32, "in eax, dx", 0xABCD01F0, 0x01F0000B, 1),
    # in ax, dx in 32-bit code needs 0x66: size 2 -> 1 | 0x8 -> 0x01F00009; 2 bytes
    (32, "in ax, dx", 0x1F0, 0x01F00009, 2),
    # in ax, 0x71: 66 E5 71: 1 | 0x8 | 0x40 -> 0x00710049
    (32, "in ax, 0x71", 0, 0x00710049, 3),
    # out dx, eax (dx=0xcfc): 3 | OUT -> 0x0CFC0003
    (32, "out dx, eax", 0xCFC, 0x0CFC0003, 1),
    # rep insd (dx=0x1f0): 3 | 0x8 | string 0x10 | rep 0x20 -> 0x01F0003B; F3 6D
    (32, "rep insd", 0x1F0, 0x01F0003B, 2),
    # rep outsw (dx=0x1f0): 1 | string 0x10 | rep 0x20 -> 0x01F00031; 66 F3 6F
    (32, "rep outsw", 0x1F0, 0x01F00031, 3),
    # insb without rep (dx=0x60): 0 | 0x8 | 0x10 -> 0x00600018
    (32, "insb", 0x60, 0x00600018, 1),
    # outsd with a segment override (dx=0xe9): 3 | 0x10 -> 0x00E90013; 2E 6F
    (32, "cs outsd", 0xE9, 0x00E90013, 2),
    # 16-bit code: in ax, dx is ED (size 2 -> 1), in eax, dx needs 0x66 (size 4 -> 3)
    (16, "in ax, dx", 0x3F8, 0x03F80009, 1),
    (16, "in eax, dx", 0x3F8, 0x03F8000B, 2),
    # 16-bit rep outsw (dx=0x1f0): F3 6F -> 0x01F00031
    (16, "rep outsw", 0x1F0, 0x01F00031, 2),
    # out 0xff, ax in 16-bit code: E7 FF: 1 | 0x40 | 0xff<<16 -> 0x00FF0041
    (16, "out 0xff, ax", 0, 0x00FF0041, 2),
]


@pytest.mark.parametrize("bits,line,edx,expected,length", IO_CASES)
def test_io_qualification_from_nasm(tmp_path, bits, line, edx, expected, length):
    code = nasm(tmp_path, bits, line)
    assert len(code) == length
    assert io_qualification(code + b"\x90" * 4, bits, edx).encode() == expected
    assert instruction_length(code + b"\x90" * 4, bits) == length


def test_io_qualification_hand_bytes():
    # Independent of nasm: SDM Vol. 2B IN/OUT/INS/OUTS opcodes.
    assert io_qualification(bytes.fromhex("e680"), 32, 0xFFFF).encode() == 0x00800040          # out 0x80, al
    assert io_qualification(bytes.fromhex("ed"), 32, 0x1F0).encode() == 0x01F0000B      # in eax, dx
    assert io_qualification(bytes.fromhex("f36d"), 32, 0x1F0).encode() == 0x01F0003B    # rep insd
    assert io_qualification(bytes.fromhex("f26d"), 32, 0x1F0).encode() == 0x01F0003B    # repne acts as rep
    assert io_qualification(bytes.fromhex("f366 6f".replace(" ", "")), 32, 0x1F0).encode() == 0x01F00031
    assert io_qualification(bytes.fromhex("f3ec"), 32, 0x60).encode() == 0x00600008     # REP ignored: not string


def test_string_io_operand():
    # INS always stores to ES:[E]DI; OUTS reads DS:[E]SI unless overridden; 0x67 flips the address size.
    ins = string_io_operand(bytes.fromhex("f36d"), 32)
    assert (ins.address_size, ins.segment, ins.index) == (32, "es", "edi")
    outs = string_io_operand(bytes.fromhex("2ef36e"), 32)
    assert (outs.segment, outs.index) == ("cs", "esi")
    # instruction information (SDM Table 28-8): address size bits 9:7 (1 = 32-bit), segment 17:15 (CS = 1)
    assert outs.instruction_information() == 1 << 7 | 1 << 15
    small = string_io_operand(bytes.fromhex("67f36c"), 32)
    assert (small.address_size, small.index, small.instruction_information()) == (16, "di", 0)
    assert string_io_operand(bytes.fromhex("6f"), 16).index == "si"
    with pytest.raises(EmuError, match="not INS/OUTS"):
        string_io_operand(bytes.fromhex("ec"), 32)


CR_CASES = [
    # mov cr3, eax: 0F 22 D8 (ModRM 11 011 000): CR 3, MOV to CR, EAX -> 0x3
    (32, "mov cr3, eax", 0x3),
    # mov eax, cr0: 0F 20 C0: CR 0, from (1<<4) -> 0x10
    (32, "mov eax, cr0", 0x10),
    # mov cr0, ebx: CR 0, to, EBX = 3 -> 0x300
    (32, "mov cr0, ebx", 0x300),
    # mov esi, cr4: 4 | 0x10 | 6<<8 -> 0x614
    (32, "mov esi, cr4", 0x614),
    # mov edi, cr2: 2 | 0x10 | 7<<8 -> 0x712
    (32, "mov edi, cr2", 0x712),
    # mov cr4, esp: 4 | 4<<8 -> 0x404
    (32, "mov cr4, esp", 0x404),
    # clts: 0F 06: type 2 -> 0x20
    (32, "clts", 0x20),
    # 64-bit: mov cr8, rax needs REX.R (44 0F 22 C0): CR 8 -> 0x8
    (64, "mov cr8, rax", 0x8),
    # mov rcx, cr8: 8 | 0x10 | 1<<8 -> 0x118
    (64, "mov rcx, cr8", 0x118),
    # mov cr3, r9: REX.B: register 9 -> 0x903
    (64, "mov cr3, r9", 0x903),
    # 16-bit code uses the same 0F 22 encoding with 32-bit registers
    (16, "mov cr0, eax", 0x0),
]


@pytest.mark.parametrize("bits,line,expected", CR_CASES)
def test_cr_access_from_nasm(tmp_path, bits, line, expected):
    code = nasm(tmp_path, bits, line)
    assert cr_access(code, bits).encode() == expected
    assert instruction_length(code, bits) == len(code)


def test_lmsw_register_and_memory():
    regs = {"eax": 0x12340011, "ebx": 0xFFFF000F, "esp": 0x8000}
    # lmsw ax (0F 01 F0): type 3 (0x30), register operand, source AX = 0x0011 -> 0x00110030
    assert cr_access(bytes.fromhex("0f01f0"), 32, regs=regs).encode() == 0x00110030
    # lmsw bx (0F 01 F3): source 0x000F -> 0x000F0030 (no register number in the qualification)
    assert cr_access(bytes.fromhex("0f01f3"), 32, regs=regs).encode() == 0x000F0030
    # lmsw [esp+4] (0F 01 74 24 04): memory operand (bit 6) -> 0x70 | data<<16; SS base 0x100 -> linear 0x8104
    mem = {0x8104: b"\x0b\x00"}
    q = cr_access(bytes.fromhex("0f01742404"), 32, regs=regs, read_linear=lambda a, n: mem[a],
                  segment_bases={"ss": 0x100})
    assert q.encode() == 0x000B0070
    assert cr_access(bytes.fromhex("0f0130"), 32, lmsw_source=0x1).encode() == 0x00010070
    with pytest.raises(EmuError, match="LMSW"):
        cr_access(bytes.fromhex("0f0130"), 32)


def test_dr_access():
    # mov dr7, eax: 0F 23 F8 -> 7 ; mov edx, dr6: 0F 21 F2 -> 6 | 0x10 | 2<<8 = 0x216
    assert dr_access(bytes.fromhex("0f23f8"), 32).encode() == 0x7
    assert dr_access(bytes.fromhex("0f21f2"), 32).encode() == 0x216


def test_invlpg_and_memory_operands():
    regs = {"eax": 0x1000, "ebx": 0x10, "ebp": 0x7000, "esi": 0x20}
    # invlpg [eax+ebx*2]: 0F 01 3C 58 -> 0x1000 + 0x20 = 0x1020 (DS base 0)
    assert invlpg_qualification(bytes.fromhex("0f013c58"), 32, regs) == 0x1020
    # invlpg [ebp-4] uses SS: SS base 0x100000 -> 0x106FFC
    assert invlpg_qualification(bytes.fromhex("0f017dfc"), 32, regs, {"ss": 0x100000}) == 0x106FFC
    # fs override: 64 0F 01 38 -> FS base + EAX
    assert invlpg_qualification(bytes.fromhex("640f0138"), 32, regs, {"fs": 0xC0000000}) == 0xC0001000
    # 16-bit addressing wraps the offset at 64 KiB: [bx+si] with bx=0xFFF0, si=0x20 -> 0x0010
    assert memory_operand_linear(bytes.fromhex("0f0138"), 16, {"ebx": 0xFFF0, "esi": 0x20}, {}) == 0x0010
    # a displacement-only operand: 0F 01 3D 00 10 00 00 -> 0x1000
    assert invlpg_qualification(bytes.fromhex("0f013d00100000"), 32, {}) == 0x1000
    with pytest.raises(EmuError, match="not INVLPG"):
        invlpg_qualification(bytes.fromhex("0f0130"), 32, regs)


@pytest.mark.parametrize("code,bits,fn", [
    ("90", 32, "io"), ("0f22e8", 32, "cr"), ("0f22c8", 32, "cr"), ("f0ec", 32, "io"), ("e6", 32, "io"),
    ("ed", 8, "io"), ("", 32, "io"), ("0f0b", 32, "cr"), ("0f22c0", 8, "cr"), ("0f20c0", 32, "dr"),
])
def test_bad_input_is_one_error(code, bits, fn):
    func = {"io": lambda c, b: io_qualification(c, b, 0), "cr": cr_access, "dr": dr_access}[fn]
    with pytest.raises(EmuError):
        func(bytes.fromhex(code), bits)


_CS = {b: capstone.Cs(capstone.CS_ARCH_X86, m) for b, m in
       ((16, capstone.CS_MODE_16), (32, capstone.CS_MODE_32), (64, capstone.CS_MODE_64))}
for _cs in _CS.values():
    _cs.detail = True


@given(st.sampled_from([16, 32, 64]), st.lists(st.sampled_from([0x66, 0x67, 0xF3, 0xF2, 0x2E, 0x3E, 0x26]),
                                                max_size=3),
       st.sampled_from([0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF, 0x6C, 0x6D, 0x6E, 0x6F]),
       st.integers(0, 0xFF), st.integers(0, 0xFFFFFFFF))
def test_io_size_agrees_with_capstone(bits, prefixes, opcode, imm, edx):
    """Capstone's operand size and length are an independent check of the prefix handling."""
    code = bytes(prefixes) + bytes([opcode, imm]) + b"\x90" * 4
    q = io_qualification(code, bits, edx)
    insn = next(_CS[bits].disasm(code, 0, 1))
    data_operand = [o for o in insn.operands if not (o.type == capstone.x86.X86_OP_REG and
                                                     insn.reg_name(o.reg) == "dx")
                    and o.type != capstone.x86.X86_OP_IMM][0]
    assert q.size == data_operand.size
    assert q.port == (imm if opcode in (0xE4, 0xE5, 0xE6, 0xE7) else edx & 0xFFFF)
    assert q.rep == (opcode in (0x6C, 0x6D, 0x6E, 0x6F) and bool({0xF2, 0xF3} & set(prefixes)))
    assert instruction_length(code, bits) == insn.size


@pytest.mark.parametrize("code,reason", [
    ("0fa2", "CPUID"), ("f4", "HLT"), ("0f31", "RDTSC"), ("0f01f9", "RDTSCP"), ("0f32", "RDMSR"), ("0f30", "WRMSR"),
    ("0f01c1", "VMCALL"), ("0f22d8", "CR_ACCESS"), ("0f20c0", "CR_ACCESS"), ("0f06", "CR_ACCESS"),
    ("0f01f0", "CR_ACCESS"), ("0f23f8", "DR_ACCESS"), ("f36d", "IO_INSTRUCTION"), ("e680", "IO_INSTRUCTION"),
    ("0f0138", "INVLPG"), ("f390", "PAUSE"), ("0f09", "WBINVD"), ("0f08", "INVD"), ("0f01d1", "XSETBV"),
    ("0f0110", "GDTR_IDTR_ACCESS"), ("0f00d8", "LDTR_TR_ACCESS"), ("0f33", "RDPMC"),
])
def test_instruction_exit_reason(code, reason):
    # Instruction -> basic exit reason per SDM Vol. 3C §26.1.2/§26.1.3 and Appendix C.
    assert instruction_exit_reason(bytes.fromhex(code), 32).name == reason


@pytest.mark.parametrize("code", ["90", "cc", "cd80", "89c3", "8b0500100000", "0f0b"])
def test_instructions_without_their_own_exit(code):
    # nop, int3, int 0x80, mov ebx,eax, mov eax,[m], ud2: exits only through the exception bitmap, if at all
    assert instruction_exit_reason(bytes.fromhex(code), 32) is None
