// SPDX-License-Identifier: GPL-2.0
//! Grants: a service connected to an attached VM, and each vCPU's gate and sub views.
//!
//! `ELISA_GRANT` on an elisa-vm fd gives the service a gate slot of the VM (slot `n` is
//! EPTP-list index 511 - `n`; at most `ELISA_MAX_GRANTS` services per VM), plans the
//! layout once (elisa-core's `Layout::plan`) and builds, for **every vCPU that exists at
//! that moment**, the views with elisa-core's builders on real pages ([`KernelFrames`]):
//! the sub view (sub code, sub stack, the service code execute-only, the regions, the
//! EPTP list, the APT), then the gate view (gate code execute-only, gate data, gate stack,
//! the EPTP list, the APT), then the code and data pages from `elisa_core::gate`. Only
//! then is each vCPU's [`VcpuGate`] published and its list entry set. Everything is
//! allocated here, in process context; the probes only read what was published.
//!
//! Each (vCPU, service) pair has views of its own: a service's sub view maps its own code
//! and regions and nothing of another service's. The sub-view slot `list[1]` is shared:
//! the gate being crossed writes its own sub EPTP there, and the sub entry clears it.
//!
//! vCPUs created after a grant have no gate for it (their list entry stays 0, so their
//! VMFUNC to that index is #UD) until the VMM grants the same service again, with the same
//! G: that builds the missing vCPUs' views and returns the same gate index. A grant lasts
//! as long as the attachment.
//!
//! The guest must run IA-32e mode with 4-level paging (R11): the views' page tables are
//! 4-level IA-32e tables, and the entry probe closes the gates (their list entries are 0)
//! while the guest's EFER.LMA is clear or its CR4.LA57 is set.
//!
//! INVEPT: a view's EPT is built before its root is ever loaded, so nothing can be cached
//! for it then. Views never change after publication. When they are freed (detach, after
//! quiesce), every CPU drops what it cached for their EPTPs first (`VcpuGate::invalidate`).
//!
//! Each `VcpuGate` keeps what it was built from (the plan, the EPT configuration, the entry
//! frames, the service), so that [`VcpuGate::dump`] can write the views with what they
//! should map for debugfs (`elisa_core::dump`, checked by `elisactl check-views`).

use crate::elisa_core::addr::{Gpa, Gva, Hpa, PageSize};
use crate::elisa_core::dump::{self, DumpOut};
use crate::elisa_core::ept::{EptCaps, EptConfig, EptLookup};
use crate::elisa_core::frame::Frames;
use crate::elisa_core::gate::{self, PAGE_BYTES};
use crate::elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
use crate::elisa_core::paging::{CallerPrivilege, PagingMode};
use crate::elisa_core::verify::{Expected, ViewsHeader};
use crate::elisa_core::view::{build_gate_view, build_sub_view, EntryFrames};
use crate::elisa_core::{error::ErrorClass, Error as CoreError};
use crate::frames::KernelFrames;
use crate::registry::{self, VmRecord};
use crate::service::{self, Service};
use crate::vcpu::{gate_index, MAX_GATES};
use crate::{caps, shim, uapi};
use core::sync::atomic::Ordering::Relaxed;
use kernel::{prelude::*, sync::Arc};

/// Largest views dump of one vCPU (all its gates): headers, mappings and frames. One gate of
/// the largest service (64 KiB of code, 8 regions of 64 MiB in 4 KiB pages) needs about
/// 9 MiB; a larger dump fails with `EFBIG`.
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
    /// What the views were built from, for [`VcpuGate::dump`].
    header: ViewsHeader,
    layout: Layout,
    cfg: EptConfig,
    entry: EntryFrames,
}

