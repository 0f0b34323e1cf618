/* 8254 PIT ports (Intel 8254 datasheet: counters 0-2 and the control word register) and the PC's port 0x61
 * (system control port B: bit 0 gate 2, bit 1 speaker data, bit 5 OUT2 read back). Names only: no code. */
#ifndef FW_PIT_H
#define FW_PIT_H

#define PIT_CH0 0x40
#define PIT_CH1 0x41
#define PIT_CH2 0x42
#define PIT_CTRL 0x43
#define PORT61 0x61

#endif
