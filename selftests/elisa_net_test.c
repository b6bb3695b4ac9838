// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_net_test: three VMs exchange Ethernet frames through the elisa switch
 * (linux/elisa_net.h, Documentation/networking.rst), with no VM exit per frame, and a
 * hostile port reaches nothing of the others.
 *
 * Each VM (port 0, 1, 2) has a port region: a memfd the VMM maps into the VM as memory at
 * PORT_GPA (the guest's rings, in its default view) and that every VM's switch service
 * maps in its sub view; and a config region (the switch's state for that port), which
 * only its own service maps. The switch's code is tools/services/switch (switch.bin).
 * Each guest runs commands: send N frames to a port (write the transmit ring, call XMIT
 * until the switch took them), receive from a port (drain the receive ring, check every
 * frame), or call the switch once. Frames carry a sequence number; the receiver checks
 * the length, the addresses and every payload byte.
 *
 *  1. grant: the three VMs are attached and granted their switch service
 *  2. info: each VM's INFO call names its own port (the switch's identity for the VM
 *     comes from its config region, never from the guest)
 *  3. unicast_64, 4. unicast_1514: port 0 sends 1024 frames of 64 and of 1514 bytes to
 *     port 1 in batches of 64 (one guest run each), port 1 receives them all intact;
 *     every run of either VM takes one VM exit, its ucall: 0 exits per frame
 *  5. broadcast: port 2 broadcasts 128 frames; ports 0 and 1 receive all, port 2 none
 *  6. counters: STATS of port 0 counts what it sent and delivered, and no drop
 *  Port 0 turns hostile (the host writes its port region as its guest could):
 *  7. hostile_producer: its producer index 1000 ahead: XMIT returns -EIO, nothing sent
 *  8. hostile_frames: bad lengths (0, 13, 1519, 0xffffffff) and a source address of
 *     port 1: all dropped and counted, nothing reaches port 1 or 2
 *  9. hostile_consumer: its receive ring from port 1 with a consumer index 5000 ahead:
 *     port 1's frames to port 0 are dropped (bad peer), port 1's XMIT still succeeds
 * 10. hostile_lock: port 0's switch lock held (as by a vCPU parked in the switch): its
 *     XMIT returns -EBUSY
 * 11. others_unharmed: after all this, port 2 sends 128 frames to port 1, intact, and
 *     port 1 128 to port 2, with no drop and no exit per frame
 */
#include <sys/mman.h>
#include "elisa_kvm.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"
#include "elisa_switch_blob.h"
#include <linux/elisa_net.h>

#define G 0x500000000000UL
#define CODE_GVA 0xffff800020000000UL
#define PORT_GPA 0x40000000UL
#define PORT_GVA 0x700000000000UL
#define PORT_SLOT 10
#define NPORTS 3
#define BATCH 64
#define FRAMES 1024
#define SPIN_LIMIT 100000

enum { CMD_NONE, CMD_SEND, CMD_RECV, CMD_CALL };

/* The host's command to a guest, copied into the guest before each run. */
struct net_cmd {
	u64 op;
	u64 n;		/* SEND: frames */
	u64 dst;	/* SEND: destination MAC (as elisa_net_config.macs); CALL: operation */
	u64 len;	/* SEND: frame length; CALL: argument */
	u64 peer;	/* RECV: source port */
	u64 seq;	/* SEND: first sequence number */
};

static struct net_cmd g_cmd;

static inline u8 pattern(u64 seq, u64 i)
{
	return (u8)(seq * 7 + i * 13 + 1);
}

static struct elisa_net_port *guest_port(void)
{
	return (struct elisa_net_port *)PORT_GVA;
}

static struct elisa_net_slot *guest_slot(unsigned int ring, u32 idx)
{
	return (struct elisa_net_slot *)(PORT_GVA + 4096 + (u64)ring * ELISA_NET_RING_SIZE +
					 (u64)(idx % ELISA_NET_RING_SLOTS) * ELISA_NET_SLOT_SIZE);
}

/*
 * Queues cmd->n frames and calls XMIT until the switch took them all. Returns the frames
 * queued; *calls the XMIT calls, *errs those that returned < 0.
 */
static u64 guest_send(const struct net_cmd *c, u64 *calls, u64 *errs)
{
	struct elisa_net_port *p = guest_port();
	u32 prod = READ_ONCE(p->tx.prod);
	u64 sent = 0, spins = 0, i;
	long r;

	while (sent < c->n && spins < SPIN_LIMIT) {
		if (prod - READ_ONCE(p->tx.cons) < ELISA_NET_RING_SLOTS) {
			struct elisa_net_slot *s = guest_slot(0, prod);
			u64 seq = c->seq + sent;

			for (i = 0; i < 6; i++) {
				s->data[i] = (u8)(c->dst >> (8 * i));
				s->data[6 + i] = p->mac[i];
			}
			s->data[12] = 0x88;
			s->data[13] = 0xb5;
			memcpy(&s->data[14], &seq, 8);
			for (i = 22; i < c->len; i++)
				s->data[i] = pattern(seq, i);
			s->len = (u32)c->len;
			s->flags = 0;
			WRITE_ONCE(p->tx.prod, ++prod);
			sent++;
			if (sent % BATCH && sent < c->n)
				continue;
		}
		r = elisa_call(G, 511, ELISA_NET_OP_XMIT, 0);
		(*calls)++;
		*errs += r < 0;
		spins++;
	}
	while (READ_ONCE(p->tx.cons) != prod && spins++ < SPIN_LIMIT) {
		r = elisa_call(G, 511, ELISA_NET_OP_XMIT, 0);
		(*calls)++;
		*errs += r < 0;
	}
	return sent;
}

/*
 * Drains the receive ring from port cmd->peer. Returns the frames taken; *bad counts
 * frames whose length, addresses, sequence (one more than the last) or bytes are wrong.
 */
static u64 guest_recv(const struct net_cmd *c, u64 *bad, u64 *last_seq)
{
	struct elisa_net_port *p = guest_port();
	struct elisa_net_ring_idx *ri = &p->rx[c->peer];
	u32 cons = READ_ONCE(ri->cons);
	u64 got = 0, seq, i;

	while (cons != READ_ONCE(ri->prod)) {
		struct elisa_net_slot *s = guest_slot(1 + c->peer, cons);
		u32 len = READ_ONCE(s->len);
		bool ok = len >= 22 && len <= ELISA_NET_MAX_FRAME;

		if (ok) {
			memcpy(&seq, &s->data[14], 8);
			ok = (got == 0 && *last_seq == ~0UL) || seq == *last_seq + 1;
			*last_seq = seq;
			for (i = 22; ok && i < len; i++)
				ok = s->data[i] == pattern(seq, i);
		}
		*bad += !ok;
		got++;
		WRITE_ONCE(ri->cons, ++cons);
	}
	return got;
}

static void guest_code(void)
{
	u64 last_seq[NPORTS] = { ~0UL, ~0UL, ~0UL };

	for (;;) {
		struct net_cmd c = READ_ONCE(g_cmd);
		u64 a = 0, b = 0, d = 0;

		switch (c.op) {
		case CMD_SEND:
			a = guest_send(&c, &b, &d);
			break;
		case CMD_RECV:
			a = guest_recv(&c, &b, &last_seq[c.peer % NPORTS]);
			break;
		case CMD_CALL:
			a = elisa_call(G, 511, c.dst, c.len);
			break;
		}
		GUEST_SYNC_ARGS(c.op, a, b, d, 0);
	}
}

struct port {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	int evm, grant_err, port_fd, cfg_fd, port_region, cfg_region, service;
	struct elisa_net_port *hdr;	/* the host's mapping of the port region */
	struct elisa_net_config *cfg;	/* and of the config region */
	struct elisa_grant grant;
};

static struct port ports[NPORTS];

static u64 mac_of(int p)
{
	return 0x02 | (u64)(p + 1) << 40;	/* 02:00:00:00:00:0p+1 */
}

static int memfd_sized(const char *name, size_t size, void **map)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	TEST_ASSERT(fd >= 0 && ftruncate(fd, size) == 0, "memfd %s", name);
	TEST_ASSERT(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "F_SEAL_SHRINK");
	*map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(*map != MAP_FAILED, "mmap %s", name);
	return fd;
}

