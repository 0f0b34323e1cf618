/* mv_fat.h: a read-only FAT12/FAT16/FAT32 reader for the management validator, header-only.
 * References: Microsoft fatgen103 (BPB 3.1-3.3, FAT type by cluster count 3.5, FAT entries 4, directory entries 6,
 * long names 7 with the 8.3 checksum 7.2), UEFI 2.10 5.2.1 (legacy MBR). Names are produced the way emu's own reader
 * (emu/storage/fat.py) and `emu disk ls` show them: the long name when its slots are complete and their checksum
 * matches, else the 8.3 name (code page 850, NT lower-case flags), '/', '\\' and control characters as \xNN; UTF-8.
 * It never writes: the only I/O is the read callback. */
#ifndef MV_FAT_H
#define MV_FAT_H
#include "fw.h"
#include "fat.h"
#include "mv_sha256.h"

#define MV_LAST_LONG_ENTRY 0x40
#define MV_NTRES_LOWER_BASE 0x08
#define MV_NTRES_LOWER_EXT 0x10
#define MV_LFN_MAX_SLOTS 20
#define MV_NAME_MAX 1024            /* a long name: 255 UTF-16 units, 3 UTF-8 bytes each at most, plus escapes */

enum mv_fat_error {
    MV_FAT_OK = 0,
    MV_FAT_IO = -1,             /* a sector read failed */
    MV_FAT_NO_VOLUME = -2,      /* no FAT partition and no plausible boot sector */
    MV_FAT_NOT_FOUND = -4,
    MV_FAT_NOT_A_DIR = -5,
    MV_FAT_BAD_CHAIN = -6,      /* free, bad, out-of-range, looping or too short cluster chain */
};

typedef int (*mv_read_fn)(uint32_t lba, uint32_t count, void *buf);

struct mv_fat {
    mv_read_fn read;
    struct fat_geom g;                 /* the volume's layout (type 12, 16 or 32) */
    uint32_t root_cluster;             /* FAT32 */
    uint32_t cache_lba;
    int cache_valid;
};

static uint8_t mv_fat_cache[FAT_SECTOR] __attribute__((aligned(16)));
static uint8_t mv_fat_boot[FAT_SECTOR] __attribute__((aligned(16)));

/* The BPB this reader accepts: plausible (fat_bpb_parse) with a FAT size (FATSz16 or FATSz32) and a total
 * sector count. */
static inline int mv_fat_bpb_ok(const uint8_t *bs, struct fat_bpb *b)
{
    return fat_bpb_parse(bs, b) && b->fatsz && b->total;
}

/* Open the volume at part_lba (0: the first MBR partition of a FAT type whose boot sector is plausible, else the
 * whole disk when sector 0 is itself a FAT boot sector). */
static inline int mv_fat_mount(struct mv_fat *fs, mv_read_fn read, uint32_t part_lba)
{
    memset(fs, 0, sizeof *fs);
    fs->read = read;
    uint8_t *s = mv_fat_boot;
    struct fat_bpb b;
    if (part_lba == 0) {
        if (read(0, 1, s))
            return MV_FAT_IO;
        uint32_t starts[4];
        int n = fat_mbr_find(s, fat_part_type_fat, starts);
        int whole = mv_fat_bpb_ok(s, &b);
        int found = 0;
        for (int i = 0; i < n && !found; i++) {
            if (read(starts[i], 1, s))
                return MV_FAT_IO;
            if (mv_fat_bpb_ok(s, &b)) {
                part_lba = starts[i];
                found = 1;
            }
        }
        if (!found) {
            if (!whole)
                return MV_FAT_NO_VOLUME;
            if (read(0, 1, s))
                return MV_FAT_IO;
        }
    } else if (read(part_lba, 1, s)) {
        return MV_FAT_IO;
    }
    if (!mv_fat_bpb_ok(s, &b))
        return MV_FAT_NO_VOLUME;
    if (!fat_geom_init(&fs->g, &b, part_lba))
        return MV_FAT_NO_VOLUME;
    if (fs->g.type == 32) {
        fs->root_cluster = fat_le32(s + 44);
        if (fs->root_cluster < 2 || fs->root_cluster >= fs->g.clusters + 2)
            return MV_FAT_NO_VOLUME;
    } else if (b.root_entries == 0) {
        return MV_FAT_NO_VOLUME;
    }
    return MV_FAT_OK;
}

