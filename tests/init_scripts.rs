//! The init integration in config/ through the real tools: the init.d
//! script with Debian's start-stop-daemon and with busybox's (in a
//! busybox-only PATH, as on a small device), the OpenRC service with
//! Debian's openrc-run (extracted, never installed, in a private mount
//! namespace: see common::openrc), and the systemd unit checked by
//! `systemd-analyze verify` and its command lines run as systemd runs them.
//!
//! Every service goes through the same life: start, status, reload that
//! changes the set of containers, an upgrade (a new binary renamed over
//! the installed one, so the running daemon's /proc/PID/exe reads
//! "... (deleted)") then restart, with live restore keeping every
//! container's pid, a crash (kill -9) that status reports, and stop. The
//! daemon runs from a copy of the binary under test in the world's dir,
//! with the world's daemon.json, pidfile and log file.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::openrc;
use common::*;

/// A process by identity: pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: i32,
    start: u64,
}

impl Proc {
    fn of(pid: i32) -> Proc {
        let (_, start) = proc_stat(pid).unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
        Proc { pid, start }
    }

    fn gone(&self) -> bool {
        is_gone(self.pid, self.start)
    }

    fn exe(&self) -> String {
        fs::read_link(format!("/proc/{}/exe", self.pid))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Whether exec of `path` fails with ETXTBSY right now: a process forked
/// by another test thread while the file was open for writing still holds
/// that fd until it execs.
fn text_file_busy(path: &Path) -> bool {
    matches!(
        Command::new(path).arg("version").output(),
        Err(e) if e.raw_os_error() == Some(libc::ETXTBSY)
    )
}

/// Installs the binary under test at `dest` as a package manager does:
/// a new file, renamed over the old one.
fn install_binary(dest: &Path) {
    let staged = dest.with_file_name(".berth.new");
    fs::copy(BERTH, &staged).unwrap_or_else(|e| panic!("copy {BERTH}: {e}"));
    wait_for(SHORT, "the copied binary to be executable", || {
        !text_file_busy(&staged)
    });
    fs::rename(&staged, dest).unwrap();
}

/// A world with live restore on and the binary installed in its bin/.
fn live_world() -> (World, PathBuf) {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    let bin = w.root.join("bin");
    fs::create_dir(&bin).unwrap();
    let installed = bin.join("berth");
    install_binary(&installed);
    (w, installed)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One service manager's view of the daemon, as the lifecycle drives it.
struct Service<'a> {
    w: &'a World,
    what: String,
    /// Runs the service's VERB to completion.
    run: Box<dyn Fn(&str) -> Output + 'a>,
    binary: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    /// `status` once the daemon died without removing its pidfile.
    crashed_status: i32,
}

impl Service<'_> {
    /// Runs VERB; (exit code, everything it printed).
    fn verb(&self, verb: &str) -> (i32, String) {
        let out = (self.run)(verb);
        let code = out
            .status
            .code()
            .unwrap_or_else(|| panic!("{} {verb} killed: {}", self.what, describe(&out)));
        (code, text(&out))
    }

    /// Runs VERB and asserts it exits with `code`; returns its output.
    fn expect(&self, verb: &str, code: i32) -> String {
        let (got, out) = self.verb(verb);
        assert_eq!(
            got,
            code,
            "{} {verb}: exit {got}, not {code}:\n{out}\n--- daemon log ---\n{}",
            self.what,
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        out
    }

    /// The daemon the pidfile names, which must be running the binary.
    fn daemon(&self) -> Proc {
        let text = fs::read_to_string(&self.pidfile)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.pidfile.display()));
        let pid = text.trim().parse().expect("a pid in the pidfile");
        let daemon = Proc::of(pid);
        assert!(
            self.w.procs().contains(&pid),
            "pid {pid} of the pidfile is not in the world's cgroups"
        );
        daemon
    }

    /// Where every container runs now, by name.
    fn containers(&self, names: &[&str]) -> Vec<(String, Proc)> {
        names
            .iter()
            .map(|n| (n.to_string(), Proc::of(self.w.wait_running(n).pid as i32)))
            .collect()
    }

