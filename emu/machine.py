"""One guest: RAM + vCPU + clock + port bus + devices + disks, wired like QEMU's ``pc`` machine.

The run loop (``Machine.run``) alternates Unicorn runs and Python work: it
never lets the vCPU run past the next timer, delivers external interrupts at
instruction boundaries when IF=1 and no STI/MOV-SS shadow blocks them, warps
the clock over HLT, and ends on the debug-exit port, a shutdown, or the
instruction budget.
"""
from __future__ import annotations

import enum
import sys
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from emu.boot import multiboot
from emu.clock import Clock, ClockSpec
from emu.cpu import decode, interrupts
from emu.cpu.interrupts import Event, EventKind
from emu.cpu.vcpu import EFLAGS_IF, Stop, Vcpu
from emu.devices.bus import PortBus
from emu.devices.debugport import DebugConsole, DebugExit
from emu.vmx.controls import PrimaryControls, RdtscpAction, rdtscp_action
from emu.vmx.cpuid import cpuid as cpuid_model
from emu.vmx.monitor import Decision, Inject, Monitor, Outcome
from emu.vmx.qualification import ActivityState, InterruptionType
from emu.vmx.reasons import ExitReason

if TYPE_CHECKING:
    from emu.net.config import GuestNetwork, NicConfig

# Flat GDT like QEMU's multiboot option ROM leaves: 0x10 code, 0x18 data.
BOOT_GDT_ADDR = 0x500
BOOT_GDT = bytes(16) + bytes.fromhex("ffff0000009acf00") + bytes.fromhex("ffff00000092cf00")
BOOT_CS, BOOT_DS = 0x10, 0x18
ENTRY_EFLAGS = 0x6
ENTRY_CR0 = 0x11



HYPERCALL_REGISTER_WIP = 1
"""Leaf 1: EBX = guest-physical address of the guest's write-in-progress word (0 unregisters)."""
HYPERCALL_ENOSYS = -38
HYPERCALL_EPERM = -1
HYPERCALL_EFAULT = -14


def _register_wip(machine: "Machine") -> int:
    """Hypercall leaf 1: remember where the guest keeps its write-in-progress word."""
    addr = machine.cpu.reg("ebx")
    if addr == 0:
        machine.wip_addr = None
        return 0
    if not machine.cpu.contains(addr, 4) or addr & 3:
        return HYPERCALL_EFAULT
    machine.wip_addr = addr
    return 0


class EndReason(enum.Enum):
    """How a run ended."""

    DEBUG_EXIT = "debug-exit"
    SHUTDOWN = "shutdown"
    MAX_INSNS = "max-insns"
    HALTED = "halted"
    IDLE = "idle"              # halted waiting for an interrupt; the host may run other guests (resumable)
    STOPPED = "stopped"


EXIT_STATUS_MAX_INSNS = 124


@dataclass
class RunResult:
    """Outcome of :meth:`Machine.run`."""

    reason: EndReason
    status: int
    message: str
    icount: int


@dataclass
class MachineConfig:
    """What a Machine is built from."""

    kernel: Optional[str] = None
    kernel_name: Optional[str] = None
    """How the kernel is named on its multiboot command line (QEMU puts the -kernel argument there as given);
    default: the path."""
    cmdline: str = ""
    mem_mib: int = 32
    disks: list = field(default_factory=list)
    disks_read_only: bool = False
    clock: ClockSpec = field(default_factory=ClockSpec)
    name: str = "guest"
    nic: Optional["NicConfig"] = None
    """An NE2000 on the machine's own switch (emu.net.config; `emu run --nic`); None = no network card."""


