// SPDX-License-Identifier: GPL-2.0
//! The views dump: one vCPU's gate and sub views as bytes, written by the module (debugfs
//! `elisa/vm<id>/vcpu<n>-views`) and by the host tests, read by `elisactl check-views`,
//! which runs the [`verify`](super::verify) checks over it.
//!
//! The format is defined here and only here; `Documentation/testing.rst` describes it.
//! Little-endian throughout. A file is one or more dumps back to back (one per gate of the
//! vCPU); each dump is:
//!
//! | bytes | what |
//! |---|---|
//! | [`HEADER_BYTES`] | the header below |
//! | `nr_mappings` x [`MAPPING_BYTES`] | the mappings the views should have |
//! | `nr_frames` x [`FRAME_BYTES`] | every frame the views hold: its HPA (u64), then its 4096 bytes, by ascending HPA |
//!
//! Header:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u32 | magic [`MAGIC`] (`"ELVD"`) |
//! | 4 | u16 | format version [`VERSION`] |
//! | 6 | u16 | header size, [`HEADER_BYTES`] |
//! | 8 | u16 | mapping record size, [`MAPPING_BYTES`] |
//! | 10 | u16 | lowest gate index of the vCPU (other services' gates lie between it and 511) |
//! | 12 | u32 | vCPU index |
//! | 16 | u32 | `nr_mappings` |
//! | 20 | u32 | `nr_frames` |
//! | 24 | u16 | gate index (EPTP-list index of the gate view) |
//! | 26 | u8 | paging levels of the trusted tables (4 or 5) |
//! | 27 | u8 | flags: bit 0 EPT A/D, bit 1 MBEC, bit 2 callers at CPL 3 (user leaves) |
//! | 28 | u32 | reserved, 0 |
//! | 32 | u64 | G, the entry block's GVA |
//! | 40 | u64 | the service's entry GVA |
//! | 48 | u64 | HPA of the EPTP-list page |
//! | 56 | u64 | trusted window: first GPA |
//! | 64 | u64 | trusted window: length |
//! | 72 | u64 | gate view: EPTP |
//! | 80 | u64 | gate view: APT frame (the root of its trusted guest table) |
//! | 88 | 3 x u64 | gate view: APT chain tables, level 1 first |
//! | 112 | u64 | sub view: EPTP |
//! | 120 | u64 | sub view: APT frame |
//! | 128 | 3 x u64 | sub view: APT chain tables |
//! | 152 | u64 | the vCPU's EPTP-list entry 0 (KVM's root; 0 before the vCPU first ran) |
//! | 160 | 8 x 2 x u64 | the vCPU's gates by gate index, 511 first: gate view EPTP, sub view EPTP (0, 0: no gate) |
//! | 288 | 96 | reserved, 0 |
//!
//! Mapping record (a run of `pages` leaves, see [`Mapping`]):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u8 | kind: 1 gate code, 2 gate data, 3 EPTP list, 4 gate stack, 5 gate page tables, 6 sub code, 7 sub stack, 8 sub page tables, 16 region |
//! | 1 | u8 | region number (kind 16), else 0 |
//! | 2 | u8 | page shift: 12, 21 or 30 |
//! | 3 | u8 | EPT permissions: bit 0 R, bit 1 W, bit 2 X (R, RW, X or RX) |
//! | 4 | u8 | guest permissions: 0 not in the guest table, 1 read, 2 read-write, 3 execute |
//! | 5 | u8 | flags: bit 0 the HPA is given (else: frames of the views, each once) |
//! | 6 | u16 | reserved, 0 |
//! | 8 | u64 | pages |
//! | 16 | u64 | first GVA (0 when not in the guest table) |
//! | 24 | u64 | first GPA |
//! | 32 | u64 | first HPA (flag bit 0), the run being contiguous; else 0 |
//! | 40 | u64 | reserved, 0 |

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use core::fmt;

use super::addr::{Gpa, Gva, Hpa, PageSize, PAGE_MASK, PAGE_SIZE};
use super::ept::EptPerm;
use super::eptp::EPTP_INDEX_GATE;
use super::error::Error;
use super::frame::{Frames, ENTRIES_PER_TABLE};
use super::paging::{CallerPrivilege, GuestPerm, PagingMode};
use super::verify::{Mapping, MappingKind, MappingSource, Mappings, ViewRoots, ViewsHeader};

