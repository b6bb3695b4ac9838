#!/bin/bash
# Builds the switch service (elisa-switch's logic, src/main.rs) as raw code:
#   build.sh <out>     writes <out>/switch.bin (entry at byte 0), and checks that it is
#                      code alone: no .rodata, .data or .bss, no relocation, no panic path,
#                      no x87/SSE/AVX instruction
#                      (the sub view maps service code execute-only and nothing else of it).
# Needs rustup's target x86_64-unknown-none (tools/deps.sh adds it).
set -euo pipefail
. "$(dirname "$0")/../../env.sh"
out=$(mkdir -p "$1" && cd "$1" && pwd)
src=$ELISA_TOP/tools/services/switch
tgt=$ELISA_TOP/build/cargo-services
rustc --print target-list | grep -qx x86_64-unknown-none ||
	die "switch: this rustc has no target x86_64-unknown-none"
rustc --print sysroot | xargs -I{} test -d {}/lib/rustlib/x86_64-unknown-none ||
	die "switch: the target x86_64-unknown-none is not installed (rustup target add x86_64-unknown-none)"
RUSTFLAGS="-C link-arg=-T$src/link.ld" cargo build -q --release --locked \
	--manifest-path "$src/Cargo.toml" --target x86_64-unknown-none --target-dir "$tgt"
elf=$tgt/x86_64-unknown-none/release/switch
bad=$(readelf -SW "$elf" | awk '$2 ~ /^\.(rodata|data|bss|got|tbss|tdata)/ && $6 != "000000" { print $2 }')
[ -z "$bad" ] || die "switch: the image has data sections ($bad); the sub view maps code only"
readelf -rW "$elf" | grep -q 'There are no relocations' || die "switch: the image has relocations"
nm "$elf" | grep -q panicking && die "switch: a panic path is linked in"
# Services run with the guest's x87/SSE/AVX state and CR0.TS (gate-protocol.rst): an
# instruction that uses it could fault (#NM) inside the sub view. A UD2 (the panic handler)
# would end the caller's run.
fp=$(objdump -d --no-show-raw-insn "$elf" |
	grep -E '%[xyz]mm[0-9]|%st\b|%st\(|%mm[0-7]|%k[0-7]|fxsave|fxrstor|xsave|xrstor|ud2' |
	head -3 || true)
[ -z "$fp" ] || die "switch: the image uses x87/SSE/AVX state or has a UD2: $fp"
[ "$(nm "$elf" | awk '$3 == "elisa_switch_entry" { print $1 }')" = 0000000000000000 ] ||
	die "switch: the entry is not at byte 0"
objcopy -O binary -j .text "$elf" "$out/switch.bin.tmp"
size=$(stat -c %s "$out/switch.bin.tmp")
[ "$size" -gt 0 ] && [ "$size" -le 65536 ] || die "switch: switch.bin is $size bytes"
# unchanged bytes keep the file's time, so that what is made from it is not made again
if cmp -s "$out/switch.bin.tmp" "$out/switch.bin"; then
	rm "$out/switch.bin.tmp"
else
	mv "$out/switch.bin.tmp" "$out/switch.bin"
fi
