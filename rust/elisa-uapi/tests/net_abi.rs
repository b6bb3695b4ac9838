// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The Rust mirror must match include/uapi/linux/elisa_net.h: sizes, offsets and
//! constants, from a C program compiled against the header (64-bit, and 32-bit where the
//! compiler can: a 32-bit guest driver sees the same rings).

mod common;

use elisa_uapi::net::*;
use std::mem::{offset_of, size_of};

const PROBES: &[&str] = &[
    "P(\"ELISA_NET_MAGIC\", ELISA_NET_MAGIC)",
    "P(\"ELISA_NET_VERSION\", ELISA_NET_VERSION)",
    "P(\"ELISA_NET_MAX_PORTS\", ELISA_NET_MAX_PORTS)",
    "P(\"ELISA_NET_RING_SLOTS\", ELISA_NET_RING_SLOTS)",
    "P(\"ELISA_NET_SLOT_SIZE\", ELISA_NET_SLOT_SIZE)",
    "P(\"ELISA_NET_MIN_FRAME\", ELISA_NET_MIN_FRAME)",
    "P(\"ELISA_NET_MAX_FRAME\", ELISA_NET_MAX_FRAME)",
    "P(\"ELISA_NET_RINGS\", ELISA_NET_RINGS)",
    "P(\"ELISA_NET_RING_SIZE\", ELISA_NET_RING_SIZE)",
    "P(\"ELISA_NET_PORT_SIZE\", ELISA_NET_PORT_SIZE)",
    "P(\"ELISA_NET_CONFIG_SIZE\", ELISA_NET_CONFIG_SIZE)",
    "P(\"ELISA_NET_CONFIG_GVA\", ELISA_NET_CONFIG_GVA)",
    "P(\"ELISA_NET_PORT_STRIDE\", ELISA_NET_PORT_STRIDE)",
    "P(\"ELISA_NET_OP_INFO\", ELISA_NET_OP_INFO)",
    "P(\"ELISA_NET_OP_XMIT\", ELISA_NET_OP_XMIT)",
    "P(\"ELISA_NET_OP_STATS\", ELISA_NET_OP_STATS)",
    "P(\"ELISA_NET_STAT_TX_FRAMES\", ELISA_NET_STAT_TX_FRAMES)",
    "P(\"ELISA_NET_STAT_TX_DELIVERED\", ELISA_NET_STAT_TX_DELIVERED)",
    "P(\"ELISA_NET_STAT_DROP_LENGTH\", ELISA_NET_STAT_DROP_LENGTH)",
    "P(\"ELISA_NET_STAT_DROP_SPOOFED\", ELISA_NET_STAT_DROP_SPOOFED)",
    "P(\"ELISA_NET_STAT_DROP_NO_PORT\", ELISA_NET_STAT_DROP_NO_PORT)",
    "P(\"ELISA_NET_STAT_DROP_FULL\", ELISA_NET_STAT_DROP_FULL)",
    "P(\"ELISA_NET_STAT_DROP_BAD_PEER\", ELISA_NET_STAT_DROP_BAD_PEER)",
    "P(\"ELISA_NET_STAT_RING_ERRORS\", ELISA_NET_STAT_RING_ERRORS)",
    "P(\"ELISA_NET_NR_STATS\", ELISA_NET_NR_STATS)",
    "P(\"ELISA_NET_STAT_LOCK_STEALS\", ELISA_NET_STAT_LOCK_STEALS)",
    "P(\"ELISA_NET_LOCK_STEAL\", ELISA_NET_LOCK_STEAL)",
    "P(\"ELISA_NET_PORT_GVA(0)\", ELISA_NET_PORT_GVA(0))",
    "P(\"ELISA_NET_PORT_GVA(1)\", ELISA_NET_PORT_GVA(1))",
    "P(\"ELISA_NET_PORT_GVA(2)\", ELISA_NET_PORT_GVA(2))",
    "P(\"ELISA_NET_PORT_GVA(3)\", ELISA_NET_PORT_GVA(3))",
    "P(\"ELISA_NET_PORT_GVA(4)\", ELISA_NET_PORT_GVA(4))",
    "P(\"ELISA_NET_PORT_GVA(5)\", ELISA_NET_PORT_GVA(5))",
    "P(\"ELISA_NET_PORT_GVA(6)\", ELISA_NET_PORT_GVA(6))",
    "S(elisa_net_ring_idx)",
    "O(elisa_net_ring_idx, prod)",
    "O(elisa_net_ring_idx, pad0)",
    "O(elisa_net_ring_idx, cons)",
    "O(elisa_net_ring_idx, pad1)",
    "S(elisa_net_port)",
    "O(elisa_net_port, magic)",
    "O(elisa_net_port, version)",
    "O(elisa_net_port, port)",
    "O(elisa_net_port, nr_ports)",
    "O(elisa_net_port, mac)",
    "O(elisa_net_port, pad)",
    "O(elisa_net_port, token)",
    "O(elisa_net_port, reserved)",
    "O(elisa_net_port, tx)",
    "O(elisa_net_port, rx)",
    "S(elisa_net_config)",
    "O(elisa_net_config, magic)",
    "O(elisa_net_config, version)",
    "O(elisa_net_config, port)",
    "O(elisa_net_config, nr_ports)",
    "O(elisa_net_config, macs)",
    "O(elisa_net_config, lock)",
    "O(elisa_net_config, tx_cons)",
    "O(elisa_net_config, rx_prod)",
    "O(elisa_net_config, lock_waits)",
    "O(elisa_net_config, stats)",
    "O(elisa_net_config, tokens)",
    "S(elisa_net_slot)",
    "O(elisa_net_slot, len)",
    "O(elisa_net_slot, flags)",
    "O(elisa_net_slot, reserved)",
    "O(elisa_net_slot, data)",
];

