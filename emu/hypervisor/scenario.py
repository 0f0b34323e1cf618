"""Scenario files (TOML): the guests, the trap trigger, the elapsed policy, the baseline and the restrictions.

Every key is checked (its TOML type, its range, the guest or file it names); a problem is refused with one
line naming the key and, for a guest's keys, the guest (``ScenarioError``).
Paths are relative to the scenario file.  The format is documented in ``docs/host.md``.
"""
from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from emu import EmuError


class ScenarioError(EmuError):
    """The scenario file cannot be used (one-line reason)."""


@dataclass
class GuestSpec:
    """One guest: kernel, command line, memory, disks (primary master first), NIC VLAN."""

    name: str
    kernel: Path
    cmdline: str = ""
    kernel_name: str = ""       # the kernel as written in the scenario (its multiboot command line shows this)
    mem: int = 32
    disks: list[Path] = field(default_factory=list)
    vlan: Optional[int] = None
    mac: Optional[bytes] = None


@dataclass
class TrapSpec:
    """Block 310: which guest's exits, of which reasons, enter the trap handler; which guest/disk it validates."""

    guest: str
    reasons: list[str]
    validate: str
    disk: int = 0


@dataclass
class PolicySpec:
    """Blocks 315/320: ``clock`` (virtual ns since the last validation) or ``counter`` (N trapped exits)."""

    kind: str
    interval_ns: int = 0
    count: int = 0


@dataclass
class RestrictionSpec:
    """Block 420: what to do when validation finds something, and whether a clean one lifts it."""

    on_findings: list[str] = field(default_factory=list)
    quarantine_vlan: int = 4000
    deny_ports: list[int] = field(default_factory=list)
    revoke_hypercalls: list[int] = field(default_factory=list)
    lift_when_clean: bool = False


@dataclass
class Scenario:
    """A whole host scenario."""

    path: Path
    guests: list[GuestSpec]
    trap: TrapSpec
    policy: PolicySpec
    baseline: Path
    restrictions: RestrictionSpec
    quantum: int = 50_000
    jitter: int = 0
    seed: int = 1
    max_insns: int = 500_000_000
    max_ns: int = 10_000_000_000
    pcap: Optional[Path] = None
    where: str = "monitor"
    deadline_insns: int = 50_000_000

    def guest(self, name: str) -> GuestSpec:
        """The guest called ``name``."""
        for g in self.guests:
            if g.name == name:
                return g
        raise ScenarioError(f"{self.path}: no guest named {name!r}")


RESTRICTIONS = ("quarantine_vlan", "deny_ports", "revoke_hypercalls", "pause")
EXIT_REASONS = ("IO_INSTRUCTION", "HLT", "VMCALL", "CPUID", "RDTSC")
MAX_DISKS = 4
"""Primary master, primary slave, secondary master, secondary slave (emu.platform)."""
MEM_MIB = (1, 3072)
"""Guest RAM range in MiB (emu.cpu.vcpu.Vcpu)."""
VLAN_IDS = (1, 4094)
"""Usable 802.1Q VLAN ids (0 and 4095 are reserved, IEEE 802.1Q §9.6)."""

_KEYS = {
    "": {"host", "guest", "trap", "policy", "validation", "restrictions"},
    "host": {"quantum", "jitter", "seed", "max_insns", "max_ns", "pcap"},
    "guest": {"name", "kernel", "cmdline", "mem", "disks", "vlan", "mac"},
    "trap": {"guest", "reasons", "validate", "disk"},
    "policy": {"kind", "interval_ns", "count"},
    "validation": {"baseline", "where", "deadline_insns"},
    "restrictions": {"on_findings", "quarantine_vlan", "deny_ports", "revoke_hypercalls", "lift_when_clean"},
}


class Kind(enum.Enum):
    """The TOML type a scenario key must have (the description is used in messages)."""

    INT = "an integer"
    STR = "a string"
    BOOL = "true or false"
    INT_LIST = "a list of integers"
    STR_LIST = "a list of strings"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)   # TOML true/false are not numbers


