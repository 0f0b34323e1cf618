"""PCI configuration space and configuration mechanism #1 (ports 0xCF8 / 0xCFC-0xCFF), bus 0 only.

Facts (PCI Local Bus Specification 2.1 section 3.2.2.3.2 "configuration mechanism #1";
QEMU 7.2 ``hw/pci/pci.c``, ``hw/pci/pci_host.c`` read, not copied; and what a
multiboot kernel observes under ``qemu-system-i386`` 7.2, recorded with
``tests/devices/qemu_ide_probe.c``):

* 0xCF8 CONFIG_ADDRESS: bit 31 enable, bits 23:16 bus, 15:11 device, 10:8
  function, 7:0 register.  Only a 32-bit OUT to 0xCF8 changes it; an IN of any
  width at 0xCF8..0xCFB returns the register truncated to that width (QEMU),
  except a byte IN/OUT of 0xCF9, which is the PIIX3 reset control register.
* 0xCFC+k CONFIG_DATA: the register offset is ``(CONFIG_ADDRESS | k) & 0xFF``
  (the low address bits are kept, as QEMU does).  With bit 31 clear, on a bus
  other than 0, or for a device/function that does not exist, reads return
  all-ones and writes are dropped.  An access running past offset 0xFF is cut.
* Write masks as QEMU's defaults (``pci_init_wmask``): command 0x0507 (I/O,
  memory, bus master, SERR, INTx disable), cache line size 0x0C, interrupt
  line 0x3C, every byte of 0x40..0xFF; BARs ``~(size-1)``; the status
  register's error bits 0xF900 are write-1-to-clear; everything else read-only.
* An I/O BAR decodes only with command bit 0 set, a non-zero base and no wrap
  (QEMU ``pci_bar_address``); a base above 0xFFFF is unreachable by IN/OUT.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from emu import EmuError
from emu.devices.base import Device

CONFIG_ADDRESS = 0xCF8
"""Configuration mechanism #1 address register port."""
CONFIG_DATA = 0xCFC
"""First of the four configuration data ports."""
RESET_CONTROL = 0xCF9
"""PIIX3 reset control register (byte port inside the CONFIG_ADDRESS dword)."""
CONFIG_SPACE_SIZE = 256
"""Bytes of configuration space per function (conventional PCI)."""

# Header offsets (PCI 2.1 figure 6-1).
PCI_VENDOR_ID = 0x00
PCI_DEVICE_ID = 0x02
PCI_COMMAND = 0x04
PCI_STATUS = 0x06
PCI_REVISION_ID = 0x08
PCI_CLASS_PROG = 0x09
PCI_CLASS_DEVICE = 0x0A
PCI_CACHE_LINE_SIZE = 0x0C
PCI_HEADER_TYPE = 0x0E
PCI_BASE_ADDRESS_0 = 0x10
PCI_INTERRUPT_LINE = 0x3C
PCI_CONFIG_HEADER_SIZE = 0x40

# Command register bits (PCI 2.1 6.2.2).
PCI_COMMAND_IO = 0x0001
PCI_COMMAND_MEMORY = 0x0002
PCI_COMMAND_MASTER = 0x0004
PCI_COMMAND_SERR = 0x0100
PCI_COMMAND_INTX_DISABLE = 0x0400
COMMAND_WMASK = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE
"""Writable command bits (QEMU ``pci_init_wmask``): 0x0507, as read back under QEMU 7.2."""
STATUS_W1C = 0xF900
"""Status bits cleared by writing 1 (parity, target/master abort, SERR, detected parity)."""

PCI_BASE_ADDRESS_SPACE_IO = 0x01
"""BAR bit 0: the BAR maps I/O space."""

ALL_ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


def devfn(device: int, function: int) -> int:
    """Device/function number as bits 15:8 of CONFIG_ADDRESS encode it (device << 3 | function)."""
    return (device << 3) | function


@dataclass(frozen=True)
class BarSpec:
    """One base address register: ``size`` bytes (a power of two), I/O or memory space."""

    index: int
    size: int
    io: bool = True


@dataclass
class PciFunctionState:
    """The 256 configuration bytes of one function (everything else derives from them)."""

    config: bytearray = field(default_factory=lambda: bytearray(CONFIG_SPACE_SIZE))


BarListener = Callable[[int, Optional[int], Optional[int]], None]
"""``listener(bar_index, old_base, new_base)``; a base of None means "not decoded"."""


