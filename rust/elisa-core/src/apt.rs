// SPDX-License-Identifier: GPL-2.0
//! The Anywhere Page Table (APT): whatever CR3 the guest loads, gate and sub walks start
//! from the trusted root.
//!
//! # The construction
//!
//! After VMFUNC the CPU reads the guest's page-table root at GPA = CR3 through the *new*
//! EPT, and the guest chooses CR3. In each gate and sub view, elisa makes every GPA that is
//! not mapped explicitly resolve to one frame, the **APT frame**, which holds the trusted
//! root (PML4, or PML5 under LA57).
//!
//! The prototype maps one APT page at the highest GPA and then copies the entries of that
//! path into every empty EPT entry. elisa builds the same thing directly, as a chain of three
//! shared tables per view ([`Apt::install`]):
//!
//! ```text
//!   EPT L4 (root)  every free entry -> L3 chain table
//!   L3 chain table all 512 entries  -> L2 chain table
//!   L2 chain table all 512 entries  -> L1 chain table
//!   L1 chain table all 512 entries  -> 4 KiB leaf: the APT frame (R, +W with EPT A/D; WB)
//! ```
//!
//! The view's EPT is created pre-filled ([`Ept::with_fill`](super::ept::Ept::with_fill)) and
//! every table the builder adds is pre-filled with the fill entry of its level, so at every
//! moment each GPA below 2^48 is explicit (a leaf or a hole) or reaches the APT frame, with
//! 4 KiB granularity. The cost is three frames per view, whatever the layout.
//!
//! # The APT frame *is* the trusted root
//!
//! The prototype copies the root into the APT page, so a later change of the root is not
//! seen through the APT until the copy is made again. elisa does not copy: the APT frame is
//! the root frame of the view's trusted page table. The root needs no GPA of its own (no
//! trusted entry points at it), so it is reachable only as the APT. There is nothing to
//! regenerate: a change to the root is visible through every CR3 at once, and the tests
//! check that a mapping added after the view was built appears through random CR3s.
//!
//! # Collisions with explicitly mapped GPAs (R12)
//!
//! A CR3 equal to a GPA that a view maps explicitly walks that page instead of the APT. The
//! design makes every such CR3 harmless:
//!
//! 1. **Trusted GPAs are not guest RAM.** The planner puts every trusted page in a window
//!    above all guest memory (and above 4 MiB), so the CR3 of a guest that behaves never
//!    collides (see [`layout`](super::layout)).
//! 2. **Each view makes the other view's pages holes.** After mapping its own pages, a view
//!    turns every remaining GPA of the trusted window into a hole (EPT violation). A CR3
//!    pointing at any sub-only page (sub stack, service code or data, sub page tables) makes
//!    the very first walk in the gate view exit, so an excursion with such a CR3 can never
//!    reach the sub view. The same holds the other way round.
//! 3. **The pages the gate view does map are useless as roots:**
//!    - the gate code page is execute-only, so reading it as a table is an EPT violation;
//!    - the EPTP-list page holds only EPTPs and zeros, and every valid EPTP has bit 0 clear
//!      ([`eptp`](super::eptp)); the gate data page holds the sub EPTP and the trusted
//!      window's start and length shifted left by 16, multiples of 2^28 (bit 0 clear too),
//!      and zeros: so every entry of either is not present;
//!    - the gate stack holds at most RFLAGS images, whose address bits (21:12) name a GPA
//!      below 4 MiB, which is never trusted and so reaches the APT;
//!    - the gate's page-table pages, walked at the wrong level, shift the walk by at least one
//!      level; the gate table has only 4 KiB leaves and no entry with bit 7 set, so such walks
//!      end on table frames, which are never executable.
//!
//!    The property tests check this by enumerating every translation reachable from every
//!    explicitly mapped GPA of both views used as CR3 in the gate view: none is executable.
//!    The states they exclude are `list[1]` holding a guest value, and an RFLAGS image at
//!    any byte of the list or the gate stack: a guest that lands on the gate's store to
//!    `list[1]` with its own `RAX` puts one there, until the gate's invalid path clears it,
//!    and one that lands on the gate's `PUSHFQ` with its own `RSP` stores an image there,
//!    until the gate's flags slot check sends it to `UD2` and the module rewrites the list
//!    and zeroes the stack (`gate-protocol.rst` section 4). To use it, the walk would have to start from the list page
//!    while the gate code is already running, that is, from a translation fetched earlier:
//!    the TLB case below.
//!
//! Translations cached in the default view never serve the gate or sub view: the CPU tags
//! combined mappings and paging-structure caches with the EPTP's EP4TA as well as the
//! VPID and PCID (SDM 29.4, "Caching Translation Information"), and an EPTP switch starts
//! using those of the new EP4TA. So a walk in a view always goes through its own tables,
//! except for what that same view cached earlier.
//!
//! What a layout cannot fix: the argument is about page walks. A guest kernel with PCIDs can
//! load a colliding CR3 without flushing and keep TLB entries for the gate pages from an
//! earlier excursion; the sub view would then walk its own pages (a region's) for addresses
//! it has not cached. So a supervisor grant's gate reads CR3 and refuses to switch while it
//! names a page of the trusted window ([`gate`](super::gate), `gate-protocol.rst` section 4),
//! and a user grant's gates, whose callers cannot read CR3, open only without PCIDs
//! ([`CallerPrivilege::gates_may_open`](super::paging::CallerPrivilege::gates_may_open)):
//! the trusted tables never set the global bit, so a CR3 load without PCIDs drops their
//! translations.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::addr::{Hpa, PageSize};
use super::ept::{same_entry, EptConfig, EptPerm, MemType, EPT_LEVELS};
use super::error::Error;
use super::frame::{fill_frame, Frames};

