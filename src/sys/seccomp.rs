//! Seccomp: the filter of system calls a container's processes may make.
//!
//! A container runs under berth's default filter, a profile of its own, or
//! none (`seccomp` in its definition). The default filter is compiled at
//! build time for the target architecture (build.rs, from
//! seccomp/default.txt and seccomp/syscalls.txt) for the default capability
//! set; a profile, or a capability set that changes the default filter, is
//! compiled here, before clone, by the same code (seccomp/compile.rs). The
//! child installs the program as its last step before execve, after
//! no_new_privs (`Step::Seccomp`); the monitor and the daemon are never
//! filtered.

use std::fmt;
use std::path::PathBuf;

mod compile;

pub use compile::Action;
use compile::{Arch, Checked, Group, Insn};

include!(concat!(env!("OUT_DIR"), "/seccomp.rs"));

/// In NUMBERS: the architecture has no such call.
const NONE: u32 = u32::MAX;

/// A filter profile: the calls it allows and what every other call gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `Errno`, `Kill` or `Log`.
    pub default_action: Action,
    /// Names of system calls berth knows ([`is_known`]); those this
    /// architecture does not have are skipped.
    pub allow: Vec<String>,
}

/// Which filter a container runs under (the `seccomp` key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// berth's default filter.
    Default,
    /// No filter.
    Unconfined,
    /// A profile file, named but not read yet: loading the definition
    /// reads it and turns this into `Profile`.
    File(PathBuf),
    Profile(Profile),
}

/// Why a container's filter cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompError {
    /// A profile file that was never read (a definition used without
    /// being loaded).
    NotLoaded(PathBuf),
    /// The kernel has no seccomp filters, or lacks a return action the
    /// filter needs: seccomp(SECCOMP_GET_ACTION_AVAIL) failed with errno.
    Unsupported { action: Action, errno: i32 },
    /// The program is longer than the kernel takes.
    TooLong(usize),
}

impl fmt::Display for SeccompError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeccompError::NotLoaded(path) => {
                write!(f, "seccomp profile {} was not loaded", path.display())
            }
            SeccompError::Unsupported { action, errno } => write!(
                f,
                "seccomp: this kernel cannot filter system calls with {} \
                 (seccomp SECCOMP_GET_ACTION_AVAIL: {}); it needs Linux 4.14 or newer \
                 with CONFIG_SECCOMP_FILTER, or \"seccomp\": \"unconfined\"",
                action_name(*action),
                crate::errors::errno_text(*errno)
            ),
            SeccompError::TooLong(n) => write!(
                f,
                "seccomp: the filter has {n} instructions, more than the kernel's {}",
                compile::MAX_INSNS
            ),
        }
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Allow => "SECCOMP_RET_ALLOW",
        Action::Errno(_) => "SECCOMP_RET_ERRNO",
        Action::Kill => "SECCOMP_RET_KILL_PROCESS",
        Action::Log => "SECCOMP_RET_LOG",
    }
}

/// A compiled filter, ready for the child to install.
pub struct Filter(Vec<libc::sock_filter>);

impl Filter {
    fn new(program: &[Insn]) -> Result<Filter, SeccompError> {
        if program.len() > compile::MAX_INSNS {
            return Err(SeccompError::TooLong(program.len()));
        }
        Ok(Filter(
            program
                .iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect(),
        ))
    }

    /// Its length in instructions.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The index of `name` in the generated tables, if berth knows it.
fn index(name: &str) -> Option<usize> {
    let name_at = |i: usize| {
        let start = i.checked_sub(1).map_or(0, |p| usize::from(NAME_ENDS[p]));
        &NAMES[start..usize::from(NAME_ENDS[i])]
    };
    let (mut low, mut high) = (0, NAME_ENDS.len());
    while low < high {
        let mid = (low + high) / 2;
        match name_at(mid).cmp(name) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => return Some(mid),
        }
    }
    None
}

/// Whether `name` is a system call berth knows, on any architecture.
pub fn is_known(name: &str) -> bool {
    index(name).is_some()
}

/// The number of system call `name` on this build's architecture.
fn number(name: &str) -> Option<u32> {
    index(name).map(|i| NUMBERS[i]).filter(|&nr| nr != NONE)
}

