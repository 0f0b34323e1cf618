"""Baselines: the protected paths of a volume with their attributes, as versioned JSON (AIDE's idea, FAT's attributes).

Attributes per path (AIDE vocabulary in brackets): type [ftype], size [s], attr (the FAT attribute byte, the
nearest thing to [p]), write_time [m], first_cluster (the nearest thing to [i]), sha256 (files only).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from emu import EmuError
from emu.integrity.rules import Rule
from emu.storage.fat import Entry, FatError, FatVolume
from emu.storage.source import ReadOnlyView, SectorSource
from emu.storage.volume import OpenedVolume, open_volume

BASELINE_FORMAT = "emu-baseline"
BASELINE_VERSION = 1
ATTRIBUTES = ("type", "size", "attr", "write_time", "first_cluster", "sha256")
DEFAULT_PATHS = ("/*",)


def path_matches(path: str, globs: Iterable[str]) -> bool:
    """True when ``path`` is selected by one of ``globs`` (case-insensitive fnmatch; '*' also matches '/';
    a glob naming a directory selects everything beneath it)."""
    up = path.upper()
    for g in globs:
        gu = g.upper()
        if fnmatch.fnmatchcase(up, gu) or fnmatch.fnmatchcase(up, gu.rstrip("/") + "/*"):
            return True
    return False


def entry_record(fs: FatVolume, entry: Entry, *, with_hash: bool = True) -> dict[str, Any]:
    """The baseline attributes of one entry (raises FatError when a file's content cannot be read)."""
    rec: dict[str, Any] = {
        "type": "dir" if entry.is_dir else "file",
        "size": entry.size,
        "attr": entry.attr,
        "write_time": entry.write_time,
        "first_cluster": entry.first_cluster,
    }
    if not entry.is_dir and with_hash:
        rec["sha256"] = fs.sha256(entry)
    return rec


def short_path(fs: FatVolume, entry: Entry) -> str:
    """The entry's path spelled with 8.3 names only (upper case), used when a long name is lost."""
    parts = []
    path = entry.path
    while path and path != "/":
        e = fs.find(path)
        parts.append(e.short_name.upper() if e else path.rsplit("/", 1)[-1].upper())
        path = path.rsplit("/", 1)[0]
    return "/" + "/".join(reversed(parts))


@dataclasses.dataclass
class Baseline:
    """A baseline: which paths are protected, their recorded attributes, and configuration rules."""

    files: dict[str, dict[str, Any]]
    paths: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_PATHS))
    rules: list[Rule] = dataclasses.field(default_factory=list)
    volume: dict[str, Any] = dataclasses.field(default_factory=dict)
    partition: Optional[int] = None
    """Partition the baseline was taken from (0 = whole disk); None = the default choice."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (format emu-baseline, version 1)."""
        return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, "partition": self.partition,
                "volume": self.volume, "paths": list(self.paths), "attributes": list(ATTRIBUTES),
                "files": self.files, "rules": [r.to_json() for r in self.rules]}

    def dumps(self) -> str:
        """JSON text (sorted, stable: same volume -> same bytes)."""
        return json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the baseline JSON file."""
        try:
            Path(path).write_text(self.dumps(), encoding="utf-8")
        except OSError as exc:
            raise EmuError(f"cannot write baseline {path}: {exc.strerror or exc}") from None

    @classmethod
    def from_json(cls, d: Any, origin: str = "baseline") -> "Baseline":
        """Check and load a parsed baseline; EmuError (one line) when it is not a version-1 baseline."""
        if not isinstance(d, dict) or d.get("format") != BASELINE_FORMAT:
            raise EmuError(f"{origin}: not an emu baseline (format must be {BASELINE_FORMAT!r})")
        if d.get("version") != BASELINE_VERSION:
            raise EmuError(f"{origin}: unsupported baseline version {d.get('version')!r} "
                           f"(this emu reads version {BASELINE_VERSION})")
        files = d.get("files")
        if not isinstance(files, dict) or not all(isinstance(k, str) and k.startswith("/") and isinstance(v, dict)
                                                  for k, v in files.items()):
            raise EmuError(f"{origin}: 'files' must map absolute paths to attribute objects")
        paths = d.get("paths", list(DEFAULT_PATHS))
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise EmuError(f"{origin}: 'paths' must be a list of globs")
        rules_raw = d.get("rules", [])
        if not isinstance(rules_raw, list):
            raise EmuError(f"{origin}: 'rules' must be a list")
        try:
            rules = [Rule.from_json(r) for r in rules_raw]
        except EmuError as exc:
            raise EmuError(f"{origin}: {exc}") from None
        partition = d.get("partition")
        if partition is not None and (not isinstance(partition, int) or partition < 0):
            raise EmuError(f"{origin}: 'partition' must be a partition number or null")
        volume = d.get("volume", {})
        if not isinstance(volume, dict):
            raise EmuError(f"{origin}: 'volume' must be an object")
        return cls(files=files, paths=paths, rules=rules, volume=volume, partition=partition)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Baseline":
        """Read a baseline file; EmuError when missing, not JSON or not a baseline."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EmuError(f"baseline {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise EmuError(f"baseline {path}: {exc}") from None
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise EmuError(f"baseline {path}: not JSON ({exc})") from None
        return cls.from_json(d, f"baseline {path}")


def volume_identity(vol: OpenedVolume) -> dict[str, Any]:
    """What identifies the volume in a baseline: FAT type, volume id, label, known anomalies."""
    d = vol.describe()
    return {"fat_type": d["fat_type"], "volume_id": d["volume_id"], "label": d["label"],
            "warnings": list(vol.warnings)}


def take_baseline(source: SectorSource, paths: Sequence[str] = DEFAULT_PATHS, rules: Sequence[Rule] = (),
                  partition: Optional[int] = None) -> Baseline:
    """Record every entry selected by ``paths`` (globs) with its attributes; EmuError if one cannot be read."""
    for g in paths:
        if not g.startswith("/") and not g.startswith("*"):
            raise EmuError(f"path glob {g!r} must start with '/'")
    vol = open_volume(ReadOnlyView(source), partition)
    fs = vol.fs
    files: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for e in fs.entries():
        if e.path.upper() in seen or not path_matches(e.path, paths):
            continue
        seen.add(e.path.upper())
        if e.error:
            raise EmuError(f"cannot take a baseline: {e.path}: {e.error}")
        try:
            rec = entry_record(fs, e)
        except FatError as exc:
            raise EmuError(f"cannot take a baseline: {exc}") from None
        sp = short_path(fs, e)
        if sp != e.path.upper():
            rec["short_path"] = sp
        files[e.path] = rec
    used = vol.partition.number if vol.partition else 0
    return Baseline(files=files, paths=list(paths), rules=list(rules), volume=volume_identity(vol), partition=used)
