"""Read trace files: ``TraceReader(path).header``, iterate events, filter by kind / guest / icount range.

Every problem with the file is one :class:`emu.trace.format.TraceError` line naming
the file: bad magic, unsupported version, a corrupted stream (gzip CRC or
length mismatch, a record that is not JSON), a truncated stream (the gzip
trailer or the ``end`` record is missing).
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

from emu.trace.format import FORMAT_VERSION, MAX_MAGIC_LINE, Kind, TraceError, parse_magic

HEADER_KEYS = ("format", "emu_version", "inputs", "guests", "config")


@dataclass(frozen=True)
class Filter:
    """Which events to keep: kinds (None = all), guest (None = all), icount range [start, stop] inclusive."""

    kinds: Optional[frozenset[str]] = None
    guest: Optional[str] = None
    start: Optional[int] = None
    stop: Optional[int] = None

    def keep(self, record: dict) -> bool:
        """True when ``record`` passes the filter."""
        if self.kinds is not None and record.get("kind") not in self.kinds:
            return False
        if self.guest is not None and record.get("guest") != self.guest:
            return False
        icount = record.get("icount", 0)
        if self.start is not None and icount < self.start:
            return False
        if self.stop is not None and icount > self.stop:
            return False
        return True


class TraceReader:
    """A trace file: the header at once, the events streamed on each iteration."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._file = os.path.abspath(self.path)     # a replay may change the working directory while streaming
        self.size = 0
        records = self._records()
        try:
            header = next(records)
        except StopIteration:
            raise TraceError(f"{self.path}: truncated trace (no header record)") from None
        finally:
            records.close()
        if not isinstance(header, dict) or any(k not in header for k in HEADER_KEYS):
            raise TraceError(f"{self.path}: corrupted trace (the first record is not a trace header)")
        if header["format"] != FORMAT_VERSION:
            raise TraceError(f"{self.path}: header says format {header['format']!r}, magic says {FORMAT_VERSION}")
        self.header: dict = header

    # --- low level ------------------------------------------------------------------
    def _open(self):
        try:
            f = open(self._file, "rb")
        except FileNotFoundError:
            raise TraceError(f"{self.path}: no such trace file") from None
        except IsADirectoryError:
            raise TraceError(f"{self.path}: is a directory, not a trace file") from None
        except OSError as exc:
            raise TraceError(f"{self.path}: cannot read ({exc.strerror})") from None
        self.size = os.fstat(f.fileno()).st_size
        return f

    def _records(self) -> Iterator[dict]:
        """Every record, header first, with stream errors turned into TraceError."""
        with self._open() as f:
            parse_magic(f.readline(MAX_MAGIC_LINE), self.path)
            gz = gzip.GzipFile(fileobj=f, mode="rb")
            line_no = 1
            try:
                for line in gz:
                    line_no += 1
                    if not line.endswith(b"\n"):
                        raise TraceError(f"{self.path}: truncated trace (record {line_no - 1} is incomplete)")
                    try:
                        record = json.loads(line)
                    except ValueError:
                        raise TraceError(f"{self.path}: corrupted trace (record {line_no - 1} is not JSON)") from None
                    if not isinstance(record, dict):
                        raise TraceError(f"{self.path}: corrupted trace (record {line_no - 1} is not an object)")
                    yield record
            except EOFError:
                raise TraceError(f"{self.path}: truncated trace (the compressed stream ends early, after "
                                 f"{line_no - 1} records)") from None
            except gzip.BadGzipFile as exc:
                raise TraceError(f"{self.path}: corrupted trace ({_gzip_reason(exc)})") from None
            except zlib.error as exc:
                raise TraceError(f"{self.path}: corrupted trace (compressed data is damaged: {exc})") from None
            except OSError as exc:
                raise TraceError(f"{self.path}: cannot read ({exc})") from None

    # --- events -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        """Every event record (after the header), checking that the trace ends with its ``end`` record."""
        return self.events()

    def events(self, kinds: Optional[Iterable[str]] = None, guest: Optional[str] = None,
               start: Optional[int] = None, stop: Optional[int] = None) -> Iterator[dict]:
        """Event records passing the filter; the whole stream is still read and checked."""
        flt = Filter(None if kinds is None else frozenset(kinds), guest, start, stop)
        records = self._records()
        next(records)
        last: Optional[dict] = None
        count = 0
        for record in records:
            if last is not None and last.get("kind") == Kind.END.value:
                raise TraceError(f"{self.path}: corrupted trace (records after the end record)")
            if "kind" not in record or "icount" not in record or "guest" not in record:
                raise TraceError(f"{self.path}: corrupted trace (event {count + 1} lacks kind/icount/guest)")
            count += 1
            last = record
            if flt.keep(record):
                yield record
        if last is None or last.get("kind") != Kind.END.value:
            raise TraceError(f"{self.path}: truncated trace (no end record after {count} events)")
        if last.get("events") != count:
            raise TraceError(f"{self.path}: corrupted trace (the end record counts {last.get('events')} events, "
                             f"the file holds {count})")

    def end(self) -> dict:
        """The ``end`` record (reads the whole file)."""
        last: dict = {}
        for record in self.events(kinds=(Kind.END.value,)):
            last = record
        return last

    def check(self) -> int:
        """Read the whole file; the number of events (raises TraceError on any damage)."""
        return sum(1 for _ in self.events())

    def counts(self) -> Counter:
        """Events per kind (reads the whole file)."""
        return Counter(r["kind"] for r in self.events())


def _gzip_reason(exc: Exception) -> str:
    text = str(exc)
    if "CRC" in text:
        return "CRC check failed"
    if "length" in text.lower():
        return "length check failed"
    if "Not a gzipped" in text:
        return "the compressed stream has a bad header or trailing garbage"
    return text
