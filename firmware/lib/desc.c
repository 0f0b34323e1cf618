/* GDT with ring-0/ring-3 code and data and a 32-bit TSS; IDT of 256 gates to the stubs; C dispatch
 * (Intel SDM vol. 3: 3.4.5 segment descriptors, 6.11 IDT descriptors, 7.2.1 TSS). */
#include "fw.h"

struct gdt_entry { uint16_t limit_lo, base_lo; uint8_t base_mid, access, limit_hi_flags, base_hi; } PACKED;
struct idt_entry { uint16_t offset_lo, selector; uint8_t zero, type_attr; uint16_t offset_hi; } PACKED;
struct dtr { uint16_t limit; uint32_t base; } PACKED;

static struct gdt_entry gdt[GDT_ENTRIES] __attribute__((aligned(8)));
static struct idt_entry idt[256] __attribute__((aligned(8)));
static isr_handler_t handlers[256];
struct tss32 tss __attribute__((aligned(16)));
static uint8_t ring0_stack[8192] __attribute__((aligned(16)));

void gdt_set(int index, uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
    struct gdt_entry *e = &gdt[index];
    e->limit_lo = (uint16_t)limit;
    e->base_lo = (uint16_t)base;
    e->base_mid = (uint8_t)(base >> 16);
    e->access = access;
    e->limit_hi_flags = (uint8_t)(((limit >> 16) & 0x0F) | (flags << 4));
    e->base_hi = (uint8_t)(base >> 24);
}

void gdt_init(void)
{
    gdt_set(0, 0, 0, 0, 0);
    gdt_set(1, 0, 0xFFFFF, SEG_P | SEG_DPL(0) | SEG_S | SEG_CODE | SEG_RW, SEG_G | SEG_DB);
    gdt_set(2, 0, 0xFFFFF, SEG_P | SEG_DPL(0) | SEG_S | SEG_RW, SEG_G | SEG_DB);
    gdt_set(3, 0, 0xFFFFF, SEG_P | SEG_DPL(3) | SEG_S | SEG_CODE | SEG_RW, SEG_G | SEG_DB);
    gdt_set(4, 0, 0xFFFFF, SEG_P | SEG_DPL(3) | SEG_S | SEG_RW, SEG_G | SEG_DB);
    memset(&tss, 0, sizeof(tss));
    tss.ss0 = SEL_KDATA;
    tss.esp0 = (uint32_t)(ring0_stack + sizeof(ring0_stack));
    tss.iomap_base = sizeof(tss);   /* no I/O permission bitmap: CPL 3 port access faults */
    gdt_set(5, (uint32_t)&tss, sizeof(tss) - 1, SEG_P | SEG_TSS32_AVAIL, 0);

    struct dtr d = { sizeof(gdt) - 1, (uint32_t)gdt };
    __asm__ volatile(
        "lgdt %0\n\t"
        "ljmp $0x08, $1f\n"
        "1:\n\t"
        "movw $0x10, %%ax\n\t"
        "movw %%ax, %%ds\n\t"
        "movw %%ax, %%es\n\t"
        "movw %%ax, %%fs\n\t"
        "movw %%ax, %%gs\n\t"
        "movw %%ax, %%ss\n\t"
        "movw $0x28, %%ax\n\t"
        "ltr %%ax"
        : : "m"(d) : "eax", "memory");
}

void idt_set_raw(int vector, uint32_t offset, uint16_t selector, enum gate_type type, int dpl, int present)
{
    struct idt_entry *e = &idt[vector & 0xFF];
    e->offset_lo = (uint16_t)offset;
    e->offset_hi = (uint16_t)(offset >> 16);
    e->selector = selector;
    e->zero = 0;
    e->type_attr = (uint8_t)((present ? 0x80 : 0) | ((dpl & 3) << 5) | type);
}

void idt_set_gate(int vector, enum gate_type type, int dpl)
{
    idt_set_raw(vector, ISR_STUB(vector & 0xFF), SEL_KCODE, type, dpl, 1);
}

void idt_set_present(int vector, int present)
{
    if (present)
        idt[vector & 0xFF].type_attr |= 0x80;
    else
        idt[vector & 0xFF].type_attr &= 0x7F;
}

void idt_init(void)
{
    for (int v = 0; v < 256; v++)
        idt_set_gate(v, GATE_INTERRUPT, 0);
    struct dtr d = { sizeof(idt) - 1, (uint32_t)idt };
    __asm__ volatile("lidt %0" : : "m"(d) : "memory");
}

void set_handler(int vector, isr_handler_t handler) { handlers[vector & 0xFF] = handler; }

void isr_dispatch(struct regs *r);
void isr_dispatch(struct regs *r)
{
    isr_handler_t h = handlers[r->vector & 0xFF];
    if (h) {
        h(r);
        return;
    }
    printf("unexpected vector %u error %x eip %08x cs %x\n", r->vector, r->error, r->eip, r->cs & 0xFFFF);
    exit(0x7F);
}

void lib_start(uint32_t magic, void *mbi)
{
    multiboot_magic = magic;
    multiboot_info_ptr = (struct multiboot_info *)mbi;
    gdt_init();
    idt_init();
    kmain((struct multiboot_info *)mbi);
}
