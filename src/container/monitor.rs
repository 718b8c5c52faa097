//! The monitor: one process per container, the parent of its init.
//!
//! The daemon starts it as `berth monitor NAME` with a socket on fd 3,
//! sends it one job line, and gets back one reply line once the
//! container's command was exec'd (or why it was not). From then on the
//! monitor needs nobody: it drains the container's stdout and stderr into
//! size-capped log files (so the container never blocks on a full pipe,
//! however long the daemon is away), reaps the init, writes the exit record
//! atomically, removes the cgroups and exits. It takes no orders except
//! signals, and lives in the host namespaces, in a session of its own.
//!
//! Its work for the container is the container's: just before it clones
//! the init, the monitor moves into a leaf of the container's cpu cgroup
//! (never its memory or pids one), so a container flooding its output is slowed by its
//! own CPU limit, not the host. The exit record's blocks are reserved when
//! the run starts, so a full disk cannot cost the exit code; output the
//! disk refuses is counted (in `log-status.json` while it runs, in the
//! exit record at the end) and noted in the log once it has room again.
//! At the end it reads what the container's limits did (out-of-memory
//! kills, refused forks) into the exit record.
//!
//! With a `healthcheck`, the same loop runs the checks (see `health`):
//! each one joins the running container as `berth exec` does, its poll
//! timeout is the next check's time, and health.json says how it went.
//! With `on-unhealthy: "restart"`, a container that becomes unhealthy is
//! stopped (stop signal, SIGKILL after its stop timeout) and started
//! again by the same monitor after a back-off: same run, same logs, a new
//! init in a new runtime record, whether a daemon runs or not. A daemon
//! that stops the container itself sends the monitor `STOP_REQUEST`
//! first: the checks end and the init is not started again.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nanoserde::{DeJson, SerJson};

use super::cgroup::{self, CgroupError, Counters, Hierarchy, Limits, Placement};
use super::devices::{self, DeviceError};
use super::environment::{self, EnvError};
use super::etc_files;
use super::health::{self, Checker};
use super::logs::{LogWriter, Stream};
use super::root::{self, RootError};
use super::spawn::{Plan, SpawnError, Stdio};
use crate::config::{self, ConfigError, ContainerSpec, Network, OnUnhealthy};
use crate::errors;
use crate::host;
use crate::policy;
use crate::state::{
    self, ExitRecord, FORMAT_VERSION, LogStatus, Reserved, RuntimeRecord, StartOptions,
};
use crate::sys::child::{self, Step};
use crate::sys::process::{self, Argv, Envp};
use crate::sys::{fd, signal};
use crate::wire::{self, Got, LineReader};

/// The fd on which a monitor finds its socket to the daemon.
pub const CHANNEL_FD: i32 = 3;
/// A spare's exit code when it cannot rename its command line.
pub const SPARE_UNNAMED: i32 = 3;

/// The monitor's second line on its channel, after its reply: the run is
/// over, its exit record is in place (its data synced) and its cgroups
/// are gone. What is left (syncing the record's directory, exiting) no
/// daemon needs to wait for.
pub const END_REPORT: &[u8] = b"{\"ended\":true}\n";

/// Largest job line accepted.
const MAX_JOB: usize = 256 * 1024;
/// After the init exits, how long to keep draining output still in pipes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// The exit record's reservation; texts in it are cut to fit.
const EXIT_RESERVED: usize = 4096;
/// Longest error or cause text kept in an exit record.
const MAX_TEXT: usize = 1024;
/// How often, at most, the log status file is rewritten.
const STATUS_EVERY: Duration = Duration::from_secs(1);

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
    /// The network namespace to join (held by the daemon, see `net`);
    /// empty: a new one ("none") or the host's.
    #[nserde(default)]
    pub netns: String,
    /// /etc/hosts lines naming the container's network peers.
    #[nserde(default)]
    pub hosts: String,
    /// What the daemon folded into the definition's hash for its network
    /// (see `net::fold_hashes`), folded in here too.
    #[nserde(default)]
    pub net_mix: u64,
    /// The cgroup hierarchies the daemon found (the monitor starts in its
    /// cgroups); empty: the monitor finds them itself.
    #[nserde(default)]
    pub hierarchies: Vec<cgroup::Found>,
    /// The rules (see `devices::rules_text`) of the device program the
    /// daemon loaded for this container and passed with the job's first
    /// byte (SCM_RIGHTS); empty: none was passed.
    #[nserde(default)]
    pub device_program: String,
}

/// The monitor's one answer.
#[derive(Debug, Clone, Default, SerJson, DeJson)]
pub struct Reply {
    pub ok: bool,
    pub pid: i32,
    pub init_start: u64,
    pub started_at: u64,
    pub error: Option<String>,
    /// Something the daemon should log about a run that did start (the
    /// exit record could not be reserved, the monitor could not join the
    /// container's cpu cgroup).
    #[nserde(default)]
    pub warning: Option<String>,
}

/// Why a monitor gave up before it had a container to start.
#[derive(Debug)]
pub enum JobError {
    /// Reading the channel failed.
    Read(io::Error),
    /// The daemon closed the channel before a whole line came.
    Closed,
    TooLarge,
    NotUtf8,
    /// The line is not a job (the JSON decoder's reason).
    Malformed(String),
    /// The job's format version is not this binary's.
    Version(u32),
    /// The job names another container than the monitor's argument.
    OtherName {
        job: String,
        monitor: String,
    },
    /// The definition in the job does not parse.
    Spec(ConfigError),
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Read(e) => write!(f, "read job: {err}", err = errors::io_text(e)),
            JobError::Closed => f.write_str("read job: the daemon closed the channel"),
            JobError::TooLarge => f.write_str("read job: job is too large"),
            JobError::NotUtf8 => f.write_str("read job: job is not UTF-8"),
            JobError::Malformed(e) => write!(f, "read job: bad job: {e}"),
            JobError::Version(v) => {
                write!(f, "read job: job format {v} is not {FORMAT_VERSION}")
            }
            JobError::OtherName { job, monitor } => write!(f, "job is for {job}, not {monitor}"),
            JobError::Spec(e) => write!(f, "{e}"),
        }
    }
}

