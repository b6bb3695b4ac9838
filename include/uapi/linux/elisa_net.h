/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * elisa_net.h - the elisa switch: VM-to-VM Ethernet through an elisa service
 *
 * The switch is a service (Documentation/networking.rst): host-supplied code that runs in
 * the sub view of each attached VM and moves frames between the VMs' ports with no VM
 * exit. This header is its ABI, between three parties:
 *
 *  - the host (a VMM or elisactl), which creates one port region per VM and one config
 *    region per VM, writes their first bytes once, and creates one switch service per VM
 *    with the regions at the GVAs below;
 *  - the guest driver of each VM, which sees its own port region only, as guest memory
 *    (the VMM maps the region's memfd into the VM too), and calls the service;
 *  - the switch code, which sees in the sub view its VM's config region and every port
 *    region. It trusts its config region (no guest maps it) and nothing in a port
 *    region: it reads every guest-written field once, and checks it before use.
 *
 * A port region: a header page (struct elisa_net_port), then ELISA_NET_RINGS rings of
 * ELISA_NET_RING_SLOTS slots of ELISA_NET_SLOT_SIZE bytes. Ring 0 is the port's transmit
 * ring (the guest produces, the switch consumes); ring 1 + s receives the frames port s
 * sent (the switch produces, the guest consumes). Every ring has one producer and one
 * consumer; indices are free-running __u32 counters, slot = index % ELISA_NET_RING_SLOTS.
 * A producer writes the slot, then the index (a release store); a consumer reads the
 * index, then the slot (an acquire load).
 */
#ifndef _UAPI_LINUX_ELISA_NET_H
#define _UAPI_LINUX_ELISA_NET_H

#include <linux/types.h>

/* ELISA_NET_MAGIC: first word of a port and of a config region ("ELSW", little endian). */
#define ELISA_NET_MAGIC			0x57534c45
/* ELISA_NET_VERSION: version of this layout. */
#define ELISA_NET_VERSION		1
/* ELISA_NET_MAX_PORTS: most ports of one switch (a service has at most 8 regions: the
 * config region and one per port). */
#define ELISA_NET_MAX_PORTS		7
/* ELISA_NET_RING_SLOTS: slots per ring, a power of two. */
#define ELISA_NET_RING_SLOTS		64
/* ELISA_NET_SLOT_SIZE: bytes per slot: struct elisa_net_slot. */
#define ELISA_NET_SLOT_SIZE		2048
/* ELISA_NET_MIN_FRAME, ELISA_NET_MAX_FRAME: an Ethernet frame without FCS, from the
 * 14-byte header (no padding required) to 1514 bytes of an MTU of 1500 plus a VLAN tag. */
#define ELISA_NET_MIN_FRAME		14
#define ELISA_NET_MAX_FRAME		1518
/* ELISA_NET_RINGS: rings per port: transmit, and one receive ring per source port. */
#define ELISA_NET_RINGS			(1 + ELISA_NET_MAX_PORTS)
/* ELISA_NET_RING_SIZE: bytes per ring. */
#define ELISA_NET_RING_SIZE		(ELISA_NET_RING_SLOTS * ELISA_NET_SLOT_SIZE)
/* ELISA_NET_PORT_SIZE: bytes of a port region: the header page and the rings. */
#define ELISA_NET_PORT_SIZE		(4096 + ELISA_NET_RINGS * ELISA_NET_RING_SIZE)
/* ELISA_NET_CONFIG_SIZE: bytes of a config region. */
#define ELISA_NET_CONFIG_SIZE		4096

/* The switch's GVAs in the sub view (the regions of its ELISA_CREATE_SERVICE): its VM's
 * config region, and port p's region at ELISA_NET_PORT_GVA(p). The code may be anywhere. */
#define ELISA_NET_CONFIG_GVA		0xffff800040000000ULL
#define ELISA_NET_PORT_STRIDE		0x200000ULL
#define ELISA_NET_PORT_GVA(p)		(ELISA_NET_CONFIG_GVA + ELISA_NET_PORT_STRIDE * (1 + (p)))

/*
 * The service's calls: RDI = operation, RSI = argument. RAX = the result: 0 or more, or a
 * negative errno (never -4, which the gate protocol keeps for a failed-back call).
 *
 * ELISA_NET_OP_INFO:	returns this VM's port number | (number of ports << 8) |
 *			(ELISA_NET_VERSION << 16).
 * ELISA_NET_OP_XMIT:	sends the frames of this port's transmit ring, at most RSI of them
 *			(0 or above ELISA_NET_RING_SLOTS: ELISA_NET_RING_SLOTS), and returns how
 *			many slots it consumed, sent or dropped (the port's counters say which).
 *			-EBUSY: another vCPU of this VM is in the switch (try again; after
 *			ELISA_NET_LOCK_STEAL such answers in a row the switch takes the lock
 *			over: see struct elisa_net_config);
 *			-EIO: the transmit ring's producer index is more than
 *			ELISA_NET_RING_SLOTS ahead of the switch's consumer index (nothing is
 *			consumed; the guest can resynchronise to tx.cons);
 *			-ENODEV: this port's region header does not hold ELISA_NET_MAGIC and
 *			this port's number (nothing is read or written).
 * ELISA_NET_OP_STATS:	copies nothing; returns the counter number RSI of this port
 *			(ELISA_NET_STAT_*), or -EINVAL.
 * Any other operation: -EINVAL. A config region the host did not set up (magic,
 * version, port or ports wrong): -ENODEV for every call.
 */
#define ELISA_NET_OP_INFO		1
#define ELISA_NET_OP_XMIT		2
#define ELISA_NET_OP_STATS		3

/* The port's counters (struct elisa_net_config.stats), each a __u64. */
#define ELISA_NET_STAT_TX_FRAMES	0	/* frames taken from the transmit ring */
#define ELISA_NET_STAT_TX_DELIVERED	1	/* copies put into a receive ring */
#define ELISA_NET_STAT_DROP_LENGTH	2	/* length below MIN or above MAX_FRAME */
#define ELISA_NET_STAT_DROP_SPOOFED	3	/* source MAC not this port's */
#define ELISA_NET_STAT_DROP_NO_PORT	4	/* unicast to no port (or to address 0), or to itself */
#define ELISA_NET_STAT_DROP_FULL	5	/* the receiver's ring was full */
#define ELISA_NET_STAT_DROP_BAD_PEER	6	/* the receiver's ring indices were invalid, or its
					 * header's magic or port number wrong */
#define ELISA_NET_STAT_RING_ERRORS	7	/* XMIT calls that returned -EIO */
#define ELISA_NET_STAT_LOCK_STEALS	8	/* locks taken over (ELISA_NET_LOCK_STEAL) */
#define ELISA_NET_NR_STATS		9

/* ELISA_NET_LOCK_STEAL: -EBUSY answers in a row after which XMIT takes the lock over. */
#define ELISA_NET_LOCK_STEAL		1024

/**
 * struct elisa_net_ring_idx - one ring's indices, each on a cache line of its own
 * @prod:	the producer's index: slots below it are filled.
 * @cons:	the consumer's index: slots below it are free again.
 *
 * For the transmit ring the guest writes @prod and the switch @cons; for a receive ring
 * the switch writes @prod and the guest @cons. The switch keeps its own copy of the
 * indices it writes (in the config region) and only publishes them here.
 */
struct elisa_net_ring_idx {
	__u32 prod;
	__u32 pad0[15];
	__u32 cons;
	__u32 pad1[15];
};

/**
 * struct elisa_net_port - the header page of a port region
 * @magic:	ELISA_NET_MAGIC, written by the host.
 * @version:	ELISA_NET_VERSION, written by the host.
 * @port:	this port's number, written by the host. The switch takes the sender's port
 *		from its config region, never from here; it writes into a receiver's rings
 *		only where this and @magic name that receiver (a guard against a wrong
 *		layout, which the receiver's guest can write).
 * @nr_ports:	ports of the switch, written by the host.
 * @mac:	this port's MAC address, written by the host, for the guest. The switch
 *		does not read it: it sends only frames whose source is the sender's address
 *		in its config region's @macs, and finds receivers there too.
 * @pad:	0.
 * @token:	this port's secret, written by the host: the switch writes into this
 *		port's rings only where @token equals @tokens[@port] of the sending port's
 *		config region, which no guest sees. It is what makes a port region at another
 *		port's place (a service made with two ports' regions swapped) useless to its
 *		guest, which can rewrite @magic and @port but cannot learn another port's
 *		token. 0 in a set-up without tokens (then @magic and @port alone).
 * @reserved:	0.
 * @tx:		ring 0, the transmit ring.
 * @rx:		@rx[s] is ring 1 + s, frames from port s (@rx[port] stays empty).
 */
struct elisa_net_port {
	__u32 magic;
	__u32 version;
	__u32 port;
	__u32 nr_ports;
	__u8 mac[6];
	__u8 pad[2];
	__u64 token;
	__u64 reserved[4];
	struct elisa_net_ring_idx tx;
	struct elisa_net_ring_idx rx[ELISA_NET_MAX_PORTS];
};

/**
 * struct elisa_net_slot - one slot of a ring
 * @len:	the frame's length in bytes, ELISA_NET_MIN_FRAME..ELISA_NET_MAX_FRAME.
 * @flags:	0.
 * @reserved:	0.
 * @data:	the frame, from its destination MAC address; no FCS.
 */
struct elisa_net_slot {
	__u32 len;
	__u32 flags;
	__u64 reserved;
	__u8 data[ELISA_NET_SLOT_SIZE - 16];
};

/**
 * struct elisa_net_config - a VM's config region: the switch's own state for its port
 * @magic:	ELISA_NET_MAGIC, written by the host.
 * @version:	ELISA_NET_VERSION, written by the host.
 * @port:	this VM's port number, below @nr_ports, written by the host: the identity
 *		of every frame this VM sends.
 * @nr_ports:	ports of the switch, 2..ELISA_NET_MAX_PORTS, written by the host.
 * @macs:	the static forwarding table, written by the host: port p's MAC address in
 *		the low 48 bits of @macs[p] (byte 0 of the address in bits 0-7); 0 for none.
 * @lock:	0 when no vCPU of this VM is in the switch; the switch's own.
 * @tx_cons:	the switch's transmit consumer index; the switch's own (0 at setup).
 * @rx_prod:	@rx_prod[d]: the switch's producer index of ring 1 + port in port d's
 *		region; the switch's own (0 at setup).
 * @lock_waits:	-EBUSY answers since the lock was last taken; the switch's own.
 * @stats:	the port's counters (ELISA_NET_STAT_*); the switch's own.
 * @tokens:	@tokens[d]: port d's secret (struct elisa_net_port's @token), written by
 *		the host, random, distinct; 0 for none.
 *
 * No guest maps a config region: the host writes it before the first grant, and only
 * the switch (in this VM's sub view) afterwards.
 *
 * The lock is taken by a call of this VM only. A call that elisa fails back (an event
 * was due and the VMM or KVM changed the vCPU meanwhile: gate-protocol.rst) never runs
 * again, and would hold the lock for good: so after ELISA_NET_LOCK_STEAL -EBUSY answers
 * in a row, XMIT takes the lock over. Should the holder still be running (its vCPU
 * preempted that long while another one kept calling), two calls of this VM consume its
 * transmit ring at once: frames of this port only may be lost or garbled; no other
 * port's ring or region is touched.
 */
struct elisa_net_config {
	__u32 magic;
	__u32 version;
	__u32 port;
	__u32 nr_ports;
	__u64 macs[ELISA_NET_MAX_PORTS];
	__u32 lock;
	__u32 tx_cons;
	__u32 rx_prod[ELISA_NET_MAX_PORTS];
	__u32 lock_waits;
	__u64 stats[ELISA_NET_NR_STATS];
	__u64 tokens[ELISA_NET_MAX_PORTS];
};

#endif /* _UAPI_LINUX_ELISA_NET_H */
