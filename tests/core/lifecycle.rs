//! A container's life as `inspect` reports it: running always with a pid,
//! exit codes (0, 42, 137 after SIGKILL, 143 from a TERM trap), `start
//! --wait` and `wait`, stop with the configured signal and SIGKILL
//! escalation, restart, restart policies, exec failures, the daemon's
//! shutdown without live restore, and that a world leaves nothing behind.

use std::fs;
use std::time::{Duration, Instant};

use super::{ON_DEMAND, POLITE, SLEEPER, one_error_line, start_time, with_data};
use crate::common::{
    LONG, SHORT, World, describe, is_gone, is_rfc3339, proc_stat, spare_monitors, wait_for,
};

#[test]
fn running_always_comes_with_a_pid_and_a_start_time() {
    let world = World::new();
    for name in ["r1", "r2", "r3"] {
        world.add_container(name, POLITE, "{}");
    }
    let _daemon = world.start_daemon(&[]);
    // Sample as fast as the client goes while the containers come up.
    let mut all_up = false;
    wait_for(SHORT, "r1, r2 and r3 running", || {
        let listed = world.ps();
        for i in listed.iter().filter(|i| i.status == "running") {
            assert!(i.pid > 0, "running without a pid: {i:?}");
            assert!(
                i.started_at.as_deref().is_some_and(is_rfc3339),
                "running without started-at: {i:?}"
            );
        }
        all_up = listed.iter().filter(|i| i.is_running()).count() == 3;
        all_up
    });
    assert!(all_up);
}

#[test]
fn exit_codes_and_times_are_reported() {
    let world = World::new();
    world.add_container("zero", &["/bin/true"], ON_DEMAND);
    world.add_container("answer", &["/bin/sh", "-c", "exit 42"], ON_DEMAND);
    let _daemon = world.start_daemon(&[]);

    assert_eq!(world.start_wait("zero"), 0);
    let zero = world.inspect("zero");
    assert_eq!(
        (zero.status.as_str(), zero.exit_code, zero.pid),
        ("exited", Some(0), 0),
        "{zero:?}"
    );
    assert_eq!(
        (zero.restart_count, zero.error.as_deref()),
        (0, None),
        "{zero:?}"
    );
    for time in [&zero.started_at, &zero.finished_at] {
        assert!(time.as_deref().is_some_and(is_rfc3339), "{zero:?}");
    }

    assert_eq!(world.start_wait("answer"), 42);
    let answer = world.inspect("answer");
    assert_eq!(
        (answer.status.as_str(), answer.exit_code, answer.pid),
        ("exited", Some(42), 0)
    );
    let listed = world.ps();
    let answer_listed = listed
        .iter()
        .find(|i| i.name == "answer")
        .expect("answer in ps --json");
    assert_eq!(answer_listed, &answer);
}

#[test]
fn an_end_is_answered_with_its_record_in_place_and_the_next_run_starts_at_once() {
    let world = World::new();
    // Each run exits with its own number: 1, 2, 3, ...
    let count = "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n + 1)); echo $n > /data/n; exit $n";
    world.add_container(
        "counter",
        &["/bin/sh", "-c", count],
        &with_data(&world, ON_DEMAND),
    );
    let daemon = world.start_daemon(&[]);
    let record = world.state_dir().join("containers/counter/exit.json");
    for n in 1..=5 {
        // Asked again the moment the last run was answered: a new run.
        assert_eq!(world.start_wait("counter"), n, "{}", daemon.stderr());
        // The monitor tells the daemon once the record is in place.
        let text = fs::read_to_string(&record).unwrap();
        assert!(
            text.contains(&format!("\"exit-code\":{n},")),
            "run {n}: {text}"
        );
    }
    // Each end told on the monitor's channel, before the monitor is gone
    // (its debug line; an operator's starts are never rate limited).
    let told = daemon
        .stderr()
        .lines()
        .filter(|l| l.contains("counter: the monitor reported the run's end"))
        .count();
    assert_eq!(told, 5, "{}", daemon.stderr());
}

#[test]
fn a_spare_monitor_takes_the_next_start_and_its_name_and_another_follows() {
    let world = World::new();
    world.add_container("web", SLEEPER, ON_DEMAND);
    let mut daemon = world.start_daemon(&[]);
    let mut spare = Vec::new();
    wait_for(SHORT, "a spare monitor", || {
        spare = spare_monitors(daemon.pid());
        spare.len() == 1
    });
    let spare = spare[0];
    let spare_start = proc_stat(spare as i32).unwrap().1;
    world.berth_ok(&["start", "web"]);
    let web = world.wait_running("web");
    assert_eq!(web.monitor_pid, spare, "the start took the spare: {web:?}");
    let cmdline = fs::read(format!("/proc/{spare}/cmdline")).unwrap();
    assert_eq!(cmdline, b"berth\0monitor\0web\0", "named for its container");
    let mut next = Vec::new();
    wait_for(SHORT, "another spare monitor", || {
        next = spare_monitors(daemon.pid());
        next.len() == 1
    });
    assert_ne!(next[0], spare);
    let next_start = proc_stat(next[0] as i32).unwrap().1;
    // A spare ends with its daemon, however it ends; the container and
    // its monitor stay.
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(SHORT);
    wait_for(SHORT, "the spare to end with the daemon", || {
        is_gone(next[0] as i32, next_start)
    });
    assert!(!is_gone(web.pid as i32, start_time(web.pid)));
    assert!(
        !is_gone(spare as i32, spare_start),
        "the container's monitor stays"
    );
}

