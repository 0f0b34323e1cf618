#!/usr/bin/env python3
"""Run a firmware kernel under QEMU (the reference) and under `emu run`, and compare the results.

Usage: python tools/qemu_ref.py KERNEL [--disk IMG] [--mem 32] [--timeout S] [--qemu-only | --emu-only]

Both runs get their own copy of the disk image (the original is never written). Compared: the debug-console
transcript (port 0xE9 bytes), the exit status (isa-debug-exit: (v << 1) | 1; a triple fault under
`-no-reboot`: 0) and the SHA-256 of the disk copy after the run. See docs/firmware.md, "QEMU reference".
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
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_SOURCES = ROOT / "firmware" / "kernels"
FIRMWARE_BUILD = ROOT / "firmware" / "build"
QEMU = "qemu-system-i386"
DEFAULT_MEM_MIB = 32
EMU_ONLY_MARKER = "emu-only"
REFERENCE_DISK_BYTES = 1 << 20


class ReferenceError(Exception):
    """A run could not be made (missing kernel, disk or QEMU): one clear line."""


@dataclass(frozen=True)
class RunResult:
    """What one run produced: debug-console bytes, exit status, SHA-256 of the disk copy afterwards."""

    stdout: bytes
    status: Optional[int]          # None when the run timed out
    disk_sha256: Optional[str]     # None when no disk was attached
    stderr: bytes = b""
    timed_out: bool = False
    command: tuple[str, ...] = field(default=(), compare=False)


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


def qemu_command(kernel: str, disk: Optional[str] = None, mem: int = DEFAULT_MEM_MIB,
                 append: Optional[str] = None) -> list[str]:
    """The QEMU command line of the reference: `pc` machine, TCG, no default devices besides the on-board ones.

    `-nodefaults` drops the default VGA, NIC, serial/parallel ports, floppy and CD-ROM drives; the PIIX3 IDE
    controller, the 8259 pair, the 8254 and PCI stay (they are on the board). The disk, when given, is the
    primary master. `-no-reboot` turns a guest reset request (a triple fault) into QEMU exiting with status 0.
    """
    cmd = [QEMU, "-M", "pc", "-accel", "tcg", "-m", str(mem), "-nodefaults", "-no-user-config",
           "-display", "none", "-no-reboot", "-kernel", kernel,
           "-debugcon", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=1"]
    if append is not None:
        cmd += ["-append", append]
    if disk is not None:
        cmd += ["-drive", f"file={disk},format=raw,if=ide,index=0,media=disk"]
    return cmd


def emu_command(kernel: str, disk: Optional[str] = None, mem: int = DEFAULT_MEM_MIB,
                max_insns: Optional[int] = None) -> list[str]:
    """The `emu run` command line equivalent to qemu_command (same kernel path string, so the same cmdline)."""
    cmd = [sys.executable, "-m", "emu", "run", kernel, "--mem", str(mem)]
    if disk is not None:
        cmd += ["--disk", disk]
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


def make_reference_disk(path: Path, size: int = REFERENCE_DISK_BYTES) -> Path:
    """Write the standard test disk: every 512-byte sector n holds "emu reference disk sector n" then bytes (n+i)&0xFF."""
    if size % 512:
        raise ReferenceError(f"disk size {size} is not a multiple of 512")
    with open(path, "wb") as f:
        for n in range(size // 512):
            head = f"emu reference disk sector {n}\n".encode()
            tail = bytes((n + i) & 0xFF for i in range(len(head), 512))
            f.write(head + tail)
    return path


def _check_inputs(kernel: str, disk: Optional[str]) -> None:
    if not Path(kernel).is_file():
        raise ReferenceError(f"no such kernel: {kernel}")
    if disk is not None and not Path(disk).is_file():
        raise ReferenceError(f"no such disk image: {disk}")


def _run(cmd: list[str], disk_copy: Optional[Path], timeout: float, env: Optional[dict[str, str]] = None) -> RunResult:
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, env=env)
        stdout, stderr, status, timed_out = proc.stdout, proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as exc:
        stdout, stderr, status, timed_out = exc.stdout or b"", exc.stderr or b"", None, True
    except FileNotFoundError as exc:
        raise ReferenceError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    digest = sha256_file(disk_copy) if disk_copy is not None else None
    return RunResult(stdout, status, digest, stderr, timed_out, tuple(cmd))


def _with_disk_copy(disk: Optional[str], tag: str, fn):
    if disk is None:
        return fn(None)
    with tempfile.TemporaryDirectory(prefix=f"qemu_ref_{tag}_") as tmp:
        copy = Path(tmp) / "disk.img"
        shutil.copyfile(disk, copy)
        return fn(copy)


def run_qemu(kernel: str | os.PathLike[str], disk: Optional[str | os.PathLike[str]] = None,
             mem: int = DEFAULT_MEM_MIB, timeout: float = 10.0, append: Optional[str] = None) -> RunResult:
    """Run KERNEL under qemu-system-i386 on a copy of DISK; return transcript, status and the copy's final hash."""
    kernel_s, disk_s = os.fspath(kernel), (os.fspath(disk) if disk is not None else None)
    _check_inputs(kernel_s, disk_s)
    if shutil.which(QEMU) is None:
        raise ReferenceError(f"{QEMU} is not installed")
    return _with_disk_copy(disk_s, "qemu", lambda copy: _run(
        qemu_command(kernel_s, os.fspath(copy) if copy else None, mem, append), copy, timeout))


