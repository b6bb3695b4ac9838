/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * elisa: exit-less, isolated shared memory for KVM guests (VMFUNC EPTP switching).
 *
 * User-space interface of /dev/elisa. See Documentation/api.rst for every ioctl, its
 * arguments, and the exact errno of each failure.
 *
 * Conventions:
 *  - Every struct has explicit padding; all of it is named "reserved" and must be zero
 *    on input (-EINVAL otherwise). Output reserved fields are written as zero. 64-bit
 *    fields are __aligned_u64: one layout, alignment included, for i386, x32 and x86-64
 *    callers.
 *  - "flags" fields must be zero unless a flag is defined for them (-EINVAL otherwise).
 *  - The ABI is versioned by ELISA_API_VERSION. A change that is not backward compatible
 *    bumps it; new features add capability bits and new ioctls.
 *  - No field ever carries a host virtual or physical address.
 */
#ifndef _UAPI_LINUX_ELISA_H
#define _UAPI_LINUX_ELISA_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Version of this interface, as returned in elisa_version.api_version. */
#define ELISA_API_VERSION 1

/*
 * The ioctl type of every elisa ioctl. Out of tree, so not registered; 0xE6 is a type that
 * Documentation/userspace-api/ioctl/ioctl-number.rst (Linux 7.2) gives to no one.
 */
#define ELISA_IOCTL_TYPE 0xE6

/*
 * Capability bits of elisa_version.caps. They describe the CPU of the host as elisa
 * sees it, read from the VMX capability MSRs of the CPU that served the call.
 */
/* VMX is present and usable. */
#define ELISA_CAP_VMX			(1ULL << 0)
/* EPT is supported (secondary control bit 1, allowed-1). */
#define ELISA_CAP_EPT			(1ULL << 1)
/* VM functions can be enabled (secondary control bit 13, allowed-1). */
#define ELISA_CAP_VMFUNC		(1ULL << 2)
/* VM function 0, EPTP switching, is supported (IA32_VMX_VMFUNC bit 0). */
#define ELISA_CAP_EPTP_SWITCHING	(1ULL << 3)
/* EPT entries may be execute-only (IA32_VMX_EPT_VPID_CAP bit 0). */
#define ELISA_CAP_EPT_EXEC_ONLY		(1ULL << 4)
/* EPT accessed and dirty flags are supported (IA32_VMX_EPT_VPID_CAP bit 21). */
#define ELISA_CAP_EPT_AD		(1ULL << 5)
/* EPT 2 MiB leaves (IA32_VMX_EPT_VPID_CAP bit 16). */
#define ELISA_CAP_EPT_2M		(1ULL << 6)
/* EPT 1 GiB leaves (IA32_VMX_EPT_VPID_CAP bit 17). */
#define ELISA_CAP_EPT_1G		(1ULL << 7)
/* Mode-based execute control for EPT (secondary control bit 22, allowed-1). */
#define ELISA_CAP_EPT_MBEC		(1ULL << 8)
/* 4-level EPT page walks (IA32_VMX_EPT_VPID_CAP bit 6). */
#define ELISA_CAP_EPT_PWL4		(1ULL << 9)

/* The capabilities without which elisa refuses to load. */
#define ELISA_CAPS_REQUIRED \
	(ELISA_CAP_VMX | ELISA_CAP_EPT | ELISA_CAP_VMFUNC | ELISA_CAP_EPTP_SWITCHING)

/**
 * struct elisa_version - ELISA_GET_VERSION: API version and host capabilities
 * @flags:		in: must be 0.
 * @api_version:	out: ELISA_API_VERSION of the running module.
 * @caps:		out: ELISA_CAP_* bits.
 * @vmx_procbased_ctls2: out: IA32_VMX_PROCBASED_CTLS2 (MSR 0x48b), raw; bits 63:32
 *			are the allowed-1 settings of the secondary controls.
 * @vmx_ept_vpid_cap:	out: IA32_VMX_EPT_VPID_CAP (MSR 0x48c), raw.
 * @vmx_vmfunc:		out: IA32_VMX_VMFUNC (MSR 0x491), raw; 0 when the CPU has no
 *			VM functions.
 * @reserved:		in: must be 0; out: 0.
 */
struct elisa_version {
	__u32 flags;
	__u32 api_version;
	__aligned_u64 caps;
	__aligned_u64 vmx_procbased_ctls2;
	__aligned_u64 vmx_ept_vpid_cap;
	__aligned_u64 vmx_vmfunc;
	__aligned_u64 reserved[4];
};

