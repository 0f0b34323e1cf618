"""`emu run`: boot one multiboot kernel (DESIGN.md contract)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from emu import EmuError
from emu.cli import positive_int


def add_parsers(sub) -> None:
    """Register `emu run`."""
    p = sub.add_parser(
        "run",
        help="boot a multiboot kernel",
        description="Boot a multiboot (v1) ELF kernel on an emulated PC, like qemu-system-i386 -kernel. "
                    "Guest bytes written to port 0xE9 go to stdout unchanged; a write of v to port 0xF4 ends the "
                    "run with exit status (v<<1)|1; a guest shutdown (triple fault, HLT with IF=0) ends it with "
                    "status 0 and the reason on stderr; the instruction limit ends it with status 124; an "
                    "unusable input ends it with status 2 and one line on stderr.",
    )
    p.add_argument("kernel", metavar="KERNEL", help="multiboot ELF32 kernel")
    p.add_argument("--disk", action="append", default=[], metavar="[N=]IMG",
                   help="raw disk image in IDE slot N (0 primary master, 1 primary slave, 2 secondary master, "
                        "3 secondary slave, as QEMU's -drive index=N); without N=, the next free slot")
    p.add_argument("--disk-ro", action="store_true", help="open the disk images read-only (guest writes fail with ABRT)")
    p.add_argument("--mem", type=positive_int, default=32, metavar="MIB", help="guest RAM in MiB (default 32)")
    p.add_argument("--max-insns", type=positive_int, default=None, metavar="N",
                   help="stop after N guest instructions (exit status 124)")
    p.add_argument("--cmdline", default="", help="multiboot command line given to the kernel")
    p.add_argument("--exits", metavar="FILE.jsonl", default=None,
                   help="write one JSON object per VM exit; turns on unconditional I/O, HLT, INVLPG, CR3-load/store "
                        "and RDTSC exiting and sets every exception-bitmap bit (CPUID, RDMSR/WRMSR, VMCALL and "
                        "triple faults always exit); the guest behaves the same")
    p.add_argument("--record", metavar="TRACE", default=None,
                   help="record a trace of the run (docs/traces.md); disks are written in place, so keep a copy of "
                        "the original images to replay")
    p.add_argument("--gdb", metavar="[HOST:]PORT", default=None,
                   help="serve the GDB remote protocol (loopback unless HOST is given); the guest waits for gdb")
    p.add_argument("--nic", nargs="?", const="", default=None, action=_NicAction, metavar="OPTIONS",
                   help="plug an NE2000 (QEMU ne2k_isa: iobase 0x300, irq 9, mac 52:54:00:12:34:56) into a private "
                        "virtual switch; OPTIONS change them: mac=52:54:00:12:34:57,iobase=0x320,irq=10 "
                        "(docs/network.md)")
    p.add_argument("--net-peer", metavar="PEER", default=None,
                   help="put a peer on the NIC's switch: 'echo' answers PING frames like the net tests' peer "
                        "(needs --nic)")
    p.add_argument("--pcap", metavar="FILE", default=None,
                   help="write every frame on the NIC's switch to FILE (classic pcap, virtual timestamps; needs --nic)")
    p.set_defaults(func=cmd_run)


class _NicAction(argparse.Action):
    """``--nic`` with optional ``key=value`` options; refuses a bare word (a kernel path taken for the options)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values and "=" not in values:
            raise argparse.ArgumentError(self, f"{values!r} is not key=value options; write the kernel before "
                                               f"--nic, or --nic=mac=...")
        setattr(namespace, self.dest, values)


def nic_config(args):
    """The NicConfig of ``--nic``/``--net-peer``/``--pcap`` (None without ``--nic``); EmuError on a bad value."""
    if args.nic is None:
        for flag, value in (("--net-peer", args.net_peer), ("--pcap", args.pcap)):
            if value is not None:
                raise EmuError(f"{flag} needs --nic")
        return None
    from emu.net.config import parse_nic_options
    return parse_nic_options(args.nic, peer=args.net_peer, pcap=args.pcap)


def disk_slots(specs: list[str]) -> list[Optional[str]]:
    """``--disk [N=]IMG`` values as the four IDE slots (None = empty), QEMU's -drive index=N numbering."""
    slots: list[Optional[str]] = [None] * 4
    for spec in specs:
        if len(spec) > 2 and spec[1] == "=" and spec[0] in "0123":
            index, path = int(spec[0]), spec[2:]
            if slots[index] is not None:
                raise EmuError(f"--disk {spec}: IDE slot {index} already holds {slots[index]}")
        else:
            free = [i for i, slot in enumerate(slots) if slot is None]
            if not free:
                raise EmuError("at most 4 disks (primary/secondary, master/slave)")
            index, path = free[0], spec
        slots[index] = path
    while slots and slots[-1] is None:
        slots.pop()
    return slots


def cmd_run(args) -> int:
    """Run the kernel; return the process exit status."""
    from emu.machine import Machine, MachineConfig

    disks = disk_slots(args.disk)
    nic = nic_config(args)
    machine = Machine(MachineConfig(kernel=args.kernel, cmdline=args.cmdline, mem_mib=args.mem, disks=disks,
                                    disks_read_only=args.disk_ro, nic=nic))
    if args.exits:
        log_exits(machine, args.exits)
    recording = None
    if args.record:
        from emu.trace.session import Recording
        recording = Recording(machine, args.record, max_insns=args.max_insns)
    try:
        if args.gdb:
            from emu.debug.machine_target import run_with_gdb
            result = run_with_gdb(machine, args.gdb, max_insns=args.max_insns)
        else:
            result = machine.run(max_insns=args.max_insns)
        if recording is not None:
            recording.finish(result)
    finally:
        if recording is not None:
            recording.abort()   # no-op once finished
        sys.stdout.flush()
        machine.close()
    if result.reason.value != "debug-exit":
        print(f"emu: {result.message}", file=sys.stderr)
    return result.status


LOGGING_CONTROLS = ("UNCONDITIONAL_IO", "HLT", "INVLPG", "CR3_LOAD", "CR3_STORE", "RDTSC")


def log_exits(machine, path: str) -> None:
    """Turn on the logging controls and write every exit of ``machine`` to ``path`` as JSON lines."""
    from emu.vmx.controls import PrimaryControls

    try:
        out = open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise EmuError(f"cannot write exits log {path}: {exc.strerror}") from None
    for name in LOGGING_CONTROLS:
        machine.vmx.controls.primary |= PrimaryControls[name]
    machine.vmx.controls.exception_bitmap = 0xFFFFFFFF
    machine.vmx.observers.append(lambda record: out.write(record.to_json() + "\n"))
    machine._closers.append(out.close)
