"""The debugger drives the guest through ``Machine.advance`` (one loop): under every VMX control setting, stepping or
continuing under the debugger gives exactly the VM exits of ``Machine.run`` (reason, RIP, instruction count),
handlers' decisions included; ``break-exit`` listens to the VMX layer; under a host the scheduler's rules hold.

Oracle: ``Machine.run`` of the same kernel with the same controls (the run the VMX tests check against the SDM).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emu.debug.api import Session
from emu.debug.machine_target import MachineTarget, host_target
from emu.debug.target import ResumeAction, ResumeKind, StopKind
from emu.machine import EndReason, Machine, MachineConfig
from emu.vmx.bitmaps import set_msr_bitmap
from emu.vmx.controls import PinControls, PrimaryControls as P
from emu.vmx.monitor import Decision
from emu.vmx.reasons import ExitReason
from tests.conftest import FIRMWARE, ROOT
from tests.debug.firmware import VMX_EXITS, code_bytes
from tools.qemu_ref import make_reference_disk

PIC_PIT = FIRMWARE / "pic_pit.elf"
EXT = PinControls.EXTERNAL_INTERRUPT_EXITING

SETTINGS = {
    "hlt": (P.HLT, 0),
    "interrupt-window": (P.INTERRUPT_WINDOW, 0),
    "external-interrupt": (0, EXT),
    "mtf": (P.MONITOR_TRAP_FLAG, 0),
    "io": (P.UNCONDITIONAL_IO, 0),
    "all": (P.HLT | P.INTERRUPT_WINDOW | P.UNCONDITIONAL_IO | P.MONITOR_TRAP_FLAG | P.RDTSC, EXT),
}


def _machine(kernel: Path, primary=0, pin=0, disk: Path | None = None) -> tuple[Machine, list]:
    m = Machine(MachineConfig(kernel=str(kernel), disks=[str(disk)] if disk else []), console=lambda b: None)
    m.vmx.controls.primary |= primary
    m.vmx.controls.pin |= pin
    seen: list = []
    m.vmx.observers.append(lambda r: seen.append((r.reason.name, r.rip, r.icount)))
    return m, seen


def _free_run(kernel: Path, primary, pin, disk=None, max_insns=None, handlers=None) -> tuple[Machine, list]:
    m, seen = _machine(kernel, primary, pin, disk)
    for reason, handler in (handlers or {}).items():
        m.vmx.on(reason, handler)
    result = m.run(max_insns=max_insns)
    while result.reason is EndReason.STOPPED:       # a handler's STOP: resumable
        result = m.run(max_insns=None if max_insns is None else max_insns - m.cpu.icount)
    return m, seen


def _kinds(seen: list) -> set[str]:
    return {s[0] for s in seen}


STEP_FROM = 16000
"""vmx_exits' MSR, CPUID, RDTSC, HLT woken by the PIT, INT3 and final I/O come after this count (the whole kernel,
disk I/O included, is single-stepped with every control on in test_machine_target)."""


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_stepping_gives_the_exits_of_machine_run(setting: str) -> None:
    """Continue to STEP_FROM, then single-step vmx_exits to its end: the exit list equals Machine.run's, every step
    retired exactly one instruction, and ``monitor exits`` lists the same exits."""
    primary, pin = SETTINGS[setting]
    ref, want = _free_run(VMX_EXITS, primary, pin)
    m, seen = _machine(VMX_EXITS, primary, pin)
    t = MachineTarget(m)
    assert t.advance(t.guests[0], until_icount=STEP_FROM).kind is StopKind.SIGNAL and m.cpu.icount == STEP_FROM
    step = {1: ResumeAction(ResumeKind.STEP)}
    while True:
        before = m.cpu.icount
        ev = t.resume(step)
        if ev.kind is not StopKind.SIGNAL:
            break
        assert m.cpu.icount == before + 1, (setting, hex(m.cpu.reg("eip")))
    assert seen == want
    assert (m.cpu.icount, bytes(m.console_bytes)) == (ref.cpu.icount, bytes(ref.console_bytes))
    expected = {"hlt": {"HLT"}, "interrupt-window": {"INTERRUPT_WINDOW"}, "external-interrupt": {"EXTERNAL_INTERRUPT"},
                "mtf": {"MONITOR_TRAP_FLAG"}, "io": {"IO_INSTRUCTION"},
                "all": {"HLT", "INTERRUPT_WINDOW", "EXTERNAL_INTERRUPT", "MONITOR_TRAP_FLAG", "IO_INSTRUCTION",
                        "RDTSC"}}[setting]
    assert expected <= _kinds(s for s in want if s[2] >= STEP_FROM)   # the stepped part has them: not vacuous
    assert [(r.reason_name, r.rip, r.icount) for r in t.guests[0].exits] == want[-4096:]   # `monitor exits`


@pytest.mark.parametrize("setting", sorted(set(SETTINGS) - {"mtf"}))
def test_continuing_vmx_exits_gives_the_exits_of_machine_run(setting: str) -> None:
    """Session.cont() over all of vmx_exits (MTF: test_mtf_step_and_run_agree) gives Machine.run's exits."""
    primary, pin = SETTINGS[setting]
    primary &= ~P.MONITOR_TRAP_FLAG
    ref, want = _free_run(VMX_EXITS, primary, pin)
    m, seen = _machine(VMX_EXITS, primary, pin)
    stop = Session(m).cont()
    assert stop.kind == "ended" and stop.status == ref.end.status == 1
    assert seen == want and m.cpu.icount == ref.cpu.icount


