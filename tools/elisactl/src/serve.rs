// SPDX-License-Identifier: GPL-2.0
//! `elisactl serve`: elisa for a VMM that knows nothing of it (an unmodified QEMU).
//!
//! elisactl takes the VMM's KVM VM fd (`vmfd`), attaches the VM, makes the regions and
//! the service, grants the service at G, prints the gate index and the trusted window,
//! and then holds the elisa-vm fd until SIGINT or SIGTERM, or until the VMM exits. The
//! attachment lives exactly as long as that fd, so it ends when elisactl does, however
//! it ends. SIGHUP grants the service again (vCPUs created since get their gate).
//!
//! The VMM pays for what is made for it: elisactl joins its memory cgroup, makes its
//! regions as its user under its RLIMIT_MEMLOCK (`sys::charged_as`), and the module
//! charges a grant to the VM owner's cgroup.

use crate::{sys, vmfd};
use elisa_ioctls::{uapi, Access, Elisa, ElisaVm, GrantInfo, Service, ServiceSpec, GRANT_USER};
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A line on standard output that never panics: once the VM is attached, a reader of
/// elisactl's output that went away (a closed pipe, a hung-up terminal) must not end
/// it, which would detach the VM.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub(crate) const USAGE: &str = "\
usage: elisactl serve --pid PID|--pidfd N [--expect-uid UID] [--vm-fd N] --code FILE --code-gva GVA
                      [--entry-offset N] [--region PATH[:OFFSET:LEN]@GVA[:ro|:rw]]...
                      --g G [--user] [--name NAME]

  --pid PID          the VMM process (QEMU); needs ptrace access to it (root, or its user
                     with kernel.yama.ptrace_scope = 0)
  --pidfd N          instead of --pid: the VMM process as a pidfd open on fd N, passed in
                     by whoever started the VMM: it names that process and no later one
                     of the same number
  --expect-uid UID   refuse, before any file is opened, unless that process runs as UID:
                     a number names whatever process has it (pidof matches names a VMM
                     sets, and a number is used again once its process ends)
  --vm-fd N          its KVM VM fd, when it has several (links anon_inode:kvm-vm)
  --code FILE        the service's code, raw bytes (up to 64 KiB; padded with int3 to a
                     4 KiB multiple): a stored file of root's, never the VMM's own fd
  --code-gva GVA     where the sub view maps the code (4 KiB aligned)
  --entry-offset N   the entry point in the code (default 0)
  --region ...       a region: a memfd, tmpfs or hugetlbfs file (for example QEMU's
                     memory-backend file under /dev/shm or on a hugetlbfs mount: a path
                     must be the VMM's own file, opened as the VMM; or /proc/PID/fd/N of
                     a memfd sealed with F_SEAL_SHRINK), the range
                     OFFSET..OFFSET+LEN of it (default: the whole file), mapped at GVA
                     read-write (default) or read-only; up to 8
  --g G              the guest's entry block (G - 0x2000 at or above 4 GiB)
  --user             the callers run at CPL 3 (ELISA_GRANT_USER)
  --name NAME        the gate's name in the printed guest parameter (1 to 31 of
                     A-Z a-z 0-9 . _ -), by which guest programs call it

Numbers are decimal or 0x hex, with an optional K, M or G (KiB, MiB, GiB) suffix.
The VMM pays for its regions: elisactl joins its memory cgroup and makes them as its
user, under its RLIMIT_MEMLOCK, with no capability.
Prints the gate index and the trusted window, then keeps the VM attached until SIGINT
or SIGTERM, or until the VMM exits; SIGHUP grants again for vCPUs created since.";

/// One `--region`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegionArg {
    pub(crate) path: PathBuf,
    /// Offset and length; `None`: the whole file.
    pub(crate) range: Option<(u64, u64)>,
    pub(crate) gva: u64,
    pub(crate) access: Access,
}

/// The VMM process: `--pid` or `--pidfd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Process {
    /// Its number, opened as a pidfd first thing (`pidfd_open`).
    Pid(i32),
    /// A pidfd of it that this process inherited on that fd number.
    Pidfd(RawFd),
}

/// The arguments of `serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServeArgs {
    pub(crate) process: Process,
    /// `--expect-uid`: the uid the process must run as.
    pub(crate) expect_uid: Option<u32>,
    pub(crate) vm_fd: Option<i32>,
    pub(crate) code: PathBuf,
    pub(crate) code_gva: u64,
    pub(crate) entry_offset: u64,
    pub(crate) regions: Vec<RegionArg>,
    pub(crate) g: u64,
    pub(crate) user: bool,
    /// The gate's name for the guest (`elisa_guest.gate=G:index:NAME`).
    pub(crate) name: Option<String>,
}

/// A number: decimal or `0x` hex, with an optional `K`, `M` or `G` suffix (powers of 1024).
pub(crate) fn parse_u64(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    };
    v.ok()
        .and_then(|v| v.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a number"))
}

/// `PATH[:OFFSET:LEN]@GVA[:ro|:rw]`. The last `@` ends the path; the two fields before
/// it are the range when both are numbers.
pub(crate) fn parse_region(s: &str) -> Result<RegionArg, String> {
    let (file, place) = s
        .rsplit_once('@')
        .ok_or_else(|| format!("region {s:?}: no @GVA"))?;
    let (gva, access) = match place.split_once(':') {
        None => (place, Access::ReadWrite),
        Some((g, "rw")) => (g, Access::ReadWrite),
        Some((g, "ro")) => (g, Access::ReadOnly),
        Some((_, x)) => return Err(format!("region {s:?}: access {x:?} is not ro or rw")),
    };
    let gva = parse_u64(gva).map_err(|e| format!("region {s:?}: GVA {e}"))?;
    let mut f = file.rsplitn(3, ':');
    let (path, range) = match (f.next(), f.next(), f.next()) {
        (Some(len), Some(off), Some(path)) => match (parse_u64(off), parse_u64(len)) {
            (Ok(off), Ok(len)) => (path, Some((off, len))),
            _ => (file, None),
        },
        _ => (file, None),
    };
    if path.is_empty() {
        return Err(format!("region {s:?}: no file"));
    }
    Ok(RegionArg {
        path: path.into(),
        range,
        gva,
        access,
    })
}

/// Parses the arguments after `serve`; `Ok(None)` for `--help`.
pub(crate) fn parse(args: &[String]) -> Result<Option<ServeArgs>, String> {
    let (mut process, mut vm_fd, mut code, mut code_gva, mut g) = (None, None, None, None, None);
    let (mut entry_offset, mut regions, mut user, mut gate_name) = (None, Vec::new(), false, None);
    let mut expect_uid = None;
    let Some(opts) = crate::options(
        args,
        &["--user"],
        &[
            "--pid",
            "--pidfd",
            "--expect-uid",
            "--vm-fd",
            "--code",
            "--code-gva",
            "--entry-offset",
            "--g",
            "--region",
            "--name",
        ],
    )?
    else {
        return Ok(None);
    };
    fn once<T>(slot: &mut Option<T>, name: &str, v: T) -> Result<(), String> {
        match slot.replace(v) {
            Some(_) => Err(format!("{name} given twice")),
            None => Ok(()),
        }
    }
    let mut set_process = |p| match process.replace(p) {
        Some(_) => Err("--pid or --pidfd given twice (give one of them once)".to_string()),
        None => Ok(()),
    };
    for (name, value) in opts {
        let Some(value) = value else {
            user = true;
            continue;
        };
        let num = |v: &str| parse_u64(v).map_err(|e| format!("{name}: {e}"));
        let int = |v: &str| -> Result<i32, String> {
            let n = num(v)?;
            i32::try_from(n).map_err(|_| format!("{name}: {n} is too large"))
        };
        match name {
            "--pid" => set_process(Process::Pid(int(&value)?))?,
            "--pidfd" => set_process(Process::Pidfd(int(&value)?))?,
            "--expect-uid" => {
                let n = num(&value)?;
                let uid = u32::try_from(n).map_err(|_| format!("{name}: {n} is too large"))?;
                once(&mut expect_uid, name, uid)?
            }
            "--vm-fd" => once(&mut vm_fd, name, int(&value)?)?,
            "--code" => once(&mut code, name, PathBuf::from(value))?,
            "--code-gva" => once(&mut code_gva, name, num(&value)?)?,
            "--entry-offset" => once(&mut entry_offset, name, num(&value)?)?,
            "--g" => once(&mut g, name, num(&value)?)?,
            "--region" => regions.push(parse_region(&value)?),
            _ => {
                if elisa_guest::param::GateName::new(&value).is_none() {
                    return Err(format!(
                        "--name {value:?}: 1 to 31 characters of A-Z a-z 0-9 . _ -"
                    ));
                }
                once(&mut gate_name, name, value)?
            }
        }
    }
    let need = |what: &str| format!("{what} is required");
    // What the kernel would refuse without the VM is refused here, before anything is
    // opened or pinned.
    if let Some(g) = g {
        if !elisa_guest::param::valid_entry_address(g) {
            return Err(format!(
                "--g {g:#x}: G must be 4 KiB aligned, with G - 0x2000 at or above 4 GiB and \
                 G - 0x2000 .. G + 0x3000 canonical (Documentation/api.rst, ELISA_GRANT)"
            ));
        }
        if user && !elisa_guest::param::in_lower_half(g) {
            return Err(format!(
                "--g {g:#x} with --user: guest user space maps only the lower half; \
                 choose a G below 0x800000000000"
            ));
        }
    }
    if user && gate_name.is_some() {
        return Err(
            "--name names a gate for elisa_guest.ko, whose calls run at CPL 0; a --user \
             grant's callers are guest user space (they take G and the gate index)"
                .into(),
        );
    }
    if code_gva.is_some_and(|v| v % 4096 != 0) {
        return Err("--code-gva: a multiple of 4096".into());
    }
    if regions.len() > uapi::ELISA_SERVICE_MAX_REGIONS {
        return Err(format!(
            "{} regions: a service maps at most {}",
            regions.len(),
            uapi::ELISA_SERVICE_MAX_REGIONS
        ));
    }
    Ok(Some(ServeArgs {
        process: process.ok_or_else(|| need("--pid or --pidfd"))?,
        expect_uid,
        vm_fd,
        code: code.ok_or_else(|| need("--code"))?,
        code_gva: code_gva.ok_or_else(|| need("--code-gva"))?,
        entry_offset: entry_offset.unwrap_or(0),
        regions,
        g: g.ok_or_else(|| need("--g"))?,
        user,
        name: gate_name,
    }))
}

