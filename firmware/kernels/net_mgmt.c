/* net_mgmt: the demo's management guest: announces itself with a broadcast "HELO", then prints every status frame
 * (EtherType 0x88B5 "STAT") it receives; exits 0 after `count` of them (0 = no limit) or after `silence` ticks of
 * a 100 Hz PIT without any frame. Multiboot command line: "count=N silence=T" (defaults 0 and 100).
 * Protocol: emu/net/peer.py. Without a card at 0x300 it says so and exits 0.
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
static uint8_t rx[1600];

/* Print the printable text of a status payload (up to the first NUL, at most 40 bytes). */
static void print_text(const uint8_t *p, int n)
{
    for (int i = 0; i < n && i < 40 && p[i]; i++)
        putc((p[i] >= 0x20 && p[i] < 0x7F) ? (char)p[i] : '.');
}

void kmain(struct multiboot_info *mbi)
{
    const char *line = mb_cmdline(mbi);
    uint32_t count = cmdline_uint(line, "count", 0);
    uint32_t silence = cmdline_uint(line, "silence", 100);
    printf("net_mgmt: count=%u silence=%u\n", count, silence);
    net_start(&nic, NE_IO, NE_IRQ, NE_RCR_AB, NE_ISR_PRX, PIT_DIVISOR);
    printf("mgmt: mac ");
    print_mac(nic.mac);
    printf("\n");

    static const uint8_t broadcast[6] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    memset(frame, 0, sizeof frame);
    peer_header(frame, broadcast, nic.mac, "HELO", 0, 0);
    ne2k_send(&nic, frame, 60);
    printf("mgmt: hello sent\n");

    uint32_t statuses = 0;
    for (;;) {
        uint32_t t0 = tick_count;
        while (!ne2k_rx_pending(&nic)) {
            if (tick_count - t0 >= silence) {
                printf("mgmt: no status for %u ticks; %u status frames\n", silence, statuses);
                pic_set_mask(0xFFFF);
                exit(0);
            }
            sti_hlt();
            cli();
        }
        struct ne2k_rx_header h;
        uint8_t page;
        int len = ne2k_recv(&nic, &h, rx, sizeof rx, &page);
        if (len <= 0)
            continue;
        if (peer_is(rx, len, "STAT")) {
            statuses++;
            printf("mgmt: status seq=%u from ", rx[18]);
            print_mac(rx + 6);
            printf(": ");
            print_text(rx + PEER_HDR_LEN, len - PEER_HDR_LEN);
            printf("\n");
            if (count && statuses >= count) {
                printf("mgmt: %u status frames\n", statuses);
                pic_set_mask(0xFFFF);
                exit(0);
            }
        } else {
            printf("mgmt: other frame len=%d from ", len);
            print_mac(rx + 6);
            printf("\n");
        }
    }
}
