// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_gate_test: the gate page at every byte offset (R19) and events during an
 * excursion (R16), against the real module and KVM.
 *
 * The host drives one attached, granted, one-vCPU VM by setting its registers. The guest's
 * own page at G + 0x1000 (the fallback stub's page; the guest controls its default view)
 * is a scratch page filled with OUT DX,AL (ee).
 *
 * Landing at offset k of the gate code page: the host writes VMFUNC (0f 01 d4) so that it
 * ends at G + 0x1000 + k (for k < 3 it starts in page G), sets RIP there, EAX = 0,
 * ECX = 511, RFLAGS = 0x2 (IF = 0), a return address to a reporting stub at [RSP], and
 * attacker values elsewhere: RBX = G + 8 (list[1]), RBP = G - 0x1000 (gate data),
 * RSI = G - 8 (gate stack), RDI = G + 0x1000, R8 = 0, R9 = -1, R10 = G + 0xff8,
 * R11 = RSP, R12-R15 and RDX patterns with k. The VMFUNC switches to the gate view and
 * the next instruction is gate byte k. Coverage: all 4096 offsets, or with
 * ELISA_GATE_STRIDE=N (make check-debug: the KASAN kernel takes about 10 times as long per
 * landing) every offset below 0x100 (the entry, the validated switch, the refusal paths
 * and the first hop) and from 0xfe0 (the tail), and every Nth in between.
 *
 * Each landing ends in one of:
 *   switch	the validated switch ran the service (its counter moved) and the call
 *		returned through the exit stub
 *   refusal	returned through the exit stub with -1 (ERR_IRQ_ENABLED) or another value,
 *		the service not run
 *   elsewhere	back in the default view somewhere in the guest's own page at G + 0x1000
 *		(an OUT of the fill exits to the VMM)
 *   guest-exc	an exception delivered in the default view, to the guest's handlers
 *   shutdown	KVM_EXIT_SHUTDOWN (the module ended the run after a fault or an exiting
 *		instruction in the gate view, or a triple fault), possibly after one exit
 *		to the VMM (I/O, debug) that KVM completes first
 * A killed VM is rebooted by the VMM as QEMU does after a shutdown: registers, segment,
 * control and debug registers and pending events are restored from a snapshot (same VM,
 * same grant). After every landing, from the default view, VMFUNC(0, 1) must raise #UD
 * (list[1] = 0); at the end debugfs must show no list[1] and a normal call must work.
 *
 *  1. r19_every_offset: every landing has one of the outcomes above, list[1] was 0 after
 *     each, and the validated switch happened only at offsets 0x0-0x5, 0xa-0xd,
 *     0x12-0x13 (gate-protocol §8); prints the tally
 *  2. r16_tf: RFLAGS.TF = 1 at the entry VMFUNC: the single-step #DB after it (KVM
 *     intercepts #DB) is an exception exit in the gate view: KVM_EXIT_SHUTDOWN with every
 *     general register zeroed, the service not run
 *  3. r16_nmi_before: KVM_NMI right before the call: delivered in the default view, then
 *     the call returns normally
 *  4. r16_nmi_in_sub: the service spins for about 100 ms; 20 ms into the call the vCPU's
 *     LAPIC timer (periodic, with NMI as its delivery mode, set through KVM_SET_LAPIC)
 *     expires, so KVM itself queues an NMI while the vCPU is in the sub view (the timer
 *     runs on the VMX preemption timer: the exit is asynchronous; its next expiry, 20 ms
 *     later, comes after the VMM has stopped it: with a period of 1 ms the KASAN kernel on
 *     one emulated CPU took longer than that from the fail-back to the stop, and the guest
 *     counted 2 NMIs). The timer's exit keeps
 *     the excursion; at the next entry KVM injects the NMI, and elisa fails the call back
 *     instead: it returns -4 (ERR_INTERRUPTED) with the scratch registers zeroed, the
 *     service's work is not done, and the NMI is delivered once, in the default view.
 *     Why not a host interrupt and KVM_NMI from the VMM (the real-world case, and the same
 *     entry path): in the emulated host an external interrupt causes no VM exit while the
 *     guest's RFLAGS.IF is 0 (Bochs 2.7 loads the guest's RFLAGS at VM entry before it
 *     marks the CPU as in VMX non-root operation, so INTR stays masked), and an excursion
 *     always runs with IF = 0: a spinning service keeps the host CPU's interrupts out, and
 *     no signal can stop KVM_RUN. The VMX preemption timer does exit. (A one-shot timer
 *     armed by KVM_SET_LAPIC ran on a host hrtimer instead, whose interrupt exited only
 *     after the service had returned.)
 *  5. r16_dr_gate: the guest's DR0/DR7 with an execution breakpoint on the gate's first
 *     byte: the gate stays closed while DR7 arms a breakpoint (security.rst), so the call
 *     is refused (#UD at its VMFUNC) and the breakpoint fires in the default view, if at
 *     all; the service not run, no shutdown. (Before the gates closed for armed debug
 *     registers, this case showed a #DB inside the gate view ending the run.)
 *  6. r16_dr_list1: the guest's DR0/DR7 with a write breakpoint on list[1]: refused, as 5
 *  7. r16_guest_debug_sub: KVM_SET_GUEST_DEBUG with a hardware breakpoint on the sub
 *     entry: refused, as 5 (the VMM's breakpoints are the guest's DR7 while it runs)
 *  8. r19_list_rsp_every_offset: every offset again, with RSP in the EPTP list (not 8-byte
 *     aligned) and RFLAGS with DF, OF, IOPL, VIP and ID set: no landing leaves an entry of
 *     the list set but 0 and 511 (debugfs). A landing on the gate's PUSHFQ stores RFLAGS
 *     there, shifted across two entries, where it can be a valid EPTP of the guest's
 *     making; the gate then raises #UD and elisa rewrites the list. Before: the refusal
 *     path returned cleanly with the image in the list, and VMFUNC(0, 2) loaded it.
 *  9. after_all: a normal call returns the service's value, VMFUNC(0, 1) raises #UD and
 *     debugfs shows no list[1]
 * Order: the R16 cases, then the 4096 landings twice, then after_all. Measured in the emulated
 * host: 5 switch + return (offsets of the normal path whose attacker registers survive
 * it), 40 refusal returns, 4051 shutdowns, list[1] 0 after every landing; ~25 s per boot.
 * No case may print a host warning (tools/testvm/run.sh fails the boot on one).
 */
#include <sys/mman.h>
#include <sys/time.h>
#include "elisa_kvm.h"
#include "elisa_hostile.h"
#include "apic.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"

#define G 0x500000000000UL
#define CODE_GVA 0x600000000000UL
#define REGION_GVA 0x600000100000UL
#define STUB_GVA 0x480000000000UL
#define STACK_GVA 0x480000010000UL
#define STACK_PAGES 4
#define RET_PORT 0x5e1
#define CHECK_PORT 0x5e2
#define SPIN_MAGIC 0x5350494eUL
#define SERVICE_RET 0x600d

/* Reporting stubs in the guest (host-assembled). */
#define STUB_RET (STUB_GVA + 0x00)	/* mov dx, RET_PORT; out dx, al; ud2 */
#define STUB_CHECK (STUB_GVA + 0x40)	/* xor eax,eax; mov ecx,1; vmfunc; mov dx,CHECK_PORT; out */
#define STUB_CALL (STUB_GVA + 0x80)	/* mov ecx, 511; jmp G + 0xff7 (returns to [RSP]) */

static u64 nmi_count;

static void guest_nmi_handler(struct ex_regs *regs)
{
	(void)regs;
	__atomic_add_fetch(&nmi_count, 1, __ATOMIC_SEQ_CST);
}

static void guest_code(void)
{
	GUEST_DONE();
}

/*
 * The service: RSI = SPIN_MAGIC: spin RDI times first. Then count the call in the
 * region and return SERVICE_RET.
 */
static void service_code(u8 *c)
{
	static const u8 code[] = {
		0x48, 0x81, 0xfe, 0x4e, 0x49, 0x50, 0x53,	/* cmp rsi, SPIN_MAGIC */
		0x75, 0x08,					/* jne count */
		0x48, 0x89, 0xf9,				/* mov rcx, rdi */
		0x48, 0xff, 0xc9,				/* 1: dec rcx */
		0x75, 0xfb,					/* jnz 1b */
		0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,		/* count: mov rax, REGION_GVA */
		0xf0, 0x48, 0xff, 0x00,				/* lock inc qword [rax] */
		0xb8, 0x0d, 0x60, 0x00, 0x00,			/* mov eax, SERVICE_RET */
		0xc3,						/* ret */
	};
	u64 r = REGION_GVA;

	memset(c, 0xcc, 4096);
	memcpy(c, code, sizeof(code));
	memcpy(c + 19, &r, 8);
}

static void stub_code(u8 *s)
{
	static const u8 ret[] = { 0x66, 0xba, RET_PORT & 0xff, RET_PORT >> 8, 0xee, 0x0f, 0x0b };
	static const u8 check[] = {
		0x31, 0xc0,				/* xor eax, eax */
		0xb9, 0x01, 0x00, 0x00, 0x00,		/* mov ecx, 1 */
		0x0f, 0x01, 0xd4,			/* vmfunc */
		0x66, 0xba, CHECK_PORT & 0xff, CHECK_PORT >> 8, 0xee, 0x0f, 0x0b,
	};
	u8 call[] = {
		0xb9, 0xff, 0x01, 0x00, 0x00,		/* mov ecx, 511 */
		0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,	/* mov rax, G + 0xff7 */
		0xff, 0xe0,				/* jmp rax: returns to [RSP] */
	};
	u64 entry = G + ELISA_CALL_ENTRY_OFFSET;

	memcpy(call + 7, &entry, 8);
	memset(s, 0xcc, 4096);
	memcpy(s, ret, sizeof(ret));
	memcpy(s + 0x40, check, sizeof(check));
	memcpy(s + 0x80, call, sizeof(call));
}

struct ctx {
	int dev, region, service, evm, counter_fd;
	volatile u64 *counter;
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	u8 *block;	/* host view of the guest's pages at G, G + 0x1000, G + 0x2000 */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_debugregs dregs;
	struct kvm_vcpu_events events;
};

static void setup(struct ctx *c)
{
	static u8 code[4096], stub[4096];
	struct elisa_attach_vm av = { 0 };
	struct elisa_grant gr = { 0 };
	gpa_t gpa;

	c->dev = elisa_open();
	c->counter_fd = memfd_page("elisa-gate-counter", NULL);
	c->counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, c->counter_fd, 0);
	TEST_ASSERT(c->counter != MAP_FAILED, "mmap counter");
	c->region = elisa_region_page(c->dev, c->counter_fd);

	service_code(code);
	c->service = elisa_service_page(c->dev, "elisa-gate-service", code, CODE_GVA, c->region,
					REGION_GVA);

	c->vm = vm_create_with_one_vcpu(&c->vcpu, guest_code);
	vm_install_exception_handler(c->vm, UD_VECTOR, elisa_guest_ud_handler);
	vm_install_exception_handler(c->vm, NMI_VECTOR, guest_nmi_handler);
	gpa = vm_phy_pages_alloc(c->vm, ELISA_GUEST_BLOCK_PAGES, 0x100000, 0);
	virt_map(c->vm, G, gpa, ELISA_GUEST_BLOCK_PAGES);
	c->block = addr_gpa2hva(c->vm, gpa);
	memcpy(c->block, elisa_guest_block, sizeof(elisa_guest_block));
	gpa = vm_phy_pages_alloc(c->vm, 1 + STACK_PAGES, 0x100000, 0);
	virt_map(c->vm, STUB_GVA, gpa, 1);
	virt_map(c->vm, STACK_GVA, gpa + 4096, STACK_PAGES);
	stub_code(stub);
	memcpy(addr_gpa2hva(c->vm, gpa), stub, 4096);

	av.vm_fd = c->vm->fd;
	c->evm = elisa_ioctl(c->dev, ELISA_ATTACH_VM, &av);
	gr.service_fd = c->service;
	gr.entry_gva = G;
	elisa_ioctl(c->evm, ELISA_GRANT, &gr);
	TEST_ASSERT(gr.gate_index == 511, "gate index %u", gr.gate_index);

	vcpu_regs_get(c->vcpu, &c->regs);
	vcpu_sregs_get(c->vcpu, &c->sregs);
	vcpu_debugregs_get(c->vcpu, &c->dregs);
	vcpu_events_get(c->vcpu, &c->events);
}

/* The VMM's reboot of the vCPU, ready to run at @rip with [RSP] = STUB_RET. */
static struct kvm_regs reset(struct ctx *c, u64 rip)
{
	struct kvm_regs r = c->regs;
	u64 rsp = STACK_GVA + STACK_PAGES * 4096 - 0x200;

	vcpu_sregs_set(c->vcpu, &c->sregs);
	vcpu_debugregs_set(c->vcpu, &c->dregs);
	vcpu_events_set(c->vcpu, &c->events);
	*(u64 *)addr_gva2hva(c->vm, rsp) = STUB_RET;
	r.rip = rip;
	r.rsp = rsp;
	r.rflags = 0x2;
	return r;
}

enum outcome { O_SWITCH, O_REFUSAL, O_ELSEWHERE, O_GUEST_EXC, O_SHUTDOWN, O_OTHER, O_NR };
static const char *const outcome_name[O_NR] = {
	"switch + return", "refusal return", "return elsewhere (default view)",
	"exception in the default view", "shutdown", "other",
};

struct result {
	enum outcome o;
	u32 first_exit;		/* exit reason of the first exit to the VMM */
	u32 exits;		/* exits to the VMM before the verdict */
	struct kvm_regs regs;	/* at the verdict */
	bool serviced;		/* the service's counter moved */
};

/* Runs until an outcome: at most 4 exits to the VMM. */
static struct result run_outcome(struct ctx *c)
{
	struct kvm_run *run = c->vcpu->run;
	u64 before = *c->counter;
	struct result res = { .o = O_OTHER };
	int i;

	for (i = 0; i < 4; i++) {
		elisa_run_raw(c->vcpu);
		if (!i)
			res.first_exit = run->exit_reason;
		res.exits++;
		vcpu_regs_get(c->vcpu, &res.regs);
		if (run->exit_reason == KVM_EXIT_SHUTDOWN) {
			res.o = O_SHUTDOWN;
			break;
		}
		if (run->exit_reason != KVM_EXIT_IO) {
			if (run->exit_reason == KVM_EXIT_DEBUG)
				continue;
			break;
		}
		if (run->io.port == RET_PORT && res.regs.rip == STUB_RET + 4) {
			res.o = res.regs.rax == SERVICE_RET ? O_SWITCH : O_REFUSAL;
			break;
		}
		if (res.regs.rip >= G + 0x1000 && res.regs.rip < G + 0x2000) {
			res.o = O_ELSEWHERE;
			break;
		}
		if (run->io.port == 0x1000 /* the library's ucall port */) {
			res.o = O_GUEST_EXC;
			break;
		}
		/* Another I/O exit: KVM completes it on the next run. */
	}
	res.serviced = *c->counter != before;
	return res;
}

/* From the default view after a reboot, VMFUNC(0, 1) must raise #UD: list[1] = 0. */
static bool list1_clear(struct ctx *c)
{
	struct kvm_regs r = reset(c, STUB_CHECK);
	u64 before;

	sync_global_from_guest(c->vm, elisa_guest_ud);
	before = elisa_guest_ud.count;
	vcpu_regs_set(c->vcpu, &r);
	elisa_run_raw(c->vcpu);
	vcpu_regs_get(c->vcpu, &r);
	sync_global_from_guest(c->vm, elisa_guest_ud);
	return c->vcpu->run->exit_reason == KVM_EXIT_IO && c->vcpu->run->io.port == CHECK_PORT &&
	       r.rip == STUB_CHECK + 14 && elisa_guest_ud.count == before + 1;
}

/* debugfs: 1 when some vCPU's list[1] is set, 0 when none, -1 when unreadable. */
static int debugfs_list1(void)
{
	int n = elisa_vms_lines("    list[1] ");

	return n > 0 ? 1 : n;
}

/* A normal call from STUB_CALL, with IF = 0. */
static struct result normal_call(struct ctx *c)
{
	struct kvm_regs r = reset(c, STUB_CALL);

	vcpu_regs_set(c->vcpu, &r);
	return run_outcome(c);
}

static bool gprs_zero(const struct kvm_regs *r)
{
	return !(r->rax | r->rbx | r->rcx | r->rdx | r->rsi | r->rdi | r->rbp | r->r8 | r->r9 |
		 r->r10 | r->r11 | r->r12 | r->r13 | r->r14 | r->r15);
}

static bool is_switch_offset(unsigned int k)
{
	return k <= 0x5 || (k >= 0xa && k <= 0xd) || k == 0x12 || k == 0x13;
}

/* ELISA_GATE_STRIDE (1 to 4096; default 1, every offset): see the header */
static unsigned int gate_stride = 1;

/* Whether the sweeps land at gate offset @k. */
static bool landing_offset(unsigned int k)
{
	return k < 0x100 || k >= 0xfe0 || k % gate_stride == 0;
}

/*
 * The EPTP-list entries of vCPU 0 other than 0 (KVM's root) and 511 (the gate) that are
 * not 0, from debugfs; -1 when unreadable.
 */
static int foreign_list_entries(void)
{
	struct elisa_vcpu_debug d;
	int i, n = 0, vm = elisa_last_vm_id();

	if (vm < 0 || !elisa_vcpu_debug(vm, 0, &d))
		return -1;
	for (i = 1; i < 511; i++)
		n += d.list[i] != 0;
	return n;
}

/*
 * RSP for the landings of list_rsp_every_offset: inside the EPTP list (G + 0x1b, not
 * 8-byte aligned), and RFLAGS with every bit a guest may set that keeps IF and TF 0 (DF,
 * OF, IOPL 1, VIP, ID): an image PUSHFQ stores there lands across list entries 2 and 3,
 * and shifted as it is, parts of it can form a valid EPTP.
 */
#define LIST_RSP (G + 0x1b)
#define LIST_RSP_RFLAGS 0x301c02UL

/*
 * Lands at every offset of the gate page. With @list_rsp, RSP points into the EPTP list
 * (LIST_RSP) instead of the guest's stack, and no entry of the list but 0, 1 (cleared)
 * and 511 may be set after a landing.
 */
static void every_offset(struct ctx *c, bool list_rsp)
{
	static u8 pages[2 * 4096];
	unsigned int tally[O_NR] = { 0 }, serviced = 0, bad_list1 = 0, bad_switch = 0;
	unsigned int first_bad = ~0u, shutdown_io = 0, shutdown_direct = 0;
	unsigned int forged = 0, first_forged = ~0u, unreadable = 0;
	unsigned int k, landings = 0, want;
	bool opened;
	struct timeval t0, t1;

	gettimeofday(&t0, NULL);
	for (k = 0; k < 4096; k++) {
		struct kvm_regs r;
		struct result res;
		int n;

		if (!landing_offset(k))
			continue;
		landings++;
		r = reset(c, G + 0x1000 + k - 3);

		memcpy(pages, elisa_guest_block[0], 4096);
		memset(pages + 4096, 0xee, 4096);
		memcpy(pages + 0x1000 + k - 3, "\x0f\x01\xd4", 3);
		if (list_rsp) {
			/* the guest's page G in its default view: the stubs return there */
			u64 ret = STUB_RET;

			memcpy(pages + (LIST_RSP - G), &ret, 8);
		}
		memcpy(c->block, pages, sizeof(pages));
		r.rax = 0;
		r.rcx = 511;
		r.rbx = G + 8;
		r.rbp = G - 0x1000;
		r.rsi = G - 8;
		r.rdi = G + 0x1000;
		r.r8 = 0;
		r.r9 = -1UL;
		r.r10 = G + 0xff8;
		r.r11 = r.rsp;
		r.rdx = 0x4444000000004444UL | (u64)k << 16;
		r.r12 = 0x1212000000000000UL | k;
		r.r13 = 0x8000000000000000UL | k;
		r.r14 = (u64)k << 32;
		r.r15 = ~(u64)k;
		if (list_rsp) {
			r.rsp = LIST_RSP;
			r.r11 = r.rsp;
			r.rflags = LIST_RSP_RFLAGS;
		}
		vcpu_regs_set(c->vcpu, &r);
		res = run_outcome(c);
		if (list_rsp) {
			n = foreign_list_entries();
			unreadable += n < 0;
			if (n > 0 && !forged++)
				first_forged = k;
		}
		tally[res.o]++;
		if (res.o == O_SHUTDOWN)
			res.exits > 1 ? shutdown_io++ : shutdown_direct++;
		if (res.serviced)
			serviced++;
		if ((res.serviced || res.o == O_SWITCH) && !is_switch_offset(k))
			bad_switch++;
		if (!list1_clear(c)) {
			bad_list1++;
			if (first_bad == ~0u)
				first_bad = k;
		}
		if (res.o == O_OTHER && first_bad == ~0u)
			first_bad = k;
	}
	gettimeofday(&t1, NULL);
	memcpy(c->block, elisa_guest_block, sizeof(elisa_guest_block));

	ksft_print_msg("gate page, %u landings%s (%ld ms):\n", landings,
		       list_rsp ? " with RSP in the EPTP list" : "",
		       (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000);
	for (k = 0; k < O_NR; k++)
		ksft_print_msg("  %5u  %s%s\n", tally[k], outcome_name[k],
			       k == O_SHUTDOWN ? " (see below)" : "");
	ksft_print_msg("  shutdowns: %u directly, %u after an exit KVM completed first\n",
		       shutdown_direct, shutdown_io);
	ksft_print_msg("  service ran at %u landings; list[1] non-zero afterwards: %u\n",
		       serviced, bad_list1);
	/*
	 * The sweep ran against an open gate: the landings on the normal path switched and
	 * returned (5 in every boot so far), and nearly all others were refused or ended the
	 * run. A gate that never opened would make every VMFUNC a #UD the guest's handler
	 * steps over, each landing "elsewhere", and the checks below pass for nothing. All
	 * but at most 96 landings must be refused or ended (4000 of the 4096).
	 */
	want = landings > 96 ? landings - 96 : 1;
	opened = tally[O_SWITCH] >= 1 && tally[O_SHUTDOWN] + tally[O_REFUSAL] >= want;
	if (list_rsp) {
		CHECK(opened && !forged && !unreadable && !bad_list1, "r19_list_rsp_every_offset",
		      ": %u switches, %u refused or ended (want >= 1, >= %u of %u); %u landings "
		      "left other EPTP-list entries than 0 and 511 set (first at offset %#x), "
		      "debugfs unreadable %u times, list[1] set after %u", tally[O_SWITCH],
		      tally[O_SHUTDOWN] + tally[O_REFUSAL], want, landings, forged, first_forged,
		      unreadable, bad_list1);
		return;
	}
	CHECK(opened && !tally[O_OTHER] && !bad_list1 && !bad_switch && tally[O_SWITCH] <= 12,
	      "r19_every_offset",
	      ": %u switches, %u refused or ended (want >= 1, >= %u of %u); %u other outcomes, "
	      "%u with list[1] set, %u switches off the path (first bad offset %#x)",
	      tally[O_SWITCH], tally[O_SHUTDOWN] + tally[O_REFUSAL], want, landings,
	      tally[O_OTHER], bad_list1, bad_switch, first_bad);
}

static void tf_on_entry(struct ctx *c)
{
	/* The entry VMFUNC: after ENDBR64 (4 bytes) and XOR EAX,EAX (2). */
	struct kvm_regs r = reset(c, G + ELISA_CALL_ENTRY_OFFSET + 6);
	struct result res;

	r.rax = 0;
	r.rcx = 511;
	r.rflags = 0x102;
	vcpu_regs_set(c->vcpu, &r);
	res = run_outcome(c);
	CHECK(res.o == O_SHUTDOWN && !res.serviced && gprs_zero(&res.regs) && list1_clear(c),
	      "r16_tf", ": %s after %u exit(s) (first %u), rip %#llx, service ran %d",
	      outcome_name[res.o], res.exits, res.first_exit, res.regs.rip, res.serviced);
}

static void nmi_before(struct ctx *c)
{
	struct kvm_regs r = reset(c, STUB_CALL);
	struct result res;
	u64 n0;

	sync_global_from_guest(c->vm, nmi_count);
	n0 = nmi_count;
	vcpu_regs_set(c->vcpu, &r);
	vcpu_ioctl(c->vcpu, KVM_NMI, NULL);
	res = run_outcome(c);
	sync_global_from_guest(c->vm, nmi_count);
	CHECK(res.o == O_SWITCH && nmi_count == n0 + 1 && list1_clear(c), "r16_nmi_before",
	      ": %s, rax %#llx, NMIs delivered %lu", outcome_name[res.o], res.regs.rax,
	      (unsigned long)(nmi_count - n0));
}

/*
 * The vCPU's LAPIC timer, periodic every @ns nanoseconds with NMI as its delivery mode, or
 * stopped (@ns = 0). A guest cannot write the delivery mode of LVTT, but KVM_SET_LAPIC
 * copies the registers as they are, and KVM delivers an expired timer with the mode in
 * LVTT: an NMI that KVM itself queues, with no return to the VMM in between.
 */
static void lapic_timer_nmi(struct ctx *c, u32 ns)
{
	elisa_lapic_timer(c->vcpu, ns, APIC_LVT_TIMER_PERIODIC | APIC_DM_NMI);
}

static void nmi_in_sub(struct ctx *c)
{
	struct kvm_regs r = reset(c, STUB_CALL);
	struct result res;
	long fb0, fb1, vx0, vx1;
	u64 n0;

	sync_global_from_guest(c->vm, nmi_count);
	n0 = nmi_count;
	fb0 = elisa_vcpus_sum("failbacks");
	vx0 = elisa_vcpus_sum("view_exits");
	r.rdi = 10000000;	/* about 100 ms of spinning in the emulated host */
	r.rsi = SPIN_MAGIC;
	vcpu_regs_set(c->vcpu, &r);
	lapic_timer_nmi(c, 20000000);
	res = run_outcome(c);
	lapic_timer_nmi(c, 0);
	fb1 = elisa_vcpus_sum("failbacks");
	vx1 = elisa_vcpus_sum("view_exits");
	sync_global_from_guest(c->vm, nmi_count);
	ksft_print_msg("NMI in sub: %s, rax %#llx rdx %#llx, NMIs %lu, exits in the view %ld, "
		       "failbacks %ld\n", outcome_name[res.o], res.regs.rax, res.regs.rdx,
		       (unsigned long)(nmi_count - n0), vx1 - vx0, fb1 - fb0);
	CHECK(res.o == O_REFUSAL && (long)res.regs.rax == ELISA_CALL_ERR_INTERRUPTED &&
		      !res.regs.rcx && !res.regs.rsi && !res.regs.rdi && !res.regs.r8 &&
		      !res.serviced && nmi_count == n0 + 1 && vx1 > vx0 && fb1 == fb0 + 1 &&
		      list1_clear(c),
	      "r16_nmi_in_sub", ": %s, returned %lld, NMIs %lu, service ran %d",
	      outcome_name[res.o], (long long)res.regs.rax, (unsigned long)(nmi_count - n0),
	      res.serviced);
}

static void dr_case(struct ctx *c, const char *name, u64 addr, u64 dr7)
{
	struct kvm_debugregs d = c->dregs;
	struct kvm_regs r = reset(c, STUB_CALL);
	struct result res;

	d.db[0] = addr;
	d.dr7 = dr7;
	vcpu_debugregs_set(c->vcpu, &d);
	vcpu_regs_set(c->vcpu, &r);
	res = run_outcome(c);
	CHECK((res.o == O_REFUSAL || res.o == O_GUEST_EXC) && !res.serviced && list1_clear(c),
	      name, ": %s after %u exit(s) (first %u), rip %#llx, service ran %d",
	      outcome_name[res.o], res.exits, res.first_exit, res.regs.rip, res.serviced);
}

static void guest_debug_sub(struct ctx *c)
{
	struct kvm_guest_debug dbg = { 0 };
	struct kvm_regs r = reset(c, STUB_CALL);
	struct result res;

	dbg.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
	dbg.arch.debugreg[0] = G + 0x1040;
	dbg.arch.debugreg[7] = 0x401;
	vcpu_guest_debug_set(c->vcpu, &dbg);
	vcpu_regs_set(c->vcpu, &r);
	res = run_outcome(c);
	memset(&dbg, 0, sizeof(dbg));
	vcpu_guest_debug_set(c->vcpu, &dbg);
	CHECK(res.o == O_REFUSAL && !res.serviced && list1_clear(c),
	      "r16_guest_debug_sub", ": %s after %u exit(s) (first %u), rip %#llx, service ran %d",
	      outcome_name[res.o], res.exits, res.first_exit, res.regs.rip, res.serviced);
}

static void step(const char *s)
{
	ksft_print_msg("step %s\n", s);
	usleep(300000);
}

int main(void)
{
	struct ctx c;
	const char *stride = getenv("ELISA_GATE_STRIDE");
	struct result res;
	int l1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	if (stride) {
		char *end;
		unsigned long n = strtoul(stride, &end, 0);

		TEST_ASSERT(*stride && !*end && n >= 1 && n <= 4096,
			    "ELISA_GATE_STRIDE=%s: want a number from 1 to 4096", stride);
		gate_stride = n;
	}
	ksft_set_plan(9);
	setup(&c);

	res = normal_call(&c);
	TEST_ASSERT(res.o == O_SWITCH && res.serviced, "a plain call: outcome %d, rax %#llx",
		    res.o, res.regs.rax);

	step("tf");
	tf_on_entry(&c);
	step("nmi_before");
	nmi_before(&c);
	step("nmi_in_sub");
	nmi_in_sub(&c);
	step("dr");
	/* DR7: L0, R/W0 = 00 (execution), LEN0 = 00; bit 10 reads as 1. */
	dr_case(&c, "r16_dr_gate", G + 0x1000, 0x401);
	/* DR7: L0, R/W0 = 01 (write), LEN0 = 10 (8 bytes). */
	dr_case(&c, "r16_dr_list1", G + 8, 0x401 | 1 << 16 | 2 << 18);
	step("guest_debug");
	guest_debug_sub(&c);
	step("offsets");
	every_offset(&c, false);
	step("list_rsp");
	every_offset(&c, true);

	res = normal_call(&c);
	l1 = debugfs_list1();
	CHECK(res.o == O_SWITCH && res.serviced && list1_clear(&c) && l1 != 1, "after_all",
	      ": %s, rax %#llx, debugfs list[1] %s", outcome_name[res.o], res.regs.rax,
	      l1 < 0 ? "unreadable" : l1 ? "set" : "clear");
	ksft_finished();
}
