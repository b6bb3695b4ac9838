// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_region_test: regions are long-term pins of shmem and hugetlbfs files, accounted in
 * pinned_vm against RLIMIT_MEMLOCK, released with their last user; bad fds, files, seals
 * and ranges are refused with the documented errno (Documentation/api.rst).
 *
 *  1. memfd_pinned: a region of 32 pages at 16 KiB of a never-written 64-page memfd adds
 *     128 kB to VmPin, and its holes are allocated (the file's blocks grow by 128 KiB)
 *  2. seal_write_busy: while the region exists, F_ADD_SEALS(F_SEAL_WRITE) fails with
 *     EBUSY (the region counts as a writable mapping)
 *  3. last_user: a service maps the region; closing the region fd leaves VmPin up,
 *     closing the service brings it back
 *  4. seal_after_release: then F_SEAL_WRITE succeeds (no writable user, no pinned page)
 *  5. dev_shm: a region of a shm_open() file (tmpfs at /dev/shm) counts 64 kB in VmPin
 *     until closed
 *  6. hugetlb_memfd: a region [1 MiB, +2 MiB) of a 4 MiB memfd_create(MFD_HUGETLB) file
 *     takes two 2 MiB pages from the pool and counts both, 4096 kB, in VmPin until closed
 *     (what is pinned is whole huge pages)
 *  7. hugetlbfs_file: the same for a 2 MiB file on a mounted hugetlbfs (/dev/hugepages)
 *  8. hugetlb_pool_empty: a region one huge page larger than the free pool: ENOMEM; the
 *     pages taken before the failure are unpinned (VmPin unchanged) and go back to the
 *     pool with the file (a host with more than 511 free 2 MiB pages fails this check)
 *  9. guest_writes_reach_files: one service maps a memfd region, a /dev/shm region, the
 *     hugetlb region (512 subpages of two huge pages, in 4 KiB leaves) and two whole huge
 *     pages of another hugetlb memfd at a 2 MiB-aligned GVA (in 2 MiB leaves); the guest
 *     stores a distinct word in every 4 KiB page of each through the service, and the host
 *     finds each word at its file offset (and nothing outside the regions)
 * 10. granted_pin_released: VmPin counts the four regions (64 + 64 kB and the two huge
 *     pages each of the last two touches, 8320 kB) while the VM holds the grant, and is
 *     back where it was once everything is closed
 * 11. bad_fd: fd -1 and a closed fd: EBADF
 * 12. not_read_write: the memfd reopened O_RDONLY or O_WRONLY: EACCES
 * 13. sealed: a memfd with F_SEAL_WRITE, one with F_SEAL_FUTURE_WRITE, and a hugetlb
 *     memfd without F_SEAL_SHRINK: EPERM (every memfd of the other cases carries
 *     F_SEAL_SHRINK; elisa_hostile_vmm_test has the shmem memfds without it)
 * 14. not_shmem: a pipe, /dev/zero, a procfs file, a ramfs file, an elisa-region fd:
 *     EINVAL
 * 15. past_eof: ranges ending beyond the end of a 4-page memfd (and of a 2 MiB hugetlb
 *     memfd), and offset + length overflowing: EINVAL
 * 16. bad_args: unaligned offset or length, length 0 or above 1 GiB, flags or reserved
 *     set: EINVAL
 * 17. errors_balanced: after all of 11-16, VmPin is where it was
 * 18. memlock_exceeded: a process without CAP_IPC_LOCK and RLIMIT_MEMLOCK = 64 KiB gets a
 *     16-page region, then ENOMEM for one page more (VmPin stays 64 kB); once the first
 *     is closed, 16 pages again
 * 19. memlock_cap_bypass: with CAP_IPC_LOCK and the same limit, 32 pages are pinned and
 *     still counted (VmPin 128 kB)
 * 20. memlock_per_user: the limit is on what the user has pinned, not the process: while
 *     the 16-page region of 18 exists, a process forked from its maker (pinned_vm 0)
 *     gets ENOMEM for 12 pages, and 12 pages once that region is closed
 * 21. memlock_huge_page: the limit counts whole huge pages: without CAP_IPC_LOCK, a 4 KiB
 *     region of a hugetlb memfd is ENOMEM under RLIMIT_MEMLOCK = 1 MiB (it would pin
 *     2 MiB) with VmPin unchanged, and is made under 4 MiB, counting 2048 kB; the huge
 *     page is back in the pool once both regions and the file are closed
 * 22. append_only: a /dev/shm file with the append-only flag (chattr +a), opened
 *     O_RDWR | O_APPEND, and one made immutable (chattr +i) after it was opened
 *     read-write: EPERM (mmap(MAP_SHARED) of such a file for writing is refused too);
 *     skipped on a kernel whose tmpfs has no inode flags (CONFIG_TMPFS_XATTR off)
 *
 * The test reserves 6 huge pages (vm.nr_hugepages) for itself and restores the old count.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "elisa_kvm.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"

#define G 0x500000000000UL
#define CODE_GVA 0x600000000000UL
#define HUGE (2UL << 20)
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)	/* linux/memfd.h: log2(2 MiB) << MFD_HUGE_SHIFT */
#endif
#define HUGEPAGES 6
#define HUGETLBFS_FILE "/dev/hugepages/elisa-region-test"
#define SHM_NAME "/elisa-region-test"

