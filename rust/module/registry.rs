// SPDX-License-Identifier: GPL-2.0
//! The registry: the VMs attached to elisa, looked up by the KVM hooks.
//!
//! One [`VmRecord`] exists per attached VM, from `ELISA_ATTACH_VM` until its elisa-vm file
//! is released. [`attach`] returns its one owner, an [`Attachment`] (kept in the file's
//! `ElisaVm`, `vm.rs`), which also owns the VM reference; borrows of the record through it
//! cannot outlive it, and dropping it is detach. The record sits in `SLOTS` (for attach,
//! detach and debugfs) and, by its first field, in the shim's hash table, where the entry
//! probe finds it without a lock (`elisa_shim.c`, "KVM hooks"): neither goes through the
//! handle. A record is freed only after its removal from both and an RCU grace period (the
//! probes run with IRQs off, an RCU read side). Attach and detach serialise on `REG_LOCK`,
//! a mutex the probes never take. Attach and detach hold it only in a kworker
//! (`shim::call_unbound`), never in a thread whose scheduling a VMM chooses, and they make
//! and remove the record's debugfs directory there too (the lock of debugfs's `elisa/`
//! directory is as shared); the `elisa/vms` reader (root) takes it in its own thread. It is
//! held across a wait for a grace period only in two rare cases: an attach that registers
//! the probes right after the last detach unregistered them (`link`), and a registration
//! that fails. The probes are registered while at least one record exists.
//!
//! **Locks**, in the order they may be taken: a VM's `grant_lock` (one grant at a time per
//! VM, held while it builds views; `grant.rs`), then KVM's `slots_lock` (taken briefly by
//! the shim to read the memslots); `REG_LOCK` (the registry's slots) is never held with
//! either. The probes take no lock.
//!
//! Record states: `ATTACHED` -> `QUIESCING` (detach: no vCPU enters with elisa's settings
//! any more, and detach waits until none is still in the guest with them) -> removed.
//!
//! debugfs: `elisa/vms` lists the records under `REG_LOCK`. Each record has a directory
//! `elisa/vm<id>`, made at attach, with a file `vcpu<n>-views` per vCPU granted a gate
//! (the views dump, `VcpuState::dump_views`). Such a file names its `VcpuState` directly and
//! its open takes a snapshot without any lock: detach removes the directory first, and
//! debugfs removal waits for opens in progress and refuses new ones, so a state outlives
//! every open of its file; gates are published whole and never change. A file opened
//! before detach keeps its snapshot, and reads fail from then on (debugfs); the path is gone
//! (`ENOENT`). Entries are made and removed outside `REG_LOCK`, which `elisa/vms` readers
//! take inside debugfs.

use crate::gate::{gate_index, InveptBatch, EPTP_LIST_LEN, MAX_GATES};
use crate::kvm::{Kvm, KvmVcpu};
use crate::vcpu::VcpuState;
use crate::{elisa_core::layout::RegionAccess, service::Service, shim, vmx};
use core::ffi::{c_int, c_void};
use core::ops::Deref;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};
use kernel::{prelude::*, seq_file::SeqFile, seq_print};

const ATTACHED: u32 = 0;
const QUIESCING: u32 = 1;

/// Most VMs attached at once.
const MAX_VMS: usize = 64;

static SLOTS: [AtomicPtr<VmRecord>; MAX_VMS] = [const { AtomicPtr::new(null_mut()) }; MAX_VMS];
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Registry state protected by `REG_LOCK`.
pub(crate) struct RegInner {
    /// Records in `SLOTS`; the KVM probe is registered while it is not zero.
    count: usize,
}

kernel::sync::global_lock! {
    // SAFETY: initialised in module init (`init`) before the device is registered.
    pub(crate) unsafe(uninit) static REG_LOCK: Mutex<RegInner> = RegInner { count: 0 };
}

/// Initialises the registry. Module init, before anything else uses it.
pub(crate) fn init() {
    // SAFETY: called once, from module init, before any other use of `REG_LOCK`.
    unsafe { REG_LOCK.init() };
}

