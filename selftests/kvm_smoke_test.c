// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_smoke_test: a KVM guest runs in this host at all.
 *
 * A one-vCPU real-mode guest at GPA 0 runs "mov al, 0x42; out 0x10, al; hlt".
 *  1. io_exit: the first KVM_RUN exits with KVM_EXIT_IO, port 0x10, value 0x42
 *  2. hlt_exit: the second KVM_RUN exits with KVM_EXIT_HLT
 */
#include <sys/mman.h>
#include <linux/kvm.h>
#include "elisa_test.h"

static const uint8_t guest_code[] = {
	0xb0, 0x42,		/* mov al, 0x42 */
	0xe6, 0x10,		/* out 0x10, al */
	0xf4,			/* hlt */
};

int main(void)
{
	struct kvm_userspace_memory_region region;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	int kvm, vm, vcpu, run_size;
	uint8_t *mem;

	ksft_print_header();
	ksft_set_plan(2);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	TEST_REQUIRE(kvm >= 0);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	TEST_ASSERT(vm >= 0, "KVM_CREATE_VM: %s", strerror(errno));
	mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(mem != MAP_FAILED, "mmap");
	memcpy(mem, guest_code, sizeof(guest_code));
	region = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = 0x10000,
		.userspace_addr = (uintptr_t)mem,
	};
	TEST_ASSERT(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) == 0, "memory region: %s",
		    strerror(errno));
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	TEST_ASSERT(vcpu >= 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	TEST_ASSERT(run != MAP_FAILED, "mmap kvm_run");
	TEST_ASSERT(ioctl(vcpu, KVM_GET_SREGS, &sregs) == 0, "KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	TEST_ASSERT(ioctl(vcpu, KVM_SET_SREGS, &sregs) == 0, "KVM_SET_SREGS");
	memset(&regs, 0, sizeof(regs));
	regs.rip = 0;
	regs.rflags = 2;
	TEST_ASSERT(ioctl(vcpu, KVM_SET_REGS, &regs) == 0, "KVM_SET_REGS");

	TEST_ASSERT(ioctl(vcpu, KVM_RUN, 0) == 0, "KVM_RUN: %s", strerror(errno));
	CHECK(run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
		      run->io.port == 0x10 && ((uint8_t *)run)[run->io.data_offset] == 0x42,
	      "io_exit", ": exit reason %u port %#x", run->exit_reason, run->io.port);
	TEST_ASSERT(ioctl(vcpu, KVM_RUN, 0) == 0, "KVM_RUN: %s", strerror(errno));
	CHECK(run->exit_reason == KVM_EXIT_HLT, "hlt_exit", ": exit reason %u", run->exit_reason);
	ksft_finished();
}
