//! Jittered exponential backoff for idempotent reads.
//!
//! Reads use it, and mutations that provably did not run (the connection was refused, or a
//! rate limiter answered 429 before anything ran). A mutation that may have reached the
//! server is never re-sent by the transport: the domain layer re-reads state and decides
//! (see the architecture note).

use std::time::Duration;

/// How often and how patiently a read is retried after a transient failure (connect error,
/// timeout, 5xx, 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included; 1 means no retry.
    pub attempts: u32,
    /// Delay before the first retry (before jitter).
    pub base: Duration,
    /// No single delay exceeds this.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub const NEVER: Self = Self {
        attempts: 1,
        base: Duration::ZERO,
        cap: Duration::ZERO,
    };

    /// The delay before retry number `retry` (0 for the first retry): exponential, capped,
    /// with "equal jitter" (half fixed, half random) so that clients that failed together do
    /// not come back together, yet never retry immediately.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(retry.min(16)))
            .min(self.cap);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=jitter_ms))
    }

    /// The delay before retry number `retry` when the server said `Retry-After`: at least
    /// what it asked for, but never more than the cap (an operator at 3 a.m. is not kept
    /// waiting for an hour by a proxy's header), and never less than the backoff.
    pub fn delay_after(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.delay(retry);
        match retry_after {
            Some(asked) => backoff.max(asked.min(self.cap)),
            None => backoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let d0 = p.delay(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
            let d9 = p.delay(9);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_secs(1));
        }
        assert!(p.delay(u32::MAX) <= p.cap);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_secs(2),
        };
        for _ in 0..100 {
            assert_eq!(
                p.delay_after(0, Some(Duration::from_secs(1))),
                Duration::from_secs(1)
            );
            assert_eq!(p.delay_after(0, Some(Duration::from_secs(3600))), p.cap);
            let d = p.delay_after(0, Some(Duration::ZERO));
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(10));
            let d = p.delay_after(1, None);
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
        }
    }
}
