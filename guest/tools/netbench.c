// SPDX-License-Identifier: GPL-2.0
/*
 * netbench: UDP traffic between two Linux guests, for the network tests and the network
 * benchmark (selftests/elisa_qemu_net_test, Documentation/networking.rst). It knows
 * nothing of elisa: the same program measures any network device.
 *
 *   netbench sink PORT SECS            receives datagrams on PORT, spinning (the guest
 *                                      never idles); ends SECS s after the first one, 2 s
 *                                      after the last one, or after SECS s without any.
 *                                      Prints
 *                                      "sink: datagrams N bytes B bad K us T ticks C"
 *                                      (T and C: first to last datagram; bad: a datagram
 *                                      whose bytes are not the sender's pattern)
 *   netbench send HOST PORT SIZE N     sends N datagrams of SIZE bytes in bursts of 16,
 *                                      1 ms apart (less than a receive ring of any device
 *                                      here), and prints "send: datagrams N errors E"
 *   netbench flood HOST PORT SIZE SECS sends datagrams of SIZE bytes for SECS s, as fast
 *                                      as the socket takes them; prints "flood: datagrams
 *                                      N errors E us T"
 *   netbench echo PORT SECS            sends every datagram back to its sender; ends 2 s
 *                                      after the last one or SECS s after the start
 *   netbench pingpong HOST PORT SIZE N N round trips to an echo, one datagram at a time;
 *                                      prints "pingpong: round-trips N lost L us-avg A
 *                                      us-min M ticks-avg C" (a reply not back in 1 s is
 *                                      lost)
 *   netbench spin SECS                 keeps its CPU busy for SECS s (the busy baseline
 *                                      of the exit counts)
 *
 * Datagrams carry a sequence number (8 bytes, little-endian) and then the byte
 * (seq + i) & 0xff at offset i. SIZE is the UDP payload: 18 bytes make the 64-byte
 * Ethernet frame (14 + 20 + 8 + 18 + 4 FCS), 1472 the 1514-byte one. "ticks" are the
 * guest's TSC, the emulated instructions of the emulated host when it has one CPU.
 * Exits with 1 on a system error and 2 on a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE 1472
#define MIN_SIZE 8

static const char *prog = "netbench";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s sink PORT SECS\n"
		"       %s send HOST PORT SIZE N\n"
		"       %s flood HOST PORT SIZE SECS\n"
		"       %s echo PORT SECS\n"
		"       %s pingpong HOST PORT SIZE N\n"
		"       %s spin SECS\n"
		"SIZE: %d to %d bytes of UDP payload\n",
		prog, prog, prog, prog, prog, prog, MIN_SIZE, MAX_SIZE);
	exit(2);
}

static void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	exit(1);
}

/* A decimal number in @lo..@hi, or a usage error. */
static long number(const char *s, long lo, long hi, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "%s: %s '%s': not a number from %ld to %ld\n", prog, what, s, lo,
			hi);
		exit(2);
	}
	return v;
}

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static uint64_t ticks(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static void fill(unsigned char *buf, size_t size, uint64_t seq)
{
	size_t i;

	for (i = 0; i < 8; i++)
		buf[i] = seq >> (8 * i);
	for (i = 8; i < size; i++)
		buf[i] = (seq + i) & 0xff;
}

static int intact(const unsigned char *buf, size_t size)
{
	uint64_t seq = 0;
	size_t i;

	if (size < MIN_SIZE)
		return 0;
	for (i = 0; i < 8; i++)
		seq |= (uint64_t)buf[i] << (8 * i);
	for (i = 8; i < size; i++)
		if (buf[i] != ((seq + i) & 0xff))
			return 0;
	return 1;
}

static int udp_socket(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0)
		die("socket");
	return fd;
}

static int bound(const char *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int fd = udp_socket(), big = 1 << 20;

	a.sin_port = htons(number(port, 1, 65535, "port"));
	a.sin_addr.s_addr = htonl(INADDR_ANY);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)))
		die("bind");
	return fd;
}

static int connected(const char *host, const char *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int fd = udp_socket();

	a.sin_port = htons(number(port, 1, 65535, "port"));
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "%s: host '%s': not an IPv4 address\n", prog, host);
		exit(2);
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	return fd;
}

static void timeout(int fd, double secs)
{
	struct timeval tv = { .tv_sec = (long)secs, .tv_usec = (long)((secs - (long)secs) * 1e6) };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		die("SO_RCVTIMEO");
}

static int sink(char **av)
{
	int fd = bound(av[0]);
	double secs = number(av[1], 1, 3600, "seconds"), begin = now_us(), t0 = 0, t1 = 0, t;
	unsigned long n = 0, bad = 0, bytes = 0;
	unsigned char buf[2048];
	uint64_t c0 = 0, c1 = 0;

	/* busy: the receiving guest never idles (no halt, so no exit of its own making) */
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR)
				die("recv");
			t = now_us();
			if (n ? t - t1 >= 2e6 : t - begin >= secs * 1e6)
				break;	/* 2 s after the last one, or none at all */
			continue;
		}
		t1 = now_us();
		c1 = ticks();
		if (!n) {
			t0 = t1;
			c0 = c1;
		}
		n++;
		bytes += r;
		bad += !intact(buf, r);
		if (t1 - t0 >= secs * 1e6)
			break;
	}
	printf("sink: datagrams %lu bytes %lu bad %lu us %.0f ticks %llu\n", n, bytes, bad,
	       t1 - t0, (unsigned long long)(c1 - c0));
	return 0;
}

