//! Start order (`depends-on`) through the real binary: a cold boot starts
//! a chain in order and everything else at once, a container waits (and
//! says what for) while what it depends on is stopped or failed and starts
//! as soon as it runs, `berth start` of a container whose dependency is
//! stopped is refused with the reason, reload adds a dependant of a
//! running container, and cycles, unknown names and self-dependencies are
//! configuration errors naming the file and the field.
//!
//! The `"healthy"` form waits while its dependency has no health record,
//! and while its checks fail, and starts once one passes.

mod common;

use std::fs;

use common::*;

/// The started-at of NAME's current run, as inspect prints it (RFC 3339
/// with nanoseconds, so the text orders as the time does).
fn started_at(w: &World, name: &str) -> String {
    w.wait_running(name)
        .started_at
        .unwrap_or_else(|| panic!("{name} runs without a started-at"))
}

fn waiting_for(w: &World, name: &str, what: &str) -> Inspect {
    w.wait_inspect(name, &format!("to wait for {what}"), SHORT, |i| {
        i.warning.as_deref().is_some_and(|m| m.contains(what)) && i.pid == 0
    })
}

#[test]
fn a_cold_boot_starts_a_chain_in_order_and_the_rest_at_once() {
    let w = World::new();
    // Named so that the daemon comes to the dependants first.
    w.add_container("a-web", POLITE, r#"{"depends-on": ["b-app"]}"#);
    w.add_container("b-app", POLITE, r#"{"depends-on": {"c-db": "running"}}"#);
    w.add_container("c-db", POLITE, "{}");
    w.add_container("solo", POLITE, "{}");
    // One waits on a container that does not start by itself...
    w.add_container("d-held", POLITE, r#"{"depends-on": ["e-off"]}"#);
    w.add_container("e-off", POLITE, r#"{"autostart": false}"#);
    // ...and one on a container that fails to start.
    w.add_container("f-needy", POLITE, r#"{"depends-on": ["g-broken"]}"#);
    w.add_container("g-broken", &["/bin/nope"], "{}");
    let daemon = w.start_daemon(&[]);

    let db = started_at(&w, "c-db");
    let app = started_at(&w, "b-app");
    let web = started_at(&w, "a-web");
    assert!(
        db < app && app < web,
        "out of order: db {db}, app {app}, web {web}"
    );
    w.wait_running("solo");

    // Waiting delays nobody else, and says what for.
    let held = waiting_for(
        &w,
        "d-held",
        "waiting for e-off (running): e-off is stopped",
    );
    assert_eq!(held.status, "created", "never run in this boot: {held:?}");
    let needy = waiting_for(&w, "f-needy", "g-broken failed");
    assert_eq!(w.inspect("g-broken").status, "failed");
    assert_ne!(needy.status, "running");
    let ps = w.ps();
    let held = ps
        .iter()
        .find(|i| i.name == "d-held")
        .expect("d-held in ps");
    assert!(
        held.warning
            .as_deref()
            .unwrap_or_default()
            .starts_with("waiting for e-off"),
        "{held:?}"
    );
    let log = daemon.stderr();
    assert!(
        log.contains("d-held: waiting for e-off (running)"),
        "the daemon's log says why d-held waits: {log}"
    );

    // Its dependency started: it starts at once (woken by the start).
    w.berth_ok(&["start", "e-off"]);
    let off = started_at(&w, "e-off");
    let held = started_at(&w, "d-held");
    assert!(off < held, "d-held ({held}) before e-off ({off})");
    assert_eq!(w.inspect("d-held").warning, None);
    // The failed one is still failing; its dependant still waits.
    holds_for(
        std::time::Duration::from_millis(300),
        "f-needy waiting",
        || w.inspect("f-needy").pid == 0,
    );
}

#[test]
fn start_of_a_container_whose_dependency_is_stopped_is_refused_with_the_reason() {
    let w = World::new();
    w.add_container("db", POLITE, r#"{"autostart": false}"#);
    w.add_container(
        "app",
        POLITE,
        r#"{"autostart": false, "depends-on": ["db"]}"#,
    );
    let _daemon = w.start_daemon(&[]);
    let out = w.berth(&["start", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot start app: waiting for db (running): db is stopped; start it first"),
        "{err}"
    );
    assert_eq!(w.inspect("app").status, "created");
    // Dependencies first, then the dependant: it starts.
    w.berth_ok(&["start", "db"]);
    w.berth_ok(&["start", "app"]);
    w.wait_running("app");
    // A stopped dependency does not stop what runs on it.
    w.berth_ok(&["stop", "db"]);
    w.wait_status("db", "stopped", SHORT);
    assert!(w.inspect("app").is_running());
}

#[test]
fn a_healthy_dependency_is_waited_for_until_its_health_says_so() {
    let w = World::new();
    w.add_container("db", POLITE, "{}");
    w.add_container("app", POLITE, r#"{"depends-on": {"db": "healthy"}}"#);
    let _daemon = w.start_daemon(&[]);
    w.wait_running("db");
    // db runs, but no health check has found it healthy.
    let app = waiting_for(&w, "app", "waiting for db (healthy)");
    assert!(
        !app.warning.as_deref().unwrap_or_default().contains("db is"),
        "db runs, so app is not stuck: {app:?}"
    );
    holds_for(std::time::Duration::from_millis(300), "app waiting", || {
        w.inspect("app").pid == 0
    });
    // A bad condition is a configuration error of app's file.
    w.add_container("app", POLITE, r#"{"depends-on": {"db": "started"}}"#);
    let out = w.berth(&["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let file = w.containers_dir().join("app.json");
    assert!(
        err.contains(&format!(
            "{}: field \"depends-on\": \"db\": expected \"running\" or \"healthy\", found \"started\"",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn a_dependant_starts_once_the_dependency_s_health_check_passes() {
    let w = World::new();
    let db = json::merge(
        &format!(r#"{{"mounts": [{}]}}"#, w.data_mount()),
        r#"{"healthcheck": {"command": ["/bin/sh", "-c", "test -e /data/ready"], "interval": 1, "retries": 1}}"#,
    );
    w.add_container("db", POLITE, &db);
    w.add_container("app", POLITE, r#"{"depends-on": {"db": "healthy"}}"#);
    let _daemon = w.start_daemon(&[]);
    w.wait_running("db");
    waiting_for(&w, "app", "waiting for db (healthy)");
    // Checks run every second and fail: app keeps waiting through several.
    holds_for(
        std::time::Duration::from_millis(2500),
        "app waiting",
        || w.inspect("app").pid == 0,
    );
    assert_eq!(
        w.inspect("db").health.map(|h| h.status).as_deref(),
        Some("unhealthy")
    );
    fs::write(w.host_dir().join("ready"), "").unwrap();
    w.wait_running("app");
    assert_eq!(
        w.inspect("db").health.map(|h| h.status).as_deref(),
        Some("healthy")
    );
}

#[test]
fn cycles_unknown_names_and_self_dependencies_are_config_errors() {
    let w = World::new();
    w.add_container("a", POLITE, r#"{"depends-on": ["b"]}"#);
    w.add_container("b", POLITE, r#"{"depends-on": {"a": "running"}}"#);
    w.add_container("c", POLITE, r#"{"depends-on": ["nope"]}"#);
    w.add_container("d", POLITE, r#"{"depends-on": ["d"]}"#);
    w.add_container("fine", POLITE, "{}");
    let daemon = w.start_daemon(&[]);
    // What is fine runs; each bad definition fails with its own error.
    w.wait_running("fine");
    let file = |n: &str| {
        w.containers_dir()
            .join(format!("{n}.json"))
            .display()
            .to_string()
    };
    let expect = [
        (
            "a",
            format!(
                "{}: field \"depends-on\": dependency cycle: a -> b -> a",
                file("a")
            ),
        ),
        (
            "b",
            format!(
                "{}: field \"depends-on\": dependency cycle: b -> a -> b",
                file("b")
            ),
        ),
        (
            "c",
            format!(
                "{}: field \"depends-on\": no container named nope is defined",
                file("c")
            ),
        ),
        (
            "d",
            format!(
                "{}: field \"depends-on\": d cannot depend on itself",
                file("d")
            ),
        ),
    ];
    for (name, error) in &expect {
        let i = w.inspect(name);
        assert_eq!(i.status, "failed", "{i:?}");
        assert_eq!(i.error.as_deref(), Some(error.as_str()), "{i:?}");
        assert!(
            daemon.stderr().contains(error.as_str()),
            "{}",
            daemon.stderr()
        );
    }

    // A reload that brings a cycle is refused whole, naming it, and what
    // runs is not disturbed.
    w.add_container("c", POLITE, "{}");
    w.add_container("d", POLITE, "{}");
    w.add_container("a", POLITE, "{}");
    w.add_container("b", POLITE, "{}");
    w.berth_ok(&["reload"]);
    let fine = w.wait_running("fine");
    let b = w.wait_running("b");
    w.add_container("fine", POLITE, r#"{"depends-on": ["b"]}"#);
    w.add_container("b", POLITE, r#"{"depends-on": ["fine"]}"#);
    let out = w.berth(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: field \"depends-on\": dependency cycle: b -> fine -> b",
            file("b")
        )) && err.contains(&format!(
            "{}: field \"depends-on\": dependency cycle: fine -> b -> fine",
            file("fine")
        )),
        "{err}"
    );
    assert_eq!(w.inspect("fine").pid, fine.pid);
    assert_eq!(w.inspect("b").pid, b.pid);
}

#[test]
fn reload_adds_a_dependant_of_a_running_container_and_a_new_pair() {
    let w = World::new();
    w.add_container("db", POLITE, "{}");
    let _daemon = w.start_daemon(&[]);
    let db = w.wait_running("db");

    w.add_container("app", POLITE, r#"{"depends-on": ["db"]}"#);
    // A new pair, the dependant first in name order.
    w.add_container("p-front", POLITE, r#"{"depends-on": ["q-back"]}"#);
    w.add_container("q-back", POLITE, "{}");
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("app: added and started"), "{out}");
    assert!(out.contains("q-back: added and started"), "{out}");
    assert!(
        out.contains("p-front: added, waiting for q-back (running)")
            || out.contains("p-front: added and started"),
        "{out}"
    );
    w.wait_running("app");
    let back = started_at(&w, "q-back");
    let front = started_at(&w, "p-front");
    assert!(back < front, "p-front ({front}) before q-back ({back})");
    assert_eq!(w.inspect("db").pid, db.pid, "db was disturbed");
    fs::remove_file(w.containers_dir().join("app.json")).unwrap();
    // db cannot go while app depends on it... but app is gone with it.
    fs::remove_file(w.containers_dir().join("db.json")).unwrap();
    w.berth_ok(&["reload"]);
}
