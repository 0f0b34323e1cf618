/* NE2000 (DP8390 core) driver: see ne2000.h (NatSemi DP8390D datasheet sections 10 and 11, QEMU ne2k_isa). */
#include "ne2000.h"
#include "pic.h"

/* True when something answers like an NE2000 at io (an empty ISA slot reads 0xFF everywhere). */
bool ne2k_present(uint16_t io)
{
    return inb(io + NE_CR) != 0xFF;
}

/* Wait until all of the ISR bits in mask are set (bounded); returns the ISR. */
uint8_t ne2k_wait_isr(const struct ne2k *n, uint8_t mask)
{
    uint8_t isr = 0;
    for (uint32_t i = 0; i < NE_SPIN; i++) {
        isr = ne2k_in(n, NE_P0_ISR);
        if ((isr & mask) == mask)
            break;
    }
    return isr;
}

/* Remote DMA: program the count and start address, then issue the read or write command. */
void ne2k_dma_setup(const struct ne2k *n, uint16_t addr, uint16_t count, uint8_t cmd)
{
    ne2k_out(n, NE_P0_RBCR0, count & 0xFF);
    ne2k_out(n, NE_P0_RBCR1, count >> 8);
    ne2k_out(n, NE_P0_RSAR0, addr & 0xFF);
    ne2k_out(n, NE_P0_RSAR1, addr >> 8);
    ne2k_out(n, NE_CR, NE_CR_STA | cmd);
}

/* Copy len bytes of NIC memory from addr into buf (an odd tail costs one extra byte read in word mode). */
void ne2k_read_mem(const struct ne2k *n, uint16_t addr, void *buf, uint16_t len)
{
    uint8_t *p = (uint8_t *)buf;
    if (!len)
        return;
    if (n->word) {
        uint16_t count = (len + 1) & ~1u;
        ne2k_dma_setup(n, addr, count, NE_CR_RREAD);
        insw(n->io + NE_DATA, p, len / 2);
        if (len & 1)
            p[len - 1] = (uint8_t)inw(n->io + NE_DATA);
    } else {
        ne2k_dma_setup(n, addr, len, NE_CR_RREAD);
        insb(n->io + NE_DATA, p, len);
    }
    ne2k_wait_isr(n, NE_ISR_RDC);
    ne2k_out(n, NE_P0_ISR, NE_ISR_RDC);
}

/* Copy len bytes from buf into NIC memory at addr (word mode: padded to an even count with a zero byte). */
void ne2k_write_mem(const struct ne2k *n, uint16_t addr, const void *buf, uint16_t len)
{
    const uint8_t *p = (const uint8_t *)buf;
    if (!len)
        return;
    if (n->word) {
        uint16_t count = (len + 1) & ~1u;
        ne2k_dma_setup(n, addr, count, NE_CR_RWRITE);
        outsw(n->io + NE_DATA, p, len / 2);
        if (len & 1)
            outw(n->io + NE_DATA, p[len - 1]);
    } else {
        ne2k_dma_setup(n, addr, len, NE_CR_RWRITE);
        outsb(n->io + NE_DATA, p, len);
    }
    ne2k_wait_isr(n, NE_ISR_RDC);
    ne2k_out(n, NE_P0_ISR, NE_ISR_RDC);
}

/* Reset through the reset port and wait for ISR.RST (datasheet 11.0 is then followed by ne2k_init). */
void ne2k_reset(const struct ne2k *n)
{
    uint8_t v = inb(n->io + NE_RESET);
    outb(n->io + NE_RESET, v);
    ne2k_wait_isr(n, NE_ISR_RST);
}

/* Probe, reset and start the NIC at io: ring rx_start..rx_stop, transmit buffer at NE_TX_PAGE, RCR = rcr,
 * IMR = imr; the station address comes from the PROM (read in byte mode). Returns 0, or -1 when absent. */
