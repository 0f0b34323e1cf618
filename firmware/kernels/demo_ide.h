/* demo_ide.h: a bus-master IDE DMA driver for the primary master of the PIIX3 (PCI 00:01.1), header-only.
 * References: Intel 82371FB/SB (PIIX/PIIX3) datasheet, 2.7 "Bus Master IDE Function" (BMICOM, BMISTA, BMIDTP,
 * the Physical Region Descriptor table) and ATA/ATAPI-6 (READ DMA 0xC8, WRITE DMA 0xCA, FLUSH CACHE 0xE7).
 * Completion is signalled by IRQ 14 (vector 0x2E after pic_remap(0x20, 0x28)); the caller busy-waits with
 * interrupts enabled until the handler has seen it. */
#ifndef DEMO_IDE_H
#define DEMO_IDE_H
#include "fw.h"
#include "demo_common.h"

#define IDE_PCI_BUS 0
#define IDE_PCI_DEV 1
#define IDE_PCI_FN 1
#define IDE_PCI_ID 0x70108086u        /* 8086:7010 PIIX3 IDE */
#define PCI_REG_ID 0x00
#define PCI_REG_COMMAND 0x04
#define PCI_REG_BAR4 0x20
#define PCI_CMD_IO 0x0001
#define PCI_CMD_BUS_MASTER 0x0004

#define ATA_DATA 0x1F0
#define ATA_ERROR 0x1F1
#define ATA_COUNT 0x1F2
#define ATA_LBA0 0x1F3
#define ATA_LBA1 0x1F4
#define ATA_LBA2 0x1F5
#define ATA_DEVICE 0x1F6
#define ATA_STATUS 0x1F7
#define ATA_COMMAND 0x1F7
#define ATA_CONTROL 0x3F6
#define ATA_ALTSTATUS 0x3F6
#define ATA_SR_BSY 0x80
#define ATA_SR_DRDY 0x40
#define ATA_SR_DF 0x20
#define ATA_SR_DRQ 0x08
#define ATA_SR_ERR 0x01
#define ATA_CMD_READ_DMA 0xC8
#define ATA_CMD_WRITE_DMA 0xCA
#define ATA_CMD_FLUSH_CACHE 0xE7
#define ATA_IRQ 14
#define ATA_VEC (0x28 + ATA_IRQ - 8)

/* Bus master IDE registers, offsets from BAR4 (primary channel). */
#define BMICOM 0
#define BMISTA 2
#define BMIDTP 4
#define BMICOM_SSBM 0x01              /* start/stop bus master */
#define BMICOM_RWCON 0x08             /* 1: bus master writes memory (a disk READ) */
#define BMISTA_ACTIVE 0x01
#define BMISTA_ERROR 0x02
#define BMISTA_INTERRUPT 0x04
#define BMISTA_CAPABLE 0x60           /* drive 0/1 DMA capable: read/write, kept */

#define PRD_EOT 0x80000000u
#define PRD_ENTRIES 8
#define PRD_MAX_BYTES 0x8000u         /* one entry moves at most 32 KiB here (0 would mean 64 KiB) */
#define IDE_MAX_SECTORS 128           /* one command moves at most 64 KiB */
#define IDE_TIMEOUT_TICKS 5000

enum ide_error {
    IDE_OK = 0,
    IDE_NO_CONTROLLER = -1,
    IDE_NO_DISK = -2,
    IDE_BAD_REQUEST = -3,
    IDE_TIMEOUT = -4,
    IDE_DEVICE_ERROR = -5,
    IDE_DMA_ERROR = -6,
};

/* One Physical Region Descriptor: base address, byte count (bit 0 zero), EOT in bit 31 of the second dword. */
struct prd {
    uint32_t base;
    uint32_t count_eot;
};

static struct prd ide_prd[PRD_ENTRIES] __attribute__((aligned(64)));   /* never crosses a 64 KiB boundary */

