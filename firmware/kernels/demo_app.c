/* demo_app: the demo's "application" guest: a periodic tick, an IDE DMA driver and a FAT16 writer that updates
 * files in place; registers a write-in-progress word (hypercall leaf 1) and sets it around every disk write
 * sequence. Every `log` ticks it rewrites one 32-byte line of /LOG/APP.LOG; every `save` ticks it rewrites the whole
 * of /VAR/STATE.BIN; every `check` ticks it reads /BIN/APP.EXE by DMA and prints its FNV-1a hash; at tick `tamper`
 * it rewrites /ETC/NET.CFG (VLAN=<vlan>); it exits 0 after `ticks` ticks. Every `busyint` ticks it also runs `busy`
 * steps of work with interrupts disabled (a window where IF=0). With an NE2000 at 0x300 it also broadcasts a status
 * frame every `status` ticks (demo_net.h); without one it does and prints nothing more.
 * Multiboot command line (the defaults): "hz=1000 ticks=400 log=50 save=100 check=100 tamper=0 vlan=99 busy=5000
 * busyint=10 status=20" (0 = never for log, save, check, tamper, busyint and status). Everything it prints and writes is a function of its own tick count,
 * so QEMU (whose PIT runs in real time) and emu give the same transcript and the same final disk.
 * The disk: fixtures/demo/ (docs/demo-firmware.md).
 */
#include "fw.h"
#include "ata.h"
#include "util.h"
#include "demo_fat16.h"
#include "demo_net.h"

#define NETCFG_PATH "/ETC/NET.CFG"
#define LOG_PATH "/LOG/APP.LOG"
#define APP_PATH "/BIN/APP.EXE"
#define STATE_PATH "/VAR/STATE.BIN"
#define LOG_LINE 32                       /* bytes per log slot, '\n' included */
#define SMALL_FILE_MAX 4096
#define BIG_FILE_MAX (256 * 1024)

#define EXIT_OK 0
#define EXIT_NO_DISK 2
#define EXIT_NO_VOLUME 3
#define EXIT_IO 4

/* The write-in-progress word: hypercall leaf 1 registers its guest-physical address (paging is off, so the
 * address of the variable). Non-zero from before the first ATA command of a write sequence until its last
 * completion: a monitor must not take the disk away while it is set. */
static volatile uint32_t write_in_progress __attribute__((aligned(4)));

static uint8_t netcfg[SMALL_FILE_MAX] __attribute__((aligned(512)));
static uint8_t logbuf[SMALL_FILE_MAX] __attribute__((aligned(512)));
static uint8_t verify[SMALL_FILE_MAX] __attribute__((aligned(512)));
static uint8_t appexe[BIG_FILE_MAX] __attribute__((aligned(512)));
static uint8_t state[BIG_FILE_MAX] __attribute__((aligned(512)));

static struct fat16 fs;
static struct fat_file f_netcfg, f_log, f_app, f_state;

static struct ne2k nic;
static uint8_t status_buf[DEMO_FRAME_MAX];

struct params {
    uint32_t hz, ticks, log, save, check, tamper, vlan, busy, busyint, status;
};

static struct {
    uint32_t log_writes, saves, checks, tampered;
    uint32_t busy_state, busy_sum;
    uint32_t nic_up, status_sent;
} st;

/* The primary master: DMA completions awaited by a busy wait with IF=1 (so the transfer spends guest instructions
 * while Active is set: emu warps a halted CPU's clock straight to the completion, which would hide the DMA window
 * from a monitor), at most 5000 ticks. */
static struct ide_chan ide0 = { IDE_CHAN_PRIMARY, .halt_wait = 0, .bsy_polls = 1000000, .timeout_ticks = 5000 };

static int disk_read(uint32_t lba, uint32_t count, void *buf) { return ide_dma(&ide0, lba, count, buf, 0); }
static int disk_write(uint32_t lba, uint32_t count, void *buf) { return ide_dma(&ide0, lba, count, buf, 1); }

/* #UD handler for VMCALL (0F 01 C1): under QEMU there is no hypervisor, so the hypercall is skipped and "returns"
 * -38 (-ENOSYS), the value emu gives an unassigned leaf. Any other #UD is a bug: report and exit(0x7F). */
static void vmcall_ud_handler(struct regs *r)
{
    const uint8_t *insn = (const uint8_t *)r->eip;
    if (insn[0] == 0x0F && insn[1] == 0x01 && insn[2] == 0xC1) {
        r->eip += 3;
        r->eax = (uint32_t)-38;
        return;
    }
    printf("unexpected #UD at %08x\n", r->eip);
    exit(0x7F);
}

