#!/bin/bash
# Build elisa's QEMU: Debian 13's QEMU 10.0 source with the patches of tools/qemu/patches
# (the elisa-region, elisa-service and elisa-grant objects), configured as a minimal KVM-only
# qemu-system-x86_64 with vhost-net (the virtio-net side of the network benchmark), cached
# outside the work tree.
#   tools/qemu/build.sh
# Installs into $ELISA_CACHE/qemu/<version>-<key>/: bin/qemu-system-x86_64 (stripped) and
# share/qemu/ with the firmware a "-machine pc -kernel" boot reads. The key covers the QEMU
# version, the patches, this script, the firmware and the compiler; a second run with the
# same key does nothing. Prints the install directory on its last line; progress goes to
# stderr and the build's output to build.log in the install directory.
#
# The source comes through a private apt configuration (download only, as tools/deps.sh
# fetches the kernel source; the system's apt sources are never changed): the pinned
# version below, or, loudly, the newest 10.0.x that trixie has when it is gone.
# Env: DEBIAN_MIRROR (default: the system's first non-security Debian archive).
set -euo pipefail
# shellcheck source=tools/env.sh
. "$(dirname "$0")/../env.sh"

# The tested source package: its .dsc's sha256 (the .dsc holds the tarballs' checksums).
QEMU_PIN=1:10.0.13+ds-0+deb13u1
QEMU_PIN_DSC_SHA256=a426c892e5369058c3423816c8625bc8010bb5a58ece57261f62b64ee4d765ad
QEMU_SUITES=(trixie trixie-updates)
# QEMU 10.0 needs meson >= 1.5; bookworm has 1.0.1. Installed into a venv in the cache.
MESON_VERSION=1.5.0
# The firmware of a "-machine pc" boot, which Debian's "+ds" source tarball leaves out:
# Debian 12's seabios and qemu-system-data (tools/deps.sh installs them).
FIRMWARE=(/usr/share/seabios/bios-256k.bin /usr/share/seabios/vgabios-stdvga.bin
	/usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/kvmvapic.bin)

HERE=$(cd "$(dirname "$0")" && pwd)
Q=$ELISA_CACHE/qemu
DL=$ELISA_CACHE/dl/qemu
mkdir -p "$Q" "$DL"

for f in "${FIRMWARE[@]}"; do
	[ -f "$f" ] || die "$f is missing: run make deps (packages seabios, qemu-system-data)"
done
for c in ninja pkg-config dpkg-source patch python3; do
	command -v "$c" >/dev/null || die "$c is missing: run make deps"
done

