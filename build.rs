//! Embeds the package version and the git revision the binary was built
//! from, and generates the seccomp tables for the target architecture:
//! the system call numbers (src/sys/seccomp/syscalls.txt), the default
//! filter's lists (src/sys/seccomp/default.txt) and that filter compiled
//! to BPF, as Rust source in OUT_DIR that src/sys/seccomp.rs includes.
//! Linked with rust-lld, the binary's functions are ordered by
//! cross/daemon-order.txt (see `link_order`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::{env, fs};

#[allow(dead_code)]
#[path = "src/sys/seccomp/compile.rs"]
mod compile;

use compile::{Action, Arch};

const SYSCALLS: &str = "src/sys/seccomp/syscalls.txt";
const DEFAULT: &str = "src/sys/seccomp/default.txt";
const ORDER: &str = "cross/daemon-order.txt";

fn main() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BERTH_GIT_REV={rev}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");

    for file in [SYSCALLS, DEFAULT, "src/sys/seccomp/compile.rs"] {
        println!("cargo:rerun-if-changed={file}");
    }
    if let Err(e) = seccomp() {
        panic!("{e}");
    }
    if let Err(e) = link_order() {
        panic!("{e}");
    }
}

/// When the linker is rust-lld (cross/build), places the functions named
/// in ORDER together at the end of the text, in its order: the kernel maps
/// a binary's text 64 KiB around each page fault, so the daemon's code
/// packed together keeps few pages resident. A name there is a section of
/// one function (`.text.NAME`, or `.text.unlikely.NAME` for a cold one:
/// rustc and musl put each function in its own), `*` for any hash; a name
/// matching no function costs memory, never the build (cross/record-order
/// rewrites the list). A linker script of one output section inserted
/// after `.text`: the rest of the layout is lld's default.
fn link_order() -> Result<(), String> {
    println!("cargo:rerun-if-changed={ORDER}");
    // RUSTC_LINKER comes from cargo's own setting, which is what a rerun
    // must follow (cross/build and a plain build share target/).
    let target = env::var("TARGET").unwrap_or_default();
    println!(
        "cargo:rerun-if-env-changed=CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    // cross/record-order's build lays the text out its own way.
    println!("cargo:rerun-if-env-changed=BERTH_LINK_ORDER");
    let linker = env::var("RUSTC_LINKER").unwrap_or_default();
    let is_lld = Path::new(&linker)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("lld"));
    let off = env::var("BERTH_LINK_ORDER").is_ok_and(|v| v == "off");
    if !is_lld || off || !Path::new(ORDER).exists() {
        return Ok(());
    }
    let text = read(ORDER)?;
    let mut script = String::from("SECTIONS {\n  .text.daemon : {\n");
    // Only characters an unquoted pattern of an lld linker script may
    // hold, and no bracket (a glob class): mangled names have no others.
    let plain = |c: char| c.is_ascii_alphanumeric() || "_.$*?".contains(c);
    for (_, name) in lines(&text) {
        if name.chars().all(plain) {
            let _ = writeln!(script, "    *(.text.{name} .text.unlikely.{name})");
        }
    }
    // The sections named just `.text`: the C start-up code and the C
    // library's assembly (memcpy, memset, the signal return), which every
    // process runs.
    script.push_str("    *(.text)\n");
    // And `_init` and `_fini`, which musl's start-up calls: the pieces of
    // crti.o and crtn.o in the order of the command line, as an `.init`
    // of their own would hold them, but here rather than next to the
    // rarely run `.text`.
    script.push_str("    KEEP(*(SORT_NONE(.init)))\n    KEEP(*(SORT_NONE(.fini)))\n");
    // An aligned end: the thread-local `.tbss` that lld places next
    // would otherwise pad the file to the next segment by up to a page
    // (64 KiB on arm).
    script.push_str("    . = ALIGN(64);\n  }\n}\nINSERT AFTER .text;\n");
    let dir = env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let path = Path::new(&dir).join("link-order.ld");
    fs::write(&path, script).map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("cargo:rustc-link-arg-bins=-T{}", path.display());
    Ok(())
}

/// One line of syscalls.txt: a name and its number on each of `Arch::ALL`.
type Numbers = BTreeMap<String, [Option<u32>; 3]>;

/// The default filter's lists: (capabilities, any of which allows the
/// names; empty for always) and the names refused whatever the
/// capabilities.
struct DefaultLists {
    groups: Vec<(Vec<u32>, Vec<String>)>,
    never: Vec<String>,
}

