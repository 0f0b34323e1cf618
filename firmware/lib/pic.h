/* 8259A PIC pair helpers (Intel 8259A datasheet: ICW1-4, OCW1-3). */
#ifndef FW_PIC_H
#define FW_PIC_H
#include "types.h"
#include "io.h"

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
/* OCW3 reads of the chip whose command port is cmd_port (PIC1_CMD or PIC2_CMD): IRR (OCW3 0x0A), ISR (0x0B).
 * Inline, so a constant port stays an immediate operand (OUT imm8 / IN imm8), as the kernels' traces show it. */
static inline uint8_t pic_read_irr(uint16_t cmd_port) { outb(cmd_port, 0x0A); return inb(cmd_port); }
static inline uint8_t pic_read_isr(uint16_t cmd_port) { outb(cmd_port, 0x0B); return inb(cmd_port); }

#endif