# sti; nop; nop; nop; nop; mov al, 0; out 0xf4, al (isa-debug-exit): IF goes 1 with nothing pending, no HLT follows
WINDOW_CODE = bytes.fromhex("fb90909090b000e6f4")


@pytest.mark.parametrize("how", ["run", "run in slices", "step", "continue"])
def test_interrupt_window_exit_comes_right_after_the_sti_shadow(how: str) -> None:
    """Interrupt-window exiting with IF = 0 at entry: the exit comes before the first instruction after `sti` and
    its shadow (SDM Vol. 3C §26.7.5: RFLAGS.IF = 1 and no STI blocking), whatever stops the run in between."""
    m, seen = _machine(VMX_EXITS, P.INTERRUPT_WINDOW)
    m.cpu.write_virt(m.cpu.reg("eip"), WINDOW_CODE)
    entry = m.cpu.reg("eip")
    if how == "run":
        m.run()
    elif how == "run in slices":
        while m.run(max_insns=1).reason is EndReason.MAX_INSNS:
            pass
    elif how == "step":
        s = Session(m)
        while s.step().kind == "step":
            pass
    else:
        Session(m).cont()
    assert m.end is not None and m.end.reason is EndReason.DEBUG_EXIT
    assert seen == [("INTERRUPT_WINDOW", entry + 2, 2)]


@pytest.mark.slow
def test_continuing_pic_pit_gives_the_exits_of_machine_run() -> None:
    """pic_pit with HLT, interrupt-window and external-interrupt exiting: Machine.run sees HLT x18,
    INTERRUPT_WINDOW x1, EXTERNAL_INTERRUPT x18; Session.cont() under the debugger sees the same exits."""
    primary, pin = P.HLT | P.INTERRUPT_WINDOW, EXT
    ref, want = _free_run(PIC_PIT, primary, pin)
    m, seen = _machine(PIC_PIT, primary, pin)
    stop = Session(m).cont()
    assert stop.kind == "ended" and stop.status == ref.end.status
    assert seen == want and m.cpu.icount == ref.cpu.icount
    assert [sum(1 for s in want if s[0] == k) for k in ("HLT", "INTERRUPT_WINDOW", "EXTERNAL_INTERRUPT")] == [18, 1, 18]


