/* ide_slots: all four IDE slots, the secondary channel's bus master DMA, BAR4 sizing and moves, and DMA outside RAM,
 * printing only facts identical under QEMU 7.2 with the reference command line of tools/qemu_ref.py (-nodefaults,
 * -m 32, disks at -drive index=0..3). PCI: BAR4 as SeaBIOS left it, the BAR4 size probe (all-ones write), the bus
 * master block while sizing, with I/O decode off and after moving BAR4 to 0xD000 (everything after runs there).
 * ATA: each slot selected, IDENTIFY (serial, model, capacity), READ SECTORS and WRITE SECTORS by PIO. DMA: READ DMA
 * on the primary slave, secondary master (Start before and after the command), WRITE DMA on the secondary slave,
 * both channels' engines at once (IRQ 14 and 15 through the PIC), and DMA whose buffer lies partly or wholly
 * outside guest RAM (past 32 MiB): the BMISTA Error bit is not printed there (emu sets it, QEMU does not; see
 * docs/devices-ide.md), all else is. Writes: LBA 100 + slot by PIO on every disk; secondary slave LBA 20-35,
 * 40-47, 48-55 by DMA. Without a disk in a slot the kernel says so and skips that slot's parts. */
#include "fw.h"
#include "ata.h"
#include "util.h"

#define RAM_TOP 0x2000000u              /* -m 32 under QEMU and emu */
#define OUTSIDE_RAM 0x10000000u         /* nothing decodes it (QEMU: unassigned PCI memory) */
#define NEW_BM_BASE 0xD000u
#define PRD_PRI ((volatile struct prd *)0x300000)
#define PRD_SEC ((volatile struct prd *)0x301000)
#define BUF_A ((uint8_t *)0x400000)     /* 64 KiB each */
#define BUF_B ((uint8_t *)0x410000)
#define BUF_C ((uint8_t *)0x420000)
#define BUF_D ((uint8_t *)0x430000)
#define IDBUF ((uint16_t *)0x440000)

struct channel {
    uint16_t io, ctl;
    uint8_t bm_off, irq;
};

static const struct channel CHANNELS[2] = {{0x1F0, 0x3F6, 0, 14}, {0x170, 0x376, 8, 15}};
static const char *const SLOT_NAMES[4] = {"primary master", "primary slave", "secondary master", "secondary slave"};

static uint16_t bm;                     /* bus master base (BAR4 & ~3) */
static volatile uint32_t irqs[2];
static volatile uint8_t bmis_at_irq[2], ata_at_irq[2];
static int present[4];
static uint32_t capacity[4];

static uint16_t bmreg(int ch, int reg) { return (uint16_t)(bm + CHANNELS[ch].bm_off + reg); }
static uint8_t bmis(int ch) { return inb(bmreg(ch, BMISTA)); }
static void bmis_clear(int ch)
{
    outb(bmreg(ch, BMISTA), (uint8_t)((bmis(ch) & 0x60) | BMISTA_ERROR | BMISTA_INTERRUPT));
}
static uint8_t status(int ch) { return inb((uint16_t)(CHANNELS[ch].io + 7)); }
static uint8_t altstatus(int ch) { return inb(CHANNELS[ch].ctl); }

static void on_irq(int ch)
{
    irqs[ch]++;
    bmis_at_irq[ch] = bmis(ch);
    ata_at_irq[ch] = status(ch);        /* reading the status register lowers INTRQ */
    outb(0xA0, 0x20);
    outb(0x20, 0x20);
}

static void on_irq14(struct regs *r) { (void)r; on_irq(0); }
static void on_irq15(struct regs *r) { (void)r; on_irq(1); }

static uint8_t wait_not_busy(int ch)
{
    uint8_t s = altstatus(ch);
    for (uint32_t i = 0; (s & ATA_BSY) && i < ATA_POLL_LIMIT; i++)
        s = altstatus(ch);
    if (s & ATA_BSY)
        fail("ata: BSY never cleared");
    return s;
}

