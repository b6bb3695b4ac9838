// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Rust mirror of `include/uapi/linux/elisa.h`, the ABI of `/dev/elisa`.
//!
//! The C header is the source of truth; `tests/abi.rs` compiles it and checks that every
//! struct here has the same size, alignment and field offsets, and every constant the same
//! value. The kernel module includes this file unchanged (`#[path]`), so it has no
//! dependencies and no `crate::` paths. [`guest`] mirrors `linux/elisa_guest.h`, the ABI of
//! the Linux guest module, and [`net`] `linux/elisa_net.h`, the elisa switch's.
#![cfg_attr(not(any(test, MODULE)), no_std)]

pub mod guest;
pub mod net;

/// `ELISA_API_VERSION`: version of this interface.
pub const ELISA_API_VERSION: u32 = 1;

/// `ELISA_IOCTL_TYPE`: the ioctl type byte of every elisa ioctl.
pub const ELISA_IOCTL_TYPE: u32 = 0xE6;

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

/// `ELISA_REGION_MAX_SIZE`: largest region in bytes.
pub const ELISA_REGION_MAX_SIZE: u64 = 1 << 30;
/// `ELISA_SERVICE_MAX_CODE`: largest service code in bytes.
pub const ELISA_SERVICE_MAX_CODE: u64 = 64 << 10;
/// `ELISA_SERVICE_MAX_REGIONS`: regions one service maps.
pub const ELISA_SERVICE_MAX_REGIONS: usize = 8;
/// `ELISA_ACCESS_READ`.
pub const ELISA_ACCESS_READ: u32 = 1 << 0;
/// `ELISA_ACCESS_WRITE`.
pub const ELISA_ACCESS_WRITE: u32 = 1 << 1;
/// `ELISA_FIRST_GATE_INDEX`: the EPTP-list index of a VM's first gate; the n-th
/// service granted to a VM gets `ELISA_FIRST_GATE_INDEX - n`.
pub const ELISA_FIRST_GATE_INDEX: u32 = 511;
/// `ELISA_MAX_GRANTS`: distinct services one VM can be granted.
pub const ELISA_MAX_GRANTS: u32 = 8;
/// `ELISA_GRANT_USER`: the service's callers run at CPL 3 (user pages); without it the
/// trusted pages are supervisor pages, for callers at CPL 0.
pub const ELISA_GRANT_USER: u32 = 1 << 0;

/// `struct elisa_create_region`: argument of [`ELISA_CREATE_REGION`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaCreateRegion {
    /// In: must be 0.
    pub flags: u32,
    /// In: a shmem (memfd, tmpfs) or hugetlbfs file of the caller, open `O_RDWR`, not
    /// sealed against writes.
    pub fd: i32,
    /// In: byte offset in the file, 4 KiB aligned.
    pub offset: u64,
    /// In: size in bytes, a non-zero multiple of 4 KiB, at most [`ELISA_REGION_MAX_SIZE`].
    pub length: u64,
    /// In: must be 0.
    pub reserved: [u64; 4],
}

/// `struct elisa_service_region`: one region of a service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaServiceRegion {
    /// In: an elisa-region fd.
    pub region_fd: i32,
    /// In: [`ELISA_ACCESS_READ`], optionally with [`ELISA_ACCESS_WRITE`].
    pub access: u32,
    /// In: GVA in the sub view, 4 KiB aligned.
    pub gva: u64,
    /// In: must be 0.
    pub reserved: [u64; 2],
}

/// `struct elisa_create_service`: argument of [`ELISA_CREATE_SERVICE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaCreateService {
    /// In: must be 0.
    pub flags: u32,
    /// In: the fd the code is copied from.
    pub code_fd: i32,
    /// In: offset of the code in that file, 4 KiB aligned.
    pub code_offset: u64,
    /// In: size, a non-zero multiple of 4 KiB, at most [`ELISA_SERVICE_MAX_CODE`].
    pub code_size: u64,
    /// In: GVA of the code in the sub view (execute-only), 4 KiB aligned.
    pub code_gva: u64,
    /// In: entry point, a byte offset below `code_size`.
    pub entry_offset: u64,
    /// In: used entries of `regions`.
    pub nr_regions: u32,
    /// In: must be 0.
    pub reserved0: u32,
    /// In: the regions; unused entries all zero.
    pub regions: [ElisaServiceRegion; ELISA_SERVICE_MAX_REGIONS],
    /// In: must be 0.
    pub reserved: [u64; 4],
}

/// `struct elisa_grant`: argument of [`ELISA_GRANT`] (on an elisa-vm fd).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaGrant {
    /// In: 0 or [`ELISA_GRANT_USER`].
    pub flags: u32,
    /// In: an elisa-service fd.
    pub service_fd: i32,
    /// In: G, the GVA of the guest's entry block.
    pub entry_gva: u64,
    /// Out: the gate index ([`ELISA_FIRST_GATE_INDEX`] for a VM's first service, one
    /// less for each further one).
    pub gate_index: u32,
    /// Out: vCPUs that have this service's gate after the call.
    pub nr_vcpus: u32,
    /// Out: first GPA of the trusted window.
    pub trusted_gpa: u64,
    /// Out: size of the trusted window.
    pub trusted_size: u64,
    /// In: must be 0. Out: 0.
    pub reserved: [u64; 4],
}

