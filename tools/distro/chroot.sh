#!/bin/bash
# A Debian chroot with a distribution kernel's own toolchain, for building and testing
# elisa.ko against that kernel (tools/distro/check.sh). The host (Debian 12) cannot run it:
# Debian's 7.x kernels are built by rustc, bindgen and gcc packages that need a newer glibc.
#   tools/distro/chroot.sh <suite> [package[=version] ...]
# Makes (once) a minbase chroot of <suite> (sid, or trixie with trixie-backports) under
# $ELISA_CACHE/distro/root-<suite>, then installs the packages into it with the chroot's own
# apt. The host's apt sources are never read or changed. Prints the chroot's path last.
# Needs root (debootstrap, chroot, bind mounts). Env: DEBIAN_MIRROR.
set -euo pipefail
. "$(dirname "$0")/../env.sh"

suite=${1:?usage: chroot.sh <suite> [package ...]}; shift
case $suite in sid|trixie) ;; *) die "chroot.sh: unknown suite $suite (sid, trixie)" ;; esac
[ "$(id -u)" = 0 ] || die "the distribution-kernel chroot needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap is missing: run make deps"
root=$ELISA_CACHE/distro/root-$suite
mkdir -p "$ELISA_CACHE/distro"
exec 8> "$ELISA_CACHE/distro/.lock-$suite"
flock 8

M=$(debian_mirror)
if [ ! -f "$root/.elisa-ready" ]; then
	echo "elisa distro: debootstrap $suite (minbase) into the cache" >&2
	rm -rf "$root"
	debootstrap --variant=minbase "$suite" "$root" "$M" > "$ELISA_CACHE/distro/debootstrap-$suite.log" 2>&1 ||
		die "debootstrap $suite failed: $ELISA_CACHE/distro/debootstrap-$suite.log"
	{
		echo "deb $M $suite main"
		[ "$suite" = trixie ] && echo "deb $M trixie-backports main"
	} > "$root/etc/apt/sources.list"
	rm -f "$root"/etc/apt/sources.list.d/*
	# A mirror or snapshot may serve a Release file past its Valid-Until date; the
	# signatures are still checked.
	echo 'Acquire::Check-Valid-Until "false";' > "$root/etc/apt/apt.conf.d/99elisa"
	# no daemons start in the chroot (a package's postinst would try)
	printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
	chmod +x "$root/usr/sbin/policy-rc.d"
	touch "$root/.elisa-ready"
	: > "$root/.elisa-packages"
fi

# The packages, unless an earlier run installed the same list.
want=$(printf '%s\n' "$@" | sort -u)
if [ $# -gt 0 ] && [ "$want" != "$(cat "$root/.elisa-packages")" ]; then
	echo "elisa distro: installing into the $suite chroot: $*" >&2
	"$(dirname "$0")/in-chroot.sh" "$suite" sh -c \
		'apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades "$@"' \
		sh "$@" > "$ELISA_CACHE/distro/apt-$suite.log" 2>&1 ||
		die "installing into the $suite chroot failed: $ELISA_CACHE/distro/apt-$suite.log"
	echo "$want" > "$root/.elisa-packages"
fi
echo "$root"
