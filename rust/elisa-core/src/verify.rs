// SPDX-License-Identifier: GPL-2.0
//! Checking built views: what a vCPU's gate and sub views should map, software walkers, and
//! the isolation invariants, in one implementation for the host tests, `elisactl
//! check-views` (over a debugfs dump, see [`dump`](super::dump)) and anything else that has
//! the views' frames.
//!
//! Three parts:
//!
//! - [`walk`]: an EPT walker and an x86-64 page walker (4 and 5 levels) that follow the
//!   Intel SDM, not elisa-core: they decode raw entries on their own, so a builder bug cannot
//!   hide behind a shared helper; and enumerators of EPT entries, guest leaves and the leaves
//!   any CR3 reaches. Memory is read only through [`Frames::read_entry`](super::frame::Frames).
//! - The expectation: a [`ViewsHeader`] (EPTPs, APT frames, G, the trusted window, the
//!   policy) and the [`Mapping`]s the views should have, each a run of pages with its GVA,
//!   GPA, HPA (or "a frame of the views" for stacks and page-table pages) and permissions.
//!   [`Expected`] derives them from a [`Layout`], the [`EntryFrames`] and the region
//!   frames, which is exactly what the module and the tests know when they build views.
//! - The invariants, one [`Check`] each, run by [`check`] against any
//!   [`Frames`](super::frame::Frames) store: the module's pages, a test's memory, or a dump.
//!
//! Nothing here allocates: checks that sort or remember take a caller's scratch slice of
//! [`Span`]s ([`scratch_len`] says how long), and report the first [`Violation`], a static
//! message with the address it is about.
//!
//! # Examples
//!
//! ```
//! use elisa_core::addr::{Gpa, Gva, Hpa, PageSize};
//! use elisa_core::ept::{EptCaps, EptConfig};
//! use elisa_core::frame::{ArrayFrames, Frames};
//! use elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
//! use elisa_core::paging::PagingMode;
//! use elisa_core::verify::{self, Check, Expected, Mapping, Span, Views, ViewsHeader};
//! use elisa_core::view::{build_gate_view, build_sub_view, EntryFrames};
//!
//! let regions = [RegionRequest::new(RegionKind::Code, RegionAccess::ExecuteOnly, 0x1000,
//!                                   PageSize::Size4K)];
//! let mut req = LayoutRequest::new(PagingMode::FourLevel, 39, Gpa(1 << 30),
//!                                  Gva(0x7f00_0000_0000));
//! req.regions = &regions;
//! let layout = Layout::plan(&req)?;
//! let cfg = EptConfig::recommended(EptCaps::all(), false);
//! let mut frames = Box::new(ArrayFrames::<64>::new(Hpa(0x1_0000_0000)));
//! let entry = EntryFrames {
//!     gate_code: frames.alloc_zeroed()?,
//!     gate_data: frames.alloc_zeroed()?,
//!     sub_code: frames.alloc_zeroed()?,
//!     eptp_list: frames.alloc_zeroed()?,
//! };
//! let backing = |_region: usize, _index: u64| Ok(Hpa(0x2_0000_0000));
//! let sub = build_sub_view(&layout, &cfg, &mut *frames, &entry, &backing)?;
//! let gate = build_gate_view(&layout, &cfg, &mut *frames, &entry)?;
//!
//! let header = ViewsHeader::new(&layout, &cfg, &entry, &gate, &sub, Gva(0), 0);
//! let mut mappings: Vec<Mapping> = Vec::new();
//! Expected { layout: &layout, cfg: &cfg, entry: &entry, regions: &backing }
//!     .for_each(&mut |m| Ok(mappings.push(m)))?;
//! let views = Views { header: &header, mappings: &mappings.as_slice() };
//! let mut scratch = vec![Span::default(); verify::scratch_len(&views, frames.used())];
//! assert_eq!(verify::check(Check::WriteXorExecute, &views, &*frames, &mut scratch, 1), Ok(()));
//! assert_eq!(verify::check(Check::SubExact, &views, &*frames, &mut scratch, 1), Ok(()));
//! # Ok::<(), elisa_core::Error>(())
//! ```

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod checks;
pub mod walk;

pub use checks::{check, scratch_len, Check};

use core::fmt;

use super::addr::{Gpa, Gva, Hpa, PageSize, PAGE_SIZE};
use super::apt::table_perm;
use super::ept::{EptConfig, EptPerm};
use super::eptp::{EPTP_GATE_ENTRIES, EPTP_INDEX_GATE};
use super::error::Error;
use super::layout::Layout;
use super::paging::{CallerPrivilege, GuestPerm, PagingMode};
use super::view::{EntryFrames, RegionFrames, View, ViewKind};