class Machine:
    """A PC: vCPU, RAM, clock, port bus and devices."""

    def __init__(self, config: MachineConfig = MachineConfig(), console: Optional[Callable[[int], None]] = None):
        self.config = config
        self.name = config.name
        self.cpu = Vcpu(config.mem_mib)
        self.clock = Clock(config.clock, lambda: self.cpu.vtime)
        self.clock.on_schedule = self.cpu.lower_deadline
        self.bus = PortBus()
        self.console_bytes = bytearray()
        self.console_icounts: Optional[list[int]] = None
        self._console_sink = console or _stdout_byte
        self.debugcon = DebugConsole(self._on_console)
        self.debug_exit = DebugExit(self._on_debug_exit)
        self.devices: dict[str, object] = {}
        self.boot_info: Optional[multiboot.BootInfo] = None
        self._closers: list[Callable[[], None]] = []
        for dev in (self.debugcon, self.debug_exit):
            self.add_device(dev)
        self.end: Optional[RunResult] = None
        self.cpu.on_in = self._in
        self._pending: Optional[tuple[Event, Optional[int]]] = None
        self.cpu.on_out = self._out
        self.cpu.on_interrupt = self._on_cpu_exception
        self.cpu.on_invalid = self._on_invalid
        self.cpu.on_privileged = self._on_privileged
        self.cpu.on_rdtsc = self._rdtsc
        self.cpu.on_cpuid = self._cpuid
        self._window_steps = 0
        self.halted = False
        self._hlt_shadow = None        # STI/MOV-SS blocking in effect at the HLT (HLT itself clears QEMU's flag)
        self._in_hlt = False           # the guest waits in HLT: an interrupt exit reports activity HLT
        self.hypercalls: dict[int, Callable[["Machine"], int]] = {HYPERCALL_REGISTER_WIP: _register_wip}
        self.revoked_hypercalls: set[int] = set()
        self.wip_addr: Optional[int] = None
        """Guest-physical address of the guest's write-in-progress word (hypercall leaf 1), if registered."""
        self.vmx = Monitor(self)
        """VT-x-like controls, exit handlers and observers (emu.vmx.monitor)."""
        self._pending_action: Optional[Callable[[], None]] = None
        self.entered = False
        """True when the work of the current instruction boundary (``enter``) is done and the vCPU has not run since."""
        self.break_before: Optional[Callable[[int], bool]] = None
        """A debugger's code breakpoints: True for a linear address where the run will stop before the instruction
        (its exit or window handling then waits until the instruction really runs)."""
        self._exit_stop = False
        from emu import platform
        self.platform = platform.build(self, list(config.disks), config.disks_read_only)
        self.pic = self.platform.pic
        if config.kernel:
            self.load_kernel(config.kernel, config.cmdline, config.kernel_name)
        self.network: Optional["GuestNetwork"] = None
        """The card, switch, peer and capture of ``config.nic`` (emu.net.config.build_network)."""
        if config.nic is not None:
            from emu.net.config import build_network
            self.network = build_network(self, config.nic)

    # --- wiring -----------------------------------------------------------
    def add_device(self, dev) -> None:
        """Register a device and map its declared ports (``dev.PORTS``)."""
        self.devices[dev.name] = dev
        for base, count in getattr(dev, "PORTS", ()):
            self.bus.map(base, count, dev.io_read, dev.io_write, dev.name)

    def _in(self, port: int, size: int) -> int:
        cpu = self.cpu
        if not cpu.io_permitted(port, size):
            self._fault_at_io(interrupts.GP, 0)
            return cpu.reg("eax") & ((1 << (8 * size)) - 1)  # the IN completes: leave EAX as it was
        if self.vmx.io_exits(port, size):
            outcome = self._io_exit()
            if outcome is not None and outcome is not Decision.EMULATE and outcome is not Decision.STOP:
                return getattr(outcome, "in_data", cpu.reg("eax")) & ((1 << (8 * size)) - 1)  # completed/skipped/event
        return self.bus.read(port, size)

    def request_exit_stop(self) -> None:
        """From an exit observer (a debugger's ``break-exit``): end the run right after the exit being reported, as a
        handler's Decision.STOP would; the handler's own decision still applies. ``advance`` returns STOPPED."""
        self._exit_stop = True

    def _exit(self, record) -> Outcome:
        """``vmx.exit`` plus ``request_exit_stop``: a default decision becomes STOP; after SKIP or an injection the
        run stops at the next stop check (right after an I/O instruction, else the next block boundary)."""
        outcome = self.vmx.exit(record)
        if self._exit_stop:
            if outcome is None or outcome is Decision.EMULATE:
                return Decision.STOP
            self.cpu.request_stop_after_element("vmexit")
        return outcome

    def _io_exit(self) -> Outcome:
        """An I/O instruction VM exit (reason 30): the guest is suspended while observers and the handler run."""
        cpu = self.cpu
        site = cpu.io_site
        vmx = self.vmx
        if site is None:
            return None
        if not vmx.observers and ExitReason.IO_INSTRUCTION not in vmx.handlers:
            vmx.counts["IO_INSTRUCTION"] += 1     # nobody looks: the default handler (the device) needs no record
            return None
        record = vmx.instruction_exit(site.pc, site.icount, ExitReason.IO_INSTRUCTION, code=site.code,
                                      saved_context=True)     # io_permitted saved it in this hook
        outcome = self._exit(record)
        if isinstance(outcome, Inject):
            self._inject_at_io(outcome, record.insn_len)
        elif outcome is Decision.STOP:
            if record.decoded.direction.name == "IN":
                cpu.request_stop_after_element("vmexit")
            else:
                cpu.request_stop("vmexit")
        return outcome

    def _site_exit(self, reason: ExitReason) -> Outcome:
        """An exit for the instruction an instruction hook runs for (CPUID, RDTSC)."""
        site = self.cpu.io_site
        if site is None:
            return None
        record = self.vmx.instruction_exit(site.pc, site.icount, reason, code=site.code)
        outcome = self._exit(record)
        if isinstance(outcome, Inject):
            self._inject_at_io(outcome, record.insn_len)
        elif outcome is Decision.STOP:
            self.cpu.request_stop("vmexit")
        return outcome

    def _cpuid(self) -> bool:
        """CPUID always exits (SDM §26.1.2); the default handler answers from the documented model."""
        outcome = self._site_exit(ExitReason.CPUID)
        if outcome is None or outcome is Decision.EMULATE or outcome is Decision.STOP:
            cpu = self.cpu
            values = cpuid_model(cpu.reg("eax"), cpu.reg("ecx"))
            for name, value in zip(("eax", "ebx", "ecx", "edx"), values):
                cpu.set_reg(name, value)
        return True

    def _rdtsc(self) -> int:
        """The virtual TSC; an exit first when RDTSC exiting is on (a SKIP leaves EDX:EAX as they were)."""
        if self.vmx.rdtsc_exits:
            outcome = self._site_exit(ExitReason.RDTSC)
            if outcome is Decision.SKIP or isinstance(outcome, Inject):
                cpu = self.cpu
                return cpu.reg("edx") << 32 | cpu.reg("eax")
        return self.vmx.msrs.tsc()

    def _fault_at_io(self, vector: int, error_code: Optional[int]) -> None:
        """Raise a fault at the I/O instruction a hook runs for (delivered once the run stops)."""
        self._event_at_io(lambda rip: Event(vector, EventKind.HARDWARE_EXCEPTION, error_code, rip))

    def _inject_at_io(self, outcome: Inject, insn_len: int) -> None:
        """A handler's injection at the instruction an I/O/CPUID/RDTSC hook runs for (delivered once the run stops)."""
        self._event_at_io(lambda rip: _injected(outcome, rip, insn_len))

    def _event_at_io(self, make: Callable[[int], Event]) -> None:
        """Stop the run and deliver ``make(EIP of the hooked instruction)`` there, at its exact count."""
        cpu = self.cpu
        site = cpu.io_site
        if site is None:
            cpu.triple_fault("I/O fault at an instruction emu could not locate")
            return
        cs_base = cpu.context().u64(cpu.offsets.cs_base)
        self._pending = (make((site.pc - cs_base) & 0xFFFFFFFF), site.icount)
        cpu.request_stop("event")

    def _on_privileged(self, cpu: Vcpu, pc: int, length: int, mnemonic: str) -> None:
        """Privileged instructions at CPL > 0 raise #GP(0) (SDM Vol. 3A §5.9); Unicorn does not check.

        STI/POPF/IRET while an interrupt waits: stop before it, run it (and the STI shadow) exactly,
        then deliver: the interrupt window opens at the precise instruction.
        """
        if self.break_before is not None and self.break_before(pc & 0xFFFFFFFF):
            return  # a debugger breakpoint stops the run before this instruction: handled when it really runs
        if mnemonic in decode.WINDOW_OPENERS:
            if self.pic.intr or self.vmx.interrupt_window_exits:
                self._window_steps = 2 if mnemonic == "sti" else 1
                cpu.skip_hook_at = pc
                cpu.request_stop("window")
            return
        if mnemonic == "rdtscp":
            self._rdtscp(pc)
            return
        if mnemonic == "hlt" and self.vmx.hlt_exits:
            self._hlt_shadow = self.vmx.interruptibility()   # HLT clears QEMU's inhibit flag: keep it for the exit
        if cpu.protected and cpu.cpl > 0 and mnemonic != "hlt":
            self._pending = (Event(interrupts.GP, EventKind.HARDWARE_EXCEPTION, 0, cpu.reg("eip")), None)
            cpu.request_stop("event")
            return
        if mnemonic in ("rdmsr", "wrmsr"):
            self._msr_exit(pc, mnemonic == "wrmsr")
        elif mnemonic == "invlpg" and self.vmx.invlpg_exits:
            self._native_exit(pc, ExitReason.INVLPG)
        elif mnemonic == "mov dr":
            if self.vmx.controls.primary & PrimaryControls.MOV_DR:
                self._native_exit(pc, ExitReason.DR_ACCESS)
        elif mnemonic in ("mov", "clts", "lmsw") and (self.vmx.listening or self.vmx.handlers):
            self._cr_exit(pc)

    def _rdtscp(self, pc: int) -> None:
        """RDTSCP, never run natively (Unicorn would read host time and skip its RDTSC hook): #UD unless the
        monitor enables RDTSCP, else an exit (reason 51) when RDTSC exiting is on, then EDX:EAX = the virtual
        TSC and ECX = IA32_TSC_AUX, 0 here: this CPU model has no TSC_AUX MSR (SDM §26.1.3, §26.3)."""
        cpu = self.cpu
        action = rdtscp_action(self.vmx.controls)
        if action is RdtscpAction.UD:
            self._pending = (Event(interrupts.UD, EventKind.HARDWARE_EXCEPTION, None, cpu.reg("eip")), None)
            cpu.request_stop("event")
            return
        outcome = None
        if action is RdtscpAction.EXIT:
            outcome = self._exit(self.vmx.instruction_exit(pc, cpu.exact_icount_at(pc), ExitReason.RDTSCP))

        def emulate() -> None:
            tsc = self.vmx.msrs.tsc() & 0xFFFFFFFFFFFFFFFF
            cpu.set_reg("eax", tsc & 0xFFFFFFFF)
            cpu.set_reg("edx", tsc >> 32)
            cpu.set_reg("ecx", 0)
            cpu.set_reg("eip", cpu.reg("eip") + 3)
            cpu.st.count += 1
        self._apply_before(pc, outcome, emulate)

    def _native_exit(self, pc: int, reason: ExitReason) -> None:
        """An exit whose default emulation is the instruction itself (Unicorn executes it after the hook)."""
        outcome = self._exit(self.vmx.instruction_exit(pc, self.cpu.exact_icount_at(pc), reason))
        self._apply_before(pc, outcome, None)

    def _cr_exit(self, pc: int) -> None:
        """MOV CR / CLTS / LMSW: an exit when the controls say so (CR3-load/store exiting, CR0/CR4 masks)."""
        from emu.vmx.controls import cr_access_exits
        cpu = self.cpu
        record = self.vmx.instruction_exit(pc, cpu.exact_icount_at(pc), ExitReason.CR_ACCESS)
        q = record.decoded
        if q is None:
            return
        value = None
        if q.access_type.name == "MOV_TO_CR":
            value = cpu.reg(("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")[q.register])
        if not cr_access_exits(self.vmx.controls, q, value):
            return
        self._apply_before(pc, self._exit(record), None)

    def _msr_exit(self, pc: int, write: bool) -> None:
        """RDMSR/WRMSR: an exit unless the MSR bitmap says no; the default handler uses the MSR file."""
        cpu = self.cpu
        msr = cpu.reg("ecx")

        def emulate() -> None:
            if write:
                result = self.vmx.msrs.write(msr, cpu.reg("edx") << 32 | cpu.reg("eax"))
            else:
                result = self.vmx.msrs.read(msr)
            if not result.ok:
                self.deliver(Event(interrupts.GP, EventKind.HARDWARE_EXCEPTION, 0, cpu.reg("eip")))
                return
            if not write:
                cpu.set_reg("eax", result.eax)
                cpu.set_reg("edx", result.edx)
            cpu.set_reg("eip", cpu.reg("eip") + 2)
            cpu.st.count += 1
        if not self.vmx.msr_exits(msr, write):
            self._apply_before(pc, None, emulate)      # no exit: the same MSRs, read or written without one
            return
        reason = ExitReason.WRMSR if write else ExitReason.RDMSR
        outcome = self._exit(self.vmx.instruction_exit(pc, cpu.exact_icount_at(pc), reason))
        self._apply_before(pc, outcome, emulate)

    def _apply_before(self, pc: int, outcome: Outcome, emulate: Optional[Callable[[], None]]) -> None:
        """Apply a decision taken in a code hook BEFORE the instruction at ``pc``.

        ``emulate`` None means the instruction itself is the emulation (let Unicorn run it)."""
        cpu = self.cpu
        if outcome is None or outcome is Decision.EMULATE or outcome is Decision.STOP:
            if emulate is not None:
                self._pending_action = emulate
                cpu.request_stop("vmexit-emulate")
            elif outcome is Decision.STOP:
                cpu.skip_hook_at = pc
                cpu.request_stop("vmexit")
            return
        if outcome is Decision.SKIP:
            length = self.vmx.history[-1].insn_len

            def skip() -> None:
                cpu.set_reg("eip", cpu.reg("eip") + length)
                cpu.st.count += 1
            self._pending_action = skip
            cpu.request_stop("vmexit-emulate")
        elif isinstance(outcome, Inject):
            record = self.vmx.history[-1]
            self._pending = (_injected(outcome, record.rip, record.insn_len), record.icount)
            cpu.request_stop("event")

    def _out(self, port: int, size: int, value: int) -> None:
        cpu = self.cpu
        if not cpu.io_permitted(port, size):
            self._fault_at_io(interrupts.GP, 0)
            return
        if self.vmx.io_exits(port, size):
            outcome = self._io_exit()
            if outcome is not None and outcome is not Decision.EMULATE and outcome is not Decision.STOP:
                return
            if ExitReason.IO_INSTRUCTION in self.vmx.handlers:   # the handler may have changed AL/AX/EAX or memory
                record = self.vmx.history[-1]
                if record.decoded.string:
                    value = int.from_bytes(cpu.read_virt(record.guest_linear, size), "little")
                else:
                    value = cpu.reg("eax") & ((1 << (8 * size)) - 1)
        self.bus.write(port, size, value)
        if self.end is not None:
            self.cpu.request_stop("end")
        elif self.pic is not None and self.pic.intr and self.cpu.reg("eflags") & EFLAGS_IF:
            self.cpu.request_stop("interrupt")

    def _on_console(self, byte: int) -> None:
        self.console_bytes.append(byte)
        if self.console_icounts is not None:
            self.console_icounts.append(self.cpu.vtime)
        self._console_sink(byte)

    def _on_debug_exit(self, value: int) -> None:
        status = self.debug_exit.status
        self.end = RunResult(EndReason.DEBUG_EXIT, status, f"debug exit {value:#x} (status {status})", 0)

    # --- boot ---------------------------------------------------------------
    def load_kernel(self, path: str | Path, cmdline: str = "", name: Optional[str] = None) -> multiboot.BootInfo:
        """Load a multiboot kernel and set the entry state QEMU's ``-kernel`` leaves."""
        cpu = self.cpu
        kernel = multiboot.parse(path, cpu.mem_size)
        if name is not None:
            kernel.path = name
        for seg in kernel.segments:
            cpu.write_phys(seg.paddr, seg.data + bytes(seg.memsz - len(seg.data)))
        mbi_addr, page, line = multiboot.build_info(kernel, cpu.mem_size, cmdline)
        cpu.write_phys(mbi_addr, page)
        cpu.write_phys(BOOT_GDT_ADDR, BOOT_GDT)
        from unicorn import x86_const as X
        cpu.uc.reg_write(X.UC_X86_REG_GDTR, (0, BOOT_GDT_ADDR, len(BOOT_GDT) - 1, 0))
        cpu.uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0x3FF, 0))
        cpu.set_reg("cr0", ENTRY_CR0)
        cpu.set_reg("cr4", 0)
        cpu.set_reg("cs", BOOT_CS)
        for seg in ("ss", "ds", "es", "fs", "gs"):
            cpu.set_reg(seg, BOOT_DS)
        cpu.set_reg("eflags", ENTRY_EFLAGS)
        for reg in ("ecx", "edx", "esi", "edi", "ebp", "esp"):
            cpu.set_reg(reg, 0)
        cpu.set_reg("eax", multiboot.BOOTLOADER_MAGIC)
        cpu.set_reg("ebx", mbi_addr)
        cpu.set_reg("eip", kernel.entry)
        self.boot_info = multiboot.BootInfo(kernel.entry, mbi_addr, line)
        return self.boot_info

    # --- events from the vCPU ----------------------------------------------
    def _on_cpu_exception(self, cpu: Vcpu, intno: int) -> None:
        cpu.sync_icount()
        raw = cpu.raw
        off = cpu.offsets
        if raw.u32(off.is_soft_int):
            eip = cpu.reg("eip")
            opcode = cpu.read_virt(cpu.linear_pc() - 1, 1)[0] if intno in (3, 4) else 0
            if opcode in (0xCC, 0xCE):
                event = Event(intno, EventKind.SOFTWARE_EXCEPTION, None, eip, eip - 1)
            else:
                event = Event(intno, EventKind.SOFTWARE_INTERRUPT, None, eip, eip - 2)
        else:
            error = raw.u32(off.error_code) if intno in interrupts.HAS_ERROR_CODE else None
            event = Event(intno, EventKind.HARDWARE_EXCEPTION, error, cpu.reg("eip"))
        self.deliver(event)

    def _on_invalid(self, cpu: Vcpu) -> bool:
        """#UD-class instructions: VMCALL is the hypercall; everything else raises #UD."""
        cpu.sync_icount()
        pc = cpu.linear_pc()
        try:
            code = cpu.read_virt(pc, 3)
        except Exception:
            code = b""
        if code == b"\x0f\x01\xc1":
            outcome = self._exit(self.vmx.instruction_exit(pc, cpu.icount, ExitReason.VMCALL))
            if isinstance(outcome, Inject):
                self.deliver(_injected(outcome, cpu.reg("eip"), 3))
                return True
            if outcome is not Decision.SKIP:
                self.vmcall()
            if outcome is Decision.STOP:
                cpu.request_stop("vmexit")
            cpu.set_reg("eip", cpu.reg("eip") + 3)
            cpu.st.count += 1
            return True
        self.deliver(Event(interrupts.UD, EventKind.HARDWARE_EXCEPTION, None, cpu.reg("eip")))
        return True

    def vmcall(self) -> bool:
        """Handle a hypercall (EAX = leaf); True when handled (result in EAX)."""
        leaf = self.cpu.reg("eax")
        handler = self.hypercalls.get(leaf)
        if leaf in self.revoked_hypercalls:
            result = HYPERCALL_EPERM
        else:
            result = handler(self) if handler else HYPERCALL_ENOSYS
        self.cpu.set_reg("eax", result & 0xFFFFFFFF)
        return True

    def deliver(self, event: Event) -> None:
        """Deliver an interrupt or exception to the guest; a triple fault shuts it down.

        Every exception — raised by Unicorn, by emu's own checks (#UD, #GP at CPL > 0, I/O and MSR #GP) or
        by the delivery itself (#NP, #GP, #DF) — first exits when the exception bitmap selects it; an event
        a handler injects does not exit again (SDM Vol. 3C §25.2, §27.6)."""
        if not event.injected:
            event = self._exception_exit(event)
            if event is None:
                return
        reason = interrupts.deliver(self.cpu, event, intercept=self._exception_exit)
        if reason:
            self.vmx.exit(self.vmx.plain_exit(ExitReason.TRIPLE_FAULT, self.cpu.icount))
            self.cpu.triple_fault(reason)

    def _exception_exit(self, event: Event) -> Optional[Event]:
        """The exception-bitmap exit for ``event`` (reason 0); returns the event to deliver, None to resume.

        SKIP resumes after a software exception (INT3/INTO) without delivering it; Inject replaces the event."""
        kind = event.kind
        if kind is EventKind.EXTERNAL or kind is EventKind.SOFTWARE_INTERRUPT:
            return event
        vmx, cpu = self.vmx, self.cpu
        itype = InterruptionType(int(kind))
        if not vmx.exception_exits(event.vector, event.error_code, itype):
            return event
        rip = event.insn_eip if event.insn_eip is not None else event.return_eip
        if rip is None:
            rip = cpu.reg("eip")
        insn_len = (event.return_eip - event.insn_eip) if event.insn_eip is not None else 0
        record = vmx.event_exit(event.vector, itype, event.error_code, cpu.icount - (1 if insn_len else 0), rip,
                                insn_len, cpu.reg("cr2") if event.vector == interrupts.PF else 0)
        outcome = self._exit(record)
        if outcome is Decision.STOP:
            cpu.request_stop("vmexit")
        elif outcome is Decision.SKIP and kind is EventKind.SOFTWARE_EXCEPTION:
            return None
        elif isinstance(outcome, Inject):
            return _injected(outcome, rip, insn_len)
        return event

    # --- the run loop ----------------------------------------------------------
    def _interrupt_window_open(self) -> bool:
        cpu = self.cpu
        return bool(cpu.reg("eflags") & EFLAGS_IF) and not cpu.interrupt_shadow

    def deliver_pending_interrupt(self) -> Optional[int]:
        """Deliver the PIC's interrupt if one is pending and the window is open; returns its vector."""
        if self.pic is None or not self.pic.intr or not self._interrupt_window_open():
            return None
        vector = self.pic.acknowledge()
        activity = ActivityState.HLT if self._in_hlt else ActivityState.ACTIVE
        self._in_hlt = False
        if self.vmx.external_interrupt_exits:
            outcome = self.vmx.exit(self.vmx.event_exit(vector, InterruptionType.EXTERNAL_INTERRUPT, None,
                                                        self.cpu.icount, self.cpu.reg("eip"), activity=activity))
            if isinstance(outcome, Inject):
                self.deliver(Event(outcome.vector, EventKind(int(outcome.kind)), outcome.error_code, None,
                                   injected=True))
                return outcome.vector
        self.deliver(Event(vector, EventKind.EXTERNAL, None, None))
        return vector

    def enter(self) -> Optional[RunResult]:
        """The work at an instruction boundary before the vCPU runs on: a HLT wait carried over, due timers, the
        interrupt-window exit (SDM Vol. 3C §26.7.5), delivery of a pending external interrupt.

        Done once per boundary (``entered``): a debugger calls it after a single step, so the stop shows an
        interrupt handler's first instruction, and the next ``advance`` does not do it again.
        Returns the guest's end, or None.
        """
        cpu = self.cpu
        clock = self.clock
        if self.end is not None:
            return self._finish(self.end.reason, self.end.status, self.end.message)
        if self.entered:
            return None
        if self.halted:
            self.halted = False
            if not self._halt():
                return self._finish(EndReason.HALTED, 0, self._halt_message())
            self._in_hlt = True
        clock.run_due()
        if self.end is not None:
            return self._finish(self.end.reason, self.end.status, self.end.message)
        vmx = self.vmx
        if vmx.interrupt_window_exits and self._interrupt_window_open():
            outcome = vmx.exit(vmx.plain_exit(ExitReason.INTERRUPT_WINDOW, cpu.icount))
            if outcome is None or outcome is Decision.EMULATE:
                # default: the window is open, stop asking (a VMM clears the control when it injects)
                vmx.controls.primary &= ~PrimaryControls.INTERRUPT_WINDOW
        self.deliver_pending_interrupt()
        if cpu.shutdown:
            return self._finish(EndReason.SHUTDOWN, 0, cpu.shutdown.reason)
        self.entered = True
        return None

    def advance(self, deadline: Optional[int] = None, yield_on_halt: bool = False) -> Optional[RunResult]:
        """One turn of the run loop: due timers, a pending interrupt, one vCPU run up to the earlier of
        ``deadline`` (virtual time) and the next timer, the hand-off of a fault raised in a hook, HLT.

        Returns the guest's end (or EndReason.IDLE when ``yield_on_halt`` and the guest waits in HLT, or
        EndReason.STOPPED after a handler's STOP or ``request_exit_stop``); None when the guest can go on.
        """
        cpu = self.cpu
        clock = self.clock
        vmx = self.vmx
        self._exit_stop = False
        result = self.enter()
        if result is not None:
            return result
        if self._exit_stop:
            return self._exit_stopped()
        self.entered = False
        target = clock.next_deadline()
        if target is None:
            target = 1 << 62
        if deadline is not None:
            target = min(target, deadline)
        if self._window_steps:
            target = min(target, cpu.vtime + self._window_steps)
            self._window_steps = 0
        elif (self.pic.intr or vmx.interrupt_window_exits) and cpu.reg("eflags") & EFLAGS_IF \
                and cpu.interrupt_shadow:
            target = min(target, cpu.vtime + 1)     # the window opens after the shadowed instruction
        mtf = vmx.monitor_trap_flag
        if mtf:
            target = min(target, cpu.vtime + 1)
        before = cpu.icount
        stop = cpu.run(target)
        if self._pending_action is not None:
            action, self._pending_action = self._pending_action, None
            action()
        if self._pending is not None:
            event, icount = self._pending
            self._pending = None
            if icount is not None:
                cpu.st.count = icount
                cpu.set_reg("eip", event.return_eip)
            else:
                event = dataclasses.replace(event, return_eip=cpu.reg("eip"))
            self.deliver(event)
            if cpu.shutdown:
                return self._finish(EndReason.SHUTDOWN, 0, cpu.shutdown.reason)
            return self._exit_stopped()
        if mtf and cpu.icount > before and not cpu.shutdown:
            vmx.exit(vmx.plain_exit(ExitReason.MONITOR_TRAP_FLAG, cpu.icount))
        if stop is Stop.SHUTDOWN:
            return self._finish(EndReason.SHUTDOWN, 0, cpu.shutdown.reason)
        if self.end is not None:
            return self._finish(self.end.reason, self.end.status, self.end.message)
        if stop is Stop.HLT and vmx.hlt_exits:
            record = vmx.instruction_exit((cpu.linear_pc() - 1) & 0xFFFFFFFF, cpu.icount - 1, ExitReason.HLT,
                                          shadow=self._hlt_shadow)
            outcome = self._exit(record)
            if outcome is Decision.SKIP:
                return self._exit_stopped()
            if outcome is Decision.STOP:
                self.halted = True
                return self._finish(EndReason.STOPPED, 0, "stopped at a HLT exit")
        if stop is Stop.HLT:
            if yield_on_halt and cpu.reg("eflags") & EFLAGS_IF and clock.next_deadline() is not None:
                self.halted = True
                return self._finish(EndReason.IDLE, 0, "halted, waiting for an interrupt")
            if not self._halt():
                return self._finish(EndReason.HALTED, 0, self._halt_message())
            self._in_hlt = True
        elif stop is Stop.REQUEST and cpu.stop_request == "vmexit" and not self._exit_stop:
            return self._finish(EndReason.STOPPED, 0, "stopped by a VM-exit handler")
        elif stop is Stop.REQUEST and cpu.stop_request == "unexplained stop":
            return self._finish(EndReason.SHUTDOWN, 0, f"vCPU stopped unexpectedly at {cpu.linear_pc():#x}")
        return self._exit_stopped()

    def _exit_stopped(self) -> Optional[RunResult]:
        """STOPPED when an exit observer asked for a stop during this turn (``request_exit_stop``), else None."""
        if self._exit_stop:
            return self._finish(EndReason.STOPPED, 0, "stopped after a VM exit")
        return None

    def run(self, max_insns: Optional[int] = None, yield_on_halt: bool = False) -> RunResult:
        """Run until the guest exits, shuts down, halts for good, or ``max_insns`` retire.

        ``yield_on_halt``: return (EndReason.IDLE) when the guest executes HLT and waits for an interrupt, so a
        host can run other guests meanwhile (a HLT exit); the next run() continues the wait.
        """
        cpu = self.cpu
        limit = None if max_insns is None else cpu.icount + max_insns
        while True:
            result = self.advance(None if limit is None else limit + cpu.idle, yield_on_halt)
            if result is not None:
                return result
            if limit is not None and cpu.icount >= limit:
                return self._finish(EndReason.MAX_INSNS, EXIT_STATUS_MAX_INSNS,
                                    f"instruction limit reached ({max_insns} instructions)")

    def _halt_message(self) -> str:
        if not self.cpu.reg("eflags") & EFLAGS_IF:
            return "guest halted with interrupts disabled"
        return "guest halted with no interrupt to come"

    def _halt(self) -> bool:
        """HLT: warp virtual time to the next event that can wake the CPU; False if none can."""
        cpu = self.cpu
        clock = self.clock
        while True:
            if self.pic is not None and self.pic.intr and cpu.reg("eflags") & EFLAGS_IF:
                return True
            if self.end is not None:
                return True
            if not cpu.reg("eflags") & EFLAGS_IF:
                return False
            deadline = clock.next_deadline()
            if deadline is None:
                return False
            if deadline > cpu.vtime:
                cpu.idle += deadline - cpu.vtime
            clock.run_due()

    def close(self) -> None:
        """Flush disks and logs (the run is over)."""
        for closer in self._closers:
            closer()
        self._closers.clear()

    def _finish(self, reason: EndReason, status: int, message: str) -> RunResult:
        """The result of this run; the guest's end (all but the budget) is kept in ``self.end``."""
        result = RunResult(reason, status, message, self.cpu.icount)
        if reason not in (EndReason.MAX_INSNS, EndReason.IDLE, EndReason.STOPPED):
            self.end = result
        return result


def _stdout_byte(byte: int) -> None:
    """Write one guest console byte to stdout, unchanged."""
    sys.stdout.buffer.write(bytes((byte,)))


_SOFTWARE_EVENTS = (EventKind.SOFTWARE_INTERRUPT, EventKind.PRIVILEGED_SOFTWARE_EXCEPTION, EventKind.SOFTWARE_EXCEPTION)


def _injected(outcome: Inject, rip: int, insn_len: int) -> Event:
    """The event a handler injects at the instruction at ``rip``: a software interrupt/exception returns after it
    (RIP + VM-entry instruction length = the exit's, SDM Vol. 3C §27.6.1.1), anything else to it."""
    kind = EventKind(int(outcome.kind))
    if kind in _SOFTWARE_EVENTS:
        return Event(outcome.vector, kind, outcome.error_code, (rip + insn_len) & 0xFFFFFFFF, rip, injected=True)
    return Event(outcome.vector, kind, outcome.error_code, rip, injected=True)

