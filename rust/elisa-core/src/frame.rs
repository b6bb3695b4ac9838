// SPDX-License-Identifier: GPL-2.0
//! Frames: how builders get memory for tables and touch it.
//!
//! The builders never hold a pointer. They ask a [`Frames`] implementation for zeroed 4 KiB
//! frames, which are named by host-physical address, and read or write one 64-bit table
//! entry at a time by `(frame, index)`. The kernel module implements the trait with real
//! pages (and owns them, so it can free every frame of a view at teardown); the host tests
//! implement it in memory and record every write, which is how "a builder never writes
//! outside the frames it was given" is checked.
//!
//! [`ArrayFrames`] is a small fixed-capacity store for examples and unit tests.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::addr::{Hpa, PAGE_SIZE};
use super::error::Error;

/// Number of 64-bit entries in a 4 KiB table.
pub const ENTRIES_PER_TABLE: usize = 512;

/// A source of zeroed 4 KiB frames, and entry-wise access to them.
///
/// # Contract
///
/// - [`alloc_zeroed`](Frames::alloc_zeroed) returns a 4 KiB-aligned frame that is zero-filled
///   and not handed out before. The implementation owns it: builders never free frames, so
///   the implementation frees them when the views built from them are torn down.
/// - [`read_entry`](Frames::read_entry) and [`write_entry`](Frames::write_entry) accept
///   frames returned by `alloc_zeroed` and must fail with [`Error::BadFrame`] for any other
///   address or for `index >= 512`, never touch other memory and never panic.
pub trait Frames {
    /// Allocates one zero-filled 4 KiB frame.
    fn alloc_zeroed(&mut self) -> Result<Hpa, Error>;

    /// Reads entry `index` (0..512) of `frame`.
    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error>;

    /// Writes entry `index` (0..512) of `frame`.
    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error>;
}

impl<F: Frames + ?Sized> Frames for &mut F {
    fn alloc_zeroed(&mut self) -> Result<Hpa, Error> {
        (**self).alloc_zeroed()
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error> {
        (**self).read_entry(frame, index)
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error> {
        (**self).write_entry(frame, index, value)
    }
}

/// Writes `value` into all 512 entries of `frame`.
pub fn fill_frame<F: Frames + ?Sized>(frames: &mut F, frame: Hpa, value: u64) -> Result<(), Error> {
    for index in 0..ENTRIES_PER_TABLE {
        frames.write_entry(frame, index, value)?;
    }
    Ok(())
}

/// Copies all 512 entries of `from` into `to`.
pub fn copy_frame<F: Frames + ?Sized>(frames: &mut F, from: Hpa, to: Hpa) -> Result<(), Error> {
    for index in 0..ENTRIES_PER_TABLE {
        let value = frames.read_entry(from, index)?;
        frames.write_entry(to, index, value)?;
    }
    Ok(())
}

/// A [`Frames`] wrapper that counts allocations.
///
/// The view builders use it to report how many frames a view costs.
#[derive(Debug)]
pub struct CountingFrames<F> {
    inner: F,
    allocated: u64,
}

impl<F: Frames> CountingFrames<F> {
    /// Wraps `inner` with a zero count.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            allocated: 0,
        }
    }

    /// Frames allocated through this wrapper so far.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Returns the wrapped store.
    pub fn into_inner(self) -> F {
        self.inner
    }
}

impl<F: Frames> Frames for CountingFrames<F> {
    fn alloc_zeroed(&mut self) -> Result<Hpa, Error> {
        let frame = self.inner.alloc_zeroed()?;
        self.allocated = self.allocated.saturating_add(1);
        Ok(frame)
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error> {
        self.inner.read_entry(frame, index)
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error> {
        self.inner.write_entry(frame, index, value)
    }
}

/// A fixed-capacity, allocation-free in-memory [`Frames`] store of `N` frames.
///
/// Frame `i` has the (pretend) host-physical address `base + i * 4096`. It is meant for
/// examples and small tests; it lives wherever it is put, so keep `N` small on the stack.
///
/// # Examples
///
/// ```
/// use elisa_core::addr::Hpa;
/// use elisa_core::frame::{ArrayFrames, Frames};
///
/// let mut frames = ArrayFrames::<2>::new(Hpa(0x10_0000));
/// let f = frames.alloc_zeroed()?;
/// frames.write_entry(f, 3, 0xabc)?;
/// assert_eq!(frames.read_entry(f, 3)?, 0xabc);
/// // Index 512 is outside the frame: an error, not a panic.
/// assert!(frames.write_entry(f, 512, 1).is_err());
/// # Ok::<(), elisa_core::Error>(())
/// ```
#[derive(Debug)]
pub struct ArrayFrames<const N: usize> {
    base: u64,
    used: usize,
    frames: [[u64; ENTRIES_PER_TABLE]; N],
}

impl<const N: usize> ArrayFrames<N> {
    /// An empty store whose first frame will be at `base` (rounded down to 4 KiB).
    pub fn new(base: Hpa) -> Self {
        Self {
            base: base.0 & !(PAGE_SIZE.wrapping_sub(1)),
            used: 0,
            frames: [[0; ENTRIES_PER_TABLE]; N],
        }
    }

    /// Number of frames handed out.
    pub fn used(&self) -> usize {
        self.used
    }

    fn slot(&self, frame: Hpa) -> Result<usize, Error> {
        let offset = frame.0.checked_sub(self.base).ok_or(Error::BadFrame)?;
        if offset % PAGE_SIZE != 0 {
            return Err(Error::BadFrame);
        }
        let slot = usize::try_from(offset / PAGE_SIZE).map_err(|_| Error::BadFrame)?;
        if slot >= self.used {
            return Err(Error::BadFrame);
        }
        Ok(slot)
    }
}

impl<const N: usize> Frames for ArrayFrames<N> {
    fn alloc_zeroed(&mut self) -> Result<Hpa, Error> {
        if self.used >= N {
            return Err(Error::OutOfFrames);
        }
        let slot = u64::try_from(self.used).map_err(|_| Error::OutOfFrames)?;
        let addr = slot
            .checked_mul(PAGE_SIZE)
            .and_then(|o| o.checked_add(self.base))
            .ok_or(Error::OutOfFrames)?;
        self.used = self.used.saturating_add(1);
        Ok(Hpa(addr))
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error> {
        let slot = self.slot(frame)?;
        self.frames
            .get(slot)
            .and_then(|f| f.get(index))
            .copied()
            .ok_or(Error::BadFrame)
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error> {
        let slot = self.slot(frame)?;
        let entry = self
            .frames
            .get_mut(slot)
            .and_then(|f| f.get_mut(index))
            .ok_or(Error::BadFrame)?;
        *entry = value;
        Ok(())
    }
}
