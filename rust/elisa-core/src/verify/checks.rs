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
    for_each_reachable_leaf, guest_walk, EptEntry, EptFault, ADDR_MASK, GUEST_GLOBAL, GUEST_P_U,
    GUEST_W_NX, LEAF_PAT_VE, LEAF_USER_EXEC,
};
use super::{Mapping, MappingKind, Span, ViewRoots, Views, Violation};

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
}

impl Check {
    /// Every check, in the order tools run them.
    pub const ALL: [Check; 10] = [
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

    fn each_entry(
        &self,
        view: ViewKind,
        visit: &mut dyn FnMut(EptEntry) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        for_each_ept_entry(self.frames, self.roots(view), visit).map_err(|e| e.in_view(view))
    }

    fn eptps(&self) -> Result<(), Violation> {
        for view in VIEWS {
            let raw = self.roots(view).eptp;
            let bad = |what| Err(Violation::new(what, raw, raw).in_view(view));
            if raw & 7 != 6 {
                return bad("EPTP memory type is not write-back");
            }
            if (raw >> 3) & 7 != 3 {
                return bad("EPTP walk length is not 4");
            }
            if (raw & (1 << 6) != 0) != self.ad {
                return bad("EPTP A/D bit is not the policy's");
            }
            if raw & (0x1f << 7) != 0 || raw >> 52 != 0 {
                return bad("EPTP reserved bits set");
            }
            if raw & 1 != 0 {
                return bad("EPTP bit 0 set: it reads as a present guest entry (R12)");
            }
            if Eptp::from_raw(raw)
                .and_then(|e| e.check_elisa(self.ad))
                .is_err()
            {
                return bad("EPTP refused by elisa's EPTP policy");
            }
            if self.read(raw & ADDR_MASK, 0).is_none() {
                return bad("EPT root not in the frames");
            }
        }
        let (g, s) = (self.roots(ViewKind::Gate), self.roots(ViewKind::Sub));
        if g.eptp & ADDR_MASK == s.eptp & ADDR_MASK {
            return Err(Violation::new(
                "gate and sub views share an EPT root",
                g.eptp,
                s.eptp,
            ));
        }
        Ok(())
    }

    fn eptp_list(&self) -> Result<(), Violation> {
        let h = self.v.header;
        let list = h.eptp_list.0;
        let (gate, sub) = (h.gate.eptp, h.sub.eptp);
        let ours = |e: u64| e == gate || e == sub;
        // Another service's view: a valid EPTP that is none of ours.
        let other = |e: u64| !ours(e) && Eptp::from_raw(e).is_ok();
        let lowest = usize::from(h.lowest_gate_index.min(h.gate_index));
        for index in 0..ENTRIES_PER_TABLE {
            let e = self.read(list, index).ok_or(Violation::new(
                "EPTP list not in the frames",
                list,
                0,
            ))?;
            let ok = match index {
                // KVM's root (0 before the vCPU first ran).
                0 => !ours(e),
                // The sub view of the gate being crossed, during the hop only.
                EPTP_INDEX_SUB => e == 0 || e == sub || other(e),
                i if i == usize::from(h.gate_index) => e == gate || e == 0,
                i if i >= lowest => e == 0 || other(e),
                _ => e == 0,
            };
            if !ok {
                return Err(Violation::new(
                    "EPTP list entry out of place",
                    index as u64,
                    e,
                ));
            }
        }
        Ok(())
    }

    fn same_page(&self, frame: Hpa, page: &[u8; PAGE_BYTES]) -> Result<(), Violation> {
        for (index, chunk) in page.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let want = u64::from_le_bytes(word);
            let got = self.read(frame.0, index).ok_or(Violation::new(
                "code or data page not in the frames",
                frame.0,
                0,
            ))?;
            if got != want {
                return Err(Violation::new(
                    "page differs from what the gate emitter writes",
                    frame.0.wrapping_add((index as u64).wrapping_mul(8)),
                    got,
                ));
            }
        }
        Ok(())
    }

