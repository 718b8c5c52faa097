//! A container's lifecycle: one phase per container, and one pure
//! function, [`on`], from (state, event) to (new state, effects). The
//! daemon's loop turns everything that happens to a container (a client's
//! request, the monitor's report, its exit, a timer, a reload, what restore
//! found on disk) into an [`Event`], and executes the [`Effect`]s that come
//! back (spawn, signal, persist, answer, log, forget). Nothing else assigns
//! a phase: the field is private to this module.
//!
//! The transitions, by phase kind (a unit test derives this list from [`on`]
//! itself, for every phase against every event, and fails if it differs):
//!
//! ```text
//! idle        --start-->        idle         spawn asked; `spawned` follows
//! idle        --start-->        waiting      what it depends on is not ready
//! idle        --restart-->      waiting
//! idle        --boot-->         waiting
//! idle        --redefined-->    waiting
//! idle        --ended-->        waiting      a run found ended; its policy restarts it
//! idle        --spawned-->      starting
//! idle        --spawn-failed--> idle         failed, with the reason
//! idle        --ended-->        idle         a run found ended at start-up
//! idle        --ended-->        backing-off  ... and its policy restarts it
//! idle        --ended-->        removed      ... and its definition is gone
//! idle        --attached-->     running      a live monitor found at start-up
//! idle        --attached-->     starting     ... before its exec
//! idle        --attached-->     stopping     ... to be stopped or recreated
//! idle        --distrusted-->   untrusted    its records cannot be trusted
//! idle        --undefined-->    removed
//! backing-off --start-->        backing-off  spawn asked
//! backing-off --start-->        waiting
//! backing-off --restart-->      waiting
//! backing-off --redefined-->    waiting
//! backing-off --spawned-->      starting
//! backing-off --spawn-failed--> idle
//! backing-off --stop-->         idle
//! backing-off --tick-->         backing-off  back-off over: spawn asked
//! backing-off --tick-->         waiting      ... what it depends on is not ready
//! backing-off --redefined-->    idle
//! backing-off --undefined-->    removed
//! starting    --stop-->         stopping
//! starting    --restart-->      stopping
//! starting    --execed-->       running
//! starting    --exec-failed-->  starting     shown failed until the monitor ends
//! starting    --ended-->        idle
//! starting    --ended-->        backing-off
//! starting    --ended-->        waiting      ... to start again, but not ready
//! running     --stop-->         stopping
//! running     --restart-->      stopping
//! running     --ended-->        idle
//! running     --ended-->        backing-off
//! running     --reinit-->       running      its monitor started a new init
//! running     --ended-->        waiting
//! stopping    --execed-->       stopping     the stop signal goes out now
//! stopping    --exec-failed-->  stopping
//! stopping    --tick-->         stopping     grace over: SIGKILL
//! stopping    --ended-->        idle
//! stopping    --ended-->        removed      its definition is gone
//! stopping    --ended-->        waiting      to start again, but not ready
//! untrusted   --undefined-->    removed
//! waiting     --start-->        waiting      spawn asked once ready
//! waiting     --restart-->      waiting
//! waiting     --wake-->         waiting      ready: spawn asked; or still waiting
//! waiting     --spawned-->      starting
//! waiting     --spawn-failed--> idle
//! waiting     --stop-->         idle
//! waiting     --redefined-->    idle
//! waiting     --undefined-->    removed
//! ```
//!
//! `waiting`: a start was asked for (boot, reload, a client, a restart)
//! while a container it depends on (`depends-on`) is not running or not
//! healthy ([`Gate`], which the caller works out). It waits until a
//! `wake` finds the gate open. A client's start is refused at once when a
//! dependency is at rest (stopped, exited, failed: nothing would start it),
//! and one waiting is answered with that reason when a dependency comes to
//! rest meanwhile; the container itself goes on waiting.
//!
//! Every other (phase, event) pair keeps the phase kind: it may answer a
//! client, log, or change the phase's data (a stop's deadline, what follows
//! it), but it does not move the container elsewhere.

use std::time::{Duration, Instant};

use crate::config::RestartPolicy;
use crate::policy;
use crate::state::{ContainerState, FORMAT_VERSION, StartOptions};

/// A client of the API socket, as the loop names it (its token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub usize);

/// How a container at rest got there (for `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest {
    /// Defined, and not run in this boot.
    Created,
    /// Stopped by the daemon.
    Stopped,
    /// Stopped by a user's `berth stop`.
    StoppedByUser,
    Exited,
    Failed,
}

/// What `status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Stopped,
    Running,
    Exited,
    Restarting,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Stopped => "stopped",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Restarting => "restarting",
            Status::Failed => "failed",
        }
    }
}

/// Whether the container's command was exec'd in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// The monitor has not reported yet.
    Pending,
    /// The monitor reported that the start failed; it ends soon.
    Failed,
    /// Exec'd: the init's pid is known.
    Done,
}

/// One run of a container: its monitor and, once exec'd, its init.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    pub run_id: String,
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub init_pid: i32,
    pub init_start: u64,
    /// Nanoseconds since the epoch.
    pub started_at: u64,
    /// Hash of the definition it was started from.
    pub hash: u64,
    pub options: StartOptions,
    pub exec: Exec,
    /// Times its monitor started the init again in this run for failing
    /// its health checks (counted into the persisted restart count when
    /// the run ends).
    pub health_restarts: u32,
    /// Its monitor takes notice of a stop (see `RuntimeRecord`).
    pub stop_notice: bool,
}

/// Why a stop was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    User,
    Shutdown,
    /// Reload, restart or restore replaces or removes it.
    Reconcile,
}

/// What follows the end of a stopped run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Nothing,
    /// Start it again (restart, a replaced definition).
    Start,
    /// Start it again if its definition or policy would have (it was found
    /// running with live restore off).
    Autostart,
    /// Forget it and its records: its definition is gone.
    Forget,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// No monitor.
    Idle(Rest),
    /// Waiting for the restart back-off.
    BackingOff {
        until: Instant,
    },
    /// A monitor runs; the start is not reported, or it failed and the
    /// monitor is about to end. Shows as `shown` until exec'd ("running"
    /// always has a pid).
    Starting {
        run: RunFacts,
        shown: Status,
    },
    Running {
        run: RunFacts,
    },
    /// A stop is under way: the stop signal went out (or goes out at exec),
    /// SIGKILL at `kill_at`.
    Stopping {
        run: RunFacts,
        reason: StopReason,
        kill_at: Option<Instant>,
        then: Then,
        /// What it shows until exec'd, as `Starting` did.
        shown: Status,
    },
    /// Its records cannot be trusted (newer format, torn): hands off.
    /// `seen` is the init (pid, start time) as far as the record reads,
    /// for display only.
    Untrusted {
        why: String,
        seen: Option<(i32, u64)>,
    },
    /// Its definition is gone and so is its run: the loop drops it.
    Removed,
    /// A start waits for what it depends on; shows as `shown` (what it
    /// was before), with `why` as a warning.
    Waiting {
        why: String,
        shown: Status,
    },
}

/// The kinds of phase, for the diagram and its test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Idle,
    BackingOff,
    Starting,
    Running,
    Stopping,
    Untrusted,
    Removed,
    Waiting,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Idle => "idle",
            Kind::BackingOff => "backing-off",
            Kind::Starting => "starting",
            Kind::Running => "running",
            Kind::Stopping => "stopping",
            Kind::Untrusted => "untrusted",
            Kind::Removed => "removed",
            Kind::Waiting => "waiting",
        }
    }
}

impl Phase {
    pub fn kind(&self) -> Kind {
        match self {
            Phase::Idle(_) => Kind::Idle,
            Phase::BackingOff { .. } => Kind::BackingOff,
            Phase::Starting { .. } => Kind::Starting,
            Phase::Running { .. } => Kind::Running,
            Phase::Stopping { .. } => Kind::Stopping,
            Phase::Untrusted { .. } => Kind::Untrusted,
            Phase::Removed => Kind::Removed,
            Phase::Waiting { .. } => Kind::Waiting,
        }
    }

    /// The current run, while a monitor exists.
    pub fn run(&self) -> Option<&RunFacts> {
        match self {
            Phase::Starting { run, .. } | Phase::Running { run } | Phase::Stopping { run, .. } => {
                Some(run)
            }
            _ => None,
        }
    }

    fn run_mut(&mut self) -> Option<&mut RunFacts> {
        match self {
            Phase::Starting { run, .. } | Phase::Running { run } | Phase::Stopping { run, .. } => {
                Some(run)
            }
            _ => None,
        }
    }

    /// A monitor exists for it.
    pub fn is_active(&self) -> bool {
        self.run().is_some()
    }

    pub fn status(&self) -> Status {
        match self {
            Phase::Idle(Rest::Created) => Status::Created,
            Phase::Idle(Rest::Stopped | Rest::StoppedByUser) => Status::Stopped,
            Phase::Idle(Rest::Exited) => Status::Exited,
            Phase::Idle(Rest::Failed) | Phase::Removed => Status::Failed,
            Phase::BackingOff { .. } => Status::Restarting,
            Phase::Starting { run, shown } => match run.exec {
                Exec::Failed => Status::Failed,
                _ => *shown,
            },
            Phase::Running { .. } => Status::Running,
            Phase::Stopping { run, shown, .. } => match run.exec {
                Exec::Done => Status::Running,
                Exec::Failed => Status::Failed,
                Exec::Pending => *shown,
            },
            Phase::Untrusted { .. } => Status::Failed,
            Phase::Waiting { shown, .. } => *shown,
        }
    }

    /// When the next timer of this phase is due.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Phase::BackingOff { until } => Some(*until),
            Phase::Stopping { kill_at, .. } => *kill_at,
            _ => None,
        }
    }
}

/// What a waiting client waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// `start`, `restart`: answer once exec'd or failed.
    Started,
    /// `start --wait`: answer once exec'd and exited, with the code.
    StartedThenExit,
    /// `wait`, `stop`: answer when the run ends.
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    pub client: ClientId,
    pub kind: WaitKind,
}

