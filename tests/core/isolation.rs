//! What a container sees and where it sits: its own rootfs as / (also the
//! host's / read-only), pid 1 in new namespaces, its hostname, network
//! none (loopback only, up) or host, cgroups below the daemon's own cgroup
//! and cgroup-parent, and its resource limits.

use std::fs;
use std::path::Path;

use super::{ON_DEMAND, POLITE};
use crate::common::cgroups::cgroup_lines;
use crate::common::{SHORT, World, is_rfc3339, wait_for};

#[test]
fn container_sees_its_own_rootfs_as_root() {
    let world = World::new();
    let marker = format!("marker of {}", world.cgroup_parent);
    fs::write(world.rootfs().join("marker"), &marker).unwrap();
    let script = "cat /marker; echo; \
                  test -e /etc/passwd && echo host-etc-passwd || echo no-etc-passwd; \
                  test -e /usr && echo host-usr || echo no-usr; \
                  test -x /bin/busybox && echo busybox";
    world.add_container("fs", &["/bin/sh", "-c", script], ON_DEMAND);
    let _daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("fs"), 0);
    let (stdout, stderr) = world.logs("fs", &[]);
    assert_eq!(
        stdout,
        format!("{marker}\nno-etc-passwd\nno-usr\nbusybox\n")
    );
    assert_eq!(stderr, "");
    let host_name = fs::read_to_string("/etc/hostname").unwrap_or_default();
    if !host_name.trim().is_empty() {
        assert!(
            !stdout.contains(host_name.trim()),
            "host's /etc/hostname leaked: {stdout}"
        );
    }
}

#[test]
fn container_init_is_pid_1_in_new_namespaces_and_inspect_shows_its_host_pid() {
    let world = World::new();
    world.add_container("pid1", &["/bin/sh", "-c", "echo $$; exec sleep 1000"], "{}");
    let _daemon = world.start_daemon(&[]);
    let running = world.wait_running("pid1");
    let pid = running.pid;
    assert_ne!(pid, 1);
    wait_for(SHORT, "pid 1 to exec sleep", || {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x001000\x00")
    });
    assert_eq!(world.logs("pid1", &[]).0, "1\n");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .expect("NSpid line");
    assert_eq!(
        nspid.split_whitespace().skip(1).collect::<Vec<_>>(),
        [pid.to_string(), "1".to_string()]
    );
    for ns in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
        let theirs = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "container shares the host's {ns} namespace");
    }
    assert_eq!(running.exit_code, None);
    assert_eq!(running.finished_at, None);
    assert!(
        running.started_at.as_deref().is_some_and(is_rfc3339),
        "{running:?}"
    );
}

#[test]
fn container_cgroups_are_below_the_daemons_own_cgroups_and_cgroup_parent() {
    let world = World::new();
    // With a limit a v1 hierarchy carries on this hybrid host: every
    // hierarchy berth uses. Without: cgroup2 alone (the init is created
    // in it), the v1 ones left as the daemon's.
    world.add_container("cg", POLITE, r#"{"pids": 1000}"#);
    world.add_container("bare", POLITE, "{}");
    let daemon = world.start_daemon(&[]);
    let daemon_cgroups = cgroup_lines(daemon.pid() as i32);
    for (name, all) in [("cg", true), ("bare", false)] {
        let pid = world.wait_running(name).pid;
        let mut checked = Vec::new();
        for (controllers, path) in cgroup_lines(pid as i32) {
            if !uses(&controllers) {
                continue;
            }
            let own = &daemon_cgroups
                .iter()
                .find(|(c, _)| *c == controllers)
                .expect("same hierarchy")
                .1;
            let parent = format!("{}/{}/", own.trim_end_matches('/'), world.cgroup_parent);
            if all || controllers.is_empty() {
                assert!(
                    path.starts_with(&parent),
                    "{name}, hierarchy {controllers:?}: container in {path}, want below {parent}"
                );
            } else {
                assert_eq!(&path, own, "{name}, hierarchy {controllers:?}");
            }
            checked.push(controllers);
        }
        assert!(
            checked.contains(&String::new()),
            "{name}: the cgroup2 hierarchy was not checked: {checked:?}"
        );
        assert!(
            world.procs().contains(&(pid as i32)),
            "{name}: container not in the world's cgroups"
        );
    }
}

/// Whether berth must place containers in the hierarchy with these
/// controllers: cgroup2 ("") and every v1 one carrying memory, pids or cpu.
fn uses(controllers: &str) -> bool {
    controllers.is_empty()
        || controllers
            .split(',')
            .any(|c| ["memory", "pids", "cpu"].contains(&c))
}

#[test]
fn hostname_is_the_configured_one_and_the_hosts_is_untouched() {
    let world = World::new();
    let before = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    world.add_container(
        "named",
        &["/bin/hostname"],
        r#"{"hostname": "boxy", "autostart": false}"#,
    );
    let _daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("named"), 0);
    assert_eq!(world.logs("named", &[]).0, "boxy\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        before
    );
}

