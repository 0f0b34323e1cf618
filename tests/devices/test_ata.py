"""ATA channel and drive behaviour against QEMU 7.2 (golden: qemu_probe/probe{1,2}.out)."""
from __future__ import annotations

import re
from typing import Optional

import pytest

from emu import EmuError
from emu.devices.ata import AtaChannel
from emu.devices.ata_identify import Geometry, guess_geometry
from tests.devices.ide_harness import (
    DISK_SECTORS,
    FakeDisk,
    IdeMachine,
    mbr_pattern_disk,
    pattern_disk,
    probe_dump,
    probe_text,
    probe_value,
)


def identify(m: IdeMachine) -> list[int]:
    """IDENTIFY DEVICE to the master: its 256 words."""
    command(m, 0xEC)
    m.wait_not_busy()
    return [m.inw(0x1F0) for _ in range(256)]


def regs(d: dict[str, int], *keys: str) -> dict[str, int]:
    return {k: d[k] for k in keys}


ATA_KEYS = ("st", "err", "cnt", "sec", "cl", "ch", "dh")


def assert_probe(m: IdeMachine, n: int, tag: str) -> None:
    """The task file registers read back as probe ``n`` dumped them at ``tag`` under QEMU."""
    assert regs(m.dump(), *ATA_KEYS) == regs(probe_dump(n, tag), *ATA_KEYS)


def command(m: IdeMachine, cmd: int, lba: Optional[int] = None, count: int = 1) -> IdeMachine:
    """Select the master, load LBA and sector count (when ``lba`` is given), write the command register."""
    m.outb(0x1F6, 0xA0)
    if lba is not None:
        m.sel_lba(lba, count)
    m.outb(0x1F7, cmd)
    return m


def set_multiple(m: IdeMachine, count: int) -> None:
    """SET MULTIPLE MODE with ``count`` sectors per block, to the drive selected now."""
    m.outb(0x1F2, count)
    m.outb(0x1F7, 0xC6)


def read_data(m: IdeMachine, reads: int = 256, size: int = 2) -> bytes:
    """``reads`` data port reads of ``size`` bytes (one sector by default), as the bytes they moved."""
    read = m.inl if size == 4 else m.inw
    return b"".join(read(0x1F0).to_bytes(size, "little") for _ in range(reads))


def write_data(m: IdeMachine, words) -> None:
    """One 16-bit data port write per word."""
    for word in words:
        m.outw(0x1F0, word)


def status_error(m: IdeMachine) -> tuple[int, int]:
    """(status, error), the status read first (it lowers the IRQ)."""
    return m.inb(0x1F7), m.inb(0x1F1)


def test_identify_matches_qemu_word_for_word():
    m = IdeMachine()
    words = identify(m)
    golden = [int(x, 16) for x in re.search(r"^ident: (.*)$", probe_text(1), re.M).group(1).split()]
    assert words == golden
    text = b"".join(w.to_bytes(2, "big") for w in words)
    assert text[20:40].rstrip() == b"QM00001"
    assert text[54:94].rstrip() == b"QEMU HARDDISK"
    assert text[46:54].rstrip() == b"2.5+"


def test_identify_status_and_irq():
    m = IdeMachine()
    m.outb(0x1F6, 0xA0)
    m.inb(0x1F7)
    m.outb(0x1F7, 0xEC)
    assert m.irq14 == 1 and m.irq[14] == [1]
    assert m.inb(0x3F6) == 0x58 and m.irq14 == 1          # alternate status leaves the IRQ
    assert m.inb(0x1F7) == probe_value(1, "status (clears irq)") == 0x58
    assert m.irq14 == 0 and m.irq[14] == [1, 0]
    read_data(m)
    assert_probe(m, 1, "after ident")
    assert m.dump()["bmis"] == 0x04  # QEMU sets BMIS Interrupt on every IRQ, PIO included


