//! Health checks, as the monitor runs them: the arithmetic of the health
//! record (a pure function of the record, one check's result, the
//! settings and the time), and the [`Checker`] that schedules the checks
//! of one run, reads their output through a pipe (capped), kills one that
//! outlives its timeout through its pidfd, and writes health.json.
//!
//! Docker's meaning: the first check runs `interval` after the start;
//! a check that passes makes the container healthy and clears the streak;
//! `retries` failures in a row make it unhealthy; failures while the
//! container is still `starting` within `start-period` of its start do
//! not count.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::exec;
use crate::config::{ContainerSpec, Healthcheck};
use crate::errors;
use crate::state::{self, FORMAT_VERSION, HealthRecord, HealthResult};
use crate::sys::{fd, process};

/// Results kept in the record, the newest last.
pub const LOG_KEPT: usize = 5;
/// Bytes of a check's output kept in its result.
pub const OUTPUT_CAP: usize = 4096;
/// Bytes of a check's output read (and dropped past the cap) in one go.
const TURN: usize = 64 * 1024;

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// The record of a run (or of an init started again) before any check.
pub fn fresh(run_id: &str, restarts: u32, log: Vec<HealthResult>) -> HealthRecord {
    HealthRecord {
        version: FORMAT_VERSION,
        run_id: run_id.to_string(),
        status: STARTING.to_string(),
        failing_streak: 0,
        log,
        restarts,
    }
}

/// The record after one check's `result`. `started_at` is when the
/// container's init started, `now` when the check ended (nanoseconds
/// since the epoch).
pub fn apply(
    record: &HealthRecord,
    result: HealthResult,
    check: &Healthcheck,
    started_at: u64,
    now: u64,
) -> HealthRecord {
    let mut next = record.clone();
    let passed = result.exit_code == Some(0);
    next.log.push(result);
    if next.log.len() > LOG_KEPT {
        let extra = next.log.len() - LOG_KEPT;
        next.log.drain(..extra);
    }
    if passed {
        next.status = HEALTHY.to_string();
        next.failing_streak = 0;
        return next;
    }
    let grace_until = started_at.saturating_add(check.start_period.as_nanos() as u64);
    if record.status == STARTING && now < grace_until {
        // Still starting up: the failure is shown, not counted.
        return next;
    }
    next.failing_streak = record.failing_streak.saturating_add(1);
    if next.failing_streak >= check.retries {
        next.status = UNHEALTHY.to_string();
    }
    next
}

/// A check under way.
struct Running {
    pidfd: OwnedFd,
    output: Option<OwnedFd>,
    started: u64,
    deadline: Instant,
    text: Vec<u8>,
    timed_out: bool,
}

/// What a check that ended changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The status before and after (equal when only the log or the streak
    /// moved).
    pub from: String,
    pub to: String,
}

/// The checks of one monitor's runs.
pub struct Checker {
    check: Healthcheck,
    path: PathBuf,
    record: HealthRecord,
    /// When the current init started.
    init_started: u64,
    /// When the next check is due; `None` once checks are over (a stop).
    next: Option<Instant>,
    running: Option<Running>,
}

impl Checker {
    /// The checks of the run `run_id`, writing `path` (health.json).
    pub fn new(check: Healthcheck, path: PathBuf, run_id: &str) -> Checker {
        Checker {
            check,
            path,
            record: fresh(run_id, 0, Vec::new()),
            init_started: 0,
            next: None,
            running: None,
        }
    }

    pub fn command(&self) -> &[String] {
        &self.check.command
    }

    /// A new init started (the first, or one started again after it was
    /// found unhealthy: then `restarted`). The status goes back to
    /// `starting`, the first check is due after `interval`.
    pub fn init_started(&mut self, now: Instant, now_ns: u64, restarted: bool) {
        let restarts = self.record.restarts + u32::from(restarted);
        let log = std::mem::take(&mut self.record.log);
        self.record = fresh(&self.record.run_id, restarts, log);
        self.init_started = now_ns;
        self.next = Some(now + self.check.interval);
        self.running = None;
        self.save();
    }

