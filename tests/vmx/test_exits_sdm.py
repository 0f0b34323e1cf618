"""VM exits of firmware kernels checked field by field against the SDM (Vol. 3C ch. 25-28, /work/shared/notes).

Expected values are computed here, not with emu's decoders: capstone decodes the kernel's own bytes (text_bytes
reads the ELF file, not guest memory), and the fields are assembled from the SDM layouts:
- exit qualification: INVLPG = the linear-address operand (Table 28-1); CR access (Table 28-3): bits 3:0 CR,
  5:4 access type, 11:8 GPR; cleared (0) for every other exit used here (CPUID, HLT, RDTSC, RDMSR, WRMSR, VMCALL,
  exceptions without #PF/#DB, external interrupts, triple fault) - §28.2.1 "for all other VM exits, the field
  is cleared";
- VM-exit interruption information (§25.9.2, Table 25-17): vector 7:0, type 10:8, error-code valid 11, valid 31;
- interruptibility state (§25.4.2, Table 25-3): bit 0 blocking by STI (STI executed with IF = 0), bit 1 blocking
  by MOV SS / POP SS;
- activity state (§25.4.2, §28.3.4): 1 (HLT) when the processor was in the HLT state at the exit.
"""
from __future__ import annotations

import functools
import re

import capstone
import pytest
from capstone import x86_const as X

from emu.machine import Machine, MachineConfig
from emu.vmx.controls import PinControls, PrimaryControls
from emu.vmx.reasons import ExitReason
from tests.vmx.test_exits_firmware import FW, qemu_ref, run_logged, text_bytes

CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
CS.detail = True
GPRS = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]
VALID = 1 << 31


def insn_at(kernel: str, rip: int):
    return next(CS.disasm(text_bytes(FW / kernel, rip), rip, 1))


@functools.lru_cache(maxsize=None)
def shadow_setter_before(kernel: str, rip: int) -> bool:
    """Could the instruction ending at ``rip`` be STI (FB), POP SS (17) or MOV SS, r/m (8E /2)?"""
    before = text_bytes(FW / kernel, rip - 8, 8)
    if before[-1] in (0xFB, 0x17):
        return True
    return any(before[-k] == 0x8E and (before[-k + 1] >> 3) & 7 == 2 for k in range(2, 9))


@pytest.fixture(scope="module")
def vmx_exits(tmp_path_factory):
    """vmx_exits with HLT, INVLPG, RDTSC, CR3-load/store and unconditional I/O exiting, int3 in the exception
    bitmap, guest/host masks that make its `mov cr0, eax` (PE differs from the shadow) and `mov cr4, edx` (PSE)
    exit, and external-interrupt exiting."""
    tmp = tmp_path_factory.mktemp("sdm")
    m, result, exits = run_logged("vmx_exits.elf", tmp, ["HLT", "INVLPG", "RDTSC", "CR3_LOAD", "CR3_STORE",
                                                           "UNCONDITIONAL_IO"],
                                  exceptions=1 << 3, setup=_masks)
    assert result.status == 1
    return exits


def _masks(m: Machine) -> None:
    m.vmx.controls.cr0_guest_host_mask, m.vmx.controls.cr0_read_shadow = 0x1, 0x0
    m.vmx.controls.cr4_guest_host_mask, m.vmx.controls.cr4_read_shadow = 0x10, 0x0
    m.vmx.controls.pin |= PinControls.EXTERNAL_INTERRUPT_EXITING


def of(exits, reason):
    return [e for e in exits if e.reason is reason]


def test_invlpg_qualification_is_the_linear_address_operand(vmx_exits):
    invlpg = of(vmx_exits, ExitReason.INVLPG)
    assert len(invlpg) == 1
    for e in invlpg:
        insn = insn_at("vmx_exits.elf", e.rip)
        assert insn.mnemonic == "invlpg" and e.insn_len == insn.size
        mem = insn.operands[0].mem
        ea = mem.disp
        if mem.base:
            ea += e.regs[insn.reg_name(mem.base)]
        if mem.index:
            ea += e.regs[insn.reg_name(mem.index)] * mem.scale
        assert mem.segment in (0, X.X86_REG_DS) and e.regs["ds"] == 0x10   # the kernel's flat data segment: base 0
        assert e.qualification == ea & 0xFFFFFFFF
    assert invlpg[0].qualification == 0x00100000      # invlpg(0x00100000) in vmx_exits.c


