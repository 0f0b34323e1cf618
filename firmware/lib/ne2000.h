/* NE2000 (DP8390 core) driver (ne2000.c): probe, reset, PROM/MAC, remote DMA, transmit, receive ring, filters,
 * interrupt ack.
 *
 * Register layout and init order: NatSemi DP8390D datasheet, sections 10 (registers) and 11 (initialisation);
 * NE2000 conventions (data port +0x10, reset port +0x1F, PROM at NIC address 0, packet buffer pages 0x40-0x7F,
 * QEMU extends it to 0xBF) as QEMU's ne2k_isa presents them.
 *
 * The caller keeps interrupts disabled while calling them (the IRQ handler may call ne2k_ack only).
 */
#ifndef FW_NE2000_H
#define FW_NE2000_H
#include "types.h"
#include "io.h"
#include "desc.h"

/* Port offsets from the I/O base. */
#define NE_CR 0x00
#define NE_P0_PSTART 0x01
#define NE_P0_PSTOP 0x02
#define NE_P0_BNRY 0x03
#define NE_P0_TPSR 0x04 /* write; read = TSR */
#define NE_P0_TSR 0x04
#define NE_P0_TBCR0 0x05
#define NE_P0_TBCR1 0x06
#define NE_P0_ISR 0x07
#define NE_P0_RSAR0 0x08 /* write; read = CRDA0 */
#define NE_P0_RSAR1 0x09
#define NE_P0_RBCR0 0x0A /* write; read = RTL8029 ID 'P' under QEMU */
#define NE_P0_RBCR1 0x0B /* write; read = RTL8029 ID 'C' under QEMU */
#define NE_P0_RCR 0x0C /* write; read = RSR */
#define NE_P0_TCR 0x0D
#define NE_P0_DCR 0x0E
#define NE_P0_IMR 0x0F
#define NE_P1_PAR0 0x01
#define NE_P1_CURR 0x07
#define NE_P1_MAR0 0x08
#define NE_P2_PSTART 0x01
#define NE_P2_PSTOP 0x02
#define NE_DATA 0x10
#define NE_RESET 0x1F

/* CR bits. */
#define NE_CR_STP 0x01
#define NE_CR_STA 0x02
#define NE_CR_TXP 0x04
#define NE_CR_RREAD 0x08
#define NE_CR_RWRITE 0x10
#define NE_CR_NODMA 0x20
#define NE_CR_PAGE0 0x00
#define NE_CR_PAGE1 0x40
#define NE_CR_PAGE2 0x80

/* ISR / IMR bits. */
#define NE_ISR_PRX 0x01
#define NE_ISR_PTX 0x02
#define NE_ISR_RXE 0x04
#define NE_ISR_TXE 0x08
#define NE_ISR_OVW 0x10
#define NE_ISR_CNT 0x20
#define NE_ISR_RDC 0x40
#define NE_ISR_RST 0x80

/* RCR bits. */
#define NE_RCR_AB 0x04
#define NE_RCR_AM 0x08
#define NE_RCR_PRO 0x10

/* DCR: FT1 (8-byte FIFO threshold) | LS (normal operation) [| WTS word transfers]. */
#define NE_DCR_BYTE 0x48
#define NE_DCR_WORD 0x49

#define NE_TX_PAGE 0x40  /* one full frame: pages 0x40-0x45 */
#define NE_RX_START 0x46
#define NE_RX_STOP 0x80
#define NE_SPIN 1000000u /* bound on every busy-wait for the NIC */

struct ne2k {
    uint16_t io;
    uint8_t word;        /* 1: 16-bit data port transfers */
    uint8_t rx_start, rx_stop;
    uint8_t next;        /* the page the next received frame starts at (BNRY + 1) */
    uint8_t mac[6];
    uint8_t prom[32];
};

/* The 4-byte header the NIC writes before each received frame. */
struct ne2k_rx_header {
    uint8_t status;      /* RSR at reception */
    uint8_t next;        /* page of the following frame */
    uint16_t length;     /* frame bytes + 4 (this header), little-endian */
};

