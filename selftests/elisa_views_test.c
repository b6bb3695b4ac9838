// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_views_test: the gate and sub views the module builds pass the same isolation checks
 * as the host tests. The module dumps each granted vCPU's views through debugfs
 * (elisa/vm<id>/vcpu<n>-views, Documentation/testing.rst); /bin/elisactl check-views runs
 * elisa-core's checks (elisa_core::verify, the code of the property tests) over the dump.
 *
 * The host makes a region (one page of a memfd) and a service (one page of code: return the
 * first argument) mapping it read-write, and grants it at G to two VMs: one with one vCPU,
 * which makes one call first, and one with two vCPUs, which never runs. A second service
 * (its own region) is then granted to the second VM too, for callers at CPL 3.
 *
 *  1. grant_one_vcpu: attach and grant to the one-vCPU VM; ELISA_GRANT reports one vCPU, and
 *     a call through the gate returns its argument
 *  2. views_one_vcpu: elisactl check-views on vcpu0-views exits 0 (every check passes), and
 *     the dump starts with the format's magic
 *  3. grant_two_vcpus: attach and grant to the two-vCPU VM; two vCPUs granted
 *  4. views_two_vcpus: check-views exits 0 on vcpu0-views and on vcpu1-views
 *  5. two_services: the second service granted to the second VM (gate index 510, user
 *     pages): each vCPU's file holds two dumps, and all 22 checks pass on each
 *  6. corrupted_copy_fails: a copy of the first VM's dump passes unchanged, and fails
 *     (exit 1, the W^X check named) once one byte gives the gate code page's EPT leaf read
 *     and write permission
 *  7. huge_region_2m: a third service maps a region of two 2 MiB pages of a hugetlb memfd at a
 *     2 MiB-aligned GVA, granted to the first VM too (gate index 510): its views map the
 *     region in 2 MiB leaves (the dump's region records, one per physically contiguous
 *     run, have page shift 21 and 2 pages in all), and
 *     all 22 checks pass on the vCPU's file
 *  8. gone_after_detach: once the elisa-vm fds are closed the VMs' dump files and
 *     directories are gone (ENOENT), and a dump file opened before reads no more
 */
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "elisa_kvm.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"

#define G 0x500000000000UL
#define CODE_GVA 0x600000000000UL
#define REGION_GVA 0x600000100000UL
#define HUGE_GVA 0x600000400000UL
#define HUGE (2UL << 20)
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)	/* linux/memfd.h: log2(2 MiB) << MFD_HUGE_SHIFT */
#endif
#define DUMP_MAPPING_SHIFT 2		/* u8: 12, 21 or 30 */
#define DUMP_MAPPING_PAGES 8		/* u64 */
#define DUMP_KIND_REGION 16
#define DEBUGFS "/sys/kernel/debug/elisa"
#define ELISACTL "/bin/elisactl"
#define COPY "/tmp/elisa-views-copy"

/* The views dump (elisa_core::dump, Documentation/testing.rst): what this test reads. */
#define DUMP_MAGIC 0x44564c45u		/* "ELVD" */
#define DUMP_HEADER_SIZE 6		/* u16: the header's size (elisa_core::dump::HEADER_BYTES) */
#define DUMP_MIN_HEADER 256
#define DUMP_NR_MAPPINGS 16		/* u32 */
#define DUMP_NR_FRAMES 20		/* u32 */
#define DUMP_MAPPING 48
#define DUMP_MAPPING_KIND 0		/* u8; 1: gate code */
#define DUMP_MAPPING_HPA 32		/* u64 */
#define DUMP_FRAME (8 + 4096)
#define EPT_ADDR 0x000ffffffffff000UL

static void guest_code(void)
{
	long r = elisa_call(G, 511, 42, 0);

	GUEST_SYNC_ARGS(1, r, 0, 0, 0);
	GUEST_DONE();
}

struct gvm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu[2];
	int evm, grant_rc;
	long id;
	struct elisa_grant grant;
};

/* The highest N of the debugfs directories elisa/vmN: the VM attached last. */
static long newest_vm_id(void)
{
	DIR *d = opendir(DEBUGFS);
	struct dirent *e;
	long id = -1, n;

	TEST_ASSERT(d, "opendir " DEBUGFS ": %s (debugfs mounted?)", strerror(errno));
	while ((e = readdir(d)))
		if (sscanf(e->d_name, "vm%ld", &n) == 1 && n > id)
			id = n;
	closedir(d);
	return id;
}

static void views_path(char *buf, size_t len, long id, int vcpu)
{
	snprintf(buf, len, DEBUGFS "/vm%ld/vcpu%d-views", id, vcpu);
}

