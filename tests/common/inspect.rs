//! What berth reports about a container: the `inspect` object (also each
//! element of `ps --json`), parsed with nanoserde and checked to carry every
//! key of the contract, and the RFC 3339 times in it and in `logs
//! --timestamps`.

// nanoserde's derived code trips this lint; it is not ours to rewrite.
#![allow(clippy::question_mark)]

use nanoserde::DeJson;

/// What `berth inspect` prints (and `ps --json` lists).
#[derive(DeJson, Debug, Clone, PartialEq)]
pub struct Inspect {
    pub name: String,
    pub status: String,
    pub pid: u32,
    #[nserde(rename = "exit-code")]
    pub exit_code: Option<i64>,
    #[nserde(rename = "restart-count")]
    pub restart_count: u64,
    #[nserde(rename = "started-at")]
    pub started_at: Option<String>,
    #[nserde(rename = "finished-at")]
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// 0 when no monitor runs (at rest, or backing off before a restart).
    #[nserde(default, rename = "monitor-pid")]
    pub monitor_pid: u32,
    /// Something the daemon wants the user to know (an untrusted record).
    #[nserde(default)]
    pub warning: Option<String>,
    /// The kernel killed a process of the last run for want of memory.
    #[nserde(default, rename = "oom-killed")]
    pub oom_killed: bool,
    /// Output the log could not take (disk full), in bytes.
    #[nserde(default, rename = "log-dropped-bytes")]
    pub log_dropped_bytes: u64,
    /// null without a healthcheck.
    #[nserde(default)]
    pub health: Option<HealthStatus>,
}

/// The status part of `inspect`'s `health`.
#[derive(Debug, Clone, Default, PartialEq, DeJson)]
pub struct HealthStatus {
    pub status: String,
}

/// Keys `inspect` must always print, null or not.
const INSPECT_KEYS: &[&str] = &[
    "name",
    "status",
    "pid",
    "exit-code",
    "restart-count",
    "started-at",
    "finished-at",
    "error",
    "oom-killed",
    "log-dropped-bytes",
];

/// The statuses a container can have.
pub const STATUSES: &[&str] = &[
    "created",
    "running",
    "exited",
    "stopped",
    "restarting",
    "failed",
];

impl Inspect {
    /// Parses one inspect object, checking that every contract key is
    /// present, the status is one of the contract's and the times are
    /// RFC 3339.
    pub fn parse(text: &str) -> Result<Inspect, String> {
        for key in INSPECT_KEYS {
            if !text.contains(&format!("\"{key}\"")) {
                return Err(format!("key {key:?} missing from {text}"));
            }
        }
        let inspect = Inspect::deserialize_json(text.trim()).map_err(|e| format!("{e}: {text}"))?;
        inspect.check().map_err(|e| format!("{e}: {text}"))?;
        Ok(inspect)
    }

    /// The rules every inspect object follows, whatever the container does.
    pub fn check(&self) -> Result<(), String> {
        if !STATUSES.contains(&self.status.as_str()) {
            return Err(format!("status {:?} is none of {STATUSES:?}", self.status));
        }
        for (key, time) in [
            ("started-at", &self.started_at),
            ("finished-at", &self.finished_at),
        ] {
            if time.as_deref().is_some_and(|t| !is_rfc3339(t)) {
                return Err(format!("{key} {time:?} is not RFC 3339"));
            }
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.status == "running" && self.pid > 0
    }
}

/// Whether `s` is an RFC 3339 date-time such as 2026-11-26T22:51:03.123Z.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    let zone = rest.as_bytes();
    rest == "Z"
        || rest == "z"
        || (zone.len() == 6
            && (zone[0] == b'+' || zone[0] == b'-')
            && zone[1..3].iter().all(u8::is_ascii_digit)
            && zone[3] == b':'
            && zone[4..6].iter().all(u8::is_ascii_digit))
}
