// SPDX-License-Identifier: GPL-2.0
/*
 * elisa C shim: the pieces of elisa.ko that Rust-for-Linux on 7.2 cannot express.
 * Each function says what is missing on the Rust side and what would remove it.
 * Rust objects are opaque pointers here; C never reads their fields.
 */
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/msr-index.h>
#include <asm/vmx.h>

#include "elisa_shim.h"

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

static long elisa_fop_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	return elisa_rust_dev_ioctl(file->private_data, cmd, arg);
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
 * Why C: the kernel crate has no CPU-feature or MSR API. rdmsrq_safe() survives a #GP
 * where an MSR does not exist (no VMX, or IA32_VMX_VMFUNC on a CPU without VM functions).
 * Returns -ENODEV when the CPU has no VMX at all.
 */
int elisa_shim_read_vmx_msrs(struct elisa_vmx_msrs *out)
{
	u64 ctls, ctls2 = 0, ept = 0, vmfunc = 0;

	if (!boot_cpu_has(X86_FEATURE_VMX))
		return -ENODEV;
	if (rdmsrq_safe(MSR_IA32_VMX_PROCBASED_CTLS, &ctls))
		return -ENODEV;
	/* secondary controls exist only when their activation bit may be 1 */
	if ((ctls >> 32) & CPU_BASED_ACTIVATE_SECONDARY_CONTROLS) {
		if (rdmsrq_safe(MSR_IA32_VMX_PROCBASED_CTLS2, &ctls2))
			ctls2 = 0;
		if (rdmsrq_safe(MSR_IA32_VMX_EPT_VPID_CAP, &ept))
			ept = 0;
		if (((ctls2 >> 32) & SECONDARY_EXEC_ENABLE_VMFUNC) &&
		    rdmsrq_safe(MSR_IA32_VMX_VMFUNC, &vmfunc))
			vmfunc = 0;
	}
	out->procbased_ctls2 = ctls2;
	out->ept_vpid_cap = ept;
	out->vmfunc = vmfunc;
	return 0;
}
