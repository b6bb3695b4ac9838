// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Safe wrappers over the ioctls of `/dev/elisa`, for VMMs written in Rust.
//!
//! Modelled on rust-vmm's `kvm-ioctls`: one type per kernel object, each owning its file
//! descriptor. File descriptors are elisa's capabilities, so these types are too:
//!
//! | type        | kernel object                   | made by                      |
//! |-------------|---------------------------------|------------------------------|
//! | [`Elisa`]   | `/dev/elisa`                    | [`Elisa::open`]              |
//! | [`ElisaVm`] | an attachment of a KVM VM       | [`Elisa::attach_vm`]         |
//! | [`Region`]  | pinned pages of a memfd         | [`Elisa::create_region`]     |
//! | [`Service`] | trusted code and its regions    | [`Elisa::create_service`]    |
//!
//! [`ElisaVm::grant`] connects a service to the VM and returns its [`GrantInfo`]. Every
//! object lives exactly as long as its fd: dropping the [`ElisaVm`] detaches the VM
//! (grants included), and a [`Service`] holds its regions, so a [`Region`] may be dropped
//! once a service maps it. The fds are `O_CLOEXEC`. See `Documentation/api.rst` for each
//! ioctl and its errors.
//!
//! Errors are [`std::io::Error`]s. A refusal by the kernel carries its errno
//! ([`io::Error::raw_os_error`]; the kernel log says why). A request that breaks a rule
//! the kernel checks on the fields alone (alignment, sizes, access, counts) is refused
//! before the system call with [`io::ErrorKind::InvalidInput`] and the kernel's own
//! message: both sides run [`elisa_uapi::check`].
//!
//! The structs are elisa-uapi's, the mirror of `include/uapi/linux/elisa.h`, re-exported
//! as [`uapi`].
//!
//! # A rust-vmm VMM
//!
//! The VM fd comes from `kvm_ioctls::VmFd` (this crate does not depend on kvm-ioctls;
//! any type that is [`AsFd`], or a raw fd borrowed with [`BorrowedFd::borrow_raw`], will
//! do). The guest maps the entry block at G itself (see `Documentation/gate-protocol.rst`)
//! and learns G and the gate index from the VMM.
//!
//! ```no_run
//! # // A stand-in with kvm-ioctls' names, so that the example compiles here.
//! # mod kvm_ioctls {
//! #     pub struct Kvm;
//! #     pub struct VmFd(std::fs::File);
//! #     impl Kvm {
//! #         pub fn new() -> std::io::Result<Kvm> { Ok(Kvm) }
//! #         pub fn create_vm(&self) -> std::io::Result<VmFd> { unimplemented!() }
//! #     }
//! #     impl std::os::fd::AsRawFd for VmFd {
//! #         fn as_raw_fd(&self) -> std::os::fd::RawFd { self.0.as_raw_fd() }
//! #     }
//! # }
//! # fn main() -> std::io::Result<()> {
//! use elisa_ioctls::{Access, Elisa, ServiceSpec};
//! use kvm_ioctls::Kvm;
//! use std::os::fd::{AsRawFd, BorrowedFd};
//!
//! let kvm = Kvm::new()?;
//! let vm = kvm.create_vm()?;
//! // ... memslots, vCPUs, the guest's page tables with the entry block at G ...
//!
//! let elisa = Elisa::open()?;
//! // SAFETY: `vm` outlives the borrow (attach_vm only uses it during the call).
//! let vm_fd = unsafe { BorrowedFd::borrow_raw(vm.as_raw_fd()) };
//! let evm = elisa.attach_vm(&vm_fd)?;
//!
//! // a memfd sealed with F_SEAL_SHRINK, so that it can never be truncated under the region
//! let shared = elisa_ioctls::region_memfd(c"shared", 4096)?;
//! let region = elisa.create_region(&shared, 0, 4096)?;
//! let code = std::fs::File::open("service.bin")?; // 4 KiB multiple
//! let spec = ServiceSpec::new(&code, 4096, 0x6000_0000_0000)
//!     .region(&region, 0x6000_0010_0000, Access::ReadWrite);
//! let service = elisa.create_service(&spec)?;
//! let grant = evm.grant(&service, 0x5000_0000_0000, 0)?;
//! println!("gate index {}, trusted window {:#x}+{:#x}",
//!          grant.gate_index, grant.trusted_gpa, grant.trusted_size);
//! // Keep `evm` (and `vm`) for as long as the guest may call; vCPUs created later
//! // need `evm.grant(&service, G, 0)` again.
//! # Ok(()) }
//! ```
//!
//! The same with any VM fd, compiled as part of the tests:
//!
//! ```no_run
//! use elisa_ioctls::{Access, Elisa, ElisaVm, GrantInfo, ServiceSpec};
//! use std::os::fd::AsFd;
//!
//! fn share(vm: &impl AsFd, shared: &impl AsFd, code: &impl AsFd)
//!     -> std::io::Result<(ElisaVm, GrantInfo)>
//! {
//!     let elisa = Elisa::open()?;
//!     let evm = elisa.attach_vm(vm)?;
//!     let region = elisa.create_region(shared, 0, 4096)?;
//!     let spec = ServiceSpec::new(code, 4096, 0x6000_0000_0000)
//!         .entry_offset(0)
//!         .region(&region, 0x6000_0010_0000, Access::ReadWrite);
//!     let service = elisa.create_service(&spec)?;
//!     drop(region); // the service holds it
//!     let grant = evm.grant(&service, 0x5000_0000_0000, 0)?;
//!     Ok((evm, grant))
//! }
//! ```
//!
//! A VMM in C uses the same ioctls on the header; an unmodified VMM (QEMU) gets them from
//! `elisactl serve`, which takes its VM fd with `pidfd_getfd`.

