//! `berth daemon --validate` through the real binary: a good configuration
//! exits 0 with a summary and creates nothing (no run-dir, state-dir,
//! log-dir, socket, pidfile or cgroup); every problem of a bad one is a
//! line naming the file, the field and the reason, and it exits 1
//! (daemon.json, definitions, names defined twice across an app
//! directory, depends-on cycles and unknown names, unknown networks, the
//! start's socket checks); beside a running daemon on the same
//! configuration it disturbs nothing, and its lines are what a refused
//! reload reports; usage errors exit 2; the sample configuration passes.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// `berth daemon --validate --config <world config> ARGS`, run to the end.
fn validate(w: &World, args: &[&str]) -> Output {
    validate_config(w, &w.config_path(), args)
}

fn validate_config(w: &World, config: &Path, args: &[&str]) -> Output {
    let mut cmd = w.client_command();
    cmd.arg("daemon")
        .arg("--validate")
        .arg("--config")
        .arg(config)
        .args(args);
    w.run_client(cmd, SHORT)
}

/// stdout and stderr as text.
fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The problem lines of a failed validation (its stderr without the
/// summary), asserting it exited 1 with a summary that counts them.
fn problems(w: &World, out: &Output) -> Vec<String> {
    assert_eq!(out.status.code(), Some(1), "{}", describe(out));
    let (stdout, stderr) = text(out);
    assert_eq!(stdout, "", "{}", describe(out));
    let mut lines: Vec<String> = stderr.lines().map(str::to_string).collect();
    let summary = lines.pop().unwrap_or_default();
    let plural = if lines.len() == 1 { "" } else { "s" };
    assert_eq!(
        summary,
        format!(
            "berth: {} problem{plural} in {} and its containers",
            lines.len(),
            w.config_path().display()
        )
    );
    lines
}

/// A path inside the world, as text.
fn at(p: &Path) -> String {
    p.display().to_string()
}

/// daemon.json keys pointing every directory the daemon would create at
/// `fresh/` in the world, which does not exist.
fn fresh_dirs(w: &World) -> (PathBuf, String) {
    let fresh = w.root.join("fresh");
    let path = |p: &str| json::string(&at(&fresh.join(p)));
    let keys = format!(
        r#"{{"run-dir": {}, "state-dir": {}, "log-dir": {}, "socket": {}}}"#,
        path("run"),
        path("state"),
        path("log"),
        path("run/berth.sock")
    );
    (fresh, keys)
}

/// `containers-dir/NAME.app/FILE` with `text`, the app directory made.
fn write_in_app(w: &World, app: &str, name: &str, text: &str) -> PathBuf {
    let dir = w.containers_dir().join(format!("{app}.app"));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.json"));
    w.write_file(&file, text);
    file
}

#[test]
fn a_good_configuration_passes_and_nothing_is_created() {
    let w = World::new();
    let (fresh, keys) = fresh_dirs(&w);
    w.write_daemon_json(&keys);
    w.add_container("web", POLITE, r#"{"memory": "16m", "restart": "always"}"#);
    w.add_container("db", POLITE, r#"{"depends-on": ["web"]}"#);
    write_in_app(&w, "shop", "cart", &w.container_json(POLITE, "{}"));
    let pidfile = w.root.join("berth.pid");

    for args in [
        &[][..],
        &["--log-level", "debug", "--live-restore"][..],
        &["--pidfile", pidfile.to_str().unwrap(), "--log-level=warn"][..],
    ] {
        let out = validate(&w, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        let (stdout, stderr) = text(&out);
        assert_eq!(
            stdout,
            format!(
                "config OK: {}, 3 containers in {}\n",
                w.config_path().display(),
                w.containers_dir().display()
            )
        );
        assert_eq!(stderr, "");
    }
    // --validate after the other options, as an init script adds it.
    let mut cmd = w.client_command();
    cmd.arg("daemon")
        .arg("--config")
        .arg(w.config_path())
        .arg("--live-restore")
        .arg("--validate");
    let out = w.run_client(cmd, SHORT);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    assert!(!fresh.exists(), "{} was created", fresh.display());
    assert!(!pidfile.exists(), "the pidfile was written");
    for dir in w.cgroup_roots().iter().skip(1) {
        assert!(!dir.exists(), "cgroup {} was created", dir.display());
    }
    assert_eq!(w.procs(), Vec::<i32>::new(), "something was left running");
}

#[test]
fn every_bad_file_is_a_line_with_file_field_and_reason() {
    let w = World::new();
    let dir = w.containers_dir();
    let d = at(&dir);
    w.add_container("good", POLITE, "{}");
    w.add_container("web", POLITE, r#"{"memory": "12Q"}"#);
    w.add_container("typo", POLITE, r#"{"restart-policy": "always"}"#);
    w.add_container("lost", POLITE, r#"{"rootfs": "/nonexistent/berth"}"#);
    w.add_container("envy", POLITE, r#"{"env-file": "missing.env"}"#);
    w.add_container(
        "bound",
        POLITE,
        r#"{"mounts": [{"source": "/nonexistent/data", "target": "/data"}]}"#,
    );
    w.write_container(
        "broken",
        "{\n  \"rootfs\": \"/\",\n  \"command\": [\"/bin/true\"],\n}",
    );

    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(
        lines,
        [
            format!(
                r#"{d}/bound.json: field "mounts[0].source": /nonexistent/data: no such file or directory"#
            ),
            format!("{d}/broken.json: line 4 column 1: expected a key string, found '}}'"),
            format!(
                r#"{d}/envy.json: field "env-file": {d}/missing.env: no such file or directory"#
            ),
            format!(
                r#"{d}/lost.json: field "rootfs": /nonexistent/berth: no such file or directory"#
            ),
            format!(r#"{d}/typo.json: field "restart-policy": unknown key"#),
            format!(
                r#"{d}/web.json: field "memory": invalid size "12Q": expected digits and an optional k, m or g suffix"#
            ),
        ]
    );
    // Fixed one by one, the list shrinks to nothing.
    w.add_container("web", POLITE, r#"{"memory": "12m"}"#);
    for name in ["typo", "lost", "envy", "bound", "broken"] {
        fs::remove_file(dir.join(format!("{name}.json"))).unwrap();
    }
    let out = validate(&w, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn a_bad_daemon_file_is_named_and_nothing_else_is_read() {
    let w = World::new();
    w.add_container("web", POLITE, r#"{"memory": "12Q"}"#);
    let config = at(&w.config_path());

    w.write_daemon_json(r#"{"log-levle": "debug"}"#);
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(
        lines,
        [format!(r#"{config}: field "log-levle": unknown key"#)]
    );

    w.write_daemon_json(r#"{"shutdown-timeout": -1}"#);
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(r#"{config}: field "shutdown-timeout": "#)),
        "{lines:?}"
    );

    w.write_file(&w.config_path(), "{\"live-restore\": tru}");
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{config}: line 1 column ")),
        "{lines:?}"
    );

    let nowhere = w.root.join("nowhere");
    w.write_daemon_json(&format!(
        r#"{{"containers-dir": {}}}"#,
        json::string(&at(&nowhere))
    ));
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(
        lines,
        [format!(
            "{}: no such directory (containers-dir in {config})",
            nowhere.display()
        )]
    );

    let missing = w.root.join("missing.json");
    let out = validate_config(&w, &missing, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out).1.starts_with(&format!(
            "{}: no such file or directory\n",
            missing.display()
        )),
        "{}",
        describe(&out)
    );
}

#[test]
fn the_start_s_own_checks_of_daemon_json_are_made() {
    let w = World::new();
    let victim = w.root.join("victim.txt");
    fs::write(&victim, "keep me").unwrap();
    w.write_daemon_json(&format!(
        r#"{{"socket": {}, "socket-group": "no-such-group-berth"}}"#,
        json::string(&at(&victim))
    ));
    let config = at(&w.config_path());
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(
        lines,
        [
            format!(
                r#"{config}: field "socket-group": no group "no-such-group-berth" in /etc/group"#
            ),
            format!(
                r#"{config}: field "socket": {}: exists and is not a socket"#,
                victim.display()
            ),
        ]
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
    // A start refuses the same, with the same words.
    let mut daemon = w.spawn_daemon(&[]);
    assert!(!daemon.wait_exit(SHORT).success());
    assert!(daemon.stderr().contains(&lines[0]), "{}", daemon.stderr());
}

#[test]
fn directories_a_start_cannot_make_are_named() {
    let w = World::new();
    let file = w.root.join("a-file");
    fs::write(&file, "x").unwrap();
    w.write_daemon_json(&format!(
        r#"{{"run-dir": {}, "state-dir": {}, "log-dir": {}}}"#,
        json::string(&at(&file)),
        json::string(&at(&file.join("state"))),
        json::string(&at(&w.root.join("new/logs"))),
    ));
    let config = at(&w.config_path());
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(
        lines,
        [
            format!(
                r#"{config}: field "run-dir": {}: exists and is not a directory"#,
                file.display()
            ),
            format!(
                r#"{config}: field "state-dir": {}: {} is not a directory"#,
                file.join("state").display(),
                file.display()
            ),
        ]
    );
    assert!(!w.root.join("new").exists(), "validate made a directory");
    // A start fails on it too.
    let mut daemon = w.spawn_daemon(&[]);
    assert!(!daemon.wait_exit(SHORT).success());
    assert!(daemon.stderr().contains(&at(&file)), "{}", daemon.stderr());
}

#[test]
fn a_name_defined_again_in_an_app_directory_is_named_with_both_files() {
    let w = World::new();
    w.add_container("web", POLITE, "{}");
    let in_app = write_in_app(&w, "shop", "web", &w.container_json(POLITE, "{}"));
    write_in_app(&w, "shop", "cart", &w.container_json(POLITE, "{}"));
    let lines = problems(&w, &validate(&w, &[]));
    let real = fs::canonicalize(&in_app).unwrap();
    assert_eq!(
        lines,
        [format!(
            "{}: container web is already defined in {}",
            real.display(),
            w.containers_dir().join("web.json").display()
        )]
    );
}

#[test]
fn depends_on_cycles_and_unknown_names_are_named() {
    let w = World::new();
    let d = at(&w.containers_dir());
    w.add_container("a", POLITE, r#"{"depends-on": ["b"]}"#);
    w.add_container("b", POLITE, r#"{"depends-on": ["a"]}"#);
    w.add_container("c", POLITE, r#"{"depends-on": ["ghost"]}"#);
    w.add_container("d", POLITE, r#"{"depends-on": ["c"]}"#);
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(
        lines,
        [
            format!(r#"{d}/a.json: field "depends-on": dependency cycle: a -> b -> a"#),
            format!(r#"{d}/b.json: field "depends-on": dependency cycle: b -> a -> b"#),
            format!(r#"{d}/c.json: field "depends-on": no container named ghost is defined"#),
        ]
    );
}

#[test]
fn unknown_networks_and_clashing_claims_are_named() {
    let w = World::new();
    let d = at(&w.containers_dir());
    w.write_daemon_json(
        r#"{"networks": {"lan": {"bridge": "br-vt0", "subnet": "10.231.7.0/24"}}}"#,
    );
    w.add_container(
        "on-lan",
        POLITE,
        r#"{"network": "lan", "ports": ["8080:80"]}"#,
    );
    w.add_container("on-wan", POLITE, r#"{"network": "wan"}"#);
    w.add_container(
        "twin",
        POLITE,
        r#"{"network": "lan", "ports": ["8080:8080"]}"#,
    );
    w.add_container("guest", POLITE, r#"{"network": "container:nobody"}"#);
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(
        lines,
        [
            format!(r#"{d}/guest.json: field "network": no container named nobody is defined"#),
            format!(
                r#"{d}/on-wan.json: field "network": no network named "wan" is defined (defined: lan)"#
            ),
            format!(
                r#"{d}/twin.json: field "ports": host port 8080/tcp in {d}/twin.json is already published by on-lan ({d}/on-lan.json)"#
            ),
        ]
    );
}

#[test]
fn beside_a_running_daemon_nothing_is_disturbed() {
    let w = World::new();
    w.add_container("web", POLITE, "{}");
    let daemon = w.start_daemon(&[]);
    let pid = w.wait_running("web").pid;
    let socket_ino = fs::metadata(w.socket()).unwrap().ino();
    let lock = w.run_dir().join("berth.lock");
    let lock_ino = fs::metadata(&lock).unwrap().ino();
    let logged = daemon.stderr().lines().count();

    let out = validate(&w, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text(&out).0.starts_with("config OK: "),
        "{}",
        describe(&out)
    );
    w.add_container("bad", POLITE, r#"{"memory": "lots"}"#);
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(lines.len(), 1, "{lines:?}");

    // The daemon still answers on the same socket, holds the same lock,
    // runs the same container, and heard nothing.
    assert_eq!(w.inspect("web").pid, pid);
    assert_eq!(fs::metadata(w.socket()).unwrap().ino(), socket_ino);
    assert_eq!(fs::metadata(&lock).unwrap().ino(), lock_ino);
    assert!(w.try_inspect("bad").is_none());
    let after: Vec<String> = daemon
        .stderr()
        .lines()
        .skip(logged)
        .map(str::to_string)
        .collect();
    assert!(
        after.iter().all(|l| !l.contains("reload")),
        "the daemon reloaded: {after:?}"
    );
    // A second daemon on the same run-dir is still refused: the lock is
    // held by the first.
    let mut second = w.spawn_daemon(&[]);
    assert!(!second.wait_exit(SHORT).success());
    assert!(
        second
            .stderr()
            .contains("another berth daemon is using run-dir"),
        "{}",
        second.stderr()
    );
    assert_eq!(w.inspect("web").pid, pid);
}

#[test]
fn its_lines_are_what_a_refused_reload_reports() {
    let w = World::new();
    w.add_container("web", POLITE, "{}");
    let daemon = w.start_daemon(&[]);
    let pid = w.wait_running("web").pid;

    w.add_container("web", POLITE, r#"{"memory": "12Q"}"#);
    w.add_container("a", POLITE, r#"{"depends-on": ["ghost"]}"#);
    w.add_container("net", POLITE, r#"{"network": "lan"}"#);
    write_in_app(&w, "shop", "a", &w.container_json(POLITE, "{}"));
    let lines = problems(&w, &validate(&w, &[]));
    assert_eq!(lines.len(), 4, "{lines:?}");

    let out = w.berth(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let refused = lines.join("; ");
    assert_eq!(text(&out).1, format!("berth: {refused}\n"));
    daemon.wait_for_log_line(&[&format!("reload refused, nothing changed: {refused}")]);
    assert_eq!(w.inspect("web").pid, pid);
}

#[test]
fn usage_errors_exit_2() {
    let w = World::new();
    for args in [
        &["--validate=yes"][..],
        &["--log-level", "loud"][..],
        &["--frobnicate"][..],
        &["--pidfile"][..],
    ] {
        let out = validate(&w, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            text(&out).1.contains("usage: berth daemon"),
            "{}",
            describe(&out)
        );
    }
}

#[test]
fn the_sample_configuration_passes() {
    let w = World::new();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/daemon.json");
    let out = validate_config(&w, &sample, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        text(&out).0,
        format!(
            "config OK: {}, 1 container in {}\n",
            sample.display(),
            sample.with_file_name("containers").display()
        )
    );
}
