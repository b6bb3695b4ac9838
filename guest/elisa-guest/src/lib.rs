// SPDX-License-Identifier: GPL-2.0
//! `elisa-guest`: the guest side of an ELISA call, for Rust guests (kernel or user space).
//!
//! The same interface as `guest/elisa_call.h`, as a `no_std` crate without allocation: it
//! needs nothing but `core`, so it builds into a guest kernel (a Linux guest driver in Rust,
//! any `no_std` kernel) as well as into guest user space.
//!
//! - [`EntryBlock`], [`write_entry_block`]: the three pages the guest maps at G, G + 0x1000
//!   and G + 0x2000, read + execute. The bytes come from `elisa_core::gate` at run time
//!   (the same builder the module and `tools/elisa-guest-blob` use), never from a copy.
//! - [`Gate`]: G and the gate index the VMM granted (`ELISA_GRANT`); [`Gate::call`] and
//!   [`Gate::call_raw`] run one call with exactly the register protocol of
//!   `Documentation/gate-protocol.rst`, section 2.
//! - [`CallError`]: the errors of the protocol, typed ([`ERR_IRQ_ENABLED`],
//!   [`ERR_NOT_ENTERED`], [`ERR_INTERRUPTED`], and the service's own negative errnos).
//! - [`with_irqs_disabled`]: runs a closure with `RFLAGS.IF` = 0, for guest kernels. The
//!   gate refuses callers with IF = 1. Guest user space cannot clear IF (`CLI` needs CPL 0;
//!   no hypercall does it for the guest, by design): it calls through a guest kernel driver
//!   that disables interrupts around the call.
//! - [`param`]: the gates as the VMM tells them (`elisa_guest.gate=<G>:<index>[:<name>]`,
//!   QEMU's fw_cfg file `opt/elisa/gates`), parsed into a [`param::GateList`].
//! - [`map`]: a private page table that maps the entry blocks next to a copy of the
//!   kernel's half, for guest kernels with per-process page tables (the Linux guest
//!   module `guest/linux`).
//!
//! The VMM chooses G when it grants the service and tells the guest G and the gate index
//! (511, [`FIRST_GATE_INDEX`], for the VM's first service) by its own channel, for example
//! the kernel command line or a config page.
//!
//! # Examples
//!
//! A guest kernel fills a page-aligned static once and maps its three frames at G:
//!
//! ```
//! use elisa_guest::{EntryBlock, ENTRY_OFFSET};
//!
//! static mut BLOCK: EntryBlock = EntryBlock::zeroed();
//! // SAFETY: nothing else refers to BLOCK while it is written (a kernel does this once,
//! // at init, before mapping it).
//! let block = unsafe { &mut *core::ptr::addr_of_mut!(BLOCK) };
//! block.write()?;
//! // The entry stub: ENDBR64; XOR EAX,EAX; VMFUNC, the last bytes of the first page.
//! let stub = &block.as_bytes()[ENTRY_OFFSET as usize..][..9];
//! assert_eq!(stub, &[0xf3, 0x0f, 0x1e, 0xfa, 0x31, 0xc0, 0x0f, 0x01, 0xd4]);
//! // ... map the frames of block.as_bytes() at G, G + 0x1000, G + 0x2000, read + execute.
//! # Ok::<(), elisa_guest::BlockError>(())
//! ```
//!
//! Then it calls, with interrupts off:
//!
//! ```no_run
//! use elisa_guest::{with_irqs_disabled, CallError, Gate, FIRST_GATE_INDEX};
//!
//! # let g = 0x5000_0000_0000;
//! let gate = Gate::new(g, FIRST_GATE_INDEX);
//! // SAFETY: the entry block is mapped at G (above), the service granted at index 511 takes
//! // two arguments, and this code runs at CPL 0.
//! let r = unsafe { with_irqs_disabled(|| gate.call(5, 0, 0, 0, 0)) };
//! match r {
//!     Ok(v) => { /* the service's return value */ }
//!     // interrupts are off, so this is the service's own -EPERM (see CallError)
//!     Err(CallError::IrqEnabled) => { /* ... */ }
//!     Err(CallError::NotEntered) => { /* index 0: no gate (another ungranted index is #UD) */ }
//!     // the service may or may not have run: again only if calling it twice is harmless
//!     Err(CallError::Interrupted) => { /* ... */ }
//!     Err(CallError::Service(errno)) => { /* the service failed with -errno */ }
//! }
//! ```
#![cfg_attr(not(any(test, MODULE)), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
#![warn(missing_docs)]

