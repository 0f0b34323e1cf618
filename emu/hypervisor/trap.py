"""The trap handler: US patent 7,539,986 processes 300 and 400 as an explicit state machine.

Each step carries the patent's block number and emits one event:
310 trap → 315/320 elapsed? → 330 safe? → 340 remap the disk to the validator →
355 unmount (not needed for a monitor-side read-only analysis) → 410 analysis
and validation → 420 restrictions → 360 remap back → 370 schedule.
An unsafe point defers the validation (330, with the reason) and goes to 370.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from emu.cpu.vcpu import EFLAGS_IF


class Block(enum.IntEnum):
    """Block numbers of the patent's FIG. 3 / FIG. 4."""

    TRAP = 310
    ELAPSED_CLOCK = 315
    ELAPSED_COUNTER = 320
    SAFETY = 330
    REMAP = 340
    UNMOUNT_CHECK = 350
    UNMOUNT = 355
    REMAP_BACK = 360
    SCHEDULE = 370
    ANALYSIS = 410
    RESTRICT = 420


class Unsafe(str, enum.Enum):
    """Why block 330 deferred a validation."""

    IF_MASKED = "if_masked"
    INTERRUPT_SHADOW = "interrupt_shadow"
    WRITE_IN_PROGRESS = "write_in_progress"
    DMA_ACTIVE = "dma_active"
    ATA_BUSY = "ata_busy"


@dataclass
class TrapEvent:
    """One step of the handler, for the timeline, traces and tests."""

    block: Block
    guest: str
    icount: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "trap_step", "block": int(self.block), "step": self.block.name.lower(), "guest": self.guest,
                "icount": self.icount, **self.detail}


def safety(target) -> Optional[Unsafe]:
    """Block 330: the first reason validating ``target`` (a Machine) now is unsafe, or None.

    Checked in this order: the guest's own write-in-progress word (it knows best), a DMA in flight, a drive
    busy, then IF masked or an STI/MOV-SS shadow (it may be inside a driver's top half).
    """
    cpu = target.cpu
    platform = target.platform
    if target.wip_addr is not None and int.from_bytes(cpu.read_phys(target.wip_addr, 4), "little"):
        return Unsafe.WRITE_IN_PROGRESS
    for engine in platform.bmdma.engines:
        if engine.active and engine.st.in_flight:
            return Unsafe.DMA_ACTIVE
    if any(channel.busy for channel in platform.ide):
        return Unsafe.ATA_BUSY
    if not cpu.reg("eflags") & EFLAGS_IF:
        return Unsafe.IF_MASKED
    if cpu.interrupt_shadow:
        return Unsafe.INTERRUPT_SHADOW
    return None


