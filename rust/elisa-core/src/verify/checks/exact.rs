// SPDX-License-Identifier: GPL-2.0
//! What the views map, exactly, and W^X ([`Check::WriteXorExecute`], [`Check::GateExact`],
//! [`Check::SubExact`]).

use super::*;

impl<F: Frames + ?Sized> Ctx<'_, F> {
    pub(super) fn write_xor_execute(&self, scratch: &mut [Span]) -> Result<(), Violation> {
        const W: u64 = 1;
        const X: u64 = 2;
        let mut spans = Stack::new(scratch);
        for view in VIEWS {
            self.each_entry(view, &mut |e| {
                let EptEntry::Leaf { gpa, size, entry } = e else {
                    return Ok(());
                };
                let (w, x) = (ept_writable(entry), ept_executable(entry));
                if w && x {
                    return Err(Violation::new(
                        "EPT leaf writable and executable",
                        gpa,
                        entry,
                    ));
                }
                spans.push(Span {
                    start: entry & ADDR_MASK & !size.wrapping_sub(1),
                    len: size,
                    tag: if w { W } else { 0 } | if x { X } else { 0 },
                })
            })?;
            let roots = self.roots(view);
            self.each_guest_leaf(roots, &mut |l| {
                if l.entry & 2 != 0 && l.entry & (1 << 63) == 0 {
                    return Err(Violation::new(
                        "guest leaf writable and executable",
                        l.gva,
                        l.entry,
                    ));
                }
                if l.entry & GUEST_GLOBAL != 0 {
                    return Err(Violation::new("global trusted translation", l.gva, l.entry));
                }
                Ok(())
            })
            .map_err(|e| e.in_view(view))?;
        }
        let apts = [
            self.roots(ViewKind::Gate).apt_frame.0,
            self.roots(ViewKind::Sub).apt_frame.0,
        ];
        // Sorted by start: a span overlaps an earlier one iff it starts below its end.
        let (mut w_end, mut x_end) = (0u64, 0u64);
        for s in spans.sorted() {
            let end = s.start.saturating_add(s.len);
            if s.tag & X != 0 {
                if s.start < w_end {
                    return Err(Violation::new(
                        "frame mapped writable and executable",
                        s.start,
                        s.len,
                    ));
                }
                if apts.iter().any(|&a| within(a, s.start, s.len)) {
                    return Err(Violation::new(
                        "the APT frame is executable",
                        s.start,
                        s.len,
                    ));
                }
                x_end = x_end.max(end);
            }
            if s.tag & W != 0 {
                if s.start < x_end {
                    return Err(Violation::new(
                        "frame mapped writable and executable",
                        s.start,
                        s.len,
                    ));
                }
                w_end = w_end.max(end);
            }
        }
        Ok(())
    }

    pub(super) fn exact(&self, view: ViewKind, scratch: &mut [Span]) -> Result<(), Violation> {
        let m = self.v.mappings;
        let roots = *self.roots(view);
        let bad = |what, at, value| Err(Violation::new(what, at, value).in_view(view));
        // EPT side: the view's mappings by GPA, then the frames its stacks and tables use.
        let (by_gpa, rest) = scratch.split_at_mut(m.count().min(scratch.len()));
        let mut index = Stack::new(by_gpa);
        let (mut want_ept, mut want_guest) = (0u64, 0u64);
        for i in 0..m.count() {
            let Some(map) = m.get(i).filter(|x| x.kind.in_view(view)) else {
                continue;
            };
            want_ept = want_ept.saturating_add(map.pages);
            if map.gva.is_some() {
                want_guest = want_guest.saturating_add(map.pages);
            }
            index.push(Span {
                start: map.gpa.0,
                len: map.bytes(),
                tag: i as u64,
            })?;
        }
        let by_gpa = index.sorted();
        let mut owned = Stack::new(rest);
        let mut leaves = 0u64;
        self.each_entry(view, &mut |e| {
            let EptEntry::Leaf { gpa, size, entry } = e else {
                return Ok(());
            };
            leaves = leaves.saturating_add(1);
            let bad = |what| Err(Violation::new(what, gpa, entry));
            let Some(map) = find(by_gpa, gpa).and_then(|s| m.get(s.tag as usize)) else {
                return bad("unexpected EPT leaf");
            };
            if size != map.page_size.bytes() {
                return bad("EPT leaf of the wrong size");
            }
            if entry & 7 != map.ept.bits() {
                return bad("EPT leaf with the wrong permissions");
            }
            if (entry >> 3) & 7 != 6 || entry & LEAF_PAT_VE != LEAF_PAT_VE {
                return bad("EPT leaf not write-back, ignore-PAT, suppress-#VE");
            }
            if (entry & LEAF_USER_EXEC != 0) != (self.mbec && map.ept.executable()) {
                return bad("user-execute bit not as MBEC wants");
            }
            if entry & ADDR_MASK & size.wrapping_sub(1) != 0 {
                return bad("EPT leaf with reserved address bits set (below its size)");
            }
            let hpa = entry & ADDR_MASK & !size.wrapping_sub(1);
            match map.hpa {
                Some(first) => {
                    if Some(hpa) != first.0.checked_add(gpa.wrapping_sub(map.gpa.0)) {
                        return bad("EPT leaf points outside the expected frames");
                    }
                    Ok(())
                }
                None => {
                    if self.read(hpa, 0).is_none() {
                        return bad("EPT leaf points to a frame the views do not hold");
                    }
                    owned.push(Span {
                        start: hpa,
                        len: size,
                        tag: 1,
                    })
                }
            }
        })
        .map_err(|e| e.in_view(view))?;
        if leaves != want_ept {
            return bad("the view lacks expected EPT leaves", leaves, want_ept);
        }
        // A frame of the views (stack, table) is mapped once, and is no given frame.
        for i in 0..m.count() {
            if let Some(map) = m.get(i).filter(|x| x.kind.in_view(view)) {
                if let Some(first) = map.hpa {
                    owned.push(Span {
                        start: first.0,
                        len: map.bytes(),
                        tag: 0,
                    })?;
                }
            }
        }
        // Given frames (tag 0) may repeat; a frame of the views overlaps nothing.
        if let Some(s) = first_overlap(owned.sorted(), 0) {
            return bad("a frame of the views is mapped twice", s.start, s.len);
        }
        // Guest side: exactly the registered GVAs, with the requested permissions.
        let mut index = Stack::new(&mut *scratch);
        for i in 0..m.count() {
            let Some(map) = m.get(i).filter(|x| x.kind.in_view(view)) else {
                continue;
            };
            if let Some(gva) = map.gva {
                index.push(Span {
                    start: gva.0,
                    len: map.bytes(),
                    tag: i as u64,
                })?;
            }
        }
        let by_gva = index.sorted();
        let present_user = match self.v.header.privilege {
            CallerPrivilege::Supervisor => GUEST_P_U & 1,
            CallerPrivilege::User => GUEST_P_U,
        };
        let mut leaves = 0u64;
        self.each_guest_leaf(&roots, &mut |l| {
            leaves = leaves.saturating_add(1);
            let gva = canonical(l.gva, self.levels);
            let bad = |what| Err(Violation::new(what, gva, l.entry));
            let Some(map) = find(by_gva, gva).and_then(|s| m.get(s.tag as usize)) else {
                return bad("unexpected guest leaf");
            };
            if l.size != map.page_size.bytes() {
                return bad("guest leaf of the wrong size");
            }
            // Below a large leaf's size: the PAT bit (12), which elisa leaves 0 (write-back
            // through PAT entry 0), and reserved bits.
            if l.entry & ADDR_MASK & l.size.wrapping_sub(1) != 0 {
                return bad("guest leaf with PAT or reserved address bits set");
            }
            let gpa = l.entry & ADDR_MASK & !l.size.wrapping_sub(1);
            let offset = gva.wrapping_sub(map.gva.map_or(0, |x| x.0));
            if Some(gpa) != map.gpa.0.checked_add(offset) {
                return bad("guest leaf points to another GPA");
            }
            if Some(l.entry & GUEST_W_NX) != map.guest.map(guest_bits) {
                return bad("guest leaf with the wrong permissions");
            }
            if l.entry & GUEST_P_U != present_user {
                return bad("guest leaf U bit not as the callers' privilege wants");
            }
            // Bit 7 of a 4 KiB leaf is its PAT bit (of a larger one PS, checked above: 12).
            let pat = if l.size == PAGE_SIZE { 1 << 7 } else { 0 };
            if l.entry & (GUEST_PWT_PCD_PK | pat) != 0 {
                return bad("guest leaf with PWT, PCD, PAT or a protection key");
            }
            Ok(())
        })
        .map_err(|e| e.in_view(view))?;
        if leaves != want_guest {
            return bad("the view lacks expected guest leaves", leaves, want_guest);
        }
        Ok(())
    }
}

