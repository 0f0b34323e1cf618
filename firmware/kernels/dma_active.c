/* dma_active: emu-only (under QEMU a DMA request usually completes on the host before the guest's next IN, so
 * whether the guest sees BMISTA Active during a transfer is a race there: observed in 2 runs of 12). emu paces DMA in
 * guest instructions, so the guest sees Active set while a long transfer is in flight, at the same instruction
 * count on every run (tests/test_devices_system.py). Writes 256 KiB at LBA 512 by WRITE DMA EXT, then reads the whole
 * first MiB back by READ DMA EXT, polling BMISTA during each; needs a disk of at least 1 MiB on the primary master. */
#include "fw.h"
#include "ata.h"
#include "util.h"

#define PRD_TABLE ((volatile struct prd *)0x300000)
#define BUF_W ((uint8_t *)0x400000)     /* 256 KiB */
#define BUF_R ((uint8_t *)0x800000)     /* 1 MiB */

static uint16_t bm;

static uint8_t bmis(void) { return inb((uint16_t)(bm + BMISTA)); }

/* One LBA48 DMA of `sectors` through 64 KiB PRDs at `b`, BMISTA polled until the transfer is over. */
static void long_dma(uint8_t cmd, uint8_t *b, uint32_t lba, uint32_t sectors)
{
    int to_memory = cmd == ATA_CMD_READ_DMA_EXT;
    uint32_t n = (sectors * 512 + 0xFFFF) / 0x10000;
    for (uint32_t i = 0; i < n; i++) {
        PRD_TABLE[i].base = (uint32_t)(b + i * 0x10000);
        PRD_TABLE[i].count = ((sectors * 512 - i * 0x10000) & 0xFFFF) | (i == n - 1 ? PRD_EOT : 0);
    }
    outb((uint16_t)(bm + BMISTA), (uint8_t)((bmis() & 0x60) | BMISTA_ERROR | BMISTA_INTERRUPT));
    outl((uint16_t)(bm + BMIDTP), (uint32_t)PRD_TABLE);
    uint32_t before = ata_irq14_count, seen = 0, polls = 0;
    ata_lba48(lba, 0, (uint16_t)sectors);
    outb(ATA_COMMAND, cmd);
    outb((uint16_t)(bm + BMICOM), (uint8_t)(BMICOM_SSBM | (to_memory ? BMICOM_RWCON : 0)));
    uint8_t s;
    do {
        s = bmis();
        if ((s & (BMISTA_ACTIVE | BMISTA_INTERRUPT)) == BMISTA_ACTIVE)
            seen++;
        spin(20);
    } while ((s & BMISTA_ACTIVE) && !(s & BMISTA_INTERRUPT) && ++polls < ATA_POLL_LIMIT);
    printf("%s lba %u x%u: seen active: %s\n", to_memory ? "READ DMA EXT" : "WRITE DMA EXT", lba, sectors,
           seen ? "yes" : "no");
    for (uint32_t i = 0; ata_irq14_count == before && i < 100000; i++) {
        sti_hlt();
        cli();
    }
    uint8_t done = bmis();
    outb((uint16_t)(bm + BMICOM), to_memory ? BMICOM_RWCON : 0);
    printf("  irqs %u, bmista %02x, ata %02x\n", ata_irq14_count - before, done, inb(ATA_STATUS));
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("dma_active: BMISTA Active seen by the guest during long DMA transfers\n");
    pic_remap(0x20, 0x28);
    set_handler(0x28 + 6, ata_irq14_counter);
    bm = (uint16_t)(pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4) & 0xFFFC);
    uint16_t command = pci_read16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND);
    pci_write16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND, (uint16_t)(command | PCI_CMD_BUS_MASTER));
    ata_master_irq_on();
    fill_pattern(BUF_W, 512, 512, 0x41435456u);   /* "ACTV" */
    long_dma(ATA_CMD_WRITE_DMA_EXT, BUF_W, 512, 512);
    long_dma(ATA_CMD_READ_DMA_EXT, BUF_R, 0, 2048);
    printf("  written sectors read back: %s, fnv of the first MiB %08x\n",
           memcmp(BUF_R + 512 * 512, BUF_W, 512 * 512) == 0 ? "yes" : "no", fnv1a(BUF_R, 1u << 20));
    printf("dma_active done\n");
    exit(0);
}
