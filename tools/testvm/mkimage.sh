#!/bin/bash
# Build the boot disk of the emulated test host: an initramfs (busybox, /init, elisa.ko, the
# selftests, and KVM's own modules where the kernel has KVM as modules) on a partitionless FAT16 image
# with SYSLINUX. mtools only: no root, no loop devices.
#   mkimage.sh <outdir> <kernel-objdir> <append>
set -euo pipefail
. "$(dirname "$0")/../env.sh"
out=$1 kobj=$2 append=$3
root=$out/initramfs
rm -rf "$root"; mkdir -p "$root"/{bin,proc,sys,dev,tmp,selftests,modules}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$ELISA_TOP/tools/testvm/init" "$root/init"
cp "${ELISA_KO:-$ELISA_TOP/elisa.ko}" "$root/elisa.ko"
cp "$ELISA_TOP/build/target-static/x86_64-unknown-linux-gnu/release/elisactl" "$root/bin/elisactl"
strip "$root/bin/elisactl"
# The QEMU boot's image is large: it holds only the selftests it runs (ELISA_IMAGE_TESTS,
# from run.sh) when they are named.
list=$(cat "$ELISA_TOP/selftests/order")
[ "${ELISA_QEMU:-0}" = 1 ] && [ -n "${ELISA_IMAGE_TESTS:-}" ] && list=$ELISA_IMAGE_TESTS
for t in $list elisa_bench elisa_busy_vm elisa_halt_test elisa_lockdown_test bochs_shutdown; do
	[ -f "$ELISA_TOP/selftests/out/$t" ] || continue
	cp "$ELISA_TOP/selftests/out/$t" "$root/selftests/"
done
cp "$ELISA_TOP/selftests/order" "$root/selftests/order"
# run.sh --add: more programs, each directory as /selftests/<its name>/
for d in ${ELISA_ADD:-}; do
	[ -d "$d" ] || die "--add $d: no such directory"
	cp -r "$d" "$root/selftests/"
done
: > "$root/modules/order"
if grep -q '^CONFIG_KVM=m' "$kobj/.config"; then
	# every module of the tree, in load order: KVM's dependencies first
	for m in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-intel.ko; do
		[ -f "$kobj/$m" ] || continue
		cp "$kobj/$m" "$root/modules/"
		basename "$m" >> "$root/modules/order"
	done
	# then the others of the tree (a distribution's: run.sh --prebuilt), which need none of
	# these
	for m in $(sed 's/\.o$/.ko/' "$kobj/modules.order"); do
		grep -qx "$(basename "$m")" "$root/modules/order" && continue
		cp "$kobj/$m" "$root/modules/" || die "no module $kobj/$m"
		basename "$m" >> "$root/modules/order"
	done
fi
# The QEMU boot (ELISA_QEMU=1): QEMU and a Linux guest inside the emulated host
# (tools/testvm/qemu-image.sh adds them).
if [ "${ELISA_QEMU:-0}" = 1 ]; then
	"$ELISA_TOP/tools/testvm/qemu-image.sh" "$root" "$kobj" || die "QEMU boot: image failed"
	# lz4 decompresses fastest in Bochs (Documentation/testing.rst)
	(cd "$root" && find . | cpio -o -H newc --quiet) | lz4 -l -9 -q > "$out/initramfs.cpio"
else
	(cd "$root" && find . | cpio -o -H newc --quiet) > "$out/initramfs.cpio"
fi

img=$out/disk.img
# C cylinders x 16 heads x 63 sectors x 512 B, the geometry given to Bochs: 64 (32 MiB)
# unless the initramfs needs more
need=$(( $(stat -c %s "$out/initramfs.cpio") + $(stat -c %s "$kobj/arch/x86/boot/bzImage") + (2 << 20) ))
cyl=64
while [ $((cyl * 16 * 63 * 512)) -lt "$need" ]; do cyl=$((cyl * 2)); done
[ "$cyl" -le 1024 ] || die "boot image: $need bytes is too large for the boot disk"
echo "$cyl" > "$out/cylinders"
rm -f "$img"; truncate -s $((cyl * 16 * 63 * 512)) "$img"
mkfs.fat -F 16 -n ELISA "$img" >/dev/null
syslinux --install "$img"
cat > "$out/syslinux.cfg" <<CFG
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL bzImage
  INITRD initrd.cpio
  APPEND $append
CFG
mcopy -o -i "$img" "$out/syslinux.cfg" ::syslinux.cfg
mcopy -o -i "$img" "$kobj/arch/x86/boot/bzImage" ::bzImage
mcopy -o -i "$img" "$out/initramfs.cpio" ::initrd.cpio
