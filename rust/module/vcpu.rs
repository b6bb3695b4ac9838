// SPDX-License-Identifier: GPL-2.0
//! `VcpuState`: what elisa keeps for one vCPU of an attached VM.
//!
//! One exists per vCPU that has entered the guest since its VM was attached. It is created
//! by that vCPU's first `kvm_entry` probe (IRQs off, so with `GFP_ATOMIC`) and owned by the
//! VM's [`VmRecord`](super::registry::VmRecord), which frees it at detach. All fields are
//! atomics: the vCPU's own probes write them (one thread at a time: `KVM_RUN` holds
//! `vcpu->mutex`), and detach and debugfs read them.
//!
//! **elisa's settings live in the VMCS only while the guest runs.** The `kvm_entry` probe
//! turns VM functions on and installs the EPTP list; the `kvm_exit` probe turns them off
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
//! **Exits in the gate or sub view** (gate-protocol §7, R14, R16). The exit probe knows
//! the view from `EPT_POINTER`:
//!
//! - an asynchronous exit (external interrupt, NMI, interrupt or NMI window, preemption
//!   timer) leaves the excursion alone: KVM handles it against its own root, and the next
//!   entry puts the vCPU back into the view. The vCPU never runs in the default view in
//!   between, so `list[1]` (possibly the sub EPTP, in the gate's hop) stays. If KVM is about
//!   to inject an event at that entry, the event must not be delivered in the gate or sub
//!   view (its IDT would be walked through elisa's tables): the call is failed back instead
//!   (below, with `ERR_INTERRUPTED`) and the event is delivered in the default view;
//! - any other exit (an EPT violation, an instruction that exits, a fault the guest's
//!   handlers cannot take) is a broken excursion: `list[1]` is cleared, every general
//!   register is zeroed, the vCPU is put at G + 0x2000 in the default view, and KVM is asked
//!   to end the run with `KVM_EXIT_SHUTDOWN` (a triple-fault request). KVM still handles
//!   the exit itself, but against zeroed registers and the default view, so nothing of the
//!   sub view reaches its handlers or the guest, and the vCPU is never put back into the
//!   view that faulted: no livelock.
//!
//! Failing back follows gate-protocol §7: `RSP` = the caller's, `RAX`, `RCX`, `RSI`,
//! `RDI`, `R8`-`R11` = 0, `RDX` = the error, `RIP` = G + 0x2000 (the exit stub returns
//! `RDX` in `RAX`), flags 0x2 with the caller's IF, `list[1]` = 0, default EPTP.

use crate::grant::VcpuGate;
use crate::pages::HeldPage;
use crate::{hooks, shim, vmx};
use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU16, AtomicU64, AtomicU8, Ordering::*};
use kernel::{alloc::Flags, prelude::*};

/// Number of entries of an EPTP list.
pub(crate) const EPTP_LIST_LEN: usize = 512;
/// `view` values: the EPTP-list index of the view (a gate view: its gate's index).
pub(crate) const VIEW_DEFAULT: u16 = 0;
pub(crate) const VIEW_SUB: u16 = 1;
/// Gates (granted services) per vCPU; gate slot `n` is EPTP-list index 511 - `n`.
pub(crate) const MAX_GATES: usize = crate::uapi::ELISA_MAX_GRANTS as usize;

/// The EPTP-list index of gate slot `slot`.
pub(crate) const fn gate_index(slot: usize) -> usize {
    crate::uapi::ELISA_FIRST_GATE_INDEX as usize - slot
}

/// `RDX` (and so `RAX`) of a call failed back because an event was due: `-EINTR`.
pub(crate) const ERR_INTERRUPTED: u64 = crate::elisa_core::gate::ERR_INTERRUPTED as u64;