class TrapHandler:
    """Runs the patent's process on chosen VM exits of one guest, validating another guest's disk."""

    def __init__(self, host, scenario, emit: Callable[[TrapEvent], None]):
        self.host = host
        self.scenario = scenario
        self.emit = emit
        self.policy = scenario.policy
        self.counter = 0
        self.last_validation_ns = 0
        self.validations = 0
        self.deferrals: dict[str, int] = {}
        self.findings_total = 0
        self.restricted = False
        self.results: list[dict[str, Any]] = []
        self.pauses: list[tuple[float, int]] = []   # (host seconds, guest instructions of the trapping guest)
        self.trapped = 0
        self.trap_log: list[tuple[int, int]] = []   # (exit number, host ns) of every trapped exit
        from emu.integrity.baseline import Baseline
        self.baseline = Baseline.load(scenario.baseline)
        self.guestval = None
        if scenario.where.startswith("guest:"):
            from emu.hypervisor.guestval import GuestValidator
            self.guestval = GuestValidator(host.machines[scenario.where[6:]], self.baseline, scenario.deadline_insns,
                                           self._guest_done)
        self._window: Optional[tuple[Any, Any, int, float]] = None

    # --- 310 --------------------------------------------------------------
    def on_exit(self, machine, exit_) -> None:
        """Block 310: a chosen exit of the trapping guest enters the handler (the guest is suspended)."""
        if exit_.reason.name not in self.scenario.trap.reasons:
            return
        target = self.host.machines[self.scenario.trap.validate]
        if target.end is not None:
            return  # the guest to validate has ended: nothing runs on its disk any more
        if self.guestval is not None and self.guestval.busy:
            return  # a management-guest window is open
        self.trapped += 1
        now_ns = self.host.time_ns()
        self.trap_log.append((self.trapped, now_ns))
        if not self._elapsed(now_ns):
            return
        self.emit(TrapEvent(Block.TRAP, machine.name, exit_.icount,
                            {"reason": exit_.reason.name, "port": getattr(exit_.decoded, "port", None), "rip": exit_.rip,
                             "exit_number": self.trapped, "host_ns": now_ns}))
        unsafe = safety(target)
        if unsafe is not None:
            self.deferrals[unsafe.value] = self.deferrals.get(unsafe.value, 0) + 1
            self.emit(TrapEvent(Block.SAFETY, target.name, target.cpu.vtime, {"safe": False, "reason": unsafe.value}))
            self.emit(TrapEvent(Block.SCHEDULE, machine.name, exit_.icount, {"guests": self.host.schedulable()}))
            return
        self.emit(TrapEvent(Block.SAFETY, target.name, target.cpu.vtime, {"safe": True}))
        self._validate(machine, target, exit_, now_ns)

    def _elapsed(self, now_ns: int) -> bool:
        """Blocks 315/320: has enough virtual time passed, or have enough exits been trapped?"""
        if self.policy.kind == "counter":
            self.counter += 1
            if self.counter < self.policy.count:
                return False
            self.counter = 0
            return True
        return now_ns - self.last_validation_ns >= self.policy.interval_ns

    # --- 340 … 370 ----------------------------------------------------------
    def _validate(self, machine, target, exit_, now_ns: int) -> None:
        from emu.integrity import validate

        started = time.perf_counter()
        channel, unit = self.host.disk_position(target, self.scenario.trap.disk)
        drive = channel.drives[unit]
        if self.guestval is not None:
            self._mount_in_guest(machine, target, drive, exit_, now_ns, started)
            return
        backing = drive.detach()                       # 340: the guest loses its disk
        self.host.detached.add(target.name)
        self.emit(TrapEvent(Block.REMAP, target.name, target.cpu.vtime,
                            {"disk": self.scenario.trap.disk, "to": "validator", "read_only": True}))
        try:
            self.emit(TrapEvent(Block.UNMOUNT_CHECK, target.name, target.cpu.vtime,
                                {"unmount": False, "why": "read-only analysis from the monitor needs no unmount"}))
            findings = validate(backing.view(), self.baseline)   # 410: read-only
        finally:
            drive.attach(backing)                      # 360: the disk comes back
            self.host.detached.discard(target.name)
        self._conclude(machine.name, exit_.icount, target, findings, now_ns, started)

    def _conclude(self, trapper: str, icount: int, target, findings, now_ns: int, started: float,
                  by: str = "monitor", error: Optional[str] = None) -> None:
        """Blocks 410 (the result), 420, 360 and 370, for both the monitor's and a guest's analysis."""
        self.validations += 1
        self.last_validation_ns = self.host.time_ns()   # the interval runs from the end of a validation window
        result = {"validation": self.validations, "clean": findings.clean and error is None,
                  "findings": findings.to_json()["findings"], "counts": findings.counts(), "by": by, "error": error}
        self.results.append(result)
        self.emit(TrapEvent(Block.ANALYSIS, target.name, target.cpu.vtime,
                            {"clean": result["clean"], "counts": findings.counts(), "by": by, "error": error,
                             "summary": [" ".join(f.to_text().split()) for f in findings]
                             + ([f"failed: {error}"] if error else [])}))
        if error is None:
            self._restrict(target, findings)
        self.emit(TrapEvent(Block.REMAP_BACK, target.name, target.cpu.vtime, {"disk": self.scenario.trap.disk}))
        self.emit(TrapEvent(Block.SCHEDULE, trapper, icount, {"guests": self.host.schedulable()}))
        self.pauses.append((time.perf_counter() - started, 0))

    # --- the management-guest variant (patent FIG. 3) ---------------------------------------
    def _mount_in_guest(self, machine, target, drive, exit_, now_ns: int, started: float) -> None:
        """Blocks 340/350: remap the disk read-only into the management guest; it reports by hypercalls."""
        validator = self.guestval.validator
        job = self.guestval.mount(target, drive)
        self.host.detached.add(target.name)
        self.emit(TrapEvent(Block.REMAP, target.name, target.cpu.vtime,
                            {"disk": self.scenario.trap.disk, "to": f"guest:{validator.name}", "read_only": True,
                             "position": "secondary master", "job": job.job_id}))
        self.emit(TrapEvent(Block.UNMOUNT_CHECK, target.name, target.cpu.vtime,
                            {"unmount": False, "why": "the guest keeps its mount; the validator sees a read-only copy "
                                                      "and the guest is not scheduled until the disk comes back"}))
        self._window = (machine.name, exit_.icount, now_ns, started)

    def _guest_done(self, job) -> None:
        """The management guest unmounted (or the deadline passed): blocks 355, 410, 420, 360, 370."""
        from emu.integrity.findings import Findings
        trapper, icount, now_ns, started = self._window
        self._window = None
        target = job.target
        self.host.detached.discard(target.name)
        self.emit(TrapEvent(Block.UNMOUNT, target.name, target.cpu.vtime,
                            {"job": job.job_id, "validator_vtime": self.guestval.validator.cpu.vtime - job.started}))
        findings = job.findings if job.findings is not None else Findings()
        self._conclude(trapper, icount, target, findings, now_ns, started, by=f"guest:{self.guestval.validator.name}",
                       error=job.error)

    def poll(self) -> None:
        """Called by the host between slices: enforce the management guest's deadline."""
        if self.guestval is not None:
            validator = self.guestval.validator
            if validator.end is not None:
                self.guestval.abort(f"management guest ended ({validator.end.message})")
            else:
                self.guestval.check_deadline()

    def _restrict(self, target, findings) -> None:
        """Block 420: apply the policy's restrictions on findings; lift them on a clean result if asked."""
        spec = self.scenario.restrictions
        if not findings.clean:
            self.findings_total += len(findings)
            if not self.restricted and spec.on_findings:
                applied = self.host.restrict(target, spec)
                self.restricted = True
                self.emit(TrapEvent(Block.RESTRICT, target.name, target.cpu.vtime, {"applied": applied}))
        elif self.restricted and spec.lift_when_clean:
            lifted = self.host.lift(target, spec)
            self.restricted = False
            self.emit(TrapEvent(Block.RESTRICT, target.name, target.cpu.vtime, {"lifted": lifted}))

