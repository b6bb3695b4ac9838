# shellcheck shell=bash
# The counting shared by tools/check.sh (make check) and tools/check-debug.sh (make
# check-debug). Sourced, never run, after env.sh and with $log set to the log directory.
# Every step counts: each cargo test and each selftest result is one, each build one. The
# sourcing script ends with verdict: "N passed, N failed", non-zero on any failure.
pass=0 fail=0
mkdir -p "$log"
t0=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - t0 )) s)"; }
ok() { pass=$((pass + 1)); echo "PASS $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
run() { # run <name> <cmd...>: one result for a command; its status is the command's
	local name=$1; shift
	if "$@" > "$log/$name.log" 2>&1; then ok "$name"; return 0; fi
	bad "$name (log: ${log#"$ELISA_TOP"/}/$name.log)"; tail -25 "$log/$name.log"
	return 1
}
# The selftests that need 2 emulated CPUs: elisa_hostile_guest_test's two-vCPU cases need
# a second host CPU (a guest spinning with IF = 0 keeps its CPU in Bochs). A boot with 1
# CPU leaves them out (Bochs runs every emulated CPU in its one thread, so a second CPU
# costs wall time); elisa_attach_test leaves out its migrate case by itself.
two_cpu_tests="elisa_hostile_guest_test"
boot() { # boot <tag> <run.sh args...>: the results of one Bochs boot
	boot_only "$@"
	tally "$1"
}
boot_only() { # boot_only <tag> <run.sh args...>: one Bochs boot, to be tallied later
	local tag=$1; shift
	tools/testvm/run.sh --tag "$tag" "$@" > "$log/boot-$tag.log" 2>&1
}
tally() { # tally <tag>: count the results of a boot whose run.sh output is boot-<tag>.log
	local tag=$1
	grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$log/boot-$tag.log"
	local line
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log/boot-$tag.log" | tail -1)
	if [ -z "$line" ]; then bad "boot $tag: no verdict"; return; fi
	pass=$((pass + ${line%% passed*})); fail=$((fail + $(echo "$line" | sed 's/.*, \([0-9]*\) failed/\1/')))
}
verdict() {
	echo
	echo "=== done in $(( $(date +%s) - t0 )) s"
	echo "$pass passed, $fail failed"
	[ $fail = 0 ]
}