/// One vCPU's elisa state. See the file header.
pub(crate) struct VcpuState {
    /// The `struct kvm_vcpu`; valid while the VM exists, and elisa holds a VM reference
    /// for as long as this state exists.
    pub(crate) vcpu: *mut c_void,
    /// KVM's `vcpu_idx`.
    pub(crate) idx: u32,
    list: HeldPage,
    /// The list page's kernel address: 512 entries, each read and written whole.
    list_va: *const AtomicU64,
    pub(crate) list_pa: u64,
    /// The EPTP in list entry 0: KVM's root at the last entry.
    pub(crate) list0: AtomicU64,
    /// The view the guest was in at its last exit (`VIEW_*`, or a gate's index).
    pub(crate) view: AtomicU16,
    /// The gate slot of the excursion in progress when `view` is not `VIEW_DEFAULT`.
    view_slot: AtomicU8,
    /// The secondary controls as written at entry (VM functions on).
    ctl2: AtomicU64,
    /// Between this vCPU's entry and exit probes, with elisa's settings in the VMCS.
    pub(crate) in_guest: AtomicBool,
    /// The gate and sub views of this vCPU per granted service (gate slot); each set
    /// once, freed with the state.
    gates: [AtomicPtr<VcpuGate>; MAX_GATES],
    /// Bit `n`: `gates[n]` is published.
    gate_mask: AtomicU8,
    /// Counters, for debugfs.
    pub(crate) entries: AtomicU64,
    pub(crate) exits: AtomicU64,
    pub(crate) list0_updates: AtomicU64,
    /// Exits in the gate or sub view that kept the excursion (asynchronous ones).
    pub(crate) view_exits: AtomicU64,
    /// Calls failed back because an event was due.
    pub(crate) failbacks: AtomicU64,
    /// Synchronous exits in the gate or sub view (each ends the run).
    pub(crate) faults: AtomicU64,
    /// Its debugfs file `vcpu<n>-views` was made (`registry::add_views_file`).
    pub(crate) views_file: AtomicBool,
}

// SAFETY: `vcpu` is only handed to the C shim's accessors, which are safe from any
// thread while the VM exists; `list_va` points into the owned page; everything else is
// atomics, and the gate is only read after it was published.
unsafe impl Send for VcpuState {}
// SAFETY: as above; shared access only goes through atomics.
unsafe impl Sync for VcpuState {}

impl Drop for VcpuState {
    fn drop(&mut self) {
        for slot in self.gates.iter() {
            let g = slot.swap(null_mut(), Acquire);
            if !g.is_null() {
                // SAFETY: published by `set_gate` from `KBox::into_raw`, and only freed here.
                let g = unsafe { KBox::from_raw(g) };
                // The views may be cached on any CPU the vCPU ran on: drop them before their
                // pages are freed (with `g`).
                g.invalidate();
            }
        }
    }
}

impl VcpuState {
    /// Allocates the state and its EPTP list. With `GFP_ATOMIC` from the entry probe,
    /// `GFP_KERNEL` from a grant.
    pub(crate) fn new(vcpu: *mut c_void, idx: u32, flags: Flags) -> Result<KBox<Self>> {
        let list = HeldPage::alloc(flags)?;
        // SAFETY: `list` is a valid, allocated page.
        let list_pa = unsafe { shim::elisa_shim_page_to_phys(list.as_ptr().cast()) };
        // SAFETY: as above; an order-0 page from the kernel's allocator without
        // __GFP_HIGHMEM is in the direct map.
        let list_va = unsafe { shim::elisa_shim_page_address(list.as_ptr().cast()) };
        Ok(KBox::new(
            VcpuState {
                vcpu,
                idx,
                list,
                list_va: list_va.cast_const().cast(),
                list_pa,
                list0: AtomicU64::new(0),
                view: AtomicU16::new(VIEW_DEFAULT),
                view_slot: AtomicU8::new(0),
                ctl2: AtomicU64::new(0),
                in_guest: AtomicBool::new(false),
                gates: [const { AtomicPtr::new(null_mut()) }; MAX_GATES],
                gate_mask: AtomicU8::new(0),
                entries: AtomicU64::new(0),
                exits: AtomicU64::new(0),
                list0_updates: AtomicU64::new(0),
                view_exits: AtomicU64::new(0),
                failbacks: AtomicU64::new(0),
                faults: AtomicU64::new(0),
                views_file: AtomicBool::new(false),
            },
            flags,
        )?)
    }

