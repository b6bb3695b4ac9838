// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_guest_example.ko: how another driver of a Linux guest calls a service through
 * elisa_guest.ko (guest/linux/elisa_guest.h). At load it finds the gate named by
 * @service, calls it @calls times with @arg (the counter service of tools/services/ adds
 * its argument and returns the new value), and logs the last value; the load fails with
 * the call's errno if a call fails, so that insmod's status tells. It holds nothing
 * afterwards. The QEMU boot loads it (selftests/elisa_qemu_test.c).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include "elisa_guest.h"

static char *service = "counter";
module_param(service, charp, 0444);
MODULE_PARM_DESC(service, "the gate to call, by name (default: counter)");

static ulong arg = 1;
module_param(arg, ulong, 0444);
MODULE_PARM_DESC(arg, "the service's first argument (default: 1)");

static uint calls = 1;
module_param(calls, uint, 0444);
MODULE_PARM_DESC(calls, "how many calls (default: 1)");

static int __init elisa_guest_example_init(void)
{
	int gate = elisa_guest_find(service);
	long ret = 0;
	uint i;

	if (gate < 0) {
		pr_err("no gate named \"%s\" (%d)\n", service, gate);
		return gate;
	}
	for (i = 0; i < calls; i++) {
		ret = elisa_guest_call(gate, arg, 0, 0, 0, 0);
		if (IS_ERR_VALUE(ret)) {
			pr_err("%s(%lu): call %u failed: %ld\n", service, arg, i, ret);
			return ret;
		}
		/*
		 * A large @calls must not hold the CPU (a soft lockup on a guest without
		 * preemption), and a kill of insmod ends it: a driver copies its example.
		 */
		if (i % 1024 == 1023) {
			if (fatal_signal_pending(current))
				return -EINTR;
			cond_resched();
		}
	}
	pr_info("%s(%lu) x %u: %ld\n", service, arg, calls, ret);
	return 0;
}

static void __exit elisa_guest_example_exit(void)
{
}

module_init(elisa_guest_example_init);
module_exit(elisa_guest_example_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("elisa: an example guest driver calling a service through elisa_guest.ko");
