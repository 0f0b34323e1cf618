"""Scenario files (TOML): the guests, the trap trigger, the elapsed policy, the baseline and the restrictions.

Every key is checked; a problem is refused with one line naming it (``ScenarioError``).
Paths are relative to the scenario file.  The format is documented in ``docs/host.md``.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

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

_KEYS = {
    "": {"host", "guest", "trap", "policy", "validation", "restrictions"},
    "host": {"quantum", "jitter", "seed", "max_insns", "max_ns", "pcap"},
    "guest": {"name", "kernel", "cmdline", "mem", "disks", "vlan", "mac"},
    "trap": {"guest", "reasons", "validate", "disk"},
    "policy": {"kind", "interval_ns", "count"},
    "validation": {"baseline", "where", "deadline_insns"},
    "restrictions": {"on_findings", "quarantine_vlan", "deny_ports", "revoke_hypercalls", "lift_when_clean"},
}


def _check_keys(path: Path, section: str, table: dict) -> None:
    unknown = sorted(set(table) - _KEYS[section])
    if unknown:
        where = f"[{section}]" if section else "top level"
        raise ScenarioError(f"{path}: unknown key {unknown[0]!r} in {where}")


def _req(path: Path, table: dict, section: str, key: str, kind: type) -> Any:
    if key not in table:
        raise ScenarioError(f"{path}: [{section}] needs {key!r}")
    value = table[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)) or \
            kind is not int and not isinstance(value, kind):
        raise ScenarioError(f"{path}: [{section}] {key} must be a {kind.__name__}")
    return value


def _file(path: Path, value: str, what: str) -> Path:
    p = (path.parent / value).resolve()
    if not p.is_file():
        raise ScenarioError(f"{path}: {what} {value!r} not found")
    return p


def load(path: str | Path) -> Scenario:
    """Read and check a scenario file."""
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
    host = data.get("host", {})
    _check_keys(path, "host", host)
    guests = []
    for g in data.get("guest", []):
        _check_keys(path, "guest", g)
        name = _req(path, g, "guest", "name", str)
        kernel_arg = _req(path, g, "guest", "kernel", str)
        kernel = _file(path, kernel_arg, f"guest {name!r} kernel")
        disks = [_file(path, d, f"guest {name!r} disk") for d in g.get("disks", [])]
        mac = None
        if "mac" in g:
            try:
                mac = bytes.fromhex(str(g["mac"]).replace(":", ""))
            except ValueError:
                mac = b""
            if len(mac) != 6:
                raise ScenarioError(f"{path}: guest {name!r} mac {g['mac']!r} is not six hex bytes")
        vlan = g.get("vlan")
        if vlan is not None and (isinstance(vlan, bool) or not isinstance(vlan, int) or not 1 <= vlan <= 4094):
            raise ScenarioError(f"{path}: guest {name!r} vlan must be 1-4094")
        guests.append(GuestSpec(name, kernel, str(g.get("cmdline", "")), kernel_arg, int(g.get("mem", 32)), disks,
                                vlan, mac))
    if not guests:
        raise ScenarioError(f"{path}: no [[guest]] defined")
    names = [g.name for g in guests]
    if len(set(names)) != len(names):
        raise ScenarioError(f"{path}: two guests share a name")
    trap = data.get("trap")
    if trap is None:
        raise ScenarioError(f"{path}: [trap] section missing")
    _check_keys(path, "trap", trap)
    trap_spec = TrapSpec(_req(path, trap, "trap", "guest", str), list(trap.get("reasons", ["IO_INSTRUCTION"])),
                         _req(path, trap, "trap", "validate", str), int(trap.get("disk", 0)))
    for reason in trap_spec.reasons:
        if reason not in EXIT_REASONS:
            raise ScenarioError(f"{path}: [trap] reason {reason!r} is not one of {', '.join(EXIT_REASONS)}")
    for who in (trap_spec.guest, trap_spec.validate):
        if who not in names:
            raise ScenarioError(f"{path}: [trap] names guest {who!r}, which is not defined")
    target = next(g for g in guests if g.name == trap_spec.validate)
    if trap_spec.disk >= len(target.disks):
        raise ScenarioError(f"{path}: [trap] disk {trap_spec.disk} of guest {target.name!r} does not exist")
    policy = data.get("policy", {"kind": "counter", "count": 1})
    _check_keys(path, "policy", policy)
    kind = _req(path, policy, "policy", "kind", str)
    if kind not in ("clock", "counter"):
        raise ScenarioError(f"{path}: [policy] kind must be 'clock' or 'counter'")
    policy_spec = PolicySpec(kind, int(policy.get("interval_ns", 0)), int(policy.get("count", 0)))
    if kind == "clock" and policy_spec.interval_ns <= 0 or kind == "counter" and policy_spec.count <= 0:
        raise ScenarioError(f"{path}: [policy] {'interval_ns' if kind == 'clock' else 'count'} must be positive")
    validation = data.get("validation")
    if validation is None:
        raise ScenarioError(f"{path}: [validation] section missing")
    _check_keys(path, "validation", validation)
    where = str(validation.get("where", "monitor"))
    if where != "monitor" and not (where.startswith("guest:") and where[6:] in names):
        raise ScenarioError(f"{path}: [validation] where must be 'monitor' or 'guest:NAME' of a defined guest "
                            f"(got {where!r})")
    baseline = _file(path, _req(path, validation, "validation", "baseline", str), "baseline")
    rest = data.get("restrictions", {})
    _check_keys(path, "restrictions", rest)
    spec = RestrictionSpec(list(rest.get("on_findings", [])), int(rest.get("quarantine_vlan", 4000)),
                           [int(p) for p in rest.get("deny_ports", [])],
                           [int(x) for x in rest.get("revoke_hypercalls", [])], bool(rest.get("lift_when_clean", False)))
    for r in spec.on_findings:
        if r not in RESTRICTIONS:
            raise ScenarioError(f"{path}: [restrictions] unknown restriction {r!r} (use {', '.join(RESTRICTIONS)})")
    scenario = Scenario(path, guests, trap_spec, policy_spec, baseline, spec,
                        int(host.get("quantum", 50_000)), int(host.get("jitter", 0)), int(host.get("seed", 1)),
                        int(host.get("max_insns", 500_000_000)),
                        (path.parent / host["pcap"]).resolve() if "pcap" in host else None)
    scenario.where = where
    scenario.max_ns = int(host.get("max_ns", 10_000_000_000))
    scenario.deadline_insns = int(validation.get("deadline_insns", 50_000_000))
    if scenario.quantum <= 0 or scenario.jitter < 0:
        raise ScenarioError(f"{path}: [host] quantum must be positive and jitter not negative")
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
