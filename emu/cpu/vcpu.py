"""One virtual CPU: a Unicorn x86 instance, guest RAM, and an exact instruction count.

The count is kept by the C block hook of :mod:`emu.cpu.native`; this module
corrects it whenever a run ends inside a block (an I/O hook that stops, a
fault, a hypercall) by counting the instructions of the last block that did
run, so :attr:`Vcpu.icount` is exact at every stop.  A run never passes its
deadline: it stops before a block that would cross it and then runs the last
few instructions with a one-shot exit address (``ctl_set_exits``).

Virtual time is ``icount + idle``: while the CPU is halted the clock warps to
the next timer (as QEMU's ``-icount`` does), and ``idle`` records the
instructions' worth of time spent halted.
"""
from __future__ import annotations

import ctypes
import enum
import mmap
from dataclasses import dataclass
from typing import Callable, Optional

from unicorn import (UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR,
                     UC_HOOK_MEM_UNMAPPED, UC_MODE_32, UC_PROT_ALL, UC_PROT_READ, UC_PROT_WRITE, Uc, UcError)
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from emu import EmuError
from emu.cpu import decode, internals
from emu.cpu.native import Counter

PAGE = 0x1000
MIB = 1024 * 1024

REGS32 = {
    "eax": X.UC_X86_REG_EAX, "ecx": X.UC_X86_REG_ECX, "edx": X.UC_X86_REG_EDX, "ebx": X.UC_X86_REG_EBX,
    "esp": X.UC_X86_REG_ESP, "ebp": X.UC_X86_REG_EBP, "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI,
    "eip": X.UC_X86_REG_EIP, "eflags": X.UC_X86_REG_EFLAGS,
    "cs": X.UC_X86_REG_CS, "ss": X.UC_X86_REG_SS, "ds": X.UC_X86_REG_DS, "es": X.UC_X86_REG_ES,
    "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS,
    "cr0": X.UC_X86_REG_CR0, "cr2": X.UC_X86_REG_CR2, "cr3": X.UC_X86_REG_CR3, "cr4": X.UC_X86_REG_CR4,
}
GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")

EFLAGS_IF = 1 << 9
HF_PE = 1 << 7
if (internals.OFFSETS.regs, internals.OFFSETS.eip, internals.OFFSETS.segs) != (40, 168, 224):
    raise EmuError("Vcpu.regs() reads the context at word indices that no longer match internals.OFFSETS")
_HFLAGS_WORD = internals.OFFSETS.hflags // 4
_EFLAGS_WORD = internals.OFFSETS.eflags // 4
HF_CS32 = 1 << 4
CR0_PE = 1
CR0_PG = 1 << 31

RDTSC_HOOK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
uclib.uc_vmem_read.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
uclib.uc_vmem_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
uclib.uc_vmem_translate.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64)]


class Shadow(enum.Enum):
    """The source of an interrupt shadow, for the VMX interruptibility state (SDM Vol. 3C Table 25-3)."""

    NONE = "none"
    STI = "sti"
    MOV_SS = "mov ss"


class Stop(enum.Enum):
    """Why :meth:`Vcpu.run` returned (like KVM_RUN's exit reasons)."""

    DEADLINE = "deadline"      # the count reached the requested deadline
    HLT = "hlt"                # the guest executed HLT
    REQUEST = "request"        # a hook asked to stop (see Vcpu.stop_request)
    SHUTDOWN = "shutdown"      # triple fault or an unrecoverable guest error


class GuestMemoryError(Exception):
    """A guest-virtual or guest-physical address that is not mapped."""


@dataclass(frozen=True)
class IoSite:
    """The I/O instruction an IN/OUT hook runs for: linear address, length, exact count before it."""

    pc: int
    length: int
    icount: int
    code: bytes = b""


@dataclass
class Shutdown:
    """Why the guest shut down (triple fault, fetch from unmapped memory, ...)."""

    reason: str


