/* SPDX-License-Identifier: GPL-2.0 */
/*
 * elisa_net.h: the host's part of a switch (linux/elisa_net.h), for elisa_net_test and
 * elisa_bench: each port's two regions (memfds the host maps, written before the first
 * grant), its switch service, and the port region mapped into a VM as memory.
 * Needs elisa_kvm.h and the generated elisa_switch_blob.h.
 */
#ifndef ELISA_NET_LIB_H
#define ELISA_NET_LIB_H

#include <sys/mman.h>
#include <linux/elisa_net.h>
#include "elisa_switch_blob.h"

/* Where the switch service's code lies in the sub view. */
#define NET_CODE_GVA 0xffff800020000000UL
/* Where a VMM maps its port region: guest-physical and, in the test guests, virtual. */
#define NET_PORT_GPA 0x40000000UL
#define NET_PORT_GVA 0x700000000000UL
#define NET_PORT_SLOT 10

struct net_port {
	int port_fd, cfg_fd;		/* the memfds */
	int port_region, cfg_region;	/* their elisa regions */
	int service;			/* this port's switch service */
	struct elisa_net_port *hdr;	/* the host's mapping of the port region */
	struct elisa_net_config *cfg;	/* and of the config region */
};

/* Port p's MAC address, as elisa_net_config.macs holds it: 02:00:00:00:00:p+1. */
static inline u64 net_mac(int p)
{
	return 0x02 | (u64)(p + 1) << 40;
}

static inline int net_memfd(const char *name, size_t size, void **map)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	TEST_ASSERT(fd >= 0 && ftruncate(fd, size) == 0, "memfd %s", name);
	TEST_ASSERT(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "F_SEAL_SHRINK");
	*map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(*map != MAP_FAILED, "mmap %s", name);
	return fd;
}

static inline int net_region(int dev, int fd, size_t size)
{
	struct elisa_create_region cr = { .fd = fd, .length = size };

	return elisa_ioctl(dev, ELISA_CREATE_REGION, &cr);
}

/*
 * Port @p's token (struct elisa_net_port): distinct and not 0 (elisactl switch init draws
 * random ones; the tests need only that no port's equals another's).
 */
static inline u64 net_token(int p)
{
	return 0x7e57000000000000ULL | ((u64)(p + 1) << 8) | 0xa5;
}

/* Port @p of @nports: its two regions, their headers written (elisa_switch's init_*). */
static inline void net_port_setup(int dev, struct net_port *pt, int p, int nports)
{
	void *m;
	int i;

	pt->port_fd = net_memfd("elisa-net-port", ELISA_NET_PORT_SIZE, &m);
	pt->hdr = m;
	pt->cfg_fd = net_memfd("elisa-net-config", ELISA_NET_CONFIG_SIZE, &m);
	pt->cfg = m;

	pt->hdr->magic = ELISA_NET_MAGIC;
	pt->hdr->version = ELISA_NET_VERSION;
	pt->hdr->port = p;
	pt->hdr->nr_ports = nports;
	for (i = 0; i < 6; i++)
		pt->hdr->mac[i] = (u8)(net_mac(p) >> (8 * i));
	pt->hdr->token = net_token(p);
	pt->cfg->magic = ELISA_NET_MAGIC;
	pt->cfg->version = ELISA_NET_VERSION;
	pt->cfg->port = p;
	pt->cfg->nr_ports = nports;
	for (i = 0; i < nports; i++) {
		pt->cfg->macs[i] = net_mac(i);
		pt->cfg->tokens[i] = net_token(i);
	}

	pt->port_region = net_region(dev, pt->port_fd, ELISA_NET_PORT_SIZE);
	pt->cfg_region = net_region(dev, pt->cfg_fd, ELISA_NET_CONFIG_SIZE);
}

/* Port @p's switch service: switch.bin, its config region, every port's region. */
static inline void net_service_create(int dev, struct net_port *ports, int p, int nports)
{
	static u8 code[ELISA_SWITCH_CODE_PAGES * 4096];
	struct elisa_create_service cs = { 0 };
	int code_fd, i;

	memset(code, 0xcc, sizeof(code));
	memcpy(code, elisa_switch_code, sizeof(elisa_switch_code));
	code_fd = memfd_create("elisa-switch", MFD_CLOEXEC);
	TEST_ASSERT(code_fd >= 0 && pwrite(code_fd, code, sizeof(code), 0) == sizeof(code),
		    "switch code memfd");
	cs.code_fd = code_fd;
	cs.code_size = sizeof(code);
	cs.code_gva = NET_CODE_GVA;
	cs.nr_regions = 1 + nports;
	cs.regions[0].region_fd = ports[p].cfg_region;
	cs.regions[0].access = ELISA_ACCESS_READ | ELISA_ACCESS_WRITE;
	cs.regions[0].gva = ELISA_NET_CONFIG_GVA;
	for (i = 0; i < nports; i++) {
		cs.regions[1 + i].region_fd = ports[i].port_region;
		cs.regions[1 + i].access = ELISA_ACCESS_READ | ELISA_ACCESS_WRITE;
		cs.regions[1 + i].gva = ELISA_NET_PORT_GVA(i);
	}
	ports[p].service = elisa_ioctl(dev, ELISA_CREATE_SERVICE, &cs);
	close(code_fd);
}

/* The VMM's part: @pt's port region as @vm's memory at NET_PORT_GPA, mapped at NET_PORT_GVA. */
static inline void net_port_map(struct kvm_vm *vm, struct net_port *pt)
{
	vm_set_user_memory_region(vm, NET_PORT_SLOT, 0, NET_PORT_GPA, ELISA_NET_PORT_SIZE, pt->hdr);
	virt_map(vm, NET_PORT_GVA, NET_PORT_GPA, ELISA_NET_PORT_SIZE / 4096);
}

static inline void net_port_free(struct net_port *pt)
{
	if (pt->service >= 0)
		close(pt->service);
	close(pt->port_region);
	close(pt->cfg_region);
	munmap(pt->hdr, ELISA_NET_PORT_SIZE);
	munmap(pt->cfg, ELISA_NET_CONFIG_SIZE);
	close(pt->port_fd);
	close(pt->cfg_fd);
}

/* In a guest: slot @idx of ring @ring of the port region at NET_PORT_GVA. */
static inline struct elisa_net_slot *net_guest_slot(unsigned int ring, u32 idx)
{
	return (struct elisa_net_slot *)(NET_PORT_GVA + 4096 + (u64)ring * ELISA_NET_RING_SIZE +
					 (u64)(idx % ELISA_NET_RING_SLOTS) * ELISA_NET_SLOT_SIZE);
}

#endif /* ELISA_NET_LIB_H */
