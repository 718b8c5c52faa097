//! Creating a container's init: the list of steps it runs between clone and
//! execve, built entirely before clone, and the clone itself.
//!
//! After clone the child only walks [`Op`]s, each one system call on
//! strings prepared here, so it never allocates. If a step fails the child
//! writes (step index, errno) to a close-on-exec pipe and exits; when execve
//! succeeds the pipe closes with nothing written. The parent turns an index
//! back into the step's description, so an error reads
//! "exec /bin/nope: No such file or directory".

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::config::{ContainerSpec, MountKind, Network};
use crate::sys::{cap, fd, mount, ns, process, signal};

/// Capabilities a container keeps (the usual container default set); all
/// others are dropped from the bounding set.
const KEPT_CAPS: &[u32] = &[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    29, // AUDIT_WRITE
    31, // SETFCAP
];
const LAST_CAP: u32 = 63;

/// /proc paths bound read-only over themselves.
const PROC_READONLY: &[&str] = &["sys", "irq", "bus", "fs", "sysrq-trigger"];
/// /proc files hidden under /dev/null.
const PROC_MASKED: &[&str] = &["kcore", "keys", "timer_list", "sched_debug", "kallsyms"];

const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One step of the child. Every string is prepared before clone.
enum Op {
    ResetSignals,
    Setsid,
    /// Have the kernel SIGKILL this process when the monitor dies, then
    /// make sure the monitor had not already died (a closed report pipe).
    DieWithParent,
    /// Bind a /proc path onto itself read-only, if it exists.
    ReadonlyOptional(CString),
    /// Bind /dev/null over a /proc file, if it exists.
    MaskOptional(CString),
    /// Write "0" to this cgroup.procs, unless (true) it is the cgroup2
    /// directory the child was already created in.
    JoinCgroup(CString, bool),
    Unshare(libc::c_int),
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Make a mount and every mount below it read-only.
    RemountReadonly(CString),
    Mkdir(CString),
    Touch(CString),
    Symlink(CString, CString),
    Chdir(CString),
    PivotRoot,
    UmountDetach(CString),
    Hostname(CString),
    LoopbackUp,
    Dup2(RawFd, RawFd),
    ClearGroups,
    SetIds(u32, u32),
    DropBounding(u32),
    NoNewPrivs,
    CloexecFrom(u32),
    Exec {
        candidates: Vec<CString>,
        argv: Vec<*const libc::c_char>,
        envp: Vec<*const libc::c_char>,
    },
}

/// The child's program: steps and a description of each for errors.
pub struct Plan {
    ops: Vec<(Op, String)>,
    /// Owns the strings `Op::Exec` points into.
    _strings: Vec<CString>,
}

/// Why building or running the plan failed.
#[derive(Debug)]
pub enum SpawnError {
    /// Before clone: a string with a NUL byte, a pipe, clone itself.
    Setup(String),
    /// In the child: the step's description and errno.
    Step(String, i32),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Setup(s) => f.write_str(s),
            SpawnError::Step(step, errno) => write!(f, "{step}: {}", errno_text(*errno)),
        }
    }
}

