// SPDX-License-Identifier: GPL-2.0
//! The KVM objects elisa holds: [`Kvm`] (a VM, with a reference) and [`KvmVcpu`] (one of
//! its vCPUs), the only holders of `struct kvm` and `struct kvm_vcpu` pointers in the
//! module. A vCPU's `vcpu_idx`, general-register copies, `RIP` and `EFER` are read at byte
//! offsets the C shim computes for the tree elisa is built against
//! (`elisa_shim_vcpu_layout`), so that the hook's attached path makes no call into C.

use crate::shim;
use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use kernel::{bindings, prelude::*, str::CStr};

/// Offsets of the `struct kvm_vcpu` fields read here (`shim::VcpuLayout`), set once at
/// module init, before any hook can run.
static OFF_IDX: AtomicU32 = AtomicU32::new(0);
static OFF_REGS: AtomicU32 = AtomicU32::new(0);
static OFF_RIP: AtomicU32 = AtomicU32::new(0);
static OFF_EFER: AtomicU32 = AtomicU32::new(0);
static OFF_PEBS_ENABLE: AtomicU32 = AtomicU32::new(0);

/// Number of general registers.
pub(crate) const NR_GPRS: usize = 16;

/// A general register, numbered as `vcpu->arch.regs` is indexed (KVM's `enum kvm_reg`,
/// the x86 encoding).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// Every general register, in index order.
    pub(crate) const ALL: [Gpr; NR_GPRS] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// Its index in `vcpu->arch.regs`, below [`NR_GPRS`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Reads the vCPU layout from the shim. Module init.
pub(crate) fn init() {
    let mut l = shim::VcpuLayout::default();
    // SAFETY: `l` is a valid, writable `struct elisa_vcpu_layout`.
    unsafe { shim::elisa_shim_vcpu_layout(&mut l) };
    OFF_IDX.store(l.vcpu_idx, Relaxed);
    OFF_REGS.store(l.regs, Relaxed);
    OFF_RIP.store(l.rip, Relaxed);
    OFF_EFER.store(l.efer, Relaxed);
    OFF_PEBS_ENABLE.store(l.pebs_enable, Relaxed);
}

/// A `struct kvm_vcpu` of a VM elisa works on: the only way the module holds one.
///
/// # Invariants
///
/// Points to a live `struct kvm_vcpu` for as long as the value exists: it is made from a
/// entry hook's argument, or from `kvm_get_vcpu()` of a VM elisa holds a reference
/// on, and kept only in state that the attachment (and so that reference) outlives.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct KvmVcpu(NonNull<c_void>);

// SAFETY: the pointer is only dereferenced by the accessors below, per field: KVM's register
// copies only from the vCPU's own probes (one thread at a time), the rest through the
// shim's functions, which are safe from any thread while the VM exists.
unsafe impl Send for KvmVcpu {}
// SAFETY: as above.
unsafe impl Sync for KvmVcpu {}

impl KvmVcpu {
    /// `None` for a null pointer.
    ///
    /// # Safety
    ///
    /// `vcpu` is null or a live `struct kvm_vcpu` that stays live as long as the value: the
    /// hook's argument, used within the hook, or a vCPU of a VM the caller holds a
    /// reference on for as long as it keeps the value.
    pub(crate) unsafe fn from_raw(vcpu: *mut c_void) -> Option<Self> {
        // INVARIANT: the caller guarantees the lifetime.
        NonNull::new(vcpu).map(KvmVcpu)
    }

    fn field(self, off: usize) -> *mut u8 {
        self.0.as_ptr().cast::<u8>().wrapping_add(off)
    }

    fn reg_ptr(self, r: Gpr) -> *mut u64 {
        self.field(OFF_REGS.load(Relaxed) as usize + r.index() * 8)
            .cast()
    }

    /// KVM's `vcpu_idx`.
    pub(crate) fn idx(self) -> u32 {
        // SAFETY: a live `struct kvm_vcpu` (type invariant); the offset is that of its
        // `vcpu_idx` (from the shim), which never changes.
        unsafe {
            self.field(OFF_IDX.load(Relaxed) as usize)
                .cast::<u32>()
                .read()
        }
    }

    /// KVM's copy of general register `r`. Only from the vCPU's own probes: between VM exit
    /// and entry these copies are what the guest gets at the next entry.
    pub(crate) fn gpr(self, r: Gpr) -> u64 {
        // SAFETY: a live `struct kvm_vcpu` (type invariant); `reg_ptr` is inside its
        // `arch.regs` (a `Gpr` indexes one of its 16 entries), and only the vCPU's own
        // thread touches it in a probe.
        unsafe { self.reg_ptr(r).read() }
    }

