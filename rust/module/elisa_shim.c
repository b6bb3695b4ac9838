// SPDX-License-Identifier: GPL-2.0
/*
 * elisa C shim: the pieces of elisa.ko that Rust-for-Linux on 7.2 cannot express.
 * Each function says what is missing on the Rust side and what would remove it.
 * Rust objects are opaque pointers here, but for struct elisa_hook_key, the first field of
 * a VM record, which the entry hook's hash table links and reads.
 */
/* The Rust side's log lines start so too (the kernel crate prefixes the module's name). */
#define pr_fmt(fmt) "elisa: " fmt

#include <linux/anon_inodes.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hugetlb.h>
#include <linux/fcntl.h>
#include <linux/ftrace.h>
#include <linux/hash.h>
#include <linux/kprobes.h>
#include <linux/kvm_host.h>
#include <linux/memcontrol.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/ratelimit.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>
#include <linux/security.h>
#include <linux/seq_file.h>
#include <linux/shmem_fs.h>
#include <linux/smp.h>
#include <linux/string_helpers.h>
#include <linux/tracepoint.h>
#include <linux/workqueue.h>
#include <trace/events/ipi.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/special_insns.h>
#include <asm/msr-index.h>
#include <asm/nospec-branch.h>
#include <asm/vmx.h>

#include "elisa_shim.h"
#include "elisa_exit.h"

/*
 * /dev/elisa.
 *
 * Why C: the kernel crate's MiscDevice vtable leaves file_operations.owner NULL, so the
 * VFS takes no module reference on open and rmmod with the device open is a
 * use-after-free when the file is closed later. A file_operations written here carries
 * .owner = THIS_MODULE; misc_open() installs it with fops_get(), which pins the module
 * while any file is open. Goes away when the kernel crate sets .owner.
 */
static int elisa_fop_open(struct inode *inode, struct file *file)
{
	void *priv = elisa_rust_dev_open();

	if (IS_ERR(priv))
		return PTR_ERR(priv);
	file->private_data = priv;
	return 0;
}

static int elisa_fop_release(struct inode *inode, struct file *file)
{
	elisa_rust_dev_release(file->private_data);
	return 0;
}

/* Whether the file was opened for writing goes along: only such a file may make things. */
static long elisa_fop_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	return elisa_rust_dev_ioctl(file->private_data, cmd, arg,
				    !!(file->f_mode & FMODE_WRITE));
}

static const struct file_operations elisa_dev_fops = {
	.owner = THIS_MODULE,
	.open = elisa_fop_open,
	.release = elisa_fop_release,
	.unlocked_ioctl = elisa_fop_ioctl,
	/* every elisa struct has the same layout on 32- and 64-bit */
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* Mode 0600: only root (or whom the admin grants it by udev rule) may use elisa. */
static struct miscdevice elisa_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "elisa",
	.fops = &elisa_dev_fops,
	.mode = 0600,
};

int elisa_shim_misc_register(void)
{
	return misc_register(&elisa_misc);
}

void elisa_shim_misc_deregister(void)
{
	misc_deregister(&elisa_misc);
}

/*
 * Why C: boot_cpu_has() is a macro (no binding), and boot_cpu_data.x86_capability sits in
 * an anonymous union whose bindgen name (__bindgen_anon_N) is not stable between kernels.
 * Goes away with a kernel crate CPU-feature API. The MSRs are read in caps.rs.
 */
bool elisa_shim_has_vmx(void)
{
	return boot_cpu_has(X86_FEATURE_VMX);
}

/*
 * MSR @msr of the CPU this runs on, #GP-safe: 0 and *@val set, or -EIO where reading it
 * raises #GP. Local, with preemption off for the read: rdmsrq_safe_on_cpu() to the CPU the
 * caller last ran on fails with -ENXIO when that CPU goes offline meanwhile, which read as
 * "no VMX" (a review). KVM requires every CPU to report the same VMX capabilities, so any
 * CPU's value is the host's. Why C: rdmsrq_safe() is an inline with no binding.
 */
int elisa_shim_rdmsr_local(u32 msr, u64 *val)
{
	int r;

	preempt_disable();
	r = rdmsrq_safe(msr, val) ? -EIO : 0;
	preempt_enable();
	return r;
}

/*
 * KVM objects.
 *
 * Why C: struct kvm and struct kvm_vcpu are only reachable from C (no Rust bindings for
 * KVM), and KVM's own file_is_kvm() is not exported to outside modules. Layouts are those
 * of the tree the module is built against.
 *
 * CONFIG_KALLSYMS is required: a VM file is recognised by the name of its ioctl handler
 * (elisa_shim_kvm_from_fd). Without kallsyms %ps prints an address, no file would match,
 * and every ELISA_ATTACH_VM would fail with EINVAL. 7.2 and 7.3 offer no symbol-free test:
 * kvm_vm_fops is static, and file_is_kvm() is exported with
 * EXPORT_SYMBOL_FOR_KVM_INTERNAL, that is only to kvm-intel and kvm-amd (a "module:"
 * namespace, which no other module may import), and not at all when KVM is built in.
 */
#ifndef CONFIG_KALLSYMS
#error "elisa needs CONFIG_KALLSYMS=y: it recognises a KVM VM file by the name of its ioctl handler, kvm_vm_ioctl, because file_is_kvm() is exported to kvm-intel and kvm-amd only"
#endif

/*
 * The entry hook allocates a vCPU's state at its first entry (GFP_NOWAIT), and frees
 * the copy that lost a race, with hard IRQs off: on PREEMPT_RT the page and slab
 * allocators take sleeping locks, which must not happen there.
 */
#ifdef CONFIG_PREEMPT_RT
#error "elisa does not support PREEMPT_RT kernels: its entry hook allocates memory with hard IRQs off"
#endif

/*
 * Resolves a KVM VM file descriptor of the caller to its struct kvm and takes a reference
 * on the VM (kvm_get_kvm), or returns an ERR_PTR: -EBADF for a closed fd, -EINVAL for a
 * file that is not a KVM VM. The VM file is recognised by its anon-inode name "kvm-vm"
 * and by its ioctl handler, kvm_vm_ioctl (%ps, hence CONFIG_KALLSYMS, above); then
 * private_data is the struct kvm. The reference is dropped with elisa_shim_kvm_put().
 *
 * It also pins the module that owns the VM's file (@owner: kvm_intel where it is a module,
 * NULL where it is built in): a VM reference alone does not, only KVM's open files do, and
 * the VM's destruction at the last reference calls into that module. Without the pin,
 * "modprobe -r kvm_intel" succeeds once the VMM's own files are closed while an elisa-vm
 * file still holds the VM, and closing that file then runs freed module text.
 */
struct kvm *elisa_shim_kvm_from_fd(int fd, struct module **owner)
{
	char sym[KSYM_SYMBOL_LEN];
	struct kvm *kvm = ERR_PTR(-EINVAL);
	struct file *f = fget(fd);

	if (!f)
		return ERR_PTR(-EBADF);
	if (!f->f_op || !f->f_op->unlocked_ioctl || !f->private_data)
		goto out;
	/* "kvm_vm_ioctl", or "kvm_vm_ioctl [kvm]" when KVM is a module */
	snprintf(sym, sizeof(sym), "%ps", f->f_op->unlocked_ioctl);
	if ((strcmp(sym, "kvm_vm_ioctl") && strcmp(sym, "kvm_vm_ioctl [kvm]")) ||
	    strcmp(f->f_path.dentry->d_name.name, "kvm-vm"))
		goto out;
	/* The file's reference keeps its module alive here. */
	if (!try_module_get(f->f_op->owner)) {
		kvm = ERR_PTR(-ENODEV);
		goto out;
	}
	*owner = f->f_op->owner;
	kvm = f->private_data;
	kvm_get_kvm(kvm);
out:
	fput(f);
	return kvm;
}

/*
 * Drops what elisa_shim_kvm_from_fd() took: the VM reference, then the pin of @owner. May
 * destroy the VM: process context only. Why C: kvm_put_kvm() is KVM's (no binding).
 */
void elisa_shim_kvm_put(struct kvm *kvm, struct module *owner)
{
	kvm_put_kvm(kvm);
	module_put(owner);
}

/* Why C: struct kvm's layout. The process that made the VM (KVM's debugfs names it so). */
int elisa_shim_kvm_pid(struct kvm *kvm)
{
	return kvm->userspace_pid;
}

/* Why C: KVM_MAX_VCPUS is defined in KVM's headers, which have no Rust binding. */
u32 elisa_shim_max_vcpus(void)
{
	return KVM_MAX_VCPUS;
}

/*
 * Why C: the layout of struct kvm_vcpu is known only to C. The hooks read these fields at
 * the entries and exits of attached VMs; offsets avoid a call per field there.
 */
void elisa_shim_vcpu_layout(struct elisa_vcpu_layout *out)
{
	out->vcpu_idx = offsetof(struct kvm_vcpu, vcpu_idx);
	out->regs = offsetof(struct kvm_vcpu, arch.regs);
	out->rip = offsetof(struct kvm_vcpu, arch.rip);
	out->efer = offsetof(struct kvm_vcpu, arch.efer);
	out->pebs_enable = offsetof(struct kvm_vcpu, arch.pmu.pebs_enable);
}

/*
 * The guest's extended state that decides how a parked excursion would run, from the
 * vCPU's own probes (vcpu.rs compares it before resuming): @out[0] the PKRU in effect (the
 * register: KVM loads the guest's before kvm_entry and reads it back only after kvm_exit,
 * so its arch.pkru copy may be old at the exit; 0 while the guest has neither CR4.PKE nor
 * XCR0.PKRU, when KVM leaves the register at the PKRU of the host thread that loaded the
 * vCPU, kvm_load_guest_xsave_state(), and keys do nothing to the guest: comparing it
 * would fail a parked call back because another VMM thread ran the vCPU), @out[1] XCR0
 * and @out[2] IA32_XSS (KVM's copies, current: their writes exit), @out[3] IA32_U_CET
 * and @out[4] IA32_PL3_SSP (the registers: user CET state is XSAVE-managed, and the
 * guest's is loaded for all of KVM_RUN; 0 on a host without CET, which KVM then exposes
 * to no guest). Also from the exit trampoline: notrace, and no tracepoint. Why C: KVM
 * struct fields, rdpkru() and native_rdmsrq().
 */
