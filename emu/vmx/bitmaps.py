"""I/O, MSR and exception bitmaps: which accesses exit, and helpers that set their bits.

- I/O: SDM Vol. 3C §26.1.3 (IN, INS, OUT, OUTS) and §25.6.4.  Bitmap A holds ports
  0x0000–0x7FFF, bitmap B 0x8000–0xFFFF; bit n of a bitmap is bit (n & 7) of byte n >> 3.
- MSR: §26.1.3 (RDMSR, WRMSR) and §25.6.9.  One 4-KiB page: read-low at +0, read-high
  at +0x400, write-low at +0x800, write-high at +0xC00; low = MSRs 0–0x1FFF, high =
  0xC0000000–0xC0001FFF.
- Exceptions: §26.2 and §25.6.3 (exception bitmap, #PF error-code mask and match).
"""
from __future__ import annotations

from typing import Optional

from emu import EmuError
from emu.vmx.controls import BITMAP_BYTES, PinControls, PrimaryControls, VmcsControls
from emu.vmx.qualification import InterruptionType

MSR_LOW_END = 0x2000
MSR_HIGH_BASE = 0xC0000000
MSR_HIGH_END = 0xC0002000
MSR_READ_LOW, MSR_READ_HIGH, MSR_WRITE_LOW, MSR_WRITE_HIGH = 0x000, 0x400, 0x800, 0xC00
PF_VECTOR = 14
_USE_IO_BITMAPS = int(PrimaryControls.USE_IO_BITMAPS)
_UNCONDITIONAL_IO = int(PrimaryControls.UNCONDITIONAL_IO)
_USE_MSR_BITMAPS = int(PrimaryControls.USE_MSR_BITMAPS)


def _test(bitmap: bytearray, bit: int) -> bool:
    return bool(bitmap[bit >> 3] >> (bit & 7) & 1)


