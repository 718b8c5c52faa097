//! The client protocol: one JSON request line, JSON response lines.
//!
//! A client connects to the daemon's unix socket and writes one request;
//! the daemon answers with one response line (for `wait` and `start --wait`,
//! when the container has exited) and closes. Requests are size-capped;
//! anything that is not one well-formed request gets one error response.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::Chars;

use nanoserde::{DeJson, DeJsonErr, DeJsonState, DeJsonTok, SerJson, SerJsonState};

use crate::{config, json, wire};

/// Largest request line the daemon reads.
pub const MAX_REQUEST: usize = 16 * 1024;

#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct Request {
    /// ps, start, stop, restart, kill, wait, logs, inspect, reload, version, rm,
    /// events
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
    /// exec: the command the client will run (logged by the daemon).
    #[nserde(default)]
    pub command: Vec<String>,
    /// exec: the user it runs as, if not the definition's.
    #[nserde(default)]
    pub user: Option<String>,
    /// events: the kept events after this time (nanoseconds since the
    /// epoch) come first.
    #[nserde(default)]
    pub since: Option<u64>,
}

/// One bridge network a container is on.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct NetworkInfo {
    pub address: String,
    pub prefix: u8,
    pub gateway: String,
    pub bridge: String,
    /// Its name in the container (eth0, ...).
    pub interface: String,
}

/// One published port.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct PortInfo {
    #[nserde(rename = "host-ip")]
    pub host_ip: String,
    #[nserde(rename = "host-port")]
    pub host_port: u16,
    pub port: u16,
    pub proto: String,
}

/// One container as `inspect` and `ps --json` show it.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
#[nserde(serialize_none_as_null)]
pub struct Info {
    pub name: String,
    /// created, running, exited, stopped, restarting, failed
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
    /// The image file the root is mounted from (`rootfs` is empty then).
    #[nserde(default)]
    pub image: Option<String>,
    /// "none", "tmpfs" or "persistent"; null when the definition does not
    /// say.
    #[nserde(default)]
    pub writable: Option<String>,
    pub command: Vec<String>,
    /// What the daemon is doing with it: idle, starting, running,
    /// stopping, backing-off, waiting (for what it depends on),
    /// untrusted, removed. A `status` such as "stopped" with a phase other
    /// than idle is on its way somewhere else.
    #[nserde(default)]
    pub phase: String,
    /// The hash of the definition of the run (of the definition, when none
    /// runs).
    #[nserde(rename = "config-hash")]
    pub config_hash: String,
    /// The hash of the definition the daemon holds now (null with none):
    /// differs from `config-hash` while a reload's recreate is pending.
    #[nserde(default, rename = "definition-hash")]
    pub definition_hash: Option<String>,
    #[nserde(rename = "log-dir")]
    pub log_dir: String,
    /// Something the user should know, e.g. a record this binary cannot
    /// read, or a daemon option changed since the container started.
    pub warning: Option<String>,
    /// The kernel killed a process of its last run for want of memory.
    #[nserde(default, rename = "oom-killed")]
    pub oom_killed: bool,
    /// Bytes of output its log could not take (disk full): of the current
    /// run while it runs, else of the last one.
    #[nserde(default, rename = "log-dropped-bytes")]
    pub log_dropped_bytes: u64,
    /// null when the definition has no healthcheck (or no run was ever
    /// checked); else the health of the current run (of the last one
    /// when none runs).
    #[nserde(default)]
    pub health: Option<Health>,
    /// Processes started in it by `berth exec` (or a health check) that
    /// still run: found from the kernel, so they survive a daemon restart.
    #[nserde(default)]
    pub execs: Vec<ExecInfo>,
    /// The bridge networks it is on, by name (those of its namespace's
    /// owner with `container:NAME`); empty with none or host.
    #[nserde(default)]
    pub networks: BTreeMap<String, NetworkInfo>,
    /// Its published ports.
    #[nserde(default)]
    pub ports: Vec<PortInfo>,
    /// The effective definition: its canonical JSON (keys sorted, paths
    /// resolved), as an object; null when it has none.
    #[nserde(default)]
    pub config: Option<RawJson>,
    /// The container's cgroup directories while it runs (empty otherwise):
    /// where `berth stats` reads its numbers.
    #[nserde(default)]
    pub cgroups: Vec<String>,
}