    /// No more checks: the init is being stopped. A check under way is
    /// killed.
    pub fn halt(&mut self) {
        self.next = None;
        if let Some(r) = self.running.take() {
            let _ = process::pidfd_send_signal(&r.pidfd, libc::SIGKILL);
            let _ = process::waitid_pidfd(&r.pidfd, true);
        }
    }

    /// The next moment the checker needs to run: a check due, or the
    /// timeout of the one under way.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.running {
            Some(r) if !r.timed_out => Some(r.deadline),
            Some(_) => None,
            None => self.next,
        }
    }

    /// Whether a check is due now.
    pub fn due(&self, now: Instant) -> bool {
        self.running.is_none() && self.next.is_some_and(|t| t <= now)
    }

    /// A check was started at `now_ns` (its pidfd and the read end of its
    /// output), or could not be (why): then it has failed already. Its
    /// timeout runs from `now`, once it was started.
    pub fn begin(
        &mut self,
        spawned: Result<(OwnedFd, OwnedFd), String>,
        now: Instant,
        now_ns: u64,
    ) -> Option<Change> {
        match spawned {
            Ok((pidfd, output)) => {
                let _ = fd::set_nonblocking(&output, true);
                self.running = Some(Running {
                    pidfd,
                    output: Some(output),
                    started: now_ns,
                    deadline: now + self.check.timeout,
                    text: Vec::new(),
                    timed_out: false,
                });
                None
            }
            Err(why) => {
                let result = HealthResult {
                    start: now_ns,
                    end: crate::host::now_ns(),
                    exit_code: None,
                    output: format!("the check could not run: {why}"),
                };
                Some(self.finish(result, now))
            }
        }
    }

    /// The fds of the check under way, for the poll: (pidfd, output).
    pub fn fds(&self) -> Option<(&OwnedFd, Option<&OwnedFd>)> {
        self.running.as_ref().map(|r| (&r.pidfd, r.output.as_ref()))
    }

    /// Reads what the check wrote, at most `TURN` bytes at a time (a
    /// check writing without end must not hold the monitor's loop); keeps
    /// `OUTPUT_CAP` bytes. Returns whether more may be waiting (the turn's
    /// limit was reached): then it is to be called again without waiting
    /// for readiness.
    pub fn read_output(&mut self) -> bool {
        let Some(r) = self.running.as_mut() else {
            return false;
        };
        let Some(out) = r.output.as_ref() else {
            return false;
        };
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < TURN {
            match fd::read(out, &mut buf) {
                Ok(0) => {
                    r.output = None;
                    return false;
                }
                Ok(n) => {
                    let room = OUTPUT_CAP.saturating_sub(r.text.len());
                    r.text.extend_from_slice(&buf[..n.min(room)]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => {
                    r.output = None;
                    return false;
                }
            }
        }
        true
    }

    /// The check's pidfd fired: reaps it and, if it has ended, records
    /// its result.
    pub fn exited(&mut self, now: Instant, now_ns: u64) -> Option<Change> {
        let r = self.running.as_ref()?;
        let status = match process::waitid_pidfd(&r.pidfd, false) {
            Ok(Some(s)) => Some(s),
            Ok(None) => return None,
            Err(_) => None,
        };
        self.read_output();
        let r = self.running.take()?;
        let mut text = String::from_utf8_lossy(&r.text).into_owned();
        let exit_code = match status {
            _ if r.timed_out => {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "health check timed out after {}",
                    seconds(self.check.timeout)
                ));
                None
            }
            Some(s) => Some(s.code()),
            None => {
                text.push_str("the check's exit status could not be read");
                None
            }
        };
        let result = HealthResult {
            start: r.started,
            end: now_ns,
            exit_code,
            output: text,
        };
        Some(self.finish(result, now))
    }

    /// Kills a check past its timeout (its result follows from its pidfd).
    pub fn expire(&mut self, now: Instant) {
        if let Some(r) = self.running.as_mut() {
            if !r.timed_out && now >= r.deadline {
                r.timed_out = true;
                let _ = process::pidfd_send_signal(&r.pidfd, libc::SIGKILL);
            }
        }
    }

    fn finish(&mut self, result: HealthResult, now: Instant) -> Change {
        let from = self.record.status.clone();
        let end = result.end;
        self.record = apply(&self.record, result, &self.check, self.init_started, end);
        if self.next.is_some() {
            self.next = Some(now + self.check.interval);
        }
        self.save();
        Change {
            from,
            to: self.record.status.clone(),
        }
    }

    /// health.json, renamed into place (run-dir is tmpfs: no fsync).
    fn save(&self) {
        if let Err(e) = state::save_unsynced(&self.path, &self.record) {
            log::warn!(
                "write {}: {}",
                self.path.display(),
                crate::errors::io_text(&e)
            );
        }
    }
}

