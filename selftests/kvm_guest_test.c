// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_guest_test: long-mode guests on the KVM selftest library, their exits counted by
 * KVM's binary statistics, and VMFUNC in VMs that elisa does not know.
 *
 * A VM with one vCPU runs guest_code(), then a VM with two vCPUs runs guest_code_smp().
 * Exit counts are deltas of the vCPU's statistics between two ucalls; "exits" less
 * "irq_exits" leaves out the host's own interrupts, which may land anywhere.
 *  1. guest_runs: the guest reaches GUEST_SYNC(1), after a first run of the loop (which
 *     maps its code and stack pages, so that the next run takes no EPT violation)
 *  2. loop_exit_free: 1000 iterations of arithmetic and RDTSC between GUEST_SYNC(1) and
 *     GUEST_SYNC(2) take exactly one exit, the ucall's I/O exit (exits - irq_exits == 1,
 *     io_exits == 1, halt_exits == 0, insn_emulation == 0); the TSC never went back
 *  3. vmfunc_ud: VMFUNC(0, 0) raises #UD inside the guest, whose handler records vector
 *     6 at the VMFUNC's RIP and resumes after it; vmfunc_safe(0, 0) returns UD_VECTOR
 *  4. vmfunc_no_user_exit: neither VMFUNC reaches userspace (io_exits == 1, the ucall).
 *     VMFUNC is off in the VM's controls, so the CPU raises #UD without a VMFUNC exit.
 *     KVM intercepts #UD on VMX and hands it to its emulator, which cannot decode
 *     VMFUNC and reinjects #UD: every other exit is such an emulation
 *     (exits - irq_exits - 1 == insn_emulation <= 2), and nothing warns (checked by
 *     the runner's kernel-log verdict, and by case 5 on any host)
 *  5. host_fine: the guest reaches GUEST_DONE, the VM's statistics read (its EPT maps
 *     pages), and the kernel warned no more (/sys/kernel/warn_count)
 *  6. two_vcpus: vm_create_with_vcpus(2): each vCPU runs the loop and gets UD_VECTOR
 *     from vmfunc_safe(0, 0), with its own statistics: io_exits == 2 (a sync, a done)
 *  7. run_interrupted: elisa_vcpu_run_raw() and the kick helpers. A guest spins on a
 *     counter, with IF = 1, until the host sets a flag. Twice, SIGUSR1 from a second thread after
 *     KICK_DELAY_US ends a raw KVM_RUN: -EINTR, exit reason KVM_EXIT_INTR, one more
 *     signal_exits, no ucall, and the counter moved (the guest ran, and after the first
 *     interruption went on where it was). A kick sent before KVM_RUN stays pending: the
 *     run returns -EINTR at once, the counter unchanged. Then the flag is set and the
 *     guest reaches GUEST_DONE through ordinary runs.
 */
#include "elisa_kvm.h"

#define LOOP_ITERATIONS 1000
#define TAINT_WARN (1UL << 9)

/* Exit-free work: arithmetic and RDTSC, which KVM does not intercept. */
static u64 guest_loop(u64 x)
{
	u64 t, last = 0;
	int i;

	for (i = 0; i < LOOP_ITERATIONS; i++) {
		t = rdtsc();
		GUEST_ASSERT(t >= last);
		last = t;
		x = x * 6364136223846793005ULL + (t | 1);
	}
	return x;
}

static void guest_code(void)
{
	u64 x, t0, t1;

	/* First runs: map the loop's pages and the #UD path's (IDT, handler, stack). */
	x = guest_loop(1);
	vmfunc(0, 0);
	GUEST_ASSERT_EQ(READ_ONCE(elisa_guest_ud.count), 1);
	GUEST_SYNC(1);

	t0 = rdtsc();
	x = guest_loop(x);
	t1 = rdtsc();
	GUEST_SYNC_ARGS(2, x, t1 - t0, 0, 0);

	vmfunc(0, 0);
	GUEST_ASSERT_EQ(READ_ONCE(elisa_guest_ud.count), 2);
	GUEST_ASSERT_EQ(READ_ONCE(elisa_guest_ud.vector), UD_VECTOR);
	GUEST_ASSERT_EQ(vmfunc_safe(0, 0), UD_VECTOR);
	GUEST_ASSERT_EQ(READ_ONCE(elisa_guest_ud.count), 2);
	GUEST_SYNC(3);
	GUEST_DONE();
}

/*
 * Case 7: the guest counts until the host sets spin_stop, with IF = 1: in the emulated
 * host a guest with IF = 0 takes no external-interrupt exit (design.rst), so the host
 * would never get its CPU back to send or notice the signal. No interrupt is ever
 * injected into this guest.
 */
#define KICK_DELAY_US 50000
static u64 spin_count, spin_stop;