    fn pages(&self) -> Result<(), Violation> {
        let h = self.v.header;
        let stack = self.mapping(MappingKind::SubStack)?;
        let top = stack.gva.map_or(0, |g| g.0.wrapping_add(stack.bytes()));
        let sub_eptp = Eptp::from_raw(h.sub.eptp)
            .map_err(|_| Violation::new("sub EPTP malformed", h.sub.eptp, 0))?;
        let params = GateParams {
            paging: h.paging,
            entry: h.entry_gva,
            sub_eptp,
            sub_stack_top: Gva(top),
            service_entry: h.service_entry,
        };
        let emitted = |e: Result<(), super::super::Error>| {
            e.map_err(|_| Violation::new("the gate emitter refuses these parameters", top, 0))
        };
        let mut page = [0u8; PAGE_BYTES];
        let hpa = |m: Mapping| {
            m.hpa.ok_or(Violation::new(
                "code or data page without a frame",
                m.gpa.0,
                0,
            ))
        };
        emitted(gate::write_gate_code(&mut page))?;
        self.same_page(hpa(self.mapping(MappingKind::GateCode)?)?, &page)
            .map_err(|e| e.in_view(ViewKind::Gate))?;
        emitted(gate::write_gate_data(&mut page, &params))?;
        self.same_page(hpa(self.mapping(MappingKind::GateData)?)?, &page)
            .map_err(|e| e.in_view(ViewKind::Gate))?;
        emitted(gate::write_sub_code(&mut page, &params))?;
        self.same_page(hpa(self.mapping(MappingKind::SubCode)?)?, &page)
            .map_err(|e| e.in_view(ViewKind::Sub))
    }

    fn gate_execute(&self) -> Result<(), Violation> {
        let view = ViewKind::Gate;
        let roots = self.roots(view);
        let code = self.code(view)?;
        let mut count = 0u64;
        let mut first = None;
        self.each_entry(view, &mut |e| {
            if let EptEntry::Leaf { gpa, size, entry } = e {
                if ept_executable(entry) {
                    count = count.saturating_add(1);
                    first.get_or_insert((gpa, size, entry));
                }
            }
            Ok(())
        })?;
        let bad = |what, at, value| Err(Violation::new(what, at, value).in_view(view));
        let Some((gpa, size, entry)) = first.filter(|_| count == 1) else {
            return bad("not exactly one executable EPT leaf", 0, count);
        };
        if gpa != code.gpa.0 || size != PAGE_SIZE {
            return bad("the executable leaf is not the gate code page", gpa, entry);
        }
        if entry & 7 != 4 {
            return bad("the gate code page is not execute-only", gpa, entry);
        }
        if (entry & LEAF_USER_EXEC != 0) != self.mbec {
            return bad("user-execute bit of the gate code page", gpa, entry);
        }
        if Some(Hpa(entry & ADDR_MASK)) != code.hpa {
            return bad("the gate code leaf points to another frame", gpa, entry);
        }
        // The APT is never executable (GPA 0 is guest memory, below the window).
        match ept_walk(self.frames, roots.eptp, 0) {
            Ok(leaf) if !leaf.perms.exec && !leaf.perms.user_exec => {}
            _ => return bad("the APT is executable or GPA 0 does not reach it", 0, 0),
        }
        // In the guest table, too, exactly one leaf is executable: the code page.
        let mut count = 0u64;
        let mut exec_gva = 0;
        for_each_guest_leaf(
            self.frames,
            roots.eptp,
            self.levels,
            roots.apt_frame.0,
            &mut |l| {
                if l.entry & (1 << 63) == 0 {
                    count = count.saturating_add(1);
                    exec_gva = canonical(l.gva, self.levels);
                }
                Ok(())
            },
        )
        .map_err(|e| e.in_view(view))?;
        let code_gva = code.gva.map_or(0, |g| g.0);
        if count != 1 || exec_gva != code_gva {
            return bad(
                "not exactly one executable guest leaf at G + 0x1000",
                exec_gva,
                count,
            );
        }
        // Through the walker: fetchable, but not readable as data.
        match guest_walk(self.frames, roots.eptp, self.levels, 0, code_gva, self.ad) {
            Ok(t) if t.executable(self.mbec) && !t.ept.read && !t.ept.write => Ok(()),
            _ => bad(
                "the gate code page is not fetch-only through the trusted table",
                code_gva,
                0,
            ),
        }
    }

