//! Reload (SIGHUP and `berth reload`) and restart policies through the real
//! binary: the declared set is reconciled, a broken configuration changes
//! nothing, and policies apply to exits seen live and to exits that
//! happened while no daemon ran.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn reload_reconciles_added_removed_changed_and_unchanged() {
    let w = World::new();
    w.add_container("keep", POLITE, "{}");
    w.add_container("change", POLITE, "{}");
    w.add_container("drop", POLITE, "{}");
    let _daemon = w.start_daemon(&[]);
    let keep = w.wait_running("keep");
    let change = w.wait_running("change");
    w.wait_running("drop");

    w.add_container(
        "change",
        &[
            "/bin/sh",
            "-c",
            "trap 'exit 0' TERM; echo second; while :; do sleep 0.05; done",
        ],
        "{}",
    );
    fs::remove_file(w.containers_dir().join("drop.json")).unwrap();
    w.add_container("new", POLITE, "{}");
    w.add_container("idle", POLITE, r#"{"autostart": false}"#);
    let out = w.berth_ok(&["reload"]);
    for expect in [
        "change: changed, recreating",
        "drop: removed",
        "new: added and started",
        "idle: added",
    ] {
        assert!(
            out.contains(expect),
            "reload output lacks {expect:?}: {out}"
        );
    }
    assert!(
        !out.contains("keep"),
        "an unchanged definition is not touched: {out}"
    );

    wait_for(SHORT, "change to run its new definition", || {
        w.try_inspect("change")
            .is_some_and(|i| i.is_running() && i.pid != change.pid)
    });
    wait_for(SHORT, "the new definition's output", || {
        fs::read_to_string(w.container_log("change"))
            .unwrap_or_default()
            .contains("second")
    });
    w.wait_running("new");
    assert_eq!(w.inspect("idle").status, "created");
    wait_for(SHORT, "drop to be forgotten", || {
        !w.berth(&["inspect", "drop"]).status.success()
    });
    assert!(
        !w.run_dir().join("containers").join("drop").exists(),
        "drop's records go"
    );
    assert!(!w.state_dir().join("containers").join("drop").exists());
    let after = w.inspect("keep");
    assert_eq!(
        (after.status.as_str(), after.pid),
        ("running", keep.pid),
        "unchanged keeps its pid"
    );
}

