/* emu-only: mgmt_validator: the management guest's validator (issue 10, the patent's FIG. 3 embodiment). It polls
 * the monitor every PIT tick (hypercall leaf 2 MOUNT_POLL); when the monitor has mounted another guest's disk,
 * read-only, at this guest's secondary master and written a job descriptor (the protected entries with their
 * expected attributes and SHA-256, the protected directories, and in version 2 the configuration files the
 * monitor's rules name), it reads that disk with its own FAT reader, hashes every listed file, compares, lists the
 * protected directories for entries nobody listed, copies the configuration files' bytes into the record, hands
 * the record back (leaf 3 FINDINGS) and releases the disk (leaf 4 UNMOUNT). It never writes the disk, except the deliberate, refused, write attempt
 * of `trywrite=1`. ABI and behaviour: docs/mgmt-validator.md.
 * Multiboot command line (defaults): "hz=1000 jobs=0 ticks=5000 trywrite=0 hang=0"
 *   jobs=N   exit(0) after N jobs (0: no limit)       ticks=T  exit(0) after T ticks without a job (0: never)
 *   trywrite=1  per job, a PIO WRITE SECTORS at LBA 0 of the mounted disk first; prints whether it was refused
 *   hang=1   take the first job, then never answer (STI;HLT forever): the monitor's deadline path
 * Exit status: 0 done; 2 no IDE controller; 3 the monitor does not implement MOUNT_POLL. */
#include "fw.h"
#include "ata.h"
#include "util.h"
#include "mv_sha256.h"
#include "mv_fat.h"

#define HC_MOUNT_POLL 2
#define HC_FINDINGS 3
#define HC_UNMOUNT 4
#define JOB_MAGIC 0x424F4A56u         /* 'VJOB' */
#define REC_MAGIC 0x444E4946u         /* 'FIND' */
#define ABI_V1 1                      /* size and SHA-256 only; the record answers in version 1 */
#define ABI_V2 2                      /* + attributes to compare, configuration files to return */
#define PATH_LEN 64
#define JOB_BUF_SIZE 65536u
#define ENTRY_AREA 65536u             /* record header + entries */
#define CFG_AREA 16384u               /* configuration entries + their content (v2) */
#define REC_BUF_SIZE (ENTRY_AREA + CFG_AREA)
#define MAX_CONFIG 64

enum status { ST_OK = 0, ST_CHANGED = 1, ST_REMOVED = 2, ST_ADDED = 3, ST_UNREADABLE = 4 };
static const char *const status_names[] = { "ok", "changed", "removed", "added", "unreadable" };
/* Statuses of a configuration file (v2): 0 OK, 2 REMOVED, 4 UNREADABLE as above, and: */
enum { CF_DIRECTORY = 5, CF_TOO_LARGE = 6 };

/* job_file.compare (v2): the baseline attributes to compare, and the expected type. */
enum { CMP_TYPE = 1, CMP_SIZE = 2, CMP_ATTR = 4, CMP_WRITE_TIME = 8, CMP_FIRST_CLUSTER = 16, CMP_SHA256 = 32,
       EXPECT_DIR = 0x100 };
/* rec_entry.flags (v2) */
enum { RF_DIR = 1, RF_HASH = 2, RF_META = 4 };

struct job_hdr {                      /* v1: 24 bytes (up to n_files); v2: 32 */
    uint32_t magic, version, job_id, partition_lba, n_dirs, n_files, n_config, reserved;
} __attribute__((packed));

struct job_file {                     /* v1: the first 100 bytes; v2: 120 */
    char path[PATH_LEN];
    uint32_t size;
    uint8_t sha256[32];
    uint32_t compare, attr, write_time, first_cluster;
} __attribute__((packed));

struct rec_hdr {                      /* v1: 16 bytes (up to n); v2: 24 */
    uint32_t magic, version, job_id, n, n_config, data_len;
} __attribute__((packed));

