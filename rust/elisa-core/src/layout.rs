// SPDX-License-Identifier: GPL-2.0
//! The layout planner: where every trusted page of a vCPU's gate and sub views lives, in
//! guest-virtual and guest-physical space, with no overlaps (R12, R26).
//!
//! [`Layout::plan`] turns a [`LayoutRequest`] into a [`Layout`], the only input the view
//! builders accept. A `Layout` cannot be made any other way, so a view can only be built from
//! a plan that passed every check below.
//!
//! # Guest-virtual space (one trusted address space per vCPU, shared by both views)
//!
//! The pages around G are fixed by the machine code ([`gate`](super::gate) addresses them
//! RIP-relative, all below the code page):
//!
//! | GVA | gate view | sub view |
//! |---|---|---|
//! | G - 0x2000 | gate stack (RW) | not mapped |
//! | G - 0x1000 | gate data: the sub EPTP (R) | not mapped |
//! | G | EPTP-list page (RW) | EPTP-list page (RW) |
//! | G + 0x1000 | gate code page (execute) | sub code page (execute) |
//! | G + 0x2000 (the guest's exit page) | not mapped | not mapped |
//! | sub stack, configurable, guard page on each side | not mapped | RW |
//! | each region (service code, data, shared) | not mapped | per request |
//!
//! G is chosen by the guest: 4 KiB aligned, canonical, with G - 0x2000 at or above 4 GiB
//! ([`MIN_GATE_GVA`](super::gate::MIN_GATE_GVA)). The five pages `[G - 0x2000, G + 0x3000)`
//! are the entry block. Regions may ask for a GVA (a service linked at a fixed address);
//! everything else is placed in the GVA window (by default `[2^45, 2^46)`, valid under both
//! paging modes). Requested GVAs that collide with the entry block or with each other are
//! refused with [`Error::Collision`]. GVAs of both views never overlap each other, so one
//! plan describes both views.
//!
//! # Guest-physical space
//!
//! Trusted pages get GPAs in a **trusted window** that starts at or above
//! `max(guest_gpa_end, 4 MiB)` (by default rounded up to 1 GiB) and ends below
//! `2^min(guest_phys_bits, 48)`:
//!
//! - *above guest memory*, because guest RAM is where a legitimate guest CR3 points; a CR3
//!   that hits a trusted page would make the gate exit (see [`apt`](super::apt), R12). The
//!   caller passes the end of the guest's highest memslot, MMIO included. Memory
//!   hot-plugged into the window later costs no isolation (the views never map guest RAM
//!   there), but a guest CR3 in it makes that vCPU's calls fail; VMMs keep memslots out
//!   of the window (`Documentation/api.rst`);
//! - *above 4 MiB*, because RFLAGS images on the gate stack can only name GPAs below 4 MiB;
//! - *below the guest's physical address width*, because trusted page-table entries must
//!   not have reserved bits set; and below 2^48, the limit of a 4-level EPT.
//!
//! In the window, regions with 1 GiB leaves come first, then 2 MiB ones, then the 4 KiB
//! items: gate code, EPTP list, gate data, gate stack, gate page-table pool, sub code, sub
//! stack, 4 KiB regions, sub page-table pool. The pools are sized exactly, from the GVAs, for the guest
//! paging mode. Each view maps its own items and makes the rest of the window holes.
//!
//! A plan holds addresses only, no frames, so one plan serves every vCPU of a VM: each vCPU
//! gets its own frames (code pages, list, stacks, tables) when its views are built.
//!
//! # Examples
//!
//! ```
//! use elisa_core::addr::{Gpa, Gva, PageSize};
//! use elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
//! use elisa_core::paging::PagingMode;
//! use elisa_core::Error;
//!
//! let regions = [
//!     RegionRequest::new(RegionKind::Code, RegionAccess::ExecuteOnly, 0x3000, PageSize::Size4K),
//!     RegionRequest::new(RegionKind::Shared, RegionAccess::ReadWrite, 1 << 21, PageSize::Size2M),
//! ];
//! let mut req = LayoutRequest::new(PagingMode::FourLevel, 40, Gpa(2 << 30), Gva(0x7f00_0000_0000));
//! req.regions = &regions;
//! let layout = Layout::plan(&req)?;
//! assert_eq!(layout.code_gva(), Gva(0x7f00_0000_1000));
//! assert!(layout.trusted_window().0 >= Gpa(2 << 30)); // above guest memory
//!
//! // A region asking for the GVA of the entry block is refused.
//! let bad = [RegionRequest::new(RegionKind::Data, RegionAccess::ReadWrite, 0x1000,
//!                               PageSize::Size4K).at(Gva(0x7f00_0000_2000))];
//! req.regions = &bad;
//! assert!(matches!(Layout::plan(&req), Err(Error::Collision(..))));
//! # Ok::<(), Error>(())
//! ```

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::addr::{align_up, ranges_overlap, Gpa, Gva, PageSize, PAGE_SIZE, SIZE_1G, SIZE_2M};
use super::ept::{EptPerm, EPT_GPA_LIMIT};
use super::eptp::Eptp;
use super::error::Error;
use super::gate::{
    GateParams, CODE_PAGE_OFFSET, GATE_DATA_PAGE_OFFSET, GATE_STACK_PAGE_OFFSET, GUEST_BLOCK_END,
    LIST_PAGE_OFFSET, MIN_GATE_GVA, TRUSTED_BLOCK_START,
};
use super::paging::{CallerPrivilege, GuestPerm, PagingMode};

