// SPDX-License-Identifier: GPL-2.0
//! The elisa switch: VM-to-VM Ethernet frames moved by a service in the sub view
//! (`include/uapi/linux/elisa_net.h`, `Documentation/networking.rst`).
//!
//! This crate is the switch's whole logic, written against [`Region`], so that the same
//! code runs in two places:
//!
//! - the service (`tools/services/switch`), built for `x86_64-unknown-none` as raw code,
//!   where a [`Region`] is a region mapped in the sub view at a fixed GVA;
//! - the host tests (`tests/`), where a [`Region`] is a checked buffer that panics on any
//!   access out of bounds and records every write, so that property tests can show what a
//!   hostile port can and cannot make the switch do.
//!
//! Trust: the config region is the switch's own (no guest maps it). A port region is its
//! guest's memory: every field the switch reads there is read once, into a local, and
//! checked before use; the switch derives every offset it touches from constants, from
//! its own indices modulo the ring size, and from a length it checked.
#![no_std]

use core::cmp::min;
use core::mem::offset_of;
use elisa_uapi::net::*;

/// Errno values the service returns (negated).
pub mod errno {
    /// No such device: the config region is not set up.
    pub const ENODEV: i64 = 19;
    /// Input/output error: the transmit ring's producer index is invalid.
    pub const EIO: i64 = 5;
    /// Resource busy: another vCPU of this VM is in the switch.
    pub const EBUSY: i64 = 16;
    /// Invalid argument: an unknown operation or counter.
    pub const EINVAL: i64 = 22;
}

/// One region the switch reads and writes: the config region or a port region.
///
/// Offsets are bytes from the region's start. An implementation must not read or write
/// outside the region whatever the offset (the service's checks every access); the switch
/// never asks it to, which the host tests check.
pub trait Region {
    /// Reads the `u32` at `off` (one load).
    fn load_u32(&self, off: usize) -> u32;
    /// Writes the `u32` at `off` (one store).
    fn store_u32(&self, off: usize, val: u32);
    /// Reads the `u64` at `off`.
    fn load_u64(&self, off: usize) -> u64;
    /// Writes the `u64` at `off`.
    fn store_u64(&self, off: usize, val: u64);
    /// Copies `buf.len()` bytes from `off` into `buf`.
    fn read(&self, off: usize, buf: &mut [u8]);
    /// Copies `buf` to `off`.
    fn write(&self, off: usize, buf: &[u8]);
    /// Copies `len` bytes from `src` at `src_off` to `off` of this region.
    fn copy_from(&self, off: usize, src: &Self, src_off: usize, len: usize);
    /// Sets the `u32` at `off` from 0 to 1 atomically; false if it was not 0.
    fn try_lock(&self, off: usize) -> bool;
    /// Adds `val` to the `u32` at `off` atomically; returns the new value.
    fn add_u32(&self, off: usize, val: u32) -> u32;
    /// Sets the `u32` at `off` to 0 atomically, after every access before it (release).
    fn unlock(&self, off: usize);
}

/// Whether `len` bytes at `off` lie inside a region of `size` bytes, without overflow
/// whatever the three are: the bound a [`Region`] implementation checks every access
/// against (the service's, in `tools/services/switch`).
///
/// ```
/// use elisa_switch::in_region;
/// assert!(in_region(0x1000, 0xffc, 4));
/// assert!(!in_region(0x1000, 0xffd, 4));
/// assert!(!in_region(0x1000, usize::MAX, 2));
/// assert!(in_region(0x1000, 0x1000, 0));
/// ```
pub const fn in_region(size: usize, off: usize, len: usize) -> bool {
    off <= size && len <= size - off
}

/// Offsets in the config region.
mod cfg {
    use super::*;
    pub(crate) const MAGIC: usize = offset_of!(ElisaNetConfig, magic);
    pub(crate) const VERSION: usize = offset_of!(ElisaNetConfig, version);
    pub(crate) const PORT: usize = offset_of!(ElisaNetConfig, port);
    pub(crate) const NR_PORTS: usize = offset_of!(ElisaNetConfig, nr_ports);
    pub(crate) const LOCK: usize = offset_of!(ElisaNetConfig, lock);
    pub(crate) const TX_CONS: usize = offset_of!(ElisaNetConfig, tx_cons);
    pub(crate) const LOCK_WAITS: usize = offset_of!(ElisaNetConfig, lock_waits);