    /// The chain table `table` of `level` (1..=3): 512 copies of one entry leading to `next`.
    fn chain_table(
        &self,
        view: ViewKind,
        table: Hpa,
        level: u8,
        next: Hpa,
    ) -> Result<(), Violation> {
        let bad = |what, value| Err(Violation::new(what, table.0, value).in_view(view));
        let Some(first) = self.read(table.0, 0) else {
            return bad("APT chain table not in the frames", 0);
        };
        // With EPT A/D the CPU sets the accessed (and, on leaves, dirty) flags of the
        // entries it uses: those may differ.
        for index in 1..ENTRIES_PER_TABLE {
            let same = self
                .read(table.0, index)
                .is_some_and(|e| (e ^ first) & !EPT_ACCESSED_DIRTY == 0);
            if !same {
                return bad(
                    "APT chain table holds more than its fill entry",
                    index as u64,
                );
            }
        }
        if first & ADDR_MASK != next.0 || first & 1 == 0 || ept_executable(first) && level == 1 {
            return bad("APT chain entry does not lead to the APT", first);
        }
        if level == 1 {
            let rw = if self.ad { 3 } else { 1 };
            if first & 7 != rw || (first >> 3) & 7 != 6 {
                return bad("APT leaf permissions or memory type", first);
            }
        } else if first & (1 << 7) != 0 {
            return bad("APT chain entry is a large leaf", first);
        }
        Ok(())
    }

    fn apt(&self, scratch: &mut [Span], rng: &mut Rng) -> Result<(), Violation> {
        let h = self.v.header;
        let (start, len) = (h.window.0 .0, h.window.1);
        let end = start
            .checked_add(len)
            .filter(|&e| e <= GPA_LIMIT && start >= MIN_TRUSTED_GPA && len != 0)
            .ok_or(Violation::new(
                "trusted window outside [4 MiB, 2^48)",
                start,
                len,
            ))?;
        for view in VIEWS {
            let roots = *self.roots(view);
            let [c1, c2, c3] = roots.apt_chain;
            self.chain_table(view, c1, 1, roots.apt_frame)?;
            self.chain_table(view, c2, 2, c1)?;
            self.chain_table(view, c3, 3, c2)?;
            let bad = |what, at, value| Err(Violation::new(what, at, value).in_view(view));
            let mut spans = Stack::new(&mut *scratch);
            self.each_entry(view, &mut |e| {
                let (gpa, size) = e.range();
                let inside = gpa >= start && gpa.saturating_add(size) <= end;
                let overlaps = gpa < end && gpa.saturating_add(size) > start;
                match e {
                    EptEntry::Empty { .. } => Err(Violation::new("zero EPT entry", gpa, size)),
                    EptEntry::Hole { entry, .. } if !inside || entry != EPT_HOLE => Err(
                        Violation::new("hole outside the trusted window", gpa, entry),
                    ),
                    EptEntry::Leaf { entry, .. } if !inside => Err(Violation::new(
                        "leaf outside the trusted window",
                        gpa,
                        entry,
                    )),
                    EptEntry::Apt { .. } if overlaps => {
                        Err(Violation::new("trusted window reaches the APT", gpa, size))
                    }
                    EptEntry::Apt { .. } => Ok(()),
                    EptEntry::Hole { .. } | EptEntry::Leaf { .. } => spans.push(Span {
                        start: gpa,
                        len: size,
                        tag: 0,
                    }),
                }
                .map_err(|e| e.in_view(view))
            })?;
            // The trusted window is covered exactly by this view's leaves and holes.
            let mut at = start;
            for s in spans.sorted() {
                if s.start != at {
                    return bad("gap or overlap in the trusted window", at, s.start);
                }
                at = s.start.saturating_add(s.len);
            }
            if at != end {
                return bad("the trusted window is not covered", at, end);
            }
            for _ in 0..APT_SAMPLES {
                let gpa = rng.below(GPA_LIMIT);
                match ept_walk(self.frames, roots.eptp, gpa) {
                    Ok(leaf) if leaf.hpa & !PAGE_MASK == roots.apt_frame.0 => {
                        let ok = !h.in_window(gpa)
                            && leaf.size == PAGE_SIZE
                            && leaf.perms.read
                            && leaf.perms.write == self.ad
                            && !leaf.perms.exec
                            && !leaf.perms.user_exec
                            && leaf.mem_type == 6;
                        if !ok {
                            return bad("APT translation with the wrong properties", gpa, leaf.hpa);
                        }
                    }
                    Ok(leaf) if !h.in_window(gpa) => {
                        return bad("GPA outside the window misses the APT", gpa, leaf.hpa);
                    }
                    Ok(_) => {}
                    Err(EptFault::NotPresent { entry, .. })
                        if h.in_window(gpa) && entry == EPT_HOLE => {}
                    Err(_) => return bad("unexpected EPT fault", gpa, 0),
                }
            }
            // Guest RAM (every legitimate CR3) always reaches the APT.
            let ram = rng.below(start.min(1 << 32));
            match ept_walk(self.frames, roots.eptp, ram) {
                Ok(leaf) if leaf.hpa & !PAGE_MASK == roots.apt_frame.0 => {}
                _ => return bad("guest memory does not reach the APT", ram, 0),
            }
        }
        Ok(())
    }

