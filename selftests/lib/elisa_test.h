/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by elisa's selftests, on the kernel tree's KVM selftest library:
 * TEST_ASSERT (the expression, file and line) and TEST_REQUIRE (a skip) come from its
 * test_util.h; CHECK is one KTAP result; elisa's ioctl wrappers come in pairs
 * (__elisa_ioctl returns the raw result for negative tests, elisa_ioctl asserts).
 * Tests that run guests include elisa_kvm.h instead, which includes this header.
 */
#ifndef ELISA_TEST_H
#define ELISA_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/elisa.h>
#include "kselftest.h"
#include "test_util.h"

#define ELISA_DEV "/dev/elisa"

/* Each check is one KTAP result; a failed check prints where and why. */
#define CHECK(cond, name, fmt, ...)                                                       \
	ksft_test_result((cond), "%s" fmt "\n", name, ##__VA_ARGS__)

#define __elisa_ioctl(fd, cmd, arg) ioctl((fd), (cmd), (arg))
#define elisa_ioctl(fd, cmd, arg)                                                         \
	({                                                                                \
		int __r = __elisa_ioctl(fd, cmd, arg);                                    \
		TEST_ASSERT(__r >= 0, "%s failed: rc %d errno %d (%s)", #cmd, __r, errno, \
			    strerror(errno));                                             \
		__r;                                                                      \
	})

/* What a test needs of the host, for elisa_require(). */
#define ELISA_REQ_DEV		(1u << 0)	/* /dev/elisa, openable (elisa.ko, root) */
#define ELISA_REQ_CAPS		(1u << 1)	/* the CPU has what elisa needs (ELISA_CAPS_REQUIRED) */
#define ELISA_REQ_ATTACH	(1u << 2)	/* VMs can be attached: kvm_intel.nested=0 */
#define ELISA_REQ_ALL		(ELISA_REQ_DEV | ELISA_REQ_CAPS | ELISA_REQ_ATTACH)

/* kvm_intel.nested: 1 (Y), 0 (N), or -1 when it cannot be read. */
static inline int elisa_kvm_nested(void)
{
	char c = 0;
	int fd = open("/sys/module/kvm_intel/parameters/nested", O_RDONLY);

	if (fd < 0)
		return -1;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c == 'Y' || c == '1' ? 1 : c == 'N' || c == '0' ? 0 : -1;
}

/*
 * Skips the test (KSFT_SKIP, with the reason) unless the host has all of @what. Call it
 * before ksft_set_plan(). In the project's emulated host everything is there, and a skip
 * fails the run there.
 */
static inline void elisa_require(unsigned int what)
{
	struct elisa_version v = { 0 };
	int fd;

	if (what & (ELISA_REQ_DEV | ELISA_REQ_CAPS)) {
		__TEST_REQUIRE(access(ELISA_DEV, F_OK) == 0,
			       "no " ELISA_DEV ": load elisa.ko (Documentation/qemu.rst)");
		fd = open(ELISA_DEV, O_RDWR | O_CLOEXEC);
		__TEST_REQUIRE(fd >= 0, "cannot open " ELISA_DEV ": %s (it is mode 0600: run as root)",
			       strerror(errno));
		if (what & ELISA_REQ_CAPS) {
			__TEST_REQUIRE(ioctl(fd, ELISA_GET_VERSION, &v) == 0,
				       "ELISA_GET_VERSION: %s", strerror(errno));
			__TEST_REQUIRE((v.caps & ELISA_CAPS_REQUIRED) == ELISA_CAPS_REQUIRED,
				       "the CPU lacks what elisa needs: caps %#llx, needs %#llx",
				       (unsigned long long)v.caps,
				       (unsigned long long)ELISA_CAPS_REQUIRED);
		}
		close(fd);
	}
	if (what & ELISA_REQ_ATTACH)
		__TEST_REQUIRE(elisa_kvm_nested() == 0,
			       "kvm_intel.nested is not 0: elisa refuses to attach VMs (reload kvm_intel with nested=0)");
}

static inline int elisa_open(void)
{
	int fd = open(ELISA_DEV, O_RDWR | O_CLOEXEC);

	TEST_ASSERT(fd >= 0, "open " ELISA_DEV ": %s", strerror(errno));
	return fd;
}

/* Read an MSR of CPU 0 through /dev/cpu/0/msr; returns 0 when it cannot be read. */
static inline uint64_t read_msr0(uint32_t msr)
{
	uint64_t v = 0;
	int fd = open("/dev/cpu/0/msr", O_RDONLY);

	if (fd < 0)
		return 0;
	if (pread(fd, &v, sizeof(v), msr) != sizeof(v))
		v = 0;
	close(fd);
	return v;
}

/* This process's pinned memory in kB (VmPin in /proc/self/status); -1 if unreadable. */
static inline long elisa_vm_pin_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[128];
	long kb = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/*
 * Sends @n fds (at most 8) over the Unix socket @sock with SCM_RIGHTS, and receives up to
 * @max of them (close-on-exec); recv_fds() returns how many came, -1 on an error.
 */
static inline void send_fds(int sock, const int *fds, int n)
{
	char buf[CMSG_SPACE(8 * sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = "f", .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf,
			      .msg_controllen = CMSG_SPACE(n * sizeof(int)) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	TEST_ASSERT(sendmsg(sock, &msg, 0) == 1, "sendmsg: %s", strerror(errno));
}

static inline int recv_fds(int sock, int *fds, int max)
{
	char buf[CMSG_SPACE(8 * sizeof(int))], b;
	struct iovec iov = { .iov_base = &b, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf,
			      .msg_controllen = sizeof(buf) };
	struct cmsghdr *c;
	int n;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	n = n > max ? max : n;
	memcpy(fds, CMSG_DATA(c), n * sizeof(int));
	return n;
}

/*
 * The pages elisa holds (allocated) and the region pages it has pinned, from the first line
 * of debugfs elisa/vms ("pages held N pinned M quarantined Q invept I"); false if
 * unreadable.
 */
static inline bool elisa_pages(long *held, long *pinned)
{
	FILE *f = fopen("/sys/kernel/debug/elisa/vms", "r");
	bool ok = f && fscanf(f, "pages held %ld pinned %ld", held, pinned) == 2;

	if (f)
		fclose(f);
	return ok;
}

/* The pages elisa quarantined (never to be freed) from debugfs elisa/vms; -1 if unreadable. */
static inline long elisa_quarantined(void)
{
	FILE *f = fopen("/sys/kernel/debug/elisa/vms", "r");
	long held, pinned, q = -1;

	if (f && fscanf(f, "pages held %ld pinned %ld quarantined %ld", &held, &pinned, &q) != 3)
		q = -1;
	if (f)
		fclose(f);
	return q;
}

/*
 * The INVEPT broadcasts elisa has sent since it was loaded (each makes every running guest
 * on the host exit), from debugfs elisa/vms; -1 if unreadable.
 */
static inline long elisa_invept_broadcasts(void)
{
	FILE *f = fopen("/sys/kernel/debug/elisa/vms", "r");
	long held, pinned, q, n = -1;

	if (f && fscanf(f, "pages held %ld pinned %ld quarantined %ld invept %ld", &held, &pinned,
			&q, &n) != 4)
		n = -1;
	if (f)
		fclose(f);
	return n;
}

/* The lines of debugfs elisa/vms that start with @prefix; -1 if unreadable. */
static inline int elisa_vms_lines(const char *prefix)
{
	FILE *f = fopen("/sys/kernel/debug/elisa/vms", "r");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += !strncmp(line, prefix, strlen(prefix));
	fclose(f);
	return n;
}

/*
 * The VM records debugfs elisa/vms lists ("vm <id> attached ..." or "vm <id> quiescing
 * ...", a detach under way); -1 if unreadable.
 */
static inline int elisa_vm_records(void)
{
	return elisa_vms_lines("vm ");
}

/* elisa.ko's parameter @name (/sys/module/elisa/parameters/<name>) in @buf; false if unread. */
static inline bool elisa_module_param(const char *name, char *buf, int len)
{
	char path[128], fmt[16];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "/sys/module/elisa/parameters/%s", name);
	snprintf(fmt, sizeof(fmt), "%%%ds", len - 1);
	f = fopen(path, "r");
	ok = f && fscanf(f, fmt, buf) == 1;
	if (f)
		fclose(f);
	return ok;
}

/* Whether elisa.ko was loaded to hook VM entries with ftrace (its entry_hook parameter). */
static inline bool elisa_entry_hook_is_ftrace(void)
{
	char v[32];

	return elisa_module_param("entry_hook", v, sizeof(v)) && !strcmp(v, "ftrace");
}

/*
 * The sum over every vCPU line of debugfs elisa/vms ("  vcpu N ... @name V ...") of the
 * counter @name; -1 if unreadable.
 */
static inline long elisa_vcpus_sum(const char *name)
{
	FILE *f = fopen("/sys/kernel/debug/elisa/vms", "r");
	char line[512], key[64], *p;
	long n = 0;

	if (!f)
		return -1;
	snprintf(key, sizeof(key), " %s ", name);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "  vcpu ", 7) && (p = strstr(line, key)))
			n += atol(p + strlen(key));
	fclose(f);
	return n;
}

