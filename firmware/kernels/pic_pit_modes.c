/* pic_pit_modes: the 8254 modes pic_pit leaves out (1, 4, 5) and the 8259A special mask mode, printing only facts
 * identical under QEMU 7.2: counter 0 one-shots in modes 1/4/5 (read-back status at the load, exactly one IRQ 0 edge,
 * no second one), counter 2 in modes 1/4/5/2 with a gate 2 rising edge through port 0x61 (which modes restart the
 * count; OUT2 in mode 1, which QEMU 7.2 has high while counting), and, with IRQ 0 in service, whether a pending IRQ 14 gets in: not in the normal mask mode,
 * not in special mask mode while IR0 is unmasked, yes once IR0 is masked (OCW3 ESMM/SMM, 8259A datasheet). QEMU's PIT
 * runs on host time: every printed fact has a margin of milliseconds, no count or loop count is printed, and OUT in
 * modes 4/5 (high for one tick) is never sampled. The special mask part needs a disk on the primary master (IRQ 14
 * from FLUSH CACHE); without one it says so. */
#include "fw.h"
#include "ata.h"
#include "util.h"
#include "pit.h"

#define MASTER_BASE 0x20
#define SLAVE_BASE 0x28
#define ONESHOT_TICKS 5966              /* 5 ms */
#define GATE_TICKS 0x2000               /* 6.9 ms; the gate edge comes once half of it has run */

static volatile uint32_t ticks, nested, isr_master_nested, isr_slave_nested, isr_after_nested;
static volatile uint32_t smm_case;      /* what the IRQ 0 handler does: 0 count only, 1 the special mask test */
static volatile uint32_t taken_normal, taken_smm_unmasked, taken_smm_masked;

static uint8_t pit_status(int ch)
{
    outb(PIT_CTRL, (uint8_t)(0xE0 | (2 << ch)));   /* read-back, status only */
    return inb((uint16_t)(PIT_CH0 + ch));
}

static void pit_load(int ch, int mode, uint16_t count)
{
    outb(PIT_CTRL, (uint8_t)((ch << 6) | 0x30 | (mode << 1)));
    outb((uint16_t)(PIT_CH0 + ch), (uint8_t)count);
    outb((uint16_t)(PIT_CH0 + ch), (uint8_t)(count >> 8));
}

static uint16_t pit_latch(int ch)
{
    outb(PIT_CTRL, (uint8_t)(ch << 6));            /* counter latch command */
    uint16_t v = inb((uint16_t)(PIT_CH0 + ch));
    return (uint16_t)(v | (inb((uint16_t)(PIT_CH0 + ch)) << 8));
}

static void wait_irr0(void)
{
    uint32_t i = 0;
    while (!(pic_read_irr(0x20) & 1) && i < ATA_POLL_LIMIT / 16) {
        spin(500);
        i++;
    }
    if (!(pic_read_irr(0x20) & 1))
        fail("pic: IRR 0 never set");
}

/* Counter 2 one-shot of `n` ticks (mode 0, gate 2 high) polled to its end through OUT2 in port 0x61. */
static void wait_ticks(uint16_t n)
{
    outb(PORT61, 0x01);
    pit_load(2, 0, n);
    uint32_t i = 0;
    while (!(inb(PORT61) & 0x20) && i < ATA_POLL_LIMIT / 16) {
        spin(500);
        i++;
    }
    if (!(inb(PORT61) & 0x20))
        fail("pit: OUT2 never rose");
    outb(PORT61, 0x00);
}

static void on_irq14(struct regs *r)
{
    (void)r;
    nested++;
    isr_master_nested = pic_read_isr(0x20);
    isr_slave_nested = pic_read_isr(0xA0);
    (void)inb(ATA_STATUS);              /* lowers INTRQ */
    outb(0xA0, 0x20);
    outb(0x20, 0x60 | 2);               /* specific EOI for IR2: a non-specific one would end IR0, the highest */
}

static uint32_t open_window(void)
{
    uint32_t before = nested;
    sti();
    __asm__ volatile("nop; nop; nop");
    cli();
    return nested - before;
}

/* IRQ 0 arrives with IRQ 14 pending behind it (slave IRR, masked so far). */
static void special_mask_test(void)
{
    pic_set_mask((uint16_t)~((1u << 0) | (1u << 2) | (1u << 14)));   /* an OCW1 write: the PIC re-evaluates */
    taken_normal = open_window();
    outb(0x20, 0x68);                   /* OCW3: ESMM | SMM, set special mask mode */
    pic_set_mask((uint16_t)~((1u << 0) | (1u << 2) | (1u << 14)));   /* same mask again, IR0 still unmasked */
    taken_smm_unmasked = open_window();
    pic_set_mask((uint16_t)~((1u << 2) | (1u << 14)));               /* mask IR0: its ISR bit no longer blocks */
    taken_smm_masked = open_window();
    isr_after_nested = pic_read_isr(0x20);
    outb(0x20, 0x48);                   /* OCW3: ESMM, clear special mask mode */
    pic_set_mask(0xFFFF);
}

