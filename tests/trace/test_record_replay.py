"""Recording is deterministic; replay passes on the same inputs and stops at the right event when a kernel,
a disk or a device model changes."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emu.trace.format import TraceError
from emu.trace.goldens import ensure_reference_disk
from emu.trace.reader import TraceReader
from emu.trace.replay import replay
from emu.trace.session import RunSpec, record

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "firmware" / "build"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A directory with copies of the kernels used here and the reference disk (inputs may be altered)."""
    d = tmp_path_factory.mktemp("trace-inputs")
    for name in ("hello", "vmx_exits", "ata_pio"):
        shutil.copyfile(BUILD / f"{name}.elf", d / f"{name}.elf")
    shutil.copyfile(ensure_reference_disk(ROOT), d / "ref.img")
    return d


def fresh(work: Path, tmp_path: Path, name: str, disk: bool = False) -> tuple[Path, RunSpec]:
    """A private copy of the inputs in tmp_path, and a spec for it."""
    shutil.copyfile(work / f"{name}.elf", tmp_path / f"{name}.elf")
    disks = []
    if disk:
        shutil.copyfile(work / "ref.img", tmp_path / "ref.img")
        disks = ["ref.img"]
    return tmp_path, RunSpec(kernel=f"{name}.elf", disks=disks)


def test_recording_twice_is_byte_identical(work, tmp_path):
    base, spec = fresh(work, tmp_path, "vmx_exits", disk=True)
    a = record(spec, base / "a.trace", base=base)
    b = record(spec, base / "b.trace", base=base)
    assert (base / "a.trace").read_bytes() == (base / "b.trace").read_bytes()
    assert a.counts["io"] > 100 and a.counts["vmexit"] >= 7 and a.counts["ata_command"] >= 2 and a.counts["disk_io"] >= 2


def test_inputs_are_hashed_and_untouched(work, tmp_path):
    base, spec = fresh(work, tmp_path, "vmx_exits", disk=True)
    before = hashlib.sha256((base / "ref.img").read_bytes()).hexdigest()
    record(spec, base / "t.trace", base=base)
    header = TraceReader(base / "t.trace").header
    assert [(i["role"], i["path"]) for i in header["inputs"]] == [("kernel", "vmx_exits.elf"), ("disk", "ref.img")]
    assert header["inputs"][0]["sha256"] == hashlib.sha256((base / "vmx_exits.elf").read_bytes()).hexdigest()
    assert header["inputs"][1]["sha256"] == before
    assert hashlib.sha256((base / "ref.img").read_bytes()).hexdigest() == before   # the guest wrote a copy
    end_cp = [e for e in TraceReader(base / "t.trace").events(kinds=["checkpoint"])][-1]
    assert end_cp["disks"]["ide0.0"] != before    # ... and the copy changed (vmx_exits writes sector 1)


