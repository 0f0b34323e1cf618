/* ata_dma: PIIX3 bus master IDE DMA on the primary master, printing only facts identical under QEMU 7.2: the IDE
 * function on PCI (ids, command register, BAR4), bus mastering enabled in the command register, READ/WRITE DMA with
 * exact, larger and smaller PRD tables (BMISTA after completion and after Stop, ATA status, IRQ 14 count), the ATA
 * command before or after Start, a DMA past the end of the disk, a PRD crossing 64 KiB, LBA48 READ/WRITE DMA EXT of
 * 256 KiB polled to completion through BMISTA (whether Active was seen in flight is a race under QEMU: see the
 * emu-only kernel dma_active), Stop while such a transfer may be in flight (QEMU completes it), and DMA with bus mastering disabled. Completion is taken from IRQ 14 through the PIC.
 * Needs a disk of at least 1 MiB on the primary master; writes LBA 300-315 and 1024-1535 (also 1536-2047) by DMA. */
#include "fw.h"
#include "ata.h"
#include "util.h"

#define PRD_TABLE ((volatile struct prd *)0x300000)
#define BUF_A ((uint8_t *)0x400000)     /* 256 KiB */
#define BUF_B ((uint8_t *)0x440000)     /* 256 KiB */
#define BUF_C ((uint8_t *)0x480000)     /* 64 KiB, for small transfers */
#define LONG_SECTORS 512u               /* 256 KiB */

static uint16_t bm;                     /* bus master base (BAR4 & ~3) */
static volatile uint32_t irqs;
static volatile uint8_t bmis_at_irq, ata_at_irq;
static uint32_t capacity = 2048;

static void on_irq14(struct regs *r)
{
    (void)r;
    irqs++;
    bmis_at_irq = inb((uint16_t)(bm + BMISTA));
    ata_at_irq = inb(ATA_STATUS);       /* reading the status register lowers INTRQ */
    outb(0xA0, 0x20);
    outb(0x20, 0x20);
}

static uint8_t bmis(void) { return inb((uint16_t)(bm + BMISTA)); }
static void bmis_clear(void)
{
    outb((uint16_t)(bm + BMISTA), (uint8_t)((bmis() & 0x60) | BMISTA_ERROR | BMISTA_INTERRUPT));
}

static void prd_set(int i, const void *base, uint32_t bytes, int last)
{
    PRD_TABLE[i].base = (uint32_t)base;
    PRD_TABLE[i].count = (bytes & 0xFFFF) | (last ? PRD_EOT : 0);
}

/* Wait (sti/hlt) for `n` IRQ 14s in total; IF is 0 again afterwards. */
static void wait_irqs(uint32_t n)
{
    for (uint32_t i = 0; irqs < n && i < 100000; i++) {
        sti_hlt();
        cli();
    }
}

/* Wait until Active clears (the smaller-PRD and bus-error rows raise no IRQ). */
static void wait_inactive(void)
{
    uint32_t i = 0;
    while ((bmis() & BMISTA_ACTIVE) && i < ATA_POLL_LIMIT / 16) {
        spin(100);
        i++;
    }
}

static void ata_dma_cmd(uint8_t cmd, uint32_t lba, uint32_t sectors)
{
    if (cmd == ATA_CMD_READ_DMA_EXT || cmd == ATA_CMD_WRITE_DMA_EXT)
        ata_lba48(lba, 0, (uint16_t)sectors);
    else
        ata_lba28(lba, (uint8_t)sectors);
    outb(ATA_COMMAND, cmd);
}

static void bm_start(int to_memory)
{
    outb((uint16_t)(bm + BMIDTP), 0);
    outl((uint16_t)(bm + BMIDTP), (uint32_t)PRD_TABLE);
    outb((uint16_t)(bm + BMICOM), (uint8_t)(BMICOM_SSBM | (to_memory ? BMICOM_RWCON : 0)));
}

static void bm_stop(int to_memory) { outb((uint16_t)(bm + BMICOM), to_memory ? BMICOM_RWCON : 0); }

