//! Creating a container's init: the list of steps it runs between clone and
//! execve, built entirely before clone, and the clone itself.
//!
//! The steps are `sys::child` [`Step`]s, each with a description for
//! errors; after clone the child only walks them, so it never allocates.
//! Every path in the rootfs (mount points, /proc, /dev and /sys entries)
//! is a [`Target::InRoot`]: the child resolves it inside the rootfs, so a
//! symlink the rootfs holds cannot make a start create or mount anything
//! on the host.
//! If a step fails the child reports (step index, errno) and exits; when
//! execve succeeds its report pipe closes with nothing written. The parent
//! turns an index back into the step's description, so an error reads
//! "exec /bin/nope: No such file or directory".

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::environment::Environment;
use super::etc_files;
use super::init;
use crate::config::{self, ContainerSpec, MountKind, Network};
use crate::errors;
use crate::errors::{errno_text, io_text};
use crate::sys::child::{self, Failure, InitReport, LaunchError, Step, Target};
use crate::sys::fd;
use crate::sys::process::{self, Argv, Envp};
use crate::sys::seccomp::{self, SeccompError};

/// The highest capability number a bounding set can hold; every one not
/// kept is dropped (those the kernel does not know are skipped).
const LAST_CAP: u32 = 63;

/// /proc paths bound read-only over themselves.
const PROC_READONLY: &[&str] = &["sys", "irq", "bus", "fs", "sysrq-trigger"];
/// Paths hidden, as Docker hides them (and kallsyms): a file under
/// /dev/null, a directory under an empty read-only tmpfs.
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kallsyms",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The child's program: its steps, and a description of each for errors.
/// It borrows the fds that become the container's stdio.
pub struct Plan<'fd> {
    steps: Vec<Step<'fd>>,
    what: Vec<String>,
}

/// Why building or running the plan failed.
#[derive(Debug)]
pub enum SpawnError {
    /// A string for the child (a path, argument, variable) holds a NUL byte.
    NulByte,
    /// The definition has no command to run.
    NoCommand,
    /// The container's seccomp filter cannot be made.
    Seccomp(SeccompError),
    /// Creating the init's report pipe.
    CreatePipe(io::Error),
    /// Copying a stdio fd above the numbers the child moves fds onto.
    MoveFd(io::Error),
    Clone(io::Error),
    /// Reading the init's report.
    ReadReport(io::Error),
    /// The init died before it reported or exec'd.
    DiedBeforeExec,
    /// Step `what` failed in the init with `errno`.
    Step {
        what: String,
        errno: i32,
    },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NulByte => f.write_str("string contains a NUL byte"),
            SpawnError::NoCommand => f.write_str("no command to run"),
            SpawnError::Seccomp(e) => write!(f, "{e}"),
            SpawnError::CreatePipe(e) => {
                write!(f, "create pipe: {err}", err = errors::io_text(e))
            }
            SpawnError::MoveFd(e) => {
                write!(f, "move fd for the init: {err}", err = errors::io_text(e))
            }
            SpawnError::Clone(e) => write!(f, "clone: {}", io_text(e)),
            SpawnError::ReadReport(e) => write!(
                f,
                "read from the container's init: {err}",
                err = errors::io_text(e)
            ),
            SpawnError::DiedBeforeExec => f.write_str("the container's init died before exec"),
            SpawnError::Step { what, errno } => write!(f, "{what}: {}", errno_text(*errno)),
        }
    }
}

impl From<LaunchError> for SpawnError {
    fn from(e: LaunchError) -> SpawnError {
        match e {
            LaunchError::Pipe(e) => SpawnError::CreatePipe(e),
            LaunchError::Dup(e) => SpawnError::MoveFd(e),
            LaunchError::Clone(e) => SpawnError::Clone(e),
        }
    }
}

fn cstr(s: impl AsRef<[u8]>) -> Result<CString, SpawnError> {
    CString::new(s.as_ref().to_vec()).map_err(|_| SpawnError::NulByte)
}

/// What a process joining a running container needs besides its
/// definition (see [`Plan::build_join`]).
pub struct Join<'fd> {
    /// A pidfd of the container's init.
    pub init: BorrowedFd<'fd>,
    /// The init's namespaces to join (CLONE_NEW* flags): every one it
    /// does not share with this process.
    pub namespaces: libc::c_int,
    /// Instead of setns(2) with `init` (which Linux takes from 5.8 on):
    /// a handle of each namespace to join, opened from /proc/PID/ns, in
    /// the order to join them, each with its path and CLONE_NEW* flag.
    pub handles: Option<Vec<NsHandle<'fd>>>,
    /// The writing end of a pipe that gets the process's pid.
    pub pid_to: BorrowedFd<'fd>,
    /// The init's cgroups, one directory per hierarchy.
    pub cgroups: Vec<std::path::PathBuf>,
    pub command: Vec<String>,
    /// Its environment (PATH, HOSTNAME and HOME are added if missing).
    pub vars: Vec<String>,
    pub workdir: String,
    /// Whether stdio is a terminal to make the controlling one.
    pub tty: bool,
}

/// A namespace of the container's init, open: see `Join::handles`.
pub struct NsHandle<'fd> {
    pub fd: BorrowedFd<'fd>,
    /// Its CLONE_NEW* flag.
    pub kind: libc::c_int,
    /// Where it was opened (/proc/PID/ns/NAME).
    pub path: String,
}

/// The fds the container's stdio comes from.
pub struct Stdio<'fd> {
    pub stdin: BorrowedFd<'fd>,
    pub stdout: BorrowedFd<'fd>,
    pub stderr: BorrowedFd<'fd>,
}

impl<'fd> Plan<'fd> {
    /// Builds the whole sequence for `spec`, joining `cgroup_dirs`. The
    /// rootfs is bound onto `mount_point` (an empty directory of berth's
    /// own, in run-dir) and assembled there: pivot_root needs the new root
    /// to be a mount reached by a path, which a rootfs of "/" bound onto
    /// itself is not. `born_in` is the cgroup2 directory of `cgroup_dirs`,
    /// if any, which `spawn` tries to create the child in. `env` is what
    /// the process is given (see `environment`).
    pub fn build(
        spec: &ContainerSpec,
        env: &Environment,
        mount_point: &Path,
        cgroup_dirs: &[std::path::PathBuf],
        born_in: Option<&Path>,
        stdio: &Stdio<'fd>,
    ) -> Result<Plan<'fd>, SpawnError> {
        if spec.command.is_empty() {
            return Err(SpawnError::NoCommand);
        }
        let mut b = Builder {
            steps: Vec::new(),
            what: Vec::new(),
        };
        let root = mount_point.as_os_str().as_bytes().to_vec();
        // A path in the container ("/dev/pts") as the child resolves it:
        // relative to the rootfs, inside it.
        let at = |p: &str| cstr(p.trim_start_matches('/'));
        let in_root = |p: &str| at(p).map(Target::InRoot);

