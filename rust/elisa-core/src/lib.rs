// SPDX-License-Identifier: GPL-2.0
//! elisa-core: the tables and code pages behind elisa's isolation, with no kernel dependency.
//!
//! The kernel module compiles this file unchanged (`#[path]` include from the module's crate
//! root), and cargo builds it for the host tests. Therefore no `crate::` paths here.
#![cfg_attr(not(any(test, MODULE)), no_std)]
