// SPDX-License-Identifier: GPL-2.0
//! The EPT builder on its own: leaf sizes and bits, capabilities, refused requests, holes,
//! the APT fill, and a property that no input makes it panic.

mod common;

use common::*;
use elisa_core::addr::{Gpa, Hpa, PageSize};
use elisa_core::apt::Apt;
use elisa_core::ept::*;
use elisa_core::frame::Frames;
use elisa_core::Error;
use proptest::prelude::*;

fn cfg() -> EptConfig {
    EptConfig::recommended(EptCaps::all(), false)
}

#[test]
fn leaves_of_every_size_walk_correctly() {
    let mut mem = MemFrames::new();
    let mut ept = Ept::new(&mut mem, cfg()).unwrap();
    let cases = [
        (
            0x1000u64,
            0x7000_0000u64,
            PageSize::Size4K,
            EptPerm::ReadOnly,
        ),
        (0x20_0000, 0x8000_0000, PageSize::Size2M, EptPerm::ReadWrite),
        (
            0x4000_0000,
            0x1_0000_0000,
            PageSize::Size1G,
            EptPerm::ReadExecute,
        ),
        (
            0x8000_0000_0000 - 0x1000,
            0x5000,
            PageSize::Size4K,
            EptPerm::ExecuteOnly,
        ),
    ];
    for (gpa, hpa, size, perm) in cases {
        ept.map(&mut mem, Gpa(gpa), Hpa(hpa), size, perm, MemType::WriteBack)
            .unwrap();
    }
    let eptp = ept.eptp().raw();
    for (gpa, hpa, size, perm) in cases {
        let probe = gpa + size.bytes() - 8;
        let leaf = ept_walk(&mem, eptp, probe).unwrap();
        assert_eq!(leaf.hpa, hpa + size.bytes() - 8);
        assert_eq!(leaf.size, size.bytes());
        assert_eq!(leaf.mem_type, 6);
        assert!(leaf.ignore_pat && leaf.suppress_ve);
        assert_eq!(
            (leaf.perms.read, leaf.perms.write, leaf.perms.exec),
            (perm.bits() & 1 != 0, perm.writable(), perm.executable())
        );
        assert!(!leaf.perms.user_exec, "no bit 10 without MBEC");
        assert!(
            matches!(ept.lookup(&mem, Gpa(probe)).unwrap(), EptLookup::Mapped { hpa: Hpa(h), size: s, .. } if h == hpa + size.bytes() - 8 && s == size)
        );
    }
    assert_eq!(
        ept.lookup(&mem, Gpa(0x3000)).unwrap(),
        EptLookup::NotPresent
    );
    assert!(matches!(
        ept_walk(&mem, eptp, 0x3000),
        Err(EptFault::NotPresent { .. })
    ));
}

#[test]
fn mbec_sets_user_execute_on_executable_leaves_only() {
    let mut mem = MemFrames::new();
    let mut cfg = cfg();
    cfg.mbec = true;
    let mut ept = Ept::new(&mut mem, cfg).unwrap();
    ept.map(
        &mut mem,
        Gpa(0x1000),
        Hpa(0x9000),
        PageSize::Size4K,
        EptPerm::ExecuteOnly,
        MemType::WriteBack,
    )
    .unwrap();
    ept.map(
        &mut mem,
        Gpa(0x2000),
        Hpa(0xa000),
        PageSize::Size4K,
        EptPerm::ReadWrite,
        MemType::WriteBack,
    )
    .unwrap();
    let eptp = ept.eptp().raw();
    let x = ept_walk(&mem, eptp, 0x1000).unwrap().perms;
    assert!(x.exec && x.user_exec && !x.read);
    let d = ept_walk(&mem, eptp, 0x2000).unwrap().perms;
    assert!(!d.exec && !d.user_exec && d.write);
}

#[test]
fn memory_types_are_encoded() {
    for (mt, bits) in [
        (MemType::Uncacheable, 0),
        (MemType::WriteCombining, 1),
        (MemType::WriteThrough, 4),
        (MemType::WriteProtected, 5),
        (MemType::WriteBack, 6),
    ] {
        let mut mem = MemFrames::new();
        let mut ept = Ept::new(&mut mem, cfg()).unwrap();
        ept.map(
            &mut mem,
            Gpa(0),
            Hpa(0x1000),
            PageSize::Size4K,
            EptPerm::ReadOnly,
            mt,
        )
        .unwrap();
        assert_eq!(ept_walk(&mem, ept.eptp().raw(), 0).unwrap().mem_type, bits);
        assert_eq!(MemType::from_bits(bits), Some(mt));
    }
    assert_eq!(MemType::from_bits(2), None);
}

