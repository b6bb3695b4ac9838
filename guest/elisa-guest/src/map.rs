// SPDX-License-Identifier: GPL-2.0
//! A private page table for the entry blocks, as a guest kernel builds it.
//!
//! G is chosen by the host, by default in the 4-level "guard hole" (PGD slots 256..=271,
//! reserved for hypervisors), which no kernel maps. A guest kernel whose page tables are
//! per process (Linux: every process has its own PGD, with a copy of the kernel's entries)
//! need not add G to all of them. It builds one more root instead:
//!
//! 1. a zeroed root page; [`map_entry_blocks`] maps the entry block at every distinct G of
//!    the gates (read-only, executable, supervisor, not global), with elisa-core's
//!    [`GuestPageTable`] and table pages from the caller;
//! 2. [`merge_kernel_half`] copies the kernel's entries 256..=511 into the root, except the
//!    slots the entry blocks use (which must be empty in the kernel's) and one slot the
//!    kernel keeps per process (Linux: the LDT remap);
//! 3. a call loads the root into CR3 around the call only.
//!
//! The user half holds nothing but entry blocks whose G lies there. Only 4-level paging.

use super::elisa_core::{
    addr::{Gpa, Gva, Hpa, PageSize},
    frame::ENTRIES_PER_TABLE,
    paging::{GuestPageTable, GuestPerm, PagingMode, TableSpace, PTE_PRESENT},
    Error,
};
use super::{param::GateList, BLOCK_PAGES, PAGE_SIZE};

/// The PGD slots of the kernel half (4-level paging): 256..=511.
pub const KERNEL_HALF: core::ops::Range<usize> = 256..ENTRIES_PER_TABLE;

/// Why the private table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The builder refused: two entry blocks overlap ([`Error::Overlap`]), a G is not
    /// canonical, or the table space failed (out of pages).
    Build(Error),
    /// An entry block lies in this PGD slot, which the kernel uses (or keeps per process).
    SlotInUse(usize),
}

impl From<Error> for MapError {
    fn from(e: Error) -> Self {
        Self::Build(e)
    }
}

/// Maps the entry block (the frames `block`, at physical addresses) at G, G + 0x1000 and
/// G + 0x2000 for every distinct G of `gates`, in the 4-level table whose zeroed root is
/// `root` in `space`: present, read-only, executable, supervisor, not global.
///
/// # Errors
///
/// [`MapError::Build`]: entry blocks that overlap without being the same G, a G that is
/// not canonical, table space errors.
pub fn map_entry_blocks<S: TableSpace + ?Sized>(
    space: &mut S,
    root: Hpa,
    gates: &GateList,
    block: [u64; BLOCK_PAGES],
) -> Result<(), MapError> {
    let table = GuestPageTable::new(PagingMode::FourLevel, root);
    for (n, gate) in gates.iter().enumerate() {
        let g = gate.gate().g();
        if gates.iter().take(n).any(|earlier| earlier.gate().g() == g) {
            continue;
        }
        let mut va = g;
        for frame in block {
            table.map(
                space,
                Gva(va),
                Gpa(frame),
                PageSize::Size4K,
                GuestPerm::Execute,
            )?;
            va = va
                .checked_add(PAGE_SIZE as u64)
                .ok_or(Error::NonCanonical)?;
        }
    }
    Ok(())
}

