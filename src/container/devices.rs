//! A container's device cgroup: which device nodes it may open (read,
//! write) or create (mknod), whatever nodes its rootfs holds.
//!
//! The rules are Docker's defaults (the nodes berth binds into every
//! container's /dev, the terminals, and mknod of any node) plus each device
//! the definition lists, with its own access. They are enforced by both
//! layers the host has: the v1 `devices` controller (everything denied,
//! then each rule allowed) and, on cgroup2, a BPF_CGROUP_DEVICE program
//! built from the same rules and attached to the init's cgroup. On a
//! hybrid host both run and each denies on its own.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::cgroup::{CgroupError, Hierarchy, Placement};
use crate::config::{Device, DeviceAccess};
use crate::errors;
use crate::sys::bpf::{self, Insn, Reg};
use crate::sys::fd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Char,
    Block,
}

/// One allow rule: a type, a major and minor number (None: any) and the
/// access allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: DeviceAccess,
}

const RWM: DeviceAccess = DeviceAccess::ALL;
const MKNOD: DeviceAccess = DeviceAccess {
    read: false,
    write: false,
    mknod: true,
};

const fn char_dev(major: u32, minor: Option<u32>, access: DeviceAccess) -> Rule {
    Rule {
        kind: Kind::Char,
        major: Some(major),
        minor,
        access,
    }
}

/// What every container may use (Docker's defaults): mknod of any node
/// (which needs CAP_MKNOD, not in the default set), /dev/null, zero, full,
/// random, urandom, tty, ptmx and the pseudo-terminals of /dev/pts.
pub const DEFAULT_RULES: &[Rule] = &[
    Rule {
        kind: Kind::Char,
        major: None,
        minor: None,
        access: MKNOD,
    },
    Rule {
        kind: Kind::Block,
        major: None,
        minor: None,
        access: MKNOD,
    },
    char_dev(1, Some(3), RWM), // null
    char_dev(1, Some(5), RWM), // zero
    char_dev(1, Some(7), RWM), // full
    char_dev(1, Some(8), RWM), // random
    char_dev(1, Some(9), RWM), // urandom
    char_dev(5, Some(0), RWM), // tty
    char_dev(5, Some(2), RWM), // ptmx
    char_dev(136, None, RWM),  // pts/*
];

impl fmt::Display for Rule {
    /// As the v1 controller takes and lists it: "c 1:3 rwm", "c 136:* rwm".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Char => 'c',
            Kind::Block => 'b',
        };
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{kind} {}:{} {}",
            number(self.major),
            number(self.minor),
            self.access.text()
        )
    }
}

/// Why a listed device cannot be passed in.
#[derive(Debug)]
pub enum DeviceError {
    Stat { path: PathBuf, err: io::Error },
    NotADevice { path: PathBuf },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Stat { path, err } => write!(
                f,
                "stat device {}: {}",
                path.display(),
                errors::io_text(err)
            ),
            DeviceError::NotADevice { path } => write!(
                f,
                "device {}: not a character or block device",
                path.display()
            ),
        }
    }
}

/// The rule for the host node at `path` (a symlink to it is followed),
/// with `access`.
pub fn host_rule(path: &Path, access: DeviceAccess) -> Result<Rule, DeviceError> {
    let meta = fs::metadata(path).map_err(|err| DeviceError::Stat {
        path: path.to_path_buf(),
        err,
    })?;
    let kind = if meta.file_type().is_char_device() {
        Kind::Char
    } else if meta.file_type().is_block_device() {
        Kind::Block
    } else {
        return Err(DeviceError::NotADevice {
            path: path.to_path_buf(),
        });
    };
    Ok(Rule {
        kind,
        major: Some(libc::major(meta.rdev())),
        minor: Some(libc::minor(meta.rdev())),
        access,
    })
}

/// The defaults and a rule for each listed device, whose host nodes are
/// looked at now.
pub fn rules(devices: &[Device]) -> Result<Vec<Rule>, DeviceError> {
    let mut rules = DEFAULT_RULES.to_vec();
    for d in devices {
        rules.push(host_rule(&d.path, d.access)?);
    }
    Ok(rules)
}

