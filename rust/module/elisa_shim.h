/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The symbols that cross between elisa's Rust crate (elisa_main.rs) and its C shim
 * (elisa_shim.c). Rust state is opaque (void *) to C; KVM objects are opaque to Rust and
 * read only through the accessors here.
 */
#ifndef ELISA_SHIM_H
#define ELISA_SHIM_H

#include <linux/types.h>

struct file;
struct kvm;
struct kvm_vcpu;
struct seq_file;

/* C -> Rust: /dev/elisa file operations (device.rs). */
void *elisa_rust_dev_open(void);
void elisa_rust_dev_release(void *priv);
long elisa_rust_dev_ioctl(void *priv, unsigned int cmd, unsigned long arg, bool writable);
/* C -> Rust: elisa-vm file operations (vm.rs). */
void elisa_rust_vm_release(void *priv);
long elisa_rust_vm_ioctl(void *priv, unsigned int cmd, unsigned long arg);
/*
 * The key by which the probes find an attached VM: the first field of Rust's VmRecord
 * (registry.rs), chained per hash bucket (elisa_shim.c, "KVM hooks").
 */
struct elisa_hook_key {
	struct kvm *kvm;			/* set before linking, never changed */
	struct elisa_hook_key __rcu *next;	/* the bucket's next record */
};

/*
 * C -> Rust: KVM hooks (hooks.rs), called by the shim's kvm_entry probe for the vCPUs of
 * attached VMs only (not in guest mode), and by the exit trampoline's rare path
 * (elisa_exit.S, elisa_exit_slow()). IRQs off; no sleeping. The entry returns the vCPU
 * state whose settings it put into the VMCS, or NULL; the exit gets that state back.
 */
void *elisa_rust_kvm_entry(struct elisa_hook_key *rec, struct kvm_vcpu *vcpu);
void elisa_rust_kvm_exit(void *state);

/*
 * Where Rust finds what it reads of a struct kvm_vcpu, as byte offsets (computed by the
 * compiler for the tree elisa is built against), so that the attached path makes no calls
 * into C.
 */
struct elisa_vcpu_layout {
	u32 vcpu_idx;	/* int vcpu_idx */
	u32 regs;	/* unsigned long arch.regs[NR_VCPU_REGS] */
	u32 rip;	/* unsigned long arch.rip */
	u32 efer;	/* u64 arch.efer */
	u32 pebs_enable;	/* u64 arch.pmu.pebs_enable */
};

/* Kinds of elisa object files. */
#define ELISA_OBJ_REGION	1
#define ELISA_OBJ_SERVICE	2
/* C -> Rust: release of a region or service file (service.rs). */
void elisa_rust_region_release(void *priv);
void elisa_rust_service_release(void *priv);
/* C -> Rust: debugfs "vms" (registry.rs). */
void elisa_rust_debugfs_show(struct seq_file *m);
/* C -> Rust: debugfs "vm<id>/vcpu<n>-views" (registry.rs): a snapshot per open. */
int elisa_rust_views_open(void *state, void **snap);
const u8 *elisa_rust_views_data(void *snap, size_t *len);
void elisa_rust_views_release(void *snap);

/* Rust -> C. */
int elisa_shim_init(void);
void elisa_shim_exit(void);
int elisa_shim_misc_register(void);
void elisa_shim_misc_deregister(void);
bool elisa_shim_has_vmx(void);
int elisa_shim_rdmsr_local(u32 msr, u64 *val);

struct kvm *elisa_shim_kvm_from_fd(int fd, struct module **owner);
void elisa_shim_kvm_put(struct kvm *kvm, struct module *owner);
int elisa_shim_kvm_pid(struct kvm *kvm);
u32 elisa_shim_max_vcpus(void);

void elisa_shim_vcpu_layout(struct elisa_vcpu_layout *out);
int elisa_shim_kvm_check(struct kvm *kvm, const char **why);
bool elisa_shim_resched_fatal_signal(void);
bool elisa_shim_log_ratelimit(void);
bool elisa_shim_vcpu_cet(struct kvm_vcpu *vcpu);
u64 elisa_shim_vcpu_root_eptp(struct kvm_vcpu *vcpu);
void elisa_shim_vcpu_xstate(struct kvm_vcpu *vcpu, u64 out[5]);
void elisa_shim_vcpu_kick(struct kvm_vcpu *vcpu);

int elisa_shim_hooks_register(void);
/*
 * Which entry hooks are registered (for debugfs): 1 the ftrace direct call, 2 the kvm_entry
 * probe, 4 the direct call being unregistered.
 */
int elisa_shim_hook_state(void);
void elisa_shim_hook_link(struct elisa_hook_key *key);
void elisa_shim_hook_unlink(struct elisa_hook_key *key);
void elisa_shim_hook_forget(void *state);
void elisa_shim_hooks_unregister(void);
void elisa_shim_hooks_sync(void);
void elisa_shim_pin_module(void);
void elisa_shim_call_unbound(void (*fn)(void *arg), void *arg);
int elisa_shim_vm_fd(void *priv);
u64 elisa_shim_page_to_phys(void *page);
void *elisa_shim_page_address(void *page);
u32 elisa_shim_online_vcpus(struct kvm *kvm);
struct kvm_vcpu *elisa_shim_get_vcpu(struct kvm *kvm, u32 i);
u64 elisa_shim_gpa_end(struct kvm *kvm);
struct mem_cgroup;
bool elisa_shim_kvm_orphaned(struct kvm *kvm);
bool elisa_shim_kvm_unrunnable(struct kvm *kvm);
struct mem_cgroup *elisa_shim_charge_begin(struct kvm *kvm, struct mem_cgroup **old);
void elisa_shim_charge_end(struct mem_cgroup *memcg, struct mem_cgroup *old);
void elisa_shim_request_shutdown(struct kvm_vcpu *vcpu);
void elisa_shim_clear_cr2(struct kvm_vcpu *vcpu);
void elisa_shim_invept_all(const u64 *eptps, unsigned int n);
void elisa_shim_sync_all_cpus(void);
int elisa_shim_region_pin(int fd, u64 offset, u64 npages, u64 *hpas, void **pin_out,
			  const char **why);
void elisa_shim_region_unpin(void *pin);
u64 elisa_shim_region_decoupled(void *pin);
void elisa_shim_region_name(void *pin, char *buf, size_t len);
int elisa_shim_obj_fd(int kind, void *priv);
void *elisa_shim_obj_fget(int fd, int kind, struct file **filp);
void *elisa_shim_debugfs_vm_dir(u64 id);
void elisa_shim_debugfs_views_file(void *dir, u32 idx, void *state);
void elisa_shim_debugfs_remove(void *dir);

#endif /* ELISA_SHIM_H */
