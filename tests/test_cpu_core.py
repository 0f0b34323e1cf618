"""vCPU core: deterministic RDTSC, exact counts at hooks, deadlines inside blocks (raw machine code)."""
from __future__ import annotations

from emu.cpu.vcpu import Stop, Vcpu


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
