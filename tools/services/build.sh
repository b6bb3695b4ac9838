#!/bin/bash
# Assembles the services of tools/services/ (*.S) into raw code files, as
# ELISA_CREATE_SERVICE, elisactl serve --code and QEMU's elisa-service code= take them,
# and builds the switch service (switch/, Rust) into switch.bin.
#   build.sh <outdir>      writes <outdir>/<name>.bin
set -euo pipefail
. "$(dirname "$0")/../env.sh"
out=$1
mkdir -p "$out"
for s in "$ELISA_TOP"/tools/services/*.S; do
	n=$(basename "$s" .S)
	gcc -c -nostdlib -fno-pic -o "$out/$n.o" "$s"
	objcopy -O binary -j .text "$out/$n.o" "$out/$n.bin"
	[ -s "$out/$n.bin" ] || die "services: $n.bin is empty"
done
"$ELISA_TOP/tools/services/switch/build.sh" "$out"
