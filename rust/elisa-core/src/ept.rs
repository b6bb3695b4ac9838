// SPDX-License-Identifier: GPL-2.0
//! 4-level EPT hierarchies: leaves of 4 KiB, 2 MiB and 1 GiB, holes, and the APT fill.
//!
//! An [`Ept`] is built into frames from a [`Frames`] store. Each leaf has a memory type and
//! one of the permission sets of [`EptPerm`]; there is no read-write-execute set, so W^X holds
//! for every EPT this module can build. What the CPU can do is described by [`EptCaps`]
//! (read from `IA32_VMX_EPT_VPID_CAP`), and what elisa wants by [`EptConfig`]:
//!
//! - execute-only leaves are refused unless the CPU supports them (R13);
//! - with mode-based execute control (MBEC) every executable entry also gets bit 10
//!   (user-mode execute), as KVM does, or guest user-mode fetches would fault;
//! - the accessed/dirty policy (EPTP bit 6) is a choice, checked against the capability;
//! - 2 MiB and 1 GiB leaves need their capability bits.
//!
//! Besides leaves, an EPT built here knows two kinds of entries that are not plain "empty":
//!
//! - **fill entries** (see [`apt`](super::apt)): when an EPT is created with an APT fill,
//!   every empty entry at every level points into a shared chain that ends at the APT frame.
//!   The builder treats a fill entry as free: mapping over it replaces it, and a new table is
//!   created pre-filled, so "every GPA not mapped explicitly reaches the APT" holds at every
//!   step of the build, not only at the end;
//! - **holes** ([`EPT_HOLE`]): explicitly non-present entries. An access through one is an
//!   EPT violation (a VM exit), which is what elisa wants for trusted GPAs that belong to the
//!   other view (see [`layout`](super::layout) for why).
//!
//! On any error the EPT may be partly built; the caller discards it (and its frames).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::addr::{entry_span, table_index, Gpa, Hpa, PageSize};
use super::apt::AptFill;
use super::eptp::Eptp;
use super::error::Error;
use super::frame::{Frames, ENTRIES_PER_TABLE};

/// Number of levels of the EPT walks elisa builds (EPTP walk length 4).
pub const EPT_LEVELS: u8 = 4;
/// Guest-physical addresses a 4-level EPT can translate: below 2^48.
pub const EPT_GPA_LIMIT: u64 = 1 << 48;
/// Host-physical addresses an EPT entry can hold: below 2^52.
pub const HPA_LIMIT: u64 = 1 << 52;

/// EPT entry bit 0: read access.
pub const EPT_READ: u64 = 1 << 0;
/// EPT entry bit 1: write access.
pub const EPT_WRITE: u64 = 1 << 1;
/// EPT entry bit 2: execute access (supervisor-mode execute when MBEC is on).
pub const EPT_EXEC: u64 = 1 << 2;
/// Shift of the memory-type field (bits 5:3) of a leaf.
pub const EPT_MEMTYPE_SHIFT: u32 = 3;
/// Leaf bit 6: ignore the guest PAT, use the EPT memory type as is.
pub const EPT_IGNORE_PAT: u64 = 1 << 6;
/// Bit 7 of a level-2 or level-3 entry: this entry is a (2 MiB or 1 GiB) leaf.
pub const EPT_LEAF: u64 = 1 << 7;
/// Bit 8: accessed (set by the CPU when A/D is enabled).
pub const EPT_ACCESSED: u64 = 1 << 8;
/// Bit 9 of a leaf: dirty (set by the CPU when A/D is enabled).
pub const EPT_DIRTY: u64 = 1 << 9;
/// Bit 10: user-mode execute under MBEC.
pub const EPT_USER_EXEC: u64 = 1 << 10;
/// Bit 11 is ignored by the CPU in every EPT entry; elisa uses it to mark holes.
pub const EPT_SOFT_HOLE: u64 = 1 << 11;
/// Bit 63: suppress #VE, so that violations always exit to the host.
pub const EPT_SUPPRESS_VE: u64 = 1 << 63;
/// Bits 51:12 of an entry: the address of the next table or of the leaf frame.
pub const EPT_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// The value of a hole: not present (bits 2:0 clear), #VE suppressed, marked by bit 11.
pub const EPT_HOLE: u64 = EPT_SUPPRESS_VE | EPT_SOFT_HOLE;

