//! Cgroups for containers, on cgroup v2, v1 or the hybrid of both.
//!
//! Hierarchies are found from /proc/self/mountinfo and /proc/self/cgroup
//! (injected as text, so this is tested against fake files). Each container
//! gets one directory per hierarchy used: `<parent>/<name>`, where a
//! relative parent sits below the creating process's own cgroup and an
//! absolute one below the hierarchy's root. The container's init joins them
//! itself (it writes "0" to each cgroup.procs) before it unshares its cgroup
//! namespace, so it sees its own cgroup as "/".
//!
//! Which hierarchies a container uses ([`used_by`]): every write to a
//! cgroup.procs after a quiet moment waits for an RCU grace period (about
//! 10 ms), while a child created in its cgroup2 directory
//! (CLONE_INTO_CGROUP) writes nothing. So where cgroup2 is mounted, a
//! container that needs no v1 hierarchy (no limit on a controller only v1
//! carries) lives in cgroup2 alone, its devices guarded there by a BPF
//! program; once one v1 hierarchy must be joined, the grace period is paid
//! and it joins every v1 one berth uses, so that its memory and pids are
//! counted as well.
//!
//! A container with a CPU limit has its monitor's work for it (reading its
//! output, writing its log) charged to that limit: the monitor moves
//! itself into a leaf, `<name>/monitor`, of the container's cgroup in the
//! hierarchy that carries the cpu controller, and into no other (never the
//! memory or pids one, so an out-of-memory kill in the container cannot
//! pick it). On cgroup2 a cgroup with children cannot hold processes
//! itself once controllers are enabled for them, so there the init then
//! goes into a leaf of its own, `<name>/container`, which also carries the
//! memory and pids limits; the cpu limit stays on `<name>`, above both
//! leaves. See [`Placement`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nanoserde::{DeJson, SerJson};

/// v1 controllers berth uses: limits, and the device cgroup (see
/// `devices`).
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "devices"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where the hierarchy is mounted, e.g. /sys/fs/cgroup/memory.
    pub mount: PathBuf,
    /// This process's cgroup within it, relative to `mount`, e.g. "/a/b".
    pub own: String,
    /// v1 controllers it carries (empty for cgroup2).
    pub controllers: Vec<String>,
}

impl Hierarchy {
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }
}

/// A hierarchy as the daemon, which found it, hands it to a monitor in
/// its job (the monitor starts in the daemon's cgroups).
#[derive(Debug, Clone, Default, PartialEq, Eq, SerJson, DeJson)]
pub struct Found {
    pub mount: String,
    pub own: String,
    pub controllers: Vec<String>,
}

impl Found {
    /// The cgroup2 hierarchy (it lists no controllers of its own).
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }
}

impl From<&Hierarchy> for Found {
    fn from(h: &Hierarchy) -> Found {
        Found {
            mount: h.mount.display().to_string(),
            own: h.own.clone(),
            controllers: h.controllers.clone(),
        }
    }
}

impl From<Found> for Hierarchy {
    fn from(f: Found) -> Hierarchy {
        Hierarchy {
            mount: PathBuf::from(f.mount),
            own: f.own,
            controllers: f.controllers,
        }
    }
}

/// The hierarchies berth places containers in: the cgroup2 one if mounted,
/// and the v1 ones carrying memory, pids, cpu or devices.
pub fn discover(mountinfo: &str, self_cgroup: &str) -> Vec<Hierarchy> {
    place(&mounted(mountinfo), self_cgroup)
}

/// A cgroup hierarchy mount of the kind berth uses, as mountinfo shows it
/// (before any process's own cgroup is looked up in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// The cgroup the mount shows, e.g. "/".
    root: String,
    mount: PathBuf,
    controllers: Vec<String>,
}

impl Mounted {
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }
}

/// The cgroup2 and the v1 mounts carrying memory, pids, cpu or devices, in
/// mountinfo's order: what [`place`] looks a process's cgroups up in, so
/// that the mount table is read once for many processes.
pub fn mounted(mountinfo: &str) -> Vec<Mounted> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let controllers: Vec<String> = match right[0] {
            "cgroup2" => Vec::new(),
            "cgroup" => right[2]
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || *o == "cpuacct")
                .map(str::to_string)
                .collect(),
            _ => continue,
        };
        if right[0] == "cgroup"
            && !controllers
                .iter()
                .any(|c| V1_CONTROLLERS.contains(&c.as_str()))
        {
            continue;
        }
        out.push(Mounted {
            root: left[3].to_string(),
            mount: PathBuf::from(unescape(left[4])),
            controllers,
        });
    }
    out
}