    /// Sets KVM's copy of general register `r`. Only from the vCPU's own probes.
    pub(crate) fn set_gpr(self, r: Gpr, v: u64) {
        // SAFETY: as in `gpr`.
        unsafe { self.reg_ptr(r).write(v) }
    }

    /// KVM's copy of `RIP`. Only from the vCPU's own probes.
    pub(crate) fn rip(self) -> u64 {
        // SAFETY: the offset of `arch.rip` in a live `struct kvm_vcpu`; see `gpr`.
        unsafe {
            self.field(OFF_RIP.load(Relaxed) as usize)
                .cast::<u64>()
                .read()
        }
    }

    /// Sets KVM's copy of `RIP`. Only from the vCPU's own probes.
    pub(crate) fn set_rip(self, v: u64) {
        // SAFETY: the offset of `arch.rip` in a live `struct kvm_vcpu`; see `gpr`.
        unsafe {
            self.field(OFF_RIP.load(Relaxed) as usize)
                .cast::<u64>()
                .write(v)
        }
    }

    /// KVM's `EFER` of the guest (`arch.efer`, which KVM keeps current). Only from the
    /// vCPU's own probes.
    pub(crate) fn efer(self) -> u64 {
        // SAFETY: the offset of `arch.efer` in a live `struct kvm_vcpu`; see `gpr`.
        unsafe {
            self.field(OFF_EFER.load(Relaxed) as usize)
                .cast::<u64>()
                .read()
        }
    }

    /// KVM's `IA32_PEBS_ENABLE` of the guest (`arch.pmu.pebs_enable`; every guest write to
    /// it exits, so it is current at entry). Only from the vCPU's own probes.
    pub(crate) fn pebs_enable(self) -> u64 {
        // SAFETY: the offset of `arch.pmu.pebs_enable` in a live `struct kvm_vcpu`; see `gpr`.
        unsafe {
            self.field(OFF_PEBS_ENABLE.load(Relaxed) as usize)
                .cast::<u64>()
                .read()
        }
    }

    /// The EPTP of the root KVM loaded for the vCPU's current MMU, built as KVM builds it;
    /// `None` when it has none. Only from the vCPU's own entry hook.
    pub(crate) fn root_eptp(self) -> Option<u64> {
        // SAFETY: a live `struct kvm_vcpu` (type invariant), from its own thread (which
        // holds `vcpu->mutex`).
        let eptp = unsafe { shim::elisa_shim_vcpu_root_eptp(self.0.as_ptr()) };
        (eptp != 0).then_some(eptp)
    }

    /// The guest's `PKRU` in effect (the register), `XCR0`, `IA32_XSS`, and its user CET
    /// state (`IA32_U_CET`, `IA32_PL3_SSP`: the registers, 0 without CET). Only from the
    /// vCPU's own probes, with IRQs off.
    pub(crate) fn xstate(self) -> [u64; 5] {
        let mut out = [0u64; 5];
        // SAFETY: a live `struct kvm_vcpu` (type invariant), from its own probe; `out` is
        // writable for 5 u64s.
        unsafe { shim::elisa_shim_vcpu_xstate(self.0.as_ptr(), out.as_mut_ptr()) };
        out
    }

    /// Whether the VMM exposed CET (shadow stacks or IBT) in the vCPU's CPUID. Only from
    /// the vCPU's own probes.
    pub(crate) fn cet_exposed(self) -> bool {
        // SAFETY: a live `struct kvm_vcpu` (type invariant), from its own thread (which
        // holds `vcpu->mutex`).
        unsafe { shim::elisa_shim_vcpu_cet(self.0.as_ptr()) }
    }

    /// Makes the vCPU leave guest mode soon, if it is in it: a reschedule IPI to its CPU,
    /// as `kvm_vcpu_kick()` (KVM-internal) sends (any interrupt makes it exit; it
    /// re-enters through the entry hook). Process context.
    pub(crate) fn kick(self) {
        // SAFETY: a live `struct kvm_vcpu` (type invariant); process context.
        unsafe { shim::elisa_shim_vcpu_kick(self.0.as_ptr()) }
    }

