"""Bare-Unicorn reference figures every benchmark prints next to its own, measured in the same run.

Host speed moves by ±30 % between runs on a shared machine; a figure divided by what plain Unicorn (no hooks,
no emu) does on the same host a moment earlier is the number to compare across runs and machines:

- :func:`bare_insn_rate` — guest instructions per second of a register-only loop in a hook-free ``Uc``;
- :func:`bare_copy_rate` — bytes per second that ``Uc.mem_write`` moves into guest RAM (the fastest way any
  device model can put data into Unicorn's memory: the ceiling for DMA and PIO throughput).
"""
from __future__ import annotations

import time

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc

LOOP_AT = 0x1000
MIB = 1 << 20


def _loop(n: int) -> bytes:
    """mov ecx, n ; l: add eax, ecx ; dec ecx ; jnz l ; hlt  — 1 + 3n + 1 instructions."""
    return b"\xb9" + n.to_bytes(4, "little") + b"\x01\xc8" + b"\x49" + b"\x75\xfb" + b"\xf4"


def bare_insn_rate(n: int = 2_000_000, repeat: int = 3) -> float:
    """Instructions per second of a hook-free Unicorn on a register-only loop (best of ``repeat``)."""
    code = _loop(n)
    best = float("inf")
    for _ in range(repeat):
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, 0x10000)
        uc.mem_write(LOOP_AT, code)
        start = time.process_time()
        uc.emu_start(LOOP_AT, LOOP_AT + len(code) - 1)
        best = min(best, time.process_time() - start)
    return (3 * n + 1) / best


def bare_copy_rate(nbytes: int = 16 * MIB, chunk: int = 128 * 1024, repeat: int = 3) -> float:
    """Bytes per second ``Uc.mem_write`` moves into guest RAM in ``chunk``-sized writes (best of ``repeat``)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, nbytes)
    data = bytes(range(256)) * (chunk // 256)
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for addr in range(0, nbytes, chunk):
            uc.mem_write(addr, data)
        best = min(best, time.process_time() - start)
    return nbytes / best


def reference_line() -> str:
    """One line with both references, for the head of a benchmark's output."""
    return (f"bare Unicorn this run: {bare_insn_rate() / 1e6:.1f} M insn/s (register loop, no hooks), "
            f"mem_write {bare_copy_rate() / MIB:.0f} MiB/s")
