//! `berth exec`, through the real binary: a command run inside a running
//! container with each option (`--user` by name and number, `--env`,
//! `--workdir`, `-i`, `-t`), its exit status passed through (128 + N for
//! a signal), the same confinement as the container's init (namespaces,
//! cgroups, capabilities, no_new_privs, seccomp, rlimits, user), a
//! terminal of the container's own on a test-made terminal with its
//! window size and a resize followed, exec across a daemon kill -9 and
//! restart (and while the daemon is away), clear errors for a stopped or
//! unknown container, and `inspect` listing the exec'd process while its
//! `pid` stays the init's. The test with `"init": true` needs the static
//! binary tests/run builds, as tests/init.rs does.

// nanoserde's derived code trips this lint; it is not ours to rewrite.
#![allow(clippy::question_mark)]

mod common;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, symlink};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nanoserde::DeJson;

use common::*;

const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// busybox applets these tests use beyond the harness's.
const MORE_APPLETS: &[&str] = &["stty", "tty", "grep", "sed"];

/// What `inspect` says of the exec'd processes.
#[derive(DeJson, Debug)]
struct WithExecs {
    pid: i32,
    #[nserde(default)]
    execs: Vec<Execd>,
}

#[derive(DeJson, Debug, Clone)]
struct Execd {
    pid: i32,
    command: Vec<String>,
    #[nserde(default, rename = "started-at")]
    started_at: Option<String>,
}

fn world() -> World {
    let w = World::new();
    for applet in MORE_APPLETS {
        symlink("busybox", w.rootfs().join("bin").join(applet)).expect("link applet");
    }
    w
}

