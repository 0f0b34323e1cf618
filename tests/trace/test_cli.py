"""The commands: emu record, emu replay, emu trace show|diff|stats (exit statuses and one-line errors)."""
from __future__ import annotations

import shutil

import pytest

from emu.cli import main
from emu.trace import goldens

ROOT = goldens.ROOT


@pytest.fixture()
def base(tmp_path, monkeypatch):
    shutil.copyfile(ROOT / "firmware/build/hello.elf", tmp_path / "hello.elf")
    shutil.copyfile(ROOT / "firmware/build/cpu_events.elf", tmp_path / "cpu_events.elf")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_record_then_replay(base, capfd):
    assert main(["record", "hello.elf", "-o", "h.trace"]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("hello from emu firmware\n")
    assert "recorded" in err and "bytes per million instructions" in err and "debug exit" in err
    assert main(["replay", "h.trace"]) == 0
    assert "replay ok" in capfd.readouterr().out


def test_replay_refuses_changed_input(base, capfd):
    assert main(["record", "hello.elf", "-o", "h.trace", "-q"]) == 0
    (base / "hello.elf").write_bytes((base / "hello.elf").read_bytes() + b"\0")
    capfd.readouterr()
    assert main(["replay", "h.trace"]) == 2
    out, err = capfd.readouterr()
    assert err.strip().count("\n") == 0 and "kernel hello.elf changed since recording" in err


def test_replay_divergence_exit_status(base, capfd):
    assert main(["record", "hello.elf", "-o", "h.trace", "-q"]) == 0
    elf = bytearray((base / "hello.elf").read_bytes())
    elf[elf.index(bytes.fromhex("c1e809")) + 2] = 1
    (base / "hello.elf").write_bytes(bytes(elf))
    capfd.readouterr()
    assert main(["replay", "h.trace", "--force"]) == 1
    out = capfd.readouterr().out
    assert "replay diverged at event" in out and "expected:" in out and "actual:" in out


def test_show_filters(base, capfd):
    assert main(["record", "cpu_events.elf", "-o", "c.trace", "-q"]) == 0
    capfd.readouterr()
    assert main(["trace", "show", "c.trace", "--kind", "interrupt"]) == 0
    lines = capfd.readouterr().out.splitlines()
    assert lines and all(" interrupt " in line for line in lines)
    assert main(["trace", "show", "c.trace", "--kind", "io", "--from", "20000", "--to", "20100"]) == 0
    lines = capfd.readouterr().out.splitlines()
    icounts = [int(line.split()[0]) for line in lines]
    assert lines and all(20000 <= i <= 20100 for i in icounts) and all(" io " in line for line in lines)
    assert main(["trace", "show", "c.trace", "--guest", "guest", "--kind", "end"]) == 0
    assert capfd.readouterr().out.count(" guest end ") == 1


GOLDEN = str(ROOT / goldens.GOLDEN_DIR)


@pytest.mark.parametrize("args, message", [
    (["vmx_exits", "--reason", "BOGUS"], "--reason BOGUS: not a VM-exit reason name or number"),
    (["vmx_exits", "--reason", "35"], "--reason 35: 35 is not a basic VM-exit reason"),
    (["vmx_exits", "--reason", "0x"], "--reason 0x: not a VM-exit reason name or number"),
    (["vmx_exits", "--guest", "nobody"], "--guest nobody: the trace has no such guest (guests: guest)"),
    (["demo", "--guest", "nobody"], "--guest nobody: the trace has no such guest (guests: app, mgmt, host)"),
    (["vmx_exits", "--from", "10", "--to", "5"], "--from 10 is after --to 5: no event can be in that range"),
])
def test_show_refuses_a_filter_that_cannot_match(capfd, args, message):
    """A misspelt reason or guest, or an empty range, is one line and exit status 2, not silence and 0."""
    trace = f"{GOLDEN}/{args[0]}.trace"
    assert main(["trace", "show", trace] + args[1:]) == 2
    out, err = capfd.readouterr()
    assert out == "" and err.startswith(f"emu: {message}") and err.count("\n") == 1


def test_show_reason_numbers_in_any_base_and_names_in_any_case(capfd):
    """WRMSR is basic exit reason 32 (SDM Vol. 3D Table C-1): 32, 0x20 and wrmsr select the same 3 exits."""
    outputs = []
    for reason in ("WRMSR", "wrmsr", "32", "0x20"):
        assert main(["trace", "show", f"{GOLDEN}/vmx_exits.trace", "--reason", reason]) == 0
        outputs.append(capfd.readouterr().out)
    assert len(set(outputs)) == 1
    lines = outputs[0].splitlines()
    assert len(lines) == 3 and all(" vmexit WRMSR " in line for line in lines)
    assert main(["trace", "show", f"{GOLDEN}/demo.trace", "--reason", "0x1e", "--guest", "mgmt", "--to", "200000"]) == 0
    lines = capfd.readouterr().out.splitlines()
    assert lines and all(" mgmt vmexit IO_INSTRUCTION " in line for line in lines)


@pytest.mark.parametrize("cmd", [["replay", "T"], ["record", "k.elf", "-o", "T"], ["trace", "show", "T"],
                                 ["trace", "diff", "A", "B"], ["trace", "stats", "T"]])
@pytest.mark.parametrize("extra", [["extra"], ["--bogus"]])
def test_extra_arguments_are_blamed_on_the_subcommand(capfd, cmd, extra):
    """`emu replay T extra` is one line naming `emu replay` (emu/cli.py's contract), not the top-level `emu`."""
    with pytest.raises(SystemExit) as info:
        main(cmd + extra)
    assert info.value.code == 2
    prog = "emu " + " ".join(cmd[:2] if cmd[0] == "trace" else cmd[:1])
    assert capfd.readouterr().err == f"{prog}: unrecognized arguments: {extra[0]} (see '{prog} --help')\n"


def test_record_and_replay_with_a_nic_and_the_echo_peer(base, capfd):
    shutil.copyfile(ROOT / "firmware/build/net_app.elf", base / "net_app.elf")
    assert main(["record", "net_app.elf", "--cmdline", "count=3 interval=5", "--nic", "--net-peer", "echo",
                 "-o", "n.trace"]) == 0
    out, _ = capfd.readouterr()
    assert out.encode() == (ROOT / "tests/net/net_app.qemu.txt").read_bytes()
    assert main(["trace", "show", "n.trace", "--kind", "frame"]) == 0
    frames = capfd.readouterr().out.splitlines()
    assert len(frames) == 3 and all("port=guest" in f and "delivered=[peer]" in f for f in frames)
    assert main(["replay", "n.trace"]) == 0
    assert "replay ok" in capfd.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--net-peer", "echo"], "--net-peer needs --nic"),
    (["--nic", "irq=2"], "--nic: irq 2 is used by the PIC cascade"),
])
def test_record_nic_errors_are_one_line(base, capfd, args, message):
    assert main(["record", "hello.elf", "-o", "h.trace"] + args) == 2
    assert capfd.readouterr().err == f"emu: {message}\n"


