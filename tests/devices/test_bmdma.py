"""Bus master IDE registers and the paced DMA engine (golden: QEMU 7.2 transcripts in qemu_probe/)."""
from __future__ import annotations

import re

import pytest

from emu import EmuError
from emu.clock import Clock
from emu.devices.ata import AtaChannel
from emu.devices.bmdma import BusMasterIde
from tests.devices.ide_harness import FakeDisk, FakeRam, IdeMachine, pattern_disk, probe_dump, probe_text, probe_value

BUF = 0x20000
PRD = 0x10000
KEYS = ("st", "err", "cnt", "sec", "cl", "ch", "dh", "bmis", "bmic")


def after_stop(n: int, tag: str) -> tuple[int, int, bytes]:
    m = re.search(rf"^{re.escape(tag)} after stop bmis=([0-9a-f]+) st=([0-9a-f]+) buf0=([0-9a-f]+)$",
                  probe_text(n), re.M)
    assert m, tag
    return int(m.group(1), 16), int(m.group(2), 16), bytes.fromhex(m.group(3))


def dma_test(m: IdeMachine, cmd: int, lba: int, cnt: int, nprd: int, len_each: int, start_first: bool,
             poll: int = 20_000) -> tuple[dict, tuple[int, int, bytes]]:
    """The probe's ``dma_test``, step for step."""
    bm = m.bmbase
    for i in range(nprd):
        m.ram.b[PRD + 8 * i:PRD + 8 * i + 4] = (BUF + i * len_each).to_bytes(4, "little")
        flags = (len_each & 0xFFFF) | (0x80000000 if i == nprd - 1 else 0)
        m.ram.b[PRD + 8 * i + 4:PRD + 8 * i + 8] = flags.to_bytes(4, "little")
    m.outb(bm, 0)
    m.outb(bm + 2, 0x06)
    m.outl(bm + 4, PRD)
    m.sel_lba(lba, cnt)
    m.inb(0x1F7)
    direction = 8 if cmd in (0xC8, 0x25) else 0
    if start_first:
        m.outb(bm, direction | 1)
        m.outb(0x1F7, cmd)
    else:
        m.outb(0x1F7, cmd)
        m.outb(bm, direction | 1)
    for _ in range(poll):
        if m.inb(bm + 2) & 4:
            break
    dump = m.dump()
    m.outb(bm, direction)
    stop = (m.inb(bm + 2), m.inb(0x1F7), bytes([m.ram.b[BUF], m.ram.b[BUF + 1], m.ram.b[BUF + 512]]))
    return dump, stop


def fill(m: IdeMachine, value: int, n: int) -> None:
    m.ram.b[BUF:BUF + n] = bytes([value]) * n


@pytest.fixture
def m() -> IdeMachine:
    mach = IdeMachine()
    mach.outb(0x1F6, 0xA0)
    return mach


# --- registers -------------------------------------------------------------------------
def test_register_access_widths_and_masks(m):
    bm = m.bmbase
    assert bm == probe_value(1, "bm") == 0xC000
    assert m.inb(bm) == probe_value(1, "bmic b") == 0
    assert m.inw(bm) == probe_value(1, "bmic w") == 0xFFFF
    assert m.inl(bm) == probe_value(1, "bmic l") == 0xFFFFFFFF
    assert m.inb(bm + 1) == probe_value(1, "bm+1") == 0xFF
    assert m.inb(bm + 3) == probe_value(1, "bm+3") == 0xFF
    assert m.inw(bm + 2) == probe_value(1, "bmis w") == 0xFFFF
    assert m.inl(bm + 4) == probe_value(1, "bmidtp") == 0
    assert m.inb(bm + 10) == probe_value(1, "bm sec bmis") == 0
    m.outl(bm + 4, 0x12345677)
    assert m.inl(bm + 4) == probe_value(1, "bmidtp w/ 77") == 0x12345674
    assert m.inb(bm + 5) == probe_value(1, "bmidtp byte5") == 0x56
    m.outw(bm + 6, 0xABCD)
    assert m.inl(bm + 4) == probe_value(1, "bmidtp w6") == 0xABCD5674


