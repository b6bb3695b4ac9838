// SPDX-License-Identifier: GPL-2.0
//! Property tests of the gate and sub views over random layouts, configurations and CR3
//! values, for 4-level and 5-level guest paging. Each property prints its number of cases.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use elisa_core::addr::Gpa;
use elisa_core::apt::table_perm;
use elisa_core::ept::{EptPerm, EPT_HOLE};
use elisa_core::eptp::{Eptp, EptpList, EptpListState, EPTP_INDEX_GATE, EPTP_INDEX_SUB};
use elisa_core::layout::RegionAccess;
use elisa_core::paging::{CallerPrivilege, PagingMode};
use elisa_core::view::View;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const MODES: [(PagingMode, &str); 2] = [
    (PagingMode::FourLevel, "4-level"),
    (PagingMode::FiveLevel, "5-level"),
];

/// Runs a property over scenarios of both paging modes, skipping refused plans.
fn each_mode(name: &str, test: impl Fn(&Built, &mut TestRng) -> Result<(), TestCaseError>) {
    for (mode, mode_name) in MODES {
        property(
            &format!("{name} ({mode_name})"),
            (scenario(mode), any::<u64>()),
            |(s, seed)| {
                let built = match build(&s) {
                    Ok(b) => b,
                    Err(elisa_core::Error::Collision(..)) => {
                        return Err(TestCaseError::reject("fixed GVAs collide"))
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("build failed: {e:?}"))),
                };
                let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
                test(&built, &mut rng)
            },
        );
    }
}

use proptest::test_runner::{RngAlgorithm, TestRng};
use rand_like::*;

/// Tiny helpers over proptest's RNG, to draw extra values inside a case.
mod rand_like {
    pub fn seed_bytes(seed: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&(seed.rotate_left(i as u32 * 13) ^ i as u64).to_le_bytes());
        }
        out
    }
}

fn next_u64(rng: &mut TestRng) -> u64 {
    use proptest::prelude::Rng;
    rng.next_u64()
}

fn eptp(view: &View) -> u64 {
    view.eptp().raw()
}

fn tree(b: &Built, view: &View) -> EptTree {
    let chain: Vec<u64> = view.apt().chain().iter().map(|h| h.0).collect();
    ept_leaves(&b.mem, view.ept().root().0, &chain, view.apt().frame().0)
}

fn in_window(b: &Built, gpa: u64) -> bool {
    let (start, len) = b.layout.trusted_window();
    gpa >= start.0 && gpa < start.0 + len
}

/// GVAs worth probing in a view: every page of every item and a few around them.
fn probe_gvas(b: &Built, rng: &mut TestRng) -> Vec<u64> {
    let l = &b.layout;
    let mut v = vec![
        l.entry_gva().0,
        l.code_gva().0,
        l.eptp_list_gva().0,
        l.gate_data_gva().0,
        l.entry_gva().0 + 0x2000,
        l.entry_gva().0 - 0x3000,
        l.gate_stack().gva.0,
        l.gate_stack().gva.0 - 0x1000,
        l.gate_stack_top().0,
        l.sub_stack().gva.0,
        l.sub_stack().gva.0 - 0x1000,
        l.sub_stack_top().0 - 8,
        l.sub_stack_top().0,
    ];
    for r in l.regions() {
        let p = r.placement;
        v.push(p.gva.0);
        v.push(p.gva.0 + p.size - 1);
        v.push(p.gva.0 + next_u64(rng) % p.size);
        v.push(p.gva.0.wrapping_add(p.size));
    }
    for _ in 0..8 {
        v.push(canonical(next_u64(rng), b.levels()));
    }
    v
}

