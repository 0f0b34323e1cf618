"""What a recorded run is made of (:class:`RunSpec`), the trace header, and recording a run to a trace file.

A run is a pure function of its inputs (kernel, disks as they were at the start)
and its configuration (RAM, command line, instruction budget, clock): the header
pins all of them down with SHA-256 hashes, so :mod:`emu.trace.replay` can re-run
it and refuse when an input changed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import emu
from emu import EmuError
from emu.clock import ClockSpec
from emu.net.config import NicConfig
from emu.trace.events import DEFAULT_CHECKPOINT_EVERY, MachineTap
from emu.trace.format import FORMAT_VERSION, Kind, TraceError, encode_io, io_line, make_event
from emu.trace.writer import TraceWriter

DISK_COPY = "copy"
"""The guest writes a private copy of each disk; the input files never change (emu record, emu replay)."""
DISK_IN_PLACE = "in-place"
"""The guest writes the disk files themselves (emu run --record)."""


@dataclass
class RunSpec:
    """One guest's inputs and configuration, as the trace header records them."""

    kernel: str
    disks: list[str] = field(default_factory=list)
    mem_mib: int = 32
    cmdline: str = ""
    max_insns: Optional[int] = None
    disks_read_only: bool = False
    clock: ClockSpec = field(default_factory=ClockSpec)
    name: str = "guest"
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    nic: Optional[NicConfig] = None
    """An NE2000 on the guest's own switch, with its peer (emu.net.config); recorded without the capture file."""

    @classmethod
    def from_header(cls, header: dict) -> "RunSpec":
        """The spec a trace header describes (first guest)."""
        try:
            guest = header["guests"][0]
            config = header["config"]
            return cls(kernel=guest["kernel"], disks=list(guest["disks"]), mem_mib=guest["mem_mib"],
                       cmdline=guest["cmdline"], max_insns=config["max_insns"],
                       disks_read_only=guest["disks_read_only"], clock=ClockSpec(**config["clock"]),
                       name=guest["name"], checkpoint_every=config["checkpoint_every"],
                       nic=nic_from_json(guest.get("nic")))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise TraceError(f"trace header lacks the run configuration ({exc})") from None


def nic_to_json(nic: Optional[NicConfig]) -> Optional[dict]:
    """The header form of a NIC: wiring and peer (the capture file is an output, not an input)."""
    if nic is None:
        return None
    from emu.devices.ne2000 import format_mac

    return {"model": "ne2000", "iobase": nic.iobase, "irq": nic.irq, "mac": format_mac(nic.mac), "peer": nic.peer}


def nic_from_json(value: Optional[dict]) -> Optional[NicConfig]:
    """The NicConfig a header's ``nic`` describes (None when absent); TraceError for one this emu cannot build."""
    if value is None:
        return None
    from emu.devices.ne2000 import parse_mac
    from emu.net.config import PEERS

    if not isinstance(value, dict) or value.get("model") != "ne2000":
        raise TraceError(f"trace header names a network card this emu does not have ({value!r})")
    peer = value.get("peer")
    if peer is not None and peer not in PEERS:
        raise TraceError(f"trace header names a network peer this emu does not have ({peer!r})")
    try:
        return NicConfig(iobase=int(value["iobase"]), irq=int(value["irq"]), mac=parse_mac(str(value["mac"])),
                         peer=peer)
    except (KeyError, TypeError, ValueError, EmuError) as exc:
        raise TraceError(f"trace header has an unusable network card ({exc})") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _input_record(role: str, guest: str, path: str, base: Path, **extra) -> dict:
    full = base / path
    try:
        digest = sha256_file(full)
        size = full.stat().st_size
    except FileNotFoundError:
        raise EmuError(f"{role} {path}: no such file") from None
    except IsADirectoryError:
        raise EmuError(f"{role} {path}: is a directory") from None
    except OSError as exc:
        raise EmuError(f"{role} {path}: cannot read ({exc.strerror})") from None
    return {"role": role, "guest": guest, "path": path, "sha256": digest, "bytes": size, **extra}


