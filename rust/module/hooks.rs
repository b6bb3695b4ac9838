// SPDX-License-Identifier: GPL-2.0
//! The KVM hooks: what the `kvm_entry` tracepoint probe and the exit trampoline do for an
//! attached VM. The probe and the trampoline are in the C shim (`elisa_shim.c`,
//! `elisa_exit.S`); the probe is registered while at least one VM is attached
//! (`registry.rs`), and for a VM elisa does not know it costs a hash lookup and calls
//! nothing here. The trampoline runs only at the exits of vCPUs whose entry put elisa's
//! settings into the VMCS (it is their `HOST_RIP`), and calls the exit here only for its
//! rare path: an exit inside a gate or sub view, or a broken excursion's end still to come.
//!
//! Both run in `vmx_vcpu_run()` with IRQs off and the vCPU's VMCS current, once per
//! hardware VM entry or exit: they must not sleep. `kvm_entry` fires after KVM loaded its
//! MMU root and before it writes `GUEST_RIP`/`GUEST_RSP` from its register copies when
//! those are dirty, `HOST_CR3`/`HOST_CR4` and a few more fields; elisa writes the guest
//! registers only through both the VMCS and KVM's copies, so the two agree (see `vmx.rs`).
//! The exit runs right after the VM exit, before KVM's exit path: with KVM's copies of the
//! general registers filled from the CPU's by the shim (and put back into the CPU after),
//! and KVM's copies of `RIP` and `RSP` not read (KVM reads them from the VMCS after this
//! exit). Nothing on that path may lock, sleep, print or use RCU.
use crate::{kvm, registry, shim, vmx};
use core::ffi::c_void;

/// `kvm_entry` for a vCPU of an attached VM, not in guest mode (the shim's probe filtered
/// both). Returns the vCPU state whose settings are now in the VMCS, or null; the shim hands
/// it to the exit trampoline that follows on this CPU.
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

/// The exit trampoline's rare path for the vCPU whose entry returned `state` on this CPU
/// (`elisa_exit_slow` in the shim).
#[no_mangle]
extern "C" fn elisa_rust_kvm_exit(state: *const c_void) {
    // SAFETY: `state` was returned by `elisa_rust_kvm_entry` for this vCPU's entry, with
    // `in_guest` set; detach frees a state only after its exit has cleared `in_guest`
    // (`quiesce`), after the shim forgot it on every CPU, and after every CPU has left its
    // exit trampoline (`elisa_shim_hooks_sync`).
    let s = unsafe { &*state.cast::<crate::vcpu::VcpuState>() };
    // SAFETY: called from the exit trampoline of the vCPU whose entry set up `s` (the
    // trampoline checked the current VMCS against the one that entry recorded), which was
    // not in guest mode then and has not run anything but the guest since (IRQs off).
    let vmcs = unsafe { vmx::CurrentVmcs::assume() };
    s.exit(&vmcs);
}
