//! Running a process inside a running container (`berth exec`, health
//! checks): the same confinement as the container's init, joined rather
//! than rebuilt.
//!
//! The init is named by (pid, start time), checked through a pidfd taken
//! first: a pid reused by another process is refused. The process joins
//! the init's cgroups (the directories the caller names, the container's
//! own), then every namespace the init does not share with the caller,
//! through the init's pidfd (before Linux 5.8, whose setns(2) takes no
//! pidfd, through handles opened from /proc/PID/ns while the pidfd shows
//! the init alive, checked again after); a short-lived process in
//! between does the setns and clones the process itself with
//! CLONE_PARENT, so that it is in the container's pid namespace and still
//! the caller's child. Then it
//! takes what the definition gives the init: rlimits, the five capability
//! sets, groups and ids (the definition's `user`, or another one resolved
//! in the container's own /etc/passwd and /etc/group), no_new_privs, the
//! seccomp filter; the same step program as the init's (see `spawn`).
//!
//! With a terminal, the pseudo-terminal is the container's own: its
//! /dev/pts/ptmx opened through the init's root, never the caller's
//! terminal. The caller keeps the master and relays.
//!
//! Nothing here needs the daemon: the client calls it after asking the
//! daemon where the container is, and the monitor calls it for health
//! checks.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::environment::{self, EnvError};
pub use super::spawn::Stdio;
use super::spawn::{Join, NsHandle, Plan, SpawnError};
use super::users::IdentityError;
use crate::config::{self, ContainerSpec};
use crate::errors;
use crate::host;
use crate::sys::pty::{self, WindowSize};
use crate::sys::{fd, process, resolve};

/// The running container to join.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// Host pid of the container's init, and its start time (field 22 of
    /// /proc/PID/stat).
    pub init_pid: i32,
    pub init_start: u64,
    /// The cgroups the init is in, one directory per hierarchy.
    pub cgroups: Vec<PathBuf>,
    /// The definition the container runs.
    pub spec: ContainerSpec,
}

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// The command and its arguments; a name without '/' is looked up in
    /// the PATH of its environment.
    pub argv: Vec<String>,
    /// "user" or "user:group", names or numbers, instead of the
    /// definition's `user`.
    pub user: Option<String>,
    /// KEY=VALUE, over the definition's `env`.
    pub env: Vec<String>,
    /// Instead of the definition's `workdir`.
    pub workdir: Option<String>,
    /// A terminal of this size, allocated in the container; its stdio is
    /// then the terminal and the `stdio` given to [`spawn`] is not used.
    pub tty: Option<WindowSize>,
}

/// The process started.
#[derive(Debug)]
pub struct Spawned {
    /// A pidfd of it; it is the caller's child.
    pub pidfd: OwnedFd,
    /// The terminal's master side, non-blocking, when a terminal was asked
    /// for.
    pub pty: Option<OwnedFd>,
}

/// Why the process could not be started.
#[derive(Debug)]
pub enum ExecError {
    /// The container's init is gone (or its pid is another process now).
    NotRunning { name: String },
    /// Opening a pidfd or a /proc entry of the init.
    Init { path: String, err: io::Error },
    /// `--user` is not a user.
    User(String),
    /// The user or group is not in the container's /etc/passwd or
    /// /etc/group.
    UnknownUser {
        container: String,
        /// "/etc/passwd" or "/etc/group".
        file: &'static str,
        name: String,
    },
    /// The user, groups or limits could not be worked out.
    Environment(EnvError),
    /// Allocating the terminal in the container.
    Terminal { step: &'static str, err: io::Error },
    /// A pipe for the process's pid.
    Pipe(io::Error),
    /// Building or running the process's steps.
    Spawn(SpawnError),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NotRunning { name } => write!(f, "container {name} is not running"),
            ExecError::Init { path, err } => write!(f, "open {path}: {}", errors::io_text(err)),
            ExecError::User(e) => write!(f, "user: {e}"),
            ExecError::UnknownUser {
                container,
                file,
                name,
            } => {
                let what = if *file == "/etc/group" {
                    "group"
                } else {
                    "user"
                };
                write!(
                    f,
                    "{what} \"{name}\" is not in {file} of container {container}"
                )
            }
            ExecError::Environment(e) => write!(f, "{e}"),
            ExecError::Terminal { step, err } => {
                write!(f, "{step}: {}", errors::io_text(err))
            }
            ExecError::Pipe(e) => write!(f, "create pipe: {}", errors::io_text(e)),
            ExecError::Spawn(e) => write!(f, "{e}"),
        }
    }
}

