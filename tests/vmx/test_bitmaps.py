"""I/O, MSR and exception bitmaps (SDM Vol. 3C §26.1.3, §26.2, §25.6.3/4/9); byte offsets computed by hand."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu import EmuError
from emu.vmx.bitmaps import (exception_exits, io_bitmap_bit, io_exits, msr_exits, set_all_msr_bitmap,
                             set_exception_bitmap, set_io_bitmap, set_msr_bitmap)
from emu.vmx.controls import PinControls, PrimaryControls, VmcsControls
from emu.vmx.qualification import InterruptionType

P = PrimaryControls


def bitmapped() -> VmcsControls:
    return VmcsControls(primary=P.USE_IO_BITMAPS | P.USE_MSR_BITMAPS)


def test_io_bitmap_bit_positions():
    c = bitmapped()
    set_io_bitmap(c, 0x60)            # bitmap A, byte 0x60 >> 3 = 0x0C, bit 0
    set_io_bitmap(c, 0x1F7)           # A, byte 0x3E, bit 7
    set_io_bitmap(c, 0x8001)          # B, bit 1 of byte 0
    set_io_bitmap(c, 0xFFFF)          # B, byte 0xFFF, bit 7
    assert c.io_bitmap_a[0x0C] == 0x01 and c.io_bitmap_a[0x3E] == 0x80
    assert c.io_bitmap_b[0] == 0x02 and c.io_bitmap_b[0xFFF] == 0x80
    assert sum(c.io_bitmap_a) + sum(c.io_bitmap_b) == 0x01 + 0x80 + 0x02 + 0x80
    set_io_bitmap(c, 0x1F7, value=False)
    assert c.io_bitmap_a[0x3E] == 0 and not io_bitmap_bit(c, 0x1F7)


def test_io_without_bitmaps():
    assert not io_exits(VmcsControls(), 0x60, 1)
    assert io_exits(VmcsControls(primary=P.UNCONDITIONAL_IO), 0x60, 1)


def test_io_bitmaps_override_unconditional():
    # "use I/O bitmaps" = 1: unconditional I/O exiting is ignored, the (empty) bitmaps decide.
    c = VmcsControls(primary=P.UNCONDITIONAL_IO | P.USE_IO_BITMAPS)
    assert not io_exits(c, 0x60, 1)
    set_io_bitmap(c, 0x60)
    assert io_exits(c, 0x60, 1)


def test_multi_byte_access_exits_if_any_port_bit_set():
    c = bitmapped()
    set_io_bitmap(c, 0x1F8)            # first bit of byte 0x3F
    assert io_exits(c, 0x1F7, 2)       # 2-byte access 0x1F7..0x1F8 straddles into the set bit
    assert io_exits(c, 0x1F5, 4)       # 0x1F5..0x1F8
    assert not io_exits(c, 0x1F6, 2)   # 0x1F6..0x1F7
    assert not io_exits(c, 0x1F4, 4)   # 0x1F4..0x1F7
    assert not io_exits(c, 0x1F9, 1)


def test_access_straddling_bitmaps_a_and_b():
    c = bitmapped()
    set_io_bitmap(c, 0x8000)           # bit 0 of bitmap B
    assert io_exits(c, 0x7FFF, 2)      # 0x7FFF (A) + 0x8000 (B)
    assert io_exits(c, 0x7FFD, 4)
    assert not io_exits(c, 0x7FFE, 2)


def test_wrap_past_ffff_always_exits():
    c = bitmapped()                    # every bitmap bit clear
    assert io_exits(c, 0xFFFF, 4)      # dword at 0xFFFF touches 0xFFFF, 0x0000..0x0002
    assert io_exits(c, 0xFFFF, 2)
    assert io_exits(c, 0xFFFD, 4)      # 0xFFFD..0x10000
    assert not io_exits(c, 0xFFFC, 4)  # 0xFFFC..0xFFFF: no wrap, bitmap B decides
    assert not io_exits(c, 0xFFFF, 1)
    # without "use I/O bitmaps" the wrap rule does not apply
    assert not io_exits(VmcsControls(), 0xFFFF, 4)


@given(st.integers(0, 0xFFFF), st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFF))
def test_io_exits_matches_the_port_set_rule(port, size, marked):
    c = bitmapped()
    set_io_bitmap(c, marked)
    touched = {(port + i) for i in range(size)}
    expected = port + size > 0x10000 or marked in touched
    assert io_exits(c, port, size) == expected


def test_io_bad_arguments():
    c = bitmapped()
    for port, size in ((0x10000, 1), (-1, 1), (0, 3), (0, 8)):
        with pytest.raises(EmuError):
            io_exits(c, port, size)
    with pytest.raises(EmuError):
        set_io_bitmap(c, 0xFFFF, 2)


def test_msr_bitmap_offsets():
    c = bitmapped()
    set_msr_bitmap(c, 0x10, write=False)              # read-low: byte 0x10 >> 3 = 2, bit 0
    assert c.msr_bitmap[2] == 0x01 and c.msr_bitmap[0x802] == 0
    set_msr_bitmap(c, 0x1B, read=False)               # write-low: 0x800 + 3, bit 3
    assert c.msr_bitmap[0x803] == 0x08
    set_msr_bitmap(c, 0xC0000080)                     # read-high 0x400 + 0x10 and write-high 0xC00 + 0x10, bit 0
    assert c.msr_bitmap[0x410] == 0x01 and c.msr_bitmap[0xC10] == 0x01
    set_msr_bitmap(c, 0x1FFF, write=False)            # last low MSR: byte 0x3FF bit 7
    set_msr_bitmap(c, 0xC0001FFF, read=False)         # last high MSR, write: byte 0xFFF bit 7
    assert c.msr_bitmap[0x3FF] == 0x80 and c.msr_bitmap[0xFFF] == 0x80
    assert sum(c.msr_bitmap) == 0x01 + 0x08 + 0x01 + 0x01 + 0x80 + 0x80
    assert msr_exits(c, 0x10, False) and not msr_exits(c, 0x10, True)
    assert msr_exits(c, 0x1B, True) and not msr_exits(c, 0x1B, False)
    assert msr_exits(c, 0xC0000080, False) and msr_exits(c, 0xC0000080, True)
    assert not msr_exits(c, 0xC0000081, False)


def test_msrs_outside_the_ranges_always_exit():
    c = bitmapped()
    for msr in (0x2000, 0x40000000, 0xBFFFFFFF, 0xC0002000, 0xC0010000, 0xFFFFFFFF):
        assert msr_exits(c, msr, False) and msr_exits(c, msr, True)
    for msr in (0, 0x1FFF, 0xC0000000, 0xC0001FFF):
        assert not msr_exits(c, msr, False) and not msr_exits(c, msr, True)


def test_without_msr_bitmaps_every_msr_exits():
    c = VmcsControls()
    assert msr_exits(c, 0x10, False) and msr_exits(c, 0x10, True) and msr_exits(c, 0xC0000080, False)


def test_set_all_and_ranges():
    c = bitmapped()
    set_all_msr_bitmap(c)
    assert msr_exits(c, 0x277, False) and msr_exits(c, 0xC0000100, True)
    set_all_msr_bitmap(c, False)
    set_msr_bitmap(c, 0x200, 0x10)                    # the variable MTRRs 0x200..0x20F
    assert msr_exits(c, 0x20F, True) and not msr_exits(c, 0x210, True) and not msr_exits(c, 0x1FF, False)
    for msr, count in ((0x1FFF, 2), (0x2000, 1), (0xC0001FFF, 2), (0x10, 0)):
        with pytest.raises(EmuError):
            set_msr_bitmap(c, msr, count)


def test_exception_bitmap():
    c = VmcsControls()
    set_exception_bitmap(c, 3)                        # #BP: bit 3 -> 0x8
    set_exception_bitmap(c, 13)                       # #GP: bit 13 -> 0x2000
    assert c.exception_bitmap == 0x2008
    assert exception_exits(c, 3, kind=InterruptionType.SOFTWARE_EXCEPTION)     # int3
    assert not exception_exits(c, 3, kind=InterruptionType.SOFTWARE_INTERRUPT)  # INT 3 (CD 03) is no exception
    assert exception_exits(c, 13)
    assert not exception_exits(c, 6)
    assert not exception_exits(c, 0x20, kind=InterruptionType.EXTERNAL_INTERRUPT)
    set_exception_bitmap(c, 3, False)
    assert c.exception_bitmap == 0x2000
    with pytest.raises(EmuError):
        set_exception_bitmap(c, 32)


def test_nmi_uses_the_pin_control():
    assert not exception_exits(VmcsControls(exception_bitmap=0xFFFFFFFF), 2, kind=InterruptionType.NMI)
    assert exception_exits(VmcsControls(pin=PinControls.NMI_EXITING), 2, kind=InterruptionType.NMI)


def test_page_fault_mask_and_match():
    # bit 14 set, mask = P (1), match = 1: only #PF on present pages exit (PFEC & 1 == 1), others invert.
    c = VmcsControls(exception_bitmap=1 << 14, pf_error_code_mask=1, pf_error_code_match=1)
    assert exception_exits(c, 14, 0x3)        # present, write
    assert not exception_exits(c, 14, 0x2)    # not present: mismatch inverts bit 14 (1 -> no exit)
    # bit 14 clear, mask = W (2), match = 2: mismatching error codes exit (inverted 0 -> 1)
    c = VmcsControls(pf_error_code_mask=2, pf_error_code_match=2)
    assert not exception_exits(c, 14, 0x2)
    assert exception_exits(c, 14, 0x0)
    # mask = match = 0: bit 14 alone decides, whatever the error code
    assert exception_exits(VmcsControls(exception_bitmap=1 << 14), 14, 0x1F)
    assert not exception_exits(VmcsControls(), 14, None)