/// The capabilities that change the default filter: those of its groups,
/// and CAP_SYS_ADMIN (namespaces), as a mask.
fn default_caps_mask() -> u64 {
    DEFAULT_GROUPS
        .iter()
        .fold(1 << compile::CAP_SYS_ADMIN, |mask, g| mask | g.caps)
}

/// The filter for `seccomp` and the container's capability set `caps` (a
/// mask, bit N for capability N), or none for `Unconfined`. Checks that
/// the kernel can run it.
pub fn prepare(seccomp: &Seccomp, caps: u64) -> Result<Option<Filter>, SeccompError> {
    let (program, default_action) = match seccomp {
        Seccomp::Unconfined => return Ok(None),
        Seccomp::File(path) => return Err(SeccompError::NotLoaded(path.clone())),
        Seccomp::Default => (default_program(caps), Action::Errno(compile::EPERM)),
        Seccomp::Profile(p) => (profile_program(p, caps), p.default_action),
    };
    for action in [Action::Kill, default_action] {
        action_available(action).map_err(|errno| SeccompError::Unsupported { action, errno })?;
    }
    Filter::new(&program).map(Some)
}

/// The default filter for `caps`: the one built at compile time unless
/// `caps` holds a capability that changes it.
fn default_program(caps: u64) -> Vec<Insn> {
    if caps & default_caps_mask() == 0 {
        return DEFAULT_PROGRAM.to_vec();
    }
    let allowed = DEFAULT_GROUPS
        .iter()
        .filter(|g| g.caps == 0 || g.caps & caps != 0)
        .flat_map(|g| g.calls.iter().copied());
    let rules = compile::rules(allowed, caps, Checked::find(number));
    compile::compile(ARCH, &rules, Action::Errno(compile::EPERM))
}

fn profile_program(profile: &Profile, caps: u64) -> Vec<Insn> {
    let mut allowed: Vec<u32> = profile
        .allow
        .iter()
        .filter_map(|name| number(name))
        .collect();
    if profile.default_action == Action::Log {
        // What is only logged goes through: clone and unshare keep their
        // namespace checks all the same.
        allowed.extend(["clone", "unshare"].into_iter().filter_map(number));
    }
    let rules = compile::rules(allowed, caps, Checked::find(number));
    compile::compile(ARCH, &rules, profile.default_action)
}

/// Whether the kernel takes filters that return `action`: Ok, or the
/// errno of seccomp(SECCOMP_GET_ACTION_AVAIL) (EINVAL or ENOSYS on a
/// kernel without seccomp filters, EOPNOTSUPP for an unknown action).
fn action_available(action: Action) -> Result<(), i32> {
    let ret: u32 = action.ret() & 0xffff_0000;
    // SAFETY: the operation reads one u32 through the pointer, which
    // points to `ret` for the whole call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &ret as *const u32,
        )
    };
    if r == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// Installs `filter` on the calling thread (in the cloned child, after
