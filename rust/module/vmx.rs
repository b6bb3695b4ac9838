// SPDX-License-Identifier: GPL-2.0
//! VMX primitives: VMREAD/VMWRITE, and the VMCS fields elisa reads and writes.
//!
//! **The fields elisa owns, and when it writes them** (`Documentation/security.rst`, "VMCS
//! ownership"). All writes happen in the vCPU's own entry hook or exit trampoline,
//! with its VMCS current and interrupts off:
//!
//! - `EPTP_LIST_ADDRESS`, `VM_FUNCTION_CONTROL`: written at **every** entry, never
//!   inferred from what the VMCS holds (a VMCS that keeps a list address of an earlier
//!   attachment must never be used again). They have effect only while the VM-functions
//!   bit is set.
//! - `SECONDARY_VM_EXEC_CONTROL` bit 13 (enable VM functions): set at every entry, cleared
//!   at every exit. KVM shadows this field (`loaded_vmcs->controls_shadow`); the VMCS
//!   differs from its shadow only between the entry hook and the exit trampoline, while
//!   KVM neither reads nor writes it, so KVM's next `secondary_exec_controls_set()` sees
//!   the value it expects.
//! - `HOST_RIP`: at an entry that sets elisa's settings up, the exit trampoline
//!   (`elisa_exit.S`), which puts KVM's value back first thing at the exit; at an entry
//!   that sets nothing up, KVM's value again if an entry that failed (no exit) left the
//!   trampoline there (`elisa_shim.c`). KVM writes the field once, when it sets the VMCS
//!   up, and reads it only to print a VMCS dump.
//! - `EPT_POINTER`: at exit set back to KVM's root when the guest was in a gate or sub
//!   view; at entry set to a view only to resume an excursion parked at the last exit
//!   (`vcpu.rs`), and set back to KVM's root when an entry that failed (no exit) left a
//!   view's EPTP or another attachment's stray one there (`root_changed`, `scrub`).
//!   Outside guest mode it is always KVM's root.
//! - `GUEST_RIP`, `GUEST_RSP`, `GUEST_RFLAGS`, and for a supervisor grant's excursion
//!   `GUEST_IDTR_BASE`/`GUEST_IDTR_LIMIT` (the guest's IDT register, which the sub view
//!   replaces by an empty one; KVM caches neither) (and KVM's copies of the general
//!   registers and `RIP`, written through `hooks.rs`): at an exit inside a view, to park
//!   the excursion (the vCPU is left at the failed-back state) or to end it; at the next
//!   entry to resume a parked excursion, only when KVM is about to enter with exactly the
//!   failed-back state elisa left. KVM writes `GUEST_RSP`/`GUEST_RIP` only from its
//!   copies when they are dirty (after the `kvm_entry` tracepoint, before the ftrace
//!   hook), elisa writes the copies too and marks nothing dirty, so both always agree.
//!
//! - `IDT_VECTORING_INFO`: at the exit of a broken excursion that interrupted an event's
//!   delivery, 0, where the CPU lets VMWRITE write VM-exit information fields
//!   (`IA32_VMX_MISC` bit 29), before KVM reads it: the event (raised inside the view) is
//!   never re-queued (`vcpu.rs`, `drop_vectoring`).
//! - `VM_ENTRY_INTR_INFO_FIELD`: elsewhere, at the first entry after such an exit, its
//!   valid bit is cleared, so that the event KVM re-injects is never delivered
//!   (`vcpu.rs`, `end_broken`).
//!
//! Everything else is only read. See `Documentation/design.rst`.

/// `SECONDARY_VM_EXEC_CONTROL`.
pub(crate) const SECONDARY_VM_EXEC_CONTROL: u64 = 0x401e;
/// `VM_FUNCTION_CONTROL`.
pub(crate) const VM_FUNCTION_CONTROL: u64 = 0x2018;
/// `EPTP_LIST_ADDRESS`.
pub(crate) const EPTP_LIST_ADDRESS: u64 = 0x2024;
/// `EPT_POINTER`.
pub(crate) const EPT_POINTER: u64 = 0x201a;

/// Primary processor-based control bit 31: activate secondary controls.
pub(crate) const CPU_BASED_ACTIVATE_SECONDARY_CONTROLS: u64 = 1 << 31;
/// Secondary control bit 13: enable VM functions.
pub(crate) const SECONDARY_EXEC_ENABLE_VMFUNC: u64 = 1 << 13;
/// VM function 0: EPTP switching.
pub(crate) const VMFUNC_EPTP_SWITCHING: u64 = 1 << 0;

