// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_fuzz: a typed, stateful fuzzer over elisa's ioctls and KVM's.
 *
 * The fuzzer keeps typed pools of resources: /dev/elisa fds, memfds (sealed or not, of
 * several sizes, hugetlb or not, reopened read-only or write-only, later truncated, grown
 * or hole-punched), elisa-region fds, elisa-service fds, KVM VM fds (raw KVM ioctls, one
 * 64 KiB memslot at GPA 0 holding page tables and elisa's guest entry block), vCPU fds,
 * elisa-vm fds, and fixed fds of other kinds (/dev/null, /dev/zero, a directory, a pipe, an
 * eventfd, a socket, /dev/kvm, an O_PATH fd, a /dev/shm file). Each step picks an
 * operation and builds its arguments from live resources: every elisa ioctl, mostly with a
 * valid structure, then mutated (an fd of another kind, a closed fd, unknown flags, a
 * non-zero reserved field, sizes and offsets near overflow, unaligned values, W-only or
 * unknown access bits, too many regions, overlapping or non-canonical GVAs, a pointer that
 * is NULL, unmapped, read-only, a kernel address, or runs into an unmapped page); unknown
 * elisa ioctl numbers; close and dup of any resource; memslots added, moved and removed
 * (also inside a grant's trusted window, with dirty logging, in the SMM address space);
 * KVM_RUN of a tiny real-mode or 64-bit guest (HLT, OUT, VMFUNC with random EAX/ECX, an
 * ELISA call through the entry block with random arguments and gate index, calls in a
 * loop, a jump into the entry block, a load from the trusted window, a loop, a few random
 * instructions) into services whose code returns, faults, exits, switches views or
 * breaks the service contract; KVM_SET_REGS and KVM_SET_SREGS with random values; KVM_NMI;
 * a detach and attach again of the same VM followed by a grant and a call; and races: a
 * vCPU calling in a second thread while this one detaches its VM, attaches it again,
 * grants to it, changes its memslots or closes its fd. A periodic timer (no SA_RESTART)
 * bounds every KVM_RUN, and any call that would block.
 *
 * The guests never loop with interrupts off and never lose their IDT (see the guest
 * memory layout below): in the emulated host either would stop the whole machine.
 *
 * Choices come from one seeded generator: ELISA_FUZZ_SEED (default below), and
 * ELISA_FUZZ_CALLS system calls (default below); ELISA_FUZZ_TRACE=1 prints every call
 * and its result (from call ELISA_FUZZ_TRACE_FROM on, if given). The same seed makes the same choices; what depends on timing (where the
 * timer interrupts a run) may differ. The fuzzing runs in a child process, which records
 * what it does in shared memory; the parent prints the summary (per call and per errno)
 * as KTAP comments, and:
 *
 *  1. errnos_documented: every elisa ioctl returned 0 or an errno Documentation/api.rst
 *     lists for it (its own list, the general ENOTTY and EFAULT; ENOTTY for an elisa fd of
 *     another kind, EBADF for a closed fd); each other errno is printed with the call
 *  2. outcomes_predicted: where the request decides the outcome, it is that one: EINVAL
 *     for a field that breaks a rule of api.rst, EFAULT for an unreadable argument,
 *     EBADF/EINVAL/EACCES/EPERM for the region file, EBUSY for a VM attached already, a
 *     grant refused for a bad G or overlapping GVAs; a VM without attachment attaches; a
 *     grant returns the gate index of its service's order, every vCPU, a trusted window
 *     above every memslot, reserved 0; ELISA_GET_VERSION returns version 1
 *  3. no_crash: the fuzzing process ran all its calls and exited normally (a signal, or
 *     no progress for FUZZ_STALL_S seconds, is a failure, printed with the call), and no
 *     guest interrupted by the timer was at a "jmp ." with IF = 0 (the fuzzer's own rule,
 *     below, which only a host that exits such a loop can check)
 *  4. pages_released: after it closed everything (in random order) and exited,
 *     debugfs elisa/vms reads "pages held 0 pinned 0" and lists no VM
 *  5. attach_after: /dev/elisa still attaches a fresh VM, and releases it
 *
 * The kernel log (warnings, BUG, KASAN) is judged by the runner. To reproduce a finding:
 * run with the seed it printed and ELISA_FUZZ_CALLS one past its call index, with
 * ELISA_FUZZ_TRACE=1 for the calls that led there (Documentation/testing.rst).
 *
 * On a host without /dev/elisa, ELISA_FUZZ_KVM_ONLY=1 runs the KVM half alone (the elisa
 * ioctls then meet other fds only), for work on the fuzzer itself.
 */
#include <linux/capability.h>
#include <linux/kernel.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include "elisa_test.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"

#define DEFAULT_SEED 0xe115af0220251204ULL
/* make check: about 20 s of an emulated host's CPU; make fuzz passes 100000 */
#define DEFAULT_CALLS 5000
/* No call completed for this long: the fuzzing process hangs. */
#define FUZZ_STALL_S 60
/* A progress line this often (seconds), for long runs. */
#define FUZZ_PROGRESS_S 30
/* The period of the timer that bounds KVM_RUN and blocking calls, in microseconds. */
#define TICK_US 5000
/* RLIMIT_MEMLOCK of the fuzzing process (without CAP_IPC_LOCK): bounds pinned regions. */
#define FUZZ_MEMLOCK (32ULL << 20)
/* Huge pages reserved for hugetlb memfds during the run. */
#define FUZZ_HUGEPAGES 2

#define PAGE 4096ULL
#define G 0x500000000000ULL
#define SVC_GVA 0x600000000000ULL
#define MIN_GATE_GVA (1ULL << 32)
#define HUGE_2M (2ULL << 20)
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif

/*
 * Guest memory of every fuzzed VM: slot 0, 64 KiB at GPA 0. The guest must never fault
 * without a way out: its IDT sends every vector to a stub (OUT 0x11 with the vector, then
 * HLT) on an IST stack, its tables are read-only (CR0.WP) and not executable, and only the
 * code page, the stubs and the entry block are executable. A guest that loops with
 * RFLAGS.IF = 0 would hold the emulated host's only CPU for good (no host interrupt exits
 * it there), so no program loops but with IF = 1.
 */
#define SLOT0_SIZE 0x10000ULL
#define RM_STUB_GPA 0x500	/* real mode: every IVT entry points here (HLT) */
#define CODE_GPA 0x1000
#define PML4_GPA 0x2000
#define PDPT_GPA 0x3000
#define PD_GPA 0x4000
#define PT_GPA 0x5000		/* 4 KiB pages of the first 2 MiB */
#define GPDPT_GPA 0x6000	/* the entry block at G */
#define GPD_GPA 0x7000
#define GPT_GPA 0x8000
#define BLOCK_GPA 0x9000	/* 3 pages */
#define IDT_GPA 0xc000
#define GDT_GPA 0xd000
#define TSS_GPA 0xd100
#define STUBS_GPA 0xd800	/* 8 bytes per vector */
#define IST_TOP 0xf000		/* IST stack: the page below */
#define STACK_TOP 0x10000	/* the stack: the page below */
#define RM_STACK_TOP 0xff00
#define PORT_CALL 0x10		/* OUT after an ELISA call came back */
#define PORT_VECTOR 0x11	/* OUT of an exception stub: the vector */
#define PTE_NX (1ULL << 63)

/* ---- the record of a run, shared with the parent ----------------------------------- */

enum row {
	R_GET_VERSION, R_ATTACH, R_REGION, R_SERVICE, R_GRANT, R_UNKNOWN,
	R_CREATE_VM, R_CREATE_VCPU, R_MEMSLOT, R_RUN, R_RACE_RUN, R_SET_REGS, R_SET_SREGS, R_NMI,
	R_OPEN, R_CLOSE, R_DUP, R_MEMFD, R_TRUNCATE, R_PUNCH, R_SEAL, R_WRITE, R_REOPEN,
	NR_ROWS
};

/* Rows R_GET_VERSION..R_UNKNOWN are elisa ioctls: their errnos are checked. */
#define NR_ELISA_ROWS (R_UNKNOWN + 1)

static const char *const row_name[NR_ROWS] = {
	"ELISA_GET_VERSION", "ELISA_ATTACH_VM", "ELISA_CREATE_REGION", "ELISA_CREATE_SERVICE",
	"ELISA_GRANT", "unknown elisa ioctl", "KVM_CREATE_VM", "KVM_CREATE_VCPU",
	"KVM_SET_USER_MEMORY_REGION", "KVM_RUN", "KVM_RUN (racing, not counted)",
	"KVM_SET_REGS", "KVM_SET_SREGS", "KVM_NMI", "open",
	"close", "dup", "memfd_create", "ftruncate", "fallocate(PUNCH_HOLE)", "F_ADD_SEALS",
	"pwrite", "reopen",
};

#define MAX_ERRNO 134
#define MAX_EXIT 64
#define MAX_FINDINGS 24
#define DESC_LEN 1024

enum finding_kind { F_UNDOCUMENTED, F_UNPREDICTED };

struct finding {
	int kind, row, err;
	unsigned long long first_call, count;
	char key[96];
	char what[224];
	char desc[DESC_LEN];
};

/* Kinds of fd; K_FREE is a number that is no fd of the fuzzer (closed, or never open). */
enum kind { K_FREE, K_DEV, K_MEMFD, K_REGION, K_SERVICE, K_VM, K_VCPU, K_EVM, K_MISC, K_NR };

static const char *const kind_name[K_NR] = {
	"closed", "dev", "memfd", "region", "service", "vm", "vcpu", "elisa-vm", "other",
};

/* What the call in progress is, for a crash or a hang: its row, fds, argument bytes. */
struct cur_call {
	unsigned long long index;
	int row, fd, argmode;
	const char *what[10];	/* the target fd and each fd field: what it is */
	unsigned long cmd;
	unsigned char arg[sizeof(struct elisa_create_service)];
};

struct shared {
	unsigned long long calls, ops, elisa_checked, elisa_unchecked, predicted;
	unsigned long long count[NR_ROWS][MAX_ERRNO];	/* [row][0] successes, [row][e] errno e */
	unsigned long long exits[MAX_EXIT], run_eintr, grants_ok, calls_in_guest;
	unsigned long long vectors[256];	/* exceptions the guest's stubs reported */
	unsigned long long loops_if0;	/* guests found looping with IF = 0: the fuzzer's bug */
	unsigned long long peak[K_NR];
	struct finding findings[MAX_FINDINGS];
	int nr_findings;
	unsigned long long nr_undocumented, nr_unpredicted;
	struct cur_call cur;
	int done;
};

static struct shared *sh;

/* ---- random numbers ----------------------------------------------------------------- */

static u64 rng;

/* xorshift64*: fast, and plenty for choosing what to do next. */
static u64 rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

static u64 below(u64 n)
{
	return n ? rnd() % n : 0;
}

static bool one_in(u64 n)
{
	return below(n) == 0;
}

static const u64 interesting[] = {
	0, 1, 2, 0x7ff, 0xfff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x10000, 0xffff,
	0x200000, 0x1fffff, 0x400000, ELISA_REGION_MAX_SIZE, ELISA_REGION_MAX_SIZE + PAGE,
	ELISA_REGION_MAX_SIZE - PAGE, ELISA_SERVICE_MAX_CODE, ELISA_SERVICE_MAX_CODE + PAGE,
	0xfffff000, 0xffffffff, 0x100000000ULL, 0x100001000ULL, 0x100002000ULL,
	0x7ffffffff000ULL, 0x7fffffffffffULL, 0x800000000000ULL, 0xffff800000000000ULL,
	0xfffffffffffff000ULL, 0x7fffffffffffffffULL, 0x8000000000000000ULL, -PAGE,
	-2 * PAGE, -1ULL, -2ULL, G, G - PAGE, G + PAGE, G - 0x2000, G + 0x2000, SVC_GVA,
};

static u64 any_interesting(void)
{
	return interesting[below(ARRAY_SIZE(interesting))];
}

static u64 mutate_u64(u64 v)
{
	switch (below(7)) {
	case 0:
	case 1:
		return any_interesting();
	case 2:
		return v ^ (1ULL << below(64));
	case 3:
		return v + (one_in(2) ? 1 : PAGE) * (one_in(2) ? 1 : -1ULL);
	case 4:
		return v + 1 + below(PAGE - 1);
	case 5:
		return -v;
	default:
		return rnd();
	}
}

/* ---- resources ---------------------------------------------------------------------- */

#define MAX_RES 96
#define MAX_VMS 8
#define NR_SLOTS 6
#define MAX_ATTS 16
#define MAX_VCPUS_PER_VM 3

static const int pool_cap[K_NR] = {
	[K_DEV] = 3, [K_MEMFD] = 10, [K_REGION] = 12, [K_SERVICE] = 10, [K_VM] = 5,
	[K_VCPU] = 8, [K_EVM] = 6, [K_MISC] = 16,
};

/* A vCPU's mode after its last KVM_SET_SREGS: only the two templates may run. */
enum { M_REAL, M_LONG, M_RANDOM };

struct res {
	int kind, fd;
	int vm;			/* K_VM, K_VCPU, K_EVM: index in vms[] */
	int att;		/* K_EVM: index in atts[] */
	int id;			/* K_SERVICE: the service; K_VCPU: vCPU id; K_MEMFD: the file */
	bool readable, writable, shmem, hugetlb;	/* K_MEMFD, K_MISC */
	bool opath;		/* K_MISC: an O_PATH fd, which fget() does not find */
	bool unreadable;	/* K_MISC: open without read access (FMODE_READ) */
	u64 length;		/* K_REGION */
	int robj;		/* K_REGION: its region in robjs[] */
	u64 code_gva, code_size;	/* K_SERVICE: its GVAs, for the grant's predictions */
	int nr_regions;
	u64 rgva[ELISA_SERVICE_MAX_REGIONS], rsize[ELISA_SERVICE_MAX_REGIONS];
	int rid[ELISA_SERVICE_MAX_REGIONS];	/* K_SERVICE: its regions in robjs[] */
	struct kvm_run *run;	/* K_VCPU */
	bool fresh;		/* K_VCPU: needs a program before it runs again */
	int mode;		/* K_VCPU: M_REAL, M_LONG or M_RANDOM (last KVM_SET_SREGS) */
	int prog;		/* K_VCPU: its last program, for the trace */
	bool pending;		/* K_VCPU: its last run ended at an I/O or MMIO exit */
	const char *name;	/* K_MISC */
};

static struct res res[MAX_RES];

struct slot {
	bool used;
	u8 *hva;
	u64 gpa, size;
	u32 id;
};

/* A VM the fuzzer made: alive while any VM, vCPU or elisa-vm fd of the pools names it. */
struct fvm {
	int refs;
	u8 *mem;		/* slot 0 */
	struct slot slot[NR_SLOTS];
	int nr_vcpus;		/* vCPUs created: KVM never removes one */
	int att;		/* the attachment, or -1 */
	u64 trusted_gpa, trusted_size;
	unsigned long type;	/* KVM_CREATE_VM's type: elisa attaches only the default one */
};

static struct fvm vms[MAX_VMS];

/* One attachment, as the fuzzer models it: the services granted, in gate order. */
struct att {
	int refs;		/* elisa-vm fds (dups) of the pools */
	int vm;
	bool unknown;		/* a call may have changed it unseen (a grant that faulted) */
	int n;
	struct {
		int svc;
		u64 g;
		u32 flags;
		/*
		 * The window of the first grant that gave a vCPU the gate, which every later
		 * grant keeps (pinned); until then each grant plans anew.
		 */
		u64 trusted_gpa;
		bool pinned;
	} grant[ELISA_MAX_GRANTS];
};

static struct att atts[MAX_ATTS];

/*
 * A region as the fuzzer models it, while a region fd or a service fd of the pools names
 * it: its file (a memfd's id) and range, and whether a hole punched in the file since took
 * pages of it out of the file ("decoupled": services that map it are refused with ENXIO).
 */
#define MAX_ROBJS 256

struct robj {
	int file;
	u64 offset, length;
	bool hugetlb, decoupled;
};

static struct robj robjs[MAX_ROBJS];

static int stale[8], nr_stale;	/* numbers of fds closed lately */
static int kvm_fd = -1, run_size, next_id = 1;
static struct kvm_sregs real_sregs;	/* a new vCPU's, at CS base 0 */
static struct kvm_cpuid2 *cpuid;
static bool kvm_only;
static u64 trace_from = -1ULL;	/* the first call traced */

static int count_kind(int kind)
{
	int i, n = 0;

	for (i = 0; i < MAX_RES; i++)
		n += res[i].kind == kind;
	return n;
}

static struct res *pick(int kind)
{
	int n = count_kind(kind), k, i;

	if (!n)
		return NULL;
	k = below(n);
	for (i = 0; i < MAX_RES; i++)
		if (res[i].kind == kind && !k--)
			return &res[i];
	return NULL;
}

static struct res *find_fd(int fd)
{
	int i;

	for (i = 0; i < MAX_RES; i++)
		if (res[i].kind != K_FREE && res[i].fd == fd)
			return &res[i];
	return NULL;
}

static int fd_kind(int fd)
{
	struct res *r = fd >= 0 ? find_fd(fd) : NULL;

	if (r)
		return r->kind;
	return fd >= 0 && fd <= 2 ? K_MISC : K_FREE;
}

/* Does the kernel's fget() find @fd? Not a closed number, nor an O_PATH fd. */
static bool fget_ok(int fd)
{
	struct res *r = fd >= 0 ? find_fd(fd) : NULL;

	if (fd < 0)
		return false;
	return r ? !r->opath : fd <= 2;
}

/* What fd @fd is, in a word or two (a string that lives as long as the program). */
static const char *fd_what(int fd)
{
	struct res *r = fd >= 0 ? find_fd(fd) : NULL;

	if (r && r->kind == K_MISC)
		return r->name;
	if (r && r->kind == K_MEMFD)
		return r->readable && r->writable ? "memfd" : r->readable ? "memfd (read-only)" :
		       "memfd (write-only)";
	if (!r && fd >= 0 && fd <= 2)
		return "stdio";
	return kind_name[r ? r->kind : K_FREE];
}

static bool is_elisa_kind(int kind)
{
	return kind == K_DEV || kind == K_EVM || kind == K_REGION || kind == K_SERVICE;
}

/* Is [gva, gva + len) canonical for 4-level paging, without wrapping? */
static bool canonical(u64 gva, u64 len)
{
	u64 end = gva + len - 1;

	if (!len || end < gva)
		return false;
	return (end < 0x800000000000ULL) || (gva >= 0xffff800000000000ULL);
}

static bool overlap(u64 a, u64 alen, u64 b, u64 blen)
{
	return a < b + blen && b < a + alen;
}

/* ---- counting and checking calls ---------------------------------------------------- */

static void count_call(int row, long r, int err)
{
	sh->calls++;
	sh->count[row][r < 0 ? (err > 0 && err < MAX_ERRNO ? err : MAX_ERRNO - 1) : 0]++;
}

static const char *errname(int e)
{
	const char *s = e ? strerrorname_np(e) : "ok";

	return s ? s : "E?";
}

static bool tracing(void)
{
	return sh->calls >= trace_from;
}

static void trace_msg(const char *fmt, ...) __printf(1, 2);

static void trace_msg(const char *fmt, ...)
{
	sigset_t all, old;
	va_list ap;

	if (!tracing())
		return;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* A plain system call the fuzzer counts; returns its result, errno kept. */
#define COUNTED(row, expr)                                                                \
	({                                                                                \
		long __r;                                                                 \
		errno = 0;                                                                \
		__r = (long)(expr);                                                       \
		int __e = errno;                                                          \
		count_call(row, __r, __e);                                                \
		trace_msg("# %llu %s: %ld %s\n", sh->calls - 1, row_name[row], __r,        \
			  __r < 0 ? errname(__e) : "");                                   \
		errno = __e;                                                              \
		__r;                                                                      \
	})

/* ---- argument placement ------------------------------------------------------------- */

enum argmode { ARG_OK, ARG_RO, ARG_NULL, ARG_UNMAPPED, ARG_STRADDLE, ARG_KERNEL,
	       ARG_NONCANON, NR_ARGMODES };

static const char *const argmode_name[NR_ARGMODES] = {
	"", " (read-only page)", " (NULL)", " (unmapped page)", " (runs into an unmapped page)",
	" (kernel address)", " (non-canonical address)",
};

static u8 *arena;	/* page 0 read-write, page 1 none, page 2 read-only */

static int pick_argmode(void)
{
	if (!one_in(12))
		return ARG_OK;
	return 1 + below(NR_ARGMODES - 1);
}

/* Where the argument of @size bytes goes for @mode; copies @arg there when readable. */
static void *place_arg(int mode, const void *arg, size_t size)
{
	u8 *p;

	switch (mode) {
	case ARG_OK:
		p = arena + below((PAGE - size) / 8) * 8;
		memcpy(p, arg, size);
		return p;
	case ARG_RO:
		mprotect(arena + 2 * PAGE, PAGE, PROT_READ | PROT_WRITE);
		memcpy(arena + 2 * PAGE, arg, size);
		mprotect(arena + 2 * PAGE, PAGE, PROT_READ);
		return arena + 2 * PAGE;
	case ARG_NULL:
		return NULL;
	case ARG_UNMAPPED:
		return arena + PAGE + below(PAGE);
	case ARG_STRADDLE:
		p = arena + PAGE - 1 - below(size - 1);
		memcpy(p, arg, arena + PAGE - p);
		return p;
	case ARG_KERNEL:
		return (void *)(0xffff888000000000UL + below(1 << 20) * PAGE);
	default:
		return (void *)(0x0000800000000000UL + below(1 << 20) * PAGE);
	}
}

/* ---- what each elisa ioctl may return (Documentation/api.rst) ---------------------- */

static bool documented[NR_ELISA_ROWS][MAX_ERRNO];

static void document(int row, const int *errs, int n)
{
	int i;

	/* every ioctl: a wrong number or size (ENOTTY), an unreadable argument (EFAULT) */
	documented[row][ENOTTY] = documented[row][EFAULT] = true;
	for (i = 0; i < n; i++)
		documented[row][errs[i]] = true;
}

static void documented_init(void)
{
	static const int version[] = { EINVAL };
	/*
	 * api.rst's lists, as they stand (the grant's ENODEV cannot happen and is not one),
	 * less the grant's EIO: documented, but an inconsistency of elisa's own, which the
	 * fuzzer must report.
	 */
	static const int attach[] = { EBADF, EINVAL, EBUSY, EOPNOTSUPP, ENODEV, ENOSPC, ESRCH,
				      ENOMEM, EMFILE, ENFILE };
	static const int region[] = { EBADF, EINVAL, EACCES, EPERM, ENOMEM, ENOSPC, EDQUOT,
				      EMFILE, ENFILE };
	static const int service[] = { EBADF, EINVAL, ENXIO, EINTR, ENOMEM, EMFILE, ENFILE };
	static const int grant[] = { EBADF, EINVAL, ENXIO, ENOSPC, ESRCH, EINTR, EOPNOTSUPP,
				     ENOMEM };

	document(R_GET_VERSION, version, ARRAY_SIZE(version));
	document(R_ATTACH, attach, ARRAY_SIZE(attach));
	document(R_REGION, region, ARRAY_SIZE(region));
	document(R_SERVICE, service, ARRAY_SIZE(service));
	document(R_GRANT, grant, ARRAY_SIZE(grant));
	document(R_UNKNOWN, NULL, 0);
}

/*
 * What the fuzzer knows of a call's outcome before making it: @exact is the only errno it
 * may fail with (0: any documented one), @must_fail that it cannot succeed, @must_succeed
 * that it cannot fail but with ENOMEM; @why says why.
 */
struct expect {
	int exact;
	bool must_fail, must_succeed;
	char why[96];
};

static void expect_set(struct expect *x, int exact, const char *why)
{
	if (x->exact || x->must_succeed)
		return;		/* the first reason in the kernel's order of checks wins */
	x->exact = exact;
	x->must_fail = true;
	snprintf(x->why, sizeof(x->why), "%s", why);
}

static void describe(char *buf, size_t n, const struct cur_call *c);

static void finding(int kind, int row, int err, const char *key, const char *fmt, ...)
	__printf(5, 6);

/* Records a finding; the same @kind, @row, @err and @key only count once more. */
static void finding(int kind, int row, int err, const char *key, const char *fmt, ...)
{
	struct finding *f;
	va_list ap;
	int i;

	if (kind == F_UNDOCUMENTED)
		sh->nr_undocumented++;
	else
		sh->nr_unpredicted++;
	for (i = 0; i < sh->nr_findings; i++) {
		f = &sh->findings[i];
		if (f->kind == kind && f->row == row && f->err == err && !strcmp(f->key, key)) {
			f->count++;
			return;
		}
	}
	if (sh->nr_findings == MAX_FINDINGS)
		return;
	f = &sh->findings[sh->nr_findings++];
	f->kind = kind;
	f->row = row;
	f->err = err;
	f->count = 1;
	snprintf(f->key, sizeof(f->key), "%s", key);
	f->first_call = sh->cur.index;
	va_start(ap, fmt);
	vsnprintf(f->what, sizeof(f->what), fmt, ap);
	va_end(ap);
	describe(f->desc, sizeof(f->desc), &sh->cur);
}

/*
 * Makes elisa ioctl @cmd (row @row) on @fd with the @size bytes at @arg placed by @mode,
 * records it as the call in progress, counts and checks its result. Returns the result
 * (errno kept); *@out gets the argument's bytes after the call when readable.
 */
static long eioctl(int row, int fd, unsigned long cmd, void *arg, size_t size, int mode,
		   const int *fds, int nr_fds, struct expect *x)
{
	int kind = fd_kind(fd), want, err, i;
	bool checked = true;
	void *p;
	long r;

	want = row == R_GRANT ? K_EVM : row == R_UNKNOWN ? -1 : K_DEV;
	sh->cur.index = sh->calls;
	sh->cur.row = row;
	sh->cur.fd = fd;
	sh->cur.cmd = cmd;
	sh->cur.argmode = mode;
	sh->cur.what[0] = fd_what(fd);
	for (i = 0; i < 9; i++)
		sh->cur.what[i + 1] = i < nr_fds ? fd_what(fds[i]) : "";
	memcpy(sh->cur.arg, arg, size);

	/* the target fd decides first: closed, another elisa file, not an elisa file */
	if (kind == K_FREE) {
		x->exact = EBADF;
		x->must_fail = true;
		x->must_succeed = false;
		snprintf(x->why, sizeof(x->why), "fd %d is not open", fd);
	} else if (is_elisa_kind(kind) && (kind != want || row == R_UNKNOWN)) {
		x->exact = ENOTTY;
		x->must_fail = true;
		x->must_succeed = false;
		snprintf(x->why, sizeof(x->why), "an elisa %s fd has no such ioctl",
			 kind_name[kind]);
	} else if (!is_elisa_kind(kind)) {
		checked = false;
	} else if (mode != ARG_OK && mode != ARG_RO) {
		x->exact = EFAULT;
		x->must_fail = true;
		x->must_succeed = false;
		snprintf(x->why, sizeof(x->why), "the argument cannot be read");
	}

	p = place_arg(mode, arg, size);
	errno = 0;
	r = ioctl(fd, cmd, p);
	err = errno;
	count_call(row, r, err);
	if (mode == ARG_OK)
		memcpy(arg, p, size);
	if (tracing()) {
		char d[DESC_LEN];

		describe(d, sizeof(d), &sh->cur);
		trace_msg("# %llu %s: %ld %s\n", sh->cur.index, d, r, r < 0 ? errname(err) : "");
	}
	if (!checked) {
		sh->elisa_unchecked++;
		errno = err;
		return r;
	}
	sh->elisa_checked++;
	if (kind == K_FREE && r < 0 && err == EBADF)
		;	/* the VFS's answer for a closed fd, whatever the ioctl */
	else if (r < 0 && (err >= MAX_ERRNO || !documented[row][err]))
		finding(F_UNDOCUMENTED, row, err, "", "%s failed with %s, which api.rst does not "
			"list for it", row_name[row], errname(err));
	else if (r < 0 && x->exact && err != x->exact)
		finding(F_UNPREDICTED, row, err, x->why, "%s failed with %s, not %s: %s",
			row_name[row], errname(err), errname(x->exact), x->why);
	else if (r >= 0 && x->must_fail)
		finding(F_UNPREDICTED, row, 0, x->why, "%s succeeded, but must fail (%s): %s",
			row_name[row], x->exact ? errname(x->exact) : "any errno", x->why);
	else if (r < 0 && x->must_succeed && err != ENOMEM)
		finding(F_UNPREDICTED, row, err, x->why, "%s failed with %s, but must succeed: %s",
			row_name[row], errname(err), x->why);
	if (x->exact || x->must_fail || x->must_succeed)
		sh->predicted++;
	errno = err;
	return r;
}

/* ---- pools -------------------------------------------------------------------------- */

static void vm_put(int vm);
static void close_res(struct res *r);

/* A new entry of @kind for @fd; a full pool first closes one of its entries. */
static struct res *add_res(int kind, int fd)
{
	struct res *r;
	int i, n;

	if (count_kind(kind) >= pool_cap[kind])
		close_res(pick(kind));
	for (i = 0; i < MAX_RES; i++)
		if (res[i].kind == K_FREE)
			break;
	TEST_ASSERT(i < MAX_RES, "resource table full");
	r = &res[i];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->fd = fd;
	r->vm = r->att = -1;
	n = count_kind(kind);
	if ((unsigned long long)n > sh->peak[kind])
		sh->peak[kind] = n;
	return r;
}

static void close_res(struct res *r)
{
	struct att *a;
	int fd = r->fd;

	if (r->kind == K_VCPU && r->run)
		munmap(r->run, run_size);
	if (r->kind == K_EVM) {
		a = &atts[r->att];
		if (!--a->refs && a->vm >= 0 && vms[a->vm].att == r->att)
			vms[a->vm].att = -1;	/* its last fd: closing it detaches */
	}
	COUNTED(R_CLOSE, close(fd));
	if (r->vm >= 0)
		vm_put(r->vm);
	r->kind = K_FREE;
	stale[nr_stale++ % ARRAY_SIZE(stale)] = fd;
}

/* An fd for a field that wants @want: mostly a live one of that kind, else anything. */
static int gen_fd(int want)
{
	struct res *r = pick(want);
	u64 c = below(24);

	if (c < 19 && r)
		return r->fd;
	if (c < 21) {
		r = pick(1 + below(K_NR - 1));
		if (r)
			return r->fd;
	}
	if (c == 21 && nr_stale)
		return stale[below(min_t(int, nr_stale, ARRAY_SIZE(stale)))];
	switch (below(4)) {
	case 0:
		return -1;
	case 1:
		return INT32_MAX;
	case 2:
		return 1000 + below(24);
	default:
		return (int)rnd();
	}
}

/* ---- service code -------------------------------------------------------------------- */

/*
 * Service bodies: each follows or breaks the service contract in its own way. None loops:
 * a service runs with IF = 0 (see the guest memory layout).
 */
static const struct {
	u8 len;
	u8 bytes[15];
} svc_bodies[] = {
	{ 4, { 0x48, 0x89, 0xf8, 0xc3 } },			/* mov rax, rdi; ret */
	{ 1, { 0xc3 } },					/* ret */
	{ 7, { 0x48, 0x89, 0x3e, 0x48, 0x89, 0xf8, 0xc3 } },	/* mov [rsi], rdi; ...; ret */
	{ 4, { 0x48, 0x8b, 0x06, 0xc3 } },			/* mov rax, [rsi]; ret */
	{ 2, { 0x0f, 0x0b } },					/* ud2 */
	{ 1, { 0xcc } },					/* int3 */
	{ 1, { 0xf4 } },					/* hlt */
	{ 3, { 0x0f, 0xa2, 0xc3 } },				/* cpuid; ret */
	{ 3, { 0xe6, 0x10, 0xc3 } },				/* out 0x10, al; ret */
	{ 8, { 0x31, 0xc0, 0x89, 0xf9, 0x0f, 0x01, 0xd4, 0xc3 } },	/* vmfunc(0, edi) */
	{ 7, { 0x48, 0x89, 0xfb, 0x48, 0x89, 0xfd, 0xc3 } },	/* mov rbx, rdi; mov rbp, rdi */
	{ 4, { 0x48, 0x89, 0xfc, 0xc3 } },			/* mov rsp, rdi; ret */
	{ 2, { 0xff, 0xe7 } },					/* jmp rdi */
};

/* Writes a service body at @off of @fd, int3 up to the page end. */
static void write_code(int fd, u64 off)
{
	u8 page[PAGE];
	int b = below(ARRAY_SIZE(svc_bodies));

	memset(page, 0xcc, sizeof(page));
	memcpy(page, svc_bodies[b].bytes, svc_bodies[b].len);
	COUNTED(R_WRITE, pwrite(fd, page, sizeof(page), off));
}

/* ---- elisa operations --------------------------------------------------------------- */

static void op_open_dev(void)
{
	int fd;

	if (kvm_only)
		return;
	fd = COUNTED(R_OPEN, open(ELISA_DEV, O_RDWR | O_CLOEXEC));
	if (fd >= 0)
		add_res(K_DEV, fd);
}

/* The target of a /dev/elisa ioctl: mostly an open /dev/elisa (opened when none is). */
static int dev_fd(void)
{
	struct res *r = pick(K_DEV);

	if (!r && !one_in(4)) {
		op_open_dev();
		r = pick(K_DEV);
	}
	return r && !one_in(30) ? r->fd : gen_fd(K_DEV);
}

static void op_get_version(void)
{
	struct elisa_version v = { 0 };
	struct expect x = { 0 };
	int mode = pick_argmode(), fd = dev_fd();
	long r;

	if (one_in(6))
		v.flags = 1U << below(32);
	if (one_in(6))
		v.reserved[below(4)] = mutate_u64(0) | 1;
	if (one_in(8))
		v.api_version = rnd();
	if (v.flags || v.reserved[0] || v.reserved[1] || v.reserved[2] || v.reserved[3])
		expect_set(&x, EINVAL, "flags or reserved not 0");
	else if (mode == ARG_RO)
		expect_set(&x, EFAULT, "the argument cannot be written");
	r = eioctl(R_GET_VERSION, fd, ELISA_GET_VERSION, &v, sizeof(v), mode, NULL, 0, &x);
	if (r == 0 && mode == ARG_OK && fd_kind(fd) == K_DEV &&
	    (v.api_version != ELISA_API_VERSION || v.flags ||
	     (v.caps & ELISA_CAPS_REQUIRED) != ELISA_CAPS_REQUIRED || v.reserved[0] ||
	     v.reserved[1] || v.reserved[2] || v.reserved[3]))
		finding(F_UNPREDICTED, R_GET_VERSION, 0, "output",
			"ELISA_GET_VERSION returned version %u caps %#llx flags %#x reserved %#llx",
			v.api_version, (unsigned long long)v.caps, v.flags,
			(unsigned long long)(v.reserved[0] | v.reserved[1] | v.reserved[2] |
					     v.reserved[3]));
}

static u64 file_size(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : st.st_size;
}

/* The kernel's checks of the region file, in its order (elisa_shim_region_pin). */
static void predict_region_fd(struct expect *x, int fd, u64 offset, u64 length)
{
	struct res *r = fd >= 0 ? find_fd(fd) : NULL;
	int seals;

	if (!fget_ok(fd)) {
		expect_set(x, EBADF, "the file is not open (or O_PATH)");
		return;
	}
	if (!r || !r->shmem) {
		expect_set(x, EINVAL, "not a shmem or hugetlbfs file");
		return;
	}
	if (!r->readable || !r->writable) {
		expect_set(x, EACCES, "the file is not open read-write");
		return;
	}
	if (offset + length > file_size(fd)) {
		expect_set(x, EINVAL, "the range goes beyond the end of the file");
		return;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals > 0 && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
		expect_set(x, EPERM, "sealed against writes");
	else if (r->kind == K_MEMFD && (seals < 0 || !(seals & F_SEAL_SHRINK)))
		expect_set(x, EPERM, "a memfd not sealed with F_SEAL_SHRINK");
}

/* A free entry of robjs[]: one that no region or service fd of the pools names. */
static int robj_new(void)
{
	static bool used[MAX_ROBJS];
	int i, k;

	memset(used, 0, sizeof(used));
	for (i = 0; i < MAX_RES; i++) {
		if (res[i].kind == K_REGION)
			used[res[i].robj] = true;
		for (k = 0; res[i].kind == K_SERVICE && k < res[i].nr_regions; k++)
			if (res[i].rid[k] >= 0)
				used[res[i].rid[k]] = true;
	}
	for (i = 0; i < MAX_ROBJS; i++)
		if (!used[i])
			return i;
	TEST_ASSERT(false, "no free region entry");
	return 0;
}

static void op_region(void)
{
	struct elisa_create_region cr = { 0 };
	struct expect x = { 0 };
	struct res *m = pick(K_MEMFD);
	int mode = pick_argmode(), fd = dev_fd(), n, i;
	u64 size;
	long r;

	cr.fd = m && !one_in(10) ? m->fd : gen_fd(K_MEMFD);
	size = m ? file_size(m->fd) : 0;
	if (size >= PAGE) {
		cr.offset = below(size / PAGE) * PAGE;
		cr.length = (1 + below(min_t(u64, (size - cr.offset) / PAGE, 64))) * PAGE;
	} else {
		cr.length = PAGE;
	}
	n = one_in(3) ? 1 + below(3) : 0;
	for (i = 0; i < n; i++) {
		switch (below(6)) {
		case 0:
			cr.flags = one_in(2) ? 1U << below(32) : rnd();
			break;
		case 1:
			cr.reserved[below(4)] = mutate_u64(0) | 1;
			break;
		case 2:
			cr.offset = mutate_u64(cr.offset);
			break;
		case 3:
			cr.length = mutate_u64(cr.length);
			break;
		case 4:
			/* near the top of the address space: offset + length overflows or not */
			cr.length = (1 + below(16)) * PAGE;
			cr.offset = -cr.length + (one_in(2) ? 0 : PAGE);
			break;
		default:
			cr.fd = gen_fd(below(2) ? K_MISC : K_MEMFD);
		}
	}
	/* the field checks first (elisa_uapi::check::create_region), then the file */
	if (cr.flags || cr.reserved[0] || cr.reserved[1] || cr.reserved[2] || cr.reserved[3])
		expect_set(&x, EINVAL, "flags or reserved not 0");
	else if (cr.offset % PAGE || cr.length % PAGE)
		expect_set(&x, EINVAL, "offset or length not a multiple of 4096");
	else if (!cr.length || cr.length > ELISA_REGION_MAX_SIZE)
		expect_set(&x, EINVAL, "length 0 or above 1 GiB");
	else if (cr.offset + cr.length < cr.offset)
		expect_set(&x, EINVAL, "offset + length overflows");
	else
		predict_region_fd(&x, cr.fd, cr.offset, cr.length);
	r = eioctl(R_REGION, fd, ELISA_CREATE_REGION, &cr, sizeof(cr), mode, &cr.fd, 1, &x);
	if (r >= 0) {
		struct res *rr = add_res(K_REGION, r), *f = find_fd(cr.fd);
		struct robj *o;

		rr->length = cr.length;
		rr->robj = robj_new();
		o = &robjs[rr->robj];
		memset(o, 0, sizeof(*o));
		o->file = f && f->kind == K_MEMFD ? f->id : -1;
		o->offset = cr.offset;
		o->length = cr.length;
		o->hugetlb = f && f->hugetlb;
	}
}

static void op_service(void)
{
	static const u32 bad_access[] = { ELISA_ACCESS_WRITE, 4, 7, 0, 1U << 31,
					  ELISA_ACCESS_READ | 4 };
	struct elisa_create_service cs = { 0 };
	struct expect x = { 0 };
	struct res *code = pick(K_MEMFD), *reg, *s, *rr;
	int mode = pick_argmode(), fd = dev_fd(), fds[1 + ELISA_SERVICE_MAX_REGIONS], n, i, k;
	u64 size, pages;
	bool bad = false;
	long r;

	cs.code_fd = code && !one_in(12) ? code->fd : gen_fd(one_in(2) ? K_MISC : K_MEMFD);
	size = code ? file_size(code->fd) : 0;
	pages = min_t(u64, size / PAGE, ELISA_SERVICE_MAX_CODE / PAGE);
	cs.code_size = (1 + below(pages ? min_t(u64, pages, 4) : 1)) * PAGE;
	if (size > cs.code_size)
		cs.code_offset = below((size - cs.code_size) / PAGE + 1) * PAGE;
	if (code && code->writable && one_in(2))
		write_code(code->fd, cs.code_offset);
	cs.code_gva = SVC_GVA + below(64) * (1ULL << 32);
	cs.entry_offset = one_in(3) ? below(cs.code_size) : 0;
	cs.nr_regions = below(3) ? below(3) : below(ELISA_SERVICE_MAX_REGIONS + 1);
	for (i = 0; i < (int)cs.nr_regions; i++) {
		reg = pick(K_REGION);
		cs.regions[i].region_fd = reg ? reg->fd : gen_fd(K_REGION);
		cs.regions[i].access = ELISA_ACCESS_READ | (one_in(3) ? 0 : ELISA_ACCESS_WRITE);
		cs.regions[i].gva = cs.code_gva + (u64)(i + 1) * (ELISA_REGION_MAX_SIZE + PAGE);
	}
	n = one_in(3) ? 1 + below(3) : 0;
	for (k = 0; k < n; k++) {
		i = below(ELISA_SERVICE_MAX_REGIONS);
		switch (below(14)) {
		case 0:
			cs.flags = 1U << below(32);
			break;
		case 1:
			cs.reserved0 = rnd() | 1;
			break;
		case 2:
			cs.reserved[below(4)] = mutate_u64(0) | 1;
			break;
		case 3:
			cs.code_offset = mutate_u64(cs.code_offset);
			break;
		case 4:
			cs.code_size = mutate_u64(cs.code_size);
			break;
		case 5:
			cs.code_gva = mutate_u64(cs.code_gva);
			break;
		case 6:
			cs.entry_offset = mutate_u64(cs.entry_offset);
			break;
		case 7:
			cs.nr_regions = one_in(2) ? ELISA_SERVICE_MAX_REGIONS + below(4) : rnd();
			break;
		case 8:
			/* an unused entry that is not all zero */
			cs.regions[i].gva |= one_in(2) ? PAGE : 0;
			cs.regions[i].region_fd |= one_in(2) ? 1 : 0;
			break;
		case 9:
			cs.regions[i].region_fd = gen_fd(one_in(2) ? K_REGION : 1 + below(K_NR - 1));
			break;
		case 10:
			/* write only, execute (an unknown bit), everything, nothing */
			cs.regions[i].access = bad_access[below(ARRAY_SIZE(bad_access))];
			break;
		case 11:
			cs.regions[i].gva = one_in(2) ? mutate_u64(cs.regions[i].gva) :
				one_in(2) ? cs.code_gva : G - 0x2000 + below(5) * PAGE;
			break;
		case 12:
			cs.regions[i].reserved[below(2)] = rnd() | 1;
			break;
		default:
			cs.code_fd = gen_fd(1 + below(K_NR - 1));
		}
	}
	/* the field checks first (elisa_uapi::check::create_service) */
	if (cs.flags || cs.reserved0 || cs.reserved[0] || cs.reserved[1] || cs.reserved[2] ||
	    cs.reserved[3])
		expect_set(&x, EINVAL, "flags or reserved not 0");
	else if (cs.nr_regions > ELISA_SERVICE_MAX_REGIONS)
		expect_set(&x, EINVAL, "more than 8 regions");
	for (i = min_t(u32, cs.nr_regions, ELISA_SERVICE_MAX_REGIONS);
	     i < ELISA_SERVICE_MAX_REGIONS; i++)
		if (cs.regions[i].region_fd || cs.regions[i].access || cs.regions[i].gva ||
		    cs.regions[i].reserved[0] || cs.regions[i].reserved[1])
			expect_set(&x, EINVAL, "an unused region entry is not 0");
	if (cs.code_offset % PAGE || cs.code_size % PAGE || cs.code_gva % PAGE || !cs.code_size ||
	    cs.code_size > ELISA_SERVICE_MAX_CODE)
		expect_set(&x, EINVAL, "code offset, size or gva");
	else if (cs.entry_offset >= cs.code_size)
		expect_set(&x, EINVAL, "entry_offset not below code_size");
	else if (cs.code_gva + cs.entry_offset < cs.code_gva)
		expect_set(&x, EINVAL, "code_gva + entry_offset overflows");
	for (i = 0; i < (int)min_t(u32, cs.nr_regions, ELISA_SERVICE_MAX_REGIONS); i++) {
		if (cs.regions[i].reserved[0] || cs.regions[i].reserved[1] ||
		    cs.regions[i].gva % PAGE)
			expect_set(&x, EINVAL, "a region's gva or reserved");
		if (cs.regions[i].access != ELISA_ACCESS_READ &&
		    cs.regions[i].access != (ELISA_ACCESS_READ | ELISA_ACCESS_WRITE))
			expect_set(&x, EINVAL, "a region's access is not READ or READ|WRITE");
	}
	/* then each region fd, in order, then the code file */
	for (i = 0; i < (int)min_t(u32, cs.nr_regions, ELISA_SERVICE_MAX_REGIONS); i++) {
		int f = cs.regions[i].region_fd;

		rr = f >= 0 ? find_fd(f) : NULL;
		if (!fget_ok(f))
			expect_set(&x, EBADF, "a region fd is not open (or O_PATH)");
		else if (!rr || rr->kind != K_REGION)
			expect_set(&x, EINVAL, "a region fd is not an elisa-region");
	}
	for (i = 0; i < (int)min_t(u32, cs.nr_regions, ELISA_SERVICE_MAX_REGIONS); i++) {
		rr = cs.regions[i].region_fd >= 0 ? find_fd(cs.regions[i].region_fd) : NULL;
		if (rr && rr->kind == K_REGION && robjs[rr->robj].decoupled)
			expect_set(&x, ENXIO, "a region lost pages to a hole punched in its file");
	}
	rr = cs.code_fd >= 0 ? find_fd(cs.code_fd) : NULL;
	if (!fget_ok(cs.code_fd))
		expect_set(&x, EBADF, "the code fd is not open (or O_PATH)");
	else if (rr && ((rr->kind == K_MEMFD && !rr->readable) || rr->unreadable))
		expect_set(&x, EBADF, "the code fd is not open for reading");
	fds[0] = cs.code_fd;
	for (i = 0; i < ELISA_SERVICE_MAX_REGIONS; i++)
		fds[1 + i] = cs.regions[i].region_fd;
	r = eioctl(R_SERVICE, fd, ELISA_CREATE_SERVICE, &cs, sizeof(cs), mode, fds,
		   ARRAY_SIZE(fds), &x);
	if (r < 0)
		return;
	s = add_res(K_SERVICE, r);
	s->id = next_id++;
	s->code_gva = cs.code_gva;
	s->code_size = cs.code_size;
	s->nr_regions = min_t(u32, cs.nr_regions, ELISA_SERVICE_MAX_REGIONS);
	for (i = 0; i < s->nr_regions; i++) {
		rr = find_fd(cs.regions[i].region_fd);
		s->rid[i] = rr && rr->kind == K_REGION ? rr->robj : -1;
		s->rgva[i] = cs.regions[i].gva;
		s->rsize[i] = rr && rr->kind == K_REGION ? rr->length : 0;
		bad |= !s->rsize[i];
	}
	if (bad)
		s->nr_regions = -1;	/* unknown sizes: no predictions for its grants */
}

/* Does service @s map a region that a hole punched since took out of its file? */
static bool service_decoupled(const struct res *s)
{
	int i;

	for (i = 0; i < s->nr_regions; i++)
		if (s->rid[i] >= 0 && robjs[s->rid[i]].decoupled)
			return true;
	return false;
}

/* Can the planner place service @s with the entry block at @g? false: it must refuse. */
static bool plannable(const struct res *s, u64 g, const char **why)
{
	u64 blk = g - 0x2000, blen = 0x5000;
	int i, j;

	*why = "";
	if (g % PAGE) {
		*why = "G is not 4 KiB aligned";
		return false;
	}
	if (g < 0x2000 || blk < MIN_GATE_GVA) {
		*why = "G - 0x2000 is below 4 GiB";
		return false;
	}
	if (!canonical(blk, blen)) {
		*why = "the entry block is not canonical";
		return false;
	}
	if (s->nr_regions < 0)
		return true;
	if (!canonical(s->code_gva, s->code_size)) {
		*why = "the code GVAs are not canonical";
		return false;
	}
	if (overlap(blk, blen, s->code_gva, s->code_size)) {
		*why = "the code overlaps the entry block";
		return false;
	}
	for (i = 0; i < s->nr_regions; i++) {
		if (!canonical(s->rgva[i], s->rsize[i])) {
			*why = "a region's GVAs are not canonical";
			return false;
		}
		if (overlap(blk, blen, s->rgva[i], s->rsize[i]) ||
		    overlap(s->code_gva, s->code_size, s->rgva[i], s->rsize[i])) {
			*why = "a region overlaps the entry block or the code";
			return false;
		}
		for (j = 0; j < i; j++)
			if (overlap(s->rgva[j], s->rsize[j], s->rgva[i], s->rsize[i])) {
				*why = "two regions overlap";
				return false;
			}
	}
	return true;
}

static u64 slots_end(const struct fvm *v)
{
	u64 end = 0;
	int i;

	for (i = 0; i < NR_SLOTS; i++)
		if (v->slot[i].used)
			end = max_t(u64, end, v->slot[i].gpa + v->slot[i].size);
	return end;
}

/* ELISA_GRANT on @fd (mostly an elisa-vm fd) of service @s (or another fd when NULL). */
static void do_grant(int fd, struct res *s, bool mutate)
{
	struct elisa_grant g = { 0 };
	struct expect x = { 0 };
	struct res *e = fd >= 0 ? find_fd(fd) : NULL, *sr;
	int mode = mutate ? pick_argmode() : ARG_OK, i, n, slot = -1;
	struct att *a = e && e->kind == K_EVM ? &atts[e->att] : NULL;
	const char *why;
	bool pinned;
	long r;

	g.service_fd = s ? s->fd : gen_fd(K_SERVICE);
	g.entry_gva = one_in(8) ? any_interesting() : G;
	g.flags = one_in(5) ? ELISA_GRANT_USER : 0;
	for (i = 0; a && s && i < a->n; i++)
		if (a->grant[i].svc == s->id && !one_in(8)) {
			g.entry_gva = a->grant[i].g;	/* again, as granted */
			g.flags = a->grant[i].flags;
		}
	n = mutate && one_in(3) ? 1 + below(3) : 0;
	for (i = 0; i < n; i++) {
		switch (below(6)) {
		case 0:
			g.flags = 1U << below(32);
			break;
		case 1:
			g.reserved[below(4)] = mutate_u64(0) | 1;
			break;
		case 2:
			g.entry_gva = mutate_u64(g.entry_gva);
			break;
		case 3:
			g.service_fd = gen_fd(1 + below(K_NR - 1));
			break;
		case 4:
			/* outputs are written, never read */
			g.gate_index = rnd();
			g.nr_vcpus = rnd();
			g.trusted_gpa = rnd();
			g.trusted_size = rnd();
			break;
		default:
			/* the entry block on the service's code */
			if (s && s->nr_regions >= 0)
				g.entry_gva = s->code_gva + 0x2000;
		}
	}
	sr = g.service_fd >= 0 ? find_fd(g.service_fd) : NULL;
	if (g.flags & ~ELISA_GRANT_USER || g.reserved[0] || g.reserved[1] || g.reserved[2] ||
	    g.reserved[3])
		expect_set(&x, EINVAL, "unknown flags, or reserved not 0");
	else if (!fget_ok(g.service_fd))
		expect_set(&x, EBADF, "the service fd is not open (or O_PATH)");
	else if (!sr || sr->kind != K_SERVICE)
		expect_set(&x, EINVAL, "not an elisa-service fd");
	else if (service_decoupled(sr))
		expect_set(&x, ENXIO, "a region of the service lost pages to a hole punched");
	else if (a && !a->unknown) {
		for (i = 0; i < a->n; i++)
			if (a->grant[i].svc == sr->id)
				slot = i;
		if (slot >= 0 && (a->grant[slot].g != g.entry_gva ||
				  a->grant[slot].flags != g.flags))
			expect_set(&x, EINVAL, "granted to this VM at another G or flags");
		else if (slot < 0 && a->n == ELISA_MAX_GRANTS)
			expect_set(&x, ENOSPC, "the VM has 8 services");
		else if (!plannable(sr, g.entry_gva, &why))
			expect_set(&x, EINVAL, why);
	}
	if (mode == ARG_RO && !x.must_fail) {
		x.must_fail = true;	/* the outputs cannot be written */
		snprintf(x.why, sizeof(x.why), "the argument cannot be written");
	}
	r = eioctl(R_GRANT, fd, ELISA_GRANT, &g, sizeof(g), mode, &g.service_fd, 1, &x);
	if (mode == ARG_RO && a)
		a->unknown = true;	/* granted, perhaps, before the write failed */
	if (r < 0 || !a || !sr || sr->kind != K_SERVICE)
		return;
	sh->grants_ok++;
	if (a->vm < 0)
		return;
	vms[a->vm].trusted_gpa = g.trusted_gpa;
	vms[a->vm].trusted_size = g.trusted_size;
	if (slot < 0 && !a->unknown && a->n < ELISA_MAX_GRANTS) {
		slot = a->n++;
		a->grant[slot].svc = sr->id;
		a->grant[slot].g = g.entry_gva;
		a->grant[slot].flags = g.flags;
		a->grant[slot].pinned = false;
	}
	if (a->unknown || mode != ARG_OK)
		return;
	/*
	 * Once a vCPU has the gate, every grant keeps that window, though memslots may have
	 * grown past it; before, each grant plans above the memslots.
	 */
	pinned = a->grant[slot].pinned;
	if (g.gate_index != (u32)(ELISA_FIRST_GATE_INDEX - slot) ||
	    g.nr_vcpus != (u32)vms[a->vm].nr_vcpus ||
	    (pinned ? g.trusted_gpa != a->grant[slot].trusted_gpa :
		      g.trusted_gpa < slots_end(&vms[a->vm])) ||
	    !g.trusted_size || g.reserved[0] || g.reserved[1] || g.reserved[2] ||
	    g.reserved[3])
		finding(F_UNPREDICTED, R_GRANT, 0, "output",
			"ELISA_GRANT returned gate index %u (want %d), %u vCPUs (want %d), "
			"window %#llx+%#llx (memslots end at %#llx; %s)", g.gate_index,
			ELISA_FIRST_GATE_INDEX - slot, g.nr_vcpus, vms[a->vm].nr_vcpus,
			(unsigned long long)g.trusted_gpa, (unsigned long long)g.trusted_size,
			(unsigned long long)slots_end(&vms[a->vm]),
			pinned ? "the window of a vCPU's gate is kept" : "planned anew");
	if (!pinned && g.nr_vcpus) {
		a->grant[slot].pinned = true;
		a->grant[slot].trusted_gpa = g.trusted_gpa;
	}
}

static void op_grant(void)
{
	struct res *e = pick(K_EVM);

	do_grant(e && !one_in(20) ? e->fd : gen_fd(K_EVM), pick(K_SERVICE), true);
}

/* A new attachment of VM @vm: the model of what is granted to it. */
static int att_new(int vm)
{
	int i;

	for (i = 0; i < MAX_ATTS; i++)
		if (!atts[i].refs) {
			memset(&atts[i], 0, sizeof(atts[i]));
			atts[i].vm = vm;
			return i;
		}
	return -1;
}

static struct res *do_attach(int vm_fd, bool mutate)
{
	struct elisa_attach_vm av = { 0 };
	struct expect x = { 0 };
	int mode = mutate ? pick_argmode() : ARG_OK, i, n, a, vm;
	struct res *vr, *e;
	long r;

	av.vm_fd = vm_fd;
	n = mutate && one_in(3) ? 1 + below(2) : 0;
	for (i = 0; i < n; i++) {
		switch (below(3)) {
		case 0:
			av.flags = 1U << below(32);
			break;
		case 1:
			av.reserved[below(3)] = mutate_u64(0) | 1;
			break;
		default:
			av.vm_fd = gen_fd(1 + below(K_NR - 1));
		}
	}
	vr = av.vm_fd >= 0 ? find_fd(av.vm_fd) : NULL;
	if (av.flags || av.reserved[0] || av.reserved[1] || av.reserved[2])
		expect_set(&x, EINVAL, "flags or reserved not 0");
	else if (!fget_ok(av.vm_fd))
		expect_set(&x, EBADF, "vm_fd is not open (or O_PATH)");
	else if (!vr || vr->kind != K_VM)
		expect_set(&x, EINVAL, "vm_fd is not a KVM VM");
	else if (vms[vr->vm].att >= 0)
		expect_set(&x, EBUSY, "the VM is attached already");
	else if (vms[vr->vm].type != KVM_X86_DEFAULT_VM)
		/* a software-protected VM (the only other type KVM makes on Intel) */
		expect_set(&x, EOPNOTSUPP, "not a default VM");
	else if (!kvm_only) {
		x.must_succeed = true;
		snprintf(x.why, sizeof(x.why), "the VM has no attachment");
	}
	r = eioctl(R_ATTACH, dev_fd(), ELISA_ATTACH_VM, &av, sizeof(av), mode, &av.vm_fd, 1, &x);
	if (r < 0)
		return NULL;
	vm = vr && vr->kind == K_VM ? vr->vm : -1;
	e = add_res(K_EVM, r);
	a = att_new(vm);
	TEST_ASSERT(a >= 0, "attachment table full");
	atts[a].refs = 1;
	/* a VM the model does not know (a wrong prediction): nothing more predicted */
	atts[a].unknown = vm < 0;
	e->att = a;
	e->vm = vm;
	if (vm >= 0) {
		vms[vm].att = a;
		vms[vm].refs++;
	}
	return e;
}

static void op_attach(void)
{
	struct res *v = pick(K_VM);

	do_attach(v && !one_in(10) ? v->fd : gen_fd(K_VM), true);
}

/* Unknown numbers of elisa's type, and known numbers with another size or direction. */
static void op_unknown_ioctl(void)
{
	static const unsigned int known[] = { ELISA_GET_VERSION, ELISA_ATTACH_VM,
					      ELISA_CREATE_REGION, ELISA_CREATE_SERVICE,
					      ELISA_GRANT };
	u8 buf[sizeof(struct elisa_create_service)] = { 0 };
	static const int kinds[] = { K_DEV, K_EVM, K_REGION, K_SERVICE };
	struct expect x = { 0 };
	struct res *r = pick(kinds[below(4)]);
	unsigned long cmd;
	unsigned int i;

	do {
		switch (below(3)) {
		case 0:
			cmd = _IOC(below(4), ELISA_IOCTL_TYPE, below(256), below(sizeof(buf)));
			break;
		case 1:
			cmd = known[below(ARRAY_SIZE(known))] ^ (1U << (16 + below(14)));
			break;
		default:
			cmd = _IOC(_IOC_DIR(known[below(5)]), ELISA_IOCTL_TYPE,
				   _IOC_NR(known[below(5)]), _IOC_SIZE(known[below(5)]));
		}
		for (i = 0; i < ARRAY_SIZE(known); i++)
			if (cmd == known[i])
				cmd = 0;
	} while (!cmd);
	expect_set(&x, ENOTTY, "no such ioctl");
	eioctl(R_UNKNOWN, r ? r->fd : gen_fd(K_DEV), cmd, buf,
		   min_t(size_t, sizeof(buf), max_t(size_t, _IOC_SIZE(cmd), 8)), ARG_OK, NULL, 0,
		   &x);
}

/* ---- files --------------------------------------------------------------------------- */

static void op_memfd(void)
{
	static const u64 sizes[] = { PAGE, 2 * PAGE, 4 * PAGE, 16 * PAGE, 64 * PAGE, 0,
				     HUGE_2M, ELISA_REGION_MAX_SIZE + 2 * PAGE, 3 * PAGE };
	unsigned int flags = MFD_CLOEXEC | (one_in(6) ? 0 : MFD_ALLOW_SEALING);
	u64 size = sizes[below(ARRAY_SIZE(sizes))];
	struct res *m;
	int fd;

	if (one_in(10)) {
		flags |= MFD_HUGETLB | MFD_HUGE_2MB;
		size = (1 + below(2)) * HUGE_2M;
	}
	fd = COUNTED(R_MEMFD, memfd_create("elisa-fuzz", flags));
	if (fd < 0)
		return;
	m = add_res(K_MEMFD, fd);
	m->id = next_id++;
	m->readable = m->writable = m->shmem = true;
	m->hugetlb = flags & MFD_HUGETLB;
	COUNTED(R_TRUNCATE, ftruncate(fd, size));
	if (!m->hugetlb && size && one_in(2))
		write_code(fd, 0);
	/* what a region needs of a memfd (api.rst); without it, EPERM */
	if (flags & MFD_ALLOW_SEALING && !one_in(5))
		COUNTED(R_SEAL, fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK));
}

/* A hole punched in file @file at [@off, +@len): the regions that lose pages decouple. */
static void punched(int file, bool hugetlb, u64 off, u64 len)
{
	u64 first = off, end = off + len;
	int i;

	if (hugetlb) {
		/* hugetlbfs takes out whole huge pages only; it zeroes the partial ones */
		first = (off + HUGE_2M - 1) & ~(HUGE_2M - 1);
		end &= ~(HUGE_2M - 1);
	}
	for (i = 0; i < MAX_ROBJS; i++)
		if (robjs[i].file == file && first < end &&
		    overlap(first, end - first, robjs[i].offset, robjs[i].length))
			robjs[i].decoupled = true;
}

static void op_memfd_change(void)
{
	static const int modes[] = { O_RDONLY, O_WRONLY, O_RDWR };
	static const int seals[] = { F_SEAL_WRITE, F_SEAL_FUTURE_WRITE, F_SEAL_SHRINK,
				     F_SEAL_GROW, F_SEAL_SEAL };
	struct res *m = pick(K_MEMFD), *n;
	u64 size, off, len;
	char path[32];
	int fd, acc;

	if (!m)
		return;
	size = file_size(m->fd);
	switch (below(5)) {
	case 0:
		/* shrink, grow, or cut to nothing, with regions of it alive or not */
		COUNTED(R_TRUNCATE, ftruncate(m->fd, one_in(3) ? 0 :
					       m->hugetlb ? (1 + below(2)) * HUGE_2M :
					       below(65) * PAGE));
		break;
	case 1:
		off = size ? below(size / PAGE + 1) * PAGE : 0;
		len = (1 + below(16)) * (m->hugetlb ? HUGE_2M : PAGE);
		if (COUNTED(R_PUNCH, fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					       off, len)) == 0)
			punched(m->id, m->hugetlb, off, len);
		break;
	case 2:
		COUNTED(R_SEAL, fcntl(m->fd, F_ADD_SEALS, seals[below(ARRAY_SIZE(seals))] |
				      (one_in(4) ? seals[below(ARRAY_SIZE(seals))] : 0)));
		break;
	case 3:
		if (m->writable && !m->hugetlb)
			write_code(m->fd, size ? below(size / PAGE + 1) * PAGE : 0);
		break;
	default:
		/* the same file again, read-only, write-only or read-write */
		acc = modes[below(ARRAY_SIZE(modes))];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", m->fd);
		fd = COUNTED(R_REOPEN, open(path, acc | O_CLOEXEC));
		if (fd < 0)
			break;
		n = add_res(K_MEMFD, fd);
		n->id = m->id;
		n->shmem = true;
		n->hugetlb = m->hugetlb;
		n->readable = acc != O_WRONLY;
		n->writable = acc != O_RDONLY;
	}
}

static void op_close(void)
{
	static const int kinds[] = { K_DEV, K_MEMFD, K_REGION, K_SERVICE, K_VM, K_VCPU, K_EVM };
	struct res *r = pick(kinds[below(ARRAY_SIZE(kinds))]);

	if (r)
		close_res(r);
}

static void op_dup(void)
{
	static const int kinds[] = { K_DEV, K_MEMFD, K_REGION, K_SERVICE, K_VM, K_EVM };
	struct res *r = pick(kinds[below(ARRAY_SIZE(kinds))]), *d;
	struct res copy;
	int fd;

	if (!r)
		return;
	copy = *r;
	fd = COUNTED(R_DUP, fcntl(r->fd, F_DUPFD_CLOEXEC, 3));
	if (fd < 0)
		return;
	if (count_kind(copy.kind) >= pool_cap[copy.kind]) {
		COUNTED(R_CLOSE, close(fd));
		return;
	}
	d = add_res(copy.kind, fd);
	*d = copy;
	d->fd = fd;
	if (d->vm >= 0)
		vms[d->vm].refs++;
	if (d->kind == K_EVM)
		atts[d->att].refs++;
}

/* ---- KVM ------------------------------------------------------------------------------ */

static void vm_put(int vm)
{
	struct fvm *v = &vms[vm];
	int i;

	if (--v->refs)
		return;
	for (i = 1; i < NR_SLOTS; i++)
		if (v->slot[i].hva && v->slot[i].hva != v->mem)
			munmap(v->slot[i].hva, v->slot[i].size);
	munmap(v->mem, SLOT0_SIZE);
	memset(v, 0, sizeof(*v));
}

/* The guest's page tables, IDT, GDT, TSS, stubs, IVT and entry block (see GPA layout). */
static void write_guest(u8 *m)
{
	u64 *pml4 = (u64 *)(m + PML4_GPA), *pdpt = (u64 *)(m + PDPT_GPA);
	u64 *pd = (u64 *)(m + PD_GPA), *pt = (u64 *)(m + PT_GPA);
	u64 *gpdpt = (u64 *)(m + GPDPT_GPA), *gpd = (u64 *)(m + GPD_GPA);
	u64 *gpt = (u64 *)(m + GPT_GPA), *idt = (u64 *)(m + IDT_GPA);
	u64 *gdt = (u64 *)(m + GDT_GPA), stub;
	u32 *ivt = (u32 *)m;
	int i;

	memset(m, 0, SLOT0_SIZE);
	memset(m + CODE_GPA, 0xf4, PAGE);
	pml4[0] = PDPT_GPA | 3;
	pdpt[0] = PD_GPA | 3;
	pd[0] = PT_GPA | 3;
	for (i = 1; i < 512; i++)
		pd[i] = ((u64)i << 21) | 0x83 | PTE_NX;
	for (i = 0; i < 512; i++) {
		u64 gpa = (u64)i * PAGE;

		if (gpa == CODE_GPA || gpa == (GDT_GPA & ~(PAGE - 1)))
			pt[i] = gpa | 1;			/* read, execute */
		else if (gpa < IST_TOP - PAGE)
			pt[i] = gpa | 1 | PTE_NX;		/* read only */
		else
			pt[i] = gpa | 3 | PTE_NX;		/* stacks, other memory */
	}
	pml4[(G >> 39) & 511] = GPDPT_GPA | 3;
	gpdpt[(G >> 30) & 511] = GPD_GPA | 3;
	gpd[(G >> 21) & 511] = GPT_GPA | 3;
	for (i = 0; i < ELISA_GUEST_BLOCK_PAGES; i++)
		gpt[((G >> 12) & 511) + i] = (BLOCK_GPA + i * PAGE) | 1;
	memcpy(m + BLOCK_GPA, elisa_guest_block, sizeof(elisa_guest_block));

	/* vector v: mov al, v; out 0x11, al; hlt; jmp hlt */
	for (i = 0; i < 256; i++) {
		u8 *c = m + STUBS_GPA + i * 8;

		stub = STUBS_GPA + i * 8;
		c[0] = 0xb0;
		c[1] = i;
		c[2] = 0xe6;
		c[3] = PORT_VECTOR;
		c[4] = 0xf4;
		c[5] = 0xeb;
		c[6] = 0xfd;
		c[7] = 0x90;
		/* interrupt gate, CS 8, IST 1, present */
		idt[2 * i] = (stub & 0xffff) | 8ULL << 16 | 1ULL << 32 | 0x8eULL << 40 |
			     (stub >> 16 & 0xffff) << 48;
		idt[2 * i + 1] = 0;
		ivt[i] = RM_STUB_GPA;			/* 0000:0500 */
	}
	m[RM_STUB_GPA] = 0xf4;				/* hlt; jmp hlt */
	m[RM_STUB_GPA + 1] = 0xeb;
	m[RM_STUB_GPA + 2] = 0xfd;
	gdt[1] = 0x00af9b000000ffffULL;			/* 64-bit code */
	gdt[2] = 0x00cf93000000ffffULL;			/* data */
	gdt[3] = 0x67 | (u64)(TSS_GPA & 0xffffff) << 16 | 0x8bULL << 40; /* busy TSS */
	gdt[4] = 0;
	*(u64 *)(m + TSS_GPA + 0x24) = IST_TOP;		/* IST1 */
}

static void op_create_vm(void)
{
	struct kvm_userspace_memory_region mr = { 0 };
	unsigned long type;
	struct fvm *v;
	struct res *r;
	int i, fd;

	for (i = 0; i < MAX_VMS; i++)
		if (!vms[i].refs)
			break;
	if (i == MAX_VMS || count_kind(K_VM) >= pool_cap[K_VM])
		return;
	type = one_in(30) ? rnd() % 4 : 0;
	fd = COUNTED(R_CREATE_VM, ioctl(kvm_fd, KVM_CREATE_VM, type));
	if (fd < 0)
		return;
	v = &vms[i];
	memset(v, 0, sizeof(*v));
	v->att = -1;
	v->type = type;
	v->mem = mmap(NULL, SLOT0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(v->mem != MAP_FAILED, "mmap guest memory");
	write_guest(v->mem);
	v->refs = 1;
	r = add_res(K_VM, fd);
	r->vm = i;
	mr.memory_size = SLOT0_SIZE;
	mr.userspace_addr = (unsigned long)v->mem;
	if (COUNTED(R_MEMSLOT, ioctl(fd, KVM_SET_USER_MEMORY_REGION, &mr)) == 0) {
		v->slot[0].used = true;
		v->slot[0].hva = v->mem;
		v->slot[0].size = SLOT0_SIZE;
	}
}

static void op_create_vcpu(void)
{
	static const int odd_ids[] = { 0, 1, 255, 1023, 4096, -1 };
	struct res *vr = pick(K_VM), *c;
	struct kvm_run *run;
	struct fvm *v;
	int id, fd;

	if (!vr || count_kind(K_VCPU) >= pool_cap[K_VCPU])
		return;
	v = &vms[vr->vm];
	if (v->nr_vcpus >= MAX_VCPUS_PER_VM && !one_in(8))
		return;
	id = one_in(8) ? odd_ids[below(ARRAY_SIZE(odd_ids))] : v->nr_vcpus;
	fd = COUNTED(R_CREATE_VCPU, ioctl(vr->fd, KVM_CREATE_VCPU, id));
	if (fd < 0)
		return;
	v->nr_vcpus++;
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(run != MAP_FAILED, "mmap kvm_run");
	if (cpuid)
		ioctl(fd, KVM_SET_CPUID2, cpuid);
	c = add_res(K_VCPU, fd);
	c->vm = vr->vm;
	c->id = id;
	c->run = run;
	c->fresh = true;
	c->mode = M_RANDOM;	/* the reset state: not one of the templates */
	v->refs++;
}

/* Adds, moves, removes a memslot of VM @vr, or changes its dirty logging. */
static void memslot_on(struct res *vr)
{
	struct kvm_userspace_memory_region mr = { 0 };
	struct res *m;
	struct fvm *v;
	struct slot *s;
	u64 size;
	u8 *hva;
	int i;
	long r;

	v = &vms[vr->vm];
	i = one_in(12) ? 0 : 1 + below(NR_SLOTS - 1);
	s = &v->slot[i];
	mr.slot = s->used ? s->id : i | (one_in(16) ? 1U << 16 : 0);
	if (s->used) {
		mr.guest_phys_addr = s->gpa;
		mr.memory_size = s->size;
		mr.userspace_addr = (unsigned long)s->hva;
		/* slot 0 holds the guest's tables and IDT: only its dirty logging changes */
		switch (i ? below(4) : 3) {
		case 0:
		case 1:
			mr.memory_size = 0;			/* remove */
			break;
		case 2:
			mr.guest_phys_addr = (v->trusted_size && one_in(2) ? v->trusted_gpa :
					      slots_end(v)) + below(16) * PAGE;
			break;
		default:
			mr.flags = one_in(2) ? KVM_MEM_LOG_DIRTY_PAGES : 0;
		}
		if (i && one_in(10))
			mr.memory_size = mutate_u64(mr.memory_size);
		r = COUNTED(R_MEMSLOT, ioctl(vr->fd, KVM_SET_USER_MEMORY_REGION, &mr));
		if (r)
			return;
		if (!mr.memory_size) {
			if (s->hva != v->mem)
				munmap(s->hva, s->size);
			memset(s, 0, sizeof(*s));
		} else {
			s->gpa = mr.guest_phys_addr;
		}
		return;
	}
	size = (1 + below(16)) * PAGE;
	m = pick(K_MEMFD);
	if (i == 0) {
		hva = v->mem;
		size = SLOT0_SIZE;
	} else if (m && !m->hugetlb && m->readable && m->writable && one_in(5) &&
		   file_size(m->fd) >= size) {
		/* guest memory that is also a region's file */
		hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	} else {
		hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	}
	if (hva == MAP_FAILED)
		return;
	switch (below(5)) {
	case 0:
		/* inside the trusted window of the last grant */
		mr.guest_phys_addr = v->trusted_gpa + below(v->trusted_size / PAGE + 1) * PAGE;
		break;
	case 1:
		mr.guest_phys_addr = slots_end(v);
		break;
	case 2:
		mr.guest_phys_addr = below(1 << 20) * PAGE;
		break;
	case 3:
		mr.guest_phys_addr = i == 0 ? 0 : SLOT0_SIZE + below(64) * PAGE;
		break;
	default:
		mr.guest_phys_addr = any_interesting() & ~(PAGE - 1);
	}
	mr.memory_size = size;
	mr.userspace_addr = (unsigned long)hva;
	mr.flags = one_in(6) ? KVM_MEM_LOG_DIRTY_PAGES : one_in(10) ? KVM_MEM_READONLY : 0;
	if (one_in(12))
		mr.guest_phys_addr = mutate_u64(mr.guest_phys_addr);
	r = COUNTED(R_MEMSLOT, ioctl(vr->fd, KVM_SET_USER_MEMORY_REGION, &mr));
	if (r) {
		if (hva != v->mem)
			munmap(hva, size);
		return;
	}
	s->used = true;
	s->hva = hva;
	s->gpa = mr.guest_phys_addr;
	s->size = size;
	s->id = mr.slot;
}

static void op_memslot(void)
{
	struct res *vr = pick(K_VM);

	if (vr)
		memslot_on(vr);
}

static const char *exit_name(int reason)
{
	static char num[16];

	switch (reason) {
	case KVM_EXIT_IO:
		return "IO";
	case KVM_EXIT_HLT:
		return "HLT";
	case KVM_EXIT_MMIO:
		return "MMIO";
	case KVM_EXIT_SHUTDOWN:
		return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY:
		return "FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR:
		return "INTERNAL_ERROR";
	case KVM_EXIT_MEMORY_FAULT:
		return "MEMORY_FAULT";
	}
	snprintf(num, sizeof(num), "exit %d", reason);
	return num;
}

static void emit(u8 *c, int *n, const void *b, int len)
{
	memcpy(c + *n, b, len);
	*n += len;
}

static void emit8(u8 *c, int *n, u8 v)
{
	emit(c, n, &v, 1);
}

static void emit32(u8 *c, int *n, u32 v)
{
	emit(c, n, &v, 4);
}

static void emit64(u8 *c, int *n, u64 v)
{
	emit(c, n, &v, 8);
}

static u32 gate_ecx(void)
{
	return one_in(6) ? rnd() : one_in(4) ? below(512) : ELISA_FIRST_GATE_INDEX - below(8);
}

/* Where a jump into the entry block may land: a stub's first byte, or the INT3 fill. */
static u64 block_target(void)
{
	switch (below(4)) {
	case 0:
		return G + ELISA_CALL_ENTRY_OFFSET;
	case 1:
		return G + PAGE;			/* the fallback stub */
	case 2:
		return G + 2 * PAGE;			/* the exit stub */
	default:
		return G + below(ELISA_CALL_ENTRY_OFFSET);
	}
}

/*
 * One straight-line 64-bit instruction that cannot change the IDT, GDT, TR, CR0/3/4 or
 * EFER, nor branch: the guest's way out of any fault stays intact, and nothing loops.
 */
static void emit_random_insn(u8 *c, int *n)
{
	static const u8 alu[] = { 0x01, 0x29, 0x31, 0x21, 0x09, 0x39, 0x85, 0x89, 0x87 };
	static const u8 io[] = { 0xe4, 0xe6, 0xec, 0xee };
	static const u8 plain[][3] = {
		{ 1, 0x90 }, { 2, 0x0f, 0xa2 }, { 2, 0x0f, 0x31 }, { 2, 0xf3, 0x90 }, { 1, 0xfa },
		{ 1, 0xfb }, { 1, 0xcc }, { 2, 0x0f, 0x0b }, { 1, 0x9c }, { 1, 0x9d },
		{ 2, 0x0f, 0x32 }, { 2, 0x0f, 0x05 }, { 1, 0xf4 }, { 2, 0x0f, 0xae },
	};
	u8 r = below(16), r2 = below(16), k;

	if (r == 4)
		r = 0;					/* never RSP as destination */
	switch (below(10)) {
	case 0:						/* mov r64, imm64 */
		emit8(c, n, 0x48 | (r >> 3));
		emit8(c, n, 0xb8 + (r & 7));
		emit64(c, n, one_in(2) ? rnd() : any_interesting());
		break;
	case 1:						/* alu r64, r64 */
		emit8(c, n, 0x48 | (r2 >> 3) << 2 | (r >> 3));
		emit8(c, n, alu[below(ARRAY_SIZE(alu))]);
		emit8(c, n, 0xc0 | (r2 & 7) << 3 | (r & 7));
		break;
	case 2:						/* push r64, pop r64 */
		if (r >> 3)
			emit8(c, n, 0x41);
		emit8(c, n, (one_in(2) ? 0x50 : 0x58) + (r & 7));
		break;
	case 3:						/* load or store at a 32-bit address */
		emit8(c, n, 0x48);
		emit8(c, n, one_in(2) ? 0x8b : 0x89);
		emit8(c, n, 0x04 | (r & 7) << 3);
		emit8(c, n, 0x25);
		emit32(c, n, one_in(2) ? rnd() : below(SLOT0_SIZE / 8) * 8);
		break;
	case 4:						/* load or store through a register */
		k = r2 & 7;
		if (k == 4 || k == 5)
			k = 3;
		emit8(c, n, 0x48 | (r >> 3) << 2);
		emit8(c, n, one_in(2) ? 0x8b : 0x89);
		emit8(c, n, (r & 7) << 3 | k);
		break;
	case 5:						/* in or out, any port */
		k = io[below(ARRAY_SIZE(io))];		/* in al, imm8 ... out dx, al */
		emit8(c, n, k);
		if (k < 0xec)
			emit8(c, n, rnd());
		break;
	case 6:						/* vmfunc */
		emit8(c, n, 0xb8);
		emit32(c, n, one_in(3) ? rnd() : 0);
		emit8(c, n, 0xb9);
		emit32(c, n, gate_ecx());
		emit(c, n, "\x0f\x01\xd4", 3);
		break;
	case 7:						/* int n */
		emit8(c, n, 0xcd);
		emit8(c, n, rnd());
		break;
	default:
		k = below(ARRAY_SIZE(plain));
		if (plain[k][1] == 0x0f && plain[k][2] == 0xae) {
			emit(c, n, "\x0f\xae\xe8", 3);	/* lfence */
			break;
		}
		emit(c, n, &plain[k][1], plain[k][0]);
	}
}

/* Programs; each ends in HLT, and the rest of the code page is HLT. */
enum {
	P_HLT, P_OUT, P_VMFUNC, P_CALL, P_JUMP, P_MMIO, P_LOOP, P_CALL_LOOP, P_RANDOM, NR_PROGS
};

/* The ELISA call of a program: arguments, gate index, entry (or elsewhere in the block). */
static void emit_call(u8 *c, int *n)
{
	emit(c, n, "\x48\xbf", 2);			/* mov rdi, imm64 */
	emit64(c, n, one_in(2) ? below(16) : rnd());
	emit(c, n, "\x48\xbe", 2);			/* mov rsi, imm64: a region, mostly */
	emit64(c, n, one_in(3) ? rnd() : SVC_GVA + ELISA_REGION_MAX_SIZE + PAGE +
		      below(PAGE / 8) * 8);
	emit(c, n, "\x48\xba", 2);			/* mov rdx, imm64 */
	emit64(c, n, rnd());
	emit8(c, n, 0xb9);				/* mov ecx, imm32 */
	emit32(c, n, gate_ecx());
	emit(c, n, "\x48\xb8", 2);			/* mov rax, imm64 */
	emit64(c, n, one_in(8) ? block_target() : G + ELISA_CALL_ENTRY_OFFSET);
	emit(c, n, "\xff\xd0", 2);			/* call rax */
}

/*
 * A tiny guest program at CODE_GPA (program @want, or a random one when negative);
 * returns whether it is 64-bit code, and the program in *@kind.
 */
static bool write_program(const struct fvm *v, u8 *c, int want, int *kind)
{
	int n = 0, i, prog = want >= 0 ? want : (int)below(NR_PROGS + 2);
	bool lm = !one_in(5);

	memset(c, 0xf4, PAGE);
	if (prog >= NR_PROGS)
		prog = P_CALL;				/* calls twice as often */
	if (prog == P_CALL || prog == P_JUMP || prog == P_RANDOM || prog == P_CALL_LOOP)
		lm = true;
	*kind = prog;
	switch (prog) {
	case P_HLT:
		break;
	case P_OUT:
		emit8(c, &n, 0xb0);			/* mov al, imm8 */
		emit8(c, &n, rnd());
		emit8(c, &n, 0xe6);			/* out imm8, al */
		emit8(c, &n, one_in(2) ? PORT_CALL : rnd());
		break;
	case P_VMFUNC:
		if (!lm)
			emit8(c, &n, 0x66);
		emit8(c, &n, 0xb8);			/* mov eax, imm32 */
		emit32(c, &n, one_in(2) ? 0 : rnd());
		if (!lm)
			emit8(c, &n, 0x66);
		emit8(c, &n, 0xb9);			/* mov ecx, imm32 */
		emit32(c, &n, gate_ecx());
		emit(c, &n, "\x0f\x01\xd4", 3);		/* vmfunc */
		break;
	case P_CALL:
		/* an ELISA call: mostly with IF = 0, to the entry stub, with a gate index */
		if (one_in(8))
			emit8(c, &n, 0xfb);		/* sti */
		emit_call(c, &n);
		emit(c, &n, "\xe6\x10", 2);		/* out PORT_CALL, al */
		break;
	case P_CALL_LOOP:
		/* calls for ever, with IF = 1 between them: the timer ends the run */
		emit8(c, &n, 0xfa);			/* cli */
		emit_call(c, &n);
		emit(c, &n, "\xfb\x90\xeb", 3);		/* sti; nop; jmp to the cli */
		emit8(c, &n, -(n + 1));
		break;
	case P_JUMP:
		/* into the entry block with whatever ECX: a call, so every RET finds its way */
		emit(c, &n, "\x48\xb8", 2);		/* mov rax, imm64 */
		emit64(c, &n, block_target());
		emit(c, &n, "\xff\xd0", 2);		/* call rax */
		break;
	case P_MMIO:
		if (lm) {
			emit(c, &n, "\x48\xa1", 2);	/* mov rax, [moffs64] */
			emit64(c, &n, v->trusted_size && v->trusted_gpa < (1ULL << 30) &&
				      one_in(2) ?
				      v->trusted_gpa + below(v->trusted_size / 8) * 8 :
				      SLOT0_SIZE + below(1 << 14) * 8);
		} else {
			/* ds = 0x2000; mov al, [0] */
			emit(c, &n, "\xb8\x00\x20\x8e\xd8\xa0\x00\x00", 8);
		}
		break;
	case P_LOOP:
		emit(c, &n, "\xfb\xeb\xfe", 3);		/* sti; jmp . */
		break;
	default:
		for (i = 1 + below(8); i > 0; i--)
			emit_random_insn(c, &n);
	}
	return lm;
}

static void long_sregs(struct kvm_sregs *s)
{
	static const struct kvm_segment code = {
		.limit = 0xffffffff, .selector = 8, .type = 11, .present = 1, .s = 1, .l = 1,
		.g = 1,
	};
	static const struct kvm_segment data = {
		.limit = 0xffffffff, .selector = 16, .type = 3, .present = 1, .s = 1, .db = 1,
		.g = 1,
	};
	static const struct kvm_segment tr = {
		.base = TSS_GPA, .limit = 0x67, .selector = 24, .type = 11, .present = 1,
	};

	s->cs = code;
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->tr = tr;
	memset(&s->ldt, 0, sizeof(s->ldt));
	s->ldt.unusable = 1;
	s->cr0 = 0x80010033;	/* PG, WP, NE, ET, MP, PE */
	s->cr3 = PML4_GPA;
	s->cr4 = 0x20;		/* PAE */
	s->efer = 0xd00;	/* NXE, LMA, LME */
	s->idt.base = IDT_GPA;
	s->idt.limit = 256 * 16 - 1;
	s->gdt.base = GDT_GPA;
	s->gdt.limit = 5 * 8 - 1;
}

/*
 * Completes the I/O or MMIO access vCPU @c exited for, before its registers change: the
 * next KVM_RUN would otherwise complete it against the new state, and move RIP past an
 * instruction of the old program (a one-byte OUT at 0x1000 put RIP at the "jmp ." of a
 * new loop, its STI skipped: IF = 0 for good). KVM_RUN with immediate_exit completes it
 * and returns at once (EINTR).
 */
static void settle(struct res *c)
{
	int i;

	/* an access split in two (MMIO across pages) exits once more */
	for (i = 0; c->pending && i < 4; i++) {
		c->run->immediate_exit = 1;
		memset(c->run->mmio.data, 0, sizeof(c->run->mmio.data));
		c->pending = ioctl(c->fd, KVM_RUN, 0) == 0 &&
			     (c->run->exit_reason == KVM_EXIT_IO ||
			      c->run->exit_reason == KVM_EXIT_MMIO);
		c->run->immediate_exit = 0;
	}
	c->pending = false;
}

static void set_mode(struct res *c, bool lm)
{
	struct kvm_sregs s = real_sregs;

	settle(c);
	if (lm)
		long_sregs(&s);
	if (COUNTED(R_SET_SREGS, ioctl(c->fd, KVM_SET_SREGS, &s)) == 0)
		c->mode = lm ? M_LONG : M_REAL;
}

/*
 * RIP, RSP and RFLAGS a guest may run with: the program, a stub, the entry block, or an
 * address that faults (not executable, not mapped, not canonical); any RSP in long mode
 * (exceptions run on the IST stack); RFLAGS with TF, IF, DF, AC and the arithmetic flags.
 */
static void safe_regs(struct kvm_regs *r, int mode, bool random, u8 *mem)
{
	static const u64 faulting[] = { 0, PML4_GPA, IDT_GPA, STACK_TOP - 8, SLOT0_SIZE,
					1ULL << 30, 1ULL << 47, G - PAGE, 0xffff800000000000ULL };

	r->rflags = 2;
	if (mode == M_REAL) {
		r->rip = one_in(8) ? RM_STUB_GPA : CODE_GPA;
		r->rsp = random ? RM_STACK_TOP + below(0xf0) * 2 : RM_STACK_TOP;
		return;
	}
	r->rsp = random && one_in(2) ? (one_in(2) ? rnd() : any_interesting()) : STACK_TOP;
	if (!random)
		return;
	r->rflags |= rnd() & 0x40fd5;	/* AC, OF, DF, IF, TF, SF, ZF, AF, PF, CF */
	*(u64 *)(mem + STACK_TOP - 8) = STUBS_GPA + 8 * 255;
	switch (below(4)) {
	case 0:
		r->rip = CODE_GPA;
		break;
	case 1:
		/* the entry block returns with RET: to a stub, from the normal stack */
		r->rip = block_target();
		r->rsp = STACK_TOP - 8;
		break;
	case 2:
		r->rip = STUBS_GPA + below(256) * 8;
		break;
	default:
		r->rip = one_in(2) ? faulting[below(ARRAY_SIZE(faulting))] : rnd();
		if (r->rip >= CODE_GPA && r->rip < CODE_GPA + PAGE)
			r->rip = CODE_GPA;
		if (r->rip >= (GDT_GPA & ~(PAGE - 1)) && r->rip < (GDT_GPA & ~(PAGE - 1)) + PAGE)
			r->rip = STUBS_GPA;
		if (r->rip >= G && r->rip < G + 3 * PAGE)
			r->rip = G;
	}
}

/*
 * A new program for vCPU @c. The VM's vCPUs share the code page: the others start theirs
 * again too, or one that stopped at a HLT with IF = 0 would go on in the middle of this
 * program (at "jmp ." of a loop, say).
 */
static void fresh_program(struct res *c, int want)
{
	struct fvm *v = &vms[c->vm];
	struct kvm_regs regs = { 0 };
	bool lm = write_program(v, v->mem + CODE_GPA, want, &c->prog);
	int i;

	for (i = 0; i < MAX_RES; i++)
		if (res[i].kind == K_VCPU && res[i].vm == c->vm)
			res[i].fresh = true;

	set_mode(c, lm);
	safe_regs(&regs, lm ? M_LONG : M_REAL, false, v->mem);
	regs.rip = CODE_GPA;
	regs.rbx = rnd();
	regs.rbp = rnd();
	regs.r12 = rnd();
	COUNTED(R_SET_REGS, ioctl(c->fd, KVM_SET_REGS, &regs));
	c->fresh = false;
}

/*
 * The fuzzer's own rule, checked where a host interrupt can end a guest's loop (on a real
 * VT-x host, or the build machine's KVM): a guest interrupted at a "jmp ." must have IF = 1,
 * or the emulated host would have been lost to it.
 */
static void check_loop(struct res *c)
{
	struct kvm_regs regs;
	const u8 *m = vms[c->vm].mem;

	if (ioctl(c->fd, KVM_GET_REGS, &regs) || regs.rflags & 0x200 ||
	    regs.rip < CODE_GPA || regs.rip + 1 >= CODE_GPA + PAGE)
		return;
	if (m[regs.rip] == 0xeb && m[regs.rip + 1] == 0xfe)
		sh->loops_if0++;
}

/* KVM_RUN of vCPU @c, with a new program (@want, or random when negative) when it needs one. */
static void run_vcpu(struct res *c, int want)
{
	struct kvm_run *run = c->run;
	long r;

	if (c->fresh || c->mode == M_RANDOM || want >= 0 || one_in(2))
		fresh_program(c, want);
	if (c->mode == M_RANDOM)
		return;		/* the template was refused: never run random state */
	run->immediate_exit = 0;
	/* a load from MMIO reads 0: a RET from there faults, never goes astray */
	memset(run->mmio.data, 0, sizeof(run->mmio.data));
	r = COUNTED(R_RUN, ioctl(c->fd, KVM_RUN, 0));
	if (r < 0) {
		if (errno == EINTR) {
			sh->run_eintr++;
			check_loop(c);
		}
		return;
	}
	sh->exits[min_t(u32, run->exit_reason, MAX_EXIT - 1)]++;
	c->pending = run->exit_reason == KVM_EXIT_IO || run->exit_reason == KVM_EXIT_MMIO;
	if (tracing()) {
		struct kvm_regs regs = { 0 };
		struct kvm_sregs sr = { 0 };

		ioctl(c->fd, KVM_GET_REGS, &regs);
		ioctl(c->fd, KVM_GET_SREGS, &sr);
		trace_msg("#   vcpu fd %d: %s, rip %#llx rsp %#llx rflags %#llx cr0 %#llx cr4 %#llx "
			  "efer %#llx, program %d\n", c->fd, exit_name(run->exit_reason),
			  (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
			  (unsigned long long)regs.rflags, (unsigned long long)sr.cr0,
			  (unsigned long long)sr.cr4, (unsigned long long)sr.efer, c->prog);
	}
	if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT) {
		u8 val = ((u8 *)run)[run->io.data_offset];

		if (run->io.port == PORT_CALL)
			sh->calls_in_guest++;
		else if (run->io.port == PORT_VECTOR)
			sh->vectors[val]++;
	}
	if (run->exit_reason != KVM_EXIT_IO && run->exit_reason != KVM_EXIT_MMIO &&
	    run->exit_reason != KVM_EXIT_HLT)
		c->fresh = true;
}

static void op_run(void)
{
	struct res *c = pick(K_VCPU);

	if (c)
		run_vcpu(c, -1);
}

static void op_set_regs(void)
{
	struct res *c = pick(K_VCPU);
	struct kvm_regs regs;
	u64 *w = (u64 *)&regs;
	unsigned int i;

	if (!c)
		return;
	settle(c);
	if (ioctl(c->fd, KVM_GET_REGS, &regs))
		return;
	for (i = 0; i < sizeof(regs) / 8; i++)
		if (one_in(3))
			w[i] = one_in(2) ? rnd() : any_interesting();
	safe_regs(&regs, c->mode, true, vms[c->vm].mem);
	COUNTED(R_SET_REGS, ioctl(c->fd, KVM_SET_REGS, &regs));
}

static void op_set_sregs(void)
{
	struct res *c = pick(K_VCPU);
	struct kvm_sregs s;
	u8 *b = (u8 *)&s;
	int i, n;

	if (!c)
		return;
	settle(c);
	if (ioctl(c->fd, KVM_GET_SREGS, &s))
		return;
	switch (below(3)) {
	case 0:
		set_mode(c, !one_in(4));
		return;
	case 1:
		n = 1 + below(3);
		for (i = 0; i < n; i++) {
			switch (below(6)) {
			case 0:
				s.cr0 ^= 1ULL << below(32);
				break;
			case 1:
				s.cr4 ^= 1ULL << below(24);	/* LA57 is bit 12 */
				break;
			case 2:
				s.efer ^= 1ULL << below(16);
				break;
			case 3:
				s.cr3 = one_in(2) ? rnd() : below(16) * PAGE;
				break;
			case 4:
				s.cs.l ^= 1;
				s.cs.db ^= one_in(2);
				break;
			default:
				s.apic_base = rnd();
			}
		}
		break;
	default:
		/* random bytes over the segments and control registers */
		n = 1 + below(8);
		for (i = 0; i < n; i++)
			b[below(offsetof(struct kvm_sregs, interrupt_bitmap))] = rnd();
	}
	memset(s.interrupt_bitmap, 0, sizeof(s.interrupt_bitmap));
	if (COUNTED(R_SET_SREGS, ioctl(c->fd, KVM_SET_SREGS, &s)) == 0)
		c->mode = M_RANDOM;	/* runs again only from a template */
}

/* An NMI for the vCPU's next entry: in the default view, or inside a call. */
static void op_nmi(void)
{
	struct res *c = pick(K_VCPU);

	if (c && c->mode != M_RANDOM)
		COUNTED(R_NMI, ioctl(c->fd, KVM_NMI, 0));
}

/*
 * Detach and attach again: every elisa-vm fd of a VM closed, the VM attached again, a
 * service granted, a call run on one of its vCPUs.
 */
static void op_reattach(void)
{
	struct res *vr = pick(K_VM), *e, *c = NULL;
	int i, vm;

	if (!vr || kvm_only)
		return;
	vm = vr->vm;
	for (i = 0; i < MAX_RES; i++)
		if (res[i].kind == K_EVM && res[i].vm == vm && atts[res[i].att].vm == vm)
			close_res(&res[i]);
	e = do_attach(vr->fd, false);
	if (!e)
		return;
	do_grant(e->fd, pick(K_SERVICE), false);
	for (i = 0; i < MAX_RES; i++)
		if (res[i].kind == K_VCPU && res[i].vm == vm)
			c = &res[i];
	if (c)
		run_vcpu(c, P_CALL);
}

/* ---- races: a vCPU runs in a second thread while the VM changes ----------------------- */

struct racer {
	int fd;
	struct kvm_run *run;
	int stop;		/* READ_ONCE/WRITE_ONCE: set by the main thread */
	unsigned long long runs, eintr, exits[MAX_EXIT];
};

/*
 * The racing thread: KVM_RUN again and again until told to stop, or until the guest halts
 * or its run ends otherwise. It takes the timer's SIGALRM (the main thread blocks it
 * meanwhile), so each run ends within a tick.
 */
static void *racer_main(void *p)
{
	struct racer *r = p;
	sigset_t alrm;
	u32 reason;

	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_UNBLOCK, &alrm, NULL);
	while (!READ_ONCE(r->stop)) {
		r->run->immediate_exit = 0;
		memset(r->run->mmio.data, 0, sizeof(r->run->mmio.data));
		r->runs++;
		if (ioctl(r->fd, KVM_RUN, 0) < 0) {
			if (errno != EINTR)
				break;
			r->eintr++;
			continue;
		}
		reason = r->run->exit_reason;
		r->exits[min_t(u32, reason, MAX_EXIT - 1)]++;
		if (reason != KVM_EXIT_IO && reason != KVM_EXIT_MMIO)
			break;		/* halted or ended: the rest would only halt again */
	}
	return NULL;
}

/*
 * A vCPU calls in a loop (or runs another program) in a second thread, while this one
 * detaches its VM, attaches it again, grants a service to it, changes its memslots or
 * closes its VM fd. The racing runs do not count as calls (their number depends on
 * timing; the calls of this thread keep their indexes).
 */
static void op_race(void)
{
	struct res *c = pick(K_VCPU), *vr = NULL, *e = NULL;
	struct racer r = { 0 };
	sigset_t alrm, old;
	pthread_t t;
	int i, k, n, vm;

	if (!c)
		return;
	vm = c->vm;
	fresh_program(c, one_in(4) ? -1 : P_CALL_LOOP);
	if (c->mode == M_RANDOM)
		return;
	r.fd = c->fd;
	r.run = c->run;
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrm, &old);
	TEST_ASSERT(pthread_create(&t, NULL, racer_main, &r) == 0, "pthread_create");
	n = 1 + below(3);
	for (k = 0; k < n; k++) {
		vr = e = NULL;
		for (i = 0; i < MAX_RES; i++) {
			if (res[i].kind == K_VM && res[i].vm == vm)
				vr = &res[i];
			if (res[i].kind == K_EVM && res[i].vm == vm && atts[res[i].att].vm == vm)
				e = &res[i];
		}
		switch (below(5)) {
		case 0:
			for (i = 0; i < MAX_RES; i++)
				if (res[i].kind == K_EVM && res[i].vm == vm)
					close_res(&res[i]);	/* detach while it runs */
			break;
		case 1:
			if (vr)
				do_attach(vr->fd, false);
			break;
		case 2:
			if (e)
				do_grant(e->fd, pick(K_SERVICE), false);
			break;
		case 3:
			if (vr)
				memslot_on(vr);
			break;
		default:
			if (vr && one_in(3))
				close_res(vr);
		}
	}
	WRITE_ONCE(r.stop, 1);
	pthread_join(t, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	sh->count[R_RACE_RUN][0] += r.runs - r.eintr;
	sh->count[R_RACE_RUN][EINTR] += r.eintr;
	for (i = 0; i < MAX_EXIT; i++)
		sh->exits[i] += r.exits[i];
	c->fresh = true;
	c->pending = true;	/* perhaps: settle() finds out */
}

/* ---- the fuzzing process -------------------------------------------------------------- */

static const struct {
	void (*fn)(void);
	int weight;
} ops[] = {
	{ op_get_version, 3 }, { op_open_dev, 1 }, { op_memfd, 4 }, { op_memfd_change, 5 },
	{ op_region, 12 }, { op_service, 11 }, { op_attach, 6 }, { op_grant, 11 },
	{ op_unknown_ioctl, 3 }, { op_close, 8 }, { op_dup, 2 }, { op_create_vm, 2 },
	{ op_create_vcpu, 3 }, { op_memslot, 5 }, { op_run, 12 }, { op_set_regs, 3 },
	{ op_set_sregs, 3 }, { op_reattach, 3 }, { op_nmi, 1 }, { op_race, 2 },
};

static void tick(int sig)
{
	(void)sig;
}

static void drop_cap_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return;
	d[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	d[CAP_TO_INDEX(CAP_IPC_LOCK)].permitted &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	syscall(SYS_capset, &h, d);
}

static struct res *add_misc(const char *name, int fd, bool readable, bool writable,
			    bool shmem)
{
	struct res *r;

	if (fd < 0)
		return NULL;
	r = add_res(K_MISC, fd);
	r->name = name;
	r->readable = readable;
	r->writable = writable;
	r->shmem = shmem;
	return r;
}

static void misc_fds(void)
{
	struct res *r;
	int p[2], sv[2], fd;

	add_misc("/dev/null", open("/dev/null", O_RDWR | O_CLOEXEC), true, true, false);
	add_misc("/dev/zero", open("/dev/zero", O_RDWR | O_CLOEXEC), true, true, false);
	add_misc("a directory", open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC), true, false,
		 false);
	add_misc("a procfs file", open("/proc/version", O_RDONLY | O_CLOEXEC), true, false,
		 false);
	r = add_misc("an O_PATH fd", open("/tmp", O_PATH | O_CLOEXEC), false, false, false);
	if (r)
		r->opath = true;
	if (pipe2(p, O_CLOEXEC) == 0) {
		TEST_ASSERT(write(p[1], "elisa", 5) == 5, "pipe");
		add_misc("a pipe", p[0], true, false, false);
		r = add_misc("a pipe's write end", p[1], false, true, false);
		if (r)
			r->unreadable = true;
	}
	add_misc("an eventfd", eventfd(0, EFD_CLOEXEC), true, true, false);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
		add_misc("a socket", sv[0], true, true, false);
		close(sv[1]);
	}
	add_misc("/dev/kvm", kvm_fd, false, false, false);
	fd = open("/dev/shm/elisa-fuzz", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		unlink("/dev/shm/elisa-fuzz");
		TEST_ASSERT(ftruncate(fd, 16 * PAGE) == 0, "/dev/shm file");
		add_misc("a /dev/shm file", fd, true, true, true);
	}
}

