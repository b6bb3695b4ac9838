/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * elisa guest: the guest side of the ELISA call, for user space of a Linux guest.
 *
 * User-space interface of /dev/elisa-guest, the device of the guest kernel module
 * elisa_guest.ko (guest/linux). The module knows the gates the VMM gave this guest, maps
 * their entry blocks and calls a service with interrupts off; user space cannot (a call
 * needs RFLAGS.IF = 0, so CPL 0). See Documentation/guest-linux.rst for every ioctl and
 * errno.
 *
 * Conventions (those of linux/elisa.h):
 *  - Every struct has explicit padding, all of it named "reserved*" and zero on input
 *    (-EINVAL otherwise); output reserved fields are written as zero. 64-bit fields lie
 *    at multiples of 8, so the layout is the same for 32-bit and 64-bit callers.
 *  - "flags" fields must be zero unless a flag is defined for them (-EINVAL otherwise).
 *  - The ABI is versioned by ELISA_GUEST_API_VERSION; a change that is not backward
 *    compatible bumps it.
 *  - No field carries a guest kernel address. G is the host's choice and no secret.
 */
#ifndef _UAPI_LINUX_ELISA_GUEST_H
#define _UAPI_LINUX_ELISA_GUEST_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Version of this interface, as returned in elisa_guest_info.api_version. */
#define ELISA_GUEST_API_VERSION		1

/*
 * The ioctl type of every /dev/elisa-guest ioctl: next to elisa.h's 0xE6, and like it
 * given to no one by Documentation/userspace-api/ioctl/ioctl-number.rst (Linux 7.2).
 */
#define ELISA_GUEST_IOCTL_TYPE		0xE7

/* Most gates the module knows (as many as one VM can be granted). */
#define ELISA_GUEST_MAX_GATES		8
/* Size of elisa_guest_gate.name: up to 31 characters of [A-Za-z0-9._-] and a NUL. */
#define ELISA_GUEST_NAME_SIZE		32

/**
 * struct elisa_guest_info - ELISA_GUEST_GET_INFO: version and number of gates
 * @flags:		in: must be 0.
 * @api_version:	out: ELISA_GUEST_API_VERSION of the running module.
 * @nr_gates:		out: gates the module knows, 0..ELISA_GUEST_MAX_GATES; their
 *			numbers are 0..nr_gates-1, fixed from the module's load on.
 * @reserved0:		in: must be 0; out: 0.
 * @reserved:		in: must be 0; out: 0.
 */
struct elisa_guest_info {
	__u32 flags;
	__u32 api_version;
	__u32 nr_gates;
	__u32 reserved0;
	__u64 reserved[4];
};

#define ELISA_GUEST_GET_INFO	_IOWR(ELISA_GUEST_IOCTL_TYPE, 0x00, struct elisa_guest_info)

/**
 * struct elisa_guest_gate - ELISA_GUEST_GET_GATE: one gate, by number
 * @flags:	in: must be 0.
 * @gate:	in: the gate number, 0..nr_gates-1.
 * @entry_gva:	out: G, the guest-virtual address of the gate's entry block (in the
 *		module's private page table; no process maps it).
 * @index:	out: the gate index the host granted (ECX of the call), 1..511.
 * @reserved0:	in: must be 0; out: 0.
 * @calls:	out: calls made through this gate since the module was loaded.
 * @not_entered: out: of those, calls that returned -ENODEV (no gate at the index: the
 *		host has not granted it, or has detached the VM).
 * @name:	out: the gate's name, NUL-terminated; gate<n> when the VMM gave none.
 * @reserved:	in: must be 0; out: 0.
 */
struct elisa_guest_gate {
	__u32 flags;
	__u32 gate;
	__u64 entry_gva;
	__u32 index;
	__u32 reserved0;
	__u64 calls;
	__u64 not_entered;
	char name[ELISA_GUEST_NAME_SIZE];
	__u64 reserved[4];
};

#define ELISA_GUEST_GET_GATE	_IOWR(ELISA_GUEST_IOCTL_TYPE, 0x01, struct elisa_guest_gate)

/*
 * elisa_guest_call.flags: return the service's RAX in @ret whatever it is, and 0 from the
 * ioctl. Without it, a RAX in -4095..-1 (an errno, as the kernel's IS_ERR_VALUE reads it)
 * fails the ioctl with that errno. For services whose values may fall in that range.
 */
#define ELISA_GUEST_CALL_RAW		(1U << 0)

/**
 * struct elisa_guest_call - ELISA_GUEST_CALL: call a service through its gate
 * @flags:	in: 0 or ELISA_GUEST_CALL_RAW.
 * @gate:	in: the gate number, 0..nr_gates-1 (ELISA_GUEST_GET_GATE names them).
 * @args:	in: the five arguments (RDI, RSI, RDX, R8, R9 of the service).
 * @ret:	out: the service's return value (RAX), or the negative errno of the call
 *		(-ENODEV: no gate entered; -EINTR: failed back by the host, the service
 *		may or may not have run; -EPERM: refused). Written whenever the call was
 *		made, also when the ioctl then fails with -@ret.
 * @reserved:	in: must be 0; out: 0.
 */
struct elisa_guest_call {
	__u32 flags;
	__u32 gate;
	__u64 args[5];
	__s64 ret;
	__u64 reserved[2];
};

#define ELISA_GUEST_CALL	_IOWR(ELISA_GUEST_IOCTL_TYPE, 0x02, struct elisa_guest_call)

#endif /* _UAPI_LINUX_ELISA_GUEST_H */
