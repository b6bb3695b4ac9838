// SPDX-License-Identifier: GPL-2.0
//! The machine code of an excursion: the guest's entry block, the gate page and the sub page.
//!
//! One entry block per (VM, service) at a guest-virtual address G. Its code pages exist once
//! per vCPU (the sub page carries per-vCPU immediates); the guest-side pages are the same
//! bytes for every vCPU and every service. `Documentation/gate-protocol.rst` is the full
//! description; this header is the summary the code is checked against.
//!
//! # Pages (offsets from G)
//!
//! | GVA | default view (guest's) | gate view | sub view |
//! |---|---|---|---|
//! | G - 0x2000 | guest's own | gate stack, RW, NX ([`write_gate_stack`]: zero) | - |
//! | G - 0x1000 | guest's own | gate data, **R only**, NX ([`write_gate_data`]) | - |
//! | G | entry stub at the end ([`write_guest_entry_page`]) | EPTP list, RW, NX | EPTP list, RW, NX |
//! | G + 0x1000 | fallback ([`write_guest_middle_page`]) | gate code, X only ([`write_gate_code`]) | sub code, X only ([`write_sub_code`]) |
//! | G + 0x2000 | exit stub ([`write_guest_exit_page`]) | - | - |
//!
//! Everything the gate code addresses lies *below* it, so every RIP-relative displacement in
//! the gate page is a small negative number whose two high bytes are `FF FF`, an undefined
//! opcode. A small positive displacement would contain `00 00` (`add [rax], al`), a store
//! through a register the guest chooses. The sub EPTP is read from the gate data page, not
//! carried as an immediate, so the gate page is the same 4096 bytes for every vCPU and the
//! every-offset check in `tests/gate_offsets.rs` covers exactly the bytes that run.
//!
//! # Register protocol
//!
//! | | registers |
//! |---|---|
//! | in (caller) | `ECX` = gate index of the service (511 for the first one); `RDI`, `RSI`, `RDX`, `R8`, `R9` = arguments; `RFLAGS.IF` = 0 |
//! | service sees | `RDI`, `RSI`, `RDX`, `R8`, `R9`, `R10` as passed; `RAX` = 0; `RCX` = 1; `R11` = its entry; `RFLAGS` = 0x2; a trusted stack, aligned as after a SysV call |
//! | out | `RAX` = `RDX` = return value or error; `RBX`, `RBP`, `R12`-`R15`, `RSP` preserved; `RCX`, `RSI`, `RDI`, `R8`-`R11` = 0; `RFLAGS` = 0x2 |
//! | out, refused | `RAX` = `RDX` = [`ERR_IRQ_ENABLED`]; `RCX` = 0; `R11` = `RSP`; others preserved |
//!
//! Services follow the SysV ABI and use no x87/SSE/AVX state: the trampolines neither save nor
//! scrub vector registers. What the module must do around this code (clear `list[1]` on
//! exits from the gate and sub views, end the VM on an instruction-caused exit in the gate
//! view, inject no event while a view other than the default one is active) is in section 7
//! of `Documentation/gate-protocol.rst`.
//!
//! The entry stub is a SysV function `long elisa_gate_entry(long a0, long a1, long a2,
//! unsigned int gate_index, long a3, long a4)` at G + [`GUEST_ENTRY_OFFSET`].
//!
//! # Examples
//!
//! ```
//! use elisa_core::addr::{Gpa, Gva, Hpa};
//! use elisa_core::eptp::Eptp;
//! use elisa_core::gate::{self, GateParams, PAGE_BYTES};
//! use elisa_core::paging::{CallerPrivilege, PagingMode};
//!
//! let params = GateParams {
//!     paging: PagingMode::FourLevel,
//!     entry: Gva(0x7f00_0000_0000),
//!     sub_eptp: Eptp::for_root(Hpa(0x1234_5000), true),
//!     sub_stack_top: Gva(0x2000_0001_0000),
//!     service_entry: Gva(0x2000_0040_0000),
//!     window: (Gpa(0x1_0000_0000), 0x10_0000),
//! };
//! let mut gate_code = [0u8; PAGE_BYTES];
//! let mut gate_data = [0u8; PAGE_BYTES];
//! let mut sub_code = [0u8; PAGE_BYTES];
//! gate::write_gate_code(&mut gate_code, CallerPrivilege::Supervisor)?;
//! gate::write_gate_data(&mut gate_data, &params)?;
//! gate::write_sub_code(&mut sub_code, &params, CallerPrivilege::Supervisor)?;
//! // The sub entry sits right after the gate's VMFUNC, and both pages end with VMFUNC.
//! assert_eq!(&gate_code[gate::SUB_ENTRY_OFFSET - 3..gate::SUB_ENTRY_OFFSET], &gate::VMFUNC);
//! assert_eq!(&sub_code[PAGE_BYTES - 3..], &gate::VMFUNC);
//!
//! // A gate block below 4 GiB could be run as 32-bit code: refused.
//! let low = GateParams { entry: Gva(0x4000_0000), ..params };
//! assert!(gate::write_sub_code(&mut sub_code, &low, CallerPrivilege::Supervisor).is_err());
//! # Ok::<(), elisa_core::Error>(())
//! ```

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod asm;

use super::addr::{Gpa, Gva, Hpa, PAGE_SIZE};
use super::ept::EPT_GPA_LIMIT;
use super::eptp::Eptp;
use super::error::Error;
use super::frame::{Frames, ENTRIES_PER_TABLE};
use super::paging::{CallerPrivilege, PagingMode};
use asm::Asm;

/// Bytes in one code or data page.
pub const PAGE_BYTES: usize = 4096;

