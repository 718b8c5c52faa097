//! `"init": true`, through the real binary: berth's own init is pid 1 of
//! the container (no file of the rootfs), under the same capabilities,
//! no_new_privs and seccomp filter as the command; it passes the command's
//! exit status through, reaps orphaned zombies, forwards the stop signal
//! so a shell ends at the first SIGTERM, and a command that cannot be
//! exec'd still fails the start with the exec error.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;
const WITH_INIT: &str = r#"{"autostart": false, "restart": "no", "init": true}"#;

/// Every host pid in the pid namespace of host pid `init`, with its state
/// and name from /proc/PID/stat.
fn namespace_procs(init: u32) -> Vec<(i32, char, String)> {
    let Ok(ns) = fs::read_link(format!("/proc/{init}/ns/pid")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() != Some(&ns) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map(|(name, _)| name.to_string())
            .unwrap_or_default();
        if let Ok((state, _)) = proc_stat(pid) {
            found.push((pid, state, name));
        }
    }
    found
}

#[test]
fn pid_1_is_berths_init_under_the_same_restrictions_and_the_status_passes_through() {
    let w = World::new();
    // Nothing named init in the rootfs is needed or used.
    let _ = fs::remove_file(w.rootfs().join("sbin/init"));
    let show = "tr '\\0' ' ' </proc/1/cmdline; echo; echo \"sh is $$\"; \
                for p in 1 $$; do grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$p/status; \
                echo ---; done; exit 7";
    w.add_container(
        "seven",
        &["sh", "-c", show],
        &json::merge(
            WITH_INIT,
            r#"{"user": "1000:1000", "cap-add": ["NET_ADMIN"]}"#,
        ),
    );
    w.add_container("signalled", &["sh", "-c", "kill -USR1 $$"], WITH_INIT);
    let _daemon = w.start_daemon(&[]);
    assert_eq!(w.start_wait("seven"), 7);
    let (stdout, stderr) = w.logs("seven", &[]);
    let mut lines = stdout.lines();
    let cmdline = lines.next().unwrap_or_default();
    assert!(
        cmdline.starts_with("berth-init "),
        "pid 1 is {cmdline:?}; stderr: {stderr}"
    );
    assert!(cmdline.contains(" sh -c "), "{cmdline:?}");
    let sh = lines.next().unwrap_or_default();
    assert!(sh.starts_with("sh is ") && sh != "sh is 1", "{sh:?}");
    let parts: Vec<&str> = stdout
        .split_once('\n')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split("---\n")
        .collect();
    let (init, command) = (parts[0], parts[1]);
    let init = init.split_once('\n').map(|(_, r)| r).unwrap_or_default();
    assert_eq!(init, command, "pid 1 and the command differ");
    assert!(
        command.contains("Uid:\t1000\t1000\t1000\t1000"),
        "{command}"
    );
    assert!(command.contains("NoNewPrivs:\t1"), "{command}");
    assert!(command.contains("Seccomp:\t2"), "{command}");
    assert!(command.contains("CapEff:\t0000000000001000"), "{command}");

    // Killed by a signal: 128 + N.
    assert_eq!(w.start_wait("signalled"), 128 + libc::SIGUSR1);
    assert_eq!(w.inspect("signalled").exit_code, Some(138));
}

