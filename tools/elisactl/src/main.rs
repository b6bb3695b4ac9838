// SPDX-License-Identifier: GPL-2.0
//! elisactl: the host administrator's view of `/dev/elisa`.
//!
//! `elisactl version` prints the module's API version and what the CPU allows.
//!
//! `elisactl check-views [--seed N] FILE...` reads views dumps (debugfs
//! `elisa/vm<id>/vcpu<n>-views`, or a copy), runs every isolation check of
//! `elisa_core::verify` on each, prints each result, and exits 1 on any violation or
//! malformed dump.

mod check_views;

use elisa_uapi as uapi;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

const DEV: &str = "/dev/elisa";

/// `/dev/elisa`, opened.
struct Elisa {
    dev: std::fs::File,
}

impl Elisa {
    fn open() -> io::Result<Self> {
        let dev = OpenOptions::new().read(true).write(true).open(DEV)?;
        Ok(Elisa { dev })
    }

    fn version(&self) -> io::Result<uapi::ElisaVersion> {
        let mut v = uapi::ElisaVersion::default();
        // SAFETY: ELISA_GET_VERSION reads and writes exactly one `struct elisa_version`,
        // and `v` is one, valid and writable for the duration of the call.
        let r = unsafe {
            libc::ioctl(
                self.dev.as_raw_fd(),
                uapi::ELISA_GET_VERSION as _,
                &mut v as *mut uapi::ElisaVersion,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(v)
    }
}

fn cap_names(caps: u64) -> String {
    let names: Vec<&str> = uapi::caps::NAMES
        .iter()
        .filter(|(bit, _)| caps & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

fn cmd_version() -> io::Result<()> {
    let v = Elisa::open()?.version()?;
    println!("api version: {}", v.api_version);
    println!("caps:        {:#x} ({})", v.caps, cap_names(v.caps));
    let missing = uapi::caps::REQUIRED & !v.caps;
    if missing != 0 {
        println!("missing:     {}", cap_names(missing));
    }
    println!("IA32_VMX_PROCBASED_CTLS2: {:#018x}", v.vmx_procbased_ctls2);
    println!("IA32_VMX_EPT_VPID_CAP:    {:#018x}", v.vmx_ept_vpid_cap);
    println!("IA32_VMX_VMFUNC:          {:#018x}", v.vmx_vmfunc);
    Ok(())
}

fn usage() -> ExitCode {
    eprintln!("usage: elisactl version");
    eprintln!("       elisactl check-views [--seed N] FILE...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("version") => cmd_version(),
        Some("check-views") => {
            return match check_views::Args::parse(&args[1..]) {
                Some(a) => check_views::run(&a),
                None => usage(),
            }
        }
        _ => return usage(),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("elisactl: {DEV}: {e}");
            ExitCode::FAILURE
        }
    }
}
