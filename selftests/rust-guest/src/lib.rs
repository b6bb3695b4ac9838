// SPDX-License-Identifier: GPL-2.0
//! `elisa-selftest-guest`: [`elisa_guest`] behind `extern "C"` functions, for the KVM
//! selftest `elisa_rust_guest_test`, whose guest code runs in 64-bit mode at CPL 0 inside
//! the test binary and calls these functions. `elisa_rs_guest.h` declares them for C.
//!
//! Nothing here can panic (no indexing, no arithmetic, no unwrapping); the panic handler
//! executes `UD2`, which fails the test loudly if that ever changes.
#![no_std]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

use core::arch::asm;
use elisa_guest::{CallError, Gate, BLOCK_PAGES, PAGE_SIZE};

/// The result of a typed call, for C: `error` is 0 and `value` the service's return value,
/// or `error` says which [`CallError`] and `value` is its raw errno.
#[repr(C)]
pub struct ElisaRsResult {
    /// The return value, or the raw errno of the error.
    pub value: i64,
    /// 0: none, 1: [`CallError::IrqEnabled`], 2: [`CallError::NotEntered`],
    /// 3: [`CallError::Interrupted`], 4: [`CallError::Service`].
    pub error: i64,
}

impl From<Result<u64, CallError>> for ElisaRsResult {
    fn from(r: Result<u64, CallError>) -> Self {
        match r {
            Ok(v) => Self {
                value: v as i64,
                error: 0,
            },
            Err(e) => Self {
                value: e.to_raw(),
                error: match e {
                    CallError::IrqEnabled => 1,
                    CallError::NotEntered => 2,
                    CallError::Interrupted => 3,
                    CallError::Service(_) => 4,
                },
            },
        }
    }
}

/// [`Gate::call`] of gate `index` at `g`.
///
/// # Safety
///
/// As for [`Gate::call_raw`]: the entry block is mapped at `g` and `index` is 0 or granted.
#[no_mangle]
pub unsafe extern "C" fn elisa_rs_call(
    g: u64,
    index: u32,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
) -> ElisaRsResult {
    // SAFETY: the caller upholds Gate::call's contract, which is this function's.
    unsafe { Gate::new(g, index).call(a0, a1, a2, a3, a4) }.into()
}

/// [`Gate::call_raw`] of gate `index` at `g`.
///
/// # Safety
///
/// As for [`Gate::call_raw`].
#[no_mangle]
pub unsafe extern "C" fn elisa_rs_call_raw(
    g: u64,
    index: u32,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
) -> i64 {
    // SAFETY: the caller upholds Gate::call_raw's contract, which is this function's.
    unsafe { Gate::new(g, index).call_raw(a0, a1, a2, a3, a4) }
}

/// [`Gate::call`] inside [`elisa_guest::with_irqs_disabled`].
///
/// # Safety
///
/// As for [`Gate::call_raw`] and [`elisa_guest::with_irqs_disabled`] (CPL 0).
#[no_mangle]
pub unsafe extern "C" fn elisa_rs_call_irqs_disabled(
    g: u64,
    index: u32,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
) -> ElisaRsResult {
    let gate = Gate::new(g, index);
    // SAFETY: the caller runs at CPL 0 and upholds Gate::call's contract.
    unsafe { elisa_guest::with_irqs_disabled(|| gate.call(a0, a1, a2, a3, a4)) }.into()
}

/// [`elisa_guest::irqs_enabled`].
#[no_mangle]
pub extern "C" fn elisa_rs_irqs_enabled() -> bool {
    elisa_guest::irqs_enabled()
}

/// [`elisa_guest::write_entry_block`] into the 12 KiB at `block`; 0 on success, -1 if the
/// builder failed.
///
/// # Safety
///
/// `block` is valid for writes of [`elisa_guest::BLOCK_BYTES`] bytes, and nothing else
/// accesses them during the call.
#[no_mangle]
pub unsafe extern "C" fn elisa_rs_write_entry_block(block: *mut u8) -> i32 {
    // SAFETY: the caller guarantees BLOCK_BYTES writable bytes at `block`, not aliased;
    // the array type has alignment 1.
    let pages = unsafe { &mut *block.cast::<[[u8; PAGE_SIZE]; BLOCK_PAGES]>() };
    match elisa_guest::write_entry_block(pages) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        // SAFETY: UD2 raises #UD and changes nothing else: the guest's exception handler
        // fails the test, and on the host the process gets SIGILL.
        unsafe { asm!("ud2", options(nomem, nostack)) };
    }
}
