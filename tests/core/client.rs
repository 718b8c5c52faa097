//! The client's side of the contract: `version`, usage errors (exit 2),
//! failing with one line when no daemon answers, how it finds the socket
//! (`--socket`, then `$BERTH_SOCKET`, then `--config`), daemon.json paths
//! relative to its directory, and `ps`.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::{ON_DEMAND, POLITE, one_error_line};
use crate::common::{SHORT, VERSION, World, describe, wait_for};

#[test]
fn version_prints_the_package_version() {
    let world = World::new();
    let _daemon = world.start_daemon(&[]);
    let stdout = world.berth_ok(&["version"]);
    assert!(
        stdout.contains(VERSION),
        "`berth version` printed {stdout:?}, want {VERSION}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let world = World::new();
    let config = world.config_path();
    let config = config.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["--config", config, "start"],
        &["--config", config, "logs", "x", "--tail", "many"],
        &["--config", config, "stop", "x", "--time"],
        &["--config", config, "ps", "--no-such-flag"],
    ];
    for args in cases {
        let mut cmd = world.client_command();
        cmd.args(*args);
        let out = world.run_client(cmd, SHORT);
        assert_eq!(
            out.status.code(),
            Some(2),
            "berth {args:?}: {}",
            describe(&out)
        );
        assert!(
            !out.stderr.is_empty(),
            "berth {args:?} printed no usage error"
        );
    }
}

#[test]
fn client_without_a_daemon_fails_with_one_line_naming_the_socket() {
    let world = World::new();
    let line = one_error_line(&world.berth(&["ps"]), 1);
    assert!(line.contains(world.socket().to_str().unwrap()), "{line}");
}

#[test]
fn socket_option_and_environment_find_the_daemon_in_that_order() {
    let world = World::new();
    let _daemon = world.start_daemon(&[]);
    let nowhere = world.root.join("nowhere.sock");
    let run = |socket_opt: Option<&Path>, env: Option<&Path>, config: bool| {
        let mut cmd = world.client_command();
        if let Some(env) = env {
            cmd.env("BERTH_SOCKET", env);
        }
        if let Some(socket) = socket_opt {
            cmd.arg("--socket").arg(socket);
        }
        if config {
            cmd.arg("--config").arg(world.config_path());
        }
        cmd.arg("ps");
        world.run_client(cmd, SHORT).status.code()
    };
    let socket = world.socket();
    assert_eq!(run(Some(&socket), None, false), Some(0), "--socket");
    assert_eq!(run(None, Some(&socket), false), Some(0), "BERTH_SOCKET");
    assert_eq!(
        run(Some(&nowhere), Some(&socket), false),
        Some(1),
        "--socket before BERTH_SOCKET"
    );
    assert_eq!(
        run(None, Some(&nowhere), true),
        Some(1),
        "BERTH_SOCKET before --config"
    );
    assert_eq!(
        run(Some(&socket), Some(&nowhere), true),
        Some(0),
        "--socket before all"
    );
}

#[test]
fn relative_paths_in_daemon_json_resolve_against_its_directory() {
    let world = World::new();
    world.write_daemon_json(
        r#"{"containers-dir": "containers", "state-dir": "../state", "run-dir": "../run",
            "socket": "../run/berth.sock", "log-dir": "../log"}"#,
    );
    world.add_container(
        "rel",
        &["/bin/sh", "-c", "echo relative; exec sleep 1000"],
        "{}",
    );
    // Daemon and clients run with "/" as their working directory.
    let _daemon = world.start_daemon(&[]);
    let socket = fs::symlink_metadata(world.socket()).expect("socket at run/berth.sock");
    assert!(socket.file_type().is_socket());
    world.wait_running("rel");
    assert!(
        has_dir_named(&world.run_dir(), "rel", 2),
        "no runtime record for rel below run/"
    );
    wait_for(SHORT, "the log in log/rel", || {
        fs::read_to_string(world.container_log("rel")).is_ok_and(|l| l.contains("relative"))
    });
}

/// Whether `dir` has a directory called `name` at most `depth` levels down.
fn has_dir_named(dir: &Path, name: &str, depth: usize) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .any(|e| e.file_name() == name || (depth > 1 && has_dir_named(&e.path(), name, depth - 1)))
}

#[test]
fn ps_lists_every_defined_container() {
    let world = World::new();
    world.add_container("one", POLITE, "{}");
    world.add_container("two", POLITE, ON_DEMAND);
    let _daemon = world.start_daemon(&[]);
    let one = world.wait_running("one");
    let mut listed = world.ps();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(listed[0].pid, one.pid);
    assert_eq!(
        (
            listed[1].status == "running",
            listed[1].pid,
            listed[1].exit_code
        ),
        (false, 0, None)
    );
    let table = world.berth_ok(&["ps"]);
    assert!(table.contains("one") && table.contains("two"), "{table}");
}
