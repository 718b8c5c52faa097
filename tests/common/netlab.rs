//! The network world of one test: a "device" network namespace (where the
//! daemon runs, as on an edge device) and an "outside" one (the LAN the
//! device sits on), each held by a `sleep` the lab started in it, joined
//! by a veth pair the lab made: outside `lan0` 192.0.2.1/24, device `wan0`
//! 192.0.2.2/24 with a default route via 192.0.2.1, `lo` up in both.
//!
//! Helpers run a command or a closure in any network namespace (the lab's
//! or a container's, named by a path such as /proc/PID/ns/net), serve TCP
//! and UDP echo that report the peer address they saw, ask such servers,
//! and start a berth daemon in the device namespace.
//!
//! Dropping a `Lab` ends its two holders by pid (they are its unreaped
//! children), which takes the namespaces and all in them (the veth pair,
//! bridges and rules made there) away once nothing else holds them.
//! Nothing outside the lab's namespaces is ever changed: every `ip` and
//! `nft` runs inside one of them.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{Daemon, SHORT, World, describe, sys};

/// The outside namespace's address on the veth pair.
pub const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The device's uplink address (what NAT makes the outside see).
pub const UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The device's end of the veth pair (its uplink).
pub const DEVICE_LINK: &str = "wan0";
/// The outside's end of the veth pair.
pub const OUTSIDE_LINK: &str = "lan0";
/// How long one exchange with an echo server may take.
const EXCHANGE: Duration = Duration::from_secs(2);

/// A process holding a network namespace of its own.
struct Holder {
    child: Child,
    ns: PathBuf,
}

