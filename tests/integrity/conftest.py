"""Images for the integrity tests, built by tools/mkdisk (mkfs.fat + mtools) from fixtures/disks specs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, require_tool  # tests/conftest.py (pytest puts tests/ on sys.path)
from emu.storage.mkdisk import build

SPECS = FIXTURES / "disks"
MT_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC=os.devnull, LC_ALL="C.UTF-8", TZ="UTC",
              SOURCE_DATE_EPOCH="1700000000")


class Disk:
    """A freshly copied image of a fixture spec, with mtools helpers to tamper with it."""

    def __init__(self, path: Path, spec: dict) -> None:
        self.path = path
        self.spec = spec
        start = int(spec.get("partition_start", 2048)) * 512 if spec.get("mbr") else 0
        self.target = f"{path}@@{start}" if start else str(path)

    def mtools(self, *args: str) -> None:
        """Run an mtools command on the volume (-i is added)."""
        subprocess.run([args[0], "-i", self.target, *args[1:]], env=MT_ENV, check=True, capture_output=True)

    def put(self, path: str, data: bytes, tmp: Path, *, keep_time: bool = False) -> None:
        """mcopy -o: overwrite (or create) ``path`` with ``data``."""
        host = tmp / "payload"
        host.write_bytes(data)
        if keep_time:
            os.utime(host, (self.spec.get("date", 1600000000),) * 2)
        self.mtools("mcopy", "-o", *(["-m"] if keep_time else []), str(host), "::" + path)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Pristine images by spec name (built once)."""
    require_tool("mkfs.fat", "mcopy", "mmd", "mdel", "mattrib")
    out = tmp_path_factory.mktemp("pristine")
    cache: dict[str, tuple[Path, dict]] = {}

    def get(name: str) -> tuple[Path, dict]:
        if name not in cache:
            spec = json.loads((SPECS / f"{name}.json").read_text())
            cache[name] = (build(spec, out / f"{name}.img", SPECS), spec)
        return cache[name]
    return get


@pytest.fixture
def disk(built, tmp_path):
    """disk(name) -> a private copy of the pristine image, safe to modify."""
    def make(name: str) -> Disk:
        src, spec = built(name)
        dst = tmp_path / f"{name}.img"
        shutil.copyfile(src, dst)
        return Disk(dst, spec)
    return make
