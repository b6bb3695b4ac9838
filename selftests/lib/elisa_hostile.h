/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers for selftests that attack elisa from inside a guest and judge what happened
 * from the host: the module's debugfs view of a vCPU, the trusted GPAs of its views, raw
 * runs that let faults be outcomes, and the VMM's reboot of a vCPU after a shutdown.
 * Include after elisa_kvm.h.
 *
 * Host side:
 *   elisa_last_vm_id()
 *	the id of the VM attached last (the highest "vm <id>" of debugfs elisa/vms)
 *   elisa_vcpu_debug(vm_id, vcpu, &d)
 *	one vCPU's counters and non-zero EPTP-list entries from elisa/vms; false if absent
 *   elisa_views_read(vm_id, vcpu, &v), elisa_views_free(&v)
 *	the first dump (first gate) of debugfs elisa/vm<id>/vcpu<n>-views
 *   elisa_views_gpa(&v, kind, &pages)
 *	first GPA (and page count) of the first mapping of a kind (ELISA_MAP_*); 0 if none
 *   elisa_views_frame(&v, eptp, gpa)
 *	the bytes of the frame that @gpa reaches in the view of @eptp, or NULL (a hole);
 *	an unmapped GPA reaches the APT frame
 *   elisa_run_raw(vcpu)
 *	KVM_RUN bounded by alarm(), EINTR retried, without the library's checks for
 *	unhandled guest exceptions: those are outcomes here
 *   elisa_run_raw_for(vcpu, ms)
 *	the same, but false when @ms milliseconds passed: the run was interrupted (it needs exits
 *	to notice, in the emulated host for example elisa_lapic_timer()'s)
 *   elisa_lapic_timer(vcpu, ns, lvtt)
 *	the vCPU's LAPIC timer, every @ns nanoseconds with LVTT = @lvtt (periodic, masked:
 *	exits and nothing else), through KVM_SET_LAPIC; @ns = 0 stops it
 *   elisa_gprs_zero(&regs)
 *   struct elisa_snap, elisa_snap_take(vcpu, &s), elisa_snap_restore(vcpu, &s)
 *	the vCPU's registers, special and debug registers, pending events and LAPIC, as
 *	a VMM keeps them to reboot a vCPU after KVM_EXIT_SHUTDOWN
 *   elisa_guest_pte(vm, cr3, gva)
 *	the host address of the 4 KiB leaf entry that maps @gva under a 4-level @cr3
 *   elisa_set_ist(vm, vector, stack_top)
 *	delivers @vector on IST1 = @stack_top (the library's one TSS: one vCPU at a time)
 */
#ifndef ELISA_HOSTILE_H
#define ELISA_HOSTILE_H

#include <sys/time.h>
#include "elisa_kvm.h"
#include "apic.h"

#define ELISA_DEBUGFS "/sys/kernel/debug/elisa"

/* Mapping kinds of the views dump (Documentation/testing.rst, "The views dump"). */
enum {
	ELISA_MAP_GATE_CODE = 1,
	ELISA_MAP_GATE_DATA = 2,
	ELISA_MAP_EPTP_LIST = 3,
	ELISA_MAP_GATE_STACK = 4,
	ELISA_MAP_GATE_TABLES = 5,
	ELISA_MAP_SUB_CODE = 6,
	ELISA_MAP_SUB_STACK = 7,
	ELISA_MAP_SUB_TABLES = 8,
	ELISA_MAP_REGION = 16,
};

/* ---- host: debugfs ------------------------------------------------------------------ */

static inline int elisa_last_vm_id(void)
{
	FILE *f = fopen(ELISA_DEBUGFS "/vms", "r");
	char line[512];
	int id, last = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "vm %d ", &id) == 1 && id > last)
			last = id;
	if (f)
		fclose(f);
	return last;
}

struct elisa_vcpu_debug {
	unsigned long view, entries, exits, list0_updates, view_exits, failbacks, faults;
	unsigned long gate_frames, resumes, unpaired;
	/*
	 * Why the last call was failed back (the module's FAILBACK_* bits; bits 8-15: the
	 * index + 1 of the first compared field that changed), ~0 if not shown.
	 */
	unsigned long failback_why;
	u64 list[512];		/* the non-zero entries; the others 0 */
	int nr_list;		/* how many are non-zero */
};

