// SPDX-License-Identifier: GPL-2.0
//! elisa_guest: the guest side of the ELISA call, as a module of a Linux guest kernel.
//!
//! The crate root of `elisa_guest.ko`: the `module!` block, the list of files, load and
//! unload, and the functions the C shim calls for other drivers and for the die
//! notifier. `Documentation/guest-linux.rst` describes the module; the call protocol is
//! `Documentation/gate-protocol.rst`.
//!
//! - `discovery`, `fw_cfg`: the gates, from QEMU's fw_cfg and the `gate` parameter;
//! - `table`, `pages`: the entry block and the private page table that maps it; the call;
//! - `driver`: the gates, their counters, the call by number;
//! - `device`: `/dev/elisa-guest`;
//! - `shim`: the C shim (`elisa_guest_shim.c`).

use core::borrow::Borrow;
use core::ffi::{c_char, c_int, c_long, c_uint};
use kernel::prelude::*;

mod device;
mod discovery;
mod driver;
mod fw_cfg;
mod pages;
mod shim;
mod table;
// The host-tested crates, compiled into the module from their sources: elisa-core (the
// entry block's code, the page-table builder), the guest crate (the call, the gate-list
// parser, the private-table mapping; it finds elisa-core as its sibling `elisa_core`) and
// the mirror of the ABI of /dev/elisa-guest.
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../rust/elisa-core/src/lib.rs"]
mod elisa_core;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../elisa-guest/src/lib.rs"]
mod elisa_guest;
#[allow(dead_code, unreachable_pub)]
#[path = "../../rust/elisa-uapi/src/guest.rs"]
mod uapi;

module! {
    type: ElisaGuest,
    name: "elisa_guest",
    authors: ["elisa developers"],
    description: "ELISA calls from a Linux guest: exit-less calls to the host's trusted services",
    license: "GPL",
    params: {
        fw_cfg: u32 {
            default: 1,
            description: "Read the gates from QEMU's fw_cfg file opt/elisa/gates: 0 never, 1 in a VM (default), 2 always",
        },
    },
}

/// `EOPNOTSUPP`, which the kernel crate does not name.
fn eopnotsupp() -> Error {
    Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32))
}

/// The loaded module; dropping it unregisters everything and frees the driver.
struct ElisaGuest {
    _driver: KBox<driver::Driver>,
}

impl kernel::Module for ElisaGuest {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let mut cpu = shim::Cpu::default();
        // SAFETY: `cpu` is a valid, writable `struct elisa_guest_cpu`.
        unsafe { shim::elisa_guest_shim_cpu(&mut cpu) };
        if cpu.xen_pv != 0 {
            pr_err!("Xen PV guests are not supported\n");
            return Err(eopnotsupp());
        }
        // `value()` returns `&u32` in 7.2 and `u32` in 7.3: both are `Borrow<u32>`, so one
        // source builds on both.
        let fw_cfg: u32 = *Borrow::<u32>::borrow(&module_parameters::fw_cfg.value());
        let gates = discovery::gates(&cpu, fw_cfg)?;
        let table = if gates.is_empty() {
            pr_info!("no gates (neither fw_cfg opt/elisa/gates nor elisa_guest.gate=): calls fail with ENODEV\n");
            None
        } else if cpu.la57 != 0 {
            pr_err!("5-level paging (LA57) is not supported: the gates need 4-level paging\n");
            return Err(eopnotsupp());
        } else if let Some(g) = gates
            .iter()
            .find(|g| cpu.lass != 0 && elisa_guest::param::in_lower_half(g.gate().g()))
        {
            // The module calls at CPL 0, and under LASS a kernel-mode fetch from the lower
            // half is a #GP, which no handler here answers: the kernel would die.
            pr_err!(
                "gate {} at G {:#x}: in the lower half, which the kernel cannot execute under LASS (CR4.LASS); grant it at a G in the kernel half\n",
                g.name(),
                g.gate().g()
            );
            return Err(eopnotsupp());
        } else {
            Some(table::PrivateTable::build(&gates, &cpu)?)
        };
        for (n, g) in gates.iter().enumerate() {
            pr_info!(
                "gate {}: {} at G {:#x}, index {}\n",
                n,
                g.name(),
                g.gate().g(),
                g.gate().index()
            );
        }
        let driver = KBox::new(driver::Driver::new(gates, table), GFP_KERNEL)?;
        // SAFETY: `driver` is kept in the returned module value and freed only in `drop`,
        // after `unpublish`, the misc device's deregistration and the die notifier's
        // unregistration (which waits for running notifiers); see `driver::get`.
        unsafe { driver::publish(&driver) };
        // SAFETY: the notifier block is a static of the shim, registered once.
        let r = unsafe { shim::elisa_guest_shim_die_register() };
        if r != 0 {
            driver::unpublish();
            return Err(Error::from_errno(r));
        }
        if let Err(e) = device::register() {
            // SAFETY: registered just above.
            unsafe { shim::elisa_guest_shim_die_unregister() };
            driver::unpublish();
            return Err(e);
        }
        let pti = if cpu.pti != 0 { ", PTI" } else { "" };
        pr_info!(
            "loaded, API version {}, {} gates{}\n",
            uapi::ELISA_GUEST_API_VERSION,
            driver.gates().len(),
            pti
        );
        Ok(ElisaGuest { _driver: driver })
    }
}

impl Drop for ElisaGuest {
    fn drop(&mut self) {
        device::deregister();
        // SAFETY: registered in init, which succeeded.
        unsafe { shim::elisa_guest_shim_die_unregister() };
        driver::unpublish();
        pr_info!("unloaded\n");
    }
}

/// `elisa_guest_find()` (elisa_guest.h): the number of the gate called `name`, or
/// `-ENOENT`.
#[no_mangle]
extern "C" fn elisa_guest_rust_find(name: *const c_char) -> c_int {
    let Some(d) = driver::get() else {
        return ENOENT.to_errno();
    };
    if name.is_null() {
        return ENOENT.to_errno();
    }
    // SAFETY: the caller passes a NUL-terminated string (elisa_guest.h), valid during the
    // call.
    let name = unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes();
    d.gates()
        .iter()
        .position(|g| g.gate_name().as_bytes() == name)
        .map_or(ENOENT.to_errno(), |n| n as c_int)
}

/// `elisa_guest_call()` (elisa_guest.h): the service's value or a negative errno.
#[no_mangle]
extern "C" fn elisa_guest_rust_call(
    gate: c_uint,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
) -> c_long {
    let r = match driver::get() {
        Some(d) => d.call(gate, [a0, a1, a2, a3, a4]),
        None => Err(ENODEV),
    };
    match r {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// The die notifier's question for a `#UD` in kernel mode at `ip`: when it is the entry
/// `VMFUNC` of one of our gates and this CPU runs on the private page table (so it is one of
/// our calls, whose gate the host never granted or has taken away by detaching the VM),
/// the fallback stub to resume at; else 0. Exception context: no lock, no sleep, no print.
#[no_mangle]
extern "C" fn elisa_guest_rust_ud(ip: u64) -> u64 {
    let Some(d) = driver::get() else {
        return 0;
    };
    if !d.on_private_table() {
        return 0;
    }
    d.gates().fallback_for(ip).unwrap_or(0)
}
