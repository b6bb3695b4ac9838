// SPDX-License-Identifier: GPL-2.0
//! Test support: an in-memory frame store that records every access, a software EPT walker,
//! a software x86-64 page walker (4- and 5-level) that reads guest tables through the EPT,
//! enumerators of all EPT leaves and all guest translations, and a runner for property tests
//! that prints how many cases ran.
//!
//! The walkers follow the Intel SDM, not elisa-core: they decode raw entries on their own,
//! so a builder bug cannot hide behind a shared helper.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use elisa_core::addr::Hpa;
use elisa_core::frame::Frames;
use elisa_core::Error;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per property test.
pub const CASES: u32 = 256;

/// Runs `test` over `CASES` values of `strategy` and prints `property <name>: N cases`.
pub fn property<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let passed = AtomicU64::new(0);
    let result = runner.run(&strategy, |value| {
        test(value)?;
        passed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("property {name} failed: {e}");
    }
    println!("property {name}: {} cases", passed.load(Ordering::Relaxed));
}

// ---------------------------------------------------------------------------------------
// Frames in memory
// ---------------------------------------------------------------------------------------

/// Where the in-memory store puts its frames: far from any GPA a test uses, so that a GPA
/// written where an HPA belongs (or the reverse) walks into nothing.
pub const HPA_BASE: u64 = 0x0000_0a00_0000_0000;

/// An in-memory [`Frames`] store that records every allocation and write.
#[derive(Default)]
pub struct MemFrames {
    frames: HashMap<u64, Box<[u64; 512]>>,
    /// Frames in allocation order.
    pub allocated: Vec<u64>,
    /// Every write, in order: (frame, index).
    pub writes: Vec<(u64, usize)>,
    /// Allocation limit (for out-of-memory tests).
    pub limit: Option<usize>,
    next: u64,
}

impl MemFrames {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            next: HPA_BASE,
            ..Self::default()
        }
    }

    /// A marker for [`since`](Self::since): (allocations so far, writes so far).
    pub fn mark(&self) -> (usize, usize) {
        (self.allocated.len(), self.writes.len())
    }

    /// Frames allocated and writes made after `mark`.
    pub fn since(&self, mark: (usize, usize)) -> (HashSet<u64>, &[(u64, usize)]) {
        (
            self.allocated[mark.0..].iter().copied().collect(),
            &self.writes[mark.1..],
        )
    }

    /// Reads an entry of any address: frames not in the store read as zero (data pages the
    /// test invented, such as region frames).
    pub fn peek(&self, frame: u64, index: usize) -> u64 {
        self.frames
            .get(&(frame & !0xfff))
            .map_or(0, |f| f[index & 511])
    }

    /// Writes an entry of a frame in the store directly (for tests that model what the guest
    /// or the trampolines leave in a page), without recording it.
    pub fn poke(&mut self, frame: u64, index: usize, value: u64) {
        self.frames
            .get_mut(&(frame & !0xfff))
            .expect("frame in store")[index] = value;
    }

    /// Whether the store owns `frame`.
    pub fn owns(&self, frame: u64) -> bool {
        self.frames.contains_key(&frame)
    }
}

