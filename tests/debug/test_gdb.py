"""Real gdb (batch mode) against the stub serving the fake target over loopback: the transcript is asserted."""
from __future__ import annotations

import re

import pytest

from emu.debug.gdbstub import SessionEnd
from emu.debug.targetxml import REGISTERS
from tests.conftest import require_tool
from tests.debug.fake_target import FakeTarget
from tests.debug.gdbrun import run_gdb

pytestmark = pytest.mark.gdb

# 0x1000 nop; inc eax; inc ebx; mov eax,[0x2004]; inc eax; mov [0x2000],eax; out 0x80,al; jmp $
PROGRAM = bytes.fromhex("90 40 43 a1 04 20 00 00 40 a3 00 20 00 00 e6 80 eb fe".replace(" ", ""))
# guest 2 loops without ever reaching `jmp $`: inc ecx; jmp back
PROGRAM2 = bytes.fromhex("41 eb fd".replace(" ", ""))


def _target() -> FakeTarget:
    t = FakeTarget(entries=[0x1000, 0x1100])
    t.load(0x1000, PROGRAM)
    t.load(0x1100, PROGRAM2)
    t.load(0x2004, (0x1234).to_bytes(4, "little"))
    return t


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def _index(lines: list[str], pattern: str, start: int = 0) -> int:
    """Position of the first line at or after ``start`` matching ``pattern`` (regex, whole line)."""
    for i in range(start, len(lines)):
        if re.fullmatch(pattern, lines[i]):
            return i
    raise AssertionError(f"no line matching {pattern!r} after line {start} in:\n" + "\n".join(lines))


def test_gdb_session_transcript() -> None:
    """Connect, registers, memory, breakpoint, stepi, register write, watchpoint, monitor, break-in, threads, detach."""
    require_tool("gdb")
    t = _target()
    run = run_gdb(t, [
        "info registers",
        "x/16xb 0x1000",
        "break *0x1008",
        "continue",
        "stepi",
        "p/x $eip",
        "x/i $pc",
        "p/x $eax",
        "set $eax = 0x41",
        "watch *(int*)0x2000",
        "continue",
        "delete",
        "monitor break-exit IO_INSTRUCTION port=0x80",
        "continue",
        "p/x $eip",
        "monitor info ports",
        "monitor help",
        "info threads",
        "continue",
        "p/x $eip",
        "detach",
    ], break_in=lambda: t.spinning.wait(30))
    out = _lines(run.stdout)
    assert run.returncode == 0, run.transcript
    assert run.session is SessionEnd.DETACHED
    assert run.announce.startswith("emu: gdb stub listening on 127.0.0.1:")
    # connected and stopped at the entry point
    i = _index(out, r"0x00001000 in \?\? \(\)")
    # info registers: every core register, as the fake set them
    expected = {"eax": "0x0", "ecx": "0x0", "esp": "0x7f00", "eip": "0x1000", "eflags": r"0x2\s+\[ \]",
                "cs": "0x8", "ss": "0x10", "gs": "0x10"}
    for name, value in expected.items():
        _index(out, rf"{name}\s+{value}(\s.*)?", i)
    # x/16xb
    i = _index(out, r"0x1000:\s+0x90\s+0x40\s+0x43\s+0xa1\s+0x04\s+0x20\s+0x00\s+0x00", i)
    i = _index(out, r"0x1008:\s+0x40\s+0xa3\s+0x00\s+0x20\s+0x00\s+0x00\s+0xe6\s+0x80", i)
    # breakpoint, continue to it (gdb shows the thread that hit it)
    i = _index(out, r"Breakpoint 1 at 0x1008", i)
    i = _index(out, r"Thread 1 hit Breakpoint 1, 0x00001008 in \?\? \(\)", i)
    # stepi: exactly one instruction (inc eax, 1 byte)
    i = _index(out, r"0x00001009 in \?\? \(\)", i)
    i = _index(out, r"\$1 = 0x1009", i)
    i = _index(out, r"=> 0x1009:\s+mov\s+%eax,0x2000", i)
    i = _index(out, r"\$2 = 0x1235", i)  # 0x1234 loaded from [0x2004], plus the stepped inc
    # the register write takes effect: the watched store writes 0x41, not 0x1235
    i = _index(out, r"Hardware watchpoint 2: \*\(int\*\)0x2000", i)
    i = _index(out, r"Thread 1 hit Hardware watchpoint 2: \*\(int\*\)0x2000", i)
    i = _index(out, r"Old value = 0", i)
    i = _index(out, r"New value = 65", i)
    i = _index(out, r"0x0000100e in \?\? \(\)", i)
    assert t.memory[0x2000:0x2004] == (0x41).to_bytes(4, "little")
    # monitor break-exit: the out instruction stops the guest with SIGTRAP
    i = _index(out, r"Thread 1 received signal SIGTRAP, Trace/breakpoint trap\.", i)
    i = _index(out, r"\$3 = 0x1010", i)
    # info threads lists both guests with the stub's names
    i = _index(out, r"\*\s+1\s+Thread 1 \(guest 1 fake\) 0x00001010 in \?\? \(\)", i)
    i = _index(out, r"\s+2\s+Thread 2 \(guest 2 fake\) 0x0000110[0-3] in \?\? \(\)", i)
    # break in while the guest spins at `jmp $`
    i = _index(out, r"Thread 1 received signal SIGINT, Interrupt\.", i)
    i = _index(out, r"\$4 = 0x1010", i)
    i = _index(out, r"\[Inferior 1 \(Remote target\) detached\]", i)
    # monitor output goes to gdb's stderr
    err = run.stderr
    assert "will stop on IO_INSTRUCTION port=0x80" in err
    assert "port 0x80 <- 0x41" in err
    assert re.search(r"^  icount\s+instructions executed by each guest$", err, re.M)
    assert t.breakpoints == set()  # gdb removed them all before detaching
    assert not t.budget_exhausted