/// `VMFUNC` (`0F 01 D4`). With `EAX` = 0 it loads EPTP-list entry `ECX`.
pub const VMFUNC: [u8; 3] = [0x0f, 0x01, 0xd4];

/// Filler of every byte that is not code: `INT3`.
pub const FILL: u8 = 0xcc;

// ---- Where the pages are, relative to G -------------------------------------------------

/// GVA offset from G of the gate stack page (gate view only, RW, NX).
pub const GATE_STACK_PAGE_OFFSET: i64 = -0x2000;
/// GVA offset from G of the gate data page (gate view only, read-only, NX).
pub const GATE_DATA_PAGE_OFFSET: i64 = -0x1000;
/// GVA offset from G of the EPTP-list page in the gate and sub views (RW, NX).
pub const LIST_PAGE_OFFSET: i64 = 0;
/// GVA offset from G of the code page: gate code, sub code, or the guest's fallback page.
pub const CODE_PAGE_OFFSET: i64 = 0x1000;
/// GVA offset from G of the guest's exit page (default view only).
pub const EXIT_PAGE_OFFSET: i64 = 0x2000;
/// First byte, relative to G, of what the gate and sub views reserve around G.
pub const TRUSTED_BLOCK_START: i64 = GATE_STACK_PAGE_OFFSET;
/// End, relative to G, of what the gate and sub views reserve around G.
pub const TRUSTED_BLOCK_END: i64 = EXIT_PAGE_OFFSET;
/// End, relative to G, of the guest's own 3-page block.
pub const GUEST_BLOCK_END: i64 = 0x3000;
/// Lowest GVA of the gate stack page, and so the lowest G is `MIN_GATE_GVA + 0x2000`.
///
/// No gate-view page may be reachable from compatibility mode (32-bit code of a 64-bit guest,
/// where linear addresses have 32 bits): there the gate bytes would decode differently from
/// what the every-offset test checks.
pub const MIN_GATE_GVA: u64 = 1 << 32;

/// End of the guest-physical addresses the views translate, and so of the trusted window:
/// the views are 4-level EPTs, which use bits 47:0 of a guest-physical address. On a CPU with
/// 52 physical-address bits a guest may load a `CR3` with bits 51:48 set, which the views'
/// walks ignore: the gate compares bits 47:12 only.
const MAX_GPA_END: u64 = EPT_GPA_LIMIT;

/// How far the gate shifts `CR3` left before it compares it with the trusted window: bits
/// 63:48 fall out, bits 47:12 (the page) land in bits 63:28, and bits 11:0 (PCID, or
/// PWT/PCD) below them.
pub const CR3_SHIFT: u32 = 16;

/// Byte offset of the sub EPTP in the gate data page.
pub const GATE_DATA_SUB_EPTP: usize = 0;
/// Byte offset in the gate data page of the trusted window's start, shifted left by
/// [`CR3_SHIFT`] as the gate shifts `CR3`.
pub const GATE_DATA_WINDOW_START: usize = 8;
/// Byte offset in the gate data page of the trusted window's length, shifted left by
/// [`CR3_SHIFT`]. The gate refuses the switch when `(CR3 << 16) - start`, unsigned, is
/// below it: since both are multiples of 2^28 and `CR3`'s low 12 bits shift to below 2^28,
/// that is exactly when the page `CR3` names, as the views' walks read it (bits 47:12),
/// lies in the window.
pub const GATE_DATA_WINDOW_LEN: usize = 16;
/// Byte offset in the gate stack page of the quadword `PUSHFQ` writes.
pub const GATE_FLAGS_SLOT: usize = PAGE_BYTES - 8;
/// Byte offset of list entry 1 (the transient sub EPTP) in the EPTP-list page.
pub const LIST_SUB_SLOT: usize = 8;

// ---- Offsets inside the code pages -------------------------------------------------------

/// Gate entry: the first byte of the gate page (reached from the VMFUNC that ends page G).
pub const GATE_ENTRY_OFFSET: usize = 0;
/// The gate's `VMFUNC` to the sub view (`EAX` = 0, `ECX` = 1).
pub const GATE_SWITCH_OFFSET: usize = 0x68;
/// Sub entry: the byte after the gate's switching `VMFUNC`, in the sub page.
pub const SUB_ENTRY_OFFSET: usize = GATE_SWITCH_OFFSET + VMFUNC.len();
/// Refusal path of the gate (`RFLAGS.IF` was 1): returns [`ERR_IRQ_ENABLED`].
pub const GATE_ABORT_IRQ_OFFSET: usize = SUB_ENTRY_OFFSET;
/// Invalid path of the gate (`list[1]` did not hold the sub EPTP): clears `list[1]`, `UD2`.
pub const GATE_ABORT_INVALID_OFFSET: usize = 0x86;
/// Return tail of the gate: clears `list[1]`, restores `RSP`, `VMFUNC(0)`.
pub const GATE_TAIL_OFFSET: usize = 0xfe4;
/// Return tail of the sub page: scrubs registers, gives the guest its IDT back, restores
/// `RSP`, `VMFUNC(0)`.
pub const SUB_EXIT_OFFSET: usize = 0xfda;
/// The `VMFUNC` back to the default view, last instruction of the gate and of the sub page.
pub const EXIT_VMFUNC_OFFSET: usize = PAGE_BYTES - VMFUNC.len();
/// Offset in the sub page of the 8-byte immediate loaded into `RSP` (sub stack top −
/// [`SUB_IDTR_SLOT`]).
pub const SUB_STACK_IMM_OFFSET: usize = 0x78;
/// Offset in the sub page of the 8-byte immediate holding the service entry GVA.
pub const SERVICE_IMM_OFFSET: usize = 0x95;
/// Sub page: the byte after the store of `R11` to the sub stack. From here until the final
/// `MOV RSP` the caller's `RSP` is in the sub stack slot at its top − [`SUB_RSP_SLOT`],
/// before it in `R11` ([`Interrupted::caller_rsp`]).
pub const SUB_RSP_SAVED_OFFSET: usize = 0x85;
/// Sub page: `SIDT` of the guest's IDT register into the slot at the sub stack top −
/// [`SUB_IDTR_SLOT`] (supervisor grants; a 4-byte NOP for user grants).
pub const SUB_IDT_SAVE_OFFSET: usize = 0x85;
/// Sub page: `LIDT` of the empty IDT (limit 0, base 0: the 10 bytes of the EPTP list from
/// entry 1, which the sub entry has just cleared, and entry 2, always 0). From the next
/// byte on, up to and including [`SUB_IDT_RESTORE_OFFSET`], and in the service, the IDT
/// register holds it (supervisor grants; a 7-byte NOP for user grants).
pub const SUB_IDT_EMPTY_OFFSET: usize = 0x89;
/// Sub page: the byte after the `LIDT` of the empty IDT.
pub const SUB_IDT_EMPTIED_OFFSET: usize = 0x90;
/// Sub page: `LIDT` of the guest's IDT register back from its slot, in the sub exit.
pub const SUB_IDT_RESTORE_OFFSET: usize = 0xff1;
/// Where the sub entry saves the caller's `RSP`: this many bytes below the sub stack top.
pub const SUB_RSP_SLOT: u64 = 16;
/// Where the sub entry saves the guest's IDT register (10 bytes: limit, then base): this
/// many bytes below the sub stack top. The service's stack starts below it.
pub const SUB_IDTR_SLOT: u64 = 32;

