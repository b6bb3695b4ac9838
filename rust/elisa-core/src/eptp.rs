// SPDX-License-Identifier: GPL-2.0
//! EPTP values and the per-vCPU EPTP list page.
//!
//! An EPTP is `memory type | (walk length - 1) << 3 | A/D << 6 | root`. elisa's own EPTPs are
//! always write-back with a 4-level walk; the A/D bit follows [`EptConfig`]. The default
//! entry (KVM's) may use a 5-level walk, so the list validator accepts that for index 0.
//!
//! # The EPTP list (one 4 KiB page per vCPU; Documentation/design.rst)
//!
//! | index | content |
//! |---|---|
//! | [`EPTP_INDEX_DEFAULT`] (0) | KVM's EPTP, refreshed whenever KVM loads a new root |
//! | [`EPTP_INDEX_SUB`] (1) | the sub EPTP during the gate→sub hop only, 0 otherwise |
//! | [`EPTP_INDEX_GATE`] (511) down to [`EPTP_INDEX_LOWEST_GATE`] (504) | one gate EPTP per granted service, or 0 while that gate is closed |
//! | all others | 0 (an invalid entry: VMFUNC to it exits) |
//!
//! A useful fact for R12 (see [`apt`](super::apt)): every valid EPTP has bit 0 clear, because
//! the only valid memory types (UC = 0, WB = 6) are even. Read as a guest page-table entry, an
//! EPTP is therefore *not present*, and the list page used as a guest CR3 or page table
//! translates nothing.
//!
//! [`EptConfig`]: super::ept::EptConfig

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::addr::Hpa;
use super::ept::{MemType, EPT_ADDR_MASK};
use super::error::Error;
use super::frame::{Frames, ENTRIES_PER_TABLE};

/// Number of entries in an EPTP list.
pub const EPTP_LIST_ENTRIES: usize = ENTRIES_PER_TABLE;
/// List index of the default (KVM) EPTP.
pub const EPTP_INDEX_DEFAULT: usize = 0;
/// List index of the transient sub EPTP.
pub const EPTP_INDEX_SUB: usize = 1;
/// List index of the gate EPTP: the first gate's ([`gate::FIRST_GATE_INDEX`], the one
/// definition; the ABI's `ELISA_FIRST_GATE_INDEX` is checked against it).
///
/// [`gate::FIRST_GATE_INDEX`]: super::gate::FIRST_GATE_INDEX
pub const EPTP_INDEX_GATE: usize = super::gate::FIRST_GATE_INDEX as usize;
/// Number of gate entries, one per service a VM may be granted (the ABI's
/// `ELISA_MAX_GRANTS`, checked against it).
pub const EPTP_GATE_ENTRIES: usize = 8;
/// Lowest gate index: the last of [`EPTP_GATE_ENTRIES`] counting down from
/// [`EPTP_INDEX_GATE`].
pub const EPTP_INDEX_LOWEST_GATE: usize = EPTP_INDEX_GATE + 1 - EPTP_GATE_ENTRIES;

/// EPTP bits 2:0: memory type of the EPT paging structures.
pub const EPTP_MEMTYPE_MASK: u64 = 0x7;
/// EPTP bits 5:3: page-walk length minus one.
pub const EPTP_WALK_MASK: u64 = 0x7 << 3;
/// The walk-length field for a 4-level walk.
pub const EPTP_WALK_4: u64 = 3 << 3;
/// The walk-length field for a 5-level walk (KVM may use one for the default view).
pub const EPTP_WALK_5: u64 = 4 << 3;
/// EPTP bit 6: enable accessed/dirty flags.
pub const EPTP_AD: u64 = 1 << 6;
/// EPTP bits 11:7: must be zero for elisa (bit 7 enables supervisor shadow-stack control,
/// which elisa does not use; 11:8 are reserved).
pub const EPTP_RESERVED_LOW: u64 = 0x1f << 7;
/// EPTP bits 63:52: reserved.
pub const EPTP_RESERVED_HIGH: u64 = !0 << 52;

