/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the exit trampoline (elisa_exit.S) shares with C and Rust: the VMCS fields it reads
 * and writes, and the offsets of the few vCPU-state fields it touches. Plain numbers,
 * because the assembler sees neither enum vmcs_field nor a Rust struct: elisa_shim.c
 * checks the field encodings against <asm/vmx.h> and the layout against struct
 * elisa_exit_hook, and vcpu.rs checks its ExitHook against the same offsets.
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
