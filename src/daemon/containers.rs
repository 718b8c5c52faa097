//! The containers component: every container the daemon knows, the fds of
//! their runs (the monitor's pidfd, the channel on which it reports the
//! exec, the init's pidfd) and their tokens, and the executor of the
//! lifecycle's effects. What happens to a container goes in as a
//! [`lifecycle::Event`] through [`Containers::feed`]; the decisions are
//! made by [`lifecycle::on`], the system calls here.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::info;
use mio::net::UnixStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::events::{self, Kind};
use super::lifecycle::{
    self, Answers, ClientId, Ctx, Def, Effect, Ending, Event, Exec, Gate, Kind as PhaseKind,
    Lifecycle, LimitsHit, Phase, RunFacts, Status, Then,
};
use super::order::{self, Dep, DepState};
use super::ratelimit::{RateLimit, Verdict};
use super::tokens::{self, Slab, Tag};
use super::watch::{Changed, Watch};
use super::window::{self, Told};
use crate::api::{self, ExecInfo, ExecTarget, Info};
use crate::config::{self, ContainerSpec, DaemonConfig, Network};
use crate::container::monitor::{self, Job, Reply};
use crate::container::{cgroup, devices, exec};
use crate::errors;
use crate::host;
use crate::net::{Net, Prepared};
use crate::state::{
    self, ContainerState, ExitRecord, FORMAT_VERSION, HealthRecord, Loaded, LogStatus, Paths,
    RuntimeRecord, StartOptions,
};
use crate::sys::{fd, process, socket};
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
/// After this many spares in a row found ended, none is started again.
const SPARES_LOST_MAX: u32 = 3;
/// How long after a start or an end a spare monitor is started.
const SPARE_DELAY: Duration = Duration::from_millis(10);
/// How long an exiting daemon waits for monitors that reported their
/// run's end to be gone (they only sync a directory).
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest report a monitor sends.
const MAX_REPLY: usize = 64 * 1024;

/// The fds of a run.
struct Handles {
    monitor_pidfd: OwnedFd,
    monitor_token: Token,
    /// Until the monitor reported the exec's failure, or the end of a run
    /// it started (see `monitor::END_REPORT`).
    channel: Option<(UnixStream, Token, LineReader)>,
    /// The monitor reported the exec on its channel.
    execed: bool,
    init_pidfd: Option<OwnedFd>,
    /// A start a previous daemon left under way (re-attached with no
    /// channel): the exec is read from the runtime record until then.
    adopted_until: Option<Instant>,
}

/// A monitor just started, waiting for its job: one started for a start
/// (with its container's name), or a spare started ahead of any start,
/// which the next start hands its job to (the exec of the binary and its
/// start-up are then off the start's path).
struct NewMonitor {
    pid: i32,
    /// Its start time (see `host::same_process`).
    start: u64,
    pidfd: OwnedFd,
    /// The daemon's end of its channel.
    channel: OwnedFd,
}

impl NewMonitor {
    /// `berth monitor NAME` (or, without a name, a spare) on a new
    /// channel.
    fn spawn(name: Option<&str>) -> Result<NewMonitor, StartError> {
        let (ours, theirs) = fd::socketpair().map_err(StartError::Socketpair)?;
        let (pid, pidfd) = monitor::spawn(name, &theirs).map_err(StartError::SpawnMonitor)?;
        drop(theirs);
        // Without its start time no later daemon could tell the monitor
        // from a reused pid, and would take the run for gone.
        let Some(start) = host::start_time(pid) else {
            let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
            return Err(StartError::MonitorStart(pid));
        };
        Ok(NewMonitor {
            pid,
            start,
            pidfd,
            channel: ours,
        })
    }
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
    /// Where the monitor of a run writes its health.
    health: PathBuf,
    /// The health status last heard of (run id, status), so that each
    /// change is told once.
    health_seen: Option<(String, String)>,
    /// The cgroups of the last runtime record read that names an init
    /// (at the re-attach, when its monitor renames a new one into place,
    /// or at a `ps` that found none kept for the running init).
    recorded_cgroups: std::cell::RefCell<Option<RecordedCgroups>>,
    /// What `inspect` shows as `config` (see `config::effective`), made at
    /// the first request that shows it after the definition was set.
    effective: std::cell::OnceCell<String>,
}

/// The cgroups a runtime record names, and the init it was written for:
/// a monitor writes one record per init it starts, so they stay true for
/// as long as the run's init is that one.
struct RecordedCgroups {
    run_id: String,
    init_pid: i32,
    init_start: u64,
    cgroups: Vec<String>,
}

impl RecordedCgroups {
    /// Those of `rec`, if it names an init.
    fn of(rec: &RuntimeRecord) -> Option<RecordedCgroups> {
        (rec.init_pid != 0).then(|| RecordedCgroups {
            run_id: rec.run_id.clone(),
            init_pid: rec.init_pid,
            init_start: rec.init_start,
            cgroups: rec.options.cgroups.clone(),
        })
    }

    /// Whether they are those of `run`'s init now.
    fn of_init(&self, run: &RunFacts) -> bool {
        self.run_id == run.run_id
            && (self.init_pid, self.init_start) == (run.init_pid, run.init_start)
    }
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

