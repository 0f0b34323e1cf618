"""Trace statistics: events by kind, instructions, file size and bytes per million instructions."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from emu.trace.format import Kind, encode
from emu.trace.reader import TraceReader


@dataclass
class TraceStats:
    """Summary of one trace file."""

    path: str
    header: dict
    counts: Counter = field(default_factory=Counter)
    size: int = 0
    raw_bytes: int = 0
    icount: int = 0
    end: dict = field(default_factory=dict)

    @property
    def bytes_per_million(self) -> int:
        """File bytes per million guest instructions (rounded down)."""
        return self.size * 1_000_000 // max(self.icount, 1)

    def report(self) -> str:
        """Human summary."""
        lines = [f"trace {self.path}: format {self.header.get('format')}, emu {self.header.get('emu_version')}"]
        for inp in self.header.get("inputs", []):
            lines.append(f"  input {inp.get('role')} {inp.get('path')} sha256 {str(inp.get('sha256'))[:16]}… "
                         f"({inp.get('bytes')} bytes)")
        cfg = self.header.get("config", {})
        lines.append(f"  config: max_insns={cfg.get('max_insns')} checkpoint_every={cfg.get('checkpoint_every')} "
                     f"clock={cfg.get('clock')} disks={cfg.get('disk_mode')}")
        if "reason" in self.end:
            lines.append(f"  end: {self.end.get('reason')} status {self.end.get('status')} ({self.end.get('message')})")
        else:
            lines.append(f"  end of scenario: {self.end.get('validations')} validations, "
                         f"{self.end.get('findings')} findings, guests {self.end.get('guests')}")
        lines.append(f"  instructions: {self.icount}" + (" (all guests)" if "reason" not in self.end else ""))
        lines.append(f"  events: {sum(self.counts.values())}")
        for kind, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {kind:<14} {n}")
        ratio = self.raw_bytes / self.size if self.size else 0
        lines.append(f"  size: {self.size} bytes ({self.raw_bytes} uncompressed, {ratio:.1f}x)")
        lines.append(f"  bytes per million instructions: {self.bytes_per_million}")
        return "\n".join(lines)


def stats(path: str | os.PathLike[str]) -> TraceStats:
    """Read the whole trace and summarise it."""
    reader = TraceReader(path)
    result = TraceStats(os.fspath(path), reader.header)
    result.raw_bytes = len(encode(reader.header))
    guest_icounts: dict[str, int] = {}
    for record in reader.events():
        result.counts[record["kind"]] += 1
        result.raw_bytes += len(encode(record))
        if record["kind"] == Kind.GUEST_END.value:
            guest_icounts[record["guest"]] = record["icount"]
        if record["kind"] == Kind.END.value:
            result.end = record
            result.icount = sum(guest_icounts.values()) if guest_icounts else record["icount"]
    result.size = reader.size
    return result