/// Maximum number of regions (service code, data, shared) per plan.
pub const MAX_REGIONS: usize = 16;
/// Size of the entry block: the five pages `[G - 0x2000, G + 0x3000)`.
pub const ENTRY_BLOCK_SIZE: u64 = (GUEST_BLOCK_END - TRUSTED_BLOCK_START) as u64;
/// Size of the gate stack.
pub const GATE_STACK_SIZE: u64 = PAGE_SIZE;
/// Unmapped guard space on each side of a stack.
pub const STACK_GUARD: u64 = PAGE_SIZE;
/// Lowest trusted GPA (RFLAGS images on the gate stack name GPAs below 4 MiB).
pub const MIN_TRUSTED_GPA: u64 = 1 << 22;
/// Alignment of the default trusted window.
pub const TRUSTED_WINDOW_ALIGN: u64 = SIZE_1G;
/// Default window for GVAs the planner chooses: `[2^45, 2^46)`.
pub const DEFAULT_GVA_WINDOW: (Gva, Gva) = (Gva(1 << 45), Gva(1 << 46));
/// Default sub stack size in pages (64 KiB).
pub const DEFAULT_SUB_STACK_PAGES: u32 = 16;
/// Largest sub stack in pages (1 GiB).
pub const MAX_SUB_STACK_PAGES: u32 = 1 << 18;
/// Smallest and largest accepted guest physical address width.
pub const PHYS_BITS_RANGE: (u8, u8) = (32, 52);

/// Capacity of the planner's scratch lists: every region plus the fixed items.
const MAX_ITEMS: usize = MAX_REGIONS + 8;

/// The things a plan places; used in [`Error::Collision`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    /// The entry block around G.
    EntryBlock,
    /// The gate code page.
    GateCode,
    /// The gate data page.
    GateData,
    /// The sub code page.
    SubCode,
    /// The EPTP-list page.
    EptpList,
    /// The gate stack.
    GateStack,
    /// The sub stack.
    SubStack,
    /// Region `n` of the request.
    Region(u8),
    /// The gate view's page-table pages.
    GateTables,
    /// The sub view's page-table pages.
    SubTables,
}

/// What a region is for. It decides which accesses are allowed (W^X).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// Trusted service code: execute-only or read-execute.
    Code,
    /// Private data of the service: read-only or read-write, never executable.
    Data,
    /// A shared object: read-only or read-write, never executable.
    Shared,
}

/// Access a region is mapped with in the sub view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionAccess {
    /// Execute only (EPT X; the guest table says read-only, executable).
    ExecuteOnly,
    /// Read and execute. Weaker than execute-only for R12: a read-execute page can be read
    /// as a page table, so prefer execute-only.
    ReadExecute,
    /// Read only, no execute.
    ReadOnly,
    /// Read and write, no execute.
    ReadWrite,
}

impl RegionAccess {
    /// The EPT permissions of the region's leaves.
    pub const fn ept_perm(self) -> EptPerm {
        match self {
            RegionAccess::ExecuteOnly => EptPerm::ExecuteOnly,
            RegionAccess::ReadExecute => EptPerm::ReadExecute,
            RegionAccess::ReadOnly => EptPerm::ReadOnly,
            RegionAccess::ReadWrite => EptPerm::ReadWrite,
        }
    }

    /// The guest page-table permissions of the region's leaves.
    pub const fn guest_perm(self) -> GuestPerm {
        match self {
            RegionAccess::ExecuteOnly | RegionAccess::ReadExecute => GuestPerm::Execute,
            RegionAccess::ReadOnly => GuestPerm::Read,
            RegionAccess::ReadWrite => GuestPerm::ReadWrite,
        }
    }

    const fn allowed_for(self, kind: RegionKind) -> bool {
        match kind {
            RegionKind::Code => {
                matches!(self, RegionAccess::ExecuteOnly | RegionAccess::ReadExecute)
            }
            RegionKind::Data | RegionKind::Shared => {
                matches!(self, RegionAccess::ReadOnly | RegionAccess::ReadWrite)
            }
        }
    }
}

/// One region the sub view should map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionRequest {
    /// What the region is for.
    pub kind: RegionKind,
    /// How the sub view maps it.
    pub access: RegionAccess,
    /// Size in bytes, a non-zero multiple of `page_size`.
    pub size: u64,
    /// Leaf size in both the guest table and the EPT. The backing must be physically
    /// contiguous and aligned in units of this size.
    pub page_size: PageSize,
    /// A GVA the region must be mapped at (aligned to `page_size`), or `None` to let the
    /// planner choose.
    pub gva: Option<Gva>,
}

