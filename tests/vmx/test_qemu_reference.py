"""The MSR and CPUID models against QEMU 7.2 (qemu-system-i386, default CPU ``qemu32``): the reference.

A small multiboot kernel (assembled here with nasm, linked with ld) runs RDMSR/WRMSR and
CPUID under QEMU and prints the results on the debug console; each value the models
claim to share with QEMU is compared, and each documented difference is pinned.
"""
from __future__ import annotations

import subprocess

import pytest

from emu.vmx.cpuid import cpuid
from emu.vmx.msr import MsrFile
from tests.conftest import require_tool

# (write?, msr, edx, eax): reads print "EDX EAX"; writes print nothing.
OPS = [
    (0, 0x1B, 0, 0), (0, 0x1A0, 0, 0), (0, 0x277, 0, 0), (0, 0x174, 0, 0), (0, 0x175, 0, 0), (0, 0xC0000080, 0, 0),
    (1, 0x174, 0, 0x12345678), (0, 0x174, 0, 0),                 # SYSENTER_CS keeps bits 15:0
    (1, 0x176, 0xFFFFFFFF, 0xC0001000), (0, 0x176, 0, 0),       # SYSENTER_EIP keeps bits 31:0
    (1, 0x1A0, 0, 0x81), (0, 0x1A0, 0, 0),
    (0, 0xFE, 0, 0),                                             # MTRRCAP: qemu32 has no MTRR -> 0
    (1, 0x277, 0x00070406, 0x00070402), (0, 0x277, 0, 0),       # reserved PAT type 2: QEMU stores it
    (1, 0xC0000080, 0, 1), (0, 0xC0000080, 0, 0),               # EFER.SCE without SYSCALL: QEMU ignores it
    (0, 0x12345, 0, 0),                                          # unknown MSR: QEMU reads 0, no #GP
]
LEAVES = [0, 1, 0x80000000]

KERNEL = r"""
bits 32
section .text
global _start
align 4
    dd 0x1BADB002, 0, -(0x1BADB002)
_start:
    mov esi, ops
.next:
    mov ebx, [esi]
    cmp ebx, 2
    je .cpuid
    mov ecx, [esi+4]
    mov edx, [esi+8]
    mov eax, [esi+12]
    add esi, 16
    test ebx, ebx
    jnz .write
    rdmsr
    call hex2
    jmp .next
.write:
    wrmsr
    jmp .next
.cpuid:
    mov esi, leaves
.leaf:
    mov eax, [esi]
    cmp eax, 0xFFFFFFFF
    je .done
    xor ecx, ecx
    cpuid
    push edx
    push ecx
    push ebx
    call hex
    pop eax
    call hex
    pop eax
    call hex
    pop eax
    call hex
    call nl
    add esi, 4
    jmp .leaf
.done:
    mov al, 0
    out 0xf4, al
hex2:
    push eax
    mov eax, edx
    call hex
    pop eax
    call hex
nl: mov al, 10
    out 0xe9, al
    ret
hex:
    push ecx
    push eax
    mov ecx, 8
.l: rol eax, 4
    push eax
    and al, 0xf
    add al, '0'
    cmp al, '9'
    jbe .o
    add al, 7
.o: out 0xe9, al
    pop eax
    loop .l
    mov al, ' '
    out 0xe9, al
    pop eax
    pop ecx
    ret
section .data
ops:
"""


def build_kernel(tmp_path) -> str:
    table = "".join(f"    dd {w}, {msr:#x}, {edx:#x}, {eax:#x}\n" for w, msr, edx, eax in OPS)
    table += "    dd 2\nleaves:\n" + "".join(f"    dd {leaf:#x}\n" for leaf in LEAVES) + "    dd 0xFFFFFFFF\n"
    (tmp_path / "k.asm").write_text(KERNEL + table)
    subprocess.run(["nasm", "-f", "elf32", "-o", str(tmp_path / "k.o"), str(tmp_path / "k.asm")], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext", "0x100000", "-o", str(tmp_path / "k.elf"),
                    str(tmp_path / "k.o")], check=True)
    return str(tmp_path / "k.elf")


@pytest.fixture(scope="module")
def qemu_lines(tmp_path_factory):
    require_tool("qemu-system-i386", "nasm", "ld")
    kernel = build_kernel(tmp_path_factory.mktemp("qemu_msr"))
    run = subprocess.run(["qemu-system-i386", "-kernel", kernel, "-display", "none", "-debugcon", "stdio",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=1", "-no-reboot", "-nodefaults"],
                         capture_output=True, timeout=60)
    assert run.returncode == 1, run.stderr.decode()
    return [[int(x, 16) for x in line.split()] for line in run.stdout.decode().splitlines()]


def emu_msr_lines() -> list[list[int]]:
    msrs = MsrFile(lambda: 0)
    out = []
    for write, msr, edx, eax in OPS:
        if write:
            msrs.write(msr, edx << 32 | eax)
        else:
            r = msrs.read(msr)
            out.append(None if not r.ok else [r.edx, r.eax])
    return out


@pytest.mark.qemu
def test_msr_values_match_qemu(qemu_lines):
    reads = [op for op in OPS if not op[0]]
    ours = emu_msr_lines()
    theirs = qemu_lines[:len(reads)]
    differences = {}
    for (_, msr, _, _), mine, qemu in zip(reads, ours, theirs):
        if mine != qemu:
            differences.setdefault(msr, []).append((mine, qemu))
    # Shared: APIC base 0xFEE00900, MISC_ENABLE 1 then the stored 0x81, PAT reset, SYSENTER CS/EIP truncation, EFER 0.
    assert theirs[0] == [0, 0xFEE00900] and theirs[1] == [0, 1] and theirs[2] == [0x00070406, 0x00070406]
    assert theirs[6] == [0, 0x5678] and theirs[7] == [0, 0xC0001000]
    # The documented differences, and nothing else: MTRRCAP (qemu32 lacks MTRR, our model has it),
    # the reserved PAT write (QEMU stores it, hardware and emu raise #GP and keep the old value),
    # the unknown MSR (QEMU reads 0, hardware and emu raise #GP).
    assert differences == {
        0xFE: [([0, 0x508], [0, 0])],
        0x277: [([0x00070406, 0x00070406], [0x00070406, 0x00070402])],
        0x12345: [(None, [0, 0])],
    }


@pytest.mark.qemu
def test_cpuid_shares_vendor_and_signature_with_qemu32(qemu_lines):
    leaf0, leaf1, ext = qemu_lines[-3:]
    assert leaf0[1:] == list(cpuid(0)[1:])          # GenuineIntel (max leaf differs: QEMU 4, emu 1)
    assert leaf1[0] == cpuid(1)[0] == 0x663          # family 6, model 6, stepping 3
    assert ext[0] == cpuid(0x80000000)[0] == 0x80000004
    # Every feature emu reports, QEMU's qemu32 reports too, except MTRR (bit 12), which emu models.
    assert cpuid(1)[3] & ~leaf1[3] == 1 << 12
    assert leaf1[2] & 1 << 31 and cpuid(1)[2] & 1 << 31  # both say "hypervisor present"
