"""On-disk structures in construct 2.10: the legacy MBR / EBR, the FAT boot sector and BPB, FSInfo, directory entries.

Field names are the specifications' own:
- MBR and partition records: UEFI Specification 2.10, §5.2.1 "Legacy Master Boot Record" (tables 5-1, 5-2).
- Boot sector, BPB, FSInfo, directory and long-name entries: Microsoft "FAT: General Overview of On-Disk
  Format" v1.03 (fatgen103), §3 (BPB, BS_ fields), §5 (FSInfo), §6 (directory entry), §7 (long names).
All integers are little-endian (the old construct gallery MBR read the LBA fields big-endian; see the tests).
"""
from __future__ import annotations

from construct import (
    Array,
    Bytes,
    Const,
    IfThenElse,
    Int8ul,
    Int16ul,
    Int32ul,
    Pointer,
    Struct,
    this,
)

SECTOR_SIZE = 512

# --- MBR (UEFI 2.10 §5.2.1) -------------------------------------------------------------------------

PartitionRecord = Struct(
    "BootIndicator" / Int8ul,   # 0x80 = bootable ("active"), 0x00 = not; other values are invalid
    "StartingCHS" / Bytes(3),
    "OSType" / Int8ul,          # partition type; 0 = unused, 0x05/0x0F/0x85 = extended
    "EndingCHS" / Bytes(3),
    "StartingLBA" / Int32ul,
    "SizeInLBA" / Int32ul,
)
"""One 16-byte partition record of an MBR or EBR (UEFI 2.10 table 5-2)."""

MasterBootRecord = Struct(
    "BootCode" / Bytes(440),
    "UniqueMBRDiskSignature" / Bytes(4),
    "Unknown" / Bytes(2),
    "PartitionRecord" / Array(4, PartitionRecord),   # at offset 0x1BE
    "Signature" / Bytes(2),                          # 0x55 0xAA at offset 510
)
"""The legacy MBR, also the layout of every EBR of an extended partition (UEFI 2.10 table 5-1)."""

ExtendedBootRecord = MasterBootRecord
"""An EBR (first sector of each logical partition's area): the MBR layout, only records 0 and 1 used; record 0
is the logical partition relative to this EBR, record 1 the next EBR relative to the extended partition."""

MBR_SIGNATURE = b"\x55\xaa"
EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
"""OSType values of extended partitions (CHS 0x05, LBA 0x0F, Linux 0x85) whose EBRs chain logical partitions."""
FAT_TYPES = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0x11, 0x14, 0x16, 0x1B, 0x1C, 0x1E})
"""OSType values of FAT partitions (and their 'hidden' 0x1x variants)."""

# --- Boot sector and BPB (fatgen103 §3) ---------------------------------------------------------------

Fat16Extension = Struct(
    "BS_DrvNum" / Int8ul,
    "BS_Reserved1" / Int8ul,
    "BS_BootSig" / Int8ul,      # 0x29: the next three fields are present
    "BS_VolID" / Int32ul,
    "BS_VolLab" / Bytes(11),
    "BS_FilSysType" / Bytes(8),
)
"""The BPB tail of FAT12/FAT16 volumes, at offset 36 (fatgen103 §3.2)."""

Fat32Extension = Struct(
    "BPB_FATSz32" / Int32ul,
    "BPB_ExtFlags" / Int16ul,   # bits 3:0 active FAT, bit 7 = 1: mirroring off, only the active FAT is used
    "BPB_FSVer" / Int16ul,
    "BPB_RootClus" / Int32ul,
    "BPB_FSInfo" / Int16ul,
    "BPB_BkBootSec" / Int16ul,
    "BPB_Reserved" / Bytes(12),
    "BS_DrvNum" / Int8ul,
    "BS_Reserved1" / Int8ul,
    "BS_BootSig" / Int8ul,
    "BS_VolID" / Int32ul,
    "BS_VolLab" / Bytes(11),
    "BS_FilSysType" / Bytes(8),
)
"""The BPB tail of FAT32 volumes, at offset 36 (fatgen103 §3.3)."""

BootSector = Struct(
    "BS_jmpBoot" / Bytes(3),
    "BS_OEMName" / Bytes(8),
    "BPB_BytsPerSec" / Int16ul,
    "BPB_SecPerClus" / Int8ul,
    "BPB_RsvdSecCnt" / Int16ul,
    "BPB_NumFATs" / Int8ul,
    "BPB_RootEntCnt" / Int16ul,
    "BPB_TotSec16" / Int16ul,
    "BPB_Media" / Int8ul,
    "BPB_FATSz16" / Int16ul,
    "BPB_SecPerTrk" / Int16ul,
    "BPB_NumHeads" / Int16ul,
    "BPB_HiddSec" / Int32ul,
    "BPB_TotSec32" / Int32ul,
    # A FAT32 volume has BPB_FATSz16 == 0 and the FAT32 layout at offset 36 (fatgen103 §3.3).
    "ext" / IfThenElse(this.BPB_FATSz16 == 0, Fat32Extension, Fat16Extension),
    "Signature_word" / Pointer(510, Bytes(2)),
)
"""Sector 0 of a FAT volume: jump, OEM name, BPB and the FAT12/16 or FAT32 extension (fatgen103 §3)."""