def vmx_controls(machine) -> Optional[dict]:
    """The machine's VM-execution controls as JSON values (bitmaps as hex, null when all zero); None without VMX."""
    import dataclasses

    controls = getattr(getattr(machine, "vmx", None), "controls", None)
    if controls is None or not dataclasses.is_dataclass(controls):
        return None
    out = {}
    for f in dataclasses.fields(controls):
        value = getattr(controls, f.name)
        if isinstance(value, (bytes, bytearray)):
            out[f.name] = value.hex() if any(value) else None
        elif isinstance(value, tuple):
            out[f.name] = [int(v) for v in value]
        else:
            out[f.name] = int(value)
    return out


def apply_vmx_controls(machine, state: Optional[dict]) -> None:
    """Set the machine's VM-execution controls to a state recorded by :func:`vmx_controls`."""
    controls = getattr(getattr(machine, "vmx", None), "controls", None)
    if not state or controls is None:
        return
    for name, value in state.items():
        current = getattr(controls, name, None)
        if isinstance(current, bytearray):
            setattr(controls, name, bytearray(bytes.fromhex(value)) if value else bytearray(len(current)))
        elif isinstance(current, tuple):
            setattr(controls, name, tuple(value))
        elif current is not None:
            setattr(controls, name, type(current)(value))


def make_header(spec: RunSpec, base: Path, disk_mode: str = DISK_COPY, tool: str = "emu record",
                controls: Optional[dict] = None) -> dict:
    """The header record: format, emu version, every input with its SHA-256, and the configuration."""
    inputs = [_input_record("kernel", spec.name, spec.kernel, base)]
    for slot, disk in enumerate(spec.disks):
        if disk is not None:                 # None: an empty IDE slot
            inputs.append(_input_record("disk", spec.name, disk, base, slot=slot))
    guest = {"name": spec.name, "kernel": spec.kernel, "cmdline": spec.cmdline, "mem_mib": spec.mem_mib,
             "disks": list(spec.disks), "disks_read_only": spec.disks_read_only}
    if spec.nic is not None:                 # absent (not null) without a card: older traces stay byte-identical
        guest["nic"] = nic_to_json(spec.nic)
    return {
        "format": FORMAT_VERSION,
        "emu_version": emu.__version__,
        "tool": tool,
        "inputs": inputs,
        "guests": [guest],
        "config": {"max_insns": spec.max_insns, "checkpoint_every": spec.checkpoint_every,
                   "clock": {"hz": spec.clock.hz, "cycles_per_insn": spec.clock.cycles_per_insn},
                   "disk_mode": disk_mode, "vmx_controls": controls},
    }


class Recorder:
    """The observer that writes events to a :class:`TraceWriter` (``end`` gets the event count)."""

    def __init__(self, writer: TraceWriter):
        self.writer = writer
        self.counts: Counter = Counter()
        self.last_icount = 0

    def on_event(self, kind: str, icount: int, guest: str, fields: dict) -> None:
        """Write one event record (``fields`` is taken over: the caller must not reuse it)."""
        if kind == Kind.END.value:
            fields = dict(fields, events=sum(self.counts.values()) + 1)
        self.counts[kind] += 1
        self.last_icount = icount
        if kind == "io" and len(fields) == 7:
            line = encode_io(icount, guest, fields)
            if line is not None:
                self.writer.write_line(line)
                return
        if "kind" in fields or "icount" in fields or "guest" in fields:
            fields = make_event(kind, icount, guest, fields)        # refuses the clash
        fields["kind"] = kind
        fields["icount"] = icount
        fields["guest"] = guest
        self.writer.write(fields)

    def record_io(self, icount: int, guest: str, op: str, port: int, size: int, rip, insn_len, qualification: int,
                  value: int) -> None:
        """Fast path for an ``io`` record (the tap calls it when the observer has it): same bytes as on_event."""
        self.counts["io"] += 1
        self.last_icount = icount
        self.writer.write_line(io_line(icount, guest, op, port, size, rip, insn_len, qualification, value))

    def checkpoint(self, icount: int, guest: str, digest_fields: dict) -> None:
        """Write a checkpoint record."""
        self.on_event(Kind.CHECKPOINT.value, icount, guest, digest_fields)


