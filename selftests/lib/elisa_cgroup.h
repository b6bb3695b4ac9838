/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Memory cgroups for the selftests that check who is charged for what elisa allocates
 * (elisa_hostile_vmm_test's grant, elisa_vmm_test's regions made by elisactl serve):
 * cgroup v2 at /sys/fs/cgroup, children of its root.
 *
 *   elisa_cg_setup()
 *	cgroup v2 mounted at /sys/fs/cgroup if nothing is there (the emulated host's /init
 *	mounts no cgroup) and "+memory" in the root's subtree_control; NULL, or why not
 *   elisa_cg_write(path, v)
 *	writes @v to a cgroup file; 0 or -errno
 *   elisa_cg_current(name)
 *	memory.current of the child @name of the root, in bytes; -1 if unreadable
 *   elisa_cg_make(name), elisa_cg_join(name), elisa_cg_remove(name)
 *	the child @name made (or already there), this process moved into it ("0" to its
 *	cgroup.procs; 0 or -errno), removed (its charges go to the root)
 *   elisa_cg_home(buf, len), elisa_cg_return(home)
 *	this process's cgroup ("/" or "/path", from /proc/self/cgroup), and back into it
 *   elisa_cg_pair(a, b, home, len), elisa_cg_pair_end(home, a, b)
 *	a test's two cgroups (a VMM's and a manager's): elisa_cg_setup(), this process's
 *	cgroup into @home, @a and @b made (a failure ends the test); NULL, or why cgroups
 *	cannot be had (the caller's skip). Then back home, and both removed.
 *
 * Include after elisa_kvm.h (TEST_ASSERT).
 */
#ifndef ELISA_CGROUP_H
#define ELISA_CGROUP_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>

#define ELISA_CG "/sys/fs/cgroup"

static inline int elisa_cg_write(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, v, strlen(v)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static inline long long elisa_cg_current(const char *name)
{
	char path[128], buf[32] = { 0 };
	int fd;

	snprintf(path, sizeof(path), ELISA_CG "/%s/memory.current", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return atoll(buf);
}

static inline const char *elisa_cg_setup(void)
{
	char ctl[256] = { 0 };
	int fd;

	if (access(ELISA_CG "/cgroup.controllers", F_OK) &&
	    mount("cgroup2", ELISA_CG, "cgroup2", 0, NULL))
		return "cannot mount cgroup2 at " ELISA_CG;
	fd = open(ELISA_CG "/cgroup.controllers", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, ctl, sizeof(ctl) - 1) < 0 || !strstr(ctl, "memory")) {
		if (fd >= 0)
			close(fd);
		return "no memory controller in cgroup v2 at " ELISA_CG;
	}
	close(fd);
	if (elisa_cg_write(ELISA_CG "/cgroup.subtree_control", "+memory"))
		return "cannot enable +memory in " ELISA_CG "/cgroup.subtree_control";
	return NULL;
}

static inline int elisa_cg_make(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), ELISA_CG "/%s", name);
	return mkdir(path, 0755) && errno != EEXIST ? -errno : 0;
}

static inline int elisa_cg_join(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), ELISA_CG "/%s/cgroup.procs", name);
	return elisa_cg_write(path, "0");
}

static inline void elisa_cg_remove(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), ELISA_CG "/%s", name);
	rmdir(path);
}

static inline void elisa_cg_home(char *buf, size_t len)
{
	char line[300];
	FILE *f = fopen("/proc/self/cgroup", "re");

	snprintf(buf, len, "/");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = 0;
			snprintf(buf, len, "%s", line + 3);
		}
	if (f)
		fclose(f);
}

static inline void elisa_cg_return(const char *home)
{
	char path[400];

	snprintf(path, sizeof(path), ELISA_CG "%s/cgroup.procs", strcmp(home, "/") ? home : "");
	elisa_cg_write(path, "0");
}

static inline const char *elisa_cg_pair(const char *a, const char *b, char *home, size_t len)
{
	const char *why = elisa_cg_setup();

	if (why)
		return why;
	elisa_cg_home(home, len);
	TEST_ASSERT(!elisa_cg_make(a) && !elisa_cg_make(b), "mkdir %s, %s: %s", a, b,
		    strerror(errno));
	return NULL;
}

static inline void elisa_cg_pair_end(const char *home, const char *a, const char *b)
{
	elisa_cg_return(home);
	elisa_cg_remove(b);
	elisa_cg_remove(a);
}

#endif