impl Holder {
    fn start() -> Holder {
        let mut cmd = Command::new("sleep");
        cmd.arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        sys::new_net_namespace_before_exec(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start a namespace holder (sleep infinity): {e}"));
        let ns = ns_of(child.id());
        let holder = Holder { child, ns };
        let (ours, its) = (
            std::fs::read_link("/proc/self/ns/net").expect("readlink /proc/self/ns/net"),
            std::fs::read_link(&holder.ns).expect("readlink the holder's ns"),
        );
        assert_ne!(ours, its, "the holder did not get a namespace of its own");
        holder
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Our unreaped child: its pid cannot have been reused.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test's device and outside namespaces; see the module comment.
pub struct Lab {
    device: Holder,
    outside: Holder,
}

impl Lab {
    /// Makes both namespaces and the link between them; panics naming the
    /// step that failed.
    pub fn new() -> Lab {
        let lab = Lab {
            device: Holder::start(),
            outside: Holder::start(),
        };
        let outside_pid = lab.outside.child.id().to_string();
        let dev = lab.device();
        let out = lab.outside();
        let peer = [
            "link",
            "add",
            DEVICE_LINK,
            "type",
            "veth",
            "peer",
            "name",
            OUTSIDE_LINK,
            "netns",
            &outside_pid,
        ];
        ip(dev, &peer);
        ip(out, &["link", "set", "lo", "up"]);
        ip(
            out,
            &["addr", "add", &format!("{OUTSIDE}/24"), "dev", OUTSIDE_LINK],
        );
        ip(out, &["link", "set", OUTSIDE_LINK, "up"]);
        ip(dev, &["link", "set", "lo", "up"]);
        ip(
            dev,
            &["addr", "add", &format!("{UPLINK}/24"), "dev", DEVICE_LINK],
        );
        ip(dev, &["link", "set", DEVICE_LINK, "up"]);
        ip(
            dev,
            &["route", "add", "default", "via", &OUTSIDE.to_string()],
        );
        lab
    }

    /// The device namespace (/proc/PID/ns/net of its holder).
    pub fn device(&self) -> &Path {
        &self.device.ns
    }

    /// The outside namespace.
    pub fn outside(&self) -> &Path {
        &self.outside.ns
    }

    /// Makes `cmd` start in the device namespace (a `setup` for
    /// `World::spawn_daemon_with` and `start_daemon_with`).
    pub fn enter_device(&self, cmd: &mut Command) {
        enter(cmd, self.device());
    }

    /// `w.start_daemon(args)`, the daemon in the device namespace.
    pub fn start_daemon(&self, w: &World, args: &[&str]) -> Daemon {
        w.start_daemon_with(args, |cmd| self.enter_device(cmd))
    }

    /// `w.spawn_daemon(args)` (not waiting for it to answer), the daemon in
    /// the device namespace.
    pub fn spawn_daemon(&self, w: &World, args: &[&str]) -> Daemon {
        w.spawn_daemon_with(args, |cmd| self.enter_device(cmd))
    }

    /// The device namespace's interfaces by name.
    pub fn device_links(&self) -> Vec<String> {
        links(self.device())
    }

    /// `nft --stateless list table ip berth` in the device namespace: the
    /// table's text without counter values (so two readings compare), or
    /// None when there is no such table.
    pub fn berth_table(&self) -> Option<String> {
        let args = ["--stateless", "list", "table", "ip", "berth"];
        let out = run(command_in(self.device(), "nft", &args));
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("No such file or directory"),
            "nft {args:?}: {}",
            describe(&out)
        );
        None
    }
}

/// The network namespace of process `pid`.
pub fn ns_of(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

fn open_ns(ns: &Path) -> OwnedFd {
    std::fs::File::open(ns)
        .unwrap_or_else(|e| panic!("open {}: {e}", ns.display()))
        .into()
}

/// Makes `cmd` start in the network namespace `ns`.
pub fn enter(cmd: &mut Command, ns: &Path) {
    sys::join_net_namespace_before_exec(cmd, open_ns(ns));
}

/// `program ARGS`, to be started in the network namespace `ns`.
pub fn command_in(ns: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir("/");
    enter(&mut cmd, ns);
    cmd
}

/// Runs `cmd` to its end (stdin from /dev/null, output collected); kills
/// it and panics if it takes longer than `SHORT`.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr pipe")));
    let end = Instant::now() + SHORT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {SHORT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs `program ARGS` in `ns`, asserts it succeeds, returns its stdout.
pub fn ok_in(ns: &Path, program: &str, args: &[&str]) -> String {
    let out = run(command_in(ns, program, args));
    assert!(
        out.status.success(),
        "{program} {args:?} in {}: {}",
        ns.display(),
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS` in `ns`, asserted to succeed.
pub fn ip(ns: &Path, args: &[&str]) -> String {
    ok_in(ns, "ip", args)
}

/// The interface names in `ns`.
pub fn links(ns: &Path) -> Vec<String> {
    ip(ns, &["-o", "link", "show"])
        .lines()
        .filter_map(|line| {
            // "7: bth1a2b3c4d@if6: <BROADCAST,..." -> "bth1a2b3c4d"
            let name = line.split(": ").nth(1)?;
            Some(name.split('@').next()?.to_string())
        })
        .collect()
}

/// One interface as `ip -o link show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// A veth's peer's ifindex (in the peer's namespace): the N of `@ifN`.
    pub peer: Option<u32>,
}

/// Every interface in `ns` with its ifindex and, for a veth, its peer's.
pub fn link_table(ns: &Path) -> Vec<Link> {
    ip(ns, &["-o", "link", "show"])
        .lines()
        .map(|line| {
            // "7: bth1a2b3c4d@if6: <BROADCAST,..."
            let mut fields = line.split(": ");
            let (index, full) = (fields.next(), fields.next());
            let parsed =
                index
                    .and_then(|i| i.trim().parse().ok())
                    .zip(full)
                    .map(|(index, full)| {
                        let (name, peer) = match full.split_once('@') {
                            Some((name, peer)) => (name, peer.strip_prefix("if")),
                            None => (full, None),
                        };
                        Link {
                            index,
                            name: name.to_string(),
                            peer: peer.and_then(|p| p.parse().ok()),
                        }
                    });
            parsed.unwrap_or_else(|| panic!("an `ip -o link` line: {line:?}"))
        })
        .collect()
}

/// The IPv4 addresses on `dev` in `ns`, as "ADDRESS/PREFIX".
pub fn inet_addresses(ns: &Path, dev: &str) -> Vec<String> {
    ip(ns, &["-4", "-o", "addr", "show", "dev", dev])
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next().map(str::to_string)
        })
        .collect()
}

/// The IPv4 default routes in `ns`, one line each, trimmed.
pub fn default_routes(ns: &Path) -> Vec<String> {
    ip(ns, &["-4", "route", "show", "default"])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs `f` on a fresh thread that has joined the network namespace `ns`
/// (namespaces are per thread: the caller's stays as it is) and returns
/// what it returns; a panic in `f` is the caller's.
pub fn in_namespace<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    let fd = open_ns(ns);
    thread::scope(|scope| {
        let worker = scope.spawn(move || {
            sys::join_net_namespace(&fd)
                .unwrap_or_else(|e| panic!("setns to {}: {e}", ns.display()));
            drop(fd);
            f()
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// One TCP exchange from `ns`: connects to `to`, sends `text`, shuts its
/// sending side and returns everything the other side sent until it
/// closed. Each step has a 2 s limit.
pub fn tcp_ask(ns: &Path, to: SocketAddr, text: &str) -> io::Result<String> {
    in_namespace(ns, || {
        let mut stream = TcpStream::connect_timeout(&to, EXCHANGE)?;
        stream.set_read_timeout(Some(EXCHANGE))?;
        stream.set_write_timeout(Some(EXCHANGE))?;
        stream.write_all(text.as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
}

/// One UDP exchange from `ns`: sends `text` to `to` from an ephemeral port
/// and returns the first datagram that comes back (2 s limit).
pub fn udp_ask(ns: &Path, to: SocketAddr, text: &str) -> io::Result<String> {
    in_namespace(ns, || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(EXCHANGE))?;
        socket.send_to(text.as_bytes(), to)?;
        let mut buf = [0u8; 65536];
        let (n, _) = socket.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// Waits until `ask` returns `Ok` with an answer `check` accepts, and
/// returns it; panics naming `what` and the last result after `deadline`.
pub fn answered(
    deadline: Duration,
    what: &str,
    mut ask: impl FnMut() -> io::Result<String>,
    mut check: impl FnMut(&str) -> bool,
) -> String {
    let end = Instant::now() + deadline;
    loop {
        let last = ask();
        match &last {
            Ok(answer) if check(answer) => return answer.clone(),
            _ if Instant::now() > end => {
                panic!("timed out after {deadline:?} waiting for {what}; last: {last:?}")
            }
            _ => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A TCP or UDP echo server on a thread of its own in some network
/// namespace. Each answer is "PEER TEXT": the address and port the
/// request came from as the server saw it, a space, then what it received
/// (for TCP: up to the first newline or the sender's end, newline
/// included). Dropping it stops the thread.
pub struct Echo {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    /// A TCP echo server bound to `addr` in `ns` (port 0: any free one).
    pub fn tcp(ns: &Path, addr: SocketAddr) -> Echo {
        Echo::start(ns, addr, |listener: TcpListener, peers, stop| {
            listener
                .set_nonblocking(true)
                .expect("nonblocking listener");
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        peers.lock().expect("peers").push(peer);
                        thread::spawn(move || answer_tcp(stream, peer));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("tcp echo accept: {e}"),
                }
            }
        })
    }

    /// A UDP echo server bound to `addr` in `ns` (port 0: any free one).
    pub fn udp(ns: &Path, addr: SocketAddr) -> Echo {
        Echo::start(ns, addr, |socket: UdpSocket, peers, stop| {
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .expect("udp read timeout");
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                match socket.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        peers.lock().expect("peers").push(peer);
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let _ = socket.send_to(format!("{peer} {text}").as_bytes(), peer);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => panic!("udp echo recv: {e}"),
                }
            }
        })
    }

    fn start<S: Bindable>(
        ns: &Path,
        addr: SocketAddr,
        serve: impl FnOnce(S, Arc<Mutex<Vec<SocketAddr>>>, Arc<AtomicBool>) + Send + 'static,
    ) -> Echo {
        let fd = open_ns(ns);
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (bound_tx, bound_rx) = mpsc::channel();
        let (thread_peers, thread_stop) = (peers.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let bound = sys::join_net_namespace(&fd)
                .and_then(|()| S::bind_to(addr))
                .and_then(|socket| Ok((socket.local()?, socket)));
            drop(fd);
            match bound {
                Ok((local, socket)) => {
                    let _ = bound_tx.send(Ok(local));
                    serve(socket, thread_peers, thread_stop);
                }
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                }
            }
        });
        let addr = bound_rx
            .recv()
            .expect("echo server thread")
            .unwrap_or_else(|e| panic!("bind an echo server to {addr} in {}: {e}", ns.display()));
        Echo {
            addr,
            peers,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every peer address it has seen, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().expect("peers").clone()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer_tcp(mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(EXCHANGE));
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while let Ok(1) = stream.read(&mut byte) {
        got.push(byte[0]);
        if byte[0] == b'\n' || got.len() >= 65536 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    let _ = stream.write_all(format!("{peer} {text}").as_bytes());
}

/// A socket an echo server can be bound as.
trait Bindable: Sized + Send + 'static {
    fn bind_to(addr: SocketAddr) -> io::Result<Self>;
    fn local(&self) -> io::Result<SocketAddr>;
}

impl Bindable for TcpListener {
    fn bind_to(addr: SocketAddr) -> io::Result<Self> {
        TcpListener::bind(addr)
    }
    fn local(&self) -> io::Result<SocketAddr> {
        self.local_addr()
    }
}

impl Bindable for UdpSocket {
    fn bind_to(addr: SocketAddr) -> io::Result<Self> {
        UdpSocket::bind(addr)
    }
    fn local(&self) -> io::Result<SocketAddr> {
        self.local_addr()
    }
}
