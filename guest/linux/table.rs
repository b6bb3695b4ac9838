// SPDX-License-Identifier: GPL-2.0
//! The private page table, and the call through it.
//!
//! Linux gives every process its own PGD, each with a copy of the kernel's entries, so a
//! mapping at G in one of them is not in the others. The module does not add G to every
//! page table. It builds one more: an 8 KiB-aligned PGD whose kernel half is a copy of the
//! kernel's (taken at load) and whose slot for G points to the module's own tables, which
//! map the three pages of the entry block at G, G + 0x1000 and G + 0x2000 (present,
//! read-only, executable, supervisor, not global). A call switches CR3 to it with
//! interrupts off, and back. `Documentation/guest-linux.rst`, "The private page table",
//! says why this is sound under PTI, KASLR, SMEP/SMAP and CET IBT, and what it costs.
//!
//! One [`PrivateTable`] exists while the module is loaded with at least one gate.

use crate::elisa_core::{addr::Hpa, paging::IdentityTables};
use crate::elisa_guest::{
    map::{self, MapError},
    param::GateList,
    write_entry_block, Gate, BLOCK_PAGES, PAGE_SIZE,
};
use crate::pages::{Pages, TableFrames};
use crate::shim;
use core::arch::asm;
use kernel::prelude::*;

/// Bits 51:12 of CR3: the PGD's physical address.
const CR3_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bit 63 of a CR3 load with CR4.PCIDE = 1: keep the TLB entries of the new PCID.
const CR3_NOFLUSH: u64 = 1 << 63;

/// CR3.
fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 at CPL 0 (module code) has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nostack, preserves_flags)) };
    v
}

