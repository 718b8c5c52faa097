//! `berth wait --condition running|healthy [--timeout SECS] NAME...`: waits
//! until each container runs its current definition (not one a reload is
//! about to replace) and, for `healthy`, passes its healthcheck (a
//! container without one only has to run). A deployment script gates on it.
//!
//! The client follows the daemon's event stream and looks at the
//! containers again after every event (and at least once a second), so it
//! neither polls the daemon hard nor misses a change. It gives up at once
//! on a container that is not defined or has ended with no restart coming.
//! With `--timeout`, a daemon that cannot be reached (one being restarted
//! by its init, say) is tried again until the deadline.

use std::io::{self, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::api::{Info, Request, Response, Verb};
use crate::cli::{self, Failure};
use crate::events_cli;

/// What the containers must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Running,
    Healthy,
}

impl Condition {
    pub fn parse(s: &str) -> Result<Condition, String> {
        match s {
            "running" => Ok(Condition::Running),
            "healthy" => Ok(Condition::Healthy),
            _ => Err(format!("--condition is running or healthy, not {:?}", s)),
        }
    }
}

/// Where one container stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It meets the condition: "running" or "healthy".
    Ready(&'static str),
    /// Not yet; why (for the message at the deadline).
    Waiting(String),
    /// It never will without someone acting; why.
    Failed(String),
}

/// Judges one container by its inspect object. Pure.
pub fn standing(info: &Info, condition: Condition) -> Standing {
    // A daemon older than this client says neither (a binary upgraded
    // before the daemon's restart): its runs are taken as current.
    let old_daemon = info.phase.is_empty();
    let current = match info.definition_hash.as_deref() {
        Some(definition) => info.config_hash == definition,
        None if old_daemon => true,
        None => return Standing::Failed("is no longer defined".to_string()),
    };
    if info.phase == "untrusted" {
        // Its records could not be trusted: what runs is not known to be
        // any definition's.
        let why = info
            .warning
            .as_deref()
            .unwrap_or("its records cannot be trusted");
        return Standing::Failed(format!("is left alone by the daemon: {why}"));
    }
    let at_rest = info.phase == "idle" || old_daemon;
    match info.status.as_str() {
        "running" if !current => {
            Standing::Waiting("runs a definition a reload is replacing".to_string())
        }
        "running" => match (&info.health, condition) {
            (None, Condition::Healthy) => Standing::Ready("running"),
            (None, Condition::Running) => Standing::Ready("running"),
            (Some(_), Condition::Running) => Standing::Ready("running"),
            (Some(h), Condition::Healthy) if h.status == "healthy" => Standing::Ready("healthy"),
            (Some(h), Condition::Healthy) => Standing::Waiting(health_text(h)),
        },
        // At rest, with nothing to come: not a start under way, a
        // dependency waited for, or a back-off before a restart.
        "exited" | "failed" | "stopped" if current && at_rest => Standing::Failed(ended_text(info)),
        "created" if at_rest => Standing::Failed(
            "is not started, and nothing will start it (autostart is false)".to_string(),
        ),
        other if info.phase == "idle" || info.phase.is_empty() => {
            Standing::Waiting(other.to_string())
        }
        other => Standing::Waiting(format!("{other} ({})", info.phase)),
    }
}

fn health_text(h: &crate::api::Health) -> String {
    match h.log.last() {
        Some(last) => {
            let ended = match last.exit_code {
                Some(code) => format!("exit code {code}"),
                None => "did not finish".to_string(),
            };
            match last.output.trim() {
                "" => format!("{} (last check: {ended})", h.status),
                out => format!("{} (last check: {ended}: {out})", h.status),
            }
        }
        None => h.status.clone(),
    }
}

fn ended_text(info: &Info) -> String {
    let mut text = info.status.clone();
    if let Some(code) = info.exit_code {
        text.push_str(&format!(" with code {code}"));
    }
    if let Some(e) = &info.error {
        text.push_str(&format!(": {e}"));
    }
    text.push_str(", no restart coming");
    text
}

/// Longest time between two looks at the containers.
const RECHECK: Duration = Duration::from_secs(1);
/// The deadline of a timeout too long for the clock.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Time between tries to reach a daemon that cannot be reached.
const RECONNECT: Duration = Duration::from_millis(200);