static void fuzz(u64 seed, u64 calls)
{
	struct sigaction sa = { .sa_handler = tick };
	struct itimerval it = { { 0, TICK_US }, { 0, TICK_US } };
	struct rlimit rl = { FUZZ_MEMLOCK, FUZZ_MEMLOCK };
	int total = 0, i, w;
	unsigned int n;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	rng = seed ^ 0x9e3779b97f4a7c15ULL;
	if (!rng)
		rng = 1;
	setrlimit(RLIMIT_MEMLOCK, &rl);
	drop_cap_ipc_lock();

	arena = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(arena != MAP_FAILED, "mmap");
	mprotect(arena + PAGE, PAGE, PROT_NONE);
	mprotect(arena + 2 * PAGE, PAGE, PROT_READ);

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	TEST_ASSERT(kvm_fd >= 0, "open /dev/kvm: %s", strerror(errno));
	run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	n = 256;
	cpuid = calloc(1, sizeof(*cpuid) + n * sizeof(cpuid->entries[0]));
	cpuid->nent = n;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid)) {
		free(cpuid);
		cpuid = NULL;
	}
	{
		/* a new vCPU's segment state, for real-mode programs at CS base 0 */
		int vm = ioctl(kvm_fd, KVM_CREATE_VM, 0), c;

		TEST_ASSERT(vm >= 0, "KVM_CREATE_VM: %s", strerror(errno));
		c = ioctl(vm, KVM_CREATE_VCPU, 0);
		TEST_ASSERT(c >= 0 && ioctl(c, KVM_GET_SREGS, &real_sregs) == 0, "vCPU");
		real_sregs.cs.base = 0;
		real_sregs.cs.selector = 0;
		close(c);
		close(vm);
	}
	misc_fds();

	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);

	for (i = 0; i < (int)ARRAY_SIZE(ops); i++)
		total += ops[i].weight;
	while (sh->calls < calls) {
		sh->ops++;
		w = below(total);
		for (i = 0; w >= ops[i].weight; i++)
			w -= ops[i].weight;
		ops[i].fn();
	}
	/* close everything in random order */
	while ((n = MAX_RES - count_kind(K_FREE) - count_kind(K_MISC)) > 0) {
		w = below(n);
		for (i = 0; i < MAX_RES; i++)
			if (res[i].kind != K_FREE && res[i].kind != K_MISC && !w--)
				break;
		close_res(&res[i]);
	}
	sh->done = 1;
}

