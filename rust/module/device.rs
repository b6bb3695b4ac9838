// SPDX-License-Identifier: GPL-2.0
//! `/dev/elisa`: the control device, and the ioctls of its open files.
//!
//! One [`DevFile`] exists per open file of `/dev/elisa`; the C shim keeps it in
//! `file->private_data` and frees it through [`elisa_rust_dev_release`] when the last
//! reference to the file goes. The device node is mode 0600: only a privileged host
//! process (the VMM or the admin's tool) may open it. See `Documentation/api.rst`.

use crate::shim::pr_info_rl;
use crate::{caps, service, shim, uapi, vm};
use core::ffi::{c_long, c_uint, c_ulong, c_void};
use kernel::{
    prelude::*,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
};

// SAFETY: `ElisaVersion` is `repr(C)` with only integer fields and no padding (its layout
// is checked against the C header by the host tests), so every bit pattern is valid.
unsafe impl FromBytes for uapi::ElisaVersion {}
// SAFETY: as above: no padding bytes, so every byte of a value is initialised.
unsafe impl AsBytes for uapi::ElisaVersion {}
// SAFETY: `repr(C)`, integer fields only, no padding (checked against the C header).
unsafe impl FromBytes for uapi::ElisaAttachVm {}
// SAFETY: `repr(C)`, integer fields only, no padding (checked against the C header).
unsafe impl FromBytes for uapi::ElisaCreateRegion {}
// SAFETY: `repr(C)`, integer fields and arrays of such structs, no padding (checked
// against the C header).
unsafe impl FromBytes for uapi::ElisaCreateService {}
// SAFETY: `repr(C)`, integer fields only, no padding (checked against the C header).
unsafe impl FromBytes for uapi::ElisaGrant {}
// SAFETY: as above: no padding bytes, so every byte of a value is initialised.
unsafe impl AsBytes for uapi::ElisaGrant {}

/// State of one open file of `/dev/elisa`.
pub(crate) struct DevFile;

/// Registers `/dev/elisa`.
pub(crate) fn register() -> Result {
    // SAFETY: called once from module init; the misc device is a static of the shim.
    let ret = unsafe { shim::elisa_shim_misc_register() };
    if ret != 0 {
        pr_err!("cannot register /dev/elisa: error {}\n", ret);
        return Err(Error::from_errno(ret));
    }
    Ok(())
}

/// Unregisters `/dev/elisa`.
pub(crate) fn deregister() {
    // SAFETY: only called from module exit, after `register` succeeded in module init.
    unsafe { shim::elisa_shim_misc_deregister() };
}

/// `open` of `/dev/elisa`: returns the new file's state, or an `ERR_PTR`.
#[no_mangle]
extern "C" fn elisa_rust_dev_open() -> *mut c_void {
    match KBox::new(DevFile, GFP_KERNEL_ACCOUNT) {
        Ok(b) => KBox::into_raw(b).cast(),
        Err(_) => ENOMEM.to_ptr(),
    }
}

/// `release` of `/dev/elisa`: frees what [`elisa_rust_dev_open`] returned.
#[no_mangle]
extern "C" fn elisa_rust_dev_release(priv_: *mut c_void) {
    // SAFETY: `priv_` is the pointer `elisa_rust_dev_open` returned for this file (the
    // shim stored it in `private_data`), and release runs once per file, so we own it.
    drop(unsafe { KBox::from_raw(priv_.cast::<DevFile>()) });
}

/// `unlocked_ioctl` of `/dev/elisa`; `writable`: the file was opened for writing.
#[no_mangle]
extern "C" fn elisa_rust_dev_ioctl(
    priv_: *mut c_void,
    cmd: c_uint,
    arg: c_ulong,
    writable: bool,
) -> c_long {
    // SAFETY: `priv_` came from `elisa_rust_dev_open` and stays valid until release, which
    // the VFS never runs while an ioctl on the same file is in progress.
    let file = unsafe { &*priv_.cast::<DevFile>() };
    match file.ioctl(cmd, arg as usize, writable) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

impl DevFile {
    fn ioctl(&self, cmd: u32, arg: usize, writable: bool) -> Result<isize> {
        match cmd {
            uapi::ELISA_GET_VERSION => get_version(arg),
            // Attaching a VM and making regions and services hand out what only root
            // should (pinned memory, code the host runs): a file opened read-only may only
            // ask the version, so that read access to the device (a mode of 0640, say)
            // grants no more.
            uapi::ELISA_ATTACH_VM | uapi::ELISA_CREATE_REGION | uapi::ELISA_CREATE_SERVICE
                if !writable =>
            {
                pr_info_rl!(
                    "/dev/elisa: ioctl {:#x} needs the device open for writing\n",
                    cmd
                );
                Err(EBADF)
            }
            uapi::ELISA_ATTACH_VM => {
                let mut reader =
                    UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::ElisaAttachVm>())
                        .reader();
                vm::attach(&reader.read()?)
            }
            uapi::ELISA_CREATE_REGION => {
                let mut reader = UserSlice::new(
                    UserPtr::from_addr(arg),
                    size_of::<uapi::ElisaCreateRegion>(),
                )
                .reader();
                service::create_region(&reader.read()?)
            }
            uapi::ELISA_CREATE_SERVICE => {
                let mut reader = UserSlice::new(
                    UserPtr::from_addr(arg),
                    size_of::<uapi::ElisaCreateService>(),
                )
                .reader();
                let req: KBox<uapi::ElisaCreateService> =
                    KBox::new(reader.read()?, GFP_KERNEL_ACCOUNT)?;
                service::create_service(&req)
            }
            _ => Err(ENOTTY),
        }
    }
}

/// `ELISA_GET_VERSION`.
fn get_version(arg: usize) -> Result<isize> {
    let slice = UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::ElisaVersion>());
    let (mut reader, mut writer) = slice.reader_writer();
    let v: uapi::ElisaVersion = reader.read()?;
    if v.flags != 0 || v.reserved.iter().any(|&r| r != 0) {
        pr_info_rl!("ELISA_GET_VERSION: flags and reserved fields must be 0\n");
        return Err(EINVAL);
    }
    let host = caps::HostCaps::read();
    let out = uapi::ElisaVersion {
        flags: 0,
        api_version: uapi::ELISA_API_VERSION,
        caps: host.caps,
        vmx_procbased_ctls2: host.msrs.procbased_ctls2,
        vmx_ept_vpid_cap: host.msrs.ept_vpid_cap,
        vmx_vmfunc: host.msrs.vmfunc,
        reserved: [0; 4],
    };
    writer.write(&out)?;
    Ok(0)
}
