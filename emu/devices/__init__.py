"""PC platform devices: port bus, PIC, PIT, PCI/PIIX3, ATA, bus-master IDE, debug ports, NIC."""
