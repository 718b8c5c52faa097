//! A container's root from an image file, through the real binary, on real
//! loop devices: squashfs and erofs images built here from the busybox
//! rootfs run read-only, and with a writable layer that is thrown away at
//! each start (`tmpfs`) or kept under state-dir across restarts and a
//! daemon's kill -9 (`persistent`); a rootfs directory under a writable
//! layer is never written; `berth rm` removes a persistent layer only once
//! the definition is gone; bad definitions are named by file and field;
//! and after a stop, a kill -9 of the monitor and a removal no loop device
//! stays attached to the image and no mount of it remains.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::images::{LoopGuard, loops_backed_by, mkfs_erofs, mksquashfs, mounts_mentioning};
use common::*;

/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// The images of one world, built from its busybox rootfs.
struct Images {
    dir: PathBuf,
    squashfs: PathBuf,
    erofs: PathBuf,
}

impl Images {
    fn build(w: &World) -> Images {
        let dir = w.root.join("images");
        fs::create_dir_all(&dir).unwrap();
        let squashfs = dir.join("app.sqfs");
        let erofs = dir.join("app.erofs");
        mksquashfs(&w.rootfs(), &squashfs);
        mkfs_erofs(&w.rootfs(), &erofs);
        Images {
            dir,
            squashfs,
            erofs,
        }
    }

