// SPDX-License-Identifier: GPL-2.0
//! Software walkers: the EPT (SDM Vol. 3C, "EPT translation mechanism") and x86-64 paging
//! (4 and 5 levels) with every table read through the EPT, and enumerators of all EPT
//! entries, all guest leaves and all leaves reachable from a CR3.
//!
//! They decode raw entries themselves (no builder helper), read memory only through
//! [`Frames::read_entry`], never allocate, and bound the work they do on a malformed tree
//! (a table visited too often, a loop) by reporting a [`Violation`].

use super::super::addr::{entry_span, table_index, Hpa, PAGE_MASK, PAGE_SIZE};
use super::super::ept::EPT_GPA_LIMIT as GPA_WALKED;
use super::super::frame::{Frames, ENTRIES_PER_TABLE};
use super::{Span, ViewRoots, Violation};

/// Address bits 51:12 of an EPT or paging-structure entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

const EPT_R: u64 = 1 << 0;
const EPT_W: u64 = 1 << 1;
const EPT_X: u64 = 1 << 2;
const EPT_LARGE: u64 = 1 << 7;
const EPT_IGNORE_PAT: u64 = 1 << 6;
const EPT_UX: u64 = 1 << 10;
const EPT_SVE: u64 = 1 << 63;
const PTE_P: u64 = 1 << 0;
const PTE_W: u64 = 1 << 1;
const PTE_U: u64 = 1 << 2;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;
const PTE_G: u64 = 1 << 8;
const PTE_NX: u64 = 1 << 63;

/// Most EPT tables an enumeration visits before it reports a malformed tree.
pub const MAX_EPT_TABLES: usize = 1 << 16;
/// Most guest tables an enumeration visits before it reports a malformed tree.
pub const MAX_GUEST_TABLES: usize = 1 << 14;

/// Effective EPT permissions of a translation (ANDed along the walk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptPerms {
    /// Read.
    pub read: bool,
    /// Write.
    pub write: bool,
    /// Supervisor-mode execute (bit 2).
    pub exec: bool,
    /// User-mode execute (bit 10; only meaningful with MBEC).
    pub user_exec: bool,
}

/// A successful EPT translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptLeaf {
    /// The host-physical address of the GPA.
    pub hpa: u64,
    /// Effective permissions.
    pub perms: EptPerms,
    /// Leaf size in bytes.
    pub size: u64,
    /// Memory type (bits 5:3 of the leaf).
    pub mem_type: u64,
    /// Ignore PAT (bit 6).
    pub ignore_pat: bool,
    /// Suppress #VE (bit 63).
    pub suppress_ve: bool,
}

/// Why an EPT walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptFault {
    /// A not-present entry (EPT violation).
    NotPresent {
        /// Level of the entry (4 = PML4).
        level: u8,
        /// The entry.
        entry: u64,
    },
    /// A misconfigured entry (EPT misconfiguration).
    Misconfig {
        /// Level of the entry.
        level: u8,
        /// The entry.
        entry: u64,
    },
    /// The GPA is beyond what any CPU's physical-address width allows (2^52).
    TooLarge,
    /// The EPTP does not select a 4-level walk (the walker models 4-level EPT only).
    BadEptp,
    /// A table of the walk is not a frame of the store.
    Unreadable {
        /// Level of the table.
        level: u8,
        /// Its host-physical address.
        table: u64,
    },
}

fn read<F: Frames + ?Sized>(frames: &F, table: u64, index: usize) -> Option<u64> {
    frames.read_entry(Hpa(table & ADDR_MASK), index).ok()
}

/// Where the last entry of an EPT walk is: the leaf, or the entry that stopped the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptSlot {
    /// The table holding it.
    pub table: Hpa,
    /// Its index in the table.
    pub index: usize,
    /// The table's level (4 = PML4).
    pub level: u8,
    /// The entry.
    pub entry: u64,
}

