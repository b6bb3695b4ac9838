// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_hostile_vmm_test: a VMM that holds /dev/elisa and tries everything the ABI lets it
 * pass. Every refusal is the errno Documentation/api.rst lists, nothing is made or left
 * pinned by a refused call, the host never warns, and isolation holds.
 *
 * ABI (no guest):
 *  1. wrong_sizes: each ioctl number with another size (0, 8, size -/+ 8, twice the size,
 *     the largest) or another direction, elisa's numbers that do not exist, and the right
 *     number with another type byte: ENOTTY
 *  2. wrong_fd_for_ioctl: each ioctl on an elisa fd that does not take it (device ioctls on
 *     an elisa-vm, region or service fd; ELISA_GRANT on /dev/elisa or a region or service
 *     fd): ENOTTY
 *  3. unknown_flags: every undefined bit of each ioctl's flags: EINVAL, no fd made, the VM
 *     still attachable afterwards, elisa's page counts unchanged
 *  4. reserved_nonzero: each reserved word of each ioctl set to 1 or to 1 << 63, and each
 *     field of an unused region entry set: EINVAL, nothing made
 *  5. region_range_overflow: offset + length wrapping, lengths past ELISA_REGION_MAX_SIZE
 *     (1 GiB + 4 KiB, 2 GiB, 2^63, 2^64 - 4 KiB), offsets past the end of the file
 *     (2^63 included): EINVAL, VmPin unchanged
 *  6. service_range_overflow: code offsets 2^63, 2^64 - 4 KiB and past the end of the code
 *     file, code sizes past 64 KiB, entry offsets at or past the code size, 9 and 2^32 - 1
 *     regions: EINVAL
 *  7. gva_wrap_refused: services whose code or region GVAs wrap past 2^64 or cross the
 *     non-canonical hole are made (the fields are well formed), and their grant fails
 *     with EINVAL; so do G values that wrap (0xfffffffffffff000, 0x1000) or are not
 *     canonical
 *  8. wx_access_refused: region access 0, WRITE alone, an execute-like bit (4) with and
 *     without READ | WRITE, 8 and ~0: EINVAL; a region can only be mapped R or RW, never
 *     executable
 *  9. region_over_code_refused: a region at the code's GVA, one inside a two-page code,
 *     one over the entry block at G, and two regions at one GVA: the service is made, the
 *     grant fails with EINVAL (no page can be code and writable data at once)
 * 10. wrong_fd_attach: ELISA_ATTACH_VM.vm_fd of every wrong kind (a closed fd, -1,
 *     INT_MAX, an O_PATH fd, /dev/kvm, a vCPU fd, /dev/elisa, an elisa-vm, region or
 *     service fd, a pipe, an eventfd, a socket, a memfd, a directory, /dev/zero): EBADF for the
 *     first four, EINVAL for the others
 * 11. wrong_fd_region: ELISA_CREATE_REGION.fd of every wrong kind (those, and a KVM VM
 *     fd): EBADF or EINVAL
 * 12. wrong_fd_code: ELISA_CREATE_SERVICE.code_fd of every kind that cannot be read
 *     (EBADF or EINVAL) or gives less than code_size bytes (an eventfd: EINVAL); a pipe
 *     holding a page is a readable file and is accepted; a directory and /dev/zero are
 *     refused before kernel_read(), which would log their path unescaped
 * 13. wrong_fd_service_region: ELISA_CREATE_SERVICE.regions[0].region_fd of every wrong
 *     kind, a service fd and a memfd included: EBADF or EINVAL
 * 14. wrong_fd_grant: ELISA_GRANT.service_fd of every wrong kind, a region fd included:
 *     EBADF or EINVAL
 *
 * Capabilities: fds passed with SCM_RIGHTS over a Unix socket to a child that dropped to
 * uid 65534 and keeps nothing else:
 * 15. passed_fds_grant_only: the child cannot open /dev/elisa (EACCES); the device ioctls
 *     on the fds it got are ENOTTY (it cannot attach or create), ELISA_GRANT with a region
 *     fd as the service is EINVAL; ELISA_GRANT of the service fd it got, through the
 *     elisa-vm fd it got, succeeds (index 511), and the parent's guest then calls it
 * 16. passed_device_fd: a /dev/elisa fd passed the same way lets such a child make a
 *     region: the fd is the privilege, not the uid
 *
 * Code and regions are never executable:
 * 17. code_copied: the VMM rewrites the code memfd after ELISA_CREATE_SERVICE (to return
 *     0x1337); the guest's call still runs the code as it was (the counter)
 * 18. region_not_executable: the service jumps into its region, where the VMM wrote code
 *     returning 0x1337: the run ends with KVM_EXIT_SHUTDOWN, registers zeroed, and 0x1337
 *     is never returned
 *
 * Regions and their files (Documentation/api.rst, ELISA_CREATE_REGION):
 * 19. memfd_needs_shrink_seal: a memfd made without MFD_ALLOW_SEALING, one with it but
 *     unsealed, and one sealed with F_SEAL_GROW | F_SEAL_SEAL only: EPERM, and the kernel
 *     log says to seal it with F_SEAL_SHRINK; with F_SEAL_SHRINK: a region
 * 20. memfd_sealed_no_truncate: the sealed memfd of a region cannot be shrunk (EPERM, its
 *     size stays), and a service of the region is made
 * 21. memfd_punch_detected: a hole punched into a sealed memfd's region: ELISA_CREATE_SERVICE
 *     of the region and ELISA_GRANT of a service made before are refused with ENXIO,
 *     each with a kernel-log line naming the file; the region's release logs that writes
 *     since are not in the file
 * 22. tmpfs_truncate_detected: the same for a /dev/shm file (which cannot be sealed)
 *     truncated to 0
 * 23. tmpfs_punch_detected: the same for a hole punched into a /dev/shm file whose name
 *     holds a newline and an escape: the log lines carry the name escaped. Before: raw,
 *     so a VMM naming its region's file could forge kernel log lines (a review).
 * 24. decoupled_after_grant: a /dev/shm region already granted keeps working after the
 *     file is truncated (the call writes the pinned page), the file then reads 0, and the
 *     region's release logs the warning
 *
 * Teardown under load:
 * 25. close_orders_during_calls: the region fd, the service fd, the VM fd and the elisa-vm
 *     fd are closed in each of their 24 orders while a second thread's vCPU calls the
 *     service in a loop: the calls keep working until the elisa-vm fd goes, then the
 *     guest sees -ENODEV (never a success after it); the one call a detach may interrupt
 *     (parked at an exit inside a view) returns -EINTR; nothing else; elisa's pages
 *     held and pinned (debugfs) and VmPin return to their start each time
 * 26. sigkill_mid_call: a child VMM (its own VM, region, service and grant) is killed with
 *     SIGKILL while its vCPU calls in a loop: elisa's page counts return to their start,
 *     no VM stays attached, and a new VM attaches, is granted and calls
 *
 * Memslots over the trusted window a grant reported:
 * 27. memslot_in_trusted_window: KVM accepts a memslot at trusted_gpa; the guest's default
 *     view reads the VMM's pages there (a marker in each) and writes to them, never the
 *     views' pages; the service goes on working
 * 28. memslot_window_moves_up: a second service granted then gets a window above the
 *     memslot; once the memslot is deleted the GPA is MMIO again, and both services work
 *
 * 29. code_fd_write_only: a code_fd open O_WRONLY (a memfd reopened so, a pipe's write
 *     end) fails with EBADF. Before: a kernel warning in __kernel_read() (a host panic
 *     with panic_on_warn).
 * 30. readonly_device: /dev/elisa opened O_RDONLY answers ELISA_GET_VERSION, and
 *     ELISA_ATTACH_VM, ELISA_CREATE_REGION and ELISA_CREATE_SERVICE with well-formed
 *     requests fail with EBADF, nothing made (elisa's page counts and VmPin unchanged), an
 *     unknown number still ENOTTY; the same requests then succeed on an O_RDWR fd. Before:
 *     read access to the device was enough to attach VMs and make services.
 * 31. grant_charged_to_vm_owner: a child VMM in its own memory cgroup makes a VM with 32
 *     vCPUs and passes its fd to this process, in another cgroup, which attaches and
 *     grants (as elisactl serve does): the views (about 200 KiB a vCPU) are charged to the
 *     VMM's cgroup (memory.current grows by at least 4 MiB there, under 1 MiB here), and
 *     the grant reports 32 vCPUs. Before: all of it was charged to the granting process,
 *     so a VMM served by a root manager made root pay for as many vCPUs as it made.
 *     Needs cgroup v2 with the memory controller (mounted at /sys/fs/cgroup if nothing is).
 * 32. orphaned_vm_refused: a child VMM makes a VM, passes its fd to this process, which
 *     attaches it; the child's main thread exits while another thread lives, and a grant
 *     works; then its last thread exits: a grant again fails with ESRCH, and so does
 *     another attach after the first is closed, each with a log line. Before: the grant went through,
 *     charged to the root memory cgroup (no one's limit) since the VM's owner was gone,
 *     for a VM that can never run (a review).
 * 33. detach_invept_batched: the detach of a VM of 64 granted vCPUs sends at most 3 INVEPT
 *     broadcasts (debugfs "invept"; 128 views, 64 per broadcast), each of which makes
 *     every running guest on the host exit. Before: one per vCPU, so a VMM chose how many
 *     by its vCPU count.
 * 34. guest_log_per_vm: a VM of 24 vCPUs with a user grant on a guest without SMAP: the
 *     first entry of each vCPU logs that its user gates stay closed, at most 10 lines
 *     for the VM (its own budget); a caller's refusal right after (ELISA_GET_VERSION with
 *     a flag) is logged. Before: both shared the module's one budget (10 lines in 5 s),
 *     which the guest's lines used up, so the refusal went unlogged: any VM's guest could
 *     hide other VMMs' refusals from the administrator.
 * 35. cet_log_bounded: a VM of 24 vCPUs whose CPUID exposes IBT, granted a service whose
 *     entry lacks ENDBR64: each vCPU's first run (more than one entry) reads the CPUID
 *     (its gate stays closed) and warns; at most 10 of the 24 lines reach the log, at
 *     least 1 (the module's budget, as callers' refusals: the VMM's doing). Before: one
 *     line per vCPU, grant and attachment, as many as the VMM liked.
 * 36. broken_log_bounded: a VM of 24 vCPUs granted a supervisor service, each of whose
 *     vCPUs switches to the gate view with a VMFUNC of its own (not the entry block's), so
 *     that its next fetch exits inside the view and the run ends (KVM_EXIT_SHUTDOWN): at
 *     most 10 of the 24 "inside the gate or sub view" lines reach the log, at least 1 (the
 *     VM's budget), by the end of the detach (the exit trampoline leaves the line to the
 *     vCPU's next entry, and detach prints those of runs that ended). Before: one line per
 *     vCPU and attachment with no budget, printed with IRQs off in the exit probe.
 */
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "elisa_kvm.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"
#include "elisa_cgroup.h"

#define G 0x500000000000UL
#define CODE_GVA 0x600000000000UL
#define REGION_GVA 0x600000100000UL
#define REGION2_GVA 0x600000200000UL
#define PROBE_GVA 0x480000000000UL
#define EXEC_OFF 0x100
#define EVIL 0x1337
#define SHM_DIR "/dev/shm"
#define NPLAN 36

/* ---- the guest: one operation per host request --------------------------------------- */

enum { OP_IDLE, OP_CALL, OP_READ, OP_WRITE, OP_LOOP, OP_PROGRESS };

/* What the host asks for (written before each run). */
static struct {
	u64 op, index, a0, a1;
} gcmd;
/* Set by the host while OP_LOOP runs, to end it. */
static u64 gstop;
/* OP_LOOP's tallies. */
static struct {
	u64 ok, enodev, eintr, bad, badval, ok_after_enodev;
} gres;

static void guest_main(void)
{
	long r, last;
	u64 i;

	for (;;) {
		switch (READ_ONCE(gcmd.op)) {
		case OP_CALL:
			r = elisa_call(G, gcmd.index, gcmd.a0, gcmd.a1);
			GUEST_SYNC_ARGS(OP_CALL, r, 0, 0, 0);
			break;
		case OP_READ:
			r = READ_ONCE(*(volatile u64 *)gcmd.a0);
			GUEST_SYNC_ARGS(OP_READ, r, 0, 0, 0);
			break;
		case OP_WRITE:
			WRITE_ONCE(*(volatile u64 *)gcmd.a0, gcmd.a1);
			GUEST_SYNC_ARGS(OP_WRITE, 0, 0, 0, 0);
			break;
		case OP_LOOP:
			/*
			 * Calls until the host sets gstop. A window with IF = 1 after each call
			 * lets the host's interrupts end the run (the emulated host takes no
			 * external-interrupt exit while the guest's IF is 0), and a ucall every
			 * 64 calls reports progress.
			 */
			last = 0;
			for (i = 1; !READ_ONCE(gstop); i++) {
				r = elisa_call(G, gcmd.index, 1, 0);
				if (r > last) {
					gres.ok++;
					gres.ok_after_enodev += !!gres.enodev;
					last = r;
				} else if (r == ELISA_CALL_ERR_NOT_ENTERED) {
					gres.enodev++;
				} else if (r == ELISA_CALL_ERR_INTERRUPTED) {
					gres.eintr++;
				} else {
					gres.bad++;
					gres.badval = r;
				}
				asm volatile("sti; nop; nop; cli" ::: "memory");
				if (!(i % 64))
					GUEST_SYNC_ARGS(OP_PROGRESS, gres.ok, gres.enodev, gres.bad, 0);
			}
			GUEST_SYNC_ARGS(OP_LOOP, gres.ok, gres.enodev, gres.bad, 0);
			break;
		default:
			GUEST_SYNC(OP_IDLE);
		}
	}
}

/* ---- host helpers ------------------------------------------------------------------- */

static int dev;

/* ioctl; the result, or -errno. */
static int xioctl(int fd, unsigned long cmd, void *arg)
{
	int r = ioctl(fd, cmd, arg);

	return r < 0 ? -errno : r;
}

/* A count of expectations and of those that failed; each failure is printed. */
struct tally {
	int n, bad;
};

/*
 * @got is an ioctl's result (-errno or a new fd), @want the expected -errno, or 0 for a
 * new fd. A new fd is closed.
 */
static void expect(struct tally *t, const char *what, int got, int want)
{
	bool ok = want ? got == want : got >= 0;

	t->n++;
	if (!ok) {
		t->bad++;
		ksft_print_msg("%s: %d (%s), want %d\n", what, got,
			       got < 0 ? strerror(-got) : "an fd", want);
	}
	if (got >= 0)
		close(got);
}

static void service_code(u8 *c)
{
	static const u8 code[] = {
		0x48, 0x85, 0xf6,			/* test rsi, rsi */
		0x75, 0x17,				/* jnz jump (+23) */
		0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,	/* mov rax, REGION_GVA */
		0x48, 0x89, 0xfa,			/* mov rdx, rdi */
		0xf0, 0x48, 0x0f, 0xc1, 0x38,		/* lock xadd [rax], rdi */
		0x48, 0x8d, 0x04, 0x17,			/* lea rax, [rdi + rdx] */
		0xc3,					/* ret */
		0xff, 0xe6,				/* jump: jmp rsi */
	};
	u64 r = REGION_GVA;

	memset(c, 0xcc, 4096);
	memcpy(c, code, sizeof(code));
	memcpy(c + 7, &r, 8);
}

/* mov rax, EVIL; ret */
static const u8 evil_code[] = { 0x48, 0xc7, 0xc0, 0x37, 0x13, 0x00, 0x00, 0xc3 };

/* A memfd of @pages pages sealed with F_SEAL_SHRINK. */
static int sealed_memfd(const char *name, int pages)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	TEST_ASSERT(fd >= 0 && ftruncate(fd, pages * 4096) == 0 &&
		    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "memfd %s: %s", name,
		    strerror(errno));
	return fd;
}

/* A file of @pages pages on the tmpfs at /dev/shm, unlinked; its name in @path. */
static int shm_file(const char *name, int pages, char *path, size_t len)
{
	int fd;

	snprintf(path, len, SHM_DIR "/%s", name);
	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	TEST_ASSERT(fd >= 0 && ftruncate(fd, pages * 4096) == 0, "%s: %s", path, strerror(errno));
	unlink(path);
	return fd;
}

/* ELISA_CREATE_REGION; the fd or -errno. */
static int region(int fd, u64 offset, u64 length)
{
	struct elisa_create_region cr = { .fd = fd, .offset = offset, .length = length };

	return xioctl(dev, ELISA_CREATE_REGION, &cr);
}

/*
 * A valid ELISA_CREATE_SERVICE request: one code page from @code_fd, @region_fd at
 * REGION_GVA read-write (none when negative).
 */
static struct elisa_create_service service_req(int code_fd, int region_fd)
{
	struct elisa_create_service cs = { 0 };

	cs.code_fd = code_fd;
	cs.code_size = 4096;
	cs.code_gva = CODE_GVA;
	if (region_fd >= 0) {
		cs.nr_regions = 1;
		cs.regions[0].region_fd = region_fd;
		cs.regions[0].access = ELISA_ACCESS_READ | ELISA_ACCESS_WRITE;
		cs.regions[0].gva = REGION_GVA;
	}
	return cs;
}

static int code_memfd(void)
{
	static u8 code[4096];

	service_code(code);
	return memfd_page("hostile-code", code);
}

/* ELISA_CREATE_SERVICE of the test's code with @region_fd; the fd or -errno. */
static int service(int region_fd)
{
	int code = code_memfd();
	struct elisa_create_service cs = service_req(code, region_fd);
	int r = xioctl(dev, ELISA_CREATE_SERVICE, &cs);

	close(code);
	return r;
}

/* ELISA_GRANT of @svc at @g on @evm; 0 or -errno; the output in *@out if not NULL. */
static int grant(int evm, int svc, u64 g, struct elisa_grant *out)
{
	struct elisa_grant gr = { .service_fd = svc, .entry_gva = g };
	int r = xioctl(evm, ELISA_GRANT, &gr);

	if (out)
		*out = gr;
	return r;
}

/* A KVM VM without memory or vCPUs (raw KVM_CREATE_VM); *@kvm gets the /dev/kvm fd. */
static int bare_vm(int *kvm)
{
	int vm;

	*kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	TEST_ASSERT(*kvm >= 0, "/dev/kvm: %s", strerror(errno));
	vm = ioctl(*kvm, KVM_CREATE_VM, 0);
	TEST_ASSERT(vm >= 0, "KVM_CREATE_VM: %s", strerror(errno));
	return vm;
}

static int attach(int vm_fd)
{
	struct elisa_attach_vm av = { .vm_fd = vm_fd };

	return xioctl(dev, ELISA_ATTACH_VM, &av);
}

/* A one-vCPU VM running guest_main, with the #UD handler and the entry block at G. */
struct gvm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	int evm;
};

static void gvm_create(struct gvm *g, bool do_attach)
{
	gpa_t gpa;

	g->vm = vm_create_with_one_vcpu(&g->vcpu, guest_main);
	elisa_install_ud_handler(g->vm);
	gpa = vm_phy_pages_alloc(g->vm, ELISA_GUEST_BLOCK_PAGES, 0x100000, 0);
	virt_map(g->vm, G, gpa, ELISA_GUEST_BLOCK_PAGES);
	memcpy(addr_gpa2hva(g->vm, gpa), elisa_guest_block, sizeof(elisa_guest_block));
	g->evm = -1;
	if (do_attach) {
		g->evm = attach(g->vm->fd);
		TEST_ASSERT(g->evm >= 0, "ELISA_ATTACH_VM: %s", strerror(-g->evm));
	}
}

static void gvm_free(struct gvm *g)
{
	if (g->evm >= 0)
		close(g->evm);
	kvm_vm_free(g->vm);
}

/* Runs one guest operation to its ucall; returns the guest's result. */
static long guest_op(struct gvm *g, u64 op, u64 index, u64 a0, u64 a1)
{
	struct ucall uc;

	gcmd.op = op;
	gcmd.index = index;
	gcmd.a0 = a0;
	gcmd.a1 = a1;
	sync_global_to_guest(g->vm, gcmd);
	elisa_run_sync(g->vcpu, op, &uc);
	return (long)uc.args[2];
}

static long guest_call(struct gvm *g, u64 index, u64 a0, u64 a1)
{
	return guest_op(g, OP_CALL, index, a0, a1);
}

/* The pages elisa holds and pins, and the VMs attached (debugfs elisa/vms). */
struct counts {
	long held, pinned, vmpin;
	int vms;
};

static struct counts counts(void)
{
	struct counts c = { -1, -1, elisa_vm_pin_kb(), elisa_vm_records() };

	TEST_ASSERT(elisa_pages(&c.held, &c.pinned) && c.vms >= 0, "debugfs elisa/vms: %s",
		    strerror(errno));
	return c;
}

static bool counts_eq(struct counts a, struct counts b)
{
	return a.held == b.held && a.pinned == b.pinned && a.vmpin == b.vmpin && a.vms == b.vms;
}

/* "@now (was @then)", for messages; in a static buffer. */
static const char *counts_str(struct counts now, struct counts then)
{
	static char buf[160];

	snprintf(buf, sizeof(buf), "held %ld pinned %ld VmPin %ld kB, %d VM(s) (was %ld, %ld, "
		 "%ld kB, %d)", now.held, now.pinned, now.vmpin, now.vms, then.held, then.pinned,
		 then.vmpin, then.vms);
	return buf;
}

/* ---- the kernel log ----------------------------------------------------------------- */

/* /dev/kmsg, positioned after the last record. */
static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	TEST_ASSERT(fd >= 0 && lseek(fd, 0, SEEK_END) >= 0, "/dev/kmsg: %s", strerror(errno));
	return fd;
}

/*
 * Reads the records logged since the last call and counts those that contain every one
 * of @a, @b (when not NULL) and @c (when not NULL).
 */
static int kmsg_count(int fd, const char *a, const char *b, const char *c)
{
	char rec[2048];
	ssize_t n;
	int hits = 0;

	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* records overwritten: go on with the next */
		if (n <= 0)
			break;
		rec[n] = 0;
		if (strstr(rec, a) && (!b || strstr(rec, b)) && (!c || strstr(rec, c)))
			hits++;
	}
	return hits;
}

