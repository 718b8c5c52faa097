//! Per-container log rate limiting: a crash loop must not fill flash or
//! drown the daemon's log. A fixed window per container; what is dropped
//! is counted and reported once the window reopens.

use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);
pub const BURST: u32 = 10;

#[derive(Debug)]
pub struct RateLimit {
    window_start: Option<Instant>,
    count: u32,
    suppressed: u32,
}

/// What the caller may do with one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it.
    Log,
    /// Log it, after saying how many were dropped before it.
    LogAfterDropped(u32),
    /// Drop it.
    Drop,
}

impl RateLimit {
    pub const fn new() -> RateLimit {
        RateLimit {
            window_start: None,
            count: 0,
            suppressed: 0,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let fresh = self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.count = 1;
            let dropped = std::mem::take(&mut self.suppressed);
            return if dropped > 0 {
                Verdict::LogAfterDropped(dropped)
            } else {
                Verdict::Log
            };
        }
        if self.count < BURST {
            self.count += 1;
            Verdict::Log
        } else {
            self.suppressed += 1;
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_drop_then_report() {
        let mut r = RateLimit::new();
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert_eq!(r.check(t0), Verdict::Log);
        }
        assert_eq!(r.check(t0), Verdict::Drop);
        assert_eq!(r.check(t0 + Duration::from_secs(1)), Verdict::Drop);
        assert_eq!(r.check(t0 + WINDOW), Verdict::LogAfterDropped(2));
        assert_eq!(r.check(t0 + WINDOW), Verdict::Log);
    }
}