static int send_n(char **av, int flood)
{
	int fd = connected(av[0], av[1]);
	size_t size = number(av[2], MIN_SIZE, MAX_SIZE, "size");
	long limit = flood ? number(av[3], 1, 3600, "seconds") : number(av[3], 1, 1L << 30, "count");
	double t0 = now_us(), t = t0;
	unsigned long n = 0, errors = 0, tries = 0;
	unsigned char buf[MAX_SIZE];

	for (;; tries++) {
		if (flood ? t - t0 >= limit * 1e6 : (long)n >= limit)
			break;
		fill(buf, size, n);
		if (send(fd, buf, size, 0) == (ssize_t)size) {
			n++;
		} else if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) {
			/* a full device queue; an ICMP port unreachable from the peer */
			errors++;
			if (!flood)
				n++;
		} else if (errno != EINTR) {
			die("send");
		}
		if (flood && !(tries & 63))
			t = now_us();
		if (!flood && !(n & 15))
			usleep(1000);
	}
	t = now_us();
	if (flood)
		printf("flood: datagrams %lu errors %lu us %.0f\n", n, errors, t - t0);
	else
		printf("send: datagrams %lu errors %lu\n", n, errors);
	return 0;
}

static int echo(char **av)
{
	int fd = bound(av[0]);
	double secs = number(av[1], 1, 3600, "seconds"), t0 = now_us();
	unsigned char buf[2048];
	unsigned long n = 0;

	timeout(fd, 2);
	while (now_us() - t0 < secs * 1e6) {
		struct sockaddr_in from;
		socklen_t len = sizeof(from);
		ssize_t r = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);

		if (r < 0) {
			if (errno == EINTR || (errno == EAGAIN && !n))
				continue;
			if (errno == EAGAIN)
				break;
			die("recvfrom");
		}
		if (sendto(fd, buf, r, 0, (struct sockaddr *)&from, len) == r)
			n++;
	}
	printf("echo: datagrams %lu\n", n);
	return 0;
}

static int pingpong(char **av)
{
	int fd = connected(av[0], av[1]);
	size_t size = number(av[2], MIN_SIZE, MAX_SIZE, "size");
	long i, rounds = number(av[3], 1, 1L << 20, "count");
	unsigned long ok = 0, lost = 0;
	double sum = 0, min = 1e18;
	unsigned char buf[2048];
	uint64_t csum = 0;

	timeout(fd, 1);
	for (i = 0; i < rounds; i++) {
		double t0, dt;
		uint64_t c0;
		ssize_t r;

		fill(buf, size, i);
		t0 = now_us();
		c0 = ticks();
		if (send(fd, buf, size, 0) != (ssize_t)size) {
			lost++;
			continue;
		}
		/* the reply of this round; an earlier round's late reply is skipped */
		do
			r = recv(fd, buf, sizeof(buf), 0);
		while (r >= 8 && (buf[0] | buf[1] << 8 | buf[2] << 16) != (i & 0xffffff));
		if (r != (ssize_t)size || !intact(buf, r)) {
			lost++;
			continue;
		}
		dt = now_us() - t0;
		csum += ticks() - c0;
		sum += dt;
		if (dt < min)
			min = dt;
		ok++;
	}
	printf("pingpong: round-trips %lu lost %lu us-avg %.1f us-min %.1f ticks-avg %llu\n", ok,
	       lost, ok ? sum / ok : 0, ok ? min : 0, ok ? (unsigned long long)(csum / ok) : 0ULL);
	return 0;
}

static int spin(char **av)
{
	double secs = number(av[0], 1, 3600, "seconds"), t0 = now_us();
	volatile unsigned long x = 0;

	while (now_us() - t0 < secs * 1e6)
		x++;
	printf("spin: done\n");
	return 0;
}

int main(int ac, char **av)
{
	static const struct {
		const char *name;
		int args;
	} modes[] = {
		{ "sink", 2 }, { "send", 4 }, { "flood", 4 }, { "echo", 2 }, { "pingpong", 4 },
		{ "spin", 1 },
	};
	unsigned int m;

	if (ac < 2)
		usage();
	for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
		if (!strcmp(av[1], modes[m].name))
			break;
	if (m == sizeof(modes) / sizeof(modes[0]) || ac != 2 + modes[m].args)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	switch (m) {
	case 0: return sink(av + 2);
	case 1: return send_n(av + 2, 0);
	case 2: return send_n(av + 2, 1);
	case 3: return echo(av + 2);
	case 4: return pingpong(av + 2);
	default: return spin(av + 2);
	}
}