/* ---- 1-2: wrong numbers ------------------------------------------------------------- */

static u8 big[16384];

static void wrong_sizes(int evm)
{
	static const struct {
		unsigned long cmd;
		bool on_vm;
	} cmds[] = {
		{ ELISA_GET_VERSION, false }, { ELISA_ATTACH_VM, false },
		{ ELISA_CREATE_REGION, false }, { ELISA_CREATE_SERVICE, false },
		{ ELISA_GRANT, true },
	};
	static const unsigned int nrs[] = { 0x04, 0x05, 0x0f, 0x11, 0x20, 0x80, 0xff };
	struct tally t = { 0 };
	char what[96];
	unsigned int i, j, k, dir, nr, size, sizes[6];

	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		unsigned long cmd = cmds[i].cmd;
		int fd = cmds[i].on_vm ? evm : dev;

		dir = _IOC_DIR(cmd);
		nr = _IOC_NR(cmd);
		size = _IOC_SIZE(cmd);
		sizes[0] = 0;
		sizes[1] = 8;
		sizes[2] = size - 8;
		sizes[3] = size + 8;
		sizes[4] = 2 * size;
		sizes[5] = _IOC_SIZEMASK;
		for (j = 0; j < ARRAY_SIZE(sizes); j++) {
			snprintf(what, sizeof(what), "nr %#x, size %u", nr, sizes[j]);
			expect(&t, what, xioctl(fd, _IOC(dir, ELISA_IOCTL_TYPE, nr, sizes[j]), big),
			       -ENOTTY);
		}
		for (k = 0; k < 4; k++) {
			if (k == dir)
				continue;
			snprintf(what, sizeof(what), "nr %#x, direction %u", nr, k);
			expect(&t, what, xioctl(fd, _IOC(k, ELISA_IOCTL_TYPE, nr, size), big),
			       -ENOTTY);
		}
		snprintf(what, sizeof(what), "nr %#x, type 0xe5", nr);
		expect(&t, what, xioctl(fd, _IOC(dir, 0xe5, nr, size), big), -ENOTTY);
	}
	for (i = 0; i < ARRAY_SIZE(nrs); i++) {
		snprintf(what, sizeof(what), "unknown nr %#x on /dev/elisa", nrs[i]);
		expect(&t, what, xioctl(dev, _IOWR(ELISA_IOCTL_TYPE, nrs[i], struct elisa_grant), big),
		       -ENOTTY);
		snprintf(what, sizeof(what), "unknown nr %#x on elisa-vm", nrs[i]);
		expect(&t, what, xioctl(evm, _IOWR(ELISA_IOCTL_TYPE, nrs[i], struct elisa_grant), big),
		       -ENOTTY);
	}
	CHECK(!t.bad, "wrong_sizes",
	      ": ioctl numbers of other sizes, directions or types, want ENOTTY: %d of %d not",
	      t.bad, t.n);
}

