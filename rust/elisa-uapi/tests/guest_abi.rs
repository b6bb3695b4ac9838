// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The Rust mirror must match include/uapi/linux/elisa_guest.h: compile a C program against
//! the header (64-bit, and 32-bit where the compiler can), print sizes, offsets and
//! constants, and compare them with the Rust values.

mod common;

use elisa_uapi::guest::*;
use std::collections::HashMap;
use std::mem::{align_of, offset_of, size_of};

const PROBES: &[&str] = &[
    "P(\"ELISA_GUEST_API_VERSION\", ELISA_GUEST_API_VERSION)",
    "P(\"ELISA_GUEST_IOCTL_TYPE\", ELISA_GUEST_IOCTL_TYPE)",
    "P(\"ELISA_GUEST_MAX_GATES\", ELISA_GUEST_MAX_GATES)",
    "P(\"ELISA_GUEST_NAME_SIZE\", ELISA_GUEST_NAME_SIZE)",
    "P(\"ELISA_GUEST_CALL_RAW\", ELISA_GUEST_CALL_RAW)",
    "P(\"ELISA_GUEST_GET_INFO\", ELISA_GUEST_GET_INFO)",
    "P(\"ELISA_GUEST_GET_GATE\", ELISA_GUEST_GET_GATE)",
    "P(\"ELISA_GUEST_CALL\", ELISA_GUEST_CALL)",
    "S(elisa_guest_info)",
    "O(elisa_guest_info, flags)",
    "O(elisa_guest_info, api_version)",
    "O(elisa_guest_info, nr_gates)",
    "O(elisa_guest_info, reserved0)",
    "O(elisa_guest_info, reserved)",
    "S(elisa_guest_gate)",
    "O(elisa_guest_gate, flags)",
    "O(elisa_guest_gate, gate)",
    "O(elisa_guest_gate, entry_gva)",
    "O(elisa_guest_gate, index)",
    "O(elisa_guest_gate, reserved0)",
    "O(elisa_guest_gate, calls)",
    "O(elisa_guest_gate, not_entered)",
    "O(elisa_guest_gate, name)",
    "O(elisa_guest_gate, reserved)",
    "S(elisa_guest_call)",
    "O(elisa_guest_call, flags)",
    "O(elisa_guest_call, gate)",
    "O(elisa_guest_call, args)",
    "O(elisa_guest_call, ret)",
    "O(elisa_guest_call, reserved)",
];

fn c_layout(bits: &str) -> Option<HashMap<String, u64>> {
    common::c_layout("elisa_guest.h", PROBES, bits)
}

