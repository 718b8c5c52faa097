//! Host devices passed into containers, through the real binary: a listed
//! device is usable at its target, however deep under /dev, with exactly
//! its permissions; a device node the rootfs holds (made here with mknod)
//! cannot be opened unless its numbers are listed or allowed by default;
//! the container's v1 devices cgroup lists the rules; nested `mounts`
//! targets are created inside the rootfs; bad entries are refused by file
//! and field, a path that is no device fails the start naming it; and the
//! container's cgroups are gone after it stops.
//!
//! On this kind of host (hybrid cgroups) a container without limits is in
//! cgroup2 alone, where the device program enforces the rules ("plain");
//! one with a limit v1 carries joins the v1 hierarchies too, and then both
//! the v1 controller and the program enforce them ("listed", with a pids
//! limit); the unit tests in src/container/devices.rs show each layer on
//! its own.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::cgroups::{cgroup_lines, hierarchies};
use common::*;

/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// Opens each (mode, path) in the container's shell and prints
/// "PATH MODE ok" or the shell's error ("can't open ...: REASON").
fn probe(opens: &[(&str, &str)]) -> String {
    opens
        .iter()
        .map(|(mode, path)| {
            format!("if ( exec 3{mode}{path} ); then echo '{path} {mode} ok'; fi; ")
        })
        .collect()
}

/// Makes a device node at `path` on the host (in the test's rootfs).
fn mknod(path: &Path, kind: &str, major: u32, minor: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = Command::new("mknod")
        .arg(path)
        .args([kind, &major.to_string(), &minor.to_string()])
        .output()
        .expect("run mknod");
    assert!(
        out.status.success(),
        "mknod {}: {}",
        path.display(),
        describe(&out)
    );
}

fn assert_ok(out: &str, line: &str) {
    assert!(out.lines().any(|l| l == line), "{line:?} not in:\n{out}");
}

/// Asserts the shell's open of `path` for reading ("<") or writing (">")
/// failed with EPERM (the device cgroup's answer; a nodev mount would say
/// "Permission denied").
fn assert_denied(out: &str, mode: &str, path: &str) {
    let verb = if mode == "<" { "open" } else { "create" };
    let line = out
        .lines()
        .find(|l| l.contains(&format!("can't {verb} {path}: ")))
        .unwrap_or_else(|| panic!("{path} ({mode}) was not refused:\n{out}"));
    assert!(line.ends_with("Operation not permitted"), "{line}");
}

/// Starts NAME, waits for it to exit and returns (exit code, stdout +
/// stderr).
fn run(w: &World, name: &str) -> (i32, String) {
    let code = w.start_wait(name);
    let (stdout, stderr) = w.logs(name, &[]);
    (code, format!("{stdout}{stderr}"))
}

