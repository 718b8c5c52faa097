//! The API socket: accepting clients, reading one size-capped request
//! each, answering it now or when the container gets there (start, stop,
//! wait), writing without ever blocking the loop.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::net::UnixStream;
use mio::{Interest, Token};

use super::lifecycle::{AfterExit, Status, StopReason};
use super::{Daemon, Source};
use crate::api::{self, MAX_REQUEST, Request, Response};
use crate::config;
use crate::signals;

/// A client must send its whole request within this time.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// More clients than this still sending their request are turned away.
const MAX_CLIENTS: usize = 256;
/// More clients than this waiting for a container are refused, so that
/// they cannot take every fd (1024 is a common limit).
const MAX_WAITING: usize = 512;

#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// The request is answered (or being answered); close once written.
    answered: bool,
    /// Waiting for a container event; no deadline then.
    waiting: bool,
    pub deadline: Option<Instant>,
}

/// A client waiting for a container.
#[derive(Debug, Clone, Copy)]
pub struct Waiter {
    pub token: Token,
    pub kind: WaitKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// `start`: answer once exec'd or failed.
    Started,
    /// `start --wait`: answer once exec'd-and-exited, with the code.
    StartedThenExit,
    /// `wait`, `stop`: answer when the run ends.
    Exit,
}

