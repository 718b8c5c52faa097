//! The `docker run` settings of a definition, checked from inside the
//! container through the real binary: `sysctl` (namespaced keys written in
//! the container's /proc/sys, which stays read-only; other keys refused
//! with the file and field named), `user` by name resolved in the rootfs's
//! own /etc/passwd and /etc/group, `env-file` (under the definition's
//! `env`, re-read on reload), and the /etc/hosts, /etc/hostname and
//! /etc/resolv.conf berth provides.

mod common;

use std::fs;

use common::*;

/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// Starts NAME, waits for it to exit 0 and returns its stdout.
fn output_of(w: &World, name: &str) -> String {
    let code = w.start_wait(name);
    let (stdout, stderr) = w.logs(name, &[]);
    assert_eq!(
        code, 0,
        "{name} exited {code}; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// Asserts `berth start NAME` fails with a line holding every needle.
fn start_fails(w: &World, name: &str, needles: &[&str]) {
    let out = w.berth(&["start", name]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

#[test]
fn namespaced_sysctls_are_set_and_others_refused() {
    let w = World::new();
    let show = "for k in net/ipv4/ip_forward kernel/shmmax kernel/sem fs/mqueue/msg_max \
                kernel/domainname; do echo \"$k=$(cat /proc/sys/$k)\"; done; \
                if echo 1 >/proc/sys/kernel/shmmni 2>/dev/null; then echo writable; \
                else echo read-only; fi";
    w.add_container(
        "set",
        &["sh", "-c", show],
        &json::merge(
            ON_DEMAND,
            r#"{"sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": 65536,
                 "kernel.sem": "250 32000 32 128", "fs.mqueue.msg_max": "20",
                 "kernel.domainname": "example.org"}}"#,
        ),
    );
    w.add_container(
        "refused-value",
        &["true"],
        &json::merge(ON_DEMAND, r#"{"sysctl": {"kernel.shmmni": "lots"}}"#),
    );
    w.add_container(
        "absent-key",
        &["true"],
        &json::merge(
            ON_DEMAND,
            r#"{"sysctl": {"net.ipv4.no_such_setting": "1"}}"#,
        ),
    );
    w.add_container(
        "host-wide",
        &["true"],
        &json::merge(ON_DEMAND, r#"{"sysctl": {"vm.swappiness": "1"}}"#),
    );
    w.add_container(
        "host-net",
        &["true"],
        &json::merge(
            ON_DEMAND,
            r#"{"network": "host", "sysctl": {"net.ipv4.ip_forward": "1"}}"#,
        ),
    );
    let host_forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shmmax = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let daemon = w.start_daemon(&[]);

    let out = output_of(&w, "set");
    for line in [
        "net/ipv4/ip_forward=1",
        "kernel/shmmax=65536",
        "kernel/sem=250\t32000\t32\t128",
        "fs/mqueue/msg_max=20",
        "kernel/domainname=example.org",
        "read-only",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in:\n{out}");
    }
    // The host's own settings are untouched.
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shmmax
    );

    start_fails(
        &w,
        "refused-value",
        &["set sysctl kernel.shmmni to \"lots\": Invalid argument"],
    );
    start_fails(
        &w,
        "absent-key",
        &["set sysctl net.ipv4.no_such_setting to \"1\": No such file or directory"],
    );
    daemon.wait_for_log_line(&[
        "host-wide.json",
        "field \"sysctl.\"vm.swappiness\"\"",
        "not a namespaced setting",
    ]);
    daemon.wait_for_log_line(&[
        "host-net.json",
        "field \"sysctl.\"net.ipv4.ip_forward\"\"",
        "not with \"network\": \"host\"",
    ]);
}

#[test]
fn env_files_under_the_definitions_env_and_reread_on_reload() {
    let w = World::new();
    let env_dir = w.root.join("envs");
    fs::create_dir(&env_dir).unwrap();
    fs::write(
        env_dir.join("base.env"),
        "# settings\n\nA=from-file\nB=from-file\n  SPACED=two words \nEQ=x=y\n",
    )
    .unwrap();
    fs::write(env_dir.join("more.env"), "B=from-more\nC=from-more\n").unwrap();
    let files = format!(
        r#"{{"env-file": [{}, {}], "env": ["C=from-definition", "D=own"]}}"#,
        json::string(env_dir.join("base.env").to_str().unwrap()),
        // Relative to the containers directory.
        json::string(&format!(
            "../../envs/{}",
            env_dir
                .join("more.env")
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        )),
    );
    assert!(w.containers_dir().join("../../envs").exists());
    w.add_container(
        "env",
        &[
            "sh",
            "-c",
            "echo \"A=$A B=$B C=$C D=$D SPACED=[$SPACED] EQ=$EQ\"",
        ],
        &json::merge(ON_DEMAND, &files),
    );
    fs::write(env_dir.join("bad.env"), "A=1\n# fine\nLONELY\n").unwrap();
    w.add_container(
        "bad",
        &["true"],
        &json::merge(
            ON_DEMAND,
            &format!(
                r#"{{"env-file": {}}}"#,
                json::string(env_dir.join("bad.env").to_str().unwrap())
            ),
        ),
    );
    let daemon = w.start_daemon(&[]);
    assert_eq!(
        output_of(&w, "env").trim(),
        "A=from-file B=from-more C=from-definition D=own SPACED=[two words ] EQ=x=y"
    );
    daemon.wait_for_log_line(&[
        "bad.json",
        "field \"env-file\"",
        &format!("{}: line 3 column 1", env_dir.join("bad.env").display()),
        "\"LONELY\"",
    ]);

    // A bad definition refuses every reload: it goes first.
    fs::remove_file(w.containers_dir().join("bad.json")).unwrap();
    // A changed env file is a changed definition: the running container
    // is recreated on reload with the new value.
    w.add_container(
        "env-live",
        &["sh", "-c", "echo \"A=$A\"; exec sleep 1000"],
        &json::merge(
            // berth's init ends the sleep at the first SIGTERM.
            r#"{"autostart": true, "restart": "no", "init": true}"#,
            &format!(
                r#"{{"env-file": {}}}"#,
                json::string(env_dir.join("base.env").to_str().unwrap())
            ),
        ),
    );
    w.berth_ok(&["reload"]);
    let first = w.wait_running("env-live").pid;
    fs::write(env_dir.join("base.env"), "A=changed\n").unwrap();
    w.berth_ok(&["reload"]);
    let second = w.wait_inspect("env-live", "to be recreated", SHORT, |i| {
        i.is_running() && i.pid != first
    });
    assert_ne!(second.pid, first);
    wait_for(SHORT, "the new value in the log", || {
        w.logs("env-live", &[]).0.contains("A=changed")
    });
}

#[test]
fn users_and_groups_by_name_from_the_rootfs() {
    let w = World::new();
    let etc = w.rootfs().join("etc");
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        etc.join("group"),
        "root:x:0:\napps:x:1001:\nadm:x:4:app\nvideo:x:27:other,app\nstaff:x:50:other\n",
    )
    .unwrap();
    let show = "grep -E '^(Uid|Gid|Groups):' /proc/self/status; echo \"HOME=$HOME\"";
    for (name, user) in [
        ("by-name", "app"),
        ("name-group", "app:staff"),
        ("uid-group", "1000:video"),
        ("name-gid", "app:77"),
        ("ghost", "ghost"),
        ("no-group", "app:wheel"),
    ] {
        w.add_container(
            name,
            &["sh", "-c", show],
            &json::merge(ON_DEMAND, &format!(r#"{{"user": "{user}"}}"#)),
        );
    }
    w.add_container(
        "own-home",
        &["sh", "-c", show],
        &json::merge(ON_DEMAND, r#"{"user": "app", "env": ["HOME=/data"]}"#),
    );
    w.add_container("root", &["sh", "-c", show], ON_DEMAND);
    let _daemon = w.start_daemon(&[]);

    let ids = |name: &str| -> Vec<String> {
        output_of(&w, name)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    for (name, want) in [
        (
            "by-name",
            [
                "Uid: 1000 1000 1000 1000",
                "Gid: 1001 1001 1001 1001",
                "Groups: 4 27",
                "HOME=/home/app",
            ],
        ),
        (
            "name-group",
            [
                "Uid: 1000 1000 1000 1000",
                "Gid: 50 50 50 50",
                "Groups: 4 27",
                "HOME=/home/app",
            ],
        ),
        (
            "uid-group",
            [
                "Uid: 1000 1000 1000 1000",
                "Gid: 27 27 27 27",
                "Groups: 4 27",
                "HOME=/home/app",
            ],
        ),
        (
            "name-gid",
            [
                "Uid: 1000 1000 1000 1000",
                "Gid: 77 77 77 77",
                "Groups: 4 27",
                "HOME=/home/app",
            ],
        ),
        (
            "own-home",
            [
                "Uid: 1000 1000 1000 1000",
                "Gid: 1001 1001 1001 1001",
                "Groups: 4 27",
                "HOME=/data",
            ],
        ),
        (
            "root",
            ["Uid: 0 0 0 0", "Gid: 0 0 0 0", "Groups:", "HOME=/root"],
        ),
    ] {
        assert_eq!(ids(name), want, "{name}");
    }
    let rootfs = w.rootfs();
    start_fails(
        &w,
        "ghost",
        &[&format!(
            "field \"user\": user \"ghost\" is not in /etc/passwd of rootfs {}",
            rootfs.display()
        )],
    );
    start_fails(
        &w,
        "no-group",
        &[&format!(
            "field \"user\": group \"wheel\" is not in /etc/group of rootfs {}",
            rootfs.display()
        )],
    );
    // Without `user`, nothing is needed from the files: a passwd that
    // cannot be read fails no start.
    fs::remove_file(etc.join("passwd")).unwrap();
    fs::create_dir(etc.join("passwd")).unwrap();
    // (The log holds every run: this one's lines are the last four.)
    let lines = ids("root");
    assert_eq!(
        lines[lines.len() - 4..],
        ["Uid: 0 0 0 0", "Gid: 0 0 0 0", "Groups:", "HOME=/"],
        "root with an unreadable passwd"
    );
}

/// Runs `mount ARGS`, asserting success.
fn mount(args: &[&str]) {
    let out = std::process::Command::new("mount")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "mount {args:?}: {}", describe(&out));
}

#[test]
fn etc_files_are_provided_read_only_unless_opted_out_or_mounted_over() {
    let w = World::new();
    let show = "for f in hostname hosts resolv.conf; do echo \"== $f\"; \
                cat /etc/$f 2>/dev/null || echo absent; done; \
                if echo x >>/etc/hosts 2>/dev/null; then echo writable; else echo read-only; fi";
    // A root that cannot take a new file and has no such files: they are
    // left out and the container runs.
    let busybox = common::rootfs::static_busybox().unwrap();
    let ro_root = w.root.join("ro-rootfs");
    common::rootfs::build(&ro_root, &busybox).unwrap();
    let ro_root_text = ro_root.to_str().unwrap();
    mount(&["--bind", ro_root_text, ro_root_text]);
    mount(&["-o", "remount,bind,ro", ro_root_text]);
    w.write_container(
        "ro-root",
        &json::merge(
            &w.container_json(&["sh", "-c", show], ON_DEMAND),
            &format!(r#"{{"rootfs": {}}}"#, json::string(ro_root_text)),
        ),
    );
    w.add_container(
        "opted-out",
        &["sh", "-c", show],
        &json::merge(ON_DEMAND, r#"{"etc-files": false}"#),
    );
    w.add_container(
        "files",
        &["sh", "-c", show],
        &json::merge(ON_DEMAND, r#"{"hostname": "box-1"}"#),
    );
    w.add_container(
        "readonly",
        &["sh", "-c", show],
        &json::merge(
            ON_DEMAND,
            r#"{"hostname": "box-2", "readonly-rootfs": true, "network": "host"}"#,
        ),
    );
    let own_hosts = w.host_dir().join("hosts");
    fs::write(&own_hosts, "10.0.0.1 db\n").unwrap();
    w.add_container(
        "mounted",
        &["sh", "-c", show],
        &json::merge(
            ON_DEMAND,
            &format!(
                r#"{{"mounts": [{{"source": {}, "target": "/etc/hosts", "readonly": true}}]}}"#,
                json::string(own_hosts.to_str().unwrap())
            ),
        ),
    );
    w.add_container(
        "as-user",
        &["sh", "-c", "cat /etc/hostname"],
        &json::merge(ON_DEMAND, r#"{"user": "1000"}"#),
    );
    // Under a tight umask the files are still readable by any user.
    let daemon = w.start_daemon_with(&[], |cmd| common::sys::umask_before_exec(cmd, 0o077));
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let hosts = |name: &str| {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n127.0.0.1\t{name}\n"
        )
    };
    let absent = "== hostname\nabsent\n== hosts\nabsent\n== resolv.conf\nabsent\n";

    // First, while the shared rootfs has none of the files.
    assert_eq!(output_of(&w, "ro-root"), format!("{absent}read-only\n"));
    assert!(!ro_root.join("etc/hosts").exists());
    // ... and the daemon's log says so.
    for name in ["hostname", "hosts", "resolv.conf"] {
        daemon.wait_for_log_line(&[
            "ro-root",
            &format!("/etc/{name} is not provided: the rootfs has none"),
        ]);
    }
    assert_eq!(output_of(&w, "opted-out"), format!("{absent}writable\n"));
    // The opted-out shell wrote a file of its own there.
    fs::remove_file(w.rootfs().join("etc/hosts")).unwrap();
    for (name, host) in [("files", "box-1"), ("readonly", "box-2")] {
        assert_eq!(
            output_of(&w, name),
            format!(
                "== hostname\n{host}\n== hosts\n{}== resolv.conf\n{resolv}read-only\n",
                hosts(host)
            ),
            "{name}"
        );
    }
    // What the container got is what the monitor wrote in the run dir.
    let run = w.run_dir().join("containers/readonly/etc");
    assert_eq!(
        fs::read_to_string(run.join("hosts")).unwrap(),
        hosts("box-2")
    );
    assert_eq!(output_of(&w, "as-user"), "as-user\n");
    assert_eq!(
        output_of(&w, "mounted"),
        format!("== hostname\nmounted\n== hosts\n10.0.0.1 db\n== resolv.conf\n{resolv}read-only\n")
    );
}