class PciFunction(Device):
    """One PCI function: configuration bytes, QEMU's default write masks, BAR sizing and decode."""

    def __init__(self, name: str, config: bytes, bars: tuple[BarSpec, ...] = ()):
        if len(config) != CONFIG_SPACE_SIZE:
            raise EmuError(f"{name}: configuration image must be {CONFIG_SPACE_SIZE} bytes, got {len(config)}")
        self.name = name
        self.state = PciFunctionState(bytearray(config))
        self.bars = {b.index: b for b in bars}
        self.bar_listeners: list[BarListener] = []
        self.wmask = bytearray(CONFIG_SPACE_SIZE)
        self.w1cmask = bytearray(CONFIG_SPACE_SIZE)
        self.wmask[PCI_COMMAND] = COMMAND_WMASK & 0xFF
        self.wmask[PCI_COMMAND + 1] = COMMAND_WMASK >> 8
        self.wmask[PCI_CACHE_LINE_SIZE] = 0xFF
        self.wmask[PCI_INTERRUPT_LINE] = 0xFF
        self.wmask[PCI_CONFIG_HEADER_SIZE:] = b"\xff" * (CONFIG_SPACE_SIZE - PCI_CONFIG_HEADER_SIZE)
        self.w1cmask[PCI_STATUS] = STATUS_W1C & 0xFF
        self.w1cmask[PCI_STATUS + 1] = STATUS_W1C >> 8
        for bar in bars:
            if bar.size & (bar.size - 1) or bar.size < 4:
                raise EmuError(f"{name}: BAR{bar.index} size {bar.size} is not a power of two >= 4")
            mask = ~(bar.size - 1) & 0xFFFFFFFF
            # type bits (bit 0 for I/O, bits 3:0 for memory) stay read-only
            mask &= 0xFFFFFFFC if bar.io else 0xFFFFFFF0
            off = PCI_BASE_ADDRESS_0 + 4 * bar.index
            self.wmask[off:off + 4] = mask.to_bytes(4, "little")
        self._decoded = {i: self.bar_base(i) for i in self.bars}

    # --- register access -------------------------------------------------
    def config_read(self, offset: int, size: int) -> int:
        """Read ``size`` bytes at ``offset`` (little-endian); the access is cut at the end of the space."""
        end = min(offset + size, CONFIG_SPACE_SIZE)
        return int.from_bytes(self.state.config[offset:end], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        """Write ``size`` bytes at ``offset`` through the write / write-1-to-clear masks."""
        cfg = self.state.config
        end = min(offset + size, CONFIG_SPACE_SIZE)
        for i, addr in enumerate(range(offset, end)):
            byte = (value >> (8 * i)) & 0xFF
            wm = self.wmask[addr]
            w1c = self.w1cmask[addr]
            cfg[addr] = ((cfg[addr] & ~wm) | (byte & wm)) & ~(byte & w1c) & 0xFF
        if self.bars and (offset < PCI_COMMAND + 2 and end > PCI_COMMAND or
                          offset < PCI_BASE_ADDRESS_0 + 24 and end > PCI_BASE_ADDRESS_0):
            self._update_mappings()

    # --- decoded fields ----------------------------------------------------
    @property
    def command(self) -> int:
        """The command register (PCI 2.1 6.2.2)."""
        return self.config_read(PCI_COMMAND, 2)

    @property
    def bus_master_enabled(self) -> bool:
        """Command bit 2: the function may master the bus (DMA)."""
        return bool(self.command & PCI_COMMAND_MASTER)

    def bar_base(self, index: int) -> Optional[int]:
        """Decoded base of BAR ``index``, or None when not decoded (QEMU ``pci_bar_address``, I/O BARs)."""
        bar = self.bars[index]
        raw = self.config_read(PCI_BASE_ADDRESS_0 + 4 * index, 4)
        if bar.io:
            if not self.command & PCI_COMMAND_IO:
                return None
            base = raw & ~(bar.size - 1) & 0xFFFFFFFF
            last = base + bar.size - 1
            if base == 0 or last <= base or last >= 0xFFFFFFFF or last > 0xFFFF:
                return None
            return base
        if not self.command & PCI_COMMAND_MEMORY:
            return None
        base = raw & ~(bar.size - 1) & 0xFFFFFFF0
        last = base + bar.size - 1
        if base == 0 or last <= base or last >= 0xFFFFFFFF:
            return None
        return base

    def info(self) -> str:
        """The type-0 header decoded (PCI Local Bus Spec. 3.0 §6.2): IDs, command/status, class, BARs, IRQ."""
        r = self.config_read
        lines = [f"{self.name}:",
                 f"  vendor:device      {r(PCI_VENDOR_ID, 2):04x}:{r(PCI_DEVICE_ID, 2):04x} rev {r(PCI_REVISION_ID, 1):02x}",
                 f"  class              {r(PCI_CLASS_DEVICE, 2):04x} prog-if {r(PCI_CLASS_PROG, 1):02x}, "
                 f"header type {r(PCI_HEADER_TYPE, 1):02x}",
                 f"  command            {self.command:04x} (io {int(bool(self.command & PCI_COMMAND_IO))}, "
                 f"memory {int(bool(self.command & PCI_COMMAND_MEMORY))}, "
                 f"bus master {int(self.bus_master_enabled)}), status {r(PCI_STATUS, 2):04x}",
                 f"  interrupt line     {r(PCI_INTERRUPT_LINE, 1)}"]
        for index, bar in sorted(self.bars.items()):
            base = self.bar_base(index)
            where = "not decoded" if base is None else f"decoded at {base:#x}"
            lines.append(f"  BAR{index}               {r(PCI_BASE_ADDRESS_0 + 4 * index, 4):08x} "
                         f"({'I/O' if bar.io else 'memory'}, {bar.size} bytes, {where})")
        return "\n".join(lines)

    def _update_mappings(self) -> None:
        for index in self.bars:
            new = self.bar_base(index)
            old = self._decoded[index]
            if new != old:
                self._decoded[index] = new
                for listener in self.bar_listeners:
                    listener(index, old, new)


@dataclass
class PciHostState:
    """Configuration mechanism #1 registers (and the PIIX3 reset control register at 0xCF9)."""

    config_address: int = 0
    reset_control: int = 0


class PciHost(Device):
    """Configuration mechanism #1 over bus 0: ports 0xCF8-0xCFF dispatched to the registered functions."""

    name = "pci"

    def __init__(self, on_reset_request: Optional[Callable[[int], None]] = None):
        self.state = PciHostState()
        self.functions: dict[int, PciFunction] = {}
        self.on_reset_request = on_reset_request

    def add(self, device: int, function: int, fn: PciFunction) -> None:
        """Put ``fn`` at 00:device.function."""
        key = devfn(device, function)
        if key in self.functions:
            raise EmuError(f"pci: 00:{device:02x}.{function} is taken by {self.functions[key].name}")
        self.functions[key] = fn

    def port_ranges(self) -> list[tuple[int, int]]:
        """(first port, count) claimed: 0xCF8..0xCFF."""
        return [(CONFIG_ADDRESS, 8)]

    def map(self, bus) -> None:
        """Claim the ports on an :class:`emu.devices.bus.PortBus`."""
        for base, count in self.port_ranges():
            bus.map(base, count, self.io_read, self.io_write, self.name)

    def _target(self, port: int) -> tuple[Optional[PciFunction], int]:
        reg = self.state.config_address
        if not reg & 0x80000000 or (reg >> 16) & 0xFF != 0:
            return None, 0
        return self.functions.get((reg >> 8) & 0xFF), (reg | (port - CONFIG_DATA)) & 0xFF

    def io_read(self, port: int, size: int) -> int:
        """IN from 0xCF8..0xCFF."""
        if port < CONFIG_DATA:
            if port == RESET_CONTROL and size == 1:
                return self.state.reset_control
            return self.state.config_address & ALL_ONES[size]
        fn, offset = self._target(port)
        if fn is None:
            return ALL_ONES[size]
        return fn.config_read(offset, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        """OUT to 0xCF8..0xCFF."""
        if port < CONFIG_DATA:
            if port == RESET_CONTROL and size == 1:
                # PIIX3 RCR: bit 1 = system reset type, bit 2 = reset CPU (QEMU rcr_write keeps bit 1 only).
                if value & 0x04 and self.on_reset_request is not None:
                    self.on_reset_request(value)
                self.state.reset_control = value & 0x02
            elif port == CONFIG_ADDRESS and size == 4:
                self.state.config_address = value & 0xFFFFFFFF
            return
        fn, offset = self._target(port)
        if fn is not None:
            fn.config_write(offset, size, value)

    # --- host-side helpers (tests, debugger) --------------------------------
    def read_config(self, device: int, function: int, offset: int, size: int = 4) -> int:
        """Read a function's configuration space without touching CONFIG_ADDRESS (all-ones if absent)."""
        fn = self.functions.get(devfn(device, function))
        return ALL_ONES[size] if fn is None else fn.config_read(offset, size)
