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
            if (raw & (1 << 6) != 0) != self.ad {
                return bad("EPTP A/D bit is not the policy's");
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
        let (gate, sub) = (h.gate.eptp, h.sub.eptp);
        let ours = |e: u64| e == gate || e == sub;
        // Another service's view: a valid EPTP that is none of ours.
        let other = |e: u64| !ours(e) && Eptp::from_raw(e).is_ok();
        let lowest = usize::from(h.lowest_gate_index.min(h.gate_index));
        for index in 0..ENTRIES_PER_TABLE {
            let e = self.read(list, index).ok_or(Violation::new(
                "EPTP list not in the frames",
                list,
                0,
            ))?;
            let ok = match index {
                // KVM's root (0 before the vCPU first ran).
                0 => !ours(e),
                // The sub view of the gate being crossed, during the hop only.
                EPTP_INDEX_SUB => e == 0 || e == sub || other(e),
                i if i == usize::from(h.gate_index) => e == gate || e == 0,
                i if i >= lowest => e == 0 || other(e),
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