/// Runs `berth wait --condition`; returns the exit code.
pub fn run(
    names: &[String],
    condition: Condition,
    timeout: Option<Duration>,
    socket: &Path,
) -> Result<i32, Failure> {
    let started = Instant::now();
    // A timeout past what an Instant holds is a century.
    let deadline = timeout.map(|t| {
        started
            .checked_add(t)
            .or_else(|| started.checked_add(CENTURY))
            .unwrap_or(started)
    });
    let mut wanted: Vec<&String> = Vec::new();
    for name in names {
        if !wanted.contains(&name) {
            wanted.push(name);
        }
    }
    let mut why: Vec<(String, String)> = Vec::new();
    loop {
        let mut events = match subscribe(socket, deadline) {
            Ok(stream) => stream,
            Err(failure) => match deadline {
                Some(d) if Instant::now() + RECONNECT < d => {
                    std::thread::sleep(RECONNECT);
                    why = vec![(String::new(), failure.0)];
                    continue;
                }
                Some(_) => return Err(gave_up(&why, &failure.0, started)),
                None => return Err(failure),
            },
        };
        // Looked at after subscribing, so no change falls between the two.
        // Every container is looked at each time: all must be there at
        // once (one healthy a moment ago may have crashed since).
        loop {
            why.clear();
            let mut ready = Vec::new();
            for name in &wanted {
                let limit = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                let resp = match cli::call_within(socket, &request(Verb::Inspect, name), limit) {
                    Ok(resp) => resp,
                    // Not reached, or gone mid-answer (killed, restarting):
                    // tried again until the deadline.
                    Err(Failure(m, _)) if deadline.is_some() => {
                        why.push((String::new(), m));
                        continue;
                    }
                    Err(f) => return Err(f),
                };
                let info = match cli::checked(resp) {
                    Ok(Response {
                        container: Some(info),
                        ..
                    }) => info,
                    Ok(_) => return Err(Failure("the daemon sent no container".into(), 1)),
                    Err(Failure(m, _)) => return Err(Failure(format!("{name}: {m}"), 1)),
                };
                match standing(&info, condition) {
                    Standing::Ready(what) => ready.push(format!("{name} {what}")),
                    Standing::Waiting(reason) => why.push((name.to_string(), reason)),
                    Standing::Failed(reason) => {
                        return Err(Failure(format!("{name}: {reason}"), 1));
                    }
                }
            }
            if ready.len() == wanted.len() {
                for line in ready {
                    cli::outln(line);
                }
                return Ok(0);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(timed_out(&why, started));
            }
            let pause = deadline.map_or(RECHECK, |d| (d - now).min(RECHECK));
            match next_event(&mut events, pause) {
                Ok(true) | Ok(false) => {}
                // The daemon went away: reach it again.
                Err(()) => break,
            }
        }
    }
}

/// Asks for the daemon's event stream; returns it once the daemon said yes.
fn subscribe(socket: &Path, deadline: Option<Instant>) -> Result<BufReader<UnixStream>, Failure> {
    let mut stream = cli::connect(socket)?;
    let req = Request {
        verb: Verb::Events.as_str().into(),
        ..Request::default()
    };
    cli::send(&mut stream, &req)?;
    let first_wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    set_timeout(
        &stream,
        first_wait.filter(|d| !d.is_zero()).or(Some(RECHECK * 10)),
    )?;
    let mut reader = BufReader::new(stream);
    events_cli::first_answer(&mut reader)?;
    Ok(reader)
}

/// Waits up to `pause` for something on the event stream. Ok(true): an
/// event (or part of one) came; Ok(false): none did; Err: the daemon
/// closed the stream.
fn next_event(events: &mut BufReader<UnixStream>, pause: Duration) -> Result<bool, ()> {
    let pause = pause.max(Duration::from_millis(1));
    if set_timeout(events.get_ref(), Some(pause)).is_err() {
        return Err(());
    }
    let mut buf = [0u8; 4096];
    match events.read(&mut buf) {
        Ok(0) => Err(()),
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(_) => Err(()),
    }
}

fn set_timeout(stream: &UnixStream, t: Option<Duration>) -> Result<(), Failure> {
    stream
        .set_read_timeout(t)
        .map_err(|e| Failure(format!("set a read timeout: {e}"), 1))
}

fn request(verb: Verb, name: &str) -> Request {
    Request {
        verb: verb.as_str().into(),
        name: name.to_string(),
        ..Request::default()
    }
}

/// The message at the deadline: every container not there yet and why.
fn timed_out(why: &[(String, String)], started: Instant) -> Failure {
    let secs = started.elapsed().as_secs();
    let parts: Vec<String> = why
        .iter()
        .map(|(name, reason)| {
            if name.is_empty() {
                reason.clone()
            } else {
                format!("{name}: {reason}")
            }
        })
        .collect();
    Failure(format!("not there after {secs} s: {}", parts.join("; ")), 1)
}

