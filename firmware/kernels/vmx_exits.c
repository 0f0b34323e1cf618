/* vmx_exits: executes each instruction that emu's VMX layer turns into a VM exit and prints only what is
 * deterministic and identical under QEMU: port I/O (plain, immediate, string, REP), MOV CR0/CR3/CR4, RDMSR/WRMSR,
 * CPUID (no values), RDTSC (only that it increases), HLT woken by a PIT interrupt, INT3, INVLPG.
 * Needs an ATA disk on the primary master (any contents; sector 1 is overwritten). VMCALL is in `hypercall`. */
#include "fw.h"
#include "ata.h"

static uint16_t sector_out[256];
static uint32_t sector_in[128];
static volatile uint32_t ticks;
static volatile uint32_t int3_seen;
static volatile uint32_t int3_eip;

/* Poll the status register until BSY clears (bounded so a broken device cannot hang the run). */
static uint8_t ata_wait(void) { return ata_poll_bsy(ATA_STATUS, 1000000); }

static void test_port_io(void)
{
    uint8_t v;
    printf("out 0x21, al (imm8) then in al, dx (dx=0x21): ");
    __asm__ volatile("movb $0xfb, %%al\n\toutb %%al, $0x21" ::: "eax");
    __asm__ volatile("inb %%dx, %%al" : "=a"(v) : "d"(0x21));
    printf("pic imr=%02x\n", v);
    outb(PIC1_DATA, 0xFF);
    printf("in al, 0xe9 (debugcon readback): %02x\n", inb(0xE9));
    outl(0xCF8, 0x80000000u);
    printf("out dx, eax / in eax, dx: pci 00:00.0 id=%08x\n", inl(0xCFC));
    outl(0xCF8, 0);
    static const char msg[] = "rep outsb to the debug console\n";
    outsb(0xE9, msg, sizeof(msg) - 1);
    static const char wide[] = "WORDS!";
    outsw(0xE9, wide, 3);   /* QEMU's debugcon ignores 16-bit writes: prints nothing */
    printf("rep outsw to 0xe9 printed nothing\n");
}

static void test_ata(void)
{
    outb(ATA_CONTROL, 0x02);   /* nIEN: no IRQ 14 */
    outb(ATA_DEVICE, 0xE0);
    uint8_t s = ata_wait();
    if (s == 0xFF || s == 0x00) {
        printf("ata: no disk on the primary master (status %02x)\n", s);
        return;
    }
    for (uint32_t i = 0; i < 256; i++)
        sector_out[i] = (uint16_t)(0xA500 + i * 7);
    ata_lba28(1, 1);
    outb(ATA_COMMAND, 0x30);   /* WRITE SECTORS */
    s = ata_wait();
    printf("ata write sectors lba 1: status before data %02x\n", s);
    if (!(s & ATA_DRQ))
        return;
    outsw(ATA_DATA, sector_out, 256);
    s = ata_wait();
    printf("rep outsw 256 words: status after %02x\n", s);
    ata_lba28(1, 1);
    outb(ATA_COMMAND, 0x20);   /* READ SECTORS */
    s = ata_wait();
    printf("ata read sectors lba 1: status before data %02x\n", s);
    if (!(s & ATA_DRQ))
        return;
    insl(ATA_DATA, sector_in, 128);
    s = ata_wait();
    printf("rep insd 128 dwords: status after %02x, first %08x last %08x, %s\n", s, sector_in[0], sector_in[127],
           memcmp(sector_in, sector_out, 512) ? "MISMATCH" : "matches what was written");
}

static void test_control_registers(void)
{
    uint32_t cr0 = read_cr0();
    write_cr0(cr0);
    printf("mov cr0: %08x, written back, reads %08x\n", cr0, read_cr0());
    uint32_t cr3 = read_cr3();
    write_cr3(0x00ABC000);
    uint32_t cr3b = read_cr3();
    write_cr3(cr3);
    printf("mov cr3: was %08x, wrote 00abc000, read %08x, restored %08x\n", cr3, cr3b, read_cr3());
    uint32_t cr4 = read_cr4();
    write_cr4(cr4 | CR4_PSE);
    uint32_t cr4b = read_cr4();
    write_cr4(cr4);
    printf("mov cr4: was %08x, set PSE reads %08x, restored %08x\n", cr4, cr4b, read_cr4());
}

static void test_msr(void)
{
    wrmsr(MSR_IA32_SYSENTER_CS, 0x0008);
    wrmsr(MSR_IA32_SYSENTER_ESP, 0x00123450);
    wrmsr(MSR_IA32_SYSENTER_EIP, 0x00101000);
    uint64_t cs = rdmsr(MSR_IA32_SYSENTER_CS);
    uint64_t esp = rdmsr(MSR_IA32_SYSENTER_ESP);
    uint64_t eip = rdmsr(MSR_IA32_SYSENTER_EIP);
    printf("wrmsr/rdmsr sysenter_cs=%08x:%08x esp=%08x eip=%08x\n", (uint32_t)(cs >> 32), (uint32_t)cs,
           (uint32_t)esp, (uint32_t)eip);
}

static int printable12(struct cpuid_regs r)
{
    uint32_t w[3] = { r.ebx, r.edx, r.ecx };
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 4; b++) {
            uint8_t c = (uint8_t)(w[i] >> (8 * b));
            if (c < 0x20 || c > 0x7E)
                return 0;
        }
    return 1;
}

static void test_cpuid_rdtsc(void)
{
    struct cpuid_regs r = cpuid(0, 0);
    printf("cpuid 0: max leaf >= 1: %s, vendor is 12 printable chars: %s\n", r.eax >= 1 ? "yes" : "no",
           printable12(r) ? "yes" : "no");
    uint64_t t1 = rdtsc();
    uint64_t t2 = rdtsc();
    printf("rdtsc: second read greater: %s\n", t2 > t1 ? "yes" : "no");
}

static void on_timer(struct regs *r)
{
    (void)r;
    ticks++;
    pic_eoi(0);
}

static void test_hlt(void)
{
    pic_remap(0x20, 0x28);
    set_handler(0x20, on_timer);
    outb(0x43, 0x34);            /* channel 0, lobyte/hibyte, mode 2 */
    outb(0x40, 0xA9);            /* 1193 = 0x04A9: about 1 ms */
    outb(0x40, 0x04);
    pic_unmask(0);
    uint32_t halts = 0;
    while (!ticks && halts < 1000) {
        sti_hlt();
        cli();
        halts++;
    }
    pic_set_mask(0xFFFF);
    printf("hlt with IF=1: woken by the PIT (irq 0): %s\n", ticks ? "yes" : "no");
}

static void on_int3(struct regs *r)
{
    int3_seen++;
    int3_eip = r->eip;
}

static void test_int3_invlpg(void)
{
    uint32_t after;
    set_handler(3, on_int3);
    __asm__ volatile("int3\n1:\tmovl $1b, %0" : "=r"(after) : : "memory");
    printf("int3: handled %u time(s), return eip after the int3: %s\n", int3_seen, int3_eip == after ? "yes" : "no");
    invlpg(0x00100000);
    printf("invlpg with paging off: completed\n");
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("vmx_exits start\n");
    test_port_io();
    test_ata();
    test_control_registers();
    test_msr();
    test_cpuid_rdtsc();
    test_hlt();
    test_int3_invlpg();
    printf("vmx_exits done\n");
    exit(0);
}
