//! Sans-IO pool of pre-minted codes, so a session shows its code the moment it starts.
//!
//! [`ScenePool`] is told the time and what happened (a mint finished or failed) and answers
//! how many mints to start and when to look again. It always tops up to `size`: gently (one
//! mint at a time) while more than `low_water` codes are ready, with up to `max_in_flight`
//! mints at once when it runs low. While mints fail, it backs off exponentially up to a cap
//! and sends one probe at a time; it never gives up.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::minter::MintedCode;

/// Exponential backoff bookkeeping: `initial`, doubling, capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            failures: 0,
            retry_at: None,
        }
    }

    /// Records a failure at `now`; returns the pause before the next attempt.
    pub fn on_failure(&mut self, now: Instant) -> Duration {
        let pause = self
            .initial
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + pause);
        pause
    }

    pub fn on_success(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    pub fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Pool sizing and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Codes to keep ready. 0 disables the pool.
    pub size: usize,
    /// At or below this many ready codes, refill with `max_in_flight` mints at once;
    /// above it, one at a time.
    pub low_water: usize,
    /// Codes leave the pool this long before they expire.
    pub drop_before_expiry: Duration,
    /// Mints in flight at once when the pool runs low.
    pub max_in_flight: usize,
    /// Backoff while mints fail.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl PoolSettings {
    pub fn from_config(qr: &crate::config::QrConfig) -> Self {
        Self {
            size: if qr.kind.needs_network() {
                qr.pool_size
            } else {
                0
            },
            low_water: qr.pool_low_water,
            drop_before_expiry: Duration::from_secs(u64::from(qr.drop_before_expiry_s)),
            max_in_flight: qr.max_concurrent_mints.max(1),
            retry_initial: qr.retry_initial(),
            retry_max: qr.retry_max(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// Order in which the mint was started: codes are handed out in this order whatever
    /// order their answers arrived in, so a seeded replay hands out the same scenes.
    seq: u64,
    code: MintedCode,
    /// `None`: the code does not expire.
    usable_until: Option<Instant>,
}

/// What the pool wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPlan {
    /// Start this many mints now (already counted as in flight).
    pub start: usize,
    /// Poll again at this time at the latest (an entry ages out, or backoff ends).
    pub wake_at: Option<Instant>,
}

/// What became of a finished mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Minted {
    Added,
    /// It would expire within `drop_before_expiry`: useless, counted as a failure so a
    /// misconfigured lifetime cannot turn into a mint storm.
    TooShortLived,
}

#[derive(Debug, Clone)]
pub struct ScenePool {
    settings: PoolSettings,
    entries: VecDeque<Entry>,
    in_flight: usize,
    backoff: Backoff,
    dropped: u64,
}

impl ScenePool {
    pub fn new(settings: PoolSettings) -> Self {
        let backoff = Backoff::new(settings.retry_initial, settings.retry_max);
        Self {
            settings,
            entries: VecDeque::new(),
            in_flight: 0,
            backoff,
            dropped: 0,
        }
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    pub fn is_enabled(&self) -> bool {
        self.settings.size > 0
    }

    /// Codes ready to hand out (some may have aged out since the last [`Self::prune`]).
    pub fn ready(&self) -> usize {
        self.entries.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.settings.size
    }

    /// Codes thrown away for age, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Drops codes too close to expiry; returns how many.
    pub fn prune(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| e.usable_until.is_none_or(|until| now < until));
        let dropped = before - self.entries.len();
        self.dropped += dropped as u64;
        dropped
    }

    /// The oldest usable code (it has the least life left, all of it above the margin).
    pub fn take(&mut self, now: Instant) -> Option<MintedCode> {
        self.prune(now);
        self.entries.pop_front().map(|e| e.code)
    }

    /// Decides how many mints to start at `now` and marks them in flight.
    pub fn poll(&mut self, now: Instant) -> PoolPlan {
        self.prune(now);
        if !self.is_enabled() {
            return PoolPlan {
                start: 0,
                wake_at: None,
            };
        }
        let level = self.entries.len() + self.in_flight;
        let wanted = self.settings.size.saturating_sub(level);
        let mut start = 0;
        if wanted > 0 && self.backoff.ready(now) {
            // While failing, a single probe: no point in N parallel requests to a dead host.
            let cap = if self.backoff.failures() > 0 || self.entries.len() > self.settings.low_water
            {
                1
            } else {
                self.settings.max_in_flight
            };
            start = wanted.min(cap.saturating_sub(self.in_flight));
        }
        self.in_flight += start;
        let next_expiry = self.entries.iter().filter_map(|e| e.usable_until).min();
        let backoff_end = (wanted > 0 && start == 0 && self.in_flight == 0)
            .then(|| self.backoff.retry_at())
            .flatten();
        let wake_at = match (next_expiry, backoff_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        PoolPlan { start, wake_at }
    }

    /// A mint started by [`Self::poll`] produced `code`, which lives `lifetime` from `now`
    /// (`None`: forever). `seq` is the caller's start order for that mint.
    pub fn on_minted(
        &mut self,
        now: Instant,
        seq: u64,
        code: MintedCode,
        lifetime: Option<Duration>,
    ) -> Minted {
        self.in_flight = self.in_flight.saturating_sub(1);
        let usable_until = match lifetime {
            None => None,
            Some(l) if l > self.settings.drop_before_expiry => {
                Some(now + (l - self.settings.drop_before_expiry))
            }
            Some(_) => {
                self.backoff.on_failure(now);
                return Minted::TooShortLived;
            }
        };
        self.backoff.on_success();
        let at = self.entries.partition_point(|e| e.seq < seq);
        self.entries.insert(
            at,
            Entry {
                seq,
                code,
                usable_until,
            },
        );
        Minted::Added
    }

    /// A mint started by [`Self::poll`] failed at `now`; returns the pause before the next try.
    pub fn on_mint_failed(&mut self, now: Instant) -> Duration {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.backoff.on_failure(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PoolSettings {
        PoolSettings {
            size: 3,
            low_water: 1,
            drop_before_expiry: Duration::from_secs(900),
            max_in_flight: 2,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }

    fn code(scene: &str) -> MintedCode {
        MintedCode {
            scene: scene.into(),
            url: Some(format!("http://weixin.qq.com/q/{scene}")),
            ticket: None,
            image: None,
            expires_at: None,
            expire_seconds: Some(3600),
        }
    }

    const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

    #[test]
    fn fills_to_target_fast_when_low_and_gently_when_not() {
        let mut p = ScenePool::new(settings());
        let t = Instant::now();
        assert_eq!(p.poll(t).start, 2, "empty: capped by max_in_flight");
        assert_eq!(p.poll(t).start, 0, "both in flight");
        p.on_minted(t, 1, code("a"), HOUR);
        assert_eq!(p.poll(t).start, 1, "one more to reach 3");
        p.on_minted(t, 2, code("b"), HOUR);
        p.on_minted(t, 3, code("c"), HOUR);
        assert!(p.is_full());
        assert_eq!(p.poll(t).start, 0);
        assert_eq!(p.take(t).map(|c| c.scene), Some("a".into()));
        assert_eq!(
            p.poll(t).start,
            1,
            "2 ready > low water 1: top up one at a time"
        );
        assert_eq!(p.poll(t).start, 0);
        assert_eq!(p.take(t).map(|c| c.scene), Some("b".into()));
        assert_eq!(p.take(t).map(|c| c.scene), Some("c".into()));
        assert_eq!(
            p.poll(t).start,
            1,
            "low: up to max_in_flight (one already in flight)"
        );
        p.on_minted(t, 4, code("d"), HOUR);
        p.on_minted(t, 5, code("e"), HOUR);
        assert_eq!(p.poll(t).start, 1);
        p.on_minted(t, 6, code("f"), HOUR);
        assert!(p.is_full());
        assert_eq!(p.take(t).map(|c| c.scene), Some("d".into()));
    }

    #[test]
    fn entries_leave_well_before_expiry() {
        let mut p = ScenePool::new(settings());
        let t0 = Instant::now();
        p.poll(t0);
        p.on_minted(t0, 4, code("a"), HOUR);
        let plan = p.poll(t0);
        // Usable until 3600 - 900 = 2700 s after minting; the plan says when to look again.
        assert_eq!(plan.wake_at, Some(t0 + Duration::from_secs(2700)));
        assert_eq!(p.ready(), 1);
        let before = t0 + Duration::from_secs(2699);
        assert_eq!(p.prune(before), 0);
        let at = t0 + Duration::from_secs(2700);
        assert_eq!(p.take(at), None, "dropped at the margin, not handed out");
        assert_eq!(p.dropped(), 1);
    }

    #[test]
    fn handed_out_in_start_order_whatever_the_answer_order() {
        let mut p = ScenePool::new(settings());
        let t = Instant::now();
        assert_eq!(p.poll(t).start, 2);
        p.on_minted(t, 2, code("second"), HOUR);
        p.on_minted(t, 1, code("first"), HOUR);
        assert_eq!(p.take(t).map(|c| c.scene), Some("first".into()));
        assert_eq!(p.take(t).map(|c| c.scene), Some("second".into()));
    }

    #[test]
    fn codes_without_expiry_stay() {
        let mut p = ScenePool::new(settings());
        let t0 = Instant::now();
        p.poll(t0);
        p.on_minted(t0, 5, code("mp"), None);
        assert!(p.take(t0 + Duration::from_secs(86_400 * 365)).is_some());
    }

    #[test]
    fn failures_back_off_with_one_probe_and_recover() {
        let mut p = ScenePool::new(settings());
        let t0 = Instant::now();
        assert_eq!(p.poll(t0).start, 2);
        assert_eq!(p.on_mint_failed(t0), Duration::from_millis(500));
        assert_eq!(p.on_mint_failed(t0), Duration::from_secs(1));
        let plan = p.poll(t0);
        assert_eq!(
            plan,
            PoolPlan {
                start: 0,
                wake_at: Some(t0 + Duration::from_secs(1))
            }
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(p.poll(t1).start, 1, "a single probe while failing");
        let mut t = t1;
        let mut last = Duration::ZERO;
        for _ in 0..12 {
            last = p.on_mint_failed(t);
            t += last;
            assert_eq!(p.poll(t).start, 1);
        }
        assert_eq!(last, Duration::from_secs(30), "capped");
        p.on_minted(t, 6, code("ok"), HOUR);
        assert_eq!(
            p.poll(t).start,
            2,
            "back to normal concurrency after a success"
        );
    }

    #[test]
    fn too_short_lived_codes_count_as_failures() {
        let mut p = ScenePool::new(settings());
        let t0 = Instant::now();
        p.poll(t0);
        assert_eq!(
            p.on_minted(t0, 7, code("x"), Some(Duration::from_secs(900))),
            Minted::TooShortLived
        );
        assert_eq!(p.ready(), 0);
        assert_eq!(p.backoff().failures(), 1);
    }

    #[test]
    fn disabled_pool_plans_nothing() {
        let mut p = ScenePool::new(PoolSettings {
            size: 0,
            low_water: 0,
            ..settings()
        });
        assert_eq!(
            p.poll(Instant::now()),
            PoolPlan {
                start: 0,
                wake_at: None
            }
        );
    }
}