static void barrier(void) { __asm__ volatile("" ::: "memory"); }

static void wip_set(uint32_t v)
{
    barrier();
    write_in_progress = v;
    barrier();
}

/* The guest's clock for directory entries: 2024-01-01 00:00:00 plus the elapsed ticks (no RTC: the host's time
 * would differ between runs). Good for less than a day. */
static struct fat_stamp stamp_at(const struct params *p, uint32_t tick)
{
    uint32_t secs = tick / p->hz;
    struct fat_stamp s;
    s.date = (uint16_t)(((2024 - 1980) << 9) | (1 << 5) | 1);
    s.time = (uint16_t)(((secs / 3600 % 24) << 11) | ((secs / 60 % 60) << 5) | (secs % 60 / 2));
    return s;
}

static NORETURN void demo_fail(const char *what, const char *why, int code)
{
    printf("demo_app: %s: %s\n", what, why);
    pic_set_mask(0xFFFF);
    exit((uint8_t)code);
}

/* The value of KEY=VALUE in a config buffer: offset of VALUE and its length (up to the end of the line). */
static int config_find(const uint8_t *buf, uint32_t size, const char *key, uint32_t *voff, uint32_t *vlen)
{
    size_t klen = strlen(key);
    for (uint32_t i = 0; i + klen < size; i++) {
        if ((i == 0 || buf[i - 1] == '\n') && memcmp(buf + i, key, klen) == 0 && buf[i + klen] == '=') {
            uint32_t v = i + (uint32_t)klen + 1, e = v;
            while (e < size && buf[e] != '\n' && buf[e] != '\r')
                e++;
            *voff = v;
            *vlen = e - v;
            return 1;
        }
    }
    return 0;
}

static void print_config_value(const uint8_t *buf, uint32_t size, const char *key)
{
    uint32_t off, len;
    if (!config_find(buf, size, key, &off, &len)) {
        printf("%s absent", key);
        return;
    }
    printf("%s=", key);
    for (uint32_t i = 0; i < len && i < 32; i++)
        putc((buf[off + i] >= 0x20 && buf[off + i] < 0x7F) ? (char)buf[off + i] : '.');
}

static void open_file(const char *path, struct fat_file *f, uint32_t cap)
{
    int rc = fat16_lookup(&fs, path, f);
    if (rc)
        demo_fail(path, fat_strerror(rc), rc == FAT_IO ? EXIT_IO : EXIT_NO_VOLUME);
    if (f->attr & FAT_ATTR_DIRECTORY)
        demo_fail(path, "is a directory", EXIT_NO_VOLUME);
    if (f->allocated > cap || f->size > f->allocated)
        demo_fail(path, "does not fit the demo's buffer", EXIT_NO_VOLUME);
    printf("found %s: %u bytes in %u allocated\n", path, f->size, f->allocated);
}

static void read_file(const char *path, const struct fat_file *f, uint8_t *buf, uint32_t cap)
{
    int rc = fat16_read_file(&fs, f, buf, cap, IDE_MAX_SECTORS);
    if (rc)
        demo_fail(path, fat_strerror(rc), EXIT_IO);
}

/* A write sequence: write-in-progress set before its first ATA command and cleared after its last completion. */
static void write_sequence(const char *path, struct fat_file *f, uint8_t *buf, uint32_t off, uint32_t len,
                           uint32_t new_size, struct fat_stamp stamp)
{
    wip_set(1);
    int rc = fat16_rewrite(&fs, f, buf, off, len, new_size, stamp, IDE_MAX_SECTORS);
    if (rc == FAT_OK && ide_flush(&ide0) != IDE_OK)
        rc = FAT_IO;
    wip_set(0);
    if (rc)
        demo_fail(path, fat_strerror(rc), EXIT_IO);
}

/* Log write n: line n goes into slot (n - 1) mod slots of the fixed-size log; the size does not change. */
static void log_write(const struct params *p, uint32_t tick)
{
    uint32_t slots = f_log.size / LOG_LINE;
    uint32_t n = ++st.log_writes;
    if (slots == 0)
        demo_fail(LOG_PATH, "smaller than one log line", EXIT_NO_VOLUME);
    uint32_t off = ((n - 1) % slots) * LOG_LINE;
    char *line = (char *)logbuf + off;
    char *o = fmt_str(line, "tick ");
    o = fmt_dec(o, tick, 6);
    o = fmt_str(o, " log ");
    o = fmt_dec(o, n, 4);
    o = fmt_str(o, st.tampered ? " tampered" : " app ok");
    while (o < line + LOG_LINE - 1)
        *o++ = ' ';
    *o = '\n';
    write_sequence(LOG_PATH, &f_log, logbuf, off, LOG_LINE, f_log.size, stamp_at(p, tick));
    printf("log write %u done (slot %u)\n", n, off / LOG_LINE);
}