/* ---- the parent: run, watch, report --------------------------------------------------- */

static void describe(char *buf, size_t n, const struct cur_call *c)
{
	const struct elisa_create_service *cs = (const void *)c->arg;
	const struct elisa_create_region *cr = (const void *)c->arg;
	const struct elisa_attach_vm *av = (const void *)c->arg;
	const struct elisa_version *v = (const void *)c->arg;
	const struct elisa_grant *g = (const void *)c->arg;
	int k = 0, i;

#define P(...) (k += snprintf(buf + k, k < (int)n ? n - k : 0, __VA_ARGS__))
	P("%s(fd %d %s, ", row_name[c->row], c->fd, c->what[0]);
	switch (c->row) {
	case R_GET_VERSION:
		P("{flags %#x, reserved %#llx %#llx %#llx %#llx}", v->flags,
		  (unsigned long long)v->reserved[0], (unsigned long long)v->reserved[1],
		  (unsigned long long)v->reserved[2], (unsigned long long)v->reserved[3]);
		break;
	case R_ATTACH:
		P("{flags %#x, vm_fd %d %s, reserved %#llx %#llx %#llx}", av->flags, av->vm_fd,
		  c->what[1], (unsigned long long)av->reserved[0],
		  (unsigned long long)av->reserved[1], (unsigned long long)av->reserved[2]);
		break;
	case R_REGION:
		P("{flags %#x, fd %d %s, offset %#llx, length %#llx, reserved %#llx %#llx %#llx "
		  "%#llx}", cr->flags, cr->fd, c->what[1],
		  (unsigned long long)cr->offset, (unsigned long long)cr->length,
		  (unsigned long long)cr->reserved[0], (unsigned long long)cr->reserved[1],
		  (unsigned long long)cr->reserved[2], (unsigned long long)cr->reserved[3]);
		break;
	case R_SERVICE:
		P("{flags %#x, code_fd %d %s, code_offset %#llx, code_size %#llx, code_gva %#llx, "
		  "entry_offset %#llx, nr_regions %u, reserved0 %#x, regions", cs->flags,
		  cs->code_fd, c->what[1], (unsigned long long)cs->code_offset,
		  (unsigned long long)cs->code_size, (unsigned long long)cs->code_gva,
		  (unsigned long long)cs->entry_offset, cs->nr_regions, cs->reserved0);
		for (i = 0; i < ELISA_SERVICE_MAX_REGIONS; i++) {
			const struct elisa_service_region *r = &cs->regions[i];

			if (!r->region_fd && !r->access && !r->gva && !r->reserved[0] &&
			    !r->reserved[1])
				continue;	/* an unused entry, as it should be */
			P(" [%d: fd %d %s, access %#x, gva %#llx", i, r->region_fd, c->what[2 + i],
			  r->access, (unsigned long long)r->gva);
			if (r->reserved[0] || r->reserved[1])
				P(", reserved %#llx %#llx", (unsigned long long)r->reserved[0],
				  (unsigned long long)r->reserved[1]);
			P("]");
		}
		P(", reserved %#llx %#llx %#llx %#llx}", (unsigned long long)cs->reserved[0],
		  (unsigned long long)cs->reserved[1], (unsigned long long)cs->reserved[2],
		  (unsigned long long)cs->reserved[3]);
		break;
	case R_GRANT:
		P("{flags %#x, service_fd %d %s, entry_gva %#llx, reserved %#llx %#llx %#llx "
		  "%#llx}", g->flags, g->service_fd, c->what[1],
		  (unsigned long long)g->entry_gva, (unsigned long long)g->reserved[0],
		  (unsigned long long)g->reserved[1], (unsigned long long)g->reserved[2],
		  (unsigned long long)g->reserved[3]);
		break;
	default:
		P("cmd %#lx", c->cmd);
	}
	P(")%s", argmode_name[c->argmode]);
#undef P
}

