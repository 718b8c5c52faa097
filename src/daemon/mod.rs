//! The daemon: one thread, one `mio::Poll`, and the loop that routes its
//! events to the components that own the fds behind them.
//!
//! - `clients`: the API listener's clients (tag `Client`), let in by
//!   `access` (root or the socket's group);
//! - `containers`: per container the monitor's pidfd and, while it starts,
//!   the channel on which the monitor reports the exec (tags `Monitor`,
//!   `Channel`), and the executor of each container's `lifecycle`;
//! - `watch`: an inotify fd on the containers' run directories, through
//!   which `containers` learns what a monitor changed on its own (health,
//!   a new init) (tag `Watch`);
//! - networks (`crate::net`, held by `containers`): two netlink sockets
//!   that tell when someone else deletes a bridge of berth's or changes
//!   its nf_tables table, which are then made again (tags `NetLinks`,
//!   `NetTable`);
//! - `signals`: the signalfd (SIGHUP, SIGTERM, SIGINT, SIGCHLD, blocked
//!   before anything else);
//! - events: what happened to the containers (`events`), taken from the
//!   containers' queue at the end of each turn, kept (`window`, also in
//!   run-dir) and streamed to `events` clients; taking them wakes the
//!   containers that wait for what they depend on (`order`);
//! - timers: each component says when it next needs to run; the poll
//!   timeout is the nearest deadline (stop grace, restart back-off, a slow
//!   client, the shutdown), or none: an idle daemon does not wake up.
//!
//! A token carries its component's tag and a generation (`tokens`), so an
//! event for a closed fd is dropped. Components do not know each other:
//! the loop turns a client's request into a lifecycle event and the
//! lifecycle's answers into replies. `restore` (start-up) and `reload`
//! (SIGHUP) are functions over the components; `validate` (`berth daemon
//! --validate`) runs their checks and nothing else.
//!
//! The daemon holds no container alive. It can die at any instruction:
//! monitors own the containers, and the next daemon finds them from the
//! records in run-dir (see `restore`).

mod access;
mod clients;
mod containers;
mod events;
mod lifecycle;
mod order;
mod ratelimit;
mod reload;
mod restore;
mod signals;
mod tokens;
mod validate;
mod watch;
mod window;

pub use validate::validate;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::UnixListener;
use mio::{Events, Interest, Poll};

use crate::api::{self, Call, Reply};
use crate::config::{self, DaemonConfig};
use crate::container::cgroup;
use crate::errors;
use crate::host;
use crate::state;
use crate::sys::{fd, process, signal};
use access::Access;
use clients::{Clients, Incoming, Limits, Wait};
use containers::{Containers, Env};
use lifecycle::{Answer, Answers, Cause, ClientId, Event, StopReason, Then, WaitKind, Waiter};
use tokens::Tag;

/// Command-line options of `berth daemon`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: PathBuf,
    pub live_restore: bool,
    pub pidfile: Option<PathBuf>,
    pub log_level: Option<log::LevelFilter>,
}

/// The events kept in run-dir (see `window`).
const EVENTS_FILE: &str = "events.jsonl";

/// How many rounds of events one turn hands on at most: each round's
/// wake-ups may make more (a spawn that fails at once).
const EVENT_ROUNDS: usize = 16;

/// A shutdown in progress (live restore off).
struct Shutdown {
    /// When every container still running gets SIGKILL.
    kill_at: Instant,
    /// When the daemon gives up waiting and exits anyway.
    give_up_at: Instant,
    killed: bool,
}

pub struct Daemon {
    opts: Options,
    cfg: DaemonConfig,
    poll: Poll,
    listener: UnixListener,
    signals: signals::Signals,
    clients: Clients,
    containers: Containers,
    /// The events kept for `events` clients.
    window: window::Window,
    boot_id: String,
    shutdown: Option<Shutdown>,
    exit_now: bool,
    /// run-dir's lock, a POSIX lock that ends with this process (see
    /// `fd::try_lock`): no other fd on berth.lock may be opened and closed.
    _lock: fs::File,
}

