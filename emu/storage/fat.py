"""A read-only FAT12/16/32 volume walker (Microsoft fatgen103): it only ever calls ``source.read``.

- FAT type by cluster count (fatgen103 §3.5): < 4085 FAT12, < 65525 FAT16, else FAT32; a FAT32 BPB layout
  (BPB_FATSz16 = 0) with fewer clusters is read as FAT32 with a warning, as Linux and mtools do.
- The FAT used is FAT 0, or on FAT32 the active FAT of BPB_ExtFlags when mirroring is off (bit 7).
- Cluster chains are followed with loop, range, free/bad-cluster and cross-link detection.
- Directories are walked iteratively (no recursion); a directory reached twice is reported, not re-entered.
- Long names (fatgen103 §7) are used only when ordinals and checksums are consistent; otherwise the 8.3
  name is used and a warning names the problem.
- Dirty / hard-error flags (FAT[1]) are reported in ``dirty``, ``hard_error`` and ``notes``.
- Anomalies go into ``FatVolume.warnings`` (volume-wide) and ``Entry.warnings`` / ``Entry.error``
  (per file); only a volume that cannot be read at all raises :class:`FatError`.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
from array import array
from collections import deque
from typing import Iterator, Optional

from construct import ConstructError

from emu.storage.source import SectorSource, StorageError
from emu.storage.structs import (
    ATTR_DIRECTORY,
    ATTR_LONG_NAME,
    ATTR_LONG_NAME_MASK,
    ATTR_VOLUME_ID,
    FSI_LEADSIG,
    FSI_STRUCSIG,
    FSI_TRAILSIG,
    LAST_LONG_ENTRY,
    NTRES_LOWER_BASE,
    NTRES_LOWER_EXT,
    BootSector,
    DirEntryFast,
    FSInfo,
    LongNameEntryFast,
    decode_fat_time,
    lfn_checksum,
)

MAX_DIR_ENTRIES = 65536
"""A directory holds at most 65,536 32-byte entries (fatgen103 §6: 2 MiB); more is treated as corruption."""
MAX_DEPTH = 64
"""Directories nested deeper than this are not entered (a path would exceed the 260-character MAX_PATH)."""
READ_CHUNK_SECTORS = 8192
"""Contiguous cluster runs are read in pieces of at most 4 MiB."""


class FatError(StorageError):
    """The volume cannot be analysed at all (no valid boot sector / BPB, FAT outside the image, ...)."""


class FatType(enum.Enum):
    """FAT variant, decided by the count of data clusters (fatgen103 §3.5)."""

    FAT12 = 12
    FAT16 = 16
    FAT32 = 32


_EOC_MIN = {FatType.FAT12: 0xFF8, FatType.FAT16: 0xFFF8, FatType.FAT32: 0x0FFFFFF8}
_BAD = {FatType.FAT12: 0xFF7, FatType.FAT16: 0xFFF7, FatType.FAT32: 0x0FFFFFF7}


@dataclasses.dataclass
class Entry:
    """One file or directory found by the walk (path uses the long name when it is valid)."""

    path: str
    short_name: str
    attr: int
    size: int
    first_cluster: int
    wdate: int
    wtime: int
    cdate: int = 0
    ctime: int = 0
    ctime_tenth: int = 0
    adate: int = 0
    runs: list[tuple[int, int]] = dataclasses.field(default_factory=list, repr=False)
    """The cluster chain as (first cluster, count) runs of consecutive clusters."""
    chain_length: int = 0
    error: Optional[str] = None
    """Why the content cannot be read (None when it can)."""
    warnings: list[str] = dataclasses.field(default_factory=list)
    owner_id: int = dataclasses.field(default=0, repr=False, compare=False)
    """This entry's index in the volume's cluster-ownership table (0 until its chain is walked)."""

    @property
    def is_dir(self) -> bool:
        """True for a directory (ATTR_DIRECTORY)."""
        return bool(self.attr & ATTR_DIRECTORY)

    @property
    def write_time(self) -> str:
        """DIR_WrtDate/DIR_WrtTime as ISO 8601 (local time, as stored)."""
        return decode_fat_time(self.wdate, self.wtime)

    @property
    def name(self) -> str:
        """The last path component."""
        return self.path.rsplit("/", 1)[-1]


def _escape_name(name: str) -> tuple[str, bool]:
    """Make a name safe as a path component: '/', '\\' and control characters become \\xNN."""
    if all(c >= " " and c not in "/\\\x7f" for c in name):
        return name, False
    return "".join(f"\\x{ord(c):02x}" if (c < " " or c in "/\\\x7f") else c for c in name), True


def short_name_text(raw: bytes, ntres: int = 0) -> str:
    """The 8.3 name as shown by DOS/mtools: base '.' ext, code page 850, NT lower-case flags applied."""
    base = bytearray(raw[:8].rstrip(b" "))
    if base[:1] == b"\x05":
        base[0] = 0xE5  # fatgen103 §6: 0x05 stands for a leading 0xE5 (KANJI lead byte)
    ext = raw[8:11].rstrip(b" ")
    b = base.decode("cp850")
    e = ext.decode("cp850")
    if ntres & NTRES_LOWER_BASE:
        b = b.lower()
    if ntres & NTRES_LOWER_EXT:
        e = e.lower()
    return f"{b}.{e}" if e else b


def _assemble_lfn(slots: list[tuple[int, int, str]], checksum: int) -> tuple[Optional[str], Optional[str]]:
    """Join long-name slots (on-disk order N..1) into the name, or (None, problem) (fatgen103 §7)."""
    count = slots[0][0]
    ords = [o for o, _, _ in slots]
    if count == 0 or count > 20 or ords != list(range(count, 0, -1)):
        what = "truncated" if ords == list(range(count, count - len(ords), -1)) else "out-of-order"
        return None, f"{what} long-name slots (ordinals {ords})"
    if any(c != checksum for _, c, _ in slots):
        return None, "long-name checksum does not match the 8.3 entry"
    text = "".join(t for _, _, t in reversed(slots))
    nul = text.find("\0")
    if nul >= 0:
        text = text[:nul]
    if not text:
        return None, "empty long name"
    return text, None


class FatVolume:
    """A FAT12/16/32 file system on a sector source, analysed read-only."""

    def __init__(self, source: SectorSource) -> None:
        self.source = source
        self.warnings: list[str] = []
        """Anomalies: corruption that may hide or garble files."""
        self.notes: list[str] = []
        """Facts worth telling that are not corruption (dirty flag, small FAT32, ...)."""
        if source.sectors < 1:
            raise FatError("volume is empty (0 sectors)")
        sector0 = source.read(0, 1)
        try:
            self.boot = BootSector.parse(sector0)
        except ConstructError as exc:  # pragma: no cover - 512 bytes always parse
            raise FatError(f"boot sector unparsable: {exc}") from None
        b = self.boot
        bps = b.BPB_BytsPerSec
        if bps == 0:
            raise FatError("not a FAT volume: BPB_BytsPerSec is 0")
        if bps not in (512, 1024, 2048, 4096):
            raise FatError(f"not a FAT volume: BPB_BytsPerSec {bps} (must be 512, 1024, 2048 or 4096)")
        spc = b.BPB_SecPerClus
        if spc == 0 or spc & (spc - 1):
            raise FatError(f"not a FAT volume: BPB_SecPerClus {spc} is not a power of two")
        if b.BPB_RsvdSecCnt == 0:
            raise FatError("not a FAT volume: BPB_RsvdSecCnt is 0")
        if b.BPB_NumFATs == 0:
            raise FatError("not a FAT volume: BPB_NumFATs is 0")
        if b.Signature_word != b"\x55\xaa":
            self.warnings.append("boot sector lacks the 0x55AA signature")
        self.bytes_per_sector = bps
        self.ratio = bps // 512  # 512-byte source sectors per volume sector
        self.sectors_per_cluster = spc
        self.cluster_bytes = bps * spc
        fatsz = b.BPB_FATSz16 or b.ext.get("BPB_FATSz32", 0)
        if fatsz == 0:
            raise FatError("not a FAT volume: FAT size is 0")
        totsec = b.BPB_TotSec16 or b.BPB_TotSec32
        if totsec == 0:
            raise FatError("not a FAT volume: total sector count is 0")
        root_dir_sectors = (b.BPB_RootEntCnt * 32 + bps - 1) // bps
        self.fat_start = b.BPB_RsvdSecCnt
        self.fat_sectors = fatsz
        self.root_dir_start = b.BPB_RsvdSecCnt + b.BPB_NumFATs * fatsz
        self.root_dir_sectors = root_dir_sectors
        self.first_data_sector = self.root_dir_start + root_dir_sectors
        if self.first_data_sector >= totsec:
            raise FatError(f"BPB inconsistent: data area starts at sector {self.first_data_sector} "
                           f"but the volume has {totsec} sectors")
        self.cluster_count = (totsec - self.first_data_sector) // spc
        self.total_sectors = totsec
        if b.BPB_FATSz16 == 0:
            # FAT32 layout.  fatgen103 decides by cluster count alone, but mkfs.fat makes FAT32 volumes with
            # fewer than 65525 clusters and Linux and mtools read them as FAT32 (as the BPB layout says).
            self.fat_type = FatType.FAT32
            if self.cluster_count < 65525:
                self.notes.append(f"FAT32 volume with only {self.cluster_count} clusters "
                                     "(fatgen103 would call it FAT12/16); read as FAT32 like Linux and mtools")
        elif self.cluster_count < 4085:
            self.fat_type = FatType.FAT12
        elif self.cluster_count < 65525:
            self.fat_type = FatType.FAT16
        else:
            raise FatError(f"BPB inconsistent: FAT12/16 layout (BPB_FATSz16 {b.BPB_FATSz16}) but "
                           f"{self.cluster_count} clusters make it FAT32")
        if self.fat_type is not FatType.FAT32 and b.BPB_RootEntCnt == 0:
            raise FatError(f"BPB inconsistent: {self.fat_type.name} volume with BPB_RootEntCnt 0")
        avail = source.sectors // self.ratio
        if totsec > avail:
            self.warnings.append(f"volume claims {totsec} sectors but only {avail} are present (truncated image)")
        self.max_cluster = self.cluster_count + 1
        need_bytes = {FatType.FAT12: (self.cluster_count + 2) * 3 // 2 + 1,
                      FatType.FAT16: (self.cluster_count + 2) * 2,
                      FatType.FAT32: (self.cluster_count + 2) * 4}[self.fat_type]
        if need_bytes > fatsz * bps:
            self.warnings.append(f"FAT of {fatsz} sectors is too small for {self.cluster_count} clusters; "
                                 f"clusters it cannot describe are treated as out of range")
            per = {FatType.FAT12: 1.5, FatType.FAT16: 2, FatType.FAT32: 4}[self.fat_type]
            self.max_cluster = min(self.max_cluster, int(fatsz * bps / per) - 1)
        self.volume_id = b.ext.BS_VolID if b.ext.BS_BootSig in (0x28, 0x29) else None
        self.label = b.ext.BS_VolLab.decode("cp850").rstrip() if b.ext.BS_BootSig == 0x29 else ""
        self.active_fat = 0
        if self.fat_type is FatType.FAT32:
            ext_flags = b.ext.BPB_ExtFlags
            if ext_flags & 0x80:
                self.active_fat = ext_flags & 0x0F
                if self.active_fat >= b.BPB_NumFATs:
                    self.warnings.append(f"BPB_ExtFlags names active FAT {self.active_fat} of {b.BPB_NumFATs}; "
                                         "using FAT 0")
                    self.active_fat = 0
            rc = b.ext.BPB_RootClus
            if not 2 <= rc <= self.max_cluster:
                raise FatError(f"BPB_RootClus {rc} out of range (2..{self.max_cluster})")
        self.fat = self._load_fat()
        self.dirty, self.hard_error = self._volume_flags()
        if self.dirty:
            self.notes.append("volume is dirty (not cleanly unmounted, or mounted now)")
        if self.hard_error:
            self.notes.append("volume has the hard-error flag set (I/O errors on last mount)")
        self.fsinfo = self._read_fsinfo()
        self._entries: Optional[list[Entry]] = None
        self._owner = array("I", bytes(4 * (self.max_cluster + 1)))
        """Index in ``_owners`` of the entry each cluster was first reached from (0 = none): cross-links, loops."""
        self._owners: list[Optional[Entry]] = [None]

    # -- low-level reads -------------------------------------------------------------------------------------

    def _read_sectors(self, sector: int, count: int) -> bytes:
        """Volume sectors (BPB_BytsPerSec each) -> bytes, as a FatError when outside the image."""
        try:
            return self.source.read(sector * self.ratio, count * self.ratio)
        except StorageError:
            raise FatError(f"volume sectors {sector}+{count} lie beyond the end of the image (truncated?)") from None

    def _load_fat(self) -> "array[int] | list[int]":
        start = self.fat_start + self.active_fat * self.fat_sectors
        raw = self._read_sectors(start, self.fat_sectors) + b"\0\0"
        n = self.max_cluster + 1
        if self.fat_type is FatType.FAT32:
            a = array("I")
            a.frombytes(raw[: (len(raw) // 4) * 4])
            del a[n:]
            # FAT32 entries are 28 bits: the high 4 bits are reserved (fatgen103 §4)
            return array("I", (v & 0x0FFFFFFF for v in a)) if a and max(a) > 0x0FFFFFFF else a
        if self.fat_type is FatType.FAT16:
            a = array("H")
            a.frombytes(raw[: (len(raw) // 2) * 2])
            del a[n:]
            return a
        out = []
        for c in range(n):
            off = c + (c >> 1)
            v = raw[off] | (raw[off + 1] << 8)
            out.append(v >> 4 if c & 1 else v & 0xFFF)
        return out

    def _volume_flags(self) -> tuple[bool, bool]:
        """(dirty, hard_error) from FAT[1]: ClnShutBitMask / HrdErrBitMask (fatgen103 §4)."""
        if self.fat_type is FatType.FAT12 or len(self.fat) < 2:
            return False, False
        v = self.fat[1]
        if self.fat_type is FatType.FAT16:
            return not v & 0x8000, not v & 0x4000
        return not v & 0x08000000, not v & 0x04000000

    def _read_fsinfo(self) -> Optional[dict]:
        if self.fat_type is not FatType.FAT32:
            return None
        sec = self.boot.ext.BPB_FSInfo
        if sec in (0, 0xFFFF) or sec >= self.boot.BPB_RsvdSecCnt:
            self.warnings.append(f"FSInfo sector number {sec} is not in the reserved area")
            return None
        fs = FSInfo.parse(self._read_sectors(sec, 1))
        if (fs.FSI_LeadSig, fs.FSI_StrucSig, fs.FSI_TrailSig) != (FSI_LEADSIG, FSI_STRUCSIG, FSI_TRAILSIG):
            self.warnings.append("FSInfo signatures are wrong")
            return None
        return {"free_count": fs.FSI_Free_Count, "next_free": fs.FSI_Nxt_Free}

    def cluster_sector(self, cluster: int) -> int:
        """First volume sector of a data cluster (fatgen103 §3.5: FirstSectorofCluster)."""
        return self.first_data_sector + (cluster - 2) * self.sectors_per_cluster

    # -- chains ---------------------------------------------------------------------------------------------

    def chain(self, first: int, limit: Optional[int] = None, owner: Optional[Entry] = None,
              ) -> tuple[list[tuple[int, int]], int, Optional[str]]:
        """Follow a chain from ``first``: (runs, cluster count, error or None). Never loops, never raises.

        With ``owner``, each cluster is claimed for that entry and the walk stops at a cluster another entry
        owns (a cross-link): so the whole volume walk follows each cluster at most once.
        """
        fat = self.fat
        eoc = _EOC_MIN[self.fat_type]
        bad = _BAD[self.fat_type]
        maxc = self.max_cluster
        if not 2 <= first <= maxc:
            return [], 0, f"first cluster {first} out of range (2..{maxc})"
        if owner is not None:
            claims = self._owner
            if not owner.owner_id:
                self._owners.append(owner)
                owner.owner_id = len(self._owners) - 1
            mine = owner.owner_id
        else:
            claims = array("I", bytes(4 * (maxc + 1)))
            mine = 1
        runs: list[tuple[int, int]] = []
        run_start, run_len = first, 0
        prev = c = first
        n = 0
        err: Optional[str] = None
        cap = limit if limit is not None else maxc
        while True:
            holder = claims[c]
            if holder:
                if holder == mine:
                    err = f"cluster chain loops: cluster {prev} points back to {c}"
                else:
                    err = f"cross-linked: cluster {c} also belongs to {self._owners[holder].path or '/'}"
                break
            claims[c] = mine
            n += 1
            if c == run_start + run_len:
                run_len += 1
            else:
                runs.append((run_start, run_len))
                run_start, run_len = c, 1
            nxt = fat[c]
            if nxt >= eoc:
                break
            if n >= cap:
                err = f"cluster chain longer than {cap} clusters"
                break
            if nxt == bad:
                err = f"cluster chain reaches a bad cluster after cluster {c}"
                break
            if nxt < 2:
                err = f"cluster chain reaches a free cluster after cluster {c}"
                break
            if nxt > maxc:
                err = f"cluster chain leaves the volume: cluster {c} points to {nxt:#x}"
                break
            prev, c = c, nxt
        if run_len:
            runs.append((run_start, run_len))
        return runs, n, err

    # -- directories ----------------------------------------------------------------------------------------

    def _dir_bytes(self, runs: list[tuple[int, int]]) -> tuple[bytes, Optional[str]]:
        parts = []
        try:
            if not runs:  # FAT12/16 root directory: a fixed region after the FATs
                return self._read_sectors(self.root_dir_start, self.root_dir_sectors), None
            for start, count in runs:
                parts.append(self._read_sectors(self.cluster_sector(start), count * self.sectors_per_cluster))
        except FatError as exc:
            return b"".join(parts), str(exc)
        return b"".join(parts), None

    def entries(self) -> list[Entry]:
        """Every file and directory of the volume, in directory order, breadth first (cached)."""
        if self._entries is None:
            self._entries = list(self._walk())
        return self._entries

    def _walk(self) -> Iterator[Entry]:
        dir_limit = MAX_DIR_ENTRIES * 32 // self.cluster_bytes + 1
        root_runs: list[tuple[int, int]] = []
        if self.fat_type is FatType.FAT32:
            rc = self.boot.ext.BPB_RootClus
            root_entry = Entry("/", "", ATTR_DIRECTORY, 0, rc, 0, 0)
            root_runs, _, err = self.chain(rc, dir_limit, root_entry)
            if err:
                self.warnings.append(f"root directory: {err}")
        queue: deque[tuple[list[tuple[int, int]], str, int]] = deque([(root_runs, "", 0)])
        while queue:
            runs, path, depth = queue.popleft()
            data, err = self._dir_bytes(runs)
            if err:
                self.warnings.append(f"directory {path or '/'}: {err}")
            names: set[str] = set()
            for entry in self._parse_dir(data, path):
                key = entry.name.upper()
                if key in names:
                    entry.warnings.append("duplicate name in its directory")
                names.add(key)
                if entry.is_dir:
                    if entry.first_cluster == 0:
                        entry.error = "directory with first cluster 0"
                        yield entry
                        continue
                    holder = self._owner[entry.first_cluster] if entry.first_cluster <= self.max_cluster else 0
                    if holder:
                        entry.error = (f"directory loop: cluster {entry.first_cluster} is already "
                                       f"{self._owners[holder].path or '/'}; not entered")
                        yield entry
                        continue
                    entry.runs, entry.chain_length, cerr = self.chain(entry.first_cluster, dir_limit, entry)
                    if cerr:
                        entry.warnings.append(cerr)
                    if not entry.runs:
                        entry.error = cerr
                    elif depth + 1 >= MAX_DEPTH:
                        entry.warnings.append(f"deeper than {MAX_DEPTH} levels; not entered")
                    else:
                        queue.append((entry.runs, entry.path, depth + 1))
                else:
                    self._file_chain(entry)
                yield entry

    def _file_chain(self, entry: Entry) -> None:
        need = -(-entry.size // self.cluster_bytes)
        if entry.first_cluster == 0:
            if entry.size:
                entry.error = f"size {entry.size} but no clusters (first cluster 0)"
            return
        runs, n, err = self.chain(entry.first_cluster, owner=entry)
        entry.runs, entry.chain_length = runs, n
        if n < need:
            entry.error = f"{err} ({n} of {need} clusters)" if err else (
                f"cluster chain of {n} clusters is too short for {entry.size} bytes")
        elif err:
            entry.warnings.append(err)
        elif n > need:
            entry.warnings.append(f"cluster chain of {n} clusters is longer than {need} needed for {entry.size} bytes")
        last = max((s + c - 1 for s, c in runs), default=0)
        if last and entry.error is None and (
                (self.cluster_sector(last) + self.sectors_per_cluster) * self.ratio > self.source.sectors):
            entry.error = f"cluster {last} lies beyond the end of the image (truncated?)"

    def _parse_dir(self, data: bytes, parent: str) -> Iterator[Entry]:
        """Entries of one directory's bytes (fatgen103 §6, §7); '.'/'..', labels and deleted entries skipped."""
        lfn: list[tuple[int, int, str]] = []  # (ordinal, checksum, 13 characters) in on-disk order
        lfn_warning: Optional[str] = None
        mv = memoryview(data)
        limit = min(len(data) // 32, MAX_DIR_ENTRIES)
        for i in range(limit):
            raw = mv[i * 32:(i + 1) * 32]
            first = raw[0]                # DIR_Name[0] / LDIR_Ord: 0x00 end of directory, 0xE5 free
            if first == 0x00:
                break
            attr = raw[11]                # DIR_Attr / LDIR_Attr
            if first == 0xE5:
                if lfn:  # live slots in front of a deleted entry belong to nothing
                    lfn_warning = "orphaned long-name slots (followed by a deleted entry)"
                lfn = []
                continue
            if attr & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME:
                slot = LongNameEntryFast.parse(raw)
                ordv = slot.LDIR_Ord
                text = (slot.LDIR_Name1 + slot.LDIR_Name2 + slot.LDIR_Name3).decode("utf-16-le", "replace")
                if ordv & LAST_LONG_ENTRY:
                    if lfn:
                        lfn_warning = "orphaned long-name slots (sequence restarted)"
                    lfn = [(ordv & 0x3F, slot.LDIR_Chksum, text)]
                elif not lfn:
                    lfn_warning = f"orphaned long-name slot (ordinal {ordv}) without a first slot"
                else:
                    lfn.append((ordv, slot.LDIR_Chksum, text))
                continue
            d = DirEntryFast.parse(raw)
            name_raw = d.DIR_Name
            if attr & ATTR_VOLUME_ID and not attr & ATTR_DIRECTORY or name_raw in (b".          ", b"..         "):
                if lfn:
                    lfn_warning = "orphaned long-name slots (followed by a volume label or dot entry)"
                lfn = []
                continue
            short = short_name_text(name_raw, d.DIR_NTRes)
            long_name = None
            warnings: list[str] = []
            if lfn_warning:
                warnings.append(lfn_warning)
                lfn_warning = None
            if lfn:
                long_name, problem = _assemble_lfn(lfn, lfn_checksum(name_raw))
                if problem:
                    warnings.append(f"{problem}; using the 8.3 name {short}")
            elif warnings:
                warnings[-1] += f"; using the 8.3 name {short}"
            lfn = []
            name, escaped = _escape_name(long_name or short)
            if escaped:
                warnings.append("name contains '/', '\\' or control characters (shown escaped)")
            if not name:
                name = f"\\x{first:02x}"
            lo = d.DIR_FstClusLO
            first_cluster = (d.DIR_FstClusHI << 16 | lo) if self.fat_type is FatType.FAT32 else lo
            e = Entry(
                path=f"{parent}/{name}",
                short_name=short,
                attr=attr,
                size=d.DIR_FileSize,
                first_cluster=first_cluster,
                wdate=d.DIR_WrtDate,
                wtime=d.DIR_WrtTime,
                cdate=d.DIR_CrtDate,
                ctime=d.DIR_CrtTime,
                ctime_tenth=d.DIR_CrtTimeTenth,
                adate=d.DIR_LstAccDate,
                warnings=warnings,
            )
            if e.is_dir and e.size:
                e.warnings.append(f"directory with non-zero size {e.size}")
                e.size = 0
            yield e
        else:
            if len(data) // 32 > MAX_DIR_ENTRIES:
                self.warnings.append(f"directory {parent or '/'} has more than {MAX_DIR_ENTRIES} entries; rest ignored")

    # -- lookups and contents -------------------------------------------------------------------------------

    def find(self, path: str) -> Optional[Entry]:
        """The entry at ``path`` ('/DIR/FILE.TXT'), matched case-insensitively: all long names, all 8.3 names,
        or long names with an 8.3 last component / 8.3 directories with a long last component."""
        want = [p for p in path.replace("\\", "/").split("/") if p]
        if not want:
            return None
        index = self._index()
        return index.get("/" + "/".join(w.upper() for w in want))

    def _index(self) -> dict[str, Entry]:
        if not hasattr(self, "_by_path"):
            by_path: dict[str, Entry] = {}
            alias: dict[str, str] = {}  # upper path -> upper short-name path of its parent chain
            for e in self.entries():
                parent, _, leaf = e.path.rpartition("/")
                up = e.path.upper()
                parent_short = alias.get(parent.upper(), parent.upper())
                by_path.setdefault(up, e)
                short_path = f"{parent_short}/{e.short_name.upper()}"
                alias[up] = short_path
                by_path.setdefault(short_path, e)
                if parent_short != parent.upper():
                    by_path.setdefault(f"{parent_short}/{leaf.upper()}", e)
                by_path.setdefault(f"{parent.upper()}/{e.short_name.upper()}", e)
            self._by_path = by_path
        return self._by_path

    def iter_content(self, entry: Entry) -> Iterator[bytes]:
        """The file's bytes, streamed in pieces of up to 4 MiB along its cluster runs; FatError if unreadable."""
        if entry.error:
            raise FatError(f"{entry.path}: {entry.error}")
        if entry.is_dir:
            raise FatError(f"{entry.path}: is a directory")
        remaining = entry.size
        spc = self.sectors_per_cluster
        max_clusters = max(1, READ_CHUNK_SECTORS // (spc * self.ratio))
        for start, count in entry.runs:
            while count and remaining > 0:
                n = min(count, max_clusters, -(-remaining // self.cluster_bytes))
                data = self._read_sectors(self.cluster_sector(start), n * spc)
                if len(data) > remaining:
                    data = data[:remaining]
                remaining -= len(data)
                yield data
                start += n
                count -= n
            if remaining <= 0:
                break

    def read_file(self, entry: Entry) -> bytes:
        """The whole content of a file."""
        return b"".join(self.iter_content(entry))

    def sha256(self, entry: Entry) -> str:
        """SHA-256 of the file's content, hex (streamed)."""
        h = hashlib.sha256()
        for chunk in self.iter_content(entry):
            h.update(chunk)
        return h.hexdigest()