/// Why a monitor could not start its container, by step.
#[derive(Debug)]
pub enum StartError {
    /// Creating a run, state or mount-point directory.
    CreateDir {
        path: PathBuf,
        err: io::Error,
    },
    OpenLog {
        path: PathBuf,
        err: io::Error,
    },
    /// Making the root from an image or with a writable layer.
    Root(RootError),
    /// Working out what the process is given (groups, limits, capabilities).
    Environment(EnvError),
    FindCgroups(io::Error),
    /// A listed device that is not there, or not a device.
    Device(DeviceError),
    Cgroup(CgroupError),
    /// Creating a stdout or stderr pipe.
    CreatePipe(io::Error),
    OpenDevNull(io::Error),
    /// Writing the /etc files berth provides.
    EtcFiles(etc_files::WriteError),
    /// The network namespace the job names cannot be opened.
    JoinNetwork {
        path: PathBuf,
        err: io::Error,
    },
    /// A bridge or shared network, and the job names no namespace.
    NoNetwork,
    /// Opening the berth binary for `"init": true`.
    OpenExe(io::Error),
    Spawn(SpawnError),
    /// Writing the runtime record (the init is killed then).
    WriteRuntime {
        path: PathBuf,
        err: io::Error,
    },
    /// Starting the init again: its image file is not the one the run
    /// started with.
    ImageChanged {
        image: PathBuf,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::CreateDir { path, err } => {
                write!(f, "create {}: {}", path.display(), errors::io_text(err))
            }
            StartError::OpenLog { path, err } => {
                write!(f, "open log {}: {}", path.display(), errors::io_text(err))
            }
            StartError::Root(e) => write!(f, "{e}"),
            StartError::Environment(e) => write!(f, "{e}"),
            StartError::FindCgroups(e) => write!(
                f,
                "find cgroup hierarchies: {err}",
                err = errors::io_text(e)
            ),
            StartError::Device(e) => write!(f, "{e}"),
            StartError::Cgroup(e) => write!(f, "{e}"),
            StartError::CreatePipe(e) => {
                write!(f, "create pipe: {err}", err = errors::io_text(e))
            }
            StartError::OpenDevNull(e) => {
                write!(f, "open /dev/null: {err}", err = errors::io_text(e))
            }
            StartError::EtcFiles(e) => {
                write!(f, "write {}: {}", e.path.display(), errors::io_text(&e.err))
            }
            StartError::NoNetwork => f.write_str(
                "its network needs the namespace the daemon holds for it, and the job names none",
            ),
            StartError::JoinNetwork { path, err } => write!(
                f,
                "open the network namespace {}: {}",
                path.display(),
                errors::io_text(err)
            ),
            StartError::OpenExe(e) => write!(
                f,
                "open /proc/self/exe for berth's init: {err}",
                err = errors::io_text(e)
            ),
            StartError::Spawn(e) => write!(f, "{e}"),
            StartError::WriteRuntime { path, err } => {
                write!(f, "write {}: {}", path.display(), errors::io_text(err))
            }
            StartError::ImageChanged { image } => write!(
                f,
                "image {} was replaced since the run started; the run keeps the image it started with, so it ends here (start it again to use the new one)",
                image.display()
            ),
        }
    }
}

/// Starts `berth monitor NAME` from this very binary (/proc/self/exe, so a
/// binary replaced on disk meanwhile changes nothing), in a new session,
/// with a clean environment and signal state and `channel` as fd 3.
/// Without a name it is a spare: `berth monitor`, for whichever container
/// its job names (it then names itself `berth monitor NAME`). Returns its
/// pid and a pidfd.
pub fn spawn(name: Option<&str>, channel: &OwnedFd) -> io::Result<(i32, OwnedFd)> {
    let exe = CString::from(c"/proc/self/exe");
    let mut argv = vec![CString::from(c"berth"), CString::from(c"monitor")];
    if let Some(name) = name {
        argv.push(CString::new(name).map_err(io::Error::other)?);
    }
    let argv = Argv::new(argv);
    let devnull = fd::open(c"/dev/null", libc::O_RDWR, 0)?;
    // Any failure ends the child, and the daemon sees the monitor gone
    // before it replied.
    let steps = [
        Step::Setsid,
        Step::ResetSignals,
        // Blocked from the first instruction of the monitor on: a stop
        // notice sent while it starts up waits for its signalfd.
        Step::Block(STOP_REQUEST),
        Step::Dup2 {
            from: channel.as_fd(),
            to: CHANNEL_FD,
        },
        Step::Dup2 {
            from: devnull.as_fd(),
            to: 0,
        },
        Step::Dup2 {
            from: devnull.as_fd(),
            to: 1,
        },
        Step::Dup2 {
            from: devnull.as_fd(),
            to: 2,
        },
        Step::CloseFrom(CHANNEL_FD as u32 + 1),
        Step::Exec {
            candidates: vec![exe],
            argv,
            envp: Envp::new(Vec::new()),
        },
    ];
    child::start_unwatched(&steps).map_err(child::LaunchError::into_io)
}

/// Entry point of `berth monitor [NAME]` (without NAME: a spare, see
/// [`spawn`]). Returns the process exit code.
pub fn main(name: Option<&str>) -> i32 {
    let _ = signal::ignore(libc::SIGPIPE);
    let _ = signal::ignore(libc::SIGHUP);
    let _ = signal::ignore(libc::SIGINT);
    let stop = stop_requests();
    let channel = match fd::take_inherited(CHANNEL_FD) {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!(
                "berth monitor: no channel on fd {CHANNEL_FD} ({err}): a monitor is started by the daemon, as berth monitor [NAME]",
                err = errors::io_text(&e)
            );
            return 2;
        }
    };
    let mut channel = channel;
    // A spare must be able to take its container's name (below): where
    // this kernel lets no process rename its command line, it ends now
    // and the daemon starts no more spares.
    if name.is_none() && process::set_cmdline(&["berth", "monitor"]).is_err() {
        return SPARE_UNNAMED;
    }
    // A spare waits here until a start hands it a job.
    let mut reader = FdCatcher {
        sock: &channel,
        fd: None,
    };
    let job = read_job(&mut reader);
    let program = reader.fd.take();
    let (job, spec) = match job.and_then(|job| {
        let name = name.unwrap_or(&job.name).to_string();
        parse_spec(job, &name)
    }) {
        Ok(v) => v,
        Err(e) => return fail_early(&mut channel, &e.to_string()),
    };
    let mut named = None;
    if name.is_none() {
        // As a monitor started for it is shown.
        if let Err(e) = process::set_cmdline(&["berth", "monitor", &job.name]) {
            named = Some(format!(
                "the monitor could not name itself \"berth monitor {}\": {}",
                job.name,
                errors::io_text(&e)
            ));
        }
    }
    let device_program = program
        .filter(|_| !job.device_program.is_empty())
        .map(|prog| devices::Loaded {
            rules: job.device_program.clone(),
            prog,
        });
    let mut monitor = Monitor::new(job, spec, stop);
    monitor.device_program = device_program;
    monitor.warnings.extend(named);
    monitor.run(channel)
}

/// The signal by which the daemon says it is stopping the container on
/// purpose (`berth stop`, restart, recreate, removal, its own shutdown):
/// the checks end at once and the init is never started again.
pub const STOP_REQUEST: i32 = libc::SIGUSR1;

/// A signalfd for [`STOP_REQUEST`], blocked (already by the daemon's
/// spawn, again here) so that it queues there and never ends the monitor;
/// the children reset their mask. Without
/// a signalfd the signal is ignored instead: the monitor still never dies
/// of it.
fn stop_requests() -> Option<OwnedFd> {
    let fd = signal::block(&[STOP_REQUEST]).and_then(|()| signal::signalfd(&[STOP_REQUEST]));
    if fd.is_err() {
        let _ = signal::ignore(STOP_REQUEST);
    }
    fd.ok()
}

/// The channel as `read_job` reads it, keeping an fd passed along with
/// the job (the device program).
struct FdCatcher<'a> {
    sock: &'a UnixStream,
    fd: Option<OwnedFd>,
}

impl Read for FdCatcher<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, fd) = crate::sys::socket::recv_with_fd(self.sock, buf)?;
        if self.fd.is_none() {
            self.fd = fd;
        }
        Ok(n)
    }
}

/// Reads the one job line from the daemon.
fn read_job(channel: &mut impl Read) -> Result<Job, JobError> {
    let mut reader = LineReader::new(MAX_JOB);
    loop {
        match reader.read_from(channel).map_err(JobError::Read)? {
            Got::Line(line) => return parse_job(&line),
            Got::Partial => continue, // the channel blocks: not reached
            Got::Eof => return Err(JobError::Closed),
            Got::TooLong => return Err(JobError::TooLarge),
        }
    }
}

/// A job from its line (without the newline).
fn parse_job(line: &[u8]) -> Result<Job, JobError> {
    let text = std::str::from_utf8(line).map_err(|_| JobError::NotUtf8)?;
    let job: Job = crate::json::decode(text).map_err(JobError::Malformed)?;
    if job.version != FORMAT_VERSION {
        return Err(JobError::Version(job.version));
    }
    Ok(job)
}