/// `ENDBR64`: the landing pad of an indirect branch under CET indirect-branch tracking,
/// a NOP without it.
pub const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
/// The guest's entry stub, at the end of page G (`ENDBR64; XOR EAX,EAX; VMFUNC`). The
/// `ENDBR64` lets a guest kernel that enforces CET indirect-branch tracking call it
/// through a register.
pub const GUEST_ENTRY_OFFSET: usize = PAGE_BYTES - 9;
/// The guest's fallback, at the start of its middle page (default view).
pub const GUEST_FALLBACK_OFFSET: usize = 0;
/// The guest's exit stub, at the start of page G + 0x2000 (`MOV RAX,RDX; RET`).
pub const GUEST_EXIT_OFFSET: usize = 0;

// ---- Register protocol -------------------------------------------------------------------

/// EPTP-list index the gate switches to for the sub view.
pub const SUB_INDEX: u32 = 1;
/// EPTP-list index of the first service's gate (the caller's `ECX`).
pub const FIRST_GATE_INDEX: u32 = 511;
/// Returned when the caller entered with `RFLAGS.IF` = 1 (`-EPERM`). Nothing ran.
pub const ERR_IRQ_ENABLED: i64 = -1;
/// Returned by the guest's fallback when the entry `VMFUNC` stayed in the default view
/// (`ECX` = 0): no gate was entered (`-ENODEV`).
pub const ERR_NOT_ENTERED: i64 = -19;
/// Returned when the module failed a call back to the default view because an event was due
/// while the vCPU was in the gate or sub view (`-EINTR`, gate-protocol section 7). The
/// service may or may not have run; the code here never produces it.
pub const ERR_INTERRUPTED: i64 = -4;
/// Alignment of the sub stack top.
pub const SUB_STACK_ALIGN: u64 = 16;

// Targets of the gate's RIP-relative operands, as offsets from the code page.
const CODE: i64 = CODE_PAGE_OFFSET;
const SUB_EPTP_REL: i64 = GATE_DATA_PAGE_OFFSET - CODE + GATE_DATA_SUB_EPTP as i64;
const LIST_SUB_REL: i64 = LIST_PAGE_OFFSET - CODE + LIST_SUB_SLOT as i64;
const STACK_TOP_REL: i64 = GATE_STACK_PAGE_OFFSET - CODE + PAGE_BYTES as i64;
const FLAGS_SLOT_REL: i64 = GATE_STACK_PAGE_OFFSET - CODE + GATE_FLAGS_SLOT as i64;
const EXIT_PAGE_REL: i64 = EXIT_PAGE_OFFSET - CODE;
const WINDOW_START_REL: i64 = GATE_DATA_PAGE_OFFSET - CODE + GATE_DATA_WINDOW_START as i64;
const WINDOW_LEN_REL: i64 = GATE_DATA_PAGE_OFFSET - CODE + GATE_DATA_WINDOW_LEN as i64;

/// Bit offset of `RFLAGS.IF` as `BT`'s immediate: 233 mod 32 = 9. The immediate follows a
/// displacement ending in `FF FF`, and `FF E9` is undefined, whereas `FF 09` would decrement
/// `[rcx]`.
const BT_IF_IMM: u8 = 9 + 7 * 32;

/// The per-vCPU values of one entry block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateParams {
    /// The guest's paging mode; decides which GVAs are canonical.
    pub paging: PagingMode,
    /// G: the entry block's GVA, 4 KiB aligned, with the gate view's pages at or above
    /// [`MIN_GATE_GVA`].
    pub entry: Gva,
    /// The sub view's EPTP, written to the gate data page. Never in the code.
    pub sub_eptp: Eptp,
    /// Top of this vCPU's sub stack (exclusive), 16-byte aligned. The sub page loads
    /// `sub_stack_top - 32` into `RSP`; the guest `RSP` is saved at `sub_stack_top - 16`,
    /// the guest's IDT register at `sub_stack_top - 32`.
    pub sub_stack_top: Gva,
    /// Entry point of the service in the sub view.
    pub service_entry: Gva,
    /// The trusted GPA window `(start, length)` of the views ([`Layout::trusted_window`]
    /// (super::layout::Layout::trusted_window)), written to the gate data page: the gate
    /// refuses to switch to the sub view while `CR3` points into it.
    pub window: (Gpa, u64),
}

