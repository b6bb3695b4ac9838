/* SPDX-License-Identifier: GPL-2.0 */
/*
 * elisa's glue to the kernel tree's KVM selftest library, for selftests that run guests.
 * Guest code is C next to the host code; the library loads the test binary into the
 * guest at the same addresses, so guest and host share functions and globals
 * (sync_global_to_guest(), sync_global_from_guest()).
 *
 * Host side:
 *   elisa_vcpu_stat(vcpu, "exits"), elisa_vm_stat(vm, "pages_4k")
 *	one KVM binary statistic by name (KVM_GET_STATS_FD: header, descriptors, data);
 *	asserts that it exists. __elisa_stat() returns false for a missing one instead.
 *   elisa_vcpu_run(vcpu)
 *	vcpu_run() bounded by alarm(ELISA_RUN_TIMEOUT_S): a guest that never exits ends
 *	the test with "Bail out!", not the whole run.
 *   elisa_run_ucall(vcpu, &uc)
 *	runs until the next ucall and returns its command; prints GUEST_PRINTF()s and fails
 *	the test at a GUEST_ASSERT(), with the guest's file and line.
 *   elisa_run_sync(vcpu, stage, &uc)
 *	runs until the next ucall, which must be GUEST_SYNC*(stage, ...).
 *   elisa_run_past_mmio(vcpu)
 *	runs until an exit other than MMIO; returns its reason.
 *   elisa_sync_exits(vcpu, stage, &uc)
 *	elisa_run_sync() and returns the VM exits it took, host interrupts not counted
 *	(the ucall itself is one).
 *   elisa_vcpu_run_raw(vcpu)
 *	one KVM_RUN, never retried: returns 0 or -errno, -EINTR when a signal ended it
 *	(run->exit_reason is then KVM_EXIT_INTR). Bounded like elisa_vcpu_run(); a
 *	GUEST_ASSERT reported by the exit fails the test, as in vcpu_run().
 *   elisa_kick_setup(vcpu), elisa_kick_start(&kick, thread, delay_us),
 *   elisa_kick_join(&kick), elisa_kick_end(&kick)
 *	interrupt a vCPU's KVM_RUN with SIGUSR1 from another thread. Setup, in the thread
 *	that runs @vcpu: a SIGUSR1 handler without SA_RESTART, SIGUSR1 blocked in that
 *	thread and unblocked only inside @vcpu's KVM_RUN (KVM_SET_SIGNAL_MASK), so a kick
 *	never interrupts any other system call and is never lost: sent while the thread is
 *	outside KVM_RUN, it stays pending and the next KVM_RUN returns -EINTR before it
 *	enters the guest. Start: a thread sleeps @delay_us, then pthread_kill()s @thread.
 *	Join: waits for that thread (the kick is sent). End, in the vCPU thread: joins and
 *	takes the pending SIGUSR1 (it must be there), so that the next KVM_RUN enters
 *	the guest again. Each start takes one end. In the emulated host the guest must
 *	run with IF = 1 (or exit by itself) to be interrupted: Bochs takes no
 *	external-interrupt exit while the guest's IF is 0, so a spinning guest keeps the
 *	host CPU, and neither the kick nor the run's alarm comes (design.rst).
 *   memfd_page(), elisa_region_page(), elisa_service_page()
 *	a one-page memfd sealed with F_SEAL_SHRINK, a region of it, a one-page service
 *	(see below).
 *   elisa_install_ud_handler(vm)
 *	the guest's #UD handler below.
 *
 * Guest side:
 *   vmfunc(eax, ecx)	VMFUNC (0f 01 d4); eax is the function (0: EPTP switching), ecx
 *			the EPTP index
 *   vmfunc_safe(eax, ecx)
 *			VMFUNC under the library's exception fixup: returns the vector
 *			it raised (UD_VECTOR when the VM has no VMFUNC), 0 for none
 *   elisa_guest_ud	what elisa_guest_ud_handler() saw: the number of #UDs it skipped,
 *			the last vector and RIP
 *   rdtsc()		processor.h's, fenced with LFENCE on both sides; RDTSC does not exit
 */
#ifndef ELISA_KVM_H
#define ELISA_KVM_H

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <sys/mman.h>
#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"
#include "elisa_test.h"

/* Seconds of (emulated) host time one KVM_RUN may take. */
#define ELISA_RUN_TIMEOUT_S 10

#define VMFUNC_INSN ".byte 0x0f, 0x01, 0xd4"
#define VMFUNC_INSN_LEN 3

/* ---- host: KVM binary statistics ---------------------------------------------------- */

