//! The daemon: one thread, one `mio::Poll`.
//!
//! Everything is an fd in one poll: the API listener and its clients, a
//! signalfd (SIGHUP, SIGTERM, SIGINT, SIGCHLD, blocked before anything
//! else), and per container the monitor's pidfd and, while it starts, the
//! channel on which the monitor reports the exec. The poll timeout is the
//! nearest deadline (stop grace, restart back-off, a slow client), or none:
//! an idle daemon does not wake up.
//!
//! The daemon holds no container alive. It can die at any instruction:
//! monitors own the containers, and the next daemon finds them from the
//! records in run-dir (see `restore`).

mod clients;
mod lifecycle;
mod ratelimit;
mod reload;
mod restore;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::net::UnixListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::config::{self, DaemonConfig};
use crate::host;
use crate::signals;
use crate::state;
use crate::sys::{fd, process, signal};

pub use lifecycle::Ctr;

/// Command-line options of `berth daemon`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: PathBuf,
    pub live_restore: bool,
    pub pidfile: Option<PathBuf>,
    pub log_level: Option<log::LevelFilter>,
}

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const SIGNALS_HANDLED: &[i32] = &[libc::SIGHUP, libc::SIGTERM, libc::SIGINT, libc::SIGCHLD];

/// What a token stands for. Tokens carry a generation, so an event for an
/// fd that was closed and whose slot was reused is recognised as stale.
#[derive(Debug)]
enum Source {
    Client(clients::Client),
    /// The monitor of this container exited (pidfd readable).
    Monitor(String),
    /// The monitor of this container wrote its reply.
    Channel(String),
}

struct Slot {
    generation: u32,
    source: Option<Source>,
}

/// A token is (generation << TOKEN_SHIFT) | slot index: half the bits
/// each (32-bit targets: 65536 slots, 16-bit generations). The top values
/// are the listener's and the signalfd's.
const TOKEN_SHIFT: u32 = usize::BITS / 2;
const INDEX_MASK: usize = (1 << TOKEN_SHIFT) - 1;
/// Generations wrap below the bits left for them.
const GENERATION_MASK: u32 = ((1u64 << (usize::BITS - TOKEN_SHIFT - 1)) - 1) as u32;

fn token_of(index: usize, generation: u32) -> Token {
    Token(((generation as usize) << TOKEN_SHIFT) | index)
}

/// Sources by token: a slab with generations.
#[derive(Default)]
struct Sources {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

impl Sources {
    fn insert(&mut self, source: Source) -> Token {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    source: None,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
        slot.source = Some(source);
        token_of(index, slot.generation)
    }

    fn split(token: Token) -> (usize, u32) {
        (token.0 & INDEX_MASK, (token.0 >> TOKEN_SHIFT) as u32)
    }

    fn get_mut(&mut self, token: Token) -> Option<&mut Source> {
        let (index, generation) = Self::split(token);
        let slot = self.slots.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.source.as_mut()
    }

    fn remove(&mut self, token: Token) -> Option<Source> {
        let (index, generation) = Self::split(token);
        let slot = self.slots.get_mut(index)?;
        if slot.generation != generation || slot.source.is_none() {
            return None;
        }
        self.free.push(index);
        slot.source.take()
    }
}

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
    signals: OwnedFd,
    sources: Sources,
    containers: BTreeMap<String, Ctr>,
    boot_id: String,
    shutdown: Option<Shutdown>,
    exit_now: bool,
    _lock: fs::File,
}

/// Entry point of `berth daemon`; returns the process exit code.
pub fn main(opts: Options) -> i32 {
    // Before anything else: these signals are read from a signalfd only.
    if let Err(e) = signal::block(SIGNALS_HANDLED) {
        eprintln!("berth: block signals: {e}");
        return 1;
    }
    let _ = signal::ignore(libc::SIGPIPE);
    // Whatever fds the daemon inherited stay out of everything it starts.
    let _ = fd::cloexec_from_raw(3);
    let cfg = match config::read_daemon_file(&opts.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("berth: {e}");
            return 1;
        }
    };
    let level = opts.log_level.unwrap_or(cfg.log_level);
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Trace)
        .init();
    log::set_max_level(level);
    let mut daemon = match Daemon::new(opts, cfg) {
        Ok(d) => d,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    daemon.run()
}