/// Where `path` is `/proc/PID/fd/N`: `Some((PID, N))`, an fd of process PID (`None`:
/// another path). `Err` for a `/proc/.../fd/...` path that names no process by number
/// (`self`, `thread-self`) or no fd.
pub(crate) fn proc_fd_path(path: &Path) -> Result<Option<(i32, RawFd)>, String> {
    let Ok(rest) = path.strip_prefix("/proc") else {
        return Ok(None);
    };
    let parts: Vec<_> = rest.iter().map(|c| c.to_str()).collect();
    let [p, Some("fd"), n] = parts.as_slice() else {
        return Ok(None);
    };
    let pid = p.and_then(|p| p.parse::<i32>().ok()).filter(|&p| p > 0);
    let fd = n.and_then(|n| n.parse::<RawFd>().ok()).filter(|&n| n >= 0);
    match (pid, fd) {
        (Some(pid), Some(fd)) => Ok(Some((pid, fd))),
        _ => Err(format!(
            "{}: give /proc/PID/fd/N with the process's number and an fd number",
            path.display()
        )),
    }
}

/// What a file is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// Service code, read: it runs in every sub view with the EPTP list writable, so it is
    /// as trusted as the kernel.
    Code,
    /// A region, pinned read-write for the VMM's guests.
    Region,
}

/// The uid and gid and the supplementary groups of process `pid`, the one behind `pidfd`
/// (checked alive after the read, so that the PID was not reused meanwhile). Its real,
/// effective, saved and filesystem ids must agree: a VMM that runs a set-user-ID program
/// (which keeps the VM fd it inherited) has a real uid of its own and an effective and
/// filesystem uid of 0, and opening "as the VMM" with the latter would be opening as root.
fn vmm_ids(pid: i32, pidfd: BorrowedFd<'_>) -> Result<(u32, u32, Vec<u32>), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let id = |key: &str| vmm_id(&status, key).map_err(|e| format!("process {pid}: {e}"));
    let groups = status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .ok_or_else(|| format!("/proc/{pid}/status: no Groups: line"))?
        .split_whitespace()
        .map(|g| {
            g.parse::<u32>()
                .map_err(|_| format!("/proc/{pid}/status: bad group {g}"))
        })
        .collect::<Result<Vec<u32>, String>>()?;
    let ids = (id("Uid:")?, id("Gid:")?, groups);
    if !sys::pidfd_alive(pidfd) {
        return Err(format!("process {pid} is gone"));
    }
    Ok(ids)
}

/// What the output says of process `pid` (behind `pidfd`, of uid `uid`) before anything is
/// taken from it, so that whoever reads it sees which process was served: its pid, uid,
/// name and executable (the VMM's own choices, printed with control characters escaped).
fn describe(pid: i32, pidfd: BorrowedFd<'_>, uid: u32) -> Result<String, String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_err(|e| format!("/proc/{pid}/comm: {e}"))?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map_or_else(|e| format!("({e})"), |p| p.to_string_lossy().into_owned());
    if !sys::pidfd_alive(pidfd) {
        return Err(format!("process {pid} is gone"));
    }
    Ok(format!(
        "{pid}, uid {uid}, name {}, executable {}",
        crate::status::printable(comm.trim_end_matches('\n')),
        crate::status::printable(&exe)
    ))
}

/// The one id of the `key` line ("Uid:" or "Gid:") of a /proc/PID/status text, whose real,
/// effective, saved and filesystem ids ("Uid:\t1000\t1000\t1000\t1000") must agree.
fn vmm_id(status: &str, key: &str) -> Result<u32, String> {
    let ids = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| {
            v.split_whitespace()
                .map(|i| i.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()
        })
        .ok_or_else(|| format!("no {key} line in its status"))?
        .filter(|v| v.len() == 4)
        .ok_or_else(|| format!("a bad {key} line in its status"))?;
    if ids.iter().any(|&i| i != ids[0]) {
        return Err(format!(
            "its real, effective, saved and filesystem {} are {} {} {} {}, not one id (a set-{}-ID program?): elisactl serve opens regions only for a process whose ids agree",
            if key == "Uid:" { "uids" } else { "gids" },
            ids[0],
            ids[1],
            ids[2],
            ids[3],
            if key == "Uid:" { "user" } else { "group" }
        ));
    }
    Ok(ids[0])
}