/// Walks `gpa` through the EPT whose EPTP is `eptp`.
pub fn ept_walk<F: Frames + ?Sized>(frames: &F, eptp: u64, gpa: u64) -> Result<EptLeaf, EptFault> {
    walk_ept(frames, eptp, gpa).0
}

/// The slot of the entry that decides `gpa` in the EPT of `eptp` (its leaf, or the entry
/// that made the walk fail), for tools and tests that change one entry.
///
/// # Errors
///
/// The walk's fault when it stopped before reading any entry.
pub fn ept_slot<F: Frames + ?Sized>(frames: &F, eptp: u64, gpa: u64) -> Result<EptSlot, EptFault> {
    match walk_ept(frames, eptp, gpa) {
        (_, Some(slot)) => Ok(slot),
        (Err(fault), None) => Err(fault),
        (Ok(_), None) => Err(EptFault::BadEptp),
    }
}

fn walk_ept<F: Frames + ?Sized>(
    frames: &F,
    eptp: u64,
    gpa: u64,
) -> (Result<EptLeaf, EptFault>, Option<EptSlot>) {
    if (eptp >> 3) & 7 != 3 {
        return (Err(EptFault::BadEptp), None);
    }
    // A 4-level walk reads bits 47:0 only. On a CPU with 52 physical-address bits a GPA
    // (a guest's CR3 above all) may have bits 51:48 set: the walk ignores them, so the
    // walker does too, the worst case for isolation (aliases of trusted GPAs).
    if gpa >> 52 != 0 {
        return (Err(EptFault::TooLarge), None);
    }
    let gpa = gpa & (GPA_WALKED - 1);
    let mut table = eptp & ADDR_MASK;
    let mut perms = EptPerms {
        read: true,
        write: true,
        exec: true,
        user_exec: true,
    };
    for level in (1..=4u8).rev() {
        let index = table_index(gpa, level);
        let Some(entry) = read(frames, table, index) else {
            return (Err(EptFault::Unreadable { level, table }), None);
        };
        let slot = Some(EptSlot {
            table: Hpa(table),
            index,
            level,
            entry,
        });
        let (r, w, x) = (entry & EPT_R != 0, entry & EPT_W != 0, entry & EPT_X != 0);
        if !r && !w && !x {
            return (Err(EptFault::NotPresent { level, entry }), slot);
        }
        // Write without read is a misconfiguration; so is a reserved memory type on a leaf,
        // and bit 7 on a PML4E; bits 51:M are assumed zero-checked by the caller.
        if w && !r {
            return (Err(EptFault::Misconfig { level, entry }), slot);
        }
        perms.read &= r;
        perms.write &= w;
        perms.exec &= x;
        perms.user_exec &= entry & EPT_UX != 0;
        if level == 4 && entry & EPT_LARGE != 0 {
            return (Err(EptFault::Misconfig { level, entry }), slot);
        }
        let leaf = level == 1 || ((level == 2 || level == 3) && entry & EPT_LARGE != 0);
        if leaf {
            let mem_type = (entry >> 3) & 7;
            if matches!(mem_type, 2 | 3 | 7) {
                return (Err(EptFault::Misconfig { level, entry }), slot);
            }
            let size = entry_span(level);
            let offset = size.wrapping_sub(1);
            // A large leaf's address bits below its size are reserved (SDM 29.3.3.1).
            if entry & ADDR_MASK & offset != 0 {
                return (Err(EptFault::Misconfig { level, entry }), slot);
            }
            let leaf = EptLeaf {
                hpa: (entry & ADDR_MASK & !offset) | (gpa & offset),
                perms,
                size,
                mem_type,
                ignore_pat: entry & EPT_IGNORE_PAT != 0,
                suppress_ve: entry & EPT_SVE != 0,
            };
            return (Ok(leaf), slot);
        }
        table = entry & ADDR_MASK;
    }
    (Err(EptFault::BadEptp), None)
}

