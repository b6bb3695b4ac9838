// SPDX-License-Identifier: GPL-2.0
//! `VcpuState`: what elisa keeps for one vCPU of an attached VM.
//!
//! One exists per vCPU that has entered the guest since its VM was attached. It is created
//! by that vCPU's first entry hook (IRQs off, so with `GFP_NOWAIT`) and owned by the
//! VM's [`VmRecord`](super::registry::VmRecord), which frees it at detach. All fields are
//! atomics: the vCPU's own entry hook and exit trampoline write them (one thread at a
//! time: `KVM_RUN` holds `vcpu->mutex`), and detach and debugfs read them.
//!
//! **elisa's settings live in the VMCS only while the guest runs.** The entry hook
//! (`elisa_shim.c`, "KVM hooks") turns VM functions on, installs the EPTP list and points `HOST_RIP` at the exit
//! trampoline (`elisa_exit.S`); the trampoline, before any KVM code runs, turns them off
//! again and puts KVM's own root back into `EPT_POINTER`. Outside guest mode the VMCS is
//! exactly what KVM believes it is, and once no vCPU is in the guest (which detach waits
//! for) nothing in any VMCS refers to elisa's pages.
//!
//! The EPTP list is one zeroed page. Entry 0 is always the EPTP of KVM's current root for
//! this vCPU, refreshed at every entry; entries 511, 510, ... (one per granted service,
//! at most [`MAX_GATES`]) are the gate views' EPTPs (`grant.rs`), entry 1 the sub view's
//! of the gate being crossed, for the few instructions of the gate-to-sub hop; every other
//! entry is 0, so a guest VMFUNC to any other index exits and KVM injects #UD.
//!
//! **Exits in the gate or sub view** (gate-protocol §7, R14, R16,
//! `Documentation/security.rst`). The exit trampoline knows the view from `EPT_POINTER`:
//!
//! - an asynchronous exit (external interrupt, NMI, interrupt or NMI window, preemption
//!   timer, PML full) **parks** the excursion: its registers, `RIP`, `RFLAGS` and `list[1]`
//!   go into this state, and the vCPU is left exactly as if the call had been failed back
//!   with `ERR_INTERRUPTED` (default view, `RIP` = G + 0x2000, `RSP` = the caller's, `RDX`
//!   = the error, every other general register 0, `list[1]` = 0). So whatever KVM does
//!   next, and whatever a VMM sees or changes if KVM returns to user space, concerns that
//!   failed-back state only: no register of the gate or sub view ever reaches KVM's
//!   handlers, `kvm_run` or the VMM.
//! - at the next entry the excursion is **resumed** only if nothing touched the parked
//!   vCPU: no event is being injected (an event must not be delivered in a view, R16),
//!   the general registers, `RIP`, `RSP` and `RFLAGS` are exactly the failed-back ones, the
//!   guest state that decides how the excursion runs, and how a fault inside it would be
//!   delivered (`vmx::PARK_CONTEXT`, the supervisor CET state while the VM entry loads it,
//!   `EFER`, `PKRU`, `XCR0`, `IA32_XSS`, the user CET state), is unchanged, and the gate is
//!   still open. Otherwise the call stays failed back (and the EPTP list and gate stacks
//!   are scrubbed: `scrub_views`) and the guest sees `-EINTR`; a VMM that rewrote
//!   registers, sregs, events or extended state, a reset or an INIT all end up there.
//! - any other exit (an EPT violation, an instruction that exits, a fault, an exit during
//!   the delivery of an event inside the view, a failed VM entry) is a broken excursion:
//!   `list[1]` is cleared, every general register is zeroed, the vCPU is put at G + 0x2000
//!   in the default view, and KVM is asked to end the run with `KVM_EXIT_SHUTDOWN` (a
//!   triple-fault request; at the next exit when this one interrupted an event's
//!   delivery, which KVM re-queues and delivers in the default view first: `end_broken`).
//!   KVM still handles the exit itself, but against zeroed registers and the default
//!   view, so nothing of the sub view reaches its handlers or the guest, and the vCPU is
//!   never put back into the view that faulted: no livelock.
//!
//! Where the caller's `RSP` is at each point of the excursion, and the failed-back state,
//! are `elisa_core::gate::Interrupted` (host-tested at every instruction of a call).

use crate::elisa_core::entry::{self, EntryState, Gates};
use crate::elisa_core::ept::EPT_ADDR_MASK;
use crate::elisa_core::gate::{ExcursionView, FailBack, Idtr, Interrupted, RFLAGS_IF};
use crate::elisa_core::paging::{CallerPrivilege, CR4_ANALYSED};
use crate::gate::{
    gate_index, InveptBatch, VcpuGate, EPTP_LIST_LEN, MAX_GATES, VIEW_DEFAULT, VIEW_SUB,
};
use crate::kvm::{Gpr, KvmVcpu, NR_GPRS};
use crate::pages::HeldPage;
use crate::shim::{pr_info_vm, pr_warn_rl, pr_warn_vm};
use crate::{shim, vmx};
use core::ptr::null_mut;
use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU64, AtomicU8, Ordering::*,
};
use kernel::{alloc::Flags, prelude::*};

/// Why a parked excursion was not resumed (`VcpuState::failback_why`): the general
/// registers, the `park_context` values, an event injected at this entry, `RIP`, `RSP`,
/// `RFLAGS`, its gate closed, or a gate view excursion with `IF` = 1.
const FAILBACK_GPRS: u64 = 1 << 0;
const FAILBACK_CONTEXT: u64 = 1 << 1;
const FAILBACK_EVENT: u64 = 1 << 2;
const FAILBACK_RIP: u64 = 1 << 3;
const FAILBACK_RSP: u64 = 1 << 4;
const FAILBACK_RFLAGS: u64 = 1 << 5;
const FAILBACK_CLOSED: u64 = 1 << 6;
const FAILBACK_IF_GATE: u64 = 1 << 7;

/// The error of a call failed back because it was interrupted: `-EINTR`.
const ERR_INTERRUPTED: i64 = crate::elisa_core::gate::ERR_INTERRUPTED;

/// An excursion parked at an asynchronous exit (file header): what it had, and the
/// failed-back state it left behind. Written by the vCPU's exit trampoline, read by its
/// next entry hook; `view` in [`VcpuState`] says whether one is parked.
struct Parked {
    /// Its general registers (`RSP` from the VMCS), `RIP`, `RFLAGS` and `list[1]`.
    regs: [AtomicU64; NR_GPRS],
    rip: AtomicU64,
    rflags: AtomicU64,
    list1: AtomicU64,
    /// The failed-back state installed in its place: `RIP`, `RSP`, `RDX`, `RFLAGS`.
    fb: [AtomicU64; 4],
    /// The bytes KVM's handler of the exit moves `RIP` on by (`parkable`): the VMCS holds
    /// `fb[0]` less this until KVM writes its copy at the next entry (after the
    /// `kvm_entry` tracepoint, before the ftrace hook).
    skip: AtomicU64,
    /// `vmx::PARK_CONTEXT`, `vmx::PARK_CET`, then [`VcpuState::park_extra`], as the
    /// failed-back state has them.
    context: [AtomicU64; PARK_LEN],
    /// Whether the excursion ran with the empty IDT of a supervisor grant's sub view
    /// (`Interrupted::guest_idtr`): the failed-back state then has the guest's IDT
    /// register (`fb_idtr`), and a resume loads the one of the exit (`idtr`) again.
    idt_emptied: AtomicBool,
    /// The IDT register at the exit: base, limit.
    idtr: [AtomicU64; 2],
    /// The guest's IDT register the failed-back state has: base, limit.
    fb_idtr: [AtomicU64; 2],
}

impl Parked {
    /// The guest's IDT register the failed-back state has, if the excursion had replaced it.
    fn fb_idtr(&self) -> Option<Idtr> {
        self.idt_emptied.load(Relaxed).then(|| Idtr {
            base: self.fb_idtr[0].load(Relaxed),
            limit: self.fb_idtr[1].load(Relaxed) as u16,
        })
    }
}

