"""The trap handler: US patent 7,539,986 processes 300 and 400 as an explicit state machine.

Each step carries the patent's block number and emits one event:
310 trap → 315/320 elapsed (the clock or counter policy fired) → 330 safe? →
340 remap the disk to the validator → 350 unmount needed? (355 unmount, in the
management-guest variant) → 410 analysis and validation → 420 restrictions →
360 remap back → 370 schedule.  An unsafe point defers the validation (330,
with the reason) and goes to 370.  A trapped exit at which the policy is not
due returns to its guest without an event (it is counted in ``trapped``).

Every event carries ``icount`` (the exact number of instructions its guest
has retired), ``vtime`` (that guest's virtual time in ns, halted time
included) and ``host_ns`` (host virtual time: the guests' virtual times
added, monotonic across guests); see ``docs/host.md``.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

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


def stamp(machine) -> dict[str, int]:
    """``icount`` (exact instructions ``machine`` retired; inside an I/O exit, those before the I/O instruction)
    and ``vtime`` (its virtual time in ns, halted time included: emu/clock.py)."""
    cpu = machine.cpu
    return {"icount": cpu.vtime - cpu.idle, "vtime": machine.clock.ns()}


@dataclass
class TrapEvent:
    """One step of the handler, for the timeline, traces and tests (``icount``/``vtime`` are ``guest``'s)."""

    block: Block
    guest: str
    icount: int
    vtime: int
    host_ns: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "trap_step", "block": int(self.block), "step": self.block.name.lower(), "guest": self.guest,
                "icount": self.icount, "vtime": self.vtime, "host_ns": self.host_ns, **self.detail}


class Pause(NamedTuple):
    """One validation window (blocks 340–360), measured: the validated guest is not scheduled meanwhile."""

    host_s: float               # host wall time of the window (not deterministic: benchmarks only)
    host_cpu_s: float           # host process CPU time of the window (idem; steadier on a loaded host)
    target_insns: int           # instructions the validated guest retired during the window (it is held: 0)
    trapper_insns: int          # instructions the trapping guest retired during the window
    validator_insns: int        # instructions the validator guest retired (guest mode; 0 for the monitor)
    host_vtime_ns: int          # host virtual time that passed during the window


@dataclass
class _Window:
    """The state at block 340, to measure the window at block 360."""

    trapper: Any
    started: float
    started_cpu: float
    host_ns: int
    target_icount: int
    trapper_icount: int
    validator_icount: int


