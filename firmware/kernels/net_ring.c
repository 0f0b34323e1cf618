/* net_ring: NE2000 receive ring under bad programming, against the echo peer (see net_ping): a full ring
 * (BNRY just ahead of CURR), PSTOP == PSTART, and CURR outside PSTART..PSTOP. QEMU refuses the frame in the
 * first two cases (it is lost, no ISR bit) and in the third writes the header at CURR, skips the data and
 * moves CURR back into the ring. Every line is what QEMU 7.2 shows; emu's model must print the same.
 * Without a card at 0x300 it says so and exits 0.
 */
#include "fw.h"
#include "ne2000.h"
#include "ether.h"
#include "util.h"

#define NE_IO 0x300
#define PIT_DIVISOR 11932          /* 100 Hz */
#define REPLY_TICKS 200
#define SILENCE_TICKS 20

static const uint8_t peer_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x99};
static struct ne2k nic;
static uint8_t frame[64];
static uint8_t seq;

static uint8_t curr(void) { return ne2k_curr(&nic); }

static void set_curr(uint8_t v)
{
    ne2k_out(&nic, NE_CR, NE_CR_STA | NE_CR_NODMA | NE_CR_PAGE1);
    ne2k_out(&nic, NE_P1_CURR, v);
    ne2k_out(&nic, NE_CR, NE_CR_STA | NE_CR_NODMA | NE_CR_PAGE0);
}

/* Send a 60-byte PING; wait until CURR moves (or `limit` ticks); return CURR afterwards. */
static uint8_t ping(uint32_t limit)
{
    uint8_t before = curr();
    seq++;
    memset(frame, 0, sizeof frame);
    peer_header(frame, peer_mac, nic.mac, "PING", seq, 0);
    ne2k_send(&nic, frame, 60);
    uint32_t t0 = tick_count;
    while (curr() == before && tick_count - t0 < limit) {
        sti_hlt();
        cli();
    }
    return curr();
}

static void show(const char *what, uint8_t after)
{
    printf("%s: seq=%u curr=%02x bnry=%02x isr=%02x\n", what, seq, after, ne2k_in(&nic, NE_P0_BNRY),
           ne2k_in(&nic, NE_P0_ISR));
    ne2k_out(&nic, NE_P0_ISR, 0xFF);
}

static void dump(const char *what, uint16_t addr, uint16_t n)
{
    uint8_t buf[32];
    ne2k_read_mem(&nic, addr, buf, n);
    printf("%s %04x:", what, addr);
    for (uint16_t i = 0; i < n; i++)
        printf(" %02x", buf[i]);
    printf("\n");
}

/* Take everything in the ring and print the headers (BNRY follows). */
static void drain(void)
{
    struct ne2k_rx_header h;
    uint8_t page, rx[64];
    int len;
    while ((len = ne2k_recv(&nic, &h, rx, sizeof rx, &page)) != 0)
        printf("  rx at=%02x status=%02x next=%02x len=%u %c%c%c%c seq=%u\n", page, h.status, h.next, h.length,
               rx[14], rx[15], rx[16], rx[17], rx[18]);
}

void kmain(struct multiboot_info *mbi)
{
    (void)mbi;
    printf("net_ring: NE2000 at %x\n", NE_IO);
    net_start(&nic, NE_IO, -1, NE_RCR_AB, 0, PIT_DIVISOR);

    show("baseline", ping(REPLY_TICKS));
    drain();

    /* Full ring: BNRY two pages ahead of CURR leaves 512 bytes (< 1514 + 4). */
    uint8_t c = curr();
    ne2k_out(&nic, NE_P0_BNRY, (uint8_t)(c + 2));
    show("ring full", ping(SILENCE_TICKS));
    ne2k_out(&nic, NE_P0_BNRY, (uint8_t)(c - 1));
    show("bnry restored, next ping", ping(REPLY_TICKS));
    drain();

    /* PSTOP == PSTART: no ring at all. */
    ne2k_out(&nic, NE_P0_PSTOP, NE_RX_START);
    show("pstop=pstart", ping(SILENCE_TICKS));
    ne2k_out(&nic, NE_P0_PSTOP, NE_RX_STOP);
    show("pstop restored, next ping", ping(REPLY_TICKS));
    drain();

    /* CURR outside the ring (0xB0 with the ring at 0x46..0x80); BNRY far enough to leave room. */
    static const uint8_t marks[16] = {0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5,
                                      0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5};
    ne2k_write_mem(&nic, 0xB000, marks, 16);
    uint8_t saved_bnry = ne2k_in(&nic, NE_P0_BNRY);
    uint8_t saved_curr = curr();
    set_curr(0xB0);
    ne2k_out(&nic, NE_P0_BNRY, 0xA0);
    show("curr=b0 outside the ring", ping(REPLY_TICKS));
    dump("  memory", 0xB000, 16);
    /* put the ring back as it was */
    set_curr(saved_curr);
    ne2k_out(&nic, NE_P0_BNRY, saved_bnry);
    nic.next = saved_curr;
    show("ring restored, next ping", ping(REPLY_TICKS));
    drain();
    printf("net_ring done\n");
    pic_set_mask(0xFFFF);
    exit(0);
}
