// SPDX-License-Identifier: GPL-2.0
//! The pages of the private page table: [`Pages`] (an allocation of 2^order zeroed pages,
//! freed on drop) and [`TableFrames`], through which elisa-core's page-table builder gets
//! and writes table pages.
//!
//! All of them are allocated at module load and freed at unload, when no call can run
//! any more (`Documentation/guest-linux.rst`, "The private page table").

use crate::elisa_core::{
    addr::Hpa,
    frame::{Frames, ENTRIES_PER_TABLE},
    Error as CoreError,
};
use crate::shim;
use core::ptr::NonNull;
use kernel::{bindings, prelude::*};

/// 2^order physically contiguous, zeroed pages of the direct map.
///
/// # Invariants
///
/// `page` is an allocation of order `order` from `alloc_pages()`, owned by this value and
/// freed on drop; `virt` is its direct-map address and `phys` its physical address.
pub(crate) struct Pages {
    page: NonNull<bindings::page>,
    order: u32,
    virt: NonNull<u64>,
    phys: u64,
}

// SAFETY: `Pages` owns plain memory; writes need `&mut self`, and reads through `&self`
// are volatile reads of `u64`s, so sharing between threads is sound.
unsafe impl Send for Pages {}
// SAFETY: as above.
unsafe impl Sync for Pages {}

impl Pages {
    /// Allocates 2^`order` zeroed pages (`GFP_KERNEL`, may sleep).
    pub(crate) fn alloc(order: u32) -> Result<Self> {
        let flags = bindings::GFP_KERNEL | bindings::__GFP_ZERO;
        // SAFETY: alloc_pages() takes any flags and order and returns NULL on failure.
        let page = NonNull::new(unsafe { bindings::alloc_pages(flags, order) }).ok_or(ENOMEM)?;
        // SAFETY: `page` is a live allocation (just made); both helpers only compute.
        let (virt, phys) = unsafe {
            (
                shim::elisa_guest_shim_page_address(page.as_ptr().cast()),
                shim::elisa_guest_shim_page_to_phys(page.as_ptr().cast()),
            )
        };
        let Some(virt) = NonNull::new(virt.cast::<u64>()) else {
            // SAFETY: `page` came from alloc_pages() with this order and is not used after.
            unsafe { bindings::__free_pages(page.as_ptr(), order) };
            return Err(ENOMEM);
        };
        // INVARIANT: allocated above with `order`; `virt` and `phys` are its addresses.
        Ok(Self {
            page,
            order,
            virt,
            phys,
        })
    }

    /// The physical address of the first page.
    pub(crate) fn phys(&self) -> u64 {
        self.phys
    }

    /// The allocation in bytes.
    pub(crate) fn len(&self) -> usize {
        4096 << self.order
    }

    /// The direct-map address of the first byte.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.virt.as_ptr().cast()
    }

    /// The 64-bit word `index` of the allocation, or `None` beyond its end.
    pub(crate) fn read_u64(&self, index: usize) -> Option<u64> {
        if index >= self.len() / 8 {
            return None;
        }
        // SAFETY: by the type invariant `virt` points to `len()` bytes owned by `self`,
        // and `index` is in bounds (checked above); the pointer is 8-byte aligned.
        Some(unsafe { self.virt.as_ptr().add(index).read_volatile() })
    }

    /// Writes the 64-bit word `index`; `None` beyond the end.
    pub(crate) fn write_u64(&mut self, index: usize, value: u64) -> Option<()> {
        if index >= self.len() / 8 {
            return None;
        }
        // SAFETY: as in `read_u64`, and `&mut self` excludes any other access.
        unsafe { self.virt.as_ptr().add(index).write_volatile(value) };
        Some(())
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the allocation is ours and has this order; nothing
        // refers to it after the value is dropped.
        unsafe { bindings::__free_pages(self.page.as_ptr(), self.order) };
    }
}

/// The root and the table pages of the private page table, as a [`Frames`] store named by
/// physical address (the guest's own physical addresses, which is what its page tables
/// hold: elisa-core's `IdentityTables` over this).
pub(crate) struct TableFrames {
    root: Pages,
    tables: KVec<Pages>,
}

impl TableFrames {
    /// A store whose only frame yet is `root`.
    pub(crate) fn new(root: Pages) -> Self {
        Self {
            root,
            tables: KVec::new(),
        }
    }

    /// The root's physical address.
    pub(crate) fn root(&self) -> u64 {
        self.root.phys()
    }

    /// The table pages besides the root.
    pub(crate) fn nr_tables(&self) -> usize {
        self.tables.len()
    }

    fn frame(&self, frame: Hpa) -> Result<&Pages, CoreError> {
        if self.root.phys() == frame.0 {
            return Ok(&self.root);
        }
        self.tables
            .iter()
            .find(|p| p.phys() == frame.0)
            .ok_or(CoreError::BadFrame)
    }

    fn frame_mut(&mut self, frame: Hpa) -> Result<&mut Pages, CoreError> {
        if self.root.phys() == frame.0 {
            return Ok(&mut self.root);
        }
        self.tables
            .iter_mut()
            .find(|p| p.phys() == frame.0)
            .ok_or(CoreError::BadFrame)
    }
}

impl Frames for TableFrames {
    fn alloc_zeroed(&mut self) -> Result<Hpa, CoreError> {
        let page = Pages::alloc(0).map_err(|_| CoreError::OutOfFrames)?;
        let phys = page.phys();
        self.tables
            .push(page, GFP_KERNEL)
            .map_err(|_| CoreError::OutOfFrames)?;
        Ok(Hpa(phys))
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, CoreError> {
        if index >= ENTRIES_PER_TABLE {
            return Err(CoreError::BadFrame);
        }
        self.frame(frame)?
            .read_u64(index)
            .ok_or(CoreError::BadFrame)
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), CoreError> {
        if index >= ENTRIES_PER_TABLE {
            return Err(CoreError::BadFrame);
        }
        self.frame_mut(frame)?
            .write_u64(index, value)
            .ok_or(CoreError::BadFrame)
    }
}
