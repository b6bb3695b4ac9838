// SPDX-License-Identifier: GPL-2.0
//! Test support: an in-memory frame store that records every access, random scenarios built
//! into views (with their expected mappings, for `elisa_core::verify`), and a runner for
//! property tests that prints how many cases ran.
//!
//! The software walkers and the isolation checks are `elisa_core::verify` (re-exported
//! here): they follow the Intel SDM, not the builders, and `elisactl check-views` runs the
//! same code over the module's debugfs dump.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
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
// The walkers and the invariants are elisa-core's (`elisa_core::verify`), shared with
// `elisactl check-views`.
// ---------------------------------------------------------------------------------------

pub use elisa_core::verify::walk::*;

// ---------------------------------------------------------------------------------------
// Random scenarios: a layout request, an EPT configuration, and the views built from them
// ---------------------------------------------------------------------------------------

use elisa_core::addr::{Gpa, Gva, PageSize};
use elisa_core::dump::{self, DumpOut};
use elisa_core::ept::{EptCaps, EptConfig};
use elisa_core::eptp::{Eptp, EptpList};
use elisa_core::gate;
use elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
use elisa_core::paging::{CallerPrivilege, PagingMode};
use elisa_core::verify::{
    scratch_len, Check, Expected, Mapping, Span, ViewRoots, Views, ViewsHeader, Violation,
};
use elisa_core::view::{build_gate_view, build_sub_view, EntryFrames, View};
use proptest::prelude::*;

/// Host-physical base of the (invented) frames backing regions; not in the frame store.
pub const REGION_HPA_BASE: u64 = 0x0000_0c00_0000_0000;

/// The frame backing page `index` of region `region` (page size `size`).
/// KVM's EPT root in the tests' EPTP lists (index 0): a write-back, 4-level EPTP that
/// points at no frame of the views.
pub const TEST_LIST0: u64 = 0x5e | 0x0000_0042_0000_0000;

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