/// The definition a job carries, once the job is known to be for `name`.
fn parse_spec(job: Job, name: &str) -> Result<(Job, ContainerSpec), JobError> {
    if job.name != name {
        return Err(JobError::OtherName {
            job: job.name,
            monitor: name.to_string(),
        });
    }
    let origin = PathBuf::from(format!("{}.json", job.name));
    let spec = config::parse_container(&job.name, &job.spec, &origin).map_err(JobError::Spec)?;
    Ok((job, spec))
}

/// A reply as the line sent to the daemon.
fn reply_line(reply: &Reply) -> Vec<u8> {
    wire::encode(reply)
}

fn send_reply(channel: &mut UnixStream, reply: &Reply) {
    // The daemon may be gone; the monitor carries on regardless.
    let _ = channel.write_all(&reply_line(reply));
}

fn fail_early(channel: &mut UnixStream, error: &str) -> i32 {
    send_reply(channel, &failure_reply(error));
    1
}

/// The reply for a container that was not started.
fn failure_reply(error: &str) -> Reply {
    Reply {
        error: Some(error.to_string()),
        ..Reply::default()
    }
}

struct Monitor {
    job: Job,
    spec: ContainerSpec,
    paths: state::Paths,
    hierarchies: Vec<Hierarchy>,
    placement: Option<Placement>,
    /// The container's cgroups' counters when the run started.
    events_at_start: Counters,
    /// The exit record's blocks, reserved when the run started.
    exit_slot: Option<Reserved>,
    /// Whether the monitor moved into its leaf of the container's cgroup.
    in_leaf: bool,
    /// What the daemon should hear about a run that did start.
    warnings: Vec<String>,
    /// The verity device under the container's image, if any.
    verity: Option<super::verity::Device>,
    /// The host's mount namespace while the monitor is in one of its own
    /// (see `root::leave`).
    host_mounts: Option<OwnedFd>,
    /// The definition as the job gave it (`spec` is changed by the root
    /// made for a start).
    defined: ContainerSpec,
    /// Times the init was started again for failing its health checks.
    restarts: u32,
    /// The hash of the definition and image the run started with: an
    /// init started again must run the same.
    run_hash: u64,
    /// Where the daemon's stop requests arrive (see `STOP_REQUEST`).
    stop: Option<OwnedFd>,
    /// The device program the daemon loaded for this container, if any.
    device_program: Option<devices::Loaded>,
}

const STDOUT: Token = Token(0);
const STDERR: Token = Token(1);
const INIT: Token = Token(2);
/// A health check's pidfd and the read end of its output.
const CHECK: Token = Token(3);
const CHECK_OUT: Token = Token(4);
/// The stop requests' signalfd.
const STOP: Token = Token(5);

impl Monitor {
    fn new(job: Job, spec: ContainerSpec, stop: Option<OwnedFd>) -> Monitor {
        let paths = state::Paths::new(
            Path::new(&job.run_dir),
            Path::new(&job.state_dir),
            &job.name,
        );
        Monitor {
            job,
            defined: spec.clone(),
            spec,
            restarts: 0,
            run_hash: 0,
            stop,
            paths,
            hierarchies: Vec::new(),
            placement: None,
            verity: None,
            host_mounts: None,
            events_at_start: Counters::default(),
            exit_slot: None,
            device_program: None,
            in_leaf: false,
            warnings: Vec::new(),
        }
    }

    /// The container's cgroups (removed at the end, with their leaves).
    fn cgroups(&self) -> &[PathBuf] {
        self.placement.as_ref().map_or(&[], |p| &p.dirs)
    }

    fn run(mut self, mut channel: UnixStream) -> i32 {
        // The run's start, in its records however often the init is
        // started again (each init is told apart by its pid and start
        // time).
        let started_at = host::now_ns();
        let mut logs = match self.open_run() {
            Ok(logs) => logs,
            Err(e) => return self.fail_start(&mut channel, started_at, &e),
        };
        let (init_pid, pidfd, out_r, err_r) = match self.launch() {
            Ok(v) => v,
            Err(e) => return self.fail_start(&mut channel, started_at, &e),
        };
        let init_start = host::start_time(init_pid).unwrap_or(0);
        self.run_hash = self.spec.hash;
        if let Err(err) = self.record_runtime(init_pid, init_start, started_at) {
            // Without a runtime record no daemon could find this container
            // again: do not leave it running unmanaged.
            let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
            let _ = process::waitid_pidfd(&pidfd, true);
            let e = StartError::WriteRuntime {
                path: self.paths.runtime(),
                err,
            };
            return self.fail_start(&mut channel, started_at, &e);
        }
        send_reply(
            &mut channel,
            &Reply {
                ok: true,
                pid: init_pid,
                init_start,
                started_at,
                error: None,
                warning: (!self.warnings.is_empty()).then(|| self.warnings.join("; ")),
            },
        );
        // Kept for the end report (see `END_REPORT`).
        let mut channel = channel;
        // Told to the daemon. An init started again meets the same ones
        // (the same definition on the same host) and nobody to tell:
        // they are not kept.
        self.warnings.clear();

        let stop = self.stop.take();
        let mut health = self.spec.healthcheck.clone().map(|check| {
            Health::new(
                Checker::new(check, self.paths.health(), &self.job.run_id),
                &self.spec,
                stop,
            )
        });
        let mut status_file = StatusFile::new(self.paths.log_status(), &self.job.run_id);
        let mut init = (init_pid, init_start, pidfd, out_r, err_r);
        let mut restarted = false;
        let (status, error) = loop {
            let (init_pid, init_start, pidfd, out_r, err_r) = init;
            if let Some(h) = health.as_mut() {
                h.init_started(&self, init_pid, init_start, restarted);
            }
            let status = pump(
                &pidfd,
                out_r,
                err_r,
                &mut logs,
                Some(&mut status_file),
                health.as_mut(),
            );
            let status = match status {
                Ok(s) => s,
                Err(e) => break (None, Some(format!("monitor: {e}"))),
            };
            let Some(h) = health.as_mut() else {
                break (Some(status), None);
            };
            if !h.restart_wanted() {
                break (Some(status), None);
            }
            // Unhealthy, stopped and reaped: after the back-off (unless
            // the daemon stops it meanwhile), a new init in the same run.
            if !h.back_off() {
                break (Some(status), None);
            }
            self.warnings.clear();
            match self.relaunch() {
                Ok(next) => {
                    let start = host::start_time(next.0).unwrap_or(0);
                    if let Err(err) = self.record_runtime(next.0, start, started_at) {
                        // As at the first start: no run nobody can find.
                        let _ = process::pidfd_send_signal(&next.1, libc::SIGKILL);
                        let _ = process::waitid_pidfd(&next.1, true);
                        let e = StartError::WriteRuntime {
                            path: self.paths.runtime(),
                            err,
                        };
                        let why = format!("start again after failing its health checks: {e}");
                        break (None, Some(why));
                    }
                    init = (next.0, start, next.1, next.2, next.3);
                    restarted = true;
                }
                Err(e) => {
                    let why = format!("start again after failing its health checks: {e}");
                    break (None, Some(why));
                }
            }
        };
        logs.finish();
        let (oom_killed, cause) = self.limits_cause();
        let recorded = self.record_exit(Ending {
            status,
            started_at,
            error,
            log_dropped: logs.dropped,
            oom_killed,
            cause,
            health_restarts: self.restarts,
        });
        let _ = fs::remove_file(self.paths.log_status());
        self.leave_cpu_leaf();
        let _ = cgroup::remove(self.cgroups(), Duration::from_secs(2));
        // Nothing of the run is left but the record's directory entry to
        // sync: the daemon may act on the end now (answer, start the next
        // run) instead of when this process is gone.
        match recorded {
            Some(renamed) => {
                let _ = channel.write_all(END_REPORT);
                let _ = renamed.map(state::Renamed::sync);
            }
            None => drop(channel),
        }
        0
    }

