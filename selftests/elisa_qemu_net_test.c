// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_qemu_net_test: two Linux guests under the patched QEMU on one elisa switch, as
 * Documentation/networking.rst ("Two QEMU guests") sets them up (lib/elisa_qemu_net.h):
 * each sees its port region as BAR 2 of an ivshmem-plain device, driven by elisa_net.ko
 * (guest/linux/elisa_net.c), and calls its own switch service through elisa_guest.ko.
 * The guests talk IP over elisa0.
 *
 *   net_files      "elisactl switch init" writes port0/1 and config0/1 under /dev/shm
 *   net_boot       both QEMUs boot with the ivshmem device and the switch; 2 VMs attached
 *   net_up         elisa_guest.ko and elisa_net.ko load in both; elisa0 has port p's MAC
 *                  (02:00:00:00:00:<p+1>), 10.0.0.<p+1>/24, up
 *   net_ping       10.0.0.1 pings 10.0.0.2, and back
 *   net_tcp        256 KiB of random bytes over TCP with busybox nc, same md5 at the end
 *   net_udp        400 datagrams of 1000 bytes over UDP (netbench send, paced below a
 *                  receive ring): all arrive, every byte as sent
 *   net_exits      VM exits per frame while both guests are busy: both VMs' exits during a
 *                  3 s flood of 64-byte frames (netbench flood, and sink, which spins)
 *                  minus those of both guests spinning (netbench spin) at the same rate,
 *                  per frame received, interrupt-window exits left out (a timer tick that
 *                  lands in a call, which runs with IF = 0, is delivered after it: those
 *                  come with time spent in calls, not with frames; lib/elisa_qemu_net.h);
 *                  at most MAX_EXITS_PER_FRAME, and no MMIO exit or hypercall more than
 *                  spinning
 *   net_stop       elisa0 down and elisa_net.ko unloaded in both; after the QEMUs end
 *                  elisa holds no page more than before
 *
 * Needs the test kernel's guest options (PCI, virtio-net: tools/kconfig/elisa-test.config), and elisa_net.ko, netbench and
 * switch.bin in the test image (tools/testvm/qemu-image.sh). Paths as elisa_qemu_test's:
 * QEMU_ELISA, QEMU_ELISA_DATA, ELISA_GUEST_DIR, ELISA_SERVICES, ELISACTL.
 */
#include "elisa_qemu_net.h"

#define TCP_KIB 256
#define UDP_N 400
/* flood and busy baseline: guest seconds each */
#define BUSY_S 3
/*
 * Over the busy baseline's rate: the elisa path itself makes no exit. The guests' timers
 * (elisa_net's 100 us receive poll in each) make about 21000 exits a second between
 * them, 1.5 % more during a flood than while spinning (0.045 per frame at 8000 frames a
 * second); an exit per frame, or per ten frames, would reach the bound.
 */
/*
 * The time-driven exits (the guests' timers, about 21000 a second) differ by up to 5 %
 * between two 3 s windows: about 0.13 a frame at 8000 frames a second, either way
 * (measured -0.12 to 0.12 with interrupt-window exits left out). 0.3 is over twice that,
 * and below virtio-net's 0.41 a 64-byte frame (make bench): an exit per frame, or one per
 * few frames, still fails.
 */
#define MAX_EXITS_PER_FRAME 0.3

static char out[8192];

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

