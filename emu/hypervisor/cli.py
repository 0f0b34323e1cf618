"""`emu host SCENARIO.toml`: run a multi-guest scenario with the trap handler; prints a timeline and a summary."""
from __future__ import annotations

import json
import sys
from typing import Any


def add_parsers(sub) -> None:
    """Register `emu host`."""
    p = sub.add_parser("host", help="run a multi-guest scenario with the trap handler",
                       description="Run the guests of a scenario file round-robin in deterministic quanta; chosen VM "
                                   "exits enter the trap handler, which validates a guest's disk when it is safe and "
                                   "restricts the guest on findings. Prints a timeline and a summary (or JSON).")
    p.add_argument("scenario", metavar="SCENARIO.toml")
    p.add_argument("--json", action="store_true", help="print every event and the summary as JSON lines")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument("--verbose", action="store_true", help="print every trap-handler step (310 ... 370)")
    p.add_argument("--pcap", metavar="FILE", default=None,
                   help="write every frame the virtual switch sees to FILE (pcap, 802.1Q-tagged with the ingress VLAN)")
    p.add_argument("--gdb", metavar="[HOST:]PORT", default=None,
                   help="serve the GDB remote protocol, one thread per guest (loopback unless HOST is given)")
    p.set_defaults(func=cmd_host)


STAMP = ("kind", "block", "step", "guest", "icount", "vtime", "host_ns")
"""Fields every event carries (docs/host.md, "Events"); the rest is the step's detail."""

HEADER = f"{'host time (ms)':>15}  {'guest':<6} {'guest insns':>11}  event"
"""Column header: host virtual time (the guests' virtual times added: monotonic), the event's guest, the exact
number of instructions that guest had retired."""


def _ms(ns: int) -> str:
    return f"{ns // 1_000_000}.{ns % 1_000_000:06d}"


def _head(e: dict[str, Any]) -> str:
    """The columns of :data:`HEADER` for an event."""
    return f"{_ms(e.get('host_ns', 0)):>15}  {e['guest']:<6} {e['icount']:>11}"


def format_event(e: dict[str, Any]) -> str:
    """One timeline line for an event: host virtual time in ms (exact to the ns), guest, its icount, the event."""
    head = _head(e)
    if e["kind"] == "console":
        return f"{head}  | {e['line']}"
    if e["kind"] == "guest_end":
        return f"{head}  ** ended: {e['message']}"
    block, step = e["block"], e["step"]
    detail = {k: v for k, v in e.items() if k not in STAMP}
    if block == 330 and not detail.get("safe"):
        text = f"unsafe ({detail['reason']}): validation deferred"
    elif block == 330:
        text = "safe"
    elif block == 315:
        text = f"clock policy due: {_ms(detail['elapsed_ns'])} ms since the last validation " \
               f"(interval {_ms(detail['interval_ns'])} ms)"
    elif block == 320:
        text = f"counter policy fired: {detail['counter']} of {detail['count']} trapped exits, counter reset"
    elif block == 410:
        text = "validation clean" if detail["clean"] else "FINDINGS: " + "; ".join(detail["summary"])
    elif block == 420:
        text = ("restricted: " + ", ".join(detail["applied"])) if "applied" in detail else \
            "restrictions lifted: " + ", ".join(detail["lifted"])
    elif block == 310:
        text = f"trap on {detail['reason']}" + (f" port {detail['port']:#x}" if detail.get("port") is not None else "")
    elif block == 340:
        text = f"disk {detail['disk']} remapped read-only to {detail['to']}" + \
            (f" ({detail['position']}), job {detail['job']}" if "job" in detail else "") + "; the guest is held"
    elif block == 350:
        text = f"unmount needed: {'yes' if detail['unmount'] else 'no'} ({detail['why']})"
    elif block == 355:
        text = f"job {detail['job']} unmounted by the validator after {_ms(detail['window_vtime_ns'])} ms " \
               "of its virtual time"
    elif block == 360:
        text = f"disk {detail['disk']} back to {e['guest']} after {_ms(detail['held_ns'])} ms host virtual time " \
               f"(validator: {detail['validator_insns']} guest instructions; held guest: {detail['target_insns']})"
    else:
        text = ", ".join(f"{k}={v}" for k, v in detail.items())
    return f"{head}  [{block} {step}] {text}"


ROUTINE_BLOCKS = {310, 315, 320, 340, 350, 355, 360, 370}
"""Steps folded away by default (``--verbose`` prints them)."""
WINDOW_BLOCKS = {340, 350, 355, 360}
"""Shown by default when a management guest validates: the remap / mount / unmount / remap-back of each window."""


