// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_net_test: three VMs exchange Ethernet frames through the elisa switch
 * (linux/elisa_net.h, Documentation/networking.rst), with no VM exit per frame, and a
 * hostile port reaches nothing of the others.
 *
 * Each VM (port 0, 1, 2) has a port region: a memfd the VMM maps into the VM as memory at
 * NET_PORT_GPA (the guest's rings, in its default view) and that every VM's switch service
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
#include "elisa_kvm.h"
#include "elisa_call.h"
#include "elisa_guest_blob.h"
#include "elisa_net.h"

#define G 0x500000000000UL
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
	return (struct elisa_net_port *)NET_PORT_GVA;
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
			struct elisa_net_slot *s = net_guest_slot(0, prod);
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
		struct elisa_net_slot *s = net_guest_slot(1 + c->peer, cons);
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
	struct net_port *net;
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	int evm, grant_err;
	struct elisa_grant grant;
};

static struct port ports[NPORTS];
static struct net_port nports[NPORTS];

/* The VMM's part: the VM, its port region as memory, the grant of its switch service. */
static void create_vm(int dev, int p)
{
	struct port *pt = &ports[p];

	pt->net = &nports[p];
	pt->vm = vm_create_with_one_vcpu(&pt->vcpu, guest_code);
	net_port_map(pt->vm, pt->net);
	pt->evm = elisa_attach_grant(dev, pt->vm, pt->net->service, G, elisa_guest_block,
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
	return ports[p].net->cfg->stats[s];
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
			    .dst = to < 0 ? 0xffffffffffffUL : net_mac(to), .len = len,
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
		net_port_setup(dev, &nports[p], p, NPORTS);
	for (p = 0; p < NPORTS; p++)
		net_service_create(dev, nports, p, NPORTS);
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
	memcpy(before, ports[0].net->cfg->stats, sizeof(before));
	ports[0].net->hdr->tx.prod = ports[0].net->hdr->tx.cons + 1000;
	r = do_call(0, ELISA_NET_OP_XMIT, 0);
	CHECK(r == -EIO && stat(0, ELISA_NET_STAT_TX_FRAMES) == before[ELISA_NET_STAT_TX_FRAMES] &&
	      stat(0, ELISA_NET_STAT_RING_ERRORS) == 1, "hostile_producer", ": XMIT %ld", r);
	ports[0].net->hdr->tx.prod = ports[0].net->hdr->tx.cons;

	{
		static const u32 lens[] = { 0, 13, 1519, 0xffffffff, 64 };
		u32 prod = ports[0].net->hdr->tx.prod;

		for (i = 0; i < 5; i++, prod++) {
			s = (void *)((u8 *)ports[0].net->hdr + 4096 +
				     (prod % ELISA_NET_RING_SLOTS) * ELISA_NET_SLOT_SIZE);
			memset(s->data, 0x5a, 64);
			memcpy(s->data, &(u64){ net_mac(1) }, 6);
			/* the last one claims port 2's source address */
			memcpy(s->data + 6, &(u64){ net_mac(i == 4 ? 2 : 0) }, 6);
			s->len = lens[i];
		}
		ports[0].net->hdr->tx.prod = prod;
	}
	r = do_call(0, ELISA_NET_OP_XMIT, 0);
	run_cmd(1, (struct net_cmd){ .op = CMD_RECV, .peer = 0 }, &uc);
	CHECK(r == 5 && uc.args[2] == 0 && stat(0, ELISA_NET_STAT_DROP_LENGTH) == 4 &&
	      stat(0, ELISA_NET_STAT_DROP_SPOOFED) == 1 &&
	      stat(0, ELISA_NET_STAT_TX_DELIVERED) == before[ELISA_NET_STAT_TX_DELIVERED],
	      "hostile_frames", ": XMIT %ld, port 1 received %lu, drops: length %lu, spoofed %lu",
	      r, (unsigned long)uc.args[2], (unsigned long)stat(0, ELISA_NET_STAT_DROP_LENGTH),
	      (unsigned long)stat(0, ELISA_NET_STAT_DROP_SPOOFED));

	ports[0].net->hdr->rx[1].cons = ports[0].net->hdr->rx[1].prod + 5000;
	run_cmd(1, (struct net_cmd){ .op = CMD_SEND, .n = 8, .dst = net_mac(0), .len = 64,
		.seq = seq1 }, &uc);
	seq1 += 8;
	CHECK(uc.args[2] == 8 && uc.args[4] == 0 && stat(1, ELISA_NET_STAT_DROP_BAD_PEER) == 8,
	      "hostile_consumer", ": port 1 sent %lu (%lu failed calls), dropped as bad peer %lu",
	      (unsigned long)uc.args[2], (unsigned long)uc.args[4],
	      (unsigned long)stat(1, ELISA_NET_STAT_DROP_BAD_PEER));

	ports[0].net->cfg->lock = 1;
	r = do_call(0, ELISA_NET_OP_XMIT, 0);
	ports[0].net->cfg->lock = 0;
	CHECK(r == -EBUSY, "hostile_lock", ": XMIT %ld", r);

	ok = transfer(2, 1, 2 * BATCH, 1000, one, 1, &x, &seq2);
	ok = ok && transfer(1, 2, 2 * BATCH, 1000, two, 1, &x, &seq1);
	ok = ok && stat(2, ELISA_NET_STAT_DROP_FULL) == 0 && stat(1, ELISA_NET_STAT_DROP_FULL) == 0;
	CHECK(ok && x == 1, "others_unharmed", ": exits %lu", (unsigned long)x);

	for (p = 0; p < NPORTS; p++) {
		kvm_vm_free(ports[p].vm);
		close(ports[p].evm);
		net_port_free(&nports[p]);
	}
	close(dev);
	ksft_finished();
}
