//! When to try a rejected push again: a decision, not a sleep.
//!
//! The CLI sleeps for the returned delay; the daemon requeues the intent after it. The budget is
//! time, not attempts: a writer that keeps losing the race to faster writers on a busy machine
//! keeps trying until its time is up, with capped, fully jittered exponential backoff so that
//! concurrent writers spread apart instead of colliding again in lockstep.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Give up once this much time has passed since the first attempt.
    pub budget: Duration,
    /// Optional cap on attempts (the budget alone decides when `None`).
    pub max_attempts: Option<u32>,
    /// The first backoff's upper bound; doubles per attempt up to `cap`.
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            budget: Duration::from_secs(120),
            max_attempts: None,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RetryAfter(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// After `attempt` (1-based) failed with `elapsed` spent so far; `jitter` in [0, 1).
    pub fn decide(&self, attempt: u32, elapsed: Duration, jitter: f64) -> Decision {
        if self.max_attempts.is_some_and(|max| attempt >= max) {
            return Decision::GiveUp;
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.cap);
        // Full jitter, but never less than a millisecond: a zero sleep would spin.
        let delay = ceiling
            .mul_f64(jitter.clamp(0.0, 1.0))
            .max(Duration::from_millis(1));
        if elapsed.saturating_add(delay) > self.budget {
            Decision::GiveUp
        } else {
            Decision::RetryAfter(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_up_to_the_cap_and_gives_up_at_the_budget() {
        let p = RetryPolicy::default();
        let at = |attempt, secs| p.decide(attempt, Duration::from_secs(secs), 0.999_999);
        assert_eq!(
            at(1, 0),
            Decision::RetryAfter(Duration::from_millis(50).mul_f64(0.999_999))
        );
        let Decision::RetryAfter(d) = at(3, 0) else {
            panic!()
        };
        assert!(d < Duration::from_millis(200) && d > Duration::from_millis(199));
        let Decision::RetryAfter(d) = at(30, 0) else {
            panic!()
        };
        assert!(d <= Duration::from_secs(2));
        assert_eq!(at(30, 119), Decision::GiveUp);
        assert_eq!(
            p.decide(5, Duration::ZERO, 0.0),
            Decision::RetryAfter(Duration::from_millis(1))
        );
        let capped = RetryPolicy {
            max_attempts: Some(2),
            ..p
        };
        assert!(matches!(
            capped.decide(1, Duration::ZERO, 0.5),
            Decision::RetryAfter(_)
        ));
        assert_eq!(capped.decide(2, Duration::ZERO, 0.5), Decision::GiveUp);
        let none = RetryPolicy {
            budget: Duration::ZERO,
            ..p
        };
        assert_eq!(none.decide(1, Duration::ZERO, 0.5), Decision::GiveUp);
    }
}
