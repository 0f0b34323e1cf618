"""Compare two trace files: header differences, the first differing event, and event counts by kind."""
from __future__ import annotations

import itertools
import os
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Optional

from emu.trace import text
from emu.trace.format import Kind
from emu.trace.reader import TraceReader

DEFAULT_CONTEXT = 4


@dataclass
class TraceDiff:
    """What differs between traces A and B."""

    header: list[str] = field(default_factory=list)
    index: Optional[int] = None            # 1-based event number of the first difference
    a: Optional[dict] = None
    b: Optional[dict] = None
    before: list[dict] = field(default_factory=list)
    a_after: list[dict] = field(default_factory=list)
    b_after: list[dict] = field(default_factory=list)
    counts_a: Counter = field(default_factory=Counter)
    counts_b: Counter = field(default_factory=Counter)

    @property
    def identical(self) -> bool:
        """No header or event difference."""
        return not self.header and self.index is None

    def report(self, name_a: str = "A", name_b: str = "B") -> str:
        """Multi-line human report."""
        if self.identical:
            total = sum(self.counts_a.values())
            return f"traces are identical: {total} events"
        lines = []
        for h in self.header:
            lines.append(f"header: {h}")
        if self.index is not None:
            icount = (self.a or self.b or {}).get("icount")
            lines.append(f"first difference at event {self.index}, icount {icount}:")
            lines.append(f"  {name_a}: {text.describe(self.a).strip()}")
            lines.append(f"  {name_b}: {text.describe(self.b).strip()}")
            diffs = text.field_differences(self.a, self.b)
            if diffs:
                lines.append(f"  differing fields: {', '.join(diffs)}")
            if (self.a and self.b and self.a.get("kind") == Kind.CHECKPOINT.value
                    and self.b.get("kind") == Kind.CHECKPOINT.value):
                lines += [f"    {d}" for d in text.checkpoint_differences(self.a, self.b)]
            if self.before:
                lines.append("  events before (identical):")
                lines += [f"    {text.describe(r)}" for r in self.before]
            for name, after in ((name_a, self.a_after), (name_b, self.b_after)):
                if after:
                    lines.append(f"  {name} next:")
                    lines += [f"    {text.describe(r)}" for r in after]
        else:
            lines.append("events: identical")
        kinds = sorted(set(self.counts_a) | set(self.counts_b))
        differing = [k for k in kinds if self.counts_a[k] != self.counts_b[k]]
        lines.append("event counts by kind (" + (f"{len(differing)} differ" if differing else "all equal") + "):")
        for k in kinds:
            mark = "  *" if self.counts_a[k] != self.counts_b[k] else ""
            lines.append(f"  {k:<14} {name_a}={self.counts_a[k]:<8} {name_b}={self.counts_b[k]}{mark}")
        return "\n".join(lines)


def _header_differences(a: dict, b: dict) -> list[str]:
    out = []
    ia = {(i.get("role"), i.get("guest"), i.get("slot")): i for i in a.get("inputs", [])}
    ib = {(i.get("role"), i.get("guest"), i.get("slot")): i for i in b.get("inputs", [])}
    for key in sorted(set(ia) | set(ib), key=str):
        x, y = ia.get(key), ib.get(key)
        role = key[0]
        if x is None or y is None:
            out.append(f"{role} {(x or y).get('path')} only in {'A' if y is None else 'B'}")
        elif x.get("sha256") != y.get("sha256"):
            out.append(f"{role} differs: {x.get('path')} ({x.get('sha256', '')[:12]}…) vs "
                       f"{y.get('path')} ({y.get('sha256', '')[:12]}…)")
    for key in ("guests", "config", "emu_version"):
        if a.get(key) != b.get(key):
            out.append(f"{key} differs: {a.get(key)} vs {b.get(key)}")
    return out


def diff(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str], context: int = DEFAULT_CONTEXT) -> TraceDiff:
    """Stream both traces side by side; record the first differing event and count every kind."""
    ra, rb = TraceReader(path_a), TraceReader(path_b)
    result = TraceDiff(header=_header_differences(ra.header, rb.header))
    history: deque = deque(maxlen=context)
    ea, eb = ra.events(), rb.events()
    index = 0
    for a, b in itertools.zip_longest(ea, eb):
        index += 1
        if a is not None:
            result.counts_a[a["kind"]] += 1
        if b is not None:
            result.counts_b[b["kind"]] += 1
        if result.index is not None:
            if len(result.a_after) < context and a is not None:
                result.a_after.append(a)
            if len(result.b_after) < context and b is not None:
                result.b_after.append(b)
            continue
        if a == b:
            history.append(a)
            continue
        result.index, result.a, result.b, result.before = index, a, b, list(history)
    return result