static void wrong_fd_for_ioctl(int evm, int reg, int svc)
{
	static const unsigned long dev_cmds[] = { ELISA_GET_VERSION, ELISA_ATTACH_VM,
						  ELISA_CREATE_REGION, ELISA_CREATE_SERVICE };
	const int not_dev[] = { evm, reg, svc };
	static const char *const names[] = { "elisa-vm", "elisa-region", "elisa-service" };
	struct tally t = { 0 };
	char what[96];
	unsigned int i, j;

	memset(big, 0, sizeof(big));
	for (i = 0; i < ARRAY_SIZE(dev_cmds); i++)
		for (j = 0; j < ARRAY_SIZE(not_dev); j++) {
			snprintf(what, sizeof(what), "device ioctl nr %#x on %s",
				 (unsigned int)_IOC_NR(dev_cmds[i]), names[j]);
			expect(&t, what, xioctl(not_dev[j], dev_cmds[i], big), -ENOTTY);
		}
	expect(&t, "ELISA_GRANT on /dev/elisa", xioctl(dev, ELISA_GRANT, big), -ENOTTY);
	expect(&t, "ELISA_GRANT on elisa-region", xioctl(reg, ELISA_GRANT, big), -ENOTTY);
	expect(&t, "ELISA_GRANT on elisa-service", xioctl(svc, ELISA_GRANT, big), -ENOTTY);
	CHECK(!t.bad, "wrong_fd_for_ioctl",
	      ": ioctls on elisa fds that do not take them, want ENOTTY: %d of %d not", t.bad,
	      t.n);
}

/* ---- 3-4: flags and reserved fields ------------------------------------------------- */

struct abi_objs {
	int kvm, vm, vm2, evm, memfd, reg, code, svc;
};

static void flags_and_reserved(struct abi_objs *o)
{
	struct elisa_version v;
	struct elisa_attach_vm av;
	struct elisa_create_region cr;
	struct elisa_create_service cs;
	struct elisa_grant gr;
	struct counts c0 = counts(), c1;
	struct tally t = { 0 }, r = { 0 };
	char what[96];
	int b, i, late;
	const u64 vals[] = { 1, 1ULL << 63 };

	for (b = 0; b < 32; b++) {
		memset(&v, 0, sizeof(v));
		v.flags = 1U << b;
		snprintf(what, sizeof(what), "ELISA_GET_VERSION flags bit %d", b);
		expect(&t, what, xioctl(dev, ELISA_GET_VERSION, &v), -EINVAL);

		av = (struct elisa_attach_vm){ .flags = 1U << b, .vm_fd = o->vm2 };
		snprintf(what, sizeof(what), "ELISA_ATTACH_VM flags bit %d", b);
		expect(&t, what, xioctl(dev, ELISA_ATTACH_VM, &av), -EINVAL);

		cr = (struct elisa_create_region){ .flags = 1U << b, .fd = o->memfd, .length = 4096 };
		snprintf(what, sizeof(what), "ELISA_CREATE_REGION flags bit %d", b);
		expect(&t, what, xioctl(dev, ELISA_CREATE_REGION, &cr), -EINVAL);

		cs = service_req(o->code, o->reg);
		cs.flags = 1U << b;
		snprintf(what, sizeof(what), "ELISA_CREATE_SERVICE flags bit %d", b);
		expect(&t, what, xioctl(dev, ELISA_CREATE_SERVICE, &cs), -EINVAL);

		if (!b)
			continue;	/* ELISA_GRANT_USER */
		gr = (struct elisa_grant){ .flags = 1U << b, .service_fd = o->svc, .entry_gva = G };
		snprintf(what, sizeof(what), "ELISA_GRANT flags bit %d", b);
		expect(&t, what, xioctl(o->evm, ELISA_GRANT, &gr), -EINVAL);
	}
	/* Nothing was attached: the VM still can be, once. */
	late = attach(o->vm2);
	expect(&t, "ELISA_ATTACH_VM after the refusals", late, 0);
	c1 = counts();
	CHECK(!t.bad && counts_eq(c0, c1), "unknown_flags",
	      ": every undefined flag bit, want EINVAL and nothing made: %d of %d not EINVAL; %s",
	      t.bad, t.n, counts_str(c1, c0));

	for (i = 0; i < 2; i++) {
		u64 x = vals[i];
		int k;

		for (k = 0; k < 4; k++) {
			memset(&v, 0, sizeof(v));
			v.reserved[k] = x;
			snprintf(what, sizeof(what), "ELISA_GET_VERSION reserved[%d] = %#lx", k,
				 (unsigned long)x);
			expect(&r, what, xioctl(dev, ELISA_GET_VERSION, &v), -EINVAL);

			cr = (struct elisa_create_region){ .fd = o->memfd, .length = 4096 };
			cr.reserved[k] = x;
			snprintf(what, sizeof(what), "ELISA_CREATE_REGION reserved[%d]", k);
			expect(&r, what, xioctl(dev, ELISA_CREATE_REGION, &cr), -EINVAL);

			cs = service_req(o->code, o->reg);
			cs.reserved[k] = x;
			snprintf(what, sizeof(what), "ELISA_CREATE_SERVICE reserved[%d]", k);
			expect(&r, what, xioctl(dev, ELISA_CREATE_SERVICE, &cs), -EINVAL);

			gr = (struct elisa_grant){ .service_fd = o->svc, .entry_gva = G };
			gr.reserved[k] = x;
			snprintf(what, sizeof(what), "ELISA_GRANT reserved[%d]", k);
			expect(&r, what, xioctl(o->evm, ELISA_GRANT, &gr), -EINVAL);
		}
		for (k = 0; k < 3; k++) {
			av = (struct elisa_attach_vm){ .vm_fd = o->vm };
			av.reserved[k] = x;
			snprintf(what, sizeof(what), "ELISA_ATTACH_VM reserved[%d]", k);
			expect(&r, what, xioctl(dev, ELISA_ATTACH_VM, &av), -EINVAL);
		}
		cs = service_req(o->code, o->reg);
		cs.reserved0 = (u32)x ?: 1U << 31;
		expect(&r, "ELISA_CREATE_SERVICE reserved0", xioctl(dev, ELISA_CREATE_SERVICE, &cs),
		       -EINVAL);
		for (k = 0; k < 2; k++) {
			cs = service_req(o->code, o->reg);
			cs.regions[0].reserved[k] = x;
			snprintf(what, sizeof(what), "ELISA_CREATE_SERVICE regions[0].reserved[%d]", k);
			expect(&r, what, xioctl(dev, ELISA_CREATE_SERVICE, &cs), -EINVAL);
			cs = service_req(o->code, o->reg);
			cs.regions[7].reserved[k] = x;
			snprintf(what, sizeof(what), "ELISA_CREATE_SERVICE regions[7].reserved[%d]", k);
			expect(&r, what, xioctl(dev, ELISA_CREATE_SERVICE, &cs), -EINVAL);
		}
		/* The fields of an unused entry (nr_regions = 1). */
		cs = service_req(o->code, o->reg);
		cs.regions[1].region_fd = o->reg;
		expect(&r, "unused regions[1].region_fd", xioctl(dev, ELISA_CREATE_SERVICE, &cs),
		       -EINVAL);
		cs = service_req(o->code, o->reg);
		cs.regions[1].access = ELISA_ACCESS_READ;
		expect(&r, "unused regions[1].access", xioctl(dev, ELISA_CREATE_SERVICE, &cs),
		       -EINVAL);
		cs = service_req(o->code, o->reg);
		cs.regions[1].gva = x & ~0xfffULL ?: 0x1000;
		expect(&r, "unused regions[1].gva", xioctl(dev, ELISA_CREATE_SERVICE, &cs), -EINVAL);
	}
	c1 = counts();
	CHECK(!r.bad && counts_eq(c0, c1), "reserved_nonzero",
	      ": reserved words and unused region entries set, want EINVAL and nothing made: "
	      "%d of %d not EINVAL; %s", r.bad, r.n, counts_str(c1, c0));
	if (late >= 0)
		close(late);
}

/* ---- 5-9: ranges, GVAs, access ------------------------------------------------------ */

static void ranges(struct abi_objs *o)
{
	static const struct {
		u64 offset, length;
	} bad_regions[] = {
		{ -4096ULL, 2 * 4096 },
		{ -4096ULL, 4096 },			/* offset + length = 2^64 */
		{ 1ULL << 63, 4096 },
		{ 0, ELISA_REGION_MAX_SIZE + 4096 },
		{ 0, 2 * ELISA_REGION_MAX_SIZE },
		{ 0, 1ULL << 63 },
		{ 0, -4096ULL },
		{ 4096, ELISA_REGION_MAX_SIZE },	/* past the end of the 4-page file */
		{ 4 * 4096, 4096 },
	};
	struct elisa_create_service cs;
	struct tally t = { 0 }, s = { 0 }, w = { 0 };
	long pin0 = elisa_vm_pin_kb();
	char what[128];
	int memfd4 = sealed_memfd("hostile-4p", 4), reg2, svc;
	unsigned int k;

	for (k = 0; k < ARRAY_SIZE(bad_regions); k++) {
		snprintf(what, sizeof(what), "region [%#lx, +%#lx)", bad_regions[k].offset,
			 bad_regions[k].length);
		expect(&t, what, region(memfd4, bad_regions[k].offset, bad_regions[k].length),
		       -EINVAL);
	}
	CHECK(!t.bad && elisa_vm_pin_kb() == pin0, "region_range_overflow",
	      ": region offsets and lengths that wrap or pass 1 GiB or the file, want EINVAL "
	      "and nothing pinned: %d of %d not EINVAL; VmPin %ld kB (was %ld)", t.bad, t.n,
	      elisa_vm_pin_kb(), pin0);

	{
		static const struct {
			u64 code_offset, code_size, entry_offset;
			u32 nr_regions;
		} bad[] = {
			{ 1ULL << 63, 4096, 0, 1 },
			{ -4096ULL, 4096, 0, 1 },
			{ 1 << 20, 4096, 0, 1 },		/* past the end of the code file */
			{ 0, ELISA_SERVICE_MAX_CODE + 4096, 0, 1 },
			{ 0, 1ULL << 63, 0, 1 },
			{ 0, -4096ULL, 0, 1 },
			{ 0, 4096, 4096, 1 },
			{ 0, 4096, -1ULL, 1 },
			{ 0, 4096, 0, ELISA_SERVICE_MAX_REGIONS + 1 },
			{ 0, 4096, 0, 0xffffffffU },
		};

		for (k = 0; k < ARRAY_SIZE(bad); k++) {
			cs = service_req(o->code, o->reg);
			cs.code_offset = bad[k].code_offset;
			cs.code_size = bad[k].code_size;
			cs.entry_offset = bad[k].entry_offset;
			cs.nr_regions = bad[k].nr_regions;
			snprintf(what, sizeof(what),
				 "code offset %#lx size %#lx entry %#lx, %u regions",
				 bad[k].code_offset, bad[k].code_size, bad[k].entry_offset,
				 bad[k].nr_regions);
			expect(&s, what, xioctl(dev, ELISA_CREATE_SERVICE, &cs), -EINVAL);
		}
	}
	CHECK(!s.bad, "service_range_overflow",
	      ": code offsets, sizes, entries and region counts out of range, want EINVAL: "
	      "%d of %d not", s.bad, s.n);

	/* GVAs: the service is well formed; the grant places nothing that wraps. */
	reg2 = region(memfd4, 0, 2 * 4096);
	TEST_ASSERT(reg2 >= 0, "two-page region: %s", strerror(-reg2));
	{
		static const struct {
			u64 code_gva, code_size, region_gva;
		} gv[] = {
			{ 0xfffffffffffff000ULL, 2 * 4096, REGION_GVA },
			{ CODE_GVA, 4096, 0xfffffffffffff000ULL },
			{ 0x00007ffffffff000ULL, 2 * 4096, REGION_GVA },
			{ CODE_GVA, 4096, 0x00007ffffffff000ULL },
			{ 0x0000800000000000ULL, 4096, REGION_GVA },
		};

		for (k = 0; k < ARRAY_SIZE(gv); k++) {
			u8 code2[2 * 4096];
			int cfd = memfd_create("hostile-code2", MFD_CLOEXEC);

			service_code(code2);
			memset(code2 + 4096, 0xcc, 4096);
			TEST_ASSERT(cfd >= 0 && pwrite(cfd, code2, sizeof(code2), 0) == sizeof(code2),
				    "code memfd");
			cs = service_req(cfd, reg2);
			cs.code_gva = gv[k].code_gva;
			cs.code_size = gv[k].code_size;
			cs.regions[0].gva = gv[k].region_gva;
			svc = xioctl(dev, ELISA_CREATE_SERVICE, &cs);
			close(cfd);
			snprintf(what, sizeof(what), "service with code at %#lx (+%#lx), region at %#lx",
				 gv[k].code_gva, gv[k].code_size, gv[k].region_gva);
			w.n++;
			if (svc < 0) {
				w.bad++;
				ksft_print_msg("%s: not made (%s)\n", what, strerror(-svc));
				continue;
			}
			expect(&w, what, grant(o->evm, svc, G, NULL), -EINVAL);
			close(svc);
		}
	}
	{
		static const u64 gs[] = { 0xfffffffffffff000ULL, 0x1000, 0x2000, 0x0000800000000000ULL,
					  0x00007ffffffff000ULL, G + 8 };

		for (k = 0; k < ARRAY_SIZE(gs); k++) {
			snprintf(what, sizeof(what), "grant at G %#lx", gs[k]);
			expect(&w, what, grant(o->evm, o->svc, gs[k], NULL), -EINVAL);
		}
	}
	CHECK(!w.bad, "gva_wrap_refused",
	      ": GVAs and G that wrap or are not canonical, want the grant to fail with EINVAL: "
	      "%d of %d not",
	      w.bad, w.n);

	/* Access: R or RW only. */
	t = (struct tally){ 0 };
	{
		static const u32 acc[] = { 0, ELISA_ACCESS_WRITE, 4, ELISA_ACCESS_READ | 4,
					   ELISA_ACCESS_READ | ELISA_ACCESS_WRITE | 4, 8, ~0U };

		for (k = 0; k < ARRAY_SIZE(acc); k++) {
			cs = service_req(o->code, o->reg);
			cs.regions[0].access = acc[k];
			snprintf(what, sizeof(what), "region access %#x", acc[k]);
			expect(&t, what, xioctl(dev, ELISA_CREATE_SERVICE, &cs), -EINVAL);
		}
	}
	CHECK(!t.bad, "wx_access_refused",
	      ": region access other than R or RW (W alone, execute bits), want EINVAL: %d of %d "
	      "not", t.bad, t.n);

	/* Regions over code, over the entry block, over each other. */
	t = (struct tally){ 0 };
	{
		static const struct {
			u64 code_size, r0, r1;
			u32 nr;
		} ov[] = {
			{ 4096, CODE_GVA, 0, 1 },
			{ 2 * 4096, CODE_GVA + 4096, 0, 1 },
			{ 4096, G, 0, 1 },
			{ 4096, G - 0x1000, 0, 1 },
			{ 4096, REGION_GVA, REGION_GVA, 2 },
			{ 4096, REGION_GVA, REGION_GVA + 4096, 2 },	/* reg2 is two pages */
		};

		for (k = 0; k < ARRAY_SIZE(ov); k++) {
			u8 code2[2 * 4096];
			int cfd = memfd_create("hostile-code3", MFD_CLOEXEC);

			service_code(code2);
			memset(code2 + 4096, 0xcc, 4096);
			TEST_ASSERT(cfd >= 0 && pwrite(cfd, code2, sizeof(code2), 0) == sizeof(code2),
				    "code memfd");
			cs = service_req(cfd, reg2);
			cs.code_size = ov[k].code_size;
			cs.regions[0].gva = ov[k].r0;
			cs.nr_regions = ov[k].nr;
			if (ov[k].nr == 2) {
				cs.regions[1] = cs.regions[0];
				cs.regions[1].gva = ov[k].r1;
				cs.regions[1].access = ELISA_ACCESS_READ;
			}
			svc = xioctl(dev, ELISA_CREATE_SERVICE, &cs);
			close(cfd);
			snprintf(what, sizeof(what), "code %#lx bytes, region at %#lx%s%lx",
				 ov[k].code_size, ov[k].r0, ov[k].nr == 2 ? " and " : "",
				 ov[k].nr == 2 ? ov[k].r1 : 0UL);
			t.n++;
			if (svc < 0) {
				t.bad++;
				ksft_print_msg("%s: not made (%s)\n", what, strerror(-svc));
				continue;
			}
			expect(&t, what, grant(o->evm, svc, G, NULL), -EINVAL);
			close(svc);
		}
	}
	CHECK(!t.bad, "region_over_code_refused",
	      ": regions over the code, the entry block or each other, want the grant to fail "
	      "with EINVAL: %d of %d not",
	      t.bad, t.n);
	close(reg2);
	close(memfd4);
}

