"""The C instruction counter (``_icount.c``): built once per source version, loaded with ctypes.

The shared object is compiled on first use with the system C compiler into a
cache directory (``$EMU_CACHE_DIR``, else ``$XDG_CACHE_HOME/emu``, else
``~/.cache/emu``), keyed by the SHA-256 of the source, so an editable install
and a wheel behave the same.  Its hooks are registered with the raw
``uc_hook_add`` so no Python runs per translated block.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE
from unicorn.unicorn_py3.unicorn import uclib

from emu import EmuError

SOURCE = Path(__file__).with_name("_icount.c")


class IcountState(ctypes.Structure):
    """Mirror of ``struct icount_state``'s leading fields in ``_icount.c``."""

    _fields_ = [
        ("count", ctypes.c_uint64),
        ("deadline", ctypes.c_uint64),
        ("block_addr", ctypes.c_uint64),
        ("block_entry", ctypes.c_uint64),
        ("block_size", ctypes.c_uint32),
        ("block_icount", ctypes.c_uint32),
        ("deadline_hit", ctypes.c_uint32),
        ("stop_flag", ctypes.c_uint32),
        ("blocks", ctypes.c_uint64),
        ("misses", ctypes.c_uint64),
        ("rescan", ctypes.c_uint32),
        ("pending_stop", ctypes.c_uint32),
    ]


NEW_BLOCK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint64, ctypes.c_uint32)


def _cache_dir() -> Path:
    if os.environ.get("EMU_CACHE_DIR"):
        return Path(os.environ["EMU_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "emu"


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The compiled counter library (compiling it first if needed)."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = _cache_dir() / f"icount-{digest}.so"
    if not target.exists():
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise EmuError("no C compiler found (cc/gcc): it is needed once to build emu's instruction counter")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(SOURCE)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                first = (proc.stderr.strip().splitlines() or ["unknown error"])[0]
                raise EmuError(f"building the instruction counter failed: {first}")
            os.replace(out, target)
    lib = ctypes.CDLL(str(target))
    lib.icount_new.restype = ctypes.c_void_p
    lib.icount_new.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.icount_free.argtypes = [ctypes.c_void_p]
    lib.icount_flush.argtypes = [ctypes.c_void_p]
    lib.icount_learn.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32]
    lib.icount_state_size.restype = ctypes.c_size_t
    lib.icount_set_new_block.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return lib


def _fnptr(fn) -> int:
    return ctypes.cast(fn, ctypes.c_void_p).value


class Counter:
    """One vCPU's exact instruction counter: C hooks plus the shared state they update."""

    def __init__(self, uc) -> None:
        lib = library()
        self._lib = lib
        self._ptr = lib.icount_new(_fnptr(uclib.uc_ctl), _fnptr(uclib.uc_emu_stop))
        if not self._ptr:
            raise MemoryError("icount_new failed")
        self.state = IcountState.from_address(self._ptr)
        self._hooks = []
        for kind, fn in ((UC_HOOK_BLOCK, lib.icount_block_hook),):
            handle = ctypes.c_size_t()
            err = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), kind, ctypes.c_void_p(_fnptr(fn)),
                                    ctypes.c_void_p(self._ptr), ctypes.c_uint64(1), ctypes.c_uint64(0))
            if err != 0:
                raise EmuError(f"unicorn refused the instruction-counter hook (error {err})")
            self._hooks.append(handle)

    def on_new_block(self, callback) -> None:
        """Call ``callback(addr, size) -> bool`` for each block seen first; True stops before it runs."""
        self._new_block = NEW_BLOCK(callback)
        self._lib.icount_set_new_block(self._ptr, ctypes.cast(self._new_block, ctypes.c_void_p))

    def add_stop_check(self, uc, addr: int, end: int | None = None) -> ctypes.c_size_t:
        """A C code hook on [addr, end] (default: addr only) that honours ``pending_stop`` (see _icount.c)."""
        handle = ctypes.c_size_t()
        err = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_CODE,
                                ctypes.c_void_p(_fnptr(self._lib.icount_stop_check_hook)),
                                ctypes.c_void_p(self._ptr), ctypes.c_uint64(addr),
                                ctypes.c_uint64(addr if end is None else end))
        if err != 0:
            raise EmuError(f"unicorn refused a stop-check hook (error {err})")
        return handle

    def learn(self, addr: int, size: int, icount: int) -> None:
        """Record that the block at ``addr`` of ``size`` bytes holds ``icount`` instructions."""
        self._lib.icount_learn(self._ptr, addr, size, icount)

    def flush(self) -> None:
        """Forget cached block sizes (self-modifying code, cache flush)."""
        self._lib.icount_flush(self._ptr)

    def __del__(self) -> None:
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr:
            self._lib.icount_free(ptr)
