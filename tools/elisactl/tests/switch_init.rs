// SPDX-License-Identifier: GPL-2.0
//! `elisactl switch init`: the files it writes have the sizes VMMs need (a 2 MiB port file
//! for an ivshmem BAR, a 4 KiB config file) and the headers of `linux/elisa_net.h`, read
//! back through elisa-uapi's mirror of the C layout; and they make a working switch:
//! elisa-switch's own `call`, run over the files' bytes, answers INFO for every port and
//! carries a frame from port 0 to port 1. Existing files are refused without --force;
//! bad arguments exit 2.

use std::cell::RefCell;
use std::fs;
use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use elisa_switch::Region;
use elisa_uapi::net::*;

const PORT_FILE: u64 = 2 << 20;

fn elisactl(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_elisactl"))
        .args(args)
        .output()
        .expect("run elisactl");
    eprintln!(
        "elisactl {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh directory of this test.
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("elisactl-switch-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

/// A file's bytes as a [`Region`]: panics on any access outside them.
struct Bytes(RefCell<Vec<u8>>);

impl Bytes {
    fn load(path: &Path) -> Self {
        Bytes(RefCell::new(fs::read(path).unwrap()))
    }
}

impl Region for Bytes {
    fn load_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.0.borrow()[off..off + 4].try_into().unwrap())
    }
    fn store_u32(&self, off: usize, val: u32) {
        self.0.borrow_mut()[off..off + 4].copy_from_slice(&val.to_le_bytes());
    }
    fn load_u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.0.borrow()[off..off + 8].try_into().unwrap())
    }
    fn store_u64(&self, off: usize, val: u64) {
        self.0.borrow_mut()[off..off + 8].copy_from_slice(&val.to_le_bytes());
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0.borrow()[off..off + buf.len()]);
    }
    fn write(&self, off: usize, buf: &[u8]) {
        self.0.borrow_mut()[off..off + buf.len()].copy_from_slice(buf);
    }
    fn copy_from(&self, off: usize, src: &Self, src_off: usize, len: usize) {
        let data = src.0.borrow()[src_off..src_off + len].to_vec();
        self.write(off, &data);
    }
    fn try_lock(&self, off: usize) -> bool {
        let free = self.load_u32(off) == 0;
        if free {
            self.store_u32(off, 1);
        }
        free
    }
    fn add_u32(&self, off: usize, val: u32) -> u32 {
        let v = self.load_u32(off).wrapping_add(val);
        self.store_u32(off, v);
        v
    }
    fn unlock(&self, off: usize) {
        self.store_u32(off, 0);
    }
}

/// Offset of slot `idx` of ring `ring` in a port region.
fn slot(ring: usize, idx: u32) -> usize {
    4096 + ring * ELISA_NET_RING_SIZE + (idx % ELISA_NET_RING_SLOTS) as usize * ELISA_NET_SLOT_SIZE
}

fn rx_idx(s: usize) -> usize {
    offset_of!(ElisaNetPort, rx) + s * std::mem::size_of::<ElisaNetRingIdx>()
}

