//! Benchmark (not a test): berth side by side with crun and runc, in one
//! run, each figure from rounds in which every contender runs once in a
//! random order (median, min..max, ratio of medians).
//!
//! `tests/bench/run [--quick] [--rounds N] [SECTION...]` (as root) installs
//! crun and runc, builds the static musl binary and runs this with it;
//! `cargo bench --bench compare -- [--quick] [--rounds N] [SECTION...]`
//! runs it against `$BERTH_BENCH_BINARY` (default
//! target/x86_64-unknown-linux-musl/release/berth). Sections (default all):
//!
//! - `start`: start-to-exit of /bin/true. `berth start --wait` (run-dir on a
//!   tmpfs; default seccomp filter, and once with `"seccomp":
//!   "unconfined"`), `crun run` and `runc run` of an equivalent bundle
//!   (state on a tmpfs), and a floor: this process's own clone3 into the
//!   same namespaces and a cgroup2 dir, chroot, execve of /bin/true, waitpid.
//! - `boot`: daemon exec to the first `ps` answer showing all N running
//!   (N = 10, 50), against N `crun run --detach` started at once, to the
//!   last of them exiting 0.
//! - `idle`: with 10 idle containers, the memory of the daemon and of a
//!   monitor (smaps_rollup), and their context switches over a window.
//! - `logs`: a container writing fixed-size lines (`yes LINE | head -c
//!   BYTES`) until its `start --wait` returns (the monitor drains the pipes
//!   before the exit is reported), against the same command chroot'ed into
//!   the same rootfs writing into a pipe this process reads; log bytes on
//!   disk per byte written.
//! - `reattach`: with 1, 10, 50, 200 containers under live restore, kill -9
//!   of the daemon, then a new daemon's exec to the first `ps` answer showing
//!   all of them running with the same pids; and the new daemon's CPU time
//!   until then.
//!
//! A daemon's clock starts at its exec: the harness first moves the forked
//! child into the world's cgroup, a write to cgroup.procs that can wait
//! for an RCU grace period (up to some 13 ms here), which is the
//! harness's cost, not berth's. It stops when the whole answer is read,
//! before this process parses it.
//!
//! The whole run happens in a private mount namespace (its tmpfs mounts go
//! with it). On a hybrid cgroup host an empty file is bound there over the
//! cgroup2 root's cgroup.controllers: crun 1.8 refuses hybrid hosts
//! otherwise. Everything made is removed on the way out, also after a
//! failure: containers and monitors through their cgroups, crun and runc
//! containers with `delete -f`, cgroups, mounts and temp dirs.

#[path = "../common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use nanoserde::DeJson;

/// The container command that idles until stopped.
const IDLE: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 1; done",
];

/// The namespaces berth gives a container by default (network "none"):
/// see `Plan::spawn` and the cgroup namespace step in src/container/spawn.rs.
const NAMESPACES: &[&str] = &["pid", "mount", "uts", "ipc", "network", "cgroup"];

const MIB: u64 = 1024 * 1024;

struct Options {
    rounds: usize,
    quick: bool,
    sections: Vec<String>,
}

impl Options {
    fn parse() -> Options {
        let mut o = Options {
            rounds: 0,
            quick: false,
            sections: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--rounds" => {
                    o.rounds = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .expect("--rounds takes a number")
                }
                // cargo bench passes --bench to every bench binary.
                "--bench" => {}
                s if s.starts_with('-') => panic!("unknown option {s}"),
                s => o.sections.push(s.to_string()),
            }
        }
        if o.rounds == 0 {
            o.rounds = if o.quick { 10 } else { 40 };
        }
        o
    }

    fn wants(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }

    /// Rounds of the sections whose one run takes seconds.
    fn heavy_rounds(&self) -> usize {
        if self.quick {
            2
        } else {
            (self.rounds / 8).max(3)
        }
    }
}

