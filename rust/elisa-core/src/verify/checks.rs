// SPDX-License-Identifier: GPL-2.0
//! The isolation invariants of a vCPU's gate and sub views, one [`Check`] each.
//!
//! Every check reads the views only through the walkers of [`walk`](super::walk) and the
//! frame store; what it compares against comes from the [`Views`] (header and mappings),
//! never from the builders. Sampled checks (random GPAs, GVAs and CR3 values) draw from a
//! small generator seeded by the caller, so a run is reproducible.

use super::super::addr::{Gva, Hpa, PAGE_MASK, PAGE_SIZE};
use super::super::ept::EPT_HOLE;
use super::super::eptp::{Eptp, EPTP_INDEX_SUB};
use super::super::frame::{Frames, ENTRIES_PER_TABLE};
use super::super::gate::{self, GateParams, PAGE_BYTES};
use super::super::paging::{CallerPrivilege, GuestPerm};
use super::super::view::ViewKind;
use super::walk::{
    canonical, ept_executable, ept_walk, ept_writable, for_each_ept_entry, for_each_guest_leaf,
    for_each_reachable_leaf, guest_walk, EptEntry, EptFault, GuestLeaf, ADDR_MASK, GUEST_GLOBAL,
    GUEST_PWT_PCD_PK, GUEST_P_U, GUEST_W_NX, LEAF_PAT_VE, LEAF_USER_EXEC,
};
use super::{Mapping, MappingKind, Span, ViewRoots, Views, Violation};

mod apt;
mod eptp;
mod exact;
mod pages;

const VIEWS: [ViewKind; 2] = [ViewKind::Gate, ViewKind::Sub];
/// The EPT accessed and dirty flags (bits 8 and 9), which the CPU sets with EPT A/D on.
const EPT_ACCESSED_DIRTY: u64 = 3 << 8;
/// The lowest trusted GPA (the planner's; RFLAGS images on the gate stack name GPAs below).
const MIN_TRUSTED_GPA: u64 = 1 << 22;
/// GPAs a 4-level EPT translates.
const GPA_LIMIT: u64 = 1 << 48;
/// Random GPAs per view in [`Check::Apt`].
const APT_SAMPLES: usize = 64;
/// Random CR3 values per view in [`Check::AnyCr3`].
const CR3_SAMPLES: usize = 16;
/// Mappings [`Check::AnyCr3`] takes its probe GVAs from (evenly spread when there are more).
const PROBE_MAPPINGS: usize = 48;
/// Probe GVAs of [`Check::AnyCr3`] at most: the fixed ones, 5 per mapping, 8 random.
const MAX_PROBES: usize = 8 + 5 * PROBE_MAPPINGS + 8;

/// One invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// Both EPTPs are write-back, 4-level, A/D per the policy, reserved bits clear, bit 0
    /// clear (R12), accepted by [`Eptp::check_elisa`], with distinct roots the store holds.
    Eptps,
    /// The EPTP-list page holds the gate EPTP at the gate index (or 0, gate closed), no EPTP
    /// of these views at 0, at index 1 0 or a sub EPTP (the hop), at the other gate indexes
    /// 0 or other services' EPTPs, and nothing else.
    EptpList,
    /// The gate code, gate data and sub code pages hold what [`gate`](super::super::gate)
    /// writes for these views.
    Pages,
    /// The gate view has exactly one executable page, the gate code page, execute-only in
    /// the EPT and the only executable leaf of its guest table.
    GateExecute,
    /// Every GPA outside the trusted window reaches the APT (readable, writable only with
    /// A/D, never executable, write-back); inside the window every GPA is an explicit leaf
    /// or a hole, which cover it exactly; the APT chain holds nothing but its fill.
    Apt,
    /// Any CR3 (outside the trusted window) gives the same translation of every probed GVA
    /// as the trusted root, and that root maps the code and list pages as planned.
    AnyCr3,
    /// No EPT leaf and no guest leaf is writable and executable, no frame is mapped
    /// writable in one place and executable in another (across both views), the APT frame
    /// is never executable, and no trusted translation is global.
    WriteXorExecute,
    /// The gate view maps exactly its pages (EPT and guest table), with their frames and
    /// permissions.
    GateExact,
    /// The sub view maps exactly the registered pages (EPT and guest table), with their
    /// frames and permissions.
    SubExact,
    /// R12: a CR3 on any trusted GPA (explicit leaf or hole, of either view) reaches no
    /// executable translation in the gate view, and no trusted GPA reaches the APT.
    CollidingCr3,
    /// No frame is mapped for two things across both views: the gate code, gate data, sub
    /// code and EPTP-list pages and the frames each view holds (stacks, tables) are
    /// distinct, and no region frame (of any page size) covers one of them. Region frames
    /// may share with each other.
    FramesDisjoint,
}

