#!/bin/bash
# Build elisa's Bochs: the emulated VMX host every boot of tools/testvm/run.sh runs in,
# cached outside the work tree.
#   tools/bochs/build.sh
# Installs $ELISA_CACHE/bochs/<version>-<key>/bochs and prints that path on its last line;
# progress goes to stderr and the build's output to build.log beside it. The key covers
# the source tarball, this script (the configure options below) and the compiler; a second
# run with the same key does nothing.
#
# Why not Debian's bochs package: it is built with the internal debugger and the
# instrumentation hooks, which cost every emulated instruction and rule out Bochs's
# handlers-chaining and trace-linking speedups. Built without them, with the same CPU
# features, a selftest boot runs about 2.7 times faster (one boot of elisa_views_test:
# 16 s of wall time against 44 s, the same emulated uptime), and the boots are most of
# make check's and CI's time. No GUI (nogui), no plugins, no sound or USB; the BIOS and
# VGA BIOS stay Debian's (packages bochsbios and vgabios).
#
# The source: the upstream tarball that Debian 13 packages (bochs_3.0+dfsg.orig.tar.xz,
# upstream's 3.0 without its prebuilt blobs), read from the Debian archive and checked
# against the checksum pinned below, with the project's patches of tools/bochs/patches
# (each says what it fixes).
# Env: DEBIAN_MIRROR (default: the system's first non-security Debian archive).
set -euo pipefail
# shellcheck source=tools/env.sh
. "$(dirname "$0")/../env.sh"

BOCHS_VERSION=3.0
BOCHS_TARBALL=bochs_3.0+dfsg.orig.tar.xz
BOCHS_SHA256=78f6c73d4a6472d5130a87ab9dc306d02c7c71ed8e25b3a8ef642e2a7acd282b
# The CPU features of Debian's build (so that every CPU model behaves as there), minus the
# debugger and instrumentation; x86-debugger is the guest's debug registers (DR0-DR7).
CONFIGURE=(--with-nogui --without-x --without-x11 --disable-docbook --disable-plugins
	--enable-x86-64 --enable-smp --enable-cpu-level=6 --enable-vmx=2 --enable-svm
	--enable-avx --enable-evex --enable-cet --enable-protection-keys --enable-memtype
	--enable-a20-pin --enable-fpu --enable-3dnow --enable-x86-debugger --enable-pci
	--enable-all-optimizations --enable-repeat-speedups --enable-handlers-chaining
	--enable-trace-linking --disable-debugger --disable-instrumentation --disable-show-ips)

HERE=$(cd "$(dirname "$0")" && pwd)
B=$ELISA_CACHE/bochs
DL=$ELISA_CACHE/dl/bochs
mkdir -p "$B" "$DL"

key=$({ echo "bochs $BOCHS_VERSION $BOCHS_SHA256"; cat "$HERE/build.sh" "$HERE"/patches/*.patch
	g++ --version | head -1; } | sha256sum | cut -c1-16)
inst=$B/$BOCHS_VERSION-$key
cached() {
	[ -f "$inst/.elisa-built" ] && [ -x "$inst/bochs" ] || return 1
	echo "$inst/bochs"
}
cached && exit 0
for c in g++ make xz curl sha256sum patch; do
	command -v "$c" >/dev/null || die "$c is missing: run make deps"
done
# One build at a time (two checkouts, two lanes of make check share the cache).
exec 9> "$B/.lock"
flock 9
cached && exit 0

tarball=$DL/$BOCHS_TARBALL
if ! { [ -f "$tarball" ] && echo "$BOCHS_SHA256  $tarball" | sha256sum -c --quiet - >/dev/null 2>&1; }; then
	M=$(debian_mirror)
	echo "elisa bochs: downloading the source ($BOCHS_TARBALL)" >&2
	curl -fsS --retry 3 --connect-timeout 30 --max-time 600 -o "$tarball.part" \
		"$M/pool/main/b/bochs/${BOCHS_TARBALL//+/%2b}" ||
		die "could not download $BOCHS_TARBALL from the Debian archive at $M (DEBIAN_MIRROR= names another)"
	echo "$BOCHS_SHA256  $tarball.part" | sha256sum -c --quiet - ||
		{ rm -f "$tarball.part"; die "checksum mismatch on $BOCHS_TARBALL (removed; run again)"; }
	mv "$tarball.part" "$tarball"
fi

work=$B/build-$key
log=$inst/build.log
rm -rf "$inst" "$work"
mkdir -p "$inst" "$work"
echo "elisa bochs: building $BOCHS_VERSION (key $key) in $work" >&2
fail() { tail -30 "$log" >&2 2>/dev/null || true; die "Bochs build failed ($1); full log: $log"; }
start=$(date +%s)
tar -xJf "$tarball" -C "$work" --strip-components=1 >> "$log" 2>&1 || fail "unpack"
for p in "$HERE"/patches/*.patch; do
	echo "applying $(basename "$p")" >> "$log"
	patch -d "$work" -p1 --batch --forward < "$p" >> "$log" 2>&1 || fail "$(basename "$p") does not apply"
done
(cd "$work" && CFLAGS="-O2 -pipe" CXXFLAGS="-O2 -pipe" ./configure "${CONFIGURE[@]}") >> "$log" 2>&1 ||
	fail configure
# what the speed rests on: a configure that silently dropped these would be slow again
for want in 'handlers chaining speedups... yes' 'trace linking speedups support... yes' \
	'Bochs internal debugger support... no' 'VMX support... 2'; do
	grep -q "$want" "$log" || fail "configure did not give '$want'"
done
make -C "$work" -j"$(nproc)" bochs >> "$log" 2>&1 || fail make
install -m 0755 -s "$work/bochs" "$inst/bochs"
rm -rf "$work"
touch "$inst/.elisa-built"
echo "elisa bochs: built in $(( $(date +%s) - start )) s" >&2
# Builds of other keys (another checkout's script, another compiler; about 20 MB each) are
# kept: a boot of that checkout may be running one.
echo "$inst/bochs"
