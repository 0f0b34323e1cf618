"""`emu demo` (issue 6): clean validations, deferrals for every safety reason, the tampering caught, restriction."""
from __future__ import annotations

import json
import subprocess
import sys
import time


def test_demo_timeline():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "emu", "demo", "--json"], capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 30
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = events[-1]
    assert summary["kind"] == "summary"
    tamper = next(e for e in events if e["kind"] == "console" and e["line"].startswith("tamper done"))
    analyses = [e for e in events if e.get("block") == 410]
    before = [a for a in analyses if a["icount"] < tamper["icount"]]
    after = [a for a in analyses if a["icount"] > tamper["icount"]]
    assert before and all(a["clean"] for a in before)
    # the first safe validation after the tampering finds it, and every later one too
    assert after and not after[0]["clean"] and not any(a["clean"] for a in after)
    assert any("NET.CFG" in line for line in after[0]["summary"])
    restrict = [e for e in events if e.get("block") == 420]
    assert restrict and restrict[0]["icount"] == after[0]["icount"] and "applied" in restrict[0]
    reasons = {e["reason"] for e in events if e.get("block") == 330 and not e["safe"]}
    assert {"if_masked", "write_in_progress", "dma_active"} <= reasons
    # every validation was preceded by a safe 330 check at the same point
    for a in analyses:
        i = events.index(a)
        safety = next(e for e in reversed(events[:i]) if e.get("block") == 330)
        assert safety["safe"] is True


def test_demo_is_deterministic():
    runs = [subprocess.run([sys.executable, "-m", "emu", "demo", "--json"], capture_output=True, text=True,
                           timeout=120).stdout for _ in range(2)]
    strip = [[line for line in r.splitlines() if '"pause_ms_max"' not in line] for r in runs]
    assert strip[0] == strip[1]
