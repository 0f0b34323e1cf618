"""Validation by a management guest (US patent 7,539,986, FIG. 3): the other guest's disk is mounted read-only
in the management guest for a short window and analysed by the management guest's own code.

At block 340 the monitor hot-plugs the application guest's disk, read-only, as the management guest's secondary
master (ATA writes are aborted) and the application guest is not scheduled until block 360.  The management guest
learns of the mount and answers through hypercalls (ABI version 2 in ``docs/mgmt-validator.md``):

* leaf 2 MOUNT_POLL (EBX = buffer, ECX = size): 1 and a job descriptor when a disk is mounted for it, else 0.  The
  job lists the baseline's entries with the attributes to compare (type, size, attr, write_time, first_cluster,
  SHA-256), the protected directories, and the configuration files the baseline's rules name;
* leaf 3 FINDINGS (EBX = record, ECX = length): per listed entry a status and what the guest read (size, SHA-256,
  attributes), the entries it found added, and the configuration files' bytes with their SHA-256;
* leaf 4 UNMOUNT: done — the disk goes back (block 360).

The disk is parsed only in the guest.  The monitor checks the record (every status must agree with the reported
values against the baseline; every returned configuration file must hash to the SHA-256 reported for it) and
builds the same :class:`~emu.integrity.findings.Findings` as ``emu.integrity.validate``: CHANGED with the
differing attributes, REMOVED, ADDED, UNREADABLE, and RULE — the rules are evaluated by the monitor
(``emu.integrity.rules``) on the configuration bytes the guest returned.  A record that contradicts itself
("inconsistent record") or is malformed makes the validation fail (no findings, no restriction; FINDINGS returns
-22).  A deadline in the management guest's retired instructions (``deadline_insns``; time it spends halted does
not count) bounds the window: past it the monitor remaps back anyway and records a failed validation.
"""
from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from emu import EmuError
from emu.integrity.findings import Finding, FindingKind, Findings
from emu.integrity.rules import MAX_CONFIG_BYTES, evaluate, parse_config
from emu.storage.structs import decode_fat_time

LEAF_MOUNT_POLL, LEAF_FINDINGS, LEAF_UNMOUNT = 2, 3, 4
JOB_MAGIC, FIND_MAGIC = 0x424F4A56, 0x444E4946      # 'VJOB', 'FIND'
ABI_VERSION = 2
PATH_LEN = 64
JOB_HEADER = struct.Struct("<8I")                    # magic version job_id partition_lba n_dirs n_files n_config 0
JOB_FILE = struct.Struct(f"<{PATH_LEN}sI32s4I")      # path size sha256 compare attr write_time first_cluster
FIND_HEADER = struct.Struct("<6I")                   # magic version job_id n n_config data_len
FIND_ENTRY = struct.Struct(f"<{PATH_LEN}sII32s4I")   # path status size sha256 flags attr write_time first_cluster
FIND_CONFIG = struct.Struct(f"<{PATH_LEN}sII32sII")  # path status size sha256 offset length
OK, CHANGED, REMOVED, ADDED, UNREADABLE, CF_DIRECTORY, CF_TOO_LARGE = range(7)
RF_DIR, RF_HASH, RF_META = 1, 2, 4
EXPECT_DIR = 0x100
COMPARE_BITS = {"type": 1, "size": 2, "attr": 4, "write_time": 8, "first_cluster": 16, "sha256": 32}
COMPARED = tuple(COMPARE_BITS)                       # the order of emu.integrity.validate.COMPARED
MAX_CONFIG = 64
EFAULT, EINVAL = -14, -22
_ISO = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)")


class Inconsistent(Exception):
    """The record contradicts itself or the job (the validation fails as "inconsistent record")."""


def encode_fat_time(iso: str) -> Optional[int]:
    """A baseline write_time (ISO 8601, as ``decode_fat_time`` writes it; '' = zero) as DIR_WrtDate << 16 |
    DIR_WrtTime (fatgen103 §6), or None when no FAT date/time decodes to it."""
    if iso == "":
        return 0
    m = _ISO.fullmatch(iso)
    if m is None:
        return None
    year, month, day, hour, minute, second = map(int, m.groups())
    if not 1980 <= year <= 2107 or month > 15 or day > 31 or hour > 31 or minute > 63 or second % 2 or second > 62:
        return None
    raw = ((year - 1980) << 9 | month << 5 | day) << 16 | hour << 11 | minute << 5 | second // 2
    return raw if decode_fat_time(raw >> 16, raw & 0xFFFF) == iso else None


