// SPDX-License-Identifier: GPL-2.0
//! `elisactl switch init`: the files of an elisa switch for VMMs such as the patched QEMU
//! (`Documentation/networking.rst`, "Two QEMU guests").
//!
//! For each port p it writes `DIR/port<p>`, the port region at the start of a 2 MiB file
//! (an ivshmem BAR must be a power of two, and the guest sees the file as BAR 2), and
//! `DIR/config<p>`, the config region (4 KiB). The headers are written by
//! `elisa_switch::init_port` and `init_config` through a shared mapping of each file
//! (`sys::SharedMap`): the switch's own builders, not a second copy of the layout.

use crate::sys::SharedMap;
use elisa_uapi::net::{ELISA_NET_CONFIG_SIZE, ELISA_NET_MAX_PORTS, ELISA_NET_PORT_SIZE};
use std::ffi::CString;
use std::fs::{DirBuilder, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

pub(crate) const USAGE: &str = "\
usage: elisactl switch init --dir DIR --ports N [--macs MAC,MAC,...] [--force]

  --dir DIR          where to write the files: a directory on a tmpfs such as
                     /dev/shm, which elisa-region and ivshmem can share; created with
                     mode 0700 if missing (its parent must exist), refused unless the
                     caller owns it and nobody else may write to it, or to a directory
                     above it (but a sticky one, such as /dev/shm)
  --ports N          the switch's ports, 2 to 7: one per VM
  --macs ...         each port's MAC address, N of them, unicast and distinct
                     (default 02:00:00:00:00:<p+1>)
  --force            overwrite existing files (never while a VMM uses them)

Writes DIR/port<p> (2 MiB: the port region, the first 0x101000 bytes, and the rest of an
ivshmem BAR, a power of two) and DIR/config<p> (4 KiB: the switch's config region of
port p) for every port, with their headers; mode 0600.";

/// The size of a port file: the port region rounded up to a power of two (ivshmem's BAR).
pub(crate) const PORT_FILE_SIZE: usize = ELISA_NET_PORT_SIZE.next_power_of_two();
const _: () = assert!(PORT_FILE_SIZE >= ELISA_NET_PORT_SIZE);

/// The arguments of `switch init`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InitArgs {
    pub(crate) dir: PathBuf,
    pub(crate) macs: Vec<[u8; 6]>,
    pub(crate) force: bool,
}

/// `aa:bb:cc:dd:ee:ff`, hex, unicast and not zero.
pub(crate) fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        // Hex digits only: from_str_radix would take a leading '+'.
        let p = parts
            .next()
            .filter(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit()));
        *b = p
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| format!("MAC {s:?}: not six hex bytes separated by ':'"))?;
    }
    if parts.next().is_some() {
        return Err(format!("MAC {s:?}: more than six bytes"));
    }
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(format!("MAC {s:?}: not a unicast address"));
    }
    Ok(mac)
}

/// The default MAC of port `p`: 02:00:00:00:00:<p+1> (locally administered).
pub(crate) fn default_mac(p: usize) -> [u8; 6] {
    [2, 0, 0, 0, 0, p as u8 + 1]
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses the arguments after `switch init`; `Ok(None)` for `--help`.
pub(crate) fn parse_init(args: &[String]) -> Result<Option<InitArgs>, String> {
    let (mut dir, mut ports, mut macs, mut force) = (None, None, None, false);
    let Some(opts) = crate::options(args, &["--force"], &["--dir", "--ports", "--macs"])? else {
        return Ok(None);
    };
    for (name, value) in opts {
        let Some(value) = value else {
            force = true;
            continue;
        };
        match name {
            "--dir" if dir.is_none() => dir = Some(PathBuf::from(value)),
            "--ports" if ports.is_none() => {
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("--ports {value:?} is not a number"))?;
                if !(2..=ELISA_NET_MAX_PORTS).contains(&n) {
                    return Err(format!(
                        "--ports {n}: a switch has 2 to {ELISA_NET_MAX_PORTS} ports"
                    ));
                }
                ports = Some(n);
            }
            "--macs" if macs.is_none() => {
                macs = Some(
                    value
                        .split(',')
                        .map(parse_mac)
                        .collect::<Result<Vec<_>, _>>()?,
                )
            }
            _ => return Err(format!("{name} given twice")),
        }
    }
    let dir = dir.ok_or("--dir is required")?;
    let ports = ports.ok_or("--ports is required")?;
    let macs = match macs {
        Some(m) if m.len() != ports => {
            return Err(format!(
                "--macs has {} addresses for {ports} ports",
                m.len()
            ))
        }
        Some(m) => m,
        None => (0..ports).map(default_mac).collect(),
    };
    for (i, m) in macs.iter().enumerate() {
        if macs[..i].contains(m) {
            return Err(format!("--macs: {} given twice", fmt_mac(m)));
        }
    }
    Ok(Some(InitArgs { dir, macs, force }))
}