static void guest_spin(void)
{
	GUEST_SYNC(1);
	sti();
	while (!READ_ONCE(spin_stop))
		WRITE_ONCE(spin_count, READ_ONCE(spin_count) + 1);
	cli();
	GUEST_DONE();
}

static void guest_code_smp(u64 id)
{
	u64 x = guest_loop(id);
	u8 vector = vmfunc_safe(0, 0);

	GUEST_SYNC_ARGS(1, id, x, vector, 0);
	GUEST_DONE();
}

struct exits {
	u64 exits, irq_exits, io_exits, halt_exits, insn_emulation;
};

static struct exits read_exits(struct kvm_vcpu *vcpu)
{
	return (struct exits){
		.exits = elisa_vcpu_stat(vcpu, "exits"),
		.irq_exits = elisa_vcpu_stat(vcpu, "irq_exits"),
		.io_exits = elisa_vcpu_stat(vcpu, "io_exits"),
		.halt_exits = elisa_vcpu_stat(vcpu, "halt_exits"),
		.insn_emulation = elisa_vcpu_stat(vcpu, "insn_emulation"),
	};
}

static struct exits exits_since(struct kvm_vcpu *vcpu, const struct exits *a)
{
	struct exits b = read_exits(vcpu);

	return (struct exits){
		.exits = b.exits - a->exits - (b.irq_exits - a->irq_exits),
		.irq_exits = b.irq_exits - a->irq_exits,
		.io_exits = b.io_exits - a->io_exits,
		.halt_exits = b.halt_exits - a->halt_exits,
		.insn_emulation = b.insn_emulation - a->insn_emulation,
	};
}

#define EXITS_FMT ": exits %lu (+%lu irq), io %lu, halt %lu, insn_emulation %lu"
#define EXITS_ARGS(d) (unsigned long)(d).exits, (unsigned long)(d).irq_exits, \
	(unsigned long)(d).io_exits, (unsigned long)(d).halt_exits,         \
	(unsigned long)(d).insn_emulation

/* WARN()s so far: /sys/kernel/warn_count, or else whether the kernel is tainted W. */
static long warnings(void)
{
	FILE *f = fopen("/sys/kernel/warn_count", "r");
	bool count = f;
	long n = -1;

	if (!f)
		f = fopen("/proc/sys/kernel/tainted", "r");
	TEST_ASSERT(f, "open /sys/kernel/warn_count or /proc/sys/kernel/tainted");
	if (fscanf(f, "%ld", &n) != 1)
		n = -1;
	fclose(f);
	TEST_ASSERT(n >= 0, "read the kernel's warning count");
	return count ? n : !!(n & TAINT_WARN);
}

static void test_one_vcpu(void)
{
	long warned = warnings();
	struct exits e, d;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	u64 mapped;
	u8 *insn;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	elisa_install_ud_handler(vm);

	/* Stage 1 is reached only after the guest's loop and its first VMFUNC's #UD. */
	elisa_run_ucall(vcpu, &uc);
	sync_global_from_guest(vm, elisa_guest_ud);
	CHECK(uc.cmd == UCALL_SYNC && uc.args[1] == 1 && elisa_guest_ud.count == 1 &&
		      elisa_guest_ud.vector == UD_VECTOR,
	      "guest_runs", ": ucall %lu stage %lu, #UD count %lu vector %lu",
	      (unsigned long)uc.cmd, (unsigned long)uc.args[1],
	      (unsigned long)elisa_guest_ud.count, (unsigned long)elisa_guest_ud.vector);

	e = read_exits(vcpu);
	elisa_run_sync(vcpu, 2, &uc);
	d = exits_since(vcpu, &e);
	ksft_print_msg("loop of %d: %lu TSC cycles" EXITS_FMT "\n", LOOP_ITERATIONS,
		       (unsigned long)uc.args[3], EXITS_ARGS(d));
	CHECK(d.exits == 1 && d.io_exits == 1 && !d.halt_exits && !d.insn_emulation &&
		      uc.args[3] > 0,
	      "loop_exit_free", EXITS_FMT, EXITS_ARGS(d));

	e = read_exits(vcpu);
	elisa_run_sync(vcpu, 3, &uc);
	d = exits_since(vcpu, &e);
	sync_global_from_guest(vm, elisa_guest_ud);
	insn = addr_gva2hva(vm, elisa_guest_ud.rip);
	CHECK(elisa_guest_ud.count == 2 && elisa_guest_ud.vector == UD_VECTOR && insn[0] == 0x0f &&
		      insn[1] == 0x01 && insn[2] == 0xd4,
	      "vmfunc_ud", ": %lu #UD, vector %lu at RIP %#lx",
	      (unsigned long)elisa_guest_ud.count, (unsigned long)elisa_guest_ud.vector,
	      (unsigned long)elisa_guest_ud.rip);
	ksft_print_msg("two VMFUNCs" EXITS_FMT "\n", EXITS_ARGS(d));
	CHECK(d.io_exits == 1 && !d.halt_exits && d.exits == 1 + d.insn_emulation &&
		      d.insn_emulation <= 2,
	      "vmfunc_no_user_exit", EXITS_FMT, EXITS_ARGS(d));

	TEST_ASSERT_EQ(elisa_run_ucall(vcpu, &uc), UCALL_DONE);
	mapped = elisa_vm_stat(vm, "pages_4k") + elisa_vm_stat(vm, "pages_2m") +
		 elisa_vm_stat(vm, "pages_1g");
	CHECK(mapped > 0 && warnings() == warned, "host_fine",
	      ": %lu pages mapped, kernel warnings %ld -> %ld", (unsigned long)mapped, warned,
	      warnings());
	kvm_vm_free(vm);
}

