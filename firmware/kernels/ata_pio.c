/* ata_pio: the primary master ATA disk by PIO, printing only facts identical under QEMU 7.2: IDENTIFY (model,
 * serial, firmware, geometry, capacity and feature words), READ/WRITE SECTORS (LBA28), SET MULTIPLE and READ/WRITE
 * MULTIPLE, READ/WRITE SECTORS EXT (LBA48) with the HOB registers, FLUSH CACHE (EXT), errors (unknown command,
 * invalid multiple count, ranges past the end), SRST and EXECUTE DEVICE DIAGNOSTIC signatures, the absent slave,
 * SET FEATURES transfer modes (IDENTIFY words 62/63/88), the empty secondary channel, nIEN (IRQ 14 seen in the PIC's IRR or not) and an IRQ-driven read (one IRQ per sector).
 * Needs a disk of at least 1 MiB on the primary master (the QEMU reference disk); it writes LBA 10-11, 100-115 and
 * 2040-2041 with a recognisable pattern, so the final disk image is compared too. */
#include "fw.h"
#include "ata.h"
#include "util.h"

static uint16_t ident[256];
static uint8_t buf[16 * 512] __attribute__((aligned(16)));
static uint8_t out[16 * 512] __attribute__((aligned(16)));
static uint32_t capacity;

static void print_string_words(const char *name, int first, int last)
{
    printf("%s \"", name);
    int end = 2 * (last - first + 1);
    char s[64];
    for (int i = first; i <= last; i++) {
        s[2 * (i - first)] = (char)(ident[i] >> 8);
        s[2 * (i - first) + 1] = (char)ident[i];
    }
    while (end > 0 && s[end - 1] == ' ')
        end--;
    for (int i = 0; i < end; i++)
        putc(s[i]);
    printf("\"\n");
}

static void print_taskfile(const char *when)
{
    printf("%s: status %02x error %02x count %02x lba %02x %02x %02x device %02x\n", when, inb(ATA_ALTSTATUS),
           inb(ATA_ERROR), inb(ATA_COUNT), inb(ATA_LBA0), inb(ATA_LBA1), inb(ATA_LBA2), inb(ATA_DEVICE));
}

/* One PIO data-in command: `blocks` DRQ blocks of `per_block` sectors into buf; prints the status of each block. */
static uint8_t pio_in(uint8_t cmd, uint32_t sectors, uint32_t per_block, int verbose)
{
    uint8_t s = 0;
    outb(ATA_COMMAND, cmd);
    for (uint32_t done = 0; done < sectors; done += per_block) {
        s = ata_wait_drq();
        if (verbose)
            printf("  block at sector %u: status %02x\n", done, s);
        if (!(s & ATA_DRQ))
            return inb(ATA_STATUS);
        uint32_t n = sectors - done < per_block ? sectors - done : per_block;
        insw(ATA_DATA, buf + done * 512, n * 256);
    }
    return ata_wait_not_busy();
}

static uint8_t pio_out(uint8_t cmd, uint32_t sectors, uint32_t per_block)
{
    uint8_t s = 0;
    outb(ATA_COMMAND, cmd);
    for (uint32_t done = 0; done < sectors; done += per_block) {
        s = ata_wait_drq();
        if (!(s & ATA_DRQ))
            return inb(ATA_STATUS);
        uint32_t n = sectors - done < per_block ? sectors - done : per_block;
        outsw(ATA_DATA, out + done * 512, n * 256);
    }
    return ata_wait_not_busy();
}

static void print_sectors(uint32_t first, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        printf("  lba %u: ", first + i);
        print_line(buf + i * 512);
        printf(" fnv %08x\n", fnv1a(buf + i * 512, 512));
    }
}

