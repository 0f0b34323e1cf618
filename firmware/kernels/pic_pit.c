/* pic_pit: the 8259A pair and the 8254 PIT driven from a guest, printing only facts identical under QEMU 7.2:
 * ICW1-4, masks, IRR/ISR (OCW3), poll mode, priority by INTA order (set priority, rotate on non-specific and
 * specific EOI, specific EOI), AEOI, a spurious IRQ 15 (level-triggered IRQ 14 withdrawn before INTA), PIT modes
 * 0/2/3, access modes, BCD, counter latch, read-back, port 0x61 gate/OUT2 with a mode-0 one-shot polled to the end,
 * and N timer interrupts taken with sti/hlt. IRQ 14 (the priority and spurious cases) needs a disk on the primary
 * master; without one those parts say so. No PIT count, no loop count is ever printed. */
#include "fw.h"
#include "ata.h"
#include "util.h"
#include "pit.h"

#define MASTER_BASE 0x20
#define SLAVE_BASE 0x28
#define ELCR1 0x4D0
#define ELCR2 0x4D1
/* 10 ms / 14 ms: QEMU counts in host time, so a one-shot must outlast the port writes that follow its load even
 * on a busy host; the polls between checks spin without port I/O, which emu runs cheaply. */
#define ONESHOT_TICKS 11932
#define CH2_TICKS 0x4000

static volatile uint32_t ticks, bad_isr, order_len, spurious15, spurious_master_isr, spurious_slave_isr;
static volatile uint8_t order[8];
static volatile uint8_t isr_in_handler[8];
static volatile uint8_t eoi_mode;    /* how the IRQ 0 handler ends the interrupt */
static volatile uint8_t expect_isr;  /* master ISR the timer handler expects to see */

enum { EOI_NONSPECIFIC, EOI_SPECIFIC, EOI_ROTATE, EOI_ROTATE_SPECIFIC, EOI_NONE };

static void end_irq0(void)
{
    switch (eoi_mode) {
    case EOI_NONSPECIFIC: outb(0x20, 0x20); break;
    case EOI_SPECIFIC: outb(0x20, 0x60 | 0); break;       /* OCW2 specific EOI, level 0 */
    case EOI_ROTATE: outb(0x20, 0xA0); break;             /* rotate on non-specific EOI */
    case EOI_ROTATE_SPECIFIC: outb(0x20, 0xE0 | 0); break; /* rotate on specific EOI, level 0 */
    default: break;                                       /* AEOI: nothing to do */
    }
}

static void on_irq0(struct regs *r)
{
    (void)r;
    uint8_t isr = pic_read_isr(0x20);
    if (order_len < sizeof(order)) {
        isr_in_handler[order_len] = isr;
        order[order_len++] = 0;
    }
    if (isr != expect_isr)
        bad_isr++;
    ticks++;
    end_irq0();
}

static void on_irq14(struct regs *r)
{
    (void)r;
    uint8_t isr = pic_read_isr(0x20);
    if (order_len < sizeof(order)) {
        isr_in_handler[order_len] = (uint8_t)(isr | (pic_read_isr(0xA0) & 0x40));
        order[order_len++] = 14;
    }
    (void)inb(ATA_STATUS);       /* lowers the drive's INTRQ */
    outb(0xA0, 0x20);
    outb(0x20, 0x20);
}

static void on_spurious15(struct regs *r)
{
    (void)r;
    spurious15++;
    spurious_master_isr = pic_read_isr(0x20);
    spurious_slave_isr = pic_read_isr(0xA0);
    outb(0x20, 0x20);            /* the master did acknowledge IR2: it needs an EOI, the slave does not */
}

static void on_spurious7(struct regs *r)
{
    (void)r;
    printf("spurious IRQ 7 taken (not expected)\n");
}

/* Read-back status of one counter (read-back command, status only). */
static uint8_t pit_status(int ch)
{
    outb(PIT_CTRL, (uint8_t)(0xE0 | (2 << ch)));
    return inb((uint16_t)(PIT_CH0 + ch));
}

static void pit_load(int ch, uint8_t mode_bits, uint16_t count)
{
    outb(PIT_CTRL, (uint8_t)((ch << 6) | 0x30 | mode_bits));
    outb((uint16_t)(PIT_CH0 + ch), (uint8_t)count);
    outb((uint16_t)(PIT_CH0 + ch), (uint8_t)(count >> 8));
}

static void wait_irr(uint16_t port, uint8_t bit)
{
    uint32_t i = 0;
    while (!(pic_read_irr(port) & bit) && i < ATA_POLL_LIMIT / 16) {
        spin(2000);
        i++;
    }
    if (!(pic_read_irr(port) & bit))
        fail("pic: IRR bit never set");
}