static int region_of(int dev, int fd, size_t size)
{
	struct elisa_create_region cr = { .fd = fd, .length = size };

	return elisa_ioctl(dev, ELISA_CREATE_REGION, &cr);
}

/* The host's part: the two regions of port @p, written before the first grant. */
static void setup_port(int dev, int p)
{
	struct port *pt = &ports[p];
	void *m;
	int i;

	pt->port_fd = memfd_sized("elisa-net-port", ELISA_NET_PORT_SIZE, &m);
	pt->hdr = m;
	pt->cfg_fd = memfd_sized("elisa-net-config", ELISA_NET_CONFIG_SIZE, &m);
	pt->cfg = m;

	pt->hdr->magic = ELISA_NET_MAGIC;
	pt->hdr->version = ELISA_NET_VERSION;
	pt->hdr->port = p;
	pt->hdr->nr_ports = NPORTS;
	for (i = 0; i < 6; i++)
		pt->hdr->mac[i] = (u8)(mac_of(p) >> (8 * i));
	pt->cfg->magic = ELISA_NET_MAGIC;
	pt->cfg->version = ELISA_NET_VERSION;
	pt->cfg->port = p;
	pt->cfg->nr_ports = NPORTS;
	for (i = 0; i < NPORTS; i++)
		pt->cfg->macs[i] = mac_of(i);

	pt->port_region = region_of(dev, pt->port_fd, ELISA_NET_PORT_SIZE);
	pt->cfg_region = region_of(dev, pt->cfg_fd, ELISA_NET_CONFIG_SIZE);
}

