//! Finding this process's cgroups and tearing a test's cgroups down.
//!
//! Hierarchies come from /proc/self/mountinfo and /proc/self/cgroup (never a
//! hard-coded path), so the same code works on hybrid v1 + v2 hosts and on
//! pure cgroup2 hosts. The parsers take text, so they are tested against
//! fake files. Teardown kills only pids read from the given directories'
//! `cgroup.procs`, each through a pidfd after re-checking membership.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::sys;

/// One mounted cgroup hierarchy and where this process sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where the hierarchy is mounted, e.g. /sys/fs/cgroup/memory.
    pub mount: PathBuf,
    /// This process's cgroup, relative to the mount (empty for its root).
    pub own: PathBuf,
    /// True for the cgroup2 (unified) hierarchy.
    pub v2: bool,
    /// v1 controllers (and `name=` names); empty for cgroup2.
    pub controllers: Vec<String>,
}

impl Hierarchy {
    /// The directory of this process's own cgroup in this hierarchy.
    pub fn own_dir(&self) -> PathBuf {
        self.mount.join(&self.own)
    }
}

/// One cgroup mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub root: String,
    pub mount_point: PathBuf,
    pub v2: bool,
    pub options: Vec<String>,
}

/// Every mount point in mountinfo text, unescaped.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

/// The cgroup and cgroup2 mounts in mountinfo text.
pub fn parse_cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 5 || fields.len() < dash + 4 {
            continue;
        }
        let v2 = match fields[dash + 1] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        mounts.push(CgroupMount {
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            v2,
            options: fields[dash + 3].split(',').map(str::to_string).collect(),
        });
    }
    mounts
}

/// Joins /proc/self/cgroup text with the mounts: one `Hierarchy` per line
/// whose hierarchy is mounted and shows this process's cgroup.
pub fn parse_hierarchies(proc_cgroup: &str, mounts: &[CgroupMount]) -> Vec<Hierarchy> {
    let mut found = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let v2 = controllers.is_empty();
        let controllers: Vec<String> = if v2 {
            Vec::new()
        } else {
            controllers.split(',').map(str::to_string).collect()
        };
        let mount = mounts
            .iter()
            .find(|m| m.v2 == v2 && (v2 || controllers.iter().all(|c| m.options.contains(c))));
        let Some(mount) = mount else { continue };
        let Some(own) = relative_to_root(path, &mount.root) else {
            continue;
        };
        found.push(Hierarchy {
            mount: mount.mount_point.clone(),
            own,
            v2,
            controllers,
        });
    }
    found
}

/// Every cgroup hierarchy of this process, read from /proc/self.
pub fn hierarchies() -> io::Result<Vec<Hierarchy>> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup")?;
    Ok(parse_hierarchies(
        &proc_cgroup,
        &parse_cgroup_mounts(&mountinfo),
    ))
}

/// `dir` and every cgroup below it, parents before children.
pub fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    if dir.is_dir() {
        collect_subtree(dir, &mut all);
    }
    all
}

/// The pids listed in `dir/cgroup.procs` (none if it is gone).
pub fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Every pid in the subtrees of `roots`.
pub fn procs_below(roots: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = roots
        .iter()
        .flat_map(|r| subtree(r))
        .flat_map(|d| procs(&d))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// SIGKILLs every process in the subtrees of `roots` until they are empty.
pub fn kill_all_below(roots: &[PathBuf], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let me = std::process::id() as i32;
    loop {
        let mut alive = Vec::new();
        for dir in roots.iter().flat_map(|r| subtree(r)) {
            for pid in procs(&dir) {
                if pid == me || pid <= 1 {
                    return Err(format!(
                        "refusing to kill pid {pid} found in {}",
                        dir.display()
                    ));
                }
                kill_if_still_in(pid, &dir);
                alive.push(pid);
            }
        }
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "processes {alive:?} survive SIGKILL below {roots:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes every cgroup in the subtrees of `roots`, deepest first.
pub fn remove_all_below(roots: &[PathBuf], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut dirs: Vec<PathBuf> = roots.iter().flat_map(|r| subtree(r)).collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        loop {
            match fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("rmdir {}: {e}", dir.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    Ok(())
}

/// Kills `pid` through a pidfd, but only if it is still listed in `dir`
/// after the pidfd was opened (so a reused pid is never hit).
fn kill_if_still_in(pid: i32, dir: &Path) {
    let Ok(pidfd) = sys::pidfd_open(pid) else {
        return;
    };
    if procs(dir).contains(&pid) {
        let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
    }
}

fn collect_subtree(dir: &Path, all: &mut Vec<PathBuf>) {
    all.push(dir.to_path_buf());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_subtree(&entry.path(), all);
        }
    }
}

/// `path` (absolute, as in /proc/self/cgroup) relative to a mount's root, or
/// None when the mount does not show it.
fn relative_to_root(path: &str, root: &str) -> Option<PathBuf> {
    let rest = if root == "/" {
        Some(path)
    } else {
        path.strip_prefix(root)
    }?;
    if !(rest.is_empty() || rest.starts_with('/') || root == "/") {
        return None;
    }
    Some(PathBuf::from(rest.trim_start_matches('/')))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (controllers, path) of each line of /proc/PID/cgroup.
pub fn cgroup_lines(pid: i32) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"))
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers.to_string(), path.to_string()))
        })
        .collect()
}
