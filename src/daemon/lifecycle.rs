//! A container as the daemon sees it, and everything that moves it
//! between states: start, the monitor's reply, stop (signal, grace,
//! SIGKILL), the end of a run, and the restart policy.
//!
//! Status is a small state machine:
//!
//! ```text
//! stopped/exited/failed --start--> running --exit--> exited | failed
//!        running --stop--> (stop signal, grace, SIGKILL) --exit--> stopped
//!        exited/failed --policy--> restarting --timer--> running
//! ```

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nanoserde::SerJson;

use super::clients::Waiter;
use super::ratelimit::{RateLimit, Verdict};
use super::{Daemon, Source};
use crate::api::Info;
use crate::config::{self, ContainerSpec, RestartPolicy};
use crate::container::monitor::{self, Job, Reply};
use crate::host;
use crate::policy::{self, Ending};
use crate::signals;
use crate::state::{
    self, ContainerState, ExitRecord, FORMAT_VERSION, Loaded, Paths, RuntimeRecord, StartOptions,
};
use crate::sys::{fd, process};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Never started in this boot, or stopped by the daemon.
    Stopped,
    /// Stopped by the user (`berth stop`).
    StoppedByUser,
    /// The monitor runs; `Run::init_pid` is 0 until it has replied.
    Running,
    Exited,
    /// Waiting for the restart back-off.
    Restarting,
    Failed,
    /// Its records cannot be trusted (newer format, torn): hands off. It
    /// shows as "running" while the process the record seems to name is
    /// alive, else as "failed"; either way with the reason as a warning.
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Stopped | Status::StoppedByUser => "stopped",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Restarting => "restarting",
            Status::Failed => "failed",
            Status::Unknown => "failed",
        }
    }
}

/// Why a stop was asked for, which decides what happens after the exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    User,
    Shutdown,
    /// Reload or restore replaces or removes it; `after` says which.
    Reconcile,
}

/// What to do once the current run has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Apply the restart policy.
    Policy,
    /// Start it again (restart, a replaced definition, crash recovery).
    Start,
    /// Start it again only if its definition says autostart.
    Autostart,
    /// Forget it: the definition is gone.
    Forget,
    /// Nothing (a stop by the user or the shutdown).
    Nothing,
}

#[derive(Debug)]
pub struct Stopping {
    pub reason: StopReason,
    pub kill_at: Option<Instant>,
}

/// One run of a container: its monitor and, once exec'd, its init.
#[derive(Debug)]
pub struct Run {
    pub run_id: String,
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub monitor_pidfd: OwnedFd,
    pub monitor_token: Token,
    pub channel: Option<(mio::net::UnixStream, Token, Vec<u8>)>,
    pub init_pid: i32,
    pub init_start: u64,
    pub init_pidfd: Option<OwnedFd>,
    pub started_at: u64,
    pub hash: u64,
    pub options: StartOptions,
}

/// What is left of a run once its monitor is gone.
#[derive(Debug)]
pub struct Ended {
    pub init_pid: i32,
    pub init_start: u64,
    pub init_pidfd: Option<OwnedFd>,
    pub started_at: u64,
    pub cgroups: Vec<String>,
}

impl From<Run> for Ended {
    fn from(run: Run) -> Ended {
        Ended {
            init_pid: run.init_pid,
            init_start: run.init_start,
            init_pidfd: run.init_pidfd,
            started_at: run.started_at,
            cgroups: run.options.cgroups,
        }
    }
}

#[derive(Debug)]
pub struct Ctr {
    pub name: String,
    pub spec: Option<ContainerSpec>,
    /// Why the definition is not valid, if it is not.
    pub invalid: Option<String>,
    pub status: Status,
    pub run: Option<Run>,
    pub exit_code: Option<i32>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
    pub warning: Option<String>,
    pub persist: ContainerState,
    pub stopping: Option<Stopping>,
    pub after_exit: AfterExit,
    pub restart_at: Option<Instant>,
    pub consecutive_failures: u32,
    pub waiters: Vec<Waiter>,
    pub limiter: RateLimit,
    /// For a record that cannot be trusted: the (pid, start time) of the
    /// container's init as far as the record can be read, for display only.
    pub untouched: Option<(i32, u64)>,
}

