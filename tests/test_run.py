"""`emu run` as a user runs it (a subprocess): exit statuses and the one-line messages of DESIGN.md's contract.

Contract: guest port-0xE9 bytes go to stdout unchanged; a write of v to port 0xF4 ends the run with status
(v << 1) | 1; a guest shutdown (triple fault) ends it with status 0 and the reason on stderr; the instruction
limit ends it with status 124; an unusable input ends it with status 2 and one line on stderr ("emu: ...").
The byte-for-byte comparison with QEMU for every kernel lives in tests/test_qemu_reference.py.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FIRMWARE, ROOT

HELLO = FIRMWARE / "hello.elf"
COMPUTE = FIRMWARE / "compute.elf"
TRIPLE_FAULT = FIRMWARE / "triple_fault.elf"

# ELF32 header fields (System V ABI, ELF header): e_phoff at 28, e_phentsize/e_phnum at 42/44.
E_PHOFF, E_PHENTSIZE, E_PHNUM = 28, 42, 44
PHDR = struct.Struct("<8I")   # p_type p_offset p_vaddr p_paddr p_filesz p_memsz p_flags p_align
PT_LOAD = 1
MULTIBOOT_MAGIC = struct.pack("<I", 0x1BADB002)

# Observed under QEMU 7.2: `python tools/qemu_ref.py --qemu-only firmware/build/hello.elf` run from the
# repository root (QEMU's command line is "<the -kernel path as given> <-append>"), exit status 1.
HELLO_QEMU_TRANSCRIPT = (
    b"hello from emu firmware\n"
    b"magic=2badb002\n"
    b"flags=0000024f\n"
    b"mem_lower=639 KiB mem_upper=31616 KiB\n"
    b'cmdline="firmware/build/hello.elf "\n'
    b'loader="qemu"\n'
    b"cr0=00000011 if=0\n"
    b"bye\n"
)


@dataclass
class Run:
    """One `emu run` process: status, stdout bytes, stderr text."""

    status: int
    stdout: bytes
    stderr: str


def emu_run(*args: str | Path, timeout: float = 60) -> Run:
    """Run `python -m emu run ARGS...` from the repository root."""
    proc = subprocess.run([sys.executable, "-m", "emu", "run", *map(str, args)], cwd=ROOT,
                          capture_output=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def assert_one_error_line(run: Run, status: int = 2) -> str:
    """Status ``status``, nothing on stdout, exactly one "emu: ..." line on stderr; returns that line."""
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("emu: "), lines[0]
    assert run.stdout == b""
    assert run.status == status, (run.status, run.stderr)
    return lines[0]


# --- kernels that cannot be used --------------------------------------------------------------------------

def test_missing_kernel(tmp_path: Path) -> None:
    line = assert_one_error_line(emu_run(tmp_path / "missing.elf"))
    assert "missing.elf" in line and "no such file" in line


def test_directory_as_kernel(tmp_path: Path) -> None:
    line = assert_one_error_line(emu_run(tmp_path))
    assert "directory" in line


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.elf"
    empty.write_bytes(b"")
    assert_one_error_line(emu_run(empty))


def test_non_elf_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a kernel\n" * 100)
    line = assert_one_error_line(emu_run(text))
    assert "multiboot" in line or "ELF" in line


def test_non_elf_file_with_a_multiboot_header(tmp_path: Path) -> None:
    """A raw image whose multiboot header is valid (an a.out-kludge style binary): only ELF is supported."""
    blob = bytearray(4096)
    flags = 0x00000003
    blob[64:76] = struct.pack("<III", 0x1BADB002, flags, (-(0x1BADB002 + flags)) & 0xFFFFFFFF)
    image = tmp_path / "raw.bin"
    image.write_bytes(bytes(blob))
    line = assert_one_error_line(emu_run(image))
    assert "ELF" in line


def test_elf_without_multiboot_header(tmp_path: Path) -> None:
    blob = HELLO.read_bytes()
    assert blob.count(MULTIBOOT_MAGIC) == 1
    kernel = tmp_path / "no_multiboot.elf"
    kernel.write_bytes(blob.replace(MULTIBOOT_MAGIC, b"\0\0\0\0"))
    line = assert_one_error_line(emu_run(kernel))
    assert "multiboot" in line


def test_elf_with_a_bad_multiboot_checksum(tmp_path: Path) -> None:
    blob = bytearray(HELLO.read_bytes())
    at = blob.index(MULTIBOOT_MAGIC)
    blob[at + 8] ^= 1
    kernel = tmp_path / "bad_checksum.elf"
    kernel.write_bytes(bytes(blob))
    line = assert_one_error_line(emu_run(kernel))
    assert "checksum" in line


def test_truncated_elf(tmp_path: Path) -> None:
    blob = HELLO.read_bytes()
    kernel = tmp_path / "half.elf"
    kernel.write_bytes(blob[: len(blob) // 2])   # keeps the multiboot header (in the first page of the image)
    assert MULTIBOOT_MAGIC in kernel.read_bytes()
    line = assert_one_error_line(emu_run(kernel))
    assert "truncated" in line


def test_elf_truncated_inside_its_header(tmp_path: Path) -> None:
    kernel = tmp_path / "stub.elf"
    kernel.write_bytes(HELLO.read_bytes()[:40])
    assert_one_error_line(emu_run(kernel))


@pytest.mark.parametrize("patch, expected", [
    ((4, b"\x02"), "64-bit ELF, an i386 kernel is ELF32"),
    ((5, b"\x02"), "not a little-endian ELF (EI_DATA 2)"),
    ((18, b"\x3e\x00"), "built for ELF machine 62, not i386 (EM_386 = 3)"),
    ((28, b"\xff\xff\x00\x00"), "program header table (1 entries at offset 65535) runs past the end of the file"),
])
def test_elf_header_fields_an_i386_kernel_needs(tmp_path: Path, patch: tuple[int, bytes], expected: str) -> None:
    """ELF identification and header checks (System V ABI): the line names the field and what was found."""
    blob = bytearray(HELLO.read_bytes())
    offset, data = patch
    blob[offset:offset + len(data)] = data
    kernel = tmp_path / "patched.elf"
    kernel.write_bytes(bytes(blob))
    line = assert_one_error_line(emu_run(kernel))
    assert expected in line and str(kernel) in line


def _with_program_headers(blob: bytes, phdrs: list[tuple[int, ...]]) -> bytes:
    """A copy of an ELF32 file whose program header table is replaced by ``phdrs`` (appended at the end)."""
    out = bytearray(blob)
    while len(out) % 4:
        out.append(0)
    offset = len(out)
    for ph in phdrs:
        out += PHDR.pack(*ph)
    struct.pack_into("<I", out, E_PHOFF, offset)
    struct.pack_into("<HH", out, E_PHENTSIZE, PHDR.size, len(phdrs))
    return bytes(out)


def _load_segment(blob: bytes) -> tuple[int, ...]:
    (phoff,) = struct.unpack_from("<I", blob, E_PHOFF)
    entsize, count = struct.unpack_from("<HH", blob, E_PHENTSIZE)
    loads = [PHDR.unpack_from(blob, phoff + i * entsize) for i in range(count)]
    loads = [ph for ph in loads if ph[0] == PT_LOAD]
    assert len(loads) == 1
    return loads[0]


def test_elf_with_overlapping_segments(tmp_path: Path) -> None:
    blob = HELLO.read_bytes()
    ph = _load_segment(blob)
    p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align = ph
    assert p_memsz > 0x1000
    second = (p_type, p_offset, p_vaddr + 0x1000, p_paddr + 0x1000, p_filesz, p_memsz, p_flags, p_align)
    kernel = tmp_path / "overlap.elf"
    kernel.write_bytes(_with_program_headers(blob, [ph, second]))
    line = assert_one_error_line(emu_run(kernel))
    assert "overlap" in line


def test_the_patched_program_headers_alone_are_accepted(tmp_path: Path) -> None:
    """Control for the overlap test: the same relocation of the table with one segment still boots."""
    blob = HELLO.read_bytes()
    kernel = tmp_path / "moved_phdrs.elf"
    kernel.write_bytes(_with_program_headers(blob, [_load_segment(blob)]))
    run = emu_run(kernel)
    assert run.status == 1 and run.stdout.startswith(b"hello from emu firmware\n"), run.stderr


def test_segment_beyond_the_file(tmp_path: Path) -> None:
    blob = HELLO.read_bytes()
    ph = list(_load_segment(blob))
    ph[4] = ph[5] = len(blob) * 2       # p_filesz/p_memsz reach past the end of the file
    kernel = tmp_path / "long_segment.elf"
    kernel.write_bytes(_with_program_headers(blob, [tuple(ph)]))
    assert_one_error_line(emu_run(kernel))


def test_kernel_that_does_not_fit_in_ram() -> None:
    """--mem 1: the kernel's segment at 1 MiB is outside RAM."""
    line = assert_one_error_line(emu_run(HELLO, "--mem", "1"))
    assert "RAM" in line or "memory" in line


