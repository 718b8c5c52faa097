//! What a configuration is once read: the daemon's options, one container's
//! definition and its parts, the error that names a file and a field, and
//! the limits every input is held to. Data and how it prints; the parsers
//! live beside it.

use std::fmt;
use std::path::PathBuf;

use super::{Network, NetworkDef, PortMap};
use crate::sys::seccomp::Seccomp;

/// Largest daemon.json or container file accepted.
pub const MAX_FILE_SIZE: u64 = 64 * 1024;

/// Longest container name (and cgroup-parent component).
pub const MAX_NAME_LEN: usize = 64;

/// Longest string value accepted anywhere in a file, in bytes.
pub const MAX_STRING_LEN: usize = 4096;

/// Most entries in `command` and in `env`.
pub const MAX_LIST_LEN: usize = 1024;

/// Most entries in `mounts`.
pub const MAX_MOUNTS: usize = 256;

/// Largest stop-timeout and shutdown-timeout, in seconds.
pub const MAX_TIMEOUT: u64 = 3600;

/// Largest `on-failure:N`.
pub const MAX_RESTART_RETRIES: u32 = 1_000_000;

/// Largest `pids` (the kernel's PID_MAX_LIMIT).
pub const MAX_PIDS: u64 = 4_194_304;

/// Longest unix socket path (sun_path less its terminating NUL).
pub(super) const MAX_SOCKET_PATH: usize = 107;

pub(super) const KIB: u64 = 1024;
pub(super) const MIB: u64 = 1024 * KIB;
pub(super) const GIB: u64 = 1024 * MIB;

/// Options of the daemon itself (daemon.json).
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub live_restore: bool,
    pub containers_dir: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    /// Defaults to `<run-dir>/berth.sock`.
    pub socket: PathBuf,
    /// Defaults to `<state-dir>/logs`.
    pub log_dir: PathBuf,
    pub log_level: log::LevelFilter,
    /// Bytes per log file before it is rotated.
    pub log_max_size: u64,
    /// Files kept per container, the live one included (at least 1).
    pub log_max_files: u32,
    /// Relative: below the daemon's own cgroup in each hierarchy;
    /// absolute: below the hierarchy root.
    pub cgroup_parent: String,
    /// Seconds a non-live-restore shutdown waits for containers in total.
    pub shutdown_timeout: u64,
    /// The group that may use the API socket besides root.
    pub socket_group: Option<SocketGroup>,
    /// Where the daemon's own messages go.
    pub log_target: LogTarget,
    /// The bridge networks containers may join, in file order.
    pub networks: Vec<NetworkDef>,
}

/// `log-target`: stderr, or a syslog socket (`"syslog"` is /dev/log;
/// `"syslog:PATH"` names another socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Syslog(PathBuf),
}

/// The socket `"log-target": "syslog"` sends to.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// `socket-group`: a group name (looked up in /etc/group when the daemon
/// starts) or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketGroup {
    Name(String),
    Id(u32),
}

/// Largest gid: (gid_t)-1 means "no change" to chown.
pub const MAX_GID: u64 = u32::MAX as u64 - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    OnFailure { max: Option<u32> },
    Always,
    UnlessStopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// Bind `source` (absolute host path) onto the target.
    Bind { source: PathBuf },
    /// A fresh tmpfs, `size` bytes at most if given.
    Tmpfs { size: Option<u64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    /// Absolute path inside the container, normalised, never containing `..`.
    pub target: String,
    pub readonly: bool,
}

/// What a container may do with a device node: the device cgroup's
/// r, w and m.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceAccess {
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DeviceAccess {
    pub const ALL: DeviceAccess = DeviceAccess {
        read: true,
        write: true,
        mknod: true,
    };

    /// As a device cgroup writes it: "rwm", "r", ...
    pub fn text(self) -> String {
        [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| c)
            .collect()
    }
}

/// One entry of `devices`: a host device node bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Absolute host path (a symlink to the node is followed at start).
    pub path: PathBuf,
    /// Normalised absolute path under /dev in the container.
    pub target: String,
    pub access: DeviceAccess,
}

/// A user or group as `user` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Number(u32),
    /// Looked up in the rootfs's /etc/passwd or /etc/group.
    Name(String),
}

/// The `user` key: a user and, optionally, a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user: Id,
    pub group: Option<Id>,
}

impl User {
    /// (uid, gid) when both are numbers; a uid alone means gid = uid.
    #[cfg(test)]
    pub fn numeric(&self) -> Option<(u32, u32)> {
        match (&self.user, &self.group) {
            (Id::Number(u), None) => Some((*u, *u)),
            (Id::Number(u), Some(Id::Number(g))) => Some((*u, *g)),
            _ => None,
        }
    }
}

/// A `cap-add` or `cap-drop` list: the capabilities named (bit N:
/// capability N), or "ALL".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapList {
    pub set: u64,
    pub all: bool,
}

/// One resource limit from `rlimits` (u64::MAX: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The name in the file: "nofile", "core", ...
    pub name: &'static str,
    /// RLIMIT_* number.
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// `writable`: what the container may write to its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writable {
    /// A read-only root.
    None,
    /// An overlay whose upper layer is a tmpfs, thrown away when the run
    /// ends.
    Tmpfs,
    /// An overlay whose upper layer is kept under state-dir (removed only
    /// by `berth rm` once the definition is gone).
    Persistent,
}

