"""PCI configuration mechanism #1 and the PIIX3 functions against QEMU 7.2 (golden: qemu_probe/probe1.out)."""
from __future__ import annotations

import re

import pytest

from emu import EmuError
from emu.devices.pci import BarSpec, PciFunction, PciHost
from emu.devices.piix import DEFAULT_BAR4, Piix3Ide
from tests.devices.ide_harness import IdeMachine, probe_text, probe_value


def probe_config(fn: str, variant: str = "") -> list[int]:
    m = re.search(rf"^cfg {re.escape(fn)}: (.*)$", probe_text(1, variant), re.M)
    assert m
    return [int(x, 16) for x in m.group(1).split()]


@pytest.mark.parametrize("defaults,variant", [(False, ""), (True, "-default")])
@pytest.mark.parametrize("dev,fn,name", [(0, 0, "00.0"), (1, 0, "01.0"), (1, 1, "01.1"), (1, 3, "01.3")])
def test_config_space_matches_qemu(dev, fn, name, defaults, variant):
    """probe1.out ran with -nodefaults (BAR4 0xC001), probe1-default.out without (BAR4 0xC041)."""
    m = IdeMachine(qemu_defaults=defaults)
    got = [m.cfgl(dev, fn, r) for r in range(0, 256, 4)]
    assert got == probe_config(name, variant)


def test_identity_fields_read_by_width():
    m = IdeMachine()
    assert m.cfgl(1, 1, 0) == 0x70108086
    assert m.cfgw(1, 1, 0x02) == probe_value(1, "ide word 0x02") == 0x7010
    assert m.cfgw(1, 1, 0x0A) == probe_value(1, "ide word 0x0a") == 0x0101
    m.outl(0xCF8, m.cfgaddr(1, 1, 8))
    assert m.inb(0xCFD) == probe_value(1, "ide byte 0x09") == 0x80
    assert m.inb(0xCFF) == probe_value(1, "ide byte 0x0b") == 0x01
    assert m.cfgl(0, 0, 0) == 0x12378086
    assert m.cfgl(1, 0, 0) == 0x70008086
    assert m.cfgl(1, 3, 0) == 0x71138086
    assert m.cfgl(1, 1, 0x04) & 0xFFFF == 0x0103  # bus master off, as SeaBIOS leaves it


def test_default_bar4_is_c041():
    m = IdeMachine(bar4=DEFAULT_BAR4)
    assert m.cfgl(1, 1, 0x20) == 0xC041 == IdeMachine(qemu_defaults=True).cfgl(1, 1, 0x20)
    assert probe_value(1, "bm") == 0xC000 and int(re.search(r"^bm=([0-9a-f]+)$", probe_text(1, "-default"),
                                                              re.M).group(1), 16) == 0xC040
    assert m.fns.ide.bar4_base == 0xC040
    assert m.fns.ide.idetim == (0x8000, 0x8000)


def test_absent_functions_and_disabled_access_read_all_ones():
    m = IdeMachine()
    assert m.cfgl(2, 0, 0) == probe_value(1, "absent 00:02.0") == 0xFFFFFFFF
    assert m.cfgl(1, 2, 0) == probe_value(1, "absent 00:01.2")
    m.outl(0xCF8, 0x80000000 | 1 << 16)
    assert m.inl(0xCFC) == probe_value(1, "bus1dev0")
    m.outl(0xCF8, 1 << 11 | 1 << 8)  # enable bit clear
    assert m.inl(0xCFC) == probe_value(1, "disabled read")
    assert m.inl(0xCF8) == probe_value(1, "cf8 read") == 0x900
    assert m.inb(0xCF8) == probe_value(1, "cf8 byte")
    assert m.inb(0xCF9) == probe_value(1, "cf9 byte")
    assert m.inw(0xCFA) == probe_value(1, "cfa word")
    m.outl(0xCFC, 0)  # dropped
    assert m.cfgl(1, 1, 0) == 0x70108086


def test_low_address_bits_offset_the_data_window():
    m = IdeMachine()
    m.outl(0xCF8, m.cfgaddr(1, 1, 0) | 2)
    assert m.inl(0xCFC) == probe_value(1, "cf8 lowbits read cfc") == 0x01037010
    assert m.inl(0xCF8) == probe_value(1, "cf8 with lowbits")


def test_bar_sizing_and_restore():
    m = IdeMachine()
    text = probe_text(1)
    for r in range(0x10, 0x28, 4):
        old = m.cfgl(1, 1, r)
        m.cfgwl(1, 1, r, 0xFFFFFFFF)
        size = m.cfgl(1, 1, r)
        m.cfgwl(1, 1, r, old)
        want = re.search(rf"^bar {r:02x} size=([0-9a-f]+) restored=([0-9a-f]+)$", text, re.M)
        assert (size, m.cfgl(1, 1, r)) == (int(want.group(1), 16), int(want.group(2), 16))
    m.cfgwl(0, 0, 0x10, 0xFFFFFFFF)
    assert m.cfgl(0, 0, 0x10) == probe_value(1, "hostbar0 size") == 0


