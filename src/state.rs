//! Records on disk: versioned, written atomically, read defensively.
//!
//! Per container, a directory in run-dir (facts about the running
//! processes, gone at reboot) and one in state-dir (what must survive a
//! reboot). Every write is temp file, fsync, rename, fsync of the directory,
//! so a power cut leaves the old record or the new one, never a torn one.
//! Every record carries `version`; fields added later are defaulted, so a
//! newer berth reads every older record, and a record newer than this
//! binary is reported, never guessed at.
//!
//! Formats:
//! - 1: runtime record without `options` and `berth`.
//! - 2: the runtime record names the berth version that ran the monitor and
//!   the daemon options the container started with (`options`), so a later
//!   daemon can say which of them changed. Format 1 records load with those
//!   empty, which means "unknown, nothing to compare".
//! - 3: the daemon writes the runtime record itself, with `init-pid` 0,
//!   before it lets a new monitor start the container (so no daemon can
//!   die with a run nobody knows of); the monitor rewrites it once the
//!   command was exec'd. state.json names the run a stop of berth's own
//!   was for (`stopped-run`, `after-stop`), so that end is never taken for
//!   a failure by a later daemon.
//!
//! Run-dir records only need to outlive a process (run-dir is gone at
//! reboot), so they are renamed into place without fsync; state-dir
//! records are made durable.
//!
//! Fields added within a format, defaulted when missing: the exit record's
//! `oom-killed`, `cause` and `health-restarts`. An exit record may be followed by padding
//! (spaces and a newline): the monitor reserves the record's blocks when
//! the run starts and overwrites that reservation in place at its end (see
//! [`Reserved`]), so a full file system cannot cost the exit code. The
//! reservation itself holds a placeholder (`"reserved": true`) that is
//! never a record of how a run ended.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nanoserde::{DeJson, SerJson};

/// The record format this binary writes.
pub const FORMAT_VERSION: u32 = 3;
/// Runtime records are small; anything larger is not one of ours.
const MAX_RECORD: u64 = 64 * 1024;

/// run-dir/NAME/runtime.json: who runs the container now. Written by the
/// daemon when it has started a monitor (`init-pid` 0: not exec'd yet) and
/// by the monitor once the container's command was exec'd.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct RuntimeRecord {
    pub version: u32,
    pub name: String,
    #[nserde(rename = "run-id")]
    pub run_id: String,
    #[nserde(rename = "boot-id")]
    pub boot_id: String,
    #[nserde(rename = "monitor-pid")]
    pub monitor_pid: i32,
    #[nserde(rename = "monitor-start")]
    pub monitor_start: u64,
    #[nserde(rename = "init-pid")]
    pub init_pid: i32,
    #[nserde(rename = "init-start")]
    pub init_start: u64,
    /// Nanoseconds since the epoch.
    #[nserde(rename = "started-at")]
    pub started_at: u64,
    /// The definition's hash, hex.
    #[nserde(rename = "config-hash")]
    pub config_hash: String,
    /// The daemon options the container was started with.
    #[nserde(default)]
    pub options: StartOptions,
    /// The berth version that ran the monitor.
    #[nserde(default)]
    pub berth: String,
    /// Times the monitor started the init again in this run for failing
    /// its health checks (`on-unhealthy: "restart"`).
    #[nserde(default, rename = "health-restarts")]
    pub health_restarts: u32,
    /// Its monitor takes SIGUSR1 as notice of a stop berth asked for
    /// (monitors of older versions die of it: they never get one).
    #[nserde(default, rename = "stop-notice")]
    pub stop_notice: bool,
}

/// Daemon options that shape a running container; a daemon that finds them
/// changed says so and applies the new values at the next start.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct StartOptions {
    #[nserde(rename = "log-dir")]
    pub log_dir: String,
    #[nserde(rename = "log-max-size")]
    pub log_max_size: u64,
    #[nserde(rename = "log-max-files")]
    pub log_max_files: u32,
    #[nserde(rename = "cgroup-parent")]
    pub cgroup_parent: String,
    /// The cgroup directories made for the container.
    #[nserde(default)]
    pub cgroups: Vec<String>,
}

