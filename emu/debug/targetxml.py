"""The i386 target description (``target.xml``) and the matching ``g`` packet register layout.

Feature ``org.gnu.gdb.i386.core`` as the GDB manual defines it (appendix G.5 "Standard Target
Features", i386 Features; XML format in G.2): eax..edi, eip, eflags, cs ss ds es fs gs, st0..st7
(80-bit), fctrl fstat ftag fiseg fioff foseg fooff fop. Registers are numbered in document order,
so ``p``/``P`` numbers and the ``g`` packet byte layout follow ``REGISTERS`` exactly.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegisterDef:
    """One register of the description: gdb name, width in bits, gdb type, optional register group."""

    name: str
    bits: int
    type: str
    group: str = ""

    @property
    def size(self) -> int:
        """Width in bytes (its share of the ``g`` packet)."""
        return self.bits // 8


_GPR_TYPES = {"esp": "data_ptr", "ebp": "data_ptr", "eip": "code_ptr", "eflags": "i386_eflags"}

REGISTERS: tuple[RegisterDef, ...] = (
    *(RegisterDef(n, 32, _GPR_TYPES.get(n, "int32")) for n in
      ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
       "cs", "ss", "ds", "es", "fs", "gs")),
    *(RegisterDef(f"st{i}", 80, "i387_ext") for i in range(8)),
    *(RegisterDef(n, 32, "int", "float") for n in
      ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")),
)
"""Every register of ``target.xml`` in ``g`` packet order (regnum = index)."""

REGISTER_INDEX: dict[str, int] = {r.name: i for i, r in enumerate(REGISTERS)}
"""gdb register number of each name (``p``/``P`` packets)."""

G_PACKET_SIZE = sum(r.size for r in REGISTERS)
"""Bytes in a ``g`` reply: 16*4 + 8*10 + 8*4 = 176."""

CORE_REGISTERS: tuple[str, ...] = tuple(r.name for r in REGISTERS[:16])
"""The 16 registers a target must provide (the rest may read as zero)."""

# EFLAGS bits (Intel SDM Vol. 1, 3.4.3 "EFLAGS Register"); bit 1 is reserved (always 1).
_EFLAGS_BITS = (
    (0, "CF"), (1, ""), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"),
    (10, "DF"), (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"), (18, "AC"), (19, "VIF"),
    (20, "VIP"), (21, "ID"),
)


def target_xml() -> str:
    """The complete target description document served for ``qXfer:features:read:target.xml``."""
    lines = [
        '<?xml version="1.0"?>',
        '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
        "<target>",
        "  <architecture>i386</architecture>",
        '  <feature name="org.gnu.gdb.i386.core">',
        '    <flags id="i386_eflags" size="4">',
        *(f'      <field name="{name}" start="{bit}" end="{bit}"/>' for bit, name in _EFLAGS_BITS),
        "    </flags>",
    ]
    for regnum, reg in enumerate(REGISTERS):
        group = f' group="{reg.group}"' if reg.group else ""
        lines.append(f'    <reg name="{reg.name}" bitsize="{reg.bits}" type="{reg.type}" regnum="{regnum}"{group}/>')
    lines += ["  </feature>", "</target>", ""]
    return "\n".join(lines)


TARGET_XML: str = target_xml()
"""``target_xml()`` computed once."""


def encode_registers(values: dict[str, int]) -> bytes:
    """The ``g`` packet payload (raw bytes, little-endian per register); absent registers are zero."""
    out = bytearray()
    for reg in REGISTERS:
        value = values.get(reg.name, 0) & ((1 << reg.bits) - 1)
        out += value.to_bytes(reg.size, "little")
    return bytes(out)


def decode_registers(data: bytes) -> dict[str, int]:
    """Split a ``G`` packet payload into register values; ValueError unless exactly ``G_PACKET_SIZE`` bytes."""
    if len(data) != G_PACKET_SIZE:
        raise ValueError(f"G packet has {len(data)} bytes, expected {G_PACKET_SIZE}")
    values: dict[str, int] = {}
    offset = 0
    for reg in REGISTERS:
        values[reg.name] = int.from_bytes(data[offset:offset + reg.size], "little")
        offset += reg.size
    return values