/// The hierarchies of `mounts` a process whose /proc/PID/cgroup reads
/// `cgroup` is in, each with its cgroup there (see [`discover`]).
pub fn place(mounts: &[Mounted], cgroup: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for m in mounts {
        let Some(own) = own_path(cgroup, &m.controllers) else {
            continue;
        };
        // The mount shows the cgroup `root`; our path is relative to it.
        let own = match Path::new(&own).strip_prefix(&m.root) {
            Ok(rest) if m.root != "/" => format!("/{}", rest.display()),
            _ => own,
        };
        if out
            .iter()
            .any(|h: &Hierarchy| h.controllers == m.controllers)
        {
            continue; // the same hierarchy mounted twice
        }
        out.push(Hierarchy {
            mount: m.mount.clone(),
            own,
            controllers: m.controllers.clone(),
        });
    }
    out
}

/// This process's path in the hierarchy with `controllers` (none: cgroup2).
fn own_path(self_cgroup: &str, controllers: &[String]) -> Option<String> {
    for line in self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
        let listed: Vec<&str> = ctrl.split(',').filter(|c| !c.is_empty()).collect();
        let matches = if controllers.is_empty() {
            listed.is_empty()
        } else {
            controllers.iter().all(|c| listed.contains(&c.as_str()))
        };
        if matches {
            return Some(path.to_string());
        }
    }
    None
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the live mountinfo and cgroup files of this process.
pub fn discover_live() -> io::Result<Vec<Hierarchy>> {
    Ok(discover(
        &fs::read_to_string("/proc/self/mountinfo")?,
        &fs::read_to_string("/proc/self/cgroup")?,
    ))
}

/// The directory for container `name` under `parent` in each hierarchy.
pub fn container_dirs(hierarchies: &[Hierarchy], parent: &str, name: &str) -> Vec<PathBuf> {
    hierarchies
        .iter()
        .map(|h| {
            let base = if parent.starts_with('/') {
                parent.to_string()
            } else {
                format!("{}/{}", h.own.trim_end_matches('/'), parent)
            };
            let rel = format!("{}/{}", base.trim_matches('/'), name);
            h.mount.join(rel.trim_start_matches('/'))
        })
        .collect()
}

/// The first of `dirs` (or of their descendants) that holds a process.
pub fn first_populated(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().find_map(|dir| {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if !procs.trim().is_empty() {
            return Some(dir.clone());
        }
        first_populated(&child_dirs(dir))
    })
}

/// The cgroups directly below `dir` (none if it cannot be read).
fn child_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// The leaf of the container's cpu cgroup its monitor moves into.
pub const MONITOR_LEAF: &str = "monitor";
/// On cgroup2, the leaf the container's processes go into when the
/// monitor shares the hierarchy.
pub const CONTAINER_LEAF: &str = "container";

/// Where a container's processes go, per hierarchy (same order as the
/// hierarchies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The container's cgroup: made, limited, and removed at the end with
    /// everything below it.
    pub dirs: Vec<PathBuf>,
    /// Where the init goes: the container's cgroup, or on cgroup2 when the
    /// monitor shares the hierarchy, its `container` leaf.
    pub init: Vec<PathBuf>,
    /// The hierarchy carrying the cpu controller, if one is mounted and
    /// the monitor joins the container's cgroup there (a CPU limit).
    pub cpu: Option<usize>,
}

