// SPDX-License-Identifier: Apache-2.0 OR MIT
//! [`Elisa`]: `/dev/elisa`, opened. One per process is enough; it makes the other objects.

use crate::{fd_object, invalid, sys, uapi, ElisaVm, Region, Service, ServiceSpec};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `/dev/elisa`, opened read-write (`O_CLOEXEC`).
///
/// Holding it is a privilege (the device is mode 0600 unless a udev rule says otherwise):
/// it changes how the VMs whose fds its holder also holds are isolated.
#[derive(Debug)]
pub struct Elisa {
    fd: OwnedFd,
}
fd_object!(Elisa, crate::sys::Kind::Device);

impl Elisa {
    /// Where the device is.
    pub const PATH: &'static str = "/dev/elisa";

    /// Opens [`Elisa::PATH`]. `ENOENT` when the module is not loaded, `EACCES` without
    /// the permission.
    pub fn open() -> io::Result<Self> {
        Self::open_path(Self::PATH)
    }

    /// Opens the device at `path` (a device node elsewhere, as in a container). A file
    /// that is not elisa's device (another device, a FUSE or CUSE file) is refused with
    /// [`io::ErrorKind::InvalidInput`], saying what it is: the crate makes its ioctls only
    /// on elisa's own files.
    pub fn open_path(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_checked(path.as_ref(), true)
    }

    /// Opens `path` only if it is elisa's device before the open too (opening another
    /// device can have effects of its own: a watchdog arms, a tty becomes the controlling
    /// terminal), then checks the file that was opened, which is what counts.
    fn open_checked(path: &Path, write: bool) -> io::Result<Self> {
        sys::check_device_path(path)?;
        let f = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_NOCTTY)
            .open(path)?;
        Self::try_from(OwnedFd::from(f))
    }

    /// Opens [`Elisa::PATH`] for reading only: enough for [`Elisa::version`], which is all
    /// such a file may call (the other ioctls fail with `EBADF`). Works where the device
    /// grants read access only.
    pub fn open_read_only() -> io::Result<Self> {
        Self::open_checked(Path::new(Self::PATH), false)
    }

    /// `ELISA_GET_VERSION`: the interface version and what the host CPU allows.
    ///
    /// ```no_run
    /// let v = elisa_ioctls::Elisa::open()?.version()?;
    /// assert_eq!(v.api_version, elisa_ioctls::uapi::ELISA_API_VERSION);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn version(&self) -> io::Result<uapi::ElisaVersion> {
        let mut v = uapi::ElisaVersion::default();
        sys::ioctl(self.fd.as_fd(), &mut v)?;
        Ok(v)
    }

    /// `ELISA_ATTACH_VM`: attaches the KVM VM behind `vm` (a `KVM_CREATE_VM` fd) and
    /// returns the attachment. The VM stays attached until the [`ElisaVm`] is dropped
    /// (its last holder closes it); `vm` itself may be closed right away.
    ///
    /// `EINVAL` when `vm` is not a KVM VM, `EBUSY` when the VM is attached already,
    /// `EOPNOTSUPP` under `kvm_intel.nested=1`.
    pub fn attach_vm(&self, vm: &impl AsFd) -> io::Result<ElisaVm> {
        let mut req = uapi::ElisaAttachVm {
            vm_fd: vm.as_fd().as_raw_fd(),
            ..Default::default()
        };
        sys::ioctl_new_fd(self.fd.as_fd(), &mut req).map(ElisaVm::from_new_fd)
    }

    /// `ELISA_CREATE_REGION`: pins `[offset, offset + len)` of `memfd` (a memfd, or a
    /// tmpfs or hugetlbfs file, open read-write) as a region. Unless this process has
    /// `CAP_IPC_LOCK`, the pages are charged to its user's locked memory, against this
    /// process's `RLIMIT_MEMLOCK` (`ENOMEM` beyond it; `Documentation/api.rst`).
    ///
    /// A memfd must be sealed with `F_SEAL_SHRINK` (`EPERM` otherwise), as
    /// [`region_memfd`](crate::region_memfd) makes one. A service whose region was cut
    /// out of its file later (a hole punched, a tmpfs file truncated) is refused with
    /// `ENXIO`.
    ///
    /// `offset` and `len` must be 4 KiB multiples and `len` at most 1 GiB
    /// ([`io::ErrorKind::InvalidInput`] before the call otherwise).
    pub fn create_region(&self, memfd: &impl AsFd, offset: u64, len: u64) -> io::Result<Region> {
        let mut req = uapi::ElisaCreateRegion {
            fd: memfd.as_fd().as_raw_fd(),
            offset,
            length: len,
            ..Default::default()
        };
        uapi::check::create_region(&req).map_err(invalid)?;
        sys::ioctl_new_fd(self.fd.as_fd(), &mut req).map(Region::from_new_fd)
    }

    /// `ELISA_CREATE_SERVICE`: copies the code `spec` names and makes a service that maps
    /// its regions. See [`ServiceSpec`] for the rules, which are checked before the call.
    /// `EINTR` (a signal while the code was read) is returned, not retried: the code may
    /// come from a pipe, whose bytes the interrupted read consumed.
    pub fn create_service(&self, spec: &ServiceSpec<'_>) -> io::Result<Service> {
        let mut req = spec.to_uapi()?;
        sys::ioctl_new_fd(self.fd.as_fd(), &mut req).map(Service::from_new_fd)
    }
}