/// The fields of a [`VcpuState`] that the exit trampoline (`elisa_exit.S`) reads and
/// writes: `struct elisa_exit_hook` in `elisa_exit.h`, whose offsets are checked below. The
/// trampoline counts the exit, clears `resumed_unconfirmed`, and in the default view turns
/// VM functions off and clears `in_guest`, its last access; everything else is
/// [`VcpuState::exit`]'s, which it calls.
#[repr(C)]
pub(crate) struct ExitHook {
    /// The EPTP in list entry 0: KVM's root at the last entry.
    pub(crate) list0: AtomicU64,
    /// Exits since attach, for debugfs (and detach's wait).
    pub(crate) exits: AtomicU64,
    /// The `struct kvm_vcpu`; valid while the VM exists, and elisa holds a VM reference
    /// for as long as this state exists.
    pub(crate) vcpu: KvmVcpu,
    /// The physical address of the vCPU's VMCS, which the entry hook stores (`VMPTRST`)
    /// when it installs the trampoline, and the trampoline compares with the current one.
    vmcs: AtomicU64,
    /// Between this vCPU's entry hook and its exit, with elisa's settings in the VMCS.
    pub(crate) in_guest: AtomicBool,
    /// The last entry resumed an excursion, and no exit has come since: set by the
    /// resume, cleared at every exit. Still set at the next entry, the resuming entry
    /// failed (`end_failed_resume`).
    resumed_unconfirmed: AtomicBool,
    /// A broken excursion's end of the run is still to be requested (`end_broken`):
    /// `SHUT_NONE`, `SHUT_ENTRY` (at the next entry, drop the event KVM re-injects) or
    /// `SHUT_EXIT` (request it at the next exit that interrupted no delivery).
    shutdown_pending: AtomicU8,
}

// The layout `elisa_exit.h` gives the trampoline (`ELISA_HOOK_*`).
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(VcpuState, hook) == 0);
    assert!(offset_of!(ExitHook, list0) == 0);
    assert!(offset_of!(ExitHook, exits) == 8);
    assert!(offset_of!(ExitHook, vcpu) == 16);
    assert!(offset_of!(ExitHook, vmcs) == 24);
    assert!(offset_of!(ExitHook, in_guest) == 32);
    assert!(offset_of!(ExitHook, resumed_unconfirmed) == 33);
    assert!(offset_of!(ExitHook, shutdown_pending) == 34);
    assert!(core::mem::size_of::<KvmVcpu>() == 8);
};

/// One vCPU's elisa state. See the file header.
#[repr(C)]
pub(crate) struct VcpuState {
    /// What the exit trampoline touches; first, at the address the shim's per-CPU
    /// `elisa_hook_cur` holds.
    pub(crate) hook: ExitHook,
    /// KVM's `vcpu_idx`.
    pub(crate) idx: u32,
    /// The id of the VM's attachment, for the kernel log.
    vm: u64,
    /// The kernel-log budget of the VM's attachment (`VmRecord::guest_log`), for the lines
    /// the guest or its VMM can cause once per vCPU: the record owns it and frees its
    /// states before itself.
    log: *const shim::VmLog,
    /// The list page; `None` once quarantined (`quarantine`: never freed then).
    list: Option<HeldPage>,
    /// The list page's kernel address: 512 entries, each read and written whole.
    list_va: *const AtomicU64,
    pub(crate) list_pa: u64,
    /// The view of the excursion parked at the last exit (`VIEW_SUB`, or a gate's index),
    /// or `VIEW_DEFAULT` when none is.
    pub(crate) view: AtomicU16,
    /// The gate slot of the parked excursion.
    view_slot: AtomicU8,
    /// Whether the vCPU's CPUID exposes CET: `CET_UNKNOWN` until the vCPU has run (KVM
    /// freezes the CPUID then), `CET_NO` or `CET_YES` after.
    cet: AtomicU8,
    /// [`VcpuState::disarm`] ran (detach, process context only).
    disarmed: AtomicBool,
    /// The gate and sub views of this vCPU per granted service (gate slot); each set
    /// once, freed with the state.
    gates: [AtomicPtr<VcpuGate>; MAX_GATES],
    /// Bit `n`: `gates[n]` is published.
    gate_mask: AtomicU8,
    /// Bit `n`: `gates[n]`'s service entry does not start with `ENDBR64`.
    no_endbr_mask: AtomicU8,
    /// Bit `n`: `gates[n]` is a user grant's (callers at CPL 3).
    user_mask: AtomicU8,
    /// Why the last entry kept gates closed (`elisa_core::entry::NOTE_*`), for the log
    /// lines that say so once per change. Written by the entry hook only.
    notes: AtomicU8,
    /// Bit `n`: list entry `gate_index(n)` holds `gates[n]`'s EPTP (the gate is open); the
    /// other gates' entries are 0. Written by the entry hook only.
    open_mask: AtomicU8,
    /// Counters, for debugfs.
    pub(crate) entries: AtomicU64,
    /// Twice the roots KVM loaded since attach (`list0_updates`), plus one while the entry
    /// probe writes a new root into list entry 0 and `list0`: a views dump that saw it
    /// change, or odd, takes its snapshot again.
    list0_seq: AtomicU64,
    /// The excursion parked at the last exit, when `view` is not `VIEW_DEFAULT`.
    parked: Parked,
    /// Exits in the gate or sub view that parked the excursion (asynchronous ones).
    pub(crate) view_exits: AtomicU64,
    /// Parked excursions resumed at the next entry.
    pub(crate) resumes: AtomicU64,
    /// Parked excursions not resumed: the call was failed back (`-EINTR`).
    pub(crate) failbacks: AtomicU64,
    /// Why the last one was not resumed (`FAILBACK_*` bits; bits 8-15: 1 + the index in
    /// `park_context` of the first value that changed), for debugfs.
    pub(crate) failback_why: AtomicU64,
    /// Entries whose previous entry had no exit (a failed VM entry: KVM skips `kvm_exit`).
    pub(crate) unpaired: AtomicU64,
    /// Synchronous exits in the gate or sub view (each ends the run).
    pub(crate) faults: AtomicU64,
    /// Entries that found in `EPT_POINTER` neither KVM's root nor one of this state's
    /// views, and put KVM's root there (`root_changed`).
    pub(crate) foreign_roots: AtomicU64,
    /// The kernel-log line of this vCPU's first broken excursion, still to be printed
    /// (`NOTE_PENDING` and the exit reason; 0 when none): the exit trampoline may not
    /// print, so its next entry or detach does (`print_note`).
    broken_note: AtomicU64,
    /// The failed-back `RIP` of that broken excursion: another at the next entry means the
    /// VMM changed the vCPU, and the run it starts is its own.
    broken_rip: AtomicU64,
    /// Its debugfs file `vcpu<n>-views` was made (`registry::add_views_file`).
    pub(crate) views_file: AtomicBool,
}

// SAFETY: `vcpu` is `Send` and `Sync`; `list_va` points into the owned page; `log` into
// the record, which outlives the state and only reads it through atomics; everything else
// is atomics, and the gate is only read after it was published.
unsafe impl Send for VcpuState {}
// SAFETY: as above; shared access only goes through atomics.
unsafe impl Sync for VcpuState {}

impl Drop for VcpuState {
    fn drop(&mut self) {
        // The views may be cached on any CPU the vCPU ran on: every CPU drops them (one
        // IPI for all of this vCPU's views) before their pages are freed with the gates. A
        // record's drop has done so for all its vCPUs at once (no gate is left here then,
        // and the empty batch sends nothing).
        let mut batch = InveptBatch::new();
        self.add_views(&mut batch);
        batch.flush();
        self.free_gates_flushed();
        // A call parked when the VM detached: its registers are the service's (region
        // data), not left behind in freed memory.
        for r in self.parked.regs.iter() {
            r.store(0, Relaxed);
        }
    }
}

/// The guest state a parked excursion is compared on: `vmx::PARK_CONTEXT`,
/// `vmx::PARK_CET`, then [`VcpuState::park_extra`].
const PARK_LEN: usize = vmx::PARK_CONTEXT.len() + vmx::PARK_CET.len() + 6;

/// `VcpuState::shutdown_pending`.
/// `VcpuState::broken_note` holds a line to print.
const NOTE_PENDING: u64 = 1 << 32;

const SHUT_NONE: u8 = 0;
const SHUT_ENTRY: u8 = 1;
const SHUT_EXIT: u8 = 2;

/// `VcpuState::cet`.
const CET_UNKNOWN: u8 = 0;
const CET_NO: u8 = 1;
const CET_YES: u8 = 2;

