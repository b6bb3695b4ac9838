// SPDX-License-Identifier: GPL-2.0
//! Building the gate and sub views of one vCPU from a validated [`Layout`].
//!
//! A view is an EPT plus the trusted guest page table it is meant to be walked with, and
//! the APT that makes every CR3 reach that table. What each view maps
//! (`Documentation/gate-protocol.rst`):
//!
//! | item | gate view (EPT / guest table) | sub view (EPT / guest table) |
//! |---|---|---|
//! | code page at G+0x1000 | gate code: X only / read, exec | sub code: X only / read, exec |
//! | EPTP list at G | RW / RW, NX | RW / RW, NX |
//! | gate data at G-0x1000 | R / R, NX | hole |
//! | gate stack at G-0x2000 | RW / RW, NX | hole |
//! | sub stack | hole | RW / RW, NX |
//! | regions | hole | per request: X only or RX for code, R or RW for data / NX |
//! | page-table pages (no GVA) | R, or RW with EPT A/D | R, or RW with EPT A/D |
//! | rest of the trusted window | hole | hole |
//! | every other GPA | APT (R or RW, WB, not X) | APT |
//!
//! So the gate view has exactly one executable page, and it is execute-only; no page of
//! either view is both writable and executable.
//!
//! The code pages and the gate data page are opaque frames to this module: the caller
//! allocates them and fills them (the [`gate`](super::gate) emitter writes their bytes),
//! before or after the views are built. The EPTP-list frame is likewise the caller's;
//! [`EptpList`](super::eptp::EptpList) fills it. The gate stack and the sub stack are
//! allocated here (zeroed, which is what the gate expects). The usual order, since the gate
//! data page holds the sub EPTP:
//!
//! 1. plan ([`Layout::plan`]) once per VM;
//! 2. per vCPU: allocate the gate code, gate data, sub code and list frames; build the sub
//!    view; build the gate view; emit the code pages and the gate data page from
//!    [`Layout::gate_params`]; write the list (default EPTP at 0, gate at 511).
//!
//! Frames are never freed here: the [`Frames`] implementation owns every frame it handed
//! out, and frees them all when the vCPU's views go away (or when a build fails part-way).
//!
//! # Examples
//!
//! The whole per-vCPU sequence, as the module runs it:
//!
//! ```
//! use elisa_core::addr::{Gpa, Gva, Hpa, PageSize};
//! use elisa_core::ept::{EptCaps, EptConfig};
//! use elisa_core::eptp::{Eptp, EptpList};
//! use elisa_core::frame::{ArrayFrames, Frames};
//! use elisa_core::gate::{self, PAGE_BYTES};
//! use elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
//! use elisa_core::paging::PagingMode;
//! use elisa_core::view::{build_gate_view, build_sub_view, EntryFrames};
//!
//! // Once per VM: the plan (here one page of service code).
//! let regions = [RegionRequest::new(RegionKind::Code, RegionAccess::ExecuteOnly, 0x1000,
//!                                   PageSize::Size4K)];
//! let mut req = LayoutRequest::new(PagingMode::FourLevel, 39, Gpa(1 << 30),
//!                                  Gva(0x7f00_0000_0000));
//! req.regions = &regions;
//! let layout = Layout::plan(&req)?;
//! let cfg = EptConfig::recommended(EptCaps::all(), false);
//!
//! // Per vCPU: frames, views, code, list.
//! let mut frames = Box::new(ArrayFrames::<64>::new(Hpa(0x1_0000_0000)));
//! let entry = EntryFrames {
//!     gate_code: frames.alloc_zeroed()?,
//!     gate_data: frames.alloc_zeroed()?,
//!     sub_code: frames.alloc_zeroed()?,
//!     eptp_list: frames.alloc_zeroed()?,
//! };
//! let service_code = Hpa(0x2_0000_0000); // the service's (pinned) code page
//! let backing = |_region: usize, _index: u64| Ok(service_code);
//! let sub = build_sub_view(&layout, &cfg, &mut *frames, &entry, &backing)?;
//! let gate = build_gate_view(&layout, &cfg, &mut *frames, &entry)?;
//!
//! let service_entry = layout.region(0).map(|r| r.placement.gva).unwrap();
//! let params = layout.gate_params(sub.eptp(), service_entry)?;
//! let mut page = [0u8; PAGE_BYTES];
//! entry.write_pages(&mut *frames, layout.privilege(), &params, &mut page)?;
//!
//! let default = Eptp::from_raw(0x5e | 0x7000_0000)?; // KVM's, read from the VMCS
//! EptpList::new(default, gate.eptp()).write_to(&mut *frames, entry.eptp_list)?;
//! println!("frames: gate view {}, sub view {}",
//!          gate.frame_counts().total(), sub.frame_counts().total());
//! # Ok::<(), elisa_core::Error>(())
//! ```
//!
//! The wrong way: building from an unchecked request. A view takes a [`Layout`], and a
//! `Layout` comes only from [`Layout::plan`]; it has no public constructor, so neither of
//! these compiles:
//!
//! ```compile_fail
//! use elisa_core::addr::{Gpa, Gva};
//! use elisa_core::layout::LayoutRequest;
//! use elisa_core::paging::PagingMode;
//! # use elisa_core::{ept::*, frame::*, addr::Hpa, view::*};
//! # let cfg = EptConfig::recommended(EptCaps::all(), false);
//! # let mut frames = ArrayFrames::<64>::new(Hpa(0x1_0000_0000));
//! # let entry = EntryFrames { gate_code: Hpa(0), gate_data: Hpa(0), sub_code: Hpa(0), eptp_list: Hpa(0) };
//! let req = LayoutRequest::new(PagingMode::FourLevel, 39, Gpa(1 << 30), Gva(0x7f00_0000_0000));
//! let gate = build_gate_view(&req, &cfg, &mut frames, &entry); // expected `&Layout`
//! ```
//!
//! ```compile_fail
//! use elisa_core::layout::Layout;
//! let layout = Layout { paging: elisa_core::paging::PagingMode::FourLevel }; // private fields
//! ```

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::addr::{Gpa, Hpa, PageSize, PAGE_SIZE};
use super::apt::{table_perm, Apt};
use super::ept::{Ept, EptConfig, EptLookup, EptPerm, MemType};
use super::eptp::Eptp;
use super::error::Error;
use super::frame::{CountingFrames, Frames};
use super::gate::{self, GateParams};
use super::layout::{Layout, Placement, TablePool};
use super::paging::{CallerPrivilege, GuestPageTable, GuestPerm, TableSpace};

