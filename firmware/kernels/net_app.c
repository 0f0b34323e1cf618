/* net_app: the demo's application guest: sends `count` status frames (broadcast, EtherType 0x88B5 "STAT") every
 * `interval` ticks of a 100 Hz PIT, printing each; then exits 0. count=0 sends forever.
 * Multiboot command line: "count=N interval=T" (defaults 10 and 10). Protocol: emu/net/peer.py.
 * Without a card at 0x300 it says so and exits 0.
 */
#include "fw.h"
#include "ne2000.h"
#include "ether.h"
#include "util.h"

#define NE_IO 0x300
#define NE_IRQ 9
#define PIT_DIVISOR 11932          /* 100 Hz */

static struct ne2k nic;
static uint8_t frame[64];
static const uint8_t broadcast[6] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

void kmain(struct multiboot_info *mbi)
{
    const char *line = mb_cmdline(mbi);
    uint32_t count = cmdline_uint(line, "count", 10);
    uint32_t interval = cmdline_uint(line, "interval", 10);
    printf("net_app: count=%u interval=%u\n", count, interval);
    net_start(&nic, NE_IO, NE_IRQ, 0, NE_ISR_PRX, PIT_DIVISOR);
    printf("app: mac %02x:%02x:%02x:%02x:%02x:%02x\n", nic.mac[0], nic.mac[1], nic.mac[2], nic.mac[3], nic.mac[4],
           nic.mac[5]);
    for (uint32_t seq = 1; count == 0 || seq <= count; seq++) {
        memset(frame, 0, sizeof frame);
        peer_header(frame, broadcast, nic.mac, "STAT", (uint8_t)seq, 0);
        memcpy(frame + PEER_HDR_LEN, "app ok seq=", 11);
        *fmt_dec((char *)frame + PEER_HDR_LEN + 11, seq, 1) = 0;
        uint8_t tsr = ne2k_send(&nic, frame, 60);
        printf("app: status seq=%u sent tsr=%02x\n", seq, tsr);
        uint32_t t0 = tick_count;
        while (tick_count - t0 < interval) {
            sti_hlt();
            cli();
        }
    }
    printf("app: done\n");
    pic_set_mask(0xFFFF);
    exit(0);
}