/* ---- host helpers ------------------------------------------------------------------ */

/* ELISA_CREATE_REGION; returns the fd, or -errno. */
static int region(int dev, int fd, u64 offset, u64 length)
{
	struct elisa_create_region cr = { .fd = fd, .offset = offset, .length = length };
	int r = __elisa_ioctl(dev, ELISA_CREATE_REGION, &cr);

	return r < 0 ? -errno : r;
}

/* A memfd of @size bytes, sealed with F_SEAL_SHRINK as a region's memfd must be. */
static int memfd(const char *name, unsigned int flags, u64 size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | flags);

	TEST_ASSERT(fd >= 0 && ftruncate(fd, size) == 0, "memfd %s: %s", name, strerror(errno));
	TEST_ASSERT(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "memfd %s: F_SEAL_SHRINK: %s",
		    name, strerror(errno));
	return fd;
}

/* Bytes the file occupies (st_blocks). */
static long file_bytes(int fd)
{
	struct stat st;

	TEST_ASSERT(fstat(fd, &st) == 0, "fstat");
	return st.st_blocks * 512;
}

/* A field of /proc/meminfo, e.g. "HugePages_Free"; -1 if missing. */
static long meminfo(const char *field)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128], name[64];
	long v, r = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%63[^:]: %ld", name, &v) == 2 && !strcmp(name, field))
			r = v;
	if (f)
		fclose(f);
	return r;
}

/* A service of code @code at CODE_GVA with @n regions mapped read-write at @gva. */
static int service(int dev, const u8 *code, int n, const int *regions, const u64 *gva)
{
	struct elisa_create_service cs = { 0 };
	int code_fd = memfd_page("elisa-region-code", code), svc, i;

	cs.code_fd = code_fd;
	cs.code_size = 4096;
	cs.code_gva = CODE_GVA;
	cs.nr_regions = n;
	for (i = 0; i < n; i++) {
		cs.regions[i].region_fd = regions[i];
		cs.regions[i].access = ELISA_ACCESS_READ | ELISA_ACCESS_WRITE;
		cs.regions[i].gva = gva[i];
	}
	svc = elisa_ioctl(dev, ELISA_CREATE_SERVICE, &cs);
	close(code_fd);
	return svc;
}

/* The service: stores RDI at the address in RSI, returns RDI. */
static void store_code(u8 *c)
{
	static const u8 store[] = {
		0x48, 0x89, 0x3e,	/* mov [rsi], rdi */
		0x48, 0x89, 0xf8,	/* mov rax, rdi */
		0xc3,			/* ret */
	};

	memset(c, 0xcc, 4096);
	memcpy(c, store, sizeof(store));
}

/* ---- the guest: one word into every page of every region --------------------------- */

#define NREG 4
/*
 * memfd, /dev/shm file, hugetlb memfd from 1 MiB (4 KiB leaves), hugetlb memfd from 0 at a
 * 2 MiB-aligned GVA (2 MiB leaves)
 */
static const u64 reg_gva[NREG] = { 0x600000100000UL, 0x600000200000UL, 0x600000400000UL,
				   0x600000800000UL };
static u64 reg_pages[NREG];

static u64 marker(int r, u64 p)
{
	return 0xe115a00000000000ULL | (u64)r << 32 | p;
}

/* Where in the region the word of page @p goes: varies within the page. */
static u64 word_off(u64 p)
{
	return p * 4096 + 8 * (p % 512);
}

