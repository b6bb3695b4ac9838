// SPDX-License-Identifier: GPL-2.0
//! VMX primitives: the VMCS fields elisa owns, and VMREAD/VMWRITE.
//!
//! elisa writes only these VMCS fields, always from the vCPU's own `kvm_entry` probe (its
//! VMCS is current there): the VM-functions bit of the secondary controls,
//! `VM_FUNCTION_CONTROL`, `EPTP_LIST_ADDRESS`, and `EPT_POINTER` when it puts a vCPU back
//! into the view it was in after KVM reloaded its root; and `GUEST_RSP`, `GUEST_RIP`,
//! `GUEST_RFLAGS` only to end a call in the gate or sub view (`vcpu.rs`). See
//! `Documentation/design.rst`.

/// `SECONDARY_VM_EXEC_CONTROL`.
pub(crate) const SECONDARY_VM_EXEC_CONTROL: u64 = 0x401e;
/// `VM_FUNCTION_CONTROL`.
pub(crate) const VM_FUNCTION_CONTROL: u64 = 0x2018;
/// `EPTP_LIST_ADDRESS`.
pub(crate) const EPTP_LIST_ADDRESS: u64 = 0x2024;
/// `EPT_POINTER`.
pub(crate) const EPT_POINTER: u64 = 0x201a;

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
    /// Only from the `kvm_entry` or `kvm_exit` tracepoint probe, for the vCPU the probe
    /// was called with, and only when that vCPU is not in guest mode (its VMCS is vmcs01).
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

    /// VMWRITE; `false` on VMfail. Only elisa's own fields (see the file header).
    #[inline(always)]
    pub(crate) fn write(&self, field: u64, val: u64) -> bool {
        let ok: u8;
        // SAFETY: a VMCS is current (type invariant); callers write only the fields of the
        // file header, which KVM does not cache (the VM-functions bit: see the header).
        unsafe {
            core::arch::asm!(
                "vmwrite {f}, {v}",
                "seta {ok}",
                f = in(reg) field,
                v = in(reg) val,
                ok = out(reg_byte) ok,
                options(nostack),
            );
        }
        ok != 0
    }
}

/// `GUEST_CR4`.
pub(crate) const GUEST_CR4: u64 = 0x6804;
/// `GUEST_RSP`: written only to fail a call back (`vcpu.rs`).
pub(crate) const GUEST_RSP: u64 = 0x681c;
/// `GUEST_RIP`: written only to fail a call back.
pub(crate) const GUEST_RIP: u64 = 0x681e;
/// `GUEST_RFLAGS`: written only to fail a call back.
pub(crate) const GUEST_RFLAGS: u64 = 0x6820;
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
/// CR4.LA57.
pub(crate) const CR4_LA57: u64 = 1 << 12;
/// RFLAGS.IF.
pub(crate) const RFLAGS_IF: u64 = 1 << 9;
/// Basic exit reasons elisa distinguishes.
pub(crate) const EXIT_EXCEPTION_NMI: u64 = 0;
pub(crate) const EXIT_EXTERNAL_INTERRUPT: u64 = 1;
pub(crate) const EXIT_TRIPLE_FAULT: u64 = 2;
pub(crate) const EXIT_INTERRUPT_WINDOW: u64 = 7;
pub(crate) const EXIT_NMI_WINDOW: u64 = 8;
pub(crate) const EXIT_PREEMPTION_TIMER: u64 = 52;
