//! The harness every integration test uses: a `World` is one test's private
//! berth installation (temp dir with config, state, run and log dirs, a
//! busybox rootfs, a unique cgroup parent and a cgroup2 directory of its
//! own in which its daemons start), plus helpers to run the real `berth`
//! binary as daemon and client and to read what it reports.
//!
//! Dropping a `World` (also when the test panics) SIGKILLs every process in
//! its cgroups, removes those cgroups, detaches mounts under its dir and
//! deletes the dir. Processes are only ever found through the world's own
//! cgroups, never by name.
//!
//! Tests never sleep for a fixed time: they `wait_for` a condition with a
//! deadline.

// Each test binary uses a different part of the harness.
#![allow(dead_code, unused_imports)]

pub mod cgroups;
pub mod images;
pub mod inspect;
pub mod json;
pub mod mender;
pub mod netlab;
pub mod openrc;
pub mod records;
pub mod rootfs;
pub mod sys;
pub mod vm;

use std::cell::Cell;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nanoserde::DeJson;

pub use inspect::{Inspect, is_rfc3339};

/// The binary under test.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// The binary the worlds' daemons and clients run: `BERTH_BIN` if set
/// (e.g. the static musl build, for a benchmark), else `BERTH`.
pub fn berth_bin() -> PathBuf {
    std::env::var_os("BERTH_BIN").map_or_else(|| PathBuf::from(BERTH), PathBuf::from)
}
/// The package version `berth version` must print.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Deadline for things that should be quick (a daemon answering, a start).
pub const SHORT: Duration = Duration::from_secs(10);
/// Deadline for things that take work (floods, back-offs, stop timeouts).
pub const LONG: Duration = Duration::from_secs(60);

/// Numbers the worlds of this test binary.
static WORLDS: AtomicUsize = AtomicUsize::new(0);

/// A container command that exits 0 at once on SIGTERM and otherwise
/// runs until stopped.
pub const POLITE: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 0.05; done",
];