/// The frames the caller allocates per vCPU and the views map by GPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryFrames {
    /// The gate code page (mapped execute-only in the gate view).
    pub gate_code: Hpa,
    /// The gate data page (mapped read-only in the gate view).
    pub gate_data: Hpa,
    /// The sub code page (mapped execute-only in the sub view).
    pub sub_code: Hpa,
    /// The EPTP-list page (mapped RW in both views).
    pub eptp_list: Hpa,
}

impl EntryFrames {
    fn check(&self) -> Result<(), Error> {
        let all = self.all();
        for (i, a) in all.iter().enumerate() {
            if all.iter().skip(i.saturating_add(1)).any(|b| b == a) {
                return Err(Error::BadRequest);
            }
        }
        Ok(())
    }

    fn all(&self) -> [Hpa; 4] {
        [
            self.gate_code,
            self.gate_data,
            self.sub_code,
            self.eptp_list,
        ]
    }

    /// Whether the `size` bytes from `frame` cover one of these pages: a 2 MiB or 1 GiB
    /// region frame must not contain the gate data or the EPTP list at any 4 KiB offset.
    fn overlapped_by(&self, frame: Hpa, size: u64) -> bool {
        self.all().iter().any(|e| e.0.wrapping_sub(frame.0) < size)
    }

    /// Writes the code and data pages of the entry block into their frames: the gate code
    /// for callers of `privilege`, the gate data of `params`, and the sub code. The one
    /// writer of these pages, for the module and every test; `page` is scratch space (the
    /// kernel keeps 4 KiB off its stack).
    ///
    /// # Errors
    ///
    /// Those of [`gate::write_gate_data`] and of the frames' writes.
    pub fn write_pages<F: Frames + ?Sized>(
        &self,
        frames: &mut F,
        privilege: CallerPrivilege,
        params: &GateParams,
        page: &mut [u8; gate::PAGE_BYTES],
    ) -> Result<(), Error> {
        gate::write_gate_code(page, privilege)?;
        gate::store_page(frames, self.gate_code, page)?;
        gate::write_gate_data(page, params)?;
        gate::store_page(frames, self.gate_data, page)?;
        gate::write_sub_code(page, params, privilege)?;
        gate::store_page(frames, self.sub_code, page)
    }
}