        b.op(Step::ResetSignals, "reset signals");
        b.op(Step::Setsid, "setsid");
        for dir in cgroup_dirs {
            let procs = dir.join("cgroup.procs");
            let born_here = born_in.is_some_and(|b| b == dir.as_path());
            b.op(
                Step::JoinCgroup {
                    procs: cstr(procs.as_os_str().as_bytes())?,
                    born_here,
                },
                format!("join cgroup {}", dir.display()),
            );
        }
        b.op(
            Step::Unshare(libc::CLONE_NEWCGROUP),
            "unshare cgroup namespace",
        );
        b.op(
            Step::SetOomScoreAdj(cstr(env.oom_score_adj.to_string())?),
            format!("set oom-score-adj to {}", env.oom_score_adj),
        );

        // Mounts, all below the rootfs until pivot_root.
        b.mount(
            None,
            Target::Host(cstr("/")?),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
            "make mounts private",
        );
        let rootfs = cstr(&root)?;
        b.mount(
            Some(cstr(spec.rootfs.as_os_str().as_bytes())?),
            Target::Host(rootfs.clone()),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
            format!("bind rootfs {}", spec.rootfs.display()),
        );
        b.op(
            Step::OpenRoot(rootfs.clone()),
            format!("open rootfs {}", spec.rootfs.display()),
        );
        if spec.readonly_rootfs {
            // Every mount point first, then the rootfs (with whatever is
            // mounted below it, e.g. a host's /run when the rootfs is /)
            // read-only; the mounts made after this keep their own flags.
            for dir in ["/proc", "/dev", "/sys"] {
                b.op(Step::Mkdir(at(dir)?), format!("create {dir}"));
            }
            // (Not those under /dev: berth's own tmpfs goes there, and
            // they are made in it.)
            for m in spec
                .mounts
                .iter()
                .filter(|m| !m.target.starts_with("/dev/"))
            {
                b.mount_point(m, at(&m.target)?);
            }
            for (target, _) in etc_binds(spec, env).into_iter().filter(|_| env.etc_create) {
                b.op(
                    Step::TouchIfWritable(at(&target)?),
                    format!("create mount point {target}"),
                );
            }
            b.op(
                Step::RemountReadonly(Target::Host(rootfs.clone())),
                "make the rootfs read-only",
            );
        }
        b.op(Step::Mkdir(at("/proc")?), "create /proc");
        b.mount(
            Some(cstr("proc")?),
            in_root("/proc")?,
            Some(cstr("proc")?),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
            "mount proc on /proc",
        );
        b.sysctls(&spec.sysctl)?;
        // What a container's root must not write or read in /proc: kernel
        // tunables (core_pattern runs a program as host root), and files
        // that expose kernel memory or other tenants' keys.
        for p in PROC_READONLY {
            b.op(
                Step::ReadonlyOptional(at(&format!("/proc/{p}"))?),
                format!("make /proc/{p} read-only"),
            );
        }
        b.op(Step::Mkdir(at("/dev")?), "create /dev");
        b.mount(
            Some(cstr("tmpfs")?),
            in_root("/dev")?,
            Some(cstr("tmpfs")?),
            // nodev: no device node made or put here works; the allowed
            // devices are bind mounts of their own.
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_STRICTATIME,
            Some(cstr("mode=755,size=1m")?),
            "mount tmpfs on /dev",
        );
        for dev in DEVICES {
            let target = at(&format!("/dev/{dev}"))?;
            b.op(Step::Touch(target.clone()), format!("create /dev/{dev}"));
            b.mount(
                Some(cstr(format!("/dev/{dev}"))?),
                Target::InRoot(target),
                None,
                libc::MS_BIND,
                None,
                format!("bind /dev/{dev}"),
            );
        }
        // Listed host devices, at any depth under /dev (parents made in
        // the tmpfs); the device cgroup grants each its access.
        for d in &spec.devices {
            let target = at(&d.target)?;
            b.op(Step::Touch(target.clone()), format!("create {}", d.target));
            b.mount(
                Some(cstr(d.path.as_os_str().as_bytes())?),
                Target::InRoot(target),
                None,
                libc::MS_BIND,
                None,
                format!("bind device {} on {}", d.path.display(), d.target),
            );
        }
        b.op(Step::Mkdir(at("/dev/pts")?), "create /dev/pts");
        // As Docker mounts it: new terminals group tty (5), mode 620.
        b.mount(
            Some(cstr("devpts")?),
            in_root("/dev/pts")?,
            Some(cstr("devpts")?),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(cstr("newinstance,ptmxmode=0666,mode=0620,gid=5")?),
            "mount devpts on /dev/pts",
        );
        b.op(
            Step::Symlink {
                target: cstr("pts/ptmx")?,
                link: at("/dev/ptmx")?,
            },
            "link /dev/ptmx",
        );
        b.op(Step::Mkdir(at("/dev/shm")?), "create /dev/shm");
        b.mount(
            Some(cstr("shm")?),
            in_root("/dev/shm")?,
            Some(cstr("tmpfs")?),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(cstr("mode=1777,size=64m")?),
            "mount tmpfs on /dev/shm",
        );
        // POSIX message queues of the container's own IPC namespace.
        b.op(Step::Mkdir(at("/dev/mqueue")?), "create /dev/mqueue");
        b.mount(
            Some(cstr("mqueue")?),
            in_root("/dev/mqueue")?,
            Some(cstr("mqueue")?),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
            "mount mqueue on /dev/mqueue",
        );
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            b.op(
                Step::Symlink {
                    target: cstr(target)?,
                    link: at(&format!("/dev/{link}"))?,
                },
                format!("link /dev/{link}"),
            );
        }
        b.op(Step::Mkdir(at("/sys")?), "create /sys");
        b.mount(
            Some(cstr("sysfs")?),
            in_root("/sys")?,
            Some(cstr("sysfs")?),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
            "mount sysfs on /sys",
        );
        for p in MASKED {
            b.op(Step::MaskOptional(at(p)?), format!("mask {p}"));
        }

        for (target, source) in etc_binds(spec, env) {
            b.op(
                Step::BindFileOptional {
                    source: cstr(source.as_os_str().as_bytes())?,
                    target: at(&target)?,
                    create: env.etc_create,
                },
                format!("bind {} on {target} read-only", source.display()),
            );
        }
        for m in &spec.mounts {
            let target = at(&m.target)?;
            match &m.kind {
                MountKind::Bind { source } => {
                    let what = format!("bind {} on {}", source.display(), m.target);
                    b.mount_point(m, target.clone());
                    b.mount(
                        Some(cstr(source.as_os_str().as_bytes())?),
                        Target::InRoot(target.clone()),
                        None,
                        libc::MS_BIND | libc::MS_REC,
                        None,
                        what.clone(),
                    );
                    if m.readonly {
                        b.op(
                            Step::RemountReadonly(Target::InRoot(target)),
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
                        Target::InRoot(target),
                        Some(cstr("tmpfs")?),
                        flags,
                        Some(cstr(data)?),
                        format!("mount tmpfs on {}", m.target),
                    );
                }
            }
        }

        b.op(
            Step::Chdir(rootfs),
            format!("enter rootfs {}", spec.rootfs.display()),
        );
        b.op(
            Step::PivotRoot,
            format!("pivot_root into {}", spec.rootfs.display()),
        );
        b.op(Step::UmountDetach(cstr(".")?), "detach the old root");
        b.op(Step::Chdir(cstr("/")?), "enter /");
        b.op(
            Step::Hostname(cstr(&spec.hostname)?),
            format!("set hostname {}", spec.hostname),
        );
        if spec.network != Network::Host {
            b.op(Step::LoopbackUp, "bring up lo");
        }
        b.op(
            Step::Chdir(cstr(&spec.workdir)?),
            format!("enter workdir {}", spec.workdir),
        );
        b.stdio(stdio);
        b.finish(spec, env, &spec.command, spec.env.clone())
    }

    /// The program of a process joining a running container (`berth
    /// exec`): it joins the init's cgroups, then its namespaces (a clone
    /// of its own, see `Step::Enter`), then takes the same limits,
    /// capabilities, ids, no_new_privs and seccomp filter as the init
    /// would with `env`, and execs `join.command`. With `join.tty` its
    /// stdio (all three the terminal) becomes its controlling terminal.
    pub fn build_join(
        spec: &ContainerSpec,
        env: &Environment,
        join: &Join<'fd>,
        stdio: &Stdio<'fd>,
    ) -> Result<Plan<'fd>, SpawnError> {
        if join.command.is_empty() {
            return Err(SpawnError::NoCommand);
        }
        let mut b = Builder {
            steps: Vec::new(),
            what: Vec::new(),
        };
        b.op(Step::ResetSignals, "reset signals");
        for dir in &join.cgroups {
            let procs = dir.join("cgroup.procs");
            b.op(
                Step::JoinCgroup {
                    procs: cstr(procs.as_os_str().as_bytes())?,
                    born_here: false,
                },
                format!("join cgroup {}", dir.display()),
            );
        }
        if let Some(handles) = &join.handles {
            for h in handles {
                b.op(
                    Step::SetNs {
                        ns: h.fd,
                        kind: h.kind,
                    },
                    format!("join the init's namespace {}", h.path),
                );
            }
        }
        b.op(
            Step::Enter {
                process: join.handles.is_none().then_some(join.init),
                namespaces: join.namespaces,
                pid_to: join.pid_to,
            },
            "enter the namespaces of the container's init",
        );
        b.op(Step::Setsid, "setsid");
        b.op(
            Step::SetOomScoreAdj(cstr(env.oom_score_adj.to_string())?),
            format!("set oom-score-adj to {}", env.oom_score_adj),
        );
        b.op(
            Step::Chdir(cstr(&join.workdir)?),
            format!("enter workdir {}", join.workdir),
        );
        b.stdio(stdio);
        if join.tty {
            b.op(
                Step::ControllingTty,
                "make the terminal the controlling terminal",
            );
        }
        b.finish(spec, env, &join.command, join.vars.clone())
    }

    /// Runs a plan made by `build_join`: the process is started (through
    /// a short-lived process of its own that joins the namespaces), and
    /// this returns once it exec'd, with its pid and a pidfd, or with the
    /// failed step. `pid_from` is the reading end of the pipe whose
    /// writing end the plan's `Join::pid_to` is.
    pub fn spawn_joined(&self, pid_from: &OwnedFd) -> Result<(i32, OwnedFd), SpawnError> {
        let middle = child::start(&self.steps, 0, None)?;
        let report = middle.wait_for_exec().map_err(SpawnError::ReadReport);
        // The middle process ends once it cloned (or failed): its pid
        // report is then in the pipe, if it wrote one.
        let _ = process::waitid_pidfd(&middle.pidfd, true);
        let mut bytes = [0u8; 4];
        let pid = fd::set_nonblocking(pid_from, true)
            .and_then(|()| fd::read(pid_from, &mut bytes))
            .ok()
            .filter(|&n| n == bytes.len())
            .map(|_| i32::from_le_bytes(bytes))
            .filter(|&pid| pid > 0);
        // From here the joined process, once there is one, is our child:
        // unless it is handed back, it is killed and reaped.
        let Some(pid) = pid else {
            return Err(match report? {
                InitReport::Execed => SpawnError::DiedBeforeExec,
                report => self.failure(report),
            });
        };
        let pidfd = match process::pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                // Not reaped yet, so the pid is still the joined process's.
                process::kill_and_reap_child(pid);
                return Err(SpawnError::Clone(e));
            }
        };
        if let Ok(InitReport::Execed) = report {
            return Ok((pid, pidfd));
        }
        // It failed a step (and exits), or how it went is not known: end
        // it, reap it, then say why.
        let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
        let _ = process::waitid_pidfd(&pidfd, true);
        Err(match report {
            Ok(report) => self.failure(report),
            Err(e) => e,
        })
    }

    /// Makes the init join the network namespace `ns` (held at `path`, see
    /// `net::netns`) before anything else, instead of a new one: call it
    /// before `under_init`, which counts the steps.
    pub fn join_network(&mut self, ns: BorrowedFd<'fd>, path: &Path) {
        self.steps.insert(
            0,
            Step::SetNs {
                ns,
                kind: libc::CLONE_NEWNET,
            },
        );
        self.what
            .insert(0, format!("join the network namespace {}", path.display()));
    }

    /// Runs the command under berth's own init (`"init": true`): the
    /// last step, the command's exec, is preceded by the exec of the berth
    /// binary open at `exe` as the container's pid 1, which starts the
    /// command; the exec step stays to name the command's exec in a report
    /// the init's child writes (see `init`).
    pub fn under_init(&mut self, exe: BorrowedFd<'fd>) -> Result<(), SpawnError> {
        let Some(Step::Exec {
            candidates,
            argv,
            envp,
        }) = self.steps.last()
        else {
            return Err(SpawnError::NoCommand);
        };
        let at = self.steps.len() - 1;
        let command = init::Command {
            // Where the exec step is once the init's is put before it.
            step: (at + 1) as u32,
            candidates: candidates.clone(),
            argv: argv.strings().to_vec(),
        };
        let step = Step::ExecInit {
            exe,
            report_to: init::REPORT_FD,
            argv: Argv::new(init::argv(&command)),
            envp: Envp::new(envp.strings().to_vec()),
        };
        self.steps.insert(at, step);
        self.what.insert(at, "start berth's init".to_string());
        Ok(())
    }

    /// Clones the container's init into new namespaces (a network
    /// namespace of its own with `new_net`) and runs the plan in it. Returns once execve succeeded (or with the failed step).
    /// `cgroup` is an fd of the cgroup2 directory given to `build` as
    /// `born_in`: the child is created in it (CLONE_INTO_CGROUP) when the
    /// kernel allows, else it joins by writing cgroup.procs like the others.
    pub fn spawn(
        &self,
        new_net: bool,
        cgroup: Option<&OwnedFd>,
    ) -> Result<(i32, OwnedFd), SpawnError> {
        let mut flags =
            libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        if new_net {
            flags |= libc::CLONE_NEWNET;
        }
        let init = child::start(&self.steps, flags, cgroup.map(AsFd::as_fd))?;
        let report = init.wait_for_exec().map_err(SpawnError::ReadReport)?;
        if report == InitReport::Execed {
            return Ok(init.into_parts());
        }
        // The child failed and exited: reap it, then say why.
        let _ = process::waitid_pidfd(&init.pidfd, true);
        Err(self.failure(report))
    }

    /// What went wrong, from a report other than `Execed`.
    fn failure(&self, report: InitReport) -> SpawnError {
        match report {
            InitReport::Failed(Failure { step, errno }) => {
                let mut what = self.describe(step).unwrap_or("unknown step").to_string();
                if let Some(hint) = self.steps.get(step as usize).and_then(|s| hint(s, errno)) {
                    what.push_str(&format!(" ({hint})"));
                }
                SpawnError::Step { what, errno }
            }
            InitReport::Execed | InitReport::DiedEarly => SpawnError::DiedBeforeExec,
        }
    }

    /// The description of step `index`, if there is one.
    fn describe(&self, index: u32) -> Option<&str> {
        self.what.get(index as usize).map(String::as_str)
    }
}