/*
 * Reads the first value of the statistic @name into @val. Returns false when the
 * statistic does not exist (older or newer KVM); asserts on any other error.
 */
static inline bool __elisa_stat(struct kvm_binary_stats *stats, const char *name, u64 *val)
{
	struct kvm_stats_desc *desc;
	u32 i;

	TEST_ASSERT(stats->fd >= 0, "KVM has no binary stats (KVM_CAP_BINARY_STATS_FD)");
	if (!stats->desc) {
		read_stats_header(stats->fd, &stats->header);
		stats->desc = read_stats_descriptors(stats->fd, &stats->header);
	}
	for (i = 0; i < stats->header.num_desc; i++) {
		desc = get_stats_descriptor(stats->desc, i, &stats->header);
		if (strcmp(desc->name, name))
			continue;
		read_stat_data(stats->fd, &stats->header, desc, val, 1);
		return true;
	}
	return false;
}

static inline u64 elisa_stat(struct kvm_binary_stats *stats, const char *name)
{
	u64 val = 0;

	TEST_ASSERT(__elisa_stat(stats, name, &val), "no KVM statistic '%s'", name);
	return val;
}

#define elisa_vcpu_stat(vcpu, name) elisa_stat(&(vcpu)->stats, (name))
#define elisa_vm_stat(vm, name) elisa_stat(&(vm)->stats, (name))

/* ---- host: bounded runs and ucalls -------------------------------------------------- */

static void __maybe_unused elisa_run_timeout(int sig)
{
	static const char msg[] = "Bail out! KVM_RUN did not return within "
				  __stringify(ELISA_RUN_TIMEOUT_S) " s\n";

	(void)sig;
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(KSFT_FAIL);
	_exit(KSFT_FAIL);
}

/*
 * The library's vcpu_run() retries KVM_RUN on EINTR, so the handler must not return:
 * it ends the process.
 */