static void guest_code(void)
{
	long ret;
	u64 p;
	int r;

	for (r = 0; r < NREG; r++)
		for (p = 0; p < reg_pages[r]; p++) {
			ret = elisa_call(G, 511, marker(r, p), reg_gva[r] + word_off(p));
			GUEST_ASSERT_EQ((u64)ret, marker(r, p));
		}
	GUEST_SYNC(1);
	GUEST_DONE();
}

/* ---- a child without CAP_IPC_LOCK --------------------------------------------------- */

static void drop_cap_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	TEST_ASSERT(syscall(SYS_capget, &h, d) == 0, "capget: %s", strerror(errno));
	d[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	d[CAP_TO_INDEX(CAP_IPC_LOCK)].permitted &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	TEST_ASSERT(syscall(SYS_capset, &h, d) == 0, "capset: %s", strerror(errno));
}

struct memlock_result {
	int first, over, again;	/* fd (>= 0) or -errno */
	long pin_first, pin_over, pin_end;
	int forked, forked_after;	/* memlock_forked() while first is open, after */
};

/* A region of 12 pages of @m made by a forked process: 0 (made), -errno. */
static int memlock_forked(int dev, int m)
{
	int p[2], r = -EIO;
	pid_t pid;

	TEST_ASSERT(pipe(p) == 0, "pipe");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		r = region(dev, m, 16 * 4096, 12 * 4096);
		if (r >= 0)
			r = 0;
		_exit(write(p[1], &r, sizeof(r)) == sizeof(r) ? 0 : 1);
	}
	close(p[1]);
	if (read(p[0], &r, sizeof(r)) != sizeof(r))
		r = -EIO;
	close(p[0]);
	waitpid(pid, NULL, 0);
	return r;
}

/* In a child: RLIMIT_MEMLOCK 64 KiB, CAP_IPC_LOCK dropped or kept; regions of @pages. */
static struct memlock_result memlock_child(int dev, bool drop, u64 pages)
{
	struct memlock_result res = { 0 };
	int p[2], status;
	pid_t pid;

	TEST_ASSERT(pipe(p) == 0, "pipe");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		struct rlimit rl = { 64 << 10, 64 << 10 };
		int m = memfd("elisa-memlock", 0, 64 * 4096);

		TEST_ASSERT(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit");
		if (drop)
			drop_cap_ipc_lock();
		res.first = region(dev, m, 0, pages * 4096);
		res.pin_first = elisa_vm_pin_kb();
		res.over = region(dev, m, 32 * 4096, 4096);
		res.pin_over = elisa_vm_pin_kb();
		res.forked = memlock_forked(dev, m);
		if (res.first >= 0)
			close(res.first);
		if (res.over >= 0)
			close(res.over);
		res.forked_after = memlock_forked(dev, m);
		res.again = region(dev, m, 0, pages * 4096);
		if (res.again >= 0)
			close(res.again);
		res.pin_end = elisa_vm_pin_kb();
		TEST_ASSERT(write(p[1], &res, sizeof(res)) == sizeof(res), "write result");
		_exit(0);
	}
	close(p[1]);
	TEST_ASSERT(read(p[0], &res, sizeof(res)) == sizeof(res), "child result");
	close(p[0]);
	TEST_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status),
		    "child failed");
	return res;
}

/* ---- the cases ---------------------------------------------------------------------- */

static void memfd_cases(int dev, long pin0)
{
	static u8 code[4096];
	int m = memfd("elisa-region", 0, 64 * 4096), r, s, busy, sealed;
	long b0 = file_bytes(m), pin1, pin2, pin3;

	r = region(dev, m, 16 << 10, 32 * 4096);
	pin1 = elisa_vm_pin_kb();
	CHECK(r >= 0 && pin1 - pin0 == 128 && file_bytes(m) - b0 == 128 << 10, "memfd_pinned",
	      ": fd %d, VmPin %ld -> %ld kB, file %ld -> %ld bytes", r, pin0, pin1, b0,
	      file_bytes(m));
	TEST_ASSERT(r >= 0, "no region, no more memfd cases");

	busy = fcntl(m, F_ADD_SEALS, F_SEAL_WRITE) < 0 ? errno : 0;
	CHECK(busy == EBUSY, "seal_write_busy", ": F_SEAL_WRITE with a region: errno %d", busy);

	store_code(code);
	s = service(dev, code, 1, &r, &reg_gva[0]);
	close(r);
	pin2 = elisa_vm_pin_kb();
	close(s);
	pin3 = elisa_vm_pin_kb();
	CHECK(pin2 - pin0 == 128 && pin3 == pin0, "last_user",
	      ": VmPin %ld kB with the service only, %ld kB after it (was %ld)", pin2, pin3, pin0);

	sealed = fcntl(m, F_ADD_SEALS, F_SEAL_WRITE) < 0 ? errno : 0;
	CHECK(sealed == 0, "seal_after_release", ": F_SEAL_WRITE: errno %d", sealed);
	close(m);
}