/// Where the frames of the plan's regions are.
///
/// # Contract
///
/// The frames of a code region must not be mapped writable anywhere (in this view or any
/// other), and regions must not share frames with each other, or W^X is lost through the
/// alias. The builder checks only that no region frame is one of the [`EntryFrames`].
pub trait RegionFrames {
    /// The host-physical address of page `index` of region `region`, counted in units of
    /// the region's page size (so it must be aligned to that size).
    fn region_frame(&self, region: usize, index: u64) -> Result<Hpa, Error>;
}

impl<T: Fn(usize, u64) -> Result<Hpa, Error>> RegionFrames for T {
    fn region_frame(&self, region: usize, index: u64) -> Result<Hpa, Error> {
        self(region, index)
    }
}

/// [`RegionFrames`] for a plan without regions.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRegions;

impl RegionFrames for NoRegions {
    fn region_frame(&self, _region: usize, _index: u64) -> Result<Hpa, Error> {
        Err(Error::BadRegionFrame)
    }
}

/// Which of the two views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViewKind {
    /// The gate view (EPTP list index 511).
    Gate,
    /// The sub view (EPTP list index 1, transiently).
    Sub,
}

/// How many frames a view cost, by purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// EPT tables (root included, APT chain excluded).
    pub ept_tables: u64,
    /// The three APT chain tables.
    pub apt_tables: u64,
    /// Guest page-table pages, the root (= the APT frame) included.
    pub guest_tables: u64,
    /// Stack pages.
    pub stack_pages: u64,
}

impl FrameCounts {
    /// All frames.
    pub fn total(&self) -> u64 {
        self.ept_tables
            .saturating_add(self.apt_tables)
            .saturating_add(self.guest_tables)
            .saturating_add(self.stack_pages)
    }
}

/// A built view.
#[derive(Clone, Copy, Debug)]
pub struct View {
    kind: ViewKind,
    ept: Ept,
    page_table: GuestPageTable,
    apt: Apt,
    counts: FrameCounts,
}

impl View {
    /// Gate or sub.
    pub fn kind(&self) -> ViewKind {
        self.kind
    }

    /// The EPTP to put in the EPTP list (or into the gate code, for the sub view).
    pub fn eptp(&self) -> Eptp {
        self.ept.eptp()
    }

    /// The EPT.
    pub fn ept(&self) -> &Ept {
        &self.ept
    }

    /// The trusted guest page table (its root is the APT frame).
    pub fn page_table(&self) -> &GuestPageTable {
        &self.page_table
    }

    /// The APT.
    pub fn apt(&self) -> &Apt {
        &self.apt
    }

    /// Frames the view cost.
    pub fn frame_counts(&self) -> FrameCounts {
        self.counts
    }
}

/// Builds the gate view of one vCPU.
///
/// # Errors
///
/// [`Error::BadRequest`] if two entry frames are equal;
/// [`Error::ExecuteOnlyUnsupported`] without execute-only EPT support (the gate page must
/// be execute-only); configuration, EPT and frame store errors.
pub fn build_gate_view<F: Frames + ?Sized>(
    layout: &Layout,
    cfg: &EptConfig,
    frames: &mut F,
    entry: &EntryFrames,
) -> Result<View, Error> {
    entry.check()?;
    let mut builder = Builder::new(layout, cfg, frames, ViewKind::Gate)?;
    builder.map_given(
        layout.gate_code_gpa(),
        entry.gate_code,
        EptPerm::ExecuteOnly,
    )?;
    builder.map_given(layout.gate_data_gpa(), entry.gate_data, EptPerm::ReadOnly)?;
    builder.map_given(layout.eptp_list_gpa(), entry.eptp_list, EptPerm::ReadWrite)?;
    builder.map_stack(layout.gate_stack())?;
    let mut tables = builder.tables(layout.gate_tables());
    let pt = tables.pt;
    pt.map(
        &mut tables,
        layout.code_gva(),
        layout.gate_code_gpa(),
        PageSize::Size4K,
        GuestPerm::Execute,
    )?;
    pt.map(
        &mut tables,
        layout.eptp_list_gva(),
        layout.eptp_list_gpa(),
        PageSize::Size4K,
        GuestPerm::ReadWrite,
    )?;
    pt.map(
        &mut tables,
        layout.gate_data_gva(),
        layout.gate_data_gpa(),
        PageSize::Size4K,
        GuestPerm::Read,
    )?;
    let stack = layout.gate_stack();
    pt.map_range(
        &mut tables,
        stack.gva,
        stack.gpa,
        stack.size,
        PageSize::Size4K,
        GuestPerm::ReadWrite,
    )?;
    let guest_tables = tables.allocated;
    builder.finish(layout, guest_tables)
}

