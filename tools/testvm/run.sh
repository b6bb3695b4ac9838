#!/bin/bash
# Boot the emulated VMX host in Bochs, run elisa's selftests in it with the real module and
# real KVM, and judge the run. The exit code is the verdict (0: every test passed, no
# skip, no kernel warning).
#
#   tools/testvm/run.sh [options] [selftest ...]
#     --variant V     kernel variant: default, debug (tools/kernel.sh)
#     --cpus N        emulated CPUs (default 2)
#     --nested 0|1    kvm_intel.nested (default: KVM's default, 1)
#     --ept 0|1       kvm_intel.ept (default: KVM's default, 1 where the CPU has EPT)
#     --model M       Bochs CPU model (default corei7_haswell_4770; broadwell_ult also works)
#     --tag T         run name; the logs stay in build/runs/T/ (default: the variant)
#     --timeout S     wall-clock limit for the whole boot (default 900)
#     --mitigations   boot with the kernel's default CPU mitigations (the boots have
#                     mitigations=off otherwise, so that make bench's figures compare):
#                     retpolines, return thunks, buffer clearing and the like as a
#                     distribution's host runs them
#     --module-param P=V
#                     load elisa.ko with parameter P=V (elisa.P=V on the kernel command
#                     line, which /init and elisa_module_test pass to it)
#     --env NAME=VAL  an environment variable for the selftests (kernel command line);
#                     --env ELISA_PANIC=1 makes /init exit at once, so that the kernel
#                     panics: a test of this runner's panic path
#     --allow-skip    count a skipped test as neither passed nor failed instead of failing
#     --halt RE       the (one) selftest ends by halting the host: the boot ends 10 s of
#                     wall time after "reboot: System halted" (or "Power off not
#                     available"), the test counts as finished there, and the serial log
#                     must also match the extended regular expression RE (evidence that
#                     what the test provokes happened); any oops after the halt fails
#                     the boot as always
#     --qemu          the QEMU boot: the image also holds QEMU (Debian's and the patched
#                     one), the guest kernel and the guest's initramfs (qemu-image.sh),
#                     and the emulated host has 1 GiB
#     --add DIR       copy DIR into the image as /selftests/<name of DIR>/: programs that
#                     are not in selftests/order, run as "<name of DIR>/<program>"
#     --prebuilt DIR  boot a kernel that is not built here, with its own KVM modules and an
#                     elisa.ko built for it (a distribution's: tools/distro/check.sh): DIR
#                     holds .config, arch/x86/boot/bzImage, modules.order and the modules
#                     it names (at their paths in the tree, uncompressed), and elisa.ko
#     --bench         run the benchmark (elisa_bench) instead of the selftests, 1 CPU,
#                     nested=0; the table goes to the output and build/bench.json
#     --bench-net     the network benchmark (elisa_net_bench: elisa against virtio-net):
#                     the QEMU boot, 1 CPU, nested=0; the table goes to the output and
#                     build/bench-net.json
#   With selftest names, only those run; the default is every selftest in selftests/order.
#
# Never hangs: the serial log is watched so that a kernel panic ends Bochs at once, and so
# does the timeout; no Bochs of the run outlives this script, however it ends. Prints
# "N passed, N failed" last.
set -uo pipefail
. "$(dirname "$0")/../env.sh"

variant=default cpus=2 nested= ept= model=corei7_haswell_4770 tag= tmo=900 allow_skip=0 bench=0 qemu=0 tests=()
halt=
mitigations=0 envs=() mparams=() adds=() prebuilt=
while [ $# -gt 0 ]; do
	case $1 in
		--variant) variant=$2; shift ;;
		--cpus) cpus=$2; shift ;;
		--nested) nested=$2; shift ;;
		--ept) ept=$2; shift ;;
		--model) model=$2; shift ;;
		--tag) tag=$2; shift ;;
		--timeout) tmo=$2; shift ;;
		--allow-skip) allow_skip=1 ;;
		--halt) halt=$2; shift ;;
		--env) envs+=("$2"); shift ;;
		--module-param) mparams+=("$2"); shift ;;
		--mitigations) mitigations=1 ;;
		--qemu) qemu=1 ;;
		--add) adds+=("$(readlink -f "$2")"); shift ;;
		--prebuilt) prebuilt=$(readlink -f "$2"); variant=prebuilt; shift ;;
		--bench) bench=1 cpus=1 nested=0 tag=bench; tests=(elisa_bench) ;;
		--bench-net) bench=1 qemu=1 cpus=1 nested=0 tag=bench-net; tests=(elisa_net_bench) ;;
		-h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
		-*) die "unknown option $1" ;;
		*) tests+=("$1") ;;
	esac
	shift