class Timeline:
    """Readable timeline: routine steps (310–320, 340–360, 370) folded away, except the window steps 340–360 when
    a management guest validates; runs of deferrals with the same reason become one line with a count
    (``--verbose`` prints every step)."""

    def __init__(self, out, verbose: bool = False, guest_window: bool = False):
        self.out = out
        self.verbose = verbose
        self.hidden = set() if verbose else ROUTINE_BLOCKS - (WINDOW_BLOCKS if guest_window else set())
        self.deferred: tuple[str, int, str] | None = None  # (reason, count, first line)
        self.last_findings: list[str] | None = None
        self.started = False

    def _print(self, line: str) -> None:
        if not self.started:
            print(HEADER, file=self.out)
            self.started = True
        print(line, file=self.out)

    def _flush(self) -> None:
        if self.deferred is not None:
            reason, count, first = self.deferred
            self._print(first + (f"  (x{count} in a row)" if count > 1 else ""))
            self.deferred = None

    def __call__(self, e: dict[str, Any]) -> None:
        if e.get("block") in self.hidden:
            return
        if not self.verbose and e.get("block") == 330:
            if e.get("safe"):
                return
            if self.deferred is not None and self.deferred[0] == e["reason"]:
                self.deferred = (e["reason"], self.deferred[1] + 1, self.deferred[2])
                return
            self._flush()
            self.deferred = (e["reason"], 1, format_event(e))
            return
        self._flush()
        if not self.verbose and e.get("block") == 410 and not e["clean"]:
            if e["summary"] == self.last_findings:
                self._print(f"{_head(e)}  [410 analysis] same findings as before")
                return
            self.last_findings = e["summary"]
        self._print(format_event(e))

    def close(self) -> None:
        self._flush()


def run_scenario(path: str, *, json_out: bool = False, quiet: bool = False, out=None,
                 gdb: str | None = None, verbose: bool = False, pcap: str | None = None) -> tuple[int, dict]:
    """Run a scenario printing to ``out``; returns (exit status, summary)."""
    from emu.hypervisor.host import Host
    from emu.hypervisor.scenario import load

    out = out or sys.stdout
    scenario = load(path)
    if pcap:
        from pathlib import Path
        scenario.pcap = Path(pcap)
    timeline = Timeline(out, verbose, guest_window=scenario.where.startswith("guest:"))

    def on_event(e: dict[str, Any]) -> None:
        if json_out:
            print(json.dumps(e, sort_keys=True), file=out)
        elif not quiet:
            timeline(e)

    host = Host(scenario, on_event=on_event)
    try:
        if gdb:
            from emu.debug.gdbstub import SessionEnd
            from emu.debug.machine_target import serve_host
            end = serve_host(host, gdb)
            summary = host.run() if end is SessionEnd.DETACHED else host.summary()
        else:
            summary = host.run()
    finally:
        timeline.close()
        host.close()
    if json_out:
        print(json.dumps({"kind": "summary", **summary}, sort_keys=True), file=out)
    else:
        print(format_summary(summary), file=out)
    return 0, summary


def format_summary(s: dict[str, Any]) -> str:
    """The readable summary."""
    lines = ["summary:",
             f"  validations: {s['validations']} ({sum(1 for r in s['results'] if r['clean'])} clean)",
             f"  trapped exits: {s['trapped_exits']}",
             "  deferrals: " + (", ".join(f"{k}={v}" for k, v in s["deferrals"].items()) or "none"),
             f"  findings: {s['findings']}",
             f"  restricted at the end: {'yes' if s['restricted'] else 'no'}",
             f"  longest validation pause: {s['pause_ms_max']} ms"]
    for name, g in s["guests"].items():
        lines.append(f"  guest {name}: {g['end']} ({g['icount']} instructions)")
    for name, port in (s.get("network") or {}).items():
        drops = ", ".join(f"{k}={v}" for k, v in sorted(port["dropped"].items())) or "none"
        lines.append(f"  network {name}: vlan {port['vlan']}, frames in {port['frames_in']}, "
                     f"out {port['frames_out']}, dropped {drops}")
    return "\n".join(lines)


def cmd_host(args) -> int:
    """`emu host`."""
    status, _ = run_scenario(args.scenario, json_out=args.json, quiet=args.quiet, gdb=args.gdb,
                             verbose=args.verbose, pcap=args.pcap)
    return status
