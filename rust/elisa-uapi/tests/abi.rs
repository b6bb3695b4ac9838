// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The Rust mirror must match include/uapi/linux/elisa.h: compile a C program against the
//! header, print sizes, offsets and constants, and compare them with the Rust values.

mod common;

use elisa_uapi::*;
use std::collections::HashMap;
use std::mem::{align_of, offset_of, size_of};

/// What the C probe prints: every struct's size and alignment (`A`), field offsets and
/// constants.
const PROBES: &[&str] = &[
    "S(elisa_version)",
    "A(elisa_version)",
    "O(elisa_version, flags)",
    "O(elisa_version, api_version)",
    "O(elisa_version, caps)",
    "O(elisa_version, vmx_procbased_ctls2)",
    "O(elisa_version, vmx_ept_vpid_cap)",
    "O(elisa_version, vmx_vmfunc)",
    "O(elisa_version, reserved)",
    "S(elisa_attach_vm)",
    "A(elisa_attach_vm)",
    "O(elisa_attach_vm, flags)",
    "O(elisa_attach_vm, vm_fd)",
    "O(elisa_attach_vm, reserved)",
    "P(\"ELISA_ATTACH_VM\", ELISA_ATTACH_VM)",
    "P(\"ELISA_API_VERSION\", ELISA_API_VERSION)",
    "P(\"ELISA_IOCTL_TYPE\", ELISA_IOCTL_TYPE)",
    "P(\"ELISA_GET_VERSION\", ELISA_GET_VERSION)",
    "P(\"ELISA_CAPS_REQUIRED\", ELISA_CAPS_REQUIRED)",
    "P(\"ELISA_CAP_VMX\", ELISA_CAP_VMX)",
    "P(\"ELISA_CAP_EPT\", ELISA_CAP_EPT)",
    "P(\"ELISA_CAP_VMFUNC\", ELISA_CAP_VMFUNC)",
    "P(\"ELISA_CAP_EPTP_SWITCHING\", ELISA_CAP_EPTP_SWITCHING)",
    "P(\"ELISA_CAP_EPT_EXEC_ONLY\", ELISA_CAP_EPT_EXEC_ONLY)",
    "P(\"ELISA_CAP_EPT_AD\", ELISA_CAP_EPT_AD)",
    "P(\"ELISA_CAP_EPT_2M\", ELISA_CAP_EPT_2M)",
    "P(\"ELISA_CAP_EPT_1G\", ELISA_CAP_EPT_1G)",
    "P(\"ELISA_CAP_EPT_MBEC\", ELISA_CAP_EPT_MBEC)",
    "P(\"ELISA_CAP_EPT_PWL4\", ELISA_CAP_EPT_PWL4)",
    "S(elisa_create_region)",
    "A(elisa_create_region)",
    "O(elisa_create_region, flags)",
    "O(elisa_create_region, fd)",
    "O(elisa_create_region, offset)",
    "O(elisa_create_region, length)",
    "O(elisa_create_region, reserved)",
    "S(elisa_service_region)",
    "A(elisa_service_region)",
    "O(elisa_service_region, region_fd)",
    "O(elisa_service_region, access)",
    "O(elisa_service_region, gva)",
    "O(elisa_service_region, reserved)",
    "S(elisa_create_service)",
    "A(elisa_create_service)",
    "O(elisa_create_service, flags)",
    "O(elisa_create_service, code_fd)",
    "O(elisa_create_service, code_offset)",
    "O(elisa_create_service, code_size)",
    "O(elisa_create_service, code_gva)",
    "O(elisa_create_service, entry_offset)",
    "O(elisa_create_service, nr_regions)",
    "O(elisa_create_service, reserved0)",
    "O(elisa_create_service, regions)",
    "O(elisa_create_service, reserved)",
    "S(elisa_grant)",
    "A(elisa_grant)",
    "O(elisa_grant, flags)",
    "O(elisa_grant, service_fd)",
    "O(elisa_grant, entry_gva)",
    "O(elisa_grant, gate_index)",
    "O(elisa_grant, nr_vcpus)",
    "O(elisa_grant, trusted_gpa)",
    "O(elisa_grant, trusted_size)",
    "O(elisa_grant, reserved)",
    "P(\"ELISA_CREATE_REGION\", ELISA_CREATE_REGION)",
    "P(\"ELISA_CREATE_SERVICE\", ELISA_CREATE_SERVICE)",
    "P(\"ELISA_GRANT\", ELISA_GRANT)",
    "P(\"ELISA_REGION_MAX_SIZE\", ELISA_REGION_MAX_SIZE)",
    "P(\"ELISA_SERVICE_MAX_CODE\", ELISA_SERVICE_MAX_CODE)",
    "P(\"ELISA_SERVICE_MAX_REGIONS\", ELISA_SERVICE_MAX_REGIONS)",
    "P(\"ELISA_ACCESS_READ\", ELISA_ACCESS_READ)",
    "P(\"ELISA_ACCESS_WRITE\", ELISA_ACCESS_WRITE)",
    "P(\"ELISA_FIRST_GATE_INDEX\", ELISA_FIRST_GATE_INDEX)",
    "P(\"ELISA_MAX_GRANTS\", ELISA_MAX_GRANTS)",
    "P(\"ELISA_GRANT_USER\", ELISA_GRANT_USER)",
];