/// Opens a file elisactl reads or pins for the VMM: `/proc/PID/fd/N` is the VMM's own
/// open file, taken with `pidfd_getfd` so that its access mode stays the VMM's (a reopen
/// through /proc would be root's, read-write whatever the VMM had). Any other path is
/// opened only if no component is a symbolic link, and never blocks (`O_NONBLOCK`: a FIFO
/// put there does not hang elisactl); then
///
/// - a region file as the VMM (its uid, gid and groups, which must agree: [`vmm_ids`]) and
///   with no effective capability, so that the VMM gets only a file it could open
///   itself, and only its own ([`vmm_file`]): not another user's file that it hard-linked
///   or renamed to the name given, or that another user made there first, in a
///   directory anyone can write such as /dev/shm;
/// - a code file only if it, and every directory above it, is root's and writable by no
///   one else (directories: unless sticky), on a local file system that stores its bytes
///   ([`CODE_FS`]; not procfs, sysfs, FUSE, NFS, ...): the VMM cannot choose what runs as
///   the service. Code is never taken through the VMM's own fd.
///
/// Either must be a regular file.
fn open_for_vmm(path: &Path, pid: i32, pidfd: BorrowedFd<'_>, kind: Use) -> Result<File, String> {
    let what = path.display();
    let flags = match kind {
        Use::Region => libc::O_RDWR,
        Use::Code => libc::O_RDONLY,
    };
    let write = kind == Use::Region;
    if let Some((p, n)) = proc_fd_path(path)? {
        // Never code through the VMM's own fd: the VMM decides which file that names, and
        // a file that passes as root's can hold what the VMM wants (its own /proc files
        // are root's once it makes itself non-dumpable, and /proc/PID/cmdline is its
        // memory).
        if kind == Use::Code && p == pid {
            return Err(format!(
                "{what}: service code cannot be named through process {pid}'s own fd, which it chooses (give the code file's path)"
            ));
        }
        // The VMM's own fd through the pidfd taken first; another process's (a file the
        // administrator's tooling holds) through one of its own.
        let other = if p == pid {
            None
        } else {
            Some(vmfd::open_pid(p).map_err(|e| format!("{what}: {e}"))?)
        };
        let from = other.as_ref().map_or(pidfd, |o| o.as_fd());
        let fd = sys::pidfd_getfd(from, n).map_err(|e| format!("{what}: pidfd_getfd: {e}"))?;
        let mode = sys::access_mode(fd.as_fd()).map_err(|e| format!("{what}: {e}"))?;
        // Read-write serves either use.
        if mode != libc::O_RDWR && mode != flags {
            return Err(format!(
                "{what}: process {p} has fd {n} open {}, not for {}",
                if mode == libc::O_WRONLY {
                    "write-only"
                } else {
                    "read-only"
                },
                if write {
                    "reading and writing"
                } else {
                    "reading"
                }
            ));
        }
        let f = File::from(fd);
        let md = regular(&f, path)?;
        if kind == Use::Code {
            trusted_code(&f, &md, path)?;
        } else if p == pid {
            // The VMM chooses what its fd N names (dup2 of another user's file it can
            // open, or was passed): the same checks as for a path, with no link allowed
            // as well (a memfd, or an unlinked file).
            let (uid, gid, _) = vmm_ids(pid, pidfd)?;
            vmm_file(&md, path, pid, uid, gid, 0..=1)?;
        }
        return Ok(f);
    }
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{what}: a NUL byte in the path"))?;
    if kind == Use::Code {
        crate::switch::check_ancestors(path)?;
        // Opened as root: not a device node or a FIFO, whose open alone can act (a
        // watchdog arms), linked into place; the opened file is checked again.
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_file() => {}
            Ok(_) => return Err(format!("{what}: not a regular file")),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
    let flags = flags | libc::O_NONBLOCK;
    let mut vmm = None;
    let opened = match kind {
        Use::Code => sys::open_no_links(&c, flags),
        Use::Region => {
            let (uid, gid, groups) = vmm_ids(pid, pidfd)?;
            vmm = Some((uid, gid));
            sys::open_no_links_as(&c, flags, uid, gid, &groups).map_err(|e| {
                io_context(
                    e,
                    &format!("opened as process {pid}'s uid {uid} and gid {gid}"),
                )
            })
        }
    };
    let f = opened.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => format!(
            "{what}: {e} (a component is a symbolic link, which elisactl serve does not follow: give the resolved path)"
        ),
        _ => format!("{what}: {e}"),
    })?;
    let md = regular(&f, path)?;
    if kind == Use::Code {
        trusted_code(&f, &md, path)?;
    }
    if let Some((uid, gid)) = vmm {
        vmm_file(&md, path, pid, uid, gid, 1..=1)?;
    }
    Ok(f)
}

/// A region named by a path, or by the VMM's own fd, must be the VMM's own file: owned by
/// its uid, with `links` names (one for a path; none or one for an fd, a memfd or an
/// unlinked file), and, if it has a name, writable by no other user (by its group only if
/// that is the VMM's). Another user's file under the name given, made there first in a sticky
/// directory such as /dev/shm (a world-writable one the VMM could open) or linked there,
/// or put on the fd named by the VMM, is refused: that user would keep a mapping of what
/// the service takes for its data, and be charged for what it pins.
fn vmm_file(
    md: &std::fs::Metadata,
    path: &Path,
    pid: i32,
    uid: u32,
    gid: u32,
    links: std::ops::RangeInclusive<u64>,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let what = path.display();
    if md.uid() != uid {
        return Err(format!(
            "{what}: owned by uid {}, not by process {pid}'s uid {uid} (a region named by a path must be the VMM's own file; another process's open file can be named as /proc/PID/fd/N)",
            md.uid()
        ));
    }
    if !links.contains(&md.nlink()) {
        return Err(format!(
            "{what}: {} links; a region file must have {} name",
            md.nlink(),
            if links.start() == links.end() {
                "one"
            } else {
                "at most one"
            },
        ));
    }
    // A file with no name (a memfd: mode 0777) cannot be opened by its mode.
    let mode = md.mode();
    if md.nlink() > 0 && (mode & 0o002 != 0 || (mode & 0o020 != 0 && md.gid() != gid)) {
        return Err(format!(
            "{what}: writable by other users (mode {:o}, group {}; process {pid}'s group is {gid})",
            mode & 0o7777,
            md.gid()
        ));
    }
    Ok(())
}

/// The file systems a code file may be on (`statfs.f_type`): local ones that store the
/// bytes root wrote, whose owner and mode guard them. An allowlist: the kernel's views of
/// processes and objects (a process's /proc files are root's once it is not dumpable, and
/// /proc/PID/cmdline or /mem are its memory), FUSE, whose server answers with any owner,
/// mode and content, and network file systems (NFS, SMB, 9p, Ceph), whose server decides
/// them, are refused, and so is any type elisactl does not know.
const CODE_FS: [(i64, &str); 12] = [
    (0xef53, "ext2/ext3/ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683e, "btrfs"),
    (0x2fc1_2fc1, "zfs"),
    (0xca45_1a4e, "bcachefs"),
    (0xf2f5_2010, "f2fs"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58f6, "ramfs"),
    (0x7371_7368, "squashfs"),
    (0xe0f5_e1e2, "erofs"),
    (0x794c_7630, "overlayfs"),
    (0x9660, "iso9660"),
];

/// Names of file systems a code file may not be on, for the refusal's message only.
const OTHER_FS: [(i64, &str); 18] = [
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x0027_e0eb, "cgroupfs"),
    (0x6367_7270, "cgroup2"),
    (0xcafe_4a11, "bpffs"),
    (0x6265_6570, "configfs"),
    (0x6573_5546, "FUSE"),
    (0xde5e_81e4, "efivarfs"),
    (0x6165_676c, "pstore"),
    (0x6969, "NFS"),
    (0xff53_4d42, "CIFS"),
    (0xfe53_4d42, "SMB2"),
    (0x0102_1997, "9p"),
    (0x00c3_6400, "Ceph"),
    (0x4d44, "FAT"),
];

/// Whether a code file may be on a file system of type `magic`; the refusal's reason if not.
fn code_fs(magic: i64) -> Result<(), String> {
    if CODE_FS.iter().any(|(m, _)| *m == magic) {
        return Ok(());
    }
    let name = OTHER_FS
        .iter()
        .find(|(m, _)| *m == magic)
        .map_or("a type elisactl does not know", |(_, n)| n);
    let known: Vec<&str> = CODE_FS.iter().map(|(_, n)| *n).collect();
    Err(format!(
        "a file of {name} (file system type {magic:#x}), whose content root's ownership does not guard: service code must be a file of a local file system that stores it ({}; it runs as trusted code)",
        known.join(", ")
    ))
}

/// Service code runs as trusted code: its file must be root's and writable by no one else,
/// on a file system that stores what root wrote, however it was named (a path, or another
/// process's fd).
fn trusted_code(f: &File, md: &std::fs::Metadata, path: &Path) -> Result<(), String> {
    let fs = sys::fs_type(f.as_fd()).map_err(|e| format!("{}: fstatfs: {e}", path.display()))?;
    code_fs(fs).map_err(|e| format!("{}: {e}", path.display()))?;
    if md.uid() != 0 || md.mode() & 0o022 != 0 {
        return Err(format!(
            "{}: owned by uid {} with mode {:o}: service code must be root's and writable by no one else (it runs as trusted code)",
            path.display(),
            md.uid(),
            md.mode() & 0o7777
        ));
    }
    // A second name could have been linked into a directory the code's was not checked
    // against (where hard links to others' files are allowed: fs.protected_hardlinks = 0).
    if md.nlink() > 1 {
        return Err(format!(
            "{}: {} links: service code must have one name",
            path.display(),
            md.nlink()
        ));
    }
    Ok(())
}

/// Up to `max` bytes of `f` from its start, read by position (pread), never through the
/// file offset, which a VMM's fd shares with the VMM: it could seek before or between the
/// reads.
fn read_from_start(f: &File, max: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; max];
    let mut n = 0;
    while n < max {
        let got = f.read_at(&mut bytes[n..], n as u64)?;
        if got == 0 {
            break;
        }
        n += got;
    }
    bytes.truncate(n);
    Ok(bytes)
}

/// `e` with `context` added to its message.
fn io_context(e: std::io::Error, context: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{e} ({context})"))
}