impl Check {
    /// Every check, in the order tools run them.
    pub const ALL: [Check; 11] = [
        Check::Eptps,
        Check::EptpList,
        Check::Pages,
        Check::GateExecute,
        Check::Apt,
        Check::AnyCr3,
        Check::WriteXorExecute,
        Check::GateExact,
        Check::SubExact,
        Check::CollidingCr3,
        Check::FramesDisjoint,
    ];

    /// What the check says, for output.
    pub const fn name(self) -> &'static str {
        match self {
            Check::Eptps => "EPTP values well formed",
            Check::EptpList => "EPTP list: gate at its index, sub only in the hop, nothing else",
            Check::Pages => "gate code, gate data and sub code pages as emitted",
            Check::GateExecute => "gate view: one executable page, execute-only",
            Check::Apt => "every unmapped GPA reaches the APT",
            Check::AnyCr3 => "any CR3 gives the trusted translation",
            Check::WriteXorExecute => "W^X in gate and sub views",
            Check::GateExact => "gate view maps exactly its pages",
            Check::SubExact => "sub view maps exactly the registered pages",
            Check::CollidingCr3 => "R12: colliding CR3 gives no executable gate translation",
            Check::FramesDisjoint => "no frame mapped for two things, across both views",
        }
    }
}

/// Scratch [`Span`]s [`check`] needs for `views` held in `frames` frames.
pub fn scratch_len(views: &Views<'_>, frames: usize) -> usize {
    let m = views.mappings;
    let mut pages = 0u64;
    for i in 0..m.count() {
        if let Some(map) = m.get(i) {
            let views = if map.kind == MappingKind::EptpList {
                2
            } else {
                1
            };
            pages = pages.saturating_add(map.pages.saturating_mul(views));
        }
    }
    let pages = usize::try_from(pages).unwrap_or(usize::MAX);
    m.count()
        .saturating_mul(2)
        .saturating_add(pages.saturating_mul(2))
        .saturating_add(frames.saturating_mul(ENTRIES_PER_TABLE))
        .saturating_add(4096)
}

/// Runs `check` on `views`, whose frames `frames` holds, with `scratch` (at least
/// [`scratch_len`] long) and the sampling seed `seed`.
///
/// # Errors
///
/// The first [`Violation`] found.
pub fn check<F: Frames + ?Sized>(
    check: Check,
    views: &Views<'_>,
    frames: &F,
    scratch: &mut [Span],
    seed: u64,
) -> Result<(), Violation> {
    let c = Ctx {
        v: views,
        frames,
        levels: views.header.paging.levels(),
        ad: views.header.accessed_dirty,
        mbec: views.header.mbec,
    };
    let mut rng = Rng::new(seed);
    match check {
        Check::Eptps => c.eptps(),
        Check::EptpList => c.eptp_list(),
        Check::Pages => c.pages(),
        Check::GateExecute => c.gate_execute(),
        Check::Apt => c.apt(scratch, &mut rng),
        Check::AnyCr3 => c.any_cr3(&mut rng),
        Check::WriteXorExecute => c.write_xor_execute(scratch),
        Check::GateExact => c.exact(ViewKind::Gate, scratch),
        Check::SubExact => c.exact(ViewKind::Sub, scratch),
        Check::CollidingCr3 => c.colliding_cr3(scratch),
        Check::FramesDisjoint => c.frames_disjoint(scratch),
    }
}

/// xorshift64*: reproducible samples without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x.wrapping_shr(12);
        x ^= x.wrapping_shl(25);
        x ^= x.wrapping_shr(27);
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `limit` (0 when `limit` is 0).
    fn below(&mut self, limit: u64) -> u64 {
        self.next().checked_rem(limit).unwrap_or(0)
    }
}

