/* Everything a firmware kernel needs: include this one header. A kernel defines void kmain(struct multiboot_info *). */
#ifndef FW_FW_H
#define FW_FW_H
#include "types.h"
#include "io.h"
#include "cpu.h"
#include "console.h"
#include "desc.h"
#include "pic.h"
#include "pci.h"
#include "multiboot.h"
#include "string.h"

void kmain(struct multiboot_info *mbi);

#endif