/// An answer to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ok,
    Error(String),
    /// The run ended: its exit code, or why there is none.
    Exit {
        code: Option<i32>,
        error: Option<String>,
    },
}

/// Answers for clients, as the lifecycle gives them.
pub type Answers = Vec<(ClientId, Answer)>;

/// How a run ended, from its exit record.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub code: Option<i32>,
    /// Why it could not start, if it could not.
    pub error: Option<String>,
    /// 0 if unknown.
    pub started_at: u64,
    pub finished_at: u64,
    /// What the container's limits did (out of memory, pids), if anything.
    pub limits: LimitsHit,
    /// Times its monitor started the init again for failing its health
    /// checks (`on-unhealthy: "restart"`): restarts to count.
    pub health_restarts: u32,
}

/// What a container's limits did to a run, from its exit record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsHit {
    pub oom_killed: bool,
    /// In words, e.g. "out of memory (memory limit 64 MiB)".
    pub cause: Option<String>,
    /// Bytes of output its log could not take.
    pub log_dropped: u64,
}

/// Who asks for a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A client: clears a user's stop and the restart count.
    User,
    /// The daemon: autostart, reload.
    Daemon,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Start {
        cause: Cause,
        waiter: Option<Waiter>,
    },
    /// A user's `restart`: stop (if active), then start.
    Restart { grace: Duration, waiter: Waiter },
    Stop {
        reason: StopReason,
        grace: Duration,
        then: Then,
        /// A client to answer when the run has ended (or now, if none runs).
        client: Option<ClientId>,
    },
    /// `wait`: answer when the run ends, or now with the last code.
    Wait { client: ClientId },
    /// The monitor asked for by [`Effect::Spawn`] is up.
    Spawned(RunFacts),
    /// No monitor could be started.
    SpawnFailed(String),
    /// The monitor reports the exec. `alive`: the init could be opened.
    Execed {
        init_pid: i32,
        init_start: u64,
        started_at: u64,
        alive: bool,
    },
    /// The monitor reports that the start failed.
    ExecFailed(String),
    /// The monitor stopped the init for failing its health checks and
    /// started a new one in the same run (learnt from its runtime record).
    Reinit {
        init_pid: i32,
        init_start: u64,
        started_at: u64,
        /// The monitor's count of such restarts in this run.
        restarts: u32,
    },
    /// The monitor is gone: how the run ended (or why that is not known).
    /// `found`: a run that ended while no daemon ran, found at start-up
    /// (`seen`: a previous daemon had handled its end already).
    Ended {
        outcome: Result<Ending, String>,
        found: Option<(RunFacts, bool)>,
    },
    /// Time passed: deadlines up to `Ctx::now` are due.
    Tick,
    /// SIGKILL now (the shutdown timeout).
    Kill { why: &'static str },
    /// Reload gave it a new definition while no monitor runs.
    Redefined { start: bool },
    /// Its definition is gone (reload, or restore found only records).
    Undefined,
    /// Start-up found its monitor alive.
    Attached(RunFacts),
    /// Start-up found records that cannot be trusted.
    Distrusted {
        why: String,
        seen: Option<(i32, u64)>,
    },
    /// Start-up is done: start it if the definition says so.
    Boot,
    /// A waiting client went away.
    ClientGone(ClientId),
    /// Something it may depend on changed: start it if its gate is open.
    Wake,
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Start { .. } => "start",
            Event::Restart { .. } => "restart",
            Event::Stop { .. } => "stop",
            Event::Wait { .. } => "wait",
            Event::Spawned(_) => "spawned",
            Event::SpawnFailed(_) => "spawn-failed",
            Event::Execed { .. } => "execed",
            Event::ExecFailed(_) => "exec-failed",
            Event::Reinit { .. } => "reinit",
            Event::Ended { .. } => "ended",
            Event::Tick => "tick",
            Event::Kill { .. } => "kill",
            Event::Redefined { .. } => "redefined",
            Event::Undefined => "undefined",
            Event::Attached(_) => "attached",
            Event::Distrusted { .. } => "distrusted",
            Event::Boot => "boot",
            Event::ClientGone(_) => "client-gone",
            Event::Wake => "wake",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start a monitor; report [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn,
    /// Send a signal to the container's init.
    Signal(i32),
    /// SIGKILL to the monitor (the init dies with it): a start that hangs.
    KillMonitor,
    /// Write the persisted state (restart count, user stop).
    Persist,
    Answer(ClientId, Answer),
    Log(log::Level, String),
    /// The run's end is handled: keep its runtime record as history.
    Archive,
    /// Remove its runtime and last-run records (a daemon stop without live
    /// restore: the next daemon starts from the definitions).
    DropRecords,
    /// Remove its last-run record (found running with live restore off).
    DropLastRun,
    /// Remove its records and drop it.
    Forget,
}

/// What the transition needs to know of the definition in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Def {
    pub restart: RestartPolicy,
    pub autostart: bool,
    pub stop_signal: i32,
    pub grace: Duration,
    pub hash: u64,
}

/// Grace of a container with no definition.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The world as the transition sees it.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub name: &'a str,
    pub now: Instant,
    /// Nanoseconds since the epoch, for records.
    pub now_ns: u64,
    /// The definition, or why there is none valid (`None`: it is gone).
    pub def: Result<Def, Option<&'a str>>,
    pub live_restore: bool,
    pub shutting_down: bool,
    /// Whether what it depends on lets it start now.
    pub gate: Gate<'a>,
}

/// Whether the containers a container depends on let it start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate<'a> {
    Open,
    /// Not yet: `why` says what for ("waiting for db (healthy)"); `stuck`:
    /// a dependency is at rest, and nothing will start it.
    Wait {
        why: &'a str,
        stuck: bool,
    },
}

impl Ctx<'_> {
    fn def(&self) -> Option<&Def> {
        self.def.as_ref().ok()
    }

    fn grace(&self) -> Duration {
        self.def().map_or(DEFAULT_GRACE, |d| d.grace)
    }

    fn stop_signal(&self) -> i32 {
        self.def().map_or(libc::SIGTERM, |d| d.stop_signal)
    }
}

/// The last run's outcome, for `inspect`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Last {
    pub exit_code: Option<i32>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
    pub limits: LimitsHit,
}

/// Everything the daemon decides about one container.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    phase: Phase,
    last: Last,
    persist: ContainerState,
    /// Consecutive quick failures, for the back-off.
    quick_failures: u32,
    waiters: Vec<Waiter>,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle::new(ContainerState::default())
    }
}