/// strerror-like text for an errno, without Rust's " (os error N)".
pub fn errno_text(errno: i32) -> String {
    let s = io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn cstr(s: impl AsRef<[u8]>) -> Result<CString, SpawnError> {
    CString::new(s.as_ref().to_vec())
        .map_err(|_| SpawnError::Setup("string contains a NUL byte".to_string()))
}

/// The fds the container's stdio comes from.
pub struct Stdio {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
}

impl Plan {
    /// Builds the whole sequence for `spec`, joining `cgroup_dirs`. The
    /// rootfs is bound onto `mount_point` (an empty directory of berth's
    /// own, in run-dir) and assembled there: pivot_root needs the new root
    /// to be a mount reached by a path, which a rootfs of "/" bound onto
    /// itself is not. `born_in` is the cgroup2 directory of `cgroup_dirs`,
    /// if any, which `spawn` tries to create the child in.
    pub fn build(
        spec: &ContainerSpec,
        mount_point: &Path,
        cgroup_dirs: &[std::path::PathBuf],
        born_in: Option<&Path>,
        stdio: &Stdio,
    ) -> Result<Plan, SpawnError> {
        let mut b = Builder { ops: Vec::new() };
        let root = mount_point.as_os_str().as_bytes().to_vec();
        let at = |p: &str| -> Result<CString, SpawnError> {
            let mut v = root.clone();
            v.extend_from_slice(p.as_bytes());
            cstr(v)
        };

        b.op(Op::ResetSignals, "reset signals");
        b.op(Op::Setsid, "setsid");
        for dir in cgroup_dirs {
            let procs = dir.join("cgroup.procs");
            let born_here = born_in.is_some_and(|b| b == dir.as_path());
            b.op(
                Op::JoinCgroup(cstr(procs.as_os_str().as_bytes())?, born_here),
                format!("join cgroup {}", dir.display()),
            );
        }
        b.op(
            Op::Unshare(libc::CLONE_NEWCGROUP),
            "unshare cgroup namespace",
        );

        // Mounts, all below the rootfs until pivot_root.
        b.mount(
            None,
            cstr("/")?,
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
            "make mounts private",
        );
        let rootfs = cstr(&root)?;
        b.mount(
            Some(cstr(spec.rootfs.as_os_str().as_bytes())?),
            rootfs.clone(),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
            format!("bind rootfs {}", spec.rootfs.display()),
        );
        if spec.readonly_rootfs {
            // Every mount point first, then the rootfs (with whatever is
            // mounted below it, e.g. a host's /run when the rootfs is /)
            // read-only; the mounts made after this keep their own flags.
            for dir in ["/proc", "/dev", "/sys"] {
                b.op(Op::Mkdir(at(dir)?), format!("create {dir}"));
            }
            for m in &spec.mounts {
                b.mount_point(m, at(&m.target)?);
            }
            b.op(
                Op::RemountReadonly(rootfs.clone()),
                "make the rootfs read-only",
            );
        }
        b.op(Op::Mkdir(at("/proc")?), "create /proc");
        b.mount(
            Some(cstr("proc")?),
            at("/proc")?,
            Some(cstr("proc")?),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
            "mount proc on /proc",
        );
        // What a container's root must not write or read in /proc: kernel
        // tunables (core_pattern runs a program as host root), and files
        // that expose kernel memory or other tenants' keys.
        for p in PROC_READONLY {
            b.op(
                Op::ReadonlyOptional(at(&format!("/proc/{p}"))?),
                format!("make /proc/{p} read-only"),
            );
        }
        for p in PROC_MASKED {
            b.op(
                Op::MaskOptional(at(&format!("/proc/{p}"))?),
                format!("mask /proc/{p}"),
            );
        }
        b.op(Op::Mkdir(at("/dev")?), "create /dev");
        b.mount(
            Some(cstr("tmpfs")?),
            at("/dev")?,
            Some(cstr("tmpfs")?),
            // nodev: no device node made or put here works; the allowed
            // devices are bind mounts of their own.
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_STRICTATIME,
            Some(cstr("mode=755,size=1m")?),
            "mount tmpfs on /dev",
        );
        for dev in DEVICES {
            let target = at(&format!("/dev/{dev}"))?;
            b.op(Op::Touch(target.clone()), format!("create /dev/{dev}"));
            b.mount(
                Some(cstr(format!("/dev/{dev}"))?),
                target,
                None,
                libc::MS_BIND,
                None,
                format!("bind /dev/{dev}"),
            );
        }
        b.op(Op::Mkdir(at("/dev/pts")?), "create /dev/pts");
        b.mount(
            Some(cstr("devpts")?),
            at("/dev/pts")?,
            Some(cstr("devpts")?),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(cstr("newinstance,ptmxmode=0666,mode=0620")?),
            "mount devpts on /dev/pts",
        );
        b.op(
            Op::Symlink(cstr("pts/ptmx")?, at("/dev/ptmx")?),
            "link /dev/ptmx",
        );
        b.op(Op::Mkdir(at("/dev/shm")?), "create /dev/shm");
        b.mount(
            Some(cstr("shm")?),
            at("/dev/shm")?,
            Some(cstr("tmpfs")?),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(cstr("mode=1777,size=64m")?),
            "mount tmpfs on /dev/shm",
        );
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            b.op(
                Op::Symlink(cstr(target)?, at(&format!("/dev/{link}"))?),
                format!("link /dev/{link}"),
            );
        }
        b.op(Op::Mkdir(at("/sys")?), "create /sys");
        b.mount(
            Some(cstr("sysfs")?),
            at("/sys")?,
            Some(cstr("sysfs")?),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
            "mount sysfs on /sys",
        );

        for m in &spec.mounts {
            let target = at(&m.target)?;
            match &m.kind {
                MountKind::Bind { source } => {
                    let what = format!("bind {} on {}", source.display(), m.target);
                    b.mount_point(m, target.clone());
                    b.mount(
                        Some(cstr(source.as_os_str().as_bytes())?),
                        target.clone(),
                        None,
                        libc::MS_BIND | libc::MS_REC,
                        None,
                        what.clone(),
                    );
                    if m.readonly {
                        b.op(
                            Op::RemountReadonly(target),
                            format!("make {} read-only", m.target),
                        );
                    }
                }
                MountKind::Tmpfs { size } => {
                    b.mount_point(m, target.clone());
                    let mut data = "mode=1777".to_string();
                    if let Some(size) = size {
                        data.push_str(&format!(",size={size}"));
                    }
                    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
                    if m.readonly {
                        flags |= libc::MS_RDONLY;
                    }
                    b.mount(
                        Some(cstr("tmpfs")?),
                        target,
                        Some(cstr("tmpfs")?),
                        flags,
                        Some(cstr(data)?),
                        format!("mount tmpfs on {}", m.target),
                    );
                }
            }
        }

        b.op(
            Op::Chdir(rootfs),
            format!("enter rootfs {}", spec.rootfs.display()),
        );
        b.op(
            Op::PivotRoot,
            format!("pivot_root into {}", spec.rootfs.display()),
        );
        b.op(Op::UmountDetach(cstr(".")?), "detach the old root");
        b.op(Op::Chdir(cstr("/")?), "enter /");
        b.op(
            Op::Hostname(cstr(&spec.hostname)?),
            format!("set hostname {}", spec.hostname),
        );
        if spec.network == Network::None {
            b.op(Op::LoopbackUp, "bring up lo");
        }
        b.op(
            Op::Chdir(cstr(&spec.workdir)?),
            format!("enter workdir {}", spec.workdir),
        );
        b.op(Op::Dup2(stdio.stdin, 0), "set up stdin");
        b.op(Op::Dup2(stdio.stdout, 1), "set up stdout");
        b.op(Op::Dup2(stdio.stderr, 2), "set up stderr");
        for c in 0..=LAST_CAP {
            if !KEPT_CAPS.contains(&c) {
                b.op(Op::DropBounding(c), format!("drop capability {c}"));
            }
        }
        if let Some((uid, gid)) = spec.user {
            b.op(Op::ClearGroups, "clear supplementary groups");
            b.op(Op::SetIds(uid, gid), format!("set user {uid}:{gid}"));
        }
        b.op(Op::NoNewPrivs, "set no_new_privs");
        // After the uid change, which would clear it.
        b.op(Op::DieWithParent, "set parent death signal");
        b.op(Op::CloexecFrom(3), "close inherited fds");

        // execve: argv, envp and every PATH candidate, built now.
        let mut strings = Vec::new();
        let argv_c: Vec<CString> = spec.command.iter().map(cstr).collect::<Result<_, _>>()?;
        let mut env = spec.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env.push(format!("HOSTNAME={}", spec.hostname));
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push("HOME=/".to_string());
        }
        let path_var = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let envp_c: Vec<CString> = env.iter().map(cstr).collect::<Result<_, _>>()?;
        let prog = &spec.command[0];
        let candidates = if prog.contains('/') {
            vec![cstr(prog)?]
        } else {
            path_var
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| cstr(format!("{}/{prog}", d.trim_end_matches('/'))))
                .collect::<Result<_, _>>()?
        };
        let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = envp_c.iter().map(|s| s.as_ptr()).collect();
        envp.push(std::ptr::null());
        strings.extend(argv_c);
        strings.extend(envp_c);
        b.op(
            Op::Exec {
                candidates,
                argv,
                envp,
            },
            format!("exec {prog}"),
        );
        Ok(Plan {
            ops: b.ops,
            _strings: strings,
        })
    }

    /// Runs the steps in the child; never returns.
    fn run_in_child(&self, report: RawFd, born_in_cgroup: bool) -> ! {
        for (index, (op, _)) in self.ops.iter().enumerate() {
            if born_in_cgroup && matches!(op, Op::JoinCgroup(_, true)) {
                continue;
            }
            let result = run_op(op);
            if matches!(op, Op::DieWithParent) && result.is_ok() && fd::reader_gone_raw(report) {
                // The monitor died before the signal was armed.
                process::exit_raw(127);
            }
            if let Err(errno) = result {
                let mut msg = [0u8; 8];
                msg[..4].copy_from_slice(&(index as u32).to_le_bytes());
                msg[4..].copy_from_slice(&errno.to_le_bytes());
                let _ = fd::write_all_raw(report, &msg);
                process::exit_raw(127);
            }
        }
        process::exit_raw(127) // unreachable: the last op is Exec
    }

    /// Clones the container's init into new namespaces and runs the plan
    /// in it. Returns once execve succeeded (or with the failed step).
    /// `cgroup` is an fd of the cgroup2 directory given to `build` as
    /// `born_in`: the child is created in it (CLONE_INTO_CGROUP) when the
    /// kernel allows, else it joins by writing cgroup.procs like the others.
    pub fn spawn(
        &self,
        network: Network,
        cgroup: Option<&OwnedFd>,
    ) -> Result<(i32, OwnedFd), SpawnError> {
        let (report_r, report_w) =
            fd::pipe().map_err(|e| SpawnError::Setup(format!("create pipe: {e}")))?;
        let mut flags =
            libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        if network == Network::None {
            flags |= libc::CLONE_NEWNET;
        }
        let mut forked = process::clone_process(flags as u64, cgroup);
        let born_in_cgroup = cgroup.is_some() && forked.is_ok();
        if cgroup.is_some() && forked.is_err() {
            // An older kernel, or a cgroup2 directory that cannot take the
            // child this way: create it outside; it joins by itself.
            forked = process::clone_process(flags as u64, None::<&OwnedFd>);
        }
        match forked {
            Err(e) => Err(SpawnError::Setup(format!(
                "clone: {}",
                errno_text(e.raw_os_error().unwrap_or(libc::EIO))
            ))),
            Ok(process::Forked::Child) => {
                // The child's copy of the reading end must go at once: with
                // it open, the monitor's death could not be seen as a
                // closed pipe (see DieWithParent).
                fd::close_raw(report_r.as_raw_fd());
                self.run_in_child(report_w.as_raw_fd(), born_in_cgroup)
            }
            Ok(process::Forked::Parent { pid, pidfd }) => {
                drop(report_w);
                let mut msg = [0u8; 8];
                let mut got = 0;
                while got < msg.len() {
                    match fd::read_raw(report_r.as_raw_fd(), &mut msg[got..]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) => {
                            return Err(SpawnError::Setup(format!(
                                "read from the container's init: {e}"
                            )));
                        }
                    }
                }
                if got == 0 {
                    return Ok((pid, pidfd));
                }
                // The child failed and exited: reap it, then say why.
                let _ = process::waitid_pidfd(&pidfd, true);
                if got < msg.len() {
                    return Err(SpawnError::Setup(
                        "the container's init died before exec".to_string(),
                    ));
                }
                let index = u32::from_le_bytes(msg[..4].try_into().unwrap_or_default()) as usize;
                let errno = i32::from_le_bytes(msg[4..].try_into().unwrap_or_default());
                let step = self
                    .ops
                    .get(index)
                    .map_or("unknown step", |(_, d)| d.as_str());
                Err(SpawnError::Step(step.to_string(), errno))
            }
        }
    }
}