/// A well-formed EPTP value.
///
/// # Invariants
///
/// Memory type UC or WB, walk length 4 or 5, bits 11:7 and 63:52 zero. Values made by
/// [`Eptp::for_root`] are WB with a 4-level walk.
///
/// # Examples
///
/// ```
/// use elisa_core::addr::Hpa;
/// use elisa_core::eptp::Eptp;
///
/// let eptp = Eptp::for_root(Hpa(0x1234_5000), true);
/// assert_eq!(eptp.raw(), 0x1234_505e);
/// assert!(eptp.check_elisa(true).is_ok());
/// assert!(eptp.check_elisa(false).is_err()); // A/D bit does not match the policy
/// assert!(Eptp::from_raw(0x1234_5003).is_err()); // reserved memory type
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Eptp(u64);

impl Eptp {
    /// The EPTP of elisa's own views: WB, walk length 4, A/D if `accessed_dirty`, `root`
    /// (its low 12 bits and bits above 51 are dropped).
    pub const fn for_root(root: Hpa, accessed_dirty: bool) -> Self {
        let ad = if accessed_dirty { EPTP_AD } else { 0 };
        Self((root.0 & EPT_ADDR_MASK) | MemType::WriteBack.bits() | EPTP_WALK_4 | ad)
    }

    /// Validates a raw EPTP (for example KVM's, read from the VMCS).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEptp`] unless the memory type is UC or WB, the walk length is 4 or 5
    /// and bits 11:7 and 63:52 are zero.
    pub const fn from_raw(raw: u64) -> Result<Self, Error> {
        let mt = raw & EPTP_MEMTYPE_MASK;
        if mt != MemType::Uncacheable.bits() && mt != MemType::WriteBack.bits() {
            return Err(Error::InvalidEptp);
        }
        let walk = raw & EPTP_WALK_MASK;
        if walk != EPTP_WALK_4 && walk != EPTP_WALK_5 {
            return Err(Error::InvalidEptp);
        }
        if raw & (EPTP_RESERVED_LOW | EPTP_RESERVED_HIGH) != 0 {
            return Err(Error::InvalidEptp);
        }
        Ok(Self(raw))
    }

    /// Checks that this is an EPTP elisa would build: WB, walk length 4, A/D bit equal to
    /// `accessed_dirty`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEptp`] otherwise.
    pub const fn check_elisa(self, accessed_dirty: bool) -> Result<(), Error> {
        if self.0 & EPTP_MEMTYPE_MASK != MemType::WriteBack.bits()
            || self.0 & EPTP_WALK_MASK != EPTP_WALK_4
            || (self.0 & EPTP_AD != 0) != accessed_dirty
        {
            return Err(Error::InvalidEptp);
        }
        Ok(())
    }

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The root table address.
    pub const fn root(self) -> Hpa {
        Hpa(self.0 & EPT_ADDR_MASK)
    }

    /// Whether accessed/dirty flags are enabled.
    pub const fn accessed_dirty(self) -> bool {
        self.0 & EPTP_AD != 0
    }

    /// Number of levels of the walk (4 or 5).
    pub const fn walk_length(self) -> u8 {
        if self.0 & EPTP_WALK_MASK == EPTP_WALK_5 {
            5
        } else {
            4
        }
    }
}

/// What a validated EPTP list says about the vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptpListState {
    /// Index 1 is zero: the guest can reach only the default and gate views.
    Idle,
    /// Index 1 holds the sub EPTP: the vCPU is in the gate→sub hop.
    SubHop(Eptp),
}

