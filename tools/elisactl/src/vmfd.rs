// SPDX-License-Identifier: GPL-2.0
//! Taking the KVM VM fd of a running VMM (QEMU, or any other) that knows nothing of elisa.
//!
//! The VM fd is the one whose `/proc/<pid>/fd` link reads `anon_inode:kvm-vm`;
//! `pidfd_getfd` duplicates it into this process. Both need ptrace access to the VMM
//! (`PTRACE_MODE_READ` for the links, `PTRACE_MODE_ATTACH_REALCREDS` for the fd): root
//! (`CAP_SYS_PTRACE`), or the VMM's own user where Yama allows it
//! (`kernel.yama.ptrace_scope` = 0).

use crate::sys;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

/// What the link of a KVM VM fd reads (`anon_inode_getfile("kvm-vm", ...)` in KVM).
pub(crate) const KVM_VM_LINK: &str = "anon_inode:kvm-vm";

/// Why access to `pid` may have been refused, with what this host says.
pub(crate) fn ptrace_hint(pid: i32) -> String {
    let uid = |p: &str| {
        fs::metadata(p)
            .map(|m| m.uid().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let scope = fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "absent (no Yama)".into());
    format!(
        "taking a VMM's fd needs ptrace access to it: run as root (CAP_SYS_PTRACE), or as the \
         VMM's user with kernel.yama.ptrace_scope = 0 (here: elisactl runs as uid {}, process \
         {pid} as uid {}, ptrace_scope is {scope})",
        uid("/proc/self"),
        uid(&format!("/proc/{pid}"))
    )
}

fn with_context(e: io::Error, what: String, pid: i32) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => format!("; {}", ptrace_hint(pid)),
        Some(libc::ESRCH) => format!("; no process {pid}"),
        Some(libc::ENOSYS) => "; pidfd_getfd needs Linux 5.6 or later".into(),
        _ => String::new(),
    };
    io::Error::new(e.kind(), format!("{what}: {e}{hint}"))
}

/// The fd numbers of process `pid` whose link is a KVM VM.
pub(crate) fn kvm_vm_fds(pid: i32) -> io::Result<Vec<RawFd>> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds = Vec::new();
    let entries = fs::read_dir(&dir).map_err(|e| with_context(e, dir.clone(), pid))?;
    for entry in entries {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A link that went away meanwhile is not a VM fd.
        if fs::read_link(entry.path()).is_ok_and(|l| l.as_os_str() == KVM_VM_LINK) {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// A pidfd of process `pid`: what the fd is taken through, and readable when the
/// process exits.
pub(crate) fn open_pid(pid: i32) -> io::Result<OwnedFd> {
    sys::pidfd_open(pid).map_err(|e| with_context(e, "pidfd_open".into(), pid))
}

/// The process behind the pidfd this process inherited on fd `fd` (`--pidfd`): its PID
/// (in this PID namespace) and a copy of the pidfd. Refused unless `fd` is a pidfd of a
/// live process that this PID namespace sees.
pub(crate) fn inherited_pidfd(fd: RawFd) -> io::Result<(i32, OwnedFd)> {
    let dup = sys::dup_inherited(fd).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("--pidfd {fd}: {e} (the fd the VMM's pidfd was passed on must be open)"),
        )
    })?;
    // A pidfd's fdinfo has a "Pid:" line: the PID in this namespace, 0 where the process
    // is in another, -1 once it has exited.
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", dup.as_raw_fd()))?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse::<i32>().ok());
    let refuse =
        |why: String| io::Error::new(io::ErrorKind::InvalidInput, format!("--pidfd {fd}: {why}"));
    match pid {
        None => {
            let link = fs::read_link(format!("/proc/self/fd/{}", dup.as_raw_fd()))
                .map_or_else(|e| format!("({e})"), |l| l.to_string_lossy().into_owned());
            Err(refuse(format!(
                "not a pidfd (it is {})",
                crate::status::printable(&link)
            )))
        }
        Some(0) => Err(refuse("its process is in another PID namespace".into())),
        Some(p) if p < 0 || !sys::pidfd_alive(dup.as_fd()) => {
            Err(refuse("its process has exited".into()))
        }
        Some(p) => Ok((p, dup)),
    }
}