/* Counter 0 one-shot (mode 0): loading the count drives OUT0 low at once; wait until its single rising edge has
 * latched IRR 0 (QEMU raises IRQ 0 from a host timer a moment after OUT0 reads high, so OUT0 alone is not enough).
 * Afterwards OUT0 stays high: IRQ 0 makes no further edge until counter 0 is reprogrammed. */
static void pit0_oneshot(void)
{
    pit_load(0, 0x00, ONESHOT_TICKS);
    wait_irr(0x20, 0x01);
}

/* Stop whatever counter 0 was doing (SeaBIOS's or our periodic IRQ 0) and leave both PICs initialised with IRR
 * empty: the one-shot load drives OUT0 low at once, ICW1 forgets older edges, the one-shot's own edge is waited
 * for, and a second initialisation forgets it. */
static void pit0_quiesce(void)
{
    pit_load(0, 0x00, ONESHOT_TICKS);
    pic_remap(MASTER_BASE, SLAVE_BASE);
    wait_irr(0x20, 0x01);
    pic_remap(MASTER_BASE, SLAVE_BASE);
}

static void print_pic_regs(const char *when)
{
    uint8_t irr1 = pic_read_irr(0x20), isr1 = pic_read_isr(0x20), irr2 = pic_read_irr(0xA0), isr2 = pic_read_isr(0xA0);
    printf("%s: master imr=%02x irr=%02x isr=%02x  slave imr=%02x irr=%02x isr=%02x\n", when, inb(0x21), irr1, isr1,
           inb(0xA1), irr2, isr2);
}

static void test_pic_init(void)
{
    /* Stop SeaBIOS's periodic IRQ 0 first: load a one-shot (OUT0 low at once), clear IRR with ICW1, let the
     * one-shot's edge latch, then initialise again so IRR starts empty. */
    pit0_quiesce();
    print_pic_regs("after ICW1-4");
    pic_set_mask(0x5AA5);
    printf("OCW1 masks written a5/5a, read back %02x/%02x\n", inb(0x21), inb(0xA1));
    pic_set_mask(0xFFFF);
    /* OCW3 select is sticky: after "read ISR", a plain read of 0x20 keeps returning the ISR. */
    outb(0x20, 0x0B);
    uint8_t a = inb(0x20), b = inb(0x20);
    printf("OCW3 read-ISR select is sticky: %02x %02x\n", a, b);
}

static void test_irr_masked_and_poll(void)
{
    pit0_oneshot();
    printf("IRQ 0 masked, one-shot done: master irr=%02x isr=%02x\n", pic_read_irr(0x20), pic_read_isr(0x20));
    outb(0x20, 0x0C);                       /* OCW3 poll: nothing unmasked is pending */
    printf("poll with IRQ 0 masked: %02x\n", inb(0x20));
    pic_set_mask(0xFFFE);
    outb(0x20, 0x0C);
    uint8_t p = inb(0x20);
    printf("poll with IRQ 0 unmasked: %02x, then irr=%02x isr=%02x\n", p, pic_read_irr(0x20), pic_read_isr(0x20));
    outb(0x20, 0x20);                       /* the poll acknowledged IRQ 0: end it */
    printf("after a non-specific EOI: isr=%02x\n", pic_read_isr(0x20));
    pic_set_mask(0xFFFF);
}

/* Make IRQ 0 and IRQ 14 both pending (masked), so their INTA order shows the priority. */
static int make_both_pending(void)
{
    pit0_oneshot();
    if (!ata_select_master())
        return 0;
    outb(ATA_CONTROL, 0x00);                /* nIEN clear */
    (void)inb(ATA_STATUS);
    outb(ATA_COMMAND, ATA_CMD_FLUSH_CACHE);
    wait_irr(0xA0, 0x40);
    return 1;
}

static void take_pending(void)
{
    order_len = 0;
    pic_set_mask((uint16_t)~((1u << 0) | (1u << 2) | (1u << 14)));
    for (uint32_t i = 0; order_len < 2 && i < 1000; i++) {
        sti_hlt();
        cli();
    }
    pic_set_mask(0xFFFF);
}

static void print_order(const char *what)
{
    printf("%s: INTA order", what);
    for (uint32_t i = 0; i < order_len; i++)
        printf(" irq%u(isr %02x)", order[i], isr_in_handler[i]);
    printf("\n");
}

