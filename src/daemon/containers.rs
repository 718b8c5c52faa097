//! The containers component: every container the daemon knows, the fds of
//! their runs (the monitor's pidfd, the channel on which it reports the
//! exec, the init's pidfd) and their tokens, and the executor of the
//! lifecycle's effects. What happens to a container goes in as a
//! [`lifecycle::Event`] through [`Containers::feed`]; the decisions are
//! made by [`lifecycle::on`], the system calls here.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::info;
use mio::net::UnixStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::events;
use super::lifecycle::{
    self, Answers, ClientId, Ctx, Def, Effect, Ending, Event, Exec, Kind as PhaseKind, Lifecycle,
    LimitsHit, Phase, RunFacts,
};
use super::ratelimit::{RateLimit, Verdict};
use super::tokens::{Slab, Tag};
use crate::api::Info;
use crate::config::{self, ContainerSpec, DaemonConfig};
use crate::container::cgroup;
use crate::container::monitor::{self, Job, Reply};
use crate::errors;
use crate::host;
use crate::state::{
    self, ContainerState, ExitRecord, FORMAT_VERSION, Loaded, LogStatus, Paths, RuntimeRecord,
    StartOptions,
};
use crate::sys::{fd, process};
use crate::wire::{self, Got, LineReader};

/// Why a start that a dead daemon left under way has no outcome: its
/// monitor ended before the exec without an exit record.
pub const CUT_SHORT: &str = "the start was cut short: the daemon that asked for it ended before the container's command ran";
/// How long a start a previous daemon left under way may take to reach
/// the exec, and how often its runtime record is read meanwhile.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(10);
const ADOPT_POLL: Duration = Duration::from_millis(10);
/// How often a state.json that could not be written is tried again.
const SAVE_RETRY: Duration = Duration::from_secs(1);
/// The largest report a monitor sends.
const MAX_REPLY: usize = 64 * 1024;

/// The fds of a run.
struct Handles {
    monitor_pidfd: OwnedFd,
    monitor_token: Token,
    /// Until the monitor reported the exec.
    channel: Option<(UnixStream, Token, LineReader)>,
    init_pidfd: Option<OwnedFd>,
    /// A start a previous daemon left under way (re-attached with no
    /// channel): the exec is read from the runtime record until then.
    adopted_until: Option<Instant>,
}

/// One container.
pub struct Ctr {
    name: String,
    spec: Option<ContainerSpec>,
    /// Why the definition is not valid, if it is not.
    invalid: Option<String>,
    /// Something the user should know (daemon options changed since it
    /// started).
    warning: Option<String>,
    machine: Lifecycle,
    handles: Option<Handles>,
    limiter: RateLimit,
    /// An operator's request (start, stop, restart, kill) is under way:
    /// what is logged about it until the container comes to rest or runs
    /// is never rate-limited away.
    operator: bool,
    /// Where the monitor of a run writes its runtime record (for the
    /// cgroups it made).
    runtime: PathBuf,
    /// state.json could not be written: when to try again.
    save_retry: Option<Instant>,
    /// Where the monitor of a run counts its dropped log bytes.
    log_status: PathBuf,
}

impl Ctr {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn phase(&self) -> &Phase {
        self.machine.phase()
    }

    pub fn spec(&self) -> Option<&ContainerSpec> {
        self.spec.as_ref()
    }

    pub fn persist(&self) -> &ContainerState {
        self.machine.persist()
    }

    /// The stop grace of the definition it runs now.
    pub fn grace(&self) -> Duration {
        self.spec.as_ref().map_or(lifecycle::DEFAULT_GRACE, |s| {
            Duration::from_secs(s.stop_timeout)
        })
    }

    /// Why a start failed, as the machine last recorded it.
    pub fn error(&self) -> Option<&str> {
        self.machine.last().error.as_deref()
    }