def test_mtf_step_and_run_agree() -> None:
    """Monitor trap flag: Machine.run(max_insns=50) and Session.step(50) both give 50 MTF exits, the same ones."""
    _ref, want = _free_run(VMX_EXITS, P.MONITOR_TRAP_FLAG, 0, max_insns=50)
    m, seen = _machine(VMX_EXITS, P.MONITOR_TRAP_FLAG)
    Session(m).step(50)
    assert seen == want and [s[0] for s in want] == ["MONITOR_TRAP_FLAG"] * 50
    m2, seen2 = _machine(VMX_EXITS, P.MONITOR_TRAP_FLAG)
    assert Session(m2).run_until(50).icount == 50 and seen2 == want


def test_handlers_decisions_are_applied_under_the_debugger() -> None:
    """A VMM's handlers: CPUID skipped (EAX keeps its value), HLT stops the run (STOPPED, resumable). Under the
    debugger the STOP is a stop (SIGTRAP) and the rest of the run is Machine.run's."""
    handlers = {ExitReason.CPUID: lambda r, mon: Decision.SKIP, ExitReason.HLT: lambda r, mon: Decision.STOP}
    ref, want = _free_run(VMX_EXITS, P.HLT, 0, handlers=handlers)
    m, seen = _machine(VMX_EXITS, P.HLT)
    for reason, handler in handlers.items():
        m.vmx.on(reason, handler)
    s = Session(m)
    stop = s.cont()
    assert stop.kind == "limit" and "stopped at a HLT exit" in stop.message
    assert code_bytes(VMX_EXITS, stop.eip - 1, 1) == b"\xf4"         # right after the hlt
    while stop.kind != "ended":
        stop = s.cont()
    assert seen == want and bytes(m.console_bytes) == bytes(ref.console_bytes)
    assert b"cpuid" in bytes(ref.console_bytes).lower()


def test_break_exit_cpuid_rdmsr_wrmsr_stop_after_the_instruction() -> None:
    """vmx_exits executes CPUID once, RDMSR and WRMSR three times each: break-exit stops right after the exiting
    instruction (EIP = rip + 2, one more instruction retired), with the MSR filter applied."""
    _ref, want = _free_run(VMX_EXITS, 0, 0)
    cpuid = [s for s in want if s[0] == "CPUID"]
    rdmsr = [s for s in want if s[0] == "RDMSR"]
    wrmsr = [s for s in want if s[0] == "WRMSR"]
    assert (len(cpuid), len(rdmsr), len(wrmsr)) == (1, 3, 3)
    m, _seen = _machine(VMX_EXITS)
    t = MachineTarget(m)
    assert t.monitor("break-exit CPUID").startswith("will stop after exits CPUID")
    ev = t.resume({1: ResumeAction(ResumeKind.CONTINUE)})
    rec = t.guests[0].exits[-1]
    assert "CPUID" in ev.info and (rec.rip, rec.icount) == cpuid[0][1:]
    assert code_bytes(VMX_EXITS, rec.rip, 2) == b"\x0f\xa2"
    assert m.cpu.reg("eip") == rec.rip + 2 and m.cpu.icount == rec.icount + 1
    assert t.resume({1: ResumeAction(ResumeKind.CONTINUE)}).kind is StopKind.EXITED
    # every RDMSR of the kernel (they come before the CPUID), then only one MSR with the filter
    m, _seen = _machine(VMX_EXITS)
    t = MachineTarget(m)
    msrs = []
    t.monitor("break-exit RDMSR")
    for want_rd in rdmsr:
        ev = t.resume({1: ResumeAction(ResumeKind.CONTINUE)})
        rec = t.guests[0].exits[-1]
        assert "RDMSR" in ev.info and (rec.rip, rec.icount) == want_rd[1:]
        assert code_bytes(VMX_EXITS, rec.rip, 2) == b"\x0f\x32"
        assert m.cpu.reg("eip") == rec.rip + 2 and m.cpu.icount == rec.icount + 1
        msrs.append(rec.msr)
    t.monitor("clear-exit")
    assert t.resume({1: ResumeAction(ResumeKind.CONTINUE)}).kind is StopKind.EXITED
    # a fresh run: break only on the last MSR read (msr= filter)
    m2, _ = _machine(VMX_EXITS)
    s = Session(m2)
    stop = s.next_exit("WRMSR")                          # the kernel writes its MSRs first
    assert (stop.exit.rip, stop.exit.icount) == wrmsr[0][1:] and stop.eip == wrmsr[0][1] + 2
    stop = s.next_exit("RDMSR", msr=msrs[-1])
    first = next(r for r, msr in zip(rdmsr, msrs) if msr == msrs[-1])
    assert stop.kind == "exit" and stop.exit.msr == msrs[-1] and (stop.exit.rip, stop.exit.icount) == first[1:]
    assert stop.eip == first[1] + 2