impl Lifecycle {
    /// A container at rest, with what was persisted of it.
    pub fn new(mut persist: ContainerState) -> Lifecycle {
        // Records of an older format are upgraded on the next write.
        persist.version = FORMAT_VERSION;
        Lifecycle {
            phase: Phase::Idle(Rest::Created),
            last: Last::default(),
            persist,
            quick_failures: 0,
            waiters: Vec::new(),
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn last(&self) -> &Last {
        &self.last
    }

    pub fn persist(&self) -> &ContainerState {
        &self.persist
    }

    pub fn is_waiting(&self, client: ClientId) -> bool {
        self.waiters.iter().any(|w| w.client == client)
    }
}

/// The transition function: what `event` does to `state`.
pub fn on(state: Lifecycle, event: Event, ctx: &Ctx) -> (Lifecycle, Vec<Effect>) {
    let mut t = Transition {
        s: state,
        fx: Vec::new(),
        ctx,
    };
    t.handle(event);
    (t.s, t.fx)
}

struct Transition<'a, 'b> {
    s: Lifecycle,
    fx: Vec<Effect>,
    ctx: &'a Ctx<'b>,
}

impl Transition<'_, '_> {
    fn log(&mut self, level: log::Level, msg: String) {
        self.fx.push(Effect::Log(level, msg));
    }

    fn answer(&mut self, client: ClientId, answer: Answer) {
        self.fx.push(Effect::Answer(client, answer));
    }

    fn wait(&mut self, waiter: Waiter) {
        self.s.waiters.push(waiter);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Start { cause, waiter } => self.start(cause, waiter),
            Event::Restart { grace, waiter } => self.restart(grace, waiter),
            Event::Stop {
                reason,
                grace,
                then,
                client,
            } => self.stop(reason, grace, then, client),
            Event::Wait { client } => self.wait_for_exit(client),
            Event::Spawned(run) => self.spawned(run),
            Event::SpawnFailed(why) => self.spawn_failed(why),
            Event::Execed {
                init_pid,
                init_start,
                started_at,
                alive,
            } => self.execed(init_pid, init_start, started_at, alive),
            Event::ExecFailed(why) => self.exec_failed(why),
            Event::Reinit {
                init_pid,
                init_start,
                started_at,
                restarts,
            } => self.reinit(init_pid, init_start, started_at, restarts),
            Event::Ended { outcome, found } => self.ended(outcome, found),
            Event::Tick => self.tick(),
            Event::Kill { why } => self.kill(why),
            Event::Redefined { start } => self.redefined(start),
            Event::Undefined => self.undefined(),
            Event::Attached(run) => self.attached(run),
            Event::Distrusted { why, seen } => self.distrusted(why, seen),
            Event::Boot => self.boot(),
            Event::ClientGone(client) => self.s.waiters.retain(|w| w.client != client),
            Event::Wake => self.wake(),
        }
    }

    /// A start asked for by a user clears a user's stop and the restart
    /// count.
    fn user_started(&mut self) {
        let p = &mut self.s.persist;
        let changed = p.stopped_by_user || p.restart_count != 0;
        p.stopped_by_user = false;
        p.restart_count = 0;
        self.s.quick_failures = 0;
        if changed {
            self.fx.push(Effect::Persist);
        }
    }

    /// Why it cannot be started, if it cannot.
    fn refusal(&self) -> Option<String> {
        let name = self.ctx.name;
        match &self.s.phase {
            Phase::Untrusted { why, .. } => return Some(format!("{name}: {why}; not touching it")),
            Phase::Stopping {
                then: Then::Forget, ..
            }
            | Phase::Removed => {
                return Some(format!("{name} is being removed: its definition is gone"));
            }
            _ => {}
        }
        match self.ctx.def {
            Ok(_) => None,
            Err(Some(why)) => Some(why.to_string()),
            Err(None) => Some(format!("{name}: no definition")),
        }
    }

    fn start(&mut self, cause: Cause, waiter: Option<Waiter>) {
        if let Some(why) = self.refusal() {
            if let Some(w) = waiter {
                self.answer(w.client, Answer::Error(why));
            } else {
                self.log(log::Level::Error, format!("start failed: {why}"));
            }
            return;
        }
        if cause == Cause::User {
            self.user_started();
        }
        if let Gate::Wait { why, stuck } = self.ctx.gate {
            if matches!(
                self.s.phase,
                Phase::Idle(_) | Phase::BackingOff { .. } | Phase::Waiting { .. }
            ) {
                return self.hold(why, stuck, cause, waiter);
            }
        }
        match &mut self.s.phase {
            Phase::Idle(_) | Phase::BackingOff { .. } | Phase::Waiting { .. } => {
                // Asked twice in one transition (a stop's "then" and the
                // policy): still one monitor.
                if !self.fx.contains(&Effect::Spawn) {
                    self.fx.push(Effect::Spawn);
                }
                if let Some(w) = waiter {
                    self.wait(w);
                }
            }
            Phase::Starting { run, .. } if run.exec == Exec::Failed => {
                if let Some(w) = waiter {
                    let why = self.s.last.error.clone().unwrap_or_default();
                    let msg = format!("start {}: {why}", self.ctx.name);
                    self.answer(w.client, Answer::Error(msg));
                }
            }
            Phase::Starting { .. } => {
                if let Some(w) = waiter {
                    self.wait(w);
                }
            }
            Phase::Running { .. } => match waiter {
                Some(Waiter {
                    client,
                    kind: WaitKind::Started,
                }) => self.answer(client, Answer::Ok),
                Some(Waiter { client, .. }) => self.wait(Waiter {
                    client,
                    kind: WaitKind::Exit,
                }),
                None => {}
            },
            Phase::Stopping { then, .. } => {
                // Start again once the stop under way is done.
                *then = Then::Start;
                self.mark_stop();
                if let Some(w) = waiter {
                    self.wait(w);
                }
            }
            Phase::Untrusted { .. } | Phase::Removed => {}
        }
    }

    fn restart(&mut self, grace: Duration, waiter: Waiter) {
        if !self.s.phase.is_active() {
            return self.start(Cause::User, Some(waiter));
        }
        if let Some(why) = self.refusal() {
            return self.answer(waiter.client, Answer::Error(why));
        }
        self.user_started();
        self.stop(StopReason::Reconcile, grace, Then::Start, None);
        self.wait(waiter);
    }

    fn stop(&mut self, reason: StopReason, grace: Duration, then: Then, client: Option<ClientId>) {
        if let (Phase::Untrusted { why, .. }, Some(c)) = (&self.s.phase, client) {
            // Nothing here can be verified to be the container: say so
            // rather than pretend it was stopped.
            let msg = format!(
                "{name}: {why}; berth does not signal a process it cannot verify. \
                 Stop the container's processes by hand if they still run, remove the record, \
                 then restart the daemon",
                name = self.ctx.name
            );
            return self.answer(c, Answer::Error(msg));
        }
        if reason == StopReason::User && !self.s.persist.stopped_by_user {
            self.s.persist.stopped_by_user = true;
            if !self.s.phase.is_active() {
                self.fx.push(Effect::Persist);
            }
        }
        let phase = std::mem::replace(&mut self.s.phase, Phase::Removed);
        let (run, shown, previous) = match phase {
            Phase::Starting { run, shown } => (run, shown, None),
            Phase::Running { run } => (run, Status::Running, None),
            Phase::Stopping {
                run,
                reason,
                kill_at,
                then,
                shown,
            } => (run, shown, Some((reason, kill_at, then))),
            rest => {
                // No run to stop: a restart that will not come, and whoever
                // waits for an exit has seen the last one.
                if matches!(rest, Phase::Waiting { .. }) {
                    let msg = format!("{} was stopped before it could start", self.ctx.name);
                    self.fail_start_waiters(&msg);
                }
                self.s.phase = match rest {
                    Phase::BackingOff { .. }
                    | Phase::Waiting { .. }
                    | Phase::Idle(Rest::Exited | Rest::Failed)
                        if reason == StopReason::User =>
                    {
                        Phase::Idle(Rest::StoppedByUser)
                    }
                    Phase::BackingOff { .. } | Phase::Waiting { .. } => Phase::Idle(Rest::Stopped),
                    other => other,
                };
                let code = self.s.last.exit_code;
                self.answer_exit_waiters(code, None);
                if let Some(c) = client {
                    self.answer(c, Answer::Ok);
                }
                return;
            }
        };
        let deadline = Some(self.ctx.now + grace);
        let (reason, kill_at, then, already) = match previous {
            None => (reason, deadline, then, false),
            Some((old_reason, old_kill_at, old_then)) => {
                // A removal under way stays one when a user's stop comes
                // on top (a reload that brings the definition back may
                // still cancel it).
                let then = if old_then == Then::Forget && reason == StopReason::User {
                    Then::Forget
                } else {
                    then
                };
                if old_then == Then::Start && then != Then::Start {
                    let msg = format!("{} was stopped before it could start again", self.ctx.name);
                    self.fail_start_waiters(&msg);
                }
                if reason == StopReason::User {
                    (reason, deadline, then, true)
                } else {
                    (old_reason, old_kill_at, then, true)
                }
            }
        };
        let exec = run.exec;
        self.s.phase = Phase::Stopping {
            run,
            reason,
            kill_at,
            then,
            shown,
        };
        self.mark_stop();
        if let Some(c) = client {
            self.wait(Waiter {
                client: c,
                kind: WaitKind::Exit,
            });
        }
        if grace.is_zero() {
            self.kill("stop with no grace");
        } else if exec == Exec::Done && !already {
            self.fx.push(Effect::Signal(self.ctx.stop_signal()));
        }
        // Still starting: the stop signal goes out at the exec, SIGKILL at
        // the deadline either way.
    }

    /// Persists which run berth is stopping and what follows, before the
    /// signal goes out: a daemon that learns of the end only later (this
    /// one died meanwhile) then knows it was berth's doing.
    fn mark_stop(&mut self) {
        let Phase::Stopping { run, then, .. } = &self.s.phase else {
            return;
        };
        let after = match then {
            Then::Start => "start",
            Then::Autostart => "autostart",
            Then::Nothing | Then::Forget => "",
        };
        let p = &mut self.s.persist;
        p.stopped_run = run.run_id.clone();
        p.after_stop = after.to_string();
        if !self.fx.contains(&Effect::Persist) {
            self.fx.push(Effect::Persist);
        }
    }

    /// The stop berth had begun for `run`, as persisted (see `mark_stop`).
    fn marked_stop(&self, run: &RunFacts) -> Option<(StopReason, Then)> {
        let p = &self.s.persist;
        if run.run_id.is_empty() || p.stopped_run != run.run_id {
            return None;
        }
        let reason = if p.stopped_by_user {
            StopReason::User
        } else {
            StopReason::Reconcile
        };
        let then = match p.after_stop.as_str() {
            "start" => Then::Start,
            "autostart" => Then::Autostart,
            _ => Then::Nothing,
        };
        Some((reason, then))
    }

    fn wait_for_exit(&mut self, client: ClientId) {
        match self.s.phase {
            Phase::BackingOff { .. }
            | Phase::Waiting { .. }
            | Phase::Starting { .. }
            | Phase::Running { .. }
            | Phase::Stopping { .. } => self.wait(Waiter {
                client,
                kind: WaitKind::Exit,
            }),
            _ => {
                let code = self.s.last.exit_code;
                self.answer(client, Answer::Exit { code, error: None });
            }
        }
    }

    fn spawned(&mut self, run: RunFacts) {
        let shown = match &self.s.phase {
            Phase::Idle(_) | Phase::BackingOff { .. } | Phase::Waiting { .. } => {
                self.s.phase.status()
            }
            // Only a spawn this machine asked for is taken.
            _ => return,
        };
        let pid = run.monitor_pid;
        self.s.phase = Phase::Starting { run, shown };
        self.log(log::Level::Debug, format!("monitor {pid} started"));
    }

    fn spawn_failed(&mut self, why: String) {
        self.log(log::Level::Error, format!("start failed: {why}"));
        self.fail_start_waiters(&why);
        if matches!(
            self.s.phase,
            Phase::Idle(_) | Phase::BackingOff { .. } | Phase::Waiting { .. }
        ) {
            self.s.phase = Phase::Idle(Rest::Failed);
            self.s.last.error = Some(why);
            // No run is coming: whoever waits for an exit (a `wait` on a
            // restarting container) has seen the last one.
            let code = self.s.last.exit_code;
            self.answer_exit_waiters(code, None);
        }
    }

    fn execed(&mut self, init_pid: i32, init_start: u64, started_at: u64, alive: bool) {
        let stopping = matches!(self.s.phase, Phase::Stopping { .. });
        let Some(run) = self.s.phase.run_mut() else {
            return;
        };
        if run.exec != Exec::Pending {
            return;
        }
        run.init_pid = init_pid;
        run.init_start = init_start;
        run.started_at = started_at;
        run.exec = Exec::Done;
        if let Phase::Starting { run, .. } = &self.s.phase {
            self.s.phase = Phase::Running { run: run.clone() };
        }
        self.s.last = Last {
            started_at: Some(started_at),
            ..Last::default()
        };
        self.log(log::Level::Info, format!("started, pid {init_pid}"));
        if !alive {
            self.log(log::Level::Debug, format!("init {init_pid} already gone"));
        }
        self.answer_start_waiters();
        if stopping {
            // A stop came while it was starting: deliver it now.
            self.fx.push(Effect::Signal(self.ctx.stop_signal()));
        }
    }

    /// A new init of the same run: the signals go to it from now on. A
    /// stop under way is sent to it too.
    fn reinit(&mut self, init_pid: i32, init_start: u64, started_at: u64, restarts: u32) {
        let stopping = matches!(self.s.phase, Phase::Stopping { .. });
        let Some(run) = self.s.phase.run_mut() else {
            return;
        };
        if run.exec != Exec::Done || (run.init_pid, run.init_start) == (init_pid, init_start) {
            return;
        }
        let old = run.init_pid;
        run.init_pid = init_pid;
        run.init_start = init_start;
        run.started_at = started_at;
        // At least this one, whatever an older monitor wrote.
        run.health_restarts = restarts.max(run.health_restarts + 1);
        self.s.last.started_at = Some(started_at);
        self.log(
            log::Level::Warn,
            format!("unhealthy: its monitor restarted it, pid {old} -> {init_pid}"),
        );
        if stopping {
            self.fx.push(Effect::Signal(self.ctx.stop_signal()));
        }
    }

    fn exec_failed(&mut self, why: String) {
        let Some(run) = self.s.phase.run_mut() else {
            return;
        };
        if run.exec != Exec::Pending {
            return;
        }
        run.exec = Exec::Failed;
        self.s.last.error = Some(why.clone());
        self.log(log::Level::Error, format!("start failed: {why}"));
        self.fail_start_waiters(&why);
    }

    fn ended(&mut self, outcome: Result<Ending, String>, found: Option<(RunFacts, bool)>) {
        let phase = std::mem::replace(&mut self.s.phase, Phase::Removed);
        let found_at_start = found.is_some();
        if found_at_start && self.ctx.def == Err(None) && matches!(phase, Phase::Idle(_)) {
            // Only records are left of it: nothing to account for.
            self.s.phase = phase;
            return self.forget();
        }
        let (run, stop, seen) = match (phase, found) {
            (Phase::Starting { run, .. } | Phase::Running { run }, _) => (run, None, false),
            (
                Phase::Stopping {
                    run, reason, then, ..
                },
                _,
            ) => (run, Some((reason, then)), false),
            (Phase::Idle(rest), Some((run, seen))) => {
                self.s.phase = Phase::Idle(rest);
                let stop = self.marked_stop(&run);
                (run, stop, seen)
            }
            (other, _) => {
                // Not a run this machine knows of.
                self.s.phase = other;
                return;
            }
        };
        let (code, error, limits) = match &outcome {
            Ok(e) => (e.code, e.error.clone(), e.limits.clone()),
            Err(why) => (None, Some(why.clone()), LimitsHit::default()),
        };
        match &outcome {
            Ok(e) => {
                if e.started_at > 0 {
                    self.s.last.started_at = Some(e.started_at);
                }
                self.s.last.finished_at = Some(e.finished_at);
            }
            Err(_) => self.s.last.finished_at = Some(self.ctx.now_ns),
        }
        self.s.last.exit_code = code;
        self.s.last.error = error.clone();
        let health_restarts = outcome.as_ref().map_or(0, |e| e.health_restarts);
        if !seen && health_restarts > 0 {
            let p = &mut self.s.persist;
            p.restart_count = p.restart_count.saturating_add(health_restarts);
            self.fx.push(Effect::Persist);
        }
        let mut notes: Vec<String> = limits.cause.iter().cloned().collect();
        if limits.log_dropped > 0 {
            let n = limits.log_dropped;
            notes.push(format!("{n} bytes of its output could not be logged"));
        }
        self.s.last.limits = limits;
        let finished = self.s.last.finished_at.unwrap_or(0);
        let ran_for = Duration::from_nanos(finished.saturating_sub(run.started_at));
        let rest = match (stop.map(|s| s.0), &error) {
            (Some(StopReason::User), _) => Rest::StoppedByUser,
            (Some(_), _) => Rest::Stopped,
            (None, Some(_)) => Rest::Failed,
            (None, None) => Rest::Exited,
        };
        self.s.phase = Phase::Idle(rest);
        if !seen {
            let (level, mut msg) = match (code, &error) {
                (_, Some(e)) => (log::Level::Warn, format!("failed: {e}")),
                (Some(code), None) => (
                    log::Level::Info,
                    format!(
                        "exited with code {code} after {:.1}s",
                        ran_for.as_secs_f64()
                    ),
                ),
                (None, None) => (log::Level::Info, "exited".to_string()),
            };
            // What its limits or a full disk did: worth a warning.
            let level = if notes.is_empty() {
                level
            } else {
                msg = format!("{msg}: {}", notes.join("; "));
                log::Level::Warn
            };
            self.log(level, msg);
        }
        if run.exec != Exec::Done {
            // It never got as far as exec: whoever waits for the start
            // gets the reason.
            let why = error
                .clone()
                .unwrap_or_else(|| "the monitor exited before the container started".to_string());
            self.fail_start_waiters(&why);
        }
        self.answer_exit_waiters(code, error.filter(|_| code.is_none()));
        if self.ctx.shutting_down {
            self.fx.push(Effect::DropRecords);
            return;
        }
        self.fx.push(Effect::Archive);
        let then = stop.map(|s| s.1);
        match then {
            Some(Then::Forget) => self.forget(),
            Some(Then::Nothing) => {}
            Some(Then::Start) => self.start(Cause::Daemon, None),
            Some(Then::Autostart) => {
                self.fx.push(Effect::DropLastRun);
                let wanted = self.ctx.def().is_some_and(|d| {
                    d.autostart
                        || matches!(
                            d.restart,
                            RestartPolicy::Always | RestartPolicy::UnlessStopped
                        )
                });
                if wanted && !self.s.persist.stopped_by_user {
                    self.start(Cause::Daemon, None);
                }
            }
            None => self.apply_policy(code, ran_for),
        }
        let at_rest = matches!(self.s.phase, Phase::Idle(_)) && !self.fx.contains(&Effect::Spawn);
        if found_at_start && self.s.persist.stopped_by_user && at_rest {
            // Found at start-up after a user's stop. As in Docker,
            // "always" starts again with the daemon even then.
            let always = self
                .ctx
                .def()
                .is_some_and(|d| d.restart == RestartPolicy::Always && d.autostart);
            if always {
                self.start(Cause::Daemon, None);
            } else {
                self.s.phase = Phase::Idle(Rest::StoppedByUser);
            }
        }
    }

    /// Decides on a restart after an exit nobody asked for.
    fn apply_policy(&mut self, code: Option<i32>, ran_for: Duration) {
        let Some(def) = self.ctx.def().copied() else {
            return;
        };
        let ending = policy::Ending {
            code,
            stopped_by_user: self.s.persist.stopped_by_user,
            restart_count: self.s.persist.restart_count,
        };
        if !policy::should_restart(def.restart, ending) {
            return;
        }
        let (delay, consecutive) = policy::backoff(self.s.quick_failures, ran_for);
        self.s.quick_failures = consecutive;
        self.s.phase = Phase::BackingOff {
            until: self.ctx.now + delay,
        };
        let count = self.s.persist.restart_count + 1;
        self.log(
            log::Level::Info,
            format!("restarting in {} ms (restart {count})", delay.as_millis()),
        );
    }

    fn tick(&mut self) {
        let now = self.ctx.now;
        match &mut self.s.phase {
            Phase::Stopping { kill_at, .. } if kill_at.is_some_and(|t| now >= t) => {
                *kill_at = None;
                self.kill("stop timeout reached");
            }
            Phase::BackingOff { until } if now >= *until => {
                self.s.persist.restart_count += 1;
                self.fx.push(Effect::Persist);
                self.start(Cause::Daemon, None);
            }
            _ => {}
        }
    }

    fn kill(&mut self, why: &str) {
        match self.s.phase.run().map(|r| r.exec) {
            Some(Exec::Done) => {
                self.fx.push(Effect::Signal(libc::SIGKILL));
                self.log(log::Level::Warn, format!("{why}: sent SIGKILL"));
            }
            Some(Exec::Pending) => {
                // No pid to signal: the child may be stuck before exec (on
                // a FIFO in its rootfs, say). Its monitor's death kills it.
                self.fx.push(Effect::KillMonitor);
                self.log(
                    log::Level::Warn,
                    format!("{why}: not started yet, sent SIGKILL to its monitor"),
                );
            }
            Some(Exec::Failed) | None => {}
        }
    }

    fn redefined(&mut self, start: bool) {
        match self.s.phase {
            Phase::BackingOff { .. } => {
                self.s.phase = Phase::Idle(Rest::Stopped);
                let code = self.s.last.exit_code;
                self.answer_exit_waiters(code, None);
            }
            Phase::Idle(Rest::Failed) if !start => self.s.phase = Phase::Idle(Rest::Stopped),
            Phase::Waiting { .. } if !start => {
                let msg = format!("{} is no longer to be started", self.ctx.name);
                self.fail_start_waiters(&msg);
                self.s.phase = Phase::Idle(Rest::Stopped);
            }
            _ => {}
        }
        if start {
            self.start(Cause::Daemon, None);
        }
    }

    fn undefined(&mut self) {
        if self.ctx.def != Err(None) {
            return; // it has a definition (maybe an invalid one) after all
        }
        match self.s.phase {
            Phase::Idle(_)
            | Phase::BackingOff { .. }
            | Phase::Waiting { .. }
            | Phase::Untrusted { .. } => self.forget(),
            // Active: the caller stops it first, with `Then::Forget`.
            _ => {}
        }
    }

    fn forget(&mut self) {
        self.s.phase = Phase::Removed;
        let name = self.ctx.name;
        for w in std::mem::take(&mut self.s.waiters) {
            self.answer(w.client, Answer::Error(format!("{name} was removed")));
        }
        self.fx.push(Effect::Forget);
    }

    fn attached(&mut self, run: RunFacts) {
        if !matches!(self.s.phase, Phase::Idle(_)) {
            return;
        }
        self.s.last.started_at = Some(run.started_at);
        let (pid, monitor, hash) = (run.init_pid, run.monitor_pid, run.hash);
        if run.exec == Exec::Done {
            self.s.phase = Phase::Running { run };
            self.log(
                log::Level::Info,
                format!("re-attached to running container, pid {pid} (monitor {monitor})"),
            );
        } else {
            // The previous daemon died while this one was starting.
            let shown = self.s.phase.status();
            self.s.phase = Phase::Starting { run, shown };
            self.log(
                log::Level::Info,
                format!("re-attached to a start under way (monitor {monitor})"),
            );
        }
        let grace = self.ctx.grace();
        match self.ctx.def {
            Err(None) => {
                self.log(
                    log::Level::Info,
                    "its definition is gone: stopping it".into(),
                );
                self.stop(StopReason::Reconcile, grace, Then::Forget, None);
            }
            Err(Some(_)) if !self.ctx.live_restore => {
                // Its definition is invalid, so it is not started again.
                self.log(
                    log::Level::Info,
                    "live restore is off and the previous daemon did not stop it: stopping it"
                        .into(),
                );
                self.stop(StopReason::Reconcile, grace, Then::Autostart, None);
            }
            Err(Some(_)) => {}
            Ok(def) if def.hash != hash => {
                self.log(
                    log::Level::Info,
                    "its definition changed while no daemon ran: recreating it".into(),
                );
                let then = if def.autostart && !self.s.persist.stopped_by_user {
                    Then::Start
                } else {
                    Then::Nothing
                };
                self.stop(StopReason::Reconcile, grace, then, None);
            }
            Ok(def) if self.s.persist.stopped_by_user && def.restart != RestartPolicy::Always => {
                // A user's stop was under way when the last daemon died.
                self.log(
                    log::Level::Info,
                    "finishing the stop a user asked for".into(),
                );
                self.stop(StopReason::User, grace, Then::Nothing, None);
            }
            Ok(_) if !self.ctx.live_restore => {
                self.log(
                    log::Level::Info,
                    "live restore is off and the previous daemon did not stop it: restarting it"
                        .into(),
                );
                self.stop(StopReason::Reconcile, grace, Then::Autostart, None);
            }
            Ok(_) => {}
        }
    }

    fn distrusted(&mut self, why: String, seen: Option<(i32, u64)>) {
        if !matches!(self.s.phase, Phase::Idle(_)) {
            return;
        }
        self.log(log::Level::Warn, why.clone());
        self.s.phase = Phase::Untrusted { why, seen };
    }

    /// A start that must wait for what it depends on (see [`Gate`]).
    fn hold(&mut self, why: &str, stuck: bool, cause: Cause, waiter: Option<Waiter>) {
        let name = self.ctx.name;
        if let (Some(w), true) = (waiter, stuck) {
            // Nothing would start the dependency: say so now rather than
            // leave the client waiting.
            let msg = format!("cannot start {name}: {why}; start it first");
            return self.answer(w.client, Answer::Error(msg));
        }
        if cause == Cause::User {
            self.user_started();
        }
        if let Some(w) = waiter {
            self.wait(w);
        }
        if stuck {
            // Who waited for the start hears why it is not coming.
            self.fail_start_waiters(why);
        }
        let changed = match &self.s.phase {
            Phase::Waiting { why: old, .. } => old != why,
            _ => true,
        };
        if changed {
            self.log(log::Level::Info, why.to_string());
        }
        let shown = self.s.phase.status();
        self.s.phase = Phase::Waiting {
            why: why.to_string(),
            shown,
        };
    }

    /// What it depends on may have changed: start it if it waits and its
    /// gate is open now.
    fn wake(&mut self) {
        if matches!(self.s.phase, Phase::Waiting { .. }) {
            self.start(Cause::Daemon, None);
        }
    }

    fn boot(&mut self) {
        if let (Phase::Idle(Rest::Created | Rest::Stopped), Err(Some(_))) =
            (&self.s.phase, self.ctx.def)
        {
            // Its definition is invalid: that is a failure to show.
            self.s.phase = Phase::Idle(Rest::Failed);
            return;
        }
        // A user's stop holds across daemon restarts, except under
        // "always", which (as in Docker) starts again with the daemon.
        let wanted = self.ctx.def().is_some_and(|d| {
            d.autostart && (!self.s.persist.stopped_by_user || d.restart == RestartPolicy::Always)
        });
        if matches!(self.s.phase, Phase::Idle(Rest::Created | Rest::Stopped)) && wanted {
            self.start(Cause::Daemon, None);
        }
    }

    /// The start succeeded: answer who waited for it.
    fn answer_start_waiters(&mut self) {
        let mut answered = Vec::new();
        self.s.waiters.retain_mut(|w| match w.kind {
            WaitKind::Started => {
                answered.push(w.client);
                false
            }
            WaitKind::StartedThenExit => {
                w.kind = WaitKind::Exit;
                true
            }
            WaitKind::Exit => true,
        });
        for client in answered {
            self.answer(client, Answer::Ok);
        }
    }

    /// The start failed: answer who waited for it, with the reason.
    fn fail_start_waiters(&mut self, why: &str) {
        let mut answered = Vec::new();
        self.s.waiters.retain(|w| {
            let waits_for_start = w.kind != WaitKind::Exit;
            if waits_for_start {
                answered.push(w.client);
            }
            !waits_for_start
        });
        let msg = format!("start {}: {why}", self.ctx.name);
        for client in answered {
            self.answer(client, Answer::Error(msg.clone()));
        }
    }

    /// The run ended with `code`: answer `wait`, `stop`, `start --wait`.
    fn answer_exit_waiters(&mut self, code: Option<i32>, error: Option<String>) {
        let mut answered = Vec::new();
        self.s.waiters.retain(|w| {
            let exit = w.kind == WaitKind::Exit;
            if exit {
                answered.push(w.client);
            }
            !exit
        });
        for client in answered {
            self.answer(
                client,
                Answer::Exit {
                    code,
                    error: error.clone(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const NAME: &str = "app";

    fn def(restart: RestartPolicy, autostart: bool) -> Def {
        Def {
            restart,
            autostart,
            stop_signal: libc::SIGTERM,
            grace: Duration::from_secs(10),
            hash: 7,
        }
    }

    fn ctx(now: Instant, def: Result<Def, Option<&'static str>>) -> Ctx<'static> {
        Ctx {
            name: NAME,
            now,
            now_ns: 5_000_000_000,
            def,
            live_restore: true,
            shutting_down: false,
            gate: Gate::Open,
        }
    }

    fn run(exec: Exec) -> RunFacts {
        RunFacts {
            run_id: "r1".into(),
            monitor_pid: 100,
            monitor_start: 1,
            init_pid: if exec == Exec::Done { 101 } else { 0 },
            init_start: if exec == Exec::Done { 2 } else { 0 },
            started_at: 1_000_000_000,
            hash: 7,
            options: StartOptions::default(),
            exec,
            health_restarts: 0,
            stop_notice: true,
        }
    }

    fn with(phase: Phase) -> Lifecycle {
        Lifecycle {
            phase,
            ..Lifecycle::default()
        }
    }

    fn waiter(n: usize, kind: WaitKind) -> Waiter {
        Waiter {
            client: ClientId(n),
            kind,
        }
    }

    fn ended(code: Option<i32>) -> Event {
        Event::Ended {
            outcome: Ok(Ending {
                code,
                limits: LimitsHit::default(),
                error: None,
                started_at: 1_000_000_000,
                finished_at: 2_000_000_000,
                health_restarts: 0,
            }),
            found: None,
        }
    }

    fn step(s: Lifecycle, e: Event, c: &Ctx) -> (Lifecycle, Vec<Effect>) {
        on(s, e, c)
    }

    fn answers(fx: &[Effect]) -> Vec<(ClientId, Answer)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Answer(c, a) => Some((*c, a.clone())),
                _ => None,
            })
            .collect()
    }

    /// Representative phases of every kind, relative to `now`.
    fn phases(now: Instant) -> Vec<Phase> {
        let past = now - Duration::from_secs(1);
        let future = now + Duration::from_secs(60);
        let mut v = vec![
            Phase::Idle(Rest::Created),
            Phase::Idle(Rest::Stopped),
            Phase::Idle(Rest::StoppedByUser),
            Phase::Idle(Rest::Exited),
            Phase::Idle(Rest::Failed),
            Phase::BackingOff { until: past },
            Phase::BackingOff { until: future },
            Phase::Starting {
                run: run(Exec::Pending),
                shown: Status::Exited,
            },
            Phase::Starting {
                run: run(Exec::Failed),
                shown: Status::Stopped,
            },
            Phase::Running {
                run: run(Exec::Done),
            },
            Phase::Untrusted {
                why: "torn".into(),
                seen: None,
            },
            Phase::Removed,
            Phase::Waiting {
                why: "waiting for db (running)".into(),
                shown: Status::Stopped,
            },
        ];
        for exec in [Exec::Pending, Exec::Failed, Exec::Done] {
            for reason in [
                StopReason::User,
                StopReason::Shutdown,
                StopReason::Reconcile,
            ] {
                for then in [Then::Nothing, Then::Start, Then::Autostart, Then::Forget] {
                    for kill_at in [None, Some(past), Some(future)] {
                        v.push(Phase::Stopping {
                            run: run(exec),
                            reason,
                            kill_at,
                            then,
                            shown: Status::Exited,
                        });
                    }
                }
            }
        }
        v
    }

    fn events() -> Vec<Event> {
        let mut v = Vec::new();
        for cause in [Cause::User, Cause::Daemon] {
            v.push(Event::Start {
                cause,
                waiter: Some(waiter(1, WaitKind::Started)),
            });
            v.push(Event::Start {
                cause,
                waiter: None,
            });
        }
        v.push(Event::Restart {
            grace: Duration::from_secs(5),
            waiter: waiter(2, WaitKind::Started),
        });
        for reason in [
            StopReason::User,
            StopReason::Shutdown,
            StopReason::Reconcile,
        ] {
            for then in [Then::Nothing, Then::Start, Then::Autostart, Then::Forget] {
                for grace in [Duration::ZERO, Duration::from_secs(3)] {
                    v.push(Event::Stop {
                        reason,
                        grace,
                        then,
                        client: Some(ClientId(3)),
                    });
                }
            }
        }
        v.push(Event::Wait {
            client: ClientId(4),
        });
        v.push(Event::Spawned(run(Exec::Pending)));
        v.push(Event::SpawnFailed("no rootfs".into()));
        for alive in [true, false] {
            v.push(Event::Execed {
                init_pid: 101,
                init_start: 2,
                started_at: 1_500_000_000,
                alive,
            });
        }
        v.push(Event::ExecFailed(
            "exec /bin/nope: No such file or directory".into(),
        ));
        v.push(Event::Reinit {
            init_pid: 202,
            init_start: 3,
            started_at: 1_700_000_000,
            restarts: 1,
        });
        for code in [Some(0), Some(1), Some(143), None] {
            v.push(ended(code));
        }
        v.push(Event::Ended {
            outcome: Err("monitor gone".into()),
            found: None,
        });
        for seen in [false, true] {
            v.push(Event::Ended {
                outcome: Ok(Ending {
                    code: Some(3),
                    error: None,
                    limits: LimitsHit::default(),
                    started_at: 1,
                    finished_at: 2,
                    health_restarts: 0,
                }),
                found: Some((run(Exec::Done), seen)),
            });
        }
        v.push(Event::Tick);
        v.push(Event::Kill { why: "shutdown" });
        v.push(Event::Redefined { start: true });
        v.push(Event::Redefined { start: false });
        v.push(Event::Undefined);
        v.push(Event::Attached(run(Exec::Done)));
        v.push(Event::Attached(run(Exec::Pending)));
        v.push(Event::Distrusted {
            why: "format 99".into(),
            seen: None,
        });
        v.push(Event::Boot);
        v.push(Event::ClientGone(ClientId(1)));
        v.push(Event::Wake);
        v
    }

    fn contexts(now: Instant) -> Vec<Ctx<'static>> {
        let mut v = Vec::new();
        let defs = [
            Ok(def(RestartPolicy::No, true)),
            Ok(def(RestartPolicy::No, false)),
            Ok(def(RestartPolicy::Always, true)),
            Ok(def(RestartPolicy::OnFailure { max: Some(1) }, false)),
            Ok(Def {
                hash: 8,
                ..def(RestartPolicy::UnlessStopped, true)
            }),
            Err(None),
            Err(Some("app.json: field \"command\": missing")),
        ];
        let gates = [
            Gate::Open,
            Gate::Wait {
                why: "waiting for db (running)",
                stuck: false,
            },
            Gate::Wait {
                why: "waiting for db (running): db is stopped",
                stuck: true,
            },
        ];
        for d in defs {
            for (live_restore, shutting_down) in [(true, false), (false, false), (true, true)] {
                for gate in gates {
                    v.push(Ctx {
                        live_restore,
                        shutting_down,
                        gate,
                        ..ctx(now, d)
                    });
                }
            }
        }
        v
    }

    /// Every transition between kinds, as `on` makes them.
    fn derived_edges() -> BTreeSet<(String, String, String)> {
        let now = Instant::now();
        let mut edges = BTreeSet::new();
        for phase in phases(now) {
            for stopped_by_user in [false, true] {
                for c in contexts(now) {
                    for e in events() {
                        let mut s = with(phase.clone());
                        s.persist.stopped_by_user = stopped_by_user;
                        let from = s.phase.kind();
                        let kind = e.kind();
                        let (s, _) = step(s, e, &c);
                        edges.insert((
                            from.as_str().to_string(),
                            kind.to_string(),
                            s.phase.kind().as_str().to_string(),
                        ));
                    }
                }
            }
        }
        edges
    }

    /// The transitions the module doc draws.
    fn documented_edges() -> BTreeSet<(String, String, String)> {
        let src = include_str!("lifecycle.rs");
        let start = src.find("//! ```text").expect("diagram start");
        let end = start + src[start..].find("//! ```\n").expect("diagram end");
        src[start..end]
            .lines()
            .skip(1)
            .filter_map(|l| {
                let l = l.trim_start_matches("//!").trim();
                let mut words = l.split_whitespace();
                let from = words.next()?;
                let event = words.next()?.strip_prefix("--")?.strip_suffix("-->")?;
                let to = words.next()?;
                Some((from.to_string(), event.to_string(), to.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_diagram_is_the_transition_function() {
        let derived = derived_edges();
        let documented = documented_edges();
        assert!(documented.len() > 20, "diagram not read: {documented:?}");
        let moves = |set: &BTreeSet<(String, String, String)>| -> BTreeSet<_> {
            set.iter().filter(|(a, _, b)| a != b).cloned().collect()
        };
        let missing: Vec<_> = moves(&derived).difference(&documented).cloned().collect();
        let extra: Vec<_> = moves(&documented).difference(&derived).cloned().collect();
        assert!(
            missing.is_empty(),
            "transitions missing from the diagram: {missing:#?}"
        );
        assert!(
            extra.is_empty(),
            "the diagram draws transitions `on` never makes: {extra:#?}"
        );
        // Self-loops drawn for what they do must happen too.
        for edge in documented.iter().filter(|(a, _, b)| a == b) {
            assert!(derived.contains(edge), "drawn but never made: {edge:?}");
        }
    }

    #[test]
    fn every_phase_against_every_event_keeps_the_invariants() {
        let now = Instant::now();
        let mut persisted = vec![ContainerState::default()];
        for (user, after) in [(false, ""), (true, ""), (false, "start"), (true, "start")] {
            persisted.push(ContainerState {
                stopped_by_user: user,
                stopped_run: run(Exec::Done).run_id,
                after_stop: after.to_string(),
                ..ContainerState::default()
            });
        }
        persisted.push(ContainerState {
            stopped_run: run(Exec::Done).run_id,
            after_stop: "autostart".to_string(),
            ..ContainerState::default()
        });
        for (phase, persist) in phases(now)
            .into_iter()
            .flat_map(|p| persisted.iter().map(move |s| (p.clone(), s.clone())))
        {
            for c in contexts(now) {
                for e in events() {
                    let what = format!("{phase:?} ({persist:?}) + {e:?}");
                    let from = Lifecycle {
                        phase: phase.clone(),
                        persist: persist.clone(),
                        ..Lifecycle::default()
                    };
                    let (s, fx) = step(from, e.clone(), &c);
                    // At most one monitor per transition.
                    let spawns = fx.iter().filter(|f| **f == Effect::Spawn).count();
                    assert!(spawns <= 1, "{what}: {spawns} spawns");
                    // "running" always has a pid.
                    if s.phase.status() == Status::Running {
                        let run = s.phase.run().expect("running has a run");
                        assert!(run.init_pid > 0, "{what}");
                    }
                    // A monitor is spawned only from rest.
                    if fx.contains(&Effect::Spawn) {
                        assert!(
                            matches!(
                                s.phase,
                                Phase::Idle(_) | Phase::BackingOff { .. } | Phase::Waiting { .. }
                            ),
                            "{what} -> {:?}",
                            s.phase
                        );
                        assert!(c.def.is_ok(), "{what}: spawn without a definition");
                    }
                    // Forget only once no run remains.
                    if fx.contains(&Effect::Forget) {
                        assert_eq!(s.phase, Phase::Removed, "{what}");
                    }
                    if s.phase == Phase::Removed && phase != Phase::Removed {
                        assert!(fx.contains(&Effect::Forget), "{what}");
                    }
                    // Untrusted containers are never acted on.
                    if matches!(phase, Phase::Untrusted { .. }) {
                        assert!(
                            !fx.iter().any(|f| matches!(
                                f,
                                Effect::Spawn | Effect::Signal(_) | Effect::KillMonitor
                            )),
                            "{what}"
                        );
                    }
                    // Every request is answered or waits.
                    for client in [1, 2, 3, 4] {
                        let id = ClientId(client);
                        let asked = match &e {
                            Event::Start {
                                waiter: Some(w), ..
                            } => w.client == id,
                            Event::Restart { waiter, .. } => waiter.client == id,
                            Event::Stop {
                                client: Some(c), ..
                            } => *c == id,
                            Event::Wait { client } => *client == id,
                            _ => false,
                        };
                        let answered = answers(&fx).iter().any(|(c, _)| *c == id);
                        if asked {
                            assert!(
                                answered || s.is_waiting(id) || s.phase == Phase::Removed,
                                "{what}: client {client} left hanging"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_start_spawns_and_answers_at_the_exec() {
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::No, true)));
        let start = Event::Start {
            cause: Cause::User,
            waiter: Some(waiter(1, WaitKind::Started)),
        };
        let (s, fx) = step(Lifecycle::default(), start, &c);
        assert_eq!(fx, [Effect::Spawn]);
        assert_eq!(s.phase.status(), Status::Created, "no pid yet: not running");
        let (s, _) = step(s, Event::Spawned(run(Exec::Pending)), &c);
        assert_eq!(s.phase.kind(), Kind::Starting);
        let execed = Event::Execed {
            init_pid: 101,
            init_start: 2,
            started_at: 3,
            alive: true,
        };
        let (s, fx) = step(s, execed, &c);
        assert_eq!(s.phase.status(), Status::Running);
        assert_eq!(answers(&fx), [(ClientId(1), Answer::Ok)]);
        assert_eq!(s.last.started_at, Some(3));
    }

    #[test]
    fn a_failed_exec_answers_with_the_step_and_shows_failed() {
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::No, true)));
        let mut s = with(Phase::Starting {
            run: run(Exec::Pending),
            shown: Status::Stopped,
        });
        s.waiters.push(waiter(1, WaitKind::StartedThenExit));
        let (s, fx) = step(
            s,
            Event::ExecFailed("exec /bin/nope: No such file".into()),
            &c,
        );
        assert_eq!(
            answers(&fx),
            [(
                ClientId(1),
                Answer::Error("start app: exec /bin/nope: No such file".into())
            )]
        );
        assert_eq!(s.phase.status(), Status::Failed);
        // The monitor then ends; nothing restarts under "no".
        let (s, fx) = step(s, ended(None), &c);
        assert_eq!(s.phase, Phase::Idle(Rest::Exited));
        assert!(!fx.contains(&Effect::Spawn));
    }

    #[test]
    fn a_monitor_that_dies_before_its_report_fails_the_start() {
        // The crash window between spawn and exec: the monitor is gone
        // before it said anything.
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::OnFailure { max: None }, true)));
        let mut s = with(Phase::Starting {
            run: run(Exec::Pending),
            shown: Status::Stopped,
        });
        s.waiters.push(waiter(1, WaitKind::Started));
        s.waiters.push(waiter(2, WaitKind::Exit));
        let gone = Event::Ended {
            outcome: Err("monitor (pid 100) ended without an exit record".into()),
            found: None,
        };
        let (s, fx) = step(s, gone, &c);
        let a = answers(&fx);
        assert!(
            matches!(&a[0], (ClientId(1), Answer::Error(e)) if e.contains("without an exit record"))
        );
        assert!(matches!(
            &a[1],
            (
                ClientId(2),
                Answer::Exit {
                    code: None,
                    error: Some(_)
                }
            )
        ));
        assert_eq!(s.phase.kind(), Kind::BackingOff, "on-failure restarts it");
        assert_eq!(s.waiters, []);
    }

    #[test]
    fn a_reload_stop_is_never_a_failure_for_the_policy() {
        let now = Instant::now();
        for policy in [
            RestartPolicy::Always,
            RestartPolicy::UnlessStopped,
            RestartPolicy::OnFailure { max: None },
        ] {
            let c = ctx(now, Ok(def(policy, false)));
            let s = with(Phase::Running {
                run: run(Exec::Done),
            });
            let stop = Event::Stop {
                reason: StopReason::Reconcile,
                grace: Duration::from_secs(10),
                then: Then::Nothing,
                client: None,
            };
            let (s, fx) = step(s, stop, &c);
            // Which run berth is stopping is on disk before the signal.
            assert_eq!(fx, [Effect::Persist, Effect::Signal(libc::SIGTERM)]);
            assert_eq!(s.persist.stopped_run, run(Exec::Done).run_id);
            let found = s.clone();
            let (s, fx) = step(s, ended(Some(143)), &c);
            assert_eq!(s.phase, Phase::Idle(Rest::Stopped), "{policy:?}");
            assert!(!fx.contains(&Effect::Spawn), "{policy:?}");
            // The same end, learnt by the next daemon from the records.
            let mut restored = Lifecycle::new(found.persist.clone());
            restored.last = found.last.clone();
            let end = Event::Ended {
                outcome: Ok(Ending {
                    code: Some(137),
                    error: None,
                    started_at: 1,
                    finished_at: 2,
                    limits: LimitsHit::default(),
                    health_restarts: 0,
                }),
                found: Some((run(Exec::Done), false)),
            };
            let (s, fx) = step(restored, end, &c);
            assert_eq!(s.phase, Phase::Idle(Rest::Stopped), "{policy:?}");
            assert!(!fx.contains(&Effect::Spawn), "{policy:?}");
        }
    }

    #[test]
    fn a_stop_while_starting_is_delivered_at_the_exec_and_killed_at_the_deadline() {
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::No, true)));
        let s = with(Phase::Starting {
            run: run(Exec::Pending),
            shown: Status::Stopped,
        });
        let stop = Event::Stop {
            reason: StopReason::User,
            grace: Duration::from_secs(2),
            then: Then::Nothing,
            client: Some(ClientId(3)),
        };
        let (s, fx) = step(s, stop, &c);
        assert_eq!(fx, [Effect::Persist], "no pid to signal yet");
        assert!(s.persist.stopped_by_user);
        let execed = Event::Execed {
            init_pid: 101,
            init_start: 2,
            started_at: 3,
            alive: true,
        };
        let (s, fx) = step(s.clone(), execed, &c);
        assert!(fx.contains(&Effect::Signal(libc::SIGTERM)), "{fx:?}");
        // Had the exec never come, the deadline kills the monitor.
        let late = ctx(now + Duration::from_secs(3), c.def);
        let pending = with(Phase::Stopping {
            run: run(Exec::Pending),
            reason: StopReason::User,
            kill_at: Some(now + Duration::from_secs(2)),
            then: Then::Nothing,
            shown: Status::Exited,
        });
        let (_, fx) = step(pending, Event::Tick, &late);
        assert!(fx.contains(&Effect::KillMonitor), "{fx:?}");
        // And the running one gets SIGKILL.
        let (_, fx) = step(s, Event::Tick, &late);
        assert!(fx.contains(&Effect::Signal(libc::SIGKILL)), "{fx:?}");
    }

    #[test]
    fn a_start_during_a_stop_starts_again_after_it() {
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::No, true)));
        let s = with(Phase::Stopping {
            run: run(Exec::Done),
            reason: StopReason::User,
            kill_at: Some(now + Duration::from_secs(10)),
            then: Then::Nothing,
            shown: Status::Exited,
        });
        let start = Event::Start {
            cause: Cause::User,
            waiter: Some(waiter(1, WaitKind::Started)),
        };
        let (s, fx) = step(s, start, &c);
        assert!(answers(&fx).is_empty(), "answered at the new exec");
        let (s, fx) = step(s, ended(Some(143)), &c);
        assert!(fx.contains(&Effect::Spawn), "{fx:?}");
        assert!(s.is_waiting(ClientId(1)));
        // A user's stop on top cancels the start, and says so.
        let mut s2 = with(Phase::Stopping {
            run: run(Exec::Done),
            reason: StopReason::Reconcile,
            kill_at: Some(now + Duration::from_secs(10)),
            then: Then::Start,
            shown: Status::Exited,
        });
        s2.waiters.push(waiter(1, WaitKind::Started));
        let stop = Event::Stop {
            reason: StopReason::User,
            grace: Duration::from_secs(10),
            then: Then::Nothing,
            client: Some(ClientId(2)),
        };
        let (_, fx) = step(s2, stop, &c);
        assert!(
            matches!(&answers(&fx)[0], (ClientId(1), Answer::Error(e)) if e.contains("stopped before it could start again"))
        );
    }

