// SPDX-License-Identifier: GPL-2.0
//! The guest page-table builder on its own, 4-level and 5-level, against a direct walker.

mod common;

use common::*;
use elisa_core::addr::{Gpa, Gva, PageSize};
use elisa_core::frame::Frames;
use elisa_core::paging::*;
use elisa_core::Error;
use proptest::prelude::*;

/// Walks `gva` with tables at GPA = HPA: `(gpa, size, W, NX, G)` or `None`.
fn walk(mem: &MemFrames, levels: u8, root: u64, gva: u64) -> Option<(u64, u64, bool, bool, bool)> {
    let mut table = root;
    let (mut w, mut nx) = (true, false);
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (u32::from(level) - 1);
        let e = mem.peek(table, ((gva >> shift) & 511) as usize);
        if e & 1 == 0 {
            return None;
        }
        w &= e & 2 != 0;
        nx |= e >> 63 != 0;
        if level == 1 || e & 0x80 != 0 {
            assert!(level <= 3, "PS at level {level}");
            let size = 1u64 << shift;
            return Some((
                (e & 0x000f_ffff_ffff_f000 & !(size - 1)) | (gva & (size - 1)),
                size,
                w,
                nx,
                e & 0x100 != 0,
            ));
        }
        table = e & 0x000f_ffff_ffff_f000;
    }
    None
}

fn perm_bits(p: GuestPerm) -> (bool, bool) {
    match p {
        GuestPerm::Read => (false, true),
        GuestPerm::ReadWrite => (true, true),
        GuestPerm::Execute => (false, false),
    }
}

#[test]
fn five_level_tables_use_the_pml5_index() {
    let mut space = IdentityTables(MemFrames::new());
    let root = space.0.alloc_zeroed().unwrap();
    let pt = GuestPageTable::new(PagingMode::FiveLevel, root);
    let gva = 0x00ab_cdef_1234_5000u64;
    pt.map(
        &mut space,
        Gva(gva),
        Gpa(0x7000),
        PageSize::Size4K,
        GuestPerm::Read,
    )
    .unwrap();
    assert_ne!(space.0.peek(root.0, ((gva >> 48) & 511) as usize), 0);
    assert_eq!(
        walk(&space.0, 5, root.0, gva + 0x10),
        Some((0x7010, 0x1000, false, true, false))
    );
    // The same address is not canonical under 4-level paging.
    let pt4 = GuestPageTable::new(PagingMode::FourLevel, space.0.alloc_zeroed().unwrap());
    assert_eq!(
        pt4.map(
            &mut space,
            Gva(gva),
            Gpa(0x7000),
            PageSize::Size4K,
            GuestPerm::Read
        ),
        Err(Error::NonCanonical)
    );
    assert!(PagingMode::FiveLevel.is_canonical(Gva(0xff00_0000_0000_0000)));
    assert!(!PagingMode::FourLevel.is_canonical(Gva(0xff00_0000_0000_0000)));
    assert!(PagingMode::FourLevel.is_canonical(Gva(0xffff_8000_0000_0000)));
    assert!(
        !PagingMode::FourLevel.is_canonical_range(Gva(0x7fff_ffff_f000), 0x2000),
        "crosses the hole"
    );
}