static u64 env_u64(const char *name, u64 def)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : def;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void print_summary(double secs)
{
	int row, e, k;
	char line[1024];

	ksft_print_msg("%llu calls in %llu operations, %.1f s, %.0f calls/s\n", sh->calls, sh->ops,
		       secs, secs > 0 ? sh->calls / secs : 0.0);
	ksft_print_msg("%-28s %8s %8s  errors\n", "call", "total", "ok");
	for (row = 0; row < NR_ROWS; row++) {
		unsigned long long total = 0;

		for (e = 0; e < MAX_ERRNO; e++)
			total += sh->count[row][e];
		if (!total)
			continue;
		k = 0;
		for (e = 1; e < MAX_ERRNO; e++)
			if (sh->count[row][e])
				k += snprintf(line + k, sizeof(line) - k, "%s%s %llu", k ? ", " : "",
					      errname(e), sh->count[row][e]);
		line[k] = 0;
		ksft_print_msg("%-28s %8llu %8llu  %s\n", row_name[row], total, sh->count[row][0],
			       line);
	}
	k = 0;
	for (e = 0; e < MAX_EXIT; e++)
		if (sh->exits[e])
			k += snprintf(line + k, sizeof(line) - k, "%s%s %llu", k ? ", " : "",
				      exit_name(e), sh->exits[e]);
	line[k] = 0;
	ksft_print_msg("KVM_RUN exits: %s; EINTR %llu; OUT after an ELISA call %llu\n", line,
		       sh->run_eintr, sh->calls_in_guest);
	k = 0;
	for (e = 0; e < 256; e++)
		if (sh->vectors[e])
			k += snprintf(line + k, sizeof(line) - k, "%s%d: %llu", k ? ", " : "", e,
				      sh->vectors[e]);
	line[k] = 0;
	ksft_print_msg("guest exceptions by vector: %s\n", k ? line : "none");
	ksft_print_msg("elisa ioctls: %llu checked, %llu on other fds (not checked), %llu with "
		       "a predicted outcome; grants that succeeded %llu\n", sh->elisa_checked,
		       sh->elisa_unchecked, sh->predicted, sh->grants_ok);
	ksft_print_msg("largest pools: dev %llu, memfd %llu, region %llu, service %llu, vm %llu, "
		       "vcpu %llu, elisa-vm %llu\n", sh->peak[K_DEV], sh->peak[K_MEMFD],
		       sh->peak[K_REGION], sh->peak[K_SERVICE], sh->peak[K_VM], sh->peak[K_VCPU],
		       sh->peak[K_EVM]);
}

