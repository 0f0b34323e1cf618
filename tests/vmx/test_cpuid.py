"""The CPUID model: fixed values (SDM Vol. 2A CPUID), and every advertised feature really works in Unicorn."""
from __future__ import annotations

import struct

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
from unicorn import x86_const as X

from emu.vmx.cpuid import cpuid
from emu.vmx.msr import MsrFile


def text(*regs: int) -> bytes:
    return struct.pack("<" + "I" * len(regs), *regs)


def test_vendor_and_max_leaves():
    eax, ebx, ecx, edx = cpuid(0)
    assert eax == 1 and text(ebx, edx, ecx) == b"GenuineIntel"    # vendor order is EBX, EDX, ECX
    assert cpuid(0x80000000)[0] == 0x80000004


def test_leaf1_signature_and_features():
    eax, ebx, ecx, edx = cpuid(1)
    assert (eax >> 8 & 0xF, eax >> 4 & 0xF, eax & 0xF) == (6, 6, 3)  # family 6, model 6, stepping 3
    assert eax == 0x663 and ebx == 0
    # FPU 0, PSE 3, TSC 4, MSR 5, CX8 8, SEP 11, MTRR 12, PGE 13, CMOV 15, PAT 16
    assert edx == sum(1 << b for b in (0, 3, 4, 5, 8, 11, 12, 13, 15, 16)) == 0x0001B939
    assert not edx & (1 << 9)          # no local APIC
    assert not edx & (1 << 23 | 1 << 25 | 1 << 26)   # no MMX / SSE / SSE2
    assert not ecx & (1 << 5)          # VMX is emulated from outside: not reported
    assert ecx == 1 << 31              # hypervisor present


def test_hypervisor_leaf_and_brand():
    eax, ebx, ecx, edx = cpuid(0x40000000)
    assert eax == 0x40000000 and text(ebx, ecx, edx) == b"emuEMUemuEMU"
    brand = b"".join(text(*cpuid(leaf)) for leaf in (0x80000002, 0x80000003, 0x80000004))
    assert len(brand) == 48 and brand.rstrip(b"\0") == b"emu virtual i686 CPU"
    assert cpuid(0x80000001) == (0, 0, 0, 0)


def test_out_of_range_leaves_return_the_highest_basic_leaf_and_subleaf_is_ignored():
    for leaf in (2, 4, 7, 0x40000001, 0x80000005, 0x80000008, 0xFFFFFFFF):
        assert cpuid(leaf) == cpuid(1)
    assert cpuid(0, 5) == cpuid(0, 0)


def run(code: bytes, setup=None) -> Uc:
    """Run ``code`` at 0x1000 in bare Unicorn (flat 32-bit); any exception fails the test."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x800000)
    uc.mem_write(0x1000, code)
    faults = []
    uc.hook_add(UC_HOOK_INTR, lambda u, n, _: (faults.append(n), u.emu_stop()))
    if setup:
        setup(uc)
    uc.emu_start(0x1000, 0x1000 + len(code), count=100)
    assert not faults, f"exception {faults}"
    return uc


def test_advertised_features_work_in_unicorn():
    r = lambda uc, reg: uc.reg_read(getattr(X, "UC_X86_REG_" + reg.upper()))
    # FPU: fld1; fadd st0, st0; fistp dword [0x3000] -> 2
    uc = run(bytes.fromhex("d9e8 d8c0 db1d00300000".replace(" ", "")))
    assert struct.unpack("<I", uc.mem_read(0x3000, 4))[0] == 2
    # CMOV: xor eax,eax; mov ecx,7; cmovz eax,ecx -> 7
    assert r(run(bytes.fromhex("31c0 b907000000 0f44c1".replace(" ", ""))), "eax") == 7
    # CX8: edx:eax = 0:0 matches [0x3000] = 0 -> stores ecx:ebx = 0x11111111:0x22222222
    uc = run(bytes.fromhex("31c0 31d2 bb22222222 b911111111 0fc70d00300000".replace(" ", "")))
    assert uc.mem_read(0x3000, 8) == bytes.fromhex("2222222211111111")
    # PSE: page directory at 0x10000, PDE 1 = 4-MiB page at physical 0 (P|RW|PS = 0x83);
    # CR4.PSE (0x10) and PGE (0x80), PDE 0 identity maps the code; read linear 0x401000 = physical 0x1000.
    def paging(uc):
        uc.mem_write(0x10000, struct.pack("<II", 0x83, 0x83))
    code = bytes.fromhex("b800000100 0f22d8 b890000000 0f22e0 0f20c0 0d00000080 0f22c0 a100104000".replace(" ", ""))
    uc = run(code, paging)
    assert r(uc, "eax") == struct.unpack("<I", code[:4])[0] and r(uc, "cr4") == 0x90
    # SEP: SYSEXIT runs natively (SYSENTER needs the monitor: Unicorn treats it as a no-op + hook).
    # wrmsr SYSENTER_CS = 8; edx = 0x2000 (target EIP: jmp $), ecx = 0x3000 (target ESP); sysexit
    uc = run(bytes.fromhex("b974010000b80800000031d20f30 ba00200000b900300000 0f35".replace(" ", "")),
             lambda u: u.mem_write(0x2000, b"\xeb\xfe"))
    assert r(uc, "eip") == 0x2000 and r(uc, "esp") == 0x3000 and r(uc, "cs") == (0x8 + 16) | 3
    # TSC and MSR instructions execute (their values come from the monitor: MsrFile, virtual TSC)
    run(bytes.fromhex("0f31 b910000000 0f32".replace(" ", "")))
    msrs = MsrFile(lambda: 0)
    assert msrs.read(0xFE).ok and msrs.read(0x277).ok   # MTRR and PAT MSRs exist in the model