/// The frame of page `index` of region `region` of the plan: region 0 is the service code,
/// regions 1.. are the service's regions.
fn region_frame(svc: &Service, region: usize, index: u64) -> core::result::Result<Hpa, CoreError> {
    let hpa = match region {
        0 => svc.code_hpa(index),
        r => svc
            .regions
            .get(r - 1)
            .and_then(|s| s.region.page_hpa(index)),
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
            .extend_from_slice(bytes, GFP_KERNEL)
            .map_err(|_| CoreError::OutOfFrames)
    }

    fn frame(&mut self, frame: Hpa) -> core::result::Result<(), CoreError> {
        if frame.0 == self.list_pa {
            for i in 0..crate::vcpu::EPTP_LIST_LEN {
                self.bytes(&(self.list)(i).to_le_bytes())?;
            }
            return Ok(());
        }
        self.frames.append_page(frame, self.out)
    }
}

impl VcpuGate {
    /// Appends the dump of this gate's views (`elisa_core::dump`) to `out`: the header,
    /// what the views should map, and every frame they hold, the EPTP list (whose entries
    /// `list` reads) included. Process context. Fails with `EFBIG` when `out` would grow
    /// beyond [`MAX_VIEWS_DUMP`].
    pub(crate) fn dump(&self, list: &dyn Fn(usize) -> u64, out: &mut KVVec<u8>) -> Result {
        let regions = |r: usize, i: u64| region_frame(&self.service, r, i);
        let expected = Expected {
            layout: &self.layout,
            cfg: &self.cfg,
            entry: &self.entry,
            regions: &regions,
        };
        let mut hpas = KVec::with_capacity(self.frames.len() + 1, GFP_KERNEL)?;
        self.frames.for_each_hpa(|h| hpas.push(h, GFP_KERNEL))?;
        hpas.push(self.entry.eptp_list, GFP_KERNEL)?;
        hpas.sort_unstable();
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
        out.reserve(len - out.len(), GFP_KERNEL)?;
        let mut buf = DumpBuf {
            out,
            frames: &self.frames,
            list_pa: self.entry.eptp_list.0,
            list,
        };
        dump::write(&self.header, &expected, &hpas, &mut buf).map_err(|e| fail("write", e))?;
        Ok(())
    }

    /// The caller's `RSP` as the sub entry saved it.
    pub(crate) fn saved_rsp(&self) -> Option<u64> {
        self.frames
            .read_entry(self.saved_rsp.0, self.saved_rsp.1)
            .ok()
    }

    /// Frames held, for debugfs.
    pub(crate) fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Drops every CPU's cached translations of both views. Process context.
    pub(crate) fn invalidate(&self) {
        for eptp in [self.gate_eptp, self.sub_eptp] {
            // SAFETY: process context; INVEPT only drops cached translations.
            unsafe { shim::elisa_shim_invept_all(eptp) };
        }
    }
}

fn core_err(what: &str, e: CoreError) -> Error {
    pr_info!("ELISA_GRANT: {}: {:?}\n", what, e);
    core_errno(e)
}

/// The errno of an elisa-core error: the one mapping, by its class.
fn core_errno(e: CoreError) -> Error {
    match e.class() {
        ErrorClass::OutOfMemory => ENOMEM,
        ErrorClass::Unsupported => Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32)),
        ErrorClass::BadRequest => EINVAL,
        ErrorClass::Internal => EIO,
    }
}

