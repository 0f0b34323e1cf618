/* Small shared helpers: the multiboot command line's "key=N" values, a PIT-driven tick counter (Intel 8254
 * datasheet: mode 2 rate generator; 8259A datasheet: spurious IRQ 7/15), decimal formatting, FNV-1a, xorshift32,
 * a port-free pause and the FAIL exit of the device test kernels. */
#ifndef FW_UTIL_H
#define FW_UTIL_H
#include "types.h"
#include "desc.h"
#include "cpu.h"

#define PIT_HZ_BASE 1193182u          /* 8254 input clock (PC: 14.31818 MHz / 12) */
#define TICK_VECTOR 0x20              /* IRQ 0 after pic_remap(0x20, 0x28) */
#define SPURIOUS_VECTOR_MASTER 0x27   /* IRQ 7 */
#define SPURIOUS_VECTOR_SLAVE 0x2F    /* IRQ 15 */

/* "key=N" from a multiboot command line ("<kernel path> key=N key2=M"): N (decimal, at most 9 digits are read),
 * or def when the key is absent or not followed by a digit. */
uint32_t cmdline_uint(const char *line, const char *key, uint32_t def);
/* The tick rate "hz=N" of the demo guests' command lines: N when 1..10000, else 1000. */
uint32_t cmdline_hz(const char *line);

/* IRQ 0 count, incremented by tick_irq. */
extern volatile uint32_t tick_count;
/* The IRQ 0 handler: tick_count++, EOI. */
void tick_irq(struct regs *r);
/* Spurious IRQ 7 / IRQ 15 handler: no EOI for the spurious controller, only the master's for a spurious IRQ 15. */
void spurious_irq(struct regs *r);
/* The 8254 divisor for about hz interrupts per second: 1193182 / hz, at least 2; 0 (= 65536) when out of range. */
uint32_t pit_divisor(uint32_t hz);
/* Remap the PICs to 0x20/0x28 (all masked), install tick_irq (vector 0x20) and spurious_irq for IRQ 7 (0x27),
 * program 8254 channel 0 in mode 2 with `divisor` and unmask IRQ 0. Call with interrupts disabled. */
void tick_start(uint32_t divisor);
/* Sleep (STI; HLT) until tick_count differs from `seen`; returns the new count. The check runs with IF=0 and
 * STI;HLT is atomic (STI shadow), so a tick in between is not missed. IF is 1 on return. Inline: it is the idle
 * loop of the scenario guests, whose instruction counts per tick set their pace against the other guest. */
static inline uint32_t tick_wait(uint32_t seen)
{
    cli();
    while (tick_count == seen) {
        sti_hlt();
        cli();
    }
    uint32_t now = tick_count;
    sti();
    return now;
}

/* Decimal v, zero-padded to at least `width` digits, at o (not terminated); returns the end. */
char *fmt_dec(char *o, uint32_t v, int width);
/* Copy the string s to o (not terminated); returns the end. */
char *fmt_str(char *o, const char *s);
/* FNV-1a (32-bit) over n bytes. */
uint32_t fnv1a(const void *buf, uint32_t n);
/* One step of Marsaglia's 32-bit xorshift (13, 17, 5). Inline: the demo guests run it millions of times as their
 * measured busy work, so a call would change how long that work takes. */
static inline uint32_t xorshift32(uint32_t x)
{
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}
/* A pause of about 3 n instructions without port I/O (cheap to emulate, unlike a status poll). Inline: the device
 * kernels poll between pauses, and a call would change how many polls fit in a device's busy time. */
static inline void spin(uint32_t n)
{
    for (volatile uint32_t i = 0; i < n; i++)
        ;
}
/* Print "FAIL: <what>" and exit(0x7E). */
NORETURN void fail(const char *what);

#endif
