// SPDX-License-Identifier: Apache-2.0 OR MIT
//! [`Service`]: an elisa-service fd, and [`ServiceSpec`], what makes one.

use crate::{fd_object, invalid, uapi, Region};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Trusted code and the regions it maps (`ELISA_CREATE_SERVICE`). The code was copied
/// into the kernel when the service was made; the service holds its regions. Grant it to
/// VMs with [`ElisaVm::grant`](crate::ElisaVm::grant).
#[derive(Debug)]
pub struct Service {
    fd: OwnedFd,
}
fd_object!(Service, crate::sys::Kind::Service);

/// How a service's sub view maps a region (never executable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `ELISA_ACCESS_READ`.
    ReadOnly,
    /// `ELISA_ACCESS_READ | ELISA_ACCESS_WRITE`.
    ReadWrite,
}

impl Access {
    /// The `access` bits of the ABI.
    pub const fn bits(self) -> u32 {
        match self {
            Access::ReadOnly => uapi::ELISA_ACCESS_READ,
            Access::ReadWrite => uapi::ELISA_ACCESS_READ | uapi::ELISA_ACCESS_WRITE,
        }
    }
}

/// What [`Elisa::create_service`](crate::Elisa::create_service) makes a service of: the
/// file the code is read from, where the code goes, its entry point, and up to 8 regions.
///
/// The rules (the kernel's, run by [`ServiceSpec::to_uapi`] before the call through
/// `elisa_uapi::check`): `code_offset`, `code_size` and `code_gva` are 4 KiB multiples,
/// `code_size` is 4 KiB..64 KiB, `entry_offset` is below `code_size`, at most 8 regions,
/// each at a 4 KiB aligned GVA. The file must hold `code_size` bytes at `code_offset`
/// (checked by the kernel). Overlaps between the GVAs are found at grant time.
///
/// ```no_run
/// # fn f(elisa: &elisa_ioctls::Elisa, code: &std::fs::File, counter: &elisa_ioctls::Region)
/// #     -> std::io::Result<()> {
/// use elisa_ioctls::{Access, ServiceSpec};
/// let spec = ServiceSpec::new(code, 4096, 0x6000_0000_0000)
///     .entry_offset(0x10)
///     .region(counter, 0x6000_0010_0000, Access::ReadWrite);
/// let service = elisa.create_service(&spec)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ServiceSpec<'a> {
    code: BorrowedFd<'a>,
    code_offset: u64,
    code_size: u64,
    code_gva: u64,
    entry_offset: u64,
    regions: Vec<(BorrowedFd<'a>, Access, u64)>,
}

impl<'a> ServiceSpec<'a> {
    /// `code_size` bytes of code from the start of `code` (a memfd or any readable
    /// file), mapped execute-only at `code_gva`, entered at its first byte.
    pub fn new(code: &'a impl AsFd, code_size: u64, code_gva: u64) -> Self {
        ServiceSpec {
            code: code.as_fd(),
            code_offset: 0,
            code_size,
            code_gva,
            entry_offset: 0,
            regions: Vec::new(),
        }
    }

    /// Reads the code from this byte offset of the file instead (a 4 KiB multiple).
    pub fn code_offset(mut self, offset: u64) -> Self {
        self.code_offset = offset;
        self
    }

    /// Enters the code at this byte offset (below `code_size`).
    pub fn entry_offset(mut self, offset: u64) -> Self {
        self.entry_offset = offset;
        self
    }

    /// Maps `region` at `gva` (4 KiB aligned) with `access`.
    pub fn region(mut self, region: &'a Region, gva: u64, access: Access) -> Self {
        self.regions.push((region.as_fd(), access, gva));
        self
    }

    /// The GVA of the entry point, after the same checks as [`ServiceSpec::to_uapi`].
    pub fn entry_gva(&self) -> io::Result<u64> {
        self.checked().map(|(_, entry)| entry)
    }

    /// The ioctl argument, checked as the kernel checks it;
    /// [`io::ErrorKind::InvalidInput`] with the kernel's reason otherwise.
    pub fn to_uapi(&self) -> io::Result<uapi::ElisaCreateService> {
        self.checked().map(|(req, _)| req)
    }

    fn checked(&self) -> io::Result<(uapi::ElisaCreateService, u64)> {
        let mut req = uapi::ElisaCreateService {
            code_fd: self.code.as_raw_fd(),
            code_offset: self.code_offset,
            code_size: self.code_size,
            code_gva: self.code_gva,
            entry_offset: self.entry_offset,
            // More than 8 fail the check below, which names the limit.
            nr_regions: u32::try_from(self.regions.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        for (slot, (fd, access, gva)) in req.regions.iter_mut().zip(&self.regions) {
            *slot = uapi::ElisaServiceRegion {
                region_fd: fd.as_raw_fd(),
                access: access.bits(),
                gva: *gva,
                ..Default::default()
            };
        }
        let entry = uapi::check::create_service(&req).map_err(invalid)?;
        Ok((req, entry))
    }
}
