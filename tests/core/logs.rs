//! Container logs: stdout and stderr kept apart, `--follow`, `--tail`,
//! `--timestamps`, rotation by size keeping the newest lines, and floods
//! that nobody reads (even with the daemon dead) never blocking a
//! container nor passing the caps.

use std::fs;

use super::{ON_DEMAND, start_time, with_data};
use crate::common::{LONG, SHORT, World, describe, is_gone, is_rfc3339, wait_for};

#[test]
fn logs_keep_stdout_and_stderr_apart() {
    let world = World::new();
    let script = "echo out1; echo err1 >&2; echo out2; echo err2 >&2";
    world.add_container("talker", &["/bin/sh", "-c", script], ON_DEMAND);
    let _daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("talker"), 0);
    assert_eq!(
        world.logs("talker", &[]),
        ("out1\nout2\n".into(), "err1\nerr2\n".into())
    );
    assert!(world.container_log("talker").is_file());
}

#[test]
fn logs_follow_streams_until_the_container_exits() {
    let world = World::new();
    let script = "echo before; while [ ! -e /data/go ]; do sleep 0.05; done; echo after";
    world.add_container(
        "live",
        &["/bin/sh", "-c", script],
        &with_data(&world, r#"{"restart": "no"}"#),
    );
    let _daemon = world.start_daemon(&[]);
    world.wait_running("live");
    let follower = world.spawn_berth(&["logs", "live", "--follow"]);
    wait_for(SHORT, "--follow to print the first line", || {
        fs::read_to_string(&follower.stdout_path).is_ok_and(|o| o == "before\n")
    });
    fs::write(world.host_dir().join("go"), "").unwrap();
    let out = follower.finish(SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\nafter\n");
}

#[test]
fn logs_tail_and_timestamps() {
    let world = World::new();
    world.add_container("counter", &["/bin/seq", "1", "100"], ON_DEMAND);
    let _daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("counter"), 0);
    assert_eq!(
        world.logs("counter", &["--tail", "3"]),
        ("98\n99\n100\n".into(), String::new())
    );

    let stamped = world.logs("counter", &["--timestamps"]).0;
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 100);
    for (i, line) in lines.iter().enumerate() {
        let (stamp, text) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("no timestamp: {line:?}"));
        assert!(is_rfc3339(stamp), "bad timestamp in {line:?}");
        assert_eq!(text, (i + 1).to_string());
    }
    let tail = world.logs("counter", &["--tail", "2", "--timestamps"]).0;
    let texts: Vec<&str> = tail
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_, t)| t))
        .collect();
    assert_eq!(texts, ["99", "100"]);
}

#[test]
fn logs_rotate_at_max_size_and_keep_the_newest_lines() {
    let world = World::new();
    world.write_daemon_json(r#"{"log-max-size": "4k", "log-max-files": 3}"#);
    world.add_container("chatty", &["/bin/seq", "1", "20000"], ON_DEMAND);
    let _daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("chatty"), 0);

    let files = log_files(&world, "chatty");
    let names: Vec<&str> = files
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| f.starts_with("container.log"))
        .collect();
    assert_eq!(
        names,
        ["container.log", "container.log.1", "container.log.2"],
        "{files:?}"
    );
    assert_log_caps(&world, "chatty", 4096, 3);

    let stdout = world.logs("chatty", &[]).0;
    let numbers: Vec<u32> = stdout
        .lines()
        .map(|l| l.parse().expect("a number per line"))
        .collect();
    assert_eq!(numbers.last(), Some(&20000), "newest line lost");
    assert!(numbers[0] > 1, "nothing was rotated away");
    assert!(
        numbers.len() >= 60,
        "rotated files not read back: {} lines",
        numbers.len()
    );
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "gap in the kept lines"
    );
}

#[test]
fn a_log_flood_nobody_reads_never_blocks_the_container() {
    let world = World::new();
    world.write_daemon_json(r#"{"log-max-size": "64k", "log-max-files": 2}"#);
    // 8 MB of stdout, then 4 MB of stderr, in whole lines.
    let script = "yes flood-out | head -n 800000; yes flood-err | head -n 400000 >&2; \
                  touch /data/flood-done; exec sleep 1000";
    world.add_container(
        "flood",
        &["/bin/sh", "-c", script],
        &with_data(&world, "{}"),
    );
    let _daemon = world.start_daemon(&[]);
    wait_for(LONG, "the flood to finish", || {
        world.host_dir().join("flood-done").exists()
    });
    assert!(world.inspect("flood").is_running());
    assert_log_caps(&world, "flood", 64 * 1024, 2);
    let (stdout, stderr) = world.logs("flood", &["--tail", "1"]);
    assert!(stdout.is_empty() || stdout == "flood-out\n", "{stdout:?}");
    assert_eq!(stderr.lines().last(), Some("flood-err"));
}

#[test]
fn a_log_flood_while_the_daemon_is_dead_never_blocks_the_container() {
    let world = World::new();
    world.write_daemon_json(r#"{"live-restore": true, "log-max-size": "64k", "log-max-files": 2}"#);
    let script = "while [ ! -e /data/go ]; do sleep 0.05; done; \
                  yes flood | head -n 1400000; touch /data/flood-done; exec sleep 1000";
    world.add_container(
        "flood",
        &["/bin/sh", "-c", script],
        &with_data(&world, "{}"),
    );
    let mut daemon = world.start_daemon(&[]);
    let running = world.wait_running("flood");
    let started = start_time(running.pid);
    daemon.kill_9();
    fs::write(world.host_dir().join("go"), "").unwrap();
    wait_for(LONG, "the flood to finish without a daemon", || {
        world.host_dir().join("flood-done").exists()
    });
    assert!(
        !is_gone(running.pid as i32, started),
        "the container died with the daemon"
    );
    assert_log_caps(&world, "flood", 64 * 1024, 2);
}

/// The log files in log-dir/NAME: (file name, size).
fn log_files(world: &World, name: &str) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = fs::read_dir(world.log_dir().join(name))
        .expect("log dir of the container")
        .flatten()
        // A file the monitor rotated away while this listed them is gone.
        .filter_map(|e| {
            let len = e.metadata().ok()?.len();
            Some((e.file_name().to_string_lossy().into_owned(), len))
        })
        .collect();
    files.sort();
    files
}

/// Asserts the container's log files respect log-max-size (plus one
/// record of slack) and log-max-files.
fn assert_log_caps(world: &World, name: &str, max_size: u64, max_files: usize) {
    let files = log_files(world, name);
    let logs: Vec<&(String, u64)> = files
        .iter()
        .filter(|(f, _)| f.starts_with("container.log"))
        .collect();
    assert!(
        !logs.is_empty() && logs.len() <= max_files,
        "log files {files:?}"
    );
    for (file, size) in logs {
        assert!(
            *size <= max_size + 512,
            "{file} is {size} bytes, cap {max_size}: {files:?}"
        );
    }
}
