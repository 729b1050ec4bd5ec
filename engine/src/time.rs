//! The engine's own notion of time: a monotonic instant passed in by the shell with every input.
//!
//! The engine never reads a clock. An [`Instant`] is a count of microseconds since an origin the shell
//! chooses (usually its start); it is plain data, so traces and simulations can carry and replay it.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in monotonic time, in microseconds since the shell's origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);

    /// The instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Instant {
        Instant(micros)
    }

    /// The instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Instant {
        Instant(millis.saturating_mul(1000))
    }

    /// The instant `since_origin` after the origin (saturating at the far future).
    pub fn from_duration(since_origin: Duration) -> Instant {
        Instant(u64::try_from(since_origin.as_micros()).unwrap_or(u64::MAX))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time since the origin.
    pub const fn since_origin(self) -> Duration {
        Duration::from_micros(self.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the far future rather than wrapping.
    fn add(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturates at zero if `rhs` is later.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Instant {
    /// Seconds with millisecond precision, as in transcripts: `+12.345s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}.{:03}s", self.0 / 1_000_000, (self.0 / 1000) % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_displays_in_seconds() {
        let t = Instant::from_millis(1500);
        assert_eq!(t + Duration::from_millis(250), Instant::from_millis(1750));
        assert_eq!(t - Instant::from_millis(2000), Duration::ZERO);
        assert_eq!(
            Instant::from_micros(u64::MAX) + Duration::from_secs(1),
            Instant::from_micros(u64::MAX)
        );
        assert_eq!(Instant::from_millis(12_345).to_string(), "+12.345s");
    }
}