    fn both(&self) -> [(&'static str, &Path); 2] {
        [("squashfs", &self.squashfs), ("erofs", &self.erofs)]
    }
}

fn path_str(p: &Path) -> String {
    json::string(p.to_str().expect("utf-8 path"))
}

/// A definition whose root is `image`, running `command`, with the
/// members of `extra` added.
fn image_json(image: &Path, command: &[&str], extra: &str) -> String {
    let base = format!(
        "{{\"image\": {}, \"command\": {}}}",
        path_str(image),
        json::string_array(command)
    );
    json::merge(&base, extra)
}

fn sh(script: &str) -> Vec<&str> {
    vec!["/bin/sh", "-c", script]
}

/// The container's whole log so far (stdout and stderr).
fn log_of(w: &World, name: &str) -> String {
    let (out, err) = w.logs(name, &[]);
    format!("{out}{err}")
}

fn wait_log(w: &World, name: &str, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    wait_for(SHORT, what, || {
        last = log_of(w, name);
        cond(&last)
    });
    last
}

/// The monitor of a running container, with its start time (so a check
/// that it is gone cannot be fooled by a reused pid).
fn monitor_of(w: &World, name: &str) -> (u32, u64) {
    let info = w.wait_running(name);
    let (_, start) = proc_stat(info.monitor_pid as i32).expect("monitor's /proc stat");
    (info.monitor_pid, start)
}

/// While the container runs: the image is on exactly one loop device, the
/// root is mounted in the container's namespace (as its "/"), and nothing
/// of it is in the monitor's (back in the host's once the container was
/// cloned) or the test's.
fn assert_held(w: &World, name: &str, image: &Path, monitor: u32) {
    let loops = loops_backed_by(image);
    assert_eq!(
        loops.len(),
        1,
        "loop devices of {}: {loops:?}",
        image.display()
    );
    let run = w.run_dir().join("containers").join(name);
    let run = run.to_str().unwrap();
    let dev = loops[0].to_str().unwrap();
    // The container's "/" is the image (read-only) or the overlay on it.
    let init = w.inspect(name).pid;
    let mountinfo = fs::read_to_string(format!("/proc/{init}/mountinfo")).unwrap();
    let root_fs = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default()
        .to_string();
    assert!(
        ["squashfs", "erofs", "overlay"].contains(&root_fs.as_str()),
        "the container's root is {root_fs:?}:\n{mountinfo}"
    );
    let monitor = monitor.to_string();
    assert_eq!(
        fs::read_link(format!("/proc/{monitor}/ns/mnt")).unwrap(),
        fs::read_link("/proc/self/ns/mnt").unwrap(),
        "the monitor is not back in the host's mount namespace"
    );
    for (who, pid) in [
        ("the monitor's namespace", monitor.as_str()),
        ("the host", "self"),
    ] {
        assert!(
            mounts_mentioning(pid, dev).is_empty(),
            "{dev} is mounted in {who}"
        );
        assert!(
            mounts_mentioning(pid, run).is_empty(),
            "a mount under {run} is in {who}"
        );
    }
}

/// After a run: its monitor is gone (and with it its mount namespace), no
/// loop device is backed by `image` (a file, or a directory of them) and
/// no mount of the world's run directory or images is left on the host.
fn assert_released(w: &World, image: &Path, monitor: (u32, u64)) {
    wait_for(SHORT, "the monitor to be gone", || {
        is_gone(monitor.0 as i32, monitor.1)
    });
    wait_for(SHORT, "the loop devices to be released", || {
        loops_backed_by(image).is_empty()
    });
    assert_no_host_mounts(w);
}

fn assert_no_host_mounts(w: &World) {
    for needle in [w.run_dir(), w.root.join("images"), w.state_dir()] {
        let left = mounts_mentioning("self", needle.to_str().unwrap());
        assert!(left.is_empty(), "mounts left on the host: {left:?}");
    }
}

#[test]
fn images_run_read_only() {
    let mut w = World::new();
    let images = Images::build(&w);
    let _loops = LoopGuard {
        dir: images.dir.clone(),
    };
    let script = "cat /bin/busybox > /dev/null && echo read-ok; \
                  touch /new 2>&1; echo touch=$?; \
                  mount | grep ' / '";
    for (kind, image) in images.both() {
        w.write_container(kind, &image_json(image, &sh(script), ON_DEMAND));
    }
    w.write_container(
        "none",
        &image_json(
            &images.squashfs,
            &sh(script),
            &json::merge(ON_DEMAND, r#"{"writable": "none"}"#),
        ),
    );
    let _d = w.start_daemon(&[]);
    for (name, fs_type) in [
        ("squashfs", "squashfs"),
        ("erofs", "erofs"),
        ("none", "squashfs"),
    ] {
        assert_eq!(w.start_wait(name), 0, "{}", log_of(&w, name));
        let log = log_of(&w, name);
        assert!(log.contains("read-ok"), "{name}: {log}");
        assert!(log.contains("Read-only file system"), "{name}: {log}");
        assert!(log.contains("touch=1"), "{name}: {log}");
        assert!(
            log.contains(&format!("type {fs_type} (ro")),
            "{name}: {log}"
        );
    }
    wait_for(SHORT, "the loop devices to be released", || {
        loops_backed_by(&images.dir).is_empty()
    });
    w.cleanup().unwrap();
}

#[test]
fn writable_layers() {
    let mut w = World::new();
    let images = Images::build(&w);
    let _loops = LoopGuard {
        dir: images.dir.clone(),
    };
    // Each run says whether the last run's file is there, then writes it
    // and stays up.
    let script = "if test -e /mark; then echo found; else echo absent; fi; \
                  echo run >> /mark; echo runs=$(wc -l < /mark); exec sleep 1000";
    for (kind, image) in images.both() {
        for mode in ["tmpfs", "persistent"] {
            let extra =
                format!(r#"{{"autostart": false, "writable": "{mode}", "stop-timeout": 1}}"#);
            w.write_container(
                &format!("{kind}-{mode}"),
                &image_json(image, &sh(script), &extra),
            );
        }
    }
    w.write_daemon_json(r#"{"live-restore": true}"#);
    let mut daemon = w.start_daemon(&[]);
    for (kind, image) in images.both() {
        let name = format!("{kind}-tmpfs");
        w.berth_ok(&["start", &name]);
        let monitor = monitor_of(&w, &name);
        assert_held(&w, &name, image, monitor.0);
        wait_log(&w, &name, "first run", |l| l.contains("runs=1"));
        w.berth_ok(&["restart", &name]);
        let log = wait_log(&w, &name, "second run", |l| {
            l.matches("runs=1").count() == 2
        });
        assert!(
            !log.contains("found"),
            "{name}: the tmpfs layer survived: {log}"
        );
        let monitor = monitor_of(&w, &name);
        w.berth_ok(&["stop", &name]);
        assert_released(&w, image, monitor);
        // Nothing of a tmpfs layer stays on disk.
        assert!(!w.state_dir().join("writable").join(&name).exists());

        let name = format!("{kind}-persistent");
        w.berth_ok(&["start", &name]);
        wait_log(&w, &name, "first run", |l| l.contains("runs=1"));
        w.berth_ok(&["restart", &name]);
        wait_log(&w, &name, "second run", |l| {
            l.contains("found") && l.contains("runs=2")
        });
        let upper = w
            .state_dir()
            .join("writable")
            .join(&name)
            .join("upper/mark");
        assert_eq!(fs::read_to_string(&upper).unwrap(), "run\nrun\n");
    }

    // A daemon killed with -9 and a new one: the layers are still there.
    daemon.kill_9();
    let _daemon = w.start_daemon(&[]);
    for (kind, image) in images.both() {
        let name = format!("{kind}-persistent");
        let monitor = monitor_of(&w, &name);
        w.berth_ok(&["restart", &name]);
        wait_log(&w, &name, "third run", |l| l.contains("runs=3"));
        wait_for(SHORT, "the old monitor to be gone", || {
            is_gone(monitor.0 as i32, monitor.1)
        });
        // The new run holds the image once; the old one's device is gone.
        wait_for(SHORT, "one loop device for the image", || {
            loops_backed_by(image).len() == 1
        });
        let monitor = monitor_of(&w, &name);
        assert_held(&w, &name, image, monitor.0);
        w.berth_ok(&["stop", &name]);
        assert_released(&w, image, monitor);
        let upper = w
            .state_dir()
            .join("writable")
            .join(&name)
            .join("upper/mark");
        assert_eq!(fs::read_to_string(&upper).unwrap(), "run\nrun\nrun\n");
    }
    w.cleanup().unwrap();
}

#[test]
fn a_rootfs_directory_under_a_writable_layer_is_never_written() {
    let mut w = World::new();
    let script = "echo hello > /written && cat /written && rm /bin/true && echo removed";
    w.add_container(
        "tmpfs",
        &sh(script),
        &json::merge(ON_DEMAND, r#"{"writable": "tmpfs"}"#),
    );
    w.add_container(
        "none",
        &sh("touch /written 2>&1; echo touch=$?"),
        &json::merge(ON_DEMAND, r#"{"writable": "none"}"#),
    );
    let _d = w.start_daemon(&[]);
    assert_eq!(w.start_wait("tmpfs"), 0, "{}", log_of(&w, "tmpfs"));
    let log = log_of(&w, "tmpfs");
    assert!(log.contains("hello") && log.contains("removed"), "{log}");
    assert!(!w.rootfs().join("written").exists());
    assert!(fs::symlink_metadata(w.rootfs().join("bin/true")).is_ok());
    assert_eq!(w.start_wait("none"), 0);
    let log = log_of(&w, "none");
    assert!(
        log.contains("Read-only file system") && log.contains("touch=1"),
        "{log}"
    );
    assert!(!w.rootfs().join("written").exists());
    w.cleanup().unwrap();
}

#[test]
fn leaks_after_stop_monitor_kill_and_removal() {
    let mut w = World::new();
    let images = Images::build(&w);
    let _loops = LoopGuard {
        dir: images.dir.clone(),
    };
    let extra = r#"{"autostart": false, "restart": "no", "writable": "tmpfs", "stop-timeout": 1}"#;
    w.write_container(
        "app",
        &image_json(&images.squashfs, &["/bin/sleep", "1000"], extra),
    );
    let _d = w.start_daemon(&[]);

    // Stop.
    w.berth_ok(&["start", "app"]);
    let monitor = monitor_of(&w, "app");
    assert_held(&w, "app", &images.squashfs, monitor.0);
    w.berth_ok(&["stop", "app"]);
    assert_released(&w, &images.squashfs, monitor);

    // kill -9 of the monitor.
    w.berth_ok(&["start", "app"]);
    let monitor = monitor_of(&w, "app");
    assert_held(&w, "app", &images.squashfs, monitor.0);
    // The pid is the monitor's, checked by its start time just before.
    assert_eq!(proc_stat(monitor.0 as i32).unwrap().1, monitor.1);
    // SAFETY: kill takes plain arguments.
    assert_eq!(unsafe { libc::kill(monitor.0 as i32, libc::SIGKILL) }, 0);
    assert_released(&w, &images.squashfs, monitor);
    w.wait_inspect("app", "the run to end", SHORT, |i| !i.is_running());

    // Removal: the definition goes, a reload stops the container.
    w.berth_ok(&["start", "app"]);
    let monitor = monitor_of(&w, "app");
    fs::remove_file(w.containers_dir().join("app.json")).unwrap();
    w.berth_ok(&["reload"]);
    assert_released(&w, &images.squashfs, monitor);
    w.cleanup().unwrap();
}

#[test]
fn rm_removes_a_persistent_layer_only_once_the_definition_is_gone() {
    let mut w = World::new();
    let images = Images::build(&w);
    let _loops = LoopGuard {
        dir: images.dir.clone(),
    };
    // Ignores SIGTERM: a stop takes its whole stop-timeout.
    let script = "trap '' TERM; echo data > /kept; while :; do sleep 0.05; done";
    let extra = r#"{"autostart": false, "writable": "persistent", "stop-timeout": 3}"#;
    let file = w.containers_dir().join("app.json");
    w.write_container("app", &image_json(&images.erofs, &sh(script), extra));
    let _d = w.start_daemon(&[]);
    let layer = w.state_dir().join("writable/app");
    w.berth_ok(&["start", "app"]);
    wait_for(SHORT, "the file in the layer", || {
        layer.join("upper/kept").exists()
    });

    let refused = |want: &str| {
        let out = w.berth(&["rm", "app"]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "want {want:?}: {err}");
        assert!(layer.join("upper/kept").exists());
    };
    let defined = format!(
        "app is defined in {}; remove the file and reload first",
        file.display()
    );
    refused(&defined);
    w.berth_ok(&["stop", "app"]);
    refused(&defined);

    // Removed while running: the stop under way keeps it from rm.
    w.berth_ok(&["start", "app"]);
    let monitor = monitor_of(&w, "app");
    fs::remove_file(&file).unwrap();
    w.berth_ok(&["reload"]);
    refused("app still runs");
    assert_released(&w, &images.squashfs, monitor);
    wait_for(SHORT, "the container forgotten", || {
        w.try_inspect("app").is_none()
    });
    // Neither the stop nor the reload that removed it took the layer.
    assert_eq!(
        fs::read_to_string(layer.join("upper/kept")).unwrap(),
        "data\n"
    );

    // A process left in the container's cgroup (as a run this daemon could
    // not trust and let go would be) keeps rm off the layer.
    // In the memory hierarchy (v1), where the daemon's cgroup-parent lies
    // below this test's own cgroup as it does below the daemon's.
    let memory = common::cgroups::hierarchies()
        .unwrap()
        .into_iter()
        .find(|h| h.controllers.iter().any(|c| c == "memory"))
        .expect("a v1 memory hierarchy (this host is hybrid)");
    let stray = memory.own_dir().join(&w.cgroup_parent).join("app");
    fs::create_dir_all(&stray).unwrap();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    fs::write(stray.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    let out = w.berth(&["rm", "app"]);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    wait_for(SHORT, "the stray cgroup removed", || {
        fs::remove_dir(&stray).is_ok()
    });
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        err.contains(&format!(
            "app still has processes in cgroup {}; end them first",
            stray.display()
        )),
        "{err}"
    );
    assert!(layer.join("upper/kept").exists());

    let logs = w.log_dir().join("app");
    assert!(logs.exists());
    let out = w.berth_ok(&["rm", "app"]);
    assert!(out.contains("removed writable layer"), "{out}");
    assert!(out.contains("removed logs"), "{out}");
    assert!(!layer.exists() && !logs.exists());
    let out = w.berth(&["rm", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such container: app"),
        "{}",
        describe(&out)
    );
    w.cleanup().unwrap();
}

#[test]
fn a_replaced_image_is_a_changed_definition() {
    let mut w = World::new();
    let images = Images::build(&w);
    let _loops = LoopGuard {
        dir: images.dir.clone(),
    };
    let script = "cat /etc/version 2>/dev/null || echo version=1; \
                  trap 'exit 0' TERM; while :; do sleep 0.05; done";
    let extra = r#"{"restart": "no", "stop-timeout": 2}"#;
    w.write_container("app", &image_json(&images.squashfs, &sh(script), extra));
    let _d = w.start_daemon(&[]);
    let first = w.wait_running("app");
    wait_log(&w, "app", "the first run", |l| l.contains("version=1"));
    let out = w.berth_ok(&["reload"]);
    assert!(
        !out.contains("app"),
        "an unchanged image changed the definition: {out}"
    );
    assert_eq!(w.wait_running("app").pid, first.pid);

    // The update agent's way: a new file renamed over the old one. The
    // running container keeps the old image until it is recreated.
    fs::write(w.rootfs().join("etc/version"), "version=2\n").unwrap();
    let new = images.dir.join("app.sqfs.new");
    mksquashfs(&w.rootfs(), &new);
    fs::rename(&new, &images.squashfs).unwrap();
    assert_eq!(w.inspect("app").pid, first.pid);
    let out = w.berth_ok(&["reload"]);
    assert!(out.contains("app: changed, recreating"), "{out}");
    let second = w.wait_inspect("app", "a new run", SHORT, |i| {
        i.is_running() && i.pid != first.pid
    });
    wait_log(&w, "app", "the new image", |l| l.contains("version=2"));
    // Only the new image is on a loop device now.
    wait_for(SHORT, "the old image released", || {
        loops_backed_by(&images.dir).len() == 1
    });
    let monitor = monitor_of(&w, "app");
    assert_eq!(monitor.0, second.monitor_pid);
    w.berth_ok(&["stop", "app"]);
    assert_released(&w, &images.dir, monitor);
    w.cleanup().unwrap();
}

#[test]
fn bad_definitions_are_named_by_file_and_field() {
    let mut w = World::new();
    let images = w.root.join("images");
    fs::create_dir_all(&images).unwrap();
    let not_image = images.join("text.img");
    fs::write(&not_image, "x".repeat(4096)).unwrap();
    let squashfs = images.join("app.sqfs");
    mksquashfs(&w.rootfs(), &squashfs);
    let _loops = LoopGuard {
        dir: images.clone(),
    };
    let rootfs = path_str(&w.rootfs());
    let image = path_str(&squashfs);
    let cases = [
        (
            format!(r#"{{"image": {image}, "rootfs": {rootfs}, "command": ["x"]}}"#),
            "field \"image\": give one of \"image\" and \"rootfs\", not both".to_string(),
        ),
        (
            r#"{"command": ["x"]}"#.to_string(),
            "field \"rootfs\": required key is missing (give \"rootfs\" or \"image\")".to_string(),
        ),
        (
            format!(
                r#"{{"rootfs": {rootfs}, "command": ["x"], "verity": {{"root-hash": "ab", "hash-offset": 4096}}}}"#
            ),
            "field \"verity\": only allowed with \"image\"".to_string(),
        ),
        (
            format!(r#"{{"image": {image}, "command": ["x"], "writable": "overlay"}}"#),
            "field \"writable\": expected \"none\", \"tmpfs\" or \"persistent\", found \"overlay\""
                .to_string(),
        ),
        (
            format!(r#"{{"image": {}, "command": ["x"]}}"#, path_str(&not_image)),
            format!(
                "field \"image\": {}: is not a squashfs or erofs image",
                not_image.display()
            ),
        ),
    ];
    let _d = w.start_daemon(&[]);
    for (text, want) in cases {
        w.write_container("bad", &text);
        let out = w.berth(&["reload"]);
        assert_eq!(out.status.code(), Some(1), "{text}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let file = w.containers_dir().join("bad.json");
        assert!(
            err.contains(&format!("{}: {want}", file.display())),
            "{text}\nwant: {want}\ngot: {err}"
        );
    }
    w.cleanup().unwrap();
}
