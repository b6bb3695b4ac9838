// SPDX-License-Identifier: GPL-2.0
//! The emitted pages and the gate view's one executable page ([`Check::Pages`],
//! [`Check::GateExecute`]).

use super::*;

impl<F: Frames + ?Sized> Ctx<'_, F> {
    pub(super) fn same_page(&self, frame: Hpa, page: &[u8; PAGE_BYTES]) -> Result<(), Violation> {
        for (index, chunk) in page.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let want = u64::from_le_bytes(word);
            let got = self.read(frame.0, index).ok_or(Violation::new(
                "code or data page not in the frames",
                frame.0,
                0,
            ))?;
            if got != want {
                return Err(Violation::new(
                    "page differs from what the gate emitter writes",
                    frame.0.wrapping_add((index as u64).wrapping_mul(8)),
                    got,
                ));
            }
        }
        Ok(())
    }

    pub(super) fn pages(&self) -> Result<(), Violation> {
        let h = self.v.header;
        let stack = self.mapping(MappingKind::SubStack)?;
        let top = stack.gva.map_or(0, |g| g.0.wrapping_add(stack.bytes()));
        let sub_eptp = Eptp::from_raw(h.sub.eptp)
            .map_err(|_| Violation::new("sub EPTP malformed", h.sub.eptp, 0))?;
        let params = GateParams {
            paging: h.paging,
            entry: h.entry_gva,
            sub_eptp,
            sub_stack_top: Gva(top),
            service_entry: h.service_entry,
            window: h.window,
        };
        let emitted = |e: Result<(), super::super::Error>| {
            e.map_err(|_| Violation::new("the gate emitter refuses these parameters", top, 0))
        };
        let mut page = [0u8; PAGE_BYTES];
        let hpa = |m: Mapping| {
            m.hpa.ok_or(Violation::new(
                "code or data page without a frame",
                m.gpa.0,
                0,
            ))
        };
        emitted(gate::write_gate_code(&mut page, h.privilege))?;
        self.same_page(hpa(self.mapping(MappingKind::GateCode)?)?, &page)
            .map_err(|e| e.in_view(ViewKind::Gate))?;
        emitted(gate::write_gate_data(&mut page, &params))?;
        self.same_page(hpa(self.mapping(MappingKind::GateData)?)?, &page)
            .map_err(|e| e.in_view(ViewKind::Gate))?;
        emitted(gate::write_sub_code(&mut page, &params, h.privilege))?;
        self.same_page(hpa(self.mapping(MappingKind::SubCode)?)?, &page)
            .map_err(|e| e.in_view(ViewKind::Sub))
    }

    pub(super) fn gate_execute(&self) -> Result<(), Violation> {
        let view = ViewKind::Gate;
        let roots = self.roots(view);
        let code = self.code(view)?;
        let mut count = 0u64;
        let mut first = None;
        self.each_entry(view, &mut |e| {
            if let EptEntry::Leaf { gpa, size, entry } = e {
                if ept_executable(entry) {
                    count = count.saturating_add(1);
                    first.get_or_insert((gpa, size, entry));
                }
            }
            Ok(())
        })?;
        let bad = |what, at, value| Err(Violation::new(what, at, value).in_view(view));
        let Some((gpa, size, entry)) = first.filter(|_| count == 1) else {
            return bad("not exactly one executable EPT leaf", 0, count);
        };
        if gpa != code.gpa.0 || size != PAGE_SIZE {
            return bad("the executable leaf is not the gate code page", gpa, entry);
        }
        if entry & 7 != 4 {
            return bad("the gate code page is not execute-only", gpa, entry);
        }
        if (entry & LEAF_USER_EXEC != 0) != self.mbec {
            return bad("user-execute bit of the gate code page", gpa, entry);
        }
        if Some(Hpa(entry & ADDR_MASK)) != code.hpa {
            return bad("the gate code leaf points to another frame", gpa, entry);
        }
        // The APT is never executable (GPA 0 is guest memory, below the window).
        match ept_walk(self.frames, roots.eptp, 0) {
            Ok(leaf) if leaf.hpa != roots.apt_frame.0 => {
                return bad("GPA 0 does not reach the APT", 0, leaf.hpa)
            }
            Ok(leaf) if !leaf.perms.exec && !leaf.perms.user_exec => {}
            Ok(leaf) => return bad("the APT is executable", 0, leaf.hpa),
            Err(_) => return bad("GPA 0 does not reach the APT", 0, 0),
        }
        // In the guest table, too, exactly one leaf is executable: the code page.
        let mut count = 0u64;
        let mut exec_gva = 0;
        self.each_guest_leaf(roots, &mut |l| {
            if l.entry & (1 << 63) == 0 {
                count = count.saturating_add(1);
                exec_gva = canonical(l.gva, self.levels);
            }
            Ok(())
        })
        .map_err(|e| e.in_view(view))?;
        let code_gva = code.gva.map_or(0, |g| g.0);
        if count != 1 || exec_gva != code_gva {
            return bad(
                "not exactly one executable guest leaf at G + 0x1000",
                exec_gva,
                count,
            );
        }
        // Through the walker: fetchable, but not readable as data.
        match guest_walk(self.frames, roots.eptp, self.levels, 0, code_gva, self.ad) {
            Ok(t) if t.executable(self.mbec) && !t.ept.read && !t.ept.write => Ok(()),
            _ => bad(
                "the gate code page is not fetch-only through the trusted table",
                code_gva,
                0,
            ),
        }
    }
}