done
tag=${tag:-$variant}

# Boots may run side by side (make check runs two lanes): the builds in this tree (elisa.ko
# for this run's kernel, the selftests, elisactl) and the boot image, which takes that
# elisa.ko, happen under one lock, so that no run copies a module another run is building
# for another kernel. Released once the image holds everything.
mkdir -p "$ELISA_TOP/build"
exec 9> "$ELISA_TOP/build/.testvm-build.lock"
flock 9

if [ -n "$prebuilt" ]; then
	kobj=$prebuilt
	for f in .config arch/x86/boot/bzImage modules.order elisa.ko; do
		[ -f "$kobj/$f" ] || die "--prebuilt $kobj: no $f"
	done
	ko=$kobj/elisa.ko
else
	kobj=$("$ELISA_TOP/tools/kernel.sh" "$variant") || die "kernel build failed"
	ELISA_VARIANT=$variant "$ELISA_TOP/tools/kmake.sh" M="$ELISA_TOP" modules >/dev/null ||
		die "elisa.ko does not build"
	ko=$ELISA_TOP/elisa.ko
fi
make -s -C "$ELISA_TOP/selftests" >/dev/null || die "selftests do not build"
# static, for the initramfs; its own target dir, so that it never waits for another cargo
(cd "$ELISA_TOP" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=build/target-static \
	cargo build -q --release -p elisactl --target x86_64-unknown-linux-gnu) ||
	die "elisactl does not build"

# the QEMU boot: the guest's module and program (QEMU itself: qemu-image.sh, make qemu)
if [ "$qemu" = 1 ]; then
	make -s -C "$ELISA_TOP" guest-module guest-tools >/dev/null ||
		die "elisa_guest.ko or elisa-call does not build"
fi

out=$ELISA_TOP/build/runs/$tag
rm -rf "$out"; mkdir -p "$out"
append="console=ttyS0,115200 earlyprintk=serial,ttyS0,115200 loglevel=7"
[ "$mitigations" = 1 ] || append+=" mitigations=off"
# A distribution's kernel idles with intel_idle's MWAIT. In Bochs a CPU waiting in MWAIT
# seems to wake only at its next timer tick, not when another CPU writes the monitored line
# (Linux's polling idle), so cross-CPU wake-ups wait for a tick: with 2 CPUs, Debian's
# kernel reached elisa_call_test after 145 s of emulated time, and with idle=halt it had
# finished elisa_attach_test and elisa_call_test after 22 s.
[ -n "$prebuilt" ] && append+=" idle=halt"
[ -n "$nested" ] && append+=" kvm_intel.nested=$nested"
[ -n "$ept" ] && append+=" kvm_intel.ept=$ept"
[ ${#tests[@]} -gt 0 ] && append+=" ELISA_TESTS=$(IFS=,; echo "${tests[*]}")"
for e in "${mparams[@]}"; do
	case $e in *[[:space:]]*|=*|*[!A-Za-z0-9_=,./-]*) die "--module-param $e: P=V without spaces" ;; esac
	append+=" elisa.$e"
done
for e in "${envs[@]}"; do
	case $e in *[[:space:]]*|*=*=*|=*|*[!A-Za-z0-9_=,./-]*) die "--env $e: NAME=VALUE without spaces" ;; esac
	append+=" $e"
done
# KVM as modules (the test kernel, a distribution's): /init passes the command line's
# kvm.* and kvm_intel.* words to insmod, as modprobe would.
ELISA_KO=$ko ELISA_ADD="${adds[*]}" ELISA_QEMU=$qemu ELISA_IMAGE_TESTS="${tests[*]}" \
	"$(dirname "$0")/mkimage.sh" "$out" "$kobj" "$append" || die "boot image failed"
