/* demo_net.h: the demo guests' status frames over the NE2000 (issue 7), shared by demo_app and demo_mgmt.
 *
 * The card is probed where QEMU's ne2k_isa and emu's host put it (I/O base 0x300); with no card the port reads
 * all-ones (an empty ISA slot) and the guests leave the network alone. Neither guest uses the NIC's interrupt
 * (IMR = 0): the application guest transmits and waits for ISR.PTX, the management guest polls CURR against
 * its own ring pointer. The demo guests' interrupt handlers (PIT tick, IDE completion) touch no NIC register, so
 * the driver calls (firmware/lib/ne2000.c) may run with interrupts enabled. The frame header is lib/ether.c's.
 *
 * A status frame (the EtherType and layout of net_app's, emu/net/peer.py): broadcast, EtherType 0x88B5
 * (IEEE 802 local experimental 1), payload "STAT", seq & 0xFF, 0, then NUL-terminated text whose first word
 * names the sender: "app seq=N tick=T log=L ok" (or "tampered" once the application guest tampered with its
 * configuration); zero-padded to the 60-byte minimum frame.
 */
#ifndef DEMO_NET_H
#define DEMO_NET_H
#include "fw.h"
#include "ne2000.h"
#include "ether.h"

#define DEMO_NE_IO 0x300            /* QEMU ne2k_isa default I/O base (IRQ 9, unused here) */
#define DEMO_FRAME_MAX 128

/* Probe and start the card at DEMO_NE_IO: word transfers, RCR = rcr, no interrupts. Returns 0, or -1 when no
 * card answers (nothing else is touched then: one IN from port 0x300). */
static inline int demo_net_init(struct ne2k *n, uint8_t rcr)
{
    if (!ne2k_present(DEMO_NE_IO))
        return -1;
    return ne2k_init(n, DEMO_NE_IO, true, rcr, 0);
}

/* Build a status frame from src with the given text into f (DEMO_FRAME_MAX bytes); returns its length. */
static inline uint16_t demo_status_frame(uint8_t *f, const uint8_t src[6], uint32_t seq, const char *text)
{
    size_t tlen = strlen(text);
    if (tlen > DEMO_FRAME_MAX - PEER_HDR_LEN - 1)
        tlen = DEMO_FRAME_MAX - PEER_HDR_LEN - 1;
    static const uint8_t broadcast[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
    memset(f, 0, DEMO_FRAME_MAX);
    peer_header(f, broadcast, src, "STAT", (uint8_t)seq, 0);
    memcpy(f + PEER_HDR_LEN, text, tlen);
    uint16_t len = (uint16_t)(PEER_HDR_LEN + tlen + 1);
    return len < ETH_MIN_FRAME ? ETH_MIN_FRAME : len;
}

#endif
