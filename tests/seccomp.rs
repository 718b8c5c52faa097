//! The seccomp filter, checked from inside containers through the real
//! binary: the default filter refuses new namespaces, mounts, the kernel
//! keyring, bpf, perf, kexec, modules and the rest, and with them the
//! attack that lifts a container's own cgroup limits (a user namespace
//! with 0 mapped to 0, new mount and cgroup namespaces, the cgroup
//! hierarchy mounted and a limit written); a normal busybox workload runs
//! under it; the monitor is not filtered; `"unconfined"` lifts it; a
//! profile file applies its own list, errno or kill; a bad profile is a
//! configuration error naming the files and fields, and a reload with one
//! changes nothing.
//!
//! busybox has no applet for most of these calls, so a small C program
//! (tests/fixtures/seccomp_probe.c) makes them. It is compiled here, once
//! per run, with the host's C compiler, which building berth needs anyway
//! (it is Rust's linker), as a static binary into each test's rootfs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;

/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// The calls the default filter must refuse, and how each fails in a
/// container under it (EPERM from the filter; clone3 ENOSYS, so that a C
/// library falls back to clone).
const REFUSED: &[(&str, &str)] = &[
    ("clone-user", "EPERM"),
    ("unshare-user", "EPERM"),
    ("unshare-mount", "EPERM"),
    ("clone3", "ENOSYS"),
    ("setns", "EPERM"),
    ("mount", "EPERM"),
    ("keyctl", "EPERM"),
    ("add_key", "EPERM"),
    ("request_key", "EPERM"),
    ("bpf", "EPERM"),
    ("perf_event_open", "EPERM"),
    ("kexec_load", "EPERM"),
    ("init_module", "EPERM"),
    ("open_by_handle_at", "EPERM"),
    ("ptrace", "EPERM"),
    ("io_uring_setup", "EPERM"),
    ("personality-no-aslr", "EPERM"),
];

/// Busybox applets these tests use beyond the harness's.
const MORE_APPLETS: &[&str] = &["unshare", "grep", "uname", "sort", "mkdir"];

/// The probe, compiled once per test binary.
fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seccomp_probe.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("seccomp_probe");
        let built = Command::new("cc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(&source)
            .output()
            .unwrap_or_else(|e| {
                panic!("run cc (the C compiler that links berth) for the probe: {e}")
            });
        assert!(
            built.status.success(),
            "cc -static {}: {}",
            source.display(),
            describe(&built)
        );
        out
    })
}

/// A world whose rootfs also has the probe (/bin/probe) and more applets.
fn world() -> World {
    let w = World::new();
    let bin = w.rootfs().join("bin");
    fs::copy(probe_binary(), bin.join("probe")).expect("copy the probe into the rootfs");
    for applet in MORE_APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("link an applet");
    }
    w
}

/// Runs `script` with /bin/sh as container NAME (with the members of
/// `extra`), waits for its exit code and returns (code, stdout, stderr).
fn run(w: &World, name: &str, script: &str, extra: &str) -> (i32, String, String) {
    w.add_container(
        name,
        &["/bin/sh", "-c", script],
        &json::merge(ON_DEMAND, extra),
    );
    let out = w.berth(&["reload"]);
    assert!(out.status.success(), "reload: {}", describe(&out));
    let code = w.start_wait(name);
    let (stdout, stderr) = w.logs(name, &[]);
    (code, stdout, stderr)
}

/// The probe lines a list of calls prints: "NAME OUTCOME".
fn lines(outcomes: &[(&str, &str)]) -> String {
    outcomes.iter().map(|(c, o)| format!("{c} {o}\n")).collect()
}

fn probe_args(outcomes: &[(&str, &str)]) -> String {
    let calls: Vec<&str> = outcomes.iter().map(|(c, _)| *c).collect();
    calls.join(" ")
}

#[test]
fn the_default_filter_refuses_namespaces_keys_bpf_and_the_rest() {
    let w = world();
    let _daemon = w.start_daemon(&[]);
    let script = format!(
        "/bin/probe {} fork personality-linux; \
         unshare -U true; echo unshare-U=$?; unshare -m true; echo unshare-m=$?; \
         mkdir -p /tmp/m; mount -t tmpfs none /tmp/m; echo mount=$?",
        probe_args(REFUSED)
    );
    let (code, stdout, stderr) = run(&w, "filtered", &script, "{}");
    assert_eq!(code, 0, "{stderr}");
    let mut want = lines(REFUSED);
    want.push_str("fork ok\npersonality-linux ok\nunshare-U=1\nunshare-m=1\nmount=1\n");
    assert_eq!(stdout, want, "stderr:\n{stderr}");
    for line in [
        "unshare: unshare(0x10000000): Operation not permitted",
        "unshare: unshare(0x20000): Operation not permitted",
        "mount: permission denied (are you root?)",
    ] {
        assert!(
            stderr.lines().any(|l| l == line),
            "no {line:?} in:\n{stderr}"
        );
    }
}