/// The device program: allow (1) when the device's type, numbers and the
/// access asked for match a rule (every access bit asked for is allowed
/// by it), else deny (0).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let (ctx, access, kind, major, minor, scratch) =
        (Reg(1), Reg(2), Reg(3), Reg(4), Reg(5), Reg(1));
    let mut p = vec![
        Insn::load_u32(access, ctx, bpf::CTX_ACCESS_TYPE),
        Insn::mov(kind, access),
        Insn::and_imm(kind, 0xffff),
        Insn::rsh_imm(access, 16),
        Insn::load_u32(major, ctx, bpf::CTX_MAJOR),
        Insn::load_u32(minor, ctx, bpf::CTX_MINOR),
    ];
    for rule in rules {
        // Each test jumps past the rest of this rule's block when it fails.
        let mut tests = vec![(
            kind,
            match rule.kind {
                Kind::Char => bpf::DEV_CHAR,
                Kind::Block => bpf::DEV_BLOCK,
            },
        )];
        if let Some(n) = rule.major {
            tests.push((major, n as i32));
        }
        if let Some(n) = rule.minor {
            tests.push((minor, n as i32));
        }
        let allowed = [
            (rule.access.mknod, bpf::ACC_MKNOD),
            (rule.access.read, bpf::ACC_READ),
            (rule.access.write, bpf::ACC_WRITE),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, bit)| bits | bit);
        let denied = !allowed & (bpf::ACC_MKNOD | bpf::ACC_READ | bpf::ACC_WRITE);
        let mut block: Vec<Insn> = Vec::new();
        let len = tests.len() + 5;
        for (reg, value) in tests {
            let skip = (len - block.len() - 1) as i16;
            block.push(Insn::jne_imm(reg, value, skip));
        }
        block.push(Insn::mov(scratch, access));
        block.push(Insn::and_imm(scratch, denied));
        block.push(Insn::jne_imm(scratch, 0, 2));
        block.push(Insn::mov_imm(Reg(0), 1));
        block.push(Insn::exit());
        debug_assert_eq!(block.len(), len);
        p.extend(block);
    }
    p.push(Insn::mov_imm(Reg(0), 0));
    p.push(Insn::exit());
    p
}

fn cgroup_error(path: &Path, step: &'static str, err: io::Error) -> CgroupError {
    CgroupError {
        path: path.to_path_buf(),
        step,
        err,
    }
}

/// Restricts the v1 devices cgroup `dir` to `rules`: everything denied,
/// then each rule allowed. Before any process joins it.
pub fn restrict_v1(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let deny = dir.join("devices.deny");
    fs::write(&deny, "a").map_err(|e| cgroup_error(&deny, "write cgroup file", e))?;
    let allow = dir.join("devices.allow");
    for rule in rules {
        fs::write(&allow, rule.to_string())
            .map_err(|e| cgroup_error(&allow, "write cgroup file", e))?;
    }
    Ok(())
}

/// The rules as one text, a line each in the v1 controller's words: what
/// a device program loaded ahead (see [`Loaded`]) is known by.
pub fn rules_text(rules: &[Rule]) -> String {
    rules.iter().map(|r| format!("{r}\n")).collect()
}

/// A device program loaded ahead of a start, for the rules it was built
/// from. The daemon loads one per set of rules and hands it to every
/// monitor whose container has those rules, so that a start pays for the
/// kernel's check of the program once, not each time.
#[derive(Debug)]
pub struct Loaded {
    pub rules: String,
    pub prog: OwnedFd,
}

/// Loads the device program for `rules`.
pub fn load(rules: &[Rule]) -> Result<Loaded, io::Error> {
    let prog = bpf::load_device_program(&program(rules), "berth_devices").map_err(|e| {
        if e.verifier.is_empty() {
            e.err
        } else {
            io::Error::other(format!("{} ({})", errors::io_text(&e.err), e.verifier))
        }
    })?;
    Ok(Loaded {
        rules: rules_text(rules),
        prog,
    })
}

