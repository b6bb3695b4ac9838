// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_bench: cost proxies in the emulated host, one table per boot (make bench).
 *
 * Not a pass/fail test of speed: in Bochs with "clock: sync=none" the guest TSC advances
 * one tick per emulated instruction, so guest rdtsc differences count the instructions
 * the host executes around each exit, exactly for exit-free loops and to within a few
 * percent for loops with exits. Each figure is the smallest of REPS runs.
 *
 * Rows (ticks per iteration; exits per iteration from KVM's "exits" and "pf_taken" stats:
 * a run must have exactly one exit per VMCALL and OUT, one HLT and KVM's page faults, so
 * the exit-free loops are shown with the exits nothing else explains):
 *   floor       a 4-instruction loop (2 NOPs)
 *   vmfunc      the same loop with VMFUNC(0,0) for one NOP (attached VM only)
 *   vmcall      VMCALL KVM_HC_VAPIC_POLL_IRQ, answered inside KVM: one exit round trip
 *   out         OUT to a port the VMM answers: an exit to user space and back
 *   elisa_call  elisa_call() to an empty service (its code is one RET), from a 64-bit
 *               kvm_util guest with one vCPU, attached and granted (attached column only):
 *               the whole loop iteration, the call's argument set-up and the loop's
 *               counter included; exits per iteration are "exits" less "irq_exits" (host
 *               interrupts) less the ucall that reports the figure
 * in three configurations: no VM attached (elisa's hook is not registered), a VM that
 * is not attached while another one is, and an attached VM. The hook's cost per exit is
 * the vmcall row minus the vmcall row without any attached VM.
 *
 * Then, for an attached and granted 64-bit guest:
 *   granted vmcall  the vmcall row of a 64-bit kvm_util guest, before its VM is attached
 *                 (no VM attached) and after attach and a grant of an empty service: the
 *                 entry probe then also decides whether the gate may open (CR4, DEBUGCTL,
 *                 DR7, ...), the cost a VM that uses elisa pays per exit
 *   exit in view  ticks per exit while the vCPU runs a loop of SPIN_ITERS iterations (2
 *                 instructions each), in the default view and inside the sub view (a
 *                 service that spins: each exit parks the call and the next entry resumes
 *                 it): (loop ticks - 2 * SPIN_ITERS - the call's own cost) / exits. The
 *                 exits are the guest's periodic LAPIC timer (1 ms), which KVM runs on
 *                 the VMX preemption timer: an asynchronous exit even with IF = 0 (a host
 *                 interrupt does not exit an IF = 0 guest in Bochs). IF stays 0 in the
 *                 guest, so the timer's interrupt is never delivered and the call resumes.
 *   two vCPUs     elisa_call() from two vCPUs of one VM, each on its own thread at once:
 *                 ticks per call of each (the smallest window of N_LOOP calls), exits
 *   grant         host TSC ticks (the host's instructions) of one ELISA_GRANT: 1, 2 and 8
 *                 vCPUs with a 2 MiB region of a memfd; 1 vCPU with 64 MiB, with 512 MiB
 *                 (8 such regions) and with 1 GiB (ELISA_REGION_MAX_SIZE): all mapped in
 *                 4 KiB leaves; and, from a hugetlb memfd of 2 MiB pages (mapped in 2 MiB
 *                 leaves), 2 MiB and 1 GiB to 1 vCPU and 1 GiB to 8. Its time in the
 *                 emulated host's clock too. With ELISA_BENCH_QUICK=1 (make check's boot)
 *                 the rows of more than 64 MiB in 4 KiB leaves are left out ("-").
 *
 *   switch        the elisa switch (Documentation/networking.rst): ticks of one XMIT call
 *                 per frame it sends, with a ring of 64 frames queued and with one frame,
 *                 for frames of 64 and 1514 bytes, from an attached 64-bit guest whose
 *                 port region is its memory; the host frees the receiver's ring after each
 *                 run. The frames are queued before the clock starts: the figure is the
 *                 call and the switch's checks and copy. Exits per frame besides the ucall.
 *
 * Output: one KTAP result per sanity check (exit counts as expected), the table on
 * lines starting with "# BENCH", and one line "# BENCH-JSON {...}".
 */
#include "elisa_kvm.h"
#include "elisa_hostile.h"
#include "rm_guest.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"
#include "elisa_net.h"

#define REPS 5
/* 2 MiB pages the grant rows use: 1 GiB, plus 2 MiB */
#define HUGE_POOL 513
/* the grant rows of huge pages, first */
#define N_HUGE_GRANTS 3
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)	/* linux/memfd.h: log2(2 MiB) << MFD_HUGE_SHIFT */
#endif
#define N_LOOP 1000
#define N_EXIT 200

asm(".pushsection .rodata\n"
    ".globl bench_guest, bench_guest_end\n"
    "bench_guest:\n"
    ".code16\n"
    "	xor %ax, %ax\n"
    "	mov %ax, %ds\n"
    /* touch the result page first, so that no EPT violation falls into a measurement */
    "	movl $0, 0x3000\n"
    "	rdtsc\n"
    "	mov %eax, 0x3000\n"
    "	mov $1000, %si\n"
    "1:	nop\n"
    "	nop\n"
    "	dec %si\n"
    "	jnz 1b\n"
    "	rdtsc\n"
    "	mov %eax, 0x3004\n"
    "	cmpb $0, 0x2ff0\n"
    "	je 3f\n"
    "	rdtsc\n"
    "	mov %eax, 0x3008\n"
    "	mov $1000, %si\n"
    "	xor %ecx, %ecx\n"
    "2:	xor %eax, %eax\n"
    "	vmfunc\n"
    "	dec %si\n"
    "	jnz 2b\n"
    "	rdtsc\n"
    "	mov %eax, 0x300c\n"
    "3:	rdtsc\n"
    "	mov %eax, 0x3010\n"
    "	mov $200, %si\n"
    "4:	mov $1, %eax\n"
    "	vmcall\n"
    "	dec %si\n"
    "	jnz 4b\n"
    "	rdtsc\n"
    "	mov %eax, 0x3014\n"
    "	rdtsc\n"
    "	mov %eax, 0x3018\n"
    "	mov $200, %si\n"
    "5:	out %al, $0x16\n"
    "	dec %si\n"
    "	jnz 5b\n"
    "	rdtsc\n"
    "	mov %eax, 0x301c\n"
    "	hlt\n"
    ".code64\n"
    "bench_guest_end:\n"
    ".popsection\n");
extern const uint8_t bench_guest[], bench_guest_end[];

enum { FLOOR, VMFUNC, VMCALL, OUT, CALL, NROWS };
static const char *const row_name[NROWS] = { "floor", "vmfunc", "vmcall", "out", "elisa_call" };

/* elisa_call: where the entry block and the empty service go in the 64-bit guest. */
#define CALL_G 0x500000000000UL
#define CALL_CODE_GVA 0x600000000000UL

struct result {
	double ticks[NROWS];	/* per iteration; < 0: not run */
	double exits[NROWS];
};

/* Runs the guest once; fills @res. Returns false on an unexpected exit. */
static bool run_once(struct rm_vm *v, bool vmfunc, struct result *res)
{
	uint32_t *t = (uint32_t *)(v->mem + 0x3000);
	int64_t e0, pf0, e_run, extra;
	int r;

	rm_vcpu_reset(v, 0);
	v->mem[0x2ff0] = vmfunc;
	e0 = rm_stat(v, 0, "exits");
	pf0 = rm_stat(v, 0, "pf_taken");
	for (;;) {
		r = rm_run(v, 0);
		if (r == 0x116)
			continue;
		break;
	}
	if (r != -2)
		return false;
	e_run = rm_stat(v, 0, "exits") - e0;
	/* exits not explained by the VMCALLs, OUTs, the HLT and KVM's page faults */
	extra = e_run - (2 * N_EXIT + 1) - (rm_stat(v, 0, "pf_taken") - pf0);
	res->ticks[FLOOR] = (double)(uint32_t)(t[1] - t[0]) / N_LOOP;
	res->ticks[VMFUNC] = vmfunc ? (double)(uint32_t)(t[3] - t[2]) / N_LOOP : -1;
	res->ticks[VMCALL] = (double)(uint32_t)(t[5] - t[4]) / N_EXIT;
	res->ticks[OUT] = (double)(uint32_t)(t[7] - t[6]) / N_EXIT;
	/* the loops without exits account for whatever the others do not */
	res->exits[FLOOR] = (double)extra / N_LOOP;
	res->exits[VMFUNC] = vmfunc ? (double)extra / N_LOOP : -1;
	res->exits[VMCALL] = 1;
	res->exits[OUT] = 1;
	res->ticks[CALL] = -1;
	res->exits[CALL] = -1;
	return extra == 0;
}

static bool measure(struct rm_vm *v, bool vmfunc, struct result *best)
{
	struct result r;
	int i, k;

	for (k = 0; k < NROWS; k++)
		best->ticks[k] = -1;
	for (i = 0; i < REPS; i++) {
		if (!run_once(v, vmfunc, &r))
			return false;
		for (k = 0; k < NROWS; k++)
			if (r.ticks[k] >= 0 && (best->ticks[k] < 0 || r.ticks[k] < best->ticks[k]))
				best->ticks[k] = r.ticks[k];
		memcpy(best->exits, r.exits, sizeof(r.exits));
	}
	return true;
}

static int attach(int dev, int vm_fd);
static int attach_grant(int dev, struct kvm_vm *vm, int svc);

static void call_guest(void)
{
	u64 t0, t1;
	int rep, i;

	for (rep = 0; rep < REPS; rep++) {
		t0 = rdtsc();
		for (i = 0; i < N_LOOP; i++)
			elisa_call(CALL_G, 511, 0, 0);
		t1 = rdtsc();
		GUEST_SYNC_ARGS(rep, t1 - t0, 0, 0, 0);
	}
	GUEST_DONE();
}

/*
 * The elisa_call row: an attached 64-bit guest granted an empty service. Fills the CALL
 * row of @res; returns false unless every call was exit-free.
 */
static bool measure_call(int dev, struct result *res)
{
	static u8 code[4096];
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int svc, evm, rep;
	u64 e0, i0, extra = 0;
	double t;

	memset(code, 0xcc, sizeof(code));
	code[0] = 0xc3; /* ret */
	svc = elisa_service_page(dev, "elisa-bench-service", code, CALL_CODE_GVA, -1, 0);

	vm = vm_create_with_one_vcpu(&vcpu, call_guest);
	evm = attach_grant(dev, vm, svc);

	res->ticks[CALL] = -1;
	for (rep = 0; rep < REPS; rep++) {
		e0 = elisa_vcpu_stat(vcpu, "exits");
		i0 = elisa_vcpu_stat(vcpu, "irq_exits");
		elisa_run_sync(vcpu, rep, &uc);
		/* the first run also takes KVM's page faults on guest memory: judge the others */
		extra = elisa_vcpu_stat(vcpu, "exits") - e0 - (elisa_vcpu_stat(vcpu, "irq_exits") - i0) - 1;
		t = (double)uc.args[2] / N_LOOP;
		if (res->ticks[CALL] < 0 || t < res->ticks[CALL])
			res->ticks[CALL] = t;
	}
	res->exits[CALL] = (double)extra / N_LOOP;
	kvm_vm_free(vm);
	close(evm);
	close(svc);
	return extra == 0;
}

static int attach(int dev, int vm_fd)
{
	struct elisa_attach_vm a = { .vm_fd = vm_fd };

	return __elisa_ioctl(dev, ELISA_ATTACH_VM, &a);
}

/* Maps the entry block at CALL_G in @vm, attaches it and grants @svc; returns the elisa-vm fd. */
static int attach_grant(int dev, struct kvm_vm *vm, int svc)
{
	struct elisa_grant grant = { 0 };
	int evm, err;

	evm = elisa_attach_grant(dev, vm, svc, CALL_G, elisa_guest_block, ELISA_GUEST_BLOCK_PAGES,
				 &grant, &err);
	TEST_ASSERT(err == 0, "grant: %s", strerror(err));
	return evm;
}

/* ---- exits of a granted vCPU ------------------------------------------------------------ */

/*
 * N_EXIT VMCALLs (KVM_HC_VAPIC_POLL_IRQ, answered inside KVM) per run: REPS runs before
 * attach, REPS after.
 */
static void vmcall_guest(void)
{
	u64 t0, t1, rax;
	int rep, i;

	for (rep = 0; rep < 2 * REPS; rep++) {
		t0 = rdtsc();
		for (i = 0; i < N_EXIT; i++) {
			rax = 1;
			asm volatile("vmcall" : "+a"(rax) : : "rbx", "rcx", "rdx", "rsi", "memory");
		}
		t1 = rdtsc();
		GUEST_SYNC_ARGS(rep, t1 - t0, 0, 0, 0);
	}
	GUEST_DONE();
}

/*
 * The least VMCALL round trip over the next REPS runs of @vcpu (stages @stage on); false on
 * an exit the loop does not explain.
 */
static bool vmcall_ticks(struct kvm_vcpu *vcpu, int stage, double *best)
{
	struct ucall uc;
	u64 e0, i0, extra = 0;
	double t;
	int rep;

	*best = -1;
	for (rep = 0; rep < REPS; rep++) {
		e0 = elisa_vcpu_stat(vcpu, "exits");
		i0 = elisa_vcpu_stat(vcpu, "irq_exits");
		elisa_run_sync(vcpu, stage + rep, &uc);
		/* the first run also takes KVM's page faults on guest memory: judge the others */
		if (rep)
			extra += elisa_vcpu_stat(vcpu, "exits") - e0 -
				 (elisa_vcpu_stat(vcpu, "irq_exits") - i0) - 1 - N_EXIT;
		t = (double)uc.args[2] / N_EXIT;
		if (*best < 0 || t < *best)
			*best = t;
	}
	return extra == 0;
}

/*
 * The vmcall row for a 64-bit guest with a gate (what a user of elisa runs): the same
 * guest's VMCALL round trip before attach (no VM attached) and after attach and a grant of
 * an empty service. Fills @ticks[0] and [1].
 */
static bool measure_granted_exits(int dev, double ticks[2])
{
	static u8 code[4096];
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int svc, evm;
	bool ok;

	memset(code, 0xcc, sizeof(code));
	code[0] = 0xc3; /* ret */
	svc = elisa_service_page(dev, "elisa-bench-granted", code, CALL_CODE_GVA, -1, 0);
	vm = vm_create_with_one_vcpu(&vcpu, vmcall_guest);
	/*
	 * No VM attached means no hook registered: elisa keeps it a second after the last
	 * detach (the rows before this one detached theirs).
	 */
	sleep(2);
	ok = vmcall_ticks(vcpu, 0, &ticks[0]);
	evm = attach_grant(dev, vm, svc);
	ok = vmcall_ticks(vcpu, REPS, &ticks[1]) && ok;
	kvm_vm_free(vm);
	close(evm);
	close(svc);
	return ok;
}

/* ---- exits inside the sub view ---------------------------------------------------------- */

#define SPIN_ITERS 2000000UL

/* Stage 0: the loop in the default view; stage 1: the same loop in the spinning service. */
static void spin_guest(void)
{
	u64 t0, t1, n;
	long r;
	int rep;

	for (rep = 0; rep < REPS; rep++) {
		n = SPIN_ITERS;
		t0 = rdtsc();
		asm volatile("1: dec %0\n\tjnz 1b" : "+r"(n));
		t1 = rdtsc();
		GUEST_SYNC_ARGS(0, t1 - t0, 0, 0, 0);
		t0 = rdtsc();
		r = elisa_call(CALL_G, 511, 0, 0);
		t1 = rdtsc();
		GUEST_SYNC_ARGS(1, t1 - t0, r, 0, 0);
	}
	GUEST_DONE();
}

struct view_exits {
	double ticks[2];	/* per exit: default view, sub view */
	u64 exits[2];		/* exits in the measured run (the ucall's not counted) */
	long ret;		/* the service's return value (not 0: failed back) */
};

/*
 * The exit-in-view rows: the smallest per-exit cost over REPS runs of each loop. @call is
 * the elisa_call row (the call's own ticks, taken off the service's loop).
 */
static bool measure_view_exits(int dev, double call, struct view_exits *ve)
{
	static u8 code[4096];
	static const u8 spin[] = {
		0xb9, SPIN_ITERS & 0xff, (SPIN_ITERS >> 8) & 0xff, (SPIN_ITERS >> 16) & 0xff,
		SPIN_ITERS >> 24,		/* mov $SPIN_ITERS, %ecx */
		0x48, 0xff, 0xc9,		/* 1: dec %rcx */
		0x75, 0xfb,			/* jnz 1b */
		0x31, 0xc0,			/* xor %eax, %eax */
		0xc3,				/* ret */
	};
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int svc, evm, rep, st;
	u64 e0, n;
	double t;

	memset(code, 0xcc, sizeof(code));
	memcpy(code, spin, sizeof(spin));
	svc = elisa_service_page(dev, "elisa-bench-spin", code, CALL_CODE_GVA, -1, 0);
	vm = vm_create_with_one_vcpu(&vcpu, spin_guest);
	evm = attach_grant(dev, vm, svc);
	elisa_lapic_timer(vcpu, 1000000, APIC_LVT_TIMER_PERIODIC | 0xec);
	ve->ticks[0] = ve->ticks[1] = -1;
	ve->ret = 0;
	/* the first run also takes KVM's page faults on guest memory: judge the others */
	for (rep = 0; rep < REPS; rep++) {
		for (st = 0; st < 2; st++) {
			e0 = elisa_vcpu_stat(vcpu, "exits");
			elisa_run_sync(vcpu, st, &uc);
			n = elisa_vcpu_stat(vcpu, "exits") - e0 - 1;
			if (st == 1 && uc.args[3])
				ve->ret = (long)uc.args[3];
			if (!rep || !n)
				continue;
			t = ((double)uc.args[2] - 2.0 * SPIN_ITERS - (st ? call : 0)) / n;
			if (ve->ticks[st] < 0 || t < ve->ticks[st]) {
				ve->ticks[st] = t;
				ve->exits[st] = n;
			}
		}
	}
	kvm_vm_free(vm);
	close(evm);
	close(svc);
	return ve->ticks[0] > 0 && ve->ticks[1] > 0 && !ve->ret;
}

/* ---- two vCPUs calling at once ------------------------------------------------------------ */

struct caller {
	struct kvm_vcpu *vcpu;
	double ticks;		/* per call, the smallest window */
	u64 extra;		/* exits other than host interrupts and the ucalls */
};

static void *caller_thread(void *arg)
{
	struct caller *c = arg;
	struct ucall uc;
	int rep;
	double t;

	c->ticks = -1;
	c->extra = 0;
	for (rep = 0; rep < REPS; rep++) {
		u64 e0 = elisa_vcpu_stat(c->vcpu, "exits");
		u64 i0 = elisa_vcpu_stat(c->vcpu, "irq_exits");

		elisa_run_sync(c->vcpu, rep, &uc);
		if (rep > 0)
			c->extra += elisa_vcpu_stat(c->vcpu, "exits") - e0 -
				    (elisa_vcpu_stat(c->vcpu, "irq_exits") - i0) - 1;
		t = (double)uc.args[2] / N_LOOP;
		if (c->ticks < 0 || t < c->ticks)
			c->ticks = t;
	}
	return NULL;
}

static bool measure_two_callers(int dev, struct caller c[2])
{
	static u8 code[4096];
	struct kvm_vcpu *vcpus[2];
	pthread_t th[2];
	struct kvm_vm *vm;
	int svc, evm, i;

	memset(code, 0xcc, sizeof(code));
	code[0] = 0xc3; /* ret */
	svc = elisa_service_page(dev, "elisa-bench-service2", code, CALL_CODE_GVA, -1, 0);
	vm = vm_create_with_vcpus(2, call_guest, vcpus);
	evm = attach_grant(dev, vm, svc);
	for (i = 0; i < 2; i++) {
		c[i].vcpu = vcpus[i];
		TEST_ASSERT(!pthread_create(&th[i], NULL, caller_thread, &c[i]), "pthread_create");
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	kvm_vm_free(vm);
	close(evm);
	close(svc);
	return !c[0].extra && !c[1].extra;
}

/* ---- the time of a grant ------------------------------------------------------------------ */

struct grant_case {
	const char *name;
	int vcpus;
	int regions;		/* of region_mib MiB each */
	u64 region_mib;
	bool huge;		/* a hugetlb memfd of 2 MiB pages: mapped in 2 MiB leaves */
	u64 ticks;		/* host TSC ticks of the ELISA_GRANT ioctl */
	double ms;		/* its emulated-clock time */
};

static void idle_guest(void)
{
	GUEST_DONE();
}

/* One grant of a service with @g->regions regions to a fresh VM of @g->vcpus vCPUs. */
static void measure_grant(int dev, struct grant_case *g)
{
	static u8 code[4096];
	struct elisa_create_service cs = { 0 };
	struct elisa_grant grant = { 0 };
	struct kvm_vcpu *vcpus[8];
	struct kvm_vm *vm;
	u64 bytes = g->region_mib << 20, t0;
	int memfd, code_fd, svc, evm, i, r;
	double m0;

	memset(code, 0xcc, sizeof(code));
	code[0] = 0xc3;
	memfd = memfd_create("elisa-bench-region", MFD_CLOEXEC | MFD_ALLOW_SEALING |
			     (g->huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
	TEST_ASSERT(memfd >= 0 && ftruncate(memfd, bytes * g->regions) == 0, "memfd %s: %s",
		    g->name, strerror(errno));
	TEST_ASSERT(fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "F_SEAL_SHRINK");
	code_fd = memfd_page("elisa-bench-code", code);
	cs.code_fd = code_fd;
	cs.code_size = 4096;
	cs.code_gva = CALL_CODE_GVA;
	cs.nr_regions = g->regions;
	for (i = 0; i < g->regions; i++) {
		struct elisa_create_region cr = {
			.fd = memfd, .offset = i * bytes, .length = bytes,
		};

		cs.regions[i].region_fd = elisa_ioctl(dev, ELISA_CREATE_REGION, &cr);
		cs.regions[i].access = ELISA_ACCESS_READ | ELISA_ACCESS_WRITE;
		cs.regions[i].gva = CALL_CODE_GVA + (1UL << 30) + i * bytes;
	}
	svc = elisa_ioctl(dev, ELISA_CREATE_SERVICE, &cs);
	for (i = 0; i < g->regions; i++)
		close(cs.regions[i].region_fd);
	close(code_fd);
	close(memfd);

	vm = vm_create_with_vcpus(g->vcpus, idle_guest, vcpus);
	evm = elisa_attach_block(dev, vm, CALL_G, elisa_guest_block, ELISA_GUEST_BLOCK_PAGES);
	grant.service_fd = svc;
	grant.entry_gva = CALL_G;
	m0 = now_ms();
	t0 = rdtsc();
	r = __elisa_ioctl(evm, ELISA_GRANT, &grant);
	g->ticks = rdtsc() - t0;
	g->ms = now_ms() - m0;
	TEST_ASSERT(r == 0 && grant.nr_vcpus == (u32)g->vcpus, "grant %s: %s", g->name,
		    strerror(errno));
	kvm_vm_free(vm);
	close(evm);
	close(svc);
}

/* ---- the switch ---------------------------------------------------------------------------- */

static u64 g_nb_frames, g_nb_len;

/* Queues g_nb_frames frames of g_nb_len bytes from port 0 to port 1, then times one XMIT. */
static void net_bench_guest(void)
{
	struct elisa_net_port *p = (struct elisa_net_port *)NET_PORT_GVA;

	for (;;) {
		u64 n = READ_ONCE(g_nb_frames), len = READ_ONCE(g_nb_len), t0, t1, i, b;
		u32 prod = READ_ONCE(p->tx.prod);
		long r;

		for (i = 0; i < n; i++, prod++) {
			struct elisa_net_slot *sl = net_guest_slot(0, prod);

			for (b = 0; b < 6; b++) {
				sl->data[b] = (u8)(net_mac(1) >> (8 * b));
				sl->data[6 + b] = (u8)(net_mac(0) >> (8 * b));
			}
			sl->len = (u32)len;
		}
		WRITE_ONCE(p->tx.prod, prod);
		t0 = rdtsc();
		r = elisa_call(CALL_G, 511, ELISA_NET_OP_XMIT, 0);
		t1 = rdtsc();
		GUEST_SYNC_ARGS(1, t1 - t0, r, 0, 0);
	}
}

struct net_bench {
	double ticks[2][2];	/* [64 or 1514 bytes][64 frames or 1 per call], per frame */
	u64 extra;		/* exits besides the ucalls and host interrupts */
	bool sent;		/* every call sent what was queued, delivered */
};

static bool measure_switch(int dev, struct net_bench *nb)
{
	static const u64 lens[2] = { 64, 1514 }, batches[2] = { ELISA_NET_RING_SLOTS, 1 };
	struct net_port ports[2];
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int evm, l, b, rep;
	u64 x, delivered0;
	double t;

	net_port_setup(dev, &ports[0], 0, 2);
	net_port_setup(dev, &ports[1], 1, 2);
	net_service_create(dev, ports, 0, 2);
	ports[1].service = -1;
	vm = vm_create_with_one_vcpu(&vcpu, net_bench_guest);
	net_port_map(vm, &ports[0]);
	evm = attach_grant(dev, vm, ports[0].service);
	nb->extra = 0;
	nb->sent = true;
	for (l = 0; l < 2; l++) {
		for (b = 0; b < 2; b++) {
			g_nb_len = lens[l];
			g_nb_frames = batches[b];
			sync_global_to_guest(vm, g_nb_len);
			sync_global_to_guest(vm, g_nb_frames);
			nb->ticks[l][b] = -1;
			/* the first run faults in the guest's ring pages: not counted */
			for (rep = 0; rep <= REPS; rep++) {
				delivered0 = ports[0].cfg->stats[ELISA_NET_STAT_TX_DELIVERED];
				x = elisa_sync_exits(vcpu, 1, &uc);
				nb->sent = nb->sent && uc.args[3] == batches[b] &&
					   ports[0].cfg->stats[ELISA_NET_STAT_TX_DELIVERED] ==
					   delivered0 + batches[b];
				/* the host takes the receiver's place */
				ports[1].hdr->rx[0].cons = ports[1].hdr->rx[0].prod;
				if (!rep)
					continue;
				nb->extra += x - 1;
				t = (double)uc.args[2] / batches[b];
				if (nb->ticks[l][b] < 0 || t < nb->ticks[l][b])
					nb->ticks[l][b] = t;
			}
		}
	}
	kvm_vm_free(vm);
	close(evm);
	net_port_free(&ports[0]);
	net_port_free(&ports[1]);
	return nb->sent && !nb->extra;
}

int main(void)
{
	static const char *const cfg_name[3] = { "none_attached", "other_attached", "attached" };
	struct result res[3];
	struct rm_vm a, b;
	int dev, fd, k, c;
	bool ok[3], ok_call;

	struct grant_case grants[] = {
		/* first, while the pool of huge pages is reserved (HUGE_POOL) */
		{ "1 vcpu, 2 MiB huge", 1, 1, 2, true, 0, 0 },
		{ "1 vcpu, 1 GiB huge", 1, 1, 1024, true, 0, 0 },
		{ "8 vcpus, 1 GiB huge", 8, 1, 1024, true, 0, 0 },
		{ "1 vcpu, 2 MiB", 1, 1, 2, false, 0, 0 },
		{ "2 vcpus, 2 MiB", 2, 1, 2, false, 0, 0 },
		{ "8 vcpus, 2 MiB", 8, 1, 2, false, 0, 0 },
		{ "1 vcpu, 64 MiB", 1, 1, 64, false, 0, 0 },
		{ "1 vcpu, 8 x 64 MiB", 1, 8, 64, false, 0, 0 },
		{ "1 vcpu, 1 GiB", 1, 1, 1024, false, 0, 0 },
	};
	struct view_exits ve;
	struct caller callers[2];
	bool ok_ve, ok_two, ok_net, ok_granted;
	double granted[2];
	struct net_bench nb;
	unsigned int g;
	long huge_old;
	bool quick = getenv("ELISA_BENCH_QUICK") && !strcmp(getenv("ELISA_BENCH_QUICK"), "1");

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(8);
	dev = elisa_open();
	/* the huge pages of the grant rows, reserved first, while memory is not fragmented */
	huge_old = elisa_nr_hugepages(-1);
	TEST_ASSERT(huge_old >= 0 && elisa_nr_hugepages(huge_old + HUGE_POOL) == huge_old + HUGE_POOL,
		    "vm.nr_hugepages: %ld (CONFIG_HUGETLBFS?)", huge_old);
	rm_vm_create(&a, bench_guest, bench_guest_end - bench_guest);
	rm_vcpu_add(&a);
	rm_vm_create(&b, bench_guest, bench_guest_end - bench_guest);
	rm_vcpu_add(&b);

	ok[0] = measure(&a, false, &res[0]);
	fd = attach(dev, b.vm);
	TEST_ASSERT(fd >= 0, "attach: %s", strerror(errno));
	ok[1] = measure(&a, false, &res[1]);
	ok[2] = measure(&b, true, &res[2]);
	close(fd);
	res[0].ticks[CALL] = res[1].ticks[CALL] = -1;
	ok_call = measure_call(dev, &res[2]);
	ok_granted = measure_granted_exits(dev, granted);
	ok_ve = measure_view_exits(dev, res[2].ticks[CALL], &ve);
	ok_two = measure_two_callers(dev, callers);
	for (g = 0; g < ARRAY_SIZE(grants); g++) {
		if (g == N_HUGE_GRANTS && huge_old >= 0)
			elisa_nr_hugepages(huge_old);
		/* make check's boot: only the rows that take a second or less */
		if (quick && grants[g].regions * grants[g].region_mib > 64 && !grants[g].huge) {
			grants[g].ticks = 0;
			grants[g].ms = -1;
			continue;
		}
		measure_grant(dev, &grants[g]);
	}
	ok_net = measure_switch(dev, &nb);
	for (c = 0; c < 3; c++)
		CHECK(ok[c], cfg_name[c], ": exits as expected");
	CHECK(ok_call, "elisa_call", ": %.3f exits per call", res[2].exits[CALL]);
	CHECK(ok_granted, "granted_vmcall", ": one exit per VMCALL");
	CHECK(ok_ve, "exit_in_view", ": %lu exits in the default view, %lu in the sub view; "
	      "service returned %ld", ve.exits[0], ve.exits[1], ve.ret);
	CHECK(ok_two, "two_vcpus", ": %lu and %lu exits besides host interrupts",
	      callers[0].extra, callers[1].extra);
	CHECK(ok_net, "switch", ": every frame delivered %d, %lu exits besides the ucalls",
	      nb.sent, (unsigned long)nb.extra);

	ksft_print_msg("BENCH %-10s %16s %16s %16s  %s\n", "row", cfg_name[0], cfg_name[1],
		       cfg_name[2], "exits/iter");
	for (k = 0; k < NROWS; k++) {
		char cell[3][32];

		for (c = 0; c < 3; c++)
			if (res[c].ticks[k] < 0)
				snprintf(cell[c], sizeof(cell[c]), "-");
			else
				snprintf(cell[c], sizeof(cell[c]), "%.3f", res[c].ticks[k]);
		ksft_print_msg("BENCH %-10s %16s %16s %16s  %.3f\n", row_name[k], cell[0], cell[1],
			       cell[2], res[2].exits[k]);
	}
	{
		char hook[32];

		if (!elisa_module_param("entry_hook", hook, sizeof(hook)))
			snprintf(hook, sizeof(hook), "?");
		ksft_print_msg("BENCH hook cost per exit (vmcall row minus none_attached; entry hook: %s): other VM %.1f, attached VM %.1f ticks\n",
			       hook, res[1].ticks[VMCALL] - res[0].ticks[VMCALL],
			       res[2].ticks[VMCALL] - res[0].ticks[VMCALL]);
	}
	ksft_print_msg("BENCH vmcall of a granted 64-bit guest: %.1f before attach, %.1f attached and granted (+%.1f per exit)\n",
		       granted[0], granted[1], granted[1] - granted[0]);
	ksft_print_msg("BENCH exit in view (attached, LAPIC timer during a loop): default view %.1f, sub view %.1f ticks per exit\n",
		       ve.ticks[0], ve.ticks[1]);
	ksft_print_msg("BENCH two vcpus calling at once: %.3f and %.3f ticks per call (one alone: %.3f)\n",
		       callers[0].ticks, callers[1].ticks, res[2].ticks[CALL]);
	ksft_print_msg("BENCH %-22s %14s %10s\n", "grant", "host ticks", "ms");
	for (g = 0; g < ARRAY_SIZE(grants); g++)
		if (grants[g].ms < 0)
			ksft_print_msg("BENCH %-22s %14s %10s\n", grants[g].name, "-", "(quick)");
		else
			ksft_print_msg("BENCH %-22s %14lu %10.1f\n", grants[g].name,
				       grants[g].ticks, grants[g].ms);
	ksft_print_msg("BENCH %-22s %14s %14s\n", "switch (ticks/frame)", "64 per call", "1 per call");
	ksft_print_msg("BENCH %-22s %14.1f %14.1f\n", "64-byte frames", nb.ticks[0][0], nb.ticks[0][1]);
	ksft_print_msg("BENCH %-22s %14.1f %14.1f\n", "1514-byte frames", nb.ticks[1][0], nb.ticks[1][1]);
	ksft_print_msg("BENCH switch: %lu exits besides the ucalls and host interrupts, for %d frames\n",
		       (unsigned long)nb.extra, REPS * (ELISA_NET_RING_SLOTS + 1) * 2);
	printf("# BENCH-JSON {\"unit\": \"guest rdtsc ticks per iteration (Bochs: emulated instructions)\"");
	for (c = 0; c < 3; c++) {
		printf(", \"%s\": {", cfg_name[c]);
		for (k = 0; k < NROWS; k++)
			printf("%s\"%s\": %.3f", k ? ", " : "", row_name[k], res[c].ticks[k]);
		printf("}");
	}
	printf(", \"exits_per_iter\": {");
	for (k = 0; k < NROWS; k++)
		printf("%s\"%s\": %.3f", k ? ", " : "", row_name[k], res[2].exits[k]);
	printf("}, \"granted_vmcall\": {\"none_attached\": %.3f, \"granted\": %.3f}", granted[0],
	       granted[1]);
	printf(", \"exit_in_view\": {\"default\": %.1f, \"sub\": %.1f}", ve.ticks[0], ve.ticks[1]);
	printf(", \"two_vcpus\": [%.3f, %.3f]", callers[0].ticks, callers[1].ticks);
	printf(", \"grant_host_ticks\": {");
	for (g = 0; g < ARRAY_SIZE(grants); g++)
		printf("%s\"%s\": %lu", g ? ", " : "", grants[g].name, grants[g].ticks);
	printf("}, \"switch_ticks_per_frame\": {\"64B_batch\": %.1f, \"64B_single\": %.1f, "
	       "\"1514B_batch\": %.1f, \"1514B_single\": %.1f}", nb.ticks[0][0], nb.ticks[0][1],
	       nb.ticks[1][0], nb.ticks[1][1]);
	printf("}\n");
	rm_vm_destroy(&a);
	rm_vm_destroy(&b);
	close(dev);
	ksft_finished();
}
