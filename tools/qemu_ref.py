#!/usr/bin/env python3
"""Run a firmware kernel under QEMU (the reference) and under `emu run`, and compare the results.

Usage: python tools/qemu_ref.py KERNEL [--disk IMG]... [--mem 32] [--timeout S] [--qemu-only | --emu-only]

`--disk` may be given up to four times: primary master, primary slave, secondary master, secondary slave (QEMU
`-drive index=0..3`, the order of `emu run --disk`). Both runs get their own copy of every disk image (the
originals are never written). Compared: the debug-console transcript (port 0xE9 bytes), the exit status
(isa-debug-exit: (v << 1) | 1; a triple fault under `-no-reboot`: 0) and the SHA-256 of every disk copy after
the run. See docs/firmware.md, "QEMU reference".
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_SOURCES = ROOT / "firmware" / "kernels"
FIRMWARE_BUILD = ROOT / "firmware" / "build"
QEMU = "qemu-system-i386"
DEFAULT_MEM_MIB = 32
EMU_ONLY_MARKER = "emu-only"
REFERENCE_DISK_BYTES = 1 << 20
MAX_DISKS = 4
SLOT_NAMES = ("primary master", "primary slave", "secondary master", "secondary slave")
"""Disk slots in QEMU `-drive if=ide,index=N` order, which is also the order of `emu run --disk`."""

PathArg = Union[str, "os.PathLike[str]"]
DiskArg = Union[None, PathArg, Sequence[PathArg]]
"""One disk (the primary master), a sequence of up to four disks in slot order, or None."""


class ReferenceError(Exception):
    """A run could not be made (missing kernel, disk or QEMU): one clear line."""


@dataclass(frozen=True)
class RunResult:
    """What one run produced: debug-console bytes, exit status, SHA-256 of the disk copy afterwards."""

    stdout: bytes
    status: Optional[int]          # None when the run timed out
    disk_sha256: Optional[str]     # the first disk's (primary master); None when no disk was attached
    stderr: bytes = b""
    timed_out: bool = False
    command: tuple[str, ...] = field(default=(), compare=False)
    disk_sha256s: tuple[str, ...] = ()   # every disk's, in slot order (index 0..3)


@dataclass(frozen=True)
class Comparison:
    """The result of comparing a QEMU run with an emu run of the same kernel and disk."""

    qemu: RunResult
    emu: RunResult
    differences: tuple[str, ...]

    @property
    def identical(self) -> bool:
        """True when transcript, exit status and final disk hash all agree."""
        return not self.differences


def disk_list(disk: DiskArg) -> list[str]:
    """The disks of ``disk`` as path strings in slot order (index 0..3); a single path is the primary master."""
    if disk is None:
        return []
    if isinstance(disk, (str, os.PathLike)):
        return [os.fspath(disk)]
    disks = [os.fspath(d) for d in disk]
    if len(disks) > MAX_DISKS:
        raise ReferenceError(f"at most {MAX_DISKS} disks (primary/secondary, master/slave), got {len(disks)}")
    return disks


def qemu_command(kernel: str, disk: DiskArg = None, mem: int = DEFAULT_MEM_MIB,
                 append: Optional[str] = None) -> list[str]:
    """The QEMU command line of the reference: `pc` machine, TCG, no default devices besides the on-board ones.

    `-nodefaults` drops the default VGA, NIC, serial/parallel ports, floppy and CD-ROM drives; the PIIX3 IDE
    controller, the 8259 pair, the 8254 and PCI stay (they are on the board). SeaBIOS then puts the IDE bus
    master block (BAR4) at 0xC000 (BAR4 reads 0xC001); with QEMU's default devices a NIC takes 0xC000 first and
    BAR4 reads 0xC041. Disk i (0..3) is `-drive index=i`: primary master, primary slave, secondary master,
    secondary slave. `-no-reboot` turns a guest reset request (a triple fault) into QEMU exiting with status 0.
    """
    cmd = [QEMU, "-M", "pc", "-accel", "tcg", "-m", str(mem), "-nodefaults", "-no-user-config",
           "-display", "none", "-no-reboot", "-kernel", kernel,
           "-debugcon", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=1"]
    if append is not None:
        cmd += ["-append", append]
    for index, path in enumerate(disk_list(disk)):
        cmd += ["-drive", f"file={path},format=raw,if=ide,index={index},media=disk"]
    return cmd


def emu_command(kernel: str, disk: DiskArg = None, mem: int = DEFAULT_MEM_MIB,
                max_insns: Optional[int] = None) -> list[str]:
    """The `emu run` command line equivalent to qemu_command (same kernel path string, so the same cmdline)."""
    cmd = [sys.executable, "-m", "emu", "run", kernel, "--mem", str(mem)]
    for path in disk_list(disk):
        cmd += ["--disk", path]
    if max_insns is not None:
        cmd += ["--max-insns", str(max_insns)]
    return cmd


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_reference_disk(path: Path, size: int = REFERENCE_DISK_BYTES, label: str = "reference") -> Path:
    """Write the standard test disk: every 512-byte sector n holds "emu reference disk sector n" then bytes (n+i)&0xFF.

    ``label`` replaces the word "reference" (the multi-disk kernels tell their disks apart by it).
    """
    if size % 512:
        raise ReferenceError(f"disk size {size} is not a multiple of 512")
    with open(path, "wb") as f:
        for n in range(size // 512):
            head = f"emu {label} disk sector {n}\n".encode()
            tail = bytes((n + i) & 0xFF for i in range(len(head), 512))
            f.write(head + tail)
    return path


SLOT_DISKS = ((REFERENCE_DISK_BYTES, "reference"), (640 << 10, "slot1"), (2 << 20, "slot2"), (768 << 10, "slot3"))
"""Size and label of the disk in each slot for the multi-disk kernels (`make_slot_disks`)."""


def make_slot_disks(directory: Path, count: int = MAX_DISKS) -> list[Path]:
    """Write the first ``count`` disks of SLOT_DISKS into ``directory`` (slot0.img ...): one per IDE slot, in order."""
    return [make_reference_disk(Path(directory) / f"slot{i}.img", size, label)
            for i, (size, label) in enumerate(SLOT_DISKS[:count])]


def _check_inputs(kernel: str, disks: list[str]) -> None:
    if not Path(kernel).is_file():
        raise ReferenceError(f"no such kernel: {kernel}")
    for disk in disks:
        if not Path(disk).is_file():
            raise ReferenceError(f"no such disk image: {disk}")


def _run(cmd: list[str], disk_copies: list[Path], timeout: float, env: Optional[dict[str, str]] = None) -> RunResult:
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, env=env)
        stdout, stderr, status, timed_out = proc.stdout, proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as exc:
        stdout, stderr, status, timed_out = exc.stdout or b"", exc.stderr or b"", None, True
    except FileNotFoundError as exc:
        raise ReferenceError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    digests = tuple(sha256_file(copy) for copy in disk_copies)
    return RunResult(stdout, status, digests[0] if digests else None, stderr, timed_out, tuple(cmd), digests)


def _with_disk_copies(disks: list[str], tag: str, fn):
    if not disks:
        return fn([])
    with tempfile.TemporaryDirectory(prefix=f"qemu_ref_{tag}_") as tmp:
        copies = [Path(tmp) / ("disk.img" if i == 0 else f"disk{i}.img") for i in range(len(disks))]
        for disk, copy in zip(disks, copies):
            shutil.copyfile(disk, copy)
        return fn(copies)


def run_qemu(kernel: PathArg, disk: DiskArg = None, mem: int = DEFAULT_MEM_MIB, timeout: float = 10.0,
             append: Optional[str] = None) -> RunResult:
    """Run KERNEL under qemu-system-i386 on copies of the disks; return transcript, status and the copies' hashes."""
    kernel_s, disks = os.fspath(kernel), disk_list(disk)
    _check_inputs(kernel_s, disks)
    if shutil.which(QEMU) is None:
        raise ReferenceError(f"{QEMU} is not installed")
    return _with_disk_copies(disks, "qemu", lambda copies: _run(
        qemu_command(kernel_s, [os.fspath(c) for c in copies], mem, append), copies, timeout))