impl GateParams {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// - [`Error::Misaligned`]: G not 4 KiB aligned, or the sub stack top not 16-byte aligned;
    /// - [`Error::BadRequest`]: the gate view's pages (from G - 0x2000) below
    ///   [`MIN_GATE_GVA`];
    /// - [`Error::NonCanonical`]: `[G - 0x2000, G + 0x3000)`, the top 32 bytes of the sub
    ///   stack, or the service entry not canonical for the paging mode;
    /// - [`Error::Overlap`]: the sub stack top or the service entry inside the entry block;
    /// - [`Error::Misaligned`] or [`Error::BadRequest`]: a window not made of whole 4 KiB
    ///   pages, or empty, or past 2^48 (what the views translate), or all of it.
    pub fn validate(&self) -> Result<(), Error> {
        let (wstart, wlen) = self.window;
        if wstart.0 & (PAGE_SIZE - 1) != 0 || wlen & (PAGE_SIZE - 1) != 0 {
            return Err(Error::Misaligned);
        }
        let wend = wstart.0.checked_add(wlen).ok_or(Error::BadRequest)?;
        // `wlen << 16` must not wrap to 0 either: a window of all of 2^48 is refused.
        if wlen == 0 || wlen >= MAX_GPA_END || wend > MAX_GPA_END {
            return Err(Error::BadRequest);
        }
        let g = self.entry.raw();
        if g & (PAGE_SIZE - 1) != 0 {
            return Err(Error::Misaligned);
        }
        let start = g
            .checked_sub(TRUSTED_BLOCK_START.unsigned_abs())
            .ok_or(Error::BadRequest)?;
        if start < MIN_GATE_GVA {
            return Err(Error::BadRequest);
        }
        let block_len = GUEST_BLOCK_END
            .checked_sub(TRUSTED_BLOCK_START)
            .ok_or(Error::BadRequest)?
            .unsigned_abs();
        if !self.paging.is_canonical_range(Gva(start), block_len) {
            return Err(Error::NonCanonical);
        }
        let top = self.sub_stack_top.raw();
        if top % SUB_STACK_ALIGN != 0 {
            return Err(Error::Misaligned);
        }
        let saved = top.checked_sub(SUB_IDTR_SLOT).ok_or(Error::NonCanonical)?;
        if !self.paging.is_canonical_range(Gva(saved), SUB_IDTR_SLOT) {
            return Err(Error::NonCanonical);
        }
        let entry = self.service_entry;
        if !self.paging.is_canonical(entry) {
            return Err(Error::NonCanonical);
        }
        let inside = |a: u64| a >= start && a.wrapping_sub(start) < block_len;
        if inside(saved) || inside(top.wrapping_sub(1)) || inside(entry.raw()) {
            return Err(Error::Overlap);
        }
        Ok(())
    }
}

