#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# elisa_halt_test: the host halts while an attached VM runs. At a halt, reboot or kexec
# KVM turns VMX off on every CPU (kvm_shutdown()) while vCPU threads go on running, and
# tolerates its own VMREADs and VMWRITEs faulting then; elisa's entry probe must not touch
# the VMCS outside VMX operation (before the fix: an "invalid opcode" oops in
# elisa_rust_kvm_entry on the vCPU's next entry).
#
# Its own boot only, with 2 CPUs (tools/check.sh: run.sh --halt): elisa_busy_vm calls
# without pause on CPU 1, this script halts the host from CPU 0 (both pinned). The runner ends the
# boot 10 s after the halt, requires KVM's failed-entry message (the vCPU did enter after
# VMXOFF) and fails on any oops.
#   1. vcpu_calling: the attached VM has made its first burst of calls (waited for at
#      most 100 s, less than init's 120 s per test, so that a slow start is reported);
#      then the halt
echo "TAP version 13"
echo "1..1"
# The vCPU on CPU 1, this script (and so the halt) on CPU 0: a vCPU thread on the halting
# CPU would never run after the halt, and the boot would show nothing (one of two boots on
# 2026-12-07 did, most likely for that reason).
taskset -p 1 $$ > /dev/null
taskset 2 /selftests/elisa_busy_vm -p 0 -b 200 -n 1000000 > /tmp/busy.out 2>&1 &
i=0
while [ $i -lt 100 ] && ! grep -q "busy: calling" /tmp/busy.out; do
	sleep 1
	i=$((i + 1))
done
sed 's/^/# /' /tmp/busy.out
if grep -q "busy: calling" /tmp/busy.out; then
	echo "ok 1 vcpu_calling: halting the host with the VM attached and calling"
else
	echo "not ok 1 vcpu_calling: elisa_busy_vm did not start calling in 100 s"
fi
sync
halt -f
