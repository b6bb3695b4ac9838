// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_services_test: several services granted to one VM, each behind its own gate index,
 * each seeing only its own regions; vCPUs created after a grant get the gate by granting
 * the same service again.
 *
 * Services (each one page of code): A and B add RDI to the counter in their own region
 * (A's region at REGION_A_GVA, B's at REGION_B_GVA) and return the new value, or, with
 * RSI != 0, return the quadword at GVA RSI; C returns 0xc0ffee; D1..D5 return their
 * number. The VM starts with one vCPU and maps the entry block at G and at G2.
 *
 *  1. grant_indexes: A at G gets gate index 511, B at the same G 510, C at G2 509; one
 *     vCPU each
 *  2. calls_each_service: A(+5) = 5, B(+7) = 7, C = 0xc0ffee through their indexes
 *  3. zero_exits: 500 calls of A(+1) alternating with 500 of B(+1): A's counter 505, B's
 *     507, and no VM exit but the ucall's
 *  4. regrant_rules: A again at G: index 511 again, no new slot; A at G2, A with
 *     ELISA_GRANT_USER, and an unknown flag: EINVAL
 *  5. new_vcpu_regrant: a vCPU added after the grants calls A and gets -ENODEV (the entry
 *     VMFUNC to an empty list entry is #UD, skipped by the guest's handler, so the
 *     fallback stub answers); after A is granted again (2 vCPUs), the same call works.
 *     A memslot added above A's trusted window before that grant does not move the
 *     window: the grant again reports (and uses) A's first one
 *  6. max_grants: D1..D5 get 508..504 (D1 with ELISA_GRANT_USER: user pages); a ninth
 *     service gets ENOSPC
 *  7. user_gates_need_smap: a call to D1 (user pages) from a guest without CR4.SMAP gets
 *     ELISA_CALL_ERR_NOT_ENTERED: a user grant's gate opens only under the guest's SMAP
 *     (at CPL 3 the guest can make a service fault with no exit, e.g. RDTSC under the
 *     guest-owned CR4.TSD, and only SMAP makes that fault's delivery through descriptors
 *     in the views fault too; Documentation/security.rst)
 *  8. smep_supervisor_call: with CR4.SMEP (and CR4.SMAP, where the CPU has it) set in the
 *     second vCPU, A (supervisor pages, the default) still answers
 *  9. smep_user_pages_fault: with SMEP and SMAP, D1's gate opens and the call faults on
 *     the fetch of the gate (a user page at CPL 0), which ends that vCPU's run with
 *     KVM_EXIT_SHUTDOWN: why the default is supervisor pages. Only where KVM offers
 *     SMAP, as case 11 (Bochs's Haswell does not: there the test has 11 cases, 14 where
 *     KVM offers PCID too; make check also boots
 *     Bochs's Broadwell, with ELISA_EXPECT_SMAP=1, which fails the test if SMAP is not
 *     offered)
 * 10. services_isolated: B asked to read A's region at REGION_A_GVA (unmapped in B's sub
 *     view) ends the run with KVM_EXIT_SHUTDOWN; A's counter is unchanged
 * 11. user_call_cpl3 (where KVM offers SMAP): a third vCPU runs at CPL 3 with SMAP on,
 *     IF = 0 and IOPL 3, every guest page a user page; its call to D1 (a user grant,
 *     granted again for it) returns 1: a user gate opens and runs its service
 * 12. user_gates_closed_under_pcid (where KVM offers SMAP and PCID): a fourth vCPU as in
 *     11 but with CR4.PCIDE: its gate for D1 stays closed (list entry 0, where the third
 *     vCPU's holds the gate), so its call ends the run (a #UD that SMAP makes
 *     undeliverable from user pages): a user grant's gate cannot read CR3 (the
 *     supervisor gate refuses a CR3 in the trusted window), so it opens only where every
 *     CR3 load drops its translations (gate-protocol.rst section 4)
 * 13. first_grant_without_vcpus: C granted to a second VM that has no vCPU and no memslot
 *     (0 vCPUs get it); after a memslot at that grant's window and a vCPU are added, C
 *     granted again gets a window above the memslot: only a window some vCPU uses is
 *     kept (case 5)
 * 14. teardown: closing everything returns VmPin, and the pages elisa holds and pins
 *     (debugfs), to their values before the test
 */
