"""`emu run --gdb` end to end: the real CLI in its own process, real gdb in batch mode, the run ends as without gdb."""
from __future__ import annotations

import re
import subprocess
import sys

from conftest import FIRMWARE, ROOT, require_tool

KERNEL = FIRMWARE / "vmx_exits.elf"


def test_emu_run_gdb_session_then_the_run_goes_on() -> None:
    """Port 0 picks a free port, announced on stderr; gdb stops on an I/O exit to the PIC, reads registers and
    the exit, detaches; emu then finishes with the transcript and status of a run without gdb."""
    require_tool("gdb")
    plain = subprocess.run([sys.executable, "-m", "emu", "run", str(KERNEL)], cwd=ROOT, capture_output=True,
                           timeout=60)
    emu = subprocess.Popen([sys.executable, "-m", "emu", "run", str(KERNEL), "--gdb", "127.0.0.1:0"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        announce = emu.stderr.readline().decode()
        m = re.fullmatch(r"emu: gdb stub listening on 127\.0\.0\.1:(\d+)\n", announce)
        assert m, announce
        gdb = subprocess.run(
            ["gdb", "-batch", "-nx", "-ex", "set architecture i386", "-ex", f"target remote 127.0.0.1:{m.group(1)}",
             "-ex", "monitor break-exit IO_INSTRUCTION port=0x21", "-ex", "continue",
             "-ex", "monitor exits 1", "-ex", "info registers eip", "-ex", "detach", str(KERNEL)],
            capture_output=True, text=True, timeout=60)
        transcript = gdb.stdout + gdb.stderr
        assert "IO_INSTRUCTION out port=0x21" in transcript, transcript
        assert re.search(r"eip\s+0x[0-9a-f]+", transcript), transcript
        out, err = emu.communicate(timeout=60)
    finally:
        emu.kill()
    assert out == plain.stdout and emu.returncode == plain.returncode == 1
