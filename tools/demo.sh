#!/bin/bash
# make run: the demo. Boots the emulated VMX host (Bochs), loads the real elisa.ko next to
# the kernel's own KVM, and runs elisa_share_test there: two VMs share one counter region
# through one service; VM 1 writes through elisa_call(), VM 2 reads through elisa_call(),
# neither can see the region through its own memory, and the calls take no VM exit.
# Prints what each VM saw and the exit counts.
set -uo pipefail
. "$(dirname "$0")/env.sh"
"$ELISA_TOP/tools/deps.sh" | tail -1
"$ELISA_TOP/tools/testvm/run.sh" --tag demo --cpus 1 --nested 0 elisa_share_test > /dev/null
rc=$?
log=$ELISA_TOP/build/runs/demo/serial.txt
echo
echo "---- elisa demo in the emulated host (full log: build/runs/demo/serial.txt)"
grep -E 'elisa: loaded' "$log" | head -1 | sed 's/^\[ *[0-9.]*\] //'
grep -E '^# DEMO ' "$log" | sed -e 's/^# DEMO //' -e 's/; /\n    /g' | sed 's/^vm/  vm/'
echo "---- checks"
grep -E '^(ok|not ok) ' "$log" | sed 's/^/  /'
[ $rc = 0 ] && echo "demo: all checks passed" || echo "demo: FAILED (see the log)"
exit $rc
