# shellcheck shell=bash
# Common settings for elisa's build and test scripts. Sourced, never run.
#
# Everything generated outside the source tree lives under ELISA_CACHE, so a clean clone
# reuses the kernel, the toolchain pieces and the downloads of earlier runs.

ELISA_TOP=${ELISA_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
ELISA_CACHE=${ELISA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/elisa}

# The kernel source: Debian's linux-source-7.2 at an exact version, with the checksum of the
# .deb that was built and tested. tools/deps.sh falls back (loudly) when it is gone.
KPKG=linux-source-7.2
KPKG_VERSION=7.2.13-1
KPKG_SHA256=30a8c5fc63f9028a62e6d7b3f7f43bee67425dbce2a05fceba83f9b87c92083d

# bindgen for the kernel's Rust build; bookworm's own bindgen (0.60) is too old for 7.2.
BINDGEN_VERSION=0.73.2

# The toolchain that builds the kernel and every module for it. A Rust module must be built by
# the very rustc that built its tree, so all kernel makes go through tools/kmake.sh.
KRUSTC=/usr/bin/rustc
KRUSTDOC=/usr/bin/rustdoc
LIBCLANG_PATH=/usr/lib/llvm-19/lib
BINDGEN=$ELISA_CACHE/tools/bin/bindgen
export LIBCLANG_PATH

# Version of the kernel build recipe (tools/kernel.sh); part of the kernel cache key.
KRECIPE=1

# The unpacked source tree: shared by every kernel variant (each builds in its own O= dir).
KSRC_ROOT=$ELISA_CACHE/src

die() { echo "elisa: error: $*" >&2; exit 1; }

# The Debian archive the private apt configurations read (never the system's apt sources):
# DEBIAN_MIRROR, else the system's first non-security archive.
debian_mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
	local m
	m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$m" ] || m=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
	[ -n "$m" ] || die "no Debian archive found in the apt sources; set DEBIAN_MIRROR"
	echo "$m"
}
warn() { echo "elisa: WARNING: $*" >&2; }