    /// What `inspect` shows.
    pub fn info(&self, cfg_log_dir: &Path) -> Info {
        let phase = self.phase();
        let last = self.machine.last();
        let run = phase.run();
        let (status, untrusted_pid, warning) = match phase {
            Phase::Untrusted { why, seen } => {
                let alive = seen
                    .filter(|&(pid, start)| host::same_process(pid, start))
                    .map(|(pid, _)| pid);
                let status = if alive.is_some() { "running" } else { "failed" };
                (status, alive, Some(why.clone()))
            }
            p => (p.status().as_str(), None, self.warning.clone()),
        };
        let running = status == "running";
        let spec = self.spec.as_ref();
        Info {
            name: self.name.clone(),
            status: status.to_string(),
            pid: run
                .filter(|r| r.exec == Exec::Done)
                .map_or(untrusted_pid.unwrap_or(0), |r| r.init_pid),
            exit_code: if running { None } else { last.exit_code },
            restart_count: self.persist().restart_count,
            started_at: last.started_at.map(host::rfc3339),
            finished_at: if running {
                None
            } else {
                last.finished_at.map(host::rfc3339)
            },
            // A run ended by a limit exited, and its cause is the error.
            error: last
                .error
                .clone()
                .or_else(|| last.limits.cause.clone())
                .or_else(|| self.invalid.clone()),
            monitor_pid: run.map_or(0, |r| r.monitor_pid),
            monitor_start: run.map_or(0, |r| r.monitor_start),
            restart: spec.map_or(String::new(), |s| s.restart.to_string()),
            autostart: spec.is_some_and(|s| s.autostart),
            stopped_by_user: self.persist().stopped_by_user,
            rootfs: spec.map_or(String::new(), |s| s.rootfs.display().to_string()),
            image: spec.and_then(|s| s.image.as_ref().map(|p| p.display().to_string())),
            writable: spec
                .and_then(|s| s.writable)
                .map(|w| w.as_str().to_string()),
            command: spec.map_or(Vec::new(), |s| s.command.clone()),
            config_hash: match (run, spec) {
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
            warning,
            oom_killed: last.limits.oom_killed,
            log_dropped_bytes: match run {
                Some(r) if running => self.log_dropped_now(&r.run_id),
                _ => last.limits.log_dropped,
            },
            config: spec.map(|s| crate::api::RawJson(s.canonical.clone())),
            cgroups: match run {
                Some(r) if running => self.cgroups_now(r),
                _ => Vec::new(),
            },
        }
    }

    /// The cgroups the monitor of the running run made, as its runtime
    /// record says.
    fn cgroups_now(&self, run: &RunFacts) -> Vec<String> {
        match state::load::<RuntimeRecord>(&self.runtime) {
            Loaded::Ok(rec) if rec.run_id == run.run_id => rec.options.cgroups,
            _ => run.options.cgroups.clone(),
        }
    }

    /// What the monitor of the running run has counted so far.
    fn log_dropped_now(&self, run_id: &str) -> u64 {
        match state::load::<LogStatus>(&self.log_status) {
            Loaded::Ok(s) if s.run_id == run_id => s.log_dropped,
            _ => 0,
        }
    }
}

/// What effects need from the rest of the daemon.
pub struct Env<'a> {
    pub registry: &'a Registry,
    pub cfg: &'a DaemonConfig,
    pub shutting_down: bool,
}

pub struct Containers {
    map: BTreeMap<String, Ctr>,
    /// Monitor pidfds and channels, by token, naming their container.
    monitors: Slab<String>,
    channels: Slab<String>,
    /// State changes not yet handed to the loop.
    #[allow(dead_code)]
    pub events: events::Queue,
}