#[test]
fn capabilities_are_checked_not_assumed() {
    let mut mem = MemFrames::new();
    let mut caps = EptCaps::all();
    caps.execute_only = false;
    let mut ept = Ept::new(&mut mem, EptConfig::recommended(caps, false)).unwrap();
    let x = ept.map(
        &mut mem,
        Gpa(0),
        Hpa(0),
        PageSize::Size4K,
        EptPerm::ExecuteOnly,
        MemType::WriteBack,
    );
    assert_eq!(x, Err(Error::ExecuteOnlyUnsupported));
    assert!(ept
        .map(
            &mut mem,
            Gpa(0),
            Hpa(0),
            PageSize::Size4K,
            EptPerm::ReadExecute,
            MemType::WriteBack
        )
        .is_ok());

    for (strip, size) in [(0, PageSize::Size2M), (1, PageSize::Size1G)] {
        let mut caps = EptCaps::all();
        if strip == 0 {
            caps.huge_2m = false
        } else {
            caps.huge_1g = false
        }
        let mut ept = Ept::new(&mut mem, EptConfig::recommended(caps, false)).unwrap();
        assert_eq!(
            ept.map(
                &mut mem,
                Gpa(0),
                Hpa(0),
                size,
                EptPerm::ReadOnly,
                MemType::WriteBack
            ),
            Err(Error::PageSizeUnsupported)
        );
    }

    // A/D is refused whatever the CPU supports (`EptConfig::validate`).
    for ad_cap in [false, true] {
        let mut caps = EptCaps::all();
        caps.accessed_dirty = ad_cap;
        let mut c = EptConfig::recommended(caps, false);
        assert!(!c.accessed_dirty, "the recommended policy has A/D off");
        c.accessed_dirty = true;
        assert_eq!(
            Ept::new(&mut mem, c).err(),
            Some(Error::AccessedDirtyRefused)
        );
    }
    assert_eq!(
        Ept::new(&mut mem, EptConfig::recommended(EptCaps::default(), false)).err(),
        Some(Error::EptUnsupported)
    );
    assert_eq!(EptCaps::from_msr(0x0f0106734141), EptCaps::all());
}

#[test]
fn overlapping_and_misaligned_requests_are_errors() {
    let mut mem = MemFrames::new();
    let mut ept = Ept::new(&mut mem, cfg()).unwrap();
    let wb = MemType::WriteBack;
    ept.map(
        &mut mem,
        Gpa(0x20_0000),
        Hpa(0x4000_0000),
        PageSize::Size2M,
        EptPerm::ReadOnly,
        wb,
    )
    .unwrap();
    ept.map(
        &mut mem,
        Gpa(0x40_1000),
        Hpa(0x1000),
        PageSize::Size4K,
        EptPerm::ReadOnly,
        wb,
    )
    .unwrap();
    // Inside a huge leaf; the same leaf again; a huge leaf over a table with a 4K leaf.
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(0x20_1000),
            Hpa(0x1000),
            PageSize::Size4K,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::Overlap)
    );
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(0x20_0000),
            Hpa(0x4000_0000),
            PageSize::Size2M,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::Overlap)
    );
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(0x40_0000),
            Hpa(0x4000_0000),
            PageSize::Size2M,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::Overlap)
    );
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(0),
            Hpa(0x4000_0000),
            PageSize::Size1G,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::Overlap)
    );
    // Misaligned GPA or HPA for the size.
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(0x1234),
            Hpa(0),
            PageSize::Size4K,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::Misaligned)
    );
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(0x60_0000),
            Hpa(0x1000),
            PageSize::Size2M,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::Misaligned)
    );
    // Beyond 2^48 GPA or 2^52 HPA.
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(1 << 48),
            Hpa(0),
            PageSize::Size4K,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::AddressTooLarge)
    );
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(0),
            Hpa(1 << 52),
            PageSize::Size4K,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::AddressTooLarge)
    );
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(!0xfff),
            Hpa(0),
            PageSize::Size4K,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::AddressTooLarge)
    );
    // Ranges.
    assert_eq!(
        ept.map_range(
            &mut mem,
            Gpa(0x80_0000),
            Hpa(0),
            0x1800,
            PageSize::Size4K,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::BadSize)
    );
    assert_eq!(
        ept.map_range(
            &mut mem,
            Gpa(0x80_0000),
            Hpa(0),
            0,
            PageSize::Size4K,
            EptPerm::ReadOnly,
            wb
        ),
        Err(Error::BadSize)
    );
    ept.map_range(
        &mut mem,
        Gpa(0x80_0000),
        Hpa(0x10_0000),
        0x3000,
        PageSize::Size4K,
        EptPerm::ReadWrite,
        wb,
    )
    .unwrap();
    assert_eq!(
        ept_walk(&mem, ept.eptp().raw(), 0x80_2008).unwrap().hpa,
        0x10_2008
    );
}

