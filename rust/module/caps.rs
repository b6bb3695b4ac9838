// SPDX-License-Identifier: GPL-2.0
//! Host capabilities: what the CPU's VMX capability MSRs allow elisa to do.
//!
//! Read once at load time (the module refuses to load without the required ones) and
//! again for each `ELISA_GET_VERSION`. The decoding is `uapi::caps::from_msrs`, which
//! the host tests cover.

use crate::{shim, uapi, vmx};
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use kernel::{bindings, fmt};

/// `IA32_VMX_MISC` bit 29: VMWRITE may write the VM-exit information fields.
const VMX_MISC_VMWRITE_EXIT_INFO: u64 = 1 << 29;

/// Whether VMWRITE may write the VM-exit information fields (set at load time): the exit
/// trampoline then clears the IDT-vectoring field of a broken excursion's exit
/// (`VcpuState::end_broken`).
static VMWRITE_EXIT_INFO: AtomicBool = AtomicBool::new(false);

/// Reads `IA32_VMX_MISC` for [`vmwrite_exit_info`]. Module init, after the required
/// capabilities were found.
pub(crate) fn init_misc() {
    let misc = rdmsr(bindings::MSR_IA32_VMX_MISC).unwrap_or(0);
    VMWRITE_EXIT_INFO.store(misc & VMX_MISC_VMWRITE_EXIT_INFO != 0, Relaxed);
}

/// Whether VMWRITE may write the VM-exit information fields. Any context.
pub(crate) fn vmwrite_exit_info() -> bool {
    VMWRITE_EXIT_INFO.load(Relaxed)
}

/// The raw VMX capability MSRs.
#[derive(Default)]
pub(crate) struct VmxMsrs {
    pub(crate) procbased_ctls2: u64,
    pub(crate) ept_vpid_cap: u64,
    pub(crate) vmfunc: u64,
}

/// The raw MSRs and the capability bits derived from them.
pub(crate) struct HostCaps {
    pub(crate) msrs: VmxMsrs,
    pub(crate) caps: u64,
}

/// MSR `msr` of the CPU this runs on, or `None` where reading it raises #GP (no such MSR).
fn rdmsr(msr: u32) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: `v` is writable for the whole call; the shim reads the MSR locally with
    // preemption off.
    (unsafe { shim::elisa_shim_rdmsr_local(msr, &mut v) } == 0).then_some(v)
}

impl HostCaps {
    /// Reads the MSRs of the CPU each read runs on (KVM requires every CPU to report the
    /// same VMX capabilities). A CPU without VMX gives all-zero values. Process context.
    pub(crate) fn read() -> Self {
        let mut msrs = VmxMsrs::default();
        let vmx = Self::read_msrs(&mut msrs);
        let caps = uapi::caps::from_msrs(vmx, msrs.procbased_ctls2, msrs.ept_vpid_cap, msrs.vmfunc);
        HostCaps { msrs, caps }
    }

    /// Fills `out`; false when the CPU has no VMX.
    fn read_msrs(out: &mut VmxMsrs) -> bool {
        // SAFETY: reads a feature bit of the boot CPU, set up before modules load.
        if !unsafe { shim::elisa_shim_has_vmx() } {
            return false;
        }
        let Some(ctls) = rdmsr(bindings::MSR_IA32_VMX_PROCBASED_CTLS) else {
            return false;
        };
        // Secondary controls exist only when their activation bit may be 1.
        if (ctls >> 32) & vmx::CPU_BASED_ACTIVATE_SECONDARY_CONTROLS != 0 {
            let ctls2 = rdmsr(bindings::MSR_IA32_VMX_PROCBASED_CTLS2).unwrap_or(0);
            out.procbased_ctls2 = ctls2;
            out.ept_vpid_cap = rdmsr(bindings::MSR_IA32_VMX_EPT_VPID_CAP).unwrap_or(0);
            if (ctls2 >> 32) & vmx::SECONDARY_EXEC_ENABLE_VMFUNC != 0 {
                out.vmfunc = rdmsr(bindings::MSR_IA32_VMX_VMFUNC).unwrap_or(0);
            }
        }
        true
    }
}

/// Formats a set of capability bits as their names, e.g. `vmx,ept`.
pub(crate) struct Names(pub(crate) u64);

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in uapi::caps::NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}
