//! The daemon's state machine and API at their edges, through the real
//! binary: clients that hang up, stops and starts that cross each other,
//! restarts that cannot happen, definitions that go and come back while a
//! stop is under way, crashes in the middle of a stop, records that cannot
//! be trusted, and exit codes that are lost.

// nanoserde's derived code trips this lint; it is not ours to rewrite.
#![allow(clippy::question_mark)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::records::{Runtime, runtime, runtime_path, with_version};
use common::*;
use nanoserde::DeJson;

/// A shell as pid 1 without a trap: SIGTERM does nothing, only the
/// SIGKILL at the end of the stop timeout ends it.
const DEAF: &[&str] = &["/bin/sh", "-c", "while :; do sleep 0.1; done"];

const WAIT_S: &[u8] = b"{\"verb\":\"wait\",\"name\":\"s\"}\n";

/// The inspect members the harness's `Inspect` leaves out.
#[derive(DeJson, Debug)]
struct More {
    #[nserde(rename = "monitor-pid")]
    monitor_pid: i32,
    #[nserde(rename = "stopped-by-user")]
    stopped_by_user: bool,
    warning: Option<String>,
}

fn more(w: &World, name: &str) -> More {
    inspect_all(w, name).1
}

/// One `inspect`, read as both `Inspect` and `More`.
fn inspect_all(w: &World, name: &str) -> (Inspect, More) {
    let out = w.berth_ok(&["inspect", name]);
    let inspect = Inspect::parse(&out).unwrap_or_else(|e| panic!("inspect {name}: {e}"));
    let more = More::deserialize_json(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    (inspect, more)
}

/// One response line of the API.
#[derive(DeJson, Debug)]
struct Answer {
    ok: bool,
    error: Option<String>,
    #[nserde(rename = "exit-code")]
    exit_code: Option<i64>,
}

/// SIGKILLs the process a runtime record names as the monitor, through a
/// pidfd opened before checking that it is still that process.
fn kill_monitor(rec: &Runtime) {
    let pidfd = common::sys::pidfd_open(rec.monitor_pid).expect("pidfd of the monitor");
    assert!(
        !is_gone(rec.monitor_pid, rec.monitor_start),
        "the monitor is already gone"
    );
    common::sys::pidfd_send_signal(&pidfd, libc::SIGKILL).expect("kill the monitor");
}

/// Whether the process `pid` is blocked reading a socket, as a client
/// that sent its request and waits for the answer is.
fn waits_for_answer(pid: u32) -> bool {
    let Ok(syscall) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut fields = syscall.split_whitespace();
    let nr: Option<libc::c_long> = fields.next().and_then(|n| n.parse().ok());
    if !matches!(nr, Some(libc::SYS_read | libc::SYS_recvfrom)) {
        return false;
    }
    let Some(fd) = fields
        .next()
        .and_then(|f| i64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
    else {
        return false;
    };
    fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
}

/// Waits until `client` has sent its request and waits for the answer,
/// then until the daemon has read that request: it reads in order, so a
/// later client's answer means it has.
fn until_request_taken(w: &World, client: &Spawned, what: &str) {
    wait_for(SHORT, &format!("{what} to wait for its answer"), || {
        waits_for_answer(client.child.id())
    });
    w.berth_ok(&["ps"]);
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn clients_that_hang_up_after_a_wait_do_not_lock_others_out() {
    let w = World::new();
    w.add_container("s", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("s");
    // While the daemon is stopped, 300 clients connect, ask to wait and
    // hang up: it finds each request together with its hang-up, more
    // clients than it takes at once.
    daemon.signal(libc::SIGSTOP);
    for i in 0..300 {
        let mut c =
            UnixStream::connect(w.socket()).unwrap_or_else(|e| panic!("connect client {i}: {e}"));
        c.write_all(WAIT_S)
            .unwrap_or_else(|e| panic!("send from client {i}: {e}"));
    }
    daemon.signal(libc::SIGCONT);

    wait_for(SHORT, "berth ps to be answered", || {
        w.berth(&["ps"]).status.success()
    });
    let out = w.berth(&["stop", "s"]);
    assert!(out.status.success(), "stop: {}", describe(&out));
    let s = w.inspect("s");
    assert_eq!((s.status.as_str(), s.exit_code), ("stopped", Some(0)));
    assert!(daemon.try_status().is_none(), "the daemon still runs");
}

#[test]
fn a_client_that_shuts_down_its_writing_side_still_gets_its_answer() {
    let w = World::new();
    w.add_container("s", POLITE, "{}");
    let _daemon = w.start_daemon(&[]);
    w.wait_running("s");
    let mut c = UnixStream::connect(w.socket()).unwrap();
    c.write_all(WAIT_S).unwrap();
    // The daemon reads in order: once a later client has its answer, it
    // has read the request...
    w.berth_ok(&["ps"]);
    c.shutdown(Shutdown::Write).unwrap();
    // ... and once another one has, it has seen the half-close too.
    w.berth_ok(&["ps"]);
    w.berth_ok(&["stop", "s"]);

    c.set_read_timeout(Some(SHORT)).unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("read the answer: {e} (so far {text:?})"));
    assert_eq!(text.lines().count(), 1, "one answer line: {text:?}");
    assert!(text.ends_with('\n'), "{text:?}");
    let answer = Answer::deserialize_json(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(answer.ok, "{answer:?}");
    assert_eq!(answer.exit_code, Some(0), "{text}");
    assert_eq!(answer.error, None);
}

#[test]
fn a_stop_while_starting_keeps_its_grace() {
    let w = World::new();
    w.add_container(
        "t",
        &[
            "/bin/sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; while :; do sleep 0.1; done",
        ],
        r#"{"autostart": false, "stop-timeout": 10}"#,
    );
    let mut daemon = w.start_daemon(&[]);
    // Both requests wait in the socket's queue, the start first, while
    // the daemon is stopped: it reads the stop right after starting the
    // monitor, long before the container can be reported started.
    daemon.signal(libc::SIGSTOP);
    let start = w.spawn_berth(&["start", "t"]);
    wait_for(SHORT, "berth start to send its request", || {
        waits_for_answer(start.child.id())
    });
    let stop = w.spawn_berth(&["stop", "t"]);
    wait_for(SHORT, "berth stop to send its request", || {
        waits_for_answer(stop.child.id())
    });
    let resumed = Instant::now();
    daemon.signal(libc::SIGCONT);
    let stopped = stop.finish(LONG);
    let took = resumed.elapsed();
    assert!(stopped.status.success(), "stop: {}", describe(&stopped));
    let started = start.finish(SHORT);
    assert!(started.status.success(), "start: {}", describe(&started));

    // The stop came while the start was under way: after the monitor was
    // spawned, before the container was reported started.
    let log = daemon.stderr();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in the daemon log:\n{log}"))
    };
    let (spawned, stop_asked, running) = (
        at("t: monitor "),
        at("t: stop requested by a client"),
        at("t: started, pid"),
    );
    assert!(
        spawned < stop_asked && stop_asked < running,
        "the stop did not come while the container was starting:\n{log}"
    );

    // The stop signal goes out once the container is reported started,
    // and the grace of 10 s holds from the stop request.
    let t = w.inspect("t");
    assert_eq!(t.status, "stopped");
    let output = w.logs("t", &[]).0;
    match t.exit_code {
        Some(3) => assert_eq!(output, "got-term\n", "the trap ran"),
        // Like any pid 1, the shell drops a signal it has no handler for:
        // a SIGTERM that beat the `trap` is lost (a machine under heavy
        // load). Then only SIGKILL at the end of the full grace ends it.
        Some(137) => {
            assert_eq!(output, "", "no trap ran");
            assert!(
                took >= Duration::from_secs(10),
                "SIGKILL after {took:?}, before the 10 s grace was over"
            );
            assert!(log.contains("t: stop timeout reached"), "{log}");
        }
        other => panic!("exit code {other:?}, want 3 (or 137 after the full grace)"),
    }
}

#[test]
fn a_wait_on_a_restarting_container_is_answered_by_a_stop() {
    let w = World::new();
    w.add_container(
        "loop",
        &["/bin/sh", "-c", "exit 1"],
        r#"{"restart": "always"}"#,
    );
    let _daemon = w.start_daemon(&[]);
    // After four restarts the back-off before the fifth is 1.6 s: time
    // enough for what follows to happen while it waits. (While a restart
    // is starting, the status is still "restarting", but a monitor runs.)
    let mut before = None;
    wait_for(LONG, "loop to back off after four restarts", || {
        let (i, m) = inspect_all(&w, "loop");
        let backing_off = i.status == "restarting" && i.restart_count == 4 && m.monitor_pid == 0;
        before = Some(i);
        backing_off
    });
    let before = before.expect("seen");
    let mut wait = w.spawn_berth(&["wait", "loop"]);
    until_request_taken(&w, &wait, "berth wait");
    assert!(
        wait.try_status().is_none(),
        "berth wait blocks while restarting"
    );
    w.berth_ok(&["stop", "loop"]);
    let out = wait.finish(SHORT);
    assert!(out.status.success(), "wait: {}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let after = w.inspect("loop");
    assert_eq!(
        (after.status.as_str(), after.restart_count),
        ("stopped", before.restart_count),
        "no restart happened in between"
    );
}

#[test]
fn restart_answers_when_the_rootfs_is_gone() {
    let w = World::new();
    w.add_container("app", POLITE, "{}");
    let _daemon = w.start_daemon(&[]);
    w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    fs::rename(w.rootfs(), w.root.join("rootfs.moved")).unwrap();
    let out = w.spawn_berth(&["restart", "app"]).finish(SHORT);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("start app") && err.contains("rootfs"),
        "the error names the start and the rootfs: {err}"
    );
    let app = w.inspect("app");
    assert_eq!((app.status.as_str(), app.pid), ("failed", 0));
    assert!(
        is_gone(rec.init_pid, rec.init_start),
        "the old run was stopped"
    );
    assert!(
        app.error.as_deref().unwrap_or_default().contains("rootfs"),
        "{app:?}"
    );
}

#[test]
fn restart_answers_when_a_stop_cancels_it() {
    let w = World::new();
    // Says so on SIGTERM and carries on.
    w.add_container(
        "app",
        &[
            "/bin/sh",
            "-c",
            "trap 'echo got-term' TERM; while :; do sleep 0.1; done",
        ],
        r#"{"stop-timeout": 10}"#,
    );
    let _daemon = w.start_daemon(&[]);
    w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    let restart = w.spawn_berth(&["restart", "app"]);
    wait_for(SHORT, "the restart's stop signal", || {
        fs::read_to_string(w.container_log("app"))
            .unwrap_or_default()
            .contains("got-term")
    });
    let stop = w.spawn_berth(&["stop", "app", "--time", "1"]);

    let out = restart.finish(SHORT);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr_of(&out).contains("stopped before it could start again"),
        "{}",
        describe(&out)
    );
    let out = stop.finish(SHORT);
    assert!(out.status.success(), "stop: {}", describe(&out));
    let app = w.inspect("app");
    assert_eq!((app.status.as_str(), app.pid), ("stopped", 0));
    assert!(is_gone(rec.init_pid, rec.init_start));
    holds_for(Duration::from_millis(500), "app staying stopped", || {
        w.inspect("app").status == "stopped"
    });
}

#[test]
fn a_definition_removed_and_put_back_while_stopping_runs_again() {
    let w = World::new();
    w.add_container("app", DEAF, r#"{"stop-timeout": 2}"#);
    let _daemon = w.start_daemon(&[]);
    let before = w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    let file = w.containers_dir().join("app.json");
    let definition = fs::read_to_string(&file).unwrap();

    fs::remove_file(&file).unwrap();
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("app: removed, stopping"), "{out}");
    w.write_container("app", &definition);
    let out = w.berth_ok(&["reload"]);
    assert!(
        out.contains("app: changed, recreating"),
        "the definition that came back is taken: {out}"
    );
    assert!(
        !is_gone(rec.init_pid, rec.init_start),
        "the stop is still under way"
    );

    wait_for(LONG, "app to run again with a new pid", || {
        w.try_inspect("app")
            .is_some_and(|i| i.is_running() && i.pid != before.pid)
    });
    assert!(is_gone(rec.init_pid, rec.init_start));
    let app = w.inspect("app");
    assert_eq!(app.status, "running");
}

#[test]
fn start_and_restart_of_a_container_being_removed_are_refused() {
    let w = World::new();
    w.add_container("app", DEAF, r#"{"stop-timeout": 5}"#);
    let _daemon = w.start_daemon(&[]);
    let before = w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    fs::remove_file(w.containers_dir().join("app.json")).unwrap();
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("app: removed, stopping"), "{out}");

    for verb in ["start", "restart"] {
        let out = w.berth(&[verb, "app"]);
        assert_eq!(out.status.code(), Some(1), "{verb}: {}", describe(&out));
        assert!(
            stderr_of(&out).contains("app is being removed"),
            "{verb}: {}",
            describe(&out)
        );
    }
    // Both came while the stop was under way.
    assert_eq!(w.inspect("app").pid, before.pid);
    assert!(!is_gone(rec.init_pid, rec.init_start));

    wait_for(LONG, "app to be forgotten", || {
        !w.berth(&["inspect", "app"]).status.success()
    });
    assert!(is_gone(rec.init_pid, rec.init_start));
    holds_for(Duration::from_millis(500), "app staying forgotten", || {
        !w.berth(&["inspect", "app"]).status.success()
    });
}

#[test]
fn a_user_stop_under_way_when_the_daemon_dies_is_finished_by_the_next() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container(
        "app",
        DEAF,
        r#"{"restart": "unless-stopped", "stop-timeout": 3}"#,
    );
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    let stop = w.spawn_berth(&["stop", "app"]);
    daemon.wait_for_log_line(&["app: stop requested by a client"]);
    daemon.kill_9();
    let out = stop.finish(SHORT);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the stop's daemon died: {}",
        describe(&out)
    );
    assert!(
        !is_gone(rec.init_pid, rec.init_start),
        "the container outlives the daemon (SIGTERM does nothing to it)"
    );

    let _daemon = w.start_daemon(&[]);
    let app = w.wait_status("app", "stopped", LONG);
    assert_eq!(app.pid, 0);
    assert!(is_gone(rec.init_pid, rec.init_start));
    assert!(more(&w, "app").stopped_by_user);
    holds_for(Duration::from_millis(500), "app staying stopped", || {
        w.inspect("app").status == "stopped"
    });
}