_CHECKS: dict[Kind, Callable[[Any], bool]] = {
    Kind.INT: _is_int,
    Kind.STR: lambda v: isinstance(v, str),
    Kind.BOOL: lambda v: isinstance(v, bool),
    Kind.INT_LIST: lambda v: isinstance(v, list) and all(_is_int(x) for x in v),
    Kind.STR_LIST: lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}
_REQUIRED = object()


@dataclass(frozen=True)
class _Table:
    """One table of the scenario file and how messages name it (``[host]``, ``guest 'app'``)."""

    path: Path
    section: str
    label: str
    data: dict

    def fail(self, text: str) -> ScenarioError:
        """The one-line error for this table."""
        return ScenarioError(f"{self.path}: {self.label} {text}")

    def get(self, key: str, kind: Kind, default: Any = _REQUIRED, lo: Optional[int] = None,
            hi: Optional[int] = None, fmt: Callable[[int], str] = str) -> Any:
        """The value of ``key``, checked: its type is ``kind`` and integers (or list items) lie in ``lo..hi``."""
        if key not in self.data:
            if default is _REQUIRED:
                raise self.fail(f"needs {key!r}")
            return default
        value = self.data[key]
        if not _CHECKS[kind](value):
            raise self.fail(f"{key} must be {kind.value} (got {_show(value)})")
        for item in (value if isinstance(value, list) else [value] if kind is Kind.INT else []):
            if lo is not None and item < lo or hi is not None and item > hi:
                span = f"{fmt(lo)}-{fmt(hi)}" if lo is not None and hi is not None else \
                    f"at least {fmt(lo)}" if lo is not None else f"at most {fmt(hi)}"
                raise self.fail(f"{key} must be {span} (got {fmt(item)})" if kind is Kind.INT else
                                f"{key}: {fmt(item)} is outside {span}")
        return value


def _show(value: Any) -> str:
    """A value as the scenario wrote it, shortened for a one-line message."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = "a table"
    else:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _table(path: Path, data: dict, section: str, required: bool = False,
           default: Optional[dict] = None) -> Optional[_Table]:
    """The table ``section`` of ``data`` with its keys checked (None when absent and not required)."""
    label = f"[{section}]"
    if section not in data:
        if required:
            raise ScenarioError(f"{path}: [{section}] section missing")
        if default is None:
            return None
        value = default
    else:
        value = data[section]
    if not isinstance(value, dict):
        raise ScenarioError(f"{path}: {label} must be a table (got {_show(value)})")
    return _checked(path, section, label, value)


def _checked(path: Path, section: str, label: str, value: dict) -> _Table:
    unknown = sorted(set(value) - _KEYS[section])
    if unknown:
        raise ScenarioError(f"{path}: unknown key {unknown[0]!r} in {label}")
    return _Table(path, section, label, value)


def _check_keys(path: Path, section: str, table: dict) -> None:
    """Refuse a key the section does not define."""
    _checked(path, section, f"[{section}]" if section else "top level", table)


def _file(table: _Table, what: str, value: str) -> Path:
    """A file named by the scenario (relative to it) that must exist."""
    p = (table.path.parent / value).resolve()
    if not p.is_file():
        raise table.fail(f"{what} {value!r} " + ("is not a file" if p.exists() else "not found"))
    return p


def _guest(path: Path, raw: Any, index: int) -> GuestSpec:
    """One ``[[guest]]`` table: every key checked, the kernel parsed and the disks opened (read-only)."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: [[guest]] number {index + 1} must be a table (got {_show(raw)})")
    t = _checked(path, "guest", f"[[guest]] number {index + 1}", raw)
    name = t.get("name", Kind.STR)
    if not name:
        raise t.fail("name must not be empty")
    t = _Table(path, "guest", f"guest {name!r}", raw)
    kernel_arg = t.get("kernel", Kind.STR)
    kernel = _file(t, "kernel", kernel_arg)
    mem = t.get("mem", Kind.INT, 32, *MEM_MIB)
    _check_kernel(t, kernel_arg, kernel, mem)
    disk_args = t.get("disks", Kind.STR_LIST, [])
    if len(disk_args) > MAX_DISKS:
        raise t.fail(f"disks: {len(disk_args)} given, at most {MAX_DISKS} (primary/secondary, master/slave)")
    disks = [_file(t, "disks entry", d) for d in disk_args]
    for arg, disk in zip(disk_args, disks):
        _check_disk(t, arg, disk)
    mac = None
    if "mac" in raw:
        text = t.get("mac", Kind.STR)
        try:
            mac = bytes.fromhex(text.replace(":", ""))
        except ValueError:
            mac = b""
        if len(mac) != 6:
            raise t.fail(f"mac {text!r} is not six hex bytes")
    vlan = t.get("vlan", Kind.INT, None, *VLAN_IDS)
    return GuestSpec(name, kernel, t.get("cmdline", Kind.STR, ""), kernel_arg, mem, disks, vlan, mac)


