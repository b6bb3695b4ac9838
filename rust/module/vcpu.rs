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
//! this vCPU, refreshed at every entry; every other entry is 0, so a guest VMFUNC to any
//! other index exits and KVM injects #UD.

use crate::{shim, vmx};
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::*};
use kernel::{page::Page, prelude::*};

/// Number of entries of an EPTP list.
pub(crate) const EPTP_LIST_LEN: usize = 512;

/// One vCPU's elisa state. See the file header.
pub(crate) struct VcpuState {
    /// The `struct kvm_vcpu`; valid while the VM exists, and elisa holds a VM reference
    /// for as long as this state exists.
    pub(crate) vcpu: *mut c_void,
    /// KVM's `vcpu_idx`.
    pub(crate) idx: u32,
    list: Page,
    list_pa: u64,
    /// The EPTP in list entry 0: KVM's root at the last entry.
    pub(crate) list0: AtomicU64,
    /// The EPTP-list index of the view the guest was in at its last exit (0: default).
    pub(crate) view: AtomicU16,
    /// The secondary controls as written at entry (VM functions on).
    ctl2: AtomicU64,
    /// Between this vCPU's entry and exit probes, with elisa's settings in the VMCS.
    pub(crate) in_guest: AtomicBool,
    /// Counters, for debugfs.
    pub(crate) entries: AtomicU64,
    pub(crate) exits: AtomicU64,
    pub(crate) list0_updates: AtomicU64,
}

// SAFETY: `vcpu` is only handed to the C shim's accessors, which are safe from any
// thread while the VM exists; everything else is atomics or the owned page.
unsafe impl Send for VcpuState {}
// SAFETY: as above; shared access only goes through atomics.
unsafe impl Sync for VcpuState {}

impl VcpuState {
    /// Allocates the state and its EPTP list. Atomic context: never sleeps.
    pub(crate) fn new_atomic(vcpu: *mut c_void, idx: u32) -> Result<KBox<Self>> {
        let list = Page::alloc_page(GFP_ATOMIC | __GFP_ZERO)?;
        // SAFETY: `list` is a valid, allocated page.
        let list_pa = unsafe { shim::elisa_shim_page_to_phys(list.as_ptr().cast()) };
        Ok(KBox::new(
            VcpuState {
                vcpu,
                idx,
                list,
                list_pa,
                list0: AtomicU64::new(0),
                view: AtomicU16::new(0),
                ctl2: AtomicU64::new(0),
                in_guest: AtomicBool::new(false),
                entries: AtomicU64::new(0),
                exits: AtomicU64::new(0),
                list0_updates: AtomicU64::new(0),
            },
            GFP_ATOMIC,
        )?)
    }

    /// Reads entry `i` of the EPTP list (0 when out of range).
    pub(crate) fn list_entry(&self, i: usize) -> u64 {
        let mut v = 0u64;
        if i < EPTP_LIST_LEN {
            // SAFETY: `v` is a valid u64 to write 8 bytes into; `i * 8 + 8 <= PAGE_SIZE`.
            let _ = unsafe { self.list.read_raw((&raw mut v).cast(), i * 8, 8) };
        }
        v
    }

    fn set_list_entry(&self, i: usize, val: u64) {
        if i < EPTP_LIST_LEN {
            // SAFETY: `val` is a valid u64 to read 8 bytes from; `i * 8 + 8 <= PAGE_SIZE`.
            let _ = unsafe { self.list.write_raw((&raw const val).cast(), i * 8, 8) };
        }
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
        // Back into the view the guest left (a VM exit must not move it between views).
        let view = self.view.load(Relaxed) as usize;
        if view != 0 {
            let target = self.list_entry(view);
            if target != 0 {
                vmcs.write(vmx::EPT_POINTER, target);
            } else {
                self.view.store(0, Relaxed);
            }
        }
    }

    /// `kvm_exit`: note the view the guest is in and take elisa's settings out of the
    /// VMCS again. Atomic context.
    pub(crate) fn exit(&self, vmcs: &vmx::CurrentVmcs) {
        self.exits.fetch_add(1, Relaxed);
        if !self.in_guest.load(Relaxed) {
            return;
        }
        let list0 = self.list0.load(Relaxed);
        let view = match vmcs.read(vmx::EPT_POINTER) {
            Some(e) if e != list0 => {
                vmcs.write(vmx::EPT_POINTER, list0);
                (1..EPTP_LIST_LEN)
                    .find(|&k| self.list_entry(k) == e)
                    .unwrap_or(0)
            }
            _ => 0,
        };
        self.view.store(view as u16, Relaxed);
        vmcs.write(
            vmx::SECONDARY_VM_EXEC_CONTROL,
            self.ctl2.load(Relaxed) & !vmx::SECONDARY_EXEC_ENABLE_VMFUNC,
        );
        self.in_guest.store(false, Release);
    }
}