static void test_identify(void)
{
    outb(ATA_COMMAND, ATA_CMD_IDENTIFY);
    uint8_t s = ata_wait_drq();
    printf("IDENTIFY: status before data %02x\n", s);
    insw(ATA_DATA, ident, 256);
    printf("IDENTIFY: status after data %02x\n", inb(ATA_STATUS));
    print_string_words("  serial", 10, 19);
    print_string_words("  firmware", 23, 26);
    print_string_words("  model", 27, 46);
    capacity = ident[60] | ((uint32_t)ident[61] << 16);
    printf("  word 0 %04x, CHS %u/%u/%u, current CHS %u/%u/%u\n", ident[0], ident[1], ident[3], ident[6], ident[54],
           ident[55], ident[56]);
    printf("  capacity LBA28 %u sectors, LBA48 %04x%04x%04x%04x\n", capacity, ident[103], ident[102], ident[101],
           ident[100]);
    printf("  words 47 %04x 49 %04x 53 %04x 59 %04x 63 %04x 64 %04x 80 %04x 88 %04x 93 %04x\n", ident[47], ident[49],
           ident[53], ident[59], ident[63], ident[64], ident[80], ident[88], ident[93]);
    printf("  words 82-87 %04x %04x %04x %04x %04x %04x\n", ident[82], ident[83], ident[84], ident[85], ident[86],
           ident[87]);
    printf("  checksum of all 256 words %08x\n", fnv1a(ident, 512));
}

static void test_lba28(void)
{
    ata_lba28(0, 4);
    uint8_t s = pio_in(ATA_CMD_READ_SECTORS, 4, 1, 1);
    printf("READ SECTORS lba 0 count 4: final status %02x\n", s);
    print_sectors(0, 4);
    print_taskfile("  registers after");

    fill_pattern(out, 2, 10, 0x50494F31u);   /* "PIO1" */
    ata_lba28(10, 2);
    s = pio_out(ATA_CMD_WRITE_SECTORS, 2, 1);
    printf("WRITE SECTORS lba 10 count 2: final status %02x\n", s);
    print_taskfile("  registers after");
    ata_lba28(10, 2);
    pio_in(ATA_CMD_READ_SECTORS, 2, 1, 0);
    printf("  read back matches: %s\n", memcmp(buf, out, 1024) == 0 ? "yes" : "no");
}

static void test_multiple(void)
{
    outb(ATA_COUNT, 3);
    outb(ATA_COMMAND, ATA_CMD_SET_MULTIPLE);
    uint8_t s = ata_wait_not_busy();
    printf("SET MULTIPLE 3: status %02x error %02x\n", s, inb(ATA_ERROR));
    outb(ATA_COUNT, 8);
    outb(ATA_COMMAND, ATA_CMD_SET_MULTIPLE);
    s = ata_wait_not_busy();
    printf("SET MULTIPLE 8: status %02x\n", s);
    ata_lba28(20, 16);
    s = pio_in(ATA_CMD_READ_MULTIPLE, 16, 8, 1);
    printf("READ MULTIPLE lba 20 count 16 (blocks of 8): final status %02x, fnv %08x\n", s, fnv1a(buf, 16 * 512));
    print_sectors(20, 1);
    printf("  last sector: ");
    print_line(buf + 15 * 512);
    printf("\n");
    ata_lba28(40, 11);
    s = pio_in(ATA_CMD_READ_MULTIPLE, 11, 8, 1);
    printf("READ MULTIPLE lba 40 count 11 (8 + 3): final status %02x, fnv %08x\n", s, fnv1a(buf, 11 * 512));

    fill_pattern(out, 16, 100, 0x4D554C54u);  /* "MULT" */
    ata_lba28(100, 16);
    s = pio_out(ATA_CMD_WRITE_MULTIPLE, 16, 8);
    printf("WRITE MULTIPLE lba 100 count 16: final status %02x\n", s);
    ata_lba28(100, 16);
    pio_in(ATA_CMD_READ_SECTORS, 16, 1, 0);
    printf("  read back by READ SECTORS matches: %s\n", memcmp(buf, out, 16 * 512) == 0 ? "yes" : "no");
}

static void print_hob(const char *when)
{
    outb(ATA_CONTROL, ATA_HOB);
    uint8_t c = inb(ATA_COUNT), l0 = inb(ATA_LBA0), l1 = inb(ATA_LBA1), l2 = inb(ATA_LBA2);
    outb(ATA_CONTROL, 0);
    printf("%s: HOB count %02x lba %02x %02x %02x\n", when, c, l0, l1, l2);
}

