//! The process's monotonic clock, as the [`Nanos`] the pure crates take as input.

use std::sync::OnceLock;
use std::time::Instant;

pub use smartlb_balance::Nanos;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the first call in this process.
///
/// The balancing, health and traffic crates take time as an argument so that tests and
/// the simulator can drive them in virtual time; in a live proxy this is the source.
#[inline]
pub fn now() -> Nanos {
    Nanos(epoch().elapsed().as_nanos() as u64)
}

/// The [`Nanos`] of an `Instant` taken by the caller (saves a second clock read where the
/// caller needs both).
#[inline]
pub fn at(instant: Instant) -> Nanos {
    Nanos(instant.saturating_duration_since(epoch()).as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_monotonic() {
        let a = now();
        let b = now();
        assert!(b >= a);
    }
}
