// SPDX-License-Identifier: GPL-2.0
//! The one error type of elisa-core.
//!
//! Every builder and validator returns [`Error`] instead of panicking. [`Error::class`] says
//! whose the failure is, which the kernel module turns into an errno in one place; the
//! names say what was wrong.

use super::layout::Item;

/// Why a build, plan or validation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The frame allocator had no frame to give.
    OutOfFrames,
    /// A frame address or entry index that the frame store does not own.
    BadFrame,
    /// An address or size is not aligned to the page size it is used with.
    Misaligned,
    /// An address does not fit the physical width (GPA beyond the EPT's 48 bits, HPA beyond
    /// 52 bits, or a GPA beyond the guest's physical address width).
    AddressTooLarge,
    /// A guest-virtual range is not canonical for the paging mode, or crosses the hole.
    NonCanonical,
    /// A mapping would overlap an existing mapping or hole.
    Overlap,
    /// The requested permissions are not allowed (for example write without read, or a code
    /// region that is writable).
    InvalidPermissions,
    /// Execute-only EPT leaves were requested, but the CPU does not support them.
    ExecuteOnlyUnsupported,
    /// EPT accessed/dirty flags were requested for the views, which elisa refuses whatever
    /// the CPU supports ([`crate::ept::EptConfig::validate`]).
    AccessedDirtyRefused,
    /// A 2 MiB or 1 GiB EPT leaf was requested, but the CPU does not support that size.
    PageSizeUnsupported,
    /// The CPU does not support a write-back EPT paging structure or a 4-level walk.
    EptUnsupported,
    /// An EPTP value is malformed or does not match the policy.
    InvalidEptp,
    /// An EPTP list does not have the expected shape (0 default; 1 and the gates 504..=511
    /// 0 or valid; all others zero).
    InvalidEptpList,
    /// More regions were requested than [`MAX_REGIONS`](super::layout::MAX_REGIONS).
    TooManyRegions,
    /// A region of size zero, or a size that is not a multiple of its page size.
    BadSize,
    /// A parameter of the request is out of its documented range.
    BadRequest,
    /// The GPA or GVA window has no room for the layout.
    NoSpace,
    /// Two items of a layout request would overlap in guest-virtual space.
    Collision(Item, Item),
    /// The trusted GPA window would overlap the guest's own physical memory.
    GuestMemoryCollision,
    /// A view needed more page-table pages than the plan reserved (a planner bug).
    TablePoolExhausted,
    /// A region's backing returned no frame, or a frame not aligned to the region's page size.
    BadRegionFrame,
    /// The frame allocator's owner stopped the build (its caller was killed).
    Interrupted,
}

/// Whose a failure is: what a caller can do about an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// No memory for a frame: the caller may try again later (`ENOMEM`).
    OutOfMemory,
    /// The CPU lacks an EPT feature the views need (`EOPNOTSUPP`).
    Unsupported,
    /// The request itself is wrong: addresses, sizes, permissions, room (`EINVAL`).
    BadRequest,
    /// elisa's own state is inconsistent (a frame it does not own, a malformed EPTP or
    /// list, a planner bug): nothing the caller did (`EIO`, and worth a report).
    Internal,
    /// The caller is being killed: nothing to report (`EINTR`).
    Interrupted,
}

impl Error {
    /// The class of this error.
    pub const fn class(self) -> ErrorClass {
        match self {
            Error::OutOfFrames => ErrorClass::OutOfMemory,
            Error::ExecuteOnlyUnsupported
            | Error::AccessedDirtyRefused
            | Error::PageSizeUnsupported
            | Error::EptUnsupported => ErrorClass::Unsupported,
            Error::Misaligned
            | Error::AddressTooLarge
            | Error::NonCanonical
            | Error::InvalidPermissions
            | Error::TooManyRegions
            | Error::BadSize
            | Error::BadRequest
            | Error::NoSpace
            | Error::Collision(..)
            | Error::GuestMemoryCollision => ErrorClass::BadRequest,
            Error::BadFrame
            | Error::Overlap
            | Error::InvalidEptp
            | Error::InvalidEptpList
            | Error::TablePoolExhausted
            | Error::BadRegionFrame => ErrorClass::Internal,
            Error::Interrupted => ErrorClass::Interrupted,
        }
    }
}