/// The caller's effective uid: who the directory and the files must belong to.
fn euid() -> u32 {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The directory `dir`, created with mode 0700 if it is missing, and opened: the files are
/// made relative to this open directory (`openat`), so a path swapped meanwhile is never
/// followed. Refused unless it is a directory (not a symlink to one) owned by the caller
/// and writable by nobody else: the files are root's, and the switch trusts a config
/// file completely, so whoever could plant or swap one in a shared place such as /dev/shm
/// could choose a port's identity or make root's write follow a symlink.
fn open_dir(dir: &Path) -> Result<OwnedFd, String> {
    let what = dir.display();
    // The path as it is opened: no trailing `/` or `.` (with which the kernel follows a
    // final symlink despite O_NOFOLLOW), and a last component that names the directory.
    let clean: PathBuf = dir.components().collect();
    if !matches!(clean.components().next_back(), Some(Component::Normal(_))) {
        return Err(format!(
            "{what}: name the directory itself (not /, . or ..)"
        ));
    }
    check_ancestors(&clean)?;
    let dir = clean.as_path();
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{what}: {e}"))?;
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{what}: a NUL in the name"))?;
    // SAFETY: `c` is a NUL-terminated path; the result is a new fd or -1, owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => format!("{what}: not a directory (a symlink?)"),
            _ => format!("{what}: {e}"),
        });
    }
    // SAFETY: `fd` is the new descriptor just opened, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let md = File::from(fd.try_clone().map_err(|e| format!("{what}: {e}"))?)
        .metadata()
        .map_err(|e| format!("{what}: {e}"))?;
    let me = euid();
    if md.uid() != me {
        return Err(format!(
            "{what}: owned by uid {}, not by the caller ({me}): refused (another user could swap the files)",
            md.uid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(format!(
            "{what}: mode {:o}: refused, group or others may write to it (chmod go-w, or another directory)",
            md.mode() & 0o7777
        ));
    }
    Ok(fd)
}

/// Every directory above `dir` (made absolute) must be root's or the caller's, and
/// writable by others only if sticky (as /dev/shm and /tmp are); a symlink among them must
/// be root's or the caller's. Otherwise someone else could swap `dir` for another after it
/// was checked, under the VMMs that open the files by name later.
pub(crate) fn check_ancestors(dir: &Path) -> Result<(), String> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("the current directory: {e}"))?
            .join(dir)
    };
    let me = euid();
    let trusted = |uid: u32| uid == 0 || uid == me;
    for a in abs.ancestors().skip(1) {
        let shown = a.display();
        let link = std::fs::symlink_metadata(a).map_err(|e| format!("{shown}: {e}"))?;
        if link.file_type().is_symlink() && !trusted(link.uid()) {
            return Err(format!(
                "{shown}: a symlink of uid {}: refused (it could point anywhere)",
                link.uid()
            ));
        }
        let md = std::fs::metadata(a).map_err(|e| format!("{shown}: {e}"))?;
        let shared = md.mode() & 0o022 != 0 && md.mode() & 0o1000 == 0;
        if !trusted(md.uid()) || shared {
            return Err(format!(
                "{shown}: owned by uid {} with mode {:o}: refused (another user could swap what is below it)",
                md.uid(),
                md.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// `name` in the open directory `dir`, created (or, with `force`, an existing regular
/// file of the caller's truncated to 0 first), `len` bytes of zeros, mode 0600. Never
/// follows a symlink.
fn create(dir: &OwnedFd, path: &Path, len: usize, force: bool) -> Result<File, String> {
    let what = path.display();
    let name = path.file_name().unwrap_or_default();
    let c = CString::new(name.as_bytes()).map_err(|_| format!("{what}: a NUL in the name"))?;
    let mut flags = libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if !force {
        flags |= libc::O_EXCL;
    }
    // SAFETY: `dir` is an open directory, `c` a NUL-terminated name in it; the result is a
    // new fd or -1, owned below.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EEXIST) => {
                format!("{what} exists (--force overwrites it; never while a VMM uses it)")
            }
            Some(libc::ELOOP) => format!("{what} is a symlink: refused"),
            _ => format!("{what}: {e}"),
        });
    }
    // SAFETY: `fd` is the new descriptor just opened, owned by nothing else.
    let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if force {
        // An existing file: only a regular file of the caller's with no other name.
        let md = f.metadata().map_err(|e| format!("{what}: {e}"))?;
        let me = euid();
        if !md.file_type().is_file() || md.uid() != me || md.nlink() != 1 {
            return Err(format!(
                "{what}: not a regular file of the caller's with one link: refused"
            ));
        }
    }
    // Zeros everywhere: the rings, and the rest of the BAR after the port region.
    f.set_len(0)
        .and_then(|()| f.set_len(len as u64))
        .map_err(|e| format!("{what}: cannot size it to {len} bytes: {e}"))?;
    Ok(f)
}

