"""Debugging guests: a GDB remote serial protocol stub (gdbstub) over an abstract DebugTarget (target)."""
