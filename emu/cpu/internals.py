"""Unicorn 2.1.4 internals emu relies on, located and checked at start-up.

Unicorn saves QEMU's ``CPUX86State`` behind a 40-byte header in a context
buffer (``uc_context_save``).  Some state is only visible there: the
interrupt shadow in ``hflags``, the pending exception's error code and
"software interrupt" flag, and the "exception in flight" field
(``old_exception``) that Unicorn never clears (see
``shared/notes/unicorn-2.1.4.md``).  :func:`check` proves each offset with a
probe guest once per process and raises :class:`emu.EmuError` if this build
of Unicorn moved them.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import lru_cache

import unicorn
from unicorn import Uc, UC_ARCH_X86, UC_MODE_32, UC_HOOK_INTR
from unicorn.unicorn_py3.unicorn import uclib
from unicorn.x86_const import (UC_X86_REG_CR0, UC_X86_REG_CR3, UC_X86_REG_CS, UC_X86_REG_EAX, UC_X86_REG_EBP,
                               UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDI, UC_X86_REG_EDX, UC_X86_REG_EIP,
                               UC_X86_REG_ESI, UC_X86_REG_ESP, UC_X86_REG_GDTR, UC_X86_REG_SS)

from emu import EmuError

UNICORN_VERSION = "2.1.4"


@dataclass(frozen=True)
class Offsets:
    """Byte offsets inside the saved context buffer (header included)."""

    regs: int = 40             # env->regs[8] (u64 each: EAX ECX EDX EBX ESP EBP ESI EDI)
    eip: int = 168             # env->eip
    segs: int = 224            # env->segs[6] (ES CS SS DS FS GS), 24 bytes each, selector first
    eflags: int = 176          # env->eflags (IOPL, IF, ...; arithmetic flags are lazy)
    hflags: int = 216          # bit 3 HF_INHIBIT_IRQ (STI / MOV SS shadow), bits 1:0 CPL
    cs_base: int = 256         # segs[R_CS].base (u64); segs[R_CS] starts at 248
    cs_flags: int = 268        # segs[R_CS].flags: bit 22 DESC_B (32-bit code)
    cr3: int = 488
    error_code: int = 5424
    is_soft_int: int = 5428
    next_eip: int = 5432
    old_exception: int = 5536
    size: int = 5608


OFFSETS = Offsets()
_GPR_IDS = (UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX, UC_X86_REG_ESP, UC_X86_REG_EBP,
            UC_X86_REG_ESI, UC_X86_REG_EDI)
HF_INHIBIT_IRQ = 1 << 3


class RawContext:
    """One reusable context buffer of a Unicorn instance, read and patched in place."""

    def __init__(self, uc: Uc):
        self.uc = uc
        self.ctx = uc.context_save()
        self._uch, self._handle = uc._uch, self.ctx.context
        self.addr = ctypes.cast(self.ctx.context, ctypes.c_void_p).value
        buffer = (ctypes.c_char * OFFSETS.size).from_address(self.addr)
        self.u32s = memoryview(buffer).cast("B").cast("I")
        """The buffer as 32-bit words (index = offset // 4): the fastest way to read a field."""

    def refresh(self) -> "RawContext":
        """Copy the CPU state into the buffer (``uc_context_save``, ~1 µs)."""
        uclib.uc_context_save(self._uch, self._handle)   # the binding's context_update, minus its overhead
        return self

    def u32(self, offset: int) -> int:
        return ctypes.c_uint32.from_address(self.addr + offset).value

    def i32(self, offset: int) -> int:
        return ctypes.c_int32.from_address(self.addr + offset).value

    def u64(self, offset: int) -> int:
        return ctypes.c_uint64.from_address(self.addr + offset).value

    def set_i32(self, offset: int, value: int) -> None:
        ctypes.c_int32.from_address(self.addr + offset).value = value

    def restore(self) -> None:
        """Write the (patched) buffer back into the CPU."""
        self.uc.context_restore(self.ctx)


@lru_cache(maxsize=1)
def check() -> Offsets:
    """Prove the offsets with a probe guest; raise EmuError if this Unicorn build differs."""
    if unicorn.__version__ != UNICORN_VERSION:
        raise EmuError(f"emu needs unicorn=={UNICORN_VERSION} (found {unicorn.__version__}): its internals are pinned")
    o = OFFSETS
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    seen: list[tuple[int, int, int, int]] = []
    raw = RawContext(uc)

    def on_intr(uc_, intno, _user):
        raw.refresh()
        seen.append((intno, raw.u32(o.error_code), raw.u32(o.is_soft_int), raw.i32(o.old_exception)))
        raw.set_i32(o.old_exception, -1)
        raw.restore()
        uc_.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_intr)
    # 1. protected mode, mov ds, ax with a selector past the GDT limit: #GP(selector & ~3)
    gdt = b"\0" * 8 + bytes.fromhex("ffff0000009acf00") + bytes.fromhex("ffff00000092cf00")
    uc.mem_write(0x800, gdt)
    uc.reg_write(UC_X86_REG_GDTR, (0, 0x800, len(gdt) - 1, 0))
    uc.reg_write(UC_X86_REG_CR0, 0x11)
    uc.reg_write(UC_X86_REG_CS, 0x08)
    uc.reg_write(UC_X86_REG_SS, 0x10)
    uc.mem_write(0x1000, b"\x8e\xd8\xf4")
    uc.reg_write(UC_X86_REG_EAX, 0x1234)
    uc.reg_write(UC_X86_REG_ESP, 0x8000)
    uc.emu_start(0x1000, 0x1003)
    # 2. a software int 0x0d
    uc.mem_write(0x1100, b"\xcd\x0d\xf4")
    uc.emu_start(0x1100, 0x1103)
    # 3. sti then a stop: the shadow bit is set after sti
    uc.mem_write(0x1200, b"\xfb\x90\xf4")
    uc.emu_start(0x1200, 0, count=1)
    raw.refresh()
    shadow = raw.u32(o.hflags) & HF_INHIBIT_IRQ
    uc.reg_write(UC_X86_REG_CR3, 0x5000)
    raw.refresh()
    cr3 = raw.u32(o.cr3)
    code32 = raw.u32(o.cs_flags) >> 22 & 1 and raw.u64(o.cs_base) == 0
    # 4. general registers, EIP and the selectors where the register snapshot reads them
    values = [0x11111111 * (i + 1) for i in range(8)]
    for regid, value in zip(_GPR_IDS, values):
        uc.reg_write(regid, value)
    uc.reg_write(UC_X86_REG_EIP, 0x1234)
    raw.refresh()
    layout = ([raw.u32(o.regs + 8 * i) for i in range(8)] == values and raw.u32(o.eip) == 0x1234
              and raw.u32(o.segs + 24) == 0x08 and raw.u32(o.segs + 48) == 0x10)
    ok = (
        len(seen) == 2
        and seen[0][0] == 13 and seen[0][1] == 0x1234 and seen[0][2] == 0
        and seen[1][0] == 13 and seen[1][2] == 1
        and seen[1][3] == -1
        and shadow
        and cr3 == 0x5000
        and code32
        and layout
        and len(bytes(raw.ctx)) == o.size
    )
    if not ok:
        raise EmuError(f"this unicorn build's CPU context layout differs from the one emu was written for "
                       f"(probe saw {seen}, shadow={shadow}, cr3={cr3:#x}); emu needs unicorn=={UNICORN_VERSION}")
    return o
