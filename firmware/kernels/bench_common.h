/* Shared part of the disk benchmark kernels bench_dma and bench_pio (tools/bench_disk.py): the primary master's
 * capacity from IDENTIFY (ATA-6 words 100-103), capped at 16 MiB, and a digest of what was read: FNV-1a-style over
 * two dwords of every sector (offset 24, where a reference-disk sector spells its number, and offset 508), cheap
 * enough that the guest's own work does not dominate the measured time. */
#ifndef FW_KERNELS_BENCH_COMMON_H
#define FW_KERNELS_BENCH_COMMON_H
#include "fw.h"
#include "ata.h"
#include "util.h"

#define BENCH_MAX_SECTORS 32768u        /* 16 MiB */
#define BENCH_CHUNK 256u                /* sectors per command: 128 KiB */

static uint16_t bench_ident[256];

/* Sectors to read: the disk's capacity, at most 16 MiB; 0 when there is no disk. */
static inline uint32_t bench_sectors(void)
{
    if (!ata_select_master())
        return 0;
    outb(ATA_CONTROL, 0);
    outb(ATA_COMMAND, ATA_CMD_IDENTIFY);
    if (!(ata_wait_drq() & ATA_DRQ))
        return 0;
    insw(ATA_DATA, bench_ident, 256);
    (void)inb(ATA_STATUS);
    uint32_t n = bench_ident[100] | ((uint32_t)bench_ident[101] << 16);
    if (bench_ident[102] || bench_ident[103] || n > BENCH_MAX_SECTORS)
        n = BENCH_MAX_SECTORS;
    return n;
}

static inline uint32_t bench_digest(uint32_t h, const uint8_t *buf, uint32_t sectors)
{
    for (uint32_t s = 0; s < sectors; s++) {
        const uint32_t *w = (const uint32_t *)(buf + s * 512);
        h = (h ^ w[6]) * 16777619u;
        h = (h ^ w[127]) * 16777619u;
    }
    return h;
}

#endif