def test_status_write_rule_and_start_stop(m):
    bm = m.bmbase
    m.outb(bm + 2, 0xFF)
    assert m.inb(bm + 2) == probe_value(1, "bmis after ff") == 0x60
    m.outb(bm + 2, 0x00)
    assert m.inb(bm + 2) == probe_value(1, "bmis after 00") == 0x00
    m.outb(bm + 2, 0x60)
    m.outw(bm + 2, 0x00)  # word writes are ignored
    assert m.inb(bm + 2) == 0x60
    m.outb(bm + 2, 0x00)
    m.outb(bm, 0xFF)
    assert m.inb(bm) == probe_value(1, "bmic after ff") == 0x09
    assert m.inb(bm + 2) == probe_value(1, "bmis after start") == 0x01
    m.outb(bm, 0)
    assert m.inb(bm + 2) == probe_value(1, "bmis after stop") == 0x00
    # Interrupt and Error are write-1-to-clear, Active is read-only
    m.bm.state.channels[0].status = 0x07
    m.outb(bm + 2, 0x04)
    assert m.inb(bm + 2) == 0x03
    m.outb(bm + 2, 0x03)
    assert m.inb(bm + 2) == 0x01


# --- the Intel truth table as QEMU 7.2 gives it ----------------------------------------------
def test_bus_master_disabled_moves_nothing_and_keeps_active(m):
    # probe2 (it waits for BSY; probe1's line was taken while an earlier FLUSH was still busy)
    fill(m, 0x5A, 512)
    dump, stop = dma_test(m, 0xC8, 9, 1, 1, 512, True)
    assert dump == {k: v for k, v in probe_dump(2, "rdma bm off").items() if k in KEYS}
    assert stop == after_stop(2, "rdma bm off")
    assert bytes(m.ram.b[BUF:BUF + 512]) == b"\x5a" * 512


def test_read_dma_truth_table_sequence(m):
    """probe1's DMA section replayed: exact, larger, smaller, command first, range error, two PRDs, nIEN."""
    m.enable_bus_master()
    fill(m, 0xAA, 1024)
    for tag, args, prefill in (("dma exact", (0xC8, 1, 1, 1, 512, True), None),
                               ("dma larger", (0xC8, 1, 1, 1, 1024, True), None),
                               ("dma smaller", (0xC8, 1, 2, 1, 512, True), 0xAA),
                               ("dma cmd first", (0xC8, 1, 1, 1, 512, False), None),
                               ("dma lba=cap", (0xC8, 2048, 1, 1, 512, True), None),
                               ("dma lba=cap smaller", (0xC8, 2048, 2, 1, 512, True), None),
                               ("dma 2prd exact", (0xC8, 1, 2, 2, 512, True), None)):
        if prefill is not None:
            fill(m, prefill, 1024)
        dump, stop = dma_test(m, *args)
        assert dump == {k: v for k, v in probe_dump(1, tag).items() if k in KEYS}, tag
        assert stop == after_stop(1, tag), tag
    m.outb(0x3F6, 2)
    dump, stop = dma_test(m, 0xC8, 1, 1, 1, 512, True)
    m.outb(0x3F6, 0)
    assert dump == {k: v for k, v in probe_dump(1, "dma nien").items() if k in KEYS}
    assert stop == after_stop(1, "dma nien")


def test_bmis_values_exact_larger_smaller(m):
    m.enable_bus_master()
    dump, _ = dma_test(m, 0xC8, 1, 1, 1, 512, True)
    assert dump["bmis"] == 0x04
    dump, stop = dma_test(m, 0xC8, 1, 1, 1, 1024, True)
    assert dump["bmis"] == 0x05 and stop[0] == 0x04      # Active until Start is cleared
    dump, _ = dma_test(m, 0xC8, 1, 2, 1, 512, True, poll=5000)
    assert dump["bmis"] == 0x00 and dump["st"] == 0x50 and m.irq14 == 0  # QEMU: no IRQ


def test_command_issued_before_start(m):
    m.enable_bus_master()
    bm = m.bmbase
    m.ram.b[PRD:PRD + 8] = BUF.to_bytes(4, "little") + (0x80000200).to_bytes(4, "little")
    m.outl(bm + 4, PRD)
    m.sel_lba(1, 1)
    m.outb(0x1F7, 0xC8)
    m.tick(100_000)
    pre = (m.inb(bm + 2), m.inb(0x3F6))
    m_line = re.search(r"^dma cmd first pre: bmis=([0-9a-f]+) st=([0-9a-f]+)$", probe_text(1), re.M)
    assert pre == (int(m_line.group(1), 16), int(m_line.group(2), 16)) == (0x00, 0x58)
    m.outb(bm, 9)
    m.tick(1000)
    assert m.inb(bm + 2) == 0x04 and bytes(m.ram.b[BUF:BUF + 512]) == bytes(m.disk.data[512:1024])


