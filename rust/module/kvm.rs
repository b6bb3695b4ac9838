// SPDX-License-Identifier: GPL-2.0
//! KVM's per-vCPU state that elisa reads and writes: `vcpu_idx`, the general-register
//! copies, `RIP` and `EFER` of a `struct kvm_vcpu`, at byte offsets the C shim computes for
//! the tree elisa is built against (`elisa_shim_vcpu_layout`), so that the probes' attached
//! path makes no call into C. Used by `vcpu.rs` (park, resume, fail back) and `hooks.rs`.

use crate::shim;
use core::ffi::c_void;
use core::ptr::NonNull;
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

/// A `struct kvm_vcpu` of a VM elisa works on: the only way the module holds one.
///
/// # Invariants
///
/// Points to a live `struct kvm_vcpu` for as long as the value exists: it is made from a
/// `kvm_entry` probe's argument, or from `kvm_get_vcpu()` of a VM elisa holds a reference
/// on, and kept only in state that the attachment (and so that reference) outlives.
#[derive(Clone, Copy)]
pub(crate) struct KvmVcpu(NonNull<c_void>);

// SAFETY: the pointer is only dereferenced by the accessors below, per field: KVM's register
// copies only from the vCPU's own probes (one thread at a time), the rest through the
// shim's functions, which are safe from any thread while the VM exists.
unsafe impl Send for KvmVcpu {}
// SAFETY: as above.
unsafe impl Sync for KvmVcpu {}

impl KvmVcpu {
    /// `None` for a null pointer.
    ///
    /// # Safety
    ///
    /// `vcpu` is null or a live `struct kvm_vcpu` that stays live as long as the value: the
    /// probe's argument, used within the probe, or a vCPU of a VM the caller holds a
    /// reference on for as long as it keeps the value.
    pub(crate) unsafe fn from_raw(vcpu: *mut c_void) -> Option<Self> {
        // INVARIANT: the caller guarantees the lifetime.
        NonNull::new(vcpu).map(KvmVcpu)
    }

    fn field(self, off: usize) -> *mut u8 {
        self.0.as_ptr().cast::<u8>().wrapping_add(off)
    }

    fn reg_ptr(self, r: Gpr) -> *mut u64 {
        self.field(OFF_REGS.load(Relaxed) as usize + r.index() * 8)
            .cast()
    }

    /// KVM's `vcpu_idx`.
    pub(crate) fn idx(self) -> u32 {
        // SAFETY: a live `struct kvm_vcpu` (type invariant); the offset is that of its
        // `vcpu_idx` (from the shim), which never changes.
        unsafe {
            self.field(OFF_IDX.load(Relaxed) as usize)
                .cast::<u32>()
                .read()
        }
    }

    /// KVM's copy of general register `r`. Only from the vCPU's own probes: between VM exit
    /// and entry these copies are what the guest gets at the next entry.
    pub(crate) fn gpr(self, r: Gpr) -> u64 {
        // SAFETY: a live `struct kvm_vcpu` (type invariant); `reg_ptr` is inside its
        // `arch.regs` (a `Gpr` indexes one of its 16 entries), and only the vCPU's own
        // thread touches it in a probe.
        unsafe { self.reg_ptr(r).read() }
    }

    /// Sets KVM's copy of general register `r`. Only from the vCPU's own probes.
    pub(crate) fn set_gpr(self, r: Gpr, v: u64) {
        // SAFETY: as in `gpr`.
        unsafe { self.reg_ptr(r).write(v) }
    }

    /// KVM's copy of `RIP`. Only from the vCPU's own probes.
    pub(crate) fn rip(self) -> u64 {
        // SAFETY: the offset of `arch.rip` in a live `struct kvm_vcpu`; see `gpr`.
        unsafe {
            self.field(OFF_RIP.load(Relaxed) as usize)
                .cast::<u64>()
                .read()
        }
    }

    /// Sets KVM's copy of `RIP`. Only from the vCPU's own probes.
    pub(crate) fn set_rip(self, v: u64) {
        // SAFETY: the offset of `arch.rip` in a live `struct kvm_vcpu`; see `gpr`.
        unsafe {
            self.field(OFF_RIP.load(Relaxed) as usize)
                .cast::<u64>()
                .write(v)
        }
    }

    /// KVM's `EFER` of the guest (`arch.efer`, which KVM keeps current). Only from the
    /// vCPU's own probes.
    pub(crate) fn efer(self) -> u64 {
        // SAFETY: the offset of `arch.efer` in a live `struct kvm_vcpu`; see `gpr`.
        unsafe {
            self.field(OFF_EFER.load(Relaxed) as usize)
                .cast::<u64>()
                .read()
        }
    }

    /// Makes the vCPU leave guest mode soon, if it is in it: a no-op IPI to its CPU.
    pub(crate) fn kick(self) {
        // SAFETY: a live `struct kvm_vcpu` (type invariant); the shim reads `vcpu->cpu` and
        // checks it before the IPI.
        unsafe { shim::elisa_shim_kick_cpu(shim::elisa_shim_vcpu_cpu(self.0.as_ptr())) }
    }

    /// Ends the VM's run of this vCPU with `KVM_EXIT_SHUTDOWN` at its next entry attempt.
    /// From the vCPU's own probes.
    pub(crate) fn request_shutdown(self) {
        // SAFETY: a live `struct kvm_vcpu` (type invariant); an atomic bit set.
        unsafe { shim::elisa_shim_request_shutdown(self.0.as_ptr()) }
    }
}