/* Starts "nc -l -p @port > @file" in the background of @q; its status goes to @file.rc. */
static int listen_bg(struct qemu *q, int port, const char *file)
{
	return guest_run(q, out, sizeof(out), NET_CMD_S,
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
	return guest_run(q, out, sizeof(out), NET_CMD_S,
			 "i=0; while [ \"$(wc -c < %s)\" -lt %ld ] && [ $i -lt 60 ]; do sleep 1; "
			 "i=$((i+1)); done; killall sleep 2>/dev/null; wc -c < %s; md5sum %s",
			 file, bytes, file, file);
}

/* @q sends @file to 10.0.0.2:@port, retrying while the listener starts. */
static int send_tcp(struct qemu *q, int port, const char *file)
{
	return guest_run(q, out, sizeof(out), NET_CMD_S,
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
		"net_exits", "net_stop",
	};
	long held0, pinned0, held, pinned, n, bad, sent, us, ticks;
	char md5_in[33], md5_out[33], cmd0[96], cmd1[96];
	struct net_args args[NET_PORTS];
	struct qemu q[NET_PORTS];
	struct net_exits flood, base;
	struct net_env e;
	int st, p, gates, vms;
	bool ok;

	st = net_begin(&e, ARRAY_SIZE(names), &held0, &pinned0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, names[0], ": exit %#x", st);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fail_rest(names, 1, ARRAY_SIZE(names), "no switch files");
		ksft_finished();
	}

	ok = true;
	for (p = 0; p < NET_PORTS; p++)
		net_start(&e, &q[p], &args[p], p, false);
	for (p = 0; p < NET_PORTS; p++)
		ok = qemu_wait(&q[p], "GUEST-READY", NET_BOOT_S) && ok;
	vms = elisa_debugfs_vms(&gates, &held);
	CHECK(ok && vms == NET_PORTS, names[1], ": %d VM(s) attached", vms);
	if (!ok) {
		fail_rest(names, 2, ARRAY_SIZE(names) - 1, "no guests");
		goto stop;
	}

	ok = true;
	for (p = 0; p < NET_PORTS; p++) {
		ok = net_up(&q[p], p, false, out, sizeof(out)) == 0 && ok;
		guest_run(&q[p], NULL, 0, NET_CMD_S, "dmesg | grep -i elisa | tail -5");
	}
	CHECK(ok, names[2], "");
	if (!ok) {
		fail_rest(names, 3, ARRAY_SIZE(names) - 1, "no elisa0");
		goto unload;
	}

	st = guest_run(&q[0], out, sizeof(out), NET_CMD_S, "ping -c 5 -W 5 10.0.0.2");
	ok = st == 0 && strstr(out, " 0% packet loss");
	st = guest_run(&q[1], out, sizeof(out), NET_CMD_S, "ping -c 5 -W 5 10.0.0.1");
	ok = ok && st == 0 && strstr(out, " 0% packet loss");
	CHECK(ok, names[3], "");

	/* TCP: 10.0.0.1 -> 10.0.0.2:5001 */
	md5_in[0] = md5_out[0] = 0;
	st = guest_run(&q[0], out, sizeof(out), NET_CMD_S,
		       "dd if=/dev/urandom of=/tmp/tcp.in bs=1024 count=%d 2>/dev/null && "
		       "md5sum /tmp/tcp.in", TCP_KIB);
	ok = st == 0 && last_md5(out, md5_in);
	ok = ok && listen_bg(&q[1], 5001, "/tmp/tcp.out") == 0;
	ok = ok && send_tcp(&q[0], 5001, "/tmp/tcp.in") == 0;
	ok = ok && listen_wait(&q[1], "/tmp/tcp.out", TCP_KIB * 1024L) == 0 && last_md5(out, md5_out);
	CHECK(ok && !strcmp(md5_in, md5_out), names[4], ": md5 sent %s, received %s", md5_in,
	      md5_out);

	/* UDP: 10.0.0.2 -> 10.0.0.1:5002, paced below a receive ring, every byte checked */
	n = bad = sent = -1;
	ok = guest_run(&q[0], out, sizeof(out), NET_CMD_S,
		       "(netbench sink 5002 60) > /tmp/bg.out 2>&1 &") == 0;
	ok = ok && guest_run(&q[1], out, sizeof(out), NET_CMD_S,
			     "sleep 1; netbench send 10.0.0.1 5002 1000 %d", UDP_N) == 0 &&
	     sscanf(out, "send: datagrams %ld", &sent) == 1;
	ok = ok && net_sink_result(&q[0], &n, &bad, &us, &ticks);
	CHECK(ok && n == UDP_N && bad == 0 && sent == UDP_N, names[5],
	      ": %ld of %ld datagrams of 1000 bytes received, %ld damaged", n, sent, bad);

	/*
	 * Exits while both guests are busy: a 64-byte flood 10.0.0.1 -> 10.0.0.2 against both
	 * guests spinning as long. The elisa path (the switch call, the receive poll) makes
	 * none: what is left per frame is the noise of the guests' timers.
	 */
	n = bad = -1;
	snprintf(cmd0, sizeof(cmd0), "netbench spin %d", BUSY_S);
	snprintf(cmd1, sizeof(cmd1), "netbench spin %d", BUSY_S + 1);
	ok = net_busy(q, cmd0, cmd1, &base);
	snprintf(cmd0, sizeof(cmd0), "netbench flood 10.0.0.2 5003 18 %d", BUSY_S);
	snprintf(cmd1, sizeof(cmd1), "netbench sink 5003 %d", BUSY_S + 1);
	ok = ok && net_busy(q, cmd0, cmd1, &flood);
	ok = ok && net_sink_result(&q[1], &n, &bad, &us, &ticks) && n > 0;
	if (ok) {
		double per = net_exits_per_frame(&flood, &base, n);

		ksft_print_msg("busy: %ld frames of 64 bytes in %.2f s; VM exits %ld (halt %ld, io %ld, "
			       "mmio %ld, hypercall %ld, interrupt window %ld); both spinning for "
			       "%.2f s: %ld (halt %ld, io %ld, mmio %ld, hypercall %ld, interrupt "
			       "window %ld): %.4f exits per frame over that rate, interrupt-window "
			       "exits left out\n",
			       n, flood.secs, flood.all, flood.halt, flood.io, flood.mmio, flood.hcall,
			       flood.irqwin, base.secs, base.all, base.halt, base.io, base.mmio,
			       base.hcall, base.irqwin, per);
		CHECK(per <= MAX_EXITS_PER_FRAME && flood.mmio == base.mmio &&
		      flood.hcall == base.hcall, names[6], ": %.4f exits per frame", per);
	} else {
		ksft_test_result_fail("%s: no flood or no exit counts\n", names[6]);
	}

unload:
	ok = true;
	for (p = 0; p < NET_PORTS; p++) {
		st = guest_run(&q[p], out, sizeof(out), NET_CMD_S,
			       "grep elisa0 /proc/net/dev; ip link set elisa0 down && rmmod elisa_net && "
			       "dmesg | grep 'elisa_net.*removed'");
		ok = ok && st == 0;
	}
stop:
	for (p = 0; p < NET_PORTS; p++)
		qemu_stop(&q[p]);
	vms = elisa_debugfs_vms(&gates, &held);
	ok = elisa_pages(&held, &pinned) && held == held0 && pinned == pinned0 && vms == 0 && ok;
	CHECK(ok, names[7], ": pages held %ld pinned %ld (before: %ld, %ld), %d VM(s) attached",
	      held, pinned, held0, pinned0, vms);
	net_remove_files();
	ksft_finished();
}
