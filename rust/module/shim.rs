// SPDX-License-Identifier: GPL-2.0
//! Declarations of the C shim's functions (`elisa_shim.c`, `elisa_shim.h`).
//!
//! The reasons each C function exists are given in `elisa_shim.c`. KVM objects
//! (`struct kvm`, `struct kvm_vcpu`, `struct page`) are opaque `c_void` pointers here.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use kernel::ffi::c_char;

/// `kernel::$level!` under the module's budget for what callers cause: at most 10 lines
/// every 5 s for the module, so that an fd holder cannot flood the log. Used through the
/// three below.
macro_rules! pr_rl {
    ($level:ident, $($arg:tt)*) => {
        // SAFETY: takes no argument; any context.
        if unsafe { $crate::shim::elisa_shim_log_ratelimit() } {
            kernel::$level!($($arg)*);
        }
    };
}
pub(crate) use pr_rl;

/// `pr_info!` for a message that a caller's input causes (a refused grant, a wrong fd),
/// under the module's budget ([`pr_rl!`]).
macro_rules! pr_info_rl {
    ($($arg:tt)*) => { $crate::shim::pr_rl!(pr_info, $($arg)*) };
}
pub(crate) use pr_info_rl;

/// `pr_err!` under the same budget, for a refusal a caller's request causes whose reason an
/// administrator must fix (a kvm_intel setting, a kind of VM elisa cannot serve).
macro_rules! pr_err_rl {
    ($($arg:tt)*) => { $crate::shim::pr_rl!(pr_err, $($arg)*) };
}
pub(crate) use pr_err_rl;

/// `pr_warn!` under the same budget, for a line a VMM's setup causes (a grant, its vCPUs'
/// CPUID), which it can repeat at will (attach and grant again).
macro_rules! pr_warn_rl {
    ($($arg:tt)*) => { $crate::shim::pr_rl!(pr_warn, $($arg)*) };
}
pub(crate) use pr_warn_rl;

/// The kernel-log budget of one attached VM for the lines its guest's state causes at VM
/// entry (a gate closed for want of SMAP, for a CR4 bit, for UMIP emulation; each logged
/// once per change and vCPU): at most [`VmLog::BURST`] lines every [`VmLog::WINDOW_NS`]
/// for the VM, apart from the module's budget for callers' refusals (`pr_info_rl!`). Before,
/// one budget served both: a guest of many vCPUs flipping its CR4 used it up, and other
/// VMs' refusals went unlogged. Lock-free (it runs in the entry hook); a race at a
/// window's start can let a line or two more through, never unboundedly many.
pub(crate) struct VmLog {
    /// The VM's number, which the lines start with.
    pub(crate) vm: u64,
    /// When the current window began (`ktime_get_mono_fast_ns`).
    start: AtomicU64,
    /// Lines asked for in the current window.
    count: AtomicU32,
}

impl VmLog {
    /// Lines per window.
    pub(crate) const BURST: u32 = 10;
    /// The window: 5 s, as the module's budget.
    pub(crate) const WINDOW_NS: u64 = 5_000_000_000;

    /// The budget of VM number `vm`.
    pub(crate) const fn new(vm: u64) -> Self {
        Self {
            vm,
            start: AtomicU64::new(0),
            count: AtomicU32::new(0),
        }
    }

    /// Whether a line may be logged now.
    pub(crate) fn allow(&self) -> bool {
        // SAFETY: takes nothing; safe in any context, NMI included.
        let now = unsafe { kernel::bindings::ktime_get_mono_fast_ns() };
        let start = self.start.load(Relaxed);
        if now.wrapping_sub(start) >= Self::WINDOW_NS
            && self
                .start
                .compare_exchange(start, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.count.store(0, Relaxed);
        }
        // The load first: the count stops near BURST however often the guest tries.
        self.count.load(Relaxed) < Self::BURST && self.count.fetch_add(1, Relaxed) < Self::BURST
    }
}

/// `kernel::$level!` under a VM's [`VmLog`] budget (the second argument), as [`pr_rl!`] is
/// under the module's; the line starts with the VM's number ("vm {}: ...", `log.vm`). Used
/// through the two below.
macro_rules! pr_vm {
    ($level:ident, $log:expr, $($arg:tt)*) => {
        if $log.allow() {
            kernel::$level!($($arg)*);
        }
    };
}
pub(crate) use pr_vm;

