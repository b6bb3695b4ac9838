// SPDX-License-Identifier: GPL-2.0
//! A software switch for the tests: regions as checked buffers, guests as ring users.
#![allow(dead_code)]

use elisa_switch::{call, init_config, init_port, port, Region};
use elisa_uapi::net::*;
use std::cell::{Cell, RefCell};
use std::ops::Range;

/// A region: a buffer that panics on any access out of bounds and records the switch's
/// writes while `recording` is set.
pub struct Buf {
    pub data: RefCell<Vec<u8>>,
    pub writes: RefCell<Vec<Range<usize>>>,
    pub recording: Cell<bool>,
    /// Accesses (loads, stores and copies) while recording: a bound on a call's work.
    pub accesses: Cell<u64>,
    /// A second vCPU of the guest racing the switch: each entry's bytes are written at its
    /// offset right after the switch's first access that touches that offset (while
    /// recording), so a second read of the same bytes sees another value.
    pub races: RefCell<Vec<Race>>,
    /// A racing vCPU that writes a random word before every access of the switch while
    /// recording, mostly into the bytes the switch's previous access to this region
    /// touched (so that a second read of anything sees another value), else anywhere:
    /// the state of its generator (xorshift), or 0 for none.
    pub chaos: Cell<u64>,
    /// The range of the switch's last access to this region, for [`Buf::chaos`].
    last: Cell<Option<(usize, usize)>>,
}

/// One write of a racing vCPU ([`Buf::races`]).
pub struct Race {
    pub at: usize,
    pub bytes: Vec<u8>,
    seen: bool,
    done: bool,
}

impl Race {
    pub fn new(at: usize, bytes: &[u8]) -> Self {
        Race {
            at,
            bytes: bytes.to_vec(),
            seen: false,
            done: false,
        }
    }
    /// Whether the switch's first access to these bytes came and the race wrote them.
    pub fn done(&self) -> bool {
        self.done
    }
}

impl Buf {
    pub fn new(size: usize) -> Self {
        Buf {
            data: RefCell::new(vec![0; size]),
            writes: RefCell::new(Vec::new()),
            recording: Cell::new(false),
            accesses: Cell::new(0),
            races: RefCell::new(Vec::new()),
            chaos: Cell::new(0),
            last: Cell::new(None),
        }
    }
    /// One write of the chaos racer ([`Buf::chaos`]), if it runs.
    fn chaos_write(&self) {
        let mut x = self.chaos.get();
        if x == 0 {
            return;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.chaos.set(x);
        let mut data = self.data.borrow_mut();
        let words = data.len() / 4;
        // Three writes in four go into the last access's bytes, the others anywhere.
        let word = match self.last.get() {
            Some((off, len)) if x & 3 != 0 => (off + (x >> 8) as usize % len.max(1)) / 4,
            _ => (x >> 8) as usize % words,
        }
        .min(words - 1);
        let val = (x >> 32) as u32;
        let val = match x >> 4 & 3 {
            0 => val % 128,
            1 => u32::MAX - val % 8,
            _ => val,
        };
        data[word * 4..word * 4 + 4].copy_from_slice(&val.to_le_bytes());
    }
    fn check(&self, off: usize, len: usize) -> Range<usize> {
        let size = self.data.borrow().len();
        assert!(
            off.checked_add(len).is_some_and(|end| end <= size),
            "access out of bounds: {off:#x}+{len:#x} of {size:#x}"
        );
        if self.recording.get() {
            self.chaos_write();
            self.last.set(Some((off, len)));
            self.accesses.set(self.accesses.get() + 1);
            let mut races = self.races.borrow_mut();
            for race in races.iter_mut().filter(|r| r.seen && !r.done) {
                self.data.borrow_mut()[race.at..race.at + race.bytes.len()]
                    .copy_from_slice(&race.bytes);
                race.done = true;
            }
            for race in races.iter_mut() {
                if race.at < off + len && off < race.at + race.bytes.len() {
                    race.seen = true;
                }
            }
        }
        off..off + len
    }
    fn wrote(&self, r: Range<usize>) {
        if self.recording.get() {
            self.writes.borrow_mut().push(r);
        }
    }
    /// Guest access: not recorded.
    pub fn put_u32(&self, off: usize, v: u32) {
        self.data.borrow_mut()[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn get_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.data.borrow()[off..off + 4].try_into().unwrap())
    }
    pub fn put(&self, off: usize, b: &[u8]) {
        self.data.borrow_mut()[off..off + b.len()].copy_from_slice(b);
    }
    pub fn get(&self, off: usize, len: usize) -> Vec<u8> {
        self.data.borrow()[off..off + len].to_vec()
    }
}

impl Region for Buf {
    fn load_u32(&self, off: usize) -> u32 {
        let r = self.check(off, 4);
        u32::from_le_bytes(self.data.borrow()[r].try_into().unwrap())
    }
    fn store_u32(&self, off: usize, val: u32) {
        let r = self.check(off, 4);
        self.data.borrow_mut()[r.clone()].copy_from_slice(&val.to_le_bytes());
        self.wrote(r);
    }
    fn load_u64(&self, off: usize) -> u64 {
        let r = self.check(off, 8);
        u64::from_le_bytes(self.data.borrow()[r].try_into().unwrap())
    }
    fn store_u64(&self, off: usize, val: u64) {
        let r = self.check(off, 8);
        self.data.borrow_mut()[r.clone()].copy_from_slice(&val.to_le_bytes());
        self.wrote(r);
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        let r = self.check(off, buf.len());
        buf.copy_from_slice(&self.data.borrow()[r]);
    }
    fn write(&self, off: usize, buf: &[u8]) {
        let r = self.check(off, buf.len());
        self.data.borrow_mut()[r.clone()].copy_from_slice(buf);
        self.wrote(r);
    }
    fn copy_from(&self, off: usize, src: &Self, src_off: usize, len: usize) {
        let s = src.check(src_off, len);
        let bytes = src.data.borrow()[s].to_vec();
        self.write(off, &bytes);
    }
    fn try_lock(&self, off: usize) -> bool {
        if self.load_u32(off) != 0 {
            return false;
        }
        self.store_u32(off, 1);
        true
    }
    fn add_u32(&self, off: usize, val: u32) -> u32 {
        let v = self.load_u32(off).wrapping_add(val);
        self.store_u32(off, v);
        v
    }
    fn unlock(&self, off: usize) {
        self.store_u32(off, 0);
    }
}

/// Port p's MAC address: 02:00:00:00:00:p+1 (locally administered, unicast).
/// A region by reference: to call the switch with regions in another order than a [`Net`]
/// holds them (a service made with another layout).
impl Region for &Buf {
    fn load_u32(&self, off: usize) -> u32 {
        (**self).load_u32(off)
    }
    fn store_u32(&self, off: usize, val: u32) {
        (**self).store_u32(off, val)
    }
    fn load_u64(&self, off: usize) -> u64 {
        (**self).load_u64(off)
    }
    fn store_u64(&self, off: usize, val: u64) {
        (**self).store_u64(off, val)
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        (**self).read(off, buf)
    }
    fn write(&self, off: usize, buf: &[u8]) {
        (**self).write(off, buf)
    }
    fn copy_from(&self, off: usize, src: &Self, src_off: usize, len: usize) {
        (**self).copy_from(off, *src, src_off, len)
    }
    fn try_lock(&self, off: usize) -> bool {
        (**self).try_lock(off)
    }
    fn add_u32(&self, off: usize, val: u32) -> u32 {
        (**self).add_u32(off, val)
    }
    fn unlock(&self, off: usize) {
        (**self).unlock(off)
    }
}

/// Port `p`'s token in the test set-ups (distinct, not 0).
pub fn token(p: usize) -> u64 {
    0x7e57_0000_0000_0000 | (p as u64 + 1) << 8 | 0x5a
}

pub fn mac(p: usize) -> [u8; 6] {
    [2, 0, 0, 0, 0, p as u8 + 1]
}

/// A frame of `len` bytes from port `src` to `dst` (a MAC), with a payload from `seed`.
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    if len >= 14 {
        f[12] = 0x88;
        f[13] = 0xb5;
    }
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = seed.wrapping_add(i as u8);
    }
    f
}

