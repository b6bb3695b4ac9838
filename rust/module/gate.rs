// SPDX-License-Identifier: GPL-2.0
//! `VcpuGate`: one vCPU's gate and sub views of one granted service, and the EPTP-list
//! layout they live in (gate slot `n` is list index 511 - `n`).
//!
//! A `VcpuGate` is built completely by [`build_vcpu`] in process context (`grant.rs`), then
//! published once into its `VcpuState` (`vcpu.rs`), which owns it and frees it with the
//! state, after an INVEPT on every CPU. It owns every page of both views
//! ([`KernelFrames`]) and holds the service they map. Each keeps what it was built from
//! (the plan, the EPT configuration, the entry frames, the service), so that
//! [`VcpuGate::dump`] can write the views with what they should map for debugfs
//! (`elisa_core::dump`, checked by `elisactl check-views`).

use crate::elisa_core::addr::{Gpa, Hpa, PageSize};
use crate::elisa_core::dump::{self, DumpOut};
use crate::elisa_core::ept::{Ept, EptConfig, EptLookup, EPT_HOLE};
use crate::elisa_core::eptp::Eptp;
use crate::elisa_core::frame::Frames;
use crate::elisa_core::gate::{self, Idtr, PAGE_BYTES};
use crate::elisa_core::layout::Layout;
use crate::elisa_core::paging::CallerPrivilege;
use crate::elisa_core::verify::{Expected, ViewsHeader};
use crate::elisa_core::view::{build_gate_view, build_sub_view, EntryFrames};
use crate::elisa_core::{error::ErrorClass, Error as CoreError};
use crate::frames::KernelFrames;
use crate::service::Service;
use crate::shim;
use kernel::{prelude::*, sync::Arc};

/// Number of entries of an EPTP list.
pub(crate) const EPTP_LIST_LEN: usize = 512;
/// `view` values: the EPTP-list index of the view (a gate view: its gate's index).
pub(crate) const VIEW_DEFAULT: u16 = 0;
pub(crate) const VIEW_SUB: u16 = 1;
/// Gates (granted services) per vCPU; gate slot `n` is EPTP-list index 511 - `n`.
pub(crate) const MAX_GATES: usize = crate::uapi::ELISA_MAX_GRANTS as usize;

// The ABI's gate indexes are elisa-core's EPTP-list layout.
const _: () = assert!(
    crate::uapi::ELISA_FIRST_GATE_INDEX == crate::elisa_core::gate::FIRST_GATE_INDEX
        && MAX_GATES == crate::elisa_core::eptp::EPTP_GATE_ENTRIES
);

/// The EPTP-list index of gate slot `slot`.
pub(crate) const fn gate_index(slot: usize) -> usize {
    crate::uapi::ELISA_FIRST_GATE_INDEX as usize - slot
}

/// Largest views dump of one vCPU (all its gates): headers, mappings and frames. One gate of
/// a service with 8 regions of 64 MiB in 4 KiB leaves needs about 9 MiB, of 8 regions of
/// 1 GiB (`ELISA_REGION_MAX_SIZE`) in 4 KiB leaves about 33 MiB, which fails with `EFBIG`
/// (in 2 MiB leaves a few hundred KiB).
pub(crate) const MAX_VIEWS_DUMP: usize = 32 << 20;

/// One vCPU's gate and sub views. Owned by its `VcpuState`.
pub(crate) struct VcpuGate {
    /// Every page of both views (tables, stacks, code, gate data).
    frames: KernelFrames,
    pub(crate) gate_eptp: u64,
    pub(crate) sub_eptp: u64,
    /// G.
    pub(crate) entry_gva: u64,
    /// The service whose code and regions the sub view maps: held while mapped.
    service: Arc<Service>,
    /// Where the sub entry saves the caller's `RSP` (sub stack top - 16): frame and entry.
    saved_rsp: (Hpa, usize),
    /// Where a supervisor grant's sub entry saves the guest's IDT register (sub stack top
    /// - 32, two entries): frame and first entry.
    saved_idtr: (Hpa, usize),
    /// The gate stack's frame (`VcpuGate::scrub_stack`).
    gate_stack: Hpa,
    /// What the views were built from, for [`VcpuGate::dump`].
    header: ViewsHeader,
    layout: Layout,
    cfg: EptConfig,
    entry: EntryFrames,
}

