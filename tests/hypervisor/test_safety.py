"""Issue 6 (c): a validation never runs at an unsafe point.

The test does not ask the trap handler's own ``safety()``: at every block-330 decision (each trap the policy let
through) it reads the application guest's raw state itself and checks the decision against it —

* the write-in-progress word in guest RAM, at the address of the kernel's ``write_in_progress`` symbol (ELF);
* the bus-master status register (PIIX BMISTA, read through the guest's port bus at the BAR4 its PCI
  configuration space holds): Active without Interrupt is a transfer not finished (notes/hardware-reference.md,
  "DMA not active for a safe trap");
* the ATA alternate status register (0x3F6, read through the port bus: no side effect): BSY or DRQ;
* EFLAGS.IF, and an STI / MOV SS / POP SS shadow: the guest stopped right after one of those instructions
  (their addresses found by disassembling the kernel with capstone).

Safe ⇔ none of these holds; an unsafe decision names one that does.  Several seeds, jitters and counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from capstone import CS_ARCH_X86, CS_MODE_32, Cs
from elftools.elf.elffile import ELFFile

from emu.hypervisor.host import Host
from emu.hypervisor.scenario import load
from tests.hypervisor.test_host import scenario_text as host_scenario

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware" / "build"
APP_ELF = FW / "demo_app.elf"

PCI_BAR4 = 0x20                 # PIIX3 IDE function, BMIBA (82371SB datasheet 2.3.9)
BMISTA = 2                      # bus master IDE status, primary channel (82371SB 2.7.2)
BMISTA_ACTIVE, BMISTA_INTERRUPT = 0x01, 0x04
ATA_ALT_STATUS = 0x3F6          # ATA-6 7.3 (alternate status: reading it does not clear the interrupt)
ATA_BSY, ATA_DRQ = 0x80, 0x08
EFLAGS_IF = 0x200               # SDM vol. 1, 3.4.3


@dataclass(frozen=True)
class RawState:
    """Facts about the demo application kernel the test finds itself, to read the guest's raw state."""

    wip_addr: int
    shadow_sites: frozenset[int]      # the address after each STI, MOV SS or POP SS

    @classmethod
    def of(cls, elf_path: Path) -> "RawState":
        with open(elf_path, "rb") as f:
            elf = ELFFile(f)
            (sym,) = elf.get_section_by_name(".symtab").get_symbol_by_name("write_in_progress")
            text = elf.get_section_by_name(".text")
            code, base = text.data(), text["sh_addr"]
        md = Cs(CS_ARCH_X86, CS_MODE_32)
        md.skipdata = True
        sites = set()
        for insn in md.disasm(code, base):
            dest = insn.op_str.split(",")[0].strip()
            if insn.mnemonic == "sti" or (insn.mnemonic in ("mov", "pop") and dest == "ss"):
                sites.add(insn.address + insn.size)
        return cls(sym["st_value"], frozenset(sites))

    def unsafe(self, machine) -> set[str]:
        """Every reason the guest is at an unsafe point now, from its RAM, ports and registers."""
        reasons = set()
        if int.from_bytes(machine.cpu.ram[self.wip_addr:self.wip_addr + 4], "little"):
            reasons.add("write_in_progress")
        bar4 = machine.platform.functions.ide.config_read(PCI_BAR4, 4) & 0xFFFC
        bmista = machine.bus.read(bar4 + BMISTA, 1)
        if bmista & BMISTA_ACTIVE and not bmista & BMISTA_INTERRUPT:
            reasons.add("dma_active")
        if machine.bus.read(ATA_ALT_STATUS, 1) & (ATA_BSY | ATA_DRQ):
            reasons.add("ata_busy")
        if not machine.cpu.reg("eflags") & EFLAGS_IF:
            reasons.add("if_masked")
        if machine.cpu.reg("eip") in self.shadow_sites:
            reasons.add("interrupt_shadow")
        return reasons


RAW = RawState.of(APP_ELF)


def scenario_text(seed: int, jitter: int, count: int) -> str:
    return host_scenario(f'kind = "counter"\ncount = {count}', jitter=jitter, seed=seed, quantum=2000,
                         app="hz=1000 ticks=80 log=10 save=30 check=20 tamper=0",
                         mgmt="hz=1000 iterations=80 heartbeat=40")


def checked_run(tmp_path: Path, seed: int, jitter: int, count: int) -> dict[str, int]:
    """Run; check every 330 decision against the raw state; return how often each raw reason was seen."""
    path = tmp_path / f"s{seed}.toml"
    path.write_text(scenario_text(seed, jitter, count))
    seen: dict[str, int] = {"safe": 0}
    host: Host

    def on_event(e: dict) -> None:
        if e.get("block") != 330:
            return
        raw = RAW.unsafe(host.machines[e["guest"]])
        where = f"seed {seed}: {e}, raw {sorted(raw)}"
        if e["safe"]:
            assert not raw, "validated at an unsafe point: " + where
            seen["safe"] += 1
        else:
            assert e["reason"] in raw, "deferred for a reason the guest's state does not show: " + where
        for r in raw:
            seen[r] = seen.get(r, 0) + 1

    host = Host(load(path), on_event=on_event)
    summary = host.run()
    host.close()
    decisions = [e for e in host.events if e.get("block") == 330]
    assert len(decisions) == len([e for e in host.events if e.get("block") == 310]) > 20
    assert summary["validations"] == seen["safe"] > 0
    assert summary["guests"]["app"]["status"] == 1
    return seen


def test_raw_state_oracle_finds_the_kernel_facts():
    assert RAW.shadow_sites and RAW.wip_addr
    # the idle loop's "sti; hlt": the HLT is inside the STI shadow
    assert any(s in RAW.shadow_sites for s in range(0x100000, 0x110000))


@pytest.mark.parametrize("seed, jitter, count", [(1, 3000, 3), (2, 7000, 5), (5, 1000, 7), (11, 9000, 4)])
def test_no_validation_at_an_unsafe_point(tmp_path, seed, jitter, count):
    seen = checked_run(tmp_path, seed, jitter, count)
    # the run really met unsafe points (else it proves nothing)
    assert seen.get("if_masked", 0) > 0 and seen.get("write_in_progress", 0) + seen.get("dma_active", 0) > 0, seen
