/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The counter service of the QEMU boot and of `make run`: one 8-byte counter at the start
 * of the region the service maps at COUNTER_GVA. long counter(long add): adds `add`
 * atomically and returns the new value; an add of 0 reads the counter. Built as raw code
 * (tools/services/build.sh): position-independent, general registers only, ENDBR64 first
 * for guests that enforce CET IBT (Documentation/gate-protocol.rst).
 */
#ifndef COUNTER_GVA
#define COUNTER_GVA 0xffff800040000000
#endif
	.text
	.code64
	.globl counter
counter:
	endbr64
	movabs	$COUNTER_GVA, %rax
	mov	%rdi, %rdx
	lock xadd %rdi, (%rax)
	lea	(%rdi,%rdx), %rax
	ret
