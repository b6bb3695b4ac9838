// SPDX-License-Identifier: GPL-2.0
//! Guest page tables: x86-64 4-level and 5-level (LA57), GVA -> GPA.
//!
//! A [`GuestPageTable`] is the trusted page table of one view. Its root frame is the view's
//! APT frame (see [`apt`](super::apt)), so the root has no GPA; every other table page lives
//! at a GPA that the view's EPT maps. How table pages get a GPA and a frame is abstracted by
//! [`TableSpace`]: the view builder allocates them from the plan's page-table pool and maps
//! them in the EPT; [`IdentityTables`] puts each table at GPA = HPA, for tests and examples.
//!
//! Entries are built so that the CPU never has to write them: accessed is set in every entry
//! and dirty in every writable leaf. The trampolines and the service run at the caller's
//! privilege, so the leaves' U bit follows the [`CallerPrivilege`] of the table:
//! supervisor leaves (U=0, the default) for callers at CPL 0, which a guest kernel with
//! SMEP (and SMAP) needs, since it may neither execute nor touch user pages; user leaves
//! (U=1) for callers at CPL 3. Non-leaf entries are U=1, so the leaf decides (x86 ANDs U
//! along the walk). Data leaves are no-execute (NX=1), code leaves read-only.
//! The global bit is never set, so a flushing CR3 load drops all trusted translations.
//! NX needs EFER.NXE: a guest that clears it makes its own trusted walks fault (reserved
//! bit), which only hurts itself; execute permission is enforced by the EPT in any case.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::addr::{table_index, Gpa, Gva, Hpa, PageSize};
use super::error::Error;
use super::frame::Frames;

/// Page-table entry bit 0: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Bit 1: writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// Bit 2: user.
pub const PTE_USER: u64 = 1 << 2;
/// Bit 5: accessed.
pub const PTE_ACCESSED: u64 = 1 << 5;
/// Bit 6 of a leaf: dirty.
pub const PTE_DIRTY: u64 = 1 << 6;
/// Bit 7 of a PDE or PDPTE: large page (2 MiB or 1 GiB leaf).
pub const PTE_LARGE: u64 = 1 << 7;
/// Bit 8 of a leaf: global (never set by elisa).
pub const PTE_GLOBAL: u64 = 1 << 8;
/// Bit 63: no-execute.
pub const PTE_NX: u64 = 1 << 63;
/// Bits 51:12: address of the next table or of a 4 KiB page.
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Highest guest-physical address width the tables can express.
pub const GUEST_PHYS_LIMIT: u64 = 1 << 52;

/// The guest's paging mode (long mode; CR4.LA57 selects five levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// 4-level paging: 48-bit linear addresses, root PML4.
    FourLevel,
    /// 5-level paging (LA57): 57-bit linear addresses, root PML5.
    FiveLevel,
}

impl PagingMode {
    /// Number of table levels.
    pub const fn levels(self) -> u8 {
        match self {
            PagingMode::FourLevel => 4,
            PagingMode::FiveLevel => 5,
        }
    }

    /// Number of significant linear-address bits.
    pub const fn va_bits(self) -> u32 {
        match self {
            PagingMode::FourLevel => 48,
            PagingMode::FiveLevel => 57,
        }
    }

    /// Whether `gva` is canonical: bits 63 down to `va_bits() - 1` are all equal.
    pub const fn is_canonical(self, gva: Gva) -> bool {
        let shift = 64u32.wrapping_sub(self.va_bits());
        let sign_extended = ((gva.0.wrapping_shl(shift)) as i64).wrapping_shr(shift) as u64;
        sign_extended == gva.0
    }

    /// Whether `[gva, gva + len)` is non-empty, canonical and inside one canonical half.
    pub const fn is_canonical_range(self, gva: Gva, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let Some(last) = gva.0.checked_add(len.wrapping_sub(1)) else {
            return false;
        };
        let half_bit = 1u64.wrapping_shl(self.va_bits().wrapping_sub(1));
        self.is_canonical(gva)
            && self.is_canonical(Gva(last))
            && (gva.0 & half_bit) == (last & half_bit)
    }
}

