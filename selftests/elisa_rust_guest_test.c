// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_rust_guest_test: the guest calls a host service through the no_std Rust guest crate
 * (guest/elisa-guest), linked into this binary as a static library (selftests/rust-guest,
 * declared in rust-guest/elisa_rs_guest.h). The guest code runs in 64-bit mode at CPL 0,
 * as a guest kernel would, and calls the crate's Gate::call, Gate::call_raw,
 * with_irqs_disabled and irqs_enabled.
 *
 * The service (assembled below) counts its calls in a region page and returns
 * RDI + RSI << 8 + RDX << 16 + R8 << 24 + R9 << 32.
 *
 *  1. entry_block: the crate's write_entry_block() gives the same three pages as
 *     tools/elisa-guest-blob; they are the pages mapped at G
 *  2. grant: ELISA_GRANT returns gate index 511
 *  3. five_args: call(1, 2, 3, 4, 5) returns Ok(0x0504030201); the service ran once
 *  4. zero_exits: 1000 calls return Ok(i) and take no VM exit (the vCPU's "exits" less
 *     "irq_exits" between two ucalls is 1, the ucall's own)
 *  5. service_errno: a service's -22 comes back raw from call_raw, and from call as
 *     CallError::Service(-22)
 *  6. if_refused: with IF = 1 (irqs_enabled() says so), call returns CallError::IrqEnabled
 *     and the service does not run
 *  7. irqs_disabled_helper: with_irqs_disabled(|| call) succeeds from IF = 1 and from
 *     IF = 0, and leaves IF as it found it
 *  8. not_entered: gate index 0 returns CallError::NotEntered, with no VM exit and without
 *     running the service
 */
#include <sys/mman.h>
#include "elisa_kvm.h"
#include "elisa_guest_blob.h"
#include "rust-guest/elisa_rs_guest.h"

#define G 0x500000000000UL
#define CODE_GVA 0x600000000000UL
#define REGION_GVA 0x600000100000UL
#define CALLS 1000

/* The service: counter += 1; return RDI + RSI << 8 + RDX << 16 + R8 << 24 + R9 << 32. */
asm(".pushsection .rodata\n"
    "rs_service_start:\n\t"
    "movabs $" __stringify(REGION_GVA) ", %r10\n\t"
    "lock incq (%r10)\n\t"
    "mov %rdi, %rax\n\t"
    "shl $8, %rsi\n\t"
    "add %rsi, %rax\n\t"
    "shl $16, %rdx\n\t"
    "add %rdx, %rax\n\t"
    "shl $24, %r8\n\t"
    "add %r8, %rax\n\t"
    "shl $32, %r9\n\t"
    "add %r9, %rax\n\t"
    "ret\n"
    "rs_service_end:\n"
    ".popsection");
extern const u8 rs_service_start[], rs_service_end[];

static void guest_code(void)
{
	struct elisa_rs_result r, r2;
	u64 i, bad = 0, on, off;
	int64_t raw;

	/*
	 * The normal path never runs the entry block's middle page (the fallback), so KVM has
	 * not mapped its GPA yet: touch it, or not_entered would count that EPT fill.
	 */
	(void)READ_ONCE(*(volatile u8 *)(G + 0x1000));

	r = elisa_rs_call(G, 511, 1, 2, 3, 4, 5);
	GUEST_SYNC_ARGS(1, r.value, r.error, 0, 0);

	for (i = 0; i < CALLS; i++) {
		r = elisa_rs_call(G, 511, i, 0, 0, 0, 0);
		bad += r.error != ELISA_RS_OK || r.value != (int64_t)i;
	}
	GUEST_SYNC_ARGS(2, bad, r.value, 0, 0);

	raw = elisa_rs_call_raw(G, 511, -22, 0, 0, 0, 0);
	r = elisa_rs_call(G, 511, -22, 0, 0, 0, 0);
	GUEST_SYNC_ARGS(3, raw, r.value, r.error, 0);

	sti();
	on = elisa_rs_irqs_enabled();
	r = elisa_rs_call(G, 511, 7, 0, 0, 0, 0);
	cli();
	off = elisa_rs_irqs_enabled();
	GUEST_SYNC_ARGS(4, r.value, r.error, on, off);

	sti();
	r = elisa_rs_call_irqs_disabled(G, 511, 8, 0, 0, 0, 0);
	on = elisa_rs_irqs_enabled();
	cli();
	r2 = elisa_rs_call_irqs_disabled(G, 511, 9, 0, 0, 0, 0);
	off = elisa_rs_irqs_enabled();
	GUEST_SYNC_ARGS(5, r.value, r2.value, r.error | r2.error << 8, on | off << 1);

	r = elisa_rs_call(G, 0, 1, 0, 0, 0, 0);
	GUEST_SYNC_ARGS(6, r.value, r.error, 0, 0);
	GUEST_DONE();
}

int main(void)
{
	static u8 code[4096];
	struct elisa_attach_vm av = { 0 };
	struct elisa_grant grant = { 0 };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int dev, counter_fd, region, service, evm, rc;
	u64 *counter, exits;
	u8 *block;
	gpa_t gpa;
	bool ok;

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(8);
	dev = elisa_open();

	counter_fd = memfd_page("elisa-counter", NULL);
	region = elisa_region_page(dev, counter_fd);
	memset(code, 0xcc, sizeof(code));
	memcpy(code, rs_service_start, rs_service_end - rs_service_start);
	service = elisa_service_page(dev, "elisa-rs-service", code, CODE_GVA, region, REGION_GVA);
	counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, counter_fd, 0);
	TEST_ASSERT(counter != MAP_FAILED, "mmap counter");

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	gpa = vm_phy_pages_alloc(vm, ELISA_GUEST_BLOCK_PAGES, 0x100000, 0);
	virt_map(vm, G, gpa, ELISA_GUEST_BLOCK_PAGES);
	block = addr_gpa2hva(vm, gpa);
	memset(block, 0x5a, sizeof(elisa_guest_block));
	rc = elisa_rs_write_entry_block(block);
	CHECK(rc == 0 && !memcmp(block, elisa_guest_block, sizeof(elisa_guest_block)),
	      "entry_block", ": rc %d, %s the C header's", rc,
	      memcmp(block, elisa_guest_block, sizeof(elisa_guest_block)) ? "differs from" :
									    "same as");

	av.vm_fd = vm->fd;
	evm = elisa_ioctl(dev, ELISA_ATTACH_VM, &av);
	grant.service_fd = service;
	grant.entry_gva = G;
	rc = __elisa_ioctl(evm, ELISA_GRANT, &grant);
	ok = rc == 0 && grant.gate_index == 511;
	CHECK(ok, "grant", ": rc %d errno %d, index %u", rc, rc ? errno : 0, grant.gate_index);
	if (!ok)
		ksft_exit_fail_msg("no grant, no call\n");

	elisa_run_sync(vcpu, 1, &uc);
	CHECK((int64_t)uc.args[2] == 0x0504030201 && uc.args[3] == ELISA_RS_OK && *counter == 1,
	      "five_args", ": value %#lx, error %lu, service ran %lu times",
	      (unsigned long)uc.args[2], (unsigned long)uc.args[3], (unsigned long)*counter);

	exits = elisa_sync_exits(vcpu, 2, &uc);
	ksft_print_msg("%d calls through the Rust crate: %lu exits besides host interrupts "
		       "(the ucall is 1)\n", CALLS, (unsigned long)exits);
	CHECK(uc.args[2] == 0 && uc.args[3] == CALLS - 1 && *counter == 1 + CALLS && exits == 1,
	      "zero_exits", ": %lu wrong results, last %ld, counter %lu, exits %lu for %d calls"
	      " + 1 ucall",
	      (unsigned long)uc.args[2], (long)uc.args[3], (unsigned long)*counter,
	      (unsigned long)exits, CALLS);

	elisa_run_sync(vcpu, 3, &uc);
	CHECK((int64_t)uc.args[2] == -22 && (int64_t)uc.args[3] == -22 &&
		      uc.args[4] == ELISA_RS_SERVICE && *counter == 3 + CALLS,
	      "service_errno", ": raw %ld, typed value %ld error %lu (4 = Service)",
	      (long)uc.args[2], (long)uc.args[3], (unsigned long)uc.args[4]);

	elisa_run_sync(vcpu, 4, &uc);
	CHECK((int64_t)uc.args[2] == ELISA_ERR_IRQ_ENABLED && uc.args[3] == ELISA_RS_IRQ_ENABLED &&
		      uc.args[4] == 1 && uc.args[5] == 0 && *counter == 3 + CALLS,
	      "if_refused", ": value %ld error %lu (1 = IrqEnabled), IF %lu then %lu, counter %lu",
	      (long)uc.args[2], (unsigned long)uc.args[3], (unsigned long)uc.args[4],
	      (unsigned long)uc.args[5], (unsigned long)*counter);

	elisa_run_sync(vcpu, 5, &uc);
	CHECK(uc.args[2] == 8 && uc.args[3] == 9 && uc.args[4] == 0 && uc.args[5] == 1 &&
		      *counter == 5 + CALLS,
	      "irqs_disabled_helper", ": values %lu %lu, errors %#lx, IF after (bit 0: was 1, "
	      "bit 1: was 0) %#lx, counter %lu",
	      (unsigned long)uc.args[2], (unsigned long)uc.args[3], (unsigned long)uc.args[4],
	      (unsigned long)uc.args[5], (unsigned long)*counter);

	exits = elisa_sync_exits(vcpu, 6, &uc);
	CHECK((int64_t)uc.args[2] == ELISA_ERR_NOT_ENTERED && uc.args[3] == ELISA_RS_NOT_ENTERED &&
		      *counter == 5 + CALLS && exits == 1,
	      "not_entered", ": value %ld error %lu (2 = NotEntered), counter %lu, exits %lu",
	      (long)uc.args[2], (unsigned long)uc.args[3], (unsigned long)*counter,
	      (unsigned long)exits);

	TEST_ASSERT(elisa_run_ucall(vcpu, &uc) == UCALL_DONE, "guest did not finish");
	munmap(counter, 4096);
	kvm_vm_free(vm);
	close(evm);
	close(service);
	close(region);
	close(counter_fd);
	close(dev);
	ksft_finished();
}
