// SPDX-License-Identifier: GPL-2.0
//! Declarations of the C shim's functions (`elisa_shim.c`, `elisa_shim.h`).
//!
//! Only this file and the files that call into it name C symbols; the reasons each C
//! function exists are given in `elisa_shim.c`.

use core::ffi::c_int;

/// `struct elisa_vmx_msrs` in `elisa_shim.h`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct VmxMsrs {
    pub(crate) procbased_ctls2: u64,
    pub(crate) ept_vpid_cap: u64,
    pub(crate) vmfunc: u64,
}

unsafe extern "C" {
    /// Registers `/dev/elisa` with `.owner = THIS_MODULE`. Returns 0 or a negative errno.
    pub(crate) fn elisa_shim_misc_register() -> c_int;
    /// Unregisters `/dev/elisa`. Only after a successful register.
    pub(crate) fn elisa_shim_misc_deregister();
    /// Reads the VMX capability MSRs of the calling CPU. Returns 0 or `-ENODEV`.
    pub(crate) fn elisa_shim_read_vmx_msrs(out: *mut VmxMsrs) -> c_int;
}