impl VcpuState {
    /// `quiesce` gave up on this vCPU: an entry failed without an exit (KVM skips
    /// `kvm_exit` on a VMfail, and a VMM can cause one: `Documentation/security.rst`) and
    /// the vCPU has not entered since, so its VMCS may still enable VM functions with this
    /// list, or even hold a view's EPTP. Made harmless without the VMCS, while the record
    /// is still linked (an entry meanwhile takes elisa's settings out itself, `on_entry`),
    /// so that no entry after the unlink can find them live: every list entry becomes 0
    /// (a VMFUNC to any index then exits, and KVM injects #UD), and every view's root
    /// table is emptied and INVEPT'd (a vCPU left in a view faults and reaches no page).
    /// Nothing sets them again: the record is detaching. The views go into `batch`: they
    /// are inert once it is flushed, one broadcast for all the states a detach disarms
    /// (not one per gate, each of which makes every running guest on the host exit).
    /// Process context.
    pub(crate) fn disarm(&self, batch: &mut InveptBatch) {
        self.disarmed.store(true, Relaxed);
        self.clear_list();
        for g in (0..MAX_GATES).filter_map(|n| self.gate(n)) {
            g.empty_roots(batch);
        }
    }

    /// Every EPTP list entry 0: a VMFUNC to any index exits, and KVM injects #UD.
    fn clear_list(&self) {
        for i in 0..EPTP_LIST_LEN {
            self.set_list_entry(i, 0);
        }
    }

    /// Adds the views of every gate of this state to `batch`, for
    /// [`VcpuState::free_gates_flushed`] once it is flushed.
    pub(crate) fn add_views(&self, batch: &mut InveptBatch) {
        for g in (0..MAX_GATES).filter_map(|n| self.gate(n)) {
            batch.add(g);
        }
    }

    /// Frees the gates of a state being dropped, whose views every CPU has dropped since
    /// they were last usable: added by [`VcpuState::add_views`] to a batch flushed after
    /// the record was unlinked (no entry into them since), by the state's own drop or, for
    /// all of a record's vCPUs at once, by the record's.
    pub(crate) fn free_gates_flushed(&self) {
        for slot in self.gates.iter() {
            let g = slot.swap(null_mut(), Acquire);
            if !g.is_null() {
                // SAFETY: published by `set_gate` from `KBox::into_raw`; taken out of the
                // state here, so only freed here.
                drop(unsafe { KBox::from_raw(g) });
            }
        }
    }

    /// After `disarm`, when no entry has taken elisa's settings out of the VMCS since: the
    /// pages a VMCS may still name, the list and the view roots, are quarantined (emptied,
    /// and never freed). Everything else, the views' other pages and the services they
    /// hold, goes with the state. Returns the pages quarantined. Process context.
    pub(crate) fn quarantine(mut self: KBox<Self>) -> usize {
        // Detach disarmed every state it gave up on, and only those can still be in the
        // guest now (an entry of a detaching VM sets `in_guest` and clears it before its
        // probe returns, and the probes have been waited for): the views are not emptied
        // and flushed again, unless that rule is ever broken. The list is cleared again
        // regardless (plain stores): an entry hook that was under way when quiesce gave
        // up, and had seen the VM attached, may have written gate entries after the
        // disarm before its entry failed (roots stay empty: no entry writes them).
        if self.disarmed.load(Relaxed) {
            self.clear_list();
        } else {
            let mut batch = InveptBatch::new();
            self.disarm(&mut batch);
            batch.flush();
        }
        let mut n = 0;
        for slot in self.gates.iter() {
            let g = slot.swap(null_mut(), Acquire);
            if !g.is_null() {
                // SAFETY: published by `set_gate` from `KBox::into_raw`; taken out of the
                // state here, so only freed here.
                let mut g = unsafe { KBox::from_raw(g) };
                n += g.quarantine_roots();
            }
        }
        if let Some(list) = self.list.take() {
            list.quarantine();
            n += 1;
        }
        n
    }

    /// Allocates the state and its EPTP list. With `GFP_NOWAIT` from the entry hook,
    /// `GFP_KERNEL` from a grant (both accounted).
    /// The state of vCPU `idx` of the VM whose attachment has id `vm` and log budget `log`,
    /// which must outlive the state (the record's own).
    pub(crate) fn new(
        vcpu: KvmVcpu,
        idx: u32,
        vm: u64,
        log: &shim::VmLog,
        flags: Flags,
    ) -> Result<KBox<Self>> {
        let list = HeldPage::alloc(flags)?;
        // SAFETY: `list` is a valid, allocated page.
        let list_pa = unsafe { shim::elisa_shim_page_to_phys(list.as_ptr().cast()) };
        // SAFETY: as above; an order-0 page from the kernel's allocator without
        // __GFP_HIGHMEM is in the direct map.
        let list_va = unsafe { shim::elisa_shim_page_address(list.as_ptr().cast()) };
        Ok(KBox::new(
            VcpuState {
                hook: ExitHook {
                    list0: AtomicU64::new(0),
                    exits: AtomicU64::new(0),
                    vcpu,
                    vmcs: AtomicU64::new(0),
                    in_guest: AtomicBool::new(false),
                    resumed_unconfirmed: AtomicBool::new(false),
                    shutdown_pending: AtomicU8::new(SHUT_NONE),
                },
                idx,
                vm,
                log,
                list: Some(list),
                list_va: list_va.cast_const().cast(),
                list_pa,
                view: AtomicU16::new(VIEW_DEFAULT),
                view_slot: AtomicU8::new(0),
                cet: AtomicU8::new(CET_UNKNOWN),
                disarmed: AtomicBool::new(false),
                gates: [const { AtomicPtr::new(null_mut()) }; MAX_GATES],
                gate_mask: AtomicU8::new(0),
                no_endbr_mask: AtomicU8::new(0),
                user_mask: AtomicU8::new(0),
                notes: AtomicU8::new(0),
                open_mask: AtomicU8::new(0),
                entries: AtomicU64::new(0),
                list0_seq: AtomicU64::new(0),
                parked: Parked {
                    regs: [const { AtomicU64::new(0) }; NR_GPRS],
                    rip: AtomicU64::new(0),
                    rflags: AtomicU64::new(0),
                    list1: AtomicU64::new(0),
                    fb: [const { AtomicU64::new(0) }; 4],
                    skip: AtomicU64::new(0),
                    context: [const { AtomicU64::new(0) }; PARK_LEN],
                    idt_emptied: AtomicBool::new(false),
                    idtr: [const { AtomicU64::new(0) }; 2],
                    fb_idtr: [const { AtomicU64::new(0) }; 2],
                },
                view_exits: AtomicU64::new(0),
                resumes: AtomicU64::new(0),
                failbacks: AtomicU64::new(0),
                failback_why: AtomicU64::new(0),
                unpaired: AtomicU64::new(0),
                faults: AtomicU64::new(0),
                foreign_roots: AtomicU64::new(0),
                broken_note: AtomicU64::new(0),
                broken_rip: AtomicU64::new(0),
                views_file: AtomicBool::new(false),
            },
            flags,
        )?)
    }

    fn slot(&self, i: usize) -> Option<&AtomicU64> {
        if i < EPTP_LIST_LEN {
            // SAFETY: `list_va` is the address of the 4 KiB list page, which lives as long as
            // `self` (owned, or quarantined: never freed); `i < 512`, and the page is only
            // accessed as aligned u64s.
            Some(unsafe { &*self.list_va.add(i) })
        } else {
            None
        }
    }

    /// Reads entry `i` of the EPTP list (0 when out of range).
    pub(crate) fn list_entry(&self, i: usize) -> u64 {
        let _ = &self.list;
        self.slot(i).map_or(0, |s| s.load(Relaxed))
    }

    fn set_list_entry(&self, i: usize, val: u64) {
        if let Some(s) = self.slot(i) {
            s.store(val, Release);
        }
    }

    /// The vCPU's gate in slot `slot`, once granted.
    pub(crate) fn gate(&self, slot: usize) -> Option<&VcpuGate> {
        let g = self.gates.get(slot)?.load(Acquire);
        // SAFETY: a published gate lives until `self` is dropped.
        (!g.is_null()).then(|| unsafe { &*g })
    }

    /// The views dump of this vCPU (debugfs `vcpu<n>-views`): one dump per gate, by slot.
    /// Process context.
    pub(crate) fn dump_views(&self) -> Result<KVVec<u8>> {
        // A grant that publishes a gate, or a new KVM root, during the dump would mix two
        // states (a gate the headers lack, a list entry 0 other than the one recorded):
        // dump again until neither changed meanwhile, a few times, else EAGAIN.
        for _ in 0..4 {
            let seq = self.list0_seq.load(Acquire);
            let mask = self.gate_mask.load(Acquire);
            // KVM's root as the entry hook last saw it, not as the list holds it: the
            // check compares the two.
            let list0 = self.hook.list0.load(Relaxed);
            if seq & 1 != 0 {
                continue;
            }
            let out = self.dump_gates(mask, list0)?;
            fence(Acquire);
            if self.gate_mask.load(Relaxed) == mask && self.list0_seq.load(Relaxed) == seq {
                return Ok(out);
            }
        }
        Err(EAGAIN)
    }