/// `pr_info!` of a line a VM's guest causes, under that VM's budget ([`pr_vm!`]).
macro_rules! pr_info_vm {
    ($log:expr, $($arg:tt)*) => { $crate::shim::pr_vm!(pr_info, $log, $($arg)*) };
}
pub(crate) use pr_info_vm;

/// `pr_warn!` under a VM's budget: for lines its guest or its VMM can cause once per vCPU
/// (a VM may have thousands).
macro_rules! pr_warn_vm {
    ($log:expr, $($arg:tt)*) => { $crate::shim::pr_vm!(pr_warn, $log, $($arg)*) };
}
pub(crate) use pr_warn_vm;

/// `struct elisa_vcpu_layout` in `elisa_shim.h`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct VcpuLayout {
    pub(crate) vcpu_idx: u32,
    pub(crate) regs: u32,
    pub(crate) rip: u32,
    pub(crate) efer: u32,
    pub(crate) pebs_enable: u32,
}

/// `struct elisa_hook_key` in `elisa_shim.h`: how the probes find an attached VM. The first
/// field of `registry::VmRecord`; linked and unlinked only under the registry lock.
#[repr(C)]
pub(crate) struct HookKey {
    /// The `struct kvm`; set before linking, never changed.
    pub(crate) kvm: *mut c_void,
    /// The next key of the hash bucket; written by the shim only, also while the record is
    /// borrowed (the unlink of the bucket's next record), hence the cell.
    next: UnsafeCell<*mut HookKey>,
}

impl HookKey {
    /// The key of `kvm`, not linked.
    pub(crate) const fn new(kvm: *mut c_void) -> Self {
        HookKey {
            kvm,
            next: UnsafeCell::new(core::ptr::null_mut()),
        }
    }
}