/// Writes the gate code page: identical for every vCPU and service of one caller
/// privilege. The two variants differ in the three bytes that read `CR3` (supervisor) or
/// take 0 for it (user); every offset is the same.
///
/// # Errors
///
/// None in practice; [`Error::NoSpace`] would mean the code does not fit its fixed layout.
pub fn write_gate_code(
    page: &mut [u8; PAGE_BYTES],
    privilege: CallerPrivilege,
) -> Result<(), Error> {
    let mut a = Asm::new(page, FILL);
    // Normal path. Prefix 3E (DS, ignored in 64-bit mode) follows every displacement ending
    // in FF FF, because FF 3E is undefined (see the module header and gate-protocol.rst).
    a.emit(&[0x49, 0x89, 0xe3])?; // mov r11, rsp         ; guest RSP, for the way back
    a.rip_rel(&[0x48, 0x8b, 0x05], SUB_EPTP_REL, &[])?; // mov rax, [sub_eptp]
    a.rip_rel(&[0x3e, 0x48, 0x89, 0x05], LIST_SUB_REL, &[])?; // mov [list+8], rax
    a.rip_rel(&[0x3e, 0x48, 0x8b, 0x05], LIST_SUB_REL, &[])?; // mov rax, [list+8]
    a.rip_rel(&[0x3e, 0x48, 0x2b, 0x05], SUB_EPTP_REL, &[])?; // sub rax, [sub_eptp]
    let to_invalid = a.rel8_forward(&[0x3e, 0x75])?; // jne invalid   ; list[1] is not ours
    a.rip_rel(&[0x48, 0x8d, 0x25], STACK_TOP_REL, &[])?; // lea rsp, [gate stack top]
    a.emit(&[0x3e, 0x9c])?; // pushfq                                ; to the flags slot
                            // A landing on the PUSHFQ stored the flags through the guest's RSP, at any byte of a
                            // writable page of the view (the EPTP list: a shifted RFLAGS image can be a valid
                            // EPTP). Such a path must end in a VM exit, never in a VMFUNC or a return.
                            // Two DS prefixes place the displacements from here on where no byte of theirs
                            // decodes into a store or a return through a register the guest chooses.
    a.rip_rel(&[0x3e, 0x3e, 0x48, 0x8d, 0x0d], FLAGS_SLOT_REL, &[])?; // lea rcx, [slot]
    a.emit(&[0x3e, 0x48, 0x39, 0xe1])?; // cmp rcx, rsp
    let to_invalid_rsp = a.rel8_forward(&[0x75])?; // jne invalid          ; not our slot
    a.rip_rel(&[0x0f, 0xba, 0x25], FLAGS_SLOT_REL, &[BT_IF_IMM])?; // bt [slot], IF
    let to_irq = a.rel8_forward(&[0x72])?; // jc abort_irq             ; IF=1: refuse
                                           // Supervisor grants: CR3 must not name a page of the trusted window. Page walks from
                                           // such a CR3 in the sub view would read pages the guest can write (a region's): only
                                           // the gate view's own walks are safe whatever CR3 is (the window's other pages are
                                           // holes there), and a guest with PCIDs can reach this point on translations cached by
                                           // an earlier call, under a CR3 loaded since without a flush. At CPL 1 or 2 the read
                                           // raises #GP, which the gate view cannot deliver (its tables map no IDT): the run ends
                                           // before any switch. User grants' callers cannot read CR3 (#GP at CPL 3): their gate
                                           // takes 0 for it, a page never in the window, and their gates open only while the
                                           // guest runs without PCIDs, so that no CR3 load keeps a translation of a view
                                           // (`paging::CallerPrivilege::gates_may_open`). The two variants differ in these
                                           // first three bytes only.
    match privilege {
        CallerPrivilege::Supervisor => a.emit(&[0x0f, 0x20, 0xd8])?, // mov rax, cr3
        CallerPrivilege::User => a.emit(&[0x29, 0xc0, 0xfc])?,       // sub eax, eax ; cld
    }
    // Bits 51:48 too: a CPU with 52 physical-address bits lets the guest load a CR3 with
    // them set, and the views' 4-level walks ignore them (the page read is bits 47:12).
    // Its immediate, 10, decodes as ADC r/m8, r8 where the guest lands on it: the CLD after
    // it makes that ADC's ModRM byte FC, two registers (ADC AH, BH), never a store.
    a.emit(&[0x48, 0xc1, 0xe0, CR3_SHIFT as u8, 0xfc])?; // shl rax, 16 ; cld ; drop 63:48
    a.rip_rel(&[0x48, 0x2b, 0x05], WINDOW_START_REL, &[])?; // sub rax, [window start]
    a.rip_rel(&[0x3e, 0x48, 0x3b, 0x05], WINDOW_LEN_REL, &[])?; // cmp rax, [window len]
    let to_invalid_cr3 = a.rel8_forward(&[0x3e, 0x72])?; // jb invalid ; CR3 in the window
    a.emit(&[0x29, 0xc0, 0xfc])?; // sub eax, eax ; cld
    a.emit(&[0x8d, 0x48, 0x01])?; // lea ecx, [rax+1]      ; rax is 0 here: ecx = 1
    a.emit(&[0xfc])?; // cld
    check(a.pos(), GATE_SWITCH_OFFSET)?;
    a.emit(&VMFUNC)?; // vmfunc(0, 1)                       ; -> sub view, SUB_ENTRY_OFFSET

    // Refusal: IF was 1. list[1] holds the sub EPTP and is cleared by the tail.
    a.bind(to_irq)?;
    check(a.pos(), GATE_ABORT_IRQ_OFFSET)?;
    // mov rdx, imm64: all its immediate bytes are FF (undefined as an opcode pair), where the
    // shorter sign-extending forms would end in C2 (RET imm16) or CA (RETF imm16).
    a.emit(&[0x48, 0xba])?; // mov rdx, ERR_IRQ_ENABLED
    a.imm64(ERR_IRQ_ENABLED as u64)?;
    let mut hop = a.rel8_forward(&[0xeb])?; // jmp (hop chain to the tail)

    // Invalid: list[1] holds a value that is not the sub EPTP; only reachable by landing
    // off the entry. Clear it and raise #UD: no live return that could serve as an oracle.
    // At an offset that makes every branch byte to it harmless where the guest lands on
    // it (the JNE after the list check: 61, an invalid opcode).
    a.org(GATE_ABORT_INVALID_OFFSET)?;
    a.bind(to_invalid)?;
    a.bind(to_invalid_rsp)?;
    a.bind(to_invalid_cr3)?;
    check(a.pos(), GATE_ABORT_INVALID_OFFSET)?;
    a.emit(&[0x29, 0xc0, 0xfc])?; // sub eax, eax ; cld
    a.rip_rel(&[0x3e, 0x48, 0x89, 0x05], LIST_SUB_REL, &[])?; // mov [list+8], rax
    a.emit(&[0x3e, 0x0f, 0x0b])?; // ud2

    // Hops of 129 bytes through the INT3 fill, so that no branch displacement has a zero
    // high byte.
    let tail_len = 28;
    let tail = PAGE_BYTES.checked_sub(tail_len).ok_or(Error::NoSpace)?;
    loop {
        let reach = hop.reach()?;
        if reach >= tail {
            a.org(tail)?;
            a.bind(hop)?;
            break;
        }
        a.org(reach)?;
        a.bind(hop)?;
        hop = a.rel8_forward(&[0xeb])?;
    }
    check(a.pos(), GATE_TAIL_OFFSET)?;
    // list[1] = 0 as two 32-bit stores of ECX, the index of the VMFUNC below: landing on
    // either store leaves list[1] = 0 exactly when that VMFUNC goes to the default view.
    a.emit(&[0x29, 0xc0, 0xfc])?; // sub eax, eax ; cld      ; flags normalised
    a.emit(&[0x89, 0xc1, 0xfc])?; // mov ecx, eax ; cld
    a.rip_rel(&[0x3e, 0x89, 0x0d], LIST_SUB_REL, &[])?; // mov [list+8], ecx
    a.rip_rel(&[0x3e, 0x89, 0x0d], LIST_SUB_REL + 4, &[])?; // mov [list+12], ecx
    a.emit(&[0x3e, 0x4c, 0x89, 0xdc, 0xfc])?; // mov rsp, r11 ; cld
    check(a.pos(), EXIT_VMFUNC_OFFSET)?;
    a.emit(&VMFUNC) // vmfunc(0, 0)                          ; -> default view, G + 0x2000
}