/// state-dir/NAME/exit.json: how the last run ended, written by the monitor.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct ExitRecord {
    pub version: u32,
    #[nserde(rename = "run-id")]
    pub run_id: String,
    /// The code, or 128+N when killed by signal N; absent if it never ran.
    #[nserde(rename = "exit-code")]
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    #[nserde(rename = "started-at")]
    pub started_at: u64,
    #[nserde(rename = "finished-at")]
    pub finished_at: u64,
    /// Why it could not start, if it could not.
    pub error: Option<String>,
    /// Bytes of output the log could not take (disk full): counted, so
    /// that what was lost is known.
    #[nserde(default, rename = "log-dropped")]
    pub log_dropped: u64,
    /// The kernel killed a process of the container for want of memory
    /// during the run.
    #[nserde(default, rename = "oom-killed")]
    pub oom_killed: bool,
    /// What the container's limits did to the run, if anything: "out of
    /// memory (memory limit 64 MiB)", "pids limit 32 reached (3 forks
    /// refused)".
    #[nserde(default)]
    pub cause: Option<String>,
    /// Only in the placeholder of a reservation: not how a run ended.
    #[nserde(default)]
    pub reserved: bool,
    /// Times its monitor started the init again for failing its health
    /// checks during the run (`on-unhealthy: "restart"`).
    #[nserde(default, rename = "health-restarts")]
    pub health_restarts: u32,
}

/// run-dir/NAME/log-status.json: what the monitor of the current run has
/// counted so far, rewritten at most once a second while it changes.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct LogStatus {
    pub version: u32,
    #[nserde(rename = "run-id")]
    pub run_id: String,
    /// Bytes of output the log could not take so far.
    #[nserde(rename = "log-dropped")]
    pub log_dropped: u64,
}

/// run-dir/NAME/health.json: the health of the current run, written by
/// its monitor (which runs the checks, with or without a daemon) each time
/// a check ends (its result joins the log) and each time an init starts.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct HealthRecord {
    pub version: u32,
    #[nserde(rename = "run-id")]
    pub run_id: String,
    /// "starting", "healthy" or "unhealthy".
    pub status: String,
    /// Checks failed in a row.
    #[nserde(rename = "failing-streak")]
    pub failing_streak: u32,
    /// The last few checks, oldest first.
    pub log: Vec<HealthResult>,
    /// Runs the monitor restarted for being unhealthy (`on-unhealthy`).
    #[nserde(default)]
    pub restarts: u32,
}

/// One health check's outcome.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct HealthResult {
    /// Nanoseconds since the epoch.
    pub start: u64,
    pub end: u64,
    /// Its exit code (128+N for signal N); null when it could not run or
    /// timed out.
    #[nserde(rename = "exit-code")]
    pub exit_code: Option<i32>,
    /// The start of its output, or why it failed.
    pub output: String,
}

/// state-dir/NAME/state.json: decisions that outlive the daemon, written
/// by the daemon only when they change.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct ContainerState {
    pub version: u32,
    #[nserde(rename = "restart-count")]
    pub restart_count: u32,
    #[nserde(rename = "stopped-by-user")]
    pub stopped_by_user: bool,
    /// The run berth last began to stop (user stop, reload, restart): its
    /// end is berth's doing, whenever a daemon learns of it.
    #[nserde(default, rename = "stopped-run")]
    pub stopped_run: String,
    /// What was to follow that stop: "" (nothing), "start" or "autostart".
    #[nserde(default, rename = "after-stop")]
    pub after_stop: String,
}

/// What reading a record found.
#[derive(Debug, PartialEq)]
pub enum Loaded<T> {
    Missing,
    Ok(T),
    /// Written by a newer berth, in format `version`.
    Newer(u32),
    /// Torn, truncated or not ours: the reason.
    Corrupt(String),
}