notrace void elisa_shim_vcpu_xstate(struct kvm_vcpu *vcpu, u64 out[5])
{
	/* CR4.PKE is not a guest-owned bit: KVM's copy is current (its writes exit). */
	bool guest_pkru = (vcpu->arch.xcr0 & XFEATURE_MASK_PKRU) ||
			  (vcpu->arch.cr4 & X86_CR4_PKE);

	out[0] = cpu_feature_enabled(X86_FEATURE_OSPKE) && guest_pkru ? rdpkru() : 0;
	out[1] = vcpu->arch.xcr0;
	out[2] = vcpu->arch.ia32_xss;
	out[3] = 0;
	out[4] = 0;
	/*
	 * Without the MSR tracepoint, nor a fault's warning: this runs in the exit trampoline
	 * too. IA32_U_CET exists with either CET feature, IA32_PL3_SSP with shadow stacks only.
	 */
	if (boot_cpu_has(X86_FEATURE_SHSTK) || boot_cpu_has(X86_FEATURE_IBT))
		out[3] = native_rdmsrq(MSR_IA32_U_CET);
	if (boot_cpu_has(X86_FEATURE_SHSTK))
		out[4] = native_rdmsrq(MSR_IA32_PL3_SSP);
}

/*
 * Whether @kvm is a default VM (not TDX, SEV or software-protected), whose vCPUs run on a
 * VMCS whose EPT_POINTER is KVM's EPT root, which is what the hooks program; kvm.rs also
 * requires kvm_intel's ept=1. Why C: kvm->arch.vm_type is a KVM struct field (no binding).
 */
int elisa_shim_kvm_check(struct kvm *kvm, const char **why)
{
	if (kvm->arch.vm_type != KVM_X86_DEFAULT_VM) {
		*why = "the VM is not a default VM (TDX, SEV and software-protected VMs have no VMCS elisa may program)";
		return -EOPNOTSUPP;
	}
	return 0;
}

/* The number of vCPUs of @kvm that are fully created. Why C: a struct kvm field. */
u32 elisa_shim_online_vcpus(struct kvm *kvm)
{
	return atomic_read(&kvm->online_vcpus);
}

/*
 * vCPU @i of @kvm (its vcpu_idx is @i), or NULL. Why C: kvm_get_vcpu() is an inline over
 * KVM's xarray. The caller holds a VM reference; vCPUs live as long as the VM.
 */
struct kvm_vcpu *elisa_shim_get_vcpu(struct kvm *kvm, u32 i)
{
	return kvm_get_vcpu(kvm, i);
}

/*
 * The first GPA above every memslot of @kvm (all address spaces, KVM's private slots
 * included). Why C: memslots are KVM-internal structures. Taken under slots_lock, so it
 * is exact at the time of the call; memslots added later are the VMM's to keep out of
 * the trusted window it was told about.
 */
u64 elisa_shim_gpa_end(struct kvm *kvm)
{
	struct kvm_memory_slot *slot;
	u64 end = 0;
	int as, bkt;

	mutex_lock(&kvm->slots_lock);
	for (as = 0; as < kvm_arch_nr_memslot_as_ids(kvm); as++) {
		struct kvm_memslots *slots = __kvm_memslots(kvm, as);

		kvm_for_each_memslot(slot, bkt, slots)
			end = max(end, (u64)(slot->base_gfn + slot->npages) << PAGE_SHIFT);
	}
	mutex_unlock(&kvm->slots_lock);
	return end;
}

/*
 * Whether every process that used @kvm's mm has exited (its owner is gone): the VM's
 * vCPUs can never run again, and what is built for it could be charged to no one. Why C:
 * mm->owner is an RCU pointer of struct mm_struct (CONFIG_MEMCG). Without memory cgroups
 * nothing is charged anyway, and the VM is taken as owned.
 */
bool elisa_shim_kvm_orphaned(struct kvm *kvm)
{
#ifdef CONFIG_MEMCG
	return !rcu_access_pointer(kvm->mm->owner);
#else
	return false;
#endif
}

/*
 * Until elisa_shim_charge_end(), the calling task's __GFP_ACCOUNT allocations are charged
 * to the memory cgroup of @kvm's owner (the process that made the VM) instead of its own:
 * what a grant builds for a VM is the VM's, whoever grants (a manager such as elisactl
 * serve grants for a VMM it need not trust, and must not pay for the VMM's vCPUs).
 * Returns that cgroup, referenced (NULL without memory cgroups), and puts the scope it
 * replaces in *@old. Process context. Why C: set_active_memcg() is a static inline on
 * task fields, and kvm->mm is KVM's (held by KVM with mmgrab() for the VM's life).
 */
struct mem_cgroup *elisa_shim_charge_begin(struct kvm *kvm, struct mem_cgroup **old)
{
	struct mem_cgroup *memcg = get_mem_cgroup_from_mm(kvm->mm);

	/*
	 * Once the last process using the VM's mm has exited, mm->owner is NULL and
	 * get_mem_cgroup_from_mm() falls back to the root cgroup, where nothing is limited:
	 * a grant would build every vCPU's views outside any memory.max. Such a VM can never
	 * run again (KVM refuses a vCPU ioctl from another mm). An owner that is gone stays
	 * gone, so a non-NULL owner read after the lookup means the cgroup came from it.
	 */
	if (elisa_shim_kvm_orphaned(kvm)) {
		mem_cgroup_put(memcg);
		return ERR_PTR(-ESRCH);
	}
	*old = set_active_memcg(memcg);
	return memcg;
}

/* Ends the scope elisa_shim_charge_begin() opened; same task. Why C: as above. */
void elisa_shim_charge_end(struct mem_cgroup *memcg, struct mem_cgroup *old)
{
	set_active_memcg(old);
	mem_cgroup_put(memcg);
}

/*
 * Whether no task can ever run a vCPU of @kvm again: no task uses the VM's mm any more
 * (mm_users is 0; it never rises from 0, mmget_not_zero() refuses), and KVM_RUN, like every
 * vCPU ioctl, is refused to a task whose mm is not the VM's. Why C: kvm->mm and mm_users
 * are fields of KVM's and the mm's structs (the mm struct itself lives as long as the VM:
 * KVM holds it with mmgrab()).
 */
bool elisa_shim_kvm_unrunnable(struct kvm *kvm)
{
	return atomic_read(&kvm->mm->mm_users) == 0;
}

/*
 * Ends the VM's run of @vcpu with KVM_EXIT_SHUTDOWN at its next entry attempt (a triple
 * fault request). Why C: kvm_make_request() is an inline on KVM's request bits. Safe from
 * the vCPU's own entry hook or exit trampoline (it is an atomic bit set).
 */
notrace void elisa_shim_request_shutdown(struct kvm_vcpu *vcpu)
{
	kvm_make_request(KVM_REQ_TRIPLE_FAULT, vcpu);
}

/*
 * Forgets the guest's CR2: after a broken excursion it holds a fault address of the gate
 * or sub view. From the vCPU's exit trampoline, before KVM's exit path saves the register
 * into its copy (which it loads at the next entry): both are cleared. Why C: a struct
 * kvm_vcpu field, and native_write_cr2().
 */
notrace void elisa_shim_clear_cr2(struct kvm_vcpu *vcpu)
{
	native_write_cr2(0);
	vcpu->arch.cr2 = 0;
}

/*
 * Between two steps of a long ioctl (a grant builds each vCPU's views, up to 8 GiB of
 * regions in 4 KiB leaves, about a second per GiB): gives the CPU up if a reschedule is due,
 * so that a kernel without full preemption does not stall it, then says whether the calling
 * task has a fatal signal (SIGKILL) pending. Process context. Why C: no binding; the kernel
 * crate's Task has signal_pending() only, and cond_resched() and fatal_signal_pending() are
 * macros and static inlines. Goes away when Task gets both.
 */
bool elisa_shim_resched_fatal_signal(void)
{
	cond_resched();
	return fatal_signal_pending(current);
}

/*
 * Whether a message that a caller's input causes (a refused grant, a wrong fd) may go to
 * the kernel log now: at most 10 every 5 s for the module, so that an fd holder looping
 * on errors cannot flood the log. Why C: DEFINE_RATELIMIT_STATE and __ratelimit() have
 * no binding.
 */
static DEFINE_RATELIMIT_STATE(elisa_log_rs, 5 * HZ, 10);

bool elisa_shim_log_ratelimit(void)
{
	return __ratelimit(&elisa_log_rs);
}

/*
 * Whether the VMM exposed CET (shadow stacks, CPUID.7.0:ECX[7], or indirect-branch
 * tracking, EDX[20]) in @vcpu's CPUID: the guest may then turn it on without an exit
 * (KVM leaves CR4.CET guest-owned and passes S_CET through), and a #CP inside the sub
 * view would be delivered through descriptor tables the guest placed there
 * (Documentation/security.rst). From the vCPU's entry hook, in the thread that holds
 * vcpu->mutex, which KVM_SET_CPUID2 takes too. Why C: struct kvm_vcpu_arch fields.
 */
bool elisa_shim_vcpu_cet(struct kvm_vcpu *vcpu)
{
	int i;

	for (i = 0; i < vcpu->arch.cpuid_nent; i++) {
		const struct kvm_cpuid_entry2 *e = &vcpu->arch.cpuid_entries[i];

		if (e->function == 7 && e->index == 0)
			return (e->ecx & BIT(7)) || (e->edx & BIT(20));
	}
	return false;
}

/*
 * The EPTP of @vcpu's current root as kvm_intel's construct_eptp() (static) builds it in
 * 7.2 and 7.3, which KVM has loaded into EPT_POINTER by the time its kvm_entry tracepoint
 * runs: the root, write-back, a 4-level walk for the dummy root, else 5 levels for a
 * 5-level root, and A/D unless KVM's roots run without (the MMU's root_role, from which
 * KVM makes its roots: ad_disabled is set exactly when kvm_intel's eptad is off). 0 when
 * no root is loaded. From the vCPU's entry hook. Why C: vcpu->arch.mmu and its root role
 * are struct kvm_vcpu_arch fields.
 */
