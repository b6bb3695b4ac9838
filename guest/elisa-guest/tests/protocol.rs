// SPDX-License-Identifier: GPL-2.0
//! Host checks of `elisa-guest`: the constants against `guest/elisa_call.h` and elisa-core,
//! the entry block against elisa-core's builder, and the call's register assignment against
//! a stand-in entry stub (the real one needs VMFUNC, which only the selftest
//! `elisa_rust_guest_test` runs).

use elisa_core::gate;
use elisa_guest::*;

/// The `#define NAME VALUE` lines of the C header, values parsed as integers.
fn c_header_defines() -> Vec<(String, i64)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../elisa_call.h");
    let text = std::fs::read_to_string(path).expect("read guest/elisa_call.h");
    let mut defs = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let v = value
            .trim_start_matches('(')
            .trim_end_matches(')')
            .trim_end_matches('L');
        let parsed = if let Some(hex) = v.strip_prefix("0x") {
            i64::from_str_radix(hex, 16).ok()
        } else {
            v.parse().ok()
        };
        if let Some(n) = parsed {
            defs.push((name.to_string(), n));
        }
    }
    defs
}

#[test]
fn c_header_matches_the_crate() {
    let defs = c_header_defines();
    let want = [
        ("ELISA_CALL_ENTRY_OFFSET", ENTRY_OFFSET as i64),
        ("ELISA_CALL_ERR_IRQ_ENABLED", ERR_IRQ_ENABLED),
        ("ELISA_CALL_ERR_NOT_ENTERED", ERR_NOT_ENTERED),
        ("ELISA_CALL_ERR_INTERRUPTED", ERR_INTERRUPTED),
    ];
    for (name, value) in want {
        let found: Vec<_> = defs.iter().filter(|(n, _)| n == name).collect();
        assert_eq!(found.len(), 1, "{name}: defined once in elisa_call.h");
        assert_eq!(found[0].1, value, "{name}");
    }
    // Every numeric ELISA_CALL_ constant of the header is one of those.
    for (name, _) in &defs {
        assert!(
            want.iter().any(|(n, _)| n == name),
            "{name} is not checked here"
        );
    }
}

#[test]
fn constants_are_elisa_cores() {
    assert_eq!(ENTRY_OFFSET, 0xff7);
    assert_eq!(ENTRY_OFFSET as usize, gate::GUEST_ENTRY_OFFSET);
    assert_eq!(FIRST_GATE_INDEX, 511);
    assert_eq!(
        (ERR_IRQ_ENABLED, ERR_NOT_ENTERED, ERR_INTERRUPTED),
        (-1, -19, -4)
    );
    assert_eq!(BLOCK_BYTES, 3 * 4096);
}

#[test]
fn entry_block_is_elisa_cores() {
    let mut want = [[0u8; gate::PAGE_BYTES]; 3];
    gate::write_guest_block(&mut want).expect("elisa-core's block");
    // Filled over garbage: every byte is written.
    let mut block = EntryBlock::zeroed();
    let mut pages = [[0x5au8; PAGE_SIZE]; BLOCK_PAGES];
    write_entry_block(&mut pages).expect("write_entry_block");
    block.write().expect("EntryBlock::write");
    assert_eq!(block.pages(), &want);
    assert_eq!(&pages, &want);
    assert_eq!(block.as_bytes().len(), BLOCK_BYTES);
    assert_eq!(block.as_bytes(), want.as_flattened());
    assert_eq!(core::mem::align_of::<EntryBlock>(), 4096);
    assert_eq!(core::mem::size_of::<EntryBlock>(), BLOCK_BYTES);
    // The stub the call jumps to, and the exit stub it returns through.
    let b = block.as_bytes();
    assert_eq!(
        &b[ENTRY_OFFSET as usize..PAGE_SIZE],
        &[0xf3, 0x0f, 0x1e, 0xfa, 0x31, 0xc0, 0x0f, 0x01, 0xd4]
    );
    assert_eq!(
        &b[2 * PAGE_SIZE..2 * PAGE_SIZE + 4],
        &[0x48, 0x89, 0xd0, 0xc3]
    );
    // The entry VMFUNC (where a detached VM's call raises #UD) ends page G, and the
    // fallback stub a guest kernel resumes at then returns -ENODEV: mov rdx, -19; jmp exit.
    assert_eq!(ENTRY_VMFUNC_OFFSET, 0xffd);
    assert_eq!(ENTRY_VMFUNC_OFFSET, ENTRY_OFFSET + 6);
    assert_eq!(
        &b[ENTRY_VMFUNC_OFFSET as usize..PAGE_SIZE],
        &[0x0f, 0x01, 0xd4]
    );
    assert_eq!(FALLBACK_OFFSET, 0x1000);
    assert_eq!(
        &b[FALLBACK_OFFSET as usize..FALLBACK_OFFSET as usize + 12],
        &[0x48, 0xc7, 0xc2, 0xed, 0xff, 0xff, 0xff, 0xe9, 0xf4, 0x0f, 0x00, 0x00]
    );
}