/* One byte of FAT 0 through a one-sector cache; -1 on a read error or past the FAT. */
static inline int mv_fat_byte(struct mv_fat *fs, uint32_t off)
{
    uint32_t sector = off / FAT_SECTOR;
    if (sector >= fs->g.fat_sectors)
        return -1;
    uint32_t lba = fs->g.fat_lba + sector;
    if (!fs->cache_valid || fs->cache_lba != lba) {
        if (fs->read(lba, 1, mv_fat_cache))
            return -1;
        fs->cache_lba = lba;
        fs->cache_valid = 1;
    }
    return mv_fat_cache[off % FAT_SECTOR];
}

/* The cluster after c: 0 at an end of chain, MV_FAT_BAD_CHAIN for a free/bad/out-of-range link, MV_FAT_IO. */
static inline int32_t mv_fat_step(struct mv_fat *fs, uint32_t c)
{
    uint32_t v = 0, eoc;
    if (fs->g.type == 12) {
        int lo = mv_fat_byte(fs, c + c / 2), hi = mv_fat_byte(fs, c + c / 2 + 1);
        if (lo < 0 || hi < 0)
            return MV_FAT_IO;
        v = (uint32_t)(lo | (hi << 8));
        v = (c & 1) ? v >> 4 : v & 0xFFF;
        eoc = 0xFF8;
    } else {
        uint32_t width = fs->g.type == 16 ? 2 : 4;
        for (uint32_t i = 0; i < width; i++) {
            int b = mv_fat_byte(fs, c * width + i);
            if (b < 0)
                return MV_FAT_IO;
            v |= (uint32_t)b << (8 * i);
        }
        if (fs->g.type == 32)
            v &= 0x0FFFFFFFu;                           /* fatgen103 4: the high 4 bits are reserved */
        eoc = fs->g.type == 16 ? 0xFFF8 : 0x0FFFFFF8u;
    }
    if (v >= eoc)
        return 0;
    if (!fat_valid_cluster(&fs->g, v))
        return MV_FAT_BAD_CHAIN;
    return (int32_t)v;
}

/* One directory entry as the reader shows it. */
struct mv_dirent {
    uint8_t raw[11];
    uint8_t attr, ntres;
    uint16_t wtime, wdate;          /* DIR_WrtTime, DIR_WrtDate (fatgen103 section 6) */
    uint32_t first_cluster, size;
    uint32_t lba, off;              /* where the 32-byte entry is: identifies it */
    char name[MV_NAME_MAX];         /* the long name if valid, else the 8.3 text; escaped; UTF-8 */
    char short_name[48];            /* the 8.3 text (NT lower-case flags applied); UTF-8 */
};

/* Iterator over one directory (the fixed FAT12/16 root region, or a cluster chain), with long-name assembly. */
struct mv_dir {
    struct mv_fat *fs;
    int fixed, ended;
    uint32_t lba, left, cluster, steps, off;
    uint8_t sec[FAT_SECTOR];
    int nslots;                     /* long-name slots collected (-1: more than MV_LFN_MAX_SLOTS) */
    uint8_t ords[MV_LFN_MAX_SLOTS], sums[MV_LFN_MAX_SLOTS];
    uint32_t text[MV_LFN_MAX_SLOTS][13];
    uint8_t textlen[MV_LFN_MAX_SLOTS];
};

/* Open a directory: cluster 0 means the root directory. */
static inline void mv_dir_open(struct mv_fat *fs, struct mv_dir *d, uint32_t cluster)
{
    d->fs = fs;
    d->ended = 0;
    d->steps = 0;
    d->off = FAT_SECTOR;
    d->nslots = 0;
    if (cluster == 0 && fs->g.type != 32) {
        d->fixed = 1;
        d->lba = fs->g.root_lba;
        d->left = fs->g.root_sectors;
    } else {
        d->fixed = 0;
        d->cluster = cluster ? cluster : fs->root_cluster;
        d->left = 0;
    }
}