    fn any_cr3(&self, rng: &mut Rng) -> Result<(), Violation> {
        let h = self.v.header;
        let levels = self.levels;
        let g = h.entry_gva.0;
        let mut probes = List::<MAX_PROBES>::new();
        for off in [0u64, 0x1000, 0x2000] {
            probes.push(g.wrapping_add(off));
        }
        for off in [0x1000u64, 0x2000, 0x3000] {
            probes.push(g.wrapping_sub(off));
        }
        let m = self.v.mappings;
        let with_gva = (0..m.count())
            .filter(|&i| m.get(i).is_some_and(|x| x.gva.is_some()))
            .count();
        let stride = with_gva.div_ceil(PROBE_MAPPINGS).max(1);
        for map in (0..m.count())
            .filter_map(|i| m.get(i))
            .filter(|x| x.gva.is_some())
            .step_by(stride)
        {
            let gva = map.gva.map_or(0, |x| x.0);
            let bytes = map.bytes();
            probes.push(gva);
            probes.push(gva.wrapping_sub(PAGE_SIZE));
            probes.push(gva.wrapping_add(bytes.saturating_sub(1)));
            probes.push(gva.wrapping_add(rng.below(bytes)));
            probes.push(gva.wrapping_add(bytes));
        }
        for _ in 0..8 {
            probes.push(canonical(rng.next(), levels));
        }
        let list = self.mapping(MappingKind::EptpList)?;
        for view in VIEWS {
            let roots = self.roots(view);
            let e = roots.eptp;
            let bad = |what, at, value| Err(Violation::new(what, at, value).in_view(view));
            // The reference: the walk from the root frame, i.e. CR3 = any GPA of guest RAM.
            // GPA 0 is always guest RAM; it reaches the trusted root.
            match ept_walk(self.frames, e, 0) {
                Ok(leaf) if leaf.hpa == roots.apt_frame.0 => {}
                _ => return bad("GPA 0 does not reach the trusted root", 0, 0),
            }
            let code = self.code(view)?;
            let code_gva = code.gva.map_or(0, |x| x.0);
            let t = guest_walk(self.frames, e, levels, 0, code_gva, self.ad);
            if t.map(|t| t.gpa) != Ok(code.gpa.0) {
                return bad(
                    "G + 0x1000 does not translate to the code page",
                    code_gva,
                    0,
                );
            }
            let list_gva = list.gva.map_or(0, |x| x.0);
            let t = guest_walk(self.frames, e, levels, 0, list_gva, self.ad);
            if t.map(|t| (t.gpa, t.writable)) != Ok((list.gpa.0, true)) {
                return bad(
                    "G does not translate to the EPTP list, writable",
                    list_gva,
                    0,
                );
            }
            // Random CR3 values, with random low bits (PCID, PWT, PCD), outside the window.
            let mut cr3s = [0u64; CR3_SAMPLES];
            for cr3 in cr3s.iter_mut() {
                let mut c = rng.below(GPA_LIMIT);
                if h.in_window(c) {
                    c = rng.below(h.window.0 .0);
                }
                *cr3 = c | (rng.next() & PAGE_MASK);
            }
            for &gva in probes.as_slice() {
                let reference = guest_walk(self.frames, e, levels, 0, gva, self.ad);
                for &cr3 in &cr3s {
                    if guest_walk(self.frames, e, levels, cr3, gva, self.ad) != reference {
                        return bad("a CR3 gives another translation of a GVA", cr3, gva);
                    }
                }
            }
        }
        Ok(())
    }

