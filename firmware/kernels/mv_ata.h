/* mv_ata.h: the management validator's disk driver for the SECONDARY channel master of the PIIX3 IDE function
 * (PCI 00:01.1): command block 0x170-0x177, control 0x376, IRQ 15 (vector 0x2F after pic_remap(0x20, 0x28)).
 * Reads use bus-master DMA (Intel 82371FB/SB PIIX/PIIX3 datasheet 2.7: the secondary channel's BMICOM/BMISTA/BMIDTP
 * are at BAR4 + 8/+0xA/+0xC) with READ DMA (ATA/ATAPI-6 8.26); the deliberate write attempt uses PIO WRITE SECTORS
 * (ATA/ATAPI-6 8.62). Completion is IRQ 15, awaited with STI;HLT (bounded by PIT ticks). Header-only. */
#ifndef MV_ATA_H
#define MV_ATA_H
#include "fw.h"
#include "mv_common.h"

#define MV_PCI_BUS 0
#define MV_PCI_DEV 1
#define MV_PCI_FN 1
#define MV_PCI_ID 0x70108086u         /* 8086:7010 PIIX3 IDE */
#define MV_PCI_REG_COMMAND 0x04
#define MV_PCI_REG_BAR4 0x20
#define MV_PCI_CMD_IO 0x0001
#define MV_PCI_CMD_BUS_MASTER 0x0004

#define MV_ATA_DATA 0x170
#define MV_ATA_ERROR 0x171
#define MV_ATA_COUNT 0x172
#define MV_ATA_LBA0 0x173
#define MV_ATA_LBA1 0x174
#define MV_ATA_LBA2 0x175
#define MV_ATA_DEVICE 0x176
#define MV_ATA_STATUS 0x177
#define MV_ATA_COMMAND 0x177
#define MV_ATA_CONTROL 0x376
#define MV_ATA_ALTSTATUS 0x376
#define MV_SR_BSY 0x80
#define MV_SR_DRDY 0x40
#define MV_SR_DF 0x20
#define MV_SR_DRQ 0x08
#define MV_SR_ERR 0x01
#define MV_ER_ABRT 0x04
#define MV_CMD_READ_DMA 0xC8
#define MV_CMD_WRITE_SECTORS 0x30
#define MV_ATA_IRQ 15
#define MV_ATA_VEC (0x28 + MV_ATA_IRQ - 8)

/* Bus master IDE registers of the secondary channel, offsets from BAR4 & ~3. */
#define MV_BMICOM 8
#define MV_BMISTA 10
#define MV_BMIDTP 12
#define MV_BMICOM_SSBM 0x01
#define MV_BMICOM_RWCON 0x08           /* bus master writes memory (a disk read) */
#define MV_BMISTA_ACTIVE 0x01
#define MV_BMISTA_ERROR 0x02
#define MV_BMISTA_INTERRUPT 0x04
#define MV_BMISTA_CAPABLE 0x60

#define MV_PRD_EOT 0x80000000u
#define MV_PRD_ENTRIES 8
#define MV_PRD_MAX_BYTES 0x8000u
#define MV_MAX_SECTORS 128             /* one command moves at most 64 KiB */
#define MV_TIMEOUT_TICKS 2000

enum mv_ata_error {
    MV_ATA_OK = 0,
    MV_ATA_NO_CONTROLLER = -1,
    MV_ATA_NO_DISK = -2,
    MV_ATA_BAD_REQUEST = -3,
    MV_ATA_TIMEOUT = -4,
    MV_ATA_DEVICE_ERROR = -5,
    MV_ATA_DMA_ERROR = -6,
};

struct mv_prd {
    uint32_t base;
    uint32_t count_eot;
};

static struct mv_prd mv_prd[MV_PRD_ENTRIES] __attribute__((aligned(64)));

struct mv_ata {
    uint16_t bm;                       /* BAR4 & ~3 (the primary channel's registers; ours are at +8) */
    volatile uint32_t irqs;
    volatile uint8_t status, bmista;   /* latched by the IRQ handler */
    volatile int done;
    uint32_t commands, sectors_read;
};

static struct mv_ata mv_ata;

