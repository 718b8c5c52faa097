//! Restart policies and their back-off, pure: given how a run ended and
//! what came before, whether to start the container again and when.

use std::time::Duration;

use crate::config::RestartPolicy;

/// First delay between an exit and the restart.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// The delay doubles per consecutive quick failure, up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run at least this long resets the back-off to its start.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// How a run ended, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// Exit code (128+N for signal N); `None` if it never ran or the code
    /// was lost (monitor gone).
    pub code: Option<i32>,
    /// The user asked for the stop (`berth stop`, or a stop in force).
    pub stopped_by_user: bool,
    /// Restarts done so far under the policy (since the user's last start).
    pub restart_count: u32,
}

/// Whether the policy restarts after `ending`.
pub fn should_restart(policy: RestartPolicy, ending: Ending) -> bool {
    if ending.stopped_by_user {
        return false;
    }
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure { max } => {
            let failed = ending.code != Some(0);
            failed && max.is_none_or(|m| ending.restart_count < m)
        }
    }
}

/// The delay before the next restart, given the consecutive quick
/// failures so far (0 for the first), and the new count of those.
pub fn backoff(consecutive: u32, last_run: Duration) -> (Duration, u32) {
    let consecutive = if last_run >= RESET_AFTER {
        0
    } else {
        consecutive
    };
    let delay = BACKOFF_START
        .checked_mul(1u32 << consecutive.min(16))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX);
    (delay, consecutive.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(code: Option<i32>, count: u32) -> Ending {
        Ending {
            code,
            stopped_by_user: false,
            restart_count: count,
        }
    }

    #[test]
    fn policies() {
        assert!(!should_restart(RestartPolicy::No, end(Some(1), 0)));
        assert!(should_restart(RestartPolicy::Always, end(Some(0), 100)));
        assert!(should_restart(
            RestartPolicy::UnlessStopped,
            end(Some(0), 0)
        ));
        let of2 = RestartPolicy::OnFailure { max: Some(2) };
        assert!(!should_restart(of2, end(Some(0), 0)));
        assert!(should_restart(of2, end(Some(1), 0)));
        assert!(should_restart(of2, end(Some(137), 1)));
        assert!(!should_restart(of2, end(Some(1), 2)));
        assert!(
            should_restart(of2, end(None, 0)),
            "a lost exit code counts as a failure"
        );
        assert!(should_restart(
            RestartPolicy::OnFailure { max: None },
            end(Some(3), 1000)
        ));
    }

    #[test]
    fn a_user_stop_wins_over_every_policy() {
        let e = Ending {
            code: Some(143),
            stopped_by_user: true,
            restart_count: 0,
        };
        for p in [
            RestartPolicy::Always,
            RestartPolicy::UnlessStopped,
            RestartPolicy::OnFailure { max: None },
        ] {
            assert!(!should_restart(p, e));
        }
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let quick = Duration::from_millis(5);
        let (d0, c) = backoff(0, quick);
        assert_eq!((d0, c), (Duration::from_millis(100), 1));
        let (d1, c) = backoff(c, quick);
        assert_eq!((d1, c), (Duration::from_millis(200), 2));
        let (d2, _) = backoff(c, quick);
        assert_eq!(d2, Duration::from_millis(400));
        assert_eq!(backoff(40, quick).0, BACKOFF_MAX);
        assert_eq!(
            backoff(9, Duration::from_secs(11)),
            (Duration::from_millis(100), 1)
        );
    }
}