@pytest.mark.parametrize("reason,mnemonic,count", [
    (ExitReason.CPUID, "cpuid", 1), (ExitReason.RDTSC, "rdtsc", 2), (ExitReason.HLT, "hlt", 1),
    (ExitReason.RDMSR, "rdmsr", 3), (ExitReason.WRMSR, "wrmsr", 3)])
def test_exits_without_a_qualification_clear_it(vmx_exits, reason, mnemonic, count):
    exits = of(vmx_exits, reason)
    assert len(exits) == count
    for e in exits:
        insn = insn_at("vmx_exits.elf", e.rip)
        assert (insn.mnemonic, e.insn_len, e.qualification) == (mnemonic, insn.size, 0)
        assert e.rip == e.regs["eip"] and e.interruption is None


def test_vmcall_exit_clears_the_qualification(tmp_path):
    m, result, exits = run_logged("hypercall.elf", tmp_path, disk=False)
    calls = of(exits, ExitReason.VMCALL)
    assert len(calls) == 2
    assert [(insn_at("hypercall.elf", e.rip).bytes, e.insn_len, e.qualification) for e in calls] == \
        [(bytearray(b"\x0f\x01\xc1"), 3, 0)] * 2


def test_cr_access_qualifications(vmx_exits):
    """Every MOV CR exit: CR number, direction and GPR from capstone's operands; the kernel's `mov cr3, eax` is 0x3,
    its `mov cr0, eax` (PE against a shadow of 0) is 0x0 and `mov cr4, edx` (PSE) is 0x204."""
    seen = {}
    for e in of(vmx_exits, ExitReason.CR_ACCESS):
        insn = insn_at("vmx_exits.elf", e.rip)
        dst, src = [x.strip() for x in insn.op_str.split(",")]
        to_cr = dst.startswith("cr")
        cr, gpr = (int(dst[2:]), src) if to_cr else (int(src[2:]), dst)
        assert e.qualification == cr | (0 if to_cr else 1) << 4 | GPRS.index(gpr) << 8
        assert e.insn_len == insn.size == 3 and e.guest_linear is None
        seen[insn.mnemonic + " " + insn.op_str] = e.qualification
    assert seen["mov cr3, eax"] == 0x3
    assert seen["mov cr0, eax"] == 0x0
    assert seen["mov cr4, edx"] == 0x204
    assert "mov cr4, eax" not in seen   # restores CR4.PSE = 0 = the shadow: no exit (SDM §26.1.3)
    # MOV from CR0/CR4 never exits (reads return the shadow for owned bits); the kernel reads CR3 three times
    assert {k for k in seen if ", cr" in k} == {"mov eax, cr3", "mov edx, cr3", "mov ecx, cr3"}


def test_int3_interruption_information(vmx_exits):
    int3 = of(vmx_exits, ExitReason.EXCEPTION_NMI)
    assert len(int3) == 1
    e = int3[0]
    assert text_bytes(FW / "vmx_exits.elf", e.rip, 1) == b"\xcc"
    assert e.interruption.encode() == VALID | 6 << 8 | 3 == 0x80000603    # software exception, vector 3
    assert (e.insn_len, e.error_code, e.qualification) == (1, None, 0)


def test_no_blocking_reported_where_no_sti_or_mov_ss_precedes(vmx_exits):
    checked = 0
    for e in vmx_exits:
        if e.reason in (ExitReason.EXTERNAL_INTERRUPT, ExitReason.EXCEPTION_NMI):
            assert e.interruptibility.encode() == 0
        elif not shadow_setter_before("vmx_exits.elf", e.rip):
            assert e.interruptibility.encode() == 0, (e.reason, hex(e.rip))
            checked += 1
    assert checked > 1000


def test_hlt_right_after_sti_reports_blocking_by_sti(vmx_exits):
    """vmx_exits' sti_hlt() runs `sti; hlt` with IF = 0 (after cli): the HLT exit happens inside the STI shadow."""
    hlt = of(vmx_exits, ExitReason.HLT)
    assert text_bytes(FW / "vmx_exits.elf", hlt[0].rip - 1, 1) == b"\xfb"
    assert hlt[0].interruptibility.encode() == 1