#[cfg(target_arch = "x86_64")]
use core::arch::asm;
// The Linux guest module (guest/linux) compiles this file as a module of its crate, next to
// elisa-core's (`#[path]` includes, `--cfg MODULE`): there `elisa_core` is that sibling.
// Elsewhere it is the crate; either way `elisa_core` is an item here, for the submodules.
#[cfg(MODULE)]
use super::elisa_core;
#[cfg(not(MODULE))]
extern crate elisa_core;
use elisa_core::gate;

pub mod map;
pub mod param;

/// Why writing the entry block failed (never, in practice: the code fits its pages).
pub use elisa_core::Error as BlockError;

/// Offset of the entry stub from G: the call goes to G + `ENTRY_OFFSET`.
pub const ENTRY_OFFSET: u64 = gate::GUEST_ENTRY_OFFSET as u64;
/// Offset of the entry `VMFUNC` from G: the last instruction of page G. When the VM has
/// no gate at the index (never granted, or the host detached the VM), this instruction
/// raises `#UD` in the guest; a guest kernel that resumes at [`FALLBACK_OFFSET`] instead
/// gets [`ERR_NOT_ENTERED`], as if the `VMFUNC` had stayed in the default view.
pub const ENTRY_VMFUNC_OFFSET: u64 = (gate::PAGE_BYTES - gate::VMFUNC.len()) as u64;
/// Offset of the fallback stub from G: the first byte of page G + 0x1000 (`ERR_NOT_ENTERED`
/// through the exit stub).
pub const FALLBACK_OFFSET: u64 = (gate::PAGE_BYTES + gate::GUEST_FALLBACK_OFFSET) as u64;
/// The instruction that calls the entry stub, whose address is in `R11`: an indirect call
/// (to the `ENDBR64` that starts the stub, so CET indirect-branch tracking allows it).
/// Built into a Linux module for a kernel with retpolines, it goes through the kernel's
/// thunk instead, as the compiler's own indirect calls do: the kernel patches it at load
/// to what its Spectre v2 mitigation wants (objtool refuses a bare indirect call there).
#[cfg(not(all(MODULE, CONFIG_MITIGATION_RETPOLINE)))]
macro_rules! call_r11 {
    () => {
        "call r11"
    };
}
#[cfg(all(MODULE, CONFIG_MITIGATION_RETPOLINE))]
macro_rules! call_r11 {
    () => {
        "call __x86_indirect_thunk_r11"
    };
}

/// Gate index of the VM's first service.
pub const FIRST_GATE_INDEX: u32 = gate::FIRST_GATE_INDEX;
/// The gate is closed: the caller had `RFLAGS.IF` = 1 (`-EPERM`). Nothing ran.
pub const ERR_IRQ_ENABLED: i64 = gate::ERR_IRQ_ENABLED;
/// No gate at this index: the entry `VMFUNC` stayed in the default view (`-ENODEV`).
pub const ERR_NOT_ENTERED: i64 = gate::ERR_NOT_ENTERED;
/// The call was failed back because an event was due during it (`-EINTR`).
pub const ERR_INTERRUPTED: i64 = gate::ERR_INTERRUPTED;
/// Return values in `-MAX_ERRNO..=-1` are errors, as in the kernel's `IS_ERR_VALUE()`.
pub const MAX_ERRNO: i64 = 4095;
const MIN_ERR: i64 = -MAX_ERRNO;

/// Bytes in one page of the entry block.
pub const PAGE_SIZE: usize = gate::PAGE_BYTES;
/// Pages in the entry block.
pub const BLOCK_PAGES: usize = 3;
/// Bytes in the entry block.
pub const BLOCK_BYTES: usize = PAGE_SIZE * BLOCK_PAGES;

/// `RFLAGS.IF`, the interrupt flag.
pub const RFLAGS_IF: u64 = 1 << 9;

/// Writes the guest's entry block (`elisa_core::gate::write_guest_block`) into `pages`:
/// the bytes to map at G, G + 0x1000 and G + 0x2000, read + execute. They are the same for
/// every VM, vCPU and service.
///
/// # Errors
///
/// None in practice; an error would mean the code does not fit its pages.
pub fn write_entry_block(pages: &mut [[u8; PAGE_SIZE]; BLOCK_PAGES]) -> Result<(), BlockError> {
    gate::write_guest_block(pages)
}

/// The guest's entry block, page-aligned, so that its frames can be mapped at G directly.
///
/// [`EntryBlock::zeroed`] is `const`: a guest kernel declares a `static` (12 KiB of `.bss`,
/// no stack) and fills it once with [`EntryBlock::write`].
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct EntryBlock([[u8; PAGE_SIZE]; BLOCK_PAGES]);

