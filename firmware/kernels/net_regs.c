/* net_regs: NE2000 register-level probe (no traffic): power-on state, register pages 0-3, wide accesses, the
 * reset port, remote DMA in byte/word/dword mode, DMA past the end of NIC memory and into the hole, the RSAR wrap
 * at PSTOP, zero-count DMA, writes of ring pointers beyond memory, ISR write-1-to-clear and RST, transmit while
 * stopped. Every line is a fact QEMU 7.2's ne2k_isa shows; emu's model must print the same.
 * Without a card at 0x300 it says so and exits 0.
 */
#include "fw.h"
#include "ne2000.h"

#define IO 0x300

static void out(uint8_t reg, uint8_t v) { outb(IO + reg, v); }
static uint8_t in(uint8_t reg) { return inb(IO + reg); }

static void page(uint8_t p) { out(NE_CR, (uint8_t)((in(NE_CR) & 0x3F) | (p << 6))); }

static void dma(uint16_t addr, uint16_t count, uint8_t cmd)
{
    out(NE_P0_RBCR0, count & 0xFF);
    out(NE_P0_RBCR1, count >> 8);
    out(NE_P0_RSAR0, addr & 0xFF);
    out(NE_P0_RSAR1, addr >> 8);
    out(NE_CR, (uint8_t)((in(NE_CR) & (NE_CR_STP | NE_CR_STA)) | cmd));
}

static uint16_t crda(void) { return (uint16_t)(in(NE_P0_RSAR0) | (in(NE_P0_RSAR1) << 8)); }

static void dump_page(uint8_t p)
{
    page(p);
    printf("page %u:", p);
    for (int r = 1; r < 16; r++)
        printf(" %02x", in((uint8_t)r));
    printf("\n");
    page(0);
}

static void read_bytes(const char *what, uint16_t addr, uint16_t n)
{
    dma(addr, n, NE_CR_RREAD);
    printf("%s:", what);
    for (uint16_t i = 0; i < n; i++)
        printf(" %02x", inb(IO + NE_DATA));
    printf(" crda=%04x isr=%02x\n", crda(), in(NE_P0_ISR));
    out(NE_P0_ISR, NE_ISR_RDC);
}