/// Asserts `berth start NAME` fails with one line that contains every
/// one of `needles`, and returns it.
fn start_fails(w: &World, name: &str, needles: &[&str]) -> String {
    let out = w.berth(&["start", name]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    stderr
}

/// The directory of `pid`'s cgroup in the v1 hierarchy carrying
/// `controller`, and in the cgroup2 one.
fn cgroup_dirs(pid: i32, controller: &str) -> (PathBuf, PathBuf) {
    let all = hierarchies().unwrap();
    let lines = cgroup_lines(pid);
    let dir = |v2: bool| {
        let h = all
            .iter()
            .find(|h| {
                if v2 {
                    h.v2
                } else {
                    h.controllers.iter().any(|c| c == controller)
                }
            })
            .unwrap_or_else(|| panic!("no hierarchy for {controller} in {all:?}"));
        let (_, path) = lines
            .iter()
            .find(|(c, _)| {
                if v2 {
                    c.is_empty()
                } else {
                    c.split(',').any(|c| c == controller)
                }
            })
            .unwrap_or_else(|| panic!("no {controller} line in /proc/{pid}/cgroup"));
        h.mount.join(path.trim_start_matches('/'))
    };
    (dir(false), dir(true))
}

#[test]
fn a_listed_device_is_usable_with_its_permissions_and_an_unlisted_node_is_not() {
    let w = World::new();
    let rootfs = w.rootfs();
    // Nodes in the rootfs, as an image could carry them: tun (10:200, not
    // allowed by default), null (1:3, allowed by default) and loop0
    // (block 7:0). Opening tun or loop0 does nothing by itself.
    mknod(&rootfs.join("probe/tun"), "c", 10, 200);
    mknod(&rootfs.join("probe/null"), "c", 1, 3);
    mknod(&rootfs.join("probe/loop0"), "b", 7, 0);
    let opens = [
        ("<", "/dev/net/tun"),
        (">", "/dev/net/tun"),
        (">", "/dev/a/b/ctl"),
        ("<", "/dev/a/b/ctl"),
        ("<", "/probe/tun"),
        (">", "/probe/tun"),
        ("<", "/probe/null"),
        ("<", "/probe/loop0"),
        ("<", "/dev/zero"),
    ];
    let script = format!(
        "{} stat -c '%F %t:%T' /dev/net/tun; echo ready; exec sleep 1000",
        probe(&opens)
    );
    w.add_container(
        "listed",
        &["/bin/sh", "-c", &script],
        &json::merge(
            ON_DEMAND,
            r#"{"stop-signal": "SIGKILL", "pids": 64,
                "devices": [{"path": "/dev/net/tun", "permissions": "r"},
                            {"path": "/dev/loop-control", "target": "/dev/a/b/ctl", "permissions": "w"}]}"#,
        ),
    );
    w.add_container(
        "plain",
        &["/bin/sh", "-c", &format!("{} exit 0", probe(&opens))],
        ON_DEMAND,
    );
    let _daemon = w.start_daemon(&[]);

    // Unlisted: the node in the rootfs and /dev/net/tun are not usable.
    let (code, out) = run(&w, "plain");
    assert_eq!(code, 0, "{out}");
    assert_denied(&out, "<", "/probe/tun");
    assert_denied(&out, "<", "/probe/loop0");
    assert_ok(&out, "/probe/null < ok");
    assert_ok(&out, "/dev/zero < ok");
    assert!(!out.contains("/dev/a/b/ctl > ok"), "{out}");
    assert!(!out.contains("/dev/net/tun < ok"), "{out}");

    // Listed: usable at the target with its own permissions, and a node of
    // the same numbers in the rootfs with them too.
    w.berth_ok(&["start", "listed"]);
    let pid = w.wait_running("listed").pid;
    wait_for(SHORT, "the probes to finish", || {
        w.logs("listed", &[]).0.contains("ready")
    });
    let (stdout, stderr) = w.logs("listed", &[]);
    let out = format!("{stdout}{stderr}");
    assert_ok(&out, "/dev/net/tun < ok");
    assert_denied(&out, ">", "/dev/net/tun");
    assert_ok(&out, "/dev/a/b/ctl > ok");
    assert_denied(&out, "<", "/dev/a/b/ctl");
    assert_ok(&out, "/probe/tun < ok");
    assert_denied(&out, "<", "/probe/loop0");
    assert_ok(&out, "/probe/null < ok");
    assert_ok(&out, "/dev/zero < ok");
    assert_ok(&out, "character special file a:c8");

    // The v1 devices cgroup lists exactly the defaults and the listed two;
    // the cgroup2 directory the init runs in is the container's own.
    let (v1, v2) = cgroup_dirs(pid as i32, "devices");
    let list = fs::read_to_string(v1.join("devices.list")).unwrap();
    let mut rules: Vec<&str> = list.lines().collect();
    rules.sort_unstable();
    let mut want = vec![
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
        "c 10:200 r",
        "c 10:237 w",
    ];
    want.sort_unstable();
    assert_eq!(rules, want, "{}", v1.display());
    assert!(
        v1.ends_with(format!("{}/listed", w.cgroup_parent)),
        "{}",
        v1.display()
    );
    assert!(v2.starts_with(w.cgroup2_dir()), "{}", v2.display());

    w.berth_ok(&["stop", "listed"]);
    w.wait_status("listed", "stopped", SHORT);
    wait_for(SHORT, "the container's cgroups to go", || {
        !v1.exists() && !v2.exists()
    });
}

