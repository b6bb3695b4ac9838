// SPDX-License-Identifier: GPL-2.0
//! The views dump (`elisa_core::dump`): views built in memory, finished as the module
//! finishes them (code pages, EPTP list), serialised with the module's writer, parsed back
//! and checked with every `elisa_core::verify` check, which must pass; then corrupted dumps,
//! each of which must fail the check it breaks.

mod common;

use common::*;
use elisa_core::addr::{Gva, Hpa, PageSize};
use elisa_core::dump::{self, Dump, DumpError, HEADER_BYTES, MAPPING_BYTES};
use elisa_core::ept::EPT_HOLE;
use elisa_core::layout::{RegionAccess, RegionKind, RegionRequest};
use elisa_core::paging::{CallerPrivilege, PagingMode};
use elisa_core::verify::walk::ept_slot;
use elisa_core::verify::{self, Check, Mappings, Span, Views, Violation};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const MODES: [(PagingMode, &str); 2] = [
    (PagingMode::FourLevel, "4-level"),
    (PagingMode::FiveLevel, "5-level"),
];

/// Scenarios with at least one code region (the service entry lies in one). A scenario of
/// `MAX_REGIONS` regions without one has its first replaced: another would be one too many.
fn with_code(mode: PagingMode) -> impl Strategy<Value = Scenario> {
    scenario(mode).prop_map(|mut s| {
        if !s.regions.iter().any(|r| r.kind == RegionKind::Code) {
            if s.regions.len() >= elisa_core::layout::MAX_REGIONS {
                s.regions.remove(0);
            }
            s.regions.insert(
                0,
                RegionRequest::new(
                    RegionKind::Code,
                    RegionAccess::ExecuteOnly,
                    0x1000,
                    PageSize::Size4K,
                ),
            );
        }
        s
    })
}

fn finished(s: &Scenario) -> Result<(Built, Gva), TestCaseError> {
    let mut b = build_or_reject(s)?;
    let service = b
        .finish()
        .map_err(|e| TestCaseError::fail(format!("finish: {e:?}")))?;
    Ok((b, service))
}

/// Runs `check` over the first dump in `bytes`.
fn run(bytes: &[u8], check: Check, seed: u64) -> Result<(), Violation> {
    let (d, _) = Dump::parse(bytes).expect("a dump");
    let views = Views {
        header: d.header(),
        mappings: &d,
    };
    let mut scratch = vec![Span::default(); verify::scratch_len(&views, d.frame_count())];
    verify::check(check, &views, &d, &mut scratch, seed)
}

/// Every check over the first dump in `bytes`: the failures.
fn failures(bytes: &[u8], seed: u64) -> Vec<(Check, Violation)> {
    Check::ALL
        .iter()
        .filter_map(|&c| run(bytes, c, seed).err().map(|v| (c, v)))
        .collect()
}

/// Byte offset of the contents of frame `hpa` in the first dump of `bytes`.
fn frame_at(bytes: &[u8], hpa: u64) -> usize {
    let (d, _) = Dump::parse(bytes).unwrap();
    let i = (0..d.frame_count())
        .find(|&i| d.frame_hpa(i) == Some(Hpa(hpa)))
        .expect("frame in the dump");
    HEADER_BYTES + d.count() * MAPPING_BYTES + i * dump::FRAME_BYTES + 8
}