/// Why a check failed: what was wrong, in which view, at which address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What is wrong.
    pub what: &'static str,
    /// The view it is in, when it is about one.
    pub view: Option<ViewKind>,
    /// The address (GPA, GVA, HPA or CR3) it is about.
    pub at: u64,
    /// A value that shows it (an entry, a count).
    pub value: u64,
}

impl Violation {
    /// A violation about `at`, shown by `value`.
    pub const fn new(what: &'static str, at: u64, value: u64) -> Self {
        Self {
            what,
            view: None,
            at,
            value,
        }
    }

    /// The same violation, in `view` unless it names a view already.
    pub const fn in_view(mut self, view: ViewKind) -> Self {
        if self.view.is_none() {
            self.view = Some(view);
        }
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.view {
            Some(ViewKind::Gate) => write!(f, "gate view: ")?,
            Some(ViewKind::Sub) => write!(f, "sub view: ")?,
            None => {}
        }
        write!(f, "{} at {:#x} ({:#x})", self.what, self.at, self.value)
    }
}

/// An address range with a tag, the unit of the checks' scratch space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// First address.
    pub start: u64,
    /// Length (or another key).
    pub len: u64,
    /// What the check needs to remember about it.
    pub tag: u64,
}

/// The roots of one view: its EPTP and its APT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewRoots {
    /// The view's EPTP.
    pub eptp: u64,
    /// The APT frame, which is also the root of the view's trusted guest page table.
    pub apt_frame: Hpa,
    /// The APT chain tables, level 1 first.
    pub apt_chain: [Hpa; 3],
}

impl ViewRoots {
    /// The roots of a built view.
    pub fn of(view: &View) -> Self {
        Self {
            eptp: view.eptp().raw(),
            apt_frame: view.apt().frame(),
            apt_chain: view.apt().chain(),
        }
    }
}

/// What a vCPU's pair of views is, besides its mappings: the dump's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewsHeader {
    /// The vCPU (KVM's `vcpu_idx`).
    pub vcpu: u32,
    /// The EPTP-list index of the gate view.
    pub gate_index: u16,
    /// The lowest EPTP-list index any gate of the vCPU may have (other services' gates sit
    /// between it and 511); `gate_index` when the vCPU has one gate.
    pub lowest_gate_index: u16,
    /// The guest paging mode of the trusted tables.
    pub paging: PagingMode,
    /// The callers' privilege, which the trusted leaves' U bit follows.
    pub privilege: CallerPrivilege,
    /// EPT accessed/dirty flags on (EPTP bit 6; page-table pages then EPT-writable).
    pub accessed_dirty: bool,
    /// Mode-based execute control: executable leaves have bit 10 as well.
    pub mbec: bool,
    /// G.
    pub entry_gva: Gva,
    /// The service's entry point in the sub view.
    pub service_entry: Gva,
    /// The EPTP-list page.
    pub eptp_list: Hpa,
    /// The trusted GPA window `(start, length)`.
    pub window: (Gpa, u64),
    /// The gate view.
    pub gate: ViewRoots,
    /// The sub view.
    pub sub: ViewRoots,
    /// What the vCPU's EPTP list holds at index 0: KVM's EPT root of the vCPU's last entry,
    /// 0 before its first.
    pub list0: u64,
    /// The EPTPs `[gate view, sub view]` of every gate of the vCPU, by gate index: entry
    /// `k` is index `EPTP_INDEX_GATE - k`; `[0, 0]` where the vCPU has none. The only
    /// values the list may hold at gate indexes and, during a hop, at index 1.
    pub vcpu_gates: [[u64; 2]; EPTP_GATE_ENTRIES],
}

impl ViewsHeader {
    /// The header of views built from `layout` and `cfg` with `entry`, for vCPU `vcpu`, as
    /// the only gate (index 511) of a vCPU that has not run (`list0` 0); set `gate_index`,
    /// `lowest_gate_index`, `list0` and `vcpu_gates` for others.
    pub fn new(
        layout: &Layout,
        cfg: &EptConfig,
        entry: &EntryFrames,
        gate: &View,
        sub: &View,
        service_entry: Gva,
        vcpu: u32,
    ) -> Self {
        Self {
            vcpu,
            gate_index: EPTP_INDEX_GATE as u16,
            lowest_gate_index: EPTP_INDEX_GATE as u16,
            paging: layout.paging(),
            privilege: layout.privilege(),
            accessed_dirty: cfg.accessed_dirty,
            mbec: cfg.mbec,
            entry_gva: layout.entry_gva(),
            service_entry,
            eptp_list: entry.eptp_list,
            window: layout.trusted_window(),
            gate: ViewRoots::of(gate),
            sub: ViewRoots::of(sub),
            list0: 0,
            vcpu_gates: {
                let mut g = [[0; 2]; EPTP_GATE_ENTRIES];
                if let Some(first) = g.first_mut() {
                    *first = [gate.eptp().raw(), sub.eptp().raw()];
                }
                g
            },
        }
    }

