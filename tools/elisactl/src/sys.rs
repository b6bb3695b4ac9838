// SPDX-License-Identifier: GPL-2.0
//! elisactl's only `unsafe`: the system calls std has no wrapper for (pidfds, memfd,
//! signals, ppoll, mmap) and the accesses to a shared mapping. The elisa ioctls
//! themselves go through `elisa-ioctls`.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A non-negative `r` is a new fd of this process that nothing else owns.
fn new_fd(r: libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the callers pass the result of a system call that returns a new fd
    // (pidfd_open, pidfd_getfd, openat2, memfd_create, fcntl F_DUPFD_CLOEXEC) and hand it to
    // no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A copy (close-on-exec) of fd `fd` of this process, which it inherited: `EBADF` if
/// that fd is not open.
pub(crate) fn dup_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC reads no memory; on an fd number that is not open it fails
    // with EBADF, and on success it returns a new fd (kept apart from 0, 1 and 2).
    new_fd(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) }.into())
}

/// The file system type (`statfs.f_type`, a magic number) of the file behind `fd`.
pub(crate) fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let mut st = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `fd` is open for the call (borrowed); fstatfs writes one `struct statfs` at
    // the pointer, which has room for it.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatfs succeeded, so it filled the struct.
    Ok(unsafe { st.assume_init() }.f_type)
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

/// `openat2(AT_FDCWD, path, flags | O_CLOEXEC, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`:
/// opens `path` only if no component of it is a symbolic link (`ELOOP` otherwise), so
/// that whoever can write a directory on the way cannot point it elsewhere.
pub(crate) fn open_no_links(path: &CStr, flags: libc::c_int) -> io::Result<File> {
    /// The kernel's `struct open_how` (its first version, 24 bytes; libc's is not
    /// constructible).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        // O_NOCTTY: a terminal put under the name given never becomes elisactl's
        flags: (flags | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode: 0,
        resolve: libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `path` is NUL-terminated and `how` is an initialised `open_how` whose size
    // is passed; both live across the call, which writes neither.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    Ok(new_fd(r)?.into())
}

/// `capget`/`capset`'s header (`struct __user_cap_header_struct`).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One of `capget`/`capset`'s two data words (`struct __user_cap_data_struct`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two words.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// `f` run with this thread's effective capability set empty, then the set put back (the
/// permitted set is kept, so putting it back is allowed). The raw system calls change only
/// the calling thread. An error if the set cannot be emptied; the process aborts if it
/// cannot be put back (elisactl would go on without the capabilities it checked it has).
pub(crate) fn without_effective_caps<T>(f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut saved = [CapData::default(); 2];
    // SAFETY: capget writes two data words, which `saved` has, and the header.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, saved.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut none = saved;
    for d in none.iter_mut() {
        d.effective = 0;
    }
    // SAFETY: capset reads the header and two data words; this thread only (pid 0).
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, none.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let r = f();
    // SAFETY: as above; the effective set was a subset of the permitted one, which is
    // unchanged.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, saved.as_ptr()) } != 0 {
        die_unrestored("effective capabilities");
    }
    r
}

/// `f` run with this thread's supplementary groups set to `groups`, then put back. The
/// raw system calls change only the calling thread (glibc's `setgroups` would change every
/// thread). setgroups needs CAP_SETGID: when the groups are already those (an elisactl that
/// is not root but the VMM's own user), nothing is changed. The process aborts if the old
/// groups cannot be put back (nothing more may be done with the VMM's).
fn with_groups<T>(groups: &[u32], f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    // SAFETY: getgroups with size 0 only counts; then it writes at most `n` ids into a
    // buffer of `n`.
    let old_groups = unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut v = vec![0 as libc::gid_t; n as usize];
        let got = libc::getgroups(n, v.as_mut_ptr());
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        v.truncate(got as usize);
        v
    };
    // SAFETY: SYS_setgroups reads `len` ids from the pointer, which points at that many;
    // it changes this thread's credentials only.
    let set_groups =
        |g: &[libc::gid_t]| unsafe { libc::syscall(libc::SYS_setgroups, g.len(), g.as_ptr()) == 0 };
    let same_groups = {
        let (mut a, mut b) = (old_groups.clone(), groups.to_vec());
        a.sort_unstable();
        b.sort_unstable();
        a == b
    };
    if !same_groups && !set_groups(groups) {
        return Err(io::Error::last_os_error());
    }
    let r = f();
    if !same_groups && !set_groups(&old_groups) {
        die_unrestored("supplementary groups");
    }
    r
}