#[test]
fn refused_requests() {
    let mut space = IdentityTables(MemFrames::new());
    let root = space.0.alloc_zeroed().unwrap();
    let pt = GuestPageTable::new(PagingMode::FourLevel, root);
    pt.map(
        &mut space,
        Gva(0x4000_0000),
        Gpa(0x20_0000),
        PageSize::Size2M,
        GuestPerm::ReadWrite,
    )
    .unwrap();
    assert_eq!(
        pt.map(
            &mut space,
            Gva(0x4000_1000),
            Gpa(0),
            PageSize::Size4K,
            GuestPerm::Read
        ),
        Err(Error::Overlap)
    );
    assert_eq!(
        pt.map(
            &mut space,
            Gva(0x4000_0000),
            Gpa(0),
            PageSize::Size1G,
            GuestPerm::Read
        ),
        Err(Error::Overlap)
    );
    assert_eq!(
        pt.map(
            &mut space,
            Gva(0x1000),
            Gpa(0x123),
            PageSize::Size4K,
            GuestPerm::Read
        ),
        Err(Error::Misaligned)
    );
    assert_eq!(
        pt.map(
            &mut space,
            Gva(0x20_1000),
            Gpa(0x20_0000),
            PageSize::Size2M,
            GuestPerm::Read
        ),
        Err(Error::Misaligned)
    );
    assert_eq!(
        pt.map(
            &mut space,
            Gva(0x1000),
            Gpa(1 << 52),
            PageSize::Size4K,
            GuestPerm::Read
        ),
        Err(Error::AddressTooLarge)
    );
    assert_eq!(
        pt.map_range(
            &mut space,
            Gva(0x1000),
            Gpa(0),
            0x1001,
            PageSize::Size4K,
            GuestPerm::Read
        ),
        Err(Error::BadSize)
    );
    // Huge leaves carry PS, and writable leaves are pre-marked accessed and dirty.
    let e = walk(&space.0, 4, root.0, 0x4000_0000).unwrap();
    assert_eq!(e, (0x20_0000, 0x20_0000, true, true, false));
    assert_eq!(
        pt.translate(&space, Gva(0x4000_0010))
            .unwrap()
            .map(|t| t.gpa),
        Some(Gpa(0x20_0010))
    );
    let pde = pt
        .translate(&space, Gva(0x4000_0000))
        .unwrap()
        .unwrap()
        .entry;
    assert_eq!(
        pde & (PTE_LARGE | PTE_ACCESSED | PTE_DIRTY | PTE_GLOBAL),
        PTE_LARGE | PTE_ACCESSED | PTE_DIRTY
    );
}

#[derive(Debug, Clone)]
struct Req {
    gva_slot: u64,
    gpa_slot: u64,
    size: PageSize,
    perm: GuestPerm,
}

fn req(levels: u8) -> impl Strategy<Value = Req> {
    let va = if levels == 5 { 56 } else { 47 };
    (
        0u64..(1 << (va - 30)),
        0u64..(1 << 20),
        prop_oneof![4 => Just(PageSize::Size4K), 2 => Just(PageSize::Size2M), 1 => Just(PageSize::Size1G)],
        prop_oneof![Just(GuestPerm::Read), Just(GuestPerm::ReadWrite), Just(GuestPerm::Execute)],
        any::<bool>(),
        0u64..512,
    )
        .prop_map(move |(g, p, size, perm, upper, sub)| {
            // Cluster addresses so that tables are shared and overlaps happen.
            let off = (sub * size.bytes()) & ((1 << 30) - 1);
            let mut gva = ((g % 8) << 30) + off;
            if upper {
                gva = canonical(gva | (1 << va), levels);
            }
            Req { gva_slot: gva, gpa_slot: (p << 30) | off, size, perm }
        })
}

