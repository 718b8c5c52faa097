//! `berth stats`: CPU, memory, pids and log bytes of running containers.
//! The client asks the daemon which containers run and where their
//! cgroups are (`cgroups` in inspect), then reads the cgroup files itself:
//! cgroup v1 (`cpuacct.usage`, `memory.usage_in_bytes`,
//! `memory.limit_in_bytes`), cgroup2 (`cpu.stat` usage_usec,
//! `memory.current`, `memory.max`) and the hybrid layout (v1 controllers
//! next to a cgroup2 hierarchy: each number is taken from the first of the
//! container's directories that has it). Memory and pids are those of the
//! container's processes (on cgroup2, its init's leaf, not the monitor's;
//! on cgroup v1 the monitor joins only the cpu hierarchy). CPU % is the
//! CPU time used between two readings over the wall time between them
//! (100% = one CPU), the monitor's included (see [`read`]).

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nanoserde::SerJson;

use crate::api::{Info, Request, Verb};
use crate::cli::{Failure, call, checked};
use crate::container::cgroup::CONTAINER_LEAF;
use crate::container::logs;
use crate::host;

/// Between two frames of the streamed table.
const INTERVAL: Duration = Duration::from_secs(1);
/// Between the two readings of `--no-stream`.
const NO_STREAM_INTERVAL: Duration = Duration::from_millis(500);
/// cgroup v1 writes "no limit" as the largest page-aligned counter; any
/// limit this large is none.
const V1_UNLIMITED: u64 = 1 << 62;

/// A limit read from a cgroup file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Of(u64),
}

impl Limit {
    fn parse(text: &str) -> Option<Limit> {
        let t = text.trim();
        if t == "max" {
            return Some(Limit::Unlimited);
        }
        let n: u64 = t.parse().ok()?;
        Some(if n >= V1_UNLIMITED {
            Limit::Unlimited
        } else {
            Limit::Of(n)
        })
    }

    fn value(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Of(n) => Some(n),
        }
    }
}

/// One reading of a container's cgroups; `None` where no directory has
/// the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// CPU time used so far, nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<u64>,
    pub memory_limit: Option<Limit>,
    pub pids: Option<u64>,
    pub pids_limit: Option<Limit>,
}

/// The first of `dirs` whose `file` parses with `parse`.
fn first<T>(dirs: &[PathBuf], file: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
    dirs.iter().find_map(|d| {
        fs::read_to_string(d.join(file))
            .ok()
            .and_then(|t| parse(&t))
    })
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in "key value" lines.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Reads the numbers of a container's cgroup directories. Memory and pids
/// are the container's processes' own: on cgroup2 the container's
/// directory holds the monitor's leaf beside the init's, so they come
/// from the init's leaf when it has the files (its limits are there too),
/// else from the directory. CPU time is the whole directory's, the
/// monitor's included where it has a leaf there (cgroup2; v1 `cpuacct`
/// with `cpu`): its draining of the logs counts against the container's
/// CPU limit, set above both leaves.
pub fn read(dirs: &[PathBuf]) -> Reading {
    let own: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| [d.join(CONTAINER_LEAF), d.clone()])
        .collect();
    Reading {
        cpu_ns: first(dirs, "cpuacct.usage", number)
            .or_else(|| first(dirs, "cpu.stat", |t| keyed(t, "usage_usec")).map(|us| us * 1000)),
        memory: first(&own, "memory.usage_in_bytes", number)
            .or_else(|| first(&own, "memory.current", number)),
        memory_limit: first(&own, "memory.limit_in_bytes", Limit::parse)
            .or_else(|| first(&own, "memory.max", Limit::parse)),
        pids: first(&own, "pids.current", number),
        pids_limit: first(&own, "pids.max", Limit::parse),
    }
}

/// CPU % between two readings `wall` apart.
pub fn cpu_percent(before: Option<u64>, after: Option<u64>, wall: Duration) -> Option<f64> {
    let (b, a) = (before?, after?);
    let wall = wall.as_nanos() as f64;
    (wall > 0.0).then(|| a.saturating_sub(b) as f64 * 100.0 / wall)
}

/// Bytes in a container's log files.
pub fn log_bytes(dir: &Path) -> u64 {
    logs::files_oldest_first(dir)
        .iter()
        .filter_map(|f| fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// One container in one frame.
#[derive(Debug, Clone, SerJson)]
#[nserde(serialize_none_as_null)]
pub struct Row {
    pub name: String,
    pub time: String,
    #[nserde(rename = "cpu-percent")]
    pub cpu_percent: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
    /// Bytes; null: no limit (or not running).
    #[nserde(rename = "memory-limit")]
    pub memory_limit: Option<u64>,
    pub pids: Option<u64>,
    /// null: no limit (or not running).
    #[nserde(rename = "pids-limit")]
    pub pids_limit: Option<u64>,
    #[nserde(rename = "log-bytes")]
    pub log_bytes: u64,
    #[nserde(skip)]
    running: bool,
}

/// "1.5MiB" and the like.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.2}{}", UNITS[u])
    }
}

