"""The committed firmware ELF files are reproducible from firmware/ sources and are valid multiboot v1 kernels."""
from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conftest import FIRMWARE, ROOT, require_tool

SOURCES = ROOT / "firmware" / "kernels"
MULTIBOOT_MAGIC = 0x1BADB002
COMMITTED = sorted(FIRMWARE.glob("*.elf"))


def test_every_kernel_source_has_a_committed_elf_and_back() -> None:
    """One kernels/<name>.c <-> one build/<name>.elf."""
    assert sorted(p.stem for p in SOURCES.glob("*.c")) == sorted(p.stem for p in COMMITTED)
    assert {"hello", "cpu_events", "vmx_exits", "triple_fault", "hypercall"} <= {p.stem for p in COMMITTED}


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    """`make -C firmware OUT=tmp` reproduces every committed ELF byte for byte."""
    require_tool("gcc", "ld", "make")
    out = tmp_path / "build"
    proc = subprocess.run(["make", "-C", str(ROOT / "firmware"), f"OUT={out}"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rebuilt = sorted(out.glob("*.elf"))
    assert [p.name for p in rebuilt] == [p.name for p in COMMITTED]
    different = [p.name for p in COMMITTED if p.read_bytes() != (out / p.name).read_bytes()]
    assert not different, f"rebuilt ELF differs from the committed one (run make -C firmware and commit): {different}"


def _multiboot_header(data: bytes) -> tuple[int, int, int, int]:
    """(offset, magic, flags, checksum) of the first 4-byte-aligned header in the first 8 KiB (Multiboot 0.6.96, 3.1.1)."""
    for off in range(0, min(len(data), 8192) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<III", data, off)
        if magic == MULTIBOOT_MAGIC:
            return off, magic, flags, checksum
    raise AssertionError("no multiboot header in the first 8 KiB")


@pytest.mark.parametrize("elf", COMMITTED, ids=lambda p: p.stem)
def test_committed_elf_is_a_multiboot_kernel(elf: Path) -> None:
    """Magic 0x1BADB002 in the first 8 KiB, checksum right, ELF32 i386 executable loaded at 1 MiB."""
    data = elf.read_bytes()
    off, magic, flags, checksum = _multiboot_header(data)
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    assert flags & 0x00010000 == 0          # no a.out kludge: the loader uses the ELF program headers
    assert flags & 0x2                      # memory information requested
    with open(elf, "rb") as f:
        e = ELFFile(f)
        assert e.elfclass == 32 and e.little_endian
        assert e["e_machine"] == "EM_386" and e["e_type"] == "ET_EXEC"
        loads = [s for s in e.iter_segments() if s["p_type"] == "PT_LOAD"]
        assert loads and min(s["p_paddr"] for s in loads) == 0x100000
        assert any(s["p_vaddr"] <= e["e_entry"] < s["p_vaddr"] + s["p_filesz"] for s in loads)
        # the header lies inside the first loaded segment's file image
        assert loads[0]["p_offset"] <= off < loads[0]["p_offset"] + loads[0]["p_filesz"]
        names = {s.name for s in e.iter_sections()}
        assert not names & {".comment", ".note.gnu.build-id", ".eh_frame"}
