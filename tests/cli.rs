//! The client as a Docker user types it, through the real binary: help on
//! every verb and usage errors with the verb's own usage (exit 2), the
//! message when no daemon answers, several names per verb with one
//! unknown among them, Docker's short flags, `ps` statuses and columns,
//! `ps -q`, a closed stdout ending the client quietly, `inspect` with the
//! effective definition, and `logs` with no daemon, with --since/--until,
//! and of a removed container until `berth rm`; `exec`'s help asked for
//! before the command, a command's own --help (and --config) left to it.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

use common::*;

const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// Every verb `berth --help` lists.
const VERBS: &[&str] = &[
    "ps", "start", "stop", "restart", "kill", "wait", "logs", "inspect", "stats", "exec", "events",
    "reload", "rm", "version", "help", "daemon",
];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A client run with `args` and no daemon configuration at all.
fn bare(args: &[&str]) -> Output {
    Command::new(BERTH)
        .args(args)
        .env_remove("BERTH_SOCKET")
        .current_dir("/")
        .output()
        .expect("run berth")
}

/// Asserts a usage error: exit 2, the error, then the verb's usage in a
/// few lines, nothing on stdout.
fn assert_usage(out: &Output, verb: &str, error: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    assert!(out.stdout.is_empty(), "{}", describe(out));
    let mut lines = err.lines();
    assert_eq!(
        lines.next(),
        Some(format!("berth: {error}").as_str()),
        "{err}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with(&format!("usage: berth {verb}"))),
        "{err}"
    );
    assert!(err.lines().count() <= 5, "a few lines: {err}");
    assert!(
        err.contains(&format!("Run 'berth help {verb}' for more.")),
        "{err}"
    );
}

