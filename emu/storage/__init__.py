"""Read-only disk analysis: sector sources, disk images, MBR/EBR and FAT12/16/32 (see docs/storage.md)."""
