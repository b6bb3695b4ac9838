// SPDX-License-Identifier: Apache-2.0 OR MIT
//! [`ElisaVm`]: an elisa-vm fd, the attachment of one KVM VM.

use crate::{fd_object, sys, uapi, Service};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// An attached KVM VM (`ELISA_ATTACH_VM`). The attachment, and every grant made on it,
/// lasts exactly as long as this fd: dropping the last holder of it detaches the VM.
/// There is no revocation short of that.
#[derive(Debug)]
pub struct ElisaVm {
    fd: OwnedFd,
}
fd_object!(ElisaVm, crate::sys::Kind::Vm);

/// What `ELISA_GRANT` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantInfo {
    /// The gate index (`ECX` of `elisa_call`): 511 for the VM's first service, one less
    /// for each further one.
    pub gate_index: u32,
    /// vCPUs that have this service's gate after the call.
    pub nr_vcpus: u32,
    /// First guest-physical address of the window elisa's views use.
    pub trusted_gpa: u64,
    /// Its size. Keep memslots out of it: one added there later is harmless for isolation,
    /// but its GPAs then mean one thing to the guest and another in the views (`api.rst`,
    /// "The trusted window and later memslots").
    pub trusted_size: u64,
}

impl From<&uapi::ElisaGrant> for GrantInfo {
    fn from(g: &uapi::ElisaGrant) -> Self {
        GrantInfo {
            gate_index: g.gate_index,
            nr_vcpus: g.nr_vcpus,
            trusted_gpa: g.trusted_gpa,
            trusted_size: g.trusted_size,
        }
    }
}

impl ElisaVm {
    /// `ELISA_GRANT`: connects `service` to the VM, with the guest's entry block at
    /// `entry_gva` (G: 4 KiB aligned, G - 0x2000 at or above 4 GiB, canonical).
    /// `flags` is 0 (callers in the guest kernel) or [`GRANT_USER`](crate::GRANT_USER)
    /// (callers at CPL 3).
    ///
    /// Every vCPU the VM has now gets the service's gate. Granting the same service
    /// again (same G and flags) gives the gate to vCPUs created since and returns the
    /// same index. `ENOSPC` past 8 services, `EINVAL` for a G the planner refuses,
    /// `ESRCH` once every process of the VM has exited. Interrupted by a signal (`EINTR`,
    /// nothing published), the grant is made again.
    pub fn grant(&self, service: &Service, entry_gva: u64, flags: u32) -> io::Result<GrantInfo> {
        let mut req = uapi::ElisaGrant {
            flags,
            service_fd: service.as_fd().as_raw_fd(),
            entry_gva,
            ..Default::default()
        };
        // A signal (a VMM's vCPU kick, often installed without SA_RESTART) can end the
        // wait for another grant of the VM with EINTR; such a grant published nothing,
        // and a grant is idempotent, so it is made again.
        loop {
            match sys::ioctl(self.fd.as_fd(), &mut req) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => {
                    r?;
                }
            }
            return Ok(GrantInfo::from(&req));
        }
    }
}