/// `n` random port tokens, distinct and not 0: a guest learns its own port's (its header),
/// never another's (only the config files hold them, which no guest maps).
fn tokens(n: usize) -> Result<Vec<u64>, String> {
    let mut urandom =
        std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?;
    let mut out: Vec<u64> = Vec::with_capacity(n);
    while out.len() < n {
        let mut b = [0u8; 8];
        std::io::Read::read_exact(&mut urandom, &mut b)
            .map_err(|e| format!("/dev/urandom: {e}"))?;
        let t = u64::from_le_bytes(b);
        if t != 0 && !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Writes every port's two files.
pub(crate) fn init(a: &InitArgs) -> Result<(), String> {
    let dir = open_dir(&a.dir)?;
    let n = a.macs.len() as u32;
    let tokens = tokens(a.macs.len())?;
    for (p, mac) in a.macs.iter().enumerate() {
        let port_path = a.dir.join(format!("port{p}"));
        let f = create(&dir, &port_path, PORT_FILE_SIZE, a.force)?;
        let map = SharedMap::new(&f, ELISA_NET_PORT_SIZE)
            .map_err(|e| format!("{}: mmap: {e}", port_path.display()))?;
        elisa_switch::init_port(&map, p as u32, n, *mac, tokens[p]);

        let cfg_path = a.dir.join(format!("config{p}"));
        let f = create(&dir, &cfg_path, ELISA_NET_CONFIG_SIZE, a.force)?;
        let map = SharedMap::new(&f, ELISA_NET_CONFIG_SIZE)
            .map_err(|e| format!("{}: mmap: {e}", cfg_path.display()))?;
        elisa_switch::init_config(&map, p as u32, &a.macs, &tokens);
        println!(
            "port {p}: {} ({PORT_FILE_SIZE} bytes, port region {ELISA_NET_PORT_SIZE:#x}), \
             {} ({ELISA_NET_CONFIG_SIZE} bytes), MAC {}",
            port_path.display(),
            cfg_path.display(),
            fmt_mac(mac)
        );
    }
    Ok(())
}

pub(crate) fn main(args: &[String]) -> ExitCode {
    let parsed = match args.first().map(String::as_str) {
        Some("init") => parse_init(&args[1..]),
        Some("-h" | "--help") => Ok(None),
        Some(x) => Err(format!("unknown command {x:?}")),
        None => Err("a command is required".into()),
    };
    crate::subcommand("switch", USAGE, parsed, init)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_args as args;

    #[test]
    fn port_file_is_a_power_of_two() {
        assert_eq!(PORT_FILE_SIZE, 2 << 20);
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Ok([2, 0, 0, 0, 0, 10]));
        assert_eq!(parse_mac("2:0:0:0:0:a"), Ok([2, 0, 0, 0, 0, 10]));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "03:00:00:00:00:01",
            "00:00:00:00:00:00",
            "02:00:00:00:00:100",
            "02:00:00:00:00:zz",
            "02::00:00:00:01",
            "+2:00:00:00:00:01",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad:?}");
        }
        assert_eq!(default_mac(0), [2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn parse() {
        let a = parse_init(&args("--dir /x --ports 3")).unwrap().unwrap();
        assert_eq!(a.dir, PathBuf::from("/x"));
        assert_eq!(a.macs, vec![default_mac(0), default_mac(1), default_mac(2)]);
        assert!(!a.force);
        let a = parse_init(&args(
            "--dir=/x --ports=2 --macs 02:00:00:00:00:09,02:00:00:00:00:08 --force",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(a.macs, vec![[2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 8]]);
        assert!(a.force);
        assert_eq!(parse_init(&args("--help")), Ok(None));
        for bad in [
            "--ports 2",
            "--dir /x",
            "--dir /x --ports 1",
            "--dir /x --ports 8",
            "--dir /x --ports two",
            "--dir /x --ports 2 --macs 02:00:00:00:00:01",
            "--dir /x --ports 2 --macs 02:00:00:00:00:01,02:00:00:00:00:01",
            "--dir /x --dir /y --ports 2",
            "--dir /x --ports 2 --bogus",
            "--dir /x --ports",
        ] {
            assert!(parse_init(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