def test_write_dma_reaches_disk(m):
    m.enable_bus_master()
    payload = bytes((i * 7) & 0xFF for i in range(4 * 512))
    m.ram.b[BUF:BUF + len(payload)] = payload
    dump, stop = dma_test(m, 0xCA, 100, 4, 2, 1024, True)
    assert (dump["st"], dump["bmis"], stop[0]) == (0x50, 0x04, 0x04)
    assert bytes(m.disk.data[100 * 512:104 * 512]) == payload


def test_write_dma_with_bus_master_off_writes_zeros(m):
    fill(m, 0x5A, 512)
    dump, stop = dma_test(m, 0xCA, 9, 1, 1, 512, True)
    assert dump == {k: v for k, v in probe_dump(2, "wdma bm off").items() if k in KEYS}
    assert stop[:2] == after_stop(2, "wdma bm off")[:2]
    assert m.read_sector_pio(9)[:2] == probe_value(2, "sec9 w0").to_bytes(2, "little")
    assert bytes(m.disk.data[9 * 512:10 * 512]) == bytes(512)


def test_lba48_dma_ext(m):
    m.enable_bus_master()
    bm = m.bmbase
    m.ram.b[PRD:PRD + 8] = BUF.to_bytes(4, "little") + (0x80000000 | 1024).to_bytes(4, "little")
    m.outl(bm + 4, PRD)
    m.outb(0x1F6, 0x40)
    for reg, (hi, lo) in ((2, (0, 2)), (3, (0, 7)), (4, (0, 0)), (5, (0, 0))):
        m.outb(0x1F0 + reg, hi)
        m.outb(0x1F0 + reg, lo)
    m.outb(0x1F7, 0x25)
    m.outb(bm, 9)
    m.tick(10_000)
    assert (m.inb(bm + 2), m.inb(0x1F7), m.inb(0x1F3)) == (0x04, 0x50, 9)
    assert bytes(m.ram.b[BUF:BUF + 1024]) == bytes(m.disk.data[7 * 512:9 * 512])


# --- pacing ---------------------------------------------------------------------------------
def start_read(m: IdeMachine, lba: int, sectors: int, entries: list[tuple[int, int]]) -> None:
    m.enable_bus_master()
    bm = m.bmbase
    for i, (addr, length) in enumerate(entries):
        flags = (length & 0xFFFF) | (0x80000000 if i == len(entries) - 1 else 0)
        m.ram.b[PRD + 8 * i:PRD + 8 * i + 8] = addr.to_bytes(4, "little") + flags.to_bytes(4, "little")
    m.outb(bm, 0)
    m.outb(bm + 2, 0x06)
    m.outl(bm + 4, PRD)
    m.outb(0x1F6, 0xE0)
    m.outb(0x1F2, sectors & 0xFF)
    m.outb(0x1F3, lba & 0xFF)
    m.outb(0x1F4, 0)
    m.outb(0x1F5, 0)
    m.outb(0x1F7, 0xC8)
    m.outb(bm, 9)


def test_active_visible_for_the_paced_window():
    m = IdeMachine(ram=1 << 21)
    start_read(m, 0, 128, [(0x100000, 0)])   # 64 KiB, byte count 0 = 64 KiB
    t0 = m.t
    bm = m.bmbase
    assert m.bm.state.channels[0].due == t0 + 65536 // 4 == t0 + 16384
    samples = []
    while m.inb(bm + 2) & 0x01 and m.t < t0 + 100_000:
        samples.append(m.t)
    assert m.inb(0x3F6) == 0x50 and m.inb(bm + 2) == 0x04
    assert samples[-1] < t0 + 16384 <= m.t - 10 * 2
    assert m.inb(0x3F6) == 0x50
    assert bytes(m.ram.b[0x100000:0x110000]) == bytes(m.disk.data[:65536])
    # while in flight the drive shows DRQ, so a trap handler sees it busy
    m2 = IdeMachine(ram=1 << 21)
    start_read(m2, 0, 128, [(0x100000, 0)])
    assert m2.ch0.busy and m2.bm.active and m2.bm.dma_in_flight
    assert bytes(m2.ram.b[0x100000:0x100010]) == bytes(16)  # nothing copied yet


