/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Two Linux guests under the patched QEMU on one elisa switch, as
 * Documentation/networking.rst ("Two QEMU guests") sets them up; shared by
 * elisa_qemu_net_test (does it work) and elisa_net_bench (elisa against virtio-net).
 *
 * Guest p (0 or 1) sees its port region as BAR 2 of an ivshmem-plain device, driven by
 * elisa_net.ko, and calls its own switch service through elisa_guest.ko: elisa0 has the
 * port's MAC 02:00:00:00:00:<p+1> and 10.0.0.<p+1>/24. With @virtio, it also has a
 * virtio-net device with vhost-net on the host's tap device elisatap<p>, the two taps
 * joined by the bridge elisabr0: eth0, 02:00:00:00:01:<p+1>, 10.0.1.<p+1>/24.
 *
 *   net_env_init(e)                  paths from the environment (QEMU_ELISA,
 *                                    QEMU_ELISA_DATA, ELISA_GUEST_DIR, ELISA_SERVICES,
 *                                    ELISACTL) and checks that they exist
 *   net_switch_files(e)              "elisactl switch init": the ports' and configs'
 *                                    files under NET_DIR; its exit status
 *   net_bridge(up)                   the taps and the bridge of @virtio: made and up, or
 *                                    deleted; 0 or -errno
 *   net_start(e, q, p, virtio)       starts guest p's QEMU
 *   net_up(q, p, virtio)             loads the drivers and configures the addresses in
 *                                    guest p; 0 when elisa0 has the port's MAC
 *   net_remove_files()               the files of net_switch_files()
 *   net_busy(q, cmd0, cmd1, d)       guest 0 runs cmd0 while guest 1 runs cmd1 in the
 *                                    background; both VMs' exit counts during cmd0 in @d
 *   net_exits_per_frame(d, base, n)  exits per frame of @d over the rate of @base
 *   net_sink_result(q, ...)          the result of "netbench sink" run by net_busy()
 */
#ifndef ELISA_QEMU_NET_H
#define ELISA_QEMU_NET_H

#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/elisa_net.h>
#include "elisa_qemu.h"

#define NET_PORTS 2
#define NET_DIR "/dev/shm/elisa-qemu-net"
#define NET_CODE_GVA 0xffff800020000000UL
#define NET_BRIDGE "elisabr0"
#define NET_TAP "elisatap%d"
/* insmod does not read the kernel command line: elisa_guest.* options, if any */
#define NET_LOAD                                                                          \
	"insmod /guest/elisa_guest.ko "                                                   \
	"$(tr ' ' '\\n' < /proc/cmdline | sed -n 's/^elisa_guest\\.//p')"
#define NET_BOOT_S 600
#define NET_CMD_S 300

struct net_env {
	const char *qemu, *elisactl;
	char guest_kernel[256], guest_initrd[256], switch_bin[256], bios_dir[256];
};

/* The QEMU command line of one guest: static strings, one set per port. */
struct net_args {
	char nic[160], cfg[160], mem[NET_PORTS][160], region[NET_PORTS][96], service[768];
	char tap[160], virtio[96];
	const char *args[80];
};

static inline void net_env_init(struct net_env *e)
{
	const char *gdir = env_or("ELISA_GUEST_DIR", "/guest");

	e->qemu = env_or("QEMU_ELISA", "/qemu-elisa/bin/qemu-system-x86_64");
	e->elisactl = env_or("ELISACTL", "/bin/elisactl");
	snprintf(e->guest_kernel, sizeof(e->guest_kernel), "%s/bzImage", gdir);
	snprintf(e->guest_initrd, sizeof(e->guest_initrd), "%s/initrd.cpio", gdir);
	snprintf(e->switch_bin, sizeof(e->switch_bin), "%s/switch.bin",
		 env_or("ELISA_SERVICES", "/services"));
	snprintf(e->bios_dir, sizeof(e->bios_dir), "%s",
		 env_or("QEMU_ELISA_DATA", "/qemu-elisa/share/qemu"));
	TEST_ASSERT(access(e->guest_kernel, R_OK) == 0 && access(e->guest_initrd, R_OK) == 0,
		    "no guest kernel or initramfs in %s", gdir);
	TEST_ASSERT(access(e->switch_bin, R_OK) == 0, "no %s", e->switch_bin);
	TEST_ASSERT(access(e->elisactl, X_OK) == 0, "%s is not executable (set ELISACTL)",
		    e->elisactl);
	TEST_ASSERT(access(e->qemu, X_OK) == 0, "no patched QEMU at %s (make qemu)", e->qemu);
}