/// The metadata of `f`, opened from `path`, if it is a regular file.
fn regular(f: &File, path: &Path) -> Result<std::fs::Metadata, String> {
    let md = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !md.file_type().is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    Ok(md)
}

/// The code file in a memfd, padded with int3 to a 4 KiB multiple: its fd, the padded
/// size, and the file's own length.
fn load_code(a: &ServeArgs, pid: i32, pidfd: BorrowedFd<'_>) -> Result<(File, u64, u64), String> {
    let what = a.code.display();
    let f = open_for_vmm(&a.code, pid, pidfd, Use::Code).map_err(|e| format!("code {e}"))?;
    // At most one byte more than a service may have: enough to refuse a larger file.
    let bytes = read_from_start(&f, uapi::ELISA_SERVICE_MAX_CODE as usize + 1)
        .map_err(|e| format!("code {what}: {e}"))?;
    let len = bytes.len() as u64;
    if len == 0 || len > uapi::ELISA_SERVICE_MAX_CODE {
        return Err(format!(
            "code {what}: {} bytes; a service has 1..{} bytes of code",
            if len > uapi::ELISA_SERVICE_MAX_CODE {
                "more than that".to_string()
            } else {
                len.to_string()
            },
            uapi::ELISA_SERVICE_MAX_CODE
        ));
    }
    if a.entry_offset >= len {
        return Err(format!(
            "--entry-offset {:#x} is beyond the code ({len} bytes)",
            a.entry_offset
        ));
    }
    let size = len.next_multiple_of(uapi::check::PAGE_SIZE);
    let mut f = sys::memfd(c"elisa-service-code").map_err(|e| format!("memfd_create: {e}"))?;
    let pad = vec![0xcc; (size - len) as usize];
    f.write_all(&bytes)
        .and_then(|()| f.write_all(&pad))
        .map_err(|e| format!("memfd: {e}"))?;
    Ok((f, size, len))
}

/// Moves this process into the cgroup (v2) of process `pid`, the VMM, so that what the
/// kernel allocates for it from here on is charged there: the pages a region fills in and
/// the module's own for regions and the service (a grant charges the VM's owner in any
/// case: `Documentation/api.rst`). elisactl stays there while it serves: it serves only
/// that VMM. Returns what the output says about it. Refused when elisactl is root and
/// cannot join; when it is not, it is the VMM's own user, and stays where it is if it may
/// not move.
fn join_vmm_cgroup(pid: i32, pidfd: BorrowedFd<'_>) -> Result<String, String> {
    let cgroup_of = |p: &str| -> Result<Option<String>, String> {
        let text = std::fs::read_to_string(format!("/proc/{p}/cgroup"))
            .map_err(|e| format!("/proc/{p}/cgroup: {e}"))?;
        let mut v2 = text.lines().filter_map(|l| l.strip_prefix("0::"));
        let path = v2.next().map(str::to_string);
        // A cgroup named with a newline and "0::" would read as two
        if v2.next().is_some() {
            return Err(format!("/proc/{p}/cgroup: more than one cgroup v2 line"));
        }
        Ok(path)
    };
    let Some(path) = cgroup_of(&pid.to_string())? else {
        return Ok(format!(
            "process {pid} is in no cgroup v2 hierarchy: elisactl's own memory cgroup is charged"
        ));
    };
    if !sys::pidfd_alive(pidfd) {
        return Err(format!("process {pid} is gone"));
    }
    // The VMM names its cgroup where it has a delegated subtree: printed escaped.
    let shown = crate::status::printable(&path);
    if cgroup_of("self")?.as_deref() == Some(path.as_str()) {
        return Ok(format!("cgroup {shown}, process {pid}'s and elisactl's"));
    }
    let root = "/sys/fs/cgroup";
    let mounted = File::open(root)
        .and_then(|d| sys::fs_type(d.as_fd()))
        .is_ok_and(|t| t == CGROUP2_SUPER_MAGIC);
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    if !path.starts_with('/') || !mounted {
        let why = format!("process {pid}'s cgroup {shown} is not under a cgroup2 mount at {root}");
        return if as_root {
            Err(format!(
                "{why}: elisactl serve charges the VMM's cgroup for what it pins"
            ))
        } else {
            Ok(format!("{why}: elisactl's own memory cgroup is charged"))
        };
    }
    let procs = format!("{root}{path}/cgroup.procs");
    let c = CString::new(procs.as_bytes()).map_err(|_| format!("{procs}: a NUL byte"))?;
    // "0": the writing process
    let joined = sys::open_no_links(&c, libc::O_WRONLY).and_then(|mut f| f.write_all(b"0"));
    match joined {
        Ok(()) => Ok(format!("cgroup {shown}, process {pid}'s, joined")),
        Err(e) if !as_root => Ok(format!(
            "cannot join process {pid}'s cgroup {shown} ({e}): elisactl's own memory cgroup is charged"
        )),
        Err(e) => Err(format!("joining process {pid}'s cgroup: {}: {e}", crate::status::printable(&procs))),
    }
}

/// `statfs.f_type` of cgroup v2 (`CGROUP2_SUPER_MAGIC`).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Makes the regions and the service, with the files of the VMM `pid` behind `pidfd`,
/// whose ids ([`vmm_ids`]) are `ids`.
fn make_service(
    elisa: &Elisa,
    a: &ServeArgs,
    pid: i32,
    pidfd: BorrowedFd<'_>,
    ids: &(u32, u32, Vec<u32>),
) -> Result<Service, String> {
    let (code, size, len) = load_code(a, pid, pidfd)?;
    // Regions are made as the VMM (its user, groups and RLIMIT_MEMLOCK, no capability):
    // their pins are charged to that user against that limit, as if it made them itself.
    let &(uid, gid, ref groups) = ids;
    let memlock =
        sys::memlock_of(pid).map_err(|e| format!("process {pid}'s RLIMIT_MEMLOCK: {e}"))?;
    if !sys::pidfd_alive(pidfd) {
        return Err(format!("process {pid} is gone"));
    }
    say!(
        "charging: uid {uid}, RLIMIT_MEMLOCK {}",
        if memlock == u64::MAX {
            "unlimited".to_string()
        } else {
            format!("{memlock} bytes")
        }
    );
    let mut regions = Vec::new();
    for (i, r) in a.regions.iter().enumerate() {
        let what = r.path.display();
        let f =
            open_for_vmm(&r.path, pid, pidfd, Use::Region).map_err(|e| format!("region {e}"))?;
        let (off, len) = match r.range {
            Some(range) => range,
            None => (
                0,
                f.metadata()
                    .map_err(|e| format!("region {what}: {e}"))?
                    .len(),
            ),
        };
        let region = sys::charged_as(uid, gid, groups, memlock, || {
            elisa.create_region(&f, off, len)
        })
        .map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::EINVAL) => {
                    " (not a memfd, tmpfs or hugetlbfs file, or the range is not inside it)"
                }
                Some(libc::EPERM) => {
                    " (a memfd must be sealed with F_SEAL_SHRINK and not against writes)"
                }
                Some(libc::ENOMEM) => {
                    " (the VMM's RLIMIT_MEMLOCK, against every pin of its user, or no memory: see the kernel log)"
                }
                _ => "",
            };
            format!("region {what} [{off:#x}, +{len:#x}): {e}{hint}")
        })?;
        let mode = if r.access == Access::ReadOnly {
            "ro"
        } else {
            "rw"
        };
        say!(
            "region {i}: {what} [{off:#x}, +{len:#x}) at {:#x} {mode}",
            r.gva
        );
        regions.push((region, r));
    }
    let spec = regions.iter().fold(
        ServiceSpec::new(&code, size, a.code_gva).entry_offset(a.entry_offset),
        |s, (region, r)| s.region(region, r.gva, r.access),
    );
    let service = elisa.create_service(&spec).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::ENXIO) => " (a region's file was truncated or a hole punched in it)",
            _ => "",
        };
        // A refusal of elisa-ioctls' own checks names the ioctl already.
        match e.raw_os_error() {
            Some(_) => format!("ELISA_CREATE_SERVICE: {e}{hint}"),
            None => e.to_string(),
        }
    })?;
    say!(
        "service: {len} bytes of code from {} at {:#x}, entry {:#x}, {} region(s)",
        a.code.display(),
        a.code_gva,
        a.code_gva + a.entry_offset,
        regions.len()
    );
    // The service holds its regions: their fds (and the code's memfd) close here.
    Ok(service)
}

