//! `berth events` through the real binary: a streaming client sees each
//! start, exit (with its code), out-of-memory kill, policy restart, stop
//! and reload as it
//! happens, in text or JSON; and a client that comes back after the
//! daemon was killed with SIGKILL and restarted, passing the time of the
//! last event it saw, gets what happened meanwhile (the new daemon's
//! re-attaches and the exits it found, the health changes and the
//! restarts a container's monitor made on its own) and nothing twice.

// nanoserde's derive trips this lint.
#![allow(clippy::question_mark)]

mod common;

use std::fs;

use nanoserde::DeJson;

use common::records::runtime;
use common::*;

#[derive(Debug, Clone, DeJson)]
struct Ev {
    time: String,
    name: String,
    event: String,
    detail: String,
    #[nserde(rename = "exit-code")]
    exit_code: Option<i64>,
}

/// The JSON lines a client printed so far.
fn events_of(client: &Spawned) -> Vec<Ev> {
    fs::read_to_string(&client.stdout_path)
        .unwrap_or_default()
        .lines()
        .map(|l| Ev::deserialize_json(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until the client printed an event matching `cond`; returns it.
fn wait_event(client: &Spawned, what: &str, cond: impl Fn(&Ev) -> bool) -> Ev {
    let mut found = None;
    wait_for(LONG, what, || {
        found = events_of(client).into_iter().find(|e| cond(e));
        found.is_some()
    });
    found.expect("found above")
}

fn is(e: &Ev, name: &str, event: &str) -> bool {
    e.name == name && e.event == event
}

/// Starts `berth events ARGS`, not waiting for it.
fn subscribe(w: &World, args: &[&str]) -> Spawned {
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    w.spawn_berth(&all)
}

#[test]
fn a_streaming_client_sees_starts_exits_restarts_and_stops() {
    let w = World::new();
    w.add_container("svc", POLITE, "{}");
    let _daemon = w.start_daemon(&[]);
    w.wait_running("svc");
    let json = subscribe(&w, &["--json"]);
    let text = subscribe(&w, &[]);
    // A reload is the daemon's own event: once both clients have it, they
    // are subscribed.
    wait_for(SHORT, "the clients to see a reload", || {
        w.berth_ok(&["reload"]);
        events_of(&json).iter().any(|e| is(e, "", "reload"))
            && fs::read_to_string(&text.stdout_path)
                .unwrap_or_default()
                .contains(" - reload")
    });

    w.add_container(
        "job",
        &["/bin/sh", "-c", "exit 3"],
        r#"{"restart": "on-failure:1"}"#,
    );
    w.berth_ok(&["reload"]);
    let start = wait_event(&json, "job to start", |e| is(e, "job", "start"));
    assert!(start.detail.starts_with("pid "), "{start:?}");
    let exit = wait_event(&json, "job to exit", |e| is(e, "job", "exit"));
    assert_eq!(exit.exit_code, Some(3), "{exit:?}");
    assert_eq!(exit.detail, "exit-code 3");
    let restart = wait_event(&json, "job's restart", |e| is(e, "job", "restart"));
    assert!(restart.detail.starts_with("restart 1 in "), "{restart:?}");
    wait_for(LONG, "job's second run to exit", || {
        events_of(&json)
            .iter()
            .filter(|e| is(e, "job", "exit"))
            .count()
            == 2
    });

    // An out-of-memory kill: the exit, then why.
    w.add_container(
        "hog",
        &["/bin/sh", "-c", "head -c 100m /dev/zero | tail"],
        r#"{"memory": "8m"}"#,
    );
    w.berth_ok(&["reload"]);
    let exit = wait_event(&json, "hog's exit", |e| is(e, "hog", "exit"));
    assert_eq!(exit.exit_code, Some(137), "{exit:?}");
    let oom = wait_event(&json, "hog's oom", |e| is(e, "hog", "oom"));
    assert_eq!(oom.detail, "out of memory (memory limit 8 MiB)");

    w.berth_ok(&["stop", "svc"]);
    let stop = wait_event(&json, "svc's stop", |e| is(e, "svc", "stop"));
    assert_eq!(stop.detail, "asked by a client");
    let exit = wait_event(&json, "svc's exit", |e| is(e, "svc", "exit"));
    assert_eq!(exit.exit_code, Some(0));

    // In the order they happened, times strictly increasing, RFC 3339.
    let all = events_of(&json);
    let job: Vec<&str> = all
        .iter()
        .filter(|e| e.name == "job")
        .map(|e| e.event.as_str())
        .collect();
    assert_eq!(
        job,
        ["start", "exit", "restart", "start", "exit"],
        "{all:#?}"
    );
    for pair in all.windows(2) {
        assert!(pair[0].time < pair[1].time, "{pair:?}");
    }
    assert!(all.iter().all(|e| is_rfc3339(&e.time)), "{all:#?}");

    // The text form: one line each, time first.
    wait_for(SHORT, "the text client to see svc's exit", || {
        fs::read_to_string(&text.stdout_path)
            .unwrap_or_default()
            .contains(" svc exit exit-code 0")
    });
    let lines = fs::read_to_string(&text.stdout_path).unwrap();
    for line in lines.lines() {
        let time = line.split(' ').next().unwrap();
        assert!(is_rfc3339(time), "{line}");
    }
    assert!(lines.contains(" job start pid "), "{lines}");
    assert!(lines.contains(" svc stop asked by a client"), "{lines}");
}

#[test]
fn a_client_back_after_a_daemon_kill_9_misses_nothing_and_sees_nothing_twice() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    let mount = format!(r#"{{"mounts": [{}]}}"#, w.data_mount());
    w.add_container("keep", POLITE, "{}");
    w.add_container(
        "gone",
        &[
            "/bin/sh",
            "-c",
            "while [ ! -e /data/go ]; do sleep 0.02; done; exit 7",
        ],
        &mount,
    );
    let mut daemon = w.start_daemon(&[]);
    let client = subscribe(&w, &["--json", "--since", "10m"]);
    // The boot's starts were kept: a client that asks gets them.
    wait_event(&client, "keep's start", |e| is(e, "keep", "start"));
    let gone_start = wait_event(&client, "gone's start", |e| is(e, "gone", "start"));
    let gone_pid = w.wait_running("gone").pid;
    assert_eq!(gone_start.detail, format!("pid {gone_pid}"));

    let (_, gone_rec) = runtime(&w, "gone");
    daemon.kill_9();
    let out = client.finish(SHORT);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let seen: Vec<Ev> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| Ev::deserialize_json(l).unwrap())
        .collect();
    let last = seen.last().expect("events seen").time.clone();

    // While no daemon runs, gone exits.
    fs::write(w.host_dir().join("go"), "").unwrap();
    wait_for(SHORT, "gone to exit", || {
        is_gone(gone_rec.init_pid, gone_rec.init_start)
    });
    let _daemon = w.start_daemon(&[]);
    w.wait_status("gone", "exited", SHORT);
    let back = subscribe(&w, &["--json", "--since", &last]);
    let reattach = wait_event(&back, "keep's re-attach", |e| is(e, "keep", "reattach"));
    assert!(reattach.detail.starts_with("pid "), "{reattach:?}");
    let exit = wait_event(&back, "gone's exit", |e| is(e, "gone", "exit"));
    assert_eq!(exit.exit_code, Some(7), "{exit:?}");
    let again = events_of(&back);
    for e in &again {
        assert!(e.time > last, "seen before: {e:?} (last seen {last})");
        assert!(
            !seen.iter().any(|s| s.time == e.time),
            "{e:?} was seen before"
        );
    }
    // Nothing of the old daemon's came twice: the starts were seen.
    assert!(!again.iter().any(|e| e.event == "start"), "{again:#?}");
}

/// health.json as the monitor writes it.
#[derive(Debug, DeJson)]
struct Health {
    status: String,
    restarts: u32,
}

fn health_record(w: &World, name: &str) -> Option<Health> {
    let path = w
        .run_dir()
        .join("containers")
        .join(name)
        .join("health.json");
    Health::deserialize_json(fs::read_to_string(path).ok()?.trim()).ok()
}

/// The events a finished client printed.
fn printed(out: &std::process::Output) -> Vec<Ev> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| Ev::deserialize_json(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn health_changes_and_unhealthy_restarts_while_no_daemon_ran_are_told() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    fs::write(w.host_dir().join("ok"), "").unwrap();
    w.add_container(
        "app",
        POLITE,
        &format!(
            r#"{{"mounts": [{}], "healthcheck": {{"command": ["/bin/sh", "-c", "test -e /data/ok"], "interval": 1, "retries": 1}}, "on-unhealthy": "restart", "stop-timeout": 5}}"#,
            w.data_mount()
        ),
    );
    let mut daemon = w.start_daemon(&[]);
    let client = subscribe(&w, &["--json", "--since", "10m"]);
    wait_event(&client, "app to be healthy", |e| {
        is(e, "app", "health") && e.detail == "healthy"
    });
    let (_, first) = runtime(&w, "app");
    daemon.kill_9();
    let out = client.finish(SHORT);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let seen = printed(&out);
    let last = seen.last().expect("events seen").time.clone();

    // While no daemon runs, the check fails: the monitor restarts app,
    // which turns healthy again.
    fs::remove_file(w.host_dir().join("ok")).unwrap();
    wait_for(LONG, "the monitor to start a new init", || {
        runtime(&w, "app").1.init_pid != first.init_pid
    });
    fs::write(w.host_dir().join("ok"), "").unwrap();
    wait_for(LONG, "app to be healthy after one restart", || {
        health_record(&w, "app").is_some_and(|h| h.restarts == 1 && h.status == "healthy")
    });

    let mut daemon = w.start_daemon(&[]);
    let back = subscribe(&w, &["--json", "--since", &last]);
    wait_event(&back, "app's health now", |e| {
        is(e, "app", "health") && e.detail == "healthy"
    });
    let got: Vec<(String, String)> = events_of(&back)
        .into_iter()
        .filter(|e| e.name == "app")
        .map(|e| (e.event, e.detail))
        .collect();
    let want = [
        ("health", "unhealthy"),
        ("restart", "unhealthy (while no daemon ran)"),
        ("health", "healthy"),
    ];
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got[0].0, "reattach", "{got:#?}");
    for (g, (event, detail)) in got[1..].iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str()), (event, detail), "{got:#?}");
    }
    let again = events_of(&back);
    assert!(again.iter().all(|e| e.time > last), "{again:#?}");

    // A daemon after that one, with nothing new meanwhile, tells only its
    // re-attach.
    let last = again.last().unwrap().time.clone();
    daemon.kill_9();
    let out = back.finish(SHORT);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let _daemon = w.start_daemon(&[]);
    let third = subscribe(&w, &["--json", "--since", &last]);
    wait_event(&third, "app's re-attach", |e| is(e, "app", "reattach"));
    // A reload after it: once the client has it, all that came before it
    // is there.
    wait_for(SHORT, "the client to see a reload", || {
        w.berth_ok(&["reload"]);
        events_of(&third).iter().any(|e| is(e, "", "reload"))
    });
    let told: Vec<Ev> = events_of(&third)
        .into_iter()
        .filter(|e| e.name == "app")
        .collect();
    assert_eq!(told.len(), 1, "{told:#?}");
}

#[test]
fn usage_errors_and_a_missing_daemon_are_named() {
    let w = World::new();
    let out = w.berth(&["events", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--since: \"yesterday\" is not a time"),
        "{err}"
    );
    assert!(err.contains("usage: berth events"), "{err}");
    let out = w.berth(&["events", "web"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // The times every verb takes: no 30th of February.
    let out = w.berth(&["events", "--since", "2026-02-30"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let out = w.berth(&["events", "--json=yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--json takes no value"), "{err}");
    let out = w.berth(&["events"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is the daemon running?"), "{err}");
}