struct ide {
    uint16_t bm;                      /* bus master base: BAR4 & ~3 */
    volatile uint32_t irqs;           /* IRQ 14 count */
    volatile uint8_t status;          /* ATA status read by the IRQ handler (this also lowers INTRQ) */
    volatile uint8_t bmista;          /* BMISTA seen by the IRQ handler */
    volatile int done;
    uint32_t commands;                /* ATA commands issued */
    uint32_t sectors_read, sectors_written;
};

static struct ide ide0;

/* IRQ 14: latch BMISTA and the ATA status (reading 0x1F7 deasserts INTRQ), clear Interrupt/Error, EOI. */
static inline void ide_irq(struct regs *r)
{
    (void)r;
    uint8_t bs = inb((uint16_t)(ide0.bm + BMISTA));
    ide0.status = inb(ATA_STATUS);
    outb((uint16_t)(ide0.bm + BMISTA), (uint8_t)((bs & BMISTA_CAPABLE) | BMISTA_INTERRUPT | BMISTA_ERROR));
    ide0.bmista = bs;
    ide0.irqs++;
    ide0.done = 1;
    pic_eoi(ATA_IRQ);
}

/* Poll the alternate status until BSY clears (bounded); returns the status. */
static inline uint8_t ide_wait_not_busy(void)
{
    uint8_t s = inb(ATA_ALTSTATUS);
    for (uint32_t i = 0; i < 1000000 && (s & ATA_SR_BSY); i++)
        s = inb(ATA_ALTSTATUS);
    return s;
}

/* Find the PIIX3 IDE function, enable I/O decode and bus mastering, select the primary master, enable its IRQ.
 * Needs the PIC remapped (IRQ 14 -> vector 0x2E). */
static inline int ide_init(void)
{
    if (pci_read32(IDE_PCI_BUS, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_ID) != IDE_PCI_ID)
        return IDE_NO_CONTROLLER;
    uint16_t cmd = pci_read16(IDE_PCI_BUS, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND);
    pci_write16(IDE_PCI_BUS, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND, (uint16_t)(cmd | PCI_CMD_IO | PCI_CMD_BUS_MASTER));
    uint32_t bar4 = pci_read32(IDE_PCI_BUS, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4);
    if (!(bar4 & 1) || (bar4 & 0xFFFCu) == 0)
        return IDE_NO_CONTROLLER;
    ide0.bm = (uint16_t)(bar4 & 0xFFFCu);
    outb((uint16_t)(ide0.bm + BMICOM), 0);
    outb(ATA_DEVICE, 0xE0);                     /* SeaBIOS leaves the (absent) slave selected */
    uint8_t s = ide_wait_not_busy();
    if (s == 0x00 || s == 0xFF || !(s & ATA_SR_DRDY))
        return IDE_NO_DISK;
    set_handler(ATA_VEC, ide_irq);
    outb(ATA_CONTROL, 0x00);                    /* nIEN = 0: the drive raises INTRQ */
    (void)inb(ATA_STATUS);                      /* drop any stale INTRQ */
    pic_unmask(ATA_IRQ);
    return IDE_OK;
}

/* Fill the PRD table for [buf, buf + bytes): entries of at most 32 KiB that never cross a 64 KiB boundary. */
static inline int ide_build_prd(const void *buf, uint32_t bytes)
{
    uint32_t addr = (uint32_t)buf;
    int n = 0;
    while (bytes) {
        if (n == PRD_ENTRIES)
            return IDE_BAD_REQUEST;
        uint32_t room = 0x10000u - (addr & 0xFFFFu);
        uint32_t len = bytes < PRD_MAX_BYTES ? bytes : PRD_MAX_BYTES;
        if (len > room)
            len = room;
        ide_prd[n].base = addr;
        ide_prd[n].count_eot = len & 0xFFFFu;
        addr += len;
        bytes -= len;
        n++;
    }
    if (n == 0)
        return IDE_BAD_REQUEST;
    ide_prd[n - 1].count_eot |= PRD_EOT;
    return n;
}

/* Wait for the IRQ handler to see the completion: a busy wait with IF=1, not HLT, so the transfer
 * spends guest instructions while Active is set (emu warps a halted CPU's clock straight to the completion, which
 * would make the DMA window invisible to a monitor). IF is enabled on return. */
