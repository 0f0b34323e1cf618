"""A tiny simulated x86 CPU implementing DebugTarget, for testing the gdb stub without the emulator.

It decodes a handful of real i386 encodings (so gdb's disassembly agrees) from a flat bytearray:
``90`` nop, ``40+r`` inc r32, ``eb rel8`` jmp short, ``a3 moffs32`` mov [moffs32], eax,
``a1 moffs32`` mov eax, [moffs32], ``e6 imm8`` out imm8, al, ``cc`` int3, ``f4`` hlt (ends the
guest with exit status AL). Anything else stops with SIGILL. Threads are guests sharing memory.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Mapping, Optional

from emu.debug.monitor import MonitorDispatcher, MonitorError, parse_options
from emu.debug.target import (SIGILL, BreakKind, MemoryAccessError, RegisterAccessError, ResumeAction,
                              ResumeKind, StopEvent, StopKind, StopReason)

GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
WRITABLE = set(GPRS) | {"eip", "eflags", "cs", "ss", "ds", "es", "fs", "gs"}


@dataclass
class FakeCpu:
    """One guest's registers and its count of executed instructions."""

    regs: dict[str, int]
    icount: int = 0


@dataclass
class FakeTarget:
    """DebugTarget over ``memory`` (guest-virtual = offset, no paging) with ``len(entries)`` guests."""

    entries: list[int] = field(default_factory=lambda: [0x1000])
    mem_size: int = 0x10000
    max_steps: int = 50_000_000
    memory: bytearray = field(init=False)
    cpus: dict[int, FakeCpu] = field(init=False)
    breakpoints: set[tuple[BreakKind, int, int]] = field(init=False, default_factory=set)
    supported: set[BreakKind] = field(init=False, default_factory=lambda: set(BreakKind))
    calls: list[str] = field(init=False, default_factory=list)
    killed: bool = field(init=False, default=False)
    running: threading.Event = field(init=False, default_factory=threading.Event)
    _interrupt: threading.Event = field(init=False, default_factory=threading.Event)
    port_writes: list[tuple[int, int]] = field(init=False, default_factory=list)
    break_ports: set[int] = field(init=False, default_factory=set)
    exited: Optional[int] = field(init=False, default=None)
    budget_exhausted: bool = field(init=False, default=False)
    spinning: threading.Event = field(init=False, default_factory=threading.Event)
    """Set when guest 1 executes ``jmp $`` (eb fe) inside a continue: the moment to break in."""

    def __post_init__(self) -> None:
        self.memory = bytearray(self.mem_size)
        self.cpus = {}
        for tid, entry in enumerate(self.entries, start=1):
            regs = {name: 0 for name in WRITABLE}
            regs.update(eip=entry, esp=0x8000 - 0x100 * tid, eflags=0x2, cs=0x8, ss=0x10, ds=0x10, es=0x10,
                        fs=0x10, gs=0x10)
            self.cpus[tid] = FakeCpu(regs)
        self.commands = MonitorDispatcher()
        self.commands.add("icount", "icount", "instructions executed by each guest", self._mon_icount)
        self.commands.add("break-exit", "break-exit IO_INSTRUCTION port=P", "stop when the guest writes port P",
                          self._mon_break_exit)
        self.commands.add("info ports", "info ports", "the port writes so far", self._mon_info_ports)

    def load(self, addr: int, code: bytes) -> None:
        """Place bytes in memory (test setup)."""
        self.memory[addr:addr + len(code)] = code

    # -- DebugTarget --------------------------------------------------------------------------------
    def threads(self) -> list[int]:
        return sorted(self.cpus)

    def thread_name(self, tid: int) -> str:
        return f"guest {tid} fake"

    def read_registers(self, tid: int) -> dict[str, int]:
        self.calls.append(f"read_registers {tid}")
        return dict(self.cpus[tid].regs)

    def write_register(self, tid: int, name: str, value: int) -> None:
        self.calls.append(f"write_register {tid} {name} {value:#x}")
        if name not in WRITABLE:
            raise RegisterAccessError(f"{name} is read-only here")
        self.cpus[tid].regs[name] = value

    def _check(self, addr: int, size: int) -> None:
        if addr < 0 or size < 0 or addr + size > len(self.memory):
            raise MemoryAccessError(f"{addr:#x}+{size} outside memory")

    def read_memory(self, tid: int, addr: int, size: int) -> bytes:
        self._check(addr, size)
        return bytes(self.memory[addr:addr + size])

    def write_memory(self, tid: int, addr: int, data: bytes) -> None:
        self._check(addr, len(data))
        self.memory[addr:addr + len(data)] = data

    def insert_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool:
        self.calls.append(f"insert {kind.name} {addr:#x} {length}")
        if kind not in self.supported:
            return False
        self.breakpoints.add((kind, addr, length))
        return True

    def remove_breakpoint(self, kind: BreakKind, addr: int, length: int) -> bool:
        self.calls.append(f"remove {kind.name} {addr:#x} {length}")
        if kind not in self.supported:
            return False
        self.breakpoints.discard((kind, addr, length))
        return True

    def interrupt(self) -> None:
        self._interrupt.set()

    def monitor(self, command: str) -> str:
        self.calls.append(f"monitor {command}")
        return self.commands.dispatch(command)

    def kill(self) -> None:
        self.killed = True

    def resume(self, actions: Mapping[int, ResumeAction]) -> StopEvent:
        self.calls.append("resume " + " ".join(f"{t}:{a.kind.value}" for t, a in sorted(actions.items())))
        if self.exited is not None:
            return StopEvent.exited(self.exited)
        stepping = [t for t, a in actions.items() if a.kind is ResumeKind.STEP]
        order = sorted(actions)
        first = set(order)  # a thread's first instruction of this resume ignores a breakpoint at EIP
        self.running.set()
        try:
            for n in range(self.max_steps):
                if self._interrupt.is_set():
                    self._interrupt.clear()
                    return StopEvent.interrupted(stepping[0] if stepping else order[0])
                for tid in order:
                    if tid not in first:
                        hit = self._break_at(self.cpus[tid].regs["eip"])
                        if hit is not None:
                            return StopEvent.trap(tid, hit, self.cpus[tid].regs["eip"])
                    first.discard(tid)
                    ev = self._execute(tid)
                    if ev is not None:
                        return ev
                if stepping:
                    return StopEvent.trap(stepping[0])
            self.budget_exhausted = True  # a runaway guest stops like an interrupt (tests check the flag)
            return StopEvent.interrupted(stepping[0] if stepping else order[0])
        finally:
            self.running.clear()

    # -- the tiny CPU ---------------------------------------------------------------------------------
    def _break_at(self, eip: int) -> Optional[StopReason]:
        for kind, addr, _ in self.breakpoints:
            if addr == eip and kind is BreakKind.SOFTWARE:
                return StopReason.SWBREAK
            if addr == eip and kind is BreakKind.HARDWARE:
                return StopReason.HWBREAK
        return None

    def _watch(self, tid: int, addr: int, size: int, write: bool) -> Optional[StopEvent]:
        for kind, waddr, wlen in sorted(self.breakpoints):
            if addr < waddr + wlen and waddr < addr + size:
                if kind is BreakKind.WRITE and write:
                    return StopEvent.trap(tid, StopReason.WATCH, waddr)
                if kind is BreakKind.READ and not write:
                    return StopEvent.trap(tid, StopReason.RWATCH, waddr)
                if kind is BreakKind.ACCESS:
                    return StopEvent.trap(tid, StopReason.AWATCH, waddr)
        return None

    def _fetch(self, addr: int, size: int) -> bytes:
        return self.read_memory(0, addr, size)

    def _execute(self, tid: int) -> Optional[StopEvent]:
        cpu = self.cpus[tid]
        r = cpu.regs
        eip = r["eip"]
        try:
            op = self._fetch(eip, 1)[0]
            cpu.icount += 1
            if op == 0x90:
                r["eip"] = eip + 1
            elif 0x40 <= op <= 0x47:
                name = GPRS[op - 0x40]
                r[name] = (r[name] + 1) & 0xFFFFFFFF
                r["eip"] = eip + 1
            elif op == 0xEB:
                rel = int.from_bytes(self._fetch(eip + 1, 1), "little", signed=True)
                if rel == -2 and tid == 1:
                    self.spinning.set()
                r["eip"] = (eip + 2 + rel) & 0xFFFFFFFF
            elif op in (0xA1, 0xA3):
                addr = int.from_bytes(self._fetch(eip + 1, 4), "little")
                if op == 0xA3:
                    self.write_memory(tid, addr, r["eax"].to_bytes(4, "little"))
                else:
                    r["eax"] = int.from_bytes(self.read_memory(tid, addr, 4), "little")
                r["eip"] = eip + 5
                return self._watch(tid, addr, 4, op == 0xA3)
            elif op == 0xE6:
                port = self._fetch(eip + 1, 1)[0]
                self.port_writes.append((port, r["eax"] & 0xFF))
                r["eip"] = eip + 2
                if port in self.break_ports:
                    return StopEvent.trap(tid, info=f"exit IO_INSTRUCTION port={port:#x}")
            elif op == 0xCC:
                r["eip"] = eip + 1
                return StopEvent.trap(tid)
            elif op == 0xF4:
                r["eip"] = eip + 1
                self.exited = r["eax"] & 0xFF
                return StopEvent.exited(self.exited, tid)
            else:
                cpu.icount -= 1
                return StopEvent(StopKind.SIGNAL, SIGILL, tid)
        except MemoryAccessError:
            return StopEvent(StopKind.SIGNAL, 11, tid)
        return None

    # -- monitor commands -----------------------------------------------------------------------------
    def _mon_icount(self, args: list[str]) -> str:
        return "\n".join(f"guest {t}: {c.icount}" for t, c in sorted(self.cpus.items()))

    def _mon_break_exit(self, args: list[str]) -> str:
        if not args or args[0] != "IO_INSTRUCTION":
            raise MonitorError("only IO_INSTRUCTION exits exist here")
        opts = parse_options(args[1:], ["port"])
        if "port" not in opts:
            raise MonitorError("port=P is required")
        self.break_ports.add(opts["port"])
        return f"will stop on IO_INSTRUCTION port={opts['port']:#x}"

    def _mon_info_ports(self, args: list[str]) -> str:
        return "\n".join(f"port {p:#04x} <- {v:#04x}" for p, v in self.port_writes) or "no port writes"
