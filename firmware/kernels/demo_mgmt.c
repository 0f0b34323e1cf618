/* demo_mgmt: the demo's "management" guest: a loop whose periodic I/O gives the monitor its trap points. Each
 * iteration sleeps (STI;HLT) until the next PIT tick, then runs `chunks` chunks of `work` computation steps, each
 * followed by an OUT to the POST port 0x80 (ignored by the pc machine); every `heartbeat` iterations it prints a
 * heartbeat; after `iterations` iterations it exits 0. It touches no disk.
 * Multiboot command line: "hz=1000 iterations=200 heartbeat=50 chunks=8 work=400" (the defaults). What it prints is
 * a function of its iteration count only, so QEMU (real-time PIT) and emu print the same transcript.
 * With an NE2000 at 0x300 it also polls the card's receive ring after every iteration (no interrupt) and prints
 * each status frame (demo_net.h) it finds: "mgmt: status from app: seq=N tick=T log=L ok", and at the end
 * "mgmt: N status frames received, M other frames". Without a card it prints nothing more.
 */
#include "fw.h"
#include "util.h"
#include "demo_net.h"

#define POST_PORT 0x80

struct params {
    uint32_t hz, iterations, heartbeat, chunks, work;
};

static struct ne2k nic;
static uint8_t rx[1600];
static uint32_t statuses, others;

/* Print a status frame's text: "<sender>: <rest>", printable bytes only, up to the NUL or the frame's end. */
static void print_status(const uint8_t *text, int n)
{
    int i = 0;
    printf("mgmt: status from ");
    for (; i < n && text[i] && text[i] != ' '; i++)
        putc((text[i] >= 0x20 && text[i] < 0x7F) ? (char)text[i] : '.');
    printf(":");
    for (; i < n && text[i]; i++)
        putc((text[i] >= 0x20 && text[i] < 0x7F) ? (char)text[i] : '.');
    printf("\n");
}

/* Take every frame the ring holds; print the status frames, count the others. */
static void poll_nic(void)
{
    while (ne2k_rx_pending(&nic)) {
        struct ne2k_rx_header h;
        uint8_t page;
        int len = ne2k_recv(&nic, &h, rx, sizeof rx, &page);
        if (len < 0) {
            others++;
            break;
        }
        if (peer_is(rx, len, "STAT")) {
            statuses++;
            print_status(rx + PEER_HDR_LEN, len - PEER_HDR_LEN);
        } else {
            others++;
        }
    }
}

void kmain(struct multiboot_info *mbi)
{
    const char *line = mb_cmdline(mbi);
    struct params p = {
        .hz = cmdline_hz(line),
        .iterations = cmdline_uint(line, "iterations", 200),
        .heartbeat = cmdline_uint(line, "heartbeat", 50),
        .chunks = cmdline_uint(line, "chunks", 8),
        .work = cmdline_uint(line, "work", 400),
    };
    printf("demo_mgmt: hz=%u iterations=%u heartbeat=%u chunks=%u work=%u\n", p.hz, p.iterations, p.heartbeat,
           p.chunks, p.work);
    int nic_up = demo_net_init(&nic, NE_RCR_AB) == 0;
    if (nic_up)
        printf("mgmt: NE2000 at %x, mac %02x:%02x:%02x:%02x:%02x:%02x, listening for status frames\n", DEMO_NE_IO,
               nic.mac[0], nic.mac[1], nic.mac[2], nic.mac[3], nic.mac[4], nic.mac[5]);
    tick_start(pit_divisor(p.hz));
    set_handler(SPURIOUS_VECTOR_SLAVE, spurious_irq);
    sti();

    uint32_t x = 0x2545F491u, sum = 0, outs = 0, seen = 0, done = 0;
    while (done < p.iterations) {
        seen = tick_wait(seen);
        while (done < seen && done < p.iterations) {
            done++;
            for (uint32_t c = 0; c < p.chunks; c++) {
                for (uint32_t i = 0; i < p.work; i++) {
                    x = xorshift32(x);
                    sum += x;
                }
                outb(POST_PORT, (uint8_t)c);      /* a trap point every `work` steps */
                outs++;
            }
            if (nic_up)
                poll_nic();
            if (p.heartbeat && done % p.heartbeat == 0)
                printf("mgmt heartbeat %u: %u port writes, sum %08x\n", done, outs, sum);
        }
    }
    cli();
    pic_set_mask(0xFFFF);
    if (nic_up) {
        poll_nic();
        printf("mgmt: %u status frames received, %u other frames\n", statuses, others);
    }
    printf("demo_mgmt done: %u iterations, %u port writes, sum %08x\n", done, outs, sum);
    exit(0);
}