/// Writes the gate data page of one vCPU: the sub EPTP at [`GATE_DATA_SUB_EPTP`], zeros
/// elsewhere. The gate view maps this page read-only.
///
/// # Errors
///
/// Those of [`GateParams::validate`].
pub fn write_gate_data(page: &mut [u8; PAGE_BYTES], params: &GateParams) -> Result<(), Error> {
    params.validate()?;
    page.fill(0);
    let (wstart, wlen) = params.window;
    for (at, value) in [
        (GATE_DATA_SUB_EPTP, params.sub_eptp.raw()),
        (GATE_DATA_WINDOW_START, wstart.0 << CR3_SHIFT),
        (GATE_DATA_WINDOW_LEN, wlen << CR3_SHIFT),
    ] {
        let end = at.checked_add(8).ok_or(Error::NoSpace)?;
        page.get_mut(at..end)
            .ok_or(Error::NoSpace)?
            .copy_from_slice(&value.to_le_bytes());
    }
    Ok(())
}

/// Writes the gate stack page: zeros (only its top quadword is ever written, by `PUSHFQ`).
pub fn write_gate_stack(page: &mut [u8; PAGE_BYTES]) {
    page.fill(0);
}

/// `SIDT [RSP]`, or a NOP of its length.
const SIDT_RSP: [u8; 4] = [0x0f, 0x01, 0x0c, 0x24];
/// `LIDT [RSP]`, or a NOP of its length.
const LIDT_RSP: [u8; 4] = [0x0f, 0x01, 0x1c, 0x24];
/// `NOP DWORD [RAX+0]`: 4 bytes.
const NOP4: [u8; 4] = [0x0f, 0x1f, 0x40, 0x00];
/// `NOP DWORD [RAX+0]` with a 32-bit displacement: 7 bytes.
const NOP7: [u8; 7] = [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00];

/// Writes the sub code page of one vCPU, for callers of `privilege`.
///
/// A supervisor grant's sub code runs the service with an **empty IDT** (limit 0): an
/// exception the service raises (a #PF on what a caller passed, a #DE, a #GP) cannot be
/// delivered, which makes it a triple fault and ends the run, instead of a delivery through
/// descriptors the guest may have placed in a region (`LIDT` and `LGDT` do not exit). The
/// sub entry saves the guest's IDT register on the sub stack and the sub exit loads it
/// back; the module does the same when it interrupts the call in between
/// ([`Interrupted::guest_idtr`]). A user grant's sub code runs at CPL 3, where `LIDT`
/// faults: NOPs of the same length stand in, and SMAP (which its gates need) makes any
/// delivery from its views fault instead.
///
/// # Errors
///
/// Those of [`GateParams::validate`].
pub fn write_sub_code(
    page: &mut [u8; PAGE_BYTES],
    params: &GateParams,
    privilege: CallerPrivilege,
) -> Result<(), Error> {
    params.validate()?;
    let rsp = params
        .sub_stack_top
        .raw()
        .checked_sub(SUB_IDTR_SLOT)
        .ok_or(Error::NonCanonical)?;
    let supervisor = privilege == CallerPrivilege::Supervisor;
    let mut a = Asm::new(page, FILL);
    a.org(SUB_ENTRY_OFFSET)?;
    // list[1] = 0 first: from here on no VMFUNC can reach the sub view.
    a.rip_rel(&[0x48, 0xc7, 0x05], LIST_SUB_REL, &[0, 0, 0, 0])?; // mov qword [list+8], 0
    a.emit(&[0x48, 0xbc])?; // mov rsp, imm64                     ; sub stack top - 32
    check(a.imm64(rsp)?, SUB_STACK_IMM_OFFSET)?;
    a.emit(&[0x4c, 0x89, 0x5c, 0x24, 0x10])?; // mov [rsp+16], r11 ; guest RSP
    check(a.pos(), SUB_RSP_SAVED_OFFSET)?;
    check(a.pos(), SUB_IDT_SAVE_OFFSET)?;
    if supervisor {
        a.emit(&SIDT_RSP)?; // sidt [rsp]                         ; guest IDTR
        check(a.pos(), SUB_IDT_EMPTY_OFFSET)?;
        a.rip_rel(&[0x0f, 0x01, 0x1d], LIST_SUB_REL, &[])?; // lidt [list+8] ; empty IDT
    } else {
        a.emit(&NOP4)?;
        check(a.pos(), SUB_IDT_EMPTY_OFFSET)?;
        a.emit(&NOP7)?;
    }
    check(a.pos(), SUB_IDT_EMPTIED_OFFSET)?;
    a.emit(&[0x6a, 0x02, 0x9d])?; // push 2 ; popfq              ; TF, DF, AC, NT = 0
    a.emit(&[0x49, 0xbb])?; // mov r11, imm64                     ; service entry
    check(a.imm64(params.service_entry.raw())?, SERVICE_IMM_OFFSET)?;
    a.emit(&[0x41, 0xff, 0xd3])?; // call r11                    ; RAX is 0 here
    let exit = i64::try_from(SUB_EXIT_OFFSET).map_err(|_| Error::NoSpace)?;
    a.rel32(&[0xe9], exit)?; // jmp sub_exit

    a.org(SUB_EXIT_OFFSET)?;
    a.emit(&[0x48, 0x89, 0xc2])?; // mov rdx, rax                 ; return value
    a.emit(&[0x31, 0xc0, 0x31, 0xc9])?; // xor eax, eax ; xor ecx, ecx
    a.emit(&[0x31, 0xf6, 0x31, 0xff])?; // xor esi, esi ; xor edi, edi
    a.emit(&[0x45, 0x31, 0xc0, 0x45, 0x31, 0xc9])?; // xor r8d, r8d ; xor r9d, r9d
    a.emit(&[0x45, 0x31, 0xd2, 0x45, 0x31, 0xdb])?; // xor r10d, r10d ; xor r11d, r11d
    check(a.pos(), SUB_IDT_RESTORE_OFFSET)?;
    a.emit(if supervisor { &LIDT_RSP } else { &NOP4 })?; // lidt [rsp] ; guest IDTR
    a.emit(&[0x6a, 0x02, 0x9d])?; // push 2 ; popfq              ; RFLAGS = 0x2
    a.emit(&[0x48, 0x8b, 0x64, 0x24, 0x10])?; // mov rsp, [rsp+16] ; guest RSP
    check(a.pos(), EXIT_VMFUNC_OFFSET)?;
    a.emit(&VMFUNC) // vmfunc(0, 0)                               ; -> default view, G + 0x2000
}

