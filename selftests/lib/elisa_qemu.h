/* SPDX-License-Identifier: GPL-2.0 */
/*
 * QEMU with a Linux guest, driven from a selftest (elisa_qemu_test) or the demo: the guest's
 * /init (tools/testvm/guest-init) runs the shell commands written to its serial port, one
 * per line, and ends each command's output with "GUEST-DONE <status>".
 *
 *   qemu_start(q, name, bin, args)   QEMU with its serial port on pipes; @args after the
 *                                    common ones (NULL-terminated)
 *   qemu_wait(q, prefix, secs)       reads the guest's lines until one starts with @prefix
 *   guest_run(q, out, size, secs, fmt, ...)
 *                                    runs one command in the guest; its status (-1: no
 *                                    answer in @secs), its output in @out
 *   qemu_stat(q, name)               one of KVM's statistics of QEMU's VM (debugfs: exits,
 *                                    halt_exits, ...), or -1
 *   qemu_exits(q)                    its exit count, or -1
 *   qemu_stop(q)                     ends QEMU (SIGTERM, then SIGKILL) and reaps it
 *   qmp_open(path, secs), qmp_cmd(fd, out, size, fmt, ...)
 *                                    QMP over a Unix socket: negotiates capabilities;
 *                                    qmp_cmd sends one command and returns 0 ("return") or
 *                                    -1 ("error", the reply in @out)
 *   env_or(name, def)                an environment variable, or @def if unset or empty
 *   last_number(out)                 the number on the last line of a command's output, or -1
 * Every line read from the guest is printed as a KTAP diagnostic ("# name: line").
 */
#ifndef ELISA_QEMU_H
#define ELISA_QEMU_H

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include "elisa_test.h"

struct qemu {
	const char *name;
	pid_t pid;
	int in, out;		/* the guest's serial port: we write @in, read @out */
	char buf[8192];
	size_t len;
	char line[1024];
	bool echo;
};

static inline const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

static inline long last_number(const char *s)
{
	const char *p = s + strlen(s);
	long v = -1;

	while (p > s && (p[-1] == '\n' || p[-1] == '\r'))
		p--;
	while (p > s && p[-1] != '\n')
		p--;
	return sscanf(p, "%ld", &v) == 1 ? v : -1;
}

static inline double qemu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static inline void qemu_start(struct qemu *q, const char *name, const char *bin,
			      const char *const *args)
{
	const char *argv[64];
	int in[2], out[2], n = 0, i;

	memset(q, 0, sizeof(*q));
	q->name = name;
	q->echo = true;
	TEST_ASSERT(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0, "pipe");
	argv[n++] = bin;
	for (i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	q->pid = fork();
	TEST_ASSERT(q->pid >= 0, "fork");
	if (q->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		execv(bin, (char *const *)argv);
		fprintf(stderr, "GUEST-EXEC-FAILED %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	q->in = in[1];
	q->out = out[0];
}

/* The next line from QEMU's output into q->line; false on timeout or end of output. */
static inline bool qemu_line(struct qemu *q, double deadline)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		struct pollfd p = { .fd = q->out, .events = POLLIN };
		double left;
		ssize_t r;

		if (nl) {
			size_t n = nl - q->buf, k = n < sizeof(q->line) - 1 ? n : sizeof(q->line) - 1;

			memcpy(q->line, q->buf, k);
			q->line[k] = 0;
			if (k && q->line[k - 1] == '\r')
				q->line[k - 1] = 0;
			memmove(q->buf, nl + 1, q->len - n - 1);
			q->len -= n + 1;
			if (q->echo)
				ksft_print_msg("%s: %s\n", q->name, q->line);
			return true;
		}
		if (q->len == sizeof(q->buf))
			q->len = 0;	/* a line longer than the buffer: dropped */
		left = deadline - qemu_now();
		if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
			return false;
		r = read(q->out, q->buf + q->len, sizeof(q->buf) - q->len);
		if (r <= 0)
			return false;
		q->len += r;
	}
}

static inline bool qemu_wait(struct qemu *q, const char *prefix, int secs)
{
	double deadline = qemu_now() + secs;

	while (qemu_line(q, deadline))
		if (!strncmp(q->line, prefix, strlen(prefix)))
			return true;
	ksft_print_msg("%s: no line \"%s\" within %d s\n", q->name, prefix, secs);
	return false;
}

static inline int guest_run(struct qemu *q, char *out, size_t size, int secs, const char *fmt,
			    ...)
{
	double deadline = qemu_now() + secs;
	char cmd[512];
	size_t used = 0;
	va_list ap;
	int n, st;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	va_end(ap);
	TEST_ASSERT(n > 0 && n < (int)sizeof(cmd) - 1, "guest command too long");
	ksft_print_msg("%s$ %s\n", q->name, cmd);
	cmd[n++] = '\n';
	TEST_ASSERT(write(q->in, cmd, n) == n, "write to the guest's serial port");
	if (out && size)
		out[0] = 0;
	while (qemu_line(q, deadline)) {
		if (sscanf(q->line, "GUEST-DONE %d", &st) == 1)
			return st;
		if (out && used + strlen(q->line) + 2 < size) {
			used += sprintf(out + used, "%s\n", q->line);
		}
	}
	ksft_print_msg("%s: no answer within %d s\n", q->name, secs);
	return -1;
}

/* KVM's debugfs directory of QEMU's VM is <pid>-<vm fd>; QEMU makes one VM. */
static inline long qemu_stat(struct qemu *q, const char *name)
{
	char pre[32], path[300];
	struct dirent *e;
	long v = -1;
	DIR *d = opendir("/sys/kernel/debug/kvm");
	FILE *f;

	if (!d)
		return -1;
	snprintf(pre, sizeof(pre), "%d-", q->pid);
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, pre, strlen(pre)))
			break;
	if (e) {
		snprintf(path, sizeof(path), "/sys/kernel/debug/kvm/%s/%s", e->d_name, name);
		f = fopen(path, "r");
		if (f && fscanf(f, "%ld", &v) != 1)
			v = -1;
		if (f)
			fclose(f);
	}
	closedir(d);
	return v;
}

