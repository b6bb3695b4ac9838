// SPDX-License-Identifier: GPL-2.0
//! The KVM hooks: what the entry hook and the exit trampoline do for an attached VM. Both
//! are in the C shim (`elisa_shim.c`, "KVM hooks"; `elisa_entry.S`, `elisa_exit.S`). The
//! entry hook is an ftrace direct call at `kvm_wait_lapic_expire()` (or, where ftrace
//! cannot take it, a `kvm_entry` tracepoint probe), registered while at least one VM is
//! attached (`registry.rs`); for a VM elisa does not know it costs a bucket test and calls
//! nothing here. The trampoline runs only at the exits of vCPUs whose entry put elisa's
//! settings into the VMCS (it is their `HOST_RIP`), and calls the exit here only for its
//! rare path: an exit inside a gate or sub view, or a broken excursion's end still to come.
//!
//! Both run in `vmx_vcpu_run()` with IRQs off and the vCPU's VMCS current, once per
//! hardware VM entry or exit: they must not sleep. The entry hook runs after KVM loaded its
//! MMU root (and, as ftrace, after every VMCS write KVM makes for the entry; as the
//! tracepoint, before it writes `GUEST_RIP`/`GUEST_RSP` from its register copies when
//! those are dirty, `HOST_CR3`/`HOST_CR4` and a few more fields); elisa writes the guest
//! registers only through both the VMCS and KVM's copies, so the two agree (see `vmx.rs`).
//! The exit runs right after the VM exit, before KVM's exit path: with KVM's copies of the
//! general registers filled from the CPU's by the shim (and put back into the CPU after),
//! and KVM's copies of `RIP` and `RSP` not read (KVM reads them from the VMCS after this
//! exit). Nothing on that path may lock, sleep, print or use RCU.
use crate::{kvm, registry, shim, vmx};
use core::ffi::c_void;

/// The entry hook for a vCPU of an attached VM, not in guest mode (the shim's hook filtered
/// both). Returns the vCPU state whose settings are now in the VMCS, or null; the shim hands
/// it to the exit trampoline that follows on this CPU.
#[no_mangle]
extern "C" fn elisa_rust_kvm_entry(key: *mut shim::HookKey, vcpu: *mut c_void) -> *const c_void {
    // SAFETY: the shim passes the key of a linked record, which is the first field of a
    // `repr(C)` `VmRecord`, freed only after unlink and a grace period; the hook runs with
    // IRQs off (an RCU read side).
    let rec = unsafe { &*key.cast_const().cast::<registry::VmRecord>() };
    // SAFETY: KVM passes the hook a live `struct kvm_vcpu`, used only within this hook
    // or kept in the vCPU's state, which its VM's attachment (holding a VM reference)
    // outlives.
    let Some(vcpu) = (unsafe { kvm::KvmVcpu::from_raw(vcpu) }) else {
        return core::ptr::null();
    };
    let idx = vcpu.idx();
    // SAFETY: called from the entry hook for `vcpu`, which is not in guest mode.
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