    fn write_xor_execute(&self, scratch: &mut [Span]) -> Result<(), Violation> {
        const W: u64 = 1;
        const X: u64 = 2;
        let mut spans = Stack::new(scratch);
        for view in VIEWS {
            self.each_entry(view, &mut |e| {
                let EptEntry::Leaf { gpa, size, entry } = e else {
                    return Ok(());
                };
                let (w, x) = (ept_writable(entry), ept_executable(entry));
                if w && x {
                    return Err(Violation::new(
                        "EPT leaf writable and executable",
                        gpa,
                        entry,
                    ));
                }
                spans.push(Span {
                    start: entry & ADDR_MASK & !size.wrapping_sub(1),
                    len: size,
                    tag: if w { W } else { 0 } | if x { X } else { 0 },
                })
            })?;
            let roots = self.roots(view);
            for_each_guest_leaf(
                self.frames,
                roots.eptp,
                self.levels,
                roots.apt_frame.0,
                &mut |l| {
                    if l.entry & 2 != 0 && l.entry & (1 << 63) == 0 {
                        return Err(Violation::new(
                            "guest leaf writable and executable",
                            l.gva,
                            l.entry,
                        ));
                    }
                    if l.entry & GUEST_GLOBAL != 0 {
                        return Err(Violation::new("global trusted translation", l.gva, l.entry));
                    }
                    Ok(())
                },
            )
            .map_err(|e| e.in_view(view))?;
        }
        let apts = [
            self.roots(ViewKind::Gate).apt_frame.0,
            self.roots(ViewKind::Sub).apt_frame.0,
        ];
        // Sorted by start: a span overlaps an earlier one iff it starts below its end.
        let (mut w_end, mut x_end) = (0u64, 0u64);
        for s in spans.sorted() {
            let end = s.start.saturating_add(s.len);
            if s.tag & X != 0 {
                if s.start < w_end {
                    return Err(Violation::new(
                        "frame mapped writable and executable",
                        s.start,
                        s.len,
                    ));
                }
                if apts.iter().any(|&a| within(a, s.start, s.len)) {
                    return Err(Violation::new(
                        "the APT frame is executable",
                        s.start,
                        s.len,
                    ));
                }
                x_end = x_end.max(end);
            }
            if s.tag & W != 0 {
                if s.start < x_end {
                    return Err(Violation::new(
                        "frame mapped writable and executable",
                        s.start,
                        s.len,
                    ));
                }
                w_end = w_end.max(end);
            }
        }
        Ok(())
    }