/// A world with container `web` (running POLITE with `extra` keys) started
/// under a daemon with live restore.
fn running(extra: &str) -> (World, Daemon) {
    let w = world();
    w.add_container("web", POLITE, &json::merge(ON_DEMAND, extra));
    let daemon = w.start_daemon(&["--live-restore"]);
    w.berth_ok(&["start", "web"]);
    w.wait_running("web");
    (w, daemon)
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `berth exec ARGS`, asserted to exit with `code`; its stdout.
fn exec_code(w: &World, args: &[&str], code: i32) -> String {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    let out = w.berth(&all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "berth {all:?}: {}",
        describe(&out)
    );
    text(&out).0
}

fn exec_ok(w: &World, args: &[&str]) -> String {
    exec_code(w, args, 0)
}

fn with_execs(w: &World, name: &str) -> WithExecs {
    let out = w.berth_ok(&["inspect", name]);
    WithExecs::deserialize_json(out.trim()).unwrap_or_else(|e| panic!("inspect: {e}: {out}"))
}

/// Waits until `inspect` lists an exec'd process running `command`.
fn wait_execd(w: &World, name: &str, command: &[&str]) -> Execd {
    let mut found = None;
    wait_for(SHORT, &format!("{command:?} in inspect's execs"), || {
        found = with_execs(w, name)
            .execs
            .into_iter()
            .find(|e| e.command == command);
        found.is_some()
    });
    found.expect("found above")
}

/// A `berth --config <world> ARGS` command in the world's cgroup, with
/// stdio left to the caller.
fn client(w: &World, args: &[&str]) -> Command {
    let mut cmd = w.client_command();
    cmd.arg("--config").arg(w.config_path()).args(args);
    sys::join_cgroup_before_exec(&mut cmd, &w.cgroup2_dir().join("cgroup.procs"));
    cmd
}

/// A child process killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Reaped {
    /// Spawns `cmd` with its stdio piped (but where it is set already).
    fn spawn(cmd: &mut Command) -> Reaped {
        Reaped(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn client"),
        )
    }

    /// Writes `input` to its stdin and closes it (with `None`, keeps its
    /// stdin open and unwritten until it ends), waits for its exit within
    /// `SHORT` and returns (code, stdout, stderr). Readers run in threads,
    /// so a full pipe cannot stall it; on a timeout the client is killed,
    /// which ends them.
    fn finish(mut self, input: Option<Vec<u8>>) -> (i32, String, String) {
        let stdin = self.0.stdin.take();
        // Without input, stdin stays open (and unwritten) while it runs.
        let mut kept = None;
        let writer = match (input, stdin) {
            (Some(data), Some(mut stdin)) => Some(std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            })),
            (_, stdin) => {
                kept = stdin;
                None
            }
        };
        let reader = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_string(&mut text);
                }
                text
            })
        };
        let out = reader(
            self.0
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let err = reader(
            self.0
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let code = self.wait_code(SHORT);
        drop(kept);
        if let Some(w) = writer {
            w.join().expect("writer");
        }
        (
            code,
            out.join().expect("stdout reader"),
            err.join().expect("stderr reader"),
        )
    }

    fn wait_code(&mut self, deadline: Duration) -> i32 {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status
                    .code()
                    .unwrap_or_else(|| panic!("client ended by a signal: {status}"));
            }
            assert!(
                Instant::now() < end,
                "client still running after {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Fields of /proc/PID/status that say what a process may do.
fn confinement(pid: i32) -> Vec<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .filter(|l| {
            [
                "Uid:",
                "Gid:",
                "Groups:",
                "CapInh:",
                "CapPrm:",
                "CapEff:",
                "CapBnd:",
                "CapAmb:",
                "NoNewPrivs:",
                "Seccomp:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn each_option_and_the_exit_status() {
    let (w, _daemon) = running(r#"{"env": ["A=1", "FOO=def"], "workdir": "/tmp"}"#);
    fs::write(
        w.rootfs().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:App:/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        w.rootfs().join("etc/group"),
        "root:x:0:\napps:x:2345:\nextra:x:3000:app\n",
    )
    .unwrap();

    // Plain: the definition's user, env and workdir; the container's host name.
    let out = exec_ok(
        &w,
        &[
            "web",
            "--",
            "sh",
            "-c",
            "id -u; echo $A $FOO; pwd; hostname",
        ],
    );
    assert_eq!(out, "0\n1 def\n/tmp\nweb\n");
    // Without "--" as well.
    assert_eq!(exec_ok(&w, &["web", "echo", "-n", "x"]), "x");

    // --user by name: its ids, groups and home from the container's files.
    let out = exec_ok(
        &w,
        &[
            "--user",
            "app",
            "web",
            "--",
            "sh",
            "-c",
            "id -u; id -g; id -G; echo $HOME",
        ],
    );
    assert_eq!(out, "1234\n2345\n2345 3000\n/home/app\n");
    // --user by number, user and group.
    let out = exec_ok(
        &w,
        &["web", "-u", "1500:1600", "--", "sh", "-c", "id -u; id -g"],
    );
    assert_eq!(out, "1500\n1600\n");
    // A name the container does not have.
    let out = w.berth(&["exec", "-u", "nosuch", "web", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let (_, err) = text(&out);
    assert!(
        err.contains("user \"nosuch\" is not in /etc/passwd of container web"),
        "{err}"
    );

    // --env over the definition's, and a new one.
    let out = exec_ok(
        &w,
        &[
            "web",
            "-e",
            "FOO=bar",
            "--env",
            "NEW=2",
            "sh",
            "-c",
            "echo $A $FOO $NEW",
        ],
    );
    assert_eq!(out, "1 bar 2\n");

    // --workdir, and one that does not exist.
    assert_eq!(exec_ok(&w, &["web", "-w", "/bin", "pwd"]), "/bin\n");
    let out = w.berth(&["exec", "web", "--workdir", "/nope", "pwd"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out)
            .1
            .contains("enter workdir /nope: No such file or directory"),
        "{}",
        describe(&out)
    );

    // The exit status, and 128 + N for a signal.
    exec_code(&w, &["web", "sh", "-c", "exit 42"], 42);
    exec_code(
        &w,
        &["web", "sh", "-c", "kill -USR1 $$"],
        128 + libc::SIGUSR1,
    );
    // A command that is not there: 127, with the exec error.
    let out = w.berth(&["exec", "web", "/bin/nope"]);
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
    assert!(
        text(&out)
            .1
            .contains("exec /bin/nope: No such file or directory"),
        "{}",
        describe(&out)
    );
    // stdout and stderr stay apart.
    let out = w.berth(&["exec", "web", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(text(&out), ("out\n".to_string(), "err\n".to_string()));

    // Without -i stdin is /dev/null; with -i it is ours, to its end.
    let mut cmd = client(&w, &["exec", "web", "sh", "-c", "cat; echo end"]);
    let (code, stdout, stderr) = Reaped::spawn(cmd.stdin(Stdio::piped())).finish(None);
    assert_eq!((code, stdout.as_str()), (0, "end\n"), "{stderr}");
    let mut cmd = client(&w, &["exec", "-i", "web", "sh", "-c", "cat; echo end"]);
    let want: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let (code, stdout, stderr) =
        Reaped::spawn(cmd.stdin(Stdio::piped())).finish(Some(want.clone().into_bytes()));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout == format!("{want}end\n"),
        "{} bytes back",
        stdout.len()
    );
    // -i with a file as stdin.
    let file = w.out_dir().join("input");
    fs::write(&file, "from a file\n").unwrap();
    let mut cmd = client(&w, &["exec", "-i", "web", "cat"]);
    let (code, stdout, stderr) = Reaped::spawn(cmd.stdin(File::open(&file).unwrap())).finish(None);
    assert_eq!((code, stdout.as_str()), (0, "from a file\n"), "{stderr}");
}

#[test]
fn the_same_confinement_as_the_init() {
    same_confinement_as_the_init(false);
}

/// Where setns(2) takes no pidfd (Linux before 5.8; here a seccomp filter
/// on the client answers EINVAL as such a kernel does), the namespaces
/// are joined one by one through /proc/PID/ns: the same confinement.
#[test]
fn the_same_confinement_as_the_init_where_setns_takes_no_pidfd() {
    same_confinement_as_the_init(true);
}

/// A client running `berth exec ARGS`; with `old_kernel`, as on a kernel
/// whose setns(2) takes no pidfd.
fn exec_client(w: &World, args: &[&str], old_kernel: bool) -> Command {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    let mut cmd = client(w, &all);
    if old_kernel {
        sys::without_setns_on_a_pidfd(&mut cmd);
    }
    cmd
}

fn same_confinement_as_the_init(old_kernel: bool) {
    let (w, _daemon) = running(
        r#"{"user": "1000:1000", "cap-add": ["NET_ADMIN"], "cap-drop": ["CHOWN"],
            "rlimits": {"nofile": [100, 200], "nproc": [50, 60]}, "network": "none"}"#,
    );
    let init = w.inspect("web").pid as i32;
    let mut c = Reaped(
        exec_client(&w, &["web", "sh", "-c", "exec sleep 1000"], old_kernel)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn client"),
    );
    let execd = wait_execd(&w, "web", &["sleep", "1000"]);
    let pid = execd.pid;
    assert_ne!(pid, init);
    // Every namespace of the init, and none of ours.
    for ns in ["mnt", "uts", "ipc", "net", "pid", "cgroup", "user", "time"] {
        let theirs = fs::read_link(format!("/proc/{init}/ns/{ns}")).unwrap();
        let its = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_eq!(its, theirs, "{ns} namespace");
    }
    for ns in ["mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        let ours = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let its = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(its, ours, "{ns} namespace is the host's");
    }
    // The same root: the container's.
    assert_eq!(
        fs::metadata(format!("/proc/{pid}/root/bin/busybox"))
            .unwrap()
            .ino(),
        fs::metadata(w.rootfs().join("bin/busybox")).unwrap().ino()
    );
    // The same cgroups, every hierarchy.
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap()
    );
    // Ids, groups, capabilities, no_new_privs, seccomp.
    let (init_c, exec_c) = (confinement(init), confinement(pid));
    assert_eq!(exec_c, init_c);
    assert!(
        exec_c.contains(&"Uid:\t1000\t1000\t1000\t1000".to_string()),
        "{exec_c:?}"
    );
    assert!(exec_c.contains(&"NoNewPrivs:\t1".to_string()), "{exec_c:?}");
    assert!(exec_c.contains(&"Seccomp:\t2".to_string()), "{exec_c:?}");
    assert!(
        exec_c.contains(&"CapAmb:\t0000000000001000".to_string()),
        "{exec_c:?}"
    );
    // rlimits.
    let limits = |p: i32| fs::read_to_string(format!("/proc/{p}/limits")).unwrap();
    assert_eq!(limits(pid), limits(init));
    assert!(
        limits(pid)
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 100 ") && l.contains(" 200 ")),
        "{}",
        limits(pid)
    );
    // Its pid inside is not 1 and its parent is outside the container.
    let mut cmd = exec_client(&w, &["web", "sh", "-c", "echo $$ $PPID"], old_kernel);
    let (code, inside, stderr) = Reaped::spawn(cmd.stdin(Stdio::null())).finish(None);
    assert_eq!(code, 0, "{stderr}");
    let (own, parent) = inside.trim().split_once(' ').unwrap();
    assert_ne!(own, "1");
    assert_eq!(parent, "0", "{inside}");
    // The client passes SIGTERM on; the command's death is its exit.
    sys::kill_child(c.0.id(), libc::SIGTERM).unwrap();
    assert_eq!(c.wait_code(SHORT), 128 + libc::SIGTERM);
}

#[test]
fn a_container_on_the_hosts_network_is_joined_in_every_other_namespace() {
    let (w, _daemon) = running(r#"{"network": "host"}"#);
    let init = w.inspect("web").pid;
    let out = exec_ok(
        &w,
        &[
            "web",
            "sh",
            "-c",
            "for n in net mnt pid; do readlink /proc/self/ns/$n; done",
        ],
    );
    let link = |p: String| fs::read_link(p).unwrap().to_string_lossy().into_owned();
    let want = [
        link("/proc/self/ns/net".into()),
        link(format!("/proc/{init}/ns/mnt")),
        link(format!("/proc/{init}/ns/pid")),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

#[test]
fn a_container_under_berths_init_is_joined_and_its_command_is_no_exec() {
    // berth's init is the berth binary run inside the rootfs: static, as
    // tests/run builds it.
    let (w, _daemon) = running(r#"{"init": true}"#);
    let out = exec_ok(
        &w,
        &["web", "sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo"],
    );
    assert!(out.starts_with("berth-init "), "{out:?}");
    let mut c = Reaped(
        client(&w, &["exec", "web", "sh", "-c", "exec sleep 998"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn client"),
    );
    wait_execd(&w, "web", &["sleep", "998"]);
    // The command berth's init started is inside, not an exec.
    let execs = with_execs(&w, "web").execs;
    assert_eq!(execs.len(), 1, "{execs:?}");
    sys::kill_child(c.0.id(), libc::SIGTERM).unwrap();
    assert_eq!(c.wait_code(SHORT), 128 + libc::SIGTERM);
}

#[test]
fn inspect_lists_the_execd_process_and_the_pid_stays_the_inits() {
    let (w, _daemon) = running("{}");
    let init = with_execs(&w, "web");
    assert!(init.execs.is_empty(), "{init:?}");
    let mut c = Reaped(
        client(&w, &["exec", "web", "sh", "-c", "exec sleep 999"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn client"),
    );
    let execd = wait_execd(&w, "web", &["sleep", "999"]);
    let now = with_execs(&w, "web");
    assert_eq!(now.pid, init.pid, "inspect's pid is no longer the init's");
    assert_eq!(now.execs.len(), 1, "{now:?}");
    assert!(
        execd.started_at.as_deref().is_some_and(is_rfc3339),
        "{execd:?}"
    );
    // ps --json says the same.
    let ps = w.berth_ok(&["ps", "--json"]);
    assert!(ps.contains(&format!("\"pid\":{}", init.pid)), "{ps}");
    assert!(ps.contains("\"command\":[\"sleep\",\"999\"]"), "{ps}");
    // The init's own children are not exec'd processes (POLITE's sleeps).
    assert!(now.execs.iter().all(|e| e.command != ["sleep", "0.05"]));
    // Still listed by a new daemon, found from the kernel.
    drop(_daemon);
    let _daemon = w.start_daemon(&["--live-restore"]);
    let after = with_execs(&w, "web");
    assert_eq!(after.pid, init.pid);
    assert_eq!(after.execs.len(), 1, "{after:?}");
    assert_eq!(after.execs[0].pid, execd.pid);
    // Once it ends, it is gone from the list.
    sys::kill_child(c.0.id(), libc::SIGTERM).unwrap();
    c.wait_code(SHORT);
    wait_for(SHORT, "the exec'd process gone from inspect", || {
        with_execs(&w, "web").execs.is_empty()
    });
}

#[test]
fn exec_works_across_a_daemon_kill_9_and_restart() {
    let (w, mut daemon) = running("{}");
    let init = w.inspect("web").pid;
    // An exec under way when the daemon dies finishes without it.
    let mut cmd = client(
        &w,
        &[
            "exec",
            "-i",
            "web",
            "sh",
            "-c",
            "read x; echo got $x; exit 5",
        ],
    );
    let c = Reaped::spawn(cmd.stdin(Stdio::piped()));
    wait_execd(&w, "web", &["sh", "-c", "read x; echo got $x; exit 5"]);
    daemon.kill_9();
    let (code, out, err) = c.finish(Some(b"it\n".to_vec()));
    assert_eq!((code, out.as_str()), (5, "got it\n"), "{err}");
    // With no daemon, exec says so.
    let refused = w.berth(&["exec", "web", "true"]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(
        text(&refused).1.contains("daemon"),
        "{}",
        describe(&refused)
    );
    // A new daemon re-attaches the container; exec joins it as before.
    let _daemon = w.start_daemon(&["--live-restore"]);
    assert_eq!(w.inspect("web").pid, init);
    let out = exec_ok(&w, &["web", "sh", "-c", "hostname; id -u"]);
    assert_eq!(out, "web\n0\n");
}

#[test]
fn exec_into_a_stopped_or_unknown_container_fails_clearly() {
    let w = world();
    w.add_container("web", POLITE, ON_DEMAND);
    let _daemon = w.start_daemon(&[]);
    for (args, want) in [
        (&["exec", "nope", "true"][..], "no such container: nope"),
        (&["exec", "web", "true"][..], "container web is not running"),
    ] {
        let out = w.berth(args);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let (stdout, stderr) = text(&out);
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
    }
    // Once stopped again, the same.
    w.berth_ok(&["start", "web"]);
    w.wait_running("web");
    exec_ok(&w, &["web", "true"]);
    w.berth_ok(&["stop", "web"]);
    let out = w.berth(&["exec", "web", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out).1.contains("container web is not running"),
        "{}",
        describe(&out)
    );
    // Usage errors exit 2.
    let out = w.berth(&["exec", "web"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out).1.contains("a command is needed"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_socket_group_member_is_told_exec_needs_root_and_the_daemon_logs_a_request() {
    let w = world();
    w.add_container("web", POLITE, ON_DEMAND);
    w.write_daemon_json(r#"{"socket-group": 4242}"#);
    let daemon = w.start_daemon(&[]);
    w.berth_ok(&["start", "web"]);
    w.wait_running("web");
    // uid 65534 in the socket's group: the daemon answers, the join fails.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "65534", "--groups", "4242"])
        .args(["--inh-caps", "-all", "--bounding-set", "-all", "--"])
        .arg(BERTH)
        .arg("--socket")
        .arg(w.socket())
        .args(["exec", "web", "true"])
        .env_remove("BERTH_SOCKET")
        .current_dir("/");
    let out = w.run_client(cmd, SHORT);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let (stdout, stderr) = text(&out);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("berth: exec needs root: exec web: "),
        "{}",
        describe(&out)
    );
    // What the daemon saw is a request, and it says so.
    let line = daemon.wait_for_log_line(&["web: exec requested: [\"true\"]"]);
    assert!(!line.contains("ERROR"), "{line}");
}

#[test]
fn a_reader_that_goes_away_ends_the_command_as_in_a_pipeline() {
    let (w, _daemon) = running("{}");
    // berth exec web yes | head -n 1
    let mut c = Reaped(
        client(&w, &["exec", "web", "yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn client"),
    );
    let mut stdout = c.0.stdout.take().expect("stdout");
    // Read in a thread, so that a client that prints nothing fails the
    // test at the deadline instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = [0u8; 2];
        let got = stdout.read_exact(&mut first).map(|()| first);
        let _ = tx.send(got.map(|f| (f, stdout)));
    });
    let (first, stdout) = rx
        .recv_timeout(SHORT)
        .expect("output within the deadline")
        .expect("read");
    assert_eq!(&first, b"y\n");
    drop(stdout);
    assert_eq!(c.wait_code(SHORT), 128 + libc::SIGPIPE);
}

// ---- terminals ----

/// A pseudo-terminal pair of the host's devpts: (master, terminal).
fn open_pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: open with a constant path; the fd is new and ours.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    assert!(
        master >= 0,
        "open /dev/ptmx: {}",
        io::Error::last_os_error()
    );
    // SAFETY: just opened, owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER returns a new fd.
    let peer = unsafe {
        assert_eq!(
            libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock),
            0
        );
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    assert!(peer >= 0, "TIOCGPTPEER: {}", io::Error::last_os_error());
    // SAFETY: just opened, owned by nobody else.
    (master, unsafe { OwnedFd::from_raw_fd(peer) })
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize.
    let set = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(set, 0);
}

/// Whether the terminal is in raw mode (no echo, no canonical input).
fn is_raw(fd: &OwnedFd) -> bool {
    // SAFETY: an all-zero termios is valid storage; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr fills the termios the pointer names.
    let got = unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) };
    assert_eq!(got, 0);
    t.c_lflag & (libc::ECHO | libc::ICANON) == 0
}

/// What the test reads from its terminal's master side.
struct Screen {
    master: File,
    seen: String,
}

impl Screen {
    /// Reads until `want` has been seen (panics after `deadline`).
    fn wait_for(&mut self, want: &str, deadline: Duration) {
        let end = Instant::now() + deadline;
        let mut buf = [0u8; 4096];
        while !self.seen.contains(want) {
            match self.master.read(&mut buf) {
                Ok(0) => panic!("terminal closed before {want:?}; seen {:?}", self.seen),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("read terminal before {want:?}: {e}; seen {:?}", self.seen),
            }
            assert!(
                Instant::now() < end,
                "{want:?} not seen within {deadline:?}; seen {:?}",
                self.seen
            );
        }
    }
}

#[test]
fn a_terminal_inside_the_container_with_its_size_and_resizes() {
    let (w, _daemon) = running("{}");
    let (master, terminal) = open_pty();
    set_size(&terminal, 37, 123);
    let script = "test -t 0 && test -t 1 && test -t 2 && echo all-ttys; tty; stty size; \
                  trap 'stty size; exit 9' WINCH; echo ready; \
                  while :; do read line && echo \"line:$line\"; done";
    let mut cmd = client(&w, &["exec", "-it", "web", "sh", "-c", script]);
    let dup = |f: &OwnedFd| Stdio::from(f.try_clone().expect("dup"));
    let mut c = Reaped(
        cmd.stdin(dup(&terminal))
            .stdout(dup(&terminal))
            .stderr(dup(&terminal))
            .spawn()
            .expect("spawn client"),
    );
    let mut screen = Screen {
        master: File::from(master),
        seen: String::new(),
    };
    screen.wait_for("ready", SHORT);
    assert!(screen.seen.contains("all-ttys"), "{:?}", screen.seen);
    assert!(screen.seen.contains("37 123"), "{:?}", screen.seen);
    // The terminal is the container's own, not ours.
    assert!(screen.seen.contains("/dev/pts/"), "{:?}", screen.seen);
    let execd = wait_execd(&w, "web", &["sh", "-c", script]);
    let inside = fs::metadata(format!("/proc/{}/fd/0", execd.pid)).unwrap();
    let ours = fs::metadata(format!("/proc/self/fd/{}", terminal.as_raw_fd())).unwrap();
    assert_ne!(
        inside.dev(),
        ours.dev(),
        "the command is on the caller's devpts"
    );
    // Raw mode on our terminal while it runs: input goes through as typed.
    assert!(
        is_raw(&terminal),
        "the caller's terminal is not in raw mode"
    );
    screen.master.write_all(b"hello\r").unwrap();
    screen.wait_for("line:hello", SHORT);
    // A resize of our terminal reaches the command as SIGWINCH and the
    // new size.
    set_size(&terminal, 50, 160);
    sys::kill_child(c.0.id(), libc::SIGWINCH).unwrap();
    screen.wait_for("50 160", SHORT);
    assert_eq!(c.wait_code(SHORT), 9);
    // Our terminal is as it was.
    assert!(
        !is_raw(&terminal),
        "the caller's terminal was left in raw mode"
    );
}

#[test]
fn piped_input_to_a_terminal_ends_with_its_eof() {
    let (w, _daemon) = running("{}");
    // printf 'one\ntwo\n' | berth exec -it web sh -c 'cat; echo end'
    // (a command that leaves the terminal's modes alone: an interactive
    // shell switching to its line editor may flush input typed ahead).
    let mut cmd = client(&w, &["exec", "-it", "web", "sh", "-c", "cat; echo end"]);
    let (code, out, err) =
        Reaped::spawn(cmd.stdin(Stdio::piped())).finish(Some(b"one\ntwo\n".to_vec()));
    assert_eq!(code, 0, "{out}{err}");
    // The terminal echoes each line, cat writes it again, then the EOF.
    assert!(out.ends_with("two\r\nend\r\n"), "{out:?}{err}");
    assert_eq!(out.matches("one\r\n").count(), 2, "{out:?}");
}

#[test]
fn a_terminal_without_i_gets_no_input() {
    let (w, _daemon) = running("{}");
    let (master, terminal) = open_pty();
    let mut cmd = client(
        &w,
        &[
            "exec",
            "-t",
            "web",
            "sh",
            "-c",
            "tty >/dev/null && echo tty; stty size",
        ],
    );
    let dup = |f: &OwnedFd| Stdio::from(f.try_clone().expect("dup"));
    let mut c = Reaped(
        cmd.stdin(Stdio::null())
            .stdout(dup(&terminal))
            .stderr(dup(&terminal))
            .spawn()
            .expect("spawn client"),
    );
    let mut screen = Screen {
        master: File::from(master),
        seen: String::new(),
    };
    // Our terminal had no size: the default.
    screen.wait_for("24 80", SHORT);
    assert!(screen.seen.contains("tty"), "{:?}", screen.seen);
    assert_eq!(c.wait_code(SHORT), 0);
}