impl ExecError {
    /// Whether this is what a caller without root meets: the container's
    /// /proc entries, cgroups or namespaces refused (EPERM, EACCES).
    pub fn needs_root(&self) -> bool {
        let refused = |errno: Option<i32>| matches!(errno, Some(libc::EPERM | libc::EACCES));
        let joining = match self {
            ExecError::Init { err, .. } => refused(err.raw_os_error()),
            ExecError::Spawn(SpawnError::Step { what, errno }) => {
                refused(Some(*errno))
                    && (what.starts_with("join cgroup")
                        || what.starts_with("join the init's namespace")
                        || what.starts_with("enter the namespaces"))
            }
            _ => false,
        };
        joining && process::geteuid() != 0
    }
}

/// The namespaces a process has, as named in /proc/PID/ns, with their
/// clone flags, in the order they are joined one by one (see
/// [`join_by_handles`]): the user namespace first, as the others then
/// belong to it; pid and time only take effect for the clone made after;
/// the mount namespace last, as joining it moves root and cwd.
const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

/// Whether a process joins the init's namespaces one by one, through
/// handles opened from /proc/PID/ns, rather than with setns(2) on the
/// init's pidfd, which names the process itself and so cannot join
/// another that reused the pid but which Linux takes only from 5.8 on
/// (before, EINVAL). The kernel is asked once per process.
fn join_by_handles() -> bool {
    static TAKES_PIDFD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    !*TAKES_PIDFD.get_or_init(crate::sys::ns::setns_takes_pidfd)
}

/// Starts `opts.argv` in the running container `target` (see the module
/// documentation), with `stdio` as its stdin, stdout and stderr unless a
/// terminal is asked for. Returns once the command was exec'd; the
/// process is the caller's child, to be waited for through its pidfd.
pub fn spawn(target: &Target, opts: &Options, stdio: Stdio<'_>) -> Result<Spawned, ExecError> {
    let pid = target.init_pid;
    let not_running = || ExecError::NotRunning {
        name: target.name.clone(),
    };
    let init = match process::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(not_running()),
        Err(err) => {
            return Err(ExecError::Init {
                path: format!("a pidfd of the container's init (pid {pid})"),
                err,
            });
        }
    };
    let alive = || pid > 0 && host::same_process(pid, target.init_start);
    if !alive() {
        return Err(not_running());
    }
    // A /proc entry that cannot be read because the init just ended.
    let gone_or = |e: ExecError| if alive() { e } else { not_running() };
    let namespaces = namespaces_to_join(pid).map_err(gone_or)?;
    // Opened while the pidfd shows the init alive, and checked again below.
    let handles = if join_by_handles() {
        Some(open_namespaces(pid, namespaces).map_err(gone_or)?)
    } else {
        None
    };
    let root_path = PathBuf::from(format!("/proc/{pid}/root"));
    let root = open_dir(&root_path).map_err(gone_or)?;

    let mut spec = target.spec.clone();
    if let Some(user) = &opts.user {
        spec.user = Some(config::parse_user(user).map_err(ExecError::User)?);
    }
    let env = environment::gather(&spec, &root_path).map_err(|e| match e {
        EnvError::User(IdentityError::NotFound { file, name, .. }) => ExecError::UnknownUser {
            container: target.name.clone(),
            file,
            name,
        },
        e => gone_or(ExecError::Environment(e)),
    })?;
    // Everything read through /proc/PID was the init's if the pidfd still
    // names a live process with that pid and start time.
    if process::pidfd_send_signal(&init, 0).is_err() || !alive() {
        return Err(not_running());
    }

    let terminal = match opts.tty {
        Some(size) => Some(open_terminal(&root, size, env.uid)?),
        None => None,
    };
    let stdio = match &terminal {
        Some((_, peer)) => Stdio {
            stdin: peer.as_fd(),
            stdout: peer.as_fd(),
            stderr: peer.as_fd(),
        },
        None => stdio,
    };
    let (pid_from, pid_to) = fd::pipe().map_err(ExecError::Pipe)?;
    let join = Join {
        init: init.as_fd(),
        namespaces,
        handles: handles.as_ref().map(|h| {
            h.iter()
                .map(|(path, kind, fd)| NsHandle {
                    fd: fd.as_fd(),
                    kind: *kind,
                    path: path.clone(),
                })
                .collect()
        }),
        pid_to: pid_to.as_fd(),
        cgroups: target.cgroups.clone(),
        command: opts.argv.clone(),
        vars: config::merge_env(spec.env.clone(), &opts.env),
        workdir: opts.workdir.clone().unwrap_or_else(|| spec.workdir.clone()),
        tty: terminal.is_some(),
    };
    let plan = Plan::build_join(&spec, &env, &join, &stdio).map_err(ExecError::Spawn)?;
    let (_pid, pidfd) = plan.spawn_joined(&pid_from).map_err(ExecError::Spawn)?;
    Ok(Spawned {
        pidfd,
        pty: terminal.map(|(master, _)| master),
    })
}