def test_one_timer_per_prd_entry_and_deterministic_completion():
    def run() -> tuple[list[int], str]:
        m = IdeMachine(ram=1 << 21)
        start_read(m, 0, 64, [(0x100000 + 0x2000 * i, 0x1000) for i in range(8)])  # 8 x 4 KiB
        fired = []
        while m.bm.dma_in_flight:
            assert len(m.clock.pending()) == 1
            m.tick(1)
            fired.append(m.bm.state.channels[0].offset)
        return sorted(set(fired)), m.bm.digest() + m.ch0.digest()
    a, b = run(), run()
    assert a == b
    assert a[0][:3] == [0, 4096, 8192] and a[0][-1] == 32768


def test_rate_parameter():
    m = IdeMachine(bytes_per_insn=64)
    start_read(m, 0, 1, [(BUF, 512)])
    assert m.bm.state.channels[0].due - m.t == 8
    with pytest.raises(EmuError):
        BusMasterIde((AtaChannel(True), AtaChannel(False)), FakeRam(16), Clock(), bytes_per_insn=0)


def test_stop_mid_transfer_completes_it_like_qemu():
    m = IdeMachine(ram=1 << 21)
    fill(m, 0xAA, 65536)
    start_read(m, 0, 128, [(BUF, 0)])
    bm = m.bmbase
    m.outb(bm, 8)   # stop at once
    assert regs_of(m.dump()) == regs_of(probe_dump(2, "stop immediately"))
    assert m.ram.b[BUF + 65535] == probe_value(2, "buf last") == 0x7E
    assert not m.bm.dma_in_flight and m.clock.pending() == []


def regs_of(d: dict) -> dict:
    return {k: d[k] for k in ("st", "err", "cnt", "sec", "bmis", "bmic")}


def test_srst_during_dma_drains_then_resets():
    m = IdeMachine(ram=1 << 21)
    start_read(m, 0, 8, [(BUF, 4096)])
    m.outb(0x3F6, 0x04)
    m.outb(0x3F6, 0x00)
    assert bytes(m.ram.b[BUF:BUF + 4096]) == bytes(m.disk.data[:4096])
    assert (m.inb(0x1F7), m.inb(0x1F1), m.inb(0x1F2)) == (0x50, 0x01, 0x01)
    assert not m.bm.dma_in_flight


# --- hostile programming ------------------------------------------------------------------------
def test_dma_outside_ram_sets_error_and_never_writes():
    m = IdeMachine(ram=1 << 20)
    before = bytes(m.ram.b)
    start_read(m, 1, 1, [(0xE0000000, 512)])
    bm = m.bmbase
    m.tick(1000)
    # QEMU (probe1 "dma outside ram"): the read "succeeds"; here Error is added to its BMIS 0x04
    q = probe_dump(1, "dma outside ram")
    assert (m.inb(bm + 2), m.inb(0x3F6), m.inb(0x1F1)) == (q["bmis"] | 0x02, q["st"], q["err"]) == (0x06, 0x50, 0)
    assert m.irq14 == 1
    after = bytearray(m.ram.b)
    after[PRD:PRD + 8] = before[PRD:PRD + 8]
    assert bytes(after) == before
    assert any("outside guest RAM" in w for w in m.bm.warnings)


def test_buffer_straddling_end_of_ram_moves_the_part_in_ram_with_error():
    """QEMU 7.2 writes the part of a buffer that is in RAM (ide_slots kernel: "the part in RAM holds lba 40-43: yes")."""
    m = IdeMachine(ram=1 << 20)
    start_read(m, 1, 3, [(BUF, 512), ((1 << 20) - 512, 1024)])
    m.tick(1000)
    assert m.inb(m.bmbase + 2) == 0x06 and m.inb(0x3F6) == 0x50
    assert bytes(m.ram.b[BUF:BUF + 512]) == bytes(m.disk.data[512:1024])   # the good entry still arrived
    assert bytes(m.ram.b[-512:]) == bytes(m.disk.data[1024:1536])           # and the straddling one's RAM part
    assert any("outside guest RAM" in w for w in m.bm.warnings)


def test_write_dma_straddling_end_of_ram_reads_the_part_in_ram():
    """The RAM part of a WRITE DMA buffer reaches the disk, the rest is zeros (QEMU 7.2, ide_slots kernel)."""
    m = IdeMachine(ram=1 << 20)
    m.enable_bus_master()
    m.ram.b[-512:] = bytes(range(256)) * 2
    m.ram.b[PRD:PRD + 8] = ((1 << 20) - 512).to_bytes(4, "little") + (0x80000400).to_bytes(4, "little")
    m.outl(m.bmbase + 4, PRD)
    m.sel_lba(3, 2)
    m.outb(0x1F7, 0xCA)
    m.outb(m.bmbase, 1)
    m.tick(1000)
    assert m.inb(m.bmbase + 2) == 0x06 and m.inb(0x1F7) == 0x50
    assert bytes(m.disk.data[3 * 512:5 * 512]) == bytes(range(256)) * 2 + bytes(512)