/// Ends the process: a thread could not get back credentials it changed for a moment.
fn die_unrestored(what: &str) -> ! {
    eprintln!(
        "elisactl: cannot restore the {what}: {}",
        io::Error::last_os_error()
    );
    std::process::abort();
}

/// [`open_no_links`] with this thread's filesystem credentials and supplementary groups
/// those of another process, `uid`, `gid` and `groups`, for the open (`setgroups`,
/// `setfsgid`, `setfsuid`, and no effective capability: the permission checks are that
/// user's, and none of elisactl's capabilities apply), then put back. Only the calling
/// thread changes.
pub(crate) fn open_no_links_as(
    path: &CStr,
    flags: libc::c_int,
    uid: u32,
    gid: u32,
    groups: &[u32],
) -> io::Result<File> {
    with_groups(groups, || {
        // SAFETY: setfsgid and setfsuid change only this thread's filesystem credentials
        // and touch no memory; each returns the previous value. An invalid id (-1) changes
        // nothing and returns the current one, which shows whether the change took.
        let (old_gid, old_uid, now_gid, now_uid) = unsafe {
            let og = libc::setfsgid(gid);
            let ou = libc::setfsuid(uid);
            (og, ou, libc::setfsgid(u32::MAX), libc::setfsuid(u32::MAX))
        };
        // With the filesystem ids changed, no effective capability either: the kernel
        // drops the file capabilities (CAP_DAC_OVERRIDE and the like) only when the
        // filesystem uid goes from 0 to another, and not at all under
        // SECBIT_NO_SETUID_FIXUP or for an elisactl that is not root but holds
        // capabilities.
        let r = if now_uid as u32 == uid && now_gid as u32 == gid {
            without_effective_caps(|| open_no_links(path, flags))
        } else {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        };
        // SAFETY: as above; puts back what the thread had.
        unsafe {
            libc::setfsuid(old_uid as u32);
            libc::setfsgid(old_gid as u32);
        }
        r
    })
}

/// The soft RLIMIT_MEMLOCK of process `pid`, in bytes (`u64::MAX`: unlimited).
pub(crate) fn memlock_of(pid: libc::pid_t) -> io::Result<u64> {
    let mut lim = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 with no new limit only writes the old one into `lim`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            pid,
            libc::RLIMIT_MEMLOCK,
            std::ptr::null::<libc::rlimit64>(),
            &mut lim as *mut libc::rlimit64,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

/// This process's RLIMIT_MEMLOCK, read (`new` null) or set: the old limits.
fn prlimit_memlock(new: Option<&libc::rlimit64>) -> io::Result<libc::rlimit64> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new = new.map_or(std::ptr::null(), |n| n as *const libc::rlimit64);
    // SAFETY: prlimit64 reads the new limit (or none, for null) and writes the old one,
    // both rlimit64 values that live across the call; pid 0 is this process.
    let r = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_MEMLOCK,
            new,
            &mut old as *mut libc::rlimit64,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old)
}

/// This process's RLIMIT_MEMLOCK soft limit set to `cur`, the VMM's, with the hard limit
/// raised to it where it is lower (with CAP_SYS_RESOURCE, as root has). An elisactl that may not
/// raise it keeps its own hard limit, and says so: the regions are then charged against
/// that lower limit. Returns the old limits, for [`restore_memlock`].
fn set_memlock(cur: u64) -> io::Result<libc::rlimit64> {
    let old = prlimit_memlock(None)?;
    let raised = libc::rlimit64 {
        rlim_cur: cur,
        rlim_max: old.rlim_max.max(cur),
    };
    match prlimit_memlock(Some(&raised)) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let capped = libc::rlimit64 {
                rlim_cur: cur.min(old.rlim_max),
                rlim_max: old.rlim_max,
            };
            prlimit_memlock(Some(&capped))?;
            let _ = writeln!(
                io::stderr(),
                "elisactl: RLIMIT_MEMLOCK {cur} (the VMM's) is above elisactl's hard limit \
                 {}, which it may not raise (no CAP_SYS_RESOURCE): regions are charged against {}",
                old.rlim_max,
                old.rlim_max
            );
        }
        Err(e) => return Err(e),
    }
    Ok(old)
}