impl RegionRequest {
    /// A request placed by the planner.
    pub const fn new(
        kind: RegionKind,
        access: RegionAccess,
        size: u64,
        page_size: PageSize,
    ) -> Self {
        Self {
            kind,
            access,
            size,
            page_size,
            gva: None,
        }
    }

    /// The same request at a fixed GVA.
    pub const fn at(mut self, gva: Gva) -> Self {
        self.gva = Some(gva);
        self
    }
}

/// The leaf size to map a region with whose 4 KiB pages are at the host-physical addresses
/// `hpas`, in order, at `gva`: [`PageSize::Size2M`] when 2 MiB EPT leaves are allowed
/// (`huge_2m`, the host's `IA32_VMX_EPT_VPID_CAP` bit 16), `gva` and the length are 2 MiB
/// multiples, and every 2 MiB of the region is one 2 MiB-aligned, physically contiguous run
/// (a huge page of its file); else [`PageSize::Size4K`]. A 2 MiB leaf then maps exactly the
/// region's own pages, as 512 4 KiB leaves would.
///
/// # Examples
///
/// ```
/// use elisa_core::addr::{Gva, PageSize};
/// use elisa_core::layout::region_page_size;
///
/// let huge: Vec<u64> = (0..1024).map(|i| 0x4000_0000 + i * 4096).collect();
/// assert_eq!(region_page_size(&huge, Gva(0x20_0000), true), PageSize::Size2M);
/// assert_eq!(region_page_size(&huge, Gva(0x20_1000), true), PageSize::Size4K);
/// assert_eq!(region_page_size(&huge, Gva(0x20_0000), false), PageSize::Size4K);
/// ```
pub fn region_page_size(hpas: &[u64], gva: Gva, huge_2m: bool) -> PageSize {
    const PAGES: usize = (PageSize::Size2M.bytes() / PAGE_SIZE) as usize;
    let huge = huge_2m
        && gva.is_aligned(PageSize::Size2M)
        && !hpas.is_empty()
        && hpas.len() % PAGES == 0
        && hpas.chunks_exact(PAGES).all(|run| {
            let first = run.first().copied().unwrap_or(1);
            first & PageSize::Size2M.mask() == 0
                && run
                    .iter()
                    .zip((0u64..).map(|i| i.wrapping_mul(PAGE_SIZE)))
                    .all(|(&hpa, off)| hpa == first.wrapping_add(off))
        });
    if huge {
        PageSize::Size2M
    } else {
        PageSize::Size4K
    }
}

/// Everything the planner needs to know.
#[derive(Clone, Copy, Debug)]
pub struct LayoutRequest<'a> {
    /// The guest's paging mode (R11: refuse anything else before planning).
    pub paging: PagingMode,
    /// The physical address width the CPU checks the guest's page-table entries against,
    /// 32..=52: the host's MAXPHYADDR, which the module passes (the CPU checks reserved bits
    /// against it whatever the guest's CPUID says; attach refuses KVM's
    /// `allow_smaller_maxphyaddr`, under which KVM would emulate a smaller width).
    pub guest_phys_bits: u8,
    /// First GPA above every guest memslot (RAM and MMIO).
    pub guest_gpa_end: Gpa,
    /// Start of the trusted window, or `None` for `max(guest_gpa_end, 4 MiB)` rounded up to
    /// 1 GiB.
    pub trusted_gpa_base: Option<Gpa>,
    /// G, the GVA of the guest's entry-stub page (see the module docs for the block).
    pub entry_gva: Gva,
    /// Sub stack size in 4 KiB pages, 1..=[`MAX_SUB_STACK_PAGES`].
    pub sub_stack_pages: u32,
    /// Where the planner may put GVAs it chooses, or `None` for [`DEFAULT_GVA_WINDOW`].
    pub gva_window: Option<(Gva, Gva)>,
    /// The regions of the sub view, at most [`MAX_REGIONS`].
    pub regions: &'a [RegionRequest],
    /// The privilege of the callers, which the trusted page tables' leaves follow.
    pub privilege: CallerPrivilege,
}

impl LayoutRequest<'static> {
    /// A request with a default sub stack, the default windows and no regions.
    pub const fn new(
        paging: PagingMode,
        guest_phys_bits: u8,
        guest_gpa_end: Gpa,
        entry_gva: Gva,
    ) -> Self {
        Self {
            paging,
            guest_phys_bits,
            guest_gpa_end,
            trusted_gpa_base: None,
            entry_gva,
            sub_stack_pages: DEFAULT_SUB_STACK_PAGES,
            gva_window: None,
            regions: &[],
            privilege: CallerPrivilege::Supervisor,
        }
    }
}

/// Where one item was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// First GVA.
    pub gva: Gva,
    /// First GPA.
    pub gpa: Gpa,
    /// Size in bytes.
    pub size: u64,
    /// Leaf size.
    pub page_size: PageSize,
}

/// Where a region was placed, and how it is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionPlacement {
    /// What the region is for.
    pub kind: RegionKind,
    /// How the sub view maps it.
    pub access: RegionAccess,
    /// Its addresses.
    pub placement: Placement,
}

