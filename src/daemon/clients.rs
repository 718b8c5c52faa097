//! The API clients: accepting them, reading one size-capped request each,
//! writing the answer without ever blocking the loop, and closing those
//! that stall. This component owns the client sockets and their tokens; it
//! knows nothing of containers: a request goes to the loop, which answers
//! now or marks the client as waiting until a container gets there.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use log::debug;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::lifecycle::ClientId;
use super::tokens::{Slab, Tag};
use crate::api::{MAX_REQUEST, Reply, Request};
use crate::wire::{self, Got, LineReader, Outbox};

/// A client must send its whole request within this time.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// More clients than this still sending their request are turned away.
const MAX_CLIENTS: usize = 256;
/// More clients than this waiting for a container are refused, so that
/// they cannot take every fd (1024 is a common limit).
pub const MAX_WAITING: usize = 512;

struct Client {
    stream: UnixStream,
    reader: LineReader,
    outbox: Outbox,
    /// The request is answered (or being answered); close once written.
    answered: bool,
    /// Waiting for a container event; no deadline then.
    waiting: bool,
    deadline: Option<Instant>,
}

/// What a client's event amounts to.
#[derive(Debug)]
pub enum Incoming {
    /// A request, or the error to answer it with.
    Request(ClientId, Result<Request, String>),
    /// A client that waited for a container went away.
    Gone(ClientId),
}

pub struct Clients {
    slab: Slab<Client>,
}

fn id(token: Token) -> ClientId {
    ClientId(token.0)
}

fn token(id: ClientId) -> Token {
    Token(id.0)
}

impl Clients {
    pub fn new() -> Clients {
        Clients {
            slab: Slab::new(Tag::Client),
        }
    }

    pub fn accept(&mut self, listener: &UnixListener, registry: &Registry) {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    // Waiting clients have their own cap (`waiting`).
                    let busy = self.slab.iter().filter(|(_, c)| !c.waiting).count();
                    if busy >= MAX_CLIENTS {
                        let _ = stream.write(&Reply::Error("too many clients".into()).into_line());
                        continue;
                    }
                    let client = Client {
                        stream,
                        reader: LineReader::new(MAX_REQUEST),
                        outbox: Outbox::default(),
                        answered: false,
                        waiting: false,
                        deadline: Some(Instant::now() + REQUEST_DEADLINE),
                    };
                    let Some(token) = self.slab.insert(client) else {
                        continue;
                    };
                    let c = self.slab.get_mut(token).expect("just inserted");
                    if let Err(e) = registry.register(&mut c.stream, token, Interest::READABLE) {
                        debug!("register client: {e}");
                        self.slab.remove(token);
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

    /// Reads a request or writes a pending answer. `hung_up`: the peer can
    /// take no more (a client that only shut down its writing side still
    /// gets its answer).
    pub fn event(
        &mut self,
        registry: &Registry,
        token: Token,
        readable: bool,
        writable: bool,
        hung_up: bool,
    ) -> Option<Incoming> {
        let c = self.slab.get_mut(token)?;
        let mut request = None;
        let mut gone = false;
        if readable && !c.answered && !c.waiting {
            match c.reader.read_from(&mut c.stream) {
                Ok(Got::Line(line)) => {
                    request = Some(wire::decode::<Request>(&line).map_err(|_| {
                        "malformed request: expected one JSON object and a newline".to_string()
                    }))
                }
                Ok(Got::TooLong) => {
                    request = Some(Err(format!("request larger than {MAX_REQUEST} bytes")))
                }
                Ok(Got::Partial) => {}
                Ok(Got::Eof) | Err(_) => gone = true,
            }
        } else if hung_up && c.outbox.is_empty() {
            gone = true;
        }
        if writable && !c.outbox.is_empty() {
            gone |= Self::flush(c);
        }
        if let Some(r) = request {
            if hung_up {
                // Edge-triggered: a hang-up that came with the request is
                // not reported again; its answer cannot be read anyway.
                c.deadline = Some(Instant::now());
            }
            return Some(Incoming::Request(id(token), r));
        }
        if gone {
            return self.close(registry, id(token));
        }
        None
    }

    /// Writes what it can; true when the client is done (all written and
    /// answered, or gone).
    fn flush(c: &mut Client) -> bool {
        match c.outbox.flush_to(&mut c.stream) {
            Ok(true) => c.answered,
            Ok(false) => false,
            Err(_) => true,
        }
    }

    /// Queues an answer; the client is closed once it is written.
    pub fn answer(&mut self, registry: &Registry, client: ClientId, reply: Reply) {
        let Some(c) = self.slab.get_mut(token(client)) else {
            return;
        };
        c.outbox.push(&reply.into_line());
        c.answered = true;
        c.waiting = false;
        c.deadline = Some(Instant::now() + REQUEST_DEADLINE);
        if Self::flush(c) {
            self.close(registry, client);
        } else {
            let _ = registry.reregister(
                &mut c.stream,
                token(client),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
    }

    /// The request was not answered: the client waits for a container.
    /// A client that hung up with its request is closed instead
    /// (`Incoming::Gone`).
    pub fn wait(&mut self, registry: &Registry, client: ClientId) -> Option<Incoming> {
        let c = self.slab.get_mut(token(client))?;
        if c.answered {
            return None;
        }
        c.waiting = true;
        if c.deadline.is_some_and(|d| d <= Instant::now()) {
            return self.close(registry, client);
        }
        c.deadline = None;
        None
    }

    /// Closes a client; says so if it was waiting for a container.
    fn close(&mut self, registry: &Registry, client: ClientId) -> Option<Incoming> {
        let mut c = self.slab.remove(token(client))?;
        let _ = registry.deregister(&mut c.stream);
        c.waiting.then_some(Incoming::Gone(client))
    }

    pub fn waiting(&self) -> usize {
        self.slab.iter().filter(|(_, c)| c.waiting).count()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.slab.iter().filter_map(|(_, c)| c.deadline).min()
    }

    /// Closes clients that did not finish their request (or did not read
    /// their answer) in time.
    pub fn expire(&mut self, registry: &Registry, now: Instant) -> Vec<Incoming> {
        let expired: Vec<Token> = self
            .slab
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| now >= d))
            .map(|(t, _)| t)
            .collect();
        let mut gone = Vec::new();
        for t in expired {
            debug!("closing a client that stalled");
            gone.extend(self.close(registry, id(t)));
        }
        gone
    }
}
