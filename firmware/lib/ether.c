/* Peer-protocol frame headers and MAC printing: see ether.h (emu/net/peer.py). */
#include "ether.h"
#include "console.h"
#include "ne2000.h"
#include "pic.h"
#include "string.h"
#include "util.h"

void peer_header(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], const char tag[4], uint8_t seq,
                 uint8_t flags)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = PEER_ETHERTYPE >> 8;
    f[13] = PEER_ETHERTYPE & 0xFF;
    memcpy(f + 14, tag, 4);
    f[18] = seq;
    f[19] = flags;
}

bool peer_is(const uint8_t *f, int len, const char tag[4])
{
    return len >= PEER_HDR_LEN && f[12] == (PEER_ETHERTYPE >> 8) && f[13] == (PEER_ETHERTYPE & 0xFF) &&
           memcmp(f + 14, tag, 4) == 0;
}

void print_mac(const uint8_t m[6])
{
    printf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

void net_start(struct ne2k *n, uint16_t io, int irq, uint8_t rcr, uint8_t imr, uint32_t divisor)
{
    if (!ne2k_present(io)) {
        printf("no NE2000 at %x\n", io);
        exit(0);
    }
    tick_start(divisor);
    if (irq >= 0) {
        ne2k_irq_attach(n, irq);
        pic_unmask(irq);
    }
    if (ne2k_init(n, io, true, rcr, imr) != 0) {
        printf("init failed\n");
        exit(1);
    }
}