fn c_layout() -> HashMap<String, u64> {
    common::c_layout("elisa.h", PROBES, "-m64").expect("the C header compiles")
}

#[test]
fn rust_mirror_matches_c_header() {
    let c = c_layout();
    let rust: Vec<(&str, u64)> = vec![
        ("elisa_version.size", size_of::<ElisaVersion>() as u64),
        ("elisa_version.align", align_of::<ElisaVersion>() as u64),
        (
            "elisa_version.flags",
            offset_of!(ElisaVersion, flags) as u64,
        ),
        (
            "elisa_version.api_version",
            offset_of!(ElisaVersion, api_version) as u64,
        ),
        ("elisa_version.caps", offset_of!(ElisaVersion, caps) as u64),
        (
            "elisa_version.vmx_procbased_ctls2",
            offset_of!(ElisaVersion, vmx_procbased_ctls2) as u64,
        ),
        (
            "elisa_version.vmx_ept_vpid_cap",
            offset_of!(ElisaVersion, vmx_ept_vpid_cap) as u64,
        ),
        (
            "elisa_version.vmx_vmfunc",
            offset_of!(ElisaVersion, vmx_vmfunc) as u64,
        ),
        (
            "elisa_version.reserved",
            offset_of!(ElisaVersion, reserved) as u64,
        ),
        ("elisa_attach_vm.size", size_of::<ElisaAttachVm>() as u64),
        ("elisa_attach_vm.align", align_of::<ElisaAttachVm>() as u64),
        (
            "elisa_attach_vm.flags",
            offset_of!(ElisaAttachVm, flags) as u64,
        ),
        (
            "elisa_attach_vm.vm_fd",
            offset_of!(ElisaAttachVm, vm_fd) as u64,
        ),
        (
            "elisa_attach_vm.reserved",
            offset_of!(ElisaAttachVm, reserved) as u64,
        ),
        ("ELISA_ATTACH_VM", ELISA_ATTACH_VM as u64),
        ("ELISA_API_VERSION", ELISA_API_VERSION as u64),
        ("ELISA_IOCTL_TYPE", ELISA_IOCTL_TYPE as u64),
        ("ELISA_GET_VERSION", ELISA_GET_VERSION as u64),
        ("ELISA_CAPS_REQUIRED", caps::REQUIRED),
        ("ELISA_CAP_VMX", caps::VMX),
        ("ELISA_CAP_EPT", caps::EPT),
        ("ELISA_CAP_VMFUNC", caps::VMFUNC),
        ("ELISA_CAP_EPTP_SWITCHING", caps::EPTP_SWITCHING),
        ("ELISA_CAP_EPT_EXEC_ONLY", caps::EPT_EXEC_ONLY),
        ("ELISA_CAP_EPT_AD", caps::EPT_AD),
        ("ELISA_CAP_EPT_2M", caps::EPT_2M),
        ("ELISA_CAP_EPT_1G", caps::EPT_1G),
        ("ELISA_CAP_EPT_MBEC", caps::EPT_MBEC),
        ("ELISA_CAP_EPT_PWL4", caps::EPT_PWL4),
        (
            "elisa_create_region.size",
            size_of::<ElisaCreateRegion>() as u64,
        ),
        (
            "elisa_create_region.align",
            align_of::<ElisaCreateRegion>() as u64,
        ),
        (
            "elisa_create_region.flags",
            offset_of!(ElisaCreateRegion, flags) as u64,
        ),
        (
            "elisa_create_region.fd",
            offset_of!(ElisaCreateRegion, fd) as u64,
        ),
        (
            "elisa_create_region.offset",
            offset_of!(ElisaCreateRegion, offset) as u64,
        ),
        (
            "elisa_create_region.length",
            offset_of!(ElisaCreateRegion, length) as u64,
        ),
        (
            "elisa_create_region.reserved",
            offset_of!(ElisaCreateRegion, reserved) as u64,
        ),
        (
            "elisa_service_region.size",
            size_of::<ElisaServiceRegion>() as u64,
        ),
        (
            "elisa_service_region.align",
            align_of::<ElisaServiceRegion>() as u64,
        ),
        (
            "elisa_service_region.region_fd",
            offset_of!(ElisaServiceRegion, region_fd) as u64,
        ),
        (
            "elisa_service_region.access",
            offset_of!(ElisaServiceRegion, access) as u64,
        ),
        (
            "elisa_service_region.gva",
            offset_of!(ElisaServiceRegion, gva) as u64,
        ),
        (
            "elisa_service_region.reserved",
            offset_of!(ElisaServiceRegion, reserved) as u64,
        ),
        (
            "elisa_create_service.size",
            size_of::<ElisaCreateService>() as u64,
        ),
        (
            "elisa_create_service.align",
            align_of::<ElisaCreateService>() as u64,
        ),
        (
            "elisa_create_service.flags",
            offset_of!(ElisaCreateService, flags) as u64,
        ),
        (
            "elisa_create_service.code_fd",
            offset_of!(ElisaCreateService, code_fd) as u64,
        ),
        (
            "elisa_create_service.code_offset",
            offset_of!(ElisaCreateService, code_offset) as u64,
        ),
        (
            "elisa_create_service.code_size",
            offset_of!(ElisaCreateService, code_size) as u64,
        ),
        (
            "elisa_create_service.code_gva",
            offset_of!(ElisaCreateService, code_gva) as u64,
        ),
        (
            "elisa_create_service.entry_offset",
            offset_of!(ElisaCreateService, entry_offset) as u64,
        ),
        (
            "elisa_create_service.nr_regions",
            offset_of!(ElisaCreateService, nr_regions) as u64,
        ),
        (
            "elisa_create_service.reserved0",
            offset_of!(ElisaCreateService, reserved0) as u64,
        ),
        (
            "elisa_create_service.regions",
            offset_of!(ElisaCreateService, regions) as u64,
        ),
        (
            "elisa_create_service.reserved",
            offset_of!(ElisaCreateService, reserved) as u64,
        ),
        ("elisa_grant.size", size_of::<ElisaGrant>() as u64),
        ("elisa_grant.align", align_of::<ElisaGrant>() as u64),
        ("elisa_grant.flags", offset_of!(ElisaGrant, flags) as u64),
        (
            "elisa_grant.service_fd",
            offset_of!(ElisaGrant, service_fd) as u64,
        ),
        (
            "elisa_grant.entry_gva",
            offset_of!(ElisaGrant, entry_gva) as u64,
        ),
        (
            "elisa_grant.gate_index",
            offset_of!(ElisaGrant, gate_index) as u64,
        ),
        (
            "elisa_grant.nr_vcpus",
            offset_of!(ElisaGrant, nr_vcpus) as u64,
        ),
        (
            "elisa_grant.trusted_gpa",
            offset_of!(ElisaGrant, trusted_gpa) as u64,
        ),
        (
            "elisa_grant.trusted_size",
            offset_of!(ElisaGrant, trusted_size) as u64,
        ),
        (
            "elisa_grant.reserved",
            offset_of!(ElisaGrant, reserved) as u64,
        ),
        ("ELISA_CREATE_REGION", ELISA_CREATE_REGION as u64),
        ("ELISA_CREATE_SERVICE", ELISA_CREATE_SERVICE as u64),
        ("ELISA_GRANT", ELISA_GRANT as u64),
        ("ELISA_REGION_MAX_SIZE", ELISA_REGION_MAX_SIZE),
        ("ELISA_SERVICE_MAX_CODE", ELISA_SERVICE_MAX_CODE),
        (
            "ELISA_SERVICE_MAX_REGIONS",
            ELISA_SERVICE_MAX_REGIONS as u64,
        ),
        ("ELISA_ACCESS_READ", ELISA_ACCESS_READ as u64),
        ("ELISA_ACCESS_WRITE", ELISA_ACCESS_WRITE as u64),
        ("ELISA_FIRST_GATE_INDEX", ELISA_FIRST_GATE_INDEX as u64),
        ("ELISA_MAX_GRANTS", ELISA_MAX_GRANTS as u64),
        ("ELISA_GRANT_USER", ELISA_GRANT_USER as u64),
    ];
    assert_eq!(rust.len(), c.len(), "every C item has a Rust twin");
    for (name, value) in rust {
        assert_eq!(c.get(name), Some(&value), "{name}: C and Rust differ");
    }
}