class Vcpu:
    """A Unicorn x86 vCPU with ``mem_mib`` MiB of RAM at physical address 0."""

    def __init__(self, mem_mib: int = 32):
        if not 1 <= mem_mib <= 3072:
            raise EmuError(f"memory size {mem_mib} MiB out of range (1-3072)")
        self.offsets = internals.check()
        self.mem_size = mem_mib * MIB
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.ram = mmap.mmap(-1, self.mem_size)
        self._ram_ptr = ctypes.addressof(ctypes.c_char.from_buffer(self.ram))
        self.uc.mem_map_ptr(0, self.mem_size, UC_PROT_ALL, self._ram_ptr)
        self.ram_view = memoryview(self.ram)
        self.uc.ctl_exits_enabled(True)
        self.uc.ctl_set_exits([])
        self.counter = Counter(self.uc)
        self.st = self.counter.state
        self._stq = memoryview(self.st).cast("B").cast("Q")
        self.raw = internals.RawContext(self.uc)
        self.idle = 0
        self.stop_request: Optional[str] = None
        self.shutdown: Optional[Shutdown] = None
        self._uch = self.uc._uch
        self._regbuf = ctypes.c_uint64()
        self._regbuf_ref = ctypes.byref(self._regbuf)
        self._unassigned: set[int] = set()
        self.io_site: Optional[IoSite] = None
        self.skip_hook_at: Optional[int] = None
        self._exact_target: Optional[int] = None
        self._io_seq = -1
        self._io_ordinal = 0
        self._io_cache: dict[tuple[int, int, int], tuple] = {}
        # Handlers the machine (or the VMX layer) installs.
        self.on_in: Callable[[int, int], int] = lambda port, size: (1 << (8 * size)) - 1
        self.on_out: Callable[[int, int, int], None] = lambda port, size, value: None
        self.on_interrupt: Callable[["Vcpu", int], None] = lambda cpu, intno: None
        self.on_invalid: Callable[["Vcpu"], bool] = lambda cpu: False
        self.uc.hook_add(UC_HOOK_INSN, self._hook_in, None, 1, 0, X.UC_X86_INS_IN)
        self.uc.hook_add(UC_HOOK_INSN, self._hook_out, None, 1, 0, X.UC_X86_INS_OUT)
        self.uc.hook_add(UC_HOOK_INTR, self._hook_intr)
        self.uc.hook_add(UC_HOOK_INSN_INVALID, self._hook_invalid)
        self.uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._hook_unmapped)
        self.shadow_source = Shadow.NONE
        """What set QEMU's one-instruction interrupt inhibit last: STI with IF = 0, MOV SS / POP SS, or an STI
        with IF already 1, which blocks nothing architecturally (SDM Table 25-3) though QEMU still inhibits."""
        self.on_privileged: Callable[["Vcpu", int, int, str], None] = lambda cpu, pc, length, mnemonic: None
        self._stop_checks: dict[int, object] = {}
        self._priv_hooks: dict[int, tuple[int, str]] = {}
        self.counter.on_new_block(self._scan_block)
        self.on_rdtsc: Callable[[], int] = lambda: self.vtime
        self.on_cpuid: Callable[[], bool] = lambda: False
        """CPUID hook: True when it wrote EAX..EDX itself (the native CPUID is skipped)."""
        self.uc.hook_add(UC_HOOK_INSN, self._hook_cpuid, None, 1, 0, X.UC_X86_INS_CPUID)
        self._rdtsc_cb = RDTSC_HOOK(self._hook_rdtsc)
        handle = ctypes.c_size_t()
        err = uclib.uc_hook_add(self._uch, ctypes.byref(handle), UC_HOOK_INSN, self._rdtsc_cb, None,
                                ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(X.UC_X86_INS_RDTSC))
        if err != 0:
            raise EmuError(f"unicorn refused the RDTSC hook (error {err}): RDTSC would read host time")

    # --- registers --------------------------------------------------------
    def reg(self, name: str) -> int:
        """Read a register by its lower-case name (eax … gs, cr0 … cr4)."""
        return self.uc.reg_read(REGS32[name])

    def set_reg(self, name: str, value: int) -> None:
        """Write a register by name."""
        self.uc.reg_write(REGS32[name], value)

    def regs(self, refresh: bool = True) -> dict[str, int]:
        """Snapshot of the general registers, EIP, EFLAGS and segment selectors.

        Read from one saved context (32-bit words: ``regs[]`` from +40, EIP at +168, the selectors from +224
        in steps of 24, in QEMU's order ES CS SS DS FS GS); EFLAGS through Unicorn, which folds in the lazy
        flags.  ``refresh=False`` reuses the context buffer a check saved earlier in the same hook."""
        w = (self.raw.refresh() if refresh else self.raw).u32s
        return {"eax": w[10], "ecx": w[12], "edx": w[14], "ebx": w[16], "esp": w[18], "ebp": w[20], "esi": w[22],
                "edi": w[24], "eip": w[42], "eflags": self.raw_reg(X.UC_X86_REG_EFLAGS),
                "es": w[56], "cs": w[62], "ss": w[68], "ds": w[74], "fs": w[80], "gs": w[86]}

    def raw_reg(self, regid: int) -> int:
        """A 32-bit register through the C API directly (~3x cheaper than the binding's reg_read)."""
        uclib.uc_reg_read(self._uch, regid, self._regbuf_ref)
        return self._regbuf.value & 0xFFFFFFFF

    def descriptor_table(self, name: str) -> tuple[int, int]:
        """(base, limit) of ``gdtr`` or ``idtr``."""
        reg = X.UC_X86_REG_GDTR if name == "gdtr" else X.UC_X86_REG_IDTR
        _sel, base, limit, _flags = self.uc.reg_read(reg)
        return base, limit

    def task_register(self) -> tuple[int, int, int]:
        """(selector, base, limit) of TR."""
        sel, base, limit, _flags = self.uc.reg_read(X.UC_X86_REG_TR)
        return sel, base, limit

    def context(self) -> internals.RawContext:
        """The saved CPU context, refreshed now (hflags, exception info, segment caches)."""
        return self.raw.refresh()

    @property
    def cpl(self) -> int:
        """Current privilege level (from hflags)."""
        return self.context().u32(self.offsets.hflags) & 3

    @property
    def interrupt_shadow(self) -> bool:
        """True for the instruction after STI or MOV SS (interrupts blocked)."""
        return bool(self.context().u32(self.offsets.hflags) & internals.HF_INHIBIT_IRQ)

    @property
    def protected(self) -> bool:
        """CR0.PE."""
        return bool(self.reg("cr0") & CR0_PE)

    def code_bits(self) -> int:
        """16 or 32: the default operand size of the current code segment."""
        return 32 if self.context().u32(self.offsets.hflags) & HF_CS32 else 16  # how QEMU decodes

    def io_permitted(self, port: int, size: int) -> bool:
        """IN/OUT privilege check (SDM Vol. 1 §19.5): CPL <= IOPL, else the TSS I/O permission bitmap."""
        words = self.raw.refresh().u32s
        hflags = words[_HFLAGS_WORD]
        if not hflags & HF_PE or hflags & 3 <= (words[_EFLAGS_WORD] >> 12) & 3:
            return True
        _sel, base, limit = self.task_register()
        try:
            if limit < 0x67:
                return False
            iomap = int.from_bytes(self.read_virt(base + 0x66, 2), "little")
            first, last = port >> 3, (port + size - 1) >> 3
            if iomap + last > limit:
                return False
            bits = int.from_bytes(self.read_virt(base + iomap + first, last - first + 1), "little")
        except GuestMemoryError:
            return False
        mask = ((1 << size) - 1) << (port & 7)
        return not bits & mask

    def linear_pc(self) -> int:
        """CS.base + EIP."""
        return (self.context().u64(self.offsets.cs_base) + self.reg("eip")) & 0xFFFFFFFF

    # --- memory -----------------------------------------------------------
    def read_phys(self, addr: int, size: int) -> bytes:
        """Guest-physical read from RAM."""
        if addr < 0 or addr + size > self.mem_size:
            raise GuestMemoryError(f"physical {addr:#x}+{size} outside RAM")
        return bytes(self.ram_view[addr:addr + size])

    def write_phys(self, addr: int, data: bytes) -> None:
        """Guest-physical write to RAM; translated code over it is dropped."""
        if addr < 0 or addr + len(data) > self.mem_size:
            raise GuestMemoryError(f"physical {addr:#x}+{len(data)} outside RAM")
        self.ram_view[addr:addr + len(data)] = data
        self.uc.ctl_remove_cache(addr, addr + max(len(data), 1))

    def contains(self, addr: int, size: int) -> bool:
        """True when [addr, addr+size) is guest RAM (the DMA view)."""
        return 0 <= addr and addr + size <= self.mem_size

    # The vCPU's RAM is the bus masters' view too (emu.devices.base.GuestMemory).
    read = read_phys
    write = write_phys

    def read_virt(self, addr: int, size: int) -> bytes:
        """Read guest-virtual (linear) memory through the guest's page tables."""
        buf = ctypes.create_string_buffer(size)
        if uclib.uc_vmem_read(self._uch, addr & 0xFFFFFFFF, UC_PROT_READ, buf, size) != 0:
            raise GuestMemoryError(f"linear {addr:#x}+{size} not mapped")
        return buf.raw

    def write_virt(self, addr: int, data: bytes) -> None:
        """Write guest-virtual (linear) memory through the guest's page tables."""
        buf = ctypes.create_string_buffer(data, len(data))
        if uclib.uc_vmem_write(self._uch, addr & 0xFFFFFFFF, UC_PROT_WRITE, buf, len(data)) != 0:
            raise GuestMemoryError(f"linear {addr:#x}+{len(data)} not mapped")

    def translate(self, addr: int) -> int:
        """Guest-linear → guest-physical (identity when paging is off)."""
        out = ctypes.c_uint64()
        if uclib.uc_vmem_translate(self._uch, addr & 0xFFFFFFFF, UC_PROT_READ, ctypes.byref(out)) != 0:
            raise GuestMemoryError(f"linear {addr:#x} not mapped")
        return out.value

    # --- the instruction count -------------------------------------------
    @property
    def icount(self) -> int:
        """Exact number of guest instructions retired (valid between runs and in hooks after sync)."""
        return self.st.count

    @property
    def vtime(self) -> int:
        """Virtual time in instructions: retired plus time spent halted (exact inside I/O hooks too)."""
        hook = self.io_site
        return (hook.icount if hook is not None else self.st.count) + self.idle

    def _block_code(self) -> Optional[bytes]:
        st = self.st
        if not st.block_size:
            return None
        try:
            return self.read_virt(st.block_addr, st.block_size)
        except GuestMemoryError:
            return None

    def exact_icount_at(self, linear_pc: int) -> int:
        """The count with the current block's instructions before ``linear_pc`` retired (hooks use it)."""
        st = self.st
        start = st.block_addr
        if st.block_size and start <= linear_pc <= start + st.block_size:
            code = self._block_code()
            if code is not None:
                return st.block_entry + decode.index_of(code, linear_pc - start, self.code_bits())
        return st.count

    def sync_icount(self) -> int:
        """Make the count exact at the current EIP (the block's rest has not run); returns it."""
        st = self.st
        if st.block_size:
            st.count = self.exact_icount_at(self.linear_pc())
            st.block_size = 0
        return st.count

    # --- scanning new blocks --------------------------------------------------
    def _scan_block(self, addr: int, size: int) -> int:
        """Called from the C block hook for each new block: hook its sensitive instructions.

        Returns 1 when hooks were added: the block is dropped and re-entered so they apply.
        """
        try:
            code = self.read_virt(addr, size)
        except GuestMemoryError:
            return 0
        added = False
        for offset, length, mnemonic, ops in decode.sensitive_sites(code, self.code_bits()):
            pc = (addr + offset) & 0xFFFFFFFF
            if mnemonic in decode.IO_MNEMONICS:
                after = (pc + length) & 0xFFFFFFFF
                if after not in self._stop_checks:
                    self._stop_checks[after] = self.counter.add_stop_check(self.uc, after)
                    self.uc.ctl_remove_cache(after, after + 1)
                    added = True
            elif pc not in self._priv_hooks:
                self._priv_hooks[pc] = (length, decode.watched_name(mnemonic, ops))
                self.uc.hook_add(UC_HOOK_CODE, self._hook_privileged, None, pc, pc)
                added = True
        if added:
            self.uc.ctl_remove_cache(addr, addr + size)
        return 1 if added else 0

    def add_stop_check_range(self, begin: int, end: int):
        """Make ``request_stop`` take effect before any instruction in [begin, end] (a C code hook; the debugger's
        watchpoints use it).  Returns the hook handle for ``uc.hook_del``; translated code is dropped."""
        handle = self.counter.add_stop_check(self.uc, begin, end)
        self.flush_code()
        return handle.value

    def _hook_privileged(self, uc, address, size, _user):
        length, mnemonic = self._priv_hooks.get(address & 0xFFFFFFFF, (size, "?"))
        if self.skip_hook_at == address:
            self.skip_hook_at = None  # resuming at the instruction a hook stopped before
            return
        if self._exact_target is not None and self.exact_icount_at(address) >= self._exact_target:
            return  # the run ends before this instruction (its deadline): it is handled when it really runs
        if mnemonic == "sti":
            self.shadow_source = Shadow.STI if not self.raw_reg(X.UC_X86_REG_EFLAGS) & EFLAGS_IF else Shadow.NONE
        elif mnemonic == "mov ss":
            self.shadow_source = Shadow.MOV_SS
            return
        try:
            self.on_privileged(self, address, length, mnemonic)
        except Exception as exc:
            self._hook_error = exc
            self.request_stop("error")

    # --- hooks ------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Ask the current run to end after this instruction (from a hook)."""
        self.stop_request = reason
        self.st.pending_stop = 1
        self.uc.emu_stop()

    def request_stop_after_element(self, reason: str) -> None:
        """From an IN hook: end the run after this instruction, or after this element of a REP INS (the next
        iteration is a new block entry, where the C hook stops).  ``uc.emu_stop`` inside INS would make Unicorn
        roll the element back and read the device twice."""
        self.stop_request = reason
        self.st.pending_stop = 1
        self.st.stop_flag = 1

    def _locate_io(self) -> Optional[IoSite]:
        """The IN/OUT instruction a hook runs for: the k-th I/O instruction of the current block.

        Unicorn does not sync EIP before its I/O hooks, so the site is found from the block the
        C counter entered last and how many I/O hooks already ran in this execution of it.
        """
        q = self._stq   # the C state as 64-bit words: see native.IcountState
        blocks = q[6]
        if blocks != self._io_seq:
            self._io_seq = blocks
            self._io_ordinal = 0
        else:
            self._io_ordinal += 1
        size_icount = q[4]
        if not size_icount & 0xFFFFFFFF:
            return None
        st = self.st
        key = (q[2], size_icount)
        sites = self._io_cache.get(key)
        if sites is None:
            code = self._block_code()
            sites = tuple((off, idx, ln, code[off:off + ln])
                          for off, idx, ln in decode.io_sites(code, self.code_bits())) if code else ()
            if len(self._io_cache) > 65536:
                self._io_cache.clear()
            self._io_cache[key] = sites
        if self._io_ordinal >= len(sites):
            return None
        offset, index, length, code = sites[self._io_ordinal]
        return IoSite((key[0] + offset) & 0xFFFFFFFF, length, q[3] + index, code)

    def _hook_rdtsc(self, _uc, _user) -> int:
        """RDTSC reads the virtual TSC (a function of the exact count), never host time."""
        self.io_site = self._locate_io()
        try:
            tsc = self.on_rdtsc() & 0xFFFFFFFFFFFFFFFF
            self.uc.reg_write(X.UC_X86_REG_EAX, tsc & 0xFFFFFFFF)
            self.uc.reg_write(X.UC_X86_REG_EDX, tsc >> 32)
        except Exception as exc:
            self._hook_error = exc
            self.request_stop("error")
        finally:
            self.io_site = None
        return 1

    def _hook_cpuid(self, _uc, _user) -> int:
        self.io_site = self._locate_io()
        try:
            return 1 if self.on_cpuid() else 0
        except Exception as exc:
            self._hook_error = exc
            self.request_stop("error")
            return 1
        finally:
            self.io_site = None

    def _hook_in(self, uc, port, size, _user):
        self.io_site = self._locate_io()
        try:
            return self.on_in(port, size)
        except Exception as exc:  # a device bug must not leave garbage in EAX silently
            self._hook_error = exc
            self.request_stop("error")
            return 0
        finally:
            self.io_site = None

    def _hook_out(self, uc, port, size, value, _user):
        self.io_site = self._locate_io()
        try:
            self.on_out(port, size, value)
        except Exception as exc:
            self._hook_error = exc
            self.request_stop("error")
        finally:
            self.io_site = None

    def _hook_intr(self, uc, intno, _user):
        raw = self.raw.refresh()
        raw.set_i32(self.offsets.old_exception, -1)
        raw.restore()
        try:
            self.on_interrupt(self, intno)
        except Exception as exc:
            self._hook_error = exc
            self.request_stop("error")
        self._after_redirect()

    def _hook_invalid(self, uc, _user):
        try:
            return bool(self.on_invalid(self))
        except Exception as exc:
            self._hook_error = exc
            self.request_stop("error")
            return True
        finally:
            self._after_redirect()

    def _after_redirect(self) -> None:
        """Control left the block an exact finish was running in (an event was delivered): end that run
        so the normal deadline takes over again from the new EIP."""
        if self._exact_target is not None:
            self.st.deadline = self._exact_target
            if not self.stop_request:
                self.request_stop("redirect")

    def _hook_unmapped(self, uc, access, address, size, value, _user):
        # Unassigned physical memory: reads give all-ones and writes are dropped (a PC bus).
        if access == 20 or access == 21:  # UC_MEM_FETCH_UNMAPPED / UC_MEM_FETCH_PROT never map code
            return False
        page = address & ~(PAGE - 1)
        if page >= 0x1_0000_0000 or len(self._unassigned) > 4096:
            return False
        self._unassigned.add(page)
        self.uc.mmio_map(page, PAGE, lambda *_: 0xFFFFFFFF, None, lambda *_: None, None)
        return True

    # --- running ----------------------------------------------------------
    def run(self, deadline: int) -> Stop:
        """Run until virtual time ``deadline`` (in instructions), a HLT, a stop request or shutdown."""
        st = self.st
        self.stop_request = None
        self._hook_error: Optional[BaseException] = None
        target = deadline - self.idle
        if st.count >= target:
            return Stop.DEADLINE
        st.deadline = target
        while True:
            st.deadline_hit = 0
            st.rescan = 0
            st.pending_stop = 0
            st.stop_flag = 0
            st.block_size = 0
            start = self.linear_pc()
            try:
                self.uc.emu_start(start, 0)
            except UcError as exc:
                self.sync_icount()
                return self._fatal(f"{exc} at {self.linear_pc():#010x}")
            if not st.rescan or self.stop_request or self._hook_error is not None:
                break
        if self._hook_error is not None:
            raise self._hook_error
        if self.shutdown is not None:
            return Stop.SHUTDOWN
        if st.deadline_hit:
            if self.stop_request:
                return Stop.REQUEST
            target = st.deadline  # a device may have lowered it during the run (lower_deadline)
            if st.count < target:
                return self._finish_exact(target)
            return Stop.DEADLINE
        self.sync_icount()
        if self.stop_request:
            return Stop.REQUEST
        if self._after_hlt():
            return Stop.HLT
        self.stop_request = "unexplained stop"
        return Stop.REQUEST

    def lower_deadline(self, vtime: int) -> None:
        """A timer was scheduled for ``vtime`` during a run: stop there if that is before the run's deadline.

        The block hook reads the deadline at every block entry, so the current run honours it.
        """
        target = vtime - self.idle
        if target < self.st.deadline:
            self.st.deadline = max(target, self.st.count)

    def _after_hlt(self) -> bool:
        try:
            return self.read_virt(self.linear_pc() - 1, 1) == b"\xf4"
        except GuestMemoryError:
            return False

    def _finish_exact(self, target: int) -> Stop:
        """Run the last ``target - count`` (< one block) instructions with a one-shot exit."""
        st = self.st
        pc = self.linear_pc()
        # (ctl_request_cache must not be used here: a block it translates is not dropped by
        # ctl_remove_cache, and the one-shot hook below would never fire.)
        n = target - st.count
        bits = self.code_bits()
        starts: tuple[int, ...] = ()
        for span in (256, 1024, 4096 + 16, 8192 + 16):   # a block may span up to 512 instructions / a page
            code = b""
            for size in (span, (PAGE - (pc & (PAGE - 1))) or PAGE, 16):
                try:
                    code = self.read_virt(pc, min(size, span))
                    break
                except GuestMemoryError:
                    continue
            if not code:
                break
            starts = decode.offsets(code, bits)
            if n < len(starts) - 1 or len(code) < span:
                break
        if n >= len(starts):
            return self._overshoot(target)
        exit_at = (pc + starts[n]) & 0xFFFFFFFF
        # A one-shot code hook at the n-th instruction stops the run before it (Unicorn honours a
        # stop from a code hook immediately); the block is retranslated with it, and again after.
        hook = self.uc.hook_add(UC_HOOK_CODE, self._hook_exact_stop, None, exit_at, exit_at)
        self.uc.ctl_remove_cache(pc, exit_at + 1)
        st.deadline = (1 << 64) - 1
        st.deadline_hit = 0
        st.stop_flag = 0
        st.block_size = 0
        self._exact_target = target
        try:
            self.uc.emu_start(pc, 0)
        except UcError as exc:
            self.sync_icount()
            return self._fatal(f"{exc} at {self.linear_pc():#010x}")
        finally:
            self._exact_target = None
            self.uc.hook_del(hook)
            self.uc.ctl_remove_cache(pc, exit_at + 1)
            st.deadline = target
        if self._hook_error is not None:
            raise self._hook_error
        if self.shutdown is not None:
            return Stop.SHUTDOWN
        self.sync_icount()
        if self.stop_request:
            return Stop.REQUEST
        return Stop.DEADLINE

    def _overshoot(self, target: int) -> Stop:
        """Last resort when the block's instructions cannot be decoded: let it run whole (never hang)."""
        st = self.st
        st.deadline = st.count + 512          # QEMU's largest block
        st.deadline_hit = 0
        st.block_size = 0
        try:
            self.uc.emu_start(self.linear_pc(), 0)
        except UcError as exc:
            self.sync_icount()
            return self._fatal(f"{exc} at {self.linear_pc():#010x}")
        finally:
            st.deadline = target
        if self._hook_error is not None:
            raise self._hook_error
        if self.shutdown is not None:
            return Stop.SHUTDOWN
        if not st.deadline_hit:
            self.sync_icount()
        return Stop.REQUEST if self.stop_request else Stop.DEADLINE

    def _hook_exact_stop(self, uc, address, size, _user):
        uc.emu_stop()

    def _fatal(self, reason: str) -> Stop:
        self.shutdown = Shutdown(reason)
        return Stop.SHUTDOWN

    def triple_fault(self, reason: str = "triple fault") -> None:
        """Shut the guest down (from a hook); the run ends."""
        self.shutdown = Shutdown(reason)
        self.uc.emu_stop()

    def flush_code(self) -> None:
        """Drop all translated code (after the host rewrote guest code)."""
        self.uc.ctl_flush_tb()
        self.counter.flush()