/// Bits the CPU may set in an entry after the build (A/D); ignored when comparing entries.
const CPU_OWNED: u64 = EPT_ACCESSED | EPT_DIRTY;

/// An EPT memory type (the leaf field, bits 5:3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemType {
    /// Uncacheable (0).
    Uncacheable,
    /// Write-combining (1).
    WriteCombining,
    /// Write-through (4).
    WriteThrough,
    /// Write-protected (5).
    WriteProtected,
    /// Write-back (6), what all of elisa's own pages use.
    WriteBack,
}

impl MemType {
    /// The 3-bit encoding.
    pub const fn bits(self) -> u64 {
        match self {
            MemType::Uncacheable => 0,
            MemType::WriteCombining => 1,
            MemType::WriteThrough => 4,
            MemType::WriteProtected => 5,
            MemType::WriteBack => 6,
        }
    }

    /// Decodes a 3-bit field; `None` for the reserved encodings 2, 3 and 7.
    pub const fn from_bits(bits: u64) -> Option<MemType> {
        match bits {
            0 => Some(MemType::Uncacheable),
            1 => Some(MemType::WriteCombining),
            4 => Some(MemType::WriteThrough),
            5 => Some(MemType::WriteProtected),
            6 => Some(MemType::WriteBack),
            _ => None,
        }
    }
}

/// The permission sets an EPT leaf may have.
///
/// Write-only and write-execute are EPT misconfigurations and read-write-execute would break
/// W^X, so none of them can be expressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EptPerm {
    /// R.
    ReadOnly,
    /// R and W.
    ReadWrite,
    /// X only: the CPU can fetch instructions but not read data. Needs
    /// [`EptCaps::execute_only`].
    ExecuteOnly,
    /// R and X.
    ReadExecute,
}

impl EptPerm {
    /// The R/W/X bits (2:0) of this set.
    pub const fn bits(self) -> u64 {
        match self {
            EptPerm::ReadOnly => EPT_READ,
            EptPerm::ReadWrite => EPT_READ | EPT_WRITE,
            EptPerm::ExecuteOnly => EPT_EXEC,
            EptPerm::ReadExecute => EPT_READ | EPT_EXEC,
        }
    }

    /// Whether the set allows instruction fetch.
    pub const fn executable(self) -> bool {
        matches!(self, EptPerm::ExecuteOnly | EptPerm::ReadExecute)
    }

    /// Whether the set allows writes.
    pub const fn writable(self) -> bool {
        matches!(self, EptPerm::ReadWrite)
    }
}

/// What the CPU's EPT supports, from the `IA32_VMX_EPT_VPID_CAP` MSR (0x48C).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EptCaps {
    /// Bit 0: execute-only translations.
    pub execute_only: bool,
    /// Bit 6: page-walk length 4.
    pub walk_length_4: bool,
    /// Bit 14: write-back EPT paging structures.
    pub write_back: bool,
    /// Bit 16: 2 MiB leaves.
    pub huge_2m: bool,
    /// Bit 17: 1 GiB leaves.
    pub huge_1g: bool,
    /// Bit 21: accessed and dirty flags.
    pub accessed_dirty: bool,
}

impl EptCaps {
    /// Decodes the `IA32_VMX_EPT_VPID_CAP` MSR value.
    ///
    /// # Examples
    ///
    /// ```
    /// use elisa_core::ept::EptCaps;
    ///
    /// // A Haswell-like value: execute-only, walk 4, WB, 2M, 1G, A/D.
    /// let caps = EptCaps::from_msr(0x0f0106734141);
    /// assert!(caps.execute_only && caps.huge_1g && caps.accessed_dirty);
    /// assert!(!EptCaps::from_msr(0).execute_only);
    /// ```
    pub const fn from_msr(msr: u64) -> Self {
        Self {
            execute_only: msr & (1 << 0) != 0,
            walk_length_4: msr & (1 << 6) != 0,
            write_back: msr & (1 << 14) != 0,
            huge_2m: msr & (1 << 16) != 0,
            huge_1g: msr & (1 << 17) != 0,
            accessed_dirty: msr & (1 << 21) != 0,
        }
    }

