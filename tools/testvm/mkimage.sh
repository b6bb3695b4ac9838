#!/bin/bash
# Build the boot disk of the emulated test host: an initramfs (busybox, /init, elisa.ko, the
# selftests, and for the kvm-m variant KVM's own modules) on a partitionless FAT16 image
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
cp "$ELISA_TOP/elisa.ko" "$root/elisa.ko"
cp "$ELISA_TOP/target/x86_64-unknown-linux-gnu/release/elisactl" "$root/bin/elisactl"
strip "$root/bin/elisactl"
for t in $(cat "$ELISA_TOP/selftests/order") elisa_bench bochs_shutdown; do
	cp "$ELISA_TOP/selftests/out/$t" "$root/selftests/"
done
cp "$ELISA_TOP/selftests/order" "$root/selftests/order"
: > "$root/modules/order"
[ -f "$out/modparams" ] && cp "$out/modparams" "$root/modules/params"
if grep -q '^CONFIG_KVM=m' "$kobj/.config"; then
	# kvm.ko needs irqbypass.ko when CONFIG_IRQ_BYPASS_MANAGER=m (loaded in this order)
	for m in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-intel.ko; do
		[ -f "$kobj/$m" ] || continue
		cp "$kobj/$m" "$root/modules/"
		basename "$m" >> "$root/modules/order"
	done
fi
(cd "$root" && find . | cpio -o -H newc --quiet) > "$out/initramfs.cpio"

img=$out/disk.img
# 64 cylinders x 16 heads x 63 sectors x 512 B, the geometry given to Bochs
rm -f "$img"; truncate -s $((64 * 16 * 63 * 512)) "$img"
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