/// Builds one vCPU's views and pages.
fn build_vcpu(
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
    let backing = |region: usize, index: u64| region_frame(svc, region, index);
    let sub =
        build_sub_view(layout, cfg, &mut frames, &entry, &backing).map_err(|e| ("sub view", e))?;
    let gate_view =
        build_gate_view(layout, cfg, &mut frames, &entry).map_err(|e| ("gate view", e))?;
    let params = layout
        .gate_params(sub.eptp(), svc.entry)
        .map_err(|e| ("gate parameters", e))?;
    let mut buf = KVec::from_elem(0u8, PAGE_BYTES, GFP_KERNEL)
        .map_err(|_| ("buffer", CoreError::OutOfFrames))?;
    let page: &mut [u8; PAGE_BYTES] = buf
        .as_mut_slice()
        .try_into()
        .map_err(|_| ("buffer", CoreError::BadFrame))?;
    gate::write_gate_code(page).map_err(|e| ("gate code", e))?;
    frames
        .store_bytes(entry.gate_code, page)
        .map_err(|e| ("gate code", e))?;
    gate::write_gate_data(page, &params).map_err(|e| ("gate data", e))?;
    frames
        .store_bytes(entry.gate_data, page)
        .map_err(|e| ("gate data", e))?;
    gate::write_sub_code(page, &params).map_err(|e| ("sub code", e))?;
    frames
        .store_bytes(entry.sub_code, page)
        .map_err(|e| ("sub code", e))?;
    // The slot of the caller's RSP, for failing a call back (vcpu.rs).
    let stack = layout.sub_stack();
    let slot_gva = layout.sub_stack_top().0.wrapping_sub(16);
    let slot_gpa = Gpa(stack.gpa.0.wrapping_add(slot_gva.wrapping_sub(stack.gva.0)));
    let saved_rsp = match sub.ept().lookup(&frames, slot_gpa) {
        Ok(EptLookup::Mapped { hpa, .. }) => {
            let page = Hpa(hpa.0 & !0xfff);
            (page, ((slot_gpa.0 & 0xfff) / 8) as usize)
        }
        _ => return Err(("sub stack", CoreError::BadFrame)),
    };
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
        header,
        layout: layout.clone(),
        cfg: *cfg,
        entry,
    };
    KBox::new(vg, GFP_KERNEL).map_err(|_| ("gate", CoreError::OutOfFrames))
}

/// The gate slot for `svc` in `rec`: the slot it has (a grant again: `again` is true),
/// or the first free one. Under the VM's `grant_lock`.
fn pick_slot(rec: &VmRecord, svc: &Arc<Service>, g: u64, flags: u32) -> Result<(usize, bool)> {
    let me = Arc::as_ptr(svc).cast_mut();
    if let Some(slot) = rec
        .grants
        .iter()
        .position(|s| s.service.load(Relaxed) == me)
    {
        let (had, had_flags) = (
            rec.grants[slot].entry_gva.load(Relaxed),
            rec.grants[slot].flags.load(Relaxed),
        );
        if had != g || had_flags != flags {
            pr_info!(
                "ELISA_GRANT: vm {}: this service is granted at G {:#x} with flags {:#x} already, not at {:#x} with {:#x}\n",
                rec.id,
                had,
                had_flags,
                g,
                flags
            );
            return Err(EINVAL);
        }
        return Ok((slot, true));
    }
    match rec
        .grants
        .iter()
        .position(|s| s.service.load(Relaxed).is_null())
    {
        Some(slot) => Ok((slot, false)),
        None => {
            pr_info!(
                "ELISA_GRANT: vm {} has {} services granted, the most one VM can have\n",
                rec.id,
                MAX_GATES
            );
            Err(ENOSPC)
        }
    }
}