#[test]
fn gate_view_has_exactly_one_executable_page_and_it_is_execute_only() {
    each_mode("gate view: one executable page, execute-only", |b, _| {
        let t = tree(b, &b.gate);
        let exec: Vec<_> = t.leaves.values().filter(|m| m.entry & 4 != 0).collect();
        prop_assert_eq!(exec.len(), 1);
        let code = exec[0];
        prop_assert_eq!(code.gpa, b.layout.gate_code_gpa().0);
        prop_assert_eq!(code.size, 0x1000);
        prop_assert_eq!(code.entry & 7, 4, "X only: no R, no W");
        prop_assert_eq!(code.entry & (1 << 10) != 0, b.cfg.mbec);
        prop_assert_eq!(code.entry & 0x000f_ffff_ffff_f000, b.entry.gate_code.0);
        // The APT is never executable.
        let apt = ept_walk(&b.mem, eptp(&b.gate), 0).unwrap();
        prop_assert!(!apt.perms.exec && !apt.perms.user_exec);
        // In the guest table, too, exactly one leaf is executable: the code page.
        let leaves = guest_leaves(
            &b.mem,
            eptp(&b.gate),
            b.levels(),
            b.gate.page_table().root().0,
        );
        let exec: Vec<_> = leaves.iter().filter(|l| l.entry & (1 << 63) == 0).collect();
        prop_assert_eq!(exec.len(), 1);
        prop_assert_eq!(canonical(exec[0].gva, b.levels()), b.layout.code_gva().0);
        // Through the walker: fetchable, but not readable as data.
        let t = guest_walk(
            &b.mem,
            eptp(&b.gate),
            b.levels(),
            0,
            b.layout.code_gva().0,
            b.cfg.accessed_dirty,
        )
        .unwrap();
        prop_assert!(t.executable(b.cfg.mbec) && !t.ept.read && !t.ept.write);
        Ok(())
    });
}

#[test]
fn every_gpa_not_mapped_explicitly_reaches_the_apt() {
    each_mode("every unmapped GPA reaches the APT", |b, rng| {
        for view in [&b.gate, &b.sub] {
            let t = tree(b, view);
            prop_assert!(t.empty.is_empty(), "no empty EPT entry anywhere");
            for &(gpa, size) in &t.holes {
                prop_assert!(
                    in_window(b, gpa) && in_window(b, gpa + size - 1),
                    "holes only in the trusted window"
                );
            }
            // The chain tables hold nothing but their fill entry.
            let fill = view.ept().fill().unwrap();
            for (i, table) in view.apt().chain().iter().enumerate() {
                for index in 0..512 {
                    prop_assert_eq!(b.mem.peek(table.0, index), fill.entry(i as u8 + 1).unwrap());
                }
            }
            let ad = b.cfg.accessed_dirty;
            let explicit: Vec<(u64, u64)> = t.leaves.values().map(|m| (m.gpa, m.size)).collect();
            for _ in 0..64 {
                let gpa = next_u64(rng) & ((1 << 48) - 1);
                if explicit.iter().any(|&(g, s)| gpa >= g && gpa < g + s) {
                    continue;
                }
                match ept_walk(&b.mem, eptp(view), gpa) {
                    Ok(leaf) => {
                        prop_assert!(!in_window(b, gpa));
                        prop_assert_eq!(leaf.hpa & !0xfff, view.apt().frame().0);
                        prop_assert_eq!(leaf.size, 0x1000);
                        prop_assert!(leaf.perms.read && leaf.perms.write == ad);
                        prop_assert!(!leaf.perms.exec && !leaf.perms.user_exec);
                        prop_assert_eq!(leaf.mem_type, 6);
                    }
                    Err(EptFault::NotPresent { entry, .. }) => {
                        prop_assert!(in_window(b, gpa));
                        prop_assert_eq!(entry, EPT_HOLE);
                    }
                    Err(e) => prop_assert!(false, "unexpected EPT fault {:?}", e),
                }
            }
            // The trusted window is covered exactly by this view's leaves and holes.
            let (start, len) = b.layout.trusted_window();
            let mut cover: Vec<(u64, u64)> = t
                .leaves
                .values()
                .map(|m| (m.gpa, m.size))
                .chain(t.holes.iter().copied())
                .filter(|&(g, sz)| g < start.0 + len && g + sz > start.0)
                .collect();
            cover.sort();
            let mut at = start.0;
            for (g, sz) in cover {
                prop_assert_eq!(
                    g.max(start.0),
                    at,
                    "gap or overlap in the trusted window at {:#x}",
                    at
                );
                at = g + sz;
            }
            prop_assert!(at >= start.0 + len);
            // Guest RAM (every legitimate CR3) always reaches the APT.
            let ram = next_u64(rng) % b.layout.trusted_window().0 .0.min(1 << 32);
            prop_assert_eq!(
                ept_walk(&b.mem, eptp(view), ram).unwrap().hpa & !0xfff,
                view.apt().frame().0
            );
        }
        Ok(())
    });
}