/* Port @p's switch service: the code, its config region, every port region. */
static void create_service(int dev, int p)
{
	struct elisa_create_service cs = { 0 };
	static u8 code[ELISA_SWITCH_CODE_PAGES * 4096];
	int code_fd, i;

	memset(code, 0xcc, sizeof(code));
	memcpy(code, elisa_switch_code, sizeof(elisa_switch_code));
	code_fd = memfd_create("elisa-switch", MFD_CLOEXEC);
	TEST_ASSERT(code_fd >= 0 && pwrite(code_fd, code, sizeof(code), 0) == sizeof(code),
		    "switch code memfd");
	cs.code_fd = code_fd;
	cs.code_size = sizeof(code);
	cs.code_gva = CODE_GVA;
	cs.nr_regions = 1 + NPORTS;
	cs.regions[0].region_fd = ports[p].cfg_region;
	cs.regions[0].access = ELISA_ACCESS_READ | ELISA_ACCESS_WRITE;
	cs.regions[0].gva = ELISA_NET_CONFIG_GVA;
	for (i = 0; i < NPORTS; i++) {
		cs.regions[1 + i].region_fd = ports[i].port_region;
		cs.regions[1 + i].access = ELISA_ACCESS_READ | ELISA_ACCESS_WRITE;
		cs.regions[1 + i].gva = ELISA_NET_PORT_GVA(i);
	}
	ports[p].service = elisa_ioctl(dev, ELISA_CREATE_SERVICE, &cs);
	close(code_fd);
}

/* The VMM's part: the VM, its port region as memory at PORT_GPA, the grant. */
static void create_vm(int dev, int p)
{
	struct port *pt = &ports[p];

	pt->vm = vm_create_with_one_vcpu(&pt->vcpu, guest_code);
	vm_set_user_memory_region(pt->vm, PORT_SLOT, 0, PORT_GPA, ELISA_NET_PORT_SIZE, pt->hdr);
	virt_map(pt->vm, PORT_GVA, PORT_GPA, ELISA_NET_PORT_SIZE / 4096);
	pt->evm = elisa_attach_grant(dev, pt->vm, pt->service, G, elisa_guest_block,
				     ELISA_GUEST_BLOCK_PAGES, &pt->grant, &pt->grant_err);
}

/* Runs port @p's guest for one command; returns its VM exits other than interrupts. */
static u64 run_cmd(int p, struct net_cmd c, struct ucall *uc)
{
	g_cmd = c;
	sync_global_to_guest(ports[p].vm, g_cmd);
	return elisa_sync_exits(ports[p].vcpu, c.op, uc);
}

static long do_call(int p, u64 op, u64 arg)
{
	struct ucall uc;

	run_cmd(p, (struct net_cmd){ .op = CMD_CALL, .dst = op, .len = arg }, &uc);
	return (long)uc.args[2];
}

static u64 stat(int p, int s)
{
	return ports[p].cfg->stats[s];
}

/*
 * Port @from sends @n frames of @len bytes to @to (-1: broadcast) in batches, and each
 * port of @rcv receives after each batch. Returns true when all went well: every frame
 * received once, intact and in order, by every receiver; *exits gets the largest count
 * of exits of one guest run after the first batch (1 is the ucall alone). The first
 * batch is not counted: its runs fault in the guest's code, stack and ring pages (EPT
 * violations of the default view), which later runs do not take again.
 */