/// The KVM VM fd of process `pid` (behind `pidfd`): fd `want` (which must be a VM fd),
/// or its only one. Returns the fd number in `pid` and the duplicate.
pub(crate) fn take(
    pid: i32,
    pidfd: BorrowedFd<'_>,
    want: Option<RawFd>,
) -> io::Result<(RawFd, OwnedFd)> {
    let fds = kvm_vm_fds(pid)?;
    let fd = match (want, fds.as_slice()) {
        (Some(w), _) if fds.contains(&w) => w,
        (Some(w), _) => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("fd {w} of process {pid} is not a KVM VM fd (its VM fds: {fds:?})"),
            ))
        }
        (None, [one]) => *one,
        (None, []) => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("process {pid} has no KVM VM fd (no {KVM_VM_LINK} in /proc/{pid}/fd)"),
            ))
        }
        (None, many) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("process {pid} has several KVM VM fds {many:?}: choose one with --vm-fd"),
            ))
        }
    };
    let dup = sys::pidfd_getfd(pidfd, fd)
        .map_err(|e| with_context(e, format!("pidfd_getfd of fd {fd}"), pid))?;
    // The number may have been reused between the look and the take: check what we got.
    let link = fs::read_link(format!("/proc/self/fd/{}", dup.as_raw_fd()))?;
    if link.as_os_str() != KVM_VM_LINK {
        return Err(io::Error::other(format!(
            "fd {fd} of process {pid} changed meanwhile (now {})",
            // the VMM names its files (a memfd's name): escaped
            crate::status::printable(&link.to_string_lossy())
        )));
    }
    Ok((fd, dup))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// `--pidfd`: a pidfd of a live process gives its PID; an fd that is not open, not a
    /// pidfd, or the pidfd of a process that has exited is refused, saying which.
    #[test]
    fn inherited_pidfd_is_checked() {
        let me = std::process::id() as i32;
        let own = open_pid(me).unwrap();
        let (pid, copy) = inherited_pidfd(own.as_raw_fd()).unwrap();
        assert_eq!(pid, me);
        assert_ne!(copy.as_raw_fd(), own.as_raw_fd());

        let null = fs::File::open("/dev/null").unwrap();
        let e = inherited_pidfd(null.as_raw_fd()).unwrap_err();
        assert!(
            e.to_string().contains("not a pidfd (it is /dev/null)"),
            "{e}"
        );
        // A /proc/PID directory fd passes pidfd_send_signal, but it is not a pidfd.
        let dir = fs::File::open(format!("/proc/{me}")).unwrap();
        let e = inherited_pidfd(dir.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("not a pidfd"), "{e}");
        let e = inherited_pidfd(1 << 20).unwrap_err();
        assert!(e.to_string().contains("must be open"), "{e}");

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let theirs = open_pid(child.id() as i32).unwrap();
        child.wait().unwrap();
        let e = inherited_pidfd(theirs.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("its process has exited"), "{e}");
    }

    /// On this very process: no VM fd first; then, where /dev/kvm lets us make a VM, that
    /// one is found and taken through a pidfd (this process may always take its own).
    /// One test, so that no other test thread makes or closes a VM meanwhile.
    #[test]
    fn finds_and_takes_the_vm_fd() {
        let me = std::process::id() as i32;
        let pidfd = open_pid(me).unwrap();
        assert_eq!(kvm_vm_fds(me).unwrap(), Vec::<RawFd>::new());
        let e = take(me, pidfd.as_fd(), None).unwrap_err();
        assert!(e.to_string().contains("has no KVM VM fd"), "{e}");
        let e = take(me, pidfd.as_fd(), Some(0)).unwrap_err();
        assert!(e.to_string().contains("fd 0 of process"), "{e}");
        let e = open_pid(i32::MAX).unwrap_err();
        assert!(e.to_string().contains("no process"), "{e}");
        assert!(ptrace_hint(me).contains("ptrace_scope"));

        let Ok(kvm) = fs::File::options().read(true).write(true).open("/dev/kvm") else {
            return; // a host without KVM: the part above is what can be checked
        };
        // SAFETY: KVM_CREATE_VM (_IO(0xAE, 1)) takes an integer (the machine type) and
        // returns a new fd, which the OwnedFd then owns.
        let vm = unsafe { libc::ioctl(kvm.as_raw_fd(), 0xAE01, 0) };
        assert!(vm >= 0, "KVM_CREATE_VM: {}", io::Error::last_os_error());
        // SAFETY: as above, a new fd nothing else owns.
        let vm = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(vm) };
        assert_eq!(kvm_vm_fds(me).unwrap(), vec![vm.as_raw_fd()]);
        let (nr, dup) = take(me, pidfd.as_fd(), None).unwrap();
        assert_eq!(nr, vm.as_raw_fd());
        assert_ne!(dup.as_raw_fd(), nr);
        let (nr2, _dup2) = take(me, pidfd.as_fd(), Some(nr)).unwrap();
        assert_eq!(nr2, nr);
        // Two VM fds now (the duplicates): without --vm-fd that is ambiguous.
        let e = take(me, pidfd.as_fd(), None).unwrap_err();
        assert!(e.to_string().contains("several KVM VM fds"), "{e}");
    }
}