fn grant(evm: &ElisaVm, service: &Service, a: &ServeArgs) -> Result<GrantInfo, String> {
    let flags = if a.user { GRANT_USER } else { 0 };
    let g = evm.grant(service, a.g, flags).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EINVAL) => " (G or a GVA refused: see the kernel log)",
            Some(libc::ENOSPC) => " (the VM has 8 services already)",
            Some(libc::ENXIO) => " (a region's file was truncated or a hole punched in it)",
            _ => "",
        };
        format!("ELISA_GRANT at G {:#x}: {e}{hint}", a.g)
    })?;
    say!(
        "granted: gate index {}, vcpus {}, G {:#x}, trusted window {:#x}+{:#x}, {} pages",
        g.gate_index,
        g.nr_vcpus,
        a.g,
        g.trusted_gpa,
        g.trusted_size,
        if a.user { "user" } else { "supervisor" }
    );
    // The guest-side convention of Documentation/api.rst ("How the guest learns its gates"),
    // for elisa_guest.ko, whose calls run at CPL 0: a call from CPL 3 through a supervisor
    // grant, or from CPL 0 through a user grant, ends the run.
    if a.user {
        say!(
            "guest user space calls G {:#x}, gate index {} (not elisa_guest.ko: its calls run at CPL 0)",
            a.g,
            g.gate_index
        );
    } else {
        say!(
            "guest parameter: elisa_guest.gate={}",
            guest_param(a, g.gate_index)
        );
    }
    Ok(g)
}

/// The value of the guest's `elisa_guest.gate=` for this grant (`Documentation/api.rst`).
pub(crate) fn guest_param(a: &ServeArgs, gate_index: u32) -> String {
    match &a.name {
        Some(n) => format!("{:#x}:{}:{}", a.g, gate_index, n),
        None => format!("{:#x}:{}", a.g, gate_index),
    }
}

fn run(a: &ServeArgs) -> Result<(), String> {
    // The process first: every file taken from /proc/PID is then that process's, even if
    // it exits and its PID is used again.
    let (pid, pidfd) = match a.process {
        Process::Pid(pid) => (pid, vmfd::open_pid(pid).map_err(|e| e.to_string())?),
        Process::Pidfd(fd) => vmfd::inherited_pidfd(fd).map_err(|e| e.to_string())?,
    };
    // Its ids must agree (vmm_ids) and stay so: read before the files are opened and
    // again once the VM fd is taken.
    let ids = vmm_ids(pid, pidfd.as_fd())?;
    say!("process: {}", describe(pid, pidfd.as_fd(), ids.0)?);
    if let Some(want) = a.expect_uid.filter(|&u| u != ids.0) {
        return Err(format!(
            "process {pid} runs as uid {}, not {want} (--expect-uid): refused, nothing opened",
            ids.0
        ));
    }
    let elisa = Elisa::open().map_err(|e| format!("{}: {e}", Elisa::PATH))?;
    let cgroup = join_vmm_cgroup(pid, pidfd.as_fd())?;
    say!("charging: {cgroup}");
    // Everything that can be refused without the VM is made before the VM is touched.
    let service = make_service(&elisa, a, pid, pidfd.as_fd(), &ids)?;
    let (nr, vm) = vmfd::take(pid, pidfd.as_fd(), a.vm_fd).map_err(|e| e.to_string())?;
    if vmm_ids(pid, pidfd.as_fd())? != ids {
        return Err(format!(
            "process {pid}'s uid, gid or groups changed while its files were opened"
        ));
    }
    // Right before the attach, so that from there on no signal ends elisactl before it has
    // detached (they are read below). Until here their default actions end it with nothing
    // to undo (the kernel closes what it made), also in a setup step the VMM can stall: an
    // fstat of a FUSE file of its own, an output pipe it stops reading.
    let signals = sys::Signals::block(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
        .map_err(|e| format!("signals: {e}"))?;
    let evm = elisa.attach_vm(&vm).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EBUSY) => " (the VM is attached already: another elisactl serve?)",
            Some(libc::EOPNOTSUPP) => {
                " (kvm_intel runs with nested=1, ept=0, pt_mode=1 or allow_smaller_maxphyaddr=1, \
                 or the VM is not a default one, such as a TDX or SEV VM: the kernel log says \
                 which; Documentation/admin-guide.rst)"
            }
            _ => "",
        };
        format!("ELISA_ATTACH_VM of fd {nr} of process {pid}: {e}{hint}")
    })?;
    // The elisa-vm file holds the VM; our copy of the VMM's fd is not needed.
    drop(vm);
    say!("attached: process {pid}, KVM VM fd {nr}");
    grant(&evm, &service, a)?;
    say!("serving: the VM stays attached until SIGINT or SIGTERM, or until process {pid} exits");
    let why = loop {
        match signals
            .wait(pidfd.as_fd())
            .map_err(|e| format!("waiting: {e}"))?
        {
            None => break format!("process {pid} exited"),
            // A failed grant again leaves the earlier grant in place: keep serving.
            Some(libc::SIGHUP) => {
                if let Err(e) = grant(&evm, &service, a) {
                    let _ = writeln!(std::io::stderr(), "elisactl serve: {e}");
                }
            }
            Some(libc::SIGINT) => break "SIGINT".into(),
            Some(_) => break "SIGTERM".into(),
        }
    };
    drop(evm);
    say!("detached: {why}");
    Ok(())
}