    /// Every capability elisa can use (for tests and examples).
    pub const fn all() -> Self {
        Self {
            execute_only: true,
            walk_length_4: true,
            write_back: true,
            huge_2m: true,
            huge_1g: true,
            accessed_dirty: true,
        }
    }
}

/// The EPT policy for elisa's views, together with the capabilities it was checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptConfig {
    /// What the CPU supports.
    pub caps: EptCaps,
    /// EPT accessed/dirty flags (EPTP bit 6): must be `false` ([`EptConfig::validate`]).
    /// The builders and checks still know the A/D layout of tables, for the dump format
    /// and for reading what a CPU did.
    pub accessed_dirty: bool,
    /// Mode-based execute control is on: set bit 10 with bit 2 on executable entries.
    pub mbec: bool,
    /// Set bit 63 (suppress #VE) on leaves and holes, so violations always exit.
    pub suppress_ve: bool,
    /// Set bit 6 (ignore PAT) on leaves, so the guest's PAT cannot change the memory type.
    pub ignore_pat: bool,
}

impl EptConfig {
    /// The recommended policy for `caps`: A/D off, #VE suppressed, guest PAT ignored;
    /// `mbec` as the host runs KVM.
    ///
    /// A/D is off because nothing reads the views' A/D flags, and with them on (1) the
    /// CPU writes into elisa's tables and needs the page-table pages and the APT
    /// EPT-writable, and (2) page-modification logging, which KVM turns on for dirty
    /// logging (live migration), logs every page a service writes and ends excursions with
    /// PML-full exits: PML logs only under an EPTP with A/D enabled.
    pub const fn recommended(caps: EptCaps, mbec: bool) -> Self {
        Self {
            caps,
            accessed_dirty: false,
            mbec,
            suppress_ve: true,
            ignore_pat: true,
        }
    }

    /// Checks the policy against the capabilities.
    ///
    /// # Errors
    ///
    /// [`Error::EptUnsupported`] without a 4-level walk or write-back paging structures;
    /// [`Error::AccessedDirtyRefused`] if A/D is requested, whatever the CPU supports.
    ///
    /// Views never run with EPT A/D. Under A/D the CPU takes every read of a guest
    /// paging structure for a write, so the trusted page tables and the APT would have to
    /// be EPT-writable, and a walk from a `CR3` that names a trusted page (the gate stack,
    /// whose flags slot holds an image of the guest's RFLAGS that reads as a present
    /// entry) can take a trusted table for a table one level lower, and so map a trusted
    /// table as a writable page (a walk does not know which level a table was built for):
    /// the gate's own stores would then write into it. Read-only, such a store is an EPT
    /// violation, and the run ends (`gate-protocol.rst`, "The CR3 check"; found by a
    /// review, with a property test of 64 scenarios that reached a writable trusted table
    /// in 52 with A/D on and in none with it off).
    pub const fn validate(&self) -> Result<(), Error> {
        if !self.caps.walk_length_4 || !self.caps.write_back {
            return Err(Error::EptUnsupported);
        }
        if self.accessed_dirty {
            return Err(Error::AccessedDirtyRefused);
        }
        Ok(())
    }

