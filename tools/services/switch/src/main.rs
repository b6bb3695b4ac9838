// SPDX-License-Identifier: GPL-2.0
//! The elisa switch service: `elisa_switch::call` on the regions the sub view maps at the
//! GVAs of `linux/elisa_net.h`. Raw code (`link.ld`): position-independent, general
//! registers only (`x86_64-unknown-none` is soft-float), no data of its own, ENDBR64 at
//! the entry for guests that enforce CET IBT. `Documentation/networking.rst` tells how to
//! build and grant it.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use elisa_switch::Region;
use elisa_uapi::net::*;

// The entry (entry_offset 0): RDI = operation, RSI = argument, as the gate passes them;
// the sub entry has set RFLAGS to 0x2, CLD again costs one byte.
core::arch::global_asm!(
    ".section .text.entry, \"ax\"",
    ".globl elisa_switch_entry",
    "elisa_switch_entry:",
    "endbr64",
    "cld",
    "jmp {main}",
    main = sym switch_main,
);

/// A region of the sub view: `size` bytes at GVA `base`. Every access is checked against
/// `size` and skipped when out of it, so no offset can reach past the region whatever the
/// switch computed (the host tests show it never asks).
struct Mapped {
    base: usize,
    size: usize,
}

impl Mapped {
    fn at(&self, off: usize, len: usize) -> Option<usize> {
        elisa_switch::in_region(self.size, off, len).then(|| self.base + off)
    }
}

/// Copies `len` bytes: `REP MOVSQ` for the 8-byte words, `REP MOVSB` for the rest
/// (general registers only, DF = 0 from the entry).
///
/// # Safety
/// `src..src + len` must be readable and `dst..dst + len` writable.
unsafe fn movsb(dst: usize, src: usize, len: usize) {
    // SAFETY: the caller gives two ranges of mapped regions; the two string copies touch
    // exactly them, forwards (DF = 0): len / 8 words, then len % 8 bytes from where the
    // words ended (RDI and RSI advance). Only RDI, RSI and RCX change, declared here.
    unsafe {
        core::arch::asm!(
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            tail = in(reg) len % 8,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            inout("rcx") len / 8 => _,
            options(nostack, preserves_flags)
        );
    }
}

impl Region for Mapped {
    fn load_u32(&self, off: usize) -> u32 {
        match self.at(off, 4) {
            // SAFETY: inside the region, which the sub view maps; a guest may write it at
            // any time, so one volatile load.
            Some(a) => unsafe { (a as *const u32).read_volatile() },
            None => 0,
        }
    }
    fn store_u32(&self, off: usize, val: u32) {
        if let Some(a) = self.at(off, 4) {
            // SAFETY: inside the region, mapped writable.
            unsafe { (a as *mut u32).write_volatile(val) }
        }
    }
    fn load_u64(&self, off: usize) -> u64 {
        match self.at(off, 8) {
            // SAFETY: as load_u32.
            Some(a) => unsafe { (a as *const u64).read_volatile() },
            None => 0,
        }
    }
    fn store_u64(&self, off: usize, val: u64) {
        if let Some(a) = self.at(off, 8) {
            // SAFETY: as store_u32.
            unsafe { (a as *mut u64).write_volatile(val) }
        }
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        match self.at(off, buf.len()) {
            // SAFETY: the source is inside the region; the destination is `buf`.
            Some(a) => unsafe { movsb(buf.as_mut_ptr() as usize, a, buf.len()) },
            None => buf.fill(0),
        }
    }
    fn write(&self, off: usize, buf: &[u8]) {
        if let Some(a) = self.at(off, buf.len()) {
            // SAFETY: the destination is inside the region, the source is `buf`.
            unsafe { movsb(a, buf.as_ptr() as usize, buf.len()) }
        }
    }
    fn copy_from(&self, off: usize, src: &Self, src_off: usize, len: usize) {
        if let (Some(d), Some(s)) = (self.at(off, len), src.at(src_off, len)) {
            // SAFETY: both ranges are inside their regions.
            unsafe { movsb(d, s, len) }
        }
    }
    fn try_lock(&self, off: usize) -> bool {
        match self.at(off, 4).filter(|a| a % 4 == 0) {
            // SAFETY: an aligned u32 inside the config region, which only the switch uses.
            Some(a) => unsafe { AtomicU32::from_ptr(a as *mut u32) }
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok(),
            None => false,
        }
    }
    fn add_u32(&self, off: usize, val: u32) -> u32 {
        match self.at(off, 4).filter(|a| a % 4 == 0) {
            // SAFETY: as try_lock.
            Some(a) => unsafe { AtomicU32::from_ptr(a as *mut u32) }
                .fetch_add(val, Ordering::Relaxed)
                .wrapping_add(val),
            None => 0,
        }
    }
    fn unlock(&self, off: usize) {
        if let Some(a) = self.at(off, 4).filter(|a| a % 4 == 0) {
            // SAFETY: as try_lock.
            unsafe { AtomicU32::from_ptr(a as *mut u32) }.store(0, Ordering::Release);
        }
    }
}

extern "C" fn switch_main(op: u64, arg: u64) -> i64 {
    let cfg = Mapped {
        base: ELISA_NET_CONFIG_GVA as usize,
        size: ELISA_NET_CONFIG_SIZE,
    };
    let ports: [Mapped; ELISA_NET_MAX_PORTS] = core::array::from_fn(|p| Mapped {
        base: elisa_net_port_gva(p) as usize,
        size: ELISA_NET_PORT_SIZE,
    });
    elisa_switch::call(&cfg, &ports, op, arg)
}

/// No panic path is linked (build.sh checks); should one be, it stops here. KVM intercepts
/// the #UD, an exit the instruction caused inside the sub view: elisa ends the calling VM's
/// run with `KVM_EXIT_SHUTDOWN` (a broken excursion), as for any fault of a service.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        // SAFETY: UD2 raises #UD and touches nothing.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
}