struct rec_entry {                    /* v1: the first 104 bytes; v2: 120 */
    char path[PATH_LEN];
    uint32_t status, size;
    uint8_t sha256[32];
    uint32_t flags, attr, write_time, first_cluster;
} __attribute__((packed));

struct rec_config {                   /* v2: 112 bytes */
    char path[PATH_LEN];
    uint32_t status, size;
    uint8_t sha256[32];
    uint32_t offset, length;          /* of the content in the data area that follows the configuration entries */
} __attribute__((packed));

_Static_assert(sizeof(struct job_hdr) == 32 && sizeof(struct job_file) == 116, "job layout (docs/mgmt-validator.md)");
_Static_assert(sizeof(struct rec_hdr) == 24 && sizeof(struct rec_entry) == 120 && sizeof(struct rec_config) == 112,
               "record layout (docs/mgmt-validator.md)");

#define JOB_HDR_V1 24u
#define JOB_FILE_V1 100u
#define REC_HDR_V1 16u
#define REC_ENTRY_V1 104u
#define MAX_FILES ((JOB_BUF_SIZE - JOB_HDR_V1) / JOB_FILE_V1)
#define MAX_DIRS ((JOB_BUF_SIZE - JOB_HDR_V1) / PATH_LEN)
#define DATA_SECTORS 128

static uint8_t job_buf[JOB_BUF_SIZE] __attribute__((aligned(4096)));
static uint8_t rec_buf[REC_BUF_SIZE] __attribute__((aligned(4096)));
static uint8_t data_buf[DATA_SECTORS * 512] __attribute__((aligned(4096)));   /* DMA target (PRDs split at 64 KiB) */
static uint8_t write_buf[512] __attribute__((aligned(16)));

struct loc {
    uint32_t lba, off;
    int found;
};
static struct loc file_loc[MAX_FILES], dir_loc[MAX_DIRS];
static struct mv_dirent ent, child;
static struct mv_dir walk;
static struct mv_fat fs;
static struct mv_sha256 sha;
static uint32_t rec_version, rec_hdr_size, rec_stride, rec_max;   /* the record's layout for this job */
/* The mounted disk: the secondary master, read by DMA, IRQ 15 awaited with STI;HLT (at most 2000 ticks). */
static struct ide_chan disk = { IDE_CHAN_SECONDARY, .halt_wait = 1, .bsy_polls = 100000,
                                  .timeout_ticks = 2000 };

static int disk_read(uint32_t lba, uint32_t count, void *buf)
{
    return ide_dma(&disk, lba, count, buf, 0) ? -1 : 0;
}

/* A NUL-terminated copy of a fixed 64-byte path field. */
static void path_copy(char out[PATH_LEN + 1], const char *field)
{
    memcpy(out, field, PATH_LEN);
    out[PATH_LEN] = 0;
}

/* Append an entry to the record (in this job's layout); the v2 fields come from `e` when it is given. */
static struct rec_entry *rec_add(uint32_t *n, const char *path, uint32_t status, uint32_t size, const uint8_t *hash,
                                 const struct mv_dirent *e)
{
    if (*n >= rec_max)
        return 0;
    struct rec_entry *r = (struct rec_entry *)(rec_buf + rec_hdr_size + *n * rec_stride);
    memset(r, 0, rec_stride);
    size_t len = strlen(path);
    memcpy(r->path, path, len < PATH_LEN ? len : PATH_LEN);
    r->status = status;
    r->size = size;
    if (hash)
        memcpy(r->sha256, hash, 32);
    if (rec_version == ABI_V2) {
        r->flags = hash ? RF_HASH : 0;
        if (e) {
            r->flags |= RF_META | ((e->attr & FAT_ATTR_DIRECTORY) ? RF_DIR : 0);
            r->attr = e->attr;
            r->write_time = (uint32_t)e->wdate << 16 | e->wtime;
            r->first_cluster = e->first_cluster;
        }
    }
    (*n)++;
    return r;
}