static void test_lba48(void)
{
    ata_lba48(2000, 0, 3);
    uint8_t s = pio_in(ATA_CMD_READ_SECTORS_EXT, 3, 1, 0);
    printf("READ SECTORS EXT lba 2000 count 3: status %02x\n", s);
    print_sectors(2000, 3);
    print_taskfile("  registers after");
    print_hob("  after");

    /* HOB read-back of freshly written registers: the previous byte of each register is its HOB byte. */
    outb(ATA_COUNT, 0x12);
    outb(ATA_COUNT, 0x34);
    outb(ATA_LBA0, 0x56);
    outb(ATA_LBA0, 0x78);
    print_hob("registers written 12,34 / 56,78");
    printf("  with HOB clear: count %02x lba0 %02x\n", inb(ATA_COUNT), inb(ATA_LBA0));

    fill_pattern(out, 2, 2040, 0x4C343831u);  /* "L481" */
    ata_lba48(2040, 0, 2);
    s = pio_out(ATA_CMD_WRITE_SECTORS_EXT, 2, 1);
    printf("WRITE SECTORS EXT lba 2040 count 2: status %02x\n", s);
    ata_lba48(2040, 0, 2);
    pio_in(ATA_CMD_READ_SECTORS_EXT, 2, 1, 0);
    printf("  read back matches: %s\n", memcmp(buf, out, 1024) == 0 ? "yes" : "no");

    ata_lba48(0, 1, 1);                       /* LBA 2^32: far past the end */
    s = pio_in(ATA_CMD_READ_SECTORS_EXT, 1, 1, 0);
    printf("READ SECTORS EXT lba 0x100000000: status %02x error %02x\n", s, inb(ATA_ERROR));
}

static void test_flush_and_errors(void)
{
    outb(ATA_COMMAND, ATA_CMD_FLUSH_CACHE);
    printf("FLUSH CACHE: status %02x\n", ata_wait_not_busy());
    outb(ATA_COMMAND, ATA_CMD_FLUSH_CACHE_EXT);
    printf("FLUSH CACHE EXT: status %02x\n", ata_wait_not_busy());

    static const uint8_t unknown[] = {0x00, 0x22, 0x50, 0x87, 0xFF};
    for (uint32_t i = 0; i < sizeof(unknown); i++) {
        outb(ATA_COMMAND, unknown[i]);
        uint8_t s = ata_wait_not_busy();
        printf("command %02x: status %02x error %02x\n", unknown[i], s, inb(ATA_ERROR));
    }

    ata_lba28(capacity, 1);
    uint8_t s = pio_in(ATA_CMD_READ_SECTORS, 1, 1, 1);
    printf("READ SECTORS at lba = capacity: status %02x error %02x\n", s, inb(ATA_ERROR));
    ata_lba28(capacity - 2, 4);
    s = pio_in(ATA_CMD_READ_SECTORS, 4, 1, 1);
    printf("READ SECTORS 4 from capacity-2: status %02x error %02x\n", s, inb(ATA_ERROR));
    print_sectors(capacity - 2, 2);
    fill_pattern(out, 1, capacity, 0x454E4421u);
    ata_lba28(capacity, 1);
    outb(ATA_COMMAND, ATA_CMD_WRITE_SECTORS);
    s = ata_wait_drq();
    printf("WRITE SECTORS at lba = capacity: status before data %02x", s);
    if (s & ATA_DRQ)
        outsw(ATA_DATA, out, 256);
    s = ata_wait_not_busy();
    printf(", after %02x error %02x\n", s, inb(ATA_ERROR));
}

static void test_reset(void)
{
    outb(ATA_CONTROL, ATA_SRST);
    spin(100);
    outb(ATA_CONTROL, 0);
    ata_wait_not_busy();
    print_taskfile("after SRST");
    outb(ATA_DEVICE, 0xB0);
    printf("slave selected (absent): status %02x error %02x\n", inb(ATA_STATUS), inb(ATA_ERROR));
    outb(ATA_DEVICE, 0xA0);
    outb(ATA_COMMAND, ATA_CMD_DIAGNOSTIC);
    ata_wait_not_busy();
    print_taskfile("EXECUTE DEVICE DIAGNOSTIC");
}

static void identify_quiet(void)
{
    outb(ATA_COMMAND, ATA_CMD_IDENTIFY);
    ata_wait_drq();
    insw(ATA_DATA, ident, 256);
    (void)inb(ATA_STATUS);
}

/* SET FEATURES 03h (set transfer mode, ATA-6 8.46.11): the mode in the count register; IDENTIFY words 62/63/88
 * report the selected multiword / Ultra DMA mode in their high bytes. */
