"""From a guest instruction's bytes to the exit qualification a VT-x processor would report.

Capstone validates the instruction, gives its length and its memory operand;
prefixes, opcode and ModRM fields are read from the raw bytes (the SDM fields
are defined on them: Vol. 2A §2.1, Vol. 3C Tables 28-3, 28-4, 28-5, 28-8).
Every function raises one :class:`emu.EmuError` line for bytes that are not the
expected instruction.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping, Optional

import capstone
from capstone import x86_const as CX

from emu import EmuError
from emu.vmx.qualification import (GPR_NAMES, IO_PORT_SHIFT, CrAccessQualification, CrAccessType, DrAccessQualification,
                                   DrDirection, IoDirection, IoOperand, IoQualification, LmswOperandType)
from emu.vmx.reasons import ExitReason

_MODES = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
_SEGMENT_PREFIXES = {0x26: "es", 0x2E: "cs", 0x36: "ss", 0x3E: "ds", 0x64: "fs", 0x65: "gs"}
_OTHER_PREFIXES = frozenset({0x66, 0x67, 0xF0, 0xF2, 0xF3})
SEGMENT_NUMBERS = {"es": 0, "cs": 1, "ss": 2, "ds": 3, "fs": 4, "gs": 5}
"""Segment-register numbering of the VM-exit instruction-information field (SDM Table 28-8)."""


@lru_cache(maxsize=4)
def _disassembler(bits: int) -> capstone.Cs:
    cs = capstone.Cs(capstone.CS_ARCH_X86, _MODES[bits])
    cs.detail = True
    return cs


@dataclass(frozen=True)
class _Prefixes:
    opcode_at: int
    operand_size: bool   # 0x66 seen
    address_size: bool   # 0x67 seen
    rep: bool            # 0xF2 or 0xF3 seen
    lock: bool
    segment: Optional[str]
    rex: int             # 0 or 0x40..0x4F (64-bit mode only)


def _prefixes(code: bytes, bits: int) -> _Prefixes:
    pos, opsize, addrsize, rep, lock, segment, rex = 0, False, False, False, False, None, 0
    while pos < len(code) and pos < 15:
        byte = code[pos]
        if byte in _SEGMENT_PREFIXES:
            segment = _SEGMENT_PREFIXES[byte]
        elif byte == 0x66:
            opsize = True
        elif byte == 0x67:
            addrsize = True
        elif byte in (0xF2, 0xF3):
            rep = True
        elif byte == 0xF0:
            lock = True
        elif bits == 64 and 0x40 <= byte <= 0x4F:
            rex = byte
            pos += 1
            if pos < len(code) and (code[pos] in _SEGMENT_PREFIXES or code[pos] in _OTHER_PREFIXES):
                rex = 0  # a REX prefix not directly before the opcode is ignored (SDM Vol. 2A §2.2.1)
                continue
            break
        else:
            break
        pos += 1
    return _Prefixes(pos, opsize, addrsize, rep, lock, segment, rex)


def _check_bits(bits: int) -> None:
    if bits not in _MODES:
        raise EmuError(f"code size {bits!r} is not 16, 32 or 64 bits")


def _insn(code: bytes, bits: int):
    """The first instruction of ``code`` (capstone, with details; cached by the bytes)."""
    _check_bits(bits)
    insn = _insn_cached(bytes(code[:15]), bits)
    if insn is None:
        raise EmuError(f"cannot decode instruction bytes {bytes(code[:15]).hex()} ({bits}-bit)")
    return insn


@lru_cache(maxsize=4096)
def _insn_cached(code: bytes, bits: int):
    for insn in _disassembler(bits).disasm(code, 0, 1):
        return insn
    return None


def instruction_length(code: bytes, bits: int) -> int:
    """Length in bytes of the instruction at the start of ``code`` (the VM-exit instruction-length field)."""
    return _insn(code, bits).size


# --- I/O ------------------------------------------------------------------------------------

_IO_OPCODES = {  # opcode: (direction, byte-sized, string, immediate)
    0xE4: (IoDirection.IN, True, False, True), 0xE5: (IoDirection.IN, False, False, True),
    0xE6: (IoDirection.OUT, True, False, True), 0xE7: (IoDirection.OUT, False, False, True),
    0xEC: (IoDirection.IN, True, False, False), 0xED: (IoDirection.IN, False, False, False),
    0xEE: (IoDirection.OUT, True, False, False), 0xEF: (IoDirection.OUT, False, False, False),
    0x6C: (IoDirection.IN, True, True, False), 0x6D: (IoDirection.IN, False, True, False),
    0x6E: (IoDirection.OUT, True, True, False), 0x6F: (IoDirection.OUT, False, True, False),
}


def _io_opcode(code: bytes, bits: int) -> tuple[_Prefixes, tuple[IoDirection, bool, bool, bool]]:
    _check_bits(bits)
    pre = _prefixes(code, bits)
    if pre.opcode_at >= len(code) or code[pre.opcode_at] not in _IO_OPCODES:
        raise EmuError(f"bytes {bytes(code[:15]).hex()} are not an IN/OUT/INS/OUTS instruction")
    if pre.lock:
        raise EmuError("LOCK prefix on an I/O instruction raises #UD, not a VM exit")
    form = _IO_OPCODES[code[pre.opcode_at]]
    if form[3] and pre.opcode_at + 1 >= len(code):
        raise EmuError(f"I/O instruction {bytes(code).hex()} is missing its immediate port byte")
    return pre, form


def io_qualification(code: bytes, bits: int, edx: int) -> IoQualification:
    """Qualification of the IN/OUT/INS/OUTS at the start of ``code`` (SDM Table 28-5).

    Size: 1 for the byte forms, else 2 or 4 by the code size and a 0x66 prefix; the
    port is the immediate byte or DX (``edx & 0xFFFF``); REP (0xF3, or 0xF2, which the
    processor treats alike for INS/OUTS) is reported for string forms only.
    """
    _check_bits(bits)
    form = _io_form(bytes(code[:15]), bits)
    return form if form.operand is IoOperand.IMMEDIATE else _io_with_port(form, edx & 0xFFFF)


def io_exit_fields(code: bytes, bits: int, edx: int) -> tuple[int, int, bool]:
    """(instruction length, encoded qualification, string form) of an I/O exit: the exit's hot path, one lookup.

    The same values as :func:`instruction_length` and ``io_qualification(...).encode()``; the DX
    port goes in qualification bits 31:16 (SDM Table 28-5).
    """
    length, encoded, by_dx, string = _io_exit_form(bytes(code[:15]), bits)
    return length, (encoded | (edx & 0xFFFF) << IO_PORT_SHIFT) if by_dx else encoded, string


@lru_cache(maxsize=4096)
def _io_exit_form(code: bytes, bits: int) -> tuple[int, int, bool, bool]:
    _check_bits(bits)
    form = _io_form(code, bits)
    return instruction_length(code, bits), form.encode(), form.operand is IoOperand.DX, form.string


@lru_cache(maxsize=4096)
def _io_form(code: bytes, bits: int) -> IoQualification:
    """The qualification without the DX port (cached by the instruction bytes)."""
    pre, (direction, byte_sized, string, immediate) = _io_opcode(code, bits)
    if byte_sized:
        size = 1
    else:
        size = 2 if (bits == 16) != pre.operand_size else 4
    port = code[pre.opcode_at + 1] if immediate else 0
    return IoQualification(size, direction, string, string and pre.rep,
                           IoOperand.IMMEDIATE if immediate else IoOperand.DX, port)


@lru_cache(maxsize=16384)
def _io_with_port(form: IoQualification, port: int) -> IoQualification:
    return IoQualification(form.size, form.direction, form.string, form.rep, form.operand, port)


@dataclass(frozen=True)
class StringIoOperand:
    """Memory operand of INS/OUTS: address size and segment (VM-exit instruction information, SDM Table 28-8).

    ``index`` names the register holding the offset (EDI for INS, ESI for OUTS; DI/SI with 16-bit addressing).
    """

    address_size: int    # 16, 32 or 64
    segment: str         # "es" for INS; DS or the override for OUTS
    index: str

    def instruction_information(self) -> int:
        """The VM-exit instruction-information field: address size in bits 9:7, segment in bits 17:15."""
        return {16: 0, 32: 1, 64: 2}[self.address_size] << 7 | SEGMENT_NUMBERS[self.segment] << 15


def string_io_operand(code: bytes, bits: int) -> StringIoOperand:
    """Memory operand of the INS/OUTS at the start of ``code`` (INS always uses ES:[E]DI; SDM Vol. 2B INS)."""
    _check_bits(bits)
    return _string_io_operand(bytes(code[:15]), bits)


@lru_cache(maxsize=4096)
def _string_io_operand(code: bytes, bits: int) -> StringIoOperand:
    pre, (direction, _byte, string, _imm) = _io_opcode(code, bits)
    if not string:
        raise EmuError(f"bytes {bytes(code[:15]).hex()} are not INS/OUTS")
    if bits == 64:
        address_size = 32 if pre.address_size else 64
    else:
        address_size = 32 if (bits == 16) == pre.address_size else 16
    prefix = {16: "", 32: "e", 64: "r"}[address_size]
    if direction is IoDirection.IN:
        return StringIoOperand(address_size, "es", prefix + "di")
    return StringIoOperand(address_size, pre.segment or "ds", prefix + "si")


# --- control and debug registers --------------------------------------------------------------

VALID_CRS = {16: frozenset({0, 2, 3, 4}), 32: frozenset({0, 2, 3, 4}), 64: frozenset({0, 2, 3, 4, 8})}
"""Control registers MOV CR may name; others raise #UD (SDM Vol. 2B MOV—Move to/from Control Registers)."""


