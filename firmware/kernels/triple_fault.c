/* triple_fault: prints one line, then makes every exception undeliverable (IDT limit 0) and executes ud2:
 * #UD -> #GP (vector beyond the IDT limit) -> #DF -> #GP -> shutdown (Intel SDM vol. 3, 6.15 interrupt 8).
 * QEMU with -no-reboot treats the shutdown as a reset request and exits with status 0; emu ends the run with status 0
 * and the reason on stderr. Nothing after the ud2 may be printed. */
#include "fw.h"

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("triple_fault: loading an empty IDT and executing ud2\n");
    struct { uint16_t limit; uint32_t base; } PACKED empty = { 0, 0 };
    __asm__ volatile("lidt %0\n\tud2" : : "m"(empty) : "memory");
    printf("NOT REACHED\n");
    exit(0x55);
}
