// SPDX-License-Identifier: GPL-2.0
//! Where the gates come from: QEMU's fw_cfg file `opt/elisa/gates`, then the `gate`
//! module parameter (`elisa_guest.gate=<G>:<index>[:<name>],...`). The parsing is the
//! host-tested `elisa_guest::param`; this file only fetches the text and logs.

use crate::elisa_guest::param::{GateList, ParseError};
use crate::fw_cfg::{self, Found};
use crate::shim;
use core::ffi::CStr;
use kernel::prelude::*;

/// When to look at fw_cfg (the `fw_cfg` parameter).
const FW_CFG_OFF: u32 = 0;
const FW_CFG_IN_VM: u32 = 1;

fn refuse(source: &str, e: ParseError) -> Error {
    pr_err!("{}: {}\n", source, e.message());
    EINVAL
}

/// The gates of this guest, fw_cfg's first.
///
/// # Errors
///
/// `EINVAL` (logged) when either source holds anything but a valid list, or both together
/// more than 8 gates or a name twice; `ENOMEM`.
pub(crate) fn gates(cpu: &shim::Cpu, fw_cfg_mode: u32) -> Result<GateList> {
    let mut list = GateList::new();
    let probe = match fw_cfg_mode {
        FW_CFG_OFF => false,
        FW_CFG_IN_VM => cpu.hypervisor != 0,
        _ => true,
    };
    if probe {
        match fw_cfg::read_gates_file()? {
            Found::NoDevice => pr_info!("no fw_cfg device\n"),
            Found::NoFile => pr_info!("fw_cfg has no opt/elisa/gates\n"),
            Found::File(text) => list
                .parse_lines(&text)
                .map_err(|e| refuse("fw_cfg opt/elisa/gates", e))?,
        }
    }
    // SAFETY: the shim returns its NUL-terminated parameter buffer, which is static and
    // not written after the module's parameters were parsed (it is read-only in sysfs).
    let param = unsafe { CStr::from_ptr(shim::elisa_guest_shim_gate_param()) };
    let param = param
        .to_str()
        .map_err(|_| refuse("elisa_guest.gate", ParseError::Text))?;
    list.parse_param(param)
        .map_err(|e| refuse("elisa_guest.gate", e))?;
    Ok(list)
}
