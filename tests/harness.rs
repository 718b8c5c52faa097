//! Tests of the test harness itself, none of which needs the daemon: the
//! world's layout and busybox rootfs, config merging, cgroup discovery on
//! fake /proc files, and that dropping a world kills, unmounts and removes
//! everything it owns, even processes that escaped into new sessions.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::Command;

use common::cgroups::{self, CgroupMount};
use common::{SHORT, World, is_rfc3339, json, wait_for};

#[test]
fn world_has_layout_and_a_runnable_busybox_rootfs() {
    let world = World::new();
    for dir in [
        world.containers_dir(),
        world.state_dir(),
        world.run_dir(),
        world.log_dir(),
    ] {
        assert!(dir.is_dir(), "{} missing", dir.display());
    }
    assert!(world.cgroup2_dir().join("cgroup.procs").is_file());
    let bin = world.rootfs().join("bin");
    assert_eq!(
        fs::read_link(bin.join("sh")).unwrap(),
        PathBuf::from("busybox")
    );
    for dir in common::rootfs::EMPTY_DIRS {
        assert!(world.rootfs().join(dir).is_dir(), "rootfs/{dir} missing");
    }
    // The rootfs runs on its own: chroot into it, run the shell and applets.
    let out = Command::new("chroot")
        .arg(world.rootfs())
        .args(["/bin/sh", "-c", "echo $((6 * 7)); seq 3 | wc -l; ls /"])
        .output()
        .expect("run chroot");
    assert!(out.status.success(), "{}", common::describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "42\n3\nbin\ndata\ndev\netc\nproc\nsys\ntmp\n"
    );
}

#[test]
fn daemon_json_extras_replace_and_extend_the_defaults() {
    let world = World::new();
    world.write_daemon_json(
        r#"{"log-level": "warn", "log-max-size": "4k", "mounts": [1, {"a": "b,c"}]}"#,
    );
    let text = fs::read_to_string(world.config_path()).unwrap();
    let members = json::members(&text);
    let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "containers-dir",
            "state-dir",
            "run-dir",
            "socket",
            "log-dir",
            "cgroup-parent",
            "live-restore",
            "log-level",
            "shutdown-timeout",
            "log-max-size",
            "mounts"
        ]
    );
    let value = |key: &str| members.iter().find(|(k, _)| k == key).unwrap().1.clone();
    assert_eq!(value("log-level"), r#""warn""#);
    assert_eq!(value("mounts"), r#"[1, {"a": "b,c"}]"#);
    assert_eq!(
        value("socket"),
        json::string(world.socket().to_str().unwrap())
    );
    assert_eq!(json::string("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
}

#[test]
fn cgroup_hierarchies_are_found_on_a_hybrid_host() {
    let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
    let proc_cgroup = "\
9:name=systemd:/user.slice
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/
";
    let found = cgroups::parse_hierarchies(proc_cgroup, &cgroups::parse_cgroup_mounts(mountinfo));
    let dirs: Vec<(PathBuf, bool)> = found.iter().map(|h| (h.own_dir(), h.v2)).collect();
    assert_eq!(
        dirs,
        [
            (PathBuf::from("/sys/fs/cgroup/systemd/user.slice"), false),
            (
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"),
                false
            ),
            (PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"), false),
            (PathBuf::from("/sys/fs/cgroup/unified"), true),
        ]
    );
}

#[test]
fn cgroup2_is_found_on_a_pure_v2_host_with_a_namespaced_root() {
    let mountinfo = "\
25 1 0:23 /system.slice /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
26 1 0:24 /a\\040b /mnt/odd\\040dir rw - ext4 /dev/sda1 rw
";
    let mounts = cgroups::parse_cgroup_mounts(mountinfo);
    assert_eq!(
        mounts,
        [CgroupMount {
            root: "/system.slice".into(),
            mount_point: "/sys/fs/cgroup".into(),
            v2: true,
            options: vec!["rw".into()],
        }]
    );
    let found = cgroups::parse_hierarchies("0::/system.slice/ssh.service\n", &mounts);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].own_dir(),
        PathBuf::from("/sys/fs/cgroup/ssh.service")
    );
    // A cgroup outside the mount's root is not visible through it.
    assert!(cgroups::parse_hierarchies("0::/user.slice\n", &mounts).is_empty());
    assert_eq!(
        cgroups::mount_points(mountinfo),
        [
            PathBuf::from("/sys/fs/cgroup"),
            PathBuf::from("/mnt/odd dir")
        ]
    );
}

#[test]
fn dropping_a_world_kills_unmounts_and_removes_everything() {
    let world = World::new();
    let root = world.root.clone();
    let roots = world.cgroup_roots();

    // A process in the world's cgroup2 dir that double-forks into a new
    // session, the way a daemon's monitor escapes its parent.
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        "setsid sh -c 'sleep 1000 & sleep 1000' & exec sleep 1000",
    ]);
    let direct = world.spawn_in_world(cmd, "escaping sleepers");
    wait_for(SHORT, "4 sleepers in the world's cgroup", || {
        world.procs().len() >= 4
    });

    // One process in a child cgroup of the cgroup-parent in every hierarchy,
    // the way berth places containers.
    let mut placed = Vec::new();
    for parent in &roots[1..] {
        let dir = parent.join("c1");
        fs::create_dir_all(&dir).unwrap();
        copy_cpuset(parent);
        copy_cpuset(&dir);
        let child = world.spawn_in_world(sleeper(), "placed sleeper");
        let pid = child.child.id();
        fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", dir.display()));
        placed.push(child);
    }

    // A mount under the world dir.
    let mnt = root.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success());
    symlink("/nowhere", root.join("dangling")).unwrap();

    let pids: Vec<(i32, u64)> = world
        .procs()
        .into_iter()
        .filter_map(|pid| Some((pid, common::proc_stat(pid).ok()?.1)))
        .collect();
    assert!(pids.len() >= 4 + placed.len(), "pids {pids:?}");

    drop(world);

    for (pid, start) in &pids {
        wait_for(SHORT, &format!("pid {pid} to be gone"), || {
            common::is_gone(*pid, *start)
        });
    }
    for dir in &roots {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
    assert!(!root.exists(), "{} still exists", root.display());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !cgroups::mount_points(&mountinfo)
            .iter()
            .any(|p| p.starts_with(&root))
    );
    drop((direct, placed));
}

fn sleeper() -> Command {
    let mut cmd = Command::new("sleep");
    cmd.arg("1000");
    cmd
}

/// A new v1 cpuset cgroup takes no tasks until it has cpus and mems.
fn copy_cpuset(dir: &std::path::Path) {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let parent = dir.parent().unwrap().join(file);
        if let (Ok(value), true) = (fs::read_to_string(&parent), dir.join(file).exists()) {
            fs::write(dir.join(file), value.trim()).unwrap();
        }
    }
}

#[test]
fn rfc3339_checker_accepts_times_and_rejects_the_rest() {
    for good in [
        "2026-11-26T22:51:03Z",
        "2026-11-26T22:51:03.123456789Z",
        "2026-11-26T22:51:03+01:00",
    ] {
        assert!(is_rfc3339(good), "{good}");
    }
    for bad in [
        "",
        "2026-11-26 22:51:03Z",
        "2026-11-26T22:51:03",
        "2026-11-26T22:51:03.Z",
        "26-11-26T22:51:03Z",
        "12345",
    ] {
        assert!(!is_rfc3339(bad), "{bad}");
    }
}