/* networking.rst's command line for port @p, and with @virtio the virtio-net device. */
static inline const char *const *net_args(struct net_env *e, struct net_args *x, int p,
					  bool virtio)
{
	static const char *const common[] = {
		"-accel", "kvm", "-M", "pc", "-cpu", "host", "-m", "96", "-smp", "1",
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-append", "console=ttyS0 pti=on quiet",
	};
	const char **a = x->args;
	unsigned int i;
	size_t used;
	int n = 0, q;

	for (i = 0; i < ARRAY_SIZE(common); i++)
		a[n++] = common[i];
	a[n++] = "-kernel";
	a[n++] = e->guest_kernel;
	a[n++] = "-initrd";
	a[n++] = e->guest_initrd;
	a[n++] = "-L";
	a[n++] = e->bios_dir;
	snprintf(x->nic, sizeof(x->nic),
		 "memory-backend-file,id=nic,mem-path=" NET_DIR "/port%d,size=2M,share=on", p);
	snprintf(x->cfg, sizeof(x->cfg),
		 "memory-backend-file,id=cfg,mem-path=" NET_DIR "/config%d,size=4K,share=on", p);
	a[n++] = "-object";
	a[n++] = x->nic;
	a[n++] = "-device";
	a[n++] = "ivshmem-plain,memdev=nic";
	a[n++] = "-object";
	a[n++] = x->cfg;
	a[n++] = "-object";
	a[n++] = "elisa-region,id=rcfg,memdev=cfg";
	used = snprintf(x->service, sizeof(x->service),
			"elisa-service,id=switch,code=%s,code-gva=%#lx,regions.0.region=rcfg,"
			"regions.0.gva=%#llx,regions.0.access=rw", e->switch_bin, NET_CODE_GVA,
			ELISA_NET_CONFIG_GVA);
	for (q = 0; q < NET_PORTS; q++) {
		snprintf(x->mem[q], sizeof(x->mem[q]),
			 "memory-backend-file,id=sw%d,mem-path=" NET_DIR "/port%d,size=2M,share=on",
			 q, q);
		snprintf(x->region[q], sizeof(x->region[q]),
			 "elisa-region,id=rp%d,memdev=sw%d,size=%#x", q, q, ELISA_NET_PORT_SIZE);
		a[n++] = "-object";
		a[n++] = x->mem[q];
		a[n++] = "-object";
		a[n++] = x->region[q];
		used += snprintf(x->service + used, sizeof(x->service) - used,
				 ",regions.%d.region=rp%d,regions.%d.gva=%#llx,"
				 "regions.%d.access=rw", q + 1, q, q + 1, ELISA_NET_PORT_GVA(q),
				 q + 1);
	}
	TEST_ASSERT(used < sizeof(x->service), "service options too long");
	a[n++] = "-object";
	a[n++] = x->service;
	a[n++] = "-object";
	a[n++] = "elisa-grant,id=grant,services.0=switch";
	if (virtio) {
		snprintf(x->tap, sizeof(x->tap),
			 "tap,id=vnet,ifname=" NET_TAP ",script=no,downscript=no,vhost=on", p);
		snprintf(x->virtio, sizeof(x->virtio),
			 "virtio-net-pci,netdev=vnet,mac=02:00:00:00:01:%02x,romfile=", p + 1);
		a[n++] = "-netdev";
		a[n++] = x->tap;
		a[n++] = "-device";
		a[n++] = x->virtio;
	}
	a[n] = NULL;
	return a;
}

static inline int net_switch_files(struct net_env *e)
{
	char ports[8];
	pid_t pid;
	int st;

	snprintf(ports, sizeof(ports), "%d", NET_PORTS);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		execl(e->elisactl, "elisactl", "switch", "init", "--dir", NET_DIR, "--ports", ports,
		      "--force", (char *)NULL);
		_exit(127);
	}
	TEST_ASSERT(waitpid(pid, &st, 0) == pid, "waitpid");
	return st;
}