#[test]
fn a_command_that_cannot_be_execd_fails_the_start_with_the_exec_error() {
    let w = World::new();
    w.add_container("absent", &["/bin/nope"], WITH_INIT);
    w.add_container("unlisted", &["nope", "arg"], WITH_INIT);
    fs::write(w.rootfs().join("not-exec"), "#!/bin/sh\n").unwrap();
    w.add_container("denied", &["/not-exec"], WITH_INIT);
    let _daemon = w.start_daemon(&[]);
    for (name, want) in [
        ("absent", "exec /bin/nope: No such file or directory"),
        ("unlisted", "exec nope: No such file or directory"),
        ("denied", "exec /not-exec: Permission denied"),
    ] {
        let out = w.berth(&["start", name]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{name}: {want:?} not in {stderr}");
        let i = w.inspect(name);
        assert_eq!(i.status, "failed", "{i:?}");
        assert!(i.error.as_deref().unwrap_or("").contains(want), "{i:?}");
    }
}

#[test]
fn stop_ends_a_shell_at_the_first_sigterm() {
    let w = World::new();
    // The shell stays (a command follows the sleep), so it is the one that
    // gets SIGTERM: as pid 1 the kernel would drop it; as the init's child
    // it dies of it.
    let shell = ["sh", "-c", "sleep 1000; echo not reached"];
    w.add_container(
        "shell",
        &shell,
        &json::merge(WITH_INIT, r#"{"stop-timeout": 30}"#),
    );
    w.add_container(
        "bare",
        &shell,
        &json::merge(ON_DEMAND, r#"{"stop-timeout": 1}"#),
    );
    let _daemon = w.start_daemon(&[]);

    w.berth_ok(&["start", "shell"]);
    w.wait_running("shell");
    let began = Instant::now();
    w.berth_ok(&["stop", "shell"]);
    let took = began.elapsed();
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    let i = w.wait_status("shell", "stopped", SHORT);
    assert_eq!(i.exit_code, Some(143), "{i:?}");

    // Without the init the shell is pid 1 and ignores SIGTERM until the
    // timeout's SIGKILL.
    w.berth_ok(&["start", "bare"]);
    w.wait_running("bare");
    let began = Instant::now();
    w.berth_ok(&["stop", "bare"]);
    assert!(began.elapsed() >= Duration::from_secs(1));
    let i = w.wait_status("bare", "stopped", SHORT);
    assert_eq!(i.exit_code, Some(137), "{i:?}");
}

#[test]
fn every_signal_is_forwarded_to_the_command() {
    let w = World::new();
    let traps = "for s in USR1 USR2 HUP INT; do trap \"echo got $s\" $s; done; \
                 trap 'echo got TERM; exit 3' TERM; echo ready; \
                 while :; do sleep 0.05; done";
    w.add_container(
        "traps",
        &["sh", "-c", traps],
        &json::merge(WITH_INIT, r#"{"stop-timeout": 30}"#),
    );
    let _daemon = w.start_daemon(&[]);
    w.berth_ok(&["start", "traps"]);
    wait_for(SHORT, "the traps set", || {
        w.logs("traps", &[]).0.contains("ready")
    });
    for sig in ["USR1", "USR2", "HUP", "INT"] {
        w.berth_ok(&["kill", "traps", "--signal", sig]);
        wait_for(SHORT, &format!("{sig} to reach the shell"), || {
            w.logs("traps", &[]).0.contains(&format!("got {sig}"))
        });
    }
    w.berth_ok(&["stop", "traps"]);
    let i = w.wait_status("traps", "stopped", SHORT);
    assert_eq!(i.exit_code, Some(3), "{i:?}");
    assert!(w.logs("traps", &[]).0.contains("got TERM"));
}

#[test]
fn orphaned_zombies_are_reaped() {
    let w = World::new();
    // Three grandchildren orphaned at once (their parent subshell exits),
    // ending 0.2 s later; the shell then becomes a sleep that never waits.
    let orphans = "for i in 1 2 3; do (sleep 0.2 &); done; echo ready; exec sleep 1000";
    w.add_container("reaped", &["sh", "-c", orphans], WITH_INIT);
    w.add_container("unreaped", &["sh", "-c", orphans], ON_DEMAND);
    let _daemon = w.start_daemon(&[]);

    // Without berth's init, pid 1 is the sleep: the orphans stay zombies.
    w.berth_ok(&["start", "unreaped"]);
    let pid = w.wait_running("unreaped").pid;
    wait_for(
        SHORT,
        "three zombies under a pid 1 that never waits",
        || {
            namespace_procs(pid)
                .iter()
                .filter(|(_, state, _)| *state == 'Z')
                .count()
                == 3
        },
    );

    w.berth_ok(&["start", "reaped"]);
    let pid = w.wait_running("reaped").pid;
    wait_for(SHORT, "ready in the log", || {
        w.logs("reaped", &[]).0.contains("ready")
    });
    // The orphans exist once "ready" is written; once they end, the init
    // reaps them: only it and the sleep remain, neither a zombie.
    wait_for(SHORT, "the orphans reaped", || {
        let procs = namespace_procs(pid);
        procs.len() == 2
            && procs.iter().all(|(_, state, _)| *state != 'Z')
            && procs.iter().any(|(p, _, _)| *p == pid as i32)
    });
    let procs = namespace_procs(pid);
    let names: Vec<&str> = procs.iter().map(|(_, _, n)| n.as_str()).collect();
    assert!(names.contains(&"sleep"), "{procs:?}");

    // The init is small: what it holds of its own (private pages).
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let kib = |key: &str| -> u64 {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {rollup}"))
    };
    let private = kib("Private_Clean:") + kib("Private_Dirty:");
    eprintln!(
        "berth's init: Rss {} KiB, Pss {} KiB, private {private} KiB",
        kib("Rss:"),
        kib("Pss:")
    );
    assert!(private < 512, "the init holds {private} KiB of its own");
}