/// A GPA range reserved for one view's page-table pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TablePool {
    /// GPA of the first page.
    pub gpa: Gpa,
    /// Number of pages: exactly what the view's table needs below its root.
    pub pages: u64,
}

/// A validated plan for the gate and sub views of a vCPU (any vCPU of the VM).
///
/// # Invariants
///
/// Made only by [`Layout::plan`]. All GVA ranges (entry block, stacks with their guards,
/// regions) are canonical and pairwise disjoint; all GPA ranges are inside the trusted
/// window, pairwise disjoint, aligned to their page size, above guest memory and 4 MiB, and
/// below `2^min(guest_phys_bits, 48)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    paging: PagingMode,
    privilege: CallerPrivilege,
    entry_gva: Gva,
    gate_code_gpa: Gpa,
    gate_data_gpa: Gpa,
    sub_code_gpa: Gpa,
    eptp_list_gpa: Gpa,
    gate_stack: Placement,
    sub_stack: Placement,
    regions: [Option<RegionPlacement>; MAX_REGIONS],
    gate_tables: TablePool,
    sub_tables: TablePool,
    window: (Gpa, u64),
}

/// A reserved GVA range.
#[derive(Clone, Copy)]
struct Reserved {
    start: u64,
    len: u64,
    item: Item,
}

/// The first range in `slots` that overlaps `len` bytes at `start`.
fn first_overlap(slots: &[Option<Reserved>], start: u64, len: u64) -> Option<Reserved> {
    slots
        .iter()
        .flatten()
        .find(|r| ranges_overlap(r.start, r.len, start, len))
        .copied()
}

/// Puts `r` in the first free slot of `slots` (`TooManyRegions` if none is free).
fn store(slots: &mut [Option<Reserved>], r: Reserved) -> Result<(), Error> {
    let slot = slots
        .iter_mut()
        .find(|s| s.is_none())
        .ok_or(Error::TooManyRegions)?;
    *slot = Some(r);
    Ok(())
}

/// Fixed-capacity list of reserved GVA ranges.
struct GvaMap {
    items: [Option<Reserved>; MAX_ITEMS],
    /// The whole 2 MiB each region at a fixed GVA lies in ([`GvaMap::keep_hull_clear`]):
    /// other fixed regions may share it, nothing the planner places may.
    hulls: [Option<Reserved>; MAX_REGIONS],
}

impl GvaMap {
    fn new() -> Self {
        Self {
            items: [None; MAX_ITEMS],
            hulls: [None; MAX_REGIONS],
        }
    }

    /// Keeps the rest of the 2 MiB that the fixed region `item` (`len` bytes at `start`)
    /// lies in free of the entry block and of everything placed later (the sub stack, the
    /// regions placed in the window). A service knows where its fixed regions are and may
    /// take one for longer than it was made (the switch bounds its copies by the port
    /// size, not by what is mapped): past its end it must meet a hole and fault, not the
    /// EPTP list, which the sub view maps writable, nor its own stack.
    fn keep_hull_clear(&mut self, start: u64, len: u64, item: Item) -> Result<(), Error> {
        let offset = start & (SIZE_2M - 1);
        let hull = Reserved {
            start: start.wrapping_sub(offset),
            // A region is at most 1 GiB: no overflow.
            len: align_up(offset.saturating_add(len), SIZE_2M).ok_or(Error::BadSize)?,
            item,
        };
        let block = self.items.iter().flatten().any(|r| {
            r.item == Item::EntryBlock && ranges_overlap(r.start, r.len, hull.start, hull.len)
        });
        if block {
            return Err(Error::Collision(Item::EntryBlock, item));
        }
        store(&mut self.hulls, hull)
    }

    fn collision(&self, start: u64, len: u64) -> Option<Reserved> {
        first_overlap(&self.items, start, len)
    }

    fn reserve(&mut self, start: u64, len: u64, item: Item) -> Result<(), Error> {
        if let Some(other) = self.collision(start, len) {
            return Err(Error::Collision(other.item, item));
        }
        store(&mut self.items, Reserved { start, len, item })
    }

    /// Places `len` bytes aligned to `align` in `[lo, hi)` with `guard` bytes free on each
    /// side, and reserves the range including its guards.
    fn place(
        &mut self,
        window: (u64, u64),
        len: u64,
        align: u64,
        guard: u64,
        item: Item,
    ) -> Result<u64, Error> {
        let (lo, hi) = window;
        let mut candidate =
            align_up(lo.checked_add(guard).ok_or(Error::NoSpace)?, align).ok_or(Error::NoSpace)?;
        loop {
            let outer_start = candidate.checked_sub(guard).ok_or(Error::NoSpace)?;
            let outer_len = len
                .checked_add(guard)
                .and_then(|l| l.checked_add(guard))
                .ok_or(Error::NoSpace)?;
            let outer_end = outer_start.checked_add(outer_len).ok_or(Error::NoSpace)?;
            if outer_end > hi {
                return Err(Error::NoSpace);
            }
            let hull = first_overlap(&self.hulls, outer_start, outer_len);
            match self.collision(outer_start, outer_len).or(hull) {
                None => {
                    self.reserve(outer_start, outer_len, item)?;
                    return Ok(candidate);
                }
                Some(other) => {
                    let after = other.start.checked_add(other.len).ok_or(Error::NoSpace)?;
                    let next = align_up(after.checked_add(guard).ok_or(Error::NoSpace)?, align)
                        .ok_or(Error::NoSpace)?;
                    if next <= candidate {
                        return Err(Error::NoSpace);
                    }
                    candidate = next;
                }
            }
        }
    }
}