/// The frame of page `index` of region `region` of the plan `layout`, in units of the
/// region's page size there: region 0 is the service code, regions 1.. are the service's
/// regions (mapped in 2 MiB leaves where the grant found them so backed:
/// `region_page_size`).
fn region_frame(
    svc: &Service,
    layout: &Layout,
    region: usize,
    index: u64,
) -> core::result::Result<Hpa, CoreError> {
    let size = layout
        .region(region)
        .ok_or(CoreError::BadRegionFrame)?
        .placement
        .page_size;
    let hpa = match region {
        0 if size == PageSize::Size4K => svc.code_hpa(index),
        0 => None,
        r => svc
            .regions
            .get(r - 1)
            .and_then(|s| s.region.frame_hpa(index, size)),
    };
    hpa.ok_or(CoreError::BadRegionFrame)
}

/// Where [`VcpuGate::dump`] writes: a growing buffer; frames come from the views' pages,
/// the list page from its entries.
struct DumpBuf<'a> {
    out: &'a mut KVVec<u8>,
    frames: &'a KernelFrames,
    list_pa: u64,
    list: &'a dyn Fn(usize) -> u64,
}

impl DumpOut for DumpBuf<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> core::result::Result<(), CoreError> {
        self.out
            .extend_from_slice(bytes, GFP_KERNEL_ACCOUNT)
            .map_err(|_| CoreError::OutOfFrames)
    }

    fn frame(&mut self, frame: Hpa) -> core::result::Result<(), CoreError> {
        if frame.0 == self.list_pa {
            for i in 0..EPTP_LIST_LEN {
                self.bytes(&(self.list)(i).to_le_bytes())?;
            }
            return Ok(());
        }
        self.frames.append_page(frame, self.out)
    }
}

impl VcpuGate {
    /// The service's entry starts with `ENDBR64`.
    pub(crate) fn service_endbr(&self) -> bool {
        self.service.endbr
    }

    /// The privilege of the callers the views are built for (`ELISA_GRANT_USER`).
    pub(crate) fn privilege(&self) -> CallerPrivilege {
        self.layout.privilege()
    }

    /// Appends the dump of this gate's views (`elisa_core::dump`) to `out`: the header,
    /// what the views should map, and every frame they hold, the EPTP list (whose entries
    /// `list` reads) included. Process context. Fails with `EFBIG` when `out` would grow
    /// beyond [`MAX_VIEWS_DUMP`].
    pub(crate) fn dump(
        &self,
        list: &dyn Fn(usize) -> u64,
        list0: u64,
        vcpu_gates: &[[u64; 2]; MAX_GATES],
        out: &mut KVVec<u8>,
    ) -> Result {
        let regions = |r: usize, i: u64| region_frame(&self.service, &self.layout, r, i);
        let expected = Expected {
            layout: &self.layout,
            cfg: &self.cfg,
            entry: &self.entry,
            regions: &regions,
        };
        // `dump::write` wants the frames by ascending HPA: `for_each_hpa` gives them so (an
        // `RBTree` iterates in key order), and the EPTP list joins them at its place. No
        // `sort_unstable`: built by rustc 1.85 it ends in a call that objtool (7.3) does not
        // know as noreturn, and warns.
        let list_pa = self.entry.eptp_list;
        let mut hpas = KVec::with_capacity(self.frames.len() + 1, GFP_KERNEL_ACCOUNT)?;
        let mut list_pending = true;
        self.frames.for_each_hpa(|h| {
            if list_pending && list_pa < h {
                list_pending = false;
                hpas.push(list_pa, GFP_KERNEL_ACCOUNT)?;
            }
            hpas.push(h, GFP_KERNEL_ACCOUNT)
        })?;
        if list_pending {
            hpas.push(list_pa, GFP_KERNEL_ACCOUNT)?;
        }
        let fail = |what: &str, e: CoreError| {
            pr_info!("views dump: {}: {:?}\n", what, e);
            core_errno(e)
        };
        let nr = dump::count_mappings(&expected).map_err(|e| fail("mappings", e))?;
        let len = dump::encoded_len(nr, hpas.len())
            .and_then(|l| l.checked_add(out.len()))
            .filter(|&l| l <= MAX_VIEWS_DUMP)
            .ok_or_else(|| {
                pr_info!(
                    "views dump: more than {} bytes ({} mappings, {} frames)\n",
                    MAX_VIEWS_DUMP,
                    nr,
                    hpas.len()
                );
                EFBIG
            })?;
        out.reserve(len - out.len(), GFP_KERNEL_ACCOUNT)?;
        let mut buf = DumpBuf {
            out,
            frames: &self.frames,
            list_pa: self.entry.eptp_list.0,
            list,
        };
        // What the vCPU's list may hold besides this gate's entries, for the list check.
        let mut header = self.header;
        header.list0 = list0;
        header.vcpu_gates = *vcpu_gates;
        dump::write(&header, &expected, &hpas, &mut buf).map_err(|e| fail("write", e))?;
        Ok(())
    }