/*
 * The start the network test and the network bench share: the KTAP header and a plan of
 * @tests, elisa's requirements, @e, elisa's page counts before anything is made (@held0,
 * @pinned0), and the switch's files. Returns elisactl's wait status.
 */
static inline int net_begin(struct net_env *e, int tests, long *held0, long *pinned0)
{
	ksft_print_header();
	elisa_require(ELISA_REQ_ALL);
	ksft_set_plan(tests);
	net_env_init(e);
	TEST_ASSERT(elisa_pages(held0, pinned0), "elisa's debugfs is unreadable");
	signal(SIGPIPE, SIG_IGN);
	return net_switch_files(e);
}

static inline void net_remove_files(void)
{
	char f[64];
	int p;

	for (p = 0; p < NET_PORTS; p++) {
		snprintf(f, sizeof(f), NET_DIR "/port%d", p);
		unlink(f);
		snprintf(f, sizeof(f), NET_DIR "/config%d", p);
		unlink(f);
	}
	rmdir(NET_DIR);
}

/* Sets IFF_UP of @name on or off through @sock. */
static inline int net_link(int sock, const char *name, bool up)
{
	struct ifreq r = { 0 };

	snprintf(r.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(sock, SIOCGIFFLAGS, &r))
		return -errno;
	r.ifr_flags = up ? r.ifr_flags | IFF_UP : r.ifr_flags & ~IFF_UP;
	return ioctl(sock, SIOCSIFFLAGS, &r) ? -errno : 0;
}

/* A persistent tap device @name (QEMU opens it by name), or its deletion. */
static inline int net_tap(const char *name, bool make)
{
	struct ifreq r = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	snprintf(r.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(fd, TUNSETIFF, &r) || ioctl(fd, TUNSETPERSIST, make ? 1 : 0))
		err = -errno;
	close(fd);
	return err;
}

/*
 * The virtio-net side's host network: taps elisatap0 and elisatap1 in the bridge
 * elisabr0 (no STP: ports forward at once), all up; or all deleted. Deleting is
 * best-effort and reports the first error.
 */
static inline int net_bridge(bool up)
{
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), p, err = 0, e;
	char tap[IFNAMSIZ];

	if (sock < 0)
		return -errno;
	if (up && ioctl(sock, SIOCBRADDBR, NET_BRIDGE)) {
		err = -errno;
		goto out;
	}
	for (p = 0; p < NET_PORTS; p++) {
		snprintf(tap, sizeof(tap), NET_TAP, p);
		if (up) {
			struct ifreq r = { 0 };

			err = net_tap(tap, true);
			snprintf(r.ifr_name, IFNAMSIZ, NET_BRIDGE);
			r.ifr_ifindex = if_nametoindex(tap);
			if (!err && (!r.ifr_ifindex || ioctl(sock, SIOCBRADDIF, &r)))
				err = -errno;
			if (!err)
				err = net_link(sock, tap, true);
			if (err)
				goto out;
		} else {
			e = net_tap(tap, false);
			err = err ?: e;
		}
	}
	if (up) {
		err = net_link(sock, NET_BRIDGE, true);
	} else {
		e = net_link(sock, NET_BRIDGE, false);
		err = err ?: e;
		e = ioctl(sock, SIOCBRDELBR, NET_BRIDGE) ? -errno : 0;
		err = err ?: e;
	}
out:
	close(sock);
	return err;
}

static inline void net_start(struct net_env *e, struct qemu *q, struct net_args *x, int p,
			     bool virtio)
{
	char name[16];

	snprintf(name, sizeof(name), "port%d", p);
	qemu_start(q, strdup(name), e->qemu, net_args(e, x, p, virtio));
}

static inline int net_up(struct qemu *q, int p, bool virtio, char *out, size_t size)
{
	char want[32];
	int st;

	st = guest_run(q, out, size, NET_CMD_S,
		       NET_LOAD " && insmod /guest/elisa_net.ko && "
		       "ip addr add 10.0.0.%d/24 dev elisa0 && ip link set elisa0 up && "
		       "cat /sys/class/net/elisa0/address", p + 1);
	snprintf(want, sizeof(want), "02:00:00:00:00:%02x", p + 1);
	if (st || !strstr(out, want))
		return st ?: -1;
	if (virtio)
		st = guest_run(q, out, size, NET_CMD_S,
			       "ip addr add 10.0.1.%d/24 dev eth0 && ip link set eth0 up", p + 1);
	return st;
}