static void print_findings(u64 seed)
{
	int i;

	for (i = 0; i < sh->nr_findings; i++) {
		struct finding *f = &sh->findings[i];

		ksft_print_msg("finding %d (%s, %llu times): call %llu: %s\n", i + 1,
			       f->kind == F_UNDOCUMENTED ? "undocumented errno" : "not as predicted",
			       f->count, f->first_call, f->what);
		ksft_print_msg("  %s\n", f->desc);
		ksft_print_msg("  reproduce: ELISA_FUZZ_SEED=%#llx ELISA_FUZZ_CALLS=%llu\n",
			       (unsigned long long)seed, f->first_call + 1);
	}
}

/* Pages elisa holds and pins, and the VMs debugfs elisa/vms lists. */
static bool vms_state(long *held, long *pinned, int *nr_vms)
{
	*nr_vms = elisa_vm_records();
	return elisa_pages(held, pinned) && *nr_vms >= 0;
}

/* A fresh VM attaches, and its detach gives back what it took. */
static bool attach_fresh(int *fd_out, long *held_after)
{
	struct elisa_attach_vm av = { 0 };
	long pinned;
	int dev, kvm, vm, evm, nr;

	*fd_out = -1;
	dev = open(ELISA_DEV, O_RDWR | O_CLOEXEC);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vm = kvm >= 0 ? ioctl(kvm, KVM_CREATE_VM, 0) : -1;
	if (dev < 0 || vm < 0)
		return false;
	TEST_ASSERT(ioctl(vm, KVM_CREATE_VCPU, 0) >= 0, "KVM_CREATE_VCPU");
	av.vm_fd = vm;
	evm = ioctl(dev, ELISA_ATTACH_VM, &av);
	*fd_out = evm < 0 ? -errno : evm;
	if (evm >= 0)
		close(evm);
	close(vm);
	close(kvm);
	close(dev);
	*held_after = -1;
	return evm >= 0 && vms_state(held_after, &pinned, &nr) && !*held_after && !pinned && !nr;
}