    /// The container once more, after its init was stopped for failing
    /// its health checks: the definition as it came in the job, the root,
    /// cgroups and pipes made again; the logs and the exit record's
    /// reservation stay.
    fn relaunch(&mut self) -> Result<(i32, OwnedFd, OwnedFd, OwnedFd), StartError> {
        self.leave_cpu_leaf();
        self.spec = self.defined.clone();
        self.restarts += 1;
        self.launch()
    }

    /// Records a start that failed, removes its cgroups and tells the
    /// daemon why.
    fn fail_start(&mut self, channel: &mut UnixStream, started_at: u64, e: &StartError) -> i32 {
        let (oom_killed, cause) = self.limits_cause();
        let error = match &cause {
            // A limit was hit on the way (a clone refused at the pids
            // limit): say which.
            Some(c) => format!("{e} ({c})"),
            None => e.to_string(),
        };
        let recorded = self.record_exit(Ending {
            status: None,
            started_at,
            error: Some(error.clone()),
            log_dropped: 0,
            oom_killed,
            cause,
            health_restarts: 0,
        });
        if let Some(Some(renamed)) = recorded {
            let _ = renamed.sync();
        }
        self.leave_cpu_leaf();
        let _ = cgroup::remove(self.cgroups(), Duration::from_secs(2));
        fail_early(channel, &error)
    }

    /// Moves the monitor into its leaf of the container's cpu cgroup, so
    /// that the container's CPU limit covers its logging. A failure is
    /// told to the daemon; the container runs regardless.
    fn join_cpu_leaf(&mut self) {
        let Some(leaf) = self.placement.as_ref().and_then(Placement::monitor) else {
            return;
        };
        match cgroup::join(&leaf) {
            Ok(()) => self.in_leaf = true,
            Err(e) => self
                .warnings
                .push(format!("logging is not charged to the container: {e}")),
        }
    }

    /// Moves the monitor back where it came from, so that the container's
    /// cgroups can be removed.
    fn leave_cpu_leaf(&mut self) {
        let own = self
            .placement
            .as_ref()
            .and_then(|p| p.cpu)
            .and_then(|i| self.hierarchies.get(i))
            .map(cgroup::own_dir);
        if let (true, Some(own)) = (self.in_leaf, own) {
            if cgroup::join(&own).is_ok() {
                self.in_leaf = false;
            }
        }
    }

    /// What the container's limits did since the run started.
    /// Why the run ended, beyond its status: a limit hit, or a block of
    /// its image that failed verification (the kernel made the read fail).
    fn limits_cause(&self) -> (bool, Option<String>) {
        let (oom_killed, cause) = match &self.placement {
            Some(placement) => {
                let now = Counters::read(&self.hierarchies, placement);
                limits_cause(&self.spec, self.events_at_start, now)
            }
            None => (false, None),
        };
        let corrupted = self.verity.as_ref().is_some_and(|d| {
            d.corrupted().unwrap_or_else(|e| {
                log::warn!(
                    "verity device {}: read its status: {}",
                    d.name,
                    errors::io_text(&e)
                );
                false
            })
        });
        if !corrupted {
            return (oom_killed, cause);
        }
        let image = self.spec.image.as_deref().unwrap_or(Path::new("?"));
        let tampered = format!(
            "image {} failed verification: a block does not match its verity hash tree (reads of it fail with I/O error)",
            image.display()
        );
        let cause = match cause {
            Some(c) => format!("{c}; {tampered}"),
            None => tampered,
        };
        (oom_killed, Some(cause))
    }

    /// What a run has once, however often its init is started: its
    /// directories, the exit record's reservation, the logs.
    fn open_run(&mut self) -> Result<LogWriter, StartError> {
        for dir in [&self.paths.run, &self.paths.state] {
            state::ensure_dir(dir).map_err(|err| StartError::CreateDir {
                path: dir.clone(),
                err,
            })?;
        }
        self.reserve_exit_record();
        // A health record of an earlier run is not this run's.
        let _ = fs::remove_file(self.paths.health());
        let log_dir = Path::new(&self.job.log_dir).join(&self.job.name);
        LogWriter::open(&log_dir, self.job.log_max_size, self.job.log_max_files).map_err(|err| {
            StartError::OpenLog {
                path: log_dir.clone(),
                err,
            }
        })
    }