    /// What `inspect` shows. `mounts`: the daemon's mount table, read
    /// once for all the containers of a request.
    pub fn info(&self, cfg_log_dir: &Path, mounts: &Mounts) -> Info {
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
            Phase::Waiting { why, .. } => (phase.status().as_str(), None, Some(why.clone())),
            p => (p.status().as_str(), None, self.warning.clone()),
        };
        let running = status == "running";
        let spec = self.spec.as_ref();
        let cgroups = match run {
            Some(r) if running => self.cgroups_now(r),
            _ => Vec::new(),
        };
        Info {
            name: self.name.clone(),
            status: status.to_string(),
            pid: run
                .filter(|r| r.exec == Exec::Done)
                .map_or(untrusted_pid.unwrap_or(0), |r| r.init_pid),
            exit_code: if running { None } else { last.exit_code },
            // The restarts its monitor made in this run count too (added
            // to the persisted count when the run ends).
            restart_count: self
                .persist()
                .restart_count
                .saturating_add(run.map_or(0, |r| r.health_restarts)),
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
            definition_hash: spec.map(|s| format!("{:016x}", s.hash)),
            phase: phase.kind().as_str().to_string(),
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
            // The record is read only for a definition with a check.
            health: spec.filter(|s| s.healthcheck.is_some()).and_then(|_| {
                match (self.health_record(running.then_some(run).flatten()), run) {
                    (Some(r), _) => Some(api::Health {
                        status: r.status.clone(),
                        failing_streak: r.failing_streak,
                        log: r.log.clone(),
                    }),
                    // Running, not checked yet.
                    (None, Some(_)) if running => Some(api::Health {
                        status: crate::container::health::STARTING.to_string(),
                        ..api::Health::default()
                    }),
                    (None, _) => None,
                }
            }),
            execs: match run {
                Some(r) if running && r.exec == Exec::Done => {
                    execs_of(r, mounts, &cgroups, || self.init_runs(r))
                }
                _ => Vec::new(),
            },
            config: spec.map(|s| {
                let text = self.effective.get_or_init(|| config::effective(s));
                crate::api::RawJson(text.clone())
            }),
            cgroups,
            // Filled by `Containers::info`, which has the networks.
            networks: BTreeMap::new(),
            ports: Vec::new(),
        }
    }

    /// The cgroups the monitor of the running run made, as its runtime
    /// record says.
    fn cgroups_now(&self, run: &RunFacts) -> Vec<String> {
        let mut kept = self.recorded_cgroups.borrow_mut();
        if let Some(k) = kept.as_ref().filter(|k| k.of_init(run)) {
            return k.cgroups.clone();
        }
        match state::load::<RuntimeRecord>(&self.runtime) {
            Loaded::Ok(rec) if rec.run_id == run.run_id => {
                if let Some(k) = RecordedCgroups::of(&rec).filter(|k| k.of_init(run)) {
                    *kept = Some(k);
                }
                rec.options.cgroups
            }
            _ => run.options.cgroups.clone(),
        }
    }

    /// Whether the init of `run` still runs: its pidfd tells without a
    /// read of /proc (it turns readable when the init ends); without one,
    /// its /proc/PID/stat.
    fn init_runs(&self, run: &RunFacts) -> bool {
        match self.handles.as_ref().and_then(|h| h.init_pidfd.as_ref()) {
            Some(pidfd) => !fd::readable_now(pidfd).unwrap_or(true),
            None => host::same_process(run.init_pid, run.init_start),
        }
    }

    /// Keeps the cgroups of a runtime record just read.
    fn recorded(&self, rec: &RuntimeRecord) {
        if let Some(k) = RecordedCgroups::of(rec) {
            *self.recorded_cgroups.borrow_mut() = Some(k);
        }
    }

    /// The health record of `run` when one runs, else the last one on
    /// file.
    fn health_record(&self, run: Option<&RunFacts>) -> Option<HealthRecord> {
        match state::load::<HealthRecord>(&self.health) {
            Loaded::Ok(r) if run.is_none_or(|run| run.run_id == r.run_id) => Some(r),
            _ => None,
        }
    }

    /// Where the running container is, for `berth exec`: its init, the
    /// cgroups the init is in, and the definition it runs.
    pub fn exec_target(&self) -> Result<ExecTarget, String> {
        let run = match self.phase() {
            Phase::Running { run } if run.exec == Exec::Done => run,
            _ => return Err(format!("container {} is not running", self.name)),
        };
        let Some(spec) = &self.spec else {
            return Err(format!("container {} has no definition", self.name));
        };
        let cgroups = exec::init_cgroups(run.init_pid);
        // Read from /proc/PID: the init's only if it still runs after.
        if !host::same_process(run.init_pid, run.init_start) {
            return Err(format!("container {} is not running", self.name));
        }
        let cgroups = cgroups.map_err(|e| {
            format!(
                "container {}: read /proc/{}/cgroup: {}",
                self.name,
                run.init_pid,
                errors::io_text(&e)
            )
        })?;
        Ok(ExecTarget {
            name: self.name.clone(),
            init_pid: run.init_pid,
            init_start: run.init_start,
            cgroups: cgroups.iter().map(|d| d.display().to_string()).collect(),
            spec: spec.canonical.clone(),
        })
    }

    /// What the monitor of the running run has counted so far.
    fn log_dropped_now(&self, run_id: &str) -> u64 {
        match state::load::<LogStatus>(&self.log_status) {
            Loaded::Ok(s) if s.run_id == run_id => s.log_dropped,
            _ => 0,
        }
    }
}

/// The daemon's cgroup mounts, read from its mount table when a request's
/// first running container needs them (to find its init's cgroups), then
/// kept for the rest of that request; so is the boot time (for exec'd
/// processes).
#[derive(Default)]
pub struct Mounts {
    /// `None`: the mount table could not be read.
    cgroup_mounts: std::cell::OnceCell<Option<Vec<cgroup::Mounted>>>,
    /// The daemon's own cgroup directories.
    mine: std::cell::OnceCell<Vec<PathBuf>>,
    /// The boot time, read at the first exec'd process found.
    boot: exec::BootTime,
}