def test_write_dma_from_outside_ram_stores_zeros(m):
    m.enable_bus_master()
    m.ram.b[PRD:PRD + 8] = (0xF0000000).to_bytes(4, "little") + (0x80000200).to_bytes(4, "little")
    bm = m.bmbase
    m.outl(bm + 4, PRD)
    m.sel_lba(3, 1)
    m.outb(0x1F7, 0xCA)
    m.outb(bm, 1)
    m.tick(1000)
    assert m.inb(bm + 2) == 0x06 and m.inb(0x1F7) == 0x50
    assert bytes(m.disk.data[3 * 512:4 * 512]) == bytes(512)


def test_prd_table_outside_ram_is_a_bus_error():
    m = IdeMachine(ram=1 << 20)
    m.enable_bus_master()
    bm = m.bmbase
    before = bytes(m.ram.b)
    m.outl(bm + 4, 0xE0000000)
    m.sel_lba(1, 1)
    m.outb(0x1F7, 0xC8)
    m.outb(bm, 9)
    # Intel truth table "Interrupt 0, Active 0, Error 1": bus error, no IRQ; ATA as a short table
    assert (m.inb(bm + 2), m.inb(0x1F7), m.irq14) == (0x02, 0x50, 0)
    assert bytes(m.ram.b) == before


def test_prd_table_fail_safe_stops_after_4_kib():
    # the table fills the last 4 KiB of RAM and never sets EOT: reading entry 513 would leave RAM
    size = 1 << 20
    m = IdeMachine(ram=size)
    m.enable_bus_master()
    table = size - 4096
    for i in range(512):
        m.ram.b[table + 8 * i:table + 8 * i + 8] = (BUF + 2 * i).to_bytes(4, "little") + (2).to_bytes(4, "little")
    bm = m.bmbase
    m.outl(bm + 4, table)
    m.sel_lba(1, 2)        # 1024 bytes needed, the table describes exactly 512 x 2 bytes
    m.outb(0x1F7, 0xC8)
    m.outb(bm, 9)
    m.tick(10_000)
    assert m.bm.state.channels[0].cur_addr == size
    assert m.inb(bm + 2) == 0x04 and m.inb(0x1F7) == 0x50
    assert bytes(m.ram.b[BUF:BUF + 1024]) == bytes(m.disk.data[512:1536])


def test_prd_loop_without_eot_gives_larger_not_a_hang(m):
    m.enable_bus_master()
    bm = m.bmbase
    for i in range(600):  # more entries than the fail-safe allows, none with EOT
        m.ram.b[PRD + 8 * i:PRD + 8 * i + 8] = BUF.to_bytes(4, "little") + (512).to_bytes(4, "little")
    m.outl(bm + 4, PRD)
    m.sel_lba(1, 1)
    m.outb(0x1F7, 0xC8)
    m.outb(bm, 9)
    m.tick(10_000)
    assert m.inb(bm + 2) == 0x05 and m.bm.state.channels[0].cur_addr == PRD + 4096


def test_odd_byte_count_bit_is_ignored_and_64k_crossing_warned(m):
    m.enable_bus_master()
    bm = m.bmbase
    m.ram.b[PRD:PRD + 16] = ((0x2FF00).to_bytes(4, "little") + (0x201).to_bytes(4, "little")
                             + (0x40000).to_bytes(4, "little") + (0x80000200).to_bytes(4, "little"))
    m.outl(bm + 4, PRD)
    m.sel_lba(1, 2)
    m.outb(0x1F7, 0xC8)
    m.outb(bm, 9)
    m.tick(10_000)
    assert m.inb(bm + 2) == 0x04
    assert bytes(m.ram.b[0x2FF00:0x30100]) == bytes(m.disk.data[512:1024])
    assert bytes(m.ram.b[0x40000:0x40200]) == bytes(m.disk.data[1024:1536])
    assert any("crosses a 64 KiB boundary" in w for w in m.bm.warnings)