    /// Sets the guest's CR2 to 0, in the CPU (which KVM saves after the exit) and in KVM's
    /// copy. From the vCPU's own exit trampoline.
    pub(crate) fn clear_cr2(self) {
        // SAFETY: a live `struct kvm_vcpu` (type invariant), from its own exit trampoline.
        unsafe { shim::elisa_shim_clear_cr2(self.0.as_ptr()) }
    }

    /// Ends the VM's run of this vCPU with `KVM_EXIT_SHUTDOWN` at its next entry attempt.
    /// From the vCPU's own probes.
    pub(crate) fn request_shutdown(self) {
        // SAFETY: a live `struct kvm_vcpu` (type invariant); an atomic bit set.
        unsafe { shim::elisa_shim_request_shutdown(self.0.as_ptr()) }
    }
}

/// A `struct kvm` on which elisa holds a reference (`kvm_get_kvm`), and the module that
/// owns its file (kvm_intel, or null where it is built in), pinned: the VM's destruction
/// at the last reference runs that module's code.
///
/// # Invariants
///
/// Points to a live `struct kvm` from [`Kvm::from_fd`], which takes the reference and the
/// pin, until [`Kvm::put`] drops them; no copy is used after that.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kvm(NonNull<c_void>, *mut c_void);

// SAFETY: the pointer is only handed to the shim's functions, which are safe from any
// thread while the VM exists (the reference keeps it).
unsafe impl Send for Kvm {}
// SAFETY: as above.
unsafe impl Sync for Kvm {}

impl Kvm {
    /// The VM of the caller's KVM VM fd `fd`, with a reference taken: `EBADF` for a closed
    /// fd, `EINVAL` for a file that is not a KVM VM. Process context.
    pub(crate) fn from_fd(fd: i32) -> Result<Kvm> {
        let mut owner = core::ptr::null_mut();
        // SAFETY: `fd` is an fd number of the calling process; the shim checks it, and
        // writes `owner` only when it returns a VM.
        let p =
            kernel::error::from_err_ptr(unsafe { shim::elisa_shim_kvm_from_fd(fd, &mut owner) })?;
        // INVARIANT: the shim returned a live VM with a reference taken and its module
        // pinned.
        NonNull::new(p.cast::<c_void>())
            .map(|p| Kvm(p, owner))
            .ok_or(EINVAL)
    }

    /// Drops the reference. Process context (the VM may be destroyed here).
    ///
    /// # Safety
    ///
    /// Once per [`Kvm::from_fd`]; neither this value, its copies nor its vCPUs are used
    /// afterwards.
    pub(crate) unsafe fn put(self) {
        // SAFETY: the reference and the pin `from_fd` took (the caller's contract); process
        // context.
        unsafe { shim::elisa_shim_kvm_put(self.0.as_ptr(), self.1) }
    }

    /// Whether elisa may program this VM's vCPUs: they run on a VMCS whose `EPT_POINTER`
    /// is KVM's EPT root, which is what the hooks program. That is a default VM (not TDX,
    /// SEV or software-protected: `elisa_shim_kvm_check`) under kvm_intel with `ept=1`
    /// (with `ept=0` KVM uses shadow paging and a VM entry with EPTP switching enabled
    /// fails; `ept` is kvm_intel's, from [`KvmIntelParams::read`]). Ok, or a negative errno
    /// and the reason. Process context.
    pub(crate) fn check(self, ept: bool) -> core::result::Result<(), (c_int, &'static CStr)> {
        let mut why: *const kernel::ffi::c_char = core::ptr::null();
        // SAFETY: a live VM (type invariant); `why` is writable.
        let r = unsafe { shim::elisa_shim_kvm_check(self.0.as_ptr(), &mut why) };
        if r != 0 {
            // SAFETY: the shim sets `why` to a static NUL-terminated string when it fails.
            return Err((r, unsafe { CStr::from_char_ptr(why) }));
        }
        if !ept {
            return Err((
                -(bindings::EOPNOTSUPP as c_int),
                c"kvm_intel runs with ept=0 (shadow paging): the views need EPT",
            ));
        }
        Ok(())
    }

    /// The `struct kvm`, for the hook's hash key (compared, never dereferenced, there).
    pub(crate) fn as_ptr(self) -> *mut c_void {
        self.0.as_ptr()
    }

    /// The process that made the VM.
    pub(crate) fn pid(self) -> i32 {
        // SAFETY: a live VM (type invariant).
        unsafe { shim::elisa_shim_kvm_pid(self.0.as_ptr()) }
    }

