/* net_mgmt: the demo's management guest: announces itself with a broadcast "HELO", then prints every status frame
 * (EtherType 0x88B5 "STAT") it receives; exits 0 after `count` of them (0 = no limit) or after `silence` ticks of
 * a 100 Hz PIT without any frame. Multiboot command line: "count=N silence=T" (defaults 0 and 100).
 * Protocol: emu/net/peer.py. Without a card at 0x300 it says so and exits 0.
 */
#include "fw.h"
#include "ne2000.h"

#define NE_IO 0x300
#define NE_IRQ 9
#define PIT_DIVISOR 11932          /* 100 Hz */
#define ETHERTYPE_PING 0x88B5

static struct ne2k nic;
static volatile uint32_t ticks;
static uint8_t frame[64];
static uint8_t rx[1600];

static void timer_irq(struct regs *r)
{
    (void)r;
    ticks++;
    pic_eoi(0);
}

static void nic_irq(struct regs *r)
{
    (void)r;
    ne2k_ack(&nic);
    pic_eoi(NE_IRQ);
}

static uint32_t cmdline_uint(const char *line, const char *key, uint32_t def)
{
    size_t klen = strlen(key);
    for (const char *p = line; *p; p++) {
        if ((p == line || p[-1] == ' ') && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            uint32_t v = 0;
            const char *q = p + klen + 1;
            if (*q < '0' || *q > '9')
                return def;
            while (*q >= '0' && *q <= '9')
                v = v * 10 + (uint32_t)(*q++ - '0');
            return v;
        }
    }
    return def;
}

static void print_mac(const uint8_t *m)
{
    printf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

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
    if (!ne2k_present(NE_IO)) {
        printf("no NE2000 at %x\n", NE_IO);
        exit(0);
    }
    pic_remap(0x20, 0x28);
    set_handler(0x20, timer_irq);
    set_handler(0x28 + NE_IRQ - 8, nic_irq);
    outb(0x43, 0x34);
    outb(0x40, PIT_DIVISOR & 0xFF);
    outb(0x40, PIT_DIVISOR >> 8);
    pic_unmask(0);
    pic_unmask(NE_IRQ);
    if (ne2k_init(&nic, NE_IO, true, NE_RCR_AB, NE_ISR_PRX) != 0) {
        printf("init failed\n");
        exit(1);
    }
    printf("mgmt: mac ");
    print_mac(nic.mac);
    printf("\n");

    memset(frame, 0, sizeof frame);
    memset(frame, 0xFF, 6);
    memcpy(frame + 6, nic.mac, 6);
    frame[12] = ETHERTYPE_PING >> 8;
    frame[13] = ETHERTYPE_PING & 0xFF;
    memcpy(frame + 14, "HELO", 4);
    ne2k_send(&nic, frame, 60);
    printf("mgmt: hello sent\n");

    uint32_t statuses = 0;
    for (;;) {
        uint32_t t0 = ticks;
        while (!ne2k_rx_pending(&nic)) {
            if (ticks - t0 >= silence) {
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
        if (len >= 20 && rx[12] == (ETHERTYPE_PING >> 8) && rx[13] == (ETHERTYPE_PING & 0xFF) &&
            memcmp(rx + 14, "STAT", 4) == 0) {
            statuses++;
            printf("mgmt: status seq=%u from ", rx[18]);
            print_mac(rx + 6);
            printf(": ");
            print_text(rx + 20, len - 20);
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
