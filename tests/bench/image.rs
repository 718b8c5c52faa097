//! Benchmark (not a test): what an image root costs at start.
//!
//! `cargo bench --bench image [-- RUNS]` (as root; default 100 runs each).
//! Containers run `/bin/true`: one with the busybox rootfs directory, one
//! each with an erofs image of it (uncompressed, mkfs.erofs' default), the
//! same under a `tmpfs` and a `persistent` writable layer, and squashfs
//! images (gzip, mksquashfs' default, and lz4, the fastest to read). Interleaved, one run of each in turn,
//! it times as a client sees them on the socket:
//! - start: the request to its answer, sent once the command was exec'd
//!   (monitor, loop device, mounts, clone, exec);
//! - start --wait: the request to the answer sent when the container has
//!   exited (the above, the run, and the monitor's end).
//!
//! and prints the median and range of each.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::images::{loops_backed_by, mkfs_erofs, mksquashfs, mksquashfs_with};
use common::*;

const KINDS: [&str; 6] = [
    "dir",
    "erofs",
    "erofs-tmpfs",
    "erofs-persistent",
    "squashfs",
    "squashfs-lz4",
];

fn call(w: &World, name: &str, wait: bool) -> Duration {
    let t = Instant::now();
    let answer = api_call(
        w,
        &format!("{{\"verb\":\"start\",\"name\":\"{name}\",\"wait\":{wait}}}"),
    );
    let took = t.elapsed();
    assert!(answer.contains("\"ok\":true"), "start {name}: {answer}");
    if wait {
        assert!(answer.contains("\"exit-code\":0"), "start {name}: {answer}");
    }
    took
}

fn show(label: &str, v: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let min = v.iter().min().copied().unwrap_or_default();
    let max = v.iter().max().copied().unwrap_or_default();
    println!(
        "  {label:<16} median {:7.3} ms   range {:7.3} .. {:7.3} ms",
        ms(median(v.to_vec())),
        ms(min),
        ms(max)
    );
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let mut w = World::new();
    w.write_daemon_json(r#"{"log-level": "warn"}"#);
    let images = w.root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let squashfs = images.join("app.sqfs");
    let erofs = images.join("app.erofs");
    mksquashfs(&w.rootfs(), &squashfs);
    let squashfs_lz4 = images.join("app-lz4.sqfs");
    mksquashfs_with(&w.rootfs(), &squashfs_lz4, &["-comp", "lz4"]);
    mkfs_erofs(&w.rootfs(), &erofs);
    let on_demand = r#"{"autostart": false, "restart": "no"}"#;
    let image_def = |image: &std::path::Path, extra: &str| {
        json::merge(
            &format!(
                "{{\"image\": {}, \"command\": [\"/bin/true\"]}}",
                json::string(image.to_str().unwrap())
            ),
            &json::merge(on_demand, extra),
        )
    };
    w.add_container("dir", &["/bin/true"], on_demand);
    w.write_container("erofs", &image_def(&erofs, "{}"));
    w.write_container(
        "erofs-tmpfs",
        &image_def(&erofs, r#"{"writable": "tmpfs"}"#),
    );
    w.write_container(
        "erofs-persistent",
        &image_def(&erofs, r#"{"writable": "persistent"}"#),
    );
    w.write_container("squashfs", &image_def(&squashfs, "{}"));
    w.write_container("squashfs-lz4", &image_def(&squashfs_lz4, "{}"));
    let _daemon = w.start_daemon(&[]);

    let mut start = vec![Vec::new(); KINDS.len()];
    let mut wait = vec![Vec::new(); KINDS.len()];
    // One warm-up run each.
    for kind in KINDS {
        call(&w, kind, true);
    }
    for _ in 0..runs {
        for (i, kind) in KINDS.iter().enumerate() {
            start[i].push(call(&w, kind, false));
            // Until it has exited, so the next start is a new run.
            w.wait_inspect(kind, "the run to end", SHORT, |c| !c.is_running());
            wait[i].push(call(&w, kind, true));
        }
    }
    println!("image roots, {runs} runs each, interleaved:");
    println!(" start (answer at exec):");
    for (i, kind) in KINDS.iter().enumerate() {
        show(kind, &start[i]);
    }
    println!(" start --wait (answer at exit):");
    for (i, kind) in KINDS.iter().enumerate() {
        show(kind, &wait[i]);
    }
    let dir = median(start[0].clone()).as_secs_f64() * 1000.0;
    for (i, kind) in KINDS.iter().enumerate().skip(1) {
        let m = median(start[i].clone()).as_secs_f64() * 1000.0;
        println!(" start median {kind} - dir: {:+.3} ms", m - dir);
    }
    wait_for(SHORT, "the loop devices released", || {
        loops_backed_by(&images).is_empty()
    });
    w.cleanup().unwrap();
}