/// Fills the kernel half of the root `root` (after [`map_entry_blocks`]) with the kernel's
/// entries, `kernel(slot)` for slot in [`KERNEL_HALF`], leaving `private_slot` (a slot the
/// kernel keeps per process, such as Linux's LDT remap) empty.
///
/// # Errors
///
/// [`MapError::SlotInUse`] when an entry block lies in a slot the kernel's entry uses, or in
/// `private_slot`; [`MapError::Build`] for table space errors. The root may be partly
/// filled then: the caller frees it.
pub fn merge_kernel_half<S: TableSpace + ?Sized>(
    space: &mut S,
    root: Hpa,
    kernel: impl Fn(usize) -> u64,
    private_slot: Option<usize>,
) -> Result<(), MapError> {
    for slot in KERNEL_HALF {
        let own = space.read_entry(root, slot)?;
        let theirs = if Some(slot) == private_slot {
            if own != 0 {
                return Err(MapError::SlotInUse(slot));
            }
            continue;
        } else {
            kernel(slot)
        };
        if own != 0 {
            if theirs & PTE_PRESENT != 0 {
                return Err(MapError::SlotInUse(slot));
            }
            continue;
        }
        space.write_entry(root, slot, theirs)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::elisa_core::addr::table_index;
    use crate::elisa_core::frame::{ArrayFrames, Frames};
    use crate::elisa_core::paging::{IdentityTables, PTE_NX, PTE_USER, PTE_WRITABLE};
    use crate::elisa_core::paging::{PTE_ADDR_MASK, PTE_GLOBAL};

    const BLOCK: [u64; 3] = [0x7_0000_0000, 0x7_0000_5000, 0x7_0000_a000];

    fn space() -> (IdentityTables<ArrayFrames<32>>, Hpa) {
        let mut s = IdentityTables(ArrayFrames::<32>::new(Hpa(0x100_0000)));
        let root = s.0.alloc_zeroed().unwrap();
        (s, root)
    }

    fn list(p: &str) -> GateList {
        let mut l = GateList::new();
        l.parse_param(p).unwrap();
        l
    }

    #[test]
    fn maps_each_g_once() {
        let (mut s, root) = space();
        let gates = list("0xffff800000002000:511,0xffff800000002000:510,0x500000000000:509");
        map_entry_blocks(&mut s, root, &gates, BLOCK).unwrap();
        let pt = GuestPageTable::new(PagingMode::FourLevel, root);
        for g in [0xffff_8000_0000_2000u64, 0x5000_0000_0000] {
            for (i, frame) in BLOCK.iter().enumerate() {
                let t = pt
                    .translate(&s, Gva(g + i as u64 * 0x1000 + 0x123))
                    .unwrap()
                    .unwrap();
                assert_eq!(t.gpa, Gpa(frame + 0x123));
                // present, read-only, executable, supervisor, not global
                assert_eq!(t.entry & PTE_PRESENT, PTE_PRESENT);
                assert_eq!(t.entry & (PTE_WRITABLE | PTE_USER | PTE_NX | PTE_GLOBAL), 0);
                assert_eq!(t.entry & PTE_ADDR_MASK, *frame);
            }
            assert!(pt.translate(&s, Gva(g - 0x1000)).unwrap().is_none());
            assert!(pt.translate(&s, Gva(g + 0x3000)).unwrap().is_none());
        }
        // Two roots' slots in use (256 and 160), nothing else.
        let used: Vec<usize> = (0..512)
            .filter(|&i| s.read_entry(root, i).unwrap() != 0)
            .collect();
        assert_eq!(used, [table_index(0x5000_0000_0000, 4), 256]);
        // PUD, PMD and PT for each of the two blocks.
        assert_eq!(s.0.used(), 1 + 6);
    }

    #[test]
    fn block_across_tables() {
        // G + 0x2000 is the first page of the next 1 GiB: a second PMD and PT.
        let (mut s, root) = space();
        let g = 0xffff_8000_3fff_e000u64;
        map_entry_blocks(&mut s, root, &list(&format!("{g:#x}:511")), BLOCK).unwrap();
        let pt = GuestPageTable::new(PagingMode::FourLevel, root);
        let t = pt.translate(&s, Gva(g + 0x2000)).unwrap().unwrap();
        assert_eq!(t.gpa, Gpa(BLOCK[2]));
        assert_eq!(s.0.used(), 1 + 5);
    }

    #[test]
    fn overlapping_blocks_are_refused() {
        let (mut s, root) = space();
        let gates = list("0x500000000000:511,0x500000001000:510");
        assert_eq!(
            map_entry_blocks(&mut s, root, &gates, BLOCK),
            Err(MapError::Build(Error::Overlap))
        );
    }

    #[test]
    fn kernel_half() {
        let (mut s, root) = space();
        map_entry_blocks(&mut s, root, &list("0xffff800000002000:511"), BLOCK).unwrap();
        let ours = s.read_entry(root, 256).unwrap();
        // A kernel with slots 273.. and the LDT slot 272 in use, 256 empty.
        let kernel = |slot: usize| {
            if slot >= 272 {
                (0x1000 * slot as u64) | 0x63
            } else {
                0
            }
        };
        merge_kernel_half(&mut s, root, kernel, Some(272)).unwrap();
        assert_eq!(s.read_entry(root, 256).unwrap(), ours);
        assert_eq!(s.read_entry(root, 272).unwrap(), 0);
        for slot in 273..512 {
            assert_eq!(s.read_entry(root, slot).unwrap(), kernel(slot));
        }
        for slot in 0..256 {
            assert_eq!(s.read_entry(root, slot).unwrap(), 0);
        }
    }

    #[test]
    fn kernel_slot_in_use() {
        let (mut s, root) = space();
        map_entry_blocks(&mut s, root, &list("0xffff888000000000:511"), BLOCK).unwrap();
        let kernel = |slot: usize| if slot >= 273 { 0x63 } else { 0 };
        assert_eq!(
            merge_kernel_half(&mut s, root, kernel, Some(272)),
            Err(MapError::SlotInUse(273))
        );
        let (mut s, root) = space();
        map_entry_blocks(&mut s, root, &list("0xffff880000002000:511"), BLOCK).unwrap();
        assert_eq!(
            merge_kernel_half(&mut s, root, |_| 0, Some(272)),
            Err(MapError::SlotInUse(272))
        );
    }
}
