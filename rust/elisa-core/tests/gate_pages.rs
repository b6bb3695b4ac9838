// SPDX-License-Identifier: GPL-2.0
//! Byte-level properties of the emitted pages: where the per-vCPU values go, that nothing
//! else depends on them, the guest's block, parameter validation, and copying into frames.

use elisa_core::addr::{Gpa, Gva, Hpa};
use elisa_core::eptp::Eptp;
use elisa_core::frame::{ArrayFrames, Frames};
use elisa_core::gate::{self, GateParams, PAGE_BYTES};
use elisa_core::paging::{CallerPrivilege, PagingMode};
use elisa_core::Error;
use iced_x86::{Decoder, DecoderOptions, Mnemonic};

const G: u64 = 0x7f00_0000_0000;

fn params() -> GateParams {
    GateParams {
        paging: PagingMode::FourLevel,
        entry: Gva(G),
        sub_eptp: Eptp::for_root(Hpa(0x12_3456_7000), true),
        sub_stack_top: Gva(0x2000_0001_0000),
        service_entry: Gva(0x2000_0040_0000),
        window: (Gpa(0x1_0000_0000), 0x40_0000),
    }
}

fn sub_page(p: &GateParams) -> Box<[u8; PAGE_BYTES]> {
    let mut page = Box::new([0u8; PAGE_BYTES]);
    gate::write_sub_code(&mut page, p, CallerPrivilege::Supervisor).expect("sub code");
    page
}

fn data_page(p: &GateParams) -> Box<[u8; PAGE_BYTES]> {
    let mut page = Box::new([0xaau8; PAGE_BYTES]);
    gate::write_gate_data(&mut page, p).expect("gate data");
    page
}

fn u64_at(page: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(page[off..off + 8].try_into().expect("8 bytes"))
}