def run_emu(kernel: str | os.PathLike[str], disk: Optional[str | os.PathLike[str]] = None,
            mem: int = DEFAULT_MEM_MIB, timeout: float = 60.0, max_insns: Optional[int] = None) -> RunResult:
    """Run KERNEL under `python -m emu run` (this checkout first on PYTHONPATH) on a copy of DISK."""
    kernel_s, disk_s = os.fspath(kernel), (os.fspath(disk) if disk is not None else None)
    _check_inputs(kernel_s, disk_s)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return _with_disk_copy(disk_s, "emu", lambda copy: _run(
        emu_command(kernel_s, os.fspath(copy) if copy else None, mem, max_insns), copy, timeout, env))


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
    if qemu.disk_sha256 != emu.disk_sha256:
        diffs.append(f"final disk sha256 differs: qemu {qemu.disk_sha256} vs emu {emu.disk_sha256}")
    return Comparison(qemu, emu, tuple(diffs))


def run_both(kernel: str | os.PathLike[str], disk: Optional[str | os.PathLike[str]] = None,
             mem: int = DEFAULT_MEM_MIB, timeout: float = 60.0) -> Comparison:
    """Run KERNEL under QEMU and emu with the same disk contents and compare."""
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
    return f"{name}: status {status}, {len(r.stdout)} bytes of output, disk {r.disk_sha256 or '-'}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point: 0 = identical (or the single run succeeded), 1 = differences, 2 = unusable input."""
    ap = argparse.ArgumentParser(description="Compare a kernel's run under QEMU and under emu.")
    ap.add_argument("kernel")
    ap.add_argument("--disk", help="raw disk image for the primary master (a copy is used)")
    ap.add_argument("--mem", type=int, default=DEFAULT_MEM_MIB, help="guest RAM in MiB (default 32)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per run (default 60)")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--qemu-only", action="store_true", help="run QEMU only and print its transcript")
    only.add_argument("--emu-only", action="store_true", help="run emu only and print its transcript")
    args = ap.parse_args(argv)
    try:
        if args.qemu_only or args.emu_only:
            name, fn = ("qemu", run_qemu) if args.qemu_only else ("emu", run_emu)
            r = fn(args.kernel, args.disk, args.mem, args.timeout)
            sys.stdout.buffer.write(r.stdout)
            sys.stdout.flush()
            print(format_run(name, r), file=sys.stderr)
            return 1 if r.timed_out else 0
        c = run_both(args.kernel, args.disk, args.mem, args.timeout)
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
