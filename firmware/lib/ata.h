/* ATA disks on the PIIX3 IDE function (PCI 00:01.1): task-file registers and commands (ATA/ATAPI-6, T13 1410D),
 * the bus master IDE registers (Intel 82371FB/SB PIIX/PIIX3 datasheet 2.7: BMICOM, BMISTA, BMIDTP, PRD tables),
 * polled PIO helpers for the primary master (the device test kernels: every wait bounded, a timeout is FAIL), and
 * a small interrupt-driven bus-master DMA driver for one channel (struct ide_chan). */
#ifndef FW_ATA_H
#define FW_ATA_H
#include "types.h"
#include "desc.h"

/* Task-file register offsets from a channel's command block base, and the two channels' ports. */
#define ATA_REG_DATA 0
#define ATA_REG_ERROR 1              /* read; write = FEATURES */
#define ATA_REG_COUNT 2
#define ATA_REG_LBA0 3
#define ATA_REG_LBA1 4
#define ATA_REG_LBA2 5
#define ATA_REG_DEVICE 6
#define ATA_REG_STATUS 7             /* read; write = COMMAND */
#define ATA_PRI_IO 0x1F0
#define ATA_PRI_CTL 0x3F6            /* alternate status (read) / device control (write) */
#define ATA_SEC_IO 0x170
#define ATA_SEC_CTL 0x376

/* The primary channel's registers by name. */
#define ATA_DATA 0x1F0
#define ATA_ERROR 0x1F1
#define ATA_FEATURE 0x1F1
#define ATA_COUNT 0x1F2
#define ATA_LBA0 0x1F3
#define ATA_LBA1 0x1F4
#define ATA_LBA2 0x1F5
#define ATA_DEVICE 0x1F6
#define ATA_STATUS 0x1F7
#define ATA_COMMAND 0x1F7
#define ATA_ALTSTATUS 0x3F6
#define ATA_CONTROL 0x3F6

/* Status, error and device control bits. */
#define ATA_BSY 0x80
#define ATA_DRDY 0x40
#define ATA_DF 0x20
#define ATA_DRQ 0x08
#define ATA_ERR 0x01
#define ATA_ER_ABRT 0x04
#define ATA_NIEN 0x02
#define ATA_SRST 0x04
#define ATA_HOB 0x80

#define ATA_CMD_READ_SECTORS 0x20
#define ATA_CMD_READ_SECTORS_EXT 0x24
#define ATA_CMD_READ_DMA_EXT 0x25
#define ATA_CMD_WRITE_SECTORS 0x30
#define ATA_CMD_WRITE_SECTORS_EXT 0x34
#define ATA_CMD_WRITE_DMA_EXT 0x35
#define ATA_CMD_DIAGNOSTIC 0x90
#define ATA_CMD_READ_MULTIPLE 0xC4
#define ATA_CMD_WRITE_MULTIPLE 0xC5
#define ATA_CMD_SET_MULTIPLE 0xC6
#define ATA_CMD_READ_DMA 0xC8
#define ATA_CMD_WRITE_DMA 0xCA
#define ATA_CMD_FLUSH_CACHE 0xE7
#define ATA_CMD_FLUSH_CACHE_EXT 0xEA
#define ATA_CMD_IDENTIFY 0xEC
#define ATA_CMD_SET_FEATURES 0xEF

/* The PIIX3 IDE function. */
#define IDE_PCI_BUS 0
#define IDE_PCI_DEV 1
#define IDE_PCI_FN 1
#define IDE_PCI_ID 0x70108086u        /* 8086:7010 PIIX3 IDE */

/* Bus master IDE registers: offsets from BAR4 & ~3 (the secondary channel's are 8 further). */
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

/* One Physical Region Descriptor: base address, then bits 15:0 byte count (0 = 64 KiB) and bit 31 EOT. */
struct prd {
    uint32_t base;
    uint32_t count;
};

/* Poll `port` (a status or alternate status register) until BSY clears, at most `limit` more reads; returns the
 * last value read. */
uint8_t ata_poll_bsy(uint16_t port, uint32_t limit);

/* --- polled PIO on the primary master (device test kernels); a timeout prints FAIL and exits 0x7E --- */
#define ATA_POLL_LIMIT 20000000u
/* Poll the alternate status until BSY clears; then read (and return) the status register, which lowers INTRQ. */
uint8_t ata_wait_not_busy(void);
/* Poll the alternate status until BSY clears and DRQ or ERR is set; returns it. */
uint8_t ata_wait_drq(void);
/* Task file for an LBA28 command on the master: count, LBA 27:0, device = LBA | master. */
void ata_lba28(uint32_t lba, uint8_t count);
/* Task file for an LBA48 command: each register written twice, high-order byte first (the HOB FIFO). */
void ata_lba48(uint32_t lba_lo, uint16_t lba_hi, uint16_t count);
/* Select the primary master and check it exists (SeaBIOS leaves the absent slave selected): 1, or 0 if none. */
int ata_select_master(void);
/* Select the primary master, or print "no disk on the primary master" and exit(1); then enable its interrupt
 * (nIEN = 0), drop a stale INTRQ (status read) and unmask IRQ 14. */