int main(void)
{
	u64 seed = env_u64("ELISA_FUZZ_SEED", DEFAULT_SEED);
	u64 calls = env_u64("ELISA_FUZZ_CALLS", DEFAULT_CALLS);
	long held0 = -1, pinned0 = -1, held = -1, pinned = -1, huge_old;
	unsigned long long last = 0;
	double t0, t_last, t_progress, secs;
	int status = 0, nr_vms = -1, fd, dev;
	char why[DESC_LEN + 128] = "";
	bool exited, have_dev;
	pid_t pid;

	if (env_u64("ELISA_FUZZ_TRACE", 0))
		trace_from = env_u64("ELISA_FUZZ_TRACE_FROM", 0);
	kvm_only = env_u64("ELISA_FUZZ_KVM_ONLY", 0);
	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	dev = open(ELISA_DEV, O_RDWR | O_CLOEXEC);
	have_dev = dev >= 0;
	if (!have_dev && !kvm_only)
		ksft_exit_skip("no %s (ELISA_FUZZ_KVM_ONLY=1 fuzzes KVM alone)\n", ELISA_DEV);
	if (have_dev)
		close(dev);
	ksft_set_plan(5);
	ksft_print_msg("seed %#llx, %llu calls (ELISA_FUZZ_SEED, ELISA_FUZZ_CALLS)\n",
		       (unsigned long long)seed, (unsigned long long)calls);
	if (have_dev && vms_state(&held0, &pinned0, &nr_vms))
		ksft_print_msg("before: pages held %ld pinned %ld, %d VMs attached\n", held0,
			       pinned0, nr_vms);
	huge_old = elisa_nr_hugepages(-1);
	if (huge_old >= 0)
		elisa_nr_hugepages(huge_old + FUZZ_HUGEPAGES);

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(sh != MAP_FAILED, "mmap shared record");
	documented_init();
	fflush(stdout);
	t0 = t_last = now();
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		fuzz(seed, calls);
		_exit(0);
	}
	/* watch: a child that makes no call for FUZZ_STALL_S seconds hangs */
	for (t_progress = t0;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (now() - t_progress >= FUZZ_PROGRESS_S) {
			t_progress = now();
			ksft_print_msg("progress: %llu calls in %.0f s\n", sh->calls, t_progress - t0);
		}
		if (sh->calls != last) {
			last = sh->calls;
			t_last = now();
		} else if (now() - t_last > FUZZ_STALL_S) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			snprintf(why, sizeof(why), "no call finished for %d s", FUZZ_STALL_S);
			break;
		}
		usleep(100 * 1000);
	}
	secs = now() - t0;
	if (huge_old >= 0)
		elisa_nr_hugepages(huge_old);
	print_summary(secs);
	print_findings(seed);

	exited = !why[0] && WIFEXITED(status) && WEXITSTATUS(status) == 0 && sh->done;
	if (!exited) {
		char d[DESC_LEN];

		describe(d, sizeof(d), &sh->cur);
		if (!why[0])
			snprintf(why, sizeof(why), "%s %d", WIFSIGNALED(status) ? "signal" : "exit",
				 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		ksft_print_msg("the fuzzing process ended at call %llu (%s); the last elisa ioctl "
			       "was call %llu: %s\n", sh->calls, why, sh->cur.index, d);
		ksft_print_msg("reproduce: ELISA_FUZZ_SEED=%#llx ELISA_FUZZ_CALLS=%llu\n",
			       (unsigned long long)seed, sh->calls + 1);
	}
	CHECK(!sh->nr_undocumented, "errnos_documented",
	      ": %llu elisa ioctls checked, %llu errnos outside api.rst", sh->elisa_checked,
	      sh->nr_undocumented);
	CHECK(!sh->nr_unpredicted, "outcomes_predicted",
	      ": %llu calls with a predicted outcome, %llu otherwise", sh->predicted,
	      sh->nr_unpredicted);
	if (sh->loops_if0)
		ksft_print_msg("the fuzzer's own bug: %llu guests looped with IF = 0\n",
			       sh->loops_if0);
	CHECK(exited && !sh->loops_if0, "no_crash", ": %llu of %llu calls, %s", sh->calls,
	      (unsigned long long)calls, exited ? "exited 0" : why);
	if (!have_dev) {
		ksft_test_result_skip("pages_released: no %s\n", ELISA_DEV);
		ksft_test_result_skip("attach_after: no %s\n", ELISA_DEV);
		ksft_finished();
	}
	CHECK(vms_state(&held, &pinned, &nr_vms) && !held && !pinned && !nr_vms,
	      "pages_released", ": pages held %ld pinned %ld, %d VMs listed (before the fuzzing: "
	      "held %ld pinned %ld)", held, pinned, nr_vms, held0, pinned0);
	CHECK(attach_fresh(&fd, &held), "attach_after",
	      ": ELISA_ATTACH_VM gave %d; pages held %ld after its detach", fd, held);
	ksft_finished();
}
