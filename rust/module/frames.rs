// SPDX-License-Identifier: GPL-2.0
//! `KernelFrames`: elisa-core's [`Frames`] with real kernel pages.
//!
//! Every table, stack and code page of a vCPU's gate and sub views comes from one
//! `KernelFrames`, which owns the pages: dropping it frees them all. Only the owner drops
//! it, after the views can no longer be in use (see `grant.rs`). Frames are named by their
//! host-physical address, as elisa-core expects, and kept in a red-black tree by that
//! address: one vCPU's views of one service hold 52 frames for a one-page service and
//! thousands for large regions mapped in 4 KiB pages, and a grant looks a frame up for
//! every entry it writes (a linear scan made the grant of 512 MiB of regions quadratic).
//! Only grants, the views dump and the fail-back's one read of the saved `RSP` look frames
//! up.
//!
//! **Pages the guest writes.** The stacks of the views are written by the guest while
//! its vCPU runs in them. Such a page is only ever copied as bytes (`read_raw`, which
//! never forms a Rust reference to the page's memory): by the views dump, which may see a
//! torn snapshot while the vCPU runs (it is a debugging aid), and by the exit trampoline of
//! the page's own vCPU, which reads the saved `RSP` while that vCPU is out of guest mode, so
//! nothing writes the page meanwhile (a view is never mapped by another vCPU).

use crate::elisa_core::{addr::Hpa, frame::Frames, Error as CoreError};
use crate::pages::HeldPage;
use crate::shim;
use core::sync::atomic::{AtomicU64, Ordering::Release};
use kernel::{
    page::Page,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
};

/// The pages of one vCPU's views. See the file header.
pub(crate) struct KernelFrames {
    /// The pages by host-physical address.
    pages: RBTree<u64, HeldPage>,
    /// Number of pages in `pages`.
    count: usize,
}

impl KernelFrames {
    /// An empty store.
    pub(crate) fn new() -> Self {
        KernelFrames {
            pages: RBTree::new(),
            count: 0,
        }
    }

    /// Number of frames held.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    fn page(&self, frame: Hpa) -> Result<&Page, CoreError> {
        self.pages
            .get(&frame.0)
            .map(|p| &**p)
            .ok_or(CoreError::BadFrame)
    }

    /// Calls `f` with the HPA of every frame held.
    pub(crate) fn for_each_hpa<E>(
        &self,
        mut f: impl FnMut(Hpa) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        for (pa, _) in self.pages.iter() {
            f(Hpa(*pa))?;
        }
        Ok(())
    }

    /// Appends the 4096 bytes of `frame` to `out` (for the views dump).
    pub(crate) fn append_page(&self, frame: Hpa, out: &mut KVVec<u8>) -> Result<(), CoreError> {
        let page = self.page(frame)?;
        let at = out.len();
        out.resize(at + kernel::page::PAGE_SIZE, 0, GFP_KERNEL_ACCOUNT)
            .map_err(|_| CoreError::OutOfFrames)?;
        let dst = out
            .as_mut_slice()
            .get_mut(at..)
            .ok_or(CoreError::BadFrame)?;
        // SAFETY: `dst` is valid for `PAGE_SIZE` bytes of writes (just resized). The guest
        // may write a stack page meanwhile (file header): `read_raw` copies bytes and forms
        // no reference to the source, so a racing write can only make the copy torn.
        unsafe { page.read_raw(dst.as_mut_ptr(), 0, kernel::page::PAGE_SIZE) }
            .map_err(|_| CoreError::BadFrame)
    }

    /// Sets every entry of table `frame` to 0, each with one 8-byte store, so that a CPU
    /// walking the table meanwhile sees each entry whole: as it was, or 0.
    pub(crate) fn clear_entries(&self, frame: Hpa) -> Result<(), CoreError> {
        self.fill_entries(frame, 0)
    }

    /// Sets every entry of table `frame` to `value`, each with one 8-byte store, so that a
    /// CPU walking the table meanwhile sees each entry whole: as it was, or `value`.
    pub(crate) fn fill_entries(&self, frame: Hpa, value: u64) -> Result<(), CoreError> {
        let page = self.page(frame)?;
        // SAFETY: an order-0 page from the kernel's allocator without __GFP_HIGHMEM
        // (`HeldPage::alloc`), so in the direct map.
        let va = unsafe { shim::elisa_shim_page_address(page.as_ptr().cast()) };
        let entries = va.cast::<AtomicU64>().cast_const();
        for i in 0..512 {
            // SAFETY: `entries` is the page's 4096 bytes, 8-byte aligned, held by `self`;
            // the only other accesses are the CPU's EPT walks, which read whole entries.
            unsafe { &*entries.add(i) }.store(value, Release);
        }
        Ok(())
    }

    /// Takes `frame` out of the store: the caller owns the page from now on.
    pub(crate) fn take(&mut self, frame: Hpa) -> Option<HeldPage> {
        let page = self.pages.remove(&frame.0)?;
        self.count -= 1;
        Some(page)
    }
}

impl Frames for KernelFrames {
    fn alloc_zeroed(&mut self) -> Result<Hpa, CoreError> {
        // A view of large regions in 4 KiB leaves takes about a second per GiB to build:
        // every 16 table pages (32 MiB of such a region) the CPU is given up if a
        // reschedule is due, and a fatal signal ends the build (the grant returns EINTR,
        // nothing published).
        if self.count % 16 == 15 {
            // SAFETY: the frames of a grant's build, in the ioctl's process context
            // (`grant_lock` is a mutex, no spinlock held); reads the current task's
            // signal state.
            if unsafe { shim::elisa_shim_resched_fatal_signal() } {
                return Err(CoreError::Interrupted);
            }
        }
        let page = HeldPage::alloc(GFP_KERNEL_ACCOUNT).map_err(|_| CoreError::OutOfFrames)?;
        // SAFETY: `page` is a valid, allocated page.
        let pa = unsafe { shim::elisa_shim_page_to_phys(page.as_ptr().cast()) };
        let node =
            RBTreeNode::new(pa, page, GFP_KERNEL_ACCOUNT).map_err(|_| CoreError::OutOfFrames)?;
        // A page just allocated is not in the tree: nothing is replaced.
        let _ = self.pages.insert(node);
        self.count += 1;
        Ok(Hpa(pa))
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, CoreError> {
        if index >= 512 {
            return Err(CoreError::BadFrame);
        }
        let page = self.page(frame)?;
        // Through the direct map, as `fill_entries`: the exit trampoline reads a gate
        // stack here (`VcpuState::interrupted`), where no kernel function may be called
        // (`Page::read_raw` maps the page through helpers a kprobe could land on).
        // SAFETY: an order-0 page from the kernel's allocator without __GFP_HIGHMEM
        // (`HeldPage::alloc`), so in the direct map.
        let va = unsafe { shim::elisa_shim_page_address(page.as_ptr().cast()) };
        // SAFETY: `index < 512`, so the 8 aligned bytes lie in the page, held by `self`.
        // Table pages change only here; a stack page is read only while no one writes it
        // (file header); a raw read forms no reference to it.
        Ok(unsafe { va.cast::<u64>().add(index).read_volatile() })
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), CoreError> {
        if index >= 512 {
            return Err(CoreError::BadFrame);
        }
        let page = self.page(frame)?;
        // SAFETY: `value` is valid for 8 bytes of reads; `index * 8 + 8 <= PAGE_SIZE`.
        unsafe { page.write_raw((&raw const value).cast(), index * 8, 8) }
            .map_err(|_| CoreError::BadFrame)
    }
}
