// SPDX-License-Identifier: GPL-2.0
//! The KVM hooks: what the `kvm_entry` and `kvm_exit` tracepoint probes do for an attached
//! VM. The probes themselves are in the C shim, registered while at least one VM is
//! attached (`registry.rs`); for a VM elisa does not know they cost a hash lookup at entry
//! and one per-CPU load at exit, and call nothing here.
//!
//! Both run in `vmx_vcpu_run()` with IRQs off and the vCPU's VMCS current, once per
//! hardware VM entry or exit: they must not sleep. `kvm_entry` fires after KVM loaded its
//! MMU root and before it writes `GUEST_RIP`/`GUEST_RSP` from its register copies when
//! those are dirty, `HOST_CR3`/`HOST_CR4` and a few more fields; elisa writes the guest
//! registers only through both the VMCS and KVM's copies, so the two agree (see `vmx.rs`).
use crate::{registry, shim, vmx};
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Offsets of the `struct kvm_vcpu` fields read here (`shim::VcpuLayout`), set once at
/// module init, before any hook can run.
static OFF_IDX: AtomicU32 = AtomicU32::new(0);
static OFF_REGS: AtomicU32 = AtomicU32::new(0);
static OFF_RIP: AtomicU32 = AtomicU32::new(0);
static OFF_EFER: AtomicU32 = AtomicU32::new(0);

/// Number of general registers.
pub(crate) const NR_GPRS: usize = 16;

/// A general register, numbered as `vcpu->arch.regs` is indexed (KVM's `enum kvm_reg`,
/// the x86 encoding).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// Every general register, in index order.
    pub(crate) const ALL: [Gpr; NR_GPRS] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// Its index in `vcpu->arch.regs`, below [`NR_GPRS`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Reads the vCPU layout from the shim. Module init.
pub(crate) fn init() {
    let mut l = shim::VcpuLayout::default();
    // SAFETY: `l` is a valid, writable `struct elisa_vcpu_layout`.
    unsafe { shim::elisa_shim_vcpu_layout(&mut l) };
    OFF_IDX.store(l.vcpu_idx, Relaxed);
    OFF_REGS.store(l.regs, Relaxed);
    OFF_RIP.store(l.rip, Relaxed);
    OFF_EFER.store(l.efer, Relaxed);
}

fn reg_ptr(vcpu: *mut c_void, r: Gpr) -> *mut u64 {
    let off = OFF_REGS.load(Relaxed) as usize + r.index() * 8;
    vcpu.cast::<u8>().wrapping_add(off).cast()
}

/// KVM's copy of general register `r` of `vcpu`. Only from the vCPU's own probes: between
/// VM exit and entry these copies are what the guest gets at the next entry.
pub(crate) fn gpr(vcpu: *mut c_void, r: Gpr) -> u64 {
    // SAFETY: `vcpu` is live (the probe's, or kept by the VM reference), `reg_ptr` is inside
    // its `arch.regs` (a `Gpr` indexes one of its 16 entries), and only the vCPU's own
    // thread touches it in a probe.
    unsafe { reg_ptr(vcpu, r).read() }
}

/// Sets KVM's copy of general register `r`. Only from the vCPU's own probes.
pub(crate) fn set_gpr(vcpu: *mut c_void, r: Gpr, v: u64) {
    // SAFETY: as in `gpr`.
    unsafe { reg_ptr(vcpu, r).write(v) }
}

fn field_ptr(vcpu: *mut c_void, off: &AtomicU32) -> *mut u64 {
    vcpu.cast::<u8>()
        .wrapping_add(off.load(Relaxed) as usize)
        .cast()
}

/// KVM's copy of `RIP`. Only from the vCPU's own probes.
pub(crate) fn rip(vcpu: *mut c_void) -> u64 {
    // SAFETY: the offset of `arch.rip` in a live `struct kvm_vcpu`; see `gpr`.
    unsafe { field_ptr(vcpu, &OFF_RIP).read() }
}

/// Sets KVM's copy of `RIP`. Only from the vCPU's own probes.
pub(crate) fn set_rip(vcpu: *mut c_void, v: u64) {
    // SAFETY: the offset of `arch.rip` in a live `struct kvm_vcpu`; see `gpr`.
    unsafe { field_ptr(vcpu, &OFF_RIP).write(v) }
}

/// KVM's `EFER` of the guest (`arch.efer`, which KVM keeps current). Only from the vCPU's
/// own probes.
pub(crate) fn efer(vcpu: *mut c_void) -> u64 {
    // SAFETY: the offset of `arch.efer` in a live `struct kvm_vcpu`; see `gpr`.
    unsafe { field_ptr(vcpu, &OFF_EFER).read() }
}

/// `kvm_entry` for a vCPU of an attached VM, not in guest mode (the shim's probe filtered
/// both). Returns the vCPU state whose settings are now in the VMCS, or null; the shim hands
/// it to the `kvm_exit` that follows on this CPU.
#[no_mangle]
extern "C" fn elisa_rust_kvm_entry(key: *mut shim::HookKey, vcpu: *mut c_void) -> *const c_void {
    // SAFETY: the shim passes the key of a linked record, which is the first field of a
    // `repr(C)` `VmRecord`, freed only after unlink and a grace period; the probe runs with
    // IRQs off (an RCU read side).
    let rec = unsafe { &*key.cast_const().cast::<registry::VmRecord>() };
    let base = vcpu.cast::<u8>();
    // SAFETY: the tracepoint passes a live `struct kvm_vcpu`; the offset is that of its
    // `vcpu_idx` (from the shim).
    let idx = unsafe {
        base.add(OFF_IDX.load(Relaxed) as usize)
            .cast::<u32>()
            .read()
    };
    // SAFETY: called from the kvm_entry probe for `vcpu`, which is not in guest mode.
    let vmcs = unsafe { vmx::CurrentVmcs::assume() };
    match rec.on_entry(vcpu, idx, &vmcs) {
        Some(s) => core::ptr::from_ref(s).cast(),
        None => core::ptr::null(),
    }
}

/// `kvm_exit` for the vCPU whose entry returned `state` on this CPU.
#[no_mangle]
extern "C" fn elisa_rust_kvm_exit(state: *const c_void, _vcpu: *mut c_void) {
    // SAFETY: `state` was returned by `elisa_rust_kvm_entry` for this vCPU's entry, with
    // `in_guest` set; detach frees a state only after its exit (`quiesce`) and after the
    // shim forgot it on every CPU.
    let s = unsafe { &*state.cast::<crate::vcpu::VcpuState>() };
    // SAFETY: called from the kvm_exit probe of the vCPU whose entry set up `s`, which was
    // not in guest mode then and has not run anything but the guest since (IRQs off).
    let vmcs = unsafe { vmx::CurrentVmcs::assume() };
    s.exit(&vmcs);
}
