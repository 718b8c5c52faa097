//! Container logs: stdout and stderr kept apart, `--follow`, `--tail`,
//! `--timestamps`, rotation by size keeping the newest lines, floods that
//! nobody reads (even with the daemon dead) never blocking a container nor
//! passing the caps, files of the first record format (alone, and followed
//! by the current one in one file) read back, long and unfinished lines,
//! and what short lines cost on disk.

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
    for (name, _) in files.iter().filter(|(f, _)| f.starts_with("container.log")) {
        let bytes = fs::read(world.log_dir().join("chatty").join(name)).unwrap_or_default();
        // A file the monitor rotated away while this read them is gone.
        if !bytes.is_empty() {
            assert_eq!(bytes[0], b'@', "{name} starts with its time");
        }
    }

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

/// A record of the first log format, as monitors before the current one
/// wrote them.
fn old_record(time: &str, stream: &str, full: bool, text: &str) -> String {
    format!("{time} {stream} {} {text}\n", if full { "F" } else { "P" })
}

#[test]
fn logs_read_old_files_and_a_live_file_an_upgraded_monitor_appends_to() {
    let world = World::new();
    let script = "while [ ! -e /data/go ]; do sleep 0.02; done; \
                  echo new-out; echo new-err >&2; printf new-un; printf 'finished\\n'";
    world.add_container(
        "mixed",
        &["/bin/sh", "-c", script],
        &with_data(&world, r#"{"restart": "no", "autostart": false}"#),
    );
    // What older monitors left: a rotated file of the first format, one of
    // the current format written by hand, and a live file of the first.
    let dir = world.log_dir().join("mixed");
    fs::create_dir_all(&dir).unwrap();
    let t = |s: &str| format!("2026-01-01T00:00:{s}Z");
    let old = [
        old_record(&t("01.000000000"), "stdout", true, "old-1"),
        old_record(&t("02.000000000"), "stdout", false, "old-"),
        old_record(&t("02.500000000"), "stderr", true, "old err"),
        old_record(&t("03.000000000"), "stdout", true, "2"),
    ];
    fs::write(dir.join("container.log.2"), old.concat()).unwrap();
    let current = format!(
        "@{}\nonew-format 1\n+500000000\neerr at 4.5\nOpart\n+1000000000\no of a line\n",
        t("04.000000000")
    );
    fs::write(dir.join("container.log.1"), current).unwrap();
    let before = old_record(&t("06.000000000"), "stdout", true, "before upgrade");
    fs::write(dir.join("container.log"), &before).unwrap();

    let _daemon = world.start_daemon(&[]);
    world.berth_ok(&["start", "mixed"]);
    world.wait_running("mixed");
    let follower = world.spawn_berth(&["logs", "mixed", "--follow"]);
    let old_out = "old-1\nold-2\nnew-format 1\npart of a line\nbefore upgrade\n";
    wait_for(SHORT, "--follow to print the old lines", || {
        fs::read_to_string(&follower.stdout_path).is_ok_and(|o| o == old_out)
    });
    fs::write(world.host_dir().join("go"), "").unwrap();
    let out = follower.finish(SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    let all_out = format!("{old_out}new-out\nnew-unfinished\n");
    let all_err = "old err\nerr at 4.5\nnew-err\n";
    assert_eq!(String::from_utf8_lossy(&out.stdout), all_out);
    assert_eq!(String::from_utf8_lossy(&out.stderr), all_err);
    world.wait_status("mixed", "exited", SHORT);

    // The new records follow the old ones in the live file.
    let live = fs::read(world.container_log("mixed")).unwrap();
    assert!(
        live.starts_with(format!("{before}@").as_bytes()),
        "{}",
        String::from_utf8_lossy(&live)
    );
    assert_eq!(world.logs("mixed", &[]), (all_out.clone(), all_err.into()));
    assert_eq!(
        world.logs("mixed", &["--removed"]),
        (all_out.clone(), all_err.into())
    );

    // A time per line: the old records' own, and the read's for the new.
    let stamped = world.logs("mixed", &["--timestamps"]);
    let times = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .map(|l| {
                let (t, rest) = l.split_once(' ').expect("a timestamp");
                assert!(is_rfc3339(t), "{l}");
                (t.to_string(), rest.to_string())
            })
            .collect()
    };
    let out_times = times(&stamped.0);
    let want: Vec<(String, &str)> = vec![
        (t("01.000000000"), "old-1"),
        (t("02.000000000"), "old-2"),
        (t("04.000000000"), "new-format 1"),
        (t("04.500000000"), "part of a line"),
        (t("06.000000000"), "before upgrade"),
    ];
    for (got, (time, text)) in out_times.iter().zip(&want) {
        assert_eq!((got.0.as_str(), got.1.as_str()), (time.as_str(), *text));
    }
    assert_eq!(out_times.len(), 7, "{out_times:?}");
    for (time, _) in &out_times[5..] {
        assert!(time.as_str() > "2026-01-02", "{time} is the read's time");
    }
    let err_times = times(&stamped.1);
    assert_eq!(err_times[0].0, t("02.500000000"));
    assert_eq!(err_times[1].0, t("04.500000000"));

    // --since, --until and --tail across the formats.
    let until = world.logs("mixed", &["--until", &t("05")]).0;
    assert_eq!(until, "old-1\nold-2\nnew-format 1\npart of a line\n");
    let since = world.logs("mixed", &["--since", &t("04.5")]).0;
    assert_eq!(
        since,
        "part of a line\nbefore upgrade\nnew-out\nnew-unfinished\n"
    );
    let window = world.logs("mixed", &["--since", &t("02"), "--until", &t("04")]);
    assert_eq!(window, ("old-2\nnew-format 1\n".into(), "old err\n".into()));
    // The last four lines of both streams: the last old one and the run's.
    assert_eq!(
        world.logs("mixed", &["--tail", "4"]),
        (
            "before upgrade\nnew-out\nnew-unfinished\n".into(),
            "new-err\n".into()
        )
    );
}

#[test]
fn long_lines_and_a_last_line_without_newline_come_back_whole() {
    let world = World::new();
    // 40000 x's in one line, then a line the stream ends without newline.
    let script = "yes x | head -c 80000 | tr -d '\\n'; echo; printf 'no newline'";
    world.add_container("long", &["/bin/sh", "-c", script], ON_DEMAND);
    let _daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("long"), 0);
    let (stdout, stderr) = world.logs("long", &[]);
    assert_eq!(stderr, "");
    assert_eq!(stdout.len(), 40000 + 1 + 10, "{}", &stdout[..40]);
    assert_eq!(stdout, format!("{}\nno newline", "x".repeat(40000)));
    // The long line in pieces of 16 KiB: two that go on, one that ends
    // it; and the unfinished last line.
    let live = fs::read(world.container_log("long")).unwrap();
    let starts = |b: u8| {
        live.split(|&c| c == b'\n')
            .filter(|r| r.first() == Some(&b))
            .count()
    };
    assert_eq!((starts(b'O'), starts(b'o')), (3, 1));
}