    pub(crate) const fn mac(p: usize) -> usize {
        offset_of!(ElisaNetConfig, macs) + 8 * p
    }
    pub(crate) const fn rx_prod(d: usize) -> usize {
        offset_of!(ElisaNetConfig, rx_prod) + 4 * d
    }
    pub(crate) const fn stat(s: usize) -> usize {
        offset_of!(ElisaNetConfig, stats) + 8 * s
    }
    pub(crate) const fn token(p: usize) -> usize {
        offset_of!(ElisaNetConfig, tokens) + 8 * p
    }
}

/// Offsets in a port region.
pub mod port {
    use super::*;
    const TX: usize = offset_of!(ElisaNetPort, tx);
    const RX: usize = offset_of!(ElisaNetPort, rx);
    const PROD: usize = offset_of!(ElisaNetRingIdx, prod);
    const CONS: usize = offset_of!(ElisaNetRingIdx, cons);
    const IDX: usize = core::mem::size_of::<ElisaNetRingIdx>();

    /// The transmit ring's producer index (the guest's).
    pub const TX_PROD: usize = TX + PROD;
    /// The transmit ring's consumer index (published by the switch).
    pub const TX_CONS: usize = TX + CONS;

    /// Receive ring `1 + s`'s producer index (published by the switch).
    pub const fn rx_prod(s: usize) -> usize {
        RX + IDX * s + PROD
    }
    /// Receive ring `1 + s`'s consumer index (the guest's).
    pub const fn rx_cons(s: usize) -> usize {
        RX + IDX * s + CONS
    }
    /// The header's magic, port number and token (`init_port` writes them).
    pub const MAGIC: usize = offset_of!(ElisaNetPort, magic);
    pub const PORT: usize = offset_of!(ElisaNetPort, port);
    pub const TOKEN: usize = offset_of!(ElisaNetPort, token);
}

/// Length of an Ethernet header.
const ETH_HLEN: usize = 14;

/// A MAC address of a frame's header, as [`ElisaNetConfig::macs`] holds it.
fn mac_at(hdr: &[u8; ETH_HLEN], at: usize) -> u64 {
    let mut m = [0u8; 6];
    for (i, b) in m.iter_mut().enumerate() {
        *b = hdr.get(at + i).copied().unwrap_or(0);
    }
    mac_to_u64(m)
}

/// The checked config: this VM's port and the number of ports.
struct Config {
    me: usize,
    nr_ports: usize,
}

impl Config {
    fn read<R: Region>(cfg: &R) -> Option<Self> {
        let ok = cfg.load_u32(cfg::MAGIC) == ELISA_NET_MAGIC
            && cfg.load_u32(cfg::VERSION) == ELISA_NET_VERSION;
        let me = cfg.load_u32(cfg::PORT) as usize;
        let nr_ports = cfg.load_u32(cfg::NR_PORTS) as usize;
        (ok && (2..=ELISA_NET_MAX_PORTS).contains(&nr_ports) && me < nr_ports)
            .then_some(Config { me, nr_ports })
    }
}

fn count<R: Region>(cfg: &R, stat: usize, n: u64) {
    let off = cfg::stat(stat);
    cfg.store_u64(off, cfg.load_u64(off).wrapping_add(n));
}

/// One call of the service: `op` (RDI) and `arg` (RSI) as the guest passed them.
/// `cfg` is this VM's config region, `ports[p]` port p's region (`ports` may be longer
/// than the switch's number of ports; regions past it are never touched).
pub fn call<R: Region>(cfg: &R, ports: &[R], op: u64, arg: u64) -> i64 {
    let Some(c) = Config::read(cfg).filter(|c| c.nr_ports <= ports.len()) else {
        return -errno::ENODEV;
    };
    match op {
        ELISA_NET_OP_INFO => (c.me | c.nr_ports << 8 | (ELISA_NET_VERSION as usize) << 16) as i64,
        ELISA_NET_OP_XMIT => {
            if !lock(cfg) {
                return -errno::EBUSY;
            }
            let r = xmit(cfg, ports, &c, arg);
            cfg.unlock(cfg::LOCK);
            r
        }
        ELISA_NET_OP_STATS if arg < ELISA_NET_NR_STATS as u64 => {
            (cfg.load_u64(cfg::stat(arg as usize)) & (i64::MAX as u64)) as i64
        }
        _ => -errno::EINVAL,
    }
}

