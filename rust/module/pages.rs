// SPDX-License-Identifier: GPL-2.0
//! Every page elisa allocates is a [`HeldPage`], so that debugfs can show exactly how many
//! pages elisa holds (the first line of `elisa/vms`), and tests can check that a teardown
//! gave back every one. Pinned region pages are counted apart: they belong to a memfd.

use core::ops::Deref;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use kernel::{alloc::Flags, page::Page, prelude::*};

/// Pages allocated by elisa and not yet freed.
static HELD: AtomicUsize = AtomicUsize::new(0);
/// Region pages pinned by elisa and not yet unpinned.
static PINNED: AtomicUsize = AtomicUsize::new(0);
/// Pages quarantined ([`HeldPage::quarantine`]): never freed, even at unload.
static QUARANTINED: AtomicUsize = AtomicUsize::new(0);

/// A zeroed page elisa allocated; counted until it is freed with the value.
pub(crate) struct HeldPage(Page);

impl HeldPage {
    /// Allocates a zeroed page (`flags` | `__GFP_ZERO`).
    pub(crate) fn alloc(flags: Flags) -> Result<Self> {
        let page = Page::alloc_page(flags | __GFP_ZERO)?;
        HELD.fetch_add(1, Relaxed);
        Ok(HeldPage(page))
    }
}

impl HeldPage {
    /// Gives the page up for good: it is never freed, and counted as quarantined instead
    /// of held. For a page a VMCS elisa cannot clean may still name
    /// (`VcpuState::quarantine`); the caller has emptied it (zeroes, or EPT holes).
    pub(crate) fn quarantine(self) {
        HELD.fetch_sub(1, Relaxed);
        QUARANTINED.fetch_add(1, Relaxed);
        core::mem::forget(self);
    }
}

impl Deref for HeldPage {
    type Target = Page;

    fn deref(&self) -> &Page {
        &self.0
    }
}

impl Drop for HeldPage {
    fn drop(&mut self) {
        // Zeroed before it goes back: a sub stack holds what services pushed (region
        // data of other VMs), a view's tables where regions are.
        // SAFETY: nothing else accesses a page elisa frees: a view's pages are freed after
        // the views were invalidated and no vCPU can enter them (`VcpuGate::invalidate`,
        // detach), and a page a VMCS may still name is quarantined instead.
        let _ = unsafe { self.0.fill_zero_raw(0, kernel::page::PAGE_SIZE) };
        // The page itself is freed right after, when `self.0` is dropped.
        HELD.fetch_sub(1, Relaxed);
    }
}

/// Counts `n` region pages as pinned (`add`) or unpinned.
pub(crate) fn count_pinned(n: usize, add: bool) {
    if add {
        PINNED.fetch_add(n, Relaxed);
    } else {
        PINNED.fetch_sub(n, Relaxed);
    }
}

/// (pages held, region pages pinned, pages quarantined), for debugfs.
pub(crate) fn counts() -> (usize, usize, usize) {
    (
        HELD.load(Relaxed),
        PINNED.load(Relaxed),
        QUARANTINED.load(Relaxed),
    )
}