/// The /etc files berth provides, as (path in the container, host file),
/// once written (`env.etc_dir`); one a `mounts` entry targets is left to it.
fn etc_binds(spec: &ContainerSpec, env: &Environment) -> Vec<(String, std::path::PathBuf)> {
    let Some(dir) = &env.etc_dir else {
        return Vec::new();
    };
    etc_files::FILES
        .iter()
        .map(|name| (format!("/etc/{name}"), dir.join(name)))
        .filter(|(target, _)| !spec.mounts.iter().any(|m| &m.target == target))
        .collect()
}

/// Why a step that a definition asked for may fail on a host that works:
/// what the kernel needs for it.
fn hint(step: &Step<'_>, errno: i32) -> Option<&'static str> {
    match (step, errno) {
        (Step::SetOomScoreAdj(_), libc::EACCES) => {
            Some("without CAP_SYS_RESOURCE, no lower than the daemon's own minimum")
        }
        (Step::ExecInit { .. }, libc::ENOENT) => Some(
            "berth's init runs the berth binary inside the rootfs: it must be statically linked",
        ),
        (Step::SetRlimit { clamp: false, .. }, libc::EPERM) => Some(
            "a hard limit above the daemon's own needs CAP_SYS_RESOURCE, and nofile is at most fs/nr_open",
        ),
        _ => None,
    }
}

struct Builder<'fd> {
    steps: Vec<Step<'fd>>,
    what: Vec<String>,
}