static uint8_t wait_drq(int ch)
{
    uint8_t s = altstatus(ch);
    for (uint32_t i = 0; ((s & ATA_BSY) || !(s & (ATA_DRQ | ATA_ERR))) && i < ATA_POLL_LIMIT; i++)
        s = altstatus(ch);
    if ((s & ATA_BSY) || !(s & (ATA_DRQ | ATA_ERR)))
        fail("ata: neither DRQ nor ERR");
    return s;
}

/* Select a slot's drive; 1 when a drive answers (status neither 0 nor all-ones). */
static int select_slot(int slot)
{
    int ch = slot >> 1;
    outb((uint16_t)(CHANNELS[ch].io + 6), (uint8_t)(0xA0 | ((slot & 1) << 4)));
    for (int i = 0; i < 4; i++)
        (void)altstatus(ch);            /* the 400 ns settle time of ATA-6 9.2 */
    uint8_t s = altstatus(ch);
    if (s == 0x00 || s == 0xFF)
        return 0;
    wait_not_busy(ch);
    return 1;
}

/* LBA28 task file for a slot: count, LBA 27:0, device = LBA | drive bit. */
static void lba28(int slot, uint32_t lba, uint8_t count)
{
    uint16_t io = CHANNELS[slot >> 1].io;
    outb((uint16_t)(io + 2), count);
    outb((uint16_t)(io + 3), (uint8_t)lba);
    outb((uint16_t)(io + 4), (uint8_t)(lba >> 8));
    outb((uint16_t)(io + 5), (uint8_t)(lba >> 16));
    outb((uint16_t)(io + 6), (uint8_t)(0xE0 | ((slot & 1) << 4) | ((lba >> 24) & 0x0F)));
}

static void print_ata_string(const uint16_t *w, int words)
{
    char s[41];
    int n = 0;
    for (int i = 0; i < words; i++) {
        s[n++] = (char)(w[i] >> 8);
        s[n++] = (char)w[i];
    }
    while (n > 0 && s[n - 1] == ' ')
        n--;
    s[n] = 0;
    printf("\"%s\"", s);
}

static void test_pci(void)
{
    uint32_t id = pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, 0);
    uint32_t bar4 = pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4);
    printf("pci 00:01.1 id %08x command %04x bar4 %08x\n", id, pci_read16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND),
           bar4);
    if (id != 0x70108086u || !(bar4 & 1)) {
        printf("no PIIX3 IDE function with an I/O BAR4\n");
        exit(1);
    }
    bm = (uint16_t)(bar4 & 0xFFFC);
    outl(bmreg(1, BMIDTP), 0x00ABCDE0u);
    printf("secondary bmidtp at %04x after writing 00abcde0: %08x\n", bmreg(1, BMIDTP), inl(bmreg(1, BMIDTP)));

    /* Sizing: all-ones written, the size mask read back; the block is not decoded meanwhile. */
    pci_write32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4, 0xFFFFFFFFu);
    uint32_t mask = pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4);
    printf("bar4 sizing: reads %08x (I/O, %u bytes); bmidtp at %04x meanwhile %08x\n", mask, ~(mask & ~3u) + 1,
           bmreg(1, BMIDTP), inl(bmreg(1, BMIDTP)));
    pci_write32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4, bar4);
    printf("bar4 restored: %08x, bmidtp %08x\n", pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4),
           inl(bmreg(1, BMIDTP)));

    /* I/O decode off: the bus master block goes away, the legacy ATA ports stay. */
    uint16_t command = pci_read16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND);
    pci_write16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND, (uint16_t)(command & ~1u));
    printf("I/O decode off: bmidtp %08x, bmicom %02x\n", inl(bmreg(1, BMIDTP)), inb(bmreg(0, BMICOM)));
    pci_write16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND, command);
    printf("I/O decode on: bmidtp %08x\n", inl(bmreg(1, BMIDTP)));

    /* Move the block; the registers move with it (BMIDTP keeps its value), the old ports read all-ones. */
    uint16_t old = bm;
    pci_write32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4, NEW_BM_BASE | 1);
    bm = (uint16_t)(pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4) & 0xFFFC);
    printf("bar4 moved: reads %08x; bmidtp at %04x %08x, at the old %04x %08x\n",
           pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4), bmreg(1, BMIDTP), inl(bmreg(1, BMIDTP)),
           (uint16_t)(old + 12), inl((uint16_t)(old + 12)));
    outl(bmreg(1, BMIDTP), 0);

    pci_write16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND, (uint16_t)(command | PCI_CMD_BUS_MASTER));
    printf("bus mastering enabled: command %04x\n", pci_read16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND));
}