static void shm_and_hugetlb_cases(int dev, long pin0, bool huge_ok)
{
	int f, r, hfd;
	long pin1, pin2, free0, free1;

	shm_unlink(SHM_NAME);
	f = shm_open(SHM_NAME, O_RDWR | O_CREAT | O_EXCL, 0600);
	TEST_ASSERT(f >= 0 && ftruncate(f, 64 << 10) == 0, "shm_open: %s", strerror(errno));
	r = region(dev, f, 0, 64 << 10);
	pin1 = elisa_vm_pin_kb();
	if (r >= 0)
		close(r);
	pin2 = elisa_vm_pin_kb();
	CHECK(r >= 0 && pin1 - pin0 == 64 && pin2 == pin0, "dev_shm",
	      ": fd %d, VmPin %ld -> %ld -> %ld kB", r, pin0, pin1, pin2);
	close(f);
	shm_unlink(SHM_NAME);

	r = -1;
	pin1 = pin2 = free0 = free1 = -1;
	if (huge_ok) {
		hfd = memfd("elisa-region-huge", MFD_HUGETLB | MFD_HUGE_2MB, 2 * HUGE);
		free0 = meminfo("HugePages_Free");
		r = region(dev, hfd, 1 << 20, HUGE);
		free1 = meminfo("HugePages_Free");
		pin1 = elisa_vm_pin_kb();
		if (r >= 0)
			close(r);
		pin2 = elisa_vm_pin_kb();
		close(hfd);
	}
	CHECK(huge_ok && r >= 0 && free0 - free1 == 2 && pin1 - pin0 == 4096 && pin2 == pin0,
	      "hugetlb_memfd", ": fd %d, free huge pages %ld -> %ld, VmPin %ld -> %ld -> %ld kB",
	      r, free0, free1, pin0, pin1, pin2);

	r = -1;
	pin1 = pin2 = -1;
	hfd = huge_ok ? open(HUGETLBFS_FILE, O_RDWR | O_CREAT | O_TRUNC, 0600) : -1;
	if (hfd >= 0 && ftruncate(hfd, HUGE) == 0) {
		r = region(dev, hfd, 0, HUGE);
		pin1 = elisa_vm_pin_kb();
		if (r >= 0)
			close(r);
		pin2 = elisa_vm_pin_kb();
	}
	CHECK(r >= 0 && pin1 - pin0 == 2048 && pin2 == pin0, "hugetlbfs_file",
	      ": %s: open fd %d, region fd %d, VmPin %ld -> %ld -> %ld kB", HUGETLBFS_FILE, hfd,
	      r, pin0, pin1, pin2);
	if (hfd >= 0)
		close(hfd);
	unlink(HUGETLBFS_FILE);
}

/* A region of one huge page more than the pool has free: ENOMEM, nothing left pinned. */
static void hugetlb_pool_case(int dev, long pin0, bool huge_ok)
{
	long free0 = meminfo("HugePages_Free"), free1 = -1, pin1 = -1, need = free0 + 1;
	int hfd, r = 0;

	if (huge_ok && need * HUGE <= ELISA_REGION_MAX_SIZE) {
		hfd = memfd("elisa-region-pool", MFD_HUGETLB | MFD_HUGE_2MB, need * HUGE);
		r = region(dev, hfd, 0, need * HUGE);
		pin1 = elisa_vm_pin_kb();
		if (r >= 0)
			close(r);
		close(hfd);
		free1 = meminfo("HugePages_Free");
	}
	CHECK(r == -ENOMEM && pin1 == pin0 && free1 == free0, "hugetlb_pool_empty",
	      ": %ld huge pages with %ld free: %d (want %d), VmPin %ld kB (was %ld), free "
	      "huge pages %ld after (was %ld)", need, free0, r, -ENOMEM, pin1, pin0, free1, free0);
}

/* Checks the word of every page of region @r (file @fd, region at @off) in the mapping @map
 * of the file's first @size bytes; every other word must be 0. Returns the mismatches. */
