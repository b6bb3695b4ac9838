// SPDX-License-Identifier: GPL-2.0
//! QEMU's fw_cfg device through its x86 I/O ports, read once at module load: the file
//! `opt/elisa/gates`, in which the VMM lists the gates of this VM.
//!
//! The legacy interface (QEMU's `docs/specs/fw_cfg.rst`): a 16-bit write of a selector to
//! port 0x510, then the item's bytes, one per 8-bit read of port 0x511, from its start.
//! Selector 0 holds the signature "QEMU"; selector 0x19 the file directory, a big-endian
//! `u32` count and then one 64-byte entry per file: big-endian `u32` size, `u16` selector,
//! `u16` reserved, a NUL-padded name of 56 bytes. Every port access is a VM exit; the file
//! is a few hundred bytes, read once.
//!
//! Nothing else in the test kernel uses fw_cfg (no `qemu_fw_cfg` driver); a concurrent
//! user would interleave selections, and the module would then see garbage, which the
//! parser refuses.

use crate::elisa_guest::param::MAX_TEXT_LEN;
use core::arch::asm;
use kernel::prelude::*;

const PORT_SELECTOR: u16 = 0x510;
const PORT_DATA: u16 = 0x511;
const SELECT_SIGNATURE: u16 = 0x0000;
const SELECT_FILE_DIR: u16 = 0x0019;
/// The name of the gates file.
pub(crate) const GATES_FILE: &[u8] = b"opt/elisa/gates";
/// Bytes of a name in a directory entry.
const NAME_LEN: usize = 56;
/// Directory entries looked at, at most (QEMU has a few dozen files).
const MAX_FILES: u32 = 4096;

/// What the fw_cfg device has for us.
pub(crate) enum Found {
    /// No fw_cfg device answered (no "QEMU" signature).
    NoDevice,
    /// The device has no `opt/elisa/gates`.
    NoFile,
    /// The file's bytes.
    File(KVec<u8>),
}

/// Selects item `key`.
fn select(key: u16) {
    // SAFETY: a 16-bit write to the fw_cfg selector port: it touches no memory, and on a
    // machine without fw_cfg (only probed in a VM, or when the admin asks) nothing decodes
    // it.
    unsafe {
        asm!("out dx, ax", in("dx") PORT_SELECTOR, in("ax") key,
             options(nomem, nostack, preserves_flags))
    };
}

/// The next byte of the selected item.
fn read_byte() -> u8 {
    let v: u8;
    // SAFETY: an 8-bit read of the fw_cfg data port; it touches no memory.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") PORT_DATA,
             options(nomem, nostack, preserves_flags))
    };
    v
}

fn read_into(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *b = read_byte();
    }
}

/// Reads `opt/elisa/gates`.
///
/// # Errors
///
/// `EINVAL` (logged) when the file is longer than the parser accepts; `ENOMEM`.
pub(crate) fn read_gates_file() -> Result<Found> {
    let mut sig = [0u8; 4];
    select(SELECT_SIGNATURE);
    read_into(&mut sig);
    if &sig != b"QEMU" {
        return Ok(Found::NoDevice);
    }
    select(SELECT_FILE_DIR);
    let mut count = [0u8; 4];
    read_into(&mut count);
    let count = u32::from_be_bytes(count).min(MAX_FILES);
    let mut hit = None;
    for _ in 0..count {
        let mut entry = [0u8; 64];
        read_into(&mut entry);
        // Constant indexes into an array: checked when compiling.
        let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let key = u16::from_be_bytes([entry[4], entry[5]]);
        let name = entry.get(8..8 + NAME_LEN).unwrap_or(&[]);
        let len = name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        if name.get(..len) == Some(GATES_FILE) {
            hit = Some((size, key));
            break;
        }
    }
    let Some((size, key)) = hit else {
        return Ok(Found::NoFile);
    };
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > MAX_TEXT_LEN {
        pr_err!(
            "fw_cfg {}: {} bytes, more than {}\n",
            "opt/elisa/gates",
            size,
            MAX_TEXT_LEN
        );
        return Err(EINVAL);
    }
    let mut text = KVec::with_capacity(size, GFP_KERNEL)?;
    select(key);
    for _ in 0..size {
        text.push(read_byte(), GFP_KERNEL)?;
    }
    Ok(Found::File(text))
}
