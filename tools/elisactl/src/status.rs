// SPDX-License-Identifier: GPL-2.0
//! `elisactl status [--json]`: what elisa serves on this host, from the module's debugfs
//! file `elisa/vms` and KVM's own per-VM statistics (`kvm/<pid>-<fd>/exits`): the pages
//! elisa holds and pins, and for every attached VM its VMM process, its vCPUs and their
//! counters, the services granted with their gate indexes, entry blocks and regions.
//! Needs debugfs mounted and root (debugfs is root-only).

use std::fmt::Write as _;
use std::fs;
use std::process::ExitCode;

/// The module's debugfs file.
pub(crate) const VMS: &str = "/sys/kernel/debug/elisa/vms";
/// KVM's debugfs directory: one `<pid>-<vm fd>` directory per VM.
const KVM_DEBUGFS: &str = "/sys/kernel/debug/kvm";

pub(crate) const USAGE: &str = "usage: elisactl status [--json]";

/// One region mapped by a granted service.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) gva: u64,
    pub(crate) pages: u64,
    pub(crate) access: String,
}

/// One granted service.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) gate_index: u32,
    pub(crate) g: u64,
    pub(crate) flags: u32,
    pub(crate) code_gva: u64,
    pub(crate) code_pages: u64,
    pub(crate) regions: Vec<Region>,
}

/// One vCPU's counters, by name, in the order the module prints them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Vcpu {
    pub(crate) index: u32,
    pub(crate) counters: Vec<(String, u64)>,
    /// The EPTP list's non-zero entries.
    pub(crate) list_entries: u32,
}

/// One attached VM.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Vm {
    pub(crate) id: u64,
    pub(crate) state: String,
    pub(crate) pid: Option<i32>,
    pub(crate) grants: Vec<Grant>,
    pub(crate) vcpus: Vec<Vcpu>,
}

/// What elisactl adds to a VM from outside the file: the VMM's name and KVM's exits.
pub(crate) type Extra<'a> = &'a dyn Fn(&Vm) -> (Option<String>, Option<u64>);

/// The whole file.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) pages_held: u64,
    pub(crate) pages_pinned: u64,
    pub(crate) vms: Vec<Vm>,
}

fn num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The value after `key` in a line of `key value` pairs.
fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| *w == key)
        .and_then(|i| words.get(i + 1).copied())
}

/// Parses the text of `elisa/vms`. Unknown lines and fields are skipped, so that a newer
/// module's additions do not break an older elisactl; a file without its first line is
/// an error.
pub(crate) fn parse(text: &str) -> Result<Status, String> {
    let mut st = Status::default();
    let mut lines = text.lines();
    let first: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    match (
        field(&first, "held").and_then(num),
        field(&first, "pinned").and_then(num),
    ) {
        (Some(h), Some(p)) if first.first() == Some(&"pages") => {
            st.pages_held = h;
            st.pages_pinned = p;
        }
        _ => return Err(format!("{VMS}: not the file of this elisactl's module")),
    }
    for line in lines {
        let w: Vec<&str> = line.split_whitespace().collect();
        let indent = line.len() - line.trim_start().len();
        match (indent, w.first().copied()) {
            (0, Some("vm")) => st.vms.push(Vm {
                id: w.get(1).and_then(|s| num(s)).unwrap_or(0),
                state: w.get(2).unwrap_or(&"?").to_string(),
                pid: field(&w, "pid").and_then(|s| s.parse().ok()),
                ..Vm::default()
            }),
            (2, Some("grant")) => {
                if let Some(vm) = st.vms.last_mut() {
                    vm.grants.push(Grant {
                        gate_index: w.get(1).and_then(|s| s.parse().ok()).unwrap_or(0),
                        g: field(&w, "g").and_then(num).unwrap_or(0),
                        flags: field(&w, "flags")
                            .and_then(num)
                            .and_then(|f| u32::try_from(f).ok())
                            .unwrap_or(0),
                        code_gva: field(&w, "code_gva").and_then(num).unwrap_or(0),
                        code_pages: field(&w, "code_pages").and_then(num).unwrap_or(0),
                        regions: Vec::new(),
                    });
                }
            }
            (4, Some("region")) => {
                if let Some(g) = st.vms.last_mut().and_then(|vm| vm.grants.last_mut()) {
                    g.regions.push(Region {
                        gva: field(&w, "gva").and_then(num).unwrap_or(0),
                        pages: field(&w, "pages").and_then(num).unwrap_or(0),
                        access: w.last().unwrap_or(&"?").to_string(),
                    });
                }
            }
            (2, Some("vcpu")) => {
                if let Some(vm) = st.vms.last_mut() {
                    let counters = w
                        .get(2..)
                        .unwrap_or(&[])
                        .chunks(2)
                        .filter_map(|kv| match kv {
                            [k, v] => num(v).map(|v| (k.to_string(), v)),
                            _ => None,
                        })
                        .collect();
                    vm.vcpus.push(Vcpu {
                        index: w.get(1).and_then(|s| s.parse().ok()).unwrap_or(0),
                        counters,
                        list_entries: 0,
                    });
                }
            }
            (4, Some(l)) if l.starts_with("list[") => {
                if let Some(v) = st.vms.last_mut().and_then(|vm| vm.vcpus.last_mut()) {
                    v.list_entries += 1;
                }
            }
            _ => {}
        }
    }
    Ok(st)
}

