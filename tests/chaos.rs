//! The daemon killed at random instants while it starts, stops, reloads
//! and restarts containers, many times over; after each death the next
//! daemon must arrive at a state where the invariants of live restore
//! hold: at most one run per name, every run known to `ps` with the
//! monitor that really runs it, no process in a container's cgroup that
//! no run accounts for, and every ended run with an exit code or a stated
//! reason. At the end, once everything is stopped, no cgroup and no mount
//! is left.
//!
//! BERTH_CHAOS_ROUNDS sets the number of rounds (default 30);
//! BERTH_TEST_SEED replays a run (the seed is printed).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

const NAMES: &[&str] = &["always", "flaky", "manual", "reloaded"];

/// `berth monitor NAME` processes in the world, by name.
fn monitors(w: &World) -> BTreeMap<String, Vec<i32>> {
    let mut found: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for pid in w.procs() {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if let [b"berth", b"monitor", name, b""] = args[..] {
            found
                .entry(String::from_utf8_lossy(name).into_owned())
                .or_default()
                .push(pid);
        }
    }
    found
}

/// The cgroup directories of container `name` in every hierarchy.
fn cgroup_dirs(w: &World, name: &str) -> Vec<PathBuf> {
    w.cgroup_roots()
        .iter()
        .flat_map(|r| common::cgroups::subtree(r))
        .filter(|d| {
            d.file_name().is_some_and(|f| f == name)
                && d.parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|p| p == w.cgroup_parent.as_str())
        })
        .collect()
}

/// What must hold once the daemon has settled; the first violation.
fn invariants(w: &World) -> Result<(), String> {
    let ps = w.ps();
    let monitors = monitors(w);
    for name in NAMES {
        let theirs = monitors.get(*name).cloned().unwrap_or_default();
        if theirs.len() > 1 {
            let about: Vec<String> = theirs
                .iter()
                .map(|p| {
                    let status =
                        fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
                    let keep = |l: &&str| {
                        ["State", "PPid", "NSpid", "SigBlk"]
                            .iter()
                            .any(|k| l.starts_with(k))
                    };
                    format!(
                        "{p}: {}",
                        status.lines().filter(keep).collect::<Vec<_>>().join(" ")
                    )
                })
                .collect();
            return Err(format!("{name}: {} monitors: {about:?}", theirs.len()));
        }
        let shown = ps
            .iter()
            .find(|i| i.name == *name)
            .ok_or_else(|| format!("{name}: not in ps"))?;
        let known = (shown.monitor_pid != 0).then_some(shown.monitor_pid as i32);
        if theirs.first().copied() != known {
            return Err(format!(
                "{name}: monitor {theirs:?}, ps says {known:?} ({shown:?})"
            ));
        }
        if shown.status == "running" && shown.pid == 0 {
            return Err(format!("{name}: running without a pid ({shown:?})"));
        }
        let in_cgroups = common::cgroups::procs_below(&cgroup_dirs(w, name));
        if !in_cgroups.is_empty() && known.is_none() {
            return Err(format!(
                "{name}: processes {in_cgroups:?} in its cgroups, but no run ({shown:?})"
            ));
        }
        if matches!(shown.status.as_str(), "exited" | "failed")
            && shown.exit_code.is_none()
            && shown.error.is_none()
        {
            return Err(format!(
                "{name}: ended with neither code nor reason ({shown:?})"
            ));
        }
    }
    Ok(())
}

fn settle(w: &World, round: usize, what: &str) {
    let end = Instant::now() + SHORT;
    loop {
        match invariants(w) {
            Ok(()) => return,
            Err(e) if Instant::now() > end => {
                panic!("round {round} ({what}): {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn answering_daemon(w: &World) -> Daemon {
    let mut daemon = w.spawn_daemon(&[]);
    wait_for(SHORT, "the daemon to answer", || {
        assert!(
            daemon.try_status().is_none(),
            "the daemon exited: {}",
            daemon.stderr()
        );
        w.berth(&["ps"]).status.success()
    });
    daemon
}

#[test]
fn the_daemon_killed_at_random_instants_never_breaks_the_invariants() {
    let rounds: usize = std::env::var("BERTH_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut next = rng();
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("always", POLITE, r#"{"restart": "always"}"#);
    w.add_container(
        "flaky",
        &["/bin/sh", "-c", "sleep 0.1; exit 3"],
        r#"{"restart": "on-failure"}"#,
    );
    w.add_container("manual", POLITE, r#"{"autostart": false}"#);
    let reloaded = |n: u64| format!(r#"{{"env": ["GENERATION={n}"]}}"#);
    w.add_container("reloaded", POLITE, &reloaded(0));

    let mut daemon = answering_daemon(&w);
    let mut clients = Vec::new();
    for round in 0..rounds {
        let op = match next(6) {
            0 => {
                clients.push(w.spawn_berth(&["start", "manual"]));
                "start manual"
            }
            1 => {
                clients.push(w.spawn_berth(&["stop", "--time", "1", "manual"]));
                "stop manual"
            }
            2 => {
                clients.push(w.spawn_berth(&["restart", "always"]));
                "restart always"
            }
            3 => {
                w.add_container("reloaded", POLITE, &reloaded(round as u64 + 1));
                daemon.signal(libc::SIGHUP);
                "reload"
            }
            4 => {
                clients.push(w.spawn_berth(&["stop", "always"]));
                "stop always"
            }
            _ => {
                clients.push(w.spawn_berth(&["start", "always"]));
                "start always"
            }
        };
        let delay = Duration::from_micros(next(25_000));
        std::thread::sleep(delay);
        let what = format!("{op}, daemon killed after {delay:?}");
        if next(5) == 0 {
            daemon.signal(libc::SIGTERM);
            daemon.wait_exit(SHORT);
        } else {
            daemon.kill_9();
        }
        for client in clients.drain(..) {
            // Its daemon died under it: any outcome but a hang will do.
            client.finish(SHORT);
        }
        daemon = answering_daemon(&w);
        settle(&w, round, &what);
    }

    // Everything stopped by the last daemon: nothing of any run is left.
    for name in NAMES {
        w.berth(&["stop", "--time", "1", name]);
    }
    wait_for(SHORT, "every monitor to end", || monitors(&w).is_empty());
    wait_for(SHORT, "every container cgroup to be removed", || {
        NAMES.iter().all(|n| cgroup_dirs(&w, n).is_empty())
    });
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let stale: Vec<&str> = mountinfo
        .lines()
        .filter(|l| l.contains(w.root.to_str().unwrap()))
        .collect();
    assert!(stale.is_empty(), "mounts left on the host: {stale:?}");
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(SHORT);
}
