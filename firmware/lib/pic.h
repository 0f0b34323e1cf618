/* 8259A PIC pair helpers (Intel 8259A datasheet: ICW1-4, OCW1-3). */
#ifndef FW_PIC_H
#define FW_PIC_H
#include "types.h"

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1

/* Reinitialise both PICs: IRQ 0-7 -> master_base.., IRQ 8-15 -> slave_base..; all IRQs masked afterwards. */
void pic_remap(uint8_t master_base, uint8_t slave_base);
/* Set both masks at once: bit n masks IRQ n (bits 8-15 = slave). */
void pic_set_mask(uint16_t mask);
uint16_t pic_get_mask(void);
void pic_unmask(int irq);        /* also unmasks IRQ 2 (cascade) for slave IRQs */
void pic_mask(int irq);
void pic_eoi(int irq);           /* non-specific EOI to the slave (irq >= 8) and the master */

#endif
