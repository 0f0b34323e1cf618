"""Run real gdb in batch mode against a GdbStub serving a DebugTarget on loopback; return the transcript.

Shared by the fake-target tests here and the firmware tests (same script against a real Machine).
"""
from __future__ import annotations

import io
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from emu.debug.gdbstub import GdbServer, GdbStub, SessionEnd
from emu.debug.target import DebugTarget


@dataclass
class GdbRun:
    """What one gdb batch run produced."""

    stdout: str
    stderr: str
    returncode: int
    session: Optional[SessionEnd]
    announce: str
    packets: list[str]

    @property
    def transcript(self) -> str:
        """stdout then stderr (gdb prints ``monitor`` output and warnings on stderr)."""
        return self.stdout + self.stderr


def run_gdb(target: DebugTarget, commands: Sequence[str], *,
            break_in: Optional[Callable[[], bool]] = None, timeout: float = 60.0,
            stub: Optional[GdbStub] = None, executable: Optional[str] = None,
            before_connect: Sequence[str] = ()) -> GdbRun:
    """Serve ``target`` on 127.0.0.1:<free port>, run ``gdb -batch -nx`` with ``commands`` after connecting.

    ``break_in``: a callable that blocks until the guest is spinning (returns False on timeout);
    then gdb gets SIGINT, as when the user presses Ctrl-C, and sends 0x03 to the stub.
    ``executable``: the guest's ELF file, for symbols (``break main``). ``before_connect``: gdb
    commands run before ``target remote`` (e.g. ``set debug remote 1``).
    """
    packets: list[str] = []
    stub = stub or GdbStub(target, trace=packets.append)
    result: dict[str, object] = {}
    with GdbServer("127.0.0.1", 0) as server:
        note = io.StringIO()
        server.announce(note)
        port = server.address[1]

        def serve() -> None:
            try:
                result["session"] = server.serve_one(stub, timeout=timeout)
            except BaseException as exc:  # reported by the caller's assertions
                result["error"] = exc

        thread = threading.Thread(target=serve, name="gdbstub-test", daemon=True)
        thread.start()
        args = ["gdb", "-batch", "-nx", "-ex", "set architecture i386", "-ex", "set remotetimeout 10"]
        for command in [*before_connect, f"target remote 127.0.0.1:{port}", *commands]:
            args += ["-ex", command]
        if executable is not None:
            args.append(executable)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        if break_in is not None:
            def interrupter() -> None:
                if break_in():
                    proc.send_signal(signal.SIGINT)
            threading.Thread(target=interrupter, daemon=True).start()
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            target.interrupt()
            thread.join(5)
            raise AssertionError(f"gdb timed out\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- packets\n"
                                 + "\n".join(packets[-40:]))
        thread.join(timeout)
        if "error" in result:
            raise AssertionError(f"stub raised {result['error']!r}")
    session = result.get("session")
    return GdbRun(stdout, stderr, proc.returncode, session if isinstance(session, SessionEnd) else None,
                  note.getvalue(), packets)