static long check_words(const u64 *map, u64 size, int r, u64 off)
{
	u64 i, want, at, end = off + reg_pages[r] * 4096;
	long bad = 0;

	for (i = 0; i < size / 8; i++) {
		at = i * 8;
		want = 0;
		if (at >= off && at < end && (at - off) == word_off((at - off) / 4096))
			want = marker(r, (at - off) / 4096);
		if (map[i] != want && bad++ < 4)
			ksft_print_msg("region %d: word at file offset %#lx is %#lx, want %#lx\n", r,
				       (unsigned long)at, (unsigned long)map[i], (unsigned long)want);
	}
	return bad;
}

static void guest_case(int dev, long pin0, bool huge_ok)
{
	static const u64 file_size[NREG] = { 32 * 4096, 16 * 4096, 2 * HUGE, 2 * HUGE };
	static const u64 reg_off[NREG] = { 4 * 4096, 0, 1 << 20, 0 };
	static const u64 pages[NREG] = { 16, 16, HUGE / 4096, 2 * HUGE / 4096 };
	static u8 code[4096];
	int files[NREG], regs[NREG], svc, evm, i, n = huge_ok ? NREG : NREG - 2, rc;
	struct elisa_grant grant = { 0 };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	long bad = 0, pin1, pin2;
	u64 *map;

	files[0] = memfd("elisa-region-e2e", 0, file_size[0]);
	shm_unlink(SHM_NAME);
	files[1] = shm_open(SHM_NAME, O_RDWR | O_CREAT | O_EXCL, 0600);
	TEST_ASSERT(files[1] >= 0 && ftruncate(files[1], file_size[1]) == 0, "shm_open");
	shm_unlink(SHM_NAME);
	if (huge_ok) {
		files[2] = memfd("elisa-region-e2e-huge", MFD_HUGETLB | MFD_HUGE_2MB, file_size[2]);
		files[3] = memfd("elisa-region-e2e-2m", MFD_HUGETLB | MFD_HUGE_2MB, file_size[3]);
	}
	for (i = 0; i < NREG; i++)
		reg_pages[i] = i < n ? pages[i] : 0;
	for (i = 0; i < n; i++) {
		regs[i] = region(dev, files[i], reg_off[i], pages[i] * 4096);
		TEST_ASSERT(regs[i] >= 0, "region %d: errno %d", i, -regs[i]);
	}
	store_code(code);
	svc = service(dev, code, n, regs, reg_gva);
	for (i = 0; i < n; i++)
		close(regs[i]);

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	sync_global_to_guest(vm, reg_pages);
	evm = elisa_attach_grant(dev, vm, svc, G, elisa_guest_block, ELISA_GUEST_BLOCK_PAGES, &grant,
				 &rc);
	close(svc);
	TEST_ASSERT(rc == 0, "ELISA_GRANT: errno %d", rc);
	elisa_run_sync(vcpu, 1, &uc);

	for (i = 0; i < n; i++) {
		map = mmap(NULL, file_size[i], PROT_READ, MAP_SHARED, files[i], 0);
		TEST_ASSERT(map != MAP_FAILED, "mmap file %d: %s", i, strerror(errno));
		bad += check_words(map, file_size[i], i, reg_off[i]);
		munmap(map, file_size[i]);
	}
	CHECK(huge_ok && !bad, "guest_writes_reach_files",
	      ": %lu + %lu + %lu + %lu pages written by the guest, %ld words wrong%s",
	      (unsigned long)reg_pages[0], (unsigned long)reg_pages[1],
	      (unsigned long)reg_pages[2], (unsigned long)reg_pages[3], bad,
	      huge_ok ? "" : " (no huge pages)");

	pin1 = elisa_vm_pin_kb();
	kvm_vm_free(vm);
	close(evm);
	for (i = 0; i < n; i++)
		close(files[i]);
	pin2 = elisa_vm_pin_kb();
	CHECK(pin1 - pin0 == (16 + 16 + 1024 + 1024) * 4 && pin2 == pin0, "granted_pin_released",
	      ": VmPin %ld kB granted, %ld kB after (was %ld)", pin1, pin2, pin0);
}

