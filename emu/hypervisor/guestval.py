"""Validation by a management guest (US patent 7,539,986, FIG. 3): the other guest's disk is mounted read-only
in the management guest for a short window and analysed by the management guest's own code.

At block 340 the monitor hot-plugs the application guest's disk, read-only, as the management guest's secondary
master (ATA writes are aborted) and the application guest is not scheduled until block 360.  The management guest
learns of the mount and answers through hypercalls (ABI in ``docs/mgmt-validator.md`` and the README):

* leaf 2 MOUNT_POLL (EBX = buffer, ECX = size): 1 and a job descriptor (the baseline's protected directories and
  files with their sizes and SHA-256) when a disk is mounted for it, else 0;
* leaf 3 FINDINGS (EBX = record, ECX = length): per protected file a status and the content hash it computed;
* leaf 4 UNMOUNT: done — the disk goes back (block 360).

The record is checked and turned into the same :class:`~emu.integrity.findings.Findings` the monitor-side validator
produces (file-level kinds: added, removed, changed, unreadable).  A deadline in the management guest's
virtual time (instructions, time spent halted included) bounds the window: past it the monitor remaps back anyway and records a failed validation.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from emu.integrity.findings import Finding, FindingKind, Findings

LEAF_MOUNT_POLL, LEAF_FINDINGS, LEAF_UNMOUNT = 2, 3, 4
JOB_MAGIC, FIND_MAGIC = 0x424F4A56, 0x444E4946      # 'VJOB', 'FIND'
PATH_LEN = 64
JOB_HEADER = struct.Struct("<6I")
JOB_FILE = struct.Struct(f"<{PATH_LEN}sI32s")
FIND_HEADER = struct.Struct("<4I")
FIND_ENTRY = struct.Struct(f"<{PATH_LEN}sII32s")
STATUS = {0: None, 1: FindingKind.CHANGED, 2: FindingKind.REMOVED, 3: FindingKind.ADDED, 4: FindingKind.UNREADABLE}
EFAULT, EINVAL = -14, -22


@dataclass
class Job:
    """One mount window."""

    job_id: int
    target: Any                 # the Machine whose disk is mounted
    drive: Any                  # its AtaDrive the disk came from
    backing: Any
    started: int                # validator virtual time (instructions, halted time included) at mount
    delivered: bool = False
    findings: Optional[Findings] = None
    error: Optional[str] = None


@dataclass
class GuestValidator:
    """The monitor's side of the management-guest validation ABI for one validator guest."""

    validator: Any              # the management Machine
    baseline: Any               # emu.integrity.baseline.Baseline
    deadline: int               # instructions of the validator guest per window
    on_done: Callable[[Job], None]
    job: Optional[Job] = None
    jobs: int = 0
    files: list[tuple[str, int, bytes]] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path, attrs in sorted(self.baseline.files.items()):
            if attrs.get("type") == "dir":
                self.dirs.append(path)
            else:
                self.files.append((path, int(attrs.get("size", 0)), bytes.fromhex(attrs.get("sha256", "00" * 32))))
        for p in self.baseline.paths:
            p = p.rstrip("*").rstrip("/") or "/"
            if p not in self.dirs:
                self.dirs.append(p)
        m = self.validator
        m.hypercalls[LEAF_MOUNT_POLL] = self._mount_poll
        m.hypercalls[LEAF_FINDINGS] = self._findings
        m.hypercalls[LEAF_UNMOUNT] = self._unmount

    @property
    def busy(self) -> bool:
        return self.job is not None

    # --- blocks 340 / 360 ---------------------------------------------------------
    def mount(self, target, drive) -> Job:
        """Block 340: take ``drive``'s disk from ``target`` and hot-plug it read-only into the validator."""
        backing = drive.detach()
        slot = self.validator.platform.ide[1].drives[0]
        slot.insert(backing.view() if hasattr(backing, "view") else backing, read_only=True)
        self.jobs += 1
        self.job = Job(self.jobs, target, drive, backing, self.validator.cpu.vtime)
        return self.job

    def _finish(self, error: Optional[str] = None) -> None:
        """Block 360: the disk goes back to its guest; the job is reported."""
        job, self.job = self.job, None
        slot = self.validator.platform.ide[1].drives[0]
        try:
            slot.eject()
        except Exception as exc:        # a command in flight: take it anyway (the window is over)
            slot.backing = None
            slot.st.present = False
            error = error or f"validator disk busy at unmount ({exc})"
        job.drive.attach(job.backing)
        if error and job.error is None:
            job.error = error
        self.on_done(job)

    def check_deadline(self) -> None:
        """Past the deadline the monitor remaps back anyway and records a failed validation."""
        job = self.job
        if job is not None and self.validator.cpu.vtime - job.started > self.deadline:
            self._finish(f"management guest did not finish within {self.deadline} instructions")

    def abort(self, why: str) -> None:
        """The validator guest ended during a window."""
        if self.job is not None:
            self._finish(why)

    # --- hypercalls -----------------------------------------------------------------
    def _mount_poll(self, machine) -> int:
        job = self.job
        if job is None or job.delivered:
            return 0
        cpu = machine.cpu
        addr, size = cpu.reg("ebx"), cpu.reg("ecx")
        blob = JOB_HEADER.pack(JOB_MAGIC, 1, job.job_id, 0, len(self.dirs), len(self.files))
        blob += b"".join(_path(d) for d in self.dirs)
        blob += b"".join(JOB_FILE.pack(_path(p), size_, digest) for p, size_, digest in self.files)
        if len(blob) > size or not cpu.contains(addr, len(blob)):
            return EFAULT
        cpu.write_phys(addr, blob)
        job.delivered = True
        return 1

    def _findings(self, machine) -> int:
        job = self.job
        if job is None:
            return EINVAL
        cpu = machine.cpu
        addr, size = cpu.reg("ebx"), cpu.reg("ecx")
        if size < FIND_HEADER.size or not cpu.contains(addr, size):
            return EFAULT
        data = cpu.read_phys(addr, size)
        magic, version, job_id, n = FIND_HEADER.unpack_from(data)
        if magic != FIND_MAGIC or version != 1 or job_id != job.job_id or FIND_HEADER.size + n * FIND_ENTRY.size > size:
            job.error = "malformed findings record"
            return EINVAL
        job.findings = self._convert(data, n)
        return 0

    def _unmount(self, machine) -> int:
        if self.job is None:
            return EINVAL
        if self.job.findings is None and self.job.error is None:
            self.job.error = "unmounted without findings"
        self._finish()
        return 0

    def _convert(self, data: bytes, n: int) -> Findings:
        """The guest's record as the monitor-side validator's Findings (file level)."""
        expected = {p: (s, d) for p, s, d in self.files}
        result = Findings(checked=len(self.files))
        reported = set()
        for i in range(n):
            raw_path, status, size, digest = FIND_ENTRY.unpack_from(data, FIND_HEADER.size + i * FIND_ENTRY.size)
            path = raw_path.split(b"\0", 1)[0].decode("ascii", "replace")
            reported.add(path)
            kind = STATUS.get(status, FindingKind.UNREADABLE)
            if kind is None:
                continue
            if kind is FindingKind.CHANGED and path in expected:
                base_size, base_digest = expected[path]
                attrs = {}
                if size != base_size:
                    attrs["size"] = {"baseline": base_size, "actual": size}
                if digest != base_digest:
                    attrs["sha256"] = {"baseline": base_digest.hex(), "actual": digest.hex()}
                result.findings.append(Finding(kind, path, "reported by the management guest", attrs))
            else:
                result.findings.append(Finding(kind, path, "reported by the management guest"))
        for path in expected:
            if path not in reported:
                result.findings.append(Finding(FindingKind.UNREADABLE, path, "the management guest did not report it"))
        result.findings.sort(key=lambda f: (f.path, f.kind.value))
        return result


def _path(p: str) -> bytes:
    raw = p.encode("ascii", "replace")[:PATH_LEN - 1]
    return raw + bytes(PATH_LEN - len(raw))
