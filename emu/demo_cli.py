"""`emu demo`: the default demo scenario for what is built so far.

It boots the ``cpu_events`` test kernel on the emulated PC (every exception
delivered, a ring 3 system call), then validates the committed demo disk
(``fixtures/disks/demo.img``) read-only against its baseline and rules, and
proves the disk bytes did not change.  The trap-handler scenario (validation
from a VM exit while a guest runs) replaces it when the host lands.
"""
from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

from emu import EmuError

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "firmware" / "build" / "cpu_events.elf"
DISK = ROOT / "fixtures" / "disks" / "demo.img"
BASELINE = ROOT / "fixtures" / "disks" / "demo.baseline.json"


def add_parsers(sub) -> None:
    """Register `emu demo`."""
    p = sub.add_parser("demo", help="run the default demo scenario",
                       description="Boot the cpu_events kernel (every exception delivered and reported), then "
                                   "validate the demo disk read-only against its baseline. Exit status 0 when "
                                   "both behave as expected.")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    """Run the demo; 0 when the guest ran to its exit and the disk validated clean and unchanged."""
    from emu.integrity import validate
    from emu.machine import Machine, MachineConfig
    from emu.storage.image import DiskImage

    for path in (KERNEL, DISK, BASELINE):
        if not path.exists():
            raise EmuError(f"demo input missing: {path} (run from a source checkout)")
    out = io.BytesIO()
    machine = Machine(MachineConfig(kernel=str(KERNEL)), console=lambda b: out.write(bytes((b,))))
    result = machine.run(max_insns=50_000_000)
    machine.close()
    lines = out.getvalue().decode(errors="replace").splitlines()
    print(f"[guest] booted {KERNEL.name}: {len(lines)} console lines, {result.icount} instructions, {result.message}")
    for line in lines:
        if "vector=" in line or line.endswith(":"):
            print(f"[guest]   {line}")
    before = hashlib.sha256(DISK.read_bytes()).hexdigest()
    image = DiskImage(str(DISK), read_only=True)
    try:
        findings = validate(image.view(), str(BASELINE))
    finally:
        image.close()
    after = hashlib.sha256(DISK.read_bytes()).hexdigest()
    summary = "clean" if findings.clean else f"{len(findings)} finding(s): {findings.counts()}"
    print(f"[monitor] validated {DISK.name} against {BASELINE.name} read-only: {summary}, {findings.checked} files checked")
    print(f"[monitor] disk sha256 before {before[:16]}… after {after[:16]}… ({'unchanged' if before == after else 'CHANGED'})")
    ok = result.status == 1 and before == after and findings.clean
    print("demo:", "ok" if ok else "FAILED")
    sys.stdout.flush()
    return 0 if ok else 1