impl EntryBlock {
    /// An all-zero block, to be filled with [`EntryBlock::write`].
    pub const fn zeroed() -> Self {
        Self([[0; PAGE_SIZE]; BLOCK_PAGES])
    }

    /// Fills the block with the entry-block code ([`write_entry_block`]).
    ///
    /// # Errors
    ///
    /// None in practice; see [`write_entry_block`].
    pub fn write(&mut self) -> Result<(), BlockError> {
        write_entry_block(&mut self.0)
    }

    /// The three pages.
    pub const fn pages(&self) -> &[[u8; PAGE_SIZE]; BLOCK_PAGES] {
        &self.0
    }

    /// The block as one slice of [`BLOCK_BYTES`] bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_flattened()
    }
}

/// Why a call did not return a value. Every variant is a negative errno in `RAX`
/// ([`CallError::to_raw`]); [`CallError::from_raw`] maps them back.
///
/// The caller cannot tell a service's own `-EPERM`, `-EINTR` or `-ENODEV` from the
/// protocol's errors with the same numbers (gate-protocol section 2): services should not
/// return them, or the caller uses [`Gate::call_raw`] and knows its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The gate refused: `RFLAGS.IF` was 1 ([`ERR_IRQ_ENABLED`]). The service did not run.
    IrqEnabled,
    /// No gate at this index ([`ERR_NOT_ENTERED`]): index 0, for one.
    NotEntered,
    /// The module failed the call back because an event was due ([`ERR_INTERRUPTED`]); the
    /// service may or may not have run.
    Interrupted,
    /// The service returned this negative errno (`-MAX_ERRNO..=-1`, none of the above).
    Service(i64),
}

impl CallError {
    /// The error a raw return value stands for, or `None` for a value (anything outside
    /// `-MAX_ERRNO..=-1`).
    pub const fn from_raw(ret: i64) -> Option<Self> {
        match ret {
            ERR_IRQ_ENABLED => Some(Self::IrqEnabled),
            ERR_NOT_ENTERED => Some(Self::NotEntered),
            ERR_INTERRUPTED => Some(Self::Interrupted),
            MIN_ERR..=-1 => Some(Self::Service(ret)),
            _ => None,
        }
    }

    /// The raw return value of this error (a negative errno).
    pub const fn to_raw(self) -> i64 {
        match self {
            Self::IrqEnabled => ERR_IRQ_ENABLED,
            Self::NotEntered => ERR_NOT_ENTERED,
            Self::Interrupted => ERR_INTERRUPTED,
            Self::Service(e) => e,
        }
    }

    /// A raw return value as a result: `Ok` for a value, `Err` for an error.
    pub const fn result(ret: i64) -> Result<u64, Self> {
        match Self::from_raw(ret) {
            Some(e) => Err(e),
            None => Ok(ret as u64),
        }
    }
}

/// One service of this VM: the address G of its entry block and its gate index, as the VMM
/// granted them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    g: u64,
    index: u32,
}

impl Gate {
    /// The service whose entry block is mapped at `g` and whose gate index is `index`
    /// ([`FIRST_GATE_INDEX`] for the VM's first service).
    pub const fn new(g: u64, index: u32) -> Self {
        Self { g, index }
    }

    /// The gate named by one entry of the guest kernel parameter
    /// `elisa_guest.gate=<G>:<index>[:<name>]` (Documentation/api.rst, "How the guest learns
    /// its gates"): G in hex with `0x`, 4 KiB aligned, the index in decimal, 1..=511, and an
    /// optional name (1..=31 of `[A-Za-z0-9._-]`), which is checked and dropped. `None` for
    /// anything else. [`param::parse_entry`] also returns the name and checks G the way
    /// the host does; [`param::GateList`] parses whole lists.
    ///
    /// ```
    /// use elisa_guest::Gate;
    ///
    /// let g = Gate::from_param("0x500000000000:511").unwrap();
    /// assert_eq!((g.g(), g.index()), (0x5000_0000_0000, 511));
    /// assert_eq!(Gate::from_param("0x500000000000:511:counter"), Some(g));
    /// assert!(Gate::from_param("0x500000000001:511").is_none());
    /// ```
    pub fn from_param(value: &str) -> Option<Self> {
        param::parse_legacy(value)
    }

    /// G, the address of the entry block.
    pub const fn g(&self) -> u64 {
        self.g
    }

    /// The gate index (`ECX` of the call).
    pub const fn index(&self) -> u32 {
        self.index
    }

    /// The address the call goes to: G + [`ENTRY_OFFSET`].
    pub const fn entry(&self) -> u64 {
        self.g.wrapping_add(ENTRY_OFFSET)
    }