/// Builds the sub view of one vCPU.
///
/// # Errors
///
/// [`Error::BadRequest`] if two entry frames are equal; [`Error::BadRegionFrame`] if a
/// region frame is missing, misaligned for the region's page size, or covers one of the
/// entry frames (at any 4 KiB offset of a large frame); [`Error::ExecuteOnlyUnsupported`], [`Error::PageSizeUnsupported`] per the
/// capabilities; configuration, EPT and frame store errors.
pub fn build_sub_view<F: Frames + ?Sized, R: RegionFrames + ?Sized>(
    layout: &Layout,
    cfg: &EptConfig,
    frames: &mut F,
    entry: &EntryFrames,
    regions: &R,
) -> Result<View, Error> {
    entry.check()?;
    let mut builder = Builder::new(layout, cfg, frames, ViewKind::Sub)?;
    builder.map_given(layout.sub_code_gpa(), entry.sub_code, EptPerm::ExecuteOnly)?;
    builder.map_given(layout.eptp_list_gpa(), entry.eptp_list, EptPerm::ReadWrite)?;
    builder.map_stack(layout.sub_stack())?;
    for (index, region) in layout.regions().enumerate() {
        let p = region.placement;
        let page = p.page_size.bytes();
        let mut offset = 0u64;
        let mut page_index = 0u64;
        while offset < p.size {
            let frame = regions.region_frame(index, page_index)?;
            if !frame.is_aligned(p.page_size) || entry.overlapped_by(frame, page) {
                return Err(Error::BadRegionFrame);
            }
            let gpa = p.gpa.checked_add(offset).ok_or(Error::AddressTooLarge)?;
            builder.ept.map(
                &mut builder.frames,
                gpa,
                frame,
                p.page_size,
                region.access.ept_perm(),
                MemType::WriteBack,
            )?;
            offset = offset.checked_add(page).ok_or(Error::BadSize)?;
            page_index = page_index.checked_add(1).ok_or(Error::BadSize)?;
        }
    }
    let mut tables = builder.tables(layout.sub_tables());
    let pt = tables.pt;
    pt.map(
        &mut tables,
        layout.code_gva(),
        layout.sub_code_gpa(),
        PageSize::Size4K,
        GuestPerm::Execute,
    )?;
    pt.map(
        &mut tables,
        layout.eptp_list_gva(),
        layout.eptp_list_gpa(),
        PageSize::Size4K,
        GuestPerm::ReadWrite,
    )?;
    let stack = layout.sub_stack();
    pt.map_range(
        &mut tables,
        stack.gva,
        stack.gpa,
        stack.size,
        PageSize::Size4K,
        GuestPerm::ReadWrite,
    )?;
    for region in layout.regions() {
        let p = region.placement;
        pt.map_range(
            &mut tables,
            p.gva,
            p.gpa,
            p.size,
            p.page_size,
            region.access.guest_perm(),
        )?;
    }
    let guest_tables = tables.allocated;
    builder.finish(layout, guest_tables)
}

/// State shared by the two view builders.
struct Builder<'f, F: Frames + ?Sized> {
    kind: ViewKind,
    cfg: EptConfig,
    frames: CountingFrames<&'f mut F>,
    ept: Ept,
    apt: Apt,
    pt: GuestPageTable,
    stack_pages: u64,
}

impl<'f, F: Frames + ?Sized> Builder<'f, F> {
    fn new(
        layout: &Layout,
        cfg: &EptConfig,
        frames: &'f mut F,
        kind: ViewKind,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        cfg.check_leaf(EptPerm::ExecuteOnly, PageSize::Size4K)?;
        let mut frames = CountingFrames::new(frames);
        let root = frames.alloc_zeroed()?;
        let apt = Apt::install(&mut frames, cfg, root)?;
        let ept = Ept::with_fill(&mut frames, *cfg, apt.fill())?;
        Ok(Self {
            kind,
            cfg: *cfg,
            frames,
            ept,
            apt,
            pt: GuestPageTable::new(layout.paging(), root).with_privilege(layout.privilege()),
            stack_pages: 0,
        })
    }

