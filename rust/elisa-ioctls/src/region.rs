// SPDX-License-Identifier: Apache-2.0 OR MIT
//! [`Region`]: an elisa-region fd.

use crate::fd_object;
use std::os::fd::OwnedFd;

/// Pinned pages of a memfd (`ELISA_CREATE_REGION`), to be mapped by services
/// ([`ServiceSpec::region`](crate::ServiceSpec::region)). The host keeps its own access
/// through its mapping of the memfd. The pages stay pinned until this fd and every
/// service that maps the region are gone.
#[derive(Debug)]
pub struct Region {
    fd: OwnedFd,
}
fd_object!(Region, crate::sys::Kind::Region);