/// `elisactl serve ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    crate::subcommand("serve", USAGE, parse(args), run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_args as args;
    use std::fs::OpenOptions;
    use std::os::fd::AsRawFd;

    #[test]
    fn proc_fds_are_named_by_number() {
        let p = |s: &str| proc_fd_path(Path::new(s));
        assert_eq!(p("/proc/1234/fd/7"), Ok(Some((1234, 7))));
        assert_eq!(p("/dev/shm/shared"), Ok(None));
        assert_eq!(p("/proc/1234/environ"), Ok(None));
        assert!(p("/proc/self/fd/7").is_err());
        assert!(p("/proc/thread-self/fd/3").is_err());
        assert!(p("/proc/1234/fd/x").is_err());
        assert!(p("/proc/1234/fd/-1").is_err());
        assert!(p("/proc/0/fd/1").is_err());
    }

    /// An empty directory `elisactl-<tag>-<pid>` in the temporary directory.
    fn fresh_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("elisactl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    /// `chown` of `path` to `uid`:`gid`, which must succeed (the tests that use it run as
    /// root).
    fn chown(path: &Path, uid: u32, gid: u32) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), uid, gid) }, 0);
    }

    /// Fails unless the tests run as root (CI does): `why` says what for.
    fn require_root(why: &str) {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test needs root ({why})"
        );
    }

    /// No symbolic link is followed, anywhere in the path, and the VMM's fds keep its
    /// access mode.
    #[test]
    fn files_open_without_links_and_with_the_vmms_mode() {
        let dir = fresh_dir("serve");
        let file = dir.join("region");
        std::fs::write(&file, [0u8; 4096]).unwrap();
        std::os::unix::fs::symlink(&file, dir.join("link")).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("dirlink")).unwrap();
        let me = std::process::id() as i32;
        let pidfd = crate::vmfd::open_pid(me).unwrap();
        let open = |p: &Path, k| open_for_vmm(p, me, pidfd.as_fd(), k);
        assert!(open(&file, Use::Region).is_ok());
        let e = open(&dir.join("link"), Use::Region).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(open(&dir.join("dirlink/region"), Use::Code).is_err());
        // This process stands for the VMM: a read-only fd of its stays read-only.
        let ro = File::open(&file).unwrap();
        let proc = PathBuf::from(format!("/proc/{me}/fd/{}", ro.as_raw_fd()));
        let e = open(&proc, Use::Region).unwrap_err();
        assert!(e.contains("read-only"), "{e}");
        // Code never comes through the VMM's own fd.
        let e = open(&proc, Use::Code).unwrap_err();
        assert!(e.contains("own fd"), "{e}");
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
            .unwrap();
        let proc = PathBuf::from(format!("/proc/{me}/fd/{}", rw.as_raw_fd()));
        assert!(open(&proc, Use::Region).is_ok());
        // Not a regular file: a FIFO is refused, without blocking.
        let fifo = dir.join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open(&fifo, Use::Region).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Service code must be root's and writable by no one else; it is read from its
    /// start whatever the offset of the VMM's fd.
    #[test]
    fn code_is_roots_and_read_from_its_start() {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::PermissionsExt;
        require_root("file ownership");
        let dir = fresh_dir("code");
        let code = dir.join("code.bin");
        std::fs::write(&code, (0u8..64).collect::<Vec<u8>>()).unwrap();
        std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o644)).unwrap();
        let me = std::process::id() as i32;
        let pidfd = crate::vmfd::open_pid(me).unwrap();
        assert!(open_for_vmm(&code, me, pidfd.as_fd(), Use::Code).is_ok());
        std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = open_for_vmm(&code, me, pidfd.as_fd(), Use::Code).unwrap_err();
        assert!(e.contains("writable by no one else"), "{e}");
        std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o644)).unwrap();
        // A directory above it that others may write (not sticky): refused.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(open_for_vmm(&code, me, pidfd.as_fd(), Use::Code).is_err());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A second name (linked where hard links to others' files are allowed), and a
        // device node in the code's place, which is never opened: refused.
        std::fs::hard_link(&code, dir.join("again.bin")).unwrap();
        let e = open_for_vmm(&code, me, pidfd.as_fd(), Use::Code).unwrap_err();
        assert!(e.contains("2 links"), "{e}");
        std::fs::remove_file(dir.join("again.bin")).unwrap();
        let null = dir.join("null.bin");
        let c = CString::new(null.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path; 1:3 is /dev/null, which nothing reads.
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) },
            0
        );
        let e = open_for_vmm(&null, me, pidfd.as_fd(), Use::Code).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        // Another process's fd (this one's, for a VMM that is a child), seeked to 40: read
        // from byte 0 all the same.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let vmm_pid = child.id() as i32;
        let vmm_pidfd = crate::vmfd::open_pid(vmm_pid).unwrap();
        let mut tool = File::open(&code).unwrap();
        tool.seek(SeekFrom::Start(40)).unwrap();
        let proc = PathBuf::from(format!("/proc/{me}/fd/{}", tool.as_raw_fd()));
        let f = open_for_vmm(&proc, vmm_pid, vmm_pidfd.as_fd(), Use::Code).unwrap();
        let bytes = read_from_start(&f, 4097).unwrap();
        assert_eq!(bytes, (0u8..64).collect::<Vec<u8>>());
        assert_eq!(tool.stream_position().unwrap(), 40);
        // Such an fd of a file that is not root's, or that others may write: refused too.
        std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = open_for_vmm(&proc, vmm_pid, vmm_pidfd.as_fd(), Use::Code).unwrap_err();
        assert!(e.contains("writable by no one else"), "{e}");
        // A process's /proc files are root's and read-only once it is not dumpable, and
        // /proc/PID/cmdline holds what it wrote in its own memory: refused by file system,
        // by path and through an fd.
        let cmdline = PathBuf::from(format!("/proc/{vmm_pid}/cmdline"));
        let e = open_for_vmm(&cmdline, me, pidfd.as_fd(), Use::Code).unwrap_err();
        assert!(e.contains("procfs"), "{e}");
        let held = File::open(&cmdline).unwrap();
        let proc = PathBuf::from(format!("/proc/{me}/fd/{}", held.as_raw_fd()));
        let e = open_for_vmm(&proc, vmm_pid, vmm_pidfd.as_fd(), Use::Code).unwrap_err();
        assert!(e.contains("procfs"), "{e}");
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `--expect-uid` other than the process's uid: refused before /dev/elisa or any file
    /// is opened (so this runs on a host without elisa), after the line that names it.
    #[test]
    fn expect_uid_refuses_another_user() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        let a = |uid: u32| {
            parse(&args(&format!(
                "--pid {} --expect-uid {uid} --code /nonexistent --code-gva 0x600000000000 --g 0x500000000000",
                child.id()
            )))
            .unwrap()
            .unwrap()
        };
        let e = run(&a(me.wrapping_add(1))).unwrap_err();
        assert!(
            e.contains(&format!("runs as uid {me}, not {}", me.wrapping_add(1))),
            "{e}"
        );
        // The right uid goes on to /dev/elisa (absent here) or the code file (absent).
        let e = run(&a(me)).unwrap_err();
        assert!(!e.contains("--expect-uid"), "{e}");
        assert!(parse(&args(
            "--pid 1 --expect-uid 0x100000000 --code c --code-gva 0 --g 0"
        ))
        .is_err());
        // The same process as a pidfd passed in: the same refusal, naming its PID.
        let pidfd = vmfd::open_pid(child.id() as i32).unwrap();
        let by_fd = parse(&args(&format!(
            "--pidfd {} --expect-uid {} --code /nonexistent --code-gva 0x600000000000 --g 0x500000000000",
            pidfd.as_raw_fd(),
            me.wrapping_add(1)
        )))
        .unwrap()
        .unwrap();
        let e = run(&by_fd).unwrap_err();
        assert!(
            e.contains(&format!("process {} runs as uid {me}", child.id())),
            "{e}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        // Once it has exited, its pidfd names no process: refused before anything else.
        let e = run(&by_fd).unwrap_err();
        assert!(e.contains("its process has exited"), "{e}");
    }

    /// Code only from the local file systems of the allowlist: a network or an unknown
    /// file system is refused, and the message names it.
    #[test]
    fn code_fs_is_an_allowlist() {
        for ok in [0xef53, 0x5846_5342, 0x0102_1994, 0x794c_7630] {
            assert_eq!(code_fs(ok), Ok(()), "{ok:#x}");
        }
        for (bad, name) in [
            (0x9fa0, "procfs"),
            (0x6573_5546, "FUSE"),
            (0x6969, "NFS"),
            (0xfe53_4d42, "SMB2"),
            (0x0102_1997, "9p"),
            (0x1234_5678, "does not know"),
        ] {
            let e = code_fs(bad).unwrap_err();
            assert!(
                e.contains(name) && e.contains("ext2/ext3/ext4"),
                "{bad:#x}: {e}"
            );
        }
    }

    /// A region path is opened as the VMM: a file of another user it could not open
    /// itself (hard-linked or renamed to the name given) is refused.
    #[test]
    fn regions_open_as_the_vmm() {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        require_root("another uid");
        let dir = fresh_dir("as-vmm");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let roots = dir.join("roots");
        std::fs::write(&roots, [0u8; 4096]).unwrap();
        std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o600)).unwrap();
        let theirs = dir.join("nobodys");
        std::fs::write(&theirs, [0u8; 4096]).unwrap();
        chown(&theirs, 65534, 65534);
        // The VMM: a process of uid 65534.
        let mut vmm = std::process::Command::new("sleep")
            .arg("30")
            .uid(65534)
            .gid(65534)
            .spawn()
            .unwrap();
        let pid = vmm.id() as i32;
        let pidfd = crate::vmfd::open_pid(pid).unwrap();
        let e = open_for_vmm(&roots, pid, pidfd.as_fd(), Use::Region).unwrap_err();
        assert!(
            e.contains("Permission denied") && e.contains("uid 65534"),
            "{e}"
        );
        assert!(open_for_vmm(&theirs, pid, pidfd.as_fd(), Use::Region).is_ok());
        // Root's supplementary groups do not count: a file of group root, mode 0660, is
        // refused.
        std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o660)).unwrap();
        assert!(open_for_vmm(&roots, pid, pidfd.as_fd(), Use::Region).is_err());
        // One the VMM may open through its group, but root's, is refused too: a region
        // file is the VMM's own.
        chown(&roots, 0, 65534);
        let e = open_for_vmm(&roots, pid, pidfd.as_fd(), Use::Region).unwrap_err();
        assert!(e.contains("owned by uid 0, not by process"), "{e}");
        // and this thread is root again for the files of its own
        assert!(File::options().read(true).write(true).open(&roots).is_ok());
        // The VMM's own file, but writable by everyone (another user made it first under
        // that name and left it open to all), by another group, or with a second name.
        let set =
            |m| std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(m)).unwrap();
        set(0o666);
        let e = open_for_vmm(&theirs, pid, pidfd.as_fd(), Use::Region).unwrap_err();
        assert!(e.contains("writable by other users"), "{e}");
        set(0o660);
        assert!(open_for_vmm(&theirs, pid, pidfd.as_fd(), Use::Region).is_ok());
        chown(&theirs, 65534, 0);
        let e = open_for_vmm(&theirs, pid, pidfd.as_fd(), Use::Region).unwrap_err();
        assert!(e.contains("writable by other users"), "{e}");
        set(0o600);
        std::fs::hard_link(&theirs, dir.join("second")).unwrap();
        let e = open_for_vmm(&theirs, pid, pidfd.as_fd(), Use::Region).unwrap_err();
        assert!(e.contains("2 links"), "{e}");
        std::fs::remove_file(dir.join("second")).unwrap();
        assert!(open_for_vmm(&theirs, pid, pidfd.as_fd(), Use::Region).is_ok());
        vmm.kill().unwrap();
        vmm.wait().unwrap();
        // A VMM whose ids disagree: real uid 65534, effective, saved and filesystem uid 0,
        // as after it runs a set-user-ID-root program (opening "as the VMM" would be
        // opening as root). Its file is refused before the open.
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        // SAFETY: setresuid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setresuid(65534, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut suid = cmd.spawn().unwrap();
        let pid = suid.id() as i32;
        let pidfd = crate::vmfd::open_pid(pid).unwrap();
        let e = open_for_vmm(&theirs, pid, pidfd.as_fd(), Use::Region).unwrap_err();
        assert!(
            e.contains("65534 0 0 0") && e.contains("set-user-ID"),
            "{e}"
        );
        suid.kill().unwrap();
        suid.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A region named by the VMM's own fd (`/proc/PID/fd/N`) must be the VMM's own file as
    /// one named by a path, with no name or one: the VMM chooses what its fd names (a
    /// review put another user's file, mode 0666, there).
    #[test]
    fn a_region_through_the_vmms_own_fd_is_its_own_file() {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        require_root("another uid");
        let dir = fresh_dir("vmm-fd");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let set = |f: &Path, m| std::fs::set_permissions(f, std::fs::Permissions::from_mode(m));
        // A file of `uid` with `mode`, and a VMM (uid 65534) holding it read-write on fd 0,
        // named as /proc/PID/fd/0.
        let vmm_holding = |name: &str, uid: u32, mode: u32| {
            let f = dir.join(name);
            std::fs::write(&f, [0u8; 4096]).unwrap();
            chown(&f, uid, uid);
            set(&f, mode).unwrap();
            let file = File::options().read(true).write(true).open(&f).unwrap();
            let child = std::process::Command::new("sleep")
                .arg("30")
                .stdin(file)
                .uid(65534)
                .gid(65534)
                .spawn()
                .unwrap();
            let pid = child.id() as i32;
            let pidfd = crate::vmfd::open_pid(pid).unwrap();
            let fd0 = PathBuf::from(format!("/proc/{pid}/fd/0"));
            (f, child, pid, pidfd, fd0)
        };
        let (_, mut vmm, pid, pidfd, fd0) = vmm_holding("others", 4242, 0o666);
        let e = open_for_vmm(&fd0, pid, pidfd.as_fd(), Use::Region).unwrap_err();
        assert!(e.contains("owned by uid 4242"), "{e}");
        vmm.kill().unwrap();
        vmm.wait().unwrap();
        // Its own file: taken, also once unlinked; with a second name: refused.
        let (own, mut vmm, pid, pidfd, fd0) = vmm_holding("own", 65534, 0o600);
        assert!(open_for_vmm(&fd0, pid, pidfd.as_fd(), Use::Region).is_ok());
        std::fs::hard_link(&own, dir.join("second")).unwrap();
        let e = open_for_vmm(&fd0, pid, pidfd.as_fd(), Use::Region).unwrap_err();
        assert!(e.contains("2 links"), "{e}");
        std::fs::remove_file(dir.join("second")).unwrap();
        // Unlinked, its mode no longer counts (nothing can open it by name): a memfd's is
        // 0777.
        set(&own, 0o777).unwrap();
        std::fs::remove_file(&own).unwrap();
        assert!(open_for_vmm(&fd0, pid, pidfd.as_fd(), Use::Region).is_ok());
        vmm.kill().unwrap();
        vmm.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The open as the VMM runs with no effective capability: a file of another user,
    /// mode 0600, does not open for this root thread inside, and does after.
    #[test]
    fn opens_without_effective_caps() {
        use std::os::unix::fs::PermissionsExt;
        require_root("capabilities");
        let dir = fresh_dir("no-caps");
        let f = dir.join("nobodys");
        std::fs::write(&f, [0u8; 16]).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown(&f, 65534, 65534);
        let c = CString::new(f.as_os_str().as_bytes()).unwrap();
        let inside = sys::without_effective_caps(|| sys::open_no_links(&c, libc::O_RDWR));
        assert_eq!(
            inside.map(|_| ()).unwrap_err().raw_os_error(),
            Some(libc::EACCES)
        );
        assert!(sys::open_no_links(&c, libc::O_RDWR).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An elisactl that is not root but the VMM's own user (no CAP_SETGID for setgroups)
    /// opens the VMM's file: a forked child that is uid 65534 does the open.
    /// Ends a forked test child at once, with status 0 when `ok`.
    fn child_exit(ok: bool) -> ! {
        // SAFETY: _exit ends the child without returning into the harness.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    }

    /// Waits for the forked child `pid` and asserts that it exited with status 0.
    fn assert_child_ok(pid: libc::pid_t, what: &str) {
        let mut st = 0;
        // SAFETY: waits for the child just forked; `st` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "status {st:#x}{what}"
        );
    }

    #[test]
    fn opens_as_its_own_user_without_caps() {
        use std::os::unix::fs::PermissionsExt;
        require_root("another uid");
        let dir = fresh_dir("own-user");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = dir.join("mine");
        std::fs::write(&f, [0u8; 16]).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown(&f, 65534, 65534);
        let c = CString::new(f.as_os_str().as_bytes()).unwrap();
        let groups = [65534 as libc::gid_t];
        // SAFETY: the child changes its own ids with raw system calls, opens through the
        // function under test and leaves with _exit, never returning into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: as above; these change only the child's credentials.
            let ok = unsafe {
                libc::setgroups(1, groups.as_ptr()) == 0
                    && libc::setresgid(65534, 65534, 65534) == 0
                    && libc::setresuid(65534, 65534, 65534) == 0
            } && sys::open_no_links_as(&c, libc::O_RDWR, 65534, 65534, &[65534]).is_ok();
            child_exit(ok);
        }
        assert_child_ok(pid, "");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Inside `charged_as` the thread is the VMM's user (real and effective uid and gid,
    /// groups) with no effective capability and the VMM's RLIMIT_MEMLOCK; after it, all is
    /// as before. The ids change on one thread of the harness only.
    #[test]
    fn charges_as_the_vmm() {
        require_root("another uid");
        let state = || {
            let (mut r, mut e, mut s) = (0, 0, 0);
            let (mut rg, mut eg, mut sg) = (0, 0, 0);
            // SAFETY: each writes three ids into the variables given.
            unsafe {
                assert_eq!(libc::getresuid(&mut r, &mut e, &mut s), 0);
                assert_eq!(libc::getresgid(&mut rg, &mut eg, &mut sg), 0);
            }
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let line = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap()
                    .trim()
                    .to_string()
            };
            (
                (r, e, s, rg, eg, sg),
                line("Groups:"),
                line("CapEff:"),
                // 0: this process (another thread's credentials would be checked)
                sys::memlock_of(0).unwrap(),
            )
        };
        std::thread::spawn(move || {
            let before = state();
            let inside = sys::charged_as(65534, 65533, &[65532], 12 << 12, || Ok(state())).unwrap();
            assert_eq!(inside.0, (65534, 65534, 0, 65533, 65533, before.0 .5));
            assert_eq!(inside.1, "65532");
            assert_eq!(inside.2, "0000000000000000");
            assert_eq!(inside.3, 12 << 12);
            assert_eq!(state(), before);
            // Already that user (root for a VMM that runs as root): the ids stay, but no
            // capability (CAP_IPC_LOCK would skip the charge) and the VMM's limit.
            let (u, g) = (before.0 .0, before.0 .3);
            let same = sys::charged_as(u, g, &[], 4096, || Ok(state())).unwrap();
            assert_eq!((same.0, &same.1), (before.0, &before.1));
            assert_eq!(same.2, "0000000000000000");
            assert_eq!(same.3, 4096);
            assert_eq!(state(), before);
        })
        .join()
        .unwrap();

        // A VMM whose limit is above elisactl's hard limit (8 MiB by default, even for
        // root): root, with CAP_SYS_RESOURCE, raises the hard limit for the charge and puts
        // both back; without that capability (a container's root) the charge is capped at
        // elisactl's own hard limit, which elisactl says. In a child, whose hard limit may
        // go down for good.
        let cap_sys_resource = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|c| c & (1 << 24) != 0); // CAP_SYS_RESOURCE
        let low = libc::rlimit {
            rlim_cur: 64 << 10,
            rlim_max: 64 << 10,
        };
        // SAFETY: the child changes its own limit, charges through the function under test
        // and leaves with _exit, never returning into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: as above; setrlimit reads one rlimit on this stack.
            let lowered = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &low) } == 0;
            let inside = sys::charged_as(65534, 65533, &[], u64::MAX, || sys::memlock_of(0));
            let want = if cap_sys_resource { u64::MAX } else { 64 << 10 };
            let ok = lowered
                && inside.is_ok_and(|v| v == want)
                && sys::memlock_of(0).is_ok_and(|v| v == 64 << 10);
            child_exit(ok);
        }
        assert_child_ok(pid, &format!(" (CAP_SYS_RESOURCE: {cap_sys_resource})"));
    }

    #[test]
    fn vmm_ids_must_agree() {
        assert_eq!(vmm_id("Name:\tx\nUid:\t5\t5\t5\t5\n", "Uid:"), Ok(5));
        let e = vmm_id("Gid:\t7\t0\t7\t7\n", "Gid:").unwrap_err();
        assert!(e.contains("7 0 7 7") && e.contains("set-group-ID"), "{e}");
        assert!(vmm_id("Uid:\t5\t5\t5\n", "Uid:").is_err());
        assert!(vmm_id("Uid:\t5\t5\t5\tx\n", "Uid:").is_err());
        assert!(vmm_id("Gid:\t5\t5\t5\t5\n", "Uid:").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("0x500000000000"), Ok(0x5000_0000_0000));
        assert_eq!(parse_u64("0X1f"), Ok(0x1f));
        assert_eq!(parse_u64("4K"), Ok(4096));
        assert_eq!(parse_u64("64M"), Ok(64 << 20));
        assert_eq!(parse_u64("0x10k"), Ok(16 << 10));
        assert_eq!(parse_u64("1G"), Ok(1 << 30));
        for bad in [
            "",
            "K",
            "0x",
            "-1",
            "12Q",
            "1 ",
            "0x1g0",
            "99999999999999999999",
        ] {
            assert!(parse_u64(bad).is_err(), "{bad:?}");
        }
        assert!(parse_u64("0xffffffffffffffffK").is_err(), "overflow");
    }

    #[test]
    fn regions() {
        let r = parse_region("/dev/shm/vm0@0x600000100000").unwrap();
        assert_eq!(r.path, PathBuf::from("/dev/shm/vm0"));
        assert_eq!(
            (r.range, r.gva, r.access),
            (None, 0x6000_0010_0000, Access::ReadWrite)
        );
        let r = parse_region("/proc/77/fd/5:0x1000:4K@0x600000200000:ro").unwrap();
        assert_eq!(r.path, PathBuf::from("/proc/77/fd/5"));
        assert_eq!(r.range, Some((0x1000, 4096)));
        assert_eq!(r.access, Access::ReadOnly);
        assert_eq!(parse_region("a@1:rw").unwrap().access, Access::ReadWrite);
        // Colons in the path that are not a range stay in it.
        let r = parse_region("/tmp/a:b:c@4096").unwrap();
        assert_eq!((r.path, r.range), (PathBuf::from("/tmp/a:b:c"), None));
        let r = parse_region("/tmp/x@y:0:4096@8192").unwrap();
        assert_eq!(r.path, PathBuf::from("/tmp/x@y"));
        assert_eq!((r.range, r.gva), (Some((0, 4096)), 8192));
        for bad in [
            "/tmp/a",
            "/tmp/a@",
            "/tmp/a@zz",
            "@4096",
            ":0:4096@4096",
            "/a@1:rx",
        ] {
            assert!(parse_region(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serve_args() {
        let a = parse(&args(
            "--pid 42 --code svc.bin --code-gva 0x600000000000 --entry-offset=16 \
             --region /dev/shm/a@0x600000100000 --region /dev/shm/b:0:8K@0x600000200000:ro \
             --g 0x500000000000 --user --vm-fd 9",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(a.process, Process::Pid(42));
        assert_eq!(a.vm_fd, Some(9));
        assert_eq!(a.code, PathBuf::from("svc.bin"));
        assert_eq!(
            (a.code_gva, a.entry_offset, a.g),
            (0x6000_0000_0000, 16, 0x5000_0000_0000)
        );
        assert!(a.user);
        assert_eq!(a.regions.len(), 2);
        assert_eq!(a.regions[1].range, Some((0, 8192)));

        let min = parse(&args("--pid 1 --code c --code-gva 0 --g 0x500000000000"))
            .unwrap()
            .unwrap();
        assert_eq!((min.entry_offset, min.user, min.vm_fd), (0, false, None));
        let by_fd = parse(&args("--pidfd 7 --code c --code-gva 0 --g 0x500000000000"))
            .unwrap()
            .unwrap();
        assert_eq!(by_fd.process, Process::Pidfd(7));
        assert!(min.regions.is_empty());

        assert_eq!(parse(&args("--help")), Ok(None));

        let named = parse(&args(
            "--pid 1 --code c --code-gva 0 --g 0xffff800000002000 --name counter",
        ))
        .unwrap()
        .unwrap();
        let p = guest_param(&named, 511);
        assert_eq!(p, "0xffff800000002000:511:counter");
        let (gate, name) = elisa_guest::param::parse_entry(&p).unwrap();
        assert_eq!((gate.g(), gate.index()), (0xffff_8000_0000_2000, 511));
        assert_eq!(name.as_ref().map(|n| n.as_str()), Some("counter"));
        assert_eq!(guest_param(&min, 510), "0x500000000000:510");
        for bad in ["", "a b", "x".repeat(32).as_str(), "é"] {
            let line = format!("--pid 1 --code c --code-gva 0 --g 0x500000000000 --name={bad}");
            assert!(parse(&args(&line)).is_err(), "{bad:?}");
        }
        for (bad, says) in [
            (
                "--code c --code-gva 0 --g 0x500000000000",
                "--pid or --pidfd is required",
            ),
            (
                "--pid 1 --code-gva 0 --g 0x500000000000",
                "--code is required",
            ),
            (
                "--pid 1 --code c --g 0x500000000000",
                "--code-gva is required",
            ),
            ("--pid 1 --code c --code-gva 0", "--g is required"),
            (
                "--pid 1 --pid 2 --code c --code-gva 0 --g 0x500000000000",
                "given twice",
            ),
            (
                "--pid 1 --pidfd 3 --code c --code-gva 0 --g 0x500000000000",
                "--pid or --pidfd given twice",
            ),
            (
                "--pidfd 3 --pidfd 4 --code c --code-gva 0 --g 0x500000000000",
                "given twice",
            ),
            (
                "--pidfd -1 --code c --code-gva 0 --g 0x500000000000",
                "not a number",
            ),
            (
                "--pid x --code c --code-gva 0 --g 0x500000000000",
                "not a number",
            ),
            (
                "--pid 0x100000000 --code c --code-gva 0 --g 0x500000000000",
                "too large",
            ),
            ("--pid 1 --code c --code-gva 0 --g", "needs a value"),
            // What the kernel would refuse anyway, refused before anything is opened.
            ("--pid 1 --code c --code-gva 0 --g 0", "4 KiB aligned"),
            (
                "--pid 1 --code c --code-gva 0 --g 0x500000000008",
                "4 KiB aligned",
            ),
            (
                "--pid 1 --code c --code-gva 0 --g 0x800000000000",
                "canonical",
            ),
            (
                "--pid 1 --code c --code-gva 0 --g 0xffff800000002000 --user",
                "lower half",
            ),
            (
                "--pid 1 --code c --code-gva 0 --g 0x500000000000 --user --name n",
                "--name names a gate for elisa_guest.ko",
            ),
            (
                "--pid 1 --code c --code-gva 8 --g 0x500000000000",
                "a multiple of 4096",
            ),
            (
                "--pid 1 --code c --code-gva 0 --g 0x500000000000 --bogus",
                "unknown argument",
            ),
            (
                "--pid 1 --code c --code-gva 0 --g 0x500000000000 --user=1",
                "unknown argument",
            ),
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let nine = (0..9).fold(
            String::from("--pid 1 --code c --code-gva 0 --g 0x500000000000"),
            |s, i| s + &format!(" --region /r{i}@{}", 4096 * i),
        );
        assert!(parse(&args(&nine)).unwrap_err().contains("at most 8"));
    }
}
