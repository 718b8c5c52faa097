//! Benchmark (not a test): what the default seccomp filter costs.
//!
//! `cargo bench --bench seccomp [-- ROUNDS]` (as root; default 30 rounds).
//! Each round starts a container running /bin/true under the default
//! filter and one with `"seccomp": "unconfined"`, interleaved (which goes
//! first alternates), and times
//! the API request to its answer (the monitor started, the filter made
//! and installed, exec done). Then the same for a busybox `dd` making
//! 400 000 small system calls, timed from the start request to the end
//! of the run, which shows the cost per call.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Starts NAME and returns (start request to answer, start request to
/// the end of the run).
fn start_and_wait(w: &World, name: &str) -> (Duration, Duration) {
    let t = Instant::now();
    let answer = api_call(w, &format!("{{\"verb\":\"start\",\"name\":\"{name}\"}}"));
    let started = t.elapsed();
    assert!(answer.contains("\"ok\":true"), "start {name}: {answer}");
    let answer = api_call(w, &format!("{{\"verb\":\"wait\",\"name\":\"{name}\"}}"));
    let ended = t.elapsed();
    assert!(answer.contains("\"ok\":true"), "wait {name}: {answer}");
    (started, ended)
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let w = World::new();
    w.write_daemon_json(r#"{"log-level": "warn"}"#);
    let dd = &[
        "/bin/dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=1",
        "count=200000",
    ];
    for (name, command, seccomp) in [
        ("true-filtered", &["/bin/true"][..], "default"),
        ("true-free", &["/bin/true"][..], "unconfined"),
        ("dd-filtered", &dd[..], "default"),
        ("dd-free", &dd[..], "unconfined"),
    ] {
        let extra = format!(r#"{{"autostart": false, "seccomp": "{seccomp}"}}"#);
        w.add_container(name, command, &extra);
    }
    let _daemon = w.start_daemon(&[]);
    let (mut filtered, mut free) = (Vec::new(), Vec::new());
    let (mut dd_filtered, mut dd_free) = (Vec::new(), Vec::new());
    // Which of the two goes first alternates: a start right after the
    // end of a run can meet the previous monitor's cleanup.
    for round in 0..rounds {
        let mut pair = [("true-filtered", &mut filtered), ("true-free", &mut free)];
        if round % 2 == 1 {
            pair.reverse();
        }
        for (name, times) in pair {
            times.push(start_and_wait(&w, name).0);
        }
    }
    for round in 0..rounds {
        let mut pair = [("dd-filtered", &mut dd_filtered), ("dd-free", &mut dd_free)];
        if round % 2 == 1 {
            pair.reverse();
        }
        for (name, times) in pair {
            times.push(start_and_wait(&w, name).1);
        }
    }
    println!("{rounds} rounds, interleaved, medians:");
    println!(
        "  start of /bin/true (API request to answer): default filter {}, unconfined {}",
        ms(median(filtered)),
        ms(median(free))
    );
    let (f, u) = (median(dd_filtered), median(dd_free));
    println!(
        "  dd bs=1 count=200000 (400 000 calls), start to end: default filter {}, unconfined {} \
         ({:.0} ns a call)",
        ms(f),
        ms(u),
        (f.as_secs_f64() - u.as_secs_f64()) * 1e9 / 400_000.0
    );
}
