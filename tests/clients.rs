//! Who may talk to the daemon and how many at once, through the real
//! binary: the API socket's mode and group whatever the daemon's umask,
//! peers checked by their credentials, idle connections closed, waiting
//! clients that cannot starve the others, and the run-dir lock, which no
//! child of the daemon may keep after the daemon is gone.

// nanoserde's derived code trips this lint; it is not ours to rewrite.
#![allow(clippy::question_mark)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// A cgroup2 directory below the world's, frozen and thawed by the test
/// (cgroup.freeze); thawed again when dropped.
struct Freezer {
    dir: PathBuf,
}

impl Freezer {
    fn new(world: &World, name: &str) -> Freezer {
        let dir = world.cgroup2_dir().join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Freezer { dir }
    }

    fn set(&self, frozen: bool) {
        let file = self.dir.join("cgroup.freeze");
        fs::write(&file, if frozen { "1" } else { "0" })
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }

    /// Freezes every process in the cgroup and waits until they all are.
    fn freeze(&self) {
        self.set(true);
        let events = self.dir.join("cgroup.events");
        wait_for(SHORT, "the cgroup to be frozen", || {
            fs::read_to_string(&events)
                .unwrap_or_default()
                .lines()
                .any(|l| l == "frozen 1")
        });
    }

    fn thaw(&self) {
        self.set(false);
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("cgroup.freeze"), "0");
    }
}

/// The processes in `dir`, other than `daemon`, that hold an fd on `lock`:
/// children of the daemon between clone and exec.
fn lock_holders(dir: &Path, daemon: u32, lock: &Path) -> Vec<i32> {
    common::cgroups::procs(dir)
        .into_iter()
        .filter(|&pid| pid != daemon as i32)
        .filter(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == lock))
        })
        .collect()
}

/// Connects and writes one request line, leaving the answer unread.
fn send(socket: &Path, request: &str) -> UnixStream {
    let mut stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    stream
        .write_all(format!("{request}\n").as_bytes())
        .expect("write the request");
    stream
}

/// Waits until the daemon answers `ps`; panics with its log if it exits
/// first.
fn wait_ready(world: &World, daemon: &mut Daemon) {
    let end = Instant::now() + SHORT;
    loop {
        if let Some(status) = daemon.try_status() {
            panic!(
                "berth daemon exited with {status} before answering; stderr:\n{}",
                daemon.stderr()
            );
        }
        // A socket a dead daemon's child still holds may accept and
        // never answer: read with a timeout.
        let ps = UnixStream::connect(world.socket()).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            s.write_all(b"{\"verb\":\"ps\"}\n")?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        });
        if ps.is_ok_and(|a| a.contains("\"ok\":true")) {
            return;
        }
        assert!(
            Instant::now() < end,
            "berth daemon did not answer within {SHORT:?}; stderr:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The lock on run-dir is the daemon's alone: a child it cloned and that
/// has not exec'd yet (a monitor being started) does not keep it once the
/// daemon is killed, so a daemon started at once gets in. The children
/// are caught between clone and exec by freezing the daemon's cgroup
/// while it starts containers, seen holding an fd on the lock file, and
/// kept frozen while the daemon is SIGKILLed and the next one starts.
#[test]
fn a_daemon_killed_while_starting_monitors_leaves_no_child_holding_its_lock() {
    const CONTAINERS: usize = 16;
    const WANTED: usize = 3;
    const MAX_ROUNDS: usize = 40;
    let world = World::new();
    world.write_daemon_json(r#"{"live-restore": true}"#);
    let names: Vec<String> = (0..CONTAINERS).map(|i| format!("c{i}")).collect();
    for name in &names {
        world.add_container(name, &["/bin/true"], r#"{"autostart": false}"#);
    }
    let lock = world.run_dir().join("berth.lock");
    let cgroups = [Freezer::new(&world, "a"), Freezer::new(&world, "b")];
    let mut daemon = world.spawn_daemon_in(&cgroups[0].dir, &[]);
    wait_ready(&world, &mut daemon);
    let mut caught = 0;
    let mut rounds = 0;
    while caught < WANTED && rounds < MAX_ROUNDS {
        let (here, next) = (&cgroups[rounds % 2], &cgroups[(rounds + 1) % 2]);
        rounds += 1;
        let _clients: Vec<UnixStream> = names
            .iter()
            .map(|n| {
                send(
                    &world.socket(),
                    &format!(r#"{{"verb":"start","name":"{n}"}}"#),
                )
            })
            .collect();
        // Snapshots until one shows a child holding the lock, or the
        // starts are over; the cgroup stays frozen after the last one.
        let end = Instant::now() + Duration::from_secs(1);
        let holders = loop {
            here.freeze();
            let holders = lock_holders(&here.dir, daemon.pid(), &lock);
            if !holders.is_empty() || Instant::now() > end {
                break holders;
            }
            here.thaw();
        };
        daemon.kill_9();
        let mut successor = world.spawn_daemon_in(&next.dir, &[]);
        let started = Instant::now();
        wait_ready(&world, &mut successor);
        let took = started.elapsed();
        here.thaw();
        if !holders.is_empty() {
            caught += 1;
            eprintln!(
                "round {rounds}: children {holders:?} of the killed daemon held {}; the next daemon answered after {took:?}",
                lock.display()
            );
        }
        daemon = successor;
    }
    eprintln!("{caught} of {rounds} rounds caught a child between clone and exec");
    assert!(
        caught > 0,
        "no round caught a child of the daemon between clone and exec: the test showed nothing"
    );
}