def test_write_masks_match_qemu():
    m = IdeMachine()
    m.cfgww(1, 1, 4, 0xFFFF)
    assert m.cfgw(1, 1, 4) == probe_value(1, "ide cmd wmask") == 0x0507
    m.cfgww(1, 1, 4, 0x0103)
    m.cfgww(1, 1, 6, 0xFFFF)
    assert m.cfgw(1, 1, 6) == probe_value(1, "ide status after w1") == 0x0280
    for reg, key in ((0x0C, "ide 0c wmask"), (0x3C, "ide 3c wmask"), (0x00, "ide 00 wmask"),
                     (0x08, "ide 08 wmask"), (0x2C, "ide 2c wmask"), (0x40, "ide 40 wmask"),
                     (0xFC, "ide fc wmask")):
        old = m.cfgl(1, 1, reg)
        m.cfgwl(1, 1, reg, 0xFFFFFFFF)
        assert m.cfgl(1, 1, reg) == probe_value(1, key), key
        m.cfgwl(1, 1, reg, old)


def test_bar4_move_remaps_bus_master_ports():
    m = IdeMachine()
    moves = []
    m.fns.ide.on_bar4_change = lambda old, new: (moves.append((old, new)), m.bm.remap(m.bus, old, new))
    m.cfgwl(1, 1, 0x20, 0xD001)
    assert m.cfgl(1, 1, 0x20) == probe_value(1, "bm moved readback") == 0xD001
    assert moves == [(0xC000, 0xD000)]
    assert m.inb(0xC000) == probe_value(1, "old bmic") == 0xFF
    assert m.inb(0xD002) == probe_value(1, "new bmis") == 0x00
    assert m.bus.owner(0xD000) == "bmdma" and m.bus.owner(0xC000) is None
    # sizing un-decodes (all-ones base wraps), restoring decodes again
    m.cfgwl(1, 1, 0x20, 0xFFFFFFFF)
    m.cfgwl(1, 1, 0x20, 0xC001)
    assert moves[1:] == [(0xD000, None), (None, 0xC000)]
    # I/O decode off in the command register un-decodes too
    m.cfgww(1, 1, 4, 0x0102)
    assert moves[-1] == (0xC000, None) and m.inb(0xC002) == 0xFF
    m.cfgww(1, 1, 4, 0x0103)
    assert moves[-1] == (None, 0xC000) and m.inb(0xC002) == 0x00


def test_bus_master_enable_bit():
    m = IdeMachine()
    assert not m.fns.ide.bus_master_enabled
    m.enable_bus_master()
    assert m.fns.ide.bus_master_enabled and m.cfgw(1, 1, 4) == 0x0107
    m.enable_bus_master(False)
    assert not m.fns.ide.bus_master_enabled


def test_reset_control_register():
    requests = []
    host = PciHost(on_reset_request=requests.append)
    host.io_write(0xCF9, 1, 0x02)
    assert host.io_read(0xCF9, 1) == 0x02 and requests == []
    host.io_write(0xCF9, 1, 0x06)
    assert requests == [0x06] and host.io_read(0xCF9, 1) == 0x02


def test_access_past_end_is_cut_and_partial_cf8_writes_ignored():
    m = IdeMachine()
    m.cfgwl(1, 1, 0xFC, 0x11223344)
    m.outl(0xCF8, m.cfgaddr(1, 1, 0xFC) | 2)
    assert m.inl(0xCFC) == 0x1122  # bytes 0xFE, 0xFF only
    m.outw(0xCF8, 0)  # only a dword write changes CONFIG_ADDRESS
    assert m.inl(0xCF8) == m.cfgaddr(1, 1, 0xFC) | 2


def test_bad_configuration_is_one_error():
    with pytest.raises(EmuError):
        PciFunction("x", bytes(10))
    with pytest.raises(EmuError):
        PciFunction("x", bytes(256), (BarSpec(0, 24),))
    host = PciHost()
    host.add(1, 1, Piix3Ide())
    with pytest.raises(EmuError):
        host.add(1, 1, Piix3Ide())


def test_info_and_digest_are_stable():
    a, b = IdeMachine(), IdeMachine()
    assert a.fns.ide.digest() == b.fns.ide.digest()
    assert "vendor:device" in a.fns.ide.info()
    a.cfgww(1, 1, 4, 0x0107)
    assert a.fns.ide.digest() != b.fns.ide.digest()


def test_info_decodes_the_configuration_header():
    """`info pci` (the debugger's dump) names the IDs, class, command bits and BARs from the header (PCI 3.0 §6.2)."""
    m = IdeMachine()
    ide = m.fns.ide
    text = ide.info()
    assert "vendor:device      8086:7010" in text and "class              0101 prog-if 80" in text
    assert "BAR4               0000c001 (I/O, 16 bytes, decoded at 0xc000)" in text
    m.cfgww(1, 1, 4, 0x0000)              # 00:01.1 command: I/O decode off
    assert "(I/O, 16 bytes, not decoded)" in ide.info() and "command            0000 (io 0" in ide.info()
