//! The monitor: one process per container, the parent of its init.
//!
//! The daemon starts it as `berth monitor NAME` with a socket on fd 3,
//! sends it one job line, and gets back one reply line once the
//! container's command was exec'd (or why it was not). From then on the
//! monitor needs nobody: it drains the container's stdout and stderr into
//! size-capped log files (so the container never blocks on a full pipe,
//! however long the daemon is away), reaps the init, writes the exit record
//! atomically, removes the cgroups and exits. It takes no orders except
//! signals, and lives in the host namespaces, outside the container's
//! cgroup, in a session of its own.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nanoserde::{DeJson, SerJson};

use super::cgroup::{self, Limits};
use super::logs::{LogWriter, Stream};
use super::spawn::{Plan, SpawnError, Stdio};
use crate::config::{self, ContainerSpec};
use crate::host;
use crate::state::{self, ExitRecord, FORMAT_VERSION, RuntimeRecord, StartOptions};
use crate::sys::{fd, process, signal};

/// The fd on which a monitor finds its socket to the daemon.
pub const CHANNEL_FD: i32 = 3;
/// Largest job line accepted.
const MAX_JOB: usize = 256 * 1024;
/// After the init exits, how long to keep draining output still in pipes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// What the daemon asks a monitor to run.
#[derive(Debug, Clone, Default, SerJson, DeJson)]
pub struct Job {
    pub version: u32,
    pub name: String,
    pub run_id: String,
    /// The definition, canonical JSON (see `ContainerSpec::canonical`).
    pub spec: String,
    pub run_dir: String,
    pub state_dir: String,
    pub log_dir: String,
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub cgroup_parent: String,
}

/// The monitor's one answer.
#[derive(Debug, Clone, Default, SerJson, DeJson)]
pub struct Reply {
    pub ok: bool,
    pub pid: i32,
    pub init_start: u64,
    pub started_at: u64,
    pub error: Option<String>,
}

/// Starts `berth monitor NAME` from this very binary (/proc/self/exe, so a
/// binary replaced on disk meanwhile changes nothing), in a new session,
/// with a clean environment and signal state and `channel` as fd 3.
/// Returns its pid and a pidfd.
pub fn spawn(name: &str, channel: &OwnedFd) -> io::Result<(i32, OwnedFd)> {
    let exe = CString::new("/proc/self/exe").map_err(io::Error::other)?;
    let args = [
        CString::new("berth").map_err(io::Error::other)?,
        CString::new("monitor").map_err(io::Error::other)?,
        CString::new(name).map_err(io::Error::other)?,
    ];
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let devnull = fd::open(c"/dev/null", libc::O_RDWR, 0)?;
    match process::clone_process(0, None::<&OwnedFd>)? {
        process::Forked::Parent { pid, pidfd } => Ok((pid, pidfd)),
        process::Forked::Child => {
            // Only system calls from here on; any failure ends the child
            // and the daemon sees the monitor gone before it replied.
            let ok = process::setsid_raw().is_ok()
                && signal::reset_all_raw().is_ok()
                && fd::dup2_raw(channel.as_raw_fd(), CHANNEL_FD).is_ok()
                && fd::dup2_raw(devnull.as_raw_fd(), 0).is_ok()
                && fd::dup2_raw(devnull.as_raw_fd(), 1).is_ok()
                && fd::dup2_raw(devnull.as_raw_fd(), 2).is_ok()
                && fd::close_from_raw(CHANNEL_FD as u32 + 1).is_ok();
            if ok {
                process::execve_raw(&exe, &argv, &envp);
            }
            process::exit_raw(127)
        }
    }
}