#include <sys/mman.h>
#include "elisa_kvm.h"
#include "elisa_hostile.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"

#define G 0x500000000000UL
#define G2 0x510000000000UL
#define CODE_GVA 0x600000000000UL
#define REGION_A_GVA 0x600000100000UL
#define REGION_B_GVA 0x600000200000UL
#define CALLS 500
/* A memslot added before the grant again (new_vcpu_regrant). */
#define LATE_SLOT 10
#define NR_D 5
/* Guest page-table entry bits (make_user). */
#define PTE_P_BIT 0x1ULL
#define PTE_U_BIT 0x4ULL
#define PTE_PS_BIT 0x80ULL

/* Gate indexes, as the grants in main() return them (checked there). */
#define IDX_A 511
#define IDX_B 510
#define IDX_C 509
#define IDX_D_USER 508

/* RSI = 0: counter at @region += RDI, return the new value; RSI != 0: return [RSI]. */
static void adder_code(u8 *c, u64 region)
{
	static const u8 add[] = {
		0x48, 0x85, 0xf6,			/* test rsi, rsi */
		0x75, 0x17,				/* jnz read (+23) */
		0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,	/* mov rax, region */
		0x48, 0x89, 0xfa,			/* mov rdx, rdi */
		0xf0, 0x48, 0x0f, 0xc1, 0x38,		/* lock xadd [rax], rdi */
		0x48, 0x8d, 0x04, 0x17,			/* lea rax, [rdi + rdx] */
		0xc3,					/* ret */
		0x48, 0x8b, 0x06,			/* read: mov rax, [rsi] */
		0xc3,					/* ret */
	};

	memset(c, 0xcc, 4096);
	memcpy(c, add, sizeof(add));
	memcpy(c + 7, &region, 8);
}

/* Returns @value. */
static void const_code(u8 *c, u32 value)
{
	memset(c, 0xcc, 4096);
	c[0] = 0xb8;				/* mov eax, imm32 */
	memcpy(c + 1, &value, 4);
	c[5] = 0xc3;				/* ret */
}

static void guest_main(void)
{
	long a, b, c;
	int i;

	a = elisa_call(G, IDX_A, 5, 0);
	b = elisa_call(G, IDX_B, 7, 0);
	c = elisa_call(G2, IDX_C, 0, 0);
	GUEST_SYNC_ARGS(1, a, b, c, 0);

	for (i = 0; i < CALLS; i++) {
		a = elisa_call(G, IDX_A, 1, 0);
		b = elisa_call(G, IDX_B, 1, 0);
	}
	GUEST_SYNC_ARGS(2, a, b, 0, 0);

	c = elisa_call(G, IDX_D_USER, 0, 0);
	GUEST_SYNC_ARGS(3, c, 0, 0, 0);

	b = elisa_call(G, IDX_B, 0, REGION_A_GVA);
	GUEST_SYNC_ARGS(4, b, 0, 0, 0);
	GUEST_DONE();
}

static void guest_second(void)
{
	long r;

	r = elisa_call(G, IDX_A, 1, 0);
	GUEST_SYNC_ARGS(1, r, READ_ONCE(elisa_guest_ud.count), 0, 0);
	r = elisa_call(G, IDX_A, 1, 0);
	GUEST_SYNC_ARGS(2, r, READ_ONCE(elisa_guest_ud.count), 0, 0);
	r = elisa_call(G, IDX_A, 1, 0);
	GUEST_SYNC_ARGS(3, r, 0, 0, 0);
	r = elisa_call(G, IDX_D_USER, 0, 0);
	GUEST_SYNC_ARGS(4, r, 0, 0, 0);
	GUEST_DONE();
}

/* Runs at CPL 3 (IOPL 3, IF = 0, set by the host): a user grant's caller. */
static void guest_user(void)
{
	long r = elisa_call(G, IDX_D_USER, 0, 0);

	GUEST_SYNC_ARGS(1, r, 0, 0, 0);
	GUEST_DONE();
}

/* Sets U in every present entry of the guest's page tables below @table_gpa. */
static void make_user(struct kvm_vm *vm, u64 table_gpa, int level)
{
	u64 *t = addr_gpa2hva(vm, table_gpa);
	int i;

	for (i = 0; i < 512; i++) {
		if (!(t[i] & PTE_P_BIT))
			continue;
		t[i] |= PTE_U_BIT;
		if (level > 1 && !(t[i] & PTE_PS_BIT))
			make_user(vm, t[i] & 0x000ffffffffff000ULL, level - 1);
	}
}