impl Daemon {
    fn new(opts: Options, mut cfg: DaemonConfig) -> Result<Daemon, String> {
        if opts.live_restore {
            cfg.live_restore = true;
        }
        for dir in [&cfg.run_dir, &cfg.state_dir, &cfg.log_dir] {
            fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        let lock_path = cfg.run_dir.join("berth.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("open {}: {e}", lock_path.display()))?;
        fd::try_lock(&lock).map_err(|e| match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => format!(
                "another berth daemon is using run-dir {} (it holds {})",
                cfg.run_dir.display(),
                lock_path.display()
            ),
            _ => format!("lock {}: {e}", lock_path.display()),
        })?;
        let boot_id = host::boot_id().map_err(|e| format!("read boot id: {e}"))?;
        let poll = Poll::new().map_err(|e| format!("create poll: {e}"))?;
        let signals =
            signal::signalfd(SIGNALS_HANDLED).map_err(|e| format!("create signalfd: {e}"))?;
        poll.registry()
            .register(
                &mut SourceFd(&signals.as_raw_fd()),
                SIGNALS,
                Interest::READABLE,
            )
            .map_err(|e| format!("register signalfd: {e}"))?;
        if let Some(parent) = cfg.socket.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
        }
        // We hold the lock, so a socket left here is a dead daemon's; but
        // only ever remove a socket, never a file a wrong path names.
        match fs::symlink_metadata(&cfg.socket) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                let _ = fs::remove_file(&cfg.socket);
            }
            Ok(_) => {
                return Err(format!(
                    "socket {}: exists and is not a socket",
                    cfg.socket.display()
                ));
            }
            Err(_) => {}
        }
        let mut listener = UnixListener::bind(&cfg.socket)
            .map_err(|e| format!("listen on {}: {e}", cfg.socket.display()))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| format!("register listener: {e}"))?;
        if let Some(pidfile) = &opts.pidfile {
            state::write_atomic(pidfile, format!("{}\n", process::getpid()).as_bytes())
                .map_err(|e| format!("write pidfile {}: {e}", pidfile.display()))?;
        }
        Ok(Daemon {
            opts,
            cfg,
            poll,
            listener,
            signals,
            sources: Sources::default(),
            containers: BTreeMap::new(),
            boot_id,
            shutdown: None,
            exit_now: false,
            _lock: lock,
        })
    }

    fn run(&mut self) -> i32 {
        let t0 = Instant::now();
        self.restore();
        info!(
            "berth {} ready on {} ({} containers, {} running, restore took {:.1} ms)",
            env!("CARGO_PKG_VERSION"),
            self.cfg.socket.display(),
            self.containers.len(),
            self.containers.values().filter(|c| c.is_active()).count(),
            t0.elapsed().as_secs_f64() * 1000.0
        );
        let mut events = Events::with_capacity(64);
        loop {
            if self.exit_now {
                break;
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!("poll: {e}");
                return 1;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_clients(),
                    SIGNALS => self.read_signals(),
                    token => self.dispatch(
                        token,
                        ev.is_readable(),
                        ev.is_writable(),
                        ev.is_write_closed(),
                    ),
                }
            }
            self.fire_timers(Instant::now());
            if self.shutdown.is_some() && self.shutdown_complete() {
                break;
            }
        }
        self.finish()
    }

    fn dispatch(&mut self, token: Token, readable: bool, writable: bool, closed: bool) {
        match self.sources.get_mut(token) {
            None => {} // stale: the fd behind it is gone
            Some(Source::Client(_)) => self.client_event(token, readable, writable, closed),
            Some(Source::Monitor(name)) => {
                let name = name.clone();
                self.monitor_exited(&name, token);
            }
            Some(Source::Channel(name)) => {
                let name = name.clone();
                self.channel_readable(&name, token);
            }
        }
    }

    fn read_signals(&mut self) {
        loop {
            match signal::read_signalfd(&self.signals) {
                Ok(None) => break,
                Ok(Some(libc::SIGCHLD)) => while process::reap_any().is_some() {},
                Ok(Some(libc::SIGHUP)) => {
                    info!("SIGHUP: reloading configuration");
                    if let Err(e) = self.reload() {
                        error!("reload refused, nothing changed: {e}");
                    }
                }
                Ok(Some(sig)) => self.begin_shutdown(&signals::signal_name(sig)),
                Err(e) => {
                    error!("read signalfd: {e}");
                    break;
                }
            }
        }
    }

    /// The nearest moment something must happen, if any.
    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for c in self.containers.values() {
            consider(c.deadline());
        }
        for slot in &self.sources.slots {
            if let Some(Source::Client(c)) = &slot.source {
                consider(c.deadline);
            }
        }
        if let Some(s) = &self.shutdown {
            consider(if s.killed {
                Some(s.give_up_at)
            } else {
                Some(s.kill_at)
            });
        }
        next
    }

    fn fire_timers(&mut self, now: Instant) {
        self.expire_clients(now);
        let due: Vec<String> = self
            .containers
            .values()
            .filter(|c| c.deadline().is_some_and(|d| d <= now))
            .map(|c| c.name.clone())
            .collect();
        for name in due {
            self.container_timers(&name, now);
        }
        if let Some(s) = &mut self.shutdown {
            if !s.killed && now >= s.kill_at {
                s.killed = true;
                let names: Vec<String> = self.containers.keys().cloned().collect();
                for name in names {
                    self.kill_now(&name, "shutdown-timeout reached");
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
            let running = self.containers.values().filter(|c| c.is_active()).count();
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
        let names: Vec<String> = self.containers.keys().cloned().collect();
        for name in names {
            self.stop_for_shutdown(&name, timeout);
        }
    }

    fn shutdown_complete(&self) -> bool {
        self.containers.values().all(|c| !c.is_active())
    }

    fn finish(&mut self) -> i32 {
        let _ = fs::remove_file(&self.cfg.socket);
        if let Some(pidfile) = &self.opts.pidfile {
            let _ = fs::remove_file(pidfile);
        }
        info!("berth daemon exiting");
        0
    }
}