/// Attaches the device program for `rules` to the cgroup2 directory
/// `dir`, which holds it until the cgroup is removed: `ahead` if it was
/// loaded for these very rules, else one loaded now.
pub fn restrict_v2(dir: &Path, rules: &[Rule], ahead: Option<&Loaded>) -> Result<(), CgroupError> {
    let step = "attach the device program to cgroup";
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| cgroup_error(dir, step, io::Error::from_raw_os_error(libc::EINVAL)))?;
    let cgroup = fd::open(&path, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .map_err(|e| cgroup_error(dir, step, e))?;
    let own;
    let prog = match ahead.filter(|l| l.rules == rules_text(rules)) {
        Some(loaded) => loaded.prog.as_fd(),
        None => {
            own = load(rules)
                .map_err(|e| cgroup_error(dir, "load the device program for cgroup", e))?;
            own.prog.as_fd()
        }
    };
    bpf::attach_device_program(cgroup.as_fd(), prog).map_err(|e| cgroup_error(dir, step, e))
}

/// Restricts the container's devices in every layer the host has: the
/// init's v1 devices cgroup and its cgroup2 directory (with the program
/// loaded `ahead` where it fits, see [`restrict_v2`]). Without a v1
/// devices hierarchy the cgroup2 program is the only guard, so it must
/// attach; with one, a kernel that cannot run it is only warned about.
pub fn restrict(
    hierarchies: &[Hierarchy],
    placement: &Placement,
    rules: &[Rule],
    ahead: Option<&Loaded>,
) -> Result<(), CgroupError> {
    let v1 = hierarchies
        .iter()
        .position(|h| h.controllers.iter().any(|c| c == "devices"));
    if let Some(i) = v1 {
        restrict_v1(&placement.init[i], rules)?;
    }
    if let Some(dir) = placement.v2_init(hierarchies) {
        match restrict_v2(&dir, rules, ahead) {
            Err(e) if v1.is_some() => {
                log::warn!("{e}; the v1 devices cgroup alone restricts devices")
            }
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cgroup;
    use crate::sys::child::{self, Step};
    use crate::sys::process::{self, Argv, Envp};
    use std::ffi::CString;
    use std::os::fd::OwnedFd;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    const fn access(read: bool, write: bool, mknod: bool) -> DeviceAccess {
        DeviceAccess { read, write, mknod }
    }
    const R: DeviceAccess = access(true, false, false);
    const RW: DeviceAccess = access(true, true, false);

    #[test]
    fn rules_read_as_the_v1_controller_lists_them() {
        let text: Vec<String> = DEFAULT_RULES.iter().map(Rule::to_string).collect();
        assert_eq!(
            text,
            [
                "c *:* m",
                "b *:* m",
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:2 rwm",
                "c 136:* rwm",
            ]
        );
        let null = host_rule(Path::new("/dev/null"), R).unwrap();
        assert_eq!(null.to_string(), "c 1:3 r");
    }

    #[test]
    fn a_listed_path_must_be_a_device() {
        let err = rules(&[Device {
            path: PathBuf::from("/etc/hostname"),
            target: "/dev/x".into(),
            access: RWM,
        }])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "device /etc/hostname: not a character or block device"
        );
        let err = host_rule(Path::new("/dev/berth-none"), RWM).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stat device /dev/berth-none: No such file or directory"
        );
        // A symlink to a node (as /dev/serial/by-id/... are) is followed.
        let t = crate::testing::TempDir::new("devices-link");
        let link = t.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let rule = host_rule(&link, RW).unwrap();
        assert_eq!(rule.to_string(), "c 1:3 rw");
    }

    /// `access_type` as the kernel passes it.
    fn ctx(kind: i32, acc: i32, major: u32, minor: u32) -> [u32; 3] {
        [((acc << 16) | kind) as u32, major, minor]
    }

    #[test]
    fn the_program_allows_exactly_what_a_rule_allows() {
        let mut rules = DEFAULT_RULES.to_vec();
        rules.push(Rule {
            kind: Kind::Char,
            major: Some(10),
            minor: Some(200),
            access: R,
        });
        rules.push(Rule {
            kind: Kind::Block,
            major: Some(7),
            minor: Some(0),
            access: RW,
        });
        let p = program(&rules);
        let (c, b) = (bpf::DEV_CHAR, bpf::DEV_BLOCK);
        let (m, r, w) = (bpf::ACC_MKNOD, bpf::ACC_READ, bpf::ACC_WRITE);
        let cases = [
            (ctx(c, r | w, 1, 3), 1),
            (ctx(c, r | w | m, 1, 3), 1),
            (ctx(b, r, 1, 3), 0),
            (ctx(c, r, 1, 1), 0),
            (ctx(c, m, 1, 1), 1),
            (ctx(b, m, 8, 0), 1),
            (ctx(c, r, 136, 7), 1),
            (ctx(c, r | w, 136, 0xfffff), 1),
            (ctx(c, r, 10, 200), 1),
            (ctx(c, w, 10, 200), 0),
            (ctx(c, r | w, 10, 200), 0),
            (ctx(c, r, 10, 201), 0),
            (ctx(b, r | w, 7, 0), 1),
            (ctx(b, r | w, 7, 1), 0),
            (ctx(b, r, 8, 0), 0),
            (ctx(c, r, 5, 1), 0),
            (ctx(c, r, 5, 2), 1),
        ];
        for (input, want) in cases {
            assert_eq!(bpf::interpret(&p, input), want, "{input:?}");
        }
        // No rules: everything denied.
        assert_eq!(bpf::interpret(&program(&[]), ctx(c, m, 1, 3)), 0);
    }

    // The kernel tests below each put a child of the test into a cgroup
    // of its own, restricted through one layer only, and have a shell
    // there open device nodes of the host: what one layer allows or
    // denies is seen without the other.

    static SEQ: AtomicU32 = AtomicU32::new(0);

    /// A fresh cgroup below this process's own in the hierarchy `pick`
    /// chooses, removed on drop.
    struct TestCgroup(PathBuf);

    impl TestCgroup {
        fn new(pick: impl Fn(&Hierarchy) -> bool) -> TestCgroup {
            let all = cgroup::discover_live().unwrap();
            let h = all
                .iter()
                .find(|h| pick(h))
                .unwrap_or_else(|| panic!("no such hierarchy in {all:?}"));
            let dir = cgroup::own_dir(h).join(format!(
                "berth-devtest-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            TestCgroup(dir)
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = cgroup::remove(std::slice::from_ref(&self.0), Duration::from_secs(5));
        }
    }

    /// Runs `sh -c script` in `dir`, returns its exit code and output.
    fn run_in(dir: &Path, script: &str) -> (i32, String) {
        let (r, w): (OwnedFd, OwnedFd) = fd::pipe().unwrap();
        let procs = CString::new(
            dir.join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        );
        let args: Vec<CString> = ["/bin/sh", "-c", script]
            .iter()
            .map(|a| CString::new(*a).unwrap())
            .collect();
        let steps = [
            Step::JoinCgroup {
                procs: procs.unwrap(),
                born_here: false,
            },
            Step::Dup2 {
                from: w.as_fd(),
                to: 1,
            },
            Step::Dup2 {
                from: w.as_fd(),
                to: 2,
            },
            Step::Exec {
                candidates: vec![args[0].clone()],
                argv: Argv::new(args),
                envp: Envp::new(vec![
                    CString::new("PATH=/usr/sbin:/usr/bin:/sbin:/bin").unwrap(),
                ]),
            },
        ];
        let (_, pidfd) = child::start_unwatched(&steps).unwrap();
        drop(steps);
        drop(w);
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = fd::read(&r, &mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        let status = process::waitid_pidfd(&pidfd, true).unwrap().unwrap();
        let code = match status {
            process::ExitStatus::Exited(c) => c,
            other => panic!("{other:?}"),
        };
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    /// Opens each path for reading ("<") or writing (">") and prints
    /// "PATH MODE ok" or the shell's error.
    fn probe(opens: &[(&str, &str)]) -> String {
        opens
            .iter()
            .map(|(mode, path)| {
                format!("if ( exec 3{mode}{path} ); then echo '{path} {mode} ok'; fi; ")
            })
            .collect()
    }

    fn tun_rule(access: DeviceAccess) -> Rule {
        host_rule(Path::new("/dev/net/tun"), access).unwrap()
    }

    fn assert_denied(out: &str, path: &str) {
        let line = out
            .lines()
            .find(|l| l.contains(path) && !l.ends_with(" ok"))
            .unwrap_or_else(|| panic!("{path} not refused:\n{out}"));
        assert!(line.contains("Operation not permitted"), "{line}");
    }

    #[test]
    fn the_cgroup2_program_alone_allows_the_rules_and_denies_the_rest() {
        // This process's v1 devices cgroup allows everything (the test
        // is root's): what is refused here is refused by the program.
        let v1 = cgroup::discover_live()
            .unwrap()
            .into_iter()
            .find(|h| h.controllers.iter().any(|c| c == "devices"));
        if let Some(h) = v1 {
            let list = fs::read_to_string(cgroup::own_dir(&h).join("devices.list")).unwrap();
            assert_eq!(list.trim(), "a *:* rwm", "the test's own v1 devices cgroup");
        }
        let cg = TestCgroup::new(Hierarchy::is_v2);
        let mut rules = DEFAULT_RULES.to_vec();
        rules.push(tun_rule(R));
        // Loaded ahead, as the daemon does, for these very rules.
        let ahead = load(&rules).unwrap();
        restrict_v2(&cg.0, &rules, Some(&ahead)).unwrap();
        let t = crate::testing::TempDir::new("devices-bpf");
        let nodes = t.path().display();
        let script = format!(
            "{} mknod {nodes}/blk b 7 0 && echo 'mknod b ok'; \
             mknod {nodes}/chr c 1 1 && echo 'mknod c ok'; exit 0",
            probe(&[
                ("<", "/dev/null"),
                (">", "/dev/null"),
                ("<", "/dev/zero"),
                ("<", "/dev/net/tun"),
                (">", "/dev/net/tun"),
                ("<", "/dev/full"),
                ("<", "/dev/kmsg"),
            ])
        );
        let (code, out) = run_in(&cg.0, &script);
        assert_eq!(code, 0, "{out}");
        for ok in [
            "/dev/null < ok",
            "/dev/null > ok",
            "/dev/zero < ok",
            "/dev/net/tun < ok",
            "/dev/full < ok",
            "mknod b ok",
            "mknod c ok",
        ] {
            assert!(out.lines().any(|l| l == ok), "{ok:?} not in:\n{out}");
        }
        assert_denied(&out, "/dev/net/tun");
        assert_denied(&out, "/dev/kmsg");

        // Without a mknod rule, mknod is refused; the listed access of a
        // rule without "r" refuses a read. A program loaded ahead for other
        // rules (the defaults, which allow both) is not the one attached.
        let cg = TestCgroup::new(Hierarchy::is_v2);
        let rw_null = host_rule(Path::new("/dev/null"), access(false, true, false)).unwrap();
        let other = load(DEFAULT_RULES).unwrap();
        restrict_v2(&cg.0, &[rw_null], Some(&other)).unwrap();
        let script = format!(
            "{} mknod {nodes}/chr2 c 1 3 && echo 'mknod ok'; exit 0",
            probe(&[("<", "/dev/null"), (">", "/dev/null")])
        );
        let (_, out) = run_in(&cg.0, &script);
        assert!(out.lines().any(|l| l == "/dev/null > ok"), "{out}");
        assert_denied(&out, "/dev/null");
        let mknod = out.lines().find(|l| l.contains("chr2")).unwrap_or("");
        assert!(mknod.contains("Operation not permitted"), "{out}");
        assert!(!t.path().join("chr2").exists());
    }

    #[test]
    fn the_v1_controller_alone_allows_the_rules_and_denies_the_rest() {
        // The test's own cgroup2 directory has no device program: what is
        // refused here is refused by the v1 controller.
        let cg = TestCgroup::new(|h| h.controllers.iter().any(|c| c == "devices"));
        let mut rules = DEFAULT_RULES.to_vec();
        rules.push(tun_rule(R));
        restrict_v1(&cg.0, &rules).unwrap();
        let list = fs::read_to_string(cg.0.join("devices.list")).unwrap();
        for rule in &rules {
            assert!(
                list.lines().any(|l| l == rule.to_string()),
                "{rule} not in:\n{list}"
            );
        }
        assert!(!list.contains("a *:*"), "{list}");
        let script = format!(
            "{} exit 0",
            probe(&[
                ("<", "/dev/null"),
                ("<", "/dev/net/tun"),
                (">", "/dev/net/tun"),
                ("<", "/dev/kmsg"),
            ])
        );
        let (_, out) = run_in(&cg.0, &script);
        assert!(out.lines().any(|l| l == "/dev/null < ok"), "{out}");
        assert!(out.lines().any(|l| l == "/dev/net/tun < ok"), "{out}");
        assert_denied(&out, "/dev/net/tun");
        assert_denied(&out, "/dev/kmsg");
    }
}
