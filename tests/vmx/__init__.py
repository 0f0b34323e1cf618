"""Tests of the VMX data layer (emu/vmx)."""