impl Mounts {
    fn cgroup_mounts(&self) -> Option<&[cgroup::Mounted]> {
        self.cgroup_mounts
            .get_or_init(|| {
                let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
                Some(cgroup::mounted(&mountinfo))
            })
            .as_deref()
    }

    /// The cgroup directories of process `pid` ("self" for the daemon), one
    /// per hierarchy it is in (see `exec::init_cgroups`), cgroup2's first.
    fn cgroups(&self, pid: &str) -> Option<Vec<PathBuf>> {
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mut hierarchies = cgroup::place(self.cgroup_mounts()?, &own);
        hierarchies.sort_by_key(|h| !h.is_v2());
        Some(hierarchies.iter().map(cgroup::own_dir).collect())
    }

    /// One of a container's own cgroups: that of `init_pid` in cgroup2,
    /// where an init is born in its own cgroup, else in the first v1
    /// hierarchy where it is not in the daemon's cgroup. A hierarchy where
    /// the init is left in the cgroup of the daemon that spawned it (see
    /// `cgroup::used_by`) holds other processes too, and that daemon may
    /// not be this one.
    fn container_cgroup(&self, init_pid: i32) -> Option<PathBuf> {
        self.cgroups(&init_pid.to_string())?
            .into_iter()
            .find(|d| !self.mine().contains(d))
    }

    fn mine(&self) -> &[PathBuf] {
        self.mine
            .get_or_init(|| self.cgroups("self").unwrap_or_default())
    }

    /// The cgroup [`container_cgroup`](Self::container_cgroup) finds and
    /// the processes in it. The cgroup2 one of `recorded` (those its
    /// monitor made, see `cgroups_now`) is it when the init is among its
    /// processes (it is born there unless it has a leaf of its own): then
    /// /proc/INIT/cgroup, costly to make for the kernel, is not read.
    fn init_cgroup(&self, init_pid: i32, recorded: &[String]) -> Option<(PathBuf, Vec<i32>)> {
        let v2 = self.cgroup_mounts()?.iter().find(|m| m.is_v2());
        let candidate = v2.and_then(|m| {
            recorded
                .iter()
                .map(Path::new)
                .find(|d| d.starts_with(m.mount()))
        });
        if let Some(dir) = candidate.filter(|d| !self.mine().iter().any(|m| m == d)) {
            let procs = exec::cgroup_procs(dir);
            if procs.contains(&init_pid) {
                return Some((dir.to_path_buf(), procs));
            }
        }
        let dir = self.container_cgroup(init_pid)?;
        let procs = exec::cgroup_procs(&dir);
        Some((dir, procs))
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
    pub events: events::Queue,
    /// The containers' run directories, for what their monitors change
    /// (made at the first run).
    watch: Option<Watch>,
    /// What the kept events last told of each container's health, for the
    /// re-attach to tell what changed while no daemon ran.
    pub told: BTreeMap<String, Told>,
    /// The bridge networks (see `net`); Err says why there are none (the
    /// address leases could not be read), for the starts that need them.
    pub net: Result<Net, String>,
    /// The cgroup hierarchies, found at the first start (after each
    /// reload) and handed to every monitor in its job (it starts in the
    /// daemon's cgroups).
    hierarchies: Option<Vec<cgroup::Found>>,
    /// Device programs loaded for the starts so far, one per set of rules
    /// (dropped at each reload): a start only attaches its program.
    device_programs: Vec<devices::Loaded>,
    /// The monitor started ahead for the next start, if one is ready.
    spare: Option<NewMonitor>,
    /// When to start a spare: a while after the last start or end, so
    /// that its exec never competes with either.
    spare_due: Option<Instant>,
    /// Spares are not used: one could not take its container's name, or
    /// several in a row ended before they were needed.
    spares_off: bool,
    /// Spares in a row found ended when a start came for them.
    spares_lost: u32,
    /// Monitors that reported their run's end and have yet to exit (they
    /// sync the exit record's directory): waited for when the daemon
    /// exits.
    finishing: Vec<OwnedFd>,
}

impl Containers {
    pub fn new() -> Containers {
        Containers {
            map: BTreeMap::new(),
            monitors: Slab::new(Tag::Monitor),
            channels: Slab::new(Tag::Channel),
            events: events::Queue::default(),
            watch: None,
            told: BTreeMap::new(),
            net: Err("the daemon has not read its networks yet".to_string()),
            hierarchies: None,
            device_programs: Vec::new(),
            spare: None,
            spare_due: None,
            spares_off: false,
            spares_lost: 0,
            finishing: Vec::new(),
        }
    }

    /// Whether another definition names `name` in `container:NAME`.
    fn shared(&self, name: &str) -> bool {
        self.map.values().any(|c| {
            matches!(c.spec.as_ref().map(|s| &s.network), Some(Network::Container(o)) if o == name)
        })
    }

