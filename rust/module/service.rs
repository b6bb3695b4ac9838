// SPDX-License-Identifier: GPL-2.0
//! Regions and services, and their files.
//!
//! A [`Region`] is a range of a shmem (memfd, tmpfs) or hugetlbfs file whose pages are
//! long-term pinned (`memfd_pin_folios`) and accounted for as long as the region exists;
//! the views map them by the 4 KiB HPAs kept here. An elisa-region file holds one
//! reference, and every service that maps it another. A [`Service`] is trusted code,
//! copied into module-owned pages when it is created (so the host process cannot change it
//! later), an entry point, and the regions it maps; an elisa-service file holds one
//! reference, and a grant another. Both are `Arc`s: the pages go with the last user,
//! whatever the order in which the fds, the elisa-vm files and the VMs are closed.
//!
//! A region stays coupled to its file only while its pages are the file's: a memfd must be
//! sealed with `F_SEAL_SHRINK` (the shim refuses it otherwise), and a region that hole
//! punching or the truncation of an unsealable tmpfs or hugetlbfs file cut out of its file
//! is *decoupled*: `ELISA_CREATE_SERVICE` and `ELISA_GRANT` refuse a service that maps it
//! ([`ENXIO`]), and its release logs that writes since are not in the file
//! (`Documentation/design.rst`, "Regions and their files").

use crate::elisa_core::addr::{Gva, Hpa, PageSize, PAGE_SIZE};
use crate::elisa_core::gate::ENDBR64;
use crate::elisa_core::layout::{region_page_size, RegionAccess};
use crate::pages::{self, HeldPage};
use crate::shim::pr_info_rl;
use crate::{shim, uapi};
use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
use kernel::ffi::c_char;
use kernel::{bindings, fs::file::LocalFile, prelude::*, sync::Arc, sync::ArcBorrow};

/// `ELISA_OBJ_REGION` and `ELISA_OBJ_SERVICE` of `elisa_shim.h`.
const OBJ_REGION: i32 = 1;
const OBJ_SERVICE: i32 = 2;

/// Long-term pinned pages of a shmem (memfd, tmpfs) or hugetlbfs file. See the file header.
pub(crate) struct Region {
    /// Host-physical address of each 4 KiB page of the range, in order (a huge folio
    /// gives the addresses of its subpages). Up to 2 MiB (a 1 GiB region): vmalloc'd when
    /// large.
    hpas: KVVec<u64>,
    /// The shim's `struct elisa_region_pin`: the pinned folios, the file (counted as a
    /// writable mapping) and the mm the pages are accounted to.
    pin: *mut c_void,
    /// The refusals of `check_coupled` logged for this region, one bit per ioctl
    /// (`COUPLED_*`): each is logged once, however often a caller retries.
    refusals_logged: AtomicU8,
}

// SAFETY: the pin pointer is only handed to the shim, which may release it from any
// thread in process context; the region never changes after creation but for an atomic.
unsafe impl Send for Region {}
// SAFETY: as above; the only interior mutability is `refusals_logged`, an atomic.
unsafe impl Sync for Region {}

impl Region {
    /// The number of 4 KiB pages of the region, for debugfs.
    pub(crate) fn nr_pages(&self) -> usize {
        self.hpas.len()
    }

    /// The 4 KiB pages of the region that are no longer its file's (truncated or punched
    /// out of it); 0 while the region is coupled to its file.
    pub(crate) fn decoupled_pages(&self) -> u64 {
        // SAFETY: `pin` is the region's live pin (released only in `drop`).
        unsafe { shim::elisa_shim_region_decoupled(self.pin) }
    }

    /// Calls `f` with the region's name for the kernel log: its file, range and creator.
    fn with_name(&self, f: impl FnOnce(&CStr)) {
        let mut buf = [0u8; 320];
        // SAFETY: `pin` is the region's live pin, and `buf` is valid for `buf.len()` bytes,
        // which the shim NUL-terminates.
        unsafe {
            shim::elisa_shim_region_name(self.pin, buf.as_mut_ptr().cast(), buf.len());
        }
        // SAFETY: the shim wrote a NUL-terminated string into `buf`, which outlives `f`.
        f(unsafe { CStr::from_char_ptr(buf.as_ptr().cast()) });
    }

    /// Host-physical address of page `index`.
    pub(crate) fn page_hpa(&self, index: u64) -> Option<Hpa> {
        Some(Hpa(*self.hpas.get(usize::try_from(index).ok()?)?))
    }

