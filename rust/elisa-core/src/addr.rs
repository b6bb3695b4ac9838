// SPDX-License-Identifier: GPL-2.0
//! Address types and page sizes shared by every builder.
//!
//! Three address spaces meet in a view: guest-virtual ([`Gva`]), guest-physical ([`Gpa`]) and
//! host-physical ([`Hpa`]). Each has its own newtype so that a GPA can never be written where
//! an HPA belongs, which is the mistake that turns a table bug into a hole between VMs.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

/// log2 of the base page size.
pub const PAGE_SHIFT: u32 = 12;
/// The base page size: 4 KiB.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Mask of the offset bits inside a 4 KiB page.
pub const PAGE_MASK: u64 = PAGE_SIZE - 1;
/// Bytes in 2 MiB.
pub const SIZE_2M: u64 = 1 << 21;
/// Bytes in 1 GiB.
pub const SIZE_1G: u64 = 1 << 30;

/// A host-physical address, normally of a 4 KiB frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hpa(pub u64);

/// A guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpa(pub u64);

/// A guest-virtual (linear) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gva(pub u64);

macro_rules! addr_methods {
    ($t:ident) => {
        impl $t {
            /// The raw address.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// Whether the address is aligned to `size`.
            pub const fn is_aligned(self, size: PageSize) -> bool {
                self.0 & size.mask() == 0
            }

            /// The address `bytes` further on, or `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }
    };
}
addr_methods!(Hpa);
addr_methods!(Gpa);
addr_methods!(Gva);

/// The three leaf sizes of x86-64 paging and of EPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, a level-1 leaf.
    Size4K,
    /// 2 MiB, a level-2 leaf (PS=1 in a PDE or EPT PDE).
    Size2M,
    /// 1 GiB, a level-3 leaf (PS=1 in a PDPTE or EPT PDPTE).
    Size1G,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => PAGE_SIZE,
            PageSize::Size2M => SIZE_2M,
            PageSize::Size1G => SIZE_1G,
        }
    }

    /// `bytes() - 1`: the offset bits inside one page of this size.
    pub const fn mask(self) -> u64 {
        match self {
            PageSize::Size4K => PAGE_SIZE - 1,
            PageSize::Size2M => SIZE_2M - 1,
            PageSize::Size1G => SIZE_1G - 1,
        }
    }

    /// The table level that holds a leaf of this size (1 = PT, 2 = PD, 3 = PDPT).
    pub const fn level(self) -> u8 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }

    /// The page size whose leaves live at `level`, if any.
    pub const fn from_level(level: u8) -> Option<PageSize> {
        match level {
            1 => Some(PageSize::Size4K),
            2 => Some(PageSize::Size2M),
            3 => Some(PageSize::Size1G),
            _ => None,
        }
    }
}

/// Bit position of the lowest address bit that indexes a table at `level` (1..=5).
///
/// Level 1 (PT) is indexed by bits 20:12, level 2 by 29:21 and so on; level 5 by 56:48.
/// Levels outside 1..=5 give 64, which callers treat as "no such level".
pub const fn level_shift(level: u8) -> u32 {
    match level {
        1 => 12,
        2 => 21,
        3 => 30,
        4 => 39,
        5 => 48,
        _ => 64,
    }
}

/// Bytes covered by one entry of a table at `level` (1..=5); 0 for other levels.
pub const fn entry_span(level: u8) -> u64 {
    match level {
        1 => PAGE_SIZE,
        2 => SIZE_2M,
        3 => SIZE_1G,
        4 => 1 << 39,
        5 => 1 << 48,
        _ => 0,
    }
}

/// The 9-bit index that `addr` selects in a table at `level` (1..=5).
pub const fn table_index(addr: u64, level: u8) -> usize {
    // The result is masked to 9 bits, so the cast is lossless.
    (addr.wrapping_shr(level_shift(level)) & 0x1ff) as usize
}

/// Rounds `value` up to a multiple of `align` (a power of two); `None` on overflow or if
/// `align` is not a power of two.
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    if !align.is_power_of_two() {
        return None;
    }
    let mask = align.wrapping_sub(1);
    match value.checked_add(mask) {
        Some(v) => Some(v & !mask),
        None => None,
    }
}

/// Whether the half-open ranges `[a, a + alen)` and `[b, b + blen)` intersect.
///
/// Ranges whose end would overflow are treated as reaching the top of the address space.
pub const fn ranges_overlap(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    if alen == 0 || blen == 0 {
        return false;
    }
    let a_last = a.saturating_add(alen.wrapping_sub(1));
    let b_last = b.saturating_add(blen.wrapping_sub(1));
    a <= b_last && b <= a_last
}