    /// The dumps of the gates of `mask`, with `list0` as the vCPU's list entry 0.
    fn dump_gates(&self, mask: u8, list0: u64) -> Result<KVVec<u8>> {
        let mut out = KVVec::new();
        // Entry k: gate index 511 - k, which is slot k (`gate_index`).
        let mut eptps = [[0u64; 2]; MAX_GATES];
        for (slot, g) in self.gates_of(mask) {
            if let Some(e) = eptps.get_mut(slot) {
                *e = [g.gate_eptp, g.sub_eptp];
            }
        }
        for (_, g) in self.gates_of(mask) {
            g.dump(&|i| self.list_entry(i), list0, &eptps, &mut out)?;
        }
        Ok(out)
    }

    /// KVM roots loaded since attach, for debugfs.
    pub(crate) fn list0_updates(&self) -> u64 {
        self.list0_seq.load(Relaxed) / 2
    }

    /// Every published gate, with its slot.
    pub(crate) fn each_gate(&self) -> impl Iterator<Item = (usize, &VcpuGate)> {
        self.gates_of(self.gate_mask.load(Acquire))
    }

    /// The gates of the slots in `mask` (published ones: a gate, once set, stays until the
    /// state is freed), with their slots.
    fn gates_of(&self, mask: u8) -> impl Iterator<Item = (usize, &VcpuGate)> {
        (0..MAX_GATES)
            .filter(move |n| mask & (1 << n) != 0)
            .filter_map(|n| Some((n, self.gate(n)?)))
    }

    /// Publishes the vCPU's gate of slot `slot` (built completely beforehand) in VM number
    /// `vm` (for the log). Fails if that slot has one already. Process context.
    ///
    /// The list entry is not written here: only the entry hook opens a gate, after its
    /// checks of the guest's mode (EFER.LMA, CR4.LA57: R11), at the vCPU's next entry; the caller
    /// kicks the vCPU so that a running one enters again soon.
    pub(crate) fn set_gate(
        &self,
        slot: usize,
        g: KBox<VcpuGate>,
        vm: u64,
    ) -> core::result::Result<(), KBox<VcpuGate>> {
        let Some(cell) = self.gates.get(slot) else {
            return Err(g);
        };
        let endbr = g.service_endbr();
        let user = g.privilege() == CallerPrivilege::User;
        let p = KBox::into_raw(g);
        match cell.compare_exchange(null_mut(), p, AcqRel, Acquire) {
            Ok(_) => {
                if user {
                    self.user_mask.fetch_or(1 << slot, SeqCst);
                }
                if !endbr {
                    self.no_endbr_mask.fetch_or(1 << slot, SeqCst);
                    // `check_cet` warns of gates published before it cached the CPUID,
                    // this of those after (SeqCst on both sides: one of them sees the
                    // other).
                    if self.cet.load(SeqCst) == CET_YES {
                        warn_cet_closed(vm, self.idx);
                    }
                }
                // The caller flushed the views' EPTPs on every CPU (`grant.rs`). The list
                // entry is read by the CPU at each VMFUNC, not cached.
                self.gate_mask.fetch_or(1 << slot, AcqRel);
                Ok(())
            }
            // SAFETY: not published; `p` came from `into_raw` just above.
            Err(_) => Err(unsafe { KBox::from_raw(p) }),
        }
    }

    /// Frames held by all gates, for debugfs.
    pub(crate) fn gate_frames(&self) -> usize {
        self.each_gate().map(|(_, g)| g.frame_count()).sum()
    }

    /// Whether `eptp` is the EPTP of one of this vCPU's gate or sub views.
    fn is_view_eptp(&self, eptp: u64) -> bool {
        self.each_gate()
            .any(|(_, g)| eptp == g.gate_eptp || eptp == g.sub_eptp)
    }
    /// The kernel-log budget of the VM's attachment.
    fn log(&self) -> &shim::VmLog {
        // SAFETY: `log` is the record's budget (`new`), and the record frees its states
        // before itself (`VmRecord::drop`).
        unsafe { &*self.log }
    }

    /// The entry hook: put elisa's settings into the VMCS for this run of the guest, with
    /// list entry 0 equal to the root KVM has just loaded, and resume a parked excursion
    /// when nothing touched it. Atomic context; `was_in_guest` says that the previous entry
    /// had no exit. The common case (same root, same gate mode, nothing parked) stays
    /// in this function; the rest is out of line.
    /// `log`: the VM's budget for the lines the guest's state causes. Returns false when
    /// the VMCS cannot be read (no VMCS is current: a host shutdown, "Host shutdown" in
    /// design.rst): then nothing was written, and no exit trampoline may be installed.
    #[must_use]
    pub(crate) fn enter(
        &self,
        vmcs: &vmx::CurrentVmcs,
        was_in_guest: bool,
        log: &shim::VmLog,
    ) -> bool {
        self.entries.fetch_add(1, Relaxed);
        if was_in_guest {
            self.note_unpaired(vmcs);
        }
        if self.hook.shutdown_pending.load(Relaxed) == SHUT_ENTRY {
            self.entry_after_broken(vmcs);
        }
        let Some(ctl2) = vmcs.read(vmx::SECONDARY_VM_EXEC_CONTROL) else {
            return false;
        };
        // At every exit elisa puts KVM's root back, so EPT_POINTER is KVM's current root
        // here; a different value means KVM loaded a new one (memslot change, MMU reset).
        let eptp = vmcs.read_or_zero(vmx::EPT_POINTER);
        if eptp != self.hook.list0.load(Relaxed) {
            self.root_changed(vmcs, eptp);
        }
        let ctl2 = ctl2 | vmx::SECONDARY_EXEC_ENABLE_VMFUNC;
        // Every entry (vmx.rs): never trust what a VMCS kept from an earlier attachment.
        vmcs.write(vmx::EPTP_LIST_ADDRESS, self.list_pa);
        vmcs.write(vmx::VM_FUNCTION_CONTROL, vmx::VMFUNC_EPTP_SWITCHING);
        vmcs.write(vmx::SECONDARY_VM_EXEC_CONTROL, ctl2);
        let mask = self.gate_mask.load(Acquire);
        if mask != 0 {
            // Which gates may be open for the state KVM enters with (the reasons are
            // `elisa_core::entry`'s). A failed read (0, which cannot happen with a VMCS
            // current) leaves the gates closed, except for the CR4, DEBUGCTL and DR7
            // reads, whose 0 closes nothing by itself: the others still decide.
            let state = EntryState {
                cr4: vmcs.read_or_zero(vmx::GUEST_CR4),
                debugctl: vmcs.read_or_zero(vmx::GUEST_IA32_DEBUGCTL),
                cpu_based: vmcs.read_or_zero(vmx::CPU_BASED_VM_EXEC_CONTROL),
                dr7: vmcs.read_or_zero(vmx::GUEST_DR7),
                secondary: ctl2,
                efer: self.hook.vcpu.efer(),
                pebs_enable: self.hook.vcpu.pebs_enable(),
            };
            let gates = Gates {
                granted: mask,
                no_endbr: self.no_endbr_mask.load(Acquire),
                user: self.user_mask.load(Acquire),
            };
            let notes = self.notes.load(Relaxed);
            let d = entry::decide(&state, gates, notes, || self.cet_exposed(log));
            if d.notes != notes {
                self.note_changes(notes, d.notes, state.cr4, log);
            }
            if d.open != self.open_mask.load(Relaxed) {
                self.set_open_gates(d.open);
            }
        }
        if self.view.load(Relaxed) != VIEW_DEFAULT {
            self.resume_parked(vmcs);
        }
        true
    }

    /// Whether the VMM exposed CET (shadow stacks or IBT) to this vCPU. The guest can then
    /// turn IBT on with no exit (KVM leaves CR4.CET guest-owned and passes `S_CET`
    /// through), and the sub view's indirect call to a service entry without ENDBR64 would
    /// raise a #CP, delivered through descriptor tables the guest can place in a region or
    /// on the sub stack. So such a vCPU opens only the gates of services whose entry starts
    /// with ENDBR64. (Supervisor shadow stacks fail safe: no page of the views is a
    /// shadow-stack page, read-only leaves being clean, so a shadow-stack access faults and
    /// the VM ends.)
    fn cet_exposed(&self, log: &shim::VmLog) -> bool {
        match self.cet.load(Relaxed) {
            CET_NO => false,
            CET_YES => true,
            _ => self.check_cet(log),
        }
    }