def test_identify_of_a_large_disk_reports_lba48_capacity():
    class Big:
        sector_size = 512
        sectors = (1 << 28) + 5

        def read(self, lba, count):
            return bytes(512 * count)

    ch = AtaChannel(True, master=Big())
    ch.io_write(0x1F6, 1, 0xA0)
    ch.io_write(0x1F7, 1, 0xEC)
    w = [ch.io_read(0x1F0, 2) for _ in range(256)]
    assert (w[61] << 16 | w[60]) == (1 << 28) - 1
    assert (w[103] << 48 | w[102] << 32 | w[101] << 16 | w[100]) == (1 << 28) + 5
    assert (w[1], w[3], w[6]) == (16383, 16, 63)


def test_geometry_from_partition_table():
    mbr = bytearray(512)
    mbr[510:512] = b"\x55\xaa"
    entry = bytearray(16)
    entry[5] = 15         # end head -> 16 heads
    entry[6] = 32         # end sector -> 32 sectors
    entry[12:16] = (1000).to_bytes(4, "little")
    mbr[0x1BE:0x1CE] = entry
    assert guess_geometry(4096, bytes(mbr)) == Geometry(8, 16, 32)
    entry[5] = 254        # 255 heads: LBA translation, standard geometry
    mbr[0x1BE:0x1CE] = entry
    assert guess_geometry(4096, bytes(mbr)) == Geometry(4, 16, 63)
    assert guess_geometry(2048, bytes(512)) == Geometry(2, 16, 63)


def test_post_bios_state_absent_slave_selected():
    m = IdeMachine()
    assert_probe(m, 1, "initial pri")
    m.outb(0x1F7, 0xEC)  # command to the absent slave: ignored
    assert m.inb(0x1F7) == 0 and m.irq[14] == []
    assert m.inw(0x1F0) == probe_value(1, "slave data") == 0
    m.outb(0x1F6, 0xA0)
    assert_probe(m, 1, "master sel")
    m.outb(0x1F6, 0x0F)
    assert m.inb(0x1F6) == probe_value(2, "dh 0f") == 0xAF


def test_channel_without_drives_reads_zero():
    m = IdeMachine()
    m.outb(0x176, 0xA0)
    assert m.inb(0x177) == probe_value(1, "sec status (no disk)") == 0
    assert m.inb(0x376) == probe_value(1, "sec alt") == 0
    assert m.inb(0x171) == 0 and m.inb(0x172) == 0
    m.outb(0x177, 0xEC)
    assert m.inb(0x177) == probe_value(2, "sec st") == 0


def test_data_port_outside_drq_reads_zero():
    m = IdeMachine()
    m.outb(0x1F6, 0xA0)
    for read, key in ((m.inw, "data no drq w"), (m.inb, "data no drq b"), (m.inl, "data no drq l")):
        assert read(0x1F0) == probe_value(1, key) == 0, key


def test_pio_read_one_sector_with_byte_and_dword_access():
    m = command(IdeMachine(), 0x20, lba=1, count=1)
    m.wait_not_busy()
    assert_probe(m, 2, "pio1")
    assert m.inb(0x1F0) == probe_value(2, "byte data") == 0x01   # a byte access moves a whole word
    assert m.inw(0x1F0) == probe_value(2, "next word") == 0x0403
    assert m.inl(0x1F0) == probe_value(2, "dword") == 0x08070605
    tail = [m.inw(0x1F0) for _ in range(252)]
    golden_tail = [int(v, 16) for v in re.findall(r"^tailw=([0-9a-f]+)$", probe_text(2), re.M)]
    assert tail[-3:] == golden_tail
    assert_probe(m, 2, "pio1 end")