u64 elisa_shim_vcpu_root_eptp(struct kvm_vcpu *vcpu)
{
	struct kvm_mmu *mmu = vcpu->arch.mmu;
	u64 eptp;

	if (!mmu || !VALID_PAGE(mmu->root.hpa))
		return 0;
	eptp = mmu->root.hpa | VMX_EPTP_MT_WB;
	if (is_zero_pfn(mmu->root.hpa >> PAGE_SHIFT))
		return eptp | VMX_EPTP_PWL_4;
	eptp |= mmu->root_role.level == 5 ? VMX_EPTP_PWL_5 : VMX_EPTP_PWL_4;
	if (!mmu->root_role.ad_disabled)
		eptp |= VMX_EPTP_AD_ENABLE_BIT;
	return eptp;
}

/*
 * Makes @vcpu leave guest mode soon if it is in it, as kvm_vcpu_kick() (KVM-internal)
 * does: a reschedule IPI to the CPU it last ran on, unless that is this CPU (then it is
 * not in guest mode now). The IPI runs no code of this module on the target, so none
 * still in flight can reach the module's text after an unload. With preemption off
 * here, the target cannot finish going offline in between (smp_send_reschedule() warns
 * for an offline CPU). Why C: vcpu->cpu is a struct kvm_vcpu field (no binding), and
 * smp_send_reschedule() is a macro over smp_ops and a tracepoint.
 */
void elisa_shim_vcpu_kick(struct kvm_vcpu *vcpu)
{
	int cpu = READ_ONCE(vcpu->cpu);
	int me = get_cpu();

	if (cpu != me && (unsigned int)cpu < nr_cpu_ids && cpu_online(cpu))
		smp_send_reschedule(cpu);
	put_cpu();
}

/*
 * KVM hooks.
 *
 * The entry hook runs at every VM entry of every VM while at least one VM is attached,
 * with IRQs off and the vCPU's VMCS current, after KVM loaded its MMU root and before VM
 * entry. It is one of two mechanisms (design.rst, "The entry hook"; the module parameter
 * entry_hook below):
 *
 *  - ftrace (the default): an ftrace direct call at the entry of kvm_wait_lapic_expire(),
 *    which vmx_vcpu_run() calls last before the entry, to elisa_entry_direct
 *    (elisa_entry.S). A VM elisa does not know pays the nine instructions of its bucket
 *    test. Needs CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, and the function free of another
 *    direct call (a BPF fentry program on it);
 *  - tracepoint: a probe on kvm_entry, which vmx_vcpu_run() fires a little earlier (before
 *    its writes of GUEST_RSP, GUEST_RIP, HOST_CR3, HOST_CR4 and the preemption timer, none
 *    of them elisa's). A VM elisa does not know pays the tracepoint's dispatch and the
 *    probe's bucket walk, about 15 instructions more. Taken when ftrace is not available.
 *
 * Both end in elisa_entry_hook(). Why C: the kernel crate can emit tracepoints but neither
 * attach probes to them nor register ftrace direct calls. The KVM tracepoints are exported
 * (EXPORT_TRACEPOINT_SYMBOL_GPL in x86.c, in kvm.ko when KVM=m) but declared only in the
 * private arch/x86/kvm/trace.h; kvm_wait_lapic_expire() is exported to KVM's own modules
 * only, so ftrace finds it by name.
 *
 * There is no exit hook: an entry that puts elisa's settings into the VMCS also points its
 * HOST_RIP at elisa_vmexit (elisa_exit.S), which takes them out again at the exit, before
 * any KVM code runs, and goes on to KVM's own exit path. A second after the last detach no
 * hook is registered (below).
 *
 * The hook's filter is here too. Why C: it reads struct kvm_vcpu fields and a per-CPU
 * variable; Rust-for-Linux has bindings for neither KVM's structs nor this_cpu_*(), and a
 * call into Rust per field would cost more than the filter. Rust is called only for the
 * entries of attached VMs (hooks.rs), and from the trampoline's rare path.
 *
 * elisa_hook_table: the attached VMs (Rust's VmRecord, whose first field is a struct
 * elisa_hook_key), chained per bucket (elisa_hook_bucket()). Changed only by Rust, under
 * its registry lock (elisa_shim_hook_link/unlink); read by the entry hook, which runs with
 * IRQs off (asserted) where RCU is watching (and, as a tracepoint probe, inside the
 * tracepoint's own SRCU read side). Rust frees a record only after unlink and
 * elisa_shim_hooks_sync(), which waits for both read sides (the detach that lets the hook
 * go does not wait).
 *
 * elisa_hook_cur: per CPU, the vCPU state (Rust's VcpuState, whose first field is a struct
 * elisa_exit_hook) that the last entry hook on this CPU set up for an attached VM, or
 * NULL. IRQs stay off from the entry hook to the exit, so the trampoline that reads it (and
 * checks the VMCS, which the hook records) runs for that entry, on the same CPU. Only a
 * failed VM entry has no exit. The entries of VMs elisa does not know leave it alone: no
 * trampoline runs for them, and the trampoline of an attached vCPU checks the VMCS before
 * it uses the value. Rust clears it on every CPU (elisa_shim_hook_forget) before it frees
 * a state.
 */
extern struct tracepoint __tracepoint_kvm_entry;

/* Not static: elisa_entry.S tests a bucket. */
struct elisa_hook_key __rcu *elisa_hook_table[1 << ELISA_HOOK_BITS];
/* Not static: elisa_exit.S reads and clears it. */
DEFINE_PER_CPU(void *, elisa_hook_cur);

/* The trampoline, and KVM's HOST_RIP (vmx_vmexit) it goes on to. */
extern const u8 elisa_vmexit[];
unsigned long elisa_kvm_vmexit;

/* elisa_entry.S reads vcpu->kvm at offset 0. */
static_assert(offsetof(struct kvm_vcpu, kvm) == 0);

static_assert(ELISA_HOOK_MUL == GOLDEN_RATIO_64);

/* hash_ptr(kvm, ELISA_HOOK_BITS) on x86-64, as elisa_entry.S computes it. */
static __always_inline unsigned int elisa_hook_bucket(const struct kvm *kvm)
{
	return ((u64)(unsigned long)kvm * ELISA_HOOK_MUL) >> (64 - ELISA_HOOK_BITS);
}

static_assert(ELISA_VMCS_HOST_RIP == HOST_RIP);
static_assert(ELISA_VMCS_EPT_POINTER == EPT_POINTER);
static_assert(ELISA_VMCS_SECONDARY == SECONDARY_VM_EXEC_CONTROL);
static_assert(BIT(ELISA_VMFUNC_BIT) == SECONDARY_EXEC_ENABLE_VMFUNC);
static_assert(offsetof(struct elisa_exit_hook, list0) == ELISA_HOOK_LIST0);
static_assert(offsetof(struct elisa_exit_hook, exits) == ELISA_HOOK_EXITS);
static_assert(offsetof(struct elisa_exit_hook, vcpu) == ELISA_HOOK_VCPU);
static_assert(offsetof(struct elisa_exit_hook, vmcs) == ELISA_HOOK_VMCS);
static_assert(offsetof(struct elisa_exit_hook, in_guest) == ELISA_HOOK_IN_GUEST);
static_assert(offsetof(struct elisa_exit_hook, resumed_unconfirmed) == ELISA_HOOK_RESUMED);
static_assert(offsetof(struct elisa_exit_hook, shutdown_pending) == ELISA_HOOK_SHUTDOWN);
static_assert(sizeof(struct elisa_exit_frame) == ELISA_FRAME_WORDS * sizeof(unsigned long));
static_assert(ELISA_MSR_SPEC_CTRL == MSR_IA32_SPEC_CTRL);

/*
 * VMREAD and VMWRITE of HOST_RIP, with the vCPU's VMCS current (in the entry hook). A
 * read that fails (no VMCS current: a host shutdown) leaves @v as it was.
 */
static __always_inline unsigned long elisa_host_rip(void)
{
	unsigned long v = 0;

	asm volatile("vmread %[f], %[v]" : [v] "+r"(v) : [f] "r"((unsigned long)HOST_RIP) : "cc");
	return v;
}

static __always_inline void elisa_set_host_rip(unsigned long v)
{
	asm volatile("vmwrite %[v], %[f]" : : [v] "r"(v), [f] "r"((unsigned long)HOST_RIP) : "cc");
}

/*
 * After an attached VM's entry: with elisa's settings in the VMCS (@state), its exit goes
 * through the trampoline; without them, a trampoline left by an earlier entry that failed
 * (VMfail: no exit) is taken out. KVM writes HOST_RIP once, when it sets the VMCS up, so
 * any other value read here is KVM's, the same for every vCPU of the loaded kvm_intel
 * (a new value: kvm_intel was loaded again). A failed read (0) is never taken for it:
 * every CPU's trampoline goes on to elisa_kvm_vmexit. (With no VMCS current the Rust
 * returns no state, since nothing of elisa's can be in a VMCS then; the test is the
 * second line of defence, in the rare branch only.)
 */
static __always_inline void elisa_hook_host_rip(void *state)
{
	unsigned long h = elisa_host_rip();

	/* The VMCS the trampoline will find current, to know the exit is this entry's. */
	if (state)
		asm volatile("vmptrst %0" : "=m"(((struct elisa_exit_hook *)state)->vmcs));

	if (h == (unsigned long)elisa_vmexit) {
		if (!state)
			elisa_set_host_rip(READ_ONCE(elisa_kvm_vmexit));
		return;
	}
	if (!state)
		return;
	if (unlikely(h != READ_ONCE(elisa_kvm_vmexit))) {
		if (!h)
			return;
		WRITE_ONCE(elisa_kvm_vmexit, h);
	}
	elisa_set_host_rip((unsigned long)elisa_vmexit);
}

/*
 * The entry hook, for a VM whose bucket is not empty: in elisa_entry_hook_direct() (the
 * ftrace hook's C) and the kvm_entry probe.
 */
static __always_inline void elisa_entry_hook(struct kvm_vcpu *vcpu,
					     struct elisa_hook_key *first)
{
	struct kvm *kvm = vcpu->kvm;
	struct elisa_hook_key *k;
	void *state = NULL;