/* ---- 10-14: fds of the wrong kind --------------------------------------------------- */

struct wrong_fd {
	const char *name;
	int fd;
	bool badf;	/* not an open fd (EBADF) */
};

enum {
	WF_CLOSED, WF_MINUS1, WF_INTMAX, WF_OPATH, WF_KVM, WF_VM, WF_VCPU, WF_DEV, WF_EVM,
	WF_REGION, WF_SERVICE, WF_PIPE, WF_EVENTFD, WF_SOCKET, WF_MEMFD, WF_DIR, WF_ZERO, WF_N
};

static void wrong_fds(struct abi_objs *o)
{
	struct wrong_fd w[WF_N];
	struct elisa_create_service cs;
	struct elisa_attach_vm av;
	struct tally t[5] = { 0 };
	char what[96];
	int p[2], sv[2], vcpu, closed, i, pr[2], good, k = kmsg_open(), unsupported;
	bool have_sock;
	u8 page[4096];

	closed = 999;	/* no test opens that many fds */
	close(closed);
	TEST_ASSERT(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
	have_sock = !socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv);
	TEST_ASSERT(have_sock, "socketpair(AF_UNIX): %s", strerror(errno));
	vcpu = ioctl(o->vm, KVM_CREATE_VCPU, 0);
	TEST_ASSERT(vcpu >= 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	w[WF_CLOSED] = (struct wrong_fd){ "a closed fd", closed, true };
	w[WF_MINUS1] = (struct wrong_fd){ "fd -1", -1, true };
	w[WF_INTMAX] = (struct wrong_fd){ "fd INT_MAX", INT_MAX, true };
	w[WF_OPATH] = (struct wrong_fd){ "an O_PATH fd", open("/tmp", O_PATH | O_CLOEXEC), true };
	w[WF_KVM] = (struct wrong_fd){ "/dev/kvm", o->kvm, false };
	w[WF_VM] = (struct wrong_fd){ "a KVM VM fd", o->vm, false };
	w[WF_VCPU] = (struct wrong_fd){ "a vCPU fd", vcpu, false };
	w[WF_DEV] = (struct wrong_fd){ "/dev/elisa", dev, false };
	w[WF_EVM] = (struct wrong_fd){ "an elisa-vm fd", o->evm, false };
	w[WF_REGION] = (struct wrong_fd){ "an elisa-region fd", o->reg, false };
	w[WF_SERVICE] = (struct wrong_fd){ "an elisa-service fd", o->svc, false };
	w[WF_PIPE] = (struct wrong_fd){ "a pipe", p[0], false };
	w[WF_EVENTFD] = (struct wrong_fd){ "an eventfd", eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK),
					   false };
	w[WF_SOCKET] = (struct wrong_fd){ "a socket", sv[0], false };
	w[WF_MEMFD] = (struct wrong_fd){ "a memfd", o->memfd, false };
	w[WF_DIR] = (struct wrong_fd){ "a directory", open("/tmp", O_RDONLY | O_DIRECTORY |
							  O_CLOEXEC), false };
	w[WF_ZERO] = (struct wrong_fd){ "/dev/zero", open("/dev/zero", O_RDWR | O_CLOEXEC), false };
	TEST_ASSERT(w[WF_OPATH].fd >= 0 && w[WF_EVENTFD].fd >= 0 && w[WF_DIR].fd >= 0 &&
		    w[WF_ZERO].fd >= 0, "O_PATH, eventfd, directory, /dev/zero fds");

	for (i = 0; i < WF_N; i++) {
		int want = w[i].badf ? -EBADF : -EINVAL;

		if (i != WF_VM) {
			av = (struct elisa_attach_vm){ .vm_fd = w[i].fd };
			snprintf(what, sizeof(what), "vm_fd: %s", w[i].name);
			expect(&t[0], what, xioctl(dev, ELISA_ATTACH_VM, &av), want);
		}
		if (i != WF_MEMFD) {
			snprintf(what, sizeof(what), "region fd: %s", w[i].name);
			expect(&t[1], what, region(w[i].fd, 0, 4096), want);
		}
		/* code_fd: anything that cannot be read, or gives less than a page */
		if (i != WF_MEMFD && i != WF_PIPE && i != WF_SOCKET) {
			cs = service_req(w[i].fd, o->reg);
			snprintf(what, sizeof(what), "code_fd: %s", w[i].name);
			expect(&t[2], what, xioctl(dev, ELISA_CREATE_SERVICE, &cs), want);
		}
		if (i != WF_REGION) {
			cs = service_req(o->code, o->reg);
			cs.regions[0].region_fd = w[i].fd;
			snprintf(what, sizeof(what), "regions[0].region_fd: %s", w[i].name);
			expect(&t[3], what, xioctl(dev, ELISA_CREATE_SERVICE, &cs), want);
		}
		if (i != WF_SERVICE) {
			snprintf(what, sizeof(what), "service_fd: %s", w[i].name);
			expect(&t[4], what, grant(o->evm, w[i].fd, G, NULL), want);
		}
	}
	/* A pipe holding a page of code is a readable file: accepted. */
	TEST_ASSERT(pipe2(pr, O_CLOEXEC) == 0, "pipe");
	service_code(page);
	TEST_ASSERT(write(pr[1], page, sizeof(page)) == sizeof(page), "fill the pipe");
	cs = service_req(pr[0], o->reg);
	good = xioctl(dev, ELISA_CREATE_SERVICE, &cs);
	expect(&t[2], "code_fd: a pipe holding a page", good, 0);
	close(pr[0]);
	close(pr[1]);
	/*
	 * A directory and /dev/zero are refused before kernel_read(), whose own refusal would
	 * log the path and the command unescaped.
	 */
	unsupported = kmsg_count(k, "kernel read not supported", NULL, NULL);
	close(k);

	CHECK(!t[0].bad, "wrong_fd_attach",
	      ": vm_fd of every wrong kind, want EBADF or EINVAL: %d of %d not", t[0].bad,
	      t[0].n);
	CHECK(!t[1].bad, "wrong_fd_region",
	      ": region fd of every wrong kind, want EBADF or EINVAL: %d of %d not", t[1].bad,
	      t[1].n);
	CHECK(!t[2].bad && !unsupported, "wrong_fd_code",
	      ": code_fd of every kind that gives no page, want EBADF or EINVAL (a pipe holding "
	      "one: accepted): %d of %d not; kernel_read()'s own refusal logged %d times (want 0)",
	      t[2].bad, t[2].n, unsupported);
	CHECK(!t[3].bad, "wrong_fd_service_region",
	      ": region_fd of every wrong kind, want EBADF or EINVAL: %d of %d not", t[3].bad,
	      t[3].n);
	CHECK(!t[4].bad, "wrong_fd_grant",
	      ": service_fd of every wrong kind, want EBADF or EINVAL: %d of %d not", t[4].bad,
	      t[4].n);
	close(w[WF_OPATH].fd);
	close(w[WF_EVENTFD].fd);
	close(w[WF_DIR].fd);
	close(w[WF_ZERO].fd);
	close(vcpu);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

/* A code_fd open O_WRONLY: EBADF, as read(2) says. Before: a WARN in __kernel_read(). */
static void code_fd_write_only(struct abi_objs *o)
{
	struct elisa_create_service cs;
	struct tally t = { 0 };
	char path[64];
	int wo, p[2];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", o->code);
	wo = open(path, O_WRONLY | O_CLOEXEC);
	TEST_ASSERT(wo >= 0 && pipe2(p, O_CLOEXEC) == 0, "O_WRONLY reopen, pipe");
	cs = service_req(wo, o->reg);
	expect(&t, "code_fd: a memfd open O_WRONLY", xioctl(dev, ELISA_CREATE_SERVICE, &cs),
	       -EBADF);
	cs = service_req(p[1], o->reg);
	expect(&t, "code_fd: a pipe's write end", xioctl(dev, ELISA_CREATE_SERVICE, &cs), -EBADF);
	CHECK(!t.bad, "code_fd_write_only",
	      ": code_fd open only for writing, want EBADF and no host warning: %d of %d not",
	      t.bad, t.n);
	close(wo);
	close(p[0]);
	close(p[1]);
}

/* 30: the device opened read-only may ask the version, and make nothing. */
static void readonly_device(struct abi_objs *o)
{
	struct elisa_version v = { 0 };
	struct elisa_attach_vm av = { 0 };
	struct elisa_create_region cr = { 0 };
	struct elisa_create_service cs;
	struct counts c0 = counts(), c1;
	struct tally t = { 0 };
	int kvm2, vm2, ro = open(ELISA_DEV, O_RDONLY | O_CLOEXEC);

	TEST_ASSERT(ro >= 0, "open %s O_RDONLY: %s", ELISA_DEV, strerror(errno));
	vm2 = bare_vm(&kvm2);
	av.vm_fd = vm2;
	cr.fd = o->memfd;
	cr.length = 4096;
	cs = service_req(o->code, o->reg);
	expect(&t, "read-only: ELISA_GET_VERSION", xioctl(ro, ELISA_GET_VERSION, &v), 0);
	expect(&t, "read-only: ELISA_ATTACH_VM", xioctl(ro, ELISA_ATTACH_VM, &av), -EBADF);
	expect(&t, "read-only: ELISA_CREATE_REGION", xioctl(ro, ELISA_CREATE_REGION, &cr),
	       -EBADF);
	expect(&t, "read-only: ELISA_CREATE_SERVICE", xioctl(ro, ELISA_CREATE_SERVICE, &cs),
	       -EBADF);
	expect(&t, "read-only: an unknown number", xioctl(ro, _IO(ELISA_IOCTL_TYPE, 0x7f), NULL),
	       -ENOTTY);
	c1 = counts();
	if (!counts_eq(c0, c1)) {
		t.bad++;
		ksft_print_msg("read-only: counts changed: %s\n", counts_str(c1, c0));
	}
	expect(&t, "read-write: ELISA_CREATE_REGION", xioctl(dev, ELISA_CREATE_REGION, &cr), 0);
	expect(&t, "read-write: ELISA_CREATE_SERVICE", xioctl(dev, ELISA_CREATE_SERVICE, &cs), 0);
	expect(&t, "read-write: ELISA_ATTACH_VM", xioctl(dev, ELISA_ATTACH_VM, &av), 0);
	CHECK(!t.bad, "readonly_device",
	      ": /dev/elisa open O_RDONLY: version only, the rest EBADF: %d of %d not", t.bad,
	      t.n);
	close(vm2);
	close(kvm2);
	close(ro);
}

/* ---- 15-16: fds over a Unix socket -------------------------------------------------- */

struct child_result {
	int open_dev, attach, create_region, create_region_vm, create_service, grant_region,
	    grant, gate_index, dev_region;
	uid_t uid;
};

/*
 * In a child: keeps only the @n fds of @keep (renumbered from 100, the new numbers back in
 * @keep) and stdin/out/err, and drops every privilege: uid and gid 65534, no groups.
 */
static void child_keep_only(int *keep, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		keep[i] = fcntl(keep[i], F_DUPFD_CLOEXEC, 100 + i);
		if (keep[i] != 100 + i)
			_exit(2);
	}
	syscall(SYS_close_range, 3, 99, 0);
	syscall(SYS_close_range, 100 + n, ~0U, 0);
	if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
		_exit(3);
}