static void test_two_vcpus(void)
{
	struct kvm_vcpu *vcpus[2];
	struct exits e[2], d[2];
	struct kvm_vm *vm;
	struct ucall uc;
	bool ok = true;
	int i;

	vm = vm_create_with_vcpus(2, guest_code_smp, vcpus);
	for (i = 0; i < 2; i++) {
		vcpu_args_set(vcpus[i], 1, (u64)i);
		e[i] = read_exits(vcpus[i]);
	}
	/* One vCPU at a time from this thread: each KVM_RUN ends at a ucall. */
	for (i = 0; i < 2; i++) {
		elisa_run_sync(vcpus[i], 1, &uc);
		ok &= uc.args[2] == (u64)i && uc.args[4] == UD_VECTOR;
	}
	for (i = 0; i < 2; i++) {
		ok &= elisa_run_ucall(vcpus[i], &uc) == UCALL_DONE;
		d[i] = exits_since(vcpus[i], &e[i]);
		ok &= d[i].io_exits == 2;
		ksft_print_msg("vCPU %d" EXITS_FMT "\n", i, EXITS_ARGS(d[i]));
	}
	CHECK(ok, "two_vcpus", ": io_exits %lu and %lu", (unsigned long)d[0].io_exits,
	      (unsigned long)d[1].io_exits);
	kvm_vm_free(vm);
}

/* One raw KVM_RUN of the spinning guest, kicked after KICK_DELAY_US or, @pending, before it. */
static bool kicked_run(struct kvm_vm *vm, struct kvm_vcpu *vcpu, bool pending, u64 *count)
{
	u64 sig0 = elisa_vcpu_stat(vcpu, "signal_exits"), before, sigs;
	struct elisa_kick kick = { 0 };
	u32 reason;
	int r;

	sync_global_from_guest(vm, spin_count);
	before = spin_count;
	elisa_kick_start(&kick, pthread_self(), pending ? 0 : KICK_DELAY_US);
	if (pending)
		elisa_kick_join(&kick);
	r = elisa_vcpu_run_raw(vcpu);
	reason = vcpu->run->exit_reason;
	elisa_kick_end(&kick);
	sync_global_from_guest(vm, spin_count);
	*count = spin_count;
	sigs = elisa_vcpu_stat(vcpu, "signal_exits") - sig0;
	ksft_print_msg("%s kick: KVM_RUN %d (%s), exit reason %u, signal_exits +%lu, count %lu -> %lu\n",
		       pending ? "pending" : "delayed", r, r ? strerror(-r) : "ok", reason,
		       (unsigned long)sigs, (unsigned long)before, (unsigned long)*count);
	return r == -EINTR && reason == KVM_EXIT_INTR && sigs == 1 &&
	       (pending ? *count == before : *count > before);
}

static void test_run_interrupted(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	u64 c1, c2, c3;
	bool ok;

	vm = vm_create_with_one_vcpu(&vcpu, guest_spin);
	elisa_kick_setup(vcpu);
	elisa_run_sync(vcpu, 1, &uc);
	ok = kicked_run(vm, vcpu, false, &c1);
	ok &= kicked_run(vm, vcpu, false, &c2);
	ok &= kicked_run(vm, vcpu, true, &c3);
	spin_stop = 1;
	sync_global_to_guest(vm, spin_stop);
	ok &= elisa_run_ucall(vcpu, &uc) == UCALL_DONE;
	CHECK(ok, "run_interrupted", ": counts %lu, %lu, %lu", (unsigned long)c1,
	      (unsigned long)c2, (unsigned long)c3);
	kvm_vm_free(vm);
}

int main(void)
{
	ksft_print_header();
	ksft_set_plan(7);
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_BINARY_STATS_FD));
	test_one_vcpu();
	test_two_vcpus();
	test_run_interrupted();
	ksft_finished();
}