def test_break_exit_turns_on_what_it_needs_and_restores_it() -> None:
    """HLT exiting is off by default: break-exit HLT turns it on while set (the VMM's MSR bitmap too) and clearing
    restores the controls exactly; a reason emu never produces, or a filter that cannot match, is refused."""
    m, _ = _machine(VMX_EXITS)
    c = m.vmx.controls
    c.primary |= P.USE_MSR_BITMAPS
    before = (c.primary, c.pin, c.exception_bitmap, bytes(c.msr_bitmap), bytes(c.io_bitmap_a))
    t = MachineTarget(m)
    assert "(turned on hlt exiting)" in t.monitor("break-exit HLT")
    assert c.primary & P.HLT
    assert "MSR-bitmap read bit of 0x10" in t.monitor("break-exit RDMSR msr=0x10")
    assert "exception-bitmap bits 0-31" in t.monitor("break-exit EXCEPTION_NMI")
    ev = t.resume({1: ResumeAction(ResumeKind.CONTINUE)})
    assert "HLT" in ev.info or "RDMSR" in ev.info or "EXCEPTION_NMI" in ev.info
    t.monitor("clear-exit")
    assert (c.primary, c.pin, c.exception_bitmap, bytes(c.msr_bitmap), bytes(c.io_bitmap_a)) == before
    for line, why in (("break-exit EPT_VIOLATION", "emu never produces EPT_VIOLATION exits"),
                      ("break-exit HLT port=0x20", "port= only applies to IO_INSTRUCTION"),
                      ("break-exit EXCEPTION_NMI vector=0x80", "INT n and external interrupts never"),
                      ("break-exit CPUID msr=0x10", "msr= only applies to RDMSR and WRMSR")):
        out = t.monitor(line)
        assert out.startswith("error: ") and why in out and out.count("\n") == 1, out
    with pytest.raises(ValueError, match="never produces"):
        Session(_machine(VMX_EXITS)[0]).next_exit("XSETBV")


def test_release_leaves_the_machine_as_without_a_debugger() -> None:
    """After detach (``release``) no observer, hook or control of the debugger is left: Machine.run is unchanged."""
    ref, want = _free_run(VMX_EXITS, 0, 0)
    m, seen = _machine(VMX_EXITS)
    t = MachineTarget(m)
    t.monitor("break-exit IO_INSTRUCTION port=0x21")
    t.resume({1: ResumeAction(ResumeKind.CONTINUE)})
    n, k = len(seen), m.cpu.icount
    t.release()
    assert len(m.vmx.observers) == 1 and m.break_before is None      # only this test's observer is left
    assert not m.vmx.controls.primary & P.UNCONDITIONAL_IO
    assert m.run().reason is EndReason.DEBUG_EXIT
    assert seen[n:] == [w for w in want if w[2] >= k] != []
    assert bytes(m.console_bytes) == bytes(ref.console_bytes)


# --- emu host --gdb ------------------------------------------------------------------------------------------
DEMO = ROOT / "fixtures" / "demo"
FW = ROOT / "firmware" / "build"