#[test]
fn short_lines_cost_little_on_disk() {
    let world = World::new();
    // One 2-byte line per read (the writer sleeps in between), a flood of
    // 2-byte lines, and one of 77-byte lines.
    let slow = "i=0; while [ $i -lt 50 ]; do echo a; sleep 0.02; i=$((i+1)); done";
    let line76 = "z".repeat(76);
    let flood77 = format!("yes {line76} | head -n 10000");
    world.add_container("slow", &["/bin/sh", "-c", slow], ON_DEMAND);
    world.add_container(
        "flood2",
        &["/bin/sh", "-c", "yes a | head -n 100000"],
        ON_DEMAND,
    );
    world.add_container("flood77", &["/bin/sh", "-c", &flood77], ON_DEMAND);
    let _daemon = world.start_daemon(&[]);
    let on_disk = |name: &str| -> u64 {
        log_files(&world, name)
            .iter()
            .filter(|(f, _)| f.starts_with("container.log"))
            .map(|(_, len)| len)
            .sum()
    };

    assert_eq!(world.start_wait("slow"), 0);
    // 100 bytes logged: a marker byte and a time record of at most 12
    // bytes per line (`+<nanoseconds>` for steps under 10 s), after the
    // file's first time (the first format took 42 bytes per line).
    let size = on_disk("slow");
    assert!(size <= 32 + 50 * 15, "{size} bytes for 50 short lines");
    let stamped = world.logs("slow", &["--timestamps"]).0;
    let stamps: Vec<&str> = stamped
        .lines()
        .map(|l| l.strip_suffix(" a").expect("a stamped line"))
        .collect();
    assert_eq!(stamps.len(), 50);
    assert!(stamps.iter().all(|t| is_rfc3339(t)), "{stamped}");
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "a time of its own per line: {stamped}"
    );

    assert_eq!(world.start_wait("flood2"), 0);
    // 200000 bytes logged; the first format took 4.2 MB.
    let size = on_disk("flood2");
    assert!(size <= 200_000 * 155 / 100, "{size} bytes for 200000");
    assert_eq!(world.logs("flood2", &[]).0, "a\n".repeat(100_000));

    assert_eq!(world.start_wait("flood77"), 0);
    // 770000 bytes logged; the first format took 1170000.
    let size = on_disk("flood77");
    assert!(size <= 770_000 * 102 / 100, "{size} bytes for 770000");
    let lines = world.logs("flood77", &[]).0;
    assert_eq!(lines, format!("{line76}\n").repeat(10_000));
}

#[test]
fn logs_follow_reads_every_line_across_rotations() {
    let world = World::new();
    // Room for all the output: nothing is rotated away, only renamed.
    world.write_daemon_json(r#"{"log-max-size": "4k", "log-max-files": 100}"#);
    let script = "while [ ! -e /data/go ]; do sleep 0.02; done; seq 1 30000";
    world.add_container(
        "counter",
        &["/bin/sh", "-c", script],
        &with_data(&world, r#"{"restart": "no", "autostart": false}"#),
    );
    let _daemon = world.start_daemon(&[]);
    world.berth_ok(&["start", "counter"]);
    world.wait_running("counter");
    let follower = world.spawn_berth(&["logs", "counter", "--follow"]);
    fs::write(world.host_dir().join("go"), "").unwrap();
    let out = follower.finish(LONG);
    assert!(out.status.success(), "{}", describe(&out));
    let files = log_files(&world, "counter").len();
    assert!(files > 20, "{files} files: too few rotations");
    let numbers: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().expect("a number per line"))
        .collect();
    let gap = numbers
        .iter()
        .enumerate()
        .find(|(i, n)| **n as usize != i + 1);
    assert_eq!(
        numbers.len(),
        30000,
        "lines lost or doubled, first at {gap:?}"
    );
    assert!(
        numbers
            .iter()
            .enumerate()
            .all(|(i, n)| *n as usize == i + 1)
    );
}
