//! Compiling a seccomp filter: which system calls a container may make,
//! as a classic BPF program over the kernel's `struct seccomp_data`.
//!
//! Pure code with no dependencies, shared by the build script (which
//! compiles the default filter for the target architecture at build time)
//! and by berth (which compiles profiles, and the default filter for a
//! capability set that changes it).
//!
//! The program first checks the architecture (another one, or x86_64's
//! x32 ABI, is killed: its numbers mean other calls), then finds the call
//! number in a binary search over ranges of numbers that share an answer,
//! so a call costs a handful of comparisons whatever the size of the list.
//! A few calls have their first argument checked (see [`rules`]).

use std::collections::BTreeMap;

/// One BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The most instructions the kernel takes (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

// Instruction classes and modes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const JMP_JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Offsets in struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6].
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// The low 32 bits of args[0] (the architectures here are little-endian).
const OFF_ARG0_LO: u32 = 16;

// Return values (linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// x86_64 marks x32 calls with this bit in the number (__X32_SYSCALL_BIT).
const X32_BIT: u32 = 0x4000_0000;

pub const EPERM: u16 = 1;
pub const ENOSYS: u16 = 38;

/// Capability numbers the rules look at (linux/capability.h).
pub const CAP_SYS_ADMIN: u32 = 21;

/// The namespace flags of clone(2): CLONE_NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET. (CLONE_NEWTIME, 0x80, shares its bit
/// with the exit signal in clone's flags: clone cannot ask for it.)
pub const CLONE_NAMESPACES: u32 = 0x7e02_0000;
/// The namespace flags of unshare(2): clone's and CLONE_NEWTIME.
pub const UNSHARE_NAMESPACES: u32 = CLONE_NAMESPACES | 0x80;

/// personality(2) values allowed: PER_LINUX, PER_LINUX32, either with
/// UNAME26, and 0xffffffff, which only asks for the current persona.
pub const PERSONAS: &[u32] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// An architecture berth filters for, and how the kernel names it in
/// `seccomp_data.arch` (linux/audit.h: EM_* | __AUDIT_ARCH_64BIT |
/// __AUDIT_ARCH_LE).
// A build uses one of them; build.rs and the tests use them all.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    /// 32-bit arm, EABI (the kernel has no seccomp filters with the OABI
    /// compatibility layer).
    Arm,
}

#[allow(dead_code)]
impl Arch {
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::Aarch64, Arch::Arm];

    pub const fn audit(self) -> u32 {
        match self {
            Arch::X86_64 => 0xc000_003e,  // EM_X86_64 (62)
            Arch::Aarch64 => 0xc000_00b7, // EM_AARCH64 (183)
            Arch::Arm => 0x4000_0028,     // EM_ARM (40), 32-bit
        }
    }

    /// Its name as Cargo's `target_arch` spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Arm => "arm",
        }
    }
}

/// What the filter answers a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// Fail the call with this errno.
    Errno(u16),
    /// Kill the whole process (SIGSYS).
    Kill,
    /// Allow it and log it (the kernel's audit log or its ring buffer).
    Log,
}

impl Action {
    /// The filter's return value for it.
    pub const fn ret(self) -> u32 {
        match self {
            Action::Allow => RET_ALLOW,
            Action::Errno(e) => RET_ERRNO | (e as u32 & 0xfff),
            Action::Kill => RET_KILL_PROCESS,
            Action::Log => RET_LOG,
        }
    }
}

/// Calls of the default filter (their numbers) allowed when the
/// capability set holds one of `caps` (a mask; always, if 0).
#[derive(Debug)]
pub struct Group {
    pub caps: u64,
    pub calls: &'static [u32],
}

/// What the filter does with one call number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Always(Action),
    /// Allowed unless the first argument has a bit of `mask` set; then
    /// `deny`.
    UnlessArg0Has {
        mask: u32,
        deny: Action,
    },
    /// Allowed if the first argument is one of `values`; else `deny`.
    Arg0In {
        values: &'static [u32],
        deny: Action,
    },
}

/// The numbers, on the architecture compiled for, of the calls whose
/// arguments berth checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked {
    pub clone: Option<u32>,
    pub clone3: Option<u32>,
    pub unshare: Option<u32>,
    pub personality: Option<u32>,
}