/// Proof that the caller runs in a KVM hook with the vCPU's VMCS current.
///
/// # Invariants
///
/// While a value exists, the CPU is in VMX root operation with the VMCS of the vCPU the
/// hook was called for loaded, and interrupts are off, so the VMCS stays current.
pub(crate) struct CurrentVmcs(());

impl CurrentVmcs {
    /// # Safety
    ///
    /// Only from the entry hook or the exit trampoline, for the vCPU they
    /// were called for, and only when that vCPU is not in guest mode (its VMCS is vmcs01).
    pub(crate) unsafe fn assume() -> Self {
        // INVARIANT: the caller guarantees the hook context.
        CurrentVmcs(())
    }

    /// VMREAD; `None` when the VMCS has no such field (VMfail).
    #[inline(always)]
    pub(crate) fn read(&self, field: u64) -> Option<u64> {
        let val: u64;
        let ok: u8;
        // SAFETY: by the type invariant a VMCS is current, so VMREAD cannot #UD; it only
        // reads the field into a register and sets flags.
        unsafe {
            core::arch::asm!(
                "vmread {v}, {f}",
                "seta {ok}",
                v = out(reg) val,
                f = in(reg) field,
                ok = out(reg_byte) ok,
                options(nostack),
            );
        }
        if ok != 0 {
            Some(val)
        } else {
            None
        }
    }

    /// VMREAD of a field every VMCS elisa runs on has (elisa requires EPT and secondary
    /// controls at load); 0 on VMfail, without a separate check on the hook's hot path.
    #[inline(always)]
    pub(crate) fn read_or_zero(&self, field: u64) -> u64 {
        let mut val: u64 = 0;
        // SAFETY: by the type invariant a VMCS is current, so VMREAD cannot #UD; it only
        // writes the field into `val` (left 0 on VMfail) and sets flags.
        unsafe {
            core::arch::asm!(
                "vmread {v}, {f}",
                v = inout(reg) val,
                f = in(reg) field,
                options(nostack),
            );
        }
        val
    }

    /// VMWRITE. Only elisa's own fields (see the file header), each of which every VMCS
    /// elisa runs on has, so it cannot VMfail with a VMCS current; nothing checks.
    #[inline(always)]
    pub(crate) fn write(&self, field: u64, val: u64) {
        // SAFETY: a VMCS is current (type invariant). VMWRITE changes only the VMCS, never
        // memory; callers write only the fields of the file header, at the times it gives,
        // so KVM's cached copies stay right (see the header for the shadowed controls).
        unsafe {
            core::arch::asm!(
                "vmwrite {f}, {v}",
                f = in(reg) field,
                v = in(reg) val,
                options(nostack),
            );
        }
    }
}