/* The ATA command and Start in either order, completion by IRQ 14, then Stop. Prints the truth-table facts. */
static void dma(const char *what, uint8_t cmd, uint32_t lba, uint32_t sectors, int start_first)
{
    int to_memory = cmd == ATA_CMD_READ_DMA || cmd == ATA_CMD_READ_DMA_EXT;
    uint32_t before = irqs;
    bmis_clear();
    if (start_first) {
        bm_start(to_memory);
        ata_dma_cmd(cmd, lba, sectors);
    } else {
        ata_dma_cmd(cmd, lba, sectors);
        bm_start(to_memory);
    }
    wait_irqs(before + 1);
    uint8_t after = bmis();
    bm_stop(to_memory);
    printf("%s: irqs %u, bmista at irq %02x, ata at irq %02x, bmista %02x, after Stop %02x", what, irqs - before,
           bmis_at_irq, ata_at_irq, after, bmis());
    bmis_clear();
    printf(", after clearing %02x, ata %02x error %02x\n", bmis(), inb(ATA_STATUS), inb(ATA_ERROR));
}

static int find_ide(void)
{
    uint32_t id = pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, 0);
    uint32_t class = pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, 8);
    uint16_t command = pci_read16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND);
    uint32_t bar4 = pci_read32(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_BAR4);
    /* BAR4 is not printed here (ide_slots prints it): 0xC001 under the reference -nodefaults, 0xC041 without. */
    printf("pci 00:01.1 id %08x class %08x command %04x bar4 I/O: %s\n", id, class, command,
           (bar4 & 1) ? "yes" : "no");
    if (id != 0x70108086u || !(bar4 & 1))
        return 0;
    bm = (uint16_t)(bar4 & 0xFFFC);
    printf("bus master block: bmicom %02x bmista %02x, secondary bmicom %02x bmista %02x, bmidtp %08x\n",
           inb((uint16_t)(bm + BMICOM)), bmis(), inb((uint16_t)(bm + 8 + BMICOM)), inb((uint16_t)(bm + 8 + BMISTA)),
           inl((uint16_t)(bm + BMIDTP)));
    /* BMIDTP keeps bits 1:0 clear; BMICOM/BMISTA are byte registers (a word read gives all-ones in QEMU). */
    outl((uint16_t)(bm + BMIDTP), 0x12345677u);
    printf("bmidtp after writing 12345677: %08x; word read of bmicom: %04x\n", inl((uint16_t)(bm + BMIDTP)),
           inw((uint16_t)(bm + BMICOM)));
    return 1;
}

static void test_bus_master_disabled(void)
{
    memset(BUF_C, 0xEE, 4096);
    prd_set(0, BUF_C, 4096, 1);
    uint32_t before = irqs;
    ata_dma_cmd(ATA_CMD_READ_DMA, 0, 8);
    bm_start(1);
    wait_irqs(before + 1);
    uint8_t after = bmis();
    bm_stop(1);
    int untouched = 1;
    for (int i = 0; i < 4096; i++)
        if (BUF_C[i] != 0xEE)
            untouched = 0;
    printf("READ DMA with bus mastering off: irqs %u, bmista %02x, ata %02x, memory untouched: %s\n", irqs - before,
           after, inb(ATA_STATUS), untouched ? "yes" : "no");
    bmis_clear();
}

static void enable_bus_master(void)
{
    uint16_t command = pci_read16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND);
    pci_write16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND, (uint16_t)(command | PCI_CMD_BUS_MASTER));
    printf("bus mastering enabled: command %04x\n", pci_read16(0, IDE_PCI_DEV, IDE_PCI_FN, PCI_REG_COMMAND));
}

static void print_buf_lines(const uint8_t *b, uint32_t first, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        printf("  lba %u: ", first + i);
        print_line(b + i * 512);
        printf("\n");
    }
}

