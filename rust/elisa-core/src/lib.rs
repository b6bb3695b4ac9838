// SPDX-License-Identifier: GPL-2.0
//! elisa-core: the tables and code pages behind elisa's isolation, with no kernel dependency.
//!
//! The kernel module compiles this file unchanged (`#[path]` include from the module's crate
//! root), and cargo builds it for the host tests. Therefore no `crate::` paths here: modules
//! refer to each other with `super::`.
//!
//! What is here, bottom up:
//!
//! - [`addr`]: GVA/GPA/HPA newtypes and page sizes;
//! - [`frame`]: the [`Frames`](frame::Frames) trait through which every builder gets and
//!   touches memory (the module implements it with real pages, the tests in memory);
//! - [`ept`]: 4-level EPT hierarchies with 4K/2M/1G leaves, memory types, execute-only,
//!   MBEC, the A/D policy, holes;
//! - [`eptp`]: EPTP values and the per-vCPU EPTP-list page;
//! - [`paging`]: the trusted guest page tables, 4-level and 5-level;
//! - [`entry`]: which gates may be open for the guest state of a VM entry;
//! - [`apt`]: the Anywhere Page Table, and why colliding CR3 values are harmless (R12);
//! - [`layout`]: the planner that places every trusted page without overlaps (R12, R26);
//! - [`view`]: the gate and sub views of a vCPU, built from a validated layout;
//! - [`gate`]: the gate, sub-entry and sub-exit machine code;
//! - [`verify`]: what the views should map, software EPT and page walkers, and the
//!   isolation invariants, checked over any frame store;
//! - [`dump`]: the views as bytes (the module's debugfs dump), and back.
//!
//! No builder or checker panics on any input, allocates from the heap, or uses `unsafe`.
#![cfg_attr(not(any(test, MODULE)), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod apt;
pub mod dump;
pub mod entry;
pub mod ept;
pub mod eptp;
pub mod error;
pub mod frame;
pub mod gate;
pub mod layout;
pub mod paging;
pub mod verify;
pub mod view;

pub use error::Error;
