//! Benchmark (not a test): TCP throughput through a published port
//! against host networking.
//!
//! `cargo bench --bench network [-- RUNS [MIB]]` (as root; default 7 runs
//! of 256 MiB each). Everything happens in a lab (tests/common/netlab.rs):
//! the daemon in the device namespace, the sender a thread of the bench in
//! the outside namespace writing MIB MiB in 256 KiB writes to the device's
//! uplink 192.0.2.2, half-closing and waiting for the receiver to close;
//! each run is timed from the connect to that close.
//! - published: a container on a bridge network with the port published
//!   (uplink -> DNAT -> bridge -> veth -> the container's namespace);
//! - host: a container with `network: "host"` listening in the device
//!   namespace itself.
//!
//! Each path has two receivers, so the network path can be told from the
//! receiver's own cost: busybox `nc -l` inside the container writing to
//! /dev/null (small reads: about 400 MiB/s on loopback here, so it bounds
//! what it sees), and the bench's own thread in the container's network
//! namespace reading 256 KiB at a time (the kernel's path alone). The four
//! series are interleaved run by run.

#[path = "../common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::netlab::{Lab, UPLINK, in_namespace, ns_of};
use common::*;

const CHUNK: usize = 256 * 1024;
const MIB: usize = 1024 * 1024;

/// A container receiving one connection at a time on `port` with busybox
/// nc into /dev/null. nc's stdin is a FIFO nobody writes, so it never
/// half-closes early: it closes when the sender has, after reading all.
fn nc_sink(port: u16) -> Vec<String> {
    let script = format!(
        "trap 'exit 0' TERM; mkfifo /tmp/in; \
         while :; do nc -l -p {port} <>/tmp/in >/dev/null & wait $!; done"
    );
    ["/bin/sh", "-c", &script]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The bench's own receiver: a thread in a network namespace accepting
/// connections on a port, reading each to its end 256 KiB at a time and
/// recording how many bytes it got.
struct Sink {
    got: Arc<Mutex<Vec<usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start(ns: &Path, port: u16) -> Sink {
        let ns = File::open(ns).unwrap_or_else(|e| panic!("open {}: {e}", ns.display()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_got, thread_stop) = (got.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            sys::join_net_namespace(&ns).expect("setns");
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind the sink");
            listener.set_nonblocking(true).expect("nonblocking");
            ready_tx.send(()).expect("ready");
            let mut buf = vec![0u8; CHUNK];
            while !thread_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).expect("blocking");
                        let mut total = 0;
                        loop {
                            match stream.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => total += n,
                                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                                Err(e) => panic!("sink read: {e}"),
                            }
                        }
                        thread_got.lock().unwrap().push(total);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("sink accept: {e}"),
                }
            }
        });
        ready_rx.recv().expect("the sink thread");
        Sink {
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn last(&self) -> Option<usize> {
        self.got.lock().unwrap().last().copied()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends `bytes` to `to` from the outside namespace (retrying the connect
/// while nobody listens yet); the time from the connect to the
/// receiver's close.
fn send(lab: &Lab, to: SocketAddr, bytes: usize) -> Duration {
    in_namespace(lab.outside(), || {
        let end = Instant::now() + SHORT;
        let mut stream = loop {
            match TcpStream::connect_timeout(&to, SHORT) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() > end => panic!("connect to {to}: {e}"),
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        };
        let start = Instant::now();
        stream.set_read_timeout(Some(LONG)).expect("read timeout");
        let chunk = vec![0x5au8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK);
            stream
                .write_all(&chunk[..n])
                .unwrap_or_else(|e| panic!("send to {to}: {e}"));
            left -= n;
        }
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut rest = [0u8; 16];
        let n = stream
            .read(&mut rest)
            .unwrap_or_else(|e| panic!("wait for {to} to close: {e}"));
        assert_eq!(n, 0, "the receiver at {to} sent something back");
        start.elapsed()
    })
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn show(label: &str, bytes: usize, v: &[Duration]) -> f64 {
    let rates: Vec<f64> = v.iter().map(|d| mib_per_s(bytes, *d)).collect();
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    let med = mib_per_s(bytes, median(v.to_vec()));
    println!("  {label:<30} median {med:8.1} MiB/s   range {min:8.1} .. {max:8.1} MiB/s");
    med
}

fn main() {
    let mut numbers = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse::<usize>().ok());
    let runs = numbers.next().unwrap_or(7);
    let mib = numbers.next().unwrap_or(256);
    let bytes = mib * MIB;

    let lab = Lab::new();
    let mut w = World::new();
    std::os::unix::fs::symlink("busybox", w.rootfs().join("bin/nc")).expect("link nc");
    std::os::unix::fs::symlink("busybox", w.rootfs().join("bin/mkfifo")).expect("link mkfifo");
    w.write_daemon_json(
        r#"{"log-level": "warn", "networks": {"lan": {"bridge": "berth0", "subnet": "10.88.0.0/24"}}}"#,
    );
    let tmp = r#""mounts": [{"type": "tmpfs", "target": "/tmp"}]"#;
    let published = nc_sink(9000);
    let published: Vec<&str> = published.iter().map(String::as_str).collect();
    w.add_container(
        "published",
        &published,
        &format!(r#"{{"network": "lan", "ports": ["9000:9000", "9100:9100"], {tmp}}}"#),
    );
    let host = nc_sink(9001);
    let host: Vec<&str> = host.iter().map(String::as_str).collect();
    w.add_container("host", &host, &format!(r#"{{"network": "host", {tmp}}}"#));
    let _daemon = lab.start_daemon(&w, &[]);
    let bridged = w.wait_running("published");
    w.wait_running("host");
    let bridged_sink = Sink::start(&ns_of(bridged.pid), 9100);
    let host_sink = Sink::start(lab.device(), 9101);

    let to = |port| SocketAddr::from((UPLINK, port));
    let series = [
        ("published, busybox nc", to(9000), None),
        ("host, busybox nc", to(9001), None),
        ("published, in-process", to(9100), Some(&bridged_sink)),
        ("host, in-process", to(9101), Some(&host_sink)),
    ];
    // One warm-up run each, not counted.
    for (_, addr, _) in &series {
        send(&lab, *addr, bytes.min(16 * MIB));
    }
    let mut times = vec![Vec::new(); series.len()];
    for _ in 0..runs {
        for (i, (label, addr, sink)) in series.iter().enumerate() {
            times[i].push(send(&lab, *addr, bytes));
            if let Some(sink) = sink {
                assert_eq!(
                    sink.last(),
                    Some(bytes),
                    "{label}: the sink got another count"
                );
            }
        }
    }
    println!(
        "TCP from the outside namespace to 192.0.2.2, {mib} MiB per run, {runs} runs each, interleaved:"
    );
    let med: Vec<f64> = series
        .iter()
        .zip(&times)
        .map(|((label, ..), t)| show(label, bytes, t))
        .collect();
    println!(
        "  published / host: busybox nc {:.2}x, in-process {:.2}x",
        med[0] / med[1],
        med[2] / med[3]
    );
    drop(bridged_sink);
    drop(host_sink);
    w.cleanup().unwrap();
}