    /// The address of the entry `VMFUNC`: G + [`ENTRY_VMFUNC_OFFSET`].
    pub const fn entry_vmfunc(&self) -> u64 {
        self.g.wrapping_add(ENTRY_VMFUNC_OFFSET)
    }

    /// The address of the fallback stub: G + [`FALLBACK_OFFSET`].
    pub const fn fallback(&self) -> u64 {
        self.g.wrapping_add(FALLBACK_OFFSET)
    }

    /// Calls the service with five arguments and returns its `RAX` as it is: a value or a
    /// negative errno ([`CallError::from_raw`]).
    ///
    /// The register protocol of gate-protocol section 2: `ECX` = the index, `RDI`, `RSI`,
    /// `RDX`, `R8`, `R9` = `a0`..`a4`, a call to G + [`ENTRY_OFFSET`] with `RSP` moved 128
    /// bytes down first, so that the return address the call pushes lands below the red
    /// zone of the calling function. `RCX`, `RSI`, `RDI`, `R8`-`R11` and `RDX` are
    /// clobbered, `RBX`, `RBP`, `R12`-`R15` preserved (saved here: a call the module fails
    /// back returns with them zeroed), and the direction flag comes back clear, as Rust
    /// requires (a returned call leaves the flags 0x2, `AC` cleared too; a refusal and a
    /// failed-back call leave others, gate-protocol section 2).
    ///
    /// With `RFLAGS.IF` = 1 the gate refuses: [`ERR_IRQ_ENABLED`]. Use
    /// [`with_irqs_disabled`] in a guest kernel.
    ///
    /// # Safety
    ///
    /// The entry block ([`write_entry_block`]) must be mapped at G, G + 0x1000 and
    /// G + 0x2000, executable and unchanged, in the current address space, for the whole
    /// call: the call executes whatever is at G + [`ENTRY_OFFSET`]. That is the one
    /// condition of memory safety here. The rest is not undefined behaviour but a fault the
    /// guest must be ready for: an index the VMM did not grant on this VM (or whose gate is
    /// closed: a detach, LA57, emulated UMIP; `api.rst`) makes the entry `VMFUNC` exit, and
    /// KVM injects `#UD`; index 0 returns [`CallError::NotEntered`]. The service is the
    /// VMM's trusted code: it sees the five arguments and nothing else of the guest.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn call_raw(&self, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
        let ret: i64;
        // SAFETY: the caller guarantees that G + ENTRY_OFFSET is the entry stub. The stub,
        // the gate, the service and the exit stub follow the protocol above: they return to
        // the pushed return address with RSP restored, write only the caller's RAX, RCX,
        // RDX, RSI, RDI and R8-R11 (all declared here; a failed-back call also zeroes RBX,
        // RBP and R12-R15, which are saved on the stack or declared) and the flags, clear
        // DF, and touch no guest memory but the return-address slot and the two saved
        // registers below the 128 bytes stepped over. The entry address goes in R11, which
        // the call clobbers anyway. Without `nostack`, RSP is 16-byte aligned here; moving
        // it by 128 + 16 keeps the alignment a SysV call expects.
        unsafe {
            // RBX and RBP cannot be operands (LLVM reserves them): saved on the stack. A
            // failed-back call returns with them and R12-R15 zeroed (gate-protocol §2).
            asm!(
                "sub rsp, 128",
                "push rbx",
                "push rbp",
                call_r11!(),
                "pop rbp",
                "pop rbx",
                "add rsp, 128",
                inout("r11") self.entry() => _,
                inout("ecx") self.index => _,
                inout("rdi") a0 => _,
                inout("rsi") a1 => _,
                inout("rdx") a2 => _,
                inout("r8") a3 => _,
                inout("r9") a4 => _,
                out("rax") ret,
                out("r10") _,
                out("r12") _,
                out("r13") _,
                out("r14") _,
                out("r15") _,
            );
        }
        ret
    }

    /// Calls the service with five arguments: `Ok` with its return value, or the error
    /// ([`CallError::result`] of [`Gate::call_raw`]).
    ///
    /// # Errors
    ///
    /// [`CallError::IrqEnabled`] when called with `RFLAGS.IF` = 1, the others as described
    /// at [`CallError`].
    ///
    /// # Safety
    ///
    /// As for [`Gate::call_raw`].
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn call(
        &self,
        a0: u64,
        a1: u64,
        a2: u64,
        a3: u64,
        a4: u64,
    ) -> Result<u64, CallError> {
        // SAFETY: the caller upholds call_raw's contract, which is this function's.
        CallError::result(unsafe { self.call_raw(a0, a1, a2, a3, a4) })
    }
}

