// SPDX-License-Identifier: GPL-2.0
//! elisactl's only `unsafe`: the system calls std has no wrapper for (pidfds, memfd,
//! signals, ppoll). The elisa ioctls themselves go through `elisa-ioctls`.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// A non-negative `r` is a new fd of this process that nothing else owns.
fn new_fd(r: libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the callers pass the result of a system call that returns a new fd
    // (pidfd_open, pidfd_getfd, memfd_create) and hand it to no one else.
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

/// Signals caught by `on_signal`, not yet returned by [`Signals::wait`]: bit `n` is
/// signal `n`.
static PENDING: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Async-signal-safe: one atomic operation.
    if (0..64).contains(&sig) {
        PENDING.fetch_or(1 << sig, Ordering::SeqCst);
    }
}

/// Signals taken out of normal delivery: blocked in this (single-threaded) process except
/// while [`Signals::wait`] waits, and then only recorded, so that none of them ends the
/// process before it has cleaned up, whenever it comes. (A signalfd would be simpler, but
/// kernels without `CONFIG_SIGNALFD`, such as the test kernel, lack it; `ppoll` is
/// always there.)
pub(crate) struct Signals {
    /// The mask before [`Signals::block`]: the one `ppoll` waits with.
    wait_mask: libc::sigset_t,
}

impl Signals {
    /// Catches `signals` with a handler that records them, and blocks them.
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
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `set` is an initialised sigset_t; `old` is valid for the old mask, which
        // pthread_sigmask writes on success.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        // SAFETY: written by the successful call above.
        let mut wait_mask = unsafe { old.assume_init() };
        for &s in signals {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; its
            // handler is `on_signal`, which is async-signal-safe (one atomic operation).
            // `wait_mask` is initialised; the signal number was accepted above.
            let r = unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigdelset(&mut wait_mask, s);
                libc::sigaction(s, &sa, std::ptr::null_mut())
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Signals { wait_mask })
    }

    /// Waits until one of the signals has come (returns it; SIGINT and SIGTERM before
    /// others) or `fd` is readable (returns `None`).
    pub(crate) fn wait(&self, fd: BorrowedFd<'_>) -> io::Result<Option<libc::c_int>> {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            let pending = PENDING.load(Ordering::SeqCst);
            if pending != 0 {
                let sig = [libc::SIGTERM, libc::SIGINT]
                    .into_iter()
                    .find(|&s| pending & (1 << s) != 0)
                    .unwrap_or(pending.trailing_zeros() as libc::c_int);
                PENDING.fetch_and(!(1 << sig), Ordering::SeqCst);
                return Ok(Some(sig));
            }
            // SAFETY: `p` is one pollfd that ppoll may write (revents) during the call;
            // the fd is open for the call (borrowed); no timeout; `wait_mask` is an
            // initialised sigset_t, the mask while waiting (our signals unblocked, so
            // that one that came before the call is delivered in it: no lost wake-up).
            let r = unsafe { libc::ppoll(&mut p, 1, std::ptr::null(), &self.wait_mask) };
            if r > 0 {
                return Ok(None);
            }
            let e = io::Error::last_os_error();
            if r < 0 && e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    /// A signal that came while blocked is returned by the next wait (not lost, and the
    /// process lives on); a readable fd returns `None`. SIGUSR1/2 are the test's own.
    #[test]
    fn signals_are_waited_for() {
        let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        let signals = Signals::block(&[libc::SIGUSR1, libc::SIGUSR2]).unwrap();
        // SAFETY: raise sends a signal to this thread, where it is blocked: it stays
        // pending until `wait` unblocks it, and then only sets a bit.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
        assert_eq!(signals.wait(r.as_fd()).unwrap(), Some(libc::SIGUSR2));
        w.write_all(b"x").unwrap();
        assert_eq!(signals.wait(r.as_fd()).unwrap(), None);
        let mut byte = [0];
        (&r).read_exact(&mut byte).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
        assert_eq!(signals.wait(r.as_fd()).unwrap(), Some(libc::SIGUSR1));
    }
}