static void test_truth_table(void)
{
    memset(BUF_C, 0, 8192);
    prd_set(0, BUF_C, 4096, 1);
    dma("READ DMA lba 0 x8, exact PRD, command then Start", ATA_CMD_READ_DMA, 0, 8, 0);
    print_buf_lines(BUF_C, 0, 1);
    print_buf_lines(BUF_C + 7 * 512, 7, 1);

    memset(BUF_C, 0, 8192);
    dma("READ DMA lba 8 x8, exact PRD, Start then command", ATA_CMD_READ_DMA, 8, 8, 1);
    print_buf_lines(BUF_C, 8, 1);

    memset(BUF_C, 0, 16384);
    prd_set(0, BUF_C, 4096, 0);
    prd_set(1, BUF_C + 4096, 8192, 1);
    dma("READ DMA lba 16 x8, larger PRD table (12 KiB)", ATA_CMD_READ_DMA, 16, 8, 0);
    printf("  bytes past the transfer untouched: %s\n", BUF_C[4096] == 0 && BUF_C[8191] == 0 ? "yes" : "no");

    memset(BUF_C, 0, 8192);
    prd_set(0, BUF_C, 2048, 1);
    uint32_t before = irqs;
    bmis_clear();
    ata_dma_cmd(ATA_CMD_READ_DMA, 24, 8);
    bm_start(1);
    wait_inactive();
    uint8_t b = bmis();
    bm_stop(1);
    printf("READ DMA lba 24 x8, smaller PRD table (2 KiB): irqs %u, bmista %02x, ata %02x, memory untouched: %s\n",
           irqs - before, b, inb(ATA_ALTSTATUS), BUF_C[0] == 0 && BUF_C[2047] == 0 ? "yes" : "no");
    (void)inb(ATA_STATUS);
    bmis_clear();

    prd_set(0, BUF_C, 4096, 1);
    dma("READ DMA at lba = capacity", ATA_CMD_READ_DMA, capacity, 8, 0);
    dma("READ DMA 8 from capacity-4", ATA_CMD_READ_DMA, capacity - 4, 8, 0);

    /* A PRD whose buffer crosses a 64 KiB boundary (a real PIIX forbids it; QEMU and emu accept it). */
    memset(BUF_B, 0, 0x20000);
    prd_set(0, BUF_B + 0xF000, 8192, 1);
    dma("READ DMA lba 32 x16, PRD crossing 64 KiB", ATA_CMD_READ_DMA, 32, 16, 0);
    print_buf_lines(BUF_B + 0xF000 + 15 * 512, 47, 1);
}

static void test_write_dma(void)
{
    fill_pattern(BUF_C, 16, 300, 0x444D4131u);   /* "DMA1" */
    prd_set(0, BUF_C, 4096, 0);
    prd_set(1, BUF_C + 4096, 4096, 1);
    dma("WRITE DMA lba 300 x16, two PRDs", ATA_CMD_WRITE_DMA, 300, 16, 0);
    memset(BUF_B, 0, 8192);
    prd_set(0, BUF_B, 8192, 1);
    dma("READ DMA lba 300 x16 back", ATA_CMD_READ_DMA, 300, 16, 1);
    printf("  read back matches: %s\n", memcmp(BUF_B, BUF_C, 8192) == 0 ? "yes" : "no");
}

/* Start the engine and poll BMISTA until the transfer is over: the first read follows the Start write directly
 * (QEMU completes a request on its own thread a few microseconds later). Returns how many reads saw Active without
 * Interrupt. */
static uint32_t start_and_poll(int to_memory)
{
    outl((uint16_t)(bm + BMIDTP), (uint32_t)PRD_TABLE);
    uint32_t seen = 0, polls = 0;
    uint8_t s;
    outb((uint16_t)(bm + BMICOM), (uint8_t)(BMICOM_SSBM | (to_memory ? BMICOM_RWCON : 0)));
    do {
        s = bmis();
        if ((s & (BMISTA_ACTIVE | BMISTA_INTERRUPT)) == BMISTA_ACTIVE)
            seen++;
        polls++;
    } while ((s & BMISTA_ACTIVE) && !(s & BMISTA_INTERRUPT) && polls < ATA_POLL_LIMIT);
    return seen;
}

