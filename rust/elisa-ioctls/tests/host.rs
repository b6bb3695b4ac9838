// SPDX-License-Identifier: Apache-2.0 OR MIT
//! What runs without `/dev/elisa`: the checks made before each ioctl (the kernel's own,
//! from `elisa_uapi::check`), the errno of a refused call (`/dev/null` answers every
//! elisa ioctl with `ENOTTY`), and fd ownership.

use elisa_ioctls::uapi::{self, ElisaServiceRegion};
use elisa_ioctls::{Access, Elisa, ElisaVm, Region, ServiceSpec};
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

const KIB4: u64 = 4096;
const CODE_GVA: u64 = 0x6000_0000_0000;

fn dev_null() -> OwnedFd {
    File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap()
        .into()
}

/// An object on `fd` without the kind check. Only with `/dev/null`, which answers every
/// elisa ioctl with `ENOTTY` and writes nothing: the contract of `from_fd_unchecked`.
macro_rules! unchecked {
    ($t:ty, $fd:expr) => {
        // SAFETY: `$fd` is /dev/null (see above).
        unsafe { <$t>::from_fd_unchecked($fd) }
    };
}

fn enotty(r: io::Result<impl std::fmt::Debug>) {
    let e = r.expect_err("/dev/null accepted an elisa ioctl");
    assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
}

/// A refusal before the system call: InvalidInput, the kernel's message, no errno.
fn refused(r: io::Result<impl std::fmt::Debug>, words: &str) {
    let e = r.expect_err("accepted");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(e.raw_os_error(), None, "{e}: a system call was made");
    assert!(
        e.to_string().contains(words),
        "{e:?} does not say {words:?}"
    );
}

#[test]
fn open_reports_errno() {
    let missing = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-elisa");
    let e = Elisa::open_path(&missing).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    // The real device: absent on a build host (ENOENT), answering on a host with the
    // module loaded (EACCES without the permission).
    match Elisa::open() {
        Ok(dev) => assert_eq!(dev.version().unwrap().api_version, uapi::ELISA_API_VERSION),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EACCES)),
            "{e}"
        ),
    }
}

/// Objects take only elisa's own files: another file, device or anonymous inode is
/// refused before any ioctl is made on it, saying what it is.
#[test]
fn objects_take_only_elisa_files() {
    fn not_elisa<T: std::fmt::Debug>(r: io::Result<T>, says: &str) {
        let e = r.expect_err("a file that is not elisa's was taken");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(says), "{e} does not say {says:?}");
    }
    // A character device that is not a misc device (1:3), and a regular file.
    not_elisa(Elisa::open_path("/dev/null"), "is not a misc device");
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("not-elisa");
    std::fs::write(&tmp, b"").unwrap();
    not_elisa(Elisa::open_path(&tmp), "not a character device");
    // A misc device that is not elisa's, where the host has one (/dev/fuse is 10:229).
    if std::fs::metadata("/dev/fuse").is_ok() {
        if let Ok(r) = Elisa::open_path("/dev/fuse") {
            panic!("/dev/fuse taken for elisa: {r:?}");
        }
    }
    not_elisa(ElisaVm::try_from(dev_null()), "it is /dev/null");
    not_elisa(Region::try_from(dev_null()), "not an elisa-region file");
    // An anonymous inode of another kind: an eventfd.
    // SAFETY: eventfd takes two integers and returns a new fd or -1.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(efd >= 0);
    // SAFETY: eventfd just returned `efd`, which nothing else owns.
    let efd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(efd) };
    not_elisa(
        elisa_ioctls::Service::try_from(efd),
        "it is anon_inode:[eventfd]",
    );
}

#[test]
fn kernel_errno_reaches_the_caller() {
    let dev = unchecked!(Elisa, dev_null());
    enotty(dev.version());
    enotty(dev.attach_vm(&dev_null()));
    let memfd = dev_null();
    enotty(dev.create_region(&memfd, 0, KIB4));
    let code = dev_null();
    enotty(dev.create_service(&ServiceSpec::new(&code, KIB4, CODE_GVA)));
    let vm = unchecked!(ElisaVm, dev_null());
    let service = unchecked!(elisa_ioctls::Service, dev_null());
    enotty(vm.grant(&service, 0x5000_0000_0000, 0));
    enotty(vm.grant(&service, 0x5000_0000_0000, elisa_ioctls::GRANT_USER));
}

#[test]
fn region_checks_before_the_call() {
    let dev = unchecked!(Elisa, dev_null());
    let m = dev_null();
    refused(dev.create_region(&m, 0, 0), "length must be 4 KiB..1 GiB");
    refused(dev.create_region(&m, 0, 100), "multiples of 4096");
    refused(dev.create_region(&m, 512, KIB4), "multiples of 4096");
    refused(
        dev.create_region(&m, 0, uapi::ELISA_REGION_MAX_SIZE + KIB4),
        "length must be 4 KiB..1 GiB",
    );
    refused(dev.create_region(&m, !0xfff_u64, KIB4 * 2), "overflows");
    // The largest region passes the checks (and reaches /dev/null).
    enotty(dev.create_region(&m, 0, uapi::ELISA_REGION_MAX_SIZE));
}