/// One attached VM. See the file header.
#[repr(C)]
pub(crate) struct VmRecord {
    /// How the probes find the record; must stay the first field (the shim reads it as a
    /// `struct elisa_hook_key`).
    hook: shim::HookKey,
    /// The VM, on which the attachment holds a reference.
    pub(crate) kvm: Kvm,
    /// Number shown in debugfs and the kernel log.
    pub(crate) id: u64,
    state: AtomicU32,
    /// vCPU states by `vcpu_idx`; null until the vCPU first enters.
    vcpus: KVec<AtomicPtr<VcpuState>>,
    /// vCPU states that could not be allocated (GFP_NOWAIT); retried at the next entry.
    alloc_failures: AtomicU64,
    /// The granted services by gate slot (`vcpu::gate_index`). Written under `grant_lock`;
    /// released after the vCPU states (their views map the services' pages).
    pub(crate) grants: [Grant; MAX_GATES],
    /// Serialises the grants of this VM (`grant.rs`), which build views while holding it.
    pub(crate) grant_lock: Pin<KBox<crate::grant::GrantLock>>,
    /// The debugfs directory `elisa/vm<id>` (a `struct dentry`, an `ERR_PTR` or null).
    /// Set once after attach; removed at detach before anything else.
    debugfs: AtomicPtr<c_void>,
    /// `kvm_intel.mbec` as the attach read it (a read-only parameter): the views of a
    /// user grant then need EPT's user-execute bit (`grant.rs`).
    pub(crate) mbec: bool,
    /// The kernel-log budget of the lines this VM's guest causes at entry.
    guest_log: shim::VmLog,
}

/// One granted service of a VM.
pub(crate) struct Grant {
    /// An `Arc` reference from `Arc::into_raw`, or null while the slot is free.
    pub(crate) service: AtomicPtr<Service>,
    /// Its G.
    pub(crate) entry_gva: AtomicU64,
    /// Its `elisa_grant.flags`.
    pub(crate) flags: AtomicU32,
    /// The GPA the window of its vCPUs' views was planned from (the end of the memslots at
    /// the first grant that built views): a grant again plans from it too, so every
    /// vCPU's views of the service use one window, the one the reply reports.
    /// [`Grant::NO_BASE`] while no vCPU has the gate.
    pub(crate) gpa_base: AtomicU64,
}

impl Grant {
    const EMPTY: Grant = Grant {
        service: AtomicPtr::new(null_mut()),
        entry_gva: AtomicU64::new(0),
        flags: AtomicU32::new(0),
        gpa_base: AtomicU64::new(Self::NO_BASE),
    };

    /// `gpa_base` of a grant whose views no vCPU has yet (granted before any vCPU
    /// existed): the next grant plans from the memslots of its time.
    pub(crate) const NO_BASE: u64 = u64::MAX;
}

// SAFETY: `kvm` is `Send` and `Sync`; the hook key is used by the shim only (its `next`
// written under `REG_LOCK`, read by the probes under RCU, its `kvm` only compared);
// everything else is atomics, and the vCPU states are `Sync`.
unsafe impl Send for VmRecord {}
// SAFETY: as above.
unsafe impl Sync for VmRecord {}

impl Drop for VmRecord {
    fn drop(&mut self) {
        // The views of every state that is not quarantined are dropped from every CPU in
        // one batch (one broadcast per 32 gates) before any of their pages is freed; each
        // state's own drop would send one per vCPU, and each broadcast makes every running
        // guest on the host exit.
        // A state `quiesce` gave up on is quarantined, unless no task can run the VM
        // again (its VMM has exited, as when a manager such as `elisactl serve` detaches
        // after the VMM's exit): its VMCS may still name the list and the views, but no
        // VM entry will ever read them, and the views were emptied and flushed (`disarm`).
        // Without this a VMM that `serve` attaches again at every start could make each of
        // its runs leave pages behind for good.
        let unrunnable = self.kvm.unrunnable();
        let kept = || {
            self.vcpus.iter().filter_map(move |slot| {
                // SAFETY: from `KBox::into_raw` in `vcpu_state`, freed only below; the
                // record is dropped after removal and a grace period.
                unsafe { slot.load(Relaxed).as_ref() }
                    .filter(|s| unrunnable || !s.hook.in_guest.load(Acquire))
            })
        };
        let mut batch = InveptBatch::new();
        for s in kept() {
            s.add_views(&mut batch);
        }
        batch.flush();
        for s in kept() {
            s.free_gates_flushed();
        }
        let mut not_quarantined = 0u32;
        // The states kept for good: one line for all of them (a VMM chooses how many).
        let (mut quarantined, mut pages, mut first) = (0u32, 0usize, 0u32);
        for slot in self.vcpus.iter() {
            let p = slot.swap(null_mut(), Relaxed);
            if p.is_null() {
                continue;
            }
            // SAFETY: `p` came from `KBox::into_raw` in `vcpu_state`; the record is dropped
            // after removal and a grace period, so no probe uses it.
            let s = unsafe { KBox::from_raw(p) };
            // A broken excursion's line that no entry printed (its run ended there).
            s.print_note();
            if s.hook.in_guest.load(Acquire) && unrunnable {
                not_quarantined += 1;
            } else if s.hook.in_guest.load(Acquire) {
                // `quiesce` gave up on this vCPU: its VMCS may still name the list or a
                // view, and no probe will clean it.
                if quarantined == 0 {
                    first = s.idx;
                }
                quarantined += 1;
                pages += s.quarantine();
            }
        }
        if quarantined != 0 {
            // Their VMCSs may also still send their exits to elisa's trampoline (the failed
            // entry installed it): elisa stays loaded until the host reboots.
            // SAFETY: takes a module reference; process context.
            unsafe { shim::elisa_shim_pin_module() };
            pr_err!(
                "vm {}: {} vCPUs (the first: vcpu {}) may still hold elisa's settings (an entry failed without an exit): their EPTP lists and view roots are emptied and kept for good ({} pages), and elisa stays loaded until reboot\n",
                self.id,
                quarantined,
                first,
                pages
            );
        }
        if not_quarantined != 0 {
            pr_info!(
                "vm {}: {} vCPUs' last entries failed without an exit, but no process can run the VM again: their pages are freed, not kept\n",
                self.id,
                not_quarantined
            );
        }
        for g in self.grants.iter() {
            let svc = g.service.swap(null_mut(), Relaxed);
            if !svc.is_null() {
                // SAFETY: stored by `grant` from `Arc::into_raw`; every view mapping the
                // service's pages is gone (freed above, after INVEPT).
                drop(unsafe { kernel::sync::Arc::from_raw(svc.cast_const()) });
            }
        }
    }
}