    #[cold]
    #[inline(never)]
    fn check_cet(&self, log: &shim::VmLog) -> bool {
        let yes = self.hook.vcpu.cet_exposed();
        // From the second entry on the vCPU has run, and KVM refuses another CPUID.
        if self.entries.load(Relaxed) >= 2 {
            self.cet.store(if yes { CET_YES } else { CET_NO }, SeqCst);
            if yes && self.no_endbr_mask.load(SeqCst) != 0 {
                warn_cet_closed(log.vm, self.idx);
            }
        }
        yes
    }

    /// The reasons why gates stay closed changed from `prev` to `now`
    /// (`elisa_core::entry::NOTE_*`): each one that appeared is logged, once per change.
    #[cold]
    #[inline(never)]
    fn note_changes(&self, prev: u8, now: u8, cr4: u64, log: &shim::VmLog) {
        self.notes.store(now, Relaxed);
        let new = now & !prev;
        if new & entry::NOTE_CR4_UNKNOWN != 0 {
            pr_info_vm!(
                log,
                "vm {}: vcpu {}: the guest runs with CR4 bits {:#x}, whose effect on elisa's views is not known (FRED, LASS, PKS, ...): its gates stay closed (Documentation/security.rst)\n",
                log.vm,
                self.idx,
                cr4 & !CR4_ANALYSED
            );
        }
        if new & entry::NOTE_USER_CLOSED != 0 {
            pr_info_vm!(
                log,
                "vm {}: vcpu {}: the guest runs without SMAP or with PCIDs (CR4.PCIDE): the gates of user grants stay closed (Documentation/security.rst)\n",
                log.vm,
                self.idx
            );
        }
        if new & entry::NOTE_DESC_CLOSED != 0 {
            pr_info_vm!(
                log,
                "vm {}: vcpu {}: KVM emulates UMIP for the guest (CR4.UMIP on a CPU without UMIP: descriptor-table instructions exit): the gates of supervisor grants stay closed; hide UMIP from the guest's CPUID (Documentation/admin-guide.rst)\n",
                log.vm,
                self.idx
            );
        }
    }

    /// An entry whose previous entry had no exit (a failed VM entry).
    #[cold]
    #[inline(never)]
    fn note_unpaired(&self, vmcs: &vmx::CurrentVmcs) {
        if self.end_failed_resume(vmcs) {
            // Requested at the next exit that interrupted no delivery (a request made now
            // would be pending if this run's exit re-queued an event: `end_broken`).
            self.hook.shutdown_pending.store(SHUT_EXIT, Relaxed);
        }
        // The failed entry may have resumed an excursion parked between the gate's PUSHFQ
        // and its flags slot check, which then never ran: the list is written again.
        self.scrub_views();
        if self.unpaired.fetch_add(1, Relaxed) == 0 {
            // Once per vCPU, within the VM's budget (its VMM can cause it on each vCPU).
            pr_warn_vm!(
                self.log(),
                "vm {}: vcpu {}: an entry without an exit (a failed VM entry); elisa's VMCS fields are written again\n",
                self.vm,
                self.idx
            );
        }
    }

    /// At an entry after one that failed without an exit: if the failed entry
    /// resumed an excursion (`resumed_unconfirmed`; not read off `EPT_POINTER`, which KVM
    /// rewrites before this probe when it loads a new root), KVM's copies hold its
    /// registers and `RIP`. The guest never runs with them in the default view: they get
    /// a broken excursion's state (`FailBack::broken`), and true is returned. (The VMM may
    /// have read them in between: `security.rst`. No VM entry failure is known to follow a
    /// resume, whose checks refuse an event being injected.) Atomic context.
    fn end_failed_resume(&self, vmcs: &vmx::CurrentVmcs) -> bool {
        if !self.hook.resumed_unconfirmed.swap(false, Relaxed) {
            return false;
        }
        let g = self
            .gate(self.view_slot.load(Relaxed) as usize)
            .map(|g| g.entry_gva);
        self.install(vmcs, &FailBack::broken(g, 0, self.parked.fb_idtr()));
        self.hook.vcpu.clear_cr2();
        true
    }

    /// `EPT_POINTER` is not list entry 0 at entry: KVM loaded a new root, or one of elisa's
    /// own EPTPs is left over from an entry that failed after elisa resumed an excursion
    /// (never taken for KVM's root).
    #[cold]
    #[inline(never)]
    fn root_changed(&self, vmcs: &vmx::CurrentVmcs, eptp: u64) {
        if self.is_view_eptp(eptp) {
            vmcs.write(vmx::EPT_POINTER, self.hook.list0.load(Relaxed));
        } else {
            // Only KVM's current root becomes list entry 0. Another EPTP here was left by a
            // failed entry of an earlier attachment (a quarantined view root of a state
            // this one does not know, with a view's flags): KVM's EPTP goes in its place,
            // built as KVM builds it (its walk length and A/D bits, not the stray one's).
            // Where the root is KVM's, the two are compared: a difference would mean the
            // shim builds EPTPs unlike this kernel's KVM (logged once).
            let eptp = match self.hook.vcpu.root_eptp() {
                Some(kvm) if kvm & EPT_ADDR_MASK != eptp & EPT_ADDR_MASK => {
                    vmcs.write(vmx::EPT_POINTER, kvm);
                    self.foreign_roots.fetch_add(1, Relaxed);
                    kvm
                }
                Some(kvm) if kvm != eptp => {
                    warn_eptp_unlike_kvm(kvm, eptp);
                    eptp
                }
                _ => eptp,
            };
            // A sequence count for the views dump (`dump_views`), as a seqlock's writer.
            self.list0_seq.fetch_add(1, Relaxed);
            fence(Release);
            self.set_list_entry(0, eptp);
            self.hook.list0.store(eptp, Relaxed);
            self.list0_seq.fetch_add(1, Release);
        }
    }

    /// An excursion ended without the gate's own checks having run to their end (a broken
    /// excursion, or a parked one failed back): it may have stored RFLAGS images of the
    /// guest's choosing at any byte of the EPTP list or the gate stack (a landing on the
    /// gate's `PUSHFQ` with the guest's `RSP`; shifted by a few bytes such an image can be
    /// a valid EPTP, which a later `VMFUNC` would load: `gate-protocol.rst`). Every list
    /// entry is written again with what elisa put there (KVM's root, 0, the open gates)
    /// and the gate stacks are zeroed, before the guest runs again. Atomic context; rare
    /// (the VM ends, or the call returns `-EINTR`).
    #[cold]
    #[inline(never)]
    fn scrub_views(&self) {
        // The vCPU is in this probe, so no VMFUNC reads the list meanwhile: the gate
        // entries may be 0 for a moment before `set_open_gates` writes them again.
        self.set_list_entry(0, self.hook.list0.load(Relaxed));
        for i in 1..EPTP_LIST_LEN {
            self.set_list_entry(i, 0);
        }
        self.set_open_gates(self.open_mask.load(Relaxed));
        for (_, g) in self.each_gate() {
            g.scrub_stack();
        }
    }

    /// Opens the gates in `open` (their list entries get their gate views' EPTPs) and
    /// closes the others (0).
    #[cold]
    #[inline(never)]
    fn set_open_gates(&self, open: u8) {
        for (slot, g) in self.each_gate() {
            let want = if open & (1 << slot) != 0 {
                g.gate_eptp
            } else {
                0
            };
            self.set_list_entry(gate_index(slot), want);
        }
        self.open_mask.store(open, Relaxed);
    }

    /// An excursion was parked at the last exit: resume it, or leave it failed back.
    #[cold]
    #[inline(never)]
    fn resume_parked(&self, vmcs: &vmx::CurrentVmcs) {
        let view = self.view.swap(VIEW_DEFAULT, Relaxed);
        if view != VIEW_DEFAULT {
            self.resume(vmcs, view);
        }
    }