impl Frames for MemFrames {
    fn alloc_zeroed(&mut self) -> Result<Hpa, Error> {
        if self.limit.is_some_and(|l| self.allocated.len() >= l) {
            return Err(Error::OutOfFrames);
        }
        let frame = self.next;
        self.next += 0x1000;
        self.frames.insert(frame, Box::new([0; 512]));
        self.allocated.push(frame);
        Ok(Hpa(frame))
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error> {
        self.frames
            .get(&frame.0)
            .and_then(|f| f.get(index))
            .copied()
            .ok_or(Error::BadFrame)
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error> {
        let entry = self
            .frames
            .get_mut(&frame.0)
            .and_then(|f| f.get_mut(index))
            .ok_or(Error::BadFrame)?;
        *entry = value;
        self.writes.push((frame.0, index));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Software EPT walker (SDM Vol. 3C, "EPT translation mechanism")
// ---------------------------------------------------------------------------------------

const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Effective EPT permissions of a translation (ANDed along the walk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptPerms {
    pub read: bool,
    pub write: bool,
    /// Supervisor-mode execute (bit 2).
    pub exec: bool,
    /// User-mode execute (bit 10; only meaningful with MBEC).
    pub user_exec: bool,
}

/// A successful EPT translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptLeaf {
    pub hpa: u64,
    pub perms: EptPerms,
    pub size: u64,
    pub mem_type: u64,
    pub ignore_pat: bool,
    pub suppress_ve: bool,
}

/// Why an EPT walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptFault {
    /// A not-present entry (EPT violation).
    NotPresent { level: u8, entry: u64 },
    /// A misconfigured entry (EPT misconfiguration).
    Misconfig { level: u8, entry: u64 },
    /// The GPA is beyond what a 4-level walk translates.
    TooLarge,
}

/// Walks `gpa` through the EPT whose EPTP is `eptp`.
pub fn ept_walk(mem: &MemFrames, eptp: u64, gpa: u64) -> Result<EptLeaf, EptFault> {
    assert_eq!((eptp >> 3) & 7, 3, "the walker models 4-level EPT only");
    if gpa >> 48 != 0 {
        return Err(EptFault::TooLarge);
    }
    let mut table = eptp & ADDR;
    let mut perms = EptPerms {
        read: true,
        write: true,
        exec: true,
        user_exec: true,
    };
    for level in (1..=4u8).rev() {
        let shift = 12 + 9 * (u32::from(level) - 1);
        let entry = mem.peek(table, ((gpa >> shift) & 511) as usize);
        let (r, w, x) = (entry & 1 != 0, entry & 2 != 0, entry & 4 != 0);
        if !r && !w && !x {
            return Err(EptFault::NotPresent { level, entry });
        }
        // Write without read is a misconfiguration; so is a reserved memory type on a leaf,
        // and bit 7 on a PML4E; bits 51:M are assumed zero-checked by the caller.
        if w && !r {
            return Err(EptFault::Misconfig { level, entry });
        }
        perms.read &= r;
        perms.write &= w;
        perms.exec &= x;
        perms.user_exec &= entry & (1 << 10) != 0;
        let leaf = level == 1 || ((level == 2 || level == 3) && entry & (1 << 7) != 0);
        if level == 4 && entry & (1 << 7) != 0 {
            return Err(EptFault::Misconfig { level, entry });
        }
        if leaf {
            let mem_type = (entry >> 3) & 7;
            if matches!(mem_type, 2 | 3 | 7) {
                return Err(EptFault::Misconfig { level, entry });
            }
            let size = 1u64 << shift;
            return Ok(EptLeaf {
                hpa: (entry & ADDR & !(size - 1)) | (gpa & (size - 1)),
                perms,
                size,
                mem_type,
                ignore_pat: entry & (1 << 6) != 0,
                suppress_ve: entry & (1 << 63) != 0,
            });
        }
        table = entry & ADDR;
    }
    unreachable!()
}

/// One EPT leaf found by [`ept_leaves`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptMapping {
    pub gpa: u64,
    pub size: u64,
    pub entry: u64,
}

/// What [`ept_leaves`] found: explicit leaves, holes, and entries into the APT chain.
#[derive(Default, Debug)]
pub struct EptTree {
    /// Leaves outside the APT chain, by GPA.
    pub leaves: BTreeMap<u64, EptMapping>,
    /// Holes: (GPA, size).
    pub holes: Vec<(u64, u64)>,
    /// Entries that point into the APT chain: (GPA, size).
    pub apt: Vec<(u64, u64)>,
    /// Entries that are zero (there should be none in a view).
    pub empty: Vec<(u64, u64)>,
    /// Tables visited (not counting the chain).
    pub tables: usize,
}

/// Enumerates an EPT, treating entries that point to one of the `chain` tables (and leaves to
/// `apt_frame` at level 1) as "reaches the APT".
pub fn ept_leaves(mem: &MemFrames, root: u64, chain: &[u64], apt_frame: u64) -> EptTree {
    let mut tree = EptTree::default();
    walk_ept_table(mem, root, 4, 0, chain, apt_frame, &mut tree);
    tree
}

fn walk_ept_table(
    mem: &MemFrames,
    table: u64,
    level: u8,
    base: u64,
    chain: &[u64],
    apt_frame: u64,
    tree: &mut EptTree,
) {
    tree.tables += 1;
    let span = 1u64 << (12 + 9 * (u32::from(level) - 1));
    for index in 0..512u64 {
        let gpa = base + index * span;
        let entry = mem.peek(table, index as usize);
        if entry & 7 == 0 {
            if entry == 0 {
                tree.empty.push((gpa, span));
            } else {
                tree.holes.push((gpa, span));
            }
            continue;
        }
        let leaf = level == 1 || (level <= 3 && entry & (1 << 7) != 0);
        if leaf {
            if level == 1 && entry & ADDR == apt_frame {
                tree.apt.push((gpa, span));
            } else {
                tree.leaves.insert(
                    gpa,
                    EptMapping {
                        gpa,
                        size: span,
                        entry,
                    },
                );
            }
        } else if chain.contains(&(entry & ADDR)) {
            tree.apt.push((gpa, span));
        } else {
            walk_ept_table(mem, entry & ADDR, level - 1, gpa, chain, apt_frame, tree);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Software x86-64 page walker, reading every table through the EPT
// ---------------------------------------------------------------------------------------

/// A guest translation with the final EPT permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub gpa: u64,
    pub hpa: u64,
    /// Guest page size.
    pub size: u64,
    pub writable: bool,
    pub user: bool,
    pub nx: bool,
    pub global: bool,
    pub ept: EptPerms,
}

impl Translation {
    /// Whether user-mode code can fetch from it (with or without MBEC).
    pub fn executable(&self, mbec: bool) -> bool {
        !self.nx
            && if mbec {
                self.ept.user_exec
            } else {
                self.ept.exec
            }
    }
}

/// Why a guest walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// #PF in the guest (not present or reserved bit).
    PageFault,
    /// The EPT refused a paging-structure access or the final GPA.
    Ept(EptFault),
    /// A paging-structure read lacked EPT read permission (or write, with EPT A/D on).
    EptPermission { gpa: u64 },
}

/// Walks `gva` from `cr3` with `levels` (4 or 5) levels, reading tables through the EPT.
///
/// With `ept_ad`, paging-structure accesses count as writes for EPT purposes.
pub fn guest_walk(
    mem: &MemFrames,
    eptp: u64,
    levels: u8,
    cr3: u64,
    gva: u64,
    ept_ad: bool,
) -> Result<Translation, WalkFault> {
    let mut table_gpa = cr3 & ADDR;
    let (mut writable, mut user, mut nx) = (true, true, false);
    for level in (1..=levels).rev() {
        let t = ept_walk(mem, eptp, table_gpa).map_err(WalkFault::Ept)?;
        if !t.perms.read || (ept_ad && !t.perms.write) {
            return Err(WalkFault::EptPermission { gpa: table_gpa });
        }
        let shift = 12 + 9 * (u32::from(level) - 1);
        let entry = mem.peek(t.hpa & !0xfff, ((gva >> shift) & 511) as usize);
        if entry & 1 == 0 {
            return Err(WalkFault::PageFault);
        }
        writable &= entry & 2 != 0;
        user &= entry & 4 != 0;
        nx |= entry & (1 << 63) != 0;
        let ps = entry & (1 << 7) != 0;
        if ps && level >= 4 {
            return Err(WalkFault::PageFault); // reserved bit
        }
        if level == 1 || ps {
            let size = 1u64 << shift;
            let gpa = (entry & ADDR & !(size - 1)) | (gva & (size - 1));
            if size > 0x1000 && entry & ADDR & (size - 1) & !0x1000 != 0 {
                return Err(WalkFault::PageFault); // reserved bits in a large-page address
            }
            let leaf = ept_walk(mem, eptp, gpa).map_err(WalkFault::Ept)?;
            return Ok(Translation {
                gpa,
                hpa: leaf.hpa,
                size,
                writable,
                user,
                nx,
                global: entry & (1 << 8) != 0,
                ept: leaf.perms,
            });
        }
        table_gpa = entry & ADDR;
    }
    unreachable!()
}

/// One guest leaf found by [`guest_leaves`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestLeaf {
    pub gva: u64,
    pub size: u64,
    pub entry: u64,
}

/// Enumerates every leaf reachable from the root frame `root` (read directly), following
/// child tables through the EPT. Panics on a loop or a table the EPT does not map readable.
pub fn guest_leaves(mem: &MemFrames, eptp: u64, levels: u8, root: u64) -> Vec<GuestLeaf> {
    let mut out = Vec::new();
    walk_guest_table(mem, eptp, root, levels, 0, &mut out);
    out
}

fn walk_guest_table(
    mem: &MemFrames,
    eptp: u64,
    frame: u64,
    level: u8,
    base: u64,
    out: &mut Vec<GuestLeaf>,
) {
    let span = 1u64 << (12 + 9 * (u32::from(level) - 1));
    for index in 0..512u64 {
        let entry = mem.peek(frame, index as usize);
        if entry & 1 == 0 {
            continue;
        }
        let gva = base + index * span;
        if level == 1 || entry & (1 << 7) != 0 {
            out.push(GuestLeaf {
                gva,
                size: span,
                entry,
            });
        } else {
            let child = ept_walk(mem, eptp, entry & ADDR).expect("child table mapped");
            walk_guest_table(mem, eptp, child.hpa, level - 1, gva, out);
        }
    }
}

/// Sign-extends a linear address of `levels` levels (0: leave as is).
pub fn canonical(gva: u64, levels: u8) -> u64 {
    match levels {
        4 => (((gva << 16) as i64) >> 16) as u64,
        5 => (((gva << 7) as i64) >> 7) as u64,
        _ => gva,
    }
}

/// Every guest leaf (as `(gpa, size)`) reachable by any walk that starts at `cr3`, reading
/// each table through the EPT with the CPU's permission checks. Memoised on (frame, level),
/// so loops through the APT terminate.
pub fn reachable_leaves(
    mem: &MemFrames,
    eptp: u64,
    levels: u8,
    cr3: u64,
    ept_ad: bool,
) -> Vec<(u64, u64)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    visit(mem, eptp, cr3 & ADDR, levels, ept_ad, &mut seen, &mut out);
    out
}

fn visit(
    mem: &MemFrames,
    eptp: u64,
    table_gpa: u64,
    level: u8,
    ept_ad: bool,
    seen: &mut HashSet<(u64, u8)>,
    out: &mut Vec<(u64, u64)>,
) {
    let Ok(t) = ept_walk(mem, eptp, table_gpa) else {
        return;
    };
    if !t.perms.read || (ept_ad && !t.perms.write) {
        return;
    }
    let frame = t.hpa & !0xfff;
    if !seen.insert((frame, level)) {
        return;
    }
    let shift = 12 + 9 * (u32::from(level) - 1);
    for index in 0..512 {
        let entry = mem.peek(frame, index);
        if entry & 1 == 0 {
            continue;
        }
        let ps = entry & (1 << 7) != 0;
        if ps && level >= 4 {
            continue;
        }
        if level == 1 || ps {
            let size = 1u64 << shift;
            if size > 0x1000 && entry & ADDR & (size - 1) & !0x1000 != 0 {
                continue;
            }
            out.push((entry & ADDR & !(size - 1), size));
        } else {
            visit(mem, eptp, entry & ADDR, level - 1, ept_ad, seen, out);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random scenarios: a layout request, an EPT configuration, and the views built from them
// ---------------------------------------------------------------------------------------

use elisa_core::addr::{Gpa, Gva, PageSize};
use elisa_core::ept::{EptCaps, EptConfig};
use elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
use elisa_core::paging::{CallerPrivilege, PagingMode};
use elisa_core::view::{build_gate_view, build_sub_view, EntryFrames, View};
use proptest::prelude::*;

/// Host-physical base of the (invented) frames backing regions; not in the frame store.
pub const REGION_HPA_BASE: u64 = 0x0000_0c00_0000_0000;

/// The frame backing page `index` of region `region` (page size `size`).
pub fn region_hpa(region: usize, index: u64, size: PageSize) -> u64 {
    REGION_HPA_BASE + ((region as u64) << 36) + index * size.bytes()
}

/// One random test scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub paging: PagingMode,
    pub privilege: CallerPrivilege,
    pub phys_bits: u8,
    pub guest_gpa_end: u64,
    pub entry_gva: u64,
    pub sub_stack_pages: u32,
    pub regions: Vec<RegionRequest>,
    pub accessed_dirty: bool,
    pub mbec: bool,
}

fn region_strategy(va_bits: u32) -> impl Strategy<Value = RegionRequest> {
    let kind = prop_oneof![
        Just((RegionKind::Code, RegionAccess::ExecuteOnly)),
        Just((RegionKind::Code, RegionAccess::ReadExecute)),
        Just((RegionKind::Data, RegionAccess::ReadWrite)),
        Just((RegionKind::Data, RegionAccess::ReadOnly)),
        Just((RegionKind::Shared, RegionAccess::ReadWrite)),
        Just((RegionKind::Shared, RegionAccess::ReadOnly)),
    ];
    let size = prop_oneof![
        8 => (1u64..=6).prop_map(|n| (PageSize::Size4K, n)),
        3 => (1u64..=2).prop_map(|n| (PageSize::Size2M, n)),
        1 => Just((PageSize::Size1G, 1u64)),
    ];
    // A fixed GVA in the lower half, away from the planner's default window.
    let fixed = prop_oneof![
        3 => Just(None),
        1 => (0u64..(1 << (va_bits - 1 - 30))).prop_map(Some),
    ];
    (kind, size, fixed).prop_map(|((kind, access), (page_size, n), fixed)| {
        let mut r = RegionRequest::new(kind, access, n * page_size.bytes(), page_size);
        if let Some(slot) = fixed {
            // 1 GiB-aligned slots below 2^45 or above 2^46 (outside the default window).
            let gva = slot << 30;
            if !(1u64 << 45..1u64 << 46).contains(&gva) {
                r = r.at(Gva(gva));
            }
        }
        r
    })
}

/// Random scenarios for `paging`.
pub fn scenario(paging: PagingMode) -> impl Strategy<Value = Scenario> {
    let va_bits = paging.va_bits();
    // G with G - 0x2000 at or above 4 GiB and G + 0x3000 in the same half.
    let entry = (
        any::<bool>(),
        ((1u64 << 20) + 2)..((1u64 << (va_bits - 1 - 12)) - 3),
    )
        .prop_map(move |(upper, page)| {
            let gva = page << 12;
            if upper {
                canonical(gva | (1 << (va_bits - 1)), paging.levels())
            } else {
                gva
            }
        });
    (
        36u8..=46,
        (24u32..=36),
        entry,
        1u32..=48,
        proptest::collection::vec(region_strategy(va_bits), 0..6),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            move |(phys_bits, end_log2, entry_gva, sub_stack_pages, regions, ad, mbec, user)| {
                Scenario {
                    paging,
                    privilege: if user {
                        CallerPrivilege::User
                    } else {
                        CallerPrivilege::Supervisor
                    },
                    phys_bits,
                    guest_gpa_end: (1u64 << end_log2.min(u32::from(phys_bits) - 3)) + 0x1000,
                    entry_gva,
                    sub_stack_pages,
                    regions,
                    accessed_dirty: ad,
                    mbec,
                }
            },
        )
}

impl Scenario {
    /// The layout request of the scenario.
    pub fn request(&self) -> LayoutRequest<'_> {
        let mut req = LayoutRequest::new(
            self.paging,
            self.phys_bits,
            Gpa(self.guest_gpa_end),
            Gva(self.entry_gva),
        );
        req.sub_stack_pages = self.sub_stack_pages;
        req.regions = &self.regions;
        req.privilege = self.privilege;
        req
    }

    /// The EPT configuration of the scenario.
    pub fn config(&self) -> EptConfig {
        let mut cfg = EptConfig::recommended(EptCaps::all(), self.mbec);
        cfg.accessed_dirty = self.accessed_dirty;
        cfg
    }
}

/// A scenario with its views built.
pub struct Built {
    pub mem: MemFrames,
    pub layout: Layout,
    pub cfg: EptConfig,
    pub entry: EntryFrames,
    pub gate: View,
    pub sub: View,
    /// (allocations, writes) before the sub view, between the views, and after both.
    pub marks: [(usize, usize); 3],
    /// The scenario's end of guest memory.
    pub guest_gpa_end: u64,
    /// The scenario's guest physical address width.
    pub phys_bits: u8,
}

impl Built {
    pub fn levels(&self) -> u8 {
        self.layout.paging().levels()
    }
}

/// Plans and builds the scenario; `None` if the plan is refused (for example, two fixed
/// GVAs collide), with the error.
pub fn build(s: &Scenario) -> Result<Built, Error> {
    let layout = Layout::plan(&s.request())?;
    let cfg = s.config();
    let mut mem = MemFrames::new();
    let entry = EntryFrames {
        gate_code: mem.alloc_zeroed()?,
        gate_data: mem.alloc_zeroed()?,
        sub_code: mem.alloc_zeroed()?,
        eptp_list: mem.alloc_zeroed()?,
    };
    let regions = |region: usize, index: u64| {
        let size = layout
            .region(region)
            .ok_or(Error::BadRegionFrame)?
            .placement
            .page_size;
        Ok(Hpa(region_hpa(region, index, size)))
    };
    let m0 = mem.mark();
    let sub = build_sub_view(&layout, &cfg, &mut mem, &entry, &regions)?;
    let m1 = mem.mark();
    let gate = build_gate_view(&layout, &cfg, &mut mem, &entry)?;
    let m2 = mem.mark();
    Ok(Built {
        mem,
        layout,
        cfg,
        entry,
        gate,
        sub,
        marks: [m0, m1, m2],
        guest_gpa_end: s.guest_gpa_end,
        phys_bits: s.phys_bits,
    })
}
