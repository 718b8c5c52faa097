//! Container isolation through the real binary: what a container (root in
//! it, busybox rootfs) cannot do to the host and what it does not inherit
//! from the daemon: kernel tunables and kernel memory in /proc, device
//! nodes, writes below read-only mounts, ignored signals, open fds; and the
//! monitor's side of it: the container dies with its monitor also when it
//! runs as another user, a flooded stdout does not starve stderr, a process
//! name that is not UTF-8 does not make a container unmanageable, and a
//! FIFO at a mount target does not hang a start.

// nanoserde's derived code trips this lint; it is not ours to rewrite.
#![allow(clippy::question_mark)]

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::records::runtime;
use common::*;

/// Members for a container that only runs when a test starts it.
const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;

/// The capabilities berth keeps by default (DEFAULT_CAPS): CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE,
/// NET_RAW, SYS_CHROOT, AUDIT_WRITE, SETFCAP. Not MKNOD (27), not
/// SYS_ADMIN (21).
const KEPT_CAPS: u64 = 0x0000_0000_a004_25fb;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_MKNOD: u32 = 27;

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Mounts a fresh tmpfs at `dir` in the host's mount namespace. `dir` must
/// be under the world's root, whose cleanup detaches it.
fn mount_tmpfs(w: &World, dir: &Path) {
    assert!(
        dir.starts_with(&w.root),
        "{} is outside the world",
        dir.display()
    );
    fs::create_dir_all(dir).unwrap();
    let target = c_path(dir);
    // SAFETY: NUL-terminated strings that outlive the call; no data pointer
    // beyond the option string.
    let ret = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m".as_ptr().cast(),
        )
    };
    assert_eq!(
        ret,
        0,
        "mount tmpfs on {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
}

/// Whether `dir` is a mount point in the host's mount namespace.
fn is_mount_point(dir: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    cgroups::mount_points(&info).iter().any(|p| p == dir)
}