struct Builder {
    ops: Vec<(Op, String)>,
}

impl Builder {
    fn op(&mut self, op: Op, what: impl Into<String>) {
        self.ops.push((op, what.into()));
    }

    /// Creates what mount `m` goes on (at `target`): a directory, or an
    /// empty file for a bind of a file.
    fn mount_point(&mut self, m: &crate::config::Mount, target: CString) {
        let is_dir = match &m.kind {
            MountKind::Bind { source } => Path::new(source).is_dir(),
            MountKind::Tmpfs { .. } => true,
        };
        let what = format!("create mount point {}", m.target);
        if is_dir {
            self.op(Op::Mkdir(target), what);
        } else {
            self.op(Op::Touch(target), what);
        }
    }

    fn mount(
        &mut self,
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
        what: impl Into<String>,
    ) {
        self.op(
            Op::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            },
            what,
        );
    }
}

/// One step in the child: system calls only.
fn run_op(op: &Op) -> Result<(), i32> {
    match op {
        Op::ResetSignals => signal::reset_all_raw(),
        Op::Setsid => process::setsid_raw(),
        // Handled in `run_in_child`, which knows the report pipe.
        Op::DieWithParent => process::set_parent_death_signal_raw(libc::SIGKILL),
        Op::ReadonlyOptional(path) => {
            match mount::mount_raw(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
                Err(libc::ENOENT) => Ok(()),
                Err(e) => Err(e),
                Ok(()) => mount::readonly_recursive_raw(path),
            }
        }
        Op::MaskOptional(path) => {
            match mount::mount_raw(Some(c"/dev/null"), path, None, libc::MS_BIND, None) {
                Err(libc::ENOENT) => Ok(()),
                other => other,
            }
        }
        Op::JoinCgroup(procs, _) => fd::write_file_raw(procs, b"0"),
        Op::Unshare(flags) => ns::unshare_raw(*flags),
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => mount::mount_raw(
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Op::RemountReadonly(path) => mount::readonly_recursive_raw(path),
        Op::Mkdir(path) => mount::mkdir_raw(path, 0o755),
        Op::Touch(path) => mount::touch_raw(path),
        Op::Symlink(target, link) => mount::symlink_raw(target, link),
        Op::Chdir(path) => process::chdir_raw(path),
        Op::PivotRoot => mount::pivot_root_raw(c".", c"."),
        Op::UmountDetach(path) => mount::umount_detach_raw(path),
        Op::Hostname(name) => ns::sethostname_raw(name),
        Op::LoopbackUp => ns::loopback_up_raw(),
        Op::Dup2(from, to) => fd::dup2_raw(*from, *to),
        Op::ClearGroups => cap::setgroups_empty_raw(),
        Op::SetIds(uid, gid) => cap::set_ids_raw(*uid, *gid),
        Op::DropBounding(c) => cap::drop_bounding_raw(*c),
        Op::NoNewPrivs => cap::no_new_privs_raw(),
        Op::CloexecFrom(first) => fd::cloexec_from_raw(*first),
        Op::Exec {
            candidates,
            argv,
            envp,
        } => {
            // Like execvp: ENOENT moves on to the next PATH entry; any other
            // error is remembered and wins over ENOENT.
            let mut err = libc::ENOENT;
            for path in candidates {
                let e = process::execve_raw(path, argv, envp);
                if e != libc::ENOENT && e != libc::ENOTDIR {
                    err = e;
                }
            }
            Err(err)
        }
    }
}