/* What a process without /dev/elisa can do with an elisa-vm, service, region fd and a memfd. */
static void child_tries(const int *fds, struct child_result *res)
{
	struct elisa_create_region cr = { .fd = fds[3], .length = 4096 };
	struct elisa_create_service cs = service_req(fds[3], fds[2]);
	struct elisa_attach_vm av = { .vm_fd = fds[0] };
	struct elisa_grant gr = { .service_fd = fds[1], .entry_gva = G };
	int devfd;

	res->uid = getuid();
	devfd = open(ELISA_DEV, O_RDWR | O_CLOEXEC);
	res->open_dev = devfd < 0 ? -errno : 0;
	if (devfd >= 0)
		close(devfd);
	res->attach = xioctl(fds[0], ELISA_ATTACH_VM, &av);
	res->create_region = xioctl(fds[2], ELISA_CREATE_REGION, &cr);
	res->create_region_vm = xioctl(fds[0], ELISA_CREATE_REGION, &cr);
	res->create_service = xioctl(fds[1], ELISA_CREATE_SERVICE, &cs);
	res->grant_region = grant(fds[0], fds[2], G, NULL);
	res->grant = xioctl(fds[0], ELISA_GRANT, &gr);
	res->gate_index = gr.gate_index;
}

/* ELISA_CREATE_REGION through a /dev/elisa fd a child got; the fd or -errno. */
static int child_region(int devfd, int memfd)
{
	struct elisa_create_region cr = { .fd = memfd, .length = 4096 };

	return xioctl(devfd, ELISA_CREATE_REGION, &cr);
}

/*
 * The fds go to a child that keeps nothing else and runs as uid 65534: with SCM_RIGHTS
 * over a Unix socket, or, on a kernel without AF_UNIX (the emulated host's test kernel
 * has no networking), through fork with every other fd closed. Either way the child holds
 * the same open files; the device fd comes after the first tries (with a socket), or to a
 * second such child.
 */
static void passed_fds(void)
{
	struct child_result res = { 0 };
	struct gvm g;
	int sv[2], rp[2], memfd, reg, svc, st = 0, st2 = 0, fds[5], n;
	bool sock, ok;
	long r;
	pid_t pid;

	memfd = memfd_page("hostile-passed", NULL);
	reg = elisa_region_page(dev, memfd);
	svc = service(reg);
	TEST_ASSERT(svc >= 0, "service: %s", strerror(-svc));
	gvm_create(&g, true);
	TEST_ASSERT(pipe2(rp, O_CLOEXEC) == 0, "pipe");
	sock = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0;
	TEST_ASSERT(sock, "socketpair(AF_UNIX): %s", strerror(errno));
	ksft_print_msg("fds go to the child with SCM_RIGHTS\n");
	fds[0] = g.evm;
	fds[1] = svc;
	fds[2] = reg;
	fds[3] = memfd;
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		int keep[5] = { sock ? sv[1] : g.evm, rp[1], svc, reg, memfd }, got[4], devfd;

		if (sock) {
			child_keep_only(keep, 2);
			if (recv_fds(keep[0], got, 4) != 4)
				_exit(4);
		} else {
			child_keep_only(keep, 5);
			got[0] = keep[0];
			got[1] = keep[2];
			got[2] = keep[3];
			got[3] = keep[4];
		}
		child_tries(got, &res);
		res.dev_region = -1000;
		if (sock && recv_fds(keep[0], &devfd, 1) == 1)
			res.dev_region = child_region(devfd, got[3]);
		if (write(keep[1], &res, sizeof(res)) != sizeof(res))
			_exit(5);
		_exit(0);
	}
	if (sock) {
		close(sv[1]);
		send_fds(sv[0], fds, 4);
		send_fds(sv[0], &dev, 1);
	}
	ok = read(rp[0], &res, sizeof(res)) == sizeof(res);
	TEST_ASSERT(waitpid(pid, &st, 0) == pid, "waitpid");
	if (!sock) {
		pid = fork();
		TEST_ASSERT(pid >= 0, "fork");
		if (!pid) {
			int keep[3] = { dev, memfd, rp[1] };

			child_keep_only(keep, 3);
			res.dev_region = child_region(keep[0], keep[1]);
			if (write(keep[2], &res.dev_region, sizeof(int)) != sizeof(int))
				_exit(5);
			_exit(0);
		}
		n = read(rp[0], &res.dev_region, sizeof(int));
		TEST_ASSERT(waitpid(pid, &st2, 0) == pid && n == sizeof(int), "second child");
	} else {
		close(sv[0]);
	}
	close(rp[0]);
	close(rp[1]);
	ok = ok && WIFEXITED(st) && !WEXITSTATUS(st) && WIFEXITED(st2) && !WEXITSTATUS(st2);
	r = ok ? guest_call(&g, ELISA_FIRST_GATE_INDEX, 1, 0) : 0;
	CHECK(ok && res.uid == 65534 && res.open_dev == -EACCES && res.attach == -ENOTTY &&
		      res.create_region == -ENOTTY && res.create_region_vm == -ENOTTY &&
		      res.create_service == -ENOTTY && res.grant_region == -EINVAL &&
		      res.grant == 0 && res.gate_index == ELISA_FIRST_GATE_INDEX && r == 1,
	      "passed_fds_grant_only",
	      ": a process with elisa fds but no /dev/elisa, want it to grant and not to attach "
	      "or create; child (exit %#x, uid %u): open /dev/elisa %d, attach %d, create "
	      "region on the region fd %d and on the elisa-vm fd %d, create service %d, grant a "
	      "region %d, "
	      "grant %d (index %d); the parent's guest call returned %ld",
	      st, res.uid, res.open_dev, res.attach, res.create_region, res.create_region_vm,
	      res.create_service, res.grant_region, res.grant, res.gate_index, r);
	CHECK(ok && res.dev_region >= 0, "passed_device_fd",
	      ": a /dev/elisa fd passed to it, want a region (the fd is the privilege): %d",
	      res.dev_region);
	gvm_free(&g);
	close(svc);
	close(reg);
	close(memfd);
}

/* ---- 17-18: code and regions are not executable ------------------------------------- */

static void exec_cases(void)
{
	struct kvm_regs regs;
	struct gvm g;
	int memfd, reg, code, svc, rc;
	struct elisa_create_service cs;
	u8 *map;
	long r1, r2;
	u32 reason;

	memfd = memfd_page("hostile-exec", NULL);
	reg = elisa_region_page(dev, memfd);
	code = code_memfd();
	cs = service_req(code, reg);
	svc = xioctl(dev, ELISA_CREATE_SERVICE, &cs);
	TEST_ASSERT(svc >= 0, "service: %s", strerror(-svc));
	/* The VMM changes the code file after the service was made. */
	TEST_ASSERT(pwrite(code, evil_code, sizeof(evil_code), 0) == sizeof(evil_code),
		    "rewrite the code");
	gvm_create(&g, true);
	rc = grant(g.evm, svc, G, NULL);
	TEST_ASSERT(rc == 0, "grant: %s", strerror(-rc));
	r1 = guest_call(&g, ELISA_FIRST_GATE_INDEX, 1, 0);
	r2 = guest_call(&g, ELISA_FIRST_GATE_INDEX, 1, 0);
	CHECK(r1 == 1 && r2 == 2, "code_copied",
	      ": code file rewritten after creation to return %#x, want the old code: calls "
	      "returned %ld, %ld", EVIL,
	      r1, r2);

	/* Code in the region, and the service jumps to it. */
	map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	TEST_ASSERT(map != MAP_FAILED, "mmap region");
	memcpy(map + EXEC_OFF, evil_code, sizeof(evil_code));
	gcmd.op = OP_CALL;
	gcmd.index = ELISA_FIRST_GATE_INDEX;
	gcmd.a0 = 0;
	gcmd.a1 = REGION_GVA + EXEC_OFF;
	sync_global_to_guest(g.vm, gcmd);
	reason = elisa_run_past_mmio(g.vcpu);
	vcpu_regs_get(g.vcpu, &regs);
	CHECK(reason == KVM_EXIT_SHUTDOWN && regs.rax != EVIL && !regs.rax && !regs.rsi &&
		      !regs.rdi && !regs.rbx,
	      "region_not_executable",
	      ": the service jumps into code in its region, want KVM_EXIT_SHUTDOWN, registers "
	      "zeroed: exit reason %u (8 = shutdown), rax %#llx, "
	      "rip %#llx", reason, regs.rax, regs.rip);
	munmap(map, 4096);
	gvm_free(&g);
	close(svc);
	close(code);
	close(reg);
	close(memfd);
}

/* ---- 19-24: regions and their files ------------------------------------------------- */