def run_emu(kernel: PathArg, disk: DiskArg = None, mem: int = DEFAULT_MEM_MIB, timeout: float = 60.0,
            max_insns: Optional[int] = None) -> RunResult:
    """Run KERNEL under `python -m emu run` (this checkout first on PYTHONPATH) on copies of the disks."""
    kernel_s, disks = os.fspath(kernel), disk_list(disk)
    _check_inputs(kernel_s, disks)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return _with_disk_copies(disks, "emu", lambda copies: _run(
        emu_command(kernel_s, [os.fspath(c) for c in copies], mem, max_insns), copies, timeout, env))


def _first_difference(a: bytes, b: bytes) -> str:
    la, lb = a.splitlines(keepends=True), b.splitlines(keepends=True)
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else b"<end of output>"
        y = lb[i] if i < len(lb) else b"<end of output>"
        if x != y:
            return f"transcripts differ at line {i + 1}: qemu {x!r} vs emu {y!r}"
    return "transcripts differ"


def compare(qemu: RunResult, emu: RunResult) -> Comparison:
    """Compare two runs: transcript bytes, exit status and final disk SHA-256 (and report timeouts)."""
    diffs: list[str] = []
    if qemu.timed_out:
        diffs.append("qemu timed out")
    if emu.timed_out:
        diffs.append("emu timed out")
    if qemu.stdout != emu.stdout:
        diffs.append(_first_difference(qemu.stdout, emu.stdout))
    if qemu.status != emu.status:
        diffs.append(f"exit status differs: qemu {qemu.status} vs emu {emu.status}")
    if max(len(qemu.disk_sha256s), len(emu.disk_sha256s)) <= 1:
        if qemu.disk_sha256 != emu.disk_sha256:
            diffs.append(f"final disk sha256 differs: qemu {qemu.disk_sha256} vs emu {emu.disk_sha256}")
    else:
        for i in range(max(len(qemu.disk_sha256s), len(emu.disk_sha256s))):
            q = qemu.disk_sha256s[i] if i < len(qemu.disk_sha256s) else None
            e = emu.disk_sha256s[i] if i < len(emu.disk_sha256s) else None
            if q != e:
                diffs.append(f"final sha256 of disk {i} ({SLOT_NAMES[i]}) differs: qemu {q} vs emu {e}")
    return Comparison(qemu, emu, tuple(diffs))


