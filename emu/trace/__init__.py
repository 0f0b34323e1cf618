"""Recorded traces: record a run, replay it bit for bit, diff two traces (docs/traces.md)."""
from emu.trace.format import FORMAT_VERSION, Kind, TraceError
from emu.trace.reader import TraceReader
from emu.trace.writer import TraceWriter

__all__ = ["FORMAT_VERSION", "Kind", "TraceError", "TraceReader", "TraceWriter"]