    fn map_given(&mut self, gpa: Gpa, frame: Hpa, perm: EptPerm) -> Result<(), Error> {
        self.ept.map(
            &mut self.frames,
            gpa,
            frame,
            PageSize::Size4K,
            perm,
            MemType::WriteBack,
        )
    }

    fn map_stack(&mut self, stack: Placement) -> Result<(), Error> {
        let mut offset = 0u64;
        while offset < stack.size {
            let frame = self.frames.alloc_zeroed()?;
            self.stack_pages = self.stack_pages.saturating_add(1);
            let gpa = stack
                .gpa
                .checked_add(offset)
                .ok_or(Error::AddressTooLarge)?;
            self.map_given(gpa, frame, EptPerm::ReadWrite)?;
            offset = offset.checked_add(PAGE_SIZE).ok_or(Error::BadSize)?;
        }
        Ok(())
    }

    fn tables(&mut self, pool: TablePool) -> ViewTables<'_, 'f, F> {
        let end = pool
            .pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| pool.gpa.0.checked_add(len))
            .unwrap_or(pool.gpa.0);
        ViewTables {
            pt: self.pt,
            perm: table_perm(&self.cfg),
            start: pool.gpa.0,
            next: pool.gpa.0,
            end,
            allocated: 0,
            builder: self,
        }
    }

    fn finish(mut self, layout: &Layout, guest_tables: u64) -> Result<View, Error> {
        let (start, len) = layout.trusted_window();
        self.ept.reserve_holes(&mut self.frames, start, len)?;
        let guest_tables = guest_tables.saturating_add(1); // the root
        let apt_tables = 3;
        let ept_tables = self
            .frames
            .allocated()
            .saturating_sub(guest_tables)
            .saturating_sub(apt_tables)
            .saturating_sub(self.stack_pages);
        Ok(View {
            kind: self.kind,
            ept: self.ept,
            page_table: self.pt,
            apt: self.apt,
            counts: FrameCounts {
                ept_tables,
                apt_tables,
                guest_tables,
                stack_pages: self.stack_pages,
            },
        })
    }
}

/// The [`TableSpace`] of a view: table pages come from the plan's pool and are mapped in
/// the view's EPT as they are allocated.
struct ViewTables<'b, 'f, F: Frames + ?Sized> {
    builder: &'b mut Builder<'f, F>,
    pt: GuestPageTable,
    perm: EptPerm,
    start: u64,
    next: u64,
    end: u64,
    allocated: u64,
}

impl<F: Frames + ?Sized> TableSpace for ViewTables<'_, '_, F> {
    fn alloc_table(&mut self) -> Result<(Gpa, Hpa), Error> {
        let gpa = self.next;
        let after = gpa
            .checked_add(PAGE_SIZE)
            .ok_or(Error::TablePoolExhausted)?;
        if after > self.end {
            return Err(Error::TablePoolExhausted);
        }
        let b = &mut *self.builder;
        let frame = b.frames.alloc_zeroed()?;
        b.ept.map(
            &mut b.frames,
            Gpa(gpa),
            frame,
            PageSize::Size4K,
            self.perm,
            MemType::WriteBack,
        )?;
        self.next = after;
        self.allocated = self.allocated.saturating_add(1);
        Ok((Gpa(gpa), frame))
    }

    fn table_frame(&self, gpa: Gpa) -> Result<Hpa, Error> {
        // Only tables this builder allocated: never follow an entry out of the pool.
        if gpa.0 < self.start || gpa.0 >= self.next {
            return Err(Error::BadFrame);
        }
        match self.builder.ept.lookup(&self.builder.frames, gpa)? {
            EptLookup::Mapped {
                hpa,
                size: PageSize::Size4K,
                ..
            } => Ok(hpa),
            _ => Err(Error::BadFrame),
        }
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error> {
        self.builder.frames.read_entry(frame, index)
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error> {
        self.builder.frames.write_entry(frame, index, value)
    }
}
