// SPDX-License-Identifier: GPL-2.0
//! elisactl's only `unsafe`: the system calls std has no wrapper for (pidfds, memfd,
//! signalfd, poll). The elisa ioctls themselves go through `elisa-ioctls`.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A non-negative `r` is a new fd of this process that nothing else owns.
fn new_fd(r: libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the callers pass the result of a system call that returns a new fd
    // (pidfd_open, pidfd_getfd, memfd_create, signalfd) and hand it to no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_open(pid, 0)`: a pidfd of process `pid` (`O_CLOEXEC`).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    new_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// `pidfd_getfd(pidfd, fd, 0)`: a duplicate, in this process, of fd `fd` of the process
/// behind `pidfd` (`O_CLOEXEC`). Needs ptrace access to it (`PTRACE_MODE_ATTACH_REALCREDS`).
pub(crate) fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes three integers and touches no memory of ours; `pidfd` is
    // open for the call (borrowed).
    new_fd(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })
}

/// `memfd_create(name, MFD_CLOEXEC)`, as a file.
pub(crate) fn memfd(name: &CStr) -> io::Result<File> {
    // SAFETY: `name` is a NUL-terminated string that lives across the call.
    let r = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    Ok(new_fd(r.into())?.into())
}

/// Signals taken out of normal delivery: blocked in this (single-threaded) process and
/// read from a signalfd instead, so that none of them ends the process before it has
/// cleaned up, whenever it comes.
pub(crate) struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks `signals` and opens a signalfd for them.
    pub(crate) fn block(signals: &[libc::c_int]) -> io::Result<Self> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset then updates it
        // (a signal number it does not know is EINVAL, checked).
        let set = unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &s in signals {
                if libc::sigaddset(set.as_mut_ptr(), s) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            set.assume_init()
        };
        // SAFETY: `set` is an initialised sigset_t; no old mask is asked for.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        // SAFETY: -1 asks for a new signalfd; `set` is read during the call only.
        let fd = new_fd(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) }.into())?;
        Ok(Signals { fd })
    }

    /// The fd to poll.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// The next pending signal (blocks until one is).
    pub(crate) fn next(&self) -> io::Result<libc::c_int> {
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
        let n = size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is valid for `n` bytes of writes; a signalfd writes whole
        // signalfd_siginfo records, and a short read is refused below.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), n) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if r as usize != n {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        // SAFETY: zero-initialised, then filled by the read above; every bit pattern is a
        // valid signalfd_siginfo (integers only).
        let info = unsafe { info.assume_init() };
        Ok(info.ssi_signo as libc::c_int)
    }
}

/// `poll` for input on `fds`, without timeout, retrying after `EINTR`; which are ready.
pub(crate) fn poll_in<const N: usize>(fds: [BorrowedFd<'_>; N]) -> io::Result<[bool; N]> {
    let mut p = fds.map(|fd| libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: `p` is an array of N pollfd that poll may write (revents) during the
        // call; the fds are open for the call (borrowed).
        let r = unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, -1) };
        if r >= 0 {
            return Ok(p.map(|q| q.revents != 0));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        p.iter_mut().for_each(|q| q.revents = 0);
    }
}
