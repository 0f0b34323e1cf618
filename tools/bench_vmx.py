#!/usr/bin/env python3
"""I/O exit cost (issue 3): exits per second for an I/O-bound guest loop and the µs of one OUT exit round trip.

The guest code (written into RAM after booting hello.elf to its entry state) is
    mov ecx, N ; l: out 0x80, al ; dec ecx ; jnz l ; out 0xf4, al
run three ways in one process (timed in this process's CPU time, so other load on the host does not skew it): bare Unicorn (no hooks at all: OUT is a no-op), emu without I/O exiting
(the port bus path), and emu with unconditional I/O exiting and an observer (a full SDM VmExit record per
OUT); with I/O exiting but no observer the exit goes straight to the default handler (the device).  The round trip is (time with exits − time of bare Unicorn) / N.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc  # noqa: E402
from unicorn import x86_const as X  # noqa: E402

from emu.machine import Machine, MachineConfig  # noqa: E402
from emu.vmx.controls import PrimaryControls  # noqa: E402
from tools.benchlib import bare_insn_rate  # noqa: E402

N = 20_000
LOOP_AT = 0x200000


def code(n: int) -> bytes:
    return b"\xb9" + n.to_bytes(4, "little") + b"\xe6\x80" + b"\x49" + b"\x75\xfb" + b"\xe6\xf4"


def machine(exits: bool, observer: bool = True) -> Machine:
    m = Machine(MachineConfig(kernel=str(ROOT / "firmware" / "build" / "hello.elf")), console=lambda b: None)
    m.cpu.write_phys(LOOP_AT, code(N))
    m.cpu.set_reg("eip", LOOP_AT)
    if exits:
        m.vmx.controls.primary |= PrimaryControls.UNCONDITIONAL_IO
        if observer:
            m.vmx.observers.append(lambda record: None)
    return m


def timed_emu(exits: bool, observer: bool = True) -> float:
    m = machine(exits, observer)
    t = time.process_time()
    result = m.run()
    dt = time.process_time() - t
    assert result.reason.value == "debug-exit", result
    return dt


def timed_bare() -> float:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 4 << 20)
    uc.mem_write(LOOP_AT, code(N))
    t = time.process_time()
    uc.emu_start(LOOP_AT, LOOP_AT + len(code(N)))
    return time.process_time() - t


def main() -> int:
    bare = min(timed_bare() for _ in range(3))
    bus = min(timed_emu(False) for _ in range(3))
    exits = min(timed_emu(True) for _ in range(3))
    bare_exits = min(timed_emu(True, observer=False) for _ in range(3))
    per_insn = 1 / bare_insn_rate()
    print(f"{N} OUT instructions to port 0x80; a bare Unicorn instruction takes {per_insn * 1e9:.2f} ns this run "
          f"(register loop, no hooks): costs below are also given in those units")
    print(f"bare Unicorn (no hooks):        {bare * 1e3:8.1f} ms")
    print(f"emu, port bus (no I/O exiting): {bus * 1e3:8.1f} ms  {(bus - bare) / N * 1e6:6.2f} µs per OUT")
    print(f"emu, I/O exit, device handler:  {bare_exits * 1e3:8.1f} ms  {(bare_exits - bare) / N * 1e6:6.2f} µs per OUT exit "
          f"round trip (no observer: no record needed) = {(bare_exits - bare) / N / per_insn:,.0f} bare instructions")
    print(f"emu, I/O exit + VmExit record:  {exits * 1e3:8.1f} ms  {(exits - bare) / N * 1e6:6.2f} µs per OUT exit "
          f"round trip, {N / exits:,.0f} exits/s (goal < 10 µs) = {(exits - bare) / N / per_insn:,.0f} bare instructions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