impl Ctr {
    pub fn new(name: &str) -> Ctr {
        Ctr {
            name: name.to_string(),
            spec: None,
            invalid: None,
            status: Status::Stopped,
            run: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
            error: None,
            warning: None,
            persist: ContainerState {
                version: FORMAT_VERSION,
                ..ContainerState::default()
            },
            stopping: None,
            after_exit: AfterExit::Policy,
            restart_at: None,
            consecutive_failures: 0,
            waiters: Vec::new(),
            limiter: RateLimit::new(),
            untouched: None,
        }
    }

    /// The stop grace of the definition it runs now (10 s without one).
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.spec.as_ref().map_or(10, |s| s.stop_timeout))
    }

    /// A monitor exists for it.
    pub fn is_active(&self) -> bool {
        self.run.is_some()
    }

    pub fn deadline(&self) -> Option<Instant> {
        let kill = self.stopping.as_ref().and_then(|s| s.kill_at);
        match (kill, self.restart_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn info(&self, cfg_log_dir: &Path) -> Info {
        let run = self.run.as_ref();
        let untouched_pid = self
            .untouched
            .filter(|&(pid, start)| {
                self.status == Status::Unknown && host::same_process(pid, start)
            })
            .map(|(pid, _)| pid);
        Info {
            name: self.name.clone(),
            status: if untouched_pid.is_some() {
                "running"
            } else {
                self.status.as_str()
            }
            .to_string(),
            pid: run.map_or(untouched_pid.unwrap_or(0), |r| r.init_pid),
            exit_code: if self.status == Status::Running {
                None
            } else {
                self.exit_code
            },
            restart_count: self.persist.restart_count,
            started_at: self.started_at.map(host::rfc3339),
            finished_at: if self.status == Status::Running {
                None
            } else {
                self.finished_at.map(host::rfc3339)
            },
            error: self.error.clone().or_else(|| self.invalid.clone()),
            monitor_pid: run.map_or(0, |r| r.monitor_pid),
            monitor_start: run.map_or(0, |r| r.monitor_start),
            restart: self
                .spec
                .as_ref()
                .map_or(String::new(), |s| s.restart.to_string()),
            autostart: self.spec.as_ref().is_some_and(|s| s.autostart),
            stopped_by_user: self.persist.stopped_by_user,
            rootfs: self
                .spec
                .as_ref()
                .map_or(String::new(), |s| s.rootfs.display().to_string()),
            command: self.spec.as_ref().map_or(Vec::new(), |s| s.command.clone()),
            config_hash: match (run, &self.spec) {
                (Some(r), _) => format!("{:016x}", r.hash),
                (None, Some(s)) => format!("{:016x}", s.hash),
                (None, None) => String::new(),
            },
            log_dir: match run {
                Some(r) if !r.options.log_dir.is_empty() => Path::new(&r.options.log_dir)
                    .join(&self.name)
                    .display()
                    .to_string(),
                _ => cfg_log_dir.join(&self.name).display().to_string(),
            },
            warning: self.warning.clone(),
        }
    }
}

impl Daemon {
    pub(super) fn paths(&self, name: &str) -> Paths {
        Paths::new(&self.cfg.run_dir, &self.cfg.state_dir, name)
    }

    /// Logs a message about one container, rate-limited per container.
    pub(super) fn note(&mut self, name: &str, level: log::Level, msg: &str) {
        if level > log::max_level() {
            return; // filtered out anyway: spend none of the budget on it
        }
        let verdict = match self.containers.get_mut(name) {
            Some(c) => c.limiter.check(Instant::now()),
            None => Verdict::Log,
        };
        match verdict {
            Verdict::Drop => {}
            Verdict::Log => log::log!(level, "{name}: {msg}"),
            Verdict::LogAfterDropped(n) => {
                log::log!(level, "{name}: ({n} earlier messages suppressed) {msg}");
            }
        }
    }

    pub(super) fn save_persist(&mut self, name: &str) {
        let Some(c) = self.containers.get(name) else {
            return;
        };
        let paths = self.paths(name);
        let result =
            state::ensure_dir(&paths.state).and_then(|_| state::save(&paths.state(), &c.persist));
        if let Err(e) = result {
            let msg = format!("write {}: {e}", paths.state().display());
            self.note(name, log::Level::Error, &msg);
        }
    }

    /// Starts the container: spawns its monitor and sends it the job. The
    /// outcome arrives on the channel (`channel_readable`).
    pub(super) fn start_container(&mut self, name: &str) -> Result<(), String> {
        let (spec, paths) = {
            let c = self
                .containers
                .get(name)
                .ok_or_else(|| format!("no such container: {name}"))?;
            if c.status == Status::Unknown {
                return Err(format!(
                    "{name}: {}; not touching it",
                    c.warning
                        .as_deref()
                        .unwrap_or("its records cannot be trusted")
                ));
            }
            if c.is_active() {
                return Ok(());
            }
            let spec = match (&c.spec, &c.invalid) {
                (Some(s), _) => s.clone(),
                (None, Some(why)) => return Err(why.clone()),
                (None, None) => return Err(format!("{name}: no definition")),
            };
            (spec, self.paths(name))
        };
        if let Err(e) = config::check_container_host(
            &spec,
            &self.cfg.containers_dir.join(format!("{name}.json")),
        ) {
            let msg = e.to_string();
            if let Some(c) = self.containers.get_mut(name) {
                c.status = Status::Failed;
                c.error = Some(msg.clone());
            }
            return Err(msg);
        }
        let run_id = format!(
            "{:016x}",
            process::random_u64().map_err(|e| format!("getrandom: {e}"))?
        );
        let job = Job {
            version: FORMAT_VERSION,
            name: name.to_string(),
            run_id: run_id.clone(),
            spec: spec.canonical.clone(),
            run_dir: self.cfg.run_dir.display().to_string(),
            state_dir: self.cfg.state_dir.display().to_string(),
            log_dir: self.cfg.log_dir.display().to_string(),
            log_max_size: self.cfg.log_max_size,
            log_max_files: self.cfg.log_max_files,
            cgroup_parent: self.cfg.cgroup_parent.clone(),
        };
        let options = StartOptions {
            log_dir: job.log_dir.clone(),
            log_max_size: job.log_max_size,
            log_max_files: job.log_max_files,
            cgroup_parent: job.cgroup_parent.clone(),
            cgroups: Vec::new(),
        };
        fs::create_dir_all(&paths.run)
            .map_err(|e| format!("create {}: {e}", paths.run.display()))?;
        let (ours, theirs) = fd::socketpair().map_err(|e| format!("create socketpair: {e}"))?;
        let (pid, pidfd) =
            monitor::spawn(name, &theirs).map_err(|e| format!("spawn monitor: {e}"))?;
        drop(theirs);
        let mut line = job.serialize_json();
        line.push('\n');
        let mut stream = std::os::unix::net::UnixStream::from(ours);
        // The job fits in the socket buffer; the monitor reads it at once.
        if let Err(e) = stream.write_all(line.as_bytes()) {
            let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
            return Err(format!("send job to monitor: {e}"));
        }
        let _ = stream.set_nonblocking(true);
        let mut stream = mio::net::UnixStream::from_std(stream);
        let monitor_token = self.sources.insert(Source::Monitor(name.to_string()));
        let channel_token = self.sources.insert(Source::Channel(name.to_string()));
        let reg = self.poll.registry();
        let r1 = reg.register(
            &mut SourceFd(&pidfd.as_raw_fd()),
            monitor_token,
            Interest::READABLE,
        );
        let r2 = reg.register(&mut stream, channel_token, Interest::READABLE);
        if let Err(e) = r1.and(r2) {
            self.note(
                name,
                log::Level::Error,
                &format!("register monitor fds: {e}"),
            );
        }
        let c = self.containers.get_mut(name).expect("checked above");
        c.run = Some(Run {
            run_id,
            monitor_pid: pid,
            monitor_start: host::start_time(pid).unwrap_or(0),
            monitor_pidfd: pidfd,
            monitor_token,
            channel: Some((stream, channel_token, Vec::new())),
            init_pid: 0,
            init_start: 0,
            init_pidfd: None,
            started_at: host::now_ns(),
            hash: spec.hash,
            options,
        });
        // The status stays what it was (stopped, exited, restarting...)
        // until the monitor reports the exec: "running" always has a pid.
        c.restart_at = None;
        c.stopping = None;
        c.after_exit = AfterExit::Policy;
        self.note(name, log::Level::Debug, &format!("monitor {pid} started"));
        Ok(())
    }

    /// The monitor's reply: exec'd (with the init's pid) or the error.
    pub(super) fn channel_readable(&mut self, name: &str, token: Token) {
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        let Some(run) = c.run.as_mut() else { return };
        let Some((stream, chan_token, buf)) = run.channel.as_mut() else {
            return;
        };
        if *chan_token != token {
            return;
        }
        let mut chunk = [0u8; 4096];
        let mut eof = false;
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let line = buf
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| buf[..i].to_vec());
        if line.is_none() && !eof && buf.len() < 64 * 1024 {
            return; // more to come
        }
        let (mut stream, tok, _) = run.channel.take().expect("present above");
        let _ = self.poll.registry().deregister(&mut stream);
        self.sources.remove(tok);
        let reply = line
            .and_then(|l| String::from_utf8(l).ok())
            .and_then(|l| crate::json::decode::<Reply>(&l).ok());
        match reply {
            Some(r) if r.ok => self.container_started(name, r),
            Some(r) => {
                let msg = r.error.unwrap_or_else(|| "monitor failed".to_string());
                let c = self.containers.get_mut(name).expect("present above");
                c.status = Status::Failed;
                c.error = Some(msg.clone());
                self.note(name, log::Level::Error, &format!("start failed: {msg}"));
                self.answer_start_waiters(name, Err(msg));
            }
            // No reply: the monitor died; its exit is handled when its
            // pidfd fires.
            None => {}
        }
    }

    fn container_started(&mut self, name: &str, reply: Reply) {
        let c = self.containers.get_mut(name).expect("caller checked");
        let Some(run) = c.run.as_mut() else { return };
        run.init_pid = reply.pid;
        run.init_start = reply.init_start;
        run.started_at = reply.started_at;
        // A pidfd for the init, checked against its start time so that a
        // pid reused in between is never signalled.
        let mut gone = false;
        match process::pidfd_open(reply.pid) {
            Ok(fd) if host::same_process(reply.pid, reply.init_start) => run.init_pidfd = Some(fd),
            _ => gone = true,
        }
        c.started_at = Some(reply.started_at);
        c.status = Status::Running;
        c.error = None;
        c.exit_code = None;
        c.finished_at = None;
        let stop_signal = c.spec.as_ref().map_or(libc::SIGTERM, |s| s.stop_signal);
        let stop_pending = c.stopping.is_some();
        let pid = reply.pid;
        self.note(name, log::Level::Info, &format!("started, pid {pid}"));
        if gone {
            self.note(name, log::Level::Debug, &format!("init {pid} already gone"));
        }
        self.answer_start_waiters(name, Ok(()));
        if stop_pending {
            // A stop came in while it was starting: deliver it now.
            let _ = self.signal_container(name, stop_signal);
        }
    }

    /// The monitor's pidfd fired: the run is over.
    pub(super) fn monitor_exited(&mut self, name: &str, token: Token) {
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        let Some(run) = c.run.as_ref() else { return };
        if run.monitor_token != token {
            return;
        }
        // It is our child unless a previous daemon started it: reap if so.
        let _ = process::waitid_pidfd(&run.monitor_pidfd, false);
        let run = self.take_run(name).expect("present above");
        let paths = self.paths(name);
        let ending = match state::load::<ExitRecord>(&paths.exit()) {
            Loaded::Ok(rec) if rec.run_id == run.run_id => Ok(rec),
            Loaded::Ok(_) | Loaded::Missing => Err(format!(
                "monitor (pid {}) ended without an exit record; exit code lost",
                run.monitor_pid
            )),
            Loaded::Newer(v) => Err(format!(
                "exit record is in format {v}, newer than this berth"
            )),
            Loaded::Corrupt(why) => Err(format!("exit record {}: {why}", paths.exit().display())),
        };
        let mut ended = Ended::from(run);
        if ending.is_err() {
            // The monitor wrote down the cgroups it made; clean them up.
            if let Loaded::Ok(rec) = self.runtime_record(name) {
                ended.cgroups = rec.options.cgroups;
            }
        }
        self.run_ended(name, ended, ending, true);
    }

    /// Deregisters and returns the container's run.
    pub(super) fn take_run(&mut self, name: &str) -> Option<Run> {
        let c = self.containers.get_mut(name)?;
        let mut run = c.run.take()?;
        let reg = self.poll.registry();
        let _ = reg.deregister(&mut SourceFd(&run.monitor_pidfd.as_raw_fd()));
        self.sources.remove(run.monitor_token);
        if let Some((mut stream, tok, _)) = run.channel.take() {
            let _ = reg.deregister(&mut stream);
            self.sources.remove(tok);
        }
        Some(run)
    }

    /// Bookkeeping for a finished run, live or found at start-up, then
    /// whatever comes next: forget, start again, or the restart policy.
    /// `announce`: log the end (false when a previous daemon already did).
    pub(super) fn run_ended(
        &mut self,
        name: &str,
        run: Ended,
        ending: Result<ExitRecord, String>,
        announce: bool,
    ) {
        let shutting_down = self.shutdown.is_some();
        let c = self.containers.get_mut(name).expect("caller checked");
        let stop_reason = c.stopping.take().map(|s| s.reason);
        let (code, error) = match &ending {
            Ok(rec) => (rec.exit_code, rec.error.clone()),
            Err(why) => (None, Some(why.clone())),
        };
        if let Ok(rec) = &ending {
            if rec.started_at > 0 {
                c.started_at = Some(rec.started_at);
            }
            c.finished_at = Some(rec.finished_at);
        } else {
            c.finished_at = Some(host::now_ns());
            // The monitor is gone; its container must not outlive it.
            if let Some(fd) = &run.init_pidfd {
                if host::same_process(run.init_pid, run.init_start) {
                    let _ = process::pidfd_send_signal(fd, libc::SIGKILL);
                }
            }
            let hierarchies = crate::container::cgroup::discover_live().unwrap_or_default();
            let dirs: Vec<_> = run
                .cgroups
                .iter()
                .map(std::path::PathBuf::from)
                .filter(|d| crate::container::cgroup::is_below_a_hierarchy(d, &hierarchies))
                .collect();
            // One try, no waiting in the event loop: a directory still busy
            // is reused by the next start.
            let _ = crate::container::cgroup::remove(&dirs, Duration::ZERO);
        }
        c.exit_code = code;
        c.error = error.clone();
        let ran_for =
            Duration::from_nanos(c.finished_at.unwrap_or(0).saturating_sub(run.started_at));
        c.status = match (stop_reason, &error) {
            (Some(StopReason::User), _) => Status::StoppedByUser,
            (Some(_), _) => Status::Stopped,
            (None, Some(_)) => Status::Failed,
            (None, None) => Status::Exited,
        };
        let msg = match (code, &error) {
            (_, Some(e)) => format!("failed: {e}"),
            (Some(code), None) => format!(
                "exited with code {code} after {:.1}s",
                ran_for.as_secs_f64()
            ),
            (None, None) => "exited".to_string(),
        };
        let level = if error.is_some() {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        if announce {
            self.note(name, level, &msg);
        }
        if run.init_pid == 0 {
            // It never got as far as exec: whoever waits for the start
            // gets the reason.
            let why = error
                .clone()
                .unwrap_or_else(|| "the monitor exited before the container started".to_string());
            self.answer_start_waiters(name, Err(why));
        }
        self.answer_exit_waiters(name, code, error.clone().filter(|_| code.is_none()));

        let paths = self.paths(name);
        if shutting_down {
            // A daemon stop without live restore: the next daemon starts
            // from the definitions, not from this boot's history.
            let _ = fs::remove_file(paths.runtime());
            let _ = fs::remove_file(paths.last_run());
            return;
        }
        // This end is handled: keep the record as history only.
        if paths.runtime().exists() {
            if let Err(e) = fs::rename(paths.runtime(), paths.last_run()) {
                let msg = format!("rename {}: {e}", paths.runtime().display());
                self.note(name, log::Level::Error, &msg);
            }
        }
        let c = self.containers.get_mut(name).expect("caller checked");
        let after = std::mem::replace(&mut c.after_exit, AfterExit::Policy);
        match after {
            AfterExit::Forget => self.forget(name),
            AfterExit::Nothing => {}
            AfterExit::Start => {
                let _ = self.start_or_fail(name);
            }
            AfterExit::Autostart => {
                // Found running with live restore off, now stopped: start
                // it again if its definition or its policy would have.
                let _ = fs::remove_file(paths.last_run());
                let c = self.containers.get(name).expect("present");
                let wanted = c.spec.as_ref().is_some_and(|s| {
                    s.autostart
                        || matches!(
                            s.restart,
                            RestartPolicy::Always | RestartPolicy::UnlessStopped
                        )
                });
                if wanted && !c.persist.stopped_by_user {
                    let _ = self.start_or_fail(name);
                }
            }
            AfterExit::Policy => {
                if stop_reason.is_some() {
                    return;
                }
                self.apply_policy(name, code, ran_for);
            }
        }
    }

    /// Decides on a restart after an exit nobody asked for.
    pub(super) fn apply_policy(&mut self, name: &str, code: Option<i32>, ran_for: Duration) {
        let c = self.containers.get_mut(name).expect("caller checked");
        let Some(spec) = &c.spec else { return };
        let ending = Ending {
            code,
            stopped_by_user: c.persist.stopped_by_user,
            restart_count: c.persist.restart_count,
        };
        if !policy::should_restart(spec.restart, ending) {
            return;
        }
        let (delay, consecutive) = policy::backoff(c.consecutive_failures, ran_for);
        c.consecutive_failures = consecutive;
        c.restart_at = Some(Instant::now() + delay);
        c.status = Status::Restarting;
        let count = c.persist.restart_count + 1;
        self.note(
            name,
            log::Level::Info,
            &format!("restarting in {} ms (restart {count})", delay.as_millis()),
        );
    }

    /// Starts the container; if that fails at once, logs why, answers who
    /// waits for the start and marks it failed (one that cannot be trusted
    /// keeps its status).
    pub(super) fn start_or_fail(&mut self, name: &str) -> Result<(), String> {
        let result = self.start_container(name);
        if let Err(e) = &result {
            self.note(name, log::Level::Error, &format!("start failed: {e}"));
            self.answer_start_waiters(name, Err(e.clone()));
            if let Some(c) = self.containers.get_mut(name) {
                if !c.is_active() && c.status != Status::Unknown {
                    c.status = Status::Failed;
                    c.error = Some(e.clone());
                }
            }
        }
        result
    }

    /// Timers of one container: SIGKILL after the stop grace, restarts.
    pub(super) fn container_timers(&mut self, name: &str, now: Instant) {
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        if c.stopping
            .as_ref()
            .and_then(|s| s.kill_at)
            .is_some_and(|t| now >= t)
        {
            if let Some(s) = c.stopping.as_mut() {
                s.kill_at = None;
            }
            self.kill_now(name, "stop timeout reached");
            return;
        }
        if c.restart_at.is_some_and(|t| now >= t) {
            c.restart_at = None;
            c.persist.restart_count += 1;
            self.save_persist(name);
            let _ = self.start_or_fail(name);
        }
    }

    /// Sends SIGKILL to the container's init.
    pub(super) fn kill_now(&mut self, name: &str, why: &str) {
        let Some(c) = self.containers.get(name) else {
            return;
        };
        let Some(run) = &c.run else { return };
        match &run.init_pidfd {
            Some(fd) if process::pidfd_send_signal(fd, libc::SIGKILL).is_ok() => {
                let msg = format!("{why}: sent SIGKILL");
                self.note(name, log::Level::Warn, &msg);
            }
            Some(_) => {}
            None if run.channel.is_some() => {
                // Still starting, with no pid to signal: the child may be
                // stuck before exec (say, on a FIFO in its rootfs). Killing
                // its monitor kills it too (parent-death signal).
                let _ = process::pidfd_send_signal(&run.monitor_pidfd, libc::SIGKILL);
                let msg = format!("{why}: not started yet, sent SIGKILL to its monitor");
                self.note(name, log::Level::Warn, &msg);
            }
            None => {}
        }
    }

    /// Sends `sig` to the container's init through its pidfd.
    pub(super) fn signal_container(&mut self, name: &str, sig: i32) -> Result<(), String> {
        let c = self
            .containers
            .get(name)
            .ok_or_else(|| format!("no such container: {name}"))?;
        let run = c
            .run
            .as_ref()
            .filter(|r| r.init_pidfd.is_some())
            .ok_or_else(|| format!("{name} is not running"))?;
        let fd = run.init_pidfd.as_ref().expect("filtered");
        process::pidfd_send_signal(fd, sig)
            .map_err(|e| format!("signal {} to {name}: {e}", signals::signal_name(sig)))
    }

    /// Begins a stop: the stop signal now, SIGKILL after `grace`.
    pub(super) fn stop_container(
        &mut self,
        name: &str,
        reason: StopReason,
        grace: Duration,
        after: AfterExit,
    ) {
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        c.restart_at = None;
        if reason == StopReason::User {
            c.persist.stopped_by_user = true;
        }
        if !c.is_active() {
            if reason == StopReason::User
                && matches!(
                    c.status,
                    Status::Restarting | Status::Exited | Status::Failed
                )
            {
                c.status = Status::StoppedByUser;
            }
            let code = c.exit_code;
            if reason == StopReason::User {
                self.save_persist(name);
            }
            // A restart that will not come: whoever waits for an exit has
            // seen the last one.
            self.answer_exit_waiters(name, code, None);
            return;
        }
        // A removal under way stays one when a user's stop comes on top
        // (a reload that brings the definition back may still cancel it).
        let after = if c.after_exit == AfterExit::Forget && reason == StopReason::User {
            AfterExit::Forget
        } else {
            after
        };
        let previous_after = std::mem::replace(&mut c.after_exit, after);
        let sig = c.spec.as_ref().map_or(libc::SIGTERM, |s| s.stop_signal);
        let already = c.stopping.is_some();
        if !already || reason == StopReason::User {
            c.stopping = Some(Stopping {
                reason,
                kill_at: Some(Instant::now() + grace),
            });
        }
        // Still starting: no pid to signal yet. The stop signal goes out
        // when the monitor reports the exec (`container_started`), SIGKILL
        // at the deadline either way.
        let started = c.run.as_ref().is_some_and(|r| r.init_pidfd.is_some());
        if reason == StopReason::User {
            self.save_persist(name);
        }
        if previous_after == AfterExit::Start && after != AfterExit::Start {
            let msg = format!("{name} was stopped before it could start again");
            self.answer_start_waiters(name, Err(msg));
        }
        if grace.is_zero() {
            self.kill_now(name, "stop with no grace");
        } else if started && !already {
            let _ = self.signal_container(name, sig);
        }
    }

    pub(super) fn stop_for_shutdown(&mut self, name: &str, total: Duration) {
        let Some(c) = self.containers.get(name) else {
            return;
        };
        let grace = c.grace().min(total);
        self.stop_container(name, StopReason::Shutdown, grace, AfterExit::Nothing);
    }

    /// Drops a container whose definition is gone, and its records.
    pub(super) fn forget(&mut self, name: &str) {
        let paths = self.paths(name);
        let _ = fs::remove_dir_all(&paths.run);
        let _ = fs::remove_dir_all(&paths.state);
        if let Some(c) = self.containers.remove(name) {
            for w in c.waiters {
                self.answer(
                    w.token,
                    crate::api::Response::error(format!("{name} was removed")),
                );
            }
        }
        info!("{name}: removed");
    }

    /// Whether a running container's records can be acted on.
    pub(super) fn runtime_record(&self, name: &str) -> Loaded<RuntimeRecord> {
        state::load(&self.paths(name).runtime())
    }

    pub(super) fn warn_once(&mut self, name: &str, msg: String) {
        warn!("{name}: {msg}");
        if let Some(c) = self.containers.get_mut(name) {
            c.warning = Some(msg);
        }
    }
}