/// A container's health, as its monitor last recorded it.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct Health {
    /// "starting", "healthy" or "unhealthy".
    pub status: String,
    #[nserde(rename = "failing-streak")]
    pub failing_streak: u32,
    /// The last checks, oldest first.
    pub log: Vec<crate::state::HealthResult>,
}

/// A process running in a container beside its init, started into it from
/// outside (`berth exec`, a health check).
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct ExecInfo {
    /// Its host pid.
    pub pid: i32,
    /// Its argv, from /proc/PID/cmdline.
    pub command: Vec<String>,
    /// When it started (RFC 3339, UTC).
    #[nserde(rename = "started-at")]
    pub started_at: Option<String>,
}

/// JSON text carried as it is: written unquoted, and read back from any
/// JSON value (compacted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawJson(pub String);

impl SerJson for RawJson {
    fn ser_json(&self, _d: usize, s: &mut SerJsonState) {
        s.out
            .push_str(if self.0.is_empty() { "null" } else { &self.0 });
    }
}

impl DeJson for RawJson {
    fn de_json(s: &mut DeJsonState, i: &mut Chars) -> Result<RawJson, DeJsonErr> {
        let mut out = String::new();
        let mut depth = 0usize;
        loop {
            match s.tok {
                DeJsonTok::Str => json::escape_into(&mut out, &s.strbuf),
                DeJsonTok::U64(n) => {
                    let _ = write!(out, "{n}");
                }
                DeJsonTok::I64(n) => {
                    let _ = write!(out, "{n}");
                }
                DeJsonTok::F64(n) => {
                    let _ = write!(out, "{n}");
                }
                DeJsonTok::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                DeJsonTok::Null => out.push_str("null"),
                DeJsonTok::Colon => out.push(':'),
                DeJsonTok::Comma => out.push(','),
                DeJsonTok::CurlyOpen | DeJsonTok::BlockOpen => {
                    out.push(if s.tok == DeJsonTok::CurlyOpen {
                        '{'
                    } else {
                        '['
                    });
                    depth += 1;
                }
                DeJsonTok::CurlyClose | DeJsonTok::BlockClose if depth > 0 => {
                    out.push(if s.tok == DeJsonTok::CurlyClose {
                        '}'
                    } else {
                        ']'
                    });
                    depth -= 1;
                }
                _ => return Err(s.err_token("a JSON value")),
            }
            s.next_tok(i)?;
            if depth == 0 {
                return Ok(RawJson(out));
            }
        }
    }
}

/// What a client needs to join a running container (the `exec` answer).
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct ExecTarget {
    pub name: String,
    /// The init's host pid and start time (/proc/PID/stat field 22).
    #[nserde(rename = "init-pid")]
    pub init_pid: i32,
    #[nserde(rename = "init-start")]
    pub init_start: u64,
    /// The cgroups the init is in, one directory per hierarchy.
    pub cgroups: Vec<String>,
    /// The definition it runs, canonical JSON.
    pub spec: String,
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
    /// exec: where the container is.
    #[nserde(default)]
    pub exec: Option<ExecTarget>,
}

/// One event, as `events` streams it (after its first response line),
/// one line each, and as the daemon keeps them in run-dir.
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
pub struct EventLine {
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    /// The same, as nanoseconds since the epoch: what `since` compares.
    #[nserde(rename = "time-ns")]
    pub time_ns: u64,
    /// The container, or "" for the daemon's own (reload).
    pub name: String,
    /// start, exit, oom, restart, health, stop, reload, reattach, exec
    pub event: String,
    #[nserde(default)]
    pub detail: String,
    /// exit: the container's exit code, when it has one.
    #[nserde(default, rename = "exit-code")]
    pub exit_code: Option<i32>,
}

/// The verbs the daemon answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Ps,
    Start,
    Stop,
    Restart,
    Kill,
    Wait,
    Logs,
    Inspect,
    Reload,
    Version,
    Rm,
    Exec,
    Events,
}

