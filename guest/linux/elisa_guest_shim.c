// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_guest's C shim: what the Rust crate (elisa_guest_main.rs) cannot reach through
 * the kernel crate of Linux 7.2. Each function says why it is C; none holds logic of its
 * own beyond forwarding.
 */
#include <linux/compat.h>
#include <linux/fs.h>
#include <linux/irqflags.h>
#include <linux/kdebug.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/notifier.h>
#include <linux/ratelimit.h>
#include <linux/string.h>
#include <asm/cpufeature.h>
#include <asm/pgtable.h>
#include <asm/processor.h>
#include <asm/ptrace.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>
#include <asm/traps.h>

#include "elisa_guest.h"
#include "elisa_guest_shim.h"

/*
 * The "gate" parameter: elisa_guest.gate=<G>:<index>[:<name>][,...], given once or
 * several times (each value is appended, comma-separated). Why C: the module! macro of
 * 7.2 supports integer parameters only, and a parameter that accumulates needs its own
 * kernel_param_ops. Rust parses the text (elisa_guest::param::GateList).
 */
static char elisa_guest_gates[1024];

static int elisa_guest_gate_set(const char *val, const struct kernel_param *kp)
{
	size_t have = strlen(elisa_guest_gates);
	size_t add;

	if (!val)
		return -EINVAL;
	add = strlen(val);
	if (have + 1 + add >= sizeof(elisa_guest_gates)) {
		pr_err("elisa_guest: the gate parameter is longer than %zu bytes\n",
		       sizeof(elisa_guest_gates) - 1);
		return -EINVAL;
	}
	if (have && add)
		elisa_guest_gates[have++] = ',';
	memcpy(elisa_guest_gates + have, val, add + 1);
	return 0;
}

static int elisa_guest_gate_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", elisa_guest_gates);
}

static const struct kernel_param_ops elisa_guest_gate_ops = {
	.set = elisa_guest_gate_set,
	.get = elisa_guest_gate_get,
};
module_param_cb(gate, &elisa_guest_gate_ops, NULL, 0444);
MODULE_PARM_DESC(gate, "Gates <G>:<index>[:<name>], comma-separated; may be repeated");

/* The parameter's text; read only at module init. */
const char *elisa_guest_shim_gate_param(void)
{
	return elisa_guest_gates;
}

/*
 * CPU features and paging facts. Why C: boot_cpu_has(), cpu_feature_enabled(), CR4 and
 * LDT_BASE_ADDR are macros and inline functions without Rust bindings.
 */
void elisa_guest_shim_cpu(struct elisa_guest_cpu *out)
{
	unsigned long cr4 = __read_cr4();

	memset(out, 0, sizeof(*out));
	out->hypervisor = boot_cpu_has(X86_FEATURE_HYPERVISOR);
	out->la57 = !!(cr4 & X86_CR4_LA57);
	out->pcide = !!(cr4 & X86_CR4_PCIDE);
	out->xen_pv = cpu_feature_enabled(X86_FEATURE_XENPV);
	out->pti = boot_cpu_has(X86_FEATURE_PTI);
#ifdef X86_CR4_LASS
	out->lass = !!(cr4 & X86_CR4_LASS);
#endif
	out->ldt_slot = pgd_index(LDT_BASE_ADDR);
}

/*
 * The PGD this CPU runs on (in kernel mode, under PTI too, the kernel copy), to copy its
 * kernel half. Why C: __va() and read_cr3_pa() are macros and inline functions.
 */
const u64 *elisa_guest_shim_kernel_pgd(void)
{
	return (const u64 *)__va(read_cr3_pa());
}

/* Why C: page_address() and page_to_phys() are macros without Rust bindings. */
void *elisa_guest_shim_page_address(struct page *page)
{
	return page_address(page);
}

u64 elisa_guest_shim_page_to_phys(struct page *page)
{
	return page_to_phys(page);
}