/// `ELISA_CREATE_REGION`: `_IOW(ELISA_IOCTL_TYPE, 0x02, struct elisa_create_region)`.
pub const ELISA_CREATE_REGION: u32 = ioc(
    IOC_WRITE,
    ELISA_IOCTL_TYPE,
    0x02,
    core::mem::size_of::<ElisaCreateRegion>(),
);

/// `ELISA_CREATE_SERVICE`: `_IOW(ELISA_IOCTL_TYPE, 0x03, struct elisa_create_service)`.
pub const ELISA_CREATE_SERVICE: u32 = ioc(
    IOC_WRITE,
    ELISA_IOCTL_TYPE,
    0x03,
    core::mem::size_of::<ElisaCreateService>(),
);

/// `ELISA_GRANT`: `_IOWR(ELISA_IOCTL_TYPE, 0x10, struct elisa_grant)`.
pub const ELISA_GRANT: u32 = ioc(
    IOC_READ | IOC_WRITE,
    ELISA_IOCTL_TYPE,
    0x10,
    core::mem::size_of::<ElisaGrant>(),
);

/// The field checks of each request that need no file behind them, in one place: the
/// kernel module runs them on what user space passed (and logs the message with
/// `EINVAL`), and user-space libraries run them before the ioctl to report the same
/// error without a system call. What needs the files (is `fd` a memfd, is a region fd an
/// elisa-region, is the code readable) and what needs the VM (the grant's G) stays in the
/// kernel.
pub mod check {
    use super::{
        ElisaCreateRegion, ElisaCreateService, ElisaServiceRegion, ELISA_ACCESS_READ,
        ELISA_ACCESS_WRITE, ELISA_REGION_MAX_SIZE, ELISA_SERVICE_MAX_CODE,
        ELISA_SERVICE_MAX_REGIONS,
    };

    /// The page size of every offset, size and GVA of the ABI.
    pub const PAGE_SIZE: u64 = 4096;

    /// The checks of `ELISA_CREATE_REGION`. `Err` is the reason, as the kernel logs it.
    pub fn create_region(req: &ElisaCreateRegion) -> Result<(), &'static str> {
        if req.flags != 0 || req.reserved.iter().any(|&r| r != 0) {
            return Err("ELISA_CREATE_REGION: flags and reserved fields must be 0");
        }
        if req.offset % PAGE_SIZE != 0 || req.length % PAGE_SIZE != 0 {
            return Err("ELISA_CREATE_REGION: offset and length must be multiples of 4096");
        }
        if req.length == 0 || req.length > ELISA_REGION_MAX_SIZE {
            return Err("ELISA_CREATE_REGION: length must be 4 KiB..1 GiB");
        }
        if req.offset.checked_add(req.length).is_none() {
            return Err("ELISA_CREATE_REGION: offset + length overflows");
        }
        Ok(())
    }

    /// The checks of `ELISA_CREATE_SERVICE`. Returns the GVA of the entry point
    /// (`code_gva + entry_offset`); `Err` is the reason, as the kernel logs it. After
    /// `Ok`, the first `nr_regions` entries each have `access` `READ` or `READ | WRITE`.
    pub fn create_service(req: &ElisaCreateService) -> Result<u64, &'static str> {
        if req.flags != 0 || req.reserved0 != 0 || req.reserved.iter().any(|&r| r != 0) {
            return Err("ELISA_CREATE_SERVICE: flags and reserved fields must be 0");
        }
        let nr = req.nr_regions as usize;
        if nr > ELISA_SERVICE_MAX_REGIONS {
            return Err("ELISA_CREATE_SERVICE: too many regions (at most 8)");
        }
        if req
            .regions
            .iter()
            .skip(nr)
            .any(|r| *r != ElisaServiceRegion::default())
        {
            return Err("ELISA_CREATE_SERVICE: unused region entries must be 0");
        }
        if req.code_offset % PAGE_SIZE != 0
            || req.code_size % PAGE_SIZE != 0
            || req.code_gva % PAGE_SIZE != 0
            || req.code_size == 0
            || req.code_size > ELISA_SERVICE_MAX_CODE
        {
            return Err(
                "ELISA_CREATE_SERVICE: code offset, size (4 KiB..64 KiB) and gva must be 4 KiB multiples",
            );
        }
        if req.entry_offset >= req.code_size {
            return Err("ELISA_CREATE_SERVICE: entry_offset must be below code_size");
        }
        // A file offset is a signed 64-bit number (loff_t): the code must end below 2^63.
        if req
            .code_offset
            .checked_add(req.code_size)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err("ELISA_CREATE_SERVICE: code_offset + code_size must be below 2^63");
        }
        let entry = req
            .code_gva
            .checked_add(req.entry_offset)
            .ok_or("ELISA_CREATE_SERVICE: code_gva overflows")?;
        for r in req.regions.iter().take(nr) {
            if r.reserved.iter().any(|&x| x != 0) || r.gva % PAGE_SIZE != 0 {
                return Err(
                    "ELISA_CREATE_SERVICE: a region's gva must be 4 KiB aligned, reserved 0",
                );
            }
            if r.access != ELISA_ACCESS_READ && r.access != ELISA_ACCESS_READ | ELISA_ACCESS_WRITE {
                return Err("ELISA_CREATE_SERVICE: region access must be READ or READ|WRITE");
            }
        }
        Ok(entry)
    }
}
