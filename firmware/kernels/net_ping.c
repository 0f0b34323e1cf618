/* net_ping: NE2000 at 0x300/IRQ 9 against an echo peer (QEMU: -netdev socket,udp=... + a UDP echo; emu: EchoPeer).
 *
 * Prints the PROM and MAC, sends PING frames (EtherType 0x88B5) and prints every frame the ring holds: header,
 * addresses and an FNV-1a checksum. Exercises broadcast/unicast/runt transmits, the address filters (the peer's
 * decoys to a foreign unicast and to 01:00:5e:00:00:01), the multicast hash, promiscuous mode, a ring wrap, a
 * transmit running past the end of NIC memory (QEMU: not sent, PTX anyway) and the TPSR >= 0xC0 alias.
 * The peer protocol is emu/net/peer.py; docs/network.md shows how to run it under QEMU.
 * Without a NIC at 0x300 (QEMU -nodefaults) it says so and exits 0.
 */
#include "fw.h"
#include "ne2000.h"
#include "ether.h"
#include "util.h"

#define NE_IO 0x300
#define NE_IRQ 9
#define PIT_DIVISOR 11932          /* 1193182 / 11932 = 100 Hz */
#define REPLY_TICKS 200            /* 2 s for a reply */
#define SILENCE_TICKS 20           /* 0.2 s to show that nothing comes */
#define FLAG_DECOYS 0x01

static const uint8_t peer_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x99};
static const uint8_t bcast[6] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
static const uint8_t group[6] = {0x01, 0x00, 0x5E, 0x00, 0x00, 0x01};

static struct ne2k nic;
static uint8_t frame[1600];
static uint8_t rx[1600];
static uint32_t rx_count;

/* Build a PING request to dst: header, "PING", seq, flags, then a pattern up to len bytes. */
static uint16_t build_ping(const uint8_t *dst, uint8_t seq, uint8_t flags, uint16_t len)
{
    peer_header(frame, dst, nic.mac, "PING", seq, flags);
    for (uint16_t i = PEER_HDR_LEN; i < len; i++)
        frame[i] = (uint8_t)(i * 7 + seq);
    return len;
}

/* Print and drop every frame in the ring; returns 1 when the reply with sequence seq was among them. */
static int drain(uint8_t seq)
{
    int got = 0;
    for (;;) {
        struct ne2k_rx_header h;
        uint8_t page;
        int len = ne2k_recv(&nic, &h, rx, sizeof rx, &page);
        if (len == 0)
            break;
        if (len < 0) {
            printf("  rx corrupt header at %02x: status=%02x next=%02x len=%u\n", page, h.status, h.next, h.length);
            continue;
        }
        rx_count++;
        printf("  rx at=%02x status=%02x next=%02x len=%u dst=", page, h.status, h.next, h.length);
        print_mac(rx);
        printf(" src=");
        print_mac(rx + 6);
        printf(" type=%02x%02x %c%c%c%c seq=%u sum=%08x\n", rx[12], rx[13], rx[14], rx[15], rx[16], rx[17],
               rx[18], fnv1a(rx, (uint32_t)len));
        if (memcmp(rx + 14, "PONG", 4) == 0 && rx[18] == seq)
            got = 1;
    }
    return got;
}

/* Wait (HLT, woken by the NIC or the 100 Hz timer) until a frame is in the ring or limit ticks pass. */
static int wait_rx(uint32_t limit)
{
    uint32_t t0 = tick_count;
    while (!ne2k_rx_pending(&nic)) {
        if (tick_count - t0 >= limit)
            return 0;
        sti_hlt();
        cli();
    }
    return 1;
}