def test_pio_read_sectors_data_and_status_sequence():
    m = command(IdeMachine(), 0x20, lba=1, count=3)
    m.wait_not_busy()
    assert_probe(m, 2, "r3 blk1")
    data = b""
    for blk in ("r3 blk2", None):
        data += read_data(m)
        m.wait_not_busy()
        if blk:
            assert_probe(m, 2, blk)
    data += read_data(m, 128, size=4)
    assert_probe(m, 2, "r3 end")
    assert data == bytes(m.disk.data[512:4 * 512])


def test_pio_irq_per_block_and_status_read_lowers_it():
    m = command(IdeMachine(), 0x20, lba=0, count=2)
    assert m.irq[14] == [1]
    m.inb(0x1F7)
    assert m.irq[14] == [1, 0]
    read_data(m)
    assert m.irq[14] == [1, 0, 1]  # second block
    m.inb(0x1F7)
    read_data(m)
    assert m.irq[14] == [1, 0, 1, 0]  # no IRQ after the last block of a read


def test_pio_write_sectors_reach_the_disk():
    m = command(IdeMachine(), 0x30, lba=20, count=2)
    m.wait_not_busy()
    assert_probe(m, 2, "w2 start")
    assert m.irq[14] == []  # no IRQ before the first block
    write_data(m, range(0x2200, 0x2200 + 256))
    m.wait_not_busy()
    assert_probe(m, 2, "w2 blk1 done")
    for i in range(128):
        m.outl(0x1F0, (0x3300 + 2 * i) | (0x3300 + 2 * i + 1) << 16)
    m.wait_not_busy()
    assert_probe(m, 2, "w2 end")
    assert m.read_sector_pio(21)[:2] == probe_value(2, "sec21 w0").to_bytes(2, "little")
    assert bytes(m.disk.data[20 * 512:20 * 512 + 4]) == bytes([0x00, 0x22, 0x01, 0x22])
    assert bytes(m.disk.data[21 * 512 + 510:22 * 512]) == (0x33FF).to_bytes(2, "little")


def test_lba48_read_ext_and_hob_registers():
    m = IdeMachine()
    m.outb(0x1F6, 0xA0)
    m.outb(0x1F6, 0x40)
    for reg, (hi, lo) in ((2, (0, 1)), (3, (0, 3)), (4, (0, 0)), (5, (0, 0))):
        m.outb(0x1F0 + reg, hi)
        m.outb(0x1F0 + reg, lo)
    m.outb(0x1F7, 0x24)
    m.wait_not_busy()
    # probe1 sampled this line inside QEMU's BSY window; like probe2's "pio1", the address and count
    # already point past the block once DRQ is up
    assert regs(m.dump(), "st", "cnt", "sec", "dh") == {"st": 0x58, "cnt": 0, "sec": 4, "dh": 0xE0}
    assert m.inw(0x1F0) == probe_value(1, "w0") == 0x0403
    read_data(m, 255)
    assert_probe(m, 1, "read ext after")
    m.outb(0x3F6, 0x80)
    assert_probe(m, 1, "hob view")


def test_hob_bytes_keep_the_previous_write():
    m = IdeMachine()
    m.outb(0x1F6, 0xA0)
    m.outb(0x1F2, 0x12)
    m.outb(0x1F2, 0x34)
    m.outb(0x1F3, 0x56)
    m.outb(0x1F3, 0x78)
    assert m.inb(0x1F2) == probe_value(1, "cnt")
    m.outb(0x3F6, 0x80)
    assert m.inb(0x1F2) == probe_value(1, "hob cnt") == 0x12
    assert m.inb(0x1F3) == probe_value(1, "hob sec") == 0x56
    assert m.inb(0x1F1) == probe_value(1, "hob err")
    m.outb(0x1F2, 0)  # any register write clears HOB
    assert m.inb(0x1F3) == 0x78


@pytest.mark.parametrize("cmd", [0x34, 0x39, 0x24, 0x29],
                         ids=["WRITE_SECTORS_EXT", "WRITE_MULTIPLE_EXT", "READ_SECTORS_EXT", "READ_MULTIPLE_EXT"])
