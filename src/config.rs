//! daemon.json and the container definitions: parse and validate, nothing else.
//!
//! Pure code: it reads bytes and returns typed values or one error naming the
//! file, the field (or line and column) and the reason. Every input here is
//! untrusted. Unknown keys are errors, so a typo never silently falls back to
//! a default.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::json::{self, Node, Number, Value};

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

/// Highest signal number on Linux (SIGRTMAX).
pub const MAX_SIGNAL: i32 = 64;

/// Longest unix socket path (sun_path less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    OnFailure { max: Option<u32> },
    Always,
    UnlessStopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// New network namespace with only loopback, up.
    None,
    /// The host's network namespace.
    Host,
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

/// One container definition (containers-dir/NAME.json).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    /// Absolute host path; must exist and be a directory.
    pub rootfs: PathBuf,
    /// Non-empty; command[0] is a path or a name looked up in PATH.
    pub command: Vec<String>,
    /// KEY=value strings, KEY non-empty and without '='.
    pub env: Vec<String>,
    /// Absolute path inside the container, default "/".
    pub workdir: String,
    /// Defaults to the container name (when it is a valid hostname).
    pub hostname: String,
    /// Numeric "uid" or "uid:gid"; `None` runs as root.
    pub user: Option<(u32, u32)>,
    pub autostart: bool,
    pub restart: RestartPolicy,
    pub readonly_rootfs: bool,
    pub mounts: Vec<Mount>,
    pub network: Network,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Maximum number of tasks.
    pub pids: Option<u64>,
    /// CPU limit in thousandths of a CPU (0.5 -> 500).
    pub cpus_milli: Option<u32>,
    pub stop_signal: i32,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout: u64,
    /// FNV-1a 64 of the canonical form of the definition (keys sorted,
    /// no white space): equal definitions hash equal whatever their layout,
    /// and a field added with a default in a later version changes nothing.
    pub hash: u64,
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

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Network::None => "none",
            Network::Host => "host",
        })
    }
}

/// Checks a container name before it becomes part of a path:
/// `[A-Za-z0-9_.-]`, 1 to 64 bytes, no leading '.'.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "name {} is longer than {MAX_NAME_LEN} bytes",
            quoted(name)
        ));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if !name.bytes().all(allowed) {
        return Err(format!(
            "name {} may only contain A-Z a-z 0-9 _ . -",
            quoted(name)
        ));
    }
    if name.starts_with('.') {
        return Err(format!("name {} must not start with '.'", quoted(name)));
    }
    Ok(())
}

/// "512", "64k", "64m", "1g" (any case, optionally with a "b" after the
/// unit, or "b" alone) in bytes; units are powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        _ => digits.len() + 64,
    };
    if digits.is_empty() || shift >= 64 {
        return Err(format!(
            "invalid size {}: expected digits and an optional k, m or g suffix",
            quoted(s)
        ));
    }
    let too_large = || format!("size {} is too large", quoted(s));
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    n.checked_mul(1u64 << shift).ok_or_else(too_large)
}

/// The standard Linux signals, by name without "SIG". Where two names share
/// a number the first one is what `signal_name` prints.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// "SIGTERM", "TERM", "term" or "15"; numbers 1 to 64.
pub fn parse_signal(s: &str) -> Option<i32> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i32 = s.parse().ok()?;
        return (1..=MAX_SIGNAL).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(name, _)| *name == bare)
        .map(|&(_, n)| n)
}

/// "SIGTERM" for 15; the number itself for signals without a name.
pub fn signal_name(sig: i32) -> String {
    match SIGNALS.iter().find(|&&(_, n)| n == sig) {
        Some((name, _)) => format!("SIG{name}"),
        None => sig.to_string(),
    }
}

/// "no", "on-failure", "on-failure:N" (N from 1 to 1000000), "always",
/// "unless-stopped".
pub fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    match s {
        "no" => return Ok(RestartPolicy::No),
        "on-failure" => return Ok(RestartPolicy::OnFailure { max: None }),
        "always" => return Ok(RestartPolicy::Always),
        "unless-stopped" => return Ok(RestartPolicy::UnlessStopped),
        _ => {}
    }
    if let Some(n) = s.strip_prefix("on-failure:") {
        let max = Some(n)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=MAX_RESTART_RETRIES).contains(n));
        return match max {
            Some(max) => Ok(RestartPolicy::OnFailure { max: Some(max) }),
            None => Err(format!(
                "the retry count in {} must be a number from 1 to {MAX_RESTART_RETRIES}",
                quoted(s)
            )),
        };
    }
    Err(format!(
        "expected \"no\", \"on-failure\", \"on-failure:N\", \"always\" or \"unless-stopped\", found {}",
        quoted(s)
    ))
}

/// "off", "error", "warn", "info", "debug" or "trace".
pub fn parse_log_level(s: &str) -> Option<log::LevelFilter> {
    Some(match s {
        "off" => log::LevelFilter::Off,
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => return None,
    })
}

/// FNV-1a, 64 bits: the hash of a definition's canonical text.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The options daemon.json gives when it is `{}` at /etc/berth/daemon.json.
pub fn default_daemon() -> DaemonConfig {
    let state_dir = PathBuf::from("/var/lib/berth");
    let run_dir = PathBuf::from("/run/berth");
    DaemonConfig {
        live_restore: false,
        containers_dir: PathBuf::from("/etc/berth/containers"),
        socket: run_dir.join("berth.sock"),
        log_dir: state_dir.join("logs"),
        state_dir,
        run_dir,
        log_level: log::LevelFilter::Info,
        log_max_size: MIB,
        log_max_files: 3,
        cgroup_parent: "berth".to_string(),
        shutdown_timeout: 10,
    }
}

/// Parses daemon.json; `file` names it in errors and relative paths in it
/// are taken from the directory that holds it.
pub fn parse_daemon(text: &str, file: &Path) -> Result<DaemonConfig, ConfigError> {
    let root = parse_top(text, file)?;
    let mut cfg = default_daemon();
    let mut socket = None;
    let mut log_dir = None;
    for (key, node) in members(&root) {
        let err = |reason: String| field_error(file, key, reason);
        match key.as_str() {
            "live-restore" => cfg.live_restore = get_bool(node).map_err(err)?,
            "containers-dir" => cfg.containers_dir = get_path(node, file).map_err(err)?,
            "state-dir" => cfg.state_dir = get_path(node, file).map_err(err)?,
            "run-dir" => cfg.run_dir = get_path(node, file).map_err(err)?,
            "socket" => socket = Some(get_path(node, file).map_err(err)?),
            "log-dir" => log_dir = Some(get_path(node, file).map_err(err)?),
            "log-level" => {
                let s = get_str(node).map_err(err)?;
                cfg.log_level = parse_log_level(s).ok_or_else(|| {
                    err(format!(
                        "expected one of off, error, warn, info, debug, trace, found {}",
                        quoted(s)
                    ))
                })?;
            }
            "log-max-size" => cfg.log_max_size = get_size(node, 4 * KIB, GIB).map_err(err)?,
            "log-max-files" => cfg.log_max_files = get_uint(node, 1, 100).map_err(err)? as u32,
            "cgroup-parent" => {
                let s = get_str(node).map_err(err)?;
                check_cgroup_parent(s).map_err(err)?;
                cfg.cgroup_parent = s.to_string();
            }
            "shutdown-timeout" => {
                cfg.shutdown_timeout = get_uint(node, 0, MAX_TIMEOUT).map_err(err)?;
            }
            _ => return Err(unknown_key(file, "", key)),
        }
    }
    let socket_field = if socket.is_some() {
        "socket"
    } else {
        "run-dir"
    };
    cfg.socket = socket.unwrap_or_else(|| cfg.run_dir.join("berth.sock"));
    cfg.log_dir = log_dir.unwrap_or_else(|| cfg.state_dir.join("logs"));
    if cfg.socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(field_error(
            file,
            socket_field,
            format!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                cfg.socket.display()
            ),
        ));
    }
    Ok(cfg)
}

