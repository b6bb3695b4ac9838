#!/bin/bash
# make check-kvm: the kernel tree's own x86 KVM selftests beside elisa, as CI runs it after
# make check (which installs the dependencies and builds the test kernel).
#   1. the test kernel (cached), elisa.ko, the KVM selftests of the cached kernel source
#      listed "run" in selftests/kvm-suite/list, elisa_busy_vm; the list itself: every
#      x86 test of the tree's Makefile.kvm is there, run or skipped with its reason
#   2. three Bochs boots, 1 CPU each, two at a time (selftests/kvm-suite/kvm_suite runs
#      the tests):
#      kvm-1, kvm-2  kvm_intel.nested=0, half of the tests each: each test without elisa,
#               then with elisa loaded and a busy VM attached beside it (calls in
#               bursts, detach and attach again)
#      kvm-nested1  kvm_intel.nested=1: KVM's nested VMX tests, without elisa, then with
#               elisa loaded (it refuses to attach with nested=1: nothing attached)
# Every step counts: each build one, each run of a test one (a skip fails). The last line
# is "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$ELISA_TOP"
log=$ELISA_TOP/build/check-kvm
. tools/check-lib.sh
export PATH=$HOME/.cargo/bin:$PATH

# Every x86 test of the kernel tree's Makefile.kvm has a line in the list: "run <boot>
# <test> <timeout> [args]" or "skip <test> <emulator|config|elisa|time> <reason>".
check_list() {
	local mk list=selftests/kvm-suite/list ok=0
	mk=$(readlink -f "$KSRC_ROOT/current")/tools/testing/selftests/kvm/Makefile.kvm
	[ -f "$mk" ] || { echo "no $mk"; return 1; }
	for t in $(awk '$1 ~ /^TEST_GEN_PROGS_(COMMON|x86|EXTENDED_x86)$/ && $3 !~ /^\$/ { print $3 }' "$mk"); do
		if ! awk -v t="$t" '($1 == "run" && $3 == t) || ($1 == "skip" && $2 == t) { f = 1 } END { exit !f }' "$list"; then
			echo "$t: neither run nor skipped in $list"; ok=1
		fi
	done
	awk '$1 == "skip" && ($3 !~ /^(emulator|config|elisa|time)$/ || NF < 4) { print "bad skip line: " $0; bad = 1 }
	     $1 == "run" && ($2 !~ /^(main|nested)$/ || $4 !~ /^[0-9]+$/) { print "bad run line: " $0; bad = 1 }
	     END { exit bad }' "$list" || ok=1
	echo "$(grep -c '^run ' "$list") runs, $(grep -c '^skip ' "$list") skipped"
	return $ok
}

step "test kernel, elisa.ko, the kernel's KVM selftests"
run kernel tools/kernel.sh default
run module make module
if grep -E '^(warning|error)' "$log/module.log"; then bad "module build has warnings"; fi
run kvm-suite-list check_list
run kvm-suite-build make -s -C selftests kvm-suite

step "the kernel's KVM selftests in the emulated host (Bochs), without and with elisa"
# 1 CPU each (a second one about doubles the wall time per emulated second); per-test
# timeouts are in the list. kvm.force_emulation_prefix=1: fastops_test and
# nested_emulation_test use KVM's forced emulation prefix.
# The main boot's tests run in two boots of half of them each (ELISA_KVM_PART: every
# other test of the list, about the same emulated time), one per core: one lane runs
# kvm-1, the other kvm-nested1 and then kvm-2. They are counted in this order afterwards.
kvm_boot() { # kvm_boot <tag> <main|nested> <nested=> <part>
	boot_only "$1" --cpus 1 --nested "$3" --timeout 1200 --env ELISA_TEST_TIMEOUT=1150 \
		--env ELISA_KVM_BOOT="$2" --env ELISA_KVM_PART="$4" --env kvm.force_emulation_prefix=1 \
		--add selftests/out/kvm-suite kvm-suite/kvm_suite
}
( kvm_boot kvm-nested1 nested 1 1/1; kvm_boot kvm-2 main 0 2/2 ) &
lane=$!
kvm_boot kvm-1 main 0 1/2
wait $lane
tally kvm-1
tally kvm-2
tally kvm-nested1
# The parts together ran each test of the list once per pass: none lost between them.
complete() {
	local want got
	for b in main nested; do
		want=$(awk -v b="$b" '$1 == "run" && $2 == b { print $3 }' selftests/kvm-suite/list | sort)
		case $b in main) tags="kvm-1 kvm-2" ;; *) tags=kvm-nested1 ;; esac
		got=$(for t in $tags; do
			sed -nE 's/^(not )?ok [0-9]+ ([^ ]+) without elisa.*/\2/p' "build/runs/$t/serial.txt"
		done | sort)
		[ "$want" = "$got" ] || { echo "boot $b: the parts ran other tests than the list's"; diff <(echo "$want") <(echo "$got"); return 1; }
	done
	echo "every test of the list ran in its boot"
}
run kvm-suite-complete complete

# The with/without table: one row per test and boot, from the boots' KTAP lines
# ("ok N <test> without|with elisa[ (args)] # <s> s...").
table() {
	printf '%-8s %-44s %-16s %s\n' boot test "without elisa" "with elisa"
	for tag in kvm-1 kvm-2 kvm-nested1; do
		[ -f "build/runs/$tag/serial.txt" ] || continue
		awk -v boot="$tag" '
			/^(ok|not ok) [0-9]+ / {
				st = ($1 == "ok") ? "ok" : "FAIL"; line = $0
				sub(/^(ok|not ok) [0-9]+ /, "", line)
				split(line, half, " # "); desc = half[1]; secs = half[2]
				sub(/ s.*/, " s", secs)
				if (match(desc, / (without|with) elisa/)) {
					pass = substr(desc, RSTART + 1, RLENGTH - 7)
					name = substr(desc, 1, RSTART - 1) substr(desc, RSTART + RLENGTH)
					if (!(name in seen)) { seen[name] = 1; order[n++] = name }
					cell[name, pass] = st " " secs
				}
			}
			END { for (i = 0; i < n; i++)
				printf "%-8s %-44s %-16s %s\n", boot, order[i],
				       cell[order[i], "without"], cell[order[i], "with"] }
		' "build/runs/$tag/serial.txt"
	done
}
step "with and without elisa (seconds of emulated time)"
table

verdict
