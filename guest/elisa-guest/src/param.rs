// SPDX-License-Identifier: GPL-2.0
//! The gates a guest learns from its VMM, parsed without allocation.
//!
//! Two channels carry the same entries, `<G>:<index>[:<name>]` (G in hex with `0x`, the
//! index in decimal, the name 1..=31 of `[A-Za-z0-9._-]`):
//!
//! - the guest kernel parameter `elisa_guest.gate=`, entries separated by commas (and the
//!   parameter may be given several times): [`GateList::parse_param`];
//! - QEMU's fw_cfg file `opt/elisa/gates`, one entry per line: [`GateList::parse_lines`].
//!
//! Both are written by the VMM, which the guest trusts to tell it its gates, but not to be
//! free of mistakes: anything else than the grammar above is an error ([`ParseError`]),
//! never a panic, and nothing is kept of a list that failed. A gate without a name is
//! called `gate<n>`, `n` being its number in the list. At most [`MAX_GATES`] gates, names
//! unique.
//!
//! ```
//! use elisa_guest::param::GateList;
//!
//! let mut list = GateList::new();
//! list.parse_lines(b"0xffff800000002000:511:counter\n0xffff800000002000:510:log\n")?;
//! list.parse_param("0x500000000000:509")?;
//! assert_eq!(list.len(), 3);
//! assert_eq!(list.find("log"), Some(1));
//! let g = list.get(2).unwrap();
//! assert_eq!((g.name(), g.gate().g(), g.gate().index()), ("gate2", 0x5000_0000_0000, 509));
//! // Garbage is an error, and the list stays as it was.
//! assert!(list.parse_param("0x500000000000:511:bad name").is_err());
//! assert_eq!(list.len(), 3);
//! # Ok::<(), elisa_guest::param::ParseError>(())
//! ```

use super::{gate, Gate};

/// Most gates one guest knows: as many as one VM can be granted (`ELISA_MAX_GRANTS`).
pub const MAX_GATES: usize = 8;
/// Longest gate name, in bytes.
pub const MAX_NAME_LEN: usize = 31;
/// Longest text [`GateList::parse_lines`] accepts, in bytes (eight full lines fit).
pub const MAX_TEXT_LEN: usize = 4096;

/// Why a gate entry or list was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not `<G>:<index>[:<name>]`: missing or extra fields, G without `0x`, a character that
    /// is not a digit.
    Syntax,
    /// G is not 4 KiB aligned, or its gate view (from G - 0x2000) lies below 4 GiB, or the
    /// range G - 0x2000 .. G + 0x3000 is not canonical (4-level paging) in one half.
    Address,
    /// The gate index is not 1..=511.
    Index,
    /// The name is empty, longer than [`MAX_NAME_LEN`], or has a character outside
    /// `[A-Za-z0-9._-]`.
    Name,
    /// Two gates have the same name.
    Duplicate,
    /// More than [`MAX_GATES`] gates.
    TooMany,
    /// The text is longer than [`MAX_TEXT_LEN`] or not ASCII.
    Text,
}

impl ParseError {
    /// What was wrong, for the kernel log.
    pub const fn message(self) -> &'static str {
        match self {
            Self::Syntax => "not <G>:<index>[:<name>] (G in hex with 0x, index in decimal)",
            Self::Address => {
                "G must be 4 KiB aligned, G - 0x2000 at or above 4 GiB, G - 0x2000 .. G + 0x3000 canonical"
            }
            Self::Index => "the gate index must be 1..511",
            Self::Name => "a name is 1..31 characters of A-Z a-z 0-9 . _ -",
            Self::Duplicate => "two gates have the same name",
            Self::TooMany => "more than 8 gates",
            Self::Text => "the gate list is longer than 4096 bytes or not ASCII",
        }
    }
}