    /// Resumes the excursion parked in `view` if nothing touched the vCPU since (file
    /// header); otherwise it stays failed back.
    fn resume(&self, vmcs: &vmx::CurrentVmcs, view: u16) {
        let slot = self.view_slot.load(Relaxed) as usize;
        let p = &self.parked;
        let fb = [0, 1, 2, 3].map(|i| p.fb[i].load(Relaxed));
        let [fb_rip, fb_rsp, fb_rdx, fb_rflags] = fb;
        let skip = p.skip.load(Relaxed);
        let gpr_ok = Gpr::ALL.iter().all(|&r| {
            let want = match r {
                Gpr::Rsp => fb_rsp,
                Gpr::Rdx => fb_rdx,
                _ => 0,
            };
            self.hook.vcpu.gpr(r) == want
        });
        let mut changed = 0;
        let context_ok = self.park_context(vmcs, |i, now| {
            let same = p
                .context
                .get(i)
                .is_some_and(|then| then.load(Relaxed) == now);
            if !same {
                changed = i as u64 + 1;
            }
            same
        });
        let injecting = vmcs
            .read(vmx::VM_ENTRY_INTR_INFO_FIELD)
            .is_none_or(|i| i & vmx::INTR_INFO_VALID != 0);
        // Only while the gate is open (this entry's checks of the guest's mode, its
        // branch recording, debug registers, PEBS and CET passed) and its list entry holds
        // it, for either view.
        let open = self.open_mask.load(Relaxed) & (1 << slot) != 0;
        let target = self.gate(slot).filter(|_| open).and_then(|g| match view {
            VIEW_SUB => Some(g.sub_eptp),
            _ if self.list_entry(gate_index(slot)) == g.gate_eptp => Some(g.gate_eptp),
            _ => None,
        });
        let why = [
            (!gpr_ok, FAILBACK_GPRS),
            (!context_ok, FAILBACK_CONTEXT),
            (injecting, FAILBACK_EVENT),
            // KVM's copy is the stub; the VMCS holds it too, or, after an exit whose
            // handler moved KVM's copy on, still what elisa installed (`park`).
            (
                vmcs.read(vmx::GUEST_RIP)
                    .is_none_or(|r| r != fb_rip && r != fb_rip.wrapping_sub(skip))
                    || self.hook.vcpu.rip() != fb_rip,
                FAILBACK_RIP,
            ),
            (vmcs.read(vmx::GUEST_RSP) != Some(fb_rsp), FAILBACK_RSP),
            (
                vmcs.read(vmx::GUEST_RFLAGS) != Some(fb_rflags),
                FAILBACK_RFLAGS,
            ),
            (target.is_none(), FAILBACK_CLOSED),
            // A call that entered with IF = 1 (the gate refuses it): resumed in the gate
            // view, an interrupt KVM posted meanwhile (APICv) would be delivered there with
            // no exit, through the guest's IDT, which the gate view does not map: a triple
            // fault. Failed back, it is delivered in the default view.
            (
                view != VIEW_SUB && fb_rflags & RFLAGS_IF != 0,
                FAILBACK_IF_GATE,
            ),
        ]
        .iter()
        .filter(|(failed, _)| *failed)
        .fold(0, |w, (_, bit)| w | bit);
        let Some(eptp) = target.filter(|_| why == 0) else {
            // The call stays failed back; the parked registers are never used again.
            self.failbacks.fetch_add(1, Relaxed);
            self.failback_why.store(why | changed << 8, Relaxed);
            for r in p.regs.iter() {
                r.store(0, Relaxed);
            }
            self.scrub_views();
            return;
        };
        for (&r, v) in Gpr::ALL.iter().zip(p.regs.iter()) {
            self.hook.vcpu.set_gpr(r, v.swap(0, Relaxed));
        }
        let rip = p.rip.load(Relaxed);
        vmcs.write(vmx::GUEST_RSP, self.hook.vcpu.gpr(Gpr::Rsp));
        vmcs.write(vmx::GUEST_RIP, rip);
        vmcs.write(vmx::GUEST_RFLAGS, p.rflags.load(Relaxed));
        if p.idt_emptied.load(Relaxed) {
            vmcs.write(vmx::GUEST_IDTR_BASE, p.idtr[0].load(Relaxed));
            vmcs.write(vmx::GUEST_IDTR_LIMIT, p.idtr[1].load(Relaxed));
        }
        self.hook.vcpu.set_rip(rip);
        self.set_list_entry(VIEW_SUB as usize, p.list1.load(Relaxed));
        vmcs.write(vmx::EPT_POINTER, eptp);
        self.resumes.fetch_add(1, Relaxed);
        self.hook.resumed_unconfirmed.store(true, Relaxed);
    }