def run_both(kernel: PathArg, disk: DiskArg = None, mem: int = DEFAULT_MEM_MIB, timeout: float = 60.0) -> Comparison:
    """Run KERNEL under QEMU and emu with the same disk contents (one disk or up to four, slot order) and compare."""
    return compare(run_qemu(kernel, disk, mem, min(timeout, 30.0)), run_emu(kernel, disk, mem, timeout))


def is_emu_only(kernel_name: str, sources: Path = FIRMWARE_SOURCES) -> bool:
    """True when firmware/kernels/<name>.c says `emu-only` in its first line (no QEMU equivalent, e.g. VMCALL)."""
    src = sources / f"{kernel_name}.c"
    if not src.is_file():
        return False
    with open(src, encoding="utf-8") as f:
        return EMU_ONLY_MARKER in f.readline()


def reference_kernels(build: Path = FIRMWARE_BUILD, sources: Path = FIRMWARE_SOURCES) -> list[Path]:
    """Every built kernel that has a QEMU equivalent, sorted by name."""
    return [p for p in sorted(build.glob("*.elf")) if not is_emu_only(p.stem, sources)]


def format_run(name: str, r: RunResult) -> str:
    """A short human-readable summary of one run."""
    status = "timeout" if r.timed_out else str(r.status)
    disks = ", ".join(r.disk_sha256s) if r.disk_sha256s else (r.disk_sha256 or "-")
    return f"{name}: status {status}, {len(r.stdout)} bytes of output, disk {disks}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point: 0 = identical (or the single run succeeded), 1 = differences, 2 = unusable input."""
    ap = argparse.ArgumentParser(description="Compare a kernel's run under QEMU and under emu.")
    ap.add_argument("kernel")
    ap.add_argument("--disk", action="append", default=[], metavar="IMG",
                    help="raw disk image (a copy is used); repeat for primary master, primary slave, secondary "
                         "master, secondary slave")
    ap.add_argument("--mem", type=int, default=DEFAULT_MEM_MIB, help="guest RAM in MiB (default 32)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per run (default 60)")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--qemu-only", action="store_true", help="run QEMU only and print its transcript")
    only.add_argument("--emu-only", action="store_true", help="run emu only and print its transcript")
    args = ap.parse_args(argv)
    try:
        if args.qemu_only or args.emu_only:
            name, fn = ("qemu", run_qemu) if args.qemu_only else ("emu", run_emu)
            r = fn(args.kernel, args.disk or None, args.mem, args.timeout)
            sys.stdout.buffer.write(r.stdout)
            sys.stdout.flush()
            print(format_run(name, r), file=sys.stderr)
            return 1 if r.timed_out else 0
        c = run_both(args.kernel, args.disk or None, args.mem, args.timeout)
    except ReferenceError as exc:
        print(f"qemu_ref: {exc}", file=sys.stderr)
        return 2
    print(format_run("qemu", c.qemu))
    print(format_run("emu ", c.emu))
    if c.identical:
        print("IDENTICAL: transcript, exit status and final disk agree")
        return 0
    for d in c.differences:
        print(f"DIFFERENT: {d}")
    if c.emu.stderr:
        print("emu stderr (last lines):")
        for line in c.emu.stderr.decode(errors="replace").splitlines()[-5:]:
            print(f"  {line}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
