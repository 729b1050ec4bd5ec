//! A token bucket in integer arithmetic: deterministic, time injected.

use std::num::NonZeroU64;

use crate::time::Instant;

/// Tokens are counted in millionths, so that one microsecond (the engine's time resolution) of
/// refill at `rate` tokens per second is exactly `rate` millionths.
const SCALE: i128 = 1_000_000;

/// `rate` tokens per second, at most `burst` stored. A take larger than the burst passes when the
/// bucket is full and leaves it in debt, so a message bigger than a byte limit's burst still goes
/// through, once, and the client then waits for the debt to be paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate: i128,
    burst: i128,
    /// Millionths of a token; negative when in debt.
    level: i128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. Rate and burst are non-zero: a zero rate would never refill (a ban, not a
    /// limit) and a zero burst would refuse everything.
    pub fn new(rate_per_sec: NonZeroU64, burst: NonZeroU64, now: Instant) -> TokenBucket {
        let burst = i128::from(burst.get()) * SCALE;
        TokenBucket {
            rate: i128::from(rate_per_sec.get()),
            burst,
            level: burst,
            last: now,
        }
    }

    /// The level at `now` (refilled since the last call; earlier instants count as the last).
    /// Saturating: a rate near `u64::MAX` over years of idleness would overflow even `i128`, and
    /// the bucket is capped at the burst anyway.
    fn level_at(&self, now: Instant) -> i128 {
        let elapsed = i128::from(now.as_micros().saturating_sub(self.last.as_micros()));
        self.level
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.burst)
    }

    /// What must be in the bucket for a take of `n`: `n`, or a full bucket when `n` exceeds it.
    fn needed(&self, n: u64) -> i128 {
        (i128::from(n) * SCALE).min(self.burst)
    }

    /// Takes `n` tokens if they are there; `false` leaves the bucket as it was (apart from the
    /// refill). A take above the burst needs a full bucket and leaves it in debt.
    pub fn try_take(&mut self, now: Instant, n: u64) -> bool {
        let now = now.max(self.last);
        self.level = self.level_at(now);
        self.last = now;
        if self.level < self.needed(n) {
            return false;
        }
        self.level -= i128::from(n) * SCALE;
        true
    }

    /// The earliest instant at which a take of `n` succeeds (`now` if it would now): what a shell
    /// sleeps until before reading from a throttled client again. Exact to the microsecond: one
    /// microsecond earlier, the take fails.
    pub fn ready_at(&self, now: Instant, n: u64) -> Instant {
        let now = now.max(self.last);
        let missing = self.needed(n) - self.level_at(now);
        if missing <= 0 {
            return now;
        }
        // Round up: at that microsecond the tokens are there.
        let micros = (missing + self.rate - 1) / self.rate;
        now + std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).expect("non-zero")
    }

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(nz(10), nz(3), t0);
        assert!(b.try_take(t0, 1));
        assert!(b.try_take(t0, 1));
        assert!(b.try_take(t0, 1));
        assert!(!b.try_take(t0, 1));
        assert_eq!(b.ready_at(t0, 1), t0 + Duration::from_millis(100));
        assert!(!b.try_take(t0 + Duration::from_millis(99), 1));
        assert!(b.try_take(t0 + Duration::from_millis(100), 1));
        // Never more than the burst, however long it rests.
        let later = t0 + Duration::from_secs(100);
        assert!(b.try_take(later, 3));
        assert!(!b.try_take(later, 1));
    }

    #[test]
    fn ready_at_is_exact_for_odd_rates() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(nz(3), nz(1), t0);
        assert!(b.try_take(t0, 1));
        let at = b.ready_at(t0, 1);
        assert_eq!(at, t0 + Duration::from_micros(333_334));
        assert!(!b.try_take(Instant::from_micros(at.as_micros() - 1), 1));
        assert!(b.try_take(at, 1));
    }

    #[test]
    fn a_take_above_the_burst_passes_when_full_and_leaves_debt() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(nz(1000), nz(1000), t0);
        assert_eq!(b.ready_at(t0, 10_000), t0);
        assert!(b.try_take(t0, 10_000));
        // 9,000 in debt plus 1 needed: 9.001 s.
        assert_eq!(b.ready_at(t0, 1), t0 + Duration::from_millis(9001));
        assert!(!b.try_take(t0 + Duration::from_secs(9), 1));
        assert!(b.try_take(t0 + Duration::from_millis(9001), 1));
    }

    #[test]
    fn a_take_above_the_burst_waits_for_a_full_bucket() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(nz(1000), nz(1000), t0);
        assert!(b.try_take(t0, 1));
        assert!(!b.try_take(t0, 10_000), "not full: refused, nothing taken");
        assert_eq!(b.ready_at(t0, 10_000), t0 + Duration::from_millis(1));
        assert!(b.try_take(t0 + Duration::from_millis(1), 10_000));
        // The 10 kB message passed once; the next byte waits ~9 s for the debt.
        assert_eq!(
            b.ready_at(t0 + Duration::from_millis(1), 1),
            t0 + Duration::from_millis(9002)
        );
    }

    #[test]
    fn refill_is_exact_over_many_small_steps() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(nz(7), nz(1), t0);
        assert!(b.try_take(t0, 1));
        // Checking every microsecond must not lose fractions of a token to rounding.
        let at = b.ready_at(t0, 1);
        let mut t = t0;
        while t < at {
            assert!(!b.try_take(t, 1), "too early at {t}");
            t = t + Duration::from_micros(997);
        }
        assert!(b.try_take(at, 1));
    }

    #[test]
    fn extreme_rates_and_times_do_not_overflow() {
        let max = nz(u64::MAX);
        let mut b = TokenBucket::new(max, max, Instant::ZERO);
        assert!(b.try_take(Instant::ZERO, u64::MAX));
        assert!(!b.try_take(Instant::ZERO, 1));
        let far = Instant::from_micros(u64::MAX);
        assert!(b.try_take(far, u64::MAX));
        let mut slow = TokenBucket::new(nz(1), max, Instant::ZERO);
        assert!(slow.try_take(Instant::ZERO, u64::MAX));
        assert_eq!(
            slow.ready_at(Instant::ZERO, u64::MAX),
            Instant::from_micros(u64::MAX),
            "saturates at the far future"
        );
    }

    #[test]
    fn time_going_back_is_the_last_time_seen() {
        let t1 = Instant::ZERO + Duration::from_secs(5);
        let mut b = TokenBucket::new(nz(1), nz(1), t1);
        assert!(b.try_take(t1, 1));
        assert!(!b.try_take(Instant::ZERO, 1));
        assert_eq!(b.ready_at(Instant::ZERO, 1), t1 + Duration::from_secs(1));
    }
}
