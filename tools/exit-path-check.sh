#!/bin/bash
# The exit trampoline's rules, checked on the built objects (Documentation/design.rst, "The
# exit trampoline"): what runs between a VM exit and KVM's own exit path must have no
# indirect branch, no ftrace hook, and no RET but the trampoline's own trap-guarded one.
#   tools/exit-path-check.sh [DIR]   DIR: where rust/module/*.o were built (default: .)
# Prints one line per broken rule and exits 1, or "exit path: ok".
set -uo pipefail
dir=${1:-.}
exit_o=$dir/rust/module/elisa_exit.o
shim_o=$dir/rust/module/elisa_shim.o
main_o=$dir/rust/module/elisa_main.o
bad=0
fail() { echo "exit path: $*"; bad=1; }
for o in "$exit_o" "$shim_o" "$main_o"; do
	[ -f "$o" ] || { echo "exit path: $o is missing (build the module first)"; exit 1; }
done

# Disassembly with relocations, one function per paragraph: "<name>:" then its lines.
dis() { objdump -dr --no-show-raw-insn "$1"; }
# The lines of function $2 in object $1.
fn_lines() { dis "$1" | awk -v f="<$2>:" '$2 == f {on = 1; next} /^[0-9a-f]+ <.*>:$/ {on = 0} on'; }

# 1. The trampoline: in .noinstr.text, no indirect branch, one RET (RET 8).
objdump -h "$exit_o" | grep -q ' \.noinstr\.text ' || fail "elisa_vmexit is not in .noinstr.text"
t=$(fn_lines "$exit_o" elisa_vmexit)
[ -n "$t" ] || fail "no elisa_vmexit in $exit_o"
echo "$t" | grep -Eq '(call|jmp)[a-z]* +\*' && fail "indirect branch in elisa_vmexit"
rets=$(echo "$t" | grep -Ec '\bret[a-z]*\b')
echo "$t" | grep -Eq '\bret[a-z]* +\$0x8' && [ "$rets" = 1 ] ||
	fail "elisa_vmexit must have exactly one RET, RET 8 (has $rets)"
calls=$(echo "$t" | grep -E 'R_X86_64_(PLT|PC)32' | grep -v -E '\s(elisa_hook_cur|elisa_kvm_vmexit|elisa_exit_slow|\.altinstr)' || true)
[ -z "$calls" ] || fail "elisa_vmexit refers to more than its state: $calls"

# 2. The C it calls, and the shim functions the Rust exit calls: no ftrace hook, no
#    indirect branch, calls only into Rust's exit and the return thunk.
for f in elisa_exit_slow elisa_shim_request_shutdown elisa_shim_clear_cr2 \
	 elisa_shim_page_address elisa_shim_vcpu_xstate; do
	l=$(fn_lines "$shim_o" "$f")
	[ -n "$l" ] || { fail "no $f in $shim_o"; continue; }
	echo "$l" | grep -q '__fentry__' && fail "$f can be traced (__fentry__)"
	echo "$l" | grep -Eq '(call|jmp)[a-z]* +\*|__x86_indirect_thunk' && fail "indirect branch in $f"
	other=$(echo "$l" | grep -E 'R_X86_64_PLT32' | grep -v -E '\s(elisa_rust_kvm_exit|__x86_return_thunk)-' || true)
	[ -z "$other" ] || fail "$f calls out: $other"
done
dis "$shim_o" | awk '/^Disassembly of section/ {s = $4} /<elisa_exit_slow>:$/ {print s}' |
	grep -q noinstr || fail "elisa_exit_slow is not in .noinstr.text"

# 3. The Rust: no ftrace hook anywhere, and indirect calls only in the views dump, its
#    verification and formatting, none of which the exit reaches.
dis "$main_o" | grep -q '__fentry__' && fail "Rust code can be traced (__fentry__)"
ind=$(dis "$main_o" | awk '/^[0-9a-f]+ <.*>:$/ {fn = $2} /__x86_indirect_thunk|(call|jmp)[a-z]* +\*/ {print fn}' |
	sort -u | grep -v -E 'dump|verify|fmt|Display|Debug' || true)
[ -z "$ind" ] || fail "indirect branches outside dump, verify and formatting: $ind"

[ "$bad" = 0 ] && echo "exit path: ok"
exit "$bad"
