//! What a container is given, through the real binary, whatever the daemon
//! inherited: a daemon started with extra supplementary groups,
//! inheritable and ambient capabilities, changed limits and a raised
//! oom_score_adj passes none of it on; a container gets exactly its
//! defined capability sets, groups from its own /etc/group, the documented
//! or defined limits; Docker's masked paths hide what they hide, /dev/pts
//! and /dev/mqueue are mounted as Docker mounts them. And a rootfs whose
//! mount targets, /proc or /dev are symlinks to host paths never makes a
//! start create or mount anything on the host, with openat2 and without.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::sys::{Inheritance, inherit_before_exec, without_syscall};
use common::*;

/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// The default capability set (README): CHOWN, DAC_OVERRIDE, FOWNER,
/// FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
/// SYS_CHROOT, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPS: u64 = 0x0000_0000_a004_25fb;
const CAP_CHOWN: u32 = 0;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;

/// Prints what the container's init (the shell, pid 1) was given.
const SHOW: &str = "cat /proc/1/status; echo ---; cat /proc/1/limits; echo ---; \
                    cat /proc/1/oom_score_adj";

fn unlimited_or(v: &str) -> u64 {
    if v == "unlimited" {
        u64::MAX
    } else {
        v.parse().unwrap_or_else(|e| panic!("limit {v:?}: {e}"))
    }
}

/// /proc/PID/limits text as {"Max open files": (soft, hard)}.
fn limits(text: &str) -> BTreeMap<String, (u64, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            match cols[..] {
                [name, soft, hard, ..] => {
                    Some((name.to_string(), (unlimited_or(soft), unlimited_or(hard))))
                }
                _ => None,
            }
        })
        .collect()
}

fn read_number(path: &str) -> u64 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// The limits README documents for a container whose file sets none,
/// each at most the daemon's own hard limit (berth cannot raise one
/// without CAP_SYS_RESOURCE): by /proc/PID/limits row.
fn documented_limits(daemon: &BTreeMap<String, (u64, u64)>) -> BTreeMap<String, (u64, u64)> {
    const INF: u64 = u64::MAX;
    let tasks = read_number("/proc/sys/kernel/threads-max") / 2;
    let nofile = read_number("/proc/sys/fs/nr_open").min(1 << 20);
    [
        ("Max cpu time", INF, INF),
        ("Max file size", INF, INF),
        ("Max data size", INF, INF),
        ("Max stack size", 8 << 20, INF),
        ("Max core file size", 0, INF),
        ("Max resident set", INF, INF),
        ("Max processes", tasks, tasks),
        ("Max open files", nofile, nofile),
        ("Max locked memory", 8 << 20, 8 << 20),
        ("Max address space", INF, INF),
        ("Max file locks", INF, INF),
        ("Max pending signals", tasks, tasks),
        ("Max msgqueue size", 819_200, 819_200),
        ("Max nice priority", 0, 0),
        ("Max realtime priority", 0, 0),
        ("Max realtime timeout", INF, INF),
    ]
    .into_iter()
    .map(|(name, soft, hard)| {
        let cap = daemon[name].1;
        (name.to_string(), (soft.min(cap), hard.min(cap)))
    })
    .collect()
}

