// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_net.ko: a network device of a Linux guest on the elisa switch
 * (Documentation/networking.rst, include/uapi/linux/elisa_net.h).
 *
 * The VM's port region reaches the guest as BAR 2 of an ivshmem-plain PCI device
 * (1af4:1110) whose memory backend is the port's file; the switch is a service that
 * elisa_guest.ko calls through its gate, by name (@gate, default "switch"). The driver:
 *
 *  - binds only to a BAR 2 whose header page is a port region (ELISA_NET_MAGIC,
 *    ELISA_NET_VERSION, 2 <= nr_ports <= ELISA_NET_MAX_PORTS, port < nr_ports, a unicast
 *    MAC), and only when the switch's ELISA_NET_OP_INFO names the same port, number of
 *    ports and version: another ivshmem device is left alone (-ENODEV, dev_info);
 *  - resynchronises the indices at probe (tx.prod = tx.cons, rx[s].cons = rx[s].prod):
 *    what an earlier driver or boot left in the rings is dropped;
 *  - registers "elisa%d" with the header's MAC (the switch sends only frames with that
 *    source, so the address cannot be changed) and an MTU of 1500;
 *  - transmits by copying each frame into the next slot of the transmit ring (slot first,
 *    then tx.prod, a release store) and calling ELISA_NET_OP_XMIT once no more frames
 *    are coming (!netdev_xmit_more()). A full ring gets one XMIT; a ring still full after
 *    it drops the frame (tx_dropped, tx_fifo_errors), as does a frame above
 *    ELISA_NET_MAX_FRAME (tx_dropped, tx_errors). -EBUSY (another vCPU of this VM is in
 *    the switch) and -EINTR (the host failed the call back) leave the frames queued for
 *    the next kick: the next transmit, or the NAPI poll, which flushes a ring that is not
 *    empty. Every kick and every write of tx.prod happens under the queue's xmit lock;
 *  - receives in a NAPI poll over the receive rings (one per source port), starting
 *    from another source each poll and giving each source at most an equal share of
 *    the budget per pass, so that a sender flooding this port cannot starve the others.
 *    Every index and length read from the region is read once and checked: an index
 *    more than a ring ahead resynchronises the ring, a length outside
 *    ELISA_NET_MIN_FRAME..ELISA_NET_MAX_FRAME drops the slot (rx_length_errors).
 *
 * Why a timer: nothing raises an interrupt when a frame arrives. The switch runs in
 * the sending VM's vCPU and can write the receiver's memory only; ivshmem-plain has no
 * interrupt, and a doorbell (ivshmem-doorbell, an eventfd) would cost the sender a VM
 * exit per kick, which is what the switch exists to avoid. So while the device is up an
 * hrtimer schedules NAPI every @poll_us microseconds (default 100), and NAPI keeps
 * polling by itself while frames keep coming (a poll that uses its whole budget is
 * polled again). The price: a receive latency of up to @poll_us, and a timer interrupt
 * per period while the device is up, busy or idle (in a VM, each costs the VM exits of
 * its timer: count them when counting exits per packet). Without CONFIG_HIGH_RES_TIMERS
 * the period is rounded up to a jiffy.
 *
 * C, not Rust: the kernel crate of Linux 7.2 has no netdev abstraction (no
 * net_device_ops, NAPI, sk_buff or PCI driver bindings a module could use), so a
 * network driver is written in C, like elisa_guest_example.c, on elisa_guest.ko's two
 * exported functions (elisa_guest.h).
 *
 * The guest kernel needs CONFIG_PCI (the device) and, for IP over it, CONFIG_INET; the
 * module refuses to load without CONFIG_PCI.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/etherdevice.h>
#include <linux/hrtimer.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/skbuff.h>
#include <linux/elisa_net.h>	/* the project's include/uapi (Kbuild) */
#include "elisa_guest.h"

#define ELISA_NET_VENDOR	0x1af4	/* Red Hat, Inc. (QEMU's ivshmem) */
#define ELISA_NET_DEVICE	0x1110	/* Inter-VM shared memory */
#define ELISA_NET_BAR		2	/* ivshmem's shared memory BAR */
/* the index mask of a ring */
#define ELISA_NET_SLOT_MASK	(ELISA_NET_RING_SLOTS - 1)
#define POLL_US_MIN		10
#define POLL_US_MAX		1000000

