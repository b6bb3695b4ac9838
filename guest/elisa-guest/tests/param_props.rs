// SPDX-License-Identifier: GPL-2.0
//! Property tests of the gate-list parsers: whatever the VMM (or a mistake) puts on the
//! command line or in fw_cfg, parsing returns a list that obeys every rule, or an error
//! and the list as it was. Never a panic.

use elisa_guest::param::{
    parse_entry, valid_entry_address, GateList, ParseError, MAX_GATES, MAX_NAME_LEN,
};
use proptest::prelude::*;

/// Every rule a parsed list obeys.
fn check_list(l: &GateList) {
    assert!(l.len() <= MAX_GATES);
    assert_eq!(l.iter().count(), l.len());
    for (n, g) in l.iter().enumerate() {
        assert!(valid_entry_address(g.gate().g()), "{g:?}");
        assert!((1..512).contains(&g.gate().index()), "{g:?}");
        let name = g.name();
        assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN, "{name:?}");
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        assert_eq!(l.find(name), Some(n), "names are unique");
    }
}

/// A valid entry: G in the lower or upper half, an index, maybe a name.
fn entry() -> impl Strategy<Value = (u64, u32, Option<String>)> {
    let low = (0x10_0002u64..0x7_ffff_fffd).prop_map(|p| p << 12);
    let high = (0xf_ffff_8000_0002u64..0xf_ffff_ffff_fffd).prop_map(|p| p << 12);
    (
        prop_oneof![low, high],
        1u32..512,
        proptest::option::of("[A-Za-z0-9._-]{1,31}"),
    )
}

fn format_entry((g, index, name): &(u64, u32, Option<String>)) -> String {
    match name {
        Some(n) => format!("{g:#x}:{index}:{n}"),
        None => format!("{g:#x}:{index}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_as_lines(text in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut l = GateList::new();
        match l.parse_lines(&text) {
            Ok(()) => check_list(&l),
            Err(_) => prop_assert!(l.is_empty()),
        }
    }

    #[test]
    fn any_string_as_param(s in "[0-9a-fx:,A-Za-z._ \n-]{0,200}") {
        let mut l = GateList::new();
        l.parse_param("0x500000000000:511:first").unwrap();
        let before = l.clone();
        match l.parse_param(&s) {
            Ok(()) => check_list(&l),
            Err(_) => prop_assert_eq!(&l, &before),
        }
    }

    #[test]
    fn valid_lists_round_trip(entries in proptest::collection::vec(entry(), 0..=MAX_GATES)) {
        let text: Vec<String> = entries.iter().map(format_entry).collect();
        let mut by_param = GateList::new();
        let mut by_lines = GateList::new();
        let r1 = by_param.parse_param(&text.join(","));
        let r2 = by_lines.parse_lines(format!("{}\n", text.join("\n")).as_bytes());
        prop_assert_eq!(r1, r2);
        prop_assert_eq!(&by_param, &by_lines);
        match r1 {
            Ok(()) => {
                check_list(&by_param);
                prop_assert_eq!(by_param.len(), entries.len());
                for (got, want) in by_param.iter().zip(&entries) {
                    prop_assert_eq!(got.gate().g(), want.0);
                    prop_assert_eq!(got.gate().index(), want.1);
                    if let Some(n) = &want.2 {
                        prop_assert_eq!(got.name(), n.as_str());
                    }
                }
            }
            // Only a clash of names (given, or gate<n> of an unnamed one) is refused.
            Err(e) => prop_assert_eq!(e, ParseError::Duplicate),
        }
    }

    #[test]
    fn one_mutation(e in entry(), pos in any::<prop::sample::Index>(), c in any::<char>(),
                    kind in 0u8..3) {
        let mut s: Vec<char> = format_entry(&e).chars().collect();
        let i = pos.index(s.len() + 1);
        match kind {
            0 => s.insert(i, c),
            1 if i < s.len() => { s.remove(i); }
            _ if i < s.len() => s[i] = c,
            _ => s.push(c),
        }
        let s: String = s.into_iter().collect();
        if let Ok((g, name)) = parse_entry(&s) {
            prop_assert!(valid_entry_address(g.g()));
            prop_assert!((1..512).contains(&g.index()));
            if let Some(n) = name {
                prop_assert!(!n.as_str().is_empty());
            }
        }
        let mut l = GateList::new();
        if l.parse_param(&s).is_ok() {
            check_list(&l);
        }
    }
}

#[test]
fn nine_gates_are_too_many() {
    let nine: Vec<String> = (0..9)
        .map(|i| format!("0x500000000000:{}", 511 - i))
        .collect();
    let mut l = GateList::new();
    assert_eq!(l.parse_param(&nine.join(",")), Err(ParseError::TooMany));
    assert!(l.is_empty());
    assert_eq!(l.parse_param(&nine[..8].join(",")), Ok(()));
}
