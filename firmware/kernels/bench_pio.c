/* bench_pio: reads the primary master (up to 16 MiB) by READ MULTIPLE EXT (SET MULTIPLE 16) in 128 KiB commands,
 * each 8 KiB block with `rep insl` after polling the alternate status (nIEN set, no IRQs), and prints the sector count
 * and a digest. tools/bench_disk.py times it (MiB of guest data per host second); on the 1 MiB reference disk it is
 * compared with QEMU. */
#include "bench_common.h"

#define BUF ((uint8_t *)0x400000)       /* 128 KiB */
#define ATA_CMD_READ_MULTIPLE_EXT 0x29

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    pic_remap(0x20, 0x28);
    uint32_t total = bench_sectors();
    if (!total) {
        printf("bench_pio: no disk on the primary master\n");
        exit(1);
    }
    outb(ATA_CONTROL, ATA_NIEN);
    outb(ATA_COUNT, 16);
    outb(ATA_COMMAND, ATA_CMD_SET_MULTIPLE);
    ata_wait_not_busy();
    uint32_t h = 2166136261u, commands = 0, errors = 0;
    for (uint32_t lba = 0; lba < total; lba += BENCH_CHUNK) {
        uint32_t n = total - lba < BENCH_CHUNK ? total - lba : BENCH_CHUNK;
        ata_lba48(lba, 0, (uint16_t)n);
        outb(ATA_COMMAND, ATA_CMD_READ_MULTIPLE_EXT);
        for (uint32_t done = 0; done < n; done += 16) {
            if (!(ata_wait_drq() & ATA_DRQ)) {
                errors++;
                break;
            }
            uint32_t k = n - done < 16 ? n - done : 16;
            insl(ATA_DATA, BUF + done * 512, k * 128);
        }
        if (ata_wait_not_busy() != 0x50)
            errors++;
        h = bench_digest(h, BUF, n);
        commands++;
    }
    printf("bench_pio: %u sectors in %u READ MULTIPLE EXT commands, %u errors, digest %08x\n", total, commands, errors,
           h);
    exit(0);
}
