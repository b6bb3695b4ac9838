// SPDX-License-Identifier: GPL-2.0
//! Host capabilities: what the CPU's VMX capability MSRs allow elisa to do.
//!
//! Read once at load time (the module refuses to load without the required ones) and
//! again for each `ELISA_GET_VERSION`. The decoding is `uapi::caps::from_msrs`, which
//! the host tests cover.

use crate::{shim, uapi};
use kernel::fmt;

/// The raw MSRs and the capability bits derived from them.
pub(crate) struct HostCaps {
    pub(crate) msrs: shim::VmxMsrs,
    pub(crate) caps: u64,
}

impl HostCaps {
    /// Reads the MSRs on the current CPU. A CPU without VMX gives all-zero values.
    pub(crate) fn read() -> Self {
        let mut msrs = shim::VmxMsrs::default();
        // SAFETY: `msrs` is a valid, writable `struct elisa_vmx_msrs` for the whole call;
        // the function only reads MSRs with the #GP-safe accessor and writes `*out`.
        let vmx = unsafe { shim::elisa_shim_read_vmx_msrs(&mut msrs) } == 0;
        let caps = uapi::caps::from_msrs(vmx, msrs.procbased_ctls2, msrs.ept_vpid_cap, msrs.vmfunc);
        HostCaps { msrs, caps }
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