    fn exact(&self, view: ViewKind, scratch: &mut [Span]) -> Result<(), Violation> {
        let m = self.v.mappings;
        let roots = *self.roots(view);
        let bad = |what, at, value| Err(Violation::new(what, at, value).in_view(view));
        // EPT side: the view's mappings by GPA, then the frames its stacks and tables use.
        let (by_gpa, rest) = scratch.split_at_mut(m.count().min(scratch.len()));
        let mut index = Stack::new(by_gpa);
        let (mut want_ept, mut want_guest) = (0u64, 0u64);
        for i in 0..m.count() {
            let Some(map) = m.get(i).filter(|x| x.kind.in_view(view)) else {
                continue;
            };
            want_ept = want_ept.saturating_add(map.pages);
            if map.gva.is_some() {
                want_guest = want_guest.saturating_add(map.pages);
            }
            index.push(Span {
                start: map.gpa.0,
                len: map.bytes(),
                tag: i as u64,
            })?;
        }
        let by_gpa = index.sorted();
        let mut owned = Stack::new(rest);
        let mut leaves = 0u64;
        self.each_entry(view, &mut |e| {
            let EptEntry::Leaf { gpa, size, entry } = e else {
                return Ok(());
            };
            leaves = leaves.saturating_add(1);
            let bad = |what| Err(Violation::new(what, gpa, entry));
            let Some(map) = find(by_gpa, gpa).and_then(|s| m.get(s.tag as usize)) else {
                return bad("unexpected EPT leaf");
            };
            if size != map.page_size.bytes() {
                return bad("EPT leaf of the wrong size");
            }
            if entry & 7 != map.ept.bits() {
                return bad("EPT leaf with the wrong permissions");
            }
            if (entry >> 3) & 7 != 6 || entry & LEAF_PAT_VE != LEAF_PAT_VE {
                return bad("EPT leaf not write-back, ignore-PAT, suppress-#VE");
            }
            if (entry & LEAF_USER_EXEC != 0) != (self.mbec && map.ept.executable()) {
                return bad("user-execute bit not as MBEC wants");
            }
            let hpa = entry & ADDR_MASK & !size.wrapping_sub(1);
            match map.hpa {
                Some(first) => {
                    if Some(hpa) != first.0.checked_add(gpa.wrapping_sub(map.gpa.0)) {
                        return bad("EPT leaf points outside the expected frames");
                    }
                    Ok(())
                }
                None => {
                    if self.read(hpa, 0).is_none() {
                        return bad("EPT leaf points to a frame the views do not hold");
                    }
                    owned.push(Span {
                        start: hpa,
                        len: size,
                        tag: 1,
                    })
                }
            }
        })
        .map_err(|e| e.in_view(view))?;
        if leaves != want_ept {
            return bad("the view lacks expected EPT leaves", leaves, want_ept);
        }
        // A frame of the views (stack, table) is mapped once, and is no given frame.
        for i in 0..m.count() {
            if let Some(map) = m.get(i).filter(|x| x.kind.in_view(view)) {
                if let Some(first) = map.hpa {
                    owned.push(Span {
                        start: first.0,
                        len: map.bytes(),
                        tag: 0,
                    })?;
                }
            }
        }
        // Sorted by start: a span overlaps an earlier one iff it starts below its end.
        let (mut any_end, mut owned_end) = (0u64, 0u64);
        for s in owned.sorted() {
            let end = s.start.saturating_add(s.len);
            let clash = if s.tag == 1 {
                s.start < any_end
            } else {
                s.start < owned_end
            };
            if clash {
                return bad("a frame of the views is mapped twice", s.start, s.len);
            }
            any_end = any_end.max(end);
            if s.tag == 1 {
                owned_end = owned_end.max(end);
            }
        }
        // Guest side: exactly the registered GVAs, with the requested permissions.
        let mut index = Stack::new(&mut *scratch);
        for i in 0..m.count() {
            let Some(map) = m.get(i).filter(|x| x.kind.in_view(view)) else {
                continue;
            };
            if let Some(gva) = map.gva {
                index.push(Span {
                    start: gva.0,
                    len: map.bytes(),
                    tag: i as u64,
                })?;
            }
        }
        let by_gva = index.sorted();
        let present_user = match self.v.header.privilege {
            CallerPrivilege::Supervisor => GUEST_P_U & 1,
            CallerPrivilege::User => GUEST_P_U,
        };
        let mut leaves = 0u64;
        for_each_guest_leaf(
            self.frames,
            roots.eptp,
            self.levels,
            roots.apt_frame.0,
            &mut |l| {
                leaves = leaves.saturating_add(1);
                let gva = canonical(l.gva, self.levels);
                let bad = |what| Err(Violation::new(what, gva, l.entry));
                let Some(map) = find(by_gva, gva).and_then(|s| m.get(s.tag as usize)) else {
                    return bad("unexpected guest leaf");
                };
                if l.size != map.page_size.bytes() {
                    return bad("guest leaf of the wrong size");
                }
                let gpa = l.entry & ADDR_MASK & !l.size.wrapping_sub(1);
                let offset = gva.wrapping_sub(map.gva.map_or(0, |x| x.0));
                if Some(gpa) != map.gpa.0.checked_add(offset) {
                    return bad("guest leaf points to another GPA");
                }
                if Some(l.entry & GUEST_W_NX) != map.guest.map(guest_bits) {
                    return bad("guest leaf with the wrong permissions");
                }
                if l.entry & GUEST_P_U != present_user {
                    return bad("guest leaf U bit not as the callers' privilege wants");
                }
                Ok(())
            },
        )
        .map_err(|e| e.in_view(view))?;
        if leaves != want_guest {
            return bad("the view lacks expected guest leaves", leaves, want_guest);
        }
        Ok(())
    }

