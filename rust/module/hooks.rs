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
use crate::{kvm, registry, shim, vmx};
use core::ffi::c_void;

/// `kvm_entry` for a vCPU of an attached VM, not in guest mode (the shim's probe filtered
/// both). Returns the vCPU state whose settings are now in the VMCS, or null; the shim hands
/// it to the `kvm_exit` that follows on this CPU.
#[no_mangle]
extern "C" fn elisa_rust_kvm_entry(key: *mut shim::HookKey, vcpu: *mut c_void) -> *const c_void {
    // SAFETY: the shim passes the key of a linked record, which is the first field of a
    // `repr(C)` `VmRecord`, freed only after unlink and a grace period; the probe runs with
    // IRQs off (an RCU read side).
    let rec = unsafe { &*key.cast_const().cast::<registry::VmRecord>() };
    // SAFETY: the tracepoint passes a live `struct kvm_vcpu`, used only within this probe
    // or kept in the vCPU's state, which its VM's attachment (holding a VM reference)
    // outlives.
    let Some(vcpu) = (unsafe { kvm::KvmVcpu::from_raw(vcpu) }) else {
        return core::ptr::null();
    };
    let idx = vcpu.idx();
    // SAFETY: called from the kvm_entry probe for `vcpu`, which is not in guest mode.
    let vmcs = unsafe { vmx::CurrentVmcs::assume() };
    match rec.on_entry(vcpu, idx, &vmcs) {
        Some(s) => core::ptr::from_ref(s).cast(),
        None => core::ptr::null(),
    }
}

/// `kvm_exit` for the vCPU whose entry returned `state` on this CPU.
#[no_mangle]
extern "C" fn elisa_rust_kvm_exit(state: *const c_void, vcpu: *mut c_void) {
    // SAFETY: `state` was returned by `elisa_rust_kvm_entry` for this vCPU's entry, with
    // `in_guest` set; detach frees a state only after its exit (`quiesce`) and after the
    // shim forgot it on every CPU.
    let s = unsafe { &*state.cast::<crate::vcpu::VcpuState>() };
    // The shim's per-CPU value is the one this vCPU's entry set on this CPU (IRQs stayed
    // off); checked anyway, because acting on another vCPU's VMCS would be unrecoverable.
    if !s.vcpu.is(vcpu) {
        return;
    }
    // SAFETY: called from the kvm_exit probe of the vCPU whose entry set up `s`, which was
    // not in guest mode then and has not run anything but the guest since (IRQs off).
    let vmcs = unsafe { vmx::CurrentVmcs::assume() };
    s.exit(&vmcs);
}