/*
 * A caller at CPL 3 in a new vCPU @id: every guest page made a user page (the other vCPUs'
 * runs are over), CS, SS and the data segments at DPL 3, RFLAGS with IOPL 3 (for the
 * ucall's port I/O) and IF = 0, CR4.SMAP on, and the CR4 bits @cr4. D1 is granted again
 * for the new vCPU.
 */
static struct kvm_vcpu *cpl3_vcpu(struct kvm_vm *vm, int evm, int svc, int id, u64 cr4)
{
	struct kvm_vcpu *v2 = vm_vcpu_add(vm, id, guest_user);
	struct elisa_grant gr = { .flags = ELISA_GRANT_USER, .service_fd = svc, .entry_gva = G };
	struct kvm_segment *segs[] = { NULL, NULL, NULL, NULL, NULL, NULL };
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int i;

	TEST_ASSERT(__elisa_ioctl(evm, ELISA_GRANT, &gr) == 0 && gr.gate_index == IDX_D_USER,
		    "grant D1 again for vCPU 2");
	make_user(vm, vm->mmu.pgd, vm->mmu.pgtable_levels);
	vcpu_sregs_get(v2, &sregs);
	segs[0] = &sregs.cs;
	segs[1] = &sregs.ss;
	segs[2] = &sregs.ds;
	segs[3] = &sregs.es;
	segs[4] = &sregs.fs;
	segs[5] = &sregs.gs;
	for (i = 0; i < 6; i++) {
		segs[i]->selector |= 3;
		segs[i]->dpl = 3;
	}
	sregs.cr4 |= X86_CR4_SMAP | cr4;
	sregs.cr4 &= ~(u64)X86_CR4_SMEP;
	vcpu_sregs_set(v2, &sregs);
	vcpu_regs_get(v2, &regs);
	regs.rflags = 0x3002;	/* IOPL 3, IF 0 */
	vcpu_regs_set(v2, &regs);
	return v2;
}

/* A call from CPL 3 in a new vCPU @id (cpl3_vcpu()): what it returned. */
static long call_at_cpl3(struct kvm_vm *vm, int evm, int svc, int id)
{
	struct ucall uc;

	elisa_run_sync(cpl3_vcpu(vm, evm, svc, id, 0), 1, &uc);
	return (long)uc.args[2];
}

/*
 * The same call from a vCPU whose CR4 has PCIDE too: its user gate stays closed, so the
 * entry VMFUNC raises #UD, which under SMAP cannot be delivered from these pages (all user
 * pages: the delivery's reads are implicit supervisor accesses) and ends the run. The
 * vCPU's list entry for D1 is 0, where vCPU 2's (the same call without PCIDE) is its gate.
 */
static void user_gates_closed_under_pcid(struct kvm_vm *vm, int evm, int svc)
{
	struct elisa_vcpu_debug d2, d3;
	u32 cmd = elisa_run_past_mmio(cpl3_vcpu(vm, evm, svc, 3, X86_CR4_PCIDE));
	int id = elisa_last_vm_id();
	bool ok2 = elisa_vcpu_debug(id, 2, &d2), ok3 = elisa_vcpu_debug(id, 3, &d3);

	CHECK(cmd == KVM_EXIT_SHUTDOWN && ok2 && ok3 && d2.list[IDX_D_USER] &&
		      !d3.list[IDX_D_USER] && d3.entries > 0,
	      "user_gates_closed_under_pcid",
	      ": D1 from CPL 3 under SMAP with CR4.PCIDE: exit reason %u (want 8, shutdown); "
	      "list[%d] %#llx without PCIDE (vCPU 2), %#llx with (vCPU 3, %lu entries): a user "
	      "gate cannot check CR3, and opens only without PCIDs", cmd, IDX_D_USER,
	      ok2 ? (unsigned long long)d2.list[IDX_D_USER] : 0ULL,
	      ok3 ? (unsigned long long)d3.list[IDX_D_USER] : 0ULL, ok3 ? d3.entries : 0);
}