def register_value(regs: Mapping[str, int], name: str) -> int:
    """A register's value from a snapshot of 32-bit registers: "si" is ESI's low 16 bits, "rax" falls back to EAX."""
    name = name.lower()
    if name in regs:
        return regs[name]
    if name.startswith("r") and "e" + name[1:] in regs:
        return regs["e" + name[1:]]
    if len(name) == 2 and "e" + name in regs:
        return regs["e" + name] & 0xFFFF
    raise EmuError(f"register {name} not in the register snapshot")


def cr_access(code: bytes, bits: int, *, regs: Optional[Mapping[str, int]] = None,
              lmsw_source: Optional[int] = None, read_linear: Optional[Callable[[int, int], bytes]] = None,
              segment_bases: Optional[Mapping[str, int]] = None) -> CrAccessQualification:
    """Qualification of MOV to/from CR, CLTS or LMSW at the start of ``code`` (SDM Table 28-3).

    MOV CR ignores the ModRM mod field (SDM Vol. 2B); CR8 needs REX.R in 64-bit mode.
    LMSW's source data (bits 31:16) is ``lmsw_source`` when given; otherwise it is read
    from ``regs`` (register form) or through ``read_linear(address, 2)`` at the operand's
    linear address (memory form, see :func:`memory_operand_linear`).
    """
    _check_bits(bits)
    pre = _prefixes(code, bits)
    op = bytes(code[pre.opcode_at:pre.opcode_at + 3])
    if op[:2] == b"\x0f\x06":
        return CrAccessQualification(0, CrAccessType.CLTS)
    if len(op) == 3 and op[:2] in (b"\x0f\x20", b"\x0f\x22"):
        modrm = op[2]
        cr = (modrm >> 3 & 7) | (8 if pre.rex & 4 else 0)
        if cr not in VALID_CRS[bits] or pre.lock:
            raise EmuError(f"MOV CR{cr} ({bytes(code[:15]).hex()}) raises #UD, not a VM exit")
        register = (modrm & 7) | (8 if pre.rex & 1 else 0)
        kind = CrAccessType.MOV_TO_CR if op[1] == 0x22 else CrAccessType.MOV_FROM_CR
        return CrAccessQualification(cr, kind, register)
    if len(op) == 3 and op[:2] == b"\x0f\x01" and op[2] >> 3 & 7 == 6:
        memory = op[2] >> 6 != 3
        if lmsw_source is None:
            if memory:
                if read_linear is None or regs is None:
                    raise EmuError("LMSW with a memory operand: pass lmsw_source, or regs and read_linear")
                address = memory_operand_linear(code, bits, regs, segment_bases or {})
                lmsw_source = int.from_bytes(read_linear(address, 2)[:2], "little")
            else:
                if regs is None:
                    raise EmuError("LMSW with a register operand: pass lmsw_source or regs")
                lmsw_source = register_value(regs, GPR_NAMES[op[2] & 7]) & 0xFFFF
        return CrAccessQualification(0, CrAccessType.LMSW, 0,
                                     LmswOperandType.MEMORY if memory else LmswOperandType.REGISTER,
                                     lmsw_source & 0xFFFF)
    raise EmuError(f"bytes {bytes(code[:15]).hex()} are not MOV CR, CLTS or LMSW")


