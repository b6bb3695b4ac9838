// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Rust mirror of `include/uapi/linux/elisa_net.h`, the layout of the elisa switch's
//! regions and its calls (`Documentation/networking.rst`).
//!
//! `tests/net_abi.rs` compiles the C header and checks every size, offset and constant
//! here against it. The switch service includes this file alone (`#[path]`), so it refers
//! to nothing outside itself.

/// `ELISA_NET_MAGIC`: first word of a port and of a config region.
pub const ELISA_NET_MAGIC: u32 = 0x5753_4c45;
/// `ELISA_NET_VERSION`: version of the layout.
pub const ELISA_NET_VERSION: u32 = 1;
/// `ELISA_NET_MAX_PORTS`: most ports of one switch.
pub const ELISA_NET_MAX_PORTS: usize = 7;
/// `ELISA_NET_RING_SLOTS`: slots per ring, a power of two.
pub const ELISA_NET_RING_SLOTS: u32 = 64;
/// `ELISA_NET_SLOT_SIZE`: bytes per slot.
pub const ELISA_NET_SLOT_SIZE: usize = 2048;
/// `ELISA_NET_MIN_FRAME`: shortest frame (the Ethernet header).
pub const ELISA_NET_MIN_FRAME: u32 = 14;
/// `ELISA_NET_MAX_FRAME`: longest frame.
pub const ELISA_NET_MAX_FRAME: u32 = 1518;
/// `ELISA_NET_RINGS`: rings per port.
pub const ELISA_NET_RINGS: usize = 1 + ELISA_NET_MAX_PORTS;
/// `ELISA_NET_RING_SIZE`: bytes per ring.
pub const ELISA_NET_RING_SIZE: usize = ELISA_NET_RING_SLOTS as usize * ELISA_NET_SLOT_SIZE;
/// `ELISA_NET_PORT_SIZE`: bytes of a port region.
pub const ELISA_NET_PORT_SIZE: usize = 4096 + ELISA_NET_RINGS * ELISA_NET_RING_SIZE;
/// `ELISA_NET_CONFIG_SIZE`: bytes of a config region.
pub const ELISA_NET_CONFIG_SIZE: usize = 4096;
/// `ELISA_NET_CONFIG_GVA`: the config region's GVA in the sub view.
pub const ELISA_NET_CONFIG_GVA: u64 = 0xffff_8000_4000_0000;
/// `ELISA_NET_PORT_STRIDE`: distance between two port regions' GVAs.
pub const ELISA_NET_PORT_STRIDE: u64 = 0x20_0000;

/// `ELISA_NET_PORT_GVA(p)`: port `p`'s region in the sub view.
pub const fn elisa_net_port_gva(p: usize) -> u64 {
    ELISA_NET_CONFIG_GVA + ELISA_NET_PORT_STRIDE * (1 + p as u64)
}

/// `ELISA_NET_OP_INFO`: port | ports << 8 | version << 16.
pub const ELISA_NET_OP_INFO: u64 = 1;
/// `ELISA_NET_OP_XMIT`: send the transmit ring's frames, at most RSI.
pub const ELISA_NET_OP_XMIT: u64 = 2;
/// `ELISA_NET_OP_STATS`: the port's counter number RSI.
pub const ELISA_NET_OP_STATS: u64 = 3;

/// `ELISA_NET_STAT_TX_FRAMES`: frames taken from the transmit ring.
pub const ELISA_NET_STAT_TX_FRAMES: usize = 0;
/// `ELISA_NET_STAT_TX_DELIVERED`: copies put into a receive ring.
pub const ELISA_NET_STAT_TX_DELIVERED: usize = 1;
/// `ELISA_NET_STAT_DROP_LENGTH`: frames of a bad length.
pub const ELISA_NET_STAT_DROP_LENGTH: usize = 2;
/// `ELISA_NET_STAT_DROP_SPOOFED`: frames whose source MAC is not the port's.
pub const ELISA_NET_STAT_DROP_SPOOFED: usize = 3;
/// `ELISA_NET_STAT_DROP_NO_PORT`: unicast frames to no port (or to address 0), or to the
/// sender.
pub const ELISA_NET_STAT_DROP_NO_PORT: usize = 4;
/// `ELISA_NET_STAT_DROP_FULL`: copies dropped at a full receive ring.
pub const ELISA_NET_STAT_DROP_FULL: usize = 5;
/// `ELISA_NET_STAT_DROP_BAD_PEER`: copies dropped at a receive ring with invalid indices, or
/// at a port region whose header's magic or port number is wrong.
pub const ELISA_NET_STAT_DROP_BAD_PEER: usize = 6;
/// `ELISA_NET_STAT_RING_ERRORS`: XMIT calls that returned `-EIO`.
pub const ELISA_NET_STAT_RING_ERRORS: usize = 7;
/// `ELISA_NET_STAT_LOCK_STEALS`: locks taken over after [`ELISA_NET_LOCK_STEAL`] waits.
pub const ELISA_NET_STAT_LOCK_STEALS: usize = 8;
/// `ELISA_NET_NR_STATS`: counters per port.
pub const ELISA_NET_NR_STATS: usize = 9;
/// `ELISA_NET_LOCK_STEAL`: `-EBUSY` answers in a row after which XMIT takes the lock over.
pub const ELISA_NET_LOCK_STEAL: u32 = 1024;

