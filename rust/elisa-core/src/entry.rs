// SPDX-License-Identifier: GPL-2.0
//! The gate decision of a VM entry: which of a vCPU's granted gates may be open for the
//! guest state KVM is about to enter with. The kernel module reads the inputs at every
//! entry of a vCPU that has a gate (`vcpu.rs`, the `kvm_entry` probe) and writes the
//! gates' list entries from [`Decision::open`]; the whole decision is here, so that the
//! host tests check it over any input.
//!
//! Why each input closes gates:
//!
//! - the views' page tables are 4-level IA-32e tables and the gate is checked for 64-bit
//!   code only (R11): every gate is closed unless the guest runs in IA-32e mode
//!   (`EFER.LMA`) without `CR4.LA57`. CR0, CR4 and EFER writes exit, so every entry sees
//!   a change;
//! - a `CR4` bit outside [`CR4_ANALYSED`](super::paging::CR4_ANALYSED) (FRED, LASS,
//!   PKS, ...) closes every gate;
//! - so does a `DEBUGCTL` bit outside
//!   [`DEBUGCTL_ANALYSED`](super::paging::DEBUGCTL_ANALYSED) (the guest would record or
//!   step on the service's branches);
//! - and a debug register that can watch the service: a breakpoint armed in `DR7`, or a
//!   run in which KVM lets the guest access the debug registers without exits (after
//!   its first access, until the next exit: `DR7` could be armed before a call with no
//!   exit to see it);
//! - and PEBS on (`IA32_PEBS_ENABLE`, whose writes exit): a PEBS record is written
//!   through the EPT in use, into a view;
//! - where the VMM exposes CET, a gate whose service entry lacks `ENDBR64` never opens
//!   (the guest can turn IBT on with no exit, and the sub view's indirect call would
//!   raise a #CP);
//! - a user grant's gates need the guest's SMAP and no PCIDs
//!   ([`CallerPrivilege::gates_may_open`]);
//! - a supervisor grant's gates stay closed under descriptor-table exiting (KVM's UMIP
//!   emulation): the sub code's `LIDT` would exit, a broken excursion at every call.

use super::paging::{cr4_analysed, debugctl_analysed, CallerPrivilege};

/// `CR4.LA57`: 5-level paging.
pub const CR4_LA57: u64 = 1 << 12;
/// `EFER.LMA`: IA-32e mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// Primary processor-based VM-execution control bit 23: MOV to or from a debug register
/// exits. KVM clears it for the rest of a run after the guest's first debug-register
/// access, and sets it again at the next exit.
pub const CPU_BASED_MOV_DR_EXITING: u64 = 1 << 23;
/// `DR7`'s enable bits L0-G3: a breakpoint is armed.
pub const DR7_ENABLES: u64 = 0xff;
/// Secondary VM-execution control bit 2, descriptor-table exiting: `LGDT`, `LIDT`,
/// `SGDT`, `SIDT` and the like exit. KVM sets it (`vmx_set_cr4`) while a guest runs with
/// `CR4.UMIP` on a CPU without UMIP, to emulate UMIP.
pub const SECONDARY_EXEC_DESC: u64 = 1 << 2;

/// The guest state an entry decides on, as KVM is about to enter with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryState {
    /// `GUEST_CR4`.
    pub cr4: u64,
    /// `GUEST_IA32_DEBUGCTL`.
    pub debugctl: u64,
    /// KVM's primary processor-based VM-execution controls.
    pub cpu_based: u64,
    /// `GUEST_DR7`.
    pub dr7: u64,
    /// KVM's secondary processor-based VM-execution controls.
    pub secondary: u64,
    /// KVM's copy of the guest's `EFER`.
    pub efer: u64,
    /// KVM's copy of the guest's `IA32_PEBS_ENABLE`.
    pub pebs_enable: u64,
}

/// A vCPU's gates, one bit per gate slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gates {
    /// The gates granted (built and published).
    pub granted: u8,
    /// Those whose service entry does not start with `ENDBR64`.
    pub no_endbr: u8,
    /// Those of user grants (callers at CPL 3).
    pub user: u8,
}

/// [`Decision::notes`]: a `CR4` bit outside `CR4_ANALYSED` keeps every gate closed.
pub const NOTE_CR4_UNKNOWN: u8 = 1 << 0;
/// [`Decision::notes`]: user grants' gates that would open are closed for want of SMAP (or
/// with PCIDs).
pub const NOTE_USER_CLOSED: u8 = 1 << 1;
/// [`Decision::notes`]: supervisor grants' gates that would open are closed for
/// descriptor-table exiting.
pub const NOTE_DESC_CLOSED: u8 = 1 << 2;

/// The decision of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The gates open for this run of the guest.
    pub open: u8,
    /// Why gates are closed, for the log lines that say so once per change (`NOTE_*`):
    /// the unknown `CR4` bit at every entry; the user and descriptor-table reasons as
    /// this entry found them, or as they were (the previous notes) where it did not get
    /// that far: every gate closed for another reason, or, for the descriptor-table
    /// reason, the exiting on but no supervisor gate that would open.
    pub notes: u8,
}

/// Every gate closed for a reason that holds whatever the gates are.
#[inline(always)]
const fn all_closed(s: &EntryState) -> bool {
    let debug_watch = s.cpu_based & CPU_BASED_MOV_DR_EXITING == 0 || s.dr7 & DR7_ENABLES != 0;
    s.cr4 & CR4_LA57 != 0
        || !cr4_analysed(s.cr4)
        || !debugctl_analysed(s.debugctl)
        || debug_watch
        || s.pebs_enable != 0
        || s.efer & EFER_LMA == 0
}

/// Which of `g.granted` may be open for a guest entered with `s`, and the notes that
/// follow from the previous entry's (`prev_notes`). `cet_exposed` says whether the VMM
/// exposed CET (IBT or shadow stacks) to the vCPU; it is called only when some gate could
/// open. Inlined: it runs at every VM entry of a vCPU with a gate.
#[inline(always)]
pub fn decide(
    s: &EntryState,
    g: Gates,
    prev_notes: u8,
    cet_exposed: impl FnOnce() -> bool,
) -> Decision {
    let cr4 = if cr4_analysed(s.cr4) {
        0
    } else {
        NOTE_CR4_UNKNOWN
    };
    let kept = prev_notes & (NOTE_USER_CLOSED | NOTE_DESC_CLOSED);
    if all_closed(s) {
        return Decision {
            open: 0,
            notes: cr4 | kept,
        };
    }
    let mut open = g.granted;
    if cet_exposed() {
        open &= !g.no_endbr;
    }
    let mut notes = cr4;
    if g.user & open != 0 && !CallerPrivilege::User.gates_may_open(s.cr4) {
        open &= !g.user;
        notes |= NOTE_USER_CLOSED;
    }
    if s.secondary & SECONDARY_EXEC_DESC != 0 {
        if open & !g.user != 0 {
            open &= g.user;
            notes |= NOTE_DESC_CLOSED;
        } else {
            notes |= kept & NOTE_DESC_CLOSED;
        }
    }
    Decision { open, notes }
}