    /// Checks that a leaf with `perm` and `size` can be built.
    ///
    /// # Errors
    ///
    /// [`Error::ExecuteOnlyUnsupported`] or [`Error::PageSizeUnsupported`].
    pub const fn check_leaf(&self, perm: EptPerm, size: PageSize) -> Result<(), Error> {
        if matches!(perm, EptPerm::ExecuteOnly) && !self.caps.execute_only {
            return Err(Error::ExecuteOnlyUnsupported);
        }
        match size {
            PageSize::Size4K => Ok(()),
            PageSize::Size2M if self.caps.huge_2m => Ok(()),
            PageSize::Size1G if self.caps.huge_1g => Ok(()),
            _ => Err(Error::PageSizeUnsupported),
        }
    }

    /// The entry that points from a table at `level` (2..=4) to the next table.
    ///
    /// Non-leaf entries allow everything (R, W, X and, under MBEC, user-execute); the leaf
    /// decides, since EPT permissions are the AND along the walk.
    pub const fn table_entry(&self, next: Hpa) -> u64 {
        let user = if self.mbec { EPT_USER_EXEC } else { 0 };
        (next.0 & EPT_ADDR_MASK) | EPT_READ | EPT_WRITE | EPT_EXEC | user
    }

    /// The leaf entry mapping `frame` with `perm` and `mem_type` at the level of `size`.
    ///
    /// The caller has checked alignment and [`check_leaf`](Self::check_leaf).
    pub const fn leaf_entry(
        &self,
        frame: Hpa,
        size: PageSize,
        perm: EptPerm,
        mem_type: MemType,
    ) -> u64 {
        let mut entry = (frame.0 & EPT_ADDR_MASK) | perm.bits();
        entry |= mem_type.bits() << EPT_MEMTYPE_SHIFT;
        if self.ignore_pat {
            entry |= EPT_IGNORE_PAT;
        }
        if !matches!(size, PageSize::Size4K) {
            entry |= EPT_LEAF;
        }
        if self.mbec && perm.executable() {
            entry |= EPT_USER_EXEC;
        }
        if self.suppress_ve {
            entry |= EPT_SUPPRESS_VE;
        }
        entry
    }
}

/// What an EPT built here has at a guest-physical address (see [`Ept::lookup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptLookup {
    /// An explicit leaf: the host-physical address of `gpa` itself (page offset included),
    /// the leaf's size and its raw entry.
    Mapped {
        /// Host-physical address of the looked-up byte.
        hpa: Hpa,
        /// Size of the leaf.
        size: PageSize,
        /// The leaf entry.
        entry: u64,
    },
    /// The address reaches the APT through fill entries.
    Apt,
    /// A hole: access is an EPT violation.
    Hole,
    /// Not present (an EPT without fill) or beyond 2^48.
    NotPresent,
}

/// Classification of one entry, as the builder sees it.
enum Slot {
    /// Zero, or the fill entry of its level: may be replaced.
    Free,
    /// Points to a table private to this EPT.
    Table(Hpa),
    /// A leaf or a hole.
    Taken,
}

/// A 4-level EPT under construction (or finished).
///
/// # Invariants
///
/// - `root` is a frame of the [`Frames`] store the EPT was created with, and every table
///   reachable from it through non-fill entries was allocated by this builder;
/// - with `fill`, no entry of any table is zero: each is a fill entry, a table pointer, a
///   leaf or a hole.
///
/// # Examples
///
/// ```
/// use elisa_core::addr::{Gpa, Hpa, PageSize};
/// use elisa_core::ept::{Ept, EptCaps, EptConfig, EptLookup, EptPerm, MemType};
/// use elisa_core::frame::ArrayFrames;
///
/// let cfg = EptConfig::recommended(EptCaps::all(), false);
/// let mut frames = ArrayFrames::<8>::new(Hpa(0x100_0000));
/// let mut ept = Ept::new(&mut frames, cfg)?;
/// ept.map(&mut frames, Gpa(0x4000_0000), Hpa(0x8000_0000), PageSize::Size2M,
///         EptPerm::ReadWrite, MemType::WriteBack)?;
/// // Overlapping or misaligned requests are errors, not panics.
/// assert!(ept.map(&mut frames, Gpa(0x4010_0000), Hpa(0x9000_0000), PageSize::Size4K,
///                 EptPerm::ReadOnly, MemType::WriteBack).is_err());
/// assert!(ept.map(&mut frames, Gpa(0x1000), Hpa(0x1234), PageSize::Size4K,
///                 EptPerm::ReadOnly, MemType::WriteBack).is_err());
/// assert!(matches!(ept.lookup(&frames, Gpa(0x4000_1234))?,
///                  EptLookup::Mapped { hpa: Hpa(0x8000_1234), .. }));
/// assert_eq!(ept.eptp().raw() & 0xff, 0x1e); // WB, walk length 4, A/D off
/// # Ok::<(), elisa_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Ept {
    root: Hpa,
    cfg: EptConfig,
    fill: Option<AptFill>,
}