def test_external_interrupt_exit_in_vmx_exits(vmx_exits):
    """The PIT interrupt that wakes the HLT: vector 0x20 (vmx_exits remaps the master PIC to 0x20), type 0."""
    ext = of(vmx_exits, ExitReason.EXTERNAL_INTERRUPT)
    assert [(e.interruption.encode(), e.insn_len, e.qualification, e.error_code) for e in ext] == \
        [(VALID | 0x20, 0, 0, None)]
    assert ext[0].rip == of(vmx_exits, ExitReason.HLT)[0].next_rip     # the HLT completed before the interrupt


def test_invlpg_qualification_adds_the_segment_base():
    """`invlpg es:[ebx+esi*4+0x10]` with ES.base = 0x100000: the qualification is the LINEAR address (Table 28-1)."""
    m = Machine(MachineConfig(kernel=str(FW / "hello.elf")), console=lambda b: None)
    gdt = (bytes(8) + bytes.fromhex("ffff0000009acf00")         # 0x08 flat code
           + bytes.fromhex("ffff00000092cf00")                   # 0x10 flat data
           + bytes.fromhex("ffff00001092cf00"))                  # 0x18 data, base 0x00100000
    m.cpu.write_phys(0x300000, gdt)
    m.cpu.write_phys(0x300100, (len(gdt) - 1).to_bytes(2, "little") + (0x300000).to_bytes(4, "little"))
    code = (b"\x0f\x01\x15" + (0x300100).to_bytes(4, "little")   # lgdt [0x300100]
            + b"\x66\xb8\x18\x00\x8e\xc0"                         # mov ax, 0x18; mov es, ax
            + b"\xbb\x00\x10\x00\x00\xbe\x03\x00\x00\x00"          # mov ebx, 0x1000; mov esi, 3
            + b"\x26\x0f\x01\x7c\xb3\x10"                         # invlpg es:[ebx+esi*4+0x10]
            + b"\x0f\x01\x7c\xb3\x10"                             # invlpg [ebx+esi*4+0x10]  (DS, base 0)
            + b"\xb0\x00\xe6\xf4")                                 # mov al, 0; out 0xf4, al
    m.cpu.write_phys(0x200000, code)
    m.cpu.set_reg("eip", 0x200000)
    m.vmx.controls.primary |= PrimaryControls.INVLPG
    exits = []
    m.vmx.observers.append(exits.append)
    assert m.run(max_insns=100).status == 1
    m.close()
    assert [(e.rip, e.qualification, e.insn_len) for e in of(exits, ExitReason.INVLPG)] == [
        (0x200017, 0x100000 + 0x1000 + 3 * 4 + 0x10, 6), (0x20001D, 0x1000 + 3 * 4 + 0x10, 5)]


# --- pic_pit: external-interrupt exiting ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pic_pit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pic_pit")
    out = bytearray()
    img = tmp / "disk.img"
    qemu_ref.make_reference_disk(img)
    m = Machine(MachineConfig(kernel=str(FW / "pic_pit.elf"), disks=[str(img)]), console=out.append)
    m.vmx.controls.pin |= PinControls.EXTERNAL_INTERRUPT_EXITING
    m.vmx.controls.primary |= PrimaryControls.HLT
    exits = []
    m.vmx.observers.append(exits.append)
    result = m.run()
    m.close()
    assert result.status == 1
    return out.decode(), exits


def test_external_interrupt_exits_carry_the_pic_vector(pic_pit):
    """pic_pit remaps the PICs to 0x20/0x28. Count, from its own transcript, the IRQ 0 handler runs (timer
    interrupts with sti/hlt and the irq0 entries of the INTA-order lines), the IRQ 14 runs and the spurious IRQ 15:
    each is exactly one exit with interruption information valid | type 0 | vector."""
    out, exits = pic_pit
    assert "WRONG" not in out and "unexpected" not in out and out.endswith("pic_pit done\n")
    irq0 = sum(int(n) for n in re.findall(r"(\d+) (?:timer )?interrupts", out)) + out.count("irq0(")
    irq14 = out.count("irq14(")
    spurious = int(re.search(r"spurious IRQ 15 \(vector 2f\) taken (\d+) time", out).group(1))
    assert (irq0, irq14, spurious) == (24, 6, 1)
    ext = of(exits, ExitReason.EXTERNAL_INTERRUPT)
    infos = [e.interruption.encode() for e in ext]
    assert (infos.count(VALID | 0x20), infos.count(VALID | 0x2E), infos.count(VALID | 0x2F)) == (irq0, irq14, spurious)
    assert len(infos) == irq0 + irq14 + spurious
    for e in ext:
        assert (e.insn_len, e.qualification, e.error_code, e.interruptibility.encode()) == (0, 0, None, 0)
        assert e.regs["eflags"] & 0x200 and e.rip == e.regs["eip"]