/// Asserts `cond` holds every time it is checked for `span` (a negative
/// check: nothing may happen in that window).
pub fn holds_for(span: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        assert!(cond(), "{what} stopped holding");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` when
/// `deadline` has passed first.
pub fn wait_for(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A client or daemon process whose stdout and stderr go to files (so it
/// can never block on a pipe nobody reads).
pub struct Spawned {
    pub child: Child,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    what: String,
}

impl Spawned {
    /// Waits for the exit (killing it and panicking after `deadline`) and
    /// returns what it printed.
    pub fn finish(mut self, deadline: Duration) -> Output {
        let status = wait_child(&mut self.child, deadline).unwrap_or_else(|| {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("`{}` still running after {deadline:?}", self.what)
        });
        Output {
            status,
            stdout: fs::read(&self.stdout_path).unwrap_or_default(),
            stderr: fs::read(&self.stderr_path).unwrap_or_default(),
        }
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_child(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running `berth daemon`. Dropping it SIGKILLs and reaps it (its
/// containers are the world's to clean up); if the test is panicking, its
/// stderr is printed first.
pub struct Daemon {
    process: Spawned,
    status: Option<ExitStatus>,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Everything the daemon logged so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.process.stderr_path).unwrap_or_default()
    }

    /// Waits until the daemon's stderr has a line containing every one of
    /// `needles`, and returns that line.
    pub fn wait_for_log_line(&self, needles: &[&str]) -> String {
        let mut found = String::new();
        wait_for(
            SHORT,
            &format!("a daemon log line with {needles:?}"),
            || match self
                .stderr()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                Some(line) => {
                    found = line.to_string();
                    true
                }
                None => false,
            },
        );
        found
    }

    /// Sends `signal` to the daemon (it is our child, unreaped until it
    /// exits, so its pid is safe to use).
    pub fn signal(&mut self, signal: i32) {
        assert!(
            self.try_status().is_none(),
            "daemon already exited: {:?}",
            self.status
        );
        sys::kill_child(self.pid(), signal).expect("signal the daemon");
    }

    /// SIGKILLs the daemon and reaps it, leaving its containers to fend for
    /// themselves.
    pub fn kill_9(&mut self) {
        if self.try_status().is_none() {
            sys::kill_child(self.pid(), libc::SIGKILL).expect("kill -9 the daemon");
        }
        self.wait_exit(SHORT);
    }

    /// Waits for the daemon to exit by itself; panics after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = wait_child(&mut self.process.child, deadline).unwrap_or_else(|| {
            panic!(
                "daemon still running after {deadline:?}; stderr:\n{}",
                self.stderr()
            )
        });
        self.status = Some(status);
        status
    }

    /// The exit status if the daemon has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.process.try_status();
        }
        self.status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- berth daemon {} stderr ----\n{}",
                self.pid(),
                self.stderr()
            );
        }
        if self.try_status().is_none() {
            let _ = sys::kill_child(self.pid(), libc::SIGKILL);
            let _ = self.process.child.wait();
        }
    }
}

/// One test's private berth installation; see the module comment.
pub struct World {
    /// The temp dir everything lives in.
    pub root: PathBuf,
    /// The relative cgroup-parent written into daemon.json.
    pub cgroup_parent: String,
    /// The world's own cgroup2 directory; daemons start in it.
    cgroup2_dir: PathBuf,
    /// The cgroup-parent's directory in every hierarchy, if berth makes it
    /// below this process's own cgroup rather than the daemon's.
    parent_dirs: Vec<PathBuf>,
    /// Numbers the output files of spawned processes.
    spawned: Cell<usize>,
    cleaned: bool,
}

impl World {
    /// A fresh world with the default daemon.json written. Panics (pointing
    /// at tests/run) when no static busybox is installed.
    pub fn new() -> World {
        let busybox = rootfs::static_busybox().unwrap_or_else(|e| {
            panic!("{e}; run tests/run, which installs Debian's busybox-static")
        });
        let hierarchies = cgroups::hierarchies().expect("read /proc/self/{mountinfo,cgroup}");
        let cgroup2 = hierarchies.iter().find(|h| h.v2).unwrap_or_else(|| {
            panic!("no cgroup2 hierarchy in /proc/self/mountinfo ({hierarchies:?})")
        });
        let pid = std::process::id();
        let n = WORLDS.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let name = format!("berth-test-{pid}-{n}-{nanos}");
        let cgroup_parent = format!("berth-t{pid}-{n}-{}", nanos % 1_000_000);
        let world = World {
            root: PathBuf::from("/tmp").join(&name),
            cgroup2_dir: cgroup2.own_dir().join(&name),
            parent_dirs: hierarchies
                .iter()
                .map(|h| h.own_dir().join(&cgroup_parent))
                .collect(),
            cgroup_parent,
            spawned: Cell::new(0),
            cleaned: false,
        };
        // From here on a panic drops `world`, which removes what exists.
        fs::create_dir(&world.root).expect("create the world dir");
        for dir in [
            world.containers_dir(),
            world.state_dir(),
            world.run_dir(),
            world.log_dir(),
        ] {
            fs::create_dir_all(dir).expect("create world dirs");
        }
        fs::create_dir_all(world.host_dir()).expect("create the host dir");
        fs::create_dir_all(world.out_dir()).expect("create the output dir");
        rootfs::build(&world.rootfs(), &busybox).expect("build the busybox rootfs");
        fs::create_dir(&world.cgroup2_dir)
            .unwrap_or_else(|e| panic!("create cgroup {}: {e}", world.cgroup2_dir.display()));
        world.write_daemon_json("{}");
        world
    }

    // ---- paths ----

    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }
    pub fn config_path(&self) -> PathBuf {
        self.etc().join("daemon.json")
    }
    pub fn containers_dir(&self) -> PathBuf {
        self.etc().join("containers")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("berth.sock")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }
    /// log-dir/NAME/container.log
    pub fn container_log(&self, name: &str) -> PathBuf {
        self.log_dir().join(name).join("container.log")
    }
    /// The busybox rootfs containers run in.
    pub fn rootfs(&self) -> PathBuf {
        self.root.join("rootfs")
    }
    /// A host dir for tests to bind-mount into containers (see `data_mount`).
    pub fn host_dir(&self) -> PathBuf {
        self.root.join("host")
    }
    /// Where spawned processes' stdout and stderr files go.
    pub fn out_dir(&self) -> PathBuf {
        self.root.join("out")
    }
    /// The world's own cgroup2 directory (daemons start in it).
    pub fn cgroup2_dir(&self) -> &Path {
        &self.cgroup2_dir
    }
    /// Every cgroup directory that holds the world's processes: its cgroup2
    /// dir and the cgroup-parent in every hierarchy.
    pub fn cgroup_roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.cgroup2_dir.clone()];
        roots.extend(self.parent_dirs.iter().cloned());
        roots
    }

    // ---- configuration ----

    /// The default test daemon.json: `world_daemon_keys` plus live restore
    /// off, debug logging and a short shutdown timeout.
    pub fn default_daemon_json(&self) -> String {
        let options = r#"{"live-restore": false, "log-level": "debug", "shutdown-timeout": 5}"#;
        json::merge(&self.world_daemon_keys(), options)
    }

    /// The daemon.json keys that keep a daemon inside this world: absolute
    /// paths into it and its cgroup-parent.
    pub fn world_daemon_keys(&self) -> String {
        let path = |p: PathBuf| json::string(p.to_str().expect("utf-8 path"));
        format!(
            r#"{{"containers-dir": {}, "state-dir": {}, "run-dir": {}, "socket": {}, "log-dir": {}, "cgroup-parent": {}}}"#,
            path(self.containers_dir()),
            path(self.state_dir()),
            path(self.run_dir()),
            path(self.socket()),
            path(self.log_dir()),
            json::string(&self.cgroup_parent),
        )
    }

    /// Writes daemon.json: the default with the members of the JSON object
    /// `extra` added or replacing defaults, e.g. `{"live-restore": true}`.
    pub fn write_daemon_json(&self, extra: &str) {
        self.write_file(
            &self.config_path(),
            &json::merge(&self.default_daemon_json(), extra),
        );
    }

    /// Writes containers-dir/NAME.json with exactly `json` (temp + rename,
    /// so a daemon never reads half a file).
    pub fn write_container(&self, name: &str, json: &str) {
        self.write_file(&self.containers_dir().join(format!("{name}.json")), json);
    }

    /// A container definition in the world's rootfs running `command`,
    /// with the members of the JSON object `extra` added or replacing.
    pub fn container_json(&self, command: &[&str], extra: &str) -> String {
        let base = format!(
            "{{\"rootfs\": {}, \"command\": {}}}",
            json::string(self.rootfs().to_str().expect("utf-8 path")),
            json::string_array(command),
        );
        json::merge(&base, extra)
    }

    /// `write_container(name, container_json(command, extra))`.
    pub fn add_container(&self, name: &str, command: &[&str], extra: &str) {
        self.write_container(name, &self.container_json(command, extra));
    }

    /// A `mounts` entry binding the world's host dir read-write at /data.
    pub fn data_mount(&self) -> String {
        format!(
            "{{\"source\": {}, \"target\": \"/data\", \"readonly\": false}}",
            json::string(self.host_dir().to_str().expect("utf-8 path"))
        )
    }

    /// Writes `text` to `path` through a dot-named temp file and a rename.
    pub fn write_file(&self, path: &Path, text: &str) {
        let name = path.file_name().expect("file name").to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
    }

    // ---- processes ----

    /// Spawns `cmd` inside the world's cgroup2 dir, stdin from /dev/null,
    /// stdout and stderr into numbered files under `out_dir()`.
    pub fn spawn_in_world(&self, cmd: Command, what: &str) -> Spawned {
        self.spawn_in_cgroup(cmd, what, &self.cgroup2_dir)
    }

    /// `spawn_in_world`, in `cgroup2_dir`: a cgroup2 directory at or below
    /// the world's own, so cleanup still finds what it holds.
    pub fn spawn_in_cgroup(&self, cmd: Command, what: &str, cgroup2_dir: &Path) -> Spawned {
        self.spawn_in_cgroup_then(cmd, what, cgroup2_dir, |_| {})
    }

    /// `spawn_in_cgroup`, with `last` adding the last pre-exec steps (after
    /// the cgroup is joined).
    pub fn spawn_in_cgroup_then(
        &self,
        mut cmd: Command,
        what: &str,
        cgroup2_dir: &Path,
        last: impl FnOnce(&mut Command),
    ) -> Spawned {
        assert!(
            cgroup2_dir.starts_with(&self.cgroup2_dir),
            "{} is outside the world's cgroup2 dir",
            cgroup2_dir.display()
        );
        let n = self.spawned.get();
        self.spawned.set(n + 1);
        let stdout_path = self.out_dir().join(format!("{n}.stdout"));
        let stderr_path = self.out_dir().join(format!("{n}.stderr"));
        let file =
            |p: &Path| File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        cmd.stdin(Stdio::null())
            .stdout(file(&stdout_path))
            .stderr(file(&stderr_path));
        sys::join_cgroup_before_exec(&mut cmd, &cgroup2_dir.join("cgroup.procs"));
        last(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Spawned {
            child,
            stdout_path,
            stderr_path,
            what: what.to_string(),
        }
    }

    /// `berth daemon --config <world config> ARGS`, not waiting for it.
    pub fn spawn_daemon(&self, args: &[&str]) -> Daemon {
        self.spawn_daemon_with(args, |_| {})
    }

    /// `spawn_daemon`, with `setup` applied to the command first (e.g. to
    /// give the daemon something to inherit, see `sys::inherit_before_exec`).
    pub fn spawn_daemon_with(&self, args: &[&str], setup: impl FnOnce(&mut Command)) -> Daemon {
        self.spawn_daemon_in_with(&self.cgroup2_dir, args, setup)
    }

    /// `spawn_daemon`, in a cgroup2 directory below the world's own.
    pub fn spawn_daemon_in(&self, cgroup2_dir: &Path, args: &[&str]) -> Daemon {
        self.spawn_daemon_in_with(cgroup2_dir, args, |_| {})
    }

    fn spawn_daemon_in_with(
        &self,
        cgroup2_dir: &Path,
        args: &[&str],
        setup: impl FnOnce(&mut Command),
    ) -> Daemon {
        let mut cmd = Command::new(berth_bin());
        cmd.env_remove("BERTH_SOCKET")
            .arg("daemon")
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .current_dir("/");
        setup(&mut cmd);
        let process = self.spawn_in_cgroup(cmd, &format!("berth daemon {args:?}"), cgroup2_dir);
        Daemon {
            process,
            status: None,
        }
    }

    /// `spawn_daemon`, started with the file mode creation mask `umask`
    /// (a shell sets it, then execs the daemon in its place).
    pub fn spawn_daemon_with_umask(&self, umask: u32, args: &[&str]) -> Daemon {
        let mut cmd = Command::new("/bin/sh");
        cmd.env_remove("BERTH_SOCKET")
            .arg("-c")
            .arg(format!("umask {umask:03o} && exec \"$0\" \"$@\""))
            .arg(berth_bin())
            .arg("daemon")
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .current_dir("/");
        let what = format!("umask {umask:03o}; berth daemon {args:?}");
        let process = self.spawn_in_world(cmd, &what);
        Daemon {
            process,
            status: None,
        }
    }

    /// Starts the daemon and waits until `berth ps` answers; panics with the
    /// daemon's stderr if it exits or does not answer within `SHORT`.
    pub fn start_daemon(&self, args: &[&str]) -> Daemon {
        self.start_daemon_with(args, |_| {})
    }

    /// `start_daemon`, with `setup` applied to the command first.
    pub fn start_daemon_with(&self, args: &[&str], setup: impl FnOnce(&mut Command)) -> Daemon {
        let mut daemon = self.spawn_daemon_with(args, setup);
        let end = Instant::now() + SHORT;
        loop {
            if let Some(status) = daemon.try_status() {
                panic!(
                    "berth daemon exited with {status} before answering; stderr:\n{}",
                    daemon.stderr()
                );
            }
            if self.berth(&["ps"]).status.success() {
                return daemon;
            }
            if Instant::now() > end {
                panic!(
                    "berth daemon did not answer `ps` within {SHORT:?}; stderr:\n{}",
                    daemon.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A `berth` command with no arguments yet, BERTH_SOCKET removed and
    /// "/" as working directory.
    pub fn client_command(&self) -> Command {
        let mut cmd = Command::new(berth_bin());
        cmd.env_remove("BERTH_SOCKET").current_dir("/");
        cmd
    }

    /// Spawns `berth --config <world config> ARGS` without waiting.
    pub fn spawn_berth(&self, args: &[&str]) -> Spawned {
        let mut cmd = self.client_command();
        cmd.arg("--config").arg(self.config_path()).args(args);
        self.spawn_in_world(cmd, &format!("berth {}", args.join(" ")))
    }

    /// Runs `berth --config <world config> ARGS` to completion (panics if it
    /// takes longer than `LONG`).
    pub fn berth(&self, args: &[&str]) -> Output {
        self.spawn_berth(args).finish(LONG)
    }

    /// Runs a prepared client command to completion within `deadline`.
    pub fn run_client(&self, cmd: Command, deadline: Duration) -> Output {
        self.spawn_in_world(cmd, "berth client").finish(deadline)
    }

    /// Runs `berth ARGS`, asserts exit 0, returns stdout.
    pub fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `berth inspect NAME`, or None if the command fails. Panics when it
    /// succeeds but prints no valid inspect object.
    pub fn try_inspect(&self, name: &str) -> Option<Inspect> {
        let out = self.berth(&["inspect", name]);
        if !out.status.success() {
            return None;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Some(Inspect::parse(&stdout).unwrap_or_else(|e| panic!("inspect {name}: {e}")))
    }

    /// `berth inspect NAME`, asserted to succeed and parse.
    pub fn inspect(&self, name: &str) -> Inspect {
        let stdout = self.berth_ok(&["inspect", name]);
        let inspect = Inspect::parse(&stdout).unwrap_or_else(|e| panic!("inspect {name}: {e}"));
        assert_eq!(inspect.name, name, "inspect {name} names another container");
        inspect
    }

    /// `berth ps --json`, parsed.
    pub fn ps(&self) -> Vec<Inspect> {
        let stdout = self.berth_ok(&["ps", "--json"]);
        let list = Vec::<Inspect>::deserialize_json(stdout.trim())
            .unwrap_or_else(|e| panic!("ps --json: {e}: {stdout}"));
        for inspect in &list {
            inspect
                .check()
                .unwrap_or_else(|e| panic!("ps --json: {e}: {stdout}"));
        }
        list
    }

    /// Waits until NAME's inspect satisfies `cond` and returns it; on
    /// timeout panics naming `what` and showing the last inspect seen.
    pub fn wait_inspect(
        &self,
        name: &str,
        what: &str,
        deadline: Duration,
        mut cond: impl FnMut(&Inspect) -> bool,
    ) -> Inspect {
        let end = Instant::now() + deadline;
        loop {
            let last = self.try_inspect(name);
            match last {
                Some(inspect) if cond(&inspect) => return inspect,
                _ if Instant::now() > end => {
                    panic!(
                        "timed out after {deadline:?} waiting for {name} {what}; last inspect: {last:?}"
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Waits until NAME's status is `status`, and returns that inspect.
    pub fn wait_status(&self, name: &str, status: &str, deadline: Duration) -> Inspect {
        self.wait_inspect(name, &format!("to be {status}"), deadline, |i| {
            i.status == status
        })
    }

    /// Waits until NAME runs with a pid, and returns that inspect. (That
    /// "running" always comes with a pid is checked by its own test.)
    pub fn wait_running(&self, name: &str) -> Inspect {
        self.wait_inspect(name, "to run with a pid", SHORT, Inspect::is_running)
    }

    /// `berth logs NAME ARGS`, asserted to succeed: (stdout, stderr).
    pub fn logs(&self, name: &str, args: &[&str]) -> (String, String) {
        let mut all = vec!["logs", name];
        all.extend_from_slice(args);
        let out = self.berth(&all);
        assert!(
            out.status.success(),
            "berth {all:?} failed: {}",
            describe(&out)
        );
        (
            String::from_utf8(out.stdout).expect("utf-8 logs"),
            String::from_utf8(out.stderr).expect("utf-8 logs"),
        )
    }

    /// `berth start NAME --wait`: the exit code it returns.
    pub fn start_wait(&self, name: &str) -> i32 {
        let out = self.berth(&["start", name, "--wait"]);
        out.status
            .code()
            .unwrap_or_else(|| panic!("start --wait killed: {}", describe(&out)))
    }

    /// Every pid in the world's cgroups right now.
    pub fn procs(&self) -> Vec<i32> {
        cgroups::procs_below(&self.cgroup_roots())
    }

    // ---- teardown ----

    /// Kills every process in the world's cgroups, removes those cgroups,
    /// detaches mounts under the world dir and removes it. Idempotent.
    pub fn cleanup(&mut self) -> Result<(), String> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let roots = self.cgroup_roots();
        let mut errors = Vec::new();
        if let Err(e) = cgroups::kill_all_below(&roots, SHORT) {
            errors.push(e);
        }
        if let Err(e) = cgroups::remove_all_below(&roots, SHORT) {
            errors.push(e);
        }
        if let Err(e) = self.unmount_all() {
            errors.push(e);
        }
        if self.root.exists() {
            if let Err(e) = fs::remove_dir_all(&self.root) {
                errors.push(format!("remove {}: {e}", self.root.display()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Detaches every mount at or below the world dir, deepest first.
    fn unmount_all(&self) -> Result<(), String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let mut mine: Vec<PathBuf> = cgroups::mount_points(&mountinfo)
            .into_iter()
            .filter(|p| p.starts_with(&self.root))
            .collect();
        mine.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        mine.dedup();
        for point in mine {
            match sys::umount_detach(&point) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {} // already gone
                Err(e) => return Err(format!("umount {}: {e}", point.display())),
            }
        }
        Ok(())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            if std::thread::panicking() {
                eprintln!("world cleanup failed too: {e}");
            } else {
                panic!("world cleanup failed: {e}");
            }
        }
    }
}

/// A process's exit status and output, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The daemon's spare monitors: its children whose command line is
/// exactly `berth monitor` (started ahead, not yet any container's).
pub fn spare_monitors(daemon_pid: u32) -> Vec<u32> {
    mender::children_of(daemon_pid)
        .into_iter()
        .filter(|(_, argv)| argv == &["berth", "monitor"])
        .map(|(pid, _)| pid)
        .collect()
}

/// Whether the process `pid` that started at `start_time` (field 22 of
/// /proc/PID/stat) is gone: no such pid, another process, or a zombie.
pub fn is_gone(pid: i32, start_time: u64) -> bool {
    match proc_stat(pid) {
        Ok((state, start)) => start != start_time || state == 'Z' || state == 'X',
        Err(_) => true,
    }
}

/// The value of `key:` in /proc/PID/status text.
pub fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} line in:\n{status}"))
}

/// A hexadecimal `key:` of /proc/PID/status (a capability set).
pub fn hex_field(status: &str, key: &str) -> u64 {
    let v = status_field(status, key);
    u64::from_str_radix(v, 16).unwrap_or_else(|e| panic!("{key} {v:?}: {e}"))
}

/// A small pseudo-random sequence (xorshift), seeded from the clock; the
/// seed is printed so a failure can be replayed with BERTH_TEST_SEED.
pub fn rng() -> impl FnMut(u64) -> u64 {
    let seed = std::env::var("BERTH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("BERTH_TEST_SEED={seed}");
    let mut x = seed;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n.max(1)
    }
}

/// One request on the daemon's socket; the answer line.
pub fn api_call(w: &World, request: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(w.socket()).expect("connect");
    stream
        .write_all(format!("{request}\n").as_bytes())
        .expect("send");
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("answer");
    line
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// (state, start time) from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> io::Result<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("odd /proc/{pid}/stat: {stat}"),
        )
    };
    let state = fields
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(bad)?;
    // Field 22 overall is index 19 after the state (field 3).
    let start = fields
        .get(19)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((state, start))
}

/// A field of /proc/PID/smaps_rollup in KiB: "Rss", "Pss" (shared pages
/// divided among their users), "Private_Dirty"; 0 if there is none.
pub fn mem_kib(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
