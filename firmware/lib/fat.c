/* FAT on-disk basics: see fat.h (fatgen103 3.1-3.5; UEFI 2.10 5.2.1). */
#include "fat.h"

static bool is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

bool fat_bpb_parse(const uint8_t *bs, struct fat_bpb *b)
{
    b->spc = bs[13];
    b->rsvd = fat_le16(bs + 14);
    b->nfats = bs[16];
    b->root_entries = fat_le16(bs + 17);
    b->fatsz16 = fat_le16(bs + 22);
    b->fatsz = b->fatsz16 ? b->fatsz16 : fat_le32(bs + 36);
    b->total = fat_le16(bs + 19) ? fat_le16(bs + 19) : fat_le32(bs + 32);
    b->root_sectors = (b->root_entries * 32 + FAT_SECTOR - 1) / FAT_SECTOR;
    b->meta = b->rsvd + b->nfats * b->fatsz + b->root_sectors;
    return (bs[0] == 0xEB || bs[0] == 0xE9) && fat_le16(bs + 11) == FAT_SECTOR && is_pow2(b->spc) &&
           b->rsvd >= 1 && b->nfats >= 1;
}

int fat_type_of(uint32_t clusters)
{
    return clusters < 4085 ? 12 : clusters < 65525 ? 16 : 32;
}

bool fat_geom_init(struct fat_geom *g, const struct fat_bpb *b, uint32_t part)
{
    if (b->total <= b->meta)
        return false;
    g->part_lba = part;
    g->fat_lba = part + b->rsvd;
    g->fat_sectors = b->fatsz;
    g->num_fats = b->nfats;
    g->root_lba = part + b->rsvd + b->nfats * b->fatsz;
    g->root_sectors = b->root_sectors;
    g->root_entries = b->root_entries;
    g->data_lba = g->root_lba + b->root_sectors;
    g->spc = b->spc;
    g->clusters = (b->total - b->meta) / b->spc;
    g->type = fat_type_of(g->clusters);
    return true;
}

bool fat_part_type_fat16(uint8_t type)
{
    switch (type) {
    case 0x04: case 0x06: case 0x0E: case 0x14: case 0x16: case 0x1E:
        return true;
    default:
        return false;
    }
}

bool fat_part_type_fat(uint8_t type)
{
    switch (type) {
    case 0x01: case 0x0B: case 0x0C: case 0x11: case 0x1B: case 0x1C:
        return true;
    default:
        return fat_part_type_fat16(type);
    }
}

int fat_mbr_find(const uint8_t *mbr, bool (*want)(uint8_t type), uint32_t starts[4])
{
    int n = 0;
    if (mbr[510] != 0x55 || mbr[511] != 0xAA)
        return 0;
    for (int i = 0; i < 4; i++) {
        const uint8_t *rec = mbr + 446 + 16 * i;
        uint32_t start = fat_le32(rec + 8);
        if ((rec[0] & 0x7F) == 0 && start && fat_le32(rec + 12) && want(rec[4]))
            starts[n++] = start;
    }
    return n;
}
