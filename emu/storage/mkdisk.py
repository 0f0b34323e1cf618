"""Deterministic FAT disk images from a spec (JSON) or a folder, with mkfs.fat and mtools (tools/mkdisk).

Same spec, same bytes: ``mkfs.fat --invariant -i VOLID`` pins the volume id and boot-sector times, mtools
runs with ``SOURCE_DATE_EPOCH`` and ``TZ=UTC`` (directory times) and ``mcopy -m`` (file times taken from the
staged files, set explicitly), directories and files are created in sorted order one directory at a time.
The optional MBR is built with the construct definitions of emu.storage.structs.

Spec keys (docs/storage.md): fat (12/16/32), size ("1440K", "16M", bytes as int), mbr (bool),
partition_start (sectors, default 2048), label, volume_id (hex), date (epoch seconds), cluster_sectors,
root_entries, from (folder, relative to the spec), files (list of {path, text | hex | size+seed, mtime,
attrs}), dirs (list of paths), delete (list of paths removed after copying: deleted entries stay behind).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from emu import EmuError
from emu.storage.structs import MasterBootRecord

DEFAULT_DATE = 1600000000  # 2020-09-13T12:26:40Z
TOOLS = ("mkfs.fat", "mcopy", "mmd", "mdel", "mattrib")


def parse_size(value: Any) -> int:
    """'1440K', '16M', '1G' or an int (bytes) -> bytes, a whole number of 512-byte sectors."""
    if isinstance(value, int):
        n = value
    else:
        text = str(value).strip().upper()
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        try:
            n = int(text.rstrip("KMG")) * mult
        except ValueError:
            raise EmuError(f"mkdisk: bad size {value!r}") from None
    if n <= 0 or n % 512:
        raise EmuError(f"mkdisk: size {n} is not a positive multiple of 512")
    return n


def pattern_bytes(size: int, seed: int) -> bytes:
    """Deterministic pseudo-random content: SHA-256 in counter mode over the seed."""
    out = bytearray()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{block}".encode()).digest() * 64  # 2 KiB per step
        block += 1
    return bytes(out[:size])


def _run(cmd: list[str], env: dict[str, str]) -> None:
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise EmuError(f"mkdisk: {cmd[0]} is not installed (needs dosfstools and mtools)") from None
    if r.returncode:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise EmuError(f"mkdisk: {' '.join(cmd[:2])}… failed: {msg[-1] if msg else r.returncode}")


def _mbr_type(fat: int, sectors: int) -> int:
    if fat == 12:
        return 0x01
    if fat == 16:
        return 0x04 if sectors < 65536 else 0x06
    return 0x0C


def build(spec: dict[str, Any], out: str | os.PathLike[str], base_dir: Optional[Path] = None) -> Path:
    """Build the image described by ``spec`` at ``out``; returns its path."""
    out = Path(out)
    base_dir = base_dir or Path.cwd()
    fat = int(spec.get("fat", 16))
    if fat not in (12, 16, 32):
        raise EmuError(f"mkdisk: fat must be 12, 16 or 32, not {fat}")
    total = parse_size(spec.get("size", "16M"))
    date = int(spec.get("date", DEFAULT_DATE))
    volid = str(spec.get("volume_id", "1234ABCD"))
    mbr = bool(spec.get("mbr", False))
    start = int(spec.get("partition_start", 2048)) if mbr else 0
    fs_sectors = total // 512 - start
    if fs_sectors <= 0:
        raise EmuError("mkdisk: partition_start lies beyond the disk")
    if out.exists():
        out.unlink()
    with open(out, "wb") as f:
        f.truncate(total)
    if mbr:
        record = dict(BootIndicator=0x80, StartingCHS=b"\xfe\xff\xff", OSType=_mbr_type(fat, fs_sectors),
                      EndingCHS=b"\xfe\xff\xff", StartingLBA=start, SizeInLBA=fs_sectors)
        empty = dict(BootIndicator=0, StartingCHS=bytes(3), OSType=0, EndingCHS=bytes(3), StartingLBA=0, SizeInLBA=0)
        sector = MasterBootRecord.build(dict(
            BootCode=bytes(440), UniqueMBRDiskSignature=bytes.fromhex(volid)[::-1], Unknown=bytes(2),
            PartitionRecord=[record, empty, empty, empty], Signature=b"\x55\xaa"))
        with open(out, "r+b") as f:
            f.write(sector)
    env = dict(os.environ, TZ="UTC", SOURCE_DATE_EPOCH=str(date), MTOOLS_SKIP_CHECK="1",
               MTOOLSRC=os.devnull, LC_ALL="C.UTF-8")
    cmd = ["mkfs.fat", "-F", str(fat), "--invariant", "-i", volid, "-S", "512"]
    if spec.get("label"):
        cmd += ["-n", str(spec["label"])]
    if spec.get("cluster_sectors"):
        cmd += ["-s", str(int(spec["cluster_sectors"]))]
    if spec.get("root_entries"):
        cmd += ["-r", str(int(spec["root_entries"]))]
    if mbr:
        cmd += ["--offset", str(start), "-h", str(start)]
    cmd += [str(out), str(fs_sectors // 2)]
    _run(cmd, env)
    target = f"{out}@@{start * 512}" if mbr else str(out)
    dirs: set[str] = set()
    files: dict[str, tuple[bytes, int, str]] = {}
    if spec.get("from"):
        _collect_folder(base_dir / spec["from"], dirs, files, date)
    for d in spec.get("dirs", []):
        _add_dir(dirs, _norm(d))
    for item in spec.get("files", []):
        path = _norm(item["path"])
        if item.get("dir"):
            _add_dir(dirs, path)
            continue
        if "text" in item:
            data = item["text"].encode("utf-8")
        elif "hex" in item:
            data = bytes.fromhex(item["hex"])
        else:
            data = pattern_bytes(int(item.get("size", 0)), int(item.get("seed", 0)))
        files[path] = (data, int(item.get("mtime", date)), str(item.get("attrs", "")))
        _add_dir(dirs, str(PurePosixPath(path).parent))
    with tempfile.TemporaryDirectory(prefix="mkdisk-") as tmp:
        for d in sorted(dirs, key=lambda p: (p.count("/"), p)):
            if d != "/":
                _run(["mmd", "-i", target, "::" + d], env)
        by_dir: dict[str, list[str]] = {}
        for path in sorted(files):
            by_dir.setdefault(str(PurePosixPath(path).parent), []).append(path)
        for n, (d, paths) in enumerate(sorted(by_dir.items())):
            stage = Path(tmp) / str(n)
            stage.mkdir()
            staged = []
            for path in paths:
                data, mtime, _ = files[path]
                host = stage / PurePosixPath(path).name
                host.write_bytes(data)
                os.utime(host, (mtime, mtime))
                staged.append(str(host))
            for i in range(0, len(staged), 200):
                _run(["mcopy", "-m", "-i", target, *staged[i:i + 200], "::" + (d if d.endswith("/") else d + "/")], env)
        for path in sorted(files):
            attrs = files[path][2]
            if attrs:
                _run(["mattrib", "-i", target, *[f"+{a.lower()}" for a in attrs], "::" + path], env)
    for path in spec.get("delete", []):
        _run(["mdel", "-i", target, "::" + _norm(path)], env)
    return out


def _norm(path: str) -> str:
    p = "/" + str(path).strip("/")
    if ".." in p.split("/"):
        raise EmuError(f"mkdisk: path {path!r} contains '..'")
    return p


def _add_dir(dirs: set[str], path: str) -> None:
    while path not in ("/", ""):
        dirs.add(path)
        path = str(PurePosixPath(path).parent)


def _collect_folder(folder: Path, dirs: set[str], files: dict[str, tuple[bytes, int, str]], date: int) -> None:
    if not folder.is_dir():
        raise EmuError(f"mkdisk: folder {folder} does not exist")
    for root, dnames, fnames in os.walk(folder):
        dnames.sort()
        rel = "/" + Path(root).relative_to(folder).as_posix().strip(".").strip("/")
        rel = "/" if rel == "/" else rel
        if rel != "/":
            _add_dir(dirs, rel)
        for name in sorted(fnames):
            files[(rel.rstrip("/") + "/" + name)] = ((Path(root) / name).read_bytes(), date, "")


def load_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON spec file (one clear error when it is missing or not JSON)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EmuError(f"mkdisk: spec {path} not found") from None
    except (OSError, ValueError) as exc:
        raise EmuError(f"mkdisk: spec {path}: {exc}") from None


def tools_available() -> bool:
    """True when mkfs.fat and mtools are installed."""
    return all(shutil.which(t) for t in TOOLS)
