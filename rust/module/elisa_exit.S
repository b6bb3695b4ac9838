/* SPDX-License-Identifier: GPL-2.0 */
/*
 * elisa_vmexit: where a vCPU with elisa's settings leaves the guest (design.rst, "The exit
 * trampoline"). The kvm_entry probe points the VMCS's HOST_RIP here at the entries that
 * put elisa's settings into it; this code takes them out again before any KVM code runs,
 * puts KVM's HOST_RIP back, and goes on to it (vmx_vmexit in KVM's __vmx_vcpu_run) with
 * every guest register as the CPU left it. It replaces a kvm_exit tracepoint probe, which
 * every exit of every VM on the host paid for while any VM was attached.
 *
 * Why assembly: it runs right after the VM exit, where the guest's registers are still
 * live in the CPU and none is free, and where KVM's own exit path expects them.
 *
 * The state: RSP is KVM's HOST_RSP (the stack below it is free; nothing above it is read);
 * the current VMCS is the vCPU's (VMPTRST names it); interrupts are off; the CPU
 * still runs with the guest's SPEC_CTRL, return-stack-buffer and branch history. Hence:
 * the common path (an exit in the default view) is straight-line code with no RET and no
 * indirect branch, and the jump on to KVM, whose address is in memory, is a return whose
 * predicted target is a speculation trap. The rare path (an exit inside a gate or sub
 * view, or one that ends a broken excursion) first fills the return-stack buffer as KVM
 * does at its own exit, zeroes the registers, then calls elisa_exit_slow() (elisa_shim.c),
 * which switches SPEC_CTRL to the host's value for the Rust it calls; the guest's goes
 * back here, after the last RET of that call.
 */
#include <linux/linkage.h>
#include <asm/asm.h>
#include <asm/nospec-branch.h>
#include <asm/percpu.h>
#include "elisa_exit.h"

/* Not instrumentable: no kprobe may land where the guest's registers are live. */
.section .noinstr.text, "ax"

SYM_CODE_START(elisa_vmexit)
	UNWIND_HINT_UNDEFINED
	ENDBR
	push %rax
	push %rcx
	push %rdx

	/* The state the kvm_entry probe set up on this CPU, for the VMCS it entered. */
	movq PER_CPU_VAR(elisa_hook_cur), %rax
	test %rax, %rax
	jz .Lforeign
	sub $8, %rsp
	vmptrst (%rsp)
	pop %rcx
	cmp ELISA_HOOK_VMCS(%rax), %rcx
	jne .Lforeign
	movq $0, PER_CPU_VAR(elisa_hook_cur)

	/* KVM's exit path goes back into HOST_RIP. */
	mov elisa_kvm_vmexit(%rip), %rcx
	mov $ELISA_VMCS_HOST_RIP, %edx
	vmwrite %rcx, %rdx

	/* Only this vCPU's thread writes these (KVM_RUN holds vcpu->mutex). */
	incq ELISA_HOOK_EXITS(%rax)
	movb $0, ELISA_HOOK_RESUMED(%rax)
	cmpb $0, ELISA_HOOK_IN_GUEST(%rax)
	je .Lout
	cmpb $0, ELISA_HOOK_SHUTDOWN(%rax)
	jne .Lslow
	/* In a view (or KVM's root replaced by a list entry elisa did not write): slow path. */
	mov $ELISA_VMCS_EPT_POINTER, %edx
	vmread %rdx, %rcx
	cmp ELISA_HOOK_LIST0(%rax), %rcx
	jne .Lslow

	/* VM functions off: the controls are again what KVM wrote (vmx.rs). */
	mov $ELISA_VMCS_SECONDARY, %edx
	vmread %rdx, %rcx
	btr $ELISA_VMFUNC_BIT, %rcx
	vmwrite %rcx, %rdx
	/*
	 * The last access to the state: once it reads 0, detach may free it (after
	 * elisa_shim_hooks_sync(), which waits for this code to have left, interrupts on).
	 */
	movb $0, ELISA_HOOK_IN_GUEST(%rax)

.Lout:
	pop %rdx
	pop %rcx
	pop %rax
	/*
	 * On to KVM's vmx_vmexit, every register the guest's: a retpoline without a register.
	 * The CALL puts the trap below into the return-stack buffer, the PUSH puts the target
	 * above its return address, and RET 8 goes there and drops the return address.
	 */
	ANNOTATE_INTRA_FUNCTION_CALL
	call .Ljump
.Ltrap:
	UNWIND_HINT_UNDEFINED
	pause
	lfence
	jmp .Ltrap
.Ljump:
	pushq elisa_kvm_vmexit(%rip)
	ANNOTATE_UNRET_SAFE
	ret $8
	int3

.Lforeign:
	/*
	 * No state of this CPU's entry for this VMCS: a VMCS whose entry put elisa here and
	 * then failed (VMfail: no exit), entered again where no probe ran. Nothing of the
	 * state is touched; the VMCS gets KVM's HOST_RIP and the VM-functions bit off.
	 */
	mov elisa_kvm_vmexit(%rip), %rcx
	mov $ELISA_VMCS_HOST_RIP, %edx
	vmwrite %rcx, %rdx
	mov $ELISA_VMCS_SECONDARY, %edx
	vmread %rdx, %rcx
	btr $ELISA_VMFUNC_BIT, %rcx
	vmwrite %rcx, %rdx
	jmp .Lout

.Lslow:
	/*
	 * The whole register frame (struct elisa_exit_frame) and a word for the guest's
	 * SPEC_CTRL; then no guest value is left in a register while C and Rust run (as KVM
	 * clears them at its own exit), and C runs on an aligned stack.
	 */
	push %rbx
	push %rbp
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	sub $8, %rsp
	/*
	 * The registers first (a view's, a service's values): an NMI in the return-stack
	 * fill would otherwise hand them to a host perf sample of interrupted registers.
	 */
	xor %ecx, %ecx
	xor %edx, %edx
	xor %ebp, %ebp
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	xor %r11d, %r11d
	xor %r12d, %r12d
	xor %r13d, %r13d
	xor %r14d, %r14d
	xor %r15d, %r15d
	mov %rax, %rdi
	mov %rsp, %rsi
	mov %rsp, %rbx
	FILL_RETURN_BUFFER %rcx, RSB_CLEAR_LOOPS, X86_FEATURE_RSB_VMEXIT, \
			   X86_FEATURE_RSB_VMEXIT_LITE
	and $-16, %rsp
	call elisa_exit_slow
	mov %rbx, %rsp
	/* The guest's SPEC_CTRL back, if C switched it: no RET from here but the last. */
	test %al, %al
	jz 1f
	mov $ELISA_MSR_SPEC_CTRL, %ecx
	mov (%rsp), %eax
	mov 4(%rsp), %edx
	wrmsr
1:	add $8, %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rdi
	pop %rsi
	pop %rbp
	pop %rbx
	jmp .Lout
SYM_CODE_END(elisa_vmexit)