    /// Makes what `spec`'s start needs of the networks.
    fn attach_network(&mut self, spec: &ContainerSpec) -> Result<Prepared, String> {
        let shared = self.shared(&spec.name);
        // An owner that started before any container named it runs in a
        // namespace berth does not hold yet: held now, from its init.
        if let (Network::Container(owner), Ok(net)) = (&spec.network, &mut self.net) {
            // Only a run of its current definition: one about to be made
            // again may be in another namespace (the host's).
            let owner_spec = self.map.get(owner).and_then(|c| c.spec.as_ref());
            let running = self
                .map
                .get(owner)
                .and_then(|c| c.phase().run())
                .filter(|r| r.exec == Exec::Done && r.init_pid > 0)
                .filter(|r| owner_spec.is_some_and(|s| s.hash == r.hash))
                .map(|r| (r.init_pid, r.init_start));
            if let Some((pid, start)) = running {
                if matches!(owner_spec.map(|s| &s.network), Some(Network::None)) {
                    net.hold_running(owner, pid, start)?;
                }
            }
        }
        let needs = shared || matches!(spec.network, Network::Bridge(_) | Network::Container(_));
        match &mut self.net {
            Ok(net) => net.attach(spec, shared),
            Err(why) if needs => Err(why.clone()),
            Err(_) => Ok(Prepared::default()),
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
            health: Paths::new(&cfg.run_dir, &cfg.state_dir, name).health(),
            health_seen: None,
            recorded_cgroups: std::cell::RefCell::new(None),
            effective: std::cell::OnceCell::new(),
        };
        self.map.insert(name.to_string(), ctr);
    }

