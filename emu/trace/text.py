"""Human-readable renderings of trace records, shared by show, diff and replay reports."""
from __future__ import annotations

from typing import Optional

from emu.trace.format import Kind

HEX_KEYS = frozenset({"rip", "qualification", "value", "port", "handler_eip", "return_eip", "crc32", "data_crc32",
                      "prd_table", "status", "error", "bmis", "ata_status", "ata_error", "command", "error_code"})
"""Fields shown in hexadecimal."""
SKIP_KEYS = frozenset({"kind", "icount", "guest", "reason_name"})


def _value(key: str, value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "-"
    if isinstance(value, int) and key in HEX_KEYS:
        return f"{value:#x}"
    if isinstance(value, list):
        return "[" + ",".join(_value(key, v) for v in value) + "]"
    return str(value)


def describe(record: Optional[dict]) -> str:
    """One line: icount, guest, kind and the event's fields (a checkpoint shows its digest only)."""
    if record is None:
        return "(nothing: the run ended there / the trace ended there)"
    kind = record.get("kind", "?")
    head = f"{record.get('icount', '?'):>12} {record.get('guest', '?')} {kind}"
    if kind == Kind.CHECKPOINT.value:
        return f"{head} digest={str(record.get('digest', ''))[:16]} vtime={record.get('vtime')}"
    parts = []
    if kind == Kind.VMEXIT.value and "reason_name" in record:
        parts.append(str(record["reason_name"]))
    if kind == Kind.CONSOLE.value and isinstance(record.get("byte"), int):
        b = record["byte"]
        parts.append(f"byte={b:#04x} {chr(b)!r}" if 32 <= b < 127 else f"byte={b:#04x}")
    else:
        for key in sorted(record):
            if key not in SKIP_KEYS:
                parts.append(f"{key}={_value(key, record[key])}")
    return head + " " + " ".join(parts)


def field_differences(expected: Optional[dict], actual: Optional[dict]) -> list[str]:
    """Names of the fields that differ (kind/icount/guest included), sorted."""
    if expected is None or actual is None:
        return []
    keys = set(expected) | set(actual)
    return sorted(k for k in keys if expected.get(k, ...) != actual.get(k, ...))


def register_differences(expected: dict, actual: dict) -> list[str]:
    """``name: expected 0x... actual 0x...`` for each register that differs."""
    from emu.trace.events import REGISTERS

    lines = []
    order = [r for r in REGISTERS if r in expected or r in actual]
    order += sorted(k for k in set(expected) | set(actual) if k not in REGISTERS)
    for name in order:
        if expected.get(name) != actual.get(name):
            e, a = expected.get(name), actual.get(name)
            lines.append(f"{name:>6}: expected {e:#010x} actual {a:#010x}" if isinstance(e, int) and isinstance(a, int)
                         else f"{name:>6}: expected {e} actual {a}")
    return lines


def checkpoint_differences(expected: dict, actual: dict) -> list[str]:
    """What differs between two checkpoints: registers, RAM, each disk, virtual time."""
    lines = []
    if expected.get("icount") != actual.get("icount"):
        lines.append(f"taken at icount {expected.get('icount')} (expected) vs {actual.get('icount')} (actual)")
    lines += [f"register {line.strip()}" for line in register_differences(expected.get("regs", {}),
                                                                        actual.get("regs", {}))]
    if expected.get("ram_sha256") != actual.get("ram_sha256"):
        lines.append(f"RAM differs: sha256 expected {str(expected.get('ram_sha256'))[:16]}… "
                     f"actual {str(actual.get('ram_sha256'))[:16]}…")
    ed, ad = expected.get("disks", {}), actual.get("disks", {})
    for name in sorted(set(ed) | set(ad)):
        if ed.get(name) != ad.get(name):
            lines.append(f"disk {name} differs: sha256 expected {str(ed.get(name))[:16]}… "
                         f"actual {str(ad.get(name))[:16]}…")
    for key in ("vtime", "idle"):
        if expected.get(key) != actual.get(key):
            lines.append(f"{key}: expected {expected.get(key)} actual {actual.get(key)}")
    return lines