// The constants are u32, usize and u64: one cast for all.
#[allow(clippy::unnecessary_cast)]
fn rust_layout() -> Vec<(&'static str, u64)> {
    vec![
        ("ELISA_NET_MAGIC", ELISA_NET_MAGIC as u64),
        ("ELISA_NET_VERSION", ELISA_NET_VERSION as u64),
        ("ELISA_NET_MAX_PORTS", ELISA_NET_MAX_PORTS as u64),
        ("ELISA_NET_RING_SLOTS", ELISA_NET_RING_SLOTS as u64),
        ("ELISA_NET_SLOT_SIZE", ELISA_NET_SLOT_SIZE as u64),
        ("ELISA_NET_MIN_FRAME", ELISA_NET_MIN_FRAME as u64),
        ("ELISA_NET_MAX_FRAME", ELISA_NET_MAX_FRAME as u64),
        ("ELISA_NET_RINGS", ELISA_NET_RINGS as u64),
        ("ELISA_NET_RING_SIZE", ELISA_NET_RING_SIZE as u64),
        ("ELISA_NET_PORT_SIZE", ELISA_NET_PORT_SIZE as u64),
        ("ELISA_NET_CONFIG_SIZE", ELISA_NET_CONFIG_SIZE as u64),
        ("ELISA_NET_CONFIG_GVA", ELISA_NET_CONFIG_GVA as u64),
        ("ELISA_NET_PORT_STRIDE", ELISA_NET_PORT_STRIDE as u64),
        ("ELISA_NET_OP_INFO", ELISA_NET_OP_INFO as u64),
        ("ELISA_NET_OP_XMIT", ELISA_NET_OP_XMIT as u64),
        ("ELISA_NET_OP_STATS", ELISA_NET_OP_STATS as u64),
        ("ELISA_NET_STAT_TX_FRAMES", ELISA_NET_STAT_TX_FRAMES as u64),
        (
            "ELISA_NET_STAT_TX_DELIVERED",
            ELISA_NET_STAT_TX_DELIVERED as u64,
        ),
        (
            "ELISA_NET_STAT_DROP_LENGTH",
            ELISA_NET_STAT_DROP_LENGTH as u64,
        ),
        (
            "ELISA_NET_STAT_DROP_SPOOFED",
            ELISA_NET_STAT_DROP_SPOOFED as u64,
        ),
        (
            "ELISA_NET_STAT_DROP_NO_PORT",
            ELISA_NET_STAT_DROP_NO_PORT as u64,
        ),
        ("ELISA_NET_STAT_DROP_FULL", ELISA_NET_STAT_DROP_FULL as u64),
        (
            "ELISA_NET_STAT_DROP_BAD_PEER",
            ELISA_NET_STAT_DROP_BAD_PEER as u64,
        ),
        (
            "ELISA_NET_STAT_RING_ERRORS",
            ELISA_NET_STAT_RING_ERRORS as u64,
        ),
        ("ELISA_NET_NR_STATS", ELISA_NET_NR_STATS as u64),
        (
            "ELISA_NET_STAT_LOCK_STEALS",
            ELISA_NET_STAT_LOCK_STEALS as u64,
        ),
        ("ELISA_NET_LOCK_STEAL", ELISA_NET_LOCK_STEAL as u64),
        ("ELISA_NET_PORT_GVA(0)", elisa_net_port_gva(0)),
        ("ELISA_NET_PORT_GVA(1)", elisa_net_port_gva(1)),
        ("ELISA_NET_PORT_GVA(2)", elisa_net_port_gva(2)),
        ("ELISA_NET_PORT_GVA(3)", elisa_net_port_gva(3)),
        ("ELISA_NET_PORT_GVA(4)", elisa_net_port_gva(4)),
        ("ELISA_NET_PORT_GVA(5)", elisa_net_port_gva(5)),
        ("ELISA_NET_PORT_GVA(6)", elisa_net_port_gva(6)),
        (
            "elisa_net_ring_idx.size",
            size_of::<ElisaNetRingIdx>() as u64,
        ),
        (
            "elisa_net_ring_idx.prod",
            offset_of!(ElisaNetRingIdx, prod) as u64,
        ),
        (
            "elisa_net_ring_idx.pad0",
            offset_of!(ElisaNetRingIdx, pad0) as u64,
        ),
        (
            "elisa_net_ring_idx.cons",
            offset_of!(ElisaNetRingIdx, cons) as u64,
        ),
        (
            "elisa_net_ring_idx.pad1",
            offset_of!(ElisaNetRingIdx, pad1) as u64,
        ),
        ("elisa_net_port.size", size_of::<ElisaNetPort>() as u64),
        (
            "elisa_net_port.magic",
            offset_of!(ElisaNetPort, magic) as u64,
        ),
        (
            "elisa_net_port.version",
            offset_of!(ElisaNetPort, version) as u64,
        ),
        ("elisa_net_port.port", offset_of!(ElisaNetPort, port) as u64),
        (
            "elisa_net_port.nr_ports",
            offset_of!(ElisaNetPort, nr_ports) as u64,
        ),
        ("elisa_net_port.mac", offset_of!(ElisaNetPort, mac) as u64),
        ("elisa_net_port.pad", offset_of!(ElisaNetPort, pad) as u64),
        (
            "elisa_net_port.token",
            offset_of!(ElisaNetPort, token) as u64,
        ),
        (
            "elisa_net_port.reserved",
            offset_of!(ElisaNetPort, reserved) as u64,
        ),
        ("elisa_net_port.tx", offset_of!(ElisaNetPort, tx) as u64),
        ("elisa_net_port.rx", offset_of!(ElisaNetPort, rx) as u64),
        ("elisa_net_config.size", size_of::<ElisaNetConfig>() as u64),
        (
            "elisa_net_config.magic",
            offset_of!(ElisaNetConfig, magic) as u64,
        ),
        (
            "elisa_net_config.version",
            offset_of!(ElisaNetConfig, version) as u64,
        ),
        (
            "elisa_net_config.port",
            offset_of!(ElisaNetConfig, port) as u64,
        ),
        (
            "elisa_net_config.nr_ports",
            offset_of!(ElisaNetConfig, nr_ports) as u64,
        ),
        (
            "elisa_net_config.macs",
            offset_of!(ElisaNetConfig, macs) as u64,
        ),
        (
            "elisa_net_config.lock",
            offset_of!(ElisaNetConfig, lock) as u64,
        ),
        (
            "elisa_net_config.tx_cons",
            offset_of!(ElisaNetConfig, tx_cons) as u64,
        ),
        (
            "elisa_net_config.rx_prod",
            offset_of!(ElisaNetConfig, rx_prod) as u64,
        ),
        (
            "elisa_net_config.lock_waits",
            offset_of!(ElisaNetConfig, lock_waits) as u64,
        ),
        (
            "elisa_net_config.stats",
            offset_of!(ElisaNetConfig, stats) as u64,
        ),
        (
            "elisa_net_config.tokens",
            offset_of!(ElisaNetConfig, tokens) as u64,
        ),
        ("elisa_net_slot.size", ELISA_NET_SLOT_SIZE as u64),
        (
            "elisa_net_slot.len",
            offset_of!(ElisaNetSlotHdr, len) as u64,
        ),
        (
            "elisa_net_slot.flags",
            offset_of!(ElisaNetSlotHdr, flags) as u64,
        ),
        (
            "elisa_net_slot.reserved",
            offset_of!(ElisaNetSlotHdr, reserved) as u64,
        ),
        ("elisa_net_slot.data", SLOT_DATA as u64),
    ]
}