/// The CLONE_NEW* flags of every namespace of process `pid` that this
/// process is not in (joining one's own user namespace is refused).
fn namespaces_to_join(pid: i32) -> Result<libc::c_int, ExecError> {
    let mut flags = 0;
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let target = match fs::read_link(&theirs) {
            Ok(t) => t,
            // A kind of namespace this kernel does not have.
            Err(e) if e.kind() == io::ErrorKind::NotFound && *name == "time" => continue,
            Err(err) => {
                return Err(ExecError::Init { path: theirs, err });
            }
        };
        let ours = fs::read_link(format!("/proc/self/ns/{name}")).ok();
        if ours.as_deref() != Some(target.as_path()) {
            flags |= flag;
        }
    }
    Ok(flags)
}

/// Opens /proc/PID/ns/NAME of every namespace in `namespaces`, in the
/// order of [`NAMESPACES`]: (path, flag, handle).
fn open_namespaces(
    pid: i32,
    namespaces: libc::c_int,
) -> Result<Vec<(String, libc::c_int, OwnedFd)>, ExecError> {
    let mut handles = Vec::new();
    for (name, flag) in NAMESPACES {
        if namespaces & flag == 0 {
            continue;
        }
        let path = format!("/proc/{pid}/ns/{name}");
        let c = std::ffi::CString::new(path.as_bytes()).expect("no NUL in a /proc path");
        let fd = fd::open(&c, libc::O_RDONLY, 0).map_err(|err| ExecError::Init {
            path: path.clone(),
            err,
        })?;
        handles.push((path, *flag, fd));
    }
    Ok(handles)
}

fn open_dir(path: &Path) -> Result<OwnedFd, ExecError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        ExecError::Init {
            path: path.display().to_string(),
            err: io::Error::from_raw_os_error(libc::EINVAL),
        }
    })?;
    fd::open(&c, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|err| ExecError::Init {
        path: path.display().to_string(),
        err,
    })
}

/// A new terminal of the container's own devpts (its /dev/pts/ptmx,
/// resolved in its root): (master, peer), the peer given to `uid`.
fn open_terminal(
    root: &OwnedFd,
    size: WindowSize,
    uid: u32,
) -> Result<(OwnedFd, OwnedFd), ExecError> {
    let step = |step: &'static str| move |err| ExecError::Terminal { step, err };
    let open = "open /dev/pts/ptmx in the container";
    let master = resolve::open_in_root(
        root.as_fd(),
        c"dev/pts/ptmx",
        libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK,
    )
    .map_err(step(open))?;
    if !pty::is_devpts(&master).map_err(step(open))? {
        return Err(ExecError::Terminal {
            step: open,
            err: io::Error::other("it is not on a devpts file system"),
        });
    }
    pty::unlock(&master).map_err(step("unlock the terminal"))?;
    pty::set_window_size(&master, size).map_err(step("set the terminal's window size"))?;
    let peer = pty::open_peer(&master).map_err(step("open the terminal in the container"))?;
    pty::give_to(&peer, uid).map_err(step("give the terminal to the user"))?;
    Ok((master, peer))
}

