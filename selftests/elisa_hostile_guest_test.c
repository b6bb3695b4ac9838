// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_hostile_guest_test: a guest kernel that attacks elisa's call path, case by case.
 * Every outcome is one of three: the call fails back (or returns normally), the attempt
 * is refused (#UD in the guest, a refusal value, an MMIO exit to the VMM), or the guest
 * alone dies (KVM_EXIT_SHUTDOWN, every general register zeroed by the module, RIP at
 * G + 0x2000). The host never warns (tools/testvm/run.sh fails the boot on a warning), the
 * region is never changed but by the service, and a second VM granted the same service
 * keeps working after every case that kills the first.
 *
 * VM A (the attacker, two vCPUs) and VM B (the peer, one vCPU) are granted one service
 * at G (gate index 511). The region is one page: a counter at byte 0, and 511 quadwords of
 * "region data" (SECRET_BASE + i) behind it. The service: RSI = 0 adds RDI to the counter
 * and returns the new value; RSI = 1 loads region data into RBX, RBP, RDX, RSI, RDI and
 * R8-R15 (saving the callee-saved ones on its stack), spins RDI times, adds 1 and returns
 * the new value; RSI = 2 returns the quadword at GVA RDI.
 *
 * Each case starts vCPU 0 (and vCPU 1 where said) from the VMM's snapshot at a guest
 * function, as a VMM reboots a vCPU; after a shutdown the same snapshot brings it back.
 * "killed" below means: KVM_EXIT_SHUTDOWN, RAX..R15 = 0, RIP = G + 0x2000, the vCPU's
 * debugfs "faults" + 1, the service not run, the region unchanged, the EPTP lists
 * (debugfs) without list[1], and VM B's next call returns the counter.
 *
 *  1. nongate_indexes_ud: VMFUNC(0, i) for i = 1..510 from the default view: 510 #UDs,
 *     each at the VMFUNC, the service not run
 *  2. sub_slot_ud: VMFUNC(0, 1), the sub view's slot, before and right after a call: #UD
 *     both times; debugfs shows no list[1] on either vCPU
 *  3. ecx_ge_512_ud: ECX = 512, 513, 1023, 4096, 2^31 - 1, 2^31, 2^32 - 2, 2^32 - 1: #UD each
 *  4. eax_nonzero_ud: EAX = 1..63, 64, 65, 255, 2^31, 2^32 - 1 with ECX = 511: #UD each, the
 *     service not run
 *  5. ecx0_not_entered: the entry stub with ECX = 0 stays in the default view: the fallback
 *     returns -19 (ERR_NOT_ENTERED), no #UD
 *  6. ungranted_gate_510: a call to index 510 (only 511 is granted): #UD at the entry
 *     VMFUNC (G + 0xffd), the handler steps over it, the fallback returns -19
 *  7. gate_index_from_own_code: VMFUNC(0, 511) in the guest's own code (the next byte is not
 *     executable in the gate view): killed
 *  8. gate_index_onto_data_pages: VMFUNC(0, 511) ending right at G - 0x1000 (gate data),
 *     G (EPTP list) and G + 0x2000 (unmapped in the gate view), written by the guest into
 *     its own pages: killed, each
 *  9. if_set_refused: a call with RFLAGS.IF = 1: RAX = RDX = -1 (ERR_IRQ_ENABLED), RBX,
 *     RBP, R12-R15 and RSP as before, the service not run, VMFUNC(0, 1) still #UD after
 * 10. tf_set_killed: a call with RFLAGS.TF = 1 (the guest's #DB handler sees the steps up
 *     to the entry VMFUNC): killed
 * 11. rsp_zero: the entry stub jumped to with RSP = 0: the service runs, the call comes
 *     back to the exit stub, whose RET faults in the default view: #PF at G + 0x2003 with
 *     CR2 = 0, taken by the guest's handler (IST); nothing else of the guest is touched
 * 12. rsp_noncanonical: RSP = 2^63: the same, #SS at G + 0x2003
 * 13. rsp_unmapped: RSP = an unmapped canonical GVA: #PF at G + 0x2003, CR2 = that RSP
 * 14. rsp_on_gate_pages: RSP = G + 8 (list[1] in the views), G + 0x10 and G - 0x1000 (the
 *     gate stack's top): each call runs the service, then #GP at G + 0x2003 (the RET pops
 *     the guest's own int3 fill); the EPTP lists are unchanged
 * 15. compat_mode_killed: VMFUNC(0, 511) from a 32-bit code segment of the 64-bit guest
 *     (compatibility mode; EIP below 4 GiB, where the gate view maps nothing): killed
 * 16. paging32_gate_closed: vCPU 0 in legacy 32-bit protected mode with 32-bit paging (no
 *     long mode): VMFUNC(0, 0) goes on; the gates are closed outside IA-32e mode, so
 *     VMFUNC(0, 511) exits and KVM injects #UD, which this 32-bit code cannot deliver:
 *     KVM_EXIT_SHUTDOWN at the VMFUNC, without elisa (its faults unchanged). The gate code
 *     is checked for 64-bit decoding only, and a 32-bit walk over the trusted tables is
 *     never made
 * 17. efer_nxe0_killed: EFER.NXE = 0 at the call: the trusted tables' XD bits are reserved
 *     bits then, the gate's first data access faults: killed
 * 18. cr0_wp0_call: CR0.WP = 0 at the call: the call works (registers as specified)
 * 19. hostile_flags_call: DF = 1, AC = 1 (CR0.AM = 1) and every arithmetic flag set: the
 *     call works, RFLAGS = 0x2 after it
 * 20. default_view_reads: guest PTEs onto the trusted window's first and last page, the
 *     region's GPA, the EPTP list's, the gate and sub code's and gate data's: each read is
 *     an MMIO exit at that GPA and returns what the VMM answered
 * 21. default_view_writes: the same pages written: MMIO write exits, the region unchanged
 * 22. write_own_g_page: the guest overwrites its page at G (all but the entry stub): the
 *     EPTP lists (debugfs) are unchanged, a call works, VMFUNC(0, 1) is #UD
 * 23. remap_g_between_calls: the guest points its PTEs of G, G + 0x1000, G + 0x2000 at
 *     another copy of the entry block and back, three times, a call after each: all work
 * 24. db_breakpoint_on_service: the guest's DR0/DR7 break on the service's first byte:
 *     the call is refused (#UD at G + 0xffd, -ENODEV), the service not run: the gates are
 *     closed while a breakpoint is armed or debug-register accesses do not exit (before,
 *     the #DB inside the view killed the VM, and which breakpoint hit told the VMM what
 *     the service touched)
 * 25. pf_in_service: the service reads an unmapped GVA (a #PF in the sub view): killed
 * 26. cr3_in_trusted_window: CR3 loaded with each trusted GPA of both views (the trusted
 *     window's first page included) right before a call, the code, stack and entry-block
 *     pages kept in the TLB as global pages: each run ends as the same run with a control
 *     CR3 outside the window (no memslot there either) does, or is killed; the service
 *     never runs, list[1] is never left set. In the emulated host the control stays at
 *     the CALL after the MOV to CR3 (Bochs walks the tables again: KVM cannot walk guest
 *     tables in unbacked memory), and so does every trusted CR3; the VMM stops the run.
 * 27. vcpu1_edits_g_ptes: vCPU 1 flips vCPU 0's PTEs of G between two copies of the entry
 *     block while vCPU 0 makes 1000 calls (started once vCPU 1 runs): each returns its
 *     value
 * 28. vcpu1_vmfunc_hammer: vCPU 1 runs VMFUNC(0, 1), (0, 2), (0, 510), (0, 512), (1, 511),
 *     (0, 2^32 - 1) in a loop during vCPU 0's 1000 calls (each at least once): every one
 *     is #UD, every call returns its value
 * 29. vcpu1_nmi_xapic, 30. vcpu1_nmi_x2apic: vCPU 1 sends NMIs through the xAPIC (MMIO)
 *     or x2APIC (MSR) ICR to vCPU 0 during its calls to the spinning service (vCPU 0's
 *     LAPIC timer, periodic and masked, makes it exit inside the views): each call returns
 *     its value or -4 (ERR_INTERRUPTED); no register ever holds region data after a call
 *     (RBX, RBP and R12-R15 included); each -4 is a debugfs failback; the NMIs arrive in
 *     the default view, never interrupting trusted code
 * 31. two_vcpus_zero_exits: both vCPUs make 1000 calls at once: no VM exit but the
 *     ucall's on each, the counter + 2000
 * 32. peer_vm_works: VM B makes 1000 calls with no VM exit; each returns the counter
 * 33. lists_intact: at the end, debugfs shows each vCPU of VM A with list[0] and its gate
 *     at 511 only (the same gate EPTP as at the start), and as many faults as kills
 *
 * 29 and 30 expect the fail-back to zero RBX, RBP and R12-R15 too (the guest libraries
 * save them around the call). ELISA_HOSTILE_ONLY=<name>,<name> in the environment runs
 * only those cases and skips the others (tools/testvm/run.sh --env, --allow-skip).
 */
#include <pthread.h>
#include <sys/mman.h>
#include "elisa_kvm.h"
#include "elisa_hostile.h"
#include "apic.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"

#define G 0x500000000000UL
#define CODE_GVA 0x600000000000UL
#define REGION_GVA 0x600000100000UL
#define PROBE_GVA 0x480000000000UL	/* guest PTEs onto trusted GPAs, one page each */
#define PTALIAS_GVA 0x470000000000UL	/* the guest's page-table page that maps G */
#define COPY_GVA 0x440000000000UL	/* a second copy of the entry block */
#define IST_GVA 0x460000000000UL	/* the guest's IST stack (2 pages) */
#define UNMAPPED_GVA 0x7ff000000000UL
#define SECRET_BASE 0x5ec7e75ec7e75000UL
#define CANARY 0xca0a000000000000UL
#define COMPAT_CS 0x30			/* GDT entry 6: 32-bit code */
#define P32_PORT 0x5e3
#define P32_LINEAR 0x10000000UL
#define MMIO_ANSWER 0x4d
#define NR_PROBES 8
#define LOOP_CALLS 1000
#define NMI_CALLS 60
#define ZERO_EXIT_CALLS 1000

#define HG_PTE_GLOBAL (1UL << 8)

#define OP_ADD 0
#define OP_SPIN 1
#define OP_READ 2

#define ENTRY (G + ELISA_CALL_ENTRY_OFFSET)
#define EXIT_STUB (G + 0x2000)

/* SysV callee-saved registers, in the assembly below. */
#define SAVE_CALLEE_SAVED "push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15\n"
#define RESTORE_CALLEE_SAVED "pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx\n"

/* ---- the service --------------------------------------------------------------------- */

asm(".pushsection .rodata\n"
    "hs_service_start:\n"
    "	cmp $1, %rsi\n"
    "	je 1f\n"
    "	cmp $2, %rsi\n"
    "	je 3f\n"
    "	movabs $" __stringify(REGION_GVA) ", %rax\n"
    "	mov %rdi, %rdx\n"
    "	lock xadd %rdi, (%rax)\n"
    "	lea (%rdi, %rdx), %rax\n"
    "	ret\n"
    "1:	push %rbx\n"
    "	push %rbp\n"
    "	push %r12\n"
    "	push %r13\n"
    "	push %r14\n"
    "	push %r15\n"
    "	movabs $" __stringify(REGION_GVA) ", %rax\n"
    "	mov %rdi, %rcx\n"
    "	mov 8(%rax), %rbx\n"
    "	mov 16(%rax), %rbp\n"
    "	mov 24(%rax), %r12\n"
    "	mov 32(%rax), %r13\n"
    "	mov 40(%rax), %r14\n"
    "	mov 48(%rax), %r15\n"
    "	mov 56(%rax), %rdx\n"
    "	mov 64(%rax), %rsi\n"
    "	mov 72(%rax), %rdi\n"
    "	mov 80(%rax), %r8\n"
    "	mov 88(%rax), %r9\n"
    "	mov 96(%rax), %r10\n"
    "	mov 104(%rax), %r11\n"
    "2:	dec %rcx\n"
    "	jnz 2b\n"
    "	mov $1, %ecx\n"
    "	lock xadd %rcx, (%rax)\n"
    "	lea 1(%rcx), %rax\n"
    RESTORE_CALLEE_SAVED
    "	ret\n"
    "3:	mov (%rdi), %rax\n"
    "	ret\n"
    "hs_service_end:\n"
    ".popsection");
extern const u8 hs_service_start[], hs_service_end[];

/* ---- guest: calls in assembly --------------------------------------------------------- */

/* Every general register after a call, and RSP before and after it. */
struct hg_regs {
	u64 rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15;
	u64 rflags, rsp_before, rsp_after;
};

/*
 * hg_call_dump(out, a0, a1, index): the call as the guest libraries make it, with RBX,
 * RBP, R12-R15 set to CANARY + their number first; stores every register after it.
 * hg_vmfunc(eax, ecx): one VMFUNC at hg_vmfunc_insn.
 * hg_jump_vmfunc(addr): EAX = 0, ECX = 511, jump to a VMFUNC the guest wrote at @addr.
 * hg_call_rsp(rsp): jump to the entry stub with RSP = @rsp (a0 = 1, op add); the exit
 * stub's RET faults and the guest's handler resumes at hg_call_rsp_back.
 * hg_compat_vmfunc(ecx): VMFUNC(0, ecx) from the 32-bit code segment COMPAT_CS.
 * hg_cr3_call(cr3, old_cr3): a call with CR3 = @cr3 from the entry VMFUNC on (warmed up
 * with an ECX = 0 call first), CR3 = @old_cr3 again after it.
 */
asm(".pushsection .text\n"
    ".global hg_call_dump, hg_vmfunc, hg_vmfunc_insn, hg_jump_vmfunc, hg_call_rsp\n"
    ".global hg_call_rsp_back, hg_compat_vmfunc, hg_cr3_call\n"
    "hg_call_dump:\n"
    SAVE_CALLEE_SAVED
    "	push %rdi\n"
    "	mov %rsp, 128(%rdi)\n"
    "	mov %rsi, %rdi\n"
    "	mov %rdx, %rsi\n"
    "	xor %edx, %edx\n"
    "	xor %r8d, %r8d\n"
    "	xor %r9d, %r9d\n"
    "	movabs $" __stringify(CANARY) " + 1, %rbx\n"
    "	movabs $" __stringify(CANARY) " + 6, %rbp\n"
    "	movabs $" __stringify(CANARY) " + 12, %r12\n"
    "	movabs $" __stringify(CANARY) " + 13, %r13\n"
    "	movabs $" __stringify(CANARY) " + 14, %r14\n"
    "	movabs $" __stringify(CANARY) " + 15, %r15\n"
    "	sub $128, %rsp\n"
    "	movabs $" __stringify(ENTRY) ", %rax\n"
    "	xchg %rax, %r10\n"
    "	call *%r10\n"
    "	lea 128(%rsp), %rsp\n"
    "	pushfq\n"
    "	push %rax\n"
    "	mov 16(%rsp), %rax\n"
    "	mov %rbx, 8(%rax)\n"
    "	mov %rcx, 16(%rax)\n"
    "	mov %rdx, 24(%rax)\n"
    "	mov %rsi, 32(%rax)\n"
    "	mov %rdi, 40(%rax)\n"
    "	mov %rbp, 48(%rax)\n"
    "	mov %r8, 56(%rax)\n"
    "	mov %r9, 64(%rax)\n"
    "	mov %r10, 72(%rax)\n"
    "	mov %r11, 80(%rax)\n"
    "	mov %r12, 88(%rax)\n"
    "	mov %r13, 96(%rax)\n"
    "	mov %r14, 104(%rax)\n"
    "	mov %r15, 112(%rax)\n"
    "	popq (%rax)\n"
    "	popq 120(%rax)\n"
    "	mov %rsp, 136(%rax)\n"
    "	add $8, %rsp\n"
    RESTORE_CALLEE_SAVED
    "	ret\n"
    "hg_vmfunc:\n"
    "	mov %edi, %eax\n"
    "	mov %esi, %ecx\n"
    "hg_vmfunc_insn:\n"
    "	.byte 0x0f, 0x01, 0xd4\n"
    "	ret\n"
    "hg_jump_vmfunc:\n"
    "	xor %eax, %eax\n"
    "	mov $511, %ecx\n"
    "	jmp *%rdi\n"
    "hg_call_rsp:\n"
    SAVE_CALLEE_SAVED
    "	mov %rsp, hg_recover_rsp(%rip)\n"
    "	lea hg_call_rsp_back(%rip), %rax\n"
    "	mov %rax, hg_recover_rip(%rip)\n"
    "	mov %rdi, %rsp\n"
    "	mov $1, %edi\n"
    "	xor %esi, %esi\n"
    "	xor %edx, %edx\n"
    "	xor %r8d, %r8d\n"
    "	xor %r9d, %r9d\n"
    "	mov $511, %ecx\n"
    "	movabs $" __stringify(ENTRY) ", %rax\n"
    "	jmp *%rax\n"
    "hg_call_rsp_back:\n"
    RESTORE_CALLEE_SAVED
    "	ret\n"
    "hg_compat_vmfunc:\n"
    "	mov %rsp, hg_recover_rsp(%rip)\n"
    "	mov %edi, %ecx\n"
    "	pushq $" __stringify(COMPAT_CS) "\n"
    "	lea 1f(%rip), %rax\n"
    "	push %rax\n"
    "	lretq\n"
    "	.code32\n"
    "1:	xor %eax, %eax\n"
    "	.byte 0x0f, 0x01, 0xd4\n"
    "	ljmp $0x8, $2f\n"
    "	.code64\n"
    "2:	mov hg_recover_rsp(%rip), %rsp\n"
    "	ret\n"
    /* One 64-byte block: the instructions that run with the trusted CR3 share a page. */
    "	.balign 64\n"
    "hg_cr3_call:\n"
    "	push %rbx\n"
    "	push %rdi\n"
    "	push %rsi\n"
    "	xor %ecx, %ecx\n"
    "	movabs $" __stringify(ENTRY) ", %rbx\n"
    "	call *%rbx\n"
    "	pop %rsi\n"
    "	pop %rdi\n"
    "	xor %edx, %edx\n"
    "	mov $511, %ecx\n"
    "	mov %rdi, %cr3\n"
    "	call *%rbx\n"
    "	mov %rsi, %cr3\n"
    "	pop %rbx\n"
    "	ret\n"
    ".popsection");

void hg_call_dump(struct hg_regs *out, u64 a0, u64 a1, u64 index);
void hg_vmfunc(u32 eax, u32 ecx);
extern const u8 hg_vmfunc_insn[], hg_call_rsp_back[];
void hg_jump_vmfunc(u64 addr);
void hg_call_rsp(u64 rsp);
void hg_compat_vmfunc(u32 ecx);
long hg_cr3_call(u64 cr3, u64 old_cr3);

/* ---- guest: shared state, exception handlers ---------------------------------------- */

u64 hg_recover_rip, hg_recover_rsp;

/* What the guest's handlers saw (vCPU 0, but #UD counts come from either vCPU). */
static struct {
	u64 count[32];		/* by vector */
	u64 ud_at_insn;		/* #UDs at hg_vmfunc_insn */
	u64 vector, rip, err, rsp, cr2, rax;	/* the last fault that was recovered */
	u64 nmi_in_trusted;	/* NMIs that interrupted trusted code (never) */
	u64 nmi_trusted_rip;	/* where the first of those did */
	u64 nmi_last_rip;
} hexc;

/* Results of a case, and parameters from the host. */
static struct {
	u64 v[24];
	struct hg_regs regs;
} hres;

static struct {
	u64 n, arg[4];
	u64 pte_index;		/* G's PTE in the page at PTALIAS_GVA */
	u64 pte_a[3], pte_b[3];	/* G's three PTEs: the original, the copy's */
	u64 probes;
} hpar;

static u64 hg_stop, hg_ready;

static inline u64 hg_cr2(void)
{
	u64 v;

	asm volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}

/*
 * Code that runs only in the gate or sub view: the code page at G + 0x1000 (in the default
 * view the guest's fallback, which these calls never reach) and the service. The entry
 * stub at the end of page G is the guest's own code in the default view, before its
 * VMFUNC: an NMI injected at an exit there (a timer) is delivered there, rightly.
 */
static bool in_trusted_gva(u64 rip)
{
	return (rip >= G + 0x1000 && rip < G + 0x2000) || (rip >= CODE_GVA && rip < CODE_GVA + 0x1000);
}

/*
 * One handler for #DB, #UD, #SS, #GP, #PF: counts by vector; a fault with a recovery
 * point set resumes there (RIP and RSP of the frame, which handlers.S leaves right after
 * struct ex_regs); a #UD on a VMFUNC is stepped over; a single-step #DB goes on.
 */
static void hg_exception(struct ex_regs *regs)
{
	u64 *frame_rsp = &((u64 *)regs)[sizeof(*regs) / 8];
	u64 v = regs->vector;

	if (regs->r9 == KVM_EXCEPTION_MAGIC && regs->rip == regs->r10) {
		regs->rip = regs->r11;
		regs->r9 = regs->vector;
		regs->r10 = regs->error_code;
		return;
	}
	__atomic_add_fetch(&hexc.count[v & 31], 1, __ATOMIC_SEQ_CST);
	if (v == DB_VECTOR)
		return;
	if (READ_ONCE(hg_recover_rip)) {
		hexc.vector = v;
		hexc.rip = regs->rip;
		hexc.err = regs->error_code;
		hexc.rsp = *frame_rsp;
		hexc.rax = regs->rax;
		hexc.cr2 = v == PF_VECTOR ? hg_cr2() : 0;
		regs->rip = hg_recover_rip;
		*frame_rsp = hg_recover_rsp;
		WRITE_ONCE(hg_recover_rip, 0);
		return;
	}
	if (v == UD_VECTOR) {
		const u8 *insn = (const u8 *)regs->rip;

		__GUEST_ASSERT(insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xd4,
			       "#UD at %#lx, not on a VMFUNC", regs->rip);
		if (regs->rip == (u64)hg_vmfunc_insn)
			__atomic_add_fetch(&hexc.ud_at_insn, 1, __ATOMIC_SEQ_CST);
		hexc.rip = regs->rip;
		regs->rip += VMFUNC_INSN_LEN;
		return;
	}
	GUEST_FAIL("vector %lu at %#lx, error code %#lx", v, regs->rip, regs->error_code);
}

static void hg_nmi(struct ex_regs *regs)
{
	__atomic_add_fetch(&hexc.count[NMI_VECTOR], 1, __ATOMIC_SEQ_CST);
	hexc.nmi_last_rip = regs->rip;
	if (in_trusted_gva(regs->rip) &&
	    __atomic_add_fetch(&hexc.nmi_in_trusted, 1, __ATOMIC_SEQ_CST) == 1)
		hexc.nmi_trusted_rip = regs->rip;
}

static void guest_idle(void)
{
	GUEST_DONE();
}

static long call(u64 a0, u64 op)
{
	return elisa_call(G, 511, a0, op);
}

/* ---- guest: the cases --------------------------------------------------------------- */

static void gc_nongate_indexes(void)
{
	u32 i;

	for (i = 1; i <= 510; i++)
		hg_vmfunc(0, i);
	GUEST_DONE();
}

static void gc_sub_slot(void)
{
	hg_vmfunc(0, 1);
	hres.v[0] = call(1, OP_ADD);
	hg_vmfunc(0, 1);
	GUEST_DONE();
}

static const u32 ecx_values[] = { 512, 513, 1023, 4096, 0x7fffffff, 0x80000000, 0xfffffffe,
				  0xffffffff };
static const u32 eax_extra[] = { 64, 65, 255, 0x80000000, 0xffffffff };

static void gc_ecx_high(void)
{
	u32 i;

	for (i = 0; i < ARRAY_SIZE(ecx_values); i++)
		hg_vmfunc(0, ecx_values[i]);
	GUEST_DONE();
}

static void gc_eax_nonzero(void)
{
	u32 i;

	for (i = 1; i < 64; i++)
		hg_vmfunc(i, 511);
	for (i = 0; i < ARRAY_SIZE(eax_extra); i++)
		hg_vmfunc(eax_extra[i], 511);
	GUEST_DONE();
}

static void gc_call_index(u64 index)
{
	hres.v[0] = elisa_call(G, index, 1, OP_ADD);
	GUEST_DONE();
}

static void gc_vmfunc_511(void)
{
	hg_vmfunc(0, 511);
	GUEST_DONE();
}

static void gc_jump_vmfunc(u64 end)
{
	u8 *p = (u8 *)(end - 3);

	p[0] = 0x0f;
	p[1] = 0x01;
	p[2] = 0xd4;
	hg_jump_vmfunc(end - 3);
	GUEST_DONE();
}

static void gc_if_set(void)
{
	asm volatile("sti" ::: "memory");
	hg_call_dump(&hres.regs, 1, OP_ADD, 511);
	asm volatile("cli" ::: "memory");
	hg_vmfunc(0, 1);
	GUEST_DONE();
}

static void gc_tf_set(void)
{
	asm volatile("pushfq; orq $0x100, (%%rsp); popfq" ::: "memory", "cc");
	hg_call_dump(&hres.regs, 1, OP_ADD, 511);
	asm volatile("pushfq; andq $~0x100, (%%rsp); popfq" ::: "memory", "cc");
	GUEST_DONE();
}

static void gc_rsp_many(void)
{
	u64 i;

	for (i = 0; i < hpar.n; i++) {
		hg_call_rsp(hpar.arg[i]);
		hres.v[4 * i] = hexc.vector;
		hres.v[4 * i + 1] = hexc.rip;
		hres.v[4 * i + 2] = hexc.rax;
		hres.v[4 * i + 3] = hexc.rsp;
	}
	GUEST_DONE();
}

static void gc_compat(void)
{
	hg_compat_vmfunc(511);
	GUEST_DONE();
}

static void gc_nxe0(void)
{
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) & ~EFER_NX);
	hres.v[0] = call(1, OP_ADD);
	GUEST_DONE();
}

static void gc_wp0(void)
{
	set_cr0(get_cr0() & ~X86_CR0_WP);
	hg_call_dump(&hres.regs, 1, OP_ADD, 511);
	set_cr0(get_cr0() | X86_CR0_WP);
	GUEST_DONE();
}

static void gc_flags(void)
{
	set_cr0(get_cr0() | X86_CR0_AM);
	/* CF, PF, AF, ZF, SF, DF, OF and AC; IF stays 0. */
	asm volatile("pushfq; orq $0x40cd5, (%%rsp); popfq" ::: "memory", "cc");
	hg_call_dump(&hres.regs, 1, OP_ADD, 511);
	asm volatile("cld" ::: "memory", "cc");
	set_cr0(get_cr0() & ~X86_CR0_AM);
	GUEST_DONE();
}

static void gc_probe_reads(void)
{
	u64 i;

	for (i = 0; i < hpar.probes; i++)
		hres.v[i] = READ_ONCE(*(volatile u64 *)(PROBE_GVA + i * 4096));
	GUEST_DONE();
}

static void gc_probe_writes(void)
{
	u64 i;

	for (i = 0; i < hpar.probes; i++)
		WRITE_ONCE(*(volatile u64 *)(PROBE_GVA + i * 4096), 0x5757575757575757UL);
	GUEST_DONE();
}

static void gc_write_g(void)
{
	memset((void *)G, 0x41, ELISA_CALL_ENTRY_OFFSET);
	hres.v[0] = call(1, OP_ADD);
	hg_vmfunc(0, 1);
	GUEST_DONE();
}

static void set_g_ptes(const u64 *pte)
{
	volatile u64 *pt = (volatile u64 *)PTALIAS_GVA + hpar.pte_index;
	int i;

	for (i = 0; i < 3; i++) {
		pt[i] = pte[i];
		asm volatile("invlpg (%0)" : : "r"(G + i * 4096UL) : "memory");
	}
}

static void gc_remap_g(void)
{
	int i;

	for (i = 0; i < 3; i++) {
		set_g_ptes(hpar.pte_b);
		hres.v[2 * i] = call(1, OP_ADD);
		set_g_ptes(hpar.pte_a);
		hres.v[2 * i + 1] = call(1, OP_ADD);
	}
	GUEST_DONE();
}

static void gc_db_service(void)
{
	asm volatile("mov %0, %%dr0; mov %1, %%dr7" : : "r"(CODE_GVA), "r"(0x401UL) : "memory");
	hres.v[0] = call(1, OP_ADD);
	asm volatile("mov %0, %%dr7" : : "r"(0x400UL) : "memory");
	GUEST_DONE();
}

static void gc_pf_service(void)
{
	hres.v[0] = call(UNMAPPED_GVA, OP_READ);
	GUEST_DONE();
}

static void gc_cr3(u64 cr3)
{
	set_cr4(get_cr4() | X86_CR4_PGE);
	hres.v[0] = hg_cr3_call(cr3, get_cr3());
	GUEST_DONE();
}

/* vCPU 0's loop: @n calls of +1; v[0] the first result, v[1] the calls that were not
 * one more than the previous one. */
static void gc_call_loop(u64 n)
{
	long r, prev;
	u64 i, bad = 0;

	prev = call(1, OP_ADD);
	hres.v[0] = prev;
	for (i = 1; i < n; i++) {
		r = call(1, OP_ADD);
		if (r != prev + 1)
			bad++;
		prev = r;
	}
	hres.v[1] = bad;
	hres.v[2] = prev;
	WRITE_ONCE(hg_stop, 1);
	GUEST_DONE();
}

/*
 * One step of a guest's wait for the other vCPU: CPUID, which always exits and KVM answers
 * in the kernel. A PAUSE loop would not do: in the emulated host a guest that runs with
 * IF = 0 takes no host interrupt, so its host CPU neither schedules nor answers IPIs
 * (KVM's requests to all vCPUs, RCU) until the guest exits, and the other vCPU's thread
 * can wait for that CPU. Once vCPU 1 did not start within 2^31 PAUSEs of vCPU 0.
 */
static void wait_step(void)
{
	u32 a = 0, b, c = 0, d;

	asm volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
}

/* The same once vCPU 1 runs: its half of the case must overlap these calls. */
static void gc_call_loop_paired(u64 n)
{
	u64 spin = 0;

	while (!READ_ONCE(hg_ready) && spin++ < (1UL << 20))
		wait_step();
	gc_call_loop(n);
}

/*
 * The rounds vCPU 1 makes at least in the paired cases, also when vCPU 0's calls end first
 * (seen on the KASAN kernel: 1 and 5 rounds during the 1000 calls): every operand pair of
 * hammer[] once.
 */
#define MIN_ROUNDS 6

static void gc_pt_toggler(void)
{
	u64 n = 0;

	WRITE_ONCE(hg_ready, 1);
	while ((!READ_ONCE(hg_stop) || n < MIN_ROUNDS) && n < 1000000) {
		set_g_ptes(n & 1 ? hpar.pte_a : hpar.pte_b);
		n++;
	}
	set_g_ptes(hpar.pte_a);
	hres.v[8] = n;
	GUEST_DONE();
}

static const u32 hammer[][2] = { { 0, 1 }, { 0, 2 }, { 0, 510 }, { 0, 512 }, { 1, 511 },
				 { 0, 0xffffffff } };
_Static_assert(ARRAY_SIZE(hammer) == MIN_ROUNDS, "one round per operand pair");

static void gc_hammer(void)
{
	u64 n = 0;

	WRITE_ONCE(hg_ready, 1);
	while ((!READ_ONCE(hg_stop) || n < MIN_ROUNDS) && n < 1000000) {
		hg_vmfunc(hammer[n % ARRAY_SIZE(hammer)][0], hammer[n % ARRAY_SIZE(hammer)][1]);
		n++;
	}
	hres.v[8] = n;
	GUEST_DONE();
}

static bool is_secret(u64 v)
{
	return (v & ~0xfffUL) == SECRET_BASE;
}

static void apic_mode(bool x2)
{
	if (x2)
		x2apic_enable();
	else
		xapic_enable();
}

/* vCPU 0: NMI_CALLS calls of the spinning service; counts results and leaks. */
static void gc_spin_calls(u64 x2)
{
	const u64 *r = &hres.regs.rax;
	u64 i, k, ok = 0, intr = 0, other = 0, leaks = 0;

	apic_mode(x2);
	/* Masked periodic LAPIC timer: exits (VMX preemption timer), no interrupt. */
	if (x2) {
		x2apic_write_reg(APIC_TDCR, 0xb);
		x2apic_write_reg(APIC_LVTT, APIC_LVT_TIMER_PERIODIC | APIC_LVT_MASKED | 0xee);
		x2apic_write_reg(APIC_TMICT, 200000);
	} else {
		xapic_write_reg(APIC_TDCR, 0xb);
		xapic_write_reg(APIC_LVTT, APIC_LVT_TIMER_PERIODIC | APIC_LVT_MASKED | 0xee);
		xapic_write_reg(APIC_TMICT, 200000);
	}
	WRITE_ONCE(hres.v[9], 1);	/* ready */
	/*
	 * The calls start once vCPU 1 sends (bounded): on 2 host CPUs its thread was once not
	 * scheduled before all 60 calls had ended, and no NMI was sent.
	 */
	for (k = 0; !READ_ONCE(hres.v[10]) && k < (1UL << 20); k++)
		wait_step();
	hres.v[11] = k;
	for (i = 0; i < NMI_CALLS; i++) {
		hg_call_dump(&hres.regs, 20000, OP_SPIN, 511);
		if ((long)hres.regs.rax == ELISA_CALL_ERR_INTERRUPTED)
			intr++;
		else if (hres.regs.rax > 0 && hres.regs.rax < 1UL << 32)
			ok++;
		else
			other++;
		for (k = 0; k < 15; k++)
			if (is_secret(r[k])) {
				leaks++;
				hres.v[4] |= 1UL << k;
			}
	}
	if (x2)
		x2apic_write_reg(APIC_TMICT, 0);
	else
		xapic_write_reg(APIC_TMICT, 0);
	hres.v[0] = ok;
	hres.v[1] = intr;
	hres.v[2] = other;
	hres.v[3] = leaks;
	WRITE_ONCE(hg_stop, 1);
	GUEST_DONE();
}

/* vCPU 1: NMIs to vCPU 0 (APIC ID 0) until vCPU 0 is done. */
static void gc_nmi_sender(u64 x2)
{
	u64 n = 0, d;

	apic_mode(x2);
	while (!READ_ONCE(hres.v[9]))
		wait_step();
	WRITE_ONCE(hres.v[10], 1);	/* sending */
	while (!READ_ONCE(hg_stop) && n < 100000) {
		if (x2) {
			x2apic_write_reg(APIC_ICR, APIC_DEST_PHYSICAL | APIC_DM_NMI);
		} else {
			xapic_write_reg(APIC_ICR2, SET_APIC_DEST_FIELD(0));
			xapic_write_reg(APIC_ICR, APIC_DEST_PHYSICAL | APIC_DM_NMI);
		}
		n++;
		for (d = 0; d < 3000 && !READ_ONCE(hg_stop); d++)
			asm volatile("pause");
	}
	hres.v[8] = n;
	GUEST_DONE();
}

static void gc_zero_exits(void)
{
	long r, prev;
	u64 i, bad = 0;

	prev = call(1, OP_ADD);
	GUEST_SYNC(1);
	for (i = 0; i < ZERO_EXIT_CALLS; i++) {
		r = call(1, OP_ADD);
		if (r <= prev)
			bad++;
		prev = r;
	}
	GUEST_SYNC_ARGS(2, bad, prev, 0, 0);
	GUEST_DONE();
}

/* VM B: one call per GUEST_SYNC(1); with hpar.n set, the 1000-call round. */
static void peer_guest(void)
{
	long r, prev;
	u64 i, bad;

	for (;;) {
		if (!READ_ONCE(hpar.n)) {
			r = call(1, OP_ADD);
			GUEST_SYNC_ARGS(1, r, 0, 0, 0);
			continue;
		}
		prev = call(1, OP_ADD);
		GUEST_SYNC(2);
		for (i = 0, bad = 0; i < ZERO_EXIT_CALLS; i++) {
			r = call(1, OP_ADD);
			if (r != prev + 1)
				bad++;
			prev = r;
		}
		GUEST_SYNC_ARGS(3, bad, prev, 0, 0);
	}
}

/* ---- host ------------------------------------------------------------------------------ */

struct host {
	int dev, memfd, region, service, evm_a, evm_b, vm_a_id;
	volatile u64 *mem;		/* the region page */
	u64 ref[512];			/* its region data */
	struct kvm_vm *vm, *peer;
	struct kvm_vcpu *v[2], *pv;
	struct elisa_snap snap[2];
	struct elisa_grant grant;
	u8 *block;			/* VM A's entry block (host view) */
	u64 gate_eptp[2];		/* list[511] of each vCPU at the start */
	u64 *pte;			/* host view of VM A's PTEs of G */
	u64 cr3;
	int kills;
};

struct outcome {
	u32 reason;
	u64 ucall;
	struct kvm_regs regs;
	u32 nr_mmio;
	struct {
		u64 gpa;
		bool write;
		u64 data;
	} mmio[NR_PROBES];
	bool timeout;
	char msg[160];
};

static struct host h;
static unsigned int run_timeout = ELISA_RUN_TIMEOUT_S * 1000;	/* ms */

static u64 counter(void)
{
	return h.mem[0];
}

static bool region_intact(void)
{
	return !memcmp((const void *)(h.mem + 1), h.ref + 1, 511 * 8);
}

/* Starts @vcpu of VM A at @fn(@arg) from its snapshot. */
static void start(int vcpu, void *fn, u64 arg)
{
	struct kvm_regs r = h.snap[vcpu].regs;

	elisa_snap_restore(h.v[vcpu], &h.snap[vcpu]);
	r.rip = (u64)fn;
	r.rdi = arg;
	vcpu_regs_set(h.v[vcpu], &r);
}

/* Runs @vcpu until a ucall other than a print, a shutdown or another exit; MMIO exits
 * are recorded and reads answered with MMIO_ANSWER bytes. */
static void run(int vcpu, struct outcome *o)
{
	struct kvm_vcpu *v = h.v[vcpu];
	struct kvm_run *run = v->run;
	struct ucall uc;
	int i;

	memset(o, 0, sizeof(*o));
	for (i = 0; i < 64; i++) {
		if (!elisa_run_raw_for(v, run_timeout)) {
			o->timeout = true;
			snprintf(o->msg, sizeof(o->msg), "KVM_RUN still running after %u ms",
				 run_timeout);
			break;
		}
		o->reason = run->exit_reason;
		if (run->exit_reason == KVM_EXIT_MMIO) {
			if (o->nr_mmio < NR_PROBES) {
				o->mmio[o->nr_mmio].gpa = run->mmio.phys_addr;
				o->mmio[o->nr_mmio].write = run->mmio.is_write;
				memcpy(&o->mmio[o->nr_mmio].data, run->mmio.data, 8);
			}
			o->nr_mmio++;
			if (!run->mmio.is_write)
				memset(run->mmio.data, MMIO_ANSWER, sizeof(run->mmio.data));
			continue;
		}
		if (run->exit_reason != KVM_EXIT_IO)
			break;
		o->ucall = get_ucall(v, &uc);
		if (o->ucall == UCALL_PRINTF) {
			ksft_print_msg("guest: %s", uc.buffer);
			continue;
		}
		if (o->ucall == UCALL_ABORT)
			snprintf(o->msg, sizeof(o->msg), "line %ld: %.120s", (long)uc.args[2],
				 uc.buffer);
		break;
	}
	vcpu_regs_get(v, &o->regs);
	if (o->msg[0])
		ksft_print_msg("vCPU %d: %s\n", vcpu, o->msg);
}

static void reset_shared(void)
{
	memset(&hexc, 0, sizeof(hexc));
	memset(&hres, 0, sizeof(hres));
	hg_stop = 0;
	hg_ready = 0;
	hg_recover_rip = 0;
	sync_global_to_guest(h.vm, hexc);
	sync_global_to_guest(h.vm, hres);
	sync_global_to_guest(h.vm, hg_stop);
	sync_global_to_guest(h.vm, hg_ready);
	sync_global_to_guest(h.vm, hg_recover_rip);
	sync_global_to_guest(h.vm, hpar);
}

static void fetch_shared(void)
{
	sync_global_from_guest(h.vm, hexc);
	sync_global_from_guest(h.vm, hres);
}

/* One case on vCPU 0; its handlers' and results' state fetched afterwards. */
static void run_case(void *fn, u64 arg, struct outcome *o)
{
	reset_shared();
	start(0, fn, arg);
	run(0, o);
	fetch_shared();
}

static bool done(const struct outcome *o)
{
	return o->reason == KVM_EXIT_IO && o->ucall == UCALL_DONE;
}

/* VM B's next call returns the counter. */
static bool peer_ok(void)
{
	struct ucall uc;
	u64 cmd;

	elisa_vcpu_run(h.pv);
	if (h.pv->run->exit_reason != KVM_EXIT_IO)
		return false;
	cmd = get_ucall(h.pv, &uc);
	return cmd == UCALL_SYNC && uc.args[1] == 1 && uc.args[2] == counter();
}

/*
 * No list[1], nothing but list[0] and the gate at 511 (each 0 until the vCPU first ran;
 * the gate also while the vCPU last entered outside IA-32e mode), on both vCPUs of VM A.
 */
static bool lists_clean(void)
{
	struct elisa_vcpu_debug d;
	int i;

	for (i = 0; i < 2; i++)
		if (!elisa_vcpu_debug(h.vm_a_id, i, &d) || d.list[1] ||
		    d.nr_list != !!d.list[0] + !!d.list[511] ||
		    (d.list[511] && d.list[511] != h.gate_eptp[i]))
			return false;
	return true;
}

/*
 * List entries 1..511 of @d1 as in @d0, except that the gate entry may have opened at an
 * entry after @d0 was read (a grant only publishes it).
 */
static bool lists_same(const struct elisa_vcpu_debug *d0, const struct elisa_vcpu_debug *d1)
{
	return !memcmp(d0->list + 1, d1->list + 1, 510 * 8) &&
	       (d0->list[511] == d1->list[511] || !d0->list[511]);
}

static long faults0(void)
{
	struct elisa_vcpu_debug d;

	return elisa_vcpu_debug(h.vm_a_id, 0, &d) ? (long)d.faults : -1;
}

/*
 * The guest alone died, cleanly: shutdown, registers zeroed, RIP at the exit stub, one
 * fault counted, the service not run, the region unchanged, no list[1], and VM B works.
 */
static bool killed(const struct outcome *o, long f0, u64 cnt0, char *why, size_t len)
{
	long f1 = faults0();
	bool ok = o->reason == KVM_EXIT_SHUTDOWN && elisa_gprs_zero(&o->regs) &&
		  o->regs.rip == EXIT_STUB && f1 == f0 + 1 && counter() == cnt0 &&
		  region_intact() && lists_clean();

	if (ok)
		h.kills++;
	ok = peer_ok() && ok;
	snprintf(why, len, ": exit %u, rip %#llx, rax %#llx rsp %#llx, faults %ld -> %ld, counter "
		 "%+ld, peer %s", o->reason, o->regs.rip, o->regs.rax, o->regs.rsp, f0, f1,
		 (long)(counter() - cnt0), ok ? "ok" : "?");
	return ok;
}

static void check_killed(const char *name, void *fn, u64 arg)
{
	struct outcome o;
	long f0 = faults0();
	u64 c0 = counter();
	char why[256];
	bool ok;

	run_case(fn, arg, &o);
	ok = killed(&o, f0, c0, why, sizeof(why));
	CHECK(ok, name, "%s", why);
}

static bool canaries(const struct hg_regs *r)
{
	return r->rbx == CANARY + 1 && r->rbp == CANARY + 6 && r->r12 == CANARY + 12 &&
	       r->r13 == CANARY + 13 && r->r14 == CANARY + 14 && r->r15 == CANARY + 15 &&
	       r->rsp_after == r->rsp_before;
}

/* A normal return of hg_call_dump (gate-protocol §2): value, scrubbed, preserved. */
static bool normal_return(const struct hg_regs *r, u64 value)
{
	return r->rax == value && r->rdx == value && !r->rcx && !r->rsi && !r->rdi && !r->r8 &&
	       !r->r9 && !r->r10 && !r->r11 && canaries(r) && r->rflags == 0x2;
}

/* ---- host: the cases ---------------------------------------------------------------- */

static void case_ud_loop(const char *name, void *fn, u64 want)
{
	struct outcome o;
	u64 c0 = counter();
	long f0 = faults0();

	run_case(fn, 0, &o);
	CHECK(done(&o) && hexc.ud_at_insn == want && hexc.count[UD_VECTOR] == want &&
		      counter() == c0 && faults0() == f0 && lists_clean(),
	      name, ": %s, %lu #UDs at the VMFUNC of %lu (want %lu), counter %+ld", o.msg,
	      (unsigned long)hexc.ud_at_insn, (unsigned long)hexc.count[UD_VECTOR],
	      (unsigned long)want, (long)(counter() - c0));
}

static void case_sub_slot(void)
{
	struct outcome o;
	u64 c0 = counter();

	run_case(gc_sub_slot, 0, &o);
	CHECK(done(&o) && hexc.ud_at_insn == 2 && hres.v[0] == c0 + 1 && lists_clean(),
	      "sub_slot_ud", ": %lu #UDs (want 2), the call returned %ld (want %ld), lists %s",
	      (unsigned long)hexc.ud_at_insn, (long)hres.v[0], (long)(c0 + 1),
	      lists_clean() ? "clean" : "NOT clean");
}

static void case_db_service(void)
{
	struct outcome o;
	long f0 = faults0();
	u64 c0 = counter();

	run_case(gc_db_service, 0, &o);
	CHECK(done(&o) && (long)hres.v[0] == ELISA_CALL_ERR_NOT_ENTERED &&
		      hexc.count[UD_VECTOR] == 1 && hexc.rip == G + 0xffd && counter() == c0 &&
		      faults0() == f0 && lists_clean(),
	      "db_breakpoint_on_service", ": returned %ld, #UDs %lu (last at %#lx), counter %+ld, "
	      "faults %+ld", (long)hres.v[0], (unsigned long)hexc.count[UD_VECTOR],
	      (unsigned long)hexc.rip, (long)(counter() - c0), faults0() - f0);
}

static void case_index(const char *name, u64 index, u64 want_ud)
{
	struct outcome o;
	u64 c0 = counter();

	run_case(gc_call_index, index, &o);
	CHECK(done(&o) && (long)hres.v[0] == ELISA_CALL_ERR_NOT_ENTERED &&
		      hexc.count[UD_VECTOR] == want_ud && (!want_ud || hexc.rip == G + 0xffd) &&
		      counter() == c0,
	      name, ": returned %ld, #UDs %lu (last at %#lx), counter %+ld", (long)hres.v[0],
	      (unsigned long)hexc.count[UD_VECTOR], (unsigned long)hexc.rip,
	      (long)(counter() - c0));
}

static void case_onto_pages(void)
{
	static const u64 ends[] = { G - 0x1000, G, G + 0x2000 };
	char why[256] = "";
	struct outcome o;
	bool ok = true;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(ends) && ok; i++) {
		long f0 = faults0();
		u64 c0 = counter();

		run_case(gc_jump_vmfunc, ends[i], &o);
		ok = killed(&o, f0, c0, why, sizeof(why));
		memcpy(h.block, elisa_guest_block, sizeof(elisa_guest_block));
	}
	CHECK(ok, "gate_index_onto_data_pages", ": %u of 3 landings%s", ok ? 3 : i - 1, why);
}

static void case_if_set(void)
{
	struct outcome o;
	u64 c0 = counter();
	const struct hg_regs *r = &hres.regs;

	run_case(gc_if_set, 0, &o);
	CHECK(done(&o) && (long)r->rax == ELISA_CALL_ERR_IRQ_ENABLED &&
		      (long)r->rdx == ELISA_CALL_ERR_IRQ_ENABLED && canaries(r) &&
		      counter() == c0 && hexc.ud_at_insn == 1 && lists_clean(),
	      "if_set_refused", ": rax %ld rdx %ld, callee-saved %s, counter %+ld, #UDs %lu",
	      (long)r->rax, (long)r->rdx, canaries(r) ? "kept" : "CHANGED",
	      (long)(counter() - c0), (unsigned long)hexc.ud_at_insn);
}

static void case_tf(void)
{
	struct outcome o;
	long f0 = faults0();
	u64 c0 = counter();
	char why[256];
	bool ok;

	run_case(gc_tf_set, 0, &o);
	ok = killed(&o, f0, c0, why, sizeof(why)) && hexc.count[DB_VECTOR] > 0;
	CHECK(ok, "tf_set_killed", "%s, %lu single steps before", why,
	      (unsigned long)hexc.count[DB_VECTOR]);
}

static void case_rsp(const char *name, const u64 *rsp, int n, u64 vector, bool cr2)
{
	struct elisa_vcpu_debug d0, d1;
	struct outcome o;
	u64 c0 = counter();
	bool ok;
	int i;

	memset(&hpar, 0, sizeof(hpar));
	hpar.n = n;
	memcpy(hpar.arg, rsp, n * sizeof(*rsp));
	elisa_vcpu_debug(h.vm_a_id, 0, &d0);
	run_case(gc_rsp_many, 0, &o);
	elisa_vcpu_debug(h.vm_a_id, 0, &d1);
	ok = done(&o) && counter() == c0 + n && region_intact() && lists_clean() &&
	     lists_same(&d0, &d1) && d1.faults == d0.faults;
	for (i = 0; i < n; i++) {
		ok = ok && hres.v[4 * i] == vector && hres.v[4 * i + 1] == G + 0x2003 &&
		     hres.v[4 * i + 2] == c0 + i + 1 && hres.v[4 * i + 3] == rsp[i];
		ksft_print_msg("%s: RSP %#lx: vector %lu at %#lx, RAX %lu, RSP %#lx\n", name,
			       (unsigned long)rsp[i], (unsigned long)hres.v[4 * i],
			       (unsigned long)hres.v[4 * i + 1], (unsigned long)hres.v[4 * i + 2],
			       (unsigned long)hres.v[4 * i + 3]);
	}
	if (cr2)
		ok = ok && hexc.cr2 == rsp[n - 1];
	CHECK(ok, name, ": %s%s counter %+ld, CR2 %#lx, faults %lu -> %lu", o.msg,
	      done(&o) ? "" : "no return,", (long)(counter() - c0), (unsigned long)hexc.cr2,
	      d0.faults, d1.faults);
}

/*
 * Legacy 32-bit protected mode with 32-bit paging on vCPU 0: a page directory and a page
 * table map the code page at P32_LINEAR; the code is VMFUNC; OUT P32_PORT; UD2.
 */
static void case_paging32(void)
{
	static const u8 code[] = { 0x0f, 0x01, 0xd4, 0x66, 0xba, P32_PORT & 0xff, P32_PORT >> 8,
				   0xee, 0x0f, 0x0b };
	gpa_t gpa = vm_phy_pages_alloc(h.vm, 3, 0x100000, 0);
	u32 *pd = addr_gpa2hva(h.vm, gpa), *pt = addr_gpa2hva(h.vm, gpa + 4096);
	struct kvm_segment cs = { .base = 0, .limit = 0xffffffff, .selector = COMPAT_CS,
				  .type = 0xb, .present = 1, .db = 1, .s = 1, .g = 1 };
	struct kvm_segment ds = { .base = 0, .limit = 0xffffffff, .selector = 0x10,
				  .type = 0x3, .present = 1, .db = 1, .s = 1, .g = 1 };
	struct kvm_sregs s;
	struct kvm_regs r;
	struct outcome o[2];
	long f0;
	u64 c0;
	char why[256];
	bool sane, ok;
	int i;

	memset(pd, 0, 8192);
	pd[P32_LINEAR >> 22] = (gpa + 4096) | 3;
	pt[(P32_LINEAR >> 12) & 1023] = (gpa + 8192) | 3;
	memcpy(addr_gpa2hva(h.vm, gpa + 8192), code, sizeof(code));
	for (i = 0; i < 2; i++) {
		reset_shared();
		elisa_snap_restore(h.v[0], &h.snap[0]);
		s = h.snap[0].sregs;
		s.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_NE | X86_CR0_ET;
		s.cr4 = 0;
		s.efer = 0;
		s.cr3 = gpa;
		s.cs = cs;
		s.ds = s.es = s.ss = s.fs = s.gs = ds;
		vcpu_sregs_set(h.v[0], &s);
		r = h.snap[0].regs;
		r.rip = P32_LINEAR;
		r.rax = 0;
		r.rcx = i ? 511 : 0;
		r.rflags = 2;
		vcpu_regs_set(h.v[0], &r);
		f0 = faults0();
		c0 = counter();
		run(0, &o[i]);
		if (!i)
			continue;
		ok = o[1].reason == KVM_EXIT_SHUTDOWN && o[1].regs.rip == P32_LINEAR &&
		     faults0() == f0 && counter() == c0;
		snprintf(why, sizeof(why), ": exit %u at %#llx, elisa's faults %+ld",
			 o[1].reason, o[1].regs.rip, faults0() - f0);
	}
	sane = o[0].reason == KVM_EXIT_IO && h.v[0]->run->io.port == P32_PORT;
	CHECK(sane && ok, "paging32_gate_closed",
	      ": VMFUNC(0, 0): exit %u at %#llx; VMFUNC(0, 511)%s", o[0].reason, o[0].regs.rip,
	      why);
}

static void case_call_ok(const char *name, void *fn)
{
	struct outcome o;
	u64 c0 = counter();

	run_case(fn, 0, &o);
	CHECK(done(&o) && normal_return(&hres.regs, c0 + 1) && counter() == c0 + 1, name,
	      ": %s rax %#lx rdx %#lx rflags %#lx, callee-saved %s, scratch %#lx %#lx %#lx",
	      o.msg, (unsigned long)hres.regs.rax, (unsigned long)hres.regs.rdx,
	      (unsigned long)hres.regs.rflags, canaries(&hres.regs) ? "kept" : "CHANGED",
	      (unsigned long)hres.regs.rcx, (unsigned long)hres.regs.rsi,
	      (unsigned long)hres.regs.r11);
}

/* The trusted GPAs the probes map: the window's ends and the pages of both views. */
static int probe_gpas(const struct elisa_views *v, u64 *gpa)
{
	static const u8 kinds[] = { ELISA_MAP_REGION, ELISA_MAP_EPTP_LIST, ELISA_MAP_GATE_CODE,
				    ELISA_MAP_SUB_CODE, ELISA_MAP_GATE_DATA, ELISA_MAP_SUB_STACK };
	int n = 0;
	unsigned int i;

	gpa[n++] = h.grant.trusted_gpa;
	gpa[n++] = h.grant.trusted_gpa + h.grant.trusted_size - 4096;
	for (i = 0; i < ARRAY_SIZE(kinds); i++)
		gpa[n++] = elisa_views_gpa(v, kinds[i], NULL);
	return n;
}

static void case_probes(const struct elisa_views *v)
{
	u64 gpa[NR_PROBES], want = 0x4d4d4d4d4d4d4d4dUL;
	struct outcome o;
	int n = probe_gpas(v, gpa), i, bad = 0;

	memset(&hpar, 0, sizeof(hpar));
	hpar.probes = n;
	for (i = 0; i < n; i++) {
		TEST_ASSERT(gpa[i], "views dump: probe %d has no GPA", i);
		virt_pg_map(h.vm, PROBE_GVA + i * 4096, gpa[i]);
	}
	run_case(gc_probe_reads, 0, &o);
	for (i = 0; i < n; i++)
		if (o.mmio[i].gpa != gpa[i] || o.mmio[i].write || hres.v[i] != want)
			bad++;
	CHECK(done(&o) && o.nr_mmio == (u32)n && !bad, "default_view_reads",
	      ": %u MMIO exits for %d reads, %d wrong (GPA, direction or value)", o.nr_mmio, n,
	      bad);

	run_case(gc_probe_writes, 0, &o);
	for (i = 0, bad = 0; i < n; i++)
		if (o.mmio[i].gpa != gpa[i] || !o.mmio[i].write ||
		    o.mmio[i].data != 0x5757575757575757UL)
			bad++;
	CHECK(done(&o) && o.nr_mmio == (u32)n && !bad && region_intact() && peer_ok(),
	      "default_view_writes", ": %u MMIO exits for %d writes, %d wrong, region %s",
	      o.nr_mmio, n, bad, region_intact() ? "unchanged" : "CHANGED");
}

static void case_write_g(void)
{
	struct elisa_vcpu_debug d0, d1;
	struct outcome o;
	u64 c0 = counter();
	bool same;

	elisa_vcpu_debug(h.vm_a_id, 0, &d0);
	run_case(gc_write_g, 0, &o);
	elisa_vcpu_debug(h.vm_a_id, 0, &d1);
	same = lists_same(&d0, &d1);
	CHECK(done(&o) && same && h.block[0x10] == 0x41 && hres.v[0] == c0 + 1 &&
		      hexc.ud_at_insn == 1 && lists_clean(),
	      "write_own_g_page", ": lists %s, the call returned %ld (want %ld), #UDs %lu",
	      same ? "unchanged" : "CHANGED", (long)hres.v[0], (long)(c0 + 1),
	      (unsigned long)hexc.ud_at_insn);
	memcpy(h.block, elisa_guest_block, sizeof(elisa_guest_block));
}

/* The parameters of the PTE cases: G's PTEs now, and pointing at the copy. */
static void pte_params(void)
{
	u64 copy = addr_gva2gpa(h.vm, COPY_GVA);
	int i;

	memset(&hpar, 0, sizeof(hpar));
	hpar.pte_index = ((unsigned long)h.pte & 0xfff) / 8;
	for (i = 0; i < 3; i++) {
		hpar.pte_a[i] = h.pte[i];
		hpar.pte_b[i] = (h.pte[i] & ~PHYSICAL_PAGE_MASK) | (copy + i * 4096UL);
	}
}

static void case_remap(void)
{
	struct outcome o;
	u64 c0 = counter();
	int i, bad = 0;

	pte_params();
	run_case(gc_remap_g, 0, &o);
	for (i = 0; i < 6; i++)
		if (hres.v[i] != c0 + i + 1)
			bad++;
	CHECK(done(&o) && !bad && h.pte[0] == hpar.pte_a[0], "remap_g_between_calls",
	      ": %s %d of 6 calls wrong", o.msg, bad);
}

/*
 * A run of gc_cr3(@cr3) with a periodic, masked LAPIC timer (exits, so that a run that
 * never ends can be stopped: Bochs takes no interrupt exit while IF = 0).
 */
static void run_cr3(u64 cr3, struct outcome *o)
{
	reset_shared();
	start(0, gc_cr3, cr3);
	elisa_lapic_timer(h.v[0], 1000000, APIC_LVT_TIMER_PERIODIC | APIC_LVT_MASKED);
	run(0, o);
	fetch_shared();
}

/*
 * The trusted GPAs of both views as CR3 values, and a control: a GPA outside the window
 * that no memslot backs either. Each must end as the control does in the default view
 * (where the window is not memory: KVM cannot walk the guest's tables there) or be
 * killed; never a call that runs the service.
 */
static void case_cr3(const struct elisa_views *v)
{
	u64 gpa[16], pages = 0, c0;
	char why[256] = "";
	struct outcome ctl, o;
	struct elisa_vcpu_debug d;
	int n = 0, i, same = 0, kills = 0;
	long f0;
	bool ok;
	u8 k;

	gpa[n++] = h.grant.trusted_gpa;
	for (k = ELISA_MAP_GATE_CODE; k <= ELISA_MAP_SUB_TABLES; k++) {
		gpa[n] = elisa_views_gpa(v, k, &pages);
		if (gpa[n])
			n++;
		if ((k == ELISA_MAP_GATE_TABLES || k == ELISA_MAP_SUB_TABLES) && pages > 1 &&
		    gpa[n - 1]) {
			gpa[n] = gpa[n - 1] + (pages - 1) * 4096;
			n++;
		}
	}
	gpa[n++] = elisa_views_gpa(v, ELISA_MAP_REGION, NULL);
	/* The code, stack and entry-block pages may stay in the TLB across the CR3 load. */
	*elisa_guest_pte(h.vm, h.cr3, (u64)hg_cr3_call) |= HG_PTE_GLOBAL;
	*elisa_guest_pte(h.vm, h.cr3, h.snap[0].regs.rsp - 64) |= HG_PTE_GLOBAL;
	for (i = 0; i < 3; i++)
		h.pte[i] |= HG_PTE_GLOBAL;

	run_timeout = 200;
	c0 = counter();
	f0 = faults0();
	run_cr3(h.grant.trusted_gpa + (1UL << 30), &ctl);
	ok = counter() == c0 && faults0() == f0;	/* the warm-up call: -19 */
	ksft_print_msg("CR3 outside the window (control): %s, exit %u, rip %#llx\n",
		       ctl.timeout ? "still running" : "ended", ctl.reason, ctl.regs.rip);
	for (i = 0; i < n && ok; i++) {
		f0 = faults0();
		c0 = counter();
		run_cr3(gpa[i], &o);
		elisa_vcpu_debug(h.vm_a_id, 0, &d);
		if (o.timeout == ctl.timeout && o.reason == ctl.reason &&
		    o.regs.rip == ctl.regs.rip && !d.view && faults0() == f0 &&
		    counter() == c0 && region_intact() && lists_clean()) {
			same++;
			ok = peer_ok();
			continue;
		}
		ok = killed(&o, f0, c0, why, sizeof(why));
		kills += ok;
		if (!ok)
			ksft_print_msg("CR3 %#lx: %s, exit %u, rip %#llx rax %#llx, view %lu, "
				       "call returned %ld\n", (unsigned long)gpa[i], o.msg, o.reason,
				       o.regs.rip, o.regs.rax, d.view, (long)hres.v[0]);
	}
	run_timeout = ELISA_RUN_TIMEOUT_S * 1000;
	*elisa_guest_pte(h.vm, h.cr3, (u64)hg_cr3_call) &= ~HG_PTE_GLOBAL;
	*elisa_guest_pte(h.vm, h.cr3, h.snap[0].regs.rsp - 64) &= ~HG_PTE_GLOBAL;
	for (i = 0; i < 3; i++)
		h.pte[i] &= ~HG_PTE_GLOBAL;
	CHECK(ok, "cr3_in_trusted_window", ": %d trusted CR3 values: %d as the control, %d "
	      "killed%s", n, same, kills, why);
}

/* vCPU 1's half of a two-vCPU case, on its own thread. */
struct second {
	pthread_t t;
	void *fn;
	u64 arg;
	struct outcome o;
};

static void *second_run(void *p)
{
	struct second *s = p;

	run(1, &s->o);
	return NULL;
}

static void run_pair(void *fn0, u64 arg0, void *fn1, u64 arg1, struct outcome *o0,
		     struct outcome *o1)
{
	struct second s = { .fn = fn1, .arg = arg1 };

	reset_shared();
	start(0, fn0, arg0);
	start(1, fn1, arg1);
	TEST_ASSERT(!pthread_create(&s.t, NULL, second_run, &s), "pthread_create");
	run(0, o0);
	pthread_join(s.t, NULL);
	*o1 = s.o;
	fetch_shared();
}

static void case_pair_calls(const char *name, void *fn1, bool ud)
{
	struct outcome o0, o1;
	u64 c0 = counter();
	bool ok;

	run_pair(gc_call_loop_paired, LOOP_CALLS, fn1, 0, &o0, &o1);
	ok = done(&o0) && done(&o1) && hres.v[0] == c0 + 1 && !hres.v[1] &&
	     hres.v[8] >= ARRAY_SIZE(hammer) &&
	     counter() == c0 + LOOP_CALLS && region_intact() && lists_clean() &&
	     (!ud || hexc.count[UD_VECTOR] == hres.v[8]);
	CHECK(ok, name, ": %s%s %d calls, %lu out of sequence, counter %+ld; vCPU 1: %lu rounds, "
	      "%lu #UDs", o0.msg, o1.msg, LOOP_CALLS, (unsigned long)hres.v[1],
	      (long)(counter() - c0), (unsigned long)hres.v[8],
	      (unsigned long)hexc.count[UD_VECTOR]);
}

static void case_nmi(const char *name, bool x2)
{
	struct elisa_vcpu_debug d0, d1;
	struct outcome o0, o1;
	u64 c0 = counter(), ok_calls, intr;
	bool ok;

	elisa_vcpu_debug(h.vm_a_id, 0, &d0);
	run_pair(gc_spin_calls, x2, gc_nmi_sender, x2, &o0, &o1);
	elisa_vcpu_debug(h.vm_a_id, 0, &d1);
	ok_calls = hres.v[0];
	intr = hres.v[1];
	ksft_print_msg("%s: %lu calls returned, %lu failed back, %lu NMIs sent, %lu received "
		       "(last at %#lx), view exits %lu, failbacks %lu, region data in registers "
		       "%lu times (mask %#lx: bit n = the n-th of RAX, RBX, RCX, RDX, RSI, RDI, "
		       "RBP, R8..R15); vCPU 0 waited %lu exits for vCPU 1\n", name,
		       (unsigned long)ok_calls, (unsigned long)intr,
		       (unsigned long)hres.v[8], (unsigned long)hexc.count[NMI_VECTOR],
		       (unsigned long)hexc.nmi_last_rip, d1.view_exits - d0.view_exits,
		       d1.failbacks - d0.failbacks, (unsigned long)hres.v[3],
		       (unsigned long)hres.v[4], (unsigned long)hres.v[11]);
	/* intr >= 1: the NMIs hit calls, or the fail-back path this case is for never ran. */
	ok = done(&o0) && done(&o1) && ok_calls + intr == NMI_CALLS && intr >= 1 && !hres.v[2] &&
	     !hres.v[3] && d1.failbacks - d0.failbacks == intr && d1.faults == d0.faults &&
	     hexc.count[NMI_VECTOR] >= 1 && hexc.count[NMI_VECTOR] <= hres.v[8] &&
	     !hexc.nmi_in_trusted && d1.view_exits > d0.view_exits &&
	     counter() - c0 >= ok_calls && counter() - c0 <= NMI_CALLS && region_intact() &&
	     lists_clean();
	CHECK(ok, name, ": %s%s %lu + %lu of %d, leaks %lu, NMIs %lu (in trusted code %lu, "
	      "first at %#lx), failbacks %lu", o0.msg, o1.msg, (unsigned long)ok_calls,
	      (unsigned long)intr, NMI_CALLS, (unsigned long)hres.v[3],
	      (unsigned long)hexc.count[NMI_VECTOR], (unsigned long)hexc.nmi_in_trusted,
	      (unsigned long)hexc.nmi_trusted_rip, d1.failbacks - d0.failbacks);
}

static u64 exits(struct kvm_vcpu *v)
{
	return elisa_vcpu_stat(v, "exits") - elisa_vcpu_stat(v, "irq_exits");
}

static void *zero_exits_second(void *p)
{
	struct outcome *o = p;

	run(1, o);
	return NULL;
}

static void case_zero_exits(void)
{
	struct outcome o0, o1;
	struct ucall uc0, uc1;
	u64 c0, e0[2], e1[2];
	pthread_t t;
	bool ok;
	int i;

	reset_shared();
	start(0, gc_zero_exits, 0);
	start(1, gc_zero_exits, 0);
	run(0, &o0);
	run(1, &o1);
	ok = o0.ucall == UCALL_SYNC && o1.ucall == UCALL_SYNC;
	c0 = counter();
	for (i = 0; i < 2; i++)
		e0[i] = exits(h.v[i]);
	TEST_ASSERT(!pthread_create(&t, NULL, zero_exits_second, &o1), "pthread_create");
	run(0, &o0);
	pthread_join(t, NULL);
	for (i = 0; i < 2; i++)
		e1[i] = exits(h.v[i]);
	ok = ok && o0.ucall == UCALL_SYNC && o1.ucall == UCALL_SYNC;
	if (ok) {
		get_ucall(h.v[0], &uc0);
		get_ucall(h.v[1], &uc1);
		ok = !uc0.args[2] && !uc1.args[2] && e1[0] - e0[0] == 1 && e1[1] - e0[1] == 1 &&
		     counter() == c0 + 2 * ZERO_EXIT_CALLS;
	}
	CHECK(ok, "two_vcpus_zero_exits", ": exits %lu and %lu (want 1 each, the ucall), "
	      "counter %+ld (want %d)", (unsigned long)(e1[0] - e0[0]),
	      (unsigned long)(e1[1] - e0[1]), (long)(counter() - c0), 2 * ZERO_EXIT_CALLS);
}

static void case_peer(void)
{
	struct ucall uc;
	u64 x, cmd;
	bool ok;

	hpar.n = 1;
	sync_global_to_guest(h.peer, hpar);
	elisa_run_sync(h.pv, 2, &uc);
	x = elisa_sync_exits(h.pv, 3, &uc);
	cmd = uc.args[1];
	ok = cmd == 3 && !uc.args[2] && uc.args[3] == counter() && x == 1;
	CHECK(ok, "peer_vm_works", ": %lu calls out of sequence, last %lu (counter %lu), %lu exits",
	      (unsigned long)uc.args[2], (unsigned long)uc.args[3], (unsigned long)counter(),
	      (unsigned long)x);
}

static void case_lists(void)
{
	long f = faults0();

	CHECK(lists_clean() && f == h.kills, "lists_intact",
	      ": lists %s, faults %ld for %d kills", lists_clean() ? "clean" : "NOT clean", f,
	      h.kills);
}

/* ---- host: setup ---------------------------------------------------------------------- */

static void setup(void)
{
	static u8 code[4096];
	u64 secret_page[512], compat = 0x00cf9b000000ffffUL;
	struct elisa_attach_vm av = { 0 };
	struct elisa_grant gb;
	struct elisa_vcpu_debug d;
	gpa_t gpa;
	int i, err;

	h.dev = elisa_open();
	for (i = 0; i < 512; i++)
		secret_page[i] = i ? SECRET_BASE + i : 0;
	h.memfd = memfd_page("elisa-hostile", secret_page);
	h.mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, h.memfd, 0);
	TEST_ASSERT(h.mem != MAP_FAILED, "mmap region");
	memcpy(h.ref, secret_page, sizeof(h.ref));
	h.region = elisa_region_page(h.dev, h.memfd);
	TEST_ASSERT(hs_service_end - hs_service_start <= 4096, "service too large");
	memset(code, 0xcc, sizeof(code));
	memcpy(code, hs_service_start, hs_service_end - hs_service_start);
	h.service = elisa_service_page(h.dev, "elisa-hostile-svc", code, CODE_GVA, h.region,
				       REGION_GVA);

	/* VM A: two vCPUs, the entry block at G, own pages below it, a copy, IST stacks. */
	h.vm = vm_create_with_vcpus(2, guest_idle, h.v);
	gpa = vm_phy_pages_alloc(h.vm, ELISA_GUEST_BLOCK_PAGES, 0x100000, 0);
	virt_map(h.vm, G, gpa, ELISA_GUEST_BLOCK_PAGES);
	h.block = addr_gpa2hva(h.vm, gpa);
	memcpy(h.block, elisa_guest_block, sizeof(elisa_guest_block));
	gpa = vm_phy_pages_alloc(h.vm, 2 + ELISA_GUEST_BLOCK_PAGES + 2, 0x100000, 0);
	virt_map(h.vm, G - 0x2000, gpa, 2);
	memset(addr_gpa2hva(h.vm, gpa), 0xcc, 2 * 4096);
	virt_map(h.vm, COPY_GVA, gpa + 2 * 4096, ELISA_GUEST_BLOCK_PAGES);
	memcpy(addr_gpa2hva(h.vm, gpa + 2 * 4096), elisa_guest_block, sizeof(elisa_guest_block));
	virt_map(h.vm, IST_GVA, gpa + (2 + ELISA_GUEST_BLOCK_PAGES) * 4096, 2);
	virt_pg_map(h.vm, APIC_DEFAULT_GPA, APIC_DEFAULT_GPA);

	vcpu_sregs_get(h.v[0], &h.snap[0].sregs);
	h.cr3 = h.snap[0].sregs.cr3;
	h.pte = elisa_guest_pte(h.vm, h.cr3, G);
	TEST_ASSERT(((unsigned long)h.pte & 0xfff) <= 4096 - 24, "G's PTEs cross a page");
	virt_pg_map(h.vm, PTALIAS_GVA, addr_hva2gpa(h.vm, h.pte) & PAGE_MASK);

	for (i = 0; i < 32; i++)
		if (i == DB_VECTOR || i == UD_VECTOR || i == SS_VECTOR || i == GP_VECTOR ||
		    i == PF_VECTOR)
			vm_install_exception_handler(h.vm, i, hg_exception);
	vm_install_exception_handler(h.vm, NMI_VECTOR, hg_nmi);
	elisa_set_ist(h.vm, SS_VECTOR, IST_GVA + 2 * 4096);
	elisa_set_ist(h.vm, GP_VECTOR, IST_GVA + 2 * 4096);
	elisa_set_ist(h.vm, PF_VECTOR, IST_GVA + 2 * 4096);
	memcpy((u8 *)addr_gva2hva(h.vm, h.vm->arch.gdt) + (COMPAT_CS >> 3) * 8, &compat, 8);
	for (i = 0; i < 2; i++)
		elisa_snap_take(h.v[i], &h.snap[i]);

	av.vm_fd = h.vm->fd;
	h.evm_a = elisa_ioctl(h.dev, ELISA_ATTACH_VM, &av);
	h.grant.service_fd = h.service;
	h.grant.entry_gva = G;
	err = __elisa_ioctl(h.evm_a, ELISA_GRANT, &h.grant) ? errno : 0;
	TEST_ASSERT(!err && h.grant.gate_index == 511 && h.grant.nr_vcpus == 2,
		    "grant to VM A: errno %d, index %u, vCPUs %u", err, h.grant.gate_index,
		    h.grant.nr_vcpus);
	h.vm_a_id = elisa_last_vm_id();
	/*
	 * A grant only publishes the gates; each vCPU's list entry opens at its next entry.
	 * The gate EPTP comes from the views dump, and the list has no entry 511 yet.
	 */
	for (i = 0; i < 2; i++) {
		struct elisa_views v;

		TEST_ASSERT(elisa_views_read(h.vm_a_id, i, &v) && v.gate_eptp &&
				    elisa_vcpu_debug(h.vm_a_id, i, &d) && !d.list[511],
			    "debugfs: no gate for vCPU %d of vm %d, or its entry open before an "
			    "entry", i, h.vm_a_id);
		h.gate_eptp[i] = v.gate_eptp;
		elisa_views_free(&v);
	}

	/* VM B: the peer. */
	h.peer = vm_create_with_one_vcpu(&h.pv, peer_guest);
	h.evm_b = elisa_attach_grant(h.dev, h.peer, h.service, G, elisa_guest_block,
				     ELISA_GUEST_BLOCK_PAGES, &gb, &err);
	TEST_ASSERT(!err && gb.gate_index == 511, "grant to VM B: errno %d", err);
}

