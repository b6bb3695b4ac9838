// SPDX-License-Identifier: GPL-2.0
//! [`Driver`]: what the loaded module knows and holds, the gates and their private page
//! table, and the call by gate number that the device and the exported functions share.
//!
//! One `Driver` exists from a successful load to the unload; it does not change in between,
//! apart from its counters. The C entry points (`elisa_guest_rust_*`) find it through
//! [`get`].

use crate::elisa_guest::{
    param::{GateList, NamedGate, MAX_GATES},
    ERR_NOT_ENTERED,
};
use crate::table::PrivateTable;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use kernel::prelude::*;

/// The driver of the loaded module, or null before init completes and after exit starts.
static DRIVER: AtomicPtr<Driver> = AtomicPtr::new(null_mut());

/// The loaded module's driver.
///
/// Valid for `'static` from a caller's point of view: the module is not unloaded while one
/// of its functions runs for another module (which holds a reference on it), for an open
/// `/dev/elisa-guest` (its `file_operations` pin the module) or in the die notifier
/// (unregistered, with `synchronize_rcu()`, before the driver is freed).
pub(crate) fn get() -> Option<&'static Driver> {
    let p = DRIVER.load(Ordering::Acquire);
    // SAFETY: a non-null pointer was published by `publish` from a live `KBox` that stays
    // alive until `unpublish` and the teardown described above.
    unsafe { p.as_ref() }
}

/// Makes `d` the driver `get` returns.
///
/// # Safety
///
/// `d` stays valid until after `unpublish` and until no caller of `get` can still run.
pub(crate) unsafe fn publish(d: &Driver) {
    DRIVER.store(core::ptr::from_ref(d).cast_mut(), Ordering::Release);
}

/// `get` returns `None` from now on.
pub(crate) fn unpublish() {
    DRIVER.store(null_mut(), Ordering::Release);
}

/// Counters of one gate.
#[derive(Default)]
pub(crate) struct GateStats {
    /// Calls made.
    pub(crate) calls: AtomicU64,
    /// Calls that returned `-ENODEV` (no gate entered).
    pub(crate) not_entered: AtomicU64,
    /// The last call returned `-ENODEV`: logged once, until a call enters again.
    down: AtomicBool,
}

/// The gates, their counters, and the private page table (none without gates).
pub(crate) struct Driver {
    gates: GateList,
    stats: [GateStats; MAX_GATES],
    table: Option<PrivateTable>,
}

impl Driver {
    pub(crate) fn new(gates: GateList, table: Option<PrivateTable>) -> Self {
        Self {
            gates,
            stats: Default::default(),
            table,
        }
    }

    /// The gates.
    pub(crate) fn gates(&self) -> &GateList {
        &self.gates
    }

    /// Gate number `n` and its counters.
    pub(crate) fn gate(&self, n: u32) -> Option<(&NamedGate, &GateStats)> {
        let n = usize::try_from(n).ok()?;
        Some((self.gates.get(n)?, self.stats.get(n)?))
    }

    /// Whether this CPU runs on the private page table (`#UD` hook).
    pub(crate) fn on_private_table(&self) -> bool {
        self.table.as_ref().is_some_and(PrivateTable::is_current)
    }

    /// Calls the service behind gate number `n`: its `RAX`, which is a negative errno for
    /// the protocol's errors (`-ENODEV`, `-EINTR`, `-EPERM`).
    ///
    /// # Errors
    ///
    /// `ENODEV` when the module knows no gate, `EINVAL` for a number without a gate.
    pub(crate) fn call(&self, n: u32, args: [u64; 5]) -> Result<i64> {
        let Some(table) = &self.table else {
            return Err(ENODEV);
        };
        let (gate, stats) = self.gate(n).ok_or(EINVAL)?;
        let ret = table.call(gate.gate(), args);
        stats.calls.fetch_add(1, Ordering::Relaxed);
        if ret == ERR_NOT_ENTERED {
            stats.not_entered.fetch_add(1, Ordering::Relaxed);
            // Any guest user can close its CPU's gates (a breakpoint armed on itself,
            // branch tracing: the host keeps them closed meanwhile), so these transitions
            // can come at the rate of calls: the lines are rate-limited.
            if !stats.down.swap(true, Ordering::Relaxed) && log_ratelimit() {
                pr_info!(
                    "gate {} ({}): no gate entered (index {} not granted, or the host detached this VM); calls return ENODEV\n",
                    n,
                    gate.name(),
                    gate.gate().index()
                );
            }
        } else if stats.down.load(Ordering::Relaxed)
            && stats.down.swap(false, Ordering::Relaxed)
            && log_ratelimit()
        {
            pr_info!("gate {} ({}): entered again\n", n, gate.name());
        }
        Ok(ret)
    }
}

/// Whether a log line callers can repeat may go out now (10 every 5 s, module-wide).
pub(crate) fn log_ratelimit() -> bool {
    // SAFETY: no arguments; the shim's ratelimit state is static and takes its own lock.
    unsafe { crate::shim::elisa_guest_shim_log_ratelimit() }
}