/// Starts NAME, waits for it to exit 0 and returns its stdout split at
/// the `---` lines.
fn parts_of(w: &World, name: &str) -> Vec<String> {
    let code = w.start_wait(name);
    let (stdout, stderr) = w.logs(name, &[]);
    assert_eq!(code, 0, "{name} exited {code}; stderr:\n{stderr}");
    stdout.split("---\n").map(str::to_string).collect()
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

#[test]
fn a_daemon_started_with_more_passes_none_of_it_to_its_containers() {
    let w = World::new();
    let etc = w.rootfs().join("etc");
    fs::write(
        etc.join("passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        etc.join("group"),
        "root:x:0:\nadm:x:4:app\nvideo:x:27:other\nstaff:x:50:other,app\n",
    )
    .unwrap();
    let show = ["/bin/sh", "-c", SHOW];
    w.add_container("root", &show, ON_DEMAND);
    w.add_container(
        "user",
        &show,
        &json::merge(ON_DEMAND, r#"{"user": "1000:1000"}"#),
    );
    w.add_container(
        "added",
        &show,
        &json::merge(
            ON_DEMAND,
            r#"{"user": "1000", "cap-add": ["NET_ADMIN"], "cap-drop": ["CAP_CHOWN"]}"#,
        ),
    );
    w.add_container(
        "only",
        &show,
        &json::merge(
            ON_DEMAND,
            r#"{"cap-drop": ["ALL"], "cap-add": ["sys_ptrace"]}"#,
        ),
    );

    // The daemon gets groups 4 and 27, inheritable SYS_ADMIN and NET_ADMIN,
    // ambient NET_ADMIN, core and stack soft limits raised to their hard
    // ones, a lower nofile soft limit, and oom_score_adj 500.
    let own = limits(&fs::read_to_string("/proc/self/limits").unwrap());
    let hard = |name: &str| own[name].1;
    let inheritance = Inheritance {
        groups: Some(vec![4, 27]),
        inheritable: (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN),
        ambient: 1 << CAP_NET_ADMIN,
        rlimits: vec![
            (
                libc::RLIMIT_CORE,
                hard("Max core file size"),
                hard("Max core file size"),
            ),
            (
                libc::RLIMIT_STACK,
                hard("Max stack size"),
                hard("Max stack size"),
            ),
            (libc::RLIMIT_NOFILE, 1000, hard("Max open files")),
        ],
        oom_score_adj: Some(500),
    };
    let daemon = w.start_daemon_with(&[], |cmd| inherit_before_exec(cmd, inheritance));
    let pid = daemon.pid();
    let daemon_status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let daemon_limits = limits(&fs::read_to_string(format!("/proc/{pid}/limits")).unwrap());
    assert_eq!(status_field(&daemon_status, "Groups"), "4 27");
    assert_eq!(
        hex_field(&daemon_status, "CapInh"),
        (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN)
    );
    assert_eq!(hex_field(&daemon_status, "CapAmb"), 1 << CAP_NET_ADMIN);
    assert_eq!(
        daemon_limits["Max core file size"].0,
        hard("Max core file size")
    );
    // The daemon raises its own soft limit for its clients (to 4096, or
    // its hard limit): what it was started with is gone from it, too.
    let (soft, hard) = daemon_limits["Max open files"];
    assert_eq!(soft, 4096.min(hard));
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap(),
        "500\n"
    );
    // What the daemon holds bounds what a container can get.
    let held = hex_field(&daemon_status, "CapBnd") & hex_field(&daemon_status, "CapPrm");
    let documented = documented_limits(&daemon_limits);

    // Root: its set in the bounding, effective and permitted sets, nothing
    // inheritable or ambient, no groups, the documented limits.
    let root = parts_of(&w, "root");
    let status = &root[0];
    let set = DEFAULT_CAPS & held;
    for (key, want) in [
        ("CapBnd", set),
        ("CapEff", set),
        ("CapPrm", set),
        ("CapInh", 0),
        ("CapAmb", 0),
    ] {
        assert_eq!(
            hex_field(status, key),
            want,
            "root's {key}: {:016x}, want {want:016x}",
            hex_field(status, key)
        );
    }
    assert_eq!(status_field(status, "Groups"), "", "root has no groups");
    assert_eq!(
        (status_field(status, "Uid"), status_field(status, "Gid")),
        ("0\t0\t0\t0", "0\t0\t0\t0")
    );
    assert_eq!(limits(&root[1]), documented, "root's limits");
    assert_eq!(root[2], "0\n", "oom_score_adj");

    // Another user: the same bounding set, nothing effective, its groups
    // from the rootfs's /etc/group.
    let user = parts_of(&w, "user");
    let status = &user[0];
    assert_eq!(hex_field(status, "CapBnd"), set);
    for key in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(hex_field(status, key), 0, "user's {key}");
    }
    assert_eq!(status_field(status, "Groups"), "4 50");
    assert_eq!(status_field(status, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(limits(&user[1]), documented, "user's limits");

    // Another user with cap-add: what was added, and nothing else, in all
    // of effective, permitted, inheritable and ambient.
    let added = parts_of(&w, "added");
    let status = &added[0];
    let net_admin = 1 << CAP_NET_ADMIN;
    assert_eq!(
        hex_field(status, "CapBnd"),
        (set | (net_admin & held)) & !(1 << CAP_CHOWN)
    );
    for key in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(hex_field(status, key), net_admin & held, "added's {key}");
    }
    assert_eq!(status_field(status, "Groups"), "4 50");

    // Root with cap-drop ALL and one added: that one only.
    let only = parts_of(&w, "only");
    let ptrace = (1 << CAP_SYS_PTRACE) & held;
    for (key, want) in [
        ("CapBnd", ptrace),
        ("CapEff", ptrace),
        ("CapPrm", ptrace),
        ("CapInh", 0),
        ("CapAmb", 0),
    ] {
        assert_eq!(hex_field(&only[0], key), want, "only's {key}");
    }
}

#[test]
fn limits_and_oom_score_adj_come_from_the_file_and_what_cannot_be_set_fails_the_start() {
    let w = World::new();
    let show = ["/bin/sh", "-c", SHOW];
    w.add_container(
        "limits",
        &show,
        &json::merge(
            ON_DEMAND,
            r#"{"rlimits": {"nofile": [64, 128], "core": [1024, 4096],
                            "msgqueue": [1000, 2000], "stack": ["unlimited", "unlimited"]},
                "oom-score-adj": 300}"#,
        ),
    );
    let too_many = read_number("/proc/sys/fs/nr_open") + 1;
    w.add_container(
        "too-many",
        &show,
        &json::merge(
            ON_DEMAND,
            &format!(r#"{{"rlimits": {{"nofile": [{too_many}, {too_many}]}}}}"#),
        ),
    );
    w.add_container(
        "lower",
        &show,
        &json::merge(ON_DEMAND, r#"{"oom-score-adj": -100}"#),
    );
    w.add_container(
        "badlimit",
        &show,
        &json::merge(ON_DEMAND, r#"{"rlimits": {"nofiles": [1, 2]}}"#),
    );
    w.add_container(
        "badorder",
        &show,
        &json::merge(ON_DEMAND, r#"{"rlimits": {"core": [10, 5]}}"#),
    );
    let daemon = w.start_daemon(&[]);
    let daemon_limits =
        limits(&fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap());

    let got = parts_of(&w, "limits");
    let mut want = documented_limits(&daemon_limits);
    want.insert("Max open files".into(), (64, 128));
    want.insert("Max core file size".into(), (1024, 4096));
    want.insert("Max msgqueue size".into(), (1000, 2000));
    want.insert("Max stack size".into(), (u64::MAX, u64::MAX));
    assert_eq!(limits(&got[1]), want);
    assert_eq!(got[2], "300\n");

    start_fails(
        &w,
        "too-many",
        &[
            &format!("set rlimits.nofile to {too_many}:{too_many} ("),
            "fs/nr_open): Operation not permitted",
        ],
    );
    let own = fs::read_to_string("/proc/self/status").unwrap();
    if hex_field(&own, "CapEff") & (1 << CAP_SYS_RESOURCE) == 0 {
        // Without CAP_SYS_RESOURCE the kernel refuses to go below 0.
        start_fails(
            &w,
            "lower",
            &[
                "oom-score-adj to -100",
                "CAP_SYS_RESOURCE",
                "Permission denied",
            ],
        );
    } else {
        assert_eq!(parts_of(&w, "lower")[2], "-100\n");
    }
    for (name, field, reason) in [
        ("badlimit", "rlimits.nofiles", "unknown resource limit"),
        (
            "badorder",
            "rlimits.core",
            "the soft limit 10 is above the hard limit 5",
        ),
    ] {
        let line = daemon.wait_for_log_line(&[&format!("{name}.json"), field]);
        assert!(line.contains(reason), "{line}");
    }
}

/// One /proc/self/mountinfo line: (mount point, per-mount options,
/// fs type, super options).
fn mounts(mountinfo: &str) -> Vec<(String, String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some((
                left.get(4)?.to_string(),
                left.get(5)?.to_string(),
                right.first()?.to_string(),
                right.get(2)?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn masked_paths_are_unreadable_and_dev_is_mounted_as_docker_mounts_it() {
    let w = World::new();
    let masked = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/sys/devices/virtual/powercap",
        "/sys/firmware",
    ];
    // A file reads as empty; a directory lists as empty and takes no file.
    let script = format!(
        "for p in {}; do \
           if [ -d $p ]; then echo \"$p dir $(ls -A $p | wc -l) $(touch $p/x 2>/dev/null && echo writable || echo readonly)\"; \
           elif [ -e $p ]; then echo \"$p file $(cat $p | wc -c)\"; \
           else echo \"$p absent\"; fi; \
         done; echo ---; cat /proc/self/mountinfo",
        masked.join(" ")
    );
    w.add_container("masked", &["/bin/sh", "-c", &script], ON_DEMAND);
    let _daemon = w.start_daemon(&[]);
    let parts = parts_of(&w, "masked");

    // The same kernel: what the host has, the container has, hidden.
    assert!(
        fs::read_to_string("/proc/interrupts").is_ok_and(|t| !t.is_empty())
            && Path::new("/sys/firmware").is_dir(),
        "this test needs a host with /proc/interrupts and /sys/firmware"
    );
    let mut want = String::new();
    for p in masked {
        let host = Path::new(p);
        if host.is_dir() {
            want.push_str(&format!("{p} dir 0 readonly\n"));
        } else if host.exists() {
            want.push_str(&format!("{p} file 0\n"));
        } else {
            want.push_str(&format!("{p} absent\n"));
        }
    }
    assert_eq!(parts[0], want);

    let mounts = mounts(&parts[1]);
    let at = |point: &str| {
        mounts
            .iter()
            .rev()
            .find(|m| m.0 == point)
            .unwrap_or_else(|| panic!("no mount at {point} in:\n{}", parts[1]))
            .clone()
    };
    for p in masked.iter().filter(|p| Path::new(p).is_dir()) {
        let (_, options, fstype, _) = at(p);
        assert_eq!(fstype, "tmpfs", "{p}");
        assert!(options.split(',').any(|o| o == "ro"), "{p}: {options}");
    }
    let (_, options, fstype, super_options) = at("/dev/pts");
    assert_eq!(fstype, "devpts");
    for o in ["nosuid", "noexec"] {
        assert!(
            options.split(',').any(|x| x == o),
            "/dev/pts {o}: {options}"
        );
    }
    for o in ["gid=5", "mode=620", "ptmxmode=666"] {
        assert!(
            super_options.split(',').any(|x| x == o),
            "/dev/pts {o}: {super_options}"
        );
    }
    let (_, options, fstype, _) = at("/dev/mqueue");
    assert_eq!(fstype, "mqueue");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(
            options.split(',').any(|x| x == o),
            "/dev/mqueue {o}: {options}"
        );
    }
}

/// Every path below `dir` (relative), and whether it is a directory.
fn tree(dir: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let is_dir = fs::symlink_metadata(&path).unwrap().is_dir();
            out.push((path.strip_prefix(dir).unwrap().to_path_buf(), is_dir));
            if is_dir {
                todo.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Host paths the container files below point at: a directory of the
/// world's, with `data`, `proc` and `dev` in it.
struct HostSide {
    dir: PathBuf,
    before: Vec<(PathBuf, bool)>,
}

impl HostSide {
    fn new(w: &World) -> HostSide {
        let dir = w.root.join("hostside");
        for sub in ["data", "proc", "dev"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let before = tree(&dir);
        HostSide { dir, before }
    }

    /// The host path a rootfs's `name` links to.
    fn target(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Replaces `name` in `rootfs` by a symlink to the host path of the
    /// same name; with `inside`, that path also exists inside the rootfs,
    /// where the link leads when resolved with the rootfs as root.
    fn link(&self, rootfs: &Path, name: &str, inside: bool) {
        let entry = rootfs.join(name);
        let _ = fs::remove_dir(&entry);
        symlink(self.target(name), &entry).unwrap();
        if inside {
            let relative = self.target(name);
            let relative = relative.strip_prefix("/").unwrap();
            fs::create_dir_all(rootfs.join(relative)).unwrap();
        }
    }

    /// Nothing was created below the host dir, and nothing is mounted on
    /// or below it in the host's mount namespace.
    fn assert_untouched(&self) {
        assert_eq!(tree(&self.dir), self.before, "the host dir changed");
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mounted: Vec<PathBuf> = cgroups::mount_points(&info)
            .into_iter()
            .filter(|p| p.starts_with(&self.dir))
            .collect();
        assert!(mounted.is_empty(), "mounted on the host: {mounted:?}");
    }
}

/// Members mounting a tmpfs at /data/sub and binding a host file at
/// /data/file, plus `extra`.
fn data_mounts(w: &World, rootfs: &Path, extra: &str) -> String {
    let file = w.host_dir().join("file");
    fs::write(&file, "bound file\n").unwrap();
    let members = format!(
        r#"{{"rootfs": {}, "mounts": [{{"type": "tmpfs", "target": "/data/sub"}},
             {{"source": {}, "target": "/data/file", "readonly": true}}]}}"#,
        json::string(rootfs.to_str().unwrap()),
        json::string(file.to_str().unwrap()),
    );
    json::merge(&json::merge(ON_DEMAND, extra), &members)
}

/// What a container with /data mounts and working /proc and /dev prints.
const PROBE: &str = "test -c /dev/null && echo dev-null; \
                     test -r /proc/self/stat && echo proc; \
                     test -d /dev/pts && echo pts; \
                     cat /data/file; \
                     touch /data/sub/x && echo tmpfs-writable";

#[test]
fn symlinks_in_a_rootfs_never_lead_a_start_to_the_host() {
    let w = World::new();
    let host = HostSide::new(&w);
    // /data links to a host path that does not exist inside the rootfs:
    // a clear error, with and without readonly-rootfs.
    host.link(&w.rootfs(), "data", false);
    let escape = ["/bin/sh", "-c", PROBE];
    w.write_container(
        "escape",
        &w.container_json(&escape, &data_mounts(&w, &w.rootfs(), "{}")),
    );
    w.write_container(
        "escape-ro",
        &w.container_json(
            &escape,
            &data_mounts(&w, &w.rootfs(), r#"{"readonly-rootfs": true}"#),
        ),
    );
    // /data, /proc and /dev link to host paths that also exist inside the
    // rootfs: the start goes on inside it.
    let busybox = rootfs::static_busybox().unwrap();
    let inside = w.root.join("rootfs-inside");
    rootfs::build(&inside, &busybox).unwrap();
    for name in ["data", "proc", "dev"] {
        host.link(&inside, name, true);
    }
    for (name, extra) in [
        ("inside", "{}"),
        ("inside-ro", r#"{"readonly-rootfs": true}"#),
    ] {
        w.write_container(
            name,
            &w.container_json(&escape, &data_mounts(&w, &inside, extra)),
        );
    }
    let _daemon = w.start_daemon(&[]);

    for name in ["escape", "escape-ro"] {
        start_fails(
            &w,
            name,
            &["create mount point /data/sub", "No such file or directory"],
        );
    }
    for name in ["inside", "inside-ro"] {
        assert_eq!(
            parts_of(&w, name)[0],
            "dev-null\nproc\npts\nbound file\ntmpfs-writable\n",
            "{name}"
        );
    }
    host.assert_untouched();
    // What was made went inside the rootfs.
    let in_rootfs = inside.join(host.target("data").strip_prefix("/").unwrap());
    assert!(in_rootfs.join("sub").is_dir() && in_rootfs.join("file").is_file());
}

#[test]
fn without_openat2_a_symlink_on_the_way_to_a_mount_target_is_refused() {
    let w = World::new();
    let host = HostSide::new(&w);
    let probe = ["/bin/sh", "-c", PROBE];
    w.write_container(
        "plain",
        &w.container_json(&probe, &data_mounts(&w, &w.rootfs(), "{}")),
    );
    let busybox = rootfs::static_busybox().unwrap();
    let linked = w.root.join("rootfs-linked");
    rootfs::build(&linked, &busybox).unwrap();
    host.link(&linked, "data", true);
    w.write_container(
        "linked",
        &w.container_json(&probe, &data_mounts(&w, &linked, "{}")),
    );
    let daemon = w.start_daemon_with(&[], |cmd| without_syscall(cmd, libc::SYS_openat2));
    let status = fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    assert_eq!(
        status_field(&status, "Seccomp"),
        "2",
        "the daemon runs under the filter"
    );

    // Without symlinks, the walk sets everything up as openat2 would.
    assert_eq!(
        parts_of(&w, "plain")[0],
        "dev-null\nproc\npts\nbound file\ntmpfs-writable\n"
    );
    start_fails(
        &w,
        "linked",
        &[
            "create mount point /data/sub",
            "Too many levels of symbolic links",
        ],
    );
    host.assert_untouched();
}