#[test]
fn a_start_whose_spare_monitor_died_starts_its_own() {
    let world = World::new();
    world.add_container("web", SLEEPER, ON_DEMAND);
    let daemon = world.start_daemon(&[]);
    let mut spare = Vec::new();
    wait_for(SHORT, "a spare monitor", || {
        spare = spare_monitors(daemon.pid());
        spare.len() == 1
    });
    let start = proc_stat(spare[0] as i32).unwrap().1;
    // SAFETY: kill only sends a signal, to a process this test's daemon
    // started (checked by its start time above and below).
    assert_eq!(unsafe { libc::kill(spare[0] as i32, libc::SIGKILL) }, 0);
    wait_for(SHORT, "the spare to die", || {
        is_gone(spare[0] as i32, start)
    });
    world.berth_ok(&["start", "web"]);
    let web = world.wait_running("web");
    assert_ne!(web.monitor_pid, spare[0], "{web:?}");
    let cmdline = fs::read(format!("/proc/{}/cmdline", web.monitor_pid)).unwrap();
    assert_eq!(cmdline, b"berth\0monitor\0web\0");
    wait_for(SHORT, "another spare monitor", || {
        spare_monitors(daemon.pid()).len() == 1
    });
}

#[test]
fn wait_prints_the_exit_code_once_the_container_exits() {
    let world = World::new();
    let script = "while [ ! -e /data/go ]; do sleep 0.05; done; exit 5";
    world.add_container(
        "gated",
        &["/bin/sh", "-c", script],
        &with_data(&world, r#"{"restart": "no"}"#),
    );
    let _daemon = world.start_daemon(&[]);
    world.wait_running("gated");
    let mut waiter = world.spawn_berth(&["wait", "gated"]);
    assert!(
        waiter.try_status().is_none(),
        "`berth wait` returned while the container runs"
    );
    fs::write(world.host_dir().join("go"), "").unwrap();
    let out = waiter.finish(SHORT);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n");
    // Waiting on a container that already exited answers at once.
    assert_eq!(world.berth_ok(&["wait", "gated"]), "5\n");
}

#[test]
fn kill_with_signal_kill_gives_exit_code_137() {
    let world = World::new();
    world.add_container("victim", SLEEPER, r#"{"restart": "no"}"#);
    let _daemon = world.start_daemon(&[]);
    let running = world.wait_running("victim");
    let started = start_time(running.pid);
    world.berth_ok(&["kill", "victim", "--signal", "KILL"]);
    let killed = world.wait_inspect("victim", "to stop running", SHORT, |i| {
        i.status != "running"
    });
    assert_eq!((killed.exit_code, killed.pid), (Some(137), 0), "{killed:?}");
    assert!(
        ["exited", "stopped"].contains(&killed.status.as_str()),
        "{killed:?}"
    );
    assert!(is_gone(running.pid as i32, started));
}

#[test]
fn stop_sends_sigterm_that_a_trapping_init_turns_into_143() {
    let world = World::new();
    let script = "trap 'exit 143' TERM; while true; do sleep 0.1; done";
    world.add_container(
        "polite",
        &["/bin/sh", "-c", script],
        r#"{"restart": "no", "stop-timeout": 30}"#,
    );
    let _daemon = world.start_daemon(&[]);
    world.wait_running("polite");
    let t0 = Instant::now();
    world.berth_ok(&["stop", "polite"]);
    let stopped = world.wait_status("polite", "stopped", SHORT);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "no SIGKILL escalation was due: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        (stopped.exit_code, stopped.pid),
        (Some(143), 0),
        "{stopped:?}"
    );
}

#[test]
fn stop_uses_the_configured_stop_signal() {
    let world = World::new();
    let script = "trap 'exit 3' USR1; while true; do sleep 0.1; done";
    world.add_container(
        "usr1",
        &["/bin/sh", "-c", script],
        r#"{"restart": "no", "stop-signal": "SIGUSR1", "stop-timeout": 30}"#,
    );
    let _daemon = world.start_daemon(&[]);
    world.wait_running("usr1");
    let t0 = Instant::now();
    world.berth_ok(&["stop", "usr1"]);
    let stopped = world.wait_status("usr1", "stopped", SHORT);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(stopped.exit_code, Some(3), "{stopped:?}");
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    let world = World::new();
    // A pid-1 shell without a TERM handler never sees SIGTERM.
    world.add_container(
        "stubborn",
        &["/bin/sh", "-c", "while true; do sleep 0.1; done"],
        r#"{"restart": "no"}"#,
    );
    let _daemon = world.start_daemon(&[]);
    let running = world.wait_running("stubborn");
    let started = start_time(running.pid);
    let t0 = Instant::now();
    let out = world.berth(&["stop", "stubborn", "--time", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stopped = world.wait_status("stubborn", "stopped", SHORT);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "killed before the 1 s grace: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "escalation too slow: {took:?}"
    );
    assert_eq!(
        (stopped.exit_code, stopped.pid),
        (Some(137), 0),
        "{stopped:?}"
    );
    assert!(is_gone(running.pid as i32, started));
}

#[test]
fn restart_replaces_the_process() {
    let world = World::new();
    world.add_container("again", POLITE, "{}");
    let _daemon = world.start_daemon(&[]);
    let first = world.wait_running("again");
    let started = start_time(first.pid);
    world.berth_ok(&["restart", "again"]);
    world.wait_inspect("again", "to run as a new process", SHORT, |i| {
        i.is_running() && i.pid != first.pid
    });
    assert!(
        is_gone(first.pid as i32, started),
        "old init {} survived the restart",
        first.pid
    );
}

#[test]
fn restart_on_failure_gives_up_after_max_restarts() {
    let world = World::new();
    let script = "echo run >> /data/runs; exit 1";
    world.add_container(
        "flaky",
        &["/bin/sh", "-c", script],
        &with_data(&world, r#"{"restart": "on-failure:2"}"#),
    );
    let _daemon = world.start_daemon(&[]);
    let last = world.wait_inspect("flaky", "to give up after 2 restarts", LONG, |i| {
        i.restart_count == 2 && !["running", "restarting"].contains(&i.status.as_str())
    });
    assert!(
        ["exited", "failed"].contains(&last.status.as_str()),
        "{last:?}"
    );
    assert_eq!(last.exit_code, Some(1), "{last:?}");
    let runs = fs::read_to_string(world.host_dir().join("runs")).unwrap();
    assert_eq!(runs, "run\nrun\nrun\n", "one run plus two restarts");
}

#[test]
fn start_of_a_missing_command_fails_with_the_exec_error() {
    let world = World::new();
    world.add_container("nope", &["/bin/nope"], ON_DEMAND);
    world.add_container("bystander", POLITE, "{}");
    let _daemon = world.start_daemon(&[]);
    let bystander = world.wait_running("bystander");
    let line = one_error_line(&world.berth(&["start", "nope"]), 1);
    assert!(line.starts_with("berth: "), "{line}");
    assert!(
        line.contains("/bin/nope") && line.contains("No such file or directory"),
        "{line}"
    );
    let nope = world.inspect("nope");
    assert_eq!((nope.status.as_str(), nope.pid), ("failed", 0), "{nope:?}");
    assert!(
        nope.error
            .as_deref()
            .is_some_and(|e| e.contains("/bin/nope")),
        "{nope:?}"
    );
    assert_eq!(world.inspect("bystander").pid, bystander.pid);
}

#[test]
fn sigterm_without_live_restore_stops_containers_then_exits_0() {
    let world = World::new();
    let script = "trap 'touch /data/stopped; exit 0' TERM; while true; do sleep 0.1; done";
    world.add_container(
        "polite",
        &["/bin/sh", "-c", script],
        &with_data(&world, "{}"),
    );
    let mut daemon = world.start_daemon(&[]);
    let running = world.wait_running("polite");
    let started = start_time(running.pid);
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(LONG);
    assert!(
        status.success(),
        "daemon exited with {status}:\n{}",
        daemon.stderr()
    );
    assert!(
        world.host_dir().join("stopped").exists(),
        "container got no SIGTERM"
    );
    assert!(
        is_gone(running.pid as i32, started),
        "container outlived the daemon"
    );
    wait_for(SHORT, "no process left in the world's cgroups", || {
        world.procs().is_empty()
    });
}

#[test]
fn a_world_leaves_no_process_cgroup_or_file_behind() {
    let mut world = World::new();
    world.add_container("a", SLEEPER, "{}");
    world.add_container("b", POLITE, "{}");
    let daemon = world.start_daemon(&[]);
    world.wait_running("a");
    world.wait_running("b");
    let pids: Vec<(i32, u64)> = world
        .procs()
        .into_iter()
        .filter_map(|p| Some((p, proc_stat(p).ok()?.1)))
        .collect();
    assert!(
        pids.len() >= 3,
        "daemon, monitors and containers are in the world: {pids:?}"
    );
    let (roots, root) = (world.cgroup_roots(), world.root.clone());
    drop(daemon);
    world.cleanup().expect("cleanup");
    for (pid, start) in pids {
        wait_for(SHORT, &format!("pid {pid} gone"), || is_gone(pid, start));
    }
    for dir in roots.iter().chain([&root]) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