/// Takes this port's lock, or takes it over after [`ELISA_NET_LOCK_STEAL`] failures in a
/// row: a call that elisa failed back never releases it (`linux/elisa_net.h`, struct
/// `elisa_net_config`). Only this VM's calls take it, so a takeover can only make this
/// VM's own calls consume this port's transmit ring at once: two, or more after further
/// takeovers while a holder stalls, and a stalled holder's release may free a later
/// holder's lock (a review); every offset still stays in this port's own rings.
///
/// The count of failures is zeroed with an atomic store ([`Region::unlock`]): other vCPUs
/// add to it meanwhile, and a plain store beside their atomic adds is a data race.
fn lock<R: Region>(cfg: &R) -> bool {
    if cfg.try_lock(cfg::LOCK) {
        cfg.unlock(cfg::LOCK_WAITS);
        return true;
    }
    if cfg.add_u32(cfg::LOCK_WAITS, 1) < ELISA_NET_LOCK_STEAL {
        return false;
    }
    cfg.unlock(cfg::LOCK_WAITS);
    count(cfg, ELISA_NET_STAT_LOCK_STEALS, 1);
    true
}

/// `ELISA_NET_OP_XMIT`, with this port's lock held.
fn xmit<R: Region>(cfg: &R, ports: &[R], c: &Config, budget: u64) -> i64 {
    let Some(mine) = ports.get(c.me) else {
        return -errno::ENODEV;
    };
    // As for a receiver (`deliver`): only a port region of this port is read and written.
    if !is_port_region(cfg, mine, c.me) {
        return -errno::ENODEV;
    }
    let cons = cfg.load_u32(cfg::TX_CONS);
    // The guest's producer index, read once.
    let avail = mine.load_u32(port::TX_PROD).wrapping_sub(cons);
    if avail > ELISA_NET_RING_SLOTS {
        count(cfg, ELISA_NET_STAT_RING_ERRORS, 1);
        // Published again, so that a guest whose port header was overwritten (its own
        // software, or a reboot into a driver that clears it) resynchronises to this
        // consumer index rather than to the overwritten one (`linux/elisa_net.h`).
        mine.store_u32(port::TX_CONS, cons);
        return -errno::EIO;
    }
    let budget = match budget {
        0 => ELISA_NET_RING_SLOTS,
        b => min(b, ELISA_NET_RING_SLOTS as u64) as u32,
    };
    let n = min(avail, budget);
    let my_mac = cfg.load_u64(cfg::mac(c.me));
    for i in 0..n {
        forward(
            cfg,
            ports,
            c,
            mine,
            my_mac,
            slot_offset(0, cons.wrapping_add(i)),
        );
    }
    count(cfg, ELISA_NET_STAT_TX_FRAMES, n.into());
    let cons = cons.wrapping_add(n);
    cfg.store_u32(cfg::TX_CONS, cons);
    mine.store_u32(port::TX_CONS, cons);
    n as i64
}

/// Sends the frame in this port's transmit slot at `slot` (an offset in its region).
fn forward<R: Region>(cfg: &R, ports: &[R], c: &Config, mine: &R, my_mac: u64, slot: usize) {
    // The length and the header, read once; what is delivered is what was checked.
    let len = mine.load_u32(slot);
    if !(ELISA_NET_MIN_FRAME..=ELISA_NET_MAX_FRAME).contains(&len) {
        count(cfg, ELISA_NET_STAT_DROP_LENGTH, 1);
        return;
    }
    let mut hdr = [0u8; ETH_HLEN];
    mine.read(slot + SLOT_DATA, &mut hdr);
    if my_mac == 0 || mac_at(&hdr, 6) != my_mac {
        count(cfg, ELISA_NET_STAT_DROP_SPOOFED, 1);
        return;
    }
    let frame = Frame {
        slot,
        len: len as usize,
        hdr,
    };
    let dst = mac_at(&hdr, 0);
    if dst & 1 != 0 {
        // Broadcast or multicast: every other port that has an address.
        for d in (0..c.nr_ports).filter(|&d| d != c.me) {
            if cfg.load_u64(cfg::mac(d)) != 0 {
                deliver(cfg, ports, c, mine, d, &frame);
            }
        }
        return;
    }
    // A port whose address is 0 has none (init_config's "disabled"): no unicast to 0.
    let to = (0..c.nr_ports).find(|&d| d != c.me && dst != 0 && cfg.load_u64(cfg::mac(d)) == dst);
    match to {
        Some(d) => deliver(cfg, ports, c, mine, d, &frame),
        None => count(cfg, ELISA_NET_STAT_DROP_NO_PORT, 1),
    }
}

/// Whether `region`'s header page holds the magic, port number `p` and port p's token as
/// this port's config region knows it (`init_port`, `init_config`).
fn is_port_region<R: Region>(cfg: &R, region: &R, p: usize) -> bool {
    region.load_u32(port::MAGIC) == ELISA_NET_MAGIC
        && region.load_u32(port::PORT) == p as u32
        && region.load_u64(port::TOKEN) == cfg.load_u64(cfg::token(p))
}