#[test]
fn without_live_restore_a_container_started_by_hand_is_restarted_by_policy() {
    let w = World::new();
    w.add_container(
        "app",
        POLITE,
        r#"{"autostart": false, "restart": "always"}"#,
    );
    let mut daemon = w.start_daemon(&[]);
    assert_eq!(w.inspect("app").status, "created");
    w.berth_ok(&["start", "app"]);
    let before = w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    daemon.kill_9();
    assert!(!is_gone(rec.init_pid, rec.init_start));

    let _daemon = w.start_daemon(&[]);
    wait_for(SHORT, "app to run again with a new pid", || {
        w.try_inspect("app")
            .is_some_and(|i| i.is_running() && i.pid != before.pid)
    });
    assert!(
        is_gone(rec.init_pid, rec.init_start),
        "the old run was stopped"
    );
    assert!(!more(&w, "app").stopped_by_user);
}

#[test]
fn reload_leaves_a_container_with_an_untrusted_record_alone() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("app", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("app");
    daemon.kill_9();
    let (text, rec) = runtime(&w, "app");
    let newer = with_version(&text, 99);
    w.write_file(&runtime_path(&w, "app"), &newer);
    let daemon = w.start_daemon(&[]);
    daemon.wait_for_log_line(&["app", "format 99", "left untouched"]);

    w.add_container("app", POLITE, r#"{"env": ["CHANGED=1"]}"#);
    let out = w.berth_ok(&["reload"]);
    assert_eq!(
        out.trim(),
        "app: left untouched (its records cannot be trusted)",
        "reload output"
    );
    // Not started as a second instance later either.
    let out = w.berth(&["start", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    holds_for(Duration::from_millis(500), "app untouched", || {
        let app = w.inspect("app");
        app.status == "running" && app.pid as i32 == rec.init_pid
    });
    assert!(!is_gone(rec.init_pid, rec.init_start));
    assert!(!is_gone(rec.monitor_pid, rec.monitor_start));
    assert_eq!(
        fs::read_to_string(runtime_path(&w, "app")).unwrap(),
        newer,
        "no other monitor wrote a record"
    );
    assert!(
        more(&w, "app")
            .warning
            .unwrap_or_default()
            .contains("format 99"),
        "the reason is still shown"
    );
}

#[test]
fn a_replaced_definition_is_stopped_with_the_old_stop_signal() {
    let w = World::new();
    let command = &[
        "/bin/sh",
        "-c",
        "trap 'exit 5' USR1; while :; do sleep 0.1; done",
    ];
    w.add_container(
        "app",
        command,
        r#"{"stop-signal": "SIGUSR1", "stop-timeout": 5}"#,
    );
    let daemon = w.start_daemon(&[]);
    let before = w.wait_running("app");
    // The new definition has the default stop signal, SIGTERM, which this
    // shell (pid 1, no trap for it) ignores.
    w.add_container(
        "app",
        command,
        r#"{"env": ["GENERATION=2"], "stop-timeout": 5}"#,
    );
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("app: changed, recreating"), "{out}");
    let line = daemon.wait_for_log_line(&["app: exited with code"]);
    assert!(
        line.contains("app: exited with code 5 "),
        "ended by SIGUSR1: {line}"
    );
    wait_for(SHORT, "the new definition to run", || {
        w.try_inspect("app")
            .is_some_and(|i| i.is_running() && i.pid != before.pid)
    });
}

#[test]
fn an_exec_failure_is_still_named_after_a_daemon_restart() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    let tool = w.rootfs().join("bin").join("once");
    fs::write(&tool, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    w.add_container(
        "app",
        &["/bin/once"],
        r#"{"autostart": false, "restart": "no"}"#,
    );
    let mut daemon = w.start_daemon(&[]);
    assert_eq!(w.start_wait("app"), 0, "a first run that ends normally");

    fs::remove_file(&tool).unwrap();
    let out = w.berth(&["start", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let exec_error = "exec /bin/once: No such file or directory";
    assert!(stderr_of(&out).contains(exec_error), "{}", describe(&out));
    let app = w.wait_inspect("app", "to fail with the exec error", SHORT, |i| {
        i.status == "failed" && i.error.as_deref().is_some_and(|e| e.contains(exec_error))
    });
    assert_eq!(app.pid, 0);
    daemon.kill_9();

    let _daemon = w.start_daemon(&[]);
    let app = w.inspect("app");
    let error = app.error.clone().unwrap_or_default();
    assert!(error.contains(exec_error), "{app:?}");
    assert!(!error.contains("monitor"), "{app:?}");
    assert_eq!((app.status.as_str(), app.pid), ("failed", 0));
}

#[test]
fn a_lost_exit_code_is_reported_to_start_wait_and_wait() {
    let w = World::new();
    w.add_container("app", POLITE, r#"{"autostart": false}"#);
    let _daemon = w.start_daemon(&[]);
    let mut start = w.spawn_berth(&["start", "app", "--wait"]);
    w.wait_running("app");
    let mut wait = w.spawn_berth(&["wait", "app"]);
    until_request_taken(&w, &wait, "berth wait");
    assert!(start.try_status().is_none() && wait.try_status().is_none());
    let (_, rec) = runtime(&w, "app");
    assert_eq!(more(&w, "app").monitor_pid, rec.monitor_pid);
    kill_monitor(&rec);

    let monitor = format!("monitor (pid {})", rec.monitor_pid);
    for (what, client) in [("start --wait", start), ("wait", wait)] {
        let out = client.finish(SHORT);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", describe(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains("no exit code") && err.contains(&monitor),
            "{what}: {}",
            describe(&out)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "",
            "{what} printed a code"
        );
    }
    let app = w.wait_status("app", "failed", SHORT);
    assert_eq!(app.exit_code, None);
}

#[test]
fn a_start_during_a_user_stop_starts_it_again_once_stopped() {
    let w = World::new();
    w.add_container("app", DEAF, r#"{"stop-timeout": 2}"#);
    let daemon = w.start_daemon(&[]);
    let before = w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    let stop = w.spawn_berth(&["stop", "app"]);
    daemon.wait_for_log_line(&["app: stop requested by a client"]);
    let start = w.spawn_berth(&["start", "app"]);

    let out = start.finish(SHORT);
    assert!(out.status.success(), "start: {}", describe(&out));
    // It answered once the new run was up.
    let now = w.inspect("app");
    assert!(now.is_running(), "{now:?}");
    assert_ne!(now.pid, before.pid, "a new run");
    assert!(is_gone(rec.init_pid, rec.init_start));
    let out = stop.finish(SHORT);
    assert!(out.status.success(), "stop: {}", describe(&out));
    assert!(!more(&w, "app").stopped_by_user);
    holds_for(Duration::from_millis(500), "app staying up", || {
        let i = w.inspect("app");
        i.is_running() && i.pid == now.pid
    });
}

#[test]
fn a_huge_stop_time_is_refused_not_a_crash() {
    let w = World::new();
    w.add_container("v", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    let v = w.wait_running("v");
    for verb in ["stop", "restart"] {
        let out = w.berth(&[verb, "v", "--time", "9223372036854775807"]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(
            stderr_of(&out).contains("at most 3600"),
            "{}",
            describe(&out)
        );
    }
    assert!(daemon.try_status().is_none(), "the daemon is alive");
    assert_eq!(w.inspect("v").pid, v.pid);
}

#[test]
fn a_stop_with_no_grace_during_a_start_leaves_no_orphan() {
    let w = World::new();
    w.add_container("v", POLITE, r#"{"autostart": false}"#);
    let mut daemon = w.start_daemon(&[]);
    let container_cgroup = w.cgroup2_dir().join(&w.cgroup_parent).join("v");
    for round in 0..8 {
        // Queue a start and an immediate SIGKILL-stop while the daemon is
        // stopped, so the stop lands while the start is under way.
        daemon.signal(libc::SIGSTOP);
        let start = w.spawn_berth(&["start", "v"]);
        wait_for(SHORT, "berth start to send its request", || {
            waits_for_answer(start.child.id())
        });
        let stop = w.spawn_berth(&["stop", "v", "--time", "0"]);
        wait_for(SHORT, "berth stop to send its request", || {
            waits_for_answer(stop.child.id())
        });
        daemon.signal(libc::SIGCONT);
        stop.finish(LONG);
        start.finish(LONG);
        // Whatever the start got to, nothing of the container may be left
        // running once its monitor is gone.
        wait_for(SHORT, &format!("round {round}: v to be down"), || {
            w.try_inspect("v")
                .is_some_and(|i| i.pid == 0 && i.status != "running")
        });
        wait_for(
            SHORT,
            &format!("round {round}: no process left in v's cgroup"),
            || common::cgroups::procs(&container_cgroup).is_empty(),
        );
    }
}

#[test]
fn a_socket_path_naming_a_file_is_refused_and_the_file_kept() {
    let w = World::new();
    let victim = w.root.join("victim.txt");
    fs::write(&victim, "keep me").unwrap();
    w.write_daemon_json(&format!(
        r#"{{"socket": {}}}"#,
        json::string(victim.to_str().unwrap())
    ));
    let mut daemon = w.spawn_daemon(&[]);
    let status = daemon.wait_exit(SHORT);
    assert!(!status.success());
    assert!(
        daemon.stderr().contains("is not a socket"),
        "{}",
        daemon.stderr()
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
}

#[test]
fn a_stop_during_a_removal_does_not_cancel_it() {
    let w = World::new();
    w.add_container(
        "n",
        &["/bin/sh", "-c", "while :; do sleep 0.05; done"],
        r#"{"stop-timeout": 2}"#,
    );
    let _daemon = w.start_daemon(&[]);
    w.wait_running("n");
    fs::remove_file(w.containers_dir().join("n.json")).unwrap();
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("n: removed, stopping"), "{out}");
    w.berth_ok(&["stop", "n"]);
    wait_for(LONG, "n to be forgotten", || {
        !w.berth(&["inspect", "n"]).status.success()
    });
}

#[test]
fn an_unknown_verb_is_named() {
    let w = World::new();
    let _daemon = w.start_daemon(&[]);
    let mut s = UnixStream::connect(w.socket()).unwrap();
    s.write_all(b"{\"verb\":\"nope\"}\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("unknown verb: nope"), "{answer}");
}

#[test]
fn a_missing_containers_dir_is_named_with_its_key() {
    let w = World::new();
    let missing = w.root.join("no-such-dir");
    w.write_daemon_json(&format!(
        r#"{{"containers-dir": {}}}"#,
        json::string(missing.to_str().unwrap())
    ));
    let daemon = w.start_daemon(&[]);
    let config = w.config_path();
    daemon.wait_for_log_line(&[
        missing.to_str().unwrap(),
        "containers-dir in",
        config.to_str().unwrap(),
    ]);
    let out = w.berth(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr_of(&out).contains("containers-dir in"),
        "{}",
        describe(&out)
    );
}

/// `wait` on a container backing off before a restart that then cannot
/// start (its rootfs is gone) is answered with the last exit code, not
/// left waiting for a run that will not come.
#[test]
fn a_wait_on_a_restart_that_cannot_start_is_answered() {
    let w = World::new();
    w.add_container(
        "loop",
        &["/bin/sh", "-c", "exit 3"],
        r#"{"restart": "always"}"#,
    );
    let _daemon = w.start_daemon(&[]);
    // Five quick failures: the next back-off is 3.2 s. No monitor: it is
    // backing off, not starting the next run (which shows "restarting"
    // too until its exec).
    wait_for(LONG, "a long back-off", || {
        let i = w.inspect("loop");
        i.status == "restarting" && i.restart_count >= 5 && i.monitor_pid == 0
    });
    let mut wait = w.spawn_berth(&["wait", "loop"]);
    holds_for(Duration::from_millis(300), "wait blocks", || {
        wait.try_status().is_none()
    });
    fs::rename(w.rootfs(), w.root.join("rootfs.moved")).unwrap();
    let out = wait.finish(LONG);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    w.wait_inspect("loop", "to fail on the missing rootfs", SHORT, |i| {
        i.status == "failed" && i.error.as_deref().is_some_and(|e| e.contains("rootfs"))
    });
}