static inline bool elisa_vcpu_debug(int vm_id, int vcpu, struct elisa_vcpu_debug *d)
{
	FILE *f = fopen(ELISA_DEBUGFS "/vms", "r");
	char line[512];
	int cur_vm = -1, cur_vcpu = -1, n;
	unsigned int i;
	unsigned long long e;
	bool found = false;

	memset(d, 0, sizeof(*d));
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "vm %d ", &n) == 1) {
			cur_vm = n;
			cur_vcpu = -1;
		} else if (sscanf(line, " vcpu %d ", &n) == 1) {
			cur_vcpu = n;
			if (cur_vm != vm_id || n != vcpu)
				continue;
			d->failback_why = ~0UL;
			found = sscanf(line, " vcpu %*d view %lu entries %lu exits %lu list0_updates %lu "
					     "view_exits %lu failbacks %lu faults %lu gate_frames %lu "
					     "resumes %lu unpaired %lu failback_why %lx", &d->view,
				       &d->entries, &d->exits, &d->list0_updates, &d->view_exits,
				       &d->failbacks, &d->faults, &d->gate_frames, &d->resumes,
				       &d->unpaired, &d->failback_why) >= 7;
		} else if (cur_vm == vm_id && cur_vcpu == vcpu &&
			   sscanf(line, " list[%u] %llx", &i, &e) == 2 && i < 512) {
			d->list[i] = e;
			d->nr_list++;
		}
	}
	if (f)
		fclose(f);
	return found;
}

/* ---- host: the views dump ----------------------------------------------------------- */

struct elisa_views {
	u8 *buf;
	size_t len;		/* bytes of the first dump */
	size_t hdr;		/* bytes of its header (u16 at 6: 384 in version 2) */
	u32 nr_maps, nr_frames;
	u64 gate_eptp, sub_eptp, trusted_gpa, trusted_size;
};