/// The name of a gate: 1..=[`MAX_NAME_LEN`] bytes of `[A-Za-z0-9._-]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GateName {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl GateName {
    /// `name` if it is a valid gate name.
    pub fn new(name: &str) -> Option<Self> {
        let raw = name.as_bytes();
        if raw.is_empty() || raw.len() > MAX_NAME_LEN || !raw.iter().all(|&b| name_byte(b)) {
            return None;
        }
        let mut bytes = [0; MAX_NAME_LEN];
        bytes.get_mut(..raw.len())?.copy_from_slice(raw);
        Some(Self {
            len: u8::try_from(raw.len()).ok()?,
            bytes,
        })
    }

    /// `gate<n>`, the name of an unnamed gate number `n`.
    pub fn numbered(n: usize) -> Self {
        let mut bytes = [0; MAX_NAME_LEN];
        let mut len = 0usize;
        for &b in b"gate" {
            if let Some(slot) = bytes.get_mut(len) {
                *slot = b;
                len = len.saturating_add(1);
            }
        }
        // The decimal digits of n, most significant first (at most 20 for a u64).
        let mut digits = [0u8; 20];
        let mut nd = 0usize;
        let mut v = n;
        loop {
            if let Some(d) = digits.get_mut(nd) {
                *d = b'0'.saturating_add((v % 10) as u8);
            }
            nd = nd.saturating_add(1);
            v /= 10;
            if v == 0 || nd >= digits.len() {
                break;
            }
        }
        for i in (0..nd).rev() {
            if let (Some(slot), Some(&d)) = (bytes.get_mut(len), digits.get(i)) {
                *slot = d;
                len = len.saturating_add(1);
            }
        }
        Self {
            len: u8::try_from(len).unwrap_or(0),
            bytes,
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        let raw = self.bytes.get(..usize::from(self.len)).unwrap_or(&[]);
        // Only ASCII bytes are ever stored.
        core::str::from_utf8(raw).unwrap_or("")
    }

    /// The name as bytes, without a terminator.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl core::fmt::Debug for GateName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl core::fmt::Display for GateName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

const fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

/// Parses a number of `digits` (all of `0-9`, or `0-9a-fA-F` for hex), at least one; no
/// sign, no whitespace, no overflow.
fn parse_number(digits: &str, radix: u32) -> Option<u64> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The bits below the sign extension of a 4-level canonical address: an address is in the
/// lower (user) half when no bit from here up is set.
const LOW_BITS: u32 = 47;

/// Whether G, a valid entry address, is in the lower (user) half: where guest user space
/// can map a user grant's entry block, and where a kernel-mode call cannot fetch under
/// LASS.
pub fn in_lower_half(g: u64) -> bool {
    g >> LOW_BITS == 0
}

/// Whether G can carry an entry block: 4 KiB aligned, the gate view's pages (from
/// G - 0x2000) at or above 4 GiB, and G - 0x2000 .. G + 0x3000 canonical for 4-level
/// paging and in one half. The same rule as the host's `GateParams::validate`.
pub fn valid_entry_address(g: u64) -> bool {
    let canonical = |a: u64| {
        let top = a >> LOW_BITS;
        top == 0 || top == (u64::MAX >> LOW_BITS)
    };
    let page = gate::PAGE_BYTES as u64;
    let below = gate::TRUSTED_BLOCK_START.unsigned_abs();
    let above = gate::GUEST_BLOCK_END.unsigned_abs();
    let (Some(start), Some(end)) = (g.checked_sub(below), g.checked_add(above.saturating_sub(1)))
    else {
        return false;
    };
    g & page.wrapping_sub(1) == 0
        && start >= gate::MIN_GATE_GVA
        && canonical(start)
        && canonical(end)
        && (start >> LOW_BITS) == (end >> LOW_BITS)
}

/// Parses one entry `<G>:<index>[:<name>]`. Does not check G beyond its syntax and
/// alignment-free value; [`parse_entry`] does.
fn split_entry(entry: &str) -> Result<(u64, u64, Option<&str>), ParseError> {
    let mut fields = entry.split(':');
    let g = fields.next().ok_or(ParseError::Syntax)?;
    let index = fields.next().ok_or(ParseError::Syntax)?;
    let name = fields.next();
    if fields.next().is_some() {
        return Err(ParseError::Syntax);
    }
    let g = g.strip_prefix("0x").ok_or(ParseError::Syntax)?;
    let g = parse_number(g, 16).ok_or(ParseError::Syntax)?;
    let index = parse_number(index, 10).ok_or(ParseError::Index)?;
    Ok((g, index, name))
}

/// Parses and checks one entry `<G>:<index>[:<name>]`.
///
/// # Errors
///
/// [`ParseError::Syntax`], [`ParseError::Address`], [`ParseError::Index`],
/// [`ParseError::Name`].
pub fn parse_entry(entry: &str) -> Result<(Gate, Option<GateName>), ParseError> {
    let (g, index, name) = split_entry(entry)?;
    let index = u32::try_from(index)
        .ok()
        .filter(|i| (1..512).contains(i))
        .ok_or(ParseError::Index)?;
    if !valid_entry_address(g) {
        return Err(ParseError::Address);
    }
    let name = match name {
        None => None,
        Some(n) => Some(GateName::new(n).ok_or(ParseError::Name)?),
    };
    Ok((Gate::new(g, index), name))
}

/// Parses an entry as [`Gate::from_param`] always did: only syntax, alignment and index are
/// checked, so that existing callers keep accepting what they accepted.
pub(super) fn parse_legacy(entry: &str) -> Option<Gate> {
    let (g, index, name) = split_entry(entry).ok()?;
    let index = u32::try_from(index).ok().filter(|i| (1..512).contains(i))?;
    if let Some(n) = name {
        GateName::new(n)?;
    }
    (g & (gate::PAGE_BYTES as u64).wrapping_sub(1) == 0).then_some(Gate::new(g, index))
}

/// One gate of a [`GateList`]: G, the index and the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedGate {
    gate: Gate,
    name: GateName,
}