/// The table of one frame.
pub fn table(rows: &[Row]) -> String {
    let dash = || "-".to_string();
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let limit = match (r.running, r.memory_limit) {
                (false, _) => dash(),
                (true, Some(l)) => bytes(l),
                (true, None) => "unlimited".to_string(),
            };
            let mem = r
                .memory
                .map_or_else(dash, |m| format!("{} / {limit}", bytes(m)));
            let mem_pct = match (r.memory, r.memory_limit) {
                (Some(m), Some(l)) if l > 0 => format!("{:.2}%", m as f64 * 100.0 / l as f64),
                _ => dash(),
            };
            let pids = match (r.pids, r.pids_limit, r.running) {
                (Some(p), Some(l), _) => format!("{p} / {l}"),
                (Some(p), None, true) => format!("{p} / unlimited"),
                (Some(p), None, false) => p.to_string(),
                (None, _, _) => dash(),
            };
            [
                r.name.clone(),
                r.cpu_percent.map_or_else(dash, |c| format!("{c:.2}%")),
                mem,
                mem_pct,
                pids,
                bytes(r.log_bytes),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "PIDS",
        "LOGS",
    ]
    .map(String::from);
    let mut width = head.clone().map(|h| h.len());
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&head).chain(&cells) {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(width).enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The containers to show: the named ones (an error each for those the
/// daemon does not know), or all that run.
fn targets(socket: &Path, names: &[String], failed: &mut bool) -> Result<Vec<Info>, Failure> {
    if names.is_empty() {
        let resp = checked(call(
            socket,
            &Request {
                verb: Verb::Ps.as_str().into(),
                ..Request::default()
            },
        )?)?;
        return Ok(resp
            .containers
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.status == "running")
            .collect());
    }
    let mut out = Vec::new();
    for name in names {
        let req = Request {
            verb: Verb::Inspect.as_str().into(),
            name: name.clone(),
            ..Request::default()
        };
        match call(socket, &req).and_then(checked) {
            Ok(resp) => out.extend(resp.container),
            Err(Failure(msg, _)) if msg.starts_with(crate::cli::CANNOT_CONNECT) => {
                return Err(Failure(msg, 1));
            }
            Err(Failure(msg, _)) => {
                eprintln!("berth: {msg}");
                *failed = true;
            }
        }
    }
    Ok(out)
}

/// `berth stats [NAME...] [--no-stream] [--json]`.
pub fn run(socket: &Path, names: &[String], stream: bool, json: bool) -> Result<i32, Failure> {
    let mut failed = false;
    let mut list = targets(socket, names, &mut failed)?;
    if !names.is_empty() && list.is_empty() {
        return Ok(1);
    }
    let tty = std::io::stdout().is_terminal();
    let mut before: Vec<(String, Option<u64>)> = list
        .iter()
        .map(|c| (c.name.clone(), read(&dirs(c)).cpu_ns))
        .collect();
    let mut at = Instant::now();
    loop {
        std::thread::sleep(if stream { INTERVAL } else { NO_STREAM_INTERVAL });
        let now = Instant::now();
        let wall = now - at;
        let time = host::rfc3339(host::now_ns());
        let rows: Vec<Row> = list
            .iter()
            .map(|c| {
                let r = read(&dirs(c));
                let prev = before.iter().find(|(n, _)| *n == c.name).and_then(|p| p.1);
                Row {
                    name: c.name.clone(),
                    time: time.clone(),
                    cpu_percent: cpu_percent(prev, r.cpu_ns, wall),
                    memory: r.memory,
                    memory_limit: r.memory_limit.and_then(Limit::value),
                    pids: r.pids,
                    pids_limit: r.pids_limit.and_then(Limit::value),
                    log_bytes: log_bytes(Path::new(&c.log_dir)),
                    running: !c.cgroups.is_empty(),
                }
            })
            .collect();
        let mut text = String::new();
        if json {
            for r in &rows {
                text.push_str(&r.serialize_json());
                text.push('\n');
            }
        } else {
            if stream && tty {
                text.push_str("\x1b[2J\x1b[H");
            }
            text.push_str(&table(&rows));
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            crate::cli::closed_stdout(&e); // nobody reads any more: ends here
            return Err(Failure(format!("write to stdout: {e}"), 1));
        }
        drop(out);
        if !stream {
            return Ok(i32::from(failed));
        }
        before = list
            .iter()
            .map(|c| (c.name.clone(), read(&dirs(c)).cpu_ns))
            .collect();
        at = Instant::now();
        // Containers come and go: ask again (keep the last list if the
        // daemon does not answer now).
        let mut ignored = false;
        if let Ok(l) = targets(socket, names, &mut ignored) {
            list = l;
        }
    }
}

fn dirs(c: &Info) -> Vec<PathBuf> {
    c.cgroups.iter().map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn write(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
        dir.to_path_buf()
    }

    #[test]
    fn reads_cgroup2() {
        let t = TempDir::new("stats-v2");
        let d = write(
            &t.path().join("unified/berth/app"),
            &[
                (
                    "cpu.stat",
                    "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
                ),
                ("memory.current", "1048576\n"),
                ("memory.max", "67108864\n"),
                ("pids.current", "3\n"),
                ("pids.max", "max\n"),
            ],
        );
        assert_eq!(
            read(std::slice::from_ref(&d)),
            Reading {
                cpu_ns: Some(2_500_000),
                memory: Some(1_048_576),
                memory_limit: Some(Limit::Of(67_108_864)),
                pids: Some(3),
                pids_limit: Some(Limit::Unlimited),
            }
        );
        fs::write(d.join("memory.max"), "max\n").unwrap();
        fs::write(d.join("pids.max"), "128\n").unwrap();
        let r = read(std::slice::from_ref(&d));
        assert_eq!(r.memory_limit, Some(Limit::Unlimited));
        assert_eq!(r.pids_limit, Some(Limit::Of(128)));

        // The init's leaf beside the monitor's: memory and pids (and their
        // limits) are the leaf's, CPU the whole directory's.
        write(
            &d.join("monitor"),
            &[("memory.current", "4096\n"), ("pids.current", "1\n")],
        );
        write(
            &d.join("container"),
            &[
                ("cpu.stat", "usage_usec 2000\n"),
                ("memory.current", "1044480\n"),
                ("memory.max", "67108864\n"),
                ("pids.current", "2\n"),
                ("pids.max", "64\n"),
            ],
        );
        assert_eq!(
            read(std::slice::from_ref(&d)),
            Reading {
                cpu_ns: Some(2_500_000),
                memory: Some(1_044_480),
                memory_limit: Some(Limit::Of(67_108_864)),
                pids: Some(2),
                pids_limit: Some(Limit::Of(64)),
            }
        );
        // A leaf without the counters (no controller enabled below the
        // directory): the directory's numbers.
        for f in ["memory.current", "memory.max", "pids.current", "pids.max"] {
            fs::remove_file(d.join("container").join(f)).unwrap();
        }
        let r = read(&[d]);
        assert_eq!((r.memory, r.pids), (Some(1_048_576), Some(3)));
    }

    #[test]
    fn reads_v1_and_hybrid() {
        let t = TempDir::new("stats-v1");
        let mem = write(
            &t.path().join("memory/berth/app"),
            &[
                ("memory.usage_in_bytes", "4096\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
            ],
        );
        let pids = write(
            &t.path().join("pids/berth/app"),
            &[("pids.current", "2\n"), ("pids.max", "64\n")],
        );
        // A v1 cpu controller's cpu.stat has no usage: the cgroup2 one
        // (hybrid) or cpuacct (v1 alone) gives it.
        let cpu = write(
            &t.path().join("cpu/berth/app"),
            &[(
                "cpu.stat",
                "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
            )],
        );
        let v2 = write(
            &t.path().join("unified/berth/app"),
            &[("cpu.stat", "usage_usec 7\n"), ("cgroup.procs", "")],
        );
        let hybrid = vec![v2.clone(), mem.clone(), pids.clone(), cpu.clone()];
        assert_eq!(
            read(&hybrid),
            Reading {
                cpu_ns: Some(7000),
                memory: Some(4096),
                memory_limit: Some(Limit::Unlimited),
                pids: Some(2),
                pids_limit: Some(Limit::Of(64)),
            }
        );
        let acct = write(
            &t.path().join("cpu,cpuacct/berth/app"),
            &[("cpuacct.usage", "123456789\n")],
        );
        let v1 = vec![mem, pids, cpu, acct];
        assert_eq!(read(&v1).cpu_ns, Some(123_456_789));
        // Gone (the container stopped between the answer and the read).
        assert_eq!(read(&[t.path().join("nowhere")]), Reading::default());
    }

    #[test]
    fn cpu_and_formats() {
        let s = Duration::from_secs(1);
        assert_eq!(cpu_percent(Some(0), Some(500_000_000), s), Some(50.0));
        assert_eq!(cpu_percent(None, Some(5), s), None);
        assert_eq!(cpu_percent(Some(9), Some(5), s), Some(0.0));
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.50KiB");
        assert_eq!(bytes(64 << 20), "64.00MiB");
        let row = |name: &str, running: bool| Row {
            name: name.into(),
            time: "t".into(),
            cpu_percent: running.then_some(1.5),
            memory: running.then_some(1 << 20),
            memory_limit: None,
            pids: running.then_some(2),
            pids_limit: Some(10).filter(|_| running),
            log_bytes: 10,
            running,
        };
        let t = table(&[row("a-long-container-name", true), row("b", false)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME                    CPU %   MEM USAGE / LIMIT     MEM %   PIDS     LOGS"
        );
        assert_eq!(
            lines[1],
            "a-long-container-name   1.50%   1.00MiB / unlimited   -       2 / 10   10B"
        );
        assert_eq!(
            lines[2],
            "b                       -       -                     -       -        10B"
        );
        let j = row("a", true).serialize_json();
        assert_eq!(
            j,
            r#"{"name":"a","time":"t","cpu-percent":1.5,"memory":1048576,"memory-limit":null,"pids":2,"pids-limit":10,"log-bytes":10}"#
        );
    }
}