#define ELISA_GET_VERSION	_IOWR(ELISA_IOCTL_TYPE, 0x00, struct elisa_version)

/**
 * struct elisa_attach_vm - ELISA_ATTACH_VM: attach a KVM VM to elisa
 * @flags:	in: must be 0.
 * @vm_fd:	in: a KVM VM file descriptor the caller holds (from KVM_CREATE_VM, or
 *		passed on by the process that made it).
 * @reserved:	in: must be 0.
 *
 * On success the ioctl returns a new file descriptor, the "elisa-vm" file: the
 * attachment lives exactly as long as that file. While it is open, every vCPU of the VM
 * (present and future) runs with VM functions enabled and its own EPTP list, whose entry
 * 0 is always KVM's current EPT root for that vCPU. Closing it detaches the VM.
 */
struct elisa_attach_vm {
	__u32 flags;
	__s32 vm_fd;
	__aligned_u64 reserved[3];
};

#define ELISA_ATTACH_VM		_IOW(ELISA_IOCTL_TYPE, 0x01, struct elisa_attach_vm)

/*
 * Shared regions, services and grants (the ELISA call). See Documentation/api.rst.
 */

/* Largest region, in bytes (1 GiB). */
#define ELISA_REGION_MAX_SIZE		(1ULL << 30)
/* Largest service code, in bytes (64 KiB). */
#define ELISA_SERVICE_MAX_CODE		(64ULL << 10)
/* Regions one service maps. */
#define ELISA_SERVICE_MAX_REGIONS	8

/* elisa_service_region.access: how the sub view maps a region (never executable). */
#define ELISA_ACCESS_READ		(1U << 0)
#define ELISA_ACCESS_WRITE		(1U << 1)

/*
 * The EPTP-list index of the gate of a VM's first granted service. The n-th distinct
 * service granted to a VM (n = 0, 1, ...) gets index ELISA_FIRST_GATE_INDEX - n.
 */
#define ELISA_FIRST_GATE_INDEX		511
/* Distinct services one VM can be granted (gate indexes 511 down to 504). */
#define ELISA_MAX_GRANTS		8

/*
 * elisa_grant.flags: the service's callers run at CPL 3 (guest user space). The trusted
 * pages are then user pages; without the flag they are supervisor pages, for callers at
 * CPL 0 (a guest kernel), which is what a guest with SMEP or SMAP needs.
 */
#define ELISA_GRANT_USER		(1U << 0)

/**
 * struct elisa_create_region - ELISA_CREATE_REGION: pin part of a file as a region
 * @flags:	in: must be 0.
 * @fd:		in: a file descriptor of the caller for a shmem file (memfd_create(), a
 *		file on a tmpfs such as shm_open() under /dev/shm) or a hugetlbfs file
 *		(memfd_create(MFD_HUGETLB), a file on a hugetlbfs mount), open O_RDWR and
 *		not sealed with F_SEAL_WRITE or F_SEAL_FUTURE_WRITE; a memfd must be
 *		sealed with F_SEAL_SHRINK (made with MFD_ALLOW_SEALING). Other files are
 *		refused (EINVAL), as are other access modes (EACCES), such seals,
 *		memfds without F_SEAL_SHRINK and append-only or immutable files (EPERM).
 * @offset:	in: byte offset in the file; a multiple of 4096.
 * @length:	in: size in bytes; a non-zero multiple of 4096, at most
 *		ELISA_REGION_MAX_SIZE; offset + length must lie inside the file (EINVAL).
 *		Holes in the range are allocated; 4 KiB pieces of huge pages are fine.
 * @reserved:	in: must be 0.
 *
 * Returns a new "elisa-region" file descriptor (O_CLOEXEC). The pages are long-term
 * pinned (memfd_pin_folios()); every folio the range touches is charged whole (a 4 KiB
 * piece of a 2 MiB page counts 2 MiB) to the caller's user (locked_vm, shared with the
 * user's other processes and io_uring or RDMA pins) against RLIMIT_MEMLOCK (ENOMEM beyond
 * it, unless CAP_IPC_LOCK in the initial user namespace) and counted in the caller's
 * pinned_vm, until the region's last user (the fd, a service) goes. Meanwhile the region
 * counts as a writable shared mapping of the file: F_SEAL_WRITE cannot be added (EBUSY). A region a page of which is later
 * truncated or punched out of its file is decoupled from it: services that map it are
 * refused (ENXIO) by ELISA_CREATE_SERVICE and ELISA_GRANT.
 */
