// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_share_test: two VMs share one region through one service, with no VM exit, and
 * neither sees the region through its default view.
 *
 * The host makes one region (a memfd page holding a counter) and one service whose code
 * adds its first argument to the counter and returns the new value (an add of 0 reads
 * it). Three VMs get the same service granted at G: VM 1 and VM 2 with one vCPU each, and
 * VM 3 with two vCPUs.
 *
 *  1. grant_two_vms: the service is granted to VM 1 and VM 2 (one vCPU each)
 *  2. vm1_writes: VM 1 calls elisa_call(+42), which returns 42; the memfd holds 42
 *  3. vm2_reads: VM 2 calls elisa_call(+0) and reads 42, what VM 1 wrote
 *  4. vm1_zero_exits: 1000 calls of +1 from VM 1 take no VM exit ("exits" less
 *     "irq_exits" between two ucalls is 1, the ucall's own)
 *  5. vm2_zero_exits: the same for 1000 calls of +0 from VM 2, which then reads 1042
 *  6. vm1_default_view_blind, 7. vm2_default_view_blind: a read of the first page of the
 *     VM's trusted window through its own page tables exits to the VMM as MMIO
 *  8. two_vcpus: VM 3 (two vCPUs, both existing at grant time) gets gates on both; each
 *     vCPU reads the counter (a first run, which also takes KVM's faults), then makes 100
 *     calls of +1 with no VM exit; the counter grows by 200
 *
 * One line "# DEMO ..." sums up what each VM wrote, read and the exits (make run).
 */
#include <sys/mman.h>
#include "elisa_kvm.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"

#define G 0x500000000000UL
#define CODE_GVA 0x600000000000UL
#define REGION_GVA 0x600000100000UL
#define PROBE_GVA 0x480000000000UL
#define CALLS 1000
#define VCPU_CALLS 100

/* The service: counter += RDI; return the new value. */
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

/* VM 1: writes. */
static void guest_vm1(void)
{
	long r, last = 0;
	int i;

	r = elisa_call(G, 511, 42, 0);
	GUEST_SYNC_ARGS(1, r, 0, 0, 0);
	for (i = 0; i < CALLS; i++)
		last = elisa_call(G, 511, 1, 0);
	GUEST_SYNC_ARGS(2, last, 0, 0, 0);
	r = READ_ONCE(*(volatile u64 *)PROBE_GVA);
	GUEST_SYNC_ARGS(3, r, 0, 0, 0);
	GUEST_DONE();
}

/* VM 2: reads. */
static void guest_vm2(void)
{
	long r, last = 0;
	int i;

	r = elisa_call(G, 511, 0, 0);
	GUEST_SYNC_ARGS(1, r, 0, 0, 0);
	for (i = 0; i < CALLS; i++)
		last = elisa_call(G, 511, 0, 0);
	GUEST_SYNC_ARGS(2, last, 0, 0, 0);
	r = READ_ONCE(*(volatile u64 *)PROBE_GVA);
	GUEST_SYNC_ARGS(3, r, 0, 0, 0);
	GUEST_DONE();
}

/* VM 3, on each of its two vCPUs. */
static void guest_vm3(void)
{
	long last;
	int i;

	/* the first run of a vCPU takes KVM's faults on its stack and the ucall page */
	last = elisa_call(G, 511, 0, 0);
	GUEST_SYNC_ARGS(1, last, 0, 0, 0);
	for (i = 0; i < VCPU_CALLS; i++)
		last = elisa_call(G, 511, 1, 0);
	GUEST_SYNC_ARGS(2, last, 0, 0, 0);
	GUEST_DONE();
}

struct gvm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu[2];
	int evm, grant_rc;
	struct elisa_grant grant;
};

/* Maps the entry block at G, attaches the VM and grants @service at G. */
static void grant_vm(int dev, struct gvm *g, int service)
{
	g->evm = elisa_attach_block(dev, g->vm, G, elisa_guest_block, ELISA_GUEST_BLOCK_PAGES);
	memset(&g->grant, 0, sizeof(g->grant));
	g->grant.service_fd = service;
	g->grant.entry_gva = G;
	g->grant_rc = __elisa_ioctl(g->evm, ELISA_GRANT, &g->grant);
	if (g->grant_rc)
		ksft_print_msg("ELISA_GRANT: errno %d\n", errno);
	else
		virt_pg_map(g->vm, PROBE_GVA, g->grant.trusted_gpa);
}

/* The guest's read of its trusted window: an MMIO exit; the VMM answers 0. */
static bool blind(struct gvm *g, u64 *got)
{
	struct kvm_vcpu *vcpu = g->vcpu[0];
	struct ucall uc;
	bool ok;

	elisa_vcpu_run(vcpu);
	ok = vcpu->run->exit_reason == KVM_EXIT_MMIO &&
	     vcpu->run->mmio.phys_addr == g->grant.trusted_gpa && !vcpu->run->mmio.is_write;
	ksft_print_msg("default-view read of GPA %#lx: exit reason %u\n",
		       (unsigned long)g->grant.trusted_gpa, vcpu->run->exit_reason);
	if (!ok)
		return false;
	memset(vcpu->run->mmio.data, 0, sizeof(vcpu->run->mmio.data));
	elisa_run_sync(vcpu, 3, &uc);
	*got = uc.args[2];
	return uc.args[2] == 0;
}

int main(void)
{
	static u8 code[4096];
	struct gvm v1, v2, v3;
	struct ucall uc;
	u64 x1, x2, x3a, x3b, got1 = 1, got2 = 1, w1, r2, last1, last2, before3;
	int dev, counter_fd, region, service;
	volatile u64 *counter;
	bool ok, ok1, ok2;

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(8);
	dev = elisa_open();

	counter_fd = memfd_page("elisa-counter", NULL);
	region = elisa_region_page(dev, counter_fd);
	counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, counter_fd, 0);
	TEST_ASSERT(counter != MAP_FAILED, "mmap counter");

	service_code(code);
	service = elisa_service_page(dev, "elisa-service", code, CODE_GVA, region, REGION_GVA);

	v1.vm = vm_create_with_one_vcpu(&v1.vcpu[0], guest_vm1);
	v2.vm = vm_create_with_one_vcpu(&v2.vcpu[0], guest_vm2);
	grant_vm(dev, &v1, service);
	grant_vm(dev, &v2, service);
	ok = !v1.grant_rc && !v2.grant_rc && v1.grant.nr_vcpus == 1 && v2.grant.nr_vcpus == 1;
	CHECK(ok, "grant_two_vms", ": rc %d, %d; vcpus %u, %u", v1.grant_rc, v2.grant_rc,
	      v1.grant.nr_vcpus, v2.grant.nr_vcpus);
	if (!ok)
		ksft_exit_fail_msg("no grant, no call\n");

	elisa_run_sync(v1.vcpu[0], 1, &uc);
	w1 = uc.args[2];
	CHECK(w1 == 42 && *counter == 42, "vm1_writes", ": returned %lu, counter %lu",
	      (unsigned long)w1, (unsigned long)*counter);

	elisa_run_sync(v2.vcpu[0], 1, &uc);
	r2 = uc.args[2];
	CHECK(r2 == 42, "vm2_reads", ": VM 2 read %lu", (unsigned long)r2);

	x1 = elisa_sync_exits(v1.vcpu[0], 2, &uc);
	last1 = uc.args[2];
	CHECK(last1 == 42 + CALLS && *counter == 42 + CALLS && x1 == 1, "vm1_zero_exits",
	      ": last %lu, counter %lu, exits %lu for %d calls + 1 ucall", (unsigned long)last1,
	      (unsigned long)*counter, (unsigned long)x1, CALLS);

	x2 = elisa_sync_exits(v2.vcpu[0], 2, &uc);
	last2 = uc.args[2];
	CHECK(last2 == 42 + CALLS && x2 == 1, "vm2_zero_exits",
	      ": read %lu, exits %lu for %d calls + 1 ucall", (unsigned long)last2,
	      (unsigned long)x2, CALLS);

	ok1 = blind(&v1, &got1);
	CHECK(ok1, "vm1_default_view_blind", ": the read was MMIO, returned %lu",
	      (unsigned long)got1);
	ok2 = blind(&v2, &got2);
	CHECK(ok2, "vm2_default_view_blind", ": the read was MMIO, returned %lu",
	      (unsigned long)got2);

	ksft_print_msg("DEMO vm1 wrote %lu then %d x +1 (last return %lu), vm2 read %lu then %lu; "
		       "counter in the host memfd %lu; exits for %d calls: vm1 %lu, vm2 %lu; "
		       "default view of the region: vm1 %s, vm2 %s\n",
		       (unsigned long)w1, CALLS, (unsigned long)last1, (unsigned long)r2,
		       (unsigned long)last2, (unsigned long)*counter, CALLS,
		       (unsigned long)(x1 - 1), (unsigned long)(x2 - 1),
		       ok1 ? "no memory (MMIO)" : "VISIBLE", ok2 ? "no memory (MMIO)" : "VISIBLE");

	v3.vm = vm_create_with_vcpus(2, guest_vm3, v3.vcpu);
	grant_vm(dev, &v3, service);
	before3 = *counter;
	x3a = x3b = 0;
	ok = !v3.grant_rc && v3.grant.nr_vcpus == 2;
	if (ok) {
		elisa_run_sync(v3.vcpu[0], 1, &uc);
		ok = uc.args[2] == before3;
		elisa_run_sync(v3.vcpu[1], 1, &uc);
		ok = ok && uc.args[2] == before3;
		x3a = elisa_sync_exits(v3.vcpu[0], 2, &uc);
		ok = ok && uc.args[2] == before3 + VCPU_CALLS;
		x3b = elisa_sync_exits(v3.vcpu[1], 2, &uc);
		ok = ok && uc.args[2] == before3 + 2 * VCPU_CALLS;
	}
	CHECK(ok && *counter == before3 + 2 * VCPU_CALLS && x3a == 1 && x3b == 1, "two_vcpus",
	      ": rc %d, vcpus %u, counter %lu -> %lu, exits %lu, %lu for %d calls each + 1 ucall",
	      v3.grant_rc, v3.grant.nr_vcpus, (unsigned long)before3, (unsigned long)*counter,
	      (unsigned long)x3a, (unsigned long)x3b, VCPU_CALLS);
	ksft_print_msg("DEMO vm3 (2 vCPUs) added %d from each vCPU; exits: vcpu0 %lu, vcpu1 %lu\n",
		       VCPU_CALLS, (unsigned long)(x3a - 1), (unsigned long)(x3b - 1));

	kvm_vm_free(v1.vm);
	kvm_vm_free(v2.vm);
	kvm_vm_free(v3.vm);
	close(v1.evm);
	close(v2.evm);
	close(v3.evm);
	close(service);
	close(region);
	munmap((void *)counter, 4096);
	close(counter_fd);
	close(dev);
	ksft_finished();
}
