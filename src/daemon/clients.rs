//! The API clients: accepting them (when `access` lets the peer in),
//! reading one size-capped request each, writing the answer without ever
//! blocking the loop, and closing those that stall. This component owns
//! the client sockets and their tokens; it knows nothing of containers: a
//! request goes to the loop, which answers now or leaves the client
//! waiting until a container gets there.
//!
//! No kind of client can lock out another: each kind has its own limit.
//!
//! - idle: connected with no whole request yet, or with an answer not yet
//!   read. At most `Limits::idle`; a new connection beyond that closes the
//!   oldest idle one. An idle client has `IDLE_TIMEOUT` to send its
//!   request, and as long again to read its answer.
//! - waiting for a change (start, stop, restart: until the container has
//!   started or stopped): at most `Limits::changing`.
//! - waiting for an exit (wait, start --wait: as long as the container
//!   runs): at most `Limits::exiting`, with no timeout.
//!
//! - streaming events (`events`: until it hangs up): at most
//!   `MAX_STREAMS`, each with at most `MAX_STREAM_BUFFER` bytes not yet
//!   read; one that falls further behind is closed, so a slow client never
//!   holds the loop or its memory.
//!
//! A request beyond its kind's limit is answered at once with an error.
//! The listener is always drained, in batches so that the clients already
//! in get their turn: a connection is let in or gets an error line, never
//! left in the backlog; when the daemon is out of fds, a spare one lets it
//! accept the connection to refuse it.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::access::Access;
use super::lifecycle::ClientId;
use super::ratelimit::{RateLimit, Verdict};
use super::tokens::{self, Slab, Tag};
use crate::api::{Call, MAX_REQUEST, Reply, Request};
use crate::sys::fd;
use crate::wire::{self, Got, LineReader, Outbox};

/// Time an idle client has to send its whole request (from connecting),
/// or to read its answer.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections accepted per listener event before the others' turn.
const ACCEPT_BATCH: usize = 64;

/// Clients streaming events at most.
pub const MAX_STREAMS: usize = 32;
/// Bytes a streaming client may leave unread before it is closed.
pub const MAX_STREAM_BUFFER: usize = 1 << 20;

/// What a waiting client waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// start, stop, restart: the change asked for, which ends.
    Change,
    /// wait, start --wait: the container's exit, however long it runs.
    Exit,
}

impl Wait {
    /// What a call may leave its client waiting for, if anything.
    pub fn of(call: &Call) -> Option<Wait> {
        match call {
            Call::Wait { .. } | Call::Start { wait: true, .. } => Some(Wait::Exit),
            Call::Start { .. } | Call::Stop { .. } | Call::Restart { .. } => Some(Wait::Change),
            _ => None,
        }
    }
}

/// How many clients of each kind at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub idle: usize,
    pub changing: usize,
    pub exiting: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        idle: 256,
        changing: 256,
        exiting: 1024,
    };

    /// Fds kept for all else: monitors' pidfds and channels, files.
    const OTHER_FDS: u64 = 1024;

    /// The open-files limit the daemon asks for: the default limits with
    /// `OTHER_FDS` to spare.
    pub const OPEN_FILES: u64 = 4096;

    /// The limits for a daemon allowed `open_files` fds: the defaults when
    /// they leave `OTHER_FDS` spare, else half the fds, shared out in the
    /// same proportions.
    pub fn for_open_files(open_files: u64) -> Limits {
        let d = Limits::DEFAULT;
        let total = (d.idle + d.changing + d.exiting) as u64;
        if open_files >= total + Self::OTHER_FDS {
            return d;
        }
        let share = |n: usize| ((n as u64 * (open_files / 2) / total) as usize).max(4);
        Limits {
            idle: share(d.idle),
            changing: share(d.changing),
            exiting: share(d.exiting),
        }
    }
}

