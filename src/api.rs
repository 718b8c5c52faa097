//! The client protocol: one JSON request line, JSON response lines.
//!
//! A client connects to the daemon's unix socket and writes one request;
//! the daemon answers with one response line (for `wait` and `start --wait`,
//! when the container has exited) and closes. Requests are size-capped;
//! anything that is not one well-formed request gets one error response.

use nanoserde::{DeJson, SerJson};

/// Largest request line the daemon reads.
pub const MAX_REQUEST: usize = 16 * 1024;

#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct Request {
    /// ps, start, stop, restart, kill, wait, logs, inspect, reload, version
    pub verb: String,
    #[nserde(default)]
    pub name: String,
    /// start: answer only when the container has exited.
    #[nserde(default)]
    pub wait: bool,
    /// stop: seconds before SIGKILL, instead of the definition's.
    pub time: Option<u64>,
    /// kill: the signal, by name or number.
    pub signal: Option<String>,
}

/// One container as `inspect` and `ps --json` show it.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
#[nserde(serialize_none_as_null)]
pub struct Info {
    pub name: String,
    /// running, exited, stopped, restarting, failed
    pub status: String,
    /// Host pid of the container's init, 0 if none.
    pub pid: i32,
    #[nserde(rename = "exit-code")]
    pub exit_code: Option<i32>,
    #[nserde(rename = "restart-count")]
    pub restart_count: u32,
    #[nserde(rename = "started-at")]
    pub started_at: Option<String>,
    #[nserde(rename = "finished-at")]
    pub finished_at: Option<String>,
    pub error: Option<String>,
    #[nserde(rename = "monitor-pid")]
    pub monitor_pid: i32,
    /// The monitor's start time (/proc/PID/stat field 22), so a client can
    /// take a pidfd on it and know it is the same process.
    #[nserde(default, rename = "monitor-start")]
    pub monitor_start: u64,
    pub restart: String,
    pub autostart: bool,
    #[nserde(rename = "stopped-by-user")]
    pub stopped_by_user: bool,
    pub rootfs: String,
    pub command: Vec<String>,
    #[nserde(rename = "config-hash")]
    pub config_hash: String,
    #[nserde(rename = "log-dir")]
    pub log_dir: String,
    /// Something the user should know, e.g. a record this binary cannot
    /// read, or a daemon option changed since the container started.
    pub warning: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct Response {
    pub ok: bool,
    pub error: Option<String>,
    pub containers: Option<Vec<Info>>,
    pub container: Option<Info>,
    #[nserde(rename = "exit-code")]
    pub exit_code: Option<i32>,
    pub version: Option<String>,
    /// reload: one line per action taken.
    pub actions: Option<Vec<String>>,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            ..Response::default()
        }
    }

    pub fn to_line(&self) -> Vec<u8> {
        let mut s = self.serialize_json();
        s.push('\n');
        s.into_bytes()
    }
}

/// The version string: package version and git revision.
pub fn version() -> String {
    format!(
        "berth {} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("BERTH_GIT_REV")
    )
}
