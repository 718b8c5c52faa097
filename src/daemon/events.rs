//! What happened to the containers, as events: one per state change
//! (start, exit, oom, restart, health, reload, re-attach, ...). The
//! containers component queues them with [`Queue::emit`] as it executes
//! the lifecycle's effects or learns a monitor's news; the loop takes them
//! each turn and hands them on. [`of_transition`] says which events one
//! lifecycle transition makes.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::lifecycle::{self, Last, Lifecycle, Phase, StopReason, Then};

/// The kinds of event, as `berth events` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    Exit,
    Oom,
    Restart,
    Health,
    Stop,
    Reload,
    Reattach,
    Exec,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Start,
        Kind::Exit,
        Kind::Oom,
        Kind::Restart,
        Kind::Health,
        Kind::Stop,
        Kind::Reload,
        Kind::Reattach,
        Kind::Exec,
    ];

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Exit => "exit",
            Kind::Oom => "oom",
            Kind::Restart => "restart",
            Kind::Health => "health",
            Kind::Stop => "stop",
            Kind::Reload => "reload",
            Kind::Reattach => "reattach",
            Kind::Exec => "exec",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Nanoseconds since the epoch.
    pub time: u64,
    /// The container, or "" for the daemon's own (reload).
    pub name: String,
    pub kind: Kind,
    /// What else there is to say: an exit code, a health status.
    pub detail: String,
    /// exit: the container's exit code, when it has one.
    pub code: Option<i32>,
}

/// Events not yet handed on.
#[derive(Debug, Default)]
pub struct Queue {
    pending: Vec<Event>,
}

impl Queue {
    pub fn emit(&mut self, name: &str, kind: Kind, detail: impl Into<String>) {
        self.emit_with_code(name, kind, detail, None);
    }

    /// An event with an exit code (`Kind::Exit`).
    pub fn emit_with_code(
        &mut self,
        name: &str,
        kind: Kind,
        detail: impl Into<String>,
        code: Option<i32>,
    ) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.pending.push(Event {
            time,
            name: name.to_string(),
            kind,
            detail: detail.into(),
            code,
        });
    }

    pub fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
    }
}

/// One event a transition makes: kind, detail, exit code.
pub type Change = (Kind, String, Option<i32>);