#[test]
fn the_same_calls_are_made_unconfined() {
    let w = world();
    let _daemon = w.start_daemon(&[]);
    // The calls that fail in a container without CAP_SYS_ADMIN anyway are
    // left out: these succeed, or fail for their bad arguments.
    // (A process in a user namespace without a uid map can make no
    // other: clone-user comes first.)
    let passed = [
        ("clone-user", "ok"),
        ("unshare-user", "ok"),
        ("clone3", "EINVAL"),
        ("setns", "EBADF"),
        ("keyctl", "ok"),
        ("perf_event_open", "EFAULT"),
        ("ptrace", "ok"),
        ("personality-no-aslr", "ok"),
    ];
    let script = format!(
        "/bin/probe {}; unshare -U true; echo unshare-U=$?; grep '^Seccomp:' /proc/self/status",
        probe_args(&passed)
    );
    let (code, stdout, stderr) = run(&w, "free", &script, r#"{"seccomp": "unconfined"}"#);
    assert_eq!(code, 0, "{stderr}");
    let mut want = lines(&passed);
    want.push_str("unshare-U=0\nSeccomp:\t0\n");
    assert_eq!(stdout, want, "stderr:\n{stderr}");
}

/// How the probe lifts the limit of `controller` where this host keeps
/// it: (its mount argument, "" for cgroup2; the limit file; a value that
/// lifts it; the file's content for `memory: 64m, pids: 32, cpus: 0.5`).
fn lift_args(controller: &str) -> (&'static str, &'static str, &'static str, &'static str) {
    let hierarchies = cgroups::hierarchies().expect("read this process's cgroups");
    let v1 = hierarchies
        .iter()
        .any(|h| h.controllers.iter().any(|c| c == controller));
    match (controller, v1) {
        ("memory", true) => ("memory", "memory.limit_in_bytes", "-1", "67108864"),
        ("pids", true) => ("pids", "pids.max", "max", "32"),
        ("cpu", true) => ("cpu", "cpu.cfs_quota_us", "-1", "50000"),
        ("memory", false) => ("", "memory.max", "max", "67108864"),
        ("pids", false) => ("", "pids.max", "max", "32"),
        ("cpu", false) => ("", "cpu.max", "max", "50000 100000"),
        _ => panic!("no limit file for {controller}"),
    }
}

/// The trimmed content of `file` in the cgroup of `pid` that has it.
fn cgroup_file(pid: u32, file: &str) -> String {
    let proc_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroups of pid");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mounts = cgroups::parse_cgroup_mounts(&mountinfo);
    cgroups::parse_hierarchies(&proc_cgroup, &mounts)
        .iter()
        .find_map(|h| fs::read_to_string(h.own_dir().join(file)).ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {file} in the cgroups of {pid}:\n{proc_cgroup}"))
}

#[test]
fn a_container_cannot_lift_its_own_limits() {
    let w = world();
    let mut script = String::new();
    let mut files = Vec::new();
    let mut limits = Vec::new();
    for controller in ["memory", "pids", "cpu"] {
        let (mount, file, value, limit) = lift_args(controller);
        let mount = if mount.is_empty() { "''" } else { mount };
        script.push_str(&format!("/bin/probe lift {mount} {file} {value}; "));
        files.push(file);
        limits.push(limit);
    }
    script.push_str("echo end; exec sleep 1000");
    w.add_container(
        "limited",
        &["/bin/sh", "-c", &script],
        r#"{"memory": "64m", "pids": 32, "cpus": 0.5, "restart": "no"}"#,
    );
    let _daemon = w.start_daemon(&[]);
    let pid = w.wait_running("limited").pid;
    wait_for(SHORT, "the attacks to end", || {
        w.logs("limited", &[]).0.ends_with("end\n")
    });
    let now: Vec<String> = files.iter().map(|f| cgroup_file(pid, f)).collect();
    assert_eq!(now, limits, "limits in {files:?}");
    let (stdout, stderr) = w.logs("limited", &[]);
    assert_eq!(
        stdout,
        "lift unshare-user EPERM\n".repeat(3) + "end\n",
        "stderr:\n{stderr}"
    );
}

#[test]
fn a_busybox_workload_runs_and_only_the_container_is_filtered() {
    let w = world();
    let _daemon = w.start_daemon(&[]);
    let script = "ls / | sort | head -3; \
                  echo one two three | tr ' ' '\\n' | wc -l; \
                  cat /proc/self/status | grep -E '^(Seccomp|NoNewPrivs):'; \
                  sleep 0.05 & bg=$!; wait $bg; echo background=$?; \
                  (echo sub; exit 3); echo subshell=$?; \
                  seq 5 | tail -1; id -u; hostname; uname -s; pwd; echo $((6 * 7)); \
                  echo x > /tmp/f && cat /tmp/f; kill -0 $$ && echo signal; \
                  exec /bin/probe fork";
    let (code, stdout, stderr) = run(&w, "busy", script, "{}");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "bin\ndata\ndev\n3\nNoNewPrivs:\t1\nSeccomp:\t2\nbackground=0\nsub\nsubshell=3\n\
         5\n0\nbusy\nLinux\n/\n42\nx\nsignal\nfork ok\n",
        "stderr:\n{stderr}"
    );
    assert_eq!(stderr, "");

    // The monitor, in the host's namespaces, runs without a filter.
    w.add_container("held", POLITE, "{}");
    assert!(w.berth(&["reload"]).status.success());
    let held = w.wait_running("held");
    let seccomp = |pid: u32| {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(|v| v.trim().to_string())
            .expect("a Seccomp line")
    };
    assert_eq!(seccomp(held.pid), "2", "the container's init");
    assert_ne!(held.monitor_pid, 0);
    assert_eq!(seccomp(held.monitor_pid), "0", "the monitor");
    assert_eq!(seccomp(_daemon.pid()), "0", "the daemon");
}

/// The names under `@always` in the default filter's list.
fn default_always() -> Vec<String> {
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sys/seccomp/default.txt");
    let text = fs::read_to_string(&list).expect("read default.txt");
    let mut names = Vec::new();
    let mut in_always = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(header) = line.strip_prefix('@') {
            in_always = header == "always";
        } else if in_always {
            names.extend(line.split_whitespace().map(str::to_string));
        }
    }
    assert!(names.len() > 100, "{names:?}");
    names
}

