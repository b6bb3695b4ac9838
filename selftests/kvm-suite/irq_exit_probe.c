// SPDX-License-Identifier: GPL-2.0
/*
 * irq_exit_probe: does a host interrupt end a guest that runs with RFLAGS.IF = 0? A
 * diagnostic of the host, not a selftest of elisa: make check and make check-kvm do not
 * run it. Run it by hand, in the emulated host
 *
 *	tools/testvm/run.sh --cpus 1 --nested 0 --add selftests/out/kvm-suite \
 *		kvm-suite/irq_exit_probe
 *
 * or on any host with /dev/kvm (it is a static binary).
 *
 * KVM runs every guest with the pin-based "external-interrupt exiting" control, so on
 * VT-x a host interrupt (the scheduler's tick) exits the guest whatever the guest's IF;
 * the guest itself is never interrupted (nothing is injected into it). One vCPU spins
 * on RDTSC for TICKS ticks (default 2e9, the wait of the kernel's xapic_ipi_test), three
 * times, and the vCPU's binary statistics are read around each spin:
 *   if0          IF = 0 throughout, as the library's guests start and as the guest was
 *                entered
 *   if1          STI, the spin, CLI
 *   if0_sti_cli  STI; CLI once inside the guest, then the spin with IF = 0
 * Each line gives exits (less irq_exits and the ucall's own exit), irq_exits,
 * halt_exits, the host's local timer interrupts (LOC of /proc/interrupts, all CPUs)
 * and the host time the spin took. A warm-up round (1000 ticks) first maps the
 * guest's pages.
 *
 * KTAP, 3 results. Only "if1" asserts something: it took at least one exit besides its
 * ucall (the tick exits a guest with IF = 1 on any host; KVM nested on another
 * hypervisor may count those exits under another reason than irq_exits); "if0" and
 * "if0_sti_cli" are measurements and pass whatever they count, so that the probe means
 * the same on real hardware and in Bochs. Expected:
 * real VT-x: irq_exits > 0 in all three, about HZ per second of spin. Bochs 2.7: 0 for
 * if0, 1 for if0_sti_cli (Bochs re-evaluates its interrupt mask at VM entry before it is
 * in VMX non-root mode, so with the guest's IF = 0 external interrupts stay masked; a
 * CLI inside the guest unmasks them until the next VM entry), about HZ per second for
 * if1 (Documentation/testing.rst, "xapic_ipi_test in the emulated host").
 *
 *   irq_exit_probe [TICKS]
 */
#include "elisa_kvm.h"

#define RUN_ALARM_S 120

static u64 ticks;

static void guest_spin(void)
{
	u64 t0 = rdtsc();

	while (rdtsc() - t0 < READ_ONCE(ticks))
		;
}

static void guest_code(void)
{
	for (;;) {
		GUEST_SYNC(1);
		guest_spin();
		GUEST_SYNC(2);
		sti();
		guest_spin();
		cli();
		GUEST_SYNC(3);
		sti();
		cli();
		guest_spin();
		GUEST_SYNC(4);
	}
}

struct counts {
	u64 exits, irq_exits, halt_exits, loc;
	double secs;
};

/* The LOC line of /proc/interrupts, summed over the CPUs. */
static u64 local_timer_irqs(void)
{
	char line[4096];
	u64 sum = 0;
	FILE *f = fopen("/proc/interrupts", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *end;

		while (*p == ' ')
			p++;
		if (strncmp(p, "LOC:", 4))
			continue;
		p += 4;
		for (;;) {
			unsigned long long v = strtoull(p, &end, 10);

			if (end == p)
				break;
			sum += v;
			p = end;
		}
	}
	fclose(f);
	return sum;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct counts snap(struct kvm_vcpu *vcpu)
{
	return (struct counts){
		.exits = elisa_vcpu_stat(vcpu, "exits"),
		.irq_exits = elisa_vcpu_stat(vcpu, "irq_exits"),
		.halt_exits = elisa_vcpu_stat(vcpu, "halt_exits"),
		.loc = local_timer_irqs(),
		.secs = now(),
	};
}

/* Runs to GUEST_SYNC(@stage) under a long alarm (a spin may take 10 s and more). */
static struct counts run_to(struct kvm_vcpu *vcpu, u64 stage)
{
	struct counts a = snap(vcpu), b;
	struct ucall uc;
	u64 cmd;

	alarm(RUN_ALARM_S);
	vcpu_run(vcpu);
	alarm(0);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	cmd = get_ucall(vcpu, &uc);
	if (cmd == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT(cmd == UCALL_SYNC && uc.args[1] == stage, "wanted GUEST_SYNC(%lu), got %lu",
		    (unsigned long)stage, (unsigned long)cmd);
	b = snap(vcpu);
	return (struct counts){
		.exits = b.exits - a.exits - (b.irq_exits - a.irq_exits) - 1,
		.irq_exits = b.irq_exits - a.irq_exits,
		.halt_exits = b.halt_exits - a.halt_exits,
		.loc = b.loc - a.loc,
		.secs = b.secs - a.secs,
	};
}

#define COUNTS_FMT ": irq_exits %lu, other exits %lu, halt_exits %lu, LOC +%lu, %.2f s"
#define COUNTS_ARGS(c) (unsigned long)(c).irq_exits, (unsigned long)(c).exits, \
	(unsigned long)(c).halt_exits, (unsigned long)(c).loc, (c).secs

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = elisa_run_timeout };
	u64 spin = argc > 1 ? strtoull(argv[1], NULL, 0) : 2000000000ULL;
	struct counts c[3];
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int i;

	ksft_print_header();
	ksft_set_plan(3);
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_BINARY_STATS_FD));
	TEST_ASSERT(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction(SIGALRM)");
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);

	/* warm-up: the guest's pages mapped, its loop run once */
	ticks = 1000;
	sync_global_to_guest(vm, ticks);
	for (i = 1; i <= 4; i++)
		run_to(vcpu, i);

	ticks = spin;
	sync_global_to_guest(vm, ticks);
	run_to(vcpu, 1);
	ksft_print_msg("%lu TSC ticks per spin, %d CPU(s), one vCPU\n", (unsigned long)spin,
		       (int)sysconf(_SC_NPROCESSORS_ONLN));
	for (i = 0; i < 3; i++)
		c[i] = run_to(vcpu, i + 2);

	ksft_test_result(true, "if0" COUNTS_FMT "\n", COUNTS_ARGS(c[0]));
	ksft_test_result(c[1].irq_exits + c[1].exits > 0, "if1" COUNTS_FMT "\n",
			 COUNTS_ARGS(c[1]));
	ksft_test_result(true, "if0_sti_cli" COUNTS_FMT "\n", COUNTS_ARGS(c[2]));
	ksft_print_msg("host interrupts %s a guest with IF = 0\n",
		       c[0].irq_exits + c[0].exits ? "exit" : "do not exit");
	kvm_vm_free(vm);
	ksft_finished();
}