/// The message when the daemon could not be reached before the deadline.
fn gave_up(why: &[(String, String)], last: &str, started: Instant) -> Failure {
    let mut parts = why.to_vec();
    if parts.is_empty() {
        parts.push((String::new(), last.to_string()));
    }
    timed_out(&parts, started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Health;
    use crate::state::HealthResult;

    fn info(status: &str, run: &str, def: Option<&str>, health: Option<&str>) -> Info {
        Info {
            name: "web".into(),
            status: status.into(),
            config_hash: run.into(),
            definition_hash: def.map(str::to_string),
            health: health.map(|s| Health {
                status: s.into(),
                failing_streak: 0,
                log: vec![HealthResult {
                    exit_code: Some(1),
                    output: "no answer\n".into(),
                    ..HealthResult::default()
                }],
            }),
            exit_code: Some(3),
            phase: if status == "running" {
                "running"
            } else {
                "idle"
            }
            .into(),
            ..Info::default()
        }
    }

    #[test]
    fn a_run_of_the_current_definition_is_ready() {
        let i = info("running", "aa", Some("aa"), None);
        assert_eq!(standing(&i, Condition::Running), Standing::Ready("running"));
        assert_eq!(standing(&i, Condition::Healthy), Standing::Ready("running"));
        let h = info("running", "aa", Some("aa"), Some("healthy"));
        assert_eq!(standing(&h, Condition::Healthy), Standing::Ready("healthy"));
        assert_eq!(standing(&h, Condition::Running), Standing::Ready("running"));
    }

    #[test]
    fn a_run_a_reload_replaces_is_not_ready() {
        let i = info("running", "aa", Some("bb"), Some("healthy"));
        assert!(matches!(
            standing(&i, Condition::Healthy),
            Standing::Waiting(_)
        ));
        // Its end is the recreate, not a failure.
        let ended = info("exited", "aa", Some("bb"), None);
        assert!(matches!(
            standing(&ended, Condition::Running),
            Standing::Waiting(_)
        ));
    }

    #[test]
    fn unhealthy_and_starting_wait_with_the_last_check_named() {
        let i = info("running", "aa", Some("aa"), Some("unhealthy"));
        assert_eq!(
            standing(&i, Condition::Healthy),
            Standing::Waiting("unhealthy (last check: exit code 1: no answer)".into())
        );
        let r = info("restarting", "aa", Some("aa"), None);
        assert_eq!(
            standing(&r, Condition::Healthy),
            Standing::Waiting("restarting".into())
        );
    }

    #[test]
    fn an_end_with_no_restart_and_no_definition_fail() {
        let i = info("exited", "aa", Some("aa"), None);
        assert_eq!(
            standing(&i, Condition::Healthy),
            Standing::Failed("exited with code 3, no restart coming".into())
        );
        // A start (or a wait for a dependency) under way shows the last
        // status: not an end.
        let starting = Info {
            phase: "starting".into(),
            ..info("stopped", "aa", Some("aa"), None)
        };
        assert!(matches!(
            standing(&starting, Condition::Running),
            Standing::Waiting(_)
        ));
        let gone = info("running", "aa", None, None);
        assert_eq!(
            standing(&gone, Condition::Running),
            Standing::Failed("is no longer defined".into())
        );
    }

    #[test]
    fn untrusted_and_never_started_fail_and_an_older_daemon_is_believed() {
        let untrusted = Info {
            phase: "untrusted".into(),
            warning: Some("its runtime record names another process".into()),
            ..info("running", "aa", Some("aa"), Some("healthy"))
        };
        assert_eq!(
            standing(&untrusted, Condition::Healthy),
            Standing::Failed(
                "is left alone by the daemon: its runtime record names another process".into()
            )
        );
        let created = info("created", "aa", Some("aa"), None);
        assert!(matches!(
            standing(&created, Condition::Running),
            Standing::Failed(_)
        ));
        // Without phase and definition-hash (a daemon from before them).
        let old = Info {
            phase: String::new(),
            ..info("running", "aa", None, Some("healthy"))
        };
        assert_eq!(
            standing(&old, Condition::Healthy),
            Standing::Ready("healthy")
        );
        let old_ended = Info {
            phase: String::new(),
            ..info("exited", "aa", None, None)
        };
        assert!(matches!(
            standing(&old_ended, Condition::Running),
            Standing::Failed(_)
        ));
    }

    #[test]
    fn conditions_parse() {
        assert_eq!(Condition::parse("healthy"), Ok(Condition::Healthy));
        assert_eq!(Condition::parse("running"), Ok(Condition::Running));
        assert!(Condition::parse("exited").is_err());
    }
}
