// SPDX-License-Identifier: GPL-2.0
/*
 * sched_policy: runs a command under another scheduling policy, as chrt does (the
 * emulated host's busybox has no chrt). kvm_suite's "batch" pass runs a test under
 * SCHED_BATCH: a woken SCHED_BATCH or SCHED_IDLE task never preempts the running one
 * (wakeup_preempt_fair()), so a vCPU thread woken by another vCPU's IPI waits for the
 * next tick or the next reschedule of the sender's thread.
 *
 *   sched_policy batch|idle|other COMMAND [ARG...]
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sched_param sp = { .sched_priority = 0 };
	int policy;

	if (argc < 3)
		goto usage;
	if (!strcmp(argv[1], "batch"))
		policy = SCHED_BATCH;
	else if (!strcmp(argv[1], "idle"))
		policy = SCHED_IDLE;
	else if (!strcmp(argv[1], "other"))
		policy = SCHED_OTHER;
	else
		goto usage;
	if (sched_setscheduler(0, policy, &sp)) {
		perror("sched_setscheduler");
		return 1;
	}
	execv(argv[2], argv + 2);
	perror(argv[2]);
	return 127;
usage:
	fprintf(stderr, "usage: %s batch|idle|other COMMAND [ARG...]\n", argv[0]);
	return 2;
}