impl Checked {
    /// Finds them with `number`, a call's number by name.
    pub fn find(number: impl Fn(&str) -> Option<u32>) -> Checked {
        Checked {
            clone: number("clone"),
            clone3: number("clone3"),
            unshare: number("unshare"),
            personality: number("personality"),
        }
    }
}

/// The rules of a filter that allows the calls `allowed` (numbers on the
/// architecture compiled for) and gives every other call the default
/// answer, with berth's argument checks wherever the calls are allowed.
/// Without CAP_SYS_ADMIN in `caps` (a mask, bit N for capability N): clone
/// and unshare asking for a new namespace fail with EPERM, and clone3
/// fails with ENOSYS, allowed or not, so that the C library falls back to
/// clone. personality only takes [`PERSONAS`].
pub fn rules(
    allowed: impl IntoIterator<Item = u32>,
    caps: u64,
    checked: Checked,
) -> BTreeMap<u32, Rule> {
    let admin = caps & (1 << CAP_SYS_ADMIN) != 0;
    let eperm = Action::Errno(EPERM);
    let mut rules = BTreeMap::new();
    for nr in allowed {
        let rule = if Some(nr) == checked.clone && !admin {
            Rule::UnlessArg0Has {
                mask: CLONE_NAMESPACES,
                deny: eperm,
            }
        } else if Some(nr) == checked.unshare && !admin {
            Rule::UnlessArg0Has {
                mask: UNSHARE_NAMESPACES,
                deny: eperm,
            }
        } else if Some(nr) == checked.personality {
            Rule::Arg0In {
                values: PERSONAS,
                deny: eperm,
            }
        } else {
            Rule::Always(Action::Allow)
        };
        rules.insert(nr, rule);
    }
    if !admin && let Some(nr) = checked.clone3 {
        rules.insert(nr, Rule::Always(Action::Errno(ENOSYS)));
    }
    rules
}

/// Compiles `rules` for `arch`: calls without a rule get `default`.
pub fn compile(arch: Arch, rules: &BTreeMap<u32, Rule>, default: Action) -> Vec<Insn> {
    let mut out = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JMP_JEQ_K, arch.audit(), 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
    ];
    let mut ranges = ranges(rules, Rule::Always(default));
    if arch == Arch::X86_64 {
        // Numbers with the x32 bit set, and anything above, are killed.
        ranges.retain(|r| r.start < X32_BIT);
        ranges.push(Range {
            start: X32_BIT,
            rule: Rule::Always(Action::Kill),
        });
    }
    tree(&ranges, &mut out);
    out
}

/// Numbers from `start` up to the next range's start share `rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u32,
    rule: Rule,
}

/// Every call number, from 0 to u32::MAX, as ranges sharing a rule.
fn ranges(rules: &BTreeMap<u32, Rule>, default: Rule) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    let mut push = |start: u32, rule: Rule| match out.last() {
        Some(last) if last.rule == rule => {}
        _ => out.push(Range { start, rule }),
    };
    let mut next = 0u32;
    for (&nr, &rule) in rules {
        if nr > next {
            push(next, default);
        }
        push(nr, rule);
        next = nr.saturating_add(1);
    }
    if rules.keys().next_back().is_none_or(|&last| last < u32::MAX) {
        push(next, default);
    }
    out
}

/// Appends a binary search over `ranges` (A holds the call number): at
/// each node, numbers at or above the middle range's start go right.
fn tree(ranges: &[Range], out: &mut Vec<Insn>) {
    let [first, rest @ ..] = ranges else {
        return;
    };
    if rest.is_empty() {
        leaf(first.rule, out);
        return;
    }
    let mid = ranges.len() / 2;
    let (low, high) = ranges.split_at(mid);
    let mut low_code = Vec::new();
    tree(low, &mut low_code);
    match u8::try_from(low_code.len()) {
        Ok(skip) => out.push(jump(JMP_JGE_K, high[0].start, skip, 0)),
        Err(_) => {
            // Too far for a conditional jump: go through an unconditional one.
            out.push(jump(JMP_JGE_K, high[0].start, 0, 1));
            out.push(stmt(JMP_JA, low_code.len() as u32));
        }
    }
    out.extend(low_code);
    tree(high, out);
}