/* Grants @service at G with @flags; returns 0 or -errno. */
static int grant_more(struct gvm *g, int service, u32 flags, struct elisa_grant *out)
{
	struct elisa_grant gr = { .flags = flags, .service_fd = service, .entry_gva = G };
	int rc = __elisa_ioctl(g->evm, ELISA_GRANT, &gr);

	*out = gr;
	return rc ? -errno : 0;
}

/* Maps the entry block at G, attaches the VM and grants @service at G. */
static void grant_vm(int dev, struct gvm *g, int service)
{
	g->evm = elisa_attach_block(dev, g->vm, G, elisa_guest_block, ELISA_GUEST_BLOCK_PAGES);
	g->id = newest_vm_id();
	memset(&g->grant, 0, sizeof(g->grant));
	g->grant.service_fd = service;
	g->grant.entry_gva = G;
	g->grant_rc = __elisa_ioctl(g->evm, ELISA_GRANT, &g->grant);
	if (g->grant_rc)
		ksft_print_msg("ELISA_GRANT: errno %d\n", errno);
}

/*
 * Runs elisactl check-views on @path; its output goes to the log as "# " lines, its last
 * line (the summary) into @summary. Returns its exit status, or -1.
 */
static int check_views(const char *path, char *summary, size_t len)
{
	char cmd[256], line[512];
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), ELISACTL " check-views %s 2>&1", path);
	p = popen(cmd, "r");
	TEST_ASSERT(p, "popen %s: %s", cmd, strerror(errno));
	summary[0] = 0;
	while (fgets(line, sizeof(line), p)) {
		ksft_print_msg("%s", line);
		snprintf(summary, len, "%s", line);
		summary[strcspn(summary, "\n")] = 0;
	}
	st = pclose(p);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Reads all of @path into a malloc'd buffer; returns its length, or -1 with errno. */
static long read_all(const char *path, u8 **out)
{
	size_t cap = 1 << 20, len = 0;
	u8 *buf = malloc(cap);
	int fd = open(path, O_RDONLY);
	ssize_t n;

	TEST_ASSERT(buf, "malloc");
	if (fd < 0) {
		free(buf);
		return -1;
	}
	while ((n = read(fd, buf + len, cap - len)) > 0) {
		len += n;
		if (len == cap) {
			buf = realloc(buf, cap *= 2);
			TEST_ASSERT(buf, "realloc");
		}
	}
	close(fd);
	if (n < 0) {
		free(buf);
		return -1;
	}
	*out = buf;
	return len;
}

static u16 le16(const u8 *p)
{
	u16 v;

	memcpy(&v, p, 2);
	return v;
}

static u32 le32(const u8 *p)
{
	u32 v;

	memcpy(&v, p, 4);
	return v;
}

static u64 le64(const u8 *p)
{
	u64 v;

	memcpy(&v, p, 8);
	return v;
}

/*
 * Gives the gate code page's EPT leaf in the dump @d read and write permission, by one
 * byte: the only qword of the frames that names the gate code frame with X alone.
 * Returns the number of such leaves found (1 when done).
 */
static int make_gate_code_writable(u8 *d, long len)
{
	u32 nm = le32(d + DUMP_NR_MAPPINGS), nf = le32(d + DUMP_NR_FRAMES), i, j;
	long hdr = le16(d + DUMP_HEADER_SIZE), frames = hdr + (long)nm * DUMP_MAPPING;
	u64 code = 0, q;
	int found = 0;
	u8 *hit = NULL;

	if (len < frames + (long)nf * DUMP_FRAME)
		return 0;
	for (i = 0; i < nm; i++)
		if (d[hdr + i * DUMP_MAPPING + DUMP_MAPPING_KIND] == 1)
			code = le64(d + hdr + i * DUMP_MAPPING + DUMP_MAPPING_HPA);
	for (i = 0; code && i < nf; i++)
		for (j = 0; j < 512; j++) {
			u8 *at = d + frames + (long)i * DUMP_FRAME + 8 + j * 8;

			q = le64(at);
			if ((q & EPT_ADDR) == code && (q & 7) == 4) {
				found++;
				hit = at;
			}
		}
	if (found == 1)
		hit[0] |= 3;
	return found;
}

static bool write_file(const char *path, const u8 *d, long len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	bool ok = fd >= 0 && write(fd, d, len) == len;

	if (fd >= 0)
		close(fd);
	return ok;
}

/*
 * The region mappings of every dump in @d (@len bytes) with page shift @shift: their count
 * (one per physically contiguous run), and in *@pages their pages.
 */