static int grant_flags(int evm, int service, u64 g, u32 flags, struct elisa_grant *out)
{
	struct elisa_grant gr = { .flags = flags, .service_fd = service, .entry_gva = g };
	int rc = __elisa_ioctl(evm, ELISA_GRANT, &gr);

	if (out)
		*out = gr;
	return rc ? -errno : 0;
}

static int grant(int evm, int service, u64 g, struct elisa_grant *out)
{
	return grant_flags(evm, service, g, 0, out);
}

/*
 * A service granted to a VM with no vCPU yet builds no views, so its window is not kept:
 * the grant again, after a memslot at that window and a vCPU were added, plans above the
 * memslot.
 */
static void first_grant_without_vcpus(int dev, int svc)
{
	struct elisa_attach_vm av = { 0 };
	struct elisa_grant g1 = { 0 }, g2 = { 0 };
	struct kvm_vm *vm = vm_create_barebones();
	int evm, r1, r2;

	av.vm_fd = vm->fd;
	evm = elisa_ioctl(dev, ELISA_ATTACH_VM, &av);
	r1 = grant(evm, svc, G2, &g1);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, g1.trusted_gpa, LATE_SLOT, 1, 0);
	__vm_vcpu_add(vm, 0);
	r2 = grant(evm, svc, G2, &g2);
	CHECK(!r1 && !r2 && g1.nr_vcpus == 0 && g2.nr_vcpus == 1 &&
		      g2.trusted_gpa >= g1.trusted_gpa + 4096,
	      "first_grant_without_vcpus",
	      ": grants rc %d %d, vcpus %u %u; windows %#lx then %#lx (a memslot at the first)",
	      r1, r2, g1.nr_vcpus, g2.nr_vcpus, (unsigned long)g1.trusted_gpa,
	      (unsigned long)g2.trusted_gpa);
	close(evm);
	kvm_vm_free(vm);
}

