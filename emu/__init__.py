"""emu: a cycle-level x86 emulator with a VMX-like monitor (US patent 7,539,986)."""

__version__ = "0.1.0"


class EmuError(Exception):
    """An unusable input or configuration: reported as one line, exit status 2."""
