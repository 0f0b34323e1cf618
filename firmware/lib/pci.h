/* PCI configuration mechanism #1 (PCI Local Bus Specification 3.0, 3.2.2.3.2): address 0xCF8, data 0xCFC-0xCFF. */
#ifndef FW_PCI_H
#define FW_PCI_H
#include "types.h"

#define PCI_CONFIG_ADDRESS 0xCF8
#define PCI_CONFIG_DATA 0xCFC
#define PCI_ADDR(bus, dev, fn, reg) \
    (0x80000000u | ((uint32_t)(bus) << 16) | ((uint32_t)(dev) << 11) | ((uint32_t)(fn) << 8) | ((uint32_t)(reg) & 0xFC))

/* Configuration header registers (type 0) and Command register bits (PCI 3.0, 6.1 and 6.2.2). */
#define PCI_REG_ID 0x00                 /* vendor ID (15:0), device ID (31:16) */
#define PCI_REG_COMMAND 0x04
#define PCI_REG_BAR4 0x20
#define PCI_CMD_IO 0x0001
#define PCI_CMD_BUS_MASTER 0x0004

uint32_t pci_read32(int bus, int dev, int fn, int reg);
uint16_t pci_read16(int bus, int dev, int fn, int reg);
uint8_t pci_read8(int bus, int dev, int fn, int reg);
void pci_write32(int bus, int dev, int fn, int reg, uint32_t v);
void pci_write16(int bus, int dev, int fn, int reg, uint16_t v);
void pci_write8(int bus, int dev, int fn, int reg, uint8_t v);

#endif
