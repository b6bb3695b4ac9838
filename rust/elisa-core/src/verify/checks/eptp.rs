// SPDX-License-Identifier: GPL-2.0
//! The EPTP values and the EPTP-list page ([`Check::Eptps`], [`Check::EptpList`]).

use super::*;

impl<F: Frames + ?Sized> Ctx<'_, F> {
    pub(super) fn eptps(&self) -> Result<(), Violation> {
        for view in VIEWS {
            let raw = self.roots(view).eptp;
            let bad = |what| Err(Violation::new(what, raw, raw).in_view(view));
            if raw & 7 != 6 {
                return bad("EPTP memory type is not write-back");
            }
            if (raw >> 3) & 7 != 3 {
                return bad("EPTP walk length is not 4");
            }
            if self.ad {
                return bad("views with EPT A/D: trusted tables would be EPT-writable");
            }
            if raw & (1 << 6) != 0 {
                return bad("EPTP A/D bit set");
            }
            if raw & (0x1f << 7) != 0 || raw >> 52 != 0 {
                return bad("EPTP reserved bits set");
            }
            if raw & 1 != 0 {
                return bad("EPTP bit 0 set: it reads as a present guest entry (R12)");
            }
            if Eptp::from_raw(raw)
                .and_then(|e| e.check_elisa(self.ad))
                .is_err()
            {
                return bad("EPTP refused by elisa's EPTP policy");
            }
            if self.read(raw & ADDR_MASK, 0).is_none() {
                return bad("EPT root not in the frames");
            }
        }
        let (g, s) = (self.roots(ViewKind::Gate), self.roots(ViewKind::Sub));
        if g.eptp & ADDR_MASK == s.eptp & ADDR_MASK {
            return Err(Violation::new(
                "gate and sub views share an EPT root",
                g.eptp,
                s.eptp,
            ));
        }
        Ok(())
    }

    pub(super) fn eptp_list(&self) -> Result<(), Violation> {
        let h = self.v.header;
        let list = h.eptp_list.0;
        let lowest = usize::from(h.lowest_gate_index.min(h.gate_index));
        // During a hop, index 1 holds the sub view of the gate being crossed: one of the
        // vCPU's.
        let a_sub = |e: u64| h.vcpu_gates.iter().any(|g| g[1] != 0 && g[1] == e);
        for index in 0..ENTRIES_PER_TABLE {
            let e = self.read(list, index).ok_or(Violation::new(
                "EPTP list not in the frames",
                list,
                0,
            ))?;
            let ok = match index {
                // KVM's root of the vCPU's last entry (0 before the vCPU first ran).
                0 => e == h.list0,
                EPTP_INDEX_SUB => e == 0 || a_sub(e),
                // A gate's own EPTP while it is open, else 0.
                i if i >= lowest => e == 0 || h.vcpu_gate(i).is_some_and(|g| g[0] == e),
                _ => e == 0,
            };
            if !ok {
                return Err(Violation::new(
                    "EPTP list entry out of place",
                    index as u64,
                    e,
                ));
            }
        }
        Ok(())
    }
}