/// A 32-bit or x32 VMM calls the same ioctls on a 64-bit host (api.rst): every struct,
/// offset and ioctl number is the same for it.
#[test]
fn same_layout_for_32_bit_callers() {
    let c64 = c_layout();
    for bits in ["-m32", "-mx32"] {
        common::assert_same_layout("elisa.h", &c64, bits);
    }
}

#[test]
fn capability_names_cover_every_bit_once() {
    let all = caps::NAMES.iter().fold(0u64, |acc, (bit, _)| {
        assert_eq!(acc & bit, 0, "bit listed twice");
        acc | bit
    });
    assert_eq!(all, (1 << caps::NAMES.len()) - 1);
}

#[test]
fn caps_from_msrs_reads_each_bit() {
    let ctls2 = ((1u64 << 1) | (1 << 13) | (1 << 22)) << 32;
    let ept = (1u64 << 0) | (1 << 6) | (1 << 16) | (1 << 17) | (1 << 21);
    assert_eq!(
        caps::from_msrs(true, ctls2, ept, 1),
        (1 << caps::NAMES.len()) - 1
    );
    // The low half of PROCBASED_CTLS2 (allowed-0) must not count as support.
    assert_eq!(
        caps::from_msrs(true, (1 << 1) | (1 << 13), ept, 1),
        caps::VMX
    );
    // VMFUNC without EPTP switching.
    assert_eq!(
        caps::from_msrs(true, (1u64 << 13) << 32, 0, 0),
        caps::VMX | caps::VMFUNC
    );
}

/// QEMU's patch 0001 carries `elisa.h` verbatim (`tools/qemu/README`): a header change
/// that the patch does not follow fails here, not in a VMM built from the old copy.
#[test]
fn qemu_patch_carries_the_header_verbatim() {
    let top = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let header = std::fs::read_to_string(top.join("include/uapi/linux/elisa.h")).unwrap();
    let patch = std::fs::read_to_string(
        top.join("tools/qemu/patches/0001-linux-headers-add-linux-elisa.h.patch"),
    )
    .unwrap();
    let mut lines = patch.lines().skip_while(|l| !l.starts_with("@@ -0,0 +1,"));
    let hunk = lines.next().expect("the patch's hunk");
    let copy: String = lines
        .take_while(|l| l.starts_with('+'))
        .map(|l| format!("{}\n", &l[1..]))
        .collect();
    assert_eq!(
        hunk,
        format!("@@ -0,0 +1,{} @@", header.lines().count()),
        "the hunk's line count"
    );
    assert!(
        copy == header,
        "tools/qemu/patches/0001 does not carry include/uapi/linux/elisa.h verbatim"
    );
}