/// no_new_privs, which lets a process without CAP_SYS_ADMIN do it).
pub(super) fn install_raw(filter: &Filter) -> Result<(), i32> {
    let prog = libc::sock_fprog {
        // `Filter::new` kept it at MAX_INSNS (4096) or fewer.
        len: filter.0.len() as libc::c_ushort,
        filter: filter.0.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `len` instructions that live through the
    // call; the kernel copies them and does not write through the pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if r == -1 {
        return Err(super::errno());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::child::{self, Failure, InitReport, Step};
    use crate::sys::process::{self, Argv, Envp, ExitStatus};
    use std::ffi::{CStr, CString};

    include!(concat!(env!("OUT_DIR"), "/seccomp_arches.rs"));

    const EPERM: u32 = 0x0005_0000 | 1;
    const ENOSYS: u32 = 0x0005_0000 | 38;
    const ALLOW: u32 = 0x7fff_0000;
    const KILL: u32 = 0x8000_0000;
    /// berth's default capability set has none of the filter's.
    const NO_CAPS: u64 = 0;

    fn column(arch: Arch) -> usize {
        Arch::ALL.iter().position(|a| *a == arch).unwrap()
    }

    /// `name`'s number on `arch`.
    fn nr_on(arch: Arch, name: &str) -> Option<u32> {
        let i = ALL_ARCHES.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
        ALL_ARCHES[i].1[column(arch)]
    }

    /// The default filter for `arch` and `caps`, compiled from the lists by
    /// name, the way build.rs does it.
    fn default_on(arch: Arch, caps: u64) -> Vec<Insn> {
        let number = |name: &str| nr_on(arch, name);
        let allowed = DEFAULT_GROUP_NAMES
            .iter()
            .filter(|(mask, _)| *mask == 0 || mask & caps != 0)
            .flat_map(|(_, names)| names.iter())
            .filter_map(|name| number(name));
        let rules = compile::rules(allowed, caps, Checked::find(number));
        compile::compile(arch, &rules, Action::Errno(compile::EPERM))
    }

    fn answer(program: &[Insn], arch: Arch, name: &str, arg0: u64) -> u32 {
        let nr = nr_on(arch, name).unwrap_or_else(|| panic!("{name} on {arch:?}"));
        compile::run(program, nr, arch.audit(), arg0).unwrap()
    }

    fn names_in(always: bool) -> Vec<&'static str> {
        DEFAULT_GROUP_NAMES
            .iter()
            .filter(|(mask, _)| (*mask == 0) == always)
            .flat_map(|(_, names)| names.iter().copied())
            .collect()
    }

    #[test]
    fn the_built_program_is_the_default_for_the_default_caps() {
        assert_eq!(DEFAULT_PROGRAM, default_on(ARCH, NO_CAPS).as_slice());
        assert_eq!(default_program(NO_CAPS), DEFAULT_PROGRAM);
        // berth's kept capabilities (CHOWN ... SETFCAP) change nothing.
        let kept = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 29, 31];
        let kept = kept.iter().fold(0u64, |m, c| m | 1 << c);
        assert_eq!(kept & default_caps_mask(), 0);
        assert_eq!(default_program(kept), DEFAULT_PROGRAM);
    }

    #[test]
    fn every_architecture_kills_another_and_answers_every_number() {
        for arch in Arch::ALL {
            let p = default_on(arch, NO_CAPS);
            assert!(p.len() <= compile::MAX_INSNS);
            for other in Arch::ALL.iter().filter(|a| **a != arch) {
                let nr = nr_on(arch, "read").unwrap();
                assert_eq!(compile::run(&p, nr, other.audit(), 0), Ok(KILL));
            }
            // Every number gets an answer, and it is the one the lists give.
            let allowed: Vec<u32> = names_in(true)
                .iter()
                .filter_map(|n| nr_on(arch, n))
                .collect();
            let special: Vec<u32> = ["clone", "unshare", "clone3", "personality"]
                .iter()
                .filter_map(|n| nr_on(arch, n))
                .collect();
            for nr in (0..1000).chain(0xf_0000..0xf_0010) {
                let got = compile::run(&p, nr, arch.audit(), 0).unwrap();
                let want = if special.contains(&nr) {
                    got
                } else if allowed.contains(&nr) {
                    ALLOW
                } else {
                    EPERM
                };
                assert_eq!(got, want, "{nr} on {arch:?}");
            }
        }
    }

    #[test]
    fn what_a_normal_program_needs_is_allowed() {
        let needed = [
            "read",
            "write",
            "openat",
            "close",
            "mmap",
            "mprotect",
            "munmap",
            "brk",
            "execve",
            "exit_group",
            "wait4",
            "rt_sigaction",
            "rt_sigreturn",
            "pipe2",
            "dup2",
            "fcntl",
            "ioctl",
            "getdents64",
            "chdir",
            "nanosleep",
            "clock_nanosleep",
            "socket",
            "connect",
            "sendto",
            "recvfrom",
            "futex",
            "set_tid_address",
            "getrandom",
            "prlimit64",
            "kill",
            "uname",
            "sched_yield",
            "epoll_pwait",
            "statx",
            "readlinkat",
            "set_tls",
            "arch_prctl",
            "fstatat64",
            "newfstatat",
            "rseq",
            "close_range",
        ];
        for arch in Arch::ALL {
            let p = default_on(arch, NO_CAPS);
            for name in needed {
                if nr_on(arch, name).is_some() {
                    assert_eq!(answer(&p, arch, name, 0), ALLOW, "{name} on {arch:?}");
                }
            }
            // fork, and threads as pthread_create asks for them.
            assert_eq!(answer(&p, arch, "clone", 17), ALLOW, "{arch:?}");
            assert_eq!(answer(&p, arch, "clone", 0x003d_0f00), ALLOW, "{arch:?}");
        }
    }

    #[test]
    fn namespaces_keys_bpf_and_modules_are_refused() {
        let refused = [
            "unshare",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "open_by_handle_at",
            "userfaultfd",
            "ptrace",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "settimeofday",
            "clock_settime",
            "io_uring_setup",
            "fsopen",
            "open_tree",
            "move_mount",
        ];
        let new_user = 0x1000_0000;
        for arch in Arch::ALL {
            let p = default_on(arch, NO_CAPS);
            for name in refused {
                assert_eq!(
                    answer(&p, arch, name, new_user),
                    EPERM,
                    "{name} on {arch:?}"
                );
            }
            for flag in [0x0002_0000u64, 0x0800_0000, 0x1000_0000, 0x4000_0000] {
                assert_eq!(answer(&p, arch, "clone", flag | 17), EPERM, "{flag:#x}");
                assert_eq!(answer(&p, arch, "unshare", flag), EPERM, "{flag:#x}");
            }
            assert_eq!(answer(&p, arch, "clone3", 0), ENOSYS, "{arch:?}");
            for name in DEFAULT_NEVER.iter().filter(|n| nr_on(arch, n).is_some()) {
                let all_caps = default_on(arch, u64::MAX);
                assert_eq!(
                    answer(&all_caps, arch, name, 0),
                    EPERM,
                    "{name} on {arch:?}"
                );
            }
        }
    }

    #[test]
    fn capabilities_open_their_groups() {
        const SYS_ADMIN: u64 = 1 << 21;
        const SYS_PTRACE: u64 = 1 << 19;
        const SYS_TIME: u64 = 1 << 25;
        const BPF: u64 = 1 << 39;
        for arch in Arch::ALL {
            let p = default_on(arch, SYS_ADMIN);
            assert_eq!(answer(&p, arch, "unshare", 0x1002_0000), ALLOW);
            assert_eq!(answer(&p, arch, "clone", 0x1000_0011), ALLOW);
            assert_eq!(answer(&p, arch, "clone3", 0), ALLOW);
            for name in [
                "mount",
                "setns",
                "pivot_root",
                "bpf",
                "syslog",
                "perf_event_open",
            ] {
                assert_eq!(answer(&p, arch, name, 0), ALLOW, "{name} on {arch:?}");
            }
            assert_eq!(answer(&p, arch, "ptrace", 0), EPERM);
            assert_eq!(answer(&p, arch, "keyctl", 0), EPERM);

            let p = default_on(arch, SYS_PTRACE | SYS_TIME | BPF);
            for name in ["ptrace", "process_vm_readv", "settimeofday", "bpf"] {
                assert_eq!(answer(&p, arch, name, 0), ALLOW, "{name} on {arch:?}");
            }
            assert_eq!(answer(&p, arch, "unshare", 0x1000_0000), EPERM);
            assert_eq!(answer(&p, arch, "mount", 0), EPERM);
        }
        // At run time, on this architecture, too.
        let p = default_program(SYS_ADMIN);
        assert_ne!(p, DEFAULT_PROGRAM);
        assert_eq!(answer(&p, ARCH, "unshare", 0x1000_0000), ALLOW);
    }

    #[test]
    fn a_profile_allows_its_list() {
        let profile = Profile {
            default_action: Action::Kill,
            allow: [
                "read",
                "write",
                "exit_group",
                "execve",
                "clone",
                "arch_prctl",
                "set_tls",
            ]
            .map(String::from)
            .to_vec(),
        };
        let p = profile_program(&profile, NO_CAPS);
        assert_eq!(answer(&p, ARCH, "read", 0), ALLOW);
        assert_eq!(answer(&p, ARCH, "openat", 0), KILL);
        assert_eq!(answer(&p, ARCH, "clone", 0x1000_0000), EPERM);
        assert_eq!(answer(&p, ARCH, "clone3", 0), ENOSYS);
    }

    #[test]
    fn a_logging_profile_still_refuses_new_namespaces() {
        let profile = Profile {
            default_action: Action::Log,
            allow: vec!["read".to_string()],
        };
        let p = profile_program(&profile, NO_CAPS);
        let log = answer(&p, ARCH, "openat", 0);
        assert_eq!(
            answer(&p, ARCH, "unshare", 0x1000_0000),
            EPERM,
            "CLONE_NEWUSER"
        );
        assert_eq!(answer(&p, ARCH, "clone", 0x0002_0000), EPERM, "CLONE_NEWNS");
        assert_eq!(answer(&p, ARCH, "clone", 0), ALLOW);
        assert_ne!(log, EPERM);
    }

    #[test]
    fn names_are_known_on_any_architecture() {
        assert!(is_known("read"));
        assert!(is_known("set_tls"), "arm's");
        assert!(is_known("arch_prctl"), "x86_64's");
        assert!(!is_known("nope"));
        assert!(!is_known(""));
        assert_eq!(number("clone3"), Some(435));
        // Every name, first and last among them, is found at its number.
        for (name, numbers) in ALL_ARCHES {
            assert!(is_known(name), "{name}");
            assert_eq!(number(name), numbers[column(ARCH)], "{name}");
        }
        assert!(!is_known("zzz") && !is_known("_"));
    }

    #[test]
    fn this_kernel_takes_every_action() {
        for action in [Action::Kill, Action::Errno(1), Action::Log, Action::Allow] {
            assert_eq!(action_available(action), Ok(()), "{action:?}");
        }
        let f = prepare(&Seccomp::Default, NO_CAPS).unwrap().unwrap();
        assert_eq!(f.len(), DEFAULT_PROGRAM.len());
        assert!(prepare(&Seccomp::Unconfined, NO_CAPS).unwrap().is_none());
        let e = prepare(&Seccomp::File("/etc/p.json".into()), 0).err();
        assert_eq!(e, Some(SeccompError::NotLoaded("/etc/p.json".into())));
        let e = SeccompError::Unsupported {
            action: Action::Kill,
            errno: libc::EINVAL,
        };
        assert_eq!(
            e.to_string(),
            "seccomp: this kernel cannot filter system calls with SECCOMP_RET_KILL_PROCESS \
             (seccomp SECCOMP_GET_ACTION_AVAIL: Invalid argument); it needs Linux 4.14 or \
             newer with CONFIG_SECCOMP_FILTER, or \"seccomp\": \"unconfined\""
        );
    }

    /// Runs `steps` in a child and returns its report and how it ended.
    fn run_child(steps: &[Step<'_>]) -> (InitReport, ExitStatus) {
        let child = child::start(steps, 0, None).unwrap();
        let report = child.wait_for_exec().unwrap();
        let status = process::waitid_pidfd(&child.pidfd, true).unwrap().unwrap();
        (report, status)
    }

    fn exec(args: &[&CStr]) -> Step<'static> {
        let args: Vec<CString> = args.iter().map(|a| CString::from(*a)).collect();
        Step::Exec {
            candidates: vec![args[0].clone()],
            argv: Argv::new(args),
            envp: Envp::new(Vec::new()),
        }
    }

    #[test]
    fn a_filtered_child_execs_but_makes_no_namespace() {
        let filter = || prepare(&Seccomp::Default, NO_CAPS).unwrap().unwrap();
        // Without the filter the same steps make a user namespace.
        let (report, status) = run_child(&[
            Step::NoNewPrivs,
            Step::Unshare(libc::CLONE_NEWUSER),
            exec(&[c"/bin/sh", c"-c", c"exit 3"]),
        ]);
        assert_eq!(
            (report, status),
            (InitReport::Execed, ExitStatus::Exited(3))
        );

        let (report, _) = run_child(&[
            Step::NoNewPrivs,
            Step::Seccomp(filter()),
            Step::Unshare(libc::CLONE_NEWUSER),
            exec(&[c"/bin/sh", c"-c", c"exit 3"]),
        ]);
        let failed = |step, errno| InitReport::Failed(Failure { step, errno });
        assert_eq!(report, failed(2, libc::EPERM));

        // execve passes the filter; a dynamically linked shell starts under it.
        let (report, status) = run_child(&[
            Step::NoNewPrivs,
            Step::Seccomp(filter()),
            exec(&[
                c"/bin/sh",
                c"-c",
                c"grep -q '^Seccomp:.2' /proc/self/status",
            ]),
        ]);
        assert_eq!(
            (report, status),
            (InitReport::Execed, ExitStatus::Exited(0))
        );

        // A failed exec is still reported through the filter.
        let (report, status) = run_child(&[
            Step::NoNewPrivs,
            Step::Seccomp(filter()),
            exec(&[c"/nonexistent/berth-test"]),
        ]);
        assert_eq!(report, failed(2, libc::ENOENT));
        assert_eq!(status, ExitStatus::Exited(127));
    }
}
