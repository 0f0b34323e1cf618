"""`emu run --nic [--net-peer echo] [--pcap FILE]` as a user runs it (a subprocess).

The reference is QEMU 7.2 with ``-device ne2k_isa`` on a loopback UDP echo peer: the golden transcripts
``tests/net/<kernel>.qemu.txt`` (test_net_ping.py checks QEMU still prints them) and, for the card options,
QEMU run live with the same ``iobase``/``irq``.  Bad values end the run with status 2 and one line.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, require_tool
from emu.devices.ne2000 import DEFAULT_MAC, format_mac
from emu.net.pcap import LINKTYPE_ETHERNET, read_pcap
from emu.net.peer import APP_MAC, PEER_MAC, replies_to, status_frame

from .harness import golden, kernel, run_qemu_with_peer
from .test_net_ping import CASES


def emu_run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m emu run ARGS...` from the repository root (stdout bytes, stderr text)."""
    proc = subprocess.run([sys.executable, "-m", "emu", "run", *map(str, args)], cwd=ROOT, capture_output=True,
                          timeout=timeout)
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def nic_args(name: str) -> list[str]:
    """The `emu run` options equivalent to the QEMU set-up of the golden transcript of ``name``."""
    append, mac = CASES[name]
    args = ["--nic"] + ([] if mac == DEFAULT_MAC else [f"mac={format_mac(mac)}"]) + ["--net-peer", "echo"]
    return args + (["--cmdline", append] if append else [])


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_transcript_is_qemus(name, tmp_path):
    pcap = tmp_path / f"{name}.pcap"
    run = emu_run(kernel(name).relative_to(ROOT), *nic_args(name), "--pcap", pcap)
    assert run.stdout == golden(name).read_bytes(), run.stdout.decode(errors="replace")
    assert run.returncode == 1 and run.stderr == ""
    linktype, recs = read_pcap(pcap)
    assert linktype == LINKTYPE_ETHERNET
    assert [r.time_ns for r in recs] == sorted(r.time_ns for r in recs)   # the guest's virtual clock
    frames = [r.data for r in recs]
    _, mac = CASES[name]
    if name == "net_app":   # it sends three status reports; the peer answers nothing
        assert frames == [status_frame(APP_MAC, seq) for seq in (1, 2, 3)]
        return
    # untagged wire bytes, in switch order: each guest frame, then the peer's answers to it
    expected: list[bytes] = []
    for f in frames:
        if f[6:12] == mac:
            expected += [f] + replies_to(f)
    assert frames == expected
    if name == "net_ping":  # as under QEMU (test_net_ping): 23 frames reach the wire, a runt unpadded
        sent = [f for f in frames if f[6:12] == mac]
        assert len(sent) == 23 and [len(f) for f in sent[:3]] == [60, 60, 20]
        assert sum(f[6:12] == PEER_MAC for f in frames) == 23 + 3 * 2


def test_tshark_reads_the_cli_capture(tmp_path):
    require_tool("tshark")
    pcap = tmp_path / "ping.pcap"
    run = emu_run(kernel("net_ping"), *nic_args("net_ping"), "--pcap", pcap)
    assert run.returncode == 1
    proc = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "eth.src", "-e", "eth.type",
                           "-e", "frame.len"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    _, recs = read_pcap(pcap)
    assert rows == [[format_mac(r.data[6:12]), "0x88b5", str(len(r.data))] for r in recs]


def test_without_a_nic_the_kernel_says_so():
    """The default is unchanged: no card (QEMU with -nodefaults prints the same, test_net_ping)."""
    run = emu_run(kernel("net_ping"))
    assert run.returncode == 1 and run.stdout.endswith(b"no NE2000 at 300\n")