static void test_identify(int slot)
{
    int ch = slot >> 1;
    present[slot] = select_slot(slot);
    if (!present[slot]) {
        printf("%s: no drive (status %02x)\n", SLOT_NAMES[slot], altstatus(ch));
        return;
    }
    outb((uint16_t)(CHANNELS[ch].io + 7), ATA_CMD_IDENTIFY);
    uint8_t s = wait_drq(ch);
    if (s & ATA_ERR) {
        printf("%s: IDENTIFY aborted, status %02x\n", SLOT_NAMES[slot], s);
        present[slot] = 0;
        return;
    }
    insw(CHANNELS[ch].io, IDBUF, 256);
    capacity[slot] = IDBUF[60] | ((uint32_t)IDBUF[61] << 16);
    printf("%s: status %02x, serial ", SLOT_NAMES[slot], s);
    print_ata_string(IDBUF + 10, 10);
    printf(" model ");
    print_ata_string(IDBUF + 27, 20);
    printf(" sectors %u, status after %02x\n", capacity[slot], status(ch));
}

static void test_pio(int slot)
{
    int ch = slot >> 1;
    uint16_t io = CHANNELS[ch].io;
    select_slot(slot);
    uint32_t lba = 3 + (uint32_t)slot * 5;
    lba28(slot, lba, 2);
    outb((uint16_t)(io + 7), ATA_CMD_READ_SECTORS);
    for (int i = 0; i < 2; i++) {
        wait_drq(ch);
        insw(io, BUF_A + i * 512, 256);
    }
    printf("%s: READ SECTORS lba %u x2: ", SLOT_NAMES[slot], lba);
    print_line(BUF_A);
    printf(" ");
    print_line(BUF_A + 512);
    printf(", status %02x\n", wait_not_busy(ch));

    fill_pattern(BUF_A, 1, 100 + (uint32_t)slot, 0x534C4F30u + (uint32_t)slot);   /* "SLO0".."SLO3" */
    lba28(slot, 100 + (uint32_t)slot, 1);
    outb((uint16_t)(io + 7), ATA_CMD_WRITE_SECTORS);
    wait_drq(ch);
    outsw(io, BUF_A, 256);
    uint8_t s = wait_not_busy(ch);
    outb((uint16_t)(io + 7), ATA_CMD_FLUSH_CACHE);
    printf("%s: WRITE SECTORS lba %u x1: status %02x, after FLUSH CACHE %02x\n", SLOT_NAMES[slot],
           100 + slot, s, wait_not_busy(ch));
}

static void prd_set(volatile struct prd *t, int i, uint32_t base, uint32_t bytes, int last)
{
    t[i].base = base;
    t[i].count = (bytes & 0xFFFF) | (last ? PRD_EOT : 0);
}

static void wait_irqs(uint32_t want14, uint32_t want15)
{
    for (uint32_t i = 0; (irqs[0] < want14 || irqs[1] < want15) && i < 100000; i++) {
        sti_hlt();
        cli();
    }
}

static void dma_cmd(int slot, uint8_t cmd, uint32_t lba, uint32_t sectors)
{
    select_slot(slot);
    lba28(slot, lba, (uint8_t)sectors);
    outb((uint16_t)(CHANNELS[slot >> 1].io + 7), cmd);
}

static void bm_start(int ch, volatile struct prd *table, int to_memory)
{
    outl(bmreg(ch, BMIDTP), (uint32_t)table);
    outb(bmreg(ch, BMICOM), (uint8_t)(BMICOM_SSBM | (to_memory ? BMICOM_RWCON : 0)));
}

/* One DMA command on a slot with its channel's engine; completion by the channel's IRQ, then Stop. BMISTA is printed
 * without the Error bit (`mask`), which only the outside-RAM cases could set, and only under emu. */