@dataclass(frozen=True)
class Listed:
    """One baseline entry as the job lists it."""

    path: str
    record: dict[str, Any]      # the baseline's attributes
    compare: tuple[str, ...]    # the attributes both sides compare
    write_time: int


@dataclass
class Job:
    """One mount window."""

    job_id: int
    target: Any                 # the Machine whose disk is mounted
    drive: Any                  # its AtaDrive the disk came from
    backing: Any
    started: int                # validator virtual time (instructions, halted time included) at mount
    started_insns: int = 0      # validator instructions retired at mount (the deadline counts from here)
    delivered: bool = False
    findings: Optional[Findings] = None
    error: Optional[str] = None


@dataclass
class GuestValidator:
    """The monitor's side of the management-guest validation ABI for one validator guest."""

    validator: Any              # the management Machine
    baseline: Any               # emu.integrity.baseline.Baseline
    deadline: int               # instructions the validator guest may retire per window (deadline_insns)
    on_done: Callable[[Job], None]
    job: Optional[Job] = None
    jobs: int = 0
    listed: list[Listed] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path, attrs in sorted(self.baseline.files.items()):
            raw_time = encode_fat_time(str(attrs["write_time"])) if "write_time" in attrs else None
            compare = tuple(k for k in COMPARED if k in attrs and (k != "write_time" or raw_time is not None))
            self.listed.append(Listed(path, attrs, compare, raw_time or 0))
            if attrs.get("type") == "dir":
                self.dirs.append(path)
        for p in self.baseline.paths:
            p = p.rstrip("*").rstrip("/") or "/"
            if p not in self.dirs:
                self.dirs.append(p)
        for rule in self.baseline.rules:
            if rule.path.upper() not in (c.upper() for c in self.configs):
                self.configs.append(rule.path)
        if len(self.configs) > MAX_CONFIG:
            raise EmuError(f"guest validation: the rules name {len(self.configs)} files (at most {MAX_CONFIG})")
        for p in [item.path for item in self.listed] + self.dirs + self.configs:
            if len(p.encode("utf-8")) > PATH_LEN:
                raise EmuError(f"guest validation: path {p!r} is longer than the ABI's {PATH_LEN} bytes")
        m = self.validator
        m.hypercalls[LEAF_MOUNT_POLL] = self._mount_poll
        m.hypercalls[LEAF_FINDINGS] = self._findings
        m.hypercalls[LEAF_UNMOUNT] = self._unmount

    @property
    def busy(self) -> bool:
        return self.job is not None

    def insns(self) -> int:
        """Instructions the validator guest has retired (exact inside an I/O or hypercall hook too)."""
        cpu = self.validator.cpu
        return cpu.vtime - cpu.idle

    # --- blocks 340 / 360 ---------------------------------------------------------
    def mount(self, target, drive) -> Job:
        """Block 340: take ``drive``'s disk from ``target`` and hot-plug it read-only into the validator."""
        backing = drive.detach()
        slot = self.validator.platform.ide[1].drives[0]
        slot.insert(backing.view() if hasattr(backing, "view") else backing, read_only=True)
        self.jobs += 1
        self.job = Job(self.jobs, target, drive, backing, self.validator.cpu.vtime, self.insns())
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
        """Past the deadline (instructions the validator retired since the mount; checked between slices, so a
        window overruns it by less than one slice) the monitor remaps back anyway and records a failed validation."""
        job = self.job
        if job is not None and self.insns() - job.started_insns > self.deadline:
            self._finish(f"management guest did not finish within {self.deadline} instructions "
                         f"(it retired {self.insns() - job.started_insns} since the mount)")

    def abort(self, why: str) -> None:
        """The validator guest ended during a window."""
        if self.job is not None:
            self._finish(why)

    # --- hypercalls -----------------------------------------------------------------
    def job_blob(self, job_id: int) -> bytes:
        """The job descriptor (ABI version 2)."""
        blob = JOB_HEADER.pack(JOB_MAGIC, ABI_VERSION, job_id, 0, len(self.dirs), len(self.listed), len(self.configs), 0)
        blob += b"".join(_path(d) for d in self.dirs)
        for item in self.listed:
            rec = item.record
            compare = sum(COMPARE_BITS[k] for k in item.compare) | (EXPECT_DIR if rec.get("type") == "dir" else 0)
            digest = bytes.fromhex(rec["sha256"]) if "sha256" in item.compare else bytes(32)
            blob += JOB_FILE.pack(_path(item.path), int(rec.get("size", 0)), digest, compare, int(rec.get("attr", 0)),
                                  item.write_time, int(rec.get("first_cluster", 0)))
        blob += b"".join(_path(c) for c in self.configs)
        return blob

    def _mount_poll(self, machine) -> int:
        job = self.job
        if job is None or job.delivered:
            return 0
        cpu = machine.cpu
        addr, size = cpu.reg("ebx"), cpu.reg("ecx")
        blob = self.job_blob(job.job_id)
        if len(blob) > size or not cpu.contains(addr, len(blob)):
            return EFAULT
        cpu.write_phys(addr, blob)
        job.delivered = True
        return 1

    def _findings(self, machine) -> int:
        job = self.job
        if job is None:
            return EINVAL
        if job.findings is not None or job.error is not None:
            job.error = job.error or "findings reported twice"
            return EINVAL
        cpu = machine.cpu
        addr, size = cpu.reg("ebx"), cpu.reg("ecx")
        if size < FIND_HEADER.size or not cpu.contains(addr, size):
            job.error = "findings record outside the validator's memory"
            return EFAULT
        data = cpu.read_phys(addr, size)
        magic, version, job_id, n, n_config, data_len = FIND_HEADER.unpack_from(data)
        end = FIND_HEADER.size + n * FIND_ENTRY.size + n_config * FIND_CONFIG.size + data_len
        if magic != FIND_MAGIC or version != ABI_VERSION or job_id != job.job_id or end > size:
            job.error = "malformed findings record"
            return EINVAL
        try:
            job.findings = self.convert(data, n, n_config, data_len)
        except Inconsistent as exc:
            job.error = f"inconsistent record: {exc}"
            return EINVAL
        return 0

    def _unmount(self, machine) -> int:
        if self.job is None:
            return EINVAL
        if self.job.findings is None and self.job.error is None:
            self.job.error = "unmounted without findings"
        self._finish()
        return 0

    # --- the record ---------------------------------------------------------------
    def convert(self, data: bytes, n: int, n_config: int, data_len: int) -> Findings:
        """Check the guest's record and turn it into the Findings ``emu.integrity.validate`` gives (raises
        Inconsistent when a status disagrees with the values reported or a configuration file with its hash)."""
        if n < len(self.listed):
            raise Inconsistent(f"{n} entries for the job's {len(self.listed)} listed paths")
        result = Findings(volume={"validated_by": f"guest:{self.validator.name}"})
        hashes: dict[str, tuple[int, Optional[bytes]]] = {}
        for i in range(n):
            raw, status, size, digest, flags, attr, wtime, cluster = FIND_ENTRY.unpack_from(
                data, FIND_HEADER.size + i * FIND_ENTRY.size)
            path = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            actual = {"type": "dir" if flags & RF_DIR else "file", "size": size, "attr": attr,
                      "write_time": decode_fat_time(wtime >> 16, wtime & 0xFFFF), "first_cluster": cluster,
                      "sha256": digest.hex() if flags & RF_HASH else None}
            if i < len(self.listed):
                item = self.listed[i]
                if raw != _path(item.path):
                    raise Inconsistent(f"entry {i} is {path!r}, not the job's {item.path!r}")
                hashes[item.path.upper()] = (status, digest if flags & RF_HASH else None)
                self._listed(result, item, status, flags, actual)
            elif status == ADDED:
                what = "directory" if flags & RF_DIR else f"file of {size} bytes"
                if not flags & (RF_DIR | RF_HASH):
                    what += " (the management guest could not read it)"
                result.findings.append(Finding(FindingKind.ADDED, path, what))
            elif status == UNREADABLE:
                result.findings.append(Finding(FindingKind.UNREADABLE, path,
                                               "directory cannot be read to its end (management guest)"))
            else:
                raise Inconsistent(f"entry {i} ({path!r}) has status {status}; only added or unreadable entries "
                                   "follow the listed ones")
        self._rules(result, data, n, n_config, data_len, hashes)
        order = {k: i for i, k in enumerate(FindingKind)}
        result.findings.sort(key=lambda f: (f.path.upper() != "/", f.path.upper(), order[f.kind]))
        return result

    def _listed(self, result: Findings, item: Listed, status: int, flags: int, actual: dict[str, Any]) -> None:
        """One listed entry: check its status against its values, add its findings."""
        rec = item.record
        if status == REMOVED:
            result.findings.append(Finding(FindingKind.REMOVED, item.path, f"{rec.get('type', 'file')} is gone"))
            return
        if status not in (OK, CHANGED, UNREADABLE):
            raise Inconsistent(f"{item.path}: status {status} for a listed path")
        if status == UNREADABLE and not flags & RF_META:        # not even its directory entry could be read
            result.findings.append(Finding(FindingKind.UNREADABLE, item.path, "the management guest could not read it"))
            return
        if not flags & RF_META:
            raise Inconsistent(f"{item.path}: status {status} without the entry's attributes")
        if status != UNREADABLE and actual["type"] == "file" and actual["sha256"] is None:
            raise Inconsistent(f"{item.path}: a file without its SHA-256")
        result.checked += 1
        diffs = {k: {"baseline": rec.get(k), "actual": actual[k]} for k in item.compare
                 if rec.get(k) != actual[k] and actual[k] is not None}
        if status == UNREADABLE:
            result.findings.append(Finding(FindingKind.UNREADABLE, item.path, "the management guest could not read "
                                                                              "its content"))
        elif status == OK and diffs:
            raise Inconsistent(f"{item.path}: status ok but {', '.join(diffs)} differ from the baseline")
        elif status == CHANGED and not diffs:
            raise Inconsistent(f"{item.path}: status changed but its values equal the baseline's")
        if diffs:
            result.findings.append(Finding(FindingKind.CHANGED, item.path, attributes=diffs))

    def _rules(self, result: Findings, data: bytes, n: int, n_config: int, data_len: int,
               hashes: dict[str, tuple[int, Optional[bytes]]]) -> None:
        """The configuration files the guest returned: check each against its hash (and the listed entry's),
        then evaluate the baseline's rules on them as emu.integrity.validate does."""
        if n_config != len(self.configs):
            raise Inconsistent(f"{n_config} configuration files for the job's {len(self.configs)}")
        base = FIND_HEADER.size + n * FIND_ENTRY.size
        data_start = base + n_config * FIND_CONFIG.size
        files: dict[str, tuple[int, int, Optional[bytes]]] = {}
        for i, path in enumerate(self.configs):
            raw, status, size, digest, offset, length = FIND_CONFIG.unpack_from(data, base + i * FIND_CONFIG.size)
            if raw != _path(path):
                raise Inconsistent(f"configuration file {i} is not the job's {path!r}")
            content = None
            if status == OK:
                if length != size or offset + length > data_len:
                    raise Inconsistent(f"{path}: {length} bytes at {offset} for a file of {size} in {data_len}")
                content = data[data_start + offset:data_start + offset + length]
                if hashlib.sha256(content).digest() != digest:
                    raise Inconsistent(f"{path}: the bytes returned do not hash to the SHA-256 reported")
            elif status not in (REMOVED, UNREADABLE, CF_DIRECTORY, CF_TOO_LARGE):
                raise Inconsistent(f"{path}: configuration status {status}")
            listed = hashes.get(path.upper())
            if listed is not None:
                listed_status, listed_digest = listed
                if (status == REMOVED) != (listed_status == REMOVED):
                    raise Inconsistent(f"{path}: listed as {listed_status} but its configuration status is {status}")
                if content is not None and listed_digest is not None and listed_digest != digest:
                    raise Inconsistent(f"{path}: the configuration bytes are not the file the listed entry hashed")
            files[path.upper()] = (status, size, content)
        for rule in self.baseline.rules:
            status, size, content = files[rule.path.upper()]
            if status == REMOVED:
                why = "file does not exist"
            elif status == CF_DIRECTORY:
                why = "is a directory"
            elif size > MAX_CONFIG_BYTES:
                why = f"file of {size} bytes is too large for a configuration file"
            elif status == CF_TOO_LARGE:
                why = f"cannot read the file: its {size} bytes do not fit in the management guest's record"
            elif status == UNREADABLE:
                why = "cannot read the file: the management guest could not read it"
            else:
                why = evaluate(rule, parse_config(content or b""))
            if why:
                result.findings.append(Finding(FindingKind.RULE, rule.path, why, rule=rule.describe()))


def _path(p: str) -> bytes:
    """A path as the ABI's NUL-padded 64-byte field (longer paths are refused when the validator is set up)."""
    raw = p.encode("utf-8", "replace")[:PATH_LEN]
    return raw + bytes(PATH_LEN - len(raw))