/// The guest's IDT register as `SIDT` stores it: a 16-bit limit, then a 64-bit base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Idtr {
    /// `IDTR.base`.
    pub base: u64,
    /// `IDTR.limit`.
    pub limit: u16,
}

impl Idtr {
    /// The IDT register stored at the start of two quadwords `lo`, `hi` (little endian):
    /// limit in bytes 0-1 of `lo`, base in bytes 2-7 of `lo` and 0-1 of `hi`.
    pub fn from_words(lo: u64, hi: u64) -> Idtr {
        Idtr {
            base: (lo >> 16) | (hi << 48),
            limit: lo as u16,
        }
    }
}

/// The trusted view an excursion was in when the module interrupted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExcursionView {
    /// The gate view: the gate code page at G + 0x1000.
    Gate,
    /// The sub view: the sub code page at G + 0x1000, or the service.
    Sub,
}

/// An excursion as the module sees it at a VM exit: where it was, and the registers that
/// say where the caller's stack is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted {
    /// The view it was in.
    pub view: ExcursionView,
    /// G, the entry block of the gate being crossed.
    pub g: u64,
    /// `RIP` at the exit.
    pub rip: u64,
    /// `RSP` at the exit.
    pub rsp: u64,
    /// `R11` at the exit.
    pub r11: u64,
    /// `RFLAGS` at the exit.
    pub rflags: u64,
    /// The quadword at sub stack top − 16, where the sub entry saves the caller's `RSP`.
    pub saved_rsp: u64,
    /// The privilege of the grant's callers: a supervisor grant's sub code empties the IDT.
    pub privilege: CallerPrivilege,
    /// The 10 bytes at sub stack top − 32, where a supervisor grant's sub entry saves the
    /// guest's IDT register.
    pub saved_idtr: Idtr,
}

/// The state a failed-back call goes on with, in the default view at the guest's exit stub
/// (gate-protocol section 7): `RIP` = G + 0x2000, `RSP` = the caller's, `RDX` = the error
/// (the exit stub returns it in `RAX`), **every other general register 0** (the callee-saved
/// ones too: the service may have loaded region data into them; the guest libraries save
/// them around the call), `RFLAGS` = 0x2 with the interrupted `IF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailBack {
    /// G + 0x2000: the guest's exit stub.
    pub rip: u64,
    /// The caller's `RSP` ([`Interrupted::caller_rsp`]).
    pub rsp: u64,
    /// The error, as a 64-bit two's complement value.
    pub rdx: u64,
    /// 0x2 | the interrupted `IF`.
    pub rflags: u64,
    /// The guest's IDT register, to be loaded back when the sub view had replaced it with
    /// the empty one ([`Interrupted::guest_idtr`]); `None`: the IDT register is the guest's.
    pub idtr: Option<Idtr>,
}

/// Index of `RDX` and `RSP` in the x86 register encoding (and KVM's `enum kvm_reg`).
pub const GPR_RDX: usize = 2;
/// See [`GPR_RDX`].
pub const GPR_RSP: usize = 4;
/// `RFLAGS.IF`.
pub const RFLAGS_IF: u64 = 1 << 9;

impl Interrupted {
    /// The caller's `RSP`, which the normal path restores with `MOV RSP, [RSP+16]` at the
    /// end:
    ///
    /// - gate view: at the gate's first byte it is still `RSP`; after `MOV R11, RSP` it is
    ///   `R11`, which the gate never writes again;
    /// - sub view: from the sub entry up to `MOV [RSP+16], R11`, `R11`; from there on the
    ///   slot at sub stack top − 16 (the service's code included); after the final
    ///   `MOV RSP`, at the last `VMFUNC`, `RSP` again.
    ///
    /// Values the guest chose (a landing in the gate) come back to the guest only.
    pub fn caller_rsp(&self) -> u64 {
        let off = self
            .rip
            .wrapping_sub(self.g.wrapping_add(CODE_PAGE_OFFSET as u64));
        let sub_entry = SUB_ENTRY_OFFSET as u64..SUB_RSP_SAVED_OFFSET as u64;
        match self.view {
            ExcursionView::Gate if off == GATE_ENTRY_OFFSET as u64 => self.rsp,
            ExcursionView::Gate => self.r11,
            ExcursionView::Sub if sub_entry.contains(&off) => self.r11,
            ExcursionView::Sub if off == EXIT_VMFUNC_OFFSET as u64 => self.rsp,
            ExcursionView::Sub => self.saved_rsp,
        }
    }