/// `struct elisa_net_ring_idx`: one ring's indices.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaNetRingIdx {
    /// The producer's index.
    pub prod: u32,
    /// 0.
    pub pad0: [u32; 15],
    /// The consumer's index.
    pub cons: u32,
    /// 0.
    pub pad1: [u32; 15],
}

/// `struct elisa_net_port`: the header page of a port region.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaNetPort {
    /// [`ELISA_NET_MAGIC`].
    pub magic: u32,
    /// [`ELISA_NET_VERSION`].
    pub version: u32,
    /// This port's number: the switch writes into this port's rings only where this and
    /// `magic` name it (a guard against a wrong layout; the port's guest can write it).
    pub port: u32,
    /// Ports of the switch.
    pub nr_ports: u32,
    /// This port's MAC address, for the guest; the switch uses the config's `macs`.
    pub mac: [u8; 6],
    /// 0.
    pub pad: [u8; 2],
    /// This port's secret, written by the host (`ElisaNetConfig::tokens`).
    pub token: u64,
    /// 0.
    pub reserved: [u64; 4],
    /// Ring 0, the transmit ring.
    pub tx: ElisaNetRingIdx,
    /// `rx[s]`: ring 1 + s, frames from port s.
    pub rx: [ElisaNetRingIdx; ELISA_NET_MAX_PORTS],
}

/// `struct elisa_net_slot`'s header; the frame follows at [`SLOT_DATA`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaNetSlotHdr {
    /// The frame's length.
    pub len: u32,
    /// 0.
    pub flags: u32,
    /// 0.
    pub reserved: u64,
}

/// Offset of `struct elisa_net_slot`'s `data`.
pub const SLOT_DATA: usize = core::mem::size_of::<ElisaNetSlotHdr>();

/// `struct elisa_net_config`: a VM's config region.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElisaNetConfig {
    /// [`ELISA_NET_MAGIC`].
    pub magic: u32,
    /// [`ELISA_NET_VERSION`].
    pub version: u32,
    /// This VM's port number.
    pub port: u32,
    /// Ports of the switch.
    pub nr_ports: u32,
    /// The static forwarding table: port p's MAC in the low 48 bits.
    pub macs: [u64; ELISA_NET_MAX_PORTS],
    /// The switch's lock of this port.
    pub lock: u32,
    /// The switch's transmit consumer index.
    pub tx_cons: u32,
    /// The switch's producer index of this port's ring in each port's region.
    pub rx_prod: [u32; ELISA_NET_MAX_PORTS],
    /// `-EBUSY` answers since the lock was last taken.
    pub lock_waits: u32,
    /// The port's counters.
    pub stats: [u64; ELISA_NET_NR_STATS],
    /// `tokens[d]`: port d's secret, which port d's header must hold for the switch to
    /// write there (0: a set-up without tokens).
    pub tokens: [u64; ELISA_NET_MAX_PORTS],
}

/// A MAC address as [`ElisaNetConfig::macs`] holds it: byte 0 in bits 0-7.
pub const fn mac_to_u64(mac: [u8; 6]) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < 6 {
        v |= (mac[i] as u64) << (8 * i);
        i += 1;
    }
    v
}

/// Offset of ring `r`'s slot `slot` in a port region.
pub const fn slot_offset(ring: usize, slot: u32) -> usize {
    4096 + ring * ELISA_NET_RING_SIZE + (slot % ELISA_NET_RING_SLOTS) as usize * ELISA_NET_SLOT_SIZE
}