    /// The caller's `RSP` as the sub entry saved it.
    pub(crate) fn saved_rsp(&self) -> Option<u64> {
        self.frames
            .read_entry(self.saved_rsp.0, self.saved_rsp.1)
            .ok()
    }

    /// The guest's IDT register as a supervisor grant's sub entry saved it (zero when the
    /// slot cannot be read, which cannot happen: its frame is held).
    pub(crate) fn saved_idtr(&self) -> Idtr {
        let (frame, i) = self.saved_idtr;
        let word = |i: usize| self.frames.read_entry(frame, i).unwrap_or(0);
        Idtr::from_words(word(i), word(i.wrapping_add(1)))
    }

    /// Zeroes the gate stack, as it was built: a broken or failed-back excursion may have
    /// left RFLAGS images of the guest's choosing at any byte of it (a landing on the
    /// gate's `PUSHFQ`; `gate-protocol.rst`). Atomic context.
    pub(crate) fn scrub_stack(&self) {
        let _ = self.frames.clear_entries(self.gate_stack);
    }

    /// Frames held, for debugfs.
    pub(crate) fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// The two views' root tables.
    fn roots(&self) -> [Option<Hpa>; 2] {
        [self.gate_eptp, self.sub_eptp].map(|e| Eptp::from_raw(e).ok().map(Eptp::root))
    }

    /// For `VcpuState::disarm`: empties both views' root tables (each entry written whole,
    /// so a CPU walking them sees an entry or 0) and adds both views to `batch`, whose
    /// flush drops every CPU's cached translations: then a vCPU left in a view faults and
    /// reaches no page. Process context.
    pub(crate) fn empty_roots(&self, batch: &mut InveptBatch) {
        // Holes as the builder writes them (suppress-#VE set): a KVM that turns EPT-violation
        // #VE on (CONFIG_KVM_INTEL_PROVE_VE) would otherwise see a #VE exit, which it reports
        // as its own bug, where a vCPU left in a view walks the emptied root.
        for root in self.roots().iter().flatten() {
            let _ = self.frames.fill_entries(*root, EPT_HOLE);
        }
        batch.add(self);
    }

    /// For `VcpuState::quarantine`, after `empty_roots`: quarantines the two root pages (a
    /// VMCS may still name one). The views' other pages are freed with `self`. Returns the
    /// pages quarantined.
    pub(crate) fn quarantine_roots(&mut self) -> usize {
        let roots = self.roots();
        let mut n = 0;
        for root in roots.iter().flatten() {
            if let Some(page) = self.frames.take(*root) {
                page.quarantine();
                n += 1;
            }
        }
        n
    }
}

/// INVEPT broadcasts (`on_each_cpu`, each of which makes every running guest on the host
/// exit) since the module loaded: debugfs `elisa/vms`, so that a test can count what a
/// detach or a grant sends.
pub(crate) static INVEPT_BROADCASTS: core::sync::atomic::AtomicU64 =
    core::sync::atomic::AtomicU64::new(0);

/// EPTPs whose cached translations every CPU drops, collected so that one IPI per CPU
/// serves many views: an IPI makes a CPU that runs a guest (another VM's too) exit, so a
/// grant or detach of many vCPUs sends `2 * vCPUs * gates / 64` of them, not one per
/// view (a detach: one batch across the record's vCPUs, `VmRecord`'s drop). Dropping the
/// batch flushes what it still holds. Process context.
pub(crate) struct InveptBatch {
    eptps: [u64; 64],
    n: usize,
}

impl InveptBatch {
    pub(crate) fn new() -> Self {
        InveptBatch {
            eptps: [0; 64],
            n: 0,
        }
    }

    /// Adds both views of `g`; flushes whenever the batch is full.
    pub(crate) fn add(&mut self, g: &VcpuGate) {
        for eptp in [g.gate_eptp, g.sub_eptp] {
            if let Some(slot) = self.eptps.get_mut(self.n) {
                *slot = eptp;
                self.n += 1;
            }
            if self.n == self.eptps.len() {
                self.flush();
            }
        }
    }

