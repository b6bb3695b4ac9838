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
//! then is each vCPU's `VcpuGate` (`gate.rs`) published; its entry hook opens the gate.
//! Everything is allocated here, in process context; the probes only read what was
//! published.
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
//! 4-level IA-32e tables, and the entry hook closes the gates (their list entries are 0)
//! while the guest's EFER.LMA is clear or its CR4.LA57 is set.
//!
//! INVEPT: a CPU tags what it caches of an EPT by the root's physical address only, and
//! KVM frees its own roots without a flush (it flushes when it loads a root instead, which
//! VMFUNC bypasses). A view's root page may be such a recycled page, with another VM's
//! translations still cached for it: every CPU drops what it cached for a view's EPTPs
//! before the view is published (`VcpuGate::invalidate`). Views never change after
//! publication. When they are freed (detach, after quiesce), every CPU drops what it
//! cached for their EPTPs first.
//!
//! Lock order: the VM's `grant_lock` (held while the views are built), then KVM's
//! `slots_lock` (taken briefly by the shim); never `REG_LOCK` (`registry.rs`).

use crate::elisa_core::addr::{Gpa, Gva, PageSize};
use crate::elisa_core::ept::{EptCaps, EptConfig};
use crate::elisa_core::layout::{Layout, LayoutRequest, RegionAccess, RegionKind, RegionRequest};
use crate::elisa_core::paging::{CallerPrivilege, PagingMode};
use crate::elisa_core::Error as CoreError;
use crate::gate::{build_vcpu, core_errno, gate_index, InveptBatch, MAX_GATES};
use crate::registry::{self, VmRecord};
use crate::service::{self, Service};
use crate::shim::pr_info_rl;
use crate::{caps, uapi};
use core::sync::atomic::Ordering::{Relaxed, Release};
use kernel::{
    bindings,
    prelude::*,
    sync::{Arc, CondVar, Mutex},
};

/// One grant at a time per VM, waited for interruptibly: a grant builds views for as long
/// as its regions and vCPUs take (seconds), and a second grant of the VM (another thread
/// of the VMM, or a process the elisa-vm fd was passed to) must neither sleep
/// uninterruptibly behind it (the hung-task detector reports that, and `hung_task_panic`
/// turns it into a host panic) nor resist a kill. Lockdep does not see this lock (the
/// mutex inside is held only to test and set the flag): it is taken with no other lock
/// held, and nothing that holds it takes `REG_LOCK` (`registry.rs`).
#[pin_data]
pub(crate) struct GrantLock {
    /// Whether a grant holds the lock; the mutex is held only to test and set it.
    #[pin]
    busy: Mutex<bool>,
    /// Signalled when a grant releases the lock.
    #[pin]
    released: CondVar,
}

impl GrantLock {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            busy <- kernel::new_mutex!(false),
            released <- kernel::new_condvar!(),
        })
    }

    /// Waits for the lock; `ERESTARTSYS` if a signal comes first (the ioctl restarts, or
    /// fails with `EINTR`, as the signal's handler says).
    fn lock(&self) -> Result<GrantGuard<'_>> {
        let mut busy = self.busy.lock();
        while *busy {
            let signal = self.released.wait_interruptible(&mut busy);
            // A release wakes one waiter only (the wait is exclusive): a waiter it woke
            // takes the lock even if a signal came too, or the other waiters would sleep
            // on past a free lock. The signal is seen when the ioctl returns.
            if signal && *busy {
                return Err(ERESTARTSYS);
            }
        }
        *busy = true;
        Ok(GrantGuard(self))
    }
}

/// Holds a [`GrantLock`]; releases it when dropped.
struct GrantGuard<'a>(&'a GrantLock);

impl Drop for GrantGuard<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock() = false;
        self.0.released.notify_one();
    }
}

