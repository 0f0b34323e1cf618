/* demo_fat16.h: a small FAT16 reader and in-place writer, header-only (Microsoft fatgen103: BPB 3.1-3.3, cluster
 * count 3.5, FAT entries 4, directory entries 6 with their date/time format 6.1; UEFI 2.10 5.2.1 legacy MBR).
 * It never allocates: a file is rewritten inside the clusters it already owns, and its directory entry's size and
 * write date/time are updated. Sector I/O goes through the two callbacks in struct fat16 (512-byte sectors). */
#ifndef DEMO_FAT16_H
#define DEMO_FAT16_H
#include "fw.h"
#include "fat.h"

#define FAT16_EOC 0xFFF8u            /* >= this: end of chain */
#define FAT16_BAD 0xFFF7u

enum fat_error {
    FAT_OK = 0,
    FAT_IO = -1,            /* a sector read or write failed */
    FAT_NO_VOLUME = -2,     /* no MBR partition and no boot sector with a plausible BPB */
    FAT_NOT_FAT16 = -3,     /* plausible BPB, but a FAT12/FAT32 cluster count or 512 != BytsPerSec */
    FAT_NOT_FOUND = -4,
    FAT_NOT_A_DIR = -5,
    FAT_BAD_CHAIN = -6,     /* free, bad, out-of-range or looping cluster chain */
    FAT_TOO_BIG = -7,       /* does not fit the caller's buffer or the clusters the file owns */
};

typedef int (*fat_io_fn)(uint32_t lba, uint32_t count, void *buf);

struct fat16 {
    fat_io_fn read, write;
    struct fat_geom g;       /* the volume's layout */
    uint32_t fat_cache_lba;  /* FAT sector held in fat_cache (0 = none) */
};

/* A file found by fat16_lookup: where its directory entry lives, and what it says. */
struct fat_file {
    uint32_t dir_lba, dir_off;   /* sector holding the 32-byte entry, byte offset in it */
    uint32_t first_cluster;
    uint32_t size;
    uint32_t allocated;          /* bytes of the clusters its chain owns */
    uint8_t attr;
};

static uint8_t fat_sector_buf[FAT_SECTOR] __attribute__((aligned(FAT_SECTOR)));
static uint8_t fat_cache[FAT_SECTOR] __attribute__((aligned(FAT_SECTOR)));

/* The BPB this reader accepts: plausible (fat_bpb_parse) with a FAT16-style FATSz16 and RootEntCnt. */
static inline int fat16_bpb_ok(const uint8_t *bs, struct fat_bpb *b)
{
    return fat_bpb_parse(bs, b) && b->fatsz16 != 0 && b->root_entries != 0;
}

/* Find the volume (first MBR partition of a FAT16 type, or a boot sector at LBA 0) and read its BPB. */
static inline int fat16_mount(struct fat16 *fs, fat_io_fn read, fat_io_fn write)
{
    memset(fs, 0, sizeof *fs);
    fs->read = read;
    fs->write = write;
    if (read(0, 1, fat_sector_buf))
        return FAT_IO;
    uint8_t *s = fat_sector_buf;
    struct fat_bpb b;
    uint32_t starts[4], part = 0;
    int found = fat_mbr_find(s, fat_part_type_fat16, starts) > 0;
    if (found)
        part = starts[0];
    if (!found && !fat16_bpb_ok(s, &b))
        return FAT_NO_VOLUME;
    if (found && read(part, 1, fat_sector_buf))
        return FAT_IO;
    if (!fat16_bpb_ok(s, &b))
        return FAT_NO_VOLUME;
    if (!fat_geom_init(&fs->g, &b, part) || fs->g.type != 16)     /* fatgen103 3.5: type by cluster count */
        return FAT_NOT_FAT16;
    if (fs->g.clusters + 2 > b.fatsz * (FAT_SECTOR / 2))      /* the FAT must hold an entry for every cluster */
        return FAT_NOT_FAT16;
    return FAT_OK;
}

/* The FAT entry of a cluster (FAT 0), through a one-sector cache; returns FAT_IO on a read error. */
static inline int32_t fat16_next(struct fat16 *fs, uint32_t cluster)
{
    uint32_t lba = fs->g.fat_lba + (cluster * 2) / FAT_SECTOR;
    if (fs->fat_cache_lba != lba) {
        if (fs->read(lba, 1, fat_cache))
            return FAT_IO;
        fs->fat_cache_lba = lba;
    }
    return fat_le16(fat_cache + (cluster * 2) % FAT_SECTOR);
}

/* Walk a chain: the cluster after `c`, 0 at a proper end of chain, or a negative fat_error. */
static inline int32_t fat16_step(struct fat16 *fs, uint32_t c)
{
    int32_t n = fat16_next(fs, c);
    if (n < 0)
        return n;
    if ((uint32_t)n >= FAT16_EOC)
        return 0;
    if (!fat_valid_cluster(&fs->g, (uint32_t)n))
        return FAT_BAD_CHAIN;
    return n;
}

