"""The guest's CPUID: a fixed, documented i686-class processor (Intel SDM Vol. 2A CPUID).

Unicorn's native CPUID reports its host-like default model (a Haswell, family 6
model 0x3C, with VMX, SSE4, AVX …) — features emu does not all support — so the
monitor answers every CPUID from this table instead.

| leaf | EAX | EBX | ECX | EDX |
|---|---|---|---|---|
| 0 | 1 (max basic leaf) | "Genu" | "ntel" | "ineI" → vendor "GenuineIntel" |
| 1 | 0x00000663: family 6, model 6, stepping 3 (QEMU's ``qemu32``) | 0 | 0x80000000 (hypervisor present) | 0x0001B939 |
| 0x40000000 | 0x40000000 (max hypervisor leaf) | "emuE" | "MUem" | "uEMU" → "emuEMUemuEMU" |
| 0x80000000 | 0x80000004 (max extended leaf) | 0 | 0 | 0 |
| 0x80000001 | 0 | 0 | 0 | 0 (no NX, no long mode, no SYSCALL) |
| 0x80000002–4 | brand string "emu virtual i686 CPU", NUL padded to 48 bytes |

Leaf-1 EDX = FPU (0) | PSE (3) | TSC (4) | MSR (5) | CX8 (8) | SEP (11) | MTRR (12) |
PGE (13) | CMOV (15) | PAT (16): what Unicorn executes natively (x87, 4-MiB pages,
CMPXCHG8B, global pages, CMOVcc) or the monitor models (the virtual TSC, the MSR file
of :mod:`emu.vmx.msr`, SYSENTER — Unicorn runs SYSEXIT but leaves SYSENTER to a hook).
Not reported: VME/DE/MCE/MCA (not modelled), PAE/PSE-36 (not tested), APIC (emu has
an 8259 pair, no local APIC), MMX/SSE/FXSR (not an i686 baseline), and VMX: the VMX
layer is emulated from outside the guest.  Every input ECX (subleaf) is ignored.
A leaf above the maximum basic or extended leaf returns leaf 1's data, as Intel
processors return the highest basic leaf (SDM Vol. 2A CPUID, "INPUT EAX = 0").
"""
from __future__ import annotations

import struct

VENDOR = b"GenuineIntel"
HYPERVISOR_SIGNATURE = b"emuEMUemuEMU"
BRAND = b"emu virtual i686 CPU"
MAX_BASIC_LEAF = 1
MAX_HYPERVISOR_LEAF = 0x40000000
MAX_EXTENDED_LEAF = 0x80000004

FAMILY, MODEL, STEPPING = 6, 6, 3
SIGNATURE = FAMILY << 8 | MODEL << 4 | STEPPING

# CPUID.01H:EDX (SDM Vol. 2A Table 3-11)
FPU, PSE, TSC, MSR, CX8, SEP, MTRR, PGE, CMOV, PAT = (1 << 0, 1 << 3, 1 << 4, 1 << 5, 1 << 8, 1 << 11, 1 << 12,
                                                      1 << 13, 1 << 15, 1 << 16)
VMX_ECX = 1 << 5            # CPUID.01H:ECX.VMX — deliberately clear
HYPERVISOR_ECX = 1 << 31    # CPUID.01H:ECX bit 31: running under a hypervisor
FEATURES_EDX = FPU | PSE | TSC | MSR | CX8 | SEP | MTRR | PGE | CMOV | PAT
FEATURES_ECX = HYPERVISOR_ECX


def _regs(data: bytes) -> tuple[int, ...]:
    return struct.unpack("<" + "I" * (len(data) // 4), data)


_VENDOR_EBX, _VENDOR_EDX, _VENDOR_ECX = _regs(VENDOR)
_BRAND = _regs(BRAND.ljust(48, b"\0"))
_HV_EBX, _HV_ECX, _HV_EDX = _regs(HYPERVISOR_SIGNATURE)

LEAVES: dict[int, tuple[int, int, int, int]] = {
    0: (MAX_BASIC_LEAF, _VENDOR_EBX, _VENDOR_ECX, _VENDOR_EDX),
    1: (SIGNATURE, 0, FEATURES_ECX, FEATURES_EDX),
    0x40000000: (MAX_HYPERVISOR_LEAF, _HV_EBX, _HV_ECX, _HV_EDX),
    0x80000000: (MAX_EXTENDED_LEAF, 0, 0, 0),
    0x80000001: (0, 0, 0, 0),
    0x80000002: _BRAND[0:4],
    0x80000003: _BRAND[4:8],
    0x80000004: _BRAND[8:12],
}
"""Every leaf the model defines: leaf → (EAX, EBX, ECX, EDX)."""


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """(EAX, EBX, ECX, EDX) for CPUID with EAX = ``leaf`` (ECX = ``subleaf`` is ignored by every leaf)."""
    return LEAVES.get(leaf & 0xFFFFFFFF, LEAVES[MAX_BASIC_LEAF])
