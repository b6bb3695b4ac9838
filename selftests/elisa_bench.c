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
 * in three configurations: no VM attached (elisa's probes are not registered), a VM that
 * is not attached while another one is, and an attached VM. The probes' cost per exit is
 * the vmcall row minus the vmcall row without any attached VM.
 *
 * Output: one KTAP result per sanity check (exit counts as expected), the table on
 * lines starting with "# BENCH", and one line "# BENCH-JSON {...}".
 */
#include "elisa_kvm.h"
#include "rm_guest.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"

#define REPS 3
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
	struct elisa_grant grant = { 0 };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int svc, evm, rep;
	u64 e0, i0, extra = 0;
	gpa_t gpa;
	double t;

	memset(code, 0xcc, sizeof(code));
	code[0] = 0xc3; /* ret */
	svc = elisa_service_page(dev, "elisa-bench-service", code, CALL_CODE_GVA, -1, 0);

	vm = vm_create_with_one_vcpu(&vcpu, call_guest);
	gpa = vm_phy_pages_alloc(vm, ELISA_GUEST_BLOCK_PAGES, 0x100000, 0);
	virt_map(vm, CALL_G, gpa, ELISA_GUEST_BLOCK_PAGES);
	memcpy(addr_gpa2hva(vm, gpa), elisa_guest_block, sizeof(elisa_guest_block));
	evm = attach(dev, vm->fd);
	TEST_ASSERT(evm >= 0, "attach: %s", strerror(errno));
	grant.service_fd = svc;
	grant.entry_gva = CALL_G;
	TEST_ASSERT(__elisa_ioctl(evm, ELISA_GRANT, &grant) == 0, "grant: %s", strerror(errno));

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

int main(void)
{
	static const char *const cfg_name[3] = { "none_attached", "other_attached", "attached" };
	struct result res[3];
	struct rm_vm a, b;
	int dev, fd, k, c;
	bool ok[3], ok_call;

	ksft_print_header();
	ksft_set_plan(4);
	TEST_REQUIRE(access(ELISA_DEV, F_OK) == 0);
	dev = elisa_open();
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
	for (c = 0; c < 3; c++)
		CHECK(ok[c], cfg_name[c], ": exits as expected");
	CHECK(ok_call, "elisa_call", ": %.3f exits per call", res[2].exits[CALL]);

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
	ksft_print_msg("BENCH probe cost per exit (vmcall row minus none_attached): other VM %.1f, attached VM %.1f ticks\n",
		       res[1].ticks[VMCALL] - res[0].ticks[VMCALL],
		       res[2].ticks[VMCALL] - res[0].ticks[VMCALL]);
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
	printf("}}\n");
	rm_vm_destroy(&a);
	rm_vm_destroy(&b);
	close(dev);
	ksft_finished();
}