impl<F: Frames + ?Sized> Ctx<'_, F> {
    /// [`Check::FramesDisjoint`]: the given pages (gate code, gate data, sub code, EPTP
    /// list), the frames each view holds for its stacks and tables, and the region frames
    /// are mapped for one thing each, across both views; only region frames may share
    /// (two regions of one file range).
    pub(super) fn frames_disjoint(&self, scratch: &mut [Span]) -> Result<(), Violation> {
        const REGION: u64 = 0;
        const OTHER: u64 = 1;
        let m = self.v.mappings;
        let (index, rest) = scratch.split_at_mut(m.count().min(scratch.len()));
        let mut spans = Stack::new(rest);
        for i in 0..m.count() {
            let Some(map) = m.get(i) else {
                continue;
            };
            if let Some(first) = map.hpa {
                spans.push(Span {
                    start: first.0,
                    len: map.bytes(),
                    tag: if matches!(map.kind, MappingKind::Region(_)) {
                        REGION
                    } else {
                        OTHER
                    },
                })?;
            }
        }
        for view in VIEWS {
            // The view's mappings without a given frame, by GPA: their leaves' frames are
            // the view's own.
            let mut own = Stack::new(&mut *index);
            for i in 0..m.count() {
                if let Some(map) = m.get(i).filter(|x| x.kind.in_view(view) && x.hpa.is_none()) {
                    own.push(Span {
                        start: map.gpa.0,
                        len: map.bytes(),
                        tag: 0,
                    })?;
                }
            }
            let own = own.sorted();
            self.each_entry(view, &mut |e| {
                let EptEntry::Leaf { gpa, size, entry } = e else {
                    return Ok(());
                };
                if find(own, gpa).is_none() {
                    return Ok(());
                }
                spans.push(Span {
                    start: entry & ADDR_MASK & !size.wrapping_sub(1),
                    len: size,
                    tag: OTHER,
                })
            })?;
        }
        match first_overlap(spans.sorted(), REGION) {
            Some(s) => Err(Violation::new(
                "a frame is mapped for two things (a given page, a view's own frame, a region)",
                s.start,
                s.len,
            )),
            None => Ok(()),
        }
    }
}