/// `"ELVD"`, little-endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"ELVD");
/// Version of the format.
pub const VERSION: u16 = 2;
/// Bytes of the header.
pub const HEADER_BYTES: usize = 384;
const LIST0_AT: usize = 152;
const VCPU_GATES_AT: usize = 160;
const RESERVED_AT: usize = 288;
/// Bytes of one mapping record.
pub const MAPPING_BYTES: usize = 48;
/// Bytes of one frame: its HPA and its contents.
pub const FRAME_BYTES: usize = 8 + PAGE_SIZE as usize;

const FLAG_AD: u8 = 1 << 0;
const FLAG_MBEC: u8 = 1 << 1;
const FLAG_USER: u8 = 1 << 2;
const MAP_HPA: u8 = 1 << 0;
const KIND_REGION: u8 = 16;

/// Bytes of a dump of `mappings` mappings and `frames` frames.
pub fn encoded_len(mappings: usize, frames: usize) -> Option<usize> {
    mappings
        .checked_mul(MAPPING_BYTES)?
        .checked_add(frames.checked_mul(FRAME_BYTES)?)?
        .checked_add(HEADER_BYTES)
}

/// Where a dump is written.
pub trait DumpOut {
    /// Appends `bytes`.
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), Error>;
    /// Appends the 4096 bytes of `frame`.
    fn frame(&mut self, frame: Hpa) -> Result<(), Error>;
}

/// The 4096 bytes of `frame` through a frame store, for [`DumpOut::frame`]: its 512 entries,
/// little-endian.
pub fn frame_bytes<F: Frames + ?Sized>(
    frames: &F,
    frame: Hpa,
    out: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    for index in 0..ENTRIES_PER_TABLE {
        out(&frames.read_entry(frame, index)?.to_le_bytes())?;
    }
    Ok(())
}

/// Number of mappings `source` produces.
///
/// # Errors
///
/// Those of `source`.
pub fn count_mappings(source: &dyn MappingSource) -> Result<usize, Error> {
    let mut n = 0usize;
    source.for_each(&mut |_| {
        n = n.checked_add(1).ok_or(Error::BadSize)?;
        Ok(())
    })?;
    Ok(n)
}

/// Writes one dump: `header`, the mappings of `source`, and `frames` (ascending, distinct,
/// 4 KiB aligned) through `out`. Returns the bytes written.
///
/// # Errors
///
/// [`Error::BadFrame`] if `frames` is not ascending and aligned, [`Error::BadSize`] if a
/// count does not fit the format or `source` changed between its two passes; those of
/// `source` and `out`.
pub fn write(
    header: &ViewsHeader,
    source: &dyn MappingSource,
    frames: &[Hpa],
    out: &mut dyn DumpOut,
) -> Result<usize, Error> {
    let mut previous: Option<u64> = None;
    for f in frames {
        if f.0 & PAGE_MASK != 0 || previous.is_some_and(|p| p >= f.0) {
            return Err(Error::BadFrame);
        }
        previous = Some(f.0);
    }
    let nr_mappings = count_mappings(source)?;
    let len = encoded_len(nr_mappings, frames.len()).ok_or(Error::BadSize)?;
    let nm = u32::try_from(nr_mappings).map_err(|_| Error::BadSize)?;
    let nf = u32::try_from(frames.len()).map_err(|_| Error::BadSize)?;
    out.bytes(&encode_header(header, nm, nf))?;
    let mut written = 0usize;
    source.for_each(&mut |m| {
        written = written.checked_add(1).ok_or(Error::BadSize)?;
        if written > nr_mappings {
            return Err(Error::BadSize);
        }
        out.bytes(&encode_mapping(&m))
    })?;
    if written != nr_mappings {
        return Err(Error::BadSize);
    }
    for f in frames {
        out.bytes(&f.0.to_le_bytes())?;
        out.frame(*f)?;
    }
    Ok(len)
}

/// Copies `bytes` into `buf` at `offset` (silently nothing if out of range; the callers'
/// offsets are constants inside the buffer).
fn put(buf: &mut [u8], offset: usize, bytes: &[u8]) {
    if let Some(dst) = offset
        .checked_add(bytes.len())
        .and_then(|end| buf.get_mut(offset..end))
    {
        dst.copy_from_slice(bytes);
    }
}

