/* SPDX-License-Identifier: GPL-2.0 */
/*
 * elisa_rs_guest.h: the extern "C" functions of selftests/rust-guest (the no_std Rust guest
 * crate guest/elisa-guest as a static library), for elisa_rust_guest_test.
 */
#ifndef ELISA_RS_GUEST_H
#define ELISA_RS_GUEST_H

#include <stdbool.h>
#include <stdint.h>

/* Gate::call's Result: error 0 and the value, or the CallError and its raw errno. */
struct elisa_rs_result {
	int64_t value;
	int64_t error;
};

enum {
	ELISA_RS_OK = 0,
	ELISA_RS_IRQ_ENABLED = 1,	/* CallError::IrqEnabled */
	ELISA_RS_NOT_ENTERED = 2,	/* CallError::NotEntered */
	ELISA_RS_INTERRUPTED = 3,	/* CallError::Interrupted */
	ELISA_RS_SERVICE = 4,		/* CallError::Service(errno) */
};

/* Gate::new(g, index).call(a0, ..., a4) */
struct elisa_rs_result elisa_rs_call(uint64_t g, uint32_t index, uint64_t a0, uint64_t a1,
				     uint64_t a2, uint64_t a3, uint64_t a4);
/* Gate::new(g, index).call_raw(a0, ..., a4) */
int64_t elisa_rs_call_raw(uint64_t g, uint32_t index, uint64_t a0, uint64_t a1, uint64_t a2,
			  uint64_t a3, uint64_t a4);
/* with_irqs_disabled(|| Gate::new(g, index).call(a0, ..., a4)) */
struct elisa_rs_result elisa_rs_call_irqs_disabled(uint64_t g, uint32_t index, uint64_t a0,
						   uint64_t a1, uint64_t a2, uint64_t a3,
						   uint64_t a4);
/* irqs_enabled() */
bool elisa_rs_irqs_enabled(void);
/* write_entry_block() into the 3 pages at @block: 0, or -1 on error */
int elisa_rs_write_entry_block(void *block);

#endif /* ELISA_RS_GUEST_H */