impl Placement {
    /// The directories of container `name` under `parent`; with
    /// `monitor_leaf` (the container has a CPU limit), the monitor's leaf
    /// in the hierarchy carrying the cpu controller.
    pub fn new(
        hierarchies: &[Hierarchy],
        parent: &str,
        name: &str,
        monitor_leaf: bool,
    ) -> Placement {
        let dirs = container_dirs(hierarchies, parent, name);
        let cpu = controller_hierarchy(hierarchies, "cpu").filter(|_| monitor_leaf);
        let init = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if Some(i) == cpu && hierarchies[i].is_v2() {
                    d.join(CONTAINER_LEAF)
                } else {
                    d.clone()
                }
            })
            .collect();
        Placement { dirs, init, cpu }
    }

    /// The monitor's leaf, if it joins the container's cpu cgroup.
    pub fn monitor(&self) -> Option<PathBuf> {
        self.cpu.map(|i| self.dirs[i].join(MONITOR_LEAF))
    }

    /// The cgroup2 directory the init goes into, if cgroup2 is used (the
    /// init is created in it directly).
    pub fn v2_init(&self, hierarchies: &[Hierarchy]) -> Option<PathBuf> {
        hierarchies
            .iter()
            .position(Hierarchy::is_v2)
            .map(|i| self.init[i].clone())
    }
}

/// The hierarchy a controller's limit goes to: a v1 one carrying it if
/// there is one (the hybrid layout), else cgroup2.
fn controller_hierarchy(hierarchies: &[Hierarchy], controller: &str) -> Option<usize> {
    hierarchies
        .iter()
        .position(|h| h.controllers.iter().any(|c| c == controller))
        .or_else(|| hierarchies.iter().position(Hierarchy::is_v2))
}

/// The hierarchies of `all` a container with `limits` is placed in: with
/// cgroup2 mounted, cgroup2 alone unless a limit's controller is carried
/// by a v1 hierarchy only; then (and without cgroup2) every one of them,
/// the v1 devices one included. See the module's documentation.
pub fn used_by(all: &[Hierarchy], limits: Limits) -> Vec<Hierarchy> {
    let has_v2 = all.iter().any(Hierarchy::is_v2);
    let on_v1 = |controller: &str, wanted: bool| {
        wanted && controller_hierarchy(all, controller).is_some_and(|i| !all[i].is_v2())
    };
    let needs_v1 = !has_v2
        || on_v1("memory", limits.memory.is_some())
        || on_v1("pids", limits.pids.is_some())
        || on_v1("cpu", limits.cpus_milli.is_some());
    all.iter()
        .filter(|h| needs_v1 || h.is_v2())
        .cloned()
        .collect()
}

/// Whether `dir` lies below the mount point of one of `hierarchies`: a
/// path read from a record is only removed if it is a cgroup berth could
/// have made.
pub fn is_below_a_hierarchy(dir: &Path, hierarchies: &[Hierarchy]) -> bool {
    !dir.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
        && hierarchies
            .iter()
            .any(|h| dir.starts_with(&h.mount) && dir != h.mount)
}

/// Resource limits, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus_milli: Option<u32>,
}

#[derive(Debug)]
pub struct CgroupError {
    pub path: PathBuf,
    pub step: &'static str,
    pub err: io::Error,
}

impl std::fmt::Display for CgroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.step,
            self.path.display(),
            crate::errors::io_text(&self.err)
        )
    }
}

fn write(path: PathBuf, value: &str) -> Result<(), CgroupError> {
    fs::write(&path, value).map_err(|err| CgroupError {
        path,
        step: "write cgroup file",
        err,
    })
}