    /// The vCPU's gate EPTPs `[gate view, sub view]` at EPTP-list index `index`, if it is a
    /// gate index of the vCPU.
    pub fn vcpu_gate(&self, index: usize) -> Option<[u64; 2]> {
        let k = EPTP_INDEX_GATE.checked_sub(index)?;
        self.vcpu_gates.get(k).copied().filter(|g| *g != [0, 0])
    }

    /// The roots of `view`.
    pub fn roots(&self, view: ViewKind) -> &ViewRoots {
        match view {
            ViewKind::Gate => &self.gate,
            ViewKind::Sub => &self.sub,
        }
    }

    /// Whether `gpa` is in the trusted window.
    pub fn in_window(&self, gpa: u64) -> bool {
        let (start, len) = self.window;
        gpa >= start.0 && gpa.wrapping_sub(start.0) < len
    }
}

/// What a run of pages is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MappingKind {
    /// The gate code page (gate view).
    GateCode,
    /// The gate data page (gate view).
    GateData,
    /// The EPTP-list page (both views).
    EptpList,
    /// The gate stack (gate view).
    GateStack,
    /// The gate view's page-table pages.
    GateTables,
    /// The sub code page (sub view).
    SubCode,
    /// The sub stack (sub view).
    SubStack,
    /// The sub view's page-table pages.
    SubTables,
    /// Region `n` of the plan (sub view; region 0 is the service code in the module).
    Region(u8),
}

impl MappingKind {
    /// Whether `view` maps it.
    pub const fn in_view(self, view: ViewKind) -> bool {
        match self {
            MappingKind::EptpList => true,
            MappingKind::GateCode
            | MappingKind::GateData
            | MappingKind::GateStack
            | MappingKind::GateTables => matches!(view, ViewKind::Gate),
            MappingKind::SubCode
            | MappingKind::SubStack
            | MappingKind::SubTables
            | MappingKind::Region(_) => matches!(view, ViewKind::Sub),
        }
    }
}

/// A run of pages a view should map: `pages` leaves of `page_size` from `gpa` (and `gva`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// What it is; also says which views map it.
    pub kind: MappingKind,
    /// The first GVA, or `None` for pages the trusted guest table does not map (its own
    /// page-table pages).
    pub gva: Option<Gva>,
    /// The first GPA.
    pub gpa: Gpa,
    /// The first frame of a physically contiguous run, or `None` for pages the views
    /// allocate themselves (stacks, page-table pages): any frame the views hold, each once.
    pub hpa: Option<Hpa>,
    /// Leaf size in the EPT and the guest table.
    pub page_size: PageSize,
    /// Number of leaves.
    pub pages: u64,
    /// EPT permissions of each leaf.
    pub ept: EptPerm,
    /// Guest page-table permissions of each leaf (`None` with `gva`).
    pub guest: Option<GuestPerm>,
}

impl Mapping {
    /// Bytes covered (saturating).
    pub fn bytes(&self) -> u64 {
        self.pages.saturating_mul(self.page_size.bytes())
    }
}

/// A list of mappings the checks can index: a slice, or a dump's records.
pub trait Mappings {
    /// Number of mappings.
    fn count(&self) -> usize;
    /// Mapping `index`.
    fn get(&self, index: usize) -> Option<Mapping>;
}

/// A slice of mappings: `Views { mappings: &mappings.as_slice(), .. }`.
impl Mappings for &[Mapping] {
    fn count(&self) -> usize {
        self.len()
    }

    fn get(&self, index: usize) -> Option<Mapping> {
        <[Mapping]>::get(self, index).copied()
    }
}

/// Something that produces mappings one by one ([`Expected`]).
pub trait MappingSource {
    /// Calls `f` with each mapping, in order; stops at the first error.
    fn for_each(&self, f: &mut dyn FnMut(Mapping) -> Result<(), Error>) -> Result<(), Error>;
}

/// The mappings the views built from `layout` with `entry` and `regions` should have.
///
/// Each fixed item is one run; a region is one run per physically contiguous stretch of its
/// frames.
pub struct Expected<'a, R: RegionFrames + ?Sized> {
    /// The plan the views were built from.
    pub layout: &'a Layout,
    /// The EPT configuration they were built with.
    pub cfg: &'a EptConfig,
    /// The caller's frames.
    pub entry: &'a EntryFrames,
    /// The frames of the plan's regions.
    pub regions: &'a R,
}

