#!/bin/bash
# make in the kernel tree with the pinned toolchain (Debian's rustc-web, bindgen from the cache,
# libclang 19). Every kernel and module make goes through here, config targets included:
# Kconfig drops CONFIG_RUST when it sees another rustc, and a module must be built by the rustc
# that built its tree.
#   tools/kmake.sh [VARIANT=<v>] <make args>     (O= and -C are filled in for the variant)
set -euo pipefail
. "$(dirname "$0")/env.sh"
variant=${ELISA_VARIANT:-default}
obj=${KOBJ:-$(readlink -f "$ELISA_CACHE/kernel/$variant" 2>/dev/null || true)}
src=$(readlink -f "$KSRC_ROOT/current" 2>/dev/null) || die "no kernel source: run make deps"
extra=()
[ "$variant" = debug ] && extra+=(LLVM=-19)
[ -n "$obj" ] && extra+=(O="$obj")
exec make -C "$src" RUSTC="$KRUSTC" HOSTRUSTC="$KRUSTC" RUSTDOC="$KRUSTDOC" BINDGEN="$BINDGEN" \
	"${extra[@]}" "$@"