fn differing(a: &[u8], b: &[u8]) -> Vec<usize> {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn immediates_are_where_documented() {
    let p = params();
    let sub = sub_page(&p);
    assert_eq!(
        u64_at(&sub[..], gate::SUB_STACK_IMM_OFFSET),
        p.sub_stack_top.raw() - gate::SUB_IDTR_SLOT
    );
    assert_eq!(
        u64_at(&sub[..], gate::SERVICE_IMM_OFFSET),
        p.service_entry.raw()
    );
    let data = data_page(&p);
    assert_eq!(
        u64_at(&data[..], gate::GATE_DATA_SUB_EPTP),
        p.sub_eptp.raw()
    );
    let (start, len) = p.window;
    assert_eq!(
        u64_at(&data[..], gate::GATE_DATA_WINDOW_START),
        start.0 << gate::CR3_SHIFT
    );
    assert_eq!(
        u64_at(&data[..], gate::GATE_DATA_WINDOW_LEN),
        len << gate::CR3_SHIFT
    );
    assert!(data[24..].iter().all(|b| *b == 0));
}

/// A window of whole pages, not empty, below 2^48 (what the views' 4-level walks read of a
/// GPA, and so of CR3), or the gate data cannot say it.
#[test]
fn gate_data_refuses_a_window_it_cannot_compare() {
    let p = params();
    let mut page = [0u8; PAGE_BYTES];
    for (window, e) in [
        ((Gpa(0x1_0000_0800), 0x1000), Error::Misaligned),
        ((Gpa(0x1_0000_0000), 0x800), Error::Misaligned),
        ((Gpa(0x1_0000_0000), 0), Error::BadRequest),
        ((Gpa((1 << 48) - 0x1000), 0x2000), Error::BadRequest),
        ((Gpa(1 << 48), 0x1000), Error::BadRequest),
        ((Gpa((1 << 52) - 0x1000), 0x1000), Error::BadRequest),
        ((Gpa(!0xfff), 0x1000), Error::BadRequest),
        ((Gpa(0), 1 << 48), Error::BadRequest),
    ] {
        let q = GateParams { window, ..p };
        assert_eq!(gate::write_gate_data(&mut page, &q), Err(e), "{window:x?}");
    }
    let q = GateParams {
        window: (Gpa((1 << 48) - 0x1000), 0x1000),
        ..p
    };
    assert_eq!(gate::write_gate_data(&mut page, &q), Ok(()));
}

#[test]
fn other_vcpus_differ_only_in_the_immediates() {
    let a = params();
    let b = GateParams {
        entry: Gva(0x5555_0000_0000),
        sub_eptp: Eptp::for_root(Hpa(0xfed_cba9_8000), false),
        sub_stack_top: Gva(0x3000_1234_5670),
        service_entry: Gva(0x3000_4000_0123),
        ..a
    };
    let imm = |off: usize| off..off + 8;
    for off in differing(&sub_page(&a)[..], &sub_page(&b)[..]) {
        assert!(
            imm(gate::SUB_STACK_IMM_OFFSET).contains(&off)
                || imm(gate::SERVICE_IMM_OFFSET).contains(&off),
            "sub pages differ at {off:#x}, outside the immediates"
        );
    }
    for off in differing(&data_page(&a)[..], &data_page(&b)[..]) {
        assert!(
            imm(gate::GATE_DATA_SUB_EPTP).contains(&off),
            "data pages differ at {off:#x}"
        );
    }
    // The gate code has no per-vCPU bytes at all; the guest's block has none either.
    let mut g1 = [0u8; PAGE_BYTES];
    let mut g2 = [0x55u8; PAGE_BYTES];
    gate::write_gate_code(&mut g1, CallerPrivilege::Supervisor).expect("gate code");
    gate::write_gate_code(&mut g2, CallerPrivilege::Supervisor).expect("gate code");
    assert_eq!(g1, g2);
    // The user grants' gate differs in the three bytes that read CR3 only.
    gate::write_gate_code(&mut g2, CallerPrivilege::User).expect("gate code");
    let cr3 = differing(&g1[..], &g2[..]);
    assert_eq!(cr3.len(), 3, "{cr3:x?}");
    assert_eq!(&g1[cr3[0]..cr3[0] + 3], &[0x0f, 0x20, 0xd8], "mov rax, cr3");
    assert_eq!(cr3[2], cr3[0] + 2);
    // G does not appear in any page: everything is RIP-relative.
    for page in [&g1[..], &sub_page(&a)[..]] {
        assert!(!page.windows(8).any(|w| w == G.to_le_bytes()));
    }
}

#[test]
fn code_pages_are_code_or_fill() {
    let mut gate_code = [0u8; PAGE_BYTES];
    gate::write_gate_code(&mut gate_code, CallerPrivilege::Supervisor).expect("gate code");
    let fill = gate_code.iter().filter(|b| **b == gate::FILL).count();
    println!(
        "gate page: {} code bytes, {fill} INT3 fill bytes",
        PAGE_BYTES - fill
    );
    // The gate entry is offset 0 and the switch VMFUNC sits where the sub entry expects.
    assert_eq!(
        &gate_code[gate::GATE_SWITCH_OFFSET..gate::SUB_ENTRY_OFFSET],
        &gate::VMFUNC
    );
    assert_eq!(&gate_code[gate::EXIT_VMFUNC_OFFSET..], &gate::VMFUNC);
    // No VMFUNC byte sequence other than the two real ones.
    let vmfuncs: Vec<usize> = gate_code
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == gate::VMFUNC)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        vmfuncs,
        vec![gate::GATE_SWITCH_OFFSET, gate::EXIT_VMFUNC_OFFSET]
    );
    // Decoding the refusal tail ends exactly at the page end with VMFUNC.
    let mut d = Decoder::with_ip(
        64,
        &gate_code[gate::GATE_TAIL_OFFSET..],
        0,
        DecoderOptions::NONE,
    );
    let mut last = None;
    while d.can_decode() {
        last = Some(d.decode());
    }
    let last = last.expect("tail");
    assert_eq!(
        (last.mnemonic(), last.next_ip() as usize),
        (Mnemonic::Vmfunc, PAGE_BYTES - gate::GATE_TAIL_OFFSET)
    );
}

