// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_net_bench: the same two Linux guests, the same traffic, over elisa and over
 * virtio-net, in one boot of the emulated host (make bench, tools/testvm/run.sh
 * --bench-net; Documentation/networking.rst has the table and how to read it).
 *
 * Each guest has both devices (lib/elisa_qemu_net.h): elisa0 on the elisa switch
 * (10.0.0.0/24) and eth0, a virtio-net device with vhost-net on a host tap device, the
 * two taps joined by a bridge (10.0.1.0/24). Per network, with the guest program netbench:
 *
 *   - a ping-pong: 300 round trips of a 64-byte frame, one at a time (echo in guest 1);
 *   - floods of 64-byte and of 1514-byte frames from guest 0 to guest 1 for FLOOD_S
 *     guest seconds: frames received per second and emulated instructions per frame
 *     received (the receiver's TSC from its first frame to its last; with one emulated
 *     CPU, every instruction of the emulated host in that time, both guests, both QEMUs,
 *     vhost and the host kernel), and both VMs' VM exits per frame received, over those
 *     of both guests spinning, at the rate they have with that network's set-up
 *     (interrupt-window exits left out of both: lib/elisa_qemu_net.h).
 *
 * elisa is measured twice: with elisa_net's default receive poll (100 us) and with a
 * 1 ms poll (its poll_us parameter), which trades latency for fewer timer exits. elisa0
 * is down while virtio-net is measured (its poll timer would cost virtio-net's guests),
 * eth0 is idle while elisa is. Prints the table as "# BENCH" lines
 * and the figures as one "# BENCH-JSON" line; its KTAP results are sanity checks only
 * (every step ran, frames arrived intact, the elisa floods made no MMIO exit and no
 * hypercall more than spinning).
 */
#include "elisa_qemu_net.h"

#define FLOOD_S 3
#define ROUNDS 300
/* Bochs's emulated instructions per emulated microsecond (tools/testvm/run.sh: ips) */
#define IPS_PER_US 200

struct net_result {
	double pps, ticks_per_frame, exits_per_frame, rtt_ticks, rtt_lost;
};

static char out[8192];

struct flood {
	const char *label;
	int payload;	/* UDP payload of the frame's size */
};

static const struct flood floods[] = { { "64", 18 }, { "1514", 1472 } };

/* Both guests spinning for FLOOD_S s: the baseline of the exit counts. */
static bool spin_baseline(struct qemu *q, struct net_exits *base)
{
	char c0[64], c1[64];

	snprintf(c0, sizeof(c0), "netbench spin %d", FLOOD_S);
	snprintf(c1, sizeof(c1), "netbench spin %d", FLOOD_S + 1);
	return net_busy(q, c0, c1, base) &&
	       guest_run(&q[1], out, sizeof(out), NET_CMD_S, "sleep 2; cat /tmp/bg.out") == 0;
}

/* One network: @net is "0" (elisa0) or "1" (eth0), the third byte of its addresses. */
static bool measure(struct qemu *q, int net, struct net_result *r)
{
	struct net_exits base_, *base = &base_;
	char c0[96], c1[96];
	long n, bad, us, ticks, rounds, lost;
	struct net_exits d;
	const char *p;
	double tk;
	bool ok = true;
	unsigned int i;

	/* the exits of this network's set-up (elisa0 up or down) while both guests spin */
	if (!spin_baseline(q, base)) {
		ksft_print_msg("net %d: no baseline\n", net);
		return false;
	}
	/* ARP both ways, then the ping-pong */
	ok = guest_run(&q[0], out, sizeof(out), NET_CMD_S, "ping -c 2 -W 5 10.0.%d.2", net) == 0;
	ok = ok && guest_run(&q[1], out, sizeof(out), NET_CMD_S,
			     "(netbench echo 5200 120) > /tmp/echo.out 2>&1 &") == 0;
	ok = ok && guest_run(&q[0], out, sizeof(out), NET_CMD_S,
			     "sleep 1; netbench pingpong 10.0.%d.2 5200 18 %d", net, ROUNDS) == 0;
	p = strstr(out, "pingpong: ");
	if (!ok || !p || sscanf(p, "pingpong: round-trips %ld lost %ld us-avg %*f us-min %*f "
				"ticks-avg %lf", &rounds, &lost, &tk) != 3) {
		ksft_print_msg("net %d: no ping-pong result\n", net);
		return false;
	}
	r->rtt_ticks = tk;
	r->rtt_lost = lost;
	guest_run(&q[1], out, sizeof(out), NET_CMD_S, "killall netbench; sleep 1; true");

	for (i = 0; i < ARRAY_SIZE(floods); i++) {
		snprintf(c0, sizeof(c0), "netbench flood 10.0.%d.2 %d %d %d", net, 5201 + i,
			 floods[i].payload, FLOOD_S);
		snprintf(c1, sizeof(c1), "netbench sink %d %d", 5201 + i, FLOOD_S + 1);
		if (!net_busy(q, c0, c1, &d) || !net_sink_result(&q[1], &n, &bad, &us, &ticks) ||
		    n < 2 || bad) {
			ksft_print_msg("net %d, %s bytes: no flood result\n", net, floods[i].label);
			return false;
		}
		r[i].pps = (double)(n - 1) / (us / 1e6);
		r[i].ticks_per_frame = (double)ticks / (double)(n - 1);
		r[i].exits_per_frame = net_exits_per_frame(&d, base, n);
		ksft_print_msg("net %d, %s bytes: %ld frames in %ld us, %ld ticks; exits %ld in %.2f s "
			       "(halt %ld, io %ld, mmio %ld, hypercall %ld), spinning %ld in %.2f s\n",
			       net, floods[i].label, n, us, ticks, d.all, d.secs, d.halt, d.io,
			       d.mmio, d.hcall, base->all, base->secs);
		if (net == 0 && (d.mmio > base->mmio || d.hcall > base->hcall)) {
			ksft_print_msg("the elisa flood made MMIO exits or hypercalls\n");
			ok = false;
		}
	}
	return ok;
}

/* One row: elisa (the default poll), elisa with a 1 ms poll, virtio-net; elisa / virtio-net */
static void bench_line(const char *what, const double v[3], const char *fmt)
{
	char x[3][32];
	int i;

	for (i = 0; i < 3; i++)
		snprintf(x[i], sizeof(x[i]), fmt, v[i]);
	ksft_print_msg("BENCH %-42s %10s %10s %10s %7.2f\n", what, x[0], x[1], x[2],
		       v[2] ? v[0] / v[2] : 0);
}

/* The guests' elisa_net receive poll period */
static bool poll_period(struct qemu *q, int us)
{
	int p;

	for (p = 0; p < NET_PORTS; p++)
		if (guest_run(&q[p], out, sizeof(out), NET_CMD_S,
			      "echo %d > /sys/module/elisa_net/parameters/poll_us", us))
			return false;
	return true;
}

int main(void)
{
	static const char *const names[] = {
		"bench_setup", "bench_elisa", "bench_virtio", "bench_stop",
	};
	/* [run][flood]: elisa, elisa with a 1 ms poll, virtio-net; the ping-pong in [run][0] */
	struct net_result r[3][2];
	struct net_args args[NET_PORTS];
	struct qemu q[NET_PORTS];
	struct net_env e;
	long held0, pinned0, held, pinned;
	int st, p, gates, vms, err;
	bool ok, up = false;

	memset(r, 0, sizeof(r));
	st = net_begin(&e, ARRAY_SIZE(names), &held0, &pinned0);
	err = net_bridge(true);
	if (err)
		ksft_print_msg("host bridge: %s\n", strerror(-err));
	ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && !err;
	if (ok) {
		for (p = 0; p < NET_PORTS; p++)
			net_start(&e, &q[p], &args[p], p, true);
		up = true;
		for (p = 0; p < NET_PORTS; p++)
			ok = qemu_wait(&q[p], "GUEST-READY", NET_BOOT_S) && ok;
		for (p = 0; ok && p < NET_PORTS; p++)
			ok = net_up(&q[p], p, true, out, sizeof(out)) == 0;
	}
	CHECK(ok, names[0], ": switch files, bridge, both guests with elisa0 and eth0");

	ok = ok && measure(q, 0, r[0]) && poll_period(q, 1000) && measure(q, 0, r[1]) &&
	     poll_period(q, 100);
	CHECK(ok, names[1], "");
	for (p = 0; ok && p < NET_PORTS; p++)
		ok = guest_run(&q[p], out, sizeof(out), NET_CMD_S, "ip link set elisa0 down") == 0;
	ok = ok && measure(q, 1, r[2]);
	CHECK(ok, names[2], "");

	if (ok) {
		static const struct {
			const char *what, *fmt;
			size_t off;
			int flood;
			double scale;
		} rows[] = {
#define ROW(w, f, field, fl, sc) { w, f, offsetof(struct net_result, field), fl, sc }
			ROW("UDP 64 B frames: received per second", "%.0f", pps, 0, 1),
			ROW("UDP 64 B frames: instructions per frame", "%.0f", ticks_per_frame, 0, 1),
			ROW("UDP 64 B frames: VM exits per frame (a)", "%.3f", exits_per_frame, 0, 1),
			ROW("UDP 1514 B frames: received per second", "%.0f", pps, 1, 1),
			ROW("UDP 1514 B frames: instructions per frame", "%.0f", ticks_per_frame, 1, 1),
			ROW("UDP 1514 B frames: VM exits per frame (a)", "%.3f", exits_per_frame, 1, 1),
			ROW("ping-pong 64 B: round trip (instructions)", "%.0f", rtt_ticks, 0, 1),
			ROW("ping-pong 64 B: round trip (us) (b)", "%.1f", rtt_ticks, 0,
			    1.0 / IPS_PER_US),
			ROW("ping-pong 64 B: round trips lost (d)", "%.0f", rtt_lost, 0, 1),
#undef ROW
		};
		const char *names3[3] = { "elisa", "elisa_1ms", "virtio" };
		char json[2048];
		size_t used = 0;
		unsigned int i, k;

		ksft_print_msg("BENCH network: two QEMU guests, one emulated CPU; %d s floods; "
			       "instructions: emulated, per frame received\n", FLOOD_S);
		ksft_print_msg("BENCH %-42s %10s %10s %10s %7s\n", "", "elisa", "elisa", "virtio-net",
			       "ratio");
		ksft_print_msg("BENCH %-42s %10s %10s %10s %7s\n", "", "100 us poll", "1 ms poll", "",
			       "(c)");
		for (i = 0; i < ARRAY_SIZE(rows); i++) {
			double v[3];

			for (k = 0; k < 3; k++)
				v[k] = *(const double *)((const char *)&r[k][rows[i].flood] +
							 rows[i].off) * rows[i].scale;
			bench_line(rows[i].what, v, rows[i].fmt);
		}
		ksft_print_msg("BENCH (a) both VMs' exits during the flood minus those of both "
			       "guests spinning, at that rate, per frame received; interrupt-window "
			       "exits left out of both\n");
		ksft_print_msg("BENCH (b) emulated time: instructions / %d (Bochs's ips)\n",
			       IPS_PER_US);
		ksft_print_msg("BENCH (c) elisa (100 us poll) / virtio-net\n");
		ksft_print_msg("BENCH (d) of %d; a lost datagram waits out netbench's timeout "
			       "and is not in the round trip\n", ROUNDS);
		used += snprintf(json + used, sizeof(json) - used, "{\"network\": {\"flood_s\": %d",
				 FLOOD_S);
		for (k = 0; k < 3; k++)
			used += snprintf(json + used, sizeof(json) - used,
					 ", \"%s\": {\"pps_64\": %.0f, \"instr_64\": %.0f, "
					 "\"exits_64\": %.4f, \"pps_1514\": %.0f, \"instr_1514\": %.0f, "
					 "\"exits_1514\": %.4f, \"rtt_instr\": %.0f, \"rtt_lost\": %.0f}",
					 names3[k], r[k][0].pps, r[k][0].ticks_per_frame,
					 r[k][0].exits_per_frame, r[k][1].pps, r[k][1].ticks_per_frame,
					 r[k][1].exits_per_frame, r[k][0].rtt_ticks, r[k][0].rtt_lost);
		ksft_print_msg("BENCH-JSON %s}}\n", json);
	}

	for (p = 0; up && p < NET_PORTS; p++)
		qemu_stop(&q[p]);
	err = net_bridge(false);
	vms = elisa_debugfs_vms(&gates, &held);
	ok = elisa_pages(&held, &pinned) && held == held0 && pinned == pinned0 && vms == 0 && !err;
	CHECK(ok, names[3], ": bridge removed (%d), pages held %ld pinned %ld (before: %ld, %ld)",
	      err, held, pinned, held0, pinned0);
	net_remove_files();
	ksft_finished();
}
