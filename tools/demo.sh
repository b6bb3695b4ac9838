#!/bin/bash
# make run: the demo. Boots the emulated VMX host (Bochs), loads the real elisa.ko next to
# the kernel's own KVM, and runs two QEMUs there (the patched QEMU of tools/qemu/) whose
# Linux guests share one counter through one service: each QEMU has the same
# -object elisa-region/elisa-service/elisa-grant options, each guest loads elisa_guest.ko
# and calls with elisa-call. Prints what each guest saw, the VM exits per call, and that
# neither guest's memory contains the region (selftests/elisa_qemu_demo.c).
set -uo pipefail
. "$(dirname "$0")/env.sh"
"$ELISA_TOP/tools/deps.sh" | tail -1
SECONDS=0
"$ELISA_TOP/tools/testvm/run.sh" --qemu --tag demo --cpus 1 --nested 0 elisa_qemu_demo > /dev/null
rc=$?
log=$ELISA_TOP/build/runs/demo/serial.txt
echo
echo "---- elisa demo in the emulated host (full log: build/runs/demo/serial.txt)"
grep -E 'elisa: loaded' "$log" | head -1 | sed 's/^\[ *[0-9.]*\] //'
grep -E '^# DEMO ' "$log" | sed -e 's/^# DEMO /  /'
echo "---- checks"
grep -E '^(ok|not ok) ' "$log" | sed 's/^/  /'
echo "---- $SECONDS s"
[ $rc = 0 ] && echo "demo: all checks passed" || echo "demo: FAILED (see the log)"
exit $rc