/// Reads and parses a record and checks its format version: the text
/// passes the strict parser (see `json::decode`) once, then nanoserde;
/// records of the usual size are read into a buffer on the stack (the
/// daemon loads several per container at start-up and for each `ps`).
pub fn load<T: Record>(path: &Path) -> Loaded<T> {
    let mut buf = [0u8; SMALL_RECORD];
    let owned;
    let text = match read_small(path, &mut buf) {
        Ok(Some(n)) => match std::str::from_utf8(&buf[..n]) {
            Ok(t) => t,
            Err(_) => return Loaded::Corrupt("record is not UTF-8".to_string()),
        },
        Ok(None) => match read_capped(path) {
            Ok(t) => {
                owned = t;
                &owned
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
            Err(e) => return Loaded::Corrupt(e.to_string()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Corrupt(e.to_string()),
    };
    if let Err(e) = crate::json::check(text) {
        return Loaded::Corrupt(format!("unreadable record: {e}"));
    }
    // One pass of nanoserde in the usual case: the record, whose version
    // is then checked; only a record this berth cannot read is read again
    // for its version alone (a newer format, or a torn or foreign one).
    let read = T::deserialize_json(text);
    let version = match &read {
        Ok(r) => r.version(),
        Err(_) => match VersionOnly::deserialize_json(text) {
            Ok(v) => v.version,
            Err(e) => return Loaded::Corrupt(format!("unreadable record: {e}")),
        },
    };
    if version > FORMAT_VERSION {
        return Loaded::Newer(version);
    }
    if version == 0 {
        return Loaded::Corrupt("record has no format version".to_string());
    }
    match read {
        Ok(r) => Loaded::Ok(r),
        Err(e) => Loaded::Corrupt(format!("unreadable record: {e}")),
    }
}

#[derive(DeJson)]
struct VersionOnly {
    version: u32,
}

/// A record [`load`] reads: it carries its format version.
pub trait Record: DeJson {
    fn version(&self) -> u32;
}

macro_rules! records {
    ($($t:ty),*) => {
        $(impl Record for $t {
            fn version(&self) -> u32 {
                self.version
            }
        })*
    };
}

records!(
    RuntimeRecord,
    ExitRecord,
    LogStatus,
    HealthRecord,
    ContainerState
);

/// Records up to this size are read on the stack (runtime records are
/// under 1 KiB).
const SMALL_RECORD: usize = 4096;

/// Reads the record at `path` into `buf` as [`read_capped`] would (no
/// symlink, no FIFO, a regular file only): `Some(length)`, or `None` when
/// it does not fit (read it with [`read_capped`] then).
fn read_small(path: &Path, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let (mut file, len) = open_record(path)?;
    if len >= buf.len() as u64 {
        return Ok(None);
    }
    let mut n = 0;
    // Until the end (a read of 0) or a full buffer: a file that fills it
    // is one for `read_capped`.
    while n < buf.len() {
        match io::Read::read(&mut file, &mut buf[n..]) {
            Ok(0) => return Ok(Some(n)),
            Ok(got) => n += got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Opens a record for reading: never through a symlink, never blocking
/// (a FIFO put in its place), only a regular file.
/// Also returns its size.
fn open_record(path: &Path) -> io::Result<(fs::File, u64)> {
    let file = crate::sys::fd::open_read(path, libc::O_NOFOLLOW | libc::O_NONBLOCK).map_err(
        |e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("record is a symlink"),
            _ => e,
        },
    )?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("record is not a regular file"));
    }
    Ok((file, meta.len()))
}

/// Reads a record: never through a symlink, never blocking (a FIFO put in
/// its place), only a regular file, at most `MAX_RECORD` bytes.
pub fn read_capped(path: &Path) -> io::Result<String> {
    let (file, len) = open_record(path)?;
    // Room for the whole file and the one byte that shows its end: two
    // reads, not a doubling series of them.
    let mut bytes = Vec::with_capacity(len.min(MAX_RECORD) as usize + 1);
    io::Read::take(file, MAX_RECORD + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(io::Error::other(format!(
            "record is larger than {MAX_RECORD} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|_| io::Error::other("record is not UTF-8"))
}

/// Writes `data` to `path` atomically: temp file in the same directory,
/// fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, true)
}

/// Temp file, rename over `path`; with `durable`, fsync of both the file
/// and the directory.
fn replace(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("record");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(data)?;
            if durable { f.sync_all() } else { Ok(()) }
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if durable {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Removes the temp files a writer killed mid-write left in `dir`
/// (`.NAME.tmp.PID`, PID no longer alive: a live monitor may be writing
/// its own); returns what it removed.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let writer = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp."))
            .map(|(_, pid)| pid)
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        let Some(pid) = writer else {
            continue;
        };
        let gone = !Path::new("/proc").join(pid).exists();
        if gone && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// The bytes every reservation is padded with; JSON allows them after a
/// value.
const PAD: u8 = b' ';

/// A record's blocks, allocated ahead of the write: a file beside the
/// record (`.NAME.reserved`), already `size` bytes long. Writing the record
/// then overwrites those bytes in place and renames the file over the
/// record, which needs no free block: the record survives a file system
/// that filled up meanwhile.
#[derive(Debug)]
pub struct Reserved {
    file: fs::File,
    tmp: PathBuf,
    path: PathBuf,
    size: usize,
}

impl Reserved {
    /// Creates (or truncates) the reservation for `path`: `placeholder`
    /// padded to `size` bytes. Not fsynced: until the record is committed
    /// the file is only room, and nothing reads it.
    pub fn create(path: &Path, placeholder: &[u8], size: usize) -> io::Result<Reserved> {
        let tmp = reserved_path(path);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        let written = padded(placeholder, size).and_then(|data| file.write_all(&data));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(Reserved {
            file,
            tmp,
            path: path.to_path_buf(),
            size,
        })
    }

    /// Writes `data` over the reservation (padded to its size), fsyncs it
    /// and renames it over the record: the record is in place for every
    /// reader and its data is durable; the new name is durable once the
    /// returned [`Renamed::sync`] ran (until then a power cut may leave the
    /// old record, never a torn one). Data longer than the reservation is
    /// refused (the reservation stays for a shorter try).
    pub fn commit_visible(&self, data: &[u8]) -> io::Result<Renamed> {
        use std::os::unix::fs::FileExt;
        let data = padded(data, self.size)?;
        self.file.write_all_at(&data, 0)?;
        self.file.sync_all()?;
        fs::rename(&self.tmp, &self.path)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        Ok(Renamed {
            dir: dir.to_path_buf(),
        })
    }
}

/// A record renamed into place whose directory is not synced yet.
#[derive(Debug)]
#[must_use = "the rename is only durable once synced"]
pub struct Renamed {
    dir: PathBuf,
}

impl Renamed {
    /// Fsyncs the record's directory: the rename survives a power cut.
    pub fn sync(self) -> io::Result<()> {
        fs::File::open(&self.dir)?.sync_all()
    }
}

/// `.NAME.reserved` beside `path`.
fn reserved_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("record");
    path.with_file_name(format!(".{name}.reserved"))
}

/// `data` followed by spaces and a newline, `size` bytes in all.
fn padded(data: &[u8], size: usize) -> io::Result<Vec<u8>> {
    if data.len() + 1 > size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "record of {} bytes does not fit its reservation of {size}",
                data.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(data);
    out.resize(size - 1, PAD);
    out.push(b'\n');
    Ok(out)
}

/// Creates a record directory (and its parents) and makes the new entry
/// durable in its parent, so a record written into it survives a power
/// cut together with the directory.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    match dir.parent() {
        Some(parent) => fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Serialises and writes a record atomically and durably.
pub fn save<T: SerJson>(path: &Path, record: &T) -> io::Result<()> {
    let mut text = record.serialize_json();
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Serialises and writes a run-dir record atomically; it has to outlive
/// its writer, not a power cut.
pub fn save_unsynced<T: SerJson>(path: &Path, record: &T) -> io::Result<()> {
    let mut text = record.serialize_json();
    text.push('\n');
    replace(path, text.as_bytes(), false)
}

/// Replaces `path` with `data` (temp + rename) without syncing: for what
/// lives in run-dir (tmpfs) and may be lost with the host.
pub fn write_unsynced(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, false)
}

/// Where a container's records live.
#[derive(Debug, Clone)]
pub struct Paths {
    pub run: PathBuf,
    pub state: PathBuf,
}

/// A container's persistent writable layer (`writable: "persistent"`):
/// beside, not in, its state directory, so that forgetting a container
/// whose definition is gone keeps it until `berth rm`.
pub fn writable_layer(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("writable").join(name)
}

impl Paths {
    pub fn new(run_dir: &Path, state_dir: &Path, name: &str) -> Paths {
        Paths {
            run: run_dir.join("containers").join(name),
            state: state_dir.join("containers").join(name),
        }
    }
    pub fn runtime(&self) -> PathBuf {
        self.run.join("runtime.json")
    }
    /// The runtime record of a run whose end the daemon has handled:
    /// `runtime.json` renamed, so this boot's history stays but is never
    /// mistaken for a run still to account for.
    pub fn last_run(&self) -> PathBuf {
        self.run.join("last-run.json")
    }
    pub fn exit(&self) -> PathBuf {
        self.state.join("exit.json")
    }
    /// What the monitor of the current run counts (dropped log bytes).
    pub fn log_status(&self) -> PathBuf {
        self.run.join("log-status.json")
    }
    pub fn state(&self) -> PathBuf {
        self.state.join("state.json")
    }
    /// The health of the current run (see [`HealthRecord`]).
    pub fn health(&self) -> PathBuf {
        self.run.join("health.json")
    }
}

/// Names of the containers that have a directory in `dir` (run-dir or
/// state-dir `containers/`), sorted.
pub fn list_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_atomic_replace() {
        let d = tmpdir("rt");
        let p = d.join("exit.json");
        let mut r = ExitRecord {
            version: FORMAT_VERSION,
            run_id: "a1".into(),
            exit_code: Some(42),
            ..Default::default()
        };
        save(&p, &r).unwrap();
        assert_eq!(load::<ExitRecord>(&p), Loaded::Ok(r.clone()));
        r.exit_code = Some(143);
        save(&p, &r).unwrap();
        assert_eq!(load::<ExitRecord>(&p), Loaded::Ok(r));
        // No temp file is left behind.
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn format_1_runtime_record_loads_with_empty_options() {
        let d = tmpdir("v1");
        let p = d.join("runtime.json");
        fs::write(&p, include_str!("../tests/fixtures/runtime-v1.json")).unwrap();
        let Loaded::Ok(r) = load::<RuntimeRecord>(&p) else {
            panic!("format 1 must load")
        };
        assert_eq!(
            (r.version, r.monitor_pid, r.init_pid, r.init_start),
            (1, 4242, 4243, 123_460)
        );
        assert_eq!(r.options, StartOptions::default());
        assert_eq!(r.berth, "");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_reservation_becomes_the_record_without_new_blocks() {
        let d = tmpdir("reserve");
        let p = d.join("exit.json");
        let old = ExitRecord {
            version: FORMAT_VERSION,
            run_id: "old".into(),
            exit_code: Some(1),
            ..Default::default()
        };
        save(&p, &old).unwrap();
        let placeholder = ExitRecord {
            version: FORMAT_VERSION,
            run_id: "new".into(),
            reserved: true,
            ..Default::default()
        };
        let r = Reserved::create(&p, placeholder.serialize_json().as_bytes(), 4096).unwrap();
        let tmp = d.join(".exit.json.reserved");
        assert_eq!(fs::metadata(&tmp).unwrap().len(), 4096);
        // Until the commit, the record is the previous run's.
        assert_eq!(load::<ExitRecord>(&p), Loaded::Ok(old));
        assert_eq!(
            load::<ExitRecord>(&tmp),
            Loaded::Ok(placeholder),
            "a placeholder parses, padding and all, and says it is one"
        );
        let big = vec![b'x'; 5000];
        assert!(r.commit_visible(&big).is_err());
        let new = ExitRecord {
            version: FORMAT_VERSION,
            run_id: "new".into(),
            exit_code: Some(42),
            oom_killed: true,
            cause: Some("out of memory (memory limit 8 MiB)".into()),
            ..Default::default()
        };
        r.commit_visible(new.serialize_json().as_bytes())
            .unwrap()
            .sync()
            .unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.len(), 4096);
        assert!(text.ends_with("  \n"), "padded: {text:?}");
        assert_eq!(load::<ExitRecord>(&p), Loaded::Ok(new));
        assert!(!tmp.exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_exit_record_without_the_later_fields_loads() {
        let d = tmpdir("exit-old");
        let p = d.join("exit.json");
        fs::write(
            &p,
            r#"{"version":2,"run-id":"a","exit-code":3,"signal":null,"started-at":1,"finished-at":2,"error":null}"#,
        )
        .unwrap();
        let Loaded::Ok(r) = load::<ExitRecord>(&p) else {
            panic!("must load")
        };
        assert_eq!(r.exit_code, Some(3));
        assert_eq!((r.log_dropped, r.oom_killed, r.reserved), (0, false, false));
        assert_eq!(r.cause, None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn torn_newer_and_missing() {
        let d = tmpdir("bad");
        let p = d.join("runtime.json");
        assert_eq!(load::<RuntimeRecord>(&p), Loaded::Missing);
        fs::write(&p, "{\"version\":1,\"name\":\"a\",\"run-id\":").unwrap();
        assert!(matches!(load::<RuntimeRecord>(&p), Loaded::Corrupt(_)));
        fs::write(&p, "{\"version\":99,\"whatever\":[1,2]}").unwrap();
        assert_eq!(load::<RuntimeRecord>(&p), Loaded::Newer(99));
        fs::write(&p, "{}").unwrap();
        assert!(matches!(load::<RuntimeRecord>(&p), Loaded::Corrupt(_)));
        fs::remove_dir_all(&d).unwrap();
    }

    /// A record read on the stack and one too large for it load alike;
    /// what the strict parser refuses, a version that is no format
    /// number, a symlink, a FIFO and a file over the cap are refused on
    /// both paths.
    #[test]
    fn small_and_large_records_load_alike_and_bad_ones_are_refused() {
        let d = tmpdir("sizes");
        let p = d.join("runtime.json");
        let small = ExitRecord {
            version: FORMAT_VERSION,
            run_id: "r1".into(),
            exit_code: Some(3),
            ..ExitRecord::default()
        };
        write_atomic(&p, small.serialize_json().as_bytes()).unwrap();
        assert!(fs::metadata(&p).unwrap().len() < SMALL_RECORD as u64);
        assert_eq!(load::<ExitRecord>(&p), Loaded::Ok(small.clone()));
        // Past the stack buffer (and exactly at its size): read whole.
        for len in [SMALL_RECORD + 500, SMALL_RECORD] {
            let with_error = |error: String| ExitRecord {
                error: Some(error),
                ..small.clone()
            };
            let base = with_error(String::new()).serialize_json().len();
            let large = with_error("x".repeat(len - base));
            let text = large.serialize_json();
            fs::write(&p, &text).unwrap();
            assert_eq!(text.len(), len);
            assert_eq!(load::<ExitRecord>(&p), Loaded::Ok(large));
        }
        let refused = |text: &str| {
            fs::write(&p, text).unwrap();
            match load::<ExitRecord>(&p) {
                Loaded::Corrupt(why) => why,
                other => panic!("{text}: {other:?}"),
            }
        };
        // nanoserde would take these; the strict parser does not.
        assert!(
            refused("{\"version\":1,\"run-id\":\"a\",\"run-id\":\"b\"}").contains("unreadable")
        );
        assert!(refused("{\"version\":01}").contains("unreadable"));
        assert!(refused("{\"version\":1} // note").contains("unreadable"));
        for text in [
            "{\"version\":\"1\"}",
            "{\"version\":-1}",
            "{\"version\":4294967296}",
            "{\"run-id\":\"a\"}",
            "[1]",
        ] {
            assert!(refused(text).contains("unreadable"), "{text}");
        }
        assert_eq!(refused("{\"version\":0}"), "record has no format version");
        let mut big = format!("{{\"version\":1,\"error\":\"{}", "y".repeat(70 * 1024));
        big.push_str("\"}");
        assert!(refused(&big).contains("larger than"));
        fs::write(&p, b"{\"version\":1,\"error\":\"\xff\"}").unwrap();
        assert!(matches!(load::<ExitRecord>(&p), Loaded::Corrupt(w) if w.contains("UTF-8")));
        // Never through a symlink, never from a FIFO.
        fs::remove_file(&p).unwrap();
        let target = d.join("elsewhere.json");
        write_atomic(&target, small.serialize_json().as_bytes()).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(matches!(load::<ExitRecord>(&p), Loaded::Corrupt(w) if w.contains("symlink")));
        fs::remove_file(&p).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(matches!(load::<ExitRecord>(&p), Loaded::Corrupt(w) if w.contains("regular")));
        fs::remove_dir_all(&d).unwrap();
    }
}