int ne2k_init(struct ne2k *n, uint16_t io, bool word, uint8_t rcr, uint8_t imr)
{
    n->io = io;
    n->word = 0;
    n->rx_start = NE_RX_START;
    n->rx_stop = NE_RX_STOP;
    if (!ne2k_present(io))
        return -1;
    ne2k_reset(n);
    ne2k_out(n, NE_CR, NE_CR_STP | NE_CR_NODMA | NE_CR_PAGE0);
    ne2k_out(n, NE_P0_DCR, NE_DCR_BYTE);
    ne2k_out(n, NE_P0_RBCR0, 0);
    ne2k_out(n, NE_P0_RBCR1, 0);
    ne2k_out(n, NE_P0_RCR, rcr);
    ne2k_out(n, NE_P0_TCR, 0x02);                 /* internal loopback while setting up */
    ne2k_out(n, NE_P0_PSTART, n->rx_start);
    ne2k_out(n, NE_P0_BNRY, n->rx_start);
    ne2k_out(n, NE_P0_PSTOP, n->rx_stop);
    ne2k_out(n, NE_P0_ISR, 0xFF);
    ne2k_out(n, NE_P0_IMR, 0x00);
    /* PROM: 32 bytes, each address byte doubled (read in byte mode, before switching to words). */
    ne2k_read_mem(n, 0, n->prom, sizeof n->prom);
    for (int i = 0; i < 6; i++)
        n->mac[i] = n->prom[2 * i];
    ne2k_out(n, NE_CR, NE_CR_STP | NE_CR_NODMA | NE_CR_PAGE1);
    for (int i = 0; i < 6; i++)
        ne2k_out(n, NE_P1_PAR0 + i, n->mac[i]);
    for (int i = 0; i < 8; i++)
        ne2k_out(n, NE_P1_MAR0 + i, 0);
    n->next = n->rx_start + 1;
    ne2k_out(n, NE_P1_CURR, n->next);
    ne2k_out(n, NE_CR, NE_CR_STP | NE_CR_NODMA | NE_CR_PAGE0);
    if (word) {
        ne2k_out(n, NE_P0_DCR, NE_DCR_WORD);
        n->word = 1;
    }
    ne2k_out(n, NE_CR, NE_CR_STA | NE_CR_NODMA | NE_CR_PAGE0);
    ne2k_out(n, NE_P0_TCR, 0x00);                 /* normal transmit */
    ne2k_out(n, NE_P0_ISR, 0xFF);
    ne2k_out(n, NE_P0_IMR, imr);
    return 0;
}

/* Program the receive configuration register (NE_RCR_AB / AM / PRO). */
void ne2k_set_rcr(const struct ne2k *n, uint8_t rcr)
{
    ne2k_out(n, NE_P0_RCR, rcr);
}

/* Load the 64-bit multicast hash filter MAR0..7. */
void ne2k_set_mar(const struct ne2k *n, const uint8_t mar[8])
{
    ne2k_out(n, NE_CR, NE_CR_STA | NE_CR_NODMA | NE_CR_PAGE1);
    for (int i = 0; i < 8; i++)
        ne2k_out(n, NE_P1_MAR0 + i, mar[i]);
    ne2k_out(n, NE_CR, NE_CR_STA | NE_CR_NODMA | NE_CR_PAGE0);
}

/* Multicast filter bit of a group address: the top 6 bits of the Ethernet CRC-32 (bytes fed LSB first). */
int ne2k_mcast_bit(const uint8_t addr[6])
{
    uint32_t crc = 0xFFFFFFFFu;
    for (int i = 0; i < 6; i++) {
        uint8_t b = addr[i];
        for (int j = 0; j < 8; j++) {
            uint32_t carry = ((crc >> 31) ^ b) & 1;
            crc <<= 1;
            b >>= 1;
            if (carry)
                crc ^= 0x04C11DB7u;
        }
    }
    return (int)(crc >> 26);
}

/* Start transmitting len bytes already in NIC memory at page (no copy); returns the ISR once PTX/TXE is seen. */
uint8_t ne2k_transmit_page(const struct ne2k *n, uint8_t page, uint16_t len)
{
    uint8_t isr = 0;
    ne2k_out(n, NE_P0_TPSR, page);
    ne2k_out(n, NE_P0_TBCR0, len & 0xFF);
    ne2k_out(n, NE_P0_TBCR1, len >> 8);
    ne2k_out(n, NE_CR, NE_CR_STA | NE_CR_TXP | NE_CR_NODMA);
    for (uint32_t i = 0; i < NE_SPIN; i++) {
        isr = ne2k_in(n, NE_P0_ISR);
        if (isr & (NE_ISR_PTX | NE_ISR_TXE))
            break;
    }
    ne2k_out(n, NE_P0_ISR, isr & (NE_ISR_PTX | NE_ISR_TXE));
    return isr;
}