@pytest.mark.parametrize("options", ["iobase=0x320", "irq=10", "irq=5,mac=52:54:00:12:34:57"])
def test_card_options_behave_like_qemus_properties(options, tmp_path):
    """The same kernel with the card moved: emu's transcript is QEMU's with the same ne2k_isa properties."""
    require_tool("qemu-system-i386")
    props = dict(item.split("=") for item in options.split(","))
    mac = bytes.fromhex(props.get("mac", format_mac(DEFAULT_MAC)).replace(":", ""))
    proc, _ = run_qemu_with_peer("net_ping", mac=mac, iobase=int(props.get("iobase", "0x300"), 16),
                                 irq=int(props.get("irq", "9")))
    run = emu_run(kernel("net_ping"), "--nic", options, "--net-peer", "echo")
    assert run.stdout == proc.stdout
    assert run.returncode == proc.returncode == 1
    if "irq" in props:   # the card no longer interrupts on the line the kernel expects
        assert run.stdout.endswith(b"irq-seen=no\n")
    else:
        assert run.stdout.endswith(b"no NE2000 at 300\n")


@pytest.mark.parametrize("args, message", [
    (["--nic", "mac=zz"], "emu: --nic: bad MAC address 'zz'"),
    (["--nic", "mac=01:00:5e:00:00:01"], "emu: --nic: mac 01:00:5e:00:00:01 is a multicast address"),
    (["--nic", "irq=16"], "emu: --nic: irq 16 out of range 0..15"),
    (["--nic", "irq=14"], "emu: --nic: irq 14 is used by the primary IDE channel"),
    (["--nic", "irq=x"], "emu: --nic: irq='x' is not a number"),
    (["--nic", "iobase=0xfff0"], "emu: --nic: iobase 0xfff0 out of range 0..0xffe0"),
    (["--nic", "iobase=0x1f0"], "emu: --nic: iobase 0x1f0: port 0x1f0 claimed by ide0"),
    (["--nic", "speed=10"], "emu: --nic: unknown option 'speed'"),
    (["--nic", "irq=9,irq=10"], "emu: --nic: irq given twice"),
    (["--nic", "--net-peer", "tcp"], "emu: --net-peer: unknown peer 'tcp' (choose: echo)"),
    (["--net-peer", "echo"], "emu: --net-peer needs --nic"),
    (["--pcap", "x.pcap"], "emu: --pcap needs --nic"),
    (["--nic", "--pcap", "/nonexistent/dir/x.pcap"], "emu: pcap: cannot write /nonexistent/dir/x.pcap"),
], ids=lambda v: v if isinstance(v, str) and not v.startswith("emu:") else None)
def test_bad_values_give_one_line(args, message, tmp_path, capfd):
    """In process (``emu.cli.main``, what the console script calls) to keep the 14 cases fast."""
    from emu.cli import main

    args = [str(tmp_path / a) if a.endswith((".pcap", ".trace")) and not a.startswith("/") else a for a in args]
    status = main(["run", str(kernel("net_ping")), *args])
    out, err = capfd.readouterr()
    assert status == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), err
    assert not list(tmp_path.iterdir())   # nothing was written


def test_a_kernel_taken_for_nic_options_is_explained():
    """`emu run --nic KERNEL`: argparse gives the optional value the kernel path; the error says what to write."""
    run = emu_run("--nic", kernel("net_ping"))
    assert run.returncode == 2 and run.stdout == b"" and "Traceback" not in run.stderr
    assert "is not key=value options; write the kernel before --nic" in run.stderr.splitlines()[-1]


def test_a_run_with_a_nic_records_and_replays(tmp_path):
    """`emu run --nic --net-peer echo --record T`: the trace keeps the card and its peer; `emu replay T` passes."""
    trace = tmp_path / "ping.trace"
    run = emu_run(kernel("net_ping").relative_to(ROOT), *nic_args("net_ping"), "--record", trace)
    assert run.stdout == golden("net_ping").read_bytes() and run.returncode == 1
    replay = subprocess.run([sys.executable, "-m", "emu", "replay", str(trace)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert replay.returncode == 0, replay.stdout + replay.stderr