static inline uint8_t ne2k_in(const struct ne2k *n, uint8_t reg) { return inb(n->io + reg); }
static inline void ne2k_out(const struct ne2k *n, uint8_t reg, uint8_t v) { outb(n->io + reg, v); }

/* True when something answers like an NE2000 at io (an empty ISA slot reads 0xFF everywhere). */
bool ne2k_present(uint16_t io);

/* Wait until all of the ISR bits in mask are set (bounded); returns the ISR. */
uint8_t ne2k_wait_isr(const struct ne2k *n, uint8_t mask);

/* Remote DMA: program the count and start address, then issue the read or write command. */
void ne2k_dma_setup(const struct ne2k *n, uint16_t addr, uint16_t count, uint8_t cmd);

/* Copy len bytes of NIC memory from addr into buf (an odd tail costs one extra byte read in word mode). */
void ne2k_read_mem(const struct ne2k *n, uint16_t addr, void *buf, uint16_t len);

/* Copy len bytes from buf into NIC memory at addr (word mode: padded to an even count with a zero byte). */
void ne2k_write_mem(const struct ne2k *n, uint16_t addr, const void *buf, uint16_t len);

/* Reset through the reset port and wait for ISR.RST (datasheet 11.0 is then followed by ne2k_init). */
void ne2k_reset(const struct ne2k *n);

/* Probe, reset and start the NIC at io: ring rx_start..rx_stop, transmit buffer at NE_TX_PAGE, RCR = rcr,
 * IMR = imr; the station address comes from the PROM (read in byte mode). Returns 0, or -1 when absent. */
int ne2k_init(struct ne2k *n, uint16_t io, bool word, uint8_t rcr, uint8_t imr);

/* Program the receive configuration register (NE_RCR_AB / AM / PRO). */
void ne2k_set_rcr(const struct ne2k *n, uint8_t rcr);

/* Load the 64-bit multicast hash filter MAR0..7. */
void ne2k_set_mar(const struct ne2k *n, const uint8_t mar[8]);

/* Multicast filter bit of a group address: the top 6 bits of the Ethernet CRC-32 (bytes fed LSB first). */
int ne2k_mcast_bit(const uint8_t addr[6]);

/* Start transmitting len bytes already in NIC memory at page (no copy); returns the ISR once PTX/TXE is seen. */
uint8_t ne2k_transmit_page(const struct ne2k *n, uint8_t page, uint16_t len);

/* Send one frame (copied to NE_TX_PAGE; the NIC sends exactly len bytes, no padding); returns the TSR. */
uint8_t ne2k_send(const struct ne2k *n, const void *frame, uint16_t len);

/* CURR, the page the NIC will write the next frame to. */
uint8_t ne2k_curr(const struct ne2k *n);

/* True when the ring holds a frame the driver has not taken yet. */
bool ne2k_rx_pending(const struct ne2k *n);

/* Copy len bytes of ring data starting at NIC address addr, wrapping from rx_stop to rx_start. */
void ne2k_read_ring(const struct ne2k *n, uint16_t addr, uint8_t *buf, uint16_t len);

/* Take the next received frame: header into *h, up to max bytes into buf; returns the frame length (0: none,
 * -1: a corrupt header, the ring is then reset to empty). BNRY follows so the NIC may reuse the pages. */
int ne2k_recv(struct ne2k *n, struct ne2k_rx_header *h, void *buf, uint16_t max, uint8_t *page);

/* Interrupt acknowledge: read ISR and write back what was set, until nothing is left (so an edge-triggered
 * line sees a new edge for the next event); returns every bit seen. Call with page 0 selected. */
uint8_t ne2k_ack(const struct ne2k *n);

/* Interrupt bits every ne2k_irq_handler call has acknowledged (ORed together). */
extern volatile uint8_t ne2k_irq_seen;
/* Install ne2k_irq_handler for n at the vector of `irq` after pic_remap(0x20, 0x28) (IRQ 9 -> 0x29); the caller
 * unmasks the IRQ. The handler acknowledges every ISR bit (ne2k_ack), ORs them into ne2k_irq_seen and sends EOI. */
void ne2k_irq_attach(struct ne2k *n, int irq);

#endif