/// What the containers' effects need, borrowed from the daemon's fields
/// (so that the containers themselves can be borrowed mutably meanwhile).
fn env<'a>(poll: &'a Poll, cfg: &'a DaemonConfig, shutdown: &Option<Shutdown>) -> Env<'a> {
    Env {
        registry: poll.registry(),
        cfg,
        shutting_down: shutdown.is_some(),
    }
}

/// Entry point of `berth daemon`; returns the process exit code.
pub fn main(opts: Options) -> i32 {
    crate::logger::init();
    // Before anything else: these signals are read from a signalfd only.
    if let Err(e) = signals::block() {
        error!("block signals: {err}", err = errors::io_text(&e));
        return 1;
    }
    let _ = signal::ignore(libc::SIGPIPE);
    // Whatever fds the daemon inherited stay out of everything it starts.
    let _ = fd::cloexec_from_raw(3);
    // Nothing the daemon creates is writable by others, whatever umask it
    // was started with (its monitors and containers inherit this one).
    let umask = process::set_umask(0o022);
    process::set_umask(umask | 0o022);
    // Room for the clients' limits (see `clients::Limits`).
    let open_files = process::raise_open_files_limit(Limits::OPEN_FILES);
    let cfg = match config::read_daemon_file(&opts.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    let level = opts.log_level.unwrap_or(cfg.log_level);
    crate::logger::set_target(&cfg.log_target);
    log::set_max_level(level);
    let open_files = match open_files {
        Ok(n) => n,
        Err(e) => {
            warn!(
                "raise the open files limit: {err}",
                err = errors::io_text(&e)
            );
            1024
        }
    };
    let mut daemon = match Daemon::new(opts, cfg, open_files) {
        Ok(d) => d,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    daemon.run()
}

/// Whether a socket is at `socket` already; an error when something else
/// is there: only ever a socket is removed, never a file a wrong path
/// names. `config` names daemon.json in the error.
fn socket_in_place(socket: &Path, config: &Path) -> Result<bool, String> {
    match fs::symlink_metadata(socket) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => Ok(true),
        Ok(_) => Err(format!(
            "{}: field \"socket\": {}: exists and is not a socket",
            config.display(),
            socket.display()
        )),
        Err(_) => Ok(false),
    }
}

impl Daemon {
    fn new(opts: Options, mut cfg: DaemonConfig, open_files: u64) -> Result<Daemon, String> {
        if opts.live_restore {
            cfg.live_restore = true;
        }
        for dir in [&cfg.run_dir, &cfg.state_dir, &cfg.log_dir] {
            fs::create_dir_all(dir).map_err(|e| {
                format!("create {}: {err}", dir.display(), err = errors::io_text(&e))
            })?;
        }
        let lock_path = cfg.run_dir.join("berth.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                format!(
                    "open {}: {err}",
                    lock_path.display(),
                    err = errors::io_text(&e)
                )
            })?;
        fd::try_lock(&lock).map_err(|e| match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => format!(
                "another berth daemon is using run-dir {} (it holds {})",
                cfg.run_dir.display(),
                lock_path.display()
            ),
            _ => format!(
                "lock {}: {err}",
                lock_path.display(),
                err = errors::io_text(&e)
            ),
        })?;
        let boot_id = host::boot_id()
            .map_err(|e| format!("read boot id: {err}", err = errors::io_text(&e)))?;
        let poll =
            Poll::new().map_err(|e| format!("create poll: {err}", err = errors::io_text(&e)))?;
        let signals = signals::Signals::new(poll.registry())?;
        if let Some(parent) = cfg.socket.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                format!(
                    "create {}: {err}",
                    parent.display(),
                    err = errors::io_text(&e)
                )
            })?;
        }
        let access = Access::new(
            cfg.socket_group.as_ref(),
            Path::new(access::GROUP_FILE),
            &opts.config,
        )?;
        // We hold the lock, so a socket left here is a dead daemon's.
        if socket_in_place(&cfg.socket, &opts.config)? {
            let _ = fs::remove_file(&cfg.socket);
        }
        let mut listener = access.bind(&cfg.socket)?;
        poll.registry()
            .register(
                &mut listener,
                tokens::fixed(Tag::Listener),
                Interest::READABLE,
            )
            .map_err(|e| format!("register listener: {err}", err = errors::io_text(&e)))?;
        if let Some(pidfile) = &opts.pidfile {
            state::write_atomic(pidfile, format!("{}\n", process::getpid()).as_bytes()).map_err(
                |e| {
                    format!(
                        "write pidfile {}: {err}",
                        pidfile.display(),
                        err = errors::io_text(&e)
                    )
                },
            )?;
        }
        let events_file = cfg.run_dir.join(EVENTS_FILE);
        Ok(Daemon {
            opts,
            cfg,
            poll,
            listener,
            signals,
            clients: Clients::new(access, Limits::for_open_files(open_files)),
            containers: Containers::new(),
            window: window::Window::load(events_file, host::now_ns()),
            boot_id,
            shutdown: None,
            exit_now: false,
            _lock: lock,
        })
    }

    fn run(&mut self) -> i32 {
        let t0 = Instant::now();
        let env = env(&self.poll, &self.cfg, &self.shutdown);
        self.containers.told = self.window.told().clone();
        restore::restore(&mut self.containers, &env, &self.opts.config, &self.boot_id);
        self.hand_on_events();
        info!(
            "berth {} ready on {} ({} containers, {} running, restore took {:.1} ms)",
            env!("CARGO_PKG_VERSION"),
            self.cfg.socket.display(),
            self.containers.len(),
            self.containers.active(),
            t0.elapsed().as_secs_f64() * 1000.0
        );
        let limits = self.clients.limits();
        debug!(
            "API clients at most: {} idle ({} s to send a request), {} waiting for a start, stop or restart, {} waiting for an exit; socket {} mode {:o}",
            limits.idle,
            clients::IDLE_TIMEOUT.as_secs(),
            limits.changing,
            limits.exiting,
            self.cfg.socket.display(),
            access::SOCKET_MODE
        );
        let mut events = Events::with_capacity(64);
        // Tidying up after the previous daemon waits until nothing else
        // does: the first clients are answered first.
        let mut tidy = true;
        loop {
            if self.exit_now {
                break;
            }
            let timeout = if tidy {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!("poll: {err}", err = errors::io_text(&e));
                return 1;
            }
            if tidy && events.is_empty() {
                restore::remove_stale_temps(&self.cfg);
                tidy = false;
                // The first spare monitor once the first answers are out.
                self.containers.want_spare();
            }
            for ev in events.iter() {
                self.route(ev);
            }
            self.fire_timers(Instant::now());
            self.hand_on_events();
            if self.shutdown.is_some() && self.containers.active() == 0 {
                break;
            }
            self.containers.prepare_spare(self.shutdown.is_none());
        }
        self.finish()
    }

    /// Hands an event to the component its token's tag names.
    fn route(&mut self, ev: &mio::event::Event) {
        let token = ev.token();
        match tokens::tag_of(token) {
            Some(Tag::Listener) => {
                for incoming in self
                    .clients
                    .accept(&mut self.listener, self.poll.registry())
                {
                    self.incoming(incoming);
                }
            }
            Some(Tag::Signals) => self.read_signals(),
            Some(Tag::Client) => {
                let incoming = self.clients.event(
                    self.poll.registry(),
                    token,
                    ev.is_readable(),
                    ev.is_writable(),
                    ev.is_write_closed(),
                );
                if let Some(incoming) = incoming {
                    self.incoming(incoming);
                }
            }
            Some(Tag::NetLinks | Tag::NetTable) => {
                if let Ok(net) = &mut self.containers.net {
                    net.changed();
                }
            }
            Some(Tag::Monitor | Tag::Channel | Tag::Watch) => {
                let env = env(&self.poll, &self.cfg, &self.shutdown);
                let answers = self.containers.event(&env, token);
                self.deliver(answers);
            }
            None => {}
        }
    }

    fn incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Request(client, Err(e)) => self.reply(client, Reply::Error(e)),
            Incoming::Request(client, Ok(req)) => {
                let (reply, wait) = match Call::from_request(req) {
                    Ok(Call::Events { since }) => return self.subscribe(client, since),
                    Ok(call) => {
                        let wait = Wait::of(&call);
                        (self.call(client, call, wait), wait)
                    }
                    Err(e) => (Some(Reply::Error(e)), None),
                };
                match (reply, wait) {
                    (Some(r), _) => self.reply(client, r),
                    (None, Some(wait)) => {
                        if let Some(gone) = self.clients.wait(self.poll.registry(), client, wait) {
                            self.incoming(gone);
                        }
                    }
                    (None, None) => {
                        let e = "internal error: no answer for this request".to_string();
                        self.reply(client, Reply::Error(e));
                    }
                }
            }
            Incoming::Gone(client) => {
                let env = env(&self.poll, &self.cfg, &self.shutdown);
                self.containers.client_gone(&env, client);
            }
        }
    }

    /// `events`: the client streams from now on, the kept events after
    /// `since` first.
    fn subscribe(&mut self, client: ClientId, since: Option<u64>) {
        let mut first = Reply::Ok.into_line();
        if let Some(since) = since {
            for e in self.window.since(since) {
                first.extend_from_slice(&crate::wire::encode(&window::line_of(e)));
            }
        }
        self.clients.stream(self.poll.registry(), client, &first);
    }

    /// Takes the events the containers made this turn: keeps them, sends
    /// them to the `events` clients, and wakes the containers that wait
    /// for what they depend on.
    fn hand_on_events(&mut self) {
        for _ in 0..EVENT_ROUNDS {
            let batch = self.containers.events.take();
            if batch.is_empty() {
                return;
            }
            let kept = self.window.add(batch, host::now_ns());
            for e in &kept {
                let line = crate::wire::encode(&window::line_of(e));
                self.clients.publish(self.poll.registry(), &line);
            }
            // A start or a health change may open a dependant's gate; an
            // exit or stop may close it for good (and it says so).
            if kept.iter().any(|e| !e.name.is_empty()) {
                let env = env(&self.poll, &self.cfg, &self.shutdown);
                let answers = self.containers.wake(&env);
                self.deliver(answers);
            }
        }
    }

    fn reply(&mut self, client: ClientId, reply: Reply) {
        self.clients.answer(self.poll.registry(), client, reply);
    }

    /// `exec`: where the running container `name` is, for the client
    /// that then joins it. What happened here is the request (the client
    /// may still fail to join, e.g. without root): it is logged as such
    /// (never rate limited) and queued as an event.
    fn exec(&mut self, name: &str, command: &[String], user: Option<&str>) -> Reply {
        let Some(ctr) = self.containers.get(name) else {
            return Reply::Error(format!("no such container: {name}"));
        };
        match ctr.exec_target() {
            Ok(target) => {
                let who = user.map_or(String::new(), |u| format!(" as user {u}"));
                log::info!("{name}: exec requested: {command:?}{who}");
                self.containers.events.emit(
                    name,
                    events::Kind::Exec,
                    format!("requested: {command:?}{who}"),
                );
                Reply::Exec(Box::new(target))
            }
            Err(e) => Reply::Error(e),
        }
    }

    /// Answers the lifecycle gave.
    fn deliver(&mut self, answers: Answers) {
        for (client, answer) in answers {
            let reply = match answer {
                Answer::Ok => Reply::Ok,
                Answer::Error(e) => Reply::Error(e),
                Answer::Exit { code, error } => Reply::Exit { code, error },
            };
            self.reply(client, reply);
        }
    }

    /// Runs `event` through one container's lifecycle and delivers the
    /// answers.
    fn feed(&mut self, name: &str, event: Event) {
        let env = env(&self.poll, &self.cfg, &self.shutdown);
        let answers = self.containers.feed(&env, name, event);
        self.deliver(answers);
    }

    /// Answers a call now (`Some`), or leaves the client waiting for a
    /// container, which answers it.
    /// `wait`: what the call may leave its client waiting for (each kind
    /// has its own limit, so that one cannot starve the others).
    fn call(&mut self, client: ClientId, call: Call, wait: Option<Wait>) -> Option<Reply> {
        if let Some(Err(e)) = wait.map(|w| self.clients.room(w)) {
            return Some(Reply::Error(e));
        }
        if let Call::Rm { name } = &call {
            return Some(match self.remove_leftovers(name) {
                Ok(removed) => Reply::Reloaded(removed),
                Err(e) => Reply::Error(e),
            });
        }
        if let Some(name) = call.name() {
            if self.containers.get(name).is_none() {
                return Some(Reply::Error(format!("no such container: {name}")));
            }
        }
        let grace = |name: &str, time: Option<u64>| {
            time.map_or_else(
                || {
                    self.containers
                        .get(name)
                        .map_or(lifecycle::DEFAULT_GRACE, |c| c.grace())
                },
                Duration::from_secs,
            )
        };
        let shutting_down = || Some(Reply::Error("the daemon is shutting down".to_string()));
        let event = match &call {
            Call::Version => return Some(Reply::Version(api::version())),
            Call::Ps => {
                let mounts = containers::Mounts::default();
                let list = self
                    .containers
                    .iter()
                    .map(|c| c.info(&self.cfg.log_dir, &mounts))
                    .collect();
                return Some(Reply::Containers(list));
            }
            Call::Inspect { name } | Call::Logs { name } => {
                return self
                    .containers
                    .info(name, &self.cfg.log_dir)
                    .map(|i| Reply::Container(Box::new(i)));
            }
            Call::Exec {
                name,
                command,
                user,
            } => {
                return Some(self.exec(name, command, user.as_deref()));
            }
            Call::Reload => {
                info!("reload requested by a client");
                return Some(match self.reload() {
                    Ok(actions) => Reply::Reloaded(actions),
                    Err(e) => Reply::Error(e),
                });
            }
            Call::Kill { name, signal } => {
                info!(
                    "{name}: {} requested by a client",
                    crate::signals::signal_name(*signal)
                );
                return Some(match self.containers.signal(name, *signal) {
                    Ok(()) => {
                        self.containers.mark_operator(name);
                        Reply::Ok
                    }
                    Err(e) => Reply::Error(e),
                });
            }
            Call::Start { wait, .. } => {
                if self.shutdown.is_some() {
                    return shutting_down();
                }
                info!("{}: start requested by a client", call.name().unwrap_or(""));
                let kind = if *wait {
                    WaitKind::StartedThenExit
                } else {
                    WaitKind::Started
                };
                Event::Start {
                    cause: Cause::User,
                    waiter: Some(Waiter { client, kind }),
                }
            }
            Call::Restart { name, time } => {
                if self.shutdown.is_some() {
                    return shutting_down();
                }
                info!("{name}: restart requested by a client");
                Event::Restart {
                    grace: grace(name, *time),
                    waiter: Waiter {
                        client,
                        kind: WaitKind::Started,
                    },
                }
            }
            Call::Stop { name, time } => {
                if self.shutdown.is_some() {
                    return shutting_down();
                }
                info!("{name}: stop requested by a client");
                Event::Stop {
                    reason: StopReason::User,
                    grace: grace(name, *time),
                    then: Then::Nothing,
                    client: Some(client),
                }
            }
            Call::Wait { .. } => Event::Wait { client },
            Call::Rm { .. } => unreachable!("answered above"),
            Call::Events { .. } => unreachable!("taken by `incoming`"),
        };
        let name = call
            .name()
            .expect("container calls have a name")
            .to_string();
        self.feed(&name, event);
        None
    }

    /// `berth rm NAME`: deletes what berth keeps of a container whose
    /// definition is gone: its persistent writable layer, its state and
    /// run directories. Refused while a definition file names it or the
    /// daemon still manages it (it runs, or is being stopped). Returns
    /// what was deleted, one line each.
    fn remove_leftovers(&mut self, name: &str) -> Result<Vec<String>, String> {
        let spec_file = self
            .containers
            .get(name)
            .and_then(|c| c.spec())
            .map(|s| s.file.clone());
        if let Some(file) =
            spec_file.or_else(|| config::defining_file(&self.cfg.containers_dir, name))
        {
            return Err(format!(
                "{name} is defined in {}; remove the file and reload first",
                file.display()
            ));
        }
        if let Some(c) = self.containers.get(name) {
            let status = c.phase().status().as_str();
            return Err(format!(
                "{name} still runs (status {status}); wait until it has stopped"
            ));
        }
        // One this daemon does not manage (a run it could not trust and
        // let go) may still run on the layer: its cgroups tell.
        let hierarchies = cgroup::discover_live().unwrap_or_default();
        let dirs = cgroup::container_dirs(&hierarchies, &self.cfg.cgroup_parent, name);
        if let Some(dir) = cgroup::first_populated(&dirs) {
            return Err(format!(
                "{name} still has processes in cgroup {}; end them first",
                dir.display()
            ));
        }
        let paths = state::Paths::new(&self.cfg.run_dir, &self.cfg.state_dir, name);
        let layer = state::writable_layer(&self.cfg.state_dir, name);
        let logs = self.cfg.log_dir.join(name);
        let mut removed = Vec::new();
        if let Ok(net) = &mut self.containers.net {
            if net.holds(name) {
                net.detach(name);
                removed.push("removed its network namespace, veths and addresses".to_string());
            }
        }
        for (what, dir) in [
            ("writable layer", &layer),
            ("state", &paths.state),
            ("runtime records", &paths.run),
            ("logs", &logs),
        ] {
            match fs::remove_dir_all(dir) {
                Ok(()) => removed.push(format!("removed {what} {}", dir.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(format!(
                        "remove {}: {}",
                        dir.display(),
                        crate::errors::io_text(&e)
                    ));
                }
            }
        }
        if removed.is_empty() {
            return Err(format!(
                "no such container: {name} (berth keeps nothing of it)"
            ));
        }
        info!("{name}: {}", removed.join("; "));
        Ok(removed)
    }

    fn read_signals(&mut self) {
        for request in self.signals.drain() {
            match request {
                signals::Request::Reload => {
                    info!("SIGHUP: reloading configuration");
                    let _ = self.reload();
                }
                signals::Request::Shutdown(sig) => {
                    self.begin_shutdown(&crate::signals::signal_name(sig))
                }
            }
        }
    }

    /// SIGHUP or `berth reload`: one line per action taken, or why
    /// nothing changed.
    fn reload(&mut self) -> Result<Vec<String>, String> {
        if self.shutdown.is_some() {
            return Err("the daemon is shutting down".to_string());
        }
        let overrides = reload::Overrides {
            live_restore: self.opts.live_restore,
            log_level: self.opts.log_level,
        };
        let result = reload::reload(
            &mut self.containers,
            self.poll.registry(),
            &mut self.cfg,
            &self.opts.config,
            overrides,
        );
        match result {
            Ok((report, answers)) => {
                self.deliver(answers);
                let detail = if report.is_empty() {
                    "nothing changed".to_string()
                } else {
                    report.join("; ")
                };
                self.containers
                    .events
                    .emit("", events::Kind::Reload, detail);
                Ok(report)
            }
            Err(e) => {
                error!("reload refused, nothing changed: {e}");
                let detail = format!("refused: {e}");
                self.containers
                    .events
                    .emit("", events::Kind::Reload, detail);
                Err(e)
            }
        }
    }

    /// The nearest moment something must happen, if any.
    fn next_deadline(&self) -> Option<Instant> {
        let shutdown = self
            .shutdown
            .as_ref()
            .map(|s| if s.killed { s.give_up_at } else { s.kill_at });
        [
            self.containers.deadline(),
            self.clients.deadline(),
            shutdown,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn fire_timers(&mut self, now: Instant) {
        self.clients.expire(self.poll.registry(), now);
        let env = env(&self.poll, &self.cfg, &self.shutdown);
        let answers = self.containers.tick(&env, now);
        self.deliver(answers);
        if let Some(s) = &mut self.shutdown {
            if !s.killed && now >= s.kill_at {
                s.killed = true;
                for name in self.containers.names() {
                    self.feed(
                        &name,
                        Event::Kill {
                            why: "shutdown-timeout reached",
                        },
                    );
                }
            } else if s.killed && now >= s.give_up_at {
                warn!("containers did not exit after SIGKILL; exiting anyway");
                self.exit_now = true;
            }
        }
    }

    /// SIGTERM or SIGINT.
    fn begin_shutdown(&mut self, why: &str) {
        if self.cfg.live_restore {
            let running = self.containers.active();
            info!("{why}: live restore is on, leaving {running} containers running");
            self.exit_now = true;
            return;
        }
        if let Some(s) = &mut self.shutdown {
            if !s.killed {
                info!("{why} again: killing every container now");
                s.kill_at = Instant::now();
            }
            return;
        }
        let timeout = Duration::from_secs(self.cfg.shutdown_timeout);
        info!(
            "{why}: stopping every container (shutdown-timeout {}s)",
            self.cfg.shutdown_timeout
        );
        let now = Instant::now();
        self.shutdown = Some(Shutdown {
            kill_at: now + timeout,
            give_up_at: now + timeout + Duration::from_secs(10),
            killed: false,
        });
        for name in self.containers.names() {
            let grace = self
                .containers
                .get(&name)
                .map_or(timeout, |c| c.grace().min(timeout));
            let stop = Event::Stop {
                reason: StopReason::Shutdown,
                grace,
                then: Then::Nothing,
                client: None,
            };
            self.feed(&name, stop);
        }
    }

    fn finish(&mut self) -> i32 {
        self.containers.end_helpers();
        let _ = fs::remove_file(&self.cfg.socket);
        if let Some(pidfile) = &self.opts.pidfile {
            let _ = fs::remove_file(pidfile);
        }
        info!("berth daemon exiting");
        0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// The daemon's modules, with their sources.
    const MODULES: &[(&str, &str)] = &[
        ("access", include_str!("access.rs")),
        ("clients", include_str!("clients.rs")),
        ("containers", include_str!("containers.rs")),
        ("events", include_str!("events.rs")),
        ("lifecycle", include_str!("lifecycle.rs")),
        ("order", include_str!("order.rs")),
        ("ratelimit", include_str!("ratelimit.rs")),
        ("reload", include_str!("reload.rs")),
        ("restore", include_str!("restore.rs")),
        ("signals", include_str!("signals.rs")),
        ("tokens", include_str!("tokens.rs")),
        ("watch", include_str!("watch.rs")),
        ("window", include_str!("window.rs")),
    ];

    /// The siblings a module names through `super::`.
    fn uses(src: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (i, _) in src.match_indices("super::") {
            let rest = &src[i + "super::".len()..];
            let names: Vec<&str> = if let Some(list) = rest.strip_prefix('{') {
                list[..list.find('}').unwrap_or(0)].split(',').collect()
            } else {
                vec![rest]
            };
            for n in names {
                let ident: String = n
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !ident.is_empty() {
                    found.push(ident);
                }
            }
        }
        found
    }

    #[test]
    fn no_module_imports_one_that_imports_it_back() {
        let mut graph: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, src) in MODULES {
            let body = src.split("#[cfg(test)]").next().unwrap_or(src);
            for used in uses(body) {
                assert!(
                    MODULES.iter().any(|(m, _)| *m == used),
                    "{name} reaches into the loop (super::{used}): components must not depend on it"
                );
                graph.entry(name).or_default().push(used);
            }
        }
        // Depth-first search for a cycle.
        fn visit<'a>(n: &'a str, graph: &'a BTreeMap<&str, Vec<String>>, path: &mut Vec<&'a str>) {
            assert!(!path.contains(&n), "import cycle: {path:?} -> {n}");
            path.push(n);
            for next in graph.get(n).into_iter().flatten() {
                visit(next, graph, path);
            }
            path.pop();
        }
        for (name, _) in MODULES {
            visit(name, &graph, &mut Vec::new());
        }
        assert!(
            graph.contains_key("containers"),
            "graph not read: {graph:?}"
        );
    }
}
