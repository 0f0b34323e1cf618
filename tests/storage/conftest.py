"""Images for the storage tests, built once per session by tools/mkdisk (mkfs.fat + mtools) from fixtures/disks."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from emu.storage.mkdisk import build
from conftest import FIXTURES, require_tool  # tests/conftest.py (pytest puts tests/ on sys.path)

SPECS = FIXTURES / "disks"
ROOT_DIR = FIXTURES.parent
MT_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC=os.devnull, LC_ALL="C.UTF-8", TZ="UTC")


def build_fixture(name: str, out_dir: Path) -> tuple[Path, dict]:
    """Build fixtures/disks/NAME.json into out_dir; returns (image, spec)."""
    require_tool("mkfs.fat", "mcopy", "mmd", "mdel", "mattrib")
    spec = json.loads((SPECS / f"{name}.json").read_text())
    out = out_dir / f"{name}.img"
    build(spec, out, SPECS)
    return out, spec


def mtools_target(image: Path, spec: dict) -> str:
    """mtools' -i argument for the volume (with @@offset for a partitioned disk)."""
    return f"{image}@@{int(spec.get('partition_start', 2048)) * 512}" if spec.get("mbr") else str(image)


def mtools(*args: str) -> bytes:
    """Run an mtools command; its stdout."""
    return subprocess.run(list(args), env=MT_ENV, check=True, capture_output=True).stdout


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The FAT12, FAT16-in-MBR and FAT32 reference images."""
    out = tmp_path_factory.mktemp("disks")
    return {name: build_fixture(name, out) for name in ("fat12", "fat16-mbr", "fat32")}