    /// A new definition (reload); the old one stays in force for a stop
    /// already under way only through the grace computed before.
    pub fn redefine(&mut self, name: &str, spec: Option<ContainerSpec>) {
        if let Some(c) = self.map.get_mut(name) {
            c.spec = spec;
            c.effective = std::cell::OnceCell::new();
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
            .chain(self.spare_due)
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
            let gate_text = self.gate(env, name);
            let Some(c) = self.map.get_mut(name) else {
                break;
            };
            let def = match (&c.spec, &c.invalid) {
                (Some(s), _) => Ok(def_of(s)),
                (None, Some(why)) => Err(Some(why.as_str())),
                (None, None) => Err(None),
            };
            let gate = match &gate_text {
                None => Gate::Open,
                Some((why, stuck)) => Gate::Wait { why, stuck: *stuck },
            };
            let ctx = Ctx {
                name,
                now: Instant::now(),
                now_ns: host::now_ns(),
                def,
                live_restore: env.cfg.live_restore,
                shutting_down: env.shutting_down,
                gate,
            };
            let machine = std::mem::take(&mut c.machine);
            let from = machine.phase().kind();
            let what = event.kind();
            let (from_phase, last_before) = (machine.phase().clone(), machine.last().clone());
            let (machine, effects) = lifecycle::on(machine, event.clone(), &ctx);
            for (kind, detail, code) in
                events::of_transition(&from_phase, &last_before, &event, &machine, ctx.now)
            {
                self.events.emit_with_code(name, kind, detail, code);
            }
            let Some(c) = self.map.get_mut(name) else {
                break;
            };
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

    /// Whether what `name` depends on lets it start now: `None` if so,
    /// else what it waits for and whether a dependency is at rest.
    fn gate(&self, env: &Env, name: &str) -> Option<(String, bool)> {
        let spec = self.map.get(name)?.spec.as_ref()?;
        let deps: Vec<Dep> = spec
            .depends_on
            .iter()
            .map(|d| Dep {
                name: &d.name,
                condition: d.condition,
                state: self.dep_state(env, &d.name),
            })
            .collect();
        order::gate(&deps)
    }

    /// Where a dependency stands, for `order::gate`.
    fn dep_state(&self, env: &Env, name: &str) -> DepState {
        let Some(c) = self.map.get(name) else {
            return DepState::Missing;
        };
        match c.phase() {
            Phase::Running { run } => {
                let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, name);
                let healthy = match state::load::<state::HealthRecord>(&paths.health()) {
                    Loaded::Ok(h) => h.run_id == run.run_id && h.status == "healthy",
                    _ => false,
                };
                DepState::Running { healthy }
            }
            // Stopped to be started again (a restart, a recreation).
            Phase::Stopping {
                then: Then::Start | Then::Autostart,
                ..
            } => DepState::Coming,
            Phase::Stopping { .. } => DepState::AtRest(Status::Stopped),
            Phase::Starting { run, .. } if run.exec == Exec::Failed => {
                DepState::AtRest(Status::Failed)
            }
            Phase::Starting { .. } | Phase::BackingOff { .. } | Phase::Waiting { .. } => {
                DepState::Coming
            }
            p @ (Phase::Idle(_) | Phase::Untrusted { .. }) => DepState::AtRest(p.status()),
            Phase::Removed => DepState::Missing,
        }
    }

    /// Feeds `Wake` to every container that waits for what it depends on
    /// (the loop calls it when it takes events of starts and health).
    pub fn wake(&mut self, env: &Env) -> Answers {
        let waiting: Vec<String> = self
            .map
            .values()
            .filter(|c| matches!(c.phase(), Phase::Waiting { .. }))
            .map(|c| c.name.clone())
            .collect();
        let mut answers = Vec::new();
        for name in waiting {
            answers.extend(self.feed(env, &name, Event::Wake));
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
                self.tell_monitor_stopping(name);
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
                if let Ok(net) = &mut self.net {
                    net.detach(name);
                }
                let _ = fs::remove_dir_all(&paths.run);
                let _ = fs::remove_dir_all(&paths.state);
                self.release(env.registry, name);
                self.map.remove(name);
                if let Some(w) = self.watch.as_mut() {
                    w.remove(name);
                }
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

    /// Before berth's stop signal reaches the init, its monitor learns
    /// that the stop is meant (see `monitor::STOP_REQUEST`): it halts the
    /// health checks and does not start the init again.
    fn tell_monitor_stopping(&self, name: &str) {
        let Some(c) = self.map.get(name) else {
            return;
        };
        if !matches!(c.phase(), Phase::Stopping { .. }) {
            return;
        }
        // A monitor of an older berth (re-attached after an upgrade) would
        // die of the signal, its container's exit code with it.
        if !c.phase().run().is_some_and(|r| r.stop_notice) {
            return;
        }
        if let Some(h) = &c.handles {
            let _ = process::pidfd_send_signal(&h.monitor_pidfd, monitor::STOP_REQUEST);
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

    /// Makes the next start find the cgroup hierarchies again (mounted
    /// after the daemon started, or the daemon moved to another cgroup).
    pub fn forget_hierarchies(&mut self) {
        self.hierarchies = None;
        self.device_programs.clear();
    }

    /// The cgroup hierarchies, as found once (none if they cannot be
    /// read: each monitor then looks for itself, and says why it failed).
    fn hierarchies(&mut self) -> &[cgroup::Found] {
        self.hierarchies.get_or_insert_with(|| {
            cgroup::discover_live()
                .map(|all| all.iter().map(cgroup::Found::from).collect())
                .unwrap_or_default()
        })
    }

    /// The device program for a container with `spec`'s devices, loaded
    /// at the first start that needs it. None where no cgroup2 hierarchy
    /// would take it, or it cannot be made here: the monitor then makes
    /// its own, and says why that failed if it does.
    fn device_program(&mut self, spec: &ContainerSpec) -> Option<&devices::Loaded> {
        if !self.hierarchies().iter().any(cgroup::Found::is_v2) {
            return None;
        }
        let rules = devices::rules(&spec.devices).ok()?;
        let text = devices::rules_text(&rules);
        let at = match self.device_programs.iter().position(|l| l.rules == text) {
            Some(i) => i,
            None => match devices::load(&rules) {
                Ok(loaded) => {
                    self.device_programs.push(loaded);
                    self.device_programs.len() - 1
                }
                Err(e) => {
                    log::debug!("device program not loaded ahead: {}", errors::io_text(&e));
                    return None;
                }
            },
        };
        self.device_programs.get(at)
    }

    /// The spare monitor, if one is ready and still alive.
    fn take_spare(&mut self) -> Option<NewMonitor> {
        let spare = self.spare.take()?;
        self.want_spare();
        // Readable: it is gone.
        let alive = !fd::readable_now(&spare.pidfd).unwrap_or(true)
            && host::same_process(spare.pid, spare.start);
        if alive {
            self.spares_lost = 0;
            return Some(spare);
        }
        // Its status, unless SIGCHLD's reaping took it first.
        let ended = process::waitid_pidfd(&spare.pidfd, false);
        self.spares_lost += 1;
        let why = match ended {
            Ok(Some(process::ExitStatus::Exited(monitor::SPARE_UNNAMED))) => Some(
                "a spare monitor could not rename its command line (neither PR_SET_MM_MAP nor, without CAP_SYS_RESOURCE, PR_SET_MM_ARG_START works here)".to_string(),
            ),
            _ if self.spares_lost >= SPARES_LOST_MAX => Some(format!(
                "{SPARES_LOST_MAX} spare monitors in a row ended before a start needed them"
            )),
            _ => None,
        };
        if let Some(why) = why {
            self.spares_off = true;
            self.spare_due = None;
            log::info!("no spare monitors from now on: {why}; each start starts its own monitor");
        }
        None
    }

    /// A spare is wanted, `SPARE_DELAY` from now (from the latest start
    /// or end, so that its exec does not compete with a start or with the
    /// end of a short run).
    pub fn want_spare(&mut self) {
        if self.spare.is_none() && !self.spares_off {
            self.spare_due = Some(Instant::now() + SPARE_DELAY);
        }
    }

    /// Starts a spare monitor once one is due and no start is under way
    /// (the start that ends then asks for one again). Called once the loop
    /// has answered its clients.
    /// While the daemon shuts down (`!allowed`) none is started.
    pub fn prepare_spare(&mut self, allowed: bool) {
        if !allowed {
            self.spare_due = None;
            return;
        }
        if self.spare.is_some() || self.spare_due.is_none_or(|due| due > Instant::now()) {
            return;
        }
        self.spare_due = None;
        let starting = self.map.values().any(|c| {
            c.handles
                .as_ref()
                .is_some_and(|h| !h.execed && h.channel.is_some())
        });
        if starting {
            return;
        }
        match NewMonitor::spawn(None) {
            Ok(spare) => {
                log::debug!("spare monitor {} started", spare.pid);
                self.spare = Some(spare);
            }
            Err(e) => log::debug!("no spare monitor: {e}"),
        }
    }

    /// Ends the spare monitor, if there is one, and waits (a while) for
    /// the monitors that are finishing: a daemon that exits leaves no
    /// process of its own but those of running containers.
    pub fn end_helpers(&mut self) {
        if let Some(spare) = self.spare.take() {
            let _ = process::pidfd_send_signal(&spare.pidfd, libc::SIGKILL);
            let _ = process::waitid_pidfd(&spare.pidfd, true);
        }
        let until = Instant::now() + FINISH_TIMEOUT;
        for pidfd in self.finishing.drain(..) {
            let left = until.saturating_duration_since(Instant::now());
            if fd::wait_readable(&pidfd, left).unwrap_or(false) {
                let _ = process::waitid_pidfd(&pidfd, false);
            }
        }
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
        let prepared = self.attach_network(&spec).map_err(StartError::Network)?;
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
            netns: prepared
                .netns
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            hosts: prepared.hosts,
            net_mix: spec.net_mix,
            hierarchies: self.hierarchies().to_vec(),
            device_program: String::new(),
        };
        let mut job = job;
        let options = StartOptions {
            log_dir: job.log_dir.clone(),
            log_max_size: job.log_max_size,
            log_max_files: job.log_max_files,
            cgroup_parent: job.cgroup_parent.clone(),
            cgroups: Vec::new(),
        };
        let paths = Paths::new(&cfg.run_dir, &cfg.state_dir, name);
        fs::create_dir_all(&paths.run).map_err(|e| StartError::CreateDir(paths.run.clone(), e))?;
        self.watch_dir(env, name, &paths.run);
        let NewMonitor {
            pid,
            start: monitor_start,
            pidfd,
            channel: ours,
        } = match self.take_spare() {
            Some(spare) => spare,
            None => NewMonitor::spawn(Some(name))?,
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
            health_restarts: 0,
            stop_notice: true,
        };
        // The monitor starts nothing before it has the job, and it exits
        // when the channel closes first: the record naming it is written
        // before the job goes out, so a daemon that dies at any instant
        // leaves either no run or a run the next daemon finds.
        if let Err(e) = record_intent(&paths, name, &run) {
            let _ = process::pidfd_send_signal(&pidfd, libc::SIGKILL);
            return Err(StartError::Record(paths.runtime(), e));
        }
        let program = self.device_program(&spec);
        if let Some(loaded) = program {
            job.device_program = loaded.rules.clone();
        }
        let program = program.map(|l| l.prog.as_fd());
        let mut stream = std::os::unix::net::UnixStream::from(ours);
        // The job fits in the socket buffer; the monitor reads it at once.
        // The device program goes along with its first byte.
        let line = wire::encode(&job);
        let sent = socket::send_with_fd(&stream, &line, program)
            .and_then(|n| stream.write_all(&line[n..]));
        if let Err(e) = sent {
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
            execed: false,
            init_pidfd: None,
            adopted_until: None,
        });
        Ok(run)
    }

    /// Re-attaches to a live monitor found at start-up (its run directory
    /// watched before `rec` was read, see `watch_records`).
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
            c.recorded(rec);
            c.handles = Some(Handles {
                monitor_pidfd,
                monitor_token,
                channel: None,
                execed: false,
                init_pidfd,
                adopted_until: (rec.init_pid == 0).then(|| Instant::now() + ADOPT_TIMEOUT),
            });
        }
        let run = run_of(rec);
        // What the monitor recorded while no daemon ran: news where it
        // differs from what the kept events told (after the re-attach).
        let recorded = match self
            .map
            .get(name)
            .map(|c| state::load::<HealthRecord>(&c.health))
        {
            Some(Loaded::Ok(r)) if r.run_id == rec.run_id => Some(r),
            _ => None,
        };
        if let Some(c) = self.map.get_mut(name) {
            c.health_seen = recorded
                .as_ref()
                .map(|r| (r.run_id.clone(), r.status.clone()));
        }
        let told = self.told.remove(name).unwrap_or_default();
        let answers = self.feed(env, name, Event::Attached(run));
        if let Some(h) = &recorded {
            self.tell_missed(name, &told, h);
        }
        // A new init its monitor recorded after `rec` was read is an event
        // of the watch, put in place before (see `watch_records`).
        answers
    }

    /// Watches the run directory of `name` (at start-up, before its
    /// runtime record is read and re-attached to).
    pub fn watch_records(&mut self, env: &Env, name: &str) {
        let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, name);
        self.watch_dir(env, name, &paths.run);
    }