FSInfo = Struct(
    "FSI_LeadSig" / Int32ul,        # 0x41615252
    "FSI_Reserved1" / Bytes(480),
    "FSI_StrucSig" / Int32ul,       # 0x61417272
    "FSI_Free_Count" / Int32ul,     # 0xFFFFFFFF = unknown
    "FSI_Nxt_Free" / Int32ul,
    "FSI_Reserved2" / Bytes(12),
    "FSI_TrailSig" / Int32ul,       # 0xAA550000
)
"""The FAT32 FSInfo sector (fatgen103 §5)."""

FSI_LEADSIG = 0x41615252
FSI_STRUCSIG = 0x61417272
FSI_TRAILSIG = 0xAA550000

# --- Directory entries (fatgen103 §6, §7) -------------------------------------------------------------

DirEntry = Struct(
    "DIR_Name" / Bytes(11),
    "DIR_Attr" / Int8ul,
    "DIR_NTRes" / Int8ul,           # Windows NT: 0x08 base name lower case, 0x10 extension lower case
    "DIR_CrtTimeTenth" / Int8ul,
    "DIR_CrtTime" / Int16ul,
    "DIR_CrtDate" / Int16ul,
    "DIR_LstAccDate" / Int16ul,
    "DIR_FstClusHI" / Int16ul,
    "DIR_WrtTime" / Int16ul,
    "DIR_WrtDate" / Int16ul,
    "DIR_FstClusLO" / Int16ul,
    "DIR_FileSize" / Int32ul,
)
"""A 32-byte short (8.3) directory entry (fatgen103 §6)."""

LongNameEntry = Struct(
    "LDIR_Ord" / Int8ul,            # sequence number; 0x40 (LAST_LONG_ENTRY) marks the last (first stored) slot
    "LDIR_Name1" / Bytes(10),       # characters 1-5 (UTF-16LE)
    "LDIR_Attr" / Int8ul,           # ATTR_LONG_NAME under ATTR_LONG_NAME_MASK (the upper two bits are ignored)
    "LDIR_Type" / Int8ul,
    "LDIR_Chksum" / Int8ul,         # checksum of the 11-byte short name that follows
    "LDIR_Name2" / Bytes(12),       # characters 6-11
    "LDIR_FstClusLO" / Int16ul,     # must be 0
    "LDIR_Name3" / Bytes(4),        # characters 12-13
)
"""A 32-byte long-file-name slot (fatgen103 §7)."""

ATTR_READ_ONLY = 0x01
ATTR_HIDDEN = 0x02
ATTR_SYSTEM = 0x04
ATTR_VOLUME_ID = 0x08
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LONG_NAME = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID
ATTR_LONG_NAME_MASK = ATTR_LONG_NAME | ATTR_DIRECTORY | ATTR_ARCHIVE
LAST_LONG_ENTRY = 0x40
DIR_ENTRY_SIZE = 32
LFN_CHARS_PER_SLOT = 13

NTRES_LOWER_BASE = 0x08
NTRES_LOWER_EXT = 0x10

# Compiled parsers: the same definitions generated into Python code, used by the directory walker (fat.py).
DirEntryFast = DirEntry.compile()
LongNameEntryFast = LongNameEntry.compile()


def lfn_checksum(short_name: bytes) -> int:
    """ChkSum() of fatgen103 §7: rotate right by one and add, over the 11 bytes of DIR_Name."""
    s = 0
    for b in short_name:
        s = (((s & 1) << 7) + (s >> 1) + b) & 0xFF
    return s


def attr_string(attr: int) -> str:
    """The attribute byte as mtools' `mattrib` letters-ish: R H S V D A (a '-' for each clear bit)."""
    return "".join(c if attr & bit else "-" for c, bit in zip("RHSVDA", (1, 2, 4, 8, 16, 32)))


def decode_fat_time(date: int, time: int, tenth: int = 0) -> str:
    """A FAT date/time pair (fatgen103 §6 'Date and Time Formats') as ISO 8601 local time, or '' when zero."""
    if date == 0 and time == 0:
        return ""
    year = 1980 + (date >> 9)
    month = (date >> 5) & 0x0F
    day = date & 0x1F
    hour = time >> 11
    minute = (time >> 5) & 0x3F
    second = (time & 0x1F) * 2 + tenth // 100
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
