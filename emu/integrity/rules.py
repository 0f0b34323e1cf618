"""Configuration rules: 'in file PATH, key KEY must ...', checked against a key/value configuration file.

Rules file (docs/storage.md), one rule per line, shell-like quoting, '#' starts a comment:

    PATH  KEY  ==       VALUE     the key is set exactly once (or always to the same value) to VALUE
    PATH  KEY  !=       VALUE     the key is absent or set to something else
    PATH  KEY  in       V1,V2,…   the value is one of the comma-separated list
    PATH  KEY  matches  REGEX     the value matches the Python regular expression (full match)
    PATH  KEY  present            the key is set
    PATH  KEY  absent             the key is not set

Configuration files: one ``KEY=VALUE``, ``KEY: VALUE`` or ``KEY VALUE`` per line; blank lines and lines
starting with '#' or ';' are ignored; ``[section]`` lines prefix later keys with ``section.``; keys are
case-insensitive, values are compared exactly (after trimming blanks and one pair of surrounding quotes).
A key set twice to different values is ambiguous and fails every rule on it but ``present``.
"""
from __future__ import annotations

import dataclasses
import enum
import re
import shlex
from typing import Any, Optional

from emu import EmuError

MAX_CONFIG_BYTES = 1 << 20
"""Configuration files larger than this are not parsed (a rule on them is violated)."""


class RuleOp(enum.Enum):
    """The comparison a rule makes."""

    EQ = "=="
    NE = "!="
    IN = "in"
    MATCHES = "matches"
    PRESENT = "present"
    ABSENT = "absent"


_NEEDS_VALUE = {RuleOp.EQ, RuleOp.NE, RuleOp.IN, RuleOp.MATCHES}


@dataclasses.dataclass(frozen=True)
class Rule:
    """One configuration rule: ``path`` ``key`` ``op`` ``value``."""

    path: str
    key: str
    op: RuleOp
    value: str = ""
    line: int = 0

    def describe(self) -> str:
        """The rule as written in a rules file."""
        value = f" {shlex.quote(self.value)}" if self.op in _NEEDS_VALUE else ""
        return f"{self.path} {self.key} {self.op.value}{value}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (as stored in a baseline)."""
        return {"path": self.path, "key": self.key, "op": self.op.value, "value": self.value, "line": self.line}

    @classmethod
    def from_json(cls, d: Any) -> "Rule":
        """Inverse of to_json; EmuError on a malformed record."""
        try:
            rule = cls(str(d["path"]), str(d["key"]), RuleOp(d["op"]), str(d.get("value", "")), int(d.get("line", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise EmuError(f"malformed rule {d!r}: {exc}") from None
        _check(rule, f"rule {rule.describe()}")
        return rule


def _check(rule: Rule, where: str) -> None:
    if not rule.path.startswith("/"):
        raise EmuError(f"{where}: path must start with '/'")
    if rule.op is RuleOp.MATCHES:
        try:
            re.compile(rule.value)
        except re.error as exc:
            raise EmuError(f"{where}: bad regular expression: {exc}") from None


def parse_rules(text: str, origin: str = "rules") -> list[Rule]:
    """Parse a rules file; EmuError naming the line on any mistake."""
    rules = []
    for n, line in enumerate(text.splitlines(), start=1):
        where = f"{origin}:{n}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise EmuError(f"{where}: {exc}") from None
        if not words:
            continue
        if len(words) < 3:
            raise EmuError(f"{where}: expected 'PATH KEY OP [VALUE]'")
        path, key, op_text, *rest = words
        try:
            op = RuleOp(op_text.lower())
        except ValueError:
            ops = ", ".join(o.value for o in RuleOp)
            raise EmuError(f"{where}: unknown operator {op_text!r} (one of {ops})") from None
        if op in _NEEDS_VALUE and len(rest) != 1:
            raise EmuError(f"{where}: '{op.value}' needs exactly one value (quote values with spaces)")
        if op not in _NEEDS_VALUE and rest:
            raise EmuError(f"{where}: '{op.value}' takes no value")
        rule = Rule(path, key.upper(), op, rest[0] if rest else "", n)
        _check(rule, where)
        rules.append(rule)
    return rules


def parse_config(data: bytes) -> dict[str, list[str]]:
    """Key/value configuration text -> {KEY: [values in order]} (keys upper-cased, sections prefixed)."""
    text = data.decode("utf-8", "replace")
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().upper() + "."
            continue
        m = re.match(r"([^=:\s]+)\s*(?:[=:]|\s)\s*(.*)$", line)
        if m:
            key, value = m.group(1), m.group(2).strip()
        else:
            key, value = line, ""
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out.setdefault(section + key.upper(), []).append(value)
    return out


def evaluate(rule: Rule, config: dict[str, list[str]]) -> Optional[str]:
    """None when the rule holds, else why it does not."""
    values = config.get(rule.key.upper())
    if rule.op is RuleOp.PRESENT:
        return None if values else f"{rule.key} is not set"
    if rule.op is RuleOp.ABSENT:
        return None if not values else f"{rule.key} is set to {values[-1]!r}"
    if values and len(set(values)) > 1:
        return f"{rule.key} is set {len(values)} times to different values {values!r} (ambiguous)"
    value = values[0] if values else None
    if rule.op is RuleOp.NE:
        return None if value != rule.value else f"{rule.key} is {value!r}"
    if value is None:
        return f"{rule.key} is not set (expected {rule.op.value} {rule.value!r})"
    if rule.op is RuleOp.EQ:
        return None if value == rule.value else f"{rule.key} is {value!r}, expected {rule.value!r}"
    if rule.op is RuleOp.IN:
        allowed = [v.strip() for v in rule.value.split(",")]
        return None if value in allowed else f"{rule.key} is {value!r}, expected one of {allowed!r}"
    return None if re.fullmatch(rule.value, value) else f"{rule.key} is {value!r}, does not match {rule.value!r}"