impl VmRecord {
    /// The state of vCPU `idx`, if it has one.
    fn existing_state(&self, idx: u32) -> Option<&VcpuState> {
        let p = self.vcpus.get(idx as usize)?.load(Acquire);
        // SAFETY: non-null slots point to live states until the record is dropped.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The state of vCPU `idx`, created on its first entry while attached.
    fn vcpu_state(&self, vcpu: KvmVcpu, idx: u32) -> Option<&VcpuState> {
        let slot = self.vcpus.get(idx as usize)?;
        let p = slot.load(Acquire);
        if !p.is_null() {
            // SAFETY: non-null slots point to live states until the record is dropped.
            return Some(unsafe { &*p });
        }
        self.create_vcpu_state(vcpu, idx)
    }

    /// The first entry of vCPU `idx` since attach: allocates its state. Out of the entry
    /// probe's hot path.
    #[cold]
    #[inline(never)]
    fn create_vcpu_state(&self, vcpu: KvmVcpu, idx: u32) -> Option<&VcpuState> {
        let slot = self.vcpus.get(idx as usize)?;
        // Charged to the VMM's memory cgroup like the rest (`current` is its vCPU thread),
        // within its limit: GFP_NOWAIT, not GFP_ATOMIC, whose __GFP_HIGH would let the
        // charge go past `memory.max` (a VMM could then create vCPUs after a grant with its
        // cgroup full and run each once). A failure is counted and retried.
        let account = GFP_KERNEL_ACCOUNT & !GFP_KERNEL;
        match VcpuState::new(vcpu, idx, self.id, &self.guest_log, GFP_NOWAIT | account) {
            Ok(b) => Some(Self::install(slot, b)),
            Err(_) => {
                self.alloc_failures.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Puts `b` into the empty `slot`, or keeps the state someone else put there first.
    fn install(slot: &AtomicPtr<VcpuState>, b: KBox<VcpuState>) -> &VcpuState {
        let p = KBox::into_raw(b);
        // SeqCst, as `for_each_vcpu`'s load: `quiesce` must see every state whose entry
        // then saw the record attached (`on_entry`). The argument (the entry: this
        // exchange, `in_guest`, the load of the record state; quiesce: the store of the
        // record state, the loads of the slots) needs the one total order of SeqCst
        // operations; with
        // acquire/release alone nothing orders quiesce's load after this store. On x86 both
        // compile to the same instructions.
        match slot.compare_exchange(null_mut(), p, SeqCst, Acquire) {
            // SAFETY: just stored; freed only with the record.
            Ok(_) => unsafe { &*p },
            Err(other) => {
                // SAFETY: `p` was not published; it came from `into_raw` above.
                drop(unsafe { KBox::from_raw(p) });
                // SAFETY: non-null slots point to live states until the record is dropped.
                unsafe { &*other }
            }
        }
    }

    /// The state of vCPU `idx` (`vcpu`), created here if the vCPU has not entered since
    /// attach. Process context (a grant).
    pub(crate) fn vcpu_state_sleepable(&self, vcpu: KvmVcpu, idx: u32) -> Result<&VcpuState> {
        let slot = self.vcpus.get(idx as usize).ok_or(EINVAL)?;
        let p = slot.load(Acquire);
        if !p.is_null() {
            // SAFETY: non-null slots point to live states until the record is dropped.
            return Ok(unsafe { &*p });
        }
        Ok(Self::install(
            slot,
            VcpuState::new(vcpu, idx, self.id, &self.guest_log, GFP_KERNEL_ACCOUNT)?,
        ))
    }

    /// Whether the record is attached (not being detached).
    pub(crate) fn attached(&self) -> bool {
        self.state.load(SeqCst) == ATTACHED
    }

    pub(crate) fn for_each_vcpu(&self, mut f: impl FnMut(&VcpuState)) {
        for slot in self.vcpus.iter() {
            // SeqCst: see `install`.
            let p = slot.load(SeqCst);
            if !p.is_null() {
                // SAFETY: non-null slots point to live states until the record is dropped.
                f(unsafe { &*p });
            }
        }
    }

    /// The entry hook for a vCPU of this VM (not in guest mode). Returns the vCPU's state when
    /// elisa's settings are in the VMCS for this run (its exit trampoline takes them out).
    /// Atomic context.
    pub(crate) fn on_entry(
        &self,
        vcpu: KvmVcpu,
        idx: u32,
        vmcs: &vmx::CurrentVmcs,
    ) -> Option<&VcpuState> {
        if self.state.load(Relaxed) != ATTACHED {
            // Detaching: nothing is set up, but a state whose last entry failed without an
            // exit still has elisa's settings in this VMCS, and they come out now.
            let s = self.existing_state(idx)?;
            s.print_note();
            let was_in_guest = s.hook.in_guest.swap(true, SeqCst);
            Self::entry_while_detaching(s, vmcs, was_in_guest);
            return None;
        }
        let s = self.vcpu_state(vcpu, idx)?;
        s.print_note();
        // Pairs with `quiesce`: either detach sees this vCPU in the guest and waits for
        // its exit, or this entry sees that detach has started and sets nothing up.
        let was_in_guest = s.hook.in_guest.swap(true, SeqCst);
        if self.state.load(SeqCst) != ATTACHED {
            Self::entry_while_detaching(s, vmcs, was_in_guest);
            return None;
        }
        if !s.enter(vmcs, was_in_guest, &self.guest_log) {
            // Nothing is in the VMCS (none is current), so no exit will clear `in_guest`.
            s.hook.in_guest.store(false, Release);
            return None;
        }
        Some(s)
    }

    /// An entry that found detach under way: elisa sets nothing up.
    #[cold]
    #[inline(never)]
    fn entry_while_detaching(s: &VcpuState, vmcs: &vmx::CurrentVmcs, was_in_guest: bool) {
        if was_in_guest {
            // The last entry failed without an exit: take elisa's settings out of
            // this VMCS before detach frees what they point at.
            s.scrub(vmcs);
        }
        // An event raised inside a view that KVM re-injects now is dropped here too.
        s.entry_detaching_after_broken(vmcs);
        s.hook.in_guest.store(false, Release);
    }

    /// Detach: from now on no vCPU enters with elisa's settings, and when this returns
    /// none is still in the guest with them, so no VMCS refers to elisa's pages. A vCPU
    /// that has not left the guest after a second, counted for all vCPUs together (it
    /// always leaves on the IPI: only an
    /// entry that failed without an exit leaves `in_guest` set) is logged, and its state
    /// quarantined when the record is dropped (`VcpuState::quarantine`). When no task can
    /// run the VM any more (`Kvm::unrunnable`), nothing is waited for: no vCPU is in the
    /// guest, and the record's drop frees such states. Process context; the attachment
    /// still holds its VM reference.
    fn quiesce(&self) {
        self.state.store(QUIESCING, SeqCst);
        // Every vCPU in the guest is kicked first, then waited for: one second for all of
        // them together, not each (a VMM with many vCPUs whose entries it made fail would
        // otherwise hold the closing process for a second per vCPU).
        self.for_each_vcpu(|s| {
            if s.hook.in_guest.load(SeqCst) {
                s.hook.vcpu.kick();
            }
        });
        let mut tries = 0;
        // The vCPUs given up on: one line for all of them (a VMM chooses how many).
        let (mut gave_up, mut first) = (0u32, 0u32);
        self.for_each_vcpu(|s| {
            // A changed `exits` ends the wait while that exit's probe may still run (it
            // counts first and clears `in_guest` last), so the caller's `disarm` can race
            // the hook's own list writes (`scrub_views`). Harmless: that hook clears the
            // VM-functions bit before it returns, no later entry sets anything up (the
            // record is detaching), and nothing is freed before `hooks_sync` has waited for
            // it.
            let exits = s.hook.exits.load(Acquire);
            while s.hook.in_guest.load(SeqCst) && s.hook.exits.load(Acquire) == exits {
                // No task can run the VM any more (its VMM has exited): no vCPU is in the
                // guest, and none will exit. `in_guest` is left over from a failed entry.
                if self.kvm.unrunnable() {
                    break;
                }
                if tries >= 1000 {
                    if gave_up == 0 {
                        first = s.idx;
                    }
                    gave_up += 1;
                    break;
                }
                s.hook.vcpu.kick();
                kernel::time::delay::fsleep(kernel::time::Delta::from_micros(1000));
                tries += 1;
            }
        });
        if gave_up != 0 {
            pr_err!(
                "vm {}: {} vCPUs (the first: vcpu {}) did not leave the guest within 1 s\n",
                self.id,
                gave_up,
                first
            );
        }
    }
}

/// Whether `kvm` has a record. Under `REG_LOCK`.
fn is_attached(_inner: &RegInner, kvm: Kvm) -> bool {
    SLOTS.iter().any(|slot| {
        let p = slot.load(Relaxed);
        // SAFETY: records are removed from `SLOTS` under `REG_LOCK`, which the caller holds,
        // before they are freed (`Attachment::drop`).
        !p.is_null() && unsafe { (*p).kvm } == kvm
    })
}

/// Records `kvm` as attached and returns the record's owner. The caller passes its
/// reference on the VM on to the [`Attachment`], and gets it back on failure. Registers the
/// KVM probes for the first VM. Process context.
pub(crate) fn attach(kvm: Kvm, mbec: bool) -> Result<Attachment> {
    // Everything the record needs is allocated before `REG_LOCK`: the allocations are
    // charged to the caller's memory cgroup (for `elisactl serve`, the VMM's), whose
    // reclaim at its limit must not hold up every other VM's attach and detach. A refused
    // attach frees them again (and only skips an id).
    // SAFETY: a constant of the shim.
    let max = unsafe { shim::elisa_shim_max_vcpus() } as usize;
    let mut vcpus = KVec::with_capacity(max, GFP_KERNEL_ACCOUNT)?;
    for _ in 0..max {
        vcpus.push(AtomicPtr::new(null_mut()), GFP_KERNEL_ACCOUNT)?;
    }
    let id = NEXT_ID.fetch_add(1, Relaxed);
    let rec = KBox::new(
        VmRecord {
            hook: shim::HookKey::new(kvm.as_ptr()),
            kvm,
            id,
            state: AtomicU32::new(ATTACHED),
            vcpus,
            alloc_failures: AtomicU64::new(0),
            grants: [Grant::EMPTY; MAX_GATES],
            grant_lock: KBox::pin_init(crate::grant::GrantLock::new(), GFP_KERNEL_ACCOUNT)?,
            debugfs: AtomicPtr::new(null_mut()),
            mbec,
            guest_log: shim::VmLog::new(id),
        },
        GFP_KERNEL_ACCOUNT,
    )?;
    // `REG_LOCK`, and the lock of debugfs's `elisa/` directory that making `vm<id>` takes
    // (its dentry and inode are allocated under it), only in a kworker
    // (`shim::call_unbound`): a VMM's thread, scheduled as the VMM likes and reclaiming
    // under its `memory.max`, never holds either.
    let mut linked = Err(EINVAL);
    shim::call_unbound(|| {
        linked = link(rec, kvm);
        if let Ok(att) = &linked {
            // SAFETY: process context, without `REG_LOCK`; the directory is removed by
            // detach.
            let dir = unsafe { shim::elisa_shim_debugfs_vm_dir(att.id) };
            att.debugfs.store(dir, Release);
        }
    });
    linked
}

/// The part of [`attach`] under `REG_LOCK`: puts `rec` into a free slot and the probes'
/// table, registering the probes for the first record, and returns its owner. Frees `rec`
/// when the VM is attached already or no slot is free. In a kworker.
fn link(rec: KBox<VmRecord>, kvm: Kvm) -> Result<Attachment> {
    let mut inner = REG_LOCK.lock();
    if is_attached(&inner, kvm) {
        return Err(EBUSY);
    }
    let free = SLOTS
        .iter()
        .position(|s| s.load(Relaxed).is_null())
        .ok_or_else(|| {
            // A caller's input (one attach too many): rate-limited like the others.
            crate::shim::pr_info_rl!(
                "ELISA_ATTACH_VM: too many VMs attached (at most {})\n",
                MAX_VMS
            );
            ENOSPC
        })?;
    if inner.count == 0 {
        // The last detach may have let the hook go without having waited yet for the calls
        // still running (it waits without the lock). One of them may meet this record: it
        // sets the vCPU up, HOST_RIP included, like any entry, and the exit trampoline
        // takes the settings out at its exit, hook or no hook. So nothing is
        // waited for here. (Before the trampoline the settings came out in a kvm_exit
        // probe, which might already be gone: such an attach waited for the last detach's
        // grace periods under the lock, and a VMM that starved the RCU kthreads with
        // spinners could stretch that wait to seconds: `detach_starved_last`.)
        // SAFETY: process context, with `REG_LOCK` held.
        let r = unsafe { shim::elisa_shim_hooks_register() };
        if r != 0 {
            pr_err!("cannot register the entry hook: error {}\n", r);
            return Err(Error::from_errno(r));
        }
    }
    inner.count += 1;
    let p = NonNull::from(KBox::leak(rec));
    SLOTS[free].store(p.as_ptr(), Release);
    // SAFETY: under `REG_LOCK`; the record stays at `p` until the attachment's drop unlinks
    // it and waits for a grace period. `VmRecord` is `repr(C)` with the key first.
    unsafe { shim::elisa_shim_hook_link(core::ptr::addr_of_mut!((*p.as_ptr()).hook)) };
    // INVARIANT: `p` is the leaked `KBox`, linked in `SLOTS` and the hook's table just
    // above, and this is its only handle.
    Ok(Attachment(p))
}

/// The part of detach under `REG_LOCK`: takes `att`'s record out of `SLOTS` and the
/// hook's table, and with the last record lets the entry hook go (a second later), without
/// waiting for the calls still running. In a kworker, once, from `att`'s drop.
fn unlink(att: &Attachment) {
    let p = att.0.as_ptr();
    let mut inner = REG_LOCK.lock();
    // SAFETY: under `REG_LOCK`; linked by `link` (type invariant), and unlinked only here.
    unsafe { shim::elisa_shim_hook_unlink(core::ptr::addr_of_mut!((*p).hook)) };
    for slot in SLOTS.iter() {
        if slot.load(Relaxed) == p {
            slot.store(null_mut(), Release);
        }
    }
    inner.count -= 1;
    if inner.count == 0 {
        // SAFETY: process context with `REG_LOCK` held; the caller waits for running probes.
        unsafe { shim::elisa_shim_hooks_unregister() };
    }
}

/// Adds `elisa/vm<id>/vcpu<n>-views` for `state`, which has a gate, unless it has it
/// already. Process context, without `REG_LOCK`, while the attachment lasts.
pub(crate) fn add_views_file(rec: &VmRecord, state: &VcpuState) {
    if state.views_file.swap(true, AcqRel) {
        return;
    }
    let dir = rec.debugfs.load(Acquire);
    let p: *const VcpuState = state;
    // SAFETY: `dir` is the record's directory (or an error the shim skips); the state
    // outlives the file, which detach removes with the directory first (file header).
    unsafe { shim::elisa_shim_debugfs_views_file(dir, state.idx, p.cast_mut().cast()) };
}

/// An attached VM: the only owner of its [`VmRecord`], and of the reference on the VM that
/// the record names, from [`attach`] until it is dropped. It is neither `Clone` nor `Copy`,
/// and a `&VmRecord` borrowed from it (`Deref`) cannot outlive it, so nothing reaches the
/// record through it after detach. The probes reach the record through the shim's hash
/// table, and debugfs through `SLOTS`, not through the handle.
///
/// Dropping it detaches (`Attachment::drop`): it sleeps, so it may be dropped in process
/// context only. The one handle lives in the elisa-vm file's `ElisaVm` (`vm.rs`), dropped
/// by the file's release.
///
/// # Invariants
///
/// `self.0` points to a record that [`attach`] allocated (a leaked `KBox`) and linked into
/// `SLOTS` and the hook's table, whose `kvm` holds a VM reference; only this handle's drop
/// unlinks the record, frees it and drops that reference.
pub(crate) struct Attachment(NonNull<VmRecord>);

// SAFETY: the handle owns its record as a `KBox<VmRecord>` would, and `VmRecord` is `Send`;
// its drop needs process context only, on any thread.
unsafe impl Send for Attachment {}
// SAFETY: a shared handle gives out only `&VmRecord` (`Deref`), and `VmRecord` is `Sync`.
unsafe impl Sync for Attachment {}

impl Deref for Attachment {
    type Target = VmRecord;

    fn deref(&self) -> &VmRecord {
        // SAFETY: by the type invariant the record lives until this handle is dropped, which
        // cannot happen while the returned borrow of the handle lasts.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Attachment {
    /// Detach: quiesces the VM, removes and frees its record, unregisters the probes with
    /// the last one, and drops the VM reference. Process context (it sleeps).
    fn drop(&mut self) {
        let rec: &VmRecord = self;
        let (id, kvm) = (rec.id, rec.kvm);
        // First the debugfs files that name the record's vCPU states (file header), in a
        // kworker as at attach: the removal locks debugfs's `elisa/` directory.
        shim::call_unbound(|| {
            // SAFETY: process context, without `REG_LOCK`; the directory came from
            // `elisa_shim_debugfs_vm_dir` (or is an error or null, which the shim skips).
            unsafe { shim::elisa_shim_debugfs_remove(rec.debugfs.swap(null_mut(), AcqRel)) };
        });
        rec.quiesce();
        // A vCPU that quiesce gave up on may still have elisa's settings in its VMCS: its
        // list and views are made inert while the record is linked, so that an entry
        // after the unlink below, which no probe sees, finds nothing live. All their
        // views go into one batch: a VMM that made many vCPUs' entries fail must not make
        // its detach broadcast once per vCPU and gate (each broadcast makes every running
        // guest on the host exit).
        // Ordering rule: this ends in a synchronous IPI to every CPU (the batch's INVEPT,
        // `on_each_cpu(.., wait)`, or one with nothing to do when no such state has a
        // gate), before `hook_forget` below. A CPU between an entry hook and its exit
        // probe has IRQs off, so it takes the IPI only after its exit trampoline ran: a vCPU
        // still running in a view exits, and its exit trampoline parks or ends the excursion
        // with its state still in the per-CPU variable; an entry hook that set
        // `in_guest` but had not yet stored its state in the per-CPU variable when quiesce
        // gave up has stored it and been through its exit. Deferring the IPI past
        // `hook_forget` would let such an exit reach KVM with the view's registers, or
        // meet a state already freed.
        let mut batch = InveptBatch::new();
        let mut gave_up = false;
        rec.for_each_vcpu(|s| {
            if s.hook.in_guest.load(Acquire) {
                s.disarm(&mut batch);
                gave_up = true;
            }
        });
        if batch.flush() == 0 && gave_up {
            // SAFETY: process context, IRQs on.
            unsafe { shim::elisa_shim_sync_all_cpus() };
        }
        // A failed VM entry leaves its state in the shim's per-CPU variable (no exit took
        // it). Cleared now, while the probes are registered: no entry sets one up again
        // (the record is detaching), and an exit trampoline that finds none, or another
        // vCPU's, takes nothing but KVM's `HOST_RIP` and the VM-functions bit.
        rec.for_each_vcpu(|s| {
            // SAFETY: process context; the state is freed only below.
            unsafe { shim::elisa_shim_hook_forget(core::ptr::from_ref(s).cast_mut().cast()) }
        });
        // `REG_LOCK` only in a kworker (as in `attach`): the VMM schedules this thread.
        let att: &Attachment = self;
        shim::call_unbound(|| unlink(att));
        let p = self.0.as_ptr();
        // Waits, without the lock, until no probe can still see the record: every probe
        // running now returns (the tracepoint's SRCU read side and the IRQs-off RCU read
        // side). Before, `REG_LOCK` was held through these grace periods, in the VMM's own
        // thread: a VMM that kept that thread off the CPU held up every other attach and
        // detach.
        // SAFETY: process context, where it may sleep.
        unsafe { shim::elisa_shim_hooks_sync() };
        // SAFETY: removed from `SLOTS` and the hook's table and a grace period has passed,
        // and `rec` is not used after this, so this handle holds the only reference; `p` is
        // the `KBox` that `attach` leaked (type invariant).
        drop(unsafe { KBox::from_raw(p) });
        pr_info!("vm {}: detached\n", id);
        // SAFETY: the VM reference that `attach` took over, dropped once: the record that
        // used it is gone; process context.
        unsafe { kvm.put() };
    }
}

/// debugfs `elisa/vms`: first `pages held N pinned M quarantined Q invept I` (every page
/// elisa allocated and still holds, the region pages it pins, and the pages it gave up for
/// good: [`crate::pages`]; the INVEPT broadcasts since load), then `entry hook` and the
/// hooks registered (`ftrace`, `tracepoint`, or `none`), then every attached VM,
/// its vCPUs and their EPTP lists' non-zero entries.
#[no_mangle]
extern "C" fn elisa_rust_debugfs_show(m: *mut c_void) {
    // SAFETY: the shim passes the `struct seq_file` of the show callback being run.
    let m = unsafe { SeqFile::from_raw(m.cast()) };
    let _inner = REG_LOCK.lock();
    let (held, pinned, quarantined) = crate::pages::counts();
    seq_print!(
        m,
        "pages held {} pinned {} quarantined {} invept {}\n",
        held,
        pinned,
        quarantined,
        crate::gate::INVEPT_BROADCASTS.load(Relaxed)
    );
    // SAFETY: reads three flags; any context.
    let hooks = unsafe { shim::elisa_shim_hook_state() };
    let names = [(1, " ftrace"), (2, " tracepoint"), (4, " (ftrace going)")];
    seq_print!(m, "entry hook");
    for (bit, name) in names {
        if hooks & bit != 0 {
            seq_print!(m, "{}", name);
        }
    }
    let none = if hooks & 3 == 0 { " none" } else { "" };
    seq_print!(m, "{}\n", none);
    for slot in SLOTS.iter() {
        let p = slot.load(Relaxed);
        if p.is_null() {
            continue;
        }
        // SAFETY: records are removed from `SLOTS` under `REG_LOCK`, which we hold, before
        // they are freed (`Attachment::drop`).
        let r = unsafe { &*p };
        let state = if r.state.load(Relaxed) == ATTACHED {
            "attached"
        } else {
            "quiescing"
        };
        let pid = r.kvm.pid();
        seq_print!(
            m,
            "vm {} {} alloc_failures {} pid {}\n",
            r.id,
            state,
            r.alloc_failures.load(Relaxed),
            pid
        );
        for (slot, g) in r.grants.iter().enumerate() {
            let svc = g.service.load(Acquire);
            if svc.is_null() {
                continue;
            }
            // SAFETY: a granted slot holds an `Arc` reference until the record is dropped,
            // which happens only after detach removed it from `SLOTS` under `REG_LOCK`,
            // which we hold.
            let s = unsafe { &*svc };
            seq_print!(
                m,
                "  grant {} g {:#x} flags {:#x} code_gva {:#x} code_pages {} regions {}\n",
                gate_index(slot),
                g.entry_gva.load(Relaxed),
                g.flags.load(Relaxed),
                s.code_gva.raw(),
                s.code.len(),
                s.regions.len()
            );
            for reg in s.regions.iter() {
                let access = match reg.access {
                    RegionAccess::ReadWrite => "rw",
                    RegionAccess::ReadOnly => "ro",
                    _ => "x",
                };
                seq_print!(
                    m,
                    "    region gva {:#x} pages {} {}\n",
                    reg.gva.raw(),
                    reg.region.nr_pages(),
                    access
                );
            }
        }
        r.for_each_vcpu(|s| {
            seq_print!(
                m,
                "  vcpu {} view {} entries {} exits {} list0_updates {} view_exits {} failbacks {} faults {} gate_frames {} resumes {} unpaired {} failback_why {:#x} foreign_roots {}\n",
                s.idx,
                s.view.load(Relaxed),
                s.entries.load(Relaxed),
                s.hook.exits.load(Relaxed),
                s.list0_updates(),
                s.view_exits.load(Relaxed),
                s.failbacks.load(Relaxed),
                s.faults.load(Relaxed),
                s.gate_frames(),
                s.resumes.load(Relaxed),
                s.unpaired.load(Relaxed),
                s.failback_why.load(Relaxed),
                s.foreign_roots.load(Relaxed)
            );
            for i in 0..EPTP_LIST_LEN {
                let e = s.list_entry(i);
                if e != 0 {
                    seq_print!(m, "    list[{}] {:#x}\n", i, e);
                }
            }
        });
    }
}

/// A views snapshot: what one open of a `vcpu<n>-views` file reads.
struct ViewsSnapshot {
    bytes: KVVec<u8>,
}

/// debugfs `elisa/vm<id>/vcpu<n>-views`, open: the snapshot of `state`'s views into `*out`.
/// Returns 0 or a negative errno.
#[no_mangle]
extern "C" fn elisa_rust_views_open(state: *mut c_void, out: *mut *mut c_void) -> c_int {
    // SAFETY: the file's private data is the `VcpuState` it was made for, which outlives
    // every open of the file (file header).
    let s = unsafe { &*state.cast_const().cast::<VcpuState>() };
    let snap = match s
        .dump_views()
        .and_then(|bytes| Ok(KBox::new(ViewsSnapshot { bytes }, GFP_KERNEL_ACCOUNT)?))
    {
        Ok(snap) => snap,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: `out` is the shim's pointer to store the snapshot in.
    unsafe { *out = KBox::into_raw(snap).cast() };
    0
}

/// debugfs `vcpu<n>-views`, read: the snapshot's bytes and their number.
#[no_mangle]
extern "C" fn elisa_rust_views_data(snap: *mut c_void, len: *mut usize) -> *const u8 {
    // SAFETY: `snap` came from `elisa_rust_views_open` and is freed only by release.
    let snap = unsafe { &*snap.cast_const().cast::<ViewsSnapshot>() };
    // SAFETY: `len` is the shim's pointer to store the length in.
    unsafe { *len = snap.bytes.len() };
    snap.bytes.as_ptr()
}

/// debugfs `vcpu<n>-views`, release: frees the snapshot.
#[no_mangle]
extern "C" fn elisa_rust_views_release(snap: *mut c_void) {
    if !snap.is_null() {
        // SAFETY: `snap` came from `elisa_rust_views_open`; release runs once.
        drop(unsafe { KBox::from_raw(snap.cast::<ViewsSnapshot>()) });
    }
}