static bool transfer(int from, int to, u64 n, u64 len, const int *rcv, int nrcv, u64 *exits,
		     u64 *seq)
{
	u64 done = 0, got[NPORTS] = { 0 }, bad = 0, errs = 0, x;
	struct ucall uc;
	int r;

	*exits = 0;
	while (done < n) {
		u64 b = n - done < BATCH ? n - done : BATCH;

		x = run_cmd(from, (struct net_cmd){ .op = CMD_SEND, .n = b,
			    .dst = to < 0 ? 0xffffffffffffUL : mac_of(to), .len = len,
			    .seq = *seq + done }, &uc);
		*exits = done && x > *exits ? x : *exits;
		errs += uc.args[4];
		if (uc.args[2] != b)
			break;
		done += b;
		for (r = 0; r < nrcv; r++) {
			x = run_cmd(rcv[r], (struct net_cmd){ .op = CMD_RECV, .peer = from }, &uc);
			*exits = done > b && x > *exits ? x : *exits;
			got[r] += uc.args[2];
			bad += uc.args[3];
		}
	}
	*seq += done;
	for (r = 0; r < nrcv; r++)
		if (got[r] != n)
			ksft_print_msg("port %d got %lu of %lu frames from port %d\n", rcv[r],
				       (unsigned long)got[r], (unsigned long)n, from);
	if (bad || errs)
		ksft_print_msg("%lu bad frames, %lu failed XMIT calls\n", (unsigned long)bad,
			       (unsigned long)errs);
	for (r = 0; r < nrcv; r++)
		if (got[r] != n)
			return false;
	return done == n && !bad && !errs;
}