impl NamedGate {
    /// G and the index.
    pub const fn gate(&self) -> Gate {
        self.gate
    }

    /// The name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The name as a [`GateName`].
    pub const fn gate_name(&self) -> &GateName {
        &self.name
    }
}

/// The gates of this guest, numbered 0.. in the order they were added. At most
/// [`MAX_GATES`]; names are unique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateList {
    gates: [Option<NamedGate>; MAX_GATES],
    len: usize,
}

impl Default for GateList {
    fn default() -> Self {
        Self::new()
    }
}

impl GateList {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            gates: [None; MAX_GATES],
            len: 0,
        }
    }

    /// Number of gates.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no gate.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gate number `n`.
    pub fn get(&self, n: usize) -> Option<&NamedGate> {
        self.gates.get(n).and_then(Option::as_ref)
    }

    /// The gates, in order.
    pub fn iter(&self) -> impl Iterator<Item = &NamedGate> {
        self.gates.iter().take(self.len).flatten()
    }

    /// The number of the gate called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.iter().position(|g| g.name() == name)
    }

    /// Appends a gate; without a name it is called `gate<n>`.
    ///
    /// # Errors
    ///
    /// [`ParseError::TooMany`], [`ParseError::Duplicate`].
    pub fn push(&mut self, gate: Gate, name: Option<GateName>) -> Result<(), ParseError> {
        let name = name.unwrap_or_else(|| GateName::numbered(self.len));
        if self.iter().any(|g| g.name == name) {
            return Err(ParseError::Duplicate);
        }
        let slot = self.gates.get_mut(self.len).ok_or(ParseError::TooMany)?;
        *slot = Some(NamedGate { gate, name });
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    /// Appends the entries of `items`, all or none.
    fn extend<'a>(&mut self, items: impl Iterator<Item = &'a str>) -> Result<(), ParseError> {
        let mut next = self.clone();
        for item in items {
            let (gate, name) = parse_entry(item)?;
            next.push(gate, name)?;
        }
        *self = next;
        Ok(())
    }

    /// Appends the gates of the value of the `elisa_guest.gate=` parameter: entries
    /// `<G>:<index>[:<name>]` separated by commas. Empty entries are skipped. All or none.
    ///
    /// # Errors
    ///
    /// As [`parse_entry`] and [`GateList::push`].
    pub fn parse_param(&mut self, value: &str) -> Result<(), ParseError> {
        self.extend(value.split(',').filter(|s| !s.is_empty()))
    }

    /// Appends the gates of a text with one entry per line (the fw_cfg file
    /// `opt/elisa/gates`): lines end in `\n`, the last one may not; whitespace at either
    /// end of a line, empty lines and trailing NUL bytes are ignored. All or none.
    ///
    /// # Errors
    ///
    /// [`ParseError::Text`] for a text longer than [`MAX_TEXT_LEN`] or not ASCII; else as
    /// [`parse_entry`] and [`GateList::push`].
    pub fn parse_lines(&mut self, text: &[u8]) -> Result<(), ParseError> {
        if text.len() > MAX_TEXT_LEN || !text.is_ascii() {
            return Err(ParseError::Text);
        }
        let end = text
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i.saturating_add(1));
        let text = text.get(..end).ok_or(ParseError::Text)?;
        let text = core::str::from_utf8(text).map_err(|_| ParseError::Text)?;
        self.extend(
            text.split('\n')
                .map(|l| l.trim_matches(|c: char| c.is_ascii_whitespace()))
                .filter(|l| !l.is_empty()),
        )
    }

    /// Where a `#UD` at `ip` continues when it is the entry `VMFUNC` of one of the gates
    /// ([`Gate::entry_vmfunc`]): that gate's fallback stub ([`Gate::fallback`]).
    pub fn fallback_for(&self, ip: u64) -> Option<u64> {
        self.iter()
            .map(NamedGate::gate)
            .find(|g| g.entry_vmfunc() == ip)
            .map(|g| g.fallback())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const G: u64 = 0xffff_8000_0000_2000;

    #[test]
    fn entries() {
        let (g, n) = parse_entry("0xffff800000002000:511:counter").unwrap();
        assert_eq!((g.g(), g.index(), n.unwrap().as_str()), (G, 511, "counter"));
        let (g, n) = parse_entry("0x500000000000:1").unwrap();
        assert_eq!((g.g(), g.index(), n), (0x5000_0000_0000, 1, None));
        assert_eq!(
            parse_entry("0x0000000100002000:7").map(|(g, _)| g.g()),
            Ok(0x1_0000_2000)
        );
        for (bad, why) in [
            ("", ParseError::Syntax),
            ("0xffff800000002000", ParseError::Syntax),
            ("ffff800000002000:511", ParseError::Syntax),
            ("0X500000000000:511", ParseError::Syntax),
            ("0x:511", ParseError::Syntax),
            ("0x+500000000000:511", ParseError::Syntax),
            ("0x500000000000:511:a:b", ParseError::Syntax),
            ("0x1ffff800000002000:511", ParseError::Syntax),
            ("0x500000000000:+511", ParseError::Index),
            ("0x500000000000:", ParseError::Index),
            ("0x500000000000:0", ParseError::Index),
            ("0x500000000000:512", ParseError::Index),
            ("0x500000000000:99999999999999999999", ParseError::Index),
            ("0x500000000800:511", ParseError::Address),
            ("0x100001000:511", ParseError::Address),
            ("0x2000:511", ParseError::Address),
            ("0x0:511", ParseError::Address),
            ("0x800000000000:511", ParseError::Address),
            ("0x7fffffffe000:511", ParseError::Address),
            ("0xffff800000001000:511", ParseError::Address),
            ("0xfffffffffffff000:511", ParseError::Address),
            ("0x500000000000:511:", ParseError::Name),
            ("0x500000000000:511:a b", ParseError::Name),
            ("0x500000000000:511:ümlaut", ParseError::Name),
            (
                "0x500000000000:511:abcdefghijabcdefghijabcdefghijab",
                ParseError::Name,
            ),
        ] {
            assert_eq!(parse_entry(bad).map(|_| ()), Err(why), "{bad:?}");
        }
        // 31 characters is the longest name.
        assert!(parse_entry("0x500000000000:511:abcdefghijabcdefghijabcdefghija").is_ok());
        assert!(parse_entry("0x500000000000:511:A.z_0-9").is_ok());
    }

    #[test]
    fn addresses() {
        assert!(valid_entry_address(G));
        assert!(valid_entry_address(0x1_0000_2000));
        assert!(!valid_entry_address(0x1_0000_1000));
        assert!(valid_entry_address(0x7fff_ffff_d000));
        assert!(!valid_entry_address(0x7fff_ffff_e000));
        assert!(!valid_entry_address(0xffff_8000_0000_1000));
        assert!(valid_entry_address(0xffff_ffff_ffff_d000));
        assert!(!valid_entry_address(0xffff_ffff_ffff_e000));
        assert!(in_lower_half(0x5000_0000_0000) && in_lower_half(0x7fff_ffff_d000));
        assert!(!in_lower_half(G) && !in_lower_half(0x8000_0000_0000));
    }

    #[test]
    fn names() {
        assert_eq!(GateName::numbered(0).as_str(), "gate0");
        assert_eq!(GateName::numbered(7).as_str(), "gate7");
        assert_eq!(GateName::numbered(1234).as_str(), "gate1234");
        assert_eq!(
            GateName::numbered(usize::MAX).as_str(),
            format!("gate{}", usize::MAX)
        );
        assert!(GateName::new("").is_none());
        assert_eq!(GateName::new("x").map(|n| n.as_bytes().len()), Some(1));
    }

    #[test]
    fn lists() {
        let mut l = GateList::new();
        l.parse_param("0x500000000000:511,0x500000000000:510:log,,")
            .unwrap();
        l.parse_lines(b"\n 0xffff800000002000:509:ctr \r\n\n0xffff800000002000:508\0\0")
            .unwrap();
        let names: Vec<_> = l.iter().map(|g| g.name().to_string()).collect();
        assert_eq!(names, ["gate0", "log", "ctr", "gate3"]);
        assert_eq!(l.find("ctr"), Some(2));
        assert_eq!(l.find("nope"), None);
        assert_eq!(l.get(3).map(|g| g.gate().index()), Some(508));
        assert!(l.get(4).is_none());
        // All or none: a bad entry after good ones leaves the list as it was.
        let before = l.clone();
        assert_eq!(
            l.parse_param("0x500000000000:507,0x500000000000:0"),
            Err(ParseError::Index)
        );
        assert_eq!(l, before);
        assert_eq!(
            l.parse_param("0x500000000000:507:log"),
            Err(ParseError::Duplicate)
        );
        // A name that an unnamed gate got later is a duplicate too.
        assert_eq!(
            l.parse_param("0x500000000000:507:gate5,0x500000000000:506,0x500000000000:505"),
            Err(ParseError::Duplicate)
        );
        assert_eq!(l, before);
        l.parse_param("0x500000000000:507,0x500000000000:506,0x500000000000:505")
            .unwrap();
        assert_eq!(l.len(), 7);
        assert_eq!(
            l.parse_param("0x500000000000:504,0x500000000000:503"),
            Err(ParseError::TooMany)
        );
        l.parse_param("0x500000000000:504").unwrap();
        assert_eq!(l.len(), MAX_GATES);
        assert_eq!(
            l.parse_param("0x500000000000:503"),
            Err(ParseError::TooMany)
        );
        assert_eq!(l.parse_param(""), Ok(()));
    }

    #[test]
    fn text_limits() {
        let mut l = GateList::new();
        assert_eq!(
            l.parse_lines(&[b'\n'; MAX_TEXT_LEN + 1]),
            Err(ParseError::Text)
        );
        assert_eq!(l.parse_lines(&[b'\n'; MAX_TEXT_LEN]), Ok(()));
        assert_eq!(
            l.parse_lines(b"0x500000000000:511\xff"),
            Err(ParseError::Text)
        );
        assert_eq!(
            l.parse_lines(b"0x500000000000:511\0x"),
            Err(ParseError::Index)
        );
        assert_eq!(l.parse_lines(b""), Ok(()));
        assert!(l.is_empty());
    }

    #[test]
    fn fallback() {
        let mut l = GateList::new();
        l.parse_param("0xffff800000002000:511,0x500000000000:510")
            .unwrap();
        assert_eq!(l.fallback_for(G + 0xffd), Some(G + 0x1000));
        assert_eq!(l.fallback_for(0x5000_0000_0ffd), Some(0x5000_0000_1000));
        assert_eq!(l.fallback_for(G + 0xffb), None);
        assert_eq!(l.fallback_for(G + 0x1ffd), None);
        assert_eq!(GateList::new().fallback_for(G + 0xffd), None);
    }
}