/*
 * The entry hooks elisa has registered, from debugfs elisa/vms ("entry hook ftrace",
 * "entry hook tracepoint", "entry hook none", ...): the words after "entry hook " in @buf,
 * without the newline; false if unreadable.
 */
static inline bool elisa_entry_hooks(char *buf, size_t len)
{
	FILE *f = fopen("/sys/kernel/debug/elisa/vms", "r");
	char line[256];
	bool found = false;
	size_t n;

	while (f && !found && len && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "entry hook ", 11))
			continue;
		n = strcspn(line + 11, "\n");
		n = n < len ? n : len - 1;
		memcpy(buf, line + 11, n);
		buf[n] = 0;
		found = true;
	}
	if (f)
		fclose(f);
	return found;
}

/*
 * Prints debugfs elisa/vms as test diagnostics, without the EPTP-list lines: what a
 * failing case shows of the module's counters (failbacks, failback_why, faults, ...).
 */
static inline void elisa_print_debugfs(void)
{
	FILE *f = fopen("/sys/kernel/debug/elisa/vms", "r");
	char line[512];

	while (f && fgets(line, sizeof(line), f))
		if (!strstr(line, "list["))
			ksft_print_msg("elisa/vms: %s", line);
	if (f)
		fclose(f);
}

/* CLOCK_MONOTONIC in milliseconds. */
static inline double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* The system's free pages (nr_free_pages in /proc/vmstat); -1 if unreadable. */
static inline long free_pages(void)
{
	FILE *f = fopen("/proc/vmstat", "r");
	char name[64];
	long val, r = -1;

	while (f && fscanf(f, "%63s %ld", name, &val) == 2)
		if (!strcmp(name, "nr_free_pages"))
			r = val;
	if (f)
		fclose(f);
	return r;
}

