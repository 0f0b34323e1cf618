"""Multiboot v1 loading of ELF32 kernels, entered in the state QEMU's ``-kernel`` leaves.

Multiboot Specification 0.6.96 §3.1 (header), §3.2 (machine state), §3.3
(boot information).  Segments are loaded at their physical addresses
(``p_paddr``) like QEMU's loader; the boot information, command line and
memory map go on the first page after the kernel (QEMU's ``mb_buf``).
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from emu import EmuError

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
SEARCH_LIMIT = 8192
HEADER_AOUT_KLUDGE = 1 << 16

# multiboot_info.flags bits (§3.3)
INFO_MEMORY = 1 << 0
INFO_BOOTDEV = 1 << 1
INFO_CMDLINE = 1 << 2
INFO_MODS = 1 << 3
INFO_MEM_MAP = 1 << 6
INFO_BOOT_LOADER_NAME = 1 << 9

BOOT_LOADER_NAME = b"qemu\0"
LOW_MEMORY_KIB = 639            # what SeaBIOS reports below the EBDA (mem_lower)
EBDA_START = 639 * 1024


class BootError(EmuError):
    """The kernel file cannot be booted (one-line reason)."""


@dataclass
class Segment:
    """One PT_LOAD segment: physical address, file bytes, memory size."""

    paddr: int
    data: bytes
    memsz: int


@dataclass
class Kernel:
    """A parsed multiboot kernel ready to load."""

    path: str
    entry: int
    segments: list[Segment] = field(default_factory=list)
    header_flags: int = 0

    @property
    def end(self) -> int:
        """First physical address after the highest segment."""
        return max(s.paddr + s.memsz for s in self.segments)


def find_header(blob: bytes) -> tuple[int, int]:
    """(offset, flags) of the multiboot header in the first 8 KiB (§3.1.1), or raise BootError."""
    limit = min(len(blob), SEARCH_LIMIT) - 12
    for off in range(0, limit + 1, 4):
        magic, flags, checksum = struct.unpack_from("<III", blob, off)
        if magic == HEADER_MAGIC:
            if (magic + flags + checksum) & 0xFFFFFFFF:
                raise BootError("multiboot header checksum is wrong")
            return off, flags
    raise BootError("not a multiboot kernel (no multiboot header in the first 8 KiB)")


_ELF_CLASSES = {1: "32-bit", 2: "64-bit"}
_EM_386 = 3


def _check_elf_header(path: Path, blob: bytes) -> None:
    """The ELF identification and header fields an i386 multiboot kernel needs (System V ABI, ELF header)."""
    if len(blob) < 52:
        raise BootError(f"kernel {path}: truncated ELF header ({len(blob)} bytes, an ELF32 header has 52)")
    if blob[4] != 1:
        raise BootError(f"kernel {path}: {_ELF_CLASSES.get(blob[4], f'class {blob[4]}')} ELF, "
                        f"an i386 kernel is ELF32 (EI_CLASS 1)")
    if blob[5] != 1:
        raise BootError(f"kernel {path}: not a little-endian ELF (EI_DATA {blob[5]}), as an i386 kernel is")
    machine, = struct.unpack_from("<H", blob, 18)
    if machine != _EM_386:
        raise BootError(f"kernel {path}: built for ELF machine {machine}, not i386 (EM_386 = 3)")
    phoff, = struct.unpack_from("<I", blob, 28)
    phentsize, phnum = struct.unpack_from("<HH", blob, 42)
    if phnum and phoff + phentsize * phnum > len(blob):
        raise BootError(f"kernel {path}: program header table ({phnum} entries at offset {phoff}) runs past the "
                        f"end of the file ({len(blob)} bytes)")


def _elf_problem(exc: Exception) -> str:
    """A parser exception as a reason a user can act on."""
    text = str(exc)
    if "expected" in text and "found" in text:
        return "a header or table points past the end of the file"
    return text


def parse(path: str | Path, mem_size: int) -> Kernel:
    """Read and check an ELF32 multiboot kernel; every problem is one BootError line."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise BootError(f"kernel {path}: no such file") from None
    except IsADirectoryError:
        raise BootError(f"kernel {path}: is a directory") from None
    except OSError as exc:
        raise BootError(f"kernel {path}: {exc.strerror}") from None
    try:
        _off, hflags = find_header(blob)
    except BootError as exc:
        raise BootError(f"kernel {path}: {exc}") from None
    if blob[:4] != b"\x7fELF":   # a multiboot a.out-kludge image
        raise BootError(f"kernel {path}: not an ELF file (only ELF multiboot kernels are supported)")
    _check_elf_header(path, blob)
    try:
        elf = ELFFile(io.BytesIO(blob))
        entry = elf["e_entry"]
        segments = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            offset, filesz, memsz, paddr = seg["p_offset"], seg["p_filesz"], seg["p_memsz"], seg["p_paddr"]
            if offset + filesz > len(blob):
                raise BootError(f"kernel {path}: truncated (segment at {paddr:#x} needs bytes up to "
                                f"{offset + filesz}, file has {len(blob)})")
            if filesz > memsz:
                raise BootError(f"kernel {path}: segment at {paddr:#x} has filesz > memsz")
            segments.append(Segment(paddr, blob[offset:offset + filesz], memsz))
    except (ELFError, struct.error, ValueError) as exc:
        raise BootError(f"kernel {path}: malformed ELF: {_elf_problem(exc)}") from None
    if not segments:
        raise BootError(f"kernel {path}: no loadable segments")
    segments.sort(key=lambda s: s.paddr)
    for a, b in zip(segments, segments[1:]):
        if a.paddr + a.memsz > b.paddr:
            raise BootError(f"kernel {path}: segments overlap at {b.paddr:#x}")
    for s in segments:
        if s.paddr < 0x100000 or s.paddr + s.memsz > mem_size:
            raise BootError(f"kernel {path}: segment {s.paddr:#x}-{s.paddr + s.memsz:#x} is outside usable RAM "
                            f"(1 MiB-{mem_size // (1024 * 1024)} MiB)")
    if not any(s.paddr <= entry < s.paddr + s.memsz for s in segments):
        raise BootError(f"kernel {path}: entry point {entry:#x} is not inside a loaded segment")
    return Kernel(str(path), entry, segments, hflags)