fn check_headers(dir: &Path, macs: &[[u8; 6]]) {
    let n = macs.len();
    // Every port's token, from its port file: not 0, distinct, and in every config file.
    let tokens: Vec<u64> = (0..n)
        .map(|p| {
            Bytes::load(&dir.join(format!("port{p}"))).load_u64(offset_of!(ElisaNetPort, token))
        })
        .collect();
    for (p, t) in tokens.iter().enumerate() {
        assert_ne!(*t, 0, "port {p}'s token");
        assert!(!tokens[..p].contains(t), "port {p}'s token repeats");
    }
    for (p, mac) in macs.iter().enumerate() {
        let port = dir.join(format!("port{p}"));
        let config = dir.join(format!("config{p}"));
        assert_eq!(
            fs::metadata(&port).unwrap().len(),
            PORT_FILE,
            "{}",
            port.display()
        );
        assert_eq!(
            fs::metadata(&config).unwrap().len(),
            ELISA_NET_CONFIG_SIZE as u64
        );
        let r = Bytes::load(&port);
        assert_eq!(r.load_u32(offset_of!(ElisaNetPort, magic)), ELISA_NET_MAGIC);
        assert_eq!(
            r.load_u32(offset_of!(ElisaNetPort, version)),
            ELISA_NET_VERSION
        );
        assert_eq!(r.load_u32(offset_of!(ElisaNetPort, port)), p as u32);
        assert_eq!(r.load_u32(offset_of!(ElisaNetPort, nr_ports)), n as u32);
        let mut got = [0u8; 6];
        r.read(offset_of!(ElisaNetPort, mac), &mut got);
        assert_eq!(&got, mac);
        // the token; every index and every ring slot is 0
        let bytes = r.0.borrow();
        assert!(
            bytes[offset_of!(ElisaNetPort, mac) + 6..offset_of!(ElisaNetPort, token)]
                .iter()
                .all(|&b| b == 0)
        );
        assert!(bytes[offset_of!(ElisaNetPort, token) + 8..]
            .iter()
            .all(|&b| b == 0));
        drop(bytes);

        let c = Bytes::load(&config);
        assert_eq!(
            c.load_u32(offset_of!(ElisaNetConfig, magic)),
            ELISA_NET_MAGIC
        );
        assert_eq!(
            c.load_u32(offset_of!(ElisaNetConfig, version)),
            ELISA_NET_VERSION
        );
        assert_eq!(c.load_u32(offset_of!(ElisaNetConfig, port)), p as u32);
        assert_eq!(c.load_u32(offset_of!(ElisaNetConfig, nr_ports)), n as u32);
        for q in 0..ELISA_NET_MAX_PORTS {
            let want = macs.get(q).map_or(0, |m| mac_to_u64(*m));
            assert_eq!(c.load_u64(offset_of!(ElisaNetConfig, macs) + 8 * q), want);
        }
        for q in 0..ELISA_NET_MAX_PORTS {
            let want = tokens.get(q).copied().unwrap_or(0);
            assert_eq!(c.load_u64(offset_of!(ElisaNetConfig, tokens) + 8 * q), want);
        }
        assert_eq!(c.load_u32(offset_of!(ElisaNetConfig, lock)), 0);
        assert_eq!(c.load_u32(offset_of!(ElisaNetConfig, tx_cons)), 0);
    }
}