    /// Host-physical address of page `index` counted in pages of `size`: of its first 4 KiB
    /// page (the caller chose `size` with `region_page_size`, which checked that each such
    /// page is one aligned run).
    pub(crate) fn frame_hpa(&self, index: u64, size: PageSize) -> Option<Hpa> {
        self.page_hpa(index.checked_mul(size.bytes() / PAGE_SIZE)?)
    }

    /// The leaf size its views map it with at `gva` (`elisa_core::layout::region_page_size`).
    pub(crate) fn page_size_at(&self, gva: Gva, huge_2m: bool) -> PageSize {
        region_page_size(&self.hpas, gva, huge_2m)
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.hpas.len() as u64 * PAGE_SIZE
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let lost = self.decoupled_pages();
        if lost != 0 {
            let total = self.hpas.len();
            self.with_name(|name| {
                pr_warn!(
                    "region {} released: {} of its {} pages had been cut out of the file (truncated or a hole punched) while the region was in use; what was written to them since is not in the file\n",
                    name,
                    lost,
                    total
                )
            });
        }
        // SAFETY: `elisa_shim_region_pin` returned this pin, this is its only release, and
        // the last reference goes in process context (release or detach).
        unsafe { shim::elisa_shim_region_unpin(self.pin) };
        pages::count_pinned(self.hpas.len(), false);
    }
}

/// One mapped region of a service.
pub(crate) struct ServiceRegion {
    pub(crate) region: Arc<Region>,
    pub(crate) access: RegionAccess,
    pub(crate) gva: Gva,
}

/// Trusted code and its regions. See the file header.
pub(crate) struct Service {
    /// The code, copied at creation; mapped execute-only.
    pub(crate) code: KVec<HeldPage>,
    pub(crate) code_gva: Gva,
    pub(crate) entry: Gva,
    /// The entry starts with `ENDBR64`: an indirect call may land there under CET
    /// indirect-branch tracking (`VcpuState::enter`).
    pub(crate) endbr: bool,
    pub(crate) regions: KVec<ServiceRegion>,
}

impl Service {
    /// Host-physical address of code page `index`.
    pub(crate) fn code_hpa(&self, index: u64) -> Option<Hpa> {
        let page = self.code.get(usize::try_from(index).ok()?)?;
        // SAFETY: `page` is a valid, allocated page owned by the service.
        Some(Hpa(unsafe {
            shim::elisa_shim_page_to_phys(page.as_ptr().cast())
        }))
    }
}

fn einval(what: &str) -> Error {
    pr_info_rl!("{}\n", what);
    EINVAL
}

/// `Region::refusals_logged`: the refusal of `ELISA_CREATE_SERVICE`, of `ELISA_GRANT`.
const COUPLED_SERVICE: u8 = 1 << 0;
const COUPLED_GRANT: u8 = 1 << 1;

/// Refuses (`ENXIO`, with a log line) a service that maps a region decoupled from its file:
/// a page of it was truncated or punched out, so the guest's writes would no longer reach
/// the file. `what` names the ioctl, `bit` is its `COUPLED_*` bit.
fn check_coupled(what: &str, bit: u8, regions: &[ServiceRegion]) -> Result {
    for (i, r) in regions.iter().enumerate() {
        let lost = r.region.decoupled_pages();
        if lost != 0 {
            let total = r.region.hpas.len();
            // Once per region and ioctl: a holder of a service fd could retry a grant in a
            // loop (the shared rate limit would hide other refusals then).
            if r.region.refusals_logged.fetch_or(bit, Relaxed) & bit != 0 {
                return Err(ENXIO);
            }
            r.region.with_name(|name| {
                pr_info!(
                    "{}: region {} ({}): {} of its {} pages are no longer in the file (truncated or a hole punched); refused\n",
                    what,
                    i,
                    name,
                    lost,
                    total
                )
            });
            return Err(ENXIO);
        }
    }
    Ok(())
}