def test_an_interrupt_that_wakes_a_hlt_reports_activity_hlt(pic_pit):
    """HLT exits (default: the guest then halts) followed by an external-interrupt exit at the next instruction with
    no instruction retired in between: the processor was in the HLT state (SDM §28.3.4)."""
    out, exits = pic_pit
    woken = [b for a, b in zip(exits, exits[1:]) if a.reason is ExitReason.HLT
             and b.reason is ExitReason.EXTERNAL_INTERRUPT and b.rip == a.next_rip]
    assert len(woken) >= 18
    assert {e.activity.name for e in woken} == {"HLT"}


# --- triple fault ---------------------------------------------------------------------------------------------------

def test_triple_fault_exit(tmp_path):
    m, result, exits = run_logged("triple_fault.elf", tmp_path, disk=False)
    assert result.reason.value == "shutdown" and result.status == 0
    assert [e.reason for e in exits] == [ExitReason.TRIPLE_FAULT]
    assert (int(exits[0].reason), exits[0].qualification, exits[0].insn_len) == (2, 0, 0)


def test_ud2_exit_before_the_triple_fault(tmp_path):
    """With #UD in the exception bitmap the ud2 exits first (hardware exception, vector 6, no error code, length
    undefined = 0), at the ud2 itself; the triple fault (reason 2) is the last exit."""
    m, result, exits = run_logged("triple_fault.elf", tmp_path, exceptions=1 << 6, disk=False)
    assert result.status == 0
    ud = exits[0]
    assert ud.reason is ExitReason.EXCEPTION_NMI and insn_at("triple_fault.elf", ud.rip).mnemonic == "ud2"
    assert (ud.interruption.encode(), ud.insn_len, ud.error_code) == (VALID | 3 << 8 | 6, 0, None)
    assert exits[-1].reason is ExitReason.TRIPLE_FAULT and len(exits) == 2


# --- interruptibility of exits right after STI / MOV SS (code written into a booted hello.elf) -------------------

def run_code(code: bytes):
    """Run ``code`` at 0x200000 (then `mov al, 0; out 0xf4, al`); the CPUID exit's interruptibility state."""
    m = Machine(MachineConfig(kernel=str(FW / "hello.elf")), console=lambda b: None)
    m.cpu.write_phys(0x200000, code + b"\xb0\x00\xe6\xf4")
    m.cpu.set_reg("eip", 0x200000)
    m.cpu.set_reg("esp", 0x280000)
    exits = []
    m.vmx.observers.append(exits.append)
    result = m.run(max_insns=100)
    m.close()
    assert result.status == 1
    cpuid = of(exits, ExitReason.CPUID)
    assert [e.rip for e in cpuid] == [0x200000 + len(code) - 2]
    return cpuid[0].interruptibility.encode()


def test_cpuid_alone_is_not_blocked():
    assert run_code(b"\x0f\xa2") == 0


def test_cpuid_after_sti_with_if_0_is_blocked_by_sti():
    assert run_code(b"\xfa\xfb\x0f\xa2") == 1                 # cli; sti; cpuid


def test_sti_with_if_already_1_blocks_nothing():
    assert run_code(b"\xfb\x90\xfb\x0f\xa2") == 0             # sti; nop; sti; cpuid


@pytest.mark.parametrize("code", [b"\x8c\xd0\x8e\xd0\x0f\xa2",   # mov eax, ss; mov ss, eax; cpuid
                                  b"\x16\x17\x0f\xa2"],           # push ss; pop ss; cpuid
                         ids=["mov-ss", "pop-ss"])
def test_cpuid_after_mov_ss_is_blocked_by_mov_ss(code):
    assert run_code(code) == 2
