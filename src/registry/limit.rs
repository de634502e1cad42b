//! Per-registry request budgets: a token bucket, and a pause after a 429 (`Retry-After`) or
//! an exhausted `ratelimit-remaining`. Waiting for a token is throttling; a pause is not waited
//! out within a scan: requests to that registry fail at once until it ends.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The longest one pause, whatever `Retry-After` or `ratelimit-remaining`'s window ask
/// (Docker Hub's pull window is six hours): a misconfigured or hostile registry must not
/// silence itself for hours. Still exhausted after it, the next lookup is paused again.
pub const MAX_PAUSE: Duration = Duration::from_secs(15 * 60);

/// A sustained request rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    pub const UNLIMITED: Rate = Rate {
        per_second: f64::INFINITY,
        burst: u32::MAX,
    };
    /// Docker Hub answers 429 quickly for anonymous clients: stay well below it.
    pub const DOCKER_HUB: Rate = Rate {
        per_second: 2.0,
        burst: 10,
    };
    pub const DEFAULT: Rate = Rate {
        per_second: 20.0,
        burst: 40,
    };
}

struct Bucket {
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

pub struct Limiter {
    rates: Box<dyn Fn(&str) -> Rate + Send + Sync>,
    buckets: Mutex<BTreeMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(rates: impl Fn(&str) -> Rate + Send + Sync + 'static) -> Limiter {
        Limiter {
            rates: Box::new(rates),
            buckets: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes one request from `registry`'s budget, waiting for a token if needed. `Err` with
    /// the time left when the registry asked kairo to stay away.
    pub async fn acquire(&self, registry: &str) -> Result<(), Duration> {
        let rate = (self.rates)(registry);
        loop {
            let wait = {
                let mut buckets = self
                    .buckets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                let b = buckets.entry(registry.to_string()).or_insert(Bucket {
                    tokens: f64::from(rate.burst),
                    last: now,
                    paused_until: None,
                });
                if let Some(until) = b.paused_until {
                    if now < until {
                        return Err(until - now);
                    }
                    b.paused_until = None;
                }
                if rate.per_second.is_infinite() {
                    return Ok(());
                }
                let elapsed = now.duration_since(b.last).as_secs_f64();
                b.tokens = (b.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return Ok(());
                }
                Duration::from_secs_f64((1.0 - b.tokens) / rate.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends nothing more to `registry` for `d` (at most [`MAX_PAUSE`]).
    pub fn pause(&self, registry: &str, d: Duration) {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let rate = (self.rates)(registry);
        let b = buckets.entry(registry.to_string()).or_insert(Bucket {
            tokens: f64::from(rate.burst.min(1_000_000)),
            last: now,
            paused_until: None,
        });
        // A registry's `Retry-After` is untrusted: 15 minutes at most, never an overflow.
        let d = d.min(MAX_PAUSE);
        let until = now.checked_add(d).unwrap_or(now);
        b.paused_until = Some(b.paused_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_throttles_and_pauses() {
        let limiter = Limiter::new(|_| Rate {
            per_second: 1.0,
            burst: 2,
        });
        let start = Instant::now();
        for _ in 0..4 {
            limiter.acquire("r").await.unwrap();
        }
        // Two from the burst, then one per second (virtual time).
        assert_eq!(start.elapsed().as_secs(), 2);
        limiter.pause("r", Duration::from_secs(30));
        assert_eq!(limiter.acquire("r").await, Err(Duration::from_secs(30)));
        assert!(limiter.acquire("other").await.is_ok());
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(limiter.acquire("r").await.is_ok());
        // A pause of hours is cut to `MAX_PAUSE`.
        limiter.pause("r", Duration::from_secs(99_999));
        assert_eq!(limiter.acquire("r").await, Err(MAX_PAUSE));
    }
}