static inline long qemu_exits(struct qemu *q)
{
	return qemu_stat(q, "exits");
}

static inline int qemu_stop(struct qemu *q)
{
	double deadline = qemu_now() + 20;
	int st = -1;

	if (q->pid <= 0)
		return -1;
	kill(q->pid, SIGTERM);
	while (waitpid(q->pid, &st, WNOHANG) == 0) {
		if (qemu_now() > deadline) {
			kill(q->pid, SIGKILL);
			waitpid(q->pid, &st, 0);
			break;
		}
		usleep(100 * 1000);
	}
	close(q->in);
	close(q->out);
	q->pid = 0;
	return st;
}

/* One QMP message (a JSON object on one line) into @out; false on timeout. */
static inline bool qmp_read(int fd, char *out, size_t size, int secs)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t n = 0;
	char c;

	while (n + 1 < size) {
		if (poll(&p, 1, secs * 1000) <= 0 || read(fd, &c, 1) != 1)
			return false;
		if (c == '\n')
			break;
		out[n++] = c;
	}
	out[n] = 0;
	return true;
}

static inline int qmp_cmd(int fd, char *out, size_t size, const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	va_end(ap);
	TEST_ASSERT(n > 0 && n < (int)sizeof(cmd) - 1, "QMP command too long");
	ksft_print_msg("qmp> %s\n", cmd);
	cmd[n++] = '\n';
	TEST_ASSERT(write(fd, cmd, n) == n, "write to QMP");
	while (qmp_read(fd, out, size, 60)) {
		if (strstr(out, "\"event\""))
			continue;
		ksft_print_msg("qmp< %s\n", out);
		return strncmp(out, "{\"return\"", 9) ? -1 : 0;
	}
	ksft_print_msg("qmp: no reply\n");
	return -1;
}

/* Connects to QEMU's QMP socket (retrying while QEMU starts) and leaves it in command mode. */
static inline int qmp_open(const char *path, int secs)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	double deadline = qemu_now() + secs;
	char buf[2048];
	int fd = -1;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	while (qemu_now() < deadline) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		TEST_ASSERT(fd >= 0, "socket");
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(fd);
		fd = -1;
		usleep(200 * 1000);
	}
	if (fd < 0 || !qmp_read(fd, buf, sizeof(buf), secs) ||
	    qmp_cmd(fd, buf, sizeof(buf), "{\"execute\":\"qmp_capabilities\"}")) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

#endif
