"""Firmware kernels for the debugger tests: symbol addresses (pyelftools) and instruction sites found in the ELF."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from elftools.elf.elffile import ELFFile

from tests.conftest import FIRMWARE

VMX_EXITS = FIRMWARE / "vmx_exits.elf"
CPU_EVENTS = FIRMWARE / "cpu_events.elf"


@lru_cache(maxsize=None)
def symbols(path: Path) -> dict[str, tuple[int, int]]:
    """Function and object symbols of an ELF: name -> (address, size)."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        table = elf.get_section_by_name(".symtab")
        return {s.name: (s["st_value"], s["st_size"]) for s in table.iter_symbols()
                if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT")}


def code_bytes(path: Path, addr: int, size: int) -> bytes:
    """``size`` bytes of the loaded image at virtual ``addr`` (from the ELF's PT_LOAD segments)."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            start, filesz = seg["p_vaddr"], seg["p_filesz"]
            if seg["p_type"] == "PT_LOAD" and start <= addr and addr + size <= start + filesz:
                off = addr - seg["p_vaddr"]
                return seg.data()[off:off + size]
    raise KeyError(f"{addr:#x}+{size} is not in a loaded segment of {path}")


def find_in(path: Path, function: str, pattern: bytes) -> int:
    """Address of the first occurrence of ``pattern`` inside ``function``'s code."""
    addr, size = symbols(path)[function]
    index = code_bytes(path, addr, size).find(pattern)
    if index < 0:
        raise KeyError(f"{pattern.hex()} not in {function}")
    return addr + index


def entry(path: Path) -> int:
    """The ELF entry point (where a multiboot kernel starts)."""
    with open(path, "rb") as f:
        return ELFFile(f).header["e_entry"]