/// The 512 entries of an EPTP list page, in the layout of the module docs.
///
/// # Invariants
///
/// Entry 0 is a valid EPTP; entry 1 and the gate entries (511 down to 504) are 0 or valid
/// EPTPs; every other entry is 0.
///
/// # Examples
///
/// ```
/// use elisa_core::addr::Hpa;
/// use elisa_core::eptp::{Eptp, EptpList, EptpListState, EPTP_INDEX_GATE};
///
/// let default = Eptp::for_root(Hpa(0x1000), true);
/// let gate = Eptp::for_root(Hpa(0x2000), true);
/// let list = EptpList::new(default, gate);
/// assert_eq!(list.entry(EPTP_INDEX_GATE), Some(gate.raw()));
/// assert_eq!(list.state(), EptpListState::Idle);
///
/// let mut raw = *list.entries();
/// raw[7] = gate.raw(); // a stray valid entry: refused
/// assert!(EptpList::from_entries(raw).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EptpList {
    entries: [u64; EPTP_LIST_ENTRIES],
}

impl EptpList {
    /// The list of an idle vCPU: `default` at 0, `gate` at 511, zeros elsewhere.
    pub fn new(default: Eptp, gate: Eptp) -> Self {
        let mut entries = [0u64; EPTP_LIST_ENTRIES];
        if let Some(e) = entries.get_mut(EPTP_INDEX_DEFAULT) {
            *e = default.raw();
        }
        if let Some(e) = entries.get_mut(EPTP_INDEX_GATE) {
            *e = gate.raw();
        }
        Self { entries }
    }

    /// Validates 512 raw entries (for example read back from the list page).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEptpList`] if entry 0 is not a valid EPTP, entry 1 or a gate entry is
    /// neither 0 nor a valid EPTP, or any other entry is non-zero.
    pub fn from_entries(entries: [u64; EPTP_LIST_ENTRIES]) -> Result<Self, Error> {
        let gates = EPTP_INDEX_LOWEST_GATE..=EPTP_INDEX_GATE;
        for (index, &value) in entries.iter().enumerate() {
            let ok = match index {
                EPTP_INDEX_DEFAULT => Eptp::from_raw(value).is_ok(),
                EPTP_INDEX_SUB => value == 0 || Eptp::from_raw(value).is_ok(),
                i if gates.contains(&i) => value == 0 || Eptp::from_raw(value).is_ok(),
                _ => value == 0,
            };
            if !ok {
                return Err(Error::InvalidEptpList);
            }
        }
        Ok(Self { entries })
    }

    /// Reads and validates the list page `frame`.
    ///
    /// # Errors
    ///
    /// Frame store errors, or those of [`from_entries`](Self::from_entries).
    pub fn read_from<F: Frames + ?Sized>(frames: &F, frame: Hpa) -> Result<Self, Error> {
        let mut entries = [0u64; EPTP_LIST_ENTRIES];
        for (index, slot) in entries.iter_mut().enumerate() {
            *slot = frames.read_entry(frame, index)?;
        }
        Self::from_entries(entries)
    }

    /// Writes all 512 entries into the list page `frame`.
    ///
    /// # Errors
    ///
    /// Frame store errors.
    pub fn write_to<F: Frames + ?Sized>(&self, frames: &mut F, frame: Hpa) -> Result<(), Error> {
        for (index, &value) in self.entries.iter().enumerate() {
            frames.write_entry(frame, index, value)?;
        }
        Ok(())
    }

    /// The raw entries.
    pub fn entries(&self) -> &[u64; EPTP_LIST_ENTRIES] {
        &self.entries
    }

    /// Entry `index`, or `None` beyond 511.
    pub fn entry(&self, index: usize) -> Option<u64> {
        self.entries.get(index).copied()
    }

    /// Whether the vCPU is idle or in the gate→sub hop.
    pub fn state(&self) -> EptpListState {
        match self.entries.get(EPTP_INDEX_SUB).copied() {
            Some(raw) if raw != 0 => match Eptp::from_raw(raw) {
                Ok(eptp) => EptpListState::SubHop(eptp),
                Err(_) => EptpListState::Idle,
            },
            _ => EptpListState::Idle,
        }
    }

    /// Replaces the default EPTP (after KVM loaded a new root, R9).
    pub fn set_default(&mut self, default: Eptp) {
        if let Some(e) = self.entries.get_mut(EPTP_INDEX_DEFAULT) {
            *e = default.raw();
        }
    }
}