static inline int ide_wait_irq(void)
{
    uint32_t start = demo_ticks;
    sti();
    while (!ide0.done) {
        if (demo_ticks - start > IDE_TIMEOUT_TICKS)
            return IDE_TIMEOUT;
        __asm__ volatile("" ::: "memory");
    }
    return IDE_OK;
}

static inline void ide_select_lba28(uint32_t lba, uint32_t count)
{
    outb(ATA_COUNT, (uint8_t)count);            /* 256 would be 0 */
    outb(ATA_LBA0, (uint8_t)lba);
    outb(ATA_LBA1, (uint8_t)(lba >> 8));
    outb(ATA_LBA2, (uint8_t)(lba >> 16));
    outb(ATA_DEVICE, (uint8_t)(0xE0 | ((lba >> 24) & 0x0F)));
}

/* READ DMA (write = 0) or WRITE DMA (write = 1) of `count` sectors at LBA `lba` to/from buf (word aligned). */
static inline int ide_dma(uint32_t lba, uint32_t count, void *buf, int write)
{
    if (count == 0 || count > IDE_MAX_SECTORS || ((uint32_t)buf & 1) || lba + count > 0x0FFFFFFFu)
        return IDE_BAD_REQUEST;
    int n = ide_build_prd(buf, count * 512);
    if (n < 0)
        return n;
    uint16_t bm = ide0.bm;
    uint8_t dir = write ? 0 : BMICOM_RWCON;
    outb((uint16_t)(bm + BMICOM), 0);           /* stop */
    outl((uint16_t)(bm + BMIDTP), (uint32_t)ide_prd);
    outb((uint16_t)(bm + BMICOM), dir);
    uint8_t bs = inb((uint16_t)(bm + BMISTA));
    outb((uint16_t)(bm + BMISTA), (uint8_t)((bs & BMISTA_CAPABLE) | BMISTA_INTERRUPT | BMISTA_ERROR));
    if (ide_wait_not_busy() & ATA_SR_BSY)
        return IDE_TIMEOUT;
    ide_select_lba28(lba, count);
    ide0.done = 0;
    __asm__ volatile("" ::: "memory");          /* the PRDs and the data are in memory before the command */
    outb(ATA_COMMAND, write ? ATA_CMD_WRITE_DMA : ATA_CMD_READ_DMA);
    outb((uint16_t)(bm + BMICOM), (uint8_t)(dir | BMICOM_SSBM));   /* start: the transfer moves now */
    ide0.commands++;
    int rc = ide_wait_irq();
    outb((uint16_t)(bm + BMICOM), dir);         /* stop (clears Active when the PRDs were larger) */
    if (rc)
        return rc;
    if (ide0.status & (ATA_SR_ERR | ATA_SR_DF))
        return IDE_DEVICE_ERROR;
    if (ide0.bmista & BMISTA_ERROR)
        return IDE_DMA_ERROR;
    if (write)
        ide0.sectors_written += count;
    else
        ide0.sectors_read += count;
    return IDE_OK;
}

/* FLUSH CACHE: a non-data command that completes with IRQ 14. */
static inline int ide_flush(void)
{
    if (ide_wait_not_busy() & ATA_SR_BSY)
        return IDE_TIMEOUT;
    outb(ATA_DEVICE, 0xE0);
    ide0.done = 0;
    outb(ATA_COMMAND, ATA_CMD_FLUSH_CACHE);
    ide0.commands++;
    int rc = ide_wait_irq();
    if (rc)
        return rc;
    return (ide0.status & (ATA_SR_ERR | ATA_SR_DF)) ? IDE_DEVICE_ERROR : IDE_OK;
}

static inline const char *ide_strerror(int rc)
{
    switch (rc) {
    case IDE_OK: return "ok";
    case IDE_NO_CONTROLLER: return "no PIIX3 IDE controller";
    case IDE_NO_DISK: return "no disk on the primary master";
    case IDE_BAD_REQUEST: return "bad request";
    case IDE_TIMEOUT: return "timeout";
    case IDE_DEVICE_ERROR: return "device error";
    case IDE_DMA_ERROR: return "bus master error";
    default: return "?";
    }
}

#endif
