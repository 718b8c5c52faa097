//! Benchmark (not a test): what operating a device with berth costs.
//!
//! `cargo bench --bench operate [-- RUNS]` (as root; default 50 runs).
//! - exec: `berth exec web /bin/true` from the client's exec to its exit,
//!   against `berth inspect web` (the client's round trip to the daemon
//!   alone), interleaved; median and range.
//! - health checks: a container checked every second (`/bin/true` in it)
//!   beside one without checks, over the same window: each monitor's CPU
//!   time (/proc/PID/schedstat, its own and its reaped children's through
//!   /proc/PID/stat), its context switches, its memory, and the daemon's
//!   wake-ups meanwhile; the checks' own durations from health.json.
//! - start order: a cold boot (daemon exec to all running) of 10
//!   independent containers, and of a chain of 10 (`depends-on`), with the
//!   span of their started-at times.

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

const IDLE: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 1; done",
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn show(label: &str, v: &[Duration]) {
    let min = v.iter().min().copied().unwrap_or_default();
    let max = v.iter().max().copied().unwrap_or_default();
    println!(
        "  {label:<28} median {:8.3} ms   range {:8.3} .. {:8.3} ms",
        ms(median(v.to_vec())),
        ms(min),
        ms(max)
    );
}

/// Runs a client command to its end; the time it took.
fn timed(w: &World, args: &[&str]) -> Duration {
    let mut cmd = w.client_command();
    cmd.arg("--config")
        .arg(w.config_path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let out = w.run_client(cmd, SHORT);
    let took = t.elapsed();
    assert!(out.status.success(), "berth {args:?}: {}", describe(&out));
    took
}

/// A number from a `key: value` line of /proc/PID/status.
fn status_number(pid: u32, key: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field(&text, key).parse().unwrap_or(0)
}

fn switches(pid: u32) -> u64 {
    status_number(pid, "voluntary_ctxt_switches") + status_number(pid, "nonvoluntary_ctxt_switches")
}

/// Nanoseconds on a CPU: the process's own (schedstat) plus its reaped
/// children's (stat fields 16 and 17, in clock ticks).
fn cpu_ns(pid: u32) -> (u64, u64) {
    let own = fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Fields from 3 on; cutime and cstime are fields 16 and 17.
    let fields: Vec<u64> = after_comm
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(13).copied().unwrap_or(0) + fields.get(14).copied().unwrap_or(0);
    (own, ticks * 10_000_000)
}

/// A number field of a container's runtime record.
fn record_number(w: &World, name: &str, key: &str) -> u32 {
    let text =
        fs::read_to_string(w.run_dir().join(format!("containers/{name}/runtime.json"))).unwrap();
    let needle = format!("\"{key}\":");
    let at = text.find(&needle).unwrap() + needle.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The durations of the checks health.json keeps.
fn check_durations(w: &World, name: &str) -> Vec<Duration> {
    let text = fs::read_to_string(w.run_dir().join(format!("containers/{name}/health.json")))
        .unwrap_or_default();
    let numbers = |key: &str| -> Vec<u64> {
        text.match_indices(&format!("\"{key}\":"))
            .filter_map(|(at, m)| {
                text[at + m.len()..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    };
    numbers("start")
        .into_iter()
        .zip(numbers("end"))
        .map(|(s, e)| Duration::from_nanos(e.saturating_sub(s)))
        .collect()
}

fn exec_bench(runs: usize) {
    let mut w = World::new();
    w.write_daemon_json(r#"{"log-level": "warn"}"#);
    w.add_container("web", IDLE, "{}");
    let _daemon = w.start_daemon(&[]);
    w.wait_running("web");
    let (mut exec, mut inspect) = (Vec::new(), Vec::new());
    timed(&w, &["exec", "web", "/bin/true"]);
    for _ in 0..runs {
        exec.push(timed(&w, &["exec", "web", "/bin/true"]));
        inspect.push(timed(&w, &["inspect", "web"]));
    }
    println!("exec, {runs} runs each, interleaved (client exec to exit):");
    show("berth exec web /bin/true", &exec);
    show("berth inspect web", &inspect);
    println!(
        "  exec - inspect (the join, the clone, the exec): {:+.3} ms",
        ms(median(exec)) - ms(median(inspect))
    );
    w.cleanup().unwrap();
}

fn health_bench(window: Duration) {
    let mut w = World::new();
    w.write_daemon_json(r#"{"log-level": "warn"}"#);
    w.add_container(
        "checked",
        IDLE,
        r#"{"healthcheck": {"command": ["/bin/true"], "interval": 1, "retries": 3}}"#,
    );
    w.add_container("plain", IDLE, "{}");
    let daemon = w.start_daemon(&[]);
    w.wait_inspect("checked", "to be healthy", SHORT, |_| {
        fs::read_to_string(w.run_dir().join("containers/checked/health.json"))
            .is_ok_and(|t| t.contains("\"status\":\"healthy\""))
    });
    w.wait_running("plain");
    let checked = record_number(&w, "checked", "monitor-pid");
    let plain = record_number(&w, "plain", "monitor-pid");
    let pids = [checked, plain, daemon.pid()];
    let before: Vec<_> = pids.iter().map(|&p| (cpu_ns(p), switches(p))).collect();
    let t = Instant::now();
    // The measurement window: nothing but the processes themselves runs
    // meanwhile (no client polls the daemon).
    std::thread::sleep(window);
    let secs = t.elapsed().as_secs_f64();
    let after: Vec<_> = pids.iter().map(|&p| (cpu_ns(p), switches(p))).collect();
    assert!(w.inspect("checked").is_running() && w.inspect("plain").is_running());
    println!("health checks every second, {secs:.1} s window:");
    for (i, label) in ["monitor, checked", "monitor, no checks", "daemon"]
        .iter()
        .enumerate()
    {
        let ((own0, kids0), sw0) = before[i];
        let ((own1, kids1), sw1) = after[i];
        println!(
            "  {label:<20} own CPU {:7.3} ms/s, checks' CPU {:6.1} ms/s (clock ticks), {:6.1} switches/s, PSS {} KiB, private dirty {} KiB",
            (own1 - own0) as f64 / 1e6 / secs,
            (kids1 - kids0) as f64 / 1e6 / secs,
            (sw1 - sw0) as f64 / secs,
            mem_kib(pids[i], "Pss"),
            mem_kib(pids[i], "Private_Dirty"),
        );
    }
    show("a check, start to end", &check_durations(&w, "checked"));
    w.cleanup().unwrap();
}

/// Daemon spawn to the last of N started (its started-at, so polling
/// adds nothing); the span of their started-at times.
fn boot(n: usize, chain: bool) -> (Duration, Duration) {
    let mut w = World::new();
    w.write_daemon_json(r#"{"log-level": "warn"}"#);
    let names: Vec<String> = (0..n).map(|i| format!("c{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        let extra = match i.checked_sub(1).filter(|_| chain) {
            Some(prev) => format!(r#"{{"depends-on": ["{}"]}}"#, names[prev]),
            None => "{}".to_string(),
        };
        w.add_container(name, IDLE, &extra);
    }
    let spawned = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let _daemon = w.spawn_daemon(&[]);
    wait_for(SHORT, "all running", || {
        names
            .iter()
            .all(|name| w.try_inspect(name).is_some_and(|c| c.is_running()))
    });
    let starts: Vec<u64> = w
        .ps()
        .iter()
        .map(|c| parse_rfc3339_ns(c.started_at.as_deref().unwrap()))
        .collect();
    let (first, last) = (starts.iter().min().unwrap(), starts.iter().max().unwrap());
    w.cleanup().unwrap();
    (
        Duration::from_nanos(last - spawned),
        Duration::from_nanos(last - first),
    )
}

fn order_bench(rounds: usize) {
    let (mut flat, mut flat_span, mut chain, mut chain_span) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (t, s) = boot(10, false);
        flat.push(t);
        flat_span.push(s);
        let (t, s) = boot(10, true);
        chain.push(t);
        chain_span.push(s);
    }
    println!(
        "cold boot of 10 containers, {rounds} rounds, interleaved (daemon spawned to the last one's started-at):"
    );
    show("independent", &flat);
    show("  started-at span", &flat_span);
    show("a chain (depends-on)", &chain);
    show("  started-at span", &chain_span);
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    exec_bench(runs);
    health_bench(Duration::from_secs(20));
    order_bench((runs / 10).max(3));
}

/// Nanoseconds since the epoch of an inspect time
/// ("2026-11-29T18:26:49.787123456Z").
fn parse_rfc3339_ns(t: &str) -> u64 {
    let (date, time) = t.trim_end_matches('Z').split_once('T').unwrap();
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, d) = (
        ymd.next().unwrap(),
        ymd.next().unwrap(),
        ymd.next().unwrap(),
    );
    // Days from 1970-01-01 to y-m-d (proleptic Gregorian).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe - 719_468) as u64;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().unwrap());
    let (h, mi, sec) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let frac_ns: u64 = format!("{frac:0<9}")[..9].parse().unwrap();
    ((days * 24 + h) * 60 + mi) * 60 * 1_000_000_000 + sec * 1_000_000_000 + frac_ns
}