/// `ELISA_CREATE_REGION`. Returns the new elisa-region fd.
pub(crate) fn create_region(req: &uapi::ElisaCreateRegion) -> Result<isize> {
    uapi::check::create_region(req).map_err(einval)?;
    let n = (req.length / PAGE_SIZE) as usize;
    let mut hpas = KVVec::from_elem(0u64, n, GFP_KERNEL_ACCOUNT)?;
    let mut pin = null_mut();
    let mut why: *const c_char = core::ptr::null();
    // SAFETY: `hpas` has room for `n` addresses; the shim checks the fd, the file and the
    // range, and sets `why` to a static string.
    let r = unsafe {
        shim::elisa_shim_region_pin(
            req.fd,
            req.offset,
            n as u64,
            hpas.as_mut_ptr(),
            &mut pin,
            &mut why,
        )
    };
    if r != 0 {
        let why = if why.is_null() {
            c""
        } else {
            // SAFETY: the shim sets `why` to a NUL-terminated static string.
            unsafe { CStr::from_char_ptr(why) }
        };
        // Not rate-limited: the one line that says which check refused the file, which a
        // VMM author needs every time (elisa_hostile_vmm_test counts them).
        pr_info!(
            "ELISA_CREATE_REGION: fd {} [{:#x}, +{:#x}): {} (error {})\n",
            req.fd,
            req.offset,
            req.length,
            why,
            r
        );
        return Err(Error::from_errno(r));
    }
    pages::count_pinned(hpas.len(), true);
    let region = Arc::new(
        Region {
            hpas,
            pin,
            refusals_logged: AtomicU8::new(0),
        },
        GFP_KERNEL_ACCOUNT,
    )?;
    let p = region.into_raw();
    // SAFETY: the new file owns this reference; its release returns it exactly once.
    let fd = unsafe { shim::elisa_shim_obj_fd(OBJ_REGION, p.cast_mut().cast()) };
    if fd < 0 {
        // SAFETY: no file was created: the reference is still ours.
        drop(unsafe { Arc::from_raw(p) });
        return Err(Error::from_errno(fd));
    }
    Ok(fd as isize)
}

/// A new reference to the object of kind `kind` behind `fd`.
fn obj_from_fd<T>(fd: i32, kind: i32, what: &str) -> Result<Arc<T>> {
    let mut file = null_mut();
    // SAFETY: `fd` is an fd number of the caller; the shim checks it and the file's kind.
    let p = unsafe { shim::elisa_shim_obj_fget(fd, kind, &mut file) };
    let p = kernel::error::from_err_ptr(p).inspect_err(|_| {
        crate::shim::pr_info_rl!("fd {} is not an {} fd\n", fd, what);
    })?;
    // SAFETY: a file of this kind holds an `Arc<T>` reference in its private data (from
    // `into_raw`), and our file reference keeps it alive while we take a new one.
    let arc: Arc<T> = unsafe { ArcBorrow::from_raw(p.cast::<T>().cast_const()) }.into();
    // SAFETY: drops the file reference `elisa_shim_obj_fget` took.
    unsafe { bindings::fput(file.cast()) };
    Ok(arc)
}

/// The service behind an elisa-service fd, for `ELISA_GRANT`: refused with `ENXIO` when a
/// region it maps has been cut out of its file since (see the file header).
pub(crate) fn service_from_fd(fd: i32) -> Result<Arc<Service>> {
    let svc: Arc<Service> = obj_from_fd(fd, OBJ_SERVICE, "elisa-service")?;
    check_coupled("ELISA_GRANT", COUPLED_GRANT, &svc.regions)?;
    Ok(svc)
}

