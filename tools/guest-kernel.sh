#!/bin/bash
# Builds the guest crate (guest/elisa-guest, with rust/elisa-core) as a Linux guest driver
# in Rust would: the kernel's rustc and target (no SSE, no red zone, kernel code model,
# panic = abort) against the core library of the cached test kernel. The flags are the
# module's own, taken from the last build of elisa.ko (make module), up to its crate-specific
# part, so that they follow the kernel's. Warnings are errors. The objects go to
# build/guest-kernel/.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ELISA_TOP"
cmd=rust/module/.elisa_main.o.cmd
[ -f "$cmd" ] || die "$cmd missing: run make module first"
line=$(grep -m1 '^savedcmd_' "$cmd")
# "... /usr/bin/rustc <codegen and lint flags> --cfg MODULE <crate-specific flags>"
flags=${line#*"$KRUSTC" }
flags=${flags%%--cfg MODULE*}
kobj=$(sed -n 's/^savedcmd_[^ ]* := OBJTREE=\([^ ]*\) .*/\1/p' "$cmd")
[ -d "$kobj/rust" ] && [ -n "$flags" ] || die "cannot read the module's rustc flags from $cmd"
out=build/guest-kernel
mkdir -p "$out"
# shellcheck disable=SC2086 # $flags is a list of flags
build() {
	RUSTC_BOOTSTRAP=1 "$KRUSTC" $flags -Zunstable-options -Dwarnings -L "$kobj/rust" \
		--sysroot=/dev/null "$@"
}
build --crate-type rlib --crate-name elisa_core -o "$out/libelisa_core.rlib" \
	rust/elisa-core/src/lib.rs
build --crate-type rlib --crate-name elisa_guest --extern elisa_core="$out/libelisa_core.rlib" \
	--emit=obj="$out/elisa_guest.o",link="$out/libelisa_guest.rlib" \
	guest/elisa-guest/src/lib.rs
# What a driver would write (exported, so that it stays in the object): the block in a
# static, and a call with interrupts off.
cat > "$out/driver.rs" <<'RS'
//! A guest driver's use of elisa-guest, built only to be compiled for the kernel's target.
#![no_std]
use elisa_guest::{with_irqs_disabled, EntryBlock, Gate, FIRST_GATE_INDEX};

/// The entry block, page-aligned in .bss.
pub static mut ELISA_BLOCK: EntryBlock = EntryBlock::zeroed();

/// Fills the entry block; 0 or -1.
#[no_mangle]
pub extern "C" fn elisa_driver_init() -> i32 {
    // SAFETY: called once at init, before anything maps or reads the block.
    let block = unsafe { &mut *core::ptr::addr_of_mut!(ELISA_BLOCK) };
    if block.write().is_ok() { 0 } else { -1 }
}

/// Calls the first service at `g` with interrupts off; its value or a negative errno.
///
/// # Safety
///
/// The entry block is mapped at `g`; the caller runs at CPL 0.
#[no_mangle]
pub unsafe extern "C" fn elisa_driver_call(g: u64, a0: u64) -> i64 {
    let gate = Gate::new(g, FIRST_GATE_INDEX);
    // SAFETY: the caller's guarantees are those of with_irqs_disabled and Gate::call.
    let r = unsafe { with_irqs_disabled(|| gate.call(a0, 0, 0, 0, 0)) };
    match r {
        Ok(v) => v as i64,
        Err(e) => e.to_raw(),
    }
}

/// Whether interrupts are on.
#[no_mangle]
pub extern "C" fn elisa_driver_irqs() -> bool {
    elisa_guest::irqs_enabled()
}
RS
build --crate-type rlib --crate-name elisa_guest_driver -Aclippy::all \
	--extern elisa_guest="$out/libelisa_guest.rlib" -L dependency="$out" \
	--emit=obj="$out/driver.o" "$out/driver.rs"
objdump -d "$out/elisa_guest.o" > "$out/elisa_guest.dis"
objdump -d "$out/driver.o" > "$out/driver.dis"
for s in elisa_driver_init elisa_driver_call elisa_driver_irqs; do
	grep -q "<$s>:" "$out/driver.dis" || die "guest-kernel: $s not in the object"
done
grep -q 'sub    $0x80,%rsp' "$out/elisa_guest.dis" ||
	die "guest-kernel: no call in elisa-guest's object"
grep -q 'cli' "$out/driver.dis" && grep -q 'sti' "$out/driver.dis" ||
	die "guest-kernel: no interrupt helper in the driver's object"
if grep -E '%[xyz]mm' "$out/driver.dis" "$out/elisa_guest.dis"; then
	die "guest-kernel: vector registers used"
fi
echo "guest-kernel: elisa-guest and a driver using it build for the kernel's target"