/// Starts `command` inside the container whose init is `init` (pid,
/// start time, in the cgroups `cgroups`), confined as the init is (see
/// `exec`), stdin /dev/null, stdout and stderr on one pipe: returns its
/// pidfd and the pipe's read end.
pub fn spawn_check(
    init: (i32, u64),
    cgroups: &[PathBuf],
    spec: &ContainerSpec,
    command: &[String],
) -> Result<(OwnedFd, OwnedFd), String> {
    let target = exec::Target {
        name: spec.name.clone(),
        init_pid: init.0,
        init_start: init.1,
        cgroups: cgroups.to_vec(),
        spec: spec.clone(),
    };
    let opts = exec::Options {
        argv: command.to_vec(),
        ..exec::Options::default()
    };
    let (out_r, out_w) = fd::pipe().map_err(|e| format!("create pipe: {}", errors::io_text(&e)))?;
    let devnull = fd::open(c"/dev/null", libc::O_RDONLY, 0)
        .map_err(|e| format!("open /dev/null: {}", errors::io_text(&e)))?;
    let stdio = exec::Stdio {
        stdin: devnull.as_fd(),
        stdout: out_w.as_fd(),
        stderr: out_w.as_fd(),
    };
    let spawned = exec::spawn(&target, &opts, stdio).map_err(|e| e.to_string())?;
    // Only the check holds the write end now: its end is the pipe's.
    drop(out_w);
    Ok((spawned.pidfd, out_r))
}

