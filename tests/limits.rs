//! Resource limits as the kernel enforces them, through the real binary:
//! an out-of-memory kill and a refused fork are reported in `inspect` and
//! in the daemon's log, and a container's logging is charged to its own
//! CPU limit (its monitor runs in a leaf of the container's cpu cgroup,
//! outside its memory and pids cgroups).

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::cgroups::cgroup_lines;
use common::*;

/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// A container with an 8 MiB memory limit whose pipeline buffers 100 MiB:
/// the kernel kills it, and berth says so as Docker's OOMKilled does.
#[test]
fn an_out_of_memory_kill_is_reported() {
    let world = World::new();
    world.add_container(
        "hog",
        &["/bin/sh", "-c", "head -c 100m /dev/zero | tail"],
        &json::merge(ON_DEMAND, r#"{"memory": "8m"}"#),
    );
    let daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("hog"), 137);
    let i = world.inspect("hog");
    assert_eq!(
        (i.status.as_str(), i.exit_code),
        ("exited", Some(137)),
        "{i:?}"
    );
    assert!(i.oom_killed, "{i:?}");
    assert_eq!(
        i.error.as_deref(),
        Some("out of memory (memory limit 8 MiB)"),
        "{i:?}"
    );
    daemon.wait_for_log_line(&[
        "hog",
        "exited with code 137",
        "out of memory (memory limit 8 MiB)",
    ]);
    // The next run that ends well says nothing of the last one's kill.
    world.add_container(
        "hog",
        &["/bin/true"],
        &json::merge(ON_DEMAND, r#"{"memory": "8m"}"#),
    );
    world.berth_ok(&["reload"]);
    assert_eq!(world.start_wait("hog"), 0);
    let i = world.inspect("hog");
    assert!(!i.oom_killed && i.error.is_none(), "{i:?}");
}

/// A container allowed one process whose shell forks at once: the fork is
/// refused, and the pids limit is named as the reason.
#[test]
fn a_fork_refused_at_the_pids_limit_is_named() {
    let world = World::new();
    world.add_container(
        "few",
        &["/bin/sh", "-c", "/bin/true; echo not reached"],
        &json::merge(ON_DEMAND, r#"{"pids": 1}"#),
    );
    let daemon = world.start_daemon(&[]);
    let code = world.start_wait("few");
    assert_ne!(code, 0, "the shell could not fork, yet exited 0");
    let i = world.inspect("few");
    assert_eq!(i.status, "exited", "{i:?}");
    assert!(!i.oom_killed, "{i:?}");
    assert_eq!(
        i.error.as_deref(),
        Some("pids limit 1 reached (1 fork refused)"),
        "{i:?}"
    );
    daemon.wait_for_log_line(&["few", "pids limit 1 reached"]);
    let (out, _) = world.logs("few", &[]);
    assert!(!out.contains("not reached"), "{out}");
}

/// utime + stime of `pid` from /proc/PID/stat, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall: 11 and 12 after the state.
    let field = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("odd /proc/{pid}/stat: {stat}"))
    };
    field(11) + field(12)
}

/// Bytes `pid` has written through write(2) and friends (/proc/PID/io).
fn written(pid: i32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/io: {e}"));
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no wchar in /proc/{pid}/io: {io}"))
}

/// Clock ticks per second (sysconf(_SC_CLK_TCK)).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf takes a name and touches no memory.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(n > 0, "sysconf(_SC_CLK_TCK) failed");
    n as f64
}

/// A container printing `yes` as fast as it may under `cpus: 0.1`: over
/// ten seconds, the CPU time of the container and of its monitor together
/// stay within the container's limit (plus a margin for the tick
/// granularity and the moment before the monitor joins the cgroup).
#[test]
fn a_flooding_containers_logging_is_charged_to_its_cpu_limit() {
    let world = World::new();
    world.write_daemon_json(r#"{"log-max-size": "1m", "log-max-files": 2}"#);
    world.add_container(
        "yes",
        &["/bin/yes", "0123456789abcdef0123456789abcdef"],
        &json::merge(ON_DEMAND, r#"{"cpus": 0.1}"#),
    );
    let _daemon = world.start_daemon(&[]);
    world.berth_ok(&["start", "yes"]);
    let running = world.wait_running("yes");
    let (init, monitor) = (running.pid as i32, running.monitor_pid as i32);
    assert!(monitor > 0, "no monitor pid: {running:?}");
    // The monitor is in a leaf of the container's cpu cgroup, and in none
    // of its other cgroups.
    let container_cgroups = cgroup_lines(init);
    for (controllers, path) in cgroup_lines(monitor) {
        let used = controllers.is_empty()
            || controllers
                .split(',')
                .any(|c| ["memory", "pids", "cpu"].contains(&c));
        let theirs = container_cgroups.iter().find(|(c, _)| *c == controllers);
        let Some((_, theirs)) = theirs.filter(|_| used) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "cpu") {
            assert_eq!(path, format!("{theirs}/monitor"), "cpu cgroup");
        } else {
            assert!(
                !path.starts_with(theirs.as_str()),
                "monitor in the container's {controllers:?} cgroup {path}"
            );
        }
    }
    // Let the flood settle first: the log fills, rotation starts.
    wait_for(SHORT, "the log to fill", || {
        fs::metadata(world.container_log("yes")).is_ok_and(|m| m.len() > 64 * 1024)
    });
    let running_start = proc_stat(init).expect("the init's stat").1;
    let monitor_start = proc_stat(monitor).expect("the monitor's stat").1;
    let t0 = Instant::now();
    let (init0, monitor0, logged0) = (cpu_ticks(init), cpu_ticks(monitor), written(monitor));
    holds_for(Duration::from_secs(10), "the container running", || {
        !is_gone(init, running_start) && !is_gone(monitor, monitor_start)
    });
    let (init1, monitor1, logged1) = (cpu_ticks(init), cpu_ticks(monitor), written(monitor));
    let wall = t0.elapsed().as_secs_f64();
    let hz = ticks_per_second();
    let container = (init1 - init0) as f64 / hz / wall;
    let logging = (monitor1 - monitor0) as f64 / hz / wall;
    eprintln!(
        "cpus 0.1, {wall:.1} s: container {:.1}% of a CPU, its monitor {:.1}%, \
         {:.2} MiB/s logged",
        container * 100.0,
        logging * 100.0,
        (logged1 - logged0) as f64 / wall / (1024.0 * 1024.0)
    );
    assert!(
        container + logging <= 0.1 + 0.05,
        "container {:.1}% + monitor {:.1}% of a CPU, over the limit of 10%",
        container * 100.0,
        logging * 100.0
    );
    world.berth_ok(&["stop", "yes", "--time", "0"]);
    // The monitor left its leaf and removed the container's cgroups.
    wait_for(SHORT, "the monitor to exit", || {
        is_gone(monitor, monitor_start)
    });
    for root in world.cgroup_roots() {
        let left: Vec<_> = cgroups::subtree(&root)
            .into_iter()
            .filter(|d| d.components().any(|c| c.as_os_str() == "yes"))
            .collect();
        assert!(left.is_empty(), "cgroups left: {left:?}");
    }
}
