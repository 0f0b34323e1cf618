"""`emu demo` (issue 6): clean validations, deferrals for every safety reason, the tampering caught, restriction."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from emu.hypervisor.host import Host
from emu.hypervisor.scenario import load
from emu.hypervisor.trap import stamp

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "fixtures" / "demo" / "scenario.toml"
TAMPERED = b"VLAN=99"            # the tampering step's new line (the scenario's app command line has vlan=99)


def test_demo_timeline():
    """The tampering is anchored on the disk write that puts the new NET.CFG bytes on the disk (not on a console
    line): every validation before it is clean, the first one after it finds NET.CFG changed, and so do all later."""
    host = Host(load(SCENARIO))
    app = host.machines["app"]
    drive = app.platform.ide[0].drives[0]
    backing = drive.backing
    writes: list[int] = []       # the app's instruction count at each write of the tampered NET.CFG sector
    real_write = backing.write

    def write(lba, data):
        if TAMPERED in bytes(data):
            writes.append(stamp(app)["icount"])
        return real_write(lba, data)

    backing.write = write
    try:
        summary = host.run()
    finally:
        host.close()
    events = host.events
    assert len(writes) == 1                     # one write sequence rewrites NET.CFG in place
    anchor = writes[0]
    analyses = [e for e in events if e.get("block") == 410]
    assert all(a["guest"] == "app" for a in analyses)
    before = [a for a in analyses if a["icount"] < anchor]
    after = [a for a in analyses if a["icount"] > anchor]
    assert len(before) + len(after) == len(analyses)
    assert before and all(a["clean"] for a in before)
    # the first safe validation after the write finds it, and every later one too
    assert after and not after[0]["clean"] and not any(a["clean"] for a in after)
    assert any("NET.CFG" in line for line in after[0]["summary"])
    restrict = [e for e in events if e.get("block") == 420]
    assert restrict and restrict[0]["icount"] == after[0]["icount"] and "applied" in restrict[0]
    assert events.index(restrict[0]) == events.index(after[0]) + 1
    reasons = {e["reason"] for e in events if e.get("block") == 330 and not e["safe"]}
    assert {"if_masked", "write_in_progress", "dma_active"} <= reasons
    # the monitor's windows: no guest instruction and no virtual time pass while the disk is away
    backs = [e for e in events if e.get("block") == 360]
    assert len(backs) == len(analyses) and all(e["target_insns"] == e["held_ns"] == 0 for e in backs)
    assert summary["restricted"] and summary["validations"] == len(analyses)
    # every validation went 310 → 315 → 330 safe → 340 → 350 → 410 [→ 420] → 360 → 370
    for a in analyses:
        i = events.index(a)
        assert [e["block"] for e in events[i - 5:i]] == [310, 315, 330, 340, 350] and events[i - 3]["safe"] is True
        tail = [e.get("block") for e in events[i + 1:i + 4]]
        assert tail[:2] == [360, 370] or tail == [420, 360, 370], tail


def test_demo_exit_status_speed_and_determinism():
    runs = []
    for _ in range(2):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "emu", "demo", "--json"], capture_output=True, text=True,
                              timeout=120)
        runs.append((proc, time.monotonic() - started))
    proc, elapsed = runs[0]
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 30
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["kind"] == "summary"
    # every event carries its guest's exact instruction count, its virtual time in ns and the host's virtual time
    for e in events[:-1]:
        assert {"icount", "vtime", "host_ns", "guest"} <= set(e) and e["icount"] <= e["vtime"], e
    host_ns = [e["host_ns"] for e in events[:-1]]
    assert host_ns == sorted(host_ns)
    strip = [[line for line in r.stdout.splitlines() if '"pause_ms_max"' not in line] for r, _ in runs]
    assert strip[0] == strip[1]


def test_guest_validation_timeline_shows_each_window():
    """In `--validation guest:mgmt` the readable timeline shows every window: 340 → 350 → 355 → 410 → 360."""
    proc = subprocess.run([sys.executable, "-m", "emu", "demo", "--validation", "guest:mgmt"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    steps = [int(m.group(1)) for m in re.finditer(r"\[(\d{3}) \w+\]", proc.stdout)]
    window = [b for b in steps if b in (340, 350, 355, 410, 360)]
    validations = int(re.search(r"validations: (\d+)", proc.stdout).group(1))
    assert validations > 0 and window == [340, 350, 355, 410, 360] * validations
    assert 310 not in steps and 370 not in steps        # the routine steps stay folded
    backs = [line for line in proc.stdout.splitlines() if "[360 remap_back]" in line]
    assert len(backs) == validations and all(line.endswith("held guest: 0)") for line in backs)