#[test]
fn rust_mirror_matches_c_header() {
    let c = common::c_layout("elisa_net.h", PROBES, "-m64").unwrap();
    let rust = rust_layout();
    assert_eq!(rust.len(), PROBES.len(), "every probe is compared");
    for (name, value) in rust {
        assert_eq!(c.get(name), Some(&value), "{name}");
    }
}

#[test]
fn same_layout_for_32_bit_guests() {
    let c64 = common::c_layout("elisa_net.h", PROBES, "-m64").unwrap();
    for bits in ["-m32", "-mx32"] {
        common::assert_same_layout("elisa_net.h", &c64, bits);
    }
}

/// What the layout relies on, checked when this file compiles.
const _: () = {
    // the header page holds the port's header, the config region the config
    assert!(size_of::<ElisaNetPort>() <= 4096);
    assert!(size_of::<ElisaNetConfig>() <= ELISA_NET_CONFIG_SIZE);
    // a port region fits between two port GVAs, and the config below the first
    assert!(ELISA_NET_PORT_SIZE as u64 <= ELISA_NET_PORT_STRIDE);
    assert!(ELISA_NET_CONFIG_SIZE as u64 <= ELISA_NET_PORT_STRIDE);
    assert!(ELISA_NET_PORT_SIZE % 4096 == 0);
    assert!(ELISA_NET_RING_SLOTS.is_power_of_two());
    assert!(SLOT_DATA + ELISA_NET_MAX_FRAME as usize <= ELISA_NET_SLOT_SIZE);
    // a service maps the config region and one region per port
    assert!(ELISA_NET_MAX_PORTS < elisa_uapi::ELISA_SERVICE_MAX_REGIONS);
};

#[test]
fn slots_wrap_and_fill_the_region() {
    assert_eq!(slot_offset(0, ELISA_NET_RING_SLOTS), slot_offset(0, 0));
    assert_eq!(
        slot_offset(ELISA_NET_RINGS - 1, ELISA_NET_RING_SLOTS - 1) + ELISA_NET_SLOT_SIZE,
        ELISA_NET_PORT_SIZE
    );
}