#[test]
fn holes_fill_free_space_and_leave_mappings_alone() {
    let mut mem = MemFrames::new();
    let root = mem.alloc_zeroed().unwrap();
    let apt = Apt::install(&mut mem, &cfg(), root).unwrap();
    let mut ept = Ept::with_fill(&mut mem, cfg(), apt.fill()).unwrap();
    ept.map(
        &mut mem,
        Gpa(0x4000_3000),
        Hpa(0x9000),
        PageSize::Size4K,
        EptPerm::ReadOnly,
        MemType::WriteBack,
    )
    .unwrap();
    ept.reserve_holes(&mut mem, Gpa(0x4000_0000), 0x4000_5000)
        .unwrap();
    let eptp = ept.eptp().raw();
    assert!(matches!(
        ept.lookup(&mem, Gpa(0x4000_3000)).unwrap(),
        EptLookup::Mapped {
            hpa: Hpa(0x9000),
            ..
        }
    ));
    for gpa in [
        0x4000_0000u64,
        0x4000_2000,
        0x4000_4000,
        0x5000_0000,
        0x8000_4000,
    ] {
        assert_eq!(
            ept.lookup(&mem, Gpa(gpa)).unwrap(),
            EptLookup::Hole,
            "{gpa:#x}"
        );
        assert_eq!(
            ept_walk(&mem, eptp, gpa),
            Err(EptFault::NotPresent {
                level: level_of(&mem, eptp, gpa),
                entry: EPT_HOLE
            })
        );
    }
    for gpa in [0x3fff_f000u64, 0x8000_5000, 1 << 47] {
        assert_eq!(ept.lookup(&mem, Gpa(gpa)).unwrap(), EptLookup::Apt);
        assert_eq!(ept_walk(&mem, eptp, gpa).unwrap().hpa, root.0);
    }
    // Mapping into a hole is an overlap; holes cost few tables (1 GiB holes are one entry).
    assert_eq!(
        ept.map(
            &mut mem,
            Gpa(0x5000_0000),
            Hpa(0),
            PageSize::Size4K,
            EptPerm::ReadOnly,
            MemType::WriteBack
        ),
        Err(Error::Overlap)
    );
    assert_eq!(
        ept.reserve_holes(&mut mem, Gpa(0x123), 0x1000),
        Err(Error::Misaligned)
    );
    assert_eq!(
        ept.reserve_holes(&mut mem, Gpa(1 << 48), 0x1000),
        Err(Error::AddressTooLarge)
    );
}

fn level_of(mem: &MemFrames, eptp: u64, gpa: u64) -> u8 {
    match ept_walk(mem, eptp, gpa) {
        Err(EptFault::NotPresent { level, .. }) => level,
        _ => 0,
    }
}

#[test]
fn mapping_after_the_fill_unshares_the_apt_chain() {
    let mut mem = MemFrames::new();
    let root = mem.alloc_zeroed().unwrap();
    let apt = Apt::install(&mut mem, &cfg(), root).unwrap();
    let mut ept = Ept::with_fill(&mut mem, cfg(), apt.fill()).unwrap();
    let before: Vec<_> = apt
        .chain()
        .iter()
        .map(|t| (0..512).map(|i| mem.peek(t.0, i)).collect::<Vec<_>>())
        .collect();
    ept.map(
        &mut mem,
        Gpa(0x1234_5000),
        Hpa(0x7000),
        PageSize::Size4K,
        EptPerm::ReadOnly,
        MemType::WriteBack,
    )
    .unwrap();
    let after: Vec<_> = apt
        .chain()
        .iter()
        .map(|t| (0..512).map(|i| mem.peek(t.0, i)).collect::<Vec<_>>())
        .collect();
    assert_eq!(
        before, after,
        "the shared chain is never written after it is built"
    );
    let eptp = ept.eptp().raw();
    assert_eq!(ept_walk(&mem, eptp, 0x1234_5000).unwrap().hpa, 0x7000);
    for gpa in [0x1234_4000u64, 0x1234_6000, 0x1220_0000, 0x1_0000_0000] {
        assert_eq!(
            ept_walk(&mem, eptp, gpa).unwrap().hpa,
            root.0,
            "{gpa:#x} still reaches the APT"
        );
    }
    // With A/D, accessed/dirty bits the CPU sets in fill entries do not make them "taken".
    let mut root_entry = mem.peek(ept.root().0, 300);
    root_entry |= EPT_ACCESSED;
    mem.poke(ept.root().0, 300, root_entry);
    ept.map(
        &mut mem,
        Gpa(300 << 39),
        Hpa(0x8000),
        PageSize::Size4K,
        EptPerm::ReadOnly,
        MemType::WriteBack,
    )
    .unwrap();
}

