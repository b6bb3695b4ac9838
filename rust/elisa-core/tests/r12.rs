// SPDX-License-Identifier: GPL-2.0
//! R12: a guest CR3 equal to an explicitly mapped GPA of a gate or sub view.
//!
//! The design (see `src/apt.rs`): every excursion starts in the gate view with the guest's
//! CR3, so it is enough that no such CR3 gives the gate view an executable translation; and
//! a CR3 on a page of one view is a hole (an EPT violation) in the other view.
//!
//! Page contents are as a grant and the trampolines leave them: the gate data page holds the
//! sub EPTP and the trusted window's start and length (each shifted left by 16, for the
//! gate's CR3 check), the EPTP list holds the default and gate EPTPs and, during the hop,
//! the sub EPTP; the gate stack holds an arbitrary RFLAGS image in its `PUSHFQ` slot.

mod common;

use common::*;
use elisa_core::eptp::{Eptp, EptpList, EPTP_INDEX_SUB};
use elisa_core::gate;
use elisa_core::paging::PagingMode;
use elisa_core::verify::Check;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Architecturally settable RFLAGS bits (bit 1 always set; 3, 5, 15 and 22+ always clear).
const RFLAGS_SETTABLE: u64 = 0x003f_7fd5;

fn check(s: Scenario, rflags: u64, hop: bool) -> Result<(), TestCaseError> {
    let b = build_or_reject(&s)?;
    let mut b = b;
    let (gate_e, sub_e) = (b.gate.eptp().raw(), b.sub.eptp().raw());

    // The pages as a grant writes them (gate code and data, sub code, the EPTP list), by
    // the module's own writer. A scenario without a code region has no service entry to
    // write them for: its gate data page gets the same three words by hand.
    if b.finish().is_err() {
        let (start, len) = b.layout.trusted_window();
        for (at, v) in [
            (gate::GATE_DATA_SUB_EPTP, sub_e),
            (gate::GATE_DATA_WINDOW_START, start.0 << gate::CR3_SHIFT),
            (gate::GATE_DATA_WINDOW_LEN, len << gate::CR3_SHIFT),
        ] {
            b.mem.poke(b.entry.gate_data.0, at / 8, v);
        }
        let default = Eptp::from_raw(0x5e | 0x0000_0123_4567_8000).unwrap();
        for (i, v) in EptpList::new(default, b.gate.eptp())
            .entries()
            .iter()
            .enumerate()
        {
            b.mem.poke(b.entry.eptp_list.0, i, *v);
        }
    }
    if hop {
        b.mem.poke(b.entry.eptp_list.0, EPTP_INDEX_SUB, sub_e);
    }
    let stack_frame = ept_walk(&b.mem, gate_e, b.layout.gate_stack().gpa.0)
        .unwrap()
        .hpa;
    b.mem.poke(
        stack_frame,
        gate::GATE_FLAGS_SLOT / 8,
        (rflags & RFLAGS_SETTABLE) | 2,
    );

    // Every page-sized CR3 candidate (each explicit 4 KiB leaf; the first, a middle and the
    // last page of each huge leaf and of each hole, in both views) reaches no executable
    // translation in the gate view, and each is a leaf or a hole in both views.
    b.check(Check::CollidingCr3, 0)
        .map_err(|v| TestCaseError::fail(v.to_string()))
}

#[test]
fn colliding_cr3_values_are_harmless() {
    for (mode, name) in [
        (PagingMode::FourLevel, "4-level"),
        (PagingMode::FiveLevel, "5-level"),
    ] {
        property(
            &format!("R12: colliding CR3 gives no executable gate translation ({name})"),
            (scenario(mode), any::<u64>(), any::<bool>()),
            |(s, rflags, hop)| check(s, rflags, hop),
        );
    }
}
