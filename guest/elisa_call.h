/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * elisa_call.h: the guest side of an ELISA call, for C guests (kernel or user space).
 *
 * The guest maps the three pages of its entry block (elisa_core::gate::write_guest_block;
 * as a C array in the header tools/elisa-guest-blob generates) at G, G + 0x1000 and
 * G + 0x2000, read + execute. The VMM chooses G when it grants the service
 * (ELISA_GRANT) and tells the guest G and the gate index (511 for the VM's first
 * service, 510 for the second, ...) by its own channel, for example the kernel command
 * line or a config page. Services of one VM may share one entry block.
 *
 * By default the trusted pages are supervisor pages: callers run at CPL 0 (a guest kernel,
 * SMEP and SMAP allowed). A grant with ELISA_GRANT_USER is for callers at CPL 3 instead.
 * The entry stub starts with ENDBR64, so kernels with CET indirect-branch tracking may call
 * it through a register.
 *
 * Calls must run with RFLAGS.IF = 0 (cli, or local_irq_save() in a guest kernel); with
 * IF = 1 the gate refuses and returns ELISA_ERR_IRQ_ENABLED. Guest user space has no safe
 * way to clear IF (no VMCS-write hypercall exists, by design): it calls through a guest
 * kernel driver that disables interrupts around elisa_call(). See gate-protocol.rst.
 *
 * The call clobbers RCX, RSI, RDI, R8-R11 (zeroed), returns in RAX (= RDX), and preserves
 * RSP. A call the module fails back (ELISA_CALL_ERR_INTERRUPTED) returns with every general
 * register but RSP and RAX/RDX zeroed, the callee-saved ones too, so that nothing a service
 * loaded reaches the guest: RBX and R12-R15 are therefore declared clobbered (the compiler
 * saves them where it needs them), and RBP is saved on the stack around the call. In user
 * space it steps over the 128-byte red zone before it pushes anything, so it is safe in
 * leaf functions of code built with a red zone.
 *
 * guest/elisa-guest is the same interface for Rust guests, a no_std crate (Gate::call,
 * CallError, EntryBlock, with_irqs_disabled). The constants below are elisa_core::gate's;
 * "cargo test -p elisa-guest" checks that they still are.
 */
#ifndef ELISA_CALL_H
#define ELISA_CALL_H

/* Offset of the entry stub in the first page of the entry block. */
#define ELISA_CALL_ENTRY_OFFSET 0xff7
/* The gate is closed: interrupts were enabled (-EPERM). */
#define ELISA_CALL_ERR_IRQ_ENABLED (-1L)
/* No gate at this index: the entry VMFUNC stayed in the default view (-ENODEV). */
#define ELISA_CALL_ERR_NOT_ENTERED (-19L)
/* The module failed the call back because an event was due during it (-EINTR). */
#define ELISA_CALL_ERR_INTERRUPTED (-4L)

/*
 * The call through R11. In a Linux module built with retpolines it goes through the
 * kernel's thunk, as the compiler's own indirect calls do (objtool warns of a bare
 * indirect call there, and the kernel patches the thunk's call sites to what its
 * Spectre v2 mitigation wants). Kernel code has no red zone, so only user space steps
 * over one; the kernel's ASM_CALL_CONSTRAINT tells objtool the frame is set up.
 */
#if defined(__KERNEL__)
#include <asm/asm.h>
#define ELISA_CALL_REDZONE_SUB ""
#define ELISA_CALL_REDZONE_ADD ""
#define ELISA_CALL_SP , ASM_CALL_CONSTRAINT
#else
#define ELISA_CALL_REDZONE_SUB "sub $128, %%rsp\n\t"
#define ELISA_CALL_REDZONE_ADD "add $128, %%rsp\n\t"
#define ELISA_CALL_SP
#endif
#if defined(__KERNEL__) && defined(CONFIG_MITIGATION_RETPOLINE)
#define ELISA_CALL_R11 "call __x86_indirect_thunk_r11\n\t"
#else
#define ELISA_CALL_R11 "call *%%r11\n\t"
#endif

/* Calls the service of gate @index whose entry block is at @g with up to five arguments. */
static inline long elisa_call5(unsigned long g, unsigned int index, long a0, long a1, long a2,
			       long a3, long a4)
{
	register long r8 __asm__("r8") = a3;
	register long r9 __asm__("r9") = a4;
	register unsigned long r11 __asm__("r11") = g + ELISA_CALL_ENTRY_OFFSET;
	unsigned long ecx = index;
	long ret;

	__asm__ volatile(ELISA_CALL_REDZONE_SUB
			 "push %%rbp\n\t"
			 ELISA_CALL_R11
			 "pop %%rbp\n\t"
			 ELISA_CALL_REDZONE_ADD
			 : "=a"(ret), "+D"(a0), "+S"(a1), "+d"(a2), "+c"(ecx), "+r"(r8), "+r"(r9),
			   "+r"(r11) ELISA_CALL_SP
			 :
			 : "rbx", "r10", "r12", "r13", "r14", "r15", "memory", "cc");
	return ret;
}

#define elisa_call(g, index, a0, a1) elisa_call5((g), (index), (a0), (a1), 0, 0, 0)

#endif /* ELISA_CALL_H */