static void dma(int slot, const char *what, uint8_t cmd, uint32_t lba, uint32_t sectors, int start_first)
{
    int ch = slot >> 1, to_memory = cmd == ATA_CMD_READ_DMA;
    volatile struct prd *table = ch ? PRD_SEC : PRD_PRI;
    uint32_t b14 = irqs[0], b15 = irqs[1];
    uint8_t mask = (uint8_t)~BMISTA_ERROR;
    bmis_clear(ch);
    if (start_first) {
        bm_start(ch, table, to_memory);
        dma_cmd(slot, cmd, lba, sectors);
    } else {
        dma_cmd(slot, cmd, lba, sectors);
        bm_start(ch, table, to_memory);
    }
    wait_irqs(b14 + (ch == 0), b15 + (ch == 1));
    uint8_t after = bmis(ch) & mask;
    outb(bmreg(ch, BMICOM), to_memory ? BMICOM_RWCON : 0);
    printf("%s %s lba %u x%u: irq14 %u irq15 %u, bmis at irq %02x, ata at irq %02x, bmis %02x, after Stop %02x\n",
           SLOT_NAMES[slot], what, lba, sectors, irqs[0] - b14, irqs[1] - b15, bmis_at_irq[ch] & mask, ata_at_irq[ch],
           after, bmis(ch) & mask);
    bmis_clear(ch);
}

static void test_dma(void)
{
    if (present[1]) {
        memset(BUF_A, 0, 8192);
        prd_set(PRD_PRI, 0, (uint32_t)BUF_A, 4096, 1);
        dma(1, "READ DMA", ATA_CMD_READ_DMA, 0, 8, 0);
        printf("  ");
        print_line(BUF_A);
        printf(" ");
        print_line(BUF_A + 7 * 512);
        printf("\n");
    }
    if (present[2]) {
        memset(BUF_B, 0, 8192);
        prd_set(PRD_SEC, 0, (uint32_t)BUF_B, 2048, 0);
        prd_set(PRD_SEC, 1, (uint32_t)BUF_B + 4096, 2048, 1);
        dma(2, "READ DMA (Start first, two PRDs)", ATA_CMD_READ_DMA, 9, 8, 1);
        printf("  ");
        print_line(BUF_B);
        printf(" ");
        print_line(BUF_B + 4096 + 1536);
        printf(", gap untouched: %s\n", BUF_B[2048] == 0 && BUF_B[4095] == 0 ? "yes" : "no");
    }
    if (present[3]) {
        fill_pattern(BUF_C, 16, 20, 0x53454353u);          /* "SECS" */
        prd_set(PRD_SEC, 0, (uint32_t)BUF_C, 8192, 1);
        dma(3, "WRITE DMA", ATA_CMD_WRITE_DMA, 20, 16, 0);
        memset(BUF_D, 0, 8192);
        prd_set(PRD_SEC, 0, (uint32_t)BUF_D, 8192, 1);
        dma(3, "READ DMA", ATA_CMD_READ_DMA, 20, 16, 1);
        printf("  read back matches: %s\n", memcmp(BUF_C, BUF_D, 8192) == 0 ? "yes" : "no");
    }
}

/* Both engines at once: 64 KiB (a count of 0) from the primary master and from the secondary slave. Which one
 * finishes first is a race under QEMU; only each channel's own result is printed. */
static void test_both_channels(void)
{
    if (!present[0] || !present[3])
        return;
    memset(BUF_A, 0, 0x10000);
    memset(BUF_B, 0, 0x10000);
    prd_set(PRD_PRI, 0, (uint32_t)BUF_A, 0, 1);
    prd_set(PRD_SEC, 0, (uint32_t)BUF_B, 0, 1);
    uint32_t b14 = irqs[0], b15 = irqs[1];
    bmis_clear(0);
    bmis_clear(1);
    dma_cmd(0, ATA_CMD_READ_DMA, 128, 128);
    dma_cmd(3, ATA_CMD_READ_DMA, 256, 128);
    bm_start(0, PRD_PRI, 1);
    bm_start(1, PRD_SEC, 1);
    wait_irqs(b14 + 1, b15 + 1);
    printf("both engines, READ DMA x128 each: irq14 %u irq15 %u, bmis %02x/%02x, ata %02x/%02x\n", irqs[0] - b14,
           irqs[1] - b15, bmis(0), bmis(1), status(0), status(1));
    outb(bmreg(0, BMICOM), BMICOM_RWCON);
    outb(bmreg(1, BMICOM), BMICOM_RWCON);
    printf("  primary: ");
    print_line(BUF_A);
    printf(" ... ");
    print_line(BUF_A + 127 * 512);
    printf(" fnv %08x\n  secondary: ", fnv1a(BUF_A, 0x10000));
    print_line(BUF_B);
    printf(" ... ");
    print_line(BUF_B + 127 * 512);
    printf(" fnv %08x\n", fnv1a(BUF_B, 0x10000));
    bmis_clear(0);
    bmis_clear(1);
}

