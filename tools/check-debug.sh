#!/bin/bash
# make check-debug: the whole selftest suite on the debug kernel (clang 19, KASAN, lockdep),
# as CI runs it after make check (which installs the dependencies).
#   1. the debug kernel (cached; about 8 minutes cold on 2 cores, alone), elisa.ko against
#      it (no warning allowed), the selftest binaries
#   2. every selftest in selftests/order inside the emulated VMX host (Bochs), in two
#      boots side by side (2 emulated CPUs each), kvm_intel.nested=0; a KASAN or lockdep
#      report fails the run like any warning
# Every step counts: each build one, each selftest result one. The last line is
# "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$ELISA_TOP"
log=$ELISA_TOP/build/check-debug
. tools/check-lib.sh
export PATH=$HOME/.cargo/bin:$PATH

step "debug kernel, elisa.ko, selftests"
run kernel-debug tools/kernel.sh debug
built=$fail
run module-debug make module VARIANT=debug
if grep -E '^(warning|error)' "$log/module-debug.log"; then bad "module build has warnings"; fi
run selftests-build make -s -C selftests

step "selftests in the emulated host (Bochs), debug kernel"
if [ "$built" != 0 ]; then
	# run.sh would only build the kernel again, for as long, and fail the same way
	bad "boot debug: not run, the debug kernel did not build"
else
	# KASAN and lockdep make the kernel several times slower: a longer limit per selftest
	# (ELISA_TEST_TIMEOUT, seconds) and for the boot. The suite runs in two boots side by
	# side, one core each: debug-2 the security test (for real concurrency under KASAN)
	# and $two_cpu_tests (check-lib.sh) with 2 CPUs; debug-1 every other selftest of
	# selftests/order with 1 CPU (elisa_attach_test's migrate case is left to the main
	# boot). The fuzzer makes 2000 calls from another seed than make check's 5000:
	# other paths under KASAN, in a third of the time. elisa_gate_test's two sweeps of the
	# gate page land at every 8th offset outside the gate's code at both ends (764 of 4096
	# landings each; the main boot and the Debian boots land at all): they were 620 s of
	# debug-1's 1672 s in CI. Alone on the 2 cores: debug-1 618 s, debug-2 472 s. The boots'
	# limit has room for a run beside a cold make check-distro (Debian chroots and DKMS
	# builds on the cores too).
	# Both boots load elisa with entry_hook=tracepoint: the default kernel's boots (make
	# check) and Debian's run the suite on the ftrace direct call, these on the kvm_entry
	# tracepoint (design.rst, "The entry hook").
	second="elisa_security_test $two_cpu_tests"
	for t in $second; do
		grep -qx "$t" selftests/order || bad "selftests/order has no $t (tools/check-debug.sh splits the suite by name)"
	done
	# shellcheck disable=SC2086 # one word per test
	mapfile -t first < <(grep -vxF -f <(printf '%s\n' $second) selftests/order)
	debug_boot() { boot_only "$1" --variant debug --cpus "$2" --nested 0 --timeout 3000 \
		--module-param entry_hook=tracepoint --env ELISA_TEST_TIMEOUT=600 "${@:3}"; }
	# shellcheck disable=SC2086
	debug_boot debug-2 2 $second &
	lane=$!
	debug_boot debug-1 1 --env ELISA_GATE_STRIDE=8 --env ELISA_FUZZ_CALLS=2000 \
		--env ELISA_FUZZ_SEED=0xe115af0220261206 "${first[@]}"
	wait $lane
	tally debug-1
	tally debug-2
fi

verdict