/// A daemon started through `/bin/sh -c SCRIPT` (the script ends in
/// `exec "$0" "$@"`), so that it inherits what the script set up; waits
/// until `berth ps` answers.
fn spawn_daemon_via_shell(
    w: &World,
    script: &str,
    cmd_setup: impl FnOnce(&mut Command),
) -> Spawned {
    let mut cmd = Command::new("/bin/sh");
    cmd.env_remove("BERTH_SOCKET")
        .arg("-c")
        .arg(script)
        .arg(BERTH)
        .arg("daemon")
        .arg("--config")
        .arg(w.config_path())
        .current_dir("/");
    cmd_setup(&mut cmd);
    let mut daemon = w.spawn_in_world(cmd, "berth daemon through /bin/sh");
    let end = Instant::now() + SHORT;
    loop {
        if let Some(status) = daemon.try_status() {
            panic!(
                "the daemon exited with {status}; stderr:\n{}",
                fs::read_to_string(&daemon.stderr_path).unwrap_or_default()
            );
        }
        if w.berth(&["ps"]).status.success() {
            return daemon;
        }
        assert!(
            Instant::now() < end,
            "the daemon did not answer within {SHORT:?}; stderr:\n{}",
            fs::read_to_string(&daemon.stderr_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn proc_sys_is_read_only_and_kernel_files_are_masked() {
    let w = World::new();
    let masked = ["kcore", "keys", "timer_list", "sched_debug", "kallsyms"];
    let readonly = ["sys", "irq", "bus", "fs", "sysrq-trigger"];
    // Writing core_pattern back unchanged is harmless should it be
    // writable; sysrq-trigger is only opened for writing, never written.
    let script = format!(
        "v=$(cat /proc/sys/kernel/core_pattern); \
         echo \"$v\" > /proc/sys/kernel/core_pattern && echo WROTE || echo REFUSED; \
         if [ -e /proc/sysrq-trigger ]; then \
           ( : > /proc/sysrq-trigger ) && echo SYSRQ-OPENED || echo SYSRQ-REFUSED; \
         else echo SYSRQ-ABSENT; fi; \
         for f in {}; do \
           if [ -e /proc/$f ]; then echo \"$f $(cat /proc/$f | wc -c)\"; else echo \"$f absent\"; fi; \
         done; echo ---; cat /proc/self/mountinfo",
        masked.join(" ")
    );
    w.add_container("procfs", &["/bin/sh", "-c", &script], ON_DEMAND);
    let _daemon = w.start_daemon(&[]);
    assert_eq!(w.start_wait("procfs"), 0);
    let (stdout, stderr) = w.logs("procfs", &[]);
    let (probes, mountinfo) = stdout.split_once("---\n").expect("both parts printed");

    // The same kernel: what the host's /proc has, the container's has too.
    let on_host = |f: &str| Path::new("/proc").join(f).exists();
    let mut want = String::from("REFUSED\n");
    want.push_str(if on_host("sysrq-trigger") {
        "SYSRQ-REFUSED\n"
    } else {
        "SYSRQ-ABSENT\n"
    });
    for f in masked {
        if on_host(f) {
            want.push_str(&format!("{f} 0\n"));
        } else {
            want.push_str(&format!("{f} absent\n"));
        }
    }
    assert_eq!(probes, want, "stderr:\n{stderr}");
    assert!(
        stderr.contains("can't create /proc/sys/kernel/core_pattern: Read-only file system"),
        "{stderr}"
    );

    // Each of them is a read-only mount of its own.
    for p in readonly.iter().filter(|p| on_host(p)) {
        let point = format!("/proc/{p}");
        let line = mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(point.as_str()))
            .unwrap_or_else(|| panic!("no mount at {point} in:\n{mountinfo}"));
        let options = line.split(' ').nth(5).unwrap_or_default();
        assert!(
            options.split(',').any(|o| o == "ro"),
            "{point} must be read-only: {line}"
        );
    }
}

#[test]
fn no_device_nodes_and_the_capability_bounding_set_is_the_kept_one() {
    let w = World::new();
    let script = "busybox mknod /tmp/n c 1 3 && echo MADE || echo REFUSED; \
                  echo ---; cat /proc/self/status; echo ---; cat /proc/self/mountinfo";
    w.add_container(
        "caps",
        &["/bin/sh", "-c", script],
        r#"{"autostart": false, "restart": "no", "mounts": [{"type": "tmpfs", "target": "/tmp"}]}"#,
    );
    let _daemon = w.start_daemon(&[]);
    assert_eq!(w.start_wait("caps"), 0);
    let (stdout, stderr) = w.logs("caps", &[]);
    let parts: Vec<&str> = stdout.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{stdout}");
    assert_eq!(parts[0], "REFUSED\n", "mknod must fail: {stderr}");
    assert!(
        stderr.contains("Operation not permitted"),
        "mknod fails for want of CAP_MKNOD: {stderr}"
    );

    let status = parts[1];
    let own = fs::read_to_string("/proc/self/status").unwrap();
    let want = hex_field(&own, "CapBnd") & KEPT_CAPS;
    let bounding = hex_field(status, "CapBnd");
    assert_eq!(
        bounding, want,
        "CapBnd {bounding:016x}, want {want:016x} (the kept set within the host's)"
    );
    for (bit, name) in [(CAP_SYS_ADMIN, "SYS_ADMIN"), (CAP_MKNOD, "MKNOD")] {
        assert_eq!(
            bounding & (1 << bit),
            0,
            "CAP_{name} is in the bounding set"
        );
        assert_eq!(
            hex_field(status, "CapEff") & (1 << bit),
            0,
            "CAP_{name} is effective"
        );
    }
    assert_eq!(status_field(status, "NoNewPrivs"), "1");

    // /dev is a tmpfs where no device node would work.
    let dev = parts[2]
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/dev"))
        .unwrap_or_else(|| panic!("no /dev mount in:\n{}", parts[2]));
    let options = dev.split(' ').nth(5).unwrap_or_default();
    assert!(
        options.split(',').any(|o| o == "nodev"),
        "/dev must be nodev: {dev}"
    );
}

#[test]
fn read_only_mounts_are_read_only_below_too() {
    let w = World::new();
    // A mount below the rootfs, made on the host before the start.
    let sub = w.rootfs().join("sub");
    mount_tmpfs(&w, &sub);
    // A bind source with a mount below it.
    let src = w.host_dir().join("src");
    fs::create_dir_all(&src).unwrap();
    let inner = src.join("inner");
    mount_tmpfs(&w, &inner);
    assert!(is_mount_point(&sub) && is_mount_point(&inner));

    let probe = |path: &str, tag: &str| {
        format!("touch {path} 2>/dev/null && echo {tag}-writable || echo {tag}-readonly; ")
    };
    let rofs_script = [
        probe("/x", "root"),
        probe("/sub/x", "sub"),
        probe("/tmp/x", "tmp"),
    ]
    .concat();
    w.add_container(
        "rofs",
        &["/bin/sh", "-c", &rofs_script],
        r#"{"autostart": false, "restart": "no", "readonly-rootfs": true,
            "mounts": [{"type": "tmpfs", "target": "/tmp"}]}"#,
    );
    let robind_script = [probe("/ro/y", "ro"), probe("/ro/inner/y", "inner")].concat();
    w.add_container(
        "robind",
        &["/bin/sh", "-c", &robind_script],
        &format!(
            r#"{{"autostart": false, "restart": "no",
                "mounts": [{{"source": {}, "target": "/ro", "readonly": true}}]}}"#,
            json::string(src.to_str().unwrap())
        ),
    );
    let _daemon = w.start_daemon(&[]);

    assert_eq!(w.start_wait("rofs"), 0);
    assert_eq!(
        w.logs("rofs", &[]).0,
        "root-readonly\nsub-readonly\ntmp-writable\n"
    );
    assert_eq!(w.start_wait("robind"), 0);
    assert_eq!(w.logs("robind", &[]).0, "ro-readonly\ninner-readonly\n");

    for written in [
        w.rootfs().join("x"),
        sub.join("x"),
        src.join("y"),
        inner.join("y"),
    ] {
        assert!(
            !written.exists(),
            "{} was written through a read-only mount",
            written.display()
        );
    }
}

