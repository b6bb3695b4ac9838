#!/bin/bash
# Build the elisa test-host kernel for one variant, cached outside the work tree.
#   tools/kernel.sh [default|debug]
# default: the one test kernel (tools/kconfig/elisa-test.config): the emulated host's, with
# KVM as modules, and the Linux guests' that QEMU runs inside it. debug: the same with
# lockdep and KASAN, built with clang (tools/kconfig/debug.config).
# The cache key covers the kernel version, the config fragments, the build recipe
# (KRECIPE in env.sh: bump it when this script changes what it builds) and the toolchain
# (rustc, bindgen, C compiler). A second run with the same key does nothing.
# Prints the build directory (the KDIR for modules) on its last line.
set -euo pipefail
. "$(dirname "$0")/env.sh"
variant=${1:-${ELISA_VARIANT:-default}}
K=$ELISA_TOP/tools/kconfig
frags=("$K/elisa-test.config")
cc=gcc
case $variant in
	default) ;;
	debug) frags+=("$K/debug.config"); cc=clang-19 ;;
	*) die "unknown kernel variant '$variant' (default, debug; the kvm-m and guest variants are the default kernel since 2026-12-06)" ;;
esac
src=$(readlink -f "$KSRC_ROOT/current" 2>/dev/null) || die "no kernel source: run make deps"
[ -f "$src/Makefile" ] || die "no kernel source: run make deps"
kver=$(basename "$src")

# key <variant> <cc> <fragment...>: the cache key of a variant's build
key() {
	local v=$1 c=$2; shift 2
	{ echo "$kver $v recipe $KRECIPE"; cat "$@"; "$KRUSTC" --version; "$BINDGEN" --version;
	  "$c" --version | head -1; } | sha256sum | cut -c1-16
}
key=$(key "$variant" "$cc" "${frags[@]}")
obj=$ELISA_CACHE/kernel/$kver-$variant-$key
mkdir -p "$ELISA_CACHE/kernel"
cached() {
	[ -f "$obj/.elisa-built" ] || return 1
	ln -sfn "$(basename "$obj")" "$ELISA_CACHE/kernel/$variant"
	echo "elisa kernel: $variant is cached ($kver, key $key)" >&2
	echo "$obj"
}
cached && exit 0
# One kernel build at a time: concurrent runs (two checkouts, a parallel test) share the
# cache. Whoever waited may find the tree built by the other.
exec 9> "$ELISA_CACHE/kernel/.lock"
flock 9
cached && exit 0

echo "elisa kernel: building $variant ($kver, key $key) in $obj" >&2
mkdir -p "$obj"
export ELISA_VARIANT=$variant KOBJ=$obj
km() { "$ELISA_TOP/tools/kmake.sh" "$@"; }
km tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "${frags[@]}" >/dev/null
km olddefconfig >/dev/null
# Every option we asked for must have survived olddefconfig (a later fragment overrides
# an earlier one).
bad=0
while IFS='|' read -r opt want; do
	# an option asked to be off may also be absent (its dependencies are off)
	case $want in "# "*) grep -qE "^$opt=" "$obj/.config" || continue ;; esac
	if ! grep -qx -- "$want" "$obj/.config"; then
		got=$(grep -E "^(# )?$opt[= ]" "$obj/.config" || echo "$opt missing")
		echo "elisa kernel: config wants '$want', got '$got'" >&2
		bad=1
	fi
done < <(cat "${frags[@]}" | awk '
	/^CONFIG_[A-Za-z0-9_]+=/ { o = $0; sub(/=.*/, "", o); want[o] = $0; if (!(o in seen)) { seen[o] = 1; order[n++] = o } }
	/^# CONFIG_[A-Za-z0-9_]+ is not set/ { o = $2; want[o] = $0; if (!(o in seen)) { seen[o] = 1; order[n++] = o } }
	END { for (i = 0; i < n; i++) print order[i] "|" want[order[i]] }')
[ $bad = 0 ] || die "kernel config did not take (wrong rustc/bindgen/libclang at config time?)"

start=$(date +%s)
if ! km -j"$(nproc)" bzImage modules > "$obj/build.log" 2>&1; then
	tail -40 "$obj/build.log" >&2
	die "kernel build failed; full log: $obj/build.log"
fi
echo "elisa kernel: built $variant in $(( $(date +%s) - start )) s" >&2
touch "$obj/.elisa-built"
# Older builds of this variant (another config or toolchain) are about 400 MB each: keep
# the newest other one, so that two checkouts on different configs (a branch and main)
# do not evict each other's kernel, and drop the rest.
# (No other build is the common case of a new machine: grep then finds nothing, which
# must not end the script under pipefail before the link below.)
{ ls -1dt "$ELISA_CACHE/kernel/"*-"$variant"-* 2>/dev/null | grep -vxF "$obj" || true; } |
	tail -n +2 | while read -r old; do rm -rf "$old"; done
ln -sfn "$(basename "$obj")" "$ELISA_CACHE/kernel/$variant"
echo "$obj"
