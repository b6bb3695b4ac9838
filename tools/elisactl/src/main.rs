// SPDX-License-Identifier: GPL-2.0
//! elisactl: the host administrator's view of `/dev/elisa`.
//!
//! `elisactl version` prints the module's API version and what the CPU allows.
//!
//! `elisactl check-views [--seed N] FILE...` reads views dumps (debugfs
//! `elisa/vm<id>/vcpu<n>-views`, or a copy), runs every isolation check of
//! `elisa_core::verify` on each, prints each result, and exits 1 on any violation or
//! malformed dump.
//!
//! `elisactl serve` attaches a running VMM's VM and grants it a service (`serve.rs`).
//!
//! `elisactl status [--json]` lists the attached VMs, their VMM processes, vCPUs, gates,
//! regions, pages and exit counters (`status.rs`).
//!
//! `elisactl switch init` writes the port and config files of an elisa switch for VMMs
//! (`switch.rs`).

mod check_views;

use elisa_ioctls::{uapi, Elisa};
use std::io;
use std::process::ExitCode;

mod serve;
mod status;
mod switch;
mod sys;
mod vmfd;

const DEV: &str = Elisa::PATH;

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
    let v = Elisa::open_read_only()?.version()?;
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

/// The usage of every subcommand.
fn usage_text() -> String {
    format!(
        "usage: elisactl version\n       elisactl check-views [--seed N] FILE...\n       {}\n{}\n{}\n\
         Each subcommand's --help says more; Documentation/admin-guide.rst and qemu.rst.",
        status::USAGE.trim_start_matches("usage: "),
        serve::USAGE
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .replace("usage: ", "       "),
        switch::USAGE
            .lines()
            .next()
            .unwrap_or_default()
            .replace("usage: ", "       ")
    )
}

/// A wrong command line: the usage on standard error, exit status 2.
fn usage() -> ExitCode {
    eprintln!("{}", usage_text());
    ExitCode::from(2)
}

/// A subcommand's options: `(name, value)` pairs, in order.
pub(crate) type Options<'a> = Vec<(&'a str, Option<String>)>;

/// A subcommand's arguments as `(name, value)` pairs, in order: a name of `valued` takes a
/// value (`--name value` or `--name=value`), a name of `flags` none (`None`). `Ok(None)`
/// when `-h` or `--help` is among them; any other argument is an error.
pub(crate) fn options<'a>(
    args: &'a [String],
    flags: &[&str],
    valued: &[&str],
) -> Result<Option<Options<'a>>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        if flags.contains(&name) && inline.is_none() {
            out.push((name, None));
        } else if valued.contains(&name) {
            let v = inline
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))?;
            out.push((name, Some(v)));
        } else {
            return Err(format!("unknown argument {arg:?}"));
        }
    }
    Ok(Some(out))
}

/// A subcommand's arguments as the shell would split `s`, for the parsers' tests.
#[cfg(test)]
pub(crate) fn test_args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Runs subcommand `name` from its parsed arguments: `Ok(None)` (help) prints `usage` and
/// succeeds, a parse error prints it with the usage and exits 2, and `run`'s error exits 1.
pub(crate) fn subcommand<A, E: std::fmt::Display>(
    name: &str,
    usage: &str,
    parsed: Result<Option<A>, String>,
    run: impl FnOnce(&A) -> Result<(), E>,
) -> ExitCode {
    let a = match parsed {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("elisactl {name}: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("elisactl {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("version") => match &args[1..] {
            [] => cmd_version(),
            [h] if h == "--help" || h == "-h" => {
                println!(
                    "usage: elisactl version\n\nThe module's API version and capabilities, and \
                     the VMX capability MSRs it read (needs read access to /dev/elisa)."
                );
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        },
        Some("check-views") => {
            if matches!(&args[1..], [h] if h == "--help" || h == "-h") {
                println!(
                    "usage: elisactl check-views [--seed N] FILE...\n\nRuns the host tests' \
                     checks on views dumps (debugfs elisa/vm<id>/vcpu<n>-views; \
                     Documentation/testing.rst)."
                );
                return ExitCode::SUCCESS;
            }
            return match check_views::Args::parse(&args[1..]) {
                Some(a) => check_views::run(&a),
                None => usage(),
            };
        }
        Some("serve") => return serve::main(&args[1..]),
        Some("status") => return status::main(&args[1..]),
        Some("switch") => return switch::main(&args[1..]),
        Some("help" | "--help" | "-h") => {
            println!("{}", usage_text());
            return ExitCode::SUCCESS;
        }
        _ => return usage(),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("elisactl: {DEV}: {e}{}", device_hint(&e));
            ExitCode::FAILURE
        }
    }
}

/// What to do about a failed open of `/dev/elisa`.
fn device_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT) => {
            " (is elisa.ko loaded? If loading it failed, `dmesg | grep elisa` says why, for \
             example a CPU without VM functions or EPTP switching)"
        }
        Some(libc::EACCES | libc::EPERM) => {
            " (only root may open it, unless a udev rule gives a group access: \
             Documentation/admin-guide.rst, \"Who may use /dev/elisa\")"
        }
        _ => "",
    }
}