# The source package version to build: the pin, or the fallback chosen for this pin before.
version=$QEMU_PIN
pin="" chosen=""
[ ! -f "$DL/chosen" ] || read -r pin chosen < "$DL/chosen" || true
[ "$pin" != "$QEMU_PIN" ] || [ -z "$chosen" ] || version=$chosen
upstream() { local v=${1#*:}; echo "${v%-*}"; }
keyof() {
	{ echo "qemu $1 meson $MESON_VERSION"; cat "$HERE"/patches/*.patch "$0";
	  sha256sum "${FIRMWARE[@]}" | cut -d' ' -f1; gcc --version | head -1; } | sha256sum | cut -c1-16
}
instof() { echo "$Q/$(upstream "$1")-$(keyof "$1")"; }
cached() {
	[ -f "$(instof "$version")/.elisa-built" ] || return 1
	echo "elisa qemu: cached ($(upstream "$version"), key $(keyof "$version"))" >&2
	instof "$version"
}
cached && exit 0
# One QEMU build at a time (two checkouts share the cache).
exec 9> "$Q/.lock"
flock 9
cached && exit 0

# ---- source ----------------------------------------------------------------------------------
dsc_of() { echo "$DL/qemu_${1#*:}.dsc"; }

if [ ! -f "$(dsc_of "$version")" ]; then
	A=$ELISA_CACHE/apt-qemu
	mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
	M=$(debian_mirror)
	for s in "${QEMU_SUITES[@]}"; do echo "deb-src $M $s main"; done > "$A/sources.list"
	APTO=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null
	      -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache"
	      -o Dir::State::Status=/dev/null -o APT::Sandbox::User=root)
	echo "elisa qemu: reading the QEMU source index (private apt configuration, download only)" >&2
	apt-get "${APTO[@]}" -qq update
	versions=$(apt-cache "${APTO[@]}" showsrc qemu 2>/dev/null | awk '$1 == "Version:" {print $2}' | sort -u)
	if echo "$versions" | grep -qxF "$QEMU_PIN"; then
		version=$QEMU_PIN
	else
		version=$(echo "$versions" | grep -E '^1:10\.0\.' | sort -V -r | head -1)
		[ -n "$version" ] || die "no QEMU 10.0.x source in ${QEMU_SUITES[*]} (found: ${versions:-none})"
		warn "****************************************************************"
		warn "pinned QEMU $QEMU_PIN is gone from the archive; using $version"
		warn "this QEMU version has not been validated with elisa's patches"
		warn "****************************************************************"
	fi
	# apt checks every file against the signed index; the .dsc lists the tarballs.
	(cd "$DL" && apt-get "${APTO[@]}" -qq source --download-only "qemu=$version" >/dev/null) ||
		die "could not download the source package qemu $version (.dsc, orig and debian tarballs)"
	echo "$QEMU_PIN $version" > "$DL/chosen"
	cached && exit 0
fi
dsc=$(dsc_of "$version")
if [ "$version" = "$QEMU_PIN" ]; then
	echo "$QEMU_PIN_DSC_SHA256  $dsc" | sha256sum -c --quiet - ||
		{ rm -f "$dsc"; die "checksum mismatch on $dsc (removed; run again)"; }
fi
# The tarballs against the .dsc's Checksums-Sha256 (dpkg-source -x checks them again).
(cd "$DL" && sed -n '/^Checksums-Sha256:/,/^[^ ]/{/^ /p}' "$dsc" | awk '{print $1 "  " $3}' |
	sha256sum -c --quiet -) || die "a tarball of $dsc does not match its checksum"

# ---- build -------------------------------------------------------------------------------------
inst=$(instof "$version")
key=$(keyof "$version")
work=$Q/build-$key
log=$inst/build.log
rm -rf "$inst" "$work"
mkdir -p "$inst" "$work"
echo "elisa qemu: building $(upstream "$version") (key $key) in $work" >&2
fail() { tail -40 "$log" >&2; die "QEMU build failed ($1); full log: $log"; }
start=$(date +%s)

# dpkg-source -x applies Debian's own patches: trixie's QEMU as Debian ships it, and what
# makes the "+ds" tarball (which drops prebuilt blobs) build at all: pc-bios/meson.build
# no longer unpacks the removed edk2 images, and the pycotap test dependency is dropped.
dpkg-source -x "$dsc" "$work/src" >> "$log" 2>&1 || fail "dpkg-source -x"
for p in "$HERE"/patches/*.patch; do
	echo "applying $(basename "$p")" >> "$log"
	patch -d "$work/src" -p1 --batch --forward < "$p" >> "$log" 2>&1 || fail "$(basename "$p") does not apply"
done

venv=$Q/venv-meson-$MESON_VERSION
if [ ! -x "$venv/bin/meson" ]; then
	rm -rf "$venv"
	{ python3 -m venv "$venv" && "$venv/bin/pip" install -q "meson==$MESON_VERSION"; } >> "$log" 2>&1 ||
		{ rm -rf "$venv"; fail "meson $MESON_VERSION into a venv"; }
fi

mkdir -p "$work/src/build"
(cd "$work/src/build" && ../configure --prefix="$inst" --python="$venv/bin/python3" \
	--target-list=x86_64-softmmu --enable-kvm --disable-tcg --without-default-features \
	--enable-vhost-kernel --enable-vhost-net \
	--disable-docs --disable-download --disable-install-blobs --disable-werror) >> "$log" 2>&1 ||
	fail "configure"
t_conf=$(date +%s)
ninja -C "$work/src/build" -j2 qemu-system-x86_64 >> "$log" 2>&1 || fail "ninja"

mkdir -p "$inst/bin" "$inst/share/qemu"
strip -o "$inst/bin/qemu-system-x86_64" "$work/src/build/qemu-system-x86_64"
cp -L "${FIRMWARE[@]}" "$inst/share/qemu/"
echo "$version" > "$inst/qemu-version"
end=$(date +%s)
echo "configure $((t_conf - start)) s, build $((end - t_conf)) s" >> "$log"
echo "elisa qemu: built in $((end - start)) s (configure $((t_conf - start)) s)" >&2
rm -rf "$work"
touch "$inst/.elisa-built"
# Keep the newest other build (a branch and main may differ in the patches), drop the rest.
n=0
while read -r old; do
	[ "$old" != "$inst" ] || continue
	n=$((n + 1))
	[ $n = 1 ] || rm -rf "$old"
done < <(find "$Q" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*-*' -printf '%T@ %p\n' | sort -rn | cut -d' ' -f2-)
echo "$inst"