def dr_access(code: bytes, bits: int) -> DrAccessQualification:
    """Qualification of MOV to/from DR0–DR7 at the start of ``code`` (SDM Table 28-4)."""
    _check_bits(bits)
    pre = _prefixes(code, bits)
    op = bytes(code[pre.opcode_at:pre.opcode_at + 3])
    if len(op) < 3 or op[:2] not in (b"\x0f\x21", b"\x0f\x23") or pre.rex & 4:
        raise EmuError(f"bytes {bytes(code[:15]).hex()} are not MOV DR")
    register = (op[2] & 7) | (8 if pre.rex & 1 else 0)
    return DrAccessQualification(op[2] >> 3 & 7, DrDirection.MOV_TO_DR if op[1] == 0x23 else DrDirection.MOV_FROM_DR,
                                 register)


# --- memory operands (INVLPG, LMSW m16) ---------------------------------------------------------

_STACK_BASES = frozenset({"esp", "ebp", "sp", "bp", "rsp", "rbp"})


def memory_operand_linear(code: bytes, bits: int, regs: Mapping[str, int],
                          segment_bases: Mapping[str, int]) -> int:
    """Linear address of the memory operand of the instruction at the start of ``code``.

    Effective address = base + index*scale + displacement, truncated to the address
    size; the segment is the override prefix, else SS for an [E]BP/[E]SP base, else DS
    (SDM Vol. 1 §3.7.5, Vol. 2A Table 2-1).  Missing segment bases count as 0 (flat).
    This is the exit qualification of INVLPG and the guest-linear address of LMSW m16.
    """
    insn = _insn(code, bits)
    mems = [o for o in insn.operands if o.type == CX.X86_OP_MEM]
    if not mems:
        raise EmuError(f"{insn.mnemonic} {insn.op_str} has no memory operand")
    mem = mems[0].mem
    cs = _disassembler(bits)
    base = cs.reg_name(mem.base) if mem.base else None
    index = cs.reg_name(mem.index) if mem.index else None
    offset = mem.disp
    if base == "rip":
        offset += register_value(regs, "rip") + insn.size
    elif base:
        offset += register_value(regs, base)
    if index:
        offset += register_value(regs, index) * mem.scale
    names = [n for n in (base, index) if n]
    if names and all(len(n) == 2 for n in names):
        size_mask = 0xFFFF
    elif bits == 64 and not any(n.startswith("e") for n in names):
        size_mask = 0xFFFFFFFF_FFFFFFFF
    elif names:
        size_mask = 0xFFFFFFFF
    else:  # displacement only: the address size decides
        pre = _prefixes(code, bits)
        size_mask = {16: 0xFFFF, 32: 0xFFFFFFFF, 64: 0xFFFFFFFF_FFFFFFFF}[bits]
        if pre.address_size:
            size_mask = 0xFFFFFFFF if bits != 32 else 0xFFFF
    segment = cs.reg_name(mem.segment) if mem.segment else ("ss" if base in _STACK_BASES else "ds")
    if bits == 64 and segment not in ("fs", "gs"):
        seg_base = 0
    else:
        seg_base = segment_bases.get(segment, 0)
    linear_mask = 0xFFFFFFFF_FFFFFFFF if bits == 64 else 0xFFFFFFFF
    return (seg_base + (offset & size_mask)) & linear_mask