/// Bump allocator over the trusted GPA window.
struct GpaCursor {
    next: u64,
    limit: u64,
}

impl GpaCursor {
    fn take(&mut self, len: u64, align: u64) -> Result<Gpa, Error> {
        let start = align_up(self.next, align).ok_or(Error::NoSpace)?;
        let end = start.checked_add(len).ok_or(Error::NoSpace)?;
        if end > self.limit {
            return Err(Error::NoSpace);
        }
        self.next = end;
        Ok(Gpa(start))
    }
}

/// The request's numeric limits, checked ([`Layout::plan`], step 1).
struct Limits {
    /// First GPA a 4-level EPT and the guest's physical address width cannot reach.
    gpa_limit: u64,
    /// The sub stack in bytes.
    sub_stack_size: u64,
}

impl Limits {
    fn check(req: &LayoutRequest<'_>) -> Result<Limits, Error> {
        let (min_bits, max_bits) = PHYS_BITS_RANGE;
        if req.guest_phys_bits < min_bits || req.guest_phys_bits > max_bits {
            return Err(Error::BadRequest);
        }
        let gpa_limit = 1u64
            .checked_shl(u32::from(req.guest_phys_bits))
            .unwrap_or(u64::MAX)
            .min(EPT_GPA_LIMIT);
        if req.regions.len() > MAX_REGIONS {
            return Err(Error::TooManyRegions);
        }
        if req.sub_stack_pages == 0 || req.sub_stack_pages > MAX_SUB_STACK_PAGES {
            return Err(Error::BadSize);
        }
        let sub_stack_size = u64::from(req.sub_stack_pages)
            .checked_mul(PAGE_SIZE)
            .ok_or(Error::BadSize)?;
        Ok(Limits {
            gpa_limit,
            sub_stack_size,
        })
    }
}

/// Where everything goes in guest-virtual space ([`Layout::plan`], step 2).
struct GvaPlan {
    regions: [Gva; MAX_REGIONS],
    sub_stack: Gva,
    code: Gva,
    list: Gva,
    gate_data: Gva,
    gate_stack: Gva,
}

impl GvaPlan {
    /// Checks G, the window and each region, reserves the requested GVAs and places the
    /// rest in the window, largest alignment first.
    fn place(req: &LayoutRequest<'_>, limits: &Limits) -> Result<GvaPlan, Error> {
        let paging = req.paging;
        let entry = req.entry_gva;
        if !entry.is_aligned(PageSize::Size4K) {
            return Err(Error::Misaligned);
        }
        let block = offset_gva(entry, TRUSTED_BLOCK_START)?;
        if block.0 < MIN_GATE_GVA {
            return Err(Error::BadRequest);
        }
        if !paging.is_canonical_range(block, ENTRY_BLOCK_SIZE) {
            return Err(Error::NonCanonical);
        }
        let (win_lo, win_hi) = req.gva_window.unwrap_or(DEFAULT_GVA_WINDOW);
        if win_hi.0 <= win_lo.0 || !win_lo.is_aligned(PageSize::Size4K) {
            return Err(Error::BadRequest);
        }
        let window_len = win_hi.0.wrapping_sub(win_lo.0);
        if !paging.is_canonical_range(win_lo, window_len) {
            return Err(Error::NonCanonical);
        }
        let window = (win_lo.0, win_hi.0);

        let mut gvas = GvaMap::new();
        gvas.reserve(block.0, ENTRY_BLOCK_SIZE, Item::EntryBlock)?;
        for (index, region) in req.regions.iter().enumerate() {
            let item = Item::Region(u8::try_from(index).map_err(|_| Error::TooManyRegions)?);
            if region.size == 0 || region.size & region.page_size.mask() != 0 {
                return Err(Error::BadSize);
            }
            if !region.access.allowed_for(region.kind) {
                return Err(Error::InvalidPermissions);
            }
            if let Some(gva) = region.gva {
                if !gva.is_aligned(region.page_size) {
                    return Err(Error::Misaligned);
                }
                if !paging.is_canonical_range(gva, region.size) {
                    return Err(Error::NonCanonical);
                }
                gvas.reserve(gva.0, region.size, item)?;
                gvas.keep_hull_clear(gva.0, region.size, item)?;
            }
        }
        let mut regions = [Gva(0); MAX_REGIONS];
        // Largest alignment first, so that small items do not fragment the window.
        for size in [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K] {
            for (index, region) in req.regions.iter().enumerate() {
                if region.page_size != size {
                    continue;
                }
                let item = Item::Region(u8::try_from(index).map_err(|_| Error::TooManyRegions)?);
                let gva = match region.gva {
                    Some(gva) => gva,
                    None => Gva(gvas.place(window, region.size, size.bytes(), 0, item)?),
                };
                *regions.get_mut(index).ok_or(Error::TooManyRegions)? = gva;
            }
        }
        let sub_stack = Gva(gvas.place(
            window,
            limits.sub_stack_size,
            PAGE_SIZE,
            STACK_GUARD,
            Item::SubStack,
        )?);
        Ok(GvaPlan {
            regions,
            sub_stack,
            code: offset_gva(entry, CODE_PAGE_OFFSET)?,
            list: offset_gva(entry, LIST_PAGE_OFFSET)?,
            gate_data: offset_gva(entry, GATE_DATA_PAGE_OFFSET)?,
            gate_stack: offset_gva(entry, GATE_STACK_PAGE_OFFSET)?,
        })
    }