static void write_bytes(uint16_t addr, const uint8_t *p, uint16_t n)
{
    dma(addr, n, NE_CR_RWRITE);
    for (uint16_t i = 0; i < n; i++)
        outb(IO + NE_DATA, p[i]);
    out(NE_P0_ISR, NE_ISR_RDC);
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("net_regs: NE2000 at %x\n", IO);
    if (!ne2k_present(IO)) {
        printf("no NE2000 at %x\n", IO);
        exit(0);
    }
    /* power-on state: nothing programmed yet */
    printf("power-on: cr=%02x isr=%02x\n", in(NE_CR), in(NE_P0_ISR));
    dump_page(0);
    read_bytes("power-on prom", 0, 32);
    uint32_t w0 = inw(IO), l0 = inl(IO), b11 = inb(IO + 0x11), b1e = inb(IO + 0x1E), w1f = inw(IO + NE_RESET);
    printf("wide: inw(00)=%04x inl(00)=%08x inb(11)=%02x inb(1e)=%02x inw(1f)=%04x isr=%02x\n", w0, l0, b11, b1e,
           w1f, in(NE_P0_ISR));
    outw(IO, 0x0001);
    printf("outw(00, 0001) ignored: cr=%02x\n", in(NE_CR));

    out(NE_P0_ISR, NE_ISR_RDC);
    uint8_t rst = inb(IO + NE_RESET);
    printf("reset port read=%02x isr=%02x\n", rst, in(NE_P0_ISR));
    out(NE_P0_ISR, 0xFF);
    printf("isr after writing ff: %02x\n", in(NE_P0_ISR));
    out(NE_CR, NE_CR_STP | NE_CR_NODMA);
    printf("isr after stop: %02x\n", in(NE_P0_ISR));
    out(NE_CR, NE_CR_STA | NE_CR_NODMA);
    printf("isr after start: %02x cr=%02x\n", in(NE_P0_ISR), in(NE_CR));
    read_bytes("prom after 2nd reset", 0, 32);

    /* ring programming, then pointers beyond memory */
    out(NE_CR, NE_CR_STP | NE_CR_NODMA);
    out(NE_P0_DCR, NE_DCR_BYTE);
    out(NE_P0_PSTART, 0x46);
    out(NE_P0_PSTOP, 0x80);
    out(NE_P0_BNRY, 0x46);
    page(1);
    out(NE_P1_CURR, 0x47);
    page(0);
    out(NE_P0_PSTART, 0xC1);
    out(NE_P0_PSTOP, 0xFF);
    out(NE_P0_BNRY, 0xC0);
    page(1);
    out(NE_P1_CURR, 0xC0);
    printf("after pstart=c1 pstop=ff bnry=c0 curr=c0: curr=%02x", in(NE_P1_CURR));
    page(2);
    printf(" pstart=%02x pstop=%02x", in(NE_P2_PSTART), in(NE_P2_PSTOP));
    page(0);
    printf(" bnry=%02x\n", in(NE_P0_BNRY));
    out(NE_P0_PSTOP, 0xC0);
    page(2);
    printf("pstop=c0 accepted: %02x\n", in(NE_P2_PSTOP));
    page(0);
    out(NE_P0_PSTOP, 0x80);
    out(NE_CR, NE_CR_STA | NE_CR_NODMA);
    dump_page(0);
    dump_page(2);
    dump_page(3);

    /* remote DMA */
    static const uint8_t pattern[8] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    write_bytes(0x4000, pattern, 8);
    read_bytes("byte read 4000", 0x4000, 8);
    write_bytes(0xBFFE, pattern, 4);
    read_bytes("past end bffe", 0xBFFE, 4);
    write_bytes(0x0100, pattern, 2);
    read_bytes("hole 0100", 0x0100, 2);
    write_bytes(0x7FFF, pattern, 2);
    read_bytes("wrap 7fff", 0x7FFF, 2);
    read_bytes("pstart 4600", 0x4600, 1);

    uint32_t v1, v2;
    dma(0x4000, 4, NE_CR_RREAD);
    v1 = inw(IO + NE_DATA);
    v2 = inw(IO + NE_DATA);
    printf("inw in byte mode: %04x %04x crda=%04x\n", v1, v2, crda());
    out(NE_P0_ISR, NE_ISR_RDC);
    out(NE_P0_DCR, NE_DCR_WORD);
    dma(0x4000, 4, NE_CR_RREAD);
    v1 = inb(IO + NE_DATA);
    v2 = inb(IO + NE_DATA);
    printf("inb in word mode: %02x %02x crda=%04x isr=%02x\n", v1, v2, crda(), in(NE_P0_ISR));
    out(NE_P0_ISR, NE_ISR_RDC);
    dma(0x4001, 4, NE_CR_RREAD);
    v1 = inw(IO + NE_DATA);
    v2 = inw(IO + NE_DATA);
    printf("inw at odd 4001: %04x %04x crda=%04x\n", v1, v2, crda());
    out(NE_P0_ISR, NE_ISR_RDC);
    dma(0x4000, 8, NE_CR_RREAD);
    v1 = inl(IO + NE_DATA);
    v2 = inl(IO + NE_DATA);
    printf("inl: %08x %08x crda=%04x isr=%02x\n", v1, v2, crda(), in(NE_P0_ISR));
    out(NE_P0_ISR, NE_ISR_RDC);
    dma(0xBFFC, 4, NE_CR_RREAD);
    v1 = inl(IO + NE_DATA);
    v2 = inl(IO + NE_DATA);
    printf("inl at bffc: %08x then %08x crda=%04x\n", v1, v2, crda());
    out(NE_P0_ISR, NE_ISR_RDC);
    out(NE_P0_DCR, NE_DCR_BYTE);

    dma(0x4000, 2, NE_CR_RREAD);
    uint8_t a = inb(IO + NE_DATA), b = inb(IO + NE_DATA);
    uint8_t isr1 = in(NE_P0_ISR);
    out(NE_P0_ISR, NE_ISR_RDC);
    uint8_t c = inb(IO + NE_DATA);
    printf("read past count: %02x %02x isr=%02x then %02x isr=%02x crda=%04x\n", a, b, isr1, c, in(NE_P0_ISR),
           crda());
    out(NE_P0_ISR, NE_ISR_RDC);
    dma(0x4000, 0, NE_CR_RWRITE);
    printf("zero-count write command: isr=%02x\n", in(NE_P0_ISR));
    outb(IO + NE_DATA, 0x99);
    printf("write with count 0 ignored: crda=%04x\n", crda());
    out(NE_P0_ISR, NE_ISR_RDC);
    read_bytes("still", 0x4000, 1);

    /* transmit while stopped: nothing happens */
    out(NE_CR, NE_CR_STP | NE_CR_NODMA);
    out(NE_P0_TPSR, 0x40);
    out(NE_P0_TBCR0, 60);
    out(NE_P0_TBCR1, 0);
    out(NE_CR, NE_CR_STP | NE_CR_TXP | NE_CR_NODMA);
    printf("txp while stopped: cr=%02x isr=%02x tsr=%02x\n", in(NE_CR), in(NE_P0_ISR), in(NE_P0_TSR));
    out(NE_CR, NE_CR_STA | NE_CR_NODMA);
    printf("net_regs done\n");
    exit(0);
}