#[test]
fn inspect_and_ps_show_the_definition_a_reload_put_in_place() {
    let w = World::new();
    w.add_container("runs", POLITE, r#"{"stop-timeout": 7}"#);
    w.add_container("idle", POLITE, r#"{"autostart": false, "env": ["X=1"]}"#);
    let _daemon = w.start_daemon(&[]);
    let runs = w.wait_running("runs");
    // Both shown once before the reload.
    let ps = w.berth_ok(&["ps", "--json"]);
    for (name, shown) in [
        ("runs", r#""stop-timeout":7"#),
        ("idle", r#""env":["X=1"]"#),
    ] {
        let inspect = w.berth_ok(&["inspect", name]);
        assert!(inspect.contains(shown), "{name}: {inspect}");
        assert!(ps.contains(shown), "{name}: {ps}");
    }

    w.add_container("runs", POLITE, r#"{"stop-timeout": 3}"#);
    w.add_container("idle", POLITE, r#"{"autostart": false, "env": ["X=2"]}"#);
    w.berth_ok(&["reload"]);
    wait_for(SHORT, "runs to run its new definition", || {
        w.try_inspect("runs")
            .is_some_and(|i| i.is_running() && i.pid != runs.pid)
    });
    let ps = w.berth_ok(&["ps", "--json"]);
    for (name, shown, gone) in [
        ("runs", r#""stop-timeout":3"#, r#""stop-timeout":7"#),
        ("idle", r#""env":["X=2"]"#, r#""env":["X=1"]"#),
    ] {
        let inspect = w.berth_ok(&["inspect", name]);
        assert!(
            inspect.contains(shown) && !inspect.contains(gone),
            "{name}: {inspect}"
        );
        assert!(ps.contains(shown) && !ps.contains(gone), "{name}: {ps}");
    }
}

#[test]
fn sighup_reloads_like_berth_reload() {
    let w = World::new();
    w.add_container("a", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    let a = w.wait_running("a");
    w.add_container("b", POLITE, "{}");
    daemon.signal(libc::SIGHUP);
    w.wait_running("b");
    daemon.wait_for_log_line(&["reload: b: added and started"]);
    assert_eq!(w.inspect("a").pid, a.pid);
}

#[test]
fn a_broken_file_refuses_the_whole_reload() {
    let w = World::new();
    w.add_container("a", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    let a = w.wait_running("a");
    // One good new definition and one broken one: neither is applied.
    w.add_container("good", POLITE, "{}");
    w.write_container(
        "bad",
        r#"{"rootfs": "/", "command": ["/bin/true"], "restrat": "always"}"#,
    );
    fs::remove_file(w.containers_dir().join("a.json")).unwrap();
    let out = w.berth(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("restrat") && err.contains("unknown key"),
        "{err}"
    );
    daemon.wait_for_log_line(&["reload refused", "bad.json", "restrat"]);
    // Nothing changed: a still runs (its file is gone, but the reload
    // was refused), good was not added.
    assert_eq!(w.inspect("a").pid, a.pid);
    assert!(!w.berth(&["inspect", "good"]).status.success());
    // SIGHUP with the same broken file: same refusal, daemon answers.
    daemon.signal(libc::SIGHUP);
    wait_for(SHORT, "a second refusal in the log", || {
        daemon.stderr().matches("reload refused").count() >= 2
    });
    assert_eq!(w.inspect("a").pid, a.pid);

    // A broken daemon.json is refused just the same.
    fs::remove_file(w.containers_dir().join("bad.json")).unwrap();
    fs::write(w.config_path(), "{\"live-restore\": tru").unwrap();
    let socket = w.socket().to_str().unwrap().to_string();
    let out = w.berth(&["--socket", &socket, "reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("daemon.json") && err.contains("line 1"),
        "{err}"
    );
    let out = w.berth(&["--socket", &socket, "inspect", "a"]);
    let a_now = Inspect::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!((a_now.status.as_str(), a_now.pid), ("running", a.pid));
}

#[test]
fn live_restore_switched_on_by_reload_is_honoured() {
    let w = World::new();
    w.add_container("app", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    let app = w.wait_running("app");
    w.write_daemon_json(r#"{"live-restore": true}"#);
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("live-restore on"), "{out}");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(SHORT).success());
    let _daemon = w.start_daemon(&[]);
    assert_eq!(
        w.inspect("app").pid,
        app.pid,
        "the container outlived the daemon"
    );
}

#[test]
fn reload_names_options_that_need_a_restart() {
    let w = World::new();
    let daemon = w.start_daemon(&[]);
    let other = w.root.join("elsewhere");
    w.write_daemon_json(&format!(
        r#"{{"state-dir": {}}}"#,
        json::string(other.to_str().unwrap())
    ));
    let out = w.berth_ok(&["reload"]);
    assert!(
        out.contains("state-dir changed but need a daemon restart"),
        "{out}"
    );
    daemon.wait_for_log_line(&["state-dir", "daemon restart"]);
    assert!(!other.exists(), "the old state-dir stays in use");
}

#[test]
fn on_failure_2_stops_after_two_restarts() {
    let w = World::new();
    w.add_container(
        "flaky",
        &["/bin/sh", "-c", "echo try; exit 3"],
        r#"{"restart": "on-failure:2"}"#,
    );
    let _daemon = w.start_daemon(&[]);
    let done = w.wait_status("flaky", "exited", LONG);
    let mut last = done.clone();
    wait_for(LONG, "two restarts", || {
        last = w.inspect("flaky");
        last.restart_count == 2 && last.status == "exited"
    });
    assert_eq!(last.exit_code, Some(3));
    // No third restart: the back-off after two would be 400 ms.
    holds_for(Duration::from_millis(1500), "flaky staying exited", || {
        let i = w.inspect("flaky");
        i.status == "exited" && i.restart_count == 2
    });
    let tries = fs::read_to_string(w.container_log("flaky"))
        .unwrap()
        .matches("try")
        .count();
    assert_eq!(tries, 3, "one run and two restarts");
}

#[test]
fn restarting_is_shown_and_backs_off() {
    let w = World::new();
    w.add_container(
        "loop",
        &["/bin/sh", "-c", "exit 1"],
        r#"{"restart": "always"}"#,
    );
    let _daemon = w.start_daemon(&[]);
    // Each quick failure doubles the delay: 0.1 + 0.2 + 0.4 + 0.8 s; after
    // 1 s there can have been at most 4 restarts, and status is seen as
    // "restarting" while waiting.
    w.wait_status("loop", "restarting", SHORT);
    let t0 = Instant::now();
    wait_for(LONG, "four restarts", || {
        w.inspect("loop").restart_count >= 4
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(600),
        "back-off must slow restarts: {:?}",
        t0.elapsed()
    );
    w.berth_ok(&["stop", "loop"]);
    let i = w.inspect("loop");
    assert_eq!(i.status, "stopped");
    holds_for(Duration::from_millis(500), "loop staying stopped", || {
        w.inspect("loop").status == "stopped"
    });
}

#[test]
fn always_restarts_a_container_killed_while_the_daemon_was_down() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("app", POLITE, r#"{"restart": "always"}"#);
    let mut daemon = w.start_daemon(&[]);
    let before = w.wait_running("app");
    let record = w.run_dir().join("containers/app/runtime.json");
    let text = fs::read_to_string(&record).unwrap();
    let field = |key: &str| -> u64 {
        let at = text
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in {text}"));
        text[at + key.len() + 3..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (monitor, monitor_start) = (field("monitor-pid") as i32, field("monitor-start"));
    let init_start = field("init-start");
    daemon.kill_9();
    common::sys::kill_child(before.pid, libc::SIGKILL).unwrap();
    wait_for(SHORT, "the container to die", || {
        is_gone(before.pid as i32, init_start)
    });
    wait_for(SHORT, "its monitor to record the exit", || {
        is_gone(monitor, monitor_start)
    });
    let daemon = w.start_daemon(&[]);
    wait_for(SHORT, "app to be restarted", || {
        w.try_inspect("app")
            .is_some_and(|i| i.is_running() && i.pid != before.pid)
    });
    let app = w.inspect("app");
    assert_eq!(app.restart_count, 1);
    daemon.wait_for_log_line(&["app", "ended while no daemon ran", "137"]);
}

#[test]
fn unless_stopped_stays_stopped_across_a_daemon_restart() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("us", POLITE, r#"{"restart": "unless-stopped"}"#);
    w.add_container("al", POLITE, r#"{"restart": "always"}"#);
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("us");
    w.wait_running("al");
    w.berth_ok(&["stop", "us"]);
    w.berth_ok(&["stop", "al"]);
    assert_eq!(w.inspect("us").status, "stopped");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(SHORT).success());

    let _daemon = w.start_daemon(&[]);
    // "always" comes back with the daemon; "unless-stopped" remembers.
    w.wait_running("al");
    let us = w.inspect("us");
    assert_eq!((us.status.as_str(), us.pid), ("stopped", 0));
    holds_for(Duration::from_millis(500), "us staying stopped", || {
        w.inspect("us").status == "stopped"
    });
    // A user's start clears the stop.
    w.berth_ok(&["start", "us"]);
    w.wait_running("us");
}

#[test]
fn a_crash_loop_is_rate_limited_in_the_log() {
    let w = World::new();
    w.add_container(
        "loop",
        &["/bin/sh", "-c", "exit 1"],
        r#"{"restart": "always"}"#,
    );
    let daemon = w.start_daemon(&[]);
    // Five quick failures take about 3 s of back-off and would log three
    // lines each (exited, restarting, started).
    wait_for(LONG, "five restarts", || {
        w.inspect("loop").restart_count >= 5
    });
    let lines = daemon
        .stderr()
        .lines()
        .filter(|l| l.contains("loop:"))
        .count();
    assert!(
        lines <= 10,
        "at most 10 lines a minute for one container, saw {lines}:\n{}",
        daemon.stderr()
    );
    assert!(
        lines >= 5,
        "the first messages are logged: {}",
        daemon.stderr()
    );
}