static inline void elisa_vcpu_run(struct kvm_vcpu *vcpu)
{
	struct sigaction sa = { .sa_handler = elisa_run_timeout };

	TEST_ASSERT(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction(SIGALRM)");
	alarm(ELISA_RUN_TIMEOUT_S);
	vcpu_run(vcpu);
	alarm(0);
}

static inline u64 elisa_run_ucall(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	u64 cmd;

	for (;;) {
		elisa_vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		cmd = get_ucall(vcpu, uc);
		if (cmd == UCALL_ABORT)
			REPORT_GUEST_ASSERT(*uc);
		if (cmd != UCALL_PRINTF)
			return cmd;
		ksft_print_msg("guest vCPU %u: %s", vcpu->id, uc->buffer);
	}
}

static inline void elisa_run_sync(struct kvm_vcpu *vcpu, u64 stage, struct ucall *uc)
{
	u64 cmd = elisa_run_ucall(vcpu, uc);

	TEST_ASSERT(cmd == UCALL_SYNC && uc->args[1] == stage,
		    "vCPU %u: wanted GUEST_SYNC(%lu), got ucall %lu (stage %lu)", vcpu->id,
		    (unsigned long)stage, (unsigned long)cmd, (unsigned long)uc->args[1]);
}

/*
 * Runs @vcpu until an exit other than MMIO (at most 3 MMIO exits are completed on the
 * way, e.g. of the library's code touching unmapped GPAs); returns the exit reason.
 */
static inline u32 elisa_run_past_mmio(struct kvm_vcpu *vcpu)
{
	int i;

	elisa_vcpu_run(vcpu);
	for (i = 0; i < 3 && vcpu->run->exit_reason == KVM_EXIT_MMIO; i++)
		elisa_vcpu_run(vcpu);
	return vcpu->run->exit_reason;
}

/* Exits of @vcpu up to its next GUEST_SYNC(@stage), host interrupts not counted. */
static inline u64 elisa_sync_exits(struct kvm_vcpu *vcpu, u64 stage, struct ucall *uc)
{
	u64 e0 = elisa_vcpu_stat(vcpu, "exits"), i0 = elisa_vcpu_stat(vcpu, "irq_exits");

	elisa_run_sync(vcpu, stage, uc);
	return elisa_vcpu_stat(vcpu, "exits") - e0 - (elisa_vcpu_stat(vcpu, "irq_exits") - i0);
}

/*
 * One KVM_RUN of @vcpu, not retried on EINTR; 0 or -errno. The alarm's handler ends the
 * process whichever thread it interrupts.
 */
static inline int elisa_vcpu_run_raw(struct kvm_vcpu *vcpu)
{
	struct sigaction sa = { .sa_handler = elisa_run_timeout };
	int r;

	TEST_ASSERT(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction(SIGALRM)");
	alarm(ELISA_RUN_TIMEOUT_S);
	r = __vcpu_run(vcpu) ? -errno : 0;
	alarm(0);
	if (!r)
		assert_on_unhandled_exception(vcpu);
	return r;
}

/* ---- host: a vCPU's KVM_RUN interrupted by a signal --------------------------------- */

#define ELISA_KICK_SIGNAL SIGUSR1

struct elisa_kick {
	pthread_t thread;	/* the kicker */
	pthread_t target;	/* the thread that runs the vCPU */
	u64 delay_us;
	bool running;		/* started, not yet joined */
};

/* Runs only if SIGUSR1 comes outside KVM_RUN unblocked; its job is to exist. */
static void __maybe_unused elisa_kick_handler(int sig)
{
	(void)sig;
}

static inline void elisa_kick_setup(struct kvm_vcpu *vcpu)
{
	struct sigaction sa = { .sa_handler = elisa_kick_handler };	/* no SA_RESTART */
	struct kvm_signal_mask *kmask;
	sigset_t set, old;

	TEST_ASSERT(sigaction(ELISA_KICK_SIGNAL, &sa, NULL) == 0, "sigaction(SIGUSR1)");
	sigemptyset(&set);
	sigaddset(&set, ELISA_KICK_SIGNAL);
	TEST_ASSERT(pthread_sigmask(SIG_BLOCK, &set, &old) == 0, "block SIGUSR1");
	/* Inside KVM_RUN: the thread's mask as it was, less SIGUSR1. */
	sigdelset(&old, ELISA_KICK_SIGNAL);
	kmask = malloc(sizeof(*kmask) + 8);
	TEST_ASSERT(kmask, "malloc");
	kmask->len = 8;		/* the kernel's sigset_t on x86-64: signals 1-64 */
	memcpy(kmask->sigset, &old, 8);
	vcpu_ioctl(vcpu, KVM_SET_SIGNAL_MASK, kmask);
	free(kmask);
}

static void __maybe_unused *elisa_kicker(void *arg)
{
	struct elisa_kick *k = arg;
	struct timespec ts = { .tv_sec = k->delay_us / 1000000,
			       .tv_nsec = (k->delay_us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	TEST_ASSERT(pthread_kill(k->target, ELISA_KICK_SIGNAL) == 0, "pthread_kill(SIGUSR1)");
	return NULL;
}

static inline void elisa_kick_start(struct elisa_kick *k, pthread_t target, u64 delay_us)
{
	TEST_ASSERT(!k->running, "elisa_kick_start: the last kick was not joined");
	k->target = target;
	k->delay_us = delay_us;
	TEST_ASSERT(pthread_create(&k->thread, NULL, elisa_kicker, k) == 0, "pthread_create");
	k->running = true;
}

static inline void elisa_kick_join(struct elisa_kick *k)
{
	if (!k->running)
		return;
	TEST_ASSERT(pthread_join(k->thread, NULL) == 0, "pthread_join");
	k->running = false;
}

static inline void elisa_kick_end(struct elisa_kick *k)
{
	struct timespec zero = { 0 };
	sigset_t set;

	elisa_kick_join(k);
	sigemptyset(&set);
	sigaddset(&set, ELISA_KICK_SIGNAL);
	TEST_ASSERT(sigtimedwait(&set, NULL, &zero) == ELISA_KICK_SIGNAL,
		    "elisa_kick_end: no SIGUSR1 pending in this thread (%s)", strerror(errno));
}

/* ---- guest: VMFUNC and #UD ---------------------------------------------------------- */

static inline void vmfunc(u32 eax, u32 ecx)
{
	asm volatile(VMFUNC_INSN : : "a"(eax), "c"(ecx) : "memory");
}

static inline u8 vmfunc_safe(u32 eax, u32 ecx)
{
	return kvm_asm_safe(VMFUNC_INSN, "a"(eax), "c"(ecx));
}

struct elisa_guest_ud {
	u64 count;	/* #UDs skipped by elisa_guest_ud_handler() */
	u64 vector;	/* the last one's vector (UD_VECTOR) */
	u64 rip;	/* the last one's RIP: the VMFUNC */
};

static struct elisa_guest_ud elisa_guest_ud __maybe_unused;

/*
 * The guest's #UD handler: a #UD on a VMFUNC is recorded in elisa_guest_ud and the
 * VMFUNC skipped, so the guest goes on after it and checks the count. A #UD anywhere
 * else fails the test at that RIP. A vmfunc_safe() keeps its meaning: a registered
 * handler takes the place of the library's fixup, so the handler applies that fixup.
 */
static void __maybe_unused elisa_guest_ud_handler(struct ex_regs *regs)
{
	const u8 *insn = (const u8 *)regs->rip;

	if (regs->r9 == KVM_EXCEPTION_MAGIC && regs->rip == regs->r10) {
		regs->rip = regs->r11;
		regs->r9 = regs->vector;
		regs->r10 = regs->error_code;
		return;
	}
	__GUEST_ASSERT(insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xd4,
		       "#UD at RIP %#lx on %02x %02x %02x, not on a VMFUNC", regs->rip, insn[0],
		       insn[1], insn[2]);
	WRITE_ONCE(elisa_guest_ud.vector, regs->vector);
	WRITE_ONCE(elisa_guest_ud.rip, regs->rip);
	__atomic_add_fetch(&elisa_guest_ud.count, 1, __ATOMIC_SEQ_CST);
	regs->rip += VMFUNC_INSN_LEN;
}

static inline void elisa_install_ud_handler(struct kvm_vm *vm)
{
	vm_install_exception_handler(vm, UD_VECTOR, elisa_guest_ud_handler);
}

/*
 * A one-page memfd, filled with @bytes (4096 of them) unless NULL, sealed with
 * F_SEAL_SHRINK as ELISA_CREATE_REGION wants a memfd (Documentation/api.rst).
 */
static inline int memfd_page(const char *name, const void *bytes)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	TEST_ASSERT(fd >= 0 && ftruncate(fd, 4096) == 0, "memfd");
	TEST_ASSERT(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "F_SEAL_SHRINK: %s",
		    strerror(errno));
	if (bytes)
		TEST_ASSERT(pwrite(fd, bytes, 4096, 0) == 4096, "write memfd");
	return fd;
}

/* ELISA_CREATE_REGION of the first page of @memfd; returns the region fd. */
static inline int elisa_region_page(int dev, int memfd)
{
	struct elisa_create_region cr = { .fd = memfd, .length = 4096 };

	return elisa_ioctl(dev, ELISA_CREATE_REGION, &cr);
}

/*
 * ELISA_CREATE_SERVICE of one page of code (@code, 4096 bytes) at @code_gva, entry at its
 * first byte, with region @region_fd mapped read-write at @region_gva (no region when
 * @region_fd < 0); returns the service fd.
 */
static inline int elisa_service_page(int dev, const char *name, const void *code, u64 code_gva,
				     int region_fd, u64 region_gva)
{
	struct elisa_create_service cs = { 0 };
	int code_fd = memfd_page(name, code), svc;

	cs.code_fd = code_fd;
	cs.code_size = 4096;
	cs.code_gva = code_gva;
	if (region_fd >= 0) {
		cs.nr_regions = 1;
		cs.regions[0].region_fd = region_fd;
		cs.regions[0].access = ELISA_ACCESS_READ | ELISA_ACCESS_WRITE;
		cs.regions[0].gva = region_gva;
	}
	svc = elisa_ioctl(dev, ELISA_CREATE_SERVICE, &cs);
	close(code_fd);
	return svc;
}

/*
 * Maps the guest entry block @block (@pages pages: elisa_guest_block and
 * ELISA_GUEST_BLOCK_PAGES of the generated elisa_guest_blob.h) at @g in @vm and attaches
 * @vm. Returns the elisa-vm fd.
 */
static inline int elisa_attach_block(int dev, struct kvm_vm *vm, u64 g, const void *block,
				     u64 pages)
{
	struct elisa_attach_vm av = { .vm_fd = vm->fd };
	gpa_t gpa = vm_phy_pages_alloc(vm, pages, 0x100000, 0);

	virt_map(vm, g, gpa, pages);
	memcpy(addr_gpa2hva(vm, gpa), block, pages * 4096);
	return elisa_ioctl(dev, ELISA_ATTACH_VM, &av);
}

/*
 * elisa_attach_block(), then grants @service at @g. Returns the elisa-vm fd; the grant's output goes to *@grant
 * and its errno (0 on success) to *@err.
 */
static inline int elisa_attach_grant(int dev, struct kvm_vm *vm, int service, u64 g,
				     const void *block, u64 pages, struct elisa_grant *grant,
				     int *err)
{
	int evm = elisa_attach_block(dev, vm, g, block, pages);

	memset(grant, 0, sizeof(*grant));
	grant->service_fd = service;
	grant->entry_gva = g;
	*err = __elisa_ioctl(evm, ELISA_GRANT, grant) ? errno : 0;
	return evm;
}

#endif /* ELISA_KVM_H */
