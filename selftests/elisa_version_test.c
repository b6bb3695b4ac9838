// SPDX-License-Identifier: GPL-2.0
/*
 * elisa_version_test: ELISA_GET_VERSION and the error paths every ioctl shares.
 *
 *  1. version: ELISA_GET_VERSION succeeds, api_version == ELISA_API_VERSION, reserved
 *     fields come back zero
 *  2. eptp_switching_visible: caps hold VMX, EPT, VMFUNC and EPTP switching
 *  3. raw_msrs: the raw MSRs equal what /dev/cpu/0/msr reads
 *  4. unknown_ioctl: an unknown command, and GET_VERSION with another size, get ENOTTY
 *  5. bad_pointer: a NULL and an unmapped argument get EFAULT
 *  6. flags_reserved: a non-zero flags or reserved field gets EINVAL
 *  7. unprivileged: a process without privileges cannot open /dev/elisa (EACCES)
 */
#include <sys/mman.h>
#include <sys/wait.h>
#include "elisa_test.h"

#define MSR_IA32_VMX_PROCBASED_CTLS2 0x48b
#define MSR_IA32_VMX_EPT_VPID_CAP 0x48c
#define MSR_IA32_VMX_VMFUNC 0x491

int main(void)
{
	struct elisa_version v = { 0 }, w;
	int fd, r, e1, e2;
	void *unmapped;
	pid_t pid;
	int status;

	ksft_print_header();
	elisa_require(ELISA_REQ_DEV);
	ksft_set_plan(7);
	fd = elisa_open();

	r = __elisa_ioctl(fd, ELISA_GET_VERSION, &v);
	CHECK(r == 0 && v.api_version == ELISA_API_VERSION && v.flags == 0 && !v.reserved[0] &&
		      !v.reserved[1] && !v.reserved[2] && !v.reserved[3],
	      "version", ": rc %d, api %u, caps %#llx", r, v.api_version,
	      (unsigned long long)v.caps);

	CHECK((v.caps & ELISA_CAPS_REQUIRED) == ELISA_CAPS_REQUIRED, "eptp_switching_visible",
	      ": caps %#llx", (unsigned long long)v.caps);
	ksft_print_msg("caps %#llx procbased_ctls2 %#llx ept_vpid_cap %#llx vmfunc %#llx\n",
		       (unsigned long long)v.caps, (unsigned long long)v.vmx_procbased_ctls2,
		       (unsigned long long)v.vmx_ept_vpid_cap, (unsigned long long)v.vmx_vmfunc);

	if (access("/dev/cpu/0/msr", R_OK)) {
		ksft_test_result_skip("raw_msrs: no /dev/cpu/0/msr to compare with (CONFIG_X86_MSR: modprobe msr)\n");
	} else {
		CHECK(v.vmx_procbased_ctls2 == read_msr0(MSR_IA32_VMX_PROCBASED_CTLS2) &&
			      v.vmx_ept_vpid_cap == read_msr0(MSR_IA32_VMX_EPT_VPID_CAP) &&
			      v.vmx_vmfunc == read_msr0(MSR_IA32_VMX_VMFUNC),
		      "raw_msrs", ": msr 0x48b %#llx 0x48c %#llx 0x491 %#llx",
		      (unsigned long long)read_msr0(MSR_IA32_VMX_PROCBASED_CTLS2),
		      (unsigned long long)read_msr0(MSR_IA32_VMX_EPT_VPID_CAP),
		      (unsigned long long)read_msr0(MSR_IA32_VMX_VMFUNC));
	}

	r = __elisa_ioctl(fd, _IO(ELISA_IOCTL_TYPE, 0x7f), 0);
	e1 = errno;
	w = v;
	e2 = __elisa_ioctl(fd, _IOC(_IOC_READ | _IOC_WRITE, ELISA_IOCTL_TYPE, 0x00,
				    sizeof(w) - 8), &w) ? errno : 0;
	CHECK(r == -1 && e1 == ENOTTY && e2 == ENOTTY, "unknown_ioctl", ": errno %d and %d", e1,
	      e2);

	unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(unmapped != MAP_FAILED, "mmap");
	e1 = __elisa_ioctl(fd, ELISA_GET_VERSION, NULL) ? errno : 0;
	e2 = __elisa_ioctl(fd, ELISA_GET_VERSION, unmapped) ? errno : 0;
	CHECK(e1 == EFAULT && e2 == EFAULT, "bad_pointer", ": errno %d and %d", e1, e2);

	memset(&w, 0, sizeof(w));
	w.flags = 1;
	e1 = __elisa_ioctl(fd, ELISA_GET_VERSION, &w) ? errno : 0;
	memset(&w, 0, sizeof(w));
	w.reserved[3] = 1;
	e2 = __elisa_ioctl(fd, ELISA_GET_VERSION, &w) ? errno : 0;
	CHECK(e1 == EINVAL && e2 == EINVAL, "flags_reserved", ": errno %d and %d", e1, e2);
	close(fd);

	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(100);
		fd = open(ELISA_DEV, O_RDWR);
		_exit(fd >= 0 ? 101 : errno == EACCES ? 0 : 102);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unprivileged",
	      ": child status %#x", status);
	ksft_finished();
}