/// Creates the container's directories (and leaves) and writes its
/// limits. Each limit goes to the hierarchy that carries its controller: a
/// v1 one if there is one (the hybrid layout), else cgroup2, where memory
/// and pids limits go to the init's leaf if it has one. A directory left
/// over from a run whose processes are gone is reused.
pub fn create(
    hierarchies: &[Hierarchy],
    placement: &Placement,
    limits: Limits,
) -> Result<(), CgroupError> {
    let monitor = placement.monitor();
    let mut all: Vec<&PathBuf> = Vec::new();
    for dir in placement.dirs.iter().chain(&placement.init).chain(&monitor) {
        // On v1 the init's cgroup is the container's: made once.
        if !all.contains(&dir) {
            all.push(dir);
        }
    }
    for dir in all {
        // A directory left by an earlier run (the daemon could not remove
        // it while its last tasks exited, or a monitor died before it
        // recorded its cgroups) would keep that run's limits: it goes,
        // leaves first, unless processes still hold it.
        let _ = remove_tree(dir, Instant::now());
        fs::create_dir_all(dir).map_err(|err| CgroupError {
            path: dir.clone(),
            step: "create cgroup",
            err,
        })?;
    }
    leaf_counters(hierarchies, placement);
    let wanted = [
        ("memory", limits.memory.is_some()),
        ("pids", limits.pids.is_some()),
        ("cpu", limits.cpus_milli.is_some()),
    ];
    for (controller, _) in wanted.iter().filter(|(_, on)| *on) {
        let Some(index) = controller_hierarchy(hierarchies, controller) else {
            return Err(CgroupError {
                path: PathBuf::from("/proc/self/mountinfo"),
                step: "find a cgroup hierarchy with the controller",
                err: io::Error::other(format!("no {controller} controller is mounted")),
            });
        };
        let v2 = hierarchies[index].is_v2();
        let dir = if *controller == "cpu" {
            &placement.dirs[index]
        } else {
            &placement.init[index]
        };
        if v2 {
            enable_v2_controller(&placement.dirs[index], controller)?;
            if *dir != placement.dirs[index] {
                enable_v2_controller(dir, controller)?;
            }
        }
        match (*controller, v2) {
            ("memory", false) => write(
                dir.join("memory.limit_in_bytes"),
                &limits.memory.unwrap_or_default().to_string(),
            )?,
            ("memory", true) => write(
                dir.join("memory.max"),
                &limits.memory.unwrap_or_default().to_string(),
            )?,
            ("pids", _) => write(
                dir.join("pids.max"),
                &limits.pids.unwrap_or_default().to_string(),
            )?,
            (_, false) => {
                let quota = u64::from(limits.cpus_milli.unwrap_or_default()) * 100;
                write(dir.join("cpu.cfs_period_us"), "100000")?;
                write(dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
            (_, true) => {
                let quota = u64::from(limits.cpus_milli.unwrap_or_default()) * 100;
                write(dir.join("cpu.max"), &format!("{quota} 100000"))?;
            }
        }
    }
    Ok(())
}

/// What the kernel's limits did in a container's cgroups, as counters
/// that only grow: compare a reading at the end of a run with one at its
/// start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Processes killed for want of memory (v1 `memory.oom_control`
    /// `oom_kill`, Linux 4.13 and later; cgroup2 `memory.events`).
    pub oom_kills: u64,
    /// Forks refused at the pids limit (`pids.events` `max`).
    pub pids_refused: u64,
}

impl Counters {
    /// Reads the counters of the container's memory and pids cgroups; a
    /// counter that cannot be read counts 0.
    pub fn read(hierarchies: &[Hierarchy], placement: &Placement) -> Counters {
        let counter = |controller: &str, file: &str, key: &str| {
            controller_hierarchy(hierarchies, controller)
                .and_then(|i| fs::read_to_string(placement.init[i].join(file)).ok())
                .and_then(|text| keyed_counter(&text, key))
                .unwrap_or(0)
        };
        let oom_file = |i: usize| {
            if hierarchies[i].is_v2() {
                "memory.events"
            } else {
                "memory.oom_control"
            }
        };
        let oom = controller_hierarchy(hierarchies, "memory")
            .map_or(0, |i| counter("memory", oom_file(i), "oom_kill"));
        Counters {
            oom_kills: oom,
            pids_refused: counter("pids", "pids.events", "max"),
        }
    }
}

/// The value of `key` in a cgroup file of "key value" lines.
fn keyed_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Moves the calling process into the cgroup `dir` (writes "0" to its
/// cgroup.procs).
pub fn join(dir: &Path) -> Result<(), CgroupError> {
    fs::write(dir.join("cgroup.procs"), "0").map_err(|err| CgroupError {
        path: dir.join("cgroup.procs"),
        step: "join cgroup",
        err,
    })
}

/// This process's own cgroup in hierarchy `h`, as found at discovery.
pub fn own_dir(h: &Hierarchy) -> PathBuf {
    h.mount.join(h.own.trim_start_matches('/'))
}

/// On cgroup2 the init's leaf gets the memory and pids controllers its
/// container's cgroup is offered, limits or not, so that its counters are
/// the container's processes' alone, apart from the monitor's leaf
/// (`berth stats` reads them). Best effort: without them the numbers are
/// only the container cgroup's, monitor included.
fn leaf_counters(hierarchies: &[Hierarchy], placement: &Placement) {
    for (i, h) in hierarchies.iter().enumerate() {
        let (dir, init) = (&placement.dirs[i], &placement.init[i]);
        if !h.is_v2() || dir == init {
            continue;
        }
        let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        for controller in ["memory", "pids"] {
            if offered.split_whitespace().any(|c| c == controller) {
                let _ = write(
                    dir.join("cgroup.subtree_control"),
                    &format!("+{controller}"),
                );
            }
        }
    }
}

/// On cgroup2 a limit needs its controller enabled in the parent's
/// cgroup.subtree_control, which needs it available there first.
fn enable_v2_controller(dir: &Path, controller: &str) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let available = fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    if !available.split_whitespace().any(|c| c == controller) {
        return Err(CgroupError {
            path: parent.join("cgroup.controllers"),
            step: "find controller in",
            err: io::Error::other(format!("controller {controller} is not available")),
        });
    }
    write(
        parent.join("cgroup.subtree_control"),
        &format!("+{controller}"),
    )
}

/// Removes the container's directories, with every cgroup below them
/// (the monitor's and the init's leaves), once their processes are gone,
/// waiting (up to `deadline`) for exiting tasks to leave them.
pub fn remove(dirs: &[PathBuf], deadline: Duration) -> Result<(), CgroupError> {
    let until = Instant::now() + deadline;
    for dir in dirs {
        remove_tree(dir, until)?;
    }
    Ok(())
}

/// Removes `dir` after the cgroups below it, deepest first. A cgroup
/// directory holds only kernel files and child cgroups.
fn remove_tree(dir: &Path, until: Instant) -> Result<(), CgroupError> {
    for child in child_dirs(dir) {
        remove_tree(&child, until)?;
    }
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(err) => {
                return Err(CgroupError {
                    path: dir.to_path_buf(),
                    step: "remove cgroup",
                    err,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/b535
1:cpu:/
0::/t1
";

    #[test]
    fn hybrid_layout() {
        let h = discover(HYBRID_MOUNTINFO, HYBRID_SELF);
        let mounts: Vec<_> = h
            .iter()
            .map(|h| (h.mount.to_str().unwrap(), h.own.as_str()))
            .collect();
        assert_eq!(
            mounts,
            vec![
                ("/sys/fs/cgroup/cpu", "/"),
                ("/sys/fs/cgroup/memory", "/process_api/b535"),
                ("/sys/fs/cgroup/pids", "/"),
                ("/sys/fs/cgroup/unified", "/t1"),
            ]
        );
        let dirs = container_dirs(&h, "berth", "web");
        assert_eq!(
            dirs[1],
            PathBuf::from("/sys/fs/cgroup/memory/process_api/b535/berth/web")
        );
        assert_eq!(
            dirs[3],
            PathBuf::from("/sys/fs/cgroup/unified/t1/berth/web")
        );
        let dirs = container_dirs(&h, "/top/berth", "web");
        assert_eq!(
            dirs[1],
            PathBuf::from("/sys/fs/cgroup/memory/top/berth/web")
        );
    }

    #[test]
    fn pure_v2_with_mount_root() {
        let mi = "30 1 0:26 /ns /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = discover(mi, "0::/ns/svc/berthd\n");
        assert_eq!(h.len(), 1);
        assert!(h[0].is_v2());
        assert_eq!(h[0].own, "/svc/berthd");
        assert_eq!(
            container_dirs(&h, "berth", "a"),
            vec![PathBuf::from("/sys/fs/cgroup/svc/berthd/berth/a")]
        );
    }

    #[test]
    fn mount_root_is_matched_by_path_components() {
        let mi = "30 1 0:26 /ns /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        // "/nsx" is not below "/ns": the path stays as it is.
        let h = discover(mi, "0::/nsx/a\n");
        assert_eq!(h[0].own, "/nsx/a");
    }

    #[test]
    fn co_mounted_cpu_cpuacct() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let h = discover(mi, "3:cpu,cpuacct:/x\n");
        assert_eq!(h.len(), 1);
        assert_eq!(
            h[0].controllers,
            vec!["cpu".to_string(), "cpuacct".to_string()]
        );
        assert_eq!(h[0].own, "/x");
    }

    #[test]
    fn escaped_mount_point() {
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn v1_only_layout_and_lines_to_skip() {
        let mi = "\
not a mountinfo line
1 2 3 - cgroup
20 1 0:20 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
21 1 0:21 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
22 1 0:22 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
23 1 0:23 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
24 1 0:20 / /mnt/memory-again rw - cgroup cgroup rw,memory
25 1 0:24 / /proc rw - proc proc rw
";
        // No pids line in our cgroup file: that hierarchy is not used.
        let h = discover(mi, "5:memory:/m\n1:name=systemd:/\n");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].mount, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(h[0].own, "/m");
        assert!(!h[0].is_v2());
    }

    #[test]
    fn one_mount_table_places_several_processes() {
        let mounts = mounted(HYBRID_MOUNTINFO);
        // cpuacct alone and name=systemd are not used.
        assert_eq!(mounts.len(), 4);
        assert_eq!(
            place(&mounts, HYBRID_SELF),
            discover(HYBRID_MOUNTINFO, HYBRID_SELF)
        );
        let other = "8:pids:/c\n4:memory:/process_api/b535/berth/c\n1:cpu:/\n0::/t1/berth/c\n";
        let h = place(&mounts, other);
        assert_eq!(h, discover(HYBRID_MOUNTINFO, other));
        let own: Vec<&str> = h.iter().map(|h| h.own.as_str()).collect();
        assert_eq!(own, ["/", "/process_api/b535/berth/c", "/c", "/t1/berth/c"]);
    }

    #[test]
    fn nothing_found_without_cgroup_mounts() {
        assert!(discover("", "0::/\n").is_empty());
        let mi = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        // A cgroup file with only v1 lines: no cgroup2 path for us.
        assert!(discover(mi, "4:memory:/a\n").is_empty());
    }

    #[test]
    fn container_dirs_below_own_or_root() {
        let h = discover(
            "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/system.slice/berth.service\n",
        );
        assert_eq!(
            container_dirs(&h, "berth", "a"),
            [PathBuf::from(
                "/sys/fs/cgroup/system.slice/berth.service/berth/a"
            )]
        );
        assert_eq!(
            container_dirs(&h, "/", "a"),
            [PathBuf::from("/sys/fs/cgroup/a")]
        );
        assert_eq!(
            container_dirs(&h, "/edge/berth/", "a"),
            [PathBuf::from("/sys/fs/cgroup/edge/berth/a")]
        );
    }

    #[test]
    fn only_paths_below_a_mount_are_ours() {
        let h = discover(HYBRID_MOUNTINFO, HYBRID_SELF);
        let ours = |p: &str| is_below_a_hierarchy(Path::new(p), &h);
        assert!(ours("/sys/fs/cgroup/memory/berth/web"));
        assert!(ours("/sys/fs/cgroup/unified/t1/berth/web"));
        assert!(!ours("/sys/fs/cgroup/memory"), "a mount itself");
        assert!(!ours("/sys/fs/cgroup/memory/../../../etc"));
        assert!(!ours("/etc/berth"));
        assert!(!ours("/sys/fs/cgroup/memoryx/a"));
    }

    use crate::testing::TempDir;

    fn read(path: PathBuf) -> String {
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A fake tree: one hierarchy per (mount directory, v1 controllers).
    fn fake(root: &Path, layout: &[(&str, &[&str])]) -> Vec<Hierarchy> {
        layout
            .iter()
            .map(|(dir, controllers)| {
                let mount = root.join(dir);
                fs::create_dir_all(&mount).unwrap();
                Hierarchy {
                    mount,
                    own: "/".to_string(),
                    controllers: controllers.iter().map(|c| c.to_string()).collect(),
                }
            })
            .collect()
    }

    const LIMITS: Limits = Limits {
        memory: Some(64 << 20),
        pids: Some(100),
        cpus_milli: Some(500),
    };

    #[test]
    fn v2_limits_go_to_the_init_leaf_and_cpu_above_both_leaves() {
        let tmp = TempDir::new("v2");
        let h = fake(&tmp.0, &[("unified", &[])]);
        let p = Placement::new(&h, "berth", "web", true);
        let web = tmp.0.join("unified/berth/web");
        assert_eq!(p.dirs, std::slice::from_ref(&web));
        assert_eq!(p.init, [web.join("container")]);
        assert_eq!(p.monitor(), Some(web.join("monitor")));
        assert_eq!(p.v2_init(&h), Some(web.join("container")));
        let parent = tmp.0.join("unified/berth");
        fs::create_dir_all(&web).unwrap();
        fs::write(
            parent.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        // What the kernel offers below once the parent enabled them.
        fs::write(web.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        create(&h, &p, LIMITS).unwrap();
        assert_eq!(read(web.join("container/memory.max")), "67108864");
        assert_eq!(read(web.join("container/pids.max")), "100");
        assert_eq!(read(web.join("cpu.max")), "50000 100000");
        assert!(web.join("monitor").is_dir());
        assert!(!web.join("memory.max").exists());
        assert!(!web.join("monitor/memory.max").exists());
        // The last controller enabled (a real cgroup file keeps them all).
        assert_eq!(read(parent.join("cgroup.subtree_control")), "+cpu");
        assert_eq!(read(web.join("cgroup.subtree_control")), "+pids");
    }

    #[test]
    fn v2_init_leaf_counts_apart_from_the_monitor_without_limits() {
        let tmp = TempDir::new("v2-counters");
        let h = fake(&tmp.0, &[("unified", &[])]);
        let p = Placement::new(&h, "berth", "web", true);
        let web = tmp.0.join("unified/berth/web");
        fs::create_dir_all(&web).unwrap();
        fs::write(web.join("cgroup.controllers"), "cpu memory\n").unwrap();
        create(&h, &p, Limits::default()).unwrap();
        // The last one enabled (a real cgroup file keeps them all).
        assert_eq!(read(web.join("cgroup.subtree_control")), "+memory");
        assert!(!web.join("container/memory.max").exists());
        // Not offered: left alone.
        fs::write(web.join("cgroup.controllers"), "cpu\n").unwrap();
        fs::remove_file(web.join("cgroup.subtree_control")).unwrap();
        create(&h, &p, Limits::default()).unwrap();
        assert!(!web.join("cgroup.subtree_control").exists());
    }

    #[test]
    fn v2_without_the_controller_names_the_file() {
        let tmp = TempDir::new("v2-missing");
        let h = fake(&tmp.0, &[("unified", &[])]);
        let p = Placement::new(&h, "berth", "web", true);
        let parent = tmp.0.join("unified/berth");
        fs::create_dir_all(&parent).unwrap();
        fs::write(parent.join("cgroup.controllers"), "cpu\n").unwrap();
        let only_memory = Limits {
            memory: Some(1 << 20),
            ..Limits::default()
        };
        let err = create(&h, &p, only_memory).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "find controller in {}: controller memory is not available",
                parent.join("cgroup.controllers").display()
            )
        );
    }

    #[test]
    fn hybrid_limits_go_to_v1_first_and_the_monitor_to_a_cpu_leaf() {
        let tmp = TempDir::new("hybrid");
        let h = fake(
            &tmp.0,
            &[
                ("cpu,cpuacct", &["cpu", "cpuacct"]),
                ("memory", &["memory"]),
                ("unified", &[]),
            ],
        );
        let p = Placement::new(&h, "berth", "web", true);
        let dirs = p.dirs.clone();
        // On v1 the init stays in the container's cgroups; on this
        // cgroup2, which carries no cpu, too.
        assert_eq!(p.init, dirs);
        assert_eq!(p.monitor(), Some(dirs[0].join("monitor")));
        assert_eq!(p.v2_init(&h), Some(dirs[2].clone()));
        let parent = tmp.0.join("unified/berth");
        fs::create_dir_all(&parent).unwrap();
        fs::write(parent.join("cgroup.controllers"), "pids\n").unwrap();
        create(&h, &p, LIMITS).unwrap();
        assert_eq!(read(dirs[0].join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(dirs[0].join("cpu.cfs_quota_us")), "50000");
        assert!(dirs[0].join("monitor").is_dir());
        assert!(!dirs[1].join("monitor").exists(), "not in memory");
        assert_eq!(read(dirs[1].join("memory.limit_in_bytes")), "67108864");
        assert_eq!(read(dirs[2].join("pids.max")), "100");
        assert!(!dirs[2].join("memory.max").exists());
    }

    #[test]
    fn without_a_cpu_limit_the_monitor_has_no_leaf_and_the_init_none_on_v2() {
        let tmp = TempDir::new("no-leaf");
        let h = fake(&tmp.0, &[("unified", &[])]);
        let p = Placement::new(&h, "berth", "web", false);
        let web = tmp.0.join("unified/berth/web");
        assert_eq!(p.monitor(), None);
        assert_eq!(p.init, std::slice::from_ref(&web));
        assert_eq!(p.v2_init(&h), Some(web.clone()));
        create(&h, &p, Limits::default()).unwrap();
        assert!(web.is_dir());
        assert!(!web.join("monitor").exists());
        assert!(!web.join("container").exists());
    }

    #[test]
    fn cgroup2_alone_unless_a_limit_needs_a_v1_hierarchy() {
        let h = discover(HYBRID_MOUNTINFO, HYBRID_SELF);
        let mounts = |limits: Limits| -> Vec<String> {
            used_by(&h, limits)
                .iter()
                .map(|h| h.mount.display().to_string())
                .collect()
        };
        assert_eq!(mounts(Limits::default()), ["/sys/fs/cgroup/unified"]);
        let every = [
            "/sys/fs/cgroup/cpu",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/unified",
        ];
        for limits in [
            Limits {
                memory: Some(1 << 20),
                ..Limits::default()
            },
            Limits {
                pids: Some(5),
                ..Limits::default()
            },
            Limits {
                cpus_milli: Some(500),
                ..Limits::default()
            },
        ] {
            assert_eq!(mounts(limits), every, "{limits:?}");
        }
        // cgroup2 carrying the controllers: never v1.
        let v2 = discover(
            "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/a\n",
        );
        assert_eq!(used_by(&v2, LIMITS), v2);
        // v1 alone: every one, devices included, limits or not.
        let mi = "20 1 0:20 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n";
        let v1 = discover(mi, "5:devices:/\n");
        assert_eq!(used_by(&v1, Limits::default()), v1);
    }

    #[test]
    fn a_limit_without_a_hierarchy_is_an_error() {
        let tmp = TempDir::new("none");
        let h = fake(&tmp.0, &[("memory", &["memory"])]);
        let p = Placement::new(&h, "berth", "web", true);
        assert_eq!(p.monitor(), None);
        let pids = Limits {
            pids: Some(5),
            ..Limits::default()
        };
        let err = create(&h, &p, pids).unwrap_err();
        assert_eq!(
            err.to_string(),
            "find a cgroup hierarchy with the controller /proc/self/mountinfo: \
             no pids controller is mounted"
        );
        // No limits: the directories alone.
        create(&h, &p, Limits::default()).unwrap();
        assert!(p.dirs[0].is_dir());
    }

    #[test]
    fn events_are_read_where_the_limits_are() {
        let tmp = TempDir::new("events");
        let h = fake(
            &tmp.0,
            &[
                ("memory", &["memory"]),
                ("pids", &["pids"]),
                ("unified", &[]),
            ],
        );
        let p = Placement::new(&h, "berth", "web", true);
        assert_eq!(Counters::read(&h, &p), Counters::default(), "no files: 0");
        for d in &p.dirs {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(
            p.dirs[0].join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(p.dirs[1].join("pids.events"), "max 7\n").unwrap();
        assert_eq!(
            Counters::read(&h, &p),
            Counters {
                oom_kills: 2,
                pids_refused: 7
            }
        );
        // cgroup2 alone: memory.events of the init's leaf.
        let h = fake(&tmp.0.join("v2"), &[("unified", &[])]);
        let p = Placement::new(&h, "berth", "web", true);
        fs::create_dir_all(&p.init[0]).unwrap();
        fs::write(
            p.init[0].join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(Counters::read(&h, &p).oom_kills, 1);
    }

    #[test]
    fn remove_takes_directories_with_their_leaves_and_ignores_missing_ones() {
        let tmp = TempDir::new("remove");
        let a = tmp.0.join("a");
        let b = tmp.0.join("b");
        fs::create_dir_all(a.join("monitor")).unwrap();
        remove(&[a.clone(), b], Duration::ZERO).unwrap();
        assert!(!a.exists(), "removed with its leaf");
        // A directory that is no cgroup (a file in it) is not emptied.
        fs::create_dir_all(a.join("child")).unwrap();
        fs::write(a.join("child/file"), "").unwrap();
        let err = remove(std::slice::from_ref(&a), Duration::ZERO).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("remove cgroup {}: ", a.join("child").display())),
            "{err}"
        );
    }
}