#[test]
fn service_spec_fills_the_abi_struct() {
    let code = dev_null();
    let (r0, r1) = (
        unchecked!(Region, dev_null()),
        unchecked!(Region, dev_null()),
    );
    let spec = ServiceSpec::new(&code, 2 * KIB4, CODE_GVA)
        .code_offset(KIB4)
        .entry_offset(0x10)
        .region(&r0, 0x6000_0010_0000, Access::ReadWrite)
        .region(&r1, 0x6000_0020_0000, Access::ReadOnly);
    let req = spec.to_uapi().unwrap();
    assert_eq!(spec.entry_gva().unwrap(), CODE_GVA + 0x10);
    assert_eq!(req.flags, 0);
    assert_eq!(req.code_fd, code.as_raw_fd());
    assert_eq!((req.code_offset, req.code_size), (KIB4, 2 * KIB4));
    assert_eq!((req.code_gva, req.entry_offset), (CODE_GVA, 0x10));
    assert_eq!(req.nr_regions, 2);
    assert_eq!(
        req.regions[0],
        ElisaServiceRegion {
            region_fd: r0.as_raw_fd(),
            access: uapi::ELISA_ACCESS_READ | uapi::ELISA_ACCESS_WRITE,
            gva: 0x6000_0010_0000,
            reserved: [0; 2],
        }
    );
    assert_eq!(req.regions[1].region_fd, r1.as_raw_fd());
    assert_eq!(req.regions[1].access, uapi::ELISA_ACCESS_READ);
    assert!(req.regions[2..]
        .iter()
        .all(|r| *r == ElisaServiceRegion::default()));
    assert_eq!(req.reserved0, 0);
    assert_eq!(req.reserved, [0; 4]);
}

#[test]
fn service_spec_checks_mirror_the_kernel() {
    let code = dev_null();
    let new = |size, gva| ServiceSpec::new(&code, size, gva);
    refused(new(0, CODE_GVA).to_uapi(), "4 KiB multiples");
    refused(new(KIB4 + 1, CODE_GVA).to_uapi(), "4 KiB multiples");
    refused(
        new(uapi::ELISA_SERVICE_MAX_CODE + KIB4, CODE_GVA).to_uapi(),
        "4 KiB..64 KiB",
    );
    refused(new(KIB4, CODE_GVA + 8).to_uapi(), "4 KiB multiples");
    refused(
        new(KIB4, CODE_GVA).code_offset(8).to_uapi(),
        "4 KiB multiples",
    );
    refused(
        new(KIB4, CODE_GVA).entry_offset(KIB4).to_uapi(),
        "entry_offset must be below code_size",
    );
    refused(
        new(2 * KIB4, !0xfff_u64).entry_offset(KIB4).entry_gva(),
        "code_gva overflows",
    );
    // A file offset is a loff_t: the code must end below 2^63.
    refused(
        new(KIB4, CODE_GVA).code_offset(1 << 63).to_uapi(),
        "below 2^63",
    );
    refused(
        new(KIB4, CODE_GVA).code_offset(!0xfff_u64).to_uapi(),
        "below 2^63",
    );
    refused(
        new(KIB4, CODE_GVA).code_offset((1 << 63) - KIB4).to_uapi(),
        "below 2^63",
    );
    assert!(new(KIB4, CODE_GVA)
        .code_offset((1 << 63) - 2 * KIB4)
        .to_uapi()
        .is_ok());
    assert!(new(uapi::ELISA_SERVICE_MAX_CODE, CODE_GVA)
        .entry_offset(uapi::ELISA_SERVICE_MAX_CODE - 1)
        .to_uapi()
        .is_ok());

    let regions: Vec<Region> = (0..9).map(|_| unchecked!(Region, dev_null())).collect();
    let spec = |n: usize| {
        regions[..n]
            .iter()
            .enumerate()
            .fold(new(KIB4, CODE_GVA), |s, (i, r)| {
                s.region(r, 0x7000_0000_0000 + i as u64 * KIB4, Access::ReadOnly)
            })
    };
    assert_eq!(spec(8).to_uapi().unwrap().nr_regions, 8);
    refused(spec(9).to_uapi(), "too many regions (at most 8)");
    refused(
        new(KIB4, CODE_GVA)
            .region(&regions[0], 0x7000_0000_0800, Access::ReadWrite)
            .to_uapi(),
        "gva must be 4 KiB aligned",
    );
    // create_service runs the same checks before the call.
    let dev = unchecked!(Elisa, dev_null());
    refused(dev.create_service(&spec(9)), "too many regions");
    enotty(dev.create_service(&spec(8)));
}

#[test]
fn access_bits() {
    assert_eq!(Access::ReadOnly.bits(), uapi::ELISA_ACCESS_READ);
    assert_eq!(
        Access::ReadWrite.bits(),
        uapi::ELISA_ACCESS_READ | uapi::ELISA_ACCESS_WRITE
    );
}

#[test]
fn objects_own_their_fd() {
    let fd = dev_null();
    let raw = fd.as_raw_fd();
    let vm = unchecked!(ElisaVm, fd);
    assert_eq!(vm.as_raw_fd(), raw);
    assert_eq!(vm.as_fd().as_raw_fd(), raw);
    let back = OwnedFd::from(vm);
    assert_eq!(back.as_raw_fd(), raw);
}

#[test]
fn region_memfd_is_sealed_against_shrinking() {
    let m = elisa_ioctls::region_memfd(c"elisa-ioctls-test", 2 * KIB4).unwrap();
    assert_eq!(m.metadata().unwrap().len(), 2 * KIB4);
    // SAFETY: F_GET_SEALS on an fd `m` keeps open; no memory is passed.
    let seals = unsafe { libc::fcntl(m.as_raw_fd(), libc::F_GET_SEALS) };
    assert_eq!(seals, libc::F_SEAL_SHRINK, "only F_SEAL_SHRINK");
    let e = m.set_len(KIB4).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    // Growing is allowed; the region's range stays inside the file.
    m.set_len(4 * KIB4).unwrap();
}
