/* Multiboot information access (Multiboot Specification 0.6.96, 3.3). */
#include "fw.h"

uint32_t multiboot_magic;
struct multiboot_info *multiboot_info_ptr;

const char *mb_cmdline(const struct multiboot_info *mbi)
{
    if (!mbi || !(mbi->flags & MBI_FLAG_CMDLINE) || !mbi->cmdline)
        return "";
    return (const char *)mbi->cmdline;
}
