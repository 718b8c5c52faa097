//! Holes in the live-restore promise, closed: a daemon killed at any
//! instant of a start leaves one run per name that the next daemon knows;
//! an end berth caused is never taken for a failure; records that are not
//! regular files neither hang nor mislead a daemon; a state.json that
//! cannot be written is written later; a failed start stays failed.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::records::{runtime_path, with_version};
use common::*;

/// The pids of `berth monitor NAME` processes in the world's cgroups.
fn monitors(w: &World, name: &str) -> Vec<i32> {
    let wanted = format!("berth\0monitor\0{name}\0");
    w.procs()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted.as_bytes())
        })
        .collect()
}

#[test]
fn a_daemon_killed_while_it_starts_a_container_leaves_one_run_the_next_daemon_knows() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("x", POLITE, r#"{"restart": "always"}"#);
    let mut next = rng();
    for round in 0..12 {
        let mut daemon = w.spawn_daemon(&[]);
        let when = if round % 2 == 0 {
            // The start is slow (a loaded machine): the monitor is held
            // still as soon as it exists, before it can exec the
            // container, while the daemon dies and the next one starts.
            let t = std::time::Instant::now();
            let monitor = loop {
                if let Some(&pid) = monitors(&w, "x").first() {
                    break pid;
                }
                assert!(t.elapsed() < SHORT, "no monitor for x in {SHORT:?}");
                std::thread::sleep(Duration::from_micros(200));
            };
            let pidfd = common::sys::pidfd_open(monitor).expect("pidfd of the monitor");
            let _ = common::sys::pidfd_send_signal(&pidfd, libc::SIGSTOP);
            daemon.kill_9();
            daemon = w.spawn_daemon(&[]);
            std::thread::sleep(Duration::from_millis(next(30)));
            let _ = common::sys::pidfd_send_signal(&pidfd, libc::SIGCONT);
            "with its monitor held before the exec".to_string()
        } else {
            // Die at some instant of the start: before the monitor,
            // between the monitor and its exec, or after.
            let delay = Duration::from_micros(2_000 + next(14_000));
            std::thread::sleep(delay);
            daemon.kill_9();
            daemon = w.spawn_daemon(&[]);
            format!("after {delay:?}")
        };
        wait_for(SHORT, "the new daemon to answer", || {
            w.berth(&["ps"]).status.success()
        });
        let _daemon = daemon;
        let x = w.wait_running("x");
        let found = monitors(&w, "x");
        assert_eq!(
            found,
            [x.monitor_pid as i32],
            "round {round} (killed {when}): one monitor, the one ps knows"
        );
        // Stop through the new daemon: nothing of the name is left.
        w.berth_ok(&["stop", "x"]);
        wait_for(SHORT, "x's monitor to end", || monitors(&w, "x").is_empty());
        w.berth_ok(&["start", "x"]);
        w.wait_running("x");
    }
}

#[test]
fn a_start_left_under_way_that_never_reaches_the_exec_is_ended() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("x", POLITE, r#"{"restart": "always"}"#);
    let mut daemon = w.spawn_daemon(&[]);
    let t = std::time::Instant::now();
    let held = loop {
        if let Some(&pid) = monitors(&w, "x").first() {
            break pid;
        }
        assert!(t.elapsed() < SHORT, "no monitor for x in {SHORT:?}");
        std::thread::sleep(Duration::from_micros(200));
    };
    let pidfd = common::sys::pidfd_open(held).expect("pidfd of the monitor");
    common::sys::pidfd_send_signal(&pidfd, libc::SIGSTOP).unwrap();
    // The daemon dies once it has recorded the monitor.
    wait_for(SHORT, "the runtime record naming the monitor", || {
        fs::read_to_string(runtime_path(&w, "x"))
            .is_ok_and(|t| t.contains(&format!("\"monitor-pid\":{held},")))
    });
    daemon.kill_9();
    // The next daemon answers at once, with the start shown under way.
    let daemon = w.start_daemon(&[]);
    let x = w.inspect("x");
    assert_eq!((x.monitor_pid as i32, x.pid), (held, 0), "{x:?}");
    // The held monitor never gets to the exec: it is ended after 10 s,
    // and the policy starts a run of its own.
    daemon.wait_for_log_line(&["x", "did not reach the exec in 10 s"]);
    daemon.wait_for_log_line(&["x", "failed: the start was cut short"]);
    let x = w.wait_inspect("x", "to run again", LONG, |i| {
        i.is_running() && i.monitor_pid as i32 != held
    });
    assert_eq!(monitors(&w, "x"), [x.monitor_pid as i32]);
}

