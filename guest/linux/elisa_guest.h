/* SPDX-License-Identifier: GPL-2.0 */
/*
 * elisa_guest.ko for other drivers of a Linux guest: call a service the host granted this
 * VM, through its gate, with no VM exit. See Documentation/guest-linux.rst.
 *
 * A driver that uses these functions links against elisa_guest.ko (its Module.symvers),
 * which then stays loaded as long as the driver is.
 */
#ifndef ELISA_GUEST_H
#define ELISA_GUEST_H

#include <linux/types.h>

/**
 * elisa_guest_find() - the number of a gate, by name
 * @name: the gate's name (NUL-terminated), as the VMM gave it or gate<n>.
 *
 * Return: the gate number (0..7), or -ENOENT if no gate has that name.
 */
int elisa_guest_find(const char *name);

/**
 * elisa_guest_call() - call a service through its gate
 * @gate: the gate number (elisa_guest_find()).
 * @a0: first argument of the service (RDI) ...
 * @a1: ... (RSI)
 * @a2: ... (RDX)
 * @a3: ... (R8)
 * @a4: ... (R9)
 *
 * Any context: interrupts are disabled around the call itself (local_irq_save()), which
 * takes no lock and never sleeps; the call is as long as the service.
 *
 * Return: the service's return value (RAX), or a negative errno: -ENODEV (no gate was
 * entered: the host has not granted the index or has detached the VM; also when the
 * module knows no gate at all), -EINTR (failed back by the host because an event was due;
 * the service may or may not have run), -EPERM (refused; also a service's own -EPERM),
 * -EINVAL (no gate with that number). A service's own negative errnos come back as they
 * are; a service whose values may fall in -4095..-1 must be read with that in mind.
 */
long elisa_guest_call(unsigned int gate, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4);

#endif /* ELISA_GUEST_H */