static int region_records(const u8 *d, long len, int shift, u64 *pages)
{
	long at = 0, hdr, nm, nf, i;
	int n = 0;

	while (at + DUMP_MIN_HEADER <= len && le32(d + at) == DUMP_MAGIC) {
		hdr = le16(d + at + DUMP_HEADER_SIZE);
		nm = le32(d + at + DUMP_NR_MAPPINGS);
		nf = le32(d + at + DUMP_NR_FRAMES);
		if (at + hdr + nm * DUMP_MAPPING > len)
			break;
		for (i = 0; i < nm; i++) {
			const u8 *m = d + at + hdr + i * DUMP_MAPPING;

			if (m[DUMP_MAPPING_KIND] == DUMP_KIND_REGION && m[DUMP_MAPPING_SHIFT] == shift) {
				n++;
				*pages += le64(m + DUMP_MAPPING_PAGES);
			}
		}
		at += hdr + nm * DUMP_MAPPING + nf * DUMP_FRAME;
	}
	return n;
}

static bool gone(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 && errno == ENOENT;
}

int main(void)
{
	static u8 code[4096];
	static const u8 ret_arg[] = { 0x48, 0x89, 0xf8, 0xc3 };	/* mov rax, rdi; ret */
	char path[128], path1[128], dir[128], sum[512], sum1[512];
	struct gvm v1, v2;
	struct ucall uc;
	int dev, region_fd, region, service, region2_fd, region2, service2;
	int rc, rc1, rc2, found, early, huge_fd, huge_region = -1, service3 = -1, n2m = -1;
	long huge_old, huge_set;
	u64 pages2m = 0;
	struct elisa_grant g2;
	long len;
	u8 *d = NULL, buf[64];
	bool ok;

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(8);
	dev = elisa_open();

	region_fd = memfd_page("elisa-views-region", NULL);
	region = elisa_region_page(dev, region_fd);
	memset(code, 0xcc, sizeof(code));
	memcpy(code, ret_arg, sizeof(ret_arg));
	service = elisa_service_page(dev, "elisa-views-service", code, CODE_GVA, region,
				     REGION_GVA);
	region2_fd = memfd_page("elisa-views-region2", NULL);
	region2 = elisa_region_page(dev, region2_fd);
	service2 = elisa_service_page(dev, "elisa-views-service2", code, CODE_GVA, region2,
				      REGION_GVA);

	/* 1-2: one vCPU, after a call */
	v1.vm = vm_create_with_one_vcpu(&v1.vcpu[0], guest_code);
	grant_vm(dev, &v1, service);
	ok = !v1.grant_rc && v1.grant.nr_vcpus == 1 && v1.id > 0;
	if (ok) {
		elisa_run_sync(v1.vcpu[0], 1, &uc);
		ok = uc.args[2] == 42;
	}
	CHECK(ok, "grant_one_vcpu", ": rc %d, vcpus %u, vm%ld, call returned %ld", v1.grant_rc,
	      v1.grant.nr_vcpus, v1.id, ok ? (long)uc.args[2] : -1L);
	if (!ok)
		ksft_exit_fail_msg("no grant, no views\n");

	views_path(path, sizeof(path), v1.id, 0);
	rc = check_views(path, sum, sizeof(sum));
	len = read_all(path, &d);
	ok = rc == 0 && len > DUMP_MIN_HEADER && le32(d) == DUMP_MAGIC;
	CHECK(ok, "views_one_vcpu", ": %s: exit %d, %ld bytes (%s)", path, rc, len, sum);

	/* 3-4: two vCPUs, never run */
	v2.vm = vm_create_with_vcpus(2, guest_code, v2.vcpu);
	grant_vm(dev, &v2, service);
	ok = !v2.grant_rc && v2.grant.nr_vcpus == 2 && v2.id > v1.id;
	CHECK(ok, "grant_two_vcpus", ": rc %d, vcpus %u, vm%ld", v2.grant_rc, v2.grant.nr_vcpus,
	      v2.id);
	views_path(path, sizeof(path), v2.id, 0);
	rc1 = check_views(path, sum, sizeof(sum));
	views_path(path1, sizeof(path1), v2.id, 1);
	rc2 = check_views(path1, sum1, sizeof(sum1));
	CHECK(ok && rc1 == 0 && rc2 == 0, "views_two_vcpus", ": vcpu0 exit %d (%s), vcpu1 exit %d (%s)",
	      rc1, sum, rc2, sum1);

	/* 5: a second service on the second VM: two dumps per file */
	rc = grant_more(&v2, service2, ELISA_GRANT_USER, &g2);
	ok = rc == 0 && g2.gate_index == 510 && g2.nr_vcpus == 2;
	views_path(path, sizeof(path), v2.id, 0);
	rc1 = check_views(path, sum, sizeof(sum));
	ok = ok && rc1 == 0 && strstr(sum, "check-views: 22 checks, 0 failed");
	views_path(path1, sizeof(path1), v2.id, 1);
	rc2 = check_views(path1, sum1, sizeof(sum1));
	ok = ok && rc2 == 0 && strstr(sum1, "check-views: 22 checks, 0 failed");
	CHECK(ok, "two_services",
	      ": grant rc %d index %u vcpus %u; vcpu0 exit %d (%s), vcpu1 exit %d (%s)", rc,
	      g2.gate_index, g2.nr_vcpus, rc1, sum, rc2, sum1);

	/* 6: a copy passes; one byte more and it fails */
	rc1 = rc2 = -1;
	found = 0;
	if (len > 0 && write_file(COPY, d, len)) {
		rc1 = check_views(COPY, sum1, sizeof(sum1));
		found = make_gate_code_writable(d, len);
		if (found == 1 && write_file(COPY, d, len))
			rc2 = check_views(COPY, sum, sizeof(sum));
	}
	CHECK(rc1 == 0 && found == 1 && rc2 == 1, "corrupted_copy_fails",
	      ": unchanged copy exit %d; gate code leaves %d; writable copy exit %d (%s)", rc1,
	      found, rc2, rc2 >= 0 ? sum : "not run");
	unlink(COPY);
	free(d);

	/* 7: a region of huge pages at a 2 MiB-aligned GVA is mapped in 2 MiB leaves */
	huge_old = elisa_nr_hugepages(-1);
	huge_set = huge_old >= 0 ? elisa_nr_hugepages(huge_old + 2) : -1;
	rc = -1;
	rc1 = -1;
	sum[0] = 0;
	huge_fd = huge_set >= 0 ? memfd_create("elisa-views-huge", MFD_CLOEXEC | MFD_ALLOW_SEALING |
					       MFD_HUGETLB | MFD_HUGE_2MB) : -1;
	if (huge_fd >= 0 && ftruncate(huge_fd, 2 * HUGE) == 0 &&
	    fcntl(huge_fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0) {
		struct elisa_create_region cr = { .fd = huge_fd, .length = 2 * HUGE };

		huge_region = __elisa_ioctl(dev, ELISA_CREATE_REGION, &cr);
	}
	if (huge_region >= 0) {
		service3 = elisa_service_page(dev, "elisa-views-service3", code, CODE_GVA, huge_region,
					      HUGE_GVA);
		rc = grant_more(&v1, service3, 0, &g2);
	}
	if (!rc) {
		views_path(path, sizeof(path), v1.id, 0);
		rc1 = check_views(path, sum, sizeof(sum));
		len = read_all(path, &d);
		n2m = len > 0 ? region_records(d, len, 21, &pages2m) : -1;
		if (len > 0)
			free(d);
	}
	CHECK(!rc && g2.gate_index == 510 && rc1 == 0 &&
		      strstr(sum, "check-views: 22 checks, 0 failed") && n2m >= 1 && pages2m == 2,
	      "huge_region_2m", ": region fd %d, grant rc %d index %u; 2 MiB region records %d "
	      "(%lu pages); check-views exit %d (%s)", huge_region, rc, g2.gate_index, n2m,
	      (unsigned long)pages2m, rc1, sum);

	/* 8: detach removes the files; one opened before reads no more */
	views_path(path, sizeof(path), v1.id, 0);
	early = open(path, O_RDONLY);
	TEST_ASSERT(early >= 0, "open %s: %s", path, strerror(errno));
	close(v1.evm);
	close(v2.evm);
	snprintf(dir, sizeof(dir), DEBUGFS "/vm%ld", v1.id);
	ok = gone(path) && gone(dir);
	views_path(path1, sizeof(path1), v2.id, 1);
	ok = ok && gone(path1);
	errno = 0;
	len = read(early, buf, sizeof(buf));
	CHECK(ok && len < 0, "gone_after_detach",
	      ": %s and vm%ld's files gone: %s; read of an earlier open: %ld (errno %d)", dir,
	      v2.id, ok ? "yes" : "NO", len, errno);
	close(early);

	kvm_vm_free(v1.vm);
	kvm_vm_free(v2.vm);
	close(service);
	close(region);
	close(region_fd);
	close(service2);
	close(region2);
	close(region2_fd);
	if (service3 >= 0)
		close(service3);
	if (huge_region >= 0)
		close(huge_region);
	if (huge_fd >= 0)
		close(huge_fd);
	if (huge_old >= 0)
		elisa_nr_hugepages(huge_old);
	close(dev);
	ksft_finished();
}
