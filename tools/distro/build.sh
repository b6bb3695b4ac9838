#!/bin/bash
# Build elisa.ko for a distribution's kernel, on the machine that runs it (or in a chroot with
# the same packages): the builder behind `make distro` and the DKMS package.
#
#   tools/distro/build.sh [--kernel RELEASE] [--config FILE] [--headers DIR] [--source PATH]
#                         [--out DIR] [--kdir-only] [--guest]
#     --kernel   the kernel release (uname -r of that kernel; default: the running one)
#     --config   its config (default: the headers' .config, which has the build-time options
#                too, then /boot/config-RELEASE, then /usr/lib/modules/RELEASE/config)
#     --headers  its headers (default: /usr/lib/modules/RELEASE/build): Module.symvers, the
#                BTF-only vmlinux, the release string
#     --source   the kernel source it was built from: a directory, or the tarball of the
#                distribution's source package (default: /usr/src/linux-source-X.Y.tar.xz,
#                Debian's linux-source-X.Y)
#     --out      where the prepared tree goes (default: /var/lib/elisa/kdir/RELEASE as root,
#                else $ELISA_CACHE/kdir/RELEASE)
#     --kdir-only  prepare the tree, print its path, and do not build elisa.ko
#     --guest    build the guest module, guest/linux/elisa_guest.ko (with elisa_net.ko and the
#                example driver), for a guest's kernel, instead of elisa.ko: run it in the
#                guest (or with that kernel's headers and source); a guest kernel needs
#                no KVM
#   Env: RUSTC, BINDGEN, CC (default: rustc and bindgen from PATH, and the C compiler named in
#   the kernel's config).
#
# Why: an out-of-tree Rust module links against the Rust metadata of the kernel's own crates
# (rust/libkernel.rmeta and the rest), and that metadata must come from the very rustc that
# built the kernel: a crate's symbol hash includes rustc's version text. Debian's headers
# packages ship none of it (Ubuntu's linux-lib-rust-RELEASE packages do: then the headers are
# used as they are). So this builds it: the source package's tree, the kernel's own config
# (checked to be unchanged by the toolchain here), `make modules_prepare` with the kernel's
# release string, and the headers' Module.symvers. The crate hashes of the result are checked
# against the kernel's exports before elisa.ko is built.
#
# Refuses, with what to install, when the kernel is older than 7.2 or has no CONFIG_RUST,
# KVM_INTEL or KALLSYMS, or when rustc, rust-src, bindgen or the C compiler is not the one
# that built the kernel. Prints the path of elisa.ko (or, with --kdir-only, of the tree) on
# its last line. Exit status: 0 built, 1 failed, 2 refused.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
ELISA_CACHE=${ELISA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/elisa}

release=$(uname -r) config= headers= source= out= kdir_only=0 guest=0
while [ $# -gt 0 ]; do
	case $1 in
		--kernel) release=$2; shift ;;
		--config) config=$2; shift ;;
		--headers) headers=$2; shift ;;
		--source) source=$2; shift ;;
		--out) out=$2; shift ;;
		--kdir-only) kdir_only=1 ;;
		--guest) guest=1 ;;
		-h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
		*) echo "elisa build: unknown argument $1 (--help)" >&2; exit 1 ;;
	esac
	shift
done

say() { echo "elisa build: $*" >&2; }
fail() { echo "elisa build: error: $*" >&2; exit 1; }
# A refusal: the kernel or the toolchain cannot make a loadable elisa.ko. Each line of the
# message is printed; the first says what is wrong, the rest what to do.
refuse() {
	local first=1 l
	for l in "$@"; do
		if [ $first = 1 ]; then echo "elisa build: refused: $l" >&2; first=0; else echo "  $l" >&2; fi
	done
	exit 2
}

# ---- the kernel: config and headers ------------------------------------------------------------
headers=${headers:-/usr/lib/modules/$release/build}
if [ -z "$config" ]; then
	for c in "$headers/.config" "/boot/config-$release" "/usr/lib/modules/$release/config"; do
		[ -f "$c" ] && { config=$c; break; }
	done
fi
[ -n "$config" ] && [ -f "$config" ] ||
	refuse "no config found for kernel $release" \
		"install its headers (Debian: apt install linux-headers-$release), or pass --config FILE"
kconf() { sed -n "s/^CONFIG_$1=//p" "$config" | sed 's/^"\(.*\)"$/\1/' | head -1; }