/// Parses one container definition; `name` is the file's stem. Relative
/// paths are taken from the directory of `file`, which is only named, never
/// read: `check_container_host` looks at the host.
pub fn parse_container(name: &str, text: &str, file: &Path) -> Result<ContainerSpec, ConfigError> {
    validate_name(name).map_err(|reason| field_error(file, "name", reason))?;
    let mut root = parse_top(text, file)?;
    let mut spec = ContainerSpec {
        name: name.to_string(),
        rootfs: PathBuf::new(),
        command: Vec::new(),
        env: Vec::new(),
        workdir: "/".to_string(),
        hostname: String::new(),
        user: None,
        autostart: true,
        restart: RestartPolicy::No,
        readonly_rootfs: false,
        mounts: Vec::new(),
        network: Network::None,
        memory: None,
        pids: None,
        cpus_milli: None,
        stop_signal: libc::SIGTERM,
        stop_timeout: 10,
        hash: 0,
        canonical: String::new(),
    };
    let mut hostname = None;
    for (key, node) in members(&root) {
        let err = |reason: String| field_error(file, key, reason);
        match key.as_str() {
            "rootfs" => spec.rootfs = get_path(node, file).map_err(err)?,
            "command" => spec.command = get_command(node, file)?,
            "env" => spec.env = get_env(node, file)?,
            "workdir" => {
                let s = get_str(node).map_err(err)?;
                if !s.starts_with('/') {
                    return Err(err("must be an absolute path".to_string()));
                }
                spec.workdir = s.to_string();
            }
            "hostname" => {
                let s = get_str(node).map_err(err)?;
                if !is_hostname(s) {
                    return Err(err(format!(
                        "expected 1 to 64 letters, digits, '-' and '.', found {}",
                        quoted(s)
                    )));
                }
                hostname = Some(s.to_string());
            }
            "user" => spec.user = Some(parse_user(get_str(node).map_err(err)?).map_err(err)?),
            "autostart" => spec.autostart = get_bool(node).map_err(err)?,
            "restart" => spec.restart = parse_restart(get_str(node).map_err(err)?).map_err(err)?,
            "readonly-rootfs" => spec.readonly_rootfs = get_bool(node).map_err(err)?,
            "mounts" => spec.mounts = get_mounts(node, file)?,
            "network" => {
                spec.network = match get_str(node).map_err(err)? {
                    "none" => Network::None,
                    "host" => Network::Host,
                    s => {
                        return Err(err(format!(
                            "expected \"none\" or \"host\", found {}",
                            quoted(s)
                        )));
                    }
                };
            }
            "memory" => spec.memory = Some(get_size(node, MIB, u64::MAX).map_err(err)?),
            "pids" => spec.pids = Some(get_uint(node, 1, MAX_PIDS).map_err(err)?),
            "cpus" => spec.cpus_milli = Some(get_cpus(node).map_err(err)?),
            "stop-signal" => spec.stop_signal = get_signal(node).map_err(err)?,
            "stop-timeout" => spec.stop_timeout = get_uint(node, 0, MAX_TIMEOUT).map_err(err)?,
            _ => return Err(unknown_key(file, "", key)),
        }
    }
    for required in ["rootfs", "command"] {
        if root.get(required).is_none() {
            return Err(field_error(file, required, "required key is missing"));
        }
    }
    spec.hostname = hostname.unwrap_or_else(|| {
        if is_hostname(name) {
            name.to_string()
        } else {
            "berth".to_string()
        }
    });
    // A relative rootfs is written resolved, so the canonical text means the
    // same wherever it is parsed again, and moving the file changes the hash.
    if let Value::Object(members) = &mut root.value
        && let Some((_, node)) = members.iter_mut().find(|(k, _)| k == "rootfs")
        && let Value::String(s) = &mut node.value
        && Path::new(s.as_str()).is_relative()
        && let Some(resolved) = spec.rootfs.to_str()
    {
        *s = resolved.to_string();
    }
    spec.canonical = json::to_canonical(&root);
    spec.hash = fnv1a64(spec.canonical.as_bytes());
    Ok(spec)
}

/// What the daemon checks on the host before it starts a container: the
/// rootfs is a directory and every bind source exists.
pub fn check_container_host(spec: &ContainerSpec, file: &Path) -> Result<(), ConfigError> {
    match fs::metadata(&spec.rootfs) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            let reason = format!("{}: is not a directory", spec.rootfs.display());
            return Err(field_error(file, "rootfs", reason));
        }
        Err(e) => {
            let reason = format!("{}: {}", spec.rootfs.display(), io_reason(&e));
            return Err(field_error(file, "rootfs", reason));
        }
    }
    for (i, mount) in spec.mounts.iter().enumerate() {
        if let MountKind::Bind { source } = &mount.kind
            && let Err(e) = fs::metadata(source)
        {
            let reason = format!("{}: {}", source.display(), io_reason(&e));
            return Err(field_error(file, format!("mounts[{i}].source"), reason));
        }
    }
    Ok(())
}

/// One definition found by `read_containers_dir`: the name (the file's stem)
/// and the parsed, host-checked spec or what is wrong with it.
pub type ContainerEntry = (String, Result<ContainerSpec, ConfigError>);

/// Every definition in `dir`: each regular (or symlinked) `NAME.json`, in
/// name order, parsed and checked against the host. Hidden files, backups
/// and anything else are skipped. Only a directory that cannot be listed is
/// an error of its own; a bad file is an entry with its error.
pub fn read_containers_dir(dir: &Path) -> Result<Vec<ContainerEntry>, ConfigError> {
    let dir_error = |reason: String| ConfigError {
        file: dir.to_path_buf(),
        field: None,
        position: None,
        reason,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(dir_error("no such directory".to_string()));
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(dir_error("not a directory".to_string()));
        }
        Err(e) => return Err(dir_error(io_reason(&e))),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| dir_error(io_reason(&e)))?;
        let file_name = entry.file_name();
        let bytes = file_name.as_encoded_bytes();
        if bytes.starts_with(b".") || bytes.ends_with(b"~") {
            continue;
        }
        let Some(stem) = bytes.strip_suffix(b".json") else {
            continue;
        };
        let name = String::from_utf8_lossy(stem).into_owned();
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| dir_error(io_reason(&e)))?;
        let checked = if file_type.is_symlink() {
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(()),
                Ok(_) => continue,
                Err(e) => Err(file_error(&path, io_reason(&e))),
            }
        } else if file_type.is_file() {
            Ok(())
        } else {
            continue;
        };
        found.push((file_name, name, path, checked));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found
        .into_iter()
        .map(|(_, name, path, checked)| {
            let spec = checked
                .and_then(|()| read_capped(&path))
                .and_then(|text| parse_container(&name, &text, &path))
                .and_then(|spec| check_container_host(&spec, &path).map(|()| spec));
            (name, spec)
        })
        .collect())
}

/// Reads (at most `MAX_FILE_SIZE` bytes) and parses daemon.json.
pub fn read_daemon_file(path: &Path) -> Result<DaemonConfig, ConfigError> {
    let text = read_capped(path)?;
    parse_daemon(&text, path)
}

/// The whole of a regular file of at most `MAX_FILE_SIZE` bytes, as UTF-8.
/// Opened non-blocking so a FIFO in its place cannot hang the caller.
fn read_capped(path: &Path) -> Result<String, ConfigError> {
    let error = |reason: String| file_error(path, reason);
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| error(io_reason(&e)))?;
    let meta = file.metadata().map_err(|e| error(io_reason(&e)))?;
    if !meta.is_file() {
        return Err(error("not a regular file".to_string()));
    }
    let too_large = || error(format!("file is larger than {MAX_FILE_SIZE} bytes"));
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(io_reason(&e)))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| error("file is not valid utf-8".to_string()))
}

/// An io::Error as a lowercase reason without the "(os error N)" tail.
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or_default();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => "i/o error".to_string(),
            }
        }
    }
}

fn file_error(file: &Path, reason: String) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        field: None,
        position: None,
        reason,
    }
}

fn field_error(file: &Path, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        field: Some(field.into()),
        position: None,
        reason: reason.into(),
    }
}

