// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_qemu_net_test (a draft, not in selftests/order yet): two Linux guests under the
 * patched QEMU on one elisa switch, as Documentation/networking.rst ("Two QEMU guests")
 * sets them up: each sees its port region as BAR 2 of an ivshmem-plain device, driven by
 * elisa_net.ko (guest/linux/elisa_net.c), and calls its own switch service through
 * elisa_guest.ko. The guests talk IP over elisa0.
 *
 *   net_files      "elisactl switch init" writes port0/1 and config0/1 under /dev/shm
 *   net_boot       both QEMUs boot with the ivshmem device and the switch; 2 VMs attached
 *   net_up         elisa_guest.ko and elisa_net.ko load in both; elisa0 has port p's MAC
 *                  (02:00:00:00:00:<p+1>), 10.0.0.<p+1>/24, up
 *   net_ping       10.0.0.1 pings 10.0.0.2, and back
 *   net_tcp        256 KiB of random bytes over TCP with busybox nc, same md5 at the end
 *   net_udp        data over UDP with busybox nc -u (SKIP when the guest's busybox nc has
 *                  no -u: Debian's is built without NC_110_COMPAT)
 *   net_udp_probe  UDP datagrams cross the switch: tftp to a port where nothing listens
 *                  raises the receiver's Udp NoPorts counter
 *   net_exits      VM exits per frame of a TCP transfer: both VMs' exits during it minus
 *                  those of an idle run as long (the poll timer's and the console's), per
 *                  frame sent by either guest; the bound is a first guess
 *   net_stop       elisa0 down and elisa_net.ko unloaded in both; after the QEMUs end
 *                  elisa holds no page more than before
 *
 * Needs a guest kernel with CONFIG_PCI and CONFIG_INET (and CONFIG_HIGH_RES_TIMERS for
 * elisa_net's 100 us poll), and elisa_net.ko and switch.bin in the test image
 * (tools/testvm/qemu-image.sh). Paths as elisa_qemu_test's: QEMU_ELISA, QEMU_ELISA_DATA,
 * ELISA_GUEST_DIR, ELISA_SERVICES, ELISACTL.
 */
#include <linux/elisa_net.h>
#include "elisa_qemu.h"

#define PORTS 2
#define DIR "/dev/shm/elisa-qemu-net"
#define CODE_GVA 0xffff800020000000UL
/* insmod does not read the kernel command line: elisa_guest.* options, if any */
#define LOAD                                                                              \
	"insmod /guest/elisa_guest.ko "                                                   \
	"$(tr ' ' '\\n' < /proc/cmdline | sed -n 's/^elisa_guest\\.//p')"
#define BOOT_S 600
#define CMD_S 300
#define TCP_KIB 256
/* A first guess, to be set from measurements: the design has no exit per frame. */
#define MAX_EXITS_PER_FRAME 0.5

static char guest_kernel[256], guest_initrd[256], switch_bin[256], bios_dir[256];
static char out[8192];

/* The QEMU objects of port @p: static strings, one set per port. */
struct port_args {
	char nic[160], cfg[160], rcfg[64], mem[PORTS][160], region[PORTS][96], service[768];
	const char *args[64];
};
static struct port_args pa[PORTS];

static int common_args(const char **a)
{
	static const char *const common[] = {
		"-accel", "kvm", "-M", "pc", "-cpu", "host", "-m", "96", "-smp", "1",
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-append", "console=ttyS0 pti=on quiet",
	};
	unsigned int i;
	int n = 0;

	for (i = 0; i < ARRAY_SIZE(common); i++)
		a[n++] = common[i];
	a[n++] = "-kernel";
	a[n++] = guest_kernel;
	a[n++] = "-initrd";
	a[n++] = guest_initrd;
	a[n++] = "-L";
	a[n++] = bios_dir;
	return n;
}

/* networking.rst's command line for port @p. */
static const char *const *port_args(int p)
{
	struct port_args *x = &pa[p];
	const char **a = x->args;
	size_t used;
	int n = common_args(a), q;

	snprintf(x->nic, sizeof(x->nic),
		 "memory-backend-file,id=nic,mem-path=" DIR "/port%d,size=2M,share=on", p);
	snprintf(x->cfg, sizeof(x->cfg),
		 "memory-backend-file,id=cfg,mem-path=" DIR "/config%d,size=4K,share=on", p);
	snprintf(x->rcfg, sizeof(x->rcfg), "elisa-region,id=rcfg,memdev=cfg");
	a[n++] = "-object";
	a[n++] = x->nic;
	a[n++] = "-device";
	a[n++] = "ivshmem-plain,memdev=nic";
	a[n++] = "-object";
	a[n++] = x->cfg;
	a[n++] = "-object";
	a[n++] = x->rcfg;
	used = snprintf(x->service, sizeof(x->service),
			"elisa-service,id=switch,code=%s,code-gva=%#lx,regions.0.region=rcfg,"
			"regions.0.gva=%#llx,regions.0.access=rw", switch_bin, CODE_GVA,
			ELISA_NET_CONFIG_GVA);
	for (q = 0; q < PORTS; q++) {
		snprintf(x->mem[q], sizeof(x->mem[q]),
			 "memory-backend-file,id=sw%d,mem-path=" DIR "/port%d,size=2M,share=on",
			 q, q);
		snprintf(x->region[q], sizeof(x->region[q]),
			 "elisa-region,id=rp%d,memdev=sw%d,size=%#x", q, q, ELISA_NET_PORT_SIZE);
		a[n++] = "-object";
		a[n++] = x->mem[q];
		a[n++] = "-object";
		a[n++] = x->region[q];
		used += snprintf(x->service + used, sizeof(x->service) - used,
				 ",regions.%d.region=rp%d,regions.%d.gva=%#llx,"
				 "regions.%d.access=rw", q + 1, q, q + 1, ELISA_NET_PORT_GVA(q),
				 q + 1);
	}
	TEST_ASSERT(used < sizeof(x->service), "service options too long");
	a[n++] = "-object";
	a[n++] = x->service;
	a[n++] = "-object";
	a[n++] = "elisa-grant,id=grant,services.0=switch";
	a[n] = NULL;
	return a;
}

/* "elisactl switch init --dir DIR --ports PORTS --force": its exit status. */
static int switch_init(const char *elisactl)
{
	char ports[8];
	pid_t pid;
	int st;

	snprintf(ports, sizeof(ports), "%d", PORTS);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		execl(elisactl, "elisactl", "switch", "init", "--dir", DIR, "--ports", ports,
		      "--force", (char *)NULL);
		_exit(127);
	}
	TEST_ASSERT(waitpid(pid, &st, 0) == pid, "waitpid");
	return st;
}

/* The md5 on the last line of @s (32 hex digits), into @md5. */
static bool last_md5(const char *s, char md5[33])
{
	const char *p = s + strlen(s);

	while (p > s && (p[-1] == '\n' || p[-1] == '\r'))
		p--;
	while (p > s && p[-1] != '\n')
		p--;
	return sscanf(p, "%32[0-9a-f]", md5) == 1 && strlen(md5) == 32;
}

/* Frames elisa0 of @q sent (tx_packets), or -1. */
static long tx_frames(struct qemu *q)
{
	if (guest_run(q, out, sizeof(out), CMD_S,
		      "cat /sys/class/net/elisa0/statistics/tx_packets"))
		return -1;
	return last_number(out);
}

static long exits_sum(struct qemu *q)
{
	long a = qemu_exits(&q[0]), b = qemu_exits(&q[1]);

	return a < 0 || b < 0 ? -1 : a + b;
}

/* Starts "nc -l -p @port > @file" in the background of @q; its status goes to @file.rc. */
static int listen_bg(struct qemu *q, int port, const char *file)
{
	return guest_run(q, out, sizeof(out), CMD_S,
			 "rm -f %s %s.rc; (sleep 600 | nc -l -p %d > %s; echo $? > %s.rc) "
			 ">/dev/null 2>&1 &", file, file, port, file, file);
}

/*
 * Waits up to 60 s until the listener of listen_bg() has written @bytes to @file (its
 * stdin never ends, so that busybox nc does not quit before the peer's data is in),
 * stops it, and prints the file's md5.
 */
static int listen_wait(struct qemu *q, const char *file, long bytes)
{
	return guest_run(q, out, sizeof(out), CMD_S,
			 "i=0; while [ \"$(wc -c < %s)\" -lt %ld ] && [ $i -lt 60 ]; do sleep 1; "
			 "i=$((i+1)); done; killall sleep 2>/dev/null; wc -c < %s; md5sum %s",
			 file, bytes, file, file);
}

/* @q sends @file to 10.0.0.2:@port, retrying while the listener starts. */
static int send_tcp(struct qemu *q, int port, const char *file)
{
	return guest_run(q, out, sizeof(out), CMD_S,
			 "for i in 1 2 3 4 5; do nc 10.0.0.2 %d < %s > /dev/null && break; "
			 "sleep 1; [ $i = 5 ] && false; done", port, file);
}

static void fail_rest(const char *const *names, unsigned int from, unsigned int n,
		      const char *why)
{
	unsigned int i;

	for (i = from; i < n; i++)
		ksft_test_result_fail("%s: %s\n", names[i], why);
}

int main(void)
{
	static const char *const names[] = {
		"net_files", "net_boot", "net_up", "net_ping", "net_tcp", "net_udp",
		"net_udp_probe", "net_exits", "net_stop",
	};
	const char *qemu = env_or("QEMU_ELISA", "/qemu-elisa/bin/qemu-system-x86_64");
	const char *elisactl = env_or("ELISACTL", "/bin/elisactl");
	const char *gdir = env_or("ELISA_GUEST_DIR", "/guest");
	long held0, pinned0, held, pinned, e0, e1, e2, e3, f0, f1, noports0, noports1;
	char md5_in[33], md5_out[33], want[64];
	struct qemu q[PORTS];
	double t0, t1;
	int st, p, gates, vms;
	bool ok;

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(ARRAY_SIZE(names));
	snprintf(guest_kernel, sizeof(guest_kernel), "%s/bzImage", gdir);
	snprintf(guest_initrd, sizeof(guest_initrd), "%s/initrd.cpio", gdir);
	snprintf(switch_bin, sizeof(switch_bin), "%s/switch.bin",
		 env_or("ELISA_SERVICES", "/services"));
	snprintf(bios_dir, sizeof(bios_dir), "%s",
		 env_or("QEMU_ELISA_DATA", "/qemu-elisa/share/qemu"));
	TEST_ASSERT(access(guest_kernel, R_OK) == 0 && access(guest_initrd, R_OK) == 0,
		    "no guest kernel or initramfs in %s", gdir);
	TEST_ASSERT(access(switch_bin, R_OK) == 0, "no %s", switch_bin);
	TEST_ASSERT(access(elisactl, X_OK) == 0, "%s is not executable (set ELISACTL)", elisactl);
	TEST_ASSERT(access(qemu, X_OK) == 0, "no patched QEMU at %s (make qemu)", qemu);
	TEST_ASSERT(elisa_pages(&held0, &pinned0), "elisa's debugfs is unreadable");
	signal(SIGPIPE, SIG_IGN);

	st = switch_init(elisactl);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, names[0], ": exit %#x", st);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fail_rest(names, 1, ARRAY_SIZE(names), "no switch files");
		ksft_finished();
	}

	ok = true;
	for (p = 0; p < PORTS; p++) {
		char name[16];

		snprintf(name, sizeof(name), "port%d", p);
		qemu_start(&q[p], strdup(name), qemu, port_args(p));
	}
	for (p = 0; p < PORTS; p++)
		ok = qemu_wait(&q[p], "GUEST-READY", BOOT_S) && ok;
	vms = elisa_debugfs_vms(&gates, &held);
	CHECK(ok && vms == PORTS, names[1], ": %d VM(s) attached", vms);
	if (!ok) {
		fail_rest(names, 2, ARRAY_SIZE(names) - 1, "no guests");
		goto stop;
	}

	ok = true;
	for (p = 0; p < PORTS; p++) {
		st = guest_run(&q[p], out, sizeof(out), CMD_S,
			       LOAD " && insmod /guest/elisa_net.ko && "
			       "ip addr add 10.0.0.%d/24 dev elisa0 && ip link set elisa0 up && "
			       "cat /sys/class/net/elisa0/address", p + 1);
		snprintf(want, sizeof(want), "02:00:00:00:00:%02x", p + 1);
		ok = ok && st == 0 && strstr(out, want);
		guest_run(&q[p], NULL, 0, CMD_S, "dmesg | grep -i elisa | tail -5");
	}
	CHECK(ok, names[2], "");
	if (!ok) {
		fail_rest(names, 3, ARRAY_SIZE(names) - 1, "no elisa0");
		goto unload;
	}

	st = guest_run(&q[0], out, sizeof(out), CMD_S, "ping -c 5 -W 5 10.0.0.2");
	ok = st == 0 && strstr(out, " 0% packet loss");
	st = guest_run(&q[1], out, sizeof(out), CMD_S, "ping -c 5 -W 5 10.0.0.1");
	ok = ok && st == 0 && strstr(out, " 0% packet loss");
	CHECK(ok, names[3], "");

	/* TCP: 10.0.0.1 -> 10.0.0.2:5001 */
	md5_in[0] = md5_out[0] = 0;
	st = guest_run(&q[0], out, sizeof(out), CMD_S,
		       "dd if=/dev/urandom of=/tmp/tcp.in bs=1024 count=%d 2>/dev/null && "
		       "md5sum /tmp/tcp.in", TCP_KIB);
	ok = st == 0 && last_md5(out, md5_in);
	ok = ok && listen_bg(&q[1], 5001, "/tmp/tcp.out") == 0;
	ok = ok && send_tcp(&q[0], 5001, "/tmp/tcp.in") == 0;
	ok = ok && listen_wait(&q[1], "/tmp/tcp.out", TCP_KIB * 1024L) == 0 && last_md5(out, md5_out);
	CHECK(ok && !strcmp(md5_in, md5_out), names[4], ": md5 sent %s, received %s", md5_in,
	      md5_out);

	/* UDP with nc -u, where the guest's busybox has it */
	st = guest_run(&q[1], out, sizeof(out), CMD_S, "nc --help 2>&1 | grep -q -- '-u'");
	if (st) {
		ksft_test_result_skip("%s: the guest's busybox nc has no -u\n", names[5]);
	} else {
		md5_in[0] = md5_out[0] = 0;
		st = guest_run(&q[0], out, sizeof(out), CMD_S,
			       "seq 1 1000 > /tmp/udp.in && md5sum /tmp/udp.in");
		ok = st == 0 && last_md5(out, md5_in);
		ok = ok && guest_run(&q[1], out, sizeof(out), CMD_S,
				     "rm -f /tmp/udp.out; nc -u -l -p 5003 > /tmp/udp.out "
				     "</dev/null 2>/dev/null & echo $! > /tmp/udp.pid") == 0;
		ok = ok && guest_run(&q[0], out, sizeof(out), CMD_S,
				     "sleep 1; nc -u -w 2 10.0.0.2 5003 < /tmp/udp.in") == 0;
		ok = ok && guest_run(&q[1], out, sizeof(out), CMD_S,
				     "sleep 2; kill $(cat /tmp/udp.pid); md5sum /tmp/udp.out") == 0 &&
		     last_md5(out, md5_out);
		CHECK(ok && !strcmp(md5_in, md5_out), names[5], ": md5 sent %s, received %s",
		      md5_in, md5_out);
	}

	/* UDP datagrams to a closed port: the receiver counts them (Udp NoPorts) */
