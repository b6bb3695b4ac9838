// SPDX-License-Identifier: GPL-2.0
//! elisa: exit-less, isolated shared memory for KVM guests.
//!
//! The crate root of `elisa.ko`: the `module!` block, the list of files and the load-time
//! checks. One file per kernel object; `Documentation/design.rst` gives the overview and
//! `Documentation/api.rst` the ioctl interface.

use kernel::prelude::*;

mod caps;
mod device;
mod frames;
mod gate;
mod grant;
mod hooks;
mod kvm;
mod pages;
mod registry;
mod service;
mod shim;
mod vcpu;
mod vm;
mod vmx;
// The builders of views, APT, EPTP list and gate code: the host-tested crate, compiled
// into the module from the same sources. The call path (issue: the ELISA call) uses it.
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../elisa-core/src/lib.rs"]
mod elisa_core;
// The ABI mirror is shared with user-space tools; the module uses only part of it.
#[allow(unreachable_pub, dead_code)]
#[path = "../elisa-uapi/src/lib.rs"]
mod uapi;

module! {
    type: Elisa,
    name: "elisa",
    authors: ["elisa developers"],
    description: "Exit-less, isolated shared memory for KVM guests (VMFUNC EPTP switching)",
    license: "GPL",
}

/// The loaded module. There is one; dropping it unregisters `/dev/elisa`.
struct Elisa;

impl kernel::Module for Elisa {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let host = caps::HostCaps::read();
        let missing = uapi::caps::REQUIRED & !host.caps;
        if missing != 0 {
            pr_err!(
                "refusing to load: this CPU lacks {} (caps {:#x}; elisa needs VMX, EPT and VMFUNC EPTP switching)\n",
                caps::Names(missing),
                host.caps
            );
            return Err(ENODEV);
        }
        caps::init_misc();
        registry::init();
        kvm::init();
        // SAFETY: module init; the shim's debugfs entries are its statics.
        let r = unsafe { shim::elisa_shim_init() };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        if let Err(e) = device::register() {
            // SAFETY: undoes `elisa_shim_init` above; nothing else was set up.
            unsafe { shim::elisa_shim_exit() };
            return Err(e);
        }
        pr_info!(
            "loaded, API version {}, caps {:#x} ({})\n",
            uapi::ELISA_API_VERSION,
            host.caps,
            caps::Names(host.caps)
        );
        Ok(Elisa)
    }
}

impl Drop for Elisa {
    fn drop(&mut self) {
        device::deregister();
        // SAFETY: every elisa file is closed (each pins the module), so no VM is attached;
        // the entry hook may linger (the shim takes it out).
        unsafe { shim::elisa_shim_exit() };
        pr_info!("unloaded\n");
    }
}