kver=$(sed -n 's/^# Linux\/[^ ]* \([0-9][^ ]*\) Kernel Configuration$/\1/p' "$config" | head -1)
[ -n "$kver" ] || fail "$config: no \"# Linux/... <version> Kernel Configuration\" line"
kmaj=${kver%%.*} kmin=${kver#*.}; kmin=${kmin%%.*}
[ "$kmaj" -gt 7 ] || { [ "$kmaj" -eq 7 ] && [ "$kmin" -ge 2 ]; } ||
	refuse "kernel $release is Linux $kver: elisa needs 7.2 or later (the kernel crate API it is written against)" \
		"use Debian's 7.2 or 7.3 kernel (sid, trixie-backports), or a self-built 7.2 or later (Documentation/admin-guide.rst)"
[ "$(kconf RUST)" = y ] ||
	refuse "kernel $release was built without CONFIG_RUST=y, so it cannot load a Rust module such as elisa.ko" \
		"use a kernel built with Rust: Debian's 7.2 and later (sid, trixie-backports)," \
		"or build one with CONFIG_RUST=y (Documentation/admin-guide.rst)"
if [ "$guest" = 0 ]; then
	for o in KVM KVM_INTEL; do
		case $(kconf "$o") in y|m) ;; *) refuse "kernel $release has no CONFIG_$o: elisa hooks KVM's Intel VMX code" \
			"(for a guest's kernel, which needs no KVM, build the guest module: --guest)" ;; esac
	done
	[ "$(kconf KALLSYMS)" = y ] ||
		refuse "kernel $release has no CONFIG_KALLSYMS: elisa recognises KVM's VM files by their ioctl handler's name (Documentation/design.rst)"
	# Not a refusal: the entry hook falls back to the kvm_entry tracepoint.
	[ "$(kconf DYNAMIC_FTRACE_WITH_DIRECT_CALLS)" = y ] ||
		say "note: kernel $release has no CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS: elisa's entry hook will be the kvm_entry tracepoint, which costs every VM about 15 instructions more per exit while a VM is attached (Documentation/admin-guide.rst)"
fi
[ -f "$headers/Module.symvers" ] ||
	refuse "no headers for kernel $release at $headers (Module.symvers is missing)" \
		"install them (Debian: apt install linux-headers-$release), or pass --headers DIR"

# ---- the toolchain: exactly the kernel's --------------------------------------------------------
RUSTC=${RUSTC:-rustc}
BINDGEN=${BINDGEN:-bindgen}
want_rustc=$(kconf RUSTC_VERSION_TEXT)
have_rustc=$("$RUSTC" --version 2>/dev/null || echo "no rustc ($RUSTC)")
rustc_num=$(echo "$want_rustc" | awk '{print $2}')
if [ "$have_rustc" != "$want_rustc" ]; then
	case $want_rustc in
		*"built from a source tarball"*) # a distribution's rustc
			how="Debian: apt install rustc=$rustc_num+dfsg1-* rust-src=$rustc_num+dfsg1-*; Ubuntu: apt install rustc-${rustc_num%.*} rust-${rustc_num%.*}-src, then RUSTC=rustc-${rustc_num%.*}" ;;
		*) how="rustup: rustup toolchain install $rustc_num --component rust-src, then RUSTC=\"rustup run $rustc_num rustc\"" ;;
	esac
	refuse "kernel $release was built by '$want_rustc', but the rustc here is '$have_rustc'" \
		"a Rust module must be built by exactly the rustc that built its kernel (the crates' symbol hashes include its version text)" \
		"install that rustc and its library source, rust-src ($how), or point RUSTC at it"
fi
sysroot=$("$RUSTC" --print sysroot)
[ -f "$sysroot/lib/rustlib/src/rust/library/core/src/lib.rs" ] ||
	refuse "rustc $rustc_num has no library source at $sysroot/lib/rustlib/src" \
		"install the rust-src package of the same version as rustc ($rustc_num)"
want_bindgen=$(kconf BINDGEN_VERSION_TEXT)
have_bindgen=$("$BINDGEN" --version 2>/dev/null | head -1 || true)
[ "$have_bindgen" = "$want_bindgen" ] ||
	refuse "kernel $release was built with '$want_bindgen', but the bindgen here is '${have_bindgen:-none ($BINDGEN)}'" \
		"install that version (Debian: the bindgen package, ${want_bindgen#bindgen }), or point BINDGEN at it"
want_cc=$(kconf CC_VERSION_TEXT)
CC=${CC:-${want_cc%% *}}
have_cc=$("$CC" --version 2>/dev/null | head -1 || true)
[ "$have_cc" = "$want_cc" ] ||
	refuse "kernel $release was built by '$want_cc', but '$CC' is '${have_cc:-not found}'" \
		"install that compiler (Debian: the ${want_cc%% *} package named after it, e.g. gcc-16), or point CC at it"

# ---- Ubuntu: the headers already carry the Rust metadata ------------------------------------
if [ -f "$headers/rust/libkernel.rmeta" ]; then
	kdir=$headers
	say "kernel $release: its headers carry the Rust metadata (Ubuntu's linux-lib-rust); using them"