    fn assert_kept(&self, before: &[(String, Proc)], when: &str) {
        for (name, p) in before {
            assert!(!p.gone(), "{name} ({p:?}) is gone {when}");
            let now = self.w.wait_running(name);
            assert_eq!(now.pid as i32, p.pid, "{name} has another pid {when}");
        }
    }
}

/// SIGKILLs `daemon`, a process of the world's this test started through
/// an init script, through a pidfd after checking it is still that process.
fn kill_9(w: &World, daemon: Proc) {
    assert!(w.procs().contains(&daemon.pid), "{daemon:?} is not ours");
    let pidfd = sys::pidfd_open(daemon.pid).expect("pidfd of the daemon");
    assert_eq!(Proc::of(daemon.pid), daemon, "the pid was reused");
    sys::pidfd_send_signal(&pidfd, libc::SIGKILL).expect("kill -9 the daemon");
    wait_for(SHORT, "the killed daemon to be gone", || daemon.gone());
}

/// start, status, reload with a new container, upgrade then restart,
/// crash, stop: see the module comment.
fn lifecycle(s: &Service) {
    let w = s.w;
    w.add_container("one", POLITE, "{}");
    s.expect("status", 3);
    s.expect("stop", 0);

    let out = s.expect("start", 0);
    let first = s.daemon();
    assert!(w.berth(&["ps"]).status.success(), "no answer after {out}");
    assert_eq!(first.exe(), s.binary.to_string_lossy());
    let log = fs::read_to_string(&s.log).unwrap_or_default();
    assert!(
        log.contains("ready on"),
        "the daemon's log is not in {}: {log:?}",
        s.log.display()
    );
    let out = s.expect("status", 0);
    assert!(
        out.contains(&first.pid.to_string()),
        "status names no pid: {out}"
    );
    s.expect("start", 0);
    assert_eq!(s.daemon(), first, "a second start started another daemon");
    let one = s.containers(&["one"]);

    w.add_container("two", POLITE, "{}");
    s.expect("reload", 0);
    let mut running = s.containers(&["one", "two"]);
    s.assert_kept(&one, "after a reload");

    // A configuration with a problem: the script names it and sends no
    // SIGHUP (the daemon's log shows no reload); fixed, it reloads again.
    w.add_container("bad", POLITE, r#"{"memory": "12Q"}"#);
    let out = s.expect("checkconfig", 1);
    assert!(
        out.contains("bad.json") && out.contains("memory"),
        "checkconfig does not name the problem: {out}"
    );
    let reloads = || {
        fs::read_to_string(&s.log)
            .unwrap_or_default()
            .matches("reload")
            .count()
    };
    let before = reloads();
    let out = s.verb("reload");
    assert_ne!(
        out.0, 0,
        "reload of a bad configuration succeeded: {}",
        out.1
    );
    assert!(
        out.1.contains("bad.json") && out.1.contains("memory"),
        "reload does not name the problem: {}",
        out.1
    );
    // One round trip through the event loop, which takes a pending SIGHUP
    // first, before the log is read again.
    assert!(w.berth(&["ps"]).status.success());
    assert_eq!(reloads(), before, "the daemon was sent SIGHUP: {}", out.1);
    let (code, out) = s.verb("restart");
    assert_ne!(code, 0, "restart with a bad configuration succeeded: {out}");
    assert!(
        out.contains("bad.json"),
        "restart does not name the problem: {out}"
    );
    assert_eq!(
        s.daemon(),
        first,
        "a refused restart stopped the daemon: {out}"
    );
    fs::remove_file(w.containers_dir().join("bad.json")).expect("remove bad.json");
    s.expect("checkconfig", 0);
    s.assert_kept(&running, "after a refused reload");

    // The upgrade: the running daemon's binary is now a deleted file.
    install_binary(&s.binary);
    assert!(
        first.exe().ends_with(" (deleted)"),
        "the daemon's exe after the upgrade: {:?}",
        first.exe()
    );
    let out = s.expect("status", 0);
    assert!(
        out.contains(&first.pid.to_string()),
        "status after the upgrade: {out}"
    );
    w.add_container("three", POLITE, "{}");
    s.expect("reload", 0);
    running.extend(s.containers(&["three"]));
    s.expect("restart", 0);
    let second = s.daemon();
    assert_ne!(second, first, "restart kept the old daemon");
    assert!(first.gone(), "the old daemon still runs after restart");
    assert_eq!(
        second.exe(),
        s.binary.to_string_lossy(),
        "restart runs the new binary"
    );
    s.assert_kept(&running, "after the upgrade and restart");

    // A crash leaves the pidfile behind: status says so, restart recovers.
    kill_9(w, second);
    s.expect("status", s.crashed_status);
    s.expect("restart", 0);
    let third = s.daemon();
    assert_ne!(third, second);
    s.assert_kept(&running, "after a crash and restart");

    let out = s.expect("stop", 0);
    assert!(third.gone(), "the daemon still runs after stop: {out}");
    assert!(!s.pidfile.exists(), "stop left the pidfile");
    s.expect("status", 3);
    for (name, p) in &running {
        assert!(!p.gone(), "stop took {name} down (live restore is on)");
    }
    s.expect("stop", 0);
    let (code, out) = s.verb("reload");
    assert_ne!(code, 0, "reload with no daemon succeeded: {out}");
}

/// The init.d script, run by `shell`, with `path` as PATH.
fn initd_service<'a>(
    w: &'a World,
    binary: &Path,
    what: &str,
    shell: Vec<PathBuf>,
    path: String,
) -> Service<'a> {
    let pidfile = w.root.join("berth.pid");
    let log = w.root.join("berth.log");
    let defaults = w.root.join("default-berth");
    let p = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    w.write_file(
        &defaults,
        &format!(
            "DAEMON={}\nCONFIG={}\nPIDFILE={}\nLOGFILE={}\nSTOP_TIMEOUT=20\n",
            p(binary),
            p(&w.config_path()),
            p(&pidfile),
            p(&log)
        ),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/berth.initd");
    let run = move |verb: &str| {
        let mut cmd = Command::new(&shell[0]);
        cmd.args(&shell[1..])
            .arg(&script)
            .arg(verb)
            .env_clear()
            .env("PATH", &path)
            .env("BERTH_DEFAULTS", &defaults)
            .current_dir("/");
        w.spawn_in_world(cmd, &format!("berth.initd {verb}"))
            .finish(LONG)
    };
    Service {
        w,
        what: what.to_string(),
        run: Box::new(run),
        binary: binary.to_path_buf(),
        pidfile,
        log,
        crashed_status: 1,
    }
}

