// SPDX-License-Identifier: GPL-2.0
//! The KVM hooks: the `kvm_entry` and `kvm_exit` tracepoint probes, registered by the C
//! shim while at least one VM is attached (`registry.rs`).
//!
//! Both run in `vmx_vcpu_run()` with IRQs off and the vCPU's VMCS current, once per
//! hardware VM entry or exit, for every VM on the host: they must not sleep, and for a VM
//! elisa does not know they cost one registry lookup and no call. `kvm_entry` fires after
//! KVM loaded its MMU root and before it writes `GUEST_RIP`/`GUEST_RSP`,
//! `HOST_CR3`/`HOST_CR4` and a few more fields; elisa never writes those (see `vmx.rs`).

use crate::{registry, shim, vmx};
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Offsets of the `struct kvm_vcpu` fields read here (`shim::VcpuLayout`), set once at
/// module init, before any hook can run.
static OFF_KVM: AtomicU32 = AtomicU32::new(0);
static OFF_IDX: AtomicU32 = AtomicU32::new(0);
static OFF_HFLAGS: AtomicU32 = AtomicU32::new(0);
static GUEST_MODE: AtomicU32 = AtomicU32::new(0);
static OFF_REGS: AtomicU32 = AtomicU32::new(0);
static OFF_RIP: AtomicU32 = AtomicU32::new(0);
static OFF_EFER: AtomicU32 = AtomicU32::new(0);

/// Indexes of `vcpu->arch.regs` (KVM's `enum kvm_reg`, the x86 encoding): 0 `RAX` ...
/// 15 `R15`.
pub(crate) const RSP: usize = 4;
pub(crate) const R11: usize = 11;
/// Number of general registers.
pub(crate) const NR_GPRS: usize = 16;

/// Reads the vCPU layout from the shim. Module init.
pub(crate) fn init() {
    let mut l = shim::VcpuLayout::default();
    // SAFETY: `l` is a valid, writable `struct elisa_vcpu_layout`.
    unsafe { shim::elisa_shim_vcpu_layout(&mut l) };
    OFF_KVM.store(l.kvm, Relaxed);
    OFF_IDX.store(l.vcpu_idx, Relaxed);
    OFF_HFLAGS.store(l.hflags, Relaxed);
    GUEST_MODE.store(l.guest_mode, Relaxed);
    OFF_REGS.store(l.regs, Relaxed);
    OFF_RIP.store(l.rip, Relaxed);
    OFF_EFER.store(l.efer, Relaxed);
}

fn reg_ptr(vcpu: *mut c_void, r: usize) -> *mut u64 {
    let off = OFF_REGS.load(Relaxed) as usize + (r % 16) * 8;
    vcpu.cast::<u8>().wrapping_add(off).cast()
}

/// KVM's copy of general register `r` (0..16) of `vcpu`. Only from the vCPU's own probes:
/// between VM exit and entry these copies are what the guest gets at the next entry.
pub(crate) fn gpr(vcpu: *mut c_void, r: usize) -> u64 {
    // SAFETY: `vcpu` is live (the probe's, or kept by the VM reference), `reg_ptr` is inside
    // its `arch.regs` (`r % 16`), and only the vCPU's own thread touches it in a probe.
    unsafe { reg_ptr(vcpu, r).read() }
}

/// Sets KVM's copy of general register `r` (0..16). Only from the vCPU's own probes.
pub(crate) fn set_gpr(vcpu: *mut c_void, r: usize, v: u64) {
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

/// The vCPU's VM record and index, unless elisa does not know the VM or the vCPU runs a
/// nested guest (then the current VMCS is KVM's vmcs02, which elisa leaves alone).
#[inline(always)]
fn find(vcpu: *mut c_void) -> Option<(&'static registry::VmRecord, u32)> {
    let base = vcpu.cast::<u8>();
    // SAFETY: the tracepoint passes a live `struct kvm_vcpu`, and the offsets are those
    // of its `kvm` pointer, `vcpu_idx` and `arch.hflags` fields (from the shim).
    let (kvm, idx, hflags) = unsafe {
        (
            base.add(OFF_KVM.load(Relaxed) as usize)
                .cast::<*mut c_void>()
                .read(),
            base.add(OFF_IDX.load(Relaxed) as usize)
                .cast::<u32>()
                .read(),
            base.add(OFF_HFLAGS.load(Relaxed) as usize)
                .cast::<u32>()
                .read(),
        )
    };
    let rec = registry::lookup(kvm)?;
    if hflags & GUEST_MODE.load(Relaxed) != 0 {
        return None;
    }
    Some((rec, idx))
}

/// The `kvm_entry` probe (`TP_PROTO(struct kvm_vcpu *vcpu, bool force_immediate_exit)`).
/// The lookup is inlined; the work for an attached VM is out of line, so that a VM elisa
/// does not know pays no register saves.
#[no_mangle]
extern "C" fn elisa_rust_kvm_entry(_data: *mut c_void, vcpu: *mut c_void, _force: bool) {
    if let Some((rec, idx)) = find(vcpu) {
        entry_attached(rec, vcpu, idx);
    }
}

#[inline(never)]
fn entry_attached(rec: &registry::VmRecord, vcpu: *mut c_void, idx: u32) {
    // SAFETY: called from the kvm_entry probe for `vcpu`, which is not in guest mode.
    let vmcs = unsafe { vmx::CurrentVmcs::assume() };
    rec.on_entry(vcpu, idx, &vmcs);
}

/// The `kvm_exit` probe (`TP_PROTO(struct kvm_vcpu *vcpu, u32 isa)`).
#[no_mangle]
extern "C" fn elisa_rust_kvm_exit(_data: *mut c_void, vcpu: *mut c_void, _isa: u32) {
    if let Some((rec, idx)) = find(vcpu) {
        exit_attached(rec, idx);
    }
}

#[inline(never)]
fn exit_attached(rec: &registry::VmRecord, idx: u32) {
    // SAFETY: called from the kvm_exit probe for a vCPU that is not in guest mode.
    let vmcs = unsafe { vmx::CurrentVmcs::assume() };
    rec.on_exit(idx, &vmcs);
}
