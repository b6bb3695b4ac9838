/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * elisa: exit-less, isolated shared memory for KVM guests (VMFUNC EPTP switching).
 *
 * User-space interface of /dev/elisa. See Documentation/api.rst for every ioctl, its
 * arguments, and the exact errno of each failure.
 *
 * Conventions:
 *  - Every struct has explicit padding; all of it is named "reserved" and must be zero
 *    on input (-EINVAL otherwise). Output reserved fields are written as zero.
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

/* The ioctl type of every elisa ioctl (out-of-tree; not in ioctl-number.rst). */
#define ELISA_IOCTL_TYPE 0xE5

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
	__u64 caps;
	__u64 vmx_procbased_ctls2;
	__u64 vmx_ept_vpid_cap;
	__u64 vmx_vmfunc;
	__u64 reserved[4];
};

#define ELISA_GET_VERSION	_IOWR(ELISA_IOCTL_TYPE, 0x00, struct elisa_version)

/**
 * struct elisa_attach_vm - ELISA_ATTACH_VM: attach a KVM VM to elisa
 * @flags:	in: must be 0.
 * @vm_fd:	in: a KVM VM file descriptor of the caller (from KVM_CREATE_VM).
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
	__u64 reserved[3];
};

#define ELISA_ATTACH_VM		_IOW(ELISA_IOCTL_TYPE, 0x01, struct elisa_attach_vm)

#endif /* _UAPI_LINUX_ELISA_H */