#[test]
fn guest_block() {
    let mut block = Box::new([[0u8; PAGE_BYTES]; 3]);
    gate::write_guest_block(&mut block).expect("guest block");
    let [entry, middle, exit] = &*block;
    // Page G: INT3 fill, then ENDBR64; XOR EAX,EAX; VMFUNC as the last instruction.
    assert!(entry[..gate::GUEST_ENTRY_OFFSET]
        .iter()
        .all(|b| *b == gate::FILL));
    assert_eq!(
        &entry[gate::GUEST_ENTRY_OFFSET..],
        &[0xf3, 0x0f, 0x1e, 0xfa, 0x31, 0xc0, 0x0f, 0x01, 0xd4]
    );
    // Middle page: MOV RDX, -ENODEV; JMP G + 0x2000.
    let mut d = Decoder::with_ip(64, &middle[..], G + 0x1000, DecoderOptions::NONE);
    let mov = d.decode();
    assert_eq!(mov.mnemonic(), Mnemonic::Mov);
    assert_eq!(mov.immediate(1), gate::ERR_NOT_ENTERED as u64);
    let jmp = d.decode();
    assert_eq!(
        (jmp.mnemonic(), jmp.near_branch_target()),
        (Mnemonic::Jmp, G + 0x2000)
    );
    // Exit page: MOV RAX, RDX; RET.
    assert_eq!(&exit[..4], &[0x48, 0x89, 0xd0, 0xc3]);
    assert!(exit[4..].iter().all(|b| *b == gate::FILL));
}

#[test]
fn params_are_validated() {
    let p = params();
    assert_eq!(p.validate(), Ok(()));
    let cases = [
        (
            "G not page aligned",
            GateParams {
                entry: Gva(G + 8),
                ..p
            },
            Error::Misaligned,
        ),
        (
            "gate stack below 4 GiB",
            GateParams {
                entry: Gva(0x1_0000_1000),
                ..p
            },
            Error::BadRequest,
        ),
        (
            "block crosses the canonical hole",
            GateParams {
                entry: Gva(0x7fff_ffff_e000),
                ..p
            },
            Error::NonCanonical,
        ),
        (
            "non-canonical G",
            GateParams {
                entry: Gva(0x8000_0000_0000),
                ..p
            },
            Error::NonCanonical,
        ),
        (
            "stack top not 16-byte aligned",
            GateParams {
                sub_stack_top: Gva(0x2000_0001_0008),
                ..p
            },
            Error::Misaligned,
        ),
        (
            "stack top non-canonical",
            GateParams {
                sub_stack_top: Gva(0x9000_0000_0000),
                ..p
            },
            Error::NonCanonical,
        ),
        (
            "stack top in the entry block",
            GateParams {
                sub_stack_top: Gva(G),
                ..p
            },
            Error::Overlap,
        ),
        (
            "service in the entry block",
            GateParams {
                service_entry: Gva(G + 0x1000),
                ..p
            },
            Error::Overlap,
        ),
        (
            "service non-canonical",
            GateParams {
                service_entry: Gva(0x0100_0000_0000_0000),
                ..p
            },
            Error::NonCanonical,
        ),
    ];
    for (what, bad, err) in cases {
        assert_eq!(bad.validate(), Err(err), "{what}");
        let mut page = [0u8; PAGE_BYTES];
        assert_eq!(
            gate::write_sub_code(&mut page, &bad, CallerPrivilege::Supervisor),
            Err(err),
            "{what}"
        );
        assert_eq!(gate::write_gate_data(&mut page, &bad), Err(err), "{what}");
    }
    // Under 5-level paging the same high G is fine.
    let la57 = GateParams {
        paging: PagingMode::FiveLevel,
        entry: Gva(0x8000_0000_0000),
        ..p
    };
    assert_eq!(la57.validate(), Ok(()));
}

#[test]
fn pages_go_into_frames_unchanged() {
    let p = params();
    let mut frames = Box::new(ArrayFrames::<4>::new(Hpa(0x1_0000_0000)));
    let frame = frames.alloc_zeroed().expect("frame");
    let sub = sub_page(&p);
    gate::store_page(&mut *frames, frame, &sub).expect("store");
    for i in 0..512 {
        assert_eq!(
            frames.read_entry(frame, i).expect("entry"),
            u64_at(&sub[..], i * 8)
        );
    }
    assert_eq!(
        gate::store_page(&mut *frames, Hpa(0x42_0000_0000), &sub),
        Err(Error::BadFrame)
    );
}