#[test]
fn random_tables_walk_as_built() {
    for (mode, name) in [
        (PagingMode::FourLevel, "4-level"),
        (PagingMode::FiveLevel, "5-level"),
    ] {
        property(
            &format!("guest tables: random mappings walk as built ({name})"),
            proptest::collection::vec(req(mode.levels()), 1..32),
            |reqs| {
                let mut space = IdentityTables(MemFrames::new());
                let root = space.0.alloc_zeroed().unwrap();
                let pt = GuestPageTable::new(mode, root);
                let mut done: Vec<Req> = Vec::new();
                for r in reqs {
                    let overlaps = done.iter().any(|d| {
                        r.gva_slot < d.gva_slot + d.size.bytes()
                            && d.gva_slot < r.gva_slot + r.size.bytes()
                    });
                    match pt.map(&mut space, Gva(r.gva_slot), Gpa(r.gpa_slot), r.size, r.perm) {
                        Ok(()) => {
                            prop_assert!(!overlaps);
                            done.push(r);
                        }
                        Err(Error::Overlap) => {
                            prop_assert!(overlaps, "overlap reported for disjoint ranges")
                        }
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                for d in &done {
                    let probe = d.gva_slot + d.size.bytes() - 8;
                    let (w, nx) = perm_bits(d.perm);
                    let got = walk(&space.0, mode.levels(), root.0, probe);
                    prop_assert_eq!(
                        got,
                        Some((
                            d.gpa_slot + d.size.bytes() - 8,
                            d.size.bytes(),
                            w,
                            nx,
                            false
                        ))
                    );
                }
                Ok(())
            },
        );
    }
}

/// The leaves' U bit follows the table's caller privilege (supervisor by default), and
/// every non-leaf entry is U=1, so that the leaf decides.
#[test]
fn leaves_follow_the_caller_privilege() {
    for (privilege, user) in [
        (None, false),
        (Some(CallerPrivilege::Supervisor), false),
        (Some(CallerPrivilege::User), true),
    ] {
        let mut space = IdentityTables(MemFrames::new());
        let root = space.0.alloc_zeroed().unwrap();
        let mut pt = GuestPageTable::new(PagingMode::FourLevel, root);
        if let Some(p) = privilege {
            pt = pt.with_privilege(p);
        }
        let gva = 0x5000_0000_1000u64;
        for (i, perm) in [GuestPerm::Read, GuestPerm::ReadWrite, GuestPerm::Execute]
            .into_iter()
            .enumerate()
        {
            let va = gva + 0x1000 * i as u64;
            pt.map(&mut space, Gva(va), Gpa(0x7000), PageSize::Size4K, perm)
                .unwrap();
            let mut table = root.0;
            for level in (1..=4u32).rev() {
                let e = space
                    .0
                    .peek(table, ((va >> (12 + 9 * (level - 1))) & 511) as usize);
                if level == 1 {
                    assert_eq!(e & 4 != 0, user, "{privilege:?} {perm:?} leaf {e:#x}");
                } else {
                    assert_ne!(e & 4, 0, "non-leaf entry at level {level}: {e:#x}");
                    table = e & 0x000f_ffff_ffff_f000;
                }
            }
        }
    }
}

/// Gates stay closed while the guest runs with a CR4 bit nobody analysed for the views:
/// FRED (bit 32) delivers events to handlers and stacks the guest names in MSRs, with no
/// IDT read for SMAP to fault; LASS (27), PKS (24) and LAM_SUP (28) change which accesses
/// fault or where they go. A Linux guest's CR4 of today opens them (Linux 7.3 sets LASS
/// where KVM offers it, which 7.3's KVM does not yet).
#[test]
fn gates_stay_closed_under_unanalysed_cr4_bits() {
    use elisa_core::paging::{cr4_analysed, CR4_ANALYSED, CR4_PKE, CR4_SMAP};
    const FRED: u64 = 1 << 32;
    const LASS: u64 = 1 << 27;
    const PKS: u64 = 1 << 24;
    const LAM_SUP: u64 = 1 << 28;
    const VMXE: u64 = 1 << 13;
    const SMXE: u64 = 1 << 14;
    const KEYLOCKER: u64 = 1 << 19;
    // PAE, MCE, PGE, OSFXSR, OSXMMEXCPT, UMIP, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, PKE.
    // As GUEST_CR4 holds it: with VMXE, which VMX keeps set in non-root operation.
    let linux = 0x0037_0ee0 | CR4_SMAP | CR4_PKE | VMXE;
    assert!(cr4_analysed(linux));
    assert!(cr4_analysed(0));
    assert!(cr4_analysed(CR4_ANALYSED));
    for bit in [FRED, LASS, PKS, LAM_SUP, SMXE, KEYLOCKER, 1 << 15, 1 << 63] {
        assert!(!cr4_analysed(linux | bit), "bit {bit:#x}");
        assert!(!cr4_analysed(bit), "bit {bit:#x}");
    }
    // Every bit outside the mask closes them, one at a time.
    for b in 0..64 {
        let bit = 1u64 << b;
        assert_eq!(cr4_analysed(bit), CR4_ANALYSED & bit != 0, "bit {b}");
    }
}

/// Gates stay closed while the guest records or steps on branches (LBR, BTF), stores a
/// branch trace (BTS and its companions) or sets any `DEBUGCTL` bit nobody analysed; a
/// Linux guest's bus-lock detection and the PMI freeze bits, and the host's
/// `FREEZE_IN_SMM`, leave them open.
#[test]
fn gates_stay_closed_under_unanalysed_debugctl_bits() {
    use elisa_core::paging::{debugctl_analysed, DEBUGCTL_ANALYSED};
    const LBR: u64 = 1 << 0;
    const BTF: u64 = 1 << 1;
    const BUS_LOCK_DETECT: u64 = 1 << 2;
    const BTS: u64 = 1 << 7;
    const FREEZE_IN_SMM: u64 = 1 << 14;
    const RTM_DEBUG: u64 = 1 << 15;
    assert!(debugctl_analysed(0));
    assert!(debugctl_analysed(
        BUS_LOCK_DETECT | FREEZE_IN_SMM | RTM_DEBUG
    ));
    for bit in [
        LBR,
        BTF,
        BTS,
        1 << 6,
        1 << 8,
        1 << 9,
        1 << 10,
        1 << 3,
        1 << 16,
        1 << 63,
    ] {
        assert!(!debugctl_analysed(bit), "bit {bit:#x}");
        assert!(!debugctl_analysed(BUS_LOCK_DETECT | bit), "bit {bit:#x}");
    }
    for b in 0..64 {
        let bit = 1u64 << b;
        assert_eq!(
            debugctl_analysed(bit),
            DEBUGCTL_ANALYSED & bit != 0,
            "bit {b}"
        );
    }
}

/// User gates open only under the guest's SMAP: at CPL 3 the guest can make a service
/// fault with no exit in too many ways (PKRU, a user shadow stack, CR4.TSD and CR4.PCE,
/// which are guest-owned, CR4.UMIP), and SMAP is what makes the delivery itself fault.
#[test]
fn user_gates_need_smap_where_the_guest_can_fault_them() {
    use elisa_core::paging::{CR4_PCIDE, CR4_PKE, CR4_SMAP};
    const TSD: u64 = 1 << 2;
    const PCE: u64 = 1 << 8;
    const UMIP: u64 = 1 << 11;
    const CET: u64 = 1 << 23;
    let user = CallerPrivilege::User;
    let sup = CallerPrivilege::Supervisor;
    for extra in [
        0,
        CR4_PKE,
        TSD,
        PCE,
        UMIP,
        CET,
        CR4_PKE | TSD | PCE | UMIP | CET,
    ] {
        assert!(!user.gates_may_open(extra), "cr4 {extra:#x}");
        assert!(user.gates_may_open(extra | CR4_SMAP), "cr4 {extra:#x}");
        assert!(sup.gates_may_open(extra), "cr4 {extra:#x}");
        assert!(sup.gates_may_open(extra | CR4_SMAP), "cr4 {extra:#x}");
        // With PCIDs a CR3 load can keep the gate view's translations: user gates stay
        // closed (supervisor gates check CR3 themselves).
        assert!(
            !user.gates_may_open(extra | CR4_SMAP | CR4_PCIDE),
            "cr4 {extra:#x}"
        );
        assert!(
            sup.gates_may_open(extra | CR4_SMAP | CR4_PCIDE),
            "cr4 {extra:#x}"
        );
    }
}