static void shrink_seal_cases(void)
{
	int k = kmsg_open(), m1, m2, m3, m4, r1, r2, r3, r4, t1, t2, svc, hint;
	struct stat st;

	m1 = memfd_create("hostile-noseal", MFD_CLOEXEC);
	m2 = memfd_create("hostile-unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	m3 = memfd_create("hostile-growseal", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	TEST_ASSERT(m1 >= 0 && m2 >= 0 && m3 >= 0 && !ftruncate(m1, 8192) && !ftruncate(m2, 8192) &&
		    !ftruncate(m3, 8192) && !fcntl(m3, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SEAL),
		    "memfds: %s", strerror(errno));
	m4 = sealed_memfd("hostile-sealed", 2);
	r1 = region(m1, 0, 4096);
	r2 = region(m2, 0, 4096);
	r3 = region(m3, 0, 4096);
	r4 = region(m4, 0, 2 * 4096);
	hint = kmsg_count(k, "ELISA_CREATE_REGION", "F_SEAL_SHRINK", NULL);
	CHECK(r1 == -EPERM && r2 == -EPERM && r3 == -EPERM && r4 >= 0 && hint == 3,
	      "memfd_needs_shrink_seal",
	      ": memfds without F_SEAL_SHRINK, want EPERM and a log line: no MFD_ALLOW_SEALING "
	      "%d, unsealed %d, F_SEAL_GROW|F_SEAL_SEAL %d (want %d); "
	      "F_SEAL_SHRINK: fd %d; %d kernel-log lines name F_SEAL_SHRINK (want 3)", r1, r2,
	      r3, -EPERM, r4, hint);
	if (r1 >= 0)
		close(r1);
	if (r2 >= 0)
		close(r2);
	if (r3 >= 0)
		close(r3);

	t1 = ftruncate(m4, 4096) ? -errno : 0;
	t2 = ftruncate(m4, 0) ? -errno : 0;
	TEST_ASSERT(fstat(m4, &st) == 0, "fstat");
	svc = r4 >= 0 ? service(r4) : -1000;
	CHECK(t1 == -EPERM && t2 == -EPERM && st.st_size == 8192 && svc >= 0,
	      "memfd_sealed_no_truncate",
	      ": shrink a region's sealed memfd, want EPERM, a coupled region: to 4096 %d, to 0 "
	      "%d (want %d), size %ld; a service of the region: %d",
	      t1, t2, -EPERM, (long)st.st_size, svc);
	if (svc >= 0)
		close(svc);
	if (r4 >= 0)
		close(r4);
	close(m1);
	close(m2);
	close(m3);
	close(m4);
	close(k);
}

enum { CUT_MEMFD_PUNCH, CUT_TMPFS_TRUNCATE, CUT_TMPFS_PUNCH };

/*
 * A two-page region of a file, a service of it made before the cut, then the cut: a hole
 * punched at the second page or the file truncated to 0. A service of the region made
 * after, and the grant of the one made before, must fail with ENXIO, each with a log
 * line naming the file; the region's release logs a warning naming it.
 */
static void cut_case(int kind, const char *name)
{
	/*
	 * The third name holds a newline and an escape (ESC), which the kernel log must carry
	 * escaped by elisa (as "\\n" and "\\e", which /dev/kmsg shows as "\\x5cn" and
	 * "\\x5ce"), not raw ("\\x0a", "\\x1b"): a raw newline would forge a log line.
	 */
	static const char *const file[] = { "hostile-punch", "hostile-truncate",
					    "hostile-tmpfs\npunch\x1b[0m" };
	char path[96], log_name[96];
	int kvm, vm, evm, f, reg, svc1, svc2, g, k, cut, refused, released;

	if (kind == CUT_MEMFD_PUNCH) {
		f = sealed_memfd(file[kind], 2);
		snprintf(log_name, sizeof(log_name), "memfd:%s", file[kind]);
	} else if (kind == CUT_TMPFS_TRUNCATE) {
		f = shm_file(file[kind], 2, path, sizeof(path));
		snprintf(log_name, sizeof(log_name), "%s", file[kind]);
	} else {
		f = shm_file(file[kind], 2, path, sizeof(path));
		snprintf(log_name, sizeof(log_name), "hostile-tmpfs\\x5cnpunch\\x5ce[0m");
	}
	vm = bare_vm(&kvm);
	evm = attach(vm);
	TEST_ASSERT(evm >= 0, "attach: %s", strerror(-evm));
	reg = region(f, 0, 2 * 4096);
	TEST_ASSERT(reg >= 0, "region of %s: %s", log_name, strerror(-reg));
	svc1 = service(reg);
	TEST_ASSERT(svc1 >= 0, "service: %s", strerror(-svc1));
	k = kmsg_open();
	if (kind == CUT_TMPFS_TRUNCATE)
		cut = ftruncate(f, 0) ? -errno : 0;
	else
		cut = fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096) ? -errno
											  : 0;
	svc2 = service(reg);
	g = grant(evm, svc1, G, NULL);
	refused = kmsg_count(k, log_name, "refused", NULL);
	close(evm);
	close(svc1);
	if (svc2 >= 0)
		close(svc2);
	close(reg);
	released = kmsg_count(k, log_name, "released", NULL);
	CHECK(!cut && svc2 == -ENXIO && g == -ENXIO && refused == 2 && released == 1, name,
	      ": cut a region out of its file, want ENXIO at service and grant, log lines: %s: "
	      "cut %d; a service of the region after it %d, the grant of one made before "
	      "%d (want %d); log lines: %d refusals (want 2), %d release warnings (want 1)",
	      log_name, cut, svc2, g, -ENXIO, refused, released);
	close(k);
	close(f);
	close(vm);
	close(kvm);
}

/* A granted region whose tmpfs file is truncated: calls go on, the file does not see them. */
static void decoupled_after_grant(void)
{
	char path[96];
	struct gvm g;
	int f, reg, svc, rc, k, released;
	u64 v1 = ~0ULL, v2 = ~0ULL;
	long r1, r2;

	f = shm_file("hostile-granted", 1, path, sizeof(path));
	reg = region(f, 0, 4096);
	TEST_ASSERT(reg >= 0, "region: %s", strerror(-reg));
	svc = service(reg);
	close(reg);
	gvm_create(&g, true);
	rc = grant(g.evm, svc, G, NULL);
	TEST_ASSERT(rc == 0, "grant: %s", strerror(-rc));
	close(svc);
	r1 = guest_call(&g, ELISA_FIRST_GATE_INDEX, 1, 0);
	TEST_ASSERT(pread(f, &v1, 8, 0) == 8, "read the file");
	TEST_ASSERT(ftruncate(f, 0) == 0 && ftruncate(f, 4096) == 0, "truncate");
	r2 = guest_call(&g, ELISA_FIRST_GATE_INDEX, 1, 0);
	TEST_ASSERT(pread(f, &v2, 8, 0) == 8, "read the file");
	k = kmsg_open();
	gvm_free(&g);
	released = kmsg_count(k, "hostile-granted", "released", NULL);
	CHECK(r1 == 1 && v1 == 1 && r2 == 2 && v2 == 0 && released == 1, "decoupled_after_grant",
	      ": truncate a granted region's file, want calls on, the file not written, a "
	      "release warning: before, the call returned %ld and the file held %lu; after, %ld "
	      "and %lu (the pinned page is no longer the file's); %d release warnings (want 1)",
	      r1, (unsigned long)v1, r2, (unsigned long)v2, released);
	close(k);
	close(f);
}

/* ---- 25-26: teardown while a vCPU calls --------------------------------------------- */

struct loop {
	struct gvm g;
	int memfd, reg, svc;
	volatile u64 *counter;
	pthread_t thread;
	u64 ok, enodev, bad;	/* progress, written by the thread */
	u64 stopped;		/* the thread is done */
	u32 exit_reason;	/* an exit other than a ucall ended it */
	struct kvm_regs regs;	/* then: the registers */
	char abort[128];	/* a guest assertion that ended it */
	struct ucall last;
};

/*
 * KVM_RUN, bounded as elisa_vcpu_run() is, but without the library's check of the guest's
 * unhandled exceptions, which would end the test: the thread reports them instead.
 */
