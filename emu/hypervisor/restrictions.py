"""Block 420 of US patent 7,539,986: the restrictions put on a guest whose validation found something, and lifting them.

Each restriction is applied to one :class:`emu.machine.Machine` and remembers exactly what it changed, so lifting
undoes only that (a restriction that could not be applied, e.g. a quarantine VLAN for a guest without a NIC, is
skipped and never "lifted"):

- ``quarantine_vlan``: the guest's switch port moves to the quarantine VLAN (its home VLAN comes back on lift);
- ``deny_ports``: the ports' bits are set in the guest's VMX I/O bitmaps with "use I/O bitmaps" on (SDM Vol. 3C
  §25.6.4, §26.1.3), and an IO_INSTRUCTION exit handler completes a denied access without the device: an IN or INS
  element reads all-ones, an OUT or OUTS element is dropped;
- ``revoke_hypercalls``: those VMCALL leaves return -1 (-EPERM) to the guest;
- ``pause``: the host no longer schedules the guest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from emu.hypervisor.scenario import RestrictionSpec
from emu.vmx.controls import BITMAP_BYTES, PrimaryControls
from emu.vmx.monitor import Decision, Handler, Monitor, Outcome
from emu.vmx.qualification import IoDirection
from emu.vmx.reasons import ExitReason
from emu.vmx.record import VmExit


@dataclass(frozen=True)
class IoCompletion:
    """Exit-handler decision for an I/O exit: the instruction completes without the device, an IN/INS element
    reading ``in_data`` (masked to its size) and an OUT/OUTS element writing nothing — what a VMM does when it
    emulates the access itself and resumes after it (SDM Vol. 3C §28.2.1, I/O instructions)."""

    in_data: int


@dataclass
class Applied:
    """One restriction in force on a guest: its name, how the timeline shows it, and how to undo it."""

    name: str
    text: str
    undo: Callable[[], None]


class PortDenial:
    """``deny_ports`` through the guest's VMX I/O bitmaps and an IO_INSTRUCTION exit handler."""

    def __init__(self, monitor: Monitor, ports: list[int]):
        self.monitor = monitor
        self.ports = frozenset(ports)
        self.denied = 0
        """Accesses completed without the device (IN/INS elements and OUT/OUTS elements)."""
        self._previous: Optional[Handler] = None
        self._set_bitmaps = False
        self._saved_bitmaps: Optional[tuple[bytes, bytes]] = None
        self._set_bits: list[int] = []

    def apply(self) -> None:
        """Set the ports' bitmap bits and "use I/O bitmaps"; install the handler (chained to any earlier one).

        With "use I/O bitmaps" the processor ignores "unconditional I/O exiting" (SDM §26.1.3): when the guest had
        it on (its I/O instructions are trap points), every other bit is set too, so every access still exits.
        """
        c = self.monitor.controls
        if not c.primary & PrimaryControls.USE_IO_BITMAPS:
            self._set_bitmaps = True
            self._saved_bitmaps = (bytes(c.io_bitmap_a), bytes(c.io_bitmap_b))
            if c.primary & PrimaryControls.UNCONDITIONAL_IO:
                c.io_bitmap_a[:] = b"\xff" * BITMAP_BYTES
                c.io_bitmap_b[:] = b"\xff" * BITMAP_BYTES
            c.primary |= PrimaryControls.USE_IO_BITMAPS
        for port in sorted(self.ports):
            bitmap = c.io_bitmap_a if port < 0x8000 else c.io_bitmap_b
            byte, bit = (port & 0x7FFF) >> 3, 1 << (port & 7)
            if not bitmap[byte] & bit:
                bitmap[byte] |= bit
                self._set_bits.append(port)
        self._previous = self.monitor.handlers.get(ExitReason.IO_INSTRUCTION)
        self.monitor.on(ExitReason.IO_INSTRUCTION, self.handle)

    def lift(self) -> None:
        """Undo :meth:`apply`: the earlier handler, bitmap bits and controls come back."""
        c = self.monitor.controls
        if self.monitor.handlers.get(ExitReason.IO_INSTRUCTION) == self.handle:
            if self._previous is None:
                del self.monitor.handlers[ExitReason.IO_INSTRUCTION]
            else:
                self.monitor.handlers[ExitReason.IO_INSTRUCTION] = self._previous
        if self._set_bitmaps:
            c.primary &= ~PrimaryControls.USE_IO_BITMAPS
            c.io_bitmap_a[:], c.io_bitmap_b[:] = self._saved_bitmaps
        else:
            for port in self._set_bits:
                bitmap = c.io_bitmap_a if port < 0x8000 else c.io_bitmap_b
                bitmap[(port & 0x7FFF) >> 3] &= ~(1 << (port & 7)) & 0xFF
        self._set_bits = []

    def handle(self, record: VmExit, monitor: Monitor) -> Outcome:
        """The IO_INSTRUCTION exit handler: an access touching a denied port completes as the restriction says."""
        q = record.decoded
        if q is not None and any((port & 0xFFFF) in self.ports for port in range(q.port, q.port + q.size)):
            self.denied += 1
            if q.direction is IoDirection.IN:
                return IoCompletion((1 << (8 * q.size)) - 1)   # type: ignore[return-value]
            return Decision.SKIP
        return self._previous(record, monitor) if self._previous is not None else None


@dataclass
class GuestRestrictions:
    """The restrictions in force on one guest (what :func:`restrict` applied), and what was skipped."""

    applied: list[Applied] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ports: Optional[PortDenial] = None


def restrict(host, machine, spec: RestrictionSpec) -> GuestRestrictions:
    """Apply ``spec.on_findings`` to ``machine`` (a guest of ``host``); returns what was applied and skipped."""
    done = GuestRestrictions()
    for name in spec.on_findings:
        if name == "quarantine_vlan":
            port = getattr(machine, "switch_port", None)
            if port is None or host.switch is None:
                done.skipped.append("quarantine_vlan (the guest has no NIC)")
                continue
            home = host.switch.vlan_of(port)
            host.switch.set_vlan(port, spec.quarantine_vlan)
            done.applied.append(Applied(name, f"quarantine_vlan={spec.quarantine_vlan}",
                                        lambda port=port, home=home: host.switch.set_vlan(port, home)))
        elif name == "deny_ports":
            denial = PortDenial(machine.vmx, spec.deny_ports)
            denial.apply()
            done.ports = denial
            done.applied.append(Applied(name, "deny_ports=" + ",".join(f"{p:#x}" for p in spec.deny_ports),
                                        denial.lift))
        elif name == "revoke_hypercalls":
            added = set(spec.revoke_hypercalls) - machine.revoked_hypercalls
            machine.revoked_hypercalls.update(added)
            done.applied.append(Applied(name, "revoke_hypercalls=" + ",".join(map(str, spec.revoke_hypercalls)),
                                        lambda added=added: machine.revoked_hypercalls.difference_update(added)))
        elif name == "pause":
            state = host.guests[machine.name]
            if state.paused:
                done.skipped.append("pause (the guest is already paused)")
                continue
            state.paused = True
            done.applied.append(Applied(name, "pause", lambda state=state: setattr(state, "paused", False)))
    return done


def lift(done: GuestRestrictions) -> list[str]:
    """Undo what :func:`restrict` applied (in reverse order); returns the names of the restrictions lifted."""
    for item in reversed(done.applied):
        item.undo()
    names = [item.name for item in done.applied]
    done.applied = []
    done.ports = None
    return names