#[test]
fn any_cr3_gives_the_trusted_translation() {
    each_mode("any CR3 gives the trusted translation", |b, rng| {
        let levels = b.levels();
        let limit = 1u64 << b.phys_bits;
        let gvas = probe_gvas(b, rng);
        for view in [&b.gate, &b.sub] {
            let e = eptp(view);
            // The reference: the walk that starts at the root frame, i.e. CR3 = any GPA of
            // guest RAM. GPA 0 is always guest RAM.
            let reference: Vec<_> = gvas
                .iter()
                .map(|&g| guest_walk(&b.mem, e, levels, 0, g, b.cfg.accessed_dirty))
                .collect();
            // ... and it is the trusted table: the APT frame is the view's root, and the code
            // and list pages translate as planned.
            prop_assert_eq!(
                ept_walk(&b.mem, e, 0).unwrap().hpa,
                view.page_table().root().0
            );
            let sub = std::ptr::eq(view, &b.sub);
            let code_gpa = if sub {
                b.layout.sub_code_gpa()
            } else {
                b.layout.gate_code_gpa()
            };
            let code = guest_walk(
                &b.mem,
                e,
                levels,
                0,
                b.layout.code_gva().0,
                b.cfg.accessed_dirty,
            );
            prop_assert_eq!(code.map(|t| t.gpa), Ok(code_gpa.0));
            let list = guest_walk(
                &b.mem,
                e,
                levels,
                0,
                b.layout.eptp_list_gva().0,
                b.cfg.accessed_dirty,
            );
            prop_assert_eq!(
                list.map(|t| (t.gpa, t.writable)),
                Ok((b.layout.eptp_list_gpa().0, true))
            );
            for _ in 0..16 {
                // Random CR3 values, with random low bits (PCID, PWT, PCD) and random high bits
                // cleared to the guest's width.
                let mut cr3 = next_u64(rng) % limit;
                if in_window(b, cr3) {
                    cr3 = next_u64(rng) % b.layout.trusted_window().0 .0;
                }
                cr3 |= next_u64(rng) & 0xfff;
                for (g, r) in gvas.iter().zip(&reference) {
                    let w = guest_walk(&b.mem, e, levels, cr3, *g, b.cfg.accessed_dirty);
                    prop_assert_eq!(&w, r, "cr3 {:#x} gva {:#x}", cr3, g);
                }
            }
        }
        Ok(())
    });
}

#[test]
fn no_page_is_writable_and_executable() {
    each_mode("W^X in gate and sub views", |b, _| {
        for view in [&b.gate, &b.sub] {
            let t = tree(b, view);
            let mut writable = HashSet::new();
            let mut executable = HashSet::new();
            for m in t.leaves.values() {
                let (w, x) = (m.entry & 2 != 0, m.entry & (4 | 1 << 10) != 0);
                prop_assert!(!(w && x), "leaf {:?}", m);
                let frame = m.entry & 0x000f_ffff_ffff_f000;
                for page in 0..(m.size / 0x1000).min(512) {
                    if w {
                        writable.insert(frame + page * 0x1000);
                    }
                    if x {
                        executable.insert(frame + page * 0x1000);
                    }
                }
            }
            prop_assert!(
                writable.is_disjoint(&executable),
                "no frame aliased W and X"
            );
            let apt = view.apt().frame().0;
            prop_assert!(!executable.contains(&apt));
            let leaves = guest_leaves(&b.mem, eptp(view), b.levels(), view.page_table().root().0);
            for l in &leaves {
                prop_assert!(
                    !(l.entry & 2 != 0 && l.entry & (1 << 63) == 0),
                    "guest leaf W and X"
                );
                prop_assert!(l.entry & (1 << 8) == 0, "no global trusted translations");
            }
        }
        Ok(())
    });
}