/// Loads CR3.
///
/// # Safety
///
/// `v` is a valid CR3 for this CPU: a PGD that maps all the kernel the CPU runs until the
/// next load (its code, stack, data, the entry and exception code), with a PCID and flags
/// that CR4 allows. No `nomem`: the load is a barrier for the compiler as well.
unsafe fn write_cr3(v: u64) {
    // SAFETY: the caller guarantees that `v` is a valid CR3.
    unsafe { asm!("mov cr3, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// The entry block and the page table that maps it.
///
/// # Invariants
///
/// - `root` is the physical address of the first page of an order-1 allocation held in
///   `frames` (so CR3 bit 12, PTI's user-PGD bit, is clear): a PGD whose kernel half is the
///   kernel's at load, apart from the per-process LDT slot, and whose other entries map
///   only the entry block (`block`, written by `write_entry_block`) at every G of the
///   gates it was built for, with tables in `frames`.
/// - `noflush` is [`CR3_NOFLUSH`] if CR4.PCIDE is set, else 0.
pub(crate) struct PrivateTable {
    /// Held, not read: the root and its tables, freed with the value.
    _frames: TableFrames,
    /// Held, not read: the entry block's pages.
    _block: Pages,
    root: u64,
    noflush: u64,
}

impl PrivateTable {
    /// Builds the entry block and the page table for the entry blocks of `gates`.
    ///
    /// # Errors
    ///
    /// `EINVAL` (logged): two entry blocks overlap, or one lies in a PGD slot the kernel
    /// uses. `ENOMEM`.
    pub(crate) fn build(gates: &GateList, cpu: &shim::Cpu) -> Result<Self> {
        // Order 2: 16 KiB, the first three pages hold the block.
        let mut block = Pages::alloc(2)?;
        // SAFETY: the allocation is 16 KiB of zeroed direct-map memory owned by `block`,
        // page-aligned; nothing else refers to it while the reference lives.
        let pages = unsafe { &mut *block.as_mut_ptr().cast::<[[u8; PAGE_SIZE]; BLOCK_PAGES]>() };
        write_entry_block(pages).map_err(|_| EINVAL)?;
        let b = block.phys();
        let frames = [b, b + PAGE_SIZE as u64, b + 2 * PAGE_SIZE as u64];

        // Order 1: an 8 KiB-aligned PGD (bit 12 of its address clear).
        let root = Pages::alloc(1)?;
        let root_phys = root.phys();
        let mut space = IdentityTables(TableFrames::new(root));
        let kernel = {
            // SAFETY: returns the direct-map address of this CPU's PGD (512 entries).
            unsafe { shim::elisa_guest_shim_kernel_pgd() }
        };
        let built =
            map::map_entry_blocks(&mut space, Hpa(root_phys), gates, frames).and_then(|()| {
                map::merge_kernel_half(
                    &mut space,
                    Hpa(root_phys),
                    // SAFETY: `kernel` points to the 512 entries of a live PGD (the
                    // kernel's half of it never goes away) and `slot` < 512. Volatile:
                    // the kernel may set an entry (memory hot-add) while we copy.
                    |slot| unsafe { kernel.add(slot).read_volatile() },
                    Some(cpu.ldt_slot as usize),
                )
            });
        if let Err(e) = built {
            match e {
                MapError::SlotInUse(slot) => pr_err!(
                    "an entry block lies in PGD slot {} ({:#x}), which this kernel uses (or keeps per process)\n",
                    slot,
                    slot_address(slot)
                ),
                MapError::Build(e) => {
                    pr_err!(
                        "cannot map the entry blocks: {:?} (do two of them overlap?)\n",
                        e
                    )
                }
            }
            return Err(match e {
                MapError::Build(crate::elisa_core::Error::OutOfFrames) => ENOMEM,
                _ => EINVAL,
            });
        }
        let frames = space.0;
        pr_info!(
            "private page table: PGD and {} table pages, entry block at {} G\n",
            frames.nr_tables(),
            distinct_gs(gates)
        );
        // INVARIANT: `root_phys` is the order-1 allocation held in `frames`, filled as
        // described; `noflush` follows CR4.PCIDE (fixed after boot).
        Ok(Self {
            root: frames.root(),
            _frames: frames,
            _block: block,
            noflush: if cpu.pcide != 0 { CR3_NOFLUSH } else { 0 },
        })
    }

    /// Whether this CPU runs on the private page table now (from the `#UD` hook).
    pub(crate) fn is_current(&self) -> bool {
        read_cr3() & CR3_ADDR_MASK == self.root
    }

    /// Calls `gate` with interrupts off and CR3 on the private table, and returns `RAX`.
    ///
    /// Any context; takes no lock, never sleeps.
    pub(crate) fn call(&self, gate: Gate, a: [u64; 5]) -> i64 {
        // SAFETY: local_irq_save() may be called in any context; it is undone below.
        let flags = unsafe { shim::elisa_guest_shim_irq_save() };
        let saved = read_cr3();
        // SAFETY: by the type invariant `root` is a PGD with the kernel's half (this code,
        // this stack, the IDT, the entry and exception code are all in it) and PCID 0, no
        // no-flush bit: the load drops any stale PCID-0 translation. Interrupts are off, so
        // nothing but NMIs and exceptions runs on it, and they run in the kernel half.
        unsafe { write_cr3(self.root) };
        // SAFETY: the entry block is mapped at G in the table just loaded (type invariant,
        // every G of the gates), executable; interrupts are off; this is CPL 0. The index is
        // the one the host named for this gate; a wrong or revoked one raises #UD at the
        // entry VMFUNC, which the die notifier turns into the fallback (-ENODEV).
        let ret = unsafe { gate.call_raw(a[0], a[1], a[2], a[3], a[4]) };
        // SAFETY: `saved` is the CR3 this CPU ran on before (interrupts are off since: no
        // switch_mm in between). With PCIDE, no-flush keeps that PCID's translations,
        // which nothing changed: the private table's are tagged PCID 0.
        unsafe { write_cr3(saved | self.noflush) };
        // SAFETY: `flags` came from the save above, on this CPU.
        unsafe { shim::elisa_guest_shim_irq_restore(flags) };
        ret
    }
}

/// Number of distinct G among `gates`.
fn distinct_gs(gates: &GateList) -> usize {
    gates
        .iter()
        .enumerate()
        .filter(|(n, g)| !gates.iter().take(*n).any(|e| e.gate().g() == g.gate().g()))
        .count()
}

/// The first address of PGD slot `slot` (4-level paging, sign-extended).
fn slot_address(slot: usize) -> u64 {
    let a = (slot as u64 & 0x1ff) << 39;
    if slot >= 256 {
        a | 0xffff_0000_0000_0000
    } else {
        a
    }
}