/* 256 KiB by LBA48 DMA, 4 PRDs of 64 KiB (count 0 = 64 KiB); BMISTA is polled while the transfer is in flight. */
static void long_dma(uint8_t cmd, uint8_t *b, uint32_t lba, uint32_t sectors)
{
    int to_memory = cmd == ATA_CMD_READ_DMA_EXT;
    uint32_t n = (sectors * 512 + 0xFFFF) / 0x10000;
    for (uint32_t i = 0; i < n; i++)
        prd_set((int)i, b + i * 0x10000, sectors * 512 - i * 0x10000, i == n - 1);
    uint32_t before = irqs;
    bmis_clear();
    ata_dma_cmd(cmd, lba, sectors);
    uint32_t seen = start_and_poll(to_memory);
    wait_irqs(before + 1);
    uint8_t after = bmis();
    bm_stop(to_memory);
    {
        /* Not printed: whether `seen` is 0. Under QEMU the request usually completes on the host before the
         * guest's next IN (observed: Active seen in 2 runs of 12), so that fact is a race there; the emu-only
         * kernel dma_active prints it. */
        (void)seen;
        printf("%s lba %u x%u\n", to_memory ? "READ DMA EXT" : "WRITE DMA EXT", lba, sectors);
        printf("  irqs %u, bmista at irq %02x, bmista %02x, after Stop %02x, ata %02x\n", irqs - before, bmis_at_irq,
               after, bmis(), inb(ATA_STATUS));
    }
    bmis_clear();
}

static void test_long(void)
{
    fill_pattern(BUF_A, LONG_SECTORS, 1024, 0x4C4F4E47u);   /* "LONG" */
    long_dma(ATA_CMD_WRITE_DMA_EXT, BUF_A, 1024, LONG_SECTORS);
    memset(BUF_B, 0, LONG_SECTORS * 512);
    long_dma(ATA_CMD_READ_DMA_EXT, BUF_B, 1024, LONG_SECTORS);
    printf("  read back matches: %s, fnv %08x\n", memcmp(BUF_A, BUF_B, LONG_SECTORS * 512) == 0 ? "yes" : "no",
           fnv1a(BUF_B, LONG_SECTORS * 512));

    /* Stop right after Start: QEMU drains the request, so the whole transfer still completes. */
    fill_pattern(BUF_A, LONG_SECTORS, 1536, 0x53544F50u);   /* "STOP" */
    for (int i = 0; i < 4; i++)
        prd_set(i, BUF_A + i * 0x10000, 0, i == 3);
    uint32_t before = irqs;
    bmis_clear();
    ata_dma_cmd(ATA_CMD_WRITE_DMA_EXT, 1536, LONG_SECTORS);
    bm_start(0);
    bm_stop(0);
    uint8_t s = bmis();
    wait_irqs(before + 1);
    printf("WRITE DMA EXT lba 1536 x512 stopped at once: bmista after Stop %02x, irqs %u, ata %02x\n", s,
           irqs - before, inb(ATA_STATUS));
    bmis_clear();
    memset(BUF_B, 0, LONG_SECTORS * 512);
    for (int i = 0; i < 4; i++)
        prd_set(i, BUF_B + i * 0x10000, 0, i == 3);
    dma("READ DMA EXT lba 1536 x512 back", ATA_CMD_READ_DMA_EXT, 1536, LONG_SECTORS, 0);
    printf("  read back matches: %s\n", memcmp(BUF_A, BUF_B, LONG_SECTORS * 512) == 0 ? "yes" : "no");
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("ata_dma: bus master IDE DMA on the primary master\n");
    pic_remap(0x20, 0x28);
    set_handler(0x28 + 6, on_irq14);
    if (!find_ide()) {
        printf("no PIIX3 IDE function\n");
        exit(1);
    }
    ata_master_irq_on();
    test_bus_master_disabled();
    enable_bus_master();
    test_truth_table();
    test_write_dma();
    test_long();
    outb(ATA_COMMAND, ATA_CMD_FLUSH_CACHE);
    wait_irqs(irqs + 1);
    printf("ata_dma done: %u IRQ 14s in all\n", irqs);
    exit(0);
}