def _check_kernel(t: _Table, arg: str, kernel: Path, mem: int) -> None:
    """The kernel must be a multiboot ELF that fits the guest's RAM (emu.boot.multiboot)."""
    from emu.boot import multiboot
    try:
        multiboot.parse(kernel, mem * 1024 * 1024)
    except EmuError as exc:
        raise t.fail(f"kernel {arg!r}: {_without_prefix(str(exc), f'kernel {kernel}: ')}") from None


def _check_disk(t: _Table, arg: str, disk: Path) -> None:
    """A disk must open as an image (a regular, readable file of whole sectors)."""
    from emu.storage.image import DiskImage
    try:
        DiskImage(str(disk), read_only=True).close()
    except EmuError as exc:
        raise t.fail(f"disks entry {arg!r}: {_without_prefix(str(exc), f'disk image {disk}: ')}") from None


def _without_prefix(message: str, prefix: str) -> str:
    return message[len(prefix):] if message.startswith(prefix) else message


def load(path: str | Path) -> Scenario:
    """Read and check a scenario file (every key: its type, its range, what it names)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"scenario {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario {path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {path}: not valid TOML ({exc})") from None
    _check_keys(path, "", data)
    host = _table(path, data, "host", default={})
    raw_guests = data.get("guest", [])
    if not isinstance(raw_guests, list):
        raise ScenarioError(f"{path}: guests are [[guest]] tables (got {_show(raw_guests)})")
    guests = [_guest(path, g, i) for i, g in enumerate(raw_guests)]
    if not guests:
        raise ScenarioError(f"{path}: no [[guest]] defined")
    names = [g.name for g in guests]
    for name in names:
        if names.count(name) > 1:
            raise ScenarioError(f"{path}: two guests are named {name!r}")

    trap = _table(path, data, "trap", required=True)
    reasons = trap.get("reasons", Kind.STR_LIST, ["IO_INSTRUCTION"])
    if not reasons:
        raise trap.fail("reasons must name at least one exit reason")
    for reason in reasons:
        if reason not in EXIT_REASONS:
            raise trap.fail(f"reason {reason!r} is not one of {', '.join(EXIT_REASONS)}")
    trap_spec = TrapSpec(trap.get("guest", Kind.STR), list(reasons), trap.get("validate", Kind.STR),
                         trap.get("disk", Kind.INT, 0, 0, MAX_DISKS - 1))
    for key, who in (("guest", trap_spec.guest), ("validate", trap_spec.validate)):
        if who not in names:
            raise trap.fail(f"{key} names guest {who!r}, which is not defined")
    target = guests[names.index(trap_spec.validate)]
    if trap_spec.disk >= len(target.disks):
        raise trap.fail(f"disk {trap_spec.disk} of guest {target.name!r} does not exist "
                        f"(it has {len(target.disks)} disk{'s' if len(target.disks) != 1 else ''})")

    policy = _table(path, data, "policy", default={"kind": "counter", "count": 1})
    kind = policy.get("kind", Kind.STR)
    if kind not in ("clock", "counter"):
        raise policy.fail(f"kind must be 'clock' or 'counter' (got {kind!r})")
    clock = kind == "clock"   # the key the kind needs is required and positive; the other one is ignored
    policy_spec = PolicySpec(kind, policy.get("interval_ns", Kind.INT, _REQUIRED if clock else 0, 1 if clock else 0),
                             policy.get("count", Kind.INT, 0 if clock else _REQUIRED, 0 if clock else 1))

    validation = _table(path, data, "validation", required=True)
    where = validation.get("where", Kind.STR, "monitor")
    if where != "monitor" and not (where.startswith("guest:") and where[6:] in names):
        raise validation.fail(f"where must be 'monitor' or 'guest:NAME' of a defined guest (got {where!r})")
    baseline = _file(validation, "baseline", validation.get("baseline", Kind.STR))
    deadline_insns = validation.get("deadline_insns", Kind.INT, 50_000_000, 1)

    rest = _table(path, data, "restrictions", default={})
    on_findings = rest.get("on_findings", Kind.STR_LIST, [])
    for r in on_findings:
        if r not in RESTRICTIONS:
            raise rest.fail(f"on_findings: unknown restriction {r!r} (use {', '.join(RESTRICTIONS)})")
    spec = RestrictionSpec(list(on_findings), rest.get("quarantine_vlan", Kind.INT, 4000, *VLAN_IDS),
                           list(rest.get("deny_ports", Kind.INT_LIST, [], 0, 0xFFFF, fmt=lambda p: f"{p:#x}")),
                           list(rest.get("revoke_hypercalls", Kind.INT_LIST, [], 0, 0xFFFFFFFF)),
                           rest.get("lift_when_clean", Kind.BOOL, False))
    for key in ("deny_ports", "revoke_hypercalls"):
        if key in spec.on_findings and not getattr(spec, key):
            raise rest.fail(f"on_findings has {key!r} but {key} lists nothing")

    pcap = host.get("pcap", Kind.STR, None)
    scenario = Scenario(path, guests, trap_spec, policy_spec, baseline, spec,
                        quantum=host.get("quantum", Kind.INT, 50_000, 1),
                        jitter=host.get("jitter", Kind.INT, 0, 0),
                        seed=host.get("seed", Kind.INT, 1),
                        max_insns=host.get("max_insns", Kind.INT, 500_000_000, 1),
                        max_ns=host.get("max_ns", Kind.INT, 10_000_000_000, 1),
                        pcap=(path.parent / pcap).resolve() if pcap is not None else None,
                        where=where, deadline_insns=deadline_insns)
    _check_baseline_matches(scenario, target)
    return scenario


def _check_baseline_matches(scenario: Scenario, target: GuestSpec) -> None:
    """Refuse a baseline taken from another disk (its volume id or label differs)."""
    from emu.integrity.baseline import Baseline, volume_identity
    from emu.storage.image import DiskImage
    from emu.storage.volume import open_volume

    try:
        baseline = Baseline.load(scenario.baseline)
    except EmuError as exc:
        raise ScenarioError(f"{scenario.path}: baseline {scenario.baseline.name}: {exc}") from None
    image = DiskImage(str(target.disks[scenario.trap.disk]), read_only=True)
    try:
        vol = open_volume(image.view(), baseline.partition)
        ident = volume_identity(vol)
    except EmuError as exc:
        raise ScenarioError(f"{scenario.path}: disk of guest {target.name!r}: {exc}") from None
    finally:
        image.close()
    for key in ("volume_id", "label", "fat_type"):
        if key in baseline.volume and baseline.volume[key] != ident.get(key):
            raise ScenarioError(f"{scenario.path}: baseline {scenario.baseline.name} was taken from another disk "
                                f"({key} {baseline.volume[key]!r}, disk has {ident.get(key)!r})")
