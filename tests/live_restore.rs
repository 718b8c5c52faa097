//! Live restore through the real binary: containers outlive every way a
//! daemon can go (kill -9, SIGTERM with and without live restore, a binary
//! replaced on disk), and the next daemon re-attaches to them, accounts for
//! what happened while it was away, and refuses records it cannot trust.

mod common;

use std::fs;

use common::records::{runtime, runtime_path, with_version};
use common::*;

fn live_world() -> World {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w
}

fn wait_gone(pid: i32, start: u64, what: &str) {
    wait_for(SHORT, what, || is_gone(pid, start));
}

#[test]
fn kill_9_of_the_daemon_loses_nothing() {
    let w = live_world();
    w.write_daemon_json(r#"{"live-restore": true, "log-max-size": "1m", "log-max-files": 3}"#);
    let mount = format!(r#"{{"mounts": [{}]}}"#, w.data_mount());
    w.add_container("steady", POLITE, "{}");
    w.add_container(
        "exit42",
        &[
            "/bin/sh",
            "-c",
            "while [ ! -e /data/go42 ]; do sleep 0.02; done; exit 42",
        ],
        &mount,
    );
    w.add_container(
        "term",
        &[
            "/bin/sh",
            "-c",
            "trap 'exit 143' TERM; echo armed; while :; do sleep 0.02; done",
        ],
        "{}",
    );
    // The flood starts only once the daemon is gone, writes 8 MiB of
    // stdout, then says so in a file on the host; it never waits on anyone.
    w.add_container(
        "flood",
        &[
            "/bin/sh",
            "-c",
            "while [ ! -e /data/go-flood ]; do sleep 0.02; done; \
             yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 8388608; \
             echo flood-finished; touch /data/flood-done; while :; do sleep 1; done",
        ],
        &mount,
    );
    let mut daemon = w.start_daemon(&[]);
    let before: Vec<Inspect> = ["steady", "exit42", "term", "flood"]
        .iter()
        .map(|n| w.wait_running(n))
        .collect();
    wait_for(SHORT, "term to arm its trap", || {
        fs::read_to_string(w.container_log("term"))
            .unwrap_or_default()
            .contains("armed")
    });
    let (_, term_rec) = runtime(&w, "term");
    let (_, exit42_rec) = runtime(&w, "exit42");

    daemon.kill_9();

    // While no daemon runs: one exits by itself, one is killed from
    // outside, one floods its stdout.
    fs::write(w.host_dir().join("go42"), "").unwrap();
    common::sys::kill_child(term_rec.init_pid as u32, libc::SIGTERM).unwrap();
    fs::write(w.host_dir().join("go-flood"), "").unwrap();
    wait_gone(exit42_rec.init_pid, exit42_rec.init_start, "exit42 to exit");
    wait_gone(term_rec.init_pid, term_rec.init_start, "term to exit");
    wait_for(LONG, "the flood to finish with no daemon reading", || {
        w.host_dir().join("flood-done").exists()
    });

    let _daemon = w.start_daemon(&[]);
    let steady = w.inspect("steady");
    assert_eq!(
        (steady.status.as_str(), steady.pid),
        ("running", before[0].pid),
        "steady kept its pid"
    );
    let flood = w.inspect("flood");
    assert_eq!(
        (flood.status.as_str(), flood.pid),
        ("running", before[3].pid),
        "flood kept its pid"
    );
    let exit42 = w.inspect("exit42");
    assert_eq!(
        (exit42.status.as_str(), exit42.exit_code),
        ("exited", Some(42))
    );
    let term = w.inspect("term");
    assert_eq!(
        (term.status.as_str(), term.exit_code),
        ("exited", Some(143))
    );
    assert!(term.finished_at.is_some());

    // The flood's output went to the logs, within the caps.
    let (out, _) = w.logs("flood", &["--tail", "1"]);
    assert_eq!(out, "flood-finished\n");
    let dir = w.log_dir().join("flood");
    let files: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(files.len() <= 3, "at most log-max-files files: {files:?}");
    assert!(
        files.len() >= 2,
        "8 MiB through 1 MiB files must have rotated: {files:?}"
    );
    for f in &files {
        assert!(
            f.metadata().unwrap().len() <= 1024 * 1024,
            "{:?} over the cap",
            f.path()
        );
    }

    // Everything still works on the re-attached containers.
    w.berth_ok(&["stop", "steady"]);
    let steady = w.inspect("steady");
    assert_eq!(
        (steady.status.as_str(), steady.exit_code, steady.pid),
        ("stopped", Some(0), 0)
    );
    w.berth_ok(&["kill", "flood"]);
    let out = w.berth_ok(&["wait", "flood"]);
    assert_eq!(out.trim(), "137");
}

#[test]
fn sigterm_with_live_restore_leaves_containers_running() {
    let w = World::new();
    w.add_container("app", POLITE, "{}");
    let mut daemon = w.start_daemon(&["--live-restore"]);
    let before = w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(SHORT).success());
    assert!(
        !is_gone(rec.init_pid, rec.init_start),
        "the container must survive a live-restore stop"
    );
    let _daemon = w.start_daemon(&["--live-restore"]);
    let after = w.inspect("app");
    assert_eq!((after.status.as_str(), after.pid), ("running", before.pid));
}

#[test]
fn sigterm_without_live_restore_stops_containers_then_restarts_them() {
    let w = World::new();
    w.add_container("app", POLITE, "{}");
    // Ignores SIGTERM: only SIGKILL at the shutdown timeout ends it.
    w.add_container(
        "stubborn",
        &["/bin/sh", "-c", "while :; do sleep 0.05; done"],
        r#"{"stop-timeout": 1}"#,
    );
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("app");
    w.wait_running("stubborn");
    let (_, app) = runtime(&w, "app");
    let (_, stubborn) = runtime(&w, "stubborn");
    daemon.signal(libc::SIGTERM);
    assert!(
        daemon.wait_exit(SHORT).success(),
        "daemon stderr:\n{}",
        daemon.stderr()
    );
    assert!(is_gone(app.init_pid, app.init_start));
    assert!(is_gone(stubborn.init_pid, stubborn.init_start));
    assert!(
        is_gone(app.monitor_pid, app.monitor_start),
        "monitors end with their containers"
    );
    let log = daemon.stderr();
    assert!(
        log.contains("stubborn: stop timeout reached: sent SIGKILL"),
        "{log}"
    );

    // The next daemon starts them from their definitions.
    let _daemon = w.start_daemon(&[]);
    let again = w.wait_running("app");
    assert_ne!(again.pid as i32, app.init_pid);
}

#[test]
fn crash_without_live_restore_stops_and_restarts_containers() {
    let w = World::new();
    w.add_container("app", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    let before = w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    daemon.kill_9();
    assert!(
        !is_gone(rec.init_pid, rec.init_start),
        "kill -9 never takes a container down"
    );
    let daemon = w.start_daemon(&[]);
    wait_for(SHORT, "app to run again with a new pid", || {
        w.try_inspect("app")
            .is_some_and(|i| i.is_running() && i.pid != before.pid)
    });
    assert!(is_gone(rec.init_pid, rec.init_start));
    daemon.wait_for_log_line(&["app", "live restore is off"]);
}

/// Whether exec of `path` fails with ETXTBSY right now: some process (a
/// child forked by another test thread, not yet exec'd) still has it open
/// for writing. Checked by running `berth version` from it.
fn text_file_busy(path: &std::path::Path) -> bool {
    matches!(
        std::process::Command::new(path).arg("version").output(),
        Err(e) if e.raw_os_error() == Some(libc::ETXTBSY)
    )
}

#[test]
fn a_binary_replaced_on_disk_changes_nothing() {
    let w = live_world();
    let bin_dir = w.root.join("bin");
    fs::create_dir(&bin_dir).unwrap();
    let installed = bin_dir.join("berth");
    fs::copy(BERTH, &installed).unwrap();
    let spawn = |w: &World| {
        // A file just written can be briefly "busy" for exec: a process
        // forked by another test thread while the copy was open holds its
        // write fd until it execs. Once one exec works, none can be left
        // (the fd is closed here, so no later fork inherits it).
        wait_for(SHORT, "the copied binary to be executable", || {
            !text_file_busy(&installed)
        });
        let mut cmd = std::process::Command::new(&installed);
        cmd.arg("daemon")
            .arg("--config")
            .arg(w.config_path())
            .current_dir("/");
        let p = w.spawn_in_world(cmd, "installed berth daemon");
        wait_for(SHORT, "the installed daemon to answer", || {
            w.berth(&["ps"]).status.success()
        });
        p
    };
    w.add_container("app", POLITE, "{}");
    let mut old = spawn(&w);
    let before = w.wait_running("app");
    let (_, rec) = runtime(&w, "app");

    // What a package manager does: write the new file, rename it over.
    let staged = bin_dir.join(".berth.new");
    fs::copy(BERTH, &staged).unwrap();
    fs::rename(&staged, &installed).unwrap();
    let exe = fs::read_link(format!("/proc/{}/exe", rec.monitor_pid)).unwrap();
    assert!(
        exe.to_string_lossy().ends_with("(deleted)"),
        "the monitor runs the replaced file: {exe:?}"
    );

    common::sys::kill_child(old.child.id(), libc::SIGKILL).unwrap();
    old.child.wait().unwrap();
    let _new = spawn(&w);
    let after = w.inspect("app");
    assert_eq!((after.status.as_str(), after.pid), ("running", before.pid));
    // The new daemon stops a container of the old binary's monitor, and
    // starts one with its own.
    w.berth_ok(&["stop", "app"]);
    assert!(is_gone(rec.init_pid, rec.init_start));
    w.berth_ok(&["start", "app"]);
    let (_, fresh) = runtime(&w, "app");
    let exe = fs::read_link(format!("/proc/{}/exe", fresh.monitor_pid)).unwrap();
    assert_eq!(exe, installed);
}

#[test]
fn a_format_1_record_is_read() {
    let w = live_world();
    w.add_container("app", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    let before = w.wait_running("app");
    daemon.kill_9();
    // Rewrite the record as format 1 wrote it: no "options", no "berth".
    let (text, rec) = runtime(&w, "app");
    let kept: Vec<String> = json::members(text.trim())
        .into_iter()
        .filter(|(k, _)| k != "options" && k != "berth")
        .map(|(k, v)| {
            if k == "version" {
                format!("{}: 1", json::string(&k))
            } else {
                format!("{}: {v}", json::string(&k))
            }
        })
        .collect();
    let v1 = format!("{{{}}}", kept.join(", "));
    assert!(
        !v1.contains("options") && v1.contains("\"version\": 1"),
        "{v1}"
    );
    w.write_file(&runtime_path(&w, "app"), &v1);

    let _daemon = w.start_daemon(&[]);
    let after = w.inspect("app");
    assert_eq!((after.status.as_str(), after.pid), ("running", before.pid));
    w.berth_ok(&["stop", "app"]);
    assert!(is_gone(rec.init_pid, rec.init_start));
}

#[test]
fn a_newer_format_record_leaves_its_container_untouched() {
    let w = live_world();
    w.add_container("app", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("app");
    daemon.kill_9();
    let (text, rec) = runtime(&w, "app");
    let newer = with_version(&text, 99);
    w.write_file(&runtime_path(&w, "app"), &newer);

    let daemon = w.start_daemon(&[]);
    daemon.wait_for_log_line(&["app", "format 99", "left untouched"]);
    let app = w.inspect("app");
    assert_eq!(
        (app.status.as_str(), app.pid as i32),
        ("running", rec.init_pid),
        "shown as it is seen"
    );
    let table = w.berth_ok(&["ps"]);
    assert!(table.contains("format 99"), "ps must say why: {table}");
    let out = w.berth(&["stop", "app"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a stop it cannot verify is refused: {}",
        describe(&out)
    );
    let out = w.berth(&["start", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        !is_gone(rec.init_pid, rec.init_start),
        "the container was left running"
    );
    assert!(!is_gone(rec.monitor_pid, rec.monitor_start));
}

#[test]
fn a_reused_pid_is_not_mistaken_for_the_container() {
    let w = live_world();
    w.add_container("app", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("app");
    daemon.kill_9();
    // A process of ours now holds the pids the record names (as if they
    // had been reused); its start time differs from the recorded one.
    let mut sleeper = w.spawn_in_world(
        {
            let mut c = std::process::Command::new("/bin/sleep");
            c.arg("1000");
            c
        },
        "a process that took the recorded pid",
    );
    let sleeper_pid = sleeper.child.id() as i32;
    let (text, rec) = runtime(&w, "app");
    let forged = text
        .replacen(
            &format!("\"monitor-pid\":{}", rec.monitor_pid),
            &format!("\"monitor-pid\":{sleeper_pid}"),
            1,
        )
        .replacen(
            &format!("\"init-pid\":{}", rec.init_pid),
            &format!("\"init-pid\":{sleeper_pid}"),
            1,
        );
    assert_ne!(forged, text);
    w.write_file(&runtime_path(&w, "app"), &forged);

    let _daemon = w.start_daemon(&[]);
    let app = w.inspect("app");
    assert_eq!(app.status, "failed");
    assert!(
        app.error.as_deref().unwrap_or("").contains("monitor"),
        "{app:?}"
    );
    assert_ne!(app.pid as i32, sleeper_pid);
    assert!(
        sleeper.try_status().is_none(),
        "the process that reused the pid was not signalled"
    );
}

#[test]
fn a_monitor_killed_while_the_daemon_runs_is_noticed() {
    let w = World::new();
    w.add_container("app", POLITE, "{}");
    let _daemon = w.start_daemon(&[]);
    w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    common::sys::kill_child(rec.monitor_pid as u32, libc::SIGKILL).unwrap();
    let app = w.wait_status("app", "failed", SHORT);
    let error = app.error.unwrap_or_default();
    assert!(
        error.contains(&format!("monitor (pid {})", rec.monitor_pid)),
        "{error}"
    );
    assert_eq!(app.pid, 0);
    // The container does not outlive its monitor.
    wait_gone(
        rec.init_pid,
        rec.init_start,
        "the container to die with its monitor",
    );
}

#[test]
fn daemon_options_changed_while_a_container_ran_are_named() {
    let w = live_world();
    w.add_container("app", POLITE, "{}");
    let mut daemon = w.start_daemon(&[]);
    let before = w.wait_running("app");
    daemon.kill_9();
    w.write_daemon_json(r#"{"live-restore": true, "log-max-size": "64k", "log-max-files": 5}"#);
    let daemon = w.start_daemon(&[]);
    daemon.wait_for_log_line(&[
        "app",
        "log-max-size 1048576 -> 65536",
        "log-max-files 3 -> 5",
    ]);
    let out = w.berth_ok(&["inspect", "app"]);
    assert!(
        out.contains("log-max-size 1048576 -> 65536"),
        "inspect names the change: {out}"
    );
    // Still managed: same pid, and stop works.
    assert_eq!(w.inspect("app").pid, before.pid);
    w.berth_ok(&["stop", "app"]);
    assert_eq!(w.inspect("app").status, "stopped");
}

#[test]
fn logs_follow_outlives_the_daemon() {
    let w = live_world();
    let mount = format!(r#"{{"mounts": [{}]}}"#, w.data_mount());
    w.add_container(
        "talker",
        &[
            "/bin/sh",
            "-c",
            "echo before; while [ ! -e /data/go ]; do sleep 0.02; done; echo after-the-daemon-died; exit 7",
        ],
        &mount,
    );
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("talker");
    wait_for(SHORT, "the first line", || {
        fs::read_to_string(w.container_log("talker"))
            .unwrap_or_default()
            .contains("before")
    });
    let follower = w.spawn_berth(&["logs", "talker", "--follow"]);
    wait_for(SHORT, "the follower to print the first line", || {
        fs::read_to_string(&follower.stdout_path)
            .unwrap_or_default()
            .contains("before")
    });
    daemon.kill_9();
    fs::write(w.host_dir().join("go"), "").unwrap();
    let out = follower.finish(SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "before\nafter-the-daemon-died\n"
    );
}

/// Live restore off, and the container found running has an invalid
/// definition now: it is stopped like any other (and not started again,
/// as its definition cannot be run), never left running unmanaged.
#[test]
fn found_running_with_an_invalid_definition_is_stopped_without_live_restore() {
    let w = World::new();
    w.add_container("app", POLITE, r#"{"autostart": false}"#);
    let mut daemon = w.start_daemon(&[]);
    w.berth_ok(&["start", "app"]);
    w.wait_running("app");
    let (_, rec) = runtime(&w, "app");
    daemon.kill_9();
    w.write_container("app", r#"{"rootfs": 5}"#);
    let _daemon = w.start_daemon(&[]);
    let app = w.wait_inspect("app", "to be stopped", LONG, |i| {
        i.status == "stopped" && i.pid == 0
    });
    assert!(
        app.error.as_deref().is_some_and(|e| e.contains("rootfs")),
        "the invalid definition is named: {app:?}"
    );
    wait_for(SHORT, "the container's init to be gone", || {
        is_gone(rec.init_pid, rec.init_start)
    });
}