    /// The first GPA above every memslot. Process context (takes `slots_lock`).
    pub(crate) fn gpa_end(self) -> u64 {
        // SAFETY: a live VM (type invariant); process context.
        unsafe { shim::elisa_shim_gpa_end(self.0.as_ptr()) }
    }

    /// Until the returned scope is dropped, what the calling task allocates with
    /// `__GFP_ACCOUNT` is charged to the memory cgroup of the VM's owner, not to the
    /// caller: a grant builds each vCPU's views for the VM (about 200 KiB a vCPU for a
    /// one-page service, 4 MiB more per GiB of region in 4 KiB leaves), so a manager that
    /// grants for a VMM (`elisactl serve`) must not pay for the VMM's vCPUs, and a VMM
    /// at its `memory.max` meets its own limit. `ESRCH` if every process that used the
    /// VM's mm has exited ([`Kvm::orphaned`]): its owner's cgroup is gone, and what is
    /// built for it would be charged to no one. Process context.
    pub(crate) fn charge_to_owner(self) -> Result<OwnerCharge> {
        let mut old = core::ptr::null_mut();
        // SAFETY: a live VM (type invariant); process context; `old` is writable. The
        // scope is ended by `OwnerCharge`'s drop, on this task (the type is not `Send`);
        // an `ERR_PTR` opened none.
        let memcg = kernel::error::from_err_ptr(unsafe {
            shim::elisa_shim_charge_begin(self.0.as_ptr(), &mut old)
        })?;
        Ok(OwnerCharge { memcg, old })
    }

    /// Whether every process that used the VM's mm has exited. Such a VM can never run
    /// again (KVM refuses a vCPU ioctl from any other process), and memory cgroups no
    /// longer know whom to charge for it: attach and grant refuse it (`ESRCH`).
    pub(crate) fn orphaned(self) -> bool {
        // SAFETY: a live VM (type invariant); KVM holds its mm (mmgrab) for the VM's life.
        unsafe { shim::elisa_shim_kvm_orphaned(self.0.as_ptr()) }
    }

    /// Whether no vCPU of the VM can ever enter again: no task uses its mm any more (the
    /// count of its users is 0, and never rises again), and KVM refuses `KVM_RUN` to a task
    /// whose mm is not the VM's. Final, unlike [`Kvm::orphaned`] (the memory cgroup's owner
    /// is gone); a task that holds the mm for a moment (a `/proc` reader) delays it, which
    /// only makes a detach keep pages it could have freed.
    pub(crate) fn unrunnable(self) -> bool {
        // SAFETY: a live VM (type invariant); KVM holds its mm (mmgrab) for the VM's life.
        unsafe { shim::elisa_shim_kvm_unrunnable(self.0.as_ptr()) }
    }

    /// The number of vCPUs fully created.
    pub(crate) fn online_vcpus(self) -> u32 {
        // SAFETY: a live VM (type invariant).
        unsafe { shim::elisa_shim_online_vcpus(self.0.as_ptr()) }
    }

    /// vCPU `i` (its `vcpu_idx`), if it exists. It lives as long as the VM, so as long as
    /// the reference.
    pub(crate) fn vcpu(self, i: u32) -> Option<KvmVcpu> {
        // SAFETY: a live VM (type invariant); vCPUs live as long as the VM, which the
        // reference keeps for as long as elisa keeps the vCPU (its state goes first).
        unsafe { KvmVcpu::from_raw(shim::elisa_shim_get_vcpu(self.0.as_ptr(), i)) }
    }
}

/// A charging scope of [`Kvm::charge_to_owner`]; dropping it ends the scope. Not `Send`
/// (raw pointers): it must end on the task that opened it.
///
/// # Invariants
///
/// `memcg` and `old` are what `elisa_shim_charge_begin` returned on this task, whose
/// scope is still open.
pub(crate) struct OwnerCharge {
    memcg: *mut c_void,
    old: *mut c_void,
}

impl Drop for OwnerCharge {
    fn drop(&mut self) {
        // SAFETY: the scope this value opened on this task (type invariant), ended once.
        unsafe { shim::elisa_shim_charge_end(self.memcg, self.old) }
    }
}