/* Module @name's reference count (/sys/module/<name>/refcnt); -1 if not loaded as one. */
static inline int module_refcnt(const char *name)
{
	char path[128];
	FILE *f;
	int n = -1;

	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", name);
	f = fopen(path, "r");
	if (f && fscanf(f, "%d", &n) != 1)
		n = -1;
	if (f)
		fclose(f);
	return n;
}

/* elisa.ko's module reference count; -1 if not loaded. */
static inline int elisa_refcnt(void)
{
	return module_refcnt("elisa");
}

/*
 * The boot's @mod.* words of the kernel command line (the prefix given as "kvm_intel."
 * also matches "kvm-intel."), without the prefix, as /init passes them to insmod: the
 * parameters a test that loads the module again must pass too.
 */
static inline void boot_module_params(const char *mod, char *buf, size_t len)
{
	char cmdline[4096], alt[64], *w, *save, *p;
	FILE *f = fopen("/proc/cmdline", "r");
	size_t n = f ? fread(cmdline, 1, sizeof(cmdline) - 1, f) : 0, m = strlen(mod);

	if (f)
		fclose(f);
	cmdline[n] = 0;
	snprintf(alt, sizeof(alt), "%s", mod);
	for (p = alt; *p; p++)
		if (*p == '_')
			*p = '-';
	buf[0] = 0;
	for (w = strtok_r(cmdline, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
		if (!strncmp(w, mod, m) || !strncmp(w, alt, m))
			snprintf(buf + strlen(buf), len - strlen(buf), "%s ", w + m);
}

/* vm.nr_hugepages: reads it, and writes @set unless negative; -1 without hugetlbfs. */
static inline long elisa_nr_hugepages(long set)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", set < 0 ? "r" : "w");
	long v = -1;

	if (!f)
		return -1;
	if (set < 0 && fscanf(f, "%ld", &v) != 1)
		v = -1;
	if (set >= 0)
		v = fprintf(f, "%ld\n", set) > 0 ? set : -1;
	fclose(f);
	return v;
}

/*
 * Attached VMs in elisa's debugfs (-1: unreadable), in *gates the vCPUs granted a gate,
 * in *pages the pages elisa holds plus those it pins.
 */
static inline int elisa_debugfs_vms(int *gates, long *pages)
{
	FILE *f = fopen("/sys/kernel/debug/elisa/vms", "r");
	long held = -1, pinned = -1;
	char line[256], *p;
	int vms = 0;

	*gates = 0;
	*pages = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "pages held %ld pinned %ld", &held, &pinned) == 2)
			*pages = held + pinned;
		if (!strncmp(line, "vm ", 3) && strstr(line, " attached "))
			vms++;
		/* A granted gate holds frames; its list entry opens at the vCPU's next entry. */
		p = strstr(line, " gate_frames ");
		if (!strncmp(line, "  vcpu ", 7) && p && atol(p + 13) > 0)
			(*gates)++;
	}
	fclose(f);
	return vms;
}

#endif /* ELISA_TEST_H */