def invlpg_qualification(code: bytes, bits: int, regs: Mapping[str, int],
                         segment_bases: Optional[Mapping[str, int]] = None) -> int:
    """Exit qualification of INVLPG: the linear-address operand (SDM §28.2.1, Table 28-1)."""
    insn = _insn(code, bits)
    if insn.mnemonic != "invlpg":
        raise EmuError(f"bytes {bytes(code[:15]).hex()} are not INVLPG")
    return memory_operand_linear(code, bits, regs, segment_bases or {})


# --- which exit an instruction can cause ------------------------------------------------------

_MNEMONIC_REASONS = {
    "cpuid": "CPUID", "getsec": "GETSEC", "hlt": "HLT", "invd": "INVD", "invlpg": "INVLPG", "rdpmc": "RDPMC",
    "rdtsc": "RDTSC", "rsm": "RSM", "vmcall": "VMCALL", "vmclear": "VMCLEAR", "vmlaunch": "VMLAUNCH",
    "vmptrld": "VMPTRLD", "vmptrst": "VMPTRST", "vmread": "VMREAD", "vmresume": "VMRESUME", "vmwrite": "VMWRITE",
    "vmxoff": "VMXOFF", "vmxon": "VMXON", "clts": "CR_ACCESS", "lmsw": "CR_ACCESS", "rdmsr": "RDMSR",
    "wrmsr": "WRMSR", "mwait": "MWAIT", "monitor": "MONITOR", "pause": "PAUSE", "invept": "INVEPT",
    "rdtscp": "RDTSCP", "invvpid": "INVVPID", "wbinvd": "WBINVD", "xsetbv": "XSETBV", "rdrand": "RDRAND",
    "invpcid": "INVPCID", "vmfunc": "VMFUNC", "rdseed": "RDSEED", "xsaves": "XSAVES", "xrstors": "XRSTORS",
    "lgdt": "GDTR_IDTR_ACCESS", "lidt": "GDTR_IDTR_ACCESS", "sgdt": "GDTR_IDTR_ACCESS", "sidt": "GDTR_IDTR_ACCESS",
    "lldt": "LDTR_TR_ACCESS", "ltr": "LDTR_TR_ACCESS", "sldt": "LDTR_TR_ACCESS", "str": "LDTR_TR_ACCESS",
    **{m: "IO_INSTRUCTION" for m in ("in", "out", "insb", "insw", "insd", "outsb", "outsw", "outsd")},
}


def instruction_exit_reason(code: bytes, bits: int) -> Optional[ExitReason]:
    """The ExitReason the instruction at the start of ``code`` causes when it exits (SDM §26.1), or None.

    None for instructions that never cause an instruction-specific VM exit (they may
    still fault, and faults exit through the exception bitmap).  MOV CR/DR give
    CR_ACCESS/DR_ACCESS; whether an exit really happens depends on the controls.
    """
    _check_bits(bits)
    return _exit_reason_cached(bytes(code[:15]), bits)


@lru_cache(maxsize=4096)
def _exit_reason_cached(code: bytes, bits: int) -> Optional[ExitReason]:
    insn = _insn(code, bits)
    mnemonic = insn.mnemonic.split()[-1]
    if mnemonic == "mov":
        pre = _prefixes(code, bits)
        op = bytes(code[pre.opcode_at:pre.opcode_at + 2])
        if op in (b"\x0f\x20", b"\x0f\x22"):
            return ExitReason.CR_ACCESS
        if op in (b"\x0f\x21", b"\x0f\x23"):
            return ExitReason.DR_ACCESS
        return None
    name = _MNEMONIC_REASONS.get(mnemonic)
    return ExitReason[name] if name else None