/// The privilege the trampolines and the service run at: the caller's CPL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CallerPrivilege {
    /// Callers at CPL 0 (a guest kernel): supervisor leaves (U=0). With the guest's SMEP a
    /// fetch at CPL 3 from them faults; a call from CPL 3 then ends in a triple fault.
    #[default]
    Supervisor,
    /// Callers at CPL 3: user leaves (U=1). A guest kernel with SMEP cannot call through
    /// them (the fetch of the gate faults).
    User,
}

/// The `CR4` bits whose effect on a call through the views has been analysed: VME, PVI,
/// TSD, DE, PSE, PAE, MCE, PGE, PCE, OSFXSR, OSXMMEXCPT, UMIP, LA57 (the module closes
/// the gates under it: the views are 4-level), VMXE (fixed to 1 in every `GUEST_CR4` by
/// VMX itself; KVM shows the guest its own value, and the module refuses to attach where
/// KVM lets guests use VMX), FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, PKE and CET (for user
/// grants, TSD, PCE, UMIP, PKE and CET are why [`CallerPrivilege::gates_may_open`] needs
/// SMAP; CET also has the module's `ENDBR64` rule). Any other bit may change how the CPU
/// delivers events or checks accesses inside a view (FRED, bit 32, delivers events
/// without the IDT, to handlers and stacks at addresses the guest writes in MSRs; LASS,
/// bit 27, faults supervisor accesses to the lower half; PKS, bit 24, faults supervisor
/// accesses by protection key; LAM_SUP, bit 28, changes which linear address a pointer
/// names), so while the guest runs with one set every gate stays closed, whatever KVM
/// learns to expose later. KVM intercepts writes of every bit outside its guest-owned set
/// (PVI, DE, PCE, OSFXSR, OSXMMEXCPT, PGE, TSD, FSGSBASE, CET), which this mask contains.
pub const CR4_ANALYSED: u64 = 0x00f7_3fff;

/// Whether gates may be open at all for a guest running with `cr4` (the `GUEST_CR4` of
/// the entry): only if every bit set is in [`CR4_ANALYSED`]. Fails closed on any bit a
/// later CPU or KVM adds.
pub const fn cr4_analysed(cr4: u64) -> bool {
    cr4 & !CR4_ANALYSED == 0
}

/// The `IA32_DEBUGCTL` bits (as the VMCS's `GUEST_IA32_DEBUGCTL` holds them) whose effect
/// on a call through the views has been analysed and that leave the gates open:
/// `BUS_LOCK_DETECT` (bit 2: a bus lock, a locked access split across cache lines or to
/// uncached memory, raises a trap-like #DB, which KVM intercepts: inside a view the call
/// ends as a broken excursion, and the VMM learns that the service made a bus lock;
/// services' regions are write-back memory, so only a split access can, and Linux turns
/// the bit on wherever the CPU and KVM offer it, so closing the gates for it would close
/// them for every Linux guest there), `FREEZE_LBRS_ON_PMI` and `FREEZE_PERFMON_ON_PMI`
/// (11, 12: counters and records stop at a PMI; nothing more is counted or recorded),
/// `FREEZE_IN_SMM` (14: host-owned, KVM sets it in the VMCS) and `RTM_DEBUG` (15: changes
/// debug exceptions inside transactions, which need a breakpoint, and an armed DR7 closes
/// the gates). Every other bit closes them: `LBR` (0: the guest would read the service's
/// branches), `BTF` (1: single-steps on its branches), `TR`, `BTS`, `BTINT` and the BTS
/// filters (6-10: branch messages and a branch trace store written through the EPT in
/// use, into a view), and any bit a later CPU or KVM adds. KVM intercepts every write of
/// the register and refuses bits it does not support for the guest.
pub const DEBUGCTL_ANALYSED: u64 = (1 << 2) | (1 << 11) | (1 << 12) | (1 << 14) | (1 << 15);

/// Whether gates may be open for a guest running with `debugctl` (the `GUEST_IA32_DEBUGCTL`
/// of the entry): only if every bit set is in [`DEBUGCTL_ANALYSED`].
pub const fn debugctl_analysed(debugctl: u64) -> bool {
    debugctl & !DEBUGCTL_ANALYSED == 0
}