    /// Page-table pages of the gate and the sub view's guest tables, sized from the GVAs
    /// (step 3).
    fn table_pages(&self, req: &LayoutRequest<'_>, limits: &Limits) -> Result<(u64, u64), Error> {
        let mut gate = Leaves::new();
        gate.push(self.code, PAGE_SIZE, PageSize::Size4K)?;
        gate.push(self.list, PAGE_SIZE, PageSize::Size4K)?;
        gate.push(self.gate_data, PAGE_SIZE, PageSize::Size4K)?;
        gate.push(self.gate_stack, GATE_STACK_SIZE, PageSize::Size4K)?;
        let mut sub = Leaves::new();
        sub.push(self.code, PAGE_SIZE, PageSize::Size4K)?;
        sub.push(self.list, PAGE_SIZE, PageSize::Size4K)?;
        sub.push(self.sub_stack, limits.sub_stack_size, PageSize::Size4K)?;
        for (region, gva) in req.regions.iter().zip(self.regions.iter()) {
            sub.push(*gva, region.size, region.page_size)?;
        }
        Ok((
            gate.tables_needed(req.paging)?,
            sub.tables_needed(req.paging)?,
        ))
    }
}

/// Where everything goes in the trusted GPA window ([`Layout::plan`], step 4).
struct GpaPlan {
    regions: [Gpa; MAX_REGIONS],
    gate_code: Gpa,
    eptp_list: Gpa,
    gate_data: Gpa,
    gate_stack: Gpa,
    gate_tables: TablePool,
    sub_code: Gpa,
    sub_stack: Gpa,
    sub_tables: TablePool,
    /// The whole window: its base and length.
    window: (Gpa, u64),
}

impl GpaPlan {
    /// Places the window above guest memory (and 4 MiB), huge regions first, then the gate
    /// view's pages, then the sub view's.
    fn place(
        req: &LayoutRequest<'_>,
        limits: &Limits,
        gate_table_pages: u64,
        sub_table_pages: u64,
    ) -> Result<GpaPlan, Error> {
        let lowest = req.guest_gpa_end.0.max(MIN_TRUSTED_GPA);
        let base = match req.trusted_gpa_base {
            Some(base) => {
                if !base.is_aligned(PageSize::Size4K) {
                    return Err(Error::Misaligned);
                }
                if base.0 < lowest {
                    return Err(Error::GuestMemoryCollision);
                }
                base.0
            }
            None => align_up(lowest, TRUSTED_WINDOW_ALIGN).ok_or(Error::NoSpace)?,
        };
        let mut gpas = GpaCursor {
            next: base,
            limit: limits.gpa_limit,
        };
        let mut regions = [Gpa(0); MAX_REGIONS];
        for size in [PageSize::Size1G, PageSize::Size2M] {
            for (index, region) in req.regions.iter().enumerate() {
                if region.page_size == size {
                    *regions.get_mut(index).ok_or(Error::TooManyRegions)? =
                        gpas.take(region.size, size.bytes())?;
                }
            }
        }
        let gate_code = gpas.take(PAGE_SIZE, PAGE_SIZE)?;
        let eptp_list = gpas.take(PAGE_SIZE, PAGE_SIZE)?;
        let gate_data = gpas.take(PAGE_SIZE, PAGE_SIZE)?;
        let gate_stack = gpas.take(GATE_STACK_SIZE, PAGE_SIZE)?;
        let gate_tables = TablePool {
            gpa: gpas.take(pages_bytes(gate_table_pages)?, PAGE_SIZE)?,
            pages: gate_table_pages,
        };
        let sub_code = gpas.take(PAGE_SIZE, PAGE_SIZE)?;
        let sub_stack = gpas.take(limits.sub_stack_size, PAGE_SIZE)?;
        for (index, region) in req.regions.iter().enumerate() {
            if region.page_size == PageSize::Size4K {
                *regions.get_mut(index).ok_or(Error::TooManyRegions)? =
                    gpas.take(region.size, PAGE_SIZE)?;
            }
        }
        let sub_tables = TablePool {
            gpa: gpas.take(pages_bytes(sub_table_pages)?, PAGE_SIZE)?,
            pages: sub_table_pages,
        };
        Ok(GpaPlan {
            regions,
            gate_code,
            eptp_list,
            gate_data,
            gate_stack,
            gate_tables,
            sub_code,
            sub_stack,
            sub_tables,
            window: (Gpa(base), gpas.next.wrapping_sub(base)),
        })
    }
}