/// kvm_intel's read-only parameters that decide whether elisa may attach.
pub(crate) struct KvmIntelParams {
    /// `nested`: a guest's failing VMFUNC would reach `handle_vmfunc()` (`vm.rs`).
    pub(crate) nested: bool,
    /// `ept`: the views need EPT ([`Kvm::check`]).
    pub(crate) ept: bool,
    /// `pt_mode` 1 (host_guest, settable only in a kernel with `CONFIG_BROKEN`): a guest's
    /// Intel PT writes its trace to guest-physical addresses, which a view would translate
    /// (`vm.rs`).
    pub(crate) pt_guest: bool,
    /// `mbec`: KVM runs its VMCSs with mode-based execute control where the CPU has it;
    /// the views then need EPT's user-execute bit for a user grant's code (`grant.rs`).
    pub(crate) mbec: bool,
    /// `allow_smaller_maxphyaddr`: KVM then intercepts page faults of a vCPU whose CPUID
    /// has a smaller MAXPHYADDR than the host, and injects them itself, with the faulting
    /// address and error code, also one a service raised inside a view (`vm.rs`).
    pub(crate) smaller_maxphyaddr: bool,
}

impl KvmIntelParams {
    /// Reads them from their sysfs files: the parameters are static in kvm-intel, so the
    /// files are the way to read them. They are looked up in a sysfs mount of elisa's own
    /// (`kern_mount`), in no mount namespace: a lookup from the caller's root would let a
    /// VMM in its own mount namespace answer for kvm_intel (and attach under `nested=1`),
    /// and init's root need not hold sysfs (an initramfs, or a rootfs below it). One mount
    /// serves both (its release waits for an RCU grace period). Process context.
    pub(crate) fn read() -> Result<Self> {
        // SAFETY: a NUL-terminated name; the result is a registered type or NULL. sysfs is
        // built in, so no module reference is taken.
        let sysfs = unsafe { bindings::get_fs_type(c"sysfs".as_ptr().cast()) };
        if sysfs.is_null() {
            return Err(ENODEV);
        }
        // SAFETY: `sysfs` is a registered file system type; `kern_mount` returns a mount in
        // no namespace or an `ERR_PTR`, released with `kern_unmount` below.
        let mnt = kernel::error::from_err_ptr(unsafe { bindings::kern_mount(sysfs) })?;
        let root = bindings::path {
            mnt,
            // SAFETY: `mnt` is the live mount made above.
            dentry: unsafe { (*mnt).mnt_root },
        };
        let params = read_bool(&root, c"module/kvm_intel/parameters/nested").and_then(|nested| {
            Ok(Self {
                nested,
                ept: read_bool(&root, c"module/kvm_intel/parameters/ept")?,
                // an int, 0 (system) or 1 (host_guest): '1' reads as true. Only a kernel
                // with CONFIG_BROKEN has the parameter; without it PT stays the host's.
                pt_guest: match read_bool(&root, c"module/kvm_intel/parameters/pt_mode") {
                    Err(e) if e == ENOENT => false,
                    r => r?,
                },
                // KVM clears it when the CPU cannot (the file shows the value in use);
                // kernels before mode-based execute support have no such file.
                mbec: match read_bool(&root, c"module/kvm_intel/parameters/mbec") {
                    Err(e) if e == ENOENT => false,
                    r => r?,
                },
                smaller_maxphyaddr: read_bool(
                    &root,
                    c"module/kvm_intel/parameters/allow_smaller_maxphyaddr",
                )?,
            })
        });
        // SAFETY: the mount made above, not used after (an open file keeps its own
        // reference, and none is open any more).
        unsafe { bindings::kern_unmount(mnt) };
        params
    }
}

/// A boolean sysfs file (`Y`/`1` or `N`/`0`) at `path` below `root`. Process context.
fn read_bool(root: &bindings::path, path: &CStr) -> Result<bool> {
    // SAFETY: `root` is a live mount's root, held by the caller; `path` is NUL-terminated
    // and relative to it; the result is a file or an `ERR_PTR`.
    let f = kernel::error::from_err_ptr(unsafe {
        bindings::file_open_root(root, path.as_char_ptr(), bindings::O_RDONLY as c_int, 0)
    })?;
    let mut c = 0u8;
    let mut pos: bindings::loff_t = 0;
    // SAFETY: `f` is the file opened above for reading; `c` is writable for 1 byte.
    let n = unsafe { bindings::kernel_read(f, (&raw mut c).cast(), 1, &mut pos) };
    // SAFETY: drops the reference `file_open_root` returned; `f` is not used after.
    unsafe { bindings::fput(f) };
    match n {
        1 => Ok(c == b'Y' || c == b'1'),
        n if n < 0 => Err(Error::from_errno(n as c_int)),
        _ => Err(EIO),
    }
}
