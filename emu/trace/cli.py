"""`emu record`, `emu replay`, `emu trace show|diff|stats` (docs/traces.md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from emu import EmuError
from emu.cli import count_int, positive_int


def add_parsers(sub) -> None:
    """Register `emu record`, `emu replay` and `emu trace`."""
    from emu.trace.events import DEFAULT_CHECKPOINT_EVERY
    from emu.trace.format import KINDS

    p = sub.add_parser("record", help="run a kernel and record its trace",
                       description="Boot a multiboot kernel like `emu run` and record every event (VM exits, "
                                   "interrupts, ATA commands, disk I/O, DMA, console bytes) and periodic state "
                                   "checkpoints to a trace file. The disks are run as private copies: the input "
                                   "files never change, so the trace can be replayed. Guest console bytes go to "
                                   "stdout (unless --quiet); a summary goes to stderr. Exit status 0 once the "
                                   "trace is written (the guest's own exit status is in the trace's end record), "
                                   "2 for unusable input.")
    p.add_argument("kernel", metavar="KERNEL|SCENARIO",
                   help="multiboot ELF32 kernel, or a host scenario file (.toml, see docs/host.md)")
    p.add_argument("-o", "--output", required=True, metavar="TRACE", help="trace file to write")
    p.add_argument("--disk", action="append", default=[], metavar="IMG",
                   help="raw disk image (primary master, primary slave, secondary master, secondary slave)")
    p.add_argument("--disk-ro", action="store_true", help="the guest sees the disks read-only")
    p.add_argument("--mem", type=positive_int, default=32, metavar="MIB", help="guest RAM in MiB (default 32)")
    p.add_argument("--max-insns", type=positive_int, default=None, metavar="N", help="stop after N instructions")
    p.add_argument("--cmdline", default="", help="multiboot command line given to the kernel")
    p.add_argument("--checkpoint-every", type=positive_int, default=DEFAULT_CHECKPOINT_EVERY, metavar="N",
                   help=f"state checkpoint at the first event after every N instructions "
                        f"(default {DEFAULT_CHECKPOINT_EVERY}); one is always taken at the end")
    p.add_argument("--nic", nargs="?", const="", default=None, metavar="OPTIONS",
                   help="an NE2000 on the guest's own switch, QEMU ne2k_isa defaults (0x300, IRQ 9); OPTIONS like "
                        "mac=52:54:00:12:34:57,iobase=0x320,irq=10 (docs/network.md); recorded in the header, "
                        "its frames recorded as `frame` events")
    p.add_argument("--net-peer", choices=("echo",), default=None,
                   help="what else is on the NIC's switch: echo = the echo peer of the network kernels (needs --nic)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not copy guest console bytes to stdout")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("replay", help="re-run a trace and check every event",
                       description="Re-run a trace from its recorded inputs and compare every event and checkpoint. "
                                   "Refuses with one line when an input's SHA-256 no longer matches. Exit status 0 "
                                   "when everything matches, 1 at a divergence (with a report), 2 for an unusable "
                                   "trace or input.")
    p.add_argument("trace", metavar="TRACE")
    p.add_argument("--base", type=Path, default=None, metavar="DIR",
                   help="directory the recorded input paths are relative to (default: the working directory)")
    p.add_argument("--force", action="store_true", help="replay even when inputs changed (to see where it diverges)")
    p.add_argument("--context", type=count_int, default=4, metavar="N", help="events shown around a divergence")
    p.add_argument("--console", action="store_true", help="copy the guest's console bytes to stdout")
    p.set_defaults(func=cmd_replay)

    t = sub.add_parser("trace", help="inspect trace files (show, diff, stats)",
                       description="Inspect trace files recorded by `emu record` or `emu run --record`.")
    tsub = t.add_subparsers(dest="trace_command", metavar="COMMAND")
    s = tsub.add_parser("show", help="print events", description="Print a trace's events, one per line.")
    s.add_argument("trace", metavar="TRACE")
    s.add_argument("--kind", action="append", choices=sorted(KINDS), default=None, help="only this kind (repeatable)")
    s.add_argument("--reason", action="append", default=None, metavar="NAME",
                   help="only VM exits with this reason name (e.g. IO_INSTRUCTION) or number (repeatable)")
    s.add_argument("--guest", default=None, metavar="NAME", help="only this guest's events")
    s.add_argument("--from", dest="start", type=count_int, default=None, metavar="N", help="icount >= N")
    s.add_argument("--to", dest="stop", type=count_int, default=None, metavar="M", help="icount <= M")
    s.add_argument("--header", action="store_true", help="print the header first")
    s.add_argument("--json", action="store_true", help="print the raw JSON records")
    s.set_defaults(func=cmd_show)
    d = tsub.add_parser("diff", help="first divergence between two traces",
                        description="Compare two traces: header (inputs, configuration), the first differing event "
                                    "with context, and event counts by kind. Exit status 0 identical, 1 different.")
    d.add_argument("a", metavar="A")
    d.add_argument("b", metavar="B")
    d.add_argument("--context", type=count_int, default=4, metavar="N", help="events shown around the difference")
    d.set_defaults(func=cmd_diff)
    st = tsub.add_parser("stats", help="events by kind, size, bytes per million instructions",
                         description="Summarise a trace: inputs, events by kind, instructions, file size, "
                                     "bytes per million instructions.")
    st.add_argument("trace", metavar="TRACE")
    st.set_defaults(func=cmd_stats)
    t.set_defaults(func=lambda args: _trace_help(t))


def _trace_help(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


def cmd_record(args) -> int:
    """Record a run; 0 once the trace is complete."""
    from emu.trace.scenario import is_scenario, record_scenario
    from emu.trace.session import RunSpec, record

    if is_scenario(args.kernel):
        if args.disk or args.disk_ro or args.mem != 32 or args.max_insns or args.cmdline or args.nic is not None:
            raise EmuError("a scenario names its own disks, memory, budget, command lines and NICs: "
                           "--disk/--disk-ro/--mem/--max-insns/--cmdline/--nic do not apply")
        r = record_scenario(args.kernel, args.output, checkpoint_every=args.checkpoint_every)
        events = sum(r.counts.values())
        print(f"emu: recorded {events} events of scenario {args.kernel} to {args.output} ({r.size} bytes); "
              f"validations {r.result.get('validations')}, findings {r.result.get('findings')}", file=sys.stderr)
        return 0
    if len(args.disk) > 4:
        raise EmuError("at most 4 disks (primary/secondary, master/slave)")
    nic = None
    if args.nic is not None:
        from emu.net.config import parse_nic_options
        nic = parse_nic_options(args.nic, peer=args.net_peer)
    elif args.net_peer is not None:
        raise EmuError("--net-peer needs --nic")
    out = sys.stdout.buffer
    console = None if args.quiet else (lambda b: out.write(bytes((b,))))
    spec = RunSpec(kernel=args.kernel, disks=list(args.disk), mem_mib=args.mem, cmdline=args.cmdline,
                   max_insns=args.max_insns, disks_read_only=args.disk_ro, checkpoint_every=args.checkpoint_every,
                   nic=nic)
    try:
        r = record(spec, args.output, console=console)
    finally:
        sys.stdout.flush()
    events = sum(r.counts.values())
    per_m = r.size * 1_000_000 // max(r.icount, 1)
    print(f"emu: recorded {events} events over {r.icount} instructions to {args.output} ({r.size} bytes, "
          f"{per_m} bytes per million instructions); guest: {r.result.message}", file=sys.stderr)
    return 0


def cmd_replay(args) -> int:
    """Replay a trace; 0 ok, 1 diverged."""
    from emu.trace.replay import replay

    out = sys.stdout.buffer
    console = (lambda b: out.write(bytes((b,)))) if args.console else None
    try:
        result = replay(args.trace, base=args.base, force=args.force, context=args.context, console=console)
    finally:
        sys.stdout.flush()
    print(result.report())
    return 0 if result.ok else 1


def exit_reasons(values: list[str]) -> set[int]:
    """``--reason`` values (ExitReason names, any case, or numbers in any base) -> basic exit reason numbers.

    EmuError naming the first value that is not a basic exit reason (SDM Vol. 3D Table C-1, emu.vmx.reasons).
    """
    from emu.vmx.reasons import ExitReason

    numbers = set()
    for value in values:
        text = value.strip()
        try:
            number = int(text, 0)
        except ValueError:
            member = ExitReason.__members__.get(text.upper())
            if member is None:
                raise EmuError(f"--reason {value}: not a VM-exit reason name or number (e.g. IO_INSTRUCTION, 30, "
                               f"0x1e)") from None
            number = int(member)
        if number not in ExitReason._value2member_map_:
            raise EmuError(f"--reason {value}: {number} is not a basic VM-exit reason (SDM Vol. 3D Table C-1)")
        numbers.add(number)
    return numbers


def guest_names(header: dict) -> list[str]:
    """The guest names a trace's events can carry: the header's guests (and ``host`` for a scenario trace)."""
    from emu.trace.scenario import HOST

    names = [str(g.get("name")) for g in header.get("guests", []) if isinstance(g, dict)]
    if header.get("scenario"):
        names.append(HOST)
    return names


def cmd_show(args) -> int:
    """Print the selected events; EmuError (exit 2) for a filter that cannot match anything."""
    from emu.trace import text
    from emu.trace.format import encode
    from emu.trace.reader import TraceReader

    if args.start is not None and args.stop is not None and args.start > args.stop:
        raise EmuError(f"--from {args.start} is after --to {args.stop}: no event can be in that range")
    reasons = exit_reasons(args.reason) if args.reason else None
    reader = TraceReader(args.trace)
    if args.guest is not None:
        names = guest_names(reader.header)
        if args.guest not in names:
            raise EmuError(f"--guest {args.guest}: the trace has no such guest (guests: {', '.join(names)})")
    if args.header:
        print(json.dumps(reader.header, sort_keys=True, indent=1) if not args.json
              else encode(reader.header).decode().rstrip())
    kinds = set(args.kind) if args.kind else None
    if reasons is not None and kinds is None:
        kinds = {"vmexit"}
    out = sys.stdout
    for record in reader.events(kinds=kinds, guest=args.guest, start=args.start, stop=args.stop):
        if reasons is not None and record.get("kind") == "vmexit" and record.get("reason") not in reasons:
            continue
        out.write((encode(record).decode() if args.json else text.describe(record) + "\n"))
    return 0


def cmd_diff(args) -> int:
    """Diff two traces; 0 identical, 1 different."""
    from emu.trace.diff import diff

    result = diff(args.a, args.b, context=args.context)
    print(result.report())
    return 0 if result.identical else 1


def cmd_stats(args) -> int:
    """Print a trace's statistics."""
    from emu.trace.stats import stats

    print(stats(args.trace).report())
    return 0
