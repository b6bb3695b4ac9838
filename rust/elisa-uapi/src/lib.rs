// SPDX-License-Identifier: GPL-2.0
//! Rust mirror of `include/uapi/linux/elisa.h`, the ABI of `/dev/elisa`.
//!
//! The C header is the source of truth; `tests/abi.rs` compiles it and checks that every
//! struct here has the same size, alignment and field offsets, and every constant the same
//! value. The kernel module includes this file unchanged (`#[path]`), so it has no
//! dependencies and no `crate::` paths.
#![cfg_attr(not(any(test, MODULE)), no_std)]

/// `ELISA_API_VERSION`: version of this interface.
pub const ELISA_API_VERSION: u32 = 1;

/// `ELISA_IOCTL_TYPE`: the ioctl type byte of every elisa ioctl.
pub const ELISA_IOCTL_TYPE: u32 = 0xE5;

/// Capability bits of [`ElisaVersion::caps`] (`ELISA_CAP_*`).
pub mod caps {
    /// VMX is present and usable.
    pub const VMX: u64 = 1 << 0;
    /// EPT is supported.
    pub const EPT: u64 = 1 << 1;
    /// VM functions can be enabled.
    pub const VMFUNC: u64 = 1 << 2;
    /// VM function 0 (EPTP switching) is supported.
    pub const EPTP_SWITCHING: u64 = 1 << 3;
    /// Execute-only EPT entries are supported.
    pub const EPT_EXEC_ONLY: u64 = 1 << 4;
    /// EPT accessed and dirty flags are supported.
    pub const EPT_AD: u64 = 1 << 5;
    /// EPT 2 MiB leaves are supported.
    pub const EPT_2M: u64 = 1 << 6;
    /// EPT 1 GiB leaves are supported.
    pub const EPT_1G: u64 = 1 << 7;
    /// Mode-based execute control for EPT is supported.
    pub const EPT_MBEC: u64 = 1 << 8;
    /// 4-level EPT page walks are supported.
    pub const EPT_PWL4: u64 = 1 << 9;
    /// `ELISA_CAPS_REQUIRED`: without these the module refuses to load.
    pub const REQUIRED: u64 = VMX | EPT | VMFUNC | EPTP_SWITCHING;

    /// Name of each capability bit, for messages.
    pub const NAMES: [(u64, &str); 10] = [
        (VMX, "vmx"),
        (EPT, "ept"),
        (VMFUNC, "vmfunc"),
        (EPTP_SWITCHING, "eptp-switching"),
        (EPT_EXEC_ONLY, "ept-exec-only"),
        (EPT_AD, "ept-ad"),
        (EPT_2M, "ept-2m"),
        (EPT_1G, "ept-1g"),
        (EPT_MBEC, "ept-mbec"),
        (EPT_PWL4, "ept-pwl4"),
    ];

    /// Derives the capability bits from the raw VMX capability MSRs.
    ///
    /// `vmx` says whether the CPU has VMX at all (CPUID.1:ECX.VMX, and the MSRs were
    /// readable); the MSR arguments are ignored when it is false.
    ///
    /// ```
    /// use elisa_uapi::caps;
    /// // Secondary controls allowed-1: EPT (bit 1) and VMFUNC (bit 13); EPTP switching.
    /// let c = caps::from_msrs(true, ((1 << 1) | (1 << 13)) << 32, 1 << 6, 1);
    /// assert_eq!(c & caps::REQUIRED, caps::REQUIRED);
    /// assert_eq!(caps::from_msrs(false, u64::MAX, u64::MAX, u64::MAX), 0);
    /// ```
    pub const fn from_msrs(vmx: bool, procbased_ctls2: u64, ept_vpid_cap: u64, vmfunc: u64) -> u64 {
        if !vmx {
            return 0;
        }
        let allowed1 = procbased_ctls2 >> 32;
        let mut c = VMX;
        if allowed1 & (1 << 1) != 0 {
            c |= EPT;
            if ept_vpid_cap & (1 << 0) != 0 {
                c |= EPT_EXEC_ONLY;
            }
            if ept_vpid_cap & (1 << 6) != 0 {
                c |= EPT_PWL4;
            }
            if ept_vpid_cap & (1 << 16) != 0 {
                c |= EPT_2M;
            }
            if ept_vpid_cap & (1 << 17) != 0 {
                c |= EPT_1G;
            }
            if ept_vpid_cap & (1 << 21) != 0 {
                c |= EPT_AD;
            }
            if allowed1 & (1 << 22) != 0 {
                c |= EPT_MBEC;
            }
        }
        if allowed1 & (1 << 13) != 0 {
            c |= VMFUNC;
            if vmfunc & 1 != 0 {
                c |= EPTP_SWITCHING;
            }
        }
        c
    }
}

/// `struct elisa_version`: argument of [`ELISA_GET_VERSION`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaVersion {
    /// In: must be 0.
    pub flags: u32,
    /// Out: [`ELISA_API_VERSION`] of the running module.
    pub api_version: u32,
    /// Out: [`caps`] bits.
    pub caps: u64,
    /// Out: IA32_VMX_PROCBASED_CTLS2, raw.
    pub vmx_procbased_ctls2: u64,
    /// Out: IA32_VMX_EPT_VPID_CAP, raw.
    pub vmx_ept_vpid_cap: u64,
    /// Out: IA32_VMX_VMFUNC, raw (0 without VM functions).
    pub vmx_vmfunc: u64,
    /// In: must be 0. Out: 0.
    pub reserved: [u64; 4],
}

/// `struct elisa_attach_vm`: argument of [`ELISA_ATTACH_VM`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaAttachVm {
    /// In: must be 0.
    pub flags: u32,
    /// In: a KVM VM file descriptor of the caller.
    pub vm_fd: i32,
    /// In: must be 0.
    pub reserved: [u64; 3],
}

/// Linux's `_IOC` encoding for x86 (`include/uapi/asm-generic/ioctl.h`).
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (ty << 8) | nr
}
/// `_IOC_WRITE`.
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`.
pub const IOC_READ: u32 = 2;

/// `ELISA_GET_VERSION`: `_IOWR(ELISA_IOCTL_TYPE, 0x00, struct elisa_version)`.
pub const ELISA_GET_VERSION: u32 = ioc(
    IOC_READ | IOC_WRITE,
    ELISA_IOCTL_TYPE,
    0x00,
    core::mem::size_of::<ElisaVersion>(),
);

/// `ELISA_ATTACH_VM`: `_IOW(ELISA_IOCTL_TYPE, 0x01, struct elisa_attach_vm)`.
pub const ELISA_ATTACH_VM: u32 = ioc(
    IOC_WRITE,
    ELISA_IOCTL_TYPE,
    0x01,
    core::mem::size_of::<ElisaAttachVm>(),
);