/// Places the regions the planner would place right after the guest's block at G, one after
/// the other (each aligned to its page size), as a module grant often has them: service
/// code next to G, possibly in the upper half, sharing page tables with the entry block.
/// A region that would leave G's half stays the planner's.
fn place_after_entry_block(regions: &mut [RegionRequest], entry_gva: u64, va_bits: u32) {
    let upper = entry_gva >> 63 == 1;
    // The half's last byte: the top of the lower half, or of the address space.
    let last = if upper {
        u64::MAX
    } else {
        (1u64 << (va_bits - 1)) - 1
    };
    let mut next = entry_gva + gate::GUEST_BLOCK_END as u64;
    for r in regions.iter_mut().filter(|r| r.gva.is_none()) {
        let Some(start) = next.checked_next_multiple_of(r.page_size.bytes()) else {
            break;
        };
        match start.checked_add(r.size - 1) {
            Some(end) if end <= last => {
                *r = r.at(Gva(start));
                next = end + 1;
            }
            _ => break,
        }
    }
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
    // Guest memory mostly small, sometimes up to half the physical address space (the
    // trusted window then goes near its top); up to MAX_REGIONS regions, mostly few.
    let end_log2 = prop_oneof![4 => 24u32..=36, 1 => 36u32..=51];
    let regions = prop_oneof![
        4 => proptest::collection::vec(region_strategy(va_bits), 0..6),
        1 => proptest::collection::vec(region_strategy(va_bits), 6..=elisa_core::layout::MAX_REGIONS),
    ];
    (
        32u8..=52,
        end_log2,
        entry,
        1u32..=48,
        regions,
        any::<bool>(),
        any::<bool>(),
        proptest::bool::weighted(0.3),
    )
        .prop_map(
            move |(
                phys_bits,
                end_log2,
                entry_gva,
                sub_stack_pages,
                mut regions,
                mbec,
                user,
                near,
            )| {
                if near {
                    place_after_entry_block(&mut regions, entry_gva, va_bits);
                }
                Scenario {
                    paging,
                    privilege: if user {
                        CallerPrivilege::User
                    } else {
                        CallerPrivilege::Supervisor
                    },
                    phys_bits,
                    guest_gpa_end: (1u64 << end_log2.min(u32::from(phys_bits) - 1)) + 0x1000,
                    entry_gva,
                    sub_stack_pages,
                    regions,
                    // Views never run with EPT A/D (`EptConfig::validate`).
                    accessed_dirty: false,
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

    /// The frame of page `index` of region `region`, as `build` backed it.
    pub fn region_frame(&self, region: usize, index: u64) -> Result<Hpa, Error> {
        let size = self
            .layout
            .region(region)
            .ok_or(Error::BadRegionFrame)?
            .placement
            .page_size;
        Ok(Hpa(region_hpa(region, index, size)))
    }

    /// The header `elisa_core::verify` checks against (service entry: region 0, or G), of a
    /// vCPU that has run: its EPTP list holds [`TEST_LIST0`] at index 0.
    pub fn header(&self) -> ViewsHeader {
        let service = self
            .layout
            .region(0)
            .map_or(self.layout.entry_gva(), |r| r.placement.gva);
        let mut h = ViewsHeader::new(
            &self.layout,
            &self.cfg,
            &self.entry,
            &self.gate,
            &self.sub,
            service,
            0,
        );
        h.list0 = TEST_LIST0;
        h
    }

    /// The mappings the views should have.
    pub fn mappings(&self) -> Vec<Mapping> {
        let regions = |r: usize, i: u64| self.region_frame(r, i);
        let mut out = Vec::new();
        Expected {
            layout: &self.layout,
            cfg: &self.cfg,
            entry: &self.entry,
            regions: &regions,
        }
        .for_each(&mut |m| {
            out.push(m);
            Ok(())
        })
        .expect("expected mappings");
        out
    }

    /// Runs one `elisa_core::verify` check over the views, in `mem`.
    pub fn check_in(&self, mem: &MemFrames, check: Check, seed: u64) -> Result<(), Violation> {
        let header = self.header();
        let mappings = self.mappings();
        let views = Views {
            header: &header,
            mappings: &mappings.as_slice(),
        };
        let mut scratch = vec![Span::default(); scratch_len(&views, mem.allocated.len())];
        elisa_core::verify::check(check, &views, mem, &mut scratch, seed)
    }

    /// Runs one check over the views as built.
    pub fn check(&self, check: Check, seed: u64) -> Result<(), Violation> {
        self.check_in(&self.mem, check, seed)
    }

    /// The roots of `view` for the enumerators.
    pub fn roots(&self, view: &View) -> ViewRoots {
        ViewRoots::of(view)
    }

    /// Fills the code and data pages and the EPTP list as the module does at a grant (the
    /// service entry is the first byte of the first code region), and returns the entry.
    pub fn finish(&mut self) -> Result<Gva, Error> {
        let service = self
            .layout
            .regions()
            .find(|r| r.kind == RegionKind::Code)
            .map(|r| r.placement.gva)
            .ok_or(Error::BadRequest)?;
        let params = self.layout.gate_params(self.sub.eptp(), service)?;
        let mut page = [0u8; gate::PAGE_BYTES];
        self.entry
            .write_pages(&mut self.mem, self.layout.privilege(), &params, &mut page)?;
        let default = Eptp::from_raw(TEST_LIST0)?;
        EptpList::new(default, self.gate.eptp()).write_to(&mut self.mem, self.entry.eptp_list)?;
        Ok(service)
    }

    /// The views as the module's debugfs file holds them: header with `service` as the
    /// entry, the expected mappings, every frame of the store.
    pub fn dump(&self, service: Gva) -> Vec<u8> {
        struct Out<'a> {
            mem: &'a MemFrames,
            bytes: Vec<u8>,
        }
        impl DumpOut for Out<'_> {
            fn bytes(&mut self, b: &[u8]) -> Result<(), Error> {
                self.bytes.extend_from_slice(b);
                Ok(())
            }
            fn frame(&mut self, frame: Hpa) -> Result<(), Error> {
                let Out { mem, bytes } = self;
                dump::frame_bytes(*mem, frame, &mut |b| {
                    bytes.extend_from_slice(b);
                    Ok(())
                })
            }
        }
        let mut header = self.header();
        header.service_entry = service;
        let regions = |r: usize, i: u64| self.region_frame(r, i);
        let expected = Expected {
            layout: &self.layout,
            cfg: &self.cfg,
            entry: &self.entry,
            regions: &regions,
        };
        let mut frames: Vec<Hpa> = self.mem.allocated.iter().map(|&f| Hpa(f)).collect();
        frames.sort();
        let mut out = Out {
            mem: &self.mem,
            bytes: Vec::new(),
        };
        let len = dump::write(&header, &expected, &frames, &mut out).expect("dump");
        assert_eq!(len, out.bytes.len());
        out.bytes
    }
}

/// Builds the scenario for a property: a refusal the scenario explains is rejected (two
/// fixed GVAs collide; no room for the trusted window, where the GPA space above guest
/// memory is tight for the regions), any other error fails the case.
pub fn build_or_reject(s: &Scenario) -> Result<Built, TestCaseError> {
    match build(s) {
        Ok(b) => Ok(b),
        Err(Error::Collision(..)) => Err(TestCaseError::reject("fixed GVAs collide")),
        Err(Error::NoSpace) if s.gpa_space_tight() => {
            Err(TestCaseError::reject("no room for the trusted window"))
        }
        Err(e) => Err(TestCaseError::fail(format!("build failed: {e:?}"))),
    }
}

impl Scenario {
    /// Whether the GPAs above guest memory (below 2^48, the views' reach, and the physical
    /// address width) may be too few for the trusted window: less than four times the
    /// regions' bytes, each rounded up to its page size twice over (alignment), plus 1 GiB
    /// for the views' own pages. A plan refused with [`Error::NoSpace`] elsewhere is a
    /// planner bug.
    pub fn gpa_space_tight(&self) -> bool {
        let top = 1u64 << u32::from(self.phys_bits).min(48);
        let room = top.saturating_sub(self.guest_gpa_end);
        let need = self
            .regions
            .iter()
            .map(|r| r.size.saturating_add(2 * r.page_size.bytes()))
            .fold(1u64 << 30, u64::saturating_add);
        room / 4 < need
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
