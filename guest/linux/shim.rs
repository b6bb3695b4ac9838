// SPDX-License-Identifier: GPL-2.0
//! Declarations of the C shim's functions (`elisa_guest_shim.c`, `elisa_guest_shim.h`).
//!
//! Why each C function exists is said in `elisa_guest_shim.c`. `struct page` is an opaque
//! pointer here.

use core::ffi::{c_char, c_int, c_ulong, c_void};

/// `struct elisa_guest_cpu` in `elisa_guest_shim.h`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Cpu {
    /// Running in a VM (`X86_FEATURE_HYPERVISOR`).
    pub(crate) hypervisor: u8,
    /// 5-level paging (CR4.LA57).
    pub(crate) la57: u8,
    /// CR4.PCIDE.
    pub(crate) pcide: u8,
    /// A Xen PV guest.
    pub(crate) xen_pv: u8,
    /// Page-table isolation is on.
    pub(crate) pti: u8,
    /// CR4.LASS: kernel-mode fetches from the lower half fault (#GP).
    pub(crate) lass: u8,
    reserved: [u8; 2],
    /// The PGD slot of the per-process LDT remap.
    pub(crate) ldt_slot: u32,
    reserved2: u32,
}

unsafe extern "C" {
    /// The text of the `gate` parameter, NUL-terminated; stable while the module is live
    /// (the parameter is read-only after load).
    pub(crate) fn elisa_guest_shim_gate_param() -> *const c_char;
    /// Fills `out` with the CPU's paging facts.
    pub(crate) fn elisa_guest_shim_cpu(out: *mut Cpu);
    /// The 512 entries of the PGD this CPU runs on.
    pub(crate) fn elisa_guest_shim_kernel_pgd() -> *const u64;
    /// `page_address(page)`.
    pub(crate) fn elisa_guest_shim_page_address(page: *mut c_void) -> *mut c_void;
    /// `page_to_phys(page)`.
    pub(crate) fn elisa_guest_shim_page_to_phys(page: *mut c_void) -> u64;
    /// `local_irq_save()`: the flags to give back to `elisa_guest_shim_irq_restore`.
    pub(crate) fn elisa_guest_shim_irq_save() -> c_ulong;
    /// `local_irq_restore(flags)`.
    pub(crate) fn elisa_guest_shim_irq_restore(flags: c_ulong);
    /// Registers the die notifier (`elisa_guest_rust_ud`). 0 or a negative errno.
    pub(crate) fn elisa_guest_shim_die_register() -> c_int;
    /// Unregisters it and waits for running notifiers.
    pub(crate) fn elisa_guest_shim_die_unregister();
    /// Registers `/dev/elisa-guest`. 0 or a negative errno.
    pub(crate) fn elisa_guest_shim_misc_register() -> c_int;
    /// Unregisters it.
    pub(crate) fn elisa_guest_shim_misc_deregister();
    /// Whether a message callers can repeat may be logged now (10 every 5 s).
    pub(crate) fn elisa_guest_shim_log_ratelimit() -> bool;
}