fn get<const N: usize>(buf: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = offset.checked_add(N).and_then(|end| buf.get(offset..end)) {
        out.copy_from_slice(src);
    }
    out
}

fn u16_at(buf: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(get(buf, offset))
}

fn u32_at(buf: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(get(buf, offset))
}

fn u64_at(buf: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(get(buf, offset))
}

fn put_roots(buf: &mut [u8], offset: usize, r: &ViewRoots) {
    put(buf, offset, &r.eptp.to_le_bytes());
    put(buf, offset.wrapping_add(8), &r.apt_frame.0.to_le_bytes());
    for (i, c) in r.apt_chain.iter().enumerate() {
        put(
            buf,
            offset.wrapping_add(16).wrapping_add(i.wrapping_mul(8)),
            &c.0.to_le_bytes(),
        );
    }
}

fn roots_at(buf: &[u8], offset: usize) -> ViewRoots {
    let chain = |i: usize| {
        Hpa(u64_at(
            buf,
            offset.wrapping_add(16).wrapping_add(i.wrapping_mul(8)),
        ))
    };
    ViewRoots {
        eptp: u64_at(buf, offset),
        apt_frame: Hpa(u64_at(buf, offset.wrapping_add(8))),
        apt_chain: [chain(0), chain(1), chain(2)],
    }
}

/// The header of a dump with `nr_mappings` mappings and `nr_frames` frames.
pub fn encode_header(h: &ViewsHeader, nr_mappings: u32, nr_frames: u32) -> [u8; HEADER_BYTES] {
    let mut b = [0u8; HEADER_BYTES];
    put(&mut b, 0, &MAGIC.to_le_bytes());
    put(&mut b, 4, &VERSION.to_le_bytes());
    put(&mut b, 6, &(HEADER_BYTES as u16).to_le_bytes());
    put(&mut b, 8, &(MAPPING_BYTES as u16).to_le_bytes());
    put(&mut b, 10, &h.lowest_gate_index.to_le_bytes());
    put(&mut b, 12, &h.vcpu.to_le_bytes());
    put(&mut b, 16, &nr_mappings.to_le_bytes());
    put(&mut b, 20, &nr_frames.to_le_bytes());
    put(&mut b, 24, &h.gate_index.to_le_bytes());
    put(&mut b, 26, &[h.paging.levels()]);
    let user = h.privilege == CallerPrivilege::User;
    let flags = if h.accessed_dirty { FLAG_AD } else { 0 }
        | if h.mbec { FLAG_MBEC } else { 0 }
        | if user { FLAG_USER } else { 0 };
    put(&mut b, 27, &[flags]);
    put(&mut b, 32, &h.entry_gva.0.to_le_bytes());
    put(&mut b, 40, &h.service_entry.0.to_le_bytes());
    put(&mut b, 48, &h.eptp_list.0.to_le_bytes());
    put(&mut b, 56, &h.window.0 .0.to_le_bytes());
    put(&mut b, 64, &h.window.1.to_le_bytes());
    put_roots(&mut b, 72, &h.gate);
    put_roots(&mut b, 112, &h.sub);
    put(&mut b, LIST0_AT, &h.list0.to_le_bytes());
    for (k, pair) in h.vcpu_gates.iter().enumerate() {
        for (j, e) in pair.iter().enumerate() {
            let at = VCPU_GATES_AT
                .wrapping_add(k.wrapping_mul(16))
                .wrapping_add(j.wrapping_mul(8));
            put(&mut b, at, &e.to_le_bytes());
        }
    }
    b
}

fn kind_code(kind: MappingKind) -> (u8, u8) {
    match kind {
        MappingKind::GateCode => (1, 0),
        MappingKind::GateData => (2, 0),
        MappingKind::EptpList => (3, 0),
        MappingKind::GateStack => (4, 0),
        MappingKind::GateTables => (5, 0),
        MappingKind::SubCode => (6, 0),
        MappingKind::SubStack => (7, 0),
        MappingKind::SubTables => (8, 0),
        MappingKind::Region(n) => (KIND_REGION, n),
    }
}