struct elisa_create_region {
	__u32 flags;
	__s32 fd;
	__aligned_u64 offset;
	__aligned_u64 length;
	__aligned_u64 reserved[4];
};

#define ELISA_CREATE_REGION	_IOW(ELISA_IOCTL_TYPE, 0x02, struct elisa_create_region)

/**
 * struct elisa_service_region - one region of a service
 * @region_fd:	in: an elisa-region fd (from ELISA_CREATE_REGION).
 * @access:	in: ELISA_ACCESS_READ, or ELISA_ACCESS_READ | ELISA_ACCESS_WRITE.
 * @gva:	in: the guest-virtual address the sub view maps it at; 4 KiB aligned.
 * @reserved:	in: must be 0.
 */
struct elisa_service_region {
	__s32 region_fd;
	__u32 access;
	__aligned_u64 gva;
	__aligned_u64 reserved[2];
};

/**
 * struct elisa_create_service - ELISA_CREATE_SERVICE: trusted code and its regions
 * @flags:	in: must be 0.
 * @code_fd:	in: a file descriptor the code is read from (a memfd, or any readable
 *		file); the bytes are copied at this call, later changes are not seen.
 * @code_offset: in: byte offset of the code in that file; a multiple of 4096, with
 *		code_offset + code_size below 2^63.
 * @code_size:	in: a non-zero multiple of 4096, at most ELISA_SERVICE_MAX_CODE.
 * @code_gva:	in: where the sub view maps the code (execute-only); 4 KiB aligned.
 * @entry_offset: in: the service's entry point, a byte offset below code_size.
 * @nr_regions:	in: number of used entries of @regions, 0..ELISA_SERVICE_MAX_REGIONS.
 * @reserved0:	in: must be 0.
 * @regions:	in: the regions; unused entries must be all zero.
 * @reserved:	in: must be 0.
 *
 * Returns a new "elisa-service" file descriptor (O_CLOEXEC). The service holds its
 * regions: closing their fds afterwards is fine.
 */
struct elisa_create_service {
	__u32 flags;
	__s32 code_fd;
	__aligned_u64 code_offset;
	__aligned_u64 code_size;
	__aligned_u64 code_gva;
	__aligned_u64 entry_offset;
	__u32 nr_regions;
	__u32 reserved0;
	struct elisa_service_region regions[ELISA_SERVICE_MAX_REGIONS];
	__aligned_u64 reserved[4];
};

#define ELISA_CREATE_SERVICE	_IOW(ELISA_IOCTL_TYPE, 0x03, struct elisa_create_service)

/**
 * struct elisa_grant - ELISA_GRANT (on an elisa-vm fd): connect a service to the VM
 * @flags:	in: 0 or ELISA_GRANT_USER; a grant again of the same service must pass the
 *		same flags.
 * @service_fd:	in: an elisa-service fd.
 * @entry_gva:	in: G, the guest-virtual address of the guest's entry block (three
 *		pages the guest maps itself, see Documentation/gate-protocol.rst); 4 KiB
 *		aligned, G - 0x2000 at or above 4 GiB, canonical for 4-level paging;
 *		G - 0x2000 .. G + 0x3000 not in a 2 MiB that holds part of the service's
 *		code or of a region at a fixed GVA (EINVAL). The
 *		entry block's bytes are the same for every service: several services of a
 *		VM may share one G. The VMM tells the guest G and the gate index by its own
 *		channel.
 * @gate_index:	out: the ECX value of the call: ELISA_FIRST_GATE_INDEX for the first
 *		service granted to this VM, one less for each further one.
 * @nr_vcpus:	out: vCPUs that have this service's gate after the call: every vCPU that
 *		exists at this call. Granting the same service again (same G) gives the
 *		vCPUs created since then their gate, and returns the same gate index.
 * @trusted_gpa: out: first guest-physical address of the window elisa's views use.
 * @trusted_size: out: its size. It starts above every memslot; a memslot added inside it
 *		later is harmless (the window exists only in elisa's views).
 * @reserved:	in: must be 0; out: 0.
 */
struct elisa_grant {
	__u32 flags;
	__s32 service_fd;
	__aligned_u64 entry_gva;
	__u32 gate_index;
	__u32 nr_vcpus;
	__aligned_u64 trusted_gpa;
	__aligned_u64 trusted_size;
	__aligned_u64 reserved[4];
};

#define ELISA_GRANT		_IOWR(ELISA_IOCTL_TYPE, 0x10, struct elisa_grant)

#endif /* _UAPI_LINUX_ELISA_H */