    /// No more watch on the run directory of `name`: nothing of it runs.
    /// Drops the watch on a container's run directory, unless a monitor
    /// runs for it now (one spawned meanwhile, e.g. by a restart policy
    /// while restoring, shares the watch).
    pub fn unwatch_records(&mut self, name: &str) {
        if self.map.get(name).is_some_and(|c| c.handles.is_some()) {
            return;
        }
        if let Some(w) = self.watch.as_mut() {
            w.remove(name);
        }
    }

    /// Tells what the monitor did while no daemon ran, where it differs
    /// from what the events last told: the restarts it made for the
    /// container being unhealthy (after an `unhealthy` status, which each
    /// of them follows), then the status now.
    fn tell_missed(&mut self, name: &str, told: &Told, now: &HealthRecord) {
        /// Restarts told one by one at most; the rest in one event.
        const ONE_BY_ONE: u32 = 20;
        let missed = now.restarts.saturating_sub(told.restarts);
        let unhealthy = crate::container::health::UNHEALTHY;
        let mut last = told.health.as_deref();
        if missed > 0 && last != Some(unhealthy) {
            self.events.emit(name, Kind::Health, unhealthy);
            last = Some(unhealthy);
        }
        for _ in 0..missed.min(ONE_BY_ONE) {
            let detail = format!("{} (while no daemon ran)", window::UNHEALTHY);
            self.events.emit(name, Kind::Restart, detail);
        }
        if missed > ONE_BY_ONE {
            let detail = format!(
                "{}: {} more restarts while no daemon ran",
                window::UNHEALTHY,
                missed - ONE_BY_ONE
            );
            self.events.emit(name, Kind::Restart, detail);
        }
        if last != Some(now.status.as_str()) {
            self.events.emit(name, Kind::Health, now.status.clone());
        }
    }

