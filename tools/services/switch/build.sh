#!/bin/bash
# Builds the switch service (elisa-switch's logic, src/main.rs) as raw code:
#   build.sh <out>     writes <out>/switch.bin (entry at byte 0), and checks that it is
#                      code alone: no .rodata, .data or .bss, no relocation, no panic path,
#                      no x87/SSE/AVX instruction, no indirect jump or call
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
# Every tool's output goes to a file first, its status checked: a check must not pass
# because the tool failed or was cut short.
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
readelf -SW "$elf" > "$t/sections" || die "switch: readelf -S failed"
readelf -rW "$elf" > "$t/relocs" || die "switch: readelf -r failed"
nm "$elf" > "$t/syms" || die "switch: nm failed"
objdump -d --no-show-raw-insn "$elf" > "$t/code" || die "switch: objdump failed"
# Code alone: of the sections loaded (flag A) and not empty, only .text goes into
# switch.bin, so any other but the linker's dynamic tables (not copied, never read by
# the code) means data the code would read past its end, where the sub view maps nothing.
# The section number "[ n]" goes first: it may hold a space.
bad=$(sed -n 's/^ *\[ *[0-9]*\] *//p' "$t/sections" |
	awk 'NF >= 7 && $7 ~ /A/ && $5 !~ /^0+$/ && $1 !~ /^\.(text|dynsym|gnu\.hash|hash|dynstr|dynamic)$/ { print $1 }')
[ -z "$bad" ] || die "switch: the image has data sections ("$bad"); the sub view maps code only"
grep -q '^ *\[ *1\] \.text ' "$t/sections" || die "switch: no .text section first"
grep -q 'There are no relocations' "$t/relocs" || die "switch: the image has relocations"
! grep -q panicking "$t/syms" || die "switch: a panic path is linked in"
# Services run with the guest's x87/SSE/AVX state and CR0.TS (gate-protocol.rst): an
# instruction that uses it could fault (#NM) inside the sub view. A UD2 (the panic handler)
# would end the caller's run. An indirect jump or call needs a table of targets (data) and
# an ENDBR64 at each under the guest's IBT (security.rst).
fp=$(grep -E '%[xyz]mm[0-9]|%st\b|%st\(|%mm[0-7]|%k[0-7]|fxsave|fxrstor|xsave|xrstor|ud2' "$t/code" |
	head -3 || true)
[ -z "$fp" ] || die "switch: the image uses x87/SSE/AVX state or has a UD2: $fp"
# And every instruction is one of the integer instructions below, which fault only on a
# bad address (the switch checks every index and length it reads): no division (#DE),
# no x87, SSE or MXCSR instruction that names no register above (fld1, fnstcw, ldmxcsr,
# emms), nothing privileged or new. A fault inside the sub view is delivered through
# descriptors the guest can place in a region (security.rst), so the list is of what is
# allowed, not of what is not (a review found the pattern above missing several).
# objdump's AT&T mnemonics: an optional size suffix, prefixes folded in.
awk -F'\t' 'NF >= 2 && $1 ~ /^ *[0-9a-f]+:$/ {
	n = split($2, w, " "); m = w[1]
	if (m ~ /^(lock|rep|repz|repnz|cs|ds|data16)$/ && n > 1) m = m " " w[2]
	print m }' "$t/code" > "$t/mnemonics" || die "switch: reading the mnemonics failed"
[ -s "$t/mnemonics" ] || die "switch: no instruction in the image"
allowed='^(mov[bwlq]?|movabs[bwlq]?|movz[bw][wlq]|movs[bw][wlq]|movslq|lea[lq]?|(add|sub|and|or|xor|cmp|test|adc|sbb)[bwlq]?|(inc|dec|neg|not)[bwlq]?|(shl|shr|sar|sal|rol|ror)[bwlq]?|(push|pop)[wq]?|(bt|bts|btr|btc)[wlq]?|(imul|mul)[bwlq]?|xchg[bwlq]?|bswap[lq]?|cltq|cwtl|(bsf|bsr)[wlq]?|leave[q]?|call[q]?|ret[q]?|jmp[q]?|j(a|ae|b|be|e|ne|g|ge|l|le|o|no|p|np|s|ns)|set(a|ae|b|be|e|ne|g|ge|l|le|o|no|p|np|s|ns)|cmov(a|ae|b|be|e|ne|g|ge|l|le|o|no|p|np|s|ns)[wlq]?|int3|endbr64|cld|pause|nop[wl]?|cs nop[wl]?|data16 .*|lock (xadd|cmpxchg|add|sub|and|or|xor|inc|dec)[bwlq]?|rep (movs|stos)[bwlq])$'
other=$(grep -vE "$allowed" "$t/mnemonics" | sort -u | head -5 | tr '\n' ' ' || true)
[ -z "$other" ] || die "switch: the image has instructions outside the integer set a service may use: $other"
ind=$(grep -E '\sl?(jmp|call)q?\s+\*' "$t/code" | head -3 || true)
[ -z "$ind" ] || die "switch: the image has an indirect jump or call: $ind"
[ "$(awk '$3 == "elisa_switch_entry" { print $1 }' "$t/syms")" = 0000000000000000 ] ||
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
