// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_busy_vm: a VM attached to elisa and calling, beside other tests (make check-kvm:
 * kvm-suite/kvm_suite runs it next to each of the kernel's KVM selftests). Not a
 * selftest: it prints no KTAP result, only "# busy:" lines.
 *
 * One region (a counter page) and one service (counter += RDI, returns the new value).
 * Until SIGTERM, in a loop:
 *   - a VM with one vCPU is created, its entry block mapped at G, and it is attached and
 *     granted the service;
 *   - the guest makes BURST calls of +1 with interrupts off, then a ucall with the last
 *     return value, which must be the counter's value; the host sleeps PAUSE ms (a
 *     caller that never pauses slows Bochs about tenfold: it flushes its TLB at every
 *     VMFUNC), then lets the guest call again;
 *   - after BURSTS bursts the VM is detached (its elisa-vm fd closed) and attached and
 *     granted again; after ATTACHES attachments the VM is destroyed and a new one made.
 * At SIGTERM it ends the burst under way (which made 0 to BURST calls), frees everything,
 * checks that elisa holds no page, and prints "# busy: calls C bursts B attaches A vms V
 * errors E"; the exit status is 0 only without error. "# busy: calling" is printed after
 * the first burst.
 *
 *   elisa_busy_vm [-b BURST] [-p PAUSE_MS] [-n BURSTS] [-a ATTACHES]
 *	defaults: 1000 calls per burst, 50 ms pause, 3 bursts per attachment, 2
 *	attachments per VM
 *
 * One KVM_RUN may take at most 60 s of host time (a test beside it can keep the host
 * CPU: in Bochs a guest spinning with IF = 0 is never interrupted); then the run fails.
 */
#include <getopt.h>
#include <signal.h>
#include <sys/mman.h>
#include "elisa_kvm.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"

#define G 0x500000000000UL
#define CODE_GVA 0x600000000000UL
#define REGION_GVA 0x600000100000UL
#define RUN_TIMEOUT_S 60

static volatile sig_atomic_t stop;
static u64 burst = 1000;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_alarm(int sig)
{
	static const char msg[] = "# busy: KVM_RUN did not return within "
				  __stringify(RUN_TIMEOUT_S) " s\n";

	(void)sig;
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(KSFT_FAIL);
	_exit(KSFT_FAIL);
}

/* The service: counter += RDI; return the new value (as elisa_share_test's). */
static void service_code(u8 *c)
{
	static const u8 add[] = {
		0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,	/* mov rax, REGION_GVA */
		0x48, 0x89, 0xfa,			/* mov rdx, rdi */
		0xf0, 0x48, 0x0f, 0xc1, 0x38,		/* lock xadd [rax], rdi */
		0x48, 0x8d, 0x04, 0x17,			/* lea rax, [rdi + rdx] */
		0xc3,					/* ret */
	};
	u64 r = REGION_GVA;

	memset(c, 0xcc, 4096);
	memcpy(c, add, sizeof(add));
	memcpy(c + 2, &r, 8);
}

static void guest_busy(void)
{
	long last = 0;
	u64 i;

	for (;;) {
		for (i = 0; i < READ_ONCE(burst); i++)
			last = elisa_call(G, 511, 1, 0);
		GUEST_SYNC_ARGS(1, last, 0, 0, 0);
	}
}

/* Attaches @vm and grants @service at G (the entry block is mapped there already). */
static int attach_grant(int dev, struct kvm_vm *vm, int service)
{
	struct elisa_attach_vm av = { .vm_fd = vm->fd };
	struct elisa_grant grant = { .service_fd = service, .entry_gva = G };
	int evm = elisa_ioctl(dev, ELISA_ATTACH_VM, &av);

	elisa_ioctl(evm, ELISA_GRANT, &grant);
	return evm;
}