fn rust_layout() -> Vec<(&'static str, u64)> {
    macro_rules! o {
        ($t:ty, $f:ident) => {
            offset_of!($t, $f) as u64
        };
    }
    vec![
        ("ELISA_GUEST_API_VERSION", ELISA_GUEST_API_VERSION.into()),
        ("ELISA_GUEST_IOCTL_TYPE", ELISA_GUEST_IOCTL_TYPE.into()),
        ("ELISA_GUEST_MAX_GATES", ELISA_GUEST_MAX_GATES.into()),
        ("ELISA_GUEST_NAME_SIZE", ELISA_GUEST_NAME_SIZE as u64),
        ("ELISA_GUEST_CALL_RAW", ELISA_GUEST_CALL_RAW.into()),
        ("ELISA_GUEST_GET_INFO", ELISA_GUEST_GET_INFO.into()),
        ("ELISA_GUEST_GET_GATE", ELISA_GUEST_GET_GATE.into()),
        ("ELISA_GUEST_CALL", ELISA_GUEST_CALL.into()),
        ("elisa_guest_info.size", size_of::<ElisaGuestInfo>() as u64),
        ("elisa_guest_info.flags", o!(ElisaGuestInfo, flags)),
        (
            "elisa_guest_info.api_version",
            o!(ElisaGuestInfo, api_version),
        ),
        ("elisa_guest_info.nr_gates", o!(ElisaGuestInfo, nr_gates)),
        ("elisa_guest_info.reserved0", o!(ElisaGuestInfo, reserved0)),
        ("elisa_guest_info.reserved", o!(ElisaGuestInfo, reserved)),
        ("elisa_guest_gate.size", size_of::<ElisaGuestGate>() as u64),
        ("elisa_guest_gate.flags", o!(ElisaGuestGate, flags)),
        ("elisa_guest_gate.gate", o!(ElisaGuestGate, gate)),
        ("elisa_guest_gate.entry_gva", o!(ElisaGuestGate, entry_gva)),
        ("elisa_guest_gate.index", o!(ElisaGuestGate, index)),
        ("elisa_guest_gate.reserved0", o!(ElisaGuestGate, reserved0)),
        ("elisa_guest_gate.calls", o!(ElisaGuestGate, calls)),
        (
            "elisa_guest_gate.not_entered",
            o!(ElisaGuestGate, not_entered),
        ),
        ("elisa_guest_gate.name", o!(ElisaGuestGate, name)),
        ("elisa_guest_gate.reserved", o!(ElisaGuestGate, reserved)),
        ("elisa_guest_call.size", size_of::<ElisaGuestCall>() as u64),
        ("elisa_guest_call.flags", o!(ElisaGuestCall, flags)),
        ("elisa_guest_call.gate", o!(ElisaGuestCall, gate)),
        ("elisa_guest_call.args", o!(ElisaGuestCall, args)),
        ("elisa_guest_call.ret", o!(ElisaGuestCall, ret)),
        ("elisa_guest_call.reserved", o!(ElisaGuestCall, reserved)),
    ]
}

#[test]
fn rust_mirror_matches_c_header() {
    let c = c_layout("-m64").unwrap();
    let rust = rust_layout();
    assert_eq!(rust.len(), PROBES.len(), "every probe is compared");
    for (name, value) in rust {
        assert_eq!(c.get(name), Some(&value), "{name}");
    }
}

/// The layout does not depend on the caller's word size (no compat ioctl needed).
#[test]
fn same_layout_for_32_bit_callers() {
    let c64 = c_layout("-m64").unwrap();
    for bits in ["-m32", "-mx32"] {
        common::assert_same_layout("elisa_guest.h", &c64, bits);
    }
}

#[test]
fn sizes_and_alignment() {
    assert_eq!(size_of::<ElisaGuestInfo>(), 48);
    assert_eq!(size_of::<ElisaGuestGate>(), 104);
    assert_eq!(size_of::<ElisaGuestCall>(), 72);
    for a in [
        align_of::<ElisaGuestInfo>(),
        align_of::<ElisaGuestGate>(),
        align_of::<ElisaGuestCall>(),
    ] {
        assert_eq!(a, 8);
    }
}

#[test]
fn checks() {
    use elisa_uapi::guest::check;
    assert!(check::info(&ElisaGuestInfo::default()).is_ok());
    let bad = ElisaGuestInfo {
        reserved0: 1,
        ..Default::default()
    };
    assert!(check::info(&bad).is_err());
    let out = ElisaGuestGate {
        entry_gva: 1,
        calls: 2,
        name: [b'x'; 32],
        ..Default::default()
    };
    assert!(check::gate(&out).is_ok());
    assert!(check::gate(&ElisaGuestGate {
        reserved: [0, 0, 0, 1],
        ..Default::default()
    })
    .is_err());
    let mut call = ElisaGuestCall {
        flags: ELISA_GUEST_CALL_RAW,
        args: [u64::MAX; 5],
        ret: -1,
        ..Default::default()
    };
    assert!(check::call(&call).is_ok());
    call.flags = 2;
    assert!(check::call(&call).is_err());
    call.flags = 0;
    call.reserved[1] = 1;
    assert!(check::call(&call).is_err());
}
