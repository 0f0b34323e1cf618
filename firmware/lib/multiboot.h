/* Multiboot v1 information structure (Multiboot Specification 0.6.96, section 3.3). */
#ifndef FW_MULTIBOOT_H
#define FW_MULTIBOOT_H
#include "types.h"

#define MULTIBOOT_HEADER_MAGIC 0x1BADB002u
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u

#define MBI_FLAG_MEM 0x001u      /* mem_lower / mem_upper valid */
#define MBI_FLAG_BOOTDEV 0x002u  /* boot_device valid */
#define MBI_FLAG_CMDLINE 0x004u  /* cmdline valid */
#define MBI_FLAG_MODS 0x008u     /* mods_count / mods_addr valid */
#define MBI_FLAG_MMAP 0x040u     /* mmap_length / mmap_addr valid */
#define MBI_FLAG_LOADER 0x200u   /* boot_loader_name valid */

struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower;      /* KiB below 1 MiB */
    uint32_t mem_upper;      /* KiB above 1 MiB (up to the first hole) */
    uint32_t boot_device;
    uint32_t cmdline;        /* physical address of a NUL-terminated string */
    uint32_t mods_count;
    uint32_t mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length;
    uint32_t mmap_addr;
    uint32_t drives_length;
    uint32_t drives_addr;
    uint32_t config_table;
    uint32_t boot_loader_name;
    uint32_t apm_table;
} PACKED;

/* Values captured by the entry code before kmain runs. */
extern uint32_t multiboot_magic;
extern struct multiboot_info *multiboot_info_ptr;

/* The kernel command line ("" when the loader gave none). */
const char *mb_cmdline(const struct multiboot_info *mbi);

#endif
