// SPDX-License-Identifier: GPL-2.0
/* End the Bochs emulator: write "Shutdown" to its I/O port 0x8900 (no ACPI in the test host). */
#include <stdio.h>
#include <sys/io.h>
#include <unistd.h>

int main(void)
{
	const char *s = "Shutdown";

	if (ioperm(0x8900, 1, 1)) {
		perror("ioperm");
		return 1;
	}
	fflush(stdout);
	while (*s)
		outb(*s++, 0x8900);
	sleep(5);
	fprintf(stderr, "bochs_shutdown: still running (not in Bochs?)\n");
	return 1;
}