// Every `unsafe` is in `sys`, which allows it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod elisa;
mod region;
mod service;
mod sys;
mod vm;

pub use elisa::Elisa;
pub use elisa_uapi as uapi;
pub use region::Region;
pub use service::{Access, Service, ServiceSpec};
pub use vm::{ElisaVm, GrantInfo};

/// A memfd of `len` bytes made for regions: `memfd_create(name, MFD_CLOEXEC |
/// MFD_ALLOW_SEALING)`, sized, then sealed with `F_SEAL_SHRINK`, which
/// [`Elisa::create_region`] requires of a memfd (`EPERM` otherwise). The seal cannot be
/// removed: the file can grow but never shrink, so a region's pages stay the file's.
/// Hole punching (`fallocate(FALLOC_FL_PUNCH_HOLE)`) is still possible, and makes
/// services that use the region fail with `ENXIO` (`Documentation/api.rst`).
///
/// ```
/// let m = elisa_ioctls::region_memfd(c"shared", 4096)?;
/// assert!(m.set_len(0).is_err()); // F_SEAL_SHRINK
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn region_memfd(name: &std::ffi::CStr, len: u64) -> io::Result<std::fs::File> {
    sys::region_memfd(name, len)
}

/// [`ElisaVm::grant`] flag: the service's callers run at CPL 3 (`ELISA_GRANT_USER`).
pub const GRANT_USER: u32 = uapi::ELISA_GRANT_USER;

use std::io;
#[allow(unused_imports)] // for the links in the crate documentation
use std::os::fd::{AsFd, BorrowedFd};

/// `io::ErrorKind::InvalidInput` with the reason `elisa_uapi::check` gave.
fn invalid(reason: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, reason)
}

/// The fd plumbing every object type shares: it owns an [`OwnedFd`](std::os::fd::OwnedFd)
/// and converts from and to one.
macro_rules! fd_object {
    ($t:ident, $kind:expr) => {
        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.fd)
            }
        }
        /// Takes an fd of this kind, for example one received over a Unix socket, after
        /// checking that it is one (`InvalidInput` otherwise, saying what it is): the
        /// crate makes its ioctls only on elisa's own files, so that another driver that
        /// answers elisa's ioctl numbers, or a FUSE or CUSE file, can never make it take
        /// an fd it does not own.
        impl TryFrom<std::os::fd::OwnedFd> for $t {
            type Error = std::io::Error;
            fn try_from(fd: std::os::fd::OwnedFd) -> std::io::Result<Self> {
                crate::sys::check_kind(std::os::fd::AsFd::as_fd(&fd), $kind)?;
                Ok($t { fd })
            }
        }
        impl $t {
            /// The fd an ioctl on one of elisa's files just returned (`ioctl_new_fd`).
            #[allow(dead_code)]
            pub(crate) fn from_new_fd(fd: std::os::fd::OwnedFd) -> Self {
                $t { fd }
            }

            /// Takes `fd` without checking its kind (see the `TryFrom` impl).
            ///
            /// # Safety
            ///
            /// `fd` is an elisa file of this kind, or a file that answers every elisa
            /// ioctl with an error without touching the argument (`/dev/null` does,
            /// with `ENOTTY`): the methods trust a non-negative result to be a new fd
            /// that nothing else owns.
            #[allow(unsafe_code)]
            pub unsafe fn from_fd_unchecked(fd: std::os::fd::OwnedFd) -> Self {
                $t { fd }
            }
        }
        impl From<$t> for std::os::fd::OwnedFd {
            fn from(o: $t) -> Self {
                o.fd
            }
        }
    };
}
pub(crate) use fd_object;