/* SHA-256 of a file's content, copied to `copy` too unless 0; MV_FAT_OK or the reader's error. */
static int hash_file(const struct mv_dirent *e, uint8_t out[32], uint8_t *copy)
{
    mv_sha256_init(&sha);
    int rc = mv_fat_hash_file(&fs, e->first_cluster, e->size, &sha, data_buf, DATA_SECTORS, copy);
    if (rc)
        return rc;
    mv_sha256_final(&sha, out);
    return MV_FAT_OK;
}

static int loc_listed(uint32_t lba, uint32_t off, uint32_t n_files, uint32_t n_dirs)
{
    for (uint32_t i = 0; i < n_files; i++)
        if (file_loc[i].found && file_loc[i].lba == lba && file_loc[i].off == off)
            return 1;
    for (uint32_t i = 0; i < n_dirs; i++)
        if (dir_loc[i].found && dir_loc[i].lba == lba && dir_loc[i].off == off)
            return 1;
    return 0;
}

/* The deliberate write attempt (trywrite=1): one sector at LBA 0; a read-only mount must abort it. */
static void try_write(void)
{
    static const char msg[] = "mgmt_validator deliberate write attempt ";
    for (uint32_t i = 0; i < sizeof write_buf; i++)
        write_buf[i] = (uint8_t)msg[i % (sizeof msg - 1)];
    struct ide_write_try t = ide_try_write(&disk, 0, write_buf);
    if (t.rc)
        printf("validator: trywrite: WRITE SECTORS at lba 0: %s\n", ide_strerror(&disk, t.rc));
    else
        printf("validator: trywrite: WRITE SECTORS at lba 0 %s (status 0x%02x, error 0x%02x%s)\n",
               t.refused ? "refused" : "ACCEPTED", t.status, t.error, t.data_phase ? ", after the data phase" : "");
}

#define MAX_PENDING 64
#define MAX_ADDED_DIRS_WALKED 256

/* Added directories still to be listed (their content is added too). */
static struct {
    uint32_t cluster;
    char path[PATH_LEN + 1];
} pending[MAX_PENDING];
static uint32_t n_pending;

/* Report every entry of the directory at `cluster` (0: the root) that no job entry resolves to as ADDED, with the
 * path `dir`/name (truncated to 64 bytes); unlisted subdirectories are queued. A broken directory chain adds an
 * UNREADABLE entry for the directory itself. */
static void walk_dir(uint32_t cluster, const char *dir, uint32_t n_files, uint32_t n_dirs, uint32_t *n)
{
    uint8_t hash[32];
    size_t plen = strlen(dir);
    while (plen && dir[plen - 1] == '/')
        plen--;
    mv_dir_open(&fs, &walk, cluster);
    int wr;
    while ((wr = mv_dir_next(&walk, &child)) == 1) {
        if (loc_listed(child.lba, child.off, n_files, n_dirs))
            continue;
        char full[PATH_LEN + 1];
        size_t k = 0;
        for (size_t q = 0; q < plen && k < PATH_LEN; q++)
            full[k++] = dir[q];
        if (k < PATH_LEN)
            full[k++] = '/';
        for (const char *q = child.name; *q && k < PATH_LEN; q++)
            full[k++] = *q;
        full[k] = 0;
        if (child.attr & FAT_ATTR_DIRECTORY) {
            rec_add(n, full, ST_ADDED, 0, 0, &child);
            if (child.first_cluster && n_pending < MAX_PENDING) {
                pending[n_pending].cluster = child.first_cluster;
                memcpy(pending[n_pending].path, full, sizeof full);
                n_pending++;
            }
        } else if (hash_file(&child, hash, 0)) {
            rec_add(n, full, ST_ADDED, child.size, 0, &child);
        } else {
            rec_add(n, full, ST_ADDED, child.size, hash, &child);
        }
    }
    if (wr < 0) {
        char p[PATH_LEN + 1];
        memcpy(p, dir, plen < PATH_LEN ? plen : PATH_LEN);
        p[plen < PATH_LEN ? plen : PATH_LEN] = 0;
        rec_add(n, plen ? p : "/", ST_UNREADABLE, 0, 0, 0);
    }
}