/* "NET.CFG" -> "NET     CFG" (upper case, space padded); returns 0 when the component is not a valid 8.3 name. */
static inline int fat_name83(const char *comp, size_t len, uint8_t out[11])
{
    memset(out, ' ', 11);
    size_t i = 0, o = 0;
    for (; i < len && comp[i] != '.'; i++, o++) {
        if (o >= 8)
            return 0;
        char c = comp[i];
        out[o] = (uint8_t)((c >= 'a' && c <= 'z') ? c - 32 : c);
    }
    if (o == 0)
        return 0;
    if (i < len) {
        i++;
        for (o = 8; i < len; i++, o++) {
            if (o >= 11 || comp[i] == '.')
                return 0;
            char c = comp[i];
            out[o] = (uint8_t)((c >= 'a' && c <= 'z') ? c - 32 : c);
        }
    }
    return 1;
}

/* Search one directory (cluster 0 = the fixed root region) for an 8.3 name; fills *f. */
static inline int fat16_find_in(struct fat16 *fs, uint32_t dir_cluster, const uint8_t name[11], struct fat_file *f)
{
    uint32_t lba = 0, left = 0, cluster = dir_cluster, steps = 0;
    if (dir_cluster == 0) {
        lba = fs->g.root_lba;
        left = fs->g.root_sectors;
    }
    for (;;) {
        if (left == 0) {
            if (dir_cluster == 0)
                return FAT_NOT_FOUND;
            if (steps++) {
                int32_t n = fat16_step(fs, cluster);
                if (n <= 0)
                    return n == 0 ? FAT_NOT_FOUND : n;
                cluster = (uint32_t)n;
            }
            if (!fat_valid_cluster(&fs->g, cluster) || steps > fs->g.clusters)
                return FAT_BAD_CHAIN;
            lba = fat_cluster_lba(&fs->g, cluster);
            left = fs->g.spc;
        }
        if (fs->read(lba, 1, fat_sector_buf))
            return FAT_IO;
        for (uint32_t off = 0; off < FAT_SECTOR; off += 32) {
            const uint8_t *e = fat_sector_buf + off;
            if (e[0] == 0x00)
                return FAT_NOT_FOUND;                  /* fatgen103 6: 0 = this and all later entries free */
            if (e[0] == 0xE5 || (e[11] & FAT_ATTR_LONG_NAME) == FAT_ATTR_LONG_NAME || (e[11] & FAT_ATTR_VOLUME_ID))
                continue;
            if (memcmp(e, name, 11) != 0)
                continue;
            f->dir_lba = lba;
            f->dir_off = off;
            f->attr = e[11];
            f->first_cluster = fat_le16(e + 26);
            f->size = fat_le32(e + 28);
            return FAT_OK;
        }
        lba++;
        left--;
    }
}

/* Bytes owned by a chain (bounded walk: a loop or a bad link is FAT_BAD_CHAIN). */
static inline int fat16_chain_bytes(struct fat16 *fs, uint32_t first, uint32_t *bytes)
{
    uint32_t n = 0;
    uint32_t c = first;
    if (c == 0) {
        *bytes = 0;
        return FAT_OK;
    }
    while (c) {
        if (!fat_valid_cluster(&fs->g, c) || n > fs->g.clusters)
            return FAT_BAD_CHAIN;
        n++;
        int32_t next = fat16_step(fs, c);
        if (next < 0)
            return next;
        c = (uint32_t)next;
    }
    *bytes = n * fs->g.spc * FAT_SECTOR;
    return FAT_OK;
}

/* Look up an absolute path of 8.3 components ("/ETC/NET.CFG"). */
static inline int fat16_lookup(struct fat16 *fs, const char *path, struct fat_file *f)
{
    uint32_t dir = 0;
    const char *p = path;
    for (;;) {
        while (*p == '/')
            p++;
        const char *end = p;
        while (*end && *end != '/')
            end++;
        uint8_t name[11];
        if (!fat_name83(p, (size_t)(end - p), name))
            return FAT_NOT_FOUND;
        int rc = fat16_find_in(fs, dir, name, f);
        if (rc)
            return rc;
        while (*end == '/')
            end++;
        if (!*end)
            break;
        if (!(f->attr & FAT_ATTR_DIRECTORY))
            return FAT_NOT_A_DIR;
        dir = f->first_cluster;
        if (dir == 0)
            return FAT_BAD_CHAIN;
        p = end;
    }
    return fat16_chain_bytes(fs, f->first_cluster, &f->allocated);
}