/// This process's RLIMIT_MEMLOCK put back to `old` (lowering a hard limit needs no right).
fn restore_memlock(old: &libc::rlimit64) -> io::Result<()> {
    prlimit_memlock(Some(old)).map(|_| ())
}

/// `f` run as another user for what it pins or allocates in the kernel (an elisa region's
/// pages are charged to the caller's user, `user_struct->locked_vm`, against the caller's
/// RLIMIT_MEMLOCK unless it has CAP_IPC_LOCK): this thread's real and effective uid and
/// gid and its groups become `uid`, `gid` and `groups` (the saved ids stay, so that the
/// thread can return), its effective capability set is empty, and the process's
/// RLIMIT_MEMLOCK soft limit is `memlock` (the hard limit raised to it where root may,
/// `set_memlock`); then all is put back,
/// and the process aborts if it cannot be. When this thread's real and effective uid are
/// `uid` already (an elisactl that is the VMM's own user, or root serving a VMM that runs
/// as root), the ids stay, but the capabilities are dropped and the limit set all the
/// same: root's CAP_IPC_LOCK would skip the charge and its limit (a review).
///
/// While the real uid is the VMM's, the VMM may signal this process (`kill` compares real
/// uids): it can end the elisactl that serves it, nothing more (the process is not
/// dumpable while its ids differ, so it cannot be traced or read through /proc).
pub(crate) fn charged_as<T>(
    uid: u32,
    gid: u32,
    groups: &[u32],
    memlock: u64,
    f: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let (mut ru, mut eu, mut su) = (0, 0, 0);
    let (mut rg, mut eg, mut sg) = (0, 0, 0);
    // SAFETY: each writes three ids into the variables given.
    let got = unsafe {
        libc::getresuid(&mut ru, &mut eu, &mut su) == 0
            && libc::getresgid(&mut rg, &mut eg, &mut sg) == 0
    };
    if !got {
        return Err(io::Error::last_os_error());
    }
    if ru == uid && eu == uid {
        let old = set_memlock(memlock)?;
        let r = without_effective_caps(f);
        if restore_memlock(&old).is_err() {
            die_unrestored("RLIMIT_MEMLOCK");
        }
        return r;
    }
    // SAFETY: setresgid takes three ids (-1: unchanged) and touches no memory; the raw
    // system call changes only this thread's credentials.
    let setresgid =
        |r: u32, e: u32| unsafe { libc::syscall(libc::SYS_setresgid, r, e, u32::MAX) == 0 };
    // SAFETY: the same for setresuid.
    let setresuid =
        |r: u32, e: u32| unsafe { libc::syscall(libc::SYS_setresuid, r, e, u32::MAX) == 0 };
    with_groups(groups, || {
        if !setresgid(gid, gid) {
            return Err(io::Error::last_os_error());
        }
        let r = match set_memlock(memlock) {
            Err(e) => Err(e),
            Ok(old) => {
                let r = if setresuid(uid, uid) {
                    // Dropped by the kernel already unless SECBIT_NO_SETUID_FIXUP is set.
                    let r = without_effective_caps(f);
                    if !setresuid(ru, eu) {
                        die_unrestored("user ids");
                    }
                    r
                } else {
                    Err(io::Error::last_os_error())
                };
                if restore_memlock(&old).is_err() {
                    die_unrestored("RLIMIT_MEMLOCK");
                }
                r
            }
        };
        if !setresgid(rg, eg) {
            die_unrestored("group ids");
        }
        r
    })
}

/// Whether the process behind `pidfd` is still alive (`pidfd_send_signal` of signal 0):
/// then its PID names it and no other.
pub(crate) fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: signal 0 sends nothing; the info pointer is null, as the call allows.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

/// The access mode (`O_RDONLY`, `O_WRONLY` or `O_RDWR`) of the open file behind `fd`.
pub(crate) fn access_mode(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL takes no argument and touches no memory of ours; `fd` is open for
    // the call (borrowed).
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r & libc::O_ACCMODE)
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