/// A profile allowing what the default filter always allows but making
/// directories.
fn profile_without_mkdir(head: &str) -> String {
    let names: Vec<String> = default_always()
        .into_iter()
        .filter(|n| n != "mkdir" && n != "mkdirat")
        .map(|n| json::string(&n))
        .collect();
    format!("{{{head}\"allow\": [{}]}}", names.join(", "))
}

#[test]
fn a_profile_file_applies_its_list_its_errno_or_kill() {
    let w = world();
    let profiles = w.root.join("profiles");
    fs::create_dir(&profiles).unwrap();
    w.write_file(
        &profiles.join("eacces.json"),
        &profile_without_mkdir(r#""errno": "EACCES", "#),
    );
    w.write_file(
        &profiles.join("kill.json"),
        &profile_without_mkdir(r#""default-action": "kill", "#),
    );
    let _daemon = w.start_daemon(&[]);
    let script = "mkdir /tmp/d; echo mkdir=$?; echo still";
    // A path relative to the containers directory.
    let (code, stdout, stderr) = run(
        &w,
        "eacces",
        script,
        r#"{"seccomp": "../../profiles/eacces.json"}"#,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "mkdir=1\nstill\n");
    assert_eq!(
        stderr, "mkdir: can't create directory '/tmp/d': Permission denied\n",
        "mkdir fails with the profile's EACCES"
    );
    let kill = profiles.join("kill.json");
    let extra = format!("{{\"seccomp\": {}}}", json::string(kill.to_str().unwrap()));
    let (code, stdout, stderr) = run(&w, "kill", script, &extra);
    assert_eq!(code, 0, "{stderr}");
    // SIGSYS (31) killed mkdir.
    assert_eq!(stdout, "mkdir=159\nstill\n", "stderr:\n{stderr}");
}

#[test]
fn a_bad_profile_is_a_config_error_naming_files_and_fields() {
    let w = world();
    let profile = w.root.join("profile.json");
    w.write_file(&profile, &profile_without_mkdir(""));
    let extra = format!(
        "{{\"seccomp\": {}, \"autostart\": true}}",
        json::string(profile.to_str().unwrap())
    );
    w.add_container("app", POLITE, &extra);
    let daemon = w.start_daemon(&[]);
    let running = w.wait_running("app");
    let container_file = w.containers_dir().join("app.json");
    let (cfile, pfile) = (container_file.to_str().unwrap(), profile.to_str().unwrap());

    // A reload with a broken profile is refused, naming both files and
    // fields, and changes nothing.
    w.write_file(
        &profile,
        r#"{"allow": ["execve", "exit_group", "write", "nosuchcall"]}"#,
    );
    let out = w.berth(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let want = format!(
        "{cfile}: field \"seccomp\": {pfile}: field \"allow[3]\": unknown system call \"nosuchcall\""
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&want), "{want:?} not in {stderr}");
    assert_eq!(w.inspect("app").pid, running.pid);

    // At start-up a container with a broken profile is reported failed
    // with that error; bad JSON is named by line and column.
    assert!(w.berth(&["stop", "app"]).status.success());
    drop(daemon);
    fs::remove_file(&container_file).unwrap();
    w.write_file(&profile, "{\"allow\": [\n  \"read\",,\n]}");
    w.add_container("bad", POLITE, &extra);
    let daemon = w.start_daemon(&[]);
    let line = daemon.wait_for_log_line(&["bad.json", "seccomp"]);
    assert!(
        line.contains(&format!("{pfile}: line 2 column 10: ")),
        "{line}"
    );
    let inspect = w.inspect("bad");
    assert_eq!((inspect.status.as_str(), inspect.pid), ("failed", 0));
    assert!(
        inspect
            .error
            .as_deref()
            .is_some_and(|e| e.contains(pfile) && e.contains("line 2")),
        "{inspect:?}"
    );
}
