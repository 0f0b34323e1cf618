/* mv_sha256.h: SHA-256 (FIPS 180-4, 6.2), streaming, header-only, for the management validator (mgmt_validator.c).
 * 32-bit arithmetic only (the kernels link no libgcc): the message length is kept as a 64-bit count in two words. */
#ifndef MV_SHA256_H
#define MV_SHA256_H
#include "fw.h"

struct mv_sha256 {
    uint32_t h[8];
    uint32_t len_lo, len_hi;     /* bytes hashed so far */
    uint32_t fill;               /* bytes waiting in block */
    uint8_t block[64];
};

/* FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t mv_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t mv_ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

/* FIPS 180-4 5.3.3: the initial hash value. */
static inline void mv_sha256_init(struct mv_sha256 *s)
{
    static const uint32_t h0[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->h, h0, sizeof h0);
    s->len_lo = s->len_hi = 0;
    s->fill = 0;
}

/* FIPS 180-4 6.2.2: one 512-bit block. Kept as plain loops: emu stops a run exactly inside a translated block
 * only when the block's first 256 bytes hold the stop point, so every straight-line stretch stays well below that. */
static inline void mv_sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = mv_ror(w[t - 15], 7) ^ mv_ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = mv_ror(w[t - 2], 17) ^ mv_ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = hh + (mv_ror(e, 6) ^ mv_ror(e, 11) ^ mv_ror(e, 25)) + (g ^ (e & (f ^ g))) + mv_sha256_k[t] + w[t];
        uint32_t t2 = (mv_ror(a, 2) ^ mv_ror(a, 13) ^ mv_ror(a, 22)) + ((a & b) | (c & (a | b)));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static inline void mv_sha256_update(struct mv_sha256 *s, const uint8_t *p, uint32_t n)
{
    uint32_t lo = s->len_lo + n;
    if (lo < s->len_lo)
        s->len_hi++;
    s->len_lo = lo;
    if (s->fill) {
        uint32_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill < 64)
            return;
        mv_sha256_block(s->h, s->block);
        s->fill = 0;
    }
    for (; n >= 64; n -= 64, p += 64)
        mv_sha256_block(s->h, p);
    memcpy(s->block, p, n);
    s->fill = n;
}

/* FIPS 180-4 5.1.1 padding (0x80, zeros, the 64-bit big-endian bit length), then the digest, big-endian. */
static inline void mv_sha256_final(struct mv_sha256 *s, uint8_t out[32])
{
    uint32_t bits_hi = (s->len_hi << 3) | (s->len_lo >> 29), bits_lo = s->len_lo << 3;
    uint8_t pad = 0x80;
    uint32_t lo = s->len_lo, hi = s->len_hi;
    mv_sha256_update(s, &pad, 1);
    pad = 0;
    while (s->fill != 56)
        mv_sha256_update(s, &pad, 1);
    uint8_t len[8];
    for (int i = 0; i < 4; i++) {
        len[i] = (uint8_t)(bits_hi >> (24 - 8 * i));
        len[4 + i] = (uint8_t)(bits_lo >> (24 - 8 * i));
    }
    mv_sha256_update(s, len, 8);
    s->len_lo = lo;
    s->len_hi = hi;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

#endif
