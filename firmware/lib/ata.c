/* ATA PIO helpers and the bus-master DMA driver: see ata.h (ATA/ATAPI-6; 82371FB/SB datasheet 2.7). */
#include "ata.h"
#include "console.h"
#include "cpu.h"
#include "desc.h"
#include "io.h"
#include "pci.h"
#include "pic.h"
#include "util.h"

uint8_t ata_poll_bsy(uint16_t port, uint32_t limit)
{
    uint8_t s = inb(port);
    for (uint32_t i = 0; (s & ATA_BSY) && i < limit; i++)
        s = inb(port);
    return s;
}

uint8_t ata_wait_not_busy(void)
{
    if (ata_poll_bsy(ATA_ALTSTATUS, ATA_POLL_LIMIT) & ATA_BSY)
        fail("ata: BSY never cleared");
    return inb(ATA_STATUS);
}

uint8_t ata_wait_drq(void)
{
    uint8_t s = inb(ATA_ALTSTATUS);
    for (uint32_t i = 0; ((s & ATA_BSY) || !(s & (ATA_DRQ | ATA_ERR))) && i < ATA_POLL_LIMIT; i++)
        s = inb(ATA_ALTSTATUS);
    if ((s & ATA_BSY) || !(s & (ATA_DRQ | ATA_ERR)))
        fail("ata: neither DRQ nor ERR");
    return s;
}

void ata_lba28(uint32_t lba, uint8_t count)
{
    outb(ATA_COUNT, count);
    outb(ATA_LBA0, (uint8_t)lba);
    outb(ATA_LBA1, (uint8_t)(lba >> 8));
    outb(ATA_LBA2, (uint8_t)(lba >> 16));
    outb(ATA_DEVICE, (uint8_t)(0xE0 | ((lba >> 24) & 0x0F)));
}

void ata_lba48(uint32_t lba_lo, uint16_t lba_hi, uint16_t count)
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

int ata_select_master(void)
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

void ata_master_irq_on(void)
{
    if (!ata_select_master()) {
        printf("no disk on the primary master\n");
        exit(1);
    }
    outb(ATA_CONTROL, 0);
    (void)inb(ATA_STATUS);
    pic_unmask(14);
}

volatile uint32_t ata_irq14_count;

void ata_irq14_counter(struct regs *r)
{
    (void)r;
    ata_irq14_count++;
    (void)inb(ATA_STATUS);
    pic_eoi(14);
}

void fill_pattern(void *buf, uint32_t sectors, uint32_t lba, uint32_t tag)
{
    uint32_t *w = buf;
    for (uint32_t s = 0; s < sectors; s++)
        for (uint32_t i = 0; i < 128; i++) {
            uint32_t x = tag ^ ((lba + s) * 0x9E3779B1u) ^ (i * 0x85EBCA77u);
            w[s * 128 + i] = i == 0 ? tag : i == 1 ? lba + s : x;
        }
}

void print_line(const void *buf)
{
    const char *p = buf;
    putc('"');
    for (int i = 0; i < 64 && p[i] != '\n' && p[i] >= 0x20 && p[i] < 0x7F; i++)
        putc(p[i]);
    putc('"');
}

/* --- bus-master DMA driver --- */

static struct prd ide_prd[2][IDE_PRD_ENTRIES] __attribute__((aligned(64)));   /* never crosses 64 KiB */
static struct ide_chan *irq_chan[2];                                          /* IRQ 14, IRQ 15 */

static int chan_index(const struct ide_chan *c) { return c->irq == 15; }

/* IRQ: latch BMISTA and the ATA status (reading it deasserts INTRQ), clear Interrupt/Error, EOI. */
static void ide_irq(struct regs *r)
{
    struct ide_chan *c = irq_chan[r->vector == 0x2F];
    uint8_t bs = inb((uint16_t)(c->bm + c->bm_off + BMISTA));
    c->status = inb((uint16_t)(c->io + ATA_REG_STATUS));
    outb((uint16_t)(c->bm + c->bm_off + BMISTA), (uint8_t)((bs & BMISTA_CAPABLE) | BMISTA_INTERRUPT | BMISTA_ERROR));
    c->bmista = bs;
    c->irqs++;
    c->done = 1;
    pic_eoi(c->irq);
}