/// Prints the code of every page with offsets and bytes, as listed in
/// `Documentation/gate-protocol.rst`:
/// `cargo test -p elisa-core --test gate_pages listing -- --ignored --nocapture`.
#[test]
#[ignore = "prints the listings for the documentation"]
fn listing() {
    use iced_x86::{Formatter, IntelFormatter};
    let p = params();
    let mut gate_code = [0u8; PAGE_BYTES];
    gate::write_gate_code(&mut gate_code, CallerPrivilege::Supervisor).expect("gate code");
    let sub = sub_page(&p);
    let mut block = Box::new([[0u8; PAGE_BYTES]; 3]);
    gate::write_guest_block(&mut block).expect("guest block");
    let pages: [(&str, &[u8; PAGE_BYTES], u64); 5] = [
        ("guest page G", &block[0], G),
        ("guest middle page G+0x1000", &block[1], G + 0x1000),
        ("guest exit page G+0x2000", &block[2], G + 0x2000),
        ("gate page G+0x1000", &gate_code, G + 0x1000),
        ("sub page G+0x1000", &sub, G + 0x1000),
    ];
    for (name, page, base) in pages {
        println!("{name}:");
        let mut d = Decoder::with_ip(64, &page[..], base, DecoderOptions::NONE);
        let mut text = String::new();
        let mut in_fill = false;
        while d.can_decode() {
            let ins = d.decode();
            let off = (ins.ip() - base) as usize;
            if ins.mnemonic() == Mnemonic::Int3 {
                if !in_fill {
                    println!("  {off:#05x}  cc ...             int3 (fill)");
                }
                in_fill = true;
                continue;
            }
            in_fill = false;
            text.clear();
            IntelFormatter::new().format(&ins, &mut text);
            let bytes: Vec<String> = page[off..off + ins.len()]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            println!("  {off:#05x}  {:<33} {text}", bytes.join(" "));
        }
    }
}

/// APX (XCR0 bit 19, which KVM may let a guest set) adds the REX2 prefix (`D5`, undefined in
/// 64-bit mode before) and new EVEX-encoded forms (`62`). Neither byte is anywhere in either
/// gate page, so a landing at any offset decodes the same with APX on, and the every-offset
/// analysis (iced-x86 without APX) still covers what runs. A change that put either byte
/// there would need gates closed under XCR0.APX.
#[test]
fn gate_pages_hold_no_apx_prefix() {
    for privilege in [CallerPrivilege::Supervisor, CallerPrivilege::User] {
        let mut page = [0u8; PAGE_BYTES];
        gate::write_gate_code(&mut page, privilege).expect("gate code");
        for (off, b) in page.iter().enumerate() {
            assert!(
                *b != 0xd5 && *b != 0x62,
                "{privilege:?} gate page byte {off:#x} is {b:#04x}"
            );
        }
    }
}

/// The module reads the guest's IDT register back from the two quadwords of the sub stack
/// slot that `SIDT` wrote: the limit in bytes 0-1, the base in bytes 2-9; bytes 10-15 are
/// whatever the stack held.
#[test]
fn idtr_words_are_what_sidt_stores() {
    let (limit, base) = (0x0fffu16, 0xffff_fe00_0000_1000u64);
    let mut bytes = [0xeeu8; 16];
    bytes[..2].copy_from_slice(&limit.to_le_bytes());
    bytes[2..10].copy_from_slice(&base.to_le_bytes());
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    assert_eq!(
        gate::Idtr::from_words(word(0), word(8)),
        gate::Idtr { base, limit }
    );
}

/// RFLAGS bits a guest can set and the gate's `PUSHFQ` stores in its flags slot (as
/// `tests/r12.rs`); bit 1 is always set.
const RFLAGS_SETTABLE: u64 = 0x003f_7fd5;