    /// Prints the line a broken excursion left (`end_broken`), within the VM's budget. At
    /// the vCPU's entry (its probe, where printing is allowed) and at detach.
    pub(crate) fn print_note(&self) {
        if self.broken_note.load(Relaxed) != 0 {
            self.print_note_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn print_note_slow(&self) {
        let n = self.broken_note.swap(0, Relaxed);
        if n & NOTE_PENDING != 0 {
            pr_warn_vm!(
                self.log(),
                "vm {}: vcpu {}: exit (reason {:#x}) inside the gate or sub view: the run ends with KVM_EXIT_SHUTDOWN\n",
                self.vm,
                self.idx,
                n & 0xffff_ffff
            );
        }
    }

    /// The exit trampoline's rare path (an exit in a view, or a broken excursion's end
    /// still to come): take elisa's settings out of the VMCS again, and park or end an
    /// excursion the exit interrupted. The trampoline has counted the exit and cleared
    /// `resumed_unconfirmed`. Atomic context, before KVM's exit path: nothing here may
    /// lock, sleep, print or use RCU (`elisa_exit_slow` in the shim).
    pub(crate) fn exit(&self, vmcs: &vmx::CurrentVmcs) {
        if !self.hook.in_guest.load(Relaxed) {
            return;
        }
        if self.hook.shutdown_pending.load(Relaxed) != SHUT_NONE {
            self.shutdown_deferred(vmcs);
        }
        let list0 = self.hook.list0.load(Relaxed);
        // A failed read (0, which cannot happen with a VMCS current) is handled as an exit
        // in an unknown view: the run ends.
        let e = vmcs.read_or_zero(vmx::EPT_POINTER);
        if e != list0 {
            self.exit_in_view(vmcs, e, list0);
        }
        // What the VMCS holds, less VM functions: KVM does not change the controls while
        // the guest runs, so this is what it wrote (a state left behind by a failed entry
        // never writes back an older copy).
        if let Some(ctl2) = vmcs.read(vmx::SECONDARY_VM_EXEC_CONTROL) {
            vmcs.write(
                vmx::SECONDARY_VM_EXEC_CONTROL,
                ctl2 & !vmx::SECONDARY_EXEC_ENABLE_VMFUNC,
            );
        }
        self.hook.in_guest.store(false, Release);
    }

    /// The exit left a view (`EPT_POINTER` = `e`, not KVM's root `list0`): put KVM's root
    /// back, then park the excursion or end it (file header).
    #[cold]
    #[inline(never)]
    fn exit_in_view(&self, vmcs: &vmx::CurrentVmcs, e: u64, list0: u64) {
        // Neither KVM's root of the last entry nor a view: an EPTP from a list entry elisa
        // did not write (a service may write the list). Never left in the VMCS, where the
        // next entry would take it for a root KVM loaded: KVM's root goes back, and the run
        // ends below. (A state that an entry which failed left in the shim's per-CPU
        // variable cannot get here: detach forgets them before it unregisters the probes.)
        vmcs.write(vmx::EPT_POINTER, list0);
        let in_view = self.each_gate().find_map(|(slot, g)| {
            if e == g.gate_eptp {
                Some((slot, g, gate_index(slot) as u16))
            } else if e == g.sub_eptp {
                Some((slot, g, VIEW_SUB))
            } else {
                None
            }
        });
        match in_view {
            Some((slot, g, v)) => match parkable(vmcs, v == VIEW_SUB) {
                Some(skip) => self.park(vmcs, slot, g, v, skip),
                None => {
                    let idtr = self.interrupted(vmcs, g, v).guest_idtr();
                    self.end_broken(vmcs, Some(g), idtr)
                }
            },
            None => self.end_broken(vmcs, None, None),
        }
    }

    /// Takes elisa's settings out of the current VMCS (VM functions off, KVM's root) without
    /// an exit: for an entry that finds the VM detaching after an entry that failed. Atomic
    /// context.
    pub(crate) fn scrub(&self, vmcs: &vmx::CurrentVmcs) {
        // No end of the run is requested: no exit follows (as
        // `entry_detaching_after_broken`).
        self.end_failed_resume(vmcs);
        if let Some(ctl2) = vmcs.read(vmx::SECONDARY_VM_EXEC_CONTROL) {
            vmcs.write(
                vmx::SECONDARY_VM_EXEC_CONTROL,
                ctl2 & !vmx::SECONDARY_EXEC_ENABLE_VMFUNC,
            );
        }
        if vmcs
            .read(vmx::EPT_POINTER)
            .is_some_and(|e| self.is_view_eptp(e))
        {
            vmcs.write(vmx::EPT_POINTER, self.hook.list0.load(Relaxed));
        }
        self.view.store(VIEW_DEFAULT, Relaxed);
    }

    /// The guest state a parked excursion is compared on ([`PARK_LEN`] values), each passed
    /// to `f` with its index, in order, while `f` returns true; returns whether all did.
    /// Every `vmx::PARK_CONTEXT` field (`u64::MAX` for one the VMCS lacks), the
    /// `vmx::PARK_CET` fields while the VM entry loads them (`u64::MAX` each otherwise),
    /// then [`Self::park_extra`]. No array is built or copied: this runs at every exit
    /// inside a view and the entry after it.
    fn park_context(&self, vmcs: &vmx::CurrentVmcs, mut f: impl FnMut(usize, u64) -> bool) -> bool {
        let n = vmx::PARK_CONTEXT.len();
        let cet = vmcs.read_or_zero(vmx::VM_ENTRY_CONTROLS) & vmx::VM_ENTRY_LOAD_CET_STATE != 0;
        vmx::PARK_CONTEXT
            .iter()
            .enumerate()
            .all(|(i, &field)| f(i, vmcs.read(field).unwrap_or(u64::MAX)))
            && vmx::PARK_CET.iter().enumerate().all(|(i, &field)| {
                let v = if cet { vmcs.read(field) } else { None };
                f(n + i, v.unwrap_or(u64::MAX))
            })
            && self
                .park_extra()
                .into_iter()
                .enumerate()
                .all(|(i, x)| f(n + vmx::PARK_CET.len() + i, x))
    }

    /// What the VMCS does not hold of the state a parked excursion is compared on: `EFER`
    /// (KVM's copy), the `PKRU` in effect (a VMM sets it with `KVM_SET_XSAVE`; a key that
    /// forbids writes would make a user grant's service fault at its next store), `XCR0`,
    /// `IA32_XSS`, and the user CET state (`IA32_U_CET`, `IA32_PL3_SSP`: IBT or a shadow
    /// stack turned on for a user grant's service); the supervisor's is in the VMCS.
    fn park_extra(&self) -> [u64; 6] {
        let [pkru, xcr0, xss, u_cet, pl3_ssp] = self.hook.vcpu.xstate();
        [self.hook.vcpu.efer(), pkru, xcr0, xss, u_cet, pl3_ssp]
    }

    /// The excursion the exit interrupted, as `elisa_core::gate::Interrupted`.
    fn interrupted(&self, vmcs: &vmx::CurrentVmcs, g: &VcpuGate, view: u16) -> Interrupted {
        Interrupted {
            view: if view == VIEW_SUB {
                ExcursionView::Sub
            } else {
                ExcursionView::Gate
            },
            g: g.entry_gva,
            rip: vmcs.read(vmx::GUEST_RIP).unwrap_or(0),
            rsp: vmcs.read(vmx::GUEST_RSP).unwrap_or(0),
            r11: self.hook.vcpu.gpr(Gpr::R11),
            rflags: vmcs.read(vmx::GUEST_RFLAGS).unwrap_or(0),
            saved_rsp: g.saved_rsp().unwrap_or(0),
            privilege: g.privilege(),
            saved_idtr: g.saved_idtr(),
        }
    }

    /// Leaves the vCPU in the state `fb` (and the default view, `list[1]` = 0).
    fn install(&self, vmcs: &vmx::CurrentVmcs, fb: &FailBack) {
        for r in Gpr::ALL {
            self.hook.vcpu.set_gpr(r, fb.gpr(r.index()));
        }
        vmcs.write(vmx::GUEST_RSP, fb.rsp);
        vmcs.write(vmx::GUEST_RIP, fb.rip);
        vmcs.write(vmx::GUEST_RFLAGS, fb.rflags);
        if let Some(idtr) = fb.idtr {
            vmcs.write(vmx::GUEST_IDTR_BASE, idtr.base);
            vmcs.write(vmx::GUEST_IDTR_LIMIT, u64::from(idtr.limit));
        }
        self.hook.vcpu.set_rip(fb.rip);
        self.set_list_entry(VIEW_SUB as usize, 0);
    }

    /// Parks the excursion in `view` of gate `slot` (file header). Its registers are
    /// saved here; KVM's copies and the VMCS get the failed-back state, its `RIP` less
    /// `skip`: the bytes KVM's handler of this exit moves `RIP` on by (`parkable`).
    fn park(&self, vmcs: &vmx::CurrentVmcs, slot: usize, g: &VcpuGate, view: u16, skip: u64) {
        let at = self.interrupted(vmcs, g, view);
        // An event the exit interrupted the delivery of was being delivered inside the
        // view (through the guest's IDT in elisa's tables): never re-inject it there.
        if exit_interrupted_delivery(vmcs) {
            self.end_broken(vmcs, Some(g), at.guest_idtr());
            return;
        }
        let p = &self.parked;
        for (&r, v) in Gpr::ALL.iter().zip(p.regs.iter()) {
            v.store(self.hook.vcpu.gpr(r), Relaxed);
        }
        p.regs[Gpr::Rsp.index()].store(at.rsp, Relaxed);
        p.rip.store(at.rip, Relaxed);
        p.rflags.store(at.rflags, Relaxed);
        p.list1.store(self.list_entry(VIEW_SUB as usize), Relaxed);
        let fb = at.fail_back(ERR_INTERRUPTED);
        for (v, x) in p.fb.iter().zip([fb.rip, fb.rsp, fb.rdx, fb.rflags]) {
            v.store(x, Relaxed);
        }
        p.idt_emptied.store(fb.idtr.is_some(), Relaxed);
        if let Some(idtr) = fb.idtr {
            p.idtr[0].store(vmcs.read_or_zero(vmx::GUEST_IDTR_BASE), Relaxed);
            p.idtr[1].store(vmcs.read_or_zero(vmx::GUEST_IDTR_LIMIT), Relaxed);
            p.fb_idtr[0].store(idtr.base, Relaxed);
            p.fb_idtr[1].store(u64::from(idtr.limit), Relaxed);
        }
        // KVM sees the exit stub less `skip`, and after its handler the stub itself: what
        // the resume compares with (`p.fb`) and what the VMM sees after the exit.
        let landing = FailBack {
            rip: fb.rip.wrapping_sub(skip),
            ..fb
        };
        p.skip.store(skip, Relaxed);
        self.install(vmcs, &landing);
        // Recorded as the failed-back state has it (the guest's IDT register, not the
        // empty one): what the resume compares with.
        self.park_context(vmcs, |i, x| {
            if let Some(v) = p.context.get(i) {
                v.store(x, Relaxed);
            }
            true
        });
        self.view_slot.store(slot as u8, Relaxed);
        self.view.store(view, Relaxed);
        self.view_exits.fetch_add(1, Relaxed);
    }

    /// Ends a broken excursion (file header): every general register 0, `RIP` = G + 0x2000
    /// when the gate is known, the default view, and the run ends with
    /// `KVM_EXIT_SHUTDOWN`: at this exit, also when it interrupted the delivery of an
    /// event where the event can be taken out of the exit (`drop_vectoring`); elsewhere
    /// at the next exit that interrupted none. KVM re-queues an event whose delivery an
    /// exit interrupted right after the exit (`vmx_complete_interrupts`), and warns
    /// (`kvm_requeue_exception`, `WARN_ON_ONCE`) when a triple-fault request is pending
    /// then: a host warning, which a guest with a user grant could cause at will (a fault
    /// of the gate's first push delivered through an IDT it points at the execute-only gate
    /// page). That event is dropped at the next entry (`entry_after_broken`); the vCPU
    /// runs on at G + 0x2000 in the default view with the registers and CR2 zeroed until
    /// that exit.
    fn end_broken(&self, vmcs: &vmx::CurrentVmcs, g: Option<&VcpuGate>, idtr: Option<Idtr>) {
        let reason = vmcs.read(vmx::VM_EXIT_REASON).unwrap_or(0);
        // Once per vCPU, within the VM's budget: a guest of many vCPUs can cause it on
        // each. Printed at the vCPU's next entry or at detach (`print_note`): the
        // trampoline may not print.
        if self.faults.fetch_add(1, Relaxed) == 0 {
            self.broken_note
                .store(NOTE_PENDING | (reason & 0xffff_ffff), Relaxed);
        }
        let fb = FailBack::broken(
            g.map(|g| g.entry_gva),
            vmcs.read(vmx::GUEST_RIP).unwrap_or(0),
            idtr,
        );
        self.install(vmcs, &fb);
        self.scrub_views();
        // CR2 may hold a fault address inside the view (KVM saved the register at this
        // exit): neither the guest nor the VMM sees it.
        self.hook.vcpu.clear_cr2();
        // A triple-fault exit already ends the run with KVM_EXIT_SHUTDOWN (KVM's handler, no
        // request): a request on top would stay pending and end the VMM's next run, after
        // it reset the vCPU, at its first instruction.
        if reason & 0xffff != vmx::EXIT_TRIPLE_FAULT {
            if exit_interrupted_delivery(vmcs) && !drop_vectoring(vmcs) {
                self.broken_rip.store(fb.rip, Relaxed);
                self.hook.shutdown_pending.store(SHUT_ENTRY, Relaxed);
            } else {
                self.hook.vcpu.request_shutdown();
            }
        }
    }

    /// The first entry after a broken excursion whose exit interrupted a delivery
    /// (`end_broken`): the event KVM re-injects now is that one, raised inside the view (a
    /// #PF's error code describes the service's access), and is dropped; KVM clears its
    /// queue at the next exit, which delivers nothing it did not see. Unless the VMM
    /// changed the vCPU meanwhile (a reset after KVM returned to user space: another
    /// `RIP`), whose run is its own: nothing is dropped, and no end is requested.
    #[cold]
    #[inline(never)]
    fn entry_after_broken(&self, vmcs: &vmx::CurrentVmcs) {
        let rip = self.broken_rip.load(Relaxed);
        if self.hook.vcpu.rip() != rip || vmcs.read(vmx::GUEST_RIP) != Some(rip) {
            self.hook.shutdown_pending.store(SHUT_NONE, Relaxed);
            return;
        }
        if let Some(info) = vmcs.read(vmx::VM_ENTRY_INTR_INFO_FIELD) {
            if info & vmx::INTR_INFO_VALID != 0 {
                vmcs.write(vmx::VM_ENTRY_INTR_INFO_FIELD, info & !vmx::INTR_INFO_VALID);
            }
        }
        self.hook.shutdown_pending.store(SHUT_EXIT, Relaxed);
    }

    /// An entry of a detaching VM (no settings, no exit after it) after a broken
    /// excursion whose exit interrupted a delivery: the event raised inside the view is
    /// dropped as at an attached entry (`entry_after_broken`), so that the guest's handler
    /// never receives it, and no end of the run is requested: nothing of elisa's is left
    /// in the VMCS, and the vCPU runs on at G + 0x2000 with its registers zeroed.
    pub(crate) fn entry_detaching_after_broken(&self, vmcs: &vmx::CurrentVmcs) {
        if self.hook.shutdown_pending.load(Relaxed) == SHUT_ENTRY {
            self.entry_after_broken(vmcs);
            self.hook.shutdown_pending.store(SHUT_NONE, Relaxed);
        }
    }

    /// A broken excursion's end of the run was left for an exit that interrupts no event
    /// delivery (`end_broken`): this one, if it is such an exit.
    #[cold]
    #[inline(never)]
    fn shutdown_deferred(&self, vmcs: &vmx::CurrentVmcs) {
        let reason = vmcs.read(vmx::VM_EXIT_REASON).unwrap_or(0);
        if reason & 0xffff == vmx::EXIT_TRIPLE_FAULT {
            // KVM's own handler ends the run.
            self.hook.shutdown_pending.store(SHUT_NONE, Relaxed);
        } else if !exit_interrupted_delivery(vmcs) {
            self.hook.shutdown_pending.store(SHUT_NONE, Relaxed);
            self.hook.vcpu.request_shutdown();
        }
    }
}

/// Takes the event whose delivery the exit just taken interrupted (raised inside a view,
/// a broken excursion's) out of the exit's IDT-vectoring field, before KVM reads it right
/// after the exit trampoline: KVM then neither re-queues it (so a triple-fault request
/// now draws no warning, `end_broken`) nor shows its vector and error code to the VMM.
/// Only where VMWRITE may write VM-exit information fields (`IA32_VMX_MISC` bit 29);
/// returns whether the field now reads 0. From the exit trampoline.
fn drop_vectoring(vmcs: &vmx::CurrentVmcs) -> bool {
    if !crate::caps::vmwrite_exit_info() {
        return false;
    }
    vmcs.write(vmx::IDT_VECTORING_INFO, 0);
    vmcs.read(vmx::IDT_VECTORING_INFO) == Some(0)
}

/// Whether the exit just taken interrupted the delivery of an event (which KVM re-queues
/// after `kvm_exit`); a failed read counts as one. A failed VM entry (exit reason bit 31:
/// a guest-state check, which a VMM can make fail with a segment register of its choosing)
/// delivered nothing: its vectoring field is left from an earlier exit, and KVM neither
/// reads it nor re-queues anything then.
fn exit_interrupted_delivery(vmcs: &vmx::CurrentVmcs) -> bool {
    if vmcs
        .read(vmx::VM_EXIT_REASON)
        .is_some_and(|r| r & vmx::EXIT_REASON_FAILED_VMENTRY != 0)
    {
        return false;
    }
    vmcs.read(vmx::IDT_VECTORING_INFO)
        .is_none_or(|i| i & vmx::INTR_INFO_VALID != 0)
}

/// The EPTP the shim builds for KVM's root (`kvm`) differs from the one KVM loaded
/// (`loaded`): the shim does not match this kernel's `construct_eptp()`. Logged once.
#[cold]
#[inline(never)]
fn warn_eptp_unlike_kvm(kvm: u64, loaded: u64) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Relaxed) {
        pr_warn!(
            "KVM loaded EPTP {:#x} where elisa builds {:#x}: elisa's shim does not match this kernel's KVM (report it)\n",
            loaded,
            kvm
        );
    }
}