#[test]
fn signals_ignored_by_the_daemon_are_not_ignored_in_the_container() {
    let w = World::new();
    // cat is the init itself: what it shows is exactly what berth left.
    w.add_container("sig", &["/bin/cat", "/proc/self/status"], ON_DEMAND);
    // SIGUSR1 and signal 64 (SIGRTMAX, which the C library's signal()
    // cannot reset) ignored, both survive exec.
    let daemon = spawn_daemon_via_shell(&w, r#"trap "" USR1 64; exec "$0" "$@""#, |_| {});
    let daemon_status = fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let ignored = hex_field(&daemon_status, "SigIgn");
    assert_eq!(
        ignored & ((1 << 63) | (1 << (libc::SIGUSR1 - 1))),
        (1 << 63) | (1 << (libc::SIGUSR1 - 1)),
        "the daemon must run with SIGUSR1 and 64 ignored: SigIgn {ignored:016x}"
    );

    assert_eq!(w.start_wait("sig"), 0);
    let (status, _) = w.logs("sig", &[]);
    assert_eq!(status_field(&status, "SigIgn"), "0000000000000000");
    assert_eq!(status_field(&status, "SigBlk"), "0000000000000000");
    assert_eq!(status_field(&status, "SigCgt"), "0000000000000000");
}

#[test]
fn a_container_running_as_a_user_dies_with_its_monitor() {
    let w = World::new();
    // Live restore, and no daemon while the monitor dies: nothing but the
    // parent-death signal can end the container.
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container("user", &["/bin/sleep", "1000"], r#"{"user": "1000:1000"}"#);
    let mut daemon = w.start_daemon(&[]);
    let running = w.wait_running("user");
    let (_, rec) = runtime(&w, "user");
    assert_eq!(rec.init_pid, running.pid as i32);
    let status = fs::read_to_string(format!("/proc/{}/status", rec.init_pid)).unwrap();
    assert_eq!(
        status_field(&status, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4],
        "the init runs as the user"
    );
    let (_, init_start) = proc_stat(rec.init_pid).unwrap();
    assert_eq!(init_start, rec.init_start);
    daemon.kill_9();
    assert!(
        !is_gone(rec.init_pid, init_start),
        "kill -9 of the daemon spares it"
    );

    // The monitor, through a pidfd opened before checking it is the one.
    let pidfd = common::sys::pidfd_open(rec.monitor_pid).unwrap();
    assert!(!is_gone(rec.monitor_pid, rec.monitor_start));
    common::sys::pidfd_send_signal(&pidfd, libc::SIGKILL).unwrap();

    wait_for(SHORT, "the container to die with its monitor", || {
        is_gone(rec.init_pid, init_start)
    });
    let _daemon = w.start_daemon(&[]);
    let after = w.inspect("user");
    assert_eq!((after.status.as_str(), after.pid), ("failed", 0));
    assert!(
        after
            .error
            .as_deref()
            .unwrap_or_default()
            .contains(&format!("monitor (pid {})", rec.monitor_pid)),
        "{after:?}"
    );
}

#[test]
fn a_flooded_stdout_does_not_starve_stderr() {
    let w = World::new();
    w.write_daemon_json(r#"{"log-max-size": "1m", "log-max-files": 3}"#);
    // stdout floods from the start; 512 KiB to stderr (twice its pipe)
    // only get through if stderr is read while stdout floods. The flood is
    // stopped only after that, so what follows cannot rotate the stderr
    // lines out of the logs. `wait` after the kill: a `yes` blocked on the
    // full pipe when the signal comes may still finish that write once
    // the pipe has room, after anything the shell writes meanwhile. The
    // stderr writes begin once `yes` has written (it may not have run yet
    // on a busy machine).
    let script = "yes & y=$!; \
                  until grep -q '^wchar: [1-9]' /proc/$y/io; do :; done; \
                  head -c 524288 /dev/zero | tr '\\0' e >&2; echo >&2; echo done-stderr >&2; \
                  kill $y; wait $y 2>/dev/null; echo flood-stopped; while :; do sleep 1; done";
    w.add_container("flood", &["/bin/sh", "-c", script], "{}");
    let _daemon = w.start_daemon(&[]);
    w.wait_running("flood");
    let mut last = (String::new(), String::new());
    wait_for(SHORT, "done-stderr in the logs", || {
        last = w.logs("flood", &[]);
        last.1.contains("done-stderr")
    });
    wait_for(SHORT, "the flood to be stopped", || {
        last = w.logs("flood", &[]);
        last.0.ends_with("flood-stopped\n")
    });
    let (stdout, stderr) = &last;
    assert_eq!(
        stderr.lines().filter(|l| *l == "done-stderr").count(),
        1,
        "stderr ends in done-stderr"
    );
    assert!(
        stderr.ends_with("\ndone-stderr\n"),
        "stderr tail: {:?}",
        &stderr[stderr.len().saturating_sub(40)..]
    );
    let ys = stdout.lines().filter(|l| *l == "y").count();
    assert!(ys >= 10_000, "stdout was flooding: only {ys} lines of y");
    assert!(
        w.log_dir().join("flood").join("container.log.1").exists(),
        "the flood filled at least one log file"
    );
    w.berth_ok(&["kill", "flood"]);
    assert_eq!(w.berth_ok(&["wait", "flood"]).trim(), "137");
}

#[test]
fn a_process_name_that_is_not_utf8_leaves_the_container_manageable() {
    let w = World::new();
    w.write_daemon_json(r#"{"live-restore": true}"#);
    w.add_container(
        "odd",
        &[
            "/bin/sh",
            "-c",
            "printf '\\377' > /proc/self/comm; while :; do sleep 0.1; done",
        ],
        "{}",
    );
    let mut daemon = w.start_daemon(&[]);
    let before = w.wait_running("odd");
    let pid = before.pid;
    wait_for(SHORT, "the init to rename itself", || {
        fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c == b"\xff\n")
    });
    // Opened while it runs under that name: this fd is the container's init.
    let init = common::sys::pidfd_open(pid as i32).unwrap();
    daemon.kill_9();

    let _daemon = w.start_daemon(&[]);
    let after = w.inspect("odd");
    assert_eq!((after.status.as_str(), after.pid), ("running", pid));
    let out = w.berth(&["kill", "odd"]);
    assert!(out.status.success(), "kill: {}", describe(&out));
    assert_eq!(w.berth_ok(&["wait", "odd"]).trim(), "137");
    let gone = common::sys::pidfd_send_signal(&init, 0).unwrap_err();
    assert_eq!(gone.raw_os_error(), Some(libc::ESRCH), "the init is gone");
    let ended = w.inspect("odd");
    assert_eq!(
        (ended.status.as_str(), ended.exit_code),
        ("exited", Some(137))
    );
}

#[test]
fn a_fifo_at_a_mount_target_does_not_hang_the_start() {
    let w = World::new();
    let fifo = w.rootfs().join("fifo");
    let c_fifo = c_path(&fifo);
    // SAFETY: a NUL-terminated path that outlives the call.
    let ret = unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o644) };
    assert_eq!(ret, 0, "mkfifo: {}", std::io::Error::last_os_error());
    let file = w.host_dir().join("content.txt");
    fs::write(&file, "bound-content\n").unwrap();
    w.add_container(
        "fifo",
        &["/bin/sh", "-c", "cat /fifo; while :; do sleep 0.1; done"],
        &format!(
            r#"{{"autostart": false, "mounts": [{{"source": {}, "target": "/fifo", "readonly": true}}]}}"#,
            json::string(file.to_str().unwrap())
        ),
    );
    let _daemon = w.start_daemon(&[]);
    let out = w.spawn_berth(&["start", "fifo"]).finish(SHORT);
    assert!(out.status.success(), "start: {}", describe(&out));
    let running = w.inspect("fifo");
    assert!(running.is_running(), "{running:?}");
    wait_for(SHORT, "the bound file's content in the logs", || {
        w.logs("fifo", &[]).0 == "bound-content\n"
    });
    // The FIFO on the host is still a FIFO: the file was bound over it,
    // nothing was written into the rootfs.
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

/// `ls /proc/self/fd` as the container's init: its stdio and the fd ls
/// opened for the directory, nothing the daemon had.
fn fds_of_a_container_started_by(w: &World, daemon: &Spawned) -> String {
    let daemon_fd7 = fs::read_link(format!("/proc/{}/fd/7", daemon.child.id()))
        .unwrap_or_else(|e| panic!("the daemon must hold an inherited fd 7: {e}"));
    assert_eq!(daemon_fd7, PathBuf::from("/etc/hostname"));
    assert_eq!(w.start_wait("fds"), 0);
    let (stdout, stderr) = w.logs("fds", &[]);
    assert_eq!(stderr, "");
    stdout
}

#[test]
fn fds_the_daemon_inherited_do_not_reach_containers() {
    let w = World::new();
    w.add_container("fds", &["/bin/ls", "/proc/self/fd"], ON_DEMAND);
    let daemon = spawn_daemon_via_shell(&w, r#"exec 7</etc/hostname; exec "$0" "$@""#, |_| {});
    assert_eq!(fds_of_a_container_started_by(&w, &daemon), "0\n1\n2\n3\n");
}

/// close_range(2) failing with ENOSYS, as on a kernel older than 5.9 (and
/// CLOSE_RANGE_CLOEXEC, 5.11); inherited by the daemon, its monitors and
/// containers.
fn without_close_range(cmd: &mut Command) {
    common::sys::without_syscall(cmd, libc::SYS_close_range);
}

#[test]
fn fds_do_not_leak_on_a_kernel_without_close_range() {
    let w = World::new();
    w.add_container("fds", &["/bin/ls", "/proc/self/fd"], ON_DEMAND);
    let daemon = spawn_daemon_via_shell(
        &w,
        r#"exec 7</etc/hostname; exec "$0" "$@""#,
        without_close_range,
    );
    let status = fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    assert_eq!(
        status_field(&status, "Seccomp"),
        "2",
        "the daemon runs under the filter"
    );
    assert_eq!(fds_of_a_container_started_by(&w, &daemon), "0\n1\n2\n3\n");
}
