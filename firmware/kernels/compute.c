/* compute: a compute-bound kernel for benchmarks and instruction-count tests (no device, no interrupt).
 * A byte sieve of Eratosthenes over 4 MiB of RAM at 4 MiB, then a multiplicative hash over the sieve and an
 * xorshift32 pseudo-random walk that updates it. Every printed value is a pure function of the code (32-bit
 * arithmetic only, no division), so QEMU and emu must print the same lines. About 10^8 instructions. */
#include "fw.h"

#define SIEVE_BASE 0x00400000u            /* physical, above the kernel image; needs mem_upper >= 7 MiB */
#define SIEVE_N (4u << 20)                 /* numbers 0 .. SIEVE_N - 1 */
#define WALK_STEPS (1u << 21)

static uint32_t rotl(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

void kmain(struct multiboot_info *mbi)
{
    uint8_t *s = (uint8_t *)SIEVE_BASE;
    uint32_t *w = (uint32_t *)SIEVE_BASE;

    printf("compute: sieve below %u at %08x\n", SIEVE_N, SIEVE_BASE);
    if (!(mbi->flags & MBI_FLAG_MEM) || (mbi->mem_upper + 1024) * 1024u < SIEVE_BASE + SIEVE_N)
        panic("not enough memory for the sieve");

    for (uint32_t i = 0; i < SIEVE_N; i++)
        s[i] = 1;
    s[0] = s[1] = 0;
    for (uint32_t i = 2; i * i < SIEVE_N; i++)
        if (s[i])
            for (uint32_t j = i * i; j < SIEVE_N; j += i)
                s[j] = 0;

    uint32_t count = 0, largest = 0, sum = 0;
    for (uint32_t i = 0; i < SIEVE_N; i++)
        if (s[i]) {
            count++;
            largest = i;
            sum += i;
        }
    printf("primes=%u largest=%u sum_mod_2^32=%08x\n", count, largest, sum);

    uint32_t h = 0x811C9DC5u;
    for (uint32_t i = 0; i < SIEVE_N / 4; i++)
        h = rotl(h ^ w[i], 5) * 0x9E3779B1u;
    printf("sieve hash=%08x\n", h);

    uint32_t x = 2463534242u, acc = 0;
    for (uint32_t k = 0; k < WALK_STEPS; k++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        uint32_t idx = x & (SIEVE_N / 4 - 1);
        w[idx] += x;
        acc = rotl(acc, 3) ^ w[idx ^ 1];
    }
    printf("walk x=%08x acc=%08x\n", x, acc);

    h = 0x811C9DC5u;
    for (uint32_t i = 0; i < SIEVE_N / 4; i++)
        h = rotl(h ^ w[i], 7) * 0x01000193u;
    printf("final hash=%08x\n", h);
    printf("compute done\n");
    exit(0);
}