/// The gate view's readable pages from G - 0x2000 (gate stack, gate data, EPTP list) as a
/// guest can have them at a fault inside the gate: the bytes, and per byte the bits the
/// guest chooses (`list[1]`'s high half, stored by a landing on the gate's store of `RAX`
/// with `EAX` = 0; the flags slot's `RFLAGS` image). `guest_list` extends the guest's bytes
/// over the whole of list entries 1 to 3, a control.
fn gate_view_bytes(p: &GateParams, list: &[u64; 512], guest_list: bool) -> (Vec<u8>, Vec<u8>) {
    let mut bytes = vec![0u8; 3 * PAGE_BYTES];
    let mut guest = vec![0u8; 3 * PAGE_BYTES];
    let slot = gate::GATE_FLAGS_SLOT;
    bytes[slot..slot + 8].copy_from_slice(&2u64.to_le_bytes());
    guest[slot..slot + 8].copy_from_slice(&RFLAGS_SETTABLE.to_le_bytes());
    bytes[PAGE_BYTES..2 * PAGE_BYTES].copy_from_slice(&data_page(p)[..]);
    for (i, e) in list.iter().enumerate() {
        let at = 2 * PAGE_BYTES + 8 * i;
        bytes[at..at + 8].copy_from_slice(&e.to_le_bytes());
    }
    let first = 2 * PAGE_BYTES + gate::LIST_SUB_SLOT;
    let (from, to) = if guest_list {
        (first, first + 24)
    } else {
        (first + 4, first + 8)
    };
    for g in &mut guest[from..to] {
        *g = 0xff;
    }
    (bytes, guest)
}

/// Whether the 16 bytes at `at` can be made, with the guest's bits, a present 64-bit
/// interrupt or trap gate whose handler lies in the gate code page (G + 0x1000).
fn gate_descriptor_into_code(bytes: &[u8], guest: &[u8], at: usize) -> bool {
    // (byte of the descriptor, bits that must have a value, the value)
    let code = G + 0x1000;
    let mut need = vec![
        (5, 0x9e, 0x8e),                     // P = 1, S = 0, type 111x (DPL any, bit 0 any)
        (1, 0xf0, (code >> 8) as u8 & 0xf0), // handler bits 15:12
        (6, 0xff, (code >> 16) as u8),
        (7, 0xff, (code >> 24) as u8),
    ];
    for k in 0..4 {
        need.push((8 + k, 0xff, (code >> (32 + 8 * k)) as u8));
    }
    need.iter().all(|&(i, mask, want)| {
        let fixed = !guest[at + i] & mask;
        bytes[at + i] & fixed == want & fixed
    })
}

/// No 16 bytes the gate view can read (from any IDT base the guest loads) can be made a
/// gate descriptor that delivers an exception raised in the gate view to the gate's own
/// code: `list[1]`'s guest half can supply a descriptor's selector, type and IST, but the
/// handler's bits 63:32 then come from `list[2]`, always 0 (design.rst, "The views"; a
/// review found the earlier argument incomplete). A control with the guest's bytes over
/// list entries 1 to 3 finds such a descriptor, so the search can find one.
#[test]
fn no_readable_descriptor_leads_to_the_gate_code() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for case in 0..64 {
        let root = |x: u64| Hpa((x & 0x000f_ffff_ffff_f000).max(0x1000));
        let p = GateParams {
            sub_eptp: Eptp::for_root(root(next()), case % 2 == 0),
            window: (
                Gpa((next() & 0x0000_7fff_ffff_f000).max(0x40_0000) & !0xfff),
                0x40_0000,
            ),
            ..params()
        };
        let mut list = [0u64; 512];
        list[0] = Eptp::for_root(root(next()), true).raw();
        for e in &mut list[504..] {
            *e = Eptp::for_root(root(next()), false).raw();
        }
        let (bytes, guest) = gate_view_bytes(&p, &list, false);
        let found: Vec<usize> = (0..=bytes.len() - 16)
            .filter(|&at| gate_descriptor_into_code(&bytes, &guest, at))
            .collect();
        assert!(
            found.is_empty(),
            "case {case}: descriptors at {found:x?} of G - 0x2000"
        );
        let (bytes, guest) = gate_view_bytes(&p, &list, true);
        assert!(
            (0..=bytes.len() - 16).any(|at| gate_descriptor_into_code(&bytes, &guest, at)),
            "case {case}: the control found no descriptor"
        );
    }
}