impl Containers {
    pub fn new() -> Containers {
        Containers {
            map: BTreeMap::new(),
            monitors: Slab::new(Tag::Monitor),
            channels: Slab::new(Tag::Channel),
            events: events::Queue::default(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Ctr> {
        self.map.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Ctr> {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn active(&self) -> usize {
        self.map.values().filter(|c| c.phase().is_active()).count()
    }

    /// Takes a container in, with what was persisted of it (restore, or a
    /// reload that adds it).
    pub fn add(
        &mut self,
        name: &str,
        spec: Option<ContainerSpec>,
        invalid: Option<String>,
        cfg: &DaemonConfig,
    ) {
        let persist = load_persist(name, cfg);
        let ctr = Ctr {
            name: name.to_string(),
            spec,
            invalid,
            warning: None,
            machine: Lifecycle::new(persist),
            handles: None,
            limiter: RateLimit::new(),
            operator: false,
            runtime: Paths::new(&cfg.run_dir, &cfg.state_dir, name).runtime(),
            save_retry: None,
            log_status: Paths::new(&cfg.run_dir, &cfg.state_dir, name).log_status(),
        };
        self.map.insert(name.to_string(), ctr);
    }

    /// A new definition (reload); the old one stays in force for a stop
    /// already under way only through the grace computed before.
    pub fn redefine(&mut self, name: &str, spec: Option<ContainerSpec>) {
        if let Some(c) = self.map.get_mut(name) {
            c.spec = spec;
            c.invalid = None;
            c.warning = None;
        }
    }

    pub fn set_warning(&mut self, name: &str, msg: String) {
        log::warn!("{name}: {msg}");
        if let Some(c) = self.map.get_mut(name) {
            c.warning = Some(msg);
        }
    }

    /// The nearest deadline of any container.
    pub fn deadline(&self) -> Option<Instant> {
        let adopting = self
            .map
            .values()
            .any(|c| {
                c.handles
                    .as_ref()
                    .is_some_and(|h| h.adopted_until.is_some())
            })
            .then(|| Instant::now() + ADOPT_POLL);
        self.map
            .values()
            .flat_map(|c| [c.phase().deadline(), c.save_retry])
            .flatten()
            .chain(adopting)
            .min()
    }

    /// Starts a previous daemon left under way: the monitor writes the
    /// runtime record once it has exec'd the container, and that record is
    /// all there is to go by (its channel went with that daemon). One
    /// that does not get there in `ADOPT_TIMEOUT` is killed, monitor first.
    fn check_adopted(&mut self, env: &Env, now: Instant) -> Answers {
        let adopting: Vec<(String, Instant)> = self
            .map
            .values()
            .filter_map(|c| Some((c.name.clone(), c.handles.as_ref()?.adopted_until?)))
            .collect();
        let mut answers = Vec::new();
        for (name, until) in adopting {
            let Some(run_id) = self
                .map
                .get(&name)
                .and_then(|c| c.phase().run())
                .map(|r| r.run_id.clone())
            else {
                continue;
            };
            let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, &name);
            let event = match state::load::<RuntimeRecord>(&paths.runtime()) {
                Loaded::Ok(rec) if rec.run_id == run_id && rec.init_pid != 0 => {
                    let init = process::pidfd_open(rec.init_pid)
                        .ok()
                        .filter(|_| host::same_process(rec.init_pid, rec.init_start));
                    let alive = init.is_some();
                    if let Some(h) = self.map.get_mut(&name).and_then(|c| c.handles.as_mut()) {
                        h.init_pidfd = init;
                    }
                    Event::Execed {
                        init_pid: rec.init_pid,
                        init_start: rec.init_start,
                        started_at: rec.started_at,
                        alive,
                    }
                }
                _ if now >= until => Event::Kill {
                    why: "a start the previous daemon left under way did not reach the exec in 10 s",
                },
                _ => continue,
            };
            if let Some(h) = self.map.get_mut(&name).and_then(|c| c.handles.as_mut()) {
                h.adopted_until = None;
            }
            answers.extend(self.feed(env, &name, event));
        }
        answers
    }

    /// Feeds `Tick` to every container with a deadline due.
    pub fn tick(&mut self, env: &Env, now: Instant) -> Answers {
        let due: Vec<String> = self
            .map
            .values()
            .filter(|c| c.phase().deadline().is_some_and(|d| d <= now))
            .map(|c| c.name.clone())
            .collect();
        let mut answers = self.check_adopted(env, now);
        for name in due {
            answers.extend(self.feed(env, &name, Event::Tick));
        }
        let unsaved: Vec<String> = self
            .map
            .values()
            .filter(|c| c.save_retry.is_some_and(|t| t <= now))
            .map(|c| c.name.clone())
            .collect();
        for name in unsaved {
            let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, &name);
            self.save_state(&name, &paths);
        }
        answers
    }

    /// Tells every container a waiting client went away.
    pub fn client_gone(&mut self, env: &Env, client: ClientId) {
        let names: Vec<String> = self
            .map
            .values()
            .filter(|c| c.machine.is_waiting(client))
            .map(|c| c.name.clone())
            .collect();
        for name in names {
            self.feed(env, &name, Event::ClientGone(client));
        }
    }

    /// Runs `event` through the container's lifecycle and executes the
    /// effects, with the events they cause; returns the answers for
    /// clients.
    pub fn feed(&mut self, env: &Env, name: &str, event: Event) -> Answers {
        if is_operators(&event) {
            self.mark_operator(name);
        }
        let mut answers = Vec::new();
        let mut queue = vec![event];
        while let Some(event) = queue.pop() {
            let Some(c) = self.map.get_mut(name) else {
                break;
            };
            let def = match (&c.spec, &c.invalid) {
                (Some(s), _) => Ok(def_of(s)),
                (None, Some(why)) => Err(Some(why.as_str())),
                (None, None) => Err(None),
            };
            let ctx = Ctx {
                name,
                now: Instant::now(),
                now_ns: host::now_ns(),
                def,
                live_restore: env.cfg.live_restore,
                shutting_down: env.shutting_down,
            };
            let machine = std::mem::take(&mut c.machine);
            let from = machine.phase().kind();
            let what = event.kind();
            let (machine, effects) = lifecycle::on(machine, event, &ctx);
            log::trace!(
                "{name}: {} --{what}--> {}",
                from.as_str(),
                machine.phase().kind().as_str()
            );
            c.machine = machine;
            for effect in effects {
                queue.extend(self.execute(env, name, effect, &mut answers));
            }
        }
        if let Some(c) = self.map.get_mut(name) {
            // The request has had its outcome once the container rests or
            // runs.
            if !matches!(c.phase().kind(), PhaseKind::Starting | PhaseKind::Stopping) {
                c.operator = false;
            }
        }
        answers
    }

    /// Carries out one effect; returns the event it causes, if any (a
    /// spawn's outcome).
    fn execute(
        &mut self,
        env: &Env,
        name: &str,
        effect: Effect,
        answers: &mut Answers,
    ) -> Option<Event> {
        let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, name);
        match effect {
            Effect::Spawn => return Some(self.spawn(env, name)),
            Effect::Answer(client, a) => answers.push((client, a)),
            Effect::Signal(sig) => {
                let _ = self.signal(name, sig);
            }
            Effect::KillMonitor => {
                if let Some(h) = self.map.get(name).and_then(|c| c.handles.as_ref()) {
                    let _ = process::pidfd_send_signal(&h.monitor_pidfd, libc::SIGKILL);
                }
            }
            Effect::Persist => self.save_state(name, &paths),
            Effect::Log(level, msg) => self.note(name, level, &msg),
            Effect::Archive => {
                // This end is handled: keep the record as history only.
                if paths.runtime().exists() {
                    if let Err(e) = fs::rename(paths.runtime(), paths.last_run()) {
                        let msg = format!(
                            "rename {}: {err}",
                            paths.runtime().display(),
                            err = errors::io_text(&e)
                        );
                        self.note(name, log::Level::Error, &msg);
                    }
                }
            }
            Effect::DropRecords => {
                let _ = fs::remove_file(paths.runtime());
                let _ = fs::remove_file(paths.last_run());
            }
            Effect::DropLastRun => {
                let _ = fs::remove_file(paths.last_run());
            }
            Effect::Forget => {
                let _ = fs::remove_dir_all(&paths.run);
                let _ = fs::remove_dir_all(&paths.state);
                self.release(env.registry, name);
                self.map.remove(name);
                info!("{name}: removed");
            }
        }
        None
    }

    /// Writes state.json; a write that fails is tried again every
    /// `SAVE_RETRY` until it works (a full disk), never forgotten.
    fn save_state(&mut self, name: &str, paths: &Paths) {
        let Some(c) = self.map.get_mut(name) else {
            return;
        };
        let result =
            state::ensure_dir(&paths.state).and_then(|_| state::save(&paths.state(), c.persist()));
        let failed_before = c.save_retry.is_some();
        match result {
            Ok(()) => {
                c.save_retry = None;
                if failed_before {
                    info!("{name}: {} written after all", paths.state().display());
                }
            }
            Err(e) => {
                c.save_retry = Some(Instant::now() + SAVE_RETRY);
                if !failed_before {
                    let msg = format!(
                        "write {}: {err}; trying again every {} s",
                        paths.state().display(),
                        SAVE_RETRY.as_secs(),
                        err = errors::io_text(&e)
                    );
                    self.note(name, log::Level::Error, &msg);
                }
            }
        }
    }

    /// An operator asked something of `name` (a signal, an exec): what
    /// is logged about it until it rests or runs is not rate-limited.
    pub fn mark_operator(&mut self, name: &str) {
        if let Some(c) = self.map.get_mut(name) {
            c.operator = true;
        }
    }

    /// Logs a message about one container, rate-limited per container
    /// unless an operator's request is under way.
    fn note(&mut self, name: &str, level: log::Level, msg: &str) {
        if level > log::max_level() {
            return; // filtered out anyway: spend none of the budget on it
        }
        let verdict = match self.map.get_mut(name) {
            Some(c) if c.operator => Verdict::Log,
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

    /// Sends `sig` to the container's init through its pidfd.
    pub fn signal(&self, name: &str, sig: i32) -> Result<(), String> {
        let c = self
            .map
            .get(name)
            .ok_or_else(|| format!("no such container: {name}"))?;
        let fd = c
            .handles
            .as_ref()
            .and_then(|h| h.init_pidfd.as_ref())
            .filter(|_| c.phase().run().is_some_and(|r| r.exec == Exec::Done))
            .ok_or_else(|| format!("{name} is not running"))?;
        process::pidfd_send_signal(fd, sig).map_err(|e| {
            format!(
                "signal {} to {name}: {err}",
                crate::signals::signal_name(sig),
                err = errors::io_text(&e)
            )
        })
    }

    /// Starts the container's monitor and sends it the job; the exec is
    /// reported on the channel (`channel_readable`).
    fn spawn(&mut self, env: &Env, name: &str) -> Event {
        match self.try_spawn(env, name) {
            Ok(run) => Event::Spawned(run),
            Err(e) => Event::SpawnFailed(e.to_string()),
        }
    }

    fn try_spawn(&mut self, env: &Env, name: &str) -> Result<RunFacts, StartError> {
        let cfg = env.cfg;
        if let Some(c) = self.map.get(name).filter(|c| c.handles.is_some()) {
            // Never a second run of a name, whatever asked for it.
            let pid = c.phase().run().map_or(0, |r| r.monitor_pid);
            return Err(StartError::Busy(pid));
        }
        let spec = self
            .map
            .get(name)
            .and_then(|c| c.spec.clone())
            .ok_or_else(|| StartError::NoDefinition(name.to_string()))?;
        config::check_container_host(&spec, &cfg.containers_dir.join(format!("{name}.json")))
            .map_err(StartError::Definition)?;
        let run_id = format!(
            "{:016x}",
            process::random_u64().map_err(StartError::Random)?
        );
        let job = Job {
            version: FORMAT_VERSION,
            name: name.to_string(),
            run_id: run_id.clone(),
            spec: spec.canonical.clone(),
            run_dir: cfg.run_dir.display().to_string(),
            state_dir: cfg.state_dir.display().to_string(),
            log_dir: cfg.log_dir.display().to_string(),
            log_max_size: cfg.log_max_size,
            log_max_files: cfg.log_max_files,
            cgroup_parent: cfg.cgroup_parent.clone(),
        };
        let options = StartOptions {
            log_dir: job.log_dir.clone(),
            log_max_size: job.log_max_size,
            log_max_files: job.log_max_files,
            cgroup_parent: job.cgroup_parent.clone(),
            cgroups: Vec::new(),
        };
        let paths = Paths::new(&cfg.run_dir, &cfg.state_dir, name);
        fs::create_dir_all(&paths.run).map_err(|e| StartError::CreateDir(paths.run.clone(), e))?;
        let (ours, theirs) = fd::socketpair().map_err(StartError::Socketpair)?;
        let (pid, pidfd) = monitor::spawn(name, &theirs).map_err(StartError::SpawnMonitor)?;
        drop(theirs);
        // Without its start time no later daemon could tell the monitor
        // from a reused pid, and would take the run for gone.
        let Some(monitor_start) = host::start_time(pid) else {
            let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
            return Err(StartError::MonitorStart(pid));
        };
        let run = RunFacts {
            run_id,
            monitor_pid: pid,
            monitor_start,
            init_pid: 0,
            init_start: 0,
            started_at: host::now_ns(),
            hash: spec.hash,
            options,
            exec: Exec::Pending,
        };
        // The monitor starts nothing before it has the job, and it exits
        // when the channel closes first: the record naming it is written
        // before the job goes out, so a daemon that dies at any instant
        // leaves either no run or a run the next daemon finds.
        if let Err(e) = record_intent(&paths, name, &run) {
            let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
            return Err(StartError::Record(paths.runtime(), e));
        }
        let mut stream = std::os::unix::net::UnixStream::from(ours);
        // The job fits in the socket buffer; the monitor reads it at once.
        if let Err(e) = wire::send(&mut stream, &job) {
            let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
            return Err(StartError::SendJob(e));
        }
        let _ = stream.set_nonblocking(true);
        let mut stream = UnixStream::from_std(stream);
        let tokens = self
            .monitors
            .insert(name.to_string())
            .zip(self.channels.insert(name.to_string()));
        let Some((monitor_token, channel_token)) = tokens else {
            let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
            return Err(StartError::TooManySources);
        };
        let r1 = env.registry.register(
            &mut SourceFd(&pidfd.as_raw_fd()),
            monitor_token,
            Interest::READABLE,
        );
        let r2 = env
            .registry
            .register(&mut stream, channel_token, Interest::READABLE);
        if let Err(e) = r1.and(r2) {
            self.note(
                name,
                log::Level::Error,
                &format!("register monitor fds: {err}", err = errors::io_text(&e)),
            );
        }
        let c = self.map.get_mut(name).expect("checked above");
        c.handles = Some(Handles {
            monitor_pidfd: pidfd,
            monitor_token,
            channel: Some((stream, channel_token, LineReader::new(MAX_REPLY))),
            init_pidfd: None,
            adopted_until: None,
        });
        Ok(run)
    }

    /// Re-attaches to a live monitor found at start-up.
    pub fn attach(
        &mut self,
        env: &Env,
        name: &str,
        rec: &RuntimeRecord,
        monitor_pidfd: OwnedFd,
    ) -> Answers {
        let init_pidfd = process::pidfd_open(rec.init_pid)
            .ok()
            .filter(|_| host::same_process(rec.init_pid, rec.init_start));
        let Some(monitor_token) = self.monitors.insert(name.to_string()) else {
            log::error!("{name}: too many containers for the event loop");
            return Vec::new();
        };
        if let Err(e) = env.registry.register(
            &mut SourceFd(&monitor_pidfd.as_raw_fd()),
            monitor_token,
            Interest::READABLE,
        ) {
            log::error!(
                "{name}: register monitor pidfd: {err}",
                err = errors::io_text(&e)
            );
        }
        if let Some(c) = self.map.get_mut(name) {
            c.handles = Some(Handles {
                monitor_pidfd,
                monitor_token,
                channel: None,
                init_pidfd,
                adopted_until: (rec.init_pid == 0).then(|| Instant::now() + ADOPT_TIMEOUT),
            });
        }
        let run = run_of(rec);
        self.feed(env, name, Event::Attached(run))
    }

    /// Deregisters and closes the fds of the container's run.
    fn release(&mut self, registry: &Registry, name: &str) -> Option<Handles> {
        let mut h = self.map.get_mut(name)?.handles.take()?;
        let _ = registry.deregister(&mut SourceFd(&h.monitor_pidfd.as_raw_fd()));
        self.monitors.remove(h.monitor_token);
        if let Some((mut stream, token, _)) = h.channel.take() {
            let _ = registry.deregister(&mut stream);
            self.channels.remove(token);
        }
        Some(h)
    }

    /// A monitor's pidfd or channel is readable.
    pub fn event(&mut self, env: &Env, token: Token) -> Answers {
        if let Some(name) = self.monitors.get(token).cloned() {
            return self.monitor_exited(env, &name, token);
        }
        if let Some(name) = self.channels.get(token).cloned() {
            return self.channel_readable(env, &name, token);
        }
        Vec::new() // stale: the fd behind it is gone
    }

    /// The monitor's report: exec'd (with the init's pid) or the error.
    fn channel_readable(&mut self, env: &Env, name: &str, token: Token) -> Answers {
        let Some(h) = self.map.get_mut(name).and_then(|c| c.handles.as_mut()) else {
            return Vec::new();
        };
        let Some((stream, chan_token, reader)) = h.channel.as_mut() else {
            return Vec::new();
        };
        if *chan_token != token {
            return Vec::new();
        }
        let line = match reader.read_from(stream) {
            Ok(Got::Partial) => return Vec::new(), // more to come
            Ok(Got::Line(line)) => Some(line),
            Ok(Got::Eof | Got::TooLong) | Err(_) => None,
        };
        let (mut stream, tok, _) = h.channel.take().expect("present above");
        let _ = env.registry.deregister(&mut stream);
        self.channels.remove(tok);
        match line.and_then(|l| wire::decode::<Reply>(&l).ok()) {
            Some(r) if r.ok => {
                if let Some(warning) = &r.warning {
                    self.note(name, log::Level::Warn, warning);
                }
                // A pidfd for the init, checked against its start time so
                // that a pid reused in between is never signalled.
                let init = process::pidfd_open(r.pid)
                    .ok()
                    .filter(|_| host::same_process(r.pid, r.init_start));
                let alive = init.is_some();
                if let Some(h) = self.map.get_mut(name).and_then(|c| c.handles.as_mut()) {
                    h.init_pidfd = init;
                }
                let event = Event::Execed {
                    init_pid: r.pid,
                    init_start: r.init_start,
                    started_at: r.started_at,
                    alive,
                };
                self.feed(env, name, event)
            }
            Some(r) => {
                let why = r.error.unwrap_or_else(|| "monitor failed".to_string());
                self.feed(env, name, Event::ExecFailed(why))
            }
            // No report: the monitor died; its exit is handled when its
            // pidfd fires.
            None => Vec::new(),
        }
    }

    /// The monitor's pidfd fired: the run is over.
    fn monitor_exited(&mut self, env: &Env, name: &str, token: Token) -> Answers {
        let Some(c) = self.map.get(name) else {
            return Vec::new();
        };
        let Some(h) = c.handles.as_ref().filter(|h| h.monitor_token == token) else {
            return Vec::new();
        };
        // It is our child unless a previous daemon started it: reap if so.
        let _ = process::waitid_pidfd(&h.monitor_pidfd, false);
        let Some(run) = c.phase().run().cloned() else {
            self.release(env.registry, name);
            return Vec::new();
        };
        let handles = self.release(env.registry, name).expect("present above");
        let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, name);
        let adopted_start = handles.channel.is_none() && run.exec == Exec::Pending;
        let outcome = read_ending(&paths, &run, None).map_err(|e| match e {
            ExitUnknown::NoRecord { .. } if adopted_start => CUT_SHORT.to_string(),
            e => e.to_string(),
        });
        if outcome.is_err() {
            // The monitor wrote down the cgroups it made.
            let cgroups = match state::load::<RuntimeRecord>(&paths.runtime()) {
                Loaded::Ok(rec) => rec.options.cgroups,
                _ => run.options.cgroups.clone(),
            };
            bury(&run, handles.init_pidfd.as_ref(), &cgroups);
        }
        self.feed(
            env,
            name,
            Event::Ended {
                outcome,
                found: None,
            },
        )
    }

    /// What `inspect` shows of `name`.
    pub fn info(&self, name: &str, cfg_log_dir: &Path) -> Option<Info> {
        self.map.get(name).map(|c| c.info(cfg_log_dir))
    }
}

/// Whether an event is an operator's request.
fn is_operators(event: &Event) -> bool {
    matches!(
        event,
        Event::Start {
            cause: lifecycle::Cause::User,
            ..
        } | Event::Stop {
            reason: lifecycle::StopReason::User,
            ..
        } | Event::Restart { .. }
    )
}

/// Why no monitor could be started.
#[derive(Debug)]
pub enum StartError {
    NoDefinition(String),
    /// The definition does not fit the host (its rootfs is gone, say).
    Definition(config::ConfigError),
    Random(io::Error),
    CreateDir(PathBuf, io::Error),
    Socketpair(io::Error),
    SpawnMonitor(io::Error),
    SendJob(io::Error),
    /// The runtime record naming the new monitor could not be written.
    Record(PathBuf, io::Error),
    /// A monitor of the container still runs (its pid, 0 if unknown).
    Busy(i32),
    /// The new monitor's start time could not be read (its pid).
    MonitorStart(i32),
    TooManySources,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoDefinition(name) => write!(f, "{name}: no definition"),
            StartError::Definition(e) => write!(f, "{e}"),
            StartError::Random(e) => {
                write!(f, "getrandom: {err}", err = errors::io_text(e))
            }
            StartError::CreateDir(path, e) => write!(
                f,
                "create {}: {err}",
                path.display(),
                err = errors::io_text(e)
            ),
            StartError::Socketpair(e) => {
                write!(f, "create socketpair: {err}", err = errors::io_text(e))
            }
            StartError::SpawnMonitor(e) => {
                write!(f, "spawn monitor: {err}", err = errors::io_text(e))
            }
            StartError::SendJob(e) => {
                write!(f, "send job to monitor: {err}", err = errors::io_text(e))
            }
            StartError::Record(path, e) => write!(
                f,
                "write {}: {err}",
                path.display(),
                err = errors::io_text(e)
            ),
            StartError::Busy(pid) => write!(f, "its monitor (pid {pid}) still runs"),
            StartError::MonitorStart(pid) => {
                write!(
                    f,
                    "read the start time of monitor {pid} from /proc/{pid}/stat"
                )
            }
            StartError::TooManySources => f.write_str("too many containers for the event loop"),
        }
    }
}

/// Why the end of a run is not known.
#[derive(Debug, PartialEq)]
pub enum ExitUnknown {
    /// The monitor ended (seen live) or is gone (found at start-up)
    /// without writing an exit record for the run.
    NoRecord {
        monitor_pid: i32,
        found: bool,
    },
    Newer(u32),
    Corrupt(PathBuf, String),
}

impl fmt::Display for ExitUnknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitUnknown::NoRecord {
                monitor_pid,
                found: false,
            } => write!(
                f,
                "monitor (pid {monitor_pid}) ended without an exit record; exit code lost"
            ),
            ExitUnknown::NoRecord {
                monitor_pid,
                found: true,
            } => write!(
                f,
                "monitor (pid {monitor_pid}) is gone and left no exit record: the container was killed with it"
            ),
            ExitUnknown::Newer(v) => {
                write!(f, "exit record is in format {v}, newer than this berth")
            }
            ExitUnknown::Corrupt(path, why) => write!(f, "exit record {}: {why}", path.display()),
        }
    }
}