/* the output of the commands below */
static char net_out[8192];

/*
 * KVM's exit counts of both VMs: all, halts, those of the elisa path's kinds, and the
 * interrupt-window exits
 */
struct net_exits {
	long all, halt, io, mmio, hcall, irqwin;
	double secs;	/* how long, in the emulated host's time */
};

/*
 * VM exits per frame of @d beyond those of @base: both as rates, since most exits of a
 * guest on the elisa switch come with time, not with frames (elisa_net's receive poll
 * timer, the scheduler's tick: about 10000 a second each while elisa0 is up), and two
 * runs never last exactly as long. Interrupt-window exits are left out of both: a call
 * runs with IF = 0, so a timer tick that lands in one is delivered after it, with a
 * second exit; they come with the time the sender spends in calls (their share of the
 * time, times the tick rate), not with frames, and vary by boot (0.04 to 0.12 a frame
 * counted in). The callers print them.
 */
static inline double net_exits_per_frame(const struct net_exits *d, const struct net_exits *base,
					 long frames)
{
	if (frames <= 0 || d->secs <= 0 || base->secs <= 0)
		return 1e9;
	return ((d->all - d->irqwin) - (base->all - base->irqwin) * d->secs / base->secs) /
	       (double)frames;
}

static inline bool net_exits_read(struct qemu *q, struct net_exits *x)
{
	int p;

	memset(x, 0, sizeof(*x));
	for (p = 0; p < NET_PORTS; p++) {
		long all = qemu_exits(&q[p]), halt = qemu_stat(&q[p], "halt_exits"),
		     io = qemu_stat(&q[p], "io_exits"), mmio = qemu_stat(&q[p], "mmio_exits"),
		     hcall = qemu_stat(&q[p], "hypercalls"),
		     irqwin = qemu_stat(&q[p], "irq_window_exits");

		if (all < 0 || halt < 0 || io < 0 || mmio < 0 || hcall < 0 || irqwin < 0)
			return false;
		x->all += all;
		x->halt += halt;
		x->io += io;
		x->mmio += mmio;
		x->hcall += hcall;
		x->irqwin += irqwin;
	}
	return true;
}

/*
 * Both guests busy, measured from the host: @q[0] runs @cmd0 while @q[1] runs @cmd1 in
 * the background (its output in /tmp/bg.out). The exits of both VMs during @cmd0 go to
 * @d; false if a command or a count failed.
 */
static inline bool net_busy(struct qemu *q, const char *cmd0, const char *cmd1, struct net_exits *d)
{
	struct net_exits a, b;
	bool ok;

	ok = guest_run(&q[1], net_out, sizeof(net_out), NET_CMD_S, "(%s) > /tmp/bg.out 2>&1 &", cmd1) == 0;
	ok = ok && net_exits_read(q, &a);
	d->secs = qemu_now();
	ok = ok && guest_run(&q[0], net_out, sizeof(net_out), NET_CMD_S, "%s", cmd0) == 0;
	d->secs = qemu_now() - d->secs;
	ok = ok && net_exits_read(q, &b);
	d->all = b.all - a.all;
	d->halt = b.halt - a.halt;
	d->io = b.io - a.io;
	d->mmio = b.mmio - a.mmio;
	d->hcall = b.hcall - a.hcall;
	d->irqwin = b.irqwin - a.irqwin;
	return ok;
}

/* "sink: datagrams N bytes B bad K us T ticks C" of the background job of @q, waited for */
static inline bool net_sink_result(struct qemu *q, long *n, long *bad, long *us, long *ticks)
{
	const char *p;

	if (guest_run(q, net_out, sizeof(net_out), NET_CMD_S,
		      "i=0; until grep -q '^sink:' /tmp/bg.out || [ $i = 90 ]; do sleep 1; "
		      "i=$((i+1)); done; cat /tmp/bg.out"))
		return false;
	p = strstr(net_out, "sink: datagrams ");
	return p && sscanf(p, "sink: datagrams %ld bytes %*d bad %ld us %ld ticks %ld", n, bad, us,
			   ticks) == 4;
}

#endif
