"""The host: several guests scheduled round-robin in deterministic instruction quanta, and the trap handler.

Each guest is a :class:`emu.machine.Machine` with its own vCPU, RAM, devices
and disks (the scenario's disk images are copied first, so a run never
changes the files it was given).  Quanta are ``quantum`` instructions plus a
jitter drawn from a PRNG seeded by the scenario, so quantum boundaries fall
at varied but reproducible points.  Host time is the sum of the guests'
virtual times (one virtual CPU shared in turn).
"""
from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from emu.hypervisor.scenario import RestrictionSpec, Scenario
from emu.hypervisor.trap import TrapEvent, TrapHandler, stamp
from emu.machine import EndReason, Machine, MachineConfig, RunResult
from emu.vmx.controls import PrimaryControls

if TYPE_CHECKING:
    from emu.hypervisor.restrictions import GuestRestrictions


@dataclass
class GuestState:
    """Scheduling state of one guest."""

    machine: Machine
    paused: bool = False
    result: Optional[RunResult] = None
    console: bytearray = field(default_factory=bytearray)


class Host:
    """Runs a scenario: builds the guests, wires the trap handler, schedules, restricts."""

    def __init__(self, scenario: Scenario, on_event: Optional[Callable[[dict[str, Any]], None]] = None,
                 on_console: Optional[Callable[[str, str], None]] = None):
        self.scenario = scenario
        self.on_event = on_event or (lambda e: None)
        self.on_console = on_console or (lambda guest, line: None)
        self.events: list[dict[str, Any]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="emu-host-")
        self.guests: dict[str, GuestState] = {}
        self.machines: dict[str, Machine] = {}
        self.detached: set[str] = set()
        self.disk_copies: dict[str, list[Path]] = {}
        self.rng = random.Random(scenario.seed)
        self.restrictions: dict[str, "GuestRestrictions"] = {}
        """Restrictions in force, by guest (block 420; emu.hypervisor.restrictions)."""
        for spec in scenario.guests:
            copies = []
            for i, disk in enumerate(spec.disks):
                copy = Path(self._tmp.name) / f"{spec.name}-{i}-{disk.name}"
                shutil.copyfile(disk, copy)
                copies.append(copy)
            self.disk_copies[spec.name] = copies
            state = GuestState(None)  # type: ignore[arg-type]
            machine = Machine(MachineConfig(kernel=str(spec.kernel), kernel_name=spec.kernel_name or None,
                                            cmdline=spec.cmdline, mem_mib=spec.mem,
                                            disks=[str(c) for c in copies], name=spec.name),
                              console=self._console_sink(spec.name, state))
            state.machine = machine
            self.guests[spec.name] = state
            self.machines[spec.name] = machine
        self.switch = None
        self.pcap = None
        if any(spec.vlan is not None for spec in scenario.guests):
            self._build_network()
        self.trap = TrapHandler(self, scenario, self._emit_trap)
        trapper = self.machines[scenario.trap.guest]
        if "IO_INSTRUCTION" in scenario.trap.reasons:
            trapper.vmx.controls.primary |= PrimaryControls.UNCONDITIONAL_IO
        if "HLT" in scenario.trap.reasons:
            trapper.vmx.controls.primary |= PrimaryControls.HLT
        if "RDTSC" in scenario.trap.reasons:
            trapper.vmx.controls.primary |= PrimaryControls.RDTSC
        trapper.vmx.observers.append(lambda record: self.trap.on_exit(trapper, record))

    def _build_network(self) -> None:
        """The patent's virtual network (530): one NE2000 per guest with a ``vlan``, on one VLAN-aware switch."""
        from emu.devices.ne2000 import DEFAULT_MAC
        from emu.net.attach import attach_ne2000
        from emu.net.pcap import PcapWriter
        from emu.net.switch import VirtualSwitch

        if self.scenario.pcap is not None:
            try:
                self.pcap = PcapWriter(self.scenario.pcap)
            except OSError as exc:
                from emu import EmuError
                raise EmuError(f"cannot write pcap {self.scenario.pcap}: {exc.strerror}") from None
        self.switch = VirtualSwitch(time_ns=self.time_ns, pcap=self.pcap)
        for i, spec in enumerate(self.scenario.guests):
            if spec.vlan is None:
                continue
            machine = self.machines[spec.name]
            mac = spec.mac or DEFAULT_MAC[:5] + bytes([DEFAULT_MAC[5] + i])
            attach_ne2000(machine, self.switch, spec.name, mac=mac, vlan=spec.vlan)
            machine.switch_port = spec.name
            machine.home_vlan = spec.vlan

    # --- plumbing -------------------------------------------------------------
    def _console_sink(self, name: str, state: GuestState) -> Callable[[int], None]:
        def sink(byte: int) -> None:
            if byte == 0x0A:
                self._guest_event("console", name, line=state.console.decode(errors="replace"))
                self.on_console(name, state.console.decode(errors="replace"))
                state.console.clear()
            else:
                state.console.append(byte)
        return sink

    def _event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.on_event(event)

    def _guest_event(self, kind: str, name: str, **fields: Any) -> None:
        """A host event about guest ``name`` with the event contract's ``icount``/``vtime``/``host_ns`` (docs/host.md)."""
        self._event({"kind": kind, "guest": name, **stamp(self.machines[name]), "host_ns": self.time_ns(), **fields})

    def _emit_trap(self, event: TrapEvent) -> None:
        self._event(event.to_json())

    def time_ns(self) -> int:
        """Host virtual time: the guests' virtual times added (they share one virtual CPU in turn)."""
        return sum(m.clock.ns() for m in self.machines.values())

    def schedulable(self) -> list[str]:
        """Guests that the scheduler will run (block 370)."""
        return [n for n, g in self.guests.items() if g.result is None and not g.paused and n not in self.detached]

    def disk_position(self, machine: Machine, index: int):
        """(channel, unit) of the guest's disk ``index`` (primary master, primary slave, secondary …)."""
        return machine.platform.ide[index // 2], index % 2

    # --- restrictions (block 420) -------------------------------------------------
    def restrict(self, machine: Machine, spec: RestrictionSpec) -> list[str]:
        """Apply the scenario's restrictions to ``machine`` (emu.hypervisor.restrictions); returns what was
        applied, as the timeline shows it (a restriction that cannot apply, e.g. a quarantine without a NIC, is
        left out and listed in ``self.restrictions[name].skipped``)."""
        from emu.hypervisor import restrictions
        done = restrictions.restrict(self, machine, spec)
        earlier = self.restrictions.get(machine.name)
        if earlier is not None:   # restricted again before a lift: both are lifted together
            earlier.applied += done.applied
            earlier.skipped += done.skipped
        else:
            self.restrictions[machine.name] = done
        return [item.text for item in done.applied]

    def lift(self, machine: Machine, spec: Optional[RestrictionSpec] = None) -> list[str]:
        """Undo what :meth:`restrict` applied to ``machine``, and only that; returns the names lifted."""
        from emu.hypervisor import restrictions
        done = self.restrictions.pop(machine.name, None)
        return restrictions.lift(done) if done is not None else []

    # --- scheduling -----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every guest to its end (or the scenario's budget); return the summary."""
        budget = self.scenario.max_insns
        while True:
            runnable = self.schedulable()
            if not runnable:
                break
            if self.time_ns() >= self.scenario.max_ns:
                self._out_of_time(runnable)
                break
            for name in runnable:
                state = self.guests[name]
                if state.result is not None or state.paused:
                    continue
                machine = state.machine
                quantum = self.scenario.quantum + (self.rng.randrange(self.scenario.jitter + 1)
                                                   if self.scenario.jitter else 0)
                quantum = min(quantum, budget - machine.cpu.icount)
                if quantum <= 0:
                    self._out_of_budget(name)
                    continue
                result = machine.run(max_insns=quantum, yield_on_halt=True)
                self._after_turn(name, result)
        for state in self.guests.values():
            state.machine.close()
        return self.summary()

    def _out_of_time(self, runnable: list[str]) -> None:
        """The scenario's host virtual-time limit: the guests still running end (status 124)."""
        for name in runnable:
            state = self.guests[name]
            state.result = RunResult(EndReason.MAX_INSNS, 124, "host virtual-time limit of the scenario "
                                     f"reached ({self.scenario.max_ns} ns)", state.machine.cpu.icount)
            self._guest_event("guest_end", name, message=state.result.message, status=state.result.status)

    def _out_of_budget(self, name: str) -> None:
        """The scenario's instruction budget: guest ``name`` ends (status 124)."""
        state = self.guests[name]
        machine = state.machine
        state.result = RunResult(EndReason.MAX_INSNS, 124, "instruction budget of the scenario reached",
                                 machine.cpu.icount)
        self._guest_event("guest_end", name, message=state.result.message, status=state.result.status)

    def _after_turn(self, name: str, result: Optional[RunResult]) -> None:
        """After a guest's turn: the trap handler's poll (the management guest's deadline), the guest's end."""
        self.trap.poll()
        if result is not None and result.reason not in (EndReason.MAX_INSNS, EndReason.IDLE, EndReason.STOPPED):
            machine = self.guests[name].machine
            self.guests[name].result = result
            self.trap.poll()
            self._guest_event("guest_end", name, message=result.message, status=result.status)

    def step_guest(self, name: str, run: Callable[[Machine, int], Optional[RunResult]]) -> Optional[str]:
        """One turn of guest ``name`` outside the round-robin (a debugger's step or slice), under ``run``'s rules.

        Block 370: a paused guest, or one whose disk is being validated, does not run; the scenario's
        virtual-time limit and instruction budget end guests as in ``run``.  Otherwise ``run(machine, max_insns)``
        runs at most ``max_insns`` instructions and returns the guest's end (or None), and the trap handler is
        polled as after a quantum.  Returns None when the guest ran, else why it did not.
        """
        state = self.guests[name]
        if state.result is not None:
            return f"ended ({state.result.message})"
        if state.paused:
            return "paused by the trap handler's restriction"
        if name in self.detached:
            return "its disk is being validated"
        if self.time_ns() >= self.scenario.max_ns:
            self._out_of_time(self.schedulable())
            return state.result.message
        allowance = self.scenario.max_insns - state.machine.cpu.icount
        if allowance <= 0:
            self._out_of_budget(name)
            return state.result.message
        self._after_turn(name, run(state.machine, allowance))
        return None

    def summary(self) -> dict[str, Any]:
        """Validations, deferrals by reason, findings, restrictions, guest ends."""
        t = self.trap
        return {
            "validations": t.validations,
            "trapped_exits": t.trapped,
            "deferrals": dict(sorted(t.deferrals.items())),
            "findings": t.findings_total,
            "restricted": t.restricted,
            "results": [{"validation": r["validation"], "clean": r["clean"], "counts": r["counts"]} for r in t.results],
            "guests": {n: {"status": g.result.status if g.result else None,
                           "end": g.result.message if g.result else "paused" if g.paused else None,
                           "icount": g.machine.cpu.icount}
                       for n, g in self.guests.items()},
            "pause_ms_max": round(max((p[0] for p in t.pauses), default=0.0) * 1000, 3),
            "network": None if self.switch is None else {
                name: {"vlan": self.switch.vlan_of(name), **vars(self.switch.counters(name))}
                for name in (spec.name for spec in self.scenario.guests if spec.vlan is not None)},
        }

    def final_disk(self, guest: str, index: int = 0) -> bytes:
        """The bytes of a guest's (copied) disk now."""
        return self.disk_copies[guest][index].read_bytes()

    def close(self) -> None:
        """Close the capture and remove the disk copies."""
        if self.pcap is not None:
            self.pcap.close()
            self.pcap = None
        self._tmp.cleanup()