    #[test]
    fn an_end_at_a_limit_is_an_exit_with_its_cause_kept_and_logged() {
        let c = ctx(Instant::now(), Ok(def(RestartPolicy::No, true)));
        let s = with(Phase::Running {
            run: run(Exec::Done),
        });
        let limits = LimitsHit {
            oom_killed: true,
            cause: Some("out of memory (memory limit 8 MiB)".into()),
            log_dropped: 5,
        };
        let event = Event::Ended {
            outcome: Ok(Ending {
                code: Some(137),
                error: None,
                started_at: 1_000_000_000,
                finished_at: 2_000_000_000,
                limits: limits.clone(),
                health_restarts: 0,
            }),
            found: None,
        };
        let (s, fx) = step(s, event, &c);
        // Killed by the kernel, not failed to start: it exited.
        assert_eq!(s.phase, Phase::Idle(Rest::Exited));
        assert_eq!(s.last.exit_code, Some(137));
        assert_eq!(s.last.error, None);
        assert_eq!(s.last.limits, limits);
        assert!(
            fx.contains(&Effect::Log(
                log::Level::Warn,
                "exited with code 137 after 1.0s: out of memory (memory limit 8 MiB); \
             5 bytes of its output could not be logged"
                    .into()
            ))
        );
        // The next run starts with a clean slate.
        let s = Lifecycle {
            phase: Phase::Starting {
                run: run(Exec::Pending),
                shown: Status::Exited,
            },
            ..s
        };
        let execed = Event::Execed {
            init_pid: 101,
            init_start: 2,
            started_at: 3,
            alive: true,
        };
        let (s, _) = step(s, execed, &c);
        assert_eq!(s.last.limits, LimitsHit::default());
    }

