//! Untrusted input: a bad daemon.json is fatal and named (file and key,
//! or file and line); a bad container file is named by file and field while
//! the others run; a missing rootfs is reported; garbage, idle, partial and
//! over-size clients on the API socket disturb neither the daemon nor a
//! running container.

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{POLITE, one_error_line};
use crate::common::{SHORT, World, describe};

#[test]
fn bad_daemon_json_values_and_unknown_keys_are_fatal_and_named() {
    let world = World::new();
    let config = world.config_path();
    let config = config.to_str().unwrap();
    for (extra, key) in [
        (r#"{"live-restor": true}"#, "live-restor"),
        (r#"{"log-max-files": "three"}"#, "log-max-files"),
        (r#"{"log-level": "loud"}"#, "log-level"),
        (r#"{"log-max-size": "big"}"#, "log-max-size"),
    ] {
        world.write_daemon_json(extra);
        let mut daemon = world.spawn_daemon(&[]);
        let status = daemon.wait_exit(SHORT);
        assert!(!status.success(), "daemon accepted {extra}");
        let stderr = daemon.stderr();
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(config) && l.contains(key)),
            "no line names {config} and {key}:\n{stderr}"
        );
        let mut ps = world.client_command();
        ps.arg("--socket").arg(world.socket()).arg("ps");
        let out = world.run_client(ps, SHORT);
        assert_eq!(
            out.status.code(),
            Some(1),
            "something answers after {extra}"
        );
    }
}

#[test]
fn daemon_json_syntax_error_names_the_file_and_line() {
    let world = World::new();
    let text = "{\n  \"log-level\": \"info\",\n  \"live-restore\": true,\n  \"socket\" \"/nowhere.sock\"\n}\n";
    world.write_file(&world.config_path(), text);
    let mut daemon = world.spawn_daemon(&[]);
    assert!(
        !daemon.wait_exit(SHORT).success(),
        "daemon accepted broken JSON"
    );
    let config = world.config_path();
    let config = config.to_str().unwrap();
    let stderr = daemon.stderr();
    let names_line_4 = |l: &str| {
        ["line 4", "line:4", "line: 4", ":4:"]
            .iter()
            .any(|p| l.contains(p))
    };
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(config) && names_line_4(l)),
        "no line names {config} and line 4:\n{stderr}"
    );
}

