/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A minimal real-mode KVM guest for tests that need exact control over every guest
 * instruction (VMFUNC loops, exit counting). The VM has one memory slot at GPA 0
 * (RM_MEM_SIZE bytes); the guest code is copied to RM_CODE_GPA and starts there with
 * CS base 0. Each test defines its guest program in asm (see elisa_attach_test.c) and
 * talks to the host with OUT instructions.
 */
#ifndef RM_GUEST_H
#define RM_GUEST_H

#include <stdint.h>
#include <sys/mman.h>
#include <linux/kvm.h>
#include "elisa_test.h"

#define RM_MEM_SIZE 0x10000
#define RM_CODE_GPA 0x1000

struct rm_vm {
	int kvm, vm, run_size;
	uint8_t *mem;
	int vcpu[4];
	struct kvm_run *run[4];
	int stats[4];
	int nr_vcpus;
};

static inline void rm_vm_create(struct rm_vm *v, const void *code, size_t len)
{
	struct kvm_userspace_memory_region region;

	memset(v, 0, sizeof(*v));
	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	TEST_ASSERT(v->kvm >= 0, "open /dev/kvm: %s", strerror(errno));
	v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0);
	TEST_ASSERT(v->vm >= 0, "KVM_CREATE_VM: %s", strerror(errno));
	v->run_size = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	v->mem = mmap(NULL, RM_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(v->mem != MAP_FAILED, "mmap");
	TEST_ASSERT(len <= RM_MEM_SIZE - RM_CODE_GPA, "guest code too large");
	memcpy(v->mem + RM_CODE_GPA, code, len);
	region = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = RM_MEM_SIZE,
		.userspace_addr = (uintptr_t)v->mem,
	};
	TEST_ASSERT(ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &region) == 0, "memslot: %s",
		    strerror(errno));
}

/* (Re)starts vCPU @i at the guest code. */
static inline void rm_vcpu_reset(struct rm_vm *v, int i)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	TEST_ASSERT(ioctl(v->vcpu[i], KVM_GET_SREGS, &sregs) == 0, "KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	TEST_ASSERT(ioctl(v->vcpu[i], KVM_SET_SREGS, &sregs) == 0, "KVM_SET_SREGS");
	memset(&regs, 0, sizeof(regs));
	regs.rip = RM_CODE_GPA;
	regs.rsp = 0x800;
	regs.rflags = 2;
	TEST_ASSERT(ioctl(v->vcpu[i], KVM_SET_REGS, &regs) == 0, "KVM_SET_REGS");
}

static inline int rm_vcpu_add(struct rm_vm *v)
{
	int i = v->nr_vcpus++;

	TEST_ASSERT(i < 4, "too many vCPUs");
	v->vcpu[i] = ioctl(v->vm, KVM_CREATE_VCPU, i);
	TEST_ASSERT(v->vcpu[i] >= 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	v->run[i] = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu[i], 0);
	TEST_ASSERT(v->run[i] != MAP_FAILED, "mmap kvm_run");
	v->stats[i] = ioctl(v->vcpu[i], KVM_GET_STATS_FD, 0);
	TEST_ASSERT(v->stats[i] >= 0, "KVM_GET_STATS_FD: %s", strerror(errno));
	rm_vcpu_reset(v, i);
	return i;
}

static void rm_alarm(int sig)
{
	(void)sig;
}

/*
 * Runs vCPU @i until its next exit to user space, bounded by a 5 s alarm. Returns the
 * byte the guest wrote with OUT to port 0x10, 0x100 + port for other ports, -2 for HLT,
 * -1 for anything else (exit reason in run->exit_reason).
 */
static inline int rm_run(struct rm_vm *v, int i)
{
	struct kvm_run *run = v->run[i];
	struct sigaction sa = { .sa_handler = rm_alarm };
	int r;

	sigaction(SIGALRM, &sa, NULL);
	alarm(5);
	r = ioctl(v->vcpu[i], KVM_RUN, 0);
	alarm(0);
	if (r < 0)
		return -1;
	if (run->exit_reason == KVM_EXIT_HLT)
		return -2;
	if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT) {
		uint8_t val = ((uint8_t *)run)[run->io.data_offset];

		return run->io.port == 0x10 ? val : 0x100 + run->io.port;
	}
	return -1;
}

/* Reads the binary statistic @name of vCPU @i (KVM_GET_STATS_FD); -1 if absent. */
static inline int64_t rm_stat(struct rm_vm *v, int i, const char *name)
{
	struct kvm_stats_header h;
	struct kvm_stats_desc *d;
	size_t dsize;
	int64_t val = -1;
	uint32_t k;
	char *descs;

	TEST_ASSERT(pread(v->stats[i], &h, sizeof(h), 0) == sizeof(h), "stats header");
	dsize = sizeof(*d) + h.name_size;
	descs = calloc(h.num_desc, dsize);
	TEST_ASSERT(descs, "calloc");
	TEST_ASSERT(pread(v->stats[i], descs, h.num_desc * dsize, h.desc_offset) ==
			    (ssize_t)(h.num_desc * dsize), "stats descriptors");
	for (k = 0; k < h.num_desc; k++) {
		d = (struct kvm_stats_desc *)(descs + k * dsize);
		if (!strcmp(d->name, name)) {
			uint64_t x;

			TEST_ASSERT(pread(v->stats[i], &x, sizeof(x), h.data_offset + d->offset) ==
					    sizeof(x), "stats data");
			val = x;
			break;
		}
	}
	free(descs);
	return val;
}

static inline void rm_vm_destroy(struct rm_vm *v)
{
	int i;

	for (i = 0; i < v->nr_vcpus; i++) {
		munmap(v->run[i], v->run_size);
		close(v->stats[i]);
		close(v->vcpu[i]);
	}
	close(v->vm);
	close(v->kvm);
	munmap(v->mem, RM_MEM_SIZE);
}

#endif /* RM_GUEST_H */