def test_lba48_beyond_28_bits_addresses_the_right_sector(cmd):
    class Sparse:
        sector_size = 512
        sectors = (1 << 33)

        def __init__(self):
            self.writes = {}

        def read(self, lba, count):
            return b"".join(self.writes.get(lba + i, (lba + i).to_bytes(8, "little") * 64) for i in range(count))

        def write(self, lba, data):
            for i in range(len(data) // 512):
                self.writes[lba + i] = bytes(data[i * 512:(i + 1) * 512])

    disk = Sparse()
    m = IdeMachine(master=disk)
    lba = 0x1_2345_6789
    m.outb(0x1F6, 0xE0)
    for reg, shift in ((3, 0), (4, 8), (5, 16)):
        m.outb(0x1F0 + reg, (lba >> (shift + 24)) & 0xFF)
        m.outb(0x1F0 + reg, (lba >> shift) & 0xFF)
    m.outb(0x1F2, 0)
    m.outb(0x1F2, 1)
    m.outb(0x1F7, cmd)
    if cmd in (0x34, 0x39):   # WRITE SECTORS / MULTIPLE EXT
        write_data(m, range(256))
        assert m.inb(0x1F7) == 0x50
        assert disk.writes[lba][:4] == bytes([0, 0, 1, 0])
    else:
        assert read_data(m) == lba.to_bytes(8, "little") * 64
        assert m.inb(0x1F7) == 0x50
    m.outb(0x3F6, 0x80)
    assert (m.inb(0x1F5), m.inb(0x1F4), m.inb(0x1F3)) == (0x00, 0x01, 0x23)  # HOB: LBA 47:24 of 0x1_2345_678A
    m.outb(0x3F6, 0x00)
    assert (m.inb(0x1F5), m.inb(0x1F4), m.inb(0x1F3)) == (0x45, 0x67, 0x8A)


def test_multiple_mode():
    m = IdeMachine()
    m.outb(0x1F6, 0xA0)
    set_multiple(m, 2)
    assert m.inb(0x1F7) == probe_dump(2, "setmult2")["st"] == 0x50
    m.sel_lba(1, 3)
    m.outb(0x1F7, 0xC4)
    m.wait_not_busy()
    assert_probe(m, 2, "rm blk1")
    data = read_data(m, 512)
    assert_probe(m, 2, "rm blk2")
    data += read_data(m)
    assert_probe(m, 2, "rm end")
    assert data == bytes(m.disk.data[512:4 * 512])
    set_multiple(m, 3)
    assert regs(m.dump(), *ATA_KEYS)["st"] == probe_dump(2, "setmult3")["st"] == 0x41
    # WRITE MULTIPLE, 3 sectors in blocks of 2 + 1
    set_multiple(m, 2)
    m.sel_lba(30, 3)
    m.outb(0x1F7, 0xC5)
    assert_probe(m, 2, "wm start")
    write_data(m, range(0x4400, 0x4400 + 512))
    assert_probe(m, 2, "wm blk1")
    write_data(m, range(0x5500, 0x5500 + 256))
    assert_probe(m, 2, "wm end")
    assert bytes(m.disk.data[31 * 512 + 510:32 * 512]) == (0x45FF).to_bytes(2, "little")
    assert bytes(m.disk.data[32 * 512:32 * 512 + 2]) == (0x5500).to_bytes(2, "little")


def test_set_multiple_limits_and_identify_word_59_is_kept():
    m = IdeMachine()
    identify(m)
    set_multiple(m, 32)
    assert (m.inb(0x3F6), m.inb(0x1F1)) == (probe_dump(1, "setmult 32")["st"], probe_dump(1, "setmult 32")["err"])
    set_multiple(m, 0)
    assert m.inb(0x1F7) == probe_dump(1, "setmult 0")["st"] == 0x50
    m.sel_lba(1, 2)
    m.outb(0x1F7, 0xC4)  # READ MULTIPLE with multiple mode off
    assert_probe(m, 1, "readmult w/ 0")
    set_multiple(m, 4)
    assert identify(m)[59] == probe_value(1, "w59") == 0x0110


def test_set_features_transfer_mode_and_errors():
    m = IdeMachine()
    identify(m)
    m.outb(0x1F1, 0x03)
    m.outb(0x1F2, 0x42)   # UDMA mode 2
    m.outb(0x1F7, 0xEF)
    assert m.inb(0x1F7) == probe_dump(1, "setfeat udma2")["st"] == 0x50
    w = identify(m)
    golden = [int(v, 16) for v in re.findall(r"^w=([0-9a-f]+)$", probe_text(1), re.M)]
    assert [w[62], w[63], w[88]] == golden == [0x07, 0x07, 0x043F]
    m.outb(0x1F1, 0x77)
    m.outb(0x1F7, 0xEF)
    assert (m.inb(0x3F6), m.inb(0x1F1)) == (0x41, 0x04) == (probe_dump(1, "setfeat bad")["st"],
                                                           probe_dump(1, "setfeat bad")["err"])
    m.outb(0x1F1, 0x00)
    m.outb(0x1F7, 0xEF)
    assert m.inb(0x1F7) == probe_dump(1, "setfeat 03 w/o feature")["st"] == 0x41


def test_unknown_command_aborts_with_irq_and_nien_suppresses_it():
    m = IdeMachine()
    m.outb(0x1F6, 0xA0)
    m.inb(0x1F7)
    m.outb(0x1F7, 0x01)
    d = m.dump()
    assert (d["st"], d["err"]) == (probe_dump(1, "unk cmd")["st"], probe_dump(1, "unk cmd")["err"]) == (0x41, 0x04)
    assert m.irq[14] == [1]
    m.inb(0x1F7)
    m.outb(0x3F6, 0x02)
    m.outb(0x1F7, 0x01)
    assert m.irq[14] == [1, 0] and m.irq14 == 0
    assert m.inb(0x3F6) == probe_dump(1, "unk nien")["st"]


def test_diagnostic_signature():
    m = IdeMachine()
    m.outb(0x1F6, 0xA0)
    m.outb(0x1F7, 0x90)
    assert_probe(m, 1, "diag")
    assert m.irq14 == 1


@pytest.mark.parametrize("lba,count,tag", [(DISK_SECTORS, 1, "read lba=cap"), (5000, 1, "read lba>cap")])
def test_read_past_the_end_is_abrt_not_idnf(lba, count, tag):
    m = command(IdeMachine(), 0x20, lba, count)
    assert_probe(m, 1, tag)
    assert m.irq14 == 1


def test_read_running_off_the_end_fails_at_the_missing_sector():
    m = command(IdeMachine(), 0x20, lba=DISK_SECTORS - 1, count=2)
    assert m.inb(0x1F7) == 0x58
    assert read_data(m) == bytes(m.disk.data[-512:])
    # next block is LBA 2048: ABRT, registers as probe1's "read2 done" (cnt 1, LBA 2048)
    assert_probe(m, 1, "read2 done")


def test_writes_and_commands_ignored_during_drq():
    m = command(IdeMachine(), 0x20, lba=1, count=1)
    m.outb(0x1F2, 0x77)
    assert_probe(m, 2, "write cnt during drq")
    m.outb(0x1F7, 0xEC)
    assert_probe(m, 2, "cmd during drq")
    assert m.inw(0x1F0) == 0x0201  # still the READ SECTORS data


def test_srst_with_absent_slave_selected_then_master():
    m = IdeMachine()
    m.outb(0x1F6, 0xB0)
    m.outb(0x3F6, 0x04)
    m.outb(0x3F6, 0x00)
    assert_probe(m, 1, "srst cleared (slave sel)")
    m.outb(0x1F6, 0xA0)
    assert_probe(m, 1, "srst master")


def test_srst_with_master_selected_and_nien():
    m = command(IdeMachine(), 0x20, lba=1, count=1)   # leave a data phase open: SRST must end it
    m.inb(0x1F7)
    m.outb(0x3F6, 0x04)
    assert_probe(m, 2, "srst set m later")
    assert m.irq14 == 1  # the diagnostic after reset interrupts
    m.outb(0x3F6, 0x00)
    assert_probe(m, 2, "srst clr m")
    assert m.inw(0x1F0) == probe_value(2, "data after srst") == 0
    m.inb(0x1F7)
    m.outb(0x3F6, 0x06)
    m.outb(0x3F6, 0x02)
    assert_probe(m, 2, "srst nien")
    assert m.irq14 == 0


def test_flush_cache_flushes_backing():
    m = IdeMachine()
    m.outb(0x1F6, 0xA0)
    for cmd in (0xE7, 0xEA):
        m.outb(0x1F7, cmd)
        assert m.inb(0x1F7) == probe_dump(2, "flush")["st"] == 0x50
    assert m.disk.flushes == 2 and m.irq[14] == [1, 0, 1, 0]


@pytest.mark.parametrize("read_only", ["drive", "backing"])
def test_read_only_refuses_writes(read_only):
    """A read-only drive (trap handler flag) or disk (backing refuses writes): the write aborts, reads work."""
    disk = FakeDisk(pattern_disk(64), read_only=read_only == "backing")
    m = IdeMachine(master=disk)
    m.ch0.drives[0].st.read_only = read_only == "drive"
    command(m, 0x30, lba=3, count=1)
    write_data(m, [0xFFFF] * 256)
    assert status_error(m) == (0x41, 0x04)
    assert disk.data == pattern_disk(64)
    assert m.read_sector_pio(3) == bytes(disk.data[3 * 512:4 * 512])  # reads still work


def test_detach_and_attach():
    m = IdeMachine()
    drive = m.ch0.drives[0]
    command(m, 0x20, lba=1, count=1)
    with pytest.raises(EmuError):
        drive.detach()  # DRQ: a data phase is open
    read_data(m)
    backing = drive.detach()
    assert backing is m.disk and not m.ch0.busy
    m.sel_lba(1, 1)
    m.outb(0x1F7, 0x20)
    assert status_error(m) == (0x41, 0x04)  # no medium: the command fails
    assert identify(m)[60] == DISK_SECTORS                 # the drive itself is still there
    drive.attach(backing)
    assert m.read_sector_pio(5) == bytes(m.disk.data[5 * 512:6 * 512])
    bigger = FakeDisk(pattern_disk(4096))
    drive.detach()
    drive.attach(bigger)
    assert identify(m)[60] == 4096


def test_attach_to_absent_drive_is_an_error():
    ch = AtaChannel(False)
    with pytest.raises(EmuError):
        ch.drives[0].attach(FakeDisk(pattern_disk(8)))


def test_chs_addressing():
    m = IdeMachine()
    m.outb(0x1F6, 0xA1)   # CHS, head 1
    m.outb(0x1F2, 1)
    m.outb(0x1F3, 2)      # sector 2 (1-based)
    m.outb(0x1F4, 1)      # cylinder 1
    m.outb(0x1F5, 0)
    m.outb(0x1F7, 0x20)
    lba = (1 * 16 + 1) * 63 + 1
    assert read_data(m) == bytes(m.disk.data[lba * 512:(lba + 1) * 512])
    assert (m.inb(0x1F3), m.inb(0x1F6)) == (3, 0xA1)


def test_snapshot_roundtrips_to_json():
    import json
    m = IdeMachine()
    identify(m)
    snap = m.ch0.snapshot()
    assert json.loads(json.dumps(snap))["drives"][0]["status"] == 0x50
    assert m.ch0.digest() != IdeMachine().ch0.digest()
    assert "drives" in m.ch0.info()


RACY_LINES = ("r3 after blk1 raw:", "srst set m:", "srst set:", "slave identify:")
"""Lines sampled inside QEMU's asynchronous windows (BSY after a command, SRST in progress, the IRQ of an
IDENTIFY to an absent slave): QEMU's own value varies run to run, so the re-check ignores them (the emu side is
still compared with the recorded golden by the other tests)."""


@pytest.mark.qemu
@pytest.mark.parametrize("n,disk_kind", [(1, ""), (1, "-default"), (2, ""), (3, ""), (3, "-mbr")])
def test_probe_transcripts_match_qemu(n, disk_kind, tmp_path):
    """Re-run the probe kernel under qemu-system-i386: the recorded golden transcript is what QEMU prints."""
    import subprocess

    from tests.conftest import require_tool
    from tests.devices.ide_harness import PROBE_DIR

    require_tool("qemu-system-i386", "gcc", "ld")
    obj, elf, disk, out = (tmp_path / name for name in ("p.o", "p.elf", "disk.img", "out.txt"))
    subprocess.run(["gcc", "-m32", "-ffreestanding", "-fno-pic", "-fno-stack-protector", "-O1", "-nostdlib",
                    "-c", str(PROBE_DIR / f"probe{n}.c"), "-o", str(obj)], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-T", str(PROBE_DIR / "link.ld"), str(obj), "-o", str(elf)], check=True)
    defaults = [] if disk_kind == "-default" else ["-nodefaults"]

    def stable(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith(RACY_LINES)]

    golden = stable((PROBE_DIR / f"probe{n}{disk_kind}.out").read_text())
    # QEMU completes some ATA commands asynchronously on host threads: on a loaded host a probe can sample a
    # register a moment early. The golden must be what QEMU prints in at least one of three fresh runs.
    for _attempt in range(3):
        disk.write_bytes(bytes(mbr_pattern_disk() if disk_kind == "-mbr" else pattern_disk()))
        subprocess.run(["qemu-system-i386", *defaults, "-display", "none", "-m", "32", "-kernel", str(elf),
                        "-drive", f"file={disk},format=raw,if=ide,index=0", "-debugcon", f"file:{out}",
                        "-device", "isa-debug-exit,iobase=0xf4,iosize=1"], timeout=60, check=False)
        got = stable(out.read_text())
        if got == golden:
            break
    assert got == golden


def test_irq_line_levels_match_qemu():
    """probe3 made IRQ 14/15 level-triggered in the ELCR so the PIC's IRR shows the line; replay it here."""
    golden = [(tag, int(a), int(b)) for tag, a, b in
              re.findall(r"^(.*): irq14=(\d) irq15=(\d)$", probe_text(3), re.M)]
    m = IdeMachine()
    bm = m.bmbase
    m.enable_bus_master()
    seen = []

    def lv(tag: str) -> None:
        seen.append((tag, m.ch0.state.irq_level, m.ch1.state.irq_level))

    lv("boot")
    m.outb(0x1F6, 0xA0); m.inb(0x1F7); lv("select+status")
    m.outb(0x1F7, 0xEC); lv("identify"); m.inb(0x3F6); lv("after alt"); m.inb(0x1F7); lv("after status")
    read_data(m); lv("identify drained")
    m.outb(0x1F7, 0xEC); lv("identify2"); m.outb(0x1F7, 0xE5); lv("cmd during drq")
    read_data(m); m.inb(0x1F7)
    m.sel_lba(40, 2); m.outb(0x1F7, 0x30); lv("write cmd")
    write_data(m, range(256)); lv("write blk1"); m.inb(0x1F7); lv("write blk1 status")
    write_data(m, range(256)); lv("write blk2"); m.inb(0x1F7)
    m.sel_lba(40, 2); m.outb(0x1F7, 0x20); lv("read cmd"); m.inb(0x1F7)
    read_data(m); lv("read blk1 drained"); m.inb(0x1F7); read_data(m); lv("read blk2 drained")
    m.outb(0x3F6, 0x02); m.outb(0x1F7, 0x01); lv("nien abort"); m.outb(0x3F6, 0x00); lv("nien cleared"); m.inb(0x1F7)
    m.outb(0x1F7, 0x01); lv("abort"); m.outb(0x3F6, 0x02); lv("nien set while pending")
    m.outb(0x3F6, 0x00); m.inb(0x1F7); lv("status")
    m.outb(0x3F6, 0x04); lv("srst set"); m.outb(0x3F6, 0x00); lv("srst clear"); m.inb(0x1F7); lv("status")
    m.outb(0x3F6, 0x06); m.outb(0x3F6, 0x02); lv("srst with nien"); m.outb(0x3F6, 0x00); m.inb(0x1F7)
    m.outb(0x1F6, 0xA0)
    m.ram.b[0x10000:0x10008] = (0x20000).to_bytes(4, "little") + (0x80000200).to_bytes(4, "little")
    m.outb(bm, 0); m.outb(bm + 2, 6); m.outl(bm + 4, 0x10000); m.sel_lba(1, 1); m.inb(0x1F7)
    m.outb(0x1F7, 0xC8); lv("dma cmd"); m.outb(bm, 9)
    for _ in range(100_000):
        if m.inb(bm + 2) & 4:
            break
    lv("dma done"); assert m.inb(bm + 2) == probe_value(3, "bmis")
    m.outb(bm, 8); lv("dma stop"); m.inb(0x1F7); lv("dma status")
    m.outb(0x176, 0xA0); m.outb(0x177, 0xEC); lv("sec identify")
    assert m.inb(0x376) == probe_value(3, "sec st") == 0
    m.inb(0x177); lv("sec status")
    m.outb(0x177, 0x20); lv("sec read"); m.outb(0x376, 0x04); lv("sec srst"); m.outb(0x376, 0x00)
    m.inb(0x177); lv("sec status2")
    m.outb(0x1F6, 0xB0); m.outb(0x1F7, 0xEC); lv("slave identify")
    assert seen == golden


@pytest.mark.parametrize("disk,out", [(pattern_disk, "probe3.out"), (mbr_pattern_disk, "probe3-mbr.out")])
def test_geometry_matches_qemu(disk, out):
    from tests.devices.ide_harness import PROBE_DIR
    golden = [int(x, 16) for x in re.search(r"^geo: (.*)$", (PROBE_DIR / out).read_text(), re.M).group(1).split()]
    w = identify(IdeMachine(master=FakeDisk(disk())))
    assert [w[i] for i in (1, 3, 6, 54, 55, 56, 57, 58)] == golden


def test_writes_reach_a_disk_image_file(tmp_path):
    from emu.storage.image import DiskImage

    path = tmp_path / "disk.img"
    path.write_bytes(bytes(pattern_disk(64)))
    with DiskImage(path) as image:
        m = command(IdeMachine(master=image), 0x30, lba=5, count=1)
        write_data(m, [0xBEEF] * 256)
        m.outb(0x1F7, 0xE7)   # FLUSH CACHE
        assert m.inb(0x1F7) == 0x50
        assert path.read_bytes()[5 * 512:6 * 512] == b"\xef\xbe" * 256
        assert m.read_sector_pio(6) == bytes(pattern_disk(64)[6 * 512:7 * 512])
    with DiskImage(path, read_only=True) as image:
        m = command(IdeMachine(master=image), 0x30, lba=5, count=1)
        write_data(m, [0] * 256)
        assert status_error(m) == (0x41, 0x04)
    assert path.read_bytes()[5 * 512:6 * 512] == b"\xef\xbe" * 256