    /// The guest's IDT register when the excursion runs with the empty IDT in its place
    /// (a supervisor grant's sub view: from the byte after the sub entry's `LIDT` to the
    /// sub exit's `LIDT`, which has not run yet, and the service's code, anywhere outside
    /// the sub page); `None` when the IDT register is the guest's own.
    pub fn guest_idtr(&self) -> Option<Idtr> {
        let off = self
            .rip
            .wrapping_sub(self.g.wrapping_add(CODE_PAGE_OFFSET as u64));
        let emptied = self.view == ExcursionView::Sub
            && self.privilege == CallerPrivilege::Supervisor
            && (off >= PAGE_BYTES as u64
                || (SUB_IDT_EMPTIED_OFFSET as u64..=SUB_IDT_RESTORE_OFFSET as u64).contains(&off));
        emptied.then_some(self.saved_idtr)
    }

    /// The state the call goes on with when the module fails it back with `err`.
    pub fn fail_back(&self, err: i64) -> FailBack {
        FailBack {
            rip: self.g.wrapping_add(EXIT_PAGE_OFFSET as u64),
            rsp: self.caller_rsp(),
            rdx: err as u64,
            rflags: 0x2 | (self.rflags & RFLAGS_IF),
            idtr: self.guest_idtr(),
        }
    }
}

impl FailBack {
    /// The state a **broken** excursion (a synchronous exit inside a view: the run ends with
    /// `KVM_EXIT_SHUTDOWN`) is left in: every general register 0 (`RSP` too), `RFLAGS` =
    /// 0x2, and `RIP` = G + 0x2000 when the gate `g` is known, else `rip` unchanged (an
    /// exit in a view elisa cannot name); the guest's IDT register `idtr` loaded back when
    /// the view had emptied it. Nothing of the view reaches KVM's handlers.
    pub fn broken(g: Option<u64>, rip: u64, idtr: Option<Idtr>) -> FailBack {
        FailBack {
            rip: g.map_or(rip, |g| g.wrapping_add(EXIT_PAGE_OFFSET as u64)),
            rsp: 0,
            rdx: 0,
            rflags: 0x2,
            idtr,
        }
    }

    /// General register `i` (x86 encoding: 0 `RAX`, 1 `RCX`, 2 `RDX`, 3 `RBX`, 4 `RSP`, ...,
    /// 15 `R15`).
    pub fn gpr(&self, i: usize) -> u64 {
        match i {
            GPR_RDX => self.rdx,
            GPR_RSP => self.rsp,
            _ => 0,
        }
    }
}

/// Writes the guest's page G: `INT3` fill, then the entry stub `ENDBR64; XOR EAX,EAX;
/// VMFUNC` ending the page at [`GUEST_ENTRY_OFFSET`]. The caller sets `ECX` to the service's gate index.
///
/// # Errors
///
/// None in practice; [`Error::NoSpace`] would mean the stub does not fit.
pub fn write_guest_entry_page(page: &mut [u8; PAGE_BYTES]) -> Result<(), Error> {
    let mut a = Asm::new(page, FILL);
    a.org(GUEST_ENTRY_OFFSET)?;
    a.emit(&ENDBR64)?; // endbr64
    a.emit(&[0x31, 0xc0])?; // xor eax, eax
    a.emit(&VMFUNC) // vmfunc(0, ecx)                             ; -> gate view, G + 0x1000
}

/// Writes the guest's middle page (G + 0x1000 in the default view): reached only when the
/// entry `VMFUNC` selected the default view itself, it returns [`ERR_NOT_ENTERED`] through
/// the exit stub.
///
/// # Errors
///
/// None in practice; [`Error::NoSpace`] would mean the code does not fit.
pub fn write_guest_middle_page(page: &mut [u8; PAGE_BYTES]) -> Result<(), Error> {
    let mut a = Asm::new(page, FILL);
    a.emit(&[0x48, 0xc7, 0xc2])?; // mov rdx, ERR_NOT_ENTERED (sign-extended)
    a.emit(&err32(ERR_NOT_ENTERED)?)?;
    a.rel32(&[0xe9], EXIT_PAGE_REL) // jmp G + 0x2000
}

/// Writes the guest's exit page (G + 0x2000): `MOV RAX,RDX; RET` at its start.
///
/// # Errors
///
/// None in practice.
pub fn write_guest_exit_page(page: &mut [u8; PAGE_BYTES]) -> Result<(), Error> {
    let mut a = Asm::new(page, FILL);
    a.emit(&[0x48, 0x89, 0xd0])?; // mov rax, rdx
    a.emit(&[0xc3]) // ret
}

/// Writes the guest's whole 12 KiB block (pages G, G + 0x1000, G + 0x2000). These bytes are
/// the same for every VM, vCPU and service; the guest library embeds them.
///
/// # Errors
///
/// None in practice.
pub fn write_guest_block(block: &mut [[u8; PAGE_BYTES]; 3]) -> Result<(), Error> {
    let [entry, middle, exit] = block;
    write_guest_entry_page(entry)?;
    write_guest_middle_page(middle)?;
    write_guest_exit_page(exit)
}

/// Copies `page` into `frame` through the frame store (the module's way to fill the code and
/// data frames it maps).
///
/// # Errors
///
/// Those of [`Frames::write_entry`].
pub fn store_page<F: Frames + ?Sized>(
    frames: &mut F,
    frame: Hpa,
    page: &[u8; PAGE_BYTES],
) -> Result<(), Error> {
    for (index, chunk) in page.chunks_exact(8).enumerate().take(ENTRIES_PER_TABLE) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        frames.write_entry(frame, index, u64::from_le_bytes(word))?;
    }
    Ok(())
}

fn err32(value: i64) -> Result<[u8; 4], Error> {
    Ok(i32::try_from(value)
        .map_err(|_| Error::BadRequest)?
        .to_le_bytes())
}

fn check(actual: usize, expected: usize) -> Result<(), Error> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::NoSpace)
    }
}