/* Read or write the sectors [first, first + count) of a file's clusters, coalescing contiguous clusters into one
 * request of at most max_sectors; buf holds the file's content from byte 0 (so sector s is at buf + 512 s). */
static inline int fat16_file_io(struct fat16 *fs, const struct fat_file *f, uint8_t *buf, uint32_t first,
                                uint32_t count, uint32_t max_sectors, int write)
{
    uint32_t spc = fs->g.spc, c = f->first_cluster, index = 0;
    uint32_t end = first + count;
    uint32_t run_lba = 0, run_start = 0, run_len = 0;     /* pending request: file sectors run_start.. */
    fat_io_fn io = write ? fs->write : fs->read;
    if (end * FAT_SECTOR > f->allocated)
        return FAT_TOO_BIG;
    while (c && index * spc < end) {
        if (!fat_valid_cluster(&fs->g, c) || index > fs->g.clusters)
            return FAT_BAD_CHAIN;
        uint32_t lo = index * spc, hi = lo + spc;
        for (uint32_t s = lo; s < hi; s++) {
            if (s < first || s >= end)
                continue;
            uint32_t lba = fat_cluster_lba(&fs->g, c) + (s - lo);
            if (run_len && (lba != run_lba + run_len || run_len == max_sectors)) {
                if (io(run_lba, run_len, buf + run_start * FAT_SECTOR))
                    return FAT_IO;
                run_len = 0;
            }
            if (!run_len) {
                run_lba = lba;
                run_start = s;
            }
            run_len++;
        }
        int32_t next = fat16_step(fs, c);
        if (next < 0)
            return next;
        c = (uint32_t)next;
        index++;
    }
    if (run_len && io(run_lba, run_len, buf + run_start * FAT_SECTOR))
        return FAT_IO;
    return FAT_OK;
}

/* Read all the clusters a file owns into buf (cap bytes); the content is the first f->size bytes. */
static inline int fat16_read_file(struct fat16 *fs, const struct fat_file *f, uint8_t *buf, uint32_t cap,
                                  uint32_t max_sectors)
{
    if (f->allocated > cap)
        return FAT_TOO_BIG;
    if (f->allocated == 0)
        return FAT_OK;
    return fat16_file_io(fs, f, buf, 0, f->allocated / FAT_SECTOR, max_sectors, 0);
}

/* fatgen103 6.1: date = (year - 1980) << 9 | month << 5 | day; time = hour << 11 | minute << 5 | seconds / 2. */
struct fat_stamp {
    uint16_t date, time;
};

/* Update the directory entry in place: size, write date/time and last access date (read-modify-write of its sector). */
static inline int fat16_update_entry(struct fat16 *fs, struct fat_file *f, uint32_t size, struct fat_stamp st)
{
    if (fs->read(f->dir_lba, 1, fat_sector_buf))
        return FAT_IO;
    uint8_t *e = fat_sector_buf + f->dir_off;
    fat_put16(e + 18, st.date);          /* DIR_LstAccDate */
    fat_put16(e + 22, st.time);          /* DIR_WrtTime */
    fat_put16(e + 24, st.date);          /* DIR_WrtDate */
    fat_put32(e + 28, size);             /* DIR_FileSize */
    if (fs->write(f->dir_lba, 1, fat_sector_buf))
        return FAT_IO;
    f->size = size;
    return FAT_OK;
}

/* Rewrite bytes [off, off + len) of a file in place (whole sectors from buf, which holds the file from byte 0),
 * then set its size and write time. No cluster is allocated: the new size must fit the clusters it owns. */
static inline int fat16_rewrite(struct fat16 *fs, struct fat_file *f, uint8_t *buf, uint32_t off, uint32_t len,
                                uint32_t new_size, struct fat_stamp st, uint32_t max_sectors)
{
    if (new_size > f->allocated || off + len > f->allocated || (f->attr & (FAT_ATTR_DIRECTORY | FAT_ATTR_READ_ONLY)))
        return FAT_TOO_BIG;
    if (len) {
        uint32_t first = off / FAT_SECTOR, last = (off + len - 1) / FAT_SECTOR;
        int rc = fat16_file_io(fs, f, buf, first, last - first + 1, max_sectors, 1);
        if (rc)
            return rc;
    }
    return fat16_update_entry(fs, f, new_size, st);
}

static inline const char *fat_strerror(int rc)
{
    switch (rc) {
    case FAT_OK: return "ok";
    case FAT_IO: return "disk i/o error";
    case FAT_NO_VOLUME: return "no FAT volume";
    case FAT_NOT_FAT16: return "not a FAT16 volume";
    case FAT_NOT_FOUND: return "not found";
    case FAT_NOT_A_DIR: return "not a directory";
    case FAT_BAD_CHAIN: return "bad cluster chain";
    case FAT_TOO_BIG: return "does not fit";
    default: return "?";
    }
}

#endif