fn seccomp() -> Result<(), String> {
    let arch = target_arch()?;
    let numbers = read_numbers(&read(SYSCALLS)?)?;
    let default = read_default(&read(DEFAULT)?, &numbers)?;
    let column = Arch::ALL.iter().position(|a| *a == arch).unwrap_or(0);
    let number = |name: &str| numbers.get(name).and_then(|n| n[column]);

    let checked = compile::Checked::find(number);
    let always = default
        .groups
        .iter()
        .filter(|(caps, _)| caps.is_empty())
        .flat_map(|(_, names)| names.iter())
        .filter_map(|name| number(name));
    let rules = compile::rules(always, 0, checked);
    let program = compile::compile(arch, &rules, Action::Errno(compile::EPERM));
    if program.len() > compile::MAX_INSNS {
        return Err(format!(
            "the default filter has {} instructions",
            program.len()
        ));
    }

    // Tables of numbers and one string, which need no relocations in a
    // position-independent binary (a table of &str needs one per entry).
    let mut out = String::new();
    let _ = writeln!(out, "/// The architecture this build filters for.");
    let _ = writeln!(out, "pub const ARCH: Arch = Arch::{arch:?};");
    let names: Vec<&str> = numbers.keys().map(String::as_str).collect();
    let _ = writeln!(
        out,
        "/// Every system call berth knows, by name, sorted and joined."
    );
    let _ = writeln!(out, "const NAMES: &str = {:?};", names.concat());
    let mut end = 0;
    let ends: Vec<usize> = names
        .iter()
        .map(|n| {
            end += n.len();
            end
        })
        .collect();
    if end > usize::from(u16::MAX) {
        return Err("the names of the system calls are too long for u16 offsets".into());
    }
    let _ = writeln!(out, "/// Where each name of NAMES ends.");
    let _ = writeln!(out, "const NAME_ENDS: [u16; {}] = {ends:?};", ends.len());
    let on_arch: Vec<u32> = numbers
        .values()
        .map(|n| n[column].unwrap_or(u32::MAX))
        .collect();
    let _ = writeln!(
        out,
        "/// Each name's number on ARCH, NONE where it has none."
    );
    let _ = writeln!(
        out,
        "const NUMBERS: [u32; {}] = {on_arch:?};",
        on_arch.len()
    );
    let _ = writeln!(
        out,
        "/// The default filter's allowed calls on ARCH: each group's calls are allowed\n\
         /// when the capability set holds one of its capabilities (always, if none)."
    );
    let _ = writeln!(out, "const DEFAULT_GROUPS: &[Group] = &[");
    for (caps, names) in &default.groups {
        let mask = caps.iter().fold(0u64, |m, c| m | 1 << c);
        let calls: Vec<u32> = names.iter().filter_map(|n| number(n)).collect();
        let _ = writeln!(out, "    Group {{ caps: {mask:#x}, calls: &{calls:?} }},");
    }
    let _ = writeln!(out, "];");
    let _ = writeln!(
        out,
        "/// The default filter for a capability set without any of the groups'\n\
         /// capabilities, compiled at build time."
    );
    let _ = writeln!(out, "const DEFAULT_PROGRAM: &[Insn] = &[");
    for i in &program {
        let _ = writeln!(
            out,
            "    Insn {{ code: {:#06x}, jt: {}, jf: {}, k: {:#x} }},",
            i.code, i.jt, i.jf, i.k
        );
    }
    let _ = writeln!(out, "];");

    // For the tests: every architecture's numbers, and the lists by name.
    let mut all = String::new();
    let _ = writeln!(all, "/// Every system call's number on each of Arch::ALL.");
    let _ = writeln!(all, "const ALL_ARCHES: &[(&str, [Option<u32>; 3])] = &[");
    for (name, n) in &numbers {
        let _ = writeln!(all, "    ({name:?}, {n:?}),");
    }
    let _ = writeln!(all, "];");
    let _ = writeln!(
        all,
        "/// The default filter's groups: (capabilities mask, names)."
    );
    let _ = writeln!(all, "const DEFAULT_GROUP_NAMES: &[(u64, &[&str])] = &[");
    for (caps, names) in &default.groups {
        let mask = caps.iter().fold(0u64, |m, c| m | 1 << c);
        let _ = writeln!(all, "    ({mask:#x}, &{names:?}),");
    }
    let _ = writeln!(all, "];");
    let _ = writeln!(
        all,
        "/// Calls the default filter refuses whatever the capabilities."
    );
    let _ = writeln!(all, "const DEFAULT_NEVER: &[&str] = &{:?};", default.never);

    let dir = env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    for (file, text) in [("seccomp.rs", out), ("seccomp_arches.rs", all)] {
        let path = Path::new(&dir).join(file);
        fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The architecture of the build's target, which must be one the tables
/// cover, little-endian, and for 32-bit arm the EABI.
fn target_arch() -> Result<Arch, String> {
    let var = |name: &str| env::var(name).unwrap_or_default();
    let name = var("CARGO_CFG_TARGET_ARCH");
    let arch = Arch::ALL
        .into_iter()
        .find(|a| a.name() == name)
        .ok_or_else(|| {
            format!(
                "no system call table for target_arch {name:?}: berth's seccomp filter knows \
                 x86_64, aarch64 and arm (add a column to {SYSCALLS})"
            )
        })?;
    if var("CARGO_CFG_TARGET_ENDIAN") != "little" {
        return Err(format!("{name}: only little-endian targets are supported"));
    }
    let target = var("TARGET");
    if arch == Arch::Arm && !target.contains("eabi") {
        return Err(format!(
            "{target}: the arm system call table is the EABI's, and this target is not EABI"
        ));
    }
    Ok(arch)
}

fn read(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))
}