/// Entry point of `berth monitor NAME`. Returns the process exit code.
pub fn main(name: &str) -> i32 {
    let _ = signal::ignore(libc::SIGPIPE);
    let _ = signal::ignore(libc::SIGHUP);
    let _ = signal::ignore(libc::SIGINT);
    let channel = match fd::take_inherited(CHANNEL_FD) {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("berth monitor: no channel on fd {CHANNEL_FD}: {e}");
            return 2;
        }
    };
    let mut channel = channel;
    let job = match read_job(&mut channel) {
        Ok(job) if job.name == name => job,
        Ok(job) => {
            return fail_early(
                &mut channel,
                &format!("job is for {}, not {name}", job.name),
            );
        }
        Err(e) => return fail_early(&mut channel, &format!("read job: {e}")),
    };
    let origin = PathBuf::from(format!("{}.json", job.name));
    let spec = match config::parse_container(&job.name, &job.spec, &origin) {
        Ok(spec) => spec,
        Err(e) => return fail_early(&mut channel, &e.to_string()),
    };
    Monitor::new(job, spec).run(channel)
}

fn read_job(channel: &mut UnixStream) -> io::Result<Job> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while !buf.contains(&b'\n') {
        let n = channel.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::other("the daemon closed the channel"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_JOB {
            return Err(io::Error::other("job is too large"));
        }
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = std::str::from_utf8(line).map_err(|_| io::Error::other("job is not UTF-8"))?;
    let job: Job =
        crate::json::decode(text).map_err(|e| io::Error::other(format!("bad job: {e}")))?;
    if job.version != FORMAT_VERSION {
        return Err(io::Error::other(format!(
            "job format {} is not {FORMAT_VERSION}",
            job.version
        )));
    }
    Ok(job)
}

fn send_reply(channel: &mut UnixStream, reply: &Reply) {
    let mut line = reply.serialize_json();
    line.push('\n');
    // The daemon may be gone; the monitor carries on regardless.
    let _ = channel.write_all(line.as_bytes());
}

fn fail_early(channel: &mut UnixStream, error: &str) -> i32 {
    send_reply(
        channel,
        &Reply {
            error: Some(error.to_string()),
            ..Reply::default()
        },
    );
    1
}

struct Monitor {
    job: Job,
    spec: ContainerSpec,
    paths: state::Paths,
    cgroups: Vec<PathBuf>,
}

const STDOUT: Token = Token(0);
const STDERR: Token = Token(1);
const INIT: Token = Token(2);

impl Monitor {
    fn new(job: Job, spec: ContainerSpec) -> Monitor {
        let paths = state::Paths::new(
            Path::new(&job.run_dir),
            Path::new(&job.state_dir),
            &job.name,
        );
        Monitor {
            job,
            spec,
            paths,
            cgroups: Vec::new(),
        }
    }

    fn run(mut self, mut channel: UnixStream) -> i32 {
        let started_at = host::now_ns();
        let (init_pid, pidfd, out_r, err_r, mut logs) = match self.start() {
            Ok(v) => v,
            Err(error) => {
                self.record_exit(None, started_at, Some(error.clone()), 0);
                let _ = cgroup::remove(&self.cgroups, Duration::from_secs(2));
                return fail_early(&mut channel, &error);
            }
        };
        let init_start = host::start_time(init_pid).unwrap_or(0);
        if let Err(e) = self.record_runtime(init_pid, init_start, started_at) {
            // Without a runtime record no daemon could find this container
            // again: do not leave it running unmanaged.
            let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
            let _ = process::waitid_pidfd(&pidfd, true);
            let error = format!("write {}: {e}", self.paths.runtime().display());
            self.record_exit(None, started_at, Some(error.clone()), 0);
            let _ = cgroup::remove(&self.cgroups, Duration::from_secs(2));
            return fail_early(&mut channel, &error);
        }
        send_reply(
            &mut channel,
            &Reply {
                ok: true,
                pid: init_pid,
                init_start,
                started_at,
                error: None,
            },
        );
        drop(channel);

        let status = pump(&pidfd, out_r, err_r, &mut logs);
        logs.finish();
        let error = match status {
            Ok(_) => None,
            Err(ref e) => Some(format!("monitor: {e}")),
        };
        let dropped = logs.dropped;
        self.record_exit(status.ok(), started_at, error, dropped);
        let _ = cgroup::remove(&self.cgroups, Duration::from_secs(2));
        0
    }

    /// Everything up to a successful exec.
    #[allow(clippy::type_complexity)]
    fn start(&mut self) -> Result<(i32, OwnedFd, OwnedFd, OwnedFd, LogWriter), String> {
        for dir in [&self.paths.run, &self.paths.state] {
            state::ensure_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        let log_dir = Path::new(&self.job.log_dir).join(&self.job.name);
        let logs = LogWriter::open(&log_dir, self.job.log_max_size, self.job.log_max_files)
            .map_err(|e| format!("open log {}: {e}", log_dir.display()))?;
        let hierarchies =
            cgroup::discover_live().map_err(|e| format!("find cgroup hierarchies: {e}"))?;
        self.cgroups =
            cgroup::container_dirs(&hierarchies, &self.job.cgroup_parent, &self.job.name);
        let limits = Limits {
            memory: self.spec.memory,
            pids: self.spec.pids,
            cpus_milli: self.spec.cpus_milli,
        };
        cgroup::create(&hierarchies, &self.cgroups, limits).map_err(|e| e.to_string())?;

        let (out_r, out_w) = fd::pipe().map_err(|e| format!("create pipe: {e}"))?;
        let (err_r, err_w) = fd::pipe().map_err(|e| format!("create pipe: {e}"))?;
        // Bigger pipes absorb bursts; the monitor drains them either way.
        let _ = fd::set_pipe_size(&out_r, 256 * 1024);
        let _ = fd::set_pipe_size(&err_r, 256 * 1024);
        let devnull = fd::open(c"/dev/null", libc::O_RDONLY, 0)
            .map_err(|e| format!("open /dev/null: {e}"))?;
        let stdio = Stdio {
            stdin: devnull.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
        };
        let mount_point = self.paths.run.join("rootfs");
        fs::create_dir_all(&mount_point)
            .map_err(|e| format!("create {}: {e}", mount_point.display()))?;
        // The cgroup2 directory, if there is one: the init is created in it.
        let v2_dir = hierarchies
            .iter()
            .zip(&self.cgroups)
            .find(|(h, _)| h.is_v2())
            .map(|(_, d)| d.clone());
        let v2_fd = v2_dir.as_ref().and_then(|d| {
            let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).ok()?;
            fd::open(&c, libc::O_RDONLY | libc::O_DIRECTORY, 0).ok()
        });
        let plan = Plan::build(
            &self.spec,
            &mount_point,
            &self.cgroups,
            v2_dir.as_deref(),
            &stdio,
        )
        .map_err(|e| e.to_string())?;
        let (pid, pidfd) = plan
            .spawn(self.spec.network, v2_fd.as_ref())
            .map_err(|e: SpawnError| e.to_string())?;
        Ok((pid, pidfd, out_r, err_r, logs))
    }

    fn record_runtime(&self, init_pid: i32, init_start: u64, started_at: u64) -> io::Result<()> {
        let me = process::getpid();
        let record = RuntimeRecord {
            version: FORMAT_VERSION,
            name: self.job.name.clone(),
            run_id: self.job.run_id.clone(),
            boot_id: host::boot_id()?,
            monitor_pid: me,
            monitor_start: host::start_time(me).unwrap_or(0),
            init_pid,
            init_start,
            started_at,
            config_hash: format!("{:016x}", self.spec.hash),
            options: StartOptions {
                log_dir: self.job.log_dir.clone(),
                log_max_size: self.job.log_max_size,
                log_max_files: self.job.log_max_files,
                cgroup_parent: self.job.cgroup_parent.clone(),
                cgroups: self
                    .cgroups
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            },
            berth: env!("CARGO_PKG_VERSION").to_string(),
        };
        state::save(&self.paths.runtime(), &record)
    }

    fn record_exit(
        &self,
        status: Option<process::ExitStatus>,
        started_at: u64,
        error: Option<String>,
        log_dropped: u64,
    ) {
        let record = ExitRecord {
            version: FORMAT_VERSION,
            run_id: self.job.run_id.clone(),
            exit_code: status.map(process::ExitStatus::code),
            signal: match status {
                Some(process::ExitStatus::Signaled(sig)) => Some(sig),
                _ => None,
            },
            started_at,
            finished_at: host::now_ns(),
            error,
            log_dropped,
        };
        // Nobody to tell if this fails: the daemon then reports the monitor
        // gone without a record, which is the truth.
        let _ = state::save(&self.paths.exit(), &record);
    }
}

/// At most this much is read from one stream before the other gets its
/// turn: a container flooding stdout must not starve (and so block) its
/// stderr.
const TURN: usize = 256 * 1024;

/// What one turn of reading a pipe found.
#[derive(PartialEq)]
enum Drained {
    /// Read until the pipe was empty.
    Empty,
    /// Stopped at the turn's limit: more may be waiting.
    More,
    /// The writers are all gone.
    Eof,
}

/// Copies the container's output into the logs until its init has exited
/// and the pipes are drained; returns how the init ended. Readiness is edge
/// triggered, so a stream cut off at its turn's limit is read again
/// without waiting for a new event.
fn pump(
    pidfd: &OwnedFd,
    out_r: OwnedFd,
    err_r: OwnedFd,
    logs: &mut LogWriter,
) -> io::Result<process::ExitStatus> {
    fd::set_nonblocking(&out_r, true)?;
    fd::set_nonblocking(&err_r, true)?;
    let mut poll = Poll::new()?;
    let registry = poll.registry();
    registry.register(
        &mut SourceFd(&out_r.as_raw_fd()),
        STDOUT,
        Interest::READABLE,
    )?;
    registry.register(
        &mut SourceFd(&err_r.as_raw_fd()),
        STDERR,
        Interest::READABLE,
    )?;
    registry.register(&mut SourceFd(&pidfd.as_raw_fd()), INIT, Interest::READABLE)?;
    let pipes = [(&out_r, Stream::Stdout), (&err_r, Stream::Stderr)];
    let mut events = Events::with_capacity(8);
    let mut open = [true, true];
    // Start by reading both: output may predate the registration.
    let mut pending = [true, true];
    let mut status = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if status.is_some() && !open[0] && !open[1] {
            break;
        }
        let past_deadline = drain_until.is_some_and(|d| Instant::now() >= d);
        if past_deadline {
            break;
        }
        let timeout = if pending.iter().zip(&open).any(|(p, o)| *p && *o) {
            Some(Duration::ZERO)
        } else {
            drain_until.map(|d| d.saturating_duration_since(Instant::now()))
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            match ev.token() {
                INIT if status.is_none() => {
                    if let Some(s) = process::waitid_pidfd(pidfd, false)? {
                        status = Some(s);
                        drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
                        let _ = poll
                            .registry()
                            .deregister(&mut SourceFd(&pidfd.as_raw_fd()));
                    }
                }
                INIT => {}
                t => pending[t.0] = true,
            }
        }
        for (i, (fd, stream)) in pipes.iter().enumerate() {
            if !(open[i] && pending[i]) {
                continue;
            }
            match drain(fd, *stream, logs, &mut buf, TURN) {
                Drained::More => {}
                Drained::Empty => pending[i] = false,
                Drained::Eof => {
                    open[i] = false;
                    pending[i] = false;
                    let _ = poll.registry().deregister(&mut SourceFd(&fd.as_raw_fd()));
                }
            }
        }
    }
    match status {
        Some(s) => Ok(s),
        None => {
            process::waitid_pidfd(pidfd, true)?.ok_or_else(|| io::Error::other("init vanished"))
        }
    }
}

/// Reads until the pipe is empty, at its end, or `limit` bytes were read.
fn drain(
    fd: &OwnedFd,
    stream: Stream,
    logs: &mut LogWriter,
    buf: &mut [u8],
    limit: usize,
) -> Drained {
    let mut total = 0;
    while total < limit {
        match fd::read_raw(fd.as_raw_fd(), buf) {
            Ok(0) => return Drained::Eof,
            Ok(n) => {
                logs.write(stream, &buf[..n]);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Empty,
            Err(_) => return Drained::Eof,
        }
    }
    Drained::More
}