pub const BROADCAST: [u8; 6] = [0xff; 6];

/// A switch of `n` ports, each with its config region (the switch's) and port region
/// (its guest's).
pub struct Net {
    pub cfgs: Vec<Buf>,
    pub ports: Vec<Buf>,
}

impl Net {
    pub fn new(n: usize) -> Self {
        let macs: Vec<[u8; 6]> = (0..n).map(mac).collect();
        let cfgs: Vec<Buf> = (0..n).map(|_| Buf::new(ELISA_NET_CONFIG_SIZE)).collect();
        let ports: Vec<Buf> = (0..n).map(|_| Buf::new(ELISA_NET_PORT_SIZE)).collect();
        let tokens: Vec<u64> = (0..n).map(token).collect();
        for p in 0..n {
            init_config(&cfgs[p], p as u32, &macs, &tokens);
            init_port(&ports[p], p as u32, n as u32, macs[p], tokens[p]);
        }
        Net { cfgs, ports }
    }

    /// The guest of port `p` calls the switch.
    pub fn call(&self, p: usize, op: u64, arg: u64) -> i64 {
        call(&self.cfgs[p], &self.ports, op, arg)
    }

    /// Guest `p` queues a frame on its transmit ring, if there is room (it trusts the
    /// switch's published consumer index, as a guest driver does).
    pub fn send(&self, p: usize, f: &[u8]) -> bool {
        let r = &self.ports[p];
        let prod = r.get_u32(port::TX_PROD);
        if prod.wrapping_sub(r.get_u32(port::TX_CONS)) >= ELISA_NET_RING_SLOTS {
            return false;
        }
        let slot = slot_offset(0, prod);
        r.put_u32(slot, f.len() as u32);
        r.put(slot + SLOT_DATA, f);
        r.put_u32(port::TX_PROD, prod.wrapping_add(1));
        true
    }

    /// Guest `p` takes every frame from port `s` waiting in its receive ring.
    pub fn recv(&self, p: usize, s: usize) -> Vec<Vec<u8>> {
        let r = &self.ports[p];
        let mut out = Vec::new();
        let mut cons = r.get_u32(port::rx_cons(s));
        while cons != r.get_u32(port::rx_prod(s)) {
            let slot = slot_offset(1 + s, cons);
            let len = r.get_u32(slot) as usize;
            assert!(
                (14..=ELISA_NET_MAX_FRAME as usize).contains(&len),
                "the switch delivered a frame of {len} bytes"
            );
            out.push(r.get(slot + SLOT_DATA, len));
            cons = cons.wrapping_add(1);
        }
        r.put_u32(port::rx_cons(s), cons);
        out
    }

    pub fn stat(&self, p: usize, s: usize) -> i64 {
        self.call(p, ELISA_NET_OP_STATS, s as u64)
    }

    /// Starts recording the switch's accesses in every region.
    pub fn record(&self, on: bool) {
        for b in self.cfgs.iter().chain(&self.ports) {
            b.recording.set(on);
            if on {
                b.writes.borrow_mut().clear();
                b.accesses.set(0);
            }
        }
    }
}