    /// Everything from the root to a successful exec of the init: the
    /// init's pid and pidfd and the read ends of its stdout and stderr.
    fn launch(&mut self) -> Result<(i32, OwnedFd, OwnedFd, OwnedFd), StartError> {
        self.prepare_root()?;
        let mut env =
            environment::gather(&self.spec, &self.spec.rootfs).map_err(StartError::Environment)?;
        if self.spec.etc_files {
            let dir = self.paths.run.join("etc");
            // On a network the daemon wrote the file (and keeps it current).
            let keep_hosts = !self.job.hosts.is_empty();
            etc_files::write(&dir, &self.spec, &self.job.hosts, keep_hosts)
                .map_err(StartError::EtcFiles)?;
            env.etc_dir = Some(dir);
            env.etc_create = !etc_files::is_host_root(&self.spec.rootfs);
            for name in etc_files::left_out(&self.spec.rootfs, &self.spec, env.etc_create) {
                self.warnings.push(format!(
                    "/etc/{name} is not provided: the rootfs has none (or a symlink to nothing) and cannot take one"
                ));
            }
        }
        let device_rules = devices::rules(&self.spec.devices).map_err(StartError::Device)?;
        let limits = Limits {
            memory: self.spec.memory,
            pids: self.spec.pids,
            cpus_milli: self.spec.cpus_milli,
        };
        let found = if self.job.hierarchies.is_empty() {
            cgroup::discover_live().map_err(StartError::FindCgroups)?
        } else {
            self.job
                .hierarchies
                .iter()
                .cloned()
                .map(Hierarchy::from)
                .collect()
        };
        self.hierarchies = cgroup::used_by(&found, limits);
        let mut placement = self.place(limits)?;
        let ahead = self.device_program.as_ref();
        let restricted = devices::restrict(&self.hierarchies, &placement, &device_rules, ahead);
        if let Err(e) = restricted {
            if self.hierarchies.len() == found.len() {
                return Err(StartError::Cgroup(e));
            }
            // cgroup2 alone could not take the devices program: the v1
            // hierarchies (devices among them) guard instead.
            self.warnings.push(format!(
                "{e}; the container joins the v1 cgroup hierarchies instead"
            ));
            let _ = cgroup::remove(self.cgroups(), Duration::from_secs(2));
            self.hierarchies = found;
            placement = self.place(limits)?;
            let ahead = self.device_program.as_ref();
            devices::restrict(&self.hierarchies, &placement, &device_rules, ahead)
                .map_err(StartError::Cgroup)?;
        }
        // The cgroups stay for the whole run: what its limits did is
        // counted from the first init's start, so the exit record covers
        // every init of the run.
        if self.restarts == 0 {
            self.events_at_start = Counters::read(&self.hierarchies, &placement);
        }

        let (out_r, out_w) = fd::pipe().map_err(StartError::CreatePipe)?;
        let (err_r, err_w) = fd::pipe().map_err(StartError::CreatePipe)?;
        // Bigger pipes absorb bursts; the monitor drains them either way.
        let _ = fd::set_pipe_size(&out_r, 256 * 1024);
        let _ = fd::set_pipe_size(&err_r, 256 * 1024);
        let devnull = fd::open(c"/dev/null", libc::O_RDONLY, 0).map_err(StartError::OpenDevNull)?;
        let stdio = Stdio {
            stdin: devnull.as_fd(),
            stdout: out_w.as_fd(),
            stderr: err_w.as_fd(),
        };
        let mount_point = self.paths.run.join("rootfs");
        fs::create_dir_all(&mount_point).map_err(|err| StartError::CreateDir {
            path: mount_point.clone(),
            err,
        })?;
        // The cgroup2 directory, if there is one: the init is created in it.
        let v2_dir = placement.v2_init(&self.hierarchies);
        let v2_fd = v2_dir.as_ref().and_then(|d| {
            let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).ok()?;
            fd::open(&c, libc::O_RDONLY | libc::O_DIRECTORY, 0).ok()
        });
        let plan = Plan::build(
            &self.spec,
            &env,
            &mount_point,
            &placement.init,
            v2_dir.as_deref(),
            &stdio,
        )
        .map_err(StartError::Spawn)?;
        // berth's own init: this very binary, opened before clone.
        let exe = if self.spec.init {
            Some(fd::open(c"/proc/self/exe", libc::O_PATH, 0).map_err(StartError::OpenExe)?)
        } else {
            None
        };
        let mut plan = plan;
        // The network namespace the daemon holds for it.
        // A namespace the daemon came to hold for this run later (a
        // container added that shares it) is joined by the next init.
        let held = crate::net::netns::path(Path::new(&self.job.run_dir), &self.job.name);
        if self.job.netns.is_empty()
            && self.restarts > 0
            && self.spec.network == Network::None
            && crate::net::netns::is_held(&held)
        {
            self.job.netns = held.display().to_string();
        }
        let netns = match self.job.netns.as_str() {
            "" if matches!(
                self.spec.network,
                Network::Bridge(_) | Network::Container(_)
            ) =>
            {
                return Err(StartError::NoNetwork);
            }
            "" => None,
            path => {
                let c = std::ffi::CString::new(path).map_err(|_| StartError::JoinNetwork {
                    path: PathBuf::from(path),
                    err: io::Error::from_raw_os_error(libc::EINVAL),
                })?;
                Some(
                    fd::open(&c, libc::O_RDONLY | libc::O_CLOEXEC, 0).map_err(|err| {
                        StartError::JoinNetwork {
                            path: PathBuf::from(path),
                            err,
                        }
                    })?,
                )
            }
        };
        if let Some(ns) = &netns {
            plan.join_network(ns.as_fd(), Path::new(&self.job.netns));
        }
        if let Some(exe) = &exe {
            plan.under_init(exe.as_fd()).map_err(StartError::Spawn)?;
        }
        // Just before the init is cloned: the first write to a cgroup.procs
        // after a quiet moment waits for an RCU grace period, and the
        // init's own joins that follow at once then do not.
        self.join_cpu_leaf();
        let new_net = netns.is_none() && self.spec.network == Network::None;
        let spawned = plan.spawn(new_net, v2_fd.as_ref());
        if let Some(host) = self.host_mounts.take() {
            if let Err(e) = root::leave(host) {
                self.warnings.push(format!(
                    "the monitor could not return to the host's mount namespace (it keeps copies of the host's mounts until the run ends): {}",
                    errors::io_text(&e)
                ));
            }
        }
        let (pid, pidfd) = spawned.map_err(StartError::Spawn)?;
        Ok((pid, pidfd, out_r, err_r))
    }

    /// Makes the container's cgroups in its hierarchies, with its limits.
    fn place(&mut self, limits: Limits) -> Result<Placement, StartError> {
        let placement = Placement::new(
            &self.hierarchies,
            &self.job.cgroup_parent,
            &self.job.name,
            limits.cpus_milli.is_some(),
        );
        self.placement = Some(placement.clone());
        cgroup::create(&self.hierarchies, &placement, limits).map_err(StartError::Cgroup)?;
        Ok(placement)
    }

    /// Mounts the root from an image or with a writable layer, if the
    /// definition asks for one (see `root`), and makes it the root the
    /// child binds: from here on `spec.rootfs` names the mounted root, and
    /// the hash covers the image file opened.
    fn prepare_root(&mut self) -> Result<(), StartError> {
        let layer = state::writable_layer(Path::new(&self.job.state_dir), &self.job.name);
        // Each start of the init has its own verity device name (the
        // previous one goes with its last mount).
        let run_id = match self.restarts {
            0 => self.job.run_id.clone(),
            n => format!("{}-{n}", self.job.run_id),
        };
        let places = root::Places {
            run: &self.paths.run,
            layer: &layer,
            run_id: &run_id,
            name: &self.job.name,
        };
        // The daemon's hash: the definition's (with the image's identity)
        // and what its network adds, folded once per start (`relaunch`
        // starts again from the definition).
        let made = root::prepare(&self.spec, &places).map_err(StartError::Root)?;
        self.spec.hash = crate::net::fold(self.spec.hash, self.job.net_mix);
        if let Some(mut made) = made {
            made.hash = crate::net::fold(made.hash, self.job.net_mix);
            if self.restarts > 0 && made.hash != self.run_hash {
                // The image file was replaced since the run started: the
                // run keeps the image it started with, or ends.
                if let Some(host) = made.host_mounts {
                    let _ = root::leave(host);
                }
                let image = self.spec.image.clone().unwrap_or_default();
                return Err(StartError::ImageChanged { image });
            }
            self.spec.rootfs = made.path;
            self.spec.readonly_rootfs |= made.readonly;
            self.spec.hash = made.hash;
            self.verity = made.verity;
            self.host_mounts = made.host_mounts;
        }
        Ok(())
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
            health_restarts: self.restarts,
            stop_notice: true,
            options: StartOptions {
                log_dir: self.job.log_dir.clone(),
                log_max_size: self.job.log_max_size,
                log_max_files: self.job.log_max_files,
                cgroup_parent: self.job.cgroup_parent.clone(),
                cgroups: self
                    .cgroups()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            },
            berth: env!("CARGO_PKG_VERSION").to_string(),
        };
        state::save_unsynced(&self.paths.runtime(), &record)
    }

    /// Reserves the exit record's blocks (see `state::Reserved`). Without
    /// a reservation the record is still written at the end, if the disk
    /// has room then.
    fn reserve_exit_record(&mut self) {
        let placeholder = ExitRecord {
            version: FORMAT_VERSION,
            run_id: self.job.run_id.clone(),
            reserved: true,
            ..ExitRecord::default()
        };
        let text = placeholder.serialize_json();
        match Reserved::create(&self.paths.exit(), text.as_bytes(), EXIT_RESERVED) {
            Ok(r) => self.exit_slot = Some(r),
            Err(e) => self.warnings.push(format!(
                "reserve room for the exit record beside {}: {}; the exit code is lost if the disk is full when the container ends",
                self.paths.exit().display(),
                errors::io_text(&e)
            )),
        }
    }

    /// Writes the exit record: over its reservation if there is one (no
    /// free block needed), else as any record. None if it could not be
    /// written; a rename over the reservation is returned to be synced.
    fn record_exit(&self, end: Ending) -> Option<Option<state::Renamed>> {
        let record = ExitRecord {
            version: FORMAT_VERSION,
            run_id: self.job.run_id.clone(),
            exit_code: end.status.map(process::ExitStatus::code),
            signal: match end.status {
                Some(process::ExitStatus::Signaled(sig)) => Some(sig),
                _ => None,
            },
            started_at: end.started_at,
            finished_at: host::now_ns(),
            error: end.error.map(|e| cut(e, MAX_TEXT)),
            log_dropped: end.log_dropped,
            oom_killed: end.oom_killed,
            cause: end.cause.map(|c| cut(c, MAX_TEXT)),
            reserved: false,
            health_restarts: end.health_restarts,
        };
        let mut text = record.serialize_json();
        text.push('\n');
        let committed = self
            .exit_slot
            .as_ref()
            .and_then(|slot| slot.commit_visible(text.as_bytes()).ok());
        if committed.is_some() {
            return Some(committed);
        }
        // Nobody to tell if this fails: the daemon then reports the
        // monitor gone without a record, which is the truth.
        state::write_atomic(&self.paths.exit(), text.as_bytes())
            .ok()
            .map(|()| None)
    }
}

