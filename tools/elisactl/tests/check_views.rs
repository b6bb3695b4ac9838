// SPDX-License-Identifier: GPL-2.0
//! `elisactl check-views` on dumps written with elisa-core's writer (as the module writes
//! them): a clean dump of two gates passes all checks, a dump whose gate code page was made
//! writable by one byte fails, and a malformed or missing file fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use elisa_core::addr::{Gpa, Gva, Hpa, PageSize};
use elisa_core::dump::{self, Dump, DumpOut, HEADER_BYTES, MAPPING_BYTES};
use elisa_core::ept::{EptCaps, EptConfig};
use elisa_core::eptp::{Eptp, EptpList};
use elisa_core::frame::Frames;
use elisa_core::gate::PAGE_BYTES;
use elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
use elisa_core::paging::PagingMode;
use elisa_core::verify::walk::ept_slot;
use elisa_core::verify::{Expected, Mappings, ViewsHeader};
use elisa_core::view::{build_gate_view, build_sub_view, EntryFrames};
use elisa_core::Error;

/// Frames in a map, from a base far from any GPA.
#[derive(Default)]
struct MapFrames {
    frames: BTreeMap<u64, [u64; 512]>,
}

impl Frames for MapFrames {
    fn alloc_zeroed(&mut self) -> Result<Hpa, Error> {
        let hpa = 0x0a00_0000_0000 + self.frames.len() as u64 * 4096;
        self.frames.insert(hpa, [0; 512]);
        Ok(Hpa(hpa))
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error> {
        self.frames
            .get(&frame.0)
            .and_then(|f| f.get(index))
            .copied()
            .ok_or(Error::BadFrame)
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error> {
        *self
            .frames
            .get_mut(&frame.0)
            .and_then(|f| f.get_mut(index))
            .ok_or(Error::BadFrame)? = value;
        Ok(())
    }
}

struct Out<'a> {
    frames: &'a MapFrames,
    bytes: Vec<u8>,
}

impl DumpOut for Out<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), Error> {
        self.bytes.extend_from_slice(b);
        Ok(())
    }

    fn frame(&mut self, frame: Hpa) -> Result<(), Error> {
        let Out { frames, bytes } = self;
        dump::frame_bytes(*frames, frame, &mut |b| {
            bytes.extend_from_slice(b);
            Ok(())
        })
    }
}

/// One vCPU's views as the module builds them for a one-page service with one data page,
/// dumped.
fn views_dump(vcpu: u32) -> (Vec<u8>, u64) {
    let code_gva = Gva(0x6000_0000_0000);
    let regions = [
        RegionRequest::new(
            RegionKind::Code,
            RegionAccess::ExecuteOnly,
            0x1000,
            PageSize::Size4K,
        )
        .at(code_gva),
        RegionRequest::new(
            RegionKind::Shared,
            RegionAccess::ReadWrite,
            0x1000,
            PageSize::Size4K,
        )
        .at(Gva(0x6000_0010_0000)),
    ];
    let mut req = LayoutRequest::new(
        PagingMode::FourLevel,
        39,
        Gpa(1 << 30),
        Gva(0x5000_0000_0000),
    );
    req.regions = &regions;
    let layout = Layout::plan(&req).unwrap();
    let cfg = EptConfig::recommended(EptCaps::all(), false);
    let mut frames = MapFrames::default();
    let entry = EntryFrames {
        gate_code: frames.alloc_zeroed().unwrap(),
        gate_data: frames.alloc_zeroed().unwrap(),
        sub_code: frames.alloc_zeroed().unwrap(),
        eptp_list: frames.alloc_zeroed().unwrap(),
    };
    let backing = |region: usize, index: u64| {
        Ok(Hpa(0x0c00_0000_0000
            + ((region as u64) << 20)
            + index * 4096))
    };
    let sub = build_sub_view(&layout, &cfg, &mut frames, &entry, &backing).unwrap();
    let gate_view = build_gate_view(&layout, &cfg, &mut frames, &entry).unwrap();
    let params = layout.gate_params(sub.eptp(), code_gva).unwrap();
    let mut page = [0u8; PAGE_BYTES];
    entry
        .write_pages(&mut frames, layout.privilege(), &params, &mut page)
        .unwrap();
    let default = Eptp::from_raw(0x5e | 0x1234_5000).unwrap();
    EptpList::new(default, gate_view.eptp())
        .write_to(&mut frames, entry.eptp_list)
        .unwrap();
    let mut header = ViewsHeader::new(&layout, &cfg, &entry, &gate_view, &sub, code_gva, vcpu);
    header.list0 = default.raw();
    let expected = Expected {
        layout: &layout,
        cfg: &cfg,
        entry: &entry,
        regions: &backing,
    };
    let list: Vec<Hpa> = frames.frames.keys().map(|&k| Hpa(k)).collect();
    let mut out = Out {
        frames: &frames,
        bytes: Vec::new(),
    };
    dump::write(&header, &expected, &list, &mut out).unwrap();
    (out.bytes, layout.gate_code_gpa().0)
}

fn elisactl(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_elisactl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn file(name: &str, bytes: &[u8]) -> String {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn check_views_passes_clean_dumps_and_fails_corrupted_ones() {
    let (one, code_gpa) = views_dump(0);
    let (mut two, _) = views_dump(1);
    two.splice(0..0, one.iter().copied());
    let clean = file("clean-views", &two);
    let (rc, out) = elisactl(&["check-views", &clean]);
    print!("{out}");
    assert_eq!(rc, 0);
    assert_eq!(out.matches("  ok    ").count(), 22, "11 checks on 2 dumps");
    assert!(out.contains("check-views: 22 checks, 0 failed"));

    // One byte: the gate code page's EPT leaf gets R and W.
    let mut bad = one.clone();
    let (d, _) = Dump::parse(&one).unwrap();
    let slot = ept_slot(&d, d.header().gate.eptp, code_gpa).unwrap();
    let frame = (0..d.frame_count())
        .find(|&i| d.frame_hpa(i) == Some(slot.table))
        .unwrap();
    let at =
        HEADER_BYTES + d.count() * MAPPING_BYTES + frame * dump::FRAME_BYTES + 8 + slot.index * 8;
    assert_eq!(bad[at] & 7, 4);
    bad[at] |= 3;
    let corrupted = file("corrupted-views", &bad);
    let (rc, out) = elisactl(&["check-views", &corrupted]);
    print!("{out}");
    assert_eq!(rc, 1);
    assert!(out.contains("  FAIL  W^X in gate and sub views"));
    assert!(out.contains("  FAIL  gate view: one executable page, execute-only"));

    let truncated = file("truncated-views", &one[..one.len() - 100]);
    let (rc, out) = elisactl(&["check-views", &truncated]);
    assert_eq!(rc, 1);
    assert!(out.contains("malformed: truncated"), "{out}");
    let empty = file("empty-views", &[]);
    assert_eq!(elisactl(&["check-views", &empty]).0, 1);
    assert_eq!(elisactl(&["check-views", "/nonexistent/views"]).0, 1);
    assert_eq!(elisactl(&["check-views"]).0, 2);
}