impl Verb {
    pub const ALL: [Verb; 13] = [
        Verb::Ps,
        Verb::Start,
        Verb::Stop,
        Verb::Restart,
        Verb::Kill,
        Verb::Wait,
        Verb::Logs,
        Verb::Inspect,
        Verb::Reload,
        Verb::Version,
        Verb::Rm,
        Verb::Exec,
        Verb::Events,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Ps => "ps",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Kill => "kill",
            Verb::Wait => "wait",
            Verb::Logs => "logs",
            Verb::Inspect => "inspect",
            Verb::Reload => "reload",
            Verb::Version => "version",
            Verb::Rm => "rm",
            Verb::Exec => "exec",
            Verb::Events => "events",
        }
    }

    pub fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Verbs about one container.
    pub fn takes_name(self) -> bool {
        !matches!(self, Verb::Ps | Verb::Reload | Verb::Version | Verb::Events)
    }
}

/// A request, checked and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Ps,
    Reload,
    Version,
    Start {
        name: String,
        wait: bool,
    },
    Stop {
        name: String,
        time: Option<u64>,
    },
    Restart {
        name: String,
        time: Option<u64>,
    },
    Kill {
        name: String,
        signal: i32,
    },
    Wait {
        name: String,
    },
    Logs {
        name: String,
    },
    Inspect {
        name: String,
    },
    Rm {
        name: String,
    },
    /// Where the running container is, for a client that joins it.
    Exec {
        name: String,
        command: Vec<String>,
        user: Option<String>,
    },
    /// Stream events (the kept ones after `since` first) until the client
    /// hangs up.
    Events {
        since: Option<u64>,
    },
}

impl Call {
    /// Checks a request: a known verb, a valid name where one is needed,
    /// a time within bounds, a known signal.
    pub fn from_request(req: Request) -> Result<Call, String> {
        let verb = Verb::parse(&req.verb).ok_or(format!("unknown verb: {}", req.verb))?;
        if let Some(t) = req.time.filter(|t| *t > config::MAX_TIMEOUT) {
            return Err(format!(
                "time must be at most {} seconds, not {t}",
                config::MAX_TIMEOUT
            ));
        }
        if verb.takes_name() {
            config::validate_name(&req.name)?;
        }
        let name = req.name;
        Ok(match verb {
            Verb::Ps => Call::Ps,
            Verb::Reload => Call::Reload,
            Verb::Version => Call::Version,
            Verb::Start => Call::Start {
                name,
                wait: req.wait,
            },
            Verb::Stop => Call::Stop {
                name,
                time: req.time,
            },
            Verb::Restart => Call::Restart {
                name,
                time: req.time,
            },
            Verb::Kill => {
                let signal = match req.signal.as_deref() {
                    None => libc::SIGKILL,
                    Some(s) => {
                        crate::signals::parse_signal(s).ok_or(format!("unknown signal: {s}"))?
                    }
                };
                Call::Kill { name, signal }
            }
            Verb::Wait => Call::Wait { name },
            Verb::Logs => Call::Logs { name },
            Verb::Inspect => Call::Inspect { name },
            Verb::Rm => Call::Rm { name },
            Verb::Exec => {
                if req.command.is_empty() {
                    return Err("exec needs a command".to_string());
                }
                Call::Exec {
                    name,
                    command: req.command,
                    user: req.user,
                }
            }
            Verb::Events => Call::Events { since: req.since },
        })
    }

    /// The container it is about, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Call::Ps | Call::Reload | Call::Version | Call::Events { .. } => None,
            Call::Start { name, .. }
            | Call::Stop { name, .. }
            | Call::Restart { name, .. }
            | Call::Kill { name, .. }
            | Call::Wait { name }
            | Call::Logs { name }
            | Call::Inspect { name }
            | Call::Rm { name }
            | Call::Exec { name, .. } => Some(name),
        }
    }
}

/// An answer, typed; on the wire it is a [`Response`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok,
    Error(String),
    /// A run ended: its exit code, or why there is none.
    Exit {
        code: Option<i32>,
        error: Option<String>,
    },
    Containers(Vec<Info>),
    Container(Box<Info>),
    Version(String),
    /// reload: one line per action taken.
    Reloaded(Vec<String>),
    Exec(Box<ExecTarget>),
}

impl From<Reply> for Response {
    fn from(reply: Reply) -> Response {
        let ok = Response {
            ok: true,
            ..Response::default()
        };
        match reply {
            Reply::Ok => ok,
            Reply::Error(e) => Response {
                ok: false,
                error: Some(e),
                ..Response::default()
            },
            Reply::Exit { code, error } => Response {
                exit_code: code,
                error,
                ..ok
            },
            Reply::Containers(list) => Response {
                containers: Some(list),
                ..ok
            },
            Reply::Container(info) => Response {
                container: Some(*info),
                ..ok
            },
            Reply::Version(v) => Response {
                version: Some(v),
                ..ok
            },
            Reply::Reloaded(actions) => Response {
                actions: Some(actions),
                ..ok
            },
            Reply::Exec(target) => Response {
                exec: Some(*target),
                ..ok
            },
        }
    }
}