def test_read_only_drive_refuses_write_dma():
    disk = FakeDisk(pattern_disk(64))
    m = IdeMachine(master=disk)
    m.ch0.drives[0].st.read_only = True
    m.outb(0x1F6, 0xA0)
    m.enable_bus_master()
    dump, stop = dma_test(m, 0xCA, 1, 1, 1, 512, True)
    assert (dump["st"], dump["err"], dump["bmis"]) == (0x41, 0x04, 0x04)
    assert disk.data == pattern_disk(64)


def test_detach_refused_while_dma_pending_or_in_flight():
    m = IdeMachine(ram=1 << 21)
    start_read(m, 0, 128, [(BUF, 0)])
    with pytest.raises(EmuError):
        m.ch0.drives[0].detach()
    m.tick(20_000)
    assert not m.bm.active or m.inb(m.bmbase + 2) == 0x04
    assert m.ch0.drives[0].detach() is m.disk


def test_secondary_channel_block_is_independent(m):
    bm = m.bmbase
    m.outl(bm + 12, 0x5000)
    m.outb(bm + 10, 0x60)
    assert (m.inl(bm + 4), m.inl(bm + 12), m.inb(bm + 2), m.inb(bm + 10)) == (0, 0x5000, 0, 0x60)


def test_quiescent_for_the_trap_handler():
    m = IdeMachine(ram=1 << 21)
    assert m.ide.quiescent
    start_read(m, 0, 16, [(BUF, 8192)])
    assert not m.ide.quiescent and not m.bm.quiescent          # data moving
    m.tick(5000)
    assert m.ide.quiescent and m.inb(m.bmbase + 2) == 0x04
    # a larger PRD table leaves Active with Interrupt: finished, safe
    start_read(m, 0, 1, [(BUF, 4096)])
    m.tick(5000)
    assert m.inb(m.bmbase + 2) == 0x05 and m.ide.quiescent
    # a DMA command issued but never started: the drive holds DRQ, not safe
    m.outb(m.bmbase, 0)
    m.sel_lba(0, 1)
    m.outb(0x1F7, 0xC8)
    assert m.bm.quiescent and not m.ide.quiescent


def test_pc_ide_wiring_helpers():
    m = IdeMachine()
    assert m.ide.drive(0) is m.ch0.drives[0] and m.ide.drive(3) is m.ch1.drives[1]
    assert {d.name for d in m.ide.devices} == {"pci", "i440fx", "piix3-isa", "piix3-ide", "piix4-acpi",
                                               "ide0", "ide1", "bmdma"}
    m.outb(m.bmbase + 2, 0x60)
    m.ide.reset()
    assert m.inb(m.bmbase + 2) == 0 and m.ch0.state.unit == 0


def test_count_zero_means_256_sectors_lba28():
    m = IdeMachine(ram=1 << 21)
    start_read(m, 0, 0, [(0x100000, 0), (0x110000, 0)])   # count 0 = 256 sectors = 2 x 64 KiB
    m.tick(100_000)
    assert (m.inb(m.bmbase + 2), m.inb(0x1F7), m.inb(0x1F3), m.inb(0x1F4)) == (0x04, 0x50, 0x00, 0x01)
    assert bytes(m.ram.b[0x100000:0x120000]) == bytes(m.disk.data[:256 * 512])


def test_largest_transfer_65536_sectors_with_512_prds():
    sectors = 65536 + 8
    m = IdeMachine(master=FakeDisk(pattern_disk(sectors)), ram=(32 << 20) + (2 << 20))
    m.enable_bus_master()
    bm = m.bmbase
    base = 2 << 20
    for i in range(512):
        flags = 0x80000000 if i == 511 else 0   # byte count 0 = 64 KiB
        m.ram.b[PRD + 8 * i:PRD + 8 * i + 8] = (base + i * 65536).to_bytes(4, "little") + flags.to_bytes(4, "little")
    m.outl(bm + 4, PRD)
    m.outb(0x1F6, 0x40)
    for reg in (2, 3, 4, 5):          # count 0/0 = 65536 sectors, LBA 8
        m.outb(0x1F0 + reg, 0)
        m.outb(0x1F0 + reg, 8 if reg == 3 else 0)
    m.outb(0x1F7, 0x25)
    m.outb(bm, 9)
    m.tick(10_000_000)
    assert (m.inb(bm + 2), m.inb(0x1F7)) == (0x04, 0x50)
    assert m.ram.b[base:base + (32 << 20)] == m.disk.data[8 * 512:(8 + 65536) * 512]
    assert m.bm.state.channels[0].cur_addr == PRD + 4096