impl Ept {
    /// Creates an empty EPT (every entry not present).
    ///
    /// # Errors
    ///
    /// Errors of [`EptConfig::validate`] and of the frame store.
    pub fn new<F: Frames + ?Sized>(frames: &mut F, cfg: EptConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let root = frames.alloc_zeroed()?;
        Ok(Self {
            root,
            cfg,
            fill: None,
        })
    }

    /// Creates an EPT whose every empty entry, at every level, is the fill entry of `fill`, so
    /// that every GPA below 2^48 reaches the APT until it is mapped explicitly.
    ///
    /// # Errors
    ///
    /// Errors of [`EptConfig::validate`] and of the frame store.
    pub fn with_fill<F: Frames + ?Sized>(
        frames: &mut F,
        cfg: EptConfig,
        fill: AptFill,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let root = new_table(frames, Some(&fill), EPT_LEVELS)?;
        Ok(Self {
            root,
            cfg,
            fill: Some(fill),
        })
    }

    /// The host-physical address of the root (PML4) table.
    pub fn root(&self) -> Hpa {
        self.root
    }

    /// The configuration the EPT was built with.
    pub fn config(&self) -> &EptConfig {
        &self.cfg
    }

    /// The APT fill, if the EPT has one.
    pub fn fill(&self) -> Option<&AptFill> {
        self.fill.as_ref()
    }

    /// The EPTP value for this EPT: write-back, walk length 4, A/D per the configuration.
    pub fn eptp(&self) -> Eptp {
        Eptp::for_root(self.root, self.cfg.accessed_dirty)
    }

    /// Maps the page of `size` at `gpa` to the frame at `hpa`.
    ///
    /// # Errors
    ///
    /// - [`Error::Misaligned`] if `gpa` or `hpa` is not aligned to `size`;
    /// - [`Error::AddressTooLarge`] for a GPA at or above 2^48 or an HPA at or above 2^52;
    /// - [`Error::Overlap`] if any part of the range is already mapped or a hole;
    /// - [`Error::ExecuteOnlyUnsupported`], [`Error::PageSizeUnsupported`] per the capabilities;
    /// - frame store errors.
    pub fn map<F: Frames + ?Sized>(
        &mut self,
        frames: &mut F,
        gpa: Gpa,
        hpa: Hpa,
        size: PageSize,
        perm: EptPerm,
        mem_type: MemType,
    ) -> Result<(), Error> {
        self.cfg.check_leaf(perm, size)?;
        check_leaf_addresses(gpa, hpa, size)?;
        let entry = self.cfg.leaf_entry(hpa, size, perm, mem_type);
        self.set_entry(frames, gpa, size.level(), entry)
    }

    /// Maps `len` bytes of physically contiguous memory at `hpa` to `gpa`, with leaves of
    /// `size`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map), and [`Error::BadSize`] if `len` is zero or not a multiple of
    /// `size`.
    #[allow(clippy::too_many_arguments)]
    pub fn map_range<F: Frames + ?Sized>(
        &mut self,
        frames: &mut F,
        gpa: Gpa,
        hpa: Hpa,
        len: u64,
        size: PageSize,
        perm: EptPerm,
        mem_type: MemType,
    ) -> Result<(), Error> {
        if len == 0 || len & size.mask() != 0 {
            return Err(Error::BadSize);
        }
        check_leaf_addresses(gpa, hpa, size)?;
        gpa.checked_add(len).ok_or(Error::AddressTooLarge)?;
        hpa.checked_add(len).ok_or(Error::AddressTooLarge)?;
        let mut offset = 0u64;
        while offset < len {
            let g = gpa.checked_add(offset).ok_or(Error::AddressTooLarge)?;
            let h = hpa.checked_add(offset).ok_or(Error::AddressTooLarge)?;
            self.map(frames, g, h, size, perm, mem_type)?;
            offset = offset
                .checked_add(size.bytes())
                .ok_or(Error::AddressTooLarge)?;
        }
        Ok(())
    }