    #[test]
    fn policies_and_back_off() {
        let now = Instant::now();
        let c = ctx(
            now,
            Ok(def(RestartPolicy::OnFailure { max: Some(1) }, true)),
        );
        let s = with(Phase::Running {
            run: run(Exec::Done),
        });
        let (s, fx) = step(s, ended(Some(1)), &c);
        let Phase::BackingOff { until } = s.phase else {
            panic!("{:?}", s.phase)
        };
        assert_eq!(until, now + policy::BACKOFF_START);
        assert!(
            fx.iter()
                .any(|f| matches!(f, Effect::Log(_, m) if m.contains("restart 1")))
        );
        // Not due yet: nothing; due: the count goes up and a spawn is asked.
        let (s, fx) = step(s, Event::Tick, &c);
        assert!(fx.is_empty());
        let due = ctx(until, c.def);
        let (s, fx) = step(s, Event::Tick, &due);
        assert_eq!(fx, [Effect::Persist, Effect::Spawn]);
        assert_eq!(s.persist.restart_count, 1);
        // The second failure is past the maximum.
        let (s, _) = step(s, Event::Spawned(run(Exec::Pending)), &due);
        let (s, _) = step(s, ended(Some(1)), &due);
        assert_eq!(s.phase, Phase::Idle(Rest::Exited));
        // A clean exit is not a failure.
        let s = with(Phase::Running {
            run: run(Exec::Done),
        });
        let (s, _) = step(s, ended(Some(0)), &c);
        assert_eq!(s.phase, Phase::Idle(Rest::Exited));
    }

