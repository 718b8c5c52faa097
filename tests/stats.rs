//! `berth stats` through the real binary, against the cgroup files: a
//! container with a memory limit, a pids limit and a known number of
//! processes shows what the test reads from its cgroups itself; one with
//! no memory limit shows "unlimited"; a busy one uses CPU and an idle one
//! does not; `--json` gives one object per container per sample, the
//! stream a fresh sample every second; an unknown name is an error while
//! the others are shown.

// nanoserde's derived code trips this lint; it is not ours to rewrite.
#![allow(clippy::question_mark)]

mod common;

use std::fs;
use std::path::PathBuf;

use nanoserde::DeJson;

use common::*;

#[derive(DeJson, Debug, Clone, PartialEq)]
struct Stat {
    name: String,
    time: String,
    #[nserde(rename = "cpu-percent")]
    cpu_percent: Option<f64>,
    memory: Option<u64>,
    #[nserde(rename = "memory-limit")]
    memory_limit: Option<u64>,
    pids: Option<u64>,
    #[nserde(rename = "pids-limit")]
    pids_limit: Option<u64>,
    #[nserde(rename = "log-bytes")]
    log_bytes: u64,
}

fn parse_lines(out: &str) -> Vec<Stat> {
    out.lines()
        .map(|l| Stat::deserialize_json(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The container's directory, in the hierarchy below the world's
/// cgroup-parent, that has `file`.
fn cgroup_file(w: &World, name: &str, file: &str) -> PathBuf {
    w.cgroup_roots()
        .iter()
        .map(|root| root.join(name).join(file))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no {file} for {name} below {:?}", w.cgroup_roots()))
}

fn read_u64(path: &PathBuf) -> u64 {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display()))
}

/// Bytes in the container's log files, as the test counts them.
fn log_bytes(w: &World, name: &str) -> u64 {
    fs::read_dir(w.log_dir().join(name))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("container.log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The memory the cgroup uses now (v1 or v2 file, whichever it has).
fn memory_now(w: &World, name: &str) -> u64 {
    let v1 = ["memory.usage_in_bytes", "memory.current"];
    let file = v1
        .iter()
        .find_map(|f| {
            w.cgroup_roots()
                .iter()
                .map(|r| r.join(name).join(f))
                .find(|p| p.exists())
        })
        .expect("a memory usage file");
    read_u64(&file)
}

#[test]
fn stats_match_the_cgroup_files() {
    let w = World::new();
    // Three processes: the two background sleeps and the one sh execs.
    let three = [
        "sh",
        "-c",
        "echo hello; sleep 1000 & sleep 1000 & exec sleep 1000",
    ];
    w.add_container("lim", &three, r#"{"memory": "64m", "pids": 64}"#);
    // No memory limit; the pids limit puts it in the v1 hierarchies,
    // where this hybrid host counts memory (a container without limits
    // is in cgroup2 alone, which counts neither here).
    w.add_container("free", &three, r#"{"pids": 1000}"#);
    w.add_container(
        "spin",
        &["sh", "-c", "while :; do :; done"],
        r#"{"cpus": 0.5}"#,
    );
    w.add_container("rest", POLITE, r#"{"autostart": false}"#);
    let _daemon = w.start_daemon(&[]);
    for name in ["lim", "free", "spin"] {
        w.wait_running(name);
    }
    wait_for(SHORT, "three processes in lim and free", || {
        ["lim", "free"].iter().all(|n| {
            fs::read_to_string(cgroup_file(&w, n, "pids.current")).is_ok_and(|t| t.trim() == "3")
        })
    });
    wait_for(SHORT, "lim's output in its log", || {
        fs::read_to_string(w.container_log("lim")).is_ok_and(|t| t.contains("hello"))
    });

    // What the test reads itself.
    let limit = read_u64(&cgroup_file(&w, "lim", "memory.limit_in_bytes"));
    assert_eq!(limit, 64 << 20);
    let pids_max = fs::read_to_string(cgroup_file(&w, "lim", "pids.max")).unwrap();
    assert_eq!(pids_max.trim(), "64");
    let mem_before = memory_now(&w, "lim");
    let logs = log_bytes(&w, "lim");
    assert!(logs > 0);

    let out = w.berth_ok(&[
        "stats",
        "--no-stream",
        "--json",
        "lim",
        "free",
        "spin",
        "rest",
    ]);
    let mem_after = memory_now(&w, "lim");
    let stats = parse_lines(&out);
    assert_eq!(
        stats.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["lim", "free", "spin", "rest"],
        "{out}"
    );
    let lim = &stats[0];
    assert!(is_rfc3339(&lim.time), "{}", lim.time);
    assert_eq!(lim.memory_limit, Some(limit), "{out}");
    assert_eq!(lim.pids, Some(3), "{out}");
    assert_eq!(lim.pids_limit, Some(64), "{out}");
    assert_eq!(lim.log_bytes, logs, "{out}");
    let mem = lim.memory.expect("lim's memory");
    let (lo, hi) = (mem_before.min(mem_after), mem_before.max(mem_after));
    assert!(
        mem + (1 << 20) >= lo && mem <= hi + (1 << 20),
        "stats says {mem}, the cgroup {mem_before} then {mem_after}"
    );
    let free = &stats[1];
    assert_eq!(free.memory_limit, None, "no limit: {out}");
    assert_eq!(free.pids, Some(3), "{out}");
    assert!(free.memory.is_some(), "{out}");
    // CPU: the busy loop uses up to its half CPU, the sleepers none.
    let spin = stats[2].cpu_percent.expect("spin's CPU");
    assert!(spin > 5.0 && spin < 65.0, "spin at {spin}%: {out}");
    let idle = lim.cpu_percent.expect("lim's CPU");
    assert!(idle < 5.0, "lim at {idle}%: {out}");
    // Not running: nothing to read but its logs.
    let rest = &stats[3];
    assert_eq!(
        (rest.memory, rest.pids, rest.cpu_percent),
        (None, None, None),
        "{out}"
    );

    // The table.
    let table = w.berth_ok(&["stats", "--no-stream", "lim", "free"]);
    let mut lines = table.lines();
    let head = lines.next().unwrap();
    for col in [
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "PIDS",
        "LOGS",
    ] {
        assert!(head.contains(col), "{table}");
    }
    let lim_row = lines.next().unwrap();
    assert!(lim_row.starts_with("lim "), "{table}");
    assert!(lim_row.contains(" / 64.00MiB "), "{table}");
    assert!(lim_row.contains(" 3 / 64 "), "{table}");
    let free_row = lines.next().unwrap();
    assert!(free_row.contains(" / unlimited "), "{table}");

    // No names: the running ones.
    let all = parse_lines(&w.berth_ok(&["stats", "--no-stream", "--json"]));
    let mut names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["free", "lim", "spin"]);

    // An unknown name: an error, the others still shown, exit 1.
    let out = w.berth(&["stats", "--no-stream", "--json", "nope", "lim"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "berth: no such container: nope\n"
    );
    assert_eq!(parse_lines(&String::from_utf8_lossy(&out.stdout)).len(), 1);

    // Streamed: a new sample every second until it is ended.
    let stream = w.spawn_berth(&["stats", "--json", "lim"]);
    let path = stream.stdout_path.clone();
    wait_for(SHORT, "three samples", || {
        fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= 3)
    });
    drop(stream);
    let samples = parse_lines(&fs::read_to_string(&path).unwrap());
    assert!(samples.iter().all(|s| s.name == "lim"));
    assert!(samples[0].time < samples[1].time && samples[1].time < samples[2].time);
    let table = w.spawn_berth(&["stats", "spin"]);
    let path = table.stdout_path.clone();
    wait_for(SHORT, "two tables", || {
        fs::read_to_string(&path).is_ok_and(|t| t.matches("NAME ").count() >= 2)
    });
}
