// SPDX-License-Identifier: GPL-2.0
//! The KVM hooks: `kvm_entry` and `kvm_exit` tracepoint probes, registered by the C shim
//! while at least one VM record exists (`registry.rs`).
//!
//! Both run in `vmx_vcpu_run()` with IRQs off and the vCPU's VMCS current, once per
//! hardware VM entry or exit, for every VM on the host: they must not sleep, and for a VM
//! elisa does not know they cost one registry lookup. `kvm_entry` fires after KVM loaded
//! its MMU root and before it writes `GUEST_RIP`/`GUEST_RSP`, `HOST_CR3`/`HOST_CR4` and a
//! few more fields; elisa never writes those (see `vmx.rs` for what it writes).

use crate::{registry, shim, vmx};
use core::ffi::c_void;

/// The vCPU's VM record and index, unless elisa does not know the VM or the vCPU runs a
/// nested guest (then the current VMCS is KVM's vmcs02, which elisa leaves alone).
#[inline(always)]
fn find(vcpu: *mut c_void) -> Option<(&'static registry::VmRecord, u32)> {
    // SAFETY: the tracepoint passes a live vCPU.
    let kvm = unsafe { shim::elisa_shim_vcpu_kvm(vcpu.cast()) };
    let rec = registry::lookup(kvm.cast())?;
    // SAFETY: as above.
    if unsafe { shim::elisa_shim_vcpu_guest_mode(vcpu.cast()) } {
        return None;
    }
    // SAFETY: as above.
    Some((rec, unsafe { shim::elisa_shim_vcpu_idx(vcpu.cast()) }))
}

/// `kvm_entry` probe body.
#[no_mangle]
extern "C" fn elisa_rust_kvm_entry(vcpu: *mut c_void) {
    if let Some((rec, idx)) = find(vcpu) {
        // SAFETY: this is the kvm_entry probe for `vcpu`, which is not in guest mode.
        let vmcs = unsafe { vmx::CurrentVmcs::assume() };
        rec.on_entry(vcpu, idx, &vmcs);
    }
}

/// `kvm_exit` probe body.
#[no_mangle]
extern "C" fn elisa_rust_kvm_exit(vcpu: *mut c_void) {
    if let Some((rec, idx)) = find(vcpu) {
        // SAFETY: this is the kvm_exit probe for `vcpu`, which is not in guest mode.
        let vmcs = unsafe { vmx::CurrentVmcs::assume() };
        rec.on_exit(idx, &vmcs);
    }
}