/* IRQ 15: latch BMISTA and the status (reading 0x177 lowers INTRQ), clear Interrupt/Error, EOI both PICs. */
static inline void mv_ata_irq(struct regs *r)
{
    (void)r;
    uint8_t bs = inb((uint16_t)(mv_ata.bm + MV_BMISTA));
    mv_ata.status = inb(MV_ATA_STATUS);
    outb((uint16_t)(mv_ata.bm + MV_BMISTA), (uint8_t)((bs & MV_BMISTA_CAPABLE) | MV_BMISTA_INTERRUPT | MV_BMISTA_ERROR));
    mv_ata.bmista = bs;
    mv_ata.irqs++;
    mv_ata.done = 1;
    pic_eoi(MV_ATA_IRQ);
}

static inline uint8_t mv_ata_wait_not_busy(void)
{
    uint8_t s = inb(MV_ATA_ALTSTATUS);
    for (uint32_t i = 0; i < 100000 && (s & MV_SR_BSY); i++)
        s = inb(MV_ATA_ALTSTATUS);
    return s;
}

/* Find the PIIX3 IDE function, enable I/O decode and bus mastering, install the IRQ 15 handler. Touches no drive. */
static inline int mv_ata_init(void)
{
    if (pci_read32(MV_PCI_BUS, MV_PCI_DEV, MV_PCI_FN, 0) != MV_PCI_ID)
        return MV_ATA_NO_CONTROLLER;
    uint16_t cmd = pci_read16(MV_PCI_BUS, MV_PCI_DEV, MV_PCI_FN, MV_PCI_REG_COMMAND);
    pci_write16(MV_PCI_BUS, MV_PCI_DEV, MV_PCI_FN, MV_PCI_REG_COMMAND,
                (uint16_t)(cmd | MV_PCI_CMD_IO | MV_PCI_CMD_BUS_MASTER));
    uint32_t bar4 = pci_read32(MV_PCI_BUS, MV_PCI_DEV, MV_PCI_FN, MV_PCI_REG_BAR4);
    if (!(bar4 & 1) || (bar4 & 0xFFFCu) == 0)
        return MV_ATA_NO_CONTROLLER;
    mv_ata.bm = (uint16_t)(bar4 & 0xFFFCu);
    outb((uint16_t)(mv_ata.bm + MV_BMICOM), 0);
    set_handler(MV_ATA_VEC, mv_ata_irq);
    pic_unmask(MV_ATA_IRQ);
    return MV_ATA_OK;
}

/* Select the secondary master of a freshly mounted disk, enable its interrupt (nIEN = 0); MV_ATA_NO_DISK when
 * nothing answers (status 0x00 or 0xFF, or DRDY clear). */
static inline int mv_ata_select(void)
{
    outb(MV_ATA_DEVICE, 0xE0);
    uint8_t s = mv_ata_wait_not_busy();
    if (s == 0x00 || s == 0xFF || !(s & MV_SR_DRDY))
        return MV_ATA_NO_DISK;
    outb(MV_ATA_CONTROL, 0x00);
    (void)inb(MV_ATA_STATUS);          /* drop any stale INTRQ */
    return MV_ATA_OK;
}

/* Wait (STI;HLT) until the IRQ handler saw the completion, at most MV_TIMEOUT_TICKS ticks. IF is 1 on return. */
static inline int mv_ata_wait_irq(void)
{
    uint32_t start = mv_ticks;
    cli();
    while (!mv_ata.done) {
        if (mv_ticks - start > MV_TIMEOUT_TICKS) {
            sti();
            return MV_ATA_TIMEOUT;
        }
        sti_hlt();
        cli();
    }
    sti();
    return MV_ATA_OK;
}

static inline void mv_ata_taskfile(uint32_t lba, uint32_t count)
{
    outb(MV_ATA_COUNT, (uint8_t)count);
    outb(MV_ATA_LBA0, (uint8_t)lba);
    outb(MV_ATA_LBA1, (uint8_t)(lba >> 8));
    outb(MV_ATA_LBA2, (uint8_t)(lba >> 16));
    outb(MV_ATA_DEVICE, (uint8_t)(0xE0 | ((lba >> 24) & 0x0F)));
}

static inline int mv_ata_build_prd(const void *buf, uint32_t bytes)
{
    uint32_t addr = (uint32_t)buf;
    int n = 0;
    while (bytes) {
        if (n == MV_PRD_ENTRIES)
            return MV_ATA_BAD_REQUEST;
        uint32_t room = 0x10000u - (addr & 0xFFFFu);
        uint32_t len = bytes < MV_PRD_MAX_BYTES ? bytes : MV_PRD_MAX_BYTES;
        if (len > room)
            len = room;
        mv_prd[n].base = addr;
        mv_prd[n].count_eot = len & 0xFFFFu;
        addr += len;
        bytes -= len;
        n++;
    }
    if (n == 0)
        return MV_ATA_BAD_REQUEST;
    mv_prd[n - 1].count_eot |= MV_PRD_EOT;
    return n;
}

