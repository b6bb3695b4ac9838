// SPDX-License-Identifier: GPL-2.0
//! `ElisaVm`: one attachment of a KVM VM, held by an elisa-vm file.
//!
//! `ELISA_ATTACH_VM` on `/dev/elisa` creates one and returns its file; the caller proves
//! its right to the VM by passing the VM's fd. An `ElisaVm` holds the VM's
//! [`registry::Attachment`], the owner of its `VmRecord` and of a reference on the VM
//! (`kvm_get_kvm`), and lasts exactly as long as the elisa-vm file: its release drops the
//! attachment, which detaches (`VmRecord::quiesce`, unlink, grace period), frees the record
//! and drops the reference.

use crate::kvm::{self, Kvm};
use crate::shim::{pr_err_rl, pr_info_rl};
use crate::{registry, shim, uapi};
use core::ffi::{c_long, c_uint, c_ulong, c_void};
use kernel::{
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

/// See the file header.
pub(crate) struct ElisaVm {
    att: registry::Attachment,
}

/// `ELISA_ATTACH_VM`. Returns the new elisa-vm fd.
pub(crate) fn attach(req: &uapi::ElisaAttachVm) -> Result<isize> {
    if req.flags != 0 || req.reserved.iter().any(|&r| r != 0) {
        pr_info_rl!("ELISA_ATTACH_VM: flags and reserved fields must be 0\n");
        return Err(EINVAL);
    }
    // The fd first: a wrong one is EBADF or EINVAL whatever the host's settings.
    let kvm = Kvm::from_fd(req.vm_fd).inspect_err(|e| {
        pr_info_rl!(
            "ELISA_ATTACH_VM: fd {} is not a KVM VM (error {})\n",
            req.vm_fd,
            e.to_errno()
        );
    })?;
    // SAFETY: drops the reference `from_fd` took, on the paths below that end the attach
    // before `attach` took it over; process context.
    let put = || unsafe { kvm.put() };
    let params = kvm::KvmIntelParams::read().inspect_err(|e| {
        pr_err_rl!(
            "ELISA_ATTACH_VM: refused: cannot read kvm_intel's nested, ept, pt_mode and allow_smaller_maxphyaddr (error {})\n",
            e.to_errno()
        );
    });
    let Ok(params) = params else {
        put();
        return Err(ENODEV);
    };
    // kvm_intel settings under which elisa's guarantees do not hold: each is refused with
    // the reason in the kernel log.
    let refused = [
        (
            params.nested,
            "kvm_intel.nested=1 lets a guest's failing VMFUNC reach handle_vmfunc(), whose WARN_ON_ONCE is a host warning; load kvm_intel with nested=0",
        ),
        (
            params.pt_guest,
            "kvm_intel.pt_mode=1 lets a guest's Intel PT write its trace through the views' EPT into shared regions; load kvm_intel with pt_mode=0",
        ),
        (
            params.ept && params.smaller_maxphyaddr,
            "kvm_intel.allow_smaller_maxphyaddr=1 makes KVM intercept a guest's page faults and inject them itself, with the faulting address, also one a service raised inside a view; load kvm_intel with allow_smaller_maxphyaddr=0",
        ),
    ];
    if let Some((_, why)) = refused.iter().find(|(on, _)| *on) {
        pr_err_rl!("ELISA_ATTACH_VM: refused: {}\n", why);
        put();
        return Err(Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32)));
    }
    if let Err((r, why)) = kvm.check(params.ept) {
        pr_err_rl!("ELISA_ATTACH_VM: refused: {}\n", why);
        put();
        return Err(Error::from_errno(r));
    }
    // A VM whose processes have all exited can never run again, and a grant could charge
    // its views to no one (`Kvm::charge_to_owner`).
    if kvm.orphaned() {
        pr_info_rl!(
            "ELISA_ATTACH_VM: refused: every process of the VM has exited (it cannot run)\n"
        );
        put();
        return Err(ESRCH);
    }
    // `attach` takes over the VM reference; on failure it is ours to drop.
    let att = match registry::attach(kvm, params.mbec) {
        Ok(att) => att,
        Err(e) => {
            if e == EBUSY {
                pr_info_rl!("ELISA_ATTACH_VM: this VM is already attached\n");
            }
            put();
            return Err(e);
        }
    };
    let id = att.id;
    // On failure the `ElisaVm` is dropped, and with it the attachment: that detaches.
    let vm = KBox::new(ElisaVm { att }, GFP_KERNEL_ACCOUNT)?;
    let p = KBox::into_raw(vm);
    // SAFETY: `p` is a valid `ElisaVm` that the new file owns from now on; its release
    // hands it back to `elisa_rust_vm_release` exactly once.
    let fd = unsafe { shim::elisa_shim_vm_fd(p.cast()) };
    if fd < 0 {
        // SAFETY: no file was created, so we still own `p`. Dropping it detaches.
        drop(unsafe { KBox::from_raw(p) });
        return Err(Error::from_errno(fd));
    }
    pr_info!("vm {}: attached\n", id);
    Ok(fd as isize)
}

/// `release` of an elisa-vm file: drops its `ElisaVm`, whose attachment detaches. Process
/// context.
#[no_mangle]
extern "C" fn elisa_rust_vm_release(priv_: *mut c_void) {
    // SAFETY: `priv_` is the `ElisaVm` given to `elisa_shim_vm_fd`; release runs once.
    drop(unsafe { KBox::from_raw(priv_.cast::<ElisaVm>()) });
}

/// `unlocked_ioctl` of an elisa-vm file.
#[no_mangle]
extern "C" fn elisa_rust_vm_ioctl(priv_: *mut c_void, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: `priv_` is the file's `ElisaVm`, valid until release, which the VFS never
    // runs while an ioctl on the same file is in progress.
    let vm = unsafe { &*priv_.cast::<ElisaVm>() };
    let r = match cmd {
        uapi::ELISA_GRANT => grant_ioctl(vm, arg as usize),
        _ => Err(ENOTTY),
    };
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno() as c_long,
    }
}

fn grant_ioctl(vm: &ElisaVm, arg: usize) -> Result {
    let slice = UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::ElisaGrant>());
    let (mut reader, mut writer) = slice.reader_writer();
    let mut req: uapi::ElisaGrant = reader.read()?;
    crate::grant::grant(&vm.att, &mut req)?;
    writer.write(&req)
}