/// The expected EPT leaves of a view, by GPA: (size, R/W/X bits, frame if known).
fn expected_ept(b: &Built, view: &View, sub: bool) -> BTreeMap<u64, (u64, u64, Option<u64>)> {
    let l = &b.layout;
    let mut m = BTreeMap::new();
    let rw = EptPerm::ReadWrite.bits();
    let (code_gpa, code_frame) = if sub {
        (l.sub_code_gpa(), b.entry.sub_code)
    } else {
        (l.gate_code_gpa(), b.entry.gate_code)
    };
    m.insert(
        code_gpa.0,
        (0x1000, EptPerm::ExecuteOnly.bits(), Some(code_frame.0)),
    );
    m.insert(l.eptp_list_gpa().0, (0x1000, rw, Some(b.entry.eptp_list.0)));
    if !sub {
        m.insert(
            l.gate_data_gpa().0,
            (0x1000, EptPerm::ReadOnly.bits(), Some(b.entry.gate_data.0)),
        );
    }
    let stack = if sub { l.sub_stack() } else { l.gate_stack() };
    for off in (0..stack.size).step_by(0x1000) {
        m.insert(stack.gpa.0 + off, (0x1000, rw, None));
    }
    let pool = if sub { l.sub_tables() } else { l.gate_tables() };
    let tables = view.frame_counts().guest_tables - 1;
    assert_eq!(tables, pool.pages, "the pool is sized exactly");
    for i in 0..tables {
        m.insert(
            pool.gpa.0 + i * 0x1000,
            (0x1000, table_perm(&b.cfg).bits(), None),
        );
    }
    if sub {
        for (i, r) in l.regions().enumerate() {
            let p = r.placement;
            for (n, off) in (0..p.size)
                .step_by(p.page_size.bytes() as usize)
                .enumerate()
            {
                let frame = region_hpa(i, n as u64, p.page_size);
                m.insert(
                    p.gpa.0 + off,
                    (p.page_size.bytes(), r.access.ept_perm().bits(), Some(frame)),
                );
            }
        }
    }
    m
}

fn check_view_exact(b: &Built, view: &View, sub: bool) -> Result<(), TestCaseError> {
    let expected = expected_ept(b, view, sub);
    let t = tree(b, view);
    prop_assert_eq!(t.leaves.len(), expected.len());
    for (gpa, leaf) in &t.leaves {
        let Some(&(size, perm, frame)) = expected.get(gpa) else {
            return Err(TestCaseError::fail(format!("unexpected EPT leaf {leaf:?}")));
        };
        prop_assert_eq!(leaf.size, size);
        prop_assert_eq!(leaf.entry & 7, perm);
        prop_assert_eq!((leaf.entry >> 3) & 7, 6, "write-back");
        prop_assert!(
            leaf.entry & (1 << 6) != 0 && leaf.entry & (1 << 63) != 0,
            "ignore PAT, suppress #VE"
        );
        prop_assert_eq!(leaf.entry & (1 << 10) != 0, b.cfg.mbec && perm & 4 != 0);
        if let Some(f) = frame {
            prop_assert_eq!(leaf.entry & 0x000f_ffff_ffff_f000, f);
        }
    }
    // Guest side: exactly the registered GVAs, with the requested permissions.
    let l = &b.layout;
    let mut want: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new(); // gva -> (size, gpa, W/NX)
    let code_gpa = if sub {
        l.sub_code_gpa()
    } else {
        l.gate_code_gpa()
    };
    want.insert(l.code_gva().0, (0x1000, code_gpa.0, 0));
    want.insert(
        l.eptp_list_gva().0,
        (0x1000, l.eptp_list_gpa().0, 2 | 1 << 63),
    );
    if !sub {
        want.insert(l.gate_data_gva().0, (0x1000, l.gate_data_gpa().0, 1 << 63));
    }
    let stack = if sub { l.sub_stack() } else { l.gate_stack() };
    for off in (0..stack.size).step_by(0x1000) {
        want.insert(stack.gva.0 + off, (0x1000, stack.gpa.0 + off, 2 | 1 << 63));
    }
    if sub {
        for r in l.regions() {
            let p = r.placement;
            let bits = match r.access {
                RegionAccess::ExecuteOnly | RegionAccess::ReadExecute => 0,
                RegionAccess::ReadOnly => 1 << 63,
                RegionAccess::ReadWrite => 2 | 1 << 63,
            };
            for off in (0..p.size).step_by(p.page_size.bytes() as usize) {
                want.insert(p.gva.0 + off, (p.page_size.bytes(), p.gpa.0 + off, bits));
            }
        }
    }
    let leaves = guest_leaves(&b.mem, eptp(view), b.levels(), view.page_table().root().0);
    prop_assert_eq!(leaves.len(), want.len());
    for leaf in leaves {
        let gva = canonical(leaf.gva, b.levels());
        let Some(&(size, gpa, bits)) = want.get(&gva) else {
            return Err(TestCaseError::fail(format!(
                "unexpected guest leaf at {gva:#x}"
            )));
        };
        prop_assert_eq!(leaf.size, size);
        prop_assert_eq!(leaf.entry & 0x000f_ffff_ffff_f000 & !(size - 1), gpa);
        prop_assert_eq!(leaf.entry & (2 | 1 << 63), bits);
        // Present; U=1 only for callers at CPL 3.
        let user = match b.layout.privilege() {
            CallerPrivilege::Supervisor => 0,
            CallerPrivilege::User => 4,
        };
        prop_assert_eq!(leaf.entry & 5, 1 | user, "present, U as the plan says");
    }
    Ok(())
}