#[test]
fn a_stop_by_reload_is_not_undone_by_the_next_daemon() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("x", POLITE, r#"{"restart": "always"}"#);
    w.add_container("y", POLITE, r#"{"restart": "on-failure"}"#);
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("x");
    w.berth_ok(&["start", "y"]);
    w.wait_running("y");
    // x: no longer autostarted, so reload stops it. y: stopped by a
    // user; it ends with SIGKILL (the grace is 0), a failure by its code.
    w.add_container("x", POLITE, r#"{"restart": "always", "autostart": false}"#);
    w.berth_ok(&["reload"]);
    w.wait_status("x", "stopped", SHORT);
    w.berth_ok(&["stop", "--time", "0", "y"]);
    w.wait_status("y", "stopped", SHORT);
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(SHORT);
    let _daemon = w.start_daemon(&[]);
    holds_for(Duration::from_secs(1), "x and y to stay stopped", || {
        ["x", "y"].iter().all(|n| w.inspect(n).status == "stopped")
    });
    assert!(monitors(&w, "x").is_empty() && monitors(&w, "y").is_empty());
}

#[test]
fn a_stop_of_a_container_whose_record_is_untrusted_is_refused_with_what_to_do() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("x", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    let x = w.wait_running("x");
    daemon.kill_9();
    let path = runtime_path(&w, "x");
    let text = fs::read_to_string(&path).unwrap();
    let newer = with_version(&text, 99);
    fs::write(&path, newer).unwrap();
    let _daemon = w.start_daemon(&[]);
    let pid = x.pid as i32;
    let start = common::proc_stat(pid).unwrap().1;
    let out = w.berth(&["stop", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        err.contains(path.to_str().unwrap()) && err.contains("cannot verify"),
        "{err}"
    );
    // And it did not touch the process.
    assert!(!is_gone(pid, start));
}

#[test]
fn fifos_symlinks_oversized_records_and_stale_temps_neither_hang_nor_stay() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    for name in ["fifo", "link", "big"] {
        w.add_container(name, POLITE, r#"{"autostart": false}"#);
    }
    let mut daemon = w.start_daemon(&[]);
    let mut inits = Vec::new();
    for name in ["fifo", "link", "big"] {
        w.berth_ok(&["start", name]);
        let pid = w.wait_running(name).pid as i32;
        inits.push((pid, common::proc_stat(pid).unwrap().1));
    }
    daemon.kill_9();
    let mkfifo = |p: &Path| {
        let _ = fs::remove_file(p);
        let ok = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(ok.success());
    };
    mkfifo(&runtime_path(&w, "fifo"));
    let elsewhere = w.root.join("elsewhere.json");
    fs::rename(runtime_path(&w, "link"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, runtime_path(&w, "link")).unwrap();
    fs::write(runtime_path(&w, "big"), " ".repeat(1 << 20)).unwrap();
    // A definition that is a FIFO, and temp files of writes cut short
    // (pid 4194304 is above any pid_max).
    mkfifo(&w.containers_dir().join("pipe.json"));
    let state = w.state_dir().join("containers").join("fifo");
    let temps = [
        state.join(".state.json.tmp.4194304"),
        runtime_path(&w, "big").with_file_name(".runtime.json.tmp.4194304"),
    ];
    for t in &temps {
        fs::create_dir_all(t.parent().unwrap()).unwrap();
        fs::write(t, "{").unwrap();
    }
    let daemon = w.start_daemon(&[]);
    for (name, why) in [
        ("fifo", "not a regular file"),
        ("link", "is a symlink"),
        ("big", "larger than"),
    ] {
        let line = daemon.wait_for_log_line(&[&runtime_path(&w, name).display().to_string(), why]);
        assert!(line.contains("cannot be trusted"), "{line}");
        let shown = w.inspect(name);
        assert!(
            shown.warning.as_deref().is_some_and(|m| m.contains(why)),
            "{shown:?}"
        );
    }
    // Nothing it could not verify was touched.
    for (pid, start) in inits {
        assert!(!is_gone(pid, start), "init {pid} left alone");
    }
    daemon.wait_for_log_line(&["pipe.json", "not a regular file (a FIFO)"]);
    assert_eq!(w.inspect("pipe").status, "failed");
    for t in &temps {
        assert!(!t.exists(), "{} removed", t.display());
        daemon.wait_for_log_line(&["removed", &t.display().to_string()]);
    }
}

#[test]
fn a_start_that_failed_keeps_its_status_and_reason_across_a_daemon_restart() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("bad", &["/no/such/program"], r#"{"autostart": false}"#);
    let mut daemon = w.start_daemon(&[]);
    let out = w.berth(&["start", "bad"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let before = w.wait_status("bad", "failed", SHORT);
    let error = before.error.clone().expect("a reason");
    assert!(error.contains("/no/such/program"), "{error}");
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(SHORT);
    let _daemon = w.start_daemon(&[]);
    let after = w.inspect("bad");
    assert_eq!(
        (after.status.as_str(), after.error.as_deref()),
        ("failed", Some(error.as_str()))
    );
}

#[test]
fn a_state_json_that_cannot_be_written_is_written_once_space_returns() {
    let w = World::new();
    // state-dir on a small tmpfs of the test's own, filled up.
    let state = w.root.join("small-state");
    fs::create_dir(&state).unwrap();
    let ok = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=256k",
            "berth-test",
            state.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "mount a tmpfs");
    w.write_daemon_json(&format!(
        r#"{{"live-restore": true, "state-dir": {}}}"#,
        common::json::string(state.to_str().unwrap())
    ));
    w.add_container("x", POLITE, "{}");
    let daemon = w.start_daemon(&[]);
    w.wait_running("x");
    let filler = state.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    w.berth_ok(&["stop", "x"]);
    w.wait_status("x", "stopped", SHORT);
    let state_json = state.join("containers/x/state.json");
    daemon.wait_for_log_line(&[&state_json.display().to_string(), "trying again"]);
    fs::remove_file(&filler).unwrap();
    wait_for(SHORT, "state.json to record the user's stop", || {
        fs::read_to_string(&state_json).is_ok_and(|t| t.contains("\"stopped-by-user\":true"))
    });
    daemon.wait_for_log_line(&["written after all"]);
}