/* A listed entry that resolved: compare what the job asks for; OK or CHANGED (UNREADABLE if a file's content
 * cannot be read). v1 compares type (a file expected), size and SHA-256. */
static void check_listed(uint32_t *n, const char *path, const struct job_file *f, uint32_t cmp)
{
    uint8_t hash[32];
    int is_dir = (ent.attr & FAT_ATTR_DIRECTORY) != 0;
    int differs = (cmp & CMP_TYPE) && is_dir != ((cmp & EXPECT_DIR) != 0);
    int hashed = 0;
    if (!is_dir) {
        if (hash_file(&ent, hash, 0)) {
            rec_add(n, path, ST_UNREADABLE, ent.size, 0, &ent);
            return;
        }
        hashed = 1;
    }
    if (rec_version == ABI_V1 && is_dir) {
        rec_add(n, path, ST_CHANGED, 0, 0, &ent);
        return;
    }
    differs |= (cmp & CMP_SIZE) && ent.size != f->size;
    differs |= (cmp & CMP_ATTR) && ent.attr != f->attr;
    differs |= (cmp & CMP_WRITE_TIME) && ((uint32_t)ent.wdate << 16 | ent.wtime) != f->write_time;
    differs |= (cmp & CMP_FIRST_CLUSTER) && ent.first_cluster != f->first_cluster;
    differs |= (cmp & CMP_SHA256) && hashed && memcmp(hash, f->sha256, 32) != 0;
    rec_add(n, path, differs ? ST_CHANGED : ST_OK, ent.size, hashed ? hash : 0, &ent);
}

/* v2: the configuration files the monitor's rules name, with their content, into the configuration area at the
 * end of rec_buf; returns its length. */
static uint32_t collect_configs(const char *paths, uint32_t n_config, int volume_ok, uint32_t *data_len)
{
    uint8_t *area = rec_buf + ENTRY_AREA;
    struct rec_config *c = (struct rec_config *)area;
    uint32_t base = n_config * sizeof *c, used = 0;
    char path[PATH_LEN + 1];
    for (uint32_t i = 0; i < n_config; i++, c++) {
        memset(c, 0, sizeof *c);
        memcpy(c->path, paths + i * PATH_LEN, PATH_LEN);
        path_copy(path, c->path);
        int lr = volume_ok ? mv_fat_lookup(&fs, path, &ent) : MV_FAT_IO;
        if (lr == MV_FAT_NOT_FOUND || lr == MV_FAT_NOT_A_DIR) {
            c->status = ST_REMOVED;
        } else if (lr) {
            c->status = ST_UNREADABLE;
        } else if (ent.attr & FAT_ATTR_DIRECTORY) {
            c->status = CF_DIRECTORY;
        } else if (ent.size > CFG_AREA - base - used) {
            c->status = CF_TOO_LARGE;
            c->size = ent.size;
        } else if (hash_file(&ent, c->sha256, area + base + used)) {
            memset(c->sha256, 0, 32);
            c->status = ST_UNREADABLE;
            c->size = ent.size;
        } else {
            c->status = ST_OK;
            c->size = c->length = ent.size;
            c->offset = used;
            used += ent.size;
        }
    }
    *data_len = used;
    return base + used;
}