impl<'fd> Builder<'fd> {
    fn op(&mut self, step: Step<'fd>, what: impl Into<String>) {
        self.steps.push(step);
        self.what.push(what.into());
    }

    /// stdin, stdout and stderr onto fds 0, 1 and 2.
    fn stdio(&mut self, stdio: &Stdio<'fd>) {
        for (from, to, what) in [
            (stdio.stdin, 0, "set up stdin"),
            (stdio.stdout, 1, "set up stdout"),
            (stdio.stderr, 2, "set up stderr"),
        ] {
            self.op(Step::Dup2 { from, to }, what);
        }
    }

    /// The end of every program: the privileges, then the exec of
    /// `command` with `vars`.
    fn finish(
        mut self,
        spec: &ContainerSpec,
        env: &Environment,
        command: &[String],
        vars: Vec<String>,
    ) -> Result<Plan<'fd>, SpawnError> {
        self.privileges(spec, env)?;
        self.exec(command, vars, &spec.hostname, env.home.as_deref())?;
        Ok(Plan {
            steps: self.steps,
            what: self.what,
        })
    }

    /// Limits, capabilities, groups and ids, no_new_privs and the seccomp
    /// filter, as `env` and `spec` give them: the same for a container's
    /// init and for a process joining it.
    fn privileges(&mut self, spec: &ContainerSpec, env: &Environment) -> Result<(), SpawnError> {
        // Every limit and all five capability sets are set, so nothing the
        // daemon inherited (raised limits, inheritable or ambient
        // capabilities, supplementary groups) reaches the container.
        for l in &env.rlimits {
            let (soft, hard) = (config::limit_text(l.soft), config::limit_text(l.hard));
            let what = if l.from_file {
                format!("set rlimits.{} to {soft}:{hard}", l.name)
            } else {
                format!("set the default rlimit {} to {soft}:{hard}", l.name)
            };
            self.op(
                Step::SetRlimit {
                    resource: l.resource,
                    soft: l.soft,
                    hard: l.hard,
                    clamp: !l.from_file,
                },
                what,
            );
        }
        for c in 0..=LAST_CAP {
            if env.capabilities & (1 << c) == 0 {
                self.op(
                    Step::DropBounding(c),
                    format!("drop {} from the bounding set", config::cap_name(c)),
                );
            }
        }
        let groups = match env.groups.as_slice() {
            [] => "clear supplementary groups".to_string(),
            gids => format!(
                "set supplementary groups {}",
                gids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        self.op(Step::SetGroups(env.groups.clone()), groups);
        self.op(Step::KeepCaps, "keep capabilities across the uid change");
        let (uid, gid) = (env.uid, env.gid);
        self.op(Step::SetIds { uid, gid }, format!("set user {uid}:{gid}"));
        self.op(
            Step::SetCaps {
                effective: env.permitted,
                permitted: env.permitted,
                inheritable: env.ambient,
            },
            "set capabilities",
        );
        self.op(Step::SetAmbient(env.ambient), "set ambient capabilities");
        self.op(Step::NoNewPrivs, "set no_new_privs");
        // After the uid change, which would clear it.
        self.op(Step::DieWithParent, "set parent death signal");
        self.op(Step::CloexecFrom(3), "close inherited fds");
        // The last step before exec; what the filter allows depends on the
        // capabilities the process holds (a user's namespaces need none).
        if let Some(filter) =
            seccomp::prepare(&spec.seccomp, env.permitted).map_err(SpawnError::Seccomp)?
        {
            self.op(Step::Seccomp(filter), "install seccomp filter");
        }

        Ok(())
    }

    /// The execve of `command`: argv, envp (`vars` with PATH, HOSTNAME and
    /// HOME added where missing) and every PATH candidate, built now.
    fn exec(
        &mut self,
        command: &[String],
        mut vars: Vec<String>,
        hostname: &str,
        home: Option<&str>,
    ) -> Result<(), SpawnError> {
        let Some(prog) = command.first() else {
            return Err(SpawnError::NoCommand);
        };
        let argv = command.iter().map(cstr).collect::<Result<_, _>>()?;
        if !vars.iter().any(|e| e.starts_with("PATH=")) {
            vars.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        if !vars.iter().any(|e| e.starts_with("HOSTNAME=")) {
            vars.push(format!("HOSTNAME={hostname}"));
        }
        if !vars.iter().any(|e| e.starts_with("HOME=")) {
            vars.push(format!("HOME={}", home.unwrap_or("/")));
        }
        let path_var = vars
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let envp = vars.iter().map(cstr).collect::<Result<_, _>>()?;
        let candidates = if prog.contains('/') {
            vec![cstr(prog)?]
        } else {
            path_var
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| cstr(format!("{}/{prog}", d.trim_end_matches('/'))))
                .collect::<Result<_, _>>()?
        };
        self.op(
            Step::Exec {
                candidates,
                argv: Argv::new(argv),
                envp: Envp::new(envp),
            },
            format!("exec {prog}"),
        );
        Ok(())
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
            self.op(Step::Mkdir(target), what);
        } else {
            self.op(Step::Touch(target), what);
        }
    }

    /// Writes each `sysctl` setting in the container's /proc/sys (mounted,
    /// not yet read-only): "net.ipv4.ip_forward" is proc/sys/net/ipv4/ip_forward.
    fn sysctls(&mut self, sysctl: &[(String, String)]) -> Result<(), SpawnError> {
        for (key, value) in sysctl {
            self.op(
                Step::WriteInRoot {
                    path: cstr(format!("proc/sys/{}", key.replace('.', "/")))?,
                    data: cstr(value)?,
                },
                format!("set sysctl {key} to {value:?}"),
            );
        }
        Ok(())
    }

    fn mount(
        &mut self,
        source: Option<CString>,
        target: Target,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
        what: impl Into<String>,
    ) {
        self.op(
            Step::Mount {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::environment;
    use crate::sys::fd;
    use std::path::PathBuf;

    fn spec(json: &str) -> ContainerSpec {
        config::parse_container("web", json, Path::new("web.json")).unwrap()
    }

    /// What `spec` gets on a host like the development machine's.
    fn env(spec: &ContainerSpec) -> Environment {
        let identity = environment::numeric_identity(spec, Vec::new());
        environment::work_out(spec, &environment::TEST_HOST, identity).unwrap()
    }

    /// Stdio for a plan from a pipe that outlives it: stdin its read end,
    /// stdout and stderr its write end.
    fn pipe_stdio(pipe: &(OwnedFd, OwnedFd)) -> Stdio<'_> {
        Stdio {
            stdin: pipe.0.as_fd(),
            stdout: pipe.1.as_fd(),
            stderr: pipe.1.as_fd(),
        }
    }

    /// Runs `f` on a plan for `spec`, with stdio from a pipe that outlives
    /// it.
    fn with_plan<T>(
        spec: &ContainerSpec,
        cgroups: &[PathBuf],
        born_in: Option<&Path>,
        f: impl FnOnce(&Plan<'_>) -> T,
    ) -> T {
        let pipe = fd::pipe().unwrap();
        let stdio = pipe_stdio(&pipe);
        let plan = Plan::build(
            spec,
            &env(spec),
            Path::new("/run/berth/web/rootfs"),
            cgroups,
            born_in,
            &stdio,
        )
        .unwrap();
        assert_eq!(plan.steps.len(), plan.what.len());
        f(&plan)
    }

    /// The step descriptions of a plan for `spec`.
    fn build(spec: &ContainerSpec, cgroups: &[PathBuf], born_in: Option<&Path>) -> Vec<String> {
        with_plan(spec, cgroups, born_in, |plan| plan.what.clone())
    }

    fn position(what: &[String], step: &str) -> usize {
        what.iter()
            .position(|w| w == step)
            .unwrap_or_else(|| panic!("no step {step:?} in {what:#?}"))
    }

    #[test]
    fn steps_run_in_order() {
        let s = spec(r#"{"rootfs": "/srv/web", "command": ["/bin/app"]}"#);
        let what = build(&s, &[PathBuf::from("/sys/fs/cgroup/berth/web")], None);
        assert_eq!(
            what[..6],
            [
                "reset signals",
                "setsid",
                "join cgroup /sys/fs/cgroup/berth/web",
                "unshare cgroup namespace",
                "set oom-score-adj to 0",
                "make mounts private",
            ]
        );
        let order = [
            "bind rootfs /srv/web",
            "open rootfs /srv/web",
            "mount proc on /proc",
            "make /proc/sys read-only",
            "mount tmpfs on /dev",
            "bind /dev/null",
            "mount devpts on /dev/pts",
            "mount mqueue on /dev/mqueue",
            "mount sysfs on /sys",
            "mask /proc/kcore",
            "mask /sys/firmware",
            "enter rootfs /srv/web",
            "pivot_root into /srv/web",
            "detach the old root",
            "enter /",
            "set hostname web",
            "bring up lo",
            "enter workdir /",
            "set up stdin",
            "set up stdout",
            "set up stderr",
            "set the default rlimit nofile to 1048576:1048576",
            "drop CAP_DAC_READ_SEARCH from the bounding set",
            "clear supplementary groups",
            "keep capabilities across the uid change",
            "set user 0:0",
            "set capabilities",
            "set ambient capabilities",
            "set no_new_privs",
            "set parent death signal",
            "close inherited fds",
            "install seccomp filter",
            "exec /bin/app",
        ];
        let at: Vec<usize> = order.iter().map(|s| position(&what, s)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{what:#?}");
        assert_eq!(what.last().map(String::as_str), Some("exec /bin/app"));
        let dropped = what.iter().filter(|w| w.starts_with("drop CAP_")).count();
        // The 13 capabilities of the default set are kept.
        assert_eq!(dropped, (LAST_CAP + 1) as usize - 13);
        assert!(!what.iter().any(|w| w.starts_with("drop CAP_CHOWN")));
        position(&what, "set the default rlimit core to 0:unlimited");
        let rlimits = what.iter().filter(|w| w.contains(" rlimit")).count();
        assert_eq!(rlimits, 16);
    }

    #[test]
    fn options_add_their_steps() {
        let s = spec(
            r#"{"rootfs": "/srv/web", "command": ["app"], "user": "1000:2000",
                "network": "host", "readonly-rootfs": true, "workdir": "/data",
                "mounts": [{"type": "tmpfs", "target": "/tmp", "size": "1m"}],
                "seccomp": "unconfined"}"#,
        );
        let what = build(&s, &[], None);
        assert!(!what.iter().any(|w| w.contains("seccomp")), "unconfined");
        assert!(!what.iter().any(|w| w.starts_with("join cgroup")));
        assert!(!what.contains(&"bring up lo".to_string()), "host network");
        // Mount points exist before the rootfs turns read-only.
        assert!(
            position(&what, "create mount point /tmp")
                < position(&what, "make the rootfs read-only")
        );
        assert!(
            position(&what, "make the rootfs read-only") < position(&what, "mount proc on /proc")
        );
        assert!(position(&what, "mount sysfs on /sys") < position(&what, "mount tmpfs on /tmp"));
        assert!(
            position(&what, "clear supplementary groups") < position(&what, "set user 1000:2000")
        );
        // no_new_privs and the death signal after the uid change, which
        // would clear the latter.
        assert!(position(&what, "set user 1000:2000") < position(&what, "set parent death signal"));
        assert!(position(&what, "enter /") < position(&what, "enter workdir /data"));
        assert_eq!(what.last().map(String::as_str), Some("exec app"));
    }

    #[test]
    fn sysctls_are_written_after_proc_is_mounted_and_before_it_is_read_only() {
        let s = spec(
            r#"{"rootfs": "/srv/web", "command": ["app"],
                "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "65536"}}"#,
        );
        let (what, paths) = with_plan(&s, &[], None, |plan| {
            let paths: Vec<String> = plan
                .steps
                .iter()
                .filter_map(|s| match s {
                    Step::WriteInRoot { path, data } => Some(format!(
                        "{}={}",
                        path.to_str().unwrap(),
                        data.to_str().unwrap()
                    )),
                    _ => None,
                })
                .collect();
            (plan.what.clone(), paths)
        });
        assert_eq!(
            paths,
            [
                "proc/sys/net/ipv4/ip_forward=1",
                "proc/sys/kernel/shmmax=65536"
            ]
        );
        let set = position(&what, "set sysctl net.ipv4.ip_forward to \"1\"");
        assert!(position(&what, "mount proc on /proc") < set);
        assert!(set < position(&what, "make /proc/sys read-only"));
    }

    #[test]
    fn etc_files_are_bound_before_the_mounts_and_a_mount_wins() {
        let pipe = fd::pipe().unwrap();
        let stdio = pipe_stdio(&pipe);
        let s = spec(
            r#"{"rootfs": "/srv/web", "command": ["app"], "readonly-rootfs": true,
                "mounts": [{"source": "/etc/hosts", "target": "/etc/hosts"},
                           {"type": "tmpfs", "target": "/tmp"}]}"#,
        );
        let mut e = env(&s);
        e.etc_dir = Some(PathBuf::from("/run/berth/containers/web/etc"));
        // In the host's own root no mount point is made; the binds stay.
        let plan = Plan::build(&s, &e, Path::new("/m"), &[], None, &stdio).unwrap();
        for file in ["hostname", "resolv.conf"] {
            let create = format!("create mount point /etc/{file}");
            assert!(!plan.what.contains(&create), "{:#?}", plan.what);
        }
        position(
            &plan.what,
            "bind /run/berth/containers/web/etc/hostname on /etc/hostname read-only",
        );
        e.etc_create = true;
        let plan = Plan::build(&s, &e, Path::new("/m"), &[], None, &stdio).unwrap();
        let what = &plan.what;
        let bind = "bind /run/berth/containers/web/etc/resolv.conf on /etc/resolv.conf read-only";
        assert!(
            position(what, "create mount point /etc/resolv.conf")
                < position(what, "make the rootfs read-only")
        );
        assert!(position(what, "mount sysfs on /sys") < position(what, bind));
        assert!(position(what, bind) < position(what, "mount tmpfs on /tmp"));
        position(
            what,
            "bind /run/berth/containers/web/etc/hostname on /etc/hostname read-only",
        );
        assert!(
            !what.iter().any(|w| w.ends_with("on /etc/hosts read-only")),
            "{what:#?}"
        );
        position(what, "bind /etc/hosts on /etc/hosts");
        // Without the files written (`"etc-files": false`), no step.
        let plan = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio).unwrap();
        assert!(!plan.what.iter().any(|w| w.contains("resolv.conf")));
    }

    #[test]
    fn every_path_in_the_rootfs_is_resolved_inside_it() {
        let s = spec(
            r#"{"rootfs": "/srv/web", "command": ["app"], "readonly-rootfs": true,
                "mounts": [{"type": "tmpfs", "target": "/data/tmp"},
                           {"source": "/etc/hostname", "target": "/etc/name", "readonly": true}]}"#,
        );
        let (host, in_root) = with_plan(&s, &[], None, |plan| {
            let mut host = Vec::new();
            let mut in_root = Vec::new();
            for step in &plan.steps {
                let (target, path) = match step {
                    Step::Mount { target, .. } | Step::RemountReadonly(target) => match target {
                        Target::Host(p) => (&mut host, p),
                        Target::InRoot(p) => (&mut in_root, p),
                    },
                    Step::Mkdir(p)
                    | Step::Touch(p)
                    | Step::Symlink { link: p, .. }
                    | Step::MaskOptional(p)
                    | Step::ReadonlyOptional(p) => (&mut in_root, p),
                    _ => continue,
                };
                target.push(path.to_str().unwrap().to_string());
            }
            (host, in_root)
        });
        // Only berth's own paths are host paths.
        let mount_point = "/run/berth/web/rootfs".to_string();
        assert_eq!(host, ["/", &mount_point, &mount_point]);
        assert!(in_root.iter().all(|p| !p.starts_with('/')), "{in_root:#?}");
        for p in [
            "proc", "dev", "dev/pts", "dev/null", "sys", "data/tmp", "etc/name",
        ] {
            assert!(in_root.iter().any(|q| q == p), "{p} not in {in_root:#?}");
        }
    }

    #[test]
    fn devices_are_bound_in_the_dev_tmpfs_and_mounts_under_dev_made_there() {
        let s = spec(
            r#"{"rootfs": "/srv/web", "command": ["app"], "readonly-rootfs": true,
                "devices": [{"path": "/dev/serial/by-id/usb-x", "target": "/dev/tty/gps"}],
                "mounts": [{"type": "tmpfs", "target": "/dev/net/x"}]}"#,
        );
        let what = build(&s, &[], None);
        let bind = position(&what, "bind device /dev/serial/by-id/usb-x on /dev/tty/gps");
        assert!(position(&what, "mount tmpfs on /dev") < position(&what, "create /dev/tty/gps"));
        assert_eq!(position(&what, "create /dev/tty/gps") + 1, bind);
        // Not made in the rootfs's own /dev before it turns read-only.
        let made = what
            .iter()
            .filter(|w| *w == "create mount point /dev/net/x")
            .count();
        assert_eq!(made, 1, "{what:#?}");
        assert!(
            position(&what, "mount sysfs on /sys")
                < position(&what, "create mount point /dev/net/x")
        );
        let targets: Vec<String> = with_plan(&s, &[], None, |plan| {
            plan.steps
                .iter()
                .filter_map(|step| match step {
                    Step::Mount {
                        source: Some(src),
                        target: Target::InRoot(t),
                        ..
                    } if src.to_bytes().starts_with(b"/dev/serial") => {
                        Some(t.to_str().unwrap().to_string())
                    }
                    _ => None,
                })
                .collect()
        });
        assert_eq!(targets, ["dev/tty/gps"]);
    }

    #[test]
    fn the_cgroup_born_in_is_marked() {
        let s = spec(r#"{"rootfs": "/srv/web", "command": ["/bin/app"]}"#);
        let v1 = PathBuf::from("/sys/fs/cgroup/memory/berth/web");
        let v2 = PathBuf::from("/sys/fs/cgroup/unified/berth/web");
        let joins: Vec<(String, bool)> =
            with_plan(&s, &[v1.clone(), v2.clone()], Some(&v2), |plan| {
                plan.steps
                    .iter()
                    .filter_map(|s| match s {
                        Step::JoinCgroup { procs, born_here } => {
                            Some((procs.to_str().unwrap().to_string(), *born_here))
                        }
                        _ => None,
                    })
                    .collect()
            });
        assert_eq!(
            joins,
            [
                (format!("{}/cgroup.procs", v1.display()), false),
                (format!("{}/cgroup.procs", v2.display()), true),
            ]
        );
    }

    fn exec_step<'a>(plan: &'a Plan<'_>) -> (&'a [CString], &'a Argv, &'a Envp) {
        match plan.steps.last() {
            Some(Step::Exec {
                candidates,
                argv,
                envp,
            }) => (candidates, argv, envp),
            _ => panic!("the last step is not exec"),
        }
    }

    fn texts(strings: &[CString]) -> Vec<&str> {
        strings.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn exec_candidates_argv_and_environment() {
        let pipe = fd::pipe().unwrap();
        let stdio = pipe_stdio(&pipe);
        let s = spec(
            r#"{"rootfs": "/srv/web", "command": ["app", "-v", ""],
                "env": ["PATH=/opt/bin/::/usr/bin", "A=b"]}"#,
        );
        let plan = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio).unwrap();
        let (candidates, argv, envp) = exec_step(&plan);
        assert_eq!(texts(candidates), ["/opt/bin/app", "/usr/bin/app"]);
        assert_eq!(texts(argv.strings()), ["app", "-v", ""]);
        assert_eq!(
            texts(envp.strings()),
            ["PATH=/opt/bin/::/usr/bin", "A=b", "HOSTNAME=web", "HOME=/"]
        );

        let s = spec(r#"{"rootfs": "/srv/web", "command": ["/bin/app"], "env": ["HOME=/root"]}"#);
        let plan = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio).unwrap();
        let (candidates, _, envp) = exec_step(&plan);
        assert_eq!(texts(candidates), ["/bin/app"]);
        assert_eq!(
            texts(envp.strings()),
            [
                &format!("PATH={DEFAULT_PATH}"),
                "HOME=/root",
                "HOSTNAME=web"
            ]
        );
    }

    #[test]
    fn a_nul_byte_or_no_command_is_refused() {
        let pipe = fd::pipe().unwrap();
        let stdio = pipe_stdio(&pipe);
        let mut s = spec(r#"{"rootfs": "/srv/web", "command": ["/bin/app"]}"#);
        s.env.push("A=b\0c".to_string());
        let err = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio)
            .err()
            .unwrap();
        assert!(matches!(err, SpawnError::NulByte));
        assert_eq!(err.to_string(), "string contains a NUL byte");

        let mut s = spec(r#"{"rootfs": "/srv/web", "command": ["/bin/app"]}"#);
        s.rootfs = PathBuf::from("/srv/a\0b");
        let err = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio).err();
        assert!(matches!(err, Some(SpawnError::NulByte)));

        let mut s = spec(r#"{"rootfs": "/srv/web", "command": ["/bin/app"]}"#);
        s.command.clear();
        let err = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio).err();
        assert!(matches!(err, Some(SpawnError::NoCommand)));

        let s =
            spec(r#"{"rootfs": "/srv/web", "command": ["/bin/app"], "seccomp": "/etc/p.json"}"#);
        let err = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio).err();
        assert!(matches!(
            err,
            Some(SpawnError::Seccomp(SeccompError::NotLoaded(_)))
        ));
    }

    #[test]
    fn a_report_names_its_step() {
        let pipe = fd::pipe().unwrap();
        let stdio = pipe_stdio(&pipe);
        let s = spec(r#"{"rootfs": "/srv/web", "command": ["/bin/nope"]}"#);
        let plan = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio).unwrap();
        let last = plan.steps.len() as u32 - 1;
        let failed = |step, errno| InitReport::Failed(Failure { step, errno });
        assert_eq!(
            plan.failure(failed(last, libc::ENOENT)).to_string(),
            "exec /bin/nope: No such file or directory"
        );
        assert_eq!(
            plan.failure(failed(0, libc::EPERM)).to_string(),
            "reset signals: Operation not permitted"
        );
        assert_eq!(
            plan.failure(failed(last + 1, libc::ENOENT)).to_string(),
            "unknown step: No such file or directory"
        );
        assert_eq!(
            plan.failure(failed(u32::MAX, libc::EIO)).to_string(),
            "unknown step: Input/output error"
        );
        assert_eq!(
            plan.failure(InitReport::DiedEarly).to_string(),
            "the container's init died before exec"
        );

        // What a definition asked for and the kernel refused says why.
        let s = spec(
            r#"{"rootfs": "/srv/web", "command": ["/bin/app"], "oom-score-adj": -5,
                "rlimits": {"nofile": [10, 20]}}"#,
        );
        let plan = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio).unwrap();
        let index = |what: &str| plan.what.iter().position(|w| w == what).unwrap() as u32;
        assert_eq!(
            plan.failure(failed(index("set oom-score-adj to -5"), libc::EACCES))
                .to_string(),
            "set oom-score-adj to -5 (without CAP_SYS_RESOURCE, no lower than the daemon's own minimum): Permission denied"
        );
        assert_eq!(
            plan.failure(failed(index("set rlimits.nofile to 10:20"), libc::EPERM))
                .to_string(),
            "set rlimits.nofile to 10:20 (a hard limit above the daemon's own needs CAP_SYS_RESOURCE, and nofile is at most fs/nr_open): Operation not permitted"
        );
    }

    #[test]
    fn under_init_the_init_is_exec_d_and_its_child_reports_as_the_exec_step() {
        let pipe = fd::pipe().unwrap();
        let stdio = pipe_stdio(&pipe);
        let s = spec(r#"{"rootfs": "/srv/web", "command": ["sh", "-c", "x"], "init": true}"#);
        let mut plan = Plan::build(&s, &env(&s), Path::new("/m"), &[], None, &stdio).unwrap();
        let before = plan.steps.len();
        plan.under_init(pipe.0.as_fd()).unwrap();
        assert_eq!(plan.steps.len(), before + 1);
        assert_eq!(plan.what.len(), plan.steps.len());
        let n = plan.what.len();
        assert_eq!(plan.what[n - 2..], ["start berth's init", "exec sh"]);
        let Some(Step::ExecInit {
            report_to, argv, ..
        }) = plan.steps.get(n - 2)
        else {
            panic!("no init step");
        };
        assert_eq!(*report_to, init::REPORT_FD);
        let args = argv
            .strings()
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect();
        let command = init::parse(args).unwrap();
        assert_eq!(command.step as usize, n - 1, "the exec step's index");
        assert_eq!(texts(&command.argv), ["sh", "-c", "x"]);
        assert_eq!(texts(&command.candidates)[0], "/usr/local/sbin/sh");
        let failed = InitReport::Failed(Failure {
            step: command.step,
            errno: libc::ENOENT,
        });
        assert_eq!(
            plan.failure(failed).to_string(),
            "exec sh: No such file or directory"
        );
    }

    #[test]
    fn setup_errors_read_as_before() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(
            SpawnError::Clone(e(libc::EPERM)).to_string(),
            "clone: Operation not permitted"
        );
        assert_eq!(
            SpawnError::CreatePipe(e(libc::EMFILE)).to_string(),
            "create pipe: Too many open files"
        );
        assert_eq!(
            SpawnError::ReadReport(e(libc::EIO)).to_string(),
            "read from the container's init: Input/output error"
        );
        assert_eq!(
            SpawnError::from(LaunchError::Clone(e(libc::ENOSPC))).to_string(),
            "clone: No space left on device"
        );
    }

    /// The step descriptions of a plan joining a running container.
    fn join_steps(spec: &ContainerSpec, tty: bool) -> Vec<String> {
        join_steps_by(spec, tty, false)
    }

    /// As `join_steps`; with `by_handles`, the namespaces are joined
    /// through handles (the pipe's ends stand in for them).
    fn join_steps_by(spec: &ContainerSpec, tty: bool, by_handles: bool) -> Vec<String> {
        let pipe = fd::pipe().unwrap();
        let stdio = pipe_stdio(&pipe);
        let handle = |kind, name: &str| NsHandle {
            fd: pipe.0.as_fd(),
            kind,
            path: format!("/proc/7/ns/{name}"),
        };
        let join = Join {
            init: pipe.0.as_fd(),
            namespaces: libc::CLONE_NEWNS | libc::CLONE_NEWPID,
            handles: by_handles.then(|| {
                vec![
                    handle(libc::CLONE_NEWPID, "pid"),
                    handle(libc::CLONE_NEWNS, "mnt"),
                ]
            }),
            pid_to: pipe.1.as_fd(),
            cgroups: vec![PathBuf::from("/sys/fs/cgroup/berth/web")],
            command: vec!["sh".to_string(), "-c".to_string(), "id".to_string()],
            vars: vec!["A=1".to_string()],
            workdir: "/data".to_string(),
            tty,
        };
        let plan = Plan::build_join(spec, &env(spec), &join, &stdio).unwrap();
        assert_eq!(plan.steps.len(), plan.what.len());
        plan.what
    }

    #[test]
    fn a_joining_process_enters_after_its_cgroups_and_takes_the_inits_privileges() {
        let s = spec(
            r#"{"rootfs": "/srv/web", "command": ["/bin/app"], "user": "1000:1000",
                "cap-add": ["NET_ADMIN"], "rlimits": {"nofile": [10, 20]}}"#,
        );
        let what = join_steps(&s, false);
        assert_eq!(
            what[..6],
            [
                "reset signals",
                "join cgroup /sys/fs/cgroup/berth/web",
                "enter the namespaces of the container's init",
                "setsid",
                "set oom-score-adj to 0",
                "enter workdir /data",
            ]
        );
        let order = [
            "set up stdin",
            "set up stderr",
            "set rlimits.nofile to 10:20",
            "drop CAP_SYS_ADMIN from the bounding set",
            "set user 1000:1000",
            "set capabilities",
            "set ambient capabilities",
            "set no_new_privs",
            "set parent death signal",
            "close inherited fds",
            "install seccomp filter",
            "exec sh",
        ];
        let at: Vec<usize> = order.iter().map(|w| position(&what, w)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{what:#?}");
        // Nothing of the container's making is done again.
        for w in &what {
            assert!(
                !w.starts_with("mount") && !w.starts_with("pivot_root") && !w.contains("hostname"),
                "{w}"
            );
        }
        assert!(!what.iter().any(|w| w.contains("controlling terminal")));
        // The same privileges as the init's plan, in the same order.
        let init = build(&s, &[], None);
        let privileges = |w: &[String]| -> Vec<String> {
            let from = position(w, "set up stderr") + 1;
            let to = position(w, "install seccomp filter");
            w[from..=to].to_vec()
        };
        assert_eq!(privileges(&what), privileges(&init));
    }

    #[test]
    fn without_setns_on_a_pidfd_each_namespace_is_joined_by_its_handle_before_the_clone() {
        let s = spec(r#"{"rootfs": "/srv/web", "command": ["/bin/app"]}"#);
        let what = join_steps_by(&s, false, true);
        assert_eq!(
            what[1..5],
            [
                "join cgroup /sys/fs/cgroup/berth/web",
                "join the init's namespace /proc/7/ns/pid",
                "join the init's namespace /proc/7/ns/mnt",
                "enter the namespaces of the container's init",
            ]
        );
    }

    #[test]
    fn a_joining_process_on_a_terminal_takes_it_as_controlling_terminal() {
        let s = spec(r#"{"rootfs": "/srv/web", "command": ["/bin/app"]}"#);
        let what = join_steps(&s, true);
        let at = position(&what, "make the terminal the controlling terminal");
        assert!(at > position(&what, "setsid"));
        assert!(at > position(&what, "set up stderr"));
        assert!(at < position(&what, "set user 0:0"));
    }
}