def test_memory_size_out_of_range() -> None:
    assert_one_error_line(emu_run(HELLO, "--mem", "100000"))


# --- disks that cannot be used --------------------------------------------------------------------------

def test_missing_disk_image(tmp_path: Path) -> None:
    line = assert_one_error_line(emu_run(HELLO, "--disk", tmp_path / "missing.img"))
    assert "missing.img" in line


def test_directory_as_disk_image(tmp_path: Path) -> None:
    assert_one_error_line(emu_run(HELLO, "--disk", tmp_path))


def test_disk_image_with_a_partial_sector(tmp_path: Path) -> None:
    image = tmp_path / "odd.img"
    image.write_bytes(bytes(1000))
    line = assert_one_error_line(emu_run(HELLO, "--disk", image))
    assert "512" in line


def test_more_than_four_disks(tmp_path: Path) -> None:
    args: list[str | Path] = []
    for i in range(5):
        image = tmp_path / f"d{i}.img"
        image.write_bytes(bytes(512 * 8))
        args += ["--disk", image]
    line = assert_one_error_line(emu_run(HELLO, *args))
    assert "4" in line


def test_a_usable_disk_does_not_change_hello(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    run = emu_run(HELLO.relative_to(ROOT), "--disk", image)
    assert run.status == 1 and run.stdout == HELLO_QEMU_TRANSCRIPT and run.stderr == ""
    assert image.read_bytes() == bytes(1 << 20)


# --- command-line errors (argparse: status 2, usage, no traceback) -----------------------------------------

@pytest.mark.parametrize("args", [("--mem", "0"), ("--mem", "-4"), ("--max-insns", "abc"), ("--max-insns", "0")],
                         ids=["mem-0", "mem-negative", "max-insns-abc", "max-insns-0"])
def test_bad_arguments(args: tuple[str, str]) -> None:
    run = emu_run(HELLO, *args)
    assert run.status == 2
    assert run.stdout == b""
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [run.stderr.strip()]          # one line, no usage block
    assert run.stderr.startswith("emu run: argument " + args[0]) and "(see 'emu run --help')" in run.stderr


def test_missing_kernel_argument() -> None:
    run = emu_run()
    assert run.status == 2 and run.stdout == b""
    assert run.stderr == "emu run: the following arguments are required: KERNEL (see 'emu run --help')\n"


def test_leftover_arguments_are_blamed_on_the_subcommand() -> None:
    run = emu_run(HELLO, "surplus")
    assert run.status == 2 and run.stdout == b""
    assert run.stderr == "emu run: unrecognized arguments: surplus (see 'emu run --help')\n"


# --- guests that end ---------------------------------------------------------------------------------------

def test_hello_exits_through_the_debug_exit_port() -> None:
    """exit(0) writes 0 to port 0xF4: status (0 << 1) | 1; stdout is QEMU's transcript, stderr is empty."""
    run = emu_run(HELLO.relative_to(ROOT))
    assert run.status == 1
    assert run.stdout == HELLO_QEMU_TRANSCRIPT
    assert run.stderr == ""


def test_kernel_path_and_cmdline_reach_the_guest(tmp_path: Path) -> None:
    kernel = tmp_path / "k.elf"
    shutil.copy(HELLO, kernel)
    run = emu_run(kernel, "--cmdline", "a=1 b")
    assert run.status == 1
    assert f'cmdline="{kernel} a=1 b"\n'.encode() in run.stdout


def test_triple_fault_ends_the_run_with_status_0() -> None:
    run = emu_run(TRIPLE_FAULT)
    assert run.status == 0
    # QEMU 7.2 prints exactly this line and nothing else (tests/test_qemu_reference.py).
    assert run.stdout == b"triple_fault: loading an empty IDT and executing ud2\n"
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("emu: ") and "triple fault" in lines[0], run.stderr


def test_instruction_limit_ends_a_long_guest_with_status_124() -> None:
    run = emu_run(COMPUTE, "--max-insns", "50000")
    assert run.status == 124
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("emu: ") and "instruction limit" in lines[0], run.stderr
    assert b"compute done" not in run.stdout


def test_instruction_limit_larger_than_the_run_changes_nothing() -> None:
    run = emu_run(HELLO.relative_to(ROOT), "--max-insns", "100000000")
    assert run.status == 1 and run.stdout == HELLO_QEMU_TRANSCRIPT and run.stderr == ""


def test_disk_slots_follow_qemus_drive_index(tmp_path: Path) -> None:
    """`--disk 2=IMG` puts the only disk on the secondary master (QEMU -drive index=2): ide_slots sees it there."""
    img = tmp_path / "sm.img"
    img.write_bytes(bytes(1 << 20))
    run = emu_run(FIRMWARE / "ide_slots.elf", "--disk", f"2={img}", "--max-insns", "50000000")
    text = run.stdout.decode()
    assert "primary master: no drive" in text and "primary slave: no drive" in text
    assert 'secondary master: status 58, serial "QM00003"' in text and "secondary slave: no drive" in text
    twice = emu_run(HELLO, "--disk", f"0={img}", "--disk", f"0={img}")
    assert twice.status == 2 and twice.stderr == f"emu: --disk 0={img}: IDE slot 0 already holds {img}\n"
    five = emu_run(HELLO, *sum((["--disk", str(img)] for _ in range(5)), []))
    assert five.status == 2 and "at most 4 disks" in five.stderr
