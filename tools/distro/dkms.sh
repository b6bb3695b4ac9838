#!/bin/bash
# elisa's DKMS package: install the module's source as /usr/src/elisa-VERSION with its
# dkms.conf, register it with DKMS, and build and install elisa.ko for a kernel (from then on
# DKMS rebuilds it on every kernel upgrade). `make dkms` runs it for the running kernel.
#   tools/distro/dkms.sh install [--kernel RELEASE] [--prefix DIR]
#   tools/distro/dkms.sh remove
# Needs root and dkms; the build needs what tools/distro/build.sh names (it refuses with a
# list of what to install when something is missing). remove also unloads elisa.ko if it
# can (it cannot while a VM is attached) and deletes the kernel trees the builder prepared
# (/var/lib/elisa/kdir); /etc/modprobe.d and /etc/modules-load.d are the administrator's.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cmd=${1:-install}; shift || true
case $cmd in -h|--help|help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;; esac
release=$(uname -r) prefix=/usr/src
while [ $# -gt 0 ]; do
	case $1 in
		--kernel) release=$2; shift ;;
		--prefix) prefix=$2; shift ;;
		*) echo "elisa dkms: unknown argument $1" >&2; exit 1 ;;
	esac
	shift
done
die() { echo "elisa dkms: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "DKMS installs need root"
command -v dkms >/dev/null || die "dkms is not installed (Debian, Ubuntu: apt install dkms)"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$TOP/Cargo.toml" | head -1)
[ -n "$version" ] || die "no version in Cargo.toml"
dst=$prefix/elisa-$version

# Drop what DKMS holds of this version (a reinstall after a source change).
# (not `| grep -q`: under pipefail, dkms's SIGPIPE when grep stops early hides a match)
if [ -n "$(dkms status -m elisa -v "$version" 2>/dev/null)" ]; then
	dkms remove -m elisa -v "$version" --all >/dev/null
fi
if [ "$cmd" = remove ]; then
	rm -rf "$dst"
	if grep -q '^elisa ' /proc/modules 2>/dev/null && ! rmmod elisa 2>/dev/null; then
		echo "elisa dkms: elisa.ko stays loaded (in use: an attached VM, an open /dev/elisa); rmmod elisa later" >&2
	fi
	rm -rf /var/lib/elisa/kdir
	echo "elisa dkms: removed elisa $version"
	exit 0
fi
[ "$cmd" = install ] || die "unknown command $cmd (install, remove)"

# The module's sources only: what Kbuild compiles, and the builder.
rm -rf "$dst"; mkdir -p "$dst/tools/distro"
(cd "$TOP" && cp -r --parents Kbuild include rust/module rust/elisa-core/src rust/elisa-uapi/src "$dst/")
find "$dst/rust/module" \( -name '*.o' -o -name '.*.cmd' \) -delete
cp "$TOP/tools/distro/build.sh" "$dst/tools/distro/"
sed "s/@VERSION@/$version/" "$TOP/tools/distro/dkms.conf.in" > "$dst/dkms.conf"
dkms add -m elisa -v "$version"
dkms install -m elisa -v "$version" -k "$release"