static void test_priority(void)
{
    set_handler(MASTER_BASE + 0, on_irq0);
    set_handler(SLAVE_BASE + 6, on_irq14);
    set_handler(SLAVE_BASE + 7, on_spurious15);
    set_handler(MASTER_BASE + 7, on_spurious7);
    eoi_mode = EOI_NONSPECIFIC;
    expect_isr = 0x01;
    if (!make_both_pending()) {
        printf("no disk on the primary master: IRQ 14 priority cases skipped\n");
        return;
    }
    print_pic_regs("IRQ 0 and IRQ 14 pending");
    take_pending();
    print_order("default priority");

    outb(0x20, 0xC0 | 0);                   /* OCW2 set priority: IR0 lowest, IR1 highest */
    make_both_pending();
    take_pending();
    print_order("set priority IR0 lowest");

    outb(0x20, 0xC0 | 7);                   /* back to IR7 lowest */
    eoi_mode = EOI_ROTATE;                  /* IRQ 0 ends with rotate on non-specific EOI: IR0 becomes lowest */
    make_both_pending();
    take_pending();
    print_order("rotate on non-specific EOI (IRQ 0 first)");
    make_both_pending();
    eoi_mode = EOI_NONSPECIFIC;
    take_pending();
    print_order("after the rotation");

    outb(0x20, 0xC0 | 1);                   /* IR1 lowest: IR2 highest */
    eoi_mode = EOI_ROTATE_SPECIFIC;         /* rotate on specific EOI 0: IR0 lowest again */
    expect_isr = 0x01;
    make_both_pending();
    take_pending();
    print_order("IR1 lowest, then rotate on specific EOI 0");
    eoi_mode = EOI_SPECIFIC;
    make_both_pending();
    take_pending();
    print_order("after it, specific EOI");
    outb(0x20, 0xC0 | 7);
    eoi_mode = EOI_NONSPECIFIC;
}

static void test_spurious15(void)
{
    if (!ata_select_master()) {
        printf("no disk on the primary master: spurious IRQ 15 case skipped\n");
        return;
    }
    outb(ELCR1, 0x00);
    outb(ELCR2, 0x40);                      /* IRQ 14 level-triggered */
    printf("ELCR written 00/40, read back %02x/%02x\n", inb(ELCR1), inb(ELCR2));
    pic_remap(MASTER_BASE, SLAVE_BASE);
    outb(ATA_CONTROL, 0x00);
    outb(ATA_COMMAND, ATA_CMD_FLUSH_CACHE);
    wait_irr(0xA0, 0x40);
    pic_set_mask((uint16_t)~((1u << 2) | (1u << 14)));
    printf("IRQ 14 level, line high: master irr=%02x slave irr=%02x\n", pic_read_irr(0x20), pic_read_irr(0xA0));
    (void)inb(ATA_STATUS);                  /* the drive drops INTRQ before the CPU acknowledges */
    printf("line dropped before INTA: master irr=%02x slave irr=%02x\n", pic_read_irr(0x20), pic_read_irr(0xA0));
    order_len = 0;
    sti();
    __asm__ volatile("nop");
    cli();
    printf("spurious IRQ 15 (vector %02x) taken %u time(s), master isr=%02x slave isr=%02x in the handler; "
           "other handlers ran %u time(s)\n", SLAVE_BASE + 7, spurious15, spurious_master_isr, spurious_slave_isr,
           order_len);
    print_pic_regs("after the master EOI");
    pic_set_mask(0xFFFF);
    outb(ELCR2, 0x00);
}

static void test_aeoi(void)
{
    /* ICW4 with AEOI (bit 1): the ISR bit is cleared at INTA, so the handler sees 0 and sends no EOI. */
    outb(0x20, 0x11);
    outb(0x21, MASTER_BASE);
    outb(0x21, 0x04);
    outb(0x21, 0x03);
    pic_set_mask(0xFFFF);
    eoi_mode = EOI_NONE;
    expect_isr = 0x00;
    bad_isr = 0;
    ticks = 0;
    pit_load(0, 0x04, 11932);               /* mode 2, 10 ms */
    pic_set_mask(0xFFFE);
    while (ticks < 3) {
        sti_hlt();
        cli();
    }
    pic_set_mask(0xFFFF);
    printf("AEOI: %u timer interrupts, isr in handler not 00: %u times\n", ticks, bad_isr);
    pit0_quiesce();
    eoi_mode = EOI_NONSPECIFIC;
}