	lockdep_assert_irqs_disabled();
	for (k = first; k; k = rcu_dereference_sched(k->next)) {
		if (k->kvm != kvm)
			continue;
		/*
		 * In guest mode the current VMCS is KVM's vmcs02: elisa leaves it alone. Nor
		 * outside VMX operation: at a reboot or kexec KVM turns VMX off on every CPU
		 * (kvm_shutdown()) while vCPUs still run, and tolerates its own VMREADs and
		 * VMWRITEs faulting then; elisa's would be an oops. (Where TDX keeps VMX on
		 * past KVM's shutdown, no VMCS is current: elisa's VMREADs VMfail, harmlessly;
		 * design.rst, "Host shutdown".)
		 */
		if (!(vcpu->arch.hflags & HF_GUEST_MASK) && (__read_cr4() & X86_CR4_VMXE)) {
			state = elisa_rust_kvm_entry(k, vcpu);
			elisa_hook_host_rip(state);
		}
		this_cpu_write(elisa_hook_cur, state);
		return;
	}
}

static notrace void elisa_probe_entry(void *data, struct kvm_vcpu *vcpu, bool force_immediate_exit)
{
	struct elisa_hook_key *first =
		rcu_dereference_sched(elisa_hook_table[elisa_hook_bucket(vcpu->kvm)]);

	if (first)
		elisa_entry_hook(vcpu, first);
}

/*
 * No kprobe on what the trampoline's rare path calls outside .noinstr.text: the Rust entry
 * point and the shim helpers it uses (the Rust functions it calls in turn are elisa's own;
 * a root user's kprobe on one of them is not blocked).
 */
NOKPROBE_SYMBOL(elisa_rust_kvm_exit);
NOKPROBE_SYMBOL(elisa_shim_request_shutdown);
NOKPROBE_SYMBOL(elisa_shim_clear_cr2);
NOKPROBE_SYMBOL(elisa_shim_page_address);
NOKPROBE_SYMBOL(elisa_shim_vcpu_xstate);

/*
 * The trampoline's rare path (elisa_exit.S): an exit of @state's vCPU inside a view, or
 * one that ends a broken excursion. Runs where the trampoline runs: IRQs off, before KVM's
 * exit path (in its guest-state window: RCU may not be watching, lockdep believes IRQs
 * on), with the guest's SPEC_CTRL still loaded (the return-stack buffer is filled, and
 * the general registers the guest's were are zeroed). So SPEC_CTRL is the host's around
 * the Rust called here, as KVM makes it at its own exit; the guest's value goes into
 * @f->spec_ctrl, and the trampoline writes it back after this returns (so that no RET
 * runs with it but the trampoline's own, whose prediction is a trap) when this returns
 * true. Nothing here or in Rust's exit path takes a lock, sleeps, prints, traces or uses
 * RCU (the shim functions it calls are notrace; its log line waits for the next entry,
 * vcpu.rs). The guest's general registers go through KVM's copies, where Rust reads and
 * writes them at any other time, and back into the frame, which KVM's exit path stores
 * there again.
 */
bool noinstr elisa_exit_slow(void *state, struct elisa_exit_frame *f);
bool noinstr elisa_exit_slow(void *state, struct elisa_exit_frame *f)
{
	struct kvm_vcpu *vcpu = ((struct elisa_exit_hook *)state)->vcpu;
	unsigned long *r = vcpu->arch.regs;
	bool restore = false;

	if (cpu_feature_enabled(X86_FEATURE_MSR_SPEC_CTRL)) {
		u64 host = __this_cpu_read(x86_spec_ctrl_current);

		f->spec_ctrl = native_rdmsrq(MSR_IA32_SPEC_CTRL);
		restore = f->spec_ctrl != host;
		/*
		 * With legacy IBRS the write itself matters (it drops the guest's predictions),
		 * so it is made even for an equal value, as KVM's exit path does.
		 */
		if (restore || cpu_feature_enabled(X86_FEATURE_KERNEL_IBRS))
			native_wrmsrq(MSR_IA32_SPEC_CTRL, host);
		/* No speculation past a conditional WRMSR (as KVM's exit path). */
		barrier_nospec();
	}
	r[VCPU_REGS_RAX] = f->rax;
	r[VCPU_REGS_RCX] = f->rcx;
	r[VCPU_REGS_RDX] = f->rdx;
	r[VCPU_REGS_RBX] = f->rbx;
	r[VCPU_REGS_RBP] = f->rbp;
	r[VCPU_REGS_RSI] = f->rsi;
	r[VCPU_REGS_RDI] = f->rdi;
	r[VCPU_REGS_R8] = f->r8;
	r[VCPU_REGS_R9] = f->r9;
	r[VCPU_REGS_R10] = f->r10;
	r[VCPU_REGS_R11] = f->r11;
	r[VCPU_REGS_R12] = f->r12;
	r[VCPU_REGS_R13] = f->r13;
	r[VCPU_REGS_R14] = f->r14;
	r[VCPU_REGS_R15] = f->r15;
	/* The state may be freed once this returns (it clears in_guest last). */
	elisa_rust_kvm_exit(state);
	f->rax = r[VCPU_REGS_RAX];
	f->rcx = r[VCPU_REGS_RCX];
	f->rdx = r[VCPU_REGS_RDX];
	f->rbx = r[VCPU_REGS_RBX];
	f->rbp = r[VCPU_REGS_RBP];
	f->rsi = r[VCPU_REGS_RSI];
	f->rdi = r[VCPU_REGS_RDI];
	f->r8 = r[VCPU_REGS_R8];
	f->r9 = r[VCPU_REGS_R9];
	f->r10 = r[VCPU_REGS_R10];
	f->r11 = r[VCPU_REGS_R11];
	f->r12 = r[VCPU_REGS_R12];
	f->r13 = r[VCPU_REGS_R13];
	f->r14 = r[VCPU_REGS_R14];
	f->r15 = r[VCPU_REGS_R15];
	return restore;
}

/* Adds @key (its kvm set) to the table. Process context, under the registry lock. */
void elisa_shim_hook_link(struct elisa_hook_key *key)
{
	struct elisa_hook_key __rcu **head =
		&elisa_hook_table[elisa_hook_bucket(key->kvm)];

	RCU_INIT_POINTER(key->next, rcu_dereference_protected(*head, 1));
	rcu_assign_pointer(*head, key);
}

/*
 * Takes @key out of the table. Process context, under the registry lock. A probe may
 * still see it until a grace period has passed; its next pointer stays valid until then.
 */
void elisa_shim_hook_unlink(struct elisa_hook_key *key)
{
	struct elisa_hook_key __rcu **pp = &elisa_hook_table[elisa_hook_bucket(key->kvm)];
	struct elisa_hook_key *k;

	while ((k = rcu_dereference_protected(*pp, 1))) {
		if (k == key) {
			rcu_assign_pointer(*pp, rcu_dereference_protected(key->next, 1));
			return;
		}
		pp = &k->next;
	}
}

/*
 * Clears every CPU's elisa_hook_cur that still names @state (left by a failed VM entry),
 * before the state is freed. Process context. A probe may write the variable meanwhile;
 * cmpxchg replaces only @state.
 */
void elisa_shim_hook_forget(void *state)
{
	int cpu;

	for_each_possible_cpu(cpu)
		cmpxchg(per_cpu_ptr(&elisa_hook_cur, cpu), state, NULL);
}

/*
 * The module parameter entry_hook: "ftrace" (the default; the tracepoint where ftrace
 * cannot take the hook, with a warning) or "tracepoint" (always). Read when the hook is
 * registered, that is when the first VM is attached.
 */
enum { ELISA_HOOK_FTRACE, ELISA_HOOK_TRACEPOINT };
static const char *const elisa_hook_names[] = { "ftrace", "tracepoint" };
static int elisa_hook_want = ELISA_HOOK_FTRACE;

static int elisa_hook_param_set(const char *val, const struct kernel_param *kp)
{
	int i = sysfs_match_string(elisa_hook_names, val);

	if (i < 0) {
		pr_err("entry_hook=%s: the values are ftrace and tracepoint\n", val);
		return -EINVAL;
	}
	WRITE_ONCE(elisa_hook_want, i);
	return 0;
}

static int elisa_hook_param_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", elisa_hook_names[READ_ONCE(elisa_hook_want)]);
}

static const struct kernel_param_ops elisa_hook_param_ops = {
	.set = elisa_hook_param_set,
	.get = elisa_hook_param_get,
};
module_param_cb(entry_hook, &elisa_hook_param_ops, NULL, 0444);
MODULE_PARM_DESC(entry_hook, "how elisa hooks VM entries: ftrace (default) or tracepoint");

/*
 * Registering patches kernel text (an IPI to every CPU) and should take milliseconds; a
 * registration that waited longer (for grace periods, for CPUs that a VMM's threads keep
 * busy) is logged, since it delayed an attach. The one-time lookup of the ftrace filter
 * by name is not counted.
 */
static void elisa_hook_note_wait(const char *what, u64 t)
{
	t = ktime_get_ns() - t;
	if (t > NSEC_PER_SEC / 2)
		pr_info_ratelimited("entry hook: registering the %s took %llu ms (an attach waited for it)\n",
				    what, t / NSEC_PER_MSEC);
}

#ifdef CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS
extern const u8 elisa_entry_direct[];
/*
 * PERMANENT: while it is registered, the ftrace_enabled sysctl cannot be turned off (which
 * would silently stop the hook, and with it elisa's settings: the guest's calls would
 * raise #UD); with ftrace_enabled off the registration fails instead.
 */
static struct ftrace_ops elisa_entry_ops = { .flags = FTRACE_OPS_FL_PERMANENT };
static const char elisa_entry_fn[] = "kvm_wait_lapic_expire";

/*
 * The filter (kvm_wait_lapic_expire's call site) is set at the first registration and
 * kept until module exit: finding a function by name reads every traced function's name
 * (tens of thousands; seconds in the emulated test host, where every attach after an
 * idle spell would pay it). Its address stays valid: elisa.ko uses kvm.ko's symbols, so
 * kvm.ko stays loaded as long as elisa is. Under elisa_hook_lock.
 */
static bool elisa_entry_filtered;

static int elisa_ftrace_register(void)
{
	u64 t;
	int r;

	if (!elisa_entry_filtered) {
		/* The name's only match is KVM's function (ftrace knows no other of that name). */
		r = ftrace_set_filter(&elisa_entry_ops, (unsigned char *)elisa_entry_fn,
				      strlen(elisa_entry_fn), 1);
		if (r) {
			ftrace_free_filter(&elisa_entry_ops);
			return r;
		}
		elisa_entry_filtered = true;
	}
	t = ktime_get_ns();
	r = register_ftrace_direct(&elisa_entry_ops, (unsigned long)elisa_entry_direct);
	if (!r)
		elisa_hook_note_wait("ftrace direct call", t);
	return r;
}