struct Client {
    stream: UnixStream,
    reader: LineReader,
    outbox: Outbox,
    /// Waiting for a container, or (None) idle.
    waiting: Option<Wait>,
    /// The request is answered (or being answered); close once written.
    answered: bool,
    /// It hung up along with its request: nobody can read the answer.
    hung_up: bool,
    /// When it became idle: connected, or answered after waiting.
    since: Instant,
    /// Streaming events until it hangs up.
    streaming: bool,
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
    /// The idle clients, oldest first, which is also the order of their
    /// deadlines.
    idle: VecDeque<Token>,
    /// Clients waiting for a change, and for an exit.
    changing: usize,
    exiting: usize,
    streams: usize,
    limits: Limits,
    access: Access,
    /// An fd held in reserve: when accept fails for want of fds, closing
    /// it lets one connection in, to be refused rather than left waiting.
    spare: Option<OwnedFd>,
    out_of_fds: RateLimit,
}

fn id(token: Token) -> ClientId {
    ClientId(token.0)
}

fn token(id: ClientId) -> Token {
    Token(id.0)
}

fn spare_fd() -> Option<OwnedFd> {
    fd::open(c"/dev/null", libc::O_RDONLY, 0).ok()
}

impl Clients {
    pub fn new(access: Access, limits: Limits) -> Clients {
        Clients {
            slab: Slab::new(Tag::Client),
            idle: VecDeque::new(),
            changing: 0,
            exiting: 0,
            streams: 0,
            limits,
            access,
            spare: spare_fd(),
            out_of_fds: RateLimit::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes in what the listener holds, a batch at a time. Requests that
    /// came along with their connection are read at once.
    pub fn accept(&mut self, listener: &mut UnixListener, registry: &Registry) -> Vec<Incoming> {
        let mut incoming = Vec::new();
        let now = Instant::now();
        for _ in 0..ACCEPT_BATCH {
            match listener.accept() {
                Ok((stream, _)) => incoming.extend(self.admit(registry, stream, now)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return incoming,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if !self.refuse_for_want_of_fds(listener, now) {
                        return incoming;
                    }
                }
                Err(e) => {
                    warn!("accept an API client: {e}");
                    return incoming;
                }
            }
        }
        // A whole batch: more may be waiting. Re-arming the listener has
        // the poll report it again, after the other events.
        if let Err(e) =
            registry.reregister(listener, tokens::fixed(Tag::Listener), Interest::READABLE)
        {
            warn!("re-arm the API listener: {e}");
        }
        incoming
    }

    /// One new connection: checked, made room for, read.
    fn admit(
        &mut self,
        registry: &Registry,
        mut stream: UnixStream,
        now: Instant,
    ) -> Option<Incoming> {
        if let Err(refusal) = self.access.check(&stream, now) {
            let _ = stream.write(&Reply::Error(refusal).into_line());
            return None;
        }
        let client = Client {
            stream,
            reader: LineReader::new(MAX_REQUEST),
            outbox: Outbox::default(),
            waiting: None,
            answered: false,
            hung_up: false,
            since: now,
            streaming: false,
        };
        let token = self.slab.insert(client)?;
        let c = self.slab.get_mut(token).expect("just inserted");
        if let Err(e) = registry.register(&mut c.stream, token, Interest::READABLE) {
            debug!("register client: {e}");
            self.slab.remove(token);
            return None;
        }
        self.idle.push_back(token);
        // Most clients write their request right after connecting: one
        // that did is not idle, and takes no idle one's place.
        let incoming = self.event(registry, token, true, false, false);
        if self.idle.len() > self.limits.idle {
            // One whose request is in its socket already leaves the idle
            // ones at its readable event, queued: the oldest without one
            // goes.
            let oldest = self.idle.iter().copied().find(|&t| {
                self.slab
                    .get(t)
                    .is_some_and(|c| !fd::readable_now(&c.stream).unwrap_or(false))
            });
            if let Some(oldest) = oldest {
                debug!("{} idle clients: closing the oldest", self.idle.len());
                let why = format!(
                    "closed: {} connections without a request, the oldest goes first",
                    self.limits.idle
                );
                self.close_idle(registry, oldest, &why);
            }
        }
        incoming
    }

    /// Out of fds: gives up the spare one to accept a connection and tell
    /// it so. False when there is no spare fd to give.
    fn refuse_for_want_of_fds(&mut self, listener: &UnixListener, now: Instant) -> bool {
        let Some(spare) = self.spare.take() else {
            return false;
        };
        drop(spare);
        if let Ok((mut stream, _)) = listener.accept() {
            let line =
                Reply::Error("the daemon is out of file descriptors; try again later".into());
            let _ = stream.write(&line.into_line());
        }
        self.spare = spare_fd();
        match self.out_of_fds.check(now) {
            Verdict::Log | Verdict::LogAfterDropped(_) => {
                warn!("out of file descriptors: refusing API clients")
            }
            Verdict::Drop => {}
        }
        self.spare.is_some()
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
        if c.streaming {
            // It has nothing more to say: what it sends is dropped, and
            // its end of the stream ends it.
            if readable {
                gone |= discard_input(&mut c.stream);
            }
            gone |= hung_up;
        } else if readable && !c.answered && c.waiting.is_none() {
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
            // Edge-triggered: a hang-up that came with the request is not
            // reported again; its answer cannot be read anyway.
            c.hung_up = hung_up;
            // No longer idle: the loop answers it or has it wait.
            self.forget_idle(token);
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

    /// Whether one more client may wait for `kind`; else the answer to
    /// give it now.
    pub fn room(&self, kind: Wait) -> Result<(), String> {
        let (count, limit, what) = match kind {
            Wait::Change => (
                self.changing,
                self.limits.changing,
                "start, stop and restart requests in progress",
            ),
            Wait::Exit => (
                self.exiting,
                self.limits.exiting,
                "clients waiting for a container to exit",
            ),
        };
        if count >= limit {
            return Err(format!("too many {what} ({limit}); try again later"));
        }
        Ok(())
    }

    fn count(&mut self, kind: Wait) -> &mut usize {
        match kind {
            Wait::Change => &mut self.changing,
            Wait::Exit => &mut self.exiting,
        }
    }

    /// Queues an answer; the client is closed once it is written, and is
    /// idle (with a deadline to read it) until then.
    pub fn answer(&mut self, registry: &Registry, client: ClientId, reply: Reply) {
        let t = token(client);
        let Some(c) = self.slab.get_mut(t) else {
            return;
        };
        c.outbox.push(&reply.into_line());
        c.answered = true;
        let waited = c.waiting.take();
        let done = Self::flush(c);
        if !done {
            c.since = Instant::now();
            let _ = registry.reregister(&mut c.stream, t, Interest::READABLE | Interest::WRITABLE);
        }
        if let Some(kind) = waited {
            *self.count(kind) -= 1;
        }
        if done {
            self.close(registry, client);
        } else if !self.idle.contains(&t) {
            self.idle.push_back(t);
        }
    }

    /// The request was not answered: the client waits for a container
    /// (the loop checked `room` first). A client that hung up with its
    /// request is closed instead (`Incoming::Gone`).
    pub fn wait(&mut self, registry: &Registry, client: ClientId, kind: Wait) -> Option<Incoming> {
        let t = token(client);
        let c = self.slab.get_mut(t)?;
        if c.answered {
            return None;
        }
        c.waiting = Some(kind);
        let hung_up = c.hung_up;
        *self.count(kind) += 1;
        self.forget_idle(t);
        if hung_up {
            return self.close(registry, client);
        }
        None
    }

    fn forget_idle(&mut self, t: Token) {
        if let Some(i) = self.idle.iter().position(|&x| x == t) {
            self.idle.remove(i);
        }
    }

    /// The request was `events`: the client streams from now on, starting
    /// with `first` (the answer and the kept events it asked for).
    pub fn stream(&mut self, registry: &Registry, client: ClientId, first: &[u8]) {
        let t = token(client);
        if self.slab.get(t).is_none() {
            return;
        }
        if self.streams >= MAX_STREAMS {
            let why = format!("too many clients streaming events ({MAX_STREAMS}); try again later");
            return self.answer(registry, client, Reply::Error(why));
        }
        let Some(c) = self.slab.get_mut(t) else {
            return;
        };
        c.streaming = true;
        let hung_up = c.hung_up;
        self.streams += 1;
        self.forget_idle(t);
        if hung_up {
            self.close(registry, client);
            return;
        }
        self.send(registry, t, first);
    }

    /// Sends `line` to every streaming client; one that has more than
    /// `MAX_STREAM_BUFFER` bytes unread is closed.
    pub fn publish(&mut self, registry: &Registry, line: &[u8]) {
        let streaming: Vec<Token> = self
            .slab
            .iter()
            .filter(|(_, c)| c.streaming)
            .map(|(t, _)| t)
            .collect();
        for t in streaming {
            self.send(registry, t, line);
        }
    }

    fn send(&mut self, registry: &Registry, t: Token, bytes: &[u8]) {
        let Some(c) = self.slab.get_mut(t) else {
            return;
        };
        let was_empty = c.outbox.is_empty();
        c.outbox.push(bytes);
        if c.outbox.len() > MAX_STREAM_BUFFER {
            debug!("closing an events client that does not keep up");
            self.close(registry, id(t));
            return;
        }
        match c.outbox.flush_to(&mut c.stream) {
            Ok(true) if !was_empty => {
                let _ = registry.reregister(&mut c.stream, t, Interest::READABLE);
            }
            Ok(true) => {}
            Ok(false) => {
                let _ =
                    registry.reregister(&mut c.stream, t, Interest::READABLE | Interest::WRITABLE);
            }
            Err(_) => {
                self.close(registry, id(t));
            }
        }
    }

    /// Closes a client; says so if it was waiting for a container.
    fn close(&mut self, registry: &Registry, client: ClientId) -> Option<Incoming> {
        let t = token(client);
        let mut c = self.slab.remove(t)?;
        let _ = registry.deregister(&mut c.stream);
        if c.streaming {
            self.streams -= 1;
        }
        match c.waiting {
            Some(kind) => {
                *self.count(kind) -= 1;
                Some(Incoming::Gone(client))
            }
            None => {
                self.forget_idle(t);
                None
            }
        }
    }

    /// Closes an idle client, telling it `why` if it has had no answer.
    fn close_idle(&mut self, registry: &Registry, t: Token, why: &str) {
        if let Some(c) = self.slab.get_mut(t) {
            if !c.answered {
                let _ = c.stream.write(&Reply::Error(why.to_string()).into_line());
            }
        }
        self.close(registry, id(t));
    }

    pub fn deadline(&self) -> Option<Instant> {
        let oldest = self.idle.iter().find_map(|&t| self.slab.get(t))?;
        Some(oldest.since + IDLE_TIMEOUT)
    }

    /// Closes idle clients whose time is up: no whole request, or an
    /// answer not read, within `IDLE_TIMEOUT`.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        while let Some(&t) = self.idle.front() {
            match self.slab.get(t) {
                Some(c) if c.since + IDLE_TIMEOUT > now => break,
                Some(_) => {
                    debug!("closing an idle client");
                    let why = format!(
                        "closed: no request within {} s of connecting",
                        IDLE_TIMEOUT.as_secs()
                    );
                    self.close_idle(registry, t, &why);
                }
                None => {
                    self.idle.pop_front();
                }
            }
        }
    }
}

/// Reads and drops what a streaming client sends; true when it has hung
/// up (or its socket failed).
fn discard_input(stream: &mut UnixStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 512];
    // Bounded: a client that writes without end is read from again on
    // its next event.
    for _ in 0..64 {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream as StdStream;
    use std::path::Path;

    use mio::Poll;

    use crate::testing::TempDir;

    #[test]
    fn limits_follow_the_open_files_limit() {
        assert_eq!(Limits::for_open_files(1 << 20), Limits::DEFAULT);
        assert_eq!(Limits::for_open_files(Limits::OPEN_FILES), Limits::DEFAULT);
        assert_eq!(Limits::for_open_files(2560), Limits::DEFAULT);
        let small = Limits::for_open_files(1024);
        assert_eq!(
            small,
            Limits {
                idle: 85,
                changing: 85,
                exiting: 341
            }
        );
        assert!(small.idle + small.changing + small.exiting <= 512);
        let tiny = Limits::for_open_files(16);
        assert_eq!((tiny.idle, tiny.changing, tiny.exiting), (4, 4, 5));
    }

    /// A listener in a temp dir, its poll, and the clients component.
    struct Setup {
        _dir: TempDir,
        path: std::path::PathBuf,
        poll: Poll,
        listener: UnixListener,
        clients: Clients,
    }

    fn setup(limits: Limits) -> Setup {
        let dir = TempDir::new("clients");
        let path = dir.0.join("api.sock");
        let access =
            Access::new(None, Path::new("/nonexistent"), Path::new("daemon.json")).unwrap();
        let poll = Poll::new().unwrap();
        let mut listener = access.bind(&path).unwrap();
        poll.registry()
            .register(
                &mut listener,
                tokens::fixed(Tag::Listener),
                Interest::READABLE,
            )
            .unwrap();
        Setup {
            _dir: dir,
            path,
            poll,
            listener,
            clients: Clients::new(access, limits),
        }
    }

    impl Setup {
        fn connect(&self) -> StdStream {
            StdStream::connect(&self.path).unwrap()
        }

        fn accept(&mut self) -> Vec<Incoming> {
            self.clients
                .accept(&mut self.listener, self.poll.registry())
        }
    }

    fn answer_of(stream: &mut StdStream) -> String {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut s = String::new();
        stream.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn a_new_connection_closes_the_oldest_idle_one_when_all_are_taken() {
        let limits = Limits {
            idle: 3,
            changing: 1,
            exiting: 1,
        };
        let mut s = setup(limits);
        let mut idle: Vec<StdStream> = (0..3).map(|_| s.connect()).collect();
        assert!(s.accept().is_empty());
        assert_eq!(s.clients.idle.len(), 3);
        // One that sends its request along is not idle and closes none.
        let mut busy = s.connect();
        busy.write_all(b"{\"verb\":\"ps\"}\n").unwrap();
        let incoming = s.accept();
        assert!(
            matches!(&incoming[..], [Incoming::Request(_, Ok(r))] if r.verb == "ps"),
            "{incoming:?}"
        );
        assert_eq!(s.clients.idle.len(), 3);
        // A fourth idle one: the oldest goes.
        idle.push(s.connect());
        assert!(s.accept().is_empty());
        assert_eq!(s.clients.idle.len(), 3);
        let said = answer_of(&mut idle[0]);
        assert!(said.contains("the oldest goes first"), "{said}");
        // The others are still open.
        for (i, other) in idle.iter_mut().enumerate().skip(1) {
            other.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 1];
            let still = other.read(&mut buf);
            assert!(
                still.is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock),
                "idle client {i} was closed too"
            );
        }
    }

    #[test]
    fn an_idle_client_whose_request_is_on_its_way_is_not_the_one_closed() {
        let limits = Limits {
            idle: 2,
            changing: 1,
            exiting: 1,
        };
        let mut s = setup(limits);
        let mut idle: Vec<StdStream> = (0..2).map(|_| s.connect()).collect();
        assert!(s.accept().is_empty());
        // The oldest sends its request; the loop has not read it yet.
        idle[0].write_all(b"{\"verb\":\"ps\"}\n").unwrap();
        idle.push(s.connect());
        assert!(s.accept().is_empty());
        let said = answer_of(&mut idle[1]);
        assert!(said.contains("the oldest goes first"), "{said}");
        idle[0].set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let still = idle[0].read(&mut buf);
        assert!(
            still.is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock),
            "the client with a request was closed"
        );
    }