DEADLINE = 3_000
"""Instructions the management guest may retire in a validation window (a few dozen PIT ticks of the hung guest)."""


def _silent_mgmt_scenario(tmp_path: Path) -> Path:
    """The guest-validation scenario with a management guest that never answers (hang=1) and a short deadline."""
    disk = tmp_path / "app.img"
    shutil.copyfile(DEMO / "demo.img", disk)
    text = (DEMO / "scenario-guest.toml").read_text()
    text = text.replace('"../../firmware/build/', f'"{FW}/').replace('disks = ["demo.img"]', f'disks = ["{disk}"]')
    text = text.replace('baseline = "demo-etc.baseline.json"', f'baseline = "{DEMO / "demo-etc.baseline.json"}"')
    text = text.replace('cmdline = "hz=1000 ticks=400 log=50 check=100 tamper=250 vlan=99"',
                        'cmdline = "hz=1000 ticks=100 log=50 check=100 tamper=0"')
    text = text.replace('cmdline = "hz=1000 jobs=0 ticks=300 trywrite=1"', 'cmdline = "hz=1000 hang=1"')
    text = text.replace("deadline_insns = 20000000", f"deadline_insns = {DEADLINE}")
    text = text.replace("seed = 7", "seed = 7\nmax_ns = 4000000000")
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_host_under_the_debugger_keeps_the_validation_deadline(tmp_path) -> None:
    """emu host --gdb: the management guest never answers; the trap handler's poll still ends the validation window
    at its deadline (a failed validation), the application guest does not run while its disk is away, and the
    host's virtual-time limit ends the silent guest, as without a debugger."""
    from emu.hypervisor.host import Host
    from emu.hypervisor.scenario import load

    host = Host(load(_silent_mgmt_scenario(tmp_path)))
    try:
        app = host.machines["app"]
        ran_detached = []
        app.vmx.observers.append(lambda r: ran_detached.append(r) if "app" in host.detached else None)
        app.vmx.controls.primary |= P.UNCONDITIONAL_IO   # app's I/O exits show when it runs
        t = host_target(host)                      # what `emu host --gdb` serves
        both = {1: ResumeAction(ResumeKind.CONTINUE), 2: ResumeAction(ResumeKind.CONTINUE)}
        ev = t.resume(both)
        while ev.kind is StopKind.SIGNAL:
            ev = t.resume(both)
        failed = [e for e in host.events if e.get("block") == 410]
        assert failed and failed[0]["clean"] is False
        assert failed[0]["error"].startswith(f"management guest did not finish within {DEADLINE} instructions")
        retired = int(failed[0]["error"].split("it retired ")[1].split()[0])
        assert DEADLINE < retired <= DEADLINE + 1000          # polled after every turn of the debugger
        assert not ran_detached                                    # block 370: not scheduled without its disk
        summary = host.summary()
        assert summary["guests"]["app"]["status"] == 1
        assert "virtual-time limit" in summary["guests"]["mgmt"]["end"]
    finally:
        host.close()


def test_host_step_of_a_guest_that_is_not_scheduled() -> None:
    """A paused guest (the trap handler's restriction) does not run when stepped: the stop says why."""
    from emu.hypervisor.host import Host
    from emu.hypervisor.scenario import load

    host = Host(load(DEMO / "scenario.toml"))
    try:
        t = host_target(host)
        host.guests["app"].paused = True
        n = host.machines["app"].cpu.icount
        ev = t.resume({1: ResumeAction(ResumeKind.STEP)})
        assert ev.kind is StopKind.SIGNAL and "paused" in ev.info and host.machines["app"].cpu.icount == n
        ev = t.resume({1: ResumeAction(ResumeKind.CONTINUE)})
        assert "no guest can run" in ev.info and host.machines["app"].cpu.icount == n
        host.guests["app"].paused = False
        t.resume({1: ResumeAction(ResumeKind.STEP)})
        assert host.machines["app"].cpu.icount == n + 1
    finally:
        host.close()
