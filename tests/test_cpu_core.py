"""vCPU core: deterministic RDTSC, exact counts at hooks, deadlines inside blocks (raw machine code)."""
from __future__ import annotations

import pytest

from emu.cpu.vcpu import Stop, Vcpu
from tests.conftest import FIRMWARE


def _cpu(code: bytes) -> Vcpu:
    cpu = Vcpu(4)
    cpu.write_phys(0x1000, code)
    cpu.set_reg("eip", 0x1000)
    return cpu


def test_rdtsc_reads_virtual_time_at_the_exact_instruction():
    # rdtsc; mov esi,eax; nop x5; rdtsc; hlt
    cpu = _cpu(bytes.fromhex("0f31" "89c6" "9090909090" "0f31" "f4"))
    cpu.on_rdtsc = lambda: cpu.vtime * 3 + (7 << 32)
    assert cpu.run(10**9) is Stop.HLT
    assert cpu.reg("esi") == 0            # first RDTSC: nothing retired before it
    assert cpu.reg("eax") == 7 * 3        # second: after rdtsc, mov and five nops
    assert cpu.reg("edx") == 7
    assert cpu.icount == 9


def test_io_hook_sees_the_exact_count_and_site():
    # nop; nop; out 0x80,al; nop; in al,0x80; hlt
    cpu = _cpu(bytes.fromhex("9090" "e680" "90" "e480" "f4"))
    seen = []
    cpu.on_out = lambda port, size, value: seen.append(("out", cpu.io_site.pc, cpu.io_site.length, cpu.vtime))
    cpu.on_in = lambda port, size: seen.append(("in", cpu.io_site.pc, cpu.io_site.length, cpu.vtime)) or 0x5A
    assert cpu.run(10**9) is Stop.HLT
    assert seen == [("out", 0x1004 - 2, 2, 2), ("in", 0x1007 - 2, 2, 4)]
    assert cpu.reg("eax") & 0xFF == 0x5A
    assert cpu.icount == 6


def test_deadline_inside_a_block_stops_exactly():
    # mov ecx,1000; l: add eax,1; add ebx,2; dec ecx; jnz l; hlt
    code = bytes.fromhex("b9e8030000" "83c001" "83c302" "49" "75f7" "f4")
    for n in (1, 2, 3, 4, 5, 6, 999, 4001):
        cpu = _cpu(code)
        assert cpu.run(n) is Stop.DEADLINE
        assert cpu.icount == n
        loops_done = (n - 1) // 4
        part = (n - 1) % 4
        assert cpu.reg("eax") == loops_done + (1 if part >= 1 else 0)
        assert cpu.reg("ebx") == 2 * (loops_done + (1 if part >= 2 else 0))


def test_stop_requested_by_an_io_hook_takes_effect_after_the_instruction():
    # out 0x80,al; inc eax; inc eax; hlt  — the hook stops: the incs must not run yet
    cpu = _cpu(bytes.fromhex("e680" "40" "40" "f4"))
    cpu.on_out = lambda port, size, value: cpu.request_stop("test")
    assert cpu.run(10**9) is Stop.REQUEST
    assert cpu.reg("eip") == 0x1002 and cpu.icount == 1 and cpu.reg("eax") == 0
    cpu.on_out = lambda port, size, value: None
    assert cpu.run(10**9) is Stop.HLT
    assert cpu.reg("eax") == 2 and cpu.icount == 4


def test_register_snapshot_matches_register_reads():
    from emu.machine import Machine, MachineConfig
    from conftest import FIRMWARE
    m = Machine(MachineConfig(kernel=str(FIRMWARE / "cpu_events.elf")), console=lambda b: None)
    for budget in (1, 500, 7000, 15000):
        m.run(max_insns=budget)
        snap = m.cpu.regs()
        assert snap == {name: m.cpu.reg(name) for name in snap}


def test_deadline_deep_inside_a_long_block():
    """A block of 300 five-byte instructions (1500 bytes): budgets land on any of them."""
    code = b"\x05\x78\x56\x34\x12" * 300 + b"\xf4"   # add eax, 0x12345678 … ; hlt
    for n in (1, 60, 299, 300):
        cpu = _cpu(code)
        assert cpu.run(n) is Stop.DEADLINE
        assert cpu.icount == n and cpu.reg("eip") == 0x1000 + 5 * n
        assert cpu.reg("eax") == (0x12345678 * n) & 0xFFFFFFFF


@pytest.mark.parametrize("field, wrong", [("hflags", 220), ("regs", 48), ("eip", 172), ("segs", 232), ("cr3", 492)])
def test_a_moved_unicorn_internal_stops_emu_run_with_one_line(monkeypatch, capsys, field, wrong):
    """If this Unicorn build kept a CPU-state field elsewhere, the start-up probe refuses to run (status 2, one
    line) instead of reading garbage: simulated by moving one offset the probe proves."""
    import dataclasses

    from emu import cli
    from emu.cpu import internals
    monkeypatch.setattr(internals, "OFFSETS", dataclasses.replace(internals.OFFSETS, **{field: wrong}))
    internals.check.cache_clear()
    try:
        status = cli.main(["run", str(FIRMWARE / "hello.elf")])
    finally:
        internals.check.cache_clear()
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("emu: this unicorn build's CPU context layout differs") and "unicorn==2.1.4" in err


def test_real_mode_interrupts_and_exceptions_go_through_the_ivt():
    """Real mode (CR0.PE = 0): INT n and #DE vector through the IVT at linear 0 (FLAGS, CS, IP pushed; IRET
    pops them); #DE returns to the faulting DIV, so its handler skips it. The count excludes the faulting DIV."""
    from emu.machine import Machine, MachineConfig
    m = Machine(MachineConfig(kernel=str(FIRMWARE / "hello.elf")), console=lambda b: None)
    cpu = m.cpu
    cpu.write_phys(0x21 * 4, bytes.fromhex("0071" "0000"))                  # IVT[0x21] = 0000:7100
    cpu.write_phys(0, bytes.fromhex("0072" "0000"))                         # IVT[0]    = 0000:7200
    cpu.write_phys(0x7100, bytes.fromhex("bb3412" "cf"))                    # mov bx,0x1234; iret
    cpu.write_phys(0x7200, bytes.fromhex("58" "83c002" "50" "ba7856" "cf"))  # pop ax; add ax,2; push ax; mov dx,..; iret
    cpu.write_phys(0x7000, bytes.fromhex("cd21" "89d9" "31c0" "f6f0" "89d0" "e6f4"))
    #                                    int 0x21; mov cx,bx; xor ax,ax; div al; mov ax,dx; out 0xf4,al
    cpu.set_reg("cr0", 0)
    for seg in ("cs", "ds", "es", "ss"):
        cpu.set_reg(seg, 0)
    cpu.set_reg("esp", 0x6000)
    cpu.set_reg("eip", 0x7000)
    result = m.run(max_insns=1000)
    assert not cpu.protected and result.status == (0x78 << 1) | 1
    assert (cpu.reg("ecx"), cpu.reg("edx"), cpu.reg("esp")) == (0x1234, 0x5678, 0x6000)
    assert cpu.read_phys(0x6000 - 6, 4) == bytes.fromhex("0870" "0000")   # #DE frame: the DIV's IP 0x7006 + 2, CS 0
    assert result.icount == 12