/// One entry found by [`for_each_ept_entry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptEntry {
    /// A leaf outside the APT chain.
    Leaf {
        /// First GPA.
        gpa: u64,
        /// Bytes covered.
        size: u64,
        /// The entry.
        entry: u64,
    },
    /// A non-present entry that is not zero (elisa's holes).
    Hole {
        /// First GPA.
        gpa: u64,
        /// Bytes covered.
        size: u64,
        /// The entry.
        entry: u64,
    },
    /// A zero entry (there is none in a view).
    Empty {
        /// First GPA.
        gpa: u64,
        /// Bytes covered.
        size: u64,
    },
    /// An entry into the APT chain, or a level-1 leaf to the APT frame.
    Apt {
        /// First GPA.
        gpa: u64,
        /// Bytes covered.
        size: u64,
    },
}

impl EptEntry {
    /// `(first GPA, bytes covered)`.
    pub fn range(&self) -> (u64, u64) {
        match *self {
            EptEntry::Leaf { gpa, size, .. }
            | EptEntry::Hole { gpa, size, .. }
            | EptEntry::Empty { gpa, size }
            | EptEntry::Apt { gpa, size } => (gpa, size),
        }
    }
}

/// Visits every entry of the EPT of `roots`, from the root table, in GPA order. Entries into
/// the APT chain (and level-1 leaves to the APT frame) are reported as [`EptEntry::Apt`]
/// and not followed.
///
/// # Errors
///
/// A [`Violation`] when a table is not in `frames` or more than [`MAX_EPT_TABLES`] tables are
/// visited; otherwise the first error of `visit`.
pub fn for_each_ept_entry<F: Frames + ?Sized>(
    frames: &F,
    roots: &ViewRoots,
    visit: &mut dyn FnMut(EptEntry) -> Result<(), Violation>,
) -> Result<(), Violation> {
    let mut tables = 0usize;
    ept_table(
        frames,
        roots,
        roots.eptp & ADDR_MASK,
        4,
        0,
        &mut tables,
        visit,
    )
}

fn ept_table<F: Frames + ?Sized>(
    frames: &F,
    roots: &ViewRoots,
    table: u64,
    level: u8,
    base: u64,
    tables: &mut usize,
    visit: &mut dyn FnMut(EptEntry) -> Result<(), Violation>,
) -> Result<(), Violation> {
    *tables = tables.saturating_add(1);
    if *tables > MAX_EPT_TABLES {
        return Err(Violation::new(
            "more EPT tables than any view has",
            table,
            0,
        ));
    }
    let span = entry_span(level);
    for index in 0..ENTRIES_PER_TABLE {
        let gpa = base.wrapping_add((index as u64).wrapping_mul(span));
        let entry = read(frames, table, index).ok_or(Violation::new(
            "EPT table not in the frames",
            table,
            gpa,
        ))?;
        if entry & (EPT_R | EPT_W | EPT_X) == 0 {
            visit(if entry == 0 {
                EptEntry::Empty { gpa, size: span }
            } else {
                EptEntry::Hole {
                    gpa,
                    size: span,
                    entry,
                }
            })?;
            continue;
        }
        let next = entry & ADDR_MASK;
        let leaf = level == 1 || (level <= 3 && entry & EPT_LARGE != 0);
        if leaf {
            if level == 1 && next == roots.apt_frame.0 {
                visit(EptEntry::Apt { gpa, size: span })?;
            } else {
                visit(EptEntry::Leaf {
                    gpa,
                    size: span,
                    entry,
                })?;
            }
        } else if roots.apt_chain.iter().any(|c| c.0 == next) {
            visit(EptEntry::Apt { gpa, size: span })?;
        } else {
            ept_table(
                frames,
                roots,
                next,
                level.wrapping_sub(1),
                gpa,
                tables,
                visit,
            )?;
        }
    }
    Ok(())
}

