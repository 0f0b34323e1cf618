/* PCI configuration space access through mechanism #1 (sub-dword accesses use data port 0xCFC + (reg & 3)). */
#include "fw.h"

uint32_t pci_read32(int bus, int dev, int fn, int reg)
{
    outl(PCI_CONFIG_ADDRESS, PCI_ADDR(bus, dev, fn, reg));
    return inl(PCI_CONFIG_DATA);
}

uint16_t pci_read16(int bus, int dev, int fn, int reg)
{
    outl(PCI_CONFIG_ADDRESS, PCI_ADDR(bus, dev, fn, reg));
    return inw((uint16_t)(PCI_CONFIG_DATA + (reg & 2)));
}

uint8_t pci_read8(int bus, int dev, int fn, int reg)
{
    outl(PCI_CONFIG_ADDRESS, PCI_ADDR(bus, dev, fn, reg));
    return inb((uint16_t)(PCI_CONFIG_DATA + (reg & 3)));
}

void pci_write32(int bus, int dev, int fn, int reg, uint32_t v)
{
    outl(PCI_CONFIG_ADDRESS, PCI_ADDR(bus, dev, fn, reg));
    outl(PCI_CONFIG_DATA, v);
}

void pci_write16(int bus, int dev, int fn, int reg, uint16_t v)
{
    outl(PCI_CONFIG_ADDRESS, PCI_ADDR(bus, dev, fn, reg));
    outw((uint16_t)(PCI_CONFIG_DATA + (reg & 2)), v);
}

void pci_write8(int bus, int dev, int fn, int reg, uint8_t v)
{
    outl(PCI_CONFIG_ADDRESS, PCI_ADDR(bus, dev, fn, reg));
    outb((uint16_t)(PCI_CONFIG_DATA + (reg & 3)), v);
}