/* One burst: runs the vCPU to its ucall; false when SIGTERM came first. */
static bool run_burst(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	int r;

	for (;;) {
		alarm(RUN_TIMEOUT_S);
		r = __vcpu_run(vcpu);
		alarm(0);
		if (r < 0 && errno == EINTR) {
			if (stop)
				return false;
			continue;
		}
		TEST_ASSERT(r == 0, "KVM_RUN: %s", strerror(errno));
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		if (get_ucall(vcpu, uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(*uc);
		return true;
	}
}

int main(int argc, char **argv)
{
	static u8 code[4096];
	u64 calls = 0, bursts = 0, attaches = 0, vms = 0, errors = 0;
	long pause_ms = 50, per_attach = 3, per_vm = 2, held = -1, pinned = -1;
	struct sigaction sa = { .sa_handler = on_term };	/* no SA_RESTART */
	struct sigaction al = { .sa_handler = on_alarm };
	int dev, counter_fd, region, service, opt;
	volatile u64 *counter;
	bool announced = false;

	while ((opt = getopt(argc, argv, "b:p:n:a:")) != -1) {
		switch (opt) {
		case 'b': burst = strtoull(optarg, NULL, 0); break;
		case 'p': pause_ms = atol(optarg); break;
		case 'n': per_attach = atol(optarg); break;
		case 'a': per_vm = atol(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-b BURST] [-p PAUSE_MS] [-n BURSTS] [-a ATTACHES]\n",
				argv[0]);
			return 2;
		}
	}
	TEST_ASSERT(sigaction(SIGTERM, &sa, NULL) == 0, "sigaction(SIGTERM)");
	TEST_ASSERT(sigaction(SIGALRM, &al, NULL) == 0, "sigaction(SIGALRM)");

	dev = elisa_open();
	counter_fd = memfd_page("elisa-busy-counter", NULL);
	region = elisa_region_page(dev, counter_fd);
	counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, counter_fd, 0);
	TEST_ASSERT(counter != MAP_FAILED, "mmap counter");
	service_code(code);
	service = elisa_service_page(dev, "elisa-busy-service", code, CODE_GVA, region,
				     REGION_GVA);

	while (!stop) {
		struct kvm_vcpu *vcpu;
		struct kvm_vm *vm;
		gpa_t gpa;
		long a, b;

		vm = vm_create_with_one_vcpu(&vcpu, guest_busy);
		sync_global_to_guest(vm, burst);
		gpa = vm_phy_pages_alloc(vm, ELISA_GUEST_BLOCK_PAGES, 0x100000, 0);
		virt_map(vm, G, gpa, ELISA_GUEST_BLOCK_PAGES);
		memcpy(addr_gpa2hva(vm, gpa), elisa_guest_block, sizeof(elisa_guest_block));
		vms++;
		for (a = 0; a < per_vm && !stop; a++) {
			int evm = attach_grant(dev, vm, service);

			attaches++;
			for (b = 0; b < per_attach && !stop; b++) {
				struct ucall uc;
				struct timespec ts = { .tv_sec = pause_ms / 1000,
						       .tv_nsec = (pause_ms % 1000) * 1000000 };

				if (!run_burst(vcpu, &uc))
					break;
				bursts++;
				calls += burst;
				if ((u64)uc.args[2] != *counter) {
					errors++;
					printf("# busy: a burst returned %lu, the counter holds %lu\n",
					       (unsigned long)uc.args[2], (unsigned long)*counter);
				}
				if (!announced) {
					printf("# busy: calling, %lu calls per burst, %ld ms pauses\n",
					       (unsigned long)burst, pause_ms);
					fflush(stdout);
					announced = true;
				}
				nanosleep(&ts, NULL);	/* EINTR at SIGTERM: fine */
			}
			close(evm);	/* detach */
		}
		kvm_vm_free(vm);
	}
	/*
	 * A burst that SIGTERM cut short made 0 to BURST of its calls: KVM_RUN can end
	 * with EINTR after the guest's last call and before its ucall.
	 */
	if (*counter < calls || *counter > calls + burst) {
		errors++;
		printf("# busy: %lu calls in whole bursts, the counter holds %lu\n",
		       (unsigned long)calls, (unsigned long)*counter);
	}
	calls = *counter;
	close(service);
	close(region);
	munmap((void *)counter, 4096);
	close(counter_fd);
	if (!elisa_pages(&held, &pinned) || held || pinned) {
		errors++;
		printf("# busy: elisa holds %ld pages, pins %ld after the end\n", held, pinned);
	}
	close(dev);
	printf("# busy: calls %lu bursts %lu attaches %lu vms %lu errors %lu\n",
	       (unsigned long)calls, (unsigned long)bursts, (unsigned long)attaches,
	       (unsigned long)vms, (unsigned long)errors);
	return errors ? 1 : 0;
}
