// SPDX-License-Identifier: GPL-2.0
//! The APT and the guest's choice of CR3 ([`Check::Apt`], [`Check::AnyCr3`],
//! [`Check::CollidingCr3`]).

use super::*;

impl<F: Frames + ?Sized> Ctx<'_, F> {
    /// The chain table `table` of `level` (1..=3): 512 copies of one entry leading to `next`.
    pub(super) fn chain_table(
        &self,
        view: ViewKind,
        table: Hpa,
        level: u8,
        next: Hpa,
    ) -> Result<(), Violation> {
        let bad = |what, value| Err(Violation::new(what, table.0, value).in_view(view));
        let Some(first) = self.read(table.0, 0) else {
            return bad("APT chain table not in the frames", 0);
        };
        // With EPT A/D the CPU sets the accessed (and, on leaves, dirty) flags of the
        // entries it uses: those may differ.
        for index in 1..ENTRIES_PER_TABLE {
            let same = self
                .read(table.0, index)
                .is_some_and(|e| (e ^ first) & !EPT_ACCESSED_DIRTY == 0);
            if !same {
                return bad(
                    "APT chain table holds more than its fill entry",
                    index as u64,
                );
            }
        }
        if first & ADDR_MASK != next.0 || first & 1 == 0 || ept_executable(first) && level == 1 {
            return bad("APT chain entry does not lead to the APT", first);
        }
        if level == 1 {
            let rw = if self.ad { 3 } else { 1 };
            if first & 7 != rw || (first >> 3) & 7 != 6 {
                return bad("APT leaf permissions or memory type", first);
            }
            // As every other leaf: ignore-PAT (the guest's PAT and CR3's PCD/PWT do not
            // change the memory type of a walk's reads) and suppress-#VE (a violation
            // exits, never a #VE in the guest).
            if first & LEAF_PAT_VE != LEAF_PAT_VE {
                return bad("APT leaf without ignore-PAT or suppress-#VE", first);
            }
        } else if first & (1 << 7) != 0 {
            return bad("APT chain entry is a large leaf", first);
        }
        Ok(())
    }

    pub(super) fn apt(&self, scratch: &mut [Span], rng: &mut Rng) -> Result<(), Violation> {
        let h = self.v.header;
        let (start, len) = (h.window.0 .0, h.window.1);
        let end = start
            .checked_add(len)
            .filter(|&e| e <= GPA_LIMIT && start >= MIN_TRUSTED_GPA && len != 0)
            .ok_or(Violation::new(
                "trusted window outside [4 MiB, 2^48)",
                start,
                len,
            ))?;
        for view in VIEWS {
            let roots = *self.roots(view);
            let [c1, c2, c3] = roots.apt_chain;
            self.chain_table(view, c1, 1, roots.apt_frame)?;
            self.chain_table(view, c2, 2, c1)?;
            self.chain_table(view, c3, 3, c2)?;
            let bad = |what, at, value| Err(Violation::new(what, at, value).in_view(view));
            let mut spans = Stack::new(&mut *scratch);
            self.each_entry(view, &mut |e| {
                let (gpa, size) = e.range();
                let inside = gpa >= start && gpa.saturating_add(size) <= end;
                let overlaps = gpa < end && gpa.saturating_add(size) > start;
                match e {
                    EptEntry::Empty { .. } => Err(Violation::new("zero EPT entry", gpa, size)),
                    EptEntry::Hole { entry, .. } if !inside || entry != EPT_HOLE => Err(
                        Violation::new("hole outside the trusted window", gpa, entry),
                    ),
                    EptEntry::Leaf { entry, .. } if !inside => Err(Violation::new(
                        "leaf outside the trusted window",
                        gpa,
                        entry,
                    )),
                    EptEntry::Apt { .. } if overlaps => {
                        Err(Violation::new("trusted window reaches the APT", gpa, size))
                    }
                    EptEntry::Apt { .. } => Ok(()),
                    EptEntry::Hole { .. } | EptEntry::Leaf { .. } => spans.push(Span {
                        start: gpa,
                        len: size,
                        tag: 0,
                    }),
                }
                .map_err(|e| e.in_view(view))
            })?;
            // The trusted window is covered exactly by this view's leaves and holes.
            let mut at = start;
            for s in spans.sorted() {
                if s.start != at {
                    return bad("gap or overlap in the trusted window", at, s.start);
                }
                at = s.start.saturating_add(s.len);
            }
            if at != end {
                return bad("the trusted window is not covered", at, end);
            }
            for _ in 0..APT_SAMPLES {
                let gpa = rng.below(GPA_LIMIT);
                match ept_walk(self.frames, roots.eptp, gpa) {
                    Ok(leaf) if leaf.hpa & !PAGE_MASK == roots.apt_frame.0 => {
                        let ok = !h.in_window(gpa)
                            && leaf.size == PAGE_SIZE
                            && leaf.perms.read
                            && leaf.perms.write == self.ad
                            && !leaf.perms.exec
                            && !leaf.perms.user_exec
                            && leaf.mem_type == 6
                            && leaf.ignore_pat
                            && leaf.suppress_ve;
                        if !ok {
                            return bad("APT translation with the wrong properties", gpa, leaf.hpa);
                        }
                    }
                    Ok(leaf) if !h.in_window(gpa) => {
                        return bad("GPA outside the window misses the APT", gpa, leaf.hpa);
                    }
                    Ok(_) => {}
                    Err(EptFault::NotPresent { entry, .. })
                        if h.in_window(gpa) && entry == EPT_HOLE => {}
                    Err(_) => return bad("unexpected EPT fault", gpa, 0),
                }
            }
            // Guest RAM (every legitimate CR3) always reaches the APT.
            let ram = rng.below(start.min(1 << 32));
            match ept_walk(self.frames, roots.eptp, ram) {
                Ok(leaf) if leaf.hpa & !PAGE_MASK == roots.apt_frame.0 => {}
                _ => return bad("guest memory does not reach the APT", ram, 0),
            }
        }
        Ok(())
    }

    pub(super) fn any_cr3(&self, rng: &mut Rng) -> Result<(), Violation> {
        let h = self.v.header;
        let levels = self.levels;
        let g = h.entry_gva.0;
        let mut probes = List::<MAX_PROBES>::new();
        for off in [0u64, 0x1000, 0x2000] {
            probes.push(g.wrapping_add(off));
        }
        for off in [0x1000u64, 0x2000, 0x3000] {
            probes.push(g.wrapping_sub(off));
        }
        let m = self.v.mappings;
        let with_gva = (0..m.count())
            .filter(|&i| m.get(i).is_some_and(|x| x.gva.is_some()))
            .count();
        let stride = with_gva.div_ceil(PROBE_MAPPINGS).max(1);
        for map in (0..m.count())
            .filter_map(|i| m.get(i))
            .filter(|x| x.gva.is_some())
            .step_by(stride)
        {
            let gva = map.gva.map_or(0, |x| x.0);
            let bytes = map.bytes();
            probes.push(gva);
            probes.push(gva.wrapping_sub(PAGE_SIZE));
            probes.push(gva.wrapping_add(bytes.saturating_sub(1)));
            probes.push(gva.wrapping_add(rng.below(bytes)));
            probes.push(gva.wrapping_add(bytes));
        }
        for _ in 0..8 {
            probes.push(canonical(rng.next(), levels));
        }
        let list = self.mapping(MappingKind::EptpList)?;
        for view in VIEWS {
            let roots = self.roots(view);
            let e = roots.eptp;
            let bad = |what, at, value| Err(Violation::new(what, at, value).in_view(view));
            // The reference: the walk from the root frame, i.e. CR3 = any GPA of guest RAM.
            // GPA 0 is always guest RAM; it reaches the trusted root.
            match ept_walk(self.frames, e, 0) {
                Ok(leaf) if leaf.hpa == roots.apt_frame.0 => {}
                _ => return bad("GPA 0 does not reach the trusted root", 0, 0),
            }
            let code = self.code(view)?;
            let code_gva = code.gva.map_or(0, |x| x.0);
            let t = guest_walk(self.frames, e, levels, 0, code_gva, self.ad);
            if t.map(|t| t.gpa) != Ok(code.gpa.0) {
                return bad(
                    "G + 0x1000 does not translate to the code page",
                    code_gva,
                    0,
                );
            }
            let list_gva = list.gva.map_or(0, |x| x.0);
            let t = guest_walk(self.frames, e, levels, 0, list_gva, self.ad);
            if t.map(|t| (t.gpa, t.writable)) != Ok((list.gpa.0, true)) {
                return bad(
                    "G does not translate to the EPTP list, writable",
                    list_gva,
                    0,
                );
            }
            // Random CR3 values, with random low bits (PCID, PWT, PCD), outside the window
            // as the gate compares them (bits 47:12), with random bits 51:48 (legal on a
            // CPU with 52 physical-address bits; the views' walks ignore them).
            let mut cr3s = [0u64; CR3_SAMPLES];
            for cr3 in cr3s.iter_mut() {
                let mut c = rng.below(GPA_LIMIT);
                if h.in_window(c) {
                    c = rng.below(h.window.0 .0);
                }
                *cr3 = c | (rng.next() & PAGE_MASK) | (rng.below(16) << 48);
            }
            for &gva in probes.as_slice() {
                let reference = guest_walk(self.frames, e, levels, 0, gva, self.ad);
                for &cr3 in &cr3s {
                    if guest_walk(self.frames, e, levels, cr3, gva, self.ad) != reference {
                        return bad("a CR3 gives another translation of a GVA", cr3, gva);
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn colliding_cr3(&self, memo: &mut [Span]) -> Result<(), Violation> {
        let h = self.v.header;
        let gate = *self.roots(ViewKind::Gate);
        let code = self.code(ViewKind::Gate)?.gpa.0;
        let levels = self.levels;
        let ad = self.ad;
        for view in VIEWS {
            self.each_entry(view, &mut |e| {
                let (gpa, size) = e.range();
                let last = gpa.wrapping_add(size.wrapping_sub(PAGE_SIZE));
                let candidates = match e {
                    EptEntry::Leaf { .. } if size == PAGE_SIZE => [gpa, gpa, gpa],
                    EptEntry::Leaf { .. } => [gpa, gpa.wrapping_add(size / 2), last],
                    EptEntry::Hole { .. } => [gpa, last, last],
                    _ => return Ok(()),
                };
                for cr3 in candidates {
                    let mut check = |lgpa: u64, lsize: u64| {
                        if within(code, lgpa, lsize) {
                            return Err(Violation::new(
                                "a trusted CR3 reaches the gate code page in the gate view",
                                cr3,
                                lgpa,
                            ));
                        }
                        if let Ok(t) = ept_walk(self.frames, gate.eptp, lgpa) {
                            if t.perms.exec || t.perms.user_exec {
                                return Err(Violation::new(
                                    "a trusted CR3 reaches an executable leaf in the gate view",
                                    cr3,
                                    lgpa,
                                ));
                            }
                        }
                        Ok(())
                    };
                    for_each_reachable_leaf(
                        self.frames,
                        gate.eptp,
                        levels,
                        cr3,
                        ad,
                        &mut *memo,
                        &mut check,
                    )?;
                    // A trusted GPA is an explicit leaf or a hole in each view, never the APT.
                    for other in VIEWS {
                        let r = self.roots(other);
                        match ept_walk(self.frames, r.eptp, cr3) {
                            Ok(t) if t.hpa & !PAGE_MASK != r.apt_frame.0 => {}
                            Err(EptFault::NotPresent { .. }) => {}
                            _ => {
                                return Err(Violation::new(
                                    "a trusted GPA is neither a leaf nor a hole",
                                    cr3,
                                    0,
                                )
                                .in_view(other))
                            }
                        }
                    }
                    if !h.in_window(cr3) {
                        return Err(Violation::new("trusted leaf outside the window", cr3, 0));
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}
