//! Starting a process: clone, a program of system calls in the child, then
//! execve, and the child's report of how far it got.
//!
//! The program is data built before clone: [`Step`]s that hold every
//! string, argv and envp already made, and borrow the fds they move. After
//! clone the child only walks it and makes system calls: it never
//! allocates, takes a lock or runs a destructor, which is all a child
//! cloned from a parent that may have other threads can safely do. That is
//! why clone itself is private to `sys`: this module is the only code that
//! runs in the child, and it ends in execve or `_exit`.
//!
//! Paths inside the container's rootfs are resolved inside it (see
//! `resolve`): [`Step::OpenRoot`] opens the assembled rootfs, and every
//! step that creates or mounts something in it opens its path from there,
//! then acts on the fd, so a symlink the rootfs holds never leads to a
//! host path.
//!
//! If a step fails, the child writes a [`Failure`] (the step's index and
//! errno) to a close-on-exec pipe and exits 127; when execve succeeds the
//! pipe closes with nothing written. [`InitReport::decode`] turns what the
//! parent read into one of the three outcomes. With berth's own init
//! ([`Step::ExecInit`]) the pipe stays open across the init's execve and
//! the init's child ([`start_command`]) writes the report or, by its own
//! execve, closes the pipe.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::mount::FdPath;
use super::process::{self, Argv, Envp, Forked};
use super::{cap, fd, mount, ns, pty, resolve, seccomp, signal};

/// Where a mount step acts.
pub enum Target {
    /// A host path berth owns: "/", the rootfs's mount point.
    Host(CString),
    /// A path in the rootfs opened by [`Step::OpenRoot`], relative to it
    /// ("dev/pts") and resolved inside it.
    InRoot(CString),
}