impl Writable {
    /// The spelling in container files.
    pub fn as_str(self) -> &'static str {
        match self {
            Writable::None => "none",
            Writable::Tmpfs => "tmpfs",
            Writable::Persistent => "persistent",
        }
    }
}

/// Where a verity image's hash tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerityHashes {
    /// In the image file, from this byte on.
    Offset(u64),
    /// In a file of its own (absolute or from the container file's
    /// directory).
    File(PathBuf),
}

/// `verity`: the root hash an image's hash tree must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    /// Lowercase hex.
    pub root_hash: String,
    pub hashes: VerityHashes,
}

/// `healthcheck`: a command run inside the running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// argv, run as `berth exec` runs it.
    pub command: Vec<String>,
    /// From the end of one check to the start of the next (and from the
    /// start of the run to the first).
    pub interval: std::time::Duration,
    /// A check still running after this is killed, and counts as failed.
    pub timeout: std::time::Duration,
    /// Failures in a row that make the container unhealthy.
    pub retries: u32,
    /// Failures before this much time since the start do not count.
    pub start_period: std::time::Duration,
}

/// `on-unhealthy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnhealthy {
    /// Only say so.
    #[default]
    None,
    /// The monitor restarts the container in place.
    Restart,
}

/// One container definition (containers-dir/NAME.json).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    /// The file the definition was read from, as the reader named it: in
    /// an app directory, under the directory's canonical path. Errors
    /// found across files (`depends-on`, the network keys) name it. Not
    /// part of `canonical` or `hash`: the same text read from elsewhere
    /// is the same definition.
    pub file: PathBuf,
    /// Absolute host path; must exist and be a directory. Empty when the
    /// root is an `image`.
    pub rootfs: PathBuf,
    /// A squashfs or erofs file the root is mounted from (exactly one of
    /// `rootfs` and `image` is given).
    pub image: Option<PathBuf>,
    /// `None` when the file does not say: read-only for an image, the
    /// directory itself (written in place unless `readonly_rootfs`) for a
    /// rootfs.
    pub writable: Option<Writable>,
    /// Only with `image`.
    pub verity: Option<Verity>,
    /// Non-empty; command[0] is a path or a name looked up in PATH.
    pub command: Vec<String>,
    /// KEY=value strings, KEY non-empty and without '='.
    pub env: Vec<String>,
    /// Absolute path inside the container, default "/".
    pub workdir: String,
    /// Defaults to the container name (when it is a valid hostname).
    pub hostname: String,
    /// "user" or "user:group", each a name or a number; `None` runs as
    /// root. Names are looked up in the rootfs when the container starts.
    pub user: Option<User>,
    pub cap_add: CapList,
    pub cap_drop: CapList,
    /// Limits set by `rlimits`; the others get berth's defaults.
    pub rlimits: Vec<Rlimit>,
    /// -1000 to 1000, default 0.
    pub oom_score_adj: i32,
    pub autostart: bool,
    pub restart: RestartPolicy,
    pub readonly_rootfs: bool,
    pub mounts: Vec<Mount>,
    /// Host devices bound in, with their device cgroup access.
    pub devices: Vec<Device>,
    pub network: Network,
    /// A fixed address on its one bridge network (else IPAM picks one).
    pub address: Option<std::net::Ipv4Addr>,
    /// Container ports published on the host (only on a bridge network).
    pub ports: Vec<PortMap>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Maximum number of tasks.
    pub pids: Option<u64>,
    /// CPU limit in thousandths of a CPU (0.5 -> 500).
    pub cpus_milli: Option<u32>,
    pub stop_signal: i32,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout: u64,
    /// The system call filter. A profile file named here is read when the
    /// definition is loaded and written into `canonical` inline.
    pub seccomp: Seccomp,
    /// Run berth's own init as pid 1, the command as its child.
    pub init: bool,
    /// Namespaced kernel settings (key as "net.ipv4.ip_forward", value),
    /// written in /proc/sys inside the container at each start.
    pub sysctl: Vec<(String, String)>,
    /// `env-file`: files of KEY=VALUE lines, read when the definition is
    /// loaded into `env` (under the definition's own entries).
    pub env_files: Vec<std::path::PathBuf>,
    /// Provide /etc/hostname, /etc/hosts and /etc/resolv.conf (default).
    pub etc_files: bool,
    /// The check its monitor runs inside it, if any.
    pub healthcheck: Option<Healthcheck>,
    /// What its monitor does when the checks find it unhealthy.
    pub on_unhealthy: OnUnhealthy,
    /// `depends-on`: what must run (or be healthy) before it starts.
    pub depends_on: Vec<super::depends::Dependency>,
    /// FNV-1a 64 of the canonical form of the definition (keys sorted,
    /// no white space): equal definitions hash equal whatever their layout,
    /// and a field added with a default in a later version changes nothing.
    pub hash: u64,
    /// What its network adds to `hash` beyond its own file (see
    /// `net::fold_hashes`); 0 for nothing. The monitor is given it, so the
    /// hash it records is the daemon's.
    pub net_mix: u64,
    /// The canonical JSON text the hash is taken over; parsing it again
    /// yields the same definition (it is how the monitor receives it).
    pub canonical: String,
}

/// One error in one file, printed as
/// `FILE: field "memory": reason` or `FILE: line 3 column 7: reason`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub field: Option<String>,
    pub position: Option<(usize, usize)>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ": line {line} column {col}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field \"{field}\"")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for RestartPolicy {
    /// The spelling used in container files: "no", "on-failure:5", ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}
