// SPDX-License-Identifier: GPL-2.0
//! KVM's per-vCPU state that elisa reads and writes: `vcpu_idx`, the general-register
//! copies, `RIP` and `EFER` of a `struct kvm_vcpu`, at byte offsets the C shim computes for
//! the tree elisa is built against (`elisa_shim_vcpu_layout`), so that the probes' attached
//! path makes no call into C. Used by `vcpu.rs` (park, resume, fail back) and `hooks.rs`.

use crate::shim;
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

/// `vcpu_idx` of `vcpu`.
///
/// # Safety
///
/// `vcpu` is a live `struct kvm_vcpu`.
pub(crate) unsafe fn vcpu_idx(vcpu: *mut c_void) -> u32 {
    // SAFETY: the caller passes a live `struct kvm_vcpu`; the offset is that of its
    // `vcpu_idx` (from the shim).
    unsafe {
        vcpu.cast::<u8>()
            .add(OFF_IDX.load(Relaxed) as usize)
            .cast::<u32>()
            .read()
    }
}