/// One step of the child's program: one system call, or a few for one
/// purpose, on values prepared before clone.
pub enum Step<'fd> {
    /// Unblock every signal and reset every disposition to its default.
    ResetSignals,
    /// Block one signal (after ResetSignals): it queues until the program
    /// exec'd takes it from a signalfd, and cannot end it before then.
    Block(libc::c_int),
    Setsid,
    /// Make the terminal on fd 0 this session's controlling terminal
    /// (after Setsid, and the Dup2 that put the terminal there).
    ControllingTty,
    /// Join the namespaces (`namespaces`, CLONE_NEW* flags) of the process
    /// behind the pidfd `process`, if one is given (else SetNs steps
    /// joined them already), then clone: this process writes the new
    /// child's pid (4 bytes, little-endian) to `pid_to` and exits 0; the
    /// child, a child of this process's parent (CLONE_PARENT) and so in
    /// the joined pid namespace, goes on with the next steps.
    Enter {
        process: Option<BorrowedFd<'fd>>,
        namespaces: libc::c_int,
        pid_to: BorrowedFd<'fd>,
    },
    /// Join one namespace through its handle (an open /proc/PID/ns/NAME;
    /// `kind` its CLONE_NEW* flag): for kernels whose setns(2) does not
    /// take a pidfd (before 5.8).
    SetNs {
        ns: BorrowedFd<'fd>,
        kind: libc::c_int,
    },
    /// Have the kernel SIGKILL this process when its parent dies, then make
    /// sure the parent had not already died (the report pipe's reading end
    /// is closed); if it had, exit quietly.
    DieWithParent,
    /// Open this directory (the rootfs's mount point) as the root every
    /// path in the rootfs is resolved in.
    OpenRoot(CString),
    /// Bind a path in the rootfs onto itself read-only, if it exists.
    ReadonlyOptional(CString),
    /// Hide a path in the rootfs, if it exists: /dev/null bound over a
    /// file, an empty read-only tmpfs over a directory.
    MaskOptional(CString),
    /// Write "0" to this cgroup.procs, unless `born_here` and the child
    /// was created in that cgroup2 directory already.
    JoinCgroup {
        procs: CString,
        born_here: bool,
    },
    Unshare(libc::c_int),
    Mount {
        source: Option<CString>,
        target: Target,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Make a mount and every mount below it read-only.
    RemountReadonly(Target),
    /// Create a directory in the rootfs and any missing parents (an
    /// existing one is fine).
    Mkdir(CString),
    /// Create an empty file in the rootfs to bind onto, and its parents
    /// (an existing path is fine).
    Touch(CString),
    /// Like Touch, but a root that cannot take a new file (EROFS) is fine:
    /// the file is then left out (see [`Step::BindFileOptional`]).
    TouchIfWritable(CString),
    /// Bind the host file `source` read-only onto `target` in the rootfs,
    /// creating an empty file there first if missing and `create`; when
    /// there is none and none may or can be made (EROFS), or `target` is a
    /// symlink to nothing, the file is left out.
    BindFileOptional {
        source: CString,
        target: CString,
        create: bool,
    },
    /// Create the symlink `link` in the rootfs (an existing one is fine).
    Symlink {
        target: CString,
        link: CString,
    },
    Chdir(CString),
    /// pivot_root(".", ".").
    PivotRoot,
    UmountDetach(CString),
    Hostname(CString),
    LoopbackUp,
    /// Make fd number `to` a copy of `from` that survives execve.
    Dup2 {
        from: BorrowedFd<'fd>,
        to: RawFd,
    },
    /// Write `data` to the file at `path` in the rootfs (a /proc/sys
    /// setting, once /proc is mounted there), resolved inside it.
    WriteInRoot {
        path: CString,
        data: CString,
    },
    /// Write this number to /proc/self/oom_score_adj.
    SetOomScoreAdj(CString),
    /// setrlimit; with `clamp`, a hard limit that may not be raised is
    /// lowered to the current one instead of failing.
    SetRlimit {
        resource: u32,
        soft: u64,
        hard: u64,
        clamp: bool,
    },
    /// Set the supplementary groups to exactly these.
    SetGroups(Vec<u32>),
    /// Keep the permitted capabilities across the uid change.
    KeepCaps,
    SetIds {
        uid: u32,
        gid: u32,
    },
    DropBounding(u32),
    /// Set the effective, permitted and inheritable capability sets.
    SetCaps {
        effective: u64,
        permitted: u64,
        inheritable: u64,
    },
    /// Make the ambient capability set exactly this one.
    SetAmbient(u64),
    NoNewPrivs,
    /// Install a seccomp filter (after NoNewPrivs; the last step before
    /// Exec, whose execve the filter must allow).
    Seccomp(seccomp::Filter),
    /// Mark every fd from this one up close-on-exec.
    CloexecFrom(u32),
    /// Close every fd from this one up (but the report pipe).
    CloseFrom(u32),
    /// execve each candidate path in turn, like execvp: ENOENT and ENOTDIR
    /// move on to the next; any other error is remembered and wins.
    Exec {
        candidates: Vec<CString>,
        argv: Argv,
        envp: Envp,
    },
    /// Run berth's own init from `exe` (an fd of the berth binary) with
    /// execveat, the report pipe moved onto fd `report_to` (kept open
    /// across that execve): the init starts the command and its child
    /// writes the report (see [`start_command`]). The [`Step::Exec`] that
    /// follows it in a program is never run in the child: it names the
    /// command's exec for the report the init's child may write.
    ExecInit {
        exe: BorrowedFd<'fd>,
        report_to: RawFd,
        argv: Argv,
        envp: Envp,
    },
}

/// The one message the child writes: step `step` (its index in the
/// program) failed with `errno`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub step: u32,
    pub errno: i32,
}

impl Failure {
    /// Bytes on the wire: the step index, then errno, little-endian.
    pub const LEN: usize = 8;

    /// The wire form, in a fixed array: the child cannot allocate.
    pub fn encode(self) -> [u8; Failure::LEN] {
        let mut out = [0u8; Failure::LEN];
        let (step, errno) = out.split_at_mut(4);
        step.copy_from_slice(&self.step.to_le_bytes());
        errno.copy_from_slice(&self.errno.to_le_bytes());
        out
    }
}

/// How the child's program ended, as the parent learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitReport {
    /// End of file before any byte: execve succeeded.
    Execed,
    /// A step failed and the child exited.
    Failed(Failure),
    /// A report cut short: the child died while writing it.
    DiedEarly,
}

impl InitReport {
    /// Decodes everything read from the report pipe until end of file or
    /// [`Failure::LEN`] bytes. Only nothing or a whole report is
    /// accepted; a short read means the child died mid-write.
    pub fn decode(read: &[u8]) -> InitReport {
        if read.is_empty() {
            return InitReport::Execed;
        }
        let Ok(bytes) = <[u8; Failure::LEN]>::try_from(read) else {
            return InitReport::DiedEarly;
        };
        let (step, errno) = bytes.split_at(4);
        match (step.try_into(), errno.try_into()) {
            (Ok(step), Ok(errno)) => InitReport::Failed(Failure {
                step: u32::from_le_bytes(step),
                errno: i32::from_le_bytes(errno),
            }),
            _ => InitReport::DiedEarly,
        }
    }
}

