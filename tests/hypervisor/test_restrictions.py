"""Block 420 restrictions on real firmware guests of a scenario (issue 6): denied ports through the VMX I/O bitmaps
(IN reads all-ones, OUT dropped), revoked hypercall leaves (-EPERM), pause (not scheduled), and lifting by a clean
validation (only what was applied).

The reference for every restricted run is the same guest run unrestricted in the same scenario (vmx_exits' transcript
is QEMU's, tests/vmx): the values it prints there (PIC IMR fb, PCI id 12378086, the sector read back) must turn into
all-ones, and the device state its denied writes would have changed must stay as it was.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import FIRMWARE, FIXTURES
from emu.hypervisor.host import Host
from emu.hypervisor.scenario import RestrictionSpec, load
from emu.integrity.baseline import take_baseline
from emu.integrity.rules import parse_rules
from emu.storage.image import DiskImage
from emu.vmx.controls import BITMAP_BYTES, PrimaryControls
from emu.vmx.reasons import ExitReason

DEMO = FIXTURES / "demo"
SECTOR = 512
PIC_IMR, PCI_DATA, ATA_DATA = 0x21, 0xCFC, 0x1F0


def probes(tmp_path: Path, trap_guest: str = "app") -> Path:
    """A scenario: the validated demo app, vmx_exits ("probe", with a blank scratch disk) and hypercall ("hc");
    the counter policy never fires (the restrictions are applied by the tests, as block 420 would)."""
    (tmp_path / "scratch.img").write_bytes(bytes(64 * 1024))
    (tmp_path / "s.toml").write_text(f"""
[host]
quantum = 2000
seed = 5

[[guest]]
name = "app"
kernel = "{FIRMWARE / 'demo_app.elf'}"
cmdline = "hz=1000 ticks=10 log=0 save=0 check=0 tamper=0 busy=0 status=0"
disks = ["{DEMO / 'demo.img'}"]

[[guest]]
name = "probe"
kernel = "{FIRMWARE / 'vmx_exits.elf'}"
disks = ["scratch.img"]

[[guest]]
name = "hc"
kernel = "{FIRMWARE / 'hypercall.elf'}"

[trap]
guest = "{trap_guest}"
validate = "app"

[policy]
kind = "counter"
count = 1000000000