/// A pidfile naming a live process that is not berth (here a shell, which
/// start-stop-daemon --exec /bin/sh would take for the daemon): status
/// says not running, start starts berth.
fn stale_pidfile_naming_a_shell(s: &Service) {
    let mut shell = Command::new("/bin/sh")
        .args(["-c", "read line"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn a shell");
    fs::write(&s.pidfile, format!("{}\n", shell.id())).unwrap();
    let out = s.expect("status", 1);
    assert!(out.contains("not running"), "{out}");
    s.expect("start", 0);
    let daemon = s.daemon();
    assert_ne!(daemon.pid, shell.id() as i32);
    assert!(
        shell.try_wait().unwrap().is_none(),
        "the shell named by the stale pidfile was signalled"
    );
    s.expect("stop", 0);
    assert!(daemon.gone());
    assert!(shell.try_wait().unwrap().is_none());
    drop(shell.stdin.take());
    shell.wait().unwrap();
}

#[test]
fn initd_script_with_debians_start_stop_daemon() {
    assert!(
        Path::new("/sbin/start-stop-daemon").is_file(),
        "Debian's start-stop-daemon (package dpkg) is missing"
    );
    let (w, binary) = live_world();
    let s = initd_service(
        &w,
        &binary,
        "init.d (Debian's start-stop-daemon)",
        vec!["/bin/sh".into()],
        "/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    );
    lifecycle(&s);
    stale_pidfile_naming_a_shell(&s);
}

/// Commands the scripts use, all busybox applets here.
const BUSYBOX_TOOLS: &[&str] = &[
    "sh",
    "start-stop-daemon",
    "ls",
    "stat",
    "sed",
    "grep",
    "cat",
    "sleep",
    "rm",
    "printf",
    "echo",
    "env",
    "kill",
];

#[test]
fn initd_script_with_busybox_start_stop_daemon() {
    let busybox = rootfs::static_busybox().unwrap_or_else(|e| panic!("{e}"));
    let (w, binary) = live_world();
    // A PATH of busybox applets and nothing else: a tool the script needs
    // that busybox does not have (or an option it lacks) fails the test.
    let tools = w.root.join("busybox-bin");
    fs::create_dir(&tools).unwrap();
    for tool in BUSYBOX_TOOLS {
        symlink(&busybox, tools.join(tool)).unwrap();
    }
    let s = initd_service(
        &w,
        &binary,
        "init.d (busybox start-stop-daemon)",
        vec![busybox.clone(), "sh".into()],
        tools.to_str().unwrap().to_string(),
    );
    lifecycle(&s);
    stale_pidfile_naming_a_shell(&s);
}

#[test]
fn openrc_service_with_debians_openrc_run() {
    let tree = openrc::debian_openrc();
    let (w, binary) = live_world();
    let pidfile = w.root.join("berth.pid");
    let log = w.root.join("berth.log");
    let p = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let conf = format!(
        "BERTH_BINARY={}\nBERTH_CONFIG={}\nBERTH_PIDFILE={}\nBERTH_LOG={}\nBERTH_STOP_TIMEOUT=20\n",
        p(&binary),
        p(&w.config_path()),
        p(&pidfile),
        p(&log)
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/berth.openrc");
    let installed = openrc::Installed::new(&tree, &w.root.join("openrc"), "berth", &script, &conf);
    let run = |verb: &str| {
        w.spawn_in_world(
            installed.command(&[verb]),
            &format!("openrc-run berth {verb}"),
        )
        .finish(LONG)
    };
    let s = Service {
        w: &w,
        what: "openrc-run".to_string(),
        run: Box::new(run),
        binary: binary.clone(),
        pidfile,
        log,
        // OpenRC's own code for a started service whose daemon is gone.
        crashed_status: 32,
    };
    lifecycle(&s);
    // OpenRC kept its own account of the service: stopped now.
    let state = installed.dir.join("run/openrc");
    assert!(!state.join("started/berth").exists());
    let deps = fs::read_to_string(state.join("deptree")).unwrap_or_default();
    assert!(
        deps.contains("berth"),
        "openrc computed no dependencies for berth"
    );
}

// ---- systemd ----

/// The `Key=Value` lines of `section` in a unit file, in order.
fn unit_keys(unit: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut keys = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
        } else if current == section {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("odd line {line:?}"));
            keys.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    keys
}

fn key<'a>(keys: &'a [(String, String)], name: &str) -> &'a str {
    let values: Vec<&str> = keys
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(values.len(), 1, "{name} is set {} times", values.len());
    values[0]
}

/// A command line split into words as systemd splits it, for what the
/// unit uses: blanks between words, '...' and "..." quoting, `$$` for a
/// literal `$`, and `$MAINPID` as a word of its own replaced by `mainpid`
/// (inside a word it is left to the shell, which finds it in the
/// environment systemd gives control processes).
fn systemd_words(line: &str, mainpid: Option<u32>) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, ' ' | '\t') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '$') if chars.peek() == Some(&'$') => {
                chars.next();
                word.push('$');
                in_word = true;
            }
            (_, '%') => panic!("the simulation knows no %-specifiers: {line}"),
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unterminated quote in {line}");
    if in_word {
        words.push(word);
    }
    for w in &mut words {
        if w == "$MAINPID" || w == "${MAINPID}" {
            *w = mainpid.expect("MAINPID is known here").to_string();
        }
    }
    assert!(words[0].starts_with('/'), "{line}: not an absolute path");
    words
}