def _put(bitmap: bytearray, bit: int, value: bool) -> None:
    if value:
        bitmap[bit >> 3] |= 1 << (bit & 7)
    else:
        bitmap[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF


# --- I/O ------------------------------------------------------------------------------------

def _check_io(port: int, size: int) -> None:
    if not 0 <= port <= 0xFFFF:
        raise EmuError(f"I/O port {port!r} out of range 0..0xffff")
    if size not in (1, 2, 4):
        raise EmuError(f"I/O access size {size!r} is not 1, 2 or 4 bytes")


def io_bitmap_bit(c: VmcsControls, port: int) -> bool:
    """The bitmap bit of one port (A for 0x0000–0x7FFF, B for 0x8000–0xFFFF)."""
    _check_io(port, 1)
    return _test(c.io_bitmap_a if port < 0x8000 else c.io_bitmap_b, port & 0x7FFF)


def set_io_bitmap(c: VmcsControls, port: int, count: int = 1, value: bool = True) -> None:
    """Set (or clear, ``value=False``) the bits of ports ``port`` .. ``port + count - 1``."""
    if count < 0 or not 0 <= port <= 0xFFFF or port + count > 0x10000:
        raise EmuError(f"I/O port range {port:#x}+{count} outside 0..0xffff")
    for p in range(port, port + count):
        _put(c.io_bitmap_a if p < 0x8000 else c.io_bitmap_b, p & 0x7FFF, value)


def io_exits(c: VmcsControls, port: int, size: int) -> bool:
    """Whether an IN/OUT/INS/OUTS element of ``size`` bytes at ``port`` exits (SDM §26.1.3).

    With "use I/O bitmaps" the bitmaps decide and "unconditional I/O exiting" is ignored:
    the access exits if the bit of ANY port it touches is set, and always if it wraps
    past 0xFFFF to 0x0000.  Without bitmaps it exits iff unconditional I/O exiting is 1.
    """
    if not 0 <= port <= 0xFFFF or size not in (1, 2, 4):
        _check_io(port, size)
    primary = int(c.primary)
    if primary & _USE_IO_BITMAPS:
        if port + size > 0x10000:
            return True
        for p in range(port, port + size):
            bitmap = c.io_bitmap_a if p < 0x8000 else c.io_bitmap_b
            if bitmap[(p & 0x7FFF) >> 3] >> (p & 7) & 1:
                return True
        return False
    return bool(primary & _UNCONDITIONAL_IO)


# --- MSR ------------------------------------------------------------------------------------

def _msr_bit(msr: int, write: bool) -> Optional[int]:
    """Bit index into the MSR bitmap page, or None for an MSR outside both ranges."""
    if 0 <= msr < MSR_LOW_END:
        return (MSR_WRITE_LOW if write else MSR_READ_LOW) * 8 + msr
    if MSR_HIGH_BASE <= msr < MSR_HIGH_END:
        return (MSR_WRITE_HIGH if write else MSR_READ_HIGH) * 8 + (msr & 0x1FFF)
    return None


def _check_msr(msr: int) -> None:
    if not isinstance(msr, int) or not 0 <= msr <= 0xFFFFFFFF:
        raise EmuError(f"MSR index {msr!r} is not a 32-bit ECX value")


def msr_exits(c: VmcsControls, msr: int, write: bool) -> bool:
    """Whether RDMSR (``write=False``) or WRMSR of ECX = ``msr`` exits (SDM §26.1.3).

    Without "use MSR bitmaps" every RDMSR/WRMSR exits; with them, MSRs outside
    0–0x1FFF and 0xC0000000–0xC0001FFF always exit, others exit iff their bit is set.
    """
    _check_msr(msr)
    if not int(c.primary) & _USE_MSR_BITMAPS:
        return True
    bit = _msr_bit(msr, write)
    return True if bit is None else _test(c.msr_bitmap, bit)


def set_msr_bitmap(c: VmcsControls, msr: int, count: int = 1, *, read: bool = True, write: bool = True,
                   value: bool = True) -> None:
    """Set (or clear) the read and/or write bits of MSRs ``msr`` .. ``msr + count - 1``.

    The range must lie inside one bitmap range (0–0x1FFF or 0xC0000000–0xC0001FFF):
    other MSRs have no bit (they always exit).
    """
    _check_msr(msr)
    last = msr + count - 1
    if count < 1 or _msr_bit(msr, False) is None or _msr_bit(last, False) is None or \
            (msr < MSR_LOW_END) != (last < MSR_LOW_END):
        raise EmuError(f"MSR range {msr:#x}+{count} is not inside 0..0x1fff or 0xc0000000..0xc0001fff")
    for m in range(msr, msr + count):
        if read:
            _put(c.msr_bitmap, _msr_bit(m, False), value)
        if write:
            _put(c.msr_bitmap, _msr_bit(m, True), value)


def set_all_msr_bitmap(c: VmcsControls, value: bool = True) -> None:
    """Set (or clear) every bit of the MSR bitmap: every in-range RDMSR/WRMSR exits (or none does)."""
    c.msr_bitmap[:] = (b"\xff" if value else b"\x00") * BITMAP_BYTES


# --- exceptions -------------------------------------------------------------------------------

def set_exception_bitmap(c: VmcsControls, vector: int, value: bool = True) -> None:
    """Set (or clear) the exception-bitmap bit of ``vector`` (0–31)."""
    if not 0 <= vector <= 31:
        raise EmuError(f"exception vector {vector!r} out of range 0..31")
    if value:
        c.exception_bitmap |= 1 << vector
    else:
        c.exception_bitmap &= ~(1 << vector) & 0xFFFFFFFF


def exception_exits(c: VmcsControls, vector: int, pf_error_code: Optional[int] = None,
                    kind: InterruptionType = InterruptionType.HARDWARE_EXCEPTION) -> bool:
    """Whether an event exits with reason 0 (exception or NMI; SDM §26.2, §25.6.3).

    Exceptions (hardware, software INT3/INTO, privileged INT1) exit iff their bit in the
    exception bitmap is 1.  For #PF the bit is used when ``(PFEC & mask) == match``, and
    inverted otherwise (``pf_error_code`` None counts as 0).  NMIs exit iff NMI exiting is
    1; external interrupts and INT n never use the bitmap (they return False here).
    """
    if not 0 <= vector <= 0xFF:
        raise EmuError(f"vector {vector!r} out of range 0..255")
    kind = InterruptionType(kind)
    if kind is InterruptionType.NMI:
        return bool(c.pin & PinControls.NMI_EXITING)
    if kind in (InterruptionType.EXTERNAL_INTERRUPT, InterruptionType.SOFTWARE_INTERRUPT,
                InterruptionType.OTHER_EVENT) or vector > 31:
        return False
    bit = bool(c.exception_bitmap >> vector & 1)
    if vector == PF_VECTOR:
        code = pf_error_code or 0
        if code & c.pf_error_code_mask != c.pf_error_code_match:
            return not bit
    return bit
