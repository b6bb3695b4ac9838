/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The symbols that cross between elisa_guest's Rust crate (elisa_guest_main.rs) and its C
 * shim (elisa_guest_shim.c). Rust state is opaque to C.
 */
#ifndef ELISA_GUEST_SHIM_H
#define ELISA_GUEST_SHIM_H

#include <linux/types.h>

struct page;

/* What the module reads of the CPU and the kernel's paging once, at load. */
struct elisa_guest_cpu {
	u8 hypervisor;		/* X86_FEATURE_HYPERVISOR: running in a VM */
	u8 la57;		/* 5-level paging is on */
	u8 pcide;		/* CR4.PCIDE */
	u8 xen_pv;		/* a Xen PV guest */
	u8 pti;			/* page-table isolation is on */
	u8 lass;		/* CR4.LASS: no kernel-mode access to the lower half */
	u8 reserved[2];
	u32 ldt_slot;		/* the PGD slot of the per-process LDT remap */
	u32 reserved2;
};

/* C -> Rust: /dev/elisa-guest (device.rs). */
long elisa_guest_rust_ioctl(unsigned int cmd, unsigned long arg, bool writable);
/* C -> Rust: the exported functions (call.rs). */
int elisa_guest_rust_find(const char *name);
long elisa_guest_rust_call(unsigned int gate, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4);
/*
 * C -> Rust: a #UD in kernel mode at ip (call.rs), from the die notifier: the address to
 * resume at, or 0 when the #UD is not one of the module's entry VMFUNCs.
 */
u64 elisa_guest_rust_ud(u64 ip);

/* Rust -> C. */
const char *elisa_guest_shim_gate_param(void);
void elisa_guest_shim_cpu(struct elisa_guest_cpu *out);
const u64 *elisa_guest_shim_kernel_pgd(void);
void *elisa_guest_shim_page_address(struct page *page);
u64 elisa_guest_shim_page_to_phys(struct page *page);
unsigned long elisa_guest_shim_irq_save(void);
void elisa_guest_shim_irq_restore(unsigned long flags);
int elisa_guest_shim_die_register(void);
void elisa_guest_shim_die_unregister(void);
int elisa_guest_shim_misc_register(void);
void elisa_guest_shim_misc_deregister(void);
bool elisa_guest_shim_log_ratelimit(void);

#endif /* ELISA_GUEST_SHIM_H */