fn page_shift(size: PageSize) -> u8 {
    match size {
        PageSize::Size4K => 12,
        PageSize::Size2M => 21,
        PageSize::Size1G => 30,
    }
}

fn guest_code(perm: Option<GuestPerm>) -> u8 {
    match perm {
        None => 0,
        Some(GuestPerm::Read) => 1,
        Some(GuestPerm::ReadWrite) => 2,
        Some(GuestPerm::Execute) => 3,
    }
}

/// One mapping record.
pub fn encode_mapping(m: &Mapping) -> [u8; MAPPING_BYTES] {
    let mut b = [0u8; MAPPING_BYTES];
    let (kind, region) = kind_code(m.kind);
    // The R/W/X bits fit a byte.
    let ept = (m.ept.bits() & 7) as u8;
    let flags = if m.hpa.is_some() { MAP_HPA } else { 0 };
    put(
        &mut b,
        0,
        &[
            kind,
            region,
            page_shift(m.page_size),
            ept,
            guest_code(m.guest),
            flags,
        ],
    );
    put(&mut b, 8, &m.pages.to_le_bytes());
    put(&mut b, 16, &m.gva.map_or(0, |g| g.0).to_le_bytes());
    put(&mut b, 24, &m.gpa.0.to_le_bytes());
    put(&mut b, 32, &m.hpa.map_or(0, |h| h.0).to_le_bytes());
    b
}

/// Decodes one mapping record.
///
/// # Errors
///
/// What is wrong with it.
pub fn decode_mapping(b: &[u8]) -> Result<Mapping, &'static str> {
    if b.len() != MAPPING_BYTES {
        return Err("record size");
    }
    let [kind, region, shift, ept, guest, flags] = get::<6>(b, 0);
    if u16_at(b, 6) != 0 || u64_at(b, 40) != 0 {
        return Err("reserved bytes not zero");
    }
    let kind = match (kind, region) {
        (1, 0) => MappingKind::GateCode,
        (2, 0) => MappingKind::GateData,
        (3, 0) => MappingKind::EptpList,
        (4, 0) => MappingKind::GateStack,
        (5, 0) => MappingKind::GateTables,
        (6, 0) => MappingKind::SubCode,
        (7, 0) => MappingKind::SubStack,
        (8, 0) => MappingKind::SubTables,
        (KIND_REGION, n) => MappingKind::Region(n),
        _ => return Err("unknown kind"),
    };
    let page_size = match shift {
        12 => PageSize::Size4K,
        21 => PageSize::Size2M,
        30 => PageSize::Size1G,
        _ => return Err("unknown page shift"),
    };
    let ept = match ept {
        1 => EptPerm::ReadOnly,
        3 => EptPerm::ReadWrite,
        4 => EptPerm::ExecuteOnly,
        5 => EptPerm::ReadExecute,
        _ => return Err("EPT permissions not R, RW, X or RX"),
    };
    let guest = match guest {
        0 => None,
        1 => Some(GuestPerm::Read),
        2 => Some(GuestPerm::ReadWrite),
        3 => Some(GuestPerm::Execute),
        _ => return Err("unknown guest permissions"),
    };
    if flags & !MAP_HPA != 0 {
        return Err("unknown flags");
    }
    let (gva, gpa, hpa) = (u64_at(b, 16), u64_at(b, 24), u64_at(b, 32));
    if guest.is_none() && gva != 0 {
        return Err("GVA without guest permissions");
    }
    if flags & MAP_HPA == 0 && hpa != 0 {
        return Err("HPA without its flag");
    }
    let pages = u64_at(b, 8);
    let m = Mapping {
        kind,
        gva: guest.map(|_| Gva(gva)),
        gpa: Gpa(gpa),
        hpa: (flags & MAP_HPA != 0).then_some(Hpa(hpa)),
        page_size,
        pages,
        ept,
        guest,
    };
    let aligned = |a: u64| a & page_size.mask() == 0;
    if pages == 0
        || !aligned(gpa)
        || !aligned(gva)
        || !aligned(hpa)
        || pages.checked_mul(page_size.bytes()).is_none()
    {
        return Err("empty or misaligned run");
    }
    Ok(m)
}