/// KVM's exit count of the VMs of process `pid` (summed when it has several), if readable.
fn kvm_exits(pid: i32) -> Option<u64> {
    let prefix = format!("{pid}-");
    let mut sum = None;
    for e in fs::read_dir(KVM_DEBUGFS).ok()?.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(&prefix) {
            continue;
        }
        if let Some(v) = fs::read_to_string(e.path().join("exits"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            sum = Some(sum.unwrap_or(0) + v);
        }
    }
    sum
}

/// The process's name, which the process sets itself (`PR_SET_NAME`): control characters
/// (an escape sequence for the terminal that shows it) come out as `\xNN`.
fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| printable(s.trim()))
}

/// `s` with control characters as `\xNN` and Unicode's bidirectional formatting
/// characters as `\u{NNNN}`: for strings a VMM chooses (a process name, a file or memfd
/// name) that elisactl prints, so that they cannot move the terminal's cursor, retitle it,
/// forge a line of output, or show a name in an order other than its bytes' (an override
/// that makes `.../evil` read as something else in an administrator's log).
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            c if c.is_control() => format!("\\x{:02x}", c as u32),
            c if is_bidi_format(c) => format!("\\u{{{:04x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// Unicode's bidirectional formatting characters: the marks (ALM, LRM, RLM), the
/// embeddings and overrides (LRE..RLO) and the isolates (LRI..PDI).
fn is_bidi_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

/// The JSON form: one object, field names as in the human form.
pub(crate) fn to_json(st: &Status, extra: Extra<'_>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"pages_held\":{},\"pages_pinned\":{},\"vms\":[",
        st.pages_held, st.pages_pinned
    );
    for (i, vm) in st.vms.iter().enumerate() {
        let (name, exits) = extra(vm);
        let _ = write!(
            o,
            "{}{{\"id\":{},\"state\":{},\"pid\":{},\"process\":{},\"kvm_exits\":{},\"vcpus\":[",
            if i > 0 { "," } else { "" },
            vm.id,
            json_str(&vm.state),
            opt(vm.pid),
            name.map_or_else(|| "null".into(), |n| json_str(&n)),
            opt(exits)
        );
        for (j, v) in vm.vcpus.iter().enumerate() {
            let _ = write!(o, "{}{{\"index\":{}", if j > 0 { "," } else { "" }, v.index);
            for (k, val) in &v.counters {
                let _ = write!(o, ",{}:{}", json_str(k), val);
            }
            let _ = write!(o, ",\"eptp_list_entries\":{}}}", v.list_entries);
        }
        o.push_str("],\"grants\":[");
        for (j, g) in vm.grants.iter().enumerate() {
            let _ = write!(
                o,
                "{}{{\"gate_index\":{},\"g\":\"{:#x}\",\"user\":{},\"code_gva\":\"{:#x}\",\"code_pages\":{},\"regions\":[",
                if j > 0 { "," } else { "" },
                g.gate_index,
                g.g,
                g.flags & 1 != 0,
                g.code_gva,
                g.code_pages
            );
            for (k, r) in g.regions.iter().enumerate() {
                let _ = write!(
                    o,
                    "{}{{\"gva\":\"{:#x}\",\"pages\":{},\"access\":{}}}",
                    if k > 0 { "," } else { "" },
                    r.gva,
                    r.pages,
                    json_str(&r.access)
                );
            }
            o.push_str("]}");
        }
        o.push_str("]}");
    }
    o.push_str("]}");
    o
}

/// The human form.
pub(crate) fn to_text(st: &Status, extra: Extra<'_>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "elisa: {} VM(s) attached; pages held {}, pinned {}",
        st.vms.len(),
        st.pages_held,
        st.pages_pinned
    );
    for vm in &st.vms {
        let (name, exits) = extra(vm);
        let _ = writeln!(
            o,
            "vm {} ({}): process {} ({}), {} vCPU(s), KVM exits {}",
            vm.id,
            vm.state,
            opt(vm.pid),
            name.unwrap_or_else(|| "?".into()),
            vm.vcpus.len(),
            opt(exits)
        );
        for g in &vm.grants {
            let _ = writeln!(
                o,
                "  gate {}: G {:#x} ({}), code at {:#x} ({} page(s)), {} region(s)",
                g.gate_index,
                g.g,
                if g.flags & 1 != 0 {
                    "user"
                } else {
                    "supervisor"
                },
                g.code_gva,
                g.code_pages,
                g.regions.len()
            );
            for r in &g.regions {
                let _ = writeln!(
                    o,
                    "    region at {:#x}: {} page(s) {}",
                    r.gva, r.pages, r.access
                );
            }
        }
        for v in &vm.vcpus {
            let c: Vec<String> = v.counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(o, "  vcpu {}: {}", v.index, c.join(", "));
        }
    }
    o
}

