//! Per-device rate limit on minting scene codes: a token bucket per device, `mint_burst`
//! deep, refilled at `mints_per_hour`. A stolen device token can then mint a few codes, not
//! the account's whole daily `qrcode/create` quota.
//!
//! The bucket is a pure function of the times it is asked at ([`Bucket::take`]), so it is
//! tested on virtual time; [`MintLimiter`] keeps one per device, in memory. Only
//! authenticated devices reach it, so it holds at most one entry per registered mirror (a few
//! dozen bytes each); a hand-written bucket is smaller than a rate-limiting crate's
//! machinery for this. Each hub instance counts on its own: behind a load balancer a device
//! can mint up to instances × the rate, which the quota alarm in `/metrics` still catches.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One device's allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Mints available now (fractional while refilling).
    tokens: f64,
    /// When `tokens` was last brought up to date, in seconds on the caller's clock.
    at_s: f64,
}

/// The limit: `burst` at once, `per_hour` sustained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: u32,
    pub per_hour: u32,
}

impl Rate {
    fn per_second(self) -> f64 {
        f64::from(self.per_hour) / 3600.0
    }
}

impl Bucket {
    /// A full bucket at `now_s`.
    pub fn full(rate: Rate, now_s: f64) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            at_s: now_s,
        }
    }

    /// Takes one mint at `now_s`, or says how long until one is available.
    pub fn take(&mut self, rate: Rate, now_s: f64) -> Result<(), Duration> {
        let elapsed = (now_s - self.at_s).max(0.0);
        self.tokens = (self.tokens + elapsed * rate.per_second()).min(f64::from(rate.burst));
        self.at_s = now_s.max(self.at_s);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait_s = (1.0 - self.tokens) / rate.per_second();
        Err(Duration::from_secs_f64(wait_s))
    }
}

/// The buckets of every device that minted through this instance.
#[derive(Debug)]
pub struct MintLimiter {
    rate: Rate,
    epoch: Instant,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl MintLimiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            epoch: Instant::now(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a mint for `device` now, or says how long it must wait.
    pub fn take(&self, device: &str) -> Result<(), Duration> {
        let now_s = self.epoch.elapsed().as_secs_f64();
        // A poisoned lock only means another request panicked mid-update of plain numbers;
        // the buckets are still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets
            .entry(device.to_string())
            .or_insert_with(|| Bucket::full(self.rate, now_s))
            .take(self.rate, now_s)
    }
}

/// `Retry-After` in whole seconds, rounded up so a client that waits that long succeeds.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        burst: 3,
        per_hour: 60,
    };

    #[test]
    fn burst_then_the_hourly_rate() {
        let mut b = Bucket::full(RATE, 0.0);
        for _ in 0..3 {
            assert_eq!(b.take(RATE, 0.0), Ok(()));
        }
        // 60 an hour is one a minute: the fourth waits a minute.
        let wait = b.take(RATE, 0.0).unwrap_err();
        assert_eq!(retry_after_secs(wait), 60);
        // Half a minute later it waits the other half.
        assert_eq!(retry_after_secs(b.take(RATE, 30.0).unwrap_err()), 30);
        assert_eq!(b.take(RATE, 60.0), Ok(()));
        assert!(b.take(RATE, 60.0).is_err());
        // A long pause refills to the burst, never beyond it.
        for _ in 0..3 {
            assert_eq!(b.take(RATE, 100_000.0), Ok(()));
        }
        assert!(b.take(RATE, 100_000.0).is_err());
    }

    #[test]
    fn a_clock_going_backwards_never_adds_mints() {
        let mut b = Bucket::full(RATE, 100.0);
        for _ in 0..3 {
            b.take(RATE, 100.0).unwrap();
        }
        assert!(b.take(RATE, 50.0).is_err());
        assert!(b.take(RATE, 100.0).is_err());
    }

    #[test]
    fn devices_have_their_own_buckets() {
        let limiter = MintLimiter::new(Rate {
            burst: 1,
            per_hour: 1,
        });
        assert!(limiter.take("mirror-1").is_ok());
        let wait = limiter.take("mirror-1").unwrap_err();
        assert!(wait > Duration::from_secs(3590), "{wait:?}");
        assert!(limiter.take("mirror-2").is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
