"""The exact guest instruction count: deterministic across runs, and equal to Unicorn's own counter.

Reference for exactness: a plain Unicorn instance with NO emu hook, cloned from the same multiboot entry state
(``bare_clone`` in tools/bench_cpu.py), run with ``emu_start(entry, 0, count=N)`` -- Unicorn's built-in
per-instruction counter, which counts every instruction start (each iteration of a REP string instruction too).
That is only a valid reference for code that takes no interrupt delivered by emu: hello.elf and compute.elf
take none (their OUTs to port 0xE9 are no-ops without a hook, and nothing runs after the exit OUT).
``Machine.run(max_insns=N)`` must stop with exactly the registers the reference has after N instructions.
"""
from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

import pytest
from unicorn import x86_const as X

from conftest import FIRMWARE, ROOT
from emu.machine import EndReason, Machine, MachineConfig

_spec = importlib.util.spec_from_file_location("bench_cpu", ROOT / "tools" / "bench_cpu.py")
assert _spec and _spec.loader
bench_cpu = importlib.util.module_from_spec(_spec)
sys.modules["bench_cpu"] = bench_cpu
_spec.loader.exec_module(bench_cpu)

HELLO = FIRMWARE / "hello.elf"
COMPUTE = FIRMWARE / "compute.elf"
CPU_EVENTS = FIRMWARE / "cpu_events.elf"

COMPARED = ("eip", "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eflags")


def machine(kernel: Path) -> Machine:
    """A machine booted at the multiboot entry of ``kernel``, console discarded."""
    return Machine(MachineConfig(kernel=str(kernel)), console=lambda b: None)


@lru_cache(maxsize=None)
def total_instructions(kernel: Path) -> int:
    """Instructions of a whole run, up to and including the exit OUT to port 0xF4 (emu's count)."""
    result = machine(kernel).run()
    assert result.reason is EndReason.DEBUG_EXIT, result.message
    return result.icount


@lru_cache(maxsize=None)
def reference_trace(kernel: Path, budgets: tuple[int, ...]) -> dict[int, dict[str, int]]:
    """Registers after exactly n instructions for each n in ``budgets``, counted by Unicorn itself.

    One hook-free clone runs ``count=`` the gap to each next budget in turn (always count > 0).
    """
    uc = bench_cpu.bare_clone(machine(kernel))
    done, trace = 0, {}
    for n in sorted(set(budgets)):
        uc.emu_start(uc.reg_read(X.UC_X86_REG_EIP), 0, count=n - done)
        done = n
        trace[n] = {name: uc.reg_read(getattr(X, f"UC_X86_REG_{name.upper()}")) for name in COMPARED}
    return trace


def reference_registers(kernel: Path, n: int) -> dict[str, int]:
    """Registers after exactly ``n`` instructions (Unicorn's count on a hook-free clone)."""
    return reference_trace(kernel, (n,))[n]


def emu_registers(m: Machine) -> dict[str, int]:
    return {name: m.cpu.reg(name) for name in COMPARED}


# --- determinism ----------------------------------------------------------------------------------------

def _console_run(kernel: Path) -> tuple[bytes, list[int], int]:
    m = machine(kernel)
    m.console_icounts = []
    result = m.run()
    assert result.reason is EndReason.DEBUG_EXIT, result.message
    return bytes(m.console_bytes), list(m.console_icounts), result.icount


def test_same_kernel_twice_gives_the_same_count_at_every_console_byte() -> None:
    first = _console_run(CPU_EVENTS)
    second = _console_run(CPU_EVENTS)
    data, icounts, total = first
    assert data.endswith(b"cpu_events done\n")
    assert len(icounts) == len(data)
    assert first == second
    # every byte is its own OUT instruction: the counts strictly increase, and all lie within the run
    assert all(a < b for a, b in zip(icounts, icounts[1:]))
    assert 0 < icounts[0] and icounts[-1] < total


