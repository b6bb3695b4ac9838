#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# elisa_lockdown_test: under kernel lockdown elisa's debugfs files refuse to open. They show
# host-physical addresses (elisa/vms: EPTP-list entries) and the views dumps the trusted
# stacks' bytes; debugfs lets read-only files through at any lockdown level, so elisa
# checks itself (security_locked_down(LOCKDOWN_DEBUGFS) at open).
#
# Lockdown cannot be lifted: this runs last, in the boots of Debian's kernels only (make
# check-distro), which have the lockdown LSM (the test kernel has none). The boot's end
# cannot use Bochs's shutdown port then (I/O ports are locked down): the runner ends it.
#   1. vms_readable: elisa/vms opens before the lockdown
#   2. vms_refused_locked_down: after "integrity" is written to securityfs's lockdown
#      file, opening elisa/vms fails with EPERM
echo "TAP version 13"
echo "1..2"
vms=/sys/kernel/debug/elisa/vms
if head -1 "$vms" > /tmp/vms.out 2>&1; then
	echo "ok 1 vms_readable: $(head -1 /tmp/vms.out)"
else
	echo "not ok 1 vms_readable: $(cat /tmp/vms.out)"
fi
grep -q ' /sys/kernel/security ' /proc/mounts ||
	mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
lockdown=/sys/kernel/security/lockdown
if [ ! -w "$lockdown" ]; then
	echo "not ok 2 vms_refused_locked_down: no $lockdown (no lockdown LSM in this kernel)"
	exit 1
fi
echo "# lockdown before: $(cat $lockdown)"
echo integrity > "$lockdown"
echo "# lockdown after: $(cat $lockdown)"
if head -1 "$vms" > /tmp/vms.out 2>&1; then
	echo "not ok 2 vms_refused_locked_down: read under lockdown: $(cat /tmp/vms.out)"
elif grep -q 'Operation not permitted' /tmp/vms.out; then
	echo "ok 2 vms_refused_locked_down: $(cat /tmp/vms.out)"
else
	echo "not ok 2 vms_refused_locked_down: another error: $(cat /tmp/vms.out)"
fi
