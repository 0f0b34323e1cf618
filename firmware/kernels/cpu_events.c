/* cpu_events: every exception and interrupt kind delivered through the IDT and reported (vector, error code,
 * faulting EIP, CR2): int n, int3, into, #DE, #UD, #GP, #NP, #SS, #PF, a ring-3 int 0x80 system call through a
 * DPL-3 gate, faults raised at CPL 3, trap gate vs interrupt gate (IF inside the handler) and a #DF.
 * Intel SDM vol. 3, chapter 6 (interrupt and exception handling), 6.15 (exception reference). */
#include "fw.h"

/* Address to resume at after an expected fault (0 = return normally) and the address the event should report. */
volatile uint32_t fixup;
volatile uint32_t expect_eip;
static uint32_t pd[1024] __attribute__((aligned(4096)));
static uint32_t pt0[1024] __attribute__((aligned(4096)));
static uint8_t user_stack[4096] __attribute__((aligned(16)));

static const char *const names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "r15",
    "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "r22", "r23", "r24", "r25", "r26", "r27", "r28", "r29", "r30", "r31",
};

static void report(struct regs *r)
{
    printf("  %s vector=%u error=%04x eip=%s cpl=%u", r->vector < 32 ? names[r->vector] : "int", r->vector,
           r->error, r->eip == expect_eip ? "expected" : "WRONG", r->cs & 3);
    if (r->eip != expect_eip)
        printf(" (got %08x want %08x)", r->eip, expect_eip);
    if (r->vector == 14)
        printf(" cr2=%08x", read_cr2());
    putc('\n');
}

static void on_event(struct regs *r)
{
    report(r);
    if (fixup) {
        r->eip = fixup;
        fixup = 0;
    }
}

/* #DF: the saved EIP is undefined (SDM 6.15, interrupt 8), so it is not printed; resume at the fixup. */
static void on_double_fault(struct regs *r)
{
    printf("  #DF vector=%u error=%04x\n", r->vector, r->error);
    r->eip = fixup;
    fixup = 0;
}

/* A fault test: expect_eip = the faulting instruction (label 2), resume after it (label 1). */
#define FAULT(insns, ...) \
    __asm__ volatile("movl $1f, fixup\n\tmovl $2f, expect_eip\n\t" insns "\n1:" __VA_ARGS__)
/* A trap test: the event reports the address after the instruction (label 1). */
#define TRAP(insns, ...) __asm__ volatile("movl $0, fixup\n\tmovl $1f, expect_eip\n\t" insns "\n1:" __VA_ARGS__)

static void test_software(void)
{
    printf("int 0x30 (interrupt gate, DPL 0):\n");
    TRAP("int $0x30", ::: "memory");
    printf("int3:\n");
    TRAP("int3", ::: "memory");
    printf("into with OF=1:\n");
    TRAP("movl $0x7fffffff, %%eax\n\taddl $1, %%eax\n\tinto", ::: "eax", "memory");
    printf("into with OF=0: ");
    expect_eip = 0;
    __asm__ volatile("xorl %%eax, %%eax\n\tinto" ::: "eax", "memory");
    printf("no event\n");
}

static void test_faults(void)
{
    printf("#DE: div by zero:\n");
    FAULT("xorl %%ecx, %%ecx\n\tmovl $1, %%eax\n\txorl %%edx, %%edx\n2:\tdivl %%ecx", ::: "eax", "ecx", "edx", "memory");
    printf("#UD: ud2:\n");
    FAULT("2:\tud2", ::: "memory");
    printf("#GP: mov ds, selector 0x1230 beyond the GDT limit:\n");
    FAULT("movw $0x1230, %%ax\n2:\tmovw %%ax, %%ds", ::: "eax", "memory");
    printf("#NP: mov ds, not-present data segment 0x30:\n");
    FAULT("movw $0x30, %%ax\n2:\tmovw %%ax, %%ds", ::: "eax", "memory");
    printf("#NP: int 0x41 through a not-present gate:\n");
    FAULT("2:\tint $0x41", ::: "memory");
    printf("#SS: mov ss, not-present data segment 0x38:\n");
    FAULT("movw $0x38, %%ax\n2:\tmovw %%ax, %%ss", ::: "eax", "memory");
}

static void test_paging(void)
{
    for (uint32_t i = 0; i < 1024; i++)
        pt0[i] = (i << 12) | 0x3;            /* identity 0-4 MiB, present, writable, supervisor */
    pt0[1023] = (1023u << 12) | 0x1;         /* 0x3FF000: present, read-only */
    pd[0] = (uint32_t)pt0 | 0x3;             /* pd[1..] not present */
    write_cr3((uint32_t)pd);
    write_cr0(read_cr0() | CR0_PG | CR0_WP);
    printf("paging on: cr0=%08x cr3=%08x\n", read_cr0(), read_cr3());
    printf("#PF: read of not-present 0x00400123:\n");
    FAULT("2:\tmovl 0x00400123, %%eax", ::: "eax", "memory");
    printf("#PF: write to not-present 0x00800456:\n");
    FAULT("2:\tmovl %%eax, 0x00800456", ::: "memory");
    printf("#PF: write to read-only 0x003ff010 with CR0.WP=1:\n");
    FAULT("2:\tmovl %%eax, 0x003ff010", ::: "memory");
    write_cr0(read_cr0() & ~(CR0_PG | CR0_WP));
    printf("paging off: cr0=%08x\n", read_cr0());
}