/* READ DMA of `count` (1..128) sectors at `lba` into buf (word aligned). Never writes the disk. */
static inline int mv_ata_read(uint32_t lba, uint32_t count, void *buf)
{
    if (count == 0 || count > MV_MAX_SECTORS || ((uint32_t)buf & 1) || lba + count > 0x0FFFFFFFu)
        return MV_ATA_BAD_REQUEST;
    int n = mv_ata_build_prd(buf, count * 512);
    if (n < 0)
        return n;
    uint16_t bm = mv_ata.bm;
    outb((uint16_t)(bm + MV_BMICOM), 0);
    outl((uint16_t)(bm + MV_BMIDTP), (uint32_t)mv_prd);
    outb((uint16_t)(bm + MV_BMICOM), MV_BMICOM_RWCON);
    uint8_t bs = inb((uint16_t)(bm + MV_BMISTA));
    outb((uint16_t)(bm + MV_BMISTA), (uint8_t)((bs & MV_BMISTA_CAPABLE) | MV_BMISTA_INTERRUPT | MV_BMISTA_ERROR));
    if (mv_ata_wait_not_busy() & MV_SR_BSY)
        return MV_ATA_TIMEOUT;
    mv_ata_taskfile(lba, count);
    mv_ata.done = 0;
    __asm__ volatile("" ::: "memory");
    outb(MV_ATA_COMMAND, MV_CMD_READ_DMA);
    outb((uint16_t)(bm + MV_BMICOM), MV_BMICOM_RWCON | MV_BMICOM_SSBM);
    mv_ata.commands++;
    int rc = mv_ata_wait_irq();
    outb((uint16_t)(bm + MV_BMICOM), MV_BMICOM_RWCON);
    if (rc)
        return rc;
    if (mv_ata.status & (MV_SR_ERR | MV_SR_DF))
        return MV_ATA_DEVICE_ERROR;
    if (mv_ata.bmista & MV_BMISTA_ERROR)
        return MV_ATA_DMA_ERROR;
    mv_ata.sectors_read += count;
    return MV_ATA_OK;
}

/* The outcome of the deliberate write attempt. */
struct mv_write_try {
    int rc;                  /* MV_ATA_OK when the drive answered (refused or not); else a driver error */
    int refused;             /* status ERR with error ABRT */
    int data_phase;          /* the drive asked for the data (DRQ) before answering */
    uint8_t status, error;
};

/* PIO WRITE SECTORS of one sector (512 bytes of buf) at `lba`: a read-only disk must abort it (status ERR, error
 * ABRT), either at once or when the block has been transferred. */
static inline struct mv_write_try mv_ata_try_write(uint32_t lba, const void *buf)
{
    struct mv_write_try t = { MV_ATA_OK, 0, 0, 0, 0 };
    if (mv_ata_wait_not_busy() & MV_SR_BSY) {
        t.rc = MV_ATA_TIMEOUT;
        return t;
    }
    mv_ata_taskfile(lba, 1);
    mv_ata.done = 0;
    outb(MV_ATA_COMMAND, MV_CMD_WRITE_SECTORS);
    uint8_t s = mv_ata_wait_not_busy();
    if ((s & MV_SR_DRQ) && !(s & MV_SR_ERR)) {
        t.data_phase = 1;
        outsw(MV_ATA_DATA, buf, 256);
        t.rc = mv_ata_wait_irq();
        s = t.rc ? inb(MV_ATA_ALTSTATUS) : mv_ata.status;
    } else if (mv_ata.done) {
        s = mv_ata.status;
    }
    t.status = s;
    t.error = inb(MV_ATA_ERROR);
    (void)inb(MV_ATA_STATUS);
    t.refused = (s & MV_SR_ERR) && (t.error & MV_ER_ABRT);
    return t;
}

static inline const char *mv_ata_strerror(int rc)
{
    switch (rc) {
    case MV_ATA_OK: return "ok";
    case MV_ATA_NO_CONTROLLER: return "no PIIX3 IDE controller";
    case MV_ATA_NO_DISK: return "no disk on the secondary master";
    case MV_ATA_BAD_REQUEST: return "bad request";
    case MV_ATA_TIMEOUT: return "timeout";
    case MV_ATA_DEVICE_ERROR: return "device error";
    case MV_ATA_DMA_ERROR: return "bus master error";
    default: return "?";
    }
}

#endif