impl Daemon {
    pub(super) fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    // Waiting clients have their own cap (see `handle`).
                    let clients = self
                        .sources
                        .slots
                        .iter()
                        .filter(|s| matches!(&s.source, Some(Source::Client(c)) if !c.waiting))
                        .count();
                    if clients >= MAX_CLIENTS {
                        let _ = stream.write(&Response::error("too many clients").to_line());
                        continue;
                    }
                    let client = Client {
                        stream,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        answered: false,
                        waiting: false,
                        deadline: Some(Instant::now() + REQUEST_DEADLINE),
                    };
                    let token = self.sources.insert(Source::Client(client));
                    if let Some(Source::Client(c)) = self.sources.get_mut(token) {
                        if let Err(e) =
                            self.poll
                                .registry()
                                .register(&mut c.stream, token, Interest::READABLE)
                        {
                            debug!("register client: {e}");
                            self.sources.remove(token);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("accept: {e}");
                    break;
                }
            }
        }
    }

    pub(super) fn client_event(
        &mut self,
        token: Token,
        readable: bool,
        writable: bool,
        hung_up: bool,
    ) {
        let mut request = None;
        let mut drop_client = false;
        if let Some(Source::Client(c)) = self.sources.get_mut(token) {
            if readable && !c.answered && !c.waiting {
                let mut chunk = [0u8; 4096];
                loop {
                    match c.stream.read(&mut chunk) {
                        Ok(0) => {
                            drop_client = true;
                            break;
                        }
                        Ok(n) => {
                            c.inbuf.extend_from_slice(&chunk[..n]);
                            if let Some(i) = c.inbuf.iter().position(|&b| b == b'\n') {
                                request = Some(c.inbuf[..i].to_vec());
                                break;
                            }
                            if c.inbuf.len() > MAX_REQUEST {
                                request = Some(Vec::new());
                                c.inbuf.clear();
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            drop_client = true;
                            break;
                        }
                    }
                }
                if c.inbuf.len() > MAX_REQUEST && request.is_none() {
                    request = Some(Vec::new());
                }
            } else if hung_up && c.outbuf.is_empty() {
                // A waiting client went away (a client that only shut down
                // its writing side still gets its answer).
                drop_client = true;
            }
            if writable && !c.outbuf.is_empty() {
                drop_client |= flush(c);
            }
        }
        if let Some(bytes) = request {
            let response = if bytes.is_empty() {
                Some(Response::error(format!(
                    "request larger than {MAX_REQUEST} bytes"
                )))
            } else {
                match std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| crate::json::decode::<Request>(s).ok())
                {
                    Some(req) => self.handle(token, req),
                    None => Some(Response::error(
                        "malformed request: expected one JSON object and a newline",
                    )),
                }
            };
            match response {
                Some(r) => self.answer(token, r),
                None => {
                    if let Some(Source::Client(c)) = self.sources.get_mut(token) {
                        c.waiting = true;
                        c.deadline = None;
                    }
                    // Edge-triggered: a hang-up that came with the request
                    // is not reported again.
                    if hung_up {
                        self.close_client(token);
                    }
                }
            }
            return;
        }
        if drop_client {
            self.close_client(token);
        }
    }

    /// Queues a response; the client is closed once it is written.
    pub(super) fn answer(&mut self, token: Token, response: Response) {
        let Some(Source::Client(c)) = self.sources.get_mut(token) else {
            return;
        };
        c.outbuf.extend_from_slice(&response.to_line());
        c.answered = true;
        c.waiting = false;
        c.deadline = Some(Instant::now() + REQUEST_DEADLINE);
        let done = flush(c);
        if done {
            self.close_client(token);
        } else if let Some(Source::Client(c)) = self.sources.get_mut(token) {
            let _ = self.poll.registry().reregister(
                &mut c.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            );
        }
    }

    fn close_client(&mut self, token: Token) {
        if let Some(Source::Client(mut c)) = self.sources.remove(token) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            if c.waiting {
                for ctr in self.containers.values_mut() {
                    ctr.waiters.retain(|w| w.token != token);
                }
            }
        }
    }

    /// Closes clients that did not finish their request (or did not read
    /// their answer) in time.
    pub(super) fn expire_clients(&mut self, now: Instant) {
        let expired: Vec<Token> = self
            .sources
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.source {
                Some(Source::Client(c)) if c.deadline.is_some_and(|d| now >= d) => {
                    Some(super::token_of(i, s.generation))
                }
                _ => None,
            })
            .collect();
        for token in expired {
            debug!("closing a client that stalled");
            self.close_client(token);
        }
    }

    /// Answers a request now (`Some`) or registers the client as waiting.
    fn handle(&mut self, token: Token, req: Request) -> Option<Response> {
        let name = req.name.as_str();
        const VERBS: &[&str] = &[
            "ps", "reload", "version", "start", "stop", "restart", "kill", "wait", "logs",
            "inspect",
        ];
        if !VERBS.contains(&req.verb.as_str()) {
            return Some(Response::error(format!("unknown verb: {}", req.verb)));
        }
        if let Some(t) = req.time.filter(|t| *t > config::MAX_TIMEOUT) {
            return Some(Response::error(format!(
                "time must be at most {} seconds, not {t}",
                config::MAX_TIMEOUT
            )));
        }
        if matches!(req.verb.as_str(), "start" | "stop" | "restart" | "wait") {
            let waiting = self
                .sources
                .slots
                .iter()
                .filter(|s| matches!(&s.source, Some(Source::Client(c)) if c.waiting))
                .count();
            if waiting >= MAX_WAITING {
                return Some(Response::error(format!(
                    "too many clients waiting ({MAX_WAITING}); try again later"
                )));
            }
        }
        let needs_name = !matches!(req.verb.as_str(), "ps" | "reload" | "version");
        if needs_name {
            if let Err(e) = config::validate_name(name) {
                return Some(Response::error(e));
            }
            if !self.containers.contains_key(name) {
                return Some(Response::error(format!("no such container: {name}")));
            }
        }
        let being_removed = self
            .containers
            .get(name)
            .is_some_and(|c| c.after_exit == AfterExit::Forget);
        if being_removed && matches!(req.verb.as_str(), "start" | "restart") {
            return Some(Response::error(format!(
                "{name} is being removed: its definition is gone"
            )));
        }
        match req.verb.as_str() {
            "version" => Some(Response {
                version: Some(api::version()),
                ..Response::ok()
            }),
            "ps" => {
                let list = self
                    .containers
                    .values()
                    .map(|c| c.info(&self.cfg.log_dir))
                    .collect();
                Some(Response {
                    containers: Some(list),
                    ..Response::ok()
                })
            }
            "inspect" | "logs" => {
                let info = self.containers[name].info(&self.cfg.log_dir);
                Some(Response {
                    container: Some(info),
                    ..Response::ok()
                })
            }
            "reload" => Some(match self.reload() {
                Ok(actions) => Response {
                    actions: Some(actions),
                    ..Response::ok()
                },
                Err(e) => {
                    log::error!("reload refused, nothing changed: {e}");
                    Response::error(e)
                }
            }),
            "start" => self.request_start(token, name, req.wait),
            "restart" => {
                let c = &self.containers[name];
                if c.is_active() {
                    let grace = req.time.map_or(c.grace(), Duration::from_secs);
                    self.user_started(name);
                    self.stop_container(name, StopReason::Reconcile, grace, AfterExit::Start);
                    self.add_waiter(name, token, WaitKind::Started);
                    None
                } else {
                    self.request_start(token, name, false)
                }
            }
            "stop" => {
                if self.shutdown.is_some() {
                    return Some(Response::error("the daemon is shutting down"));
                }
                let c = &self.containers[name];
                let grace = req.time.map_or(c.grace(), Duration::from_secs);
                let active = c.is_active();
                self.stop_container(name, StopReason::User, grace, AfterExit::Nothing);
                info!("{name}: stop requested by a client");
                if active {
                    self.add_waiter(name, token, WaitKind::Exit);
                    None
                } else {
                    Some(Response::ok())
                }
            }
            "kill" => {
                let sig = match req.signal.as_deref() {
                    None => libc::SIGKILL,
                    Some(s) => match signals::parse_signal(s) {
                        Some(sig) => sig,
                        None => return Some(Response::error(format!("unknown signal: {s}"))),
                    },
                };
                Some(match self.signal_container(name, sig) {
                    Ok(()) => Response::ok(),
                    Err(e) => Response::error(e),
                })
            }
            "wait" => {
                let c = &self.containers[name];
                if c.is_active() || c.status == Status::Restarting {
                    self.add_waiter(name, token, WaitKind::Exit);
                    None
                } else {
                    Some(Response {
                        exit_code: c.exit_code,
                        ..Response::ok()
                    })
                }
            }
            other => Some(Response::error(format!("unknown verb: {other}"))),
        }
    }

    /// A start asked for by a user: clears a previous user stop and the
    /// restart count.
    fn user_started(&mut self, name: &str) {
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        let changed = c.persist.stopped_by_user || c.persist.restart_count != 0;
        c.persist.stopped_by_user = false;
        c.persist.restart_count = 0;
        c.consecutive_failures = 0;
        if changed {
            self.save_persist(name);
        }
    }

    fn request_start(&mut self, token: Token, name: &str, wait: bool) -> Option<Response> {
        if self.shutdown.is_some() {
            return Some(Response::error("the daemon is shutting down"));
        }
        let c = &self.containers[name];
        let active = c.is_active();
        let starting = c.run.as_ref().is_some_and(|r| r.channel.is_some());
        let stopping = c.stopping.is_some();
        self.user_started(name);
        let kind = if wait {
            WaitKind::StartedThenExit
        } else {
            WaitKind::Started
        };
        if active && stopping {
            // Start again once the stop in progress is done.
            if let Some(c) = self.containers.get_mut(name) {
                c.after_exit = AfterExit::Start;
            }
            self.add_waiter(name, token, kind);
            return None;
        }
        if let Err(e) = self.start_container(name) {
            return Some(Response::error(e));
        }
        match (active && !starting, wait) {
            (true, false) => Some(Response::ok()), // already running
            (true, true) => {
                self.add_waiter(name, token, WaitKind::Exit);
                None
            }
            (false, _) => {
                self.add_waiter(name, token, kind);
                None
            }
        }
    }

    fn add_waiter(&mut self, name: &str, token: Token, kind: WaitKind) {
        if let Some(c) = self.containers.get_mut(name) {
            c.waiters.push(Waiter { token, kind });
        }
    }

    /// The start of `name` succeeded or failed: answer who waited for it.
    pub(super) fn answer_start_waiters(&mut self, name: &str, result: Result<(), String>) {
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        let mut answer = Vec::new();
        c.waiters.retain_mut(|w| match (w.kind, &result) {
            (WaitKind::Started, _) => {
                answer.push(w.token);
                false
            }
            (WaitKind::StartedThenExit, Ok(())) => {
                w.kind = WaitKind::Exit;
                true
            }
            (WaitKind::StartedThenExit, Err(_)) => {
                answer.push(w.token);
                false
            }
            (WaitKind::Exit, _) => true,
        });
        for token in answer {
            let r = match &result {
                Ok(()) => Response::ok(),
                Err(e) => Response::error(format!("start {name}: {e}")),
            };
            self.answer(token, r);
        }
    }

    /// The run of `name` ended with `code`: answer `wait`, `stop`,
    /// `start --wait`.
    pub(super) fn answer_exit_waiters(
        &mut self,
        name: &str,
        code: Option<i32>,
        error: Option<String>,
    ) {
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        let mut answer = Vec::new();
        c.waiters.retain(|w| {
            if w.kind == WaitKind::Exit {
                answer.push(w.token);
                false
            } else {
                true
            }
        });
        for token in answer {
            let r = Response {
                exit_code: code,
                error: error.clone(),
                ..Response::ok()
            };
            self.answer(token, r);
        }
    }
}

/// Writes what it can; true when the client is done (all written, or gone).
fn flush(c: &mut Client) -> bool {
    while !c.outbuf.is_empty() {
        match c.stream.write(&c.outbuf) {
            Ok(0) => return true,
            Ok(n) => {
                c.outbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    c.answered
}