/// The events of one lifecycle transition: from phase `from` (with
/// `last_before`, the last run's outcome then) through `event` to `to`.
/// `now` is the transition's time (for a restart's back-off).
pub fn of_transition(
    from: &Phase,
    last_before: &Last,
    event: &lifecycle::Event,
    to: &Lifecycle,
    now: Instant,
) -> Vec<Change> {
    let mut out = Vec::new();
    let phase = to.phase();
    match event {
        lifecycle::Event::Execed { init_pid, .. } => {
            let was_pending = from
                .run()
                .is_some_and(|r| r.exec == lifecycle::Exec::Pending);
            let done = phase.run().is_some_and(|r| r.exec == lifecycle::Exec::Done);
            if was_pending && done {
                out.push((Kind::Start, format!("pid {init_pid}"), None));
            }
        }
        lifecycle::Event::Attached(run)
            if matches!(from, Phase::Idle(_)) && phase.run().is_some() =>
        {
            let detail = if run.exec == lifecycle::Exec::Done {
                format!("pid {}", run.init_pid)
            } else {
                format!("start under way (monitor {})", run.monitor_pid)
            };
            out.push((Kind::Reattach, detail, None));
        }
        lifecycle::Event::Ended { found, .. } => {
            // A run a previous daemon had accounted for already is no news.
            let seen = matches!(found, Some((_, true)));
            let ours = from.is_active() || found.is_some();
            let last = to.last();
            if ours && !seen && last != last_before {
                let detail = match (last.exit_code, &last.error) {
                    (Some(code), _) => format!("exit-code {code}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "exit code unknown".to_string(),
                };
                out.push((Kind::Exit, detail, last.exit_code));
                if last.limits.oom_killed {
                    let cause = last.limits.cause.clone().unwrap_or_default();
                    out.push((Kind::Oom, cause, None));
                }
            }
        }
        lifecycle::Event::SpawnFailed(why) if matches!(phase, Phase::Idle(_)) => {
            // No run came of it: its end is the failure.
            out.push((Kind::Exit, why.clone(), None));
        }
        lifecycle::Event::Stop { reason, then, .. }
            if matches!(from, Phase::BackingOff { .. } | Phase::Waiting { .. })
                && matches!(phase, Phase::Idle(_)) =>
        {
            // A restart or a start that will not come now.
            out.push((Kind::Stop, stop_reason(*reason, *then).to_string(), None));
        }
        _ => {}
    }
    if let Phase::BackingOff { until } = phase {
        if !matches!(from, Phase::BackingOff { .. }) {
            let count = to.persist().restart_count + 1;
            let ms = until.saturating_duration_since(now).as_millis();
            out.push((Kind::Restart, format!("restart {count} in {ms} ms"), None));
        }
    }
    if let Phase::Stopping { reason, then, .. } = phase {
        if !matches!(from, Phase::Stopping { .. }) {
            out.push((Kind::Stop, stop_reason(*reason, *then).to_string(), None));
        }
    }
    out
}

fn stop_reason(reason: StopReason, then: Then) -> &'static str {
    match (reason, then) {
        (StopReason::User, _) => "asked by a client",
        (StopReason::Shutdown, _) => "the daemon is shutting down",
        (_, Then::Forget) => "its definition is gone",
        (_, Then::Start) => "to start it again",
        _ => "asked by the daemon",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RestartPolicy;
    use crate::state::{ContainerState, StartOptions};
    use lifecycle::{Ctx, Def, Ending, Exec, Gate, LimitsHit, RunFacts};
    use std::time::Duration;

    fn run(exec: Exec) -> RunFacts {
        RunFacts {
            run_id: "r1".into(),
            monitor_pid: 100,
            monitor_start: 1,
            init_pid: 0,
            init_start: 0,
            started_at: 1,
            hash: 7,
            health_restarts: 0,
            stop_notice: true,
            options: StartOptions::default(),
            exec,
        }
    }

    /// Runs `events` from a container at rest and collects what each
    /// transition makes.
    fn changes(restart: RestartPolicy, events: Vec<lifecycle::Event>) -> Vec<Vec<Change>> {
        let now = Instant::now();
        let ctx = Ctx {
            name: "app",
            now,
            now_ns: 5_000_000_000,
            def: Ok(Def {
                restart,
                autostart: true,
                stop_signal: libc::SIGTERM,
                grace: Duration::from_secs(10),
                hash: 7,
            }),
            live_restore: true,
            shutting_down: false,
            gate: Gate::Open,
        };
        let mut s = Lifecycle::new(ContainerState::default());
        let mut out = Vec::new();
        for e in events {
            let from = s.phase().clone();
            let last = s.last().clone();
            let (next, _) = lifecycle::on(s, e.clone(), &ctx);
            out.push(of_transition(&from, &last, &e, &next, now));
            s = next;
        }
        out
    }

    fn execed() -> lifecycle::Event {
        lifecycle::Event::Execed {
            init_pid: 101,
            init_start: 2,
            started_at: 3,
            alive: true,
        }
    }

    fn ended(code: i32, oom: bool) -> lifecycle::Event {
        lifecycle::Event::Ended {
            outcome: Ok(Ending {
                code: Some(code),
                error: None,
                started_at: 3,
                finished_at: 4,
                limits: LimitsHit {
                    oom_killed: oom,
                    cause: oom.then(|| "out of memory (memory limit 8 MiB)".to_string()),
                    log_dropped: 0,
                },
                health_restarts: 0,
            }),
            found: None,
        }
    }

    #[test]
    fn a_run_makes_start_exit_oom_restart_and_stop() {
        let start = lifecycle::Event::Start {
            cause: lifecycle::Cause::Daemon,
            waiter: None,
        };
        let got = changes(
            RestartPolicy::Always,
            vec![
                start.clone(),
                lifecycle::Event::Spawned(run(Exec::Pending)),
                execed(),
                ended(137, true),
                lifecycle::Event::Tick,
            ],
        );
        assert_eq!(got[0], []);
        assert_eq!(got[1], []);
        assert_eq!(got[2], [(Kind::Start, "pid 101".to_string(), None)]);
        assert_eq!(
            got[3][0],
            (Kind::Exit, "exit-code 137".to_string(), Some(137))
        );
        assert_eq!(
            got[3][1],
            (
                Kind::Oom,
                "out of memory (memory limit 8 MiB)".to_string(),
                None
            )
        );
        assert_eq!(got[3][2].0, Kind::Restart);
        assert!(got[3][2].1.starts_with("restart 1 in "), "{:?}", got[3][2]);
        let stop = lifecycle::Event::Stop {
            reason: StopReason::User,
            grace: Duration::from_secs(1),
            then: Then::Nothing,
            client: None,
        };
        let got = changes(
            RestartPolicy::No,
            vec![
                start,
                lifecycle::Event::Spawned(run(Exec::Pending)),
                execed(),
                stop.clone(),
                stop,
                ended(0, false),
            ],
        );
        assert_eq!(
            got[3],
            [(Kind::Stop, "asked by a client".to_string(), None)]
        );
        // A second stop on top is no new event.
        assert_eq!(got[4], []);
        assert_eq!(got[5], [(Kind::Exit, "exit-code 0".to_string(), Some(0))]);
        // A start with no monitor ends as a failure; a restart cancelled
        // by a stop is a stop.
        let got = changes(
            RestartPolicy::Always,
            vec![
                lifecycle::Event::Start {
                    cause: lifecycle::Cause::Daemon,
                    waiter: None,
                },
                lifecycle::Event::SpawnFailed("no rootfs".into()),
            ],
        );
        assert_eq!(got[1], [(Kind::Exit, "no rootfs".to_string(), None)]);
    }

    #[test]
    fn restore_makes_reattach_and_exits_found_but_not_those_seen_before() {
        let mut done = run(Exec::Done);
        done.init_pid = 101;
        let got = changes(RestartPolicy::No, vec![lifecycle::Event::Attached(done)]);
        assert_eq!(got[0], [(Kind::Reattach, "pid 101".to_string(), None)]);
        let found = |seen| lifecycle::Event::Ended {
            outcome: Ok(Ending {
                code: Some(3),
                error: None,
                started_at: 1,
                finished_at: 2,
                limits: LimitsHit::default(),
                health_restarts: 0,
            }),
            found: Some((run(Exec::Done), seen)),
        };
        let got = changes(RestartPolicy::No, vec![found(false)]);
        assert_eq!(got[0], [(Kind::Exit, "exit-code 3".to_string(), Some(3))]);
        let got = changes(RestartPolicy::No, vec![found(true)]);
        assert_eq!(got[0], []);
    }
}