@dataclass
class BootInfo:
    """Where the multiboot information was placed and what the kernel is entered with."""

    entry: int
    mbi_addr: int
    cmdline: bytes


def e820_map(mem_size: int) -> list[tuple[int, int, int]]:
    """(base, length, type) entries like SeaBIOS's for a ``pc`` machine with ``mem_size`` bytes."""
    return [
        (0, EBDA_START, 1),
        (EBDA_START, 0xA0000 - EBDA_START, 2),
        (0xF0000, 0x10000, 2),
        (0x100000, mem_size - 0x100000 - 0x20000, 1),
        (mem_size - 0x20000, 0x20000, 2),
        (0xFFFC0000, 0x40000, 2),
    ]


def build_info(kernel: Kernel, mem_size: int, cmdline: str) -> tuple[int, bytes, bytes]:
    """(address, bytes) of the boot information page, and the command line placed in it."""
    base = (kernel.end + 0xFFF) & ~0xFFF
    line = (kernel.path + " " + cmdline).encode() + b"\0"  # QEMU: "<path> <append>", even when empty
    mbi_size = 88
    mmap = b"".join(struct.pack("<IQQI", 20, b, n, t) for b, n, t in e820_map(mem_size))
    cmd_addr = base + mbi_size
    name_addr = cmd_addr + len(line)
    mmap_addr = (name_addr + len(BOOT_LOADER_NAME) + 3) & ~3
    flags = INFO_MEMORY | INFO_BOOTDEV | INFO_CMDLINE | INFO_MODS | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME
    fields = [0] * 22
    fields[0] = flags
    fields[1] = LOW_MEMORY_KIB
    fields[2] = mem_size // 1024 - 1024 - 128     # up to the first hole (SeaBIOS reserves the top 128 KiB)
    fields[3] = 0x8000FFFF                        # boot device: first BIOS disk, no partition
    fields[4] = cmd_addr
    fields[5] = 0                                 # mods_count
    fields[6] = base                              # mods_addr (no modules)
    fields[11] = len(mmap)
    fields[12] = mmap_addr + 4 - 4                # entries start with their size field
    fields[16] = name_addr
    page = bytearray(mmap_addr - base + len(mmap))
    struct.pack_into("<22I", page, 0, *fields)
    page[cmd_addr - base:cmd_addr - base + len(line)] = line
    page[name_addr - base:name_addr - base + len(BOOT_LOADER_NAME)] = BOOT_LOADER_NAME
    page[mmap_addr - base:] = mmap
    if base + len(page) > mem_size:
        raise BootError("kernel leaves no room for the multiboot information in RAM")
    return base, bytes(page), line
