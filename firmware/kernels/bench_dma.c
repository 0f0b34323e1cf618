/* bench_dma: reads the primary master (up to 16 MiB) by READ DMA (LBA28) in 128 KiB commands (two 64 KiB PRDs), waiting
 * for each with sti/hlt on IRQ 14, and prints the sector count and a digest. tools/bench_disk.py times it on a
 * 16 MiB disk (MiB of guest data per host second); on the 1 MiB reference disk it is compared with QEMU. */
#include "bench_common.h"

#define PRD_TABLE ((volatile struct prd *)0x300000)
#define BUF ((uint8_t *)0x400000)       /* 128 KiB */

static volatile uint32_t irqs;
static volatile uint8_t ata_at_irq;

static void on_irq14(struct regs *r)
{
    (void)r;
    irqs++;
    ata_at_irq = inb(ATA_STATUS);
    outb(0xA0, 0x20);
    outb(0x20, 0x20);
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    pic_remap(0x20, 0x28);
    set_handler(0x28 + 6, on_irq14);
    uint32_t total = bench_sectors();
    if (!total) {
        printf("bench_dma: no disk on the primary master\n");
        exit(1);
    }
    pic_remap(0x20, 0x28);              /* forget IDENTIFY's IRQ 14 edge */
    uint16_t bm = (uint16_t)(pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4) & 0xFFFC);
    uint16_t command = pci_read16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND);
    pci_write16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND, (uint16_t)(command | PCI_CMD_BUS_MASTER));
    outl((uint16_t)(bm + BMIDTP), (uint32_t)PRD_TABLE);
    pic_unmask(14);
    uint32_t h = 2166136261u, commands = 0, errors = 0;
    for (uint32_t lba = 0; lba < total; lba += BENCH_CHUNK) {
        uint32_t n = total - lba < BENCH_CHUNK ? total - lba : BENCH_CHUNK;
        uint32_t bytes = n * 512;
        PRD_TABLE[0].base = (uint32_t)BUF;
        PRD_TABLE[0].count = bytes > 0x10000 ? 0 : (bytes & 0xFFFF) | PRD_EOT;
        PRD_TABLE[1].base = (uint32_t)BUF + 0x10000;
        PRD_TABLE[1].count = ((bytes - 0x10000) & 0xFFFF) | PRD_EOT;
        uint32_t before = irqs;
        ata_lba28(lba, (uint8_t)n);             /* count 256 is written as 0 */
        outb(ATA_COMMAND, ATA_CMD_READ_DMA);
        outb((uint16_t)(bm + BMICOM), BMICOM_SSBM | BMICOM_RWCON);
        for (uint32_t i = 0; irqs == before && i < 100000; i++) {
            sti_hlt();
            cli();
        }
        uint8_t s = inb((uint16_t)(bm + BMISTA));
        outb((uint16_t)(bm + BMICOM), BMICOM_RWCON);
        outb((uint16_t)(bm + BMISTA), (uint8_t)((s & 0x60) | BMISTA_ERROR | BMISTA_INTERRUPT));
        if ((s & 0x07) != BMISTA_INTERRUPT || ata_at_irq != 0x50) {
            if (!errors)
                printf("bench_dma: first error at lba %u: bmista %02x, ata at irq %02x\n", lba, s, ata_at_irq);
            errors++;
        }
        h = bench_digest(h, BUF, n);
        commands++;
    }
    printf("bench_dma: %u sectors in %u READ DMA commands, %u errors, digest %08x\n", total, commands, errors, h);
    exit(0);
}