/* Buffers past the end of RAM: the part in RAM is transferred, the rest goes nowhere (reads) or comes as zeros
 * (writes), and the command completes normally. */
static void test_outside_ram(void)
{
    if (!present[2] || !present[3])
        return;
    uint8_t *edge = (uint8_t *)(RAM_TOP - 2048);
    memset(BUF_C, 0, 4096);
    prd_set(PRD_SEC, 0, (uint32_t)BUF_C, 4096, 1);
    dma(2, "READ DMA into RAM", ATA_CMD_READ_DMA, 40, 8, 0);

    prd_set(PRD_SEC, 0, OUTSIDE_RAM, 4096, 1);
    dma(2, "READ DMA to 10000000 (outside RAM)", ATA_CMD_READ_DMA, 40, 8, 0);

    memset(edge, 0xEE, 2048);
    prd_set(PRD_SEC, 0, RAM_TOP - 2048, 4096, 1);
    dma(2, "READ DMA to the last 2 KiB of RAM and beyond", ATA_CMD_READ_DMA, 40, 8, 0);
    printf("  the part in RAM holds lba 40-43: %s\n", memcmp(edge, BUF_C, 2048) == 0 ? "yes" : "no");

    prd_set(PRD_SEC, 0, OUTSIDE_RAM, 4096, 1);
    dma(3, "WRITE DMA from 10000000 (outside RAM)", ATA_CMD_WRITE_DMA, 40, 8, 0);

    fill_pattern(edge, 4, 48, 0x45444745u);               /* "EDGE" */
    prd_set(PRD_SEC, 0, RAM_TOP - 2048, 4096, 1);
    dma(3, "WRITE DMA from the last 2 KiB of RAM and beyond", ATA_CMD_WRITE_DMA, 48, 8, 0);

    memset(BUF_D, 0x55, 8192);
    prd_set(PRD_SEC, 0, (uint32_t)BUF_D, 8192, 1);
    dma(3, "READ DMA back", ATA_CMD_READ_DMA, 40, 16, 0);
    uint32_t zeros = 0;
    for (uint32_t i = 0; i < 4096; i++)
        zeros += BUF_D[i] == 0;
    uint32_t tail_zeros = 0;
    for (uint32_t i = 6144; i < 8192; i++)
        tail_zeros += BUF_D[i] == 0;
    printf("  lba 40-47: %u of 4096 bytes zero; lba 48-51 as written: %s; lba 52-55: %u of 2048 bytes zero\n", zeros,
           memcmp(BUF_D + 4096, edge, 2048) == 0 ? "yes" : "no", tail_zeros);
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("ide_slots: four IDE slots, both bus master channels, BAR4 moves, DMA outside RAM\n");
    pic_remap(0x20, 0x28);
    set_handler(0x28 + 6, on_irq14);
    set_handler(0x28 + 7, on_irq15);
    test_pci();
    outb(CHANNELS[0].ctl, ATA_NIEN);    /* PIO without interrupts */
    outb(CHANNELS[1].ctl, ATA_NIEN);
    for (int slot = 0; slot < 4; slot++)
        test_identify(slot);
    for (int slot = 0; slot < 4; slot++)
        if (present[slot])
            test_pio(slot);
    outb(CHANNELS[0].ctl, 0);
    outb(CHANNELS[1].ctl, 0);
    (void)status(0);
    (void)status(1);
    pic_unmask(14);
    pic_unmask(15);
    test_dma();
    test_both_channels();
    test_outside_ram();
    printf("ide_slots done: %u IRQ 14s, %u IRQ 15s\n", irqs[0], irqs[1]);
    exit(0);
}