/// The code that answers one range.
fn leaf(rule: Rule, out: &mut Vec<Insn>) {
    match rule {
        Rule::Always(action) => out.push(stmt(RET_K, action.ret())),
        Rule::UnlessArg0Has { mask, deny } => out.extend([
            stmt(LD_W_ABS, OFF_ARG0_LO),
            jump(JMP_JSET_K, mask, 0, 1),
            stmt(RET_K, deny.ret()),
            stmt(RET_K, RET_ALLOW),
        ]),
        Rule::Arg0In { values, deny } => {
            out.push(stmt(LD_W_ABS, OFF_ARG0_LO));
            let n = values.len();
            for (i, &v) in values.iter().enumerate() {
                // On a match, skip the other comparisons and the denial.
                let skip = u8::try_from(n - i).unwrap_or(u8::MAX);
                out.push(jump(JMP_JEQ_K, v, skip, 0));
            }
            out.push(stmt(RET_K, deny.ret()));
            out.push(stmt(RET_K, RET_ALLOW));
        }
    }
}

const fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// Runs `program` over one `seccomp_data` (call number, architecture,
/// first argument) the way the kernel does, for the tests: the
/// instructions `compile` emits, and nothing else, are understood.
#[cfg(test)]
pub fn run(program: &[Insn], nr: u32, arch: u32, arg0: u64) -> Result<u32, String> {
    let mut pc = 0usize;
    let mut a = 0u32;
    loop {
        let insn = program
            .get(pc)
            .ok_or_else(|| format!("ran off the end at {pc}"))?;
        let cond = |taken: bool| pc + 1 + usize::from(if taken { insn.jt } else { insn.jf });
        pc = match insn.code {
            LD_W_ABS => {
                a = match insn.k {
                    OFF_NR => nr,
                    OFF_ARCH => arch,
                    OFF_ARG0_LO => arg0 as u32,
                    k => return Err(format!("load of offset {k} at {pc}")),
                };
                pc + 1
            }
            JMP_JA => pc + 1 + insn.k as usize,
            JMP_JEQ_K => cond(a == insn.k),
            JMP_JGE_K => cond(a >= insn.k),
            JMP_JSET_K => cond(a & insn.k != 0),
            RET_K => return Ok(insn.k),
            code => return Err(format!("unknown instruction {code:#x} at {pc}")),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLONE: u32 = 56;
    const UNSHARE: u32 = 272;
    const CLONE3: u32 = 435;
    const PERSONALITY: u32 = 135;
    const READ: u32 = 0;
    const WRITE: u32 = 1;

    const CHECKED: Checked = Checked {
        clone: Some(CLONE),
        clone3: Some(CLONE3),
        unshare: Some(UNSHARE),
        personality: Some(PERSONALITY),
    };

    fn program(caps: u64, default: Action) -> Vec<Insn> {
        let allowed = [READ, WRITE, CLONE, UNSHARE, PERSONALITY];
        compile(Arch::X86_64, &rules(allowed, caps, CHECKED), default)
    }

    fn answer(p: &[Insn], nr: u32, arg0: u64) -> u32 {
        run(p, nr, Arch::X86_64.audit(), arg0).unwrap()
    }

    const EPERM_RET: u32 = RET_ERRNO | EPERM as u32;

    #[test]
    fn the_architecture_is_checked_first() {
        let p = program(0, Action::Errno(EPERM));
        assert_eq!(p[0], stmt(LD_W_ABS, OFF_ARCH));
        for arch in [Arch::Aarch64.audit(), Arch::Arm.audit(), 0x4000_0003, 0] {
            assert_eq!(run(&p, READ, arch, 0), Ok(RET_KILL_PROCESS), "{arch:#x}");
        }
        assert_eq!(answer(&p, READ, 0), RET_ALLOW);
    }

    #[test]
    fn x32_calls_are_killed() {
        let p = program(0, Action::Errno(EPERM));
        for nr in [X32_BIT, X32_BIT | READ, X32_BIT | 1000, u32::MAX] {
            assert_eq!(answer(&p, nr, 0), RET_KILL_PROCESS, "{nr:#x}");
        }
        // Other architectures have no such bit.
        let rules = rules([READ], 0, CHECKED);
        let arm = compile(Arch::Arm, &rules, Action::Errno(EPERM));
        assert_eq!(run(&arm, X32_BIT, Arch::Arm.audit(), 0), Ok(EPERM_RET));
    }

    #[test]
    fn allowed_calls_pass_and_others_get_the_default() {
        for default in [Action::Errno(EPERM), Action::Kill, Action::Log] {
            let p = program(0, default);
            assert_eq!(answer(&p, READ, 0), RET_ALLOW);
            assert_eq!(answer(&p, WRITE, 0), RET_ALLOW);
            for nr in [2, 55, 57, 271, 273, 434, 436, 1000, X32_BIT - 1] {
                assert_eq!(answer(&p, nr, 0), default.ret(), "{nr}");
            }
        }
    }

    #[test]
    fn namespace_flags_need_cap_sys_admin() {
        let p = program(0, Action::Errno(EPERM));
        let sigchld = 17;
        assert_eq!(answer(&p, CLONE, sigchld), RET_ALLOW, "fork");
        assert_eq!(answer(&p, CLONE, 0x003d_0f00), RET_ALLOW, "a thread");
        for flag in [
            0x0002_0000,
            0x1000_0000,
            0x2000_0000,
            0x4000_0000,
            0x0400_0000,
        ] {
            assert_eq!(answer(&p, CLONE, flag | sigchld), EPERM_RET, "{flag:#x}");
            assert_eq!(answer(&p, UNSHARE, flag), EPERM_RET, "{flag:#x}");
        }
        assert_eq!(answer(&p, UNSHARE, 0x80), EPERM_RET, "CLONE_NEWTIME");
        assert_eq!(answer(&p, UNSHARE, 0x400), RET_ALLOW, "CLONE_FILES");
        assert_eq!(answer(&p, CLONE3, 0), RET_ERRNO | ENOSYS as u32);

        let p = program(1 << CAP_SYS_ADMIN, Action::Errno(EPERM));
        assert_eq!(answer(&p, CLONE, 0x1000_0000 | sigchld), RET_ALLOW);
        assert_eq!(answer(&p, UNSHARE, 0x1000_0000), RET_ALLOW);
        // Not allowed, and with CAP_SYS_ADMIN not turned into ENOSYS.
        assert_eq!(answer(&p, CLONE3, 0), EPERM_RET);
    }

    #[test]
    fn personality_takes_the_usual_personas_only() {
        let p = program(0, Action::Kill);
        for persona in PERSONAS {
            assert_eq!(answer(&p, PERSONALITY, u64::from(*persona)), RET_ALLOW);
        }
        // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC.
        for persona in [0x0004_0000, 0x0040_0000] {
            assert_eq!(answer(&p, PERSONALITY, persona), EPERM_RET);
        }
    }

    #[test]
    fn far_branches_go_through_unconditional_jumps() {
        // Every other number allowed: as many ranges as numbers, so a
        // subtree is longer than a conditional jump reaches.
        let rules = rules((0..2000).step_by(2), 0, Checked::default());
        let p = compile(Arch::Aarch64, &rules, Action::Errno(EPERM));
        assert!(p.len() <= MAX_INSNS, "{}", p.len());
        assert!(p.iter().any(|i| i.code == JMP_JA));
        for nr in 0..2100 {
            let want = if nr < 2000 && nr % 2 == 0 {
                RET_ALLOW
            } else {
                EPERM_RET
            };
            assert_eq!(run(&p, nr, Arch::Aarch64.audit(), 0), Ok(want), "{nr}");
        }
    }

    #[test]
    fn ranges_cover_every_number_once() {
        let mut rules = BTreeMap::new();
        let allow = Rule::Always(Action::Allow);
        for nr in [0, 1, 2, 5, u32::MAX] {
            rules.insert(nr, allow);
        }
        let deny = Rule::Always(Action::Errno(EPERM));
        let got = ranges(&rules, deny);
        let want = [
            (0, allow),
            (3, deny),
            (5, allow),
            (6, deny),
            (u32::MAX, allow),
        ];
        let want: Vec<Range> = want
            .iter()
            .map(|&(start, rule)| Range { start, rule })
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            ranges(&BTreeMap::new(), deny),
            [Range {
                start: 0,
                rule: deny
            }]
        );
    }
}