impl Layout {
    /// Validates `req` and places everything.
    ///
    /// # Errors
    ///
    /// - [`Error::BadRequest`]: `guest_phys_bits` outside 32..=52, or an empty or unaligned
    ///   GVA window;
    /// - [`Error::TooManyRegions`], [`Error::BadSize`] (empty region, size not a multiple of
    ///   its page size, sub stack size out of range);
    /// - [`Error::InvalidPermissions`]: code that is not executable-only/read-execute, or data
    ///   that is executable (W^X, R25);
    /// - [`Error::Misaligned`], [`Error::NonCanonical`] for G or a requested GVA;
    /// - [`Error::Collision`] when requested GVAs overlap each other or the entry block;
    /// - [`Error::GuestMemoryCollision`] when a given trusted base is below guest memory or
    ///   4 MiB;
    /// - [`Error::NoSpace`] when a window is too small.
    pub fn plan(req: &LayoutRequest<'_>) -> Result<Layout, Error> {
        let limits = Limits::check(req)?;
        let v = GvaPlan::place(req, &limits)?;
        let (gate_table_pages, sub_table_pages) = v.table_pages(req, &limits)?;
        let g = GpaPlan::place(req, &limits, gate_table_pages, sub_table_pages)?;

        let mut regions = [None; MAX_REGIONS];
        for (index, region) in req.regions.iter().enumerate() {
            let slot = regions.get_mut(index).ok_or(Error::TooManyRegions)?;
            *slot = Some(RegionPlacement {
                kind: region.kind,
                access: region.access,
                placement: Placement {
                    gva: *v.regions.get(index).ok_or(Error::TooManyRegions)?,
                    gpa: *g.regions.get(index).ok_or(Error::TooManyRegions)?,
                    size: region.size,
                    page_size: region.page_size,
                },
            });
        }
        Ok(Layout {
            paging: req.paging,
            privilege: req.privilege,
            entry_gva: req.entry_gva,
            gate_code_gpa: g.gate_code,
            gate_data_gpa: g.gate_data,
            sub_code_gpa: g.sub_code,
            eptp_list_gpa: g.eptp_list,
            gate_stack: Placement {
                gva: v.gate_stack,
                gpa: g.gate_stack,
                size: GATE_STACK_SIZE,
                page_size: PageSize::Size4K,
            },
            sub_stack: Placement {
                gva: v.sub_stack,
                gpa: g.sub_stack,
                size: limits.sub_stack_size,
                page_size: PageSize::Size4K,
            },
            regions,
            gate_tables: g.gate_tables,
            sub_tables: g.sub_tables,
            window: g.window,
        })
    }

    /// The guest paging mode the plan is for.
    pub fn paging(&self) -> PagingMode {
        self.paging
    }

    /// The privilege of the callers the plan is for.
    pub fn privilege(&self) -> CallerPrivilege {
        self.privilege
    }

    /// G, the GVA of the guest's entry-stub page.
    pub fn entry_gva(&self) -> Gva {
        self.entry_gva
    }

    /// The entry block `(first GVA, length)`: `[G - 0x2000, G + 0x3000)`.
    pub fn entry_block(&self) -> (Gva, u64) {
        (
            Gva(self.entry_gva.0.wrapping_add_signed(TRUSTED_BLOCK_START)),
            ENTRY_BLOCK_SIZE,
        )
    }

    /// G + 0x1000: the gate code page in the gate view, the sub code page in the sub view.
    pub fn code_gva(&self) -> Gva {
        Gva(self.entry_gva.0.wrapping_add_signed(CODE_PAGE_OFFSET))
    }

    /// G: the EPTP-list page in both views.
    pub fn eptp_list_gva(&self) -> Gva {
        Gva(self.entry_gva.0.wrapping_add_signed(LIST_PAGE_OFFSET))
    }

    /// G - 0x1000: the gate data page (gate view only).
    pub fn gate_data_gva(&self) -> Gva {
        Gva(self.entry_gva.0.wrapping_add_signed(GATE_DATA_PAGE_OFFSET))
    }

    /// GPA of the gate code page (gate view only).
    pub fn gate_code_gpa(&self) -> Gpa {
        self.gate_code_gpa
    }

    /// GPA of the gate data page (gate view only).
    pub fn gate_data_gpa(&self) -> Gpa {
        self.gate_data_gpa
    }

    /// GPA of the sub code page (sub view only).
    pub fn sub_code_gpa(&self) -> Gpa {
        self.sub_code_gpa
    }

    /// GPA of the EPTP-list page (both views).
    pub fn eptp_list_gpa(&self) -> Gpa {
        self.eptp_list_gpa
    }

    /// The gate stack (gate view only), at G - 0x2000.
    pub fn gate_stack(&self) -> Placement {
        self.gate_stack
    }

