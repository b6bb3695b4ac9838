#!/bin/bash
# make run: the demo. Boots the emulated VMX host (Bochs), loads the real elisa.ko next to
# the kernel's own KVM, runs a KVM guest, and shows what the module reports.
set -uo pipefail
. "$(dirname "$0")/env.sh"
"$ELISA_TOP/tools/deps.sh" | tail -1
"$ELISA_TOP/tools/testvm/run.sh" --tag demo --cpus 1 elisa_module_test elisa_version_test kvm_smoke_test
rc=$?
log=$ELISA_TOP/build/runs/demo/serial.txt
echo
echo "---- what the emulated host printed (full log: build/runs/demo/serial.txt)"
grep -E 'Linux version|elisa: |^ok |^not ok |^# caps|ELISA-INIT: (started|done|elisactl)|^    ' "$log" |
	grep -v 'ELISA-DMESG' | head -40
exit $rc
