/* Debug console on port 0xE9 (QEMU -debugcon; byte writes only) and debug exit on port 0xF4 (isa-debug-exit). */
#ifndef FW_CONSOLE_H
#define FW_CONSOLE_H
#include "types.h"

#define DEBUGCON_PORT 0xE9
#define DEBUG_EXIT_PORT 0xF4

void putc(char c);
void puts(const char *s);                     /* no newline appended */
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Write v to port 0xF4 (QEMU/emu exit status (v << 1) | 1), then CLI; HLT forever. */
NORETURN void exit(uint8_t v);
/* Print "PANIC: <msg>" and exit(0x7F). */
NORETURN void panic(const char *msg);

#endif
