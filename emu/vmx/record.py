"""The VmExit record: what a VT-x processor saves in the VMCS at a VM exit (SDM Vol. 3C §28.2), as one value.

JSON form (``to_json``/``from_json``), the DESIGN.md exit-log contract plus decoded fields::

    {"icount", "guest", "reason", "reason_name", "failed_vmentry", "qualification", "rip",
     "linear_rip", "insn_len", "guest_linear", "guest_physical", "interruptibility",
     "activity", "activity_name", "interruption_info", "error_code", "decoded", "regs"}

``rip`` is the guest-RIP field (EIP, an offset in CS); ``linear_rip`` is CS.base + EIP.
``decoded`` holds the qualification's fields (enums by name) for I/O, CR- and DR-access
exits, the interruption fields for exception/interrupt exits, else null.
"""
from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping, Optional, Union

from emu import EmuError
from emu.vmx.qualification import (ActivityState, CrAccessQualification, DrAccessQualification, InterruptionInfo,
                                   Interruptibility, IoQualification)
from emu.vmx.reasons import ExitReason, exit_reason

Decoded = Union[IoQualification, CrAccessQualification, DrAccessQualification]
QUALIFICATION_CODECS = {ExitReason.IO_INSTRUCTION: IoQualification, ExitReason.CR_ACCESS: CrAccessQualification,
                        ExitReason.DR_ACCESS: DrAccessQualification}
"""Exit reasons whose qualification has a structured layout, and its codec."""
REGISTER_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
                  "cs", "ss", "ds", "es", "fs", "gs", "cr0", "cr2", "cr3", "cr4")
"""Names a register snapshot may use: general registers, EIP, EFLAGS, segment selectors, CR0–CR4 (``Vcpu.regs()`` fits)."""
_REGISTER_SET = frozenset(REGISTER_NAMES)


def decode_qualification(reason: ExitReason, qualification: int) -> Optional[Decoded]:
    """The structured qualification for I/O, CR-access and DR-access exits; None for other reasons."""
    return _decode_qualification(int(reason), qualification)


@lru_cache(maxsize=16384)
def _decode_qualification(reason: int, qualification: int) -> Optional[Decoded]:   # keyed by int: Enum hashes slowly
    codec = QUALIFICATION_CODECS.get(reason)
    return codec.decode(qualification) if codec else None


@lru_cache(maxsize=4096)
def _plain_cached(obj: Any) -> Any:
    return _plain(obj)