static void test_timer_irqs(uint8_t mode_bits, const char *name, uint32_t n)
{
    expect_isr = 0x01;
    bad_isr = 0;
    ticks = 0;
    order_len = sizeof(order);              /* do not record order */
    pit_load(0, mode_bits, 11932);
    pic_set_mask(0xFFFE);
    for (uint32_t i = 0; ticks < n && i < 100000; i++) {
        eoi_mode = (ticks & 1) ? EOI_SPECIFIC : EOI_NONSPECIFIC;
        sti_hlt();
        cli();
    }
    pic_set_mask(0xFFFF);
    printf("PIT %s, count 11932: %u interrupts taken with sti/hlt (specific and non-specific EOIs), "
           "isr in handler not 01: %u times\n", name, ticks, bad_isr);
    pit0_quiesce();
}

static void test_pit(void)
{
    uint8_t s;
    /* Control words and read-back: only the programmed bits (access, mode, BCD) are deterministic. */
    pit_load(2, 0x04, 1000);
    printf("counter 2 mode 2: status & 3f = %02x\n", pit_status(2) & 0x3F);
    pit_load(2, 0x06, 1000);
    printf("counter 2 mode 3: status & 3f = %02x\n", pit_status(2) & 0x3F);
    outb(PIT_CTRL, 0xB7);                   /* mode 3, BCD */
    outb(PIT_CH2, 0x00);
    outb(PIT_CH2, 0x10);
    printf("counter 2 mode 3 BCD: status & 3f = %02x\n", pit_status(2) & 0x3F);
    outb(PIT_CTRL, 0x90);                   /* LSB only, mode 0 */
    outb(PIT_CH2, 0xFF);
    printf("counter 2 LSB-only mode 0: status & 3f = %02x\n", pit_status(2) & 0x3F);
    outb(PIT_CTRL, 0xA0);                   /* MSB only, mode 0 */
    outb(PIT_CH2, 0x80);
    printf("counter 2 MSB-only mode 0: status & 3f = %02x\n", pit_status(2) & 0x3F);

    /* Port 0x61: gate 2 and speaker bits read back; OUT2 of a mode-0 one-shot polled until it rises. */
    outb(PORT61, 0x00);
    printf("port 61 gate/speaker after writing 00: %x\n", inb(PORT61) & 0x03);
    outb(PORT61, 0x01);
    pit_load(2, 0x00, CH2_TICKS);
    s = pit_status(2);
    printf("mode 0 loaded: status & 7f = %02x, port 61 gate/speaker = %x\n", s & 0x7F, inb(PORT61) & 0x03);
    uint32_t i = 0;
    while (!(inb(PORT61) & 0x20) && i < ATA_POLL_LIMIT / 16) {
        spin(2000);
        i++;
    }
    printf("mode 0 one-shot: OUT2 in port 61 %s; read-back status %02x\n", (inb(PORT61) & 0x20) ? "rose" : "NEVER rose",
           pit_status(2));

    /* Counter latch: the value is frozen until read, even after the one-shot has expired and the count wrapped. */
    pit_load(2, 0x00, CH2_TICKS);
    outb(PIT_CTRL, 0x80);                   /* latch counter 2 */
    i = 0;
    while (!(inb(PORT61) & 0x20) && i < ATA_POLL_LIMIT / 16) {
        spin(2000);
        i++;
    }
    uint16_t held = inb(PIT_CH2);
    held |= (uint16_t)(inb(PIT_CH2) << 8);
    outb(PIT_CTRL, 0x80);
    uint16_t now = inb(PIT_CH2);
    now |= (uint16_t)(inb(PIT_CH2) << 8);
    printf("latch before expiry held a value in 1..%x: %s; a latch after expiry reads another value: %s\n",
           CH2_TICKS, (held >= 1 && held <= CH2_TICKS) ? "yes" : "no", now != held ? "yes" : "no");

    /* Read-back of count and status together: status byte first, then the count. */
    pit_load(2, 0x00, 0xFFFF);
    outb(PIT_CTRL, 0xC8);                   /* read-back: latch count and status of counter 2 */
    s = inb(PIT_CH2);
    uint16_t c = inb(PIT_CH2);
    c |= (uint16_t)(inb(PIT_CH2) << 8);
    printf("read-back count+status: status & 7f = %02x, count in 1..ffff: %s\n", s & 0x7F, c >= 1 ? "yes" : "no");
    outb(PORT61, 0x00);
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("pic_pit: 8259A pair and 8254\n");
    test_pic_init();
    test_irr_masked_and_poll();
    test_priority();
    test_spurious15();
    test_pit();
    test_timer_irqs(0x04, "mode 2", 10);
    test_timer_irqs(0x06, "mode 3", 5);
    test_aeoi();
    print_pic_regs("end");
    printf("pic_pit done\n");
    exit(0);
}