/// `GUEST_CR4`.
pub(crate) const GUEST_CR4: u64 = 0x6804;
/// `GUEST_RSP`: written only to park, end or resume an excursion (`vcpu.rs`).
pub(crate) const GUEST_RSP: u64 = 0x681c;
/// `GUEST_RIP`: as `GUEST_RSP`.
pub(crate) const GUEST_RIP: u64 = 0x681e;
/// `GUEST_RFLAGS`: as `GUEST_RSP`.
pub(crate) const GUEST_RFLAGS: u64 = 0x6820;
/// `GUEST_IDTR_BASE` and `GUEST_IDTR_LIMIT`: a supervisor grant's sub view replaces the
/// guest's IDT with an empty one, which a failed-back call gives back.
pub(crate) const GUEST_IDTR_BASE: u64 = 0x6818;
pub(crate) const GUEST_IDTR_LIMIT: u64 = 0x4812;
/// `IDT_VECTORING_INFO_FIELD`: an event whose delivery the exit interrupted.
pub(crate) const IDT_VECTORING_INFO: u64 = 0x4408;
/// Guest state that decides how an excursion runs, and how an exception inside it would be
/// delivered, read when it is parked and compared before it is resumed (a VMM that could
/// change any of these while a call is parked could make the service fault later, through
/// descriptors of its choosing):
///
/// - control and paging: `GUEST_CR0`, `GUEST_CR3`, `GUEST_CR4`;
/// - segments and descriptor tables: `GUEST_CS_SELECTOR`, `GUEST_CS_AR_BYTES`,
///   `GUEST_SS_SELECTOR`, `GUEST_SS_AR_BYTES`, `GUEST_IDTR_BASE`, `GUEST_IDTR_LIMIT`,
///   `GUEST_GDTR_BASE`, `GUEST_GDTR_LIMIT`, `GUEST_LDTR_SELECTOR`, `GUEST_LDTR_BASE`,
///   `GUEST_LDTR_LIMIT`, `GUEST_LDTR_AR_BYTES`, `GUEST_TR_SELECTOR`, `GUEST_TR_BASE`,
///   `GUEST_TR_LIMIT`, `GUEST_TR_AR_BYTES`;
/// - debugging: `GUEST_DR7`, `GUEST_IA32_DEBUGCTL`, `GUEST_PENDING_DBG_EXCEPTIONS`;
/// - `GUEST_INTERRUPTIBILITY_INFO`, `GUEST_ACTIVITY_STATE`;
/// - CET: [`PARK_CET`], read only while the VM entry loads them.
///
/// `EFER`, `PKRU`, `XCR0`, `IA32_XSS`, `IA32_U_CET` and `IA32_PL3_SSP` are not VMCS fields;
/// `vcpu.rs` compares them too.
pub(crate) const PARK_CONTEXT: [u64; 24] = [
    0x6800, 0x6802, 0x6804, 0x0802, 0x4816, 0x0804, 0x4818, 0x6818, 0x4812, 0x6816, 0x4810, 0x080c,
    0x6812, 0x480c, 0x4820, 0x080e, 0x6814, 0x480e, 0x4822, 0x681a, 0x2802, 0x6822, 0x4824, 0x4826,
];
/// The supervisor CET state, compared as `PARK_CONTEXT` is: `GUEST_S_CET`, `GUEST_SSP`,
/// `GUEST_INTR_SSP_TABLE`. They count only while KVM's VM-entry controls load them
/// ([`VM_ENTRY_LOAD_CET_STATE`]); otherwise they are not read (a constant stands for them).
/// A CPU without CET fails the VMREAD, but an emulated one may read garbage: Bochs,
/// without CET in its CPU model, returned a `GUEST_S_CET` that changed between an exit and
/// the next entry (a vCPU moved to another CPU meanwhile), which failed back an untouched
/// call.
pub(crate) const PARK_CET: [u64; 3] = [0x6828, 0x682a, 0x682c];
/// `VM_ENTRY_CONTROLS` (KVM's; only read).
pub(crate) const VM_ENTRY_CONTROLS: u64 = 0x4012;
/// Its bit 20: the VM entry loads the guest's supervisor CET state from the VMCS.
pub(crate) const VM_ENTRY_LOAD_CET_STATE: u64 = 1 << 20;
/// `CPU_BASED_VM_EXEC_CONTROL` (KVM's; only read; its bits elisa tests are
/// `elisa_core::entry`'s).
pub(crate) const CPU_BASED_VM_EXEC_CONTROL: u64 = 0x4002;
/// `GUEST_DR7`.
pub(crate) const GUEST_DR7: u64 = 0x681a;
/// `VM_EXIT_REASON`.
pub(crate) const VM_EXIT_REASON: u64 = 0x4402;
/// `VM_EXIT_INTR_INFO`.
pub(crate) const VM_EXIT_INTR_INFO: u64 = 0x4404;
/// `VM_ENTRY_INTR_INFO_FIELD`: the event KVM injects at this entry.
pub(crate) const VM_ENTRY_INTR_INFO_FIELD: u64 = 0x4016;
/// Bit 31 of the interruption-information fields: valid.
pub(crate) const INTR_INFO_VALID: u64 = 1 << 31;
/// Interruption type 2: NMI.
pub(crate) const INTR_TYPE_NMI: u64 = 2;
/// `GUEST_IA32_DEBUGCTL`: loaded into the guest's `IA32_DEBUGCTL` at every entry.
pub(crate) const GUEST_IA32_DEBUGCTL: u64 = 0x2802;
/// `VM_EXIT_REASON` bit 31: the VM entry failed (a guest-state or MSR-load check); the
/// guest did not run.
pub(crate) const EXIT_REASON_FAILED_VMENTRY: u64 = 1 << 31;
/// Basic exit reasons elisa distinguishes.
pub(crate) const EXIT_EXCEPTION_NMI: u64 = 0;
pub(crate) const EXIT_EXTERNAL_INTERRUPT: u64 = 1;
pub(crate) const EXIT_TRIPLE_FAULT: u64 = 2;
pub(crate) const EXIT_INTERRUPT_WINDOW: u64 = 7;
pub(crate) const EXIT_NMI_WINDOW: u64 = 8;
pub(crate) const EXIT_PREEMPTION_TIMER: u64 = 52;
pub(crate) const EXIT_PML_FULL: u64 = 62;
/// A PAUSE-loop exit (KVM enables PAUSE-loop exiting where the CPU has it: `ple_gap`).
pub(crate) const EXIT_PAUSE_INSTRUCTION: u64 = 40;
/// `VM_EXIT_INSTRUCTION_LEN`: the length of the instruction an exit was caused by.
pub(crate) const VM_EXIT_INSTRUCTION_LEN: u64 = 0x440c;
