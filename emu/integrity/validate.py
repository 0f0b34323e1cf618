"""Validation: compare a volume, read only through a read-only view, with its baseline and rules (the patent's
block 410 analysis).  Every problem with the disk's content becomes a finding; only an unusable baseline
raises EmuError."""
from __future__ import annotations

import hashlib
import os
from typing import Any, Mapping, Optional, Union

from emu import EmuError
from emu.integrity.baseline import Baseline, entry_record, path_matches, volume_identity
from emu.integrity.findings import Finding, FindingKind, Findings
from emu.integrity.rules import MAX_CONFIG_BYTES, evaluate, parse_config
from emu.storage.fat import Entry, FatError
from emu.storage.source import ReadOnlyView, SectorSource
from emu.storage.volume import open_volume

BaselineLike = Union[Baseline, Mapping[str, Any], str, "os.PathLike[str]"]
COMPARED = ("type", "size", "attr", "write_time", "first_cluster", "sha256")


def as_baseline(baseline: BaselineLike) -> Baseline:
    """A Baseline from a Baseline, its parsed JSON, or a file path."""
    if isinstance(baseline, Baseline):
        return baseline
    if isinstance(baseline, Mapping):
        return Baseline.from_json(dict(baseline))
    return Baseline.load(baseline)


def validate(source: SectorSource, baseline: BaselineLike, *, partition: Optional[int] = None) -> Findings:
    """Compare the FAT volume on ``source`` with ``baseline``; never writes, never raises for disk content.

    ``partition``: None = the baseline's partition (default: first FAT partition, or the whole disk without
    an MBR); 0 = whole disk; N = partition N.
    """
    base = as_baseline(baseline)
    view = ReadOnlyView(source)  # analysis can only read
    result = Findings()
    try:
        vol = open_volume(view, base.partition if partition is None else partition)
        fs = vol.fs
        entries = fs.entries()
    except EmuError as exc:
        result.findings.append(Finding(FindingKind.UNREADABLE, "/", f"volume cannot be analysed: {exc}"))
        result.volume = {"error": str(exc)}
        return result
    ident = volume_identity(vol)
    result.volume = vol.describe()
    changed_volume = {k: {"baseline": base.volume.get(k), "actual": ident[k]}
                      for k in ("fat_type", "volume_id", "label") if k in base.volume and base.volume[k] != ident[k]}
    if changed_volume:
        result.findings.append(Finding(FindingKind.CHANGED, "/", "volume identity differs",
                                       attributes={f"volume.{k}": v for k, v in changed_volume.items()}))
    known = set(base.volume.get("warnings", []))
    for w in vol.warnings:
        if w not in known:
            result.findings.append(Finding(FindingKind.ANOMALY, "/", w))

    by_path: dict[str, Entry] = {}
    for e in entries:
        by_path.setdefault(e.path.upper(), e)
    matched: set[int] = set()
    contents: dict[int, bytes] = {}  # id(entry) -> content of rule targets
    rule_paths = {r.path.upper() for r in base.rules}

    for path, rec in base.files.items():
        entry = by_path.get(path.upper())
        renamed = False
        if entry is None and rec.get("short_path"):
            entry = fs.find(rec["short_path"])
            renamed = entry is not None
        if entry is None:
            result.findings.append(Finding(FindingKind.REMOVED, path, f"{rec.get('type', 'file')} is gone"))
            continue
        matched.add(id(entry))
        result.checked += 1
        for w in entry.warnings:
            result.findings.append(Finding(FindingKind.ANOMALY, entry.path, w))
        actual = entry_record(fs, entry, with_hash=False)
        if entry.error:
            result.findings.append(Finding(FindingKind.UNREADABLE, path, entry.error))
        if not entry.is_dir:
            if entry.error:
                actual["sha256"] = None
            else:
                try:
                    if path.upper() in rule_paths and entry.size <= MAX_CONFIG_BYTES:
                        data = fs.read_file(entry)
                        contents[id(entry)] = data
                        actual["sha256"] = _sha256(data)
                    else:
                        actual["sha256"] = fs.sha256(entry)
                except FatError as exc:
                    result.findings.append(Finding(FindingKind.UNREADABLE, path, str(exc)))
                    actual["sha256"] = None
        diffs = {k: {"baseline": rec.get(k), "actual": actual.get(k)}
                 for k in COMPARED if k in rec and rec.get(k) != actual.get(k) and
                 not (k == "sha256" and actual.get(k) is None)}
        if renamed:
            diffs["path"] = {"baseline": path, "actual": entry.path}
        if diffs:
            result.findings.append(Finding(FindingKind.CHANGED, path, attributes=diffs))

    known_paths = {p.upper() for p in base.files}
    for e in entries:
        if id(e) in matched or not path_matches(e.path, base.paths):
            continue
        if e.path.upper() not in known_paths:
            kind = "directory" if e.is_dir else f"file of {e.size} bytes"
            if e.error:
                kind += f" ({e.error})"
            result.findings.append(Finding(FindingKind.ADDED, e.path, kind))
        else:  # a second entry with a protected name (the first one was compared)
            problems = e.warnings + ([e.error] if e.error else [])
            for w in problems or ["second directory entry with this name"]:
                result.findings.append(Finding(FindingKind.ANOMALY, e.path, w))
            continue
        for w in e.warnings:
            result.findings.append(Finding(FindingKind.ANOMALY, e.path, w))

    for rule in base.rules:
        entry = by_path.get(rule.path.upper()) or fs.find(rule.path)
        if entry is None:
            why = "file does not exist"
        elif entry.is_dir:
            why = "is a directory"
        elif entry.size > MAX_CONFIG_BYTES:
            why = f"file of {entry.size} bytes is too large for a configuration file"
        else:
            try:
                data = contents.get(id(entry))
                if data is None:
                    data = fs.read_file(entry)
                    contents[id(entry)] = data
                why = evaluate(rule, parse_config(data))
            except FatError as exc:
                why = f"cannot read the file: {exc}"
        if why:
            result.findings.append(Finding(FindingKind.RULE, rule.path, why, rule=rule.describe()))
    order = {k: i for i, k in enumerate(FindingKind)}
    result.findings.sort(key=lambda f: (f.path.upper() != "/", f.path.upper(), order[f.kind]))
    return result


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
