// SPDX-License-Identifier: GPL-2.0
//! R19 and R20, checked instruction by instruction on the emitted pages.
//!
//! An abstract interpreter runs the pages as iced-x86 decodes them:
//!
//! - `every_gate_offset_is_safe` lands at each of the 4096 byte offsets of the gate page with
//!   every register, flag and segment base chosen by the guest, follows every path (both
//!   sides of each branch the guest controls), and classifies where each path ends;
//! - `round_trip` runs the real call (guest stub, gate, sub, an empty service, exit stub),
//!   counts the instructions, and checks what the guest gets back;
//! - `dirty_service_leaves_no_trace` does the same with a service that fills every register
//!   it may clobber, and the flags, with sub-view data;
//! - `refusal_with_if_set` checks the IF=1 path;
//! - `slot_check_forgets_a_written_rsp` checks that the model trusts the flags slot check
//!   only until `RSP` is written again;
//! - `sub_page_has_one_entry` checks the sub page from its entry and that its entry is the
//!   byte after the gate's VMFUNC.
//!
//! # The model
//!
//! A value is a known constant, the genuine sub EPTP, *attacker* (any value the guest can
//! choose, or derived only from such values), *secret* (may carry a host value: an EPTP from
//! the list page or the gate data page, data of the sub view), or, in the round trip, a
//! symbolic guest register or the service's return value. Flags carry the same kinds plus two
//! facts: "ZF says whether a register equalled the sub EPTP" and "CF is RFLAGS.IF as just
//! pushed". The state also tracks, per 32-bit half, what `list[1]` may hold (0, half of the
//! sub EPTP, the low half of `RCX`, an RFLAGS image, attacker data, secret data), which
//! register holds a copy of `list[1]`, whether IF was checked to be 0, whether the gate
//! stack's flags slot holds this path's `PUSHFQ`, and stores to known stack addresses.
//!
//! Memory of the gate view: the gate stack (RW), the gate data page (read-only, the sub EPTP
//! at offset 0), the EPTP list (RW, secret EPTPs) and the gate code (execute-only). Every other
//! address faults, and so does any address below 4 GiB. A load through an address the guest
//! chooses may read any of the readable pages, so its result is secret.
//!
//! A path **fails** the check if it
//!
//! - stores through an address the guest chooses, or writes any byte of the list page
//!   outside entry 1; except an RFLAGS image from `PUSHF` through the guest's `RSP`, on a
//!   path that then ends in a fault or VM exit: the image may land at any byte of the list
//!   page, and shifted by 1 to 7 bytes it can be a valid EPTP (its bits 3 and 5, always 0,
//!   are what make an aligned image invalid), so it must never outlive the excursion (the
//!   module rewrites the list at every broken excursion). Only the gate's check that `RSP`
//!   is its flags slot right after its `PUSHFQ` clears such a store (the image then went
//!   to the slot);
//! - executes VMFUNC to index 1 while `list[1]` may hold the sub EPTP, anywhere but the
//!   validated switch (IF checked to be 0, `EAX` = 0, `ECX` = 1, at the switch offset), or
//!   while `list[1]` may hold attacker data or half of the sub EPTP;
//! - returns to the default view while `list[1]` may be non-zero, or with a secret in a
//!   register, the flags or the FPU/vector state;
//! - jumps to a secret-derived address, or to a guest-chosen one with such state;
//! - branches on a secret with both sides alive (an oracle the guest could query again).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Instant;

use elisa_core::addr::{Gpa, Gva};
use elisa_core::eptp::Eptp;
use elisa_core::gate::{self, GateParams, PAGE_BYTES};
use elisa_core::paging::{CallerPrivilege, PagingMode};
use iced_x86::{
    Code, CodeSize, ConditionCode, CpuidFeature, Decoder, DecoderError, DecoderOptions,
    FlowControl, Formatter, Instruction, InstructionInfoFactory, IntelFormatter, Mnemonic,
    OpAccess, OpKind, Register, RflagsBits,
};

const G: u64 = 0x7f00_0000_0000;
const CODE: u64 = G + 0x1000;
const LIST: u64 = G;
const LIST1: u64 = LIST + 8;
const GDATA: u64 = G - 0x1000;
const GSTACK: u64 = G - 0x2000;
const SLOT: u64 = GSTACK + 0xff8;
const SUB_TOP: u64 = 0x2000_0001_0000;
const SUB_STACK_LO: u64 = SUB_TOP - 0x4000;
const SVC: u64 = 0x2000_0040_0000;
const SVC_DATA: u64 = 0x2000_0050_0000;
const SUB_EPTP: u64 = 0x0000_0012_3456_705e;
/// The trusted window the gate data page names: its first page number and length in pages.
const WINDOW_PFN: u64 = 0x10_0000;
const WINDOW_PAGES: u64 = 0x400;
/// The guest's `CR3` in a traced call: a page of guest RAM, below the window, with a PCID.
const GUEST_CR3: u64 = 0x0012_3000 | 0x5;
/// Index of the first service's gate in the EPTP list.
const GATE_INDEX: u64 = 511;
/// Return address and stack of the traced caller.
const RET_ADDR: u64 = 0x5555_0000_1234;
const GUEST_RSP: u64 = 0x7ffc_0000_1000;

fn params() -> GateParams {
    GateParams {
        paging: PagingMode::FourLevel,
        entry: Gva(G),
        sub_eptp: Eptp::from_raw(SUB_EPTP).expect("valid EPTP"),
        sub_stack_top: Gva(SUB_TOP),
        service_entry: Gva(SVC),
        window: (Gpa(WINDOW_PFN << 12), WINDOW_PAGES << 12),
    }
}

// ---- Values ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum V {
    /// A constant the guest knows.
    K(u64),
    /// The genuine sub EPTP (a secret).
    Sub,
    /// Chosen by the guest, or derived from such values only.
    A,
    /// May carry a host secret.
    S,
    /// The guest's value of register n at the call (round trip only).
    Sym(u8),
    /// The service's return value (round trip only).
    Ret,
}

