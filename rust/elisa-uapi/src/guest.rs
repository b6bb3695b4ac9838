// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Rust mirror of `include/uapi/linux/elisa_guest.h`, the ABI of `/dev/elisa-guest` (the
//! Linux guest module, `guest/linux`).
//!
//! `tests/guest_abi.rs` compiles the C header and checks every size, alignment, offset and
//! constant here against it. The guest module includes this file alone (`#[path]`), so it
//! refers to nothing outside itself.

/// `ELISA_GUEST_API_VERSION`: version of this interface.
pub const ELISA_GUEST_API_VERSION: u32 = 1;
/// `ELISA_GUEST_IOCTL_TYPE`: the ioctl type byte of every `/dev/elisa-guest` ioctl.
pub const ELISA_GUEST_IOCTL_TYPE: u32 = 0xE7;
/// `ELISA_GUEST_MAX_GATES`: most gates the module knows.
pub const ELISA_GUEST_MAX_GATES: u32 = 8;
/// `ELISA_GUEST_NAME_SIZE`: size of [`ElisaGuestGate::name`], the NUL included.
pub const ELISA_GUEST_NAME_SIZE: usize = 32;
/// `ELISA_GUEST_CALL_RAW`: [`ElisaGuestCall::ret`] is the service's `RAX` whatever it is,
/// and the ioctl returns 0.
pub const ELISA_GUEST_CALL_RAW: u32 = 1 << 0;

/// `struct elisa_guest_info`: argument of [`ELISA_GUEST_GET_INFO`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaGuestInfo {
    /// In: must be 0.
    pub flags: u32,
    /// Out: [`ELISA_GUEST_API_VERSION`] of the running module.
    pub api_version: u32,
    /// Out: gates the module knows; they are numbered 0..nr_gates.
    pub nr_gates: u32,
    /// In: must be 0. Out: 0.
    pub reserved0: u32,
    /// In: must be 0. Out: 0.
    pub reserved: [u64; 4],
}

/// `struct elisa_guest_gate`: argument of [`ELISA_GUEST_GET_GATE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaGuestGate {
    /// In: must be 0.
    pub flags: u32,
    /// In: the gate number.
    pub gate: u32,
    /// Out: G, the guest-virtual address of the entry block.
    pub entry_gva: u64,
    /// Out: the gate index (`ECX` of the call).
    pub index: u32,
    /// In: must be 0. Out: 0.
    pub reserved0: u32,
    /// Out: calls made through this gate since the module was loaded.
    pub calls: u64,
    /// Out: of those, calls that returned `-ENODEV` (no gate entered).
    pub not_entered: u64,
    /// Out: the name, NUL-terminated.
    pub name: [u8; ELISA_GUEST_NAME_SIZE],
    /// In: must be 0. Out: 0.
    pub reserved: [u64; 4],
}

/// `struct elisa_guest_call`: argument of [`ELISA_GUEST_CALL`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaGuestCall {
    /// In: 0 or [`ELISA_GUEST_CALL_RAW`].
    pub flags: u32,
    /// In: the gate number.
    pub gate: u32,
    /// In: the five arguments.
    pub args: [u64; 5],
    /// Out: the service's return value, or the call's negative errno.
    pub ret: i64,
    /// In: must be 0. Out: 0.
    pub reserved: [u64; 2],
}

/// Linux's `_IOWR` for x86 (`include/uapi/asm-generic/ioctl.h`): read and write, the
/// argument's size.
const fn iowr(nr: u32, size: usize) -> u32 {
    (3 << 30) | ((size as u32) << 16) | (ELISA_GUEST_IOCTL_TYPE << 8) | nr
}

/// `ELISA_GUEST_GET_INFO`: `_IOWR(ELISA_GUEST_IOCTL_TYPE, 0x00, struct elisa_guest_info)`.
pub const ELISA_GUEST_GET_INFO: u32 = iowr(0x00, core::mem::size_of::<ElisaGuestInfo>());
/// `ELISA_GUEST_GET_GATE`: `_IOWR(ELISA_GUEST_IOCTL_TYPE, 0x01, struct elisa_guest_gate)`.
pub const ELISA_GUEST_GET_GATE: u32 = iowr(0x01, core::mem::size_of::<ElisaGuestGate>());
/// `ELISA_GUEST_CALL`: `_IOWR(ELISA_GUEST_IOCTL_TYPE, 0x02, struct elisa_guest_call)`.
pub const ELISA_GUEST_CALL: u32 = iowr(0x02, core::mem::size_of::<ElisaGuestCall>());

/// The field checks of each request, as the module runs them: `Err` is the reason it logs
/// with `EINVAL`.
pub mod check {
    use super::{ElisaGuestCall, ElisaGuestGate, ElisaGuestInfo, ELISA_GUEST_CALL_RAW};

    /// `ELISA_GUEST_GET_INFO`: flags and reserved fields 0.
    pub fn info(req: &ElisaGuestInfo) -> Result<(), &'static str> {
        if req.flags != 0 || req.reserved0 != 0 || req.reserved.iter().any(|&r| r != 0) {
            return Err("ELISA_GUEST_GET_INFO: flags and reserved fields must be 0");
        }
        Ok(())
    }

    /// `ELISA_GUEST_GET_GATE`: flags and reserved fields 0 (the outputs may hold anything).
    pub fn gate(req: &ElisaGuestGate) -> Result<(), &'static str> {
        if req.flags != 0 || req.reserved0 != 0 || req.reserved.iter().any(|&r| r != 0) {
            return Err("ELISA_GUEST_GET_GATE: flags and reserved fields must be 0");
        }
        Ok(())
    }

    /// `ELISA_GUEST_CALL`: only known flags, reserved fields 0.
    pub fn call(req: &ElisaGuestCall) -> Result<(), &'static str> {
        if req.flags & !ELISA_GUEST_CALL_RAW != 0 || req.reserved.iter().any(|&r| r != 0) {
            return Err("ELISA_GUEST_CALL: unknown flags, or reserved fields not 0");
        }
        Ok(())
    }
}