def test_gdb_register_layout_matches_target_xml() -> None:
    """gdb's own view of the g packet (maint print remote-registers) equals targetxml.REGISTERS."""
    require_tool("gdb")
    t = _target()
    run = run_gdb(t, ["maint print remote-registers", "p $st0", "p/x $fctrl", "detach"])
    assert run.returncode == 0, run.transcript
    offset = 0
    for number, reg in enumerate(REGISTERS):
        row = re.search(rf"^ {reg.name}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+(\d+)\s+(\d+)$", run.stdout, re.M)
        assert row, f"{reg.name} missing from gdb's register map:\n{run.stdout}"
        nr, _rel, _off, size, rmt_nr, g_offset = (int(x) for x in row.groups())
        assert (nr, size, rmt_nr, g_offset) == (number, reg.size, number, offset)
        offset += reg.size
    assert "$1 = 0" in run.stdout  # FPU registers read as zero
    assert "$2 = 0x0" in run.stdout


def test_gdb_sees_guest_exit_status() -> None:
    """A guest that ends (hlt with AL=3 in the fake) is reported as a W stop: gdb prints the exit code."""
    require_tool("gdb")
    t = FakeTarget()
    t.load(0x1000, bytes.fromhex("404040f4"))
    run = run_gdb(t, ["continue"])
    assert "[Inferior 1 (Remote target) exited with code 03]" in run.stdout, run.transcript
    assert run.session is SessionEnd.EXITED


def test_gdb_kill() -> None:
    """`kill` sends k: the target is killed and the session ends KILLED."""
    require_tool("gdb")
    t = _target()
    run = run_gdb(t, ["stepi", "kill"])
    assert "[Inferior 1 (Remote target) killed]" in run.stdout, run.transcript
    assert t.killed
    assert run.session is SessionEnd.KILLED


def test_gdb_memory_write_and_load() -> None:
    """`set *(char*)` uses X/M; writes with bytes that need escaping ($ # } *) arrive intact."""
    require_tool("gdb")
    t = _target()
    run = run_gdb(t, [
        "set {char[8]}0x3000 = {0x24, 0x23, 0x7d, 0x2a, 0x00, 0x03, 0xff, 0x7e}",
        "x/8xb 0x3000",
        "x/4xb 0xfffe",
        "detach",
    ])
    assert t.memory[0x3000:0x3008] == bytes([0x24, 0x23, 0x7D, 0x2A, 0x00, 0x03, 0xFF, 0x7E])
    assert re.search(r"0x3000:\s+0x24\s+0x23\s+0x7d\s+0x2a\s+0x00\s+0x03\s+0xff\s+0x7e", run.stdout), run.transcript
    # the last readable bytes come back, then gdb reports the unmapped address
    assert re.search(r"0xfffe:\s+0x00\s+0x00", run.stdout), run.transcript
    assert "Cannot access memory at address 0x10000" in run.transcript


ASM = """\
bits 32
global _start, store, spin
section .text
_start: nop
        inc eax
        inc ebx
        mov eax, [0x2004]
        inc eax
store:  mov [0x2000], eax
        out 0x80, al
spin:   jmp spin
"""


def test_gdb_with_symbols(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With the guest's ELF loaded gdb breaks on symbols; the code is the same bytes as PROGRAM."""
    require_tool("gdb", "nasm", "ld")
    import subprocess

    from elftools.elf.elffile import ELFFile

    (tmp_path / "p.asm").write_text(ASM)
    subprocess.run(["nasm", "-f", "elf32", "-o", str(tmp_path / "p.o"), str(tmp_path / "p.asm")], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext", "0x1000", "-e", "_start", "-o", str(tmp_path / "p.elf"),
                    str(tmp_path / "p.o")], check=True)
    with open(tmp_path / "p.elf", "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        code, addr = text.data(), text["sh_addr"]
    assert addr == 0x1000 and code == PROGRAM
    t = _target()
    run = run_gdb(t, ["break store", "continue", "info symbol $pc", "x/2i $pc", "detach"],
                  executable=str(tmp_path / "p.elf"))
    out = _lines(run.stdout)
    i = _index(out, r"Breakpoint 1 at 0x1009")
    i = _index(out, r"Thread 1 hit Breakpoint 1, 0x00001009 in store \(\)", i)
    i = _index(out, r"store in section \.text", i)
    i = _index(out, r"=> 0x1009 <store>:\s+mov\s+%eax,0x2000", i)
    i = _index(out, r"\s+0x100e <store\+5>:\s+out\s+%al,\$0x80", i)
    assert t.cpus[1].regs["eip"] == 0x1009