/* Append code point cp to out (UTF-8), escaping '/', '\\', DEL and control characters as \xNN (fat.py
 * _escape_name). Returns the new length; stops at cap - 1. */
static inline uint32_t mv_put_cp(char *out, uint32_t n, uint32_t cap, uint32_t cp)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[4];
    uint32_t k = 0;
    if (cp < 0x20 || cp == '/' || cp == '\\' || cp == 0x7F) {
        if (n + 4 >= cap)
            return n;
        out[n++] = '\\';
        out[n++] = 'x';
        out[n++] = hex[cp >> 4];
        out[n++] = hex[cp & 15];
        return n;
    }
    if (cp < 0x80) {
        tmp[k++] = (char)cp;
    } else if (cp < 0x800) {
        tmp[k++] = (char)(0xC0 | (cp >> 6));
        tmp[k++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        tmp[k++] = (char)(0xE0 | (cp >> 12));
        tmp[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        tmp[k++] = (char)(0x80 | (cp & 0x3F));
    } else {
        tmp[k++] = (char)(0xF0 | (cp >> 18));
        tmp[k++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        tmp[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        tmp[k++] = (char)(0x80 | (cp & 0x3F));
    }
    if (n + k >= cap)
        return n;
    for (uint32_t i = 0; i < k; i++)
        out[n++] = tmp[i];
    return n;
}

/* Code page 850, bytes 0x80-0xFF, as Unicode code points (Python's cp850 codec). */
static const uint16_t mv_cp850[128] = {
    0x00c7, 0x00fc, 0x00e9, 0x00e2, 0x00e4, 0x00e0, 0x00e5, 0x00e7, 0x00ea, 0x00eb, 0x00e8, 0x00ef, 0x00ee, 0x00ec,
    0x00c4, 0x00c5, 0x00c9, 0x00e6, 0x00c6, 0x00f4, 0x00f6, 0x00f2, 0x00fb, 0x00f9, 0x00ff, 0x00d6, 0x00dc, 0x00f8,
    0x00a3, 0x00d8, 0x00d7, 0x0192, 0x00e1, 0x00ed, 0x00f3, 0x00fa, 0x00f1, 0x00d1, 0x00aa, 0x00ba, 0x00bf, 0x00ae,
    0x00ac, 0x00bd, 0x00bc, 0x00a1, 0x00ab, 0x00bb, 0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x00c1, 0x00c2, 0x00c0,
    0x00a9, 0x2563, 0x2551, 0x2557, 0x255d, 0x00a2, 0x00a5, 0x2510, 0x2514, 0x2534, 0x252c, 0x251c, 0x2500, 0x253c,
    0x00e3, 0x00c3, 0x255a, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256c, 0x00a4, 0x00f0, 0x00d0, 0x00ca, 0x00cb,
    0x00c8, 0x0131, 0x00cd, 0x00ce, 0x00cf, 0x2518, 0x250c, 0x2588, 0x2584, 0x00a6, 0x00cc, 0x2580, 0x00d3, 0x00df,
    0x00d4, 0x00d2, 0x00f5, 0x00d5, 0x00b5, 0x00fe, 0x00de, 0x00da, 0x00db, 0x00d9, 0x00fd, 0x00dd, 0x00af, 0x00b4,
    0x00ad, 0x00b1, 0x2017, 0x00be, 0x00b6, 0x00a7, 0x00f7, 0x00b8, 0x00b0, 0x00a8, 0x00b7, 0x00b9, 0x00b3, 0x00b2,
    0x25a0, 0x00a0,
};

static inline uint32_t mv_cp850_cp(uint8_t b) { return b < 0x80 ? b : mv_cp850[b - 0x80]; }

/* The 8.3 name as text (fat.py short_name_text): base '.' ext, 0x05 -> 0xE5, NT lower-case flags (ASCII). */
static inline void mv_short_text(const uint8_t raw[11], uint8_t ntres, char *out, uint32_t cap, int escape)
{
    uint32_t n = 0, blen = 8, elen = 3;
    while (blen && raw[blen - 1] == ' ')
        blen--;
    while (elen && raw[8 + elen - 1] == ' ')
        elen--;
    for (uint32_t i = 0; i < blen + (elen ? 1 + elen : 0); i++) {
        uint8_t b;
        int lower;
        if (i < blen) {
            b = (i == 0 && raw[0] == 0x05) ? 0xE5 : raw[i];
            lower = ntres & MV_NTRES_LOWER_BASE;
        } else if (i == blen) {
            b = '.';
            lower = 0;
        } else {
            b = raw[8 + i - blen - 1];
            lower = ntres & MV_NTRES_LOWER_EXT;
        }
        if (lower && b >= 'A' && b <= 'Z')
            b = (uint8_t)(b + 32);
        uint32_t cp = mv_cp850_cp(b);
        if (escape)
            n = mv_put_cp(out, n, cap, cp);
        else if (n + 4 < cap)
            n = mv_put_cp(out, n, cap, cp < 0x20 ? '?' : cp);
    }
    out[n] = 0;
}

/* fatgen103 7.2: the checksum of an 8.3 name that its long-name slots carry. */
static inline uint8_t mv_lfn_checksum(const uint8_t raw[11])
{
    uint8_t sum = 0;
    for (int i = 0; i < 11; i++)
        sum = (uint8_t)(((sum & 1) ? 0x80 : 0) + (sum >> 1) + raw[i]);
    return sum;
}

/* Decode one slot's 13 UTF-16LE units (surrogate pairs inside the slot; a lone surrogate is U+FFFD). */
static inline void mv_lfn_slot(struct mv_dir *d, int slot, const uint8_t *e)
{
    static const uint8_t pos[13] = { 1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30 };
    uint32_t n = 0;
    for (int i = 0; i < 13; i++) {
        uint32_t u = fat_le16(e + pos[i]);
        if (u >= 0xD800 && u < 0xDC00 && i + 1 < 13) {
            uint32_t u2 = fat_le16(e + pos[i + 1]);
            if (u2 >= 0xDC00 && u2 < 0xE000) {
                d->text[slot][n++] = 0x10000 + ((u - 0xD800) << 10) + (u2 - 0xDC00);
                i++;
                continue;
            }
        }
        if (u >= 0xD800 && u < 0xE000)
            u = 0xFFFD;
        d->text[slot][n++] = u;
    }
    d->textlen[slot] = (uint8_t)n;
}

/* The long name collected for this 8.3 entry, when complete and consistent (fat.py _assemble_lfn); 0 if not. */
static inline int mv_lfn_name(struct mv_dir *d, const uint8_t raw[11], char *out, uint32_t cap)
{
    int count = d->nslots > 0 ? d->ords[0] : 0;
    if (d->nslots <= 0 || count == 0 || count > MV_LFN_MAX_SLOTS || d->nslots != count)
        return 0;
    uint8_t sum = mv_lfn_checksum(raw);
    for (int i = 0; i < count; i++)
        if (d->ords[i] != count - i || d->sums[i] != sum)
            return 0;
    uint32_t n = 0;
    for (int i = count - 1; i >= 0; i--)
        for (int k = 0; k < d->textlen[i]; k++) {
            uint32_t cp = d->text[i][k];
            if (cp == 0)
                goto done;
            n = mv_put_cp(out, n, cap, cp);
        }
done:
    out[n] = 0;
    return n != 0;
}

/* The next entry of the directory: 1 (filled *e), 0 at the end, or a negative mv_fat_error. Skips deleted
 * entries, long-name slots (assembled into e->name), volume labels and the dot entries. */
static inline int mv_dir_next(struct mv_dir *d, struct mv_dirent *e)
{
    struct mv_fat *fs = d->fs;
    while (!d->ended) {
        if (d->off >= FAT_SECTOR) {
            if (d->left == 0) {
                if (d->fixed) {
                    d->ended = 1;
                    return 0;
                }
                if (d->steps) {
                    int32_t nx = mv_fat_step(fs, d->cluster);
                    if (nx <= 0) {
                        d->ended = 1;
                        return nx;
                    }
                    d->cluster = (uint32_t)nx;
                }
                if (!fat_valid_cluster(&fs->g, d->cluster) || d->steps > fs->g.clusters) {
                    d->ended = 1;
                    return MV_FAT_BAD_CHAIN;
                }
                d->steps++;
                d->lba = fat_cluster_lba(&fs->g, d->cluster);
                d->left = fs->g.spc;
            }
            if (fs->read(d->lba, 1, d->sec)) {
                d->ended = 1;
                return MV_FAT_IO;
            }
            d->lba++;
            d->left--;
            d->off = 0;
        }
        const uint8_t *r = d->sec + d->off;
        uint32_t off = d->off;
        d->off += 32;
        if (r[0] == 0x00) {                              /* fatgen103 6: this and all later entries are free */
            d->ended = 1;
            return 0;
        }
        uint8_t attr = r[11];
        if (r[0] == 0xE5) {
            d->nslots = 0;
            continue;
        }
        if ((attr & FAT_ATTR_LONG_NAME_MASK) == FAT_ATTR_LONG_NAME) {
            if (r[0] & MV_LAST_LONG_ENTRY) {
                d->nslots = 0;
                d->ords[0] = r[0] & 0x3F;
            } else if (d->nslots == 0) {
                continue;                                /* an orphaned slot: ignored */
            } else if (d->nslots < 0 || d->nslots >= MV_LFN_MAX_SLOTS) {
                d->nslots = -1;                          /* too many: the name will not be used */
                continue;
            } else {
                d->ords[d->nslots] = r[0];
            }
            d->sums[d->nslots] = r[13];
            mv_lfn_slot(d, d->nslots, r);
            d->nslots++;
            continue;
        }
        if (((attr & FAT_ATTR_VOLUME_ID) && !(attr & FAT_ATTR_DIRECTORY)) ||
            (r[0] == '.' && (memcmp(r + 1, "          ", 10) == 0 || (r[1] == '.' && memcmp(r + 2, "         ", 9) == 0)))) {
            d->nslots = 0;
            continue;
        }
        memcpy(e->raw, r, 11);
        e->attr = attr;
        e->ntres = r[12];
        e->wtime = fat_le16(r + 22);
        e->wdate = fat_le16(r + 24);
        e->size = fat_le32(r + 28);
        e->first_cluster = fat_le16(r + 26) | (fs->g.type == 32 ? (uint32_t)fat_le16(r + 20) << 16 : 0);
        e->lba = d->lba - 1;
        e->off = off;
        mv_short_text(r, r[12], e->short_name, sizeof e->short_name, 0);
        if (!mv_lfn_name(d, r, e->name, sizeof e->name)) {
            mv_short_text(r, r[12], e->name, sizeof e->name, 1);
            if (!e->name[0]) {
                static const char hex[] = "0123456789abcdef";
                e->name[0] = '\\';
                e->name[1] = 'x';
                e->name[2] = hex[r[0] >> 4];
                e->name[3] = hex[r[0] & 15];
                e->name[4] = 0;
            }
        }
        d->nslots = 0;
        if (attr & FAT_ATTR_DIRECTORY)
            e->size = 0;
        return 1;
    }
    return 0;
}

/* ASCII case-insensitive comparison of n bytes of a with the NUL-terminated b (a need not be terminated). */
static inline int mv_name_eq(const char *a, uint32_t n, const char *b)
{
    uint32_t i = 0;
    for (; i < n; i++) {
        char x = a[i], y = b[i];
        if (!y)
            return 0;
        if (x >= 'a' && x <= 'z')
            x = (char)(x - 32);
        if (y >= 'a' && y <= 'z')
            y = (char)(y - 32);
        if (x != y)
            return 0;
    }
    return b[n] == 0;
}

static struct mv_dir mv_lookup_dir;

/* Look up an absolute path; each component matches an entry's long name or 8.3 name, case-insensitively (like
 * fat.py FatVolume.find). "/" gives the root: a directory entry with first_cluster 0 and lba 0. */
static inline int mv_fat_lookup(struct mv_fat *fs, const char *path, struct mv_dirent *e)
{
    uint32_t dir = 0;
    const char *p = path;
    memset(e->raw, ' ', 11);
    e->attr = FAT_ATTR_DIRECTORY;
    e->wtime = e->wdate = 0;
    e->first_cluster = 0;
    e->size = 0;
    e->lba = e->off = 0;
    e->name[0] = e->short_name[0] = 0;
    for (;;) {
        while (*p == '/')
            p++;
        if (!*p)
            return MV_FAT_OK;
        const char *end = p;
        while (*end && *end != '/')
            end++;
        if (!(e->attr & FAT_ATTR_DIRECTORY))
            return MV_FAT_NOT_A_DIR;
        if (e->lba && e->first_cluster == 0)
            return MV_FAT_BAD_CHAIN;
        dir = e->first_cluster;
        mv_dir_open(fs, &mv_lookup_dir, dir);
        int rc;
        while ((rc = mv_dir_next(&mv_lookup_dir, e)) == 1) {
            uint32_t n = (uint32_t)(end - p);
            if (mv_name_eq(p, n, e->name) || mv_name_eq(p, n, e->short_name))
                break;
        }
        if (rc < 0)
            return rc;
        if (rc == 0)
            return MV_FAT_NOT_FOUND;
        p = end;
    }
}

/* Hash a file's content (its first `size` bytes) into *sha, reading only the sectors that hold it, in runs of
 * contiguous clusters of at most buf_sectors sectors; `copy` (unless 0) receives the content too (`size` bytes).
 * MV_FAT_BAD_CHAIN when the chain is broken or too short. */
static inline int mv_fat_hash_file(struct mv_fat *fs, uint32_t first, uint32_t size, struct mv_sha256 *sha,
                                   uint8_t *buf, uint32_t buf_sectors, uint8_t *copy)
{
    if (size == 0)
        return MV_FAT_OK;
    uint32_t need = size / FAT_SECTOR + (size % FAT_SECTOR ? 1 : 0);   /* sectors holding the content */
    uint32_t spc = fs->g.spc, c = first, s = 0, left = size;
    uint32_t run_lba = 0, run_len = 0, clusters = 0;
    while (s < need) {
        if (!fat_valid_cluster(&fs->g, c) || clusters > fs->g.clusters)
            return MV_FAT_BAD_CHAIN;
        clusters++;
        uint32_t lba = fat_cluster_lba(&fs->g, c);
        for (uint32_t k = 0; k < spc && s < need; k++, s++) {
            if (run_len && (lba + k != run_lba + run_len || run_len == buf_sectors)) {
                if (fs->read(run_lba, run_len, buf))
                    return MV_FAT_IO;
                uint32_t bytes = run_len * FAT_SECTOR < left ? run_len * FAT_SECTOR : left;
                mv_sha256_update(sha, buf, bytes);
                if (copy)
                    memcpy(copy + (size - left), buf, bytes);
                left -= bytes;
                run_len = 0;
            }
            if (!run_len)
                run_lba = lba + k;
            run_len++;
        }
        if (s < need) {
            int32_t nx = mv_fat_step(fs, c);
            if (nx < 0)
                return nx;
            if (nx == 0)
                return MV_FAT_BAD_CHAIN;                 /* the chain ends before the size says */
            c = (uint32_t)nx;
        }
    }
    if (run_len) {
        if (fs->read(run_lba, run_len, buf))
            return MV_FAT_IO;
        mv_sha256_update(sha, buf, left);
        if (copy)
            memcpy(copy + (size - left), buf, left);
    }
    return MV_FAT_OK;
}

static inline const char *mv_fat_strerror(int rc)
{
    switch (rc) {
    case MV_FAT_OK: return "ok";
    case MV_FAT_IO: return "disk i/o error";
    case MV_FAT_NO_VOLUME: return "no FAT volume";
    case MV_FAT_NOT_FOUND: return "not found";
    case MV_FAT_NOT_A_DIR: return "not a directory";
    case MV_FAT_BAD_CHAIN: return "bad cluster chain";
    default: return "?";
    }
}

#endif
