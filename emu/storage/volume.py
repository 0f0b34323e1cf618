"""Open the FAT volume of a disk: choose the partition (emu.storage.mbr), then read its file system."""
from __future__ import annotations

import dataclasses
from typing import Optional

from emu.storage.fat import FatVolume
from emu.storage.mbr import Partition, PartitionTable, select_volume
from emu.storage.source import SectorSource


@dataclasses.dataclass
class OpenedVolume:
    """A FAT volume and where it came from on the disk."""

    fs: FatVolume
    partition: Optional[Partition]
    table: PartitionTable

    @property
    def warnings(self) -> list[str]:
        """Partition-table and volume-wide anomalies."""
        return self.table.warnings + self.fs.warnings

    def describe(self) -> dict:
        """JSON-ready summary: partition, FAT type, label, volume id, geometry, flags."""
        fs = self.fs
        return {
            "partition": self.partition.to_json() if self.partition else None,
            "fat_type": fs.fat_type.name,
            "label": fs.label,
            "volume_id": f"{fs.volume_id:08X}" if fs.volume_id is not None else None,
            "bytes_per_sector": fs.bytes_per_sector,
            "sectors_per_cluster": fs.sectors_per_cluster,
            "clusters": fs.cluster_count,
            "active_fat": fs.active_fat,
            "dirty": fs.dirty,
            "hard_error": fs.hard_error,
            "notes": list(fs.notes),
        }


def open_volume(source: SectorSource, partition: Optional[int] = None) -> OpenedVolume:
    """The FAT volume in partition N (default: first FAT partition, or the whole disk without an MBR)."""
    vol_source, part, table = select_volume(source, partition)
    return OpenedVolume(FatVolume(vol_source), part, table)