#[test]
fn bad_container_files_are_reported_and_the_others_run() {
    let world = World::new();
    world.add_container("good", POLITE, "{}");
    world.add_container("unknown", POLITE, r#"{"restrat": "always"}"#);
    world.add_container("empty", &[], "{}");
    world.add_container("badvalue", POLITE, r#"{"memory": "lots"}"#);
    world.add_container("badrestart", POLITE, r#"{"restart": "sometimes"}"#);
    world.write_container("norootfs", r#"{"command": ["/bin/sleep", "1000"]}"#);
    world.write_container("a b", &world.container_json(POLITE, "{}"));
    world.write_container(".x", &world.container_json(POLITE, "{}"));
    let daemon = world.start_daemon(&[]);
    let good = world.wait_running("good");

    for (name, field) in [
        ("unknown", "restrat"),
        ("empty", "command"),
        ("badvalue", "memory"),
        ("badrestart", "restart"),
        ("norootfs", "rootfs"),
        ("a b", "a b.json"),
    ] {
        daemon.wait_for_log_line(&[&format!("{name}.json"), field]);
        let out = world.berth(&["inspect", name]);
        if out.status.success() {
            let inspect =
                crate::common::Inspect::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
            assert_eq!(
                (inspect.status.as_str(), inspect.pid),
                ("failed", 0),
                "{inspect:?}"
            );
            assert!(
                inspect.error.as_deref().is_some_and(|e| e.contains(field)),
                "{inspect:?}"
            );
        } else {
            assert!(!out.stderr.is_empty(), "inspect {name} failed silently");
        }
    }
    let names: Vec<String> = world
        .ps()
        .into_iter()
        .filter(|i| i.status != "failed")
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["good"], "only good may be defined and not failed");
    assert!(
        !world.berth(&["inspect", ".x"]).status.success(),
        ".x.json must be ignored"
    );
    assert!(
        !daemon.stderr().contains(".x.json"),
        "ignored files are not errors"
    );
    assert_eq!(world.inspect("good").pid, good.pid);
}

#[test]
fn a_missing_rootfs_is_reported_and_the_others_run() {
    let world = World::new();
    let ghost_root = world.root.join("no-such-rootfs");
    world.add_container(
        "ghost",
        POLITE,
        &format!(
            "{{\"rootfs\": {}}}",
            crate::common::json::string(ghost_root.to_str().unwrap())
        ),
    );
    world.add_container("alive", POLITE, "{}");
    let daemon = world.start_daemon(&[]);
    let alive = world.wait_running("alive");
    daemon.wait_for_log_line(&["ghost", "no-such-rootfs"]);
    match world.try_inspect("ghost") {
        Some(ghost) => {
            assert_eq!(
                (ghost.status.as_str(), ghost.pid),
                ("failed", 0),
                "{ghost:?}"
            );
            assert!(
                ghost
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("no-such-rootfs")),
                "{ghost:?}"
            );
        }
        None => {
            let line = one_error_line(&world.berth(&["inspect", "ghost"]), 1);
            assert!(line.contains("ghost"), "{line}");
        }
    }
    assert_eq!(world.inspect("alive").pid, alive.pid);
}

#[test]
fn garbage_on_the_socket_disturbs_neither_daemon_nor_containers() {
    let world = World::new();
    world.add_container("steady", POLITE, "{}");
    let _daemon = world.start_daemon(&[]);
    let before = world.wait_running("steady");
    let connect = || UnixStream::connect(world.socket()).expect("connect to the API socket");

    // Clients that connect and never send, or stop mid-request, stay open.
    let idle: Vec<UnixStream> = (0..8).map(|_| connect()).collect();
    let mut partial = connect();
    partial.write_all(b"{\"verb\": \"p").unwrap();

    // Random bytes, then a half-close: whatever the answer, it must end.
    let mut junk = connect();
    let mut random = vec![0u8; 64 * 1024];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut random)
        .unwrap();
    let _ = junk.write_all(&random);
    let _ = junk.shutdown(std::net::Shutdown::Write);
    assert!(
        closes_within(&mut junk, SHORT),
        "daemon kept a half-closed junk client open"
    );

    // Well-formed JSON that is no request gets one JSON error line.
    let mut odd = connect();
    odd.write_all(b"{\"no-such-request\": [1, 2, 3]}\n")
        .unwrap();
    odd.set_read_timeout(Some(SHORT)).unwrap();
    let mut answer = String::new();
    BufReader::new(&odd)
        .read_line(&mut answer)
        .expect("an answer to a bad request");
    assert!(
        answer.starts_with('{') && answer.ends_with('\n'),
        "answer {answer:?}"
    );

    // A 1 MiB request without a newline is cut off, not buffered forever.
    let mut big = connect();
    big.set_write_timeout(Some(SHORT)).unwrap();
    let _ = big.write_all(&vec![b'x'; 1 << 20]);
    assert!(
        closes_within(&mut big, SHORT),
        "daemon kept an over-size request open"
    );

    // With idle and partial clients still connected the daemon answers.
    let mut ps = world.client_command();
    ps.arg("--config").arg(world.config_path()).arg("ps");
    let out = world.run_client(ps, SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    let after = world.inspect("steady");
    assert_eq!(
        (after.status.as_str(), after.pid, after.restart_count),
        ("running", before.pid, before.restart_count)
    );
    drop((idle, partial));
}

/// Whether the peer closes `stream` (EOF or reset) within `deadline`,
/// reading and discarding whatever it sends first.
fn closes_within(stream: &mut UnixStream, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}