/// A shared, writable mapping of the first `len` bytes of a file (`mmap(MAP_SHARED)`),
/// unmapped when dropped. It is an [`elisa_switch::Region`], so that the switch's own
/// header builders (`init_port`, `init_config`) write the file: every access is a
/// volatile one of the mapping (a VMM or guest may map the file too), and an access
/// outside it panics.
pub(crate) struct SharedMap {
    base: *mut u8,
    len: usize,
}

impl SharedMap {
    /// Maps `len` (> 0) bytes of `file`, which must be open for reading and writing and
    /// at least that long.
    pub(crate) fn new(file: &File, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a new mapping chosen by the kernel (no address given), of an open fd;
        // nothing of ours is touched. The result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap {
            base: p.cast(),
            len,
        })
    }

    /// The address of `off..off + n`, which must lie inside the mapping (else a panic).
    fn at(&self, off: usize, n: usize) -> *mut u8 {
        assert!(
            off <= self.len && n <= self.len - off,
            "access {off:#x}+{n:#x} outside a mapping of {:#x} bytes",
            self.len
        );
        // SAFETY: off + n <= len: inside the mapping (or one past it for n = 0).
        unsafe { self.base.add(off) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is this object's mapping, and no reference into it
        // outlives it (accesses copy in and out).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

// The switch's accesses are aligned (offsets from the C header's layout); unaligned ones
// are still correct (read_unaligned/write_unaligned on x86 are plain moves).
impl elisa_switch::Region for SharedMap {
    fn load_u32(&self, off: usize) -> u32 {
        // SAFETY: `at` checked the 4 bytes are mapped; a volatile read of them.
        unsafe { self.at(off, 4).cast::<u32>().read_volatile() }
    }
    fn store_u32(&self, off: usize, val: u32) {
        // SAFETY: as load_u32; the mapping is writable.
        unsafe { self.at(off, 4).cast::<u32>().write_volatile(val) }
    }
    fn load_u64(&self, off: usize) -> u64 {
        // SAFETY: as load_u32, for 8 bytes.
        unsafe { self.at(off, 8).cast::<u64>().read_volatile() }
    }
    fn store_u64(&self, off: usize, val: u64) {
        // SAFETY: as store_u32, for 8 bytes.
        unsafe { self.at(off, 8).cast::<u64>().write_volatile(val) }
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        let p = self.at(off, buf.len());
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `at` checked off..off + buf.len(); i is below buf.len().
            *b = unsafe { p.add(i).read_volatile() };
        }
    }
    fn write(&self, off: usize, buf: &[u8]) {
        let p = self.at(off, buf.len());
        for (i, b) in buf.iter().enumerate() {
            // SAFETY: as read; the mapping is writable.
            unsafe { p.add(i).write_volatile(*b) };
        }
    }
    fn copy_from(&self, off: usize, src: &Self, src_off: usize, len: usize) {
        let (d, s) = (self.at(off, len), src.at(src_off, len));
        for i in 0..len {
            // SAFETY: both ranges were checked; byte by byte, so overlap is harmless.
            unsafe { d.add(i).write_volatile(s.add(i).read_volatile()) };
        }
    }
    fn try_lock(&self, off: usize) -> bool {
        let p = self.at(off, 4);
        if p as usize % 4 != 0 {
            return false;
        }
        // SAFETY: an aligned, mapped u32 (checked); other processes sharing the file
        // use it atomically too (the switch's lock).
        unsafe { AtomicU32::from_ptr(p.cast()) }
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
    fn add_u32(&self, off: usize, val: u32) -> u32 {
        let p = self.at(off, 4);
        if p as usize % 4 != 0 {
            return 0;
        }
        // SAFETY: as try_lock.
        unsafe { AtomicU32::from_ptr(p.cast()) }
            .fetch_add(val, Ordering::Relaxed)
            .wrapping_add(val)
    }
    fn unlock(&self, off: usize) {
        let p = self.at(off, 4);
        assert!(
            p as usize % 4 == 0,
            "unlock of an unaligned u32 at {off:#x}"
        );
        // SAFETY: as try_lock.
        unsafe { AtomicU32::from_ptr(p.cast()) }.store(0, Ordering::Release);
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