/// How `run` ended, from the exit record. `found`: the run was found at
/// start-up (`Some(seen)`: a previous daemon handled its end, and then a
/// start that failed before exec may have written the newer record).
pub fn read_ending(
    paths: &Paths,
    run: &RunFacts,
    found: Option<bool>,
) -> Result<Ending, ExitUnknown> {
    match state::load::<ExitRecord>(&paths.exit()) {
        // A reservation never written over is no record.
        Loaded::Ok(rec) if rec.reserved => Err(ExitUnknown::NoRecord {
            monitor_pid: run.monitor_pid,
            found: found.is_some(),
        }),
        Loaded::Ok(rec) if rec.run_id == run.run_id => Ok(ending_of(&rec)),
        Loaded::Ok(rec) if found == Some(true) && rec.started_at >= run.started_at => {
            Ok(ending_of(&rec))
        }
        Loaded::Ok(_) | Loaded::Missing => Err(ExitUnknown::NoRecord {
            monitor_pid: run.monitor_pid,
            found: found.is_some(),
        }),
        Loaded::Newer(v) => Err(ExitUnknown::Newer(v)),
        Loaded::Corrupt(why) => Err(ExitUnknown::Corrupt(paths.exit(), why)),
    }
}

/// The run a runtime record describes (its monitor wrote it at the exec).
pub fn run_of(rec: &RuntimeRecord) -> RunFacts {
    RunFacts {
        run_id: rec.run_id.clone(),
        monitor_pid: rec.monitor_pid,
        monitor_start: rec.monitor_start,
        init_pid: rec.init_pid,
        init_start: rec.init_start,
        started_at: rec.started_at,
        hash: u64::from_str_radix(&rec.config_hash, 16).unwrap_or(0),
        options: rec.options.clone(),
        // The daemon's own record of a monitor that has not exec'd yet.
        exec: if rec.init_pid == 0 {
            Exec::Pending
        } else {
            Exec::Done
        },
    }
}

