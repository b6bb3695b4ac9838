// SPDX-License-Identifier: GPL-2.0
//! The gate decision of a VM entry (`elisa_core::entry`): each closing rule alone, and a
//! property over random guest states that states what an open gate implies.

mod common;

use common::property;
use elisa_core::entry::*;
use elisa_core::paging::{CR4_ANALYSED, CR4_PCIDE, CR4_SMAP, DEBUGCTL_ANALYSED};
use proptest::prelude::*;

/// A 64-bit guest with SMAP, debug-register accesses exiting, nothing armed: every gate
/// may open.
const OPEN: EntryState = EntryState {
    cr4: CR4_SMAP | 0x20 | 0x80, // SMAP, PAE, PGE
    debugctl: 0,
    cpu_based: CPU_BASED_MOV_DR_EXITING,
    dr7: 0x400,
    secondary: 0,
    efer: EFER_LMA | (1 << 8),
    pebs_enable: 0,
};

/// Gates 0-3 granted; 1 lacks ENDBR64; 2 and 3 are user grants.
const GATES: Gates = Gates {
    granted: 0b1111,
    no_endbr: 0b0010,
    user: 0b1100,
};

/// A named change of the open state.
type Change = (&'static str, fn(&mut EntryState));

fn open(s: EntryState, cet: bool) -> u8 {
    decide(&s, GATES, 0, || cet).open
}

#[test]
fn every_gate_opens_for_the_plain_64_bit_guest() {
    let d = decide(&OPEN, GATES, 0, || false);
    assert_eq!((d.open, d.notes), (0b1111, 0));
    // Notes of an earlier entry go once their reason has.
    let d = decide(&OPEN, GATES, NOTE_USER_CLOSED | NOTE_DESC_CLOSED, || false);
    assert_eq!((d.open, d.notes), (0b1111, 0));
}

#[test]
fn each_mode_rule_alone_closes_every_gate() {
    let cases: [Change; 8] = [
        ("LA57", |s| s.cr4 |= CR4_LA57),
        ("a CR4 bit nobody analysed (FRED)", |s| s.cr4 |= 1 << 32),
        ("a CR4 bit nobody analysed (LASS)", |s| s.cr4 |= 1 << 27),
        ("DEBUGCTL.LBR", |s| s.debugctl |= 1),
        ("DR7 armed", |s| s.dr7 |= 1 << 6),
        ("debug registers without exits", |s| {
            s.cpu_based &= !CPU_BASED_MOV_DR_EXITING
        }),
        ("PEBS on", |s| s.pebs_enable = 1),
        ("not in IA-32e mode", |s| s.efer &= !EFER_LMA),
    ];
    let prev = NOTE_USER_CLOSED | NOTE_DESC_CLOSED;
    for (what, change) in cases {
        let mut s = OPEN;
        change(&mut s);
        let mut asked = false;
        let d = decide(&s, GATES, prev, || {
            asked = true;
            false
        });
        assert_eq!(d.open, 0, "{what}: gates {:#b} open", d.open);
        assert!(
            !asked,
            "{what}: the CET question was asked though every gate is closed"
        );
        // The other reasons were not looked at: their notes stay as they were.
        assert_eq!(d.notes & prev, prev, "{what}");
        assert_eq!(decide(&s, GATES, 0, || false).notes & prev, 0, "{what}");
    }
}

#[test]
fn the_analysed_bits_alone_keep_the_gates_open() {
    // Every DEBUGCTL bit the analysis allows, and every CR4 bit it allows but LA57 (and
    // PCIDE, which only user gates care about).
    let mut s = OPEN;
    s.debugctl = DEBUGCTL_ANALYSED;
    s.cr4 = CR4_ANALYSED & !CR4_LA57 & !CR4_PCIDE;
    assert_eq!(open(s, false), 0b1111);
}

#[test]
fn cet_closes_exactly_the_gates_without_endbr64() {
    assert_eq!(open(OPEN, true), 0b1101);
    assert_eq!(open(OPEN, false), 0b1111);
}

#[test]
fn user_gates_need_smap_and_no_pcids() {
    let mut s = OPEN;
    s.cr4 &= !CR4_SMAP;
    let d = decide(&s, GATES, 0, || false);
    assert_eq!((d.open, d.notes), (0b0011, NOTE_USER_CLOSED));
    let mut s = OPEN;
    s.cr4 |= CR4_PCIDE;
    let d = decide(&s, GATES, 0, || false);
    assert_eq!((d.open, d.notes), (0b0011, NOTE_USER_CLOSED));
    // No user gate that would open: nothing is closed for it (an old note goes).
    let d = decide(&s, Gates { user: 0, ..GATES }, NOTE_USER_CLOSED, || false);
    assert_eq!((d.open, d.notes), (0b1111, 0));
}

#[test]
fn descriptor_table_exiting_closes_supervisor_gates_only() {
    let mut s = OPEN;
    s.secondary |= SECONDARY_EXEC_DESC;
    let d = decide(&s, GATES, 0, || false);
    assert_eq!((d.open, d.notes), (0b1100, NOTE_DESC_CLOSED));
    // Only user gates granted: none closed for it, and the exiting is still on: the note
    // stays as it was.
    let users = Gates {
        user: 0b1111,
        ..GATES
    };
    let d = decide(&s, users, NOTE_DESC_CLOSED, || false);
    assert_eq!((d.open, d.notes), (0b1111, NOTE_DESC_CLOSED));
    assert_eq!(decide(&s, users, 0, || false).notes, 0);
}

#[test]
fn an_unknown_cr4_bit_is_noted() {
    let mut s = OPEN;
    s.cr4 |= 1 << 24; // PKS
    assert_eq!(decide(&s, GATES, 0, || false).notes, NOTE_CR4_UNKNOWN);
    assert_eq!(decide(&OPEN, GATES, NOTE_CR4_UNKNOWN, || false).notes, 0);
}

fn entry_state() -> impl Strategy<Value = EntryState> {
    // Each field mostly from the open state with a few random bits flipped, sometimes
    // wholly random: both the rules' edges and any value are reached.
    let field = |base: u64| {
        prop_oneof![
            10 => Just(base),
            2 => (0u32..64).prop_map(move |b| base ^ (1 << b)),
            1 => any::<u64>(),
        ]
    };
    (
        field(OPEN.cr4),
        field(OPEN.debugctl),
        field(OPEN.cpu_based),
        field(OPEN.dr7),
        field(OPEN.secondary),
        field(OPEN.efer),
        field(OPEN.pebs_enable),
    )
        .prop_map(
            |(cr4, debugctl, cpu_based, dr7, secondary, efer, pebs_enable)| EntryState {
                cr4,
                debugctl,
                cpu_based,
                dr7,
                secondary,
                efer,
                pebs_enable,
            },
        )
}

#[test]
fn an_open_gate_implies_every_rule() {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let opened = AtomicUsize::new(0);
    property(
        "entry: an open gate implies every rule",
        (entry_state(), any::<(u8, u8, u8)>(), any::<bool>(), 0u8..8),
        |(s, (granted, no_endbr, user), cet, prev)| {
            let g = Gates {
                granted,
                no_endbr,
                user,
            };
            let d = decide(&s, g, prev, || cet);
            prop_assert_eq!(
                d.notes & NOTE_CR4_UNKNOWN != 0,
                s.cr4 & !CR4_ANALYSED != 0,
                "the CR4 note"
            );
            prop_assert_eq!(d.open & !granted, 0, "a gate that was never granted");
            if d.open != 0 {
                opened.fetch_add(1, Relaxed);
                prop_assert!(s.efer & EFER_LMA != 0 && s.cr4 & CR4_LA57 == 0);
                prop_assert!(s.cr4 & !CR4_ANALYSED == 0);
                prop_assert!(s.debugctl & !DEBUGCTL_ANALYSED == 0);
                prop_assert!(s.cpu_based & CPU_BASED_MOV_DR_EXITING != 0);
                prop_assert!(s.dr7 & DR7_ENABLES == 0 && s.pebs_enable == 0);
            }
            if cet {
                prop_assert_eq!(d.open & no_endbr, 0, "CET with a gate lacking ENDBR64");
            }
            if d.open & user != 0 {
                prop_assert!(s.cr4 & CR4_SMAP != 0 && s.cr4 & CR4_PCIDE == 0);
            }
            if d.open & !user != 0 {
                prop_assert!(s.secondary & SECONDARY_EXEC_DESC == 0);
            }
            // Nothing closes a gate that every rule allows.
            let all_ok = s.efer & EFER_LMA != 0
                && s.cr4 & CR4_LA57 == 0
                && s.cr4 & !CR4_ANALYSED == 0
                && s.debugctl & !DEBUGCTL_ANALYSED == 0
                && s.cpu_based & CPU_BASED_MOV_DR_EXITING != 0
                && s.dr7 & DR7_ENABLES == 0
                && s.pebs_enable == 0;
            if all_ok {
                let mut want = granted;
                if cet {
                    want &= !no_endbr;
                }
                if s.cr4 & CR4_SMAP == 0 || s.cr4 & CR4_PCIDE != 0 {
                    want &= !user;
                }
                if s.secondary & SECONDARY_EXEC_DESC != 0 {
                    want &= user;
                }
                prop_assert_eq!(d.open, want);
            }
            Ok(())
        },
    );
    let opened = opened.load(Relaxed);
    println!("entry: {opened} of the random states opened a gate");
    assert!(opened >= 32, "only {opened} random states opened a gate");
}
