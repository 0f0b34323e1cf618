/* 8259A pair: ICW1-ICW4 initialisation, OCW1 masks, OCW2 non-specific EOI (8259A datasheet). */
#include "fw.h"

void pic_remap(uint8_t master_base, uint8_t slave_base)
{
    outb(PIC1_CMD, 0x11);          /* ICW1: edge, cascade, ICW4 needed */
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, master_base);  /* ICW2: vector base */
    outb(PIC2_DATA, slave_base);
    outb(PIC1_DATA, 0x04);         /* ICW3: slave on IRQ 2 */
    outb(PIC2_DATA, 0x02);         /* ICW3: slave id 2 */
    outb(PIC1_DATA, 0x01);         /* ICW4: 8086 mode, normal EOI */
    outb(PIC2_DATA, 0x01);
    pic_set_mask(0xFFFF);
}

void pic_set_mask(uint16_t mask)
{
    outb(PIC1_DATA, (uint8_t)mask);
    outb(PIC2_DATA, (uint8_t)(mask >> 8));
}

uint16_t pic_get_mask(void) { return (uint16_t)(inb(PIC1_DATA) | (inb(PIC2_DATA) << 8)); }

void pic_unmask(int irq)
{
    uint16_t m = pic_get_mask() & (uint16_t)~(1u << irq);
    if (irq >= 8)
        m &= (uint16_t)~(1u << 2);
    pic_set_mask(m);
}

void pic_mask(int irq) { pic_set_mask(pic_get_mask() | (uint16_t)(1u << irq)); }

void pic_eoi(int irq)
{
    if (irq >= 8)
        outb(PIC2_CMD, 0x20);
    outb(PIC1_CMD, 0x20);
}