/// The fill entries of one view: what every otherwise empty EPT entry holds, per level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AptFill {
    /// Index `level - 1` holds the fill entry of a level-`level` table (levels 1..=4).
    by_level: [u64; EPT_LEVELS as usize],
}

impl AptFill {
    /// The fill entry for a table at `level` (1..=4).
    pub fn entry(&self, level: u8) -> Option<u64> {
        let index = usize::from(level.checked_sub(1)?);
        self.by_level.get(index).copied()
    }

    /// Whether `entry`, read from a table at `level`, is that level's fill entry (ignoring
    /// the accessed/dirty bits the CPU may have set since).
    pub fn matches(&self, level: u8, entry: u64) -> bool {
        self.entry(level)
            .is_some_and(|fill| same_entry(fill, entry))
    }
}

/// The APT of one view: the APT frame and the shared chain that leads every free GPA to it.
///
/// # Examples
///
/// ```
/// use elisa_core::addr::{Gpa, Hpa};
/// use elisa_core::apt::Apt;
/// use elisa_core::ept::{Ept, EptCaps, EptConfig, EptLookup};
/// use elisa_core::frame::{ArrayFrames, Frames};
///
/// let cfg = EptConfig::recommended(EptCaps::all(), false);
/// let mut frames = ArrayFrames::<8>::new(Hpa(0x100_0000));
/// let root = frames.alloc_zeroed()?; // the trusted guest root, also the APT frame
/// let apt = Apt::install(&mut frames, &cfg, root)?;
/// let ept = Ept::with_fill(&mut frames, cfg, apt.fill())?;
/// // Any GPA at all reaches the APT.
/// assert_eq!(ept.lookup(&frames, Gpa(0x7654_3000))?, EptLookup::Apt);
/// # Ok::<(), elisa_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Apt {
    frame: Hpa,
    chain: [Hpa; 3],
    fill: AptFill,
}

impl Apt {
    /// Builds the chain for `frame`, the view's trusted root: three frames, each filled with
    /// 512 copies of one entry.
    ///
    /// The APT leaves are write-back and not executable; they are readable, and writable when
    /// EPT A/D is on (the CPU then treats page-table reads as writes).
    ///
    /// # Errors
    ///
    /// [`Error::Misaligned`] if `frame` is not 4 KiB aligned, configuration and frame store
    /// errors.
    pub fn install<F: Frames + ?Sized>(
        frames: &mut F,
        cfg: &EptConfig,
        frame: Hpa,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        if !frame.is_aligned(PageSize::Size4K) {
            return Err(Error::Misaligned);
        }
        let leaf = cfg.leaf_entry(frame, PageSize::Size4K, table_perm(cfg), MemType::WriteBack);
        let l1 = frames.alloc_zeroed()?;
        fill_frame(frames, l1, leaf)?;
        let to_l1 = cfg.table_entry(l1);
        let l2 = frames.alloc_zeroed()?;
        fill_frame(frames, l2, to_l1)?;
        let to_l2 = cfg.table_entry(l2);
        let l3 = frames.alloc_zeroed()?;
        fill_frame(frames, l3, to_l2)?;
        let to_l3 = cfg.table_entry(l3);
        Ok(Self {
            frame,
            chain: [l1, l2, l3],
            fill: AptFill {
                by_level: [leaf, to_l1, to_l2, to_l3],
            },
        })
    }

    /// The APT frame (the trusted root).
    pub fn frame(&self) -> Hpa {
        self.frame
    }

    /// The three chain tables, level 1 first.
    pub fn chain(&self) -> [Hpa; 3] {
        self.chain
    }

    /// The fill entries to build the view's EPT with.
    pub fn fill(&self) -> AptFill {
        self.fill
    }
}

/// EPT permissions of guest page-table pages and of the APT frame: the CPU reads them, and
/// with EPT A/D on it treats those reads as writes. The trusted entries are built with their
/// accessed and dirty flags already set, so without EPT A/D the CPU never needs to write them
/// and they stay read-only.
pub const fn table_perm(cfg: &EptConfig) -> EptPerm {
    if cfg.accessed_dirty {
        EptPerm::ReadWrite
    } else {
        EptPerm::ReadOnly
    }
}