/// Why a file of elisa's debugfs could not be read, for the error line.
pub(crate) fn debugfs_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) if locked_down() => {
            " (the kernel is locked down, as under Secure Boot: debugfs files cannot be \
             opened, and elisa's kernel log lines are the way to watch this host; \
             Documentation/admin-guide.rst)"
        }
        Some(libc::EPERM | libc::EACCES) => " (debugfs is root's: run as root)",
        Some(libc::ENOENT) => " (is elisa.ko loaded, and debugfs mounted at /sys/kernel/debug?)",
        _ => "",
    }
}

/// Whether the kernel runs in a lockdown mode (`/sys/kernel/security/lockdown` names the
/// mode in force in brackets: `[none]` when it is not).
fn locked_down() -> bool {
    fs::read_to_string("/sys/kernel/security/lockdown")
        .is_ok_and(|t| t.contains('[') && !t.contains("[none]"))
}

pub(crate) fn main(args: &[String]) -> ExitCode {
    let json = match args {
        [] => false,
        [a] if a == "--json" => true,
        [h] if h == "--help" || h == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match fs::read_to_string(VMS) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("elisactl status: {VMS}: {e}{}", debugfs_hint(&e));
            return ExitCode::FAILURE;
        }
    };
    let st = match parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("elisactl status: {e}");
            return ExitCode::FAILURE;
        }
    };
    let extra = |vm: &Vm| match vm.pid {
        Some(p) => (comm(p), kvm_exits(p)),
        None => (None, None),
    };
    if json {
        println!("{}", to_json(&st, &extra));
    } else {
        print!("{}", to_text(&st, &extra));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_names_lose_control_characters() {
        assert_eq!(printable("qemu-system-x86"), "qemu-system-x86");
        assert_eq!(printable("a\x1b[2Jb\x7f"), "a\\x1b[2Jb\\x7f");
        // A right-to-left override and an isolate, as a name could hide them.
        assert_eq!(
            printable("vm\u{202e}txt.exe\u{2066}"),
            "vm\\u{202e}txt.exe\\u{2066}"
        );
        assert_eq!(printable("caf\u{e9}"), "caf\u{e9}");
    }

    use super::*;

    const SAMPLE: &str = "pages held 23 pinned 1
vm 3 attached alloc_failures 0 pid 55
  grant 511 g 0xffff800000002000 flags 0x0 code_gva 0xffff800010000000 code_pages 1 regions 1
    region gva 0xffff800040000000 pages 1 rw
  vcpu 0 view 0 entries 100 exits 99 list0_updates 1 view_exits 0 failbacks 0 faults 0 gate_frames 9 resumes 0 unpaired 0 failback_why 0x0
    list[0] 0x105e
    list[511] 0x3f05e
";

    #[test]
    fn parses_the_module_file() {
        let st = parse(SAMPLE).unwrap();
        assert_eq!((st.pages_held, st.pages_pinned), (23, 1));
        assert_eq!(st.vms.len(), 1);
        let vm = &st.vms[0];
        assert_eq!(
            (vm.id, vm.pid, vm.state.as_str()),
            (3, Some(55), "attached")
        );
        assert_eq!(vm.grants.len(), 1);
        let g = &vm.grants[0];
        assert_eq!(
            (g.gate_index, g.g, g.code_gva, g.code_pages),
            (511, 0xffff800000002000, 0xffff800010000000, 1)
        );
        assert_eq!(
            g.regions,
            vec![Region {
                gva: 0xffff800040000000,
                pages: 1,
                access: "rw".into()
            }]
        );
        assert_eq!(vm.vcpus.len(), 1);
        assert_eq!(vm.vcpus[0].list_entries, 2);
        assert_eq!(vm.vcpus[0].counters[0], ("view".into(), 0));
        assert_eq!(vm.vcpus[0].counters[2], ("exits".into(), 99));
    }

    #[test]
    fn refuses_other_files_and_tolerates_garbage() {
        assert!(parse("").is_err());
        assert!(parse("hello\nvm 1 attached").is_err());
        let st = parse("pages held 0 pinned 0\n  grant x\n    region\nvm\n  vcpu\n\u{0}").unwrap();
        assert_eq!(st.vms.len(), 1);
        assert_eq!(st.vms[0].vcpus.len(), 1);
    }

    #[test]
    fn json_and_text_forms() {
        let st = parse(SAMPLE).unwrap();
        let extra = |_: &Vm| (Some("qemu\"x".to_string()), Some(42));
        let j = to_json(&st, &extra);
        assert!(j.starts_with("{\"pages_held\":23,\"pages_pinned\":1,\"vms\":[{\"id\":3"));
        assert!(j.contains("\"process\":\"qemu\\\"x\",\"kvm_exits\":42"));
        assert!(j.contains("\"gate_index\":511,\"g\":\"0xffff800000002000\",\"user\":false"));
        assert!(j.ends_with("}]}]}]}"));
        let t = to_text(&st, &extra);
        assert!(t.contains("vm 3 (attached): process 55 (qemu\"x), 1 vCPU(s), KVM exits 42"));
        assert!(t.contains("  gate 511: G 0xffff800000002000 (supervisor)"));
    }
}