    #[test]
    fn a_user_stop_holds_and_a_user_start_clears_it() {
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::UnlessStopped, true)));
        let s = with(Phase::BackingOff {
            until: now + Duration::from_secs(1),
        });
        let stop = Event::Stop {
            reason: StopReason::User,
            grace: Duration::from_secs(10),
            then: Then::Nothing,
            client: Some(ClientId(3)),
        };
        let (s, fx) = step(s, stop, &c);
        assert_eq!(s.phase, Phase::Idle(Rest::StoppedByUser));
        assert!(fx.contains(&Effect::Persist));
        assert!(answers(&fx).contains(&(ClientId(3), Answer::Ok)));
        // Boot does not start it again; a user's start does.
        let (s, fx) = step(s, Event::Boot, &c);
        assert!(fx.is_empty());
        let start = Event::Start {
            cause: Cause::User,
            waiter: None,
        };
        let (s, fx) = step(s, start, &c);
        assert_eq!(fx, [Effect::Persist, Effect::Spawn]);
        assert!(!s.persist.stopped_by_user);
    }

    #[test]
    fn untrusted_records_are_left_alone() {
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::Always, true)));
        let s = with(Phase::Untrusted {
            why: "runtime record is in format 99".into(),
            seen: Some((5, 6)),
        });
        let start = Event::Start {
            cause: Cause::User,
            waiter: Some(waiter(1, WaitKind::Started)),
        };
        let (s, fx) = step(s, start, &c);
        assert!(
            matches!(&answers(&fx)[0], (_, Answer::Error(e)) if e.contains("format 99; not touching it"))
        );
        let stop = Event::Stop {
            reason: StopReason::User,
            grace: Duration::from_secs(1),
            then: Then::Nothing,
            client: Some(ClientId(2)),
        };
        let (s, fx) = step(s, stop, &c);
        assert!(
            matches!(&answers(&fx)[..], [(ClientId(2), Answer::Error(e))] if e.contains("format 99; berth does not signal")),
            "{fx:?}"
        );
        assert!(!fx.contains(&Effect::Persist), "{fx:?}");
        assert_eq!(s.phase.kind(), Kind::Untrusted);
    }

    #[test]
    fn restore_decides_per_record() {
        let now = Instant::now();
        // Definition gone: stopped, then forgotten.
        let c = ctx(now, Err(None));
        let (s, fx) = step(Lifecycle::default(), Event::Attached(run(Exec::Done)), &c);
        assert_eq!(s.phase.kind(), Kind::Stopping);
        assert!(fx.contains(&Effect::Signal(libc::SIGTERM)));
        let (s, fx) = step(s, ended(Some(143)), &c);
        assert_eq!(s.phase, Phase::Removed);
        assert!(fx.contains(&Effect::Forget));
        // Definition changed: recreated.
        let changed = ctx(
            now,
            Ok(Def {
                hash: 9,
                ..def(RestartPolicy::No, true)
            }),
        );
        let (s, _) = step(
            Lifecycle::default(),
            Event::Attached(run(Exec::Done)),
            &changed,
        );
        let (_, fx) = step(s, ended(Some(143)), &changed);
        assert!(fx.contains(&Effect::Spawn));
        // Live restore off: stopped and started again.
        let off = Ctx {
            live_restore: false,
            ..ctx(now, Ok(def(RestartPolicy::No, true)))
        };
        let (s, _) = step(Lifecycle::default(), Event::Attached(run(Exec::Done)), &off);
        let (_, fx) = step(s, ended(Some(143)), &off);
        assert!(fx.contains(&Effect::DropLastRun) && fx.contains(&Effect::Spawn));
        // Same definition, live restore on: left running.
        let on_ = ctx(now, Ok(def(RestartPolicy::No, true)));
        let (s, fx) = step(Lifecycle::default(), Event::Attached(run(Exec::Done)), &on_);
        assert_eq!(s.phase.status(), Status::Running);
        assert!(!fx.iter().any(|f| matches!(f, Effect::Signal(_))));
    }

    #[test]
    fn an_exit_found_at_start_up_after_a_user_stop() {
        let now = Instant::now();
        let found = Event::Ended {
            outcome: Ok(Ending {
                code: Some(143),
                error: None,
                limits: LimitsHit::default(),
                started_at: 1,
                finished_at: 2,
                health_restarts: 0,
            }),
            found: Some((run(Exec::Done), false)),
        };
        for (policy, restarts) in [
            (RestartPolicy::Always, true),
            (RestartPolicy::UnlessStopped, false),
        ] {
            let c = ctx(now, Ok(def(policy, true)));
            let mut s = Lifecycle::default();
            s.persist.stopped_by_user = true;
            let (s, fx) = step(s, found.clone(), &c);
            assert_eq!(fx.contains(&Effect::Spawn), restarts, "{policy:?}");
            if !restarts {
                assert_eq!(s.phase, Phase::Idle(Rest::StoppedByUser));
            }
        }
    }

    #[test]
    fn shutdown_drops_the_records_and_starts_nothing() {
        let now = Instant::now();
        let c = Ctx {
            shutting_down: true,
            ..ctx(now, Ok(def(RestartPolicy::Always, true)))
        };
        let s = with(Phase::Stopping {
            run: run(Exec::Done),
            reason: StopReason::Shutdown,
            kill_at: None,
            then: Then::Nothing,
            shown: Status::Exited,
        });
        let (s, fx) = step(s, ended(Some(143)), &c);
        assert!(fx.contains(&Effect::DropRecords));
        assert!(!fx.contains(&Effect::Spawn) && !fx.contains(&Effect::Archive));
        assert_eq!(s.phase, Phase::Idle(Rest::Stopped));
    }

    #[test]
    fn removal_answers_whoever_waits() {
        let now = Instant::now();
        let c = ctx(now, Err(None));
        let mut s = with(Phase::Stopping {
            run: run(Exec::Done),
            reason: StopReason::Reconcile,
            kill_at: None,
            then: Then::Forget,
            shown: Status::Exited,
        });
        s.waiters.push(waiter(4, WaitKind::Exit));
        let start = Event::Start {
            cause: Cause::User,
            waiter: Some(waiter(1, WaitKind::Started)),
        };
        let (s, fx) = step(s, start, &c);
        assert!(
            matches!(&answers(&fx)[0], (ClientId(1), Answer::Error(e)) if e.contains("being removed"))
        );
        let (s, fx) = step(s, ended(Some(143)), &c);
        assert_eq!(s.phase, Phase::Removed);
        assert!(answers(&fx).contains(&(
            ClientId(4),
            Answer::Exit {
                code: Some(143),
                error: None
            }
        )));
    }

    #[test]
    fn found_running_with_an_invalid_definition_and_live_restore_off_is_stopped() {
        let now = Instant::now();
        let c = Ctx {
            live_restore: false,
            ..ctx(now, Err(Some("app.json: field \"command\": missing")))
        };
        let (s, fx) = step(Lifecycle::default(), Event::Attached(run(Exec::Done)), &c);
        assert_eq!(s.phase.kind(), Kind::Stopping);
        assert!(fx.contains(&Effect::Signal(libc::SIGTERM)), "{fx:?}");
        let (s, fx) = step(s, ended(Some(143)), &c);
        assert!(
            !fx.contains(&Effect::Spawn),
            "an invalid definition is not started"
        );
        assert_eq!(s.phase, Phase::Idle(Rest::Stopped));
        // With live restore on it is left running.
        let on_ = Ctx {
            live_restore: true,
            ..c
        };
        let (s, fx) = step(Lifecycle::default(), Event::Attached(run(Exec::Done)), &on_);
        assert_eq!(s.phase.status(), Status::Running);
        assert!(!fx.iter().any(|f| matches!(f, Effect::Signal(_))));
    }

    #[test]
    fn a_stop_during_a_start_shows_what_was_shown_until_the_exec() {
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::Always, true)));
        let s = with(Phase::BackingOff { until: now });
        let (s, _) = step(s, Event::Spawned(run(Exec::Pending)), &c);
        assert_eq!(s.phase.status(), Status::Restarting);
        let stop = Event::Stop {
            reason: StopReason::User,
            grace: Duration::from_secs(5),
            then: Then::Nothing,
            client: None,
        };
        let (s, _) = step(s, stop, &c);
        assert_eq!(s.phase.kind(), Kind::Stopping);
        assert_eq!(s.phase.status(), Status::Restarting);
    }

    #[test]
    fn a_wait_on_a_restart_that_cannot_spawn_is_answered() {
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::Always, true)));
        let mut s = with(Phase::BackingOff { until: now });
        s.last.exit_code = Some(3);
        let (s, fx) = step(
            s,
            Event::Wait {
                client: ClientId(4),
            },
            &c,
        );
        assert!(answers(&fx).is_empty(), "it waits for the next run");
        let (s, fx) = step(s, Event::Tick, &c);
        assert!(fx.contains(&Effect::Spawn));
        let (s, fx) = step(s, Event::SpawnFailed("rootfs is gone".into()), &c);
        assert_eq!(
            answers(&fx),
            [(
                ClientId(4),
                Answer::Exit {
                    code: Some(3),
                    error: None
                }
            )]
        );
        assert_eq!(s.phase, Phase::Idle(Rest::Failed));
    }

    #[test]
    fn a_new_init_from_the_monitor_is_taken_and_its_restarts_counted() {
        let now = Instant::now();
        let c = ctx(now, Ok(def(RestartPolicy::No, true)));
        let s = with(Phase::Running {
            run: run(Exec::Done),
        });
        let reinit = Event::Reinit {
            init_pid: 202,
            init_start: 3,
            started_at: 1_700_000_000,
            restarts: 1,
        };
        let (s, fx) = step(s, reinit.clone(), &c);
        let r = s.phase.run().unwrap();
        assert_eq!(
            (r.init_pid, r.init_start, r.started_at),
            (202, 3, 1_700_000_000)
        );
        // Counted while it runs, in the run (not yet persisted).
        assert_eq!((r.health_restarts, s.persist.restart_count), (1, 0));
        assert_eq!(s.last.started_at, Some(1_700_000_000));
        assert!(!fx.iter().any(|e| matches!(e, Effect::Signal(_))), "{fx:?}");
        // The same init again changes nothing.
        let (again, fx) = step(s.clone(), reinit.clone(), &c);
        assert_eq!(again, s);
        assert!(fx.is_empty(), "{fx:?}");
        // While a stop is under way, the new init gets the stop signal.
        let stopping = with(Phase::Stopping {
            run: run(Exec::Done),
            reason: StopReason::User,
            kill_at: Some(now + Duration::from_secs(5)),
            then: Then::Nothing,
            shown: Status::Running,
        });
        let (s2, fx) = step(stopping, reinit, &c);
        assert_eq!(s2.phase.run().unwrap().init_pid, 202);
        assert!(fx.contains(&Effect::Signal(libc::SIGTERM)), "{fx:?}");
        // At the end of the run, the monitor's restarts are counted.
        let end = Event::Ended {
            outcome: Ok(Ending {
                code: Some(0),
                error: None,
                limits: LimitsHit::default(),
                started_at: 1,
                finished_at: 2,
                health_restarts: 2,
            }),
            found: None,
        };
        let (s, fx) = step(s, end, &c);
        assert_eq!(s.persist.restart_count, 2);
        assert!(fx.contains(&Effect::Persist), "{fx:?}");
    }
}