def test_diff_and_stats(base, capfd):
    assert main(["record", "hello.elf", "-o", "a.trace", "-q"]) == 0
    assert main(["record", "hello.elf", "-o", "b.trace", "-q"]) == 0
    assert main(["record", "cpu_events.elf", "-o", "c.trace", "-q"]) == 0
    capfd.readouterr()
    assert main(["trace", "diff", "a.trace", "b.trace"]) == 0
    assert "identical" in capfd.readouterr().out
    assert main(["trace", "diff", "a.trace", "c.trace"]) == 1
    out = capfd.readouterr().out
    assert "kernel differs" in out and "first difference at event" in out and "interrupt" in out
    assert main(["trace", "stats", "c.trace"]) == 0
    out = capfd.readouterr().out
    assert "bytes per million instructions" in out and "interrupt" in out and " io " in out


@pytest.mark.parametrize("cmd", [["trace", "show"], ["trace", "stats"], ["replay"]])
def test_damaged_trace_is_one_line(base, capfd, cmd):
    assert main(["record", "hello.elf", "-o", "h.trace", "-q"]) == 0
    data = (base / "h.trace").read_bytes()
    (base / "h.trace").write_bytes(data[:-20])
    capfd.readouterr()
    assert main(cmd + ["h.trace"]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err


def test_show_vm_exits_by_reason(base, capfd):
    """The monitor's exits (vmx_exits runs WRMSR/RDMSR/CPUID, which exit by default) are filtered by reason name."""
    shutil.copyfile(ROOT / "firmware/build/vmx_exits.elf", base / "vmx_exits.elf")
    shutil.copyfile(goldens.ensure_reference_disk(ROOT), base / "ref.img")
    assert main(["record", "vmx_exits.elf", "--disk", "ref.img", "-o", "v.trace", "-q"]) == 0
    capfd.readouterr()
    assert main(["trace", "show", "v.trace", "--reason", "WRMSR"]) == 0
    lines = capfd.readouterr().out.splitlines()
    assert len(lines) == 3 and all(" vmexit WRMSR " in line for line in lines)
    assert main(["trace", "show", "v.trace", "--reason", "32", "--json"]) == 0
    assert capfd.readouterr().out.count('"reason_name":"WRMSR"') == 3


@pytest.mark.slow
def test_replay_scenario_with_relative_trace_path(tmp_path, capfd, monkeypatch):
    """A scenario replay changes directory while it streams the trace: a relative trace path still works."""
    import os

    scenario = ROOT / goldens.SCENARIOS["demo"]
    if not scenario.exists():
        pytest.skip("no demo scenario")
    monkeypatch.chdir(ROOT)
    out = os.path.relpath(tmp_path / "demo.trace", ROOT)
    assert main(["record", goldens.SCENARIOS["demo"], "-o", out]) == 0
    capfd.readouterr()
    assert main(["replay", out]) == 0
    assert "replay ok" in capfd.readouterr().out
