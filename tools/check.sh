#!/bin/bash
# make check: the whole suite, as CI runs it on a fresh Debian 12 machine.
#   1. dependencies (tools/deps.sh, idempotent)
#   2. host-side Rust: cargo test (unit, property, ABI and doc tests), clippy, rustfmt
#   3. the test kernel (cached), elisa.ko against it, the guest crate for the kernel's target,
#      the Linux guest module and elisa-call, the patched QEMU, the selftest binaries
#   4. the selftests inside the emulated VMX host (Bochs), with the real module and KVM,
#      and QEMU running Linux guests there
# Every step counts: each cargo test and each selftest result is one, each build one.
# The last line is "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$ELISA_TOP"
log=$ELISA_TOP/build/check
. tools/check-lib.sh

step "dependencies"
if ! tools/deps.sh > "$log/deps.log" 2>&1; then
	tail -20 "$log/deps.log"; bad deps; echo "$pass passed, $fail failed"; exit 1
fi
tail -1 "$log/deps.log"
export PATH=$HOME/.cargo/bin:$PATH

# The host-side Rust checks need no kernel: they run alongside the kernel builds and the
# boots (Bochs uses one core, and its figures count instructions, not time).
(
	cargo test --workspace --color never -- --show-output > "$log/cargo-test.log" 2>&1
	echo $? > "$log/cargo-test.rc"
	{ cargo clippy --workspace --all-targets --color never -- -D warnings &&
	  cargo clippy --manifest-path selftests/rust-guest/Cargo.toml --target-dir target/rust-guest \
		--color never -- -D warnings &&
	  cargo clippy --manifest-path tools/services/switch/Cargo.toml --target x86_64-unknown-none \
		--target-dir target/switch-service --color never -- -D warnings; } > "$log/clippy.log" 2>&1
	echo $? > "$log/clippy.rc"
) &
cargo_pid=$!

step "test kernel, elisa.ko, selftests"
# One kernel for the emulated host and for the Linux guests QEMU runs there, with KVM as
# modules (tools/kconfig/elisa-test.config)
run kernel tools/kernel.sh default
run module make module
if grep -E '^(warning|error)' "$log/module.log"; then bad "module build has warnings"; fi
# What runs between a VM exit and KVM's exit path: no indirect branch, no ftrace hook, one RET
run exit-path tools/exit-path-check.sh
run guest-kernel tools/guest-kernel.sh
# The Linux guest modules (for the same kernel) and the guest's user programs
run guest-module make guest-module
if grep -E '^(warning|error)|warning:' "$log/guest-module.log"; then bad "guest module build has warnings"; fi
run guest-tools make guest-tools
# QEMU with the elisa objects (tools/qemu/, cached like the kernel)
run qemu make qemu
# the emulated host: Bochs built without its debugger (tools/bochs/, cached)
run bochs make bochs
run selftests-build make -s -C selftests

step "selftests in the emulated host (Bochs)"
# Two lanes, one core each (Bochs runs on one), of about the same wall time (about 10
# minutes warm): the main boot and the short ones; the QEMU boot (whose Linux guests boot
# the test kernel itself), the halt and the bench.
# Their results are counted in this order once both lanes are done. run.sh builds and makes
# each boot's image under a lock, so that a lane never takes a module the other is
# building for another kernel.
(
# QEMU running Linux guests: Debian's QEMU served by elisactl, the patched QEMU's objects
# and QMP object-add/object-del (elisa_qemu_test); two guests talking IP over the elisa
# switch (elisa_qemu_net_test).
boot_only qemu --qemu --cpus 1 --nested 0 elisa_qemu_test elisa_qemu_net_test
# The host halts while an attached VM calls (KVM turns VMX off under running vCPUs): no
# oops, and KVM's failed-entry message shows that the vCPU entered after VMXOFF.
boot_only halt --cpus 2 --nested 0 --halt 'dump_invalid_vmcs' elisa_halt_test
# The benchmark's sanity checks (its exit counts); the figures are for make bench. Its two
# slowest grant rows (1 GiB and 8 x 64 MiB in 4 KiB leaves, about 40 s of the boot's wall
# time) are left to make bench: ELISA_BENCH_QUICK.
boot_only bench --bench --env ELISA_BENCH_QUICK=1
# The kernel's default CPU mitigations, as a distribution's host runs (the other boots have
# mitigations=off): retpolines and the return-stack fill at VM exit, which the exit
# trampoline's rare path runs too, buffer clearing and KVM's L1D flush at VM entry.
boot_only mitigations --mitigations --cpus 2 --nested 0 elisa_call_test elisa_security_test \
	elisa_hostile_guest_test
) &
lane=$!
# Every selftest, 2 CPUs, kvm_intel.nested=0 (elisa refuses to attach with nested=1). About
# 530 s on an otherwise idle machine, 850 s beside a kernel build: a limit with room.
boot_only main --cpus 2 --nested 0 --timeout 1800
# nested=1: attach is refused (the attach test then checks only that); KVM guests still run.
boot_only nested1 --cpus 1 --nested 1 elisa_attach_test kvm_guest_test
# kvm_intel.ept=0 (shadow paging): attach is refused (elisa_security_test runs that case).
boot_only ept0 --cpus 1 --nested 0 --ept 0 elisa_security_test
# Bochs's Broadwell, whose CPU has SMAP (the Haswell of the boots above has not): a user
# grant's gate opens under the guest's SMAP (elisa_services_test smep_user_pages_fault).
boot_only broadwell --model broadwell_ult --cpus 1 --nested 0 --env ELISA_EXPECT_SMAP=1 elisa_services_test
wait $lane
for tag in main nested1 ept0 broadwell halt qemu bench mitigations; do
	tally "$tag"
done

step "host-side Rust: cargo test, clippy, rustfmt"
wait $cargo_pid
crc=$(cat "$log/cargo-test.rc")
grep -E '^property |cases|^test result:' "$log/cargo-test.log" | grep -v '^test result: ok. 0 passed' || true
p=$(awk '/^test result:/ {s += $4} END {print s + 0}' "$log/cargo-test.log")
f=$(awk '/^test result:/ {s += $6} END {print s + 0}' "$log/cargo-test.log")
pass=$((pass + p)); fail=$((fail + f))
if [ "$crc" != 0 ] && [ "$f" = 0 ]; then bad "cargo test (did not build?)"; tail -30 "$log/cargo-test.log"; fi
echo "cargo test: $p passed, $f failed"
if [ "$(cat "$log/clippy.rc")" = 0 ]; then ok clippy; else bad "clippy (log: build/check/clippy.log)"; tail -25 "$log/clippy.log"; fi
run rustfmt-host cargo fmt --check
run rustfmt-rust-guest cargo fmt --manifest-path selftests/rust-guest/Cargo.toml --check
run rustfmt-switch-service cargo fmt --manifest-path tools/services/switch/Cargo.toml --check
run rustfmt-module rustfmt --check --edition 2021 rust/module/elisa_main.rs
run rustfmt-guest-module rustfmt --check --edition 2021 guest/linux/elisa_guest_main.rs

verdict
