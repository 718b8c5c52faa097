//! Integration tests of berth's core, run as root through the real binary,
//! one module per area: the client (`client`), what a container sees
//! (`isolation`), its life cycle (`lifecycle`), its logs (`logs`) and
//! untrusted input (`bad_input`). Each test has its own `World` (see
//! tests/common); nothing sleeps for a fixed time. This file holds what the
//! modules share; `cargo test --test core` runs them all.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod client;
mod isolation;
mod lifecycle;
mod logs;

use std::process::Output;

use common::{World, describe, proc_stat};

/// A container that runs until stopped and exits 0 at once on SIGTERM.
const POLITE: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while true; do sleep 0.1; done",
];
/// A container whose init (busybox sleep as pid 1) ignores SIGTERM.
const SLEEPER: &[&str] = &["/bin/sleep", "1000"];
/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// `extra`'s members plus the world's host dir bind-mounted at /data.
fn with_data(world: &World, extra: &str) -> String {
    let mounts = format!("{{\"mounts\": [{}]}}", world.data_mount());
    common::json::merge(extra, &mounts)
}

/// Asserts `out` failed with exit code `code` and exactly one stderr
/// line, and returns that line.
fn one_error_line(out: &Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one stderr line: {}", describe(out));
    lines[0].to_string()
}

fn start_time(pid: u32) -> u64 {
    proc_stat(pid as i32)
        .unwrap_or_else(|e| panic!("stat of pid {pid}: {e}"))
        .1
}