/// `CR4.PCIDE` (bit 17): process-context identifiers, with `CR3` loads that keep
/// translations.
pub const CR4_PCIDE: u64 = 1 << 17;
/// `CR4.SMAP` (bit 21).
pub const CR4_SMAP: u64 = 1 << 21;
/// `CR4.PKE` (bit 22): protection keys for user pages, set by `WRPKRU` with no VM exit.
pub const CR4_PKE: u64 = 1 << 22;

impl CallerPrivilege {
    /// Whether gates whose views are built for callers of this privilege may open for a
    /// guest running with `cr4` (the `GUEST_CR4` of the entry; KVM intercepts writes of
    /// SMAP).
    ///
    /// A fault inside a view is not intercepted: the CPU delivers it through the guest's
    /// IDT, GDT and TSS, at guest-virtual addresses the views' trusted tables translate,
    /// into pages a guest can shape (the sub stack holds what services push, regions
    /// what guests write). Delivered, it would run a handler of the guest's choosing in
    /// the sub view at CPL 0, with every general register the guest's. The guest must
    /// not be able to raise one there. For callers at CPL 3 it can, with no exit, in many
    /// ways: a `PKRU` that denies key 0 (`WRPKRU`, with `CR4.PKE`) makes the sub code's
    /// first store fault; a user shadow stack (`IA32_U_CET` is passed through, `CR4.CET`
    /// is guest-owned) its `CALL`; and `CR4.TSD`, `CR4.PCE` (guest-owned, written with no
    /// exit) and `CR4.UMIP` make a service's `RDTSC`, `RDTSCP`, `RDPMC`, `SGDT`, `SIDT`,
    /// `SLDT`, `SMSW` or `STR` raise #GP at CPL 3. Every page of a user grant's views is a
    /// user page, so with `CR4.SMAP` the delivery's own reads of the IDT are implicit
    /// supervisor accesses to user pages, which fault whatever `RFLAGS.AC` says: a triple
    /// fault, an exit, and the run ends. So user gates open only while SMAP is on.
    /// Supervisor views need no such rule: at CPL 0 PKRU does not apply to supervisor
    /// pages, TSD, PCE and UMIP do not apply, a supervisor shadow stack's `CALL` faults
    /// and so does the delivery's push onto a shadow stack the views never map, and
    /// the module's `ENDBR64` rule is per service.
    ///
    /// User gates also stay closed while the guest uses PCIDs (`CR4.PCIDE`). A page walk
    /// of the sub view from a `CR3` in the trusted window reads pages the guest can write
    /// (a region's); the gate view's walks from such a `CR3` end in an EPT violation, so
    /// a call can reach the sub view with one only on translations the gate view cached
    /// under an earlier `CR3`. Without PCIDs every `CR3` load drops them (the trusted
    /// tables never set the global bit); with PCIDs a load can keep them. A supervisor
    /// grant's gate reads `CR3` and refuses such a switch itself; at CPL 3 `CR3` cannot
    /// be read. KVM intercepts writes of `CR4.PCIDE`.
    pub const fn gates_may_open(self, cr4: u64) -> bool {
        match self {
            CallerPrivilege::Supervisor => true,
            CallerPrivilege::User => cr4 & CR4_SMAP != 0 && cr4 & CR4_PCIDE == 0,
        }
    }
}

/// Guest page-table permissions of a leaf. x86 paging cannot express execute-only (the EPT
/// does that), and writable code cannot be expressed at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestPerm {
    /// Present, read-only, no-execute.
    Read,
    /// Present, writable, no-execute.
    ReadWrite,
    /// Present, read-only, executable.
    Execute,
}

impl GuestPerm {
    /// The permission and status bits of a leaf with this permission, for callers of
    /// `privilege`.
    pub const fn leaf_bits(self, privilege: CallerPrivilege) -> u64 {
        let base = match privilege {
            CallerPrivilege::Supervisor => PTE_PRESENT | PTE_ACCESSED,
            CallerPrivilege::User => PTE_PRESENT | PTE_USER | PTE_ACCESSED,
        };
        match self {
            GuestPerm::Read => base | PTE_NX,
            GuestPerm::ReadWrite => base | PTE_WRITABLE | PTE_DIRTY | PTE_NX,
            GuestPerm::Execute => base,
        }
    }
}

/// Bits of every non-leaf entry: the leaf decides, since x86 ANDs permissions along the walk.
pub const TABLE_ENTRY_BITS: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_USER | PTE_ACCESSED;