def test_console_count_is_the_number_of_instructions_before_the_out() -> None:
    """hello: the count recorded with a console byte equals the Unicorn count of instructions before its OUT."""
    m = machine(HELLO)
    m.console_icounts = []
    m.run()
    first = m.console_icounts[0]
    uc = bench_cpu.bare_clone(machine(HELLO))
    uc.emu_start(uc.reg_read(X.UC_X86_REG_EIP), 0, count=first)
    pc = uc.reg_read(X.UC_X86_REG_EIP)
    opcode = bytes(uc.mem_read(pc, 1))[0]
    assert opcode in (0xE6, 0xEE), f"instruction {first} is not an OUT (opcode {opcode:#x} at {pc:#x})"
    assert uc.reg_read(X.UC_X86_REG_EAX) & 0xFF == m.console_bytes[0]


# --- exactness against Unicorn's counter -----------------------------------------------------------------

def _budgets(kernel: Path) -> tuple[int, ...]:
    """Early budgets (inside the entry code and BSS clear), a million, and the last instructions before the exit."""
    total = total_instructions(kernel)
    early = [1, 2, 3, 17, 1000, 12345, 999_983]
    return tuple(sorted({n for n in early if n < total} | {total - 3, total - 2, total - 1, total}))


@pytest.mark.parametrize("kernel", [HELLO, pytest.param(COMPUTE, marks=pytest.mark.slow)], ids=lambda p: p.stem)
def test_budget_stops_exactly_where_unicorn_counts(kernel: Path) -> None:
    budgets = _budgets(kernel)
    reference = reference_trace(kernel, budgets)
    for n in budgets[:-1]:
        m = machine(kernel)
        result = m.run(max_insns=n)
        assert result.reason is EndReason.MAX_INSNS, (n, result.message)
        assert result.icount == n == m.cpu.icount
        assert emu_registers(m) == reference[n], f"after {n} instructions"


@pytest.mark.parametrize("kernel", [HELLO, COMPUTE], ids=lambda p: p.stem)
def test_whole_run_count_matches_unicorn(kernel: Path) -> None:
    """The debug-exit run's count: Unicorn's count=total ends right after the same exit OUT, same registers."""
    total = total_instructions(kernel)
    m = machine(kernel)
    result = m.run(max_insns=total)
    assert result.reason is EndReason.DEBUG_EXIT and result.icount == total
    assert emu_registers(m) == reference_trace(kernel, _budgets(kernel))[total]


def test_budget_inside_a_rep_string_instruction() -> None:
    """The entry code clears BSS with `rep stosl`: each iteration is one instruction for both counters."""
    m = machine(HELLO)
    m.run(max_insns=1000)
    code = m.cpu.read_phys(m.cpu.reg("eip"), 2)
    assert code == b"\xf3\xab", f"instruction 1000 of hello is not the rep stosl ({code.hex()})"
    ecx_before = m.cpu.reg("ecx")
    reference = reference_registers(HELLO, 1000)
    assert emu_registers(m)["ecx"] == reference["ecx"] == ecx_before
    m2 = machine(HELLO)
    m2.run(max_insns=1001)
    assert m2.cpu.reg("ecx") == ecx_before - 1 == reference_registers(HELLO, 1001)["ecx"]


def test_budget_larger_than_the_run_is_not_reached() -> None:
    total = total_instructions(HELLO)
    result = machine(HELLO).run(max_insns=total + 1)
    assert result.reason is EndReason.DEBUG_EXIT and result.icount == total


def test_a_run_stopped_by_the_budget_resumes() -> None:
    m = machine(HELLO)
    assert m.run(max_insns=1000).icount == 1000
    second = m.run(max_insns=1000)
    assert second.reason is EndReason.MAX_INSNS and second.icount == 2000
    assert emu_registers(m) == reference_registers(HELLO, 2000)


# --- budgets next to console output and to exceptions emu delivers (cpu_events) ---------------------------

@lru_cache(maxsize=None)
def cpu_events_reference() -> tuple[bytes, tuple[int, ...], tuple[tuple[int, int, str], ...]]:
    """cpu_events' whole run: console bytes, the count at each byte, and (count, vector, kind) per delivered event.

    cpu_events never halts (no HLT before its exit), so its virtual time equals its instruction count.
    """
    m = machine(CPU_EVENTS)
    m.console_icounts = []
    events: list[tuple[int, int, str]] = []
    deliver = m.deliver

    def recording_deliver(event) -> None:
        events.append((m.cpu.icount, event.vector, event.kind.name))
        deliver(event)

    m.deliver = recording_deliver  # type: ignore[method-assign]
    result = m.run()
    assert result.reason is EndReason.DEBUG_EXIT and m.cpu.idle == 0
    return bytes(m.console_bytes), tuple(m.console_icounts), tuple(events)