/* Save n: the whole of /VAR/STATE.BIN rewritten in place (WRITE DMA commands of 64 KiB back to back, Active most
 * of the time, all inside one write-in-progress window). Little-endian word i of save n is (n << 24) ^ (i * 2654435761) (Knuth's multiplier). */
static void save(const struct params *p, uint32_t tick)
{
    uint32_t n = ++st.saves;
    for (uint32_t i = 0; i + 4 <= f_state.size; i += 4) {
        uint32_t w = (n << 24) ^ ((i / 4) * 2654435761u);
        state[i] = (uint8_t)w;
        state[i + 1] = (uint8_t)(w >> 8);
        state[i + 2] = (uint8_t)(w >> 16);
        state[i + 3] = (uint8_t)(w >> 24);
    }
    write_sequence(STATE_PATH, &f_state, state, 0, f_state.size, f_state.size, stamp_at(p, tick));
    printf("save %u done: %s %u bytes\n", n, STATE_PATH, f_state.size);
}

/* The tampering step: VLAN=<old> -> VLAN=<vlan> in /ETC/NET.CFG, in place, then read back by DMA and compared. */
static void tamper(const struct params *p, uint32_t tick)
{
    uint32_t voff, vlen, size = f_netcfg.size;
    if (!config_find(netcfg, size, "VLAN", &voff, &vlen))
        demo_fail(NETCFG_PATH, "has no VLAN line", EXIT_NO_VOLUME);
    char val[12];
    uint32_t nlen = (uint32_t)(fmt_dec(val, p->vlan, 1) - val);
    uint32_t new_size = size - vlen + nlen;
    if (new_size > f_netcfg.allocated)
        demo_fail(NETCFG_PATH, "the new content does not fit its clusters", EXIT_NO_VOLUME);
    printf("tamper at tick %u: %s ", tick, NETCFG_PATH);
    print_config_value(netcfg, size, "VLAN");
    memmove(netcfg + voff + nlen, netcfg + voff + vlen, size - voff - vlen);
    memcpy(netcfg + voff, val, nlen);
    if (new_size < size)
        memset(netcfg + new_size, 0, size - new_size);
    uint32_t span = new_size > size ? new_size : size;
    write_sequence(NETCFG_PATH, &f_netcfg, netcfg, 0, span, new_size, stamp_at(p, tick));
    printf(" -> ");
    print_config_value(netcfg, new_size, "VLAN");
    printf(" (%u -> %u bytes)\n", size, new_size);
    read_file(NETCFG_PATH, &f_netcfg, verify, sizeof verify);
    printf("tamper done: read back %s\n", memcmp(verify, netcfg, new_size) ? "DIFFERENT" : "identical");
    st.tampered = 1;
}

/* Integrity self-check: /BIN/APP.EXE read by DMA (READ DMA commands of 64 KiB back to back: Active most of the time,
 * with the write-in-progress word clear), its FNV-1a hash printed. */
static void check(uint32_t tick)
{
    (void)tick;
    read_file(APP_PATH, &f_app, appexe, sizeof appexe);
    st.checks++;
    printf("check %u: %s fnv1a %08x\n", st.checks, APP_PATH, fnv1a(appexe, f_app.size));
}

/* Work with interrupts disabled: a window in which a monitor sees IF=0. */
static void busy(const struct params *p)
{
    uint32_t x = st.busy_state | 1;
    uint32_t sum = st.busy_sum;
    cli();
    for (uint32_t i = 0; i < p->busy; i++) {
        x = xorshift32(x);
        sum += x;
    }
    sti();
    st.busy_state = x;
    st.busy_sum = sum;
}

/* Status frame n: broadcast "app seq=n tick=T log=L ok|tampered" (demo_net.h). Prints nothing: the management
 * guest prints what it receives. */
static void send_status(uint32_t tick)
{
    char text[80];
    char *o = fmt_str(text, "app seq=");
    o = fmt_dec(o, st.status_sent + 1, 1);
    o = fmt_str(o, " tick=");
    o = fmt_dec(o, tick, 1);
    o = fmt_str(o, " log=");
    o = fmt_dec(o, st.log_writes, 1);
    o = fmt_str(o, st.tampered ? " tampered" : " ok");
    *o = 0;
    uint16_t len = demo_status_frame(status_buf, nic.mac, st.status_sent + 1, text);
    ne2k_send(&nic, status_buf, len);
    st.status_sent++;
}

