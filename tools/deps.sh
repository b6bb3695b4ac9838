#!/bin/bash
# Install everything elisa needs on a Debian 12 (bookworm) machine, from the package registries.
# Idempotent: a second run checks and does nothing.
#
#  - bookworm packages (toolchain, Bochs's BIOS, image tools);
#  - bindgen-cli $BINDGEN_VERSION with cargo install --locked, into the cache;
#  - the kernel source package, downloaded only, through a private apt configuration.
#    The system's apt sources are never changed.
set -euo pipefail
. "$(dirname "$0")/env.sh"

PKGS=(
	# kernel build
	build-essential bc flex bison libelf-dev libssl-dev cpio kmod python3
	# Rust-for-Linux: Debian's rustc-web (>= 1.85, bookworm-security) and its library source;
	# clang/libclang 19 for bindgen (and for a clang-built debug kernel)
	rustc-web rust-web-src libclang-19-dev clang-19 lld-19 llvm-19
	# Debian's own kernels (make check-distro): a chroot of their suite runs their toolchain
	debootstrap
	# the emulated test host: Bochs's BIOS and VGA BIOS (Bochs itself is built from source by
	# tools/bochs/build.sh, downloaded with curl), a FAT boot disk, busybox
	bochsbios vgabios busybox-static syslinux syslinux-common mtools dosfstools curl
	# selftests are static binaries; guest code is assembled with binutils; the UAPI headers'
	# layout is checked for 32-bit and x32 callers too (rust/elisa-uapi's tests)
	libc6-dev gcc-multilib xz-utils ca-certificates
	# the QEMU boot: Debian's own QEMU (the unmodified path) and its firmware, run inside
	# the emulated host; lz4 packs that boot's large initramfs
	qemu-system-x86 lz4
	# elisa's QEMU (tools/qemu/build.sh): build dependencies, and the firmware of a
	# -machine pc boot that QEMU's source tarball lacks (SeaBIOS, kvmvapic, linuxboot_dma)
	ninja-build libglib2.0-dev libpixman-1-dev pkg-config zlib1g-dev libfdt-dev python3-venv
	dpkg-dev patch seabios qemu-system-data
)

need_pkgs=()
for p in "${PKGS[@]}"; do
	case $p in \#*) continue ;; esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
	echo "elisa deps: installing ${need_pkgs[*]}"
	[ "$(id -u)" = 0 ] || die "installing packages needs root (run: sudo make deps)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

# A cargo for the host-side crates and to build bindgen: rustup's when present, else Debian's.
if ! command -v cargo >/dev/null 2>&1; then
	echo "elisa deps: no cargo on PATH, installing Debian's cargo-web"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cargo-web
fi

# The switch service (tools/services/switch) is raw code built for x86_64-unknown-none, a
# target of rustup's toolchain: general registers only, no host runtime.
if command -v rustup >/dev/null 2>&1 &&
	! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
	echo "elisa deps: adding rustup's target x86_64-unknown-none"
	rustup target add x86_64-unknown-none
fi

if ! { [ -x "$BINDGEN" ] && "$BINDGEN" --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; }; then
	echo "elisa deps: building bindgen-cli $BINDGEN_VERSION"
	cargo install --quiet --locked "bindgen-cli@$BINDGEN_VERSION" --root "$ELISA_CACHE/tools"
fi

# ---- kernel source -------------------------------------------------------------------------
# The archive holding the pinned package: Debian's unstable suite, then trixie-backports.

DL=$ELISA_CACHE/dl
mkdir -p "$DL"
deb_ok() { [ -f "$1" ] && [ -s "$1" ]; }

pinned_deb=$DL/${KPKG}_${KPKG_VERSION}_all.deb
chosen=$(cat "$DL/chosen" 2>/dev/null || true)
if ! deb_ok "$DL/$chosen"; then
	A=$ELISA_CACHE/apt
	mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
	M=$(debian_mirror)
	printf 'deb %s sid main\ndeb %s trixie-backports main\n' "$M" "$M" > "$A/sources.list"
	APTO=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null
	      -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache"
	      -o Dir::State::Status=/dev/null -o APT::Sandbox::User=root)
	echo "elisa deps: reading the kernel source index (private apt configuration, download only)"
	apt-get "${APTO[@]}" -qq update
	versions=$(apt-cache "${APTO[@]}" madison linux-source-7.2 linux-source-7.3 2>/dev/null |
		awk -F'|' '{gsub(/ /,"",$1); gsub(/ /,"",$2); print $1"="$2}')
	pick=""
	if echo "$versions" | grep -qx "$KPKG=$KPKG_VERSION"; then
		pick="$KPKG=$KPKG_VERSION"
	else
		# nearest 7.2.x (newest first), then 7.3.x
		pick=$(echo "$versions" | grep '^linux-source-7.2=' | sort -t= -k2 -V -r | head -1)
		[ -n "$pick" ] || pick=$(echo "$versions" | grep '^linux-source-7.3=' | sort -t= -k2 -V | head -1)
		[ -n "$pick" ] || die "no linux-source-7.2 or 7.3 in the archive"
		warn "****************************************************************"
		warn "pinned $KPKG $KPKG_VERSION is gone from the archive; using $pick"
		warn "this kernel version has not been validated with elisa"
		warn "****************************************************************"
	fi
	(cd "$DL" && apt-get "${APTO[@]}" -qq download "$pick")
	chosen=$(cd "$DL" && ls -t linux-source-7.*_all.deb | head -1)
	echo "$chosen" > "$DL/chosen"
fi
deb=$DL/$chosen
if [ "$deb" = "$pinned_deb" ]; then
	echo "$KPKG_SHA256  $deb" | sha256sum -c --quiet - || { rm -f "$deb" "$DL/chosen"; die "checksum mismatch on $deb (removed; run again)"; }
fi

kver=$(basename "$deb" | sed 's/^linux-source-\([0-9.]*\)_\(.*\)_all.deb$/\2/')
src=$KSRC_ROOT/$kver
if [ ! -f "$src/Makefile" ]; then
	echo "elisa deps: unpacking kernel source $kver"
	rm -rf "$src" "$src.tmp"; mkdir -p "$src.tmp"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$src.tmp" --wildcards '*.tar.xz'
	tar -xJf "$src.tmp"/usr/src/linux-source-*.tar.xz -C "$src.tmp"
	mv "$src.tmp"/linux-source-7.* "$src"
	rm -rf "$src.tmp"
fi
ln -sfn "$kver" "$KSRC_ROOT/current"
echo "elisa deps: ok (kernel source $kver, bindgen $BINDGEN_VERSION, $($KRUSTC --version))"