impl V {
    fn secret(self) -> bool {
        matches!(self, V::Sub | V::S | V::Ret)
    }
    fn taint(self) -> V {
        if self.secret() {
            V::S
        } else {
            V::A
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fl {
    K,
    /// The flags of a zero result of SUB or XOR: ZF = PF = 1, CF = OF = SF = 0.
    Zero,
    A,
    S,
    /// ZF = 1 iff register `reg` held the sub EPTP (`SUB reg, [sub_eptp]`).
    EqSub {
        reg: u8,
    },
    /// CF = RFLAGS.IF as pushed by this path (`BT [slot], 9`).
    CfIf,
    /// ZF = 1 iff `RSP` equals the flags slot's address (`CMP reg, RSP` with `reg` = slot).
    EqSlot,
    /// Secret flags of a SUB or CMP: ZF = 1 means equal, which fixes every arithmetic flag
    /// (and zeroes `reg`, the destination of a SUB).
    Cmp {
        reg: Option<u8>,
    },
    /// The carry and zero flags of a SUB or CMP of two known values.
    Known {
        cf: bool,
        zf: bool,
    },
}

impl Fl {
    fn secret(self) -> bool {
        matches!(self, Fl::S | Fl::EqSub { .. } | Fl::Cmp { .. })
    }
}

/// What one 32-bit half of `list[1]` may hold (a set).
const H_ZERO: u8 = 1;
const H_SUB: u8 = 2;
/// The low 32 bits of `RCX` (as long as `RCX` is not written).
const H_ECX: u8 = 4;
const H_FLAGS: u8 = 8;
const H_ATK: u8 = 16;
const H_SEC: u8 = 32;
const L1_ZERO: [u8; 2] = [H_ZERO, H_ZERO];

fn half_class(v: V) -> u8 {
    match v {
        V::K(0) => H_ZERO,
        V::Sub => H_SUB,
        V::K(_) | V::A | V::Sym(_) => H_ATK,
        V::S | V::Ret => H_SEC,
    }
}

fn bits(set: u8) -> impl Iterator<Item = u8> {
    (0..8).map(|b| 1u8 << b).filter(move |b| set & b != 0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum View {
    Default,
    Gate,
    Sub,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct St {
    view: View,
    rip: u64,
    r: [V; 16],
    fl: Fl,
    if0: bool,
    l1: [u8; 2],
    /// A register that holds exactly the value of `list[1]`.
    mirror: Option<u8>,
    /// How far the instructions just run follow the gate's CR3 check (`MOV RAX, CR3`,
    /// `SHL RAX, 12`, `SUB RAX, [window start]`, `CMP RAX, [window length]`): 0 to 4.
    cr3_stage: u8,
    /// The path fell through the CR3 check's `JB` to the invalid path: `CR3` is outside
    /// the window. A supervisor gate's switch is validated only with it.
    cr3_checked: bool,
    slot_current: bool,
    ext_secret: bool,
    /// `ECX` = `EAX` + 1 (set by `LEA ECX, [RAX+1]`).
    ecx_is_eax_plus_1: bool,
    /// An RFLAGS image was stored through an address the guest chose: the path must end in
    /// a fault or VM exit.
    foreign: bool,
    /// The last `PUSHF` stored through the guest's `RSP`, and `RSP` has not been written
    /// since: it still holds the address the image went to. A check that `RSP` is the flags
    /// slot clears it; any other write of `RSP` makes it `foreign`.
    pending: bool,
    /// What the IDT register holds.
    idt: Idt,
    /// Where `SIDT` stored the guest's IDT register, while those 16 bytes are not written
    /// again.
    idtr_saved: Option<u64>,
    mem: BTreeMap<u64, V>,
}

/// The IDT register, as the sub code changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Idt {
    /// The guest's own.
    Guest,
    /// Limit 0, base 0: nothing can be delivered.
    Empty,
    /// Anything else.
    Other,
}

impl St {
    /// Writes a general-purpose register, dropping the facts that depended on its old value.
    fn set(&mut self, i: usize, v: V) {
        self.r[i] = v;
        // A comparison of RSP says nothing of the RSP written after it.
        if i == RSP && self.fl == Fl::EqSlot {
            self.fl = Fl::A;
        }
        if i == RSP && self.pending {
            self.foreign = true;
            self.pending = false;
        }
        if i == RAX || i == RCX {
            self.ecx_is_eax_plus_1 = false;
        }
        if i == RCX {
            for h in &mut self.l1 {
                if *h & H_ECX != 0 {
                    *h = (*h & !H_ECX) | H_ATK;
                }
            }
        }
        if self.mirror == Some(i as u8) {
            self.mirror = None;
        }
        match self.fl {
            Fl::EqSub { reg } if usize::from(reg) == i => self.fl = Fl::S,
            Fl::Cmp { reg: Some(reg) } if usize::from(reg) == i => self.fl = Fl::Cmp { reg: None },
            _ => {}
        }
    }
}

const REG_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];
const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RSP: usize = 4;
const RSI: usize = 6;
const RDI: usize = 7;

fn gpr(r: Register) -> Option<usize> {
    let idx = match r.full_register() {
        Register::RAX => 0,
        Register::RCX => 1,
        Register::RDX => 2,
        Register::RBX => 3,
        Register::RSP => 4,
        Register::RBP => 5,
        Register::RSI => 6,
        Register::RDI => 7,
        Register::R8 => 8,
        Register::R9 => 9,
        Register::R10 => 10,
        Register::R11 => 11,
        Register::R12 => 12,
        Register::R13 => 13,
        Register::R14 => 14,
        Register::R15 => 15,
        _ => return None,
    };
    Some(idx)
}

// ---- Outcomes ----------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Out {
    /// The validated VMFUNC to the sub view.
    Switch,
    /// A clean VMFUNC(0) ending the page: the refusal path, to the guest's exit stub.
    ReturnTail,
    /// A clean VMFUNC(0) elsewhere: the guest resumes in its own middle page.
    ReturnOther,
    /// A fault or undefined instruction in the gate view.
    Trap(&'static str),
    /// An unconditional VM exit in the gate view.
    Exit(&'static str),
    /// A jump to a target the guest chose, with nothing secret in the state: a new landing.
    Jump,
    /// The path runs in a loop.
    Spin,
    /// Note: `PUSHF` wrote an RFLAGS image through a stack pointer the guest chose.
    FlagsStore,
    /// The traced call returned to its caller.
    Done,
    /// A violation.
    Fail(String),
}

impl Out {
    fn dead(&self) -> bool {
        matches!(self, Out::Trap(_) | Out::Exit(_) | Out::FlagsStore)
    }
    fn class(&self) -> String {
        match self {
            Out::Trap(t) => format!("trap: {t}"),
            Out::Exit(e) => format!("VM exit: {e}"),
            Out::Fail(f) => format!("FAIL: {f}"),
            Out::Switch => "validated switch to the sub view".into(),
            Out::ReturnTail => "clean return via the tail (refusal path)".into(),
            Out::ReturnOther => "clean return elsewhere (VMFUNC(0) inside other bytes)".into(),
            Out::Jump => "jump to a guest-chosen target, clean state (a new landing)".into(),
            Out::Spin => "loop".into(),
            Out::FlagsStore => "note: RFLAGS image stored through the guest's RSP".into(),
            Out::Done => "returned to the caller".into(),
        }
    }
    fn short(&self) -> &'static str {
        match self {
            Out::Switch => "switch",
            Out::ReturnTail => "refusal-return",
            Out::ReturnOther => "clean-return",
            Out::Trap(_) => "trap",
            Out::Exit(_) => "exit",
            Out::Jump => "jump",
            Out::Spin => "loop",
            Out::FlagsStore => "flags-store",
            Out::Done => "done",
            Out::Fail(_) => "FAIL",
        }
    }
}

enum Br {
    Go(Box<St>),
    End(Out),
}

struct Effect {
    branches: Vec<Br>,
    secret_branch: bool,
    notes: Vec<Out>,
}

impl Effect {
    fn go(st: St) -> Self {
        Effect {
            branches: vec![Br::Go(Box::new(st))],
            secret_branch: false,
            notes: vec![],
        }
    }
    fn end(o: Out) -> Self {
        Effect {
            branches: vec![Br::End(o)],
            secret_branch: false,
            notes: vec![],
        }
    }
    fn fail(msg: impl Into<String>) -> Self {
        Self::end(Out::Fail(msg.into()))
    }
    fn with_notes(mut self, notes: Vec<Out>) -> Self {
        self.notes.extend(notes);
        self
    }
}

// ---- The machine -------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Stop at every view change; explore every branch.
    Landing,
    /// Follow the call through every view; `if_set` decides the IF check.
    Trace { if_set: bool },
}

struct Machine {
    gate_code: Box<[u8; PAGE_BYTES]>,
    sub_code: Box<[u8; PAGE_BYTES]>,
    guest: Box<[[u8; PAGE_BYTES]; 3]>,
    service: Box<[u8; PAGE_BYTES]>,
    mode: Mode,
    factory: InstructionInfoFactory,
    memo: HashMap<St, BTreeSet<Out>>,
    on_path: HashSet<St>,
    trace: Vec<(View, u64, String)>,
    done: Option<St>,
    /// What `MOV r64, CR3` reads: the guest's choice when landing, a given page in a trace.
    cr3: V,
    /// The caller privilege whose gate page this is.
    privilege: CallerPrivilege,
}

enum Content {
    V(V),
    Trap(&'static str),
}

#[derive(Clone, Copy)]
enum Addr {
    K(u64),
    A,
    S,
    Low,
}

const LOW_TRAP: &str = "#PF: 32-bit address, nothing is mapped below 4 GiB";

fn in_range(a: u64, lo: u64, len: u64) -> bool {
    a >= lo && a - lo < len
}

impl Machine {
    fn new(mode: Mode, service_code: &[u8]) -> Self {
        Self::for_privilege(mode, service_code, CallerPrivilege::Supervisor)
    }

    fn for_privilege(mode: Mode, service_code: &[u8], privilege: CallerPrivilege) -> Self {
        let mut gate_code = Box::new([0u8; PAGE_BYTES]);
        gate::write_gate_code(&mut gate_code, privilege).expect("gate code");
        Self::with_gate(mode, service_code, gate_code, privilege)
    }

    fn with_gate(
        mode: Mode,
        service_code: &[u8],
        gate_code: Box<[u8; PAGE_BYTES]>,
        privilege: CallerPrivilege,
    ) -> Self {
        let p = params();
        let mut sub_code = Box::new([0u8; PAGE_BYTES]);
        gate::write_sub_code(&mut sub_code, &p, privilege).expect("sub code");
        let mut guest = Box::new([[0u8; PAGE_BYTES]; 3]);
        gate::write_guest_block(&mut guest).expect("guest block");
        let mut service = Box::new([0xccu8; PAGE_BYTES]);
        service[..service_code.len()].copy_from_slice(service_code);
        Machine {
            gate_code,
            sub_code,
            guest,
            service,
            mode,
            factory: InstructionInfoFactory::new(),
            memo: HashMap::new(),
            on_path: HashSet::new(),
            trace: Vec::new(),
            done: None,
            cr3: if matches!(mode, Mode::Trace { .. }) {
                V::K(GUEST_CR3)
            } else {
                V::A
            },
            privilege,
        }
    }

    fn trace_mode(&self) -> bool {
        matches!(self.mode, Mode::Trace { .. })
    }

    fn fetch(&self, view: View, rip: u64) -> Option<&[u8]> {
        let at = |base: u64| rip.checked_sub(base).filter(|o| *o < PAGE_BYTES as u64);
        fn tail(page: &[u8; PAGE_BYTES], off: u64) -> &[u8] {
            &page[off as usize..]
        }
        match view {
            View::Gate => at(CODE).map(|o| tail(&self.gate_code, o)),
            View::Sub => at(CODE)
                .map(|o| tail(&self.sub_code, o))
                .or_else(|| at(SVC).map(|o| tail(&self.service, o))),
            View::Default => {
                (0..3).find_map(|i| at(G + 0x1000 * i).map(|o| tail(&self.guest[i as usize], o)))
            }
        }
    }

    /// What a load returns (or how it faults).
    fn load(&self, st: &St, a: Addr, size: u64) -> Content {
        let a = match a {
            Addr::Low => return Content::Trap(LOW_TRAP),
            Addr::S => return Content::V(V::S),
            Addr::A if st.view == View::Default => return Content::V(V::A),
            Addr::A => return Content::V(V::S),
            Addr::K(a) => a,
        };
        if size == 8 {
            if let Some(v) = st.mem.get(&a) {
                return Content::V(*v);
            }
        }
        let list1 = |st: &St| {
            let combos: Vec<(u8, u8)> = bits(st.l1[0])
                .flat_map(|lo| bits(st.l1[1]).map(move |hi| (lo, hi)))
                .collect();
            if combos.iter().all(|c| *c == (H_SUB, H_SUB)) {
                V::Sub
            } else if combos.iter().all(|c| *c == (H_ZERO, H_ZERO)) {
                V::K(0)
            } else if combos.iter().any(|(l, h)| (l | h) & (H_SUB | H_SEC) != 0) {
                V::S
            } else {
                V::A
            }
        };
        match st.view {
            View::Default => Content::V(V::A),
            View::Gate => {
                let end = a.saturating_add(size);
                let overlaps = |lo: u64, len: u64| a < lo + len && end > lo;
                if a == GDATA && size == 8 {
                    Content::V(V::Sub)
                } else if a == GDATA + gate::GATE_DATA_WINDOW_START as u64 && size == 8 {
                    Content::V(V::K(WINDOW_PFN << (12 + gate::CR3_SHIFT)))
                } else if a == GDATA + gate::GATE_DATA_WINDOW_LEN as u64 && size == 8 {
                    Content::V(V::K(WINDOW_PAGES << (12 + gate::CR3_SHIFT)))
                } else if a == LIST1 && size == 8 {
                    Content::V(list1(st))
                } else if overlaps(GDATA, 8) || overlaps(LIST, 0x1000) {
                    Content::V(V::S)
                } else if overlaps(GDATA + 8, 16) {
                    // Part of the window's words: not zero, and not modelled exactly.
                    Content::V(V::A)
                } else if in_range(a, CODE, 0x1000) || overlaps(CODE, 0x1000) {
                    Content::Trap("EPT violation: read of the execute-only page")
                } else if in_range(a, GSTACK, 0x1000) {
                    Content::V(V::A)
                } else if in_range(a, GDATA, 0x1000) {
                    Content::V(V::K(0))
                } else {
                    Content::Trap("#PF: not mapped in the gate view")
                }
            }
            View::Sub => {
                if a == LIST1 && size == 8 {
                    Content::V(list1(st))
                } else if in_range(a, SUB_STACK_LO, SUB_TOP - SUB_STACK_LO)
                    || in_range(a, SVC_DATA, 0x1000)
                    || in_range(a, LIST, 0x1000)
                {
                    Content::V(V::S)
                } else if in_range(a, CODE, 0x1000) || in_range(a, SVC, 0x1000) {
                    Content::Trap("EPT violation: read of an execute-only page")
                } else {
                    Content::Trap("#PF: not mapped in the sub view")
                }
            }
        }
    }

    /// Applies a store; returns a terminal outcome if it faults or is a violation.
    /// `src` is the register stored, if the store copies one register.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        st: &mut St,
        a: Addr,
        size: u64,
        value: V,
        src: Option<usize>,
        is_pushf: bool,
        notes: &mut Vec<Out>,
    ) -> Option<Out> {
        let a = match a {
            Addr::Low => return Some(Out::Trap(LOW_TRAP)),
            Addr::A | Addr::S if st.view == View::Default => return None,
            Addr::A | Addr::S => {
                if is_pushf && !value.secret() {
                    // The image may land in list[1] (its high half is 0), in another list
                    // entry, or in the flags slot. None of them is a valid EPTP.
                    st.l1[0] |= H_FLAGS;
                    st.l1[1] |= H_ZERO;
                    st.mirror = None;
                    st.slot_current = false;
                    // An earlier image through the guest's RSP stays where it went.
                    if st.pending {
                        st.foreign = true;
                        st.pending = false;
                    }
                    notes.push(Out::FlagsStore);
                    return None;
                }
                return Some(Out::Fail(
                    "store through an address the guest chooses".into(),
                ));
            }
            Addr::K(a) => a,
        };
        if st.view == View::Default {
            st.mem.insert(a, value);
            return None;
        }
        if in_range(a, LIST, 0x1000) {
            let end = a + size;
            if a < LIST1 || end > LIST1 + 8 {
                return Some(Out::Fail(format!(
                    "write to EPTP-list byte {:#x}",
                    a - LIST
                )));
            }
            st.mirror = None;
            for (h, lo) in [(0usize, LIST1), (1, LIST1 + 4)] {
                if end <= lo || a >= lo + 4 {
                    continue;
                }
                let whole = a <= lo && end >= lo + 4;
                let class = match (size, value, src) {
                    (8, V::Sub, _) => H_SUB,
                    (4, v, Some(RCX)) if !matches!(v, V::K(_)) && whole => H_ECX,
                    (_, v, _) => half_class(v),
                };
                st.l1[h] = if whole || class == H_ZERO && st.l1[h] == H_ZERO {
                    class
                } else {
                    class | H_ATK
                };
            }
            return None;
        }
        let gate_stack = st.view == View::Gate && in_range(a, GSTACK, 0x1000);
        let sub_stack = st.view == View::Sub && in_range(a, SUB_STACK_LO, SUB_TOP - SUB_STACK_LO);
        if gate_stack {
            if value.secret() {
                return Some(Out::Fail("secret written to the gate stack".into()));
            }
            st.slot_current = is_pushf && a == SLOT;
            if size == 8 {
                st.mem.insert(a, value);
            }
            return None;
        }
        if sub_stack {
            if size == 8 {
                st.mem.insert(a, value);
            } else {
                st.mem.remove(&(a & !7));
            }
            if st
                .idtr_saved
                .is_some_and(|s| a < s + 16 && a.saturating_add(size) > s)
            {
                st.idtr_saved = None;
            }
            return None;
        }
        if in_range(a, CODE, 0x1000) || in_range(a, SVC, 0x1000) {
            return Some(Out::Trap("EPT violation: write to an execute-only page"));
        }
        if in_range(a, GDATA, 0x1000) || in_range(a, SVC_DATA, 0x1000) {
            return Some(Out::Trap("EPT violation: write to a read-only page"));
        }
        Some(Out::Trap("#PF: not mapped"))
    }

    #[allow(clippy::too_many_arguments)]
    fn addr_of(
        &self,
        st: &St,
        seg: Register,
        base: Register,
        index: Register,
        scale: u32,
        disp: u64,
        size32: bool,
    ) -> Addr {
        let fsgs = matches!(seg, Register::FS | Register::GS);
        let mut secret = false;
        let mut attacker = fsgs;
        let mut value = disp;
        for (reg, mul) in [(base, 1u64), (index, u64::from(scale))] {
            if reg == Register::None {
                continue;
            }
            match gpr(reg).map(|i| st.r[i]) {
                Some(V::K(v)) => value = value.wrapping_add(v.wrapping_mul(mul)),
                Some(v) if v.secret() => secret = true,
                _ => attacker = true,
            }
        }
        if size32 && !fsgs {
            return Addr::Low;
        }
        if secret {
            Addr::S
        } else if attacker {
            Addr::A
        } else {
            Addr::K(value)
        }
    }

    /// The address of the memory operand of `ins`.
    fn mem_addr(&self, st: &St, ins: &Instruction) -> Addr {
        let base = ins.memory_base();
        let seg = ins.memory_segment();
        if base == Register::RIP {
            return if matches!(seg, Register::FS | Register::GS) {
                Addr::A
            } else {
                Addr::K(ins.memory_displacement64())
            };
        }
        let size32 = base.is_gpr32() || ins.memory_index().is_gpr32();
        self.addr_of(
            st,
            seg,
            base,
            ins.memory_index(),
            ins.memory_index_scale(),
            ins.memory_displacement64(),
            size32,
        )
    }

    // ---- Exploration --------------------------------------------------------------------

    fn explore(&mut self, start: St) -> BTreeSet<Out> {
        let mut st = start;
        let mut visited = Vec::new();
        let mut result = BTreeSet::new();
        loop {
            if let Some(known) = self.memo.get(&st) {
                result.extend(known.iter().cloned());
                break;
            }
            if !self.on_path.insert(st.clone()) || visited.len() > 20_000 {
                result.insert(Self::settled(&st, Out::Spin));
                break;
            }
            visited.push(st.clone());
            let eff = self.step(&st);
            result.extend(eff.notes);
            let mut branches = eff.branches;
            if branches.len() == 1 && !eff.secret_branch {
                match branches.pop() {
                    Some(Br::Go(next)) => {
                        st = *next;
                        continue;
                    }
                    Some(Br::End(o)) => {
                        result.insert(Self::settled(&st, o));
                        break;
                    }
                    None => unreachable!(),
                }
            }
            let mut sides = Vec::new();
            for br in branches {
                sides.push(match br {
                    Br::Go(next) => self.explore(*next),
                    Br::End(o) => BTreeSet::from([Self::settled(&st, o)]),
                });
            }
            if eff.secret_branch && sides.iter().filter(|s| !s.iter().all(Out::dead)).count() > 1 {
                result.insert(Out::Fail("branch on a secret with both sides alive".into()));
            }
            for s in sides {
                result.extend(s);
            }
            break;
        }
        for s in visited {
            self.on_path.remove(&s);
            self.memo.insert(s, result.clone());
        }
        result
    }

    /// The outcome `o` of a path that ends in `st`: a violation if an RFLAGS image went
    /// through the guest's RSP and the path does not end in a fault or VM exit.
    fn settled(st: &St, o: Out) -> Out {
        if (st.foreign || st.pending) && !o.dead() && !matches!(o, Out::Fail(_)) {
            Out::Fail(format!(
                "ends without a VM exit ({}) after PUSHF stored RFLAGS through the guest's RSP",
                o.short()
            ))
        } else {
            o
        }
    }

    /// Runs a single path (trace mode) and returns its outcome.
    fn run(&mut self, start: St) -> Out {
        self.run_observed(start, |_| {})
    }

    /// [`Machine::run`], calling `observe` with the state before each instruction.
    fn run_observed(&mut self, start: St, mut observe: impl FnMut(&St)) -> Out {
        let mut st = start;
        for _ in 0..10_000 {
            observe(&st);
            let eff = self.step(&st);
            if eff.branches.len() != 1 {
                return Out::Fail(format!("fork at {:?} {:#x}", st.view, st.rip));
            }
            match eff.branches.into_iter().next() {
                Some(Br::Go(next)) => st = *next,
                Some(Br::End(o)) => {
                    if o == Out::Done {
                        self.done = Some(st);
                    }
                    return o;
                }
                None => unreachable!(),
            }
        }
        Out::Spin
    }

    fn step(&mut self, st: &St) -> Effect {
        let Some(bytes) = self.fetch(st.view, st.rip) else {
            return match st.view {
                View::Gate | View::Sub => {
                    Effect::end(Out::Trap("#PF: fetch outside the executable page"))
                }
                View::Default => {
                    Effect::fail(format!("fetch at {:#x} in the default view", st.rip))
                }
            };
        };
        let mut decoder = Decoder::with_ip(64, bytes, st.rip, DecoderOptions::NONE);
        let ins = decoder.decode();
        if ins.is_invalid() {
            return Effect::end(if decoder.last_error() == DecoderError::NoMoreBytes {
                Out::Trap("#PF: instruction runs into the next page")
            } else {
                Out::Trap("#UD")
            });
        }
        if self.trace_mode() {
            let mut text = String::new();
            IntelFormatter::new().format(&ins, &mut text);
            self.trace.push((st.view, st.rip, text));
        }
        let mut next = st.clone();
        next.rip = ins.next_ip();
        next.cr3_stage = cr3_stage_after(st.cr3_stage, &ins);
        let mut eff = self.exec(st, next, &ins);
        // The fall-through of the check's JB to the invalid path: CR3 is outside the window.
        if st.cr3_stage == 4
            && ins.flow_control() == FlowControl::ConditionalBranch
            && ins.condition_code() == ConditionCode::b
            && ins.near_branch_target() == CODE + gate::GATE_ABORT_INVALID_OFFSET as u64
        {
            for br in &mut eff.branches {
                if let Br::Go(n) = br {
                    if n.rip == ins.next_ip() {
                        n.cr3_checked = true;
                    }
                }
            }
        }
        eff
    }

    fn exec(&mut self, st: &St, mut next: St, ins: &Instruction) -> Effect {
        let m = ins.mnemonic();
        match ins.flow_control() {
            FlowControl::Interrupt => return Effect::end(Out::Trap("INT/INT3/INT1/INTO")),
            FlowControl::Exception => return Effect::end(Out::Trap("UD0/UD1/UD2")),
            _ => {}
        }
        // Only exits no VMM can turn off: KVM sets unconditional I/O exiting in every
        // VMCS, and the rest exit by architecture. HLT is not among them: a VMM can turn
        // HLT exiting off (KVM_CAP_X86_DISABLE_EXITS), so HLT is modelled as an
        // instruction after which the path goes on.
        let exits = [
            (Mnemonic::In, "I/O"),
            (Mnemonic::Out, "I/O"),
            (Mnemonic::Insb, "I/O"),
            (Mnemonic::Insw, "I/O"),
            (Mnemonic::Insd, "I/O"),
            (Mnemonic::Outsb, "I/O"),
            (Mnemonic::Outsw, "I/O"),
            (Mnemonic::Outsd, "I/O"),
            (Mnemonic::Cpuid, "CPUID"),
            (Mnemonic::Vmcall, "VMCALL"),
            (Mnemonic::Invd, "INVD"),
            (Mnemonic::Xsetbv, "XSETBV"),
            (Mnemonic::Getsec, "GETSEC"),
        ];
        if let Some((_, why)) = exits.iter().find(|(mn, _)| *mn == m) {
            // The module zeroes the registers at such an exit (a broken excursion), but KVM
            // hands the VMM an I/O exit's port from the exit qualification, taken from DX
            // before that, and a string I/O's linear address (RSI, RDI) from the VMCS.
            let string = matches!(
                m,
                Mnemonic::Insb
                    | Mnemonic::Insw
                    | Mnemonic::Insd
                    | Mnemonic::Outsb
                    | Mnemonic::Outsw
                    | Mnemonic::Outsd
            );
            let io = *why == "I/O";
            let leaks = (io && st.r[RDX].secret())
                || (string && (st.r[RSI].secret() || st.r[RDI].secret()));
            if leaks {
                return Effect::end(Out::Fail(format!(
                    "{why} exit with a secret in DX, RSI or RDI, which reach the VMM"
                )));
            }
            return Effect::end(Out::Exit(why));
        }
        if m == Mnemonic::Vmfunc {
            return self.vmfunc(st, next);
        }
        // A write of system state (a control or debug register, an MSR, a descriptor
        // table, TR or LDTR, a TLB entry, a segment base, PKRU) by elisa's own code would undo
        // what the gate checked (a MOV to CR3 after the CR3 check) or what the sub code set
        // up: none of it may run there, at any landing, except the sub code's LIDTs (the
        // empty IDT and the guest's back). Services are trusted and not checked here.
        let elisa_code = st.view == View::Gate || in_range(st.rip, CODE, 0x1000);
        if elisa_code && writes_system_state(ins) && ins.code() != Code::Lidt_m1664 {
            return Effect::fail(format!("system state written in the {:?} view", st.view));
        }
        match self.precise(st, &mut next, ins) {
            Some(Ok(())) => Effect::go(next),
            Some(Err(o)) => Effect::end(o),
            None => self.generic(st, next, ins),
        }
    }

    /// The instructions of the gate and sub paths, modelled exactly. `None` falls back to the
    /// generic model.
    fn precise(&mut self, st: &St, next: &mut St, ins: &Instruction) -> Option<Result<(), Out>> {
        let reg = |i: u32| gpr(ins.op_register(i));
        let is_reg = |i: u32| ins.op_kind(i) == OpKind::Register && reg(i).is_some();
        let is_mem = |i: u32| ins.op_kind(i) == OpKind::Memory;
        let code = ins.code();
        match code {
            Code::Mov_r64_imm64 | Code::Mov_r32_imm32 => {
                next.set(reg(0)?, V::K(ins.immediate(1)));
            }
            Code::Mov_rm64_imm32 if is_reg(0) => {
                next.set(reg(0)?, V::K(ins.immediate(1)));
            }
            Code::Mov_r64_rm64 | Code::Mov_rm64_r64 | Code::Mov_r32_rm32 | Code::Mov_rm32_r32
                if is_reg(0) && is_reg(1) =>
            {
                let v = st.r[reg(1)?];
                let v = match (ins.op_register(0).is_gpr32(), v) {
                    (true, V::K(x)) => V::K(x & 0xffff_ffff),
                    (true, V::Sym(_)) => V::A,
                    (_, v) => v,
                };
                next.set(reg(0)?, v);
            }
            Code::Mov_r64_rm64 if is_mem(1) => {
                let a = self.mem_addr(st, ins);
                let Content::V(v) = self.load(st, a, 8) else {
                    return None;
                };
                let d = reg(0)?;
                next.set(d, v);
                if matches!(a, Addr::K(LIST1)) && st.view != View::Default {
                    next.mirror = Some(d as u8);
                }
            }
            Code::Mov_rm64_r64 | Code::Mov_rm32_r32 if is_mem(0) => {
                let s = reg(1)?;
                let size = if code == Code::Mov_rm64_r64 { 8 } else { 4 };
                let v = match (size, st.r[s]) {
                    (4, V::K(x)) => V::K(x & 0xffff_ffff),
                    (4, v) => v.taint(),
                    (_, v) => v,
                };
                let a = self.mem_addr(st, ins);
                let mut notes = vec![];
                if let Some(o) = self.store(next, a, size, v, Some(s), false, &mut notes) {
                    return Some(Err(o));
                }
                if size == 8 && matches!(a, Addr::K(LIST1)) {
                    next.mirror = Some(s as u8);
                }
            }
            Code::Mov_rm64_imm32 if is_mem(0) => {
                let a = self.mem_addr(st, ins);
                let v = V::K(ins.immediate(1));
                let mut notes = vec![];
                if let Some(o) = self.store(next, a, 8, v, None, false, &mut notes) {
                    return Some(Err(o));
                }
            }
            Code::Lea_r64_m | Code::Lea_r32_m => {
                let base = ins.memory_base();
                let v = if base == Register::RIP {
                    V::K(ins.memory_displacement64())
                } else {
                    let a = self.addr_of(
                        st,
                        Register::DS,
                        base,
                        ins.memory_index(),
                        ins.memory_index_scale(),
                        ins.memory_displacement64(),
                        false,
                    );
                    match a {
                        Addr::K(x) => V::K(x),
                        Addr::S => V::S,
                        _ => V::A,
                    }
                };
                let v = match (code == Code::Lea_r32_m, v) {
                    (true, V::K(x)) => V::K(x & 0xffff_ffff),
                    (_, v) => v,
                };
                next.set(reg(0)?, v);
                if code == Code::Lea_r32_m
                    && reg(0) == Some(RCX)
                    && base == Register::RAX
                    && ins.memory_index() == Register::None
                    && ins.memory_displacement64() == 1
                {
                    next.ecx_is_eax_plus_1 = true;
                }
            }
            Code::Xor_rm32_r32
            | Code::Xor_r32_rm32
            | Code::Sub_rm32_r32
            | Code::Sub_r32_rm32
            | Code::Xor_rm64_r64
            | Code::Sub_rm64_r64
                if is_reg(0) && is_reg(1) && ins.op_register(0) == ins.op_register(1) =>
            {
                next.set(reg(0)?, V::K(0));
                next.fl = Fl::Zero;
            }
            Code::Mov_r64_cr if ins.op_register(1) == Register::CR3 => {
                next.set(reg(0)?, self.cr3);
            }
            Code::Shl_rm64_imm8 | Code::Shr_rm64_imm8 if is_reg(0) => {
                let d = reg(0)?;
                let V::K(x) = st.r[d] else { return None };
                let n = ins.immediate(1) as u32 & 63;
                let v = if code == Code::Shl_rm64_imm8 {
                    x << n
                } else {
                    x >> n
                };
                next.set(d, V::K(v));
                next.fl = Fl::K;
            }
            Code::Sub_r64_rm64 | Code::Cmp_r64_rm64
                if is_mem(1) && matches!(st.r[reg(0)?], V::K(_)) =>
            {
                let d = reg(0)?;
                let V::K(x) = st.r[d] else { return None };
                let Content::V(V::K(y)) = self.load(st, self.mem_addr(st, ins), 8) else {
                    return None;
                };
                if code == Code::Sub_r64_rm64 {
                    next.set(d, V::K(x.wrapping_sub(y)));
                }
                next.fl = Fl::Known {
                    cf: x < y,
                    zf: x == y,
                };
            }
            Code::Sub_r64_rm64 if is_mem(1) => {
                let d = reg(0)?;
                let a = self.mem_addr(st, ins);
                let Content::V(V::Sub) = self.load(st, a, 8) else {
                    return None;
                };
                if st.r[d] == V::Sub {
                    next.set(d, V::K(0));
                    next.fl = Fl::Zero;
                } else {
                    let mirror = next.mirror;
                    next.set(d, V::S);
                    next.mirror = mirror;
                    next.fl = Fl::EqSub { reg: d as u8 };
                }
            }
            Code::Bt_rm32_imm8 if is_mem(0) && st.view == View::Gate => {
                let Addr::K(SLOT) = self.mem_addr(st, ins) else {
                    return None;
                };
                if ins.immediate(1) & 31 != 9 {
                    return None;
                }
                next.fl = if st.slot_current { Fl::CfIf } else { Fl::A };
            }
            Code::Pushq_imm8 | Code::Push_r64 => {
                let v = if code == Code::Push_r64 {
                    st.r[reg(0)?]
                } else {
                    V::K(ins.immediate(0))
                };
                let V::K(sp) = st.r[RSP] else { return None };
                let sp = sp.wrapping_sub(8);
                let mut notes = vec![];
                if let Some(o) = self.store(next, Addr::K(sp), 8, v, None, false, &mut notes) {
                    return Some(Err(o));
                }
                next.set(RSP, V::K(sp));
            }
            Code::Pop_r64 => {
                let d = reg(0)?;
                let V::K(sp) = st.r[RSP] else { return None };
                let Content::V(v) = self.load(st, Addr::K(sp), 8) else {
                    return None;
                };
                next.set(RSP, V::K(sp.wrapping_add(8)));
                next.set(d, v);
            }
            Code::Popfq => {
                let V::K(sp) = st.r[RSP] else { return None };
                let Content::V(V::K(flags)) = self.load(st, Addr::K(sp), 8) else {
                    return None;
                };
                next.set(RSP, V::K(sp.wrapping_add(8)));
                next.fl = Fl::K;
                // IF changes only at CPL 0 (or IOPL 3); a pushed 0 keeps a checked IF at 0.
                next.if0 = st.if0 && flags & 0x200 == 0;
                next.slot_current = false;
            }
            Code::Cld => {}
            Code::Sidt_m1664 if st.view == View::Sub => {
                let a = self.mem_addr(st, ins);
                let mut notes = vec![];
                if let Some(o) = self.store(next, a, 10, V::A, None, false, &mut notes) {
                    return Some(Err(o));
                }
                let Addr::K(a) = a else { return None };
                next.mem.remove(&(a + 8));
                next.idtr_saved = (st.idt == Idt::Guest).then_some(a);
            }
            Code::Lidt_m1664 if st.view == View::Sub => {
                let a = self.mem_addr(st, ins);
                if let Content::Trap(t) = self.load(st, a, 10) {
                    return Some(Err(Out::Trap(t)));
                }
                let untouched = |x: u64| !st.mem.contains_key(&x) && !st.mem.contains_key(&(x + 8));
                next.idt = match a {
                    // list[1], just cleared, and list[2], never written: all zero.
                    Addr::K(LIST1) if st.l1 == L1_ZERO => Idt::Empty,
                    Addr::K(x) if st.idtr_saved == Some(x) && untouched(x) => Idt::Guest,
                    _ => Idt::Other,
                };
            }
            Code::Call_rm64 if is_reg(0) => {
                let V::K(target) = st.r[reg(0)?] else {
                    return None;
                };
                let V::K(sp) = st.r[RSP] else { return None };
                let sp = sp.wrapping_sub(8);
                let mut notes = vec![];
                let ret = V::K(ins.next_ip());
                if let Some(o) = self.store(next, Addr::K(sp), 8, ret, None, false, &mut notes) {
                    return Some(Err(o));
                }
                next.set(RSP, V::K(sp));
                next.rip = target;
            }
            Code::Retnq => {
                let V::K(sp) = st.r[RSP] else { return None };
                let Content::V(V::K(target)) = self.load(st, Addr::K(sp), 8) else {
                    return None;
                };
                if st.view == View::Default && target == RET_ADDR {
                    self.done = Some(next.clone());
                    return Some(Err(Out::Done));
                }
                next.set(RSP, V::K(sp.wrapping_add(8)));
                next.rip = target;
                if st.view == View::Sub && in_range(st.rip, SVC, 0x1000) && st.r[RAX].secret() {
                    next.r[RAX] = V::Ret;
                }
            }
            _ => return None,
        }
        Some(Ok(()))
    }

    fn generic(&mut self, st: &St, mut next: St, ins: &Instruction) -> Effect {
        let info = self.factory.info(ins).clone();
        let mut notes = vec![];
        let reads = |a: OpAccess| {
            matches!(
                a,
                OpAccess::Read | OpAccess::CondRead | OpAccess::ReadWrite | OpAccess::ReadCondWrite
            )
        };
        let writes = |a: OpAccess| {
            matches!(
                a,
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            )
        };
        let ext = ins.cpuid_features().iter().any(|f| {
            let name = format!("{f:?}");
            matches!(
                f,
                CpuidFeature::FPU | CpuidFeature::MMX | CpuidFeature::FPU287 | CpuidFeature::FPU387
            ) || [
                "SSE", "AVX", "FMA", "AES", "PCLMUL", "SHA", "F16C", "XOP", "D3NOW", "AMX", "GFNI",
                "VAES", "VPCLMUL", "KNC", "SSSE3", "CMOV_FPU",
            ]
            .iter()
            .any(|p| name.starts_with(p))
        });
        let mut secret = ext && st.ext_secret;
        for ur in info.used_registers() {
            if reads(ur.access()) {
                if let Some(i) = gpr(ur.register()) {
                    secret |= st.r[i].secret();
                }
            }
        }
        if ins.rflags_read() != 0 {
            secret |= st.fl.secret();
        }
        let mem_addr = |um: &iced_x86::UsedMemory, st: &St| {
            if um.base() == Register::None && um.index() == Register::None {
                if matches!(um.segment(), Register::FS | Register::GS) {
                    Addr::A
                } else if um.address_size() != CodeSize::Code64 {
                    Addr::Low
                } else {
                    Addr::K(um.displacement())
                }
            } else {
                self.addr_of(
                    st,
                    um.segment(),
                    um.base(),
                    um.index(),
                    um.scale(),
                    um.displacement(),
                    um.address_size() != CodeSize::Code64,
                )
            }
        };
        let mut loaded: Option<V> = None;
        for um in info.used_memory() {
            if !reads(um.access()) {
                continue;
            }
            let a = mem_addr(um, st);
            match self.load(st, a, um.memory_size().size() as u64) {
                Content::Trap(t) => return Effect::end(Out::Trap(t)),
                Content::V(v) => {
                    secret |= v.secret();
                    loaded = Some(v);
                }
            }
        }
        let result = if secret { V::S } else { V::A };
        let is_pushf = matches!(
            ins.mnemonic(),
            Mnemonic::Pushf | Mnemonic::Pushfq | Mnemonic::Pushfd
        );
        let fc = ins.flow_control();
        for um in info.used_memory() {
            if !writes(um.access()) {
                continue;
            }
            let a = mem_addr(um, st);
            let value = if is_pushf {
                if st.fl.secret() {
                    V::S
                } else {
                    V::A
                }
            } else if matches!(fc, FlowControl::Call | FlowControl::IndirectCall) {
                V::K(ins.next_ip())
            } else {
                result
            };
            let size = (um.memory_size().size() as u64).max(1);
            if let Some(o) = self.store(&mut next, a, size, value, None, is_pushf, &mut notes) {
                return Effect::end(o).with_notes(notes);
            }
        }
        let sp_inc = ins.stack_pointer_increment();
        let explicit_rsp = (0..ins.op_count()).any(|i| {
            ins.op_kind(i) == OpKind::Register
                && ins.op_register(i).full_register() == Register::RSP
        });
        for ur in info.used_registers() {
            if !writes(ur.access()) {
                continue;
            }
            let r = ur.register();
            match gpr(r) {
                Some(RSP) if sp_inc != 0 && !explicit_rsp && ins.mnemonic() != Mnemonic::Leave => {
                    let v = match st.r[RSP] {
                        V::K(x) => V::K(x.wrapping_add(sp_inc as i64 as u64)),
                        v => v.taint(),
                    };
                    next.set(RSP, v);
                }
                Some(i) => {
                    let keep_old = r.size() < 4 && st.r[i].secret();
                    next.set(i, if keep_old { V::S } else { result });
                }
                None => {
                    if r.is_xmm()
                        || r.is_ymm()
                        || r.is_zmm()
                        || r.is_mm()
                        || r.is_st()
                        || r.is_k()
                        || ext
                    {
                        next.ext_secret |= secret;
                    }
                }
            }
        }
        if ext && secret {
            next.ext_secret = true;
        }
        let modified = ins.rflags_modified();
        if modified & !(RflagsBits::IF | RflagsBits::AC | RflagsBits::DF) != 0 {
            next.fl = if secret { Fl::S } else { Fl::A };
            if secret && matches!(ins.mnemonic(), Mnemonic::Sub | Mnemonic::Cmp) {
                let dest = (ins.mnemonic() == Mnemonic::Sub
                    && ins.op0_kind() == OpKind::Register
                    && ins.op_register(0).size() >= 4)
                    .then(|| gpr(ins.op_register(0)))
                    .flatten();
                next.fl = Fl::Cmp {
                    reg: dest.map(|d| d as u8),
                };
            }
        }
        if modified & RflagsBits::IF != 0 {
            next.if0 = ins.mnemonic() == Mnemonic::Cli;
            next.slot_current = false;
        }
        // The image this PUSHF stored through the guest's RSP is where RSP now points.
        if is_pushf && notes.contains(&Out::FlagsStore) {
            next.pending = true;
        }
        // CMP of RSP with a register holding the flags slot's address.
        if ins.mnemonic() == Mnemonic::Cmp
            && ins.op_count() == 2
            && ins.op0_kind() == OpKind::Register
            && ins.op1_kind() == OpKind::Register
        {
            // Only a 64-bit compare says RSP is the slot (`gpr` maps ESP, SP and SPL to RSP).
            let full = ins.op_register(0).is_gpr64() && ins.op_register(1).is_gpr64();
            let (a, b) = if full {
                (gpr(ins.op_register(0)), gpr(ins.op_register(1)))
            } else {
                (None, None)
            };
            let slot_vs_rsp = |x: Option<usize>, y: Option<usize>| {
                y == Some(RSP) && x.is_some_and(|x| st.r[x] == V::K(SLOT))
            };
            if slot_vs_rsp(a, b) || slot_vs_rsp(b, a) {
                next.fl = Fl::EqSlot;
            }
        }
        match fc {
            FlowControl::Next => Effect::go(next).with_notes(notes),
            FlowControl::UnconditionalBranch | FlowControl::Call => {
                if matches!(
                    ins.op0_kind(),
                    OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16
                ) {
                    next.rip = ins.near_branch_target();
                    Effect::go(next).with_notes(notes)
                } else {
                    self.jump_to(next, V::A).with_notes(notes)
                }
            }
            FlowControl::IndirectBranch | FlowControl::IndirectCall => {
                let target = if ins.op0_kind() == OpKind::Register {
                    gpr(ins.op_register(0)).map_or(V::A, |i| st.r[i])
                } else {
                    loaded.unwrap_or(V::A)
                };
                let target = match target {
                    V::K(t) if ins.op0_kind() == OpKind::Memory => V::K(t),
                    V::K(t) => V::K(t),
                    v => v,
                };
                self.jump_to(next, target).with_notes(notes)
            }
            FlowControl::Return => {
                // Near RETs with a known stack are modelled exactly; this is every other
                // return (far, IRET, SYSRET, ...): a transfer the guest steers.
                next.if0 = false;
                let target = loaded.unwrap_or(V::A);
                self.jump_to(next, if target.secret() { V::S } else { V::A })
                    .with_notes(notes)
            }
            FlowControl::ConditionalBranch => self.branch(st, next, ins).with_notes(notes),
            FlowControl::XbeginXabortXend => match ins.mnemonic() {
                Mnemonic::Xbegin => {
                    let mut taken = next.clone();
                    taken.rip = ins.near_branch_target();
                    Effect {
                        branches: vec![Br::Go(Box::new(next)), Br::Go(Box::new(taken))],
                        secret_branch: false,
                        notes,
                    }
                }
                Mnemonic::Xend => Effect::end(Out::Trap("#GP: XEND outside a transaction")),
                _ => Effect::go(next).with_notes(notes),
            },
            FlowControl::Interrupt | FlowControl::Exception => Effect::end(Out::Trap("exception")),
        }
    }

    fn jump_to(&self, next: St, target: V) -> Effect {
        match target {
            V::K(t) => {
                let mut n = next;
                n.rip = t;
                Effect::go(n)
            }
            v if v.secret() => Effect::fail("jump to a secret-derived address"),
            _ => match self.leak(&next) {
                Some(why) => Effect::fail(format!("jump to a guest-chosen address with {why}")),
                None if next.l1 != L1_ZERO => {
                    Effect::fail("jump to a guest-chosen address with list[1] possibly set")
                }
                None => Effect::end(Out::Jump),
            },
        }
    }

    fn branch(&self, st: &St, next: St, ins: &Instruction) -> Effect {
        let mut taken = next.clone();
        taken.rip = ins.near_branch_target();
        let mut fall = next;
        let cc = ins.condition_code();
        let mut secret = st.fl.secret();
        match (st.fl, cc) {
            (Fl::EqSlot, ConditionCode::e | ConditionCode::ne) => {
                let (mut eq, mut ne) = if cc == ConditionCode::e {
                    (taken, fall)
                } else {
                    (fall, taken)
                };
                // Equal: RSP is the slot, so the image of a PUSHF through the guest's RSP
                // right before went to the slot (and is this path's).
                if eq.pending {
                    eq.pending = false;
                    eq.slot_current = true;
                }
                eq.r[RSP] = V::K(SLOT);
                eq.fl = Fl::Zero;
                // Not equal: it went elsewhere.
                if ne.pending {
                    ne.pending = false;
                    ne.foreign = true;
                }
                ne.fl = Fl::A;
                return match st.r[RSP] {
                    V::K(SLOT) => Effect::go(eq),
                    V::K(_) => Effect::go(ne),
                    _ => Effect {
                        branches: vec![Br::Go(Box::new(eq)), Br::Go(Box::new(ne))],
                        secret_branch: st.r[RSP].secret(),
                        notes: vec![],
                    },
                };
            }
            (Fl::EqSub { reg }, ConditionCode::e | ConditionCode::ne) => {
                let (eq, ne) = if cc == ConditionCode::e {
                    (&mut taken, &mut fall)
                } else {
                    (&mut fall, &mut taken)
                };
                // Equal: the register held the sub EPTP, so a copy of list[1] means list[1]
                // holds it too.
                if eq.mirror == Some(reg) {
                    eq.l1 = [H_SUB, H_SUB];
                }
                eq.set(reg.into(), V::K(0));
                eq.fl = Fl::Zero;
                ne.fl = Fl::S;
                if self.trace_mode() {
                    // Traced calls never land off the entry: only "equal" is possible.
                    return Effect::go(if cc == ConditionCode::e { taken } else { fall });
                }
            }
            (Fl::Cmp { reg }, ConditionCode::e | ConditionCode::ne) => {
                let (eq, ne) = if cc == ConditionCode::e {
                    (&mut taken, &mut fall)
                } else {
                    (&mut fall, &mut taken)
                };
                if let Some(reg) = reg {
                    eq.set(reg.into(), V::K(0));
                }
                eq.fl = Fl::Zero;
                ne.fl = Fl::S;
            }
            (
                Fl::Known { cf, zf },
                ConditionCode::b | ConditionCode::ae | ConditionCode::e | ConditionCode::ne,
            ) => {
                let holds = match cc {
                    ConditionCode::b => cf,
                    ConditionCode::ae => !cf,
                    ConditionCode::e => zf,
                    _ => !zf,
                };
                return Effect::go(if holds { taken } else { fall });
            }
            (Fl::Zero, _) if cc != ConditionCode::None => {
                use ConditionCode as C;
                let holds = matches!(
                    cc,
                    C::e | C::ae | C::ns | C::no | C::p | C::be | C::ge | C::le
                );
                return Effect::go(if holds { taken } else { fall });
            }
            (Fl::CfIf, ConditionCode::b | ConditionCode::ae) => {
                let (set, clear) = if cc == ConditionCode::b {
                    (&mut taken, &mut fall)
                } else {
                    (&mut fall, &mut taken)
                };
                clear.if0 = true;
                set.if0 = false;
                set.fl = Fl::A;
                clear.fl = Fl::A;
                if let Mode::Trace { if_set } = self.mode {
                    let pick = if if_set == (cc == ConditionCode::b) {
                        taken
                    } else {
                        fall
                    };
                    return Effect::go(pick);
                }
            }
            _ => {
                let m = ins.mnemonic();
                if matches!(m, Mnemonic::Loop | Mnemonic::Loope | Mnemonic::Loopne) {
                    let v = st.r[RCX].taint();
                    taken.set(RCX, v);
                    fall.set(RCX, v);
                }
                if matches!(
                    m,
                    Mnemonic::Loop
                        | Mnemonic::Loope
                        | Mnemonic::Loopne
                        | Mnemonic::Jrcxz
                        | Mnemonic::Jecxz
                ) {
                    secret |= st.r[RCX].secret();
                }
            }
        }
        Effect {
            branches: vec![Br::Go(Box::new(fall)), Br::Go(Box::new(taken))],
            secret_branch: secret,
            notes: vec![],
        }
    }

    /// What in `st` would leak to the guest, if anything.
    fn leak(&self, st: &St) -> Option<String> {
        for (i, v) in st.r.iter().enumerate() {
            if v.secret() && !(i == RDX && *v == V::Ret) {
                return Some(format!("{} = {v:?}", REG_NAMES[i]));
            }
        }
        if st.fl.secret() {
            return Some("secret-dependent flags".into());
        }
        if st.ext_secret {
            return Some("secret FPU/vector state".into());
        }
        None
    }

    fn vmfunc(&self, st: &St, next: St) -> Effect {
        let mut branches = vec![];
        // After an RFLAGS image went through the guest's RSP, any list entry may hold a
        // valid EPTP of the guest's making: no VMFUNC(0) may follow, to any index.
        if (st.foreign || st.pending) && !matches!(st.r[RAX], V::K(x) if x != 0) {
            return Effect::fail("VMFUNC after PUSHF stored RFLAGS through the guest's RSP");
        }
        match st.r[RAX] {
            V::K(0) => {}
            V::K(_) => return Effect::end(Out::Exit("VMFUNC function not enabled")),
            v if v.secret() => return Effect::fail("VMFUNC with a secret function number"),
            _ => branches.push(Br::End(Out::Exit("VMFUNC function not enabled"))),
        }
        let indices: Vec<u64> = match st.r[RCX] {
            // The function must be 0 to go on, and then ECX = 1.
            _ if st.ecx_is_eax_plus_1 => vec![1],
            V::K(v) => vec![v & 0xffff_ffff],
            v if v.secret() => return Effect::fail("VMFUNC with a secret index"),
            _ => vec![0, 1, GATE_INDEX, 2],
        };
        let combos: Vec<(u8, u8)> = bits(st.l1[0])
            .flat_map(|lo| bits(st.l1[1]).map(move |hi| (lo, hi)))
            .collect();
        for idx in indices {
            match (idx, st.view) {
                (0, View::Default) | (GATE_INDEX, View::Gate) => {
                    let mut n = next.clone();
                    n.view = if idx == 0 { View::Default } else { View::Gate };
                    branches.push(Br::Go(Box::new(n)));
                }
                (GATE_INDEX, _) => {
                    let mut n = next.clone();
                    n.view = View::Gate;
                    branches.push(Br::Go(Box::new(n)));
                }
                (0, _) => {
                    // ECX = 0 here, so a half holding ECX holds 0.
                    let clean = |h: u8| h == H_ZERO || h == H_ECX;
                    if let Some(why) = self.leak(&next) {
                        branches.push(Br::End(Out::Fail(format!(
                            "return to the default view with {why}"
                        ))));
                    } else if !combos.iter().all(|(l, h)| clean(*l) && clean(*h)) {
                        branches.push(Br::End(Out::Fail(
                            "return to the default view with list[1] possibly non-zero".into(),
                        )));
                    } else if self.trace_mode() {
                        let mut n = next.clone();
                        n.view = View::Default;
                        branches.push(Br::Go(Box::new(n)));
                    } else if next.rip == CODE + PAGE_BYTES as u64 {
                        branches.push(Br::End(Out::ReturnTail));
                    } else {
                        branches.push(Br::End(Out::ReturnOther));
                    }
                }
                (1, _) => {
                    for (lo, hi) in &combos {
                        let out = match (*lo, *hi) {
                            // The low half holds the memory type and walk length: 0, 1 (ECX),
                            // or RFLAGS bits 5:0 never form a valid EPTP.
                            (H_ZERO | H_ECX | H_FLAGS, _) => {
                                Out::Exit("VMFUNC(1) to an invalid EPTP (0, 1 or an RFLAGS image)")
                            }
                            (H_SUB, H_SUB) => {
                                let validated = st.view == View::Gate
                                    && st.rip == CODE + gate::GATE_SWITCH_OFFSET as u64
                                    && st.r[RCX] == V::K(1)
                                    && st.r[RAX] == V::K(0)
                                    && st.if0
                                    && st.l1 == [H_SUB, H_SUB]
                                    && (self.privilege == CallerPrivilege::User || st.cr3_checked);
                                if !validated {
                                    Out::Fail(
                                        "VMFUNC(1) into the sub view off the validated path".into(),
                                    )
                                } else if self.trace_mode() {
                                    let mut n = next.clone();
                                    n.view = View::Sub;
                                    branches.push(Br::Go(Box::new(n)));
                                    continue;
                                } else {
                                    Out::Switch
                                }
                            }
                            (H_SUB, _) => {
                                Out::Fail("VMFUNC(1) with half of the sub EPTP in list[1]".into())
                            }
                            _ => Out::Fail(
                                "VMFUNC(1) with guest-chosen or secret data in list[1]".into(),
                            ),
                        };
                        branches.push(Br::End(out));
                    }
                }
                _ => branches.push(Br::End(Out::Exit("VMFUNC to an invalid index"))),
            }
        }
        Effect {
            branches,
            secret_branch: false,
            notes: vec![],
        }
    }
}

/// Whether `ins` writes system state that the gate's checks or the sub code's set-up rely on.
fn writes_system_state(ins: &Instruction) -> bool {
    matches!(
        ins.code(),
        Code::Mov_cr_r64 | Code::Mov_cr_r32 | Code::Mov_dr_r64 | Code::Mov_dr_r32
    ) || matches!(
        ins.mnemonic(),
        Mnemonic::Wrmsr
            | Mnemonic::Wrmsrns
            | Mnemonic::Wrmsrlist
            | Mnemonic::Lgdt
            | Mnemonic::Lidt
            | Mnemonic::Lldt
            | Mnemonic::Ltr
            | Mnemonic::Lmsw
            | Mnemonic::Clts
            | Mnemonic::Invlpg
            | Mnemonic::Invpcid
            | Mnemonic::Swapgs
            | Mnemonic::Wrfsbase
            | Mnemonic::Wrgsbase
            | Mnemonic::Wrpkru
            | Mnemonic::Xrstors
            | Mnemonic::Xrstors64
            | Mnemonic::Stac
            | Mnemonic::Clac
    )
}

/// The CR3 check's progress after `ins`, from `stage` before it: each of its four
/// instructions advances it only right after the one before (a CLD may sit between the
/// shift and the subtraction); anything else resets it.
fn cr3_stage_after(stage: u8, ins: &Instruction) -> u8 {
    let rax = |i: u32| ins.op_kind(i) == OpKind::Register && ins.op_register(i) == Register::RAX;
    let data = |off: usize| {
        ins.op_kind(1) == OpKind::Memory
            && ins.memory_base() == Register::RIP
            && ins.memory_displacement64() == GDATA + off as u64
    };
    match ins.code() {
        Code::Mov_r64_cr if rax(0) && ins.op_register(1) == Register::CR3 => 1,
        Code::Shl_rm64_imm8
            if stage == 1 && rax(0) && ins.immediate(1) == u64::from(gate::CR3_SHIFT) =>
        {
            2
        }
        Code::Sub_r64_rm64 if stage == 2 && rax(0) && data(gate::GATE_DATA_WINDOW_START) => 3,
        Code::Cmp_r64_rm64 if stage == 3 && rax(0) && data(gate::GATE_DATA_WINDOW_LEN) => 4,
        // The CLD after the shift (whose immediate it keeps harmless) touches only DF.
        Code::Cld if stage == 2 => 2,
        _ => 0,
    }
}

fn landing_state(off: usize) -> St {
    St {
        view: View::Gate,
        rip: CODE + off as u64,
        r: [V::A; 16],
        fl: Fl::A,
        if0: false,
        l1: L1_ZERO,
        mirror: None,
        cr3_stage: 0,
        cr3_checked: false,
        slot_current: false,
        ext_secret: false,
        ecx_is_eax_plus_1: false,
        foreign: false,
        pending: false,
        idt: Idt::Guest,
        idtr_saved: None,
        mem: BTreeMap::new(),
    }
}

/// The state right before the caller's `CALL` to the entry stub has executed; the stub
/// starts with the return address pushed.
fn call_state() -> St {
    let mut r = [V::A; 16];
    for (i, v) in r.iter_mut().enumerate() {
        *v = V::Sym(i as u8);
    }
    r[RCX] = V::K(GATE_INDEX);
    r[RSP] = V::K(GUEST_RSP);
    let mut mem = BTreeMap::new();
    mem.insert(GUEST_RSP, V::K(RET_ADDR));
    St {
        view: View::Default,
        rip: G + gate::GUEST_ENTRY_OFFSET as u64,
        r,
        fl: Fl::A,
        if0: false,
        l1: L1_ZERO,
        mirror: None,
        cr3_stage: 0,
        cr3_checked: false,
        slot_current: false,
        ext_secret: false,
        ecx_is_eax_plus_1: false,
        foreign: false,
        pending: false,
        idt: Idt::Guest,
        idtr_saved: None,
        mem,
    }
}

/// Both gate pages: the supervisor grants' (which reads CR3) and the user grants'.
#[test]
fn every_gate_offset_is_safe() {
    every_offset_is_safe(CallerPrivilege::Supervisor);
    every_offset_is_safe(CallerPrivilege::User);
}

fn every_offset_is_safe(privilege: CallerPrivilege) {
    println!("{privilege:?} grants' gate page:");
    let t0 = Instant::now();
    let mut m = Machine::for_privilege(Mode::Landing, &[0xc3], privilege);
    let mut per_class: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_set: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = String::new();
    let mut switch_offsets = vec![];
    for off in 0..PAGE_BYTES {
        let outs = m.explore(landing_state(off));
        for c in outs.iter().map(Out::class).collect::<BTreeSet<_>>() {
            *per_class.entry(c).or_default() += 1;
        }
        let set: BTreeSet<&str> = outs.iter().map(Out::short).collect();
        *per_set
            .entry(set.into_iter().collect::<Vec<_>>().join(" + "))
            .or_default() += 1;
        if outs.contains(&Out::Switch) {
            switch_offsets.push(off);
        }
        for o in &outs {
            if let Out::Fail(f) = o {
                let _ = writeln!(failures, "offset {off:#05x}: {f}");
            }
        }
    }
    println!("gate page: 4096 landing offsets; offsets per outcome (one offset may have several):");
    for (c, n) in &per_class {
        println!("  {n:5}  {c}");
    }
    println!("gate page: offsets per set of outcomes:");
    for (c, n) in &per_set {
        println!("  {n:5}  {c}");
    }
    println!("offsets from which the validated switch is reachable: {switch_offsets:#x?}");
    println!("{} abstract states, {:?}", m.memo.len(), t0.elapsed());
    assert!(failures.is_empty(), "violations:\n{failures}");
    assert!(switch_offsets.contains(&gate::GATE_ENTRY_OFFSET));
}

/// Explores every landing offset of `m`'s gate page and returns the violations.
fn violations(m: &mut Machine) -> Vec<(usize, String)> {
    let mut out = vec![];
    for off in 0..PAGE_BYTES {
        for o in m.explore(landing_state(off)) {
            if let Out::Fail(f) = o {
                out.push((off, f));
            }
        }
    }
    out
}

/// The analysis is only worth something if it sees known mistakes: each mutation below
/// reintroduces one, and must be reported.
#[test]
fn analysis_catches_known_mistakes() {
    let mut good = Box::new([0u8; PAGE_BYTES]);
    gate::write_gate_code(&mut good, CallerPrivilege::Supervisor).expect("gate code");
    let find = |pat: &[u8]| {
        good.windows(pat.len())
            .position(|w| w == pat)
            .expect("pattern in the gate page")
    };
    let jc = find(&[0x72]); // the only JC of the normal path
    let jne = find(&[0x3e, 0x75]) + 1;
    let bt_imm = find(&[0x0f, 0xba, 0x25]) + 7;
    let rsp_check = find(&[0x3e, 0x48, 0x39, 0xe1]) + 4; // cmp rcx, rsp ; jne
    let cr3 = find(&[0x0f, 0x20, 0xd8]); // mov rax, cr3
    let cr3_jb = find(&[0x3e, 0x72]) + 1; // jb invalid, after the window compare
    type Mutation = Box<dyn Fn(&mut [u8; PAGE_BYTES])>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "IF check skipped (JC to the next instruction)",
            Box::new(move |p| p[jc + 1] = 0),
            "off the validated path",
        ),
        (
            "re-check skipped (JNE to the next instruction)",
            Box::new(move |p| p[jne + 1] = 0),
            "branch on a secret with both sides alive",
        ),
        (
            "RSP check after PUSHFQ skipped (JNE to the next instruction)",
            Box::new(move |p| p[rsp_check + 1] = 0),
            "after PUSHF stored RFLAGS through the guest's RSP",
        ),
        (
            "a stray PUSHFQ; LEA ECX, [RAX+1]; VMFUNC (the image in list[1])",
            Box::new(|p| {
                p[0xb00..0xb0a]
                    .copy_from_slice(&[0x9c, 0x8d, 0x48, 0x01, 0x0f, 0x01, 0xd4, 0x3e, 0x0f, 0x0b])
            }),
            "VMFUNC after PUSHF stored RFLAGS through the guest's RSP",
        ),
        (
            "a stray PUSHFQ; MOV ECX, 2; XOR EAX, EAX; VMFUNC (the image in list[2])",
            Box::new(|p| {
                p[0xb40..0xb4d].copy_from_slice(&[
                    0x9c, 0xb9, 0x02, 0x00, 0x00, 0x00, 0x31, 0xc0, 0x0f, 0x01, 0xd4, 0x0f, 0x0b,
                ])
            }),
            "VMFUNC after PUSHF stored RFLAGS through the guest's RSP",
        ),
        (
            "the slot check as CMP ECX, ESP (32 bits)",
            Box::new(move |p| {
                p[rsp_check - 4..rsp_check].copy_from_slice(&[0x3e, 0x3e, 0x39, 0xe1])
            }),
            "after PUSHF stored RFLAGS through the guest's RSP",
        ),
        (
            "BT bit offset 9 instead of 233 (FF 09 decrements [rcx])",
            Box::new(move |p| p[bt_imm] = 9),
            "store through an address the guest chooses",
        ),
        (
            "CR3 check skipped (JB to the next instruction)",
            Box::new(move |p| p[cr3_jb + 1] = 0),
            "off the validated path",
        ),
        (
            "CR3 taken as 0 in the supervisor page (the user page's bytes)",
            Box::new(move |p| p[cr3..cr3 + 3].copy_from_slice(&[0x29, 0xc0, 0xfc])),
            "off the validated path",
        ),
        (
            "a stray MOV [RDI], RAX in the fill",
            Box::new(|p| p[0x800..0x803].copy_from_slice(&[0x48, 0x89, 0x07])),
            "store through an address the guest chooses",
        ),
        (
            "a stray VMFUNC in the fill after a store of RAX to list[1]",
            Box::new(|p| {
                // mov [rip+list1], rax ; vmfunc
                let at = 0x900usize;
                let disp = (LIST1 as i64 - (CODE as i64 + at as i64 + 7)) as i32;
                p[at..at + 3].copy_from_slice(&[0x48, 0x89, 0x05]);
                p[at + 3..at + 7].copy_from_slice(&disp.to_le_bytes());
                p[at + 7..at + 10].copy_from_slice(&gate::VMFUNC);
            }),
            "list[1]",
        ),
        (
            "a stray MOV RDX, [gate data]; OUT DX, AL in the fill (the sub EPTP as a port)",
            Box::new(|p| {
                let at = 0x980usize;
                let disp = (GDATA as i64 - (CODE as i64 + at as i64 + 7)) as i32;
                p[at..at + 3].copy_from_slice(&[0x48, 0x8b, 0x15]);
                p[at + 3..at + 7].copy_from_slice(&disp.to_le_bytes());
                p[at + 7] = 0xee; // out dx, al
            }),
            "exit with a secret in DX",
        ),
        (
            "a stray MOV CR3, RAX in the fill (a CR3 of the guest's after the check)",
            Box::new(|p| p[0xa40..0xa43].copy_from_slice(&[0x0f, 0x22, 0xd8])),
            "system state written in the Gate view",
        ),
        (
            "a stray WRMSR in the fill",
            Box::new(|p| p[0xa60..0xa62].copy_from_slice(&[0x0f, 0x30])),
            "system state written in the Gate view",
        ),
        (
            "a stray LEAVE before a VMFUNC (loads secret memory into RBP)",
            Box::new(|p| p[0xa00..0xa06].copy_from_slice(&[0xc9, 0x31, 0xc0, 0x0f, 0x01, 0xd4])),
            "return to the default view with r",
        ),
    ];
    for (what, mutate, expect) in cases {
        let mut page = good.clone();
        mutate(&mut page);
        let mut m = Machine::with_gate(Mode::Landing, &[0xc3], page, CallerPrivilege::Supervisor);
        let v = violations(&mut m);
        println!("{what}: {} violation(s), first {:?}", v.len(), v.first());
        assert!(
            v.iter().any(|(_, f)| f.contains(expect)),
            "{what}: expected a violation containing {expect:?}, got {v:?}"
        );
    }
}

/// The slot check's refinement (RSP is the slot on the equal side) holds only until RSP is
/// written: a landing on `LEA RCX, [slot]; CMP RCX, RSP; MOV RSP, RDX; JNE; PUSH RAX` must
/// be reported from that offset (the push goes through the guest's RDX), not taken for a
/// push to the gate stack.
#[test]
fn slot_check_forgets_a_written_rsp() {
    let mut page = Box::new([0xccu8; PAGE_BYTES]);
    let at = 0xc00usize;
    let disp = (SLOT as i64 - (CODE as i64 + at as i64 + 7)) as i32;
    page[at..at + 3].copy_from_slice(&[0x48, 0x8d, 0x0d]); // lea rcx, [slot]
    page[at + 3..at + 7].copy_from_slice(&disp.to_le_bytes());
    page[at + 7..at + 25].copy_from_slice(&[
        0x48, 0x39, 0xe1, // cmp rcx, rsp
        0x48, 0x89, 0xd4, // mov rsp, rdx
        0x75, 0x08, // jne ud2
        0x50, // push rax
        0x31, 0xc0, 0x31, 0xc9, // xor eax, eax ; xor ecx, ecx
        0x0f, 0x01, 0xd4, // vmfunc
        0x0f, 0x0b, // ud2
    ]);
    let mut m = Machine::with_gate(Mode::Landing, &[0xc3], page, CallerPrivilege::Supervisor);
    let outs = m.explore(landing_state(at));
    assert!(
        outs.iter()
            .any(|o| matches!(o, Out::Fail(f) if f.contains("store through an address the guest chooses"))),
        "{outs:?}"
    );
}

fn print_trace(m: &Machine) {
    for (view, rip, text) in &m.trace {
        let (page, off) = if *view == View::Sub && in_range(*rip, SVC, 0x1000) {
            ("service", rip - SVC)
        } else {
            ("G", rip - G)
        };
        println!("  {:>7} {page}+{off:#06x}  {text}", format!("{view:?}"));
    }
}

fn check_scrubbed(st: &St, ret: V) {
    assert_eq!(st.r[RAX], ret, "rax");
    assert_eq!(st.r[RDX], ret, "rdx");
    for i in [1usize, 6, 7, 8, 9, 10, 11] {
        assert_eq!(st.r[i], V::K(0), "{} is not zeroed", REG_NAMES[i]);
    }
    for i in [3usize, 5, 12, 13, 14, 15] {
        assert_eq!(
            st.r[i],
            V::Sym(i as u8),
            "{} is not preserved",
            REG_NAMES[i]
        );
    }
    assert_eq!(st.r[RSP], V::K(GUEST_RSP), "rsp");
    assert_eq!(st.fl, Fl::K, "flags are not normalised");
    assert!(!st.ext_secret);
    assert_eq!(st.l1, L1_ZERO, "list[1] is not 0");
    assert_eq!(st.view, View::Default);
}

/// The whole call with an empty service (`RET`): every instruction, counted.
#[test]
fn round_trip() {
    let mut m = Machine::new(Mode::Trace { if_set: false }, &[0xc3]);
    let out = m.run(call_state());
    println!("round trip with an empty service (caller: MOV ECX, 511 ; CALL entry, not shown):");
    print_trace(&m);
    assert_eq!(out, Out::Done);
    let count = |v: View| m.trace.iter().filter(|t| t.0 == v).count();
    let in_service = m
        .trace
        .iter()
        .filter(|t| t.0 == View::Sub && in_range(t.1, SVC, 0x1000))
        .count();
    let caller = 2;
    let total = caller + m.trace.len();
    println!(
        "instructions: caller {caller}, guest stubs {}, gate {}, sub {}, service {in_service}; total {total}",
        count(View::Default),
        count(View::Gate),
        count(View::Sub) - in_service,
    );
    let vmfuncs = m.trace.iter().filter(|t| t.2 == "vmfunc").count();
    assert_eq!(vmfuncs, 3);
    assert!(total <= 60, "round trip of {total} instructions");
    assert_eq!(total, 56, "update gate-protocol.rst when the count changes");
    let st = m.done.clone().expect("final state");
    // The empty service leaves RAX as the sub code set it: 0.
    check_scrubbed(&st, V::K(0));
}

/// A supervisor grant's service runs with the empty IDT, so that nothing it raises can be
/// delivered through descriptors the guest placed in a region; the guest has its own IDT
/// back when the call returns. A user grant's sub code leaves the IDT alone (`LIDT` at CPL
/// 3 faults; SMAP makes any delivery from its views fault): the same offsets hold NOPs.
#[test]
fn service_runs_with_an_empty_idt() {
    for (privilege, in_service) in [
        (CallerPrivilege::Supervisor, Idt::Empty),
        (CallerPrivilege::User, Idt::Guest),
    ] {
        let svc = [0x53, 0x55, 0x41, 0x54, 0x41, 0x5c, 0x5d, 0x5b, 0xc3];
        let mut m = Machine::for_privilege(Mode::Trace { if_set: false }, &svc, privilege);
        let mut seen = 0;
        let out = m.run_observed(call_state(), |st| {
            if st.view == View::Sub && in_range(st.rip, SVC, 0x1000) {
                assert_eq!(st.idt, in_service, "{privilege:?} at service {:#x}", st.rip);
                seen += 1;
            }
        });
        assert_eq!(out, Out::Done, "{privilege:?}");
        assert_eq!(seen, svc.len() - 2, "{privilege:?}: service steps");
        let st = m.done.clone().expect("final state");
        assert_eq!(
            st.idt,
            Idt::Guest,
            "{privilege:?}: the guest's IDT after the call"
        );
        // The round trip's 56 (the user gate's `SUB EAX, EAX; CLD` for `MOV RAX, CR3`: one
        // more), with 6 more instructions of this service.
        let round_trip = match privilege {
            CallerPrivilege::Supervisor => 56,
            CallerPrivilege::User => 57,
        };
        assert_eq!(m.trace.len() + 2, round_trip + 6, "{privilege:?}: length");
    }
}

/// The module's fail-back (`Interrupted::caller_rsp`, gate-protocol section 7) finds the
/// caller's `RSP` before every instruction of a call whose service uses its stack: an
/// exit may interrupt the excursion anywhere in the gate, the sub code or the service. And
/// it gives the guest its IDT back exactly where the sub code had emptied it
/// (`Interrupted::guest_idtr`), from the slot where the sub entry saved it.
#[test]
fn fail_back_finds_the_caller_rsp_everywhere() {
    for privilege in [CallerPrivilege::Supervisor, CallerPrivilege::User] {
        fail_back_everywhere(privilege);
    }
}

fn fail_back_everywhere(privilege: CallerPrivilege) {
    const R11: usize = 11;
    const UNKNOWN: u64 = 0xdead_dead_dead_0000;
    // push rbx ; push rbp ; push r12 ; pop r12 ; pop rbp ; pop rbx ; ret
    let svc = [0x53, 0x55, 0x41, 0x54, 0x41, 0x5c, 0x5d, 0x5b, 0xc3];
    let mut m = Machine::for_privilege(Mode::Trace { if_set: false }, &svc, privilege);
    let mut checked = 0;
    let mut emptied = 0;
    let saved_idtr = gate::Idtr {
        base: 0xffff_fe00_0000_0000,
        limit: 0xfff,
    };
    let out = m.run_observed(call_state(), |st| {
        let view = match st.view {
            View::Gate => gate::ExcursionView::Gate,
            View::Sub => gate::ExcursionView::Sub,
            View::Default => return,
        };
        let k = |v: V| if let V::K(x) = v { x } else { UNKNOWN };
        let at = gate::Interrupted {
            view,
            g: G,
            rip: st.rip,
            rsp: k(st.r[RSP]),
            r11: k(st.r[R11]),
            rflags: 0x46,
            saved_rsp: st
                .mem
                .get(&(SUB_TOP - gate::SUB_RSP_SLOT))
                .copied()
                .map_or(UNKNOWN, k),
            privilege,
            saved_idtr,
        };
        let fb = at.fail_back(gate::ERR_INTERRUPTED);
        let at_rip = format!("{privilege:?}, {:?} at {:#x}", st.view, st.rip);
        assert_eq!(fb.rsp, GUEST_RSP, "{at_rip}");
        assert_eq!(fb.rip, G + 0x2000);
        assert_eq!(fb.rflags, 0x2);
        for i in 0..16 {
            let want = match i {
                RDX => gate::ERR_INTERRUPTED as u64,
                RSP => GUEST_RSP,
                _ => 0,
            };
            assert_eq!(fb.gpr(i), want, "register {i}");
        }
        match st.idt {
            Idt::Guest => assert_eq!(fb.idtr, None, "{at_rip}: the IDT is the guest's"),
            Idt::Empty => {
                assert_eq!(fb.idtr, Some(saved_idtr), "{at_rip}: the IDT is empty");
                assert_eq!(
                    st.idtr_saved,
                    Some(SUB_TOP - gate::SUB_IDTR_SLOT),
                    "{at_rip}: the slot holds the guest's IDT register"
                );
                emptied += 1;
            }
            Idt::Other => panic!("{at_rip}: IDT of no known kind"),
        }
        checked += 1;
    });
    assert_eq!(out, Out::Done);
    // The gate's 24 instructions (the user gate's 25), the sub code's 24 and the
    // service's 7.
    let gate = match privilege {
        CallerPrivilege::Supervisor => 24,
        CallerPrivilege::User => 25,
    };
    assert_eq!(checked, gate + 24 + 7, "{privilege:?}: steps checked");
    // After the sub entry's LIDT: its last 4 and JMP, the service's 7, and the exit up to
    // and including its LIDT (10).
    let want = match privilege {
        CallerPrivilege::Supervisor => 4 + 1 + 7 + 10,
        CallerPrivilege::User => 0,
    };
    assert_eq!(emptied, want, "{privilege:?}: steps with the IDT emptied");
}

/// A broken excursion (a synchronous exit in a view) leaves nothing of the view, at every
/// instruction of a call: all registers 0, `RFLAGS` 0x2, and `RIP` at the guest's exit
/// stub, or where it was when the gate is unknown.
#[test]
fn broken_excursion_leaves_nothing_everywhere() {
    let svc = [0x53, 0x55, 0x41, 0x54, 0x41, 0x5c, 0x5d, 0x5b, 0xc3];
    let mut m = Machine::new(Mode::Trace { if_set: false }, &svc);
    let mut checked = 0;
    let out = m.run_observed(call_state(), |st| {
        if matches!(st.view, View::Default) {
            return;
        }
        let fb = gate::FailBack::broken(Some(G), st.rip, None);
        assert_eq!(fb.rip, G + 0x2000, "{:?} at {:#x}", st.view, st.rip);
        assert_eq!(fb.rflags, 0x2);
        assert!(
            (0..16).all(|i| fb.gpr(i) == 0),
            "registers at {:#x}",
            st.rip
        );
        assert_eq!(gate::FailBack::broken(None, st.rip, None).rip, st.rip);
        checked += 1;
    });
    assert_eq!(out, Out::Done);
    assert_eq!(checked, 24 + 24 + 7, "steps checked");
}

/// A supervisor grant's gate refuses to switch while `CR3` names a page of the trusted
/// window, whatever its PCID or its bits above 51: `list[1]` is cleared and the gate ends
/// in `UD2` before any instruction of the sub view. A user grant's gate cannot read `CR3`
/// and takes 0 for it (its gates open only without PCIDs: `gates_may_open`).
#[test]
fn a_cr3_in_the_trusted_window_is_refused() {
    let page = |pfn: u64| pfn << 12;
    for (cr3, in_window) in [
        (GUEST_CR3, false),
        (page(WINDOW_PFN), true),
        (page(WINDOW_PFN) | 0xfff, true),
        (page(WINDOW_PFN + WINDOW_PAGES - 1) | 0x18, true),
        (page(WINDOW_PFN) | 0xfff << 52, true),
        // Bits 51:48, legal in CR3 on a CPU with 52 physical-address bits, are ignored by
        // the views' 4-level walks: the page is still the window's.
        (page(WINDOW_PFN) | 1 << 48, true),
        (page(WINDOW_PFN + WINDOW_PAGES - 1) | 0xf << 48 | 0x18, true),
        (page(WINDOW_PFN + WINDOW_PAGES) | 0xf << 48, false),
        (page(WINDOW_PFN + WINDOW_PAGES), false),
        (page(WINDOW_PFN - 1) | 0xfff, false),
        (page(WINDOW_PFN + 0x1000_0000), false),
    ] {
        for privilege in [CallerPrivilege::Supervisor, CallerPrivilege::User] {
            let mut m = Machine::for_privilege(Mode::Trace { if_set: false }, &[0xc3], privilege);
            m.cr3 = V::K(cr3);
            let mut last = None;
            let out = m.run_observed(call_state(), |st| last = Some((st.view, st.l1)));
            let sub = m.trace.iter().any(|t| t.0 == View::Sub);
            let what = format!("CR3 {cr3:#x}, {privilege:?}: {out:?}");
            if in_window && privilege == CallerPrivilege::Supervisor {
                assert_eq!(out, Out::Trap("UD0/UD1/UD2"), "{what}");
                assert!(!sub, "{what}");
                assert_eq!(m.trace.last().map(|t| t.2.as_str()), Some("ud2"), "{what}");
                assert_eq!(
                    last,
                    Some((View::Gate, L1_ZERO)),
                    "{what}: list[1] at the UD2"
                );
            } else {
                assert_eq!(out, Out::Done, "{what}");
                assert!(sub, "{what}");
            }
        }
    }
}

/// A service that fills every register it may clobber, and the flags, with sub-view data,
/// and returns a secret: only the return value comes back.
#[test]
fn dirty_service_leaves_no_trace() {
    let mut svc = vec![0x53]; // push rbx
    let disp = (SVC_DATA as i64 - (SVC as i64 + 1 + 7)) as i32;
    svc.extend([0x48, 0x8b, 0x1d]); // mov rbx, [rip+data]
    svc.extend(disp.to_le_bytes());
    for (rex, modrm) in [
        (0x48, 0xd8), // mov rax, rbx
        (0x48, 0xd9), // mov rcx, rbx
        (0x48, 0xda), // mov rdx, rbx
        (0x48, 0xde), // mov rsi, rbx
        (0x48, 0xdf), // mov rdi, rbx
        (0x49, 0xd8), // mov r8, rbx
        (0x49, 0xd9), // mov r9, rbx
        (0x49, 0xda), // mov r10, rbx
        (0x49, 0xdb), // mov r11, rbx
    ] {
        svc.extend([rex, 0x89, modrm]);
    }
    svc.extend([0x48, 0x39, 0xd8]); // cmp rax, rbx      ; flags from secrets
    svc.extend([0x5b, 0xc3]); // pop rbx ; ret
    let mut m = Machine::new(Mode::Trace { if_set: false }, &svc);
    assert_eq!(m.run(call_state()), Out::Done);
    let st = m.done.clone().expect("final state");
    check_scrubbed(&st, V::Ret);
}

/// IF = 1: the gate refuses, nothing of the sub view runs, list[1] is 0 again.
#[test]
fn refusal_with_if_set() {
    let mut m = Machine::new(Mode::Trace { if_set: true }, &[0xc3]);
    assert_eq!(m.run(call_state()), Out::Done);
    print_trace(&m);
    assert!(m.trace.iter().all(|t| t.0 != View::Sub));
    let st = m.done.clone().expect("final state");
    let err = V::K(gate::ERR_IRQ_ENABLED as u64);
    assert_eq!((st.r[RAX], st.r[RDX], st.r[RCX]), (err, err, V::K(0)));
    assert_eq!(st.r[11], V::K(GUEST_RSP), "r11 = rsp");
    assert_eq!(st.r[RSP], V::K(GUEST_RSP));
    for i in [3usize, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15] {
        assert_eq!(
            st.r[i],
            V::Sym(i as u8),
            "{} is not preserved",
            REG_NAMES[i]
        );
    }
    assert_eq!(st.fl, Fl::Zero, "flags of SUB EAX, EAX");
    assert_eq!(st.l1, L1_ZERO);
    println!(
        "refusal: {} instructions (caller's 2 included)",
        m.trace.len() + 2
    );
}

/// The sub page is entered at exactly one offset, the byte after the gate's switching
/// VMFUNC; everything else in it is INT3, and its exit VMFUNC ends the page.
#[test]
fn sub_page_has_one_entry() {
    let mut m = Machine::new(Mode::Trace { if_set: false }, &[0xc3]);
    assert_eq!(m.run(call_state()), Out::Done);
    let switch = gate::GATE_SWITCH_OFFSET;
    assert_eq!(&m.gate_code[switch..switch + 3], &gate::VMFUNC);
    assert_eq!(gate::SUB_ENTRY_OFFSET, switch + 3);
    let sub: Vec<u64> = m
        .trace
        .iter()
        .filter(|t| t.0 == View::Sub && in_range(t.1, CODE, 0x1000))
        .map(|t| t.1 - CODE)
        .collect();
    assert_eq!(sub.first(), Some(&(gate::SUB_ENTRY_OFFSET as u64)));
    assert_eq!(sub.last(), Some(&(gate::EXIT_VMFUNC_OFFSET as u64)));
    // Every byte of the sub page that the traced path does not execute is fill.
    let mut used = [false; PAGE_BYTES];
    for off in &sub {
        let mut d = Decoder::with_ip(
            64,
            &m.sub_code[*off as usize..],
            CODE + off,
            DecoderOptions::NONE,
        );
        let len = d.decode().len();
        used[*off as usize..*off as usize + len].fill(true);
    }
    for (i, b) in m.sub_code.iter().enumerate() {
        assert!(
            used[i] || *b == gate::FILL,
            "sub page byte {i:#x} is neither code nor fill"
        );
    }
    // The gate's tail and the sub exit both end the page with VMFUNC, so both return to
    // G + 0x2000; the guest's entry VMFUNC ends page G.
    for page in [&m.gate_code, &m.sub_code, &m.guest[0]] {
        assert_eq!(&page[PAGE_BYTES - 3..], &gate::VMFUNC);
    }
    let mut d = Decoder::with_ip(
        64,
        &m.guest[0][gate::GUEST_ENTRY_OFFSET..],
        0,
        DecoderOptions::NONE,
    );
    assert_eq!(d.decode().mnemonic(), Mnemonic::Endbr64);
    assert_eq!(d.decode().mnemonic(), Mnemonic::Xor);
    let vmfunc = d.decode();
    assert_eq!(
        (vmfunc.mnemonic(), vmfunc.next_ip() as usize),
        (Mnemonic::Vmfunc, 9)
    );
    let mut d = Decoder::with_ip(
        64,
        &m.gate_code[gate::GATE_TAIL_OFFSET..],
        0,
        DecoderOptions::NONE,
    );
    let mut last = Instruction::default();
    while d.can_decode() {
        last = d.decode();
    }
    assert_eq!(last.mnemonic(), Mnemonic::Vmfunc);
}