/* System call handler (int 0x80, DPL 3). EAX = number: 0 exit(ebx), 1 print string ebx, 2 echo ebx + 1. */
static void on_syscall(struct regs *r)
{
    uint8_t *sp = (uint8_t *)r;
    int on_ring0_stack = sp > (uint8_t *)tss.esp0 - 8192 && sp < (uint8_t *)tss.esp0;
    switch (r->eax) {
    case 0:
        printf("  syscall exit(%u)\n", r->ebx);
        user_return((int)r->ebx);
    case 1:
        printf("  syscall print: %s", (const char *)r->ebx);
        break;
    case 2:
        printf("  syscall echo: cs=%04x ss=%04x ds=%04x IF=%u esp0-stack=%s arg=%x\n", r->cs & 0xFFFF,
               r->user_ss & 0xFFFF, r->ds & 0xFFFF, (r->eflags & EFLAGS_IF) ? 1 : 0, on_ring0_stack ? "yes" : "no",
               r->ebx);
        r->eax = r->ebx + 1;
        return;
    default:
        printf("  syscall %u unknown\n", r->eax);
    }
    r->eax = 0;
}

static inline uint32_t syscall(uint32_t nr, uint32_t arg)
{
    __asm__ volatile("int $0x80" : "+a"(nr) : "b"(arg) : "memory");
    return nr;
}

static void user_main(void)
{
    uint32_t cs, ss;
    __asm__ volatile("movl %%cs, %0\n\tmovl %%ss, %1" : "=r"(cs), "=r"(ss));
    syscall(1, (uint32_t)"hello from ring 3\n");
    uint32_t v = syscall(2, 0x1233);
    syscall(1, (uint32_t)(v == 0x1234 ? "ring 3 got 0x1234 back\n" : "ring 3 got a WRONG value back\n"));
    syscall(1, (uint32_t)((cs & 0xFFFF) == SEL_UCODE && (ss & 0xFFFF) == SEL_UDATA ? "ring 3 cs=001b ss=0023\n"
                                                                        : "ring 3 WRONG selectors\n"));
    syscall(1, (uint32_t)"int 0x81 through a DPL-0 gate at CPL 3:\n");
    FAULT("2:\tint $0x81", ::: "memory");    /* #GP(0x81 * 8 + 2) */
    syscall(1, (uint32_t)"cli at CPL 3 with IOPL 0:\n");
    FAULT("2:\tcli", ::: "memory");          /* #GP(0) */
    syscall(1, (uint32_t)"in al, 0x21 at CPL 3 (no I/O bitmap):\n");
    FAULT("2:\tinb $0x21, %%al", ::: "eax", "memory");   /* #GP(0) */
    syscall(1, (uint32_t)"mov eax, cr0 at CPL 3:\n");
    FAULT("2:\tmovl %%cr0, %%eax", ::: "eax", "memory"); /* #GP(0) */
    syscall(0, 7);
    syscall(1, (uint32_t)"NOT REACHED\n");
    for (;;)
        ;
}

static void test_ring3(void)
{
    printf("ring 3: int 0x80 through a DPL-3 interrupt gate, faults at CPL 3:\n");
    idt_set_gate(0x80, GATE_INTERRUPT, 3);
    set_handler(0x80, on_syscall);
    int v = run_user(user_main, user_stack + sizeof(user_stack));
    uint32_t cs;
    __asm__ volatile("movl %%cs, %0" : "=r"(cs));
    printf("back in ring 0: run_user returned %d, cs=%04x\n", v, cs & 0xFFFF);
}

static void on_gate(struct regs *r)
{
    printf("  vector=%u IF in handler=%u IF saved=%u\n", r->vector, (read_eflags() & EFLAGS_IF) ? 1 : 0,
           (r->eflags & EFLAGS_IF) ? 1 : 0);
}

static void test_gates(void)
{
    pic_set_mask(0xFFFF);   /* no IRQ may arrive while IF=1 */
    idt_set_gate(0x31, GATE_TRAP, 0);
    idt_set_gate(0x32, GATE_INTERRUPT, 0);
    set_handler(0x31, on_gate);
    set_handler(0x32, on_gate);
    printf("trap gate vs interrupt gate (IF=1 before):\n");
    sti();
    __asm__ volatile("int $0x31\n\tint $0x32" ::: "memory");
    cli();
}

static void test_double_fault(void)
{
    printf("#DF: #DE delivered through a not-present gate (#NP during #DE):\n");
    idt_set_present(0, 0);
    set_handler(8, on_double_fault);
    FAULT("xorl %%ecx, %%ecx\n\tmovl $1, %%eax\n\txorl %%edx, %%edx\n2:\tdivl %%ecx", ::: "eax", "ecx", "edx", "memory");
    idt_set_present(0, 1);
    printf("after #DF: div by zero again:\n");
    FAULT("xorl %%ecx, %%ecx\n\tmovl $1, %%eax\n\txorl %%edx, %%edx\n2:\tdivl %%ecx", ::: "eax", "ecx", "edx", "memory");
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("cpu_events start\n");
    static const int vectors[] = { 0, 3, 4, 6, 11, 12, 13, 14, 0x30, 0x41 };
    for (unsigned i = 0; i < ARRAY_SIZE(vectors); i++)
        set_handler(vectors[i], on_event);
    idt_set_present(0x41, 0);
    gdt_set(6, 0, 0xFFFFF, SEG_DPL(0) | SEG_S | SEG_RW, SEG_G | SEG_DB);   /* 0x30: data, not present */
    gdt_set(7, 0, 0xFFFFF, SEG_DPL(0) | SEG_S | SEG_RW, SEG_G | SEG_DB);   /* 0x38: data, not present */
    test_software();
    test_faults();
    test_paging();
    test_ring3();
    test_gates();
    test_double_fault();
    printf("cpu_events done\n");
    exit(0);
}