flock -u 9
exec 9>&-
# the QEMU boot holds QEMU, its libraries and guest images in its initramfs, and runs guests;
# the bench grants 1 GiB regions (4 KiB pages; huge pages reserved first)
megs=512
[ "$qemu" = 1 ] && megs=1024
[ "$bench" = 1 ] && megs=2048

# The emulator: elisa's Bochs (tools/bochs/build.sh, cached), or ELISA_BOCHS=bochs-bin for
# Debian's bochs package (its debugger built in: about 2.7 times slower), for comparison.
if [ -n "${ELISA_BOCHS:-}" ]; then
	bochs=$ELISA_BOCHS
else
	bochs=$("$ELISA_TOP/tools/bochs/build.sh" | tail -1) || die "Bochs does not build"
fi
# Debian's build has the internal debugger, which stops at the start until told to go on
# (-rc), and its display libraries; elisa's has neither.
bx_debian=0
[ "$(basename "$bochs")" != bochs-bin ] || bx_debian=1
if [ $bx_debian = 1 ]; then
	bx_display='display_library: rfb, options="timeout=0"
# no sound: the ALSA mixer thread aborts ("buffer overflow detected") on hosts without a card
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
speaker: enabled=0'
else
	bx_display='display_library: nogui'
fi
cat > "$out/bochsrc" <<RC
megs: $megs
cpu: model=$model, count=$cpus, ips=200000000, reset_on_triple_fault=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
$bx_display
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=disk, path=$out/disk.img, mode=flat, cylinders=$(cat "$out/cylinders"), heads=16, spt=63
boot: disk
com1: enabled=1, mode=file, dev=$out/serial.log
clock: sync=none, time0=local
log: $out/bochs.log
panic: action=fatal
error: action=ignore
info: action=report
debug: action=ignore
RC
printf 'c\n' > "$out/cont.rc"
: > "$out/serial.log"

echo "elisa testvm: booting $variant kernel in Bochs ($model, $cpus CPU$([ "$cpus" = 1 ] || echo s), nested=${nested:-default}); log: build/runs/$tag/serial.log"
# Bochs is this script's own child, $bpid its pid: every way out of here ends it. A panicked
# guest host leaves Bochs spinning, so the watch loop kills it, and so does the timeout;
# the traps cover an error, Ctrl-C and TERM; setpriv's parent-death signal covers a
# SIGKILL of this script (the signal follows Bochs through its exec).
bpid=
stop_bochs() {
	[ -n "$bpid" ] || return 0
	kill -KILL "$bpid" 2>/dev/null
	wait "$bpid" 2>/dev/null
	bpid=
}
trap stop_bochs EXIT
trap 'echo "elisa testvm: interrupted, Bochs ended" >&2; exit 130' INT
trap 'echo "elisa testvm: terminated, Bochs ended" >&2; exit 143' TERM HUP
SECONDS=0
rc_arg=()
[ $bx_debian = 0 ] || rc_arg=(-rc "$out/cont.rc")
setpriv --pdeathsig KILL "$bochs" -q -unlock -f "$out/bochsrc" "${rc_arg[@]}" \
	> "$out/bochs.stdout" 2>&1 < /dev/null &
bpid=$!
cause=
halted_at=
done_at=
halt_line='reboot: (System halted|Power off not available)'
# each selftest's wall time: when its end line first appears (to the poll's half second)
ends=0 last_end=0
: > "$out/wall.txt"
while kill -0 "$bpid" 2>/dev/null; do
	n=$(grep -c '^ELISA-TEST-END: ' "$out/serial.log")
	if [ "$n" -gt "$ends" ]; then
		t=$(grep '^ELISA-TEST-END: ' "$out/serial.log" | sed -n "${n}p" | cut -d' ' -f2)
		echo "$((SECONDS - last_end)) $t$([ $((n - ends)) -gt 1 ] && echo " (and $((n - ends - 1)) before it)")" >> "$out/wall.txt"
		ends=$n last_end=$SECONDS
	fi
	if grep -q -m1 -E 'Kernel panic|end Kernel panic' "$out/serial.log"; then
		sleep 2; cause="kernel panic"; kill -KILL "$bpid" 2>/dev/null; break
	fi
	# --halt: the other CPUs run on after the halting one stops; what they print in the
	# next 10 s (an oops) is judged too.
	if [ -n "$halt" ] && [ -z "$halted_at" ] && grep -q -m1 -E "$halt_line" "$out/serial.log"; then
		halted_at=$SECONDS
	fi
	if [ -n "$halted_at" ] && [ $((SECONDS - halted_at)) -ge 10 ]; then
		kill -KILL "$bpid" 2>/dev/null; break
	fi
	if [ $SECONDS -ge "$tmo" ]; then
		cause="timeout after ${tmo} s"; kill -KILL "$bpid" 2>/dev/null; break
	fi
	# init is done but Bochs runs on: its shutdown port was refused (elisa_lockdown_test
	# locks the kernel down, I/O ports included), and this host has no ACPI to power off.
	if [ -z "$done_at" ] && grep -q '^ELISA-INIT: done' "$out/serial.log"; then
		done_at=$SECONDS
	fi
	if [ -n "$done_at" ] && [ $((SECONDS - done_at)) -ge 20 ]; then
		echo "elisa testvm: Bochs ended 20 s after init was done (no shutdown port)"
		kill -KILL "$bpid" 2>/dev/null; break
	fi
	sleep 0.5