/* Send the frame built in `frame`, then print frames until the reply to seq arrives (or a timeout). */
static void ping(const char *what, uint8_t seq, uint16_t len)
{
    uint8_t tsr = ne2k_send(&nic, frame, len);
    printf("tx seq=%u %s len=%u tsr=%02x\n", seq, what, len, tsr);
    uint32_t t0 = tick_count;
    while (!drain(seq)) {
        if (!wait_rx(REPLY_TICKS) || tick_count - t0 >= REPLY_TICKS) {
            printf("  no reply to seq=%u\n", seq);
            return;
        }
    }
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("net_ping: NE2000 at %x irq %u\n", NE_IO, NE_IRQ);
    net_start(&nic, NE_IO, NE_IRQ, NE_RCR_AB, NE_ISR_PRX, PIT_DIVISOR);
    printf("prom:");
    for (int i = 0; i < 32; i++)
        printf(" %02x", nic.prom[i]);
    printf("\nmac: ");
    print_mac(nic.mac);
    printf("\nid: %02x %02x\n", ne2k_in(&nic, NE_P0_RBCR0), ne2k_in(&nic, NE_P0_RBCR1));
    ne2k_out(&nic, NE_CR, NE_CR_STA | NE_CR_NODMA | NE_CR_PAGE2);
    uint8_t pstart = ne2k_in(&nic, NE_P2_PSTART), pstop = ne2k_in(&nic, NE_P2_PSTOP);
    ne2k_out(&nic, NE_CR, NE_CR_STA | NE_CR_NODMA | NE_CR_PAGE0);
    printf("ring: pstart=%02x pstop=%02x bnry=%02x curr=%02x cr=%02x\n", pstart, pstop,
           ne2k_in(&nic, NE_P0_BNRY), ne2k_curr(&nic), ne2k_in(&nic, NE_CR));

    uint8_t seq = 1;
    ping("broadcast", seq, build_ping(bcast, seq, 0, 60));
    seq++;
    ping("unicast", seq, build_ping(peer_mac, seq, 0, 60));
    seq++;
    ping("runt", seq, build_ping(peer_mac, seq, 0, 20));
    seq++;
    ping("decoys rcr=ab", seq, build_ping(peer_mac, seq, FLAG_DECOYS, 60));

    uint8_t mar[8] = {0};
    int bit = ne2k_mcast_bit(group);
    mar[bit >> 3] = (uint8_t)(1u << (bit & 7));
    printf("mcast bit for 01:00:5e:00:00:01 = %d\n", bit);
    ne2k_set_mar(&nic, mar);
    ne2k_set_rcr(&nic, NE_RCR_AB | NE_RCR_AM);
    seq++;
    ping("decoys rcr=ab|am", seq, build_ping(peer_mac, seq, FLAG_DECOYS, 60));
    ne2k_set_rcr(&nic, NE_RCR_AB | NE_RCR_PRO);
    seq++;
    ping("decoys rcr=ab|pro", seq, build_ping(peer_mac, seq, FLAG_DECOYS, 60));
    ne2k_set_rcr(&nic, NE_RCR_AB);

    /* 16 x 1000-byte replies (4 pages each) wrap the 58-page ring. */
    for (int i = 0; i < 16; i++) {
        seq++;
        ping("large", seq, build_ping(peer_mac, seq, 0, 1000));
    }

    /* A PING at 0xBF00 with a count running past the end of NIC memory (0xC000): QEMU drops it, reports PTX. */
    seq++;
    uint16_t len = build_ping(peer_mac, seq, 0, 60);
    ne2k_write_mem(&nic, 0xBF00, frame, len);
    uint8_t isr = ne2k_transmit_page(&nic, 0xBF, 0x200);
    printf("tx seq=%u past end of memory: ptx=%u tsr=%02x\n", seq, (isr & NE_ISR_PTX) ? 1 : 0,
           ne2k_in(&nic, NE_P0_TSR));
    if (wait_rx(SILENCE_TICKS))
        drain(seq);
    else
        printf("  nothing received\n");

    /* TPSR 0xC0 is beyond memory: QEMU subtracts 32 KiB and sends from page 0x40. */
    seq++;
    len = build_ping(peer_mac, seq, 0, 60);
    ne2k_write_mem(&nic, NE_TX_PAGE << 8, frame, len);
    isr = ne2k_transmit_page(&nic, 0xC0, len);
    printf("tx seq=%u tpsr=c0: ptx=%u\n", seq, (isr & NE_ISR_PTX) ? 1 : 0);
    uint32_t t0 = tick_count;
    while (!drain(seq)) {
        if (!wait_rx(REPLY_TICKS) || tick_count - t0 >= REPLY_TICKS) {
            printf("  no reply to seq=%u\n", seq);
            break;
        }
    }

    printf("received %u frames; bnry=%02x curr=%02x irq-seen=%s\n", rx_count, ne2k_in(&nic, NE_P0_BNRY),
           ne2k_curr(&nic), (ne2k_irq_seen & NE_ISR_PRX) ? "yes" : "no");
    pic_set_mask(0xFFFF);
    exit(0);
}