/// The lines of `text` without comments and blank lines, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
}

fn read_numbers(text: &str) -> Result<Numbers, String> {
    let mut numbers = Numbers::new();
    let mut seen: [BTreeMap<u32, String>; 3] = Default::default();
    for (line, l) in lines(text) {
        let err = |what: String| format!("{SYSCALLS}:{line}: {what}");
        let fields: Vec<&str> = l.split_whitespace().collect();
        let [name, columns @ ..] = fields.as_slice() else {
            continue;
        };
        if columns.len() != 3 {
            return Err(err(format!("want a name and 3 numbers, found {l:?}")));
        }
        let mut n = [None; 3];
        for (i, field) in columns.iter().enumerate() {
            n[i] = match *field {
                "-" => None,
                hex if hex.starts_with("0x") => Some(
                    u32::from_str_radix(&hex[2..], 16).map_err(|e| err(format!("{hex}: {e}")))?,
                ),
                dec => Some(dec.parse().map_err(|e| err(format!("{dec}: {e}")))?),
            };
            if let Some(nr) = n[i]
                && let Some(other) = seen[i].insert(nr, name.to_string())
            {
                return Err(err(format!(
                    "{name} and {other} have the same number {nr} on {}",
                    Arch::ALL[i].name()
                )));
            }
        }
        if numbers.insert(name.to_string(), n).is_some() {
            return Err(err(format!("{name} is listed twice")));
        }
    }
    Ok(numbers)
}

/// Capabilities the default filter's groups may name (linux/capability.h).
const CAPS: &[(&str, u32)] = &[
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_SYSLOG", 34),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];

/// Reads default.txt; every call of syscalls.txt must be in exactly one
/// group or in `@never`, so a call added to the table is a decision.
fn read_default(text: &str, numbers: &Numbers) -> Result<DefaultLists, String> {
    let mut groups: Vec<(Vec<u32>, Vec<String>)> = Vec::new();
    let mut never = Vec::new();
    let mut in_never = false;
    let mut placed = BTreeSet::new();
    for (line, l) in lines(text) {
        let err = |what: String| format!("{DEFAULT}:{line}: {what}");
        if let Some(header) = l.strip_prefix('@') {
            in_never = header == "never";
            if in_never {
                continue;
            }
            let caps = if header == "always" {
                Vec::new()
            } else {
                header
                    .split_whitespace()
                    .map(|c| {
                        CAPS.iter()
                            .find(|(n, _)| *n == c)
                            .map(|(_, v)| *v)
                            .ok_or_else(|| err(format!("unknown capability {c}")))
                    })
                    .collect::<Result<_, _>>()?
            };
            groups.push((caps, Vec::new()));
            continue;
        }
        for name in l.split_whitespace() {
            if !numbers.contains_key(name) {
                return Err(err(format!("{name} is not in {SYSCALLS}")));
            }
            if !placed.insert(name.to_string()) {
                return Err(err(format!("{name} is listed twice")));
            }
            match groups.last_mut() {
                _ if in_never => never.push(name.to_string()),
                Some((_, names)) => names.push(name.to_string()),
                None => return Err(err(format!("{name} comes before any @ line"))),
            }
        }
    }
    let missing: Vec<&str> = numbers
        .keys()
        .filter(|n| !placed.contains(*n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{DEFAULT}: every call of {SYSCALLS} must be allowed or under @never; missing: {}",
            missing.join(" ")
        ));
    }
    Ok(DefaultLists { groups, never })
}