/// What the lifecycle needs of a definition.
fn def_of(spec: &ContainerSpec) -> Def {
    Def {
        restart: spec.restart,
        autostart: spec.autostart,
        stop_signal: spec.stop_signal,
        grace: Duration::from_secs(spec.stop_timeout),
        hash: spec.hash,
    }
}

fn ending_of(rec: &ExitRecord) -> Ending {
    Ending {
        code: rec.exit_code,
        error: rec.error.clone(),
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        limits: LimitsHit {
            oom_killed: rec.oom_killed,
            cause: rec.cause.clone(),
            log_dropped: rec.log_dropped,
        },
    }
}

/// A run whose monitor is gone without an exit record: its container must
/// not outlive it, and its cgroups go.
pub fn bury(run: &RunFacts, init_pidfd: Option<&OwnedFd>, cgroups: &[String]) {
    if let Some(fd) = init_pidfd {
        if host::same_process(run.init_pid, run.init_start) {
            let _ = process::pidfd_send_signal(fd, libc::SIGKILL);
        }
    }
    let hierarchies = cgroup::discover_live().unwrap_or_default();
    let dirs: Vec<PathBuf> = cgroups
        .iter()
        .map(PathBuf::from)
        .filter(|d| cgroup::is_below_a_hierarchy(d, &hierarchies))
        .collect();
    // One try, no waiting in the event loop: a directory still busy is
    // reused by the next start.
    let _ = cgroup::remove(&dirs, Duration::ZERO);
}