void ata_master_irq_on(void);
/* IRQ 14 handler of the device test kernels: ata_irq14_count++, read the status (lowering INTRQ), EOI both PICs.
 * Install it at vector 0x2E (after pic_remap(0x20, 0x28)). */
void ata_irq14_counter(struct regs *r);
extern volatile uint32_t ata_irq14_count;
/* Fill `sectors` sectors at buf with the pattern of a kernel's writes: tag, LBA, then a mixing function. */
void fill_pattern(void *buf, uint32_t sectors, uint32_t lba, uint32_t tag);
/* Print the first line of a reference-disk sector ("emu reference disk sector n") in double quotes. */
void print_line(const void *buf);

/* --- interrupt-driven bus-master DMA on one channel (struct ide_chan) --- */
#define IDE_PRD_ENTRIES 8
#define IDE_PRD_MAX_BYTES 0x8000u     /* one entry moves at most 32 KiB here */
#define IDE_MAX_SECTORS 128           /* one command moves at most 64 KiB */

enum ide_error {
    IDE_OK = 0,
    IDE_NO_CONTROLLER = -1,
    IDE_NO_DISK = -2,
    IDE_BAD_REQUEST = -3,
    IDE_TIMEOUT = -4,
    IDE_DEVICE_ERROR = -5,
    IDE_DMA_ERROR = -6,
};

/* One channel's master drive. The first group is configuration (IDE_CHAN_PRIMARY / IDE_CHAN_SECONDARY, then
 * wait mode and limits); the rest is driver state. Timeouts count tick_count ticks (util.h), so the PIT tick
 * must run. Vectors assume pic_remap(0x20, 0x28): IRQ 14 -> 0x2E, IRQ 15 -> 0x2F. */
struct ide_chan {
    uint16_t io, ctl;                 /* command block base, alternate status / device control */
    uint8_t bm_off, irq;              /* bus master registers at BAR4 + bm_off; IRQ line */
    uint8_t halt_wait;                /* 1: wait for the IRQ with STI;HLT; 0: busy-wait with IF=1 */
    uint32_t bsy_polls;               /* bound on alternate status polls for BSY */
    uint32_t timeout_ticks;           /* bound on the wait for the completion IRQ */
    uint16_t bm;                      /* BAR4 & ~3 (found by ide_probe) */
    volatile uint32_t irqs;           /* IRQ count */
    volatile uint8_t status, bmista;  /* ATA status and BMISTA latched by the IRQ handler */
    volatile int done;
    uint32_t commands, sectors_read, sectors_written;
};
/* Designated initialisers of the two channels' ports: { IDE_CHAN_PRIMARY, .halt_wait = 1, ... }. */
#define IDE_CHAN_PRIMARY .io = ATA_PRI_IO, .ctl = ATA_PRI_CTL, .bm_off = 0, .irq = 14
#define IDE_CHAN_SECONDARY .io = ATA_SEC_IO, .ctl = ATA_SEC_CTL, .bm_off = 8, .irq = 15

/* Find the PIIX3 IDE function, enable I/O decode and bus mastering, note BAR4, stop the channel's engine.
 * IDE_OK or IDE_NO_CONTROLLER. Touches no drive. */
int ide_probe(struct ide_chan *c);
/* Install the channel's IRQ handler and unmask its IRQ. */
void ide_irq_on(struct ide_chan *c);
/* Select the master (device 0xE0), wait for BSY to clear, enable its interrupt (nIEN = 0) and drop a stale
 * INTRQ. IDE_NO_DISK when nothing answers (status 0x00 or 0xFF, or DRDY clear). */
int ide_select(struct ide_chan *c);
/* READ DMA (write = 0) or WRITE DMA (write = 1) of count (1..128) sectors at lba to/from buf (word aligned).
 * IF is 1 on return. */
int ide_dma(struct ide_chan *c, uint32_t lba, uint32_t count, void *buf, int write);
/* FLUSH CACHE: a non-data command that completes with the IRQ. */
int ide_flush(struct ide_chan *c);

/* The outcome of ide_try_write. */
struct ide_write_try {
    int rc;                  /* IDE_OK when the drive answered (refused or not); else a driver error */
    int refused;             /* status ERR with error ABRT */
    int data_phase;          /* the drive asked for the data (DRQ) before answering */
    uint8_t status, error;
};
/* PIO WRITE SECTORS of one sector (512 bytes of buf) at lba: a read-only disk must abort it (status ERR, error
 * ABRT), either at once or once the block has been transferred. */
struct ide_write_try ide_try_write(struct ide_chan *c, uint32_t lba, const void *buf);
/* A short text for an ide_error (IDE_NO_DISK names the channel). */
const char *ide_strerror(const struct ide_chan *c, int rc);

#endif