/// A checked frame: its transmit slot, length and header.
struct Frame {
    slot: usize,
    len: usize,
    hdr: [u8; ETH_HLEN],
}

/// Copies `f` into ring `1 + me` of port `d`, if the ring has room.
fn deliver<R: Region>(cfg: &R, ports: &[R], c: &Config, mine: &R, d: usize, f: &Frame) {
    let Some(peer) = ports.get(d) else {
        return;
    };
    // The service finds port d's region at a fixed place (the regions it was made with are
    // not known to it): write only where a port region of port d is, so that a service
    // made with fewer port regions than its config names never writes into whatever page
    // is there instead. Its guest can rewrite the magic and the port number, but not learn
    // another port's token (only config regions hold them, which no guest maps): a port
    // region mapped at another port's place (a service made with two ports' regions
    // swapped) gets nothing, whatever its guest writes.
    if !is_port_region(cfg, peer, d) {
        count(cfg, ELISA_NET_STAT_DROP_BAD_PEER, 1);
        return;
    }
    let prod = cfg.load_u32(cfg::rx_prod(d));
    // The receiver's consumer index, read once.
    let used = prod.wrapping_sub(peer.load_u32(port::rx_cons(c.me)));
    if used > ELISA_NET_RING_SLOTS {
        count(cfg, ELISA_NET_STAT_DROP_BAD_PEER, 1);
        // The receiver's indices were overwritten: publish the producer index again, which
        // it then finds more than a ring ahead and resynchronises to.
        peer.store_u32(port::rx_prod(c.me), prod);
        return;
    }
    if used == ELISA_NET_RING_SLOTS {
        count(cfg, ELISA_NET_STAT_DROP_FULL, 1);
        return;
    }
    let dslot = slot_offset(1 + c.me, prod);
    peer.write(dslot + SLOT_DATA, &f.hdr);
    peer.copy_from(
        dslot + SLOT_DATA + ETH_HLEN,
        mine,
        f.slot + SLOT_DATA + ETH_HLEN,
        f.len - ETH_HLEN,
    );
    peer.store_u32(dslot, f.len as u32);
    peer.store_u32(dslot + 4, 0);
    let prod = prod.wrapping_add(1);
    cfg.store_u32(cfg::rx_prod(d), prod);
    // Region::store_u32 orders after the slot's stores (x86 keeps stores in order; the
    // service's stores are volatile): the receiver sees the slot before the index.
    peer.store_u32(port::rx_prod(c.me), prod);
    count(cfg, ELISA_NET_STAT_TX_DELIVERED, 1);
}

/// What the host writes into a config region before the first grant: the header, port
/// `port` of `macs.len()` ports, the forwarding table, every port's token (`tokens[p]`,
/// as [`init_port`] writes it into port p's header; random and distinct, or all 0 for a
/// set-up without tokens), and zeroed state.
pub fn init_config<R: Region>(cfg: &R, port: u32, macs: &[[u8; 6]], tokens: &[u64]) {
    for off in (0..core::mem::size_of::<ElisaNetConfig>()).step_by(4) {
        cfg.store_u32(off, 0);
    }
    cfg.store_u32(cfg::MAGIC, ELISA_NET_MAGIC);
    cfg.store_u32(cfg::VERSION, ELISA_NET_VERSION);
    cfg.store_u32(cfg::PORT, port);
    cfg.store_u32(cfg::NR_PORTS, macs.len() as u32);
    for (p, m) in macs.iter().enumerate().take(ELISA_NET_MAX_PORTS) {
        cfg.store_u64(cfg::mac(p), mac_to_u64(*m));
    }
    for (p, t) in tokens.iter().enumerate().take(ELISA_NET_MAX_PORTS) {
        cfg.store_u64(cfg::token(p), *t);
    }
}

/// What the host writes into a port region before the first grant: the header page of
/// port `port` of `nr_ports`, with address `mac` and secret `token`, all indices 0.
pub fn init_port<R: Region>(region: &R, port: u32, nr_ports: u32, mac: [u8; 6], token: u64) {
    for off in (0..4096).step_by(4) {
        region.store_u32(off, 0);
    }
    region.store_u32(offset_of!(ElisaNetPort, magic), ELISA_NET_MAGIC);
    region.store_u32(offset_of!(ElisaNetPort, version), ELISA_NET_VERSION);
    region.store_u32(offset_of!(ElisaNetPort, port), port);
    region.store_u32(offset_of!(ElisaNetPort, nr_ports), nr_ports);
    region.write(offset_of!(ElisaNetPort, mac), &mac);
    region.store_u64(port::TOKEN, token);
}