/// Why bytes are not a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpError {
    /// Fewer bytes than the header says.
    Truncated,
    /// Not [`MAGIC`].
    BadMagic,
    /// Another format version.
    BadVersion(u16),
    /// A header field is out of range.
    BadHeader(&'static str),
    /// Mapping `index` is malformed.
    BadMapping(usize, &'static str),
    /// Frame `index` is misaligned or not above the one before.
    BadFrame(usize),
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Truncated => write!(f, "truncated"),
            DumpError::BadMagic => write!(f, "not a views dump (magic)"),
            DumpError::BadVersion(v) => {
                write!(f, "format version {v}, this reader knows {VERSION}")
            }
            DumpError::BadHeader(what) => write!(f, "header: {what}"),
            DumpError::BadMapping(i, what) => write!(f, "mapping {i}: {what}"),
            DumpError::BadFrame(i) => write!(f, "frame {i}: misaligned or out of order"),
        }
    }
}

/// A parsed dump over its bytes. It is a [`Mappings`] list and a read-only [`Frames`]
/// store, so the [`verify`](super::verify) checks run on it directly.
#[derive(Clone, Copy, Debug)]
pub struct Dump<'a> {
    header: ViewsHeader,
    mappings: &'a [u8],
    frames: &'a [u8],
    len: usize,
}

