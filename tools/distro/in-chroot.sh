#!/bin/bash
# Run a command in a distribution chroot (tools/distro/chroot.sh), with /proc, /dev and /sys
# and, at /elisa, this source tree; every mount is undone however the command ends.
#   tools/distro/in-chroot.sh <suite> <command> [arg ...]
set -euo pipefail
. "$(dirname "$0")/../env.sh"
suite=${1:?usage: in-chroot.sh <suite> <command> ...}; shift
root=$ELISA_CACHE/distro/root-$suite
[ -f "$root/.elisa-ready" ] || die "no $suite chroot: run tools/distro/chroot.sh $suite"
# One command at a time per chroot: the mounts below are per chroot, not per command (two
# checkouts may share the cache).
exec 7> "$ELISA_CACHE/distro/.run-$suite"
flock 7
mounted=()
cleanup() {
	local i
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for d in proc sys dev elisa; do
	mkdir -p "$root/$d"
	case $d in
		proc) mount -t proc proc "$root/proc" ;;
		sys) mount --rbind /sys "$root/sys" ;;
		dev) mount --rbind /dev "$root/dev" ;;
		elisa) mount --bind "$ELISA_TOP" "$root/elisa" ;;
	esac
	mounted+=("$root/$d")
done
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
