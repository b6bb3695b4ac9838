// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_qemu_demo: the demo of make run. Two QEMUs (the patched one, tools/qemu/) run Linux
 * guests that share one counter through one service, with no VM exit per call.
 *
 * Both QEMUs get the same objects: a memory backend over one file in /dev/shm (the region,
 * which is never guest RAM), an elisa-region over it, the counter service
 * (tools/services/counter.S) and its grant. Each guest loads elisa_guest.ko, which finds
 * the gate in fw_cfg, and calls through elisa-call. The demo prints lines starting with
 * "# DEMO " (tools/demo.sh shows them) and checks each step as a KTAP result:
 *   guests_boot        both guests are up, each VM attached
 *   guests_share       guest A adds 1 ten times and sees 10; guest B adds 100 and sees
 *                      110; guest A reads 110; the host's file holds 110
 *   zero_exits         CALLS calls of +1 in each guest take no VM exit (as many exits as
 *                      one call, a margin of 1 per 1000 calls)
 *   region_not_guest_ram  QEMU's flat memory view of each guest (QMP "info mtree -f")
 *                      does not contain the region's backend: the guests' own views
 *                      cannot reach it
 * Paths as in elisa_qemu_test.
 */
#include <sys/mman.h>
#include "elisa_qemu.h"

#define G 0xffff800000002000UL
#define CODE_GVA 0xffff800010000000UL
#define COUNTER_GVA 0xffff800040000000UL
#define CALLS 10000
/* insmod does not read the kernel command line (modprobe would): its elisa_guest.* options */
#define LOAD                                                                              \
	"insmod /guest/elisa_guest.ko "                                                   \
	"$(tr ' ' '\\n' < /proc/cmdline | sed -n 's/^elisa_guest\\.//p')"
#define BOOT_S 600
#define CMD_S 300
#define SHM "/dev/shm/elisa-demo-counter"

struct guest {
	struct qemu q;
	char name[2];
	char sock[64], mem[160], svc[512], grant[96], qmp[96];
	int qmp_fd;
};

static char out[8192], kernel[256], initrd[256], counter_bin[256], data_dir[256];

static void start(struct guest *g, const char *qemu, const char *name)
{
	const char *a[64];
	int n = 0;

	snprintf(g->name, sizeof(g->name), "%s", name);
	snprintf(g->sock, sizeof(g->sock), "/tmp/elisa-demo-%s.qmp", name);
	snprintf(g->qmp, sizeof(g->qmp), "unix:%s,server=on,wait=off", g->sock);
	snprintf(g->mem, sizeof(g->mem),
		 "memory-backend-file,id=demo-shm,mem-path=%s,size=2M,share=on", SHM);
	snprintf(g->svc, sizeof(g->svc),
		 "elisa-service,id=counter,code=%s,code-gva=%#lx,regions.0.region=r0,"
		 "regions.0.gva=%#lx,regions.0.access=rw", counter_bin, CODE_GVA, COUNTER_GVA);
	snprintf(g->grant, sizeof(g->grant), "elisa-grant,id=gates,services.0=counter,gva=%#lx",
		 G);
	unlink(g->sock);
	a[n++] = "-accel"; a[n++] = "kvm"; a[n++] = "-M"; a[n++] = "pc";
	a[n++] = "-cpu"; a[n++] = "host"; a[n++] = "-m"; a[n++] = "96";
	a[n++] = "-nodefaults"; a[n++] = "-display"; a[n++] = "none";
	a[n++] = "-serial"; a[n++] = "stdio"; a[n++] = "-no-reboot";
	a[n++] = "-L"; a[n++] = data_dir;
	a[n++] = "-kernel"; a[n++] = kernel; a[n++] = "-initrd"; a[n++] = initrd;
	a[n++] = "-append"; a[n++] = "console=ttyS0 pti=on quiet";
	a[n++] = "-object"; a[n++] = g->mem;
	a[n++] = "-object"; a[n++] = "elisa-region,id=r0,memdev=demo-shm";
	a[n++] = "-object"; a[n++] = g->svc;
	a[n++] = "-object"; a[n++] = g->grant;
	a[n++] = "-qmp"; a[n++] = g->qmp;
	a[n] = NULL;
	qemu_start(&g->q, name, qemu, a);
}

static long call(struct guest *g, int repeat, long add)
{
	if (guest_run(&g->q, out, sizeof(out), CMD_S, "elisa-call --repeat %d counter %ld",
		      repeat, add))
		return -1;
	return last_number(out);
}

/* VM exits of CALLS calls minus those of one call (-1000000: a call failed). */
static long extra_exits(struct guest *g, long *per1, long *perN)
{
	long e0 = qemu_exits(&g->q), e1, e2;

	if (call(g, 1, 0) < 0)
		return -1000000;
	e1 = qemu_exits(&g->q);
	if (call(g, CALLS, 1) < 0)
		return -1000000;
	e2 = qemu_exits(&g->q);
	*per1 = e1 - e0;
	*perN = e2 - e1;
	return *perN - *per1;
}