    /// The sub stack (sub view only).
    pub fn sub_stack(&self) -> Placement {
        self.sub_stack
    }

    /// The first GVA above the gate stack: the initial RSP of the gate.
    pub fn gate_stack_top(&self) -> Gva {
        Gva(self.gate_stack.gva.0.wrapping_add(self.gate_stack.size))
    }

    /// The first GVA above the sub stack: the initial RSP of the sub entry.
    pub fn sub_stack_top(&self) -> Gva {
        Gva(self.sub_stack.gva.0.wrapping_add(self.sub_stack.size))
    }

    /// Region `index` of the request.
    pub fn region(&self, index: usize) -> Option<&RegionPlacement> {
        self.regions.get(index).and_then(Option::as_ref)
    }

    /// All regions, in request order.
    pub fn regions(&self) -> impl Iterator<Item = &RegionPlacement> {
        self.regions.iter().flatten()
    }

    /// The gate view's page-table pool.
    pub fn gate_tables(&self) -> TablePool {
        self.gate_tables
    }

    /// The sub view's page-table pool.
    pub fn sub_tables(&self) -> TablePool {
        self.sub_tables
    }

    /// The per-vCPU parameters of the [`gate`](super::gate) code for this plan.
    ///
    /// # Errors
    ///
    /// [`Error::BadRequest`] unless `service_entry` lies in a code region of the plan;
    /// otherwise those of [`GateParams::validate`].
    pub fn gate_params(&self, sub_eptp: Eptp, service_entry: Gva) -> Result<GateParams, Error> {
        let in_code = self.regions().any(|r| {
            let p = r.placement;
            r.kind == RegionKind::Code
                && service_entry.0 >= p.gva.0
                && service_entry.0.wrapping_sub(p.gva.0) < p.size
        });
        if !in_code {
            return Err(Error::BadRequest);
        }
        let params = GateParams {
            paging: self.paging,
            entry: self.entry_gva,
            sub_eptp,
            sub_stack_top: self.sub_stack_top(),
            service_entry,
            window: self.window,
        };
        params.validate()?;
        Ok(params)
    }

    /// The trusted GPA window `(start, length)`: every trusted GPA is inside it, and each
    /// view makes the parts it does not map holes.
    pub fn trusted_window(&self) -> (Gpa, u64) {
        self.window
    }
}

/// `gva + offset`, refusing wrap-around.
fn offset_gva(gva: Gva, offset: i64) -> Result<Gva, Error> {
    gva.0
        .checked_add_signed(offset)
        .map(Gva)
        .ok_or(Error::NonCanonical)
}

fn pages_bytes(pages: u64) -> Result<u64, Error> {
    pages.checked_mul(PAGE_SIZE).ok_or(Error::NoSpace)
}

/// The leaf ranges of one view, to size its page-table pool.
struct Leaves {
    ranges: [Option<(u64, u64, PageSize)>; MAX_ITEMS],
}

impl Leaves {
    fn new() -> Self {
        Self {
            ranges: [None; MAX_ITEMS],
        }
    }

    fn push(&mut self, gva: Gva, len: u64, size: PageSize) -> Result<(), Error> {
        let slot = self
            .ranges
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(Error::TooManyRegions)?;
        *slot = Some((gva.0, len, size));
        Ok(())
    }

    /// Exact number of non-root tables a page table needs to map these (disjoint) ranges:
    /// for each level below the root, the distinct level-sized blocks touched by ranges whose
    /// leaves are at that level or below.
    fn tables_needed(&mut self, paging: PagingMode) -> Result<u64, Error> {
        // Sort by start, `None`s last. A selection sort of at most `MAX_ITEMS` entries: in
        // the module, core's `sort_unstable` built by rustc 1.85 ends in a call that objtool
        // does not know as noreturn, and warns.
        let key = |r: &Option<(u64, u64, PageSize)>| r.map_or((1, 0), |(start, _, _)| (0, start));
        for i in 0..self.ranges.len() {
            let rest = self.ranges.iter().enumerate().skip(i);
            if let Some((m, _)) = rest.min_by_key(|(_, r)| key(r)) {
                self.ranges.swap(i, m);
            }
        }
        let mut total = 0u64;
        for level in 1..paging.levels() {
            let shift = super::addr::level_shift(level.checked_add(1).ok_or(Error::BadRequest)?);
            let mut last_block: Option<u64> = None;
            for (start, len, size) in self.ranges.iter().flatten() {
                if size.level() > level {
                    continue;
                }
                let last = start
                    .checked_add(len.checked_sub(1).ok_or(Error::BadSize)?)
                    .ok_or(Error::NonCanonical)?;
                let first_block = start.wrapping_shr(shift);
                let last_block_here = last.wrapping_shr(shift);
                let mut count = last_block_here
                    .checked_sub(first_block)
                    .and_then(|c| c.checked_add(1))
                    .ok_or(Error::BadRequest)?;
                if last_block == Some(first_block) {
                    count = count.wrapping_sub(1);
                }
                total = total.checked_add(count).ok_or(Error::NoSpace)?;
                last_block = Some(last_block_here);
            }
        }
        Ok(total)
    }
}