/// Whether `RFLAGS.IF` is set. Always true in guest user space.
#[cfg(target_arch = "x86_64")]
pub fn irqs_enabled() -> bool {
    let flags: u64;
    // SAFETY: PUSHFQ; POP reads RFLAGS through 8 bytes of stack that it releases again; it
    // changes no flag and no memory the program can see.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) };
    flags & RFLAGS_IF != 0
}

/// Runs `f` with interrupts disabled (`RFLAGS.IF` = 0, as an ELISA call needs) and then
/// enables them again if they were enabled before: `PUSHFQ`, `CLI`, `f()`, and `STI` when
/// the saved flags had IF set. Only IF is restored, as Linux's `local_irq_restore()` does;
/// the other flags stay as `f` left them. Interrupts are restored also when `f` unwinds.
///
/// Both ends are compiler barriers: no memory access of `f` moves out of the section.
///
/// # Safety
///
/// The caller runs at CPL 0 (a guest kernel): `CLI` raises `#GP` otherwise. `f` must not
/// depend on interrupts being delivered (no sleeping, no waiting for an interrupt). In a
/// kernel that tracks the interrupt state in software (Linux: irq-flags tracing, lockdep)
/// use the kernel's own primitive instead (`local_irq_save()`), or the tracker and the CPU
/// disagree during `f`.
#[cfg(target_arch = "x86_64")]
pub unsafe fn with_irqs_disabled<R>(f: impl FnOnce() -> R) -> R {
    /// Enables interrupts on drop when they were enabled before the `CLI`.
    ///
    /// # Invariants
    ///
    /// Created only after a successful `CLI`, so the code runs at CPL 0.
    struct Restore(bool);

    impl Drop for Restore {
        fn drop(&mut self) {
            if self.0 {
                // SAFETY: by the type invariant the CPU is at CPL 0, where STI is allowed;
                // interrupts were enabled before with_irqs_disabled() disabled them.
                unsafe { asm!("sti", options(nostack)) };
            }
        }
    }

    let flags: u64;
    // SAFETY: PUSHFQ; POP uses 8 bytes of stack it releases; CLI is allowed at CPL 0, which
    // the caller guarantees. No `nomem`: the section is a compiler barrier.
    unsafe { asm!("pushfq", "pop {}", "cli", out(reg) flags) };
    // INVARIANT: the CLI above did not fault, so this code runs at CPL 0.
    let _restore = Restore(flags & RFLAGS_IF != 0);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip() {
        for raw in [-MAX_ERRNO, -22, -19, -4, -1] {
            let e = CallError::from_raw(raw);
            assert_eq!(e.map(CallError::to_raw), Some(raw));
            assert_eq!(
                CallError::result(raw),
                Err(e.unwrap_or(CallError::Service(0)))
            );
        }
        assert_eq!(CallError::from_raw(-1), Some(CallError::IrqEnabled));
        assert_eq!(CallError::from_raw(-19), Some(CallError::NotEntered));
        assert_eq!(CallError::from_raw(-4), Some(CallError::Interrupted));
        assert_eq!(CallError::from_raw(-22), Some(CallError::Service(-22)));
    }

    #[test]
    fn values_are_ok() {
        for raw in [0, 1, 1005, i64::MAX, -MAX_ERRNO - 1, i64::MIN] {
            assert_eq!(CallError::from_raw(raw), None);
            assert_eq!(CallError::result(raw), Ok(raw as u64));
        }
    }

    #[test]
    fn gate_from_param() {
        let g = Gate::from_param("0x510000000000:509").map(|g| (g.g(), g.index()));
        assert_eq!(g, Some((0x5100_0000_0000, 509)));
        for bad in [
            "",
            "0x500000000000",
            "500000000000:511",
            "0x500000000000:512",
            "0x500000000000:0",
            "0x500000000800:511",
            "0x500000000000:-1",
            "0xzz:511",
            "0x+500000000000:511",
            "0x500000000000:+511",
            "0x500000000000:511:",
            "0x500000000000:511:a b",
            "0x500000000000:511:1:2",
        ] {
            assert!(Gate::from_param(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn gate_entry() {
        let g = Gate::new(0x5000_0000_0000, FIRST_GATE_INDEX);
        assert_eq!(g.entry(), 0x5000_0000_0ff7);
        assert_eq!(g.entry_vmfunc(), 0x5000_0000_0ffd);
        assert_eq!(g.fallback(), 0x5000_0000_1000);
        assert_eq!((g.g(), g.index()), (0x5000_0000_0000, 511));
    }
}
