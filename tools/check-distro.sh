#!/bin/bash
# make check-distro: elisa on Debian's own kernels, as an administrator installs it. For each
# kernel of tools/distro/targets:
#   1. a chroot of its suite with its exact toolchain, headers and source packages
#      (tools/distro/chroot.sh; the host's glibc is too old to run them)
#   2. the builder's refusals: a kernel older than 7.2, one without CONFIG_RUST, and a rustc that did not build
#      the kernel (tools/distro/build.sh must exit 2 and say what to install)
#   3. the DKMS package end to end in the chroot: make dkms's script installs the source,
#      DKMS runs the builder (the kernel crate's Rust metadata from the source package, then
#      elisa.ko), signs and installs the module; the builder's --guest builds the guest
#      module, elisa_guest.ko, for the same kernel; then, where the target names one, a
#      second kernel's headers are installed and DKMS's hook must build elisa.ko for it
#   4. a Bochs boot of Debian's own kernel image with Debian's own KVM modules and the
#      elisa.ko DKMS installed, running the selftests (every one with 2 CPUs; with 1, all
#      but $two_cpu_tests: the targets' "cpus"); each boot starts once its kernel is set up
# Every step counts one result, each selftest result one. Needs root (chroot). The last line
# is "N passed, N failed"; the exit status is non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$ELISA_TOP"
log=$ELISA_TOP/build/check-distro
. tools/check-lib.sh
export PATH=$HOME/.cargo/bin:$PATH

# expect_refusal <name> <pattern> <suite> <command...>: one result; the command must exit 2
# (the builder's refusal) and print the pattern.
expect_refusal() {
	local name=$1 pat=$2 suite=$3 rc; shift 3
	tools/distro/in-chroot.sh "$suite" "$@" > "$log/$name.log" 2>&1; rc=$?
	if [ $rc = 2 ] && grep -q -- "$pat" "$log/$name.log"; then
		ok "$name: $(grep -m1 'refused:' "$log/$name.log" | sed 's/^elisa build: refused: //' | cut -c1-110)"
	else
		bad "$name: exit $rc, expected 2 and \"$pat\" (log: ${log#"$ELISA_TOP"/}/$name.log)"; tail -8 "$log/$name.log"
	fi
}

# The boots need elisactl and the selftests, built here for the emulated host (as run.sh
# builds them, which then finds nothing to do).
step "selftests and elisactl (for the boots)"
run selftests-build make -s -C selftests
run elisactl-build env RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=build/target-static \
	cargo build -q --release -p elisactl --target x86_64-unknown-linux-gnu
booting=()
pids=()
matched=0

# distro_boot <name> <cpus>: the Bochs boot of a target whose image is ready, in the
# background: with 2 CPUs every selftest, as the main boot runs them; with 1, all but
# $two_cpu_tests (check-lib.sh). It starts beside the next target's set-up: cold, a
# target's chroot and DKMS builds took about 9 minutes, and the boots waited for both.
# The boots share the selftests and elisactl built above.
distro_boot() {
	local name=$1 cpus=$2 tests=()
	case $cpus in
	2) mapfile -t tests < selftests/order ;;
	# shellcheck disable=SC2086 # one word per test
	1) mapfile -t tests < <(grep -vxF -f <(printf '%s\n' $two_cpu_tests) selftests/order) ;;
	*) bad "$name: cpus $cpus in tools/distro/targets (1 or 2)"; return ;;
	esac
	# Last: Debian's kernels have the lockdown LSM, and lockdown cannot be lifted.
	tests+=(elisa_lockdown_test)
	echo "booting Debian's $name with $cpus CPU(s) in the emulated host (log: ${log#"$ELISA_TOP"/}/boot-distro-$name.log)"
	tools/testvm/run.sh --tag "distro-$name" --prebuilt "build/distro/$name" \
		--cpus "$cpus" --nested 0 --timeout 2400 "${tests[@]}" \
		> "$log/boot-distro-$name.log" 2>&1 &
	pids+=($!)
	booting+=("$name")
}

