/* Exact guest instruction counting for Unicorn 2.1.4, as a C block hook.
 *
 * Every translated block's instruction count is added when the block is
 * entered (UC_HOOK_BLOCK).  The counts come from the translation itself
 * (uc_tb.icount, via UC_CTL_TB_REQUEST_CACHE) and are cached by (address,
 * size).  A run stops *before* entering a block that would take the count
 * past `deadline`; the Python side then finishes the last few instructions
 * exactly.  When a run ends early inside a block (an I/O hook, a fault, an
 * emu_stop), the Python side subtracts the part of the last block that did
 * not run, using `block_addr`/`block_entry`.
 *
 * Built by emu.cpu.native (no link to libunicorn: the two functions used are
 * handed over as pointers from the already loaded library).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void uc_engine;
typedef struct { uint64_t pc; uint16_t icount; uint16_t size; } uc_tb;
typedef int (*uc_ctl_fn)(uc_engine *, int, ...);
typedef int (*uc_emu_stop_fn)(uc_engine *);

#define UC_CTL_TB_REQUEST_CACHE 8
#define UC_CTL_IO_READ_WRITE 3
#define CTL_REQUEST_CACHE ((UC_CTL_TB_REQUEST_CACHE) | (2 << 26) | (UC_CTL_IO_READ_WRITE << 30))

#define CACHE_SIZE (1u << 16)

struct entry { uint64_t addr; uint32_t size; uint32_t icount; };

struct icount_state {
    uint64_t count;        /* instructions of every entered block, in full */
    uint64_t deadline;     /* never enter a block that would pass this count */
    uint64_t block_addr;   /* the last entered block */
    uint64_t block_entry;  /* count before that block was added */
    uint32_t block_size;
    uint32_t block_icount;
    uint32_t deadline_hit; /* the hook stopped the run for the deadline */
    uint32_t stop_flag;    /* stop at the next block boundary (set from Python) */
    uint64_t blocks;       /* blocks entered (statistics) */
    uint64_t misses;       /* cache misses (statistics) */
    uint32_t rescan;       /* the hook stopped the run: a new block got hooks, re-enter it */
    uint32_t pending_stop; /* stop at the next stop-check hook (after an I/O instruction) */
    uc_ctl_fn ctl;
    uc_emu_stop_fn stop;
    struct entry *cache;
    int (*new_block)(uint64_t addr, uint32_t size); /* Python: scan a new block; 1 = re-enter it */
};

size_t icount_state_size(void) { return sizeof(struct icount_state); }

struct icount_state *icount_new(void *ctl, void *stop)
{
    struct icount_state *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->cache = calloc(CACHE_SIZE, sizeof(struct entry));
    if (!st->cache) { free(st); return NULL; }
    st->ctl = (uc_ctl_fn)ctl;
    st->stop = (uc_emu_stop_fn)stop;
    st->deadline = UINT64_MAX;
    return st;
}

void icount_free(struct icount_state *st)
{
    if (st) { free(st->cache); free(st); }
}

/* Forget every cached block count (after self-modifying code or a flush). */
void icount_flush(struct icount_state *st)
{
    memset(st->cache, 0, CACHE_SIZE * sizeof(struct entry));
}

/* Remember a block's instruction count (from UC_HOOK_EDGE_GENERATED or Python). */
void icount_learn(struct icount_state *st, uint64_t addr, uint32_t size, uint32_t icount)
{
    struct entry *e = &st->cache[(uint32_t)((addr ^ (addr >> 13)) & (CACHE_SIZE - 1))];
    e->addr = addr; e->size = size; e->icount = icount;
}

static uint32_t lookup(struct icount_state *st, uc_engine *uc, uint64_t addr, uint32_t size)
{
    struct entry *e = &st->cache[(uint32_t)((addr ^ (addr >> 13)) & (CACHE_SIZE - 1))];
    if (e->addr == addr && e->size == size && e->icount)
        return e->icount;
    uc_tb tb;
    memset(&tb, 0, sizeof tb);
    st->misses++;
    if (st->ctl(uc, CTL_REQUEST_CACHE, addr, &tb) != 0 || tb.icount == 0)
        return 0;  /* unknown: Python recounts this block (block_icount == 0) */
    e->addr = addr; e->size = size; e->icount = tb.icount;
    return tb.icount;
}

void icount_block_hook(uc_engine *uc, uint64_t addr, uint32_t size, struct icount_state *st)
{
    struct entry *e = &st->cache[(uint32_t)((addr ^ (addr >> 13)) & (CACHE_SIZE - 1))];
    int fresh = !(e->addr == addr && e->size == size && e->icount);
    uint32_t n = lookup(st, uc, addr, size);
    if (fresh && st->new_block && st->new_block(addr, size)) {
        st->rescan = 1;
        st->block_size = 0;
        st->stop(uc);
        return;
    }
    if (st->stop_flag || st->count + n > st->deadline) {
        st->deadline_hit = 1;
        st->block_size = 0;
        st->stop(uc);
        return;
    }
    st->block_addr = addr;
    st->block_entry = st->count;
    st->block_size = size;
    st->block_icount = n;
    st->count += n;
    st->blocks++;
}

/* UC_HOOK_CODE on the instruction after an I/O instruction: makes a stop requested by the
 * I/O hook take effect right there (Unicorn checks for a stop after code hooks only). */
void icount_stop_check_hook(uc_engine *uc, uint64_t addr, uint32_t size, struct icount_state *st)
{
    (void)addr; (void)size;
    if (st->pending_stop) {
        st->pending_stop = 0;
        st->stop(uc);
    }
}

void icount_set_new_block(struct icount_state *st, void *fn) { st->new_block = (int (*)(uint64_t, uint32_t))fn; }