[validation]
baseline = "{DEMO / 'demo.baseline.json'}"
""")
    return tmp_path / "s.toml"


def console(host: Host, guest: str) -> list[str]:
    return [e["line"] for e in host.events if e["kind"] == "console" and e["guest"] == guest]


def line(lines: list[str], start: str) -> str:
    return next(x for x in lines if x.startswith(start))


def run_probes(tmp_path: Path, spec: RestrictionSpec | None, trap_guest: str = "app", lift: bool = False):
    """Run the probe scenario with ``spec`` applied to probe and hc before they start (and lifted again when
    ``lift``); returns (host, summary, sector 1 of probe's disk). The host is closed."""
    host = Host(load(probes(tmp_path, trap_guest)))
    try:
        if spec is not None:
            for name in ("probe", "hc"):
                host.restrict(host.machines[name], spec)
                if lift:
                    host.lift(host.machines[name])
        summary = host.run()
        sector1 = host.final_disk("probe")[SECTOR:2 * SECTOR]
    finally:
        host.close()
    return host, summary, sector1


@pytest.fixture(scope="module")
def unrestricted(tmp_path_factory):
    return run_probes(tmp_path_factory.mktemp("free"), None)


@pytest.fixture(scope="module")
def denied(tmp_path_factory):
    spec = RestrictionSpec(["deny_ports"], deny_ports=[PIC_IMR, PCI_DATA, ATA_DATA])
    return run_probes(tmp_path_factory.mktemp("denied"), spec)


def test_the_unrestricted_probe_is_the_reference(unrestricted):
    host, summary, sector1 = unrestricted
    out = console(host, "probe")
    assert line(out, "out 0x21, al").endswith("pic imr=fb")
    assert line(out, "out dx, eax / in eax, dx").endswith("id=12378086")
    assert line(out, "rep insd 128 dwords").endswith("matches what was written")
    pattern = b"".join((0xA500 + i * 7).to_bytes(2, "little") for i in range(256))
    assert sector1 == pattern                                  # vmx_exits' WRITE SECTORS reached the disk
    assert summary["guests"]["probe"]["status"] == 1


def test_denied_ports_read_all_ones(denied, unrestricted):
    host, summary, _ = denied
    out = console(host, "probe")
    assert line(out, "out 0x21, al").endswith("pic imr=ff")                       # IN al, dx: 8 bits
    assert line(out, "out dx, eax / in eax, dx").endswith("id=ffffffff")          # IN eax, dx: 32 bits
    assert re.search(r"rep insd 128 dwords: .* first ffffffff last ffffffff, MISMATCH$",
                     line(out, "rep insd 128 dwords"))                             # REP INSD: every element
    # ports not denied still reach their devices: the debug console reads back and prints
    assert line(out, "in al, 0xe9") == line(console(unrestricted[0], "probe"), "in al, 0xe9") \
        == "in al, 0xe9 (debugcon readback): e9"
    assert host.restrictions["probe"].ports.denied > 128 + 256


def test_denied_ports_drop_writes(denied):
    host, _summary, sector1 = denied
    pic = host.machines["probe"].pic.state.master
    assert pic.imr == 0 and pic.irq_base == 0      # OUT 0x21 (0xfb, ICW2 0x20, masks) never reached the PIC
    assert sector1 == bytes(SECTOR)                 # REP OUTSW to 0x1f0 never reached the drive: sector 1 unchanged
    out = console(host, "probe")
    assert line(out, "rep outsw 256 words").endswith("status after 58")   # the drive still waits for its data


def test_revoked_hypercall_returns_eperm(denied, unrestricted, tmp_path):
    free_host = unrestricted[0]
    assert line(console(free_host, "hc"), "  result") == "  result 0"
    assert free_host.machines["hc"].wip_addr is not None
    spec = RestrictionSpec(["revoke_hypercalls"], revoke_hypercalls=[1])
    host, summary, _ = run_probes(tmp_path, spec)
    results = [x for x in console(host, "hc") if x.startswith("  result")]
    assert results == ["  result -1", "  result -38 (error)"]     # leaf 1 revoked: -EPERM; 0xffff: still -ENOSYS
    assert host.machines["hc"].wip_addr is None                    # the revoked leaf did not run
    assert summary["guests"]["hc"]["status"] == 1


def test_deny_ports_on_a_trapping_guest_keeps_every_access_trapping(tmp_path):
    """"Use I/O bitmaps" overrides unconditional I/O exiting (SDM §26.1.3): on the guest whose I/O exits are the
    trap points, every other bitmap bit is set as well, so the trap handler still sees every I/O instruction."""
    spec = RestrictionSpec(["deny_ports"], deny_ports=[PIC_IMR])
    host, summary, _ = run_probes(tmp_path, spec, trap_guest="probe")
    probe = host.machines["probe"]
    denied = host.restrictions["probe"].ports.denied
    assert 0 < denied < host.trap.trapped
    assert host.trap.trapped == probe.vmx.counts["IO_INSTRUCTION"]   # every I/O exit of probe entered block 310
    assert line(console(host, "probe"), "out 0x21, al").endswith("pic imr=ff")


def test_lift_undoes_only_what_was_applied_and_leaves_nothing_behind(unrestricted, tmp_path):
    host = Host(load(probes(tmp_path, trap_guest="probe")))
    try:
        probe = host.machines["probe"]
        controls = probe.vmx.controls
        primary = controls.primary
        assert primary & PrimaryControls.UNCONDITIONAL_IO and not primary & PrimaryControls.USE_IO_BITMAPS
        probe.revoked_hypercalls.add(7)            # revoked before: not this restriction's to lift
        host.guests["hc"].paused = True            # paused before: a pause restriction does not apply
        spec = RestrictionSpec(["quarantine_vlan", "deny_ports", "revoke_hypercalls", "pause"],
                               deny_ports=[0x70, 0x8000], revoke_hypercalls=[1, 7])
        assert host.restrict(probe, spec) == ["deny_ports=0x70,0x8000", "revoke_hypercalls=1,7", "pause"]
        assert host.restrictions["probe"].skipped == ["quarantine_vlan (the guest has no NIC)"]
        assert controls.primary & PrimaryControls.USE_IO_BITMAPS and ExitReason.IO_INSTRUCTION in probe.vmx.handlers
        assert probe.revoked_hypercalls == {1, 7} and host.guests["probe"].paused
        assert "probe" not in host.schedulable()
        assert host.restrict(host.machines["hc"], RestrictionSpec(["pause"])) == []
        assert host.lift(host.machines["hc"]) == [] and host.guests["hc"].paused

        assert host.lift(probe) == ["deny_ports", "revoke_hypercalls", "pause"]
        assert controls.primary == primary and ExitReason.IO_INSTRUCTION not in probe.vmx.handlers
        assert controls.io_bitmap_a == bytes(BITMAP_BYTES) and controls.io_bitmap_b == bytes(BITMAP_BYTES)
        assert probe.revoked_hypercalls == {7} and not host.guests["probe"].paused
        assert host.lift(probe) == []                 # nothing left to lift
        host.guests["hc"].paused = False
        host.run()
        assert console(host, "probe") == console(unrestricted[0], "probe")   # nothing of the denial left behind
    finally:
        host.close()


# --- through the trap handler -----------------------------------------------------------------------------------

APP = "hz=1000 ticks={ticks} log=50 save=0 check=0 tamper={tamper} vlan={vlan} busy=0 busyint=0 status=0"


def trapped_scenario(tmp_path: Path, app_cmdline: str, baseline: str, restrictions: str, disk: str = "app.img",
                     iterations: int = 220) -> Path:
    (tmp_path / "s.toml").write_text(f"""
[host]
quantum = 3000
jitter = 5000
seed = 1

[[guest]]
name = "app"
kernel = "{FIRMWARE / 'demo_app.elf'}"
cmdline = "{app_cmdline}"
disks = ["{disk}"]

[[guest]]
name = "mgmt"
kernel = "{FIRMWARE / 'demo_mgmt.elf'}"
cmdline = "hz=1000 iterations={iterations} heartbeat=100 chunks=4 work=200"

[trap]
guest = "mgmt"
validate = "app"

[policy]
kind = "clock"
interval_ns = 60000000

[validation]
baseline = "{baseline}"

[restrictions]
{restrictions}
""")
    return tmp_path / "s.toml"


def test_a_paused_guest_is_not_scheduled(tmp_path):
    """The app tampers with /ETC/NET.CFG at tick 40; the first validation after it pauses the app: from then on its
    instruction count does not move, while the management guest runs to its end."""
    (tmp_path / "app.img").write_bytes((DEMO / "demo.img").read_bytes())
    path = trapped_scenario(tmp_path, APP.format(ticks=200, tamper=40, vlan=99), str(DEMO / "demo.baseline.json"),
                            'on_findings = ["pause"]')
    seen: dict[str, int] = {}

    def on_event(e):
        if e.get("block") == 420:
            seen["icount"] = host.machines["app"].cpu.icount
            seen["events"] = len(host.events)
    host = Host(load(path), on_event=on_event)
    try:
        summary = host.run()
    finally:
        host.close()
    restrict = [e for e in host.events if e.get("block") == 420]
    assert [e.get("applied") for e in restrict] == [["pause"]]
    assert summary["guests"]["app"]["end"] == "paused" and summary["guests"]["app"]["status"] is None
    assert summary["guests"]["app"]["icount"] == seen["icount"]
    assert not any(e["guest"] == "app" and e["kind"] == "console" for e in host.events[seen["events"]:])
    assert summary["guests"]["mgmt"]["status"] == 1
    assert summary["validations"] >= 2            # validations went on (findings each time), the app stayed paused
    later = [e for e in host.events[seen["events"]:] if e.get("block") == 410]
    assert later and not any(e["clean"] for e in later)


def test_a_clean_validation_lifts_what_was_applied(tmp_path):
    """The app starts with NET.CFG tampered (VLAN=99) and writes VLAN=10 back at tick 100; the rules want 10. The
    first validation restricts (the debug console's port 0xe9 denied, hypercall leaf 1 revoked; the quarantine is
    skipped: the app has no NIC), the first clean one after the repair lifts exactly those two: the app's console
    lines are dropped in between and come back after."""
    data = bytearray((DEMO / "demo.img").read_bytes())
    at = data.find(b"\nVLAN=10\n")
    data[at:at + 9] = b"\nVLAN=99\n"
    (tmp_path / "app.img").write_bytes(bytes(data))
    rules = parse_rules((DEMO / "demo.rules").read_text(), "demo.rules")
    with DiskImage(str(DEMO / "demo.img"), read_only=True) as img:
        take_baseline(img.view(), ["/BIN"], rules).save(tmp_path / "base.json")
    path = trapped_scenario(tmp_path, APP.format(ticks=200, tamper=100, vlan=10), "base.json", """
on_findings = ["quarantine_vlan", "deny_ports", "revoke_hypercalls"]
deny_ports = [0xe9]
revoke_hypercalls = [1]
lift_when_clean = true
""")
    states = []

    def on_event(e):
        if e.get("block") == 420:
            app = host.machines["app"]
            states.append((bool(app.vmx.controls.primary & PrimaryControls.USE_IO_BITMAPS),
                           set(app.revoked_hypercalls), list(host.restrictions.get("app").skipped)
                           if "app" in host.restrictions else None))
    host = Host(load(path), on_event=on_event)
    try:
        summary = host.run()
    finally:
        host.close()
    steps = [i for i, e in enumerate(host.events) if e.get("block") == 420]
    assert len(steps) == 2
    applied, lifted = (host.events[i] for i in steps)
    assert applied["applied"] == ["deny_ports=0xe9", "revoke_hypercalls=1"]
    assert lifted["lifted"] == ["deny_ports", "revoke_hypercalls"]          # not the quarantine: never applied
    assert states == [(True, {1}, ["quarantine_vlan (the guest has no NIC)"]), (False, set(), None)]
    analyses = [e for e in host.events if e.get("block") == 410]
    assert not analyses[0]["clean"] and "VLAN is '99', expected '10'" in analyses[0]["summary"][0]
    app_lines = [i for i, e in enumerate(host.events) if e["kind"] == "console" and e["guest"] == "app"]
    assert any(i < steps[0] for i in app_lines) and any(i > steps[1] for i in app_lines)
    assert not any(steps[0] < i < steps[1] for i in app_lines)             # OUT 0xe9 dropped while denied
    assert summary["restricted"] is False and summary["guests"]["app"]["status"] == 1
