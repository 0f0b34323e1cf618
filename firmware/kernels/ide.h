/* Header-only helpers for the device kernels (pic_pit, ata_pio, ata_dma, bench_*): ATA task file on the
 * primary channel (ATA/ATAPI-6, T13 1410D), PIIX3 bus master IDE (82371SB datasheet 2.7), PIC OCW3 reads
 * (8259A datasheet), bounded polling. Every wait is bounded so a broken device model ends the run, never hangs it. */
#ifndef FW_KERNELS_IDE_H
#define FW_KERNELS_IDE_H
#include "fw.h"

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

#define ATA_BSY 0x80
#define ATA_DRDY 0x40
#define ATA_DRQ 0x08
#define ATA_ERR 0x01
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

/* Bus master IDE registers (offsets from the BAR4 base, primary channel). */
#define BMIC 0
#define BMIS 2
#define BMIDTP 4
#define BMIC_START 0x01
#define BMIC_READ 0x08
#define BMIS_ACTIVE 0x01
#define BMIS_ERROR 0x02
#define BMIS_INTERRUPT 0x04
#define PRD_EOT 0x80000000u

#define IDE_PCI_DEV 1
#define IDE_PCI_FN 1
#define PCI_COMMAND_REG 0x04
#define PCI_COMMAND_MASTER 0x04
#define PCI_BAR4 0x20

#define POLL_LIMIT 20000000u

struct prd {
    uint32_t base;
    uint32_t count;   /* bits 15:0 byte count (0 = 64 KiB), bit 31 EOT */
};

/* A pause of about 3 n instructions without port I/O (cheap to emulate, unlike a status poll). */
static inline void spin(uint32_t n)
{
    for (volatile uint32_t i = 0; i < n; i++)
        ;
}

static inline NORETURN void fail(const char *what)
{
    printf("FAIL: %s\n", what);
    exit(0x7E);
}

/* Poll the status register until BSY clears; returns the final status. */
static inline uint8_t ata_wait_not_busy(void)
{
    uint8_t s = inb(ATA_ALTSTATUS);
    for (uint32_t i = 0; (s & ATA_BSY) && i < POLL_LIMIT; i++)
        s = inb(ATA_ALTSTATUS);
    if (s & ATA_BSY)
        fail("ata: BSY never cleared");
    return inb(ATA_STATUS);
}

/* Poll (alternate status, no IRQ side effect) until BSY clears and DRQ or ERR is set, or DRDY without DRQ. */
static inline uint8_t ata_wait_drq(void)
{
    uint8_t s = inb(ATA_ALTSTATUS);
    for (uint32_t i = 0; ((s & ATA_BSY) || !(s & (ATA_DRQ | ATA_ERR))) && i < POLL_LIMIT; i++)
        s = inb(ATA_ALTSTATUS);
    if ((s & ATA_BSY) || !(s & (ATA_DRQ | ATA_ERR)))
        fail("ata: neither DRQ nor ERR");
    return s;
}

/* Task file for an LBA28 command on the master: count, LBA 27:0, device = LBA | master. */
static inline void ata_lba28(uint32_t lba, uint8_t count)
{
    outb(ATA_COUNT, count);
    outb(ATA_LBA0, (uint8_t)lba);
    outb(ATA_LBA1, (uint8_t)(lba >> 8));
    outb(ATA_LBA2, (uint8_t)(lba >> 16));
    outb(ATA_DEVICE, (uint8_t)(0xE0 | ((lba >> 24) & 0x0F)));
}

/* Task file for an LBA48 command: each register written twice, high-order byte first (the HOB FIFO). */
static inline void ata_lba48(uint32_t lba_lo, uint16_t lba_hi, uint16_t count)
{
    outb(ATA_COUNT, (uint8_t)(count >> 8));
    outb(ATA_LBA0, (uint8_t)(lba_lo >> 24));
    outb(ATA_LBA1, (uint8_t)lba_hi);
    outb(ATA_LBA2, (uint8_t)(lba_hi >> 8));
    outb(ATA_COUNT, (uint8_t)count);
    outb(ATA_LBA0, (uint8_t)lba_lo);
    outb(ATA_LBA1, (uint8_t)(lba_lo >> 8));
    outb(ATA_LBA2, (uint8_t)(lba_lo >> 16));
    outb(ATA_DEVICE, 0xE0);
}

/* Select the primary master and check it exists; SeaBIOS leaves the (absent) slave selected. */
static inline int ata_select_master(void)
{
    outb(ATA_DEVICE, 0xA0);
    for (int i = 0; i < 4; i++)
        (void)inb(ATA_ALTSTATUS);   /* the 400 ns settle time of ATA-6 9.2 */
    uint8_t s = inb(ATA_STATUS);
    if (s == 0x00 || s == 0xFF)
        return 0;
    ata_wait_not_busy();
    return 1;
}

/* 8259A OCW3 reads: IRR (0x0A) or ISR (0x0B) of the chip at cmd_port (0x20 or 0xA0). */
static inline uint8_t pic_read_irr(uint16_t cmd_port) { outb(cmd_port, 0x0A); return inb(cmd_port); }
static inline uint8_t pic_read_isr(uint16_t cmd_port) { outb(cmd_port, 0x0B); return inb(cmd_port); }

/* Sector pattern a kernel writes so the final disk image identifies it: tag, LBA, then a mixing function. */
static inline void fill_pattern(void *buf, uint32_t sectors, uint32_t lba, uint32_t tag)
{
    uint32_t *w = buf;
    for (uint32_t s = 0; s < sectors; s++)
        for (uint32_t i = 0; i < 128; i++) {
            uint32_t x = tag ^ ((lba + s) * 0x9E3779B1u) ^ (i * 0x85EBCA77u);
            w[s * 128 + i] = i == 0 ? tag : i == 1 ? lba + s : x;
        }
}

/* FNV-1a over n bytes (printed instead of data, which is long). */
static inline uint32_t fnv1a(const void *buf, uint32_t n)
{
    const uint8_t *p = buf;
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The first line of a reference-disk sector ("emu reference disk sector n"), printed up to the newline. */
static inline void print_line(const void *buf)
{
    const char *p = buf;
    putc('"');
    for (int i = 0; i < 64 && p[i] != '\n' && p[i] >= 0x20 && p[i] < 0x7F; i++)
        putc(p[i]);
    putc('"');
}

#endif
