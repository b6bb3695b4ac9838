# SPDX-License-Identifier: GPL-2.0
# elisa: top-level targets. `make help` lists them.
#
# A Rust module must be built by the rustc that built its kernel tree. By default elisa.ko
# is built against the project's cached test kernel with the pinned toolchain
# (tools/kmake.sh). On a real host, point KDIR at that host's built kernel tree:
#     make KDIR=/lib/modules/$(uname -r)/build

SHELL := /bin/bash
TOP := $(CURDIR)
KDIR ?=
VARIANT ?= default
CACHE := $(shell . tools/env.sh && echo $$ELISA_CACHE)

.PHONY: all module deps kernel check check-debug run bench selftests clean help fmt clippy \
	guest-kernel fuzz guest-module guest-tools qemu bochs check-kvm check-distro distro dkms

all: module

help:
	@echo "make deps      install everything (Debian 12): packages, bindgen, kernel source"
	@echo "make run       the demo: two VMs share a counter through one service in the emulated host"
	@echo "make check     the whole suite: cargo tests, kernel, module, selftests in Bochs"
	@echo "make           build elisa.ko (KDIR=<tree> for a real host; default: test kernel)"
	@echo "make kernel    build the cached test kernel (VARIANT=default|debug)"
	@echo "make selftests build the selftest binaries"
	@echo "make bench     cost tables: elisa's (one boot of the emulated host), elisa against virtio-net (another)"
	@echo "make check-debug  the whole selftest suite on the debug kernel (clang, KASAN, lockdep)"
	@echo "make check-kvm the kernel's own x86 KVM selftests without and with elisa (busy VM beside)"
	@echo "make check-distro elisa on Debian's own 7.2 and 7.3 kernels: builder, DKMS, boots (root)"
	@echo "make distro    elisa.ko for the running distribution kernel (tools/distro/build.sh)"
	@echo "make dkms      install elisa as a DKMS module for the running kernel (root)"
	@echo "make fuzz      the long fuzz: 100000 calls of elisa_fuzz in one boot (FUZZ_SEED=...)"
	@echo "make guest-kernel the Rust guest crate built for the kernel's target (after make)"
	@echo "make guest-module guest/linux/elisa_guest.ko, the Linux guest module (KDIR=<tree> as for make)"
	@echo "make guest-tools  build/guest/elisa-call and netbench, the guest's user programs (static)"
	@echo "make qemu      elisa's QEMU (tools/qemu): the elisa-* objects; prints its install dir"
	@echo "make bochs     the emulated VMX host's Bochs (tools/bochs), cached; prints its path"

deps:
	@tools/deps.sh

kernel:
	@tools/kernel.sh $(VARIANT) >/dev/null

qemu:
	@tools/qemu/build.sh

bochs:
	@tools/bochs/build.sh

ifeq ($(KDIR),)
module:
	@tools/kernel.sh $(VARIANT) >/dev/null
	@ELISA_VARIANT=$(VARIANT) tools/kmake.sh M=$(TOP) modules
else
module:
	$(MAKE) -C $(KDIR) M=$(TOP) modules
endif

selftests:
	@$(MAKE) -C selftests

check:
	@tools/check.sh

# Not part of make check (the KASAN kernel takes 8 minutes to build on 2 cores alone, over
# 20 beside other work); CI runs both (.ci/run).
check-debug:
	@tools/check-debug.sh

# The kernel tree's own x86 KVM selftests, each without elisa and with elisa attached to a
# busy VM beside it (selftests/kvm-suite/); CI runs it after make check (.ci/run).
check-kvm:
	@tools/check-kvm.sh

# Debian's own kernels (tools/distro/targets): the builder's refusals, DKMS end to end in a
# chroot of the kernel's suite, and a boot of Debian's image with its KVM modules running
# every selftest; CI runs it after check-kvm (.ci/run).
check-distro:
	@tools/check-distro.sh

# On a host running a distribution's kernel: elisa.ko for it (Documentation/admin-guide.rst).
distro:
	@tools/distro/build.sh

dkms:
	@tools/distro/dkms.sh install

# The long fuzz: elisa_fuzz alone, FUZZ_CALLS calls (make check runs 5000), 1 CPU,
# kvm_intel.nested=0. FUZZ_SEED=<n> fuzzes another seed; FUZZ_CPUS=2 lets its racing
# thread run beside the main one. 100000 calls take about 20 minutes (see testing.rst);
# the limits leave room for a busy machine.
FUZZ_CALLS ?= 100000
FUZZ_CPUS ?= 1
fuzz:
	@tools/testvm/run.sh --cpus $(FUZZ_CPUS) --nested 0 --tag fuzz --timeout 7200 \
		--env ELISA_TEST_TIMEOUT=3000 --env ELISA_FUZZ_CALLS=$(FUZZ_CALLS) \
		$(if $(FUZZ_SEED),--env ELISA_FUZZ_SEED=$(FUZZ_SEED)) elisa_fuzz

# The Linux guest module, for the guest's kernel: by default the project's test kernel
# (the same image boots the emulated host and its guests), else KDIR.
ifeq ($(KDIR),)
guest-module:
	@tools/kernel.sh $(VARIANT) >/dev/null
	@ELISA_VARIANT=$(VARIANT) tools/kmake.sh M=$(TOP)/guest/linux modules
else
guest-module:
	$(MAKE) -C $(KDIR) M=$(TOP)/guest/linux modules
endif

# The guest's user program, static like the selftests (gcc and libc6-dev), so that it runs
# in any guest's initramfs.
GUEST_CC ?= gcc
guest-tools: build/guest/elisa-call build/guest/netbench

build/guest/elisa-call: guest/tools/elisa-call.c include/uapi/linux/elisa_guest.h
	@mkdir -p $(@D)
	$(GUEST_CC) -O2 -std=gnu11 -Wall -Wextra -Werror -static -Iinclude/uapi -o $@ $<
	strip $@

build/guest/netbench: guest/tools/netbench.c
	@mkdir -p $(@D)
	$(GUEST_CC) -O2 -std=gnu11 -Wall -Wextra -Werror -static -o $@ $<
	strip $@

# The Rust guest crate with the kernel's rustc and flags, as a guest driver would build it.
guest-kernel: module
	@tools/guest-kernel.sh

run:
	@tools/demo.sh

bench:
	@rc=0; tools/testvm/run.sh --bench || rc=1; tools/testvm/run.sh --bench-net || rc=1; exit $$rc

fmt:
	@rustfmt --edition 2021 rust/module/*.rs
	@rustfmt --edition 2021 guest/linux/*.rs
	@cargo fmt
	@cargo fmt --manifest-path selftests/rust-guest/Cargo.toml
	@cargo fmt --manifest-path tools/services/switch/Cargo.toml

clippy:
	@cargo clippy --workspace --all-targets -- -D warnings
	@cargo clippy --manifest-path selftests/rust-guest/Cargo.toml --target-dir target/rust-guest \
		-- -D warnings
	@cargo clippy --manifest-path tools/services/switch/Cargo.toml --target x86_64-unknown-none \
		--target-dir target/switch-service -- -D warnings

clean:
	rm -rf target selftests/out build/guest-kernel
	find rust/module -name '*.o' -o -name '.*.cmd' -o -name '*.rmeta' | xargs rm -f
	rm -f elisa.ko elisa.mod elisa.mod.c elisa.mod.o elisa.o modules.order Module.symvers .*.cmd
	rm -rf build/guest
	cd guest/linux && rm -f *.o *.ko *.mod *.mod.c .*.cmd modules.order Module.symvers