    fn colliding_cr3(&self, memo: &mut [Span]) -> Result<(), Violation> {
        let h = self.v.header;
        let gate = *self.roots(ViewKind::Gate);
        let code = self.code(ViewKind::Gate)?.gpa.0;
        let levels = self.levels;
        let ad = self.ad;
        for view in VIEWS {
            self.each_entry(view, &mut |e| {
                let (gpa, size) = e.range();
                let last = gpa.wrapping_add(size.wrapping_sub(PAGE_SIZE));
                let candidates = match e {
                    EptEntry::Leaf { .. } if size == PAGE_SIZE => [gpa, gpa, gpa],
                    EptEntry::Leaf { .. } => [gpa, gpa.wrapping_add(size / 2), last],
                    EptEntry::Hole { .. } => [gpa, last, last],
                    _ => return Ok(()),
                };
                for cr3 in candidates {
                    let mut check = |lgpa: u64, lsize: u64| {
                        if within(code, lgpa, lsize) {
                            return Err(Violation::new(
                                "a trusted CR3 reaches the gate code page in the gate view",
                                cr3,
                                lgpa,
                            ));
                        }
                        if let Ok(t) = ept_walk(self.frames, gate.eptp, lgpa) {
                            if t.perms.exec || t.perms.user_exec {
                                return Err(Violation::new(
                                    "a trusted CR3 reaches an executable leaf in the gate view",
                                    cr3,
                                    lgpa,
                                ));
                            }
                        }
                        Ok(())
                    };
                    for_each_reachable_leaf(
                        self.frames,
                        gate.eptp,
                        levels,
                        cr3,
                        ad,
                        &mut *memo,
                        &mut check,
                    )?;
                    // A trusted GPA is an explicit leaf or a hole in each view, never the APT.
                    for other in VIEWS {
                        let r = self.roots(other);
                        match ept_walk(self.frames, r.eptp, cr3) {
                            Ok(t) if t.hpa & !PAGE_MASK != r.apt_frame.0 => {}
                            Err(EptFault::NotPresent { .. }) => {}
                            _ => {
                                return Err(Violation::new(
                                    "a trusted GPA is neither a leaf nor a hole",
                                    cr3,
                                    0,
                                )
                                .in_view(other))
                            }
                        }
                    }
                    if !h.in_window(cr3) {
                        return Err(Violation::new("trusted leaf outside the window", cr3, 0));
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}