/// A guest translation with the final EPT permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The GPA of the GVA.
    pub gpa: u64,
    /// The HPA of the GVA.
    pub hpa: u64,
    /// Guest page size.
    pub size: u64,
    /// Writable (AND of the R/W bits along the walk).
    pub writable: bool,
    /// User (AND of the U/S bits).
    pub user: bool,
    /// No-execute (OR of the XD bits).
    pub nx: bool,
    /// Global (the leaf's G bit).
    pub global: bool,
    /// EPT permissions of the final GPA.
    pub ept: EptPerms,
}

impl Translation {
    /// Whether user-mode code can fetch from it (with or without MBEC).
    pub fn executable(&self, mbec: bool) -> bool {
        !self.nx
            && if mbec {
                self.ept.user_exec
            } else {
                self.ept.exec
            }
    }
}

/// Why a guest walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// #PF in the guest (not present or reserved bit).
    PageFault,
    /// The EPT refused a paging-structure access or the final GPA.
    Ept(EptFault),
    /// A paging-structure read lacked EPT read permission (or write, with EPT A/D on).
    EptPermission {
        /// The table's GPA.
        gpa: u64,
    },
    /// A paging-structure frame is not in the store.
    Unreadable {
        /// The frame.
        hpa: u64,
    },
}

/// Walks `gva` from `cr3` with `levels` (4 or 5) levels, reading tables through the EPT.
///
/// With `ept_ad`, paging-structure accesses count as writes for EPT purposes.
pub fn guest_walk<F: Frames + ?Sized>(
    frames: &F,
    eptp: u64,
    levels: u8,
    cr3: u64,
    gva: u64,
    ept_ad: bool,
) -> Result<Translation, WalkFault> {
    let mut table_gpa = cr3 & ADDR_MASK;
    let (mut writable, mut user, mut nx) = (true, true, false);
    for level in (1..=levels.min(5)).rev() {
        let t = ept_walk(frames, eptp, table_gpa).map_err(WalkFault::Ept)?;
        if !t.perms.read || (ept_ad && !t.perms.write) {
            return Err(WalkFault::EptPermission { gpa: table_gpa });
        }
        let frame = t.hpa & !PAGE_MASK;
        let entry = read(frames, frame, table_index(gva, level))
            .ok_or(WalkFault::Unreadable { hpa: frame })?;
        if entry & PTE_P == 0 {
            return Err(WalkFault::PageFault);
        }
        writable &= entry & PTE_W != 0;
        user &= entry & PTE_U != 0;
        nx |= entry & PTE_NX != 0;
        let ps = entry & PTE_PS != 0;
        if ps && level >= 4 {
            return Err(WalkFault::PageFault); // reserved bit
        }
        if level == 1 || ps {
            let size = entry_span(level);
            let offset = size.wrapping_sub(1);
            let gpa = (entry & ADDR_MASK & !offset) | (gva & offset);
            if size > PAGE_SIZE && entry & ADDR_MASK & offset & !PAGE_SIZE != 0 {
                return Err(WalkFault::PageFault); // reserved bits in a large-page address
            }
            let leaf = ept_walk(frames, eptp, gpa).map_err(WalkFault::Ept)?;
            return Ok(Translation {
                gpa,
                hpa: leaf.hpa,
                size,
                writable,
                user,
                nx,
                global: entry & PTE_G != 0,
                ept: leaf.perms,
            });
        }
        table_gpa = entry & ADDR_MASK;
    }
    Err(WalkFault::PageFault)
}

/// One guest leaf found by [`for_each_guest_leaf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestLeaf {
    /// First GVA, not sign-extended (see [`canonical`]).
    pub gva: u64,
    /// Bytes covered.
    pub size: u64,
    /// The entry.
    pub entry: u64,
}