/*
 * Why C: local_irq_save() and local_irq_restore() are macros (with the kernel's tracking of
 * the interrupt state, which a bare CLI in Rust would bypass); the kernel crate has no
 * binding for them.
 */
unsigned long elisa_guest_shim_irq_save(void)
{
	unsigned long flags;

	local_irq_save(flags);
	return flags;
}

void elisa_guest_shim_irq_restore(unsigned long flags)
{
	local_irq_restore(flags);
}

/*
 * The #UD of a call whose gate is gone (the host detached the VM): the entry VMFUNC at
 * G + 0xffd raises #UD. Resume at the fallback stub instead, which returns -ENODEV. Why C:
 * the kernel crate has no die-notifier binding, and struct die_args and pt_regs are read
 * here. Rust decides (elisa_guest_rust_ud: one of our entry VMFUNCs, on our CR3).
 */
static int elisa_guest_die(struct notifier_block *nb, unsigned long val, void *data)
{
	struct die_args *args = data;
	u64 ip;

	if (val != DIE_TRAP || args->trapnr != X86_TRAP_UD || user_mode(args->regs))
		return NOTIFY_DONE;
	ip = elisa_guest_rust_ud(args->regs->ip);
	if (!ip)
		return NOTIFY_DONE;
	args->regs->ip = ip;
	return NOTIFY_STOP;
}

static struct notifier_block elisa_guest_die_nb = {
	.notifier_call = elisa_guest_die,
};

int elisa_guest_shim_die_register(void)
{
	return register_die_notifier(&elisa_guest_die_nb);
}

/* unregister_die_notifier() waits for running notifiers (synchronize_rcu()). */
void elisa_guest_shim_die_unregister(void)
{
	unregister_die_notifier(&elisa_guest_die_nb);
}

/*
 * /dev/elisa-guest. Why C: the kernel crate's MiscDevice vtable leaves
 * file_operations.owner NULL, so an open file would not pin the module, and closing it
 * after rmmod would run freed code. This file_operations carries .owner = THIS_MODULE
 * (misc_open() installs it with fops_get()). Goes away when the kernel crate sets .owner.
 * The layout of every ioctl struct is the same for 32-bit callers, so compat_ptr_ioctl.
 */
static long elisa_guest_dev_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	/* Whether the file may call (device.rs): opened for writing. */
	return elisa_guest_rust_ioctl(cmd, arg, !!(file->f_mode & FMODE_WRITE));
}

static const struct file_operations elisa_guest_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = elisa_guest_dev_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice elisa_guest_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "elisa-guest",
	.fops = &elisa_guest_fops,
	.mode = 0600,
};

int elisa_guest_shim_misc_register(void)
{
	return misc_register(&elisa_guest_misc);
}

void elisa_guest_shim_misc_deregister(void)
{
	misc_deregister(&elisa_guest_misc);
}

/*
 * Whether a message that callers can cause over and over (a gate closing and opening:
 * any guest user can close its CPU's gates, with a breakpoint on itself) may go to the
 * log now: at most 10 every 5 s. Why C: DEFINE_RATELIMIT_STATE and __ratelimit() have
 * no binding.
 */
static DEFINE_RATELIMIT_STATE(elisa_guest_log_rs, 5 * HZ, 10);

bool elisa_guest_shim_log_ratelimit(void)
{
	return __ratelimit(&elisa_guest_log_rs);
}

/*
 * The functions other guest drivers call (elisa_guest.h). Why C: a Rust module of 7.2
 * cannot export a symbol (EXPORT_SYMBOL_GPL is a C macro); these forward to Rust.
 */
int elisa_guest_find(const char *name)
{
	return elisa_guest_rust_find(name);
}
EXPORT_SYMBOL_GPL(elisa_guest_find);

long elisa_guest_call(unsigned int gate, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4)
{
	return elisa_guest_rust_call(gate, a0, a1, a2, a3, a4);
}
EXPORT_SYMBOL_GPL(elisa_guest_call);