    #[test]
    fn waiting_clients_have_their_own_limits_and_leave_the_idle_ones() {
        let limits = Limits {
            idle: 8,
            changing: 1,
            exiting: 2,
        };
        let mut s = setup(limits);
        let mut streams = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..4 {
            let mut c = s.connect();
            c.write_all(b"{\"verb\":\"wait\",\"name\":\"x\"}\n")
                .unwrap();
            streams.push(c);
            for i in s.accept() {
                let Incoming::Request(id, _) = i else {
                    panic!("{i:?}")
                };
                ids.push(id);
            }
        }
        assert_eq!(ids.len(), 4);
        let registry = s.poll.registry();
        assert_eq!(s.clients.room(Wait::Exit), Ok(()));
        assert!(s.clients.wait(registry, ids[0], Wait::Exit).is_none());
        assert!(s.clients.wait(registry, ids[1], Wait::Exit).is_none());
        let full = s.clients.room(Wait::Exit).unwrap_err();
        assert!(
            full.contains("waiting for a container to exit (2)"),
            "{full}"
        );
        // Another kind still has room, and so do idle clients.
        assert_eq!(s.clients.room(Wait::Change), Ok(()));
        assert!(s.clients.wait(registry, ids[2], Wait::Change).is_none());
        assert!(s.clients.room(Wait::Change).is_err());
        // None of them idle: each came with its request.
        assert!(s.clients.idle.is_empty());
        // An answer frees the slot and closes the client once written.
        s.clients.answer(registry, ids[0], Reply::Ok);
        assert_eq!(s.clients.room(Wait::Exit), Ok(()));
        assert!(answer_of(&mut streams[0]).contains("\"ok\":true"));
        // A waiting client that goes is reported gone, and frees its slot.
        let gone = s.clients.close(registry, ids[2]);
        assert!(matches!(gone, Some(Incoming::Gone(id)) if id == ids[2]));
        assert_eq!(s.clients.room(Wait::Change), Ok(()));
    }