/// Where the page-table pages of a guest page table come from.
///
/// Entries hold GPAs, while the builder reads and writes frames; this trait gives both.
pub trait TableSpace {
    /// Allocates a zeroed table page: its GPA (what parent entries hold) and its frame.
    fn alloc_table(&mut self) -> Result<(Gpa, Hpa), Error>;

    /// The frame of the table page at `gpa` (one returned by `alloc_table`).
    fn table_frame(&self, gpa: Gpa) -> Result<Hpa, Error>;

    /// Reads entry `index` of the table frame `frame`.
    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error>;

    /// Writes entry `index` of the table frame `frame`.
    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error>;
}

/// A [`TableSpace`] that puts each table page at GPA = HPA (tests and examples).
#[derive(Debug)]
pub struct IdentityTables<F>(pub F);

impl<F: Frames> TableSpace for IdentityTables<F> {
    fn alloc_table(&mut self) -> Result<(Gpa, Hpa), Error> {
        let frame = self.0.alloc_zeroed()?;
        Ok((Gpa(frame.0), frame))
    }

    fn table_frame(&self, gpa: Gpa) -> Result<Hpa, Error> {
        Ok(Hpa(gpa.0))
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error> {
        self.0.read_entry(frame, index)
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error> {
        self.0.write_entry(frame, index, value)
    }
}

/// A translation found by [`GuestPageTable::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestTranslation {
    /// Guest-physical address of the looked-up byte.
    pub gpa: Gpa,
    /// Size of the leaf.
    pub size: PageSize,
    /// The raw leaf entry.
    pub entry: u64,
}

/// The trusted page table of one view.
///
/// # Examples
///
/// ```
/// use elisa_core::addr::{Gpa, Gva, Hpa, PageSize};
/// use elisa_core::frame::{ArrayFrames, Frames};
/// use elisa_core::paging::{GuestPageTable, GuestPerm, IdentityTables, PagingMode};
///
/// let mut space = IdentityTables(ArrayFrames::<8>::new(Hpa(0x100_0000)));
/// let root = space.0.alloc_zeroed()?;
/// let pt = GuestPageTable::new(PagingMode::FiveLevel, root);
/// pt.map(&mut space, Gva(0x7f00_0000_1000), Gpa(0x4000_0000), PageSize::Size4K,
///        GuestPerm::Execute)?;
/// let t = pt.translate(&space, Gva(0x7f00_0000_1abc))?.unwrap();
/// assert_eq!(t.gpa, Gpa(0x4000_0abc));
/// // The same page again is an overlap; a non-canonical address is refused.
/// assert!(pt.map(&mut space, Gva(0x7f00_0000_1000), Gpa(0x5000_0000), PageSize::Size4K,
///                GuestPerm::Read).is_err());
/// assert!(pt.map(&mut space, Gva(1 << 60), Gpa(0), PageSize::Size4K, GuestPerm::Read)
///         .is_err());
/// # Ok::<(), elisa_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPageTable {
    mode: PagingMode,
    root: Hpa,
    privilege: CallerPrivilege,
}

impl GuestPageTable {
    /// A page table whose root (PML4 or PML5) is the zeroed frame `root`, with supervisor
    /// leaves.
    pub const fn new(mode: PagingMode, root: Hpa) -> Self {
        Self {
            mode,
            root,
            privilege: CallerPrivilege::Supervisor,
        }
    }

    /// The same table, with leaves for callers of `privilege` from now on.
    pub const fn with_privilege(self, privilege: CallerPrivilege) -> Self {
        Self { privilege, ..self }
    }

    /// The privilege of the table's leaves.
    pub const fn privilege(&self) -> CallerPrivilege {
        self.privilege
    }

    /// The root frame.
    pub const fn root(&self) -> Hpa {
        self.root
    }

    /// The paging mode.
    pub const fn mode(&self) -> PagingMode {
        self.mode
    }