int main(void)
{
	const char *qemu = env_or("QEMU_ELISA", "/qemu-elisa/bin/qemu-system-x86_64");
	const char *gdir = env_or("ELISA_GUEST_DIR", "/guest");
	struct guest ga, gb, *gs[2] = { &ga, &gb };
	long a10, b110, a_read, xa, xb, a1, aN, b1, bN, held, before = 0;
	volatile u64 *counter;
	int i, fd, vms, gates;
	static char reply[65536];
	bool ok;

	ksft_print_header();
	ksft_set_plan(4);
	snprintf(kernel, sizeof(kernel), "%s/bzImage", gdir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.cpio", gdir);
	snprintf(counter_bin, sizeof(counter_bin), "%s/counter.bin",
		 env_or("ELISA_SERVICES", "/services"));
	snprintf(data_dir, sizeof(data_dir), "%s",
		 env_or("QEMU_ELISA_DATA", "/qemu-elisa/share/qemu"));
	TEST_ASSERT(access(qemu, X_OK) == 0, "no patched QEMU at %s (make qemu)", qemu);
	signal(SIGPIPE, SIG_IGN);

	unlink(SHM);
	fd = open(SHM, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	TEST_ASSERT(fd >= 0 && ftruncate(fd, 2 << 20) == 0, "%s", SHM);
	counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(counter != MAP_FAILED, "mmap");
	close(fd);

	ksft_print_msg("DEMO two QEMUs, guests A and B, share one counter (%s) through one "
		       "service\n", SHM);
	start(&ga, qemu, "A");
	start(&gb, qemu, "B");
	ok = true;
	for (i = 0; i < 2; i++) {
		ok = ok && qemu_wait(&gs[i]->q, "GUEST-READY", BOOT_S);
		ok = ok && guest_run(&gs[i]->q, out, sizeof(out), CMD_S,
				     LOAD " && elisa-call --list") == 0;
		if (ok)
			ksft_print_msg("DEMO guest %s: up, elisa_guest.ko found: %s", gs[i]->name,
				       out);
	}
	vms = elisa_debugfs_vms(&gates, &held);
	CHECK(ok && vms == 2, "guests_boot", ": %d VM(s) attached", vms);

	a10 = call(&ga, 10, 1);
	b110 = call(&gb, 1, 100);
	a_read = call(&ga, 1, 0);
	ksft_print_msg("DEMO guest A: added 1 ten times, the service returned %ld\n", a10);
	ksft_print_msg("DEMO guest B: added 100, the service returned %ld\n", b110);
	ksft_print_msg("DEMO guest A: reads %ld; the host's file holds %lu\n", a_read,
		       (unsigned long)*counter);
	CHECK(a10 == 10 && b110 == 110 && a_read == 110 && *counter == 110, "guests_share", "");

	before = (long)*counter;
	xa = extra_exits(&ga, &a1, &aN);
	xb = extra_exits(&gb, &b1, &bN);
	ksft_print_msg("DEMO VM exits of a whole elisa-call run (start, calls, output): guest A "
		       "%ld with 1 call, %ld with %d; guest B %ld with 1 call, %ld with %d\n", a1,
		       aN, CALLS, b1, bN, CALLS);
	ksft_print_msg("DEMO so each call costs %.4f (A) and %.4f (B) VM exits: the rest are the "
		       "guests' timer ticks\n", (double)xa / CALLS, (double)xb / CALLS);
	ksft_print_msg("DEMO the counter: %ld before, %lu after %d calls in each guest\n", before,
		       (unsigned long)*counter, CALLS);
	CHECK(xa >= 0 && xa <= CALLS / 100 && xb >= 0 && xb <= CALLS / 100 &&
	      (long)*counter == before + 2 * CALLS, "zero_exits", "");

	ok = true;
	for (i = 0; i < 2; i++) {
		gs[i]->qmp_fd = qmp_open(gs[i]->sock, 60);
		ok = ok && gs[i]->qmp_fd >= 0 &&
		     qmp_cmd(gs[i]->qmp_fd, reply, sizeof(reply),
			     "{\"execute\":\"human-monitor-command\",\"arguments\":"
			     "{\"command-line\":\"info mtree -f\"}}") == 0 &&
		     strstr(reply, "pc.ram") && !strstr(reply, "demo-shm");
		ksft_print_msg("DEMO guest %s: QEMU's flat view of guest memory %s the region's "
			       "backend\n", gs[i]->name, ok ? "does not contain" : "CONTAINS");
		if (gs[i]->qmp_fd >= 0)
			close(gs[i]->qmp_fd);
	}
	CHECK(ok, "region_not_guest_ram", "");

	for (i = 0; i < 2; i++)
		qemu_stop(&gs[i]->q);
	munmap((void *)counter, 4096);
	unlink(SHM);
	ksft_finished();
}
