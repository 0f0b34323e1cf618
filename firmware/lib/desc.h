/* Descriptor tables: GDT, TSS, IDT and the interrupt stubs (Intel SDM vol. 3, chapters 3, 6 and 7). */
#ifndef FW_DESC_H
#define FW_DESC_H
#include "types.h"

/* GDT layout set up by the library; entries GDT_FREE.. GDT_ENTRIES-1 are free for kernels (gdt_set). */
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UCODE 0x1B   /* GDT index 3, RPL 3 */
#define SEL_UDATA 0x23   /* GDT index 4, RPL 3 */
#define SEL_TSS 0x28
#define GDT_FREE 6
#define GDT_ENTRIES 16

/* Access byte bits (SDM 3.4.5). */
#define SEG_P 0x80
#define SEG_DPL(n) ((n) << 5)
#define SEG_S 0x10            /* code/data (not system) */
#define SEG_CODE 0x08
#define SEG_RW 0x02           /* readable code / writable data */
#define SEG_EXPAND_DOWN 0x04
#define SEG_TSS32_AVAIL 0x09
/* Flags nibble: G (4 KiB granularity) and D/B (32-bit). */
#define SEG_G 0x8
#define SEG_DB 0x4

/* Gate types (SDM 6.11). */
enum gate_type { GATE_INTERRUPT = 0xE, GATE_TRAP = 0xF, GATE_TASK = 0x5 };

/* Register frame handed to C interrupt handlers. user_esp/user_ss exist only when the CPU came from ring 3. */
struct regs {
    uint32_t gs, fs, es, ds;
    uint32_t edi, esi, ebp, esp_at_pusha, ebx, edx, ecx, eax;
    uint32_t vector, error;   /* error = 0 for vectors without an error code */
    uint32_t eip, cs, eflags;
    uint32_t user_esp, user_ss;
};

typedef void (*isr_handler_t)(struct regs *r);

struct tss32 {
    uint32_t link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags;
    uint32_t eax, ecx, edx, ebx, esp, ebp, esi, edi;
    uint32_t es, cs, ss, ds, fs, gs, ldt;
    uint16_t trap, iomap_base;
} PACKED;

extern struct tss32 tss;
extern uint8_t isr_stubs[];      /* 256 stubs, 16 bytes apart: isr_stubs + 16 * vector */
#define ISR_STUB(v) ((uint32_t)(isr_stubs + 16 * (v)))

void gdt_init(void);
void gdt_set(int index, uint32_t base, uint32_t limit, uint8_t access, uint8_t flags);
void idt_init(void);
/* Point vector at its stub with the given gate type and DPL (present). */
void idt_set_gate(int vector, enum gate_type type, int dpl);
/* Low-level: any offset/selector/type/DPL/present. */
void idt_set_raw(int vector, uint32_t offset, uint16_t selector, enum gate_type type, int dpl, int present);
void idt_set_present(int vector, int present);
/* Install a C handler for a vector (NULL = default: report and exit(0x7F)). */
void set_handler(int vector, isr_handler_t handler);
/* Ring 3: run fn at CPL 3 on the given stack (IF as now, IOPL 0); returns the value passed to user_return. */
int run_user(void (*fn)(void), void *user_stack_top);
/* From a handler entered from ring 3: abandon the ring-3 context and make run_user return value. */
NORETURN void user_return(int value);

/* Multiboot entry helper: loads the library GDT (with TSS) and IDT, then calls kmain. */
void lib_start(uint32_t magic, void *mbi);

#endif
