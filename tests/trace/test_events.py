"""What the tap records, checked against the inputs: DMA and disk events carry the reference disk's data."""
from __future__ import annotations

import zlib

import pytest

from emu.trace import goldens
from emu.trace.reader import TraceReader

ROOT = goldens.ROOT


def _golden(name):
    path = goldens.golden_path(name)
    if not path.exists():
        pytest.skip(f"no golden for {name}")
    return TraceReader(path)


def test_disk_reads_carry_the_disks_bytes():
    """Every disk_io read of a sector the guest has not written has the CRC-32 of the reference disk's bytes."""
    disk = (ROOT / goldens.REFERENCE_DISK).read_bytes()
    written: set[int] = set()
    checked = 0
    for name in ("ata_pio", "ata_dma"):
        for e in _golden(name).events(kinds=["disk_io"]):
            sectors = set(range(e["lba"], e["lba"] + e["count"]))
            if e["op"] == "write":
                written |= sectors
            elif not sectors & written:
                assert e["crc32"] == zlib.crc32(disk[e["lba"] * 512:(e["lba"] + e["count"]) * 512]), e
                checked += 1
        written.clear()
    assert checked >= 5


def test_dma_records_pair_up():
    """Each started DMA ends with a dma_complete of the same channel, size and direction, in causal order."""
    open_dma = {}
    starts = completes = 0
    for e in _golden("ata_dma").events(kinds=["ata_command", "dma_start", "dma_complete", "disk_io"]):
        if e["kind"] == "dma_start" and e["started"]:
            assert e["channel"] not in open_dma
            assert sum(length for _addr, length in e["sg"]) == e["bytes"]
            open_dma[e["channel"]] = e
            starts += 1
        elif e["kind"] == "dma_complete":
            s = open_dma.pop(e["channel"])
            assert (s["bytes"], s["direction"], s["unit"]) == (e["bytes"], e["direction"], e["unit"])
            assert e["icount"] >= s["icount"] and not e["ata_status"] & 0x80   # BSY clear
            completes += 1
    assert starts == completes >= 3


def test_nested_events_follow_their_cause_at_the_same_icount():
    """An ATA command written by an OUT is recorded right after that exit, with the exit's icount."""
    events = list(_golden("ata_pio"))
    for i, e in enumerate(events):
        if e["kind"] == "ata_command":
            cause = events[i - 1]
            assert cause["kind"] == "io" and cause["port"] == 0x1F7 and cause["icount"] == e["icount"]
            assert cause["value"] == e["command"]


def test_machine_reported_events_go_through_the_tap(tmp_path):
    """A machine with ``observers`` reports exits itself: the tap subscribes and records them (duplicate keys dropped)."""
    from emu.machine import Machine, MachineConfig
    from emu.trace.events import MachineTap
    from emu.trace.session import Recorder
    from emu.trace.writer import TraceWriter

    m = Machine(MachineConfig(kernel=str(ROOT / "firmware/build/hello.elf")), console=lambda b: None)
    if not hasattr(m, "observers"):
        m.observers = []
    header = {"format": 1, "emu_version": "x", "inputs": [], "guests": [], "config": {}}
    with TraceWriter(tmp_path / "t.trace", header) as w:
        tap = MachineTap(m, Recorder(w))
        assert tap in m.observers
        m.observers[0].on_event("vmexit", 7, m.name, {"icount": 7, "guest": m.name, "reason": 12,
                                                       "reason_name": "HLT"})
        r = m.run()
        tap.finish(r)
    events = list(TraceReader(tmp_path / "t.trace"))
    assert events[0] == {"kind": "vmexit", "icount": 7, "guest": "guest", "reason": 12, "reason_name": "HLT"}
    assert [e["kind"] for e in events[-2:]] == ["checkpoint", "end"]


def test_fast_io_encoding_is_the_canonical_encoding():
    from hypothesis import given, settings, strategies as st

    from emu.trace.format import encode, encode_io, make_event

    ints = st.integers(min_value=0, max_value=2**32)

    @settings(deadline=None)         # pure encoding: no time limit per example on a loaded CI machine
    @given(icount=ints, guest=st.text(max_size=8), op=st.sampled_from(["in", "out"]), port=ints, size=ints,
           rip=st.none() | ints, length=st.none() | ints, qual=ints, value=ints)
    def check(icount, guest, op, port, size, rip, length, qual, value):
        fields = {"op": op, "port": port, "size": size, "rip": rip, "insn_len": length, "qualification": qual,
                  "value": value}
        assert encode_io(icount, guest, fields) == encode(make_event("io", icount, guest, fields))
    check()


def test_coalesced_polls_expand_to_every_port_access(tmp_path):
    """Identical port accesses at a regular stride are one record with repeat/stride; expanded, the io records are
    exactly the accesses an independent hook on the vCPU sees (ata_dma polls BMIS while its DMA runs)."""
    from emu.trace.session import build_machine, disk_copies, record

    spec = goldens.golden_spec("ata_dma")
    if not (ROOT / spec.kernel).exists():
        pytest.skip("no ata_dma kernel")
    record(spec, tmp_path / "t.trace", base=ROOT)
    expanded = []
    coalesced = 0
    for e in TraceReader(tmp_path / "t.trace").events(kinds=["io"]):
        n, stride = e.get("repeat", 1), e.get("stride", 0)
        coalesced += n > 1
        expanded += [(e["icount"] + i * stride, e["op"], e["port"], e["value"]) for i in range(n)]
    seen = []
    with disk_copies(spec, ROOT) as copies:
        m = build_machine(spec, copies, ROOT, lambda b: None)
        cpu = m.cpu
        orig_in, orig_out = cpu.on_in, cpu.on_out

        def on_in(port, size):
            value = orig_in(port, size)
            seen.append((cpu.io_site.icount if cpu.io_site else None, "in", port, value))
            return value

        def on_out(port, size, value):
            seen.append((cpu.io_site.icount if cpu.io_site else None, "out", port, value))
            orig_out(port, size, value)
        cpu.on_in, cpu.on_out = on_in, on_out
        m.run(max_insns=spec.max_insns)
        m.close()
    assert coalesced >= 1 and len(expanded) == len(seen) > 20000
    assert [x[1:] for x in expanded] == [x[1:] for x in seen]
    assert all(a[0] == b[0] for a, b in zip(expanded, seen) if b[0] is not None)


def test_the_tap_finds_every_event_source():
    """A renamed hook point would silently drop a kind of event: the tap must find all of them on today's Machine."""
    from emu.machine import Machine, MachineConfig
    from emu.trace.events import MachineTap

    class Null:
        def on_event(self, *a):
            pass

        def checkpoint(self, *a):
            pass

    m = Machine(MachineConfig(kernel=str(ROOT / "firmware/build/hello.elf")), console=lambda b: None)
    try:
        sources = MachineTap(m, Null()).sources
    finally:
        m.close()
    assert sources == ["vmexit", "io", "console", "interrupt", "ata:ide0", "ata:ide1", "dma:0", "dma:1"]