/// The cgroups process `pid` (a container's init) is in, one directory
/// per hierarchy berth places containers in, from the kernel's
/// /proc/PID/cgroup: what a process joining the container joins. The
/// caller checks afterwards that `pid` is still the init.
pub fn init_cgroups(pid: i32) -> io::Result<Vec<PathBuf>> {
    let hierarchies = super::cgroup::discover(
        &fs::read_to_string("/proc/self/mountinfo")?,
        &fs::read_to_string(format!("/proc/{pid}/cgroup"))?,
    );
    Ok(hierarchies.iter().map(super::cgroup::own_dir).collect())
}

/// A process started into a container from outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub pid: i32,
    /// Its argv, from /proc/PID/cmdline.
    pub command: Vec<String>,
    /// Its start time, nanoseconds since the epoch (0 if unknown).
    pub started_at: u64,
}

/// How many processes of a container's cgroup [`joined`] looks at, at
/// most: each costs a read of /proc/PID/stat, on the daemon's loop.
pub const JOINED_LOOKS_AT: usize = 10_000;

/// What [`joined`] found.
#[derive(Debug, Default)]
pub struct Found {
    pub joined: Vec<Joined>,
    /// The cgroup had more than [`JOINED_LOOKS_AT`] processes: the rest
    /// were not looked at.
    pub cut_short: bool,
}