static int loop_run(struct kvm_vcpu *vcpu)
{
	struct sigaction sa = { .sa_handler = elisa_run_timeout };
	int rc;

	TEST_ASSERT(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction(SIGALRM)");
	alarm(ELISA_RUN_TIMEOUT_S);
	do {
		rc = __vcpu_run(vcpu);
	} while (rc == -1 && errno == EINTR);
	alarm(0);
	return rc ? -errno : 0;
}

/* Runs OP_LOOP to its end, or until the guest or its run fails (then stops the loop). */
static void *loop_thread(void *arg)
{
	struct loop *l = arg;
	struct ucall uc;
	u64 cmd;
	int rc;

	for (;;) {
		rc = loop_run(l->g.vcpu);
		if (rc || l->g.vcpu->run->exit_reason != KVM_EXIT_IO) {
			if (rc)
				snprintf(l->abort, sizeof(l->abort), "KVM_RUN: %s", strerror(-rc));
			l->exit_reason = l->g.vcpu->run->exit_reason;
			break;
		}
		cmd = get_ucall(l->g.vcpu, &uc);
		if (cmd == UCALL_UNHANDLED) {
			snprintf(l->abort, sizeof(l->abort), "unhandled exception %#lx at RIP %#lx",
				 (unsigned long)uc.args[0], (unsigned long)uc.args[1]);
			break;
		}
		if (cmd == UCALL_ABORT) {
			snprintf(l->abort, sizeof(l->abort), "%.120s", uc.buffer);
			break;
		}
		if (cmd != UCALL_SYNC) {
			snprintf(l->abort, sizeof(l->abort), "ucall %lu (I/O port %#x)",
				 (unsigned long)cmd, l->g.vcpu->run->io.port);
			break;
		}
		if (uc.args[1] != OP_PROGRESS) {
			l->last = uc;
			break;
		}
		__atomic_store_n(&l->ok, uc.args[2], __ATOMIC_RELEASE);
		__atomic_store_n(&l->enodev, uc.args[3], __ATOMIC_RELEASE);
		__atomic_store_n(&l->bad, uc.args[4], __ATOMIC_RELEASE);
	}
	if (l->abort[0] || l->exit_reason)
		vcpu_regs_get(l->g.vcpu, &l->regs);
	__atomic_store_n(&l->stopped, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Starts OP_LOOP on @g's vCPU: in a thread of this process, or here (@thread false). */
static void loop_start(struct gvm *g)
{
	memset(&gres, 0, sizeof(gres));
	gstop = 0;
	gcmd.op = OP_LOOP;
	gcmd.index = ELISA_FIRST_GATE_INDEX;
	sync_global_to_guest(g->vm, gres);
	sync_global_to_guest(g->vm, gstop);
	sync_global_to_guest(g->vm, gcmd);
}

/* Waits (at most about 10 s) until *@v reaches @want, or @l's vCPU thread is done. */
static bool wait_u64(struct loop *l, volatile u64 *v, u64 want)
{
	int i;

	for (i = 0; i < 10000 && __atomic_load_n(v, __ATOMIC_ACQUIRE) < want; i++) {
		if (l && __atomic_load_n(&l->stopped, __ATOMIC_ACQUIRE))
			break;
		usleep(1000);
	}
	return __atomic_load_n(v, __ATOMIC_ACQUIRE) >= want;
}

static void loop_setup(struct loop *l, const char *name)
{
	int rc;

	memset(l, 0, sizeof(*l));
	l->memfd = memfd_page(name, NULL);
	l->counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, l->memfd, 0);
	TEST_ASSERT(l->counter != MAP_FAILED, "mmap counter");
	l->reg = elisa_region_page(dev, l->memfd);
	l->svc = service(l->reg);
	TEST_ASSERT(l->svc >= 0, "service: %s", strerror(-l->svc));
	gvm_create(&l->g, true);
	rc = grant(l->g.evm, l->svc, G, NULL);
	TEST_ASSERT(rc == 0, "grant: %s", strerror(-rc));
}

/*
 * One close order (@perm 0..23, the permutations of region, service, VM, elisa-vm in
 * lexicographic order) under a calling vCPU. Returns what went wrong, or NULL.
 */
static const char *close_order(int perm, char *why, size_t len)
{
	static const int fact[4] = { 6, 2, 1, 1 };
	static const char *const names[] = { "region", "service", "VM", "elisa-vm" };
	int left[4] = { 0, 1, 2, 3 }, order[4], i, k, step = -1;
	bool attached = true, ok = true;
	struct loop l;
	u64 c;

	for (i = 0; i < 4; i++) {
		k = perm / fact[i];
		perm %= fact[i];
		order[i] = left[k];
		memmove(&left[k], &left[k + 1], (3 - i - k) * sizeof(left[0]));
	}
	loop_setup(&l, "hostile-order");
	loop_start(&l.g);
	TEST_ASSERT(!pthread_create(&l.thread, NULL, loop_thread, &l), "pthread_create");
	if (!wait_u64(&l, l.counter, 8)) {
		snprintf(why, len, "no calls before the closes (counter %lu)",
			 (unsigned long)*l.counter);
		ok = false;
	}
	for (i = 0; i < 4; i++) {
		switch (order[i]) {
		case 0:
			close(l.reg);
			break;
		case 1:
			close(l.svc);
			break;
		case 2:
			/* The VM's fd; the running vCPU's fd keeps the VM itself. */
			close(l.g.vm->fd);
			l.g.vm->fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			break;
		default:
			close(l.g.evm);
			l.g.evm = -1;
			attached = false;
		}
		if (!ok)
			continue;
		step = i;
		if (attached) {
			c = *l.counter;
			ok = wait_u64(&l, l.counter, c + 4);
			if (!ok)
				snprintf(why, len, "calls stopped after the %s fd was closed",
					 names[order[i]]);
		} else {
			c = __atomic_load_n(&l.enodev, __ATOMIC_ACQUIRE);
			ok = wait_u64(&l, &l.enodev, c + 1);
			if (!ok)
				snprintf(why, len, "no -ENODEV after the %s fd was closed",
					 names[order[i]]);
		}
	}
	gstop = 1;
	sync_global_to_guest(l.g.vm, gstop);
	pthread_join(l.thread, NULL);
	sync_global_from_guest(l.g.vm, gres);
	if (l.exit_reason || l.abort[0]) {
		snprintf(why, len, "after the %s fd was closed (close %d of 4), the vCPU's run "
			 "ended: exit reason %u %s; rip %#llx rsp %#llx rax %#llx",
			 step >= 0 ? names[order[step]] : "no", step + 1, l.exit_reason, l.abort,
			 l.regs.rip, l.regs.rsp, l.regs.rax);
		ok = false;
	}
	if (ok && (gres.bad || gres.eintr > 1 || gres.ok_after_enodev || !gres.enodev ||
		   gres.ok < 8)) {
		snprintf(why, len, "guest: %lu calls worked, %lu -ENODEV, %lu -EINTR, %lu other "
			 "(last %ld), %lu worked after an -ENODEV", (unsigned long)gres.ok,
			 (unsigned long)gres.enodev, (unsigned long)gres.eintr,
			 (unsigned long)gres.bad, (long)gres.badval,
			 (unsigned long)gres.ok_after_enodev);
		ok = false;
	}
	/* A call the detach interrupted may or may not have counted before it failed back. */
	if (ok && *l.counter != gres.ok && *l.counter != gres.ok + gres.eintr) {
		snprintf(why, len, "the guest counted %lu calls, the region %lu",
			 (unsigned long)gres.ok, (unsigned long)*l.counter);
		ok = false;
	}
	kvm_vm_free(l.g.vm);
	munmap((void *)l.counter, 4096);
	close(l.memfd);
	return ok ? NULL : why;
}

static void close_orders(void)
{
	struct counts c0 = counts(), c1 = c0;
	char why[256];
	const char *err;
	int i, bad = 0;

	for (i = 0; i < 24; i++) {
		err = close_order(i, why, sizeof(why));
		c1 = counts();
		if (!err && !counts_eq(c0, c1)) {
			snprintf(why, sizeof(why), "after it: %s", counts_str(c1, c0));
			err = why;
		}
		if (err) {
			bad++;
			ksft_print_msg("close order %d: %s\n", i, err);
		}
	}
	CHECK(!bad, "close_orders_during_calls",
	      ": 24 close orders under a calling vCPU, want calls, at most one -EINTR, then "
	      "-ENODEV, and every count back: %d of 24 orders clean; at the end %s",
	      24 - bad, counts_str(c1, c0));
}

static void sigkill_case(void)
{
	struct counts c0 = counts(), c1;
	volatile u64 *counter;
	struct gvm g;
	u64 before;
	int memfd, st = 0, reg, svc, rc;
	bool ran;
	long r;
	pid_t pid;

	memfd = memfd_page("hostile-kill", NULL);
	counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	TEST_ASSERT(counter != MAP_FAILED, "mmap counter");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		struct ucall uc;

		gvm_create(&g, true);
		reg = elisa_region_page(dev, memfd);
		svc = service(reg);
		if (svc < 0 || grant(g.evm, svc, G, NULL))
			_exit(2);
		loop_start(&g);
		for (;;)
			elisa_run_ucall(g.vcpu, &uc);
	}
	ran = wait_u64(NULL, counter, 200);
	kill(pid, SIGKILL);
	TEST_ASSERT(waitpid(pid, &st, 0) == pid, "waitpid");
	c1 = counts();
	before = *counter;
	gvm_create(&g, true);
	reg = elisa_region_page(dev, memfd);
	svc = service(reg);
	rc = grant(g.evm, svc, G, NULL);
	r = rc ? 0 : guest_call(&g, ELISA_FIRST_GATE_INDEX, 1, 0);
	CHECK(ran && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && counts_eq(c0, c1) && !rc &&
		      r == (long)before + 1,
	      "sigkill_mid_call",
	      ": SIGKILL of a VMM mid-call, want every count back and a new VM served: the child "
	      "made %lu calls, then %s; after it %s; a new VM: grant %d, call %ld "
	      "(want %lu)", (unsigned long)before,
	      WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exited", counts_str(c1, c0), rc, r,
	      (unsigned long)before + 1);
	gvm_free(&g);
	close(svc);
	close(reg);
	munmap((void *)counter, 4096);
	close(memfd);
}

/* ---- 27-28: memslots over the trusted window ---------------------------------------- */

#define SLOT 10

static u64 page_marker(u64 i)
{
	return 0x5107ed0000000000ULL | i;
}

static void memslot_cases(void)
{
	struct elisa_grant gr, gr2;
	struct gvm g;
	u64 *host, i, n, matches = 0, mmio_gpa = 0;
	int m1, m2, r1, r2, s1, s2, rc, rc2, add, del;
	long c1, c2, c3, v;
	u32 reason;
	struct ucall uc;

	m1 = memfd_page("hostile-slot1", NULL);
	m2 = memfd_page("hostile-slot2", NULL);
	r1 = elisa_region_page(dev, m1);
	r2 = elisa_region_page(dev, m2);
	s1 = service(r1);
	s2 = service(r2);
	gvm_create(&g, true);
	rc = grant(g.evm, s1, G, &gr);
	TEST_ASSERT(rc == 0, "grant: %s", strerror(-rc));
	n = gr.trusted_size / 4096 < 8 ? gr.trusted_size / 4096 : 8;
	host = mmap(NULL, n * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(host != MAP_FAILED && n, "memslot memory");
	for (i = 0; i < n; i++)
		host[i * 512] = page_marker(i);
	add = __vm_set_user_memory_region(g.vm, SLOT, 0, gr.trusted_gpa, n * 4096, host);
	if (!add) {
		virt_map(g.vm, PROBE_GVA, gr.trusted_gpa, n);
		for (i = 0; i < n; i++)
			matches += (u64)guest_op(&g, OP_READ, 0, PROBE_GVA + i * 4096, 0) ==
				   page_marker(i);
		guest_op(&g, OP_WRITE, 0, PROBE_GVA + 8, 0xfeedULL);
	}
	c1 = guest_call(&g, ELISA_FIRST_GATE_INDEX, 1, 0);
	CHECK(!add && matches == n && host[1] == 0xfeed && c1 == 1, "memslot_in_trusted_window",
	      ": a memslot over the trusted window, want the default view to reach only the VMM's "
	      "pages and calls on: memslot at %#lx (+%lu pages): %d; the default view read %lu of %lu "
	      "VMM pages there, its write %s; then the call returned %ld",
	      (unsigned long)gr.trusted_gpa, (unsigned long)n, add, (unsigned long)matches,
	      (unsigned long)n, host[1] == 0xfeed ? "reached the VMM" : "was lost", c1);

	rc2 = grant(g.evm, s2, G, &gr2);
	del = __vm_set_user_memory_region(g.vm, SLOT, 0, gr.trusted_gpa, 0, host);
	/* Now an MMIO exit: no memory at that GPA. */
	gcmd.op = OP_READ;
	gcmd.a0 = PROBE_GVA;
	sync_global_to_guest(g.vm, gcmd);
	elisa_vcpu_run(g.vcpu);
	reason = g.vcpu->run->exit_reason;
	if (reason == KVM_EXIT_MMIO) {
		mmio_gpa = g.vcpu->run->mmio.phys_addr;
		memset(g.vcpu->run->mmio.data, 0, sizeof(g.vcpu->run->mmio.data));
		elisa_run_sync(g.vcpu, OP_READ, &uc);
		v = uc.args[2];
	} else {
		v = -1;
	}
	c2 = guest_call(&g, ELISA_FIRST_GATE_INDEX, 1, 0);
	c3 = rc2 ? 0 : guest_call(&g, gr2.gate_index, 1, 0);
	CHECK(!rc2 && gr2.gate_index == ELISA_FIRST_GATE_INDEX - 1 &&
		      gr2.trusted_gpa >= gr.trusted_gpa + n * 4096 && !del &&
		      reason == KVM_EXIT_MMIO && mmio_gpa == gr.trusted_gpa && !v && c2 == 2 &&
		      c3 == 1,
	      "memslot_window_moves_up",
	      ": a grant after the memslot, then its deletion, want a window above it, MMIO "
	      "there after, calls on: second grant %d, index %u, window %#lx (memslot ends at "
	      "%#lx); memslot "
	      "deleted %d; then a read there: exit %u at %#lx, value %ld; calls %ld and %ld",
	      rc2, gr2.gate_index, (unsigned long)gr2.trusted_gpa,
	      (unsigned long)(gr.trusted_gpa + n * 4096), del, reason, (unsigned long)mmio_gpa,
	      v, c2, c3);
	gvm_free(&g);
	munmap(host, n * 4096);
	close(s1);
	close(s2);
	close(r1);
	close(r2);
	close(m1);
	close(m2);
}

/* ---- 31: the views are charged to the VM's owner ------------------------------------ */

#define OWNER_VCPUS 32

/*
 * Forks a child VMM that runs @child(its end of a new socket pair, @arg) and never
 * returns; this process keeps the other end, in *@sock. Returns the child's pid.
 */
static pid_t fork_vmm(int *sock, void (*child)(int sock, const char *arg), const char *arg)
{
	int sv[2];
	pid_t pid;

	TEST_ASSERT(!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), "socketpair");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork: %s", strerror(errno));
	if (!pid) {
		close(sv[0]);
		child(sv[1], arg);
		_exit(1);
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

/*
 * The child VMM: moves itself into @cg, makes a VM with OWNER_VCPUS vCPUs (never run),
 * sends the VM fd on @sock and waits for a byte (or the socket's end) before it exits.
 */
static void owner_child(int sock, const char *cg)
{
	int kvm, vm, i;
	char b;

	if (elisa_cg_join(cg))
		_exit(2);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		_exit(3);
	for (i = 0; i < OWNER_VCPUS; i++)
		if (ioctl(vm, KVM_CREATE_VCPU, i) < 0)
			_exit(4);
	send_fds(sock, &vm, 1);
	(void)!read(sock, &b, 1);
	_exit(0);
}

static void grant_charged_to_vm_owner(void)
{
	static const char *const vmm_cg = "elisa-test-vmm", *const mgr_cg = "elisa-test-mgr";
	long long vmm0 = 0, mgr0 = 0, vmm1 = 0, mgr1 = 0;
	struct elisa_grant gr = { 0 };
	int sock, vm = -1, evm, m, reg, svc, rc = -1, st = 0;
	char home[300];
	const char *why = elisa_cg_pair(vmm_cg, mgr_cg, home, sizeof(home));
	pid_t pid;

	if (why) {
		/* a skip fails the emulated host's runs, whose kernels all have memory cgroups */
		ksft_test_result_skip("grant_charged_to_vm_owner: %s\n", why);
		return;
	}
	pid = fork_vmm(&sock, owner_child, vmm_cg);
	/* the manager: this process, in its own cgroup */
	TEST_ASSERT(!elisa_cg_join(mgr_cg), "join %s", mgr_cg);
	if (recv_fds(sock, &vm, 1) == 1) {
		m = memfd_page("hostile-owner", NULL);
		reg = elisa_region_page(dev, m);
		svc = service(reg);
		TEST_ASSERT(svc >= 0, "service: %s", strerror(-svc));
		evm = attach(vm);
		TEST_ASSERT(evm >= 0, "attach: %s", strerror(-evm));
		vmm0 = elisa_cg_current(vmm_cg);
		mgr0 = elisa_cg_current(mgr_cg);
		rc = grant(evm, svc, G, &gr);
		vmm1 = elisa_cg_current(vmm_cg);
		mgr1 = elisa_cg_current(mgr_cg);
		close(evm);
		close(svc);
		close(reg);
		close(m);
		close(vm);
	}
	close(sock);
	waitpid(pid, &st, 0);
	/* back home, and the test's cgroups gone (their charges go to the parent) */
	elisa_cg_pair_end(home, vmm_cg, mgr_cg);
	if (vm < 0) {
		ksft_test_result_fail("grant_charged_to_vm_owner: the child VMM made no VM (exit status %d)\n",
				      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return;
	}
	CHECK(rc == 0 && gr.nr_vcpus == OWNER_VCPUS && vmm1 - vmm0 >= 4 << 20 &&
	      mgr1 - mgr0 < 1 << 20 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "grant_charged_to_vm_owner",
	      ": a grant to another process's VM of %d vCPUs: rc %d, nr_vcpus %u; memory.current "
	      "grew by %lld KiB in the VMM's cgroup (want at least 4096) and by %lld KiB in the "
	      "granting process's (want under 1024); child exit status %d",
	      OWNER_VCPUS, rc, gr.nr_vcpus, (vmm1 - vmm0) >> 10, (mgr1 - mgr0) >> 10,
	      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* 32: a VM whose processes have all exited is neither granted to nor attached */

/* The child's last thread: waits for a byte (or the socket's end), then ends the process. */
static void *orphan_child_thread(void *arg)
{
	char b;

	(void)!read(*(int *)arg, &b, 1);
	_exit(0);
}

/*
 * The child VMM: makes a VM with one vCPU, sends its fd on @sock, and lets its main thread
 * exit (pthread_exit) while another thread lives on: the process, and so the VM's owner,
 * lives until that thread reads a byte.
 */
static void orphan_child(int sock, const char *unused __attribute__((unused)))
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;
	static int s;
	pthread_t t;

	vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0 || ioctl(vm, KVM_CREATE_VCPU, 0) < 0)
		_exit(3);
	send_fds(sock, &vm, 1);
	s = sock;
	if (pthread_create(&t, NULL, orphan_child_thread, &s))
		_exit(4);
	pthread_exit(NULL);
}

/*
 * Whether the main thread of process @pid has exited while others live: its status then
 * shows the thread group's leader as a zombie (its exit ran exit_mm(), which handed the
 * mm's ownership to another thread).
 */
static bool leader_exited(pid_t pid)
{
	char path[64], line[128];
	bool z = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "State:", 6)) {
			z = !!strchr(line, 'Z');
			break;
		}
	fclose(f);
	return z;
}

static void orphaned_vm_refused(void)
{
	int sock, vm = -1, evm = -1, m, reg, svc, k, g_alive = 1, g = 1, a = 1, st = 0;
	int lines, i;
	const char *why = elisa_cg_setup();
	bool zombie = false;
	pid_t pid;

	if (why) {
		/* without memory cgroups nothing is charged, and elisa takes every VM as owned */
		/* (a skip fails the emulated host's runs, whose kernels all have them) */
		ksft_test_result_skip("orphaned_vm_refused: %s\n", why);
		return;
	}
	pid = fork_vmm(&sock, orphan_child, NULL);
	m = memfd_page("hostile-orphan", NULL);
	reg = elisa_region_page(dev, m);
	svc = service(reg);
	TEST_ASSERT(svc >= 0, "service: %s", strerror(-svc));
	if (recv_fds(sock, &vm, 1) == 1)
		evm = attach(vm);
	/* the child's main thread has exited, its other thread lives: the VM is owned */
	for (i = 0; i < 5000 && !(zombie = leader_exited(pid)); i++)
		usleep(1000);
	if (evm >= 0 && zombie)
		g_alive = grant(evm, svc, G, NULL);
	/* the child exits: no process uses the VM's mm any more */
	close(sock);
	waitpid(pid, &st, 0);
	/* the module's log budget (10 lines in 5 s), which earlier cases spent, comes back */
	sleep(6);
	k = kmsg_open();
	if (evm >= 0) {
		g = grant(evm, svc, G, NULL);
		close(evm);
		a = attach(vm);
		if (a >= 0)
			close(a);
	}
	lines = kmsg_count(k, "every process of the VM has exited", NULL, NULL);
	CHECK(vm >= 0 && evm >= 0 && zombie && g_alive == 0 && g == -ESRCH &&
	      a == -ESRCH && lines == 2 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "orphaned_vm_refused",
	      ": a VM whose creator's main thread exited (%s): attach %d, grant %d while a "
	      "thread of it lived (want 0); after its last thread: grant again %d, attach "
	      "again %d (want %d), %d log lines (want 2); child exit status %d",
	      zombie ? "seen" : "not seen", evm, g_alive, g, a, -ESRCH, lines,
	      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	close(k);
	if (vm >= 0)
		close(vm);
	close(svc);
	close(reg);
	close(m);
}

static void detach_invept_batched(void)
{
	int kvm, vm = bare_vm(&kvm), evm, m, reg, svc, rc, i;
	struct elisa_grant gr = { 0 };
	long before, after;

	for (i = 0; i < 64; i++)
		TEST_ASSERT(ioctl(vm, KVM_CREATE_VCPU, i) >= 0, "vCPU %d: %s", i, strerror(errno));
	m = memfd_page("hostile-invept", NULL);
	reg = elisa_region_page(dev, m);
	svc = service(reg);
	evm = attach(vm);
	TEST_ASSERT(svc >= 0 && evm >= 0, "service %d, attach %d", svc, evm);
	rc = grant(evm, svc, G, &gr);
	before = elisa_invept_broadcasts();
	close(evm);
	after = elisa_invept_broadcasts();
	CHECK(rc == 0 && gr.nr_vcpus == 64 && before >= 0 && after - before <= 3,
	      "detach_invept_batched",
	      ": the detach of a VM of %u granted vCPUs (grant %d) sent %ld INVEPT broadcasts "
	      "(want at most 3)", gr.nr_vcpus, rc, after - before);
	close(svc);
	close(reg);
	close(m);
	close(vm);
	close(kvm);
}

/* ---- 33, 34: the kernel log's budgets --------------------------------------------- */

#define LOG_VCPUS 24

static void guest_done(void)
{
	GUEST_DONE();
}

/* A VM of LOG_VCPUS vCPUs, attached and granted a service, for the log cases. */
struct log_vm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[LOG_VCPUS];
	int memfd, reg, svc, evm, rc;	/* rc: the grant's */
};

/*
 * Makes @l: every vCPU's CPUID with IBT if @ibt, a grant with @flags. Then waits 6 s, so
 * that the module's budget (10 lines in 5 s) that earlier cases spent comes back.
 */
static void log_vm_make(struct log_vm *l, u32 flags, bool ibt, void *guest)
{
	struct elisa_grant gr = { .flags = flags, .entry_gva = G };
	int i;

	l->vm = vm_create_with_vcpus(LOG_VCPUS, guest, l->vcpus);
	for (i = 0; ibt && i < LOG_VCPUS; i++)
		vcpu_set_cpuid_feature(l->vcpus[i], X86_FEATURE_IBT);
	l->memfd = memfd_page("hostile-log", NULL);
	l->reg = elisa_region_page(dev, l->memfd);
	gr.service_fd = l->svc = service(l->reg);
	l->evm = attach(l->vm->fd);
	TEST_ASSERT(l->svc >= 0 && l->evm >= 0, "service %d, attach %d", l->svc, l->evm);
	l->rc = xioctl(l->evm, ELISA_GRANT, &gr);
	sleep(6);
}

/* Runs each vCPU of @l once (its first run, which enters more than once); how many ended. */
static int log_vm_run(struct log_vm *l)
{
	struct ucall uc;
	int i, done = 0;

	for (i = 0; i < LOG_VCPUS; i++) {
		vcpu_run(l->vcpus[i]);
		done += get_ucall(l->vcpus[i], &uc) == UCALL_DONE;
	}
	return done;
}

static void log_vm_free(struct log_vm *l)
{
	close(l->evm);
	close(l->svc);
	close(l->reg);
	close(l->memfd);
	kvm_vm_free(l->vm);
}

/* 34: a VM's guest-caused log lines have a budget of their own */
static void guest_log_per_vm(void)
{
	struct elisa_version v = { .flags = 1 };
	int k_notes, k_refusal, r, done, notes, refusals;
	struct log_vm l;

	log_vm_make(&l, ELISA_GRANT_USER, false, guest_done);
	k_notes = kmsg_open();
	k_refusal = kmsg_open();
	done = log_vm_run(&l);
	r = xioctl(dev, ELISA_GET_VERSION, &v);
	notes = kmsg_count(k_notes, "user grants stay closed", NULL, NULL);
	refusals = kmsg_count(k_refusal, "ELISA_GET_VERSION", "must be 0", NULL);
	CHECK(l.rc == 0 && done == LOG_VCPUS && r == -EINVAL && notes >= 1 && notes <= 10 &&
		      refusals == 1,
	      "guest_log_per_vm",
	      ": %d of %d vCPUs entered (grant %d); %d kernel-log lines of closed user gates "
	      "(want 1 to 10), then a refused ELISA_GET_VERSION (%d): %d line (want 1)", done,
	      LOG_VCPUS, l.rc, notes, r, refusals);
	close(k_notes);
	close(k_refusal);
	log_vm_free(&l);
}

/* 35: a VMM's CET warnings stay within the module's budget */
static void cet_log_bounded(void)
{
	struct timespec t0, t1;
	struct log_vm l;
	int k, done, lines;
	double s;

	log_vm_make(&l, 0, true, guest_done);
	k = kmsg_open();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	done = log_vm_run(&l);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	lines = kmsg_count(k, "its CPUID exposes CET", "lacks ENDBR64", NULL);
	/* within one 5 s window of the budget: 10 lines of the 24 */
	CHECK(l.rc == 0 && done == LOG_VCPUS && lines >= 1 && lines <= 10 && s < 5,
	      "cet_log_bounded",
	      ": grant %d, %d of %d vCPUs ran; %d CET warning lines in %.1f s (want 1 to 10, "
	      "in under 5 s)", l.rc, done, LOG_VCPUS, lines, s);
	close(k);
	log_vm_free(&l);
}

/* 36's guest: into the gate view (index 511) from its own code, whose next fetch exits there. */
static void guest_stray_vmfunc(void)
{
	asm volatile("vmfunc" : : "a"(0), "c"(511) : "memory");
	GUEST_DONE();
}

/* 36: the lines of broken excursions stay within the VM's budget */
static void broken_log_bounded(void)
{
	int k, i, shutdowns = 0, lines;
	struct timespec t0, t1;
	struct log_vm l;
	double s;

	log_vm_make(&l, 0, false, guest_stray_vmfunc);
	k = kmsg_open();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < LOG_VCPUS; i++) {
		vcpu_run(l.vcpus[i]);
		shutdowns += l.vcpus[i]->run->exit_reason == KVM_EXIT_SHUTDOWN;
	}
	/* the detach prints the lines of the runs that ended */
	log_vm_free(&l);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	lines = kmsg_count(k, "inside the gate or sub view", NULL, NULL);
	/* within one 5 s window of the budget: 10 lines of the 24 */
	CHECK(l.rc == 0 && shutdowns == LOG_VCPUS && lines >= 1 && lines <= 10 && s < 5,
	      "broken_log_bounded",
	      ": grant %d; %d of %d runs ended with KVM_EXIT_SHUTDOWN; %d kernel-log lines of "
	      "exits inside a view by the end of the detach, in %.1f s (want 1 to 10, in "
	      "under 5 s)", l.rc, shutdowns, LOG_VCPUS, lines, s);
	close(k);
}

int main(void)
{
	struct abi_objs o;
	int kvm3, vm3;

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(NPLAN);
	dev = elisa_open();

	o.vm = bare_vm(&o.kvm);
	o.vm2 = ioctl(o.kvm, KVM_CREATE_VM, 0);
	vm3 = bare_vm(&kvm3);
	o.evm = attach(vm3);
	TEST_ASSERT(o.vm2 >= 0 && o.evm >= 0, "VMs: %s", strerror(errno));
	o.memfd = sealed_memfd("hostile-abi", 1);
	o.reg = region(o.memfd, 0, 4096);
	o.code = code_memfd();
	o.svc = service(o.reg);
	TEST_ASSERT(o.reg >= 0 && o.svc >= 0, "region %d, service %d", o.reg, o.svc);

	wrong_sizes(o.evm);
	wrong_fd_for_ioctl(o.evm, o.reg, o.svc);
	flags_and_reserved(&o);
	ranges(&o);
	wrong_fds(&o);

	passed_fds();
	exec_cases();
	shrink_seal_cases();
	cut_case(CUT_MEMFD_PUNCH, "memfd_punch_detected");
	cut_case(CUT_TMPFS_TRUNCATE, "tmpfs_truncate_detected");
	cut_case(CUT_TMPFS_PUNCH, "tmpfs_punch_detected");
	decoupled_after_grant();
	close_orders();
	sigkill_case();
	memslot_cases();
	code_fd_write_only(&o);
	readonly_device(&o);
	grant_charged_to_vm_owner();
	orphaned_vm_refused();
	detach_invept_batched();
	guest_log_per_vm();
	cet_log_bounded();
	broken_log_bounded();

	close(o.svc);
	close(o.code);
	close(o.reg);
	close(o.memfd);
	close(o.evm);
	close(vm3);
	close(kvm3);
	close(o.vm2);
	close(o.vm);
	close(o.kvm);
	close(dev);
	ksft_finished();
}