done
wait "$bpid" 2>/dev/null; brc=$?
bpid=
wall=$SECONDS
log=$out/serial.log
if [ -z "$cause" ] && [ -z "$halted_at" ] && ! grep -q '^ELISA-INIT: done' "$log"; then
	cause="Bochs ended early (status $brc)"
fi
tr -d '\r' < "$log" > "$out/serial.txt"

# ---- verdict ------------------------------------------------------------------------------
# A console message (printk writes to the UART directly) can land inside a line the tests
# are still sending through the tty, e.g. "ok[    2.46] elisa: ...\n 1 grant: ...". The
# verdict reads the lines put back together: the message on its own line, the line it
# split joined again.
unsplice() {
	awk '{ s = pending $0; pending = ""
		if (match(s, /\[ *[0-9]+\.[0-9]+\] /) && RSTART > 1) {
			pending = substr(s, 1, RSTART - 1); print substr(s, RSTART); next
		}
		print s }
		END { if (pending != "") print pending }' "$1"
}
# A failed result, and one passed only when run again (kvm_suite's "(rerun: ...)"), is
# printed with the diagnostic ("#") lines the test sent before it (its last 30), so that
# the run's own output says why, without the serial log.
pass=0 fail=0 skip=0 diag=()
while IFS= read -r line; do
	case $line in
		"ELISA-TEST-BEGIN: "*)
			# A test whose end line never came (or came glued to a line it left open)
			# never had its plan and exit status checked.
			[ -n "${cur:-}" ] && { fail=$((fail + 1)); echo "  FAIL $cur: no end line"; }
			cur=${line#ELISA-TEST-BEGIN: }; n_ok=0; n_bad=0; plan=0; diag=() ;;
		"1.."*) plan=${line#1..}; plan=${plan%% *} ;;
		"#"*) diag+=("$line"); [ ${#diag[@]} -gt 30 ] && diag=("${diag[@]:1}") ;;
		"ok "*"# SKIP"*|"ok "*"# skip"*) skip=$((skip + 1)); n_ok=$((n_ok + 1)); diag=(); echo "  SKIP $cur: ${line#ok }" ;;
		"ok "*"(rerun: "*)
			pass=$((pass + 1)); n_ok=$((n_ok + 1)); echo "  RERUN $cur: ${line#ok }"
			[ ${#diag[@]} -gt 0 ] && printf '      %s\n' "${diag[@]}"
			diag=() ;;
		"ok "*) pass=$((pass + 1)); n_ok=$((n_ok + 1)); diag=() ;;
		"not ok "*)
			fail=$((fail + 1)); n_bad=$((n_bad + 1)); echo "  FAIL $cur: ${line#not ok }"
			[ ${#diag[@]} -gt 0 ] && printf '      %s\n' "${diag[@]}"
			diag=() ;;
		"ELISA-TEST-END: "*)
			rc=${line##*rc=}
			if [ $((n_ok + n_bad)) -lt "${plan:-0}" ] || [ $((n_ok + n_bad)) = 0 ]; then
				fail=$((fail + 1)); echo "  FAIL $cur: only $((n_ok + n_bad)) of ${plan:-?} results (exit $rc)"
			elif [ "${plan:-0}" -gt 0 ] && [ $((n_ok + n_bad)) -gt "$plan" ]; then
				fail=$((fail + 1)); echo "  FAIL $cur: $((n_ok + n_bad)) results, $plan planned"
			elif [ "$rc" != 0 ] && [ $n_bad = 0 ]; then
				fail=$((fail + 1)); echo "  FAIL $cur: exit status $rc"
			fi
			cur= ;;
	esac
done < <(unsplice "$out/serial.txt")
if [ -n "$halt" ]; then
	# The halting test finishes at the halt, with the results it printed before it.
	if [ -z "$halted_at" ]; then
		fail=$((fail + 1)); echo "  FAIL ${cur:-boot}: the host did not halt"
	elif [ -n "${cur:-}" ] && { [ $((n_ok + n_bad)) -lt "${plan:-0}" ] || [ $((n_ok + n_bad)) = 0 ]; }; then
		fail=$((fail + 1)); echo "  FAIL $cur: only $((n_ok + n_bad)) of ${plan:-?} results before the halt"
	fi
	cur=
	if ! grep -q -E "$halt" "$out/serial.txt"; then
		fail=$((fail + 1)); echo "  FAIL halt: the serial log has no line matching '$halt'"
	fi
fi
[ -n "${cur:-}" ] && { fail=$((fail + 1)); echo "  FAIL $cur: did not finish"; }

# The kernel log: no warning, BUG or oops, except the one warning every Bochs boot prints.
known='WARNING: arch/x86/kernel/cpu/topology_common.c:[0-9]+ at parse_legacy'
sed -n '/^ELISA-DMESG-BEGIN/,/^ELISA-DMESG-END/p' "$out/serial.txt" > "$out/dmesg.txt"
# elisa's own report that its shim builds EPTPs unlike this kernel's KVM counts as one.
bad=$(grep -E "WARNING:|BUG:|Oops|Kernel panic|general protection|Call Trace|shim does not match" "$out/serial.txt" |
	grep -vE "$known" | grep -v 'Call Trace' || true)
warns_known=$(grep -cE "$known" "$out/serial.txt" || true)
traces=$(grep -c 'Call Trace' "$out/serial.txt" || true)
if [ -n "$bad" ] || [ "$traces" -gt "$warns_known" ]; then
	echo "  FAIL kernel log: a warning, BUG or oops (allowed: the boot-time parse_legacy warning only):"
	grep -E "WARNING:|BUG:|Oops|Kernel panic|RIP:|shim does not match" "$out/serial.txt" | grep -vE "$known" | head -8 | sed 's/^/    /'
	fail=$((fail + 1))
fi
if [ -n "$cause" ]; then
	echo "  FAIL boot: $cause; last lines of the serial log:"
	tail -15 "$out/serial.txt" | sed 's/^/    /'
	fail=$((fail + 1))
fi
if [ $skip -gt 0 ] && [ $allow_skip = 0 ]; then
	echo "  FAIL skips: $skip test(s) skipped; the emulated host must provide every requirement"
	fail=$((fail + skip))
fi
# Where a boot's time goes, each selftest's: wall seconds (wall.txt, the first from the
# start of Bochs) and emulated seconds of guest uptime (which include idle time) beside.
awk 'NR == FNR { wall[$2] = $1; next }
	/^ELISA-TEST-TIME: / { printf "%6s s wall %8.1f s emulated  %s\n", wall[$2], $4 - $3, $2 }' \
	"$out/wall.txt" "$out/serial.txt" | sort -rn > "$out/times.txt"
pass_nonskip=$((pass))
grep -E '^ELISA-INIT: (started|done)|elisa: (loaded|unloaded|refusing)' "$out/serial.txt" | head -4 | sed 's/^/  /'
if [ $bench = 1 ]; then
	sed -n 's/^# BENCH \(.*\)/\1/p' "$out/serial.txt"
	sed -n 's/^# BENCH-JSON //p' "$out/serial.txt" > "$ELISA_TOP/build/$tag.json"
	echo "(JSON: build/$tag.json)"
fi
echo "elisa testvm [$tag]: wall ${wall} s; $pass_nonskip passed, $fail failed, $skip skipped"
echo "$pass_nonskip passed, $fail failed"
[ $fail = 0 ]