/// `ELISA_CREATE_SERVICE`. Returns the new elisa-service fd.
pub(crate) fn create_service(req: &uapi::ElisaCreateService) -> Result<isize> {
    // The field checks, shared with the user-space libraries.
    let entry = uapi::check::create_service(req).map_err(einval)?;
    let nr = req.nr_regions as usize;
    let mut regions = KVec::with_capacity(nr, GFP_KERNEL_ACCOUNT)?;
    for r in req.regions.iter().take(nr) {
        // `check::create_service` let only READ and READ | WRITE through.
        let access = if r.access & uapi::ELISA_ACCESS_WRITE != 0 {
            RegionAccess::ReadWrite
        } else {
            RegionAccess::ReadOnly
        };
        let region = obj_from_fd(r.region_fd, OBJ_REGION, "elisa-region")?;
        regions.push(
            ServiceRegion {
                region,
                access,
                gva: Gva(r.gva),
            },
            GFP_KERNEL_ACCOUNT,
        )?;
    }
    check_coupled("ELISA_CREATE_SERVICE", COUPLED_SERVICE, &regions)?;
    // Copy the code into pages of our own.
    let len = req.code_size as usize;
    let mut buf = KVec::from_elem(0u8, len, GFP_KERNEL_ACCOUNT)?;
    let n = read_fd(req.code_fd, req.code_offset, &mut buf);
    if n != len as i64 {
        pr_info_rl!(
            "ELISA_CREATE_SERVICE: cannot read {:#x} bytes of code at {:#x} of fd {} (got {})\n",
            len,
            req.code_offset,
            req.code_fd,
            n
        );
        // No such fd, or not open for reading: EBADF; a signal during a blocking read (a
        // pipe without data) is the caller's to see; any other failure of the file (a pipe
        // with an offset, a directory, an I/O error) is the request's: EINVAL, with the
        // line above.
        let passed = [EBADF, EINTR, ERESTARTSYS].map(|e| e.to_errno() as i64);
        return Err(if passed.contains(&n) {
            Error::from_errno(n as i32)
        } else {
            EINVAL
        });
    }
    let mut code = KVec::with_capacity(len / PAGE_SIZE as usize, GFP_KERNEL_ACCOUNT)?;
    for chunk in buf.chunks(PAGE_SIZE as usize) {
        let page = HeldPage::alloc(GFP_KERNEL_ACCOUNT)?;
        // SAFETY: `chunk` is valid for its length, at most one page.
        unsafe { page.write_raw(chunk.as_ptr(), 0, chunk.len())? };
        code.push(page, GFP_KERNEL_ACCOUNT)?;
    }
    let at = entry.wrapping_sub(req.code_gva) as usize;
    let endbr = buf.get(at..at.saturating_add(4)) == Some(&ENDBR64[..]);
    let svc = Arc::new(
        Service {
            code,
            code_gva: Gva(req.code_gva),
            entry: Gva(entry),
            endbr,
            regions,
        },
        GFP_KERNEL_ACCOUNT,
    )?;
    let p = svc.into_raw();
    // SAFETY: the new file owns this reference; its release returns it exactly once.
    let fd = unsafe { shim::elisa_shim_obj_fd(OBJ_SERVICE, p.cast_mut().cast()) };
    if fd < 0 {
        // SAFETY: no file was created: the reference is still ours.
        drop(unsafe { Arc::from_raw(p) });
        return Err(Error::from_errno(fd));
    }
    Ok(fd as isize)
}

/// `release` of an elisa-region file.
#[no_mangle]
extern "C" fn elisa_rust_region_release(priv_: *mut c_void) {
    // SAFETY: `priv_` is the reference `create_region` gave the file; release runs once.
    drop(unsafe { Arc::from_raw(priv_.cast::<Region>().cast_const()) });
}

/// `release` of an elisa-service file.
#[no_mangle]
extern "C" fn elisa_rust_service_release(priv_: *mut c_void) {
    // SAFETY: `priv_` is the reference `create_service` gave the file; release runs once.
    drop(unsafe { Arc::from_raw(priv_.cast::<Service>().cast_const()) });
}

/// `fmode_t` `FMODE_READ` (include/linux/fs.h): a `__force` cast that bindgen cannot
/// evaluate, so it has no binding.
const FMODE_READ: u32 = 1 << 0;

/// Reads `buf.len()` bytes at `offset` of the caller's file `fd` into `buf`. Returns the
/// byte count or a negative errno: -EBADF also for a file not open for reading, as
/// read(2) (`kernel_read()` warns on those). Process context.
fn read_fd(fd: i32, offset: u64, buf: &mut [u8]) -> i64 {
    // A negative fd is a huge one, which `fget` refuses, as C's conversion does.
    let Ok(f) = LocalFile::fget(fd as u32) else {
        return EBADF.to_errno() as i64;
    };
    let fp = f.as_ptr();
    // SAFETY: `fp` is the file `f` holds a reference on; `f_mode` is set at open and not
    // changed after.
    if unsafe { (*fp).f_mode } & FMODE_READ == 0 {
        return EBADF.to_errno() as i64;
    }
    // `kernel_read()` reads only through `read_iter`, and refuses a file whose
    // operations have no `read_iter` or also a `read` (`/dev/zero`, a directory) with a
    // kernel-log line of its own that prints the file's path and the caller's command
    // unescaped: such a file is refused here first (EINVAL, with the caller's line).
    // SAFETY: as above; `f_op` is set at open and points to static operations.
    let ops = unsafe { &*(*fp).f_op };
    if ops.read_iter.is_none() || ops.read.is_some() {
        return EINVAL.to_errno() as i64;
    }
    let mut pos = offset as bindings::loff_t;
    // SAFETY: `fp` is an open file readable by the kernel (checked above), held by `f`
    // for the call; `buf` is writable for its length; process context.
    (unsafe { bindings::kernel_read(fp, buf.as_mut_ptr().cast(), buf.len(), &mut pos) }) as i64
}