    fn slot(&self, i: usize) -> Option<&AtomicU64> {
        if i < EPTP_LIST_LEN {
            // SAFETY: `list_va` is the address of the owned 4 KiB list page, which lives as
            // long as `self`; `i < 512`, and the page is only accessed as aligned u64s.
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
        let mut out = KVVec::new();
        for (_, g) in self.each_gate() {
            g.dump(&|i| self.list_entry(i), &mut out)?;
        }
        Ok(out)
    }

    /// Every published gate, with its slot.
    pub(crate) fn each_gate(&self) -> impl Iterator<Item = (usize, &VcpuGate)> {
        let mask = self.gate_mask.load(Acquire);
        (0..MAX_GATES)
            .filter(move |n| mask & (1 << n) != 0)
            .filter_map(|n| Some((n, self.gate(n)?)))
    }

    /// Publishes the vCPU's gate of slot `slot` (built completely beforehand) and opens
    /// it at its list index. Fails if that slot has one already. Process context.
    pub(crate) fn set_gate(
        &self,
        slot: usize,
        g: KBox<VcpuGate>,
    ) -> core::result::Result<(), KBox<VcpuGate>> {
        let Some(cell) = self.gates.get(slot) else {
            return Err(g);
        };
        let eptp = g.gate_eptp;
        let p = KBox::into_raw(g);
        match cell.compare_exchange(null_mut(), p, AcqRel, Acquire) {
            Ok(_) => {
                self.gate_mask.fetch_or(1 << slot, AcqRel);
                // A freshly built EPT whose root was never loaded has nothing cached: no
                // INVEPT. The list entry is read by the CPU at each VMFUNC, not cached.
                self.set_list_entry(gate_index(slot), eptp);
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

    /// `kvm_entry`: put elisa's settings into the VMCS for this run of the guest, with
    /// list entry 0 equal to the root KVM has just loaded. Atomic context.
    pub(crate) fn enter(&self, vmcs: &vmx::CurrentVmcs) {
        self.entries.fetch_add(1, Relaxed);
        let (Some(eptp), Some(ctl2)) = (
            vmcs.read(vmx::EPT_POINTER),
            vmcs.read(vmx::SECONDARY_VM_EXEC_CONTROL),
        ) else {
            return;
        };
        // At every exit elisa puts KVM's root back, so EPT_POINTER is KVM's current root
        // here; a different value means KVM loaded a new one (memslot change, MMU reset).
        if eptp != self.list0.load(Relaxed) {
            self.set_list_entry(0, eptp);
            self.list0.store(eptp, Relaxed);
            self.list0_updates.fetch_add(1, Relaxed);
        }
        let ctl2 = ctl2 | vmx::SECONDARY_EXEC_ENABLE_VMFUNC;
        self.ctl2.store(ctl2, Relaxed);
        // Written once per vCPU; init_vmcs() (vCPU creation and reset) zeroes the control.
        if vmcs.read(vmx::VM_FUNCTION_CONTROL) != Some(vmx::VMFUNC_EPTP_SWITCHING) {
            vmcs.write(vmx::EPTP_LIST_ADDRESS, self.list_pa);
            vmcs.write(vmx::VM_FUNCTION_CONTROL, vmx::VMFUNC_EPTP_SWITCHING);
        }
        vmcs.write(vmx::SECONDARY_VM_EXEC_CONTROL, ctl2);
        if self.gate_mask.load(Relaxed) != 0 {
            // R11: the views' page tables are 4-level; with CR4.LA57 the gates are closed.
            let la57 = vmcs
                .read(vmx::GUEST_CR4)
                .is_none_or(|cr4| cr4 & vmx::CR4_LA57 != 0);
            for (slot, g) in self.each_gate() {
                let want = if la57 { 0 } else { g.gate_eptp };
                if self.list_entry(gate_index(slot)) != want {
                    self.set_list_entry(gate_index(slot), want);
                }
            }
        }
        // Back into the view the guest left (a VM exit must not move it between views).
        let view = self.view.load(Relaxed);
        if view == VIEW_DEFAULT {
            return;
        }
        let Some(g) = self.gate(self.view_slot.load(Relaxed) as usize) else {
            self.view.store(VIEW_DEFAULT, Relaxed);
            return;
        };
        let injecting = vmcs
            .read(vmx::VM_ENTRY_INTR_INFO_FIELD)
            .is_some_and(|i| i & vmx::INTR_INFO_VALID != 0);
        if injecting {
            // R16: never deliver an event in the gate or sub view.
            self.failbacks.fetch_add(1, Relaxed);
            self.fail_back(vmcs, g, view, ERR_INTERRUPTED, false);
            return;
        }
        let target = if view == VIEW_SUB {
            g.sub_eptp
        } else {
            g.gate_eptp
        };
        vmcs.write(vmx::EPT_POINTER, target);
    }

    /// `kvm_exit`: note the view the guest is in and take elisa's settings out of the
    /// VMCS again. Atomic context.
    pub(crate) fn exit(&self, vmcs: &vmx::CurrentVmcs) {
        self.exits.fetch_add(1, Relaxed);
        if !self.in_guest.load(Relaxed) {
            return;
        }
        let list0 = self.list0.load(Relaxed);
        let mut view = VIEW_DEFAULT;
        if let Some(e) = vmcs.read(vmx::EPT_POINTER).filter(|&e| e != list0) {
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
                Some((slot, _, v)) if exit_is_asynchronous(vmcs) => {
                    self.view_exits.fetch_add(1, Relaxed);
                    self.view_slot.store(slot as u8, Relaxed);
                    view = v;
                }
                _ => {
                    if self.faults.fetch_add(1, Relaxed) == 0 {
                        pr_warn!(
                            "vcpu {}: exit (reason {:#x}) inside the gate or sub view: the run ends with KVM_EXIT_SHUTDOWN\n",
                            self.idx,
                            vmcs.read(vmx::VM_EXIT_REASON).unwrap_or(0)
                        );
                    }
                    self.set_list_entry(VIEW_SUB as usize, 0);
                    if let Some((_, g, v)) = in_view {
                        self.fail_back(vmcs, g, v, 0, true);
                    } else {
                        wipe_registers(self.vcpu, vmcs);
                    }
                    // A triple-fault exit already ends the run with KVM_EXIT_SHUTDOWN (KVM's
                    // handler, no request): a request on top would stay pending and end the
                    // VMM's next run, after it reset the vCPU, at its first instruction.
                    let reason = vmcs.read(vmx::VM_EXIT_REASON).map(|r| r & 0xffff);
                    if reason != Some(vmx::EXIT_TRIPLE_FAULT) {
                        // SAFETY: the vCPU's own exit probe; the VM reference keeps it
                        // alive.
                        unsafe { shim::elisa_shim_request_shutdown(self.vcpu) };
                    }
                }
            }
        }
        self.view.store(view, Relaxed);
        vmcs.write(
            vmx::SECONDARY_VM_EXEC_CONTROL,
            self.ctl2.load(Relaxed) & !vmx::SECONDARY_EXEC_ENABLE_VMFUNC,
        );
        self.in_guest.store(false, Release);
    }

    /// Ends the excursion in the default view at G + 0x2000 with `RDX` = `err` (see the
    /// file header). With `wipe`, every general register is zeroed instead, `RSP` included.
    fn fail_back(&self, vmcs: &vmx::CurrentVmcs, g: &VcpuGate, view: u16, err: u64, wipe: bool) {
        let rsp = if wipe {
            0
        } else {
            let rip = vmcs.read(vmx::GUEST_RIP).unwrap_or(0);
            let off = rip.wrapping_sub(g.entry_gva.wrapping_add(0x1000));
            let r11 = hooks::gpr(self.vcpu, hooks::R11);
            let cur = vmcs.read(vmx::GUEST_RSP).unwrap_or(0);
            match view {
                // At the gate's first byte RSP is the caller's; after it, R11 holds it.
                v if v != VIEW_SUB && off == 0 => cur,
                v if v != VIEW_SUB => r11,
                // Sub entry before `push r11`: R11; at the final VMFUNC: RSP; otherwise the
                // slot at the sub stack top - 16.
                _ if (0x40..0x57).contains(&off) => r11,
                _ if off == 0xffd => cur,
                _ => g.saved_rsp().unwrap_or(0),
            }
        };
        if wipe {
            wipe_registers(self.vcpu, vmcs);
        } else {
            for r in hooks::SCRATCH {
                hooks::set_gpr(self.vcpu, r, 0);
            }
            hooks::set_gpr(self.vcpu, hooks::RDX, err);
        }
        let flags = vmcs.read(vmx::GUEST_RFLAGS).unwrap_or(0) & vmx::RFLAGS_IF;
        vmcs.write(vmx::GUEST_RFLAGS, 0x2 | flags);
        let rip = g.entry_gva.wrapping_add(0x2000);
        vmcs.write(vmx::GUEST_RSP, rsp);
        vmcs.write(vmx::GUEST_RIP, rip);
        hooks::set_gpr(self.vcpu, hooks::RSP, rsp);
        hooks::set_rip(self.vcpu, rip);
        self.set_list_entry(VIEW_SUB as usize, 0);
        vmcs.write(vmx::EPT_POINTER, self.list0.load(Relaxed));
        self.view.store(VIEW_DEFAULT, Relaxed);
    }
}

/// Zeroes every general register of the vCPU (KVM's copies and `RSP` in the VMCS).
fn wipe_registers(vcpu: *mut c_void, vmcs: &vmx::CurrentVmcs) {
    for r in 0..16 {
        hooks::set_gpr(vcpu, r, 0);
    }
    vmcs.write(vmx::GUEST_RSP, 0);
}

/// Whether the exit just taken was not caused by the guest's instruction stream.
fn exit_is_asynchronous(vmcs: &vmx::CurrentVmcs) -> bool {
    match vmcs.read(vmx::VM_EXIT_REASON).map(|r| r & 0xffff) {
        Some(vmx::EXIT_EXTERNAL_INTERRUPT)
        | Some(vmx::EXIT_INTERRUPT_WINDOW)
        | Some(vmx::EXIT_NMI_WINDOW)
        | Some(vmx::EXIT_PREEMPTION_TIMER) => true,
        Some(vmx::EXIT_EXCEPTION_NMI) => vmcs
            .read(vmx::VM_EXIT_INTR_INFO)
            .is_some_and(|i| (i >> 8) & 7 == vmx::INTR_TYPE_NMI),
        _ => false,
    }
}