/*
 * Waits for grace periods (the ops is in module data: ftrace treats it as dynamic), so it
 * runs without elisa_hook_lock (below).
 */
static int elisa_ftrace_unregister(void)
{
	return unregister_ftrace_direct(&elisa_entry_ops, (unsigned long)elisa_entry_direct, false);
}

/* Module exit, with the direct call out. */
static void elisa_ftrace_exit(void)
{
	if (elisa_entry_filtered)
		ftrace_free_filter(&elisa_entry_ops);
}
#else
static int elisa_ftrace_register(void)
{
	return -EOPNOTSUPP;
}

static int elisa_ftrace_unregister(void)
{
	return 0;
}

static void elisa_ftrace_exit(void)
{
}
#endif

/*
 * Registration state, under elisa_hook_lock (which nests inside the registry lock: the
 * registry's kworker calls in with that held; the delayed unregistration takes only this
 * one).
 *
 * The hook is registered by the first attach and unregistered ELISA_HOOK_LINGER after the
 * last detach, unless a VM is attached again within it: registering and unregistering
 * patch kernel text (an IPI to every CPU, and ftrace walks every traced function), which a
 * host whose VMMs attach and detach often would otherwise pay at each one. Meanwhile the
 * hook finds an empty table: other VMs pay its bucket test, then nothing.
 *
 * Unregistering the ftrace hook waits for grace periods (RCU Tasks among them), which a
 * VMM's spinning threads can stretch: it runs in the delayed work without the lock
 * (elisa_hook_ftrace_going), so that no attach or detach waits for it. An attach that comes
 * meanwhile takes the tracepoint, and while the tracepoint is registered the ftrace hook's
 * C does nothing (elisa_hook_tp_on), so that no entry is set up twice. The tracepoint then
 * stays until the next idle spell. Its own unregistration does not wait, but the next
 * registration of a tracepoint's first probe would (for the grace periods it started): the
 * delayed work waits for them instead, without the lock, and an attach meanwhile takes
 * the direct call (with entry_hook=tracepoint, or no direct calls, it still waits).
 *
 * While the direct call is registered, elisa holds a reference on its own module: a call
 * site in kvm.ko points into elisa's text, and only the delayed work, after ftrace has
 * taken it out, may let the module go (delete_module() fails with EWOULDBLOCK meanwhile,
 * for a second or more after the last detach). Where ftrace cannot take it out (ftrace
 * disabled itself after a bug), the reference stays until reboot.
 */
#define ELISA_HOOK_LINGER HZ
static DEFINE_MUTEX(elisa_hook_lock);
static bool elisa_hook_attached;
static bool elisa_hook_ftrace_on;	/* the direct call is registered */
static bool elisa_hook_ftrace_going;	/* the delayed work is unregistering it */
static bool elisa_hook_ftrace_stuck;	/* its unregistration failed: it stays, elisa is pinned */
static bool elisa_hook_tp_on;		/* the kvm_entry probe is registered (READ_ONCE) */
/* elisa's workqueue (elisa_shim_call_unbound(), below). */
static struct workqueue_struct *elisa_wq;
static void elisa_hook_idle_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(elisa_hook_idle, elisa_hook_idle_fn);

/*
 * The ftrace hook's C, for a VM whose bucket is not empty: elisa_entry.S passes the
 * bucket's first record, loaded again after its test (as rcu_dereference_sched() would on
 * x86; NULL if the bucket emptied meanwhile). Not static: elisa_entry.S calls it.
 */
void notrace elisa_entry_hook_direct(struct kvm_vcpu *vcpu, struct elisa_hook_key *first);
void notrace elisa_entry_hook_direct(struct kvm_vcpu *vcpu, struct elisa_hook_key *first)
{
	if (!READ_ONCE(elisa_hook_tp_on))
		elisa_entry_hook(vcpu, first);
}

static int elisa_tp_register(void)
{
	u64 t = ktime_get_ns();
	int r;

	/* Before the probe can run: from then on the direct call's C does nothing. */
	WRITE_ONCE(elisa_hook_tp_on, true);
	r = tracepoint_probe_register(&__tracepoint_kvm_entry, elisa_probe_entry, NULL);
	if (r)
		WRITE_ONCE(elisa_hook_tp_on, false);
	else
		elisa_hook_note_wait("kvm_entry tracepoint", t);
	return r;
}

static void elisa_tp_unregister(void)
{
	tracepoint_probe_unregister(&__tracepoint_kvm_entry, elisa_probe_entry, NULL);
	WRITE_ONCE(elisa_hook_tp_on, false);
}

/*
 * kvm_intel built into a kernel linked with Clang LTO may have inlined
 * kvm_wait_lapic_expire() into vmx_vcpu_run(): its out-of-line copy, which ftrace would
 * patch, would then never run at an entry. Such a kernel gets the tracepoint.
 */
static bool elisa_ftrace_usable(void)
{
	return !(IS_ENABLED(CONFIG_LTO_CLANG) && IS_BUILTIN(CONFIG_KVM_INTEL));
}

/* Makes a hook registered for an attach. Under elisa_hook_lock. */
static int elisa_hook_get(void)
{
	int r;

	if (elisa_hook_tp_on || (elisa_hook_ftrace_on && !elisa_hook_ftrace_going))
		return 0;
	if (!elisa_hook_ftrace_on && READ_ONCE(elisa_hook_want) == ELISA_HOOK_FTRACE) {
		r = elisa_ftrace_usable() ? elisa_ftrace_register() : -EOPNOTSUPP;
		if (!r) {
			elisa_hook_ftrace_on = true;
			__module_get(THIS_MODULE);
			return 0;
		}
		pr_warn_ratelimited("entry hook: no ftrace direct call at %s() (%d: %s); the kvm_entry tracepoint instead, which costs every VM more per exit (Documentation/admin-guide.rst)\n",
				    elisa_entry_fn, r,
				    r == -EBUSY ? "another direct call or a livepatch is there, or ftrace_enabled is 0" :
				    r == -EOPNOTSUPP ? "no CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, or kvm_intel built in with LTO" :
				    "ftrace refused it");
	}
	return elisa_tp_register();
}

static void elisa_hook_idle_fn(struct work_struct *work)
{
	bool cool = false, going = false;
	int r = 0;

	mutex_lock(&elisa_hook_lock);
	if (elisa_hook_attached)
		goto out;
	if (elisa_hook_tp_on) {
		elisa_tp_unregister();
		cool = true;
	}
	if (elisa_hook_ftrace_on && !elisa_hook_ftrace_going && !elisa_hook_ftrace_stuck)
		going = true;
	if (!cool && !going)
		goto out;
	if (going)
		elisa_hook_ftrace_going = true;
	mutex_unlock(&elisa_hook_lock);
	/*
	 * The tracepoint core makes the next registration of any tracepoint's first probe
	 * wait for the RCU and SRCU grace periods that this removal started
	 * (tp_rcu_cond_sync()). They pass here, without a lock, so that an attach does not
	 * wait for them under the registry lock (a VMM's spinning threads stretched such a
	 * wait to seconds). An attach meanwhile takes the direct call where it may.
	 */
	if (cool) {
		synchronize_rcu();
		synchronize_srcu(&tracepoint_srcu);
	}
	if (going)
		r = elisa_ftrace_unregister();
	mutex_lock(&elisa_hook_lock);
	if (!going)
		goto out;
	elisa_hook_ftrace_going = false;
	if (r) {
		/*
		 * ftrace could not take the call out (it was disabled by an earlier ftrace bug):
		 * kvm_wait_lapic_expire() still calls into elisa, which must never be unloaded.
		 * The hook keeps working for the next attach.
		 */
		elisa_hook_ftrace_stuck = true;
		pr_err("entry hook: unregister_ftrace_direct: %d; elisa stays loaded until reboot\n", r);
	} else {
		elisa_hook_ftrace_on = false;
		/* Module exit waits for this work to return (cancel_delayed_work_sync()). */
		module_put(THIS_MODULE);
	}
out:
	mutex_unlock(&elisa_hook_lock);
}

/*
 * The first VM is attached (process context; with the registry lock held): the entry hook
 * is registered, or still is (logged if ftrace could not take it: other VMs then pay more
 * per exit).
 */
int elisa_shim_hooks_register(void)
{
	int r;

	mutex_lock(&elisa_hook_lock);
	r = elisa_hook_get();
	elisa_hook_attached = !r;
	mutex_unlock(&elisa_hook_lock);
	return r;
}

/* For debugfs: bit 0 the direct call, bit 1 the tracepoint, bit 2 the direct call going. */
int elisa_shim_hook_state(void)
{
	return (READ_ONCE(elisa_hook_ftrace_on) ? 1 : 0) | (READ_ONCE(elisa_hook_tp_on) ? 2 : 0) |
	       (READ_ONCE(elisa_hook_ftrace_going) ? 4 : 0);
}

/*
 * Waits until every probe now running has returned: a record unlinked before is then seen
 * by none. Process context. The probes run inside the tracepoint's SRCU read side, which
 * tracepoint_synchronize_unregister() waits for (with RCU Tasks Trace), and with IRQs
 * off, the RCU read side their rcu_dereference_sched() names, which synchronize_rcu()
 * waits for: both, so that neither argument alone carries the free.
 */
static void elisa_nothing(void *unused);

void elisa_shim_hooks_sync(void)
{
	tracepoint_synchronize_unregister();
	synchronize_rcu();
	/*
	 * And for the exit trampolines still running (a state may be freed once it has
	 * cleared in_guest, its last access, but it runs a few instructions more). They are no
	 * RCU read side: they run in KVM's guest-state window, after the entry reported a
	 * quiescent state (guest_state_enter_irqoff()). IRQs stay off from the VM exit to
	 * KVM's local_irq_enable() after its exit path: an IPI every CPU has handled comes
	 * after each of them.
	 */
	on_each_cpu(elisa_nothing, NULL, 1);
}

/*
 * The last VM is detached (process context; with the registry lock held): the hook is
 * unregistered ELISA_HOOK_LINGER later unless a VM is attached again meanwhile. Nothing is
 * waited for: the caller waits for the calls still running with elisa_shim_hooks_sync()
 * (outside the registry lock). An attach may link a record meanwhile (registry.rs): a call
 * still running that meets that record sets its vCPU up and stores the state after this
 * clear, for its own exit trampoline. Every CPU's elisa_hook_cur is cleared, so that the
 * next attachment starts from NULL: detach forgot its states on every CPU before.
 */