/* One job: build the findings record in rec_buf; returns its length. */
static uint32_t run_job(uint32_t trywrite, uint32_t *job_id, uint32_t *not_ok)
{
    const struct job_hdr *h = (const struct job_hdr *)job_buf;
    struct rec_hdr *rh = (struct rec_hdr *)rec_buf;
    uint32_t n = 0;
    char path[PATH_LEN + 1];
    *job_id = h->job_id;
    *not_ok = 0;
    rec_version = h->version == ABI_V2 ? ABI_V2 : ABI_V1;
    rec_hdr_size = rec_version == ABI_V2 ? sizeof *rh : REC_HDR_V1;
    rec_stride = rec_version == ABI_V2 ? sizeof(struct rec_entry) : REC_ENTRY_V1;
    rec_max = (ENTRY_AREA - rec_hdr_size) / rec_stride;
    memset(rh, 0, sizeof *rh);
    rh->magic = REC_MAGIC;
    rh->version = rec_version;
    rh->job_id = h->job_id;
    uint32_t hdr_size = rec_version == ABI_V2 ? sizeof *h : JOB_HDR_V1;
    uint32_t file_size = rec_version == ABI_V2 ? sizeof(struct job_file) : JOB_FILE_V1;
    uint32_t n_config = rec_version == ABI_V2 ? h->n_config : 0;
    if (h->magic != JOB_MAGIC || (h->version != ABI_V1 && h->version != ABI_V2) || h->n_dirs > MAX_DIRS ||
        h->n_files > MAX_FILES || n_config > MAX_CONFIG ||
        hdr_size + h->n_dirs * PATH_LEN + h->n_files * file_size + n_config * PATH_LEN > JOB_BUF_SIZE) {
        printf("validator: bad job descriptor (magic %08x version %u)\n", h->magic, h->version);
        return rec_hdr_size;
    }
    const char *dirs = (const char *)(job_buf + hdr_size);
    const uint8_t *files = (const uint8_t *)(dirs + h->n_dirs * PATH_LEN);
    const char *configs = (const char *)(files + h->n_files * file_size);

    int rc = ide_select(&disk);
    if (rc == IDE_OK && trywrite)
        try_write();
    if (rc == IDE_OK) {
        rc = mv_fat_mount(&fs, disk_read, h->partition_lba);
        if (rc)
            printf("validator: %s\n", mv_fat_strerror(rc));
    } else {
        printf("validator: %s\n", ide_strerror(&disk, rc));
    }

    for (uint32_t i = 0; i < h->n_files; i++) {
        const struct job_file *f = (const struct job_file *)(files + i * file_size);
        uint32_t cmp = rec_version == ABI_V2 ? f->compare : CMP_TYPE | CMP_SIZE | CMP_SHA256;
        file_loc[i].found = 0;
        path_copy(path, f->path);
        if (rc) {
            rec_add(&n, path, ST_UNREADABLE, 0, 0, 0);
            continue;
        }
        int lr = mv_fat_lookup(&fs, path, &ent);
        if (lr == MV_FAT_NOT_FOUND || lr == MV_FAT_NOT_A_DIR) {
            rec_add(&n, path, ST_REMOVED, 0, 0, 0);
            continue;
        }
        if (lr) {
            rec_add(&n, path, ST_UNREADABLE, 0, 0, 0);
            continue;
        }
        file_loc[i].found = 1;
        file_loc[i].lba = ent.lba;
        file_loc[i].off = ent.off;
        check_listed(&n, path, f, cmp);
    }

    for (uint32_t j = 0; j < h->n_dirs && !rc; j++) {
        path_copy(path, dirs + j * PATH_LEN);
        dir_loc[j].found = mv_fat_lookup(&fs, path, &ent) == MV_FAT_OK && (ent.attr & FAT_ATTR_DIRECTORY);
        dir_loc[j].lba = ent.lba;
        dir_loc[j].off = ent.off;
    }
    for (uint32_t j = 0; j < h->n_dirs && !rc; j++) {
        if (!dir_loc[j].found)
            continue;
        int dup = 0;
        for (uint32_t k = 0; k < j; k++)
            dup |= dir_loc[k].found && dir_loc[k].lba == dir_loc[j].lba && dir_loc[k].off == dir_loc[j].off;
        if (dup)
            continue;
        path_copy(path, dirs + j * PATH_LEN);
        if (mv_fat_lookup(&fs, path, &ent))
            continue;
        walk_dir(ent.first_cluster, path, h->n_files, h->n_dirs, &n);
    }
    /* Directories that nobody listed, found above (ADDED): their whole content is added too, as the monitor-side
     * validator reports everything under a protected path. Bounded: a directory loop cannot keep it going. */
    for (uint32_t walked = 0; n_pending && walked < MAX_ADDED_DIRS_WALKED; walked++) {
        n_pending--;
        memcpy(path, pending[n_pending].path, sizeof path);
        walk_dir(pending[n_pending].cluster, path, h->n_files, h->n_dirs, &n);
    }
    n_pending = 0;

    for (uint32_t i = 0; i < n; i++) {
        const struct rec_entry *r = (const struct rec_entry *)(rec_buf + rec_hdr_size + i * rec_stride);
        if (r->status != ST_OK) {
            (*not_ok)++;
            path_copy(path, r->path);
            printf("validator:   %s %s\n", status_names[r->status], path);
        }
    }
    rh->n = n;
    uint32_t len = rec_hdr_size + n * rec_stride;
    if (rec_version == ABI_V2) {
        uint32_t data_len;
        uint32_t cfg_len = collect_configs(configs, n_config, rc == 0, &data_len);
        memmove(rec_buf + len, rec_buf + ENTRY_AREA, cfg_len);    /* right after the entries */
        rh->n_config = n_config;
        rh->data_len = data_len;
        len += cfg_len;
    }
    return len;
}

