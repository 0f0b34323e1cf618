"""Validation findings (AIDE-style report): added, removed, changed attributes, rule violations, unreadable files,
and anomalies of the file system itself; as JSON and as text."""
from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Optional

FINDINGS_FORMAT = "emu-findings"
FINDINGS_VERSION = 1


class FindingKind(enum.Enum):
    """What a finding is about."""

    ADDED = "added"            # a file matching the baseline's paths that the baseline does not list
    REMOVED = "removed"        # a baseline file that is gone
    CHANGED = "changed"        # a baseline file whose attributes differ (``attributes`` says which)
    RULE = "rule"              # a configuration rule that does not hold
    UNREADABLE = "unreadable"  # a file (or the whole volume, path "/") that cannot be read, with the reason
    ANOMALY = "anomaly"        # file-system corruption that can hide or garble files (cross-links, bad LFNs, ...)


@dataclasses.dataclass
class Finding:
    """One difference between the volume and its baseline."""

    kind: FindingKind
    path: str
    message: str = ""
    attributes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """For CHANGED: {attribute: {"baseline": old, "actual": new}}."""
    rule: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d: dict[str, Any] = {"kind": self.kind.value, "path": self.path}
        if self.attributes:
            d["attributes"] = self.attributes
        if self.rule:
            d["rule"] = self.rule
        if self.message:
            d["message"] = self.message
        return d

    def to_text(self) -> str:
        """One human-readable line."""
        if self.kind is FindingKind.CHANGED:
            parts = []
            for name, diff in self.attributes.items():
                old, new = diff.get("baseline"), diff.get("actual")
                if name == "sha256":
                    parts.append(f"sha256 {str(old)[:12]}… -> {str(new)[:12]}…")
                else:
                    parts.append(f"{name} {old!r} -> {new!r}")
            return f"changed     {self.path}: " + ", ".join(parts)
        if self.kind is FindingKind.RULE:
            return f"rule        {self.path}: {self.rule}: {self.message}"
        return f"{self.kind.value:<11} {self.path}" + (f": {self.message}" if self.message else "")


@dataclasses.dataclass
class Findings:
    """The result of one validation: findings in a stable order plus a description of the volume."""

    findings: list[Finding] = dataclasses.field(default_factory=list)
    volume: dict[str, Any] = dataclasses.field(default_factory=dict)
    checked: int = 0
    """How many baseline files were compared."""

    @property
    def clean(self) -> bool:
        """True when there is nothing to report."""
        return not self.findings

    def __bool__(self) -> bool:
        return bool(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def __iter__(self):
        return iter(self.findings)

    def of_kind(self, kind: FindingKind) -> list[Finding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind is kind]

    def counts(self) -> dict[str, int]:
        """Number of findings per kind (every kind listed)."""
        return {k.value: sum(f.kind is k for f in self.findings) for k in FindingKind}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (format emu-findings, version 1)."""
        return {"format": FINDINGS_FORMAT, "version": FINDINGS_VERSION, "clean": self.clean,
                "checked": self.checked, "counts": self.counts(), "volume": self.volume,
                "findings": [f.to_json() for f in self.findings]}

    def dumps(self) -> str:
        """JSON text."""
        return json.dumps(self.to_json(), indent=1, ensure_ascii=False)

    def to_text(self) -> str:
        """Human-readable report: one line per finding and a summary line."""
        lines = [f.to_text() for f in self.findings]
        if self.clean:
            lines.append(f"clean: {self.checked} files match the baseline")
        else:
            summary = ", ".join(f"{n} {k}" for k, n in self.counts().items() if n)
            lines.append(f"{len(self.findings)} findings ({summary}); {self.checked} baseline files checked")
        return "\n".join(lines)