void elisa_shim_hooks_unregister(void)
{
	int cpu;

	mutex_lock(&elisa_hook_lock);
	elisa_hook_attached = false;
	mod_delayed_work(elisa_wq, &elisa_hook_idle, ELISA_HOOK_LINGER);
	mutex_unlock(&elisa_hook_lock);
	for_each_possible_cpu(cpu)
		WRITE_ONCE(per_cpu(elisa_hook_cur, cpu), NULL);
}

/*
 * Runs @fn(@arg) in a kworker of elisa's workqueue (unbound, with a rescuer) and waits for
 * it to return. Attach and detach take the registry lock, and the lock of debugfs's elisa/
 * directory, only there: a VMM chooses how its own threads are scheduled (SCHED_IDLE, the
 * cpu.max or cpu.idle of a cgroup it owns, spinners beside them) and the memory.max they
 * reclaim under, and a lock held in such a thread, which the scheduler may preempt
 * anywhere, would stall every other VM's attach and detach for as long as the VMM keeps
 * that thread off the CPU. The caller sleeps in flush_work() holding nothing; @fn must not
 * sleep on anything the caller holds. Why C: an on-stack work item flushed in place; the
 * kernel crate's workqueue takes only owned, reference-counted items and has no flush.
 */
struct elisa_unbound_call {
	struct work_struct work;
	void (*fn)(void *arg);
	void *arg;
};

static void elisa_unbound_call_fn(struct work_struct *work)
{
	struct elisa_unbound_call *c = container_of(work, struct elisa_unbound_call, work);

	c->fn(c->arg);
}

void elisa_shim_call_unbound(void (*fn)(void *arg), void *arg)
{
	struct elisa_unbound_call c = { .fn = fn, .arg = arg };

	might_sleep();
	INIT_WORK_ONSTACK(&c.work, elisa_unbound_call_fn);
	queue_work(elisa_wq, &c.work);
	flush_work(&c.work);
	destroy_work_on_stack(&c.work);
}

/*
 * The elisa-vm file: one per attachment. Why C: like /dev/elisa, its file_operations
 * must carry .owner, which the kernel crate cannot set.
 */
static int elisa_vm_fop_release(struct inode *inode, struct file *file)
{
	elisa_rust_vm_release(file->private_data);
	return 0;
}

static long elisa_vm_fop_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	return elisa_rust_vm_ioctl(file->private_data, cmd, arg);
}

static const struct file_operations elisa_vm_fops = {
	.owner = THIS_MODULE,
	.release = elisa_vm_fop_release,
	.unlocked_ioctl = elisa_vm_fop_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* Returns a new O_CLOEXEC fd whose release hands @priv back to Rust, or a negative errno. */
int elisa_shim_vm_fd(void *priv)
{
	return anon_inode_getfd("elisa-vm", &elisa_vm_fops, priv, O_RDWR | O_CLOEXEC);
}

/*
 * Why C: page_to_phys() and page_address() are macros with no binding: 7.2 has no
 * rust_helper for either and the kernel crate's Page exposes neither. Goes away with one.
 */
u64 elisa_shim_page_to_phys(void *page)
{
	return page_to_phys((struct page *)page);
}

/* Lowmem pages only. */
notrace void *elisa_shim_page_address(void *page)
{
	return page_address((struct page *)page);
}

/*
 * INVEPT.
 *
 * Why C: the INVEPT runs under an exception-table fixup (asm goto with _ASM_EXTABLE: a
 * CPU leaving VMX operation raises #UD), which Rust's inline asm cannot register. A view's
 * EPT may be cached (tagged with its EPTP) on every CPU a vCPU ran on while in that view;
 * before its tables or the pages it maps are freed, every CPU in VMX operation drops them.
 * Single-context when the CPU has it, else all contexts (the capability MSR is read here,
 * at each call, rather than passed from caps.rs: one rdmsr per freed view). CPUs outside
 * VMX operation (CR4.VMXE clear) cache nothing.
 */
/* One INVEPT; false if the CPU left VMX operation meanwhile (#UD, fixed up). */
static bool elisa_invept_eptp(u64 eptp, u64 type)
{
	struct { u64 eptp, gpa; } desc = { eptp, 0 };

	asm goto("1: invept %0, %1\n\t"
		 _ASM_EXTABLE(1b, %l[outside_vmx])
		 : : "m"(desc), "r"(type) : "cc", "memory" : outside_vmx);
	return true;
outside_vmx:
	return false;
}

struct elisa_invept_arg {
	const u64 *eptps;
	unsigned int n;
	u64 type;
};

static void elisa_invept_one(void *data)
{
	struct elisa_invept_arg *a = data;
	unsigned int i;

	/*
	 * CR4.VMXE is set just before VMXON and cleared just after VMXOFF (CPU hotplug,
	 * suspend), with IRQs on: INVEPT may raise #UD in between. What such a CPU still
	 * caches is flushed before any vCPU runs on it again: VMXOFF VMCLEARs every loaded
	 * VMCS, so each vCPU's next VMCS load there is a load on a new CPU, for which KVM
	 * requests a TLB flush (vmx_vcpu_load_vmcs()), an INVEPT of all contexts with EPT.
	 */
	if (!(__read_cr4() & X86_CR4_VMXE))
		return;
	/* One INVEPT of all contexts drops every EPTP's translations. */
	for (i = 0; i < (a->type == VMX_EPT_EXTENT_GLOBAL ? 1 : a->n); i++)
		if (!elisa_invept_eptp(a->eptps[i], a->type))
			return;
}

/*
 * INVEPT of the @n EPTPs at @eptps on every CPU in VMX operation: one IPI to each CPU for
 * all of them (each IPI makes a CPU that runs a guest exit), not one per EPTP.
 */
void elisa_shim_invept_all(const u64 *eptps, unsigned int n)
{
	struct elisa_invept_arg a = { eptps, n, VMX_EPT_EXTENT_CONTEXT };
	u64 cap = 0;

	if (!n)
		return;
	rdmsrq_safe(MSR_IA32_VMX_EPT_VPID_CAP, &cap);
	if (!(cap & VMX_EPT_EXTENT_CONTEXT_BIT))
		a.type = VMX_EPT_EXTENT_GLOBAL;
	on_each_cpu(elisa_invept_one, &a, 1);
}

static void elisa_nothing(void *unused)
{
}

/*
 * Keeps elisa loaded until the host reboots: a quarantined vCPU (registry.rs) may still have
 * HOST_RIP at the exit trampoline, left by an entry that failed, and no hook will see it
 * run again. Why C: THIS_MODULE.
 */
void elisa_shim_pin_module(void)
{
	__module_get(THIS_MODULE);
}

/*
 * A synchronous IPI to every CPU that does nothing: returns once each CPU has handled it.
 * A CPU between an entry hook and the end of its exit trampoline (IRQs off throughout)
 * handles it only after the trampoline: the IPI makes the guest exit, and KVM dispatches
 * the interrupt (handle_exit_irqoff()) after its own exit path. Detach's ordering rule when it
 * gave a vCPU up and had no INVEPT to send (registry.rs). Why C: on_each_cpu() has no
 * Rust binding.
 */
void elisa_shim_sync_all_cpus(void)
{
	on_each_cpu(elisa_nothing, NULL, 1);
}

/*
 * Regions: folios of a shmem or hugetlbfs file, long-term pinned for as long as a view may
 * map them.
 *
 * Why C: the page cache, GUP and mm accounting have no Rust bindings.
 *
 * The folios are pinned with memfd_pin_folios(), as udmabuf pins its memfds: a FOLL_PIN
 * pin with FOLL_LONGTERM semantics (allocations run under memalloc_pin_save(), so holes are
 * filled outside ZONE_MOVABLE and CMA, and folios found there are migrated out before
 * being pinned; migration and compaction then see folio_maybe_dma_pinned() and leave them
 * alone). Holes of the range are allocated (zeroed), as a first write through a mapping
 * would. A pinned folio survives truncation of the file (it is then only ours), so the
 * HPAs handed to the views stay valid until elisa_shim_region_unpin(). pin_user_pages()
 * is no alternative: it needs a user mapping of the file, which a region does not have.
 *
 * The region also counts as a writable shared mapping of the file (mapping_map_writable(),
 * what mmap(MAP_SHARED, PROT_WRITE) takes): the guest may write through it, so a file
 * sealed against writes is refused, and F_SEAL_WRITE cannot be added while the region
 * exists (EBUSY), as for a mapping. The file is held (get_file) for that count.
 *
 * What is pinned is charged to the caller's user (user_struct->locked_vm) against its
 * RLIMIT_MEMLOCK unless it has CAP_IPC_LOCK, as io_uring and iommufd charge their pins,
 * and counted in its mm->pinned_vm (VmPin), as they do too. What is pinned is every folio
 * the range touches, whole: a 4 KiB region of a hugetlb file or of a tmpfs file in huge
 * pages pins, and is charged, 2 MiB or 1 GiB (as io_uring charges a huge page of a
 * buffer; two regions on one folio are each charged for it). The length is charged
 * before pinning, the rest of the folios once they are known; the user and the mm are kept
 * (get_uid, mmgrab) to uncharge them later. The limit is the user's, not the process's:
 * a region outlives the process that made it (its fd can be passed on), and a new
 * process (fork, exec) starts with pinned_vm 0, so a limit on pinned_vm alone would let
 * a user pin without bound by creating each region in a new process.
 *
 * A pinned folio that truncation or hole punching takes out of the page cache stays ours,
 * but is no longer the file's: the file reads zeros (or new pages) there, while the views
 * go on writing the old pages. So a memfd must be sealed with F_SEAL_SHRINK, as udmabuf
 * requires (the seal cannot be removed: the file never shrinks), and what no seal but a
 * write seal prevents, hole punching, and the truncation of tmpfs and hugetlbfs files,
 * which cannot be sealed, is detected: elisa_shim_region_decoupled() counts the pages
 * whose folio has left the file (Documentation/design.rst, "Regions and their files").
 */
struct elisa_region_pin {
	struct file *file;		/* held; one count in i_mmap_writable */
	struct mm_struct *mm;		/* grabbed; npages counted in its pinned_vm */
	struct user_struct *user;	/* held, charged pages in its locked_vm; or NULL */
	u64 offset;			/* of the range in the file, in bytes */
	unsigned long npages;
	unsigned long charged;		/* pages of the pinned folios, in pinned_vm and locked_vm */
	pgoff_t index;			/* page-cache index of folios[0] */
	unsigned long skip;		/* pages of folios[0] before the range */
	pid_t pid;			/* the creating process, for messages */
	unsigned long nr_folios;
	struct folio *folios[] __counted_by(nr_folios);	/* one FOLL_PIN pin each */
};

#if !(defined(CONFIG_NET) || defined(CONFIG_IO_URING) || defined(CONFIG_VFIO_PCI_ZDEV_KVM) || \
       IS_ENABLED(CONFIG_IOMMUFD) || defined(CONFIG_SECRETMEM))