/// Runs `f` in a kworker of elisa's workqueue (unbound, with a rescuer) and returns once it
/// has run: for the sections under the registry lock and debugfs's `elisa/` directory
/// lock, which must not run in a thread whose scheduling a VMM chooses
/// (`elisa_shim_call_unbound`). `f` reports its result through what it captures. Process
/// context, holding no lock that `f` takes: the caller sleeps until the kworker is done
/// (uninterruptibly; `f` must not panic, or the caller waits for good).
pub(crate) fn call_unbound<F: FnOnce() + Send>(f: F) {
    /// # Safety
    ///
    /// `arg` must point to a live `Option<F>` that nothing else touches during the call.
    unsafe extern "C" fn run<F: FnOnce() + Send>(arg: *mut c_void) {
        // SAFETY: `arg` is the `Option<F>` on the stack of `call_unbound`, which waits in
        // the shim until this returns; nothing else touches it meanwhile.
        let slot = unsafe { &mut *arg.cast::<Option<F>>() };
        if let Some(f) = slot.take() {
            f();
        }
    }
    let mut slot = Some(f);
    // SAFETY: `run::<F>` takes exactly the `Option<F>` passed, which outlives the call
    // (the shim returns only after `run` has returned); `F: Send`, so running it on the
    // kworker's thread is sound.
    unsafe { elisa_shim_call_unbound(run::<F>, core::ptr::addr_of_mut!(slot).cast()) };
}
unsafe extern "C" {
    /// Creates the debugfs files. Module init only.
    pub(crate) fn elisa_shim_init() -> c_int;
    /// Undoes `elisa_shim_init`. Module exit only.
    pub(crate) fn elisa_shim_exit();
    /// Registers `/dev/elisa` with `.owner = THIS_MODULE`. Returns 0 or a negative errno.
    pub(crate) fn elisa_shim_misc_register() -> c_int;
    /// Unregisters `/dev/elisa`. Only after a successful register.
    pub(crate) fn elisa_shim_misc_deregister();
    /// `boot_cpu_has(X86_FEATURE_VMX)`: the CPU has VMX, and the kernel did not turn it off.
    pub(crate) fn elisa_shim_has_vmx() -> bool;
    /// MSR `msr` of the CPU this runs on, #GP-safe: 0 and `*val` set, or a negative errno.
    pub(crate) fn elisa_shim_rdmsr_local(msr: u32, val: *mut u64) -> c_int;

    /// The `struct kvm` of a KVM VM fd of the caller, with a reference, or an `ERR_PTR`;
    /// `owner` gets the module that owns the VM's file, pinned (null where KVM is built in).
    pub(crate) fn elisa_shim_kvm_from_fd(fd: c_int, owner: *mut *mut c_void) -> *mut c_void;
    /// Drops a VM reference, then the pin of `owner`; may destroy the VM. Process context.
    pub(crate) fn elisa_shim_kvm_put(kvm: *mut c_void, owner: *mut c_void);
    /// The pid of the process that created the VM (`kvm->userspace_pid`), for debugfs.
    pub(crate) fn elisa_shim_kvm_pid(kvm: *mut c_void) -> c_int;
    /// `KVM_MAX_VCPUS`.
    pub(crate) fn elisa_shim_max_vcpus() -> u32;

    /// Fills the offsets of the `struct kvm_vcpu` fields the hooks read.
    pub(crate) fn elisa_shim_vcpu_layout(out: *mut VcpuLayout);
    /// 0 for a default VM (not TDX, SEV or software-protected), else a negative errno and
    /// the reason in `*why` (a static string).
    pub(crate) fn elisa_shim_kvm_check(kvm: *mut c_void, why: *mut *const c_char) -> c_int;
    /// `cond_resched()`, then `fatal_signal_pending(current)`. Process context.
    pub(crate) fn elisa_shim_resched_fatal_signal() -> bool;
    /// Whether a message caused by a caller's input may be logged now ([`pr_info_rl`]).
    pub(crate) fn elisa_shim_log_ratelimit() -> bool;
    /// The guest's PKRU in effect, XCR0, IA32_XSS, IA32_U_CET and IA32_PL3_SSP, into
    /// `out[0..5]`. From its probes.
    pub(crate) fn elisa_shim_vcpu_xstate(vcpu: *mut c_void, out: *mut u64);
    /// Whether the vCPU's CPUID exposes CET (shadow stacks or IBT). From its entry hook.
    pub(crate) fn elisa_shim_vcpu_cet(vcpu: *mut c_void) -> bool;
    /// The EPTP of the vCPU's current root as KVM builds it (0 when none). From its entry
    /// probe.
    pub(crate) fn elisa_shim_vcpu_root_eptp(vcpu: *mut c_void) -> u64;
    /// Makes the vCPU leave guest mode soon, if it is in it (a reschedule IPI to its CPU).
    /// Process context.
    pub(crate) fn elisa_shim_vcpu_kick(vcpu: *mut c_void);

    /// Registers the entry hook (an ftrace direct call, or the `kvm_entry` probe). Process
    /// context.
    pub(crate) fn elisa_shim_hooks_register() -> c_int;
    /// The last VM is detached: the hook goes a second later unless a VM is attached
    /// again. Waits for nothing (the caller waits for the hook calls still running with
    /// [`elisa_shim_hooks_sync`]). Process context.
    pub(crate) fn elisa_shim_hooks_unregister();
    /// Waits until every probe and exit trampoline running now has returned
    /// (`tracepoint_synchronize_unregister`, RCU, an IPI to every CPU). Process context.
    pub(crate) fn elisa_shim_hooks_sync();
    /// Which entry hooks are registered: bit 0 the ftrace direct call, bit 1 the
    /// `kvm_entry` probe, bit 2 the direct call being unregistered. Any context.
    pub(crate) fn elisa_shim_hook_state() -> c_int;
    /// Keeps the module loaded until the host reboots. Process context.
    pub(crate) fn elisa_shim_pin_module();
    /// Runs `f(arg)` in a kworker of elisa's workqueue and waits for it. Process context.
    pub(crate) fn elisa_shim_call_unbound(f: unsafe extern "C" fn(*mut c_void), arg: *mut c_void);
    /// Adds a record's key to the hook's table. Process context, under `REG_LOCK`; the
    /// key must stay at its address until unlinked and a grace period has passed.
    pub(crate) fn elisa_shim_hook_link(key: *mut HookKey);
    /// Takes a linked key out of the hook's table. Process context, under `REG_LOCK`.
    pub(crate) fn elisa_shim_hook_unlink(key: *mut HookKey);
    /// Clears every CPU's reference to a vCPU state before it is freed. Process context.
    pub(crate) fn elisa_shim_hook_forget(state: *mut c_void);
    /// Creates an elisa-vm file owning `priv_`; returns its fd or a negative errno.
    pub(crate) fn elisa_shim_vm_fd(priv_: *mut c_void) -> c_int;
    /// `page_to_phys()`.
    pub(crate) fn elisa_shim_page_to_phys(page: *mut c_void) -> u64;
    /// `page_address()`: lowmem pages only.
    pub(crate) fn elisa_shim_page_address(page: *mut c_void) -> *mut c_void;
    /// KVM's `online_vcpus`.
    pub(crate) fn elisa_shim_online_vcpus(kvm: *mut c_void) -> u32;
    /// `kvm_get_vcpu()`, or null.
    pub(crate) fn elisa_shim_get_vcpu(kvm: *mut c_void, i: u32) -> *mut c_void;
    /// The first GPA above every memslot. Process context.
    pub(crate) fn elisa_shim_gpa_end(kvm: *mut c_void) -> u64;
    /// Whether every process that used the VM's mm has exited (its memory cgroup owner
    /// is gone).
    pub(crate) fn elisa_shim_kvm_orphaned(kvm: *mut c_void) -> bool;
    /// Whether no task uses the VM's mm any more (`mm_users` is 0, for good): no vCPU of
    /// the VM can ever enter again.
    pub(crate) fn elisa_shim_kvm_unrunnable(kvm: *mut c_void) -> bool;
    /// Charges the calling task's accounted allocations to the memory cgroup of the VM's
    /// owner until [`elisa_shim_charge_end`]: returns that cgroup (referenced, or null) and
    /// the scope it replaces in `*old`; `ERR_PTR(-ESRCH)` (no scope opened) if the VM's
    /// owner is gone. Process context.
    pub(crate) fn elisa_shim_charge_begin(kvm: *mut c_void, old: *mut *mut c_void) -> *mut c_void;
    /// Ends that scope, in the same task, and drops the reference.
    pub(crate) fn elisa_shim_charge_end(memcg: *mut c_void, old: *mut c_void);
    /// A triple-fault request: the run ends with `KVM_EXIT_SHUTDOWN`.
    pub(crate) fn elisa_shim_request_shutdown(vcpu: *mut c_void);
    /// CR2 and `vcpu->arch.cr2` = 0. From its exit trampoline.
    pub(crate) fn elisa_shim_clear_cr2(vcpu: *mut c_void);
    /// INVEPT of the `n` EPTPs at `eptps` on every CPU in VMX operation, with one IPI per
    /// CPU for all of them. Process context.
    pub(crate) fn elisa_shim_invept_all(eptps: *const u64, n: u32);
    /// A synchronous IPI to every CPU that does nothing (each has had IRQs on since).
    /// Process context.
    pub(crate) fn elisa_shim_sync_all_cpus();
    /// Long-term pins and accounts `npages` pages of a shmem or hugetlbfs file, writes
    /// their HPAs to `hpas`; the pin goes to `*pin_out`, the reason of a failure to `*why`
    /// (a static C string). Process context.
    pub(crate) fn elisa_shim_region_pin(
        fd: c_int,
        offset: u64,
        npages: u64,
        hpas: *mut u64,
        pin_out: *mut *mut c_void,
        why: *mut *const c_char,
    ) -> c_int;
    /// Releases a pin of `elisa_shim_region_pin`. Process context.
    pub(crate) fn elisa_shim_region_unpin(pin: *mut c_void);
    /// The 4 KiB pages of a pin whose folio has left its file (truncated or punched out);
    /// 0 when every page is the file's. Any context.
    pub(crate) fn elisa_shim_region_decoupled(pin: *mut c_void) -> u64;
    /// Writes the name of a pin for the kernel log (file, range, creating pid) to `buf`,
    /// NUL-terminated within `len` bytes.
    pub(crate) fn elisa_shim_region_name(pin: *mut c_void, buf: *mut c_char, len: usize);
    /// A new elisa-region (1) or elisa-service (2) fd owning `priv_`.
    pub(crate) fn elisa_shim_obj_fd(kind: c_int, priv_: *mut c_void) -> c_int;
    /// The private data of such a file behind `fd` (with a file reference in `*filp`).
    pub(crate) fn elisa_shim_obj_fget(
        fd: c_int,
        kind: c_int,
        filp: *mut *mut c_void,
    ) -> *mut c_void;
    /// `fput()`.
    /// Creates the debugfs directory `elisa/vm<id>`: a dentry, an `ERR_PTR` or null.
    /// Process context.
    pub(crate) fn elisa_shim_debugfs_vm_dir(id: u64) -> *mut c_void;
    /// Creates `vcpu<idx>-views` in `dir` (skipped for an error or null `dir`) whose open
    /// hands `state` to `elisa_rust_views_open`. Process context.
    pub(crate) fn elisa_shim_debugfs_views_file(dir: *mut c_void, idx: u32, state: *mut c_void);
    /// Removes a directory from `elisa_shim_debugfs_vm_dir` with its files, after every open
    /// in progress returned (skipped for an error or null). Process context.
    pub(crate) fn elisa_shim_debugfs_remove(dir: *mut c_void);
}