    /// Maps the page of `size` at `gva` to `gpa` with `perm`.
    ///
    /// # Errors
    ///
    /// [`Error::NonCanonical`], [`Error::Misaligned`], [`Error::AddressTooLarge`] (GPA at or
    /// above 2^52), [`Error::Overlap`] if any part is mapped already, table space errors.
    pub fn map<S: TableSpace + ?Sized>(
        &self,
        space: &mut S,
        gva: Gva,
        gpa: Gpa,
        size: PageSize,
        perm: GuestPerm,
    ) -> Result<(), Error> {
        if !self.mode.is_canonical_range(gva, size.bytes()) {
            return Err(Error::NonCanonical);
        }
        if !gva.is_aligned(size) || !gpa.is_aligned(size) {
            return Err(Error::Misaligned);
        }
        let end = gpa
            .0
            .checked_add(size.bytes())
            .ok_or(Error::AddressTooLarge)?;
        if end > GUEST_PHYS_LIMIT {
            return Err(Error::AddressTooLarge);
        }
        let mut table = self.root;
        let mut level = self.mode.levels();
        let target = size.level();
        while level > target {
            let index = table_index(gva.0, level);
            let entry = space.read_entry(table, index)?;
            table = if entry & PTE_PRESENT == 0 {
                let (next_gpa, next) = space.alloc_table()?;
                space.write_entry(
                    table,
                    index,
                    (next_gpa.0 & PTE_ADDR_MASK) | TABLE_ENTRY_BITS,
                )?;
                next
            } else if level <= 3 && entry & PTE_LARGE != 0 {
                return Err(Error::Overlap);
            } else {
                space.table_frame(Gpa(entry & PTE_ADDR_MASK))?
            };
            level = level.checked_sub(1).ok_or(Error::BadRequest)?;
        }
        let index = table_index(gva.0, level);
        if space.read_entry(table, index)? != 0 {
            return Err(Error::Overlap);
        }
        let large = if target > 1 { PTE_LARGE } else { 0 };
        space.write_entry(table, index, gpa.0 | perm.leaf_bits(self.privilege) | large)
    }

    /// Maps `len` bytes from `gva` to the contiguous GPAs from `gpa`, with leaves of `size`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map), and [`Error::BadSize`] unless `len` is a non-zero multiple of
    /// `size`.
    pub fn map_range<S: TableSpace + ?Sized>(
        &self,
        space: &mut S,
        gva: Gva,
        gpa: Gpa,
        len: u64,
        size: PageSize,
        perm: GuestPerm,
    ) -> Result<(), Error> {
        if len == 0 || len & size.mask() != 0 {
            return Err(Error::BadSize);
        }
        if !self.mode.is_canonical_range(gva, len) {
            return Err(Error::NonCanonical);
        }
        gpa.checked_add(len).ok_or(Error::AddressTooLarge)?;
        let mut offset = 0u64;
        while offset < len {
            let v = gva.checked_add(offset).ok_or(Error::NonCanonical)?;
            let p = gpa.checked_add(offset).ok_or(Error::AddressTooLarge)?;
            self.map(space, v, p, size, perm)?;
            offset = offset.checked_add(size.bytes()).ok_or(Error::BadSize)?;
        }
        Ok(())
    }

    /// Looks `gva` up in the tables built so far (a software walk of what was built; it does
    /// not model the CPU's permission checks).
    ///
    /// # Errors
    ///
    /// Table space errors.
    pub fn translate<S: TableSpace + ?Sized>(
        &self,
        space: &S,
        gva: Gva,
    ) -> Result<Option<GuestTranslation>, Error> {
        if !self.mode.is_canonical(gva) {
            return Ok(None);
        }
        let mut table = self.root;
        let mut level = self.mode.levels();
        loop {
            let entry = space.read_entry(table, table_index(gva.0, level))?;
            if entry & PTE_PRESENT == 0 {
                return Ok(None);
            }
            let size = PageSize::from_level(level);
            let leaf = level == 1 || (entry & PTE_LARGE != 0 && size.is_some());
            match (leaf, size) {
                (true, Some(size)) => {
                    let base = entry & PTE_ADDR_MASK & !size.mask();
                    return Ok(Some(GuestTranslation {
                        gpa: Gpa(base | (gva.0 & size.mask())),
                        size,
                        entry,
                    }));
                }
                _ => {
                    table = space.table_frame(Gpa(entry & PTE_ADDR_MASK))?;
                    level = level.checked_sub(1).ok_or(Error::BadRequest)?;
                    if level == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }
}
