// SPDX-License-Identifier: GPL-2.0
//! The crate's only `unsafe`: the `ioctl` system call, and `memfd_create` and
//! `fcntl(F_ADD_SEALS)` for [`region_memfd`].
//!
//! Each argument struct of elisa-uapi is tied to its ioctl number by [`Ioctl`], an
//! `unsafe` trait whose implementations below are the ABI's table (number, struct,
//! whether a new fd comes back). [`ioctl`] and [`ioctl_new_fd`] are then safe: the
//! kernel reads and writes exactly that struct, and a new fd is owned by nobody else.
#![allow(unsafe_code)]

use elisa_uapi as uapi;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// An ioctl argument: `Self` is the struct that ioctl number [`Ioctl::CMD`] reads and
/// writes.
///
/// # Safety
///
/// The size encoded in `CMD` is `size_of::<Self>()`, and the kernel accesses nothing
/// beyond one `Self` at the pointer it is passed.
pub(crate) unsafe trait Ioctl: Sized {
    /// The ioctl number.
    const CMD: u32;
}

/// An ioctl that returns a new file descriptor on success.
///
/// # Safety
///
/// A non-negative return value of `CMD` is a new file descriptor of the calling process
/// that nothing else owns (the ioctl installed it and handed it out only as its return
/// value).
pub(crate) unsafe trait IoctlNewFd: Ioctl {}

// SAFETY: ELISA_GET_VERSION is _IOWR(.., struct elisa_version), mirrored by ElisaVersion
// (checked against the header by elisa-uapi's ABI test).
unsafe impl Ioctl for uapi::ElisaVersion {
    const CMD: u32 = uapi::ELISA_GET_VERSION;
}
// SAFETY: ELISA_ATTACH_VM is _IOW(.., struct elisa_attach_vm), mirrored by ElisaAttachVm.
unsafe impl Ioctl for uapi::ElisaAttachVm {
    const CMD: u32 = uapi::ELISA_ATTACH_VM;
}
// SAFETY: ELISA_ATTACH_VM returns a new elisa-vm fd (fd_install, api.rst).
unsafe impl IoctlNewFd for uapi::ElisaAttachVm {}
// SAFETY: ELISA_CREATE_REGION is _IOW(.., struct elisa_create_region).
unsafe impl Ioctl for uapi::ElisaCreateRegion {
    const CMD: u32 = uapi::ELISA_CREATE_REGION;
}
// SAFETY: ELISA_CREATE_REGION returns a new elisa-region fd.
unsafe impl IoctlNewFd for uapi::ElisaCreateRegion {}
// SAFETY: ELISA_CREATE_SERVICE is _IOW(.., struct elisa_create_service).
unsafe impl Ioctl for uapi::ElisaCreateService {
    const CMD: u32 = uapi::ELISA_CREATE_SERVICE;
}
// SAFETY: ELISA_CREATE_SERVICE returns a new elisa-service fd.
unsafe impl IoctlNewFd for uapi::ElisaCreateService {}
// SAFETY: ELISA_GRANT is _IOWR(.., struct elisa_grant), mirrored by ElisaGrant.
unsafe impl Ioctl for uapi::ElisaGrant {
    const CMD: u32 = uapi::ELISA_GRANT;
}

/// `ioctl(fd, T::CMD, arg)`; the errno on failure.
pub(crate) fn ioctl<T: Ioctl>(fd: BorrowedFd<'_>, arg: &mut T) -> io::Result<i32> {
    // SAFETY: `fd` is open for the duration of the call (borrowed); by the `Ioctl`
    // contract the kernel reads and writes at most one `T` at `arg`, which is a valid,
    // exclusive reference for that long. On a file that is not of the kind `T::CMD` is
    // for, the call fails (ENOTTY) without touching `arg`: the number carries elisa's
    // type byte 0xE6, which no in-tree driver uses, and `T`'s size and direction.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), T::CMD as _, arg as *mut T) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// [`ioctl`] for an ioctl that returns a new fd, which the result owns.
pub(crate) fn ioctl_new_fd<T: IoctlNewFd>(fd: BorrowedFd<'_>, arg: &mut T) -> io::Result<OwnedFd> {
    let r = ioctl(fd, arg)?;
    // SAFETY: by the `IoctlNewFd` contract `r` (non-negative, `ioctl` returned `Ok`) is a
    // new fd that nothing else owns; ownership passes to the `OwnedFd`.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`, `len` bytes long, sealed with
/// `F_SEAL_SHRINK`.
pub(crate) fn region_memfd(name: &CStr, len: u64) -> io::Result<File> {
    // SAFETY: `name` is a NUL-terminated string that lives across the call; the flags
    // are valid.
    let r =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new fd of this process that nothing else owns.
    let f = File::from(unsafe { OwnedFd::from_raw_fd(r) });
    f.set_len(len)?;
    // SAFETY: fcntl(F_ADD_SEALS) takes the fd, which `f` keeps open, and an integer; it
    // touches no memory of ours.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}