/// The processes in the cgroup `dir` (its cgroup.procs; none if it
/// cannot be read).
pub fn cgroup_procs(dir: &Path) -> Vec<i32> {
    // On the stack where it fits (a few hundred processes): a heap buffer
    // of a page or more is a fresh mapping for musl's allocator, made and
    // dropped for each container of a `ps`.
    let mut small = [0u8; PROCS_ON_STACK];
    let mut large = Vec::new();
    let text = match read_small(&dir.join("cgroup.procs"), &mut small) {
        Ok(Some(n)) => &small[..n],
        Ok(None) => match read_into(&dir.join("cgroup.procs"), &mut large) {
            Ok(()) => &large[..],
            Err(_) => &[][..],
        },
        Err(_) => &[][..],
    };
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The processes started into the container whose init is `init_pid`
/// (and `procs` those of its cgroup, one of its init's cgroups, see
/// [`cgroup_procs`]) from outside it: those in the cgroup whose parent is
/// not, the init itself aside. The kernel's view, so it holds whoever
/// started them and across daemon restarts. At most [`JOINED_LOOKS_AT`]
/// processes are looked at. `boot`: the boot time, read once for all the
/// containers of a request.
pub fn joined(procs: &[i32], init_pid: i32, boot: &BootTime) -> Found {
    joined_within(procs, init_pid, JOINED_LOOKS_AT, boot)
}

/// As [`joined`], looking at `limit` processes at most.
fn joined_within(procs: &[i32], init_pid: i32, limit: usize, boot: &BootTime) -> Found {
    let inside: std::collections::HashSet<i32> = procs.iter().copied().collect();
    let others = procs.iter().filter(|&&pid| pid != init_pid);
    let mut joined = Vec::new();
    // /proc/PID/stat on the stack too.
    let mut stat = [0u8; STAT_ON_STACK];
    for &pid in others.clone().take(limit) {
        let Ok(Some(n)) = read_small(Path::new(&format!("/proc/{pid}/stat")), &mut stat) else {
            continue;
        };
        let Some((parent, start)) = parent_and_start(&stat[..n]) else {
            continue;
        };
        if inside.contains(&parent) {
            continue;
        }
        let mut cmdline = Vec::new();
        let _ = read_into(Path::new(&format!("/proc/{pid}/cmdline")), &mut cmdline);
        let command = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let tick = process::clock_tick_ns();
        let started_at = match boot.ns() {
            Some(boot) if tick > 0 => boot + start.saturating_mul(tick),
            _ => 0,
        };
        joined.push(Joined {
            pid,
            command,
            started_at,
        });
    }
    Found {
        joined,
        cut_short: others.count() > limit,
    }
}

/// cgroup.procs up to this size is read on the stack.
const PROCS_ON_STACK: usize = 4096;

/// Room for any /proc/PID/stat line (see `host::with_stat`).
const STAT_ON_STACK: usize = 2048;

/// Reads `path` into `buf`: `Some(length)`, or `None` when it does not
/// fit (read it with [`read_into`] then).
fn read_small(path: &Path, buf: &mut [u8]) -> io::Result<Option<usize>> {
    use std::io::Read;
    let mut file = crate::sys::fd::open_read(path, 0)?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => return Ok(Some(n)),
            Ok(got) => n += got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Reads `path` into `buf` (emptied first), keeping its capacity.
fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    use std::io::Read;
    buf.clear();
    // Through `take`: a File's own read_to_end asks its size first.
    crate::sys::fd::open_read(path, 0)?
        .take(u64::MAX)
        .read_to_end(buf)
        .map(|_| ())
}

/// (parent pid, start time in clock ticks) from a /proc/PID/stat line:
/// fields 4 and 22, counted from the last ')' (see `host::parse_stat`).
fn parent_and_start(stat: &[u8]) -> Option<(i32, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // The first field is field 3 (state).
    let mut fields = rest.split_whitespace();
    let parent = fields.nth(1)?.parse().ok()?;
    let start = fields.nth(17)?.parse().ok()?;
    Some((parent, start))
}

/// The boot time, nanoseconds since the epoch (btime in /proc/stat), read
/// at the first process that needs it and then kept, by whoever lists the
/// processes of several containers at once (a `ps`): /proc/stat sums every
/// CPU's counters, too costly to read for each container. Not kept for
/// longer, as it moves when the clock is set.
#[derive(Debug, Default)]
pub struct BootTime(std::cell::OnceCell<Option<u64>>);

impl BootTime {
    fn ns(&self) -> Option<u64> {
        *self.0.get_or_init(|| {
            let stat = fs::read_to_string("/proc/stat").ok()?;
            let secs: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("btime "))?
                .trim()
                .parse()
                .ok()?;
            Some(secs * 1_000_000_000)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_and_start_time_are_read_after_the_last_parenthesis() {
        let mut stat = b"77 (a) b) (c) S 12".to_vec();
        for field in 5..=22 {
            stat.extend_from_slice(format!(" {field}").as_bytes());
        }
        assert_eq!(parent_and_start(&stat), Some((12, 22)));
        assert_eq!(parent_and_start(b"77 (x) S"), None);
    }

    #[test]
    fn this_process_is_found_in_its_own_cgroup_and_its_children_are_not_joined() {
        let me = process::getpid();
        let dirs = init_cgroups(me).unwrap();
        assert!(!dirs.is_empty());
        // Seen as the "init", this process is left out; a child of it is
        // inside, so it is not a process joined from outside either.
        let child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let mut child = scopeguard(child);
        let found = joined(&cgroup_procs(&dirs[0]), me, &BootTime::default());
        assert!(!found.cut_short);
        let found = found.joined;
        assert!(
            found
                .iter()
                .all(|j| j.pid != me && j.pid != child.0.id() as i32),
            "{found:?}"
        );
        let _ = child.0.kill();
    }

    #[test]
    fn no_more_processes_are_looked_at_than_the_limit_and_it_says_so() {
        let me = process::getpid();
        let dirs = init_cgroups(me).unwrap();
        let spawn = || {
            scopeguard(
                std::process::Command::new("/bin/sleep")
                    .arg("5")
                    .spawn()
                    .unwrap(),
            )
        };
        let _children = [spawn(), spawn()];
        let procs = cgroup_procs(&dirs[0]);
        assert!(joined_within(&procs, me, 1, &BootTime::default()).cut_short);
        assert!(!joined_within(&procs, me, usize::MAX, &BootTime::default()).cut_short);
    }

    #[test]
    fn a_long_process_list_is_read_whole() {
        // More pids than the stack buffer holds, the one joined last.
        let dir = crate::testing::TempDir::new("joined");
        let child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let child = scopeguard(child);
        let pid = child.0.id() as i32;
        let mut procs = "4194305\n".repeat(PROCS_ON_STACK / 8 + 10);
        procs.push_str(&format!("{pid}\n"));
        fs::write(dir.path().join("cgroup.procs"), procs).unwrap();
        let procs = cgroup_procs(dir.path());
        assert_eq!(procs.len(), PROCS_ON_STACK / 8 + 11);
        let found = joined(&procs, 1, &BootTime::default());
        let pids: Vec<i32> = found.joined.iter().map(|j| j.pid).collect();
        assert_eq!(pids, [pid]);
        assert_eq!(found.joined[0].command, ["/bin/sleep", "5"]);
        assert!(found.joined[0].started_at > 0);
    }

    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    fn scopeguard(c: std::process::Child) -> Guard {
        Guard(c)
    }
}
