// SPDX-License-Identifier: GPL-2.0
//! The C side of the ABI tests: compile a probe program against a UAPI header and read
//! back the sizes, offsets and constants it prints.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

/// The probe's output for `header` (`linux/<header>`) and its `probes` (`P(name, value)`,
/// `S(struct)` for the size, `A(struct)` for the alignment, `O(struct, field)` lines), or `None` when the compiler cannot build for
/// `bits` (no 32-bit libc installed).
pub fn c_layout(header: &str, probes: &[&str], bits: &str) -> Option<HashMap<String, u64>> {
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let stem = header.trim_end_matches(".h");
    let src = out.join(format!("{stem}_probe.c"));
    let bin = out.join(format!("{stem}_probe{bits}"));
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