static void test_set_features(void)
{
    static const uint8_t modes[] = {0x0C, 0x22, 0x45, 0x46, 0x47};   /* PIO 4, MWDMA 2, UDMA 5, 6, 7 */
    for (uint32_t i = 0; i < sizeof(modes); i++) {
        outb(ATA_FEATURE, 0x03);
        outb(ATA_COUNT, modes[i]);
        outb(ATA_COMMAND, ATA_CMD_SET_FEATURES);
        uint8_t st = ata_wait_not_busy();
        uint8_t err = inb(ATA_ERROR);
        identify_quiet();
        printf("SET FEATURES transfer mode %02x: status %02x error %02x; words 62 %04x 63 %04x 88 %04x\n", modes[i],
               st, err, ident[62], ident[63], ident[88]);
    }
    outb(ATA_FEATURE, 0x77);                  /* an unknown subcommand */
    outb(ATA_COMMAND, ATA_CMD_SET_FEATURES);
    uint8_t st = ata_wait_not_busy();
    printf("SET FEATURES 77: status %02x error %02x\n", st, inb(ATA_ERROR));
}

/* The secondary channel has no drive under the reference (-nodefaults): what its registers read. */
static void test_secondary(void)
{
    outb(0x176, 0xA0);
    printf("secondary channel, no drives: status %02x alt %02x error %02x count %02x lba0 %02x\n", inb(0x177),
           inb(0x376), inb(0x171), inb(0x172), inb(0x173));
}

static void test_irq(void)
{
    pic_remap(0x20, 0x28);
    outb(ATA_CONTROL, ATA_NIEN);
    outb(ATA_COMMAND, ATA_CMD_IDENTIFY);
    ata_wait_drq();
    insw(ATA_DATA, ident, 256);
    printf("nIEN set, IDENTIFY: slave irr=%02x\n", pic_read_irr(0xA0));
    outb(ATA_CONTROL, 0);
    outb(ATA_COMMAND, ATA_CMD_IDENTIFY);
    ata_wait_drq();
    /* Master IRR bit 2 only: bit 0 latches SeaBIOS's periodic IRQ 0 at a time that depends on the host. */
    printf("nIEN clear, IDENTIFY: slave irr=%02x master irr bit 2=%x\n", pic_read_irr(0xA0),
           (pic_read_irr(0x20) >> 2) & 1);
    insw(ATA_DATA, ident, 256);
    (void)inb(ATA_STATUS);
    pic_remap(0x20, 0x28);

    set_handler(0x28 + 6, ata_irq14_counter);
    pic_unmask(14);
    ata_irq14_count = 0;
    ata_lba28(5, 3);
    outb(ATA_COMMAND, ATA_CMD_READ_SECTORS);
    for (uint32_t sec = 0; sec < 3; sec++) {
        for (uint32_t i = 0; ata_irq14_count <= sec && i < 1000; i++) {
            sti_hlt();
            cli();
        }
        insw(ATA_DATA, buf + sec * 512, 256);
    }
    printf("IRQ-driven READ SECTORS lba 5 count 3: %u interrupts, status %02x\n", ata_irq14_count,
           inb(ATA_ALTSTATUS));
    print_sectors(5, 3);
    ata_irq14_count = 0;
    fill_pattern(out, 2, 10, 0x50494F32u);    /* "PIO2": LBA 10-11 again */
    ata_lba28(10, 2);
    outb(ATA_COMMAND, ATA_CMD_WRITE_SECTORS);
    for (uint32_t sec = 0; sec < 2; sec++) {
        ata_wait_drq();
        outsw(ATA_DATA, out + sec * 512, 256);
        for (uint32_t i = 0; ata_irq14_count <= sec && i < 1000; i++) {
            sti_hlt();
            cli();
        }
    }
    printf("IRQ-driven WRITE SECTORS lba 10 count 2: %u interrupts, status %02x\n", ata_irq14_count,
           inb(ATA_ALTSTATUS));
    pic_mask(14);
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("ata_pio: primary master by PIO\n");
    pic_remap(0x20, 0x28);
    if (!ata_select_master()) {
        printf("no disk on the primary master\n");
        exit(1);
    }
    outb(ATA_CONTROL, 0);
    test_identify();
    test_lba28();
    test_multiple();
    test_lba48();
    test_flush_and_errors();
    test_reset();
    test_set_features();
    test_secondary();
    test_irq();
    outb(ATA_COMMAND, ATA_CMD_FLUSH_CACHE);
    ata_wait_not_busy();
    printf("ata_pio done\n");
    exit(0);
}