void kmain(struct multiboot_info *mbi)
{
    const char *line = mb_cmdline(mbi);
    uint32_t hz = cmdline_hz(line);
    uint32_t jobs = cmdline_uint(line, "jobs", 0);
    uint32_t ticks = cmdline_uint(line, "ticks", 5000);
    uint32_t trywrite = cmdline_uint(line, "trywrite", 0);
    uint32_t hang = cmdline_uint(line, "hang", 0);
    printf("mgmt_validator: hz=%u jobs=%u ticks=%u trywrite=%u hang=%u\n", hz, jobs, ticks, trywrite, hang);
    tick_start(pit_divisor(hz));
    int rc = ide_probe(&disk);
    if (rc == IDE_OK)
        ide_irq_on(&disk);
    if (rc) {
        printf("validator: %s\n", ide_strerror(&disk, rc));
        exit(2);
    }
    sti();
    uint32_t seen = 0, last = 0, done = 0;
    for (;;) {
        seen = tick_wait(seen);
        int32_t r = vmcall(HC_MOUNT_POLL, (uint32_t)job_buf, JOB_BUF_SIZE, 0);
        if (r == 1) {
            if (hang) {
                printf("validator: job taken; hang=1: never answering\n");
                for (;;)
                    sti_hlt();
            }
            uint32_t job_id, not_ok;
            uint32_t len = run_job(trywrite, &job_id, &not_ok);
            const struct rec_hdr *rh = (const struct rec_hdr *)rec_buf;
            int32_t fr = vmcall(HC_FINDINGS, (uint32_t)rec_buf, len, 0);
            int32_t ur = vmcall(HC_UNMOUNT, 0, 0, 0);
            printf("validator: job %u: %u entries, %u not OK\n", job_id, rh->n, not_ok);
            if (fr || ur)
                printf("validator: job %u: FINDINGS returned %d, UNMOUNT returned %d\n", job_id, fr, ur);
            done++;
            last = tick_count;
            seen = last;
            if (jobs && done >= jobs)
                break;
        } else if (r != 0) {
            printf("validator: MOUNT_POLL returned %d\n", r);
            exit(3);
        }
        if (ticks && seen - last >= ticks) {
            printf("validator: no job for %u ticks\n", ticks);
            break;
        }
    }
    printf("validator done: %u jobs, %u ATA commands, %u sectors read\n", done, disk.commands,
           disk.sectors_read);
    exit(0);
}