/// "30 s", "1.5 s".
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn check(retries: u32, start_period: u64) -> Healthcheck {
        Healthcheck {
            retries,
            start_period: Duration::from_secs(start_period),
            ..Healthcheck::with_command(vec!["true".into()])
        }
    }

    fn result(code: Option<i32>, at: u64) -> HealthResult {
        HealthResult {
            start: at,
            end: at,
            exit_code: code,
            output: format!("at {at}"),
        }
    }

    /// The status and streak after each of `codes`, one check a second
    /// from `start`.
    fn run(hc: &Healthcheck, codes: &[Option<i32>]) -> Vec<(String, u32)> {
        let start = 100 * S;
        let mut r = fresh("r1", 0, Vec::new());
        codes
            .iter()
            .enumerate()
            .map(|(i, &code)| {
                let at = start + (i as u64 + 1) * S;
                r = apply(&r, result(code, at), hc, start, at);
                (r.status.clone(), r.failing_streak)
            })
            .collect()
    }

    fn states(v: &[(&str, u32)]) -> Vec<(String, u32)> {
        v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    #[test]
    fn a_success_makes_it_healthy_and_retries_failures_unhealthy() {
        let hc = check(3, 0);
        assert_eq!(
            run(
                &hc,
                &[
                    Some(0),
                    Some(1),
                    Some(1),
                    Some(0),
                    Some(2),
                    None,
                    Some(1),
                    Some(1)
                ]
            ),
            states(&[
                ("healthy", 0),
                ("healthy", 1),
                ("healthy", 2),
                ("healthy", 0),
                ("healthy", 1),
                ("healthy", 2),
                ("unhealthy", 3),
                ("unhealthy", 4),
            ])
        );
        // Failing from the start: starting until the streak reaches retries.
        assert_eq!(
            run(&check(2, 0), &[Some(1), Some(1), Some(0)]),
            states(&[("starting", 1), ("unhealthy", 2), ("healthy", 0)])
        );
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_a_success() {
        // start-period 3 s: the checks at 1, 2 and 3 s are within it (the
        // one at 3 s ends at the limit, which is outside).
        assert_eq!(
            run(&check(1, 3), &[Some(1), Some(1), Some(1), Some(1)]),
            states(&[
                ("starting", 0),
                ("starting", 0),
                ("unhealthy", 1),
                ("unhealthy", 2),
            ])
        );
        // A success within the period ends it: failures count from then.
        assert_eq!(
            run(&check(1, 10), &[Some(1), Some(0), Some(1)]),
            states(&[("starting", 0), ("healthy", 0), ("unhealthy", 1)])
        );
    }

    #[test]
    fn the_log_keeps_the_last_five_results() {
        let hc = check(3, 0);
        let mut r = fresh("r1", 2, Vec::new());
        for i in 0..7 {
            r = apply(&r, result(Some(i), i as u64), &hc, 0, i as u64);
        }
        let codes: Vec<_> = r.log.iter().map(|x| x.exit_code).collect();
        assert_eq!(codes, [Some(2), Some(3), Some(4), Some(5), Some(6)]);
        assert_eq!((r.run_id.as_str(), r.restarts), ("r1", 2));
    }

    #[test]
    fn a_checker_records_and_writes_each_result() {
        let tmp = crate::testing::TempDir::new("health");
        let path = tmp.path().join("health.json");
        let mut c = Checker::new(check(1, 0), path.clone(), "r9");
        let now = Instant::now();
        c.init_started(now, 5 * S, false);
        let on_disk = || match state::load::<HealthRecord>(&path) {
            state::Loaded::Ok(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(on_disk().status, STARTING);
        assert!(!c.due(now));
        assert_eq!(c.deadline(), Some(now + Duration::from_secs(30)));
        let later = now + Duration::from_secs(30);
        assert!(c.due(later));
        let change = c.begin(Err("no such file".into()), later, 6 * S);
        assert_eq!(
            change,
            Some(Change {
                from: STARTING.into(),
                to: UNHEALTHY.into()
            })
        );
        let r = on_disk();
        assert_eq!(r.log[0].output, "the check could not run: no such file");
        assert_eq!(r.log[0].exit_code, None);
        // Started again: starting, the restart counted, the log kept.
        c.init_started(later, 7 * S, true);
        let r = on_disk();
        assert_eq!(
            (r.status.as_str(), r.restarts, r.log.len()),
            (STARTING, 1, 1)
        );
        c.halt();
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn output_is_read_a_turn_at_a_time_and_capped() {
        let tmp = crate::testing::TempDir::new("health-out");
        let mut c = Checker::new(check(1, 0), tmp.path().join("health.json"), "r1");
        let now = Instant::now();
        c.init_started(now, 0, false);
        let (r, w) = fd::pipe().unwrap();
        fd::set_nonblocking(&w, true).unwrap();
        let _ = fd::set_pipe_size(&w, 1 << 20);
        // Any pidfd will do for reading output (this process's own: never
        // signalled or waited for here).
        let me = process::pidfd_open(process::getpid()).unwrap();
        assert_eq!(c.begin(Ok((me, r)), now, 1), None);
        let mut w = std::fs::File::from(w);
        let chunk = vec![b'x'; 4096];
        let mut written = 0;
        while written < 3 * TURN {
            match std::io::Write::write(&mut w, &chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        assert!(written > TURN, "the pipe took {written} bytes");
        assert!(c.read_output(), "more than a turn waits");
        while c.read_output() {}
        drop(w);
        assert!(!c.read_output(), "at its end");
        let r = c.running.as_ref().unwrap();
        assert_eq!(r.text.len(), OUTPUT_CAP);
        assert!(r.output.is_none(), "closed at its end");
    }
}