    #[test]
    fn idle_clients_expire_oldest_first_and_waiting_ones_never() {
        let limits = Limits::DEFAULT;
        let mut s = setup(limits);
        let mut quiet = s.connect();
        let mut waiting = s.connect();
        waiting
            .write_all(b"{\"verb\":\"wait\",\"name\":\"x\"}\n")
            .unwrap();
        let incoming = s.accept();
        let [Incoming::Request(id, _)] = &incoming[..] else {
            panic!("{incoming:?}")
        };
        let registry = s.poll.registry();
        s.clients.wait(registry, *id, Wait::Exit);
        let deadline = s.clients.deadline().unwrap();
        s.clients
            .expire(registry, deadline - Duration::from_millis(1));
        assert_eq!(s.clients.idle.len(), 1);
        s.clients.expire(registry, deadline);
        assert!(s.clients.idle.is_empty());
        assert_eq!(s.clients.deadline(), None);
        assert!(answer_of(&mut quiet).contains("no request within 5 s"));
        assert_eq!(s.clients.exiting, 1);
        waiting.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        assert!(
            waiting
                .read(&mut buf)
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
        );
    }

    #[test]
    fn a_streaming_client_gets_each_line_and_one_that_falls_behind_is_closed() {
        let mut s = setup(Limits::DEFAULT);
        let mut ids = Vec::new();
        let mut streams = Vec::new();
        for _ in 0..2 {
            let mut c = s.connect();
            c.write_all(b"{\"verb\":\"events\"}\n").unwrap();
            streams.push(c);
            for i in s.accept() {
                let Incoming::Request(id, Ok(r)) = i else {
                    panic!("{i:?}")
                };
                assert_eq!(r.verb, "events");
                ids.push(id);
            }
        }
        let registry = s.poll.registry();
        for &id in &ids {
            s.clients.stream(registry, id, b"{\"ok\":true}\n");
        }
        assert_eq!(ids.len(), 2, "{ids:?}");
        let (mut reader, _slow) = (streams.remove(0), streams.remove(0));
        assert_eq!(s.clients.streams, 2);
        // Streaming clients are not idle: no timeout closes them.
        assert!(s.clients.idle.is_empty());
        s.clients.publish(registry, b"one\n");
        let mut got = vec![0u8; 16];
        reader
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = reader.read(&mut got).unwrap();
        assert_eq!(&got[..n], b"{\"ok\":true}\none\n");
        // The slow one reads nothing: past its buffer it is closed, and
        // publishing never blocks on it.
        let line = vec![b'x'; 4096];
        let mut drained = 0;
        for _ in 0..(2 * MAX_STREAM_BUFFER / line.len()) {
            s.clients.publish(registry, &line);
            // The reader keeps up.
            reader.set_nonblocking(true).unwrap();
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                drained += n;
            }
        }
        assert_eq!(s.clients.streams, 1, "the slow client is still there");
        assert!(drained >= MAX_STREAM_BUFFER, "{drained}");
        // A client that hangs up is gone too.
        drop(reader);
        let token = token(ids[0]);
        assert!(
            s.clients
                .event(registry, token, true, false, false)
                .is_none()
        );
        assert_eq!(s.clients.streams, 0);
    }

    #[test]
    fn calls_wait_for_what_they_ask() {
        let start = |wait| Call::Start {
            name: "x".into(),
            wait,
        };
        assert_eq!(Wait::of(&start(false)), Some(Wait::Change));
        assert_eq!(Wait::of(&start(true)), Some(Wait::Exit));
        assert_eq!(Wait::of(&Call::Wait { name: "x".into() }), Some(Wait::Exit));
        assert_eq!(Wait::of(&Call::Ps), None);
        assert_eq!(Wait::of(&Call::Version), None);
    }
}
