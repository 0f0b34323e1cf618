/* hypercall (emu-only: no QEMU equivalent, VMCALL raises #UD there): exercises emu's VMCALL hypercall interface.
 * ABI: EAX = leaf, EBX/ECX/EDX = arguments, result in EAX (0 = ok, negative = error); the leaf table is in README.md.
 * Leaf 1 registers the guest-physical address of the guest's "write in progress" word. Under QEMU the #UD handler
 * reports the #UD and skips the 3-byte VMCALL, so the kernel still ends with exit(0). */
#include "fw.h"

static volatile uint32_t write_in_progress;
static volatile uint32_t ud_count;

static void on_ud(struct regs *r)
{
    const uint8_t *insn = (const uint8_t *)r->eip;
    if (insn[0] == 0x0F && insn[1] == 0x01 && insn[2] == 0xC1) {
        ud_count++;
        printf("  vmcall raised #UD at %08x (no hypervisor)\n", r->eip);
        r->eip += 3;
        r->eax = 0xFFFFFFFFu;
        return;
    }
    printf("unexpected #UD at %08x\n", r->eip);
    exit(0x7F);
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    set_handler(6, on_ud);
    printf("hypercall start\n");
    printf("leaf 1 (register write-in-progress word at %p):\n", (void *)&write_in_progress);
    int32_t r = vmcall(1, (uint32_t)&write_in_progress, 0, 0);
    printf("  result %d\n", r);
    printf("leaf 0xffff (undefined):\n");
    r = vmcall(0xFFFF, 0, 0, 0);
    printf("  result %d (%s)\n", r, r < 0 ? "error" : "ok");
    printf("hypercall done: %u #UD\n", ud_count);
    exit(0);
}