fn systemd_command(words: &[String], mainpid: Option<u32>) -> Command {
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]).env_clear().env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    if let Some(pid) = mainpid {
        cmd.env("MAINPID", pid.to_string());
    }
    cmd.current_dir("/");
    cmd
}

#[test]
fn systemd_unit_verifies_and_its_commands_run_berth() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("systemd-analyze (package systemd; tests/run installs it)");
    let unit =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/berth.service"))
            .expect("config/berth.service");
    let service = unit_keys(&unit, "Service");
    assert_eq!(key(&service, "KillMode"), "process");
    assert_ne!(
        key(&service, "Type"),
        "notify",
        "berth does not speak sd_notify"
    );
    assert_eq!(key(&service, "PIDFile"), "/run/berth.pid");
    assert_eq!(key(&service, "ExecReload"), "/bin/kill -HUP $MAINPID");
    let start = systemd_words(key(&service, "ExecStart"), None);
    assert!(
        start
            .windows(2)
            .any(|w| w == ["--pidfile", "/run/berth.pid"]),
        "ExecStart does not write PIDFile: {start:?}"
    );
    assert_eq!(
        unit_keys(&unit, "Install"),
        [("WantedBy".to_string(), "multi-user.target".to_string())]
    );

    let (w, binary) = live_world();
    let pidfile = w.root.join("berth.pid");
    let p = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    // The unit as installed here: the world's binary, config and pidfile.
    let adjusted = unit
        .replace("/usr/sbin/berth", &p(&binary))
        .replace("/etc/berth/daemon.json", &p(&w.config_path()))
        .replace("/run/berth.pid", &p(&pidfile));
    let dir = w.root.join("systemd");
    fs::create_dir(&dir).unwrap();
    let unit_path = dir.join("berth.service");
    fs::write(&unit_path, &adjusted).unwrap();
    let mut verify = Command::new(analyze);
    verify
        .args(["verify", "--man=no"])
        .arg(&unit_path)
        .current_dir(&dir);
    let out = w
        .spawn_in_world(verify, "systemd-analyze verify")
        .finish(LONG);
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        describe(&out)
    );
    let said = text(&out);
    assert!(
        !said.contains("berth.service"),
        "systemd-analyze verify has something to say about the unit:\n{said}"
    );

    // Its command lines, run as systemd runs them (its own child the main
    // process, KillMode=process: SIGTERM to that process alone).
    let service = unit_keys(&adjusted, "Service");
    let exec_start = systemd_words(key(&service, "ExecStart"), None);
    let start = |what: &str| {
        let main = w.spawn_in_world(systemd_command(&exec_start, None), what);
        let mainpid = main.child.id();
        let post = systemd_words(key(&service, "ExecStartPost"), Some(mainpid));
        let out = w
            .spawn_in_world(systemd_command(&post, Some(mainpid)), "ExecStartPost")
            .finish(SHORT);
        assert!(out.status.success(), "ExecStartPost: {}", describe(&out));
        // Started means ready: the pidfile names the main process, which
        // answers on its socket.
        assert_eq!(
            fs::read_to_string(&pidfile).unwrap().trim(),
            mainpid.to_string()
        );
        assert!(w.berth(&["ps"]).status.success());
        main
    };
    let stop = |main: Spawned| {
        sys::kill_child(main.child.id(), libc::SIGTERM).unwrap();
        let out = main.finish(LONG);
        assert!(out.status.success(), "berth on SIGTERM: {}", describe(&out));
    };
    let reload = |main: &Spawned| {
        let pid = main.child.id();
        let words = systemd_words(key(&service, "ExecReload"), Some(pid));
        let out = w
            .spawn_in_world(systemd_command(&words, Some(pid)), "ExecReload")
            .finish(SHORT);
        assert!(out.status.success(), "ExecReload: {}", describe(&out));
    };

    w.add_container("one", POLITE, "{}");
    let main = start("berth.service");
    let one = Proc::of(w.wait_running("one").pid as i32);
    w.add_container("two", POLITE, "{}");
    reload(&main);
    let two = Proc::of(w.wait_running("two").pid as i32);

    // Upgrade, then `systemctl restart`.
    install_binary(&binary);
    let old = Proc::of(main.child.id() as i32);
    assert!(old.exe().ends_with(" (deleted)"));
    stop(main);
    assert!(old.gone());
    assert!(
        !one.gone() && !two.gone(),
        "stopping the unit took containers down"
    );
    let main = start("berth.service after the upgrade");
    let new = Proc::of(main.child.id() as i32);
    assert_eq!(new.exe(), p(&binary));
    for (name, c) in [("one", one), ("two", two)] {
        assert_eq!(
            w.wait_running(name).pid as i32,
            c.pid,
            "{name} after restart"
        );
    }
    stop(main);
    assert!(!one.gone() && !two.gone());
}