/// Why a child could not be started.
#[derive(Debug)]
pub enum LaunchError {
    /// Creating the report pipe.
    Pipe(io::Error),
    /// Copying an fd the child needs above the numbers it moves fds onto.
    Dup(io::Error),
    Clone(io::Error),
}

impl LaunchError {
    pub fn into_io(self) -> io::Error {
        match self {
            LaunchError::Pipe(e) | LaunchError::Dup(e) | LaunchError::Clone(e) => e,
        }
    }
}

/// A child running its program, and the reading end of its report pipe.
pub struct Child {
    pub pid: i32,
    pub pidfd: OwnedFd,
    report: OwnedFd,
}

impl Child {
    /// Waits until the program exec'd (the pipe reaches end of file) or
    /// reported a failure.
    pub fn wait_for_exec(&self) -> io::Result<InitReport> {
        let mut buf = [0u8; Failure::LEN];
        let mut got = 0;
        while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
            match fd::read(&self.report, rest)? {
                0 => break,
                n => got += n,
            }
        }
        Ok(InitReport::decode(&buf[..got]))
    }

    /// The pid and pidfd, once the report is no longer wanted.
    pub fn into_parts(self) -> (i32, OwnedFd) {
        (self.pid, self.pidfd)
    }
}

/// Clones a child into the new namespaces `namespaces` (CLONE_NEW*) and
/// runs `steps` in it, reporting through a pipe (see [`Child`]). With
/// `cgroup`, an fd of a cgroup2 directory, the child is created in it
/// (CLONE_INTO_CGROUP) when the kernel allows, and then skips the
/// [`Step::JoinCgroup`] marked `born_here`; else it is created outside and
/// joins by itself.
pub fn start(
    steps: &[Step<'_>],
    namespaces: libc::c_int,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Child, LaunchError> {
    let pipe = fd::pipe().map_err(LaunchError::Pipe)?;
    let (pid, pidfd, report) = launch(steps, namespaces, cgroup, Some(pipe))?;
    // `launch` hands back the reading end it was given.
    let report =
        report.ok_or_else(|| LaunchError::Pipe(io::Error::from_raw_os_error(libc::EBADF)))?;
    Ok(Child { pid, pidfd, report })
}

/// Clones a child in this process's namespaces and runs `steps` in it,
/// with no report: a failed step just ends the child with status 127.
pub fn start_unwatched(steps: &[Step<'_>]) -> Result<(i32, OwnedFd), LaunchError> {
    let (pid, pidfd, _) = launch(steps, 0, None, None)?;
    Ok((pid, pidfd))
}

/// Starts a container's command from berth's init: a child of this
/// process that resets its signal mask and dispositions, closes every fd
/// but 0 to 2 and `report` (close-on-exec, so a successful execve closes
/// it), then execs each candidate like [`Step::Exec`]. If none runs, it
/// writes the failure as step `step` to `report` and exits 127. Returns
/// the child's pid and a pidfd for it.
pub fn start_command(
    candidates: &[CString],
    argv: &Argv,
    envp: &Envp,
    report: BorrowedFd<'_>,
    step: u32,
) -> io::Result<(i32, OwnedFd)> {
    // SAFETY: no namespace or sharing flags; the child below only makes
    // system calls and ends in execve or _exit.
    match unsafe { process::clone_raw(0, None) }? {
        Forked::Parent { pid, pidfd } => Ok((pid, pidfd)),
        Forked::Child => {
            let errno = match signal::reset_all_raw()
                // SAFETY: this child runs nothing but these calls and ends
                // in execve or _exit: no owner of a closed fd runs again.
                .and_then(|()| unsafe { fd::close_from_except(3, Some(report)) })
            {
                Err(e) => e,
                Ok(()) => {
                    let mut err = libc::ENOENT;
                    for path in candidates {
                        let e = process::execve(path, argv, envp);
                        if e != libc::ENOENT && e != libc::ENOTDIR {
                            err = e;
                        }
                    }
                    err
                }
            };
            let _ = fd::write_all(report, &Failure { step, errno }.encode());
            process::exit_raw(127)
        }
    }
}

/// Writes `failure` to a report pipe (best effort: the reader may be gone).
pub fn report_failure(report: BorrowedFd<'_>, failure: Failure) {
    let _ = fd::write_all(report, &failure.encode());
}

/// The clone flags `start` accepts: new namespaces only. Any flag that
/// shares memory or the thread with a child running on a copy of this
/// stack is refused.
const NAMESPACES: libc::c_int = libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWUTS;

/// The clone itself. `report` is the pipe, `(read, write)`: the parent
/// gets the reading end back and closes the writing end; the child closes
/// its copy of the reading end at once.
fn launch(
    steps: &[Step<'_>],
    namespaces: libc::c_int,
    cgroup: Option<BorrowedFd<'_>>,
    report: Option<(OwnedFd, OwnedFd)>,
) -> Result<(i32, OwnedFd, Option<OwnedFd>), LaunchError> {
    if namespaces & !NAMESPACES != 0 {
        return Err(LaunchError::Clone(io::Error::from_raw_os_error(
            libc::EINVAL,
        )));
    }
    // Every fd the child still needs after its Dup2 steps must lie above
    // the numbers they overwrite: copy any that do not.
    let above = steps
        .iter()
        .filter_map(|s| match s {
            Step::Dup2 { to, .. } | Step::ExecInit { report_to: to, .. } => {
                Some(to.saturating_add(1))
            }
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let lift = |fd: BorrowedFd<'_>| -> Result<Option<OwnedFd>, LaunchError> {
        if fd.as_raw_fd() < above {
            fd::dup_at_least(fd, above)
                .map(Some)
                .map_err(LaunchError::Dup)
        } else {
            Ok(None)
        }
    };
    let (report_r, report_w) = match report {
        Some((r, w)) => {
            let w = lift(w.as_fd())?.unwrap_or(w);
            (Some(r), Some(w))
        }
        None => (None, None),
    };
    let mut lifted: Vec<Option<OwnedFd>> = Vec::with_capacity(steps.len());
    for step in steps {
        lifted.push(match step {
            Step::Dup2 { from, .. } | Step::ExecInit { exe: from, .. } => lift(*from)?,
            _ => None,
        });
    }
    let sources: Vec<Option<BorrowedFd<'_>>> = steps
        .iter()
        .zip(&lifted)
        .map(|(step, copy)| match step {
            Step::Dup2 { from, .. } | Step::ExecInit { exe: from, .. } => {
                Some(copy.as_ref().map_or(*from, |c| c.as_fd()))
            }
            _ => None,
        })
        .collect();

    let flags = namespaces as u64;
    // SAFETY: `flags` holds namespace flags only (checked above); the child
    // runs only `run`, which makes system calls and ends in execve or _exit.
    let mut forked = unsafe { process::clone_raw(flags, cgroup) };
    let born_in_cgroup = cgroup.is_some() && forked.is_ok();
    if cgroup.is_some() && forked.is_err() {
        // An older kernel, or a cgroup2 directory that cannot take the
        // child this way: create it outside; it joins by itself.
        // SAFETY: as above.
        forked = unsafe { process::clone_raw(flags, None) };
    }
    match forked.map_err(LaunchError::Clone)? {
        Forked::Child => {
            // The child's copy of the reading end must go at once: with it
            // open, the parent's death could not be seen as a closed pipe
            // (see DieWithParent). Closing an fd is async-signal-safe.
            drop(report_r);
            run(
                steps,
                &sources,
                report_w.as_ref().map(|w| w.as_fd()),
                born_in_cgroup,
            )
        }
        Forked::Parent { pid, pidfd } => Ok((pid, pidfd, report_r)),
    }
}

/// Runs the program in the child; never returns. `sources` holds, for each
/// Dup2 step, the fd to copy, and for an ExecInit step the program's fd
/// (lifted above every target by `launch`).
fn run(
    steps: &[Step<'_>],
    sources: &[Option<BorrowedFd<'_>>],
    report: Option<BorrowedFd<'_>>,
    born_in_cgroup: bool,
) -> ! {
    // Fds from this number up are closed by a CloseFrom step already run.
    let mut closed_from = u32::MAX;
    // The rootfs, once an OpenRoot step opened it.
    let mut root: Option<OwnedFd> = None;
    for (index, step) in steps.iter().enumerate() {
        let result = match step {
            Step::OpenRoot(path) => {
                fd::open_raw(path, libc::O_PATH | libc::O_DIRECTORY).map(|fd| root = Some(fd))
            }
            Step::JoinCgroup {
                born_here: true, ..
            } if born_in_cgroup => continue,
            Step::Dup2 { to, .. } => match sources.get(index).copied().flatten() {
                Some(from) if (from.as_raw_fd() as u32) < closed_from => {
                    // SAFETY: after clone this child runs nothing but this
                    // loop and ends in execve or _exit, so no owner of fd
                    // `to` is used or dropped again; the sources and the
                    // report pipe were lifted above every target.
                    unsafe { fd::dup2_onto(from, *to) }
                }
                _ => Err(libc::EBADF),
            },
            Step::ExecInit {
                report_to,
                argv,
                envp,
                ..
            } => match (sources.get(index).copied().flatten(), report) {
                (Some(exe), Some(report)) if (exe.as_raw_fd() as u32) < closed_from => {
                    // SAFETY: as for Dup2: nothing in this child uses fd
                    // `report_to` again; the pipe was lifted above it.
                    match unsafe { fd::dup2_onto(report, *report_to) } {
                        Ok(()) => Err(process::execveat_fd(exe, argv, envp)),
                        Err(e) => Err(e),
                    }
                }
                _ => Err(libc::EBADF),
            },
            Step::Enter {
                process: target,
                namespaces,
                pid_to,
            } => enter(*target, *namespaces, *pid_to),
            Step::CloseFrom(first) => {
                closed_from = closed_from.min(*first);
                // SAFETY: as for Dup2, nothing owns the closed fds from here
                // on; the report pipe is kept, and a later Dup2 from a closed
                // fd fails with EBADF above instead of using it.
                unsafe { fd::close_from_except(*first, report) }
            }
            step => run_step(step, root.as_ref().map(AsFd::as_fd)),
        };
        if matches!(step, Step::DieWithParent)
            && result.is_ok()
            && report.is_some_and(fd::reader_gone)
        {
            // The parent died before the signal was armed.
            process::exit_raw(127);
        }
        if let Err(errno) = result {
            fail(report, index, errno);
        }
    }
    // A program without an Exec step: say so as an unknown step.
    fail(report, steps.len(), libc::ENOEXEC)
}

/// Step::Enter: setns, then clone with CLONE_PARENT. Returns in the new
/// child only; this process ends here once it wrote the child's pid.
fn enter(
    target: Option<BorrowedFd<'_>>,
    namespaces: libc::c_int,
    pid_to: BorrowedFd<'_>,
) -> Result<(), i32> {
    if let Some(target) = target {
        ns::setns_raw(target, namespaces)?;
    }
    // SAFETY: CLONE_PARENT shares neither memory nor the thread group; the
    // child goes on running `run`, which makes system calls only and ends
    // in execve or _exit, and this process ends just below.
    match unsafe { process::clone_raw(libc::CLONE_PARENT as u64, None) } {
        Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        Ok(Forked::Child) => Ok(()),
        Ok(Forked::Parent { pid, pidfd }) => {
            let written = fd::write_all(pid_to, &pid.to_le_bytes());
            drop(pidfd);
            process::exit_raw(if written.is_ok() { 0 } else { 127 })
        }
    }
}

fn fail(report: Option<BorrowedFd<'_>>, step: usize, errno: i32) -> ! {
    if let Some(report) = report {
        let failure = Failure {
            step: step as u32,
            errno,
        };
        let _ = fd::write_all(report, &failure.encode());
    }
    process::exit_raw(127)
}

/// A mount step's target as a path mount(2) takes: a host path as it is;
/// a path in the rootfs opened inside it first, then named through
/// /proc/self/fd (the fd is kept open as long as the path is used).
enum Resolved<'a> {
    Host(&'a CStr),
    InRoot(OwnedFd, FdPath),
}

impl Resolved<'_> {
    fn path(&self) -> &CStr {
        match self {
            Resolved::Host(path) => path,
            Resolved::InRoot(_, path) => path.as_cstr(),
        }
    }
}

/// Opens `path` in the rootfs (O_PATH: a directory or a file) and names it
/// through /proc/self/fd.
fn in_root<'a>(root: Option<BorrowedFd<'_>>, path: &CStr) -> Result<Resolved<'a>, i32> {
    let root = root.ok_or(libc::EBADF)?;
    let fd = resolve::open_raw(root, path, libc::O_PATH)?;
    let named = FdPath::new(fd.as_fd());
    Ok(Resolved::InRoot(fd, named))
}

fn resolve_target<'a>(
    target: &'a Target,
    root: Option<BorrowedFd<'_>>,
) -> Result<Resolved<'a>, i32> {
    match target {
        Target::Host(path) => Ok(Resolved::Host(path)),
        Target::InRoot(path) => in_root(root, path),
    }
}

/// One step that needs nothing but its own values and the rootfs (`root`,
/// once opened): system calls only.
fn run_step(step: &Step<'_>, root: Option<BorrowedFd<'_>>) -> Result<(), i32> {
    match step {
        Step::ResetSignals => signal::reset_all_raw(),
        Step::Block(sig) => signal::block_raw(*sig),
        Step::Setsid => process::setsid_raw(),
        Step::ControllingTty => pty::set_controlling_raw(0),
        Step::DieWithParent => process::set_parent_death_signal_raw(libc::SIGKILL),
        Step::SetNs { ns, kind } => ns::setns_raw(*ns, *kind),
        Step::ReadonlyOptional(path) => {
            let place = match in_root(root, path) {
                Err(libc::ENOENT) => return Ok(()),
                other => other?,
            };
            let at = place.path();
            mount::mount_raw(Some(at), at, None, libc::MS_BIND | libc::MS_REC, None)?;
            // Opened again: the fd above is of what lies under the new mount.
            mount::readonly_recursive_raw(in_root(root, path)?.path())
        }
        Step::MaskOptional(path) => {
            let place = match in_root(root, path) {
                Err(libc::ENOENT) => return Ok(()),
                other => other?,
            };
            let is_dir = match &place {
                Resolved::InRoot(fd, _) => resolve::file_type_raw(fd.as_fd())? == libc::S_IFDIR,
                Resolved::Host(_) => false,
            };
            if is_dir {
                mount::mount_raw(
                    Some(c"tmpfs"),
                    place.path(),
                    Some(c"tmpfs"),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    Some(c"mode=555"),
                )
            } else {
                mount::mount_raw(Some(c"/dev/null"), place.path(), None, libc::MS_BIND, None)
            }
        }
        Step::JoinCgroup { procs, .. } => fd::write_file_raw(procs, b"0"),
        Step::Unshare(flags) => ns::unshare_raw(*flags),
        Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => mount::mount_raw(
            source.as_deref(),
            resolve_target(target, root)?.path(),
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Step::RemountReadonly(target) => {
            mount::readonly_recursive_raw(resolve_target(target, root)?.path())
        }
        Step::Mkdir(path) => resolve::mkdir_all_raw(root.ok_or(libc::EBADF)?, path),
        Step::Touch(path) => resolve::create_file_raw(root.ok_or(libc::EBADF)?, path),
        Step::Symlink { target, link } => {
            resolve::symlink_raw(root.ok_or(libc::EBADF)?, target, link)
        }
        Step::TouchIfWritable(path) => {
            match resolve::create_file_raw(root.ok_or(libc::EBADF)?, path) {
                Err(libc::EROFS) => Ok(()),
                other => other,
            }
        }
        Step::BindFileOptional {
            source,
            target,
            create,
        } => {
            if *create {
                match resolve::create_file_raw(root.ok_or(libc::EBADF)?, target) {
                    Ok(()) | Err(libc::EROFS) => {}
                    Err(e) => return Err(e),
                }
            }
            let place = match in_root(root, target) {
                Err(libc::ENOENT) => return Ok(()),
                other => other?,
            };
            mount::mount_raw(Some(source), place.path(), None, libc::MS_BIND, None)?;
            // Opened again: the fd above is of what lies under the new mount.
            mount::readonly_recursive_raw(in_root(root, target)?.path())
        }
        Step::Chdir(path) => process::chdir_raw(path),
        Step::PivotRoot => mount::pivot_root_raw(c".", c"."),
        Step::UmountDetach(path) => mount::umount_detach_raw(path),
        Step::Hostname(name) => ns::sethostname_raw(name),
        Step::LoopbackUp => ns::loopback_up_raw(),
        Step::WriteInRoot { path, data } => {
            let file = resolve::open_raw(root.ok_or(libc::EBADF)?, path, libc::O_WRONLY)?;
            fd::write_all(file.as_fd(), data.to_bytes())
        }
        Step::SetOomScoreAdj(value) => {
            fd::write_file_raw(c"/proc/self/oom_score_adj", value.to_bytes())
        }
        Step::SetRlimit {
            resource,
            soft,
            hard,
            clamp,
        } => cap::set_rlimit_raw(*resource, *soft, *hard, *clamp),
        Step::SetGroups(groups) => cap::set_groups_raw(groups),
        Step::KeepCaps => cap::keep_caps_raw(),
        Step::SetIds { uid, gid } => cap::set_ids_raw(*uid, *gid),
        Step::DropBounding(c) => cap::drop_bounding_raw(*c),
        Step::SetCaps {
            effective,
            permitted,
            inheritable,
        } => cap::set_caps_raw(*effective, *permitted, *inheritable),
        Step::SetAmbient(set) => cap::set_ambient_raw(*set),
        Step::NoNewPrivs => cap::no_new_privs_raw(),
        Step::Seccomp(filter) => seccomp::install_raw(filter),
        Step::CloexecFrom(first) => fd::cloexec_from_raw(*first),
        Step::Exec {
            candidates,
            argv,
            envp,
        } => {
            let mut err = libc::ENOENT;
            for path in candidates {
                let e = process::execve(path, argv, envp);
                if e != libc::ENOENT && e != libc::ENOTDIR {
                    err = e;
                }
            }
            Err(err)
        }
        // Handled by `run`, which holds the fds.
        Step::Dup2 { .. }
        | Step::CloseFrom(_)
        | Step::OpenRoot(_)
        | Step::ExecInit { .. }
        | Step::Enter { .. } => Err(libc::EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::process::ExitStatus;

    fn exec(args: &[&str]) -> Step<'static> {
        let args: Vec<CString> = args.iter().map(|a| CString::new(*a).unwrap()).collect();
        Step::Exec {
            candidates: vec![args[0].clone()],
            argv: Argv::new(args),
            envp: Envp::new(Vec::new()),
        }
    }

    /// Runs `steps` in a child, returns its report and how it ended.
    fn run_program(steps: &[Step<'_>]) -> (InitReport, ExitStatus) {
        let child = start(steps, 0, None).unwrap();
        let report = child.wait_for_exec().unwrap();
        let status = process::waitid_pidfd(&child.pidfd, true).unwrap().unwrap();
        (report, status)
    }

    fn read_all(fd: OwnedFd) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match fd::read(&fd, &mut buf).unwrap() {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn failure_round_trip() {
        for failure in [
            Failure { step: 0, errno: 0 },
            Failure {
                step: 41,
                errno: libc::ENOENT,
            },
            Failure {
                step: u32::MAX,
                errno: -1,
            },
        ] {
            let wire = failure.encode();
            assert_eq!(wire.len(), Failure::LEN);
            assert_eq!(InitReport::decode(&wire), InitReport::Failed(failure));
        }
    }

    #[test]
    fn nothing_read_means_exec_succeeded() {
        assert_eq!(InitReport::decode(&[]), InitReport::Execed);
    }

    #[test]
    fn a_short_or_long_read_is_rejected() {
        let wire = Failure { step: 3, errno: 2 }.encode();
        for len in 1..Failure::LEN {
            assert_eq!(InitReport::decode(&wire[..len]), InitReport::DiedEarly);
        }
        let mut long = wire.to_vec();
        long.push(0);
        assert_eq!(InitReport::decode(&long), InitReport::DiedEarly);
    }

    #[test]
    fn a_failed_step_is_reported_by_index() {
        let (report, status) = run_program(&[
            Step::Chdir(CString::from(c"/")),
            exec(&["/nonexistent/berth-test"]),
        ]);
        assert_eq!(
            report,
            InitReport::Failed(Failure {
                step: 1,
                errno: libc::ENOENT
            })
        );
        assert_eq!(status, ExitStatus::Exited(127));
    }

    #[test]
    fn exec_success_is_end_of_file() {
        let (report, status) = run_program(&[exec(&["/bin/sh", "-c", "exit 7"])]);
        assert_eq!(report, InitReport::Execed);
        assert_eq!(status, ExitStatus::Exited(7));
    }

    #[test]
    fn a_blocked_signal_stays_blocked_across_exec_and_the_rest_are_not() {
        // SigBlk is the mask in hex: SIGUSR1 (10) alone is bit 9, 0x200.
        // grep itself is exec'd (a shell would reset the mask of its own
        // children).
        let (report, status) = run_program(&[
            Step::ResetSignals,
            Step::Block(libc::SIGUSR1),
            exec(&["/bin/grep", "-qE", "^SigBlk:.0*200$", "/proc/self/status"]),
        ]);
        assert_eq!(report, InitReport::Execed);
        assert_eq!(status, ExitStatus::Exited(0));
    }

    #[test]
    fn a_program_without_exec_reports_an_unknown_step() {
        let (report, _) = run_program(&[Step::Chdir(CString::from(c"/"))]);
        assert_eq!(
            report,
            InitReport::Failed(Failure {
                step: 1,
                errno: libc::ENOEXEC
            })
        );
    }

    #[test]
    fn close_from_spares_the_report_pipe() {
        let (report, _) = run_program(&[Step::CloseFrom(3), exec(&["/nonexistent/berth-test"])]);
        assert_eq!(
            report,
            InitReport::Failed(Failure {
                step: 1,
                errno: libc::ENOENT
            })
        );
    }

    #[test]
    fn dup2_onto_each_others_numbers_swaps_them() {
        // Each pipe's writing end is moved onto the other's number: without
        // the sources lifted first, the second move would copy the first.
        let (one_r, one_w) = fd::pipe().unwrap();
        let (two_r, two_w) = fd::pipe().unwrap();
        let (a, b) = (one_w.as_raw_fd(), two_w.as_raw_fd());
        let script = format!("echo one >/proc/self/fd/{b}; echo two >/proc/self/fd/{a}");
        let steps = [
            Step::Dup2 {
                from: one_w.as_fd(),
                to: b,
            },
            Step::Dup2 {
                from: two_w.as_fd(),
                to: a,
            },
            exec(&["/bin/sh", "-c", &script]),
        ];
        let (report, status) = run_program(&steps);
        drop(steps);
        drop((one_w, two_w));
        assert_eq!(report, InitReport::Execed);
        assert_eq!(status, ExitStatus::Exited(0));
        assert_eq!(read_all(one_r), "one\n");
        assert_eq!(read_all(two_r), "two\n");
    }

    #[test]
    fn a_dup2_after_close_from_fails_instead_of_using_a_closed_fd() {
        let (_r, w) = fd::pipe().unwrap();
        let (report, _) = run_program(&[
            Step::CloseFrom(3),
            Step::Dup2 {
                from: w.as_fd(),
                to: 1,
            },
            exec(&["/bin/true"]),
        ]);
        assert_eq!(
            report,
            InitReport::Failed(Failure {
                step: 1,
                errno: libc::EBADF
            })
        );
    }

    #[test]
    fn exec_init_keeps_the_report_pipe_open_on_its_fd_across_execve() {
        let sh = fd::open(c"/bin/sh", libc::O_PATH, 0).unwrap();
        let strings = |v: &[&str]| v.iter().map(|a| CString::new(*a).unwrap()).collect();
        // The program exec'd writes a report of its own on fd 7, as
        // berth's init's child does: step 5, errno 2.
        let report = "printf '\\005\\000\\000\\000\\002\\000\\000\\000' >&7";
        let (got, status) = run_program(&[Step::ExecInit {
            exe: sh.as_fd(),
            report_to: 7,
            argv: Argv::new(strings(&["sh", "-c", report])),
            envp: Envp::new(Vec::new()),
        }]);
        assert_eq!(got, InitReport::Failed(Failure { step: 5, errno: 2 }));
        assert_eq!(status, ExitStatus::Exited(0));
        // And an exec that fails is the step's own failure.
        let not_exec = fd::open(c"/etc/passwd", libc::O_PATH, 0).unwrap();
        let (got, _) = run_program(&[
            Step::Chdir(CString::from(c"/")),
            Step::ExecInit {
                exe: not_exec.as_fd(),
                report_to: 7,
                argv: Argv::new(strings(&["x"])),
                envp: Envp::new(Vec::new()),
            },
        ]);
        assert_eq!(
            got,
            InitReport::Failed(Failure {
                step: 1,
                errno: libc::EACCES
            })
        );
    }

    #[test]
    fn flags_other_than_namespaces_are_refused() {
        let err = start(&[exec(&["/bin/true"])], libc::CLONE_VM, None).err();
        assert!(
            matches!(err, Some(LaunchError::Clone(e)) if e.raw_os_error() == Some(libc::EINVAL))
        );
    }
}
