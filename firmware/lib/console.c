/* Debug console printf on port 0xE9 (byte OUTs only: QEMU's debugcon prints nothing for 16-bit writes). */
#include "fw.h"

void putc(char c) { outb(DEBUGCON_PORT, (uint8_t)c); }

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

static void put_uint(uint32_t v, uint32_t base, int width, char pad, int upper)
{
    char buf[12];
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    int n = 0;
    do {
        buf[n++] = digits[v % base];   /* 32-bit division only: no libgcc needed */
        v /= base;
    } while (v);
    while (width > n) {
        putc(pad);
        width--;
    }
    while (n)
        putc(buf[--n]);
}

/* Supports %d %i %u %x %X %p %s %c %% with optional '0' flag, width and (ignored) 'l'. */
void printf(const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            putc(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l')
            fmt++;
        switch (*fmt) {
        case 'd':
        case 'i': {
            int32_t v = __builtin_va_arg(ap, int32_t);
            uint32_t u = (uint32_t)v;
            if (v < 0) {
                putc('-');
                u = 0u - u;
                if (width)
                    width--;
            }
            put_uint(u, 10, width, pad, 0);
            break;
        }
        case 'u':
            put_uint(__builtin_va_arg(ap, uint32_t), 10, width, pad, 0);
            break;
        case 'x':
            put_uint(__builtin_va_arg(ap, uint32_t), 16, width, pad, 0);
            break;
        case 'X':
            put_uint(__builtin_va_arg(ap, uint32_t), 16, width, pad, 1);
            break;
        case 'p':
            puts("0x");
            put_uint((uint32_t)__builtin_va_arg(ap, void *), 16, 8, '0', 0);
            break;
        case 's': {
            const char *s = __builtin_va_arg(ap, const char *);
            int len = (int)strlen(s ? s : "(null)");
            while (width-- > len)
                putc(' ');
            puts(s ? s : "(null)");
            break;
        }
        case 'c':
            putc((char)__builtin_va_arg(ap, int));
            break;
        case '%':
            putc('%');
            break;
        case '\0':
            fmt--;
            break;
        default:
            putc('%');
            putc(*fmt);
        }
    }
    __builtin_va_end(ap);
}

void exit(uint8_t v)
{
    outb(DEBUG_EXIT_PORT, v);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void panic(const char *msg)
{
    printf("PANIC: %s\n", msg);
    exit(0x7F);
}