#[test]
fn help_usage_errors_and_no_daemon() {
    let out = bare(&["--help"]);
    assert!(out.status.success(), "{}", describe(&out));
    let main = text(&out.stdout);
    for verb in VERBS {
        assert!(main.contains(&format!("\n  {verb} ")), "{verb} in: {main}");
    }
    assert!(bare(&["help"]).status.success());
    for verb in VERBS {
        for args in [vec![*verb, "--help"], vec![*verb, "-h"], vec!["help", verb]] {
            let out = bare(&args);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
            let usage = text(&out.stdout);
            assert!(
                usage.starts_with(&format!("usage: berth {verb}")),
                "{args:?}: {usage}"
            );
            assert!(out.stderr.is_empty(), "{args:?}: {}", describe(&out));
        }
    }
    // --help wins over anything else on the line, names included.
    let out = bare(&["stop", "app", "--time", "3", "--help"]);
    assert!(
        text(&out.stdout).contains("-t, --time SECS"),
        "{}",
        describe(&out)
    );

    assert_usage(&bare(&["stop"]), "stop", "stop: a container name is needed");
    assert_usage(&bare(&["ps", "web"]), "ps", "ps takes no names");
    assert_usage(&bare(&["ps", "--bogus"]), "ps", "unknown option --bogus");
    assert_usage(&bare(&["logs", "-n"]), "logs", "-n needs a value");
    assert_usage(
        &bare(&["logs", "a", "b"]),
        "logs",
        "logs: exactly one container name is needed",
    );
    assert_usage(
        &bare(&["kill", "-s", "NOPE", "app"]),
        "kill",
        "unknown signal: NOPE",
    );
    assert_usage(
        &bare(&["stop", "-t", "soon", "app"]),
        "stop",
        "--time needs a whole number, not \"soon\"",
    );
    assert_usage(
        &bare(&["start", "--wait", "a", "b"]),
        "start",
        "start --wait: exactly one container name is needed",
    );
    assert_usage(
        &bare(&["daemon", "--bogus"]),
        "daemon",
        "daemon: unknown option --bogus",
    );
    let out = bare(&["frob"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out.stderr).contains("unknown command: frob"));
    let out = bare(&["help", "frob"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));

    // No daemon: the socket's path, why, and the question.
    let w = World::new();
    let out = w.berth(&["ps"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        text(&out.stderr),
        format!(
            "berth: cannot connect to the daemon at {}: No such file or directory (is the daemon running?)\n",
            w.socket().display()
        )
    );
    // Several names: one error, not one per name.
    let out = w.berth(&["stop", "a", "b", "c"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(text(&out.stderr).lines().count(), 1, "{}", describe(&out));
    let out = bare(&["--socket", "/nonexistent/b.sock", "inspect", "x"]);
    assert!(
        text(&out.stderr).contains(
            "cannot connect to the daemon at /nonexistent/b.sock: No such file or directory (is the daemon running?)"
        ),
        "{}",
        describe(&out)
    );
}

/// The STATUS column of NAME's row in `ps` output, and the column where
/// STATUS starts.
fn ps_status(table: &str, name: &str) -> (String, usize) {
    let head = table.lines().next().expect("a header");
    let col = head.find("STATUS").expect("a STATUS column");
    let pid_col = head.find("PID").expect("a PID column");
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}: {table}"));
    (row[col..pid_col].trim().to_string(), col)
}

/// Runs a client whose stdout is a pipe nobody reads any more.
fn with_closed_stdout(w: &World, args: &[&str]) -> Output {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array it is given.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just made by pipe2 and are owned by nothing else.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    let mut cmd = w.client_command();
    cmd.arg("--config")
        .arg(w.config_path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn berth");
    child.wait_with_output().expect("wait for berth")
}

#[test]
fn several_names_statuses_and_short_flags() {
    let w = World::new();
    let long = "a-container-name-well-beyond-twenty-characters";
    w.add_container("web", POLITE, r#"{"restart": "no"}"#);
    w.add_container("job", &["sh", "-c", "echo done; exit 3"], ON_DEMAND);
    w.add_container("idle", POLITE, ON_DEMAND);
    w.add_container(long, POLITE, ON_DEMAND);
    let _daemon = w.start_daemon(&[]);
    w.wait_running("web");

    // Not run in this boot: created.
    assert_eq!(w.inspect("idle").status, "created");
    let table = w.berth_ok(&["ps"]);
    let (idle, col) = ps_status(&table, "idle");
    assert_eq!(idle, "Created", "{table}");
    let (web, _) = ps_status(&table, "web");
    assert!(web.starts_with("Up "), "{table}");
    // The columns fit the longest name.
    assert_eq!(col, long.len() + 3, "{table}");
    let (status, _) = ps_status(&table, long);
    assert_eq!(status, "Created", "{table}");

    // -q: names only; -a changes nothing (all are listed anyway).
    let mut names = ["idle", "job", "web", long];
    names.sort();
    assert_eq!(
        w.berth_ok(&["ps", "-q"]),
        names.iter().map(|n| format!("{n}\n")).collect::<String>()
    );
    assert_eq!(w.berth_ok(&["ps", "-aq"]), w.berth_ok(&["ps", "--quiet"]));
    assert!(w.berth_ok(&["ps", "-a"]).starts_with("NAME "));

    // Several names, one unknown: the others are done, one error line,
    // exit 1.
    let out = w.berth(&["start", "job", "nope", "idle"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(text(&out.stderr), "berth: no such container: nope\n");
    w.wait_running("idle");
    let job = w.wait_status("job", "exited", SHORT);
    assert_eq!(job.exit_code, Some(3));
    let table = w.berth_ok(&["ps"]);
    let (job, _) = ps_status(&table, "job");
    assert!(
        job.starts_with("Exited (3) ") && job.ends_with(" ago"),
        "{job:?} in {table}"
    );

    // inspect: one object for one name, one a line for several.
    let one = w.berth_ok(&["inspect", "web"]);
    assert_eq!(one.lines().count(), 1);
    let web = w.inspect("web");
    assert_eq!(web.name, "web");
    assert!(one.contains(r#""config":{"#), "{one}");
    assert!(one.contains(r#""command":["/bin/sh","-c","trap"#), "{one}");
    assert!(one.contains(r#""restart":"no""#), "{one}");
    // Keys the file leaves out are shown at their defaults.
    assert!(one.contains(r#""etc-files":true"#), "{one}");
    assert!(one.contains(r#""stop-signal":"SIGTERM""#), "{one}");
    assert!(one.contains(r#""cgroups":["/sys/fs/cgroup/"#), "{one}");
    let out = w.berth(&["inspect", "web", "nope", "idle"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let objects: Vec<Inspect> = text(&out.stdout)
        .lines()
        .map(|l| Inspect::parse(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        objects.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["web", "idle"]
    );
    assert_eq!(text(&out.stderr), "berth: no such container: nope\n");

    // kill -s, restart and stop -t with several names.
    let before = w.inspect("idle").pid;
    let out = w.berth(&["restart", "-t", "5", "idle", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let after = w.wait_running("idle");
    assert_ne!(after.pid, before);
    w.berth_ok(&["start", long]);
    w.wait_running(long);
    let out = w.berth(&["kill", "-s", "TERM", long, "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let gone = w.wait_status(long, "exited", SHORT);
    assert_eq!(gone.exit_code, Some(0), "POLITE exits 0 on SIGTERM");
    let out = w.berth(&["stop", "-t", "1", "web", "idle", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(text(&out.stderr), "berth: no such container: nope\n");
    assert_eq!(w.inspect("web").status, "stopped");
    assert_eq!(w.inspect("idle").status, "stopped");
    let table = w.berth_ok(&["ps"]);
    assert!(ps_status(&table, "web").0.starts_with("Stopped"), "{table}");

    // A reader that has gone: no panic, no message, ended by SIGPIPE.
    for args in [
        &["ps"][..],
        &["logs", "job"],
        &["inspect", "web"],
        &["stats", "--no-stream"],
    ] {
        let out = with_closed_stdout(&w, args);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(out.stderr.is_empty(), "{args:?}: {}", describe(&out));
    }
    // And through a real pipeline: head takes one line.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{BERTH} --config {} ps | head -1",
            w.config_path().display()
        ))
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text(&out.stdout).starts_with("NAME "));
    assert!(out.stderr.is_empty(), "{}", describe(&out));
}

/// The time of each line of `logs -t` output, and its text.
fn stamped(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|l| {
            let (t, rest) = l.split_once(' ').expect("a timestamp");
            assert!(is_rfc3339(t), "{t}");
            (t.to_string(), rest.to_string())
        })
        .collect()
}

#[test]
fn logs_with_no_daemon_since_until_and_removed() {
    let w = World::new();
    w.add_container(
        "talk",
        &[
            "sh",
            "-c",
            "echo one; sleep 0.05; echo two; sleep 0.05; echo three",
        ],
        ON_DEMAND,
    );
    let mut daemon = w.start_daemon(&[]);
    assert_eq!(w.start_wait("talk"), 0);
    assert_eq!(w.logs("talk", &[]).0, "one\ntwo\nthree\n");
    assert_eq!(w.logs("talk", &["-n", "1"]).0, "three\n");
    assert_eq!(w.logs("talk", &["--tail=all"]).0, "one\ntwo\nthree\n");
    let lines = stamped(&w.logs("talk", &["-t", "--tail", "3"]).0);
    assert_eq!(
        lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
    let two = &lines[1].0;
    assert_eq!(w.logs("talk", &["--since", two]).0, "two\nthree\n");
    assert_eq!(w.logs("talk", &["--until", two]).0, "one\ntwo\n");
    assert_eq!(w.logs("talk", &["--since", two, "--until", two]).0, "two\n");
    assert_eq!(w.logs("talk", &["--since", "10m"]).0, "one\ntwo\nthree\n");
    assert_eq!(w.logs("talk", &["--until", "1"]).0, "", "unix time 1");
    assert_eq!(w.logs("talk", &["--since", "4102444800"]).0, "", "in 2100");
    let out = w.berth(&["logs", "talk", "--since", "yesterday"]);
    assert_usage(
        &out,
        "logs",
        "--since: \"yesterday\" is not a time: give RFC 3339 (2026-11-29T17:30:00Z), unix seconds, or a duration such as 10m",
    );

    // The daemon gone: the files are read from where daemon.json puts them.
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(SHORT);
    assert!(!w.berth(&["ps"]).status.success());
    assert_eq!(w.logs("talk", &[]).0, "one\ntwo\nthree\n");
    assert_eq!(
        w.logs("talk", &["-n", "2", "--since", two]).0,
        "two\nthree\n"
    );
    assert_eq!(stamped(&w.logs("talk", &["-t"]).0), lines);
    assert_eq!(
        w.logs("talk", &["-f"]).0,
        "one\ntwo\nthree\n",
        "nothing runs to follow"
    );
    let out = w.berth(&["logs", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        text(&out.stderr),
        format!(
            "berth: no logs of nope in {}\n",
            w.log_dir().join("nope").display()
        )
    );

    // Removed from the configuration: its logs stay readable until rm.
    let _daemon = w.start_daemon(&[]);
    std::fs::remove_file(w.containers_dir().join("talk.json")).expect("remove talk.json");
    w.berth_ok(&["reload"]);
    wait_for(SHORT, "talk to be forgotten", || {
        w.try_inspect("talk").is_none()
    });
    assert_eq!(w.logs("talk", &[]).0, "one\ntwo\nthree\n");
    assert_eq!(w.logs("talk", &["--removed", "-n", "1"]).0, "three\n");
    let removed = w.berth_ok(&["rm", "talk"]);
    assert!(removed.contains("removed logs"), "{removed}");
    for args in [&["logs", "talk"][..], &["logs", "--removed", "talk"]] {
        let out = w.berth(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        assert!(
            text(&out.stderr).contains("no logs of talk"),
            "{}",
            describe(&out)
        );
    }
}

#[test]
fn logs_follow_a_container_with_no_daemon() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    let wait_go = "echo first; while [ ! -e /data/go ]; do sleep 0.02; done; echo last";
    w.add_container(
        "tick",
        &["sh", "-c", wait_go],
        &format!(r#"{{"restart": "no", "mounts": [{}]}}"#, w.data_mount()),
    );
    let mut daemon = w.start_daemon(&[]);
    w.wait_running("tick");
    daemon.kill_9();
    // No daemon: the runtime record names the monitor to follow until.
    let follow = w.spawn_berth(&["logs", "-f", "tick"]);
    let path = follow.stdout_path.clone();
    wait_for(SHORT, "the first line", || {
        std::fs::read_to_string(&path).is_ok_and(|t| t == "first\n")
    });
    std::fs::write(w.host_dir().join("go"), "").unwrap();
    let out = follow.finish(SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "first\nlast\n");
}

#[test]
fn exec_help_is_ours_only_before_the_command() {
    let w = World::new();
    w.add_container("web", POLITE, ON_DEMAND);
    let _daemon = w.start_daemon(&[]);
    w.berth_ok(&["start", "web"]);
    w.wait_running("web");
    let help = w.berth_ok(&["help", "exec"]);
    assert!(help.starts_with("usage: berth exec"), "{help}");
    for args in [
        &["exec", "--help"][..],
        &["exec", "-h"],
        &["exec", "-h", "web", "ls"],
        &["exec", "-i", "web", "--help"],
    ] {
        assert_eq!(w.berth_ok(args), help, "{args:?}");
    }
    // From the command on, every word is the command's.
    let cases: [(&[&str], &str); 4] = [
        (&["exec", "web", "sh", "-c", "echo ok", "--help"], "ok\n"),
        (&["exec", "web", "echo", "--help"], "--help\n"),
        (&["exec", "-u", "0", "web", "echo", "-h"], "-h\n"),
        (
            &["exec", "web", "echo", "--config", "x", "--socket=y"],
            "--config x --socket=y\n",
        ),
    ];
    for (args, said) in cases {
        assert_eq!(w.berth_ok(args), said, "{args:?}");
    }
    // `ls --help` runs busybox's ls, whose help goes to stderr.
    let out = w.berth(&["exec", "web", "ls", "--help"]);
    let err = text(&out.stderr);
    assert!(err.contains("Usage: ls"), "{}", describe(&out));
    assert!(!text(&out.stdout).contains("berth"), "{}", describe(&out));
}
