/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The symbols that cross between elisa's Rust crate (elisa_main.rs) and its C shim
 * (elisa_shim.c). Nothing else is shared: Rust state is opaque (void *) to C.
 */
#ifndef ELISA_SHIM_H
#define ELISA_SHIM_H

#include <linux/types.h>

/* Raw VMX capability MSRs of the calling CPU. */
struct elisa_vmx_msrs {
	u64 procbased_ctls2;
	u64 ept_vpid_cap;
	u64 vmfunc;
};

/* C -> Rust: /dev/elisa file operations (elisa_main.rs / device.rs). */
void *elisa_rust_dev_open(void);
void elisa_rust_dev_release(void *priv);
long elisa_rust_dev_ioctl(void *priv, unsigned int cmd, unsigned long arg);

/* Rust -> C. */
int elisa_shim_misc_register(void);
void elisa_shim_misc_deregister(void);
int elisa_shim_read_vmx_msrs(struct elisa_vmx_msrs *out);

#endif /* ELISA_SHIM_H */
