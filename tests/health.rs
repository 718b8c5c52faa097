//! Health checks through the real binary: a check run inside the
//! container turns it healthy, then unhealthy when what it tests goes
//! away; `on-unhealthy: "restart"` has the monitor start a new init, with
//! the daemon running and while no daemon runs (killed with -9), and the
//! next daemon shows the health and the restarts; a check that hangs is
//! killed at its timeout; failures in the start period do not count;
//! errors in the keys name the file and the field.

// nanoserde's derived code trips this lint; it is not ours to rewrite.
#![allow(clippy::question_mark)]

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nanoserde::DeJson;

use common::records::{Runtime, runtime};
use common::*;

/// The part of `inspect` (and of each `ps --json` element) about health.
#[derive(DeJson, Debug, Clone)]
struct Checked {
    name: String,
    status: String,
    pid: i32,
    #[nserde(rename = "restart-count")]
    restart_count: u32,
    health: Option<Health>,
}

#[derive(DeJson, Debug, Clone)]
struct Health {
    status: String,
    #[nserde(rename = "failing-streak")]
    failing_streak: u32,
    log: Vec<Check>,
}

#[derive(DeJson, Debug, Clone)]
struct Check {
    start: u64,
    end: u64,
    #[nserde(rename = "exit-code")]
    exit_code: Option<i32>,
    output: String,
}

/// health.json as the monitor writes it.
#[derive(DeJson, Debug, Clone)]
struct Record {
    status: String,
    restarts: u32,
}

fn checked(w: &World, name: &str) -> Checked {
    let out = w.berth_ok(&["inspect", name]);
    Checked::deserialize_json(out.trim()).unwrap_or_else(|e| panic!("inspect {name}: {e}: {out}"))
}

