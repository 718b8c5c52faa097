//! Resource limits as the kernel enforces them, through the real binary:
//! an out-of-memory kill and a refused fork are reported in `inspect` and
//! in the daemon's log, and a container's logging is charged to its own
//! CPU limit (its monitor runs in a leaf of the container's cpu cgroup,
//! outside its memory and pids cgroups).

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

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
}
