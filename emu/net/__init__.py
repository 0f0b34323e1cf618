"""The virtual network between guests: a VLAN-aware learning switch and pcap capture."""
from emu.net.attach import attach_ne2000
from emu.net.pcap import PcapRecord, PcapWriter, read_pcap
from emu.net.switch import DropReason, ForwardResult, PortCounters, VirtualSwitch

__all__ = ["attach_ne2000", "DropReason", "ForwardResult", "PcapRecord", "PcapWriter", "PortCounters", "VirtualSwitch", "read_pcap"]