#[test]
fn sub_view_maps_exactly_the_registered_pages() {
    each_mode("sub view maps exactly the registered pages", |b, _| {
        check_view_exact(b, &b.sub, true)
    });
}

#[test]
fn gate_view_maps_exactly_its_pages() {
    each_mode("gate view maps exactly its pages", |b, _| {
        check_view_exact(b, &b.gate, false)
    });
}

#[test]
fn building_never_writes_outside_its_frames() {
    each_mode("building writes only frames it allocated", |b, _| {
        let [m0, m1, m2] = b.marks;
        for (view, from, to) in [(&b.sub, m0, m1), (&b.gate, m1, m2)] {
            let allocated: HashSet<u64> = b.mem.allocated[from.0..to.0].iter().copied().collect();
            // Stack frames are allocated by the builder but must never be written by it.
            let l = &b.layout;
            let stack = if std::ptr::eq(view, &b.sub) {
                l.sub_stack()
            } else {
                l.gate_stack()
            };
            let stacks: HashSet<u64> = (0..stack.size)
                .step_by(0x1000)
                .map(|off| ept_walk(&b.mem, eptp(view), stack.gpa.0 + off).unwrap().hpa)
                .collect();
            prop_assert_eq!(stacks.len() as u64, stack.size / 0x1000);
            prop_assert!(stacks.is_subset(&allocated));
            for &(frame, index) in &b.mem.writes[from.1..to.1] {
                prop_assert!(index < 512);
                prop_assert!(
                    allocated.contains(&frame),
                    "write to a frame not allocated by this build"
                );
                prop_assert!(!stacks.contains(&frame), "write to a stack frame");
                prop_assert!(
                    frame != b.entry.gate_code.0
                        && frame != b.entry.gate_data.0
                        && frame != b.entry.sub_code.0
                        && frame != b.entry.eptp_list.0,
                    "write to a caller's frame"
                );
            }
            let counts = view.frame_counts();
            prop_assert_eq!(
                counts.total(),
                (to.0 - from.0) as u64,
                "frame counts add up"
            );
            prop_assert_eq!(counts.stack_pages, stack.size / 0x1000);
        }
        // Writing the EPTP list touches only the list frame.
        let mut mem = clone_mem(b);
        let mark = mem.mark();
        let default = Eptp::from_raw(0x5e | 0x1234_5000).unwrap();
        EptpList::new(default, b.gate.eptp())
            .write_to(&mut mem, b.entry.eptp_list)
            .unwrap();
        let (allocated, writes) = mem.since(mark);
        prop_assert!(allocated.is_empty());
        prop_assert!(writes.iter().all(|&(f, _)| f == b.entry.eptp_list.0));
        prop_assert!(EptpList::read_from(&mem, b.entry.eptp_list).is_ok());
        Ok(())
    });
}