static void on_irq0(struct regs *r)
{
    (void)r;
    ticks++;
    if (smm_case) {
        smm_case = 0;
        special_mask_test();
    }
    outb(0x20, 0x60 | 0);               /* specific EOI for IR0 */
}

/* QEMU 7.2's mode 1 OUT is high while counting (the datasheet's is low): IRQ 0 rises at the load, falls at the
 * count. Modes 4 and 5 (counter 0's gate is always high) raise it for the one tick at the count. */
static void counter0_oneshot(int mode)
{
    pit_load(0, 0, ONESHOT_TICKS);      /* mode 0: OUT0 low for 5 ms, so no edge comes before the next load */
    pic_remap(MASTER_BASE, SLAVE_BASE); /* IRR empty, edge detectors reset */
    pit_load(0, mode, ONESHOT_TICKS);
    uint8_t s = pit_status(0);
    uint8_t irr_at_load = pic_read_irr(0x20) & 1;
    wait_irr0();
    ticks = 0;
    pic_set_mask(0xFFFE);
    sti();
    /* IRQ 0 stays unmasked, IF=1: a second edge would be taken. Mode 1's IRQ came at the load, 4/5's at the count:
     * either way the wait ends at least 2 counts after the load. */
    wait_ticks(mode == 1 ? 2 * ONESHOT_TICKS : ONESHOT_TICKS);
    cli();
    pic_set_mask(0xFFFF);
    printf("counter 0 mode %d, count %u: read-back status at the load %02x, IRR 0 at the load %u; IRQ 0 taken %u "
           "time(s) in the %u ticks after the load\n", mode, ONESHOT_TICKS, s, irr_at_load, ticks, 2 * ONESHOT_TICKS);
    if (mode == 1)
        printf("  mode 1 after the count: status %02x\n", pit_status(0));
}

static void counter2_gate(int mode)
{
    outb(PORT61, 0x00);                 /* gate 2 low */
    pit_load(2, mode, GATE_TICKS);
    uint8_t s = pit_status(2);
    uint32_t i = 0;
    while (pit_latch(2) > GATE_TICKS / 2 && i < ATA_POLL_LIMIT / 16) {
        spin(200);
        i++;
    }
    outb(PORT61, 0x01);                 /* gate 2 rising edge */
    uint16_t c = pit_latch(2);
    uint8_t out2 = (inb(PORT61) >> 5) & 1;   /* sampled at once: printing takes host time under QEMU */
    printf("counter 2 mode %d, count %u, gate low at the load: status %02x; counting with the gate low: %s; a gate "
           "rising edge restarts the count: %s", mode, GATE_TICKS, s & 0x3F, i < ATA_POLL_LIMIT / 16 ? "yes" : "no",
           c > GATE_TICKS / 2 ? "yes" : "no");
    if (mode == 1)
        printf("; OUT2 just after the edge %u", out2);
    printf("\n");
    outb(PORT61, 0x00);
}

static void test_special_mask(void)
{
    if (!ata_select_master()) {
        printf("no disk on the primary master: special mask mode skipped\n");
        return;
    }
    pic_remap(MASTER_BASE, SLAVE_BASE); /* first: IRQ 0's edge must come after it, however slow the host */
    pit_load(0, 0, ONESHOT_TICKS);
    outb(ATA_CONTROL, 0x00);            /* nIEN clear */
    (void)inb(ATA_STATUS);
    outb(ATA_COMMAND, ATA_CMD_FLUSH_CACHE);
    uint32_t i = 0;
    while (!(pic_read_irr(0xA0) & 0x40) && i < ATA_POLL_LIMIT / 16) {
        spin(500);
        i++;
    }
    wait_irr0();
    printf("IRQ 0 and IRQ 14 pending: master irr %02x, slave irr %02x\n", pic_read_irr(0x20), pic_read_irr(0xA0));
    smm_case = 1;
    ticks = 0;
    pic_set_mask(0xFFFE);
    uint32_t before = ticks;
    sti();
    __asm__ volatile("nop");
    cli();
    printf("in the IRQ 0 handler (IRQ 0 taken %u time(s)), IRQ 14 got in: normal mask mode %u, special mask mode "
           "with IR0 unmasked %u, with IR0 masked %u\n", ticks - before, taken_normal, taken_smm_unmasked,
           taken_smm_masked);
    printf("  nested IRQ 14 saw master isr %02x slave isr %02x; after it master isr %02x; at the end master isr %02x "
           "slave isr %02x\n", isr_master_nested, isr_slave_nested, isr_after_nested, pic_read_isr(0x20),
           pic_read_isr(0xA0));
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("pic_pit_modes: 8254 modes 1, 4, 5 and gate 2; 8259A special mask mode\n");
    set_handler(MASTER_BASE + 0, on_irq0);
    set_handler(SLAVE_BASE + 6, on_irq14);
    counter0_oneshot(1);
    counter0_oneshot(4);
    counter0_oneshot(5);
    counter2_gate(1);
    counter2_gate(4);
    counter2_gate(5);
    counter2_gate(2);
    test_special_mask();
    printf("pic_pit_modes done\n");
    exit(0);
}
