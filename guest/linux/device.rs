// SPDX-License-Identifier: GPL-2.0
//! `/dev/elisa-guest`: the ioctls through which guest user space lists the gates and calls
//! a service (`include/uapi/linux/elisa_guest.h`, `Documentation/guest-linux.rst`).
//!
//! The C shim registers the misc device (mode 0600) and forwards `unlocked_ioctl` to
//! [`elisa_guest_rust_ioctl`]. An open file has no state of its own; every ioctl reads its
//! argument once and writes it back once.

use crate::driver::{self, Driver};
use crate::uapi::{self, check};
use core::ffi::{c_long, c_uint, c_ulong};
use core::sync::atomic::Ordering::Relaxed;
use kernel::{
    prelude::*,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
};

// SAFETY: `repr(C)` with integer fields only and no padding (sizes and offsets are checked
// against the C header by elisa-uapi's tests), so every bit pattern is a valid value.
unsafe impl FromBytes for uapi::ElisaGuestInfo {}
// SAFETY: as above: no padding, so every byte of a value is initialised.
unsafe impl AsBytes for uapi::ElisaGuestInfo {}
// SAFETY: `repr(C)`, integer fields and a byte array, no padding (checked as above).
unsafe impl FromBytes for uapi::ElisaGuestGate {}
// SAFETY: as above.
unsafe impl AsBytes for uapi::ElisaGuestGate {}
// SAFETY: `repr(C)`, integer fields only, no padding (checked as above).
unsafe impl FromBytes for uapi::ElisaGuestCall {}
// SAFETY: as above.
unsafe impl AsBytes for uapi::ElisaGuestCall {}

/// Registers `/dev/elisa-guest`.
pub(crate) fn register() -> Result {
    // SAFETY: called once from module init; the misc device is a static of the shim.
    let ret = unsafe { crate::shim::elisa_guest_shim_misc_register() };
    if ret != 0 {
        pr_err!("cannot register /dev/elisa-guest: error {}\n", ret);
        return Err(Error::from_errno(ret));
    }
    Ok(())
}

/// Unregisters `/dev/elisa-guest`.
pub(crate) fn deregister() {
    // SAFETY: only from module exit, after `register` succeeded in module init.
    unsafe { crate::shim::elisa_guest_shim_misc_deregister() };
}

/// `unlocked_ioctl` of `/dev/elisa-guest`; `writable`: the file was opened for writing.
#[no_mangle]
extern "C" fn elisa_guest_rust_ioctl(cmd: c_uint, arg: c_ulong, writable: bool) -> c_long {
    let r = match driver::get() {
        Some(d) => ioctl(d, cmd, arg as usize, writable),
        None => Err(ENODEV),
    };
    match r {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

fn ioctl(d: &Driver, cmd: u32, arg: usize, writable: bool) -> Result<isize> {
    match cmd {
        uapi::ELISA_GUEST_GET_INFO => get_info(d, arg),
        uapi::ELISA_GUEST_GET_GATE => get_gate(d, arg),
        // A call runs a service, trusted like the host kernel, with the caller's
        // arguments: only a file opened for writing may, as on the host's /dev/elisa (a
        // review: any fd of the device could call). Listing needs read access only.
        uapi::ELISA_GUEST_CALL if !writable => Err(EBADF),
        uapi::ELISA_GUEST_CALL => call(d, arg),
        _ => Err(ENOTTY),
    }
}

/// Logs why a request was refused (rate-limited: a caller looping on a malformed request
/// must not flood the log); `EINVAL`.
fn refuse(why: &str) -> Error {
    if crate::driver::log_ratelimit() {
        pr_info!("{}\n", why);
    }
    EINVAL
}

/// `ELISA_GUEST_GET_INFO`.
fn get_info(d: &Driver, arg: usize) -> Result<isize> {
    let slice = UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::ElisaGuestInfo>());
    let (mut reader, mut writer) = slice.reader_writer();
    let req: uapi::ElisaGuestInfo = reader.read()?;
    check::info(&req).map_err(refuse)?;
    let out = uapi::ElisaGuestInfo {
        api_version: uapi::ELISA_GUEST_API_VERSION,
        nr_gates: d.gates().len() as u32,
        ..Default::default()
    };
    writer.write(&out)?;
    Ok(0)
}

/// `ELISA_GUEST_GET_GATE`.
fn get_gate(d: &Driver, arg: usize) -> Result<isize> {
    let slice = UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::ElisaGuestGate>());
    let (mut reader, mut writer) = slice.reader_writer();
    let req: uapi::ElisaGuestGate = reader.read()?;
    check::gate(&req).map_err(refuse)?;
    let (gate, stats) = d.gate(req.gate).ok_or(EINVAL)?;
    let mut out = uapi::ElisaGuestGate {
        gate: req.gate,
        entry_gva: gate.gate().g(),
        index: gate.gate().index(),
        calls: stats.calls.load(Relaxed),
        not_entered: stats.not_entered.load(Relaxed),
        ..Default::default()
    };
    // At most 31 bytes: the last byte stays NUL.
    for (dst, &src) in out.name.iter_mut().zip(gate.gate_name().as_bytes()) {
        *dst = src;
    }
    writer.write(&out)?;
    Ok(0)
}

/// `ELISA_GUEST_CALL`.
fn call(d: &Driver, arg: usize) -> Result<isize> {
    let slice = UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::ElisaGuestCall>());
    let (mut reader, mut writer) = slice.reader_writer();
    let mut req: uapi::ElisaGuestCall = reader.read()?;
    check::call(&req).map_err(refuse)?;
    let ret = d.call(req.gate, req.args)?;
    req.ret = ret;
    writer.write(&req)?;
    if req.flags & uapi::ELISA_GUEST_CALL_RAW == 0 && (-4095..=-1).contains(&ret) {
        // Errnos above 511 are the kernel's own (ERESTARTSYS and the other restart codes
        // make the kernel run the ioctl, and so the service, again when a signal is
        // pending): a service's value there is EIO. The rest is a valid errno.
        if ret <= -512 {
            return Err(EIO);
        }
        return Err(Error::from_errno(ret as i32));
    }
    Ok(0)
}
