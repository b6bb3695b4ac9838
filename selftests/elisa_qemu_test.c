// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_qemu_test: real QEMU running a real Linux guest that calls a service.
 *
 * The guest is the test kernel itself (KASLR, PTI on its command line) with an initramfs of
 * busybox, elisa_guest.ko and elisa-call; its /init runs the commands this test writes to
 * its serial port (lib/elisa_qemu.h). The service is tools/services/counter.S: it adds its
 * argument to a counter in a shared region and returns the new value.
 *
 * Part 1, Debian's unmodified QEMU served by elisactl (the path of any VMM):
 *   debian_boot        QEMU boots the guest; its kernel runs with PTI, and KASLR moved its
 *                      image
 *   serve_grants       "elisactl serve --pid" attaches QEMU's VM and grants the counter,
 *                      whose region is a memfd of this process, at G
 *   guest_discovers    elisa_guest.ko loads and finds the gate from its command line
 *                      (elisa_guest.gate=G:511:counter)
 *   status_shows       "elisactl status --json" names QEMU's process, its vCPU, gate 511 at
 *                      G and the region
 *   guest_calls        elisa-call adds 5 and gets 5; the memfd holds 5
 *   guest_call_needs_write  the same call through a read-only open of /dev/elisa-guest
 *                      fails with EBADF (the listing works so); the memfd still holds 5
 *   guest_zero_exits   10000 calls of +1 take no VM exit: QEMU's VM exits about as often as
 *                      for one call (the margin, 1 per 100 calls, is the guest's own timer
 *                      ticks during the longer run: about 60 in Bochs; the exits that
 *                      landed inside a call, elisa's view_exits, are printed)
 *   serve_ends         SIGTERM ends elisactl; no VM attached; the pages are released
 *   guest_enodev       the guest's next call fails with ENODEV, and the guest lives on
 * Part 2, the patched QEMU (tools/qemu/) with -object elisa-region, elisa-service and
 * elisa-grant, the region a memory-backend-file under /dev/shm:
 *   patched_boot       QEMU boots with the three objects; one VM attached
 *   fwcfg_discovers    elisa_guest.ko finds the gate in fw_cfg (no command-line option)
 *   patched_calls      calls add to the file's counter, with no VM exit
 *   guest_driver_calls another guest driver, elisa_guest_example.ko, makes 100 calls
 *                      through elisa_guest.ko's exported functions
 *   qmp_del_grant      QMP object-del of the grant: no VM attached; the guest's call fails
 *                      with ENODEV
 *   qmp_del_all        object-del of the service and the region: elisa holds no page more
 *                      than before QEMU started
 *   qmp_add_again      object-add of the region, service and grant again: the guest, which
 *                      kept its gate (same G, index 511), calls again
 *   qmp_errors         object-add of a second grant, of a service with a missing code
 *                      file or with /dev/zero as its code, and of a grant with user=on at
 *                      the default (kernel-half) G, fail with an error and change nothing
 * Paths (the test image's; environment variables for a real host): QEMU_DEBIAN
 * (/usr/bin/qemu-system-x86_64), QEMU_ELISA (/qemu-elisa/bin/qemu-system-x86_64),
 * QEMU_ELISA_DATA (its firmware, /qemu-elisa/share/qemu), ELISA_GUEST_DIR (/guest),
 * ELISA_SERVICES (/services), ELISACTL (/bin/elisactl). Without the patched QEMU, part 2
 * fails: the test image always has it.
 */
#include <sys/mman.h>
#include "elisa_qemu.h"

#define G 0xffff800000002000UL
#define CODE_GVA 0xffff800010000000UL
#define COUNTER_GVA 0xffff800040000000UL	/* tools/services/counter.S */
#define CALLS 10000
/* insmod does not read the kernel command line (modprobe would): its elisa_guest.* options */
#define LOAD                                                                              \
	"insmod /guest/elisa_guest.ko "                                                   \
	"$(tr ' ' '\\n' < /proc/cmdline | sed -n 's/^elisa_guest\\.//p')"
#define BOOT_S 600
#define CMD_S 300

static char guest_kernel[256], guest_initrd[256], counter_bin[256], bios_dir[256];
static char out[8192];

/* The arguments every QEMU of this test gets; @append is the guest's command line. */
static int common_args(const char **a, const char *append)
{
	int n = 0;

	a[n++] = "-accel";
	a[n++] = "kvm";
	a[n++] = "-M";
	a[n++] = "pc";
	a[n++] = "-cpu";
	a[n++] = "host";
	a[n++] = "-m";
	a[n++] = "96";
	a[n++] = "-smp";
	a[n++] = "1";
	a[n++] = "-nodefaults";
	a[n++] = "-display";
	a[n++] = "none";
	a[n++] = "-serial";
	a[n++] = "stdio";
	a[n++] = "-no-reboot";
	a[n++] = "-kernel";
	a[n++] = guest_kernel;
	a[n++] = "-initrd";
	a[n++] = guest_initrd;
	a[n++] = "-append";
	a[n++] = append;
	return n;
}

/*
 * Exits of @q's VM for CALLS calls of +1 minus those for one call, each measured around a
 * whole elisa-call run (the command, its output and the prompt's I/O are the same).
 */
static long extra_exits(struct qemu *q, long *value)
{
	long e0, e1, e2, st;

	e0 = qemu_exits(q);
	st = guest_run(q, out, sizeof(out), CMD_S, "elisa-call --repeat 1 counter 1");
	e1 = qemu_exits(q);
	if (st || e0 < 0)
		return -1000000;
	st = guest_run(q, out, sizeof(out), CMD_S, "elisa-call --repeat %d counter 1", CALLS);
	e2 = qemu_exits(q);
	if (st)
		return -1000000;
	*value = last_number(out);
	ksft_print_msg("VM exits: %ld for 1 call, %ld for %d calls\n", e1 - e0, e2 - e1, CALLS);
	return (e2 - e1) - (e1 - e0);
}

/* The exits inside a gate or sub view of every attached vCPU (elisa's debugfs). */
static long view_exits(void)
{
	return elisa_vcpus_sum("view_exits");
}

static bool guest_enodev(struct qemu *q)
{
	int st = guest_run(q, out, sizeof(out), CMD_S, "elisa-call counter 1");

	return st == 1 && strstr(out, "No such device");
}

/* "elisactl status --json" names QEMU, its vCPU, gate 511 at G and the counter region. */
static void status_check(const char *elisactl, pid_t qemu)
{
	char cmd[300], want[64], buf[4096];
	size_t n = 0;
	FILE *f;
	int st;

	snprintf(cmd, sizeof(cmd), "%s status --json 2>&1; %s status 2>&1", elisactl, elisactl);
	f = popen(cmd, "r");
	TEST_ASSERT(f, "popen");
	while (n + 1 < sizeof(buf) && fgets(buf + n, sizeof(buf) - n, f))
		n += strlen(buf + n);
	st = pclose(f);
	ksft_print_msg("elisactl status:\n%s", buf);
	snprintf(want, sizeof(want), "\"pid\":%d,\"process\":\"qemu-system-x86\"", qemu);
	CHECK(st == 0 && strstr(buf, want) && strstr(buf, "\"gate_index\":511,\"g\":"
	      "\"0xffff800000002000\"") && strstr(buf, "\"gva\":\"0xffff800040000000\","
	      "\"pages\":1,\"access\":\"rw\"") && strstr(buf, "\"vcpus\":[{\"index\":0"),
	      "status_shows", ": exit %#x", st);
}

static void part_debian(const char *elisactl)
{
	const char *qemu = env_or("QEMU_DEBIAN", "/usr/bin/qemu-system-x86_64");
	char append[512], region[128], fdpath[64], line[512];
	const char *args[64], *sargs[32];
	long held0, pinned0, held, pinned, v = -1, extra, vx;
	volatile u64 *counter;
	int gates, vms, memfd, n, st, p[2];
	struct qemu q;
	pid_t serve;
	FILE *sf;
	bool ok;

	TEST_ASSERT(elisa_pages(&held0, &pinned0), "elisa's debugfs is unreadable");
	snprintf(append, sizeof(append),
		 "console=ttyS0 pti=on quiet elisa_guest.gate=%#lx:511:counter", G);
	n = common_args(args, append);
	args[n] = NULL;
	qemu_start(&q, "debian", qemu, args);
	ok = qemu_wait(&q, "GUEST-READY", BOOT_S);
	if (ok) {
		/* PTI on, and the kernel image not at its link address (KASLR) */
		st = guest_run(&q, out, sizeof(out), CMD_S,
			       "dmesg | grep 'page tables isolation: enabled' && "
			       "grep -w _text /proc/kallsyms && "
			       "! grep -q '^ffffffff81000000 . _text$' /proc/kallsyms");
		ok = st == 0;
	}
	CHECK(ok, "debian_boot", ": %s", qemu);
	if (!ok) {
		static const char *const rest[] = { "serve_grants", "guest_discovers",
			"status_shows", "guest_calls", "guest_zero_exits", "serve_ends", "guest_enodev" };
		unsigned int i;

		qemu_stop(&q);
		for (i = 0; i < ARRAY_SIZE(rest); i++)
			ksft_test_result_fail("%s: no guest\n", rest[i]);
		return;
	}

	/* The counter: a sealed memfd page of this process, named through /proc. */
	memfd = memfd_create("elisa-counter", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	TEST_ASSERT(memfd >= 0 && ftruncate(memfd, 4096) == 0 &&
		    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "counter memfd");
	counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	TEST_ASSERT(counter != MAP_FAILED, "mmap counter");
	snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%d", getpid(), memfd);
	snprintf(region, sizeof(region), "%s:0:4096@%#lx:rw", fdpath, COUNTER_GVA);
	n = 0;
	sargs[n++] = "elisactl";
	sargs[n++] = "serve";
	sargs[n++] = "--pid";
	snprintf(line, sizeof(line), "%d", q.pid);
	sargs[n++] = line;
	sargs[n++] = "--code";
	sargs[n++] = counter_bin;
	sargs[n++] = "--code-gva";
	sargs[n++] = "0xffff800010000000";
	sargs[n++] = "--region";
	sargs[n++] = region;
	sargs[n++] = "--g";
	sargs[n++] = "0xffff800000002000";
	sargs[n++] = "--name";
	sargs[n++] = "counter";
	sargs[n] = NULL;
	TEST_ASSERT(pipe2(p, O_CLOEXEC) == 0, "pipe");
	serve = fork();
	TEST_ASSERT(serve >= 0, "fork");
	if (serve == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(elisactl, (char *const *)sargs);
		_exit(127);
	}
	close(p[1]);
	sf = fdopen(p[0], "r");
	ok = false;
	while (sf && fgets(line, sizeof(line), sf)) {
		ksft_print_msg("elisactl: %s", line);
		if (strstr(line, "guest parameter: elisa_guest.gate="
				 "0xffff800000002000:511:counter")) {
			ok = true;
			break;
		}
	}
	vms = elisa_debugfs_vms(&gates, &held);
	CHECK(ok && vms == 1, "serve_grants", ": debugfs: %d VM(s) attached", vms);

	st = guest_run(&q, out, sizeof(out), CMD_S, LOAD " && "
			"elisa-call --list");
	CHECK(st == 0 && strstr(out, "counter"), "guest_discovers", ": status %d", st);

	status_check(elisactl, q.pid);

	st = guest_run(&q, out, sizeof(out), CMD_S, "elisa-call counter 5");
	v = last_number(out);
	CHECK(st == 0 && v == 5 && *counter == 5, "guest_calls",
	      ": status %d, returned %ld, counter %lu", st, v, (unsigned long)*counter);

	st = guest_run(&q, out, sizeof(out), CMD_S, "elisa-call --read-only counter 5 2>&1");
	CHECK(st != 0 && strstr(out, "Bad file descriptor") && *counter == 5,
	      "guest_call_needs_write", ": status %d, counter %lu", st,
	      (unsigned long)*counter);

	vx = view_exits();
	extra = extra_exits(&q, &v);
	vx = view_exits() - vx;
	CHECK(extra >= 0 && extra <= CALLS / 100 && v == 5 + 1 + CALLS &&
	      *counter == 5 + 1 + CALLS, "guest_zero_exits",
	      ": %ld more VM exits for %d calls than for 1, %ld in a view; last value %ld, "
	      "counter %lu", extra, CALLS, vx, v, (unsigned long)*counter);

	kill(serve, SIGTERM);
	while (fgets(line, sizeof(line), sf))
		ksft_print_msg("elisactl: %s", line);
	fclose(sf);
	waitpid(serve, &st, 0);
	vms = elisa_debugfs_vms(&gates, &held);
	ok = elisa_pages(&held, &pinned);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && vms == 0 && ok && held == held0 &&
	      pinned == pinned0, "serve_ends",
	      ": exit %#x, %d VM(s) attached, pages held %ld pinned %ld (before: %ld, %ld)", st,
	      vms, held, pinned, held0, pinned0);

	CHECK(guest_enodev(&q) && guest_run(&q, out, sizeof(out), CMD_S, "echo alive") == 0,
	      "guest_enodev", "");
	qemu_stop(&q);
	munmap((void *)counter, 4096);
	close(memfd);
}

static void part_patched(void)
{
	const char *qemu = env_or("QEMU_ELISA", "/qemu-elisa/bin/qemu-system-x86_64");
	static const char *const names[] = {
		"patched_boot", "fwcfg_discovers", "patched_calls", "guest_driver_calls",
		"qmp_del_grant", "qmp_del_all",
		"qmp_add_again", "qmp_errors",
	};
	const char *shm = "/dev/shm/elisa-qemu-counter", *sock = "/tmp/elisa-qemu-qmp.sock";
	char obj_mem[256], obj_region[128], obj_service[512], obj_grant[128], qmp[256];
	char reply[4096], want[64];
	const char *args[64];
	long held0, pinned0, held, pinned, v, extra, vx;
	volatile u64 *counter;
	int n, st, fd, qfd, vms, gates;
	unsigned int i;
	struct qemu q;
	bool ok;

	if (access(qemu, X_OK)) {
		for (i = 0; i < ARRAY_SIZE(names); i++)
			ksft_test_result_fail("%s: no patched QEMU at %s (make qemu)\n", names[i],
					      qemu);
		return;
	}
	TEST_ASSERT(elisa_pages(&held0, &pinned0), "elisa's debugfs is unreadable");
	unlink(shm);
	unlink(sock);
	fd = open(shm, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	TEST_ASSERT(fd >= 0 && ftruncate(fd, 2 << 20) == 0, "%s", shm);
	counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(counter != MAP_FAILED, "mmap %s", shm);
	close(fd);

	snprintf(obj_mem, sizeof(obj_mem),
		 "memory-backend-file,id=m0,mem-path=%s,size=2M,share=on", shm);
	snprintf(obj_region, sizeof(obj_region), "elisa-region,id=r0,memdev=m0");
	snprintf(obj_service, sizeof(obj_service),
		 "elisa-service,id=counter,code=%s,code-gva=%#lx,regions.0.region=r0,"
		 "regions.0.gva=%#lx,regions.0.access=rw", counter_bin, CODE_GVA, COUNTER_GVA);
	snprintf(obj_grant, sizeof(obj_grant), "elisa-grant,id=g0,services.0=counter,gva=%#lx",
		 G);
	snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", sock);
	n = common_args(args, "console=ttyS0 pti=on quiet");
	args[n++] = "-L";
	args[n++] = bios_dir;
	args[n++] = "-object";
	args[n++] = obj_mem;
	args[n++] = "-object";
	args[n++] = obj_region;
	args[n++] = "-object";
	args[n++] = obj_service;
	args[n++] = "-object";
	args[n++] = obj_grant;
	args[n++] = "-qmp";
	args[n++] = qmp;
	args[n] = NULL;
	qemu_start(&q, "patched", qemu, args);
	ok = qemu_wait(&q, "GUEST-READY", BOOT_S);
	vms = elisa_debugfs_vms(&gates, &held);
	CHECK(ok && vms == 1, "patched_boot", ": %d VM(s) attached", vms);
	qfd = ok ? qmp_open(sock, 60) : -1;
	if (!ok || qfd < 0) {
		for (i = 1; i < ARRAY_SIZE(names); i++)
			ksft_test_result_fail("%s: no guest or no QMP\n", names[i]);
		qemu_stop(&q);
		return;
	}

	st = guest_run(&q, out, sizeof(out), CMD_S, LOAD " && "
			"elisa-call --list");
	CHECK(st == 0 && strstr(out, "counter"), "fwcfg_discovers", ": status %d", st);

	st = guest_run(&q, out, sizeof(out), CMD_S, "elisa-call counter 7");
	v = last_number(out);
	vx = view_exits();
	extra = st ? -1 : extra_exits(&q, &v);
	vx = view_exits() - vx;
	CHECK(st == 0 && extra >= 0 && extra <= CALLS / 100 && v == 7 + 1 + CALLS &&
	      *counter == 7 + 1 + CALLS, "patched_calls",
	      ": %ld more VM exits for %d calls than for 1, %ld in a view; last value %ld, "
	      "counter %lu", extra, CALLS, vx, v, (unsigned long)*counter);

	/* another guest driver calls through elisa_guest.ko's exported functions */
	st = guest_run(&q, out, sizeof(out), CMD_S,
		       "insmod /guest/elisa_guest_example.ko calls=100 arg=1 && "
		       "dmesg | grep elisa_guest_example: | tail -1 && rmmod elisa_guest_example");
	snprintf(want, sizeof(want), "counter(1) x 100: %d", 7 + 1 + CALLS + 100);
	CHECK(st == 0 && strstr(out, want) && *counter == 7 + 1 + CALLS + 100,
	      "guest_driver_calls", ": status %d, counter %lu", st, (unsigned long)*counter);

	st = qmp_cmd(qfd, reply, sizeof(reply),
		     "{\"execute\":\"object-del\",\"arguments\":{\"id\":\"g0\"}}");
	vms = elisa_debugfs_vms(&gates, &held);
	CHECK(st == 0 && vms == 0 && guest_enodev(&q), "qmp_del_grant", ": %d VM(s) attached",
	      vms);

	st = qmp_cmd(qfd, reply, sizeof(reply),
		     "{\"execute\":\"object-del\",\"arguments\":{\"id\":\"counter\"}}");
	st |= qmp_cmd(qfd, reply, sizeof(reply),
		      "{\"execute\":\"object-del\",\"arguments\":{\"id\":\"r0\"}}");
	ok = elisa_pages(&held, &pinned);
	CHECK(st == 0 && ok && held == held0 && pinned == pinned0, "qmp_del_all",
	      ": pages held %ld pinned %ld (before QEMU: %ld, %ld)", held, pinned, held0,
	      pinned0);

	st = qmp_cmd(qfd, reply, sizeof(reply),
		     "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"elisa-region\","
		     "\"id\":\"r0\",\"memdev\":\"m0\"}}");
	st |= qmp_cmd(qfd, reply, sizeof(reply),
		      "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"elisa-service\","
		      "\"id\":\"counter\",\"code\":\"%s\",\"code-gva\":%lu,\"regions\":"
		      "[{\"region\":\"r0\",\"gva\":%lu,\"access\":\"rw\"}]}}", counter_bin,
		      CODE_GVA, COUNTER_GVA);
	st |= qmp_cmd(qfd, reply, sizeof(reply),
		      "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"elisa-grant\","
		      "\"id\":\"g0\",\"services\":[\"counter\"],\"gva\":%lu}}", G);
	v = -1;
	if (!st && !guest_run(&q, out, sizeof(out), CMD_S, "elisa-call counter 1"))
		v = last_number(out);
	CHECK(st == 0 && v == 7 + 1 + CALLS + 100 + 1 && *counter == (u64)v, "qmp_add_again",
	      ": returned %ld, counter %lu", v, (unsigned long)*counter);

	st = qmp_cmd(qfd, reply, sizeof(reply),
		     "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"elisa-grant\","
		     "\"id\":\"g1\",\"services\":[\"counter\"]}}");
	ok = st == -1 && strstr(reply, "\"error\"");
	st = qmp_cmd(qfd, reply, sizeof(reply),
		     "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"elisa-service\","
		     "\"id\":\"s9\",\"code\":\"/nonexistent\",\"code-gva\":%lu}}", CODE_GVA);
	ok = ok && st == -1 && strstr(reply, "nonexistent");
	/* A code file that is not a regular file: refused, never read (it has no end). */
	st = qmp_cmd(qfd, reply, sizeof(reply),
		     "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"elisa-service\","
		     "\"id\":\"s10\",\"code\":\"/dev/zero\",\"code-gva\":%lu}}", CODE_GVA);
	ok = ok && st == -1 && strstr(reply, "not a regular file");
	/* user=on with a G in the kernel half, which guest user space cannot map. */
	st = qmp_cmd(qfd, reply, sizeof(reply),
		     "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"elisa-grant\","
		     "\"id\":\"g2\",\"services\":[\"counter\"],\"user\":true}}");
	ok = ok && st == -1 && strstr(reply, "lower half");
	v = -1;
	if (!guest_run(&q, out, sizeof(out), CMD_S, "elisa-call counter 0"))
		v = last_number(out);
	vms = elisa_debugfs_vms(&gates, &held);
	CHECK(ok && vms == 1 && v == (long)*counter, "qmp_errors",
	      ": %d VM(s) attached, the guest reads %ld", vms, v);

	close(qfd);
	qemu_stop(&q);
	munmap((void *)counter, 4096);
	unlink(shm);
	ok = elisa_pages(&held, &pinned);
	ksft_print_msg("after QEMU: pages held %ld pinned %ld (before: %ld, %ld)\n", held,
		       pinned, held0, pinned0);
}

int main(void)
{
	const char *elisactl = env_or("ELISACTL", "/bin/elisactl");
	const char *gdir = env_or("ELISA_GUEST_DIR", "/guest");

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(17);
	snprintf(guest_kernel, sizeof(guest_kernel), "%s/bzImage", gdir);
	snprintf(guest_initrd, sizeof(guest_initrd), "%s/initrd.cpio", gdir);
	snprintf(counter_bin, sizeof(counter_bin), "%s/counter.bin",
		 env_or("ELISA_SERVICES", "/services"));
	snprintf(bios_dir, sizeof(bios_dir), "%s",
		 env_or("QEMU_ELISA_DATA", "/qemu-elisa/share/qemu"));
	TEST_ASSERT(access(guest_kernel, R_OK) == 0 && access(guest_initrd, R_OK) == 0,
		    "no guest kernel or initramfs in %s", gdir);
	TEST_ASSERT(access(counter_bin, R_OK) == 0, "no %s", counter_bin);
	TEST_ASSERT(access(elisactl, X_OK) == 0, "%s is not executable (set ELISACTL)", elisactl);
	signal(SIGPIPE, SIG_IGN);
	part_debian(elisactl);
	part_patched();
	ksft_finished();
}
