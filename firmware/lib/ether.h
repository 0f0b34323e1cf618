/* The network test kernels' helpers. Ethernet frames of emu's peer protocol (emu/net/peer.py): EtherType 0x88B5
 * (IEEE 802 local experimental 1), then a 4-byte tag ("PING", "PONG", "STAT", "HELO"), a sequence byte and a flags byte; the payload starts at
 * byte PEER_HDR_LEN. Also the usual aa:bb:cc:dd:ee:ff printing of a MAC address, and the kernels' common start
 * (NE2000 at 0x300 / IRQ 9 as QEMU's ne2k_isa puts it, a 100 Hz tick). */
#ifndef FW_ETHER_H
#define FW_ETHER_H
#include "types.h"

#define PEER_ETHERTYPE 0x88B5
#define PEER_HDR_LEN 20             /* destination, source, type, tag, seq, flags */
#define ETH_MIN_FRAME 60            /* IEEE 802.3 minimum frame without FCS */

/* Write the peer header into f: dst, src, PEER_ETHERTYPE, tag (4 bytes), seq, flags. */
void peer_header(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], const char tag[4], uint8_t seq,
                 uint8_t flags);
/* True when the len-byte frame f is a peer frame (at least PEER_HDR_LEN bytes) with this tag. */
bool peer_is(const uint8_t *f, int len, const char tag[4]);
/* Print a MAC address as six colon-separated lower-case hex bytes. */
void print_mac(const uint8_t m[6]);

struct ne2k;
/* The network test kernels' start: without a card at io print "no NE2000 at <io>" and exit(0); else start the PIT
 * tick (tick_start(divisor)), attach the NIC's interrupt handler and unmask irq (none when irq < 0), then
 * ne2k_init in word mode with rcr and imr ("init failed" and exit(1) if that fails). */
void net_start(struct ne2k *n, uint16_t io, int irq, uint8_t rcr, uint8_t imr, uint32_t divisor);

#endif