int ide_probe(struct ide_chan *c)
{
    if (pci_read32(IDE_PCI_BUS, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_ID) != IDE_PCI_ID)
        return IDE_NO_CONTROLLER;
    uint16_t cmd = pci_read16(IDE_PCI_BUS, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND);
    pci_write16(IDE_PCI_BUS, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND,
                (uint16_t)(cmd | PCI_CMD_IO | PCI_CMD_BUS_MASTER));
    uint32_t bar4 = pci_read32(IDE_PCI_BUS, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4);
    if (!(bar4 & 1) || (bar4 & 0xFFFCu) == 0)
        return IDE_NO_CONTROLLER;
    c->bm = (uint16_t)(bar4 & 0xFFFCu);
    outb((uint16_t)(c->bm + c->bm_off + BMICOM), 0);
    return IDE_OK;
}

void ide_irq_on(struct ide_chan *c)
{
    irq_chan[chan_index(c)] = c;
    set_handler(0x28 + c->irq - 8, ide_irq);
    pic_unmask(c->irq);
}

int ide_select(struct ide_chan *c)
{
    outb((uint16_t)(c->io + ATA_REG_DEVICE), 0xE0);
    uint8_t s = ata_poll_bsy(c->ctl, c->bsy_polls);
    if (s == 0x00 || s == 0xFF || !(s & ATA_DRDY))
        return IDE_NO_DISK;
    outb(c->ctl, 0x00);                                 /* nIEN = 0: the drive raises INTRQ */
    (void)inb((uint16_t)(c->io + ATA_REG_STATUS));      /* drop any stale INTRQ */
    return IDE_OK;
}

/* Wait until the IRQ handler saw the completion, at most timeout_ticks ticks; IF is 1 on return. The busy wait
 * (halt_wait = 0) spends guest instructions while Active is set (emu warps a halted CPU's clock straight to the
 * completion, which would make the DMA window invisible to a monitor). */
static int ide_wait_irq(struct ide_chan *c)
{
    uint32_t start = tick_count;
    if (!c->halt_wait) {
        sti();
        while (!c->done) {
            if (tick_count - start > c->timeout_ticks)
                return IDE_TIMEOUT;
            __asm__ volatile("" ::: "memory");
        }
        return IDE_OK;
    }
    cli();
    while (!c->done) {
        if (tick_count - start > c->timeout_ticks) {
            sti();
            return IDE_TIMEOUT;
        }
        sti_hlt();
        cli();
    }
    sti();
    return IDE_OK;
}

static void ide_taskfile(const struct ide_chan *c, uint32_t lba, uint32_t count)
{
    outb((uint16_t)(c->io + ATA_REG_COUNT), (uint8_t)count);      /* 256 would be 0 */
    outb((uint16_t)(c->io + ATA_REG_LBA0), (uint8_t)lba);
    outb((uint16_t)(c->io + ATA_REG_LBA1), (uint8_t)(lba >> 8));
    outb((uint16_t)(c->io + ATA_REG_LBA2), (uint8_t)(lba >> 16));
    outb((uint16_t)(c->io + ATA_REG_DEVICE), (uint8_t)(0xE0 | ((lba >> 24) & 0x0F)));
}

/* Fill the channel's PRD table for [buf, buf + bytes): entries of at most 32 KiB that never cross a 64 KiB
 * boundary; returns the entry count or IDE_BAD_REQUEST. */
static int ide_build_prd(struct prd *prd, const void *buf, uint32_t bytes)
{
    uint32_t addr = (uint32_t)buf;
    int n = 0;
    while (bytes) {
        if (n == IDE_PRD_ENTRIES)
            return IDE_BAD_REQUEST;
        uint32_t room = 0x10000u - (addr & 0xFFFFu);
        uint32_t len = bytes < IDE_PRD_MAX_BYTES ? bytes : IDE_PRD_MAX_BYTES;
        if (len > room)
            len = room;
        prd[n].base = addr;
        prd[n].count = len & 0xFFFFu;
        addr += len;
        bytes -= len;
        n++;
    }
    if (n == 0)
        return IDE_BAD_REQUEST;
    prd[n - 1].count |= PRD_EOT;
    return n;
}

