//! A full disk under state-dir and log-dir, through the real binary: the
//! exit code of a container that ends while nothing can be written is
//! kept (its record's room was reserved when it started), and output the
//! log cannot take is counted in `inspect` and noted in the log once there
//! is room again. Each test mounts a small tmpfs of its own in its world's
//! dir (detached by the world's teardown) and fills it with a file.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;

/// A small tmpfs in the world's dir, holding the world's state-dir and
/// log-dir from now on; returns its mount point.
fn small_disk(w: &World, extra: &str) -> PathBuf {
    let disk = w.root.join("disk");
    fs::create_dir(&disk).expect("create the disk's mount point");
    common::sys::mount_tmpfs(&disk, "size=2m,mode=0755").expect("mount a tmpfs");
    let keys = format!(
        r#"{{"state-dir": {}, "log-dir": {}}}"#,
        json::string(disk.join("state").to_str().expect("utf-8 path")),
        json::string(disk.join("log").to_str().expect("utf-8 path")),
    );
    w.write_daemon_json(&json::merge(&keys, extra));
    disk
}

/// Fills the file system of `dir` with one file until it refuses a byte;
/// returns the file, whose removal makes room again.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = File::create(&path).expect("create the filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("fill {}: {e}", path.display()),
        }
    }
    // Not even one more byte fits.
    let last = f.write(&[0u8]);
    assert!(
        matches!(&last, Err(e) if e.raw_os_error() == Some(libc::ENOSPC)),
        "the disk is not full: {last:?}"
    );
    path
}

fn path_text(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

#[test]
fn an_exit_code_survives_a_full_disk() {
    let w = World::new();
    let disk = small_disk(&w, "{}");
    let mounts = format!(r#"{{"mounts": [{}]}}"#, w.data_mount());
    w.add_container(
        "ender",
        &[
            "/bin/sh",
            "-c",
            "while [ ! -e /data/go ]; do sleep 0.02; done; exit 42",
        ],
        &json::merge(r#"{"autostart": false, "restart": "no"}"#, &mounts),
    );
    let daemon = w.start_daemon(&[]);
    w.berth_ok(&["start", "ender"]);
    w.wait_running("ender");
    fill(&disk);
    fs::write(w.host_dir().join("go"), "").unwrap();
    let i = w.wait_inspect("ender", "to end", LONG, |i| !i.is_running());
    assert_eq!(
        (i.status.as_str(), i.exit_code, i.error.as_deref()),
        ("exited", Some(42), None),
        "{i:?}\n{}",
        daemon.stderr()
    );
    daemon.wait_for_log_line(&["ender", "exited with code 42"]);
    let record = fs::read_to_string(disk.join("state/containers/ender/exit.json")).unwrap();
    assert!(record.contains("\"exit-code\":42"), "{record}");
}

#[test]
fn output_a_full_disk_refuses_is_counted_and_noted_once_there_is_room() {
    let w = World::new();
    let disk = small_disk(&w, r#"{"log-max-size": "256k", "log-max-files": 2}"#);
    let mounts = format!(r#"{{"mounts": [{}]}}"#, w.data_mount());
    // Floods only once the disk is full (so that no log file of its own
    // holds room a rotation could free), then, told to stop, prints one
    // line every 50 ms (so that the notice is not rotated away at once).
    w.add_container(
        "flood",
        &[
            "/bin/sh",
            "-c",
            "while [ ! -e /data/go ]; do sleep 0.02; done; \
             while [ ! -e /data/stop ]; do \
               yes 0123456789abcdef0123456789abcdef0123456789abcdef | head -n 1000; \
             done; \
             while :; do echo tick; sleep 0.05; done",
        ],
        &json::merge(r#"{"autostart": false, "restart": "no"}"#, &mounts),
    );
    let daemon = w.start_daemon(&[]);
    w.berth_ok(&["start", "flood"]);
    w.wait_running("flood");
    let filler = fill(&disk);
    fs::write(w.host_dir().join("go"), "").unwrap();
    // Counted while it runs.
    let dropping = w.wait_inspect("flood", "to drop output", SHORT, |i| {
        i.log_dropped_bytes > 0
    });
    assert!(dropping.is_running(), "{dropping:?}");
    let log = disk.join("log/flood/container.log");
    assert_eq!(fs::metadata(&log).map(|m| m.len()).unwrap_or(0), 0);

    // Room again: the next write that works is preceded by the notice.
    fs::write(w.host_dir().join("stop"), "").unwrap();
    fs::remove_file(&filler).unwrap();
    let mut notice = String::new();
    wait_for(SHORT, "the notice of dropped output", || {
        let (_, stderr) = w.logs("flood", &[]);
        match stderr
            .lines()
            .find(|l| l.contains("bytes of output dropped"))
        {
            Some(line) => {
                notice = line.to_string();
                true
            }
            None => false,
        }
    });
    let suffix = format!(": write {}: No space left on device", path_text(&log));
    assert!(notice.starts_with("berth: "), "{notice}");
    assert!(notice.ends_with(&suffix), "{notice}");
    let counted: u64 = notice["berth: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {notice}"));
    assert!(
        counted >= dropping.log_dropped_bytes,
        "{notice} {dropping:?}"
    );
    wait_for(SHORT, "output to go on after the notice", || {
        w.logs("flood", &["--tail", "1"]).0 == "tick\n"
    });

    // At the end, the exit record has the whole count: nothing was
    // dropped after the notice (the log's caps fit the disk).
    w.berth_ok(&["stop", "flood", "--time", "0"]);
    let i = w.wait_status("flood", "stopped", SHORT);
    assert_eq!(i.log_dropped_bytes, counted, "{i:?}");
    daemon.wait_for_log_line(&[
        "flood",
        &format!("{counted} bytes of its output could not be logged"),
    ]);
}
