// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_module_test: elisa.ko loads, unloads, and cannot be unloaded under an open file.
 *
 * Runs first in the emulated host, with the module not loaded, and leaves it loaded.
 *  1. load: finit_module() of /elisa.ko succeeds and /dev/elisa appears, mode 0600
 *  2. idle refcount: /sys/module/elisa/refcnt is 0 with no file open
 *  3. open pins: with /dev/elisa open the refcount is 1 and delete_module() fails with
 *     EWOULDBLOCK (the misc device's file_operations carry .owner)
 *  4. debugfs_pins_module: so does an open debugfs file of the module (elisa/vms, with
 *     /dev/elisa closed): its file_operations carry .owner too, so nothing the module
 *     frees at unload is read through a file still open (a review's test idea)
 *  5. unload: after the close delete_module() succeeds and /dev/elisa is gone
 *  6. reload: the module loads again and answers ELISA_GET_VERSION
 *  7. entry_hook_param: entry_hook=bogus is refused (EINVAL, nothing loaded); loaded, the
 *     parameter reads back what the boot asked for (elisa.entry_hook= on the kernel
 *     command line, ftrace without one)
 *  8. unload_after_use: a VM is attached and detached (the entry hook is registered, then
 *     lingers a second: Documentation/design.rst, "The entry hook"). Right after the
 *     detach, with entry_hook=ftrace the module is still held by its direct call
 *     (delete_module EWOULDBLOCK) and unloads within five seconds, once ftrace has taken
 *     the call out; with entry_hook=tracepoint it unloads at once, module exit taking the
 *     lingering probe out. Either way it loads again and answers ELISA_GET_VERSION.
 *
 * Every load passes the boot's elisa.* parameters (tools/testvm/run.sh --module-param),
 * as /init does.
 */
#include <sys/stat.h>
#include <sys/syscall.h>
#include "elisa_test.h"
#include "kvm_util.h"

#define KO_PATH "/elisa.ko"

static int load_with(const char *params)
{
	int fd = open(KO_PATH, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -errno;
	r = syscall(SYS_finit_module, fd, params, 0);
	r = r ? -errno : 0;
	close(fd);
	return r;
}

static int load(void)
{
	char params[512];

	boot_module_params("elisa.", params, sizeof(params));
	return load_with(params);
}

static int unload(void)
{
	return syscall(SYS_delete_module, "elisa", O_NONBLOCK) ? -errno : 0;
}

int main(void)
{
	struct elisa_version v = { 0 };
	struct stat st;
	int r, fd, n;

	ksft_print_header();
	ksft_set_plan(8);
	TEST_REQUIRE(access(KO_PATH, R_OK) == 0);
	if (access("/sys/module/elisa", F_OK) == 0)
		TEST_ASSERT(unload() == 0, "elisa was loaded and does not unload");

	r = load();
	CHECK(r == 0 && stat(ELISA_DEV, &st) == 0 && S_ISCHR(st.st_mode) &&
		      (st.st_mode & 0777) == 0600,
	      "load", ": finit_module %d (%s), " ELISA_DEV " mode %o", r, strerror(-r),
	      st.st_mode & 0777);
	TEST_ASSERT(r == 0, "cannot continue without the module");

	CHECK(elisa_refcnt() == 0, "idle_refcount", ": refcnt %d", elisa_refcnt());

	fd = elisa_open();
	n = elisa_refcnt();
	r = unload();
	CHECK(n == 1 && r == -EWOULDBLOCK && access(ELISA_DEV, F_OK) == 0, "open_pins_module",
	      ": refcnt %d, delete_module %d (%s)", n, r, strerror(-r));
	close(fd);

	fd = open("/sys/kernel/debug/elisa/vms", O_RDONLY | O_CLOEXEC);
	n = elisa_refcnt();
	r = fd < 0 ? -errno : unload();
	CHECK(fd >= 0 && n == 1 && r == -EWOULDBLOCK && access(ELISA_DEV, F_OK) == 0,
	      "debugfs_pins_module", ": open %s, refcnt %d, delete_module %d (%s)",
	      fd < 0 ? strerror(errno) : "ok", n, r, strerror(-r));
	if (fd >= 0)
		close(fd);

	r = unload();
	CHECK(r == 0 && access(ELISA_DEV, F_OK) != 0 && access("/sys/module/elisa", F_OK) != 0,
	      "unload", ": delete_module %d (%s)", r, strerror(-r));

	r = load();
	if (r == 0) {
		fd = elisa_open();
		r = __elisa_ioctl(fd, ELISA_GET_VERSION, &v) ? -errno : 0;
		close(fd);
	}
	CHECK(r == 0 && v.api_version == ELISA_API_VERSION, "reload", ": %d (%s), api %u", r,
	      strerror(-r), v.api_version);

	{
		char want[64] = "ftrace", got[64] = "", params[512], *p;
		int bogus, loaded_after;

		boot_module_params("elisa.", params, sizeof(params));
		p = strstr(params, "entry_hook=");
		if (p)
			sscanf(p + strlen("entry_hook="), "%63s", want);
		r = unload();
		bogus = load_with("entry_hook=bogus");
		loaded_after = access("/sys/module/elisa", F_OK) == 0;
		if (!loaded_after)
			r = load();
		if (!elisa_module_param("entry_hook", got, sizeof(got)))
			got[0] = 0;
		CHECK(r == 0 && bogus == -EINVAL && !loaded_after && !strcmp(got, want),
		      "entry_hook_param", ": entry_hook=bogus %d (want %d)%s, reload %d, reads \"%s\" (want \"%s\")",
		      bogus, -EINVAL, loaded_after ? ", loaded" : "", r, got, want);
	}

	{
		struct kvm_vm *vm = vm_create_barebones();
		struct elisa_attach_vm av = { .vm_fd = vm->fd };
		int early, late = -1, evm, i;
		bool ftrace = elisa_entry_hook_is_ftrace();

		fd = elisa_open();
		evm = __elisa_ioctl(fd, ELISA_ATTACH_VM, &av);
		close(fd);
		if (evm >= 0)
			close(evm);
		kvm_vm_free(vm);
		early = unload();
		for (i = 0; early != 0 && i < 50 && (late = unload()) != 0; i++)
			usleep(100000);
		r = load();
		v.api_version = 0;
		if (r == 0) {
			fd = elisa_open();
			r = __elisa_ioctl(fd, ELISA_GET_VERSION, &v) ? -errno : 0;
			close(fd);
		}
		CHECK(evm >= 0 && (ftrace ? early == -EWOULDBLOCK && late == 0 : early == 0) &&
			      r == 0 && v.api_version == ELISA_API_VERSION,
		      "unload_after_use",
		      ": entry_hook=%s; attach %d; delete_module right after the detach %d (want %d), "
		      "then %d after %d ms; reload %d, api %u",
		      ftrace ? "ftrace" : "tracepoint", evm, early, ftrace ? -EWOULDBLOCK : 0, late,
		      i * 100, r, v.api_version);
	}
	ksft_finished();
}
