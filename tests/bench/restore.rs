//! Benchmark (not a test): how fast berth starts containers and re-attaches
//! to them after a crash, and how much memory it holds.
//!
//! `cargo bench --bench restore [-- N...]` (as root). For each N (default
//! 1, 10, 50): start N containers, kill -9 the daemon, start a new one and
//! time from its exec to the first `ps` that shows all N running with
//! their old pids. Also prints the start latency per container, the RSS of
//! the daemon and of one monitor, and the binary's size.

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::time::Instant;

use common::*;

const CMD: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 1; done",
];

fn mem(pid: u32) -> String {
    format!(
        "RSS {} / PSS {} / private dirty {} KiB",
        mem_kib(pid, "Rss"),
        mem_kib(pid, "Pss"),
        mem_kib(pid, "Private_Dirty")
    )
}

fn run(n: usize) {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true, "log-level": "info"}"#);
    for i in 0..n {
        w.add_container(&format!("c{i:02}"), CMD, r#"{"autostart": false}"#);
    }
    let mut daemon = w.start_daemon(&[]);
    // Start latency as a client sees it on the socket: request sent to
    // answer read, which covers spawning the monitor, creating the
    // container and its exec.
    let mut starts = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let answer = api_call(&w, &format!("{{\"verb\":\"start\",\"name\":\"c{i:02}\"}}"));
        starts.push(t.elapsed());
        assert!(answer.contains("\"ok\":true"), "start c{i:02}: {answer}");
    }
    let before = w.ps();
    assert!(
        before.iter().all(|c| c.is_running()),
        "all running before the crash"
    );
    let daemon_mem = mem(daemon.pid());
    let monitor_pid: u32 = {
        let text = fs::read_to_string(w.run_dir().join("containers/c00/runtime.json")).unwrap();
        let at = text.find("\"monitor-pid\":").unwrap() + "\"monitor-pid\":".len();
        text[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let monitor_mem = mem(monitor_pid);

    daemon.kill_9();
    let t0 = Instant::now();
    let daemon_after = w.spawn_daemon(&[]);
    let mut polls = 0;
    loop {
        polls += 1;
        let out = w.berth(&["ps", "--json"]);
        if out.status.success() {
            let list: Vec<Inspect> =
                nanoserde::DeJson::deserialize_json(String::from_utf8_lossy(&out.stdout).trim())
                    .unwrap();
            let same = list.len() == n
                && list.iter().all(|c| {
                    c.is_running() && before.iter().any(|b| b.name == c.name && b.pid == c.pid)
                });
            if same {
                break;
            }
        }
        assert!(
            t0.elapsed() < LONG,
            "restore of {n} containers did not finish"
        );
    }
    let restore = t0.elapsed();
    let ready = daemon_after.wait_for_log_line(&["ready on", "restore took"]);
    let inside = ready
        .rsplit("restore took ")
        .next()
        .unwrap_or("?")
        .trim_end_matches(')');
    println!(
        "{n:>3} containers: start (API request to answer, exec done) median {:.1} ms; kill -9, restart, first `berth ps` showing all {n} running with their pids: {:.1} ms ({polls} ps calls)",
        median(starts).as_secs_f64() * 1000.0,
        restore.as_secs_f64() * 1000.0,
    );
    println!("    of which inside the daemon, reading and checking {n} records: {inside}");
    println!("    daemon with {n} containers: {daemon_mem}");
    println!("    one monitor: {monitor_mem}");
}

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ns = if ns.is_empty() { vec![1, 10, 50] } else { ns };
    let size = fs::metadata(BERTH).map(|m| m.len()).unwrap_or(0);
    println!("berth binary {BERTH}: {} KiB", size / 1024);
    for n in ns {
        run(n);
    }
}