int main(void)
{
	static u8 code[4096];
	struct elisa_attach_vm av = { 0 };
	struct elisa_grant ga, gb, gc, gr;
	struct kvm_vcpu *v0, *v1;
	struct kvm_vm *vm;
	struct ucall uc;
	int dev, evm, mem_a, mem_b, reg_a, reg_b, svc_a, svc_b, svc_c, svc_d[NR_D + 1];
	int rc_a, rc_b, rc_c, rc, rc2, rc3, i, cmd;
	struct kvm_sregs sregs;
	u64 *cnt_a, *cnt_b, x;
	long pin0, pin1, held0, held1, pinned0, pinned1;
	gpa_t gpa;
	bool ok, smap, pcid;

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	smap = kvm_cpu_has(X86_FEATURE_SMAP);
	TEST_ASSERT(smap || !getenv("ELISA_EXPECT_SMAP"),
		    "ELISA_EXPECT_SMAP is set, but KVM does not offer SMAP");
	pcid = smap && kvm_cpu_has(X86_FEATURE_PCID);
	/* The boot that expects SMAP (a Broadwell model) has PCIDs too: no case vanishes. */
	TEST_ASSERT(pcid || !getenv("ELISA_EXPECT_SMAP"),
		    "ELISA_EXPECT_SMAP is set, but KVM does not offer PCID");
	ksft_set_plan(11 + (smap ? 2 : 0) + (pcid ? 1 : 0));
	dev = elisa_open();
	pin0 = elisa_vm_pin_kb();
	TEST_ASSERT(elisa_pages(&held0, &pinned0), "debugfs elisa/vms");

	mem_a = memfd_page("elisa-a", NULL);
	mem_b = memfd_page("elisa-b", NULL);
	cnt_a = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mem_a, 0);
	cnt_b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mem_b, 0);
	TEST_ASSERT(cnt_a != MAP_FAILED && cnt_b != MAP_FAILED, "mmap counters");
	reg_a = elisa_region_page(dev, mem_a);
	reg_b = elisa_region_page(dev, mem_b);
	adder_code(code, REGION_A_GVA);
	svc_a = elisa_service_page(dev, "elisa-a", code, CODE_GVA, reg_a, REGION_A_GVA);
	adder_code(code, REGION_B_GVA);
	svc_b = elisa_service_page(dev, "elisa-b", code, CODE_GVA, reg_b, REGION_B_GVA);
	const_code(code, 0xc0ffee);
	svc_c = elisa_service_page(dev, "elisa-c", code, CODE_GVA, -1, 0);
	for (i = 0; i <= NR_D; i++) {
		const_code(code, i + 1);
		svc_d[i] = elisa_service_page(dev, "elisa-d", code, CODE_GVA, -1, 0);
	}

	vm = vm_create_with_one_vcpu(&v0, guest_main);
	gpa = vm_phy_pages_alloc(vm, ELISA_GUEST_BLOCK_PAGES, 0x100000, 0);
	virt_map(vm, G, gpa, ELISA_GUEST_BLOCK_PAGES);
	virt_map(vm, G2, gpa, ELISA_GUEST_BLOCK_PAGES);
	memcpy(addr_gpa2hva(vm, gpa), elisa_guest_block, sizeof(elisa_guest_block));
	elisa_install_ud_handler(vm);
	av.vm_fd = vm->fd;
	evm = elisa_ioctl(dev, ELISA_ATTACH_VM, &av);

	rc_a = grant(evm, svc_a, G, &ga);
	rc_b = grant(evm, svc_b, G, &gb);
	rc_c = grant(evm, svc_c, G2, &gc);
	ok = !rc_a && !rc_b && !rc_c && ga.gate_index == IDX_A && gb.gate_index == IDX_B &&
	     gc.gate_index == IDX_C && ga.nr_vcpus == 1 && gb.nr_vcpus == 1 && gc.nr_vcpus == 1;
	CHECK(ok, "grant_indexes", ": rc %d %d %d, indexes %u %u %u, vcpus %u %u %u", rc_a, rc_b,
	      rc_c, ga.gate_index, gb.gate_index, gc.gate_index, ga.nr_vcpus, gb.nr_vcpus,
	      gc.nr_vcpus);
	if (!ok)
		ksft_exit_fail_msg("no grants, no calls\n");

	elisa_run_sync(v0, 1, &uc);
	CHECK(uc.args[2] == 5 && uc.args[3] == 7 && uc.args[4] == 0xc0ffee && *cnt_a == 5 &&
		      *cnt_b == 7,
	      "calls_each_service", ": A %ld B %ld C %#lx; counters %lu %lu", (long)uc.args[2],
	      (long)uc.args[3], (unsigned long)uc.args[4], (unsigned long)*cnt_a,
	      (unsigned long)*cnt_b);

	x = elisa_sync_exits(v0, 2, &uc);
	CHECK(uc.args[2] == 5 + CALLS && uc.args[3] == 7 + CALLS && *cnt_a == 5 + CALLS &&
		      *cnt_b == 7 + CALLS && x == 1,
	      "zero_exits", ": A %ld B %ld, %lu exits for %d calls + 1 ucall", (long)uc.args[2],
	      (long)uc.args[3], (unsigned long)x, 2 * CALLS);

	rc_a = grant(evm, svc_a, G, &gr);
	rc = grant(evm, svc_a, G2, NULL);
	rc2 = grant_flags(evm, svc_a, G, ELISA_GRANT_USER, NULL);
	rc3 = grant_flags(evm, svc_d[0], G, 1U << 1, NULL);
	CHECK(!rc_a && gr.gate_index == IDX_A && gr.nr_vcpus == 1 && rc == -EINVAL &&
		      rc2 == -EINVAL && rc3 == -EINVAL,
	      "regrant_rules",
	      ": again at G: rc %d index %u vcpus %u; at G2: %d, as user: %d, flag 2: %d "
	      "(want %d)", rc_a, gr.gate_index, gr.nr_vcpus, rc, rc2, rc3, -EINVAL);

	v1 = vm_vcpu_add(vm, 1, guest_second);
	elisa_run_sync(v1, 1, &uc);
	ok = (long)uc.args[2] == ELISA_CALL_ERR_NOT_ENTERED && uc.args[3] == 1;
	ksft_print_msg("new vCPU before the grant again: %ld, #UDs %lu\n", (long)uc.args[2],
		       (unsigned long)uc.args[3]);
	/* Guest memory now ends above A's window (the guest never touches this slot). */
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, ga.trusted_gpa + ga.trusted_size,
				    LATE_SLOT, 1, 0);
	rc_a = grant(evm, svc_a, G, &gr);
	elisa_run_sync(v1, 2, &uc);
	ok = ok && !rc_a && gr.gate_index == IDX_A && gr.nr_vcpus == 2 &&
	     uc.args[2] == 5 + CALLS + 1 && uc.args[3] == 1 && gr.trusted_gpa == ga.trusted_gpa &&
	     gr.trusted_size == ga.trusted_size;
	CHECK(ok, "new_vcpu_regrant",
	      ": grant rc %d index %u vcpus %u; call %ld, #UDs %lu; window %#lx+%#lx (first "
	      "grant %#lx+%#lx)", rc_a, gr.gate_index, gr.nr_vcpus, (long)uc.args[2],
	      (unsigned long)uc.args[3], (unsigned long)gr.trusted_gpa,
	      (unsigned long)gr.trusted_size, (unsigned long)ga.trusted_gpa,
	      (unsigned long)ga.trusted_size);

	ok = true;
	for (i = 0; i < NR_D; i++) {
		rc = grant_flags(evm, svc_d[i], G, i ? 0 : ELISA_GRANT_USER, &gr);
		ok = ok && !rc && gr.gate_index == (u32)(IDX_C - 1 - i);
	}
	rc = grant(evm, svc_d[NR_D], G, NULL);
	CHECK(ok && rc == -ENOSPC, "max_grants", ": the ninth grant: %d (want %d)", rc, -ENOSPC);

	elisa_run_sync(v0, 3, &uc);
	CHECK((long)uc.args[2] == ELISA_CALL_ERR_NOT_ENTERED, "user_gates_need_smap",
	      ": D1 returned %ld without SMAP (want %ld)", (long)uc.args[2],
	      ELISA_CALL_ERR_NOT_ENTERED);

	TEST_ASSERT(kvm_cpu_has(X86_FEATURE_SMEP), "the emulated host must offer SMEP");
	vcpu_sregs_get(v1, &sregs);
	sregs.cr4 |= X86_CR4_SMEP | (smap ? X86_CR4_SMAP : 0);
	vcpu_sregs_set(v1, &sregs);
	elisa_run_sync(v1, 3, &uc);
	CHECK(uc.args[2] == 5 + CALLS + 2 && *cnt_a == 5 + CALLS + 2, "smep_supervisor_call",
	      ": A returned %ld, counter %lu (SMAP %s)", (long)uc.args[2],
	      (unsigned long)*cnt_a, smap ? "on" : "not offered");

	if (smap) {
		cmd = elisa_run_past_mmio(v1);
		CHECK(cmd == KVM_EXIT_SHUTDOWN, "smep_user_pages_fault",
		      ": with SMAP: exit reason %d (8 = shutdown)", cmd);
	}

	cmd = elisa_run_past_mmio(v0);
	CHECK(cmd == KVM_EXIT_SHUTDOWN && *cnt_a == 5 + CALLS + 2, "services_isolated",
	      ": exit reason %d (8 = shutdown), A's counter %lu", cmd, (unsigned long)*cnt_a);

	if (smap) {
		long r = call_at_cpl3(vm, evm, svc_d[0], 2);

		CHECK(r == 1, "user_call_cpl3", ": D1 (user pages) from CPL 3 under SMAP "
		      "returned %ld (want 1)", r);
	}
	if (pcid)
		user_gates_closed_under_pcid(vm, evm, svc_d[0]);

	first_grant_without_vcpus(dev, svc_c);

	munmap(cnt_a, 4096);
	munmap(cnt_b, 4096);
	close(evm);
	kvm_vm_free(vm);
	for (i = 0; i <= NR_D; i++)
		close(svc_d[i]);
	close(svc_a);
	close(svc_b);
	close(svc_c);
	pin1 = elisa_vm_pin_kb();
	ok = pin1 == pin0 + 8;
	close(reg_a);
	close(reg_b);
	close(mem_a);
	close(mem_b);
	ok = ok && elisa_vm_pin_kb() == pin0 && elisa_pages(&held1, &pinned1) &&
	     held1 == held0 && pinned1 == pinned0;
	CHECK(ok, "teardown",
	      ": VmPin %ld kB with the region fds open (want %ld), %ld kB after (want %ld); "
	      "elisa's pages held %ld -> %ld, pinned %ld -> %ld", pin1, pin0 + 8,
	      elisa_vm_pin_kb(), pin0, held0, held1, pinned0, pinned1);
	close(dev);
	ksft_finished();
}