    /// Makes every free GPA in `[gpa, gpa + len)` a hole, using the largest entries that fit.
    ///
    /// Explicit leaves and existing holes in the range are left alone, so this is how a view
    /// closes "everything else in the trusted window" after its own pages are mapped.
    ///
    /// # Errors
    ///
    /// [`Error::Misaligned`] unless `gpa` and `len` are 4 KiB multiples,
    /// [`Error::AddressTooLarge`] if the range reaches beyond 2^48, frame store errors.
    pub fn reserve_holes<F: Frames + ?Sized>(
        &mut self,
        frames: &mut F,
        gpa: Gpa,
        len: u64,
    ) -> Result<(), Error> {
        if !gpa.is_aligned(PageSize::Size4K) || len & PageSize::Size4K.mask() != 0 {
            return Err(Error::Misaligned);
        }
        let end = gpa.0.checked_add(len).ok_or(Error::AddressTooLarge)?;
        if end > EPT_GPA_LIMIT {
            return Err(Error::AddressTooLarge);
        }
        if len == 0 {
            return Ok(());
        }
        self.holes_in(frames, self.root, EPT_LEVELS, 0, gpa.0, end)
    }

    fn holes_in<F: Frames + ?Sized>(
        &self,
        frames: &mut F,
        table: Hpa,
        level: u8,
        table_base: u64,
        start: u64,
        end: u64,
    ) -> Result<(), Error> {
        let span = entry_span(level);
        let lower = level.checked_sub(1).ok_or(Error::BadRequest)?;
        for index in 0..ENTRIES_PER_TABLE {
            let idx = u64::try_from(index).map_err(|_| Error::BadRequest)?;
            let base = span
                .checked_mul(idx)
                .and_then(|o| o.checked_add(table_base))
                .ok_or(Error::AddressTooLarge)?;
            let Some(last) = base.checked_add(span.wrapping_sub(1)) else {
                return Err(Error::AddressTooLarge);
            };
            if last < start || base >= end {
                continue;
            }
            let entry = frames.read_entry(table, index)?;
            let covered = base >= start && last < end;
            match self.classify(entry, level) {
                Slot::Taken => {}
                Slot::Free if covered => frames.write_entry(table, index, EPT_HOLE)?,
                Slot::Free => {
                    let next = new_table(frames, self.fill.as_ref(), lower)?;
                    frames.write_entry(table, index, self.cfg.table_entry(next))?;
                    self.holes_in(frames, next, lower, base, start, end)?;
                }
                Slot::Table(next) => self.holes_in(frames, next, lower, base, start, end)?,
            }
        }
        Ok(())
    }

