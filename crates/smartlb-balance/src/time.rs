//! Caller-supplied monotonic time.

use std::ops::{Add, AddAssign};
use std::time::Duration;

/// Monotonic time in nanoseconds since an arbitrary epoch chosen by the caller
/// (virtual time in a simulator).
///
/// The crate never reads a clock itself: every time-dependent call takes a
/// `Nanos`, so tests and the simulator can drive time by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);

impl Nanos {
    /// The epoch itself.
    pub const ZERO: Nanos = Nanos(0);

    /// `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Nanos(secs.saturating_mul(1_000_000_000))
    }

    /// `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Nanos(millis.saturating_mul(1_000_000))
    }

    /// The time a [`Duration`] after the epoch (saturating at `u64::MAX` ns, about 584 years).
    pub fn from_duration(d: Duration) -> Self {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Nanoseconds elapsed from `earlier` to `self`, or 0 if `earlier` is later.
    pub const fn saturating_since(self, earlier: Nanos) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Duration) -> Nanos {
        Nanos(self.0.saturating_add(Nanos::from_duration(rhs).0))
    }
}

impl AddAssign<Duration> for Nanos {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl From<Duration> for Nanos {
    fn from(d: Duration) -> Self {
        Nanos::from_duration(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_saturate() {
        assert_eq!(Nanos::from_secs(2), Nanos(2_000_000_000));
        assert_eq!(Nanos::from_millis(3), Nanos(3_000_000));
        assert_eq!(Nanos::from_secs(u64::MAX), Nanos(u64::MAX));
        assert_eq!(Nanos(5) + Duration::from_nanos(7), Nanos(12));
        assert_eq!(Nanos(u64::MAX) + Duration::from_secs(1), Nanos(u64::MAX));
        assert_eq!(Nanos(5).saturating_since(Nanos(9)), 0);
        assert_eq!(Nanos(9).saturating_since(Nanos(5)), 4);
        let mut t = Nanos::ZERO;
        t += Duration::from_millis(1);
        assert_eq!(t, Nanos::from_millis(1));
        assert_eq!(Nanos::from(Duration::from_micros(1)).as_u64(), 1000);
    }
}
