/* mv_common.h: command-line parsing, the 8254 periodic tick and the tick wait of the management validator
 * (mgmt_validator.c); the same approach as demo_common.h, kept separate so the validator's ELF does not change
 * when the demo guests' helpers do. References: Intel 8254 datasheet (mode 2, rate generator), 8259A datasheet. */
#ifndef MV_COMMON_H
#define MV_COMMON_H
#include "fw.h"

#define MV_PIT_HZ_BASE 1193182u   /* 8254 input clock (PC: 14.31818 MHz / 12) */
#define MV_VEC_TIMER 0x20         /* IRQ 0 after pic_remap(0x20, 0x28) */
#define MV_VEC_SPURIOUS_MASTER 0x27

/* "key=N" from a multiboot command line ("<kernel path> key=N key2=M"): N, or def when absent or not a number. */
static inline uint32_t mv_cmdline_uint(const char *line, const char *key, uint32_t def)
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

/* IRQ 0 count. */
static volatile uint32_t mv_ticks;

static inline void mv_timer_irq(struct regs *r)
{
    (void)r;
    mv_ticks++;
    pic_eoi(0);
}

/* 8259A spurious IRQ 7: no EOI (8259A datasheet, "IR7 default"). */
static inline void mv_spurious_irq(struct regs *r)
{
    (void)r;
}

/* Remap the PICs to 0x20/0x28 (all masked) and program 8254 channel 0 in mode 2 at about hz. */
static inline void mv_timer_start(uint32_t hz)
{
    uint32_t divisor = hz ? MV_PIT_HZ_BASE / hz : 0;
    if (divisor < 2)
        divisor = 2;
    if (divisor > 0xFFFF)
        divisor = 0;              /* 0 = 65536: about 18.2 Hz */
    pic_remap(0x20, 0x28);
    set_handler(MV_VEC_TIMER, mv_timer_irq);
    set_handler(MV_VEC_SPURIOUS_MASTER, mv_spurious_irq);
    outb(0x43, 0x34);             /* channel 0, lobyte/hibyte, mode 2, binary */
    outb(0x40, (uint8_t)divisor);
    outb(0x40, (uint8_t)(divisor >> 8));
    pic_unmask(0);
}

/* Sleep (STI; HLT) until the tick counter passes `seen`; returns the new counter value (STI;HLT is atomic). */
static inline uint32_t mv_wait_tick(uint32_t seen)
{
    cli();
    while (mv_ticks == seen) {
        sti_hlt();
        cli();
    }
    uint32_t now = mv_ticks;
    sti();
    return now;
}

#endif