/// Visits every leaf reachable from the root frame `root` (read directly), following child
/// tables through the EPT of `eptp`.
///
/// # Errors
///
/// A [`Violation`] when a child table does not translate, a frame is not in `frames`, or more
/// than [`MAX_GUEST_TABLES`] tables are visited; otherwise the first error of `visit`.
pub fn for_each_guest_leaf<F: Frames + ?Sized>(
    frames: &F,
    eptp: u64,
    levels: u8,
    root: u64,
    visit: &mut dyn FnMut(GuestLeaf) -> Result<(), Violation>,
) -> Result<(), Violation> {
    let mut tables = 0usize;
    guest_table(frames, eptp, root, levels.min(5), 0, &mut tables, visit)
}

fn guest_table<F: Frames + ?Sized>(
    frames: &F,
    eptp: u64,
    frame: u64,
    level: u8,
    base: u64,
    tables: &mut usize,
    visit: &mut dyn FnMut(GuestLeaf) -> Result<(), Violation>,
) -> Result<(), Violation> {
    *tables = tables.saturating_add(1);
    if *tables > MAX_GUEST_TABLES {
        return Err(Violation::new(
            "more guest tables than any view has",
            frame,
            0,
        ));
    }
    let span = entry_span(level);
    for index in 0..ENTRIES_PER_TABLE {
        let entry = read(frames, frame, index).ok_or(Violation::new(
            "guest table not in the frames",
            frame,
            0,
        ))?;
        if entry & PTE_P == 0 {
            continue;
        }
        let gva = base.wrapping_add((index as u64).wrapping_mul(span));
        // The CPU sets A in every entry a walk uses, and D in a leaf it writes through:
        // writes into trusted tables, which the views map read-only (an EPT violation at
        // every call), or, with EPT A/D on, writes that succeed. So every trusted entry
        // has A, a writable leaf has D, and a read-only one has not (W = 0 with D = 1
        // would be a shadow-stack page: security.rst, CET).
        let leaf = level <= 1 || entry & PTE_PS != 0;
        if entry & PTE_A == 0 {
            return Err(Violation::new(
                "trusted guest entry without A (the CPU would write it)",
                gva,
                entry,
            ));
        }
        if leaf && (entry & PTE_D != 0) != (entry & PTE_W != 0) {
            return Err(Violation::new(
                "trusted guest leaf with D not equal to W (a write of D, or a shadow-stack page)",
                gva,
                entry,
            ));
        }
        // A table entry restricts nothing (W, U set, NX clear): the leaves' W, U and NX
        // are then the effective ones, which the checks of the leaves rely on (a user
        // grant's leaf with U under a table entry without it would be a supervisor page).
        if !leaf && (entry & (PTE_W | PTE_U) != PTE_W | PTE_U || entry & PTE_NX != 0) {
            return Err(Violation::new(
                "trusted guest table entry restricts its leaves (W or U clear, or NX set)",
                gva,
                entry,
            ));
        }
        if leaf {
            visit(GuestLeaf {
                gva,
                size: span,
                entry,
            })?;
        } else {
            let child = ept_walk(frames, eptp, entry & ADDR_MASK).map_err(|_| {
                Violation::new(
                    "guest table not mapped in the EPT",
                    entry & ADDR_MASK,
                    entry,
                )
            })?;
            guest_table(
                frames,
                eptp,
                child.hpa & !PAGE_MASK,
                level.wrapping_sub(1),
                gva,
                tables,
                visit,
            )?;
        }
    }
    Ok(())
}

/// Sign-extends a linear address of `levels` levels (other values: left as is).
pub fn canonical(gva: u64, levels: u8) -> u64 {
    let shift: u32 = match levels {
        4 => 16,
        5 => 7,
        _ => return gva,
    };
    ((gva.wrapping_shl(shift) as i64).wrapping_shr(shift)) as u64
}