# DISTRO=<name>[,<name>]: only those targets. The list is read on fd 3, so that nothing
# run inside the loop can eat it from stdin.
while read -r -u 3 name suite release kv rustv bindgenv cc cpus later; do
	[ -n "$name" ] || continue
	case ",${DISTRO:-$name}," in *",$name,"*) ;; *) continue ;; esac
	matched=$((matched + 1))
	series=${kv%%[-~]*}; series=$(echo "$series" | cut -d. -f1,2)
	step "Debian $release ($suite, linux $kv)"
	pkgs=(make bc bison flex libelf-dev libssl-dev python3 cpio kmod xz-utils dwarves dkms openssl
		"$cc" "rustc=$rustv" "rust-src=$rustv" "bindgen=$bindgenv"
		"linux-headers-$release=$kv" "linux-source-$series=$kv")
	root=$ELISA_CACHE/distro/root-$suite
	if ! run "$name-chroot" tools/distro/chroot.sh "$suite" "${pkgs[@]}"; then continue; fi

	# the source as a user has it: the tree's files, without build products
	rm -rf "$root/tmp/elisa-src"; mkdir -p "$root/tmp/elisa-src"
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$root/tmp/elisa-src"

	# refusals
	hdr=/usr/src/linux-headers-$release
	sed 's/^CONFIG_RUST=y$/# CONFIG_RUST is not set/' "$root$hdr/.config" > "$root/tmp/config-norust"
	expect_refusal "$name-refuse-norust" "without CONFIG_RUST" "$suite" \
		bash /tmp/elisa-src/tools/distro/build.sh --kernel "$release" --config /tmp/config-norust
	sed 's/^\(# Linux\/[^ ]* \)[0-9][^ ]*\( Kernel Configuration\)$/\16.12.48\2/' "$root$hdr/.config" > "$root/tmp/config-old"
	expect_refusal "$name-refuse-old" "elisa needs 7.2 or later" "$suite" \
		bash /tmp/elisa-src/tools/distro/build.sh --kernel "$release" --config /tmp/config-old
	printf '#!/bin/sh\necho "rustc 1.96.0 (0000000 2026-05-01) (built from a source tarball)"\n' > "$root/tmp/other-rustc"
	chmod +x "$root/tmp/other-rustc"
	expect_refusal "$name-refuse-rustc" "exactly the rustc that built its kernel" "$suite" \
		env RUSTC=/tmp/other-rustc bash /tmp/elisa-src/tools/distro/build.sh --kernel "$release"

	# DKMS, as make dkms does it
	if ! run "$name-dkms" tools/distro/in-chroot.sh "$suite" bash /tmp/elisa-src/tools/distro/dkms.sh install --kernel "$release"; then
		continue
	fi
	grep -E 'refused|warning:' "$log/$name-dkms.log" | head -5
	# The guest module for the same kernel, as a guest of it builds it (the tree DKMS
	# prepared is reused): elisa_guest.ko's source must build on every supported kernel too.
	run "$name-guest-module" tools/distro/in-chroot.sh "$suite" \
		bash /tmp/elisa-src/tools/distro/build.sh --kernel "$release" --guest
	# A kernel installed later: its source, then its headers, whose postinst runs DKMS's
	# hook. The reinstall runs the hook again on a warm chroot; dkms.sh above left elisa
	# built for the first kernel only.
	if [ "${later:--}" != - ]; then
		lrel=${later%%=*} lkv=${later#*=}
		lseries=$(echo "$lkv" | cut -d. -f1,2)
		tools/distro/in-chroot.sh "$suite" sh -c "export DEBIAN_FRONTEND=noninteractive
			apt-get install -y -qq --no-install-recommends linux-source-$lseries=$lkv &&
			apt-get install -y -qq --no-install-recommends --reinstall linux-headers-$lrel=$lkv" \
			> "$log/$name-upgrade.log" 2>&1
		lko=$(ls "$root/lib/modules/$lrel/updates/dkms/"elisa.ko* 2>/dev/null | head -1)
		lvm=$([ -n "$lko" ] && modinfo -F vermagic "$lko" 2>/dev/null)
		case $lvm in
			"$lrel "*) ok "$name-upgrade: installing linux-headers-$lrel made DKMS build and install elisa.ko for it" ;;
			*) bad "$name-upgrade: no elisa.ko for $lrel after its headers were installed (log: ${log#"$ELISA_TOP"/}/$name-upgrade.log)"
			   tail -15 "$log/$name-upgrade.log" ;;
		esac
	fi
	ko=$(ls "$root/lib/modules/$release/updates/dkms/"elisa.ko* 2>/dev/null | head -1)
	tree=$ELISA_TOP/build/distro/$name
	rm -rf "$tree"; mkdir -p "$tree/arch/x86/boot"
	case $ko in
		*.ko) cp "$ko" "$tree/elisa.ko" ;;
		*.xz) xz -dc "$ko" > "$tree/elisa.ko" ;;
		*.zst) zstd -qdc "$ko" > "$tree/elisa.ko" ;;
		*) bad "$name: DKMS installed no elisa.ko under /lib/modules/$release/updates/dkms"; continue ;;
	esac
	echo "DKMS installed $(basename "$ko") (vermagic $(modinfo -F vermagic "$tree/elisa.ko"); signer: $(modinfo -F signer "$tree/elisa.ko" || true))"

	# Debian's kernel image and its KVM modules, as the packages ship them
	debs=$root/tmp/debs-$name
	mkdir -p "$debs"
	run "$name-image" tools/distro/in-chroot.sh "$suite" sh -c "cd /tmp/debs-$name && apt-get -qq download \
		linux-binary-$release=$kv linux-modules-$release=$kv 2>/dev/null; ls *.deb" || continue
	x=$log/$name-x; rm -rf "$x"; mkdir -p "$x"
	dpkg-deb -x "$debs"/linux-binary-"$release"_*.deb "$x"
	dpkg-deb -x "$debs"/linux-modules-"$release"_*.deb "$x"
	cp "$x/usr/lib/modules/$release/vmlinuz" "$tree/arch/x86/boot/bzImage"
	cp "$root$hdr/.config" "$tree/.config"
	# KVM's and, for elisa_version_test's raw MSR reads, /dev/cpu/N/msr
	for m in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-intel arch/x86/kernel/msr; do
		mkdir -p "$tree/$(dirname "$m")"
		xz -dc "$x/usr/lib/modules/$release/kernel/$m.ko.xz" > "$tree/$m.ko"
		echo "$m.o" >> "$tree/modules.order"
	done
	rm -rf "$x"
	distro_boot "$name" "$cpus"
done 3< <(grep -v '^#' tools/distro/targets)
[ "$matched" -gt 0 ] || bad "no target of tools/distro/targets is named in DISTRO=${DISTRO:-}"

# The boots, started above as each image was ready, side by side (Bochs runs on one core).
step "the selftests on Debian's kernels in the emulated host (${booting[*]:-none})"
for p in "${pids[@]}"; do wait "$p"; done
for name in "${booting[@]}"; do tally "distro-$name"; done

verdict