static inline u64 elisa_le64(const u8 *p)
{
	u64 v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline bool elisa_views_read(int vm_id, int vcpu, struct elisa_views *v)
{
	char path[128];
	size_t cap = 1 << 20, n = 0;
	ssize_t r;
	int fd;

	memset(v, 0, sizeof(*v));
	snprintf(path, sizeof(path), ELISA_DEBUGFS "/vm%d/vcpu%d-views", vm_id, vcpu);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	v->buf = malloc(cap);
	while (v->buf && (r = read(fd, v->buf + n, cap - n)) > 0) {
		n += r;
		if (n == cap)
			v->buf = realloc(v->buf, cap *= 2);
	}
	close(fd);
	if (!v->buf || n < 256 || memcmp(v->buf, "ELVD", 4))
		return false;
	v->hdr = v->buf[6] | v->buf[7] << 8;
	memcpy(&v->nr_maps, v->buf + 16, 4);
	memcpy(&v->nr_frames, v->buf + 20, 4);
	v->len = v->hdr + 48 * (size_t)v->nr_maps + 4104 * (size_t)v->nr_frames;
	v->trusted_gpa = elisa_le64(v->buf + 56);
	v->trusted_size = elisa_le64(v->buf + 64);
	v->gate_eptp = elisa_le64(v->buf + 72);
	v->sub_eptp = elisa_le64(v->buf + 112);
	return v->len <= n;
}

static inline void elisa_views_free(struct elisa_views *v)
{
	free(v->buf);
	v->buf = NULL;
}

/* The first mapping of @kind (for a region, the first region after the code): its GPA. */
static inline u64 elisa_views_gpa(const struct elisa_views *v, u8 kind, u64 *pages)
{
	const u8 *m;
	u32 i;

	for (i = 0; i < v->nr_maps; i++) {
		m = v->buf + v->hdr + 48 * i;
		if (m[0] != kind || (kind == ELISA_MAP_REGION && m[1] == 0))
			continue;
		if (pages)
			*pages = elisa_le64(m + 8);
		return elisa_le64(m + 24);
	}
	return 0;
}

static inline const u8 *elisa_views_hpa_frame(const struct elisa_views *v, u64 hpa)
{
	const u8 *frames = v->buf + v->hdr + 48 * (size_t)v->nr_maps;
	u32 lo = 0, hi = v->nr_frames, mid;
	u64 h;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		h = elisa_le64(frames + 4104 * (size_t)mid);
		if (h == hpa)
			return frames + 4104 * (size_t)mid + 8;
		if (h < hpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Walks the view's EPT (4 levels, 4 KiB leaves or large ones) in the dumped frames. */
static inline const u8 *elisa_views_frame(const struct elisa_views *v, u64 eptp, u64 gpa)
{
	u64 table = eptp & PHYSICAL_PAGE_MASK, e, span;
	const u8 *t;
	int level;

	for (level = 4; level >= 1; level--) {
		t = elisa_views_hpa_frame(v, table);
		if (!t)
			return NULL;
		span = 1ULL << (12 + 9 * (level - 1));
		e = elisa_le64(t + 8 * ((gpa / span) & 511));
		if (!(e & 7))
			return NULL;
		if (level == 1 || (e & 0x80))
			return elisa_views_hpa_frame(v, (e & PHYSICAL_PAGE_MASK & ~(span - 1)) +
							   ((gpa & (span - 1)) & ~0xfffULL));
		table = e & PHYSICAL_PAGE_MASK;
	}
	return NULL;
}

/* ---- host: runs, registers, the VMM's reboot ---------------------------------------- */

static inline void elisa_run_raw(struct kvm_vcpu *vcpu)
{
	struct sigaction sa = { .sa_handler = elisa_run_timeout };
	int rc;

	TEST_ASSERT(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction(SIGALRM)");
	alarm(ELISA_RUN_TIMEOUT_S);
	do
		rc = __vcpu_run(vcpu);
	while (rc == -1 && errno == EINTR);
	alarm(0);
	TEST_ASSERT(!rc, "KVM_RUN: rc %d errno %d", rc, errno);
}

static volatile sig_atomic_t elisa_run_expired __maybe_unused;

static void __maybe_unused elisa_run_expire(int sig)
{
	(void)sig;
	elisa_run_expired = 1;
}

static inline bool elisa_run_raw_for(struct kvm_vcpu *vcpu, unsigned int ms)
{
	struct sigaction sa = { .sa_handler = elisa_run_expire };
	struct itimerval it = { .it_value = { ms / 1000, ms % 1000 * 1000 } }, off = { 0 };
	int rc;

	elisa_run_expired = 0;
	TEST_ASSERT(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction(SIGALRM)");
	setitimer(ITIMER_REAL, &it, NULL);
	do
		rc = __vcpu_run(vcpu);
	while (rc == -1 && errno == EINTR && !elisa_run_expired);
	setitimer(ITIMER_REAL, &off, NULL);
	TEST_ASSERT(!rc || elisa_run_expired, "KVM_RUN: rc %d errno %d", rc, errno);
	return !rc;
}

static inline void elisa_lapic_timer(struct kvm_vcpu *vcpu, u32 ns, u32 lvtt)
{
	struct kvm_lapic_state st;

	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &st);
	*(u32 *)&st.regs[APIC_SPIV] |= APIC_SPIV_APIC_ENABLED;
	*(u32 *)&st.regs[APIC_TDCR] = 0xb;	/* divide by 1: KVM's APIC bus runs at 1 GHz */
	*(u32 *)&st.regs[APIC_LVTT] = ns ? lvtt : APIC_LVT_MASKED;
	*(u32 *)&st.regs[APIC_TMICT] = ns;
	vcpu_ioctl(vcpu, KVM_SET_LAPIC, &st);
}

static inline bool elisa_gprs_zero(const struct kvm_regs *r)
{
	return !(r->rax | r->rbx | r->rcx | r->rdx | r->rsi | r->rdi | r->rbp | r->r8 | r->r9 |
		 r->r10 | r->r11 | r->r12 | r->r13 | r->r14 | r->r15);
}

struct elisa_snap {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_debugregs dregs;
	struct kvm_vcpu_events events;
	struct kvm_lapic_state lapic;
};

static inline void elisa_snap_take(struct kvm_vcpu *vcpu, struct elisa_snap *s)
{
	vcpu_regs_get(vcpu, &s->regs);
	vcpu_sregs_get(vcpu, &s->sregs);
	vcpu_debugregs_get(vcpu, &s->dregs);
	vcpu_events_get(vcpu, &s->events);
	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &s->lapic);
}

/* Special registers first: they carry the APIC base, whose mode the LAPIC state needs. */
static inline void elisa_snap_restore(struct kvm_vcpu *vcpu, const struct elisa_snap *s)
{
	struct kvm_sregs sregs = s->sregs;
	struct kvm_regs regs = s->regs;
	struct kvm_debugregs dregs = s->dregs;
	struct kvm_vcpu_events events = s->events;
	struct kvm_lapic_state lapic = s->lapic;

	vcpu_sregs_set(vcpu, &sregs);
	vcpu_ioctl(vcpu, KVM_SET_LAPIC, &lapic);
	vcpu_debugregs_set(vcpu, &dregs);
	vcpu_events_set(vcpu, &events);
	vcpu_regs_set(vcpu, &regs);
}

static inline u64 *elisa_guest_pte(struct kvm_vm *vm, u64 cr3, u64 gva)
{
	u64 table = cr3 & PHYSICAL_PAGE_MASK, *e = NULL;
	int level;

	for (level = 4; level >= 1; level--) {
		e = (u64 *)addr_gpa2hva(vm, table) + ((gva >> (12 + 9 * (level - 1))) & 511);
		TEST_ASSERT(*e & 1, "GVA %#lx: no entry at level %d", (unsigned long)gva, level);
		TEST_ASSERT(level == 1 || !(*e & 0x80), "GVA %#lx: a huge page", (unsigned long)gva);
		table = *e & PHYSICAL_PAGE_MASK;
	}
	return e;
}

static inline void elisa_set_ist(struct kvm_vm *vm, int vector, u64 stack_top)
{
	struct idt_entry *idt = addr_gva2hva(vm, vm->arch.idt);

	idt[vector].ist = 1;
	/* IST1 at byte 0x24 of the 64-bit TSS. */
	memcpy((u8 *)addr_gva2hva(vm, vm->arch.tss) + 0x24, &stack_top, sizeof(stack_top));
}

#endif /* ELISA_HOSTILE_H */