impl<R: RegionFrames + ?Sized> Expected<'_, R> {
    /// See [`MappingSource::for_each`].
    ///
    /// # Errors
    ///
    /// The first error of `f`, or of the region frames.
    pub fn for_each(&self, f: &mut dyn FnMut(Mapping) -> Result<(), Error>) -> Result<(), Error> {
        let l = self.layout;
        let one = |kind, gva: Gva, gpa: Gpa, hpa: Hpa, ept, guest| Mapping {
            kind,
            gva: Some(gva),
            gpa,
            hpa: Some(hpa),
            page_size: PageSize::Size4K,
            pages: 1,
            ept,
            guest: Some(guest),
        };
        let own = |kind, gva: Option<Gva>, gpa: Gpa, bytes: u64, ept, guest| Mapping {
            kind,
            gva,
            gpa,
            hpa: None,
            page_size: PageSize::Size4K,
            pages: bytes / PAGE_SIZE,
            ept,
            guest,
        };
        let tables = table_perm(self.cfg);
        let e = self.entry;
        let rw = EptPerm::ReadWrite;
        f(one(
            MappingKind::GateCode,
            l.code_gva(),
            l.gate_code_gpa(),
            e.gate_code,
            EptPerm::ExecuteOnly,
            GuestPerm::Execute,
        ))?;
        f(one(
            MappingKind::GateData,
            l.gate_data_gva(),
            l.gate_data_gpa(),
            e.gate_data,
            EptPerm::ReadOnly,
            GuestPerm::Read,
        ))?;
        f(one(
            MappingKind::EptpList,
            l.eptp_list_gva(),
            l.eptp_list_gpa(),
            e.eptp_list,
            rw,
            GuestPerm::ReadWrite,
        ))?;
        let stack = l.gate_stack();
        f(own(
            MappingKind::GateStack,
            Some(stack.gva),
            stack.gpa,
            stack.size,
            rw,
            Some(GuestPerm::ReadWrite),
        ))?;
        let pool = l.gate_tables();
        if pool.pages != 0 {
            f(own(
                MappingKind::GateTables,
                None,
                pool.gpa,
                pool.pages.saturating_mul(PAGE_SIZE),
                tables,
                None,
            ))?;
        }
        f(one(
            MappingKind::SubCode,
            l.code_gva(),
            l.sub_code_gpa(),
            e.sub_code,
            EptPerm::ExecuteOnly,
            GuestPerm::Execute,
        ))?;
        let stack = l.sub_stack();
        f(own(
            MappingKind::SubStack,
            Some(stack.gva),
            stack.gpa,
            stack.size,
            rw,
            Some(GuestPerm::ReadWrite),
        ))?;
        let pool = l.sub_tables();
        if pool.pages != 0 {
            f(own(
                MappingKind::SubTables,
                None,
                pool.gpa,
                pool.pages.saturating_mul(PAGE_SIZE),
                tables,
                None,
            ))?;
        }
        for (index, region) in l.regions().enumerate() {
            let p = region.placement;
            let size = p.page_size.bytes();
            let kind = MappingKind::Region(u8::try_from(index).map_err(|_| Error::TooManyRegions)?);
            let run = |first: u64, hpa: Hpa, pages: u64| -> Result<Mapping, Error> {
                let offset = first.checked_mul(size).ok_or(Error::BadSize)?;
                Ok(Mapping {
                    kind,
                    gva: Some(p.gva.checked_add(offset).ok_or(Error::NonCanonical)?),
                    gpa: p.gpa.checked_add(offset).ok_or(Error::AddressTooLarge)?,
                    hpa: Some(hpa),
                    page_size: p.page_size,
                    pages,
                    ept: region.access.ept_perm(),
                    guest: Some(region.access.guest_perm()),
                })
            };
            let total = p.size.checked_div(size).unwrap_or(0);
            // (first page, its frame, pages so far) of the run being gathered.
            let mut current: Option<(u64, Hpa, u64)> = None;
            for page in 0..total {
                let hpa = self.regions.region_frame(index, page)?;
                current = match current {
                    Some((first, start, n))
                        if start.0.checked_add(n.saturating_mul(size)) == Some(hpa.0) =>
                    {
                        Some((first, start, n.saturating_add(1)))
                    }
                    Some((first, start, n)) => {
                        f(run(first, start, n)?)?;
                        Some((page, hpa, 1))
                    }
                    None => Some((page, hpa, 1)),
                };
            }
            if let Some((first, start, n)) = current {
                f(run(first, start, n)?)?;
            }
        }
        Ok(())
    }
}

impl<R: RegionFrames + ?Sized> MappingSource for Expected<'_, R> {
    fn for_each(&self, f: &mut dyn FnMut(Mapping) -> Result<(), Error>) -> Result<(), Error> {
        Expected::for_each(self, f)
    }
}

/// The views to check: their header and their mappings.
#[derive(Clone, Copy)]
pub struct Views<'a> {
    /// EPTPs, APT frames, G, window, policy.
    pub header: &'a ViewsHeader,
    /// What the views should map.
    pub mappings: &'a dyn Mappings,
}