@contextlib.contextmanager
def in_directory(base: Path) -> Iterator[None]:
    """Run the block with ``base`` as the working directory (kernel paths reach the guest's command line)."""
    old = os.getcwd()
    os.chdir(base)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def disk_copies(spec: RunSpec, base: Path) -> Iterator[list[str]]:
    """Private copies of the spec's disks (deleted afterwards): the inputs stay as they were."""
    if not spec.disks:
        yield []
        return
    tmp = tempfile.mkdtemp(prefix="emu-trace-")
    try:
        copies = []
        for slot, disk in enumerate(spec.disks):
            if disk is None:
                copies.append(None)
                continue
            dest = os.path.join(tmp, f"disk{slot}.img")
            shutil.copyfile(base / disk, dest)
            copies.append(dest)
        yield copies
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_machine(spec: RunSpec, disks: list[str], base: Path, console: Optional[Callable[[int], None]]):
    """A Machine for ``spec`` whose disks are ``disks``; the kernel path is resolved from ``base`` as recorded."""
    from emu.machine import Machine, MachineConfig

    if len(disks) > 4:
        raise EmuError("at most 4 disks (primary/secondary, master/slave)")
    nic = None if spec.nic is None else dataclasses.replace(spec.nic, pcap=None)
    config = MachineConfig(kernel=spec.kernel, cmdline=spec.cmdline, mem_mib=spec.mem_mib, disks=list(disks),
                           disks_read_only=spec.disks_read_only, clock=spec.clock, name=spec.name, nic=nic)
    with in_directory(base):
        return Machine(config, console=console)


@dataclass
class RecordResult:
    """Outcome of :func:`record`."""

    result: object
    path: str
    counts: Counter
    icount: int
    size: int


def record(spec: RunSpec, out: str | os.PathLike[str], base: Optional[Path] = None,
           console: Optional[Callable[[int], None]] = None) -> RecordResult:
    """Run ``spec`` (disks as private copies) and write its trace to ``out``; ``console`` gets guest bytes."""
    base = Path(base or os.getcwd())
    with disk_copies(spec, base) as copies:
        machine = build_machine(spec, copies, base, console or (lambda b: None))
        try:
            writer = TraceWriter(out, make_header(spec, base, controls=vmx_controls(machine)))
            try:
                recorder = Recorder(writer)
                tap = MachineTap(machine, recorder, spec.checkpoint_every)
                result = machine.run(max_insns=spec.max_insns)
                tap.finish(result)
            finally:
                writer.close()
        finally:
            machine.close()
    return RecordResult(result, os.fspath(out), recorder.counts, result.icount, os.path.getsize(out))


class Recording:
    """A recording attached to a Machine built elsewhere (``emu run --record``): call :meth:`finish` after the run."""

    def __init__(self, machine, out: str | os.PathLike[str], max_insns: Optional[int] = None,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, disk_mode: str = DISK_IN_PLACE):
        cfg = machine.config
        self.spec = RunSpec(kernel=cfg.kernel, disks=list(cfg.disks), mem_mib=cfg.mem_mib, cmdline=cfg.cmdline,
                            max_insns=max_insns, disks_read_only=cfg.disks_read_only, clock=cfg.clock,
                            name=cfg.name, checkpoint_every=checkpoint_every, nic=getattr(cfg, "nic", None))
        header = make_header(self.spec, Path(os.getcwd()), disk_mode, tool="emu run --record",
                             controls=vmx_controls(machine))
        self.writer = TraceWriter(out, header)
        self.recorder = Recorder(self.writer)
        self.tap = MachineTap(machine, self.recorder, checkpoint_every)

    def finish(self, result) -> None:
        """Record the final checkpoint and the end record, and close the file."""
        try:
            self.tap.finish(result)
        finally:
            self.writer.close()

    def abort(self) -> None:
        """Close the file without an end record (the reader will call it truncated)."""
        self.writer.close()


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"emu: warning: {message}", file=sys.stderr)
