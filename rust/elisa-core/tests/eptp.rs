// SPDX-License-Identifier: GPL-2.0
//! EPTP values and the EPTP-list page layout.

mod common;

use common::*;
use elisa_core::addr::Hpa;
use elisa_core::eptp::*;
use elisa_core::frame::Frames;
use elisa_core::Error;
use proptest::prelude::*;

#[test]
fn eptp_for_root_is_wb_walk4_with_ad_per_policy() {
    for ad in [false, true] {
        let e = Eptp::for_root(Hpa(0x0000_1234_5678_9000), ad);
        assert_eq!(e.raw() & 7, 6);
        assert_eq!((e.raw() >> 3) & 7, 3);
        assert_eq!(e.raw() & (1 << 6) != 0, ad);
        assert_eq!(e.root(), Hpa(0x0000_1234_5678_9000));
        assert_eq!(e.walk_length(), 4);
        assert!(e.check_elisa(ad).is_ok() && e.check_elisa(!ad).is_err());
        assert_eq!(Eptp::from_raw(e.raw()), Ok(e));
    }
    // KVM may run the default view with a 5-level walk: valid, but not elisa's own.
    let five = Eptp::from_raw(0x5000 | 6 | (4 << 3)).unwrap();
    assert_eq!(five.walk_length(), 5);
    assert_eq!(five.check_elisa(false), Err(Error::InvalidEptp));
    for bad in [
        0x5000 | 3 | (3 << 3),
        0x5000 | 6 | (2 << 3),
        0x5000 | 6 | (3 << 3) | (1 << 7),
        (1 << 60) | 0x1e,
    ] {
        assert_eq!(Eptp::from_raw(bad), Err(Error::InvalidEptp), "{bad:#x}");
    }
}

#[test]
fn every_valid_eptp_is_a_not_present_page_table_entry() {
    property("valid EPTPs have bit 0 clear", any::<u64>(), |raw| {
        if let Ok(e) = Eptp::from_raw(raw) {
            prop_assert_eq!(e.raw() & 1, 0);
        }
        Ok(())
    });
}

#[test]
fn list_layout_and_validation() {
    let default = Eptp::for_root(Hpa(0x1000), true);
    let gate = Eptp::for_root(Hpa(0x2000), true);
    let sub = Eptp::for_root(Hpa(0x3000), true);
    let list = EptpList::new(default, gate);
    let e = list.entries();
    assert_eq!((e[0], e[1], e[511]), (default.raw(), 0, gate.raw()));
    assert!(e[2..511].iter().all(|&v| v == 0));
    assert_eq!(
        (
            EPTP_INDEX_DEFAULT,
            EPTP_INDEX_SUB,
            EPTP_INDEX_GATE,
            EPTP_LIST_ENTRIES
        ),
        (0, 1, 511, 512)
    );

    let mut raw = *e;
    raw[1] = sub.raw();
    assert_eq!(
        EptpList::from_entries(raw).unwrap().state(),
        EptpListState::SubHop(sub)
    );
    // A module's list: eight gates, one of them closed (0) for the guest's mode.
    let mut eight = *e;
    for (i, g) in eight.iter_mut().enumerate().skip(EPTP_INDEX_LOWEST_GATE) {
        *g = Eptp::for_root(Hpa(0x10_0000 + i as u64 * 0x1000), true).raw();
    }
    eight[508] = 0;
    assert_eq!(EPTP_INDEX_LOWEST_GATE, 504);
    assert!(EptpList::from_entries(eight).is_ok());
    for (index, value) in [
        (0usize, 0u64),
        (1, 0x1003),
        (2, sub.raw()),
        (503, sub.raw()),
        (510, 1),
        (504, 0x1003),
        (0, 0x1003),
    ] {
        let mut bad = *e;
        bad[index] = value;
        assert_eq!(
            EptpList::from_entries(bad),
            Err(Error::InvalidEptpList),
            "index {index} = {value:#x}"
        );
    }
    let mut l = list.clone();
    l.set_default(sub);
    assert_eq!(l.entry(0), Some(sub.raw()));
    assert_eq!(l.entry(512), None);

    let mut mem = MemFrames::new();
    let page = mem.alloc_zeroed().unwrap();
    list.write_to(&mut mem, page).unwrap();
    assert_eq!(EptpList::read_from(&mem, page).unwrap(), list);
    assert_eq!(EptpList::read_from(&mem, Hpa(0x1000)), Err(Error::BadFrame));
}
