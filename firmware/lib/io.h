/* Port I/O (Intel SDM vol. 2: IN, OUT, INS, OUTS with REP). */
#ifndef FW_IO_H
#define FW_IO_H
#include "types.h"

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* rep insw / rep outsw / rep insl / rep outsl / rep outsb: count elements, DX = port. */
static inline void insw(uint16_t port, void *buf, uint32_t count)
{ __asm__ volatile("cld; rep insw" : "+D"(buf), "+c"(count) : "d"(port) : "memory"); }
static inline void outsw(uint16_t port, const void *buf, uint32_t count)
{ __asm__ volatile("cld; rep outsw" : "+S"(buf), "+c"(count) : "d"(port) : "memory"); }
static inline void insl(uint16_t port, void *buf, uint32_t count)
{ __asm__ volatile("cld; rep insl" : "+D"(buf), "+c"(count) : "d"(port) : "memory"); }
static inline void outsl(uint16_t port, const void *buf, uint32_t count)
{ __asm__ volatile("cld; rep outsl" : "+S"(buf), "+c"(count) : "d"(port) : "memory"); }
static inline void insb(uint16_t port, void *buf, uint32_t count)
{ __asm__ volatile("cld; rep insb" : "+D"(buf), "+c"(count) : "d"(port) : "memory"); }
static inline void outsb(uint16_t port, const void *buf, uint32_t count)
{ __asm__ volatile("cld; rep outsb" : "+S"(buf), "+c"(count) : "d"(port) : "memory"); }

/* A short delay: a write to the POST port 0x80 (ignored by QEMU's pc machine). */
static inline void io_wait(void) { outb(0x80, 0); }

#endif