    /// Watches a container's run directory for the records its monitor
    /// renames into place (see `watch`). Without the watch the daemon
    /// still finds a new init at the next start-up: said once.
    fn watch_dir(&mut self, env: &Env, name: &str, dir: &Path) {
        if self.watch.is_none() {
            match Watch::new(env.registry) {
                Ok(w) => self.watch = Some(w),
                Err(e) => {
                    let msg = format!(
                        "inotify: {err}; health changes and restarts by the monitor are seen only at the next daemon start",
                        err = errors::io_text(&e)
                    );
                    self.note(name, log::Level::Warn, &msg);
                    return;
                }
            }
        }
        if let Some(Err(e)) = self.watch.as_mut().map(|w| w.add(name, dir)) {
            let msg = format!(
                "watch {}: {err}; health changes and restarts by the monitor are seen only at the next daemon start",
                dir.display(),
                err = errors::io_text(&e)
            );
            self.note(name, log::Level::Warn, &msg);
        }
    }

    /// The watch fired: what the monitors changed.
    fn records_changed(&mut self, env: &Env) -> Answers {
        let changes = self.watch.as_mut().map_or_else(Vec::new, Watch::read);
        let mut answers = Vec::new();
        for (name, what) in changes {
            match what {
                Changed::Runtime => answers.extend(self.runtime_changed(env, &name)),
                Changed::Health => self.health_changed(&name),
            }
        }
        answers
    }

    /// A runtime record rewritten by the monitor of the running run with
    /// another init: it restarted the container for failing its health
    /// checks. Signals go to the new init from now on.
    fn runtime_changed(&mut self, env: &Env, name: &str) -> Answers {
        let Some(run) = self
            .map
            .get(name)
            .and_then(|c| c.phase().run())
            .filter(|r| r.exec == Exec::Done)
            .cloned()
        else {
            return Vec::new();
        };
        let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, name);
        let Loaded::Ok(rec) = state::load::<RuntimeRecord>(&paths.runtime()) else {
            return Vec::new();
        };
        if let Some(c) = self.map.get(name) {
            c.recorded(&rec);
        }
        let same = (rec.init_pid, rec.init_start) == (run.init_pid, run.init_start);
        if rec.run_id != run.run_id || rec.init_pid == 0 || same {
            return Vec::new();
        }
        let init = process::pidfd_open(rec.init_pid)
            .ok()
            .filter(|_| host::same_process(rec.init_pid, rec.init_start));
        if let Some(h) = self.map.get_mut(name).and_then(|c| c.handles.as_mut()) {
            h.init_pidfd = init;
        }
        self.events.emit(name, Kind::Restart, "unhealthy");
        self.feed(
            env,
            name,
            Event::Reinit {
                init_pid: rec.init_pid,
                init_start: rec.init_start,
                started_at: rec.started_at,
                restarts: rec.health_restarts,
            },
        )
    }

