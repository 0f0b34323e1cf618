/* net_app: the demo's application guest: sends `count` status frames (broadcast, EtherType 0x88B5 "STAT") every
 * `interval` ticks of a 100 Hz PIT, printing each; then exits 0. count=0 sends forever.
 * Multiboot command line: "count=N interval=T" (defaults 10 and 10). Protocol: emu/net/peer.py.
 * Without a card at 0x300 it says so and exits 0.
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

/* The decimal value after "key=" in the command line, or def. */
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

static void put_dec(char *out, uint32_t v)
{
    char tmp[11];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *out++ = tmp[--n];
    *out = 0;
}

void kmain(struct multiboot_info *mbi)
{
    const char *line = mb_cmdline(mbi);
    uint32_t count = cmdline_uint(line, "count", 10);
    uint32_t interval = cmdline_uint(line, "interval", 10);
    printf("net_app: count=%u interval=%u\n", count, interval);
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
    if (ne2k_init(&nic, NE_IO, true, 0, NE_ISR_PRX) != 0) {
        printf("init failed\n");
        exit(1);
    }
    printf("app: mac %02x:%02x:%02x:%02x:%02x:%02x\n", nic.mac[0], nic.mac[1], nic.mac[2], nic.mac[3], nic.mac[4],
           nic.mac[5]);
    for (uint32_t seq = 1; count == 0 || seq <= count; seq++) {
        memset(frame, 0, sizeof frame);
        memset(frame, 0xFF, 6);
        memcpy(frame + 6, nic.mac, 6);
        frame[12] = ETHERTYPE_PING >> 8;
        frame[13] = ETHERTYPE_PING & 0xFF;
        memcpy(frame + 14, "STAT", 4);
        frame[18] = (uint8_t)seq;
        memcpy(frame + 20, "app ok seq=", 11);
        put_dec((char *)frame + 31, seq);
        uint8_t tsr = ne2k_send(&nic, frame, 60);
        printf("app: status seq=%u sent tsr=%02x\n", seq, tsr);
        uint32_t t0 = ticks;
        while (ticks - t0 < interval) {
            sti_hlt();
            cli();
        }
    }
    printf("app: done\n");
    pic_set_mask(0xFFFF);
    exit(0);
}