#[test]
fn with_cap_mknod_a_node_can_be_made_but_not_opened() {
    let w = World::new();
    let script = "busybox mknod /tmp/tun c 10 200 && echo made; \
                  busybox mknod /tmp/null c 1 3 && echo made null; \
                  ( exec 3</tmp/null ) && echo null ok; exec 3</tmp/tun";
    w.add_container(
        "maker",
        &["/bin/sh", "-c", script],
        &json::merge(ON_DEMAND, r#"{"cap-add": ["MKNOD"]}"#),
    );
    w.add_container("nocap", &["/bin/sh", "-c", script], ON_DEMAND);
    let _daemon = w.start_daemon(&[]);
    let (code, out) = run(&w, "maker");
    assert_ne!(code, 0, "{out}");
    assert_ok(&out, "made");
    assert_ok(&out, "made null");
    assert_ok(&out, "null ok");
    assert_denied(&out, "<", "/tmp/tun");
    // Without CAP_MKNOD the kernel refuses mknod before the cgroup asks.
    let (_, out) = run(&w, "nocap");
    assert!(!out.lines().any(|l| l == "made"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

/// (mount point, fstype) of each line of /proc/mounts text.
fn mounts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, at, fstype) = (f.next()?, f.next()?, f.next()?);
            Some((at.to_string(), fstype.to_string()))
        })
        .collect()
}