def test_console_events_are_the_transcript_of_emu_run(work, tmp_path):
    base, spec = fresh(work, tmp_path, "hello")
    record(spec, base / "t.trace", base=base)
    run = subprocess.run([sys.executable, "-m", "emu", "run", "hello.elf"], cwd=base, capture_output=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    events = list(TraceReader(base / "t.trace").events(kinds=["console"]))
    assert bytes(e["byte"] for e in events) == run.stdout
    icounts = [e["icount"] for e in TraceReader(base / "t.trace")]
    assert icounts == sorted(icounts)
    end = TraceReader(base / "t.trace").end()
    assert (end["reason"], end["status"]) == ("debug-exit", run.returncode)


def test_io_exit_qualification_decodes_with_the_vmx_codec(work, tmp_path):
    """Each recorded port access's qualification decodes (emu.vmx's SDM Table 28-5 codec) to its own port and size."""
    vmx_q = pytest.importorskip("emu.vmx.qualification")
    base, spec = fresh(work, tmp_path, "vmx_exits", disk=True)
    record(spec, base / "t.trace", base=base)
    seen = set()
    for e in TraceReader(base / "t.trace").events(kinds=["io"]):
        q = vmx_q.IoQualification.decode(e["qualification"])
        assert (q.port, q.size) == (e["port"], e["size"])
        seen.add((q.direction.name, q.string, q.rep, q.operand.name))
    assert ("OUT", True, True, "DX") in seen and ("IN", True, True, "DX") in seen   # rep outsb / rep insd
    assert ("IN", False, False, "IMMEDIATE") in seen                                 # in al, 0xe9


def test_replay_passes_on_unchanged_inputs(work, tmp_path):
    base, spec = fresh(work, tmp_path, "vmx_exits", disk=True)
    record(spec, base / "t.trace", base=base)
    result = replay(base / "t.trace", base=base)
    assert result.ok, result.report()
    assert result.compared == TraceReader(base / "t.trace").check()


def test_one_instruction_change_to_the_kernel(work, tmp_path):
    """hello prints IF from `shr $9, eax; and $1, eax`; patching the shift to 1 prints EFLAGS bit 1 (always 1)."""
    base, spec = fresh(work, tmp_path, "hello")
    record(spec, base / "t.trace", base=base)
    elf = bytearray((base / "hello.elf").read_bytes())
    assert elf.count(bytes.fromhex("c1e809")) == 1
    elf[elf.index(bytes.fromhex("c1e809")) + 2] = 0x01
    (base / "hello.elf").write_bytes(bytes(elf))
    with pytest.raises(TraceError, match=r"replay refused: kernel hello.elf changed since recording"):
        replay(base / "t.trace", base=base)
    result = replay(base / "t.trace", base=base, force=True, context=6)
    assert not result.ok
    d = result.divergence
    assert d.expected["kind"] == d.actual["kind"] == "io"
    assert d.expected["port"] == 0xE9 and d.expected["icount"] == d.actual["icount"]
    assert (d.expected["value"], d.actual["value"]) == (ord("0"), ord("1"))
    prefix = bytes(e["byte"] for e in d.before if e["kind"] == "console")
    assert prefix.endswith(b"if=")
    report = result.report()
    assert f"icount {d.icount}" in report and "differing fields: value" in report
    assert "input changed (forced): kernel hello.elf" in report and "registers" in report


def test_one_byte_change_to_a_disk(work, tmp_path):
    """ata_pio reads LBA 0-3 by PIO: a byte changed in sector 2 diverges at the read of sector 2."""
    base, spec = fresh(work, tmp_path, "ata_pio", disk=True)
    record(spec, base / "t.trace", base=base)
    with open(base / "ref.img", "r+b") as f:
        f.seek(2 * 512 + 300)
        old = f.read(1)
        f.seek(2 * 512 + 300)
        f.write(bytes([old[0] ^ 0x01]))
    with pytest.raises(TraceError, match="replay refused: disk ref.img changed since recording"):
        replay(base / "t.trace", base=base)
    result = replay(base / "t.trace", base=base, force=True)
    d = result.divergence
    assert d is not None
    assert d.expected["kind"] == "disk_io" and d.expected["op"] == "read" and d.expected["lba"] == 2
    assert d.actual["lba"] == 2 and d.expected["crc32"] != d.actual["crc32"]
    assert "differing fields: crc32" in result.report()


def test_device_model_change(work, tmp_path, monkeypatch):
    """The debug console's readback (QEMU: 0xE9) changed in-process: replay stops at vmx_exits' `in al, 0xe9`."""
    import emu.devices.debugport as debugport

    base, spec = fresh(work, tmp_path, "vmx_exits", disk=True)
    record(spec, base / "t.trace", base=base)
    monkeypatch.setattr(debugport, "DEBUGCON_READBACK", 0xEA)
    result = replay(base / "t.trace", base=base)
    d = result.divergence
    assert d is not None and d.expected["kind"] == "io"
    assert (d.expected["port"], d.expected["value"], d.actual["value"]) == (0xE9, 0xE9, 0xEA)
    assert d.expected["qualification"] & 0x8                      # an IN
    assert "expected next" in result.report()


def test_ata_device_change_is_seen_at_the_command(work, tmp_path, monkeypatch):
    """IDENTIFY data changed in the ATA model: replay stops at ata_pio's IDENTIFY DEVICE command record."""
    from emu.devices import ata

    base, spec = fresh(work, tmp_path, "ata_pio", disk=True)
    record(spec, base / "t.trace", base=base)
    original, flags = ata.COMMANDS[ata.Cmd.IDENTIFY_DEVICE]

    def identify(self, cmd):
        done = original(self, cmd)
        self.st.io_buffer[20] ^= 0xFF     # a serial-number byte
        return done
    monkeypatch.setitem(ata.COMMANDS, ata.Cmd.IDENTIFY_DEVICE, (identify, flags))
    d = replay(base / "t.trace", base=base).divergence
    assert d is not None and d.expected["kind"] == "ata_command" and d.expected["name"] == "IDENTIFY_DEVICE"
    assert d.expected["data_crc32"] != d.actual["data_crc32"]


def test_truncated_trace_replay_is_one_error(work, tmp_path):
    base, spec = fresh(work, tmp_path, "hello")
    record(spec, base / "t.trace", base=base)
    data = (base / "t.trace").read_bytes()
    (base / "t.trace").write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match="truncated"):
        replay(base / "t.trace", base=base)


def test_missing_input_is_refused(work, tmp_path):
    base, spec = fresh(work, tmp_path, "hello")
    record(spec, base / "t.trace", base=base)
    (base / "hello.elf").unlink()
    with pytest.raises(TraceError, match="replay refused: kernel hello.elf is missing"):
        replay(base / "t.trace", base=base)


def test_run_record_helper_with_exit_logging_controls(work, tmp_path):
    """`emu run --record` attaches a Recording to the machine it built; the VMX controls it set are replayed."""
    from emu.machine import Machine, MachineConfig
    from emu.trace.session import Recording, in_directory

    base, _spec = fresh(work, tmp_path, "hello")
    with in_directory(base):
        m = Machine(MachineConfig(kernel="hello.elf"), console=lambda b: None)
        from emu.vmx.controls import PrimaryControls
        m.vmx.controls.primary |= PrimaryControls.UNCONDITIONAL_IO | PrimaryControls.HLT
        rec = Recording(m, "t.trace")
        result = m.run()
        rec.finish(result)
        m.close()
    trace = TraceReader(base / "t.trace")
    assert trace.header["config"]["disk_mode"] == "in-place" and trace.header["config"]["vmx_controls"]["primary"]
    kinds = trace.counts()
    assert kinds["vmexit"] >= kinds["io"] > 100          # every port access is also a VM exit now
    result = replay(base / "t.trace", base=base)
    assert result.ok, result.report()