/// How a run ended, as the monitor saw it.
struct Ending {
    status: Option<process::ExitStatus>,
    started_at: u64,
    error: Option<String>,
    log_dropped: u64,
    oom_killed: bool,
    cause: Option<String>,
    /// Times the init was started again for failing its health checks.
    health_restarts: u32,
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// What the container's limits did during a run, from its cgroups'
/// counters at the start and at the end: whether a process was killed for
/// want of memory, and what happened in words.
fn limits_cause(spec: &ContainerSpec, start: Counters, end: Counters) -> (bool, Option<String>) {
    let oom_killed = end.oom_kills > start.oom_kills;
    let mut causes = Vec::new();
    if oom_killed {
        causes.push(match spec.memory {
            Some(limit) => format!("out of memory (memory limit {})", size_text(limit)),
            None => "out of memory".to_string(),
        });
    }
    let refused = end.pids_refused.saturating_sub(start.pids_refused);
    if refused > 0 {
        let forks = if refused == 1 { "fork" } else { "forks" };
        causes.push(match spec.pids {
            Some(limit) => format!("pids limit {limit} reached ({refused} {forks} refused)"),
            None => format!("a parent cgroup's pids limit reached ({refused} {forks} refused)"),
        });
    }
    (oom_killed, (!causes.is_empty()).then(|| causes.join("; ")))
}

/// A byte count in the largest binary unit that divides it.
fn size_text(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(unit, _)| bytes % unit == 0)
        .map_or(format!("{bytes} bytes"), |(unit, name)| {
            format!("{} {name}", bytes / unit)
        })
}

/// The file the daemon reads for `inspect` while the container runs: the
/// monitor's count of dropped log bytes, written when it changed, at most
/// once per `STATUS_EVERY`.
struct StatusFile {
    path: PathBuf,
    run_id: String,
    written: u64,
    next: Instant,
}

impl StatusFile {
    fn new(path: PathBuf, run_id: &str) -> StatusFile {
        StatusFile {
            path,
            run_id: run_id.to_string(),
            written: 0,
            next: Instant::now(),
        }
    }

    /// When the file is to be written next for a count of `dropped`.
    fn due(&self, dropped: u64) -> Option<Instant> {
        (dropped != self.written).then_some(self.next)
    }