#[test]
fn init_writes_a_working_switch() {
    let dir = tmp("work");
    let d = dir.to_str().unwrap();
    assert!(elisactl(&["switch", "init", "--dir", d, "--ports", "3"])
        .status
        .success());
    let macs: Vec<[u8; 6]> = (1..=3).map(|p| [2, 0, 0, 0, 0, p]).collect();
    check_headers(&dir, &macs);

    // The switch's own logic over the files: INFO for each port.
    let ports: Vec<Bytes> = (0..3)
        .map(|p| Bytes::load(&dir.join(format!("port{p}"))))
        .collect();
    let configs: Vec<Bytes> = (0..3)
        .map(|p| Bytes::load(&dir.join(format!("config{p}"))))
        .collect();
    for (p, c) in configs.iter().enumerate() {
        let info = elisa_switch::call(c, &ports, ELISA_NET_OP_INFO, 0);
        assert_eq!(
            info,
            (p | 3 << 8 | (ELISA_NET_VERSION as usize) << 16) as i64
        );
    }
    // A frame from port 0 to port 1 arrives in port 1's ring 1 + 0.
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&macs[1]);
    frame[6..12].copy_from_slice(&macs[0]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    ports[0].write(slot(0, 0) + SLOT_DATA, &frame);
    ports[0].store_u32(slot(0, 0), frame.len() as u32);
    ports[0].store_u32(offset_of!(ElisaNetPort, tx), 1);
    assert_eq!(
        elisa_switch::call(&configs[0], &ports, ELISA_NET_OP_XMIT, 0),
        1
    );
    assert_eq!(ports[1].load_u32(rx_idx(0)), 1, "port 1's rx[0].prod");
    assert_eq!(ports[1].load_u32(slot(1, 0)), frame.len() as u32);
    let mut got = vec![0u8; frame.len()];
    ports[1].read(slot(1, 0) + SLOT_DATA, &mut got);
    assert_eq!(got, frame);
    assert_eq!(
        elisa_switch::call(
            &configs[0],
            &ports,
            ELISA_NET_OP_STATS,
            ELISA_NET_STAT_TX_DELIVERED as u64
        ),
        1
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn existing_files_need_force() {
    let dir = tmp("force");
    let d = dir.to_str().unwrap();
    assert!(elisactl(&["switch", "init", "--dir", d, "--ports", "2"])
        .status
        .success());
    let out = elisactl(&["switch", "init", "--dir", d, "--ports", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    let macs = "02:aa:00:00:00:01,0a:bb:00:00:00:02";
    assert!(
        elisactl(&["switch", "init", "--dir", d, "--ports", "2", "--macs", macs, "--force"])
            .status
            .success()
    );
    check_headers(&dir, &[[2, 0xaa, 0, 0, 0, 1], [0x0a, 0xbb, 0, 0, 0, 2]]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_exit_2() {
    let dir = tmp("bad");
    let d = dir.to_str().unwrap();
    for args in [
        &["switch"][..],
        &["switch", "init", "--dir", d],
        &["switch", "init", "--dir", d, "--ports", "8"],
        &[
            "switch",
            "init",
            "--dir",
            d,
            "--ports",
            "2",
            "--macs",
            "01:00:00:00:00:01,02:00:00:00:00:02",
        ],
        &["switch", "frobnicate"],
    ] {
        assert_eq!(elisactl(args).status.code(), Some(2), "{args:?}");
    }
    assert!(!dir.exists());
}

/// The files are root's and the switch trusts a config file completely, so the directory
/// must be the caller's alone: a directory others may write to, a symlink in place of the
/// directory or of a file are refused, and nothing outside the directory is written.
#[test]
fn shared_or_symlinked_places_are_refused() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let base = tmp("links");
    fs::create_dir_all(&base).unwrap();
    let victim = base.join("victim");
    fs::write(&victim, b"precious").unwrap();
    let fails = |dir: &Path, force: bool, why: &str| {
        let d = dir.to_str().unwrap();
        let mut args = vec!["switch", "init", "--dir", d, "--ports", "2"];
        if force {
            args.push("--force");
        }
        let out = elisactl(&args);
        assert_eq!(out.status.code(), Some(1), "{d}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains(why), "{d}: {err}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    };

    // A directory that group or others may write to.
    let open = base.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    fails(&open, false, "may write to it");
    assert!(!open.join("port0").exists());

    // A symlink where the directory should be.
    let real = base.join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let link = base.join("link");
    symlink(&real, &link).unwrap();
    fails(&link, false, "not a directory");
    // ... also written with a trailing / or /., with which the kernel follows it.
    for l in [
        format!("{}/", link.display()),
        format!("{}/.", link.display()),
    ] {
        fails(Path::new(&l), false, "not a directory");
    }
    assert!(!real.join("port0").exists());

    // A directory below one that others may write to and that is not sticky.
    let shared = base.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    fails(&shared.join("sw"), false, "swap what is below it");
    assert!(!shared.join("sw").exists());

    // A symlink where a file should be, with and without --force.
    let own = base.join("own");
    fs::create_dir(&own).unwrap();
    fs::set_permissions(&own, fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&victim, own.join("port0")).unwrap();
    fails(&own, false, "exists");
    fails(&own, true, "symlink");

    // A missing directory is made the caller's alone.
    let new = base.join("new");
    assert!(elisactl(&[
        "switch",
        "init",
        "--dir",
        new.to_str().unwrap(),
        "--ports",
        "2"
    ])
    .status
    .success());
    assert_eq!(
        fs::metadata(&new).unwrap().permissions().mode() & 0o777,
        0o700
    );
    fs::remove_dir_all(&base).unwrap();
}
