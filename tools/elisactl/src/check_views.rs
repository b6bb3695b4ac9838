// SPDX-License-Identifier: GPL-2.0
//! `elisactl check-views`: the host tests' isolation checks over the module's views dump.
//!
//! Each file holds one dump per gate of a vCPU (`elisa_core::dump`); each dump is a frame
//! store (HPA -> page) and the list of mappings the views should have, and every
//! `elisa_core::verify::Check` runs on it, the same code the property tests run on views
//! built in memory.

use elisa_core::dump::Dump;
use elisa_core::paging::CallerPrivilege;
use elisa_core::verify::{self, Check, Span, Views};
use std::process::ExitCode;

/// The default sampling seed: runs are reproducible unless `--seed` says otherwise.
const DEFAULT_SEED: u64 = 0x454c_4953_4100_0001;

/// Command-line arguments.
pub struct Args {
    seed: u64,
    files: Vec<String>,
}

impl Args {
    /// `[--seed N] FILE...`; `None` on a usage error.
    pub fn parse(args: &[String]) -> Option<Self> {
        let mut seed = DEFAULT_SEED;
        let mut files = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--seed" {
                let v = it.next()?;
                seed = match v.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).ok()?,
                    None => v.parse().ok()?,
                };
            } else if a.starts_with('-') {
                return None;
            } else {
                files.push(a.clone());
            }
        }
        (!files.is_empty()).then_some(Args { seed, files })
    }
}

/// Checks every dump of `bytes`; prints what it does. Returns (checks run, failures).
fn check_bytes(name: &str, bytes: &[u8], seed: u64) -> (usize, usize) {
    if bytes.is_empty() {
        println!("{name}: empty: no dump (no granted gate on this vCPU?)");
        return (0, 1);
    }
    let (mut run, mut failed) = (0, 0);
    let mut rest = bytes;
    let mut index = 0;
    while !rest.is_empty() {
        let (dump, after) = match Dump::parse(rest) {
            Ok(d) => d,
            Err(e) => {
                let at = bytes.len() - rest.len();
                println!("{name}: dump {index} (byte {at}): malformed: {e}");
                return (run, failed + 1);
            }
        };
        let h = dump.header();
        println!(
            "{name}: dump {index}: vcpu {}, gate index {}, G {:#x}, {}-level, {} pages, EPT A/D {}, \
             MBEC {}, trusted GPAs {:#x}+{:#x}, {} mappings, {} frames",
            h.vcpu,
            h.gate_index,
            h.entry_gva.0,
            h.paging.levels(),
            match h.privilege {
                CallerPrivilege::Supervisor => "supervisor",
                CallerPrivilege::User => "user",
            },
            if h.accessed_dirty { "on" } else { "off" },
            if h.mbec { "on" } else { "off" },
            h.window.0 .0,
            h.window.1,
            verify::Mappings::count(&dump),
            dump.frame_count()
        );
        let views = Views {
            header: h,
            mappings: &dump,
        };
        let mut scratch = vec![Span::default(); verify::scratch_len(&views, dump.frame_count())];
        for check in Check::ALL {
            run += 1;
            match verify::check(check, &views, &dump, &mut scratch, seed) {
                Ok(()) => println!("  ok    {}", check.name()),
                Err(v) => {
                    failed += 1;
                    println!("  FAIL  {}: {v}", check.name());
                }
            }
        }
        rest = after;
        index += 1;
    }
    (run, failed)
}

/// Runs the command; exit status 0 when every check of every dump passed, 1 otherwise.
pub fn run(args: &Args) -> ExitCode {
    let (mut run, mut failed) = (0, 0);
    for file in &args.files {
        match std::fs::read(file) {
            Ok(bytes) => {
                let (r, f) = check_bytes(file, &bytes, args.seed);
                run += r;
                failed += f;
            }
            Err(e) => {
                // The hint about debugfs only for a file of it.
                let hint = if file.starts_with("/sys/kernel/debug/") {
                    crate::status::debugfs_hint(&e)
                } else {
                    ""
                };
                println!("{file}: {e}{hint}");
                failed += 1;
            }
        }
    }
    println!(
        "check-views: {run} checks, {failed} failed (seed {:#x})",
        args.seed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