    /// Writes the count if it changed and its time has come.
    fn update(&mut self, dropped: u64) {
        let now = Instant::now();
        if self.due(dropped).is_none_or(|at| now < at) {
            return;
        }
        let status = LogStatus {
            version: FORMAT_VERSION,
            run_id: self.run_id.clone(),
            log_dropped: dropped,
        };
        if state::save(&self.path, &status).is_ok() {
            self.written = dropped;
        }
        self.next = now + STATUS_EVERY;
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

/// The health checks of a run, as the monitor's loop drives them, and
/// what `on-unhealthy` asks for.
struct Health {
    checker: Checker,
    restart: bool,
    stop_signal: i32,
    stop_timeout: Duration,
    /// The init the checks go into: (pid, start time).
    init: (i32, u64),
    /// What a check joins: the init's cgroups and the definition.
    cgroups: Vec<PathBuf>,
    spec: ContainerSpec,
    /// The init is being stopped for failing its checks: SIGKILL then.
    kill_at: Option<Instant>,
    /// Start a new init once this one is reaped.
    restart_due: bool,
    /// The check's output may hold more than one turn read.
    output_pending: bool,
    /// Where the daemon's stop requests arrive (see `STOP_REQUEST`).
    stop_fd: Option<OwnedFd>,
    /// The daemon is stopping the container: no check, no start again.
    stopping: bool,
    /// Since when the current init is healthy.
    healthy_since: Option<Instant>,
    /// How long the init stopped last was healthy before it was not.
    healthy_for: Duration,
    /// Restarts in a row after short healthy spells, for the back-off.
    quick_restarts: u32,
}

impl Health {
    fn new(checker: Checker, spec: &ContainerSpec, stop_fd: Option<OwnedFd>) -> Health {
        Health {
            checker,
            restart: spec.on_unhealthy == OnUnhealthy::Restart,
            stop_signal: spec.stop_signal,
            stop_timeout: Duration::from_secs(spec.stop_timeout),
            init: (0, 0),
            cgroups: Vec::new(),
            spec: spec.clone(),
            kill_at: None,
            restart_due: false,
            output_pending: false,
            stop_fd,
            stopping: false,
            healthy_since: None,
            healthy_for: Duration::ZERO,
            quick_restarts: 0,
        }
    }

    /// Takes the stop requests queued on the signalfd: one is enough to
    /// halt the checks for good and call off a start again.
    fn read_stop(&mut self) {
        let Some(fd) = &self.stop_fd else {
            return;
        };
        let mut asked = false;
        while let Ok(Some(_)) = signal::read_signalfd(fd) {
            asked = true;
        }
        if asked && !self.stopping {
            self.stopping = true;
            self.restart_due = false;
            self.checker.halt();
        }
    }

    /// Whether a new init is to be started now that the last one was
    /// reaped. A stop request is sent before the daemon's stop signal,
    /// so one that ended this init is queued by now.
    fn restart_wanted(&mut self) -> bool {
        self.read_stop();
        self.restart_due && !self.stopping
    }

    /// Waits out the back-off before a start again: the daemon's restart
    /// back-off (see `policy::backoff`), where a run is the time the init
    /// stayed healthy, so a container healthy that long starts again at
    /// the first delay. False if the daemon asked for a stop meanwhile.
    fn back_off(&mut self) -> bool {
        let (delay, quick) = policy::backoff(self.quick_restarts, self.healthy_for);
        self.quick_restarts = quick;
        let until = Instant::now() + delay;
        let waited = self.stop_fd.as_ref().map(|fd| wait_readable(fd, until));
        if !matches!(waited, Some(Ok(()))) {
            // No signalfd to wait on: the delay all the same.
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        self.read_stop();
        !self.stopping
    }

    /// A new init runs (the first of the run, or one started again).
    fn init_started(&mut self, monitor: &Monitor, pid: i32, start: u64, restarted: bool) {
        self.init = (pid, start);
        self.cgroups = monitor
            .placement
            .as_ref()
            .map_or_else(Vec::new, |p| p.init.clone());
        self.spec = monitor.spec.clone();
        self.kill_at = None;
        self.restart_due = false;
        self.healthy_since = None;
        self.checker
            .init_started(Instant::now(), host::now_ns(), restarted);
    }

    fn deadline(&self) -> Option<Instant> {
        [self.checker.deadline(), self.kill_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Starts a check that is due, kills one past its timeout, and the
    /// init past its stop timeout.
    fn service(&mut self, registry: &mio::Registry, init: &OwnedFd, now: Instant) {
        self.checker.expire(now);
        if self.kill_at.is_some_and(|t| now >= t) {
            self.kill_at = None;
            let _ = process::pidfd_send_signal(init, libc::SIGKILL);
        }
        if !self.checker.due(now) {
            return;
        }
        let started = host::now_ns();
        let spawned = self.spawn_check();
        if let Some(change) = self.checker.begin(spawned, Instant::now(), started) {
            self.changed(&change, init, now);
        }
        if let Some((pidfd, output)) = self.checker.fds() {
            let _ = registry.register(&mut SourceFd(&pidfd.as_raw_fd()), CHECK, Interest::READABLE);
            if let Some(out) = output {
                let _ = registry.register(
                    &mut SourceFd(&out.as_raw_fd()),
                    CHECK_OUT,
                    Interest::READABLE,
                );
            }
        }
    }

    /// The check's pidfd fired.
    fn check_exited(&mut self, init: &OwnedFd, now: Instant) {
        if let Some(change) = self.checker.exited(now, host::now_ns()) {
            self.changed(&change, init, now);
        }
    }

    /// A check changed the record: become unhealthy with `on-unhealthy:
    /// "restart"` stops the init (stop signal, SIGKILL after its stop
    /// timeout) to start a new one.
    fn changed(&mut self, change: &health::Change, init: &OwnedFd, now: Instant) {
        if change.to == health::HEALTHY && change.from != health::HEALTHY {
            self.healthy_since = Some(now);
        }
        let became_unhealthy = change.to == health::UNHEALTHY && change.from != health::UNHEALTHY;
        if !(became_unhealthy && self.restart) || self.restart_due || self.stopping {
            return;
        }
        self.healthy_for = self
            .healthy_since
            .take()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.restart_due = true;
        self.checker.halt();
        if self.stop_timeout.is_zero() {
            let _ = process::pidfd_send_signal(init, libc::SIGKILL);
        } else {
            let _ = process::pidfd_send_signal(init, self.stop_signal);
            self.kill_at = Some(now + self.stop_timeout);
        }
    }

    /// The init has exited: no check runs on.
    fn init_exited(&mut self) {
        self.checker.halt();
        self.kill_at = None;
    }

    /// Runs the check inside the container, confined as its init is, with
    /// its output on a pipe: (pidfd, read end).
    fn spawn_check(&self) -> Result<(OwnedFd, OwnedFd), String> {
        health::spawn_check(self.init, &self.cgroups, &self.spec, self.checker.command())
    }
}

/// Waits until `fd` is readable or `until` passed, whichever is first.
fn wait_readable(fd: &OwnedFd, until: Instant) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut SourceFd(&fd.as_raw_fd()), STOP, Interest::READABLE)?;
    let mut events = Events::with_capacity(1);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match poll.poll(&mut events, Some(left)) {
            Ok(()) if !events.is_empty() => return Ok(()),
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Copies the container's output into the logs until its init has exited
/// and the pipes are drained; returns how the init ended. Readiness is edge
/// triggered, so a stream cut off at its turn's limit is read again
/// without waiting for a new event. With `health`, runs the checks too.
fn pump(
    pidfd: &OwnedFd,
    out_r: OwnedFd,
    err_r: OwnedFd,
    logs: &mut LogWriter,
    mut status_file: Option<&mut StatusFile>,
    mut health: Option<&mut Health>,
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
    if let Some(stop) = health.as_ref().and_then(|h| h.stop_fd.as_ref()) {
        registry.register(&mut SourceFd(&stop.as_raw_fd()), STOP, Interest::READABLE)?;
    }
    let pipes = [(&out_r, Stream::Stdout), (&err_r, Stream::Stderr)];
    let mut events = Events::with_capacity(8);
    let mut open = [true, true];
    // Start by reading both: output may predate the registration.
    let mut pending = [true, true];
    let mut status = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        if status.is_some() && !open[0] && !open[1] {
            break;
        }
        let past_deadline = drain_until.is_some_and(|d| Instant::now() >= d);
        if past_deadline {
            break;
        }
        let status_due = status_file.as_ref().and_then(|f| f.due(logs.dropped));
        let health_due = health.as_ref().and_then(|h| h.deadline());
        let check_output = health.as_ref().is_some_and(|h| h.output_pending);
        let timeout = if pending.iter().zip(&open).any(|(p, o)| *p && *o) || check_output {
            Some(Duration::ZERO)
        } else {
            [drain_until, status_due, health_due]
                .into_iter()
                .flatten()
                .min()
                .map(|d| d.saturating_duration_since(Instant::now()))
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
                        if let Some(h) = health.as_deref_mut() {
                            h.init_exited();
                        }
                    }
                }
                INIT => {}
                CHECK => {
                    if let Some(h) = health.as_deref_mut() {
                        h.check_exited(pidfd, Instant::now());
                    }
                }
                CHECK_OUT => {
                    if let Some(h) = health.as_deref_mut() {
                        h.output_pending = true;
                    }
                }
                STOP => {
                    if let Some(h) = health.as_deref_mut() {
                        h.read_stop();
                    }
                }
                t => pending[t.0] = true,
            }
        }
        for (i, (fd, stream)) in pipes.iter().enumerate() {
            if !(open[i] && pending[i]) {
                continue;
            }
            match drain(fd, *stream, logs, TURN) {
                Drained::More => {}
                Drained::Empty => pending[i] = false,
                Drained::Eof => {
                    open[i] = false;
                    pending[i] = false;
                    let _ = poll.registry().deregister(&mut SourceFd(&fd.as_raw_fd()));
                }
            }
        }
        if let Some(f) = status_file.as_deref_mut() {
            f.update(logs.dropped);
        }
        if let Some(h) = health.as_deref_mut() {
            if h.output_pending {
                h.output_pending = h.checker.read_output();
            }
            if status.is_none() {
                h.service(poll.registry(), pidfd, Instant::now());
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

/// Reads until the pipe is empty, at its end, or `limit` bytes were read;
/// each read goes straight into the logs' buffer and is logged with one
/// write.
fn drain(fd: &OwnedFd, stream: Stream, logs: &mut LogWriter, limit: usize) -> Drained {
    let mut total = 0;
    while total < limit {
        match fd::read(fd, logs.input()) {
            Ok(0) => return Drained::Eof,
            Ok(n) => {
                logs.take(stream, n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Empty,
            Err(_) => return Drained::Eof,
        }
    }
    Drained::More
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::logs;

    use crate::testing::TempDir;

    fn job_line(job: &Job) -> String {
        job.serialize_json()
    }

    fn a_job() -> Job {
        Job {
            version: FORMAT_VERSION,
            name: "web".to_string(),
            run_id: "r1".to_string(),
            spec: r#"{"command":["/bin/app"],"rootfs":"/srv/web"}"#.to_string(),
            log_max_size: 1 << 20,
            log_max_files: 2,
            ..Job::default()
        }
    }

    /// Hands out its bytes a few at a time, as a socket may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_job_line_is_read_and_parsed() {
        let line = format!("{}\nignored", job_line(&a_job()));
        let job = read_job(&mut Trickle(line.as_bytes(), 7)).unwrap();
        assert_eq!(job.name, "web");
        assert_eq!(job.run_id, "r1");
        let (job, spec) = parse_spec(job, "web").unwrap();
        assert_eq!(spec.command, ["/bin/app"]);
        assert_eq!(job.log_max_files, 2);
    }

    #[test]
    fn bad_jobs_are_named() {
        let text = |r: Result<Job, JobError>| r.unwrap_err().to_string();
        assert_eq!(
            text(read_job(&mut Trickle(b"{\"version\":", 4))),
            "read job: the daemon closed the channel"
        );
        let huge = vec![b' '; MAX_JOB + 2];
        assert_eq!(
            text(read_job(&mut Trickle(&huge, 8192))),
            "read job: job is too large"
        );
        assert_eq!(
            text(read_job(&mut Trickle(b"\xff\xfe\n", 8))),
            "read job: job is not UTF-8"
        );
        assert!(text(parse_job(b"[1, 2]")).starts_with("read job: bad job: "));
        let old = Job {
            version: FORMAT_VERSION + 1,
            ..a_job()
        };
        assert_eq!(
            text(parse_job(job_line(&old).as_bytes())),
            format!(
                "read job: job format {} is not {FORMAT_VERSION}",
                FORMAT_VERSION + 1
            )
        );
        let err = parse_spec(a_job(), "db").unwrap_err();
        assert_eq!(err.to_string(), "job is for web, not db");
        let broken = Job {
            spec: "{}".to_string(),
            ..a_job()
        };
        assert!(matches!(parse_spec(broken, "web"), Err(JobError::Spec(_))));
    }

    #[test]
    fn a_reply_is_one_json_line() {
        let ok = Reply {
            ok: true,
            pid: 42,
            init_start: 7,
            started_at: 9,
            error: None,
            warning: None,
        };
        let line = String::from_utf8(reply_line(&ok)).unwrap();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let back: Reply = crate::json::decode(line.trim_end()).unwrap();
        assert!(back.ok);
        assert_eq!((back.pid, back.init_start, back.started_at), (42, 7, 9));

        let line = String::from_utf8(reply_line(&failure_reply(
            "exec /bin/nope: No such file\nor directory",
        )))
        .unwrap();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        let back: Reply = crate::json::decode(line.trim_end()).unwrap();
        assert!(!back.ok);
        assert_eq!(
            back.error.as_deref(),
            Some("exec /bin/nope: No such file\nor directory")
        );
    }

    #[test]
    fn start_errors_name_the_step_and_path() {
        let err = || io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(
            StartError::CreateDir {
                path: PathBuf::from("/run/berth/web"),
                err: err(),
            }
            .to_string(),
            "create /run/berth/web: Permission denied"
        );
        assert_eq!(
            StartError::OpenLog {
                path: PathBuf::from("/var/log/berth/web"),
                err: err(),
            }
            .to_string(),
            "open log /var/log/berth/web: Permission denied"
        );
        assert_eq!(
            StartError::WriteRuntime {
                path: PathBuf::from("/run/berth/web/runtime.json"),
                err: err(),
            }
            .to_string(),
            "write /run/berth/web/runtime.json: Permission denied"
        );
        assert_eq!(
            StartError::Spawn(SpawnError::Step {
                what: "exec /bin/nope".to_string(),
                errno: libc::ENOENT,
            })
            .to_string(),
            "exec /bin/nope: No such file or directory"
        );
    }

    #[test]
    fn limits_hit_are_said_in_words() {
        let spec = |extra: &str| {
            let text = format!(r#"{{"command":["/bin/app"],"rootfs":"/srv/web"{extra}}}"#);
            config::parse_container("web", &text, Path::new("web.json")).unwrap()
        };
        let at = |oom_kills, pids_refused| Counters {
            oom_kills,
            pids_refused,
        };
        let limited = spec(r#","memory":"8m","pids":5"#);
        assert_eq!(limits_cause(&limited, at(0, 0), at(0, 0)), (false, None));
        assert_eq!(
            limits_cause(&limited, at(1, 0), at(2, 0)),
            (true, Some("out of memory (memory limit 8 MiB)".to_string()))
        );
        assert_eq!(
            limits_cause(&limited, at(0, 2), at(1, 5)),
            (
                true,
                Some(
                    "out of memory (memory limit 8 MiB); pids limit 5 reached (3 forks refused)"
                        .to_string()
                )
            )
        );
        let free = spec("");
        assert_eq!(
            limits_cause(&free, at(0, 0), at(1, 1)),
            (
                true,
                Some(
                    "out of memory; a parent cgroup's pids limit reached (1 fork refused)"
                        .to_string()
                )
            )
        );
        assert_eq!(size_text(3 << 30), "3 GiB");
        assert_eq!(size_text(1536 << 10), "1536 KiB");
        assert_eq!(size_text(1000), "1000 bytes");
    }

    #[test]
    fn long_texts_are_cut_to_fit_the_exit_record() {
        assert_eq!(cut("short".to_string(), 10), "short");
        assert_eq!(cut("0123456789abc".to_string(), 10), "0123456...");
        // Never inside a character.
        assert_eq!(cut("ééééé".to_string(), 6), "é...");
    }

    #[test]
    fn the_status_file_is_written_when_the_count_changed_at_most_once_a_period() {
        let tmp = TempDir::new("status");
        let path = tmp.0.join("log-status.json");
        let mut f = StatusFile::new(path.clone(), "r1");
        f.update(0);
        assert!(!path.exists(), "nothing dropped, nothing written");
        f.update(10);
        let read = || match state::load::<LogStatus>(&path) {
            state::Loaded::Ok(s) => (s.run_id, s.log_dropped),
            other => panic!("{other:?}"),
        };
        assert_eq!(read(), ("r1".to_string(), 10));
        // Within the period: only due later.
        f.update(20);
        assert_eq!(read().1, 10);
        assert!(f.due(20).is_some_and(|at| at > Instant::now()));
        assert_eq!(f.due(10), None);
    }

    /// Every text record in the live log file: (stream, full, content).
    fn records(dir: &Path) -> Vec<(Stream, bool, String)> {
        let text = fs::read(logs::file_path(dir, 0)).unwrap();
        logs::texts(&text)
            .into_iter()
            .map(|t| {
                let content = String::from_utf8_lossy(t.content).into_owned();
                (t.stream, t.full, content)
            })
            .collect()
    }

    #[test]
    fn drain_stops_at_its_limit_when_empty_and_at_the_end() {
        let tmp = TempDir::new("drain");
        let mut logs = LogWriter::open(&tmp.0, 1 << 20, 1).unwrap();
        let (r, w) = fd::pipe().unwrap();
        fd::set_nonblocking(&r, true).unwrap();
        let mut out = fs::File::from(w);
        out.write_all(b"one\ntwo\n").unwrap();
        assert!(drain(&r, Stream::Stdout, &mut logs, 4) == Drained::More);
        assert!(drain(&r, Stream::Stdout, &mut logs, 64) == Drained::Empty);
        out.write_all(b"three").unwrap();
        drop(out);
        assert!(drain(&r, Stream::Stdout, &mut logs, 64) == Drained::Eof);
        logs.finish();
        assert_eq!(
            records(&tmp.0),
            [
                (Stream::Stdout, true, "one".to_string()),
                (Stream::Stdout, true, "two".to_string()),
                (Stream::Stdout, false, "three".to_string()),
            ]
        );
    }

    #[test]
    // `pump` reaps the child through its pidfd.
    #[allow(clippy::zombie_processes)]
    fn pump_logs_both_streams_and_returns_the_exit() {
        let tmp = TempDir::new("pump");
        let mut logs = LogWriter::open(&tmp.0, 1 << 20, 1).unwrap();
        let (out_r, out_w) = fd::pipe().unwrap();
        let (err_r, err_w) = fd::pipe().unwrap();
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .stdin(std::process::Stdio::null())
            .stdout(out_w)
            .stderr(err_w)
            .spawn()
            .unwrap();
        let pidfd = process::pidfd_open(child.id() as i32).unwrap();
        let status = pump(&pidfd, out_r, err_r, &mut logs, None, None).unwrap();
        logs.finish();
        assert_eq!(status, process::ExitStatus::Exited(3));
        let mut got = records(&tmp.0);
        got.sort_by_key(|(s, _, _)| *s == Stream::Stderr);
        assert_eq!(
            got,
            [
                (Stream::Stdout, true, "out".to_string()),
                (Stream::Stderr, true, "err".to_string()),
            ]
        );
    }
}
