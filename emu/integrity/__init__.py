"""Integrity validation of a FAT volume against a baseline (docs/storage.md): ``validate(source, baseline)``."""
from emu.integrity.baseline import Baseline, take_baseline
from emu.integrity.findings import Finding, FindingKind, Findings
from emu.integrity.rules import Rule, parse_rules
from emu.integrity.validate import validate

__all__ = ["Baseline", "Finding", "FindingKind", "Findings", "Rule", "parse_rules", "take_baseline", "validate"]
