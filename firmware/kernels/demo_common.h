/* demo_common.h: helpers shared by the demo guests (demo_app, demo_mgmt), header-only so that no library object
 * (and so no other kernel's ELF) changes: command-line parsing, the 8254 periodic tick, the logical tick counter,
 * and the #UD handler that makes `vmcall` a no-op under QEMU. */
#ifndef DEMO_COMMON_H
#define DEMO_COMMON_H
#include "fw.h"

#define DEMO_PIT_HZ_BASE 1193182u   /* 8254 input clock (Intel 8254 datasheet; PC: 14.31818 MHz / 12) */
#define DEMO_VEC_TIMER 0x20         /* IRQ 0 after pic_remap(0x20, 0x28) */
#define DEMO_VEC_SPURIOUS_MASTER 0x27
#define DEMO_VEC_SPURIOUS_SLAVE 0x2F

/* "key=N" from a multiboot command line ("<kernel path> key=N key2=M"): N, or def when absent or not a number. */
static inline uint32_t demo_cmdline_uint(const char *line, const char *key, uint32_t def)
{
    size_t klen = strlen(key);
    for (const char *p = line; *p; p++) {
        if ((p == line || p[-1] == ' ') && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            const char *q = p + klen + 1;
            if (*q < '0' || *q > '9')
                return def;
            uint32_t v = 0;
            while (*q >= '0' && *q <= '9' && v < 100000000u)
                v = v * 10 + (uint32_t)(*q++ - '0');
            return v;
        }
    }
    return def;
}

/* IRQ 0 count: the only clock the demo guests use. Under QEMU the PIT runs in real time, so behaviour must be a
 * function of this counter (tick n happened), never of how many ticks passed while something else was going on. */
static volatile uint32_t demo_ticks;

static inline void demo_timer_irq(struct regs *r)
{
    (void)r;
    demo_ticks++;
    pic_eoi(0);
}

/* 8259A spurious IRQ 7 / IRQ 15: no EOI for the spurious controller (8259A datasheet, "IR7 default"). */
static inline void demo_spurious_irq(struct regs *r)
{
    if (r->vector == DEMO_VEC_SPURIOUS_SLAVE)
        outb(PIC1_CMD, 0x20);
}

/* Remap the PICs to 0x20/0x28 (all masked) and program 8254 channel 0 in mode 2 (rate generator) at about hz. */
static inline void demo_timer_start(uint32_t hz)
{
    uint32_t divisor = hz ? DEMO_PIT_HZ_BASE / hz : 0;
    if (divisor < 2)
        divisor = 2;
    if (divisor > 0xFFFF)
        divisor = 0;              /* 0 = 65536: about 18.2 Hz, the slowest rate */
    pic_remap(0x20, 0x28);
    set_handler(DEMO_VEC_TIMER, demo_timer_irq);
    set_handler(DEMO_VEC_SPURIOUS_MASTER, demo_spurious_irq);
    set_handler(DEMO_VEC_SPURIOUS_SLAVE, demo_spurious_irq);
    outb(0x43, 0x34);             /* channel 0, lobyte/hibyte, mode 2, binary */
    outb(0x40, (uint8_t)divisor);
    outb(0x40, (uint8_t)(divisor >> 8));
    pic_unmask(0);
}

/* Sleep (STI; HLT, interrupts enabled) until the tick counter passes `seen`; returns the new counter value.
 * The check runs with IF=0 and STI;HLT is atomic (STI shadow), so a tick that arrives in between is not missed. */
static inline uint32_t demo_wait_tick(uint32_t seen)
{
    cli();
    while (demo_ticks == seen) {
        sti_hlt();
        cli();
    }
    uint32_t now = demo_ticks;
    sti();
    return now;
}

/* #UD handler for VMCALL (0F 01 C1): under QEMU there is no hypervisor, so the hypercall is skipped and "returns"
 * -38 (-ENOSYS), the value emu gives an unassigned leaf. Any other #UD is a bug: report and exit(0x7F). */
static inline void demo_ud_handler(struct regs *r)
{
    const uint8_t *insn = (const uint8_t *)r->eip;
    if (insn[0] == 0x0F && insn[1] == 0x01 && insn[2] == 0xC1) {
        r->eip += 3;
        r->eax = (uint32_t)-38;
        return;
    }
    printf("unexpected #UD at %08x\n", r->eip);
    exit(0x7F);
}

/* 32-bit xorshift (Marsaglia 2003): deterministic busy work. */
static inline uint32_t demo_xorshift(uint32_t x)
{
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

#endif