def test_budget_ending_at_a_console_out_prints_exactly_the_bytes_before_it() -> None:
    """Budget c stops before the OUT of a byte recorded at count c; budget c + 1 includes it."""
    data, icounts, _events = cpu_events_reference()
    for c in icounts[::40]:
        for n in (c, c + 1):
            m = machine(CPU_EVENTS)
            result = m.run(max_insns=n)
            assert result.reason is EndReason.MAX_INSNS and result.icount == n
            assert bytes(m.console_bytes) == bytes(b for b, at in zip(data, icounts) if at < n), f"budget {n}"


def _retired(kind: str) -> int:
    """Instructions of the event's own instruction counted at delivery: a fault has not retired, INT n/INT3/INTO has."""
    return 1 if kind.startswith("SOFTWARE") else 0


def test_budgets_just_before_delivered_exceptions_are_exact() -> None:
    """Budgets that end before the instruction that raises the event (it does not run)."""
    _data, _icounts, events = cpu_events_reference()
    assert {vector for _c, vector, _kind in events} >= {0, 3, 4, 6, 13, 14, 48}
    for c, vector, kind in events:
        before = c - _retired(kind)
        for n in (before - 1, before):
            result = machine(CPU_EVENTS).run(max_insns=n)
            assert result.icount == n, f"budget {n} next to vector {vector} ({kind}) at {c}: ran {result.icount}"


def test_budgets_just_after_delivered_exceptions_are_exact() -> None:
    _data, _icounts, events = cpu_events_reference()
    wrong = []
    for c, vector, kind in events:
        before = c - _retired(kind)
        for n in (before + 1, before + 2):
            result = machine(CPU_EVENTS).run(max_insns=n)
            if result.icount != n:
                wrong.append(f"budget {n} after vector {vector} ({kind}) at {c}: ran {result.icount}")
    assert not wrong, "; ".join(wrong)


# --- a run cut into quanta (how a host scheduler runs guests) ----------------------------------------------

@pytest.mark.parametrize("quantum", [1, 7, 1000])
def test_run_in_quanta_equals_one_run(quantum: int) -> None:
    """hello in slices of ``quantum`` instructions: every slice ends exactly where Unicorn's counter says,
    and the whole run gives the same transcript, count and end as one uninterrupted run."""
    total = total_instructions(HELLO)
    whole = machine(HELLO)
    whole_result = whole.run()
    checkpoints = tuple(range(quantum, total, max(quantum, total // 40)))
    reference = reference_trace(HELLO, checkpoints)
    m = machine(HELLO)
    slices = 0
    while True:
        result = m.run(max_insns=quantum)
        slices += 1
        if result.reason is not EndReason.MAX_INSNS:
            break
        assert result.icount == slices * quantum
        if result.icount in reference:
            assert emu_registers(m) == reference[result.icount], f"after {result.icount} instructions"
        assert slices <= total
    assert result.reason is EndReason.DEBUG_EXIT and result.status == 1
    assert result.icount == whole_result.icount == total
    assert m.console_bytes == whole.console_bytes
    assert slices == -(-total // quantum)


def test_cpu_events_in_quanta_equals_one_run() -> None:
    """cpu_events (exceptions, ring 3, INT n) in 997-instruction slices: same transcript and count as one run."""
    data, icounts, _events = cpu_events_reference()
    m = machine(CPU_EVENTS)
    m.console_icounts = []
    while (result := m.run(max_insns=997)).reason is EndReason.MAX_INSNS:
        assert result.icount % 997 == 0
    assert result.reason is EndReason.DEBUG_EXIT
    assert bytes(m.console_bytes) == data and tuple(m.console_icounts) == icounts


def test_cpu_events_single_stepped_equals_one_run() -> None:
    data, icounts, _events = cpu_events_reference()
    m = machine(CPU_EVENTS)
    m.console_icounts = []
    steps = 0
    while (result := m.run(max_insns=1)).reason is EndReason.MAX_INSNS:
        steps += 1
        assert result.icount == steps
    assert result.reason is EndReason.DEBUG_EXIT
    assert bytes(m.console_bytes) == data and tuple(m.console_icounts) == icounts