/* ELISA_HOSTILE_ONLY=<name>,<name> runs only the cases named there (debugging). */
static bool want(const char *name)
{
	const char *only = getenv("ELISA_HOSTILE_ONLY");

	if (!only || strstr(only, name))
		return true;
	ksft_test_result_skip("%s: not selected\n", name);
	return false;
}

#define CASE(name, stmt)	\
	do {			\
		if (want(name))	\
			stmt;	\
	} while (0)

int main(void)
{
	static const u64 rsp_zero[] = { 0 }, rsp_nc[] = { 1UL << 63 }, rsp_un[] = { UNMAPPED_GVA };
	static const u64 rsp_g[] = { G + 8, G + 0x10, G - 0x1000 };
	struct elisa_views views;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(33);
	setup();
	TEST_ASSERT(peer_ok(), "VM B: a first call");
	TEST_ASSERT(elisa_views_read(h.vm_a_id, 0, &views), "debugfs: vcpu0-views of vm %d",
		    h.vm_a_id);

	CASE("nongate_indexes_ud", case_ud_loop("nongate_indexes_ud", gc_nongate_indexes, 510));
	CASE("sub_slot_ud", case_sub_slot());
	CASE("ecx_ge_512_ud", case_ud_loop("ecx_ge_512_ud", gc_ecx_high, ARRAY_SIZE(ecx_values)));
	CASE("eax_nonzero_ud",
	     case_ud_loop("eax_nonzero_ud", gc_eax_nonzero, 63 + ARRAY_SIZE(eax_extra)));
	CASE("ecx0_not_entered", case_index("ecx0_not_entered", 0, 0));
	CASE("ungranted_gate_510", case_index("ungranted_gate_510", 510, 1));
	CASE("gate_index_from_own_code",
	     check_killed("gate_index_from_own_code", gc_vmfunc_511, 0));
	CASE("gate_index_onto_data_pages", case_onto_pages());
	CASE("if_set_refused", case_if_set());
	CASE("tf_set_killed", case_tf());
	CASE("rsp_zero", case_rsp("rsp_zero", rsp_zero, 1, PF_VECTOR, true));
	CASE("rsp_noncanonical", case_rsp("rsp_noncanonical", rsp_nc, 1, SS_VECTOR, false));
	CASE("rsp_unmapped", case_rsp("rsp_unmapped", rsp_un, 1, PF_VECTOR, true));
	CASE("rsp_on_gate_pages",
	     case_rsp("rsp_on_gate_pages", rsp_g, ARRAY_SIZE(rsp_g), GP_VECTOR, false));
	CASE("compat_mode_killed", check_killed("compat_mode_killed", gc_compat, 0));
	CASE("paging32_gate_closed", case_paging32());
	CASE("efer_nxe0_killed", check_killed("efer_nxe0_killed", gc_nxe0, 0));
	CASE("cr0_wp0_call", case_call_ok("cr0_wp0_call", gc_wp0));
	CASE("hostile_flags_call", case_call_ok("hostile_flags_call", gc_flags));
	if (want("default_view_reads"))
		case_probes(&views);
	else
		ksft_test_result_skip("default_view_writes: not selected\n");
	CASE("write_own_g_page", case_write_g());
	CASE("remap_g_between_calls", case_remap());
	CASE("db_breakpoint_on_service", case_db_service());
	CASE("pf_in_service", check_killed("pf_in_service", gc_pf_service, 0));
	CASE("cr3_in_trusted_window", case_cr3(&views));
	pte_params();
	CASE("vcpu1_edits_g_ptes",
	     case_pair_calls("vcpu1_edits_g_ptes", gc_pt_toggler, false));
	CASE("vcpu1_vmfunc_hammer",
	     case_pair_calls("vcpu1_vmfunc_hammer", gc_hammer, true));
	CASE("vcpu1_nmi_xapic", case_nmi("vcpu1_nmi_xapic", false));
	CASE("vcpu1_nmi_x2apic", case_nmi("vcpu1_nmi_x2apic", true));
	CASE("two_vcpus_zero_exits", case_zero_exits());
	CASE("peer_vm_works", case_peer());
	CASE("lists_intact", case_lists());

	elisa_views_free(&views);
	close(h.evm_a);
	close(h.evm_b);
	kvm_vm_free(h.vm);
	kvm_vm_free(h.peer);
	close(h.service);
	close(h.region);
	close(h.memfd);
	close(h.dev);
	ksft_finished();
}