/* netdev_err(), at most net_ratelimit()'s rate: for errors a peer or the host may repeat */
#define elisa_net_err_rl(ndev, fmt, ...)				\
	do {								\
		if (net_ratelimit())					\
			netdev_err(ndev, fmt, ##__VA_ARGS__);		\
	} while (0)

static char *gate = "switch";
module_param(gate, charp, 0444);
MODULE_PARM_DESC(gate, "the switch service's gate, by name (default: switch)");

static uint poll_us = 100;
module_param(poll_us, uint, 0644);
MODULE_PARM_DESC(poll_us, "receive polling period in microseconds, 10..1000000 (default: 100)");

/**
 * struct elisa_net - one port
 * @ndev:	the network device.
 * @pdev:	the ivshmem device.
 * @port:	the port region, mapped write-back (BAR 2 is the backend's RAM).
 * @napi:	the receive poll (and the transmit flush).
 * @timer:	schedules @napi every @poll_us while the device is up.
 * @up:		the device is up: the timer restarts itself.
 * @gate:	the switch's gate number (elisa_guest_find()).
 * @me:		this port's number, from the header and INFO.
 * @nr_ports:	the switch's number of ports.
 * @tx_prod:	the transmit producer index (this driver is its only writer; the copy in
 *		the region is published, never read back). Under the xmit lock.
 * @rx_cons:	each receive ring's consumer index, likewise. In the NAPI poll.
 * @rx_first:	the source the next poll starts with.
 * @xmit_busy:	XMIT calls that returned -EBUSY or -EINTR (frames left queued).
 * @xmit_errors: XMIT calls that failed otherwise.
 */
struct elisa_net {
	struct net_device *ndev;
	struct pci_dev *pdev;
	struct elisa_net_port *port;
	struct napi_struct napi;
	struct hrtimer timer;
	bool up;
	unsigned int gate;
	u32 me;
	u32 nr_ports;
	u32 tx_prod;
	u32 rx_cons[ELISA_NET_MAX_PORTS];
	u32 rx_first;
	atomic_long_t xmit_busy;
	atomic_long_t xmit_errors;
};

/* Slot @idx of ring @ring (0: transmit, 1 + s: from port s). */
static struct elisa_net_slot *elisa_net_slot(struct elisa_net *en, unsigned int ring, u32 idx)
{
	return (void *)en->port + 4096 + ring * ELISA_NET_RING_SIZE +
	       (idx & ELISA_NET_SLOT_MASK) * ELISA_NET_SLOT_SIZE;
}

/*
 * One ELISA_NET_OP_XMIT call: the switch sends what the transmit ring holds. Called
 * with the xmit lock held. Returns the slots consumed or a negative errno.
 */
static long elisa_net_kick(struct elisa_net *en)
{
	struct net_device *ndev = en->ndev;
	long r = elisa_guest_call(en->gate, ELISA_NET_OP_XMIT, 0, 0, 0, 0);
	u32 cons;

	if (r >= 0)
		return r;
	switch (r) {
	case -EBUSY:	/* another vCPU of this VM is in the switch */
	case -EINTR:	/* failed back: the switch may or may not have run */
		atomic_long_inc(&en->xmit_busy);
		break;
	case -EIO:
		/*
		 * tx.prod is more than a ring ahead of the switch's consumer: not this
		 * driver's doing (it keeps the ring at most full). Drop what is queued.
		 */
		cons = smp_load_acquire(&en->port->tx.cons);
		/* At most a ring's worth was queued: cons may be anything here. */
		DEV_STATS_ADD(ndev, tx_errors, min_t(u32, en->tx_prod - cons, ELISA_NET_RING_SLOTS));
		en->tx_prod = cons;
		smp_store_release(&en->port->tx.prod, cons);
		atomic_long_inc(&en->xmit_errors);
		netdev_err_once(ndev, "XMIT: the transmit ring's indices are invalid (-EIO); "
				"dropped its frames and resynchronised to %u\n", cons);
		break;
	case -ENODEV:
		atomic_long_inc(&en->xmit_errors);
		elisa_net_err_rl(ndev, "XMIT: no switch (-ENODEV): gate \"%s\" is closed on "
				       "this CPU (a hardware breakpoint or PEBS is armed, or the "
				       "host detached this VM or did not grant the gate)\n", gate);
		break;
	default:
		atomic_long_inc(&en->xmit_errors);
		elisa_net_err_rl(ndev, "XMIT failed: %ld\n", r);
		break;
	}
	return r;
}

/* Frames queued in the transmit ring that the switch has not consumed. */
static u32 elisa_net_tx_pending(struct elisa_net *en)
{
	return en->tx_prod - smp_load_acquire(&en->port->tx.cons);
}

static netdev_tx_t elisa_net_start_xmit(struct sk_buff *skb, struct net_device *ndev)
{
	struct elisa_net *en = netdev_priv(ndev);
	struct elisa_net_slot *slot;
	unsigned int len = skb->len;

	if (len < ELISA_NET_MIN_FRAME || len > ELISA_NET_MAX_FRAME) {
		DEV_STATS_INC(ndev, tx_errors);
		DEV_STATS_INC(ndev, tx_dropped);
		dev_kfree_skb_any(skb);
		goto kick;
	}
	/* A full ring (or tx.cons out of range) gets one XMIT, then the frame is dropped. */
	if (elisa_net_tx_pending(en) >= ELISA_NET_RING_SLOTS) {
		elisa_net_kick(en);
		if (elisa_net_tx_pending(en) >= ELISA_NET_RING_SLOTS) {
			DEV_STATS_INC(ndev, tx_fifo_errors);
			DEV_STATS_INC(ndev, tx_dropped);
			dev_kfree_skb_any(skb);
			return NETDEV_TX_OK;
		}
	}
	slot = elisa_net_slot(en, 0, en->tx_prod);
	if (skb_copy_bits(skb, 0, slot->data, len)) {
		DEV_STATS_INC(ndev, tx_errors);
		DEV_STATS_INC(ndev, tx_dropped);
		dev_kfree_skb_any(skb);
		goto kick;
	}
	slot->flags = 0;
	slot->reserved = 0;
	WRITE_ONCE(slot->len, len);
	en->tx_prod++;
	/* the slot, then the index */
	smp_store_release(&en->port->tx.prod, en->tx_prod);
	DEV_STATS_INC(ndev, tx_packets);
	DEV_STATS_ADD(ndev, tx_bytes, len);
	dev_consume_skb_any(skb);
kick:
	if (!netdev_xmit_more() && elisa_net_tx_pending(en))
		elisa_net_kick(en);
	return NETDEV_TX_OK;
}

/* Up to @max frames from source @s's ring; returns how many slots it consumed. */
static int elisa_net_rx_ring(struct elisa_net *en, u32 s, int max)
{
	struct net_device *ndev = en->ndev;
	struct elisa_net_ring_idx *idx = &en->port->rx[s];
	u32 cons = en->rx_cons[s];
	u32 prod = smp_load_acquire(&idx->prod);	/* read once; the slots after it */
	u32 avail = prod - cons;
	int n;

	if (avail > ELISA_NET_RING_SLOTS) {
		/*
		 * Only the switch writes rx.prod: the region was overwritten, or the sender's
		 * switch lock was taken over and the old holder published an older index
		 * (Documentation/networking.rst, "What the switch checks").
		 */
		elisa_net_err_rl(ndev, "receive ring of port %u: producer %u is %u "
				       "slots ahead of %u; resynchronised\n", s, prod, avail, cons);
		DEV_STATS_INC(ndev, rx_errors);
		en->rx_cons[s] = prod;
		smp_store_release(&idx->cons, prod);
		return 0;
	}
	for (n = 0; n < max && n < (int)avail; n++, cons++) {
		struct elisa_net_slot *slot = elisa_net_slot(en, 1 + s, cons);
		u32 len = READ_ONCE(slot->len);	/* read once, checked, then used */
		struct sk_buff *skb;

		if (len < ELISA_NET_MIN_FRAME || len > ELISA_NET_MAX_FRAME) {
			DEV_STATS_INC(ndev, rx_length_errors);
			DEV_STATS_INC(ndev, rx_errors);
			continue;
		}
		skb = napi_alloc_skb(&en->napi, len);
		if (unlikely(!skb)) {
			DEV_STATS_INC(ndev, rx_dropped);
			continue;
		}
		skb_put_data(skb, slot->data, len);
		skb->protocol = eth_type_trans(skb, ndev);
		DEV_STATS_INC(ndev, rx_packets);
		DEV_STATS_ADD(ndev, rx_bytes, len);
		napi_gro_receive(&en->napi, skb);
	}
	if (n) {
		en->rx_cons[s] = cons;
		/* the slots were read before they are given back */
		smp_store_release(&idx->cons, cons);
	}
	return n;
}

/*
 * The receive rings, at most @budget frames: in passes over the sources, starting with
 * a different one each poll, each source at most @quota frames per pass.
 */
static int elisa_net_rx(struct elisa_net *en, int budget)
{
	u32 first = en->rx_first, i;
	int quota = max_t(int, budget / (int)(en->nr_ports - 1), 1);
	int done = 0, pass;

	do {
		pass = 0;
		for (i = 0; i < en->nr_ports && done < budget; i++) {
			u32 s = (first + i) % en->nr_ports;
			int n;

			if (s == en->me)
				continue;
			n = elisa_net_rx_ring(en, s, min(quota, budget - done));
			pass += n;
			done += n;
		}
	} while (pass && done < budget);
	en->rx_first = (first + 1) % en->nr_ports;
	return done;
}

static int elisa_net_poll(struct napi_struct *napi, int budget)
{
	struct elisa_net *en = container_of(napi, struct elisa_net, napi);
	struct netdev_queue *txq = netdev_get_tx_queue(en->ndev, 0);
	int done = budget ? elisa_net_rx(en, budget) : 0;

	/* Frames an XMIT left queued (-EBUSY): kick, unless a transmit holds the lock. */
	if (__netif_tx_trylock(txq)) {
		if (elisa_net_tx_pending(en))
			elisa_net_kick(en);
		__netif_tx_unlock(txq);
	}
	if (done < budget)
		napi_complete_done(napi, done);
	return done;
}

static ktime_t elisa_net_period(void)
{
	return us_to_ktime(clamp_t(uint, READ_ONCE(poll_us), POLL_US_MIN, POLL_US_MAX));
}

static enum hrtimer_restart elisa_net_timer(struct hrtimer *t)
{
	struct elisa_net *en = container_of(t, struct elisa_net, timer);

	if (!READ_ONCE(en->up))
		return HRTIMER_NORESTART;
	napi_schedule(&en->napi);
	hrtimer_forward_now(t, elisa_net_period());
	return HRTIMER_RESTART;
}

static int elisa_net_open(struct net_device *ndev)
{
	struct elisa_net *en = netdev_priv(ndev);

	napi_enable(&en->napi);
	WRITE_ONCE(en->up, true);
	hrtimer_start(&en->timer, elisa_net_period(), HRTIMER_MODE_REL);
	netif_start_queue(ndev);
	return 0;
}

static int elisa_net_stop(struct net_device *ndev)
{
	struct elisa_net *en = netdev_priv(ndev);

	netif_stop_queue(ndev);
	WRITE_ONCE(en->up, false);
	/* waits for a running callback; one that restarted itself is cancelled after it */
	hrtimer_cancel(&en->timer);
	napi_disable(&en->napi);
	return 0;
}

static const struct net_device_ops elisa_net_ops = {
	.ndo_open		= elisa_net_open,
	.ndo_stop		= elisa_net_stop,
	.ndo_start_xmit		= elisa_net_start_xmit,
	.ndo_validate_addr	= eth_validate_addr,
	/* no ndo_set_mac_address: the switch sends only the header's address */
};

/*
 * The header page of @hdr: 0 if it is a port region this driver can use, with its port,
 * number of ports and MAC in @me, @nr and @mac; -ENODEV otherwise (dev_info says why).
 */
static int elisa_net_check_header(struct pci_dev *pdev, struct elisa_net_port *hdr, u32 *me,
				  u32 *nr, u8 *mac)
{
	u32 magic = READ_ONCE(hdr->magic), version = READ_ONCE(hdr->version);

	if (magic != ELISA_NET_MAGIC || version != ELISA_NET_VERSION) {
		dev_info(&pdev->dev, "BAR %d is not an elisa port region (magic %#x, version %u; "
			 "want %#x, %u): not binding\n", ELISA_NET_BAR, magic, version,
			 ELISA_NET_MAGIC, ELISA_NET_VERSION);
		return -ENODEV;
	}
	*me = READ_ONCE(hdr->port);
	*nr = READ_ONCE(hdr->nr_ports);
	memcpy(mac, hdr->mac, ETH_ALEN);
	if (*nr < 2 || *nr > ELISA_NET_MAX_PORTS || *me >= *nr) {
		dev_info(&pdev->dev, "elisa port region with port %u of %u ports (want 2..%d "
			 "ports, port below them): not binding\n", *me, *nr, ELISA_NET_MAX_PORTS);
		return -ENODEV;
	}
	if (!is_valid_ether_addr(mac)) {
		dev_info(&pdev->dev, "elisa port region of port %u has MAC %pM, not a unicast "
			 "address: not binding\n", *me, mac);
		return -ENODEV;
	}
	return 0;
}

/* The switch's gate, and INFO naming the port @me of @nr ports: the gate number. */
static int elisa_net_find_switch(struct pci_dev *pdev, u32 me, u32 nr)
{
	long info;
	int g;

	g = elisa_guest_find(gate);
	if (g < 0) {
		dev_err(&pdev->dev, "no gate named \"%s\" (%d): is the switch granted to this VM "
			"(elisa_guest.ko's gates, the gate= parameter)?\n", gate, g);
		return g;
	}
	info = elisa_guest_call(g, ELISA_NET_OP_INFO, 0, 0, 0, 0);
	if (info < 0) {
		dev_err(&pdev->dev, "switch \"%s\": INFO failed (%ld)%s\n", gate, info,
			info == -ENODEV ? ": no gate entered, or the switch's config region is "
			"not set up" : "");
		return info;
	}
	if ((info & 0xff) != me || ((info >> 8) & 0xff) != nr ||
	    (info >> 16) != ELISA_NET_VERSION) {
		dev_err(&pdev->dev, "switch \"%s\" serves port %ld of %ld (version %ld), but BAR %d "
			"is port %u of %u (version %d): another port's region?\n", gate,
			info & 0xff, (info >> 8) & 0xff, info >> 16, ELISA_NET_BAR, me, nr,
			ELISA_NET_VERSION);
		return -EINVAL;
	}
	return g;
}

static int elisa_net_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	resource_size_t start = pci_resource_start(pdev, ELISA_NET_BAR);
	resource_size_t len = pci_resource_len(pdev, ELISA_NET_BAR);
	struct net_device *ndev;
	struct elisa_net_port *hdr;
	struct elisa_net *en;
	u32 me, nr, s;
	u8 mac[ETH_ALEN];
	int err, g;

	BUILD_BUG_ON(sizeof(struct elisa_net_port) > 4096);
	BUILD_BUG_ON(sizeof(struct elisa_net_slot) != ELISA_NET_SLOT_SIZE);
	BUILD_BUG_ON(ELISA_NET_RING_SLOTS & ELISA_NET_SLOT_MASK);

	err = pci_enable_device(pdev);
	if (err) {
		dev_err(&pdev->dev, "cannot enable the device (%d)\n", err);
		return err;
	}
	if (!(pci_resource_flags(pdev, ELISA_NET_BAR) & IORESOURCE_MEM) ||
	    len < ELISA_NET_PORT_SIZE) {
		dev_info(&pdev->dev, "BAR %d has %pa bytes, a port region needs %d: not binding\n",
			 ELISA_NET_BAR, &len, ELISA_NET_PORT_SIZE);
		err = -ENODEV;
		goto disable;
	}
	err = pci_request_regions(pdev, KBUILD_MODNAME);
	if (err) {
		dev_err(&pdev->dev, "cannot claim the BARs (%d)\n", err);
		goto disable;
	}
	/* BAR 2 is RAM of the memory backend: write-back, as the switch maps it */
	hdr = memremap(start, ELISA_NET_PORT_SIZE, MEMREMAP_WB);
	if (!hdr) {
		dev_err(&pdev->dev, "cannot map BAR %d (%pa, %d bytes) (-ENOMEM)\n", ELISA_NET_BAR,
			&start, ELISA_NET_PORT_SIZE);
		err = -ENOMEM;
		goto release;
	}
	err = elisa_net_check_header(pdev, hdr, &me, &nr, mac);
	if (err)
		goto unmap;
	g = elisa_net_find_switch(pdev, me, nr);
	if (g < 0) {
		err = g;
		goto unmap;
	}

	ndev = alloc_netdev(sizeof(*en), "elisa%d", NET_NAME_ENUM, ether_setup);
	if (!ndev) {
		dev_err(&pdev->dev, "cannot allocate the network device (-ENOMEM)\n");
		err = -ENOMEM;
		goto unmap;
	}
	SET_NETDEV_DEV(ndev, &pdev->dev);
	en = netdev_priv(ndev);
	en->ndev = ndev;
	en->pdev = pdev;
	en->port = hdr;
	en->gate = g;
	en->me = me;
	en->nr_ports = nr;
	atomic_long_set(&en->xmit_busy, 0);
	atomic_long_set(&en->xmit_errors, 0);

	/* What an earlier driver or boot left in the rings is dropped. */
	en->tx_prod = smp_load_acquire(&hdr->tx.cons);
	smp_store_release(&hdr->tx.prod, en->tx_prod);
	for (s = 0; s < nr; s++) {
		en->rx_cons[s] = smp_load_acquire(&hdr->rx[s].prod);
		smp_store_release(&hdr->rx[s].cons, en->rx_cons[s]);
	}

	ndev->netdev_ops = &elisa_net_ops;
	ndev->mtu = ETH_DATA_LEN;
	ndev->max_mtu = ETH_DATA_LEN;
	eth_hw_addr_set(ndev, mac);
	netif_napi_add(ndev, &en->napi, elisa_net_poll);
	hrtimer_setup(&en->timer, elisa_net_timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);

	pci_set_drvdata(pdev, en);
	err = register_netdev(ndev);
	if (err) {
		dev_err(&pdev->dev, "cannot register the network device (%d)\n", err);
		goto free;
	}
	netdev_info(ndev, "elisa switch port %u of %u, MAC %pM, gate \"%s\" (%d), polled every "
		    "%u us\n", me, nr, mac, gate, g, poll_us);
	return 0;

free:
	pci_set_drvdata(pdev, NULL);
	netif_napi_del(&en->napi);
	free_netdev(ndev);
unmap:
	memunmap(hdr);
release:
	pci_release_regions(pdev);
disable:
	pci_disable_device(pdev);
	return err;
}

