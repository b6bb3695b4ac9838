// SPDX-License-Identifier: GPL-2.0
//! R12: a guest CR3 equal to an explicitly mapped GPA of a gate or sub view.
//!
//! The design (see `src/apt.rs`): every excursion starts in the gate view with the guest's
//! CR3, so it is enough that no such CR3 gives the gate view an executable translation; and
//! a CR3 on a page of one view is a hole (an EPT violation) in the other view.
//!
//! Page contents are modelled as the trampolines leave them: the gate data page holds the
//! sub EPTP, the EPTP list holds the default and gate EPTPs and, during the hop, the sub
//! EPTP; the gate stack holds an arbitrary RFLAGS image in its `PUSHFQ` slot.

mod common;

use common::*;
use elisa_core::eptp::{Eptp, EptpList, EPTP_INDEX_SUB};
use elisa_core::gate;
use elisa_core::paging::PagingMode;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Architecturally settable RFLAGS bits (bit 1 always set; 3, 5, 15 and 22+ always clear).
const RFLAGS_SETTABLE: u64 = 0x003f_7fd5;

fn check(s: Scenario, rflags: u64, hop: bool) -> Result<(), TestCaseError> {
    let b = match build(&s) {
        Ok(b) => b,
        Err(elisa_core::Error::Collision(..)) => {
            return Err(TestCaseError::reject("fixed GVAs collide"))
        }
        Err(e) => return Err(TestCaseError::fail(format!("build failed: {e:?}"))),
    };
    let mut mem = b.mem;
    let levels = b.layout.paging().levels();
    let ad = b.cfg.accessed_dirty;
    let (gate_e, sub_e) = (b.gate.eptp().raw(), b.sub.eptp().raw());

    // What the trampolines leave in the gate view's data pages.
    mem.poke(b.entry.gate_data.0, gate::GATE_DATA_SUB_EPTP / 8, sub_e);
    let default = Eptp::from_raw(0x5e | 0x0000_0123_4567_8000).unwrap();
    for (i, v) in EptpList::new(default, b.gate.eptp())
        .entries()
        .iter()
        .enumerate()
    {
        mem.poke(b.entry.eptp_list.0, i, *v);
    }
    if hop {
        mem.poke(b.entry.eptp_list.0, EPTP_INDEX_SUB, sub_e);
    }
    let stack_frame = ept_walk(&mem, gate_e, b.layout.gate_stack().gpa.0)
        .unwrap()
        .hpa;
    mem.poke(
        stack_frame,
        gate::GATE_FLAGS_SLOT / 8,
        (rflags & RFLAGS_SETTABLE) | 2,
    );

    let chain =
        |v: &elisa_core::view::View| -> Vec<u64> { v.apt().chain().iter().map(|h| h.0).collect() };
    let gate_tree = ept_leaves(
        &mem,
        b.gate.ept().root().0,
        &chain(&b.gate),
        b.gate.apt().frame().0,
    );
    let sub_tree = ept_leaves(
        &mem,
        b.sub.ept().root().0,
        &chain(&b.sub),
        b.sub.apt().frame().0,
    );

    // Every page-sized CR3 candidate: each explicit 4 KiB leaf, and the first, a middle and
    // the last page of each huge leaf, in both views.
    let mut candidates = Vec::new();
    for m in gate_tree.leaves.values().chain(sub_tree.leaves.values()) {
        if m.size == 0x1000 {
            candidates.push(m.gpa);
        } else {
            candidates.extend([m.gpa, m.gpa + m.size / 2, m.gpa + m.size - 0x1000]);
        }
    }
    for &(gpa, size) in gate_tree.holes.iter().chain(&sub_tree.holes) {
        candidates.extend([gpa, gpa + size - 0x1000]);
    }
    let gate_code = b.layout.gate_code_gpa().0;
    let explicit_in = |tree: &EptTree, gpa: u64| {
        tree.leaves
            .range(..=gpa)
            .next_back()
            .is_some_and(|(_, m)| gpa < m.gpa + m.size)
    };
    for cr3 in candidates {
        let leaves = reachable_leaves(&mem, gate_e, levels, cr3, ad);
        for (gpa, size) in &leaves {
            prop_assert!(
                !(gate_code >= *gpa && gate_code < gpa + size),
                "CR3 {:#x} reaches the gate code page in the gate view",
                cr3
            );
            if let Ok(t) = ept_walk(&mem, gate_e, *gpa) {
                prop_assert!(
                    !t.perms.exec && !t.perms.user_exec,
                    "CR3 {:#x}: executable leaf {:#x}",
                    cr3,
                    gpa
                );
            }
        }
        // A page of the other view only is a hole: the first walk exits.
        if !explicit_in(&gate_tree, cr3) {
            let hole = matches!(
                ept_walk(&mem, gate_e, cr3),
                Err(EptFault::NotPresent { .. })
            );
            prop_assert!(hole, "CR3 {:#x}: not a hole in the gate view", cr3);
            prop_assert!(leaves.is_empty());
        }
        if !explicit_in(&sub_tree, cr3) {
            let hole = matches!(ept_walk(&mem, sub_e, cr3), Err(EptFault::NotPresent { .. }));
            prop_assert!(hole, "CR3 {:#x}: not a hole in the sub view", cr3);
        }
    }
    Ok(())
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
