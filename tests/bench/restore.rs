//! Benchmark (not a test): how fast berth starts containers and re-attaches
//! to them after a crash, and how much memory it holds.
//!
//! `cargo bench --bench restore [-- N...]` (as root). For each N (default
//! 1, 10, 50): start N containers, then ROUNDS times (env
//! `BERTH_BENCH_ROUNDS`, default 5) kill -9 the daemon, start a new one and
//! time from its exec to the first `ps` that shows all N running with
//! their old pids (median and range). Also prints the start latency per
//! container, the memory of the daemon (RSS, PSS, private dirty, and the
//! mappings that hold it) and of one monitor, and the binary's size.
//!
//! `BERTH_BENCH_HOLD=FILE` stops after the starts until FILE exists, for
//! a look from outside.
//!
//! `BERTH_BENCH_STRACE=DIR` adds one round with the new daemon under
//! `strace -c -f` (a figure the machine's load does not change): from its
//! exec through restore and one `ps` that shows all N running, the
//! system calls it made, written to DIR/strace-N.txt and summed up
//! (`BERTH_BENCH_STRACE_ARGS` replaces `-c -f`, e.g. `-f` for every call).
//!
//! The binary measured is `BERTH_BIN` if set, else the static musl build
//! (`cross/build x86_64-unknown-linux-musl`) if there is one, else the
//! binary cargo built for this bench.

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// The daemon's mappings that hold 8 KiB or more: name, RSS, private
/// dirty (KiB), largest RSS first.
fn mappings(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(String, u64, u64)> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let name = words.nth(4).unwrap_or("[anon]");
            let perms = line.split_whitespace().nth(1).unwrap_or("");
            let short = Path::new(name)
                .file_name()
                .map_or(name.to_string(), |f| f.to_string_lossy().into_owned());
            maps.push((format!("{short} {perms}"), 0, 0));
        } else if let Some(m) = maps.last_mut() {
            let mut kib = || {
                words
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            match first {
                "Rss:" => m.1 = kib(),
                "Private_Dirty:" => m.2 = kib(),
                _ => {}
            }
        }
    }
    maps.retain(|m| m.1 >= 8);
    maps.sort_by_key(|m| std::cmp::Reverse(m.1));
    maps.iter()
        .map(|(name, rss, dirty)| format!("{name} {rss}/{dirty}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `berth ps --json`, waited for without polling.
fn ps(w: &World) -> Option<Vec<Inspect>> {
    let out = w
        .client_command()
        .arg("--config")
        .arg(w.config_path())
        .args(["ps", "--json"])
        .output()
        .expect("run berth ps");
    if !out.status.success() {
        return None;
    }
    nanoserde::DeJson::deserialize_json(String::from_utf8_lossy(&out.stdout).trim()).ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run(n: usize, rounds: usize) {
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

    let daemon_maps = mappings(daemon.pid());
    // For a look from outside (strace, perf): the world stays as it is
    // until the file `BERTH_BENCH_HOLD` names exists.
    if let Some(hold) = std::env::var_os("BERTH_BENCH_HOLD") {
        println!(
            "holding: config {}, daemon pid {}; create {} to go on",
            w.config_path().display(),
            daemon.pid(),
            Path::new(&hold).display()
        );
        while !Path::new(&hold).exists() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut restores = Vec::new();
    let mut insides = Vec::new();
    let mut cpus = Vec::new();
    let mut polls = 0;
    for _ in 0..rounds {
        daemon.kill_9();
        let t0 = Instant::now();
        daemon = w.spawn_daemon(&[]);
        loop {
            polls += 1;
            let same = ps(&w).is_some_and(|list| {
                list.len() == n
                    && list.iter().all(|c| {
                        c.is_running() && before.iter().any(|b| b.name == c.name && b.pid == c.pid)
                    })
            });
            if same {
                break;
            }
            assert!(
                t0.elapsed() < LONG,
                "restore of {n} containers did not finish"
            );
        }
        restores.push(t0.elapsed());
        cpus.push(sys::cpu_time(daemon.pid()));
        let ready = daemon.wait_for_log_line(&["ready on", "restore took"]);
        let inside: f64 = ready
            .rsplit("restore took ")
            .next()
            .and_then(|t| t.trim_end_matches(" ms)").parse().ok())
            .unwrap_or(f64::NAN);
        insides.push(Duration::from_secs_f64(inside / 1000.0));
    }
    // What a `ps` costs once the daemon runs (client exec included).
    let mut pss = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        assert!(ps(&w).is_some_and(|l| l.len() == n), "ps after restore");
        pss.push(t.elapsed());
    }
    let range = |v: &[Duration]| {
        let min = v.iter().min().copied().unwrap_or_default();
        let max = v.iter().max().copied().unwrap_or_default();
        format!("{:.1}-{:.1}", ms(min), ms(max))
    };
    println!(
        "{n:>3} containers: start (API request to answer, exec done) median {:.1} ms",
        ms(median(starts)),
    );
    println!(
        "    kill -9, restart, first `berth ps` showing all {n} running with their pids: median {:.1} ms, range {} ms ({rounds} rounds, {polls} ps calls)",
        ms(median(restores.clone())),
        range(&restores),
    );
    println!(
        "    of which inside the daemon, reading and checking {n} records: median {:.1} ms, range {} ms",
        ms(median(insides.clone())),
        range(&insides),
    );
    println!(
        "    the new daemon's CPU time from exec to that `ps` answered: median {:.1} ms, range {} ms",
        ms(median(cpus.clone())),
        range(&cpus),
    );
    println!(
        "    then `berth ps --json` (client exec to exit): median {:.1} ms, range {} ms",
        ms(median(pss.clone())),
        range(&pss),
    );
    if let Some(dir) = std::env::var_os("BERTH_BENCH_STRACE") {
        daemon = traced_round(&w, daemon, &before, Path::new(&dir));
    }
    drop(daemon);
    println!("    daemon with {n} containers: {daemon_mem}");
    println!("      mappings (RSS/private dirty KiB): {daemon_maps}");
    println!("    one monitor: {monitor_mem}");
}

/// One more kill -9 and restart, the new daemon under `strace -c -f`:
/// restore, then one `ps` (sent once the daemon says it is ready) that
/// must show all of `before` running with the same pids; then the daemon
/// is killed so that strace writes its table. Prints the total and the
/// busiest calls; leaves a daemon running as before.
fn traced_round(w: &World, mut daemon: Daemon, before: &[Inspect], dir: &Path) -> Daemon {
    let n = before.len();
    let out = dir.join(format!("strace-{n}.txt"));
    let wrapper = dir.join("berth-traced");
    let real = berth_bin();
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = daemon ] && exec strace {} -o '{}' '{}' \"$@\"\nexec '{}' \"$@\"\n",
            std::env::var("BERTH_BENCH_STRACE_ARGS").unwrap_or_else(|_| "-c -f".to_string()),
            out.display(),
            real.display(),
            real.display()
        ),
    )
    .expect("write the strace wrapper");
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    daemon.kill_9();
    // SAFETY: the bench runs no other thread.
    unsafe { std::env::set_var("BERTH_BIN", &wrapper) };
    let mut traced = w.spawn_daemon(&[]);
    // SAFETY: as above.
    unsafe { std::env::set_var("BERTH_BIN", &real) };
    traced.wait_for_log_line(&["ready on"]);
    let list = ps(w).expect("ps of the traced daemon");
    assert!(
        list.len() == n
            && list.iter().all(|c| {
                c.is_running() && before.iter().any(|b| b.name == c.name && b.pid == c.pid)
            }),
        "the traced daemon re-attached to all {n}"
    );
    // strace's child is the daemon.
    let strace = traced.pid();
    let children = fs::read_to_string(format!("/proc/{strace}/task/{strace}/children"))
        .expect("strace's children");
    let pid: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the traced daemon's pid");
    // SAFETY: kill(2) on the traced daemon, strace's unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    traced.wait_exit(SHORT);
    let table = fs::read_to_string(&out).unwrap_or_default();
    let total = table
        .lines()
        .find(|l| l.trim_end().ends_with("total"))
        .unwrap_or("")
        .split_whitespace()
        .nth(3)
        .unwrap_or("?")
        .to_string();
    let mut rows: Vec<(u64, String)> = table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let calls = f.get(3)?.parse().ok()?;
            let name = f.last()?.to_string();
            (name != "total").then_some((calls, name))
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let top: Vec<String> = rows
        .iter()
        .take(8)
        .map(|(c, s)| format!("{s} {c}"))
        .collect();
    println!(
        "    under strace -c -f, restore and one `ps`: {total} system calls ({}); table in {}",
        top.join(", "),
        out.display()
    );
    w.start_daemon(&[])
}

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ns = if ns.is_empty() { vec![1, 10, 50] } else { ns };
    let rounds = std::env::var("BERTH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let musl = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release/berth");
    if std::env::var_os("BERTH_BIN").is_none() && musl.exists() {
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var("BERTH_BIN", &musl) };
    }
    let bin = berth_bin();
    let size = fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!("berth binary {}: {} KiB", bin.display(), size / 1024);
    for n in ns {
        run(n, rounds);
    }
}
