#!/bin/bash
# Adds to the emulated host's initramfs what the QEMU boot needs (run.sh --qemu):
#   /usr/bin/qemu-system-x86_64   Debian 12's QEMU, unmodified, with its libraries and the
#                                 firmware of -M pc (SeaBIOS, linuxboot_dma, kvmvapic)
#   /qemu-elisa/                  the patched QEMU (tools/qemu/build.sh), with its firmware
#   /guest/bzImage                the guest kernel: the test kernel itself (KASLR, PTI)
#   /guest/initrd.cpio            the guest's initramfs: busybox, guest-init, elisa_guest.ko,
#                                 elisa_guest_example.ko, elisa_net.ko, elisa-call, netbench
#   /services/*.bin               the services of tools/services/
#   qemu-image.sh <initramfs-root> <kernel-objdir>
set -euo pipefail
. "$(dirname "$0")/../env.sh"
root=$1 kobj=$2

# ---- Debian's QEMU and everything it loads (50 MB: only for elisa_qemu_test, which runs
# it; a boot that names only other selftests, make run's, goes without)
qemu=/usr/bin/qemu-system-x86_64
# the shared libraries a binary loads, at their paths
copy_libs() {
	ldd "$1" | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}
need_debian=1
if [ -n "${ELISA_IMAGE_TESTS:-}" ] && ! [[ " $ELISA_IMAGE_TESTS " == *" elisa_qemu_test "* ]]; then
	need_debian=0
fi
mkdir -p "$root/lib64"
if [ "$need_debian" = 1 ]; then
	[ -x "$qemu" ] || die "no $qemu (make deps installs Debian's qemu-system-x86)"
	mkdir -p "$root/usr/bin" "$root/usr/share/qemu" "$root/usr/share/seabios"
	cp "$qemu" "$root/usr/bin/"
	copy_libs "$qemu"
	for f in linuxboot_dma.bin kvmvapic.bin; do
		cp -L "/usr/share/qemu/$f" "$root/usr/share/qemu/"
	done
	cp -L /usr/share/seabios/bios-256k.bin "$root/usr/share/seabios/"
fi
# the dynamic loader at its ABI path (both QEMUs are dynamically linked)
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"

# ---- the patched QEMU, when it has been built (make qemu)
if [ -x "$ELISA_TOP/tools/qemu/build.sh" ]; then
	qdir=$("$ELISA_TOP/tools/qemu/build.sh" | tail -1) || die "QEMU: build failed (make qemu)"
	mkdir -p "$root/qemu-elisa"
	cp -a "$qdir/bin" "$qdir/share" "$root/qemu-elisa/"
	copy_libs "$qdir/bin/qemu-system-x86_64"
fi

# ---- the services
"$ELISA_TOP/tools/services/build.sh" "$ELISA_TOP/build/services"
mkdir -p "$root/services"
cp "$ELISA_TOP"/build/services/*.bin "$root/services/"

# ---- the guest
g=$(mktemp -d)
trap 'rm -rf "$g"' EXIT
mkdir -p "$g"/{bin,proc,sys,dev,guest,tmp}
cp /bin/busybox "$g/bin/busybox"
ln -s busybox "$g/bin/sh"
cp "$ELISA_TOP/tools/testvm/guest-init" "$g/init"
for f in guest/linux/elisa_guest.ko guest/linux/elisa_guest_example.ko guest/linux/elisa_net.ko \
	build/guest/elisa-call build/guest/netbench; do
	if [ -f "$ELISA_TOP/$f" ]; then cp "$ELISA_TOP/$f" "$g/guest/"; else warn "QEMU boot: no $f"; fi
done
mkdir -p "$root/guest"
(cd "$g" && find . | cpio -o -H newc --quiet) > "$root/guest/initrd.cpio"
gobj=$("$ELISA_TOP/tools/kernel.sh" default) || die "QEMU boot: the test kernel does not build"
cp "$gobj/arch/x86/boot/bzImage" "$root/guest/bzImage"

# ---- the test that drives them
for t in elisa_qemu_test elisa_qemu_demo elisa_qemu_net_test elisa_net_bench; do
	cp "$ELISA_TOP/selftests/out/$t" "$root/selftests/"
done