    /// The monitor wrote the run's health: a new status is told.
    fn health_changed(&mut self, name: &str) {
        let Some(c) = self.map.get_mut(name) else {
            return;
        };
        let Some(run_id) = c.phase().run().map(|r| r.run_id.clone()) else {
            return;
        };
        let Loaded::Ok(rec) = state::load::<HealthRecord>(&c.health) else {
            return;
        };
        let seen = Some((rec.run_id.clone(), rec.status.clone()));
        if rec.run_id != run_id || c.health_seen == seen {
            return;
        }
        c.health_seen = seen;
        self.events.emit(name, Kind::Health, rec.status.clone());
        let level = if rec.status == crate::container::health::UNHEALTHY {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        self.note(name, level, &format!("health: {}", rec.status));
    }

    /// Deregisters and closes the fds of the container's run.
    fn release(&mut self, registry: &Registry, name: &str) -> Option<Handles> {
        let mut h = self.map.get_mut(name)?.handles.take()?;
        self.want_spare();
        let _ = registry.deregister(&mut SourceFd(&h.monitor_pidfd.as_raw_fd()));
        self.monitors.remove(h.monitor_token);
        if let Some((mut stream, token, _)) = h.channel.take() {
            let _ = registry.deregister(&mut stream);
            self.channels.remove(token);
        }
        Some(h)
    }

    /// A monitor's pidfd or channel, or the watch, is readable.
    pub fn event(&mut self, env: &Env, token: Token) -> Answers {
        if tokens::tag_of(token) == Some(Tag::Watch) {
            return self.records_changed(env);
        }
        if let Some(name) = self.monitors.get(token).cloned() {
            return self.monitor_exited(env, &name, token);
        }
        if let Some(name) = self.channels.get(token).cloned() {
            return self.channel_readable(env, &name, token);
        }
        Vec::new() // stale: the fd behind it is gone
    }

    /// The monitor's reports: exec'd (with the init's pid) or the error;
    /// then, for a run it started, the run's end.
    fn channel_readable(&mut self, env: &Env, name: &str, token: Token) -> Answers {
        let mut answers = Vec::new();
        // Edge-triggered: read until it would block (both reports of a
        // short run can come in one read).
        while let Some(h) = self.map.get_mut(name).and_then(|c| c.handles.as_mut()) {
            let execed = h.execed;
            let Some((stream, chan_token, reader)) = h.channel.as_mut() else {
                break;
            };
            if *chan_token != token {
                break;
            }
            let line = match reader.read_from(stream) {
                Ok(Got::Partial) => break, // more to come
                Ok(Got::Line(line)) => Some(line),
                Ok(Got::Eof | Got::TooLong) | Err(_) => None,
            };
            let reply = match line {
                Some(line) if !execed => wire::decode::<Reply>(&line).ok(),
                Some(line) => {
                    // The end report: the run is over, however long its
                    // monitor takes to exit (it is reaped on SIGCHLD).
                    self.close_channel(env, name);
                    if line == monitor::END_REPORT.strip_suffix(b"\n").unwrap_or_default() {
                        self.note(
                            name,
                            log::Level::Debug,
                            "the monitor reported the run's end",
                        );
                        answers.extend(self.run_over(env, name, true));
                    }
                    break;
                }
                // No report: the monitor died; its exit is handled when
                // its pidfd fires.
                None => {
                    self.close_channel(env, name);
                    break;
                }
            };
            match reply {
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
                        h.execed = true;
                    }
                    self.want_spare();
                    let event = Event::Execed {
                        init_pid: r.pid,
                        init_start: r.init_start,
                        started_at: r.started_at,
                        alive,
                    };
                    answers.extend(self.feed(env, name, event));
                }
                Some(r) => {
                    self.close_channel(env, name);
                    self.want_spare();
                    let why = r.error.unwrap_or_else(|| "monitor failed".to_string());
                    answers.extend(self.feed(env, name, Event::ExecFailed(why)));
                    break;
                }
                None => {
                    self.close_channel(env, name);
                    break;
                }
            }
        }
        answers
    }

    /// Deregisters and closes the monitor's channel.
    fn close_channel(&mut self, env: &Env, name: &str) {
        let taken = self
            .map
            .get_mut(name)
            .and_then(|c| c.handles.as_mut())
            .and_then(|h| h.channel.take());
        if let Some((mut stream, token, _)) = taken {
            let _ = env.registry.deregister(&mut stream);
            self.channels.remove(token);
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
        self.run_over(env, name, false)
    }

    /// The run is over (its monitor is gone, or `reported` so): how it
    /// ended, from its exit record.
    fn run_over(&mut self, env: &Env, name: &str, reported: bool) -> Answers {
        let Some(c) = self.map.get(name) else {
            return Vec::new();
        };
        let Some(run) = c.phase().run().cloned() else {
            self.release(env.registry, name);
            return Vec::new();
        };
        let Some(handles) = self.release(env.registry, name) else {
            return Vec::new();
        };
        let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, name);
        let adopted_start = handles.channel.is_none() && run.exec == Exec::Pending;
        let Handles {
            monitor_pidfd,
            init_pidfd,
            ..
        } = handles;
        if reported {
            // Still there for a moment; gone ones need no waiting for.
            self.finishing
                .retain(|pidfd| !fd::readable_now(pidfd).unwrap_or(true));
            self.finishing.push(monitor_pidfd);
        }
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
            bury(&run, init_pidfd.as_ref(), &cgroups);
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
        let c = self.map.get(name)?;
        let mut info = c.info(cfg_log_dir, &Mounts::default());
        if let (Ok(net), Some(spec)) = (&self.net, c.spec()) {
            let (joined, ports) = net.info(spec);
            info.networks = joined
                .into_iter()
                .map(|j| {
                    let entry = api::NetworkInfo {
                        address: j.address.to_string(),
                        prefix: j.prefix,
                        gateway: j.gateway.to_string(),
                        bridge: j.bridge,
                        interface: j.interface,
                    };
                    (j.network, entry)
                })
                .collect();
            info.ports = ports
                .iter()
                .map(|p| api::PortInfo {
                    host_ip: p
                        .host_ip
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
                        .to_string(),
                    host_port: p.host_port,
                    port: p.port,
                    proto: p.proto.as_str().to_string(),
                })
                .collect();
        }
        Some(info)
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
    /// Its network could not be made (why).
    Network(String),
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
            StartError::Network(why) => write!(f, "network: {why}"),
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
        health_restarts: rec.health_restarts,
        stop_notice: rec.stop_notice,
    }
}

/// The processes started into a running container from outside (`berth
/// exec`, health checks), as the kernel shows them.
/// `cgroups`: those its monitor made.
fn execs_of(
    run: &RunFacts,
    mounts: &Mounts,
    cgroups: &[String],
    init_runs: impl Fn() -> bool,
) -> Vec<ExecInfo> {
    let Some((dir, procs)) = mounts.init_cgroup(run.init_pid, cgroups) else {
        return Vec::new();
    };
    let found = exec::joined(&procs, run.init_pid, &mounts.boot);
    // Read through /proc/PID: the init's only if it still runs after.
    if !init_runs() {
        return Vec::new();
    }
    if found.cut_short {
        log::warn!(
            "{}: more than {} processes: exec'd processes are looked for among the first {} only",
            dir.display(),
            exec::JOINED_LOOKS_AT,
            exec::JOINED_LOOKS_AT
        );
    }
    found
        .joined
        .into_iter()
        .map(|j| ExecInfo {
            pid: j.pid,
            command: j.command,
            started_at: (j.started_at > 0).then(|| host::rfc3339(j.started_at)),
        })
        .collect()
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
        health_restarts: rec.health_restarts,
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
        health_restarts: 0,
        stop_notice: true,
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
    fn a_monitor_of_an_older_berth_is_never_sent_the_stop_notice() {
        // What berth 0.1 before health checks wrote: no "stop-notice".
        let old = r#"{"version":3,"name":"web","run-id":"r1","boot-id":"b","monitor-pid":10,"monitor-start":5,"init-pid":11,"init-start":6,"started-at":1,"config-hash":"00000000000000ff"}"#;
        let rec: RuntimeRecord = crate::json::decode(old).unwrap();
        assert!(!run_of(&rec).stop_notice);
        let now = RuntimeRecord {
            stop_notice: true,
            ..rec
        };
        let back: RuntimeRecord =
            crate::json::decode(&nanoserde::SerJson::serialize_json(&now)).unwrap();
        assert!(run_of(&back).stop_notice);
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
