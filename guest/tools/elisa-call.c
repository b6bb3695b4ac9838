// SPDX-License-Identifier: GPL-2.0
/*
 * elisa-call: call a service of the host from guest user space, through the guest module
 * elisa_guest.ko (/dev/elisa-guest, include/uapi/linux/elisa_guest.h).
 *
 *   elisa-call --list                        one line per gate:
 *                                            <number> <name> <G> <index> <calls> <not entered>
 *   elisa-call NAME [a0 [a1 [a2 [a3 [a4]]]]] call the service of gate NAME with up to five
 *                                            arguments (decimal, 0x-hex, or negative);
 *                                            prints its value in decimal
 *   elisa-call --repeat N NAME [a0 ...]      the same call N times (no VM exit each); prints
 *                                            the last value
 *   elisa-call --raw ...                     any value is a value: no errno reading of
 *                                            -4095..-1 (ELISA_GUEST_CALL_RAW)
 *   elisa-call --read-only ...               open the device read-only, as --list does: the
 *                                            call then fails with EBADF (the module's rule,
 *                                            for tests)
 *
 * A failed call prints "elisa-call: NAME: <errno text>" on stderr and exits 1 (ENODEV: no
 * gate entered, the host has not granted it or has detached the VM; EINTR: failed back;
 * EPERM: refused; others: the service's own errno). Usage errors exit 2. The device is
 * /dev/elisa-guest, or $ELISA_GUEST_DEV.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/elisa_guest.h>

static const char *prog = "elisa-call";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s --list\n"
		"       %s [--raw] [--repeat N] [--read-only] NAME [a0 [a1 [a2 [a3 [a4]]]]]\n",
		prog, prog);
	exit(2);
}

/* The device, read-only (the listing ioctls) or read-write (a call needs it). */
static int open_dev(int mode)
{
	const char *path = getenv("ELISA_GUEST_DEV");
	int fd;

	if (!path || !*path)
		path = "/dev/elisa-guest";
	fd = open(path, mode | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: %s: %s%s\n", prog, path, strerror(errno),
			errno == ENOENT ? " (is elisa_guest.ko loaded? Documentation/guest-linux.rst)" :
			errno == EACCES ? " (root's unless a udev rule gives a group access)" : "");
		exit(1);
	}
	return fd;
}

static unsigned int nr_gates(int fd)
{
	struct elisa_guest_info info;

	memset(&info, 0, sizeof(info));
	if (ioctl(fd, ELISA_GUEST_GET_INFO, &info)) {
		fprintf(stderr, "%s: ELISA_GUEST_GET_INFO: %s\n", prog, strerror(errno));
		exit(1);
	}
	if (info.api_version != ELISA_GUEST_API_VERSION) {
		fprintf(stderr, "%s: the module speaks API version %u, this program %u\n", prog,
			info.api_version, ELISA_GUEST_API_VERSION);
		exit(1);
	}
	return info.nr_gates;
}

static void get_gate(int fd, unsigned int n, struct elisa_guest_gate *g)
{
	memset(g, 0, sizeof(*g));
	g->gate = n;
	if (ioctl(fd, ELISA_GUEST_GET_GATE, g)) {
		fprintf(stderr, "%s: ELISA_GUEST_GET_GATE %u: %s\n", prog, n, strerror(errno));
		exit(1);
	}
	g->name[sizeof(g->name) - 1] = '\0';
}

static int list(int fd)
{
	unsigned int n, nr = nr_gates(fd);
	struct elisa_guest_gate g;

	for (n = 0; n < nr; n++) {
		get_gate(fd, n, &g);
		printf("%u %s %#" PRIx64 " %u %" PRIu64 " %" PRIu64 "\n", n, g.name,
		       (uint64_t)g.entry_gva, g.index, (uint64_t)g.calls,
		       (uint64_t)g.not_entered);
	}
	return 0;
}

/* The number of the gate called name; exits 1 if there is none. */
static unsigned int find(int fd, const char *name)
{
	unsigned int n, nr = nr_gates(fd);
	struct elisa_guest_gate g;

	for (n = 0; n < nr; n++) {
		get_gate(fd, n, &g);
		if (!strcmp(g.name, name))
			return n;
	}
	fprintf(stderr, "%s: %s: no such gate (%u gates; see --list)\n", prog, name, nr);
	exit(1);
}

/* A 64-bit argument: decimal, 0x-hex, 0-octal, or negative; anything else is a usage error. */
static uint64_t number(const char *s)
{
	char *end;
	uint64_t v;

	errno = 0;
	if (*s == '-')
		v = (uint64_t)strtoll(s, &end, 0);
	else
		v = strtoull(s, &end, 0);
	if (!*s || *end || errno) {
		fprintf(stderr, "%s: not a 64-bit number: %s\n", prog, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	struct elisa_guest_call call;
	unsigned long long repeat = 1, i;
	const char *name;
	int fd, a = 1, k, mode = O_RDWR;
	__u32 flags = 0;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "--list")) {
		if (argc != 2)
			usage();
		return list(open_dev(O_RDONLY));
	}
	for (;;) {
		if (a < argc && !strcmp(argv[a], "--raw")) {
			flags |= ELISA_GUEST_CALL_RAW;
			a++;
		} else if (a < argc && !strcmp(argv[a], "--read-only")) {
			mode = O_RDONLY;
			a++;
		} else if (a + 1 < argc && !strcmp(argv[a], "--repeat")) {
			/* A count: no sign (number() takes -1 as 2^64 - 1 for the arguments). */
			if (argv[a + 1][0] == '-')
				usage();
			repeat = number(argv[a + 1]);
			if (!repeat)
				usage();
			a += 2;
		} else {
			break;
		}
	}
	if (a >= argc || argv[a][0] == '-' || argc - a - 1 > 5)
		usage();
	name = argv[a++];
	memset(&call, 0, sizeof(call));
	call.flags = flags;
	for (k = 0; a < argc; k++, a++)
		call.args[k] = number(argv[a]);
	fd = open_dev(mode);
	call.gate = find(fd, name);
	for (i = 0; i < repeat; i++) {
		if (ioctl(fd, ELISA_GUEST_CALL, &call)) {
			fprintf(stderr, "%s: %s: %s\n", prog, name, strerror(errno));
			return 1;
		}
	}
	printf("%" PRId64 "\n", (int64_t)call.ret);
	return 0;
}