/// A fixed-capacity list of `u64`s.
struct List<const N: usize> {
    items: [u64; N],
    len: usize,
}

impl<const N: usize> List<N> {
    fn new() -> Self {
        Self {
            items: [0; N],
            len: 0,
        }
    }

    fn push(&mut self, v: u64) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = v;
            self.len = self.len.saturating_add(1);
        }
    }

    fn as_slice(&self) -> &[u64] {
        self.items.get(..self.len).unwrap_or(&[])
    }
}

/// Spans pushed into the caller's scratch.
struct Stack<'s> {
    spans: &'s mut [Span],
    len: usize,
}

impl<'s> Stack<'s> {
    fn new(spans: &'s mut [Span]) -> Self {
        Self { spans, len: 0 }
    }

    fn push(&mut self, span: Span) -> Result<(), Violation> {
        let slot = self.spans.get_mut(self.len).ok_or(Violation::new(
            "more leaves than the mappings describe (scratch full)",
            span.start,
            span.len,
        ))?;
        *slot = span;
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    fn sorted(&mut self) -> &[Span] {
        let used = self.spans.get_mut(..self.len).unwrap_or(&mut []);
        used.sort_unstable();
        used
    }
}

/// Whether `[a, a + alen)` contains `x`.
fn within(x: u64, a: u64, alen: u64) -> bool {
    x >= a && x.wrapping_sub(a) < alen
}

/// The first span of `sorted` (by start) that overlaps an earlier one, where spans tagged
/// `shared` may overlap each other but no other span (sorted by start, a span overlaps an
/// earlier one iff it starts below that one's end).
fn first_overlap(sorted: &[Span], shared: u64) -> Option<&Span> {
    let (mut any_end, mut unshared_end) = (0u64, 0u64);
    for s in sorted {
        let limit = if s.tag == shared {
            unshared_end
        } else {
            any_end
        };
        if s.start < limit {
            return Some(s);
        }
        let end = s.start.saturating_add(s.len);
        any_end = any_end.max(end);
        if s.tag != shared {
            unshared_end = unshared_end.max(end);
        }
    }
    None
}

/// The span of `sorted` (by start, non-overlapping) that contains `x`.
fn find(sorted: &[Span], x: u64) -> Option<&Span> {
    let after = sorted.partition_point(|s| s.start <= x);
    let s = sorted.get(after.checked_sub(1)?)?;
    within(x, s.start, s.len).then_some(s)
}

fn guest_bits(perm: GuestPerm) -> u64 {
    perm.leaf_bits(CallerPrivilege::Supervisor) & GUEST_W_NX
}

struct Ctx<'a, F: Frames + ?Sized> {
    v: &'a Views<'a>,
    frames: &'a F,
    levels: u8,
    ad: bool,
    mbec: bool,
}

impl<F: Frames + ?Sized> Ctx<'_, F> {
    fn read(&self, frame: u64, index: usize) -> Option<u64> {
        self.frames.read_entry(Hpa(frame), index).ok()
    }

    fn roots(&self, view: ViewKind) -> &ViewRoots {
        self.v.header.roots(view)
    }

    fn mapping(&self, kind: MappingKind) -> Result<Mapping, Violation> {
        let m = self.v.mappings;
        (0..m.count())
            .filter_map(|i| m.get(i))
            .find(|map| map.kind == kind)
            .ok_or(Violation::new("a fixed item has no mapping", 0, 0))
    }

    fn code(&self, view: ViewKind) -> Result<Mapping, Violation> {
        self.mapping(match view {
            ViewKind::Gate => MappingKind::GateCode,
            ViewKind::Sub => MappingKind::SubCode,
        })
        .map_err(|e| e.in_view(view))
    }

    /// Every leaf of the guest table a view's trusted root starts (`for_each_guest_leaf`).
    fn each_guest_leaf(
        &self,
        roots: &ViewRoots,
        visit: &mut dyn FnMut(GuestLeaf) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        for_each_guest_leaf(
            self.frames,
            roots.eptp,
            self.levels,
            roots.apt_frame.0,
            visit,
        )
    }

    fn each_entry(
        &self,
        view: ViewKind,
        visit: &mut dyn FnMut(EptEntry) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        for_each_ept_entry(self.frames, self.roots(view), visit).map_err(|e| e.in_view(view))
    }
}