/// Waits until NAME's inspect satisfies `cond`; returns it.
fn wait_checked(
    w: &World,
    name: &str,
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut(&Checked) -> bool,
) -> Checked {
    let end = Instant::now() + deadline;
    loop {
        let c = checked(w, name);
        if cond(&c) {
            return c;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {name} {what}; last inspect: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until NAME's checks found it healthy.
fn wait_healthy(w: &World, name: &str) -> Checked {
    wait_checked(w, name, "to be healthy", SHORT, |c| {
        status_of(c) == "healthy"
    })
}

/// Makes NAME's check (on /data/ok) fail until its monitor has started
/// an init other than `now`'s, then pass again; the new runtime record.
fn fail_until_new_init(w: &World, name: &str, now: &Runtime, when: &str) -> Runtime {
    fs::remove_file(w.host_dir().join("ok")).unwrap();
    wait_for(
        LONG,
        &format!("the monitor to start a new init{when}"),
        || runtime(w, name).1.init_pid != now.init_pid,
    );
    fs::write(w.host_dir().join("ok"), "").unwrap();
    runtime(w, name).1
}

fn status_of(c: &Checked) -> &str {
    c.health.as_ref().map_or("", |h| h.status.as_str())
}

fn health_path(w: &World, name: &str) -> PathBuf {
    w.run_dir()
        .join("containers")
        .join(name)
        .join("health.json")
}

fn health_record(w: &World, name: &str) -> Option<Record> {
    let text = fs::read_to_string(health_path(w, name)).ok()?;
    Record::deserialize_json(text.trim()).ok()
}

/// A definition with a healthcheck (and more keys) and /data bound from
/// the world's host dir.
fn with_check(w: &World, health: &str, extra: &str) -> String {
    format!(
        r#"{{"mounts": [{}], "healthcheck": {health}{extra}}}"#,
        w.data_mount()
    )
}

/// The check most tests use: passes while /data/ok exists, and says the
/// hostname it sees (the container's, not the host's).
const CHECK_OK_FILE: &str = r#"["/bin/sh", "-c", "echo seen from $(hostname); test -e /data/ok"]"#;

#[test]
fn a_check_passes_then_fails_when_its_file_goes() {
    let w = World::new();
    fs::write(w.host_dir().join("ok"), "").unwrap();
    w.add_container(
        "web",
        POLITE,
        &with_check(
            &w,
            &format!(r#"{{"command": {CHECK_OK_FILE}, "interval": 1, "retries": 2}}"#),
            "",
        ),
    );
    w.add_container("plain", POLITE, "{}");
    let daemon = w.start_daemon(&[]);
    let first = w.wait_running("web");
    assert_eq!(
        checked(&w, "plain").health.map(|h| h.status),
        None,
        "no healthcheck: health is null"
    );
    let healthy = wait_healthy(&w, "web");
    let h = healthy.health.unwrap();
    assert_eq!(h.failing_streak, 0);
    let last = h.log.last().expect("a result in the log");
    assert_eq!(last.exit_code, Some(0));
    assert_eq!(last.output, "seen from web\n", "run inside the container");
    assert!(last.end >= last.start);
    daemon.wait_for_log_line(&["web: health: healthy"]);
    // ps --json carries it too.
    let out = w.berth_ok(&["ps", "--json"]);
    let list = Vec::<Checked>::deserialize_json(out.trim()).unwrap();
    let web = list.iter().find(|c| c.name == "web").unwrap();
    assert_eq!(status_of(web), "healthy");

    fs::remove_file(w.host_dir().join("ok")).unwrap();
    let sick = wait_checked(&w, "web", "to be unhealthy", SHORT, |c| {
        status_of(c) == "unhealthy"
    });
    let h = sick.health.unwrap();
    assert!(h.failing_streak >= 2, "{h:?}");
    assert!(h.log.len() <= 5, "{h:?}");
    let failures: Vec<_> = h.log.iter().rev().take(2).collect();
    for f in failures {
        assert_eq!(f.exit_code, Some(1), "{h:?}");
        assert_eq!(f.output, "seen from web\n");
    }
    daemon.wait_for_log_line(&["web: health: unhealthy"]);
    // Without on-unhealthy, nothing else happens to it.
    assert_eq!(
        (sick.status.as_str(), sick.pid),
        ("running", first.pid as i32)
    );
    assert_eq!(sick.restart_count, 0);

    // Healthy again when the file is back.
    fs::write(w.host_dir().join("ok"), "").unwrap();
    wait_checked(&w, "web", "to be healthy again", SHORT, |c| {
        status_of(c) == "healthy"
    });
}

#[test]
fn an_unhealthy_container_is_restarted_by_its_monitor_with_and_without_a_daemon() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    fs::write(w.host_dir().join("ok"), "").unwrap();
    w.add_container(
        "app",
        POLITE,
        &with_check(
            &w,
            &format!(r#"{{"command": {CHECK_OK_FILE}, "interval": 1, "retries": 3}}"#),
            r#", "on-unhealthy": "restart", "stop-timeout": 5"#,
        ),
    );
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("app");
    wait_healthy(&w, "app");
    let (_, before) = runtime(&w, "app");

    // With the daemon running.
    let second = fail_until_new_init(&w, "app", &before, "");
    assert_eq!(second.monitor_pid, before.monitor_pid, "the same monitor");
    assert!(is_gone(before.init_pid, before.init_start), "old init gone");
    assert!(
        !is_gone(second.init_pid, second.init_start),
        "new init runs"
    );
    let c = wait_checked(&w, "app", "to follow the new init", SHORT, |c| {
        c.pid == second.init_pid
    });
    assert_eq!(c.restart_count, 1, "counted as soon as followed: {c:?}");
    let c = wait_checked(&w, "app", "to be healthy again", SHORT, |c| {
        status_of(c) == "healthy"
    });
    assert_eq!(c.restart_count, 1, "{c:?}");
    assert_eq!(c.status, "running");
    daemon.wait_for_log_line(&["app: unhealthy: its monitor restarted it"]);
    // The failures that caused it are in the log.
    let log = c.health.unwrap().log;
    assert!(
        log.iter().filter(|r| r.exit_code == Some(1)).count() >= 3,
        "{log:?}"
    );

    // With no daemon running.
    daemon.kill_9();
    let third = fail_until_new_init(&w, "app", &second, " with no daemon");
    assert_eq!(third.monitor_pid, before.monitor_pid);
    assert!(is_gone(second.init_pid, second.init_start));
    assert!(!is_gone(third.init_pid, third.init_start));
    let cmdline = fs::read(format!("/proc/{}/cmdline", third.init_pid)).unwrap();
    assert!(cmdline.starts_with(b"/bin/sh\0-c\0trap"), "{cmdline:?}");
    wait_for(SHORT, "health.json to count two restarts", || {
        health_record(&w, "app").is_some_and(|r| r.restarts == 2)
    });

    // The next daemon shows it all, and its signals reach the new init.
    let daemon = w.start_daemon(&[]);
    let c = wait_checked(&w, "app", "to be healthy after the restart", SHORT, |c| {
        status_of(c) == "healthy"
    });
    assert_eq!((c.status.as_str(), c.pid), ("running", third.init_pid));
    assert_eq!(c.restart_count, 2, "{c:?}");
    assert_eq!(health_record(&w, "app").unwrap().status, "healthy");
    w.berth_ok(&["stop", "app"]);
    let c = checked(&w, "app");
    assert_eq!(c.status, "stopped");
    assert_eq!(c.restart_count, 2, "counted once at the end: {c:?}");
    assert!(is_gone(third.init_pid, third.init_start));
    drop(daemon);
}

/// What `inspect` shows of where a container's init is: its pid, its
/// cgroups and the processes started into it.
#[derive(DeJson, Debug)]
struct Placed {
    pid: i32,
    cgroups: Vec<String>,
    execs: Vec<Execd>,
}

#[derive(DeJson, Debug)]
struct Execd {
    pid: i32,
    command: Vec<String>,
}

/// The cgroups the runtime record of NAME names.
#[derive(DeJson)]
struct Recorded {
    options: RecordedOptions,
}

#[derive(DeJson)]
struct RecordedOptions {
    cgroups: Vec<String>,
}

fn recorded_cgroups(w: &World, name: &str) -> Vec<String> {
    let (text, _) = runtime(w, name);
    Recorded::deserialize_json(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .options
        .cgroups
}

/// Waits until NAME's inspect satisfies `cond` (and `ps` shows the same
/// cgroups and processes); returns it.
fn wait_placed(w: &World, name: &str, what: &str, mut cond: impl FnMut(&Placed) -> bool) -> Placed {
    let mut last = None;
    wait_for(SHORT, &format!("{name} {what}"), || {
        let out = w.berth_ok(&["inspect", name]);
        let p = Placed::deserialize_json(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        let ok = cond(&p);
        last = Some(p);
        ok
    });
    let p = last.expect("read above");
    let out = w.berth_ok(&["ps", "--json"]);
    let all = Vec::<Placed>::deserialize_json(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        all.iter()
            .any(|q| q.pid == p.pid && q.cgroups == p.cgroups && sleeps(q) == sleeps(&p)),
        "ps shows another {name}: {out}; inspect: {p:?}"
    );
    p
}

/// The exec'd processes of `p` but its health checks (which come and go).
fn sleeps(p: &Placed) -> Vec<(i32, &[String])> {
    p.execs
        .iter()
        .filter(|e| e.command.first().is_some_and(|c| c == "/bin/sleep"))
        .map(|e| (e.pid, e.command.as_slice()))
        .collect()
}

#[test]
fn inspect_follows_the_init_its_monitor_started_again() {
    let w = World::new();
    fs::write(w.host_dir().join("ok"), "").unwrap();
    // A memory limit: cgroups in v1 hierarchies too, where there are.
    w.add_container(
        "app",
        POLITE,
        &with_check(
            &w,
            &format!(r#"{{"command": {CHECK_OK_FILE}, "interval": 1, "retries": 2}}"#),
            r#", "on-unhealthy": "restart", "stop-timeout": 5, "memory": "64m""#,
        ),
    );
    let _daemon = w.start_daemon(&[]);
    w.wait_running("app");
    wait_healthy(&w, "app");
    let (_, before) = runtime(&w, "app");
    let first_exec = w.spawn_berth(&["exec", "app", "/bin/sleep", "300"]);
    let first = wait_placed(&w, "app", "to list the exec'd sleep", |p| {
        p.execs.iter().any(|e| e.command == ["/bin/sleep", "300"])
    });
    assert_eq!(first.pid, before.init_pid);
    assert!(!first.cgroups.is_empty());
    assert_eq!(first.cgroups, recorded_cgroups(&w, "app"));

    // The monitor starts a new init (and writes a new runtime record):
    // what inspect and ps show follows it, the process started into the
    // old one gone with it, one started into the new one listed.
    let after = fail_until_new_init(&w, "app", &before, "");
    let out = first_exec.finish(SHORT);
    assert!(!out.status.success(), "the exec'd sleep went with its init");
    let second_exec = w.spawn_berth(&["exec", "app", "/bin/sleep", "301"]);
    let second = wait_placed(
        &w,
        "app",
        "to list the sleep exec'd into the new init",
        |p| p.pid == after.init_pid && p.execs.iter().any(|e| e.command == ["/bin/sleep", "301"]),
    );
    let sleeping = sleeps(&second);
    assert_eq!(sleeping.len(), 1, "{second:?}");
    assert!(!sleeps(&first).iter().any(|(pid, _)| *pid == sleeping[0].0));
    assert_eq!(second.cgroups, recorded_cgroups(&w, "app"));
    w.berth_ok(&["stop", "app"]);
    let out = second_exec.finish(SHORT);
    assert!(!out.status.success());
    let stopped = wait_placed(&w, "app", "to show no cgroups once stopped", |p| {
        p.cgroups.is_empty()
    });
    assert!(stopped.execs.is_empty() && stopped.pid == 0, "{stopped:?}");
}

#[test]
fn a_check_that_hangs_is_killed_at_its_timeout() {
    let w = World::new();
    w.add_container(
        "slow",
        POLITE,
        &with_check(
            &w,
            r#"{"command": ["/bin/sh", "-c", "echo begun; exec sleep 1000"], "interval": 1, "timeout": 1, "retries": 1}"#,
            "",
        ),
    );
    let _daemon = w.start_daemon(&[]);
    w.wait_running("slow");
    let c = wait_checked(&w, "slow", "to be unhealthy", SHORT, |c| {
        status_of(c) == "unhealthy"
    });
    let h = c.health.unwrap();
    let r = &h.log[0];
    assert_eq!(r.exit_code, None, "{r:?}");
    assert_eq!(r.output, "begun\nhealth check timed out after 1 s", "{r:?}");
    let took = Duration::from_nanos(r.end - r.start);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // Only one check at a time: the next starts after this one ended.
    let c = wait_checked(&w, "slow", "to have a second result", SHORT, |c| {
        c.health.as_ref().is_some_and(|h| h.log.len() >= 2)
    });
    let log = c.health.unwrap().log;
    assert!(log[1].start >= log[0].end, "{log:?}");
    // A killed check does not linger: at most the one under way runs.
    let sleeping = w
        .procs()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\x001000"))
        })
        .count();
    assert!(sleeping <= 1, "{sleeping} checks still run");
}

#[test]
fn failures_in_the_start_period_do_not_count() {
    let w = World::new();
    w.add_container(
        "late",
        POLITE,
        &with_check(
            &w,
            r#"{"command": ["/bin/false"], "interval": 1, "retries": 1, "start-period": 4}"#,
            "",
        ),
    );
    let _daemon = w.start_daemon(&[]);
    let running = w.wait_running("late");
    let started = Instant::now();
    assert!(running.is_running());
    // Failures are logged, but it stays starting with no streak.
    let c = wait_checked(&w, "late", "to fail twice", SHORT, |c| {
        c.health.as_ref().is_some_and(|h| h.log.len() >= 2)
    });
    let h = c.health.unwrap();
    if h.status == "starting" {
        assert_eq!(h.failing_streak, 0, "{h:?}");
    }
    assert!(h.log.iter().all(|r| r.exit_code == Some(1)), "{h:?}");
    let c = wait_checked(&w, "late", "to be unhealthy", SHORT, |c| {
        status_of(c) == "unhealthy"
    });
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "unhealthy within the start period: {c:?}"
    );
    let h = c.health.unwrap();
    assert!(h.log.len() >= 4, "checks at 1, 2, 3 s did not count: {h:?}");
    assert_eq!(h.failing_streak, 1, "{h:?}");
}

#[test]
fn a_changed_healthcheck_recreates_the_container_on_reload() {
    let w = World::new();
    let def = |interval: u32| {
        format!(r#"{{"healthcheck": {{"command": ["true"], "interval": {interval}}}}}"#)
    };
    w.add_container("app", POLITE, &def(1));
    let _daemon = w.start_daemon(&[]);
    let first = w.wait_running("app");
    wait_healthy(&w, "app");
    let out = w.berth_ok(&["reload"]);
    assert!(!out.contains("app"), "unchanged: {out}");
    w.add_container("app", POLITE, &def(2));
    let reloaded = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("app: changed, recreating"), "{out}");
    let c = wait_checked(&w, "app", "to run again, healthy", SHORT, |c| {
        c.pid != first.pid as i32 && c.status == "running" && status_of(c) == "healthy"
    });
    // A new run: its own health record, none of the old run's results.
    let log = c.health.unwrap().log;
    assert!(log.iter().all(|r| r.start > reloaded), "{log:?}");
}

#[test]
fn errors_in_the_health_keys_name_the_file_and_field() {
    let w = World::new();
    w.add_container("a", POLITE, "{}");
    let _daemon = w.start_daemon(&[]);
    w.wait_running("a");
    for (extra, field, reason) in [
        (
            r#", "healthcheck": {"command": ["true"], "interval": 0}"#,
            "healthcheck.interval",
            "must be from 1 to 86400, found 0",
        ),
        (
            r#", "healthcheck": {"command": ["true"], "timeout": "5s"}"#,
            "healthcheck.timeout",
            "expected an integer, found a string",
        ),
        (
            r#", "healthcheck": {"interval": 5}"#,
            "healthcheck.command",
            "required key is missing",
        ),
        (
            r#", "healthcheck": {"command": ["true"], "retry": 5}"#,
            "healthcheck.retry",
            "unknown key",
        ),
        (
            r#", "healthcheck": {"command": ["true"]}, "on-unhealthy": "reboot""#,
            "on-unhealthy",
            "expected \"none\" or \"restart\", found \"reboot\"",
        ),
        (
            r#", "on-unhealthy": "restart""#,
            "on-unhealthy",
            "needs a \"healthcheck\" to act on",
        ),
    ] {
        let json = format!(
            r#"{{"rootfs": {}, "command": ["/bin/true"]{extra}}}"#,
            json::string(w.rootfs().to_str().unwrap())
        );
        w.write_container("bad", &json);
        let out = w.berth(&["reload"]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let file = w.containers_dir().join("bad.json");
        let expected = format!("{}: field \"{field}\": {reason}", file.display());
        assert!(err.contains(&expected), "{err}\nexpected: {expected}");
    }
}

#[test]
fn a_restart_remakes_an_image_root_and_releases_the_old_one() {
    use common::images::{LoopGuard, loops_backed_by, mksquashfs};
    let w = World::new();
    let dir = w.root.join("images");
    fs::create_dir_all(&dir).unwrap();
    let image = dir.join("app.sqfs");
    mksquashfs(&w.rootfs(), &image);
    let _loops = LoopGuard { dir: dir.clone() };
    fs::write(w.host_dir().join("ok"), "").unwrap();
    // Each init leaves a mark in its tmpfs layer: a new root has none.
    let script = "if test -e /mark; then echo found; else echo fresh; fi; touch /mark; \
                  trap 'exit 0' TERM; while :; do sleep 0.05; done";
    let json = format!(
        r#"{{"image": {}, "writable": "tmpfs", "command": ["/bin/sh", "-c", {}],
             "mounts": [{}], "on-unhealthy": "restart", "stop-timeout": 5,
             "healthcheck": {{"command": ["test", "-e", "/data/ok"], "interval": 1, "retries": 2}}}}"#,
        json::string(image.to_str().unwrap()),
        json::string(script),
        w.data_mount()
    );
    w.write_container("img", &json);
    let _daemon = w.start_daemon(&[]);
    w.wait_running("img");
    wait_healthy(&w, "img");
    let (_, before) = runtime(&w, "img");
    let after = fail_until_new_init(&w, "img", &before, "");
    let c = wait_checked(&w, "img", "to run healthy again", SHORT, |c| {
        c.pid == after.init_pid && status_of(c) == "healthy"
    });
    assert_eq!(c.restart_count, 1, "{c:?}");
    let log = fs::read_to_string(w.container_log("img")).unwrap();
    assert_eq!(log.matches("fresh").count(), 2, "{log}");
    assert!(!log.contains("found"), "{log}");
    // The first root's loop device goes with its last mount.
    wait_for(SHORT, "one loop device on the image", || {
        loops_backed_by(&image).len() == 1
    });
}

#[test]
fn a_check_s_long_output_is_cut_and_does_not_fail_it() {
    let w = World::new();
    w.add_container(
        "chatty",
        POLITE,
        r#"{"healthcheck": {"command": ["/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"], "interval": 1}}"#,
    );
    let _daemon = w.start_daemon(&[]);
    w.wait_running("chatty");
    let c = wait_healthy(&w, "chatty");
    let r = c.health.unwrap().log.pop().unwrap();
    assert_eq!(r.exit_code, Some(0), "all of it was read: no SIGPIPE");
    assert_eq!(r.output, "x".repeat(4096));
}

/// A record of run-dir/containers/NAME/ (runtime.json, last-run.json).
fn run_record(w: &World, name: &str, file: &str) -> Option<common::records::Runtime> {
    let path = w.run_dir().join("containers").join(name).join(file);
    let text = fs::read_to_string(path).ok()?;
    common::records::Runtime::deserialize_json(text.trim()).ok()
}

#[test]
fn a_check_failing_while_berth_stops_it_never_starts_it_again() {
    let w = World::new();
    fs::write(w.host_dir().join("ok"), "").unwrap();
    // On TERM it makes its own check fail, and takes its time to go.
    let script = "echo began; trap 'rm -f /data/ok; sleep 3; exit 0' TERM; \
                  while :; do sleep 0.05; done";
    w.add_container(
        "leaving",
        &["/bin/sh", "-c", script],
        &with_check(
            &w,
            r#"{"command": ["test", "-e", "/data/ok"], "interval": 1, "retries": 1}"#,
            r#", "on-unhealthy": "restart", "stop-timeout": 5"#,
        ),
    );
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("leaving");
    wait_healthy(&w, "leaving");
    let (_, before) = runtime(&w, "leaving");
    let stop = w.berth(&["stop", "leaving"]);
    assert!(stop.status.success(), "{}", describe(&stop));
    let c = checked(&w, "leaving");
    assert_eq!(
        (c.status.as_str(), c.restart_count),
        ("stopped", 0),
        "{c:?}"
    );
    // The run the daemon archived is the one it stopped: the same init.
    let last = run_record(&w, "leaving", "last-run.json").expect("last-run.json");
    assert_eq!(
        (last.monitor_pid, last.init_pid),
        (before.monitor_pid, before.init_pid)
    );
    // The monitor reports the end before its last step (syncing the exit
    // record's directory), then exits.
    wait_for(SHORT, "the monitor to exit", || {
        is_gone(before.monitor_pid, before.monitor_start)
    });
    let spares = spare_monitors(daemon.pid());
    let left: Vec<i32> = w
        .procs()
        .into_iter()
        .filter(|&pid| pid != daemon.pid() as i32 && !spares.contains(&(pid as u32)))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    let log = fs::read_to_string(w.container_log("leaving")).unwrap();
    assert_eq!(log.matches("began").count(), 1, "{log}");
    // No check ran once the stop was asked for: it is not unhealthy.
    assert_ne!(health_record(&w, "leaving").unwrap().status, "unhealthy");

    // The same when the daemon stops it at its own end (no live restore).
    fs::write(w.host_dir().join("ok"), "").unwrap();
    w.berth_ok(&["start", "leaving"]);
    wait_checked(&w, "leaving", "to be healthy again", SHORT, |c| {
        status_of(c) == "healthy"
    });
    let (_, second) = runtime(&w, "leaving");
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(LONG);
    assert!(is_gone(second.monitor_pid, second.monitor_start));
    assert!(w.procs().is_empty(), "left running: {:?}", w.procs());
    let log = fs::read_to_string(w.container_log("leaving")).unwrap();
    assert_eq!(log.matches("began").count(), 2, "{log}");
}

#[test]
fn unhealthy_restarts_back_off() {
    let w = World::new();
    w.add_container(
        "sick",
        POLITE,
        r#"{"healthcheck": {"command": ["false"], "interval": 1, "retries": 1},
            "on-unhealthy": "restart", "stop-timeout": 5}"#,
    );
    let _daemon = w.start_daemon(&[]);
    w.wait_running("sick");
    // When each new init is first seen (polled every 10 ms).
    let mut seen: Vec<(i32, Instant)> = Vec::new();
    wait_for(LONG, "four inits", || {
        if let Some(r) = run_record(&w, "sick", "runtime.json") {
            if r.init_pid != 0 && seen.last().is_none_or(|(pid, _)| *pid != r.init_pid) {
                seen.push((r.init_pid, Instant::now()));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
        seen.len() >= 4
    });
    // Each init lives one interval (its first check fails), then the
    // back-off doubles from 100 ms: 100, 200, 400 ms. The first init was
    // seen late (after the start): its span is not measured.
    let slack = Duration::from_millis(40);
    for (k, pair) in seen.windows(2).enumerate().skip(1) {
        let gap = pair[1].1 - pair[0].1;
        let backoff = Duration::from_millis(100 << k);
        assert!(
            gap + slack >= Duration::from_secs(1) + backoff,
            "restart {}: {gap:?} after the last, back-off {backoff:?}",
            k + 1
        );
    }
    let c = checked(&w, "sick");
    assert!(c.restart_count >= 3, "{c:?}");
}

#[test]
fn an_image_replaced_on_disk_is_not_started_by_an_unhealthy_restart() {
    use common::images::{LoopGuard, mksquashfs};
    let w = World::new();
    let dir = w.root.join("images");
    fs::create_dir_all(&dir).unwrap();
    let image = dir.join("app.sqfs");
    mksquashfs(&w.rootfs(), &image);
    let _loops = LoopGuard { dir: dir.clone() };
    fs::write(w.host_dir().join("ok"), "").unwrap();
    let json = format!(
        r#"{{"image": {}, "command": {}, "mounts": [{}], "on-unhealthy": "restart",
             "stop-timeout": 5,
             "healthcheck": {{"command": ["test", "-e", "/data/ok"], "interval": 1, "retries": 1}}}}"#,
        json::string(image.to_str().unwrap()),
        json::string_array(POLITE),
        w.data_mount()
    );
    w.write_container("img", &json);
    let _daemon = w.start_daemon(&[]);
    let first = w.wait_running("img");
    wait_healthy(&w, "img");
    // Another image renamed over the one the run started with.
    let other = dir.join("other.sqfs");
    mksquashfs(&w.rootfs(), &other);
    fs::rename(&other, &image).unwrap();
    fs::remove_file(w.host_dir().join("ok")).unwrap();
    let ended = w.wait_inspect("img", "to end", LONG, |i| i.status != "running");
    let error = ended.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "image {} was replaced since the run started",
            image.display()
        )),
        "{ended:?}"
    );
    assert_eq!(ended.pid, 0, "{ended:?}");
    let last = run_record(&w, "img", "last-run.json").expect("last-run.json");
    assert_eq!(last.init_pid as u32, first.pid, "no other init ran");
}