/* Send one frame (copied to NE_TX_PAGE; the NIC sends exactly len bytes, no padding); returns the TSR. */
uint8_t ne2k_send(const struct ne2k *n, const void *frame, uint16_t len)
{
    ne2k_write_mem(n, NE_TX_PAGE << 8, frame, len);
    ne2k_transmit_page(n, NE_TX_PAGE, len);
    return ne2k_in(n, NE_P0_TSR);
}

/* CURR, the page the NIC will write the next frame to. */
uint8_t ne2k_curr(const struct ne2k *n)
{
    ne2k_out(n, NE_CR, NE_CR_STA | NE_CR_NODMA | NE_CR_PAGE1);
    uint8_t curr = ne2k_in(n, NE_P1_CURR);
    ne2k_out(n, NE_CR, NE_CR_STA | NE_CR_NODMA | NE_CR_PAGE0);
    return curr;
}

/* True when the ring holds a frame the driver has not taken yet. */
bool ne2k_rx_pending(const struct ne2k *n)
{
    return ne2k_curr(n) != n->next;
}

/* Copy len bytes of ring data starting at NIC address addr, wrapping from rx_stop to rx_start. */
void ne2k_read_ring(const struct ne2k *n, uint16_t addr, uint8_t *buf, uint16_t len)
{
    uint16_t stop = (uint16_t)n->rx_stop << 8;
    if (addr + len > stop) {
        uint16_t first = stop - addr;
        ne2k_read_mem(n, addr, buf, first);
        ne2k_read_mem(n, (uint16_t)n->rx_start << 8, buf + first, len - first);
    } else {
        ne2k_read_mem(n, addr, buf, len);
    }
}

/* Take the next received frame: header into *h, up to max bytes into buf; returns the frame length (0: none,
 * -1: a corrupt header, the ring is then reset to empty). BNRY follows so the NIC may reuse the pages. */
int ne2k_recv(struct ne2k *n, struct ne2k_rx_header *h, void *buf, uint16_t max, uint8_t *page)
{
    if (!ne2k_rx_pending(n))
        return 0;
    *page = n->next;
    ne2k_read_mem(n, (uint16_t)n->next << 8, h, sizeof *h);
    int len = (int)h->length - 4;
    if (h->next < n->rx_start || h->next >= n->rx_stop || len < 0 || len > 1514) {
        n->next = ne2k_curr(n);
        ne2k_out(n, NE_P0_BNRY, n->next == n->rx_start ? n->rx_stop - 1 : n->next - 1);
        return -1;
    }
    uint16_t copy = (uint16_t)(len < max ? len : max);
    ne2k_read_ring(n, ((uint16_t)n->next << 8) + 4, (uint8_t *)buf, copy);
    n->next = h->next;
    ne2k_out(n, NE_P0_BNRY, n->next == n->rx_start ? n->rx_stop - 1 : n->next - 1);
    return len;
}

/* Interrupt acknowledge: read ISR and write back what was set, until nothing is left (so an edge-triggered
 * line sees a new edge for the next event); returns every bit seen. Call with page 0 selected. */
uint8_t ne2k_ack(const struct ne2k *n)
{
    uint8_t seen = 0;
    for (int i = 0; i < 16; i++) {
        uint8_t isr = ne2k_in(n, NE_P0_ISR) & 0x7F;
        if (!isr)
            break;
        seen |= isr;
        ne2k_out(n, NE_P0_ISR, isr);
    }
    return seen;
}

volatile uint8_t ne2k_irq_seen;
static struct ne2k *irq_nic;
static int irq_line;

static void ne2k_irq_handler(struct regs *r)
{
    (void)r;
    ne2k_irq_seen |= ne2k_ack(irq_nic);
    pic_eoi(irq_line);
}

void ne2k_irq_attach(struct ne2k *n, int irq)
{
    irq_nic = n;
    irq_line = irq;
    set_handler(irq < 8 ? 0x20 + irq : 0x28 + irq - 8, ne2k_irq_handler);
}