#[test]
fn nested_mount_targets_are_created_inside_the_rootfs() {
    let w = World::new();
    let file = w.host_dir().join("config.txt");
    fs::write(&file, "from the host\n").unwrap();
    let dir = w.host_dir().join("share");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("f"), "shared\n").unwrap();
    let mounts_json = format!(
        r#"{{"mounts": [{{"type": "tmpfs", "target": "/a/b/c"}},
                        {{"source": {f}, "target": "/dev/net/config", "readonly": true}},
                        {{"source": {d}, "target": "/x/y/z"}}]}}"#,
        f = json::string(file.to_str().unwrap()),
        d = json::string(dir.to_str().unwrap()),
    );
    let script = "cat /dev/net/config /x/y/z/f; touch /a/b/c/new && echo tmpfs ok; \
                  cat /proc/mounts";
    for (name, readonly) in [("nested", false), ("nested-ro", true)] {
        let extra = json::merge(ON_DEMAND, &mounts_json);
        let extra = json::merge(&extra, &format!(r#"{{"readonly-rootfs": {readonly}}}"#));
        w.add_container(name, &["/bin/sh", "-c", script], &extra);
    }
    let _daemon = w.start_daemon(&[]);
    for name in ["nested", "nested-ro"] {
        let (code, out) = run(&w, name);
        assert_eq!(code, 0, "{name}: {out}");
        assert!(
            out.starts_with("from the host\nshared\ntmpfs ok\n"),
            "{name}: {out}"
        );
        let m = mounts(&out);
        for (at, fstype) in [("/a/b/c", "tmpfs"), ("/dev/net/config", ""), ("/x/y/z", "")] {
            assert!(
                m.iter()
                    .any(|(a, t)| a == at && (fstype.is_empty() || t == fstype)),
                "{name}: {at} not mounted: {out}"
            );
        }
    }
    // Made in the rootfs (the /dev one in the container's own /dev tmpfs).
    let rootfs = w.rootfs();
    assert!(rootfs.join("a/b/c").is_dir());
    assert!(rootfs.join("x/y/z").is_dir());
    assert!(!rootfs.join("dev/net").exists());
    assert!(!rootfs.join("a/b/c/new").exists(), "written to the tmpfs");
}

#[test]
fn bad_device_entries_are_refused_by_file_and_field() {
    let w = World::new();
    let cases = [
        (
            "relative",
            r#"[{"path": "dev/ttyS0"}]"#,
            "devices[0].path",
            "must be an absolute path, found \"dev/ttyS0\"",
        ),
        (
            "outside",
            r#"[{"path": "/dev/null"}, {"path": "/dev/zero", "target": "/etc/zero"}]"#,
            "devices[1].target",
            "must be a path under /dev, found \"/etc/zero\"",
        ),
        (
            "dotdot",
            r#"[{"path": "/dev/null", "target": "/dev/../etc/x"}]"#,
            "devices[0].target",
            "must be a normalised path",
        ),
        (
            "perms",
            r#"[{"path": "/dev/null", "permissions": "rwx"}]"#,
            "devices[0].permissions",
            "expected one or more of r, w and m (each once), found \"rwx\"",
        ),
        (
            "noperms",
            r#"[{"path": "/dev/null", "permissions": ""}]"#,
            "devices[0].permissions",
            "expected one or more of r, w and m",
        ),
    ];
    for (name, devices, _, _) in &cases {
        w.add_container(
            name,
            &["/bin/true"],
            &json::merge(ON_DEMAND, &format!(r#"{{"devices": {devices}}}"#)),
        );
    }
    w.add_container(
        "notdev",
        &["/bin/true"],
        &json::merge(
            ON_DEMAND,
            r#"{"devices": [{"path": "/dev/null"}, {"path": "/etc/hostname", "target": "/dev/h"}]}"#,
        ),
    );
    w.add_container(
        "missing",
        &["/bin/true"],
        &json::merge(
            ON_DEMAND,
            r#"{"devices": [{"path": "/dev/berth-no-such-device"}]}"#,
        ),
    );
    // A symlink to a node (as /dev/serial/by-id/... are) is followed.
    let link = w.host_dir().join("by-id-null");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    w.add_container(
        "linked",
        &[
            "/bin/sh",
            "-c",
            "stat -c '%F %t:%T' /dev/serial/null && echo x > /dev/serial/null",
        ],
        &json::merge(
            ON_DEMAND,
            &format!(
                r#"{{"devices": [{{"path": {}, "target": "/dev/serial/null"}}]}}"#,
                json::string(link.to_str().unwrap())
            ),
        ),
    );
    let daemon = w.start_daemon(&[]);
    for (name, _, field, reason) in &cases {
        let line = daemon.wait_for_log_line(&[&format!("/{name}.json"), &format!("\"{field}\"")]);
        assert!(line.contains(reason), "{line}");
    }
    start_fails(
        &w,
        "notdev",
        &["device /etc/hostname: not a character or block device"],
    );
    start_fails(
        &w,
        "missing",
        &["stat device /dev/berth-no-such-device: No such file or directory"],
    );
    // A failed start leaves no cgroup behind.
    for root in w.cgroup_roots() {
        for name in ["notdev", "missing"] {
            let left = cgroups::subtree(&root)
                .into_iter()
                .filter(|d| d.ends_with(name))
                .collect::<Vec<_>>();
            assert!(left.is_empty(), "{left:?}");
        }
    }
    let (code, out) = run(&w, "linked");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "character special file 1:3\n");
}

/// The ids of the device programs attached to the cgroup2 directory `dir`
/// (BPF_PROG_QUERY for BPF_CGROUP_DEVICE).
fn device_programs(dir: &Path) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_CGROUP_DEVICE: u32 = 6;
    let cgroup = fs::File::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let mut ids = [0u32; 16];
    // union bpf_attr, query: target_fd, attach_type, query_flags,
    // attach_flags (u32 each), prog_ids (u64), prog_cnt (u32); the rest 0.
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&(cgroup.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[16..24].copy_from_slice(&(ids.as_mut_ptr() as u64).to_ne_bytes());
    attr[24..28].copy_from_slice(&(ids.len() as u32).to_ne_bytes());
    // SAFETY: `attr` is a zeroed bpf_attr prefix of the size passed; the
    // kernel writes at most prog_cnt ids into `ids`, which outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    assert_eq!(
        r,
        0,
        "BPF_PROG_QUERY {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
    let count = u32::from_ne_bytes(attr[24..28].try_into().unwrap()) as usize;
    ids[..count].to_vec()
}

#[test]
fn containers_with_the_same_devices_share_one_device_program_loaded_once() {
    let w = World::new();
    let idle = ["/bin/sh", "-c", "exec sleep 1000"];
    let members = json::merge(ON_DEMAND, r#"{"stop-signal": "SIGKILL"}"#);
    w.add_container("one", &idle, &members);
    w.add_container("two", &idle, &members);
    w.add_container(
        "tun",
        &idle,
        &json::merge(
            &members,
            r#"{"devices": [{"path": "/dev/net/tun", "permissions": "r"}]}"#,
        ),
    );
    let daemon = w.start_daemon(&[]);
    let programs = |name: &str| {
        let pid = w.wait_running(name).pid as i32;
        let (_, v2) = cgroup_dirs(pid, "devices");
        let ids = device_programs(&v2);
        assert_eq!(ids.len(), 1, "{name}: {ids:?} in {}", v2.display());
        ids[0]
    };
    for name in ["one", "two", "tun"] {
        w.berth_ok(&["start", name]);
    }
    let one = programs("one");
    assert_eq!(programs("two"), one, "the same rules, one program");
    assert_ne!(programs("tun"), one, "other rules, another program");
    // Started again: still the program loaded for the first start.
    w.berth_ok(&["stop", "one"]);
    w.berth_ok(&["start", "one"]);
    assert_eq!(programs("one"), one, "{}", daemon.stderr());
}