#[test]
fn out_of_frames_is_an_error() {
    for limit in 0..6 {
        let mut mem = MemFrames::new();
        mem.limit = Some(limit);
        let r = Ept::new(&mut mem, cfg()).and_then(|mut e| {
            e.map(
                &mut mem,
                Gpa(0x4000_0000),
                Hpa(0),
                PageSize::Size4K,
                EptPerm::ReadOnly,
                MemType::WriteBack,
            )
        });
        if limit < 4 {
            assert_eq!(r, Err(Error::OutOfFrames));
        } else {
            assert_eq!(r, Ok(()));
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Map(u64, u64, u8, u8, u8),
    Holes(u64, u64),
    Lookup(u64),
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly small addresses so that operations interact, sometimes anything at all.
    let addr = prop_oneof![3 => (0u64..64).prop_map(|n| n << 20), 1 => any::<u64>()];
    prop_oneof![
        4 => (addr.clone(), any::<u64>(), 0u8..3, 0u8..4, 0u8..5).prop_map(|(g, h, s, p, m)| Op::Map(g, h, s, p, m)),
        1 => (addr.clone(), prop_oneof![Just(0x1000u64), Just(0x20_0000), any::<u64>()]).prop_map(|(g, l)| Op::Holes(g, l)),
        1 => addr.prop_map(Op::Lookup),
    ]
}

#[test]
fn no_input_makes_the_ept_builder_panic() {
    property(
        "EPT builder: arbitrary operations never panic, refused ones change nothing",
        (proptest::collection::vec(op(), 1..24), any::<bool>()),
        |(ops, fill)| {
            let mut mem = MemFrames::new();
            let mut ept = if fill {
                let root = mem.alloc_zeroed().unwrap();
                let apt = Apt::install(&mut mem, &cfg(), root).unwrap();
                Ept::with_fill(&mut mem, cfg(), apt.fill()).unwrap()
            } else {
                Ept::new(&mut mem, cfg()).unwrap()
            };
            for op in ops {
                match op {
                    Op::Map(g, h, s, p, m) => {
                        let size =
                            [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G][s as usize];
                        let perm = [
                            EptPerm::ReadOnly,
                            EptPerm::ReadWrite,
                            EptPerm::ExecuteOnly,
                            EptPerm::ReadExecute,
                        ][p as usize];
                        let mt = [
                            MemType::Uncacheable,
                            MemType::WriteCombining,
                            MemType::WriteThrough,
                            MemType::WriteProtected,
                            MemType::WriteBack,
                        ][m as usize];
                        let before = ept.lookup(&mem, Gpa(g));
                        match ept.map(&mut mem, Gpa(g), Hpa(h), size, perm, mt) {
                            Ok(()) => {
                                let t = ept_walk(&mem, ept.eptp().raw(), g).unwrap();
                                prop_assert_eq!(t.hpa, h);
                                prop_assert_eq!(t.size, size.bytes());
                            }
                            Err(Error::Overlap | Error::Misaligned | Error::AddressTooLarge) => {
                                prop_assert_eq!(ept.lookup(&mem, Gpa(g)), before);
                            }
                            Err(e) => prop_assert!(false, "unexpected error {:?}", e),
                        }
                    }
                    Op::Holes(g, l) => {
                        let _ = ept.reserve_holes(&mut mem, Gpa(g), l);
                    }
                    Op::Lookup(g) => {
                        prop_assert!(ept.lookup(&mem, Gpa(g)).is_ok());
                    }
                }
            }
            // Whatever happened, the tree is well-formed: no misconfigured entry anywhere.
            for gpa in (0..64u64).map(|n| n << 20) {
                let r = ept_walk(&mem, ept.eptp().raw(), gpa);
                let misconfig = matches!(r, Err(EptFault::Misconfig { .. }));
                prop_assert!(!misconfig);
            }
            Ok(())
        },
    );
}
