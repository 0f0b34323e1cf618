/* Shared helpers: see util.h. */
#include "util.h"
#include "console.h"
#include "cpu.h"
#include "io.h"
#include "pic.h"
#include "pit.h"
#include "string.h"

uint32_t cmdline_uint(const char *line, const char *key, uint32_t def)
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

uint32_t cmdline_hz(const char *line)
{
    uint32_t hz = cmdline_uint(line, "hz", 1000);
    return hz == 0 || hz > 10000 ? 1000 : hz;
}

volatile uint32_t tick_count;

void tick_irq(struct regs *r)
{
    (void)r;
    tick_count++;
    pic_eoi(0);
}

void spurious_irq(struct regs *r)
{
    if (r->vector == SPURIOUS_VECTOR_SLAVE)
        outb(PIC1_CMD, 0x20);
}

uint32_t pit_divisor(uint32_t hz)
{
    uint32_t divisor = hz ? PIT_HZ_BASE / hz : 0;
    if (divisor < 2)
        divisor = 2;
    if (divisor > 0xFFFF)
        divisor = 0;              /* 0 = 65536: about 18.2 Hz, the slowest rate */
    return divisor;
}

void tick_start(uint32_t divisor)
{
    pic_remap(0x20, 0x28);
    set_handler(TICK_VECTOR, tick_irq);
    set_handler(SPURIOUS_VECTOR_MASTER, spurious_irq);
    outb(PIT_CTRL, 0x34);         /* channel 0, lobyte/hibyte, mode 2, binary */
    outb(PIT_CH0, (uint8_t)divisor);
    outb(PIT_CH0, (uint8_t)(divisor >> 8));
    pic_unmask(0);
}

char *fmt_dec(char *o, uint32_t v, int width)
{
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < 10);
    while (n < width)
        tmp[n++] = '0';
    while (n)
        *o++ = tmp[--n];
    return o;
}

char *fmt_str(char *o, const char *s)
{
    while (*s)
        *o++ = *s++;
    return o;
}

uint32_t fnv1a(const void *buf, uint32_t n)
{
    const uint8_t *p = buf;
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

NORETURN void fail(const char *what)
{
    printf("FAIL: %s\n", what);
    exit(0x7E);
}