else
	# ---- the source, the kernel's version -------------------------------------------------
	series=$(echo "$kver" | cut -d. -f1,2)
	source=${source:-/usr/src/linux-source-$series.tar.xz}
	[ -e "$source" ] ||
		refuse "no source for kernel $kver at $source" \
			"install the distribution's source of the running kernel (Debian: apt install linux-source-$series," \
			"of the same version as the kernel's packages), or pass --source DIR|TARBALL"
	if [ -z "$out" ]; then
		if [ "$(id -u)" = 0 ]; then out=/var/lib/elisa/kdir/$release; else out=$ELISA_CACHE/kdir/$release; fi
	fi
	mkdir -p "$out"
	exec 9> "$out/.lock"
	flock 9
	# the stamp: what the tree was made from; the same inputs reuse it
	stamp=$(printf '%s\n' "$release" "$want_rustc" "$want_bindgen" "$want_cc" "$(sha256sum < "$config")" \
		"$(sha256sum < "$headers/Module.symvers")" "$(stat -c '%s %Y' "$source")" | sha256sum | cut -c1-16)
	kdir=$out/build
	if [ "$(cat "$out/stamp" 2>/dev/null)" != "$stamp" ]; then
		rm -rf "$out/src" "$kdir" "$out/stamp"
		if [ -d "$source" ]; then
			src=$source
		else
			say "unpacking $source"
			mkdir -p "$out/src"
			tar -xf "$source" -C "$out/src" --strip-components=1
			src=$out/src
		fi
		# the source must be the kernel's version
		sv=$(make -s -C "$src" kernelversion 2>/dev/null) || fail "$src: not a kernel source tree"
		[ "$sv" = "$kver" ] ||
			refuse "the source at $source is Linux $sv, but kernel $release is Linux $kver" \
				"install the source package of the same version as the kernel"
		mkdir -p "$kdir"
		cp "$config" "$kdir/.config"
		kmake=(make -C "$src" O="$kdir" CC="$CC" RUSTC="$RUSTC" HOSTRUSTC="$RUSTC" BINDGEN="$BINDGEN"
			KERNELRELEASE="$release")
		"${kmake[@]}" -s olddefconfig > "$out/build.log" 2>&1 || fail "olddefconfig failed: $out/build.log"
		# The toolchain here must see the kernel's config as it was: any option that changes
		# means another compiler or source, and a module built on it would not match. Only
		# the host's OpenSSL features (for sign-file) may differ: they change no module.
		opts() { grep '^CONFIG_' "$1" | grep -v '^CONFIG_OPENSSL_SUPPORTS_' | sort; }
		changed=$(diff <(opts "$config") <(opts "$kdir/.config") || true)
		[ -z "$changed" ] ||
			refuse "the kernel's config changes under this toolchain and source, so they are not the ones that built it:" \
				"$(echo "$changed" | grep '^[<>]' | head -8 | tr '\n' ' ')" \
				"install the exact compiler, rustc, bindgen and source of kernel $release"
		say "preparing the kernel tree for $release (the kernel crate's Rust metadata; a few minutes)"
		nproc=$(nproc 2>/dev/null || echo 2)
		"${kmake[@]}" -j"$nproc" modules_prepare >> "$out/build.log" 2>&1 ||
			fail "make modules_prepare failed: the end of $out/build.log:$(tail -5 "$out/build.log" | sed 's/^/\n  /')"
		cp "$headers/Module.symvers" "$kdir/Module.symvers"
		# the BTF-only vmlinux of the headers: BTF for the module (CONFIG_DEBUG_INFO_BTF_MODULES)
		[ -f "$headers/vmlinux" ] && cp "$headers/vmlinux" "$kdir/vmlinux"
		echo "$stamp" > "$out/stamp"
	fi
	# The kernel crate's symbols elisa links against are the kernel's own exports only if the
	# crate hashes agree (rustc's version text and the source both go into them).
	for crate in core kernel; do
		mine=$(grep -ao "Cs[0-9A-Za-z]*_${#crate}$crate" "$kdir/rust/$crate.o" 2>/dev/null | sort | uniq -c | sort -rn | awk 'NR == 1 {print $2}')
		theirs=$(grep -o "_RN[a-zA-Z]*Cs[0-9A-Za-z]*_${#crate}${crate}[0-9]" "$kdir/Module.symvers" |
			sed "s/.*\(Cs[0-9A-Za-z]*_${#crate}$crate\).*/\1/" | sort | uniq -c | sort -rn | awk 'NR == 1 {print $2}')
		[ -z "$theirs" ] || [ "$mine" = "$theirs" ] ||
			refuse "the prepared tree's '$crate' crate ($mine) is not the kernel's ($theirs)" \
				"the rustc or the source differs from the kernel's; remove $out and install the exact ones"
	done
fi
if [ "$kdir_only" = 1 ]; then
	echo "$kdir"
	exit 0
fi

# ---- the module: elisa.ko, or with --guest elisa_guest.ko ---------------------------------------
# The guest module's directory also builds elisa_net.ko and the example driver.
if [ "$guest" = 1 ]; then mdir=$TOP/guest/linux ko=elisa_guest.ko; else mdir=$TOP ko=elisa.ko; fi
say "building $ko for $release"
make -C "$kdir" M="$mdir" CC="$CC" RUSTC="$RUSTC" HOSTRUSTC="$RUSTC" BINDGEN="$BINDGEN" modules >&2 ||
	fail "$ko does not build against $kdir"
vm=$(modinfo -F vermagic "$mdir/$ko" 2>/dev/null || true)
case $vm in "$release "*) ;; *) fail "$ko's vermagic '$vm' does not name kernel $release" ;; esac
echo "$mdir/$ko"
