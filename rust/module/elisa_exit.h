/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the exit trampoline (elisa_exit.S) and the entry hook (elisa_entry.S) share with C
 * and Rust: the VMCS fields they read and write, the offsets of the few vCPU-state fields
 * they touch, and the attached VMs' table. Plain numbers, because the assembler sees
 * neither enum vmcs_field nor a Rust struct: elisa_shim.c checks the field encodings
 * against <asm/vmx.h> and the layout against struct elisa_exit_hook, and vcpu.rs checks
 * its ExitHook against the same offsets.
 */
#ifndef ELISA_EXIT_H
#define ELISA_EXIT_H

#define ELISA_VMCS_HOST_RIP		0x6c16
#define ELISA_VMCS_EPT_POINTER		0x201a
#define ELISA_VMCS_SECONDARY		0x401e
/* SECONDARY_EXEC_ENABLE_VMFUNC, as a bit number. */
#define ELISA_VMFUNC_BIT		13

/* struct elisa_exit_hook, the first field of Rust's VcpuState (vcpu.rs, ExitHook). */
#define ELISA_HOOK_LIST0		0
#define ELISA_HOOK_EXITS		8
#define ELISA_HOOK_VCPU			16
#define ELISA_HOOK_VMCS			24
#define ELISA_HOOK_IN_GUEST		32
#define ELISA_HOOK_RESUMED		33
#define ELISA_HOOK_SHUTDOWN		34

/*
 * The attached VMs' table (elisa_shim.c, "KVM hooks"): 1 << ELISA_HOOK_BITS buckets of
 * records, a VM's bucket being the top ELISA_HOOK_BITS bits of its struct kvm's address
 * times ELISA_HOOK_MUL (hash_ptr()'s multiplier, GOLDEN_RATIO_64). A multiplicative hash,
 * not a slice of the address: x86 allocates a struct kvm in whole pages, often aligned to
 * its power-of-two size, which would leave most buckets of a slice unused.
 */
#define ELISA_HOOK_BITS			6
#define ELISA_HOOK_MUL			0x61C8864680B583EB

/*
 * struct elisa_exit_frame: the guest's general registers, as the trampoline pushed them,
 * and below them a word for the guest's SPEC_CTRL.
 */
#define ELISA_FRAME_WORDS		16
#define ELISA_MSR_SPEC_CTRL		0x48

#ifndef __ASSEMBLER__
#include <linux/types.h>

struct kvm_vcpu;

struct elisa_exit_hook {
	u64 list0;		/* KVM's root at the last entry (VcpuState::list0) */
	u64 exits;		/* exits of the vCPU since attach, for debugfs */
	struct kvm_vcpu *vcpu;	/* the vCPU the state belongs to */
	u64 vmcs;		/* its VMCS's address (VMPTRST), written at each entry */
	u8 in_guest;		/* elisa's settings are in the VMCS (between entry and exit) */
	u8 resumed_unconfirmed;	/* the last entry resumed a parked excursion */
	u8 shutdown_pending;	/* a broken excursion's end of the run is still to come */
};

/* Lowest address first: the trampoline pushed RAX first and R15 last. */
struct elisa_exit_frame {
	unsigned long spec_ctrl;
	unsigned long r15, r14, r13, r12, r11, r10, r9, r8;
	unsigned long rdi, rsi, rbp, rbx, rdx, rcx, rax;
};
#endif

#endif /* ELISA_EXIT_H */
