/* FAT on-disk basics shared by the FAT readers of the kernels (Microsoft fatgen103: BPB 3.1-3.3, FAT type by
 * cluster count 3.5, directory entry attributes 6; UEFI 2.10 5.2.1: the legacy MBR partition table):
 * little-endian fields, the BPB's geometry, the MBR's FAT partitions. No I/O: the callers read the sectors. */
#ifndef FW_FAT_H
#define FW_FAT_H
#include "types.h"

#define FAT_SECTOR 512
#define FAT_ATTR_READ_ONLY 0x01
#define FAT_ATTR_VOLUME_ID 0x08
#define FAT_ATTR_DIRECTORY 0x10
#define FAT_ATTR_LONG_NAME 0x0F
#define FAT_ATTR_LONG_NAME_MASK 0x3F

static inline uint16_t fat_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t fat_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline void fat_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void fat_put32(uint8_t *p, uint32_t v)
{
    fat_put16(p, (uint16_t)v);
    fat_put16(p + 2, (uint16_t)(v >> 16));
}

/* The geometry a boot sector's BPB gives (sector counts relative to the start of the volume). */
struct fat_bpb {
    uint32_t spc;              /* BPB_SecPerClus */
    uint32_t rsvd;             /* BPB_RsvdSecCnt */
    uint32_t nfats;            /* BPB_NumFATs */
    uint32_t root_entries;     /* BPB_RootEntCnt (0 on FAT32) */
    uint32_t fatsz16;          /* BPB_FATSz16 (0 on FAT32) */
    uint32_t fatsz;            /* BPB_FATSz16, else BPB_FATSz32 */
    uint32_t total;            /* BPB_TotSec16, else BPB_TotSec32 */
    uint32_t root_sectors;     /* sectors of the fixed root directory */
    uint32_t meta;             /* reserved + FATs + fixed root directory */
};

/* Read the BPB of boot sector bs into *b; true when its basic fields are plausible (fatgen103 3.1): a jump
 * instruction (0xEB or 0xE9), 512 bytes per sector, a power-of-two SecPerClus, at least one reserved sector and
 * at least one FAT. The caller checks what its reader needs beyond that (FAT sizes, counts). */
bool fat_bpb_parse(const uint8_t *bs, struct fat_bpb *b);
/* The FAT type, 12, 16 or 32, of a volume with `clusters` data clusters (fatgen103 3.5). */
int fat_type_of(uint32_t clusters);

/* A volume's layout in absolute sectors, from its BPB. */
struct fat_geom {
    uint32_t part_lba;         /* first sector of the volume (0 = the whole disk) */
    uint32_t fat_lba;          /* first FAT */
    uint32_t fat_sectors;      /* sectors per FAT */
    uint32_t num_fats;
    uint32_t root_lba, root_sectors, root_entries;   /* the fixed root directory (FAT12/16) */
    uint32_t data_lba;         /* cluster 2 */
    uint32_t spc;              /* sectors per cluster */
    uint32_t clusters;         /* data clusters: valid cluster numbers are 2 .. clusters + 1 */
    int type;                  /* 12, 16 or 32 (fatgen103 3.5) */
};

/* The layout of the volume at sector part whose BPB is b; false when the BPB leaves no data area. */
bool fat_geom_init(struct fat_geom *g, const struct fat_bpb *b, uint32_t part);
static inline uint32_t fat_cluster_lba(const struct fat_geom *g, uint32_t c) { return g->data_lba + (c - 2) * g->spc; }
static inline int fat_valid_cluster(const struct fat_geom *g, uint32_t c) { return c >= 2 && c < g->clusters + 2; }

/* True for an MBR partition type of a FAT16 volume (0x04, 0x06, 0x0E and their hidden forms 0x14, 0x16, 0x1E). */
bool fat_part_type_fat16(uint8_t type);
/* True for an MBR partition type of any FAT volume (FAT12 0x01, FAT16 as above, FAT32 0x0B/0x0C, hidden forms). */
bool fat_part_type_fat(uint8_t type);
/* The first sectors of the MBR's used partitions (boot indicator 0x00 or 0x80, start and size not 0) whose
 * type `want` accepts, in table order, into starts[0..3]; returns how many. 0 when mbr has no 0x55AA signature. */
int fat_mbr_find(const uint8_t *mbr, bool (*want)(uint8_t type), uint32_t starts[4]);

#endif