/// A gate of a service whose entry lacks ENDBR64 stays closed on vCPU `idx`, whose CPUID
/// exposes CET (`VcpuState::cet_exposed`), in VM number `vm`. Once per vCPU and grant, so
/// a VMM attaching and granting again and again could repeat it at will: under the
/// module's budget, as callers' refusals (the VMM's doing, not its guest's).
#[cold]
#[inline(never)]
fn warn_cet_closed(vm: u64, idx: u32) {
    pr_warn_rl!(
        "vm {}: vcpu {}: its CPUID exposes CET: the gates of services whose entry lacks ENDBR64 stay closed for it\n",
        vm,
        idx
    );
}

/// Whether the excursion the exit just taken interrupted may be parked and resumed: the
/// exit was not caused by the guest's instruction stream, or, in the sub view (`sub`), it
/// was a PAUSE-loop exit (a service's bounded wait: PAUSE changes nothing, and the resume
/// runs it again; the gate's code has no PAUSE, and an instruction-caused exit there
/// always ends the excursion, `gate-protocol.rst` section 7). Returns the bytes KVM's
/// handler moves `RIP` on by: 0, or the PAUSE's length (`handle_pause()` skips the
/// instruction); `None` when the excursion must end.
fn parkable(vmcs: &vmx::CurrentVmcs, sub: bool) -> Option<u64> {
    let r = vmcs.read(vmx::VM_EXIT_REASON)?;
    // The VM entry failed; the vCPU never ran.
    if r & vmx::EXIT_REASON_FAILED_VMENTRY != 0 {
        return None;
    }
    match r & 0xffff {
        vmx::EXIT_EXTERNAL_INTERRUPT
        | vmx::EXIT_INTERRUPT_WINDOW
        | vmx::EXIT_NMI_WINDOW
        | vmx::EXIT_PREEMPTION_TIMER
        | vmx::EXIT_PML_FULL => Some(0),
        vmx::EXIT_EXCEPTION_NMI => vmcs
            .read(vmx::VM_EXIT_INTR_INFO)
            .filter(|i| (i >> 8) & 7 == vmx::INTR_TYPE_NMI)
            .map(|_| 0),
        // An instruction is 1 to 15 bytes.
        vmx::EXIT_PAUSE_INSTRUCTION if sub => vmcs
            .read(vmx::VM_EXIT_INSTRUCTION_LEN)
            .filter(|len| (1..=15).contains(len)),
        _ => None,
    }
}
