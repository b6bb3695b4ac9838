// SPDX-License-Identifier: GPL-2.0
//! Property tests of the gate and sub views over random layouts, configurations and CR3
//! values, for 4-level and 5-level guest paging. Each property prints its number of cases.
//!
//! The isolation invariants are `elisa_core::verify`'s checks (the same code `elisactl
//! check-views` runs over the module's debugfs dump); this file runs them over random
//! builds, and checks what only a build in memory shows (frame counts, writes).

mod common;

use std::collections::HashSet;

use common::*;
use elisa_core::addr::{Gpa, Hpa, PageSize};
use elisa_core::ept::EPT_ADDR_MASK;
use elisa_core::eptp::{Eptp, EptpList, EptpListState, EPTP_INDEX_GATE, EPTP_INDEX_SUB};
use elisa_core::paging::PagingMode;
use elisa_core::verify::walk::ept_slot;
use elisa_core::verify::{scratch_len, Check, Mapping, MappingKind, Span, Views};
use elisa_core::view::{build_sub_view, EntryFrames, View};
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
                let built = build_or_reject(&s)?;
                let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
                test(&built, &mut rng)
            },
        );
    }
}

use proptest::test_runner::{RngAlgorithm, TestRng};
use rand_like::*;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

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

/// Runs `check` over the built views with a seed drawn from the case's generator.
fn verify(b: &Built, rng: &mut TestRng, check: Check) -> Result<(), TestCaseError> {
    b.check(check, next_u64(rng))
        .map_err(|v| TestCaseError::fail(format!("{}: {v}", check.name())))
}

#[test]
fn gate_view_has_exactly_one_executable_page_and_it_is_execute_only() {
    each_mode("gate view: one executable page, execute-only", |b, rng| {
        verify(b, rng, Check::GateExecute)
    });
}

#[test]
fn every_gpa_not_mapped_explicitly_reaches_the_apt() {
    each_mode("every unmapped GPA reaches the APT", |b, rng| {
        verify(b, rng, Check::Apt)
    });
}

#[test]
fn any_cr3_gives_the_trusted_translation() {
    each_mode("any CR3 gives the trusted translation", |b, rng| {
        verify(b, rng, Check::AnyCr3)
    });
}

#[test]
fn no_page_is_writable_and_executable() {
    each_mode("W^X in gate and sub views", |b, rng| {
        verify(b, rng, Check::WriteXorExecute)
    });
}

#[test]
fn sub_view_maps_exactly_the_registered_pages() {
    each_mode("sub view maps exactly the registered pages", |b, rng| {
        // The pool is sized exactly: the builder used every page the plan reserved.
        prop_assert_eq!(
            b.sub.frame_counts().guest_tables - 1,
            b.layout.sub_tables().pages
        );
        verify(b, rng, Check::SubExact)
    });
}

#[test]
fn gate_view_maps_exactly_its_pages() {
    each_mode("gate view maps exactly its pages", |b, rng| {
        prop_assert_eq!(
            b.gate.frame_counts().guest_tables - 1,
            b.layout.gate_tables().pages
        );
        verify(b, rng, Check::GateExact)
    });
}

#[test]
fn no_frame_is_mapped_for_two_things() {
    each_mode(
        "no frame mapped for two things, across both views",
        |b, rng| verify(b, rng, Check::FramesDisjoint),
    );
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
    each_mode("EPTP values well-formed", |b, rng| {
        verify(b, rng, Check::Eptps)?;
        for view in [&b.gate, &b.sub] {
            let raw = view.eptp().raw();
            prop_assert_eq!(raw & !0xfff, view.ept().root().0);
            prop_assert!(b.mem.owns(view.ept().root().0));
            prop_assert_eq!(Eptp::from_raw(raw).unwrap(), view.eptp());
        }
        let default = Eptp::from_raw(TEST_LIST0).unwrap();
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
        // The list as the module keeps it passes the list check, idle and in the hop.
        let mut mem = clone_mem(b);
        list.write_to(&mut mem, b.entry.eptp_list).unwrap();
        let check = |mem: &MemFrames| {
            b.check_in(mem, Check::EptpList, 0)
                .map_err(|v| TestCaseError::fail(v.to_string()))
        };
        check(&mem)?;
        mem.poke(b.entry.eptp_list.0, EPTP_INDEX_SUB, b.sub.eptp().raw());
        check(&mem)?;
        // ... and a stray entry fails it, as does a valid EPTP of no view of the vCPU (one a
        // guest built from shifted RFLAGS images: R19) at index 0, 1 or 511.
        let forged = 0x1e | 0x0000_0042_0000_0000;
        for (index, e) in [
            (7, b.gate.eptp().raw()),
            (0, forged),
            (EPTP_INDEX_SUB, forged),
            (EPTP_INDEX_GATE, forged),
        ] {
            let mut m = clone_mem(b);
            list.write_to(&mut m, b.entry.eptp_list).unwrap();
            m.poke(b.entry.eptp_list.0, index, e);
            prop_assert!(check(&m).is_err(), "{:#x} at {} passed", e, index);
        }
        Ok(())
    });
}