impl<'a> Dump<'a> {
    /// Parses the dump at the start of `bytes`; returns it and the bytes after it.
    ///
    /// # Errors
    ///
    /// What is wrong with the bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), DumpError> {
        let head = bytes.get(..HEADER_BYTES).ok_or(DumpError::Truncated)?;
        if u32_at(head, 0) != MAGIC {
            return Err(DumpError::BadMagic);
        }
        let version = u16_at(head, 4);
        if version != VERSION {
            return Err(DumpError::BadVersion(version));
        }
        if usize::from(u16_at(head, 6)) != HEADER_BYTES
            || usize::from(u16_at(head, 8)) != MAPPING_BYTES
        {
            return Err(DumpError::BadHeader("header or record size"));
        }
        let reserved = u32_at(head, 28) != 0
            || head
                .get(RESERVED_AT..)
                .is_some_and(|r| r.iter().any(|&b| b != 0));
        if reserved {
            return Err(DumpError::BadHeader("reserved bytes not zero"));
        }
        let paging = match get::<1>(head, 26) {
            [4] => PagingMode::FourLevel,
            [5] => PagingMode::FiveLevel,
            _ => return Err(DumpError::BadHeader("paging levels")),
        };
        let [flags] = get::<1>(head, 27);
        if flags & !(FLAG_AD | FLAG_MBEC | FLAG_USER) != 0 {
            return Err(DumpError::BadHeader("unknown flags"));
        }
        let gate_index = u16_at(head, 24);
        let lowest_gate_index = u16_at(head, 10);
        if usize::from(gate_index) >= ENTRIES_PER_TABLE
            || lowest_gate_index < 2
            || lowest_gate_index > gate_index
        {
            return Err(DumpError::BadHeader("gate index"));
        }
        let header = ViewsHeader {
            vcpu: u32_at(head, 12),
            gate_index,
            lowest_gate_index,
            paging,
            privilege: if flags & FLAG_USER != 0 {
                CallerPrivilege::User
            } else {
                CallerPrivilege::Supervisor
            },
            accessed_dirty: flags & FLAG_AD != 0,
            mbec: flags & FLAG_MBEC != 0,
            entry_gva: Gva(u64_at(head, 32)),
            service_entry: Gva(u64_at(head, 40)),
            eptp_list: Hpa(u64_at(head, 48)),
            window: (Gpa(u64_at(head, 56)), u64_at(head, 64)),
            gate: roots_at(head, 72),
            sub: roots_at(head, 112),
            list0: u64_at(head, LIST0_AT),
            vcpu_gates: core::array::from_fn(|k| {
                let at = VCPU_GATES_AT.wrapping_add(k.wrapping_mul(16));
                [u64_at(head, at), u64_at(head, at.wrapping_add(8))]
            }),
        };
        // The dump's own gate is one of the vCPU's, and every gate of the vCPU lies at or
        // above its lowest gate index.
        if header.vcpu_gate(usize::from(gate_index)) != Some([header.gate.eptp, header.sub.eptp]) {
            return Err(DumpError::BadHeader(
                "the gate is not among the vCPU's gates",
            ));
        }
        let below = header.vcpu_gates.iter().enumerate().any(|(k, g)| {
            *g != [0, 0]
                && EPTP_INDEX_GATE
                    .checked_sub(k)
                    .is_none_or(|i| i < usize::from(lowest_gate_index))
        });
        if below {
            return Err(DumpError::BadHeader(
                "a gate of the vCPU below its lowest gate index",
            ));
        }
        let nm = usize::try_from(u32_at(head, 16)).map_err(|_| DumpError::Truncated)?;
        let nf = usize::try_from(u32_at(head, 20)).map_err(|_| DumpError::Truncated)?;
        let len = encoded_len(nm, nf).ok_or(DumpError::Truncated)?;
        let all = bytes.get(..len).ok_or(DumpError::Truncated)?;
        let rest = bytes.get(len..).unwrap_or(&[]);
        let map_end = HEADER_BYTES.wrapping_add(nm.wrapping_mul(MAPPING_BYTES));
        let mappings = all.get(HEADER_BYTES..map_end).ok_or(DumpError::Truncated)?;
        let frames = all.get(map_end..).ok_or(DumpError::Truncated)?;
        for (i, record) in mappings.chunks_exact(MAPPING_BYTES).enumerate() {
            decode_mapping(record).map_err(|what| DumpError::BadMapping(i, what))?;
        }
        let mut previous: Option<u64> = None;
        for (i, frame) in frames.chunks_exact(FRAME_BYTES).enumerate() {
            let hpa = u64_at(frame, 0);
            if hpa & PAGE_MASK != 0 || previous.is_some_and(|p| p >= hpa) {
                return Err(DumpError::BadFrame(i));
            }
            previous = Some(hpa);
        }
        Ok((
            Self {
                header,
                mappings,
                frames,
                len,
            },
            rest,
        ))
    }

    /// The header.
    pub fn header(&self) -> &ViewsHeader {
        &self.header
    }

    /// Bytes of this dump.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the dump has no bytes (never: a dump has a header).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of frames.
    pub fn frame_count(&self) -> usize {
        self.frames.len() / FRAME_BYTES
    }

    /// The HPA of frame `index`.
    pub fn frame_hpa(&self, index: usize) -> Option<Hpa> {
        let at = index.checked_mul(FRAME_BYTES)?;
        self.frames
            .get(at..at.checked_add(8)?)
            .map(|b| Hpa(u64_at(b, 0)))
    }

    /// The 4096 bytes of `frame`.
    pub fn frame(&self, frame: Hpa) -> Option<&'a [u8]> {
        let mut lo = 0usize;
        let mut hi = self.frame_count();
        while lo < hi {
            let mid = lo.wrapping_add(hi.wrapping_sub(lo) / 2);
            let hpa = self.frame_hpa(mid)?;
            if hpa == frame {
                let at = mid.checked_mul(FRAME_BYTES)?.checked_add(8)?;
                return self.frames.get(at..at.checked_add(PAGE_SIZE as usize)?);
            }
            if hpa < frame {
                lo = mid.wrapping_add(1);
            } else {
                hi = mid;
            }
        }
        None
    }
}

impl Mappings for Dump<'_> {
    fn count(&self) -> usize {
        self.mappings.len() / MAPPING_BYTES
    }

    fn get(&self, index: usize) -> Option<Mapping> {
        let at = index.checked_mul(MAPPING_BYTES)?;
        let record = self.mappings.get(at..at.checked_add(MAPPING_BYTES)?)?;
        decode_mapping(record).ok()
    }
}

impl Frames for Dump<'_> {
    fn alloc_zeroed(&mut self) -> Result<Hpa, Error> {
        Err(Error::OutOfFrames)
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error> {
        let page = self.frame(frame).ok_or(Error::BadFrame)?;
        let at = index.checked_mul(8).ok_or(Error::BadFrame)?;
        let bytes = page
            .get(at..at.checked_add(8).ok_or(Error::BadFrame)?)
            .ok_or(Error::BadFrame)?;
        Ok(u64_at(bytes, 0))
    }

    fn write_entry(&mut self, _frame: Hpa, _index: usize, _value: u64) -> Result<(), Error> {
        Err(Error::BadFrame)
    }
}
