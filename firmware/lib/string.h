/* Minimal memory/string functions (GCC may emit calls to memset/memcpy/memcmp even when freestanding). */
#ifndef FW_STRING_H
#define FW_STRING_H
#include "types.h"
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
#endif