    /// INVEPT of every EPTP added since the last flush, on every CPU in VMX operation, by
    /// a synchronous IPI to every CPU (none if nothing was added). Returns the number of
    /// EPTPs flushed.
    pub(crate) fn flush(&mut self) -> usize {
        let eptps = self.eptps.get(..self.n).unwrap_or(&[]);
        if !eptps.is_empty() {
            INVEPT_BROADCASTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: process context; `eptps` is valid for its length (at most 64) during the
        // call; INVEPT only drops cached translations.
        unsafe { shim::elisa_shim_invept_all(eptps.as_ptr(), eptps.len() as u32) };
        let n = eptps.len();
        self.n = 0;
        n
    }
}

impl Drop for InveptBatch {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The errno of an elisa-core error: the one mapping, by its class.
pub(crate) fn core_errno(e: CoreError) -> Error {
    match e.class() {
        ErrorClass::OutOfMemory => ENOMEM,
        ErrorClass::Unsupported => Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32)),
        ErrorClass::BadRequest => EINVAL,
        ErrorClass::Internal => EIO,
        ErrorClass::Interrupted => EINTR,
    }
}

/// Builds one vCPU's views and pages.
pub(crate) fn build_vcpu(
    layout: &Layout,
    cfg: &EptConfig,
    svc: &Arc<Service>,
    list_pa: u64,
    g: u64,
    (idx, slot): (u32, usize),
) -> core::result::Result<KBox<VcpuGate>, (&'static str, CoreError)> {
    let mut frames = KernelFrames::new();
    let alloc = |f: &mut KernelFrames| f.alloc_zeroed().map_err(|e| ("frames", e));
    let entry = EntryFrames {
        gate_code: alloc(&mut frames)?,
        gate_data: alloc(&mut frames)?,
        sub_code: alloc(&mut frames)?,
        eptp_list: Hpa(list_pa),
    };
    let backing = |region: usize, index: u64| region_frame(svc, layout, region, index);
    let sub =
        build_sub_view(layout, cfg, &mut frames, &entry, &backing).map_err(|e| ("sub view", e))?;
    let gate_view =
        build_gate_view(layout, cfg, &mut frames, &entry).map_err(|e| ("gate view", e))?;
    let params = layout
        .gate_params(sub.eptp(), svc.entry)
        .map_err(|e| ("gate parameters", e))?;
    let mut buf = KVec::from_elem(0u8, PAGE_BYTES, GFP_KERNEL_ACCOUNT)
        .map_err(|_| ("buffer", CoreError::OutOfFrames))?;
    let page: &mut [u8; PAGE_BYTES] = buf
        .as_mut_slice()
        .try_into()
        .map_err(|_| ("buffer", CoreError::BadFrame))?;
    entry
        .write_pages(&mut frames, layout.privilege(), &params, page)
        .map_err(|e| ("gate and sub pages", e))?;
    // The slots of the caller's RSP and of the guest's IDT register, for failing a call
    // back (vcpu.rs).
    let stack = layout.sub_stack();
    let slot_gpa = |below: u64| {
        let gva = layout.sub_stack_top().0.wrapping_sub(below);
        Gpa(stack.gpa.0.wrapping_add(gva.wrapping_sub(stack.gva.0)))
    };
    // The frame a view maps at a GPA.
    let frame_at = |ept: &Ept, gpa: Gpa, what| match ept.lookup(&frames, gpa) {
        Ok(EptLookup::Mapped { hpa, .. }) => Ok(Hpa(hpa.0 & !0xfff)),
        _ => Err((what, CoreError::BadFrame)),
    };
    let stack_slot = |below: u64| {
        let gpa = slot_gpa(below);
        Ok::<_, (&'static str, CoreError)>((
            frame_at(sub.ept(), gpa, "sub stack")?,
            ((gpa.0 & 0xfff) / 8) as usize,
        ))
    };
    let saved_rsp = stack_slot(gate::SUB_RSP_SLOT)?;
    // 16 bytes from a 16-byte aligned address: one frame.
    let saved_idtr = stack_slot(gate::SUB_IDTR_SLOT)?;
    let gate_stack = frame_at(gate_view.ept(), layout.gate_stack().gpa, "gate stack")?;
    let mut header = ViewsHeader::new(layout, cfg, &entry, &gate_view, &sub, svc.entry, idx);
    header.gate_index = gate_index(slot) as u16;
    header.lowest_gate_index = gate_index(MAX_GATES - 1) as u16;
    let vg = VcpuGate {
        frames,
        gate_eptp: gate_view.eptp().raw(),
        sub_eptp: sub.eptp().raw(),
        entry_gva: g,
        service: svc.clone(),
        saved_rsp,
        saved_idtr,
        gate_stack,
        header,
        layout: layout.clone(),
        cfg: *cfg,
        entry,
    };
    KBox::new(vg, GFP_KERNEL_ACCOUNT).map_err(|_| ("gate", CoreError::OutOfFrames))
}
