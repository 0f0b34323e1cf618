"""What every device shares: one declared state object, dumps, snapshots and digests.

QEMU declares each device's migratable state once (VMState); here each device
keeps every register in one dataclass (``self.state``) and snapshots, trace
checkpoint digests, the debugger's ``info`` dumps and replays all read that one
declaration.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable, Protocol


class GuestMemory(Protocol):
    """Guest-physical memory as a bus master (DMA) sees it."""

    def contains(self, addr: int, size: int) -> bool:
        """True when [addr, addr+size) lies entirely in guest RAM."""

    def read(self, addr: int, size: int) -> bytes:
        """Read guest-physical bytes (caller checked ``contains``)."""

    def write(self, addr: int, data: bytes) -> None:
        """Write guest-physical bytes (caller checked ``contains``)."""


IrqSetter = Callable[[int], None]
"""Drives one interrupt request line: called with level 1 (asserted) or 0."""


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return f"{value:#x}"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if dataclasses.is_dataclass(value):
        return "{" + ", ".join(f"{f.name}={_render(getattr(value, f.name))}" for f in dataclasses.fields(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    return str(value)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class Device:
    """Base of every device model: ``name`` and a dataclass ``state``."""

    name: str = "device"
    state: Any = None

    def info(self) -> str:
        """Readable dump of every declared register (Bochs' ``info device``)."""
        if self.state is None:
            return f"{self.name}: (no state)"
        lines = [f"{self.name}:"]
        for f in dataclasses.fields(self.state):
            lines.append(f"  {f.name:<18} {_render(getattr(self.state, f.name))}")
        return "\n".join(lines)

    def snapshot(self) -> dict:
        """The declared state as plain JSON-able data."""
        return _jsonable(self.state)

    def digest(self) -> str:
        """SHA-256 of the declared state (trace checkpoints)."""
        blob = json.dumps(self.snapshot(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()