#[test]
fn eptp_values_are_well_formed() {
    each_mode("EPTP values well-formed", |b, _| {
        for view in [&b.gate, &b.sub] {
            let raw = view.eptp().raw();
            prop_assert_eq!(raw & 7, 6, "memory type WB");
            prop_assert_eq!((raw >> 3) & 7, 3, "walk length 4");
            prop_assert_eq!(raw & (1 << 6) != 0, b.cfg.accessed_dirty, "A/D per policy");
            prop_assert_eq!(raw & (0x1f << 7), 0, "bits 11:7 clear");
            prop_assert_eq!(raw >> 52, 0);
            prop_assert_eq!(raw & !0xfff, view.ept().root().0);
            prop_assert!(b.mem.owns(view.ept().root().0));
            prop_assert_eq!(Eptp::from_raw(raw).unwrap(), view.eptp());
            prop_assert!(view.eptp().check_elisa(b.cfg.accessed_dirty).is_ok());
            // Read as a guest page-table entry, an EPTP is not present (R12).
            prop_assert_eq!(raw & 1, 0);
        }
        let default = Eptp::from_raw(0x5e | 0x7777_7000).unwrap();
        let list = EptpList::new(default, b.gate.eptp());
        let back = EptpList::from_entries(*list.entries()).unwrap();
        prop_assert_eq!(back.state(), EptpListState::Idle);
        prop_assert_eq!(back.entry(EPTP_INDEX_GATE), Some(b.gate.eptp().raw()));
        let mut hop = *list.entries();
        hop[EPTP_INDEX_SUB] = b.sub.eptp().raw();
        prop_assert_eq!(
            EptpList::from_entries(hop).unwrap().state(),
            EptpListState::SubHop(b.sub.eptp())
        );
        Ok(())
    });
}

#[test]
fn a_root_change_is_seen_through_every_cr3() {
    // The APT frame is the root: a mapping added after the build shows through any CR3.
    each_mode("root changes are seen through any CR3", |b, rng| {
        let view = &b.sub;
        let root = view.page_table().root().0;
        // Find a free root slot and point it at the first table of slot index of the code page.
        let code_slot = (b.layout.code_gva().0 >> (12 + 9 * (b.levels() as u32 - 1))) & 511;
        let entry = b.mem.peek(root, code_slot as usize);
        let free = (0..512).find(|&i| b.mem.peek(root, i) == 0).unwrap();
        let mut m = clone_mem(b);
        m.poke(root, free, entry);
        let shift = 12 + 9 * (u32::from(b.levels()) - 1);
        let alias = canonical(
            ((free as u64) << shift) | (b.layout.code_gva().0 & ((1 << shift) - 1)),
            b.levels(),
        );
        for _ in 0..8 {
            let cr3 = next_u64(rng) % b.layout.trusted_window().0 .0;
            let a =
                guest_walk(&m, eptp(view), b.levels(), cr3, alias, b.cfg.accessed_dirty).unwrap();
            prop_assert_eq!(a.gpa, b.layout.sub_code_gpa().0);
        }
        Ok(())
    });
}

/// A copy of the built frames (the store is not `Clone`; rebuild it from the allocation log).
fn clone_mem(b: &Built) -> MemFrames {
    let mut m = MemFrames::new();
    for &frame in &b.mem.allocated {
        let f = elisa_core::frame::Frames::alloc_zeroed(&mut m).unwrap();
        assert_eq!(f.0, frame);
        for i in 0..512 {
            let v = b.mem.peek(frame, i);
            if v != 0 {
                m.poke(frame, i, v);
            }
        }
    }
    m
}

#[test]
fn gpa_placement_is_disjoint_and_outside_guest_memory() {
    each_mode("trusted GPAs disjoint, above guest memory", |b, _| {
        let l = &b.layout;
        let mut ranges: Vec<(u64, u64)> = vec![
            (l.gate_code_gpa().0, 0x1000),
            (l.gate_data_gpa().0, 0x1000),
            (l.sub_code_gpa().0, 0x1000),
            (l.eptp_list_gpa().0, 0x1000),
            (l.gate_stack().gpa.0, l.gate_stack().size),
            (l.sub_stack().gpa.0, l.sub_stack().size),
            (l.gate_tables().gpa.0, l.gate_tables().pages * 0x1000),
            (l.sub_tables().gpa.0, l.sub_tables().pages * 0x1000),
        ];
        for r in l.regions() {
            ranges.push((r.placement.gpa.0, r.placement.size));
            prop_assert_eq!(r.placement.gpa.0 % r.placement.page_size.bytes(), 0);
        }
        ranges.retain(|r| r.1 != 0);
        ranges.sort();
        let (start, len) = l.trusted_window();
        for w in ranges.windows(2) {
            prop_assert!(w[0].0 + w[0].1 <= w[1].0, "GPA overlap {:x?}", w);
        }
        for r in &ranges {
            prop_assert!(r.0 >= start.0 && r.0 + r.1 <= start.0 + len);
        }
        prop_assert!(start >= Gpa(b.guest_gpa_end.max(1 << 22)));
        Ok(())
    });
}
