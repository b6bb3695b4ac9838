// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The C side of the ABI tests: compile a probe program against a UAPI header and read
//! back the sizes, offsets and constants it prints.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

/// Calls of [`c_layout`] so far, for unique file names.
static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The probe's output for `header` (`linux/<header>`) and its `probes` (`P(name, value)`,
/// `S(struct)` for the size, `A(struct)` for the alignment, `O(struct, field)` lines), or `None` when the compiler cannot build for
/// `bits` (no 32-bit libc installed).
pub fn c_layout(header: &str, probes: &[&str], bits: &str) -> Option<HashMap<String, u64>> {
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let stem = header.trim_end_matches(".h");
    // One file per call: the tests of a binary run in parallel threads.
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let src = out.join(format!("{stem}_probe{bits}_{n}.c"));
    let bin = out.join(format!("{stem}_probe{bits}_{n}"));
    let mut prog = format!(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/{header}>\n\
         #define P(n, v) printf(\"%s %llu\\n\", n, (unsigned long long)(v))\n\
         #define S(t) P(#t \".size\", sizeof(struct t))\n\
         #define O(t, f) P(#t \".\" #f, offsetof(struct t, f))\n\
         #define A(t) P(#t \".align\", _Alignof(struct t))\n\
         int main(void) {{\n"
    );
    for line in probes {
        prog.push_str(line);
        prog.push_str(";\n");
    }
    prog.push_str("return 0; }\n");
    std::fs::write(&src, prog).unwrap();
    let st = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", bits, "-I"])
        .arg(top.join("include/uapi"))
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run cc");
    if !st.success() {
        assert_ne!(bits, "-m64", "the C header does not compile");
        return None;
    }
    let out = Command::new(&bin).output().expect("run probe");
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(' ').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect(),
    )
}

/// Checks that `header` has, for a caller built with `bits` (`-m32`, `-mx32`), the layout
/// `c64` (the `-m64` probe's values): one `_Static_assert` per probe, compiled only (no
/// 32-bit program is run, so neither a 32-bit libc at run time nor x32 support in the
/// kernel is needed). Panics, naming the first assertion that failed, if any differs; and
/// if `bits` cannot compile at all (`make deps` installs `gcc-multilib`): a check that
/// cannot run must not pass.
pub fn assert_same_layout(header: &str, c64: &HashMap<String, u64>, bits: &str) {
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let stem = header.trim_end_matches(".h");
    let src = out.join(format!("{stem}_same{bits}.c"));
    let obj = out.join(format!("{stem}_same{bits}.o"));
    let mut prog = format!("#include <stddef.h>\n#include <linux/{header}>\n");
    let mut keys: Vec<_> = c64.keys().collect();
    keys.sort();
    for k in keys {
        let v = c64[k];
        let expr = match k.rsplit_once('.') {
            Some((t, "size")) => format!("sizeof(struct {t})"),
            Some((t, "align")) => format!("_Alignof(struct {t})"),
            Some((t, f)) => format!("offsetof(struct {t}, {f})"),
            // a constant: the probe's name is the macro's
            None => k.clone(),
        };
        prog.push_str(&format!(
            "_Static_assert((unsigned long long)({expr}) == {v}ULL, \"{k} is {v} for -m64\");\n"
        ));
    }
    std::fs::write(&src, prog).unwrap();
    let st = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", bits, "-c", "-I"])
        .arg(top.join("include/uapi"))
        .arg("-o")
        .arg(&obj)
        .arg(&src)
        .output()
        .expect("run cc");
    assert!(
        st.status.success(),
        "{header} with {bits}: {}(a toolchain that cannot build for {bits} fails this check: make deps installs gcc-multilib)",
        String::from_utf8_lossy(&st.stderr)
    );
}