/// `prefix` is "" at the top level or like "mounts[1]." inside an object.
fn unknown_key(file: &Path, prefix: &str, key: &str) -> ConfigError {
    field_error(file, format!("{prefix}{}", printable(key)), "unknown key")
}

/// At most 64 characters of untrusted text, escaped like a JSON string (so
/// no control character reaches a log line), without the quotes.
fn printable(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    let mut out = String::new();
    json::escape_into(&mut out, &short);
    out.pop();
    out.remove(0);
    if short.len() < s.len() {
        out.push_str("...");
    }
    out
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", printable(s))
}

/// Parses a whole file that must hold one JSON object.
fn parse_top(text: &str, file: &Path) -> Result<Node, ConfigError> {
    let blank = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{feff}');
    if text.trim_matches(blank).is_empty() {
        return Err(file_error(file, "empty file".to_string()));
    }
    let at = |line, col, reason| ConfigError {
        file: file.to_path_buf(),
        field: None,
        position: Some((line, col)),
        reason,
    };
    let root = json::parse(text).map_err(|e| at(e.line, e.col, e.reason))?;
    if !matches!(root.value, Value::Object(_)) {
        let reason = format!(
            "expected an object at the top level, found {}",
            root.value.kind()
        );
        return Err(at(root.line, root.col, reason));
    }
    Ok(root)
}

fn members(node: &Node) -> &[(String, Node)] {
    match &node.value {
        Value::Object(members) => members,
        _ => &[],
    }
}

fn wrong_type(expected: &str, node: &Node) -> String {
    format!("expected {expected}, found {}", node.value.kind())
}

fn number_text(n: &Number) -> String {
    match *n {
        Number::Unsigned(v) => v.to_string(),
        Number::Negative(v) => v.to_string(),
        Number::Float(f) => format!("{f:?}"),
    }
}

fn get_bool(node: &Node) -> Result<bool, String> {
    match node.value {
        Value::Bool(b) => Ok(b),
        _ => Err(wrong_type("a boolean", node)),
    }
}

/// A string of at most `MAX_STRING_LEN` bytes without NUL.
fn get_str(node: &Node) -> Result<&str, String> {
    match &node.value {
        Value::String(s) if s.len() > MAX_STRING_LEN => {
            Err(format!("string is longer than {MAX_STRING_LEN} bytes"))
        }
        Value::String(s) if s.contains('\0') => Err("string contains a NUL byte".to_string()),
        Value::String(s) => Ok(s),
        _ => Err(wrong_type("a string", node)),
    }
}

/// A non-empty path string, relative ones taken from `file`'s directory.
fn get_path(node: &Node, file: &Path) -> Result<PathBuf, String> {
    let s = get_str(node)?;
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    let path = Path::new(s);
    Ok(match file.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    })
}

/// A whole number from `min` to `max`.
fn get_uint(node: &Node, min: u64, max: u64) -> Result<u64, String> {
    let Value::Number(n) = &node.value else {
        return Err(wrong_type("an integer", node));
    };
    let out_of_range = || format!("must be from {min} to {max}, found {}", number_text(n));
    match n.as_u64() {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(out_of_range()),
        // Negative, or a whole number too large to be exact.
        None if n.as_f64().fract() == 0.0 => Err(out_of_range()),
        None => Err(format!("expected an integer, found {}", number_text(n))),
    }
}

/// A size string ("64m") or a whole number of bytes, from `min` to `max`.
fn get_size(node: &Node, min: u64, max: u64) -> Result<u64, String> {
    let v = match &node.value {
        Value::String(_) => parse_size(get_str(node)?)?,
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("expected a whole number of bytes, found {}", number_text(n)))?,
        _ => return Err(wrong_type("a size like \"64m\" or a number of bytes", node)),
    };
    if v < min {
        return Err(format!("must be at least {min} bytes, found {v}"));
    }
    if v > max {
        return Err(format!("must be at most {max} bytes, found {v}"));
    }
    Ok(v)
}

/// Thousandths of a CPU: more than 0 and at most 1024 CPUs, at least 1.
fn get_cpus(node: &Node) -> Result<u32, String> {
    let Value::Number(n) = &node.value else {
        return Err(wrong_type("a number", node));
    };
    let cpus = n.as_f64();
    // The kernel takes a CFS quota of 1 ms at the least, 1% of the 100 ms
    // period berth uses.
    if !(0.01..=1024.0).contains(&cpus) {
        return Err(format!(
            "must be at least 0.01 and at most 1024, found {}",
            number_text(n)
        ));
    }
    Ok((cpus * 1000.0).round() as u32)
}

fn get_signal(node: &Node) -> Result<i32, String> {
    match &node.value {
        Value::String(_) => {
            let s = get_str(node)?;
            parse_signal(s).ok_or_else(|| format!("unknown signal {}", quoted(s)))
        }
        Value::Number(n) => match n.as_u64() {
            Some(v) if (1..=MAX_SIGNAL as u64).contains(&v) => Ok(v as i32),
            _ => Err(format!(
                "signal numbers are 1 to {MAX_SIGNAL}, found {}",
                number_text(n)
            )),
        },
        _ => Err(wrong_type("a signal name or number", node)),
    }
}

/// An array of at most `max` entries.
fn get_array(node: &Node, max: usize) -> Result<&[Node], String> {
    match &node.value {
        Value::Array(items) if items.len() > max => Err(format!("has more than {max} entries")),
        Value::Array(items) => Ok(items),
        _ => Err(wrong_type("an array", node)),
    }
}

fn get_command(node: &Node, file: &Path) -> Result<Vec<String>, ConfigError> {
    let items = get_array(node, MAX_LIST_LEN).map_err(|r| field_error(file, "command", r))?;
    if items.is_empty() {
        return Err(field_error(file, "command", "must not be empty"));
    }
    let mut command = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let s = get_str(item).map_err(|r| field_error(file, format!("command[{i}]"), r))?;
        if i == 0 && s.is_empty() {
            return Err(field_error(file, "command[0]", "must not be empty"));
        }
        command.push(s.to_string());
    }
    Ok(command)
}

fn get_env(node: &Node, file: &Path) -> Result<Vec<String>, ConfigError> {
    let items = get_array(node, MAX_LIST_LEN).map_err(|r| field_error(file, "env", r))?;
    let mut env = Vec::with_capacity(items.len());
    let mut keys = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let err = |reason: String| field_error(file, format!("env[{i}]"), reason);
        let s = get_str(item).map_err(err)?;
        let Some((key, _)) = s.split_once('=') else {
            return Err(err(format!("expected KEY=value, found {}", quoted(s))));
        };
        if key.is_empty() {
            return Err(err(format!(
                "variable name before '=' must not be empty, found {}",
                quoted(s)
            )));
        }
        if !keys.insert(key) {
            return Err(err(format!("duplicate variable {}", quoted(key))));
        }
        env.push(s.to_string());
    }
    Ok(env)
}

/// "uid" or "uid:gid", both numeric; uid alone means gid = uid.
fn parse_user(s: &str) -> Result<(u32, u32), String> {
    let id = |part: &str| {
        Some(part)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|&v| v != u32::MAX)
    };
    let (uid, gid) = match s.split_once(':') {
        Some((u, g)) => (id(u), id(g)),
        None => (id(s), id(s)),
    };
    match (uid, gid) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(format!(
            "expected a numeric \"uid\" or \"uid:gid\" below 4294967295, found {}",
            quoted(s)
        )),
    }
}

/// Letters, digits, '-' and '.', 1 to 64 bytes (the kernel's limit).
fn is_hostname(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Each '/'-separated component a valid name; one leading '/' allowed.
fn check_cgroup_parent(s: &str) -> Result<(), String> {
    let relative = s.strip_prefix('/').unwrap_or(s);
    if relative.is_empty() {
        return Err(format!("must name a cgroup, found {}", quoted(s)));
    }
    for component in relative.split('/') {
        if component.is_empty() {
            return Err(format!(
                "{} has an empty component (\"//\" or a trailing '/')",
                quoted(s)
            ));
        }
        validate_name(component)?;
    }
    Ok(())
}

/// An absolute path other than "/" without empty, "." or ".." components.
fn check_target(s: &str) -> Result<(), String> {
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!("must be an absolute path, found {}", quoted(s)));
    };
    if rest.is_empty() {
        return Err("must not be \"/\"".to_string());
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "must be a normalised path (no empty, \".\" or \"..\" components), found {}",
            quoted(s)
        ));
    }
    Ok(())
}