#error "struct user_struct has no locked_vm in this configuration (include/linux/sched/user.h)"
#endif

/*
 * Charges @npages to @user's locked_vm if that stays within the caller's RLIMIT_MEMLOCK
 * (io_uring's __io_account_mem(), which is not exported).
 */
static bool elisa_user_charge(struct user_struct *user, unsigned long npages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	unsigned long cur = atomic_long_read(&user->locked_vm);

	do {
		if (npages > limit || cur > limit - npages)
			return false;
	} while (!atomic_long_try_cmpxchg(&user->locked_vm, &cur, cur + npages));
	return true;
}

/* Undoes elisa_user_charge() and drops the reference to @user; nothing for NULL. */
static void elisa_user_uncharge(struct user_struct *user, unsigned long npages)
{
	if (!user)
		return;
	atomic_long_sub(npages, &user->locked_vm);
	free_uid(user);
}

/* The seals of a shmem or hugetlbfs file (memfd_get_seals() is not exported). */
static unsigned int elisa_file_seals(struct file *f)
{
	if (shmem_file(f))
		return SHMEM_I(file_inode(f))->seals;
#ifdef CONFIG_HUGETLBFS
	if (is_file_hugepages(f))
		return HUGETLBFS_I(file_inode(f))->seals;
#endif
	return 0;
}

/*
 * A memfd: a file of the kernel's internal shmem or hugetlbfs mount (SB_KERNMOUNT), which
 * memfd_create() makes, unlike a file opened by path on a tmpfs or hugetlbfs mount. Only
 * such files can carry seals (MFD_ALLOW_SEALING).
 */
static bool elisa_file_is_memfd(struct file *f)
{
	return file_inode(f)->i_sb->s_flags & SB_KERNMOUNT;
}

/*
 * Pins @npages 4 KiB pages at @offset of the file @fd (offset and npages checked for
 * alignment and size by the caller) and writes the HPA of each to @hpas. Returns 0 and the
 * pin in *@pin_out (release with elisa_shim_region_unpin()), or a negative errno with the
 * reason in *@why: -EBADF (no such fd), -EINVAL (not a shmem or hugetlbfs file; range
 * beyond the end of the file), -EACCES (not open read-write), -EPERM (sealed against
 * writes, a memfd without F_SEAL_SHRINK, an append-only or immutable file), -ENOMEM
 * (RLIMIT_MEMLOCK; no memory or no free huge page), or what memfd_pin_folios() returned.
 * Process context.
 *
 * An append-only file is refused as mmap(MAP_SHARED) of it open for writing is (do_mmap());
 * so is an immutable one, which an fd opened before the flag was set may still write. The
 * LSM check of mmap (security_mmap_file()) is not exported: a region is not subject to
 * it. Whoever makes a region has /dev/elisa open for writing.
 */
int elisa_shim_region_pin(int fd, u64 offset, u64 npages, u64 *hpas, void **pin_out,
			  const char **why)
{
	struct mm_struct *mm = current->mm;
	struct elisa_region_pin *pin = NULL;
	struct user_struct *user = NULL;
	struct folio **folios = NULL;
	struct file *f = fget(fd);
	u64 len = npages << PAGE_SHIFT, n = 0;
	unsigned long charged = npages, total = 0;
	pgoff_t first = 0;
	unsigned int seals;
	long i, nr = 0;
	size_t at;
	int r;

	*why = "";
	if (!f) {
		*why = "fd is not an open file descriptor";
		return -EBADF;
	}
	r = -EINVAL;
	if (!shmem_file(f) && !is_file_hugepages(f)) {
		*why = "not a memfd, tmpfs or hugetlbfs file";
		goto out_fput;
	}
	if ((f->f_mode & (FMODE_READ | FMODE_WRITE)) != (FMODE_READ | FMODE_WRITE)) {
		*why = "the file is not open read-write";
		r = -EACCES;
		goto out_fput;
	}
	if (!npages || npages > UINT_MAX || offset + len > (u64)i_size_read(file_inode(f))) {
		*why = "offset + length is beyond the end of the file";
		goto out_fput;
	}
	if (!mm) {
		*why = "no user address space";
		goto out_fput;
	}
	/* memfd_add_seals() takes the inode lock for writing: seals cannot change here. */
	inode_lock_shared(file_inode(f));
	seals = elisa_file_seals(f);
	if (IS_APPEND(file_inode(f)) || IS_IMMUTABLE(file_inode(f))) {
		*why = "the file is append-only or immutable (chattr +a, +i)";
		r = -EPERM;
	} else if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) {
		*why = "the file is sealed against writes (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE)";
		r = -EPERM;
	} else if (elisa_file_is_memfd(f) && !(seals & F_SEAL_SHRINK)) {
		*why = "a memfd must be sealed with F_SEAL_SHRINK, so that it cannot be truncated under the region: create it with MFD_ALLOW_SEALING, then fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK)";
		r = -EPERM;
	} else {
		r = mapping_map_writable(f->f_mapping);
		if (r)
			*why = "the file cannot be mapped writable";
	}
	inode_unlock_shared(file_inode(f));
	if (r)
		goto out_fput;
	/* Without audit, as io_uring: most callers are not meant to have it. */
	if (!ns_capable_noaudit(&init_user_ns, CAP_IPC_LOCK)) {
		user = get_uid(current_user());
		if (!elisa_user_charge(user, npages)) {
			free_uid(user);
			user = NULL;
			*why = "RLIMIT_MEMLOCK would be exceeded (the pages pinned by all of this user's processes: elisa regions, io_uring, RDMA; without CAP_IPC_LOCK)";
			r = -ENOMEM;
			goto out_unmap;
		}
	}
	atomic64_add(npages, &mm->pinned_vm);
	r = -ENOMEM;
	folios = kvmalloc_array(npages, sizeof(*folios), GFP_KERNEL_ACCOUNT);
	if (!folios) {
		*why = "out of memory";
		goto out_unaccount;
	}
	nr = memfd_pin_folios(f, offset, offset + len - 1, folios, npages, &first);
	if (nr <= 0) {
		*why = "cannot pin the pages (no memory or no free huge page, or the file shrank)";
		r = nr ? nr : -EINVAL;
		nr = 0;
		goto out_free;
	}
	/* Only the first folio starts inside itself, at byte @first. */
	for (i = 0, at = first; i < nr && n < npages; i++, at = 0)
		for (; at < folio_size(folios[i]) && n < npages; at += PAGE_SIZE)
			hpas[n++] = PFN_PHYS(folio_pfn(folios[i]) + (at >> PAGE_SHIFT));
	if (n != npages || i != nr) {
		*why = "the pinned folios do not cover the range";
		r = -EINVAL;
		goto out_unpin;
	}
	/*
	 * The size was checked before the pin without the inode lock, and hugetlbfs adds a
	 * folio for a hole without checking i_size again: a truncate racing the pin could
	 * leave a folio past the end of the file, still in the page cache at its index, that
	 * elisa_shim_region_decoupled() would take for the file's. Once pinned, the folios
	 * are in the page cache (a truncate from now on takes them out, which that check
	 * sees), so the size is checked again.
	 */
	if (offset + len > (u64)i_size_read(file_inode(f))) {
		*why = "the file shrank while its pages were pinned";
		r = -EINVAL;
		goto out_unpin;
	}
	/* The folios are pinned whole: charge the pages of theirs outside the range too. */
	for (i = 0; i < nr; i++)
		total += folio_nr_pages(folios[i]);
	if (total > charged) {
		if (user && !elisa_user_charge(user, total - charged)) {
			*why = "RLIMIT_MEMLOCK would be exceeded by the whole huge pages the range touches (without CAP_IPC_LOCK)";
			r = -ENOMEM;
			goto out_unpin;
		}
		atomic64_add(total - charged, &mm->pinned_vm);
		charged = total;
	}
	pin = kvmalloc(struct_size(pin, folios, nr), GFP_KERNEL_ACCOUNT);
	if (!pin) {
		*why = "out of memory";
		goto out_unpin;
	}
	pin->nr_folios = nr;
	memcpy(pin->folios, folios, nr * sizeof(*folios));
	kvfree(folios);
	pin->file = f;
	pin->offset = offset;
	pin->npages = npages;
	pin->charged = charged;
	pin->skip = first >> PAGE_SHIFT;
	pin->index = (offset >> PAGE_SHIFT) - pin->skip;
	pin->pid = task_tgid_nr(current);
	mmgrab(mm);
	pin->mm = mm;
	pin->user = user;
	*pin_out = pin;
	return 0;

out_unpin:
	unpin_folios(folios, nr);
out_free:
	kvfree(folios);
out_unaccount:
	atomic64_sub(charged, &mm->pinned_vm);
	elisa_user_uncharge(user, charged);
out_unmap:
	mapping_unmap_writable(f->f_mapping);
out_fput:
	fput(f);
	return r;
}

/*
 * Releases what elisa_shim_region_pin() took. Process context. The folios are marked
 * dirty first: services and guests wrote them through EPT, which sets no dirty flag, and
 * a clean shmem folio (a hole the pin filled, a page only ever read through the VMM's
 * mapping) may be dropped by reclaim once unpinned, so the file would read zeros where
 * the guests wrote (as unpin_user_pages_dirty_lock() does for DMA).
 */
void elisa_shim_region_unpin(void *p)
{
	struct elisa_region_pin *pin = p;
	unsigned long i;

	for (i = 0; i < pin->nr_folios; i++)
		folio_mark_dirty_lock(pin->folios[i]);
	unpin_folios(pin->folios, pin->nr_folios);
	atomic64_sub(pin->charged, &pin->mm->pinned_vm);
	mmdrop(pin->mm);
	elisa_user_uncharge(pin->user, pin->charged);
	mapping_unmap_writable(pin->file->f_mapping);
	fput(pin->file);
	kvfree(pin);
}