static void elisa_net_remove(struct pci_dev *pdev)
{
	struct elisa_net *en = pci_get_drvdata(pdev);
	struct net_device *ndev = en->ndev;
	struct elisa_net_port *hdr = en->port;

	/* stops the device first (elisa_net_stop): no timer, poll or transmit after it */
	unregister_netdev(ndev);
	dev_info(&pdev->dev, "removed %s: %ld XMIT calls busy, %ld failed\n", ndev->name,
		 atomic_long_read(&en->xmit_busy), atomic_long_read(&en->xmit_errors));
	netif_napi_del(&en->napi);
	free_netdev(ndev);
	pci_set_drvdata(pdev, NULL);
	memunmap(hdr);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
}

static const struct pci_device_id elisa_net_ids[] = {
	{ PCI_DEVICE(ELISA_NET_VENDOR, ELISA_NET_DEVICE) },
	{ }
};
MODULE_DEVICE_TABLE(pci, elisa_net_ids);

static struct pci_driver elisa_net_driver = {
	.name		= KBUILD_MODNAME,
	.id_table	= elisa_net_ids,
	.probe		= elisa_net_probe,
	.remove		= elisa_net_remove,
};

static int __init elisa_net_init(void)
{
	int err;

	if (!IS_ENABLED(CONFIG_PCI)) {
		pr_err("this kernel has no PCI (CONFIG_PCI): no ivshmem device can appear "
		       "(-ENODEV)\n");
		return -ENODEV;
	}
	if (poll_us < POLL_US_MIN || poll_us > POLL_US_MAX) {
		pr_err("poll_us=%u is outside %d..%d (-EINVAL)\n", poll_us, POLL_US_MIN,
		       POLL_US_MAX);
		return -EINVAL;
	}
	err = pci_register_driver(&elisa_net_driver);
	if (err)
		pr_err("cannot register the PCI driver (%d)\n", err);
	return err;
}

static void __exit elisa_net_exit(void)
{
	pci_unregister_driver(&elisa_net_driver);
}

module_init(elisa_net_init);
module_exit(elisa_net_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("elisa: a network device on the elisa switch (ivshmem port region)");