/// `web`: POLITE, checked every second for /data/ok, unhealthy at the
/// first failure.
fn add_web_checked_once(w: &World) {
    w.add_container(
        "web",
        POLITE,
        &with_check(
            w,
            &format!(r#"{{"command": {CHECK_OK_FILE}, "interval": 1, "retries": 1}}"#),
            "",
        ),
    );
}

/// `berth wait --condition ... --timeout 30 NAMES`, spawned.
fn spawn_wait(w: &World, condition: &str, names: &[&str]) -> Spawned {
    let mut args = vec!["wait", "--condition", condition, "--timeout", "30"];
    args.extend_from_slice(names);
    w.spawn_berth(&args)
}

#[test]
fn wait_for_healthy_returns_once_the_check_passes() {
    let w = World::new();
    add_web_checked_once(&w);
    w.add_container("plain", POLITE, "{}");
    let _daemon = w.start_daemon(&[]);
    w.wait_running("web");
    let mut waiting = spawn_wait(&w, "healthy", &["web", "plain"]);
    // Not before: the check fails while /data/ok is missing.
    wait_checked(&w, "web", "to be checked and unhealthy", SHORT, |c| {
        status_of(c) == "unhealthy"
    });
    assert!(waiting.try_status().is_none(), "returned while unhealthy");
    fs::write(w.host_dir().join("ok"), "").unwrap();
    let out = waiting.finish(SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("web healthy\n"), "{stdout}");
    assert!(stdout.contains("plain running\n"), "{stdout}");
    assert_eq!(status_of(&checked(&w, "web")), "healthy");
    // `running` does not wait for the check.
    let out = spawn_wait(&w, "running", &["web"]).finish(SHORT);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web running\n");
}

#[test]
fn wait_for_healthy_waits_for_the_run_a_reload_recreates() {
    let w = World::new();
    // Ignores SIGTERM: the old run stays up for its stop-timeout after the
    // reload, healthy all along.
    let stubborn = &[
        "/bin/sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.05; done",
    ];
    let def = |interval: u32| {
        format!(
            r#"{{"stop-timeout": 2, "healthcheck": {{"command": ["true"], "interval": {interval}}}}}"#
        )
    };
    w.add_container("app", stubborn, &def(1));
    let _daemon = w.start_daemon(&[]);
    let first = w.wait_running("app");
    wait_healthy(&w, "app");
    w.add_container("app", stubborn, &def(2));
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("app: changed, recreating"), "{out}");
    let old = w.inspect("app");
    assert_eq!(old.pid, first.pid, "the old run is still stopping");
    let out = spawn_wait(&w, "healthy", &["app"]).finish(SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    let now = checked(&w, "app");
    assert_ne!(now.pid, first.pid as i32, "returned for the old run");
    assert_eq!(status_of(&now), "healthy");
}

#[test]
fn wait_for_a_condition_fails_at_once_for_an_end_and_names_what_is_missing_at_the_deadline() {
    let w = World::new();
    w.add_container(
        "quits",
        &["/bin/sh", "-c", "exit 3"],
        r#"{"restart": "no"}"#,
    );
    w.add_container(
        "sick",
        POLITE,
        r#"{"healthcheck": {"command": ["/bin/sh", "-c", "echo not yet; exit 1"], "interval": 1, "retries": 1}}"#,
    );
    let _daemon = w.start_daemon(&[]);
    w.wait_status("quits", "exited", SHORT);

    let began = Instant::now();
    let out = spawn_wait(&w, "running", &["quits"]).finish(SHORT);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quits: exited with code 3, no restart coming"),
        "{err}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "did not fail at once"
    );

    let out = w.berth(&["wait", "--condition", "healthy", "--timeout", "3", "sick"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not there after 3 s"), "{err}");
    assert!(
        err.contains("sick: unhealthy (last check: exit code 1: not yet)")
            || err.contains("sick: starting"),
        "{err}"
    );

    let out = w.berth(&["wait", "--condition", "running", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nobody"),
        "{}",
        describe(&out)
    );
    for bad in [
        &["wait", "--condition", "exited", "sick"][..],
        &["wait", "--timeout", "3", "sick"][..],
        &[
            "wait",
            "--condition",
            "running",
            "--timeout",
            "soon",
            "sick",
        ][..],
    ] {
        let out = w.berth(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", describe(&out));
    }
}

#[test]
fn wait_with_a_timeout_reaches_a_daemon_that_starts_later() {
    let w = World::new();
    w.add_container(
        "app",
        POLITE,
        r#"{"healthcheck": {"command": ["true"], "interval": 1}}"#,
    );
    // No timeout: no daemon is an error at once.
    let out = w.berth(&["wait", "--condition", "running", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        describe(&out)
    );
    let mut waiting = spawn_wait(&w, "healthy", &["app"]);
    holds_for(Duration::from_millis(500), "the wait goes on", || {
        waiting.try_status().is_none()
    });
    let _daemon = w.start_daemon(&[]);
    let out = waiting.finish(SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "app healthy\n");
}

#[test]
fn wait_with_a_timeout_outlasts_a_daemon_killed_and_started_again() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    add_web_checked_once(&w);
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("web");
    // A timeout past what a clock holds is no deadline, not a crash.
    let mut waiting = w.spawn_berth(&[
        "wait",
        "--condition",
        "healthy",
        "--timeout",
        "18446744073709551615",
        "web",
    ]);
    wait_checked(&w, "web", "to be checked and unhealthy", SHORT, |c| {
        status_of(c) == "unhealthy"
    });
    daemon.kill_9();
    holds_for(
        Duration::from_millis(300),
        "the wait goes on without a daemon",
        || waiting.try_status().is_none(),
    );
    let _daemon = w.start_daemon(&[]);
    fs::write(w.host_dir().join("ok"), "").unwrap();
    let out = waiting.finish(SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web healthy\n");
}