static void on_tick(const struct params *p, uint32_t tick)
{
    if (p->busyint && tick % p->busyint == 0)
        busy(p);
    if (p->log && tick % p->log == 0)
        log_write(p, tick);
    if (p->save && tick % p->save == 0)
        save(p, tick);
    if (p->tamper && tick == p->tamper)
        tamper(p, tick);
    if (p->check && tick % p->check == 0)
        check(tick);
    if (st.nic_up && tick % p->status == 0)
        send_status(tick);
}

void kmain(struct multiboot_info *mbi)
{
    const char *line = mb_cmdline(mbi);
    struct params p = {
        .hz = cmdline_hz(line),
        .ticks = cmdline_uint(line, "ticks", 400),
        .log = cmdline_uint(line, "log", 50),
        .save = cmdline_uint(line, "save", 100),
        .check = cmdline_uint(line, "check", 100),
        .tamper = cmdline_uint(line, "tamper", 0),
        .vlan = cmdline_uint(line, "vlan", 99),
        .busy = cmdline_uint(line, "busy", 5000),
        .busyint = cmdline_uint(line, "busyint", 10),
        .status = cmdline_uint(line, "status", 20),
    };
    printf("demo_app: hz=%u ticks=%u log=%u save=%u check=%u tamper=%u vlan=%u busy=%u busyint=%u\n", p.hz, p.ticks,
           p.log, p.save, p.check, p.tamper, p.vlan, p.busy, p.busyint);

    set_handler(6, vmcall_ud_handler);
    (void)vmcall(1, (uint32_t)&write_in_progress, 0, 0);   /* leaf 1; under QEMU a #UD, skipped */
    printf("write-in-progress word registered (hypercall leaf 1)\n");

    tick_start(pit_divisor(p.hz));
    set_handler(SPURIOUS_VECTOR_SLAVE, spurious_irq);
    int rc = ide_probe(&ide0);
    if (rc == IDE_OK)
        rc = ide_select(&ide0);
    if (rc)
        demo_fail("ide", ide_strerror(&ide0, rc), EXIT_NO_DISK);
    ide_irq_on(&ide0);
    sti();
    printf("ide: primary master, bus mastering on, irq 14\n");

    rc = fat16_mount(&fs, disk_read, disk_write);
    if (rc)
        demo_fail("fat16", fat_strerror(rc), rc == FAT_IO ? EXIT_IO : EXIT_NO_VOLUME);
    printf("fat16: volume at lba %u, %u clusters of %u bytes, root at lba %u\n", fs.g.part_lba, fs.g.clusters,
           fs.g.spc * FAT_SECTOR, fs.g.root_lba);
    open_file(NETCFG_PATH, &f_netcfg, sizeof netcfg);
    open_file(LOG_PATH, &f_log, sizeof logbuf);
    open_file(APP_PATH, &f_app, sizeof appexe);
    open_file(STATE_PATH, &f_state, sizeof state);
    read_file(NETCFG_PATH, &f_netcfg, netcfg, sizeof netcfg);
    read_file(LOG_PATH, &f_log, logbuf, sizeof logbuf);
    printf("net.cfg: ");
    print_config_value(netcfg, f_netcfg.size, "VLAN");
    printf("\n");
    if (p.status && demo_net_init(&nic, 0) == 0) {
        st.nic_up = 1;
        printf("net: NE2000 at %x, mac %02x:%02x:%02x:%02x:%02x:%02x, status frame every %u ticks\n", DEMO_NE_IO,
               nic.mac[0], nic.mac[1], nic.mac[2], nic.mac[3], nic.mac[4], nic.mac[5], p.status);
    }

    uint32_t done = 0, seen = 0;
    while (done < p.ticks) {
        seen = tick_wait(seen);
        while (done < seen && done < p.ticks)
            on_tick(&p, ++done);
    }
    cli();
    pic_set_mask(0xFFFF);
    printf("demo_app done: %u ticks, %u log writes, %u saves, %u checks, tamper %s, busy sum %08x\n", done,
           st.log_writes, st.saves, st.checks, st.tampered ? "done" : "not done", st.busy_sum);
    printf("ide: %u commands, %u sectors read, %u written, %u irqs\n", ide0.commands, ide0.sectors_read,
           ide0.sectors_written, ide0.irqs);
    if (st.nic_up)
        printf("net: %u status frames sent\n", st.status_sent);
    exit(EXIT_OK);
}
