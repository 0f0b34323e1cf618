"""The observer interface, checkpoint digests, and the adapter that taps a running :class:`emu.machine.Machine`.

Observer contract (what a machine, the host or the trap handler calls)::

    observer.on_event(kind: str, icount: int, guest: str, fields: dict) -> None
    observer.checkpoint(icount: int, guest: str, digest_fields: dict) -> None

``icount`` is the exact number of guest instructions retired when the event
happened (inside an I/O exit: before the I/O instruction).  ``fields`` hold
only JSON integers, strings, booleans, null, lists and objects (no floats).

:class:`MachineTap` produces those calls for a Machine without touching its
hot paths: it wraps a handful of bound methods on the *instances* (never the
classes), listed in docs/traces.md:

============== ======================================================================
kind           source
============== ======================================================================
vmexit         ``machine.vmx.observers`` (the monitor's VM exits, as its controls select
               them; the record is ``VmExit.to_dict()``)
io             ``machine.cpu.on_in`` / ``on_out``: every port access (port, size, value, the
               instruction, and the I/O exit qualification it has, SDM Table 28-5)
console        ``machine._console_sink`` (each byte written to port 0xE9)
interrupt      ``machine.deliver`` (every interrupt / exception delivered)
ata_command    ``AtaChannel._command`` of each channel (command register writes)
disk_io        each drive's ``backing`` (a proxy: every sector read / write of a disk)
dma_start      ``BmDmaChannel._begin`` of each bus master engine
dma_complete   ``BmDmaChannel._step`` (the step that finishes a transfer)
frame          ``machine.network.switch._forward`` (a machine with its own NIC: every frame on its
               switch, what the switch did with it, and the CRC-32 of its bytes)
checkpoint     the tap itself: at the first event at or after every ``checkpoint_every``
               instructions, and at the end of the run
end            :meth:`MachineTap.finish` (the run's result)
============== ======================================================================

A machine that reports events itself through ``machine.observers`` (objects with
``on_event``/``checkpoint``) gets the tap added there, and then the tap wraps
only the devices.

Events caused by another event (the ``disk_io`` of an ``ata_command`` issued by
an ``out`` exit) are recorded after their cause, in causal order.
"""
from __future__ import annotations

import ctypes
import hashlib
import zlib
from typing import Any, Callable, Optional, Protocol

from emu import EmuError
from emu.trace.format import RESERVED, Kind
from emu.vmx import decode
from emu.vmx.qualification import IO_DIRECTION_IN, IO_IMMEDIATE, IO_REP, IO_STRING

_FORM_BITS = IO_STRING | IO_REP | IO_IMMEDIATE   # qualification bits fixed by the instruction (SDM Vol. 3C Table 28-5)
REGISTERS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
             "cs", "ss", "ds", "es", "fs", "gs", "cr0", "cr2", "cr3", "cr4")
"""The registers a checkpoint dumps."""
DEFAULT_CHECKPOINT_EVERY = 10_000_000


class Observer(Protocol):
    """Receives a guest's events (see the module docstring)."""

    def on_event(self, kind: str, icount: int, guest: str, fields: dict) -> None:
        """One event at exact instruction count ``icount``."""

    def checkpoint(self, icount: int, guest: str, digest_fields: dict) -> None:
        """A state digest (registers, RAM and disk hashes) at ``icount``."""


def io_form_bits(code: bytes, bits: int) -> int:
    """The string, REP and immediate bits of the I/O instruction at the start of ``code`` (0 when it cannot be
    decoded): the part of its exit qualification that does not change between executions (emu.vmx.decode)."""
    try:
        return decode.io_exit_fields(code, bits, 0)[1] & _FORM_BITS
    except EmuError:
        return 0


def guest_icount(machine) -> int:
    """Exact guest instructions retired now (before the I/O instruction inside an I/O hook)."""
    cpu = machine.cpu
    return cpu.vtime - cpu.idle