#[test]
fn a_table_entry_that_restricts_its_leaves_fails_the_exact_check() {
    // The leaves' W, U and NX are the effective ones only under table entries that restrict
    // nothing: clearing U (a user grant's pages would be supervisor pages) or W, or setting
    // NX, in the root entry above the service code fails the sub view's exact check.
    each_mode("a restricting table entry fails SubExact", |b, _rng| {
        let root = b.sub.page_table().root().0;
        let code_slot = (b.layout.code_gva().0 >> (12 + 9 * (b.levels() as u32 - 1))) & 511;
        let entry = b.mem.peek(root, code_slot as usize);
        prop_assert!(entry & 1 != 0);
        b.check_in(&b.mem, Check::SubExact, 0)
            .map_err(|v| TestCaseError::fail(v.to_string()))?;
        for (bit, set) in [(1u64 << 2, false), (1 << 1, false), (1 << 63, true)] {
            let mut m = clone_mem(b);
            m.poke(
                root,
                code_slot as usize,
                if set { entry | bit } else { entry & !bit },
            );
            let r = b.check_in(&m, Check::SubExact, 0);
            prop_assert!(r.is_err(), "table entry {:#x} passed", entry ^ bit);
        }
        Ok(())
    });
}

#[test]
fn large_leaves_with_low_address_bits_fail_the_exact_check() {
    // In a 2 MiB or 1 GiB leaf, address bits below the leaf's size are reserved (EPT: an
    // EPT misconfiguration; guest tables: a reserved-bit fault, or bit 12, PAT, another
    // memory type). A region mapped in such leaves with bit 13 set in its first EPT leaf,
    // or in its first guest leaf, fails the sub view's exact check. Scenarios without a
    // large region check nothing here: the count of those that did must not be 0.
    let checked = AtomicUsize::new(0);
    each_mode(
        "large leaves with low address bits fail SubExact",
        |b, _rng| {
            let check = |m: &MemFrames| b.check_in(m, Check::SubExact, 0);
            for (r, p) in b.layout.regions().map(|r| r.placement).enumerate() {
                if p.page_size == PageSize::Size4K {
                    continue;
                }
                checked.fetch_add(1, Relaxed);
                let slot = ept_slot(&b.mem, eptp(&b.sub), p.gpa.0).unwrap();
                let mut m = clone_mem(b);
                let e = m.peek(slot.table.0, slot.index);
                m.poke(slot.table.0, slot.index, e | 1 << 13);
                prop_assert!(check(&m).is_err(), "EPT leaf {:#x} passed", e | 1 << 13);
                // The guest leaf: the present PS entry that maps the region's first GPA.
                let mut found = 0;
                for &frame in &b.mem.allocated {
                    for i in 0..512 {
                        let q = b.mem.peek(frame, i);
                        if q & 0x81 == 0x81 && q & 0x000f_ffff_ffff_f000 == p.gpa.0 {
                            let mut m = clone_mem(b);
                            m.poke(frame, i, q | 1 << 13);
                            prop_assert!(
                                check(&m).is_err(),
                                "guest leaf {:#x} passed",
                                q | 1 << 13
                            );
                            found += 1;
                        }
                    }
                }
                prop_assert!(found >= 1, "no guest leaf for region {}", r);
            }
            Ok(())
        },
    );
    let checked = checked.load(Relaxed);
    println!("large leaves with low address bits: {checked} large regions mutated");
    assert!(
        checked >= 64,
        "only {checked} large regions in all the cases"
    );
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

/// Region permissions, from a table written here rather than from `RegionAccess`'s own
/// mapping (which the builder and `verify::Expected` share, so a wrong mapping there would
/// pass every other check): through any CR3, a page of a read-only region is readable and
/// never writable in the sub view's EPT or in its guest translation, a read-write one is
/// both, and code is neither readable-writable nor, unless read-execute, readable.
#[test]
fn region_permissions_are_the_requested_ones() {
    use elisa_core::layout::RegionAccess;
    use elisa_core::verify::walk::{ept_walk, guest_walk};
    each_mode("region permissions as requested", |b, rng| {
        let sub = eptp(&b.sub);
        for r in b.layout.regions() {
            // (EPT read, EPT write, EPT execute, guest writable, guest no-execute)
            let want = match r.access {
                RegionAccess::ReadOnly => (true, false, false, false, true),
                RegionAccess::ReadWrite => (true, true, false, true, true),
                RegionAccess::ExecuteOnly => (false, false, true, false, false),
                RegionAccess::ReadExecute => (true, false, true, false, false),
            };
            let p = r.placement;
            for off in [0, p.size - 1, next_u64(rng) % p.size] {
                let gpa = p.gpa.0 + off;
                let e = ept_walk(&b.mem, sub, gpa)
                    .map_err(|f| TestCaseError::fail(format!("GPA {gpa:#x}: {f:?}")))?;
                let got = (e.perms.read, e.perms.write, e.perms.exec);
                prop_assert_eq!(got, (want.0, want.1, want.2), "EPT of GPA {:#x}", gpa);
                // A CR3 in the guest's memory: the APT serves it (any_cr3 covers the rest).
                let cr3 = (next_u64(rng) % b.guest_gpa_end) & !0xfff;
                let t = guest_walk(
                    &b.mem,
                    sub,
                    b.levels(),
                    cr3,
                    p.gva.0 + off,
                    b.cfg.accessed_dirty,
                )
                .map_err(|f| TestCaseError::fail(format!("GVA {:#x}: {f:?}", p.gva.0 + off)))?;
                prop_assert_eq!(
                    t.gpa,
                    gpa,
                    "GVA {:#x} through CR3 {:#x}",
                    p.gva.0 + off,
                    cr3
                );
                prop_assert_eq!(
                    (t.writable, t.nx),
                    (want.3, want.4),
                    "guest leaf of GVA {:#x}",
                    p.gva.0 + off
                );
            }
        }
        Ok(())
    });
}

#[test]
fn a_large_region_frame_over_an_entry_frame_is_refused() {
    // A 2 MiB or 1 GiB region frame that covers the gate code or data, the sub code or the
    // EPTP list at a 4 KiB offset would map that page into the sub view as region memory
    // (writable for a read-write region): the builder refuses it, not only a frame equal
    // to one of them. The entry frames sit 1 to 4 pages into a 1 GiB-aligned block (the
    // sub view maps but never reads them), and the region's first frame is that block.
    each_mode(
        "a large region frame covering an entry frame is refused",
        |b, _rng| {
            const BLOCK: u64 = 0x7_4000_0000;
            let entry = EntryFrames {
                gate_code: Hpa(BLOCK + 0x1000),
                gate_data: Hpa(BLOCK + 0x2000),
                sub_code: Hpa(BLOCK + 0x3000),
                eptp_list: Hpa(BLOCK + 0x4000),
            };
            let mut large = 0;
            for (r, p) in b.layout.regions().map(|r| r.placement).enumerate() {
                if p.page_size == PageSize::Size4K {
                    continue;
                }
                large += 1;
                let frames = |region: usize, index: u64| {
                    let ps = b
                        .layout
                        .region(region)
                        .ok_or(elisa_core::Error::BadRegionFrame)?
                        .placement
                        .page_size;
                    Ok(Hpa(if region == r && index == 0 {
                        BLOCK
                    } else {
                        region_hpa(region, index, ps)
                    }))
                };
                let mut mem = clone_mem(b);
                let got = build_sub_view(&b.layout, &b.cfg, &mut mem, &entry, &frames);
                prop_assert!(
                    matches!(got, Err(elisa_core::Error::BadRegionFrame)),
                    "region {} ({:?}) over the entry frames: {:?}",
                    r,
                    p.page_size,
                    got.map(|_| ())
                );
            }
            if large == 0 {
                return Err(TestCaseError::reject("no region in large pages"));
            }
            Ok(())
        },
    );
}

/// A copy of `b`'s frames in which the sub view's leaf for the sub stack's top page names
/// the frame of the EPT leaf `other` (its own permission bits kept): a frame mapped twice.
fn sub_stack_top_on(b: &Built, other: u64) -> MemFrames {
    let stack = b.layout.sub_stack();
    let slot = ept_slot(&b.mem, eptp(&b.sub), stack.gpa.0 + stack.size - 4096).unwrap();
    let mut m = clone_mem(b);
    let leaf = m.peek(slot.table.0, slot.index);
    m.poke(
        slot.table.0,
        slot.index,
        (leaf & !EPT_ADDR_MASK) | (other & EPT_ADDR_MASK),
    );
    m
}

#[test]
fn a_frame_mapped_for_two_things_fails_the_disjoint_check() {
    // The sub stack's top page on the gate stack's frame (each view alone looks right), and
    // a region whose expected frames cover the gate data page at a 4 KiB offset: both fail
    // FramesDisjoint; the views as built pass it.
    each_mode(
        "a frame mapped for two things fails FramesDisjoint",
        |b, _rng| {
            let run = |mem: &MemFrames, mappings: &[Mapping]| {
                let header = b.header();
                let views = Views {
                    header: &header,
                    mappings: &mappings,
                };
                let mut scratch = vec![Span::default(); scratch_len(&views, mem.allocated.len())];
                elisa_core::verify::check(Check::FramesDisjoint, &views, mem, &mut scratch, 0)
            };
            let mappings = b.mappings();
            prop_assert_eq!(run(&b.mem, &mappings), Ok(()));

            let gate_stack = b.layout.gate_stack();
            let gate_frame = ept_slot(&b.mem, eptp(&b.gate), gate_stack.gpa.0).unwrap();
            let gate_leaf = b.mem.peek(gate_frame.table.0, gate_frame.index);
            let m = sub_stack_top_on(b, gate_leaf);
            prop_assert!(
                run(&m, &mappings).is_err(),
                "sub stack on the gate stack's frame passed"
            );

            let mut covering = mappings.clone();
            let gate_data = b.entry.gate_data.0;
            let region = covering
                .iter_mut()
                .find(|x| matches!(x.kind, MappingKind::Region(_)));
            if let Some(r) = region {
                // The run's first frame: the gate data page, or the large page that holds it.
                r.hpa = Some(Hpa(gate_data & !(r.page_size.bytes() - 1)));
                prop_assert!(
                    run(&b.mem, &covering).is_err(),
                    "a region over the gate data passed"
                );
            }
            Ok(())
        },
    );
}

#[test]
fn memory_type_and_key_bits_in_a_guest_leaf_fail_the_exact_check() {
    // PWT, PCD, the PAT bit of a 4 KiB leaf and the protection key (62:59) are 0 in every
    // trusted leaf: each set in the sub code page's guest leaf fails SubExact.
    each_mode(
        "PWT, PCD, PAT or a key in a guest leaf fail SubExact",
        |b, _rng| {
            let code_gpa = b.layout.sub_code_gpa().0;
            let mut found = 0;
            for &frame in &b.mem.allocated {
                for i in 0..512 {
                    let q = b.mem.peek(frame, i);
                    if q & 1 == 0 || q & 0x000f_ffff_ffff_f000 != code_gpa {
                        continue;
                    }
                    found += 1;
                    for bit in [1u64 << 3, 1 << 4, 1 << 7, 1 << 59, 1 << 62] {
                        let mut m = clone_mem(b);
                        m.poke(frame, i, q | bit);
                        prop_assert!(
                            b.check_in(&m, Check::SubExact, 0).is_err(),
                            "guest leaf {:#x} passed",
                            q | bit
                        );
                    }
                }
            }
            prop_assert_eq!(found, 1, "the sub code page's guest leaves");
            Ok(())
        },
    );
}

#[test]
fn a_view_frame_mapped_twice_fails_the_exact_check() {
    // Within one view: the sub stack's top page on the frame of the sub view's first
    // page-table page fails SubExact (each frame of the views is mapped once).
    each_mode(
        "a frame of the sub view mapped twice fails SubExact",
        |b, _rng| {
            let tables = b.layout.sub_tables();
            prop_assume!(tables.pages != 0);
            let table = ept_slot(&b.mem, eptp(&b.sub), tables.gpa.0).unwrap();
            let table_leaf = b.mem.peek(table.table.0, table.index);
            let m = sub_stack_top_on(b, table_leaf);
            let r = b.check_in(&m, Check::SubExact, 0);
            prop_assert!(r.is_err(), "the sub stack on a table frame passed");
            Ok(())
        },
    );
}
