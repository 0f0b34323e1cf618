/* hello: greeting plus the multiboot facts the loader handed over (QEMU reference: -m 32). */
#include "fw.h"

void kmain(struct multiboot_info *mbi)
{
    printf("hello from emu firmware\n");
    printf("magic=%08x\n", multiboot_magic);
    printf("flags=%08x\n", mbi->flags);
    if (mbi->flags & MBI_FLAG_MEM)
        printf("mem_lower=%u KiB mem_upper=%u KiB\n", mbi->mem_lower, mbi->mem_upper);
    /* QEMU passes "<kernel path as given to -kernel> <-append text>" as the command line. */
    printf("cmdline=\"%s\"\n", mb_cmdline(mbi));
    if (mbi->flags & MBI_FLAG_LOADER)
        printf("loader=\"%s\"\n", (const char *)mbi->boot_loader_name);
    printf("cr0=%08x if=%u\n", read_cr0(), (read_eflags() & EFLAGS_IF) ? 1 : 0);
    printf("bye\n");
    exit(0);
}