#define NOPORTS "grep '^Udp:' /proc/net/snmp | tail -1 | cut -d' ' -f3"
	noports0 = noports1 = -1;
	if (!guest_run(&q[1], out, sizeof(out), CMD_S, NOPORTS))
		noports0 = last_number(out);
	guest_run(&q[0], out, sizeof(out), CMD_S,
		  "echo x > /tmp/probe; timeout 10 tftp -p -l /tmp/probe -r probe 10.0.0.2 5004; true");
	if (!guest_run(&q[1], out, sizeof(out), CMD_S, NOPORTS))
		noports1 = last_number(out);
	CHECK(noports0 >= 0 && noports1 > noports0, names[6], ": Udp NoPorts %ld -> %ld",
	      noports0, noports1);

	/* exits per frame: a TCP transfer against an idle run as long */
	st = guest_run(&q[0], out, sizeof(out), CMD_S,
		       "dd if=/dev/urandom of=/tmp/big bs=1024 count=1024 2>/dev/null");
	ok = st == 0 && listen_bg(&q[1], 5002, "/tmp/big.out") == 0;
	f0 = tx_frames(&q[0]) + tx_frames(&q[1]);
	e0 = exits_sum(q);
	t0 = qemu_now();
	ok = ok && send_tcp(&q[0], 5002, "/tmp/big") == 0;
	t1 = qemu_now();
	e1 = exits_sum(q);
	f1 = tx_frames(&q[0]) + tx_frames(&q[1]);
	ok = ok && listen_wait(&q[1], "/tmp/big.out", 1024 * 1024L) == 0;
	e2 = exits_sum(q);
	st = guest_run(&q[0], out, sizeof(out), CMD_S, "sleep %.2f", t1 - t0);
	e3 = exits_sum(q);
	ok = ok && st == 0 && e0 >= 0 && f1 > f0;
	if (ok) {
		double per = ((double)(e1 - e0) - (double)(e3 - e2)) / (double)(f1 - f0);

		ksft_print_msg("TCP 1 MiB: %ld frames in %.2f s, %ld VM exits (idle as long: %ld): "
			       "%.3f exits per frame\n", f1 - f0, t1 - t0, e1 - e0, e3 - e2, per);
		CHECK(per <= MAX_EXITS_PER_FRAME, names[7], ": %.3f exits per frame", per);
	} else {
		ksft_test_result_fail("%s: no transfer or no exit counts\n", names[7]);
	}

unload:
	ok = true;
	for (p = 0; p < PORTS; p++) {
		st = guest_run(&q[p], out, sizeof(out), CMD_S,
			       "ip -s link show elisa0; ip link set elisa0 down && rmmod elisa_net && "
			       "dmesg | grep 'elisa_net.*removed'");
		ok = ok && st == 0;
	}
stop:
	for (p = 0; p < PORTS; p++)
		qemu_stop(&q[p]);
	vms = elisa_debugfs_vms(&gates, &held);
	ok = elisa_pages(&held, &pinned) && held == held0 && pinned == pinned0 && vms == 0 && ok;
	CHECK(ok, names[8], ": pages held %ld pinned %ld (before: %ld, %ld), %d VM(s) attached",
	      held, pinned, held0, pinned0, vms);
	for (p = 0; p < PORTS; p++) {
		char f[64];

		snprintf(f, sizeof(f), DIR "/port%d", p);
		unlink(f);
		snprintf(f, sizeof(f), DIR "/config%d", p);
		unlink(f);
	}
	rmdir(DIR);
	ksft_finished();
}