fn get_mounts(node: &Node, file: &Path) -> Result<Vec<Mount>, ConfigError> {
    let items = get_array(node, MAX_MOUNTS).map_err(|r| field_error(file, "mounts", r))?;
    let mut mounts = Vec::with_capacity(items.len());
    let mut targets = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let base = format!("mounts[{i}]");
        let err = |key: &str, reason: String| field_error(file, format!("{base}.{key}"), reason);
        let Value::Object(fields) = &item.value else {
            return Err(field_error(file, &base, wrong_type("an object", item)));
        };
        let mut tmpfs = false;
        let mut source = None;
        let mut target = None;
        let mut readonly = false;
        let mut size = None;
        for (key, value) in fields {
            let key_err = |reason: String| err(key, reason);
            match key.as_str() {
                "type" => {
                    tmpfs = match get_str(value).map_err(key_err)? {
                        "bind" => false,
                        "tmpfs" => true,
                        s => {
                            return Err(key_err(format!(
                                "expected \"bind\" or \"tmpfs\", found {}",
                                quoted(s)
                            )));
                        }
                    }
                }
                "source" => source = Some(get_str(value).map_err(key_err)?),
                "target" => target = Some(get_str(value).map_err(key_err)?),
                "readonly" => readonly = get_bool(value).map_err(key_err)?,
                "size" => size = Some(get_size(value, 4 * KIB, u64::MAX).map_err(key_err)?),
                _ => return Err(unknown_key(file, &format!("{base}."), key)),
            }
        }
        let kind = if tmpfs {
            if source.is_some() {
                return Err(err("source", "not allowed for tmpfs mounts".to_string()));
            }
            MountKind::Tmpfs { size }
        } else {
            if size.is_some() {
                return Err(err("size", "only allowed for tmpfs mounts".to_string()));
            }
            let source =
                source.ok_or_else(|| err("source", "required key is missing".to_string()))?;
            if !source.starts_with('/') {
                return Err(err(
                    "source",
                    format!("must be an absolute path, found {}", quoted(source)),
                ));
            }
            MountKind::Bind {
                source: PathBuf::from(source),
            }
        };
        let target = target.ok_or_else(|| err("target", "required key is missing".to_string()))?;
        check_target(target).map_err(|r| err("target", r))?;
        if !targets.insert(target) {
            return Err(err(
                "target",
                format!("duplicate target {}", quoted(target)),
            ));
        }
        mounts.push(Mount {
            kind,
            target: target.to_string(),
            readonly,
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON_FILE: &str = "/etc/berth/daemon.json";
    const CONTAINER_FILE: &str = "/etc/berth/containers/app.json";

    fn daemon(text: &str) -> DaemonConfig {
        parse_daemon(text, Path::new(DAEMON_FILE)).unwrap()
    }

    fn daemon_err(text: &str) -> (Option<String>, String) {
        let e = parse_daemon(text, Path::new(DAEMON_FILE)).expect_err(text);
        assert_eq!(e.file, Path::new(DAEMON_FILE));
        (e.field, e.reason)
    }

    fn spec(text: &str) -> ContainerSpec {
        parse_container("app", text, Path::new(CONTAINER_FILE)).unwrap()
    }

    fn spec_err(text: &str) -> (Option<String>, String) {
        let e = parse_container("app", text, Path::new(CONTAINER_FILE)).expect_err(text);
        assert_eq!(e.file, Path::new(CONTAINER_FILE));
        (e.field, e.reason)
    }

    /// A container file with `extra` members added to the required ones.
    fn with(extra: &str) -> String {
        format!("{{\"rootfs\": \"/srv/app\", \"command\": [\"/bin/app\"]{extra}}}")
    }

    fn field(f: &str, reason: &str) -> (Option<String>, String) {
        (Some(f.to_string()), reason.to_string())
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let path = std::env::temp_dir()
                .join(format!("berth-config-test-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn names() {
        for good in ["app", "a", "A.b-c_9", "x..y", &"n".repeat(64)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        let bad = |n: &str| validate_name(n).unwrap_err();
        assert_eq!(
            bad("../x"),
            "name \"../x\" may only contain A-Z a-z 0-9 _ . -"
        );
        assert_eq!(
            bad("a/b"),
            "name \"a/b\" may only contain A-Z a-z 0-9 _ . -"
        );
        assert_eq!(bad(".hidden"), "name \".hidden\" must not start with '.'");
        assert_eq!(bad(".."), "name \"..\" must not start with '.'");
        assert_eq!(bad(""), "name must not be empty");
        assert_eq!(
            bad(&"n".repeat(65)),
            format!("name \"{}...\" is longer than 64 bytes", "n".repeat(64))
        );
        assert_eq!(
            bad("a\nb"),
            "name \"a\\nb\" may only contain A-Z a-z 0-9 _ . -"
        );
        assert_eq!(
            bad("caf\u{e9}"),
            "name \"caf\u{e9}\" may only contain A-Z a-z 0-9 _ . -"
        );
        // The name is checked before anything in the file.
        let e = parse_container("../x", "not json", Path::new(CONTAINER_FILE)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        assert_eq!(e.reason, "name \"../x\" may only contain A-Z a-z 0-9 _ . -");
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("512b", 512),
            ("512B", 512),
            ("64k", 64 * KIB),
            ("64K", 64 * KIB),
            ("64kb", 64 * KIB),
            ("64KB", 64 * KIB),
            ("64m", 64 * MIB),
            ("64Mb", 64 * MIB),
            ("1g", GIB),
            ("1GB", GIB),
            ("2t", 2048 * GIB),
            ("17179869183g", 17_179_869_183 * GIB),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in [
            "", "k", "1.5g", "-1", " 1", "1 k", "1x", "1kib", "1gg", "0x10",
        ] {
            assert_eq!(
                parse_size(text),
                Err(format!(
                    "invalid size {}: expected digits and an optional k, m or g suffix",
                    quoted(text)
                )),
                "{text}"
            );
        }
        assert_eq!(
            parse_size("17179869184g"),
            Err("size \"17179869184g\" is too large".to_string())
        );
        assert_eq!(
            parse_size("18446744073709551616"),
            Err("size \"18446744073709551616\" is too large".to_string())
        );
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn signals() {
        for text in ["SIGTERM", "TERM", "term", "SigTerm", "15"] {
            assert_eq!(parse_signal(text), Some(libc::SIGTERM), "{text}");
        }
        assert_eq!(parse_signal("KILL"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("sighup"), Some(libc::SIGHUP));
        assert_eq!(parse_signal("POLL"), Some(libc::SIGIO));
        assert_eq!(parse_signal("SIGIO"), Some(libc::SIGIO));
        assert_eq!(parse_signal("STKFLT"), Some(libc::SIGSTKFLT));
        assert_eq!(parse_signal("SIGSYS"), Some(libc::SIGSYS));
        assert_eq!(parse_signal("1"), Some(1));
        assert_eq!(parse_signal("64"), Some(64));
        assert_eq!(parse_signal("034"), Some(34));
        for bad in [
            "",
            "0",
            "65",
            "-1",
            "+15",
            "SIG",
            "SIGFOO",
            "SIG15",
            "99999999999",
        ] {
            assert_eq!(parse_signal(bad), None, "{bad}");
        }
        for &(name, n) in SIGNALS {
            assert_eq!(parse_signal(name), Some(n));
            assert_eq!(parse_signal(&signal_name(n)), Some(n));
        }
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGIO), "SIGIO");
        assert_eq!(signal_name(40), "40");
    }

    #[test]
    fn restart_policies() {
        for (text, policy) in [
            ("no", RestartPolicy::No),
            ("on-failure", RestartPolicy::OnFailure { max: None }),
            ("on-failure:1", RestartPolicy::OnFailure { max: Some(1) }),
            ("on-failure:5", RestartPolicy::OnFailure { max: Some(5) }),
            (
                "on-failure:1000000",
                RestartPolicy::OnFailure {
                    max: Some(1_000_000),
                },
            ),
            ("always", RestartPolicy::Always),
            ("unless-stopped", RestartPolicy::UnlessStopped),
        ] {
            assert_eq!(parse_restart(text), Ok(policy), "{text}");
            assert_eq!(policy.to_string(), text);
        }
        for bad in [
            "on-failure:0",
            "on-failure:",
            "on-failure:1000001",
            "on-failure:+5",
        ] {
            assert_eq!(
                parse_restart(bad),
                Err(format!(
                    "the retry count in \"{bad}\" must be a number from 1 to 1000000"
                ))
            );
        }
        for bad in ["", "yes", "Always", "on-failure5"] {
            assert!(
                parse_restart(bad)
                    .unwrap_err()
                    .starts_with("expected \"no\""),
                "{bad}"
            );
        }
    }

    #[test]
    fn daemon_defaults() {
        let cfg = default_daemon();
        assert_eq!(daemon("{}"), cfg);
        assert_eq!(daemon("\u{feff} {\n}\n"), cfg);
        assert!(!cfg.live_restore);
        assert_eq!(cfg.containers_dir, Path::new("/etc/berth/containers"));
        assert_eq!(cfg.state_dir, Path::new("/var/lib/berth"));
        assert_eq!(cfg.run_dir, Path::new("/run/berth"));
        assert_eq!(cfg.socket, Path::new("/run/berth/berth.sock"));
        assert_eq!(cfg.log_dir, Path::new("/var/lib/berth/logs"));
        assert_eq!(cfg.log_level, log::LevelFilter::Info);
        assert_eq!(cfg.log_max_size, 1_048_576);
        assert_eq!(cfg.log_max_files, 3);
        assert_eq!(cfg.cgroup_parent, "berth");
        assert_eq!(cfg.shutdown_timeout, 10);
    }

    #[test]
    fn daemon_every_key() {
        let cfg = daemon(
            r#"{
                "live-restore": true,
                "containers-dir": "/c",
                "state-dir": "/s",
                "run-dir": "/r",
                "socket": "/x/b.sock",
                "log-dir": "/l",
                "log-level": "debug",
                "log-max-size": "64k",
                "log-max-files": 7,
                "cgroup-parent": "/system.slice/berth",
                "shutdown-timeout": 0
            }"#,
        );
        assert_eq!(
            cfg,
            DaemonConfig {
                live_restore: true,
                containers_dir: "/c".into(),
                state_dir: "/s".into(),
                run_dir: "/r".into(),
                socket: "/x/b.sock".into(),
                log_dir: "/l".into(),
                log_level: log::LevelFilter::Debug,
                log_max_size: 65536,
                log_max_files: 7,
                cgroup_parent: "/system.slice/berth".into(),
                shutdown_timeout: 0,
            }
        );
        // Derived defaults follow the configured directories.
        let cfg = daemon(r#"{"run-dir": "/r", "state-dir": "/s"}"#);
        assert_eq!(cfg.socket, Path::new("/r/berth.sock"));
        assert_eq!(cfg.log_dir, Path::new("/s/logs"));
        // Relative paths are taken from the file's directory.
        let cfg = parse_daemon(
            r#"{"containers-dir": "containers", "state-dir": "../state", "run-dir": "/abs"}"#,
            Path::new("/opt/berth/etc/daemon.json"),
        )
        .unwrap();
        assert_eq!(cfg.containers_dir, Path::new("/opt/berth/etc/containers"));
        assert_eq!(cfg.state_dir, Path::new("/opt/berth/etc/../state"));
        assert_eq!(cfg.run_dir, Path::new("/abs"));
        for (level, filter) in [
            ("off", log::LevelFilter::Off),
            ("error", log::LevelFilter::Error),
            ("warn", log::LevelFilter::Warn),
            ("trace", log::LevelFilter::Trace),
        ] {
            let cfg = daemon(&format!(r#"{{"log-level": "{level}"}}"#));
            assert_eq!(cfg.log_level, filter);
        }
        assert_eq!(daemon(r#"{"log-max-size": 4096}"#).log_max_size, 4096);
        assert_eq!(daemon(r#"{"log-max-size": 1.5e6}"#).log_max_size, 1_500_000);
        assert_eq!(daemon(r#"{"log-max-size": "1g"}"#).log_max_size, GIB);
        assert_eq!(daemon(r#"{"log-max-files": 1}"#).log_max_files, 1);
        assert_eq!(daemon(r#"{"log-max-files": 100}"#).log_max_files, 100);
        assert_eq!(
            daemon(r#"{"shutdown-timeout": 3600}"#).shutdown_timeout,
            3600
        );
        assert_eq!(
            daemon(r#"{"cgroup-parent": "a/b.c/d-e"}"#).cgroup_parent,
            "a/b.c/d-e"
        );
    }

    #[test]
    fn daemon_bad_values() {
        assert_eq!(
            daemon_err(r#"{"live_restore": true}"#),
            field("live_restore", "unknown key")
        );
        assert_eq!(
            daemon_err(r#"{"socket": "/s", "bogus": 1}"#),
            field("bogus", "unknown key")
        );
        assert_eq!(
            daemon_err(r#"{"live-restore": "yes"}"#),
            field("live-restore", "expected a boolean, found a string")
        );
        assert_eq!(
            daemon_err(r#"{"state-dir": 5}"#),
            field("state-dir", "expected a string, found a number")
        );
        assert_eq!(
            daemon_err(r#"{"run-dir": ""}"#),
            field("run-dir", "must not be empty")
        );
        assert_eq!(
            daemon_err(r#"{"log-dir": null}"#),
            field("log-dir", "expected a string, found null")
        );
        assert_eq!(
            daemon_err(r#"{"log-level": "verbose"}"#),
            field(
                "log-level",
                "expected one of off, error, warn, info, debug, trace, found \"verbose\""
            )
        );
        assert_eq!(
            daemon_err(r#"{"log-max-size": "4095"}"#),
            field("log-max-size", "must be at least 4096 bytes, found 4095")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-size": "2g"}"#),
            field(
                "log-max-size",
                "must be at most 1073741824 bytes, found 2147483648"
            )
        );
        assert_eq!(
            daemon_err(r#"{"log-max-size": 4096.5}"#),
            field(
                "log-max-size",
                "expected a whole number of bytes, found 4096.5"
            )
        );
        assert_eq!(
            daemon_err(r#"{"log-max-size": true}"#),
            field(
                "log-max-size",
                "expected a size like \"64m\" or a number of bytes, found a boolean"
            )
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": 0}"#),
            field("log-max-files", "must be from 1 to 100, found 0")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": 101}"#),
            field("log-max-files", "must be from 1 to 100, found 101")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": -1}"#),
            field("log-max-files", "must be from 1 to 100, found -1")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": 2.5}"#),
            field("log-max-files", "expected an integer, found 2.5")
        );
        assert_eq!(
            daemon_err(r#"{"log-max-files": "3"}"#),
            field("log-max-files", "expected an integer, found a string")
        );
        assert_eq!(
            daemon_err(r#"{"shutdown-timeout": 3601}"#),
            field("shutdown-timeout", "must be from 0 to 3600, found 3601")
        );
        for bad in ["", "/", "a//b", "a/", "../x", "a/.b", "a/b c"] {
            let (f, _) = daemon_err(&format!(r#"{{"cgroup-parent": "{bad}"}}"#));
            assert_eq!(f.as_deref(), Some("cgroup-parent"), "{bad}");
        }
        assert_eq!(
            daemon_err(r#"{"cgroup-parent": "a/../b"}"#),
            field("cgroup-parent", "name \"..\" must not start with '.'")
        );
        let long = format!(r#"{{"run-dir": "/{}"}}"#, "r".repeat(100));
        assert_eq!(daemon_err(&long).0.as_deref(), Some("run-dir"));
        let long = format!(r#"{{"socket": "/{}"}}"#, "s".repeat(107));
        assert_eq!(daemon_err(&long).0.as_deref(), Some("socket"));
    }

    #[test]
    fn daemon_file_shape() {
        let at = |text: &str| {
            let e = parse_daemon(text, Path::new(DAEMON_FILE)).unwrap_err();
            (e.field, e.position, e.reason)
        };
        assert_eq!(at(""), (None, None, "empty file".to_string()));
        assert_eq!(at(" \n\t\n"), (None, None, "empty file".to_string()));
        assert_eq!(
            at("[]"),
            (
                None,
                Some((1, 1)),
                "expected an object at the top level, found an array".to_string()
            )
        );
        assert_eq!(
            at("{\n  \"live-restore\": true\n  \"socket\": \"/s\"\n}"),
            (None, Some((3, 3)), "expected ',' or '}'".to_string())
        );
        assert_eq!(
            at("{\"socket\": \"/a\", \"socket\": \"/b\"}"),
            (None, Some((1, 18)), "duplicate key \"socket\"".to_string())
        );
        assert_eq!(
            at("{\"live-restore\": yes}"),
            (
                None,
                Some((1, 18)),
                "expected a value, found 'yes' (strings need double quotes)".to_string()
            )
        );
        let e = parse_daemon("{\n\"a\": [}", Path::new(DAEMON_FILE)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/berth/daemon.json: line 2 column 7: expected a value, found '}'"
        );
        let e = parse_daemon("{\"log-max-files\": 0}", Path::new(DAEMON_FILE)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/berth/daemon.json: field \"log-max-files\": must be from 1 to 100, found 0"
        );
    }

    #[test]
    fn container_defaults() {
        let s = spec(r#"{"rootfs": "/srv/app", "command": ["/bin/app"]}"#);
        assert_eq!(s.name, "app");
        assert_eq!(s.rootfs, Path::new("/srv/app"));
        assert_eq!(s.command, ["/bin/app"]);
        assert!(s.env.is_empty());
        assert_eq!(s.workdir, "/");
        assert_eq!(s.hostname, "app");
        assert_eq!(s.user, None);
        assert!(s.autostart);
        assert_eq!(s.restart, RestartPolicy::No);
        assert!(!s.readonly_rootfs);
        assert!(s.mounts.is_empty());
        assert_eq!(s.network, Network::None);
        assert_eq!(s.memory, None);
        assert_eq!(s.pids, None);
        assert_eq!(s.cpus_milli, None);
        assert_eq!(s.stop_signal, libc::SIGTERM);
        assert_eq!(s.stop_timeout, 10);
        assert_eq!(
            s.canonical,
            r#"{"command":["/bin/app"],"rootfs":"/srv/app"}"#
        );
        assert_eq!(s.hash, fnv1a64(s.canonical.as_bytes()));
        // The hostname falls back when the name is not a valid hostname.
        let text = with("");
        let s = parse_container("my_app", &text, Path::new(CONTAINER_FILE)).unwrap();
        assert_eq!(s.hostname, "berth");
        let s = parse_container("web-1.eu", &text, Path::new(CONTAINER_FILE)).unwrap();
        assert_eq!(s.hostname, "web-1.eu");
    }

    #[test]
    fn container_every_key() {
        let s = spec(
            r#"{
              "rootfs": "/var/lib/images/app",
              "command": ["/bin/app", "--serve", ""],
              "env": ["KEY=value", "EMPTY=", "EQ=a=b"],
              "workdir": "/srv",
              "hostname": "app-host",
              "user": "1000:2000",
              "autostart": false,
              "restart": "on-failure:5",
              "readonly-rootfs": true,
              "mounts": [{"source": "/data/app", "target": "/data", "readonly": false},
                         {"type": "tmpfs", "target": "/tmp"},
                         {"type": "bind", "source": "/etc/hosts", "target": "/etc/hosts",
                          "readonly": true},
                         {"type": "tmpfs", "target": "/run/x", "size": "16m", "readonly": true}],
              "network": "host",
              "memory": "64m", "pids": 128, "cpus": 0.5,
              "stop-signal": "SIGINT", "stop-timeout": 30
            }"#,
        );
        assert_eq!(s.rootfs, Path::new("/var/lib/images/app"));
        assert_eq!(s.command, ["/bin/app", "--serve", ""]);
        assert_eq!(s.env, ["KEY=value", "EMPTY=", "EQ=a=b"]);
        assert_eq!(s.workdir, "/srv");
        assert_eq!(s.hostname, "app-host");
        assert_eq!(s.user, Some((1000, 2000)));
        assert!(!s.autostart);
        assert_eq!(s.restart, RestartPolicy::OnFailure { max: Some(5) });
        assert!(s.readonly_rootfs);
        assert_eq!(
            s.mounts,
            [
                Mount {
                    kind: MountKind::Bind {
                        source: "/data/app".into()
                    },
                    target: "/data".into(),
                    readonly: false,
                },
                Mount {
                    kind: MountKind::Tmpfs { size: None },
                    target: "/tmp".into(),
                    readonly: false,
                },
                Mount {
                    kind: MountKind::Bind {
                        source: "/etc/hosts".into()
                    },
                    target: "/etc/hosts".into(),
                    readonly: true,
                },
                Mount {
                    kind: MountKind::Tmpfs {
                        size: Some(16 * MIB)
                    },
                    target: "/run/x".into(),
                    readonly: true,
                },
            ]
        );
        assert_eq!(s.network, Network::Host);
        assert_eq!(s.memory, Some(64 * MIB));
        assert_eq!(s.pids, Some(128));
        assert_eq!(s.cpus_milli, Some(500));
        assert_eq!(s.stop_signal, libc::SIGINT);
        assert_eq!(s.stop_timeout, 30);

        assert_eq!(spec(&with(r#","user": "7""#)).user, Some((7, 7)));
        assert_eq!(spec(&with(r#","user": "0:0""#)).user, Some((0, 0)));
        assert_eq!(spec(&with(r#","memory": 1048576"#)).memory, Some(MIB));
        assert_eq!(spec(&with(r#","pids": 4194304"#)).pids, Some(4_194_304));
        assert_eq!(spec(&with(r#","cpus": 2"#)).cpus_milli, Some(2000));
        assert_eq!(spec(&with(r#","cpus": 1024"#)).cpus_milli, Some(1_024_000));
        assert_eq!(spec(&with(r#","cpus": 0.01"#)).cpus_milli, Some(10));
        assert_eq!(spec(&with(r#","cpus": 1.2345"#)).cpus_milli, Some(1235));
        assert_eq!(
            spec(&with(r#","stop-signal": 9"#)).stop_signal,
            libc::SIGKILL
        );
        assert_eq!(
            spec(&with(r#","stop-signal": "usr1""#)).stop_signal,
            libc::SIGUSR1
        );
        assert_eq!(spec(&with(r#","stop-timeout": 0"#)).stop_timeout, 0);
        assert_eq!(spec(&with(r#","network": "none""#)).network, Network::None);
        assert_eq!(
            spec(&with(r#","restart": "always""#)).restart,
            RestartPolicy::Always
        );
        // Relative rootfs: from the file's directory, and written resolved.
        let s = spec(r#"{"rootfs": "images/app", "command": ["x"]}"#);
        assert_eq!(s.rootfs, Path::new("/etc/berth/containers/images/app"));
        assert_eq!(
            s.canonical,
            r#"{"command":["x"],"rootfs":"/etc/berth/containers/images/app"}"#
        );
    }

    #[test]
    fn container_bad_values() {
        let cases: &[(&str, &str, &str)] = &[
            (r#","bogus": 1"#, "bogus", "unknown key"),
            (r#","Memory": "1m""#, "Memory", "unknown key"),
            (r#","rootfs2": "x""#, "rootfs2", "unknown key"),
            (
                r#","autostart": 1"#,
                "autostart",
                "expected a boolean, found a number",
            ),
            (
                r#","readonly-rootfs": "true""#,
                "readonly-rootfs",
                "expected a boolean, found a string",
            ),
            (
                r#","env": "A=b""#,
                "env",
                "expected an array, found a string",
            ),
            (
                r#","env": ["A=b", 3]"#,
                "env[1]",
                "expected a string, found a number",
            ),
            (
                r#","env": ["A=b", "B"]"#,
                "env[1]",
                "expected KEY=value, found \"B\"",
            ),
            (
                r#","env": ["=b"]"#,
                "env[0]",
                "variable name before '=' must not be empty, found \"=b\"",
            ),
            (
                r#","env": ["A=1", "B=2", "A=3"]"#,
                "env[2]",
                "duplicate variable \"A\"",
            ),
            (
                r#","workdir": "srv""#,
                "workdir",
                "must be an absolute path",
            ),
            (
                r#","hostname": "a_b""#,
                "hostname",
                "expected 1 to 64 letters, digits, '-' and '.', found \"a_b\"",
            ),
            (
                r#","hostname": """#,
                "hostname",
                "expected 1 to 64 letters, digits, '-' and '.', found \"\"",
            ),
            (
                r#","user": "root""#,
                "user",
                "expected a numeric \"uid\" or \"uid:gid\" below 4294967295, found \"root\"",
            ),
            (
                r#","user": "1:""#,
                "user",
                "expected a numeric \"uid\" or \"uid:gid\" below 4294967295, found \"1:\"",
            ),
            (
                r#","user": "4294967295""#,
                "user",
                "expected a numeric \"uid\" or \"uid:gid\" below 4294967295, found \"4294967295\"",
            ),
            (
                r#","user": 1000"#,
                "user",
                "expected a string, found a number",
            ),
            (
                r#","restart": "sometimes""#,
                "restart",
                "expected \"no\", \"on-failure\", \"on-failure:N\", \"always\" or \"unless-stopped\", found \"sometimes\"",
            ),
            (
                r#","restart": "on-failure:0""#,
                "restart",
                "the retry count in \"on-failure:0\" must be a number from 1 to 1000000",
            ),
            (
                r#","network": "bridge""#,
                "network",
                "expected \"none\" or \"host\", found \"bridge\"",
            ),
            (
                r#","memory": "1023k""#,
                "memory",
                "must be at least 1048576 bytes, found 1047552",
            ),
            (
                r#","memory": "lots""#,
                "memory",
                "invalid size \"lots\": expected digits and an optional k, m or g suffix",
            ),
            (
                r#","memory": "99999999999999g""#,
                "memory",
                "size \"99999999999999g\" is too large",
            ),
            (
                r#","pids": 0"#,
                "pids",
                "must be from 1 to 4194304, found 0",
            ),
            (
                r#","pids": 4194305"#,
                "pids",
                "must be from 1 to 4194304, found 4194305",
            ),
            (
                r#","cpus": 0"#,
                "cpus",
                "must be at least 0.01 and at most 1024, found 0",
            ),
            (
                r#","cpus": -1"#,
                "cpus",
                "must be at least 0.01 and at most 1024, found -1",
            ),
            (
                r#","cpus": 0.005"#,
                "cpus",
                "must be at least 0.01 and at most 1024, found 0.005",
            ),
            (
                r#","cpus": 1024.5"#,
                "cpus",
                "must be at least 0.01 and at most 1024, found 1024.5",
            ),
            (
                r#","cpus": "0.5""#,
                "cpus",
                "expected a number, found a string",
            ),
            (
                r#","stop-signal": "SIGFOO""#,
                "stop-signal",
                "unknown signal \"SIGFOO\"",
            ),
            (
                r#","stop-signal": 0"#,
                "stop-signal",
                "signal numbers are 1 to 64, found 0",
            ),
            (
                r#","stop-signal": []"#,
                "stop-signal",
                "expected a signal name or number, found an array",
            ),
            (
                r#","stop-timeout": 3601"#,
                "stop-timeout",
                "must be from 0 to 3600, found 3601",
            ),
            (
                r#","stop-timeout": "10s""#,
                "stop-timeout",
                "expected an integer, found a string",
            ),
        ];
        for &(extra, f, reason) in cases {
            assert_eq!(spec_err(&with(extra)), field(f, reason), "{extra}");
        }
        assert_eq!(
            spec_err(r#"{"command": ["/bin/app"]}"#),
            field("rootfs", "required key is missing")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r"}"#),
            field("command", "required key is missing")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "", "command": ["x"]}"#),
            field("rootfs", "must not be empty")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": ["/r"], "command": ["x"]}"#),
            field("rootfs", "expected a string, found an array")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r", "command": []}"#),
            field("command", "must not be empty")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r", "command": "/bin/app"}"#),
            field("command", "expected an array, found a string")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r", "command": ["", "x"]}"#),
            field("command[0]", "must not be empty")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r", "command": ["x", null]}"#),
            field("command[1]", "expected a string, found null")
        );
        assert_eq!(
            spec_err(r#"{"rootfs": "/r\u0000", "command": ["x"]}"#),
            field("rootfs", "string contains a NUL byte")
        );
        let long = format!(r#"{{"rootfs": "/{}", "command": ["x"]}}"#, "r".repeat(4096));
        assert_eq!(
            spec_err(&long),
            field("rootfs", "string is longer than 4096 bytes")
        );
        let many = vec!["\"x\""; 1025].join(",");
        assert_eq!(
            spec_err(&format!(r#"{{"rootfs": "/r", "command": [{many}]}}"#)),
            field("command", "has more than 1024 entries")
        );
        // A hostile key is shortened and escaped before it reaches a message.
        let key = format!("a\n{}", "k".repeat(100));
        let (f, reason) = spec_err(&with(&format!(r#","a\n{}": 1"#, "k".repeat(100))));
        assert_eq!(reason, "unknown key");
        assert_eq!(f.unwrap(), format!("{}...", printable(&key[..64])));
        assert_eq!(
            spec_err("[1]"),
            (
                None,
                "expected an object at the top level, found an array".to_string()
            )
        );
        assert_eq!(spec_err(""), (None, "empty file".to_string()));
    }

    #[test]
    fn container_mounts() {
        let m = |mounts: &str| spec_err(&with(&format!(r#","mounts": {mounts}"#)));
        assert_eq!(
            m(r#"[{"target": "/a", "source": "/b"}, {"sourc": "/x", "target": "/y"}]"#),
            field("mounts[1].sourc", "unknown key")
        );
        assert_eq!(
            m(r#"[{"type": "tmpfs", "target": "/t", "mode": "0755"}]"#),
            field("mounts[0].mode", "unknown key")
        );
        assert_eq!(
            m(r#"{}"#),
            field("mounts", "expected an array, found an object")
        );
        assert_eq!(
            m(r#"["/a:/b"]"#),
            field("mounts[0]", "expected an object, found a string")
        );
        assert_eq!(
            m(r#"[{"type": "overlay", "target": "/t"}]"#),
            field(
                "mounts[0].type",
                "expected \"bind\" or \"tmpfs\", found \"overlay\""
            )
        );
        assert_eq!(
            m(r#"[{"target": "/t"}]"#),
            field("mounts[0].source", "required key is missing")
        );
        assert_eq!(
            m(r#"[{"source": "/s"}]"#),
            field("mounts[0].target", "required key is missing")
        );
        assert_eq!(
            m(r#"[{"source": "data", "target": "/t"}]"#),
            field(
                "mounts[0].source",
                "must be an absolute path, found \"data\""
            )
        );
        assert_eq!(
            m(r#"[{"source": "/s", "target": "/t", "size": "1m"}]"#),
            field("mounts[0].size", "only allowed for tmpfs mounts")
        );
        assert_eq!(
            m(r#"[{"target": "/t", "source": "/s", "type": "tmpfs"}]"#),
            field("mounts[0].source", "not allowed for tmpfs mounts")
        );
        assert_eq!(
            m(r#"[{"type": "tmpfs", "target": "/t", "size": 0}]"#),
            field("mounts[0].size", "must be at least 4096 bytes, found 0")
        );
        assert_eq!(
            m(r#"[{"source": "/s", "target": "/t", "readonly": "yes"}]"#),
            field("mounts[0].readonly", "expected a boolean, found a string")
        );
        assert_eq!(
            m(r#"[{"type": "tmpfs", "target": "/"}]"#),
            field("mounts[0].target", "must not be \"/\"")
        );
        for bad in ["t", "", "/a/../b", "/a/./b", "/a//b", "/a/", "/..", "/."] {
            let (f, _) = m(&format!(r#"[{{"type": "tmpfs", "target": "{bad}"}}]"#));
            assert_eq!(f.as_deref(), Some("mounts[0].target"), "{bad}");
        }
        assert_eq!(
            m(r#"[{"type": "tmpfs", "target": "/t"}, {"source": "/s", "target": "/t"}]"#),
            field("mounts[1].target", "duplicate target \"/t\"")
        );
    }

    #[test]
    fn canonical_and_hash() {
        let a = spec(
            r#"{"rootfs": "/srv/app", "command": ["/bin/app", "-v"],
                "env": ["A=1"], "cpus": 0.5, "memory": "64m",
                "mounts": [{"source": "/d", "target": "/d", "readonly": true}]}"#,
        );
        let b = spec(
            "{\n\t\"mounts\" : [ { \"readonly\" : true , \"target\" : \"/d\" , \"source\" : \"/d\" } ] ,\n\
             \"memory\":\"64m\",\"cpus\":0.50,\"env\":[\"A=1\"],\n\
             \"command\":[\"/bin/app\",\"-v\"],\"rootfs\":\"/srv/app\"\n}\n",
        );
        assert_eq!(a.canonical, b.canonical);
        assert_eq!(a.hash, b.hash);
        assert_eq!(a, b);
        assert_eq!(
            a.canonical,
            r#"{"command":["/bin/app","-v"],"cpus":0.5,"env":["A=1"],"memory":"64m","mounts":[{"readonly":true,"source":"/d","target":"/d"}],"rootfs":"/srv/app"}"#
        );
        // Any change of value changes the hash, even one to the default.
        for changed in [
            a.canonical.replace("-v", "-w"),
            a.canonical.replace("0.5", "0.25"),
            a.canonical
                .replace("\"readonly\":true", "\"readonly\":false"),
            format!(
                "{},\"autostart\":true}}",
                &a.canonical[..a.canonical.len() - 1]
            ),
        ] {
            assert_ne!(spec(&changed).hash, a.hash, "{changed}");
        }
        // The canonical text parses back to the same definition, anywhere.
        for s in [
            &a,
            &spec(r#"{"rootfs": "rel", "command": ["x"], "stop-signal": 2.0}"#),
        ] {
            let again = parse_container("app", &s.canonical, Path::new("/elsewhere/app.json"));
            assert_eq!(again.as_ref(), Ok(s));
        }
        // Hash and canonical are over the file, not the filled-in defaults.
        let bare = spec(&with(""));
        let explicit = spec(&with(r#","autostart": true"#));
        assert_eq!(bare.autostart, explicit.autostart);
        assert_ne!(bare.hash, explicit.hash);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn host_checks_and_directory() {
        let tmp = TempDir::new("dir");
        let dir = tmp.0.join("containers");
        let rootfs = tmp.0.join("rootfs");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&rootfs).unwrap();
        fs::write(tmp.0.join("plain"), "x").unwrap();
        let write = |name: &str, text: &str| fs::write(dir.join(name), text).unwrap();
        let r = rootfs.display();
        write(
            "b-ok.json",
            &format!(r#"{{"rootfs": "{r}", "command": ["/bin/sh"]}}"#),
        );
        write(
            "a-rel.json",
            r#"{"rootfs": "../rootfs", "command": ["/bin/sh"]}"#,
        );
        write(
            "c-missing.json",
            r#"{"rootfs": "/nonexistent/berth", "command": ["x"]}"#,
        );
        write(
            "d-file.json",
            &format!(
                r#"{{"rootfs": "{}/plain", "command": ["x"]}}"#,
                tmp.0.display()
            ),
        );
        write(
            "e-bind.json",
            &format!(
                r#"{{"rootfs": "{r}", "command": ["x"], "mounts": [{{"type": "tmpfs", "target": "/t"}}, {{"source": "/nonexistent/b", "target": "/b"}}]}}"#
            ),
        );
        write("f-syntax.json", "{\"rootfs\": }");
        write("g-big.json", &" ".repeat(MAX_FILE_SIZE as usize + 1));
        fs::write(dir.join("h-latin1.json"), b"{\"rootfs\": \"\xe9\"}").unwrap();
        write(".hidden.json", "{}");
        write("backup.json~", "{}");
        write("notes.txt", "{}");
        write("i.bad.json", "{}");
        fs::create_dir(dir.join("sub.json")).unwrap();
        std::os::unix::fs::symlink(dir.join("b-ok.json"), dir.join("j-link.json")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/berth", dir.join("k-dangling.json")).unwrap();

        let found = read_containers_dir(&dir).unwrap();
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "a-rel",
                "b-ok",
                "c-missing",
                "d-file",
                "e-bind",
                "f-syntax",
                "g-big",
                "h-latin1",
                "i.bad",
                "j-link",
                "k-dangling"
            ]
        );
        let get = |name: &str| &found.iter().find(|(n, _)| n == name).unwrap().1;
        let reason = |name: &str| {
            let e = get(name).as_ref().unwrap_err();
            (e.field.clone(), e.position, e.reason.clone())
        };
        assert_eq!(get("a-rel").as_ref().unwrap().rootfs, dir.join("../rootfs"));
        assert_eq!(get("b-ok").as_ref().unwrap().rootfs, rootfs);
        assert_eq!(get("j-link").as_ref().unwrap().rootfs, rootfs);
        assert_eq!(
            reason("c-missing"),
            (
                Some("rootfs".into()),
                None,
                "/nonexistent/berth: no such file or directory".into()
            )
        );
        assert_eq!(
            reason("d-file"),
            (
                Some("rootfs".into()),
                None,
                format!("{}/plain: is not a directory", tmp.0.display())
            )
        );
        assert_eq!(
            reason("e-bind"),
            (
                Some("mounts[1].source".into()),
                None,
                "/nonexistent/b: no such file or directory".into()
            )
        );
        assert_eq!(
            reason("f-syntax"),
            (None, Some((1, 12)), "expected a value, found '}'".into())
        );
        assert_eq!(
            reason("g-big"),
            (None, None, "file is larger than 65536 bytes".into())
        );
        assert_eq!(
            reason("h-latin1"),
            (None, None, "file is not valid utf-8".into())
        );
        assert_eq!(reason("i.bad").0.as_deref(), Some("rootfs"));
        assert_eq!(
            reason("k-dangling"),
            (None, None, "no such file or directory".into())
        );
        let e = get("f-syntax").as_ref().unwrap_err();
        assert_eq!(e.file, dir.join("f-syntax.json"));

        let e = read_containers_dir(&tmp.0.join("nope")).unwrap_err();
        assert_eq!((e.field, e.reason.as_str()), (None, "no such directory"));
        let e = read_containers_dir(&tmp.0.join("plain")).unwrap_err();
        assert_eq!(e.reason, "not a directory");
        assert!(read_containers_dir(&rootfs).unwrap().is_empty());
    }

    #[test]
    fn daemon_file() {
        let tmp = TempDir::new("daemon");
        let path = tmp.0.join("daemon.json");
        fs::write(&path, r#"{"containers-dir": "c", "log-level": "warn"}"#).unwrap();
        let cfg = read_daemon_file(&path).unwrap();
        assert_eq!(cfg.containers_dir, tmp.0.join("c"));
        assert_eq!(cfg.log_level, log::LevelFilter::Warn);

        fs::write(&path, format!("{{}}{}", " ".repeat(MAX_FILE_SIZE as usize))).unwrap();
        let e = read_daemon_file(&path).unwrap_err();
        assert_eq!(e.reason, "file is larger than 65536 bytes");
        fs::write(&path, "").unwrap();
        assert_eq!(read_daemon_file(&path).unwrap_err().reason, "empty file");
        let e = read_daemon_file(&tmp.0.join("missing.json")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}/missing.json: no such file or directory",
                tmp.0.display()
            )
        );
        assert_eq!(
            read_daemon_file(&tmp.0).unwrap_err().reason,
            "not a regular file"
        );
    }
}