impl Reply {
    /// The line that carries it.
    pub fn into_line(self) -> Vec<u8> {
        wire::encode(&Response::from(self))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(verb: &str, name: &str) -> Request {
        Request {
            verb: verb.into(),
            name: name.into(),
            ..Request::default()
        }
    }

    #[test]
    fn every_verb_parses_back() {
        for v in Verb::ALL {
            assert_eq!(Verb::parse(v.as_str()), Some(v));
        }
        assert_eq!(Verb::parse("nope"), None);
    }

    #[test]
    fn requests_are_checked() {
        assert_eq!(
            Call::from_request(req("nope", "")),
            Err("unknown verb: nope".into())
        );
        assert_eq!(Call::from_request(req("ps", "")), Ok(Call::Ps));
        assert!(Call::from_request(req("start", "")).is_err());
        assert!(Call::from_request(req("start", "../x")).is_err());
        let mut r = req("stop", "a");
        r.time = Some(config::MAX_TIMEOUT + 1);
        assert!(Call::from_request(r).unwrap_err().contains("at most"));
        let mut r = req("kill", "a");
        r.signal = Some("SIGNOPE".into());
        assert_eq!(Call::from_request(r), Err("unknown signal: SIGNOPE".into()));
        let mut r = req("kill", "a");
        r.signal = Some("HUP".into());
        assert_eq!(
            Call::from_request(r),
            Ok(Call::Kill {
                name: "a".into(),
                signal: libc::SIGHUP
            })
        );
        assert_eq!(
            Call::from_request(req("kill", "a")),
            Ok(Call::Kill {
                name: "a".into(),
                signal: libc::SIGKILL
            })
        );
    }

    #[test]
    fn exec_needs_a_name_and_a_command() {
        let mut r = req("exec", "web");
        assert_eq!(
            Call::from_request(r.clone()),
            Err("exec needs a command".into())
        );
        r.command = vec!["sh".into()];
        r.user = Some("app".into());
        assert_eq!(
            Call::from_request(r.clone()),
            Ok(Call::Exec {
                name: "web".into(),
                command: vec!["sh".into()],
                user: Some("app".into()),
            })
        );
        r.name = "../web".into();
        assert!(Call::from_request(r).is_err());
        let line = Reply::Exec(Box::new(ExecTarget {
            name: "web".into(),
            init_pid: 42,
            init_start: 7,
            cgroups: vec!["/sys/fs/cgroup/berth/web".into()],
            spec: "{}".into(),
        }))
        .into_line();
        let r: Response = wire::decode(&line[..line.len() - 1]).unwrap();
        let target = r.exec.unwrap();
        assert_eq!((target.init_pid, target.init_start), (42, 7));
    }

    #[test]
    fn raw_json_passes_through() {
        let info = Info {
            name: "a".into(),
            config: Some(RawJson(
                r#"{"command":["/bin/sh","-c","echo \"hi\""],"env":[],"memory":"64m","pids":-1.5,"x":{"y":[true,null,7]}}"#
                    .into(),
            )),
            ..Info::default()
        };
        let text = info.serialize_json();
        assert!(text.contains(r#""config":{"command":["/bin/sh""#), "{text}");
        let back = Info::deserialize_json(&text).unwrap();
        assert_eq!(back, info);
        let none = Info::default().serialize_json();
        assert!(none.contains(r#""config":null"#), "{none}");
        assert_eq!(Info::deserialize_json(&none).unwrap().config, None);
    }

    #[test]
    fn replies_keep_their_wire_shape() {
        let line = Reply::Exit {
            code: Some(42),
            error: None,
        }
        .into_line();
        let r: Response = wire::decode(&line[..line.len() - 1]).unwrap();
        assert!(r.ok);
        assert_eq!(r.exit_code, Some(42));
        let r = Response::from(Reply::Error("no".into()));
        assert!(!r.ok);
        assert_eq!(r.error.as_deref(), Some("no"));
    }
}