int ide_dma(struct ide_chan *c, uint32_t lba, uint32_t count, void *buf, int write)
{
    if (count == 0 || count > IDE_MAX_SECTORS || ((uint32_t)buf & 1) || lba + count > 0x0FFFFFFFu)
        return IDE_BAD_REQUEST;
    struct prd *prd = ide_prd[chan_index(c)];
    int n = ide_build_prd(prd, buf, count * 512);
    if (n < 0)
        return n;
    uint16_t bm = (uint16_t)(c->bm + c->bm_off);
    uint8_t dir = write ? 0 : BMICOM_RWCON;
    outb((uint16_t)(bm + BMICOM), 0);           /* stop */
    outl((uint16_t)(bm + BMIDTP), (uint32_t)prd);
    outb((uint16_t)(bm + BMICOM), dir);
    uint8_t bs = inb((uint16_t)(bm + BMISTA));
    outb((uint16_t)(bm + BMISTA), (uint8_t)((bs & BMISTA_CAPABLE) | BMISTA_INTERRUPT | BMISTA_ERROR));
    if (ata_poll_bsy(c->ctl, c->bsy_polls) & ATA_BSY)
        return IDE_TIMEOUT;
    ide_taskfile(c, lba, count);
    c->done = 0;
    __asm__ volatile("" ::: "memory");          /* the PRDs and the data are in memory before the command */
    outb((uint16_t)(c->io + ATA_REG_STATUS), write ? ATA_CMD_WRITE_DMA : ATA_CMD_READ_DMA);
    outb((uint16_t)(bm + BMICOM), (uint8_t)(dir | BMICOM_SSBM));   /* start: the transfer moves now */
    c->commands++;
    int rc = ide_wait_irq(c);
    outb((uint16_t)(bm + BMICOM), dir);         /* stop (clears Active when the PRDs were larger) */
    if (rc)
        return rc;
    if (c->status & (ATA_ERR | ATA_DF))
        return IDE_DEVICE_ERROR;
    if (c->bmista & BMISTA_ERROR)
        return IDE_DMA_ERROR;
    if (write)
        c->sectors_written += count;
    else
        c->sectors_read += count;
    return IDE_OK;
}

int ide_flush(struct ide_chan *c)
{
    if (ata_poll_bsy(c->ctl, c->bsy_polls) & ATA_BSY)
        return IDE_TIMEOUT;
    outb((uint16_t)(c->io + ATA_REG_DEVICE), 0xE0);
    c->done = 0;
    outb((uint16_t)(c->io + ATA_REG_STATUS), ATA_CMD_FLUSH_CACHE);
    c->commands++;
    int rc = ide_wait_irq(c);
    if (rc)
        return rc;
    return (c->status & (ATA_ERR | ATA_DF)) ? IDE_DEVICE_ERROR : IDE_OK;
}

struct ide_write_try ide_try_write(struct ide_chan *c, uint32_t lba, const void *buf)
{
    struct ide_write_try t = { IDE_OK, 0, 0, 0, 0 };
    if (ata_poll_bsy(c->ctl, c->bsy_polls) & ATA_BSY) {
        t.rc = IDE_TIMEOUT;
        return t;
    }
    ide_taskfile(c, lba, 1);
    c->done = 0;
    outb((uint16_t)(c->io + ATA_REG_STATUS), ATA_CMD_WRITE_SECTORS);
    uint8_t s = ata_poll_bsy(c->ctl, c->bsy_polls);
    if ((s & ATA_DRQ) && !(s & ATA_ERR)) {
        t.data_phase = 1;
        outsw((uint16_t)(c->io + ATA_REG_DATA), buf, 256);
        t.rc = ide_wait_irq(c);
        s = t.rc ? inb(c->ctl) : c->status;
    } else if (c->done) {
        s = c->status;
    }
    t.status = s;
    t.error = inb((uint16_t)(c->io + ATA_REG_ERROR));
    (void)inb((uint16_t)(c->io + ATA_REG_STATUS));
    t.refused = (s & ATA_ERR) && (t.error & ATA_ER_ABRT);
    return t;
}

const char *ide_strerror(const struct ide_chan *c, int rc)
{
    switch (rc) {
    case IDE_OK: return "ok";
    case IDE_NO_CONTROLLER: return "no PIIX3 IDE controller";
    case IDE_NO_DISK: return c->irq == 15 ? "no disk on the secondary master" : "no disk on the primary master";
    case IDE_BAD_REQUEST: return "bad request";
    case IDE_TIMEOUT: return "timeout";
    case IDE_DEVICE_ERROR: return "device error";
    case IDE_DMA_ERROR: return "bus master error";
    default: return "?";
    }
}