fn qword(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn set_qword(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offset of the EPT entry that decides `gpa` in the view of `eptp`.
fn ept_entry_at(bytes: &[u8], eptp: u64, gpa: u64) -> usize {
    let (d, _) = Dump::parse(bytes).unwrap();
    let slot = ept_slot(&d, eptp, gpa).expect("a slot");
    frame_at(bytes, slot.table.0) + slot.index * 8
}

/// Offsets of the qwords of the frames of the dump for which `pick` holds.
fn find_qwords(bytes: &[u8], pick: impl Fn(u64) -> bool) -> Vec<usize> {
    let (d, _) = Dump::parse(bytes).unwrap();
    let frames = HEADER_BYTES + d.count() * MAPPING_BYTES;
    (0..d.frame_count())
        .flat_map(|i| {
            let base = frames + i * dump::FRAME_BYTES + 8;
            (0..512).map(move |j| base + j * 8)
        })
        .filter(|&at| pick(qword(bytes, at)))
        .collect()
}

#[test]
fn dumps_of_built_views_pass_every_check() {
    for (mode, name) in MODES {
        property(
            &format!("dump: built views pass every check ({name})"),
            (with_code(mode), any::<u64>()),
            |(s, seed)| {
                let (b, service) = finished(&s)?;
                let bytes = b.dump(service);
                // Two gates' dumps back to back parse as two.
                let mut two = bytes.clone();
                two.extend_from_slice(&bytes);
                let (d, rest) =
                    Dump::parse(&two).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(rest.len(), bytes.len());
                prop_assert!(Dump::parse(rest).is_ok_and(|(_, r)| r.is_empty()));
                let mut header = b.header();
                header.service_entry = service;
                prop_assert_eq!(d.header(), &header);
                let mappings = b.mappings();
                prop_assert_eq!(d.count(), mappings.len());
                for (i, m) in mappings.iter().enumerate() {
                    prop_assert_eq!(d.get(i), Some(*m));
                }
                prop_assert_eq!(d.frame_count(), b.mem.allocated.len());
                let failed = failures(&bytes, seed);
                prop_assert!(failed.is_empty(), "{:?}", failed);
                Ok(())
            },
        );
    }
}

/// One corruption of a dump, and the check it must fail.
struct Corruption {
    name: &'static str,
    check: Check,
    apply: fn(&Built, &mut Vec<u8>),
}

const CORRUPTIONS: &[Corruption] = &[
    Corruption {
        name: "gate code page writable (one byte)",
        check: Check::WriteXorExecute,
        apply: |b, bytes| {
            let at = ept_entry_at(bytes, b.gate.eptp().raw(), b.layout.gate_code_gpa().0);
            assert_eq!(qword(bytes, at) & 7, 4);
            bytes[at] |= 3;
        },
    },
    Corruption {
        name: "gate code page readable",
        check: Check::GateExecute,
        apply: |b, bytes| {
            let at = ept_entry_at(bytes, b.gate.eptp().raw(), b.layout.gate_code_gpa().0);
            bytes[at] |= 1;
        },
    },
    Corruption {
        name: "a region leaf points outside the expected frames",
        check: Check::SubExact,
        apply: |b, bytes| {
            let r = b.layout.region(0).unwrap().placement;
            let at = ept_entry_at(bytes, b.sub.eptp().raw(), r.gpa.0);
            let e = qword(bytes, at);
            set_qword(bytes, at, e ^ (r.page_size.bytes() << 8));
        },
    },
    Corruption {
        name: "a hole of the gate view becomes a leaf",
        check: Check::GateExact,
        apply: |b, bytes| {
            let gpa = b.layout.sub_code_gpa().0;
            let at = ept_entry_at(bytes, b.gate.eptp().raw(), gpa);
            assert_eq!(qword(bytes, at), EPT_HOLE);
            let stack = ept_entry_at(bytes, b.gate.eptp().raw(), b.layout.gate_stack().gpa.0);
            // The gate stack's frame, read-only: a second mapping of a view frame.
            let leaf = (qword(bytes, stack) & !7) | 1;
            set_qword(bytes, at, leaf);
        },
    },
    Corruption {
        name: "a zero EPT entry",
        check: Check::Apt,
        apply: |_, bytes| {
            let at = find_qwords(bytes, |q| q == EPT_HOLE)[0];
            set_qword(bytes, at, 0);
        },
    },
    Corruption {
        name: "the APT chain leads half the CR3 values to another table",
        check: Check::AnyCr3,
        apply: |b, bytes| {
            let chain = b.gate.apt().chain()[0].0;
            let stack = ept_entry_at(bytes, b.gate.eptp().raw(), b.layout.gate_stack().gpa.0);
            let stack_frame = qword(bytes, stack) & 0x000f_ffff_ffff_f000;
            let base = frame_at(bytes, chain);
            for i in (1..512).step_by(2) {
                let e = qword(bytes, base + i * 8);
                set_qword(
                    bytes,
                    base + i * 8,
                    (e & !0x000f_ffff_ffff_f000) | stack_frame,
                );
            }
        },
    },
    Corruption {
        name: "the gate stack reads as a table that reaches the gate code",
        check: Check::CollidingCr3,
        apply: |b, bytes| {
            // The stack is EPT-writable, so readable as a table even with EPT A/D.
            let gpa = b.layout.gate_stack().gpa.0;
            let leaf = ept_entry_at(bytes, b.gate.eptp().raw(), gpa);
            let stack = frame_at(bytes, qword(bytes, leaf) & 0x000f_ffff_ffff_f000);
            set_qword(bytes, stack, gpa | 7);
            set_qword(bytes, stack + 8, b.layout.gate_code_gpa().0 | 5);
        },
    },
    Corruption {
        name: "the guest code leaf writable",
        check: Check::WriteXorExecute,
        apply: |b, bytes| {
            let code = b.layout.gate_code_gpa().0;
            let at = find_qwords(bytes, |q| q & 1 != 0 && q & 0x000f_ffff_ffff_f000 == code);
            assert_eq!(at.len(), 1);
            bytes[at[0]] |= 2;
        },
    },
    Corruption {
        name: "the guest code leaf's U bit flipped",
        check: Check::GateExact,
        apply: |b, bytes| {
            let code = b.layout.gate_code_gpa().0;
            let at = find_qwords(bytes, |q| q & 1 != 0 && q & 0x000f_ffff_ffff_f000 == code);
            assert_eq!(at.len(), 1);
            bytes[at[0]] ^= 4;
        },
    },
    Corruption {
        name: "a stray EPTP-list entry",
        check: Check::EptpList,
        apply: |b, bytes| {
            let list = frame_at(bytes, b.entry.eptp_list.0);
            set_qword(bytes, list + 7 * 8, b.gate.eptp().raw());
        },
    },
    Corruption {
        name: "the gate data page names another sub view",
        check: Check::Pages,
        apply: |b, bytes| {
            let data = frame_at(bytes, b.entry.gate_data.0);
            bytes[data + 1] ^= 0x10;
        },
    },
    Corruption {
        name: "the gate EPTP asks for a 5-level walk",
        check: Check::Eptps,
        apply: |_, bytes| {
            // in the header's roots and among the vCPU's gates alike
            let e = qword(bytes, 72);
            set_qword(bytes, 72, (e & !0x38) | (4 << 3));
            set_qword(bytes, 160, (e & !0x38) | (4 << 3));
        },
    },
];

#[test]
fn corrupted_dumps_fail_their_check() {
    for (mode, name) in MODES {
        property(
            &format!(
                "dump: each of {} corruptions fails its check ({name})",
                CORRUPTIONS.len()
            ),
            (with_code(mode), any::<u64>()),
            |(s, seed)| {
                let (b, service) = finished(&s)?;
                let clean = b.dump(service);
                for c in CORRUPTIONS {
                    let mut bytes = clean.clone();
                    (c.apply)(&b, &mut bytes);
                    prop_assert!(
                        run(&bytes, c.check, seed).is_err(),
                        "{}: {} passed",
                        c.name,
                        c.check.name()
                    );
                }
                Ok(())
            },
        );
    }
}

/// A 4-level scenario of one service with one 4 KiB code page and no region.
fn code_only(privilege: CallerPrivilege, mbec: bool) -> Scenario {
    Scenario {
        paging: PagingMode::FourLevel,
        privilege,
        phys_bits: 40,
        guest_gpa_end: 1 << 30,
        entry_gva: 0x5000_0000_0000,
        sub_stack_pages: 16,
        regions: vec![RegionRequest::new(
            RegionKind::Code,
            RegionAccess::ExecuteOnly,
            0x1000,
            PageSize::Size4K,
        )],
        accessed_dirty: false,
        mbec,
    }
}

#[test]
fn other_gates_in_the_eptp_list() {
    let s = code_only(CallerPrivilege::User, true);
    let (b, service) = finished(&s).unwrap();
    let mut bytes = b.dump(service);
    let list = frame_at(&bytes, b.entry.eptp_list.0);
    let other = 0x5e | 0x0000_0077_7000_0000u64;
    let other_sub = 0x5e | 0x0000_0077_7100_0000u64;
    // One gate of a vCPU: another EPTP at 510 is out of place.
    set_qword(&mut bytes, list + 510 * 8, other);
    assert!(run(&bytes, Check::EptpList, 0).is_err());
    // Gates down to 504, and the vCPU's gate at 510 in the header: its EPTP at 510, and its
    // sub view at 1 (its hop), are fine.
    bytes[10..12].copy_from_slice(&504u16.to_le_bytes());
    set_qword(&mut bytes, 160 + 16, other);
    set_qword(&mut bytes, 160 + 24, other_sub);
    set_qword(&mut bytes, list + 8, other_sub);
    assert_eq!(run(&bytes, Check::EptpList, 0), Ok(()));
    assert!(failures(&bytes, 3).is_empty());
    // ... but not another valid EPTP at 510 or at 1 (a guest's forgery, R19), nor one at 0
    // other than KVM's root, nor this gate's EPTP at another gate index, nor anything at
    // 509 (no gate there) or below 504.
    let forged = 0x1e | 0x0000_0012_3400_0000u64;
    let gate = b.gate.eptp().raw();
    for (index, e) in [
        (510, forged),
        (1, forged),
        (1, other),
        (0, forged),
        (509, gate),
        (509, other),
        (503, other),
    ] {
        let mut bad = bytes.clone();
        set_qword(&mut bad, list + index * 8, e);
        assert!(
            run(&bad, Check::EptpList, 0).is_err(),
            "{e:#x} at {index} passed"
        );
    }
    // A header whose vCPU gates leave out the dump's own gate, or put one below the lowest
    // gate index, is refused.
    let mut bad = bytes.clone();
    set_qword(&mut bad, 160, 0);
    assert!(Dump::parse(&bad).is_err());
    let mut bad = bytes.clone();
    bad[10..12].copy_from_slice(&510u16.to_le_bytes());
    set_qword(&mut bad, 160 + 16 * 2, other);
    assert!(Dump::parse(&bad).is_err());
}

#[test]
fn malformed_dumps_are_refused() {
    let s = Scenario {
        paging: PagingMode::FourLevel,
        privilege: CallerPrivilege::Supervisor,
        phys_bits: 40,
        guest_gpa_end: 1 << 30,
        entry_gva: 0x5000_0000_0000,
        sub_stack_pages: 16,
        regions: vec![
            RegionRequest::new(
                RegionKind::Code,
                RegionAccess::ExecuteOnly,
                0x1000,
                PageSize::Size4K,
            ),
            RegionRequest::new(
                RegionKind::Shared,
                RegionAccess::ReadWrite,
                0x3000,
                PageSize::Size4K,
            ),
        ],
        accessed_dirty: false,
        mbec: false,
    };
    let (b, service) = finished(&s).unwrap();
    let clean = b.dump(service);
    assert!(failures(&clean, 7).is_empty());
    let (d, _) = Dump::parse(&clean).unwrap();
    let frames = HEADER_BYTES + d.count() * MAPPING_BYTES;
    type Corrupt = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Corrupt, DumpError)> = vec![
        (
            "truncated",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 1)),
            DumpError::Truncated,
        ),
        (
            "magic",
            Box::new(|b: &mut Vec<u8>| b[0] ^= 1),
            DumpError::BadMagic,
        ),
        (
            "version",
            Box::new(|b: &mut Vec<u8>| b[4] = 3),
            DumpError::BadVersion(3),
        ),
        (
            "reserved header byte",
            Box::new(|b: &mut Vec<u8>| b[300] = 1),
            DumpError::BadHeader("reserved bytes not zero"),
        ),
        (
            "RWX mapping",
            Box::new(|b: &mut Vec<u8>| b[HEADER_BYTES + 3] = 7),
            DumpError::BadMapping(0, "EPT permissions not R, RW, X or RX"),
        ),
        (
            "frames out of order",
            Box::new(move |b: &mut Vec<u8>| {
                let second = frames + dump::FRAME_BYTES;
                let first = qword(b, frames);
                set_qword(b, second, first);
            }),
            DumpError::BadFrame(1),
        ),
    ];
    for (name, corrupt, want) in cases {
        let mut bytes = clean.clone();
        corrupt(&mut bytes);
        assert_eq!(Dump::parse(&bytes).err(), Some(want), "{name}");
    }
    println!("malformed dumps: 6 refused");
}

/// Views with EPT A/D fail `Check::Eptps` whatever else holds (`EptConfig::validate`
/// refuses A/D for the views): the header's A/D flag alone makes them fail.
#[test]
fn views_with_accessed_dirty_fail() {
    let s = code_only(CallerPrivilege::Supervisor, false);
    let (b, service) = finished(&s).unwrap();
    let clean = b.dump(service);
    assert!(run(&clean, Check::Eptps, 0).is_ok());
    let mut flagged = clean.clone();
    flagged[27] |= 1;
    let v = run(&flagged, Check::Eptps, 0).unwrap_err();
    assert!(v.what.contains("EPT A/D"), "{v:?}");
}
