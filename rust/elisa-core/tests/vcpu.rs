// SPDX-License-Identifier: GPL-2.0
//! One vCPU end to end: plan, views, the gate module's pages, the EPTP list; then what the
//! CPU would see through each view, with the software walkers.

mod common;

use common::*;
use elisa_core::addr::{Gpa, Gva, Hpa, PageSize};
use elisa_core::eptp::{Eptp, EptpList, EptpListState};
use elisa_core::frame::Frames;
use elisa_core::gate::{self, PAGE_BYTES};
use elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
use elisa_core::paging::PagingMode;
use elisa_core::view::{build_gate_view, build_sub_view, EntryFrames};

fn page_words(mem: &MemFrames, frame: u64) -> Vec<u8> {
    (0..512)
        .flat_map(|i| mem.peek(frame, i).to_le_bytes())
        .collect()
}

#[test]
fn one_vcpu_end_to_end() {
    for paging in [PagingMode::FourLevel, PagingMode::FiveLevel] {
        let regions = [
            RegionRequest::new(
                RegionKind::Code,
                RegionAccess::ExecuteOnly,
                0x2000,
                PageSize::Size4K,
            ),
            RegionRequest::new(
                RegionKind::Shared,
                RegionAccess::ReadWrite,
                1 << 21,
                PageSize::Size2M,
            ),
        ];
        let mut req = LayoutRequest::new(paging, 40, Gpa(3 << 30), Gva(0x7f12_3456_7000));
        req.regions = &regions;
        let layout = Layout::plan(&req).unwrap();
        let cfg = elisa_core::ept::EptConfig::recommended(elisa_core::ept::EptCaps::all(), true);
        let mut mem = MemFrames::new();
        let entry = EntryFrames {
            gate_code: mem.alloc_zeroed().unwrap(),
            gate_data: mem.alloc_zeroed().unwrap(),
            sub_code: mem.alloc_zeroed().unwrap(),
            eptp_list: mem.alloc_zeroed().unwrap(),
        };
        let backing = |region: usize, index: u64| {
            let size = layout.region(region).unwrap().placement.page_size;
            Ok(Hpa(region_hpa(region, index, size)))
        };
        let sub = build_sub_view(&layout, &cfg, &mut mem, &entry, &backing).unwrap();
        let gate = build_gate_view(&layout, &cfg, &mut mem, &entry).unwrap();
        let service = Gva(layout.region(0).unwrap().placement.gva.0 + 0x40);
        let params = layout.gate_params(sub.eptp(), service).unwrap();
        let mut page = [0u8; PAGE_BYTES];
        entry
            .write_pages(&mut mem, layout.privilege(), &params, &mut page)
            .unwrap();
        let default = Eptp::from_raw(0x5e | 0x0000_0042_0000_0000).unwrap();
        EptpList::new(default, gate.eptp())
            .write_to(&mut mem, entry.eptp_list)
            .unwrap();

        let levels = paging.levels();
        let (ge, se) = (gate.eptp().raw(), sub.eptp().raw());
        let cr3 = 0x1234_5000; // some guest RAM page
                               // Gate view: the code page at G + 0x1000 holds the gate bytes, fetch-only.
        let t = guest_walk(
            &mem,
            ge,
            levels,
            cr3,
            layout.code_gva().0,
            cfg.accessed_dirty,
        )
        .unwrap();
        assert_eq!(
            (t.hpa, t.executable(false), t.ept.read),
            (entry.gate_code.0, true, false)
        );
        let mut gate_code = [0u8; PAGE_BYTES];
        gate::write_gate_code(&mut gate_code, layout.privilege()).unwrap();
        assert_eq!(page_words(&mem, t.hpa), gate_code.to_vec());
        // The gate reads the sub EPTP from its data page (read-only) and writes list[1].
        let d = guest_walk(
            &mem,
            ge,
            levels,
            cr3,
            layout.gate_data_gva().0,
            cfg.accessed_dirty,
        )
        .unwrap();
        assert!(d.ept.read && !d.ept.write && d.nx);
        assert_eq!(
            mem.peek(d.hpa, gate::GATE_DATA_SUB_EPTP / 8),
            sub.eptp().raw()
        );
        let l = guest_walk(
            &mem,
            ge,
            levels,
            cr3,
            layout.eptp_list_gva().0 + gate::LIST_SUB_SLOT as u64,
            cfg.accessed_dirty,
        )
        .unwrap();
        assert!(l.writable && l.ept.write && l.hpa == entry.eptp_list.0 + 8);
        let s = guest_walk(
            &mem,
            ge,
            levels,
            cr3,
            layout.gate_stack().gva.0 + gate::GATE_FLAGS_SLOT as u64,
            cfg.accessed_dirty,
        )
        .unwrap();
        assert!(s.writable && s.ept.write && s.nx);
        // Sub view: the same GVA runs the sub page; the service entry is fetchable; the shared
        // region is writable data; the gate's pages are gone.
        let t = guest_walk(
            &mem,
            se,
            levels,
            cr3,
            layout.code_gva().0 + gate::SUB_ENTRY_OFFSET as u64,
            cfg.accessed_dirty,
        )
        .unwrap();
        assert_eq!(t.hpa, entry.sub_code.0 + gate::SUB_ENTRY_OFFSET as u64);
        let e = guest_walk(&mem, se, levels, cr3, service.0, cfg.accessed_dirty).unwrap();
        assert!(e.executable(false) && !e.ept.read);
        let shared = layout.region(1).unwrap().placement;
        let w = guest_walk(
            &mem,
            se,
            levels,
            cr3,
            shared.gva.0 + 0x1_2345,
            cfg.accessed_dirty,
        )
        .unwrap();
        assert_eq!(w.hpa, region_hpa(1, 0, PageSize::Size2M) + 0x1_2345);
        assert!(w.writable && w.ept.write && w.nx && !w.ept.exec);
        let top = guest_walk(
            &mem,
            se,
            levels,
            cr3,
            params.sub_stack_top.0 - 16,
            cfg.accessed_dirty,
        )
        .unwrap();
        assert!(top.writable && top.ept.write);
        assert!(guest_walk(
            &mem,
            se,
            levels,
            cr3,
            layout.gate_data_gva().0,
            cfg.accessed_dirty
        )
        .is_err());
        assert!(guest_walk(
            &mem,
            se,
            levels,
            cr3,
            layout.gate_stack().gva.0,
            cfg.accessed_dirty
        )
        .is_err());
        // The list is idle, and validates.
        assert_eq!(
            EptpList::read_from(&mem, entry.eptp_list).unwrap().state(),
            EptpListState::Idle
        );
    }
}