def registers(machine) -> dict[str, int]:
    """The checkpoint register dump; inside an I/O hook EIP is that of the I/O instruction."""
    cpu = machine.cpu
    regs = {name: cpu.reg(name) for name in REGISTERS}
    site = cpu.io_site
    if site is not None:
        cs_base = cpu.context().u64(cpu.offsets.cs_base)
        regs["eip"] = (site.pc - cs_base) & 0xFFFFFFFF
    return regs


def disk_drives(machine) -> list[tuple[str, Any]]:
    """(name, drive) of every IDE drive with a disk: ``ide0.0`` primary master … ``ide1.1``."""
    platform = getattr(machine, "platform", None)
    out = []
    for ch in getattr(platform, "ide", ()):
        for drive in ch.drives:
            if drive.backing is not None:
                out.append((f"{ch.name}.{drive.unit}", drive))
    return out


def _disk_sha256(backing) -> str:
    h = hashlib.sha256()
    step = 2048
    for lba in range(0, backing.sectors, step):
        h.update(backing.read(lba, min(step, backing.sectors - lba)))
    return h.hexdigest()


RAM_CHUNK = 1 << 16
_ZERO_CHUNK = bytes(RAM_CHUNK)
_memcmp = ctypes.CDLL(None).memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int


def ram_sha256(ram: memoryview) -> str:
    """SHA-256 of guest RAM, sparse: over (8-byte chunk number, 64 KiB chunk) of every chunk that is not all zero.

    Equal for equal RAM contents and sizes; skipping zero chunks makes the end-of-run checkpoint of a
    32 MiB guest that touched little memory cost about 3 ms instead of 60 ms.
    """
    h = hashlib.sha256(len(ram).to_bytes(8, "little"))
    size = len(ram)
    try:
        holder = (ctypes.c_char * size).from_buffer(ram)
    except TypeError:                       # a read-only buffer: compare copies instead
        holder = None
    base = ctypes.addressof(holder) if holder is not None else 0
    zero = _ZERO_CHUNK
    for i in range(0, size, RAM_CHUNK):
        n = min(RAM_CHUNK, size - i)
        if holder is not None:
            nonzero = _memcmp(base + i, zero, n) != 0
        else:
            nonzero = ram[i:i + n].tobytes() != zero[:n]
        if nonzero:
            h.update((i // RAM_CHUNK).to_bytes(8, "little"))
            h.update(ram[i:i + n])
    del holder
    return h.hexdigest()


def digest_fields(machine) -> dict:
    """Checkpoint fields: register dump, virtual time, SHA-256 of RAM and of each disk, and one overall digest."""
    cpu = machine.cpu
    regs = registers(machine)
    ram = ram_sha256(cpu.ram_view)
    disks = {}
    for name, drive in disk_drives(machine):
        backing = drive.backing
        disks[name] = backing.sha256() if isinstance(backing, TracedBacking) else _disk_sha256(backing)
    overall = hashlib.sha256()
    for name in REGISTERS:
        overall.update(regs[name].to_bytes(8, "little"))
    overall.update(bytes.fromhex(ram))
    for name in sorted(disks):
        overall.update(name.encode() + bytes.fromhex(disks[name]))
    return {"digest": overall.hexdigest(), "regs": regs, "ram_sha256": ram, "disks": disks,
            "vtime": cpu.vtime, "idle": cpu.idle}


_STRING_IO = {"insb": True, "insw": True, "insd": True, "outsb": False, "outsw": False, "outsd": False}


def string_site(cpu, is_in: bool):
    """The REP/string I/O instruction of the current block, for the hooks the vCPU cannot locate.

    Older ``Vcpu._locate_io`` versions matched capstone mnemonics exactly and capstone names REP forms
    ``rep outsb`` …, so those hooks came without a site.  The block holding the string instruction
    (the first iteration runs inside the block, later ones in a block of their own) is decoded here.
    """
    from emu.cpu import decode
    from emu.cpu.vcpu import IoSite

    try:                      # vCPU internals: a fallback only, never a reason for the run to fail
        st = cpu.st
        if not st.block_size:
            return None
        code = cpu._block_code()
        if not code:
            return None
        for index, (start, length, mnemonic, _ops) in enumerate(decode._CS[cpu.code_bits()].disasm_lite(code, 0)):
            if _STRING_IO.get(mnemonic.split()[-1]) is is_in:
                return IoSite((st.block_addr + start) & 0xFFFFFFFF, length, st.block_entry + index)
    except Exception:
        return None
    return None


class TracedBacking:
    """A drive's disk seen through the tap: every sector read and write becomes a ``disk_io`` event."""

    def __init__(self, base, name: str, tap: "MachineTap"):
        self.base = base
        self.name = name
        self._tap = tap
        self._sha256: Optional[str] = None
        if hasattr(base, "write"):
            self.write = self._write

    def sha256(self) -> str:
        """SHA-256 of the whole disk, computed again only after a write through this proxy."""
        if self._sha256 is None:
            self._sha256 = _disk_sha256(self.base)
        return self._sha256

    def __getattr__(self, item: str):
        return getattr(self.base, item)

    def read(self, lba: int, count: int) -> bytes:
        """Read from the disk and record lba, count and the CRC-32 of the data."""
        data = self.base.read(lba, count)
        self._tap.emit(Kind.DISK_IO.value, {"drive": self.name, "op": "read", "lba": lba, "count": count,
                                            "crc32": zlib.crc32(data)})
        return data

    def _write(self, lba: int, data) -> None:
        self._sha256 = None
        self.base.write(lba, data)
        self._tap.emit(Kind.DISK_IO.value, {"drive": self.name, "op": "write", "lba": lba,
                                            "count": len(data) // 512, "crc32": zlib.crc32(data)})


class _Foreign:
    """An event the tap records on behalf of another guest or the host."""

    __slots__ = ("guest", "fields")

    def __init__(self, guest: str, fields: dict):
        self.guest = guest
        self.fields = fields


class MachineTap:
    """Turns what a Machine does into observer calls; :meth:`finish` records the final checkpoint and ``end``."""

    def __init__(self, machine, observer: Observer, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY):
        if checkpoint_every <= 0:
            raise ValueError("checkpoint_every must be positive")
        self.machine = machine
        self.observer = observer
        self.guest = machine.name
        self.checkpoint_every = checkpoint_every
        self.next_checkpoint = checkpoint_every
        self.machine_reports = isinstance(getattr(machine, "observers", None), list)
        self._stack: list[list[tuple[str, int, dict]]] = []
        self._icounts: list[int] = []
        self._pending_io: Optional[list] = None
        self._fast_io = getattr(observer, "record_io", None)   # the Recorder's shortcut (same bytes)
        self._finished = False
        self._install()

    # --- emission ---------------------------------------------------------------------
    def emit(self, kind: str, fields: dict, icount: Optional[int] = None) -> None:
        """Record an event now (or after the event being handled, when nested)."""
        if icount is None:
            icount = self.now()
        if self._stack:
            self._stack[-1].append((kind, icount, fields))
        else:
            self._deliver(kind, icount, fields)

    def now(self) -> int:
        """The icount of the event being handled (an I/O exit's), else the exact count now."""
        return self._icounts[-1] if self._icounts else guest_icount(self.machine)

    def on_event(self, kind: str, icount: int, guest: str, fields: dict) -> None:
        """Observer entry for a machine that reports events itself (``machine.observers``).

        Copies of ``kind``/``icount``/``guest`` inside ``fields`` (a VmExit's JSON form has them) are dropped.
        """
        fields = {k: v for k, v in fields.items() if k not in RESERVED}
        self.emit(kind, fields, icount)

    def checkpoint(self, icount: int, guest: str, fields: dict) -> None:
        """Observer entry: a checkpoint the machine took itself."""
        self._flush_io()
        self.observer.checkpoint(icount, guest, fields)

    def _io(self, icount: int, op: str, port: int, size: int, rip, length, qual: int, value: int) -> None:
        """A port access: identical accesses at a regular stride (a polling loop) become one record."""
        p = self._pending_io
        if p is not None:
            if (p[1] == op and p[2] == port and p[7] == value and p[4] == rip and p[3] == size and p[6] == qual
                    and p[5] == length):
                n = p[8]
                if n == 1:
                    if icount > p[0]:
                        p[9] = icount - p[0]
                        p[8] = 2
                        return
                elif icount == p[0] + n * p[9]:
                    p[8] = n + 1
                    return
            self._flush_io()
        self._pending_io = [icount, op, port, size, rip, length, qual, value, 1, 0]

    def _flush_io(self) -> None:
        p = self._pending_io
        if p is None:
            return
        self._pending_io = None
        icount, op, port, size, rip, length, qual, value, n, stride = p
        if n == 1 and self._fast_io is not None:
            self._fast_io(icount, self.guest, op, port, size, rip, length, qual, value)
            return
        fields = {"op": op, "port": port, "size": size, "rip": rip, "insn_len": length, "qualification": qual,
                  "value": value}
        if n > 1:
            fields["repeat"] = n
            fields["stride"] = stride
        self.observer.on_event(Kind.IO.value, icount, self.guest, fields)

    def emit_for(self, guest: str, kind: str, icount: int, fields: dict) -> None:
        """Record an event of another guest or of the host (the trap handler) in this guest's causal order."""
        self.emit(kind, _Foreign(guest, fields), icount)

    def _deliver(self, kind: str, icount: int, fields) -> None:
        if self._pending_io is not None:
            self._flush_io()
        if type(fields) is _Foreign:
            self.observer.on_event(kind, icount, fields.guest, fields.fields)
            return
        if icount >= self.next_checkpoint:
            self.observer.checkpoint(icount, self.guest, digest_fields(self.machine))
            self.next_checkpoint = (icount // self.checkpoint_every + 1) * self.checkpoint_every
        self.observer.on_event(kind, icount, self.guest, fields)

    def _nested(self, call: Callable[[], Any], describe: Callable[[Any], Optional[tuple[str, dict]]],
                icount: Optional[int] = None) -> Any:
        """Run ``call``; record describe(result) first, then the events it caused (at the same icount)."""
        if icount is None:
            icount = self.now()
        self._stack.append([])
        self._icounts.append(icount)
        try:
            result = call()
        finally:
            inner = self._stack.pop()
            self._icounts.pop()
        event = describe(result)
        if event is not None:
            self.emit(event[0], event[1], icount)
        for kind, ic, fields in inner:
            self.emit(kind, fields, ic)
        return result

    # --- the run's end --------------------------------------------------------------------
    def finish(self, result, kind: str = Kind.END.value) -> None:
        """Final checkpoint and the ``end`` record (``guest_end`` in a multi-guest trace) for a RunResult."""
        if self._finished:
            return
        self._finished = True
        self._flush_io()
        icount = guest_icount(self.machine)
        self.observer.checkpoint(icount, self.guest, digest_fields(self.machine))
        self.observer.on_event(kind, icount, self.guest,
                               {"reason": result.reason.value, "status": result.status, "message": result.message})

    # --- wrapping ---------------------------------------------------------------------------
    def _install(self) -> None:
        """Wrap every source that exists (a source whose hook point is gone is skipped, never an error)."""
        m = self.machine
        self.sources: list[str] = []
        if self.machine_reports:
            m.observers.append(self)
            self.sources.append("machine.observers")
        else:
            cpu = getattr(m, "cpu", None)
            for name, ready, wrap in (
                    ("vmexit", True, self._subscribe_vmx),
                    ("io", hasattr(cpu, "on_in") and hasattr(cpu, "on_out"), self._wrap_io),
                    ("console", hasattr(m, "_console_sink"), self._wrap_console),
                    ("interrupt", hasattr(m, "deliver"), self._wrap_deliver)):
                if ready:
                    wrap()
                    self.sources.append(name)
        platform = getattr(m, "platform", None)
        for ch in getattr(platform, "ide", ()):
            if hasattr(ch, "_command") and hasattr(ch, "drives"):
                self._wrap_channel(ch)
                self.sources.append(f"ata:{ch.name}")
        bmdma = getattr(platform, "bmdma", None)
        for engine in getattr(bmdma, "engines", ()):
            if all(hasattr(engine, a) for a in ("_begin", "_step", "st", "channel", "index")):
                self._wrap_engine(engine)
                self.sources.append(f"dma:{engine.index}")
        switch = getattr(getattr(m, "network", None), "switch", None)
        if switch is not None and tap_switch(switch, lambda: self):
            self.sources.append(f"frame:{switch.name}")

    def _subscribe_vmx(self) -> None:
        observers = getattr(getattr(self.machine, "vmx", None), "observers", None)
        if not isinstance(observers, list):
            return

        def on_exit(record) -> None:
            fields = record.to_dict()
            for key in RESERVED:
                fields.pop(key, None)
            self.emit(Kind.VMEXIT.value, fields, record.icount)
        observers.append(on_exit)

    def _wrap_io(self) -> None:
        cpu = self.machine.cpu
        orig_in, orig_out = cpu.on_in, cpu.on_out
        sites: dict[tuple[int, int], tuple[int, int]] = {}

        stack, icounts, emit = self._stack, self._icounts, self.emit
        size_bits = {1: 0, 2: 1, 4: 3}

        def site_of(is_in: bool) -> tuple[Optional[int], Optional[int], int, int]:
            """(rip, insn_len, qualification flags, icount) of the I/O instruction being run."""
            site = cpu.io_site or string_site(cpu, is_in)
            if site is None:
                return None, None, 0, guest_icount(self.machine)
            known = sites.get((site.pc, site.length))
            if known is None:          # decoded once per instruction (CS.base read then too)
                try:
                    code = cpu.read_virt(site.pc, site.length)
                except Exception:
                    code = b""
                cs_base = cpu.context().u64(cpu.offsets.cs_base)
                known = ((site.pc - cs_base) & 0xFFFFFFFF, io_form_bits(code, cpu.code_bits()))
                if len(sites) > 65536:
                    sites.clear()
                sites[(site.pc, site.length)] = known
            return known[0], site.length, known[1], site.icount

        io = self._io

        def on_in(port: int, size: int) -> int:
            rip, length, flags, icount = site_of(True)
            stack.append([])
            icounts.append(icount)
            try:
                value = orig_in(port, size)
            finally:
                inner = stack.pop()
                icounts.pop()
            qual = flags | IO_DIRECTION_IN | size_bits.get(size, 0) | (port & 0xFFFF) << 16
            if not stack and icount < self.next_checkpoint and type(value) is int:
                io(icount, "in", port, size, rip, length, qual, value)
            else:
                emit(Kind.IO.value, {"op": "in", "port": port, "size": size, "rip": rip, "insn_len": length,
                                     "qualification": qual, "value": value}, icount)
            for kind, ic, fields in inner:
                emit(kind, fields, ic)
            return value

        def on_out(port: int, size: int, value: int) -> None:
            rip, length, flags, icount = site_of(False)
            stack.append([])
            icounts.append(icount)
            try:
                orig_out(port, size, value)
            finally:
                inner = stack.pop()
                icounts.pop()
            qual = flags | size_bits.get(size, 0) | (port & 0xFFFF) << 16
            if not stack and icount < self.next_checkpoint and type(value) is int:
                io(icount, "out", port, size, rip, length, qual, value)
            else:
                emit(Kind.IO.value, {"op": "out", "port": port, "size": size, "rip": rip, "insn_len": length,
                                     "qualification": qual, "value": value}, icount)
            for kind, ic, fields in inner:
                emit(kind, fields, ic)

        cpu.on_in = on_in
        cpu.on_out = on_out

    def _wrap_console(self) -> None:
        m = self.machine
        sink = m._console_sink

        def console(byte: int) -> None:
            self.emit(Kind.CONSOLE.value, {"byte": byte})
            sink(byte)
        m._console_sink = console

    def _wrap_deliver(self) -> None:
        m = self.machine
        deliver = m.deliver

        def traced_deliver(event) -> None:
            icount = self.now()
            fields = {"vector": event.vector, "type": event.kind.name.lower(), "error_code": event.error_code,
                      "return_eip": event.return_eip, "vtime": m.cpu.vtime}

            def describe(_r):
                shutdown = m.cpu.shutdown
                if shutdown is not None:
                    fields["shutdown"] = shutdown.reason
                else:
                    fields["handler_eip"] = m.cpu.reg("eip")
                return Kind.INTERRUPT.value, fields
            self._nested(lambda: deliver(event), describe, icount)
        m.deliver = traced_deliver

    def _wrap_channel(self, ch) -> None:
        from emu.devices.ata import Cmd, DRQ, Xfer

        command = ch._command
        for drive in ch.drives:
            if drive.backing is not None and not isinstance(drive.backing, TracedBacking):
                drive.backing = TracedBacking(drive.backing, f"{ch.name}.{drive.unit}", self)

        def traced_command(val: int) -> None:
            d = ch.selected
            s = d.st
            fields = {"channel": ch.name, "unit": d.unit, "command": val,
                      "name": Cmd(val).name if val in Cmd._value2member_map_ else None,
                      "taskfile": [s.feature, s.nsector, s.sector, s.lcyl, s.hcyl, s.select]}

            def describe(_r):
                fields["status"] = s.status
                fields["error"] = s.error
                if s.status & DRQ and s.end_transfer is not Xfer.SECTOR_WRITE and s.data_end:
                    fields["data_crc32"] = zlib.crc32(bytes(s.io_buffer[:s.data_end]))
                return Kind.ATA_COMMAND.value, fields
            self._nested(lambda: command(val), describe)
        ch._command = traced_command

    def _wrap_engine(self, engine) -> None:
        from emu.devices.ata import DmaCmd

        begin, step = engine._begin, engine._step
        s = engine.st

        def traced_begin() -> None:
            if s.unit < 0:
                return begin()
            drive = engine.channel.drives[s.unit]
            cmd = drive.st.dma_cmd
            if cmd is DmaCmd.NONE:
                return begin()
            fields = {"channel": engine.index, "unit": s.unit, "direction": cmd.name.lower(),
                      "bytes": drive.dma_bytes, "prd_table": s.addr}

            def describe(_r):
                fields["started"] = s.in_flight
                fields["sg"] = [list(e) for e in s.sg] if s.in_flight else []
                fields["bmis"] = s.status
                fields["ata_status"] = drive.st.status
                return Kind.DMA_START.value, fields
            return self._nested(begin, describe)

        def traced_step() -> None:
            if not s.in_flight or s.sg_index + 1 < len(s.sg):
                return step()
            unit = s.unit
            drive = engine.channel.drives[unit]
            is_write = engine._staging is not None
            data = engine._staging if is_write else engine._data
            total = s.offset + s.sg[s.sg_index][1]

            def describe(_r):
                fields = {"channel": engine.index, "unit": unit, "direction": "write" if is_write else "read",
                          "vtime": self.machine.cpu.vtime, "bytes": total, "crc32": zlib.crc32(data[:total]), "bmis": s.status,
                          "ata_status": drive.st.status, "ata_error": drive.st.error}
                return Kind.DMA_COMPLETE.value, fields
            return self._nested(step, describe)

        engine._begin = traced_begin
        engine._step = traced_step


def tap_switch(switch, tap_now: Callable[[], MachineTap]) -> bool:
    """Record every frame ``switch`` forwards as a ``frame`` event through the tap ``tap_now()`` returns (the guest
    whose port access sent it); False when the switch has no hook point (``VirtualSwitch._forward``)."""
    forward = getattr(switch, "_forward", None)
    if forward is None or not hasattr(switch, "ports"):
        return False

    def traced_forward(number: int, frame: bytes, vlan: int, when: int):
        names = [p.name for p in switch.ports]

        def describe(result):
            fields = {"port": names[number], "vlan": vlan, "time_ns": when, "length": len(frame),
                      "crc32": zlib.crc32(frame), "dst": bytes(frame[0:6]).hex(), "src": bytes(frame[6:12]).hex(),
                      "delivered": [names[i] for i in result.delivered],
                      "refused": [names[i] for i in result.refused],
                      "drop": result.drop.value if result.drop is not None else None}
            return Kind.FRAME.value, fields
        return tap_now()._nested(lambda: forward(number, frame, vlan, when), describe)
    switch._forward = traced_forward
    return True