// A stand-in for the entry stub: returns RDI + RSI << 8 + RDX << 16 + R8 << 24 + R9 << 32 +
// RCX << 40 in RAX and RDX, overwrites the 128 bytes the caller stepped over (above its
// return address and the saved RBX and RBP) and sets every register the protocol lets the
// call clobber to -1, the callee-saved ones too, as a call the module fails back does.
core::arch::global_asm!(
    ".pushsection .text.elisa_guest_fake_entry, \"ax\", @progbits",
    ".globl elisa_guest_fake_entry",
    "elisa_guest_fake_entry:",
    "mov rax, rdi",
    "shl rsi, 8",
    "add rax, rsi",
    "shl rdx, 16",
    "add rax, rdx",
    "shl r8, 24",
    "add rax, r8",
    "shl r9, 32",
    "add rax, r9",
    "mov r10, rcx",
    "shl r10, 40",
    "add rax, r10",
    "mov r11, -1",
    "lea rdi, [rsp + 24]",
    "mov ecx, 16",
    "2:",
    "mov [rdi], r11",
    "add rdi, 8",
    "dec ecx",
    "jnz 2b",
    "mov rcx, r11",
    "mov rsi, r11",
    "mov rdi, r11",
    "mov r8, r11",
    "mov r9, r11",
    "mov r10, r11",
    "mov rbx, r11",
    "mov rbp, r11",
    "mov r12, r11",
    "mov r13, r11",
    "mov r14, r11",
    "mov r15, r11",
    "mov rdx, rax",
    "ret",
    ".popsection",
);

extern "C" {
    fn elisa_guest_fake_entry();
}

#[test]
fn call_passes_the_registers_of_the_protocol() {
    let entry = elisa_guest_fake_entry as unsafe extern "C" fn() as usize as u64;
    let gate = Gate::new(entry.wrapping_sub(ENTRY_OFFSET), 6);
    assert_eq!(gate.entry(), entry);
    let mut sum = 0u64;
    for i in 0..100u64 {
        // SAFETY: G + ENTRY_OFFSET is the stand-in above, a SysV function that writes only
        // the registers the protocol lets the call clobber and the 128 bytes it steps over.
        let r = unsafe { gate.call_raw(1 + i, 2, 3, 4, 5) };
        assert_eq!(r, 0x06_05_04_03_02_01 + i as i64);
        // SAFETY: as above.
        let r = unsafe { gate.call(i, 0, 0, 0, 0) };
        assert_eq!(r, Ok(0x06_00_00_00_00_00 + i));
        sum = sum.wrapping_add(r.unwrap_or(0));
    }
    assert_eq!(sum, 100 * 0x06_00_00_00_00_00 + 4950);
    // A raw value in the errno range comes back as the typed error.
    let neg = Gate::new(gate.g(), 0);
    // SAFETY: as above.
    assert_eq!(
        unsafe { neg.call(-22i64 as u64, 0, 0, 0, 0) },
        Err(CallError::Service(-22))
    );
    // SAFETY: as above.
    assert_eq!(
        unsafe { neg.call(-1i64 as u64, 0, 0, 0, 0) },
        Err(CallError::IrqEnabled)
    );
}

#[test]
fn user_space_runs_with_interrupts_enabled() {
    assert!(irqs_enabled());
}