/*
 * The number of the region's 4 KiB pages whose folio is no longer its file's: a folio
 * that truncation or hole punching removed from the page cache (its mapping is then
 * NULL; being pinned, it is not freed, and the page cache never takes it back), one
 * found elsewhere than at its index, or one past the end of the file (a truncate that
 * has not yet taken it out). 0: every page of the region is the file's. A snapshot:
 * the file may be cut right after. Any context.
 *
 * Why C: folio->mapping and folio->index are page-cache internals with no Rust binding.
 * Goes away with a Rust abstraction of folios that exposes both.
 */
u64 elisa_shim_region_decoupled(void *p)
{
	struct elisa_region_pin *pin = p;
	struct address_space *mapping = pin->file->f_mapping;
	unsigned long i, left = pin->npages, skip = pin->skip, in;
	pgoff_t index = pin->index;
	pgoff_t end = DIV_ROUND_UP(i_size_read(file_inode(pin->file)), PAGE_SIZE);
	u64 lost = 0;

	for (i = 0; i < pin->nr_folios && left; i++, skip = 0) {
		struct folio *folio = pin->folios[i];

		in = min(folio_nr_pages(folio) - skip, left);
		if (READ_ONCE(folio->mapping) != mapping || READ_ONCE(folio->index) != index ||
		    index + skip + in > end)
			lost += in;
		index += folio_nr_pages(folio);
		left -= in;
	}
	return lost;
}

/*
 * Names the region for the kernel log in @buf (@len bytes, NUL-terminated): the range,
 * the creating process and its file's name, last, so that a long name is what a short
 * buffer cuts. The name is the VMM's choice (a memfd's or a tmpfs file's, any bytes but
 * '/' and NUL): its first 47 bytes are printed escaped (control and other non-printable
 * bytes as \n, \e or octal, and a backslash as \\), so that a newline or a terminal
 * escape in it cannot forge a kernel log line or reach the console, and a name cannot
 * pass for another. Why C: %pD (a file's name) is printk's, and string_escape_mem() has
 * no Rust binding.
 */
void elisa_shim_region_name(void *p, char *buf, size_t len)
{
	struct elisa_region_pin *pin = p;
	char name[48], esc[4 * sizeof(name)];
	int n;

	snprintf(name, sizeof(name), "%pD", pin->file);
	n = string_escape_mem(name, strlen(name), esc, sizeof(esc) - 1,
			      ESCAPE_ANY_NP | ESCAPE_APPEND, "\\");
	esc[min_t(int, n, sizeof(esc) - 1)] = 0;
	snprintf(buf, len, "[%#llx, +%#llx) of pid %d, file %s", pin->offset,
		 (u64)pin->npages << PAGE_SHIFT, pin->pid, esc);
}

/*
 * Region and service files. Why C: like the elisa-vm file, their file_operations must
 * carry .owner; and recognising one of our files behind an fd needs the fops address.
 */
static int elisa_region_fop_release(struct inode *inode, struct file *file)
{
	elisa_rust_region_release(file->private_data);
	return 0;
}

static int elisa_service_fop_release(struct inode *inode, struct file *file)
{
	elisa_rust_service_release(file->private_data);
	return 0;
}

static const struct file_operations elisa_region_fops = {
	.owner = THIS_MODULE,
	.release = elisa_region_fop_release,
	.llseek = noop_llseek,
};

static const struct file_operations elisa_service_fops = {
	.owner = THIS_MODULE,
	.release = elisa_service_fop_release,
	.llseek = noop_llseek,
};

static const struct file_operations *elisa_obj_fops(int kind)
{
	return kind == ELISA_OBJ_REGION ? &elisa_region_fops : &elisa_service_fops;
}

/* A new O_CLOEXEC fd of kind @kind owning @priv (released through elisa_rust_{region,service}_release). */
int elisa_shim_obj_fd(int kind, void *priv)
{
	return anon_inode_getfd(kind == ELISA_OBJ_REGION ? "elisa-region" : "elisa-service",
				elisa_obj_fops(kind), priv, O_RDWR | O_CLOEXEC);
}

/*
 * The private data of the elisa file of kind @kind behind @fd, with a reference on the
 * file in *@filp (drop it with fput()), or an ERR_PTR: -EBADF, or
 * -EINVAL for another kind of file.
 */
void *elisa_shim_obj_fget(int fd, int kind, struct file **filp)
{
	struct file *f = fget(fd);

	if (!f)
		return ERR_PTR(-EBADF);
	if (f->f_op != elisa_obj_fops(kind)) {
		fput(f);
		return ERR_PTR(-EINVAL);
	}
	*filp = f;
	return f->private_data;
}

/*
 * debugfs: /sys/kernel/debug/elisa/vms (root only), and the vm<id> directories below.
 * Why C: the kernel crate's debugfs files build their file_operations without .owner (as
 * its misc device does), so an open file would not hold the module; these set it.
 */
static int elisa_vms_show(struct seq_file *m, void *unused)
{
	elisa_rust_debugfs_show(m);
	return 0;
}

/*
 * Both files show host-physical addresses (EPTP-list entries), and the views dump the
 * bytes of the trusted stacks, which hold what services pushed (other VMs' region data).
 * debugfs lets a read-only file through at any lockdown level (debugfs_locked_down());
 * these refuse to open under lockdown, as debugfs refuses its files that can do more.
 */
static int elisa_vms_open(struct inode *inode, struct file *file)
{
	int r = security_locked_down(LOCKDOWN_DEBUGFS);

	return r ? r : single_open(file, elisa_vms_show, inode->i_private);
}

static const struct file_operations elisa_vms_fops = {
	.owner = THIS_MODULE,
	.open = elisa_vms_open,
	.read = seq_read,
	.llseek = seq_lseek,
	.release = single_release,
};

static struct dentry *elisa_debugfs;

/*
 * debugfs: /sys/kernel/debug/elisa/vm<id>/vcpu<n>-views (root only), one vCPU's views as
 * the binary dump of Documentation/testing.rst. Why C: like elisa/vms, and a read must
 * see one snapshot taken at open, which the kernel crate's debugfs files (a writer called
 * on the live data at every read) do not give. The file's private data is the vCPU's
 * Rust state; open asks Rust for a snapshot, read copies from it, release frees it. The
 * directory is removed at detach before the states are freed; debugfs waits for opens in
 * progress then, and refuses later reads of files still open (registry.rs).
 */
static int elisa_views_open(struct inode *inode, struct file *file)
{
	void *snap = NULL;
	int r = security_locked_down(LOCKDOWN_DEBUGFS);

	if (r)
		return r;
	r = elisa_rust_views_open(inode->i_private, &snap);
	if (r)
		return r;
	file->private_data = snap;
	return 0;
}

static ssize_t elisa_views_read(struct file *file, char __user *buf, size_t len, loff_t *pos)
{
	size_t size = 0;
	const u8 *data = elisa_rust_views_data(file->private_data, &size);

	return simple_read_from_buffer(buf, len, pos, data, size);
}

static int elisa_views_release(struct inode *inode, struct file *file)
{
	elisa_rust_views_release(file->private_data);
	return 0;
}

static const struct file_operations elisa_views_fops = {
	.owner = THIS_MODULE,
	.open = elisa_views_open,
	.read = elisa_views_read,
	.release = elisa_views_release,
	.llseek = default_llseek,
};

void *elisa_shim_debugfs_vm_dir(u64 id)
{
	char name[32];

	if (IS_ERR_OR_NULL(elisa_debugfs))
		return NULL;
	snprintf(name, sizeof(name), "vm%llu", id);
	return debugfs_create_dir(name, elisa_debugfs);
}

void elisa_shim_debugfs_views_file(void *dir, u32 idx, void *state)
{
	char name[32];

	if (IS_ERR_OR_NULL(dir))
		return;
	snprintf(name, sizeof(name), "vcpu%u-views", idx);
	debugfs_create_file(name, 0400, dir, state, &elisa_views_fops);
}

void elisa_shim_debugfs_remove(void *dir)
{
	if (!IS_ERR_OR_NULL(dir))
		debugfs_remove(dir);
}

int elisa_shim_init(void)
{
	/*
	 * Unbound: not the caller's CPU. WQ_MEM_RECLAIM: a rescuer thread, so that a detach,
	 * which frees memory (an OOM-killed VMM's), never waits for a new kworker to be made
	 * under memory pressure. Its own queue: the callers blocked on the registry lock do
	 * not take the shared system queue's slots.
	 */
	elisa_wq = alloc_workqueue("elisa", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!elisa_wq)
		return -ENOMEM;

	elisa_debugfs = debugfs_create_dir("elisa", NULL);
	debugfs_create_file("vms", 0400, elisa_debugfs, NULL, &elisa_vms_fops);
	return 0;
}

/*
 * Module exit: every elisa file is closed, so no VM is attached (the tracepoint may still
 * be registered, for ELISA_HOOK_LINGER: it goes here; the ftrace direct call would hold a
 * module reference), and detach has waited for every exit trampoline
 * (elisa_shim_hooks_sync()). No VMCS that
 * can still run points at the trampoline: a quarantined vCPU's might, and then the module
 * is pinned (elisa_shim_pin_module()); one of a VM no task can run again (its mm has no
 * user left) never enters again.
 */
void elisa_shim_exit(void)
{
	/* A hook left registered after the last detach goes now, and its calls end. */
	cancel_delayed_work_sync(&elisa_hook_idle);
	/*
	 * The direct call holds a module reference, so it is gone (and waited for) by now;
	 * but for a forced unload (rmmod -f), which skips that reference.
	 */
	if (WARN_ON_ONCE(elisa_hook_ftrace_on && !elisa_hook_ftrace_stuck) &&
	    !elisa_ftrace_unregister())
		elisa_hook_ftrace_on = false;
	if (elisa_hook_tp_on)
		elisa_tp_unregister();
	/* A hook call still running (the probe's removal by the delayed work included). */
	elisa_shim_hooks_sync();
	elisa_ftrace_exit();
	debugfs_remove_recursive(elisa_debugfs);
	destroy_workqueue(elisa_wq);
}
