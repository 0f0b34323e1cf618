"""Stream trace records to a file while the guest runs (format: :mod:`emu.trace.format`)."""
from __future__ import annotations

import gzip
import os
from typing import Optional

from emu.trace.format import COMPRESSLEVEL, MAGIC, TraceError, encode

FLUSH_BYTES = 1 << 16
"""Encoded records are handed to the compressor in chunks of about this many bytes."""


class TraceWriter:
    """Write the magic line, the header record, then event records; :meth:`close` ends the gzip stream."""

    def __init__(self, path: str | os.PathLike[str], header: dict):
        self.path = os.fspath(path)
        try:
            self._file = open(self.path, "wb")
        except OSError as exc:
            raise TraceError(f"cannot write trace {self.path}: {exc.strerror}") from None
        self._file.write(MAGIC)
        # filename="" and mtime=0: the gzip header holds no name and no time (byte-identical files).
        self._gz: Optional[gzip.GzipFile] = gzip.GzipFile(filename="", mode="wb", fileobj=self._file,
                                                          compresslevel=COMPRESSLEVEL, mtime=0)
        self._buf = bytearray()
        self.records = 0
        self.raw_bytes = 0
        self.write(header, check=True)

    def write(self, record: dict, check: bool = False) -> None:
        """Append one record (``check`` validates that it holds only JSON integers, strings, ... )."""
        line = encode(record, check)
        self._buf += line
        self.records += 1
        self.raw_bytes += len(line)
        if len(self._buf) >= FLUSH_BYTES:
            self._drain()

    def write_line(self, line: bytes) -> None:
        """Append one record already encoded by :func:`emu.trace.format.encode` (or an equivalent fast path)."""
        self._buf += line
        self.records += 1
        self.raw_bytes += len(line)
        if len(self._buf) >= FLUSH_BYTES:
            self._drain()

    def _drain(self) -> None:
        if self._gz is None:
            raise TraceError(f"trace {self.path} is closed")
        self._gz.write(self._buf)
        self._buf.clear()

    def close(self) -> None:
        """Finish the gzip stream (CRC and length trailer) and close the file."""
        if self._gz is None:
            return
        self._drain()
        self._gz.close()
        self._gz = None
        self._file.close()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