#[test]
fn network_none_has_only_loopback_and_it_is_up() {
    let world = World::new();
    let script = "cat /proc/net/dev; echo ---; ip -o link show lo";
    world.add_container("lonely", &["/bin/sh", "-c", script], ON_DEMAND);
    let _daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("lonely"), 0);
    let stdout = world.logs("lonely", &[]).0;
    let (net_dev, link) = stdout.split_once("---\n").expect("both parts printed");
    assert_eq!(interfaces(net_dev), ["lo"]);
    let flags = link.split(['<', '>']).nth(1).unwrap_or_default();
    assert!(flags.split(',').any(|f| f == "UP"), "lo is not up: {link}");
}

#[test]
fn network_host_sees_the_hosts_interfaces() {
    let world = World::new();
    world.add_container(
        "hostnet",
        &["/bin/cat", "/proc/net/dev"],
        r#"{"network": "host", "autostart": false, "restart": "no"}"#,
    );
    let _daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("hostnet"), 0);
    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    assert_eq!(interfaces(&world.logs("hostnet", &[]).0), host);
}

/// The interface names in /proc/net/dev text.
fn interfaces(net_dev: &str) -> Vec<String> {
    let mut names: Vec<String> = net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn host_root_as_a_readonly_rootfs_with_a_tmpfs() {
    let world = World::new();
    let probe = format!("/berth-probe-{}", world.cgroup_parent);
    let script = format!(
        "touch {probe} 2>/dev/null && echo root-writable || echo root-readonly; \
         echo x > /tmp/x && cat /tmp/x; cat /proc/sys/kernel/hostname"
    );
    world.add_container(
        "ro",
        &["/bin/sh", "-c", &script],
        r#"{"rootfs": "/", "readonly-rootfs": true, "hostname": "ro-box",
            "mounts": [{"type": "tmpfs", "target": "/tmp"}], "autostart": false, "restart": "no"}"#,
    );
    let _daemon = world.start_daemon(&[]);
    assert_eq!(world.start_wait("ro"), 0);
    assert_eq!(
        world.logs("ro", &[]),
        ("root-readonly\nx\nro-box\n".into(), String::new())
    );
    let leaked = Path::new(&probe).exists();
    let _ = fs::remove_file(&probe);
    assert!(!leaked, "the container wrote to the host's /");
}

#[test]
fn the_shipped_sample_config_runs() {
    let world = World::new();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let read =
        |p: &str| fs::read_to_string(sample.join(p)).unwrap_or_else(|e| panic!("config/{p}: {e}"));
    // The sample's options, with the world's paths and cgroup parent.
    let daemon_json = crate::common::json::merge(&read("daemon.json"), &world.world_daemon_keys());
    world.write_file(&world.config_path(), &daemon_json);
    world.write_container("hello", &read("containers/hello.json"));
    let _daemon = world.start_daemon(&[]);
    world.wait_running("hello");
    wait_for(SHORT, "hello's first line", || {
        world
            .logs("hello", &[])
            .0
            .starts_with("hello from hello at ")
    });
}

#[test]
fn limits_reach_the_containers_cgroups() {
    let world = World::new();
    world.add_container(
        "limited",
        POLITE,
        r#"{"memory": "64m", "pids": 32, "cpus": 0.5}"#,
    );
    let _daemon = world.start_daemon(&[]);
    let pid = world.wait_running("limited").pid;
    let memory = cgroup_file(pid, &["memory.max", "memory.limit_in_bytes"]);
    assert_eq!(memory.as_deref(), Some("67108864"), "memory limit of 64m");
    assert_eq!(
        cgroup_file(pid, &["pids.max"]).as_deref(),
        Some("32"),
        "pids limit"
    );
    let cpu = match cgroup_file(pid, &["cpu.max"]) {
        Some(max) => max,
        None => {
            let quota = cgroup_file(pid, &["cpu.cfs_quota_us"]).expect("a cpu quota file");
            let period = cgroup_file(pid, &["cpu.cfs_period_us"]).expect("a cpu period file");
            format!("{quota} {period}")
        }
    };
    let (quota, period) = cpu.split_once(' ').expect("quota and period");
    let ratio = quota.parse::<f64>().expect("a numeric quota") / period.parse::<f64>().unwrap();
    assert!((ratio - 0.5).abs() < 0.01, "cpus 0.5, cgroup says {cpu}");
}

/// The trimmed content of the first of `files` found in the cgroups of
/// `pid`, in any hierarchy.
fn cgroup_file(pid: u32, files: &[&str]) -> Option<String> {
    let proc_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mounts = crate::common::cgroups::parse_cgroup_mounts(
        &fs::read_to_string("/proc/self/mountinfo").ok()?,
    );
    let hierarchies = crate::common::cgroups::parse_hierarchies(&proc_cgroup, &mounts);
    files
        .iter()
        .find_map(|file| {
            hierarchies
                .iter()
                .find_map(|h| fs::read_to_string(h.own_dir().join(file)).ok())
        })
        .map(|v| v.trim().to_string())
}
