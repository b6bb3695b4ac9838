/* SPDX-License-Identifier: GPL-2.0 */
/*
 * elisa_entry_direct: elisa's hook on every VM entry (design.rst, "The entry hook"). An
 * ftrace direct call at the entry of KVM's kvm_wait_lapic_expire(), the last function
 * vmx_vcpu_run() calls before the VM entry (IRQs off, the vCPU's VMCS current, KVM's VMCS
 * writes for this entry made). RDI is the struct kvm_vcpu.
 *
 * It runs at every entry of every VM on the host while a VM is attached, so a VM that
 * elisa does not know pays only the test below: is the bucket of its struct kvm in the
 * attached VMs' table empty? Nine instructions, no memory written. A VM whose bucket is
 * not empty (an attached VM, or one sharing its bucket) goes on to C,
 * elisa_entry_hook_direct() in elisa_shim.c, which walks the bucket as the kvm_entry
 * tracepoint probe does.
 *
 * Why assembly: an ftrace direct trampoline is entered from the traced function's
 * __fentry__ call site, before its prologue: it must keep the traced function's argument
 * registers and return with the stack as it found it. Every other register the C calling
 * convention lets a call clobber is free there, and the flags.
 */
#include <linux/linkage.h>
#include <asm/asm.h>
#include <asm/frame.h>
#include <asm/nospec-branch.h>
#include "elisa_exit.h"

.text

SYM_FUNC_START(elisa_entry_direct)
	/* Reached by a CALL, or by ftrace's RET when another tracer shares the function. */
	ENDBR
	/* The __fentry__ call into here is not accounted (ftrace leaves it to the trampoline). */
	CALL_DEPTH_ACCOUNT
	/* vcpu->kvm (the first field of struct kvm_vcpu: elisa_shim.c checks it). */
	mov (%rdi), %rax
	movabs $ELISA_HOOK_MUL, %rcx
	imul %rcx, %rax
	shr $(64 - ELISA_HOOK_BITS), %rax
	cmpq $0, elisa_hook_table(, %rax, 8)
	jne .Lbucket
	RET

.Lbucket:
	/* A frame where the kernel unwinds by frame pointers (nothing with ORC). */
	FRAME_BEGIN
	/*
	 * kvm_wait_lapic_expire(vcpu) has one argument: RDI is kept; its body reads no other
	 * register before writing it (it is in lapic.c, compiled apart from its callers).
	 */
	push %rdi
	/* The bucket's first record, for the C (RAX still holds the bucket's index). */
	mov elisa_hook_table(, %rax, 8), %rsi
	call elisa_entry_hook_direct
	pop %rdi
	FRAME_END
	RET
SYM_FUNC_END(elisa_entry_direct)
