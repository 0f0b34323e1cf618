"""Instruction boundaries of guest code (capstone), cached by the code bytes."""
from __future__ import annotations

from functools import lru_cache

import capstone

_CS = {32: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32),
       16: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)}


@lru_cache(maxsize=8192)
def offsets(code: bytes, bits: int = 32) -> tuple[int, ...]:
    """Start offsets of the instructions in ``code`` (stops at the first undecodable byte)."""
    return tuple(insn[0] for insn in _CS[bits].disasm_lite(code, 0))


@lru_cache(maxsize=8192)
def first(code: bytes, bits: int = 32) -> tuple[int, str, str] | None:
    """(length, mnemonic, operands) of the instruction at the start of ``code``, or None."""
    for _addr, size, mnemonic, op_str in _CS[bits].disasm_lite(code, 0, 1):
        return size, mnemonic, op_str
    return None


def index_of(code: bytes, offset: int, bits: int = 32) -> int:
    """How many whole instructions of ``code`` start before ``offset``."""
    n = 0
    for start in offsets(code, bits):
        if start >= offset:
            break
        n += 1
    return n


IO_MNEMONICS = frozenset({"in", "out", "insb", "insw", "insd", "outsb", "outsw", "outsd"})
HOOKED_MNEMONICS = IO_MNEMONICS | {"rdtsc", "cpuid"}
"""Instructions whose Unicorn instruction hooks need the exact site (see Vcpu._locate_site).  Not RDTSCP:
Unicorn 2.1.4 runs it without calling the RDTSC hook (measured), so it is a watched instruction instead."""


@lru_cache(maxsize=8192)
def io_sites(code: bytes, bits: int = 32) -> tuple[tuple[int, int, int], ...]:
    """(offset, instruction index, length) of each instruction with a Unicorn instruction hook in a block."""
    sites = []
    for index, (start, size, mnemonic, _ops) in enumerate(_CS[bits].disasm_lite(code, 0)):
        if mnemonic.split()[-1] in HOOKED_MNEMONICS:   # "rep insd" → "insd"
            sites.append((start, index, size))
    return tuple(sites)


WINDOW_OPENERS = frozenset({"sti", "popf", "popfd", "iret", "iretd"})
"""Instructions that can set EFLAGS.IF: where a pending interrupt's window may open."""

PRIVILEGED = frozenset({"hlt", "lgdt", "lidt", "lldt", "ltr", "clts", "invd", "wbinvd", "invlpg", "rdmsr", "wrmsr",
                        "lmsw"})
WATCHED = PRIVILEGED | {"rdtscp"}
"""Instructions a Python hook sees before they run: the privileged ones (CPL checks) and RDTSCP (emulated)."""


@lru_cache(maxsize=8192)
def sensitive_sites(code: bytes, bits: int = 32) -> tuple[tuple[int, int, str, str], ...]:
    """(offset, length, mnemonic, operands) of instructions the vCPU must watch in a block.

    I/O instructions (a stop requested by their hook must take effect right after them), privileged
    instructions and MOV to/from control and debug registers (CPL checks Unicorn does not make).
    """
    out = []
    for start, size, mnemonic, ops in _CS[bits].disasm_lite(code, 0):
        mnemonic = mnemonic.split()[-1]   # without a rep prefix
        if mnemonic in IO_MNEMONICS or mnemonic in WATCHED or mnemonic in WINDOW_OPENERS or \
                (mnemonic == "mov" and _is_cr_or_dr(ops)) or is_ss_load(mnemonic, ops):
            out.append((start, size, mnemonic, ops))
    return tuple(out)


def is_ss_load(mnemonic: str, ops: str) -> bool:
    """MOV SS / POP SS: they block interrupts for one instruction (the MOV-SS shadow, SDM Vol. 3A §6.8.3)."""
    return (mnemonic == "mov" and ops.replace(" ", "").startswith("ss,")) or (mnemonic == "pop" and ops == "ss")


def _is_cr_or_dr(ops: str) -> bool:
    return any(part.strip()[:2] in ("cr", "dr") and part.strip()[2:].isdigit() for part in ops.split(","))


def watched_name(mnemonic: str, ops: str) -> str:
    """The name a watched instruction's hook is given: "mov ss" (MOV SS / POP SS), "mov dr" (MOV from/to a debug
    register), else the mnemonic ("mov" is then a MOV CR)."""
    if is_ss_load(mnemonic, ops):
        return "mov ss"
    if mnemonic == "mov" and any(part.strip()[:2] == "dr" for part in ops.split(",")):
        return "mov dr"
    return mnemonic
