/* demo_mgmt: the demo's "management" guest: a loop whose periodic I/O gives the monitor its trap points. Each
 * iteration sleeps (STI;HLT) until the next PIT tick, then runs `chunks` chunks of `work` computation steps, each
 * followed by an OUT to the POST port 0x80 (ignored by the pc machine); every `heartbeat` iterations it prints a
 * heartbeat; after `iterations` iterations it exits 0. It touches no disk.
 * Multiboot command line: "hz=1000 iterations=200 heartbeat=50 chunks=8 work=400" (the defaults). What it prints is
 * a function of its iteration count only, so QEMU (real-time PIT) and emu print the same transcript.
 */
#include "fw.h"
#include "demo_common.h"

#define POST_PORT 0x80

struct params {
    uint32_t hz, iterations, heartbeat, chunks, work;
};

void kmain(struct multiboot_info *mbi)
{
    const char *line = mb_cmdline(mbi);
    struct params p = {
        .hz = demo_cmdline_uint(line, "hz", 1000),
        .iterations = demo_cmdline_uint(line, "iterations", 200),
        .heartbeat = demo_cmdline_uint(line, "heartbeat", 50),
        .chunks = demo_cmdline_uint(line, "chunks", 8),
        .work = demo_cmdline_uint(line, "work", 400),
    };
    if (p.hz == 0 || p.hz > 10000)
        p.hz = 1000;
    printf("demo_mgmt: hz=%u iterations=%u heartbeat=%u chunks=%u work=%u\n", p.hz, p.iterations, p.heartbeat,
           p.chunks, p.work);
    demo_timer_start(p.hz);
    sti();

    uint32_t x = 0x2545F491u, sum = 0, outs = 0, seen = 0, done = 0;
    while (done < p.iterations) {
        seen = demo_wait_tick(seen);
        while (done < seen && done < p.iterations) {
            done++;
            for (uint32_t c = 0; c < p.chunks; c++) {
                for (uint32_t i = 0; i < p.work; i++) {
                    x = demo_xorshift(x);
                    sum += x;
                }
                outb(POST_PORT, (uint8_t)c);      /* a trap point every `work` steps */
                outs++;
            }
            if (p.heartbeat && done % p.heartbeat == 0)
                printf("mgmt heartbeat %u: %u port writes, sum %08x\n", done, outs, sum);
        }
    }
    cli();
    pic_set_mask(0xFFFF);
    printf("demo_mgmt done: %u iterations, %u port writes, sum %08x\n", done, outs, sum);
    exit(0);
}