def _plain(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.name
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


@dataclass(frozen=True)
class VmExit:
    """One VM exit: reason, qualification, instruction length, guest state at the exit (SDM §28.2, §28.3).

    ``insn_len`` is the VM-exit instruction-length field (0 where the SDM leaves it
    undefined); ``guest_linear``/``guest_physical`` are set only where the SDM defines
    them (e.g. INS/OUTS, LMSW m16, EPT violations); ``interruption``/``error_code`` are
    the VM-exit interruption information and error code (exception/interrupt exits).
    """

    reason: ExitReason
    qualification: int = 0
    insn_len: int = 0
    rip: int = 0
    linear_rip: Optional[int] = None
    icount: int = 0
    guest: str = "guest"
    guest_linear: Optional[int] = None
    guest_physical: Optional[int] = None
    interruptibility: Interruptibility = Interruptibility()
    activity: ActivityState = ActivityState.ACTIVE
    interruption: Optional[InterruptionInfo] = None
    error_code: Optional[int] = None
    regs: Mapping[str, int] = field(default_factory=dict, hash=False)
    failed_vmentry: bool = False
    decoded: Optional[Decoded] = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if type(self.reason) is not ExitReason:
            set_(self, "reason", exit_reason(int(self.reason)))
        if type(self.activity) is not ActivityState:
            set_(self, "activity", ActivityState.decode(int(self.activity)))
        if type(self.qualification) is not int or not 0 <= self.qualification <= 0xFFFFFFFF_FFFFFFFF:
            raise EmuError(f"exit qualification {self.qualification!r} is not a 64-bit value")
        if not 0 <= self.insn_len <= 15:
            raise EmuError(f"instruction length {self.insn_len} out of range 0..15")
        if self.linear_rip is None:
            set_(self, "linear_rip", self.rip)
        decoded = decode_qualification(self.reason, self.qualification)
        if self.decoded is not None and self.decoded != decoded:
            raise EmuError(f"decoded qualification {self.decoded} does not match {self.qualification:#x}")
        set_(self, "decoded", decoded)
        if self.error_code is not None and (self.interruption is None or not self.interruption.error_code_valid):
            raise EmuError("an error code without interruption information that says it is valid")
        regs = dict(self.regs)
        if not _REGISTER_SET.issuperset(regs):
            unknown = set(regs) - _REGISTER_SET
            raise EmuError(f"unknown registers in the snapshot: {', '.join(sorted(unknown))}")
        set_(self, "regs", regs)

    @classmethod
    def taken(cls, reason: ExitReason, qualification: int, insn_len: int, rip: int, linear_rip: int, icount: int,
              guest: str, guest_linear: Optional[int], interruptibility: Interruptibility, regs: dict[str, int],
              activity: ActivityState = ActivityState.ACTIVE, interruption: Optional[InterruptionInfo] = None,
              error_code: Optional[int] = None) -> "VmExit":
        """The record of an exit the monitor takes: fields from its own decoders, so not re-validated (the hot path).

        ``regs`` must be a fresh dict of :data:`REGISTER_NAMES` keys (the record keeps it); everything else
        is what ``VmExit(...)`` would store, ``decoded`` included.
        """
        self = object.__new__(cls)
        self.__dict__.update(reason=reason, qualification=qualification, insn_len=insn_len, rip=rip,
                             linear_rip=linear_rip, icount=icount, guest=guest, guest_linear=guest_linear,
                             guest_physical=None, interruptibility=interruptibility, activity=activity,
                             interruption=interruption, error_code=error_code, regs=regs, failed_vmentry=False,
                             decoded=_decode_qualification(int(reason), qualification))
        return self

    @property
    def reason_field(self) -> int:
        """The 32-bit exit-reason field (bit 31 for a failed VM entry)."""
        return int(self.reason) | (1 << 31 if self.failed_vmentry else 0)

    @property
    def next_rip(self) -> int:
        """RIP after the exiting instruction (where "skip" resumes): rip + insn_len, 32-bit wrap."""
        return (self.rip + self.insn_len) & 0xFFFFFFFF

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (numbers as integers, enums by name)."""
        if self.decoded is not None:
            decoded = dict(_plain_cached(self.decoded))
        elif self.interruption is not None:
            decoded = dict(_plain_cached(self.interruption))
        else:
            decoded = None
        return {
            "icount": self.icount, "guest": self.guest, "reason": int(self.reason), "reason_name": self.reason.name,
            "failed_vmentry": self.failed_vmentry, "qualification": self.qualification, "rip": self.rip,
            "linear_rip": self.linear_rip, "insn_len": self.insn_len, "guest_linear": self.guest_linear,
            "guest_physical": self.guest_physical, "interruptibility": self.interruptibility.encode(),
            "activity": int(self.activity), "activity_name": self.activity.name,
            "interruption_info": None if self.interruption is None else self.interruption.encode(),
            "error_code": self.error_code, "decoded": decoded, "regs": dict(self.regs),
        }

    def to_json(self) -> str:
        """One compact JSON line (the ``--exits`` log format)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Union[str, bytes, Mapping[str, Any]]) -> "VmExit":
        """Rebuild a record from ``to_json`` output (a string or the parsed object)."""
        try:
            obj = json.loads(data) if isinstance(data, (str, bytes)) else dict(data)
            reason = exit_reason(obj["reason"])
            if obj.get("reason_name", reason.name) != reason.name:
                raise EmuError(f"reason_name {obj['reason_name']!r} does not match reason {int(reason)}")
            info = obj.get("interruption_info")
            record = cls(
                reason=reason, qualification=obj["qualification"], insn_len=obj["insn_len"], rip=obj["rip"],
                linear_rip=obj.get("linear_rip"), icount=obj["icount"], guest=obj["guest"],
                guest_linear=obj.get("guest_linear"), guest_physical=obj.get("guest_physical"),
                interruptibility=Interruptibility.decode(obj.get("interruptibility", 0)),
                activity=ActivityState.decode(obj.get("activity", 0)),
                interruption=None if info is None else InterruptionInfo.decode(info),
                error_code=obj.get("error_code"), regs=obj.get("regs") or {},
                failed_vmentry=bool(obj.get("failed_vmentry", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise EmuError(f"not a VM-exit record: {exc!r}") from None
        if obj.get("decoded") is not None and obj["decoded"] != record.to_dict()["decoded"]:
            raise EmuError("decoded fields do not match the qualification or interruption information")
        return record