fn core_err(what: &str, e: CoreError) -> Error {
    // A grant whose process is being killed says nothing.
    if e != CoreError::Interrupted {
        pr_info_rl!("ELISA_GRANT: {}: {:?}\n", what, e);
    }
    core_errno(e)
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
            pr_info_rl!(
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
            pr_info_rl!(
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
        pr_info_rl!("ELISA_GRANT: unknown flags, or reserved fields not 0\n");
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
    let guard = rec.grant_lock.lock()?;
    // Cannot fail while this ioctl holds the file (detach runs at its release); kept so
    // that a grant never builds for a record that is detaching, should that ever change.
    if !rec.attached() {
        return Err(ENODEV);
    }
    // What the grant builds for the VM is charged to the VM's owner (`Kvm::charge_to_owner`).
    let _charge = rec.kvm.charge_to_owner().inspect_err(|_| {
        pr_info_rl!(
            "ELISA_GRANT: vm {}: every process of the VM has exited (it cannot run, and its memory cgroup is gone)\n",
            rec.id
        );
    })?;
    let (slot, again) = pick_slot(rec, &svc, req.entry_gva, req.flags)?;
    let host = caps::HostCaps::read();
    // Under KVM's MBEC (kvm_intel.mbec, on by default where the CPU has it, and kept in the
    // views' VMCS controls) a user grant's code needs EPT's user-execute bit; the bit is
    // ignored without MBEC. The attach read the parameter (read-only while kvm_intel is
    // loaded, and the attachment's VM reference keeps kvm_intel loaded).
    let cfg = EptConfig::recommended(EptCaps::from_msr(host.msrs.ept_vpid_cap), rec.mbec);
    // The plan: the service code first, then its regions, each at its requested GVA, in
    // 2 MiB leaves where the region is so backed (huge pages of its file) and placed.
    let mut regions = KVec::with_capacity(svc.regions.len() + 1, GFP_KERNEL_ACCOUNT)?;
    regions.push(
        RegionRequest::new(
            RegionKind::Code,
            RegionAccess::ExecuteOnly,
            svc.code.len() as u64 * 4096,
            PageSize::Size4K,
        )
        .at(svc.code_gva),
        GFP_KERNEL_ACCOUNT,
    )?;
    for r in svc.regions.iter() {
        regions.push(
            RegionRequest::new(
                RegionKind::Shared,
                r.access,
                r.region.size(),
                r.region.page_size_at(r.gva, cfg.caps.huge_2m),
            )
            .at(r.gva),
            GFP_KERNEL_ACCOUNT,
        )?;
    }
    // A grant again places the views of the vCPUs created since in the window of the
    // vCPUs that have the gate, above the memslots of the grant that built theirs, though
    // memslots may have been added since: the views of all vCPUs then agree, and the reply
    // tells the window they all use. Until a vCPU has the gate, each grant plans anew.
    let base = rec.grants[slot].gpa_base.load(Relaxed);
    let gpa_end = if again && base != registry::Grant::NO_BASE {
        base
    } else {
        rec.kvm.gpa_end()
    };
    // SAFETY: `boot_cpu_data` is set up during boot, before modules load; its MAXPHYADDR
    // is only read after.
    let phys_bits = unsafe { bindings::boot_cpu_data.x86_phys_bits }.min(48);
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

    // Build the views of every vCPU that lacks this gate first; publish only when all
    // succeeded.
    let n = rec.kvm.online_vcpus();
    let mut built = KVec::with_capacity(n as usize, GFP_KERNEL_ACCOUNT)?;
    let mut had = 0u32;
    for i in 0..n {
        // A large grant builds views for seconds per vCPU: the CPU is given up between
        // two vCPUs if a reschedule is due (and every 16 table pages within one, in
        // `KernelFrames`), and SIGKILL ends the grant there, nothing published yet (other
        // signals do not end a grant once it holds the lock; they end only the wait for
        // it, with ERESTARTSYS).
        // SAFETY: process context (the ioctl), no spinlock held (`grant_lock` is a mutex);
        // reads the current task's signal state.
        if unsafe { crate::shim::elisa_shim_resched_fatal_signal() } {
            return Err(EINTR);
        }
        let Some(vcpu) = rec.kvm.vcpu(i) else {
            continue;
        };
        let state = rec.vcpu_state_sleepable(vcpu, i)?;
        if state.gate(slot).is_some() {
            had += 1;
            continue;
        }
        let g = build_vcpu(&layout, &cfg, &svc, state.list_pa, req.entry_gva, (i, slot))
            .map_err(|(what, e)| core_err(what, e))?;
        built.push((state, g), GFP_KERNEL_ACCOUNT)?;
    }
    let count = had + built.len() as u32;
    let added = built.len();
    let mut published = KVec::with_capacity(added, GFP_KERNEL_ACCOUNT)?;
    // A root page may have been another EPT's (file header): every new view's cached
    // translations go before any view is published, many views per IPI.
    let mut batch = InveptBatch::new();
    for (_, g) in built.iter() {
        batch.add(g);
    }
    batch.flush();
    for (state, g) in built {
        // Cannot fail: the capacity is there.
        let _ = published.push_within_capacity(state);
        if state.set_gate(slot, g, rec.id).is_err() {
            // Cannot happen: `grant_lock` serialises grants.
            pr_err!(
                "ELISA_GRANT: vcpu {} has gate slot {} already\n",
                state.idx,
                slot
            );
        }
    }
    let index = gate_index(slot) as u32;
    if count != 0 {
        rec.grants[slot].gpa_base.store(gpa_end, Relaxed);
    }
    if !again {
        rec.grants[slot].entry_gva.store(req.entry_gva, Relaxed);
        rec.grants[slot].flags.store(req.flags, Relaxed);
        // Release: a reader that loads the pointer with Acquire (debugfs) sees the service.
        rec.grants[slot]
            .service
            .store(svc.into_raw().cast_mut(), Release);
    }
    let (tgpa, tlen) = layout.trusted_window();
    req.gate_index = index;
    req.nr_vcpus = count;
    req.trusted_gpa = tgpa.0;
    req.trusted_size = tlen;
    pr_info_rl!(
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
        // The entry hook opens the gate (`VcpuState::set_gate`): make a vCPU that is in
        // the guest now enter again.
        state.hook.vcpu.kick();
        registry::add_views_file(rec, state);
    }
    Ok(())
}