def safety(target) -> Optional[Unsafe]:
    """Block 330: the first reason validating ``target`` (a Machine) now is unsafe, or None.

    Checked in this order: the guest's own write-in-progress word (it knows best), a DMA not finished (data
    moving, or BMISTA Active without Interrupt: notes/hardware-reference.md, "DMA not active for a safe trap"),
    a drive BSY or DRQ, then IF masked or an STI/MOV-SS shadow (it may be inside a driver's top half).
    """
    cpu = target.cpu
    platform = target.platform
    if target.wip_addr is not None and int.from_bytes(cpu.read_phys(target.wip_addr, 4), "little"):
        return Unsafe.WRITE_IN_PROGRESS
    if not platform.bmdma.quiescent:   # data moving, or BMISTA Active without Interrupt (a transfer not finished)
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
        self.pauses: list[Pause] = []
        self.trapped = 0
        self.trap_log: list[tuple[int, int]] = []   # (exit number, host ns) of every trapped exit
        from emu.integrity.baseline import Baseline
        self.baseline = Baseline.load(scenario.baseline)
        self.guestval = None
        if scenario.where.startswith("guest:"):
            from emu.hypervisor.guestval import GuestValidator
            self.guestval = GuestValidator(host.machines[scenario.where[6:]], self.baseline, scenario.deadline_insns,
                                           self._guest_done)
        self._window: Optional[_Window] = None
        from emu.vmx.reasons import ExitReason
        self._reasons = frozenset(ExitReason[name] for name in scenario.trap.reasons)
        self._target = host.machines[scenario.trap.validate]

    def _emit(self, block: Block, machine, detail: Optional[dict[str, Any]] = None) -> None:
        """Emit one step for ``machine`` (its exact icount and vtime now) at the host's virtual time."""
        st = stamp(machine)
        self.emit(TrapEvent(block, machine.name, st["icount"], st["vtime"], self.host.time_ns(), detail or {}))

    # --- 310 --------------------------------------------------------------
    def on_exit(self, machine, exit_) -> None:
        """Block 310: a chosen exit of the trapping guest enters the handler (the guest is suspended)."""
        if self._window is not None:
            return  # a management-guest window is open (checked first: the validator's own exits come here)
        if exit_.reason not in self._reasons:
            return
        target = self._target
        if target.end is not None:
            return  # the guest to validate has ended: nothing runs on its disk any more
        self.trapped += 1
        now_ns = self.host.time_ns()
        self.trap_log.append((self.trapped, now_ns))
        fired = self._elapsed(now_ns)
        if fired is None:
            return
        self._emit(Block.TRAP, machine, {"reason": exit_.reason.name, "port": getattr(exit_.decoded, "port", None),
                                         "rip": exit_.rip, "exit_number": self.trapped})
        self._emit(fired[0], machine, fired[1])
        unsafe = safety(target)
        if unsafe is not None:
            self.deferrals[unsafe.value] = self.deferrals.get(unsafe.value, 0) + 1
            self._emit(Block.SAFETY, target, {"safe": False, "reason": unsafe.value})
            self._emit(Block.SCHEDULE, machine, {"guests": self.host.schedulable()})
            return
        self._emit(Block.SAFETY, target, {"safe": True})
        self._validate(machine, target)

    def _elapsed(self, now_ns: int) -> Optional[tuple[Block, dict[str, Any]]]:
        """Blocks 315/320: has enough virtual time passed, or have enough exits been trapped?

        None when the policy is not due; else the block that fired and its event's detail.
        """
        if self.policy.kind == "counter":
            self.counter += 1
            if self.counter < self.policy.count:
                return None
            counted, self.counter = self.counter, 0
            return Block.ELAPSED_COUNTER, {"counter": counted, "count": self.policy.count, "reset_to": 0}
        elapsed = now_ns - self.last_validation_ns
        if elapsed < self.policy.interval_ns:
            return None
        return Block.ELAPSED_CLOCK, {"elapsed_ns": elapsed, "interval_ns": self.policy.interval_ns}

    # --- 340 … 370 ----------------------------------------------------------
    def _validate(self, machine, target) -> None:
        from emu.integrity import validate

        channel, unit = self.host.disk_position(target, self.scenario.trap.disk)
        drive = channel.drives[unit]
        validator = self.guestval.validator if self.guestval is not None else None
        self._window = _Window(machine, time.perf_counter(), time.process_time(), self.host.time_ns(),
                               stamp(target)["icount"], stamp(machine)["icount"],
                               stamp(validator)["icount"] if validator is not None else 0)
        if self.guestval is not None:
            self._mount_in_guest(target, drive)
            return
        backing = drive.detach()                       # 340: the guest loses its disk
        self.host.detached.add(target.name)
        self._emit(Block.REMAP, target, {"disk": self.scenario.trap.disk, "to": "validator", "read_only": True})
        try:
            self._emit(Block.UNMOUNT_CHECK, target,
                       {"unmount": False, "why": "read-only analysis from the monitor needs no unmount"})
            findings = validate(backing.view(), self.baseline)   # 410: read-only
        finally:
            drive.attach(backing)                      # 360: the disk comes back
            self.host.detached.discard(target.name)
        self._conclude(target, findings)

    def _conclude(self, target, findings, by: str = "monitor", error: Optional[str] = None) -> None:
        """Blocks 410 (the result), 420, 360 and 370, for both the monitor's and a guest's analysis."""
        window, self._window = self._window, None
        self.validations += 1
        self.last_validation_ns = self.host.time_ns()   # the interval runs from the end of a validation window
        result = {"validation": self.validations, "clean": findings.clean and error is None,
                  "findings": findings.to_json()["findings"], "counts": findings.counts(), "by": by, "error": error}
        self.results.append(result)
        summary = [" ".join(f.to_text().split()) for f in findings] + ([f"failed: {error}"] if error else [])
        self._emit(Block.ANALYSIS, target, {"clean": result["clean"], "counts": findings.counts(), "by": by,
                                            "error": error, "summary": summary})
        if error is None:
            self._restrict(target, findings)
        validator = self.guestval.validator if self.guestval is not None else None
        pause = Pause(time.perf_counter() - window.started, time.process_time() - window.started_cpu,
                      stamp(target)["icount"] - window.target_icount,
                      stamp(window.trapper)["icount"] - window.trapper_icount,
                      stamp(validator)["icount"] - window.validator_icount if validator is not None else 0,
                      self.host.time_ns() - window.host_ns)
        self.pauses.append(pause)
        self._emit(Block.REMAP_BACK, target,
                   {"disk": self.scenario.trap.disk, "held_ns": pause.host_vtime_ns,
                    "target_insns": pause.target_insns, "validator_insns": pause.validator_insns})
        self._emit(Block.SCHEDULE, window.trapper, {"guests": self.host.schedulable()})

    # --- the management-guest variant (patent FIG. 3) ---------------------------------------
    def _mount_in_guest(self, target, drive) -> None:
        """Blocks 340/350: remap the disk read-only into the management guest; it reports by hypercalls."""
        validator = self.guestval.validator
        job = self.guestval.mount(target, drive)
        self.host.detached.add(target.name)
        self._emit(Block.REMAP, target, {"disk": self.scenario.trap.disk, "to": f"guest:{validator.name}",
                                         "read_only": True, "position": "secondary master", "job": job.job_id})
        self._emit(Block.UNMOUNT_CHECK, target,
                   {"unmount": False, "why": "the guest keeps its mount: the validator gets the disk read-only "
                                             "and the guest is held until it comes back"})

    def _guest_done(self, job) -> None:
        """The management guest unmounted (or the deadline passed): blocks 355, 410, 420, 360, 370."""
        from emu.integrity.findings import Findings
        target = job.target
        self.host.detached.discard(target.name)
        validator = self.guestval.validator
        self._emit(Block.UNMOUNT, validator,
                   {"job": job.job_id, "window_vtime_ns": validator.clock.ns() - validator.clock.ns(job.started)})
        findings = job.findings if job.findings is not None else Findings()
        self._conclude(target, findings, by=f"guest:{validator.name}", error=job.error)

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
                self._emit(Block.RESTRICT, target, {"applied": applied})
        elif self.restricted and spec.lift_when_clean:
            lifted = self.host.lift(target, spec)
            self.restricted = False
            self._emit(Block.RESTRICT, target, {"lifted": lifted})