/// `ELISA_GRANT` on the elisa-vm file of `rec`.
pub(crate) fn grant(rec: &VmRecord, req: &mut uapi::ElisaGrant) -> Result {
    if req.flags & !uapi::ELISA_GRANT_USER != 0 || req.reserved.iter().any(|&r| r != 0) {
        pr_info!("ELISA_GRANT: unknown flags, or reserved fields not 0\n");
        return Err(EINVAL);
    }
    let privilege = if req.flags & uapi::ELISA_GRANT_USER != 0 {
        CallerPrivilege::User
    } else {
        CallerPrivilege::Supervisor
    };
    let svc: Arc<Service> = service::service_from_fd(req.service_fd)?;
    // One grant at a time for this VM; other VMs' attach, grant and detach go on meanwhile
    // (lock order: registry.rs). The attachment cannot end during this ioctl, which holds
    // its file.
    let guard = rec.grant_lock.lock();
    if !rec.attached() {
        return Err(ENODEV);
    }
    let (slot, again) = pick_slot(rec, &svc, req.entry_gva, req.flags)?;
    // The plan: the service code first, then its regions, each at its requested GVA.
    let mut regions = KVec::with_capacity(svc.regions.len() + 1, GFP_KERNEL)?;
    regions.push(
        RegionRequest::new(
            RegionKind::Code,
            RegionAccess::ExecuteOnly,
            svc.code.len() as u64 * 4096,
            PageSize::Size4K,
        )
        .at(svc.code_gva),
        GFP_KERNEL,
    )?;
    for r in svc.regions.iter() {
        regions.push(
            RegionRequest::new(
                RegionKind::Shared,
                r.access,
                r.region.size(),
                PageSize::Size4K,
            )
            .at(r.gva),
            GFP_KERNEL,
        )?;
    }
    // SAFETY: process context; the attachment's VM reference keeps `kvm` alive.
    let gpa_end = unsafe { shim::elisa_shim_gpa_end(rec.kvm) };
    // SAFETY: reads a constant of the boot CPU.
    let phys_bits = unsafe { shim::elisa_shim_phys_bits() }.min(48);
    let mut lreq = LayoutRequest::new(
        PagingMode::FourLevel,
        phys_bits,
        Gpa(gpa_end),
        Gva(req.entry_gva),
    );
    lreq.regions = &regions;
    lreq.privilege = privilege;
    let layout = Layout::plan(&lreq)
        .map_err(|e| core_err("cannot place the views (G, GVAs, guest memory)", e))?;
    let host = caps::HostCaps::read();
    let cfg = EptConfig::recommended(EptCaps::from_msr(host.msrs.ept_vpid_cap), false);

    // Build the views of every vCPU that lacks this gate first; publish only when all
    // succeeded.
    // SAFETY: as above.
    let n = unsafe { shim::elisa_shim_online_vcpus(rec.kvm) };
    let mut built = KVec::with_capacity(n as usize, GFP_KERNEL)?;
    let mut had = 0u32;
    for i in 0..n {
        // SAFETY: as above; `i` < online_vcpus.
        let vcpu = unsafe { shim::elisa_shim_get_vcpu(rec.kvm, i) };
        if vcpu.is_null() {
            continue;
        }
        let state = rec.vcpu_state_sleepable(vcpu, i)?;
        if state.gate(slot).is_some() {
            had += 1;
            continue;
        }
        let g = build_vcpu(&layout, &cfg, &svc, state.list_pa, req.entry_gva, (i, slot))
            .map_err(|(what, e)| core_err(what, e))?;
        built.push((state, g), GFP_KERNEL)?;
    }
    let count = had + built.len() as u32;
    let added = built.len();
    let mut published = KVec::with_capacity(added, GFP_KERNEL)?;
    for (state, g) in built {
        // Cannot fail: the capacity is there.
        let _ = published.push_within_capacity(state);
        if state.set_gate(slot, g).is_err() {
            // Cannot happen: `grant_lock` serialises grants.
            pr_err!(
                "ELISA_GRANT: vcpu {} has gate slot {} already\n",
                state.idx,
                slot
            );
        }
    }
    let index = gate_index(slot) as u32;
    if !again {
        rec.grants[slot].entry_gva.store(req.entry_gva, Relaxed);
        rec.grants[slot].flags.store(req.flags, Relaxed);
        rec.grants[slot]
            .service
            .store(svc.into_raw().cast_mut(), Relaxed);
    }
    let (tgpa, tlen) = layout.trusted_window();
    req.gate_index = index;
    req.nr_vcpus = count;
    req.trusted_gpa = tgpa.0;
    req.trusted_size = tlen;
    pr_info!(
        "vm {}: service granted at G {:#x}, gate index {}, to {} more vcpus ({} in all; trusted GPAs {:#x}+{:#x})\n",
        rec.id,
        req.entry_gva,
        index,
        added,
        count,
        tgpa.0,
        tlen
    );
    drop(guard);
    for state in published {
        // The entry probe opens the gate (`VcpuState::set_gate`): make a vCPU that is in
        // the guest now enter again.
        // SAFETY: the VM reference keeps the vCPU alive; a no-op IPI, the shim checks `cpu`.
        unsafe { shim::elisa_shim_kick_cpu(shim::elisa_shim_vcpu_cpu(state.vcpu)) };
        registry::add_views_file(rec, state);
    }
    Ok(())
}