// ---- figures ----

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median (the upper one of an even count), min, max.
fn spread(v: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = v.to_vec();
    s.sort();
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// One row: median, range, and the median's ratio to `base`'s median.
fn row(label: &str, v: &[Duration], base: Option<&[Duration]>) {
    let (med, min, max) = spread(v);
    let ratio = base
        .map(|b| format!("{:6.2}x", med.as_secs_f64() / spread(b).0.as_secs_f64()))
        .unwrap_or_else(|| "      -".to_string());
    println!(
        "  {label:<40} {:9.3} ms  {:9.3} .. {:9.3} ms  {ratio}",
        ms(med),
        ms(min),
        ms(max)
    );
}

fn header(title: &str, base: &str) {
    println!("\n{title}");
    println!(
        "  {:<40} {:>12}  {:>25}  {:>7}",
        "",
        "median",
        "min .. max",
        format!("/{base}")
    );
}

// ---- the run's own resources ----

/// What the run made outside the worlds: a temp dir with a tmpfs for the
/// OCI runtimes' state, their bundles, a cgroup subtree for their
/// containers, and the containers themselves. Dropping it removes all.
struct Bench {
    binary: PathBuf,
    dir: PathBuf,
    /// A tmpfs: crun's and runc's --root dirs.
    state: PathBuf,
    /// The cgroupsPath every OCI container goes below (absolute, the same
    /// in each hierarchy): a dir below this process's deepest own cgroup.
    cgroup_base: PathBuf,
    /// Every hierarchy's mount point.
    cgroup_mounts: Vec<PathBuf>,
    /// Ancestors of `cgroup_base` that did not exist before (per mount),
    /// deepest first, removed at the end if the runtimes made them.
    made_ancestors: Vec<PathBuf>,
    /// (runtime, container id) of every OCI container created.
    oci: RefCell<Vec<(&'static str, String)>>,
    rng: RefCell<Box<dyn FnMut(u64) -> u64>>,
}

impl Bench {
    fn new(binary: PathBuf) -> Bench {
        let pid = std::process::id();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = PathBuf::from(format!("/tmp/berth-bench-{pid}-{nanos}"));
        let hierarchies = cgroups::hierarchies().expect("read /proc/self/{mountinfo,cgroup}");
        let own = hierarchies
            .iter()
            .map(|h| h.own.clone())
            .max_by_key(|p| p.components().count())
            .unwrap_or_default();
        let cgroup_base = Path::new("/").join(own).join(format!("berth-bench-{pid}"));
        let cgroup_mounts: Vec<PathBuf> = hierarchies.iter().map(|h| h.mount.clone()).collect();
        let mut made_ancestors = Vec::new();
        for m in &cgroup_mounts {
            for a in cgroup_base.ancestors().skip(1) {
                let d = m.join(a.strip_prefix("/").unwrap());
                if !d.exists() {
                    made_ancestors.push(d);
                }
            }
        }
        let bench = Bench {
            binary,
            state: dir.join("state"),
            dir,
            cgroup_base,
            cgroup_mounts,
            made_ancestors,
            oci: RefCell::new(Vec::new()),
            rng: RefCell::new(Box::new(rng())),
        };
        fs::create_dir(&bench.dir).expect("create the bench dir");
        fs::create_dir(&bench.state).unwrap();
        sys::mount_tmpfs(&bench.state, "size=64m,mode=0700").expect("mount the state tmpfs");
        bench
    }

    /// Shuffles `v` for the next round; first, after SIGINT or SIGTERM,
    /// panics, so that everything is cleaned up on the way out.
    fn shuffle<T>(&self, v: &mut [T]) {
        assert!(!STOP.load(Ordering::Relaxed), "interrupted");
        let mut rng = self.rng.borrow_mut();
        for i in (1..v.len()).rev() {
            v.swap(i, rng(i as u64 + 1) as usize);
        }
    }

    /// `berth --config <world's> ARGS`, stdio detached but for stderr.
    fn client(&self, w: &World, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env_remove("BERTH_SOCKET")
            .current_dir("/")
            .arg("--config")
            .arg(w.config_path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    fn daemon(&self, w: &World) -> Berthd {
        Berthd(w.spawn_in_world(self.daemon_command(w), "berth daemon"))
    }

    /// `daemon`, and the time (CLOCK_MONOTONIC, ns) of its exec: after
    /// the spawn joined the world's cgroup, which may wait for an RCU
    /// grace period (some 10 ms) that is the harness's, not berth's.
    fn daemon_timed(&self, w: &World) -> (Berthd, u64) {
        let mut clock = None;
        let spawned = w.spawn_in_cgroup_then(
            self.daemon_command(w),
            "berth daemon",
            w.cgroup2_dir(),
            |cmd| clock = Some(sys::note_exec_time(cmd)),
        );
        (Berthd(spawned), clock.unwrap().time())
    }

    fn daemon_command(&self, w: &World) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env_remove("BERTH_SOCKET")
            .current_dir("/")
            .arg("daemon")
            .arg("--config")
            .arg(w.config_path());
        cmd
    }

    /// An OCI bundle at bench-dir/bundles/ID running `args` in `rootfs`,
    /// its cgroup below the bench's base.
    fn bundle(&self, id: &str, rootfs: &Path, args: &[&str]) -> PathBuf {
        let dir = self.dir.join("bundles").join(id);
        fs::create_dir_all(&dir).unwrap();
        let cgroup = self.cgroup_base.join(id);
        fs::write(
            dir.join("config.json"),
            oci_config(rootfs, args, &cgroup.to_string_lossy()),
        )
        .unwrap();
        dir
    }

    /// `RUNTIME --root <tmpfs>/RUNTIME ARGS`, the id noted for cleanup.
    fn oci(&self, runtime: &'static str, id: &str, args: &[&str]) -> Command {
        let mut known = self.oci.borrow_mut();
        if !known.iter().any(|(r, i)| *r == runtime && i == id) {
            known.push((runtime, id.to_string()));
        }
        let mut cmd = Command::new(runtime);
        cmd.arg("--root")
            .arg(self.state.join(runtime))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    fn oci_delete(&self, runtime: &'static str, id: &str) {
        let _ = self.oci(runtime, id, &["delete", "-f", id]).output();
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for (runtime, id) in self.oci.take() {
            let _ = Command::new(runtime)
                .arg("--root")
                .arg(self.state.join(runtime))
                .args(["delete", "-f", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let roots: Vec<PathBuf> = self
            .cgroup_mounts
            .iter()
            .map(|m| m.join(self.cgroup_base.strip_prefix("/").unwrap()))
            .collect();
        if let Err(e) = cgroups::kill_all_below(&roots, SHORT) {
            eprintln!("bench cleanup: {e}");
        }
        if let Err(e) = cgroups::remove_all_below(&roots, SHORT) {
            eprintln!("bench cleanup: {e}");
        }
        let mut made = self.made_ancestors.clone();
        made.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in made {
            let _ = fs::remove_dir(d);
        }
        let _ = sys::umount_detach(&self.state);
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("bench cleanup: remove {}: {e}", self.dir.display());
        }
    }
}

/// A berth daemon of a world (killed when dropped, before the world's
/// cleanup kills what it left).
struct Berthd(Spawned);

impl Berthd {
    fn pid(&self) -> u32 {
        self.0.child.id()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.0.stderr_path).unwrap_or_default()
    }

    fn kill_9(&mut self) {
        if self.0.try_status().is_none() {
            sys::kill_child(self.pid(), libc::SIGKILL).expect("kill -9 the daemon");
        }
        let _ = self.0.child.wait();
    }

    /// Waits until a `ps` on the socket satisfies `cond`; the containers.
    fn wait_ps(
        &mut self,
        w: &World,
        what: &str,
        deadline: Duration,
        cond: impl FnMut(&[Inspect]) -> bool,
    ) -> Vec<Inspect> {
        self.wait_ps_at(w, what, deadline, cond).0
    }

    /// `wait_ps`, and when the answer that satisfied `cond` was in (see
    /// `api_ps_at`).
    fn wait_ps_at(
        &mut self,
        w: &World,
        what: &str,
        deadline: Duration,
        mut cond: impl FnMut(&[Inspect]) -> bool,
    ) -> (Vec<Inspect>, u64) {
        let end = Instant::now() + deadline;
        loop {
            if let Some((list, at)) = api_ps_at(&w.socket()) {
                if cond(&list) {
                    return (list, at);
                }
            }
            if let Some(status) = self.0.try_status() {
                panic!(
                    "daemon exited ({status}) waiting for {what}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; daemon stderr:\n{}",
                self.stderr()
            );
            // Often enough for a fine figure, seldom enough not to keep
            // the daemon busy answering.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[derive(DeJson)]
struct PsAnswer {
    ok: bool,
    #[nserde(default)]
    containers: Vec<Inspect>,
}

/// One `ps` request on the daemon's socket, in this process (no client
/// process between the answer and the clock); None if it is not up.
fn api_ps(socket: &Path) -> Option<Vec<Inspect>> {
    api_ps_at(socket).map(|(list, _)| list)
}

/// `api_ps`, and when (CLOCK_MONOTONIC, ns) the whole answer was in,
/// before this process parsed it.
fn api_ps_at(socket: &Path) -> Option<(Vec<Inspect>, u64)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.write_all(b"{\"verb\":\"ps\"}\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    let at = sys::monotonic_ns();
    let answer = PsAnswer::deserialize_json(line.trim()).ok()?;
    answer.ok.then_some((answer.containers, at))
}

fn all_running(list: &[Inspect], n: usize) -> bool {
    list.len() == n && list.iter().all(Inspect::is_running)
}

fn check(what: &str, out: std::io::Result<Output>) {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", describe(&out));
}

/// A world whose run-dir is a tmpfs, as on a device.
fn world(daemon_json: &str) -> World {
    let w = World::new();
    sys::mount_tmpfs(&w.run_dir(), "size=16m,mode=0755").expect("mount the run-dir tmpfs");
    w.write_daemon_json(daemon_json);
    w
}

// ---- the OCI bundle ----

fn json_strings(v: &[&str]) -> String {
    let items: Vec<String> = v.iter().map(|s| json::string(s)).collect();
    format!("[{}]", items.join(","))
}

/// A bundle's config.json: what berth sets up by default, in OCI terms
/// (the namespaces, proc, a tmpfs /dev with the usual devices, devpts,
/// shm, mqueue, read-only sysfs, masked and read-only /proc paths, Docker's
/// default capabilities, all devices denied but the defaults); no seccomp
/// filter and no terminal.
fn oci_config(rootfs: &Path, args: &[&str], cgroup: &str) -> String {
    let caps = json_strings(&[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]);
    let namespaces: Vec<String> = NAMESPACES
        .iter()
        .map(|n| format!("{{\"type\":\"{n}\"}}"))
        .collect();
    let mount = |dest: &str, kind: &str, source: &str, options: &[&str]| {
        format!(
            "{{\"destination\":\"{dest}\",\"type\":\"{kind}\",\"source\":\"{source}\",\"options\":{}}}",
            json_strings(options)
        )
    };
    let mounts = [
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=1m"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    let masked = json_strings(&[
        "/proc/acpi",
        "/proc/asound",
        "/proc/interrupts",
        "/proc/kallsyms",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/sys/firmware",
    ]);
    let readonly = json_strings(&[
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]);
    format!(
        r#"{{"ociVersion":"1.0.2",
"process":{{"terminal":false,"user":{{"uid":0,"gid":0}},"args":{args},
 "env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"cwd":"/",
 "capabilities":{{"bounding":{caps},"effective":{caps},"permitted":{caps}}},
 "noNewPrivileges":true}},
"root":{{"path":{root},"readonly":false}},
"hostname":"bench",
"mounts":[{mounts}],
"linux":{{"namespaces":[{namespaces}],"cgroupsPath":{cgroup},
 "resources":{{"devices":[{{"allow":false,"access":"rwm"}}]}},
 "maskedPaths":{masked},"readonlyPaths":{readonly}}}}}
"#,
        args = json_strings(args),
        root = json::string(&rootfs.to_string_lossy()),
        mounts = mounts.join(","),
        namespaces = namespaces.join(","),
        cgroup = json::string(cgroup),
    )
}

// ---- the floor ----

/// The kernel's struct clone_args (up to `cgroup`, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The least a container start can be: clone3 into new pid, mount, uts,
/// ipc, net and cgroup namespaces and into a cgroup2 dir (`cgroup`, an fd),
/// chroot into `rootfs`, execve /bin/true; waitpid. No mounts, no
/// capabilities dropped, no seccomp.
fn floor_once(rootfs: &CString, cgroup: &fs::File) -> Duration {
    let path = c"/bin/true";
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [c"PATH=/bin".as_ptr(), std::ptr::null()];
    let args = CloneArgs {
        flags: (libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWCGROUP) as u64
            | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    let t = Instant::now();
    // SAFETY: clone3 without CLONE_VM gives the child a copy of this
    // single-threaded process; the child only makes raw syscalls on memory
    // prepared before the clone and then execs or exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: see above; _exit never returns.
        unsafe {
            if libc::chroot(rootfs.as_ptr()) == 0 && libc::chdir(c"/".as_ptr()) == 0 {
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            }
            libc::_exit(127);
        }
    }
    assert!(pid > 0, "clone3: {}", std::io::Error::last_os_error());
    let mut status = 0;
    // SAFETY: waits for the child just made, writing into a local.
    let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    let took = t.elapsed();
    assert_eq!(got, pid as libc::pid_t, "waitpid");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the floor's child ended with status {status:#x}"
    );
    took
}

// ---- sections ----

/// One contender's run: how long it took.
type Run<'a> = Box<dyn FnMut() -> Duration + 'a>;

fn start_bench(b: &Bench, rounds: usize) {
    let w = world(r#"{"log-level": "warn"}"#);
    w.add_container("t", &["/bin/true"], r#"{"autostart": false}"#);
    w.add_container(
        "u",
        &["/bin/true"],
        r#"{"autostart": false, "seccomp": "unconfined"}"#,
    );
    let mut daemon = b.daemon(&w);
    daemon.wait_ps(&w, "the daemon to answer", SHORT, |_| true);
    let crun_bundle = b.bundle("start-crun", &w.rootfs(), &["/bin/true"]);
    let runc_bundle = b.bundle("start-runc", &w.rootfs(), &["/bin/true"]);
    let floor_dir = w.cgroup2_dir().join("floor");
    fs::create_dir(&floor_dir).unwrap();
    let floor_cgroup = fs::File::open(&floor_dir).unwrap();
    let rootfs = CString::new(w.rootfs().as_os_str().as_bytes()).unwrap();

    let timed = |mut cmd: Command, what: &str| {
        let t = Instant::now();
        let out = cmd.output();
        let took = t.elapsed();
        check(what, out);
        took
    };
    let mut contenders: Vec<(&str, Run)> = vec![
        (
            "berth start --wait",
            Box::new(|| timed(b.client(&w, &["start", "--wait", "t"]), "berth start")),
        ),
        (
            "berth start --wait (seccomp unconfined)",
            Box::new(|| timed(b.client(&w, &["start", "--wait", "u"]), "berth start")),
        ),
        (
            "crun run",
            Box::new(|| {
                let bundle = crun_bundle.to_str().unwrap();
                timed(
                    b.oci("crun", "start", &["run", "--bundle", bundle, "start"]),
                    "crun run",
                )
            }),
        ),
        (
            "runc run",
            Box::new(|| {
                let bundle = runc_bundle.to_str().unwrap();
                timed(
                    b.oci("runc", "start", &["run", "--bundle", bundle, "start"]),
                    "runc run",
                )
            }),
        ),
        (
            "floor: clone3 + chroot + exec + wait",
            Box::new(|| floor_once(&rootfs, &floor_cgroup)),
        ),
    ];
    // One unmeasured run each: caches, the first cgroup.procs write.
    for (_, run) in contenders.iter_mut() {
        run();
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    let mut order: Vec<usize> = (0..contenders.len()).collect();
    for _ in 0..rounds {
        b.shuffle(&mut order);
        for &i in &order {
            samples[i].push((contenders[i].1)());
        }
    }
    let labels: Vec<&str> = contenders.iter().map(|(label, _)| *label).collect();
    drop(contenders);
    header(
        &format!(
            "start to exit of /bin/true, {rounds} rounds, each contender once per round in random order"
        ),
        "crun",
    );
    let crun = samples[labels.iter().position(|l| *l == "crun run").unwrap()].clone();
    for (label, v) in labels.iter().zip(&samples) {
        row(label, v, Some(&crun));
    }
    daemon.kill_9();
    drop(daemon);
    drop(w);
}

/// berth: daemon exec to the first `ps` showing all `n` running.
fn boot_berth(b: &Bench, n: usize) -> Duration {
    let w = world(r#"{"log-level": "warn"}"#);
    for i in 0..n {
        w.add_container(&format!("c{i:02}"), IDLE, "{}");
    }
    let (mut daemon, exec_at) = b.daemon_timed(&w);
    let (_, answered_at) = daemon.wait_ps_at(&w, "all running", LONG, |l| all_running(l, n));
    let took = Duration::from_nanos(answered_at - exec_at);
    daemon.kill_9();
    drop(daemon);
    drop(w);
    took
}

/// crun: `n` × `crun run --detach` at once, to the last one's exit 0.
fn boot_crun(b: &Bench, rootfs: &Path, n: usize) -> Duration {
    let ids: Vec<String> = (0..n).map(|i| format!("boot{i:02}")).collect();
    let bundles: Vec<PathBuf> = ids.iter().map(|id| b.bundle(id, rootfs, IDLE)).collect();
    let mut cmds: Vec<Command> = ids
        .iter()
        .zip(&bundles)
        .map(|(id, bundle)| {
            let mut cmd = b.oci(
                "crun",
                id,
                &["run", "--detach", "--bundle", bundle.to_str().unwrap(), id],
            );
            // The container keeps crun's stdio: a pipe would not end.
            cmd.stderr(fs::File::create(bundle.join("stderr")).unwrap());
            cmd
        })
        .collect();
    let t = Instant::now();
    let children: Vec<_> = cmds
        .iter_mut()
        .map(|c| c.spawn().expect("spawn crun"))
        .collect();
    let statuses: Vec<_> = children.into_iter().map(|mut c| c.wait()).collect();
    let took = t.elapsed();
    for (status, bundle) in statuses.into_iter().zip(&bundles) {
        let status = status.expect("wait for crun");
        assert!(
            status.success(),
            "crun run --detach: {status}: {}",
            fs::read_to_string(bundle.join("stderr")).unwrap_or_default()
        );
    }
    for id in &ids {
        b.oci_delete("crun", id);
    }
    took
}

fn boot_bench(b: &Bench, rounds: usize) {
    let rootfs_world = World::new();
    let rootfs = rootfs_world.rootfs();
    let sizes = [10usize, 50];
    // (size, is crun)
    let mut order: Vec<(usize, bool)> = sizes
        .iter()
        .flat_map(|&n| [(n, false), (n, true)])
        .collect();
    let mut samples: Vec<((usize, bool), Vec<Duration>)> =
        order.iter().map(|&k| (k, Vec::new())).collect();
    for _ in 0..rounds {
        b.shuffle(&mut order);
        for &(n, crun) in &order {
            let took = if crun {
                boot_crun(b, &rootfs, n)
            } else {
                boot_berth(b, n)
            };
            samples
                .iter_mut()
                .find(|(k, _)| *k == (n, crun))
                .unwrap()
                .1
                .push(took);
        }
    }
    header(
        &format!(
            "cold boot of N idle containers, {rounds} rounds, shuffled: berth daemon exec to the first `ps` showing all N running; crun: N `crun run --detach` at once to the last one's exit"
        ),
        "crun",
    );
    let get = |k: (usize, bool)| samples.iter().find(|(s, _)| *s == k).unwrap().1.clone();
    for n in sizes {
        let crun = get((n, true));
        row(
            &format!("berth daemon, {n} containers"),
            &get((n, false)),
            Some(&crun),
        );
        row(&format!("crun run --detach x {n}"), &crun, Some(&crun));
    }
}

fn status_number(pid: u32, key: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn switches(pid: u32) -> u64 {
    status_number(pid, "voluntary_ctxt_switches") + status_number(pid, "nonvoluntary_ctxt_switches")
}

fn mem_line(label: &str, pid: u32) {
    println!(
        "  {label:<40} RSS {:5} KiB   PSS {:5} KiB   private dirty {:5} KiB",
        mem_kib(pid, "Rss"),
        mem_kib(pid, "Pss"),
        mem_kib(pid, "Private_Dirty")
    );
}

/// The daemon's spare monitor: its child whose command line is exactly
/// `berth monitor` (a monitor started ahead, not yet anyone's).
fn spare_of(daemon: u32) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = fs::read(e.path().join("cmdline")).ok()?;
        (ppid == daemon && cmdline == b"berth\0monitor\0").then_some(pid)
    })
}

fn idle_bench(b: &Bench, window: Duration) {
    let n = 10;
    let w = world(r#"{"log-level": "warn"}"#);
    for i in 0..n {
        w.add_container(&format!("c{i:02}"), IDLE, "{}");
    }
    let mut daemon = b.daemon(&w);
    let list = daemon.wait_ps(&w, "all running", LONG, |l| all_running(l, n));
    let monitors: Vec<u32> = list.iter().map(|c| c.monitor_pid).collect();
    assert!(monitors.iter().all(|&p| p > 0), "every monitor has a pid");
    // Let start-up's allocations and page faults settle.
    std::thread::sleep(Duration::from_secs(1));
    let spare = spare_of(daemon.pid()).expect("the daemon has a spare monitor");
    println!("\nmemory with {n} idle containers running (/proc/PID/smaps_rollup)");
    mem_line("berth daemon", daemon.pid());
    mem_line("one berth monitor (c00)", monitors[0]);
    mem_line("the spare monitor", spare);
    let mut private: Vec<u64> = monitors
        .iter()
        .map(|&p| mem_kib(p, "Private_Dirty"))
        .collect();
    private.sort_unstable();
    println!(
        "  {:<40} private dirty median {} KiB, range {} .. {} KiB",
        format!("all {n} monitors"),
        private[n / 2],
        private[0],
        private[n - 1]
    );

    let before: Vec<u64> = std::iter::once(daemon.pid())
        .chain(monitors.iter().copied())
        .chain(std::iter::once(spare))
        .map(switches)
        .collect();
    let t = Instant::now();
    // The window: nothing but the daemon, its monitors and the containers
    // run (no client asks the daemon anything).
    std::thread::sleep(window);
    let secs = t.elapsed().as_secs_f64();
    let after: Vec<u64> = std::iter::once(daemon.pid())
        .chain(monitors.iter().copied())
        .chain(std::iter::once(spare))
        .map(switches)
        .collect();
    let rates: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(a, z)| (z - a) as f64 / secs)
        .collect();
    let mut monitor_rates = rates[1..=n].to_vec();
    monitor_rates.sort_by(f64::total_cmp);
    println!(
        "\nidle wake-ups with {n} idle containers, {secs:.1} s window (voluntary + involuntary context switches)"
    );
    println!("  {:<40} {:8.2} /s", "berth daemon", rates[0]);
    println!(
        "  {:<40} {:8.2} /s median, {:.2} .. {:.2} /s",
        format!("a berth monitor (of {n})"),
        monitor_rates[n / 2],
        monitor_rates[0],
        monitor_rates[n - 1]
    );
    println!("  {:<40} {:8.2} /s", "the spare monitor", rates[n + 1]);
    daemon.kill_9();
}

/// Sizes of every file in `dir` (the live log and rotated ones).
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Reads `child`'s stdout to its end; the bytes read.
fn drain_count(child: &mut std::process::Child) -> u64 {
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) => return total,
            Ok(k) => total += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn logs_bench(b: &Bench, rounds: usize, quick: bool) {
    let w = world(r#"{"log-level": "warn", "log-max-size": "1g", "log-max-files": 100}"#);
    // (name, line length with its newline, bytes to write)
    let cases: [(&str, usize, u64); 2] = if quick {
        [("l77", 77, 16 * MIB), ("l2", 2, 2 * MIB)]
    } else {
        [("l77", 77, 64 * MIB), ("l2", 2, 4 * MIB)]
    };
    let line_text = |len: usize| -> String {
        "abcdefghijklmnopqrstuvwxyz"
            .chars()
            .cycle()
            .take(len - 1)
            .collect()
    };
    let script = |len: usize, bytes: u64| format!("yes {} | head -c {bytes}", line_text(len));
    for &(name, len, bytes) in &cases {
        w.add_container(
            name,
            &["/bin/sh", "-c", &script(len, bytes)],
            r#"{"autostart": false}"#,
        );
    }
    let mut daemon = b.daemon(&w);
    daemon.wait_ps(&w, "the daemon to answer", SHORT, |_| true);

    let berth_run = |name: &str, bytes: u64| -> (Duration, u64) {
        let log_dir = w.log_dir().join(name);
        if log_dir.is_dir() {
            for e in fs::read_dir(&log_dir).unwrap() {
                let _ = fs::remove_file(e.unwrap().path());
            }
        }
        let t = Instant::now();
        let out = b.client(&w, &["start", "--wait", name]).output();
        let took = t.elapsed();
        check("berth start --wait (logs)", out);
        let on_disk = dir_bytes(&log_dir);
        // Every byte must be in the logs, or the figure means nothing.
        let mut logs = b.client(&w, &["logs", name]);
        let mut child = logs.stdout(Stdio::piped()).spawn().unwrap();
        let read = drain_count(&mut child);
        check("berth logs", child.wait_with_output());
        assert_eq!(
            read, bytes,
            "berth logs {name} gives back every byte written"
        );
        (took, on_disk)
    };
    let pipe_run = |len: usize, bytes: u64| -> Duration {
        let mut cmd = Command::new("chroot");
        cmd.arg(w.rootfs())
            .args(["/bin/sh", "-c", &script(len, bytes)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let t = Instant::now();
        let mut child = cmd.spawn().expect("spawn chroot");
        let read = drain_count(&mut child);
        assert!(child.wait().unwrap().success(), "the pipe writer");
        let took = t.elapsed();
        assert_eq!(read, bytes, "the pipe reader got every byte");
        took
    };

    // (case index, to berth)
    let mut order: Vec<(usize, bool)> = (0..cases.len())
        .flat_map(|c| [(c, true), (c, false)])
        .collect();
    let mut times: Vec<((usize, bool), Vec<Duration>)> =
        order.iter().map(|&k| (k, Vec::new())).collect();
    let mut flash: Vec<Vec<u64>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        b.shuffle(&mut order);
        for &(c, to_berth) in &order {
            let (name, len, bytes) = cases[c];
            let took = if to_berth {
                let (took, on_disk) = berth_run(name, bytes);
                flash[c].push(on_disk);
                took
            } else {
                pipe_run(len, bytes)
            };
            times
                .iter_mut()
                .find(|(k, _)| *k == (c, to_berth))
                .unwrap()
                .1
                .push(took);
        }
    }
    daemon.kill_9();
    println!(
        "\nlog throughput, {rounds} rounds, shuffled: `yes LINE | head -c BYTES` in a container until `berth start --wait` returns (all logged), against the same command chroot'ed into the same rootfs writing into a pipe read by this process"
    );
    println!(
        "  {:<40} {:>12}  {:>25}  {:>9}  {:>7}",
        "", "median", "min .. max", "rate", "/pipe"
    );
    let get = |k| times.iter().find(|(s, _)| *s == k).unwrap().1.clone();
    for (c, &(_, len, bytes)) in cases.iter().enumerate() {
        let pipe = spread(&get((c, false))).0;
        for (to_berth, label) in [(true, "berth logs"), (false, "pipe")] {
            let v = get((c, to_berth));
            let (med, min, max) = spread(&v);
            let rate = bytes as f64 / MIB as f64 / med.as_secs_f64();
            println!(
                "  {:<40} {:9.1} ms  {:9.1} .. {:9.1} ms  {rate:6.1} MiB/s  {:6.2}x",
                format!("{label}, {len}-byte lines, {} MiB", bytes / MIB),
                ms(med),
                ms(min),
                ms(max),
                pipe.as_secs_f64() / med.as_secs_f64(),
            );
        }
        let per_byte: Vec<f64> = flash[c].iter().map(|&d| d as f64 / bytes as f64).collect();
        let mean = per_byte.iter().sum::<f64>() / per_byte.len() as f64;
        println!(
            "  {:<40} {mean:.3} bytes in log files per byte written ({:.1} per {len}-byte line)",
            format!("on disk, {len}-byte lines"),
            mean * len as f64
        );
    }
}

fn reattach_bench(b: &Bench, rounds: usize) {
    let sizes = [1usize, 10, 50, 200];
    let mut sites = Vec::new();
    for &n in &sizes {
        let w = world(r#"{"log-level": "info", "live-restore": true}"#);
        for i in 0..n {
            w.add_container(&format!("c{i:03}"), IDLE, "{}");
        }
        let mut daemon = b.daemon(&w);
        daemon.wait_ps(&w, &format!("all {n} running"), LONG, |l| all_running(l, n));
        sites.push((n, w, Some(daemon), Vec::new(), Vec::new(), Vec::new()));
    }
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    for _ in 0..rounds {
        b.shuffle(&mut order);
        for &i in &order {
            let (n, w, daemon, times, inside, cpu) = &mut sites[i];
            let n = *n;
            let mut old = daemon.take().unwrap();
            let before = api_ps(&w.socket()).expect("ps before the kill");
            assert!(all_running(&before, n));
            old.kill_9();
            drop(old);
            let (mut new, exec_at) = b.daemon_timed(w);
            let (_, answered_at) = new.wait_ps_at(w, "the same containers running", LONG, |l| {
                all_running(l, n)
                    && l.iter()
                        .all(|c| before.iter().any(|o| o.name == c.name && o.pid == c.pid))
            });
            times.push(Duration::from_nanos(answered_at - exec_at));
            cpu.push(sys::cpu_time(new.pid()));
            let log = new.stderr();
            if let Some(said) = log
                .lines()
                .find_map(|l| Some(l.split("restore took ").nth(1)?.trim_end_matches(')')))
            {
                inside.push(said.to_string());
            }
            *daemon = Some(new);
        }
    }
    header(
        &format!(
            "re-attach after kill -9 of the daemon, {rounds} rounds, shuffled: new daemon's exec to the first `ps` showing all running with the same pids"
        ),
        "1",
    );
    let one = sites[0].3.clone();
    for (n, _, _, times, inside, cpu) in &sites {
        row(&format!("{n} containers"), times, Some(&one));
        if !inside.is_empty() {
            println!(
                "    the daemon's own log: restore took {}",
                inside.join(", ")
            );
        }
        let (med, min, max) = spread(cpu);
        println!(
            "    the new daemon's CPU time until that answer: median {:.1} ms, {:.1} .. {:.1} ms",
            ms(med),
            ms(min),
            ms(max)
        );
    }
    for (_, w, daemon, _, _, _) in sites {
        drop(daemon);
        drop(w);
    }
}

// ---- set-up ----

/// Set by SIGINT and SIGTERM; the next round panics (see `Bench::shuffle`).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM end the run at the next round, after cleanup.
fn stop_gently() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(signal, on_stop as *const () as libc::sighandler_t);
        }
    }
}

/// Moves this process into a private mount namespace and, on a hybrid
/// cgroup host, hides the cgroup2 root's controllers from crun.
fn private_mounts(empty: &Path) {
    // SAFETY: unshare and mount take flags and NUL-terminated strings that
    // outlive the calls; the process is single-threaded here.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare(CLONE_NEWNS)");
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0,
            "make mounts private"
        );
    }
    let hierarchies = cgroups::hierarchies().unwrap();
    let Some(v2) = hierarchies.iter().find(|h| h.v2) else {
        return;
    };
    let controllers = v2.mount.join("cgroup.controllers");
    let hybrid = hierarchies.iter().any(|h| !h.v2);
    if !hybrid
        || fs::read_to_string(&controllers)
            .unwrap_or_default()
            .trim()
            .is_empty()
    {
        return;
    }
    fs::write(empty, "").unwrap();
    let source = CString::new(empty.as_os_str().as_bytes()).unwrap();
    let target = CString::new(controllers.as_os_str().as_bytes()).unwrap();
    // SAFETY: as above.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "bind an empty file over {}", controllers.display());
    // The mount holds the inode; the name is not needed any more.
    let _ = fs::remove_file(empty);
    println!(
        "hybrid cgroups: {} reads empty in this run's mount namespace (crun 1.8 refuses hybrid hosts)",
        controllers.display()
    );
}

fn first_line(cmd: &str) -> String {
    Command::new(cmd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{cmd}: not found"))
}

fn main() {
    let opts = Options::parse();
    let binary = std::env::var_os("BERTH_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/x86_64-unknown-linux-musl/release/berth")
        });
    let size = fs::metadata(&binary)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it with cross/build x86_64-unknown-linux-musl, or set BERTH_BENCH_BINARY)",
                binary.display()
            )
        })
        .len();
    let scratch = std::env::temp_dir().join(format!("berth-bench-empty-{}", std::process::id()));
    private_mounts(&scratch);
    stop_gently();
    println!("berth {} ({} KiB)", binary.display(), size / 1024);
    println!("{}", first_line("crun"));
    println!("{}", first_line("runc"));
    let bench = Bench::new(binary);
    let heavy = opts.heavy_rounds();
    if opts.wants("start") {
        start_bench(&bench, opts.rounds);
    }
    if opts.wants("boot") {
        boot_bench(&bench, heavy);
    }
    if opts.wants("idle") {
        let window = Duration::from_secs(if opts.quick { 3 } else { 10 });
        idle_bench(&bench, window);
    }
    if opts.wants("logs") {
        logs_bench(&bench, if opts.quick { 1 } else { heavy }, opts.quick);
    }
    if opts.wants("reattach") {
        reattach_bench(&bench, heavy);
    }
    drop(bench);
}