static void error_cases(int dev, long pin0)
{
	int m = memfd("elisa-region-err", 0, 4 * 4096), closed, fd, sv[2];
	int ro, wo, sw, sf, zero, rfd, hfd;
	int r1, r2, r3, r4, r5, r6;
	char path[64], dir[] = "/tmp/elisa-ramfs-XXXXXX", file[64];
	struct elisa_create_region cr;
	long pin1;

	closed = memfd("elisa-region-closed", 0, 4096);
	close(closed);
	r1 = region(dev, -1, 0, 4096);
	r2 = region(dev, closed, 0, 4096);
	CHECK(r1 == -EBADF && r2 == -EBADF, "bad_fd", ": fd -1: %d, closed fd: %d (want %d)", r1,
	      r2, -EBADF);

	snprintf(path, sizeof(path), "/proc/self/fd/%d", m);
	ro = open(path, O_RDONLY);
	wo = open(path, O_WRONLY);
	TEST_ASSERT(ro >= 0 && wo >= 0, "reopen memfd: %s", strerror(errno));
	r1 = region(dev, ro, 0, 4096);
	r2 = region(dev, wo, 0, 4096);
	CHECK(r1 == -EACCES && r2 == -EACCES, "not_read_write",
	      ": O_RDONLY: %d, O_WRONLY: %d (want %d)", r1, r2, -EACCES);
	close(ro);
	close(wo);

	sw = memfd("elisa-region-sw", 0, 4096);
	sf = memfd("elisa-region-sf", 0, 4096);
	TEST_ASSERT(fcntl(sw, F_ADD_SEALS, F_SEAL_WRITE) == 0 &&
		    fcntl(sf, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == 0, "seal: %s", strerror(errno));
	r1 = region(dev, sw, 0, 4096);
	r2 = region(dev, sf, 0, 4096);
	hfd = memfd_create("elisa-region-noshrink",
			   MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_HUGE_2MB);
	r3 = hfd >= 0 && ftruncate(hfd, HUGE) == 0 ? region(dev, hfd, 0, HUGE) : -1000;
	if (hfd >= 0)
		close(hfd);
	CHECK(r1 == -EPERM && r2 == -EPERM && r3 == -EPERM, "sealed",
	      ": F_SEAL_WRITE: %d, F_SEAL_FUTURE_WRITE: %d, hugetlb memfd without "
	      "F_SEAL_SHRINK: %d (want %d)", r1, r2, r3, -EPERM);
	close(sw);
	close(sf);

	TEST_ASSERT(pipe(sv) == 0, "pipe");
	r1 = region(dev, sv[1], 0, 4096);
	close(sv[0]);
	close(sv[1]);
	zero = open("/dev/zero", O_RDWR);
	r2 = region(dev, zero, 0, 4096);
	close(zero);
	fd = open("/proc/sys/vm/overcommit_memory", O_RDWR);
	TEST_ASSERT(fd >= 0, "open a procfs file: %s", strerror(errno));
	r3 = region(dev, fd, 0, 4096);
	close(fd);
	TEST_ASSERT(mkdtemp(dir) && mount("none", dir, "ramfs", 0, NULL) == 0, "mount ramfs: %s",
		    strerror(errno));
	snprintf(file, sizeof(file), "%s/f", dir);
	fd = open(file, O_RDWR | O_CREAT, 0600);
	TEST_ASSERT(fd >= 0 && pwrite(fd, "x", 1, 4095) == 1, "ramfs file: %s", strerror(errno));
	r4 = region(dev, fd, 0, 4096);
	close(fd);
	umount(dir);
	rmdir(dir);
	rfd = region(dev, m, 0, 4096);
	r5 = region(dev, rfd, 0, 4096);
	close(rfd);
	CHECK(r1 == -EINVAL && r2 == -EINVAL && r3 == -EINVAL && r4 == -EINVAL && r5 == -EINVAL,
	      "not_shmem", ": pipe %d, /dev/zero %d, procfs file %d, ramfs file %d, elisa-region "
	      "%d (want %d)", r1, r2, r3, r4, r5, -EINVAL);

	r1 = region(dev, m, 0, 5 * 4096);
	r2 = region(dev, m, 4 * 4096, 4096);
	r3 = region(dev, m, 3 * 4096, 2 * 4096);
	r4 = region(dev, m, -4096ULL, 2 * 4096);
	hfd = memfd_create("elisa-region-err-huge",
			   MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_HUGE_2MB);
	r5 = hfd >= 0 && ftruncate(hfd, HUGE) == 0 && fcntl(hfd, F_ADD_SEALS, F_SEAL_SHRINK) == 0 ?
		     region(dev, hfd, 1 << 20, HUGE) : -1000;
	if (hfd >= 0)
		close(hfd);
	CHECK(r1 == -EINVAL && r2 == -EINVAL && r3 == -EINVAL && r4 == -EINVAL && r5 == -EINVAL,
	      "past_eof", ": [0,+5p) %d, [4p,+1p) %d, [3p,+2p) %d, overflow %d, hugetlb %d "
	      "(want %d)", r1, r2, r3, r4, r5, -EINVAL);

	r1 = region(dev, m, 2048, 4096);
	r2 = region(dev, m, 0, 2048);
	r3 = region(dev, m, 0, 0);
	r4 = region(dev, m, 0, ELISA_REGION_MAX_SIZE + 4096);
	memset(&cr, 0, sizeof(cr));
	cr.fd = m;
	cr.length = 4096;
	cr.flags = 1;
	r5 = __elisa_ioctl(dev, ELISA_CREATE_REGION, &cr) < 0 ? -errno : 0;
	cr.flags = 0;
	cr.reserved[3] = 1;
	r6 = __elisa_ioctl(dev, ELISA_CREATE_REGION, &cr) < 0 ? -errno : 0;
	CHECK(r1 == -EINVAL && r2 == -EINVAL && r3 == -EINVAL && r4 == -EINVAL && r5 == -EINVAL &&
		      r6 == -EINVAL, "bad_args",
	      ": offset 2048 %d, length 2048 %d, length 0 %d, 1 GiB + 4 KiB %d, flags %d, "
	      "reserved %d (want %d)", r1, r2, r3, r4, r5, r6, -EINVAL);
	close(m);

	pin1 = elisa_vm_pin_kb();
	CHECK(pin1 == pin0, "errors_balanced", ": VmPin %ld kB (was %ld)", pin1, pin0);
}

static void memlock_cases(int dev)
{
	struct memlock_result a = memlock_child(dev, true, 16);
	struct memlock_result b = memlock_child(dev, false, 32);

	CHECK(a.first >= 0 && a.pin_first == 64 && a.over == -ENOMEM && a.pin_over == 64 &&
		      a.again >= 0 && a.pin_end == 0, "memlock_exceeded",
	      ": 16 pages: fd %d (VmPin %ld kB), 1 more: %d (want %d, VmPin %ld kB), 16 again: "
	      "fd %d, VmPin %ld kB at the end", a.first, a.pin_first, a.over, -ENOMEM,
	      a.pin_over, a.again, a.pin_end);
	CHECK(b.first >= 0 && b.pin_first == 128 && b.over >= 0 && b.pin_over == 132 &&
		      b.again >= 0 && b.pin_end == 0, "memlock_cap_bypass",
	      ": 32 pages over a 64 KiB limit: fd %d, VmPin %ld kB; 1 more: fd %d, VmPin %ld kB",
	      b.first, b.pin_first, b.over, b.pin_over);
	CHECK(a.first >= 0 && a.forked == -ENOMEM && a.forked_after == 0, "memlock_per_user",
	      ": 12 pages in a forked process while 16 are pinned: %d (want %d), once they are "
	      "not: %d (want 0)", a.forked, -ENOMEM, a.forked_after);
}

struct memlock_huge_result {
	int small, big;		/* fd (>= 0) or -errno: RLIMIT_MEMLOCK 1 MiB, 4 MiB */
	long pin0, pin_small, pin_big;
	long free0, free_end;	/* free huge pages before, after both regions and the file */
};

/* In a child without CAP_IPC_LOCK: a 4 KiB region of a 2 MiB hugetlb memfd, two limits. */
static void memlock_huge_child(int dev, int out)
{
	struct memlock_huge_result res = { 0 };
	struct rlimit rl = { 1 << 20, 4 << 20 };
	int h = memfd("elisa-memlock-huge", MFD_HUGETLB | MFD_HUGE_2MB, HUGE);

	drop_cap_ipc_lock();
	TEST_ASSERT(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit");
	res.pin0 = elisa_vm_pin_kb();
	res.free0 = meminfo("HugePages_Free");
	res.small = region(dev, h, 0, 4096);
	res.pin_small = elisa_vm_pin_kb();
	if (res.small >= 0)
		close(res.small);
	rl.rlim_cur = 4 << 20;
	TEST_ASSERT(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit");
	res.big = region(dev, h, 0, 4096);
	res.pin_big = elisa_vm_pin_kb();
	if (res.big >= 0)
		close(res.big);
	close(h);
	res.free_end = meminfo("HugePages_Free");
	TEST_ASSERT(write(out, &res, sizeof(res)) == sizeof(res), "write result");
	_exit(0);
}

static void memlock_huge_case(int dev, bool huge_ok)
{
	struct memlock_huge_result res = { .small = -1000, .big = -1000 };
	int p[2], status;
	pid_t pid;

	if (huge_ok) {
		TEST_ASSERT(pipe(p) == 0, "pipe");
		pid = fork();
		TEST_ASSERT(pid >= 0, "fork");
		if (pid == 0)
			memlock_huge_child(dev, p[1]);
		close(p[1]);
		TEST_ASSERT(read(p[0], &res, sizeof(res)) == sizeof(res), "child result");
		close(p[0]);
		TEST_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
				    !WEXITSTATUS(status), "child failed");
	}
	CHECK(huge_ok && res.small == -ENOMEM && res.pin_small == res.pin0 &&
		      res.big >= 0 && res.pin_big - res.pin0 == 2048 && res.free_end == res.free0,
	      "memlock_huge_page", ": 4 KiB of a huge page under a 1 MiB limit: %d (want %d), "
	      "VmPin %ld -> %ld kB; under 4 MiB: fd %d, VmPin %ld kB; free huge pages %ld, then "
	      "%ld with everything closed", res.small, -ENOMEM, res.pin0, res.pin_small, res.big,
	      res.pin_big, res.free0, res.free_end);
}

/* FS_IOC_SETFLAGS of @fl on the file @fd; 0 or -errno. */
static int set_inode_flags(int fd, int fl)
{
	return ioctl(fd, FS_IOC_SETFLAGS, &fl) ? -errno : 0;
}

static void append_only_case(int dev)
{
	int f, a, r1 = -1000, r2 = -1000, e1, e2;

	shm_unlink(SHM_NAME);
	f = shm_open(SHM_NAME, O_RDWR | O_CREAT | O_EXCL, 0600);
	TEST_ASSERT(f >= 0 && ftruncate(f, 4096) == 0, "shm_open: %s", strerror(errno));
	e1 = set_inode_flags(f, FS_APPEND_FL);
	a = open("/dev/shm" SHM_NAME, O_RDWR | O_APPEND);
	if (!e1 && a >= 0)
		r1 = region(dev, a, 0, 4096);
	if (a >= 0)
		close(a);
	/* f was opened read-write before the immutable flag: it still is */
	e2 = set_inode_flags(f, FS_IMMUTABLE_FL);
	if (!e2)
		r2 = region(dev, f, 0, 4096);
	if (!e1 || !e2)
		TEST_ASSERT(set_inode_flags(f, 0) == 0, "clear the inode flags: %s",
			    strerror(errno));
	close(f);
	shm_unlink(SHM_NAME);
	if (e1 == -ENOTTY && e2 == -ENOTTY) {
		/* a kernel without CONFIG_TMPFS_XATTR has no tmpfs inode flags */
		ksft_test_result_skip("append_only: tmpfs has no inode flags here (chattr: %d)\n",
				      e1);
		return;
	}
	CHECK(r1 == -EPERM && r2 == -EPERM, "append_only",
	      ": append-only file open O_RDWR | O_APPEND: %d, immutable file open read-write: %d "
	      "(want %d; chattr: %d, %d)", r1, r2, -EPERM, e1, e2);
}

int main(void)
{
	long pin0, huge_old, huge_set;
	bool huge_ok;
	int dev;

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(22);
	dev = elisa_open();
	pin0 = elisa_vm_pin_kb();
	TEST_ASSERT(pin0 >= 0, "no VmPin in /proc/self/status");

	huge_old = elisa_nr_hugepages(-1);
	huge_set = huge_old >= 0 ? elisa_nr_hugepages(huge_old + HUGEPAGES) : -1;
	huge_ok = huge_set >= 0 && elisa_nr_hugepages(-1) == huge_set &&
		  meminfo("HugePages_Free") >= HUGEPAGES;
	if (!huge_ok)
		ksft_print_msg("no %d free 2 MiB pages (vm.nr_hugepages %ld; CONFIG_HUGETLBFS?)\n",
			       HUGEPAGES, huge_old);

	memfd_cases(dev, pin0);
	shm_and_hugetlb_cases(dev, pin0, huge_ok);
	hugetlb_pool_case(dev, pin0, huge_ok);
	guest_case(dev, pin0, huge_ok);
	error_cases(dev, pin0);
	memlock_cases(dev);
	memlock_huge_case(dev, huge_ok);
	append_only_case(dev);

	if (huge_old >= 0)
		elisa_nr_hugepages(huge_old);
	close(dev);
	ksft_finished();
}