/// Writes the runtime record of a run whose monitor was just started and
/// has not exec'd the container (`init-pid` 0).
fn record_intent(paths: &Paths, name: &str, run: &RunFacts) -> io::Result<()> {
    let record = RuntimeRecord {
        version: FORMAT_VERSION,
        name: name.to_string(),
        run_id: run.run_id.clone(),
        boot_id: host::boot_id()?,
        monitor_pid: run.monitor_pid,
        monitor_start: run.monitor_start,
        init_pid: 0,
        init_start: 0,
        started_at: run.started_at,
        config_hash: format!("{:016x}", run.hash),
        options: run.options.clone(),
        berth: env!("CARGO_PKG_VERSION").to_string(),
    };
    state::save_unsynced(&paths.runtime(), &record)
}

/// Reads state.json (restart count, user stop); an unreadable or newer one
/// is named and replaced by defaults.
fn load_persist(name: &str, cfg: &DaemonConfig) -> ContainerState {
    let path = Paths::new(&cfg.run_dir, &cfg.state_dir, name).state();
    match state::load::<ContainerState>(&path) {
        Loaded::Ok(p) => p,
        Loaded::Missing => ContainerState::default(),
        Loaded::Newer(v) => {
            log::warn!(
                "{name}: {} is in format {v}, newer than this berth ({FORMAT_VERSION}); using defaults",
                path.display()
            );
            ContainerState::default()
        }
        Loaded::Corrupt(why) => {
            log::warn!("{name}: {}: {why}; using defaults", path.display());
            ContainerState::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn temp_paths(tag: &str) -> (TempDir, Paths) {
        let root = TempDir::new(tag);
        let paths = Paths::new(&root.path().join("run"), &root.path().join("state"), "app");
        fs::create_dir_all(&paths.state).unwrap();
        (root, paths)
    }

    fn record(run_id: &str, code: Option<i32>, started_at: u64) -> ExitRecord {
        ExitRecord {
            version: FORMAT_VERSION,
            run_id: run_id.into(),
            exit_code: code,
            started_at,
            finished_at: started_at + 1,
            ..ExitRecord::default()
        }
    }

    #[test]
    fn the_exit_record_of_the_run_says_how_it_ended() {
        let (root, paths) = temp_paths("ending");
        let run = run_of(&RuntimeRecord {
            run_id: "r1".into(),
            monitor_pid: 77,
            started_at: 100,
            config_hash: "00000000000000ff".into(),
            ..RuntimeRecord::default()
        });
        assert_eq!(run.hash, 255);
        assert_eq!(
            read_ending(&paths, &run, None),
            Err(ExitUnknown::NoRecord {
                monitor_pid: 77,
                found: false
            })
        );
        state::save(&paths.exit(), &record("r1", Some(42), 100)).unwrap();
        assert_eq!(read_ending(&paths, &run, None).unwrap().code, Some(42));
        // Another run's record is not this run's end...
        state::save(&paths.exit(), &record("r2", Some(1), 200)).unwrap();
        let lost = read_ending(&paths, &run, Some(false)).unwrap_err();
        assert!(lost.to_string().contains("killed with it"), "{lost}");
        // ...unless this run's end was handled and a later start failed.
        assert_eq!(read_ending(&paths, &run, Some(true)).unwrap().code, Some(1));
        // A placeholder of a reservation, padded, is no record.
        let placeholder = ExitRecord {
            reserved: true,
            ..record("r1", None, 100)
        };
        let text = format!(
            "{}{}\n",
            nanoserde::SerJson::serialize_json(&placeholder),
            " ".repeat(300)
        );
        fs::write(paths.exit(), text).unwrap();
        assert_eq!(
            read_ending(&paths, &run, None),
            Err(ExitUnknown::NoRecord {
                monitor_pid: 77,
                found: false
            })
        );
        // The limits' verdict comes with the code.
        let hit = ExitRecord {
            oom_killed: true,
            cause: Some("out of memory (memory limit 8 MiB)".into()),
            log_dropped: 12,
            ..record("r1", Some(137), 100)
        };
        state::save(&paths.exit(), &hit).unwrap();
        let ending = read_ending(&paths, &run, None).unwrap();
        assert_eq!(ending.code, Some(137));
        assert_eq!(
            ending.limits,
            LimitsHit {
                oom_killed: true,
                cause: hit.cause.clone(),
                log_dropped: 12
            }
        );
        fs::write(paths.exit(), "{\"version\":99}").unwrap();
        assert_eq!(read_ending(&paths, &run, None), Err(ExitUnknown::Newer(99)));
        fs::write(paths.exit(), "{\"version\":2,\"run-id\"").unwrap();
        assert!(matches!(
            read_ending(&paths, &run, None),
            Err(ExitUnknown::Corrupt(..))
        ));
        drop(root);
    }
}