int main(void)
{
	u64 x, seq0 = 0, seq1 = 0, seq2 = 0, before[ELISA_NET_NR_STATS];
	int dev, p, i, one[1] = { 1 }, two[1] = { 2 }, both[2] = { 0, 1 };
	struct elisa_net_slot *s;
	struct ucall uc;
	bool ok;
	long r;

	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(11);
	dev = elisa_open();

	for (p = 0; p < NPORTS; p++)
		setup_port(dev, p);
	for (p = 0; p < NPORTS; p++)
		create_service(dev, p);
	ok = true;
	for (p = 0; p < NPORTS; p++) {
		create_vm(dev, p);
		ok = ok && !ports[p].grant_err && ports[p].grant.nr_vcpus == 1 &&
		     ports[p].grant.gate_index == 511;
	}
	CHECK(ok, "grant", ": errnos %d %d %d", ports[0].grant_err, ports[1].grant_err,
	      ports[2].grant_err);
	if (!ok)
		ksft_exit_fail_msg("no grant, no switch\n");

	ok = true;
	for (p = 0; p < NPORTS; p++) {
		r = do_call(p, ELISA_NET_OP_INFO, 0);
		ksft_print_msg("port %d: INFO %#lx\n", p, r);
		ok = ok && r == (p | NPORTS << 8 | ELISA_NET_VERSION << 16);
	}
	CHECK(ok, "info", "");

	ok = transfer(0, 1, FRAMES, 64, one, 1, &x, &seq0);
	CHECK(ok && x == 1, "unicast_64", ": %d frames of 64 bytes, most exits of a run %lu",
	      FRAMES, (unsigned long)x);
	ok = transfer(0, 1, FRAMES, 1514, one, 1, &x, &seq0);
	CHECK(ok && x == 1, "unicast_1514", ": %d frames of 1514 bytes, most exits of a run %lu",
	      FRAMES, (unsigned long)x);
	ksft_print_msg("DEMO switch: %d frames of 64 and %d of 1514 bytes from VM 0 to VM 1, "
		       "%d per guest run; VM exits per run %lu (the ucall): 0 per frame\n",
		       FRAMES, FRAMES, BATCH, (unsigned long)x);

	ok = transfer(2, -1, 2 * BATCH, 100, both, 2, &x, &seq2);
	run_cmd(2, (struct net_cmd){ .op = CMD_RECV, .peer = 2 }, &uc);
	CHECK(ok && x == 1 && uc.args[2] == 0, "broadcast", ": exits %lu, to itself %lu",
	      (unsigned long)x, (unsigned long)uc.args[2]);

	ok = stat(0, ELISA_NET_STAT_TX_FRAMES) == 2 * FRAMES &&
	     stat(0, ELISA_NET_STAT_TX_DELIVERED) == 2 * FRAMES &&
	     (u64)do_call(0, ELISA_NET_OP_STATS, ELISA_NET_STAT_TX_DELIVERED) == 2 * FRAMES;
	for (i = ELISA_NET_STAT_DROP_LENGTH; i < ELISA_NET_NR_STATS; i++)
		ok = ok && stat(0, i) == 0 && stat(1, i) == 0 && stat(2, i) == 0;
	CHECK(ok, "counters", ": port 0 sent %lu, delivered %lu",
	      (unsigned long)stat(0, ELISA_NET_STAT_TX_FRAMES),
	      (unsigned long)stat(0, ELISA_NET_STAT_TX_DELIVERED));

	/* Port 0 turns hostile. */
	memcpy(before, ports[0].cfg->stats, sizeof(before));
	ports[0].hdr->tx.prod = ports[0].hdr->tx.cons + 1000;
	r = do_call(0, ELISA_NET_OP_XMIT, 0);
	CHECK(r == -EIO && stat(0, ELISA_NET_STAT_TX_FRAMES) == before[ELISA_NET_STAT_TX_FRAMES] &&
	      stat(0, ELISA_NET_STAT_RING_ERRORS) == 1, "hostile_producer", ": XMIT %ld", r);
	ports[0].hdr->tx.prod = ports[0].hdr->tx.cons;

	{
		static const u32 lens[] = { 0, 13, 1519, 0xffffffff, 64 };
		u32 prod = ports[0].hdr->tx.prod;

		for (i = 0; i < 5; i++, prod++) {
			s = (void *)((u8 *)ports[0].hdr + 4096 +
				     (prod % ELISA_NET_RING_SLOTS) * ELISA_NET_SLOT_SIZE);
			memset(s->data, 0x5a, 64);
			memcpy(s->data, &(u64){ mac_of(1) }, 6);
			/* the last one claims port 2's source address */
			memcpy(s->data + 6, &(u64){ mac_of(i == 4 ? 2 : 0) }, 6);
			s->len = lens[i];
		}
		ports[0].hdr->tx.prod = prod;
	}
	r = do_call(0, ELISA_NET_OP_XMIT, 0);
	run_cmd(1, (struct net_cmd){ .op = CMD_RECV, .peer = 0 }, &uc);
	CHECK(r == 5 && uc.args[2] == 0 && stat(0, ELISA_NET_STAT_DROP_LENGTH) == 4 &&
	      stat(0, ELISA_NET_STAT_DROP_SPOOFED) == 1 &&
	      stat(0, ELISA_NET_STAT_TX_DELIVERED) == before[ELISA_NET_STAT_TX_DELIVERED],
	      "hostile_frames", ": XMIT %ld, port 1 received %lu, drops: length %lu, spoofed %lu",
	      r, (unsigned long)uc.args[2], (unsigned long)stat(0, ELISA_NET_STAT_DROP_LENGTH),
	      (unsigned long)stat(0, ELISA_NET_STAT_DROP_SPOOFED));

	ports[0].hdr->rx[1].cons = ports[0].hdr->rx[1].prod + 5000;
	run_cmd(1, (struct net_cmd){ .op = CMD_SEND, .n = 8, .dst = mac_of(0), .len = 64,
		.seq = seq1 }, &uc);
	seq1 += 8;
	CHECK(uc.args[2] == 8 && uc.args[4] == 0 && stat(1, ELISA_NET_STAT_DROP_BAD_PEER) == 8,
	      "hostile_consumer", ": port 1 sent %lu (%lu failed calls), dropped as bad peer %lu",
	      (unsigned long)uc.args[2], (unsigned long)uc.args[4],
	      (unsigned long)stat(1, ELISA_NET_STAT_DROP_BAD_PEER));

	ports[0].cfg->lock = 1;
	r = do_call(0, ELISA_NET_OP_XMIT, 0);
	ports[0].cfg->lock = 0;
	CHECK(r == -EBUSY, "hostile_lock", ": XMIT %ld", r);

	memcpy(before, ports[2].cfg->stats, sizeof(before));
	ok = transfer(2, 1, 2 * BATCH, 1000, one, 1, &x, &seq2);
	ok = ok && transfer(1, 2, 2 * BATCH, 1000, two, 1, &x, &seq1);
	ok = ok && stat(2, ELISA_NET_STAT_DROP_FULL) == 0 && stat(1, ELISA_NET_STAT_DROP_FULL) == 0;
	CHECK(ok && x == 1, "others_unharmed", ": exits %lu", (unsigned long)x);

	for (p = 0; p < NPORTS; p++) {
		kvm_vm_free(ports[p].vm);
		close(ports[p].evm);
		close(ports[p].service);
		close(ports[p].port_region);
		close(ports[p].cfg_region);
		munmap(ports[p].hdr, ELISA_NET_PORT_SIZE);
		munmap(ports[p].cfg, ELISA_NET_CONFIG_SIZE);
		close(ports[p].port_fd);
		close(ports[p].cfg_fd);
	}
	close(dev);
	ksft_finished();
}