    /// Looks `gpa` up in this EPT's own tables (a software walk of what was built).
    ///
    /// # Errors
    ///
    /// Frame store errors only.
    pub fn lookup<F: Frames + ?Sized>(&self, frames: &F, gpa: Gpa) -> Result<EptLookup, Error> {
        if gpa.0 >= EPT_GPA_LIMIT {
            return Ok(EptLookup::NotPresent);
        }
        let mut table = self.root;
        let mut level = EPT_LEVELS;
        loop {
            let entry = frames.read_entry(table, table_index(gpa.0, level))?;
            if let Some(fill) = &self.fill {
                if fill.matches(level, entry) {
                    return Ok(EptLookup::Apt);
                }
            }
            if entry & (EPT_READ | EPT_WRITE | EPT_EXEC) == 0 {
                return Ok(if entry == EPT_HOLE {
                    EptLookup::Hole
                } else {
                    EptLookup::NotPresent
                });
            }
            let size = PageSize::from_level(level);
            let leaf = level == 1 || (entry & EPT_LEAF != 0 && size.is_some());
            match (leaf, size) {
                (true, Some(size)) => {
                    let hpa = (entry & EPT_ADDR_MASK & !size.mask()) | (gpa.0 & size.mask());
                    return Ok(EptLookup::Mapped {
                        hpa: Hpa(hpa),
                        size,
                        entry,
                    });
                }
                _ => {
                    table = Hpa(entry & EPT_ADDR_MASK);
                    level = level.checked_sub(1).ok_or(Error::BadRequest)?;
                    if level == 0 {
                        return Ok(EptLookup::NotPresent);
                    }
                }
            }
        }
    }

    fn classify(&self, entry: u64, level: u8) -> Slot {
        if entry == 0 {
            return Slot::Free;
        }
        if let Some(fill) = &self.fill {
            if fill.matches(level, entry) {
                return Slot::Free;
            }
        }
        let present = entry & (EPT_READ | EPT_WRITE | EPT_EXEC) != 0;
        let leaf = level == 1 || entry & EPT_LEAF != 0;
        if present && !leaf {
            Slot::Table(Hpa(entry & EPT_ADDR_MASK))
        } else {
            Slot::Taken
        }
    }

    /// Writes `entry` at `target_level` for `gpa`, creating tables on the way.
    fn set_entry<F: Frames + ?Sized>(
        &mut self,
        frames: &mut F,
        gpa: Gpa,
        target_level: u8,
        entry: u64,
    ) -> Result<(), Error> {
        let mut table = self.root;
        let mut level = EPT_LEVELS;
        while level > target_level {
            let index = table_index(gpa.0, level);
            let current = frames.read_entry(table, index)?;
            let lower = level.checked_sub(1).ok_or(Error::BadRequest)?;
            table = match self.classify(current, level) {
                Slot::Table(next) => next,
                Slot::Taken => return Err(Error::Overlap),
                Slot::Free => {
                    let next = new_table(frames, self.fill.as_ref(), lower)?;
                    frames.write_entry(table, index, self.cfg.table_entry(next))?;
                    next
                }
            };
            level = lower;
        }
        let index = table_index(gpa.0, level);
        match self.classify(frames.read_entry(table, index)?, level) {
            Slot::Free => frames.write_entry(table, index, entry),
            Slot::Table(_) | Slot::Taken => Err(Error::Overlap),
        }
    }
}

fn check_leaf_addresses(gpa: Gpa, hpa: Hpa, size: PageSize) -> Result<(), Error> {
    if !gpa.is_aligned(size) || !hpa.is_aligned(size) {
        return Err(Error::Misaligned);
    }
    let gpa_end = gpa
        .0
        .checked_add(size.bytes())
        .ok_or(Error::AddressTooLarge)?;
    let hpa_end = hpa
        .0
        .checked_add(size.bytes())
        .ok_or(Error::AddressTooLarge)?;
    if gpa_end > EPT_GPA_LIMIT || hpa_end > HPA_LIMIT {
        return Err(Error::AddressTooLarge);
    }
    Ok(())
}

/// Allocates a table for `level`, pre-filled with that level's fill entry if there is one.
fn new_table<F: Frames + ?Sized>(
    frames: &mut F,
    fill: Option<&AptFill>,
    level: u8,
) -> Result<Hpa, Error> {
    let table = frames.alloc_zeroed()?;
    if let Some(value) = fill.and_then(|f| f.entry(level)) {
        super::frame::fill_frame(frames, table, value)?;
    }
    Ok(table)
}

/// Whether two entries are equal apart from the bits the CPU sets at run time (A/D).
pub const fn same_entry(a: u64, b: u64) -> bool {
    a & !CPU_OWNED == b & !CPU_OWNED
}