/// Visits every guest leaf (as `(gpa, size)`) reachable by any walk that starts at `cr3`,
/// reading each table through the EPT with the CPU's permission checks. Each (frame, level)
/// is visited once, which `memo` records (its length bounds the tables visited), so loops
/// through the APT end.
///
/// # Errors
///
/// A [`Violation`] when a readable table is not in `frames` or `memo` is full; otherwise
/// the first error of `visit`.
pub fn for_each_reachable_leaf<F: Frames + ?Sized>(
    frames: &F,
    eptp: u64,
    levels: u8,
    cr3: u64,
    ept_ad: bool,
    memo: &mut [Span],
    visit: &mut dyn FnMut(u64, u64) -> Result<(), Violation>,
) -> Result<(), Violation> {
    let mut used = 0usize;
    reach(
        frames,
        eptp,
        cr3 & ADDR_MASK,
        levels.min(5),
        ept_ad,
        memo,
        &mut used,
        visit,
    )
}

#[allow(clippy::too_many_arguments)]
fn reach<F: Frames + ?Sized>(
    frames: &F,
    eptp: u64,
    table_gpa: u64,
    level: u8,
    ept_ad: bool,
    memo: &mut [Span],
    used: &mut usize,
    visit: &mut dyn FnMut(u64, u64) -> Result<(), Violation>,
) -> Result<(), Violation> {
    let Ok(t) = ept_walk(frames, eptp, table_gpa) else {
        return Ok(());
    };
    if !t.perms.read || (ept_ad && !t.perms.write) {
        return Ok(());
    }
    let frame = t.hpa & !PAGE_MASK;
    let key = Span {
        start: frame,
        len: u64::from(level),
        tag: 0,
    };
    let seen = memo.get(..*used).unwrap_or(&[]);
    if seen.contains(&key) {
        return Ok(());
    }
    let slot = memo.get_mut(*used).ok_or(Violation::new(
        "more page-table frames reachable than the check can track",
        frame,
        u64::from(level),
    ))?;
    *slot = key;
    *used = used.saturating_add(1);
    for index in 0..ENTRIES_PER_TABLE {
        let entry = read(frames, frame, index).ok_or(Violation::new(
            "frame mapped readable but not in the frames",
            frame,
            table_gpa,
        ))?;
        if entry & PTE_P == 0 {
            continue;
        }
        let ps = entry & PTE_PS != 0;
        if ps && level >= 4 {
            continue;
        }
        if level <= 1 || ps {
            let size = entry_span(level);
            let offset = size.wrapping_sub(1);
            if size > PAGE_SIZE && entry & ADDR_MASK & offset & !PAGE_SIZE != 0 {
                continue;
            }
            visit(entry & ADDR_MASK & !offset, size)?;
        } else {
            reach(
                frames,
                eptp,
                entry & ADDR_MASK,
                level.wrapping_sub(1),
                ept_ad,
                memo,
                used,
                visit,
            )?;
        }
    }
    Ok(())
}

/// Whether an EPT entry allows execution (bit 2, or bit 10 with MBEC).
pub const fn ept_executable(entry: u64) -> bool {
    entry & (EPT_X | EPT_UX) != 0
}

/// Whether an EPT entry allows writes.
pub const fn ept_writable(entry: u64) -> bool {
    entry & EPT_W != 0
}

/// Guest-entry bits the checks compare: W (bit 1) and XD (bit 63).
pub const GUEST_W_NX: u64 = PTE_W | PTE_NX;
/// Present and user (bits 0 and 2).
pub const GUEST_P_U: u64 = PTE_P | PTE_U;
/// The global bit (8).
pub const GUEST_GLOBAL: u64 = PTE_G;
/// Bits of a guest leaf that elisa leaves 0: PWT and PCD (3, 4: another memory type) and
/// the protection key (62:59: with CR4.PKE, PKRU, which the guest sets, would govern the
/// access; user grants rely on key 0, `security.rst`).
pub const GUEST_PWT_PCD_PK: u64 = (1 << 3) | (1 << 4) | (0xf << 59);
/// EPT ignore-PAT and suppress-#VE, which every elisa leaf has.
pub const LEAF_PAT_VE: u64 = EPT_IGNORE_PAT | EPT_SVE;
/// EPT user-execute (bit 10).
pub const LEAF_USER_EXEC: u64 = EPT_UX;
