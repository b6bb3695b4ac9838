// SPDX-License-Identifier: Apache-2.0 OR MIT
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
    // exclusive reference for that long. `fd` is one of elisa's files: every object
    // checked its fd's kind when it took it (`check_kind`; only `from_fd_unchecked`, an
    // `unsafe fn`, skips that). On one of elisa's files of another kind than `T::CMD` is
    // for, elisa fails the call (ENOTTY) without touching `arg`.
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
    // new fd that nothing else owns, as `fd` is elisa's (see `ioctl`); ownership passes
    // to the `OwnedFd`.
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

/// The kinds of elisa file a [`crate::Elisa`], [`crate::ElisaVm`], [`crate::Region`] or
/// [`crate::Service`] owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/dev/elisa`: a misc character device.
    Device,
    /// An elisa-vm file (anonymous inode).
    Vm,
    /// An elisa-region file (anonymous inode).
    Region,
    /// An elisa-service file (anonymous inode).
    Service,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Device => "elisa device",
            Kind::Vm => "elisa-vm",
            Kind::Region => "elisa-region",
            Kind::Service => "elisa-service",
        }
    }
}

/// The character devices' major number that misc devices such as `/dev/elisa` share.
const MISC_MAJOR: u32 = 10;

/// Checks that `fd` is elisa's file of `kind` before an object takes it: the crate's
/// ioctls are made only on files checked so, which is what makes [`ioctl`] and
/// [`ioctl_new_fd`] sound (another driver could answer elisa's numbers, and a FUSE or
/// CUSE server could return any number as a "new" fd). `/dev/elisa` is a misc device
/// (major 10, which no user-space driver can claim) that sysfs names `elisa` where
/// sysfs is mounted, else `/proc/misc`; the other kinds are anonymous inodes, named
/// `anon_inode:elisa-vm` and so on in `/proc/thread-self/fd` (this thread's fd table,
/// which is the one the crate's ioctls use), a name only the kernel gives.
/// Whether a file of `mode` and `rdev` is elisa's misc device: a character device of major 10 whose minor
/// sysfs names `elisa` (`/sys/dev/char/10:N` links to `.../misc/elisa`) or, without
/// sysfs (a container may have none), `/proc/misc` does (`N elisa`). Neither to ask is a
/// refusal. The reason otherwise.
fn check_device_stat(mode: libc::mode_t, rdev: libc::dev_t) -> Result<(), String> {
    if mode & libc::S_IFMT != libc::S_IFCHR {
        return Err("not a character device".into());
    }
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    if major != MISC_MAJOR {
        return Err(format!("device {major}:{minor} is not a misc device"));
    }
    match std::fs::read_link(format!("/sys/dev/char/{major}:{minor}")) {
        Ok(l) if l.file_name().is_some_and(|n| n == "elisa") => return Ok(()),
        Ok(l) => return Err(format!("device {major}:{minor} is {}", l.display())),
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(format!("/sys/dev/char/{major}:{minor} cannot tell: {e}"))
        }
        Err(_) => {}
    }
    let misc = std::fs::read_to_string("/proc/misc")
        .map_err(|e| format!("neither sysfs nor /proc/misc names device {major}:{minor} ({e})"))?;
    let name = misc.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()?.parse::<u32>().ok()? == minor).then(|| w.next().unwrap_or("").to_owned())
    });
    match name.as_deref() {
        Some("elisa") => Ok(()),
        Some(n) => Err(format!("device {major}:{minor} is {n} (/proc/misc)")),
        None => Err(format!("/proc/misc has no device {major}:{minor}")),
    }
}

/// [`check_kind`]'s device test on a path, before it is opened: `stat` (following links,
/// as the open will); the file opened is checked again.
pub(crate) fn check_device_path(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path)?;
    check_device_stat(md.mode(), md.rdev()).map_err(|why| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an elisa device file ({why})", path.display()),
        )
    })
}

pub(crate) fn check_kind(fd: BorrowedFd<'_>, kind: Kind) -> io::Result<()> {
    let wrong = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "fd {} is not an {} file ({what})",
                fd.as_raw_fd(),
                kind.name()
            ),
        )
    };
    if kind == Kind::Device {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `fd` is open for the call (borrowed); fstat writes one `struct stat` at
        // the pointer, which has room for it.
        if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstat succeeded, so it filled the struct.
        let st = unsafe { st.assume_init() };
        return check_device_stat(st.st_mode, st.st_rdev).map_err(wrong);
    }
    let link = std::fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| wrong(format!("/proc/thread-self/fd cannot tell: {e}")))?;
    let want = format!("anon_inode:{}", kind.name());
    if link.as_os_str() != want.as_str() {
        return Err(wrong(format!("it is {}", link.display())));
    }
    Ok(())
}
