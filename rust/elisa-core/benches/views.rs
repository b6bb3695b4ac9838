// SPDX-License-Identifier: GPL-2.0
//! Cost of building one vCPU's gate and sub views, with one service code page and one data
//! region of 4 KiB, 2 MiB or 1 GiB (huge leaves where the size allows, and 4 KiB leaves for
//! comparison), and the number of frames each view costs.
//!
//! Frames come from an in-memory store that hands out zeroed frames from a reused arena, as
//! the module's page allocator would.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use elisa_core::addr::{Gpa, Gva, Hpa, PageSize};
use elisa_core::ept::{EptCaps, EptConfig};
use elisa_core::frame::Frames;
use elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
use elisa_core::paging::PagingMode;
use elisa_core::view::{build_gate_view, build_sub_view, EntryFrames, FrameCounts};
use elisa_core::Error;

const BASE: u64 = 0x0000_0a00_0000_0000;

/// Frames in a `Vec`, reused between iterations.
struct ArenaFrames {
    frames: Vec<[u64; 512]>,
    used: usize,
}

impl ArenaFrames {
    fn new() -> Self {
        Self {
            frames: Vec::new(),
            used: 0,
        }
    }

    fn reset(&mut self) {
        self.used = 0;
    }

    fn slot(&self, frame: Hpa) -> Result<usize, Error> {
        let i = (frame.0.wrapping_sub(BASE) / 4096) as usize;
        if frame.0 < BASE || i >= self.used {
            return Err(Error::BadFrame);
        }
        Ok(i)
    }
}

impl Frames for ArenaFrames {
    fn alloc_zeroed(&mut self) -> Result<Hpa, Error> {
        if self.used == self.frames.len() {
            self.frames.push([0; 512]);
        } else {
            self.frames[self.used] = [0; 512];
        }
        self.used += 1;
        Ok(Hpa(BASE + (self.used as u64 - 1) * 4096))
    }

    fn read_entry(&self, frame: Hpa, index: usize) -> Result<u64, Error> {
        let i = self.slot(frame)?;
        self.frames[i].get(index).copied().ok_or(Error::BadFrame)
    }

    fn write_entry(&mut self, frame: Hpa, index: usize, value: u64) -> Result<(), Error> {
        let i = self.slot(frame)?;
        *self.frames[i].get_mut(index).ok_or(Error::BadFrame)? = value;
        Ok(())
    }
}

struct Case {
    name: &'static str,
    size: u64,
    leaf: PageSize,
}

const CASES: [Case; 6] = [
    Case {
        name: "4KiB region",
        size: 4 << 10,
        leaf: PageSize::Size4K,
    },
    Case {
        name: "2MiB region, 2M leaf",
        size: 2 << 20,
        leaf: PageSize::Size2M,
    },
    Case {
        name: "1GiB region, 1G leaf",
        size: 1 << 30,
        leaf: PageSize::Size1G,
    },
    Case {
        name: "2MiB region, 4K leaves",
        size: 2 << 20,
        leaf: PageSize::Size4K,
    },
    Case {
        name: "1GiB region, 2M leaves",
        size: 1 << 30,
        leaf: PageSize::Size2M,
    },
    Case {
        name: "1GiB region, 4K leaves",
        size: 1 << 30,
        leaf: PageSize::Size4K,
    },
];

fn layout(case: &Case, paging: PagingMode) -> Layout {
    let regions = [
        RegionRequest::new(
            RegionKind::Code,
            RegionAccess::ExecuteOnly,
            4096,
            PageSize::Size4K,
        ),
        RegionRequest::new(
            RegionKind::Shared,
            RegionAccess::ReadWrite,
            case.size,
            case.leaf,
        ),
    ];
    let mut req = LayoutRequest::new(paging, 46, Gpa(8 << 30), Gva(0x7f00_0000_0000));
    req.regions = &regions;
    Layout::plan(&req).expect("plan")
}

/// Builds both views once; returns (sub, gate) frame counts.
fn build(l: &Layout, cfg: &EptConfig, frames: &mut ArenaFrames) -> (FrameCounts, FrameCounts) {
    frames.reset();
    let entry = EntryFrames {
        gate_code: frames.alloc_zeroed().unwrap(),
        gate_data: frames.alloc_zeroed().unwrap(),
        sub_code: frames.alloc_zeroed().unwrap(),
        eptp_list: frames.alloc_zeroed().unwrap(),
    };
    let backing = |region: usize, index: u64| {
        let size = l
            .region(region)
            .ok_or(Error::BadRegionFrame)?
            .placement
            .page_size
            .bytes();
        Ok(Hpa(0x0000_0c00_0000_0000
            + ((region as u64) << 36)
            + index * size))
    };
    let sub = build_sub_view(l, cfg, &mut *frames, &entry, &backing).expect("sub view");
    let gate = build_gate_view(l, cfg, &mut *frames, &entry).expect("gate view");
    (sub.frame_counts(), gate.frame_counts())
}

fn views(c: &mut Criterion) {
    let cfg = EptConfig::recommended(EptCaps::all(), true);
    let mut frames = ArenaFrames::new();
    let mut group = c.benchmark_group("build gate+sub views (one vCPU)");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(20);
    for (paging, mode) in [
        (PagingMode::FourLevel, "4-level"),
        (PagingMode::FiveLevel, "5-level"),
    ] {
        for case in &CASES {
            let l = layout(case, paging);
            let (sub, gate) = build(&l, &cfg, &mut frames);
            println!(
                "frames {mode}, {}: sub view {} (EPT {}, APT chain {}, guest tables {}, stack {}), gate view {} (EPT {}, APT chain {}, guest tables {}, stack {})",
                case.name,
                sub.total(), sub.ept_tables, sub.apt_tables, sub.guest_tables, sub.stack_pages,
                gate.total(), gate.ept_tables, gate.apt_tables, gate.guest_tables, gate.stack_pages,
            );
            group.bench_with_input(BenchmarkId::new(mode, case.name), &l, |b, l| {
                b.iter(|| black_box(build(l, &cfg, &mut frames)))
            });
        }
    }
    group.finish();

    let mut plan = c.benchmark_group("plan");
    plan.warm_up_time(Duration::from_millis(300));
    plan.measurement_time(Duration::from_secs(1));
    plan.bench_function("Layout::plan, 2 regions", |b| {
        b.iter(|| black_box(layout(&CASES[1], PagingMode::FourLevel)))
    });
    plan.finish();
}

criterion_group!(benches, views);
criterion_main!(benches);
